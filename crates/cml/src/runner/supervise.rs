//! The supervision loop: agent lines → events → policy decisions.

use super::registration::Registered;
use super::signals::Signals;
use crate::exit::{ExitCode, Failure};
use crate::settings::RunnerSettings;
use cml_agent::process::Output;
use cml_agent::{AgentProcess, Stream};
use cml_cloud::interruption::Notice;
use cml_core::event::parse_line;
use cml_core::policy::{Decision, Phase, Policy, StopReason};
use cml_core::AgentEvent;
use cml_core::Driver;
use cml_forge::Deleted;
use std::time::Instant;

/// How supervision ended.
pub struct Ended {
    pub code: ExitCode,
    /// The job the agent was running (by the name its agent printed) when the machine was
    /// taken away or the job reached its time limit: it is to be re-run. `None` when no job
    /// was running — then nothing is re-run — or when the forge had just handed one over and
    /// the agent had not named it yet (that one cannot be found again; a warning says so).
    pub interrupted_job: Option<String>,
}

/// Supervises `agent` until the policy decides to stop, then stops it. For an idle
/// timeout the runner is deregistered *before* the agent is stopped: the forge does not
/// delete a runner that has just taken a job (see [`cml_forge::Forge::delete_runner`]), and
/// that is what guarantees a job is never killed by the idle timer, even one assigned at the
/// last moment. When deregistering fails, the runner may still be handed jobs, so the agent
/// is kept and deregistration is tried again at a later deadline (growing, bounded waits).
pub async fn supervise(
    s: &RunnerSettings,
    mut agent: AgentProcess,
    registered: &mut Registered<'_>,
    signals: &mut Signals,
) -> Result<Ended, Failure> {
    let mut interrupted_job = None;
    let mut policy = Policy::new(s.idle_timeout, s.single);
    let mut agent_exited = false;
    // On a cloud machine, the cloud may announce that it takes the machine away.
    let mut watch = if s.self_terminate {
        let cloud = super::machine_cloud();
        match cml_cloud::machine::host_for(&cloud, &|_| None) {
            Some(host) => host.interruption_watcher(),
            // A cloud this build has no machine side for may still announce interruptions.
            None => cml_cloud::interruption::Watcher::for_cloud(&cloud),
        }
    } else {
        None
    };
    // Failed idle deregistrations in a row.
    let mut failed_deregistrations = 0u32;
    let mut ticker = tokio::time::interval(NOTICE_POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        let deadline = policy.idle_deadline();
        let job_deadline = policy.job_deadline(s.job_time_limit);
        let decision = tokio::select! {
            out = agent.next() => match out {
                Output::Line(line) => {
                    log_line(line.stream, &line.text);
                    match parse_line(s.driver, &line.text).map(|e| name_the_job(e, &policy)) {
                        Some(event) => {
                            // Bitbucket names the step's pipeline too, as CML reports it.
                            let pipeline = (s.driver == Driver::Bitbucket)
                                .then(|| cml_core::event::bitbucket_pipeline(&line.text))
                                .flatten();
                            log_event(&event, pipeline.as_deref());
                            policy.on_agent_event(&event, line.at)
                        }
                        None => Decision::Continue,
                    }
                }
                Output::Exited(info) => {
                    tracing::debug!("the agent exited ({info})");
                    agent_exited = true;
                    if s.driver == Driver::Gitlab && info.code == Some(0) {
                        // gitlab-runner got the same idle timeout as --wait-timeout.
                        policy.on_agent_idle_exit()
                    } else {
                        policy.on_agent_exit(info.code)
                    }
                }
            },
            sig = signals.recv() => {
                tracing::info!("received signal {sig}; stopping the runner");
                // On a cloud machine a shutdown (the cloud's, or the power button) mid-job
                // loses the job like an interruption: it is re-run afterwards.
                if let (true, Phase::Busy { job }) = (s.self_terminate, policy.phase()) {
                    interrupted_job = lost_job(job);
                    let job = interrupted_job.clone().unwrap_or_default();
                    tracing::warn!(status = "interrupted", job = %job, "the machine is shutting down during job {job}");
                }
                policy.on_signal(sig)
            }
            _ = sleep_until(job_deadline), if job_deadline.is_some() => {
                // A job deadline runs only while the job the agent named runs.
                interrupted_job = match policy.phase() {
                    Phase::Busy { job } => lost_job(job),
                    _ => None,
                };
                let job = interrupted_job.clone().unwrap_or_default();
                tracing::warn!(
                    status = "interrupted",
                    job = %job,
                    "job {job} reached the job time limit less its margin: stopping it to re-run it"
                );
                policy.on_job_time_limit()
            }
            _ = sleep_until(deadline), if deadline.is_some() => policy.on_tick(Instant::now()),
            _ = ticker.tick(), if watch.is_some() => match poll_notice(&mut watch).await {
                None => Decision::Continue,
                Some(Notice::Interruption(detail)) => {
                    // Idle: no job was lost, and nothing is to be re-run.
                    interrupted_job = match policy.phase() {
                        Phase::Busy { job } => lost_job(job),
                        _ => None,
                    };
                    let job = interrupted_job.clone().unwrap_or_default();
                    tracing::warn!(
                        status = "interrupted",
                        job = %job,
                        "{detail}: stopping the runner{}",
                        if job.is_empty() { String::new() } else { format!(" and its job {job}") }
                    );
                    policy.on_interruption()
                }
                Some(Notice::Rebalance(detail)) => {
                    tracing::warn!("{detail}; the machine may be interrupted soon");
                    Decision::Continue
                }
            },
        };
        let Decision::Stop(reason) = decision else {
            continue;
        };
        if let (StopReason::IdleTimeout(_), false) = (&reason, agent_exited) {
            if !registered.sees_running_jobs() {
                // The forge cannot tell whether a job has just been taken: the agent stops
                // taking jobs first and finishes any it has (gitlab-runner: SIGQUIT), and the
                // runner is deleted after it exited.
                tracing::info!("idle: the agent finishes any job it has and stops");
                agent.signal(libc::SIGQUIT);
                if let Some(sig) = drain(s, &mut agent, signals).await {
                    tracing::info!("received signal {sig}; stopping the runner");
                    break StopReason::Signal(sig);
                }
                break reason;
            }
            match registered.try_deregister().await {
                Ok(Deleted::Busy(_)) => {
                    tracing::info!("the runner took a job as the idle timeout expired; keeping it");
                    failed_deregistrations = 0;
                    policy.on_busy_at_deadline();
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    // The forge may still hand this runner a job: its agent must stay.
                    failed_deregistrations = failed_deregistrations.saturating_add(1);
                    let wait = deregistration_retry(failed_deregistrations, s.idle_timeout);
                    tracing::warn!(
                        "{e:#}\nthe runner is kept running and is deregistered again in {} s",
                        wait.as_secs()
                    );
                    policy.on_deregistration_failed(Instant::now(), wait);
                    continue;
                }
            }
        }
        break reason;
    };

    if reason == StopReason::SingleJobDone && s.driver != Driver::Bitbucket {
        // An ephemeral GitHub agent reports the job and unregisters itself before it exits,
        // and gitlab-runner exits after `--max-builds 1`: let them finish on their own rather
        // than interrupting that. Bitbucket's runner has no single-step mode: it is stopped.
        wait_for_exit(&mut agent, s.stop_grace).await;
    }
    let (exit, in_time) = agent.stop(s.stop_grace).await;
    if !in_time {
        tracing::warn!(
            "the agent was killed after the {} s grace period",
            s.stop_grace.as_secs()
        );
    }
    let detail = match &reason {
        StopReason::IdleTimeout(d) => format!("idle for {} s", d.as_secs()),
        StopReason::SingleJobDone => "single job done".into(),
        StopReason::Signal(n) => format!("signal {n}"),
        StopReason::AgentExited(_) => format!("agent exited ({exit})"),
        StopReason::Interrupted => "the machine is being taken away".into(),
        StopReason::JobTimeLimit => "the job reached the job time limit".into(),
    };
    tracing::info!(
        status = "terminated",
        reason = reason.code(),
        "runner terminated: {detail}"
    );
    let code = |code| {
        Ok(Ended {
            code,
            interrupted_job: interrupted_job.clone(),
        })
    };
    match reason {
        StopReason::IdleTimeout(_)
        | StopReason::SingleJobDone
        | StopReason::Interrupted
        | StopReason::JobTimeLimit => code(ExitCode::Success),
        StopReason::Signal(n) => code(ExitCode::from_signal(n)),
        StopReason::AgentExited(_) => Err(Failure::agent(anyhow::anyhow!(
            "the agent exited on its own ({exit}); its last lines:\n{}",
            agent.tail().join("\n")
        ))),
    }
}

/// The job to re-run after losing the job the policy knows of: the agent's name for it. A job
/// the forge reported (at the idle deadline) before the agent printed its name cannot be
/// found again: it is not re-run (rather than guessing, which could re-run an older job).
fn lost_job(job: &Option<String>) -> Option<String> {
    if job.is_none() {
        tracing::warn!(
            "the runner had just been handed a job whose name its agent had not printed yet; that job is not re-run"
        );
    }
    job.clone()
}

/// The first wait after a failed idle deregistration; it doubles with each failure in a row.
const DEREGISTER_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(10);
/// The longest wait between two idle deregistration attempts.
const DEREGISTER_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(300);
/// The shortest, so that a zero idle timeout does not hammer a failing forge.
const DEREGISTER_RETRY_MIN: std::time::Duration = std::time::Duration::from_secs(1);

/// How long to wait after the `failures`-th failed idle deregistration in a row: doubling from
/// [`DEREGISTER_RETRY_FIRST`], never longer than the idle timeout (the next deadline as the
/// runner would have it) nor [`DEREGISTER_RETRY_MAX`], never shorter than
/// [`DEREGISTER_RETRY_MIN`].
fn deregistration_retry(failures: u32, idle: cml_core::IdleTimeout) -> std::time::Duration {
    let doubled = DEREGISTER_RETRY_FIRST
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(DEREGISTER_RETRY_MAX);
    idle.as_duration()
        .map_or(doubled, |d| doubled.min(d))
        .max(DEREGISTER_RETRY_MIN)
}

/// Waits, as long as it takes, for the agent to exit by itself, logging what it prints and
/// the events in it meanwhile; a signal ends the wait (and is returned).
async fn drain(s: &RunnerSettings, agent: &mut AgentProcess, signals: &mut Signals) -> Option<i32> {
    loop {
        tokio::select! {
            out = agent.next() => match out {
                Output::Line(line) => {
                    log_line(line.stream, &line.text);
                    if let Some(event) = parse_line(s.driver, &line.text) {
                        let pipeline = (s.driver == Driver::Bitbucket)
                            .then(|| cml_core::event::bitbucket_pipeline(&line.text))
                            .flatten();
                        log_event(&event, pipeline.as_deref());
                    }
                }
                Output::Exited(_) => return None,
            },
            sig = signals.recv() => return Some(sig),
        }
    }
}

/// Lets the agent exit by itself within `limit`, logging what it prints meanwhile.
async fn wait_for_exit(agent: &mut AgentProcess, limit: std::time::Duration) {
    let _ = tokio::time::timeout(limit, async {
        loop {
            match agent.next().await {
                Output::Line(line) => log_line(line.stream, &line.text),
                Output::Exited(_) => return,
            }
        }
    })
    .await;
}

/// How often the cloud's metadata is asked about interruptions (AWS gives two minutes'
/// notice).
const NOTICE_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// One look for a notice, when watching; a failed look is retried later by the watcher.
async fn poll_notice(watch: &mut Option<cml_cloud::interruption::Watcher>) -> Option<Notice> {
    match watch {
        Some(w) => w.check().await,
        None => None,
    }
}

/// Bitbucket's finish line names no step: it is the job the policy knows is running.
fn name_the_job(event: AgentEvent, policy: &Policy) -> AgentEvent {
    match (event, policy.phase()) {
        (AgentEvent::JobFinished { result, .. }, Phase::Busy { job: Some(job) }) => {
            AgentEvent::JobFinished {
                job: job.clone(),
                result,
            }
        }
        (event, _) => event,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn log_line(stream: Stream, text: &str) {
    if text.trim().is_empty() {
        return;
    }
    match stream {
        Stream::Stdout => tracing::debug!(stream = "stdout", "agent: {text}"),
        Stream::Stderr => tracing::debug!(stream = "stderr", "agent: {text}"),
    }
}

fn log_event(event: &AgentEvent, pipeline: Option<&str>) {
    match event {
        AgentEvent::Ready => tracing::info!(status = "ready", "runner ready"),
        AgentEvent::JobStarted { job } => match pipeline {
            Some(pipeline) => tracing::info!(
                status = "job_started",
                job = %job,
                pipeline,
                "job started: {job}"
            ),
            None => tracing::info!(status = "job_started", job = %job, "job started: {job}"),
        },
        AgentEvent::JobFinished { job, result } => tracing::info!(
            status = "job_ended",
            job = %job,
            success = result.success(),
            result = result.as_str(),
            "job ended: {job} ({})",
            result.as_str()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cml_core::IdleTimeout;
    use std::time::Duration;

    #[test]
    fn deregistration_retries_back_off_within_bounds() {
        let idle = IdleTimeout::After(Duration::from_secs(180));
        let waits: Vec<u64> = (1..=8)
            .map(|n| deregistration_retry(n, idle).as_secs())
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 180, 180, 180]);
        let never = IdleTimeout::Never;
        assert_eq!(deregistration_retry(u32::MAX, never), DEREGISTER_RETRY_MAX);
        let zero = IdleTimeout::After(Duration::ZERO);
        assert_eq!(deregistration_retry(1, zero), DEREGISTER_RETRY_MIN);
        assert_eq!(
            deregistration_retry(1, IdleTimeout::After(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }
}
