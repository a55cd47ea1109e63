//! The simulated Actions service behind GitHub's runner scale sets, as
//! actions-runner-controller and the `actions/scaleset` library speak to it.
//!
//! Shapes follow the public sources: `client.go`, `session_client.go`, `types.go` and
//! `errors.go` of github.com/actions/scaleset, and `github/actions/client.go`,
//! `github/actions/types.go` and `github/actions/errors.go` of
//! github.com/actions/actions-runner-controller (before its client moved to that library).
//!
//! - `POST {api}/actions/runner-registration` with `Authorization: RemoteAuth <registration
//!   token>` and `{"url": "<repository or organization URL>", "runner_event": "register"}` →
//!   `{"url": "<base>/_actions/", "token": "<admin JWT>"}`. The admin token is scoped to that
//!   repository or organization and expires (`exp` claim, [`SimConfig::actions_admin_token_ttl`](crate::SimConfig::actions_admin_token_ttl)).
//! - Under `<base>/_actions/`, with `Authorization: Bearer <admin token>`: runner groups
//!   (`_apis/runtime/runnergroups/?groupName=`), scale sets (`_apis/runtime/runnerscalesets`:
//!   list by `runnerGroupId` and `name`, create, get, patch, delete), message sessions
//!   (`…/{id}/sessions`: create with `ownerName` — 409 `TaskAgentSessionConflictException`
//!   while another is open —, refresh with `PATCH`, `DELETE`), `…/{id}/generatejitconfig`,
//!   and runners (`_apis/distributedtask/pools/0/agents`: by `agentName`, get, delete).
//! - With the session's `messageQueueAccessToken`: `POST …/{id}/acquirejobs` (a JSON array
//!   of `runnerRequestId`s → `{count, value}`), `GET <messageQueueUrl>[?lastMessageId=N]`
//!   (held open up to [`SimConfig::actions_message_wait`](crate::SimConfig::actions_message_wait); 202 with no body when nothing
//!   came, else 200 `{messageId, messageType: "RunnerScaleSetJobMessages", body, statistics}`
//!   where `body` is a JSON string of job messages), `DELETE <messageQueueUrl>/{messageId}`
//!   (the acknowledgement: a message is delivered again until it is deleted).
//! - A session no listener used (polled, acquired with, refreshed) for
//!   [`SimConfig::actions_session_expiry`](crate::SimConfig::actions_session_expiry) is dropped, as the service drops the session of a
//!   listener that died: the scale set takes a new session then.
//!
//! Which jobs a scale set gets: a queued job whose `runs-on` labels are all labels of a scale
//! set serving its repository (by default a scale set's only label is its name, so
//! `runs-on: <scale set name>`) belongs to that scale set (the oldest such scale set) as soon
//! as the service sees it; regular self-hosted runners never take it. Every other job is for
//! regular self-hosted runners, as before. A scale set's job is offered (`JobAvailable`),
//! acquired by the listener (`JobAssigned`), taken by a runner the scale set's JIT
//! configuration created (`JobStarted`; such a runner takes only its scale set's acquired
//! jobs, one, and is removed after it: JIT runners are ephemeral) and finished
//! (`JobCompleted` with `result` `succeeded`, `failed` or `canceled`).
//!
//! Statistics (`RunnerScaleSetStatistic`), computed when asked: available = offered and not
//! acquired; acquired = acquired, not yet taken by a runner; assigned = acquired and not
//! completed (running ones included: ARC sizes its runners by this number); running = taken
//! by a runner and not completed; registered, busy and idle count the scale set's runners.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::state::{Scope, State};
use super::{Req, Resp, Shared};
use crate::util::{random_hex, rfc3339, unix_secs};

/// The timestamp the service sends for a time that has not happened (Go's zero time).
const NEVER: &str = "0001-01-01T00:00:00Z";

/// The id of the one runner group every scope has.
const DEFAULT_GROUP_ID: u64 = 1;
const DEFAULT_GROUP_NAME: &str = "Default";

/// The Actions service's state (kept in [`State`] so jobs and runners change with it).
#[derive(Default)]
pub struct Service {
    next_scale_set_id: u64,
    next_message_id: u64,
    /// admin token → (scope, expiry)
    admin_tokens: HashMap<String, (Scope, SystemTime)>,
    pub scale_sets: BTreeMap<u64, ScaleSet>,
    /// session id → session
    sessions: HashMap<String, Session>,
    /// workflow job id → its life in a scale set
    jobs: BTreeMap<u64, SetJob>,
    /// Answer the next session create with the conflict, as if another listener held one.
    pub conflict_next_session: bool,
    /// Every admin and message-queue token handed out (tests check none is printed).
    pub issued: Vec<String>,
}

/// A runner scale set.
#[derive(Clone, Debug)]
pub struct ScaleSet {
    pub id: u64,
    pub name: String,
    pub scope: Scope,
    pub group_id: u64,
    /// (type, name)
    pub labels: Vec<(String, String)>,
    /// `RunnerSetting`: `ephemeral`, `isElastic`, `disableUpdate` (as sent, booleans only).
    pub setting: serde_json::Map<String, Value>,
    pub created: SystemTime,
    /// The `X-ScaleSetMaxCapacity` of the last queue poll.
    pub max_capacity: Option<u32>,
    /// Job messages not yet put into a queue message.
    events: Vec<Value>,
    /// Delivered or deliverable messages, until deleted: (message id, job messages).
    queue: VecDeque<(u64, Vec<Value>)>,
}

#[derive(Clone, Debug)]
struct Session {
    id: String,
    scale_set: u64,
    owner: String,
    token: String,
    /// When its listener last used it (a session unused for
    /// [`crate::SimConfig::actions_session_expiry`] is dropped).
    last_seen: Instant,
}

/// A workflow job that belongs to a scale set.
#[derive(Clone, Debug)]
struct SetJob {
    scale_set: u64,
    acquired_at: Option<SystemTime>,
    runner_assigned_at: Option<SystemTime>,
    finished_at: Option<SystemTime>,
}

/// A scale set's statistics, as the service computes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    pub total_available_jobs: u64,
    pub total_acquired_jobs: u64,
    pub total_assigned_jobs: u64,
    pub total_running_jobs: u64,
    pub total_registered_runners: u64,
    pub total_busy_runners: u64,
    pub total_idle_runners: u64,
}

impl Service {
    /// Whether job `id` belongs to a scale set (regular runners must not take it).
    pub fn claims(&self, id: u64) -> bool {
        self.jobs.contains_key(&id)
    }

    /// Makes every admin token the service minted expire now (the client still believes
    /// them valid: its next call is refused with 401).
    pub fn expire_admin_tokens(&mut self) {
        let past = SystemTime::now() - Duration::from_secs(1);
        for (_, exp) in self.admin_tokens.values_mut() {
            *exp = past;
        }
    }

    /// Replaces every session's message-queue token (the old ones are refused with 401,
    /// as when the service rotates them; the client refreshes its session).
    pub fn expire_queue_tokens(&mut self) {
        for s in self.sessions.values_mut() {
            s.token = random_hex(48);
        }
    }

    /// Open sessions as (scale set id, owner).
    pub fn sessions(&self) -> Vec<(u64, String)> {
        let mut v: Vec<_> = self
            .sessions
            .values()
            .map(|s| (s.scale_set, s.owner.clone()))
            .collect();
        v.sort();
        v
    }

    /// Drops the sessions no listener used for `idle` (their listener died).
    fn expire_sessions(&mut self, idle: Duration) {
        self.sessions.retain(|_, s| s.last_seen.elapsed() <= idle);
    }

    fn session_of(&self, scale_set: u64) -> Option<&Session> {
        self.sessions.values().find(|s| s.scale_set == scale_set)
    }
}

impl State {
    /// Gives each queued job that no scale set has yet to the oldest scale set serving its
    /// repository whose labels cover the job's labels, and offers it (`JobAvailable`).
    pub fn route_scale_set_jobs(&mut self) {
        let sets: Vec<ScaleSet> = self.actions.scale_sets.values().cloned().collect();
        if sets.is_empty() {
            return;
        }
        let mut offered = Vec::new();
        for j in self.jobs.values() {
            if j.status != "queued" || j.labels.is_empty() || self.actions.jobs.contains_key(&j.id)
            {
                continue;
            }
            let set = sets.iter().find(|s| {
                s.scope.serves_repo(&j.repo)
                    && j.labels
                        .iter()
                        .all(|l| s.labels.iter().any(|(_, n)| n.eq_ignore_ascii_case(l)))
            });
            if let Some(s) = set {
                offered.push((j.id, s.id));
            }
        }
        for (job, set) in offered {
            self.actions.jobs.insert(
                job,
                SetJob {
                    scale_set: set,
                    acquired_at: None,
                    runner_assigned_at: None,
                    finished_at: None,
                },
            );
            self.push_event(job, "JobAvailable");
        }
    }

    /// Runner `runner` of scale set `set` takes the oldest job the scale set acquired that no
    /// runner has taken (`JobStarted`); returns the job id.
    pub fn start_scale_set_job(&mut self, runner: u64, set: u64) -> Option<u64> {
        let job_id = self
            .actions
            .jobs
            .iter()
            .find(|(id, sj)| {
                sj.scale_set == set
                    && sj.acquired_at.is_some()
                    && sj.runner_assigned_at.is_none()
                    && self.jobs.get(id).is_some_and(|j| j.status == "queued")
            })
            .map(|(id, _)| *id)?;
        let name = self.runners.get(&runner)?.name.clone();
        let now = SystemTime::now();
        let job = self.jobs.get_mut(&job_id)?;
        job.status = "in_progress".into();
        job.runner_id = Some(runner);
        job.runner_name = Some(name);
        job.started_at = Some(now);
        if let Some(sj) = self.actions.jobs.get_mut(&job_id) {
            sj.runner_assigned_at = Some(now);
        }
        if let Some(r) = self.runners.get_mut(&runner) {
            r.busy = true;
        }
        self.push_event(job_id, "JobStarted");
        Some(job_id)
    }

    /// Job `id` completed: when it is a scale set's, says so (`JobCompleted`).
    pub fn finish_scale_set_job(&mut self, id: u64) {
        match self.actions.jobs.get_mut(&id) {
            Some(sj) if sj.finished_at.is_none() => sj.finished_at = Some(SystemTime::now()),
            _ => return,
        }
        self.push_event(id, "JobCompleted");
    }

    /// Queues a job message of `kind` about job `id` for its scale set.
    fn push_event(&mut self, id: u64, kind: &str) {
        let (Some(j), Some(sj)) = (self.jobs.get(&id), self.actions.jobs.get(&id)) else {
            return;
        };
        let (owner, repo) = j.repo.split_once('/').unwrap_or((&j.repo, ""));
        let at = |t: Option<SystemTime>| t.map(rfc3339).unwrap_or_else(|| NEVER.to_string());
        let mut m = json!({
            "messageType": kind,
            "runnerRequestId": j.id,
            "repositoryName": repo,
            "ownerName": owner,
            "jobId": format!("{:08x}-0000-4000-8000-{:012x}", j.run_id, j.id),
            "jobWorkflowRef": format!("{}/.github/workflows/ci.yml@refs/heads/main", j.repo),
            "jobDisplayName": j.name,
            "workflowRunId": j.run_id,
            "eventName": "push",
            "requestLabels": j.labels,
            "queueTime": rfc3339(j.created_at),
            "scaleSetAssignTime": at(sj.acquired_at),
            "runnerAssignTime": at(sj.runner_assigned_at),
            "finishTime": at(sj.finished_at),
        });
        let set = sj.scale_set;
        match kind {
            "JobAvailable" => {
                m["acquireJobUrl"] = json!(format!(
                    "_apis/runtime/runnerscalesets/{set}/acquirejobs?api-version=6.0-preview"
                ));
            }
            "JobStarted" | "JobCompleted" => {
                m["runnerId"] = json!(j.runner_id.unwrap_or(0));
                m["runnerName"] = json!(j.runner_name.clone().unwrap_or_default());
                if kind == "JobCompleted" {
                    m["result"] = json!(match j.conclusion.as_deref() {
                        Some("success") => "succeeded",
                        Some("cancelled") => "canceled",
                        _ => "failed",
                    });
                }
            }
            _ => {}
        }
        if let Some(s) = self.actions.scale_sets.get_mut(&set) {
            s.events.push(m);
        }
    }

    /// Scale set `id`'s statistics now.
    pub fn scale_set_statistics(&self, id: u64) -> Statistics {
        let mut st = Statistics::default();
        for (jid, sj) in &self.actions.jobs {
            let completed = self.jobs.get(jid).is_none_or(|j| j.status == "completed");
            if sj.scale_set != id || completed {
                continue;
            }
            match (sj.acquired_at, sj.runner_assigned_at) {
                (None, _) => st.total_available_jobs += 1,
                (Some(_), None) => {
                    st.total_acquired_jobs += 1;
                    st.total_assigned_jobs += 1;
                }
                (Some(_), Some(_)) => {
                    st.total_assigned_jobs += 1;
                    st.total_running_jobs += 1;
                }
            }
        }
        for r in self.runners.values().filter(|r| r.scale_set == Some(id)) {
            st.total_registered_runners += 1;
            if r.busy {
                st.total_busy_runners += 1;
            } else {
                st.total_idle_runners += 1;
            }
        }
        st
    }
}

/// An answer in the Actions service's exception shape.
fn exception(status: u16, type_name: &str, message: &str) -> Resp {
    Resp::json(
        status,
        json!({
            "$id": "1", "innerException": null, "message": message,
            "typeName": format!("GitHub.DistributedTask.WebApi.{type_name}, GitHub.DistributedTask.WebApi"),
            "typeKey": type_name, "errorCode": 0, "eventId": 3000,
        }),
    )
}

fn bearer(req: &Req) -> Option<String> {
    let h = req.headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, rest) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_string())
}

/// `POST /actions/runner-registration`: a registration token for the URL's repository or
/// organization buys the Actions service URL and an admin token for that scope.
pub fn register(sh: &Shared, req: &Req) -> Resp {
    if !sh.cfg.actions_scale_sets {
        return Resp::error(404, "Not Found");
    }
    let token = req
        .headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("RemoteAuth"))
        .map(|(_, t)| t.trim().to_string());
    let Some(token) = token else {
        return Resp::error(401, "Requires authentication");
    };
    let body = req.json();
    if body.get("runner_event").and_then(Value::as_str) != Some("register") {
        return Resp::error(422, "runner_event must be \"register\"");
    }
    let url = body.get("url").and_then(Value::as_str).unwrap_or("");
    let path = url
        .strip_prefix(&sh.base_url)
        .filter(|p| p.starts_with('/'))
        .unwrap_or("");
    let Some(scope) = Scope::parse(path) else {
        return Resp::error(
            404,
            &format!("{url:?} is not a repository or organization URL of this server"),
        );
    };
    let mut st = sh.lock();
    let valid = st
        .registration_tokens
        .iter()
        .any(|t| t.token == token && t.scope.same(&scope) && t.expires > SystemTime::now());
    if !valid {
        return Resp::error(401, "Bad credentials");
    }
    // The service stops accepting the token at the `exp` claim (whole seconds).
    let exp = SystemTime::UNIX_EPOCH
        + Duration::from_secs(unix_secs(
            SystemTime::now() + sh.cfg.actions_admin_token_ttl,
        ));
    let admin = admin_jwt(&scope, exp);
    st.actions.admin_tokens.insert(admin.clone(), (scope, exp));
    st.actions.issued.push(admin.clone());
    Resp::json(
        200,
        json!({"url": format!("{}/_actions/", sh.base_url), "token": admin}),
    )
}

/// A JWT whose `exp` says when the service stops accepting it (clients read it unverified).
fn admin_jwt(scope: &Scope, exp: SystemTime) -> String {
    let claims = json!({
        "sub": scope.key(), "iss": "cml-sim", "aud": "actions",
        "iat": unix_secs(SystemTime::now()), "nbf": unix_secs(SystemTime::now()),
        "exp": unix_secs(exp), "jti": random_hex(16),
    });
    let key = jsonwebtoken::EncodingKey::from_secret(random_hex(32).as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
        .unwrap_or_else(|_| random_hex(64))
}

/// Everything under `/_actions/`: faults and the request log apply as on GitHub's routes.
pub async fn serve(sh: &Shared, req: &Req, segs: &[&str]) -> Resp {
    let fault = super::take_fault(sh, req);
    let resp = match fault {
        Some((fault, shaped)) => {
            let mut r = if fault.after_serving {
                let real = route(sh, req, segs).await;
                if fault.status == 0 {
                    real
                } else {
                    shaped
                }
            } else {
                shaped
            };
            r.delay = Duration::from_millis(fault.delay_ms);
            r
        }
        None => route(sh, req, segs).await,
    };
    super::record(sh, req, resp.status);
    resp
}

async fn route(sh: &Shared, req: &Req, segs: &[&str]) -> Resp {
    let m = req.method.as_str();
    let rest = &segs[1..];
    // Message queue routes authenticate with the session's queue token.
    match (m, rest) {
        ("GET", ["queues", sid, "messages"]) => return get_message(sh, req, sid).await,
        ("DELETE", ["queues", sid, "messages", mid]) => return delete_message(sh, req, sid, mid),
        ("POST", ["_apis", "runtime", "runnerscalesets", id, "acquirejobs"]) => {
            return acquire(sh, req, id)
        }
        _ => {}
    }
    let mut st = sh.lock();
    let scope = match bearer(req).and_then(|t| st.actions.admin_tokens.get(&t).cloned()) {
        Some((scope, exp)) if exp > SystemTime::now() => scope,
        Some(_) => return exception(401, "TokenExpiredException", "The admin token has expired."),
        None => return exception(401, "UnauthorizedException", "Bad credentials"),
    };
    st.route_scale_set_jobs();
    st.actions.expire_sessions(sh.cfg.actions_session_expiry);
    let set_in_scope = |st: &State, id: &str| {
        id.parse::<u64>()
            .ok()
            .and_then(|id| st.actions.scale_sets.get(&id))
            .filter(|s| s.scope.same(&scope))
            .cloned()
    };
    match (m, rest) {
        ("GET", ["_apis", "runtime", "runnergroups"]) => {
            let name = crate::util::percent_decode(req.param("groupName").unwrap_or(""));
            let value: Vec<Value> = if name.eq_ignore_ascii_case(DEFAULT_GROUP_NAME) {
                vec![
                    json!({"id": DEFAULT_GROUP_ID, "name": DEFAULT_GROUP_NAME, "size": 0, "isDefaultGroup": true}),
                ]
            } else {
                Vec::new()
            };
            Resp::json(200, json!({"count": value.len(), "value": value}))
        }
        ("GET", ["_apis", "runtime", "runnerscalesets"]) => {
            let name = crate::util::percent_decode(req.param("name").unwrap_or(""));
            let group = req
                .param("runnerGroupId")
                .and_then(|g| g.parse::<u64>().ok());
            let value: Vec<Value> = st
                .actions
                .scale_sets
                .values()
                .filter(|s| s.scope.same(&scope))
                .filter(|s| name.is_empty() || s.name.eq_ignore_ascii_case(&name))
                .filter(|s| group.is_none_or(|g| g == s.group_id))
                .map(|s| scale_set_json(sh, &st, s))
                .collect();
            Resp::json(200, json!({"count": value.len(), "value": value}))
        }
        ("POST", ["_apis", "runtime", "runnerscalesets"]) => {
            create_scale_set(sh, &mut st, &scope, req)
        }
        ("GET", ["_apis", "runtime", "runnerscalesets", id]) => match set_in_scope(&st, id) {
            Some(s) => Resp::json(200, scale_set_json(sh, &st, &s)),
            None => not_found_set(id),
        },
        ("PATCH", ["_apis", "runtime", "runnerscalesets", id]) => {
            let Some(mut s) = set_in_scope(&st, id) else {
                return not_found_set(id);
            };
            let body = req.json();
            if let Some(n) = body
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                s.name = n.to_string();
            }
            if let Some(g) = body.get("runnerGroupId").and_then(Value::as_u64) {
                if g != DEFAULT_GROUP_ID {
                    return exception(
                        400,
                        "RunnerGroupNotFoundException",
                        &format!("No runner group with id {g}."),
                    );
                }
                s.group_id = g;
            }
            if let Some(labels) = labels_of(&body) {
                s.labels = labels;
            }
            if body.get("RunnerSetting").is_some() {
                s.setting = runner_setting(&body);
            }
            st.actions.scale_sets.insert(s.id, s.clone());
            Resp::json(200, scale_set_json(sh, &st, &s))
        }
        ("DELETE", ["_apis", "runtime", "runnerscalesets", id]) => {
            let Some(s) = set_in_scope(&st, id) else {
                return not_found_set(id);
            };
            st.actions.scale_sets.remove(&s.id);
            st.actions.sessions.retain(|_, x| x.scale_set != s.id);
            // Jobs no runner took yet go back to whoever matches them next.
            st.actions
                .jobs
                .retain(|_, j| j.scale_set != s.id || j.runner_assigned_at.is_some());
            Resp::empty(204)
        }
        ("POST", ["_apis", "runtime", "runnerscalesets", id, "sessions"]) => {
            let Some(s) = set_in_scope(&st, id) else {
                return not_found_set(id);
            };
            let owner = req
                .json()
                .get("ownerName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if owner.is_empty() {
                return exception(400, "ArgumentNullException", "ownerName is required.");
            }
            let held = st.actions.session_of(s.id).map(|x| x.owner.clone());
            if std::mem::take(&mut st.actions.conflict_next_session) || held.is_some() {
                let by = held.unwrap_or_else(|| "another listener".into());
                return exception(
                    409,
                    "TaskAgentSessionConflictException",
                    &format!(
                        "The scale set {} already has an active session for owner {by}.",
                        s.name
                    ),
                );
            }
            let sid = uuid_like();
            let token = random_hex(48);
            st.actions.issued.push(token.clone());
            st.actions.sessions.insert(
                sid.clone(),
                Session {
                    id: sid.clone(),
                    scale_set: s.id,
                    owner,
                    token,
                    last_seen: Instant::now(),
                },
            );
            Resp::json(200, session_json(sh, &st, &sid))
        }
        ("PATCH", ["_apis", "runtime", "runnerscalesets", id, "sessions", sid]) => {
            let Some(s) = set_in_scope(&st, id) else {
                return not_found_set(id);
            };
            let token = random_hex(48);
            match st
                .actions
                .sessions
                .get_mut(*sid)
                .filter(|x| x.scale_set == s.id)
            {
                Some(x) => {
                    x.token = token.clone();
                    x.last_seen = Instant::now();
                }
                None => return not_found_session(sid),
            }
            st.actions.issued.push(token);
            Resp::json(200, session_json(sh, &st, sid))
        }
        ("DELETE", ["_apis", "runtime", "runnerscalesets", id, "sessions", sid]) => {
            let Some(s) = set_in_scope(&st, id) else {
                return not_found_set(id);
            };
            match st.actions.sessions.get(*sid) {
                Some(x) if x.scale_set == s.id => {
                    st.actions.sessions.remove(*sid);
                    Resp::empty(204)
                }
                _ => not_found_session(sid),
            }
        }
        ("POST", ["_apis", "runtime", "runnerscalesets", id, "generatejitconfig"]) => {
            let Some(s) = set_in_scope(&st, id) else {
                return not_found_set(id);
            };
            let body = req.json();
            let Some(name) = body
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            else {
                return exception(400, "ArgumentNullException", "name is required.");
            };
            let work = body
                .get("workFolder")
                .and_then(Value::as_str)
                .filter(|w| !w.is_empty())
                .unwrap_or("_work")
                .to_string();
            if st.runner_by_name(&s.scope, name).is_some() {
                return exception(
                    409,
                    "AgentExistsException",
                    &format!("A runner with the name {name} already exists."),
                );
            }
            let labels: Vec<String> = s.labels.iter().map(|(_, n)| n.clone()).collect();
            let mut runner = st.add_runner(s.scope.clone(), name, &labels, true, s.group_id);
            runner.scale_set = Some(s.id);
            if let Some(r) = st.runners.get_mut(&runner.id) {
                r.scale_set = Some(s.id);
            }
            let blob = super::runners::jit_blob(sh, &runner, &s.scope, &work);
            Resp::json(
                200,
                json!({
                    "runner": {"id": runner.id, "name": runner.name, "runnerScaleSetId": s.id},
                    "encodedJITConfig": blob,
                }),
            )
        }
        ("GET", ["_apis", "distributedtask", "pools", "0", "agents"]) => {
            let name = crate::util::percent_decode(req.param("agentName").unwrap_or(""));
            let value: Vec<Value> = st
                .runners
                .values()
                .filter(|r| r.scope.same(&scope) && r.name.eq_ignore_ascii_case(&name))
                .map(runner_ref)
                .collect();
            Resp::json(200, json!({"count": value.len(), "value": value}))
        }
        ("GET", ["_apis", "distributedtask", "pools", "0", "agents", id]) => {
            match runner_in_scope(&st, &scope, id) {
                Some(r) => Resp::json(200, runner_ref(&r)),
                None => not_found_runner(id),
            }
        }
        ("DELETE", ["_apis", "distributedtask", "pools", "0", "agents", id]) => {
            let Some(r) = runner_in_scope(&st, &scope, id) else {
                return not_found_runner(id);
            };
            if r.busy {
                return exception(
                    400,
                    "JobStillRunningException",
                    &format!("Runner {} is still running a job.", r.name),
                );
            }
            st.runners.remove(&r.id);
            st.deletes.push((r.id, r.name));
            Resp::empty(204)
        }
        _ => exception(404, "NotFoundException", "No such route."),
    }
}

fn runner_in_scope(st: &State, scope: &Scope, id: &str) -> Option<super::state::Runner> {
    id.parse::<u64>()
        .ok()
        .and_then(|id| st.runners.get(&id))
        .filter(|r| r.scope.same(scope))
        .cloned()
}

fn runner_ref(r: &super::state::Runner) -> Value {
    json!({"id": r.id, "name": r.name, "runnerScaleSetId": r.scale_set.unwrap_or(0)})
}

fn not_found_set(id: &str) -> Resp {
    exception(
        404,
        "RunnerScaleSetNotFoundException",
        &format!("No runner scale set with id {id}."),
    )
}

fn not_found_session(sid: &str) -> Resp {
    exception(
        404,
        "TaskAgentSessionExpiredException",
        &format!("No message session {sid}."),
    )
}

fn not_found_runner(id: &str) -> Resp {
    exception(
        404,
        "AgentNotFoundException",
        &format!("No runner with id {id}."),
    )
}

fn uuid_like() -> String {
    let h = random_hex(32);
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// `labels: [{type, name}]` of a scale set body, when present.
fn labels_of(body: &Value) -> Option<Vec<(String, String)>> {
    let a = body.get("labels")?.as_array()?;
    Some(
        a.iter()
            .filter_map(|l| {
                let name = l.get("name")?.as_str()?.trim();
                let kind = l.get("type").and_then(Value::as_str).unwrap_or("System");
                (!name.is_empty()).then(|| (kind.to_string(), name.to_string()))
            })
            .collect(),
    )
}

/// The known boolean fields of a body's `RunnerSetting`.
fn runner_setting(body: &Value) -> serde_json::Map<String, Value> {
    ["ephemeral", "isElastic", "disableUpdate"]
        .iter()
        .filter_map(|k| {
            let v = body.get("RunnerSetting")?.get(*k)?.as_bool()?;
            Some((k.to_string(), Value::Bool(v)))
        })
        .collect()
}

fn create_scale_set(sh: &Shared, st: &mut State, scope: &Scope, req: &Req) -> Resp {
    let body = req.json();
    let Some(name) = body
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
    else {
        return exception(
            400,
            "ArgumentNullException",
            "A runner scale set needs a name.",
        );
    };
    let group = body
        .get("runnerGroupId")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_GROUP_ID);
    if group != DEFAULT_GROUP_ID {
        return exception(
            400,
            "RunnerGroupNotFoundException",
            &format!("No runner group with id {group}."),
        );
    }
    let taken =
        st.actions.scale_sets.values().any(|s| {
            s.scope.same(scope) && s.group_id == group && s.name.eq_ignore_ascii_case(name)
        });
    if taken {
        return exception(
            409,
            "RunnerScaleSetExistsException",
            &format!("A runner scale set named {name} already exists in the runner group."),
        );
    }
    let mut labels = labels_of(&body).unwrap_or_default();
    if labels.is_empty() {
        labels.push(("System".into(), name.to_string()));
    }
    st.actions.next_scale_set_id += 1;
    let set = ScaleSet {
        id: st.actions.next_scale_set_id,
        name: name.to_string(),
        scope: scope.clone(),
        group_id: group,
        labels,
        setting: runner_setting(&body),
        created: SystemTime::now(),
        max_capacity: None,
        events: Vec::new(),
        queue: VecDeque::new(),
    };
    st.actions.scale_sets.insert(set.id, set.clone());
    st.route_scale_set_jobs();
    Resp::json(200, scale_set_json(sh, st, &set))
}

fn scale_set_json(sh: &Shared, st: &State, s: &ScaleSet) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "runnerGroupId": s.group_id,
        "runnerGroupName": DEFAULT_GROUP_NAME,
        "labels": s.labels.iter().map(|(t, n)| json!({"type": t, "name": n})).collect::<Vec<_>>(),
        "RunnerSetting": s.setting,
        "createdOn": rfc3339(s.created),
        "runnerJitConfigUrl": format!("{}/_actions/_apis/runtime/runnerscalesets/{}/generatejitconfig", sh.base_url, s.id),
        "statistics": st.scale_set_statistics(s.id),
    })
}

fn session_json(sh: &Shared, st: &State, sid: &str) -> Value {
    let Some(x) = st.actions.sessions.get(sid) else {
        return Value::Null;
    };
    let set = st
        .actions
        .scale_sets
        .get(&x.scale_set)
        .map(|s| scale_set_json(sh, st, s))
        .unwrap_or(Value::Null);
    json!({
        "sessionId": x.id,
        "ownerName": x.owner,
        "runnerScaleSet": set,
        "messageQueueUrl": format!("{}/_actions/queues/{}/messages", sh.base_url, x.id),
        "messageQueueAccessToken": x.token,
        "statistics": st.scale_set_statistics(x.scale_set),
    })
}

/// The session `sid` when `req` carries its queue token: its scale set id, or the refusal.
fn queue_session(sh: &Shared, st: &mut State, req: &Req, sid: &str) -> Result<u64, Resp> {
    st.actions.expire_sessions(sh.cfg.actions_session_expiry);
    let Some(x) = st.actions.sessions.get_mut(sid) else {
        return Err(not_found_session(sid));
    };
    if bearer(req).as_deref() != Some(x.token.as_str()) {
        return Err(exception(
            401,
            "UnauthorizedException",
            "The message queue token is not valid.",
        ));
    }
    x.last_seen = Instant::now();
    Ok(x.scale_set)
}

/// The oldest message not yet deleted (delivered again until it is), else a new one made of
/// the job messages that came since; `None` when there is nothing.
fn next_message(sh: &Shared, req: &Req, sid: &str) -> Result<Option<Value>, Resp> {
    let mut st = sh.lock();
    let set = queue_session(sh, &mut st, req, sid)?;
    st.route_scale_set_jobs();
    let next_id = st.actions.next_message_id + 1;
    let stats = st.scale_set_statistics(set);
    let Some(s) = st.actions.scale_sets.get_mut(&set) else {
        return Err(not_found_set(&set.to_string()));
    };
    if let Some(c) = req
        .headers
        .get("x-scalesetmaxcapacity")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        s.max_capacity = Some(c);
    }
    if s.queue.is_empty() && !s.events.is_empty() {
        let events = std::mem::take(&mut s.events);
        s.queue.push_back((next_id, events));
        st.actions.next_message_id = next_id;
    }
    let Some(s) = st.actions.scale_sets.get(&set) else {
        return Ok(None);
    };
    Ok(s.queue.front().map(|(id, events)| {
        json!({
            "messageId": id,
            "messageType": "RunnerScaleSetJobMessages",
            "body": Value::Array(events.clone()).to_string(),
            "statistics": stats,
        })
    }))
}

async fn get_message(sh: &Shared, req: &Req, sid: &str) -> Resp {
    if let Some(v) = req.param("lastMessageId") {
        if v.parse::<u64>().is_err() {
            return exception(400, "ArgumentException", "lastMessageId must be a number.");
        }
    }
    let deadline = Instant::now() + sh.cfg.actions_message_wait;
    loop {
        match next_message(sh, req, sid) {
            Err(r) => return r,
            Ok(Some(m)) => return Resp::json(200, m),
            Ok(None) if Instant::now() >= deadline => return Resp::empty(202),
            Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn delete_message(sh: &Shared, req: &Req, sid: &str, mid: &str) -> Resp {
    let mut st = sh.lock();
    let set = match queue_session(sh, &mut st, req, sid) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(mid) = mid.parse::<u64>() else {
        return exception(400, "ArgumentException", "The message id must be a number.");
    };
    if let Some(s) = st.actions.scale_sets.get_mut(&set) {
        s.queue.retain(|(id, _)| *id != mid);
    }
    Resp::empty(204)
}

fn acquire(sh: &Shared, req: &Req, id: &str) -> Resp {
    let mut st = sh.lock();
    let Some(set) = id
        .parse::<u64>()
        .ok()
        .filter(|i| st.actions.scale_sets.contains_key(i))
    else {
        return not_found_set(id);
    };
    let token = bearer(req).unwrap_or_default();
    st.actions.expire_sessions(sh.cfg.actions_session_expiry);
    let mut authorized = false;
    for x in st.actions.sessions.values_mut() {
        if x.scale_set == set && x.token == token {
            x.last_seen = Instant::now();
            authorized = true;
        }
    }
    if !authorized {
        return exception(
            401,
            "UnauthorizedException",
            "The message queue token is not valid.",
        );
    }
    let Ok(ids) = serde_json::from_slice::<Vec<u64>>(&req.body) else {
        return exception(
            400,
            "ArgumentException",
            "The body must be a JSON array of job request ids.",
        );
    };
    st.route_scale_set_jobs();
    let now = SystemTime::now();
    let mut acquired = Vec::new();
    for rid in ids {
        let queued = st.jobs.get(&rid).is_some_and(|j| j.status == "queued");
        match st.actions.jobs.get_mut(&rid) {
            Some(sj) if sj.scale_set == set && sj.acquired_at.is_none() && queued => {
                sj.acquired_at = Some(now);
                acquired.push(rid);
            }
            _ => {}
        }
    }
    for rid in &acquired {
        st.push_event(*rid, "JobAssigned");
    }
    Resp::json(200, json!({"count": acquired.len(), "value": acquired}))
}
