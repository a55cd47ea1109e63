//! [`Workflows`] for Bitbucket: a new pipeline on the old one's target (Bitbucket has no
//! re-run of a whole pipeline).

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

use super::BitbucketClient;
use crate::workflow::Workflows;
use crate::{Forge, ForgeError};

#[async_trait]
impl Workflows for BitbucketClient {
    fn scope(&self) -> String {
        Forge::scope(self)
    }

    async fn rerun_workflow(&self, id: &str, _wait: Duration) -> Result<String, ForgeError> {
        let id = id.trim();
        if id.is_empty() || id.contains('/') {
            return Err(ForgeError::BadWorkflowId {
                scope: Forge::scope(self),
                id: id.to_string(),
                expected: "a pipeline {uuid} (as in BITBUCKET_PIPELINE_UUID) or build number",
            });
        }
        let base = format!("{}/2.0/repositories/{}/pipelines", self.api, self.full_name);
        let pipeline: Value = self
            .call(Method::GET, &format!("{base}/{id}"), None, &[200])
            .await
            .and_then(|a| a.json())
            .map_err(|cause| ForgeError::ReadWorkflow {
                scope: Forge::scope(self),
                id: id.to_string(),
                cause,
            })?;
        let target = pipeline["target"].clone();
        let created: Value = self
            .call(
                Method::POST,
                &format!("{base}/"),
                Some(json!({"target": target})),
                &[201],
            )
            .await
            .and_then(|a| a.json())
            .map_err(|cause| ForgeError::RerunWorkflow {
                scope: Forge::scope(self),
                id: id.to_string(),
                cause,
            })?;
        Ok(format!(
            "pipeline {id} as pipeline {}",
            created["uuid"].as_str().unwrap_or("?")
        ))
    }
}
