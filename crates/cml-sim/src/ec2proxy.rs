//! A proxy in front of an EC2 endpoint (moto in the tests) that refuses spot launches for
//! capacity, as EC2 does when a zone has no spot capacity: `RunInstances` with
//! `InstanceMarketOptions.MarketType=spot` outside the zones given as having capacity gets
//! EC2's `InsufficientInstanceCapacity` error code. Everything else is passed through. (EC2
//! sends that code with a server-error status, which SDKs retry a few times; the proxy sends
//! it as a client error so tests spend no time in retries: the code is what callers act on.)

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

struct State {
    upstream: String,
    /// Zones where spot launches succeed; `None` in the list = a launch without a zone.
    spot_zones: Vec<String>,
    http: reqwest::Client,
    /// The zones (or `-` for none) of refused spot launches, in order.
    refused: Mutex<Vec<String>>,
}

/// A running proxy. Dropping it stops it.
pub struct Ec2FaultProxy {
    url: String,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ec2FaultProxy {
    /// Proxies to `upstream`; spot launches succeed only in `spot_zones`.
    pub fn start(upstream: &str, spot_zones: &[&str]) -> std::io::Result<Ec2FaultProxy> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            spot_zones: spot_zones.iter().map(|s| s.to_string()).collect(),
            http,
            refused: Mutex::new(Vec::new()),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("cml-sim-ec2proxy".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = axum::Router::new().fallback(handle).with_state(st);
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = rx => {}
                    }
                });
            })?;
        Ok(Ec2FaultProxy {
            url,
            state,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The zones of the spot launches refused so far (`-`: no zone given).
    pub fn refused(&self) -> Vec<String> {
        self.state
            .refused
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

impl Drop for Ec2FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn form_value(body: &str, key: &str) -> Option<String> {
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (crate::util::percent_decode(k) == key).then(|| crate::util::percent_decode(v))
    })
}

async fn handle(
    axum::extract::State(st): axum::extract::State<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body);
    if form_value(&text, "Action").as_deref() == Some("RunInstances")
        && form_value(&text, "InstanceMarketOptions.MarketType").as_deref() == Some("spot")
    {
        let zone = form_value(&text, "Placement.AvailabilityZone");
        if !zone.as_ref().is_some_and(|z| st.spot_zones.contains(z)) {
            if let Ok(mut r) = st.refused.lock() {
                r.push(zone.clone().unwrap_or_else(|| "-".into()));
            }
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>We currently do not have sufficient spot capacity in the Availability Zone you requested ({}).</Message></Error></Errors><RequestID>sim-capacity</RequestID></Response>",
                zone.as_deref().unwrap_or("any")
            );
            let mut resp = Response::new(Body::from(xml));
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            return resp;
        }
    }
    let url = format!(
        "{}{}",
        st.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut req = st.http.request(method, &url).body(body);
    for (k, v) in headers.iter() {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Ok(up) => {
            let status = up.status();
            let hs = up.headers().clone();
            let bytes = up.bytes().await.unwrap_or_default();
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            for (k, v) in hs.iter() {
                if k != "content-length" && k != "transfer-encoding" {
                    resp.headers_mut().append(k, v.clone());
                }
            }
            resp
        }
        Err(e) => {
            let mut resp = Response::new(Body::from(e.to_string()));
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            resp
        }
    }
}
