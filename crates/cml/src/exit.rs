//! Exit codes of `cml`, documented in the README.

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: the runner ended normally (idle timeout, single job done) or an existing runner
    /// was reused.
    Success,
    /// 128 + n: stopped by signal n (130 for SIGINT, 143 for SIGTERM), after a clean
    /// deregistration.
    Signal(i32),
}

impl ExitCode {
    pub fn from_signal(n: i32) -> ExitCode {
        ExitCode::Signal(n)
    }

    pub fn code(self) -> i32 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Signal(n) => 128 + n,
        }
    }
}

/// 1: an operation failed (forge API, agent install or configuration, deregistration).
pub const ERROR: i32 = 1;
/// 2: an invalid command line or option value; nothing was created or registered.
pub const USAGE: i32 = 2;
/// 3: the agent exited on its own; the runner was deregistered.
pub const AGENT_EXITED: i32 = 3;

/// An error with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn error(error: anyhow::Error) -> Failure {
        Failure { code: ERROR, error }
    }
    pub fn usage(error: anyhow::Error) -> Failure {
        Failure { code: USAGE, error }
    }
    pub fn agent(error: anyhow::Error) -> Failure {
        Failure {
            code: AGENT_EXITED,
            error,
        }
    }
}
