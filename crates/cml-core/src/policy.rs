//! The runner policy: one state machine that decides when a runner stops.
//!
//! Contract (the same for every forge):
//! - The idle timer starts at the agent's first "ready" and restarts at the end of every
//!   job. It never runs while a job is running: a running job is never stopped by the idle
//!   timer.
//! - With `single`, the runner stops after its first job ends.
//! - A signal stops the runner whatever it is doing.
//! - An agent that exits without having been asked to is an error, unless it exits after its
//!   single job (an ephemeral agent leaves by itself).
//!
//! Time is passed in by the caller; nothing here reads a clock.

use crate::{AgentEvent, IdleTimeout};
use std::time::{Duration, Instant};

/// Why the runner stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Idle for the whole idle timeout.
    IdleTimeout(Duration),
    /// `--single` and the job ended.
    SingleJobDone,
    /// SIGINT or SIGTERM (the signal number).
    Signal(i32),
    /// The agent exited on its own (exit code, if it had one).
    AgentExited(Option<i32>),
    /// The cloud announced it is taking the machine away (spot interruption).
    Interrupted,
    /// The job ran into the forge's job time limit (less a margin): stopped to be re-run.
    JobTimeLimit,
}

impl StopReason {
    /// A short machine-readable name, used as the `reason` field of the `terminated` event.
    pub fn code(&self) -> &'static str {
        match self {
            StopReason::IdleTimeout(_) => "idle_timeout",
            StopReason::SingleJobDone => "single_job_done",
            StopReason::Signal(_) => "signal",
            StopReason::AgentExited(_) => "agent_exited",
            StopReason::Interrupted => "interrupted",
            StopReason::JobTimeLimit => "job_time_limit",
        }
    }

    /// True for the reasons that are a normal end of a runner's life.
    pub fn is_clean(&self) -> bool {
        matches!(self, StopReason::IdleTimeout(_) | StopReason::SingleJobDone)
    }
}

/// Where the runner is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Agent started, not yet ready.
    Starting,
    /// Ready and waiting for a job since the instant given.
    Idle { since: Instant },
    /// Running a job (name unknown when the forge reported the runner busy before the
    /// agent's job line was read).
    Busy { job: Option<String> },
    /// A stop was decided; no further decisions are made.
    Stopping(StopReason),
}

/// What the caller must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Continue,
    Stop(StopReason),
}

#[derive(Debug, Clone)]
pub struct Policy {
    idle_timeout: IdleTimeout,
    single: bool,
    phase: Phase,
    jobs_finished: u32,
    /// When the running job started (from the agent's job line).
    job_started: Option<Instant>,
}

impl Policy {
    pub fn new(idle_timeout: IdleTimeout, single: bool) -> Policy {
        Policy {
            idle_timeout,
            single,
            phase: Phase::Starting,
            jobs_finished: 0,
            job_started: None,
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn jobs_finished(&self) -> u32 {
        self.jobs_finished
    }

    /// The instant at which the idle timeout expires, when it is running.
    /// `None` while starting, busy, stopping, or when the timeout is `never`.
    pub fn idle_deadline(&self) -> Option<Instant> {
        match (&self.phase, self.idle_timeout.as_duration()) {
            (Phase::Idle { since }, Some(d)) => Some(*since + d),
            _ => None,
        }
    }

    /// When the running job reaches `limit` (a job time limit less its margin); `None` when no
    /// job is running (as far as its start was seen) or there is no limit.
    pub fn job_deadline(&self, limit: Option<Duration>) -> Option<Instant> {
        match (&self.phase, self.job_started, limit) {
            (Phase::Busy { .. }, Some(at), Some(l)) => Some(at + l),
            _ => None,
        }
    }

    /// The running job reached its time limit: stop, so that it can be re-run.
    pub fn on_job_time_limit(&mut self) -> Decision {
        self.stop(StopReason::JobTimeLimit)
    }

    /// Feeds an event parsed from the agent's output.
    pub fn on_agent_event(&mut self, event: &AgentEvent, now: Instant) -> Decision {
        if matches!(self.phase, Phase::Stopping(_)) {
            return Decision::Continue;
        }
        match event {
            AgentEvent::Ready => {
                // A listener restart (self-update) prints ready again; a job in progress stays.
                if matches!(self.phase, Phase::Starting) {
                    self.phase = Phase::Idle { since: now };
                }
                Decision::Continue
            }
            AgentEvent::JobStarted { job } => {
                self.phase = Phase::Busy {
                    job: Some(job.clone()),
                };
                self.job_started = Some(now);
                Decision::Continue
            }
            AgentEvent::JobFinished { .. } => {
                self.jobs_finished += 1;
                self.job_started = None;
                if self.single {
                    return self.stop(StopReason::SingleJobDone);
                }
                self.phase = Phase::Idle { since: now };
                Decision::Continue
            }
        }
    }

    /// Called when time passes (at the idle deadline or any other wake-up).
    pub fn on_tick(&mut self, now: Instant) -> Decision {
        match self.idle_deadline() {
            Some(deadline) if now >= deadline => self.stop(StopReason::IdleTimeout(
                self.idle_timeout.as_duration().unwrap_or_default(),
            )),
            _ => Decision::Continue,
        }
    }

    /// The idle timeout expired but the forge refused to remove the runner because it had
    /// just taken a job: the runner is busy, the timer stops until that job ends.
    pub fn on_busy_at_deadline(&mut self) {
        if let Phase::Stopping(StopReason::IdleTimeout(_)) = self.phase {
            self.phase = Phase::Busy { job: None };
        }
    }

    /// The machine is being taken away: stop now, job or not (it cannot finish here).
    pub fn on_interruption(&mut self) -> Decision {
        self.stop(StopReason::Interrupted)
    }

    pub fn on_signal(&mut self, signal: i32) -> Decision {
        self.stop(StopReason::Signal(signal))
    }

    /// The agent process ended without being asked to.
    pub fn on_agent_exit(&mut self, code: Option<i32>) -> Decision {
        if self.single && self.jobs_finished > 0 {
            return self.stop(StopReason::SingleJobDone);
        }
        self.stop(StopReason::AgentExited(code))
    }

    /// The agent ended by itself with success because it had no job for its own wait timeout
    /// (gitlab-runner `run-single --wait-timeout`, given the same idle timeout). That is an
    /// idle timeout when the runner was idle and has one; anything else is an agent exit.
    pub fn on_agent_idle_exit(&mut self) -> Decision {
        match (&self.phase, self.idle_timeout.as_duration()) {
            (Phase::Idle { .. }, Some(d)) => self.stop(StopReason::IdleTimeout(d)),
            _ => self.on_agent_exit(Some(0)),
        }
    }

    fn stop(&mut self, reason: StopReason) -> Decision {
        if let Phase::Stopping(existing) = &self.phase {
            // The first reason wins; later inputs cannot change why we stopped.
            return Decision::Stop(existing.clone());
        }
        self.phase = Phase::Stopping(reason.clone());
        Decision::Stop(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobResult;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }
    fn started() -> AgentEvent {
        AgentEvent::JobStarted {
            job: "train".into(),
        }
    }
    fn finished() -> AgentEvent {
        AgentEvent::JobFinished {
            job: "train".into(),
            result: JobResult::Succeeded,
        }
    }

    #[test]
    fn idle_timer_counts_from_ready() {
        let t0 = Instant::now();
        let mut p = Policy::new(IdleTimeout::After(secs(180)), false);
        assert_eq!(p.idle_deadline(), None);
        assert_eq!(
            p.on_tick(t0 + secs(1000)),
            Decision::Continue,
            "not ready yet"
        );
        p.on_agent_event(&AgentEvent::Ready, t0);
        assert_eq!(p.idle_deadline(), Some(t0 + secs(180)));
        assert_eq!(p.on_tick(t0 + secs(179)), Decision::Continue);
        assert_eq!(
            p.on_tick(t0 + secs(180)),
            Decision::Stop(StopReason::IdleTimeout(secs(180)))
        );
    }

    #[test]
    fn a_running_job_is_never_stopped_by_the_idle_timer() {
        let t0 = Instant::now();
        let mut p = Policy::new(IdleTimeout::After(secs(10)), false);
        p.on_agent_event(&AgentEvent::Ready, t0);
        p.on_agent_event(&started(), t0 + secs(5));
        assert_eq!(p.idle_deadline(), None);
        assert_eq!(p.on_tick(t0 + secs(10_000)), Decision::Continue);
        // the timer restarts at the job's end
        p.on_agent_event(&finished(), t0 + secs(10_000));
        assert_eq!(p.idle_deadline(), Some(t0 + secs(10_010)));
        assert_eq!(p.on_tick(t0 + secs(10_009)), Decision::Continue);
        assert!(matches!(p.on_tick(t0 + secs(10_010)), Decision::Stop(_)));
        assert_eq!(p.jobs_finished(), 1);
    }

    #[test]
    fn ready_again_during_a_job_keeps_it_busy() {
        let t0 = Instant::now();
        let mut p = Policy::new(IdleTimeout::After(secs(10)), false);
        p.on_agent_event(&AgentEvent::Ready, t0);
        p.on_agent_event(&started(), t0);
        p.on_agent_event(&AgentEvent::Ready, t0 + secs(1));
        assert_eq!(p.on_tick(t0 + secs(100)), Decision::Continue);
    }

    #[test]
    fn never_disables_the_timer() {
        let t0 = Instant::now();
        let mut p = Policy::new(IdleTimeout::Never, false);
        p.on_agent_event(&AgentEvent::Ready, t0);
        assert_eq!(p.idle_deadline(), None);
        assert_eq!(p.on_tick(t0 + secs(1 << 30)), Decision::Continue);
    }

    #[test]
    fn single_stops_after_one_job_and_its_agent_may_leave() {
        let t0 = Instant::now();
        let mut p = Policy::new(IdleTimeout::After(secs(10)), true);
        p.on_agent_event(&AgentEvent::Ready, t0);
        p.on_agent_event(&started(), t0);
        assert_eq!(
            p.on_agent_event(&finished(), t0),
            Decision::Stop(StopReason::SingleJobDone)
        );
        assert_eq!(
            p.on_agent_exit(Some(0)),
            Decision::Stop(StopReason::SingleJobDone)
        );
    }

    #[test]
    fn agent_exit_without_a_job_is_an_error_reason() {
        let mut p = Policy::new(IdleTimeout::After(secs(10)), true);
        let d = p.on_agent_exit(Some(1));
        assert_eq!(d, Decision::Stop(StopReason::AgentExited(Some(1))));
        assert!(!StopReason::AgentExited(Some(1)).is_clean());
    }

    #[test]
    fn first_stop_reason_wins() {
        let t0 = Instant::now();
        let mut p = Policy::new(IdleTimeout::After(secs(1)), false);
        p.on_agent_event(&AgentEvent::Ready, t0);
        assert_eq!(p.on_signal(15), Decision::Stop(StopReason::Signal(15)));
        assert_eq!(
            p.on_agent_exit(Some(0)),
            Decision::Stop(StopReason::Signal(15))
        );
        assert_eq!(
            p.on_tick(t0 + secs(5)),
            Decision::Continue,
            "no deadline while stopping"
        );
    }

    #[test]
    fn busy_at_deadline_suspends_the_timer_until_the_job_ends() {
        let t0 = Instant::now();
        let mut p = Policy::new(IdleTimeout::After(secs(10)), false);
        p.on_agent_event(&AgentEvent::Ready, t0);
        assert!(matches!(
            p.on_tick(t0 + secs(10)),
            Decision::Stop(StopReason::IdleTimeout(_))
        ));
        p.on_busy_at_deadline();
        assert_eq!(p.phase(), &Phase::Busy { job: None });
        assert_eq!(p.on_tick(t0 + secs(100)), Decision::Continue);
        p.on_agent_event(&started(), t0 + secs(11));
        p.on_agent_event(&finished(), t0 + secs(50));
        assert_eq!(p.idle_deadline(), Some(t0 + secs(60)));
    }

    #[test]
    fn an_agent_ending_its_own_idle_wait_is_an_idle_timeout_only_when_idle() {
        let t0 = Instant::now();
        let mut p = Policy::new(IdleTimeout::After(secs(60)), false);
        p.on_agent_event(&AgentEvent::Ready, t0);
        assert_eq!(
            p.on_agent_idle_exit(),
            Decision::Stop(StopReason::IdleTimeout(secs(60)))
        );

        let mut busy = Policy::new(IdleTimeout::After(secs(60)), false);
        busy.on_agent_event(&AgentEvent::Ready, t0);
        busy.on_agent_event(&started(), t0);
        assert_eq!(
            busy.on_agent_idle_exit(),
            Decision::Stop(StopReason::AgentExited(Some(0)))
        );

        let mut never = Policy::new(IdleTimeout::Never, false);
        never.on_agent_event(&AgentEvent::Ready, t0);
        assert_eq!(
            never.on_agent_idle_exit(),
            Decision::Stop(StopReason::AgentExited(Some(0)))
        );

        let mut single = Policy::new(IdleTimeout::After(secs(60)), true);
        single.on_agent_event(&AgentEvent::Ready, t0);
        single.on_agent_event(&started(), t0);
        assert_eq!(
            single.on_agent_event(&finished(), t0),
            Decision::Stop(StopReason::SingleJobDone)
        );
        assert_eq!(
            single.on_agent_idle_exit(),
            Decision::Stop(StopReason::SingleJobDone)
        );
    }

    #[test]
    fn an_interruption_stops_even_during_a_job() {
        let t0 = Instant::now();
        let mut p = Policy::new(IdleTimeout::Never, false);
        p.on_agent_event(&AgentEvent::Ready, t0);
        p.on_agent_event(&started(), t0);
        assert_eq!(p.on_interruption(), Decision::Stop(StopReason::Interrupted));
        assert_eq!(StopReason::Interrupted.code(), "interrupted");
        // The first reason wins.
        assert_eq!(p.on_signal(15), Decision::Stop(StopReason::Interrupted));
    }

    #[test]
    fn the_job_deadline_runs_only_during_a_job() {
        let t0 = Instant::now();
        let mut p = Policy::new(IdleTimeout::Never, false);
        let limit = Some(secs(100));
        p.on_agent_event(&AgentEvent::Ready, t0);
        assert_eq!(p.job_deadline(limit), None);
        p.on_agent_event(&started(), t0 + secs(5));
        assert_eq!(p.job_deadline(limit), Some(t0 + secs(105)));
        assert_eq!(p.job_deadline(None), None);
        p.on_agent_event(&finished(), t0 + secs(6));
        assert_eq!(p.job_deadline(limit), None);
        p.on_agent_event(&started(), t0 + secs(7));
        assert_eq!(
            p.on_job_time_limit(),
            Decision::Stop(StopReason::JobTimeLimit)
        );
        assert_eq!(StopReason::JobTimeLimit.code(), "job_time_limit");
    }
}
