//! `cml workflow rerun`: re-running a whole workflow run (GitHub) or pipeline (GitLab,
//! Bitbucket), one implementation per forge, each in its forge's folder.
//!
//! Contract shared by every implementation (it is CML's behaviour):
//! - GitHub: a run that has not completed is cancelled first; the re-run (`POST
//!   /actions/runs/{id}/rerun`, every job) is asked once GitHub reports it completed. GitHub
//!   refuses re-runs of a run in progress, so the wait is bounded by the caller's `wait` and
//!   fails with [`ForgeError::WorkflowStillRunning`] rather than asking too early.
//! - GitLab: a running pipeline is cancelled, then retried (`POST .../pipelines/{id}/retry`,
//!   which re-runs its failed and cancelled jobs).
//! - Bitbucket: a new pipeline is started on the old one's target (Bitbucket has no re-run of
//!   a whole pipeline); a running one is left alone, as CML does.
//! - Exactly one re-run request is sent per call; it is never retried blindly (see
//!   `http.rs`), so a lost answer cannot start two.

use async_trait::async_trait;
use std::time::Duration;

use crate::ForgeError;

/// A forge whose workflow runs (pipelines) can be re-run.
#[async_trait]
pub trait Workflows: Send + Sync {
    /// `GitHub repository o/r`, for messages.
    fn scope(&self) -> String;
    /// Re-runs run (pipeline) `id` as described in the module contract; what was asked, for
    /// the log (`workflow run 42`).
    async fn rerun_workflow(&self, id: &str, wait: Duration) -> Result<String, ForgeError>;
}

/// How often a run being cancelled is looked at again.
pub(crate) const CANCEL_POLL: Duration = Duration::from_secs(1);
