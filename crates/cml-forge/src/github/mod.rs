//! GitHub (github.com and GitHub Enterprise Server): self-hosted runners of a repository or
//! an organization.

mod auth;
pub mod jit;
mod report;
pub mod scaleset;
mod types;
mod workflow;

pub use auth::{AppAuth, GithubAuth};
pub use types::{Job, Run, ROUTES};

use crate::http::{now_unix, Answer, Http};
use crate::{ApiError, Deleted, Forge, ForgeError, Registration, RetryPolicy};
use async_trait::async_trait;
use auth::CachedToken;
use cml_core::repo::{github_api_base, GithubScope};
use cml_core::{Labels, RepoUrl, RunnerInfo, Secret};
use reqwest::Method;
use std::sync::Mutex;
use types::{ExpiringToken, Installation, JitConfigAnswer, JobList, RunList, RunnerList};

/// Pages followed at most when listing (100 runners each).
const MAX_PAGES: usize = 200;

/// A GitHub REST client bound to one repository or organization.
pub struct GithubClient {
    api: String,
    web_url: String,
    scope: GithubScope,
    auth: GithubAuth,
    http: Http,
    /// Secrets minted so far (registration tokens, installation tokens), for redaction.
    minted: Mutex<Vec<String>>,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubClient")
            .field("api", &self.api)
            .field("scope", &self.scope)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl GithubClient {
    /// A client for the repository or organization at `url` (see
    /// [`cml_core::repo::github_api_base`] for where the API is).
    pub fn new(
        url: &RepoUrl,
        auth: GithubAuth,
        retry: RetryPolicy,
    ) -> Result<GithubClient, ForgeError> {
        let scope = GithubScope::from_url(url).map_err(|e| ForgeError::Client {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let http = Http::new(retry).map_err(|reason| ForgeError::Client {
            url: url.to_string(),
            reason,
        })?;
        Ok(GithubClient {
            api: github_api_base(url),
            web_url: url.to_string(),
            scope,
            auth,
            http,
            minted: Mutex::new(Vec::new()),
        })
    }

    pub fn api_base(&self) -> &str {
        &self.api
    }

    /// The repository or organization URL the client was made for.
    pub fn web_url(&self) -> &str {
        &self.web_url
    }

    pub fn github_scope(&self) -> &GithubScope {
        &self.scope
    }

    fn scope_name(&self) -> String {
        format!("GitHub {}", self.scope)
    }

    fn remember(&self, secret: &Secret) {
        if let Ok(mut m) = self.minted.lock() {
            m.push(secret.expose().to_string());
        }
    }

    fn hint(&self) -> &'static str {
        match (&self.auth, &self.scope) {
            (GithubAuth::Token { .. }, GithubScope::Repo { .. }) => {
                "use a personal access token with the `repo` scope (fine-grained: Administration read and write) on this repository"
            }
            (GithubAuth::Token { .. }, GithubScope::Org { .. }) => {
                "organization runners need a personal access token with the `admin:org` scope (fine-grained: Self-hosted runners read and write)"
            }
            (GithubAuth::App(_), GithubScope::Repo { .. }) => {
                "the GitHub App needs the repository permission Administration: write and must be installed on this repository"
            }
            (GithubAuth::App(_), GithubScope::Org { .. }) => {
                "the GitHub App needs the organization permission Self-hosted runners: write and must be installed on this organization"
            }
        }
    }

    /// The bearer token for the next call: the PAT, or a cached/fresh installation token.
    async fn bearer(&self) -> Result<Secret, ForgeError> {
        match &self.auth {
            GithubAuth::Token { token, .. } => Ok(token.clone()),
            GithubAuth::App(app) => {
                let mut cached = app.cached.lock().await;
                let now = now_unix();
                if let Some(c) = cached.as_ref().filter(|c| c.fresh(now)) {
                    return Ok(c.token.clone());
                }
                let fresh = self.installation_token(app).await?;
                tracing::debug!("minted a GitHub App installation token");
                let token = fresh.token.clone();
                *cached = Some(fresh);
                Ok(token)
            }
        }
    }

    async fn installation_token(&self, app: &AppAuth) -> Result<CachedToken, ForgeError> {
        let jwt = app.jwt()?;
        let scope = self.scope_name();
        let url = format!("{}{}/installation", self.api, self.scope.api_prefix());
        let answer = self
            .send_with(&jwt, Method::GET, &url, None)
            .await
            .and_then(|a| self.check(a, &[200]))
            .map_err(|cause| ForgeError::AppInstallation {
                scope: scope.clone(),
                cause,
            })?;
        let inst: Installation = answer
            .json()
            .map_err(|cause| ForgeError::AppInstallation { scope, cause })?;
        let url = format!("{}/app/installations/{}/access_tokens", self.api, inst.id);
        let app_id = app.app_id.clone();
        let answer = self
            .send_with(&jwt, Method::POST, &url, Some(serde_json::json!({})))
            .await
            .and_then(|a| self.check(a, &[201]))
            .map_err(|cause| ForgeError::AppToken {
                app_id: app_id.clone(),
                cause,
            })?;
        let t: ExpiringToken = answer
            .json()
            .map_err(|cause| ForgeError::AppToken { app_id, cause })?;
        let token = Secret::new(t.token);
        self.remember(&token);
        let now = now_unix();
        Ok(CachedToken {
            token,
            issued_at: now,
            expires_at: parse_time(&t.expires_at).unwrap_or(now + 3000),
        })
    }

    async fn send_with(
        &self,
        bearer: &Secret,
        method: Method,
        url: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Answer, ApiError> {
        self.http
            .send(|c| {
                let mut r = c
                    .request(method.clone(), url)
                    .header("accept", "application/vnd.github+json")
                    .header("x-github-api-version", "2022-11-28")
                    .bearer_auth(bearer.expose());
                if let Some(b) = &body {
                    r = r.json(b);
                }
                r
            })
            .await
    }

    /// One authenticated call; auth failures are turned into errors by `check`.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<serde_json::Value>,
        ok: &[u16],
    ) -> Result<Answer, CallError> {
        self.call_hinted(method, url, body, ok, self.hint()).await
    }

    /// [`Self::call`], with `hint` after a refusal.
    async fn call_hinted(
        &self,
        method: Method,
        url: &str,
        body: Option<serde_json::Value>,
        ok: &[u16],
        hint: &'static str,
    ) -> Result<Answer, CallError> {
        let bearer = self.bearer().await.map_err(CallError::Auth)?;
        let answer = self
            .send_with(&bearer, method, url, body)
            .await
            .map_err(CallError::Api)?;
        self.check_hinted(answer, ok, hint).map_err(CallError::Api)
    }

    fn check(&self, a: Answer, ok: &[u16]) -> Result<Answer, ApiError> {
        self.check_hinted(a, ok, self.hint())
    }

    fn check_hinted(&self, a: Answer, ok: &[u16], hint: &'static str) -> Result<Answer, ApiError> {
        if ok.contains(&a.status) {
            return Ok(a);
        }
        let message = a.message();
        match a.status {
            401 => Err(ApiError::Unauthorized {
                forge: "GitHub",
                status: 401,
                message,
                token_source: self.auth.source(),
                hint,
            }),
            403 => Err(ApiError::Forbidden {
                forge: "GitHub",
                status: 403,
                message,
                token_source: self.auth.source(),
                hint,
            }),
            status => Err(ApiError::Status { status, message }),
        }
    }

    fn runners_url(&self) -> String {
        format!("{}{}/actions/runners", self.api, self.scope.api_prefix())
    }

    /// `POST .../actions/runners/registration-token` (1 h token for `config.sh`).
    pub async fn registration_token(&self) -> Result<Secret, ForgeError> {
        let scope = self.scope_name();
        self.mint("registration-token", |cause| {
            ForgeError::RegistrationToken {
                scope: scope.clone(),
                cause,
            }
        })
        .await
    }

    /// `POST .../actions/runners/remove-token`.
    pub async fn remove_token(&self) -> Result<Secret, ForgeError> {
        let scope = self.scope_name();
        self.mint("remove-token", |cause| ForgeError::RemoveToken {
            scope: scope.clone(),
            cause,
        })
        .await
    }

    /// Mints one of the runner tokens (`POST .../actions/runners/{route}`), remembered for
    /// redaction.
    async fn mint(
        &self,
        route: &str,
        err: impl Fn(ApiError) -> ForgeError,
    ) -> Result<Secret, ForgeError> {
        let url = format!("{}/{route}", self.runners_url());
        let answer = self
            .call(Method::POST, &url, None, &[201])
            .await
            .map_err(|e| e.into_forge(&err))?;
        let t: ExpiringToken = answer.json().map_err(&err)?;
        let token = Secret::new(t.token);
        self.remember(&token);
        Ok(token)
    }

    /// `POST .../actions/runners/generate-jitconfig`: registers an ephemeral runner and returns
    /// it with the blob for `run.sh --jitconfig` (pass it through `ACTIONS_RUNNER_INPUT_JITCONFIG`).
    pub async fn jit_config(
        &self,
        name: &str,
        labels: &Labels,
        work_folder: &str,
    ) -> Result<(RunnerInfo, Secret), ForgeError> {
        let scope = self.scope_name();
        let url = format!("{}/generate-jitconfig", self.runners_url());
        let err = |cause| ForgeError::JitConfig {
            scope: scope.clone(),
            name: name.to_string(),
            cause,
        };
        let body = serde_json::json!({
            "name": name,
            "runner_group_id": 1,
            "labels": labels.as_slice(),
            "work_folder": work_folder,
        });
        let answer = self
            .call(Method::POST, &url, Some(body), &[201])
            .await
            .map_err(|e| e.into_forge(err))?;
        let jit: JitConfigAnswer = answer.json().map_err(err)?;
        let blob = Secret::new(jit.encoded_jit_config);
        self.remember(&blob);
        Ok((jit.runner.into(), blob))
    }

    /// `GET .../actions/runners/{id}`; `None` when it does not exist.
    pub async fn runner(&self, id: u64) -> Result<Option<RunnerInfo>, ForgeError> {
        let scope = self.scope_name();
        let url = format!("{}/{id}", self.runners_url());
        let err = |cause| ForgeError::GetRunner {
            scope: scope.clone(),
            id: id.to_string(),
            cause,
        };
        let answer = self
            .call(Method::GET, &url, None, &[200, 404])
            .await
            .map_err(|e| e.into_forge(err))?;
        if answer.status == 404 {
            return Ok(None);
        }
        let r: types::Runner = answer.json().map_err(err)?;
        Ok(Some(r.into()))
    }

    /// `GET /repos/{o}/{r}/actions/jobs/{id}` (repository scope only).
    pub async fn job(&self, id: u64) -> Result<Job, ForgeError> {
        let scope = self.scope_name();
        let url = format!("{}{}/actions/jobs/{id}", self.api, self.scope.api_prefix());
        let err = |cause| ForgeError::GetJob {
            scope: scope.clone(),
            id,
            cause,
        };
        let answer = self
            .call(Method::GET, &url, None, &[200])
            .await
            .map_err(|e| e.into_forge(err))?;
        answer.json().map_err(err)
    }

    /// A GET of the repository's actions API for re-runs (`rest` after `/actions/`).
    async fn actions_get<T: serde::de::DeserializeOwned>(
        &self,
        rest: &str,
        runner: &str,
    ) -> Result<T, ForgeError> {
        let url = format!("{}{}/actions/{rest}", self.api, self.scope.api_prefix());
        let err = |cause| ForgeError::Rerun {
            scope: self.scope_name(),
            runner: runner.to_string(),
            cause,
        };
        let answer = self
            .call(Method::GET, &url, None, &[200])
            .await
            .map_err(|e| e.into_forge(err))?;
        answer.json().map_err(err)
    }

    /// The run and job runner `runner` ran (named `job`), among the 20 newest runs. An empty
    /// `job` names no job: nothing is found (never "any job of this runner", which could be an
    /// older failed one).
    async fn find_interrupted(
        &self,
        runner: &str,
        job: &str,
    ) -> Result<Option<(Run, Job)>, ForgeError> {
        if job.is_empty() {
            return Ok(None);
        }
        let runs: RunList = self.actions_get("runs?per_page=20", runner).await?;
        for run in runs.workflow_runs {
            let jobs: JobList = self
                .actions_get(&format!("runs/{}/jobs?per_page=100", run.id), runner)
                .await?;
            if let Some(j) = jobs
                .jobs
                .into_iter()
                .find(|j| j.runner_name.as_deref() == Some(runner) && j.name == job)
            {
                return Ok(Some((run, j)));
            }
        }
        Ok(None)
    }
}

/// How often a run is looked at while waiting for it to complete.
const RUN_POLL: std::time::Duration = std::time::Duration::from_secs(2);

#[async_trait]
impl Forge for GithubClient {
    /// Finds the job among the 20 newest runs (by runner name), waits (bounded by `wait`)
    /// until its run has completed, and asks `rerun-failed-jobs` unless the run has a newer
    /// attempt already or GitHub answers that it is running again: another interrupted
    /// runner of the same run got there first.
    async fn rerun_interrupted(
        &self,
        runner: &str,
        job: &str,
        wait: std::time::Duration,
    ) -> Result<crate::Rerun, ForgeError> {
        use crate::Rerun;
        let Some((run, found)) = self.find_interrupted(runner, job).await? else {
            return Ok(Rerun::NothingToRerun);
        };
        let what = format!("run {} (job {} \"{}\")", run.id, found.id, found.name);
        let deadline = tokio::time::Instant::now() + wait;
        let mut current = run.clone();
        while current.status != "completed" {
            if tokio::time::Instant::now() + RUN_POLL > deadline {
                return Ok(Rerun::StillRunning(what));
            }
            tokio::time::sleep(RUN_POLL).await;
            current = self
                .actions_get(&format!("runs/{}", run.id), runner)
                .await?;
        }
        if current.run_attempt > run.run_attempt {
            return Ok(Rerun::AlreadyRerun(what));
        }
        let url = format!(
            "{}{}/actions/runs/{}/rerun-failed-jobs",
            self.api,
            self.scope.api_prefix(),
            run.id
        );
        let err = |cause| ForgeError::Rerun {
            scope: self.scope_name(),
            runner: runner.to_string(),
            cause,
        };
        match self.call(Method::POST, &url, None, &[201]).await {
            Ok(_) => Ok(Rerun::Requested(what)),
            // "This workflow is already running": re-run by someone else meanwhile.
            Err(CallError::Api(ApiError::Forbidden { message, .. }))
                if message.contains("already running") =>
            {
                Ok(Rerun::AlreadyRerun(what))
            }
            Err(e) => Err(e.into_forge(err)),
        }
    }

    fn scope(&self) -> String {
        self.scope_name()
    }

    /// The queued jobs of the 50 newest queued and in-progress runs (a run in progress may
    /// hold jobs still waiting). Organizations: unsupported (runs are per repository).
    async fn queued_jobs(&self) -> Result<Vec<crate::QueuedJob>, ForgeError> {
        if matches!(self.scope, GithubScope::Org { .. }) {
            return Err(ForgeError::QueueUnsupported {
                scope: self.scope_name(),
            });
        }
        let scope = self.scope_name();
        let err = |cause| ForgeError::QueuedJobs {
            scope: scope.clone(),
            cause,
        };
        let get = |rest: String| {
            let url = format!("{}{}/actions/{rest}", self.api, self.scope.api_prefix());
            async move {
                self.call(Method::GET, &url, None, &[200])
                    .await
                    .map_err(|e| e.into_forge(err))
            }
        };
        let mut out = Vec::new();
        for status in ["queued", "in_progress"] {
            let runs: RunList = get(format!("runs?status={status}&per_page=50"))
                .await?
                .json()
                .map_err(err)?;
            for run in runs.workflow_runs {
                let jobs: JobList = get(format!("runs/{}/jobs?per_page=100", run.id))
                    .await?
                    .json()
                    .map_err(err)?;
                out.extend(
                    jobs.jobs
                        .into_iter()
                        .filter(|j| j.status == "queued")
                        .map(|j| crate::QueuedJob {
                            id: j.id.to_string(),
                            name: j.name,
                            labels: j.labels,
                        }),
                );
            }
        }
        Ok(out)
    }

    async fn runners(&self) -> Result<Vec<RunnerInfo>, ForgeError> {
        let scope = self.scope_name();
        let err = |cause| ForgeError::ListRunners {
            scope: scope.clone(),
            cause,
        };
        let mut url = format!("{}?per_page=100", self.runners_url());
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let answer = match self.call(Method::GET, &url, None, &[200]).await {
                Ok(a) => a,
                Err(CallError::Api(ApiError::Status { status: 404, message })) => {
                    return Err(err(ApiError::Forbidden {
                        forge: "GitHub",
                        status: 404,
                        message,
                        token_source: self.auth.source(),
                        hint: "check --repo; GitHub answers 404 when the token cannot see the repository or organization",
                    }))
                }
                Err(e) => return Err(e.into_forge(err)),
            };
            let page: RunnerList = answer.json().map_err(err)?;
            out.extend(page.runners.into_iter().map(RunnerInfo::from));
            match self.next_page(&answer, &url).map_err(err)? {
                Some(next) => url = next,
                None => return Ok(out),
            }
        }
        tracing::warn!(
            "{scope} lists more than {MAX_PAGES} pages of runners: only the first {MAX_PAGES} were read"
        );
        Ok(out)
    }

    async fn registration(
        &self,
        _name: &str,
        _labels: &Labels,
    ) -> Result<Registration, ForgeError> {
        Ok(Registration::GithubToken {
            url: self.web_url.clone(),
            token: self.registration_token().await?,
        })
    }

    async fn delete_runner(&self, id: &str, name: &str) -> Result<Deleted, ForgeError> {
        let scope = self.scope_name();
        let url = format!("{}/{id}", self.runners_url());
        let err = |cause| ForgeError::DeleteRunner {
            scope: scope.clone(),
            id: id.to_string(),
            name: name.to_string(),
            cause,
        };
        let answer = self
            .call(Method::DELETE, &url, None, &[204, 404, 422])
            .await
            .map_err(|e| e.into_forge(err))?;
        Ok(match answer.status {
            204 => Deleted::Removed,
            404 => Deleted::AlreadyGone,
            _ => Deleted::Busy(answer.message()),
        })
    }

    fn secrets(&self) -> Vec<String> {
        let mut out = self.minted.lock().map(|m| m.clone()).unwrap_or_default();
        match &self.auth {
            GithubAuth::Token { token, .. } => out.push(token.expose().to_string()),
            GithubAuth::App(app) => out.push(app.pem.expose().to_string()),
        }
        out
    }
}

/// Either the credential could not be obtained, or the call failed.
enum CallError {
    Auth(ForgeError),
    Api(ApiError),
}

impl CallError {
    fn into_forge(self, wrap: impl FnOnce(ApiError) -> ForgeError) -> ForgeError {
        match self {
            CallError::Auth(e) => e,
            CallError::Api(e) => wrap(e),
        }
    }
}

/// The `rel="next"` URL of a `Link` header.
impl GithubClient {
    /// The next page of a list, from the answer's `Link: <URL>; rel="next"` header (relative
    /// to `current`, the page just read).
    ///
    /// Guarantee: a URL is returned only when it is on the API's own scheme, host and port,
    /// and below its path (`/api/v3` on GitHub Enterprise Server), so the token, which goes
    /// with every page, is sent nowhere else. A next page elsewhere is an error rather than a
    /// silently shorter list.
    pub(crate) fn next_page(&self, a: &Answer, current: &str) -> Result<Option<String>, ApiError> {
        let Some(raw) = next_link(a) else {
            return Ok(None);
        };
        let foreign = || ApiError::ForeignPage {
            next: raw.clone(),
            api: self.api.clone(),
        };
        let api = url::Url::parse(&self.api).map_err(|_| foreign())?;
        let next = url::Url::parse(current)
            .and_then(|c| c.join(&raw))
            .map_err(|_| foreign())?;
        let base = api.path().trim_end_matches('/');
        let same_origin = next.scheme() == api.scheme()
            && next.host_str() == api.host_str()
            && next.port_or_known_default() == api.port_or_known_default();
        let under = next.path() == base || next.path().starts_with(&format!("{base}/"));
        if same_origin && under && next.username().is_empty() && next.password().is_none() {
            Ok(Some(next.to_string()))
        } else {
            Err(foreign())
        }
    }
}

/// The raw `rel="next"` URL of an answer's `Link` header.
fn next_link(a: &Answer) -> Option<String> {
    let link = a.headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        rel.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

fn parse_time(s: &str) -> Option<u64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp().max(0) as u64)
}
