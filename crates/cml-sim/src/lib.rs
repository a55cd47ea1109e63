//! Simulators for tests and the offline demo: a stateful GitHub-compatible REST API server
//! ([`SimServer`]) and a simulated `actions/runner` agent (`cml-sim agent config|run`).
//!
//! [`gcp::GcpSim`] is a simulated Google Compute Engine (REST API v1, OAuth token endpoint,
//! per-instance metadata servers) checked against Google's discovery document.
//! [`azure::AzureSim`] is a simulated Azure Resource Manager (with Entra ID's token endpoint and
//! per-VM metadata services) checked against Microsoft's generated SDK models.
//! [`k8s::K8sSim`] is a simulated Kubernetes API server (Jobs, pods, Secrets, events, logs)
//! checked against Kubernetes' strict JSON schemas.
//!
//! The server serves GitHub's runner, job, run, App-installation and release routes (both at
//! the root and under `/api/v3`), plus simulator-only routes under `/_sim/`, and the Actions
//! service of runner scale sets under `/_actions/` (see `github/scaleset.rs`). The agent is the
//! `cml-sim` binary itself, started through `config.sh`/`run.sh` scripts written by
//! [`write_agent_scripts`] or packed by [`agent_tarball`].

pub mod agent;
pub mod azure;
pub mod bitbucket;
pub mod config;
pub mod ec2proxy;
pub mod gcp;
mod github;
pub mod gitlab;
pub mod imds;
pub mod k8s;
pub mod openapi;
pub mod reports;
mod server;
mod tarball;
pub mod types;
mod util;

pub use agent::AGENT_VERSION;
pub use config::{AppConfig, Fault, Pat, SimConfig, DEFAULT_PAT};
pub use github::scaleset::Statistics as ScaleSetStatistics;
pub use github::state::RecordedRequest;
pub use github::GITHUB_ROUTES;
pub use imds::ImdsServer;
pub use reports::{CommentOn, ForgeKind, SimCheck, SimComment, SimPull, SimUpload};
pub use server::SimServer;
pub use tarball::{agent_tarball, write_agent_scripts};
pub use types::{AnyJob, AnyRunner, JobState, QueuedJob, SimJob, SimRunner, SimScaleSet};
