//! Simulator-only routes (not GitHub's): the agent's internal protocol under `/_sim/agent/…`
//! and the admin API (`/_sim/jobs`, `/_sim/state`, `/_sim/faults`).
//!
//! Agent protocol (JSON bodies, all `POST`):
//! - `register {token, scope, name, labels, ephemeral, replace, runner_group}` → 201 `{id, name, credential}`;
//!   404 unknown/expired token for that scope; 409 name taken (without `replace`).
//! - `remove {token, scope, id}` (a remove token) → 204.
//! - `session {id, credential}` → 200 `{name, ephemeral}` and marks the runner online.
//! - `poll {id, credential}` → 200 `{job: null | {id, name, command}}` (assigns a job when idle).
//! - `complete {id, credential, job_id, conclusion, output}` → 200; an ephemeral runner is removed.
//! - `end {id, credential}` → 200; the runner is offline at once.
//!
//! For `session`/`poll`/`complete`/`end`: 404 when the runner no longer exists, 401 on a bad credential.

use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use super::state::{Scope, State};
use super::{Req, Resp, Shared};
use crate::config::Fault;
use crate::types::{SimJob, SimRunner};

pub fn handle(sh: &Shared, req: &Req, segs: &[&str]) -> Resp {
    let body = req.json();
    let s = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let b = |k: &str| body.get(k).and_then(Value::as_bool).unwrap_or(false);
    match (req.method.as_str(), segs) {
        ("POST", ["_sim", "agent", "register"]) => {
            let labels: Vec<String> = body
                .get("labels")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            register(
                sh,
                &s("token"),
                &s("scope"),
                &s("name"),
                &labels,
                b("ephemeral"),
                b("replace"),
            )
        }
        ("POST", ["_sim", "agent", "remove"]) => {
            let mut st = sh.lock();
            let Some(scope) = Scope::parse(&s("scope")) else {
                return Resp::not_found();
            };
            if !token_ok(&st.remove_tokens, &s("token"), &scope) {
                return Resp::not_found();
            }
            let id = body.get("id").and_then(Value::as_u64).unwrap_or(0);
            match st.runners.remove(&id) {
                Some(r) => {
                    st.deletes.push((r.id, r.name));
                    Resp::empty(204)
                }
                None => Resp::not_found(),
            }
        }
        ("POST", ["_sim", "agent", action]) => agent_call(sh, action, &body),
        ("POST", ["_sim", "jobs"]) => {
            let labels: Vec<String> = body
                .get("labels")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let repo = s("repo");
            if Scope::parse(&repo).is_none_or(|sc| matches!(sc, Scope::Org(_))) {
                return Resp::error(422, "repo must be owner/repo");
            }
            let (job_id, run_id) = sh
                .lock()
                .queue_job(&repo, &s("name"), &labels, &s("command"));
            Resp::json(201, json!({"job_id": job_id, "run_id": run_id}))
        }
        ("GET", ["_sim", "jobs", id]) => {
            let st = sh.lock();
            match id.parse::<u64>().ok().and_then(|id| st.jobs.get(&id)) {
                Some(j) => Resp::json(200, json!(SimJob::from(j))),
                None => Resp::not_found(),
            }
        }
        ("GET", ["_sim", "state"]) => Resp::json(200, state_json(sh, &sh.lock())),
        ("POST", ["_sim", "faults"]) => match serde_json::from_value::<Fault>(body) {
            Ok(f) => {
                sh.lock().faults.push_back(f);
                Resp::empty(204)
            }
            Err(e) => Resp::error(422, &e.to_string()),
        },
        _ => Resp::not_found(),
    }
}

fn token_ok(tokens: &[super::state::IssuedToken], token: &str, scope: &Scope) -> bool {
    tokens
        .iter()
        .any(|t| t.token == token && t.scope.same(scope) && t.expires > SystemTime::now())
}

fn register(
    sh: &Shared,
    token: &str,
    scope: &str,
    name: &str,
    labels: &[String],
    ephemeral: bool,
    replace: bool,
) -> Resp {
    let Some(scope) = Scope::parse(scope) else {
        return Resp::not_found();
    };
    let mut st = sh.lock();
    if !token_ok(&st.registration_tokens, token, &scope) {
        return Resp::not_found();
    }
    if name.is_empty() {
        return Resp::error(422, "Runner name is required");
    }
    if let Some(old) = st.runner_by_name(&scope, name) {
        if !replace {
            return Resp::error(409, &format!("A runner exists with the same name {name}."));
        }
        st.runners.remove(&old);
    }
    let r = st.add_runner(scope, name, labels, ephemeral, 1);
    Resp::json(
        201,
        json!({"id": r.id, "name": r.name, "credential": r.credential}),
    )
}

fn agent_call(sh: &Shared, action: &str, body: &Value) -> Resp {
    let id = body.get("id").and_then(Value::as_u64).unwrap_or(0);
    let cred = body.get("credential").and_then(Value::as_str).unwrap_or("");
    let mut st = sh.lock();
    let Some(r) = st.runners.get_mut(&id) else {
        return Resp::error(404, "The runner no longer exists on the server.");
    };
    if r.credential != cred {
        return Resp::error(401, "Bad credentials");
    }
    match action {
        "session" | "poll" => {
            r.last_seen = Some(Instant::now());
            let (name, ephemeral) = (r.name.clone(), r.ephemeral);
            if action == "session" {
                return Resp::json(200, json!({"name": name, "ephemeral": ephemeral}));
            }
            let job = st
                .assign_job(id)
                .and_then(|j| st.jobs.get(&j))
                .map(|j| json!({"id": j.id, "name": j.name, "command": j.command}));
            Resp::json(200, json!({"job": job}))
        }
        "complete" => {
            r.last_seen = Some(Instant::now());
            r.busy = false;
            let ephemeral = r.ephemeral;
            let job_id = body.get("job_id").and_then(Value::as_u64).unwrap_or(0);
            if let Some(j) = st.jobs.get_mut(&job_id) {
                let cancelled = j.cancel_at.is_some();
                j.status = "completed".into();
                j.conclusion = Some(if cancelled {
                    "cancelled".to_string()
                } else {
                    body.get("conclusion")
                        .and_then(Value::as_str)
                        .unwrap_or("failure")
                        .to_string()
                });
                j.completed_at = Some(SystemTime::now());
                j.output = body
                    .get("output")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
            }
            st.finish_scale_set_job(job_id);
            if ephemeral {
                st.runners.remove(&id);
            }
            Resp::json(200, json!({}))
        }
        "end" => {
            r.last_seen = None;
            Resp::json(200, json!({}))
        }
        _ => Resp::not_found(),
    }
}

fn state_json(sh: &Shared, st: &State) -> Value {
    let runners: Vec<SimRunner> = st
        .runners
        .values()
        .map(|r| SimRunner::from_runner(r, sh.cfg.offline_after))
        .collect();
    let jobs: Vec<SimJob> = st.jobs.values().map(SimJob::from).collect();
    json!({
        "url": sh.base_url,
        "runners": runners,
        "jobs": jobs,
        "deletes": st.deletes,
        "registered_names": st.registered_names,
        "registration_tokens_issued": st.registration_tokens.len(),
        "downloads": st.downloads,
        "pending_faults": st.faults,
        "requests": st.requests,
    })
}
