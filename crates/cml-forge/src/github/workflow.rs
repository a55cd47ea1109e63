//! [`Workflows`] for GitHub: cancel a run that has not completed, wait for it, re-run it.

use async_trait::async_trait;
use cml_core::repo::GithubScope;
use reqwest::Method;
use std::time::Duration;

use super::{CallError, GithubClient, Run};
use crate::workflow::{Workflows, CANCEL_POLL};
use crate::{ApiError, ForgeError};

#[async_trait]
impl Workflows for GithubClient {
    fn scope(&self) -> String {
        self.scope_name()
    }

    async fn rerun_workflow(&self, id: &str, wait: Duration) -> Result<String, ForgeError> {
        let GithubScope::Repo { .. } = self.github_scope() else {
            return Err(ForgeError::Unsupported {
                scope: self.scope_name(),
                what: "workflow runs",
                hint: "workflow runs belong to a repository: pass --repo https://github.com/OWNER/REPO",
            });
        };
        let run_id: u64 = id.parse().map_err(|_| ForgeError::BadWorkflowId {
            scope: self.scope_name(),
            id: id.to_string(),
            expected: "a workflow run id (a number, as in GITHUB_RUN_ID)",
        })?;
        let what = format!("workflow run {run_id}");
        let url = |rest: &str| {
            format!(
                "{}{}/actions/runs/{run_id}{rest}",
                self.api,
                self.github_scope().api_prefix()
            )
        };
        let read = |cause| ForgeError::ReadWorkflow {
            scope: self.scope_name(),
            id: id.to_string(),
            cause,
        };
        let get = || async {
            self.call(Method::GET, &url(""), None, &[200])
                .await
                .map_err(|e| e.into_forge(read))?
                .json::<Run>()
                .map_err(read)
        };
        let mut run = get().await?;
        if run.status != "completed" {
            tracing::info!("{what} is {}: cancelling it first", run.status);
            self.call(Method::POST, &url("/cancel"), None, &[202])
                .await
                .map_err(|e| {
                    e.into_forge(|cause| ForgeError::CancelWorkflow {
                        scope: self.scope_name(),
                        id: id.to_string(),
                        cause,
                    })
                })?;
            let deadline = tokio::time::Instant::now() + wait;
            while run.status != "completed" {
                if tokio::time::Instant::now() + CANCEL_POLL > deadline {
                    return Err(ForgeError::WorkflowStillRunning {
                        scope: self.scope_name(),
                        id: id.to_string(),
                        waited_secs: wait.as_secs(),
                    });
                }
                tokio::time::sleep(CANCEL_POLL).await;
                run = get().await?;
            }
        }
        let rerun = |cause| ForgeError::RerunWorkflow {
            scope: self.scope_name(),
            id: id.to_string(),
            cause,
        };
        match self.call(Method::POST, &url("/rerun"), None, &[201]).await {
            Ok(_) => Ok(what),
            Err(CallError::Api(ApiError::Forbidden { message, .. }))
                if message.contains("already running") =>
            {
                Err(rerun(ApiError::Status {
                    status: 403,
                    message: format!("{message} (it was started again by someone else)"),
                }))
            }
            Err(e) => Err(e.into_forge(rerun)),
        }
    }
}
