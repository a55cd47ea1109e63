//! The Azure Instance Metadata Service of one VM (what `169.254.169.254` serves inside it), on
//! its own 127.0.0.1 listener.
//!
//! Every request needs the header `Metadata: true` (else 400 `{"error": "Bad request. Required
//! metadata header not specified"}`) and an `api-version` query parameter. Served:
//! - `GET /metadata/instance` — `{"compute": {name, resourceGroupName, subscriptionId,
//!   location, vmId, vmSize, zone, priority, osType, resourceId, tags, tagsList}, "network"}`;
//! - `GET /metadata/identity/oauth2/token?resource=https://management.azure.com/` — a token of
//!   the VM's system-assigned identity, which the simulated Resource Manager accepts with the
//!   roles assigned to that identity (400 `invalid_request` "Identity not found" without one);
//! - `GET /metadata/scheduledevents` — `{DocumentIncarnation, Events: [...]}` (a `Preempt`
//!   event after [`super::AzureSim::evict`]); `POST` with `{"StartRequests": [{"EventId"}]}`
//!   acknowledges events (they leave the list).
//!
//! It keeps answering after its VM is deleted (with what it knew last).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::api::json_response;
use super::contract::parse_query;
use super::state::VM;
use super::Shared;

/// What the service last knew of its VM: `compute`, the identity's principal, the events.
type Known = (Value, Option<String>, Value);

#[derive(Clone)]
struct Ctx {
    sh: Arc<Shared>,
    rg: String,
    name: String,
    last: Arc<std::sync::Mutex<Option<Known>>>,
}

/// A running metadata service of one VM. Dropping it stops it.
pub struct AzureImds {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AzureImds {
    pub(crate) fn start(sh: Arc<Shared>, rg: &str, name: &str) -> std::io::Result<AzureImds> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let ctx = Ctx {
            sh,
            rg: rg.into(),
            name: name.into(),
            last: Arc::default(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("cml-sim-azure-imds".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = axum::Router::new().fallback(serve).with_state(ctx);
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = rx => {}
                    }
                });
            })?;
        Ok(AzureImds {
            url,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (stands for `http://169.254.169.254`).
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

impl Drop for AzureImds {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bad(text: &str) -> Response {
    json_response(400, &json!({ "error": text }))
}

async fn serve(
    axum::extract::State(ctx): axum::extract::State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return bad("Bad request. Required metadata header not specified");
    }
    let q = parse_query(uri.query().unwrap_or(""));
    let qv = |k: &str| q.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    if qv("api-version").is_none() {
        return bad("Bad request. api-version was not specified in the request. For more information refer to aka.ms/azureimds");
    }
    // What the VM looks like now, or last.
    let (compute, principal, events) = {
        let mut st = ctx.sh.lock();
        st.advance(std::time::Instant::now());
        let now = st.find(&ctx.rg, VM, &ctx.name).map(|r| {
            let vm = r.vm.as_ref().expect("a VM has its machine");
            let tags = r.body["tags"].as_object().cloned().unwrap_or_default();
            let tags_list: Vec<Value> = tags
                .iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect();
            let tags_str: Vec<String> = tags
                .iter()
                .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or_default()))
                .collect();
            let compute = json!({
                "name": r.name,
                "resourceGroupName": r.rg,
                "subscriptionId": st.cfg.subscription,
                "location": r.location,
                "vmId": vm.vm_id,
                "vmSize": vm.size,
                "zone": vm.zone.clone().unwrap_or_default(),
                "priority": if vm.spot { "Spot" } else { "" },
                "osType": "Linux",
                "resourceId": st.resource_id(&r.rg, VM, &r.name),
                "tags": tags_str.join(";"),
                "tagsList": tags_list,
            });
            let events = json!({"DocumentIncarnation": vm.incarnation, "Events": vm.events});
            (compute, vm.principal_id.clone(), events)
        });
        let mut last = ctx.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = now {
            *last = Some(n);
        }
        match last.clone() {
            Some(x) => x,
            None => return json_response(404, &json!({"error": "Not found"})),
        }
    };
    match (method.as_str(), uri.path()) {
        ("GET", "/metadata/instance") | ("GET", "/metadata/instance/") => json_response(
            200,
            &json!({"compute": compute, "network": {"interface": [{"ipv4": {"ipAddress": [{"privateIpAddress": "10.0.0.4", "publicIpAddress": ""}]}}]}}),
        ),
        ("GET", "/metadata/identity/oauth2/token") => {
            let Some(p) = principal else {
                return json_response(
                    400,
                    &json!({"error": "invalid_request", "error_description": "Identity not found"}),
                );
            };
            let resource = qv("resource").unwrap_or_default();
            if resource.trim_end_matches('/') != "https://management.azure.com" {
                return json_response(
                    400,
                    &json!({"error": "invalid_resource", "error_description": format!("AADSTS500011: The resource principal named {resource} was not found in the tenant.")}),
                );
            }
            let mut st = ctx.sh.lock();
            let token = st.issue_token(&p);
            let ttl = st.cfg.token_ttl.as_secs();
            let now = crate::util::unix_secs(std::time::SystemTime::now());
            json_response(
                200,
                &json!({
                    "access_token": token,
                    "client_id": super::state::stable_guid(&p),
                    "expires_in": ttl.to_string(),
                    "expires_on": (now + ttl).to_string(),
                    "ext_expires_in": ttl.to_string(),
                    "not_before": now.to_string(),
                    "resource": resource,
                    "token_type": "Bearer",
                }),
            )
        }
        ("GET", "/metadata/scheduledevents") => json_response(200, &events),
        ("POST", "/metadata/scheduledevents") => {
            let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let ids: Vec<String> = req["StartRequests"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x["EventId"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let mut st = ctx.sh.lock();
            if let Some(vm) = st
                .find_mut(&ctx.rg, VM, &ctx.name)
                .and_then(|r| r.vm.as_mut())
            {
                vm.events.retain(|e| {
                    !ids.iter()
                        .any(|i| Some(i.as_str()) == e["EventId"].as_str())
                });
                vm.incarnation += 1;
            }
            json_response(200, &json!({}))
        }
        _ => json_response(404, &json!({"error": "Not found"})),
    }
}
