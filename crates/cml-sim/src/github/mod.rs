//! The simulated GitHub REST API. Every route answers both at the root and under `/api/v3`.
//!
//! Requests are dispatched by hand from one axum fallback handler so that the prefix, fault
//! injection, authentication and the request log are handled in one place.

mod actions;
mod app;
mod objects;
mod release;
mod runners;
pub mod scaleset;
mod sim;
pub mod state;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use crate::config::SimConfig;
use state::{RecordedRequest, Scope, State};

/// Every GitHub route the simulator serves, as (method, OpenAPI path template). Not listed,
/// since GitHub's OpenAPI description does not have it: `POST /actions/runner-registration`,
/// the exchange that opens the Actions service of runner scale sets (see [`scaleset`]).
pub const GITHUB_ROUTES: &[(&str, &str)] = &[
    (
        "POST",
        "/repos/{owner}/{repo}/actions/runners/registration-token",
    ),
    ("POST", "/orgs/{org}/actions/runners/registration-token"),
    ("POST", "/repos/{owner}/{repo}/actions/runners/remove-token"),
    ("POST", "/orgs/{org}/actions/runners/remove-token"),
    (
        "POST",
        "/repos/{owner}/{repo}/actions/runners/generate-jitconfig",
    ),
    ("POST", "/orgs/{org}/actions/runners/generate-jitconfig"),
    ("GET", "/repos/{owner}/{repo}/actions/runners"),
    ("GET", "/orgs/{org}/actions/runners"),
    ("GET", "/repos/{owner}/{repo}/actions/runners/{runner_id}"),
    ("GET", "/orgs/{org}/actions/runners/{runner_id}"),
    (
        "DELETE",
        "/repos/{owner}/{repo}/actions/runners/{runner_id}",
    ),
    ("DELETE", "/orgs/{org}/actions/runners/{runner_id}"),
    ("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}"),
    ("POST", "/repos/{owner}/{repo}/actions/jobs/{job_id}/rerun"),
    ("GET", "/repos/{owner}/{repo}/actions/runs"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs"),
    (
        "POST",
        "/repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs",
    ),
    ("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel"),
    ("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/rerun"),
    ("GET", "/repos/{owner}/{repo}/installation"),
    ("GET", "/orgs/{org}/installation"),
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("GET", "/repos/{owner}/{repo}/releases/latest"),
    ("GET", "/repos/{owner}/{repo}/releases/tags/{tag}"),
    ("GET", "/repos/{owner}/{repo}/commits/{commit_sha}/comments"),
    (
        "POST",
        "/repos/{owner}/{repo}/commits/{commit_sha}/comments",
    ),
    ("PATCH", "/repos/{owner}/{repo}/comments/{comment_id}"),
    (
        "GET",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    ),
    (
        "PATCH",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
    ),
    ("GET", "/repos/{owner}/{repo}/commits/{commit_sha}/pulls"),
    ("GET", "/repos/{owner}/{repo}/pulls"),
    ("POST", "/repos/{owner}/{repo}/pulls"),
    ("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge"),
    ("POST", "/repos/{owner}/{repo}/check-runs"),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"),
    ("POST", "/repos/{owner}/{repo}/git/refs"),
    ("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}"),
    ("POST", "/repos/{owner}/{repo}/git/blobs"),
    ("POST", "/repos/{owner}/{repo}/git/trees"),
    ("POST", "/repos/{owner}/{repo}/git/commits"),
    ("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}"),
];

/// Server-wide shared data.
pub struct Shared {
    pub cfg: SimConfig,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    pub state: Mutex<State>,
    pub gitlab: Mutex<crate::gitlab::State>,
    pub bitbucket: Mutex<crate::bitbucket::State>,
    pub reports: Mutex<crate::reports::Store>,
    /// The agent tarball as published (genuine bytes).
    pub tarball: Vec<u8>,
}

impl Shared {
    pub fn new(cfg: SimConfig, base_url: String) -> Arc<Shared> {
        let tarball = crate::tarball::agent_tarball(&cfg.agent_exe);
        Arc::new(Shared {
            cfg,
            base_url,
            state: Mutex::new(State::new()),
            gitlab: Mutex::new(Default::default()),
            bitbucket: Mutex::new(Default::default()),
            reports: Mutex::new(Default::default()),
            tarball,
        })
    }
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A parsed request.
pub struct Req {
    pub method: Method,
    /// Path as requested.
    pub raw_path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    /// Query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
    /// The body as JSON (`Null` when empty or invalid).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The bearer/token credential from `Authorization`.
    pub fn credential(&self) -> Option<String> {
        let h = self.headers.get("authorization")?.to_str().ok()?.trim();
        let (scheme, rest) = h.split_once(' ')?;
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" | "token" => Some(rest.trim().to_string()),
            _ => None,
        }
    }
}

/// A response under construction.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// How long to hold the answer back (a fault's `delay_ms`).
    pub delay: std::time::Duration,
}

impl Resp {
    pub fn json(status: u16, v: Value) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: serde_json::to_vec(&v).unwrap_or_default(),
            content_type: "application/json; charset=utf-8",
            delay: std::time::Duration::ZERO,
        }
    }
    pub fn empty(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            content_type: "text/plain",
            delay: std::time::Duration::ZERO,
        }
    }
    pub fn bytes(data: Vec<u8>) -> Resp {
        Resp {
            status: 200,
            headers: Vec::new(),
            body: data,
            content_type: "application/octet-stream",
            delay: std::time::Duration::ZERO,
        }
    }
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Resp {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    /// GitHub's error shape.
    pub fn error(status: u16, message: &str) -> Resp {
        Resp::json(
            status,
            json!({"message": message, "documentation_url": "https://docs.github.com/rest", "status": status.to_string()}),
        )
    }
    pub fn not_found() -> Resp {
        Resp::error(404, "Not Found")
    }
    pub fn bad_credentials() -> Resp {
        Resp::error(401, "Bad credentials")
    }
}

/// The axum entry point for every request.
pub async fn entry(
    axum::extract::State(sh): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw_path = uri.path().to_string();
    let path = match raw_path.strip_prefix("/api/v3") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.to_string(),
        _ => raw_path.clone(),
    };
    let req = Req {
        method,
        raw_path,
        query: uri.query().unwrap_or("").to_string(),
        headers,
        body,
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // The Actions service of runner scale sets (its message queue long-polls).
    let resp = if segs.first() == Some(&"_actions") {
        scaleset::serve(&sh, &req, &segs).await
    } else {
        dispatch(&sh, &req, &segs)
    };
    if !resp.delay.is_zero() {
        tokio::time::sleep(resp.delay).await;
    }
    into_response(resp)
}

fn into_response(r: Resp) -> Response {
    let mut resp = Response::new(Body::from(r.body));
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    let typed = r
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if let (false, Ok(v)) = (typed, HeaderValue::from_str(r.content_type)) {
        h.insert("content-type", v);
    }
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            h.append(k, v);
        }
    }
    resp
}

fn dispatch(sh: &Shared, req: &Req, segs: &[&str]) -> Resp {
    if let Some(resp) = crate::reports::git_http::handle(sh, req, segs) {
        return resp;
    }
    if let Some(resp) = crate::reports::web(sh, req, segs) {
        return resp;
    }
    if let Some(resp) = crate::gitlab::handle(sh, req, segs) {
        return resp;
    }
    if let Some(resp) = crate::bitbucket::handle(sh, req, segs) {
        return resp;
    }
    let internal = matches!(
        segs,
        ["_sim", "agent", ..] | ["_sim", "jobs", ..] | ["_sim", "state"] | ["_sim", "faults"]
    );
    if internal {
        return sim::handle(sh, req, segs);
    }
    let resp = match take_fault(sh, req) {
        Some((fault, r)) => fault_answer(&fault, r, || route(sh, req, segs)),
        None => route(sh, req, segs),
    };
    record(sh, req, resp.status);
    resp
}

/// The answer to a request a `fault` matched: `shaped` (the fault's answer in the forge's
/// error shape), or — with `after_serving` — the request carried out by `serve` first and
/// then `shaped` (or, for `status` 0, the real answer); delayed as the fault says.
pub(crate) fn fault_answer(
    fault: &crate::config::Fault,
    shaped: Resp,
    serve: impl FnOnce() -> Resp,
) -> Resp {
    let mut resp = if fault.after_serving {
        let real = serve();
        if fault.status == 0 {
            real
        } else {
            shaped
        }
    } else {
        shaped
    };
    resp.delay = std::time::Duration::from_millis(fault.delay_ms);
    resp
}

/// Adds `req` to the request log every forge's API routes share ([`crate::SimServer::requests`]).
pub(crate) fn record(sh: &Shared, req: &Req, status: u16) {
    sh.lock().requests.push(RecordedRequest {
        method: req.method.to_string(),
        path: req.raw_path.clone(),
        query: req.query.clone(),
        status,
    });
}

/// The next queued fault matching `req`, with its GitHub-shaped error answer (other forges
/// reshape the body as they need; status and rate-limit headers are what matter). Answer it
/// with [`fault_answer`].
pub(crate) fn take_fault(sh: &Shared, req: &Req) -> Option<(crate::config::Fault, Resp)> {
    let mut st = sh.lock();
    let idx = st.faults.iter().position(|f| {
        f.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(req.method.as_str()))
            && f.path_contains
                .as_deref()
                .is_none_or(|p| req.raw_path.contains(p))
    })?;
    let fault = st.faults[idx].clone();
    if fault.times <= 1 {
        st.faults.remove(idx);
    } else {
        st.faults[idx].times -= 1;
    }
    drop(st);
    let message = match fault.status {
        403 => "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID.",
        429 => "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        401 => "Bad credentials",
        404 => "Not Found",
        422 => "Validation Failed",
        s if s >= 500 => "Server Error",
        _ => "Simulated fault",
    };
    let mut r = Resp::error(fault.status, message);
    if let Some(s) = fault.retry_after {
        r = r.header("retry-after", s.to_string());
    }
    if let Some(s) = fault.ratelimit_reset_in {
        let reset = crate::util::unix_secs(SystemTime::now()) + s;
        r = r
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-used", "5000")
            .header("x-ratelimit-reset", reset.to_string())
            .header("x-ratelimit-resource", "core");
    }
    Some((fault, r))
}

/// Who is calling a GitHub route.
pub struct Caller {
    pub admin: bool,
    /// An installation token (minted for a GitHub App, or Actions' `ghs_…` token).
    pub app: bool,
}

/// Authenticate with a PAT or an unexpired installation token.
pub fn authenticate(sh: &Shared, req: &Req) -> Result<Caller, Resp> {
    let Some(tok) = req.credential() else {
        return Err(Resp::error(401, "Requires authentication"));
    };
    if let Some(p) = sh.cfg.pats.iter().find(|p| p.token == tok) {
        return Ok(Caller {
            admin: p.admin,
            app: tok.starts_with("ghs_"),
        });
    }
    let st = sh.lock();
    match st.installation_tokens.get(&tok) {
        Some(exp) if *exp > SystemTime::now() => Ok(Caller {
            admin: true,
            app: true,
        }),
        _ => Err(Resp::bad_credentials()),
    }
}

fn rate_headers(r: Resp) -> Resp {
    let reset = crate::util::unix_secs(SystemTime::now()) + 3600;
    r.header("x-ratelimit-limit", "5000")
        .header("x-ratelimit-remaining", "4999")
        .header("x-ratelimit-used", "1")
        .header("x-ratelimit-reset", reset.to_string())
        .header("x-ratelimit-resource", "core")
}

fn route(sh: &Shared, req: &Req, segs: &[&str]) -> Resp {
    let m = req.method.as_str();
    // Unauthenticated (or optionally authenticated) routes first.
    match (m, segs) {
        ("GET", ["_sim", "downloads", file])
        | ("GET", ["actions", "runner", "releases", "download", _, file]) => {
            return release::download(sh, file);
        }
        ("GET", ["repos", o, r, "releases", rest @ ..]) => {
            if req.credential().is_some() && authenticate(sh, req).is_err() {
                return Resp::bad_credentials();
            }
            return release::release(sh, o, r, rest);
        }
        ("GET", ["repos", _, _, "installation"]) | ("GET", ["orgs", _, "installation"]) => {
            let login = segs[1];
            return app::installation(sh, req, login);
        }
        ("POST", ["actions", "runner-registration"]) => return scaleset::register(sh, req),
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            return app::access_token(sh, req, id);
        }
        ("POST", ["graphql"]) | ("POST", ["api", "graphql"]) => {
            return match authenticate(sh, req) {
                Ok(c) => crate::reports::github::graphql(sh, req, &reports_caller(&c)),
                Err(r) => r,
            };
        }
        _ => {}
    }
    let (scope, rest) = match segs {
        ["repos", o, r, rest @ ..] => (
            Scope::Repo {
                owner: o.to_string(),
                repo: r.to_string(),
            },
            rest,
        ),
        ["orgs", org, rest @ ..] => (Scope::Org(org.to_string()), rest),
        _ => return Resp::not_found(),
    };
    let caller = match authenticate(sh, req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if matches!(rest, ["actions", "runners", ..]) {
        if !caller.admin {
            return Resp::error(403, "Resource not accessible by personal access token");
        }
        return rate_headers(runners::handle(sh, req, &scope, &rest[2..]));
    }
    if let Scope::Repo { owner, repo } = &scope {
        let full = format!("{owner}/{repo}");
        if let Some(r) =
            crate::reports::github::handle(sh, req, &reports_caller(&caller), &full, rest)
        {
            return rate_headers(r);
        }
        if matches!(rest, ["actions", "jobs" | "runs", ..]) {
            return rate_headers(actions::handle(sh, req, &scope, &rest[1..]));
        }
    }
    Resp::not_found()
}

fn reports_caller(c: &Caller) -> crate::reports::github::Caller {
    crate::reports::github::Caller {
        write: c.admin,
        app: c.app,
    }
}

/// Absolute API URL for `path` (no `/api/v3` prefix; the simulator accepts both).
pub fn api_url(sh: &Shared, path: &str) -> String {
    format!("{}{}", sh.base_url, path)
}
