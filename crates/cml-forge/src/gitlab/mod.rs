//! GitLab (gitlab.com and self-managed, also under a sub-path): project runners through the
//! REST API v4, authenticated with `PRIVATE-TOKEN`.
//!
//! Contracts:
//! - [`GitlabClient::connect`] finds the API base by probing `{prefix}/api/v4/version` for
//!   each prefix of the repository path (shortest first), so `https://host/gitlab/group/app`
//!   works; it then reads the project, which also checks the token.
//! - Registration uses the current flow (`POST /user/runners`, a `glrt-` runner token) unless
//!   the project exposes a non-empty legacy `runners_token`; a project without that field
//!   takes the current flow.
//! - GitLab deletes a runner even while it runs a job, so [`Forge::delete_runner`] first
//!   pauses the runner (`PUT /runners/:id` with `paused=true`; `active=false` on GitLab
//!   before 14.8, which ignores `paused`), so that no job can be handed to it any more, then
//!   asks for its running jobs, and deletes it only when there is none. A runner that has a
//!   job is resumed and answered [`Deleted::Busy`]: that is what keeps the idle timer from
//!   ever killing a job, even one taken at the last moment. After a failure past the pause the
//!   runner is resumed (best effort), since it is kept.
//! - [`Forge::delete_stopped_runner`] deletes without asking: the runner's agent is gone.
//! - Creating a runner is not repeated blindly: when its answer is lost or a 5xx, the runner
//!   may exist without us knowing its token, so the project's runners are searched for its
//!   description (the name; no other runner of that name existed, as the launcher checked)
//!   and any found is deleted before creating it again (bounded).
//! - The token and every minted runner token are secrets: never in `Debug`, errors or logs.

mod own;
mod report;
mod workflow;

pub use own::OwnRunner;

use async_trait::async_trait;
use cml_core::repo::RepoUrl;
use cml_core::{Labels, RunnerInfo, Secret};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Mutex;

use crate::http::{Answer, Http, Payload};
use crate::{ApiError, Deleted, Forge, ForgeError, Registration, RetryPolicy};

const FORGE: &str = "GitLab";
/// Runner creations tried at most when their answers are lost.
const CREATE_ATTEMPTS: u32 = 3;
/// How often a job is looked at while waiting for it to end.
const RUN_POLL: std::time::Duration = std::time::Duration::from_secs(2);
const HINT: &str = "use a GitLab access token with the `api` scope (runners are created with `create_runner`) of a user with the Owner role on the project, or an administrator";

/// A GitLab project, seen through the API.
pub struct GitlabClient {
    http: Http,
    token: Secret,
    token_source: String,
    /// `https://host[/prefix]`, what `gitlab-runner --url` takes.
    instance: String,
    /// `{instance}/api/v4`
    api: String,
    project_path: String,
    project_id: u64,
    /// Legacy registration token of the project, when it has one.
    runners_token: Option<Secret>,
    minted: Mutex<Vec<String>>,
}

impl std::fmt::Debug for GitlabClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitlabClient")
            .field("api", &self.api)
            .field("project", &self.project_path)
            .field("token", &format_args!("from {}", self.token_source))
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Project {
    id: u64,
    #[serde(default)]
    runners_token: Option<String>,
}

#[derive(Deserialize)]
struct ListedRunner {
    id: u64,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    online: Option<bool>,
    #[serde(default)]
    tag_list: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct CreatedRunner {
    id: u64,
    token: String,
}

impl GitlabClient {
    /// Finds the API of the instance `repo` lives on and reads the project.
    pub async fn connect(
        repo: &RepoUrl,
        token: Secret,
        token_source: &str,
        retry: RetryPolicy,
    ) -> Result<GitlabClient, ForgeError> {
        let origin = format!("{}://{}", repo.scheme, repo.host);
        let http = Http::new(retry).map_err(|reason| ForgeError::Client {
            url: origin.clone(),
            reason,
        })?;
        let mut client = GitlabClient {
            http,
            token,
            token_source: token_source.to_string(),
            instance: String::new(),
            api: String::new(),
            project_path: String::new(),
            project_id: 0,
            runners_token: None,
            minted: Mutex::new(Vec::new()),
        };
        let mut tried = Vec::new();
        // A project needs at least one segment after the prefix.
        for cut in 0..repo.path.len() {
            let prefix: String = repo.path[..cut].iter().map(|s| format!("/{s}")).collect();
            let instance = format!("{origin}{prefix}");
            let url = format!("{instance}/api/v4/version");
            let answer = client
                .send(Method::GET, &url, None)
                .await
                .map_err(|cause| ForgeError::ApiDiscovery {
                    url: repo.to_string(),
                    tried: url.clone(),
                    cause: cause.to_string(),
                })?;
            tried.push(url);
            if matches!(answer.status, 200 | 401 | 403) {
                client.instance = instance;
                client.api = format!("{}/api/v4", client.instance);
                client.project_path = repo.path[cut..].join("/");
                if answer.status != 200 {
                    return Err(ForgeError::ReadProject {
                        scope: client.scope(),
                        cause: client.error(answer),
                    });
                }
                break;
            }
        }
        if client.api.is_empty() {
            return Err(ForgeError::ApiDiscovery {
                url: repo.to_string(),
                tried: tried.join(", "),
                cause: "none answered like GitLab".into(),
            });
        }
        let url = format!(
            "{}/projects/{}",
            client.api,
            encode_path(&client.project_path)
        );
        let project: Project = client
            .call(Method::GET, &url, None, &[200])
            .await
            .and_then(|a| a.json())
            .map_err(|cause| ForgeError::ReadProject {
                scope: client.scope(),
                cause,
            })?;
        client.project_id = project.id;
        client.runners_token = project
            .runners_token
            .filter(|t| !t.trim().is_empty())
            .map(Secret::new);
        Ok(client)
    }

    /// The instance web URL with its sub-path (what `gitlab-runner --url` takes).
    pub fn instance_url(&self) -> &str {
        &self.instance
    }

    /// The project path, e.g. `group/sub/app`.
    pub fn project_path(&self) -> &str {
        &self.project_path
    }

    /// The project's numeric id.
    pub fn project_id(&self) -> u64 {
        self.project_id
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: impl Into<Payload>,
    ) -> Result<Answer, ApiError> {
        self.send_as(false, method, url, body.into()).await
    }

    /// Sends a request that must not be done twice (see [`Http::send_once`]).
    async fn send_as(
        &self,
        once: bool,
        method: Method,
        url: &str,
        payload: Payload,
    ) -> Result<Answer, ApiError> {
        let token = self.token.expose().to_string();
        let build = |c: &reqwest::Client| {
            payload.apply(
                c.request(method.clone(), url)
                    .header("PRIVATE-TOKEN", &token)
                    .header("accept", "application/json"),
            )
        };
        if once {
            self.http.send_once(build).await
        } else {
            self.http.send(build).await
        }
    }

    /// One POST that must not be done twice, with the answers in `ok` accepted.
    async fn post_once(
        &self,
        url: &str,
        body: impl Into<Payload>,
        ok: &[u16],
    ) -> Result<Answer, ApiError> {
        let answer = self.send_as(true, Method::POST, url, body.into()).await?;
        if ok.contains(&answer.status) {
            Ok(answer)
        } else {
            Err(self.error(answer))
        }
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
        let answer = self.send(method, url, body).await?;
        if ok.contains(&answer.status) {
            Ok(answer)
        } else {
            Err(self.error_hinted(answer, hint))
        }
    }

    fn error(&self, a: Answer) -> ApiError {
        self.error_hinted(a, HINT)
    }

    fn error_hinted(&self, a: Answer, hint: &'static str) -> ApiError {
        // Once the API is found, GitLab's 404 on a project means "not visible to this token".
        let forbidden: &[u16] = if self.project_path.is_empty() {
            &[]
        } else {
            &[404]
        };
        ApiError::refused(
            FORGE,
            a.status,
            gitlab_message(&a),
            &self.token_source,
            hint,
            forbidden,
        )
    }

    fn remember(&self, secret: &str) {
        if let Ok(mut m) = self.minted.lock() {
            m.push(secret.to_string());
        }
    }

    /// Every runner of the project (all pages).
    async fn list(&self) -> Result<Vec<ListedRunner>, ApiError> {
        let url = format!(
            "{}/projects/{}/runners?type=project_type",
            self.api, self.project_id
        );
        self.all_pages(&url, HINT).await
    }

    /// Every page of the list at `url` (100 items a page, GitLab's `x-next-page`; bounded to
    /// 100 pages); a refusal says `hint`.
    async fn all_pages<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        hint: &'static str,
    ) -> Result<Vec<T>, ApiError> {
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut page = 1u32;
        for _ in 0..100 {
            let paged = format!("{url}{sep}per_page=100&page={page}");
            let a = self
                .call_hinted(Method::GET, &paged, Payload::None, &[200], hint)
                .await?;
            out.extend(a.json::<Vec<T>>()?);
            match a
                .headers
                .get("x-next-page")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u32>().ok())
            {
                Some(next) if next > page => page = next,
                _ => break,
            }
        }
        Ok(out)
    }

    /// The runner's running jobs (`GET /runners/:id/jobs?status=running`); `None` when the
    /// runner does not exist.
    async fn running_jobs(&self, id: &str) -> Result<Option<Vec<Value>>, ApiError> {
        let url = format!("{}/runners/{id}/jobs?status=running", self.api);
        let a = self.call(Method::GET, &url, None, &[200, 404]).await?;
        if a.status == 404 {
            return Ok(None);
        }
        Ok(Some(a.json()?))
    }

    /// Pauses (`paused`) or resumes runner `id`; `false` when it does not exist. GitLab 14.8
    /// and newer take `paused`; older ones ignore it (their answer still says `active`), and
    /// take `active` instead. The two are never sent together: GitLab refuses that.
    async fn set_paused(&self, id: &str, paused: bool) -> Result<bool, ApiError> {
        let url = format!("{}/runners/{id}", self.api);
        let a = self
            .call(
                Method::PUT,
                &url,
                Some(json!({ "paused": paused })),
                &[200, 404],
            )
            .await?;
        if a.status == 404 {
            return Ok(false);
        }
        let v: Value = a.json()?;
        let applied = match (v["paused"].as_bool(), v["active"].as_bool()) {
            (Some(p), _) => p == paused,
            (None, Some(active)) => active != paused,
            (None, None) => true,
        };
        if !applied {
            let a = self
                .call(
                    Method::PUT,
                    &url,
                    Some(json!({ "active": !paused })),
                    &[200, 404],
                )
                .await?;
            return Ok(a.status == 200);
        }
        Ok(true)
    }

    /// Resumes runner `id` after a deletion that did not happen; a failure is logged: the
    /// runner then takes no new job until it is deleted (by the next attempt) or resumed.
    async fn resume(&self, id: &str, name: &str) {
        if let Err(cause) = self.set_paused(id, false).await {
            let e = ForgeError::ResumeRunner {
                scope: self.scope(),
                id: id.to_string(),
                name: name.to_string(),
                cause,
            };
            tracing::warn!("{e}");
        }
    }

    /// One `POST` creating runner `name` (not repeated: see [`Http::send_once`]).
    async fn create_runner(&self, name: &str, labels: &Labels) -> Result<Registration, ApiError> {
        let tags: Vec<String> = labels.as_slice().to_vec();
        let answer = match &self.runners_token {
            Some(legacy) => {
                let body = json!({
                    "token": legacy.expose(),
                    "description": name,
                    "tag_list": tags.join(","),
                    "run_untagged": true,
                    "locked": true,
                    "access_level": "not_protected",
                });
                let url = format!("{}/runners", self.api);
                self.post_once(&url, Some(body), &[201]).await
            }
            None => {
                let body = json!({
                    "runner_type": "project_type",
                    "project_id": self.project_id,
                    "description": name,
                    "tag_list": tags.join(","),
                    "run_untagged": true,
                    "locked": true,
                    "access_level": "not_protected",
                });
                let url = format!("{}/user/runners", self.api);
                self.post_once(&url, Some(body), &[201]).await
            }
        }?;
        let created: CreatedRunner = answer.json()?;
        self.remember(&created.token);
        Ok(Registration::Gitlab {
            url: self.instance.clone(),
            id: created.id.to_string(),
            token: Secret::new(created.token),
        })
    }

    /// Deletes every runner of the project described `name`: what a creation whose answer was
    /// lost may have left (its token unknown, it can serve no agent). Returns how many.
    async fn remove_unanswered(&self, name: &str) -> Result<usize, ApiError> {
        let mut removed = 0;
        for r in self.list().await? {
            if r.description.as_deref() != Some(name) {
                continue;
            }
            let url = format!("{}/runners/{}", self.api, r.id);
            self.call(Method::DELETE, &url, None, &[204, 404]).await?;
            tracing::info!(
                "removed runner {name} (id {}), created by a request whose answer was lost",
                r.id
            );
            removed += 1;
        }
        Ok(removed)
    }

    /// Whether `job` (as GitLab answered it) has been retried: its pipeline's current jobs
    /// (`GET /projects/:id/pipelines/:pipeline_id/jobs`, retried ones left out) hold a newer
    /// job of the same name.
    async fn retried(&self, job: &Value) -> Result<bool, ApiError> {
        let (Some(id), Some(pipeline), Some(name)) = (
            job["id"].as_u64(),
            job["pipeline"]["id"].as_u64(),
            job["name"].as_str(),
        ) else {
            return Ok(false);
        };
        let url = format!(
            "{}/projects/{}/pipelines/{pipeline}/jobs",
            self.api, self.project_id
        );
        let jobs: Vec<Value> = self.all_pages(&url, HINT).await?;
        Ok(jobs
            .iter()
            .any(|j| j["name"].as_str() == Some(name) && j["id"].as_u64() > Some(id)))
    }

    /// `DELETE /runners/:id`, whatever the runner is doing.
    async fn delete_now(&self, id: &str) -> Result<Deleted, ApiError> {
        let url = format!("{}/runners/{id}", self.api);
        let a = self.call(Method::DELETE, &url, None, &[204, 404]).await?;
        Ok(if a.status == 204 {
            Deleted::Removed
        } else {
            Deleted::AlreadyGone
        })
    }
}

/// GitLab's error text: `message` (a string, or an object of field errors) or `error`.
fn gitlab_message(a: &Answer) -> String {
    let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
    match (&v["message"], &v["error"]) {
        (Value::String(s), _) => s.clone(),
        (Value::Null, Value::String(s)) => s.clone(),
        (m @ Value::Object(_), _) => m.to_string(),
        _ => a.message(),
    }
}

/// `group/sub/app` → `group%2Fsub%2Fapp`.
fn encode_path(path: &str) -> String {
    crate::http::percent_encode(path, b"")
}

#[async_trait]
impl Forge for GitlabClient {
    fn scope(&self) -> String {
        format!("GitLab project {}", self.project_path)
    }

    /// The project's pending jobs (`GET /projects/:id/jobs?scope[]=pending`, the 100 newest),
    /// their tags as the labels they ask for.
    async fn queued_jobs(&self) -> Result<Vec<crate::QueuedJob>, ForgeError> {
        let url = format!(
            "{}/projects/{}/jobs?scope[]=pending&per_page=100",
            self.api, self.project_id
        );
        let err = |cause| ForgeError::QueuedJobs {
            scope: self.scope(),
            cause,
        };
        let jobs: Vec<Value> = self
            .call(Method::GET, &url, None, &[200])
            .await
            .and_then(|a| a.json())
            .map_err(err)?;
        Ok(jobs
            .iter()
            .filter(|j| j["status"] == "pending")
            .map(|j| crate::QueuedJob {
                id: j["id"].to_string(),
                name: j["name"].as_str().unwrap_or_default().to_string(),
                labels: j["tag_list"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect(),
            })
            .collect())
    }

    /// The project's own runners (`GET /projects/:id/runners?type=project_type`: group and
    /// shared runners are neither ours to delete nor ours to reuse). GitLab has no runner
    /// name: the description is the name. Tags come from each runner's details and `busy`
    /// from its running jobs, one call each.
    async fn runners(&self) -> Result<Vec<RunnerInfo>, ForgeError> {
        let err = |cause| ForgeError::ListRunners {
            scope: self.scope(),
            cause,
        };
        let listed = self.list().await.map_err(err)?;
        let mut out = Vec::with_capacity(listed.len());
        for r in listed {
            let id = r.id.to_string();
            let tags = match r.tag_list {
                Some(t) => t,
                None => {
                    let url = format!("{}/runners/{id}", self.api);
                    let a = self
                        .call(Method::GET, &url, None, &[200])
                        .await
                        .map_err(|cause| ForgeError::GetRunner {
                            scope: self.scope(),
                            id: id.clone(),
                            cause,
                        })?;
                    let d: ListedRunner = a.json().map_err(err)?;
                    d.tag_list.unwrap_or_default()
                }
            };
            let online = match r.status.as_deref() {
                Some(s) => s == "online",
                None => r.online.unwrap_or(false),
            };
            let busy = online
                && self
                    .running_jobs(&id)
                    .await
                    .map_err(|cause| ForgeError::RunnerJobs {
                        scope: self.scope(),
                        id: id.clone(),
                        cause,
                    })?
                    .is_some_and(|j| !j.is_empty());
            out.push(RunnerInfo {
                id,
                name: r.description.unwrap_or_default(),
                online,
                busy,
                labels: tags,
            });
        }
        Ok(out)
    }

    /// Creates the runner (`POST /user/runners`, or the legacy `POST /runners`). A creation
    /// whose answer is lost or a 5xx is not sent again as it is: the runner it may have made
    /// is found by name and deleted first (see the module's contracts).
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
            self.remove_unanswered(name)
                .await
                .map_err(|cause| ForgeError::UnconfirmedRunner {
                    scope: self.scope(),
                    name: name.to_string(),
                    first: first.clone(),
                    cause,
                })?;
            if attempt >= CREATE_ATTEMPTS {
                return Err(err(first));
            }
            tokio::time::sleep(self.http.backoff(attempt)).await;
        }
    }

    /// Pauses the runner, asks for its running jobs, and deletes it when it has none; resumes
    /// it when it has one (or when a step after the pause failed).
    async fn delete_runner(&self, id: &str, name: &str) -> Result<Deleted, ForgeError> {
        let err = |cause| ForgeError::DeleteRunner {
            scope: self.scope(),
            id: id.to_string(),
            name: name.to_string(),
            cause,
        };
        let paused = self
            .set_paused(id, true)
            .await
            .map_err(|cause| ForgeError::PauseRunner {
                scope: self.scope(),
                id: id.to_string(),
                name: name.to_string(),
                cause,
            })?;
        if !paused {
            return Ok(Deleted::AlreadyGone);
        }
        let jobs = match self.running_jobs(id).await {
            Ok(Some(jobs)) => jobs,
            Ok(None) => return Ok(Deleted::AlreadyGone),
            Err(cause) => {
                self.resume(id, name).await;
                return Err(ForgeError::RunnerJobs {
                    scope: self.scope(),
                    id: id.to_string(),
                    cause,
                });
            }
        };
        if !jobs.is_empty() {
            self.resume(id, name).await;
            let ids: Vec<String> = jobs.iter().map(|j| j["id"].to_string()).collect();
            return Ok(Deleted::Busy(format!(
                "the runner is running job {}",
                ids.join(", ")
            )));
        }
        match self.delete_now(id).await {
            Ok(d) => Ok(d),
            Err(cause) => {
                self.resume(id, name).await;
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

    /// `job` is the job id gitlab-runner printed. Waits (bounded) until the job has ended
    /// (GitLab marks it failed or canceled once its runner is gone), then retries that one
    /// job. A GitLab job runs on one runner only, so only its runner retries it.
    async fn rerun_interrupted(
        &self,
        runner: &str,
        job: &str,
        wait: std::time::Duration,
    ) -> Result<crate::Rerun, ForgeError> {
        use crate::Rerun;
        if job.is_empty() || job.parse::<u64>().is_err() {
            return Ok(Rerun::NothingToRerun);
        }
        let err = |cause| ForgeError::Rerun {
            scope: self.scope(),
            runner: runner.to_string(),
            cause,
        };
        let url = format!("{}/projects/{}/jobs/{job}", self.api, self.project_id);
        let what = format!("job {job}");
        let deadline = tokio::time::Instant::now() + wait;
        let ended: Value = loop {
            let j: Value = self
                .call(Method::GET, &url, None, &[200])
                .await
                .and_then(|a| a.json())
                .map_err(err)?;
            match j["status"].as_str().unwrap_or_default() {
                "pending" | "running" | "created" | "waiting_for_resource" | "preparing" => {}
                "success" => return Ok(Rerun::NothingToRerun),
                _ => break j,
            }
            if tokio::time::Instant::now() + RUN_POLL > deadline {
                return Ok(Rerun::StillRunning(what));
            }
            tokio::time::sleep(RUN_POLL).await;
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let first = match self.post_once(&format!("{url}/retry"), None, &[201]).await {
                Ok(_) => return Ok(Rerun::Requested(what)),
                Err(e) if e.may_have_taken_effect() => e,
                Err(e) => return Err(err(e)),
            };
            // Retrying again could retry twice: look whether this one took effect.
            tracing::warn!(
                "{}; looking for the retry it may have made",
                err(first.clone())
            );
            if self.retried(&ended).await.map_err(err)? {
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
        if let Some(t) = &self.runners_token {
            out.push(t.expose().to_string());
        }
        out
    }
}
