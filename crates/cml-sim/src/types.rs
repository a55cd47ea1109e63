//! Snapshots of the simulator's state handed to tests and to `GET /_sim/state`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::github::state::{Job, Runner};

/// A registered runner as seen by tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimRunner {
    pub id: u64,
    pub name: String,
    /// `owner/repo` for a repository runner, `org` for an organization runner.
    pub scope: String,
    pub labels: Vec<String>,
    /// `online` or `offline`.
    pub status: String,
    pub busy: bool,
    pub ephemeral: bool,
}

impl SimRunner {
    pub(crate) fn from_runner(r: &Runner, offline_after: Duration) -> Self {
        SimRunner {
            id: r.id,
            name: r.name.clone(),
            scope: r.scope.key(),
            labels: r.labels.iter().map(|(l, _)| l.clone()).collect(),
            status: if r.online(offline_after) {
                "online"
            } else {
                "offline"
            }
            .into(),
            busy: r.busy,
            ephemeral: r.ephemeral,
        }
    }
}

/// A workflow job as seen by tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimJob {
    pub id: u64,
    pub run_id: u64,
    pub repo: String,
    pub name: String,
    pub labels: Vec<String>,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// `success`, `failure` or `cancelled` once completed.
    pub conclusion: Option<String>,
    pub runner_id: Option<u64>,
    pub runner_name: Option<String>,
    pub run_attempt: u64,
    /// Combined stdout and stderr of the job's command, as reported by the agent.
    pub output: String,
}

impl From<&Job> for SimJob {
    fn from(j: &Job) -> Self {
        SimJob {
            id: j.id,
            run_id: j.run_id,
            repo: j.repo.clone(),
            name: j.name.clone(),
            labels: j.labels.clone(),
            status: j.status.clone(),
            conclusion: j.conclusion.clone(),
            runner_id: j.runner_id,
            runner_name: j.runner_name.clone(),
            run_attempt: j.run_attempt,
            output: j.output.clone(),
        }
    }
}

/// Ids of a queued job and of its workflow run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedJob {
    pub job_id: u64,
    pub run_id: u64,
}

/// A runner of any of the three forges, as the forge-independent tests see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnyRunner {
    /// The forge's id: decimal for GitHub and GitLab, `{uuid}` for Bitbucket.
    pub id: String,
    pub name: String,
    pub labels: Vec<String>,
    /// The agent is connected (polled recently).
    pub online: bool,
    /// Running a job.
    pub busy: bool,
}

/// Where a job of any forge is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting for a runner.
    Queued,
    /// Taken by a runner, not finished.
    Running,
    Succeeded,
    Failed,
    /// Cancelled, or stopped by the runner going away.
    Cancelled,
}

impl JobState {
    /// Finished, one way or another.
    pub fn is_done(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A job (GitHub workflow job, GitLab CI job, Bitbucket pipeline step) of any forge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnyJob {
    /// The forge's id: decimal for GitHub and GitLab, the step's `{uuid}` for Bitbucket.
    pub id: String,
    pub name: String,
    pub state: JobState,
    /// The runner that took it.
    pub runner_name: Option<String>,
    /// Combined stdout and stderr of the job's command, as reported by the agent.
    pub output: String,
}

impl From<&SimJob> for AnyJob {
    fn from(j: &SimJob) -> Self {
        let state = match (j.status.as_str(), j.conclusion.as_deref()) {
            ("queued", _) => JobState::Queued,
            ("completed", Some("success")) => JobState::Succeeded,
            ("completed", Some("cancelled")) => JobState::Cancelled,
            ("completed", _) => JobState::Failed,
            _ => JobState::Running,
        };
        AnyJob {
            id: j.id.to_string(),
            name: j.name.clone(),
            state,
            runner_name: j.runner_name.clone(),
            output: j.output.clone(),
        }
    }
}

impl From<&SimRunner> for AnyRunner {
    fn from(r: &SimRunner) -> Self {
        AnyRunner {
            id: r.id.to_string(),
            name: r.name.clone(),
            labels: r.labels.clone(),
            online: r.status == "online",
            busy: r.busy,
        }
    }
}

/// A runner scale set of the simulated Actions service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimScaleSet {
    pub id: u64,
    pub name: String,
    /// `owner/repo` or `org`.
    pub scope: String,
    pub labels: Vec<String>,
    /// Owners of its open message sessions (at most one).
    pub session_owners: Vec<String>,
    /// The `X-ScaleSetMaxCapacity` its listener sent with its last queue poll.
    pub max_capacity: Option<u32>,
    pub statistics: crate::ScaleSetStatistics,
}
