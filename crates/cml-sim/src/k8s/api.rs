//! HTTP front end of the simulated API server: authentication, discovery, routes, strict
//! decoding against the contract, Status errors, faults and the request log.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::contract::{Contract, Violation};
use super::state::{kind_of, parse_quantity, ts, State};
use super::{K8sFault, K8sRequest, Shared};

fn status(code: u16, reason: &str, message: &str, details: Value) -> Response {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    if !details.is_null() {
        s["details"] = details;
    }
    answer(code, &s)
}

fn answer(code: u16, v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    r
}

fn group_of(resource: &str) -> &'static str {
    match resource {
        "jobs" => "batch",
        "leases" => "coordination.k8s.io",
        _ => "",
    }
}

/// The `apiVersion` of the objects of `resource`.
fn api_of(resource: &str) -> &'static str {
    match resource {
        "jobs" => "batch/v1",
        "leases" => "coordination.k8s.io/v1",
        _ => "v1",
    }
}

fn qualified(resource: &str) -> String {
    match group_of(resource) {
        "" => resource.to_string(),
        g => format!("{resource}.{g}"),
    }
}

fn not_found(resource: &str, name: &str) -> Response {
    status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", qualified(resource)),
        json!({"name": name, "group": group_of(resource), "kind": resource}),
    )
}

pub(crate) async fn entry(
    axum::extract::State(sh): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let (resp, fault) = {
        let mut st = sh.lock();
        st.advance(Instant::now());
        let resp = handle(&mut st, &method, &path, &query, &token, &body);
        let fault = st
            .faults
            .iter()
            .position(|(m, p, _)| m == method.as_str() && path.contains(p.as_str()))
            .map(|i| st.faults.remove(i).2);
        st.requests.push(K8sRequest {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            status: resp.status().as_u16(),
        });
        (resp, fault)
    };
    match fault {
        Some(K8sFault::Drop) => Response::new(Body::new(CutConnection)),
        Some(K8sFault::Delay(d)) => {
            tokio::time::sleep(d).await;
            resp
        }
        Some(K8sFault::Hang) => {
            std::future::pending::<()>().await;
            resp
        }
        None => resp,
    }
}

fn handle(
    st: &mut State,
    method: &Method,
    path: &str,
    query: &str,
    token: &str,
    body: &[u8],
) -> Response {
    if !st.cfg.tokens.iter().any(|t| t == token) {
        return status(401, "Unauthorized", "Unauthorized", Value::Null);
    }
    let contract = Contract::bundled(&st.cfg.kubernetes).expect("configured Kubernetes version");
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["version"]) => {
            let minor = st
                .cfg
                .kubernetes
                .split('.')
                .nth(1)
                .unwrap_or("0")
                .to_string();
            return answer(
                200,
                &json!({"major": "1", "minor": minor,
                "gitVersion": format!("v{}.0", st.cfg.kubernetes), "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0",
                "compiler": "gc", "platform": "linux/amd64"}),
            );
        }
        ("GET", ["api"]) => {
            return answer(
                200,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}),
            )
        }
        ("GET", ["apis"]) => {
            return answer(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{"name": "batch",
                "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}},
                {"name": "coordination.k8s.io",
                "versions": [{"groupVersion": "coordination.k8s.io/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "coordination.k8s.io/v1", "version": "v1"}}]}),
            )
        }
        ("GET", ["api", "v1"]) => {
            let r = |name: &str, kind: &str, verbs: &[&str]| {
                json!({"name": name, "singularName": "",
                "namespaced": true, "kind": kind, "verbs": verbs})
            };
            let all = [
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ];
            return answer(
                200,
                &json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                r("events", "Event", &all), r("pods", "Pod", &all),
                r("pods/log", "Pod", &["get"]), r("secrets", "Secret", &all)]}),
            );
        }
        ("GET", ["apis", "batch", "v1"]) => {
            let all = [
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ];
            return answer(
                200,
                &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "batch/v1",
                "resources": [{"name": "jobs", "singularName": "job", "namespaced": true, "kind": "Job",
                    "verbs": all, "categories": ["all"]},
                    {"name": "jobs/status", "singularName": "", "namespaced": true, "kind": "Job", "verbs": ["get", "patch", "update"]}]}),
            );
        }
        ("GET", ["apis", "coordination.k8s.io", "v1"]) => {
            return answer(
                200,
                &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "coordination.k8s.io/v1",
                "resources": [{"name": "leases", "singularName": "lease", "namespaced": true, "kind": "Lease",
                    "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}]}),
            );
        }
        _ => {}
    }
    let (ns, resource, name, sub) = match parts.as_slice() {
        ["api", "v1", "namespaces", ns, r, rest @ ..]
            if matches!(*r, "pods" | "secrets" | "events") =>
        {
            (
                ns.to_string(),
                *r,
                rest.first().map(|s| s.to_string()),
                rest.get(1).map(|s| s.to_string()),
            )
        }
        ["apis", "batch", "v1", "namespaces", ns, "jobs", rest @ ..] => (
            ns.to_string(),
            "jobs",
            rest.first().map(|s| s.to_string()),
            rest.get(1).map(|s| s.to_string()),
        ),
        ["apis", "coordination.k8s.io", "v1", "namespaces", ns, "leases", rest @ ..] => (
            ns.to_string(),
            "leases",
            rest.first().map(|s| s.to_string()),
            rest.get(1).map(|s| s.to_string()),
        ),
        _ => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                json!({}),
            )
        }
    };
    let resource: &'static str = match resource {
        "pods" => "pods",
        "secrets" => "secrets",
        "events" => "events",
        "leases" => "leases",
        _ => "jobs",
    };
    let verb = match (method.as_str(), &name) {
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", None) => "create",
        ("DELETE", Some(_)) => "delete",
        ("PUT", Some(_)) if sub.is_none() && resource == "leases" => "update",
        _ => {
            return status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                json!({}),
            )
        }
    };
    let sub_res = sub
        .as_deref()
        .map(|s| format!("{resource}/{s}"))
        .unwrap_or(resource.to_string());
    if st
        .forbidden
        .iter()
        .any(|(t, v, r)| t == token && v == verb && *r == sub_res)
    {
        return status(403, "Forbidden", &format!(
            "{} is forbidden: User \"system:serviceaccount:{ns}:cml\" cannot {verb} resource \"{sub_res}\" in API group \"{}\" in the namespace \"{ns}\"",
            qualified(resource), group_of(resource)),
            json!({"group": group_of(resource), "kind": resource}));
    }
    if !st.cfg.namespaces.contains(&ns) {
        return status(
            404,
            "NotFound",
            &format!("namespaces \"{ns}\" not found"),
            json!({"name": ns, "kind": "namespaces"}),
        );
    }
    let q = parse_query(query);
    match verb {
        "list" => list(st, contract, &ns, resource, &q),
        "get" => {
            let name = name.unwrap_or_default();
            let Some(obj) = st
                .objects
                .get(&(resource, ns.clone(), name.clone()))
                .cloned()
            else {
                return not_found(resource, &name);
            };
            match sub.as_deref() {
                None => answer(200, &obj),
                Some("log") if resource == "pods" => {
                    let c = &obj["status"]["containerStatuses"][0]["state"];
                    if c.get("waiting").is_some() || c.is_null() {
                        let cname = obj["spec"]["containers"][0]["name"].as_str().unwrap_or("");
                        let why = c["waiting"]["reason"]
                            .as_str()
                            .unwrap_or("ContainerCreating");
                        return status(400, "BadRequest", &format!("container \"{cname}\" in pod \"{name}\" is waiting to start: {why}"), Value::Null);
                    }
                    let text = st.logs.get(&(ns, name)).cloned().unwrap_or_default();
                    let mut r = Response::new(Body::from(text));
                    r.headers_mut()
                        .insert("content-type", "text/plain".parse().expect("static"));
                    r
                }
                Some(_) => status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                    json!({}),
                ),
            }
        }
        "create" => create(st, contract, &ns, resource, &q, body),
        "update" => update(
            st,
            contract,
            &ns,
            resource,
            &name.unwrap_or_default(),
            &q,
            body,
        ),
        _ => delete(
            st,
            contract,
            &ns,
            resource,
            &name.unwrap_or_default(),
            &q,
            body,
        ),
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                crate::util::percent_decode(k),
                crate::util::percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn qget<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

/// Whether `labels` match a label selector (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
/// comma-separated terms, all of which must hold). Err on a selector the API server refuses.
pub fn selector_matches(sel: &str, labels: &Value) -> Result<bool, String> {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in sel.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    terms.push(cur);
    let get = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
    let mut ok = true;
    for t in terms.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        let hit = if let Some((k, v)) = t.split_once("!=") {
            get(k) != Some(v.trim())
        } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            get(k) == Some(v.trim())
        } else if let Some((k, set)) = t.split_once(" in ") {
            let set = set
                .trim()
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| format!("unable to parse requirement: {t}"))?;
            get(k).is_some_and(|v| set.split(',').any(|x| x.trim() == v))
        } else if let Some(k) = t.strip_prefix('!') {
            get(k).is_none()
        } else if t.contains(' ') {
            return Err(format!("unable to parse requirement: {t}"));
        } else {
            get(t).is_some()
        };
        ok &= hit;
    }
    Ok(ok)
}

fn list(
    st: &mut State,
    contract: &Contract,
    ns: &str,
    resource: &'static str,
    q: &[(String, String)],
) -> Response {
    let items: Vec<Value> = if resource == "events" {
        st.events
            .iter()
            .filter(|e| e["metadata"]["namespace"] == ns)
            .cloned()
            .collect()
    } else {
        st.objects
            .iter()
            .filter(|((k, n, _), _)| *k == resource && n == ns)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let mut out = Vec::new();
    for it in items {
        if let Some(sel) = qget(q, "labelSelector") {
            match selector_matches(sel, &it["metadata"]["labels"]) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => return status(400, "BadRequest", &e, Value::Null),
            }
        }
        if let Some(sel) = qget(q, "fieldSelector") {
            let mut keep = true;
            for term in sel.split(',').filter(|t| !t.is_empty()) {
                let Some((k, v)) = term.split_once('=') else {
                    return status(
                        400,
                        "BadRequest",
                        &format!("invalid selector: '{sel}'; can't understand '{term}'"),
                        Value::Null,
                    );
                };
                let k = k.trim_end_matches('=');
                let got = match k {
                    "metadata.name" => it["metadata"]["name"].clone(),
                    "metadata.namespace" => it["metadata"]["namespace"].clone(),
                    "status.phase" if resource == "pods" => it["status"]["phase"].clone(),
                    "spec.nodeName" if resource == "pods" => it["spec"]["nodeName"].clone(),
                    f if resource == "events" && f.starts_with("involvedObject.") => {
                        it["involvedObject"][&f["involvedObject.".len()..]].clone()
                    }
                    "reason" | "type" if resource == "events" => it[k].clone(),
                    _ => {
                        return status(
                            400,
                            "BadRequest",
                            &format!("field label not supported: {k}"),
                            Value::Null,
                        )
                    }
                };
                keep &= got.as_str() == Some(v);
            }
            if !keep {
                continue;
            }
        }
        out.push(it);
    }
    let api = api_of(resource);
    let kind = match resource {
        "jobs" => "JobList",
        "leases" => "LeaseList",
        "pods" => "PodList",
        "secrets" => "SecretList",
        _ => "EventList",
    };
    let v = json!({"apiVersion": api, "kind": kind, "metadata": {"resourceVersion": st.rv.to_string()}, "items": out});
    checked(contract, &format!("{api}/{kind}"), v, 200)
}

/// Answers `v` after checking it against the contract: a non-conforming answer is a simulator
/// bug, answered as HTTP 500.
fn checked(contract: &Contract, kind: &str, v: Value, code: u16) -> Response {
    let bad = contract.check(kind, &v);
    if bad.is_empty() {
        answer(code, &v)
    } else {
        status(
            500,
            "InternalError",
            &format!("simulator answer does not conform to {kind}: {}", bad[0]),
            Value::Null,
        )
    }
}

fn decode_error(kind: &str, bad: &[Violation]) -> Option<Response> {
    let first = bad.iter().find(|v| !matches!(v, Violation::Required(_)))?;
    let why = match first {
        Violation::UnknownField(p) => format!("strict decoding error: unknown field \"{p}\""),
        other => format!("{other}"),
    };
    Some(status(
        400,
        "BadRequest",
        &format!("{kind} in version \"v1\" cannot be handled as a {kind}: {why}"),
        Value::Null,
    ))
}

fn invalid(
    kind: &str,
    name: &str,
    resource: &str,
    causes: Vec<(String, String, String)>,
) -> Response {
    let msg = causes
        .iter()
        .map(|(_, f, m)| format!("{f}: {m}"))
        .collect::<Vec<_>>()
        .join(", ");
    let group = group_of(resource);
    let causes: Vec<Value> = causes
        .into_iter()
        .map(|(r, f, m)| json!({"reason": r, "message": m, "field": f}))
        .collect();
    status(
        422,
        "Invalid",
        &format!(
            "{kind}.{} \"{name}\" is invalid: [{msg}]",
            if group.is_empty() { "core" } else { group }
        )
        .replace(".core", ""),
        json!({"name": name, "group": group, "kind": kind, "causes": causes}),
    )
}

fn dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !p.starts_with('-')
                && !p.ends_with('-')
        })
}

fn create(
    st: &mut State,
    contract: &Contract,
    ns: &str,
    resource: &'static str,
    q: &[(String, String)],
    body: &[u8],
) -> Response {
    let kind = kind_of(resource);
    if resource == "pods" || resource == "events" {
        return status(
            405,
            "MethodNotAllowed",
            &format!("{resource} are created by the simulated cluster itself"),
            Value::Null,
        );
    }
    if let Some(fv) = qget(q, "fieldValidation") {
        if !matches!(fv, "Strict" | "Warn" | "Ignore") {
            return status(
                400,
                "BadRequest",
                &format!("fieldValidation must be one of Strict, Warn, Ignore: {fv}"),
                Value::Null,
            );
        }
    }
    let mut obj: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return status(
                400,
                "BadRequest",
                &format!("the object provided is unrecognized: {e}"),
                Value::Null,
            )
        }
    };
    let api = api_of(resource);
    if obj["kind"] != kind || obj["apiVersion"] != api {
        return status(
            400,
            "BadRequest",
            &format!(
                "the API version in the data ({}) does not match the expected API version ({api})",
                obj["apiVersion"].as_str().unwrap_or("")
            ),
            Value::Null,
        );
    }
    let bad = contract.check(&format!("{api}/{kind}"), &obj);
    if let Some(r) = decode_error(kind, &bad) {
        return r;
    }
    let name = match (
        obj["metadata"]["name"].as_str(),
        obj["metadata"]["generateName"].as_str(),
    ) {
        (Some(n), _) => n.to_string(),
        (None, Some(g)) => format!("{g}{}", &crate::util::random_hex(5)[..5]),
        (None, None) => {
            return invalid(
                kind,
                "",
                resource,
                vec![(
                    "FieldValueRequired".into(),
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            )
        }
    };
    let mut causes: Vec<(String, String, String)> = bad
        .iter()
        .map(|v| {
            (
                "FieldValueRequired".into(),
                v.path().to_string(),
                "Required value".into(),
            )
        })
        .collect();
    if !dns1123_subdomain(&name) {
        causes.push(("FieldValueInvalid".into(), "metadata.name".into(), format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")));
    }
    if let Some(n) = obj["metadata"]["namespace"].as_str() {
        if n != ns {
            return status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request", Value::Null);
        }
    }
    obj["metadata"]["name"] = json!(name);
    if resource == "jobs" {
        let spec = &obj["spec"]["template"]["spec"];
        match spec["restartPolicy"].as_str() {
            Some("Never" | "OnFailure") => {}
            other => causes.push((
                "FieldValueNotSupported".into(),
                "spec.template.spec.restartPolicy".into(),
                format!(
                    "Unsupported value: \"{}\": supported values: \"OnFailure\", \"Never\"",
                    other.unwrap_or("Always")
                ),
            )),
        }
        if spec["containers"].as_array().is_none_or(|c| c.is_empty()) {
            causes.push((
                "FieldValueRequired".into(),
                "spec.template.spec.containers".into(),
                "Required value".into(),
            ));
        }
        for (i, c) in spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for w in ["limits", "requests"] {
                for (r, qv) in c["resources"][w].as_object().into_iter().flatten() {
                    if parse_quantity(qv).is_none() {
                        return status(400, "BadRequest", &format!("Job in version \"v1\" cannot be handled as a Job: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (spec.template.spec.containers[{i}].resources.{w}.{r})"), Value::Null);
                    }
                }
            }
            if c["image"].as_str().is_none_or(str::is_empty) {
                causes.push((
                    "FieldValueRequired".into(),
                    format!("spec.template.spec.containers[{i}].image"),
                    "Required value".into(),
                ));
            }
        }
        for f in [
            "activeDeadlineSeconds",
            "ttlSecondsAfterFinished",
            "backoffLimit",
        ] {
            if obj["spec"][f]
                .as_i64()
                .is_some_and(|n| n < 0 || (f == "activeDeadlineSeconds" && n == 0))
            {
                causes.push((
                    "FieldValueInvalid".into(),
                    format!("spec.{f}"),
                    format!(
                        "Invalid value: {}: must be greater than{} 0",
                        obj["spec"][f],
                        if f == "activeDeadlineSeconds" {
                            ""
                        } else {
                            " or equal to"
                        }
                    ),
                ));
            }
        }
    }
    if resource == "leases" {
        causes.extend(lease_causes(&obj));
    }
    if resource == "secrets" {
        for (k, v) in obj["data"].as_object().into_iter().flatten() {
            use base64::Engine;
            if v.as_str()
                .is_none_or(|s| base64::engine::general_purpose::STANDARD.decode(s).is_err())
            {
                return status(400, "BadRequest", &format!("Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at data.{k}"), Value::Null);
            }
        }
    }
    if !causes.is_empty() {
        return invalid(kind, &name, resource, causes);
    }
    if st
        .objects
        .contains_key(&(resource, ns.to_string(), name.clone()))
    {
        return status(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", qualified(resource)),
            json!({"name": name, "group": group_of(resource), "kind": resource}),
        );
    }
    if qget(q, "dryRun") == Some("All") {
        return answer(201, &obj);
    }
    if resource == "secrets" {
        use base64::Engine;
        if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
            for (k, v) in sd.as_object().into_iter().flatten() {
                obj["data"][k] = json!(
                    base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""))
                );
            }
        }
        if obj.get("type").is_none() {
            obj["type"] = json!("Opaque");
        }
    }
    if resource == "jobs" {
        let uid = super::state::uuid();
        obj["metadata"]["generation"] = json!(1);
        let labels = json!({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
            "controller-uid": uid, "job-name": name});
        obj["spec"]["selector"] =
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        for (k, v) in labels.as_object().into_iter().flatten() {
            obj["spec"]["template"]["metadata"]["labels"][k] = v.clone();
        }
        for (k, d) in [
            ("backoffLimit", json!(6)),
            ("completions", json!(1)),
            ("parallelism", json!(1)),
            ("completionMode", json!("NonIndexed")),
            ("suspend", json!(false)),
            ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ] {
            if obj["spec"].get(k).is_none() {
                obj["spec"][k] = d;
            }
        }
        obj["status"] =
            json!({"active": 1, "ready": 0, "startTime": ts(), "uncountedTerminatedPods": {}});
        let mut stored = st.insert("jobs", ns, obj);
        // The uid the template labels carry is the Job's.
        let real = stored["metadata"]["uid"].clone();
        for k in ["batch.kubernetes.io/controller-uid", "controller-uid"] {
            stored["spec"]["template"]["metadata"]["labels"][k] = real.clone();
        }
        stored["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"] = real;
        st.objects
            .insert(("jobs", ns.to_string(), name.clone()), stored.clone());
        st.job_started
            .insert((ns.to_string(), name.clone()), Instant::now());
        st.create_pod_for(ns, &stored);
        return checked(contract, "batch/v1/Job", stored, 201);
    }
    let stored = st.insert(resource, ns, obj);
    checked(contract, &format!("{api}/{kind}"), stored, 201)
}

/// What the API server's Lease validation refuses in `spec` (`leaseDurationSeconds` must be
/// positive, `leaseTransitions` not negative).
fn lease_causes(obj: &Value) -> Vec<(String, String, String)> {
    let mut causes = Vec::new();
    for (f, min) in [("leaseDurationSeconds", 1), ("leaseTransitions", 0)] {
        if let Some(n) = obj["spec"][f].as_i64().filter(|n| *n < min) {
            causes.push((
                "FieldValueInvalid".into(),
                format!("spec.{f}"),
                format!(
                    "Invalid value: {n}: must be greater than{} 0",
                    if min == 0 { " or equal to" } else { "" }
                ),
            ));
        }
    }
    causes
}

/// `PUT` of a whole object (Leases only): strict decoding as for a creation, the name and
/// namespace must be the URL's, and a `metadata.resourceVersion` other than the stored one is
/// a 409 `Conflict` (optimistic concurrency; without one the update is unconditional, as the
/// Lease strategy allows). An object that does not exist is 404: updates do not create.
fn update(
    st: &mut State,
    contract: &Contract,
    ns: &str,
    resource: &'static str,
    name: &str,
    q: &[(String, String)],
    body: &[u8],
) -> Response {
    let kind = kind_of(resource);
    let api = api_of(resource);
    let mut obj: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return status(
                400,
                "BadRequest",
                &format!("the object provided is unrecognized: {e}"),
                Value::Null,
            )
        }
    };
    if obj["kind"] != kind || obj["apiVersion"] != api {
        return status(
            400,
            "BadRequest",
            &format!(
                "the API version in the data ({}) does not match the expected API version ({api})",
                obj["apiVersion"].as_str().unwrap_or("")
            ),
            Value::Null,
        );
    }
    let bad = contract.check(&format!("{api}/{kind}"), &obj);
    if let Some(r) = decode_error(kind, &bad) {
        return r;
    }
    let body_name = obj["metadata"]["name"].as_str().unwrap_or("");
    if body_name != name {
        return status(
            400,
            "BadRequest",
            &format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            ),
            Value::Null,
        );
    }
    if let Some(n) = obj["metadata"]["namespace"].as_str() {
        if n != ns {
            return status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request", Value::Null);
        }
    }
    let mut causes: Vec<(String, String, String)> = bad
        .iter()
        .map(|v| {
            (
                "FieldValueRequired".into(),
                v.path().to_string(),
                "Required value".into(),
            )
        })
        .collect();
    if resource == "leases" {
        causes.extend(lease_causes(&obj));
    }
    if !causes.is_empty() {
        return invalid(kind, name, resource, causes);
    }
    let key = (resource, ns.to_string(), name.to_string());
    let Some(stored) = st.objects.get(&key).cloned() else {
        return not_found(resource, name);
    };
    let stale = obj["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
        .is_some_and(|rv| stored["metadata"]["resourceVersion"] != rv);
    if stale {
        return status(
            409,
            "Conflict",
            &format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", qualified(resource)),
            json!({"name": name, "group": group_of(resource), "kind": resource}),
        );
    }
    for k in ["uid", "creationTimestamp"] {
        obj["metadata"][k] = stored["metadata"][k].clone();
    }
    obj["metadata"]["namespace"] = json!(ns);
    if qget(q, "dryRun") == Some("All") {
        return checked(contract, &format!("{api}/{kind}"), obj, 200);
    }
    obj["metadata"]["resourceVersion"] = json!(st.next_rv());
    st.objects.insert(key, obj.clone());
    checked(contract, &format!("{api}/{kind}"), obj, 200)
}

fn delete(
    st: &mut State,
    contract: &Contract,
    ns: &str,
    resource: &'static str,
    name: &str,
    q: &[(String, String)],
    body: &[u8],
) -> Response {
    let mut policy = qget(q, "propagationPolicy").map(String::from);
    if !body.is_empty() {
        let opts: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return status(
                    400,
                    "BadRequest",
                    &format!("the object provided is unrecognized: {e}"),
                    Value::Null,
                )
            }
        };
        if let Some(r) = decode_error("DeleteOptions", &contract.check("v1/DeleteOptions", &opts)) {
            return r;
        }
        if let Some(p) = opts["propagationPolicy"].as_str() {
            policy = Some(p.to_string());
        }
    }
    if let Some(p) = &policy {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return status(
                400,
                "BadRequest",
                &format!("propagationPolicy: Unsupported value: \"{p}\""),
                Value::Null,
            );
        }
    }
    let Some(obj) = st
        .objects
        .get(&(resource, ns.to_string(), name.to_string()))
        .cloned()
    else {
        return not_found(resource, name);
    };
    if resource == "jobs" {
        st.delete_job(ns, name, policy.as_deref().unwrap_or("Orphan"));
    } else {
        st.objects
            .remove(&(resource, ns.to_string(), name.to_string()));
        st.pending.remove(&(ns.to_string(), name.to_string()));
        st.collect_garbage();
    }
    answer(
        200,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": group_of(resource), "kind": resource, "uid": obj["metadata"]["uid"]}}),
    )
}

/// An answer body that fails at once: the client sees the connection cut after the request was
/// carried out.
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
