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
//! - Bitbucket deletes a runner even while it runs a step, so [`Forge::delete_runner`] first
//!   disables the runner (`PUT …/runners/{uuid}/state` with `{"status": "DISABLED"}`, the
//!   toggle of the runners page), so that no step can be given to it any more, then reads
//!   its state, and deletes it only when the state names no step. A runner running a step is
//!   enabled again (`"ENABLED"`) and answered [`Deleted::Busy`]; so is one whose deletion
//!   failed after it was disabled (best effort), since it is kept.
//! - [`Forge::delete_stopped_runner`] deletes without asking: the runner's agent is gone.
//! - Creating a runner and starting a pipeline are not repeated blindly: when the answer is
//!   lost or a 5xx, a runner it may have created is found by name and deleted before creating
//!   it again (its OAuth secret was only in the lost answer), and a pipeline it may have
//!   started is looked for on the target before asking again.

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
/// Runner creations and pipeline starts tried at most when their answers are lost.
const CREATE_ATTEMPTS: u32 = 3;
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
        self.call_as(false, method, url, body.into(), ok, hint)
            .await
    }

    /// A POST that must not be done twice (see [`crate::http::Http::send_once`]).
    async fn post_once(&self, url: &str, body: Value, ok: &[u16]) -> Result<Answer, ApiError> {
        self.call_as(true, Method::POST, url, Payload::Json(body), ok, HINT)
            .await
    }

    async fn call_as(
        &self,
        once: bool,
        method: Method,
        url: &str,
        payload: Payload,
        ok: &[u16],
        hint: &'static str,
    ) -> Result<Answer, ApiError> {
        let auth = format!("Basic {}", self.token.expose().trim());
        let build = |c: &reqwest::Client| {
            payload.apply(
                c.request(method.clone(), url)
                    .header("authorization", &auth)
                    .header("accept", "application/json"),
            )
        };
        let a = if once {
            self.http.send_once(build).await?
        } else {
            self.http.send(build).await?
        };
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

    /// Disables (`false`) or enables runner `id`; `false` when it does not exist.
    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<bool, ApiError> {
        let url = format!("{}/{id}/state", self.runners_url());
        let status = if enabled { "ENABLED" } else { "DISABLED" };
        let a = self
            .call(
                Method::PUT,
                &url,
                Some(json!({ "status": status })),
                &[200, 204, 404],
            )
            .await?;
        Ok(a.status != 404)
    }

    /// Enables runner `id` after a deletion that did not happen; a failure is logged: the
    /// runner then takes no new step until it is deleted (by the next attempt) or enabled.
    async fn enable_again(&self, id: &str, name: &str) {
        if let Err(cause) = self.set_enabled(id, true).await {
            let e = ForgeError::ResumeRunner {
                scope: self.scope(),
                id: id.to_string(),
                name: name.to_string(),
                cause,
            };
            tracing::warn!("{e}");
        }
    }

    /// `DELETE` of runner `id`, whatever it is doing.
    async fn delete_now(&self, id: &str) -> Result<Deleted, ApiError> {
        let url = format!("{}/{id}", self.runners_url());
        let a = self.call(Method::DELETE, &url, None, &[204, 404]).await?;
        Ok(if a.status == 204 {
            Deleted::Removed
        } else {
            Deleted::AlreadyGone
        })
    }

    /// One `POST` creating runner `name` (not repeated: see [`crate::http::Http::send_once`]).
    async fn create_runner(&self, name: &str, labels: &Labels) -> Result<Registration, ApiError> {
        let mut all: Vec<String> = vec![SELF_HOSTED.into(), self.runtime_label.into()];
        for l in labels.as_slice() {
            if !all.contains(l) {
                all.push(l.clone());
            }
        }
        let body = json!({"name": name, "labels": all});
        let created: Created = self
            .post_once(&self.runners_url(), body, &[200, 201])
            .await?
            .json()?;
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

    /// Deletes every runner of the repository named `name`: what a creation whose answer was
    /// lost may have left (its OAuth secret unknown, it can serve no agent). Returns how many.
    async fn remove_unanswered(&self, name: &str) -> Result<usize, ForgeError> {
        let mut removed = 0;
        for r in self.runners().await? {
            if r.name != name {
                continue;
            }
            self.delete_now(&r.id)
                .await
                .map_err(|cause| ForgeError::DeleteRunner {
                    scope: self.scope(),
                    id: r.id.clone(),
                    name: name.to_string(),
                    cause,
                })?;
            tracing::info!(
                "removed runner {name} ({}), created by a request whose answer was lost",
                r.id
            );
            removed += 1;
        }
        Ok(removed)
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

    /// Creates the runner. A creation whose answer is lost or a 5xx is not sent again as it
    /// is: the runner it may have made is found by name and deleted first.
    async fn registration(&self, name: &str, labels: &Labels) -> Result<Registration, ForgeError> {
        let err = |cause| ForgeError::CreateRunner {
            scope: self.scope(),
            name: name.to_string(),
            cause,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let first = match self.create_runner(name, labels).await {
                Ok(registration) => return Ok(registration),
                Err(e) if e.may_have_taken_effect() => e,
                Err(e) => return Err(err(e)),
            };
            tracing::warn!(
                "{}; looking for a runner it may have created",
                err(first.clone())
            );
            if let Err(e) = self.remove_unanswered(name).await {
                return Err(ForgeError::UnconfirmedRunner {
                    scope: self.scope(),
                    name: name.to_string(),
                    first,
                    cause: e.api().cloned().unwrap_or(ApiError::Decode(e.to_string())),
                });
            }
            if attempt >= CREATE_ATTEMPTS {
                return Err(err(first));
            }
            tokio::time::sleep(self.http.backoff(attempt)).await;
        }
    }

    /// Disables the runner, reads its state, and deletes it when it runs no step; enables it
    /// again when it runs one (or when a step after disabling it failed).
    async fn delete_runner(&self, id: &str, name: &str) -> Result<Deleted, ForgeError> {
        let err = |cause| ForgeError::DeleteRunner {
            scope: self.scope(),
            id: id.to_string(),
            name: name.to_string(),
            cause,
        };
        let exists =
            self.set_enabled(id, false)
                .await
                .map_err(|cause| ForgeError::PauseRunner {
                    scope: self.scope(),
                    id: id.to_string(),
                    name: name.to_string(),
                    cause,
                })?;
        if !exists {
            return Ok(Deleted::AlreadyGone);
        }
        let url = format!("{}/{id}", self.runners_url());
        let state = self
            .call(Method::GET, &url, None, &[200, 404])
            .await
            .and_then(|a| {
                if a.status == 404 {
                    Ok(None)
                } else {
                    a.json::<ApiRunner>().map(Some)
                }
            });
        let runner = match state {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(Deleted::AlreadyGone),
            Err(cause) => {
                self.enable_again(id, name).await;
                return Err(err(cause));
            }
        };
        if let Some(step) = runner.state.and_then(|s| s.step).filter(|v| !v.is_null()) {
            self.enable_again(id, name).await;
            return Ok(Deleted::Busy(format!(
                "the runner is running step {}",
                step["uuid"].as_str().unwrap_or("?")
            )));
        }
        match self.delete_now(id).await {
            Ok(d) => Ok(d),
            Err(cause) => {
                self.enable_again(id, name).await;
                Err(err(cause))
            }
        }
    }

    async fn delete_stopped_runner(&self, id: &str, name: &str) -> Result<Deleted, ForgeError> {
        self.delete_now(id)
            .await
            .map_err(|cause| ForgeError::DeleteRunner {
                scope: self.scope(),
                id: id.to_string(),
                name: name.to_string(),
                cause,
            })
    }

    /// `job` is the step `{uuid}` the runner printed. Finds its pipeline among the 20 newest,
    /// waits (bounded) until that pipeline has completed, and starts a new pipeline on the same
    /// target — unless one was started on that target after it already: another interrupted
    /// runner of the same pipeline got there first.
    /// The pending steps of the repository's 30 newest pending or running pipelines. Bitbucket's
    /// API does not say which runner labels a step asks for (`runs-on` is not in the step
    /// object): every pending step counts, with no labels.
    async fn queued_jobs(&self) -> Result<Vec<crate::QueuedJob>, ForgeError> {
        let err = |cause| ForgeError::QueuedJobs {
            scope: self.scope(),
            cause,
        };
        let base = format!("{}/2.0/repositories/{}/pipelines", self.api, self.full_name);
        let pipelines: Value = self
            .call(
                Method::GET,
                &format!("{base}/?sort=-created_on&pagelen=30"),
                None,
                &[200],
            )
            .await
            .and_then(|a| a.json())
            .map_err(err)?;
        let mut out = Vec::new();
        for p in pipelines["values"].as_array().into_iter().flatten() {
            if !matches!(p["state"]["name"].as_str(), Some("PENDING" | "IN_PROGRESS")) {
                continue;
            }
            let uuid = p["uuid"].as_str().unwrap_or_default();
            let steps: Value = self
                .call(Method::GET, &format!("{base}/{uuid}/steps/"), None, &[200])
                .await
                .and_then(|a| a.json())
                .map_err(err)?;
            for st in steps["values"].as_array().into_iter().flatten() {
                if st["state"]["name"] == "PENDING" {
                    out.push(crate::QueuedJob {
                        id: st["uuid"].as_str().unwrap_or_default().to_string(),
                        name: st["name"].as_str().unwrap_or_default().to_string(),
                        labels: Vec::new(),
                    });
                }
            }
        }
        Ok(out)
    }

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
        // A pipeline on the same target newer than the interrupted one.
        let rerun_since = |newer: &[Value]| {
            newer
                .iter()
                .take_while(|p| p["uuid"].as_str() != Some(uuid.as_str()))
                .any(|p| p["target"] == target)
        };
        if rerun_since(&newest().await?) {
            return Ok(Rerun::AlreadyRerun(what));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let first = match self
                .post_once(&format!("{base}/"), json!({"target": target}), &[201])
                .await
            {
                Ok(_) => return Ok(Rerun::Requested(what)),
                Err(e) if e.may_have_taken_effect() => e,
                Err(e) => return Err(err(e)),
            };
            // Starting it again could start two: look whether this one started.
            tracing::warn!(
                "{}; looking for the pipeline it may have started",
                err(first.clone())
            );
            if rerun_since(&newest().await?) {
                return Ok(Rerun::Requested(what));
            }
            if attempt >= CREATE_ATTEMPTS {
                return Err(err(first));
            }
            tokio::time::sleep(self.http.backoff(attempt)).await;
        }
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
