//! GitLab routes: the REST API (`PRIVATE-TOKEN`), the runner API (runner and job tokens),
//! gitlab-runner downloads, and `/_sim/gitlab/` admin routes.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::state::Runner;
use crate::github::{fault_answer, record, take_fault, Req, Resp, Shared};
use crate::util::percent_decode as decode;

fn error(status: u16, message: &str) -> Resp {
    Resp::json(status, json!({ "message": message }))
}

/// A request parameter from the JSON body, the form body or the query string.
fn param(req: &Req, name: &str) -> Option<String> {
    let body = req.json();
    if let Some(v) = body.get(name) {
        return Some(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    let form = String::from_utf8_lossy(&req.body).to_string();
    form.split('&').chain(req.query.split('&')).find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| decode(v))
    })
}

/// `tag_list` as a JSON array or a comma-separated string.
fn tags(req: &Req) -> Vec<String> {
    match req.json().get("tag_list") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => param(req, "tag_list")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    }
}

/// Every `/api/v4/...` route (`rest` is what follows `/api/v4`).
pub fn route(sh: &Shared, req: &Req, rest: &[&str]) -> Resp {
    let m = req.method.as_str();
    // The runner API authenticates with runner and job tokens, not faulted.
    match (m, rest) {
        ("POST", ["runners", "verify"]) => return verify(sh, req),
        ("DELETE", ["runners"]) => return delete_by_token(sh, req),
        ("POST", ["jobs", "request"]) => return request_job(sh, req),
        ("PUT", ["jobs", id]) => return update_job(sh, req, id),
        ("PATCH", ["jobs", id, "trace"]) => return append_trace(sh, req, id),
        _ => {}
    }
    let resp = match take_fault(sh, req) {
        Some((fault, f)) => fault_answer(
            &fault,
            error(f.status, &fault_message(f.status)).with_headers_of(f),
            || api(sh, req, rest),
        ),
        None => api(sh, req, rest),
    };
    record(sh, req, resp.status);
    resp
}

fn fault_message(status: u16) -> String {
    match status {
        429 => "429 Too Many Requests".into(),
        s => format!("{s} Simulated fault"),
    }
}

trait WithHeaders {
    fn with_headers_of(self, other: Resp) -> Resp;
}
impl WithHeaders for Resp {
    fn with_headers_of(mut self, other: Resp) -> Resp {
        self.headers = other.headers;
        self
    }
}

/// Who calls the REST API.
struct Caller {
    admin: bool,
}

fn authenticate(sh: &Shared, req: &Req) -> Result<Caller, Resp> {
    let tok = req
        .headers
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.credential());
    let Some(tok) = tok else {
        return Err(error(401, "401 Unauthorized"));
    };
    match sh.cfg.gitlab.tokens.iter().find(|p| p.token == tok) {
        Some(p) => Ok(Caller { admin: p.admin }),
        None => Err(error(401, "401 Unauthorized")),
    }
}

fn api(sh: &Shared, req: &Req, rest: &[&str]) -> Resp {
    let caller = match authenticate(sh, req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let m = req.method.as_str();
    if m == "GET" && rest == ["version"] {
        return Resp::json(
            200,
            json!({"version": "17.5.0", "revision": "a1b2c3d4", "enterprise": false}),
        );
    }
    let project_path = |id: &str| find_project(sh, id).path;
    if let Some(resp) = crate::reports::gitlab::handle(sh, req, caller.admin, rest, project_path) {
        return resp;
    }
    let read_only = m == "GET" && matches!(rest, ["projects", _]);
    if !caller.admin && !read_only {
        return error(403, "403 Forbidden");
    }
    match (m, rest) {
        ("GET", ["projects", id]) => get_project(sh, id),
        ("GET", ["projects", id, "runners"]) => list_runners(sh, req, id),
        ("POST", ["user", "runners"]) => create_runner(sh, req),
        ("POST", ["runners"]) => register_legacy(sh, req),
        ("GET", ["runners", id]) => get_runner(sh, id),
        ("PUT", ["runners", id]) => update_runner(sh, req, id),
        ("DELETE", ["runners", id]) => delete_runner(sh, id),
        ("GET", ["runners", id, "jobs"]) => runner_jobs(sh, req, id),
        ("GET", ["projects", id, "jobs"]) => project_jobs(sh, req, id),
        ("GET", ["projects", _, "jobs", id]) => get_job(sh, id),
        ("POST", ["projects", _, "jobs", id, "retry"]) => retry_job(sh, id),
        ("GET", ["projects", _, "pipelines", id, "jobs"]) => pipeline_jobs(sh, id),
        ("POST", ["projects", _, "pipelines", id, "retry"]) => retry_pipeline(sh, id),
        ("GET", ["projects", _, "pipelines", id]) => get_pipeline(sh, id),
        ("POST", ["projects", _, "pipelines", id, "cancel"]) => cancel_pipeline(sh, id),
        _ => error(404, "404 Not Found"),
    }
}

/// `:id` may be a numeric id or a URL-encoded path.
fn find_project(sh: &Shared, id: &str) -> super::state::Project {
    let cfg = &sh.cfg.gitlab;
    let mut st = sh.gitlab();
    if let Ok(n) = id.parse::<u64>() {
        if let Some(p) = st.project_by_id(n) {
            return p;
        }
    }
    let path = decode(id);
    let legacy = cfg.legacy_projects.contains(&path);
    st.project(&path, legacy)
}

fn get_project(sh: &Shared, id: &str) -> Resp {
    let p = find_project(sh, id);
    let mut v = json!({
        "id": p.id,
        "path_with_namespace": p.path,
        "web_url": format!("{}/{}", sh.base_url, p.path),
    });
    // Projects registered without a legacy token have no `runners_token` field at all.
    if let Some(t) = p.runners_token {
        v["runners_token"] = json!(t);
    }
    Resp::json(200, v)
}

fn runner_json(r: &Runner, sh: &Shared, detail: bool) -> Value {
    let status = r.status(sh.cfg.offline_after);
    let mut v = json!({
        "id": r.id,
        "description": r.description,
        "active": !r.paused,
        "is_shared": false,
        "runner_type": "project_type",
        "name": "gitlab-runner",
        "online": status == "online",
        "status": status,
    });
    if !sh.cfg.gitlab.without_paused {
        v["paused"] = json!(r.paused);
    }
    if detail {
        v["tag_list"] = json!(r.tags);
        v["run_untagged"] = json!(r.run_untagged);
        v["locked"] = json!(true);
    }
    v
}

fn list_runners(sh: &Shared, req: &Req, id: &str) -> Resp {
    let project = find_project(sh, id);
    let per_page: usize = req
        .param("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let page: usize = req
        .param("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let st = sh.gitlab();
    let all: Vec<Value> = st
        .runners
        .values()
        .filter(|r| r.project_id == project.id)
        .map(|r| runner_json(r, sh, false))
        .collect();
    let pages = all.len().div_ceil(per_page).max(1);
    let items: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut r = Resp::json(200, Value::Array(items))
        .header("x-page", page.to_string())
        .header("x-per-page", per_page.to_string())
        .header("x-total-pages", pages.to_string());
    r = r.header(
        "x-next-page",
        if page < pages {
            (page + 1).to_string()
        } else {
            String::new()
        },
    );
    r
}

fn create_runner(sh: &Shared, req: &Req) -> Resp {
    if param(req, "runner_type").as_deref() != Some("project_type") {
        return error(400, "runner_type does not have a valid value");
    }
    let Some(pid) = param(req, "project_id").and_then(|p| p.parse::<u64>().ok()) else {
        return error(400, "project_id is missing");
    };
    let mut st = sh.gitlab();
    if st.project_by_id(pid).is_none() {
        return error(404, "404 Project Not Found");
    }
    let description = param(req, "description").unwrap_or_default();
    let run_untagged = param(req, "run_untagged").is_some_and(|v| v == "true");
    let r = st.create_runner(pid, &description, tags(req), run_untagged);
    Resp::json(
        201,
        json!({"id": r.id, "token": r.token, "token_expires_at": null}),
    )
}

fn register_legacy(sh: &Shared, req: &Req) -> Resp {
    let token = param(req, "token").unwrap_or_default();
    let mut st = sh.gitlab();
    let Some(p) = st
        .projects
        .values()
        .find(|p| p.runners_token.as_deref() == Some(token.as_str()))
        .cloned()
    else {
        return error(403, "403 Forbidden");
    };
    let description = param(req, "description").unwrap_or_default();
    let run_untagged = param(req, "run_untagged").is_some_and(|v| v == "true");
    let mut r = st.create_runner(p.id, &description, tags(req), run_untagged);
    // Legacy runner tokens have no `glrt-` prefix.
    let legacy = r.token.trim_start_matches("glrt-").to_string();
    if let Some(stored) = st.runners.get_mut(&r.id) {
        stored.token = legacy.clone();
    }
    r.token = legacy.clone();
    st.issued.push(legacy);
    Resp::json(
        201,
        json!({"id": r.id, "token": r.token, "token_expires_at": null}),
    )
}

fn get_runner(sh: &Shared, id: &str) -> Resp {
    let st = sh.gitlab();
    match id.parse::<u64>().ok().and_then(|n| st.runners.get(&n)) {
        Some(r) => Resp::json(200, runner_json(r, sh, true)),
        None => error(404, "404 Not found"),
    }
}

/// `PUT /runners/:id`: `paused` (or the older `active`; GitLab refuses both at once).
fn update_runner(sh: &Shared, req: &Req, id: &str) -> Resp {
    let flag = |name| param(req, name).map(|v| v == "true");
    // Before 14.8 GitLab knew no `paused`: an unknown parameter is ignored.
    let paused_param = flag("paused").filter(|_| !sh.cfg.gitlab.without_paused);
    let paused = match (paused_param, flag("active")) {
        (Some(_), Some(_)) => return error(400, "active, paused are mutually exclusive"),
        (Some(p), None) => Some(p),
        (None, Some(a)) => Some(!a),
        (None, None) => None,
    };
    let Some(n) = id.parse::<u64>().ok() else {
        return error(404, "404 Not found");
    };
    {
        let mut st = sh.gitlab();
        if !st.runners.contains_key(&n) {
            return error(404, "404 Not found");
        }
        if paused == Some(true) {
            st.race(super::state::Race::BeforePause, n);
        }
        if let (Some(p), Some(r)) = (paused, st.runners.get_mut(&n)) {
            r.paused = p;
        }
    }
    get_runner(sh, id)
}

fn delete_runner(sh: &Shared, id: &str) -> Resp {
    let mut st = sh.gitlab();
    match id.parse::<u64>().ok().and_then(|n| st.runners.remove(&n)) {
        Some(r) => {
            st.deletes.push((r.id.to_string(), r.description));
            Resp::empty(204)
        }
        None => error(404, "404 Not found"),
    }
}

fn job_json(j: &super::state::Job, sh: &Shared) -> Value {
    let st_path = sh
        .gitlab()
        .project_by_id(j.project_id)
        .map(|p| p.path)
        .unwrap_or_default();
    json!({
        "id": j.id,
        "name": j.name,
        "status": j.status,
        "tag_list": j.tags,
        "pipeline": {"id": j.pipeline_id, "project_id": j.project_id},
        "project": {"id": j.project_id, "path_with_namespace": st_path},
        "runner": j.runner_id.map(|id| json!({"id": id, "description": j.runner_description})),
    })
}

fn runner_jobs(sh: &Shared, req: &Req, id: &str) -> Resp {
    let Some(n) = id.parse::<u64>().ok() else {
        return error(404, "404 Not found");
    };
    let jobs: Vec<super::state::Job> = {
        let mut st = sh.gitlab();
        if !st.runners.contains_key(&n) {
            return error(404, "404 Runner Not Found");
        }
        let jobs = st
            .jobs
            .values()
            .filter(|j| j.runner_id == Some(n))
            .filter(|j| req.param("status").is_none_or(|s| s == j.status))
            .cloned()
            .collect();
        // The answer is computed: a job handed over now is not in it.
        st.race(super::state::Race::AfterJobsCheck, n);
        jobs
    };
    Resp::json(
        200,
        Value::Array(jobs.iter().map(|j| job_json(j, sh)).collect()),
    )
}

/// The project's jobs, newest first, filtered by `scope` / `scope[]` (one or several statuses,
/// as GitLab takes them), one page of `per_page` (default 20, at most 100).
fn project_jobs(sh: &Shared, req: &Req, id: &str) -> Resp {
    let project = find_project(sh, id);
    let scopes: Vec<String> = req
        .query
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            matches!(decode(k).as_str(), "scope" | "scope[]").then(|| decode(v))
        })
        .collect();
    let per_page = param(req, "per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let mut jobs: Vec<super::state::Job> = {
        let st = sh.gitlab();
        let retried: Vec<u64> = st.retries.iter().map(|(old, _)| *old).collect();
        st.jobs
            .values()
            .filter(|j| j.project_id == project.id && !retried.contains(&j.id))
            .filter(|j| scopes.is_empty() || scopes.contains(&j.status))
            .cloned()
            .collect()
    };
    jobs.sort_by_key(|j| std::cmp::Reverse(j.id));
    jobs.truncate(per_page);
    Resp::json(
        200,
        Value::Array(jobs.iter().map(|j| job_json(j, sh)).collect()),
    )
}

fn get_job(sh: &Shared, id: &str) -> Resp {
    let job = {
        let st = sh.gitlab();
        id.parse::<u64>()
            .ok()
            .and_then(|n| st.jobs.get(&n).cloned())
    };
    match job {
        Some(j) => Resp::json(200, job_json(&j, sh)),
        None => error(404, "404 Not found"),
    }
}

/// The pipeline's jobs, without those retried since (as GitLab lists them by default).
fn pipeline_jobs(sh: &Shared, id: &str) -> Resp {
    let Some(pid) = id.parse::<u64>().ok() else {
        return error(404, "404 Not found");
    };
    let jobs: Vec<super::state::Job> = {
        let st = sh.gitlab();
        let retried: Vec<u64> = st.retries.iter().map(|(old, _)| *old).collect();
        st.jobs
            .values()
            .filter(|j| j.pipeline_id == pid && !retried.contains(&j.id))
            .cloned()
            .collect()
    };
    if jobs.is_empty() {
        return error(404, "404 Not found");
    }
    Resp::json(
        200,
        Value::Array(jobs.iter().map(|j| job_json(j, sh)).collect()),
    )
}

fn retry_job(sh: &Shared, id: &str) -> Resp {
    let mut st = sh.gitlab();
    let Some(j) = id
        .parse::<u64>()
        .ok()
        .and_then(|n| st.jobs.get(&n).cloned())
    else {
        return error(404, "404 Not found");
    };
    if matches!(j.status.as_str(), "pending" | "running") {
        return error(403, "403 Forbidden - Job is not retryable");
    }
    let new = st.add_job(j.project_id, j.pipeline_id, &j.name, &j.tags, &j.command);
    st.retries.push((j.id, new));
    drop(st);
    get_job(sh, &new.to_string()).with_status(201)
}

/// A pipeline's status, from the newest attempt of each of its jobs (as GitLab derives it).
fn pipeline_status(st: &super::state::State, pid: u64) -> Option<&'static str> {
    let mut newest: std::collections::BTreeMap<&str, &super::state::Job> = Default::default();
    for j in st.jobs.values().filter(|j| j.pipeline_id == pid) {
        match newest.get(j.name.as_str()) {
            Some(n) if n.id > j.id => {}
            _ => {
                newest.insert(&j.name, j);
            }
        }
    }
    let has = |s: &str| newest.values().any(|j| j.status == s);
    Some(match () {
        _ if newest.is_empty() => return None,
        _ if has("running") => "running",
        _ if has("pending") => "pending",
        _ if has("created") => "created",
        _ if has("failed") => "failed",
        _ if has("canceled") => "canceled",
        _ => "success",
    })
}

fn pipeline_json(st: &super::state::State, pid: u64) -> Option<Value> {
    let status = pipeline_status(st, pid)?;
    let project_id = st.jobs.values().find(|j| j.pipeline_id == pid)?.project_id;
    Some(json!({
        "id": pid,
        "iid": pid,
        "project_id": project_id,
        "status": status,
        "ref": "main",
        "sha": format!("{pid:040x}"),
        "source": "push",
    }))
}

fn get_pipeline(sh: &Shared, id: &str) -> Resp {
    let st = sh.gitlab();
    match id
        .parse::<u64>()
        .ok()
        .and_then(|pid| pipeline_json(&st, pid))
    {
        Some(p) => Resp::json(200, p),
        None => error(404, "404 Not found"),
    }
}

/// Cancels every pending or running job of the pipeline (a runner's later update of a
/// cancelled job does not change it back, as on GitLab).
fn cancel_pipeline(sh: &Shared, id: &str) -> Resp {
    let Some(pid) = id.parse::<u64>().ok() else {
        return error(404, "404 Not found");
    };
    let mut st = sh.gitlab();
    for j in st.jobs.values_mut().filter(|j| j.pipeline_id == pid) {
        if matches!(j.status.as_str(), "created" | "pending" | "running") {
            j.status = "canceled".into();
        }
    }
    match pipeline_json(&st, pid) {
        Some(p) => Resp::json(200, p),
        None => error(404, "404 Not found"),
    }
}

fn retry_pipeline(sh: &Shared, id: &str) -> Resp {
    let Some(pid) = id.parse::<u64>().ok() else {
        return error(404, "404 Not found");
    };
    let mut st = sh.gitlab();
    let failed: Vec<_> = st
        .jobs
        .values()
        .filter(|j| j.pipeline_id == pid && matches!(j.status.as_str(), "failed" | "canceled"))
        .cloned()
        .collect();
    if !st.jobs.values().any(|j| j.pipeline_id == pid) {
        return error(404, "404 Not found");
    }
    for j in failed {
        let new = st.add_job(j.project_id, j.pipeline_id, &j.name, &j.tags, &j.command);
        st.retries.push((j.id, new));
    }
    Resp::json(201, json!({"id": pid, "status": "pending"}))
}

trait WithStatus {
    fn with_status(self, status: u16) -> Resp;
}
impl WithStatus for Resp {
    fn with_status(mut self, status: u16) -> Resp {
        if self.status == 200 {
            self.status = status;
        }
        self
    }
}

// ---- the runner API ----

fn verify(sh: &Shared, req: &Req) -> Resp {
    let token = param(req, "token").unwrap_or_default();
    let mut st = sh.gitlab();
    match st.runner_by_token(&token) {
        Some(r) => {
            r.last_contact = Some(std::time::Instant::now());
            Resp::json(200, json!({"id": r.id, "token": r.token}))
        }
        None => error(403, "403 Forbidden"),
    }
}

/// `DELETE /runners` with the runner's own authentication token (`token`, form, JSON or
/// query), as GitLab documents it: 204 and the runner is gone; 403 for a token GitLab does
/// not know (already deleted included).
fn delete_by_token(sh: &Shared, req: &Req) -> Resp {
    let token = param(req, "token").unwrap_or_default();
    let mut st = sh.gitlab();
    let Some(id) = st.runner_by_token(&token).map(|r| r.id) else {
        return error(403, "403 Forbidden");
    };
    if let Some(r) = st.runners.remove(&id) {
        st.deletes.push((r.id.to_string(), r.description));
        st.token_deletes.push(r.id.to_string());
    }
    Resp::empty(204)
}

fn request_job(sh: &Shared, req: &Req) -> Resp {
    let token = param(req, "token").unwrap_or_default();
    let mut st = sh.gitlab();
    let Some(r) = st.runner_by_token(&token) else {
        return error(403, "403 Forbidden");
    };
    r.last_contact = Some(std::time::Instant::now());
    let id = r.id;
    let handed = st
        .delivering
        .remove(&id)
        .and_then(|job| st.jobs.get(&job).cloned());
    let Some(job) = handed.or_else(|| st.assign(id)) else {
        return Resp::empty(204);
    };
    let path = st
        .project_by_id(job.project_id)
        .map(|p| p.path)
        .unwrap_or_default();
    Resp::json(
        201,
        json!({
            "id": job.id,
            "token": job.token,
            "allow_git_fetch": true,
            "job_info": {"id": job.id, "name": job.name, "stage": "test", "project_id": job.project_id, "project_name": path},
            "git_info": {"repo_url": format!("{}/{}.git", sh.base_url, path), "ref": "main"},
            "steps": [{"name": "script", "script": [job.command], "timeout": 3600, "when": "on_success"}],
            "variables": [{"key": "CI_JOB_ID", "value": job.id.to_string(), "public": true}],
        }),
    )
}

fn job_for_token(sh: &Shared, id: &str, token: &str) -> Option<u64> {
    let n = id.parse::<u64>().ok()?;
    let st = sh.gitlab();
    st.jobs.get(&n).filter(|j| j.token == token).map(|j| j.id)
}

fn update_job(sh: &Shared, req: &Req, id: &str) -> Resp {
    let token = param(req, "token").unwrap_or_default();
    let Some(n) = job_for_token(sh, id, &token) else {
        return error(403, "403 Forbidden");
    };
    let state = param(req, "state").unwrap_or_default();
    let mut st = sh.gitlab();
    let Some(j) = st.jobs.get_mut(&n) else {
        return error(404, "404 Not found");
    };
    if j.status == "running" && matches!(state.as_str(), "success" | "failed" | "canceled") {
        j.status = state;
    }
    Resp::json(200, json!({}))
}

fn append_trace(sh: &Shared, req: &Req, id: &str) -> Resp {
    let token = req
        .headers
        .get("job-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Some(n) = job_for_token(sh, id, &token) else {
        return error(403, "403 Forbidden");
    };
    let mut st = sh.gitlab();
    if let Some(j) = st.jobs.get_mut(&n) {
        j.output.push_str(&String::from_utf8_lossy(&req.body));
    }
    Resp::empty(202)
}

// ---- downloads and admin ----

const RELEASE_SHA256: &str = "release.sha256";

/// The served gitlab-runner "binary": the simulated runner's script.
fn binary_bytes(sh: &Shared) -> Vec<u8> {
    super::runner_script(&sh.cfg.agent_exe).into_bytes()
}

/// `GET /gitlab-runner-downloads/{version}/binaries/gitlab-runner-linux-{arch}` and
/// `GET /gitlab-runner-downloads/{version}/release.sha256`.
pub fn download(sh: &Shared, rest: &[&str]) -> Resp {
    let genuine = binary_bytes(sh);
    match rest {
        [_version, RELEASE_SHA256] => {
            let sum = hex::encode(Sha256::digest(&genuine));
            let body: String = ["amd64", "arm64", "arm", "386"]
                .iter()
                .map(|a| format!("{sum} *binaries/gitlab-runner-linux-{a}\n"))
                .collect();
            Resp::bytes(body.into_bytes())
        }
        [_version, "binaries", file] if file.starts_with("gitlab-runner-linux-") => {
            sh.gitlab().downloads += 1;
            let mut bytes = genuine;
            if sh.cfg.gitlab.tamper_download {
                bytes.extend_from_slice(b"# tampered\n");
            }
            Resp::bytes(bytes)
        }
        _ => error(404, "404 Not Found"),
    }
}

/// `/_sim/gitlab/jobs` (POST: queue a job) and `/_sim/gitlab/state` (GET).
pub fn admin(sh: &Shared, req: &Req, rest: &[&str]) -> Resp {
    match (req.method.as_str(), rest) {
        ("POST", ["jobs"]) => {
            let b = req.json();
            let labels: Vec<String> = b["labels"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let id = sh.gitlab().queue_job(
                b["project"].as_str().unwrap_or("group/app"),
                b["name"].as_str().unwrap_or("job"),
                &labels,
                b["command"].as_str().unwrap_or("true"),
            );
            Resp::json(201, json!({"job_id": id}))
        }
        ("GET", ["state"]) => {
            let off = sh.cfg.offline_after;
            let st = sh.gitlab();
            Resp::json(
                200,
                json!({
                    "runners": st.runners.values().map(|r| r.any(off)).collect::<Vec<_>>(),
                    "jobs": st.jobs.values().map(|j| j.any()).collect::<Vec<_>>(),
                }),
            )
        }
        _ => error(404, "404 Not Found"),
    }
}
