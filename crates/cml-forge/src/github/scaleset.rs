//! GitHub's runner scale-set protocol: how a pool of single-use runners learns of the jobs
//! meant for it and gets a just-in-time configuration per runner, with no PAT or App key
//! ever reaching a runner machine.
//!
//! The shapes follow the public sources of the protocol: `client.go`, `session_client.go`,
//! `types.go` and `errors.go` of github.com/actions/scaleset, and `github/actions/client.go`
//! and `github/actions/types.go` of github.com/actions/actions-runner-controller.
//!
//! The flow: a registration token (minted with the PAT or App token of a [`GithubClient`])
//! is exchanged at `POST {api}/actions/runner-registration` for the Actions service URL and
//! an admin token (a JWT, refreshed before its `exp`); the scale set is found or created by
//! name; one message session is opened on it (a second one is refused: another pool owns
//! the scale set); its message queue is long-polled, each message acknowledged by deleting
//! it; offered jobs are acquired; and each runner gets a JIT configuration from the scale
//! set (`run.sh --jitconfig BLOB`).
//!
//! Contract: tokens (registration, admin, message queue) and JIT blobs are [`Secret`]s: never
//! in errors, logs or `Debug` output. Calls that must not be done twice (creating a scale
//! set, a session, acquiring jobs, a JIT configuration) are not resent after a 5xx or a lost
//! answer: the scale set is looked up by name, a runner whose JIT configuration was lost is
//! deleted (nobody holds its configuration), and acquisitions are confirmed by the queue's
//! `JobAssigned` messages. Idempotent calls are retried as every forge call is
//! ([`RetryPolicy`]).

use std::sync::Arc;
use std::time::Duration;

use cml_core::Secret;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::GithubClient;
use crate::http::{now_unix, Answer, Http};
use crate::{ApiError, Deleted, ForgeError, RetryPolicy};

const SCALE_SETS: &str = "_apis/runtime/runnerscalesets";
const RUNNERS: &str = "_apis/distributedtask/pools/0/agents";
const API_VERSION: &str = "6.0-preview";
/// The runner group scale sets go in unless told otherwise.
pub const DEFAULT_RUNNER_GROUP: &str = "default";

/// A failed scale-set operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScaleSetError {
    #[error("the scale-set client for {url} could not be created: {reason}")]
    Client { url: String, reason: String },
    #[error("getting a registration token for the Actions service of {scope} failed: {cause}")]
    RegistrationToken { scope: String, cause: ForgeError },
    #[error("exchanging a registration token for an Actions service token for {scope} failed: {cause}\nhint: the token needs the rights to register self-hosted runners on {scope}")]
    AdminToken { scope: String, cause: ApiError },
    #[error("the Actions service answered the runner registration for {scope} without {missing}")]
    AdminAnswer {
        scope: String,
        missing: &'static str,
    },
    #[error("finding runner group {group:?} of {scope} failed: {cause}")]
    RunnerGroup {
        scope: String,
        group: String,
        cause: ApiError,
    },
    #[error("{scope} has no runner group named {group:?}\nhint: create it in the Actions runner-group settings, or use the default group")]
    NoRunnerGroup { scope: String, group: String },
    #[error("{what} {value:?} cannot name a runner scale set or label: it is empty or has spaces\nhint: use a name such as cml-pool, as jobs give it in runs-on")]
    BadName { what: &'static str, value: String },
    #[error("finding runner scale set {name} failed: {cause}")]
    FindScaleSet { name: String, cause: ApiError },
    #[error("creating runner scale set {name} failed: {cause}")]
    CreateScaleSet { name: String, cause: ApiError },
    #[error("updating the labels of runner scale set {name} failed: {cause}")]
    UpdateScaleSet { name: String, cause: ApiError },
    #[error("deleting runner scale set {name} failed: {cause}")]
    DeleteScaleSet { name: String, cause: ApiError },
    #[error("another pool owns runner scale set {name}: the Actions service refused a second message session ({message})\nhint: stop the other pool of this scale set, or give this pool its own scale set name; the session of a pool that died is released when it expires")]
    SessionConflict { name: String, message: String },
    #[error("opening a message session on runner scale set {name} failed: {cause}\nhint: if the service opened it anyway, it is released when it expires; try again then")]
    CreateSession { name: String, cause: ApiError },
    #[error("refreshing the message session on runner scale set {name} failed: {cause}")]
    RefreshSession { name: String, cause: ApiError },
    #[error("closing the message session on runner scale set {name} failed: {cause}\nhint: it is released when it expires")]
    DeleteSession { name: String, cause: ApiError },
    #[error("reading the message queue of runner scale set {name} failed: {cause}")]
    GetMessage { name: String, cause: ApiError },
    #[error("the message queue of runner scale set {name} sent an unreadable message: {reason}")]
    BadMessage { name: String, reason: String },
    #[error("acknowledging message {id} of runner scale set {name} failed: {cause}\nhint: the message is delivered again; its jobs must be handled once")]
    Ack {
        name: String,
        id: u64,
        cause: ApiError,
    },
    #[error("acquiring jobs {ids} for runner scale set {name} failed: {cause}\nhint: when the service got the request, the jobs it assigned come as JobAssigned messages; do not acquire them again")]
    AcquireJobs {
        name: String,
        ids: String,
        cause: ApiError,
    },
    #[error("creating a just-in-time configuration for runner {runner} of scale set {name} failed: {cause}")]
    JitConfig {
        name: String,
        runner: String,
        cause: ApiError,
    },
    #[error("the just-in-time configuration for runner {runner} of scale set {name} was lost ({first}); {outcome}")]
    JitConfigLost {
        name: String,
        runner: String,
        first: ApiError,
        outcome: String,
    },
    #[error("finding runner {runner} in the Actions service failed: {cause}")]
    GetRunner { runner: String, cause: ApiError },
    #[error("deleting runner {id} from the Actions service failed: {cause}")]
    DeleteRunner { id: u64, cause: ApiError },
}

impl ScaleSetError {
    /// The failed API call under this error, when there is one (e.g. to ask
    /// [`ApiError::may_have_taken_effect`]).
    pub fn api(&self) -> Option<&ApiError> {
        use ScaleSetError::*;
        match self {
            AdminToken { cause, .. }
            | RunnerGroup { cause, .. }
            | FindScaleSet { cause, .. }
            | CreateScaleSet { cause, .. }
            | UpdateScaleSet { cause, .. }
            | DeleteScaleSet { cause, .. }
            | CreateSession { cause, .. }
            | RefreshSession { cause, .. }
            | DeleteSession { cause, .. }
            | GetMessage { cause, .. }
            | Ack { cause, .. }
            | AcquireJobs { cause, .. }
            | JitConfig { cause, .. }
            | GetRunner { cause, .. }
            | DeleteRunner { cause, .. } => Some(cause),
            JitConfigLost { first, .. } => Some(first),
            RegistrationToken { cause, .. } => cause.api(),
            Client { .. }
            | AdminAnswer { .. }
            | NoRunnerGroup { .. }
            | BadName { .. }
            | SessionConflict { .. }
            | BadMessage { .. } => None,
        }
    }
}

/// A label of a scale set (`type` is `System` for the ones a scale set is created with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub name: String,
}

/// A scale set's statistics, as the service computes them (`RunnerScaleSetStatistic`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Statistics {
    pub total_available_jobs: u64,
    pub total_acquired_jobs: u64,
    /// Jobs assigned to the scale set and not completed (running ones included): the number
    /// of runners the scale set needs.
    pub total_assigned_jobs: u64,
    pub total_running_jobs: u64,
    pub total_registered_runners: u64,
    pub total_busy_runners: u64,
    pub total_idle_runners: u64,
}

/// A runner scale set (`RunnerScaleSet`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSet {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub runner_group_id: u64,
    #[serde(default)]
    pub runner_group_name: String,
    #[serde(default)]
    pub labels: Vec<Label>,
    #[serde(default)]
    pub statistics: Option<Statistics>,
}

/// An open message session. Its queue token is a secret (not in `Debug`).
pub struct Session {
    pub id: String,
    pub scale_set_id: u64,
    pub scale_set_name: String,
    pub owner: String,
    /// The statistics when the session was opened or last refreshed.
    pub statistics: Option<Statistics>,
    queue_url: String,
    queue_token: Secret,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("scale_set_id", &self.scale_set_id)
            .field("scale_set_name", &self.scale_set_name)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionAnswer {
    session_id: String,
    #[serde(default)]
    owner_name: String,
    message_queue_url: String,
    message_queue_access_token: String,
    #[serde(default)]
    statistics: Option<Statistics>,
}

/// What every job message says about its job (`JobMessageBase`). Times are RFC 3339; a time
/// that has not happened is Go's zero time, `0001-01-01T00:00:00Z`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInfo {
    pub runner_request_id: i64,
    #[serde(default)]
    pub repository_name: String,
    #[serde(default)]
    pub owner_name: String,
    #[serde(default)]
    pub job_id: String,
    #[serde(default)]
    pub job_workflow_ref: String,
    #[serde(default)]
    pub job_display_name: String,
    #[serde(default)]
    pub workflow_run_id: i64,
    #[serde(default)]
    pub event_name: String,
    #[serde(default)]
    pub request_labels: Vec<String>,
    #[serde(default)]
    pub queue_time: String,
    #[serde(default)]
    pub scale_set_assign_time: String,
    #[serde(default)]
    pub runner_assign_time: String,
    #[serde(default)]
    pub finish_time: String,
}

/// One job message of a queue message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobMessage {
    /// A job for the scale set: acquire it to have it assigned.
    Available {
        acquire_job_url: String,
        job: JobInfo,
    },
    /// The service assigned the job to the scale set (after an acquisition).
    Assigned { job: JobInfo },
    /// A runner of the scale set took the job.
    Started {
        runner_id: u64,
        runner_name: String,
        job: JobInfo,
    },
    /// The job finished: `result` is `succeeded`, `failed`, `canceled`, ...
    Completed {
        result: String,
        runner_id: u64,
        runner_name: String,
        job: JobInfo,
    },
}

impl JobMessage {
    pub fn job(&self) -> &JobInfo {
        match self {
            JobMessage::Available { job, .. }
            | JobMessage::Assigned { job }
            | JobMessage::Started { job, .. }
            | JobMessage::Completed { job, .. } => job,
        }
    }
}

/// A message of the queue (`RunnerScaleSetMessage`): delivered again until [`ScaleSetClient::ack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    pub statistics: Option<Statistics>,
    pub jobs: Vec<JobMessage>,
}

/// A runner the scale set registered, with its JIT configuration for `run.sh --jitconfig`.
#[derive(Debug, Clone)]
pub struct JitRunner {
    pub id: u64,
    pub name: String,
    pub scale_set_id: u64,
    pub config: Secret,
}

/// A runner as the Actions service knows it (`RunnerReference`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerReference {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub runner_scale_set_id: u64,
}

#[derive(Deserialize)]
struct List<T> {
    count: usize,
    value: Vec<T>,
}

#[derive(Deserialize)]
struct RunnerGroup {
    id: u64,
}

/// The Actions service URL and admin token, with when to refresh it.
struct Admin {
    url: String,
    token: Secret,
    /// Unix seconds after which a new token is fetched first.
    refresh_at: u64,
}

/// A client of the scale-set protocol for one repository or organization.
pub struct ScaleSetClient {
    github: Arc<GithubClient>,
    http: Http,
    admin: tokio::sync::Mutex<Option<Admin>>,
    long_poll_limit: Duration,
    /// Secrets received so far, for log redaction.
    minted: std::sync::Mutex<Vec<String>>,
}

impl std::fmt::Debug for ScaleSetClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScaleSetClient")
            .field("scope", &self.github.web_url())
            .finish_non_exhaustive()
    }
}

/// What went wrong in one authenticated call: the call itself, or getting a token for it.
enum CallError {
    Setup(ScaleSetError),
    Api(ApiError),
}

impl ScaleSetClient {
    /// A client for the repository or organization of `github`, whose PAT or App token mints
    /// the registration tokens. A message-queue poll is given up after `long_poll_limit`
    /// (the service holds one about 50 s when it has nothing to say).
    pub fn new(
        github: Arc<GithubClient>,
        retry: RetryPolicy,
        long_poll_limit: Duration,
    ) -> Result<ScaleSetClient, ScaleSetError> {
        let http = Http::new(retry).map_err(|reason| ScaleSetError::Client {
            url: github.web_url().to_string(),
            reason,
        })?;
        Ok(ScaleSetClient {
            github,
            http,
            admin: tokio::sync::Mutex::new(None),
            long_poll_limit,
            minted: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The secrets this client received so far (admin and queue tokens, JIT blobs), for
    /// log redaction.
    pub fn secrets(&self) -> Vec<String> {
        self.minted.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn remember(&self, secret: &str) {
        if let Ok(mut m) = self.minted.lock() {
            m.push(secret.to_string());
        }
    }

    fn scope(&self) -> String {
        format!("GitHub {}", self.github.github_scope())
    }

    /// The admin connection, fetched anew when `force`d, missing or about to expire.
    async fn admin(&self, force: bool) -> Result<(String, Secret), ScaleSetError> {
        let mut admin = self.admin.lock().await;
        if let Some(a) = admin
            .as_ref()
            .filter(|a| !force && now_unix() < a.refresh_at)
        {
            return Ok((a.url.clone(), a.token.clone()));
        }
        let scope = self.scope();
        let registration = self.github.registration_token().await.map_err(|cause| {
            ScaleSetError::RegistrationToken {
                scope: scope.clone(),
                cause,
            }
        })?;
        let url = format!("{}/actions/runner-registration", self.github.api_base());
        let body = json!({"url": self.github.web_url(), "runner_event": "register"});
        let answer = self
            .http
            .send(|c| {
                c.post(&url)
                    .header(
                        "authorization",
                        format!("RemoteAuth {}", registration.expose()),
                    )
                    .json(&body)
            })
            .await
            .and_then(|a| check(a, &[200, 201]))
            .map_err(|cause| ScaleSetError::AdminToken {
                scope: scope.clone(),
                cause,
            })?;
        let v: Value = answer.json().map_err(|cause| ScaleSetError::AdminToken {
            scope: scope.clone(),
            cause,
        })?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let (Some(url), Some(token)) = (text("url"), text("token")) else {
            return Err(ScaleSetError::AdminAnswer {
                scope,
                missing: "the service URL or the token",
            });
        };
        self.remember(token);
        let now = now_unix();
        let exp = jwt_exp(token).unwrap_or(now + 300);
        let lifetime = exp.saturating_sub(now);
        // Refreshed a minute before it expires, or at three quarters of a short life.
        let refresh_at = exp.saturating_sub((lifetime / 4).min(60));
        tracing::debug!("got an Actions service token for {scope}");
        let a = Admin {
            url: url.trim_end_matches('/').to_string(),
            token: Secret::new(token),
            refresh_at,
        };
        let out = (a.url.clone(), a.token.clone());
        *admin = Some(a);
        Ok(out)
    }

    /// An admin-token call to `path` (relative to the Actions service URL, with its query);
    /// on a 401 the token is refreshed and the call made once more (the service did not
    /// carry out a refused call). `once`: not resent after a 5xx or a lost answer.
    async fn admin_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        once: bool,
    ) -> Result<Answer, CallError> {
        let mut force = false;
        loop {
            let (base, token) = self.admin(force).await.map_err(CallError::Setup)?;
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = format!("{base}/{path}{sep}api-version={API_VERSION}");
            let build = |c: &reqwest::Client| {
                let mut r = c
                    .request(method.clone(), &url)
                    .bearer_auth(token.expose())
                    .header("accept", "application/json");
                if let Some(b) = &body {
                    r = r.json(b);
                }
                r
            };
            let answer = if once {
                self.http.send_once(build).await
            } else {
                self.http.send(build).await
            }
            .map_err(CallError::Api)?;
            if answer.status == 401 && !force {
                tracing::debug!("the Actions service refused its token; getting a new one");
                force = true;
                continue;
            }
            return Ok(answer);
        }
    }

    /// The id of runner group `group` (`default` is the default group).
    pub async fn runner_group_id(&self, group: &str) -> Result<u64, ScaleSetError> {
        let scope = self.scope();
        let err = |cause| ScaleSetError::RunnerGroup {
            scope: scope.clone(),
            group: group.to_string(),
            cause,
        };
        let path = format!(
            "_apis/runtime/runnergroups/?groupName={}",
            crate::http::percent_encode(group, &[])
        );
        let answer = self
            .admin_checked(Method::GET, &path, None, false, &[200], err)
            .await?;
        let list: List<RunnerGroup> = answer.json().map_err(err)?;
        match list.value.first() {
            Some(g) if list.count == 1 => Ok(g.id),
            _ => Err(ScaleSetError::NoRunnerGroup {
                scope,
                group: group.to_string(),
            }),
        }
    }

    /// [`Self::admin_call`] whose answer must have one of the `ok` statuses.
    async fn admin_checked(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        once: bool,
        ok: &[u16],
        wrap: impl Fn(ApiError) -> ScaleSetError,
    ) -> Result<Answer, ScaleSetError> {
        match self.admin_call(method, path, body, once).await {
            Ok(a) => check(a, ok).map_err(wrap),
            Err(CallError::Api(e)) => Err(wrap(e)),
            Err(CallError::Setup(e)) => Err(e),
        }
    }

    /// The scale set named `name` in runner group `group_id`, if there is one.
    pub async fn find_scale_set(
        &self,
        group_id: u64,
        name: &str,
    ) -> Result<Option<ScaleSet>, ScaleSetError> {
        let err = |cause| ScaleSetError::FindScaleSet {
            name: name.to_string(),
            cause,
        };
        let path = format!(
            "{SCALE_SETS}?runnerGroupId={group_id}&name={}",
            crate::http::percent_encode(name, &[])
        );
        let answer = self
            .admin_checked(Method::GET, &path, None, false, &[200], err)
            .await?;
        let list: List<ScaleSet> = answer.json().map_err(err)?;
        match list.count {
            0 => Ok(None),
            1 => Ok(list.value.into_iter().next()),
            n => Err(err(ApiError::Decode(format!(
                "{n} scale sets are named {name}"
            )))),
        }
    }

    /// The scale set named `name` in runner group `group` (see [`DEFAULT_RUNNER_GROUP`]),
    /// created with `labels` (none: its name is its label) when missing, its labels set to
    /// `labels` when they differ.
    pub async fn get_or_create_scale_set(
        &self,
        name: &str,
        labels: &[String],
        group: &str,
    ) -> Result<ScaleSet, ScaleSetError> {
        let bad = |s: &str| s.trim().is_empty() || s.chars().any(char::is_whitespace);
        if bad(name) {
            return Err(ScaleSetError::BadName {
                what: "the scale set name",
                value: name.to_string(),
            });
        }
        if let Some(l) = labels.iter().find(|l| bad(l)) {
            return Err(ScaleSetError::BadName {
                what: "the label",
                value: l.clone(),
            });
        }
        let group_id = self.runner_group_id(group).await?;
        let mut wanted: Vec<Label> = labels
            .iter()
            .map(|l| Label {
                kind: "System".into(),
                name: l.clone(),
            })
            .collect();
        if wanted.is_empty() {
            wanted.push(Label {
                kind: "System".into(),
                name: name.to_string(),
            });
        }
        if let Some(found) = self.find_scale_set(group_id, name).await? {
            let same = found.labels.len() == wanted.len()
                && wanted.iter().all(|w| {
                    found
                        .labels
                        .iter()
                        .any(|l| l.name.eq_ignore_ascii_case(&w.name))
                });
            if same {
                return Ok(found);
            }
            let err = |cause| ScaleSetError::UpdateScaleSet {
                name: name.to_string(),
                cause,
            };
            let path = format!("{SCALE_SETS}/{}", found.id);
            let body = json!({"labels": wanted});
            let answer = self
                .admin_checked(Method::PATCH, &path, Some(body), false, &[200], err)
                .await?;
            return answer.json().map_err(err);
        }
        let err = |cause| ScaleSetError::CreateScaleSet {
            name: name.to_string(),
            cause,
        };
        let body = json!({
            "name": name, "runnerGroupId": group_id, "labels": wanted,
            "RunnerSetting": {"ephemeral": true, "isElastic": true, "disableUpdate": true},
        });
        match self
            .admin_checked(Method::POST, SCALE_SETS, Some(body), true, &[200], err)
            .await
        {
            Ok(answer) => answer.json().map_err(err),
            Err(ScaleSetError::CreateScaleSet { cause, .. }) if cause.may_have_taken_effect() => {
                // Look it up rather than create it twice.
                match self.find_scale_set(group_id, name).await? {
                    Some(s) => Ok(s),
                    None => Err(err(cause)),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes scale set `set` (its runners stay until deleted).
    pub async fn delete_scale_set(&self, set: &ScaleSet) -> Result<(), ScaleSetError> {
        let err = |cause| ScaleSetError::DeleteScaleSet {
            name: set.name.clone(),
            cause,
        };
        let path = format!("{SCALE_SETS}/{}", set.id);
        self.admin_checked(Method::DELETE, &path, None, false, &[204, 404], err)
            .await
            .map(drop)
    }

    /// Opens the message session of `set` for `owner` (this pool's name). Only one session
    /// may be open on a scale set: while another is, the answer is
    /// [`ScaleSetError::SessionConflict`].
    pub async fn create_session(
        &self,
        set: &ScaleSet,
        owner: &str,
    ) -> Result<Session, ScaleSetError> {
        let err = |cause| ScaleSetError::CreateSession {
            name: set.name.clone(),
            cause,
        };
        let path = format!("{SCALE_SETS}/{}/sessions", set.id);
        let answer = match self
            .admin_call(Method::POST, &path, Some(json!({"ownerName": owner})), true)
            .await
        {
            Ok(a) => a,
            Err(CallError::Api(e)) => return Err(err(e)),
            Err(CallError::Setup(e)) => return Err(e),
        };
        if answer.status == 409 {
            return Err(ScaleSetError::SessionConflict {
                name: set.name.clone(),
                message: answer.message(),
            });
        }
        let answer = check(answer, &[200]).map_err(err)?;
        let s: SessionAnswer = answer.json().map_err(err)?;
        self.remember(&s.message_queue_access_token);
        Ok(Session {
            id: s.session_id,
            scale_set_id: set.id,
            scale_set_name: set.name.clone(),
            owner: if s.owner_name.is_empty() {
                owner.to_string()
            } else {
                s.owner_name
            },
            statistics: s.statistics,
            queue_url: s.message_queue_url,
            queue_token: Secret::new(s.message_queue_access_token),
        })
    }

    /// Gets a new queue token for `session` (done by the queue calls when theirs is refused).
    pub async fn refresh_session(&self, session: &mut Session) -> Result<(), ScaleSetError> {
        let err = |cause| ScaleSetError::RefreshSession {
            name: session.scale_set_name.clone(),
            cause,
        };
        let path = format!(
            "{SCALE_SETS}/{}/sessions/{}",
            session.scale_set_id, session.id
        );
        let answer = self
            .admin_checked(Method::PATCH, &path, None, false, &[200], err)
            .await?;
        let s: SessionAnswer = answer.json().map_err(err)?;
        self.remember(&s.message_queue_access_token);
        session.queue_url = s.message_queue_url;
        session.queue_token = Secret::new(s.message_queue_access_token);
        session.statistics = s.statistics.or(session.statistics);
        Ok(())
    }

    /// Closes `session` (one already gone is fine).
    pub async fn delete_session(&self, session: &Session) -> Result<(), ScaleSetError> {
        let err = |cause| ScaleSetError::DeleteSession {
            name: session.scale_set_name.clone(),
            cause,
        };
        let path = format!(
            "{SCALE_SETS}/{}/sessions/{}",
            session.scale_set_id, session.id
        );
        self.admin_checked(Method::DELETE, &path, None, false, &[204, 404], err)
            .await
            .map(drop)
    }

    /// A queue call with the session's token; refreshed once when refused (401).
    async fn queue_call(
        &self,
        session: &mut Session,
        method: Method,
        url: &str,
        body: Option<Value>,
        once: bool,
        poll: Option<(Duration, u32)>,
    ) -> Result<Answer, CallError> {
        let mut refreshed = false;
        loop {
            let token = session.queue_token.clone();
            let build = |c: &reqwest::Client| {
                let mut r = c
                    .request(method.clone(), url)
                    .bearer_auth(token.expose())
                    .header(
                        "accept",
                        format!("application/json; api-version={API_VERSION}"),
                    );
                if let Some(b) = &body {
                    r = r.json(b);
                }
                if let Some((limit, capacity)) = poll {
                    r = r
                        .timeout(limit)
                        .header("x-scalesetmaxcapacity", capacity.to_string());
                }
                r
            };
            let answer = if once {
                self.http.send_once(build).await
            } else {
                self.http.send(build).await
            }
            .map_err(CallError::Api)?;
            if answer.status == 401 && !refreshed {
                refreshed = true;
                self.refresh_session(session)
                    .await
                    .map_err(CallError::Setup)?;
                continue;
            }
            return Ok(answer);
        }
    }

    /// The next message of the queue after `last_id` (0: none seen yet), waiting at most the
    /// client's long-poll limit (per attempt; an unanswered poll is tried up to 3 times);
    /// `None` when nothing came. A message is delivered again until [`Self::ack`]ed.
    /// `max_capacity` tells the service how many runners the pool can still start.
    pub async fn get_message(
        &self,
        session: &mut Session,
        last_id: u64,
        max_capacity: u32,
    ) -> Result<Option<Message>, ScaleSetError> {
        let name = session.scale_set_name.clone();
        let err = |cause| ScaleSetError::GetMessage {
            name: name.clone(),
            cause,
        };
        let mut url = session.queue_url.clone();
        if last_id > 0 {
            url.push_str(if url.contains('?') { "&" } else { "?" });
            url.push_str(&format!("lastMessageId={last_id}"));
        }
        let answer = match self
            .queue_call(
                session,
                Method::GET,
                &url,
                None,
                false,
                Some((self.long_poll_limit, max_capacity)),
            )
            .await
        {
            Ok(a) => a,
            Err(CallError::Api(e)) => return Err(err(e)),
            Err(CallError::Setup(e)) => return Err(e),
        };
        if answer.status == 202 {
            return Ok(None);
        }
        let answer = check(answer, &[200]).map_err(err)?;
        parse_message(&answer.body)
            .map(Some)
            .map_err(|reason| ScaleSetError::BadMessage {
                name: name.clone(),
                reason,
            })
    }

    /// Acknowledges (deletes) message `id`: it is not delivered again.
    pub async fn ack(&self, session: &mut Session, id: u64) -> Result<(), ScaleSetError> {
        let name = session.scale_set_name.clone();
        let err = |cause| ScaleSetError::Ack {
            name: name.clone(),
            id,
            cause,
        };
        let url = format!("{}/{id}", session.queue_url.trim_end_matches('/'));
        match self
            .queue_call(session, Method::DELETE, &url, None, false, None)
            .await
        {
            Ok(a) => check(a, &[204, 200]).map(drop).map_err(err),
            Err(CallError::Api(e)) => Err(err(e)),
            Err(CallError::Setup(e)) => Err(e),
        }
    }

    /// Acquires the jobs `request_ids` (`runnerRequestId`s of `JobAvailable` messages) for the
    /// session's scale set; returns those the service gave it. Sent once: after a 5xx or a
    /// lost answer the error says so, and the `JobAssigned` messages tell what was acquired.
    pub async fn acquire_jobs(
        &self,
        session: &mut Session,
        request_ids: &[i64],
    ) -> Result<Vec<i64>, ScaleSetError> {
        let name = session.scale_set_name.clone();
        let ids = request_ids
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let err = |cause| ScaleSetError::AcquireJobs {
            name: name.clone(),
            ids: ids.clone(),
            cause,
        };
        let (base, _) = self.admin(false).await?;
        let url = format!(
            "{base}/{SCALE_SETS}/{}/acquirejobs?api-version={API_VERSION}",
            session.scale_set_id
        );
        let body = json!(request_ids);
        let answer = match self
            .queue_call(session, Method::POST, &url, Some(body), true, None)
            .await
        {
            Ok(a) => a,
            Err(CallError::Api(e)) => return Err(err(e)),
            Err(CallError::Setup(e)) => return Err(e),
        };
        let answer = check(answer, &[200]).map_err(err)?;
        let list: List<i64> = answer.json().map_err(err)?;
        Ok(list.value)
    }

    /// Registers runner `name` in scale set `set` and returns its JIT configuration. Sent
    /// once: when the answer is lost, the runner the service may have registered is deleted
    /// (nobody holds its configuration) and the error says whether that worked.
    pub async fn generate_jit_config(
        &self,
        set: &ScaleSet,
        name: &str,
        work_folder: &str,
    ) -> Result<JitRunner, ScaleSetError> {
        let err = |cause| ScaleSetError::JitConfig {
            name: set.name.clone(),
            runner: name.to_string(),
            cause,
        };
        let path = format!("{SCALE_SETS}/{}/generatejitconfig", set.id);
        let body = json!({"name": name, "workFolder": work_folder});
        let first = match self
            .admin_checked(Method::POST, &path, Some(body), true, &[200], err)
            .await
        {
            Ok(answer) => {
                #[derive(Deserialize)]
                struct Jit {
                    runner: RunnerReference,
                    #[serde(rename = "encodedJITConfig")]
                    encoded: String,
                }
                match answer.json::<Jit>() {
                    Ok(j) => {
                        self.remember(&j.encoded);
                        return Ok(JitRunner {
                            id: j.runner.id,
                            name: j.runner.name,
                            scale_set_id: set.id,
                            config: Secret::new(j.encoded),
                        });
                    }
                    Err(e) => e,
                }
            }
            Err(ScaleSetError::JitConfig { cause, .. }) if cause.may_have_taken_effect() => cause,
            Err(e) => return Err(e),
        };
        let outcome = match self.get_runner_by_name(name).await {
            Ok(None) => "the service did not register it".to_string(),
            Ok(Some(r)) => match self.delete_runner(r.id).await {
                Ok(_) => format!("runner {name} (id {}) it registered was deleted", r.id),
                Err(e) => format!("deleting runner {name} (id {}) it registered failed too: {e}\nhint: delete runner {name} in the runner settings", r.id),
            },
            Err(e) => format!("finding out whether it registered the runner failed too: {e}\nhint: if the runner settings list {name}, delete it"),
        };
        Err(ScaleSetError::JitConfigLost {
            name: set.name.clone(),
            runner: name.to_string(),
            first,
            outcome,
        })
    }

    /// The runner named `name`, if the service knows it.
    pub async fn get_runner_by_name(
        &self,
        name: &str,
    ) -> Result<Option<RunnerReference>, ScaleSetError> {
        let err = |cause| ScaleSetError::GetRunner {
            runner: name.to_string(),
            cause,
        };
        let path = format!(
            "{RUNNERS}?agentName={}",
            crate::http::percent_encode(name, &[])
        );
        let answer = self
            .admin_checked(Method::GET, &path, None, false, &[200], err)
            .await?;
        let list: List<RunnerReference> = answer.json().map_err(err)?;
        Ok(list.value.into_iter().next())
    }

    /// Deletes runner `id`: [`Deleted::Busy`] while it runs a job, [`Deleted::AlreadyGone`]
    /// when the service no longer knows it (a JIT runner removes itself after its job).
    pub async fn delete_runner(&self, id: u64) -> Result<Deleted, ScaleSetError> {
        let err = |cause| ScaleSetError::DeleteRunner { id, cause };
        let path = format!("{RUNNERS}/{id}");
        let answer = match self.admin_call(Method::DELETE, &path, None, false).await {
            Ok(a) => a,
            Err(CallError::Api(e)) => return Err(err(e)),
            Err(CallError::Setup(e)) => return Err(e),
        };
        match answer.status {
            204 | 200 => Ok(Deleted::Removed),
            404 => Ok(Deleted::AlreadyGone),
            400 if exception_type(&answer).contains("JobStillRunningException") => {
                Ok(Deleted::Busy(answer.message()))
            }
            _ => Err(err(check(answer, &[])
                .err()
                .unwrap_or(ApiError::Decode(String::new())))),
        }
    }
}

/// `a` when its status is one of `ok`, else the service's message as an error.
fn check(a: Answer, ok: &[u16]) -> Result<Answer, ApiError> {
    if ok.contains(&a.status) {
        return Ok(a);
    }
    Err(ApiError::Status {
        status: a.status,
        message: a.message(),
    })
}

/// The service's exception name (`typeName`) in an error answer, or "".
fn exception_type(a: &Answer) -> String {
    serde_json::from_slice::<Value>(&a.body)
        .ok()
        .and_then(|v| v.get("typeName")?.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The `exp` claim of a JWT (read without verifying it: only to know when to refresh).
fn jwt_exp(token: &str) -> Option<u64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()
}

/// A queue message: `{messageId, messageType: "RunnerScaleSetJobMessages", body, statistics}`
/// with `body` a JSON string of job messages. Job messages of unknown types are skipped.
fn parse_message(body: &[u8]) -> Result<Message, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        message_id: u64,
        message_type: String,
        #[serde(default)]
        body: String,
        #[serde(default)]
        statistics: Option<Statistics>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if raw.message_type != "RunnerScaleSetJobMessages" {
        return Err(format!("unsupported message type {:?}", raw.message_type));
    }
    let items: Vec<Value> = if raw.body.is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(&raw.body).map_err(|e| format!("message {}: {e}", raw.message_id))?
    };
    let mut jobs = Vec::new();
    for item in items {
        let kind = item
            .get("messageType")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let bad = |e: serde_json::Error| format!("message {}: {kind}: {e}", raw.message_id);
        let job: JobInfo = match kind.as_str() {
            "JobAvailable" | "JobAssigned" | "JobStarted" | "JobCompleted" => {
                serde_json::from_value(item.clone()).map_err(bad)?
            }
            _ => continue,
        };
        let text = |k: &str| {
            item.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let runner_id = item.get("runnerId").and_then(Value::as_u64).unwrap_or(0);
        jobs.push(match kind.as_str() {
            "JobAvailable" => JobMessage::Available {
                acquire_job_url: text("acquireJobUrl"),
                job,
            },
            "JobAssigned" => JobMessage::Assigned { job },
            "JobStarted" => JobMessage::Started {
                runner_id,
                runner_name: text("runnerName"),
                job,
            },
            _ => JobMessage::Completed {
                result: text("result"),
                runner_id,
                runner_name: text("runnerName"),
                job,
            },
        });
    }
    Ok(Message {
        id: raw.message_id,
        statistics: raw.statistics,
        jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_body_is_a_json_string_of_typed_job_messages() {
        let body = json!([
            {"messageType": "JobAvailable", "runnerRequestId": 7, "repositoryName": "r",
             "ownerName": "o", "jobId": "j", "requestLabels": ["set"],
             "acquireJobUrl": "https://x/acquirejobs", "queueTime": "2024-01-01T00:00:00Z"},
            {"messageType": "SomethingNew", "runnerRequestId": 8},
            {"messageType": "JobCompleted", "runnerRequestId": 7, "result": "succeeded",
             "runnerId": 3, "runnerName": "n"},
        ])
        .to_string();
        let raw = json!({"messageId": 4, "messageType": "RunnerScaleSetJobMessages",
            "body": body, "statistics": {"totalAssignedJobs": 2}});
        let m = parse_message(raw.to_string().as_bytes()).unwrap();
        assert_eq!(m.id, 4);
        assert_eq!(m.statistics.unwrap().total_assigned_jobs, 2);
        assert_eq!(m.jobs.len(), 2, "the unknown type is skipped");
        assert!(
            matches!(&m.jobs[0], JobMessage::Available { acquire_job_url, job }
            if acquire_job_url == "https://x/acquirejobs" && job.runner_request_id == 7
            && job.request_labels == ["set"])
        );
        assert!(
            matches!(&m.jobs[1], JobMessage::Completed { result, runner_id: 3, .. }
            if result == "succeeded")
        );
        let other = json!({"messageId": 1, "messageType": "Other", "body": ""});
        assert!(parse_message(other.to_string().as_bytes())
            .unwrap_err()
            .contains("unsupported message type"));
    }

    #[test]
    fn the_admin_token_expiry_is_read_from_its_jwt() {
        use base64::Engine;
        let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!(
            "{}.{}.sig",
            enc(json!({"alg": "HS256"})),
            enc(json!({"exp": 1234}))
        );
        assert_eq!(jwt_exp(&token), Some(1234));
        assert_eq!(jwt_exp("not-a-jwt"), None);
    }
}
