//! HTTP front end of the simulated Compute Engine: routes by the contract, checks the query,
//! path and body as Google's front end does, authenticates, applies injected faults, carries the
//! request out on the [`State`] and checks the answer against the contract.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::contract::{parse_query, Contract, Level};
use super::errors::ApiError;
use super::filter::Filter;
use super::state::{
    Order, State, SCOPE_CLOUD_PLATFORM, SCOPE_CLOUD_PLATFORM_READONLY, SCOPE_COMPUTE,
    SCOPE_COMPUTE_READONLY,
};
use super::{GcpFault, GcpRequest, Shared};

pub(crate) async fn entry(
    axum::extract::State(sh): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if path == "/token" && method == Method::POST {
        return super::oauth::token(&sh, &headers, &body);
    }
    if path.starts_with("/compute/v1/") {
        return compute(
            &sh,
            &method,
            &path,
            uri.query().unwrap_or(""),
            &headers,
            &body,
        )
        .await;
    }
    html(
        404,
        &format!("The requested URL <code>{path}</code> was not found on this server."),
    )
}

/// Google's HTML error page (what its front end answers for a path no API serves).
pub(crate) fn html(status: u16, text: &str) -> Response {
    let body = format!("<!DOCTYPE html>\n<html lang=en><title>Error {status}</title><p><b>{status}.</b> <ins>That’s an error.</ins><p>{text} <ins>That’s all we know.</ins>\n");
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND);
    r.headers_mut().insert(
        "content-type",
        "text/html; charset=UTF-8".parse().expect("static header"),
    );
    r
}

pub(crate) fn json_response(status: u16, v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        "application/json; charset=UTF-8"
            .parse()
            .expect("static header"),
    );
    r
}

/// The IAM permission a method needs.
pub fn permission(method: &str) -> &'static str {
    match method {
        "compute.instances.insert" => "compute.instances.create",
        "compute.instances.get" => "compute.instances.get",
        "compute.instances.delete" => "compute.instances.delete",
        "compute.instances.list" | "compute.instances.aggregatedList" => "compute.instances.list",
        "compute.instances.getSerialPortOutput" => "compute.instances.getSerialPortOutput",
        "compute.zoneOperations.get" | "compute.zoneOperations.wait" => {
            "compute.zoneOperations.get"
        }
        "compute.disks.list" | "compute.disks.aggregatedList" => "compute.disks.list",
        "compute.disks.delete" => "compute.disks.delete",
        "compute.zones.get" => "compute.zones.get",
        "compute.regions.get" => "compute.regions.get",
        "compute.images.getFromFamily" => "compute.images.getFromFamily",
        _ => "compute.unknown",
    }
}

fn writes(method: &str) -> bool {
    matches!(
        method,
        "compute.instances.insert" | "compute.instances.delete" | "compute.disks.delete"
    )
}

/// The principal and scopes of the bearer token in `headers`.
fn authenticate(st: &State, headers: &HeaderMap) -> Result<(String, Vec<String>), ApiError> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::unauthenticated(true));
    };
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .unwrap_or("");
    match st.tokens.get(token) {
        Some(t) if t.expires > Instant::now() => Ok((t.principal.clone(), t.scopes.clone())),
        _ => Err(ApiError::unauthenticated(false)),
    }
}

/// The resource a method acts on, as IAM names it in refusals.
fn resource_of(project: &str, method: &str, p: &BTreeMap<String, String>) -> String {
    let g = |k: &str| p.get(k).cloned().unwrap_or_default();
    match method {
        "compute.instances.get"
        | "compute.instances.delete"
        | "compute.instances.getSerialPortOutput" => {
            format!(
                "projects/{project}/zones/{}/instances/{}",
                g("zone"),
                g("instance")
            )
        }
        "compute.disks.delete" => {
            format!("projects/{project}/zones/{}/disks/{}", g("zone"), g("disk"))
        }
        m if p.contains_key("zone") && m != "compute.zones.get" => {
            format!("projects/{project}/zones/{}", g("zone"))
        }
        _ => format!("projects/{project}"),
    }
}

/// Turns the first problem of a body check into Google's 400 answer.
fn payload_error(problems: &[String]) -> ApiError {
    let first = problems.first().cloned().unwrap_or_default();
    let (at, what) = first.split_once(": ").unwrap_or(("$", first.as_str()));
    let field = at.trim_start_matches('$').trim_start_matches('.');
    if what == "field not in the schema" {
        let (parent, name) = match field.rsplit_once('.') {
            Some((p, n)) => (format!("instance_resource.{p}"), n.to_string()),
            None => ("instance_resource".to_string(), field.to_string()),
        };
        return ApiError::invalid_payload(format!(
            "Invalid JSON payload received. Unknown name \"{name}\" at '{parent}': Cannot find field."
        ));
    }
    if what == "missing required field" {
        return ApiError::invalid_payload(format!(
            "Required field 'resource.{field}' not specified"
        ));
    }
    ApiError::invalid_payload(format!(
        "Invalid value at 'instance_resource.{field}': {what}"
    ))
}

struct Call {
    method: String,
    params: BTreeMap<String, String>,
    query: Vec<(String, String)>,
    body: Option<Value>,
    principal: String,
}

impl Call {
    fn p(&self, k: &str) -> &str {
        self.params.get(k).map(String::as_str).unwrap_or("")
    }
    fn q(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.as_str())
    }
}

async fn compute(
    sh: &Arc<Shared>,
    http_method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Response {
    let contract = Contract::bundled();
    let Some((m, params)) = contract.match_path(http_method.as_str(), path) else {
        return html(
            404,
            &format!("The requested URL <code>{path}</code> was not found on this server."),
        );
    };
    let method = m.id.clone();
    let takes_body = m.request.is_some();
    let started = Instant::now();
    let result = prepare(sh, &method, &params, query, headers, raw, takes_body);
    let call = match result {
        Ok(c) => c,
        Err(refusal) => {
            let (e, body, principal) = *refusal;
            record(
                sh,
                started,
                &method,
                http_method,
                path,
                query,
                body,
                principal,
                e.status,
                None,
            );
            return json_response(e.status, &e.body());
        }
    };
    // Injected faults.
    let fault = sh
        .with(|st| {
            let rule = st
                .faults
                .iter_mut()
                .find(|r| r.method == method && r.left != Some(0))?;
            if let Some(n) = rule.left.as_mut() {
                *n -= 1;
            }
            Some(rule.fault.clone())
        })
        .flatten();
    match &fault {
        Some(GcpFault::Hang) => {
            record(
                sh,
                started,
                &method,
                http_method,
                path,
                query,
                call.body.clone(),
                Some(call.principal.clone()),
                0,
                fault.clone(),
            );
            std::future::pending::<()>().await;
        }
        Some(GcpFault::Error {
            status,
            reason,
            message,
        }) => {
            let body = json!({"error": {"code": status, "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}]}});
            record(
                sh,
                started,
                &method,
                http_method,
                path,
                query,
                call.body.clone(),
                Some(call.principal.clone()),
                *status,
                fault.clone(),
            );
            return json_response(*status, &body);
        }
        _ => {}
    }
    let answer = perform(sh, &call).await;
    let (status, body) = match answer {
        Ok(v) => {
            let problems = contract.check_response(&method, &v);
            if problems.is_empty() {
                (200, v)
            } else {
                // A simulator bug: say so rather than answer off-contract.
                (
                    500,
                    json!({"error": {"code": 500, "message": format!("the simulator's answer to {method} does not conform to the Compute Engine contract: {}", problems.join("; ")), "errors": [{"message": "simulator contract violation", "domain": "global", "reason": "backendError"}]}}),
                )
            }
        }
        Err(e) => (e.status, e.body()),
    };
    record(
        sh,
        started,
        &method,
        http_method,
        path,
        query,
        call.body.clone(),
        Some(call.principal.clone()),
        status,
        fault.clone(),
    );
    match fault {
        Some(GcpFault::DelayAnswer(d)) => tokio::time::sleep(d).await,
        // The request was carried out; the answer is lost with the connection.
        Some(GcpFault::DropAnswer) => return Response::new(Body::new(CutConnection)),
        _ => {}
    }
    json_response(status, &body)
}

type Refusal = Box<(ApiError, Option<Value>, Option<String>)>;

fn prepare(
    sh: &Shared,
    method: &str,
    params: &BTreeMap<String, String>,
    query: &str,
    headers: &HeaderMap,
    raw: &Bytes,
    takes_body: bool,
) -> Result<Call, Refusal> {
    let contract = Contract::bundled();
    let body: Option<Value> = if takes_body {
        match serde_json::from_slice(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                return Err(Box::new((
                    ApiError::invalid_payload(format!("Invalid JSON payload received. {e}")),
                    None,
                    None,
                )))
            }
        }
    } else {
        None
    };
    let refuse = |e: ApiError| Box::new((e, body.clone(), None));
    // Query parameters.
    let qp = contract.check_query(method, query);
    if let Some(p) = qp.first() {
        let name = p
            .strip_prefix("query parameter ")
            .and_then(|x| x.split(':').next())
            .unwrap_or("");
        return Err(refuse(if p.contains("not a parameter") {
            ApiError::invalid_payload(format!("Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter. Field '{name}' could not be found in request message."))
        } else {
            ApiError::bad_request("invalidParameter", format!("Invalid value for {p}"))
        }));
    }
    let query = parse_query(query);
    for (k, v) in &query {
        let unsupported = match k.as_str() {
            "fields" | "callback" | "upload_protocol" | "uploadType" => true,
            "alt" => v != "json",
            _ => false,
        };
        if unsupported {
            return Err(refuse(ApiError::bad_request(
                "invalidParameter",
                format!("the simulator does not support the query parameter {k}={v}"),
            )));
        }
    }
    // Path parameters.
    if let Some(p) = contract.check_path_params(method, params).first() {
        return Err(refuse(ApiError::bad_request("invalidParameter", p.clone())));
    }
    let st = &mut *sh.lock();
    st.advance(Instant::now());
    let (principal, scopes) = authenticate(st, headers).map_err(refuse)?;
    let refuse = |e: ApiError| Box::new((e, body.clone(), Some(principal.clone())));
    let project = params.get("project").cloned().unwrap_or_default();
    let known = if method == "compute.images.getFromFamily" {
        st.images_project(&project) || st.is_project(&project)
    } else {
        st.is_project(&project)
    };
    if !known {
        return Err(refuse(ApiError::not_found(&format!("projects/{project}"))));
    }
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let scoped = if writes(method) {
        has(SCOPE_CLOUD_PLATFORM) || has(SCOPE_COMPUTE)
    } else {
        has(SCOPE_CLOUD_PLATFORM)
            || has(SCOPE_COMPUTE)
            || has(SCOPE_COMPUTE_READONLY)
            || has(SCOPE_CLOUD_PLATFORM_READONLY)
    };
    if !scoped {
        return Err(refuse(ApiError::insufficient_scopes()));
    }
    let perm = permission(method);
    if st.denied.contains(&(principal.clone(), perm.to_string())) {
        return Err(refuse(ApiError::forbidden(
            perm,
            &resource_of(&st.cfg.project, method, params),
        )));
    }
    if let Some(b) = &body {
        let problems = contract.check_request(method, b, Level::Server);
        if !problems.is_empty() {
            return Err(refuse(payload_error(&problems)));
        }
    }
    Ok(Call {
        method: method.to_string(),
        params: params.clone(),
        query,
        body,
        principal,
    })
}

#[allow(clippy::too_many_arguments)]
fn record(
    sh: &Shared,
    at: Instant,
    method: &str,
    http_method: &Method,
    path: &str,
    query: &str,
    body: Option<Value>,
    principal: Option<String>,
    status: u16,
    fault: Option<GcpFault>,
) {
    sh.with(|st| {
        st.requests.push(GcpRequest {
            at,
            method: method.to_string(),
            http_method: http_method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            body,
            principal,
            status,
            fault,
        })
    });
}

/// `maxResults` (0..=500, default 500) and the offset from `pageToken`.
fn page(call: &Call) -> Result<(usize, usize), ApiError> {
    let max = match call.q("maxResults") {
        None => 500,
        Some(m) => match m.parse::<usize>() {
            Ok(n) if n <= 500 => n,
            _ => {
                return Err(ApiError::invalid_field(
                    "maxResults",
                    m,
                    "Must be between 0 and 500.",
                ))
            }
        },
    };
    let max = if max == 0 { 500 } else { max };
    let offset = match call.q("pageToken") {
        None | Some("") => 0,
        Some(t) => t
            .strip_prefix("sim-page-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ApiError::invalid_field("pageToken", t, "Invalid page token."))?,
    };
    Ok((max, offset))
}

fn order(call: &Call) -> Result<Order, ApiError> {
    match call.q("orderBy") {
        None | Some("") => Ok(Order::Unspecified),
        Some("name") => Ok(Order::Name),
        Some("creationTimestamp desc") => Ok(Order::NewestFirst),
        Some(o) => Err(ApiError::invalid_field(
            "orderBy",
            o,
            "Currently, only sorting by 'name' or 'creationTimestamp desc' is supported.",
        )),
    }
}

fn filter(call: &Call) -> Result<Filter, ApiError> {
    Filter::parse(call.q("filter").unwrap_or(""))
        .map_err(|e| ApiError::invalid_field("filter", call.q("filter").unwrap_or(""), &e))
}

/// One page of `items`, and the token of the next page.
fn paginate<T: Clone>(items: &[T], max: usize, offset: usize) -> (Vec<T>, Option<String>) {
    let end = (offset + max).min(items.len());
    let slice = items
        .get(offset.min(items.len())..end)
        .unwrap_or_default()
        .to_vec();
    let next = (end < items.len()).then(|| format!("sim-page-{end}"));
    (slice, next)
}

async fn perform(sh: &Arc<Shared>, call: &Call) -> Result<Value, ApiError> {
    if call.method == "compute.zoneOperations.wait" {
        // Answers when the operation is done, or after the wait timeout with it as it is.
        let deadline = Instant::now() + sh.lock().cfg.wait_timeout;
        loop {
            let (v, done) = {
                let st = &mut *sh.lock();
                st.advance(Instant::now());
                st.get_op(call.p("zone"), call.p("operation"))?
            };
            if done || Instant::now() >= deadline {
                return Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let st = &mut *sh.lock();
    st.advance(Instant::now());
    let zone = call.p("zone");
    let request_id = call.q("requestId");
    if let Some(r) = request_id.filter(|r| !is_request_uuid(r)) {
        return Err(ApiError::invalid_field(
            "requestId",
            r,
            "The request ID must be a valid UUID with the exception that zero UUID is not supported (00000000-0000-0000-0000-000000000000).",
        ));
    }
    match call.method.as_str() {
        "compute.instances.insert" => {
            let body = call.body.clone().unwrap_or(Value::Null);
            st.insert_instance(zone, &body, &call.principal, request_id)
        }
        "compute.instances.get" => st.get_instance(zone, call.p("instance")),
        "compute.instances.delete" => {
            st.delete_instance(zone, call.p("instance"), &call.principal, request_id)
        }
        "compute.instances.getSerialPortOutput" => {
            let port = call.q("port").and_then(|p| p.parse().ok()).unwrap_or(1);
            let start = call.q("start").and_then(|p| p.parse().ok()).unwrap_or(0);
            st.serial_output(zone, call.p("instance"), port, start)
        }
        "compute.zoneOperations.get" => st.get_op(zone, call.p("operation")).map(|(v, _)| v),
        "compute.disks.delete" => st.delete_disk(zone, call.p("disk"), &call.principal, request_id),
        "compute.zones.get" => st.get_zone(zone),
        "compute.regions.get" => st.get_region(call.p("region")),
        "compute.images.getFromFamily" => st.image_from_family(call.p("project"), call.p("family")),
        "compute.instances.list" | "compute.disks.list" => {
            st.check_zone_pub(zone)?;
            let (f, o, (max, offset)) = (filter(call)?, order(call)?, page(call)?);
            let disks = call.method == "compute.disks.list";
            let all = if disks {
                st.list_disks(Some(zone), &f, o)
            } else {
                st.list_instances(Some(zone), &f, o)
            };
            let all: Vec<Value> = all.into_iter().map(|(_, v)| v).collect();
            let (items, next) = paginate(&all, max, offset);
            let (kind, what) = if disks {
                ("compute#diskList", "disks")
            } else {
                ("compute#instanceList", "instances")
            };
            let mut v = json!({
                "kind": kind,
                "id": format!("projects/{}/zones/{zone}/{what}", st.cfg.project),
                "selfLink": st.link(&format!("zones/{zone}/{what}")),
            });
            if !items.is_empty() {
                v["items"] = Value::Array(items);
            }
            if let Some(n) = next {
                v["nextPageToken"] = json!(n);
            }
            Ok(v)
        }
        "compute.instances.aggregatedList" | "compute.disks.aggregatedList" => {
            let (f, o, (max, offset)) = (filter(call)?, order(call)?, page(call)?);
            let disks = call.method == "compute.disks.aggregatedList";
            let zones = st.all_zones();
            let mut all = if disks {
                st.list_disks(None, &f, o)
            } else {
                st.list_instances(None, &f, o)
            };
            all.sort_by_key(|(z, _)| zones.iter().position(|x| x == z));
            let (items, next) = paginate(&all, max, offset);
            let (kind, what) = if disks {
                ("compute#diskAggregatedList", "disks")
            } else {
                ("compute#instanceAggregatedList", "instances")
            };
            let mut scoped = serde_json::Map::new();
            for z in &zones {
                let here: Vec<Value> = items
                    .iter()
                    .filter(|(iz, _)| iz == z)
                    .map(|(_, v)| v.clone())
                    .collect();
                let scope = format!("zones/{z}");
                let entry = if here.is_empty() {
                    json!({"warning": {"code": "NO_RESULTS_ON_PAGE",
                        "message": format!("There are no results for scope '{scope}' on this page."),
                        "data": [{"key": "scope", "value": scope}]}})
                } else {
                    json!({ what: here })
                };
                scoped.insert(scope, entry);
            }
            let mut v = json!({
                "kind": kind,
                "id": format!("projects/{}/aggregated/{what}", st.cfg.project),
                "items": scoped,
                "selfLink": st.link(&format!("aggregated/{what}")),
            });
            if let Some(n) = next {
                v["nextPageToken"] = json!(n);
            }
            Ok(v)
        }
        other => Err(ApiError::bad_request(
            "invalid",
            format!("{other}: not served"),
        )),
    }
}

/// Whether `r` is a UUID (8-4-4-4-12 hex digits) other than the zero UUID, as Compute Engine
/// requires of `requestId`.
fn is_request_uuid(r: &str) -> bool {
    let groups: Vec<&str> = r.split('-').collect();
    let shape = groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12];
    shape
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
        && r.chars().any(|c| c != '0' && c != '-')
}

/// A body that fails at once, so the server cuts the connection: the caller gets no answer.
struct CutConnection;

impl axum::body::HttpBody for CutConnection {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::other(
            "answer dropped by the simulator (injected fault)",
        ))))
    }
}
