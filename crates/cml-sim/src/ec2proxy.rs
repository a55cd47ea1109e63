//! A proxy in front of an EC2 endpoint (moto in the tests) that plays EC2's failures:
//!
//! - it refuses spot launches for capacity, as EC2 does when a zone has no spot capacity:
//!   `RunInstances` with `InstanceMarketOptions.MarketType=spot` outside the zones given as
//!   having capacity gets EC2's `InsufficientInstanceCapacity` error code. (EC2 sends that
//!   code with a server-error status, which SDKs retry a few times; the proxy sends it as a
//!   client error so tests spend no time in retries: the code is what callers act on.)
//! - [`Ec2FaultProxy::inject`] adds a [`Fault`] for one action: an answer lost after the
//!   request was carried out (the connection is cut), an answer delayed, a request that is
//!   never answered (a hung endpoint), or an error code instead of the answer.
//!
//! Everything else is passed through. Every request is logged with its arrival time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

/// What the proxy does to a request matching an injected rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forwards the request (EC2 carries it out), then cuts the connection instead of
    /// answering: the caller never learns what was done.
    DropAnswer,
    /// Forwards the request, then answers only after this long.
    DelayAnswer(Duration),
    /// Never forwards nor answers: a hung endpoint.
    Hang,
    /// Answers this EC2 error code with HTTP 400 instead of forwarding.
    Error(String),
}

struct Rule {
    action: String,
    /// Applies only to requests whose decoded form contains this text.
    matching: Option<String>,
    fault: Fault,
    /// How many more requests it applies to (`None`: all).
    left: Option<usize>,
}

/// One request that reached the proxy.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub action: String,
    /// The fault applied to it, if any.
    pub fault: Option<Fault>,
}

struct State {
    upstream: String,
    /// Zones where spot launches succeed; `None` in the list = a launch without a zone.
    spot_zones: Vec<String>,
    http: reqwest::Client,
    /// The zones (or `-` for none) of refused spot launches, in order.
    refused: Mutex<Vec<String>>,
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
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
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
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

    /// Applies `fault` to the next `times` requests (all, with `None`) of `action` (an EC2
    /// action name such as `RunInstances`) whose decoded form contains `matching`, if given.
    /// Rules are tried in the order injected; the first that applies is used.
    pub fn inject(&self, action: &str, matching: Option<&str>, fault: Fault, times: Option<usize>) {
        if let Ok(mut rules) = self.state.rules.lock() {
            rules.push(Rule {
                action: action.to_string(),
                matching: matching.map(String::from),
                fault,
                left: times,
            });
        }
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        if let Ok(mut rules) = self.state.rules.lock() {
            rules.clear();
        }
    }

    /// Every request so far, in order of arrival.
    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The arrival times of the requests of `action` so far.
    pub fn arrivals(&self, action: &str) -> Vec<Instant> {
        self.seen()
            .into_iter()
            .filter(|s| s.action == action)
            .map(|s| s.at)
            .collect()
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
    let action = form_value(&text, "Action").unwrap_or_default();
    let fault = st.rules.lock().ok().and_then(|mut rules| {
        let decoded = crate::util::percent_decode(&text);
        let rule = rules.iter_mut().find(|r| {
            r.action == action
                && r.left != Some(0)
                && r.matching
                    .as_ref()
                    .is_none_or(|m| decoded.contains(m.as_str()))
        })?;
        if let Some(n) = rule.left.as_mut() {
            *n -= 1;
        }
        Some(rule.fault.clone())
    });
    if let Ok(mut seen) = st.seen.lock() {
        seen.push(Seen {
            at: Instant::now(),
            action: action.clone(),
            fault: fault.clone(),
        });
    }
    match &fault {
        Some(Fault::Hang) => std::future::pending::<()>().await,
        Some(Fault::Error(code)) => {
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>Injected by the test proxy for {action}.</Message></Error></Errors><RequestID>sim-fault</RequestID></Response>"
            );
            let mut resp = Response::new(Body::from(xml));
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            return resp;
        }
        _ => {}
    }
    if action == "RunInstances"
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
    let answer = req.send().await;
    match &fault {
        Some(Fault::DelayAnswer(d)) => tokio::time::sleep(*d).await,
        // The request was carried out; the answer is lost with the connection.
        Some(Fault::DropAnswer) => return Response::new(Body::new(CutConnection)),
        _ => {}
    }
    match answer {
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
            "answer dropped by the test proxy",
        ))))
    }
}
