//! Forge clients behind one trait.
//!
//! A [`Forge`] is what the runner lifecycle needs from GitHub, GitLab or Bitbucket: list the
//! runners of a repository or organization, hand an agent what it needs to register, and
//! delete a runner. Every call retries transient failures (5xx, rate limits) with a bounded
//! backoff and fails fast on a rejected token, naming the variable it came from. Requests that
//! must not be done twice (creating a runner, starting a pipeline, retrying a job) are retried
//! only when the forge said it did not process them; after a 5xx or a lost answer the client
//! looks up whether they took effect before asking again.

// Errors carry the scope, the runner and the forge's message so they can say what failed and
// how to fix it; they are built on cold paths only, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod bitbucket;
pub mod error;
pub mod github;
pub mod gitlab;
mod http;
pub mod report;
pub mod workflow;

pub use error::{ApiError, ForgeError};
pub use http::RetryPolicy;
pub use report::{
    AutoMerged, CheckRun, Comment, MergeMethod, NewPullRequest, PullRequest, Reports, Upload,
};
pub use workflow::Workflows;

use async_trait::async_trait;
use cml_core::{Labels, RunnerInfo, Secret};

/// What an agent needs to register itself with the forge.
#[derive(Debug, Clone)]
pub enum Registration {
    /// GitHub: `config.sh --url URL` with a registration token (valid 1 h).
    GithubToken { url: String, token: Secret },
    /// GitHub: a just-in-time configuration the forge (or a runner scale set) made for runner
    /// `runner_id`: `run.sh` runs it with no registration step, as an ephemeral runner.
    GithubJit { runner_id: String, config: Secret },
    /// GitLab: the runner was created through the API; `gitlab-runner run-single --url URL`
    /// authenticates with its runner token (`glrt-…`, or a legacy runner token).
    Gitlab {
        /// The instance's web URL, with its sub-path if any (`https://gitlab.com`).
        url: String,
        /// The runner's id (decimal).
        id: String,
        token: Secret,
    },
    /// Bitbucket Cloud: the runner was created through the API with an OAuth client the agent
    /// authenticates with.
    Bitbucket {
        account_uuid: String,
        repository_uuid: String,
        /// The runner's `{uuid}`, also its id.
        runner_uuid: String,
        oauth_client_id: String,
        oauth_client_secret: Secret,
    },
}

impl Registration {
    /// The runner's id when the forge created the runner already (GitLab, Bitbucket); GitHub's
    /// agent registers itself, so its id is only known afterwards.
    pub fn runner_id(&self) -> Option<&str> {
        match self {
            Registration::GithubToken { .. } => None,
            Registration::GithubJit { runner_id, .. } => Some(runner_id),
            Registration::Gitlab { id, .. } => Some(id),
            Registration::Bitbucket { runner_uuid, .. } => Some(runner_uuid),
        }
    }
}

/// The outcome of deleting a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// The forge removed it now.
    Removed,
    /// The forge no longer knew it (ephemeral runners remove themselves after their job).
    AlreadyGone,
    /// The forge refused because the runner is running a job (the message says so).
    Busy(String),
}

/// What became of the work of an interrupted runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rerun {
    /// A re-run was requested (what was re-run).
    Requested(String),
    /// Someone (another interrupted runner of the same run) re-ran it already.
    AlreadyRerun(String),
    /// The run was still in progress when we had to give up waiting for it.
    StillRunning(String),
    /// The runner was not running any job the forge knows of.
    NothingToRerun,
    /// This forge's re-runs are not supported.
    Unsupported,
}

/// A job waiting for a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// The forge's id of the job (GitHub job id, GitLab job id, Bitbucket step uuid).
    pub id: String,
    pub name: String,
    /// The labels (GitHub `runs-on`, GitLab tags, Bitbucket `runs-on`) a runner must carry.
    pub labels: Vec<String>,
}

/// A forge, seen from one repository or organization.
///
/// Contract: methods never log or return secrets in errors; `delete_runner` is idempotent
/// (a runner that is already gone is `Deleted::AlreadyGone`, not an error).
#[async_trait]
pub trait Forge: Send + Sync {
    /// Human-readable scope, e.g. `GitHub repository o/r`.
    fn scope(&self) -> String;
    /// Every runner of the scope (all pages).
    async fn runners(&self) -> Result<Vec<RunnerInfo>, ForgeError>;
    /// Mints what an agent needs to register a runner named `name` with `labels`.
    async fn registration(&self, name: &str, labels: &Labels) -> Result<Registration, ForgeError>;
    /// Deletes runner `id` (named `name`, for messages) while its agent may still be running:
    /// a runner that has a job, or is handed one during the call, is not deleted
    /// ([`Deleted::Busy`]) and keeps its job. Forges that would delete a busy runner (GitLab,
    /// Bitbucket) first stop it from taking new work, then look for a running job, then
    /// delete it (or let it take work again when it was busy). On an error the runner may
    /// still exist and take work: nothing may be concluded from an error.
    async fn delete_runner(&self, id: &str, name: &str) -> Result<Deleted, ForgeError>;

    /// Deletes runner `id` (named `name`) whose agent has stopped: since no agent runs its
    /// jobs any more, the forge's "busy" is not asked (GitLab lists the job of a killed
    /// runner as running for up to an hour). A forge that itself refuses to delete a runner
    /// it still counts busy (GitHub) may answer [`Deleted::Busy`].
    async fn delete_stopped_runner(&self, id: &str, name: &str) -> Result<Deleted, ForgeError> {
        self.delete_runner(id, name).await
    }
    /// The secrets this client holds or has minted so far, for log redaction.
    fn secrets(&self) -> Vec<String>;

    /// Whether [`Forge::delete_runner`] can see that a runner is running a job (and answer
    /// [`Deleted::Busy`]). When it cannot (a GitLab runner holding only its own token), the
    /// runner must be deleted only once its agent has stopped taking jobs.
    fn sees_running_jobs(&self) -> bool {
        true
    }

    /// Re-runs the job runner `runner` was running (named `job` by its agent) when its
    /// machine was taken away, once its run has completed (forges refuse re-runs before),
    /// waiting at most `wait`. Exactly once: when the run was re-run already, nothing more is
    /// asked. The runner must be deregistered already. `job` names one job: an empty name
    /// matches none (nothing is re-run), never "any job of this runner".
    async fn rerun_interrupted(
        &self,
        runner: &str,
        job: &str,
        wait: std::time::Duration,
    ) -> Result<Rerun, ForgeError> {
        let _ = (runner, job, wait);
        Ok(Rerun::Unsupported)
    }

    /// The jobs of the scope waiting for a runner (not yet taken by one), newest runs first,
    /// with the labels each asks for. Bounded: a few pages at most. A forge or scope that
    /// cannot list them answers [`ForgeError::QueueUnsupported`].
    async fn queued_jobs(&self) -> Result<Vec<QueuedJob>, ForgeError> {
        Err(ForgeError::QueueUnsupported {
            scope: self.scope(),
        })
    }
}
