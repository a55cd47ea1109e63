//! Pure types and rules of `cml`: everything that can be decided without I/O.
//!
//! Nothing in this crate touches the network, the file system, processes or the clock:
//! time is always passed in by the caller. That keeps the rules unit-testable and lets the
//! binary, the agent supervisor and the cloud launcher share one copy of them.

pub mod azure;
pub mod cloud;
pub mod duration;
pub mod event;
pub mod gcp;
pub mod k8s;
pub mod labels;
pub mod orphans;
pub mod policy;
pub mod pool;
pub mod release;
pub mod repo;
pub mod report;
pub mod reuse;
pub mod runner;
pub mod secret;
pub mod startup;

pub use duration::IdleTimeout;
pub use event::{AgentEvent, JobResult};
pub use labels::Labels;
pub use repo::{Driver, RepoUrl};
pub use runner::RunnerInfo;
pub use secret::Secret;
