//! Supervision of the official runner agent: install it, configure it, start it, read its
//! output line by line, and stop it.
//!
//! Guarantees:
//! - An agent is started in its own process group, so stopping it reaches the processes it
//!   started (the GitHub listener and its workers), not only the wrapper script.
//! - The agent's environment (and so every job step's) holds none of our tokens: see
//!   [`env::agent_env`].
//! - Output is split into whole lines whatever the pipe's read sizes are.
//! - An agent starts with default signal dispositions and an empty signal mask, whatever the
//!   supervisor inherited, and optionally as an unprivileged user ([`user::RunAs`]).

pub mod bitbucket;
pub mod env;
pub mod error;
pub mod github;
pub mod gitlab;
pub mod install;
pub mod process;
pub mod user;

pub use error::AgentError;
pub use process::{AgentProcess, Line, Stream};
pub use user::RunAs;
