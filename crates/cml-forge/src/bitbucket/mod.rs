//! Bitbucket Cloud: repository runners through the runners API the Bitbucket web UI uses
//! (`/internal/repositories/{workspace}/{slug}/pipelines-config/runners`, undocumented; the
//! same one CML uses), authenticated with Basic auth from a token that is base64 of
//! `user:app_password` (CML's format).
//!
//! Contracts:
//! - [`BitbucketClient::connect`] checks the token's shape without network, then reads the
//!   repository (its `uuid` and its workspace's), which also checks the token.
//! - Runners are registered with the labels `self.hosted`, the runtime label of the agent that
//!   will run them ([`BitbucketClient::with_runtime_label`]: `linux` for the Docker runner,
//!   `linux.shell` for the Linux Shell runner) and the user's labels. Registration answers an
//!   OAuth client whose secret is a secret like the token: never in `Debug`, errors or logs.
//! - A runner is online when its `state.status` is `ONLINE` (`OFFLINE` / `UNREGISTERED`
//!   otherwise) and busy when its `state.step` is present and not null — the step it runs, as
//!   Atlassian's runners autoscaler tells busy runners from idle ones. (CML 0.20 counts every
//!   online runner as busy.)
//! - Bitbucket deletes a runner even while it runs a step, so [`Forge::delete_runner`] answers
//!   [`Deleted::Busy`] when the runner's state names a step it is running (read just before
//!   the deletion: a step given to the runner in between is not seen).

mod report;
mod workflow;

use async_trait::async_trait;
use base64::Engine;
use cml_core::repo::RepoUrl;
use cml_core::{Labels, RunnerInfo, Secret};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Mutex;

use crate::http::{Answer, Http, Payload};
use crate::{ApiError, Deleted, Forge, ForgeError, Registration, RetryPolicy};

/// Bitbucket Cloud's API.
pub const DEFAULT_API_URL: &str = "https://api.bitbucket.org";
/// The label every self-hosted runner carries.
pub const SELF_HOSTED: &str = "self.hosted";

const FORGE: &str = "Bitbucket";
/// How often a pipeline is looked at while waiting for it to complete.
const RUN_POLL: std::time::Duration = std::time::Duration::from_secs(2);
const HINT: &str = "the token is base64 of `user:app_password`; the app password needs the Repositories: Read and Runners: Write permissions (Pipelines runners), from an administrator of the repository";

/// A Bitbucket repository, seen through the API.
pub struct BitbucketClient {
    http: Http,
    /// base64 of `user:app_password`.
    token: Secret,
    token_source: String,
    api: String,
    /// `https://bitbucket.org/{workspace}/{slug}`
    web: String,
    full_name: String,
    repository_uuid: String,
    account_uuid: String,
    runtime_label: &'static str,
    minted: Mutex<Vec<String>>,
}

impl std::fmt::Debug for BitbucketClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitbucketClient")
            .field("api", &self.api)
            .field("repository", &self.full_name)
            .field("token", &format_args!("from {}", self.token_source))
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Repository {
    uuid: String,
    #[serde(default)]
    workspace: Option<Uuid>,
    #[serde(default)]
    owner: Option<Uuid>,
}

#[derive(Deserialize)]
struct Uuid {
    uuid: String,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    values: Vec<ApiRunner>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct ApiRunner {
    uuid: String,
    name: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    state: Option<RunnerState>,
}

#[derive(Deserialize)]
struct RunnerState {
    #[serde(default)]
    status: String,
    #[serde(default)]
    step: Option<Value>,
}

#[derive(Deserialize)]
struct Created {
    uuid: String,
    oauth_client: OauthClient,
}

#[derive(Deserialize)]
struct OauthClient {
    id: String,
    secret: String,
}

impl BitbucketClient {
    /// Reads the repository `https://bitbucket.org/{workspace}/{slug}` through `api_base`.
    pub async fn connect(
        repo: &RepoUrl,
        token: Secret,
        token_source: &str,
        api_base: &str,
        retry: RetryPolicy,
    ) -> Result<BitbucketClient, ForgeError> {
        let shape_ok = base64::engine::general_purpose::STANDARD
            .decode(token.expose().trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .is_some_and(|s| s.contains(':'));
        if !shape_ok {
            return Err(ForgeError::BitbucketToken {
                token_source: token_source.to_string(),
            });
        }
        let [ws, slug] = repo.path.as_slice() else {
            return Err(ForgeError::Client {
                url: repo.to_string(),
                reason: "a Bitbucket repository URL is https://bitbucket.org/WORKSPACE/REPOSITORY"
                    .into(),
            });
        };
        let http = Http::new(retry).map_err(|reason| ForgeError::Client {
            url: api_base.to_string(),
            reason,
        })?;
        let mut client = BitbucketClient {
            http,
            token,
            token_source: token_source.to_string(),
            api: api_base.trim_end_matches('/').to_string(),
            web: repo.to_string().trim_end_matches('/').to_string(),
            full_name: format!("{ws}/{slug}"),
            repository_uuid: String::new(),
            account_uuid: String::new(),
            runtime_label: "linux",
            minted: Mutex::new(Vec::new()),
        };
        let url = format!("{}/2.0/repositories/{}", client.api, client.full_name);
        let r: Repository = client
            .call(Method::GET, &url, None, &[200])
            .await
            .and_then(|a| a.json())
            .map_err(|cause| ForgeError::ReadProject {
                scope: client.scope(),
                cause,
            })?;
        client.repository_uuid = r.uuid;
        client.account_uuid = r.workspace.or(r.owner).map(|u| u.uuid).unwrap_or_default();
        Ok(client)
    }

    /// Registers runners for the agent whose runtime label is `label` (`linux` for the Docker
    /// runner, the default; `linux.shell` for the Linux Shell runner).
    pub fn with_runtime_label(mut self, label: &'static str) -> Self {
        self.runtime_label = label;
        self
    }

    /// The workspace's `{uuid}`.
    pub fn account_uuid(&self) -> &str {
        &self.account_uuid
    }

    /// The repository's `{uuid}`.
    pub fn repository_uuid(&self) -> &str {
        &self.repository_uuid
    }

    fn runners_url(&self) -> String {
        format!(
            "{}/internal/repositories/{}/pipelines-config/runners",
            self.api, self.full_name
        )
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
        ok: &[u16],
    ) -> Result<Answer, ApiError> {
        self.call_hinted(method, url, body, ok, HINT).await
    }

    /// One call; a refusal says `hint`.
    async fn call_hinted(
        &self,
        method: Method,
        url: &str,
        body: impl Into<Payload>,
        ok: &[u16],
        hint: &'static str,
    ) -> Result<Answer, ApiError> {
        let auth = format!("Basic {}", self.token.expose().trim());
        let payload = body.into();
        let a = self
            .http
            .send(|c| {
                payload.apply(
                    c.request(method.clone(), url)
                        .header("authorization", &auth)
                        .header("accept", "application/json"),
                )
            })
            .await?;
        if ok.contains(&a.status) {
            return Ok(a);
        }
        Err(ApiError::refused(
            FORGE,
            a.status,
            bitbucket_message(&a),
            &self.token_source,
            hint,
            &[],
        ))
    }
}

/// Bitbucket's `error.message`, or the body.
fn bitbucket_message(a: &Answer) -> String {
    let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
    match (v["error"]["message"].as_str(), v["error"].as_str()) {
        (Some(m), _) | (None, Some(m)) => m.to_string(),
        _ => a.message(),
    }
}

#[async_trait]
impl Forge for BitbucketClient {
    fn scope(&self) -> String {
        format!("Bitbucket repository {}", self.full_name)
    }

    async fn runners(&self) -> Result<Vec<RunnerInfo>, ForgeError> {
        let err = |cause| ForgeError::ListRunners {
            scope: self.scope(),
            cause,
        };
        let mut url = format!("{}?pagelen=100", self.runners_url());
        let mut out = Vec::new();
        // Bounded: 100 pages.
        for _ in 0..100 {
            let page: Page = self
                .call(Method::GET, &url, None, &[200])
                .await
                .and_then(|a| a.json())
                .map_err(err)?;
            for r in page.values {
                let (status, step) = r
                    .state
                    .map(|s| (s.status, s.step.filter(|v| !v.is_null())))
                    .unwrap_or_default();
                out.push(RunnerInfo {
                    id: r.uuid,
                    name: r.name,
                    online: status == "ONLINE",
                    busy: step.is_some(),
                    labels: r.labels,
                });
            }
            match page.next {
                // The token goes with every page: only to the API it was given for.
                Some(next) if next.starts_with(&format!("{}/", self.api)) => url = next,
                Some(next) => {
                    return Err(err(ApiError::Decode(format!(
                        "the next page is outside {}: {next}",
                        self.api
                    ))))
                }
                None => break,
            }
        }
        Ok(out)
    }

    async fn registration(&self, name: &str, labels: &Labels) -> Result<Registration, ForgeError> {
        let err = |cause| ForgeError::CreateRunner {
            scope: self.scope(),
            name: name.to_string(),
            cause,
        };
        let mut all: Vec<String> = vec![SELF_HOSTED.into(), self.runtime_label.into()];
        for l in labels.as_slice() {
            if !all.contains(l) {
                all.push(l.clone());
            }
        }
        let body = json!({"name": name, "labels": all});
        let created: Created = self
            .call(Method::POST, &self.runners_url(), Some(body), &[200, 201])
            .await
            .and_then(|a| a.json())
            .map_err(err)?;
        if let Ok(mut m) = self.minted.lock() {
            m.push(created.oauth_client.secret.clone());
        }
        Ok(Registration::Bitbucket {
            account_uuid: self.account_uuid.clone(),
            repository_uuid: self.repository_uuid.clone(),
            runner_uuid: created.uuid,
            oauth_client_id: created.oauth_client.id,
            oauth_client_secret: Secret::new(created.oauth_client.secret),
        })
    }

    async fn delete_runner(&self, id: &str, name: &str) -> Result<Deleted, ForgeError> {
        let err = |cause| ForgeError::DeleteRunner {
            scope: self.scope(),
            id: id.to_string(),
            name: name.to_string(),
            cause,
        };
        let url = format!("{}/{id}", self.runners_url());
        let a = self
            .call(Method::GET, &url, None, &[200, 404])
            .await
            .map_err(err)?;
        if a.status == 404 {
            return Ok(Deleted::AlreadyGone);
        }
        let r: ApiRunner = a.json().map_err(err)?;
        if let Some(step) = r.state.and_then(|s| s.step).filter(|v| !v.is_null()) {
            return Ok(Deleted::Busy(format!(
                "the runner is running step {}",
                step["uuid"].as_str().unwrap_or("?")
            )));
        }
        let a = self
            .call(Method::DELETE, &url, None, &[204, 404])
            .await
            .map_err(err)?;
        Ok(if a.status == 204 {
            Deleted::Removed
        } else {
            Deleted::AlreadyGone
        })
    }

    /// `job` is the step `{uuid}` the runner printed. Finds its pipeline among the 20 newest,
    /// waits (bounded) until that pipeline has completed, and starts a new pipeline on the same
    /// target — unless one was started on that target after it already: another interrupted
    /// runner of the same pipeline got there first.
    async fn rerun_interrupted(
        &self,
        runner: &str,
        job: &str,
        wait: std::time::Duration,
    ) -> Result<crate::Rerun, ForgeError> {
        use crate::Rerun;
        let err = |cause| ForgeError::Rerun {
            scope: self.scope(),
            runner: runner.to_string(),
            cause,
        };
        let base = format!("{}/2.0/repositories/{}/pipelines", self.api, self.full_name);
        let newest = || async {
            self.call(
                Method::GET,
                &format!("{base}/?sort=-created_on&pagelen=20"),
                None,
                &[200],
            )
            .await
            .and_then(|a| a.json::<Value>())
            .map(|v| v["values"].as_array().cloned().unwrap_or_default())
            .map_err(err)
        };
        let pipelines = newest().await?;
        let mut found = None;
        for p in &pipelines {
            let uuid = p["uuid"].as_str().unwrap_or_default();
            let steps: Value = self
                .call(Method::GET, &format!("{base}/{uuid}/steps/"), None, &[200])
                .await
                .and_then(|a| a.json())
                .map_err(err)?;
            if steps["values"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["uuid"].as_str() == Some(job)))
            {
                found = Some(p.clone());
                break;
            }
        }
        let Some(mut pipeline) = found else {
            return Ok(Rerun::NothingToRerun);
        };
        let uuid = pipeline["uuid"].as_str().unwrap_or_default().to_string();
        let what = format!("pipeline {uuid} (step {job})");
        let deadline = tokio::time::Instant::now() + wait;
        while pipeline["state"]["name"].as_str() != Some("COMPLETED") {
            if tokio::time::Instant::now() + RUN_POLL > deadline {
                return Ok(Rerun::StillRunning(what));
            }
            tokio::time::sleep(RUN_POLL).await;
            pipeline = self
                .call(Method::GET, &format!("{base}/{uuid}"), None, &[200])
                .await
                .and_then(|a| a.json())
                .map_err(err)?;
        }
        let target = pipeline["target"].clone();
        let newer = newest().await?;
        let rerun_already = newer
            .iter()
            .take_while(|p| p["uuid"].as_str() != Some(uuid.as_str()))
            .any(|p| p["target"] == target);
        if rerun_already {
            return Ok(Rerun::AlreadyRerun(what));
        }
        self.call(
            Method::POST,
            &format!("{base}/"),
            Some(json!({"target": target})),
            &[201],
        )
        .await
        .map_err(err)?;
        Ok(Rerun::Requested(what))
    }

    fn secrets(&self) -> Vec<String> {
        let mut out = self.minted.lock().map(|m| m.clone()).unwrap_or_default();
        out.push(self.token.expose().to_string());
        // The app password inside the token, should anything print it decoded.
        if let Some(pw) = base64::engine::general_purpose::STANDARD
            .decode(self.token.expose().trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(_, p)| p.to_string()))
            .filter(|p| p.len() >= 4)
        {
            out.push(pw);
        }
        out
    }
}
