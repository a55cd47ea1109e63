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

/// Supervises `agent` until the policy decides to stop, then stops it. For an idle
/// timeout the runner is deregistered *before* the agent is stopped: the forge refuses to
/// delete a runner that has just taken a job, and that refusal is what guarantees a job is
/// never killed by the idle timer, even one assigned at the last moment.
/// How supervision ended: the exit code, and the job (possibly `""`: none) the agent was
/// running when the machine was taken away, if it was.
pub struct Ended {
    pub code: ExitCode,
    pub interrupted_job: Option<String>,
}

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
        let cloud =
            std::env::var(crate::settings::vars::MACHINE_CLOUD).unwrap_or_else(|_| "aws".into());
        cml_cloud::interruption::Watch::for_cloud(&cloud)
    } else {
        None
    };
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
                            log_event(&event);
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
                    let job = job.clone().unwrap_or_default();
                    tracing::warn!(status = "interrupted", job = %job, "the machine is shutting down during job {job}");
                    interrupted_job = Some(job);
                }
                policy.on_signal(sig)
            }
            _ = sleep_until(job_deadline), if job_deadline.is_some() => {
                let job = match policy.phase() {
                    Phase::Busy { job } => job.clone().unwrap_or_default(),
                    _ => String::new(),
                };
                tracing::warn!(
                    status = "interrupted",
                    job = %job,
                    "job {job} reached the job time limit less its margin: stopping it to re-run it"
                );
                interrupted_job = Some(job);
                policy.on_job_time_limit()
            }
            _ = sleep_until(deadline), if deadline.is_some() => policy.on_tick(Instant::now()),
            _ = ticker.tick(), if watch.is_some() => match poll_notice(&mut watch).await {
                Ok(None) => Decision::Continue,
                Ok(Some(Notice::Interruption(detail))) => {
                    let job = match policy.phase() {
                        Phase::Busy { job } => job.clone().unwrap_or_else(|| "(unknown)".into()),
                        _ => String::new(),
                    };
                    interrupted_job = Some(job.clone());
                    tracing::warn!(
                        status = "interrupted",
                        job = %job,
                        "{detail}: stopping the runner{}",
                        if job.is_empty() { String::new() } else { format!(" and its job {job}") }
                    );
                    policy.on_interruption()
                }
                Ok(Some(Notice::Rebalance(detail))) => {
                    tracing::warn!("{detail}; the machine may be interrupted soon");
                    Decision::Continue
                }
                Err(e) => {
                    tracing::debug!("not watching for interruptions: {e}");
                    watch = None;
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
                    policy.on_busy_at_deadline();
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("{e:#}"),
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

/// Waits, as long as it takes, for the agent to exit by itself, logging what it prints and
/// the events in it meanwhile; a signal ends the wait (and is returned).
async fn drain(s: &RunnerSettings, agent: &mut AgentProcess, signals: &mut Signals) -> Option<i32> {
    loop {
        tokio::select! {
            out = agent.next() => match out {
                Output::Line(line) => {
                    log_line(line.stream, &line.text);
                    if let Some(event) = parse_line(s.driver, &line.text) {
                        log_event(&event);
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

/// One look for a notice, when watching.
async fn poll_notice(
    watch: &mut Option<cml_cloud::interruption::Watch>,
) -> Result<Option<Notice>, cml_cloud::CloudError> {
    match watch {
        Some(w) => w.poll().await,
        None => Ok(None),
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

fn log_event(event: &AgentEvent) {
    match event {
        AgentEvent::Ready => tracing::info!(status = "ready", "runner ready"),
        AgentEvent::JobStarted { job } => {
            tracing::info!(status = "job_started", job = %job, "job started: {job}")
        }
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
