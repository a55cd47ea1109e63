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
//! - When the runner could not be deregistered at the idle deadline (the forge failed), the
//!   runner stays idle and the next attempt is at the instant the caller names.
//!
//! Time is passed in by the caller; nothing here reads a clock. Durations come from callers
//! too and may be as large as `Duration::MAX`: every instant is computed with checked
//! arithmetic, and a deadline too far to represent is no deadline (it never comes).

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
    /// While idle after a failed deregistration: when to try again (instead of the idle
    /// timeout counted from `Phase::Idle::since`).
    idle_retry_at: Option<Instant>,
}

impl Policy {
    pub fn new(idle_timeout: IdleTimeout, single: bool) -> Policy {
        Policy {
            idle_timeout,
            single,
            phase: Phase::Starting,
            jobs_finished: 0,
            job_started: None,
            idle_retry_at: None,
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn jobs_finished(&self) -> u32 {
        self.jobs_finished
    }

    /// The instant at which the idle timeout expires (or, after a failed deregistration, the
    /// next attempt is due), when it is running. `None` while starting, busy, stopping, when
    /// the timeout is `never`, or when the instant is too far to represent.
    pub fn idle_deadline(&self) -> Option<Instant> {
        match (&self.phase, self.idle_timeout.as_duration()) {
            (Phase::Idle { since }, Some(d)) => self.idle_retry_at.or_else(|| since.checked_add(d)),
            _ => None,
        }
    }

    /// When the running job reaches `limit` (a job time limit less its margin); `None` when no
    /// job is running (as far as its start was seen), there is no limit, or the instant is too
    /// far to represent.
    pub fn job_deadline(&self, limit: Option<Duration>) -> Option<Instant> {
        match (&self.phase, self.job_started, limit) {
            (Phase::Busy { .. }, Some(at), Some(l)) => at.checked_add(l),
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
                self.idle_retry_at = None;
                Decision::Continue
            }
            AgentEvent::JobFinished { .. } => {
                self.jobs_finished = self.jobs_finished.saturating_add(1);
                self.job_started = None;
                self.idle_retry_at = None;
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
            self.idle_retry_at = None;
        }
    }

    /// The idle timeout expired but deregistering the runner failed (the forge did not
    /// answer, or failed): the runner may still be handed a job, so it is not stopped. It is
    /// idle again from `now`, and the next attempt is due `retry_in` later (the caller bounds
    /// and grows it). Does nothing unless the last decision was an idle-timeout stop.
    pub fn on_deregistration_failed(&mut self, now: Instant, retry_in: Duration) {
        if let Phase::Stopping(StopReason::IdleTimeout(_)) = self.phase {
            self.phase = Phase::Idle { since: now };
            // Too far to represent: the next attempt is at the ordinary idle deadline.
            self.idle_retry_at = now.checked_add(retry_in);
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
    #[test]
    fn a_failed_deregistration_keeps_the_runner_idle_and_retries_at_the_given_instant() {
        let t0 = Instant::now();
        let mut p = Policy::new(IdleTimeout::After(secs(10)), false);
        p.on_agent_event(&AgentEvent::Ready, t0);
        assert!(matches!(
            p.on_tick(t0 + secs(10)),
            Decision::Stop(StopReason::IdleTimeout(_))
        ));
        p.on_deregistration_failed(t0 + secs(11), secs(4));
        assert!(matches!(p.phase(), Phase::Idle { .. }));
        assert_eq!(p.idle_deadline(), Some(t0 + secs(15)));
        assert_eq!(p.on_tick(t0 + secs(14)), Decision::Continue);
        // A job taken meanwhile suspends the timer; its end restarts the full timeout.
        p.on_agent_event(&started(), t0 + secs(12));
        assert_eq!(p.idle_deadline(), None);
        assert_eq!(p.on_tick(t0 + secs(100)), Decision::Continue);
        p.on_agent_event(&finished(), t0 + secs(100));
        assert_eq!(p.idle_deadline(), Some(t0 + secs(110)));
        // Outside an idle-timeout stop it changes nothing.
        let mut q = Policy::new(IdleTimeout::After(secs(10)), false);
        q.on_agent_event(&AgentEvent::Ready, t0);
        q.on_signal(15);
        q.on_deregistration_failed(t0, secs(1));
        assert_eq!(q.phase(), &Phase::Stopping(StopReason::Signal(15)));
    }

    #[test]
    fn durations_too_long_for_the_clock_mean_no_deadline_not_a_panic() {
        let t0 = Instant::now();
        let mut p = Policy::new(IdleTimeout::After(Duration::MAX), false);
        p.on_agent_event(&AgentEvent::Ready, t0);
        assert_eq!(p.idle_deadline(), None);
        assert_eq!(p.on_tick(t0 + secs(1 << 30)), Decision::Continue);
        p.on_agent_event(&started(), t0);
        assert_eq!(p.job_deadline(Some(Duration::MAX)), None);
        p.on_agent_event(&finished(), t0);
        assert!(matches!(p.phase(), Phase::Idle { .. }));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// One input to the policy, as the supervisor gives them.
        #[derive(Debug, Clone)]
        enum Input {
            Ready,
            JobStarted,
            JobFinished,
            /// The clock advances by this many milliseconds, then the policy is ticked.
            Tick(u64),
            /// After an idle-timeout stop: the forge refused to delete (busy).
            BusyAtDeadline,
            /// After an idle-timeout stop: deleting failed; retry in this many milliseconds.
            DeregistrationFailed(u64),
            /// The agent ended its own idle wait (gitlab-runner `--wait-timeout`).
            AgentIdleExit,
        }

        fn input() -> impl Strategy<Value = Input> {
            prop_oneof![
                Just(Input::Ready),
                Just(Input::JobStarted),
                Just(Input::JobFinished),
                // Small steps, steps around the timeouts, and steps too long for the clock.
                (0u64..5_000).prop_map(Input::Tick),
                (0u64..u64::MAX).prop_map(Input::Tick),
                Just(Input::BusyAtDeadline),
                (0u64..5_000).prop_map(Input::DeregistrationFailed),
                any::<u64>().prop_map(Input::DeregistrationFailed),
                Just(Input::AgentIdleExit),
            ]
        }

        fn idle_timeout() -> impl Strategy<Value = IdleTimeout> {
            prop_oneof![
                Just(IdleTimeout::Never),
                (0u64..3_000).prop_map(|ms| IdleTimeout::After(Duration::from_millis(ms))),
                any::<u64>().prop_map(|s| IdleTimeout::After(Duration::from_secs(s))),
                Just(IdleTimeout::After(Duration::MAX)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Whatever the agent says and however the clock moves, the policy never decides
            /// an idle-timeout stop while a job runs (as far as the agent's lines or the
            /// forge's "busy" tell), never offers an idle deadline during a job, and never
            /// panics on its time arithmetic.
            #[test]
            fn a_busy_runner_is_never_stopped_for_idleness(
                timeout in idle_timeout(),
                single in any::<bool>(),
                inputs in proptest::collection::vec(input(), 0..60),
            ) {
                let mut now = Instant::now();
                let mut p = Policy::new(timeout, single);
                // The model: is a job running, and has the policy stopped (and why)?
                let mut busy = false;
                let mut stopped: Option<StopReason> = None;
                for input in inputs {
                    let decision = match input {
                        Input::Ready => p.on_agent_event(&AgentEvent::Ready, now),
                        Input::JobStarted => {
                            let d = p.on_agent_event(&started(), now);
                            if stopped.is_none() {
                                busy = true;
                            }
                            d
                        }
                        Input::JobFinished => {
                            let d = p.on_agent_event(&finished(), now);
                            if stopped.is_none() {
                                busy = false;
                            }
                            d
                        }
                        Input::Tick(ms) => {
                            // The supervisor's clock cannot pass what `Instant` holds.
                            if let Some(later) = now.checked_add(Duration::from_millis(ms)) {
                                now = later;
                            }
                            p.on_tick(now)
                        }
                        Input::BusyAtDeadline => {
                            if matches!(stopped, Some(StopReason::IdleTimeout(_))) {
                                // The forge saw the job the agent has not printed yet.
                                p.on_busy_at_deadline();
                                busy = true;
                                stopped = None;
                            }
                            Decision::Continue
                        }
                        Input::DeregistrationFailed(ms) => {
                            if matches!(stopped, Some(StopReason::IdleTimeout(_))) {
                                p.on_deregistration_failed(now, Duration::from_millis(ms));
                                stopped = None;
                            }
                            Decision::Continue
                        }
                        Input::AgentIdleExit => p.on_agent_idle_exit(),
                    };
                    if busy {
                        prop_assert_eq!(p.idle_deadline(), None, "an idle deadline during a job");
                    }
                    if let Decision::Stop(reason) = &decision {
                        if let Some(first) = &stopped {
                            prop_assert_eq!(first, reason, "the first stop reason wins");
                        } else {
                            prop_assert!(
                                !(busy && matches!(reason, StopReason::IdleTimeout(_))),
                                "a busy runner was stopped for idleness"
                            );
                            stopped = Some(reason.clone());
                        }
                    }
                    if stopped.is_some() {
                        prop_assert!(matches!(p.phase(), Phase::Stopping(_)));
                        prop_assert_eq!(p.idle_deadline(), None);
                    }
                }
            }
        }
    }
}
