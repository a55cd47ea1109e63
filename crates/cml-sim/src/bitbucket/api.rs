//! Bitbucket routes: the public 2.0 API, the internal runners API, and the simulated runner's
//! `/_sim/bitbucket/...` protocol.

use serde_json::{json, Value};

use super::state::{uuid, Runner};
use crate::github::{fault_answer, record, take_fault, Req, Resp, Shared};
use crate::util::percent_decode as decode;

fn error(status: u16, message: &str) -> Resp {
    Resp::json(
        status,
        json!({"type": "error", "error": {"message": message}}),
    )
}

/// Who calls: `Authorization: Basic <base64 user:app_password>`.
fn authenticate(sh: &Shared, req: &Req) -> Result<bool, Resp> {
    let basic = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .map(str::trim);
    let Some(tok) = basic else {
        return Err(error(401, "Authentication required"));
    };
    match sh.cfg.bitbucket.credentials.iter().find(|c| c.token == tok) {
        Some(c) => Ok(c.admin),
        None => Err(error(401, "Invalid credentials")),
    }
}

/// Faults, authentication and the request log around an API route.
fn guarded(sh: &Shared, req: &Req, admin_only: bool, f: impl FnOnce() -> Resp) -> Resp {
    let serve = || match authenticate(sh, req) {
        Err(r) => r,
        Ok(false) if admin_only => error(
            403,
            "Your credentials lack one or more required privilege scopes.",
        ),
        Ok(_) => f(),
    };
    let resp = match take_fault(sh, req) {
        Some((fault, shaped)) => {
            let mut r = error(shaped.status, "Simulated fault");
            r.headers = shaped.headers;
            fault_answer(&fault, r, serve)
        }
        None => serve(),
    };
    record(sh, req, resp.status);
    resp
}

/// `/2.0/...`
pub fn public(sh: &Shared, req: &Req, rest: &[&str]) -> Resp {
    let m = req.method.as_str();
    if let ["repositories", ws, slug, tail @ ..] = rest {
        if let Some(writes) = crate::reports::bitbucket::route_kind(m, tail) {
            let full = format!("{ws}/{slug}");
            return guarded(sh, req, writes, || {
                crate::reports::bitbucket::handle(sh, req, &full, tail)
            });
        }
    }
    match (m, rest) {
        ("GET", ["repositories", ws, slug]) => guarded(sh, req, false, || {
            let r = sh.bitbucket().repo(&format!("{ws}/{slug}"));
            Resp::json(
                200,
                json!({
                    "type": "repository",
                    "uuid": r.uuid,
                    "full_name": r.full_name,
                    "slug": slug,
                    "workspace": {"type": "workspace", "uuid": r.workspace_uuid, "slug": ws},
                    "owner": {"uuid": r.workspace_uuid},
                }),
            )
        }),
        ("GET", ["workspaces", ws]) => guarded(sh, req, false, || {
            let uuid = sh.bitbucket().workspace(ws);
            Resp::json(
                200,
                json!({"type": "workspace", "uuid": uuid, "slug": ws, "name": ws}),
            )
        }),
        ("GET", ["repositories", ws, slug, "pipelines"]) => {
            guarded(sh, req, false, || {
                // Newest first (`sort=-created_on`), `pagelen` honoured.
                let full = format!("{ws}/{slug}");
                let pagelen: usize = req
                    .param("pagelen")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(10)
                    .clamp(1, 100);
                let st = sh.bitbucket();
                let values: Vec<Value> = st
                    .steps
                    .iter()
                    .rev()
                    .filter(|s| s.repo == full)
                    .take(pagelen)
                    .map(pipeline_json)
                    .collect();
                Resp::json(200, json!({"pagelen": pagelen, "values": values}))
            })
        }
        ("GET", ["repositories", ws, slug, "pipelines", id, "steps"]) => {
            guarded(sh, req, false, || {
                let full = format!("{ws}/{slug}");
                let id = decode(id);
                let st = sh.bitbucket();
                let values: Vec<Value> = st
                    .steps
                    .iter()
                    .filter(|s| s.pipeline_uuid == id && s.repo == full)
                    .map(|s| json!({"type": "pipeline_step", "uuid": s.uuid, "name": s.name, "state": {"name": s.state}}))
                    .collect();
                Resp::json(200, json!({"values": values}))
            })
        }
        ("GET", ["repositories", ws, slug, "pipelines", id]) => guarded(sh, req, false, || {
            let full = format!("{ws}/{slug}");
            let id = decode(id);
            let st = sh.bitbucket();
            match st
                .steps
                .iter()
                .find(|s| s.pipeline_uuid == id && s.repo == full)
            {
                Some(s) => Resp::json(200, pipeline_json(s)),
                None => error(404, "Pipeline not found"),
            }
        }),
        ("POST", ["repositories", ws, slug, "pipelines", ..]) => guarded(sh, req, false, || {
            // A new pipeline for a target: the simulated pipelines' targets are a branch and a
            // custom pipeline named after their one step.
            let full = format!("{ws}/{slug}");
            let target = req.json()["target"].clone();
            let mut st = sh.bitbucket();
            let Some(old) = st
                .steps
                .iter()
                .rev()
                .find(|s| s.repo == full && target_of(s) == target)
                .cloned()
            else {
                return error(400, "target: no pipeline definition for this target");
            };
            let new = st.queue_step(&full, &old.name, &old.labels, &old.command);
            let step = st.steps.iter().find(|s| s.uuid == new).cloned();
            let new_pipeline = step.map(|s| s.pipeline_uuid).unwrap_or_default();
            st.reruns
                .push((old.pipeline_uuid.clone(), new_pipeline.clone()));
            Resp::json(
                201,
                json!({"type": "pipeline", "uuid": new_pipeline, "state": {"name": "PENDING"}, "target": target}),
            )
        }),
        _ => guarded(sh, req, false, || error(404, "Resource not found")),
    }
}

fn pipeline_json(s: &super::state::Step) -> Value {
    json!({
        "type": "pipeline",
        "uuid": s.pipeline_uuid,
        "state": {"name": if s.state == "COMPLETED" { "COMPLETED" } else if s.state == "PENDING" { "PENDING" } else { "IN_PROGRESS" }, "result": s.result.as_ref().map(|r| json!({"name": r}))},
        "target": target_of(s),
    })
}

/// A simulated pipeline's target: branch `main`, the custom pipeline named after its step.
fn target_of(s: &super::state::Step) -> Value {
    json!({
        "type": "pipeline_ref_target",
        "ref_type": "branch",
        "ref_name": "main",
        "selector": {"type": "custom", "pattern": s.name},
    })
}

fn runner_json(sh: &Shared, r: &Runner) -> Value {
    let st_off = sh.cfg.offline_after;
    let st = sh.bitbucket();
    let step = st.running_step(&r.uuid).map(|s| json!({"uuid": s.uuid}));
    json!({
        "uuid": r.uuid,
        "name": r.name,
        "labels": r.labels,
        "state": {"status": r.status(st_off), "step": step, "cordoned": false},
    })
}

/// `/internal/repositories/{ws}/{slug}/pipelines-config/runners[/{uuid}]`
pub fn internal(sh: &Shared, req: &Req, rest: &[&str]) -> Resp {
    let m = req.method.as_str();
    let (ws, slug, tail) = match rest {
        ["repositories", ws, slug, "pipelines-config", "runners", tail @ ..] => (*ws, *slug, tail),
        _ => return guarded(sh, req, false, || error(404, "Resource not found")),
    };
    let full = format!("{ws}/{slug}");
    match (m, tail) {
        ("GET", []) => guarded(sh, req, true, || {
            let page: usize = req
                .param("page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1);
            let pagelen: usize = req
                .param("pagelen")
                .and_then(|p| p.parse().ok())
                .unwrap_or(10)
                .clamp(1, 100);
            let runners: Vec<Runner> = sh
                .bitbucket()
                .runners
                .values()
                .filter(|r| r.repo == full)
                .cloned()
                .collect();
            let values: Vec<Value> = runners
                .iter()
                .skip((page - 1) * pagelen)
                .take(pagelen)
                .map(|r| runner_json(sh, r))
                .collect();
            let mut body =
                json!({"page": page, "pagelen": pagelen, "size": runners.len(), "values": values});
            if page * pagelen < runners.len() {
                body["next"] = json!(format!(
                    "{}/internal/repositories/{full}/pipelines-config/runners?page={}&pagelen={pagelen}",
                    sh.base_url,
                    page + 1
                ));
            }
            Resp::json(200, body)
        }),
        ("POST", []) => guarded(sh, req, true, || {
            let b = req.json();
            let Some(name) = b["name"].as_str().filter(|n| !n.is_empty()) else {
                return error(400, "name: required");
            };
            let labels: Vec<String> = b["labels"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if !labels.iter().any(|l| l == "self.hosted") {
                return error(400, "labels: must include self.hosted");
            }
            let mut st = sh.bitbucket();
            st.repo(&full);
            let r = Runner {
                uuid: uuid(),
                name: name.to_string(),
                labels,
                repo: full.clone(),
                client_id: crate::util::random_hex(16),
                client_secret: crate::util::random_hex(32),
                last_contact: None,
                disabled: false,
            };
            st.issued.push(r.client_secret.clone());
            st.registered_names.push(r.name.clone());
            st.runners.insert(r.uuid.clone(), r.clone());
            drop(st);
            let mut v = runner_json(sh, &r);
            v["oauth_client"] = json!({
                "id": r.client_id,
                "secret": r.client_secret,
                "token_endpoint": format!("{}/_sim/bitbucket/oauth2/token", sh.base_url),
                "audience": "api.atlassian.com",
            });
            Resp::json(200, v)
        }),
        ("GET", [id]) => guarded(sh, req, true, || {
            let r = sh.bitbucket().runners.get(&decode(id)).cloned();
            match r {
                Some(r) => {
                    let answer = Resp::json(200, runner_json(sh, &r));
                    // The answer is computed: a step given now is not in it.
                    sh.bitbucket()
                        .race(super::state::Race::AfterStateRead, &r.uuid);
                    answer
                }
                None => error(404, "Runner not found"),
            }
        }),
        ("PUT", [id, "state"]) => guarded(sh, req, true, || {
            let disabled = match req.json()["status"].as_str() {
                Some("DISABLED") => true,
                Some("ENABLED") => false,
                _ => return error(400, "status: must be ENABLED or DISABLED"),
            };
            let uuid = decode(id);
            let r = {
                let mut st = sh.bitbucket();
                if !st.runners.contains_key(&uuid) {
                    return error(404, "Runner not found");
                }
                if disabled {
                    st.race(super::state::Race::BeforeDisable, &uuid);
                }
                let Some(r) = st.runners.get_mut(&uuid) else {
                    return error(404, "Runner not found");
                };
                r.disabled = disabled;
                r.clone()
            };
            Resp::json(200, runner_json(sh, &r))
        }),
        ("DELETE", [id]) => guarded(sh, req, true, || {
            let mut st = sh.bitbucket();
            match st.runners.remove(&decode(id)) {
                Some(r) => {
                    st.deletes.push((r.uuid, r.name));
                    Resp::empty(204)
                }
                None => error(404, "Runner not found"),
            }
        }),
        _ => guarded(sh, req, false, || error(404, "Resource not found")),
    }
}

/// `/_sim/bitbucket/...`: the simulated runner's protocol and the admin routes. Never faulted.
pub fn sim(sh: &Shared, req: &Req, rest: &[&str]) -> Resp {
    let b = req.json();
    match (req.method.as_str(), rest) {
        ("POST", ["jobs"]) => {
            let labels: Vec<String> = b["labels"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let id = sh.bitbucket().queue_step(
                b["repo"].as_str().unwrap_or("octo/app"),
                b["name"].as_str().unwrap_or("step"),
                &labels,
                b["command"].as_str().unwrap_or("true"),
            );
            Resp::json(201, json!({"step_uuid": id}))
        }
        ("GET", ["state"]) => {
            let off = sh.cfg.offline_after;
            let st = sh.bitbucket();
            Resp::json(
                200,
                json!({
                    "runners": st.runners.values().map(|r| st.any_runner(r, off)).collect::<Vec<_>>(),
                    "jobs": st.steps.iter().map(|s| s.any()).collect::<Vec<_>>(),
                }),
            )
        }
        ("POST", ["runner", action]) => {
            let mut st = sh.bitbucket();
            let runner_uuid = b["runner_uuid"].as_str().unwrap_or_default();
            let authentic = st.runners.get(runner_uuid).is_some_and(|r| {
                Some(r.client_id.as_str()) == b["client_id"].as_str()
                    && Some(r.client_secret.as_str()) == b["client_secret"].as_str()
            });
            if !authentic {
                return error(401, "invalid_client");
            }
            if let Some(r) = st.runners.get_mut(runner_uuid) {
                r.last_contact = Some(std::time::Instant::now());
            }
            match *action {
                "state" => Resp::json(200, json!({})),
                "next" => match st
                    .delivering
                    .remove(runner_uuid)
                    .and_then(|uuid| st.steps.iter().find(|s| s.uuid == uuid).cloned())
                    .or_else(|| st.assign(runner_uuid))
                {
                    Some(s) => Resp::json(
                        200,
                        json!({"pipeline_uuid": s.pipeline_uuid, "step_uuid": s.uuid, "command": s.command}),
                    ),
                    None => Resp::empty(204),
                },
                "result" => {
                    let step = b["step_uuid"].as_str().unwrap_or_default();
                    if let Some(s) = st
                        .steps
                        .iter_mut()
                        .find(|s| s.uuid == step && s.runner_uuid.as_deref() == Some(runner_uuid))
                    {
                        s.state = "COMPLETED".into();
                        s.result = b["status"].as_str().map(String::from);
                        s.output.push_str(b["output"].as_str().unwrap_or_default());
                    }
                    Resp::json(200, json!({}))
                }
                _ => error(404, "unknown runner action"),
            }
        }
        _ => error(404, "Resource not found"),
    }
}
