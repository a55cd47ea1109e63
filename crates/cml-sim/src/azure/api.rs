//! HTTP front end of the simulated Resource Manager and Entra ID token endpoint: routes by the
//! contract, checks `api-version`, the bearer token, the role, and the body as ARM does,
//! applies injected faults, carries the request out and checks the answer.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::contract::{parse_query, Contract, Level, ProblemKind};
use super::errors::ArmError;
use super::state::{Filter, Reply, State, NIC, NSG, PIP, VM, VNET};
use super::{AzureFault, AzureRequest, Shared};

pub(crate) async fn entry(
    axum::extract::State(sh): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    if method == Method::POST && path.ends_with("/oauth2/v2.0/token") {
        let tenant = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        if let Some(f) = take_fault(&sh, "token") {
            if let Some(r) = early_fault(&f).await {
                return r;
            }
        }
        return super::oauth::token(&sh, &tenant, &body);
    }
    if method == Method::GET && path.starts_with("/_sim/bootdiagnostics/") {
        let q = parse_query(&query);
        let vm = q
            .iter()
            .find(|(k, _)| k == "vm")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        return match sh.lock().serial_log(&vm) {
            Some(text) => {
                let mut r = Response::new(Body::from(text));
                r.headers_mut()
                    .insert("content-type", "text/plain".parse().expect("static"));
                r
            }
            None => json_response(404, &json!({"error": "BlobNotFound"})),
        };
    }
    arm(&sh, &method, &path, &query, &headers, &body).await
}

pub(crate) fn json_response(status: u16, v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        "application/json; charset=utf-8"
            .parse()
            .expect("static header"),
    );
    r
}

fn reply_response(r: &Reply) -> Response {
    let mut resp = match &r.body {
        Some(v) => json_response(r.status, v),
        None => {
            let mut x = Response::new(Body::empty());
            *x.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
            x
        }
    };
    for (k, v) in &r.headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            axum::http::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp.headers_mut().insert(
        "x-ms-request-id",
        axum::http::HeaderValue::from_str(&super::state::stable_guid(&crate::util::random_hex(16)))
            .expect("hex"),
    );
    resp
}

fn take_fault(sh: &Shared, op: &str) -> Option<AzureFault> {
    let mut st = sh.lock();
    let rule = st
        .faults
        .iter_mut()
        .find(|r| r.op == op && r.left != Some(0))?;
    if let Some(n) = rule.left.as_mut() {
        *n -= 1;
    }
    Some(rule.fault.clone())
}

/// Faults answered before anything is carried out (hang, error).
async fn early_fault(f: &AzureFault) -> Option<Response> {
    match f {
        AzureFault::Hang => {
            std::future::pending::<()>().await;
            None
        }
        AzureFault::Error {
            status,
            code,
            message,
        } => Some(json_response(
            *status,
            &ArmError::new(*status, code, message.clone()).body(),
        )),
        _ => None,
    }
}

/// The ARM action a served operation needs (`Microsoft.Compute/virtualMachines/write`) and the
/// scope it is checked on.
fn action_of(st: &State, op: &str, p: &dyn Fn(&str) -> String) -> (String, String) {
    let rg_scope = || st.group_id(&p("resourceGroupName"));
    let res = |rtype: &str, key: &str| st.resource_id(&p("resourceGroupName"), rtype, &p(key));
    match op {
        "virtualMachines.createOrUpdate" => (format!("{VM}/write"), res(VM, "vmName")),
        "virtualMachines.get" | "virtualMachines.instanceView" => {
            (format!("{VM}/read"), res(VM, "vmName"))
        }
        "virtualMachines.delete" => (format!("{VM}/delete"), res(VM, "vmName")),
        "virtualMachines.retrieveBootDiagnosticsData" => (
            format!("{VM}/retrieveBootDiagnosticsData/action"),
            res(VM, "vmName"),
        ),
        "virtualNetworks.createOrUpdate" => {
            (format!("{VNET}/write"), res(VNET, "virtualNetworkName"))
        }
        "virtualNetworks.get" => (format!("{VNET}/read"), res(VNET, "virtualNetworkName")),
        "networkSecurityGroups.createOrUpdate" => {
            (format!("{NSG}/write"), res(NSG, "networkSecurityGroupName"))
        }
        "networkSecurityGroups.get" => {
            (format!("{NSG}/read"), res(NSG, "networkSecurityGroupName"))
        }
        "publicIPAddresses.createOrUpdate" => {
            (format!("{PIP}/write"), res(PIP, "publicIpAddressName"))
        }
        "publicIPAddresses.get" => (format!("{PIP}/read"), res(PIP, "publicIpAddressName")),
        "networkInterfaces.createOrUpdate" => {
            (format!("{NIC}/write"), res(NIC, "networkInterfaceName"))
        }
        "networkInterfaces.get" => (format!("{NIC}/read"), res(NIC, "networkInterfaceName")),
        "resourceGroups.createOrUpdate" => (
            "Microsoft.Resources/subscriptions/resourceGroups/write".into(),
            rg_scope(),
        ),
        "resourceGroups.get" | "resourceGroups.checkExistence" => (
            "Microsoft.Resources/subscriptions/resourceGroups/read".into(),
            rg_scope(),
        ),
        "resourceGroups.delete" => (
            "Microsoft.Resources/subscriptions/resourceGroups/delete".into(),
            rg_scope(),
        ),
        "resourceGroups.list" => (
            "Microsoft.Resources/subscriptions/resourceGroups/read".into(),
            st.sub_path(),
        ),
        "resources.list" => (
            "Microsoft.Resources/subscriptions/resources/read".into(),
            st.sub_path(),
        ),
        "roleAssignments.create" => (
            "Microsoft.Authorization/roleAssignments/write".into(),
            format!("/{}", p("scope").trim_start_matches('/')),
        ),
        _ => ("*/read".into(), st.sub_path()),
    }
}

/// The Newtonsoft-style detail ARM gives for a body it cannot read.
fn body_problem(contract: &Contract, op: &str, body: &Value) -> Option<ArmError> {
    let problems = contract.check_request(op, body, Level::Server);
    let p = problems.first()?;
    let short = p.model.rsplit('.').next().unwrap_or(&p.model);
    Some(match &p.kind {
        ProblemKind::UnknownField => {
            let member = p.path.rsplit('.').next().unwrap_or(&p.path);
            ArmError::invalid_content(&format!(
                "Could not find member '{member}' on object of type '{short}'. Path '{}', line 1, position 1.",
                p.path
            ))
        }
        ProblemKind::WrongType { expected } => ArmError::invalid_content(&format!(
            "Error converting value at path '{}': expected {expected}.",
            p.path
        )),
        ProblemKind::MissingRequired => {
            let member = p.path.rsplit('.').next().unwrap_or(&p.path);
            ArmError::invalid_parameter(
                format!("Required parameter '{member}' is missing (null)."),
                member,
            )
        }
        ProblemKind::ReadOnlyInRequest => return None,
    })
}

#[allow(clippy::too_many_arguments)]
fn record(
    sh: &Shared,
    op: &str,
    method: &Method,
    path: &str,
    query: &str,
    body: Option<Value>,
    principal: Option<String>,
    status: u16,
    fault: Option<AzureFault>,
) {
    sh.lock().requests.push(AzureRequest {
        at: Instant::now(),
        operation: op.into(),
        http_method: method.to_string(),
        path: path.into(),
        query: query.into(),
        body,
        principal,
        status,
        fault,
    });
}

async fn arm(
    sh: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Response {
    let contract = Contract::bundled();
    let q = parse_query(query);
    let qv = |k: &str| q.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    // Long-running operation status (not an SDK operation; polled by URL).
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let op_status = method == Method::GET
        && segs.len() == 8
        && segs[0].eq_ignore_ascii_case("subscriptions")
        && segs[2].eq_ignore_ascii_case("providers")
        && segs[4].eq_ignore_ascii_case("locations")
        && segs[6].eq_ignore_ascii_case("operations");
    let op_result = method == Method::GET
        && segs.len() == 4
        && segs[0].eq_ignore_ascii_case("subscriptions")
        && segs[2].eq_ignore_ascii_case("operationresults");
    let matched = contract.match_path(method.as_str(), path);
    let op_id = if op_status {
        "asyncOperation".to_string()
    } else if op_result {
        "operationResult".to_string()
    } else if let Some((op, _)) = &matched {
        op.id.clone()
    } else {
        let e = ArmError::new(
            404,
            "InvalidResourceType",
            format!("The resource type could not be found in the namespace for path '{path}'."),
        );
        record(sh, "", method, path, query, None, None, e.status, None);
        return json_response(e.status, &e.body());
    };
    let params: Vec<(String, String)> =
        matched.as_ref().map(|(_, p)| p.clone()).unwrap_or_default();
    let p = |k: &str| {
        params
            .iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let refuse = |e: ArmError, body: Option<Value>, principal: Option<String>| {
        record(
            sh, &op_id, method, path, query, body, principal, e.status, None,
        );
        json_response(e.status, &e.body())
    };
    // api-version first, as ARM checks it before anything else.
    let pinned = if op_status {
        let ns = segs[3];
        contract
            .api_version(if ns.eq_ignore_ascii_case("Microsoft.Compute") {
                "virtualMachines.get"
            } else {
                "networkInterfaces.get"
            })
            .to_string()
    } else if op_result {
        contract.api_version("resourceGroups.get").to_string()
    } else {
        matched
            .as_ref()
            .map(|(o, _)| o.api_version.clone())
            .unwrap_or_default()
    };
    match qv("api-version") {
        None => return refuse(ArmError::missing_api_version(), None, None),
        Some(v) if v != pinned => {
            let e =
                if op_id.starts_with("resourceGroups.") || op_id == "resources.list" || op_result {
                    ArmError::invalid_api_version(&v, &pinned)
                } else {
                    let rtype = path
                        .split("/providers/")
                        .last()
                        .and_then(|t| t.split('/').nth(1))
                        .unwrap_or("")
                        .to_string();
                    ArmError::no_registered_provider(&v, &rtype, "global", &pinned)
                };
            return refuse(e, None, None);
        }
        _ => {}
    }
    // Authentication.
    let principal = {
        let st = sh.lock();
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        match auth {
            None => Err(ArmError::missing_auth()),
            Some(a) => {
                let token = a.strip_prefix("Bearer ").unwrap_or("");
                match st.tokens.get(token) {
                    None => Err(ArmError::invalid_token()),
                    Some(t) if t.expires <= Instant::now() => Err(ArmError::expired_token()),
                    Some(t) => Ok(t.principal.clone()),
                }
            }
        }
    };
    let principal = match principal {
        Ok(p) => p,
        Err(e) => return refuse(e, None, None),
    };
    // Body.
    let takes_body = matched.as_ref().is_some_and(|(o, _)| o.request.is_some());
    let body: Option<Value> = if takes_body {
        match serde_json::from_slice::<Value>(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                return refuse(
                    ArmError::invalid_content(&format!("{e}")),
                    None,
                    Some(principal),
                )
            }
        }
    } else {
        None
    };
    if let Some(b) = &body {
        if let Some(e) = body_problem(contract, &op_id, b) {
            return refuse(e, body.clone(), Some(principal));
        }
    }
    // Role.
    if !op_status && !op_result {
        let st = sh.lock();
        let (action, scope) = action_of(&st, &op_id, &p);
        if let Err(e) = st.authorize(&principal, &action, &scope) {
            drop(st);
            return refuse(e, body, Some(principal));
        }
    }
    // Faults.
    let fault = take_fault(sh, &op_id);
    if let Some(f) = &fault {
        if matches!(f, AzureFault::Hang | AzureFault::Error { .. }) {
            let status = match f {
                AzureFault::Error { status, .. } => *status,
                _ => 0,
            };
            record(
                sh,
                &op_id,
                method,
                path,
                query,
                body.clone(),
                Some(principal.clone()),
                status,
                fault.clone(),
            );
            if let Some(r) = early_fault(f).await {
                return r;
            }
        }
    }
    let result = {
        let mut st = sh.lock();
        st.advance(Instant::now());
        let b = body.clone().unwrap_or(Value::Null);
        let rg = p("resourceGroupName");
        match op_id.as_str() {
            "asyncOperation" => st.operation_status(
                segs[3],
                segs[5],
                segs[7],
                qv("monitor").as_deref() == Some("true"),
            ),
            "operationResult" => st.operation_result(segs[3]),
            "resourceGroups.createOrUpdate" => st.put_group(&rg, &b),
            "resourceGroups.get" => st.get_group(&rg),
            "resourceGroups.checkExistence" => Ok(st.head_group(&rg)),
            "resourceGroups.delete" => st.delete_group(&rg),
            "resourceGroups.list" => {
                Filter::parse(&qv("$filter").unwrap_or_default()).map(|f| Reply {
                    status: 200,
                    headers: vec![],
                    body: Some(st.list_groups(&f)),
                })
            }
            "resources.list" => Filter::parse(&qv("$filter").unwrap_or_default()).map(|f| Reply {
                status: 200,
                headers: vec![],
                body: Some(st.list_resources(&f)),
            }),
            "virtualMachines.createOrUpdate" => st.put_vm(&rg, &p("vmName"), &b),
            "virtualMachines.get" => st.get_resource(&rg, VM, &p("vmName")),
            "virtualMachines.delete" => st.delete_vm(&rg, &p("vmName")),
            "virtualMachines.instanceView" => st.instance_view(&rg, &p("vmName")),
            "virtualMachines.retrieveBootDiagnosticsData" => st.boot_diagnostics(&rg, &p("vmName")),
            "virtualNetworks.createOrUpdate" => {
                st.put_network(&rg, VNET, &p("virtualNetworkName"), &b)
            }
            "virtualNetworks.get" => st.get_resource(&rg, VNET, &p("virtualNetworkName")),
            "networkSecurityGroups.createOrUpdate" => {
                st.put_network(&rg, NSG, &p("networkSecurityGroupName"), &b)
            }
            "networkSecurityGroups.get" => {
                st.get_resource(&rg, NSG, &p("networkSecurityGroupName"))
            }
            "publicIPAddresses.createOrUpdate" => {
                st.put_network(&rg, PIP, &p("publicIpAddressName"), &b)
            }
            "publicIPAddresses.get" => st.get_resource(&rg, PIP, &p("publicIpAddressName")),
            "networkInterfaces.createOrUpdate" => {
                st.put_network(&rg, NIC, &p("networkInterfaceName"), &b)
            }
            "networkInterfaces.get" => st.get_resource(&rg, NIC, &p("networkInterfaceName")),
            "roleAssignments.create" => {
                st.put_role_assignment(&p("scope"), &p("roleAssignmentName"), &b)
            }
            _ => Err(ArmError::new(
                500,
                "InternalServerError",
                format!("the simulator does not carry out {op_id}"),
            )),
        }
    };
    let reply = match result {
        Ok(r) => {
            // Answers are checked against the contract: an off-contract one is a simulator bug.
            let problems = match (&r.body, op_id.as_str()) {
                (Some(b), "asyncOperation") => {
                    contract.check_model("network.OperationStatusResult", b)
                }
                (Some(b), _) if r.status < 300 => contract.check_response(&op_id, b),
                _ => Vec::new(),
            };
            if problems.is_empty() {
                r
            } else {
                let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                let e = ArmError::new(500, "SimulatorContractViolation", format!("the simulator's answer to {op_id} does not conform to the Azure contract: {}", list.join("; ")));
                Reply {
                    status: 500,
                    headers: vec![],
                    body: Some(e.body()),
                }
            }
        }
        Err(e) => Reply {
            status: e.status,
            headers: vec![],
            body: Some(e.body()),
        },
    };
    if let Some(b) = &reply.body {
        if reply.status >= 400 {
            debug_assert!(contract.check_model("resource.CloudError", b).is_empty());
        }
    }
    record(
        sh,
        &op_id,
        method,
        path,
        query,
        body,
        Some(principal),
        reply.status,
        fault.clone(),
    );
    match fault {
        Some(AzureFault::DelayAnswer(d)) => tokio::time::sleep(d).await,
        // Carried out; the answer is lost with the connection.
        Some(AzureFault::DropAnswer) => return Response::new(Body::new(CutConnection)),
        _ => {}
    }
    reply_response(&reply)
}

/// A body that fails at once: hyper ends the connection without a complete answer.
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
