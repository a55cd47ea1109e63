//! [`Workflows`] for GitLab: cancel an active pipeline, wait for it to stop, retry it.

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use std::time::Duration;

use super::GitlabClient;
use crate::workflow::{Workflows, CANCEL_POLL};
use crate::ForgeError;

#[derive(Deserialize)]
struct Pipeline {
    status: String,
}

/// Pipeline statuses in which GitLab may still start or run jobs.
const ACTIVE: &[&str] = &[
    "created",
    "waiting_for_resource",
    "preparing",
    "pending",
    "running",
    "scheduled",
];

#[async_trait]
impl Workflows for GitlabClient {
    fn scope(&self) -> String {
        crate::Forge::scope(self)
    }

    async fn rerun_workflow(&self, id: &str, wait: Duration) -> Result<String, ForgeError> {
        let pipeline: u64 = id.parse().map_err(|_| ForgeError::BadWorkflowId {
            scope: crate::Forge::scope(self),
            id: id.to_string(),
            expected: "a pipeline id (a number, as in CI_PIPELINE_ID)",
        })?;
        let what = format!("pipeline {pipeline}");
        let url = |rest: &str| {
            format!(
                "{}/projects/{}/pipelines/{pipeline}{rest}",
                self.api, self.project_id
            )
        };
        let read = |cause| ForgeError::ReadWorkflow {
            scope: crate::Forge::scope(self),
            id: id.to_string(),
            cause,
        };
        let status = || async {
            self.call(Method::GET, &url(""), None, &[200])
                .await
                .and_then(|a| a.json::<Pipeline>())
                .map(|p| p.status)
                .map_err(read)
        };
        let mut current = status().await?;
        if ACTIVE.contains(&current.as_str()) {
            tracing::info!("{what} is {current}: cancelling it first");
            self.call(Method::POST, &url("/cancel"), None, &[200, 201])
                .await
                .map_err(|cause| ForgeError::CancelWorkflow {
                    scope: crate::Forge::scope(self),
                    id: id.to_string(),
                    cause,
                })?;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                current = status().await?;
                if !ACTIVE.contains(&current.as_str()) && current != "canceling" {
                    break;
                }
                if tokio::time::Instant::now() + CANCEL_POLL > deadline {
                    return Err(ForgeError::WorkflowStillRunning {
                        scope: crate::Forge::scope(self),
                        id: id.to_string(),
                        waited_secs: wait.as_secs(),
                    });
                }
                tokio::time::sleep(CANCEL_POLL).await;
            }
        }
        self.call(Method::POST, &url("/retry"), None, &[201])
            .await
            .map_err(|cause| ForgeError::RerunWorkflow {
                scope: crate::Forge::scope(self),
                id: id.to_string(),
                cause,
            })?;
        Ok(what)
    }
}
