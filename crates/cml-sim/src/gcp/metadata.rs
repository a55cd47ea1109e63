//! The metadata server of one simulated instance, as a machine sees
//! `http://metadata.google.internal/computeMetadata/v1/` (point Google's libraries at it with
//! `GCE_METADATA_HOST=127.0.0.1:PORT`).
//!
//! Like Compute Engine's: every request must carry `Metadata-Flavor: Google` and no
//! `X-Forwarded-For` (else 403); answers carry `Metadata-Flavor: Google` and an `ETag`;
//! `?wait_for_change=true` (with `last_etag=` and `timeout_sec=`) holds the answer until the
//! value changes. Served: `instance/{id,name,hostname,zone,machine-type,preempted}`,
//! `instance/attributes/` (keys; `?recursive=true`: JSON) and `instance/attributes/KEY`,
//! `instance/service-accounts/` and `.../{default|EMAIL}/{email,scopes,token}`,
//! `instance/network-interfaces/0/ip`, `.../0/access-configs/0/external-ip`,
//! `project/project-id`, `project/numeric-project-id`. The token is an access token of the
//! instance's service account with the instance's scopes, accepted by the simulated API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::state::Token;
use super::Shared;

/// A running metadata server. Dropping it stops it.
pub struct GcpMetadataServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Ctx {
    shared: Arc<Shared>,
    instance: u64,
}

impl GcpMetadataServer {
    pub(crate) fn start(shared: Arc<Shared>, instance: u64) -> std::io::Result<GcpMetadataServer> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let ctx = Arc::new(Ctx { shared, instance });
        let thread = std::thread::Builder::new()
            .name("cml-sim-gcp-metadata".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = axum::Router::new().fallback(handle).with_state(ctx);
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = rx => {}
                    }
                });
            })?;
        Ok(GcpMetadataServer {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (the server's `http://metadata.google.internal`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`, the value for `GCE_METADATA_HOST`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for GcpMetadataServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(status: u16, content_type: &str, body: String, etag: Option<String>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert("metadata-flavor", "Google".parse().expect("static header"));
    if let Ok(v) = content_type.parse() {
        h.insert("content-type", v);
    }
    if let Some(e) = etag.and_then(|e| e.parse().ok()) {
        h.insert("etag", e);
    }
    r
}

fn not_found(path: &str) -> Response {
    let mut r = super::api::html(
        404,
        &format!("The requested URL <code>{path}</code> was not found on this server."),
    );
    r.headers_mut()
        .insert("metadata-flavor", "Google".parse().expect("static header"));
    r
}

fn etag(v: &str) -> String {
    hex::encode(&Sha256::digest(v.as_bytes())[..8])
}

async fn handle(
    axum::extract::State(ctx): axum::extract::State<Arc<Ctx>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_string();
    let flavor = headers
        .get("metadata-flavor")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "Google");
    if !flavor || headers.contains_key("x-forwarded-for") {
        let why = if flavor {
            "Requests with X-Forwarded-For are refused."
        } else {
            "Missing Metadata-Flavor:Google header."
        };
        return super::api::html(
            403,
            &format!("Your client does not have permission to get URL <code>{path}</code> from this server. {why}"),
        );
    }
    let Some(rest) = path.strip_prefix("/computeMetadata/v1/") else {
        return not_found(&path);
    };
    let query = super::contract::parse_query(uri.query().unwrap_or(""));
    let q = |k: &str| query.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    let recursive = q("recursive").as_deref() == Some("true");
    let Some(first) = value(&ctx, rest, recursive) else {
        return not_found(&path);
    };
    if q("wait_for_change").as_deref() != Some("true") {
        let (ct, body) = first;
        return answer(200, ct, body.clone(), Some(etag(&body)));
    }
    let baseline = q("last_etag").unwrap_or_else(|| etag(&first.1));
    let timeout = q("timeout_sec")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(300)
        .min(3600);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let Some((ct, body)) = value(&ctx, rest, recursive) else {
            return not_found(&path);
        };
        let e = etag(&body);
        if e != baseline || Instant::now() >= deadline {
            return answer(200, ct, body, Some(e));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const TEXT: &str = "application/text";
const JSON: &str = "application/json";

/// The answer at `rest` (content type, body), or `None` for 404.
fn value(ctx: &Ctx, rest: &str, recursive: bool) -> Option<(&'static str, String)> {
    let st = &mut *ctx.shared.lock();
    st.advance(Instant::now());
    let num = st.cfg.project_number;
    let project = st.cfg.project.clone();
    let i = st.instance_by_id(ctx.instance)?.clone();
    let text = |s: String| Some((TEXT, s));
    match rest {
        "instance/id" => text(i.id.to_string()),
        "instance/name" => text(i.name.clone()),
        "instance/hostname" => text(format!("{}.{}.c.{project}.internal", i.name, i.zone)),
        "instance/zone" => text(format!("projects/{num}/zones/{}", i.zone)),
        "instance/machine-type" => {
            text(format!("projects/{num}/machineTypes/{}", i.machine_type()))
        }
        "instance/preempted" => text(if i.preempted { "TRUE" } else { "FALSE" }.into()),
        "instance/network-interfaces/0/ip" => text(i.network_ip().to_string()),
        "instance/network-interfaces/0/access-configs/0/external-ip" => {
            text(i.external_ip()?.to_string())
        }
        "project/project-id" => text(project),
        "project/numeric-project-id" => text(num.to_string()),
        "instance/attributes/" | "instance/attributes" => {
            let attrs = i.attributes();
            if recursive {
                let m: serde_json::Map<String, serde_json::Value> =
                    attrs.into_iter().map(|(k, v)| (k, json!(v))).collect();
                Some((JSON, serde_json::Value::Object(m).to_string()))
            } else {
                text(attrs.into_iter().map(|(k, _)| format!("{k}\n")).collect())
            }
        }
        _ => {
            if let Some(key) = rest.strip_prefix("instance/attributes/") {
                return i
                    .attributes()
                    .into_iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| (TEXT, v));
            }
            let (email, scopes) = i.service_account.clone()?;
            if rest == "instance/service-accounts/" || rest == "instance/service-accounts" {
                return text(format!("default/\n{email}/\n"));
            }
            let sa_rest = rest.strip_prefix("instance/service-accounts/")?;
            let (who, what) = sa_rest.split_once('/')?;
            if who != "default" && who != email {
                return None;
            }
            match what {
                "email" => text(email),
                "scopes" => text(scopes.iter().map(|s| format!("{s}\n")).collect()),
                "token" => {
                    let ttl = st.cfg.token_ttl;
                    let access = format!("ya29.c.{}", crate::util::random_hex(48));
                    st.tokens.insert(
                        access.clone(),
                        Token {
                            principal: email,
                            scopes,
                            expires: Instant::now() + ttl,
                        },
                    );
                    Some((
                        JSON,
                        json!({"access_token": access, "expires_in": ttl.as_secs().saturating_sub(1), "token_type": "Bearer"}).to_string(),
                    ))
                }
                _ => None,
            }
        }
    }
}
