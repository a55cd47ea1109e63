//! `/{repos/{owner}/{repo}|orgs/{org}}/actions/runners…`: tokens, JIT config, list, get, delete.

use std::time::{Duration, SystemTime};

use base64::Engine;
use serde_json::{json, Value};

use super::objects;
use super::state::{IssuedToken, Runner, Scope, State};
use super::{Req, Resp, Shared};
use crate::util::{random_upper, rfc3339};

/// Lifetime of registration and remove tokens.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// `rest` is the path after `actions/runners`.
pub fn handle(sh: &Shared, req: &Req, scope: &Scope, rest: &[&str]) -> Resp {
    match (req.method.as_str(), rest) {
        ("POST", ["registration-token"]) => mint(sh, scope, false),
        ("POST", ["remove-token"]) => mint(sh, scope, true),
        ("POST", ["generate-jitconfig"]) => jitconfig(sh, req, scope),
        ("GET", []) => list(sh, req, scope),
        ("GET", [id]) => get(sh, scope, id),
        ("DELETE", [id]) => delete(sh, scope, id),
        _ => Resp::not_found(),
    }
}

fn mint(sh: &Shared, scope: &Scope, remove: bool) -> Resp {
    let expires = SystemTime::now() + TOKEN_TTL;
    let token = format!("A{}", random_upper(28));
    let issued = IssuedToken {
        token: token.clone(),
        scope: scope.clone(),
        expires,
    };
    let mut st = sh.lock();
    if remove {
        st.remove_tokens.push(issued);
    } else {
        st.registration_tokens.push(issued);
    }
    Resp::json(201, json!({"token": token, "expires_at": rfc3339(expires)}))
}

fn jitconfig(sh: &Shared, req: &Req, scope: &Scope) -> Resp {
    let body = req.json();
    let Some(name) = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return Resp::error(422, "Invalid request.\n\n\"name\" wasn't supplied.");
    };
    let group = body
        .get("runner_group_id")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let labels: Vec<String> = body
        .get("labels")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if labels.is_empty() {
        return Resp::error(422, "Invalid request.\n\n\"labels\" wasn't supplied.");
    }
    let work = body
        .get("work_folder")
        .and_then(Value::as_str)
        .unwrap_or("_work")
        .to_string();
    let mut st = sh.lock();
    if st.runner_by_name(scope, name).is_some() {
        return Resp::error(
            409,
            "Already exists - A runner with the name already exists.",
        );
    }
    let runner = st.add_runner(scope.clone(), name, &labels, true, group);
    let blob = jit_blob(sh, &runner, scope, &work);
    let obj = objects::runner(&runner, &mut st, sh.cfg.offline_after);
    Resp::json(201, json!({"runner": obj, "encoded_jit_config": blob}))
}

/// The JIT blob understood by `cml-sim agent run --jitconfig`, in the Actions service's
/// format: base64 of a JSON object mapping each file the runner keeps (`.runner`,
/// `.credentials`) to the base64 of its contents (what `agent config` would write).
pub(super) fn jit_blob(
    sh: &Shared,
    runner: &super::state::Runner,
    scope: &Scope,
    work: &str,
) -> String {
    let b64 = |v: Value| base64::engine::general_purpose::STANDARD.encode(v.to_string());
    let files = json!({
        ".runner": b64(crate::agent::files::runner_file(
            runner.id, &runner.name, &sh.base_url,
            &format!("{}/{}", sh.base_url, scope.key()), work, true)),
        ".credentials": b64(crate::agent::files::credentials_file(&sh.base_url, &runner.credential)),
    });
    base64::engine::general_purpose::STANDARD.encode(files.to_string())
}

fn list(sh: &Shared, req: &Req, scope: &Scope) -> Resp {
    let per_page = req
        .param("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = req
        .param("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let mut st = sh.lock();
    let all: Vec<_> = st
        .runners
        .values()
        .filter(|r| r.scope.same(scope))
        .cloned()
        .collect();
    let total = all.len();
    let runners: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|r| objects::runner(r, &mut st, sh.cfg.offline_after))
        .collect();
    drop(st);
    let last = total.div_ceil(per_page).max(1);
    let mut resp = Resp::json(200, json!({"total_count": total, "runners": runners}));
    if last > 1 {
        let base = format!("{}{}", sh.base_url, req.raw_path);
        let link =
            |p: usize, rel: &str| format!("<{base}?per_page={per_page}&page={p}>; rel=\"{rel}\"");
        let mut parts = Vec::new();
        if page > 1 {
            parts.push(link(page - 1, "prev"));
        }
        if page < last {
            parts.push(link(page + 1, "next"));
            parts.push(link(last, "last"));
        }
        if page > 1 {
            parts.push(link(1, "first"));
        }
        if !parts.is_empty() {
            resp = resp.header("link", parts.join(", "));
        }
    }
    resp
}

/// The runner with id `id` (as given in the path) if it belongs to `scope`.
fn runner_in_scope(st: &State, scope: &Scope, id: &str) -> Option<Runner> {
    id.parse::<u64>()
        .ok()
        .and_then(|id| st.runners.get(&id))
        .filter(|r| r.scope.same(scope))
        .cloned()
}

fn get(sh: &Shared, scope: &Scope, id: &str) -> Resp {
    let mut st = sh.lock();
    let Some(r) = runner_in_scope(&st, scope, id) else {
        return Resp::not_found();
    };
    Resp::json(200, objects::runner(&r, &mut st, sh.cfg.offline_after))
}

fn delete(sh: &Shared, scope: &Scope, id: &str) -> Resp {
    let mut st = sh.lock();
    let Some(r) = runner_in_scope(&st, scope, id) else {
        return Resp::not_found();
    };
    if r.busy {
        return Resp::error(
            422,
            &format!(
                "Bad request - Runner \"{}\" is still running a job\"",
                r.name
            ),
        );
    }
    st.runners.remove(&r.id);
    st.deletes.push((r.id, r.name));
    Resp::empty(204)
}
