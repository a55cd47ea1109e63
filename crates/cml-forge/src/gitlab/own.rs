//! A GitLab runner that only holds its own authentication token: what a cloud machine gets
//! when its launcher created the runner, so that the project's access token never reaches
//! the machine.
//!
//! With the runner token GitLab lets a runner check itself (`POST /runners/verify`) and delete
//! itself (`DELETE /runners`), nothing more: it cannot list runners, read a runner's jobs,
//! pause a runner or retry a job. So:
//! - [`Forge::delete_runner`] deletes at once. The caller must have made the agent stop taking
//!   jobs first (gitlab-runner exits by itself between jobs after `--wait-timeout`, or after
//!   `--max-builds`); a runner deleted while it runs a job would lose it.
//! - Interrupted jobs are not re-run ([`Forge::rerun_interrupted`] answers `Unsupported`):
//!   that needs the access token, which is why the launcher only hands out the runner token
//!   when re-runs are off (`--no-retry`).
//! - The token is a secret: never in `Debug`, errors or logs.

use async_trait::async_trait;
use cml_core::{Labels, RunnerInfo, Secret};
use reqwest::Method;

use crate::http::{Answer, Http};
use crate::{ApiError, Deleted, Forge, ForgeError, Registration, RetryPolicy};

const HINT: &str = "the runner was deleted, or this is not its authentication token; a new launch registers a new runner";

/// A GitLab runner, seen with its own authentication token.
pub struct OwnRunner {
    http: Http,
    /// `https://host[/prefix]`.
    instance: String,
    id: String,
    name: String,
    labels: Vec<String>,
    token: Secret,
}

impl std::fmt::Debug for OwnRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnRunner")
            .field("instance", &self.instance)
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl OwnRunner {
    /// Runner `id` (named `name`, with `labels`) of the GitLab instance at `instance` (its web
    /// URL with any sub-path, what `gitlab-runner --url` takes), authenticated by `token`. No
    /// request is made here.
    pub fn new(
        instance: &str,
        id: &str,
        name: &str,
        labels: &Labels,
        token: Secret,
        retry: RetryPolicy,
    ) -> Result<OwnRunner, ForgeError> {
        let http = Http::new(retry).map_err(|reason| ForgeError::Client {
            url: instance.to_string(),
            reason,
        })?;
        Ok(OwnRunner {
            http,
            instance: instance.trim_end_matches('/').to_string(),
            id: id.to_string(),
            name: name.to_string(),
            labels: labels.as_slice().to_vec(),
            token,
        })
    }

    /// `token=...` to `{instance}/api/v4/{path}`, as a form, as GitLab documents these calls.
    async fn call(&self, method: Method, path: &str) -> Result<Answer, ApiError> {
        let url = format!("{}/api/v4/{path}", self.instance);
        let body = format!(
            "token={}",
            crate::http::percent_encode(self.token.expose(), b"")
        );
        self.http
            .send(|c| {
                c.request(method.clone(), &url)
                    .header("accept", "application/json")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
            })
            .await
    }

    fn refused(&self, a: Answer) -> ApiError {
        ApiError::refused(
            "GitLab",
            a.status,
            a.message(),
            "the runner's own token",
            HINT,
            &[],
        )
    }

    /// `POST /runners/verify`: whether GitLab still knows the token (`false` on 403).
    async fn verify(&self) -> Result<bool, ApiError> {
        let a = self.call(Method::POST, "runners/verify").await?;
        match a.status {
            200 => Ok(true),
            403 => Ok(false),
            _ => Err(self.refused(a)),
        }
    }
}

#[async_trait]
impl Forge for OwnRunner {
    fn scope(&self) -> String {
        format!("GitLab runner {} at {}", self.id, self.instance)
    }

    /// The runner itself while GitLab knows its token, else nothing. Busy is never known.
    async fn runners(&self) -> Result<Vec<RunnerInfo>, ForgeError> {
        let known = self
            .verify()
            .await
            .map_err(|cause| ForgeError::VerifyRunner {
                scope: self.scope(),
                cause,
            })?;
        Ok(known
            .then(|| RunnerInfo {
                id: self.id.clone(),
                name: self.name.clone(),
                online: true,
                busy: false,
                labels: self.labels.clone(),
            })
            .into_iter()
            .collect())
    }

    /// The registration the launcher made, once GitLab confirms the token.
    async fn registration(
        &self,
        _name: &str,
        _labels: &Labels,
    ) -> Result<Registration, ForgeError> {
        let err = |cause| ForgeError::VerifyRunner {
            scope: self.scope(),
            cause,
        };
        let a = self
            .call(Method::POST, "runners/verify")
            .await
            .map_err(err)?;
        if a.status != 200 {
            return Err(err(self.refused(a)));
        }
        Ok(Registration::Gitlab {
            url: self.instance.clone(),
            id: self.id.clone(),
            token: self.token.clone(),
        })
    }

    /// `DELETE /runners` with the runner's token. GitLab answers 403 for a token it does not
    /// know: the runner is gone already.
    async fn delete_runner(&self, id: &str, name: &str) -> Result<Deleted, ForgeError> {
        let a = self
            .call(Method::DELETE, "runners")
            .await
            .map_err(|cause| ForgeError::DeleteRunner {
                scope: self.scope(),
                id: id.to_string(),
                name: name.to_string(),
                cause,
            })?;
        match a.status {
            204 => Ok(Deleted::Removed),
            403 => Ok(Deleted::AlreadyGone),
            _ => Err(ForgeError::DeleteRunner {
                scope: self.scope(),
                id: id.to_string(),
                name: name.to_string(),
                cause: self.refused(a),
            }),
        }
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.token.expose().to_string()]
    }

    fn sees_running_jobs(&self) -> bool {
        false
    }
}
