//! A simulated EC2 instance metadata service (IMDSv2), for the machine side of cloud
//! runners: a session token from `PUT /latest/api/token`, then metadata answered only to
//! requests that carry it in `x-aws-ec2-metadata-token`, as on EC2.
//!
//! Point an AWS SDK at it with `AWS_EC2_METADATA_SERVICE_ENDPOINT=<url>`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

#[derive(Default)]
struct Imds {
    instance_id: String,
    region: String,
    tokens: Vec<String>,
    /// Metadata reads answered (tests check that IMDSv2 was used).
    reads: usize,
    /// `spot/instance-action` once a spot interruption notice is given.
    spot_action: Option<String>,
    /// `events/recommendations/rebalance` once a rebalance recommendation is given.
    rebalance: Option<String>,
    /// `user-data`, once set (404 before, as on an instance launched without).
    user_data: Option<String>,
}

type Shared = Arc<Mutex<Imds>>;

/// A running metadata service. Dropping it stops it.
pub struct ImdsServer {
    url: String,
    state: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ImdsServer {
    /// Serves the metadata of instance `instance_id` in `region` on 127.0.0.1.
    pub fn start(instance_id: &str, region: &str) -> std::io::Result<ImdsServer> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        ImdsServer::start_on(listener, instance_id, region)
    }

    /// Serves the metadata of instance `instance_id` in `region` on `listener` (one bound to
    /// the real address 169.254.169.254:80 in a test's network namespace, for example).
    pub fn start_on(
        listener: std::net::TcpListener,
        instance_id: &str,
        region: &str,
    ) -> std::io::Result<ImdsServer> {
        listener.set_nonblocking(true)?;
        let url = match listener.local_addr()? {
            SocketAddr::V4(a) if a.port() == 80 => format!("http://{}", a.ip()),
            a => format!("http://{a}"),
        };
        let state: Shared = Arc::new(Mutex::new(Imds {
            instance_id: instance_id.to_string(),
            region: region.to_string(),
            ..Imds::default()
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("cml-sim-imds".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = axum::Router::new()
                        .route("/latest/api/token", put(token))
                        .route("/latest/meta-data/instance-id", get(instance_id_route))
                        .route("/latest/meta-data/placement/region", get(region_route))
                        .route("/latest/meta-data/spot/instance-action", get(spot_route))
                        .route(
                            "/latest/meta-data/events/recommendations/rebalance",
                            get(rebalance_route),
                        )
                        .route("/latest/user-data", get(user_data_route))
                        .with_state(st);
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = rx => {}
                    }
                });
            })?;
        Ok(ImdsServer {
            url,
            state,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Gives a spot interruption notice: `spot/instance-action` answers
    /// `{"action":"terminate","time":...}` from now on (404 before, as on EC2).
    pub fn interrupt_spot(&self) {
        let time = crate::util::rfc3339(
            std::time::SystemTime::now() + std::time::Duration::from_secs(120),
        );
        if let Ok(mut s) = self.state.lock() {
            s.spot_action = Some(format!(r#"{{"action":"terminate","time":"{time}"}}"#));
        }
    }

    /// Gives a rebalance recommendation (`events/recommendations/rebalance`).
    pub fn recommend_rebalance(&self) {
        let time = crate::util::rfc3339(std::time::SystemTime::now());
        if let Ok(mut s) = self.state.lock() {
            s.rebalance = Some(format!(r#"{{"noticeTime":"{time}"}}"#));
        }
    }

    /// Serves `text` as the instance's user-data (`/latest/user-data`).
    pub fn set_user_data(&self, text: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.user_data = Some(text.to_string());
        }
    }

    /// How many metadata reads were answered (with a valid session token).
    pub fn reads(&self) -> usize {
        self.state.lock().map(|s| s.reads).unwrap_or(0)
    }
}

impl Drop for ImdsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn token(
    State(st): State<Shared>,
    headers: HeaderMap,
) -> (StatusCode, [(&'static str, String); 1], String) {
    let Some(ttl) = headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return (
            StatusCode::BAD_REQUEST,
            [("x-aws-ec2-metadata-token-ttl-seconds", "0".into())],
            String::new(),
        );
    };
    let t = format!("imds-{}", crate::util::random_hex(16));
    if let Ok(mut s) = st.lock() {
        s.tokens.push(t.clone());
    }
    (
        StatusCode::OK,
        [("x-aws-ec2-metadata-token-ttl-seconds", ttl)],
        t,
    )
}

fn read(st: &Shared, headers: &HeaderMap, field: impl Fn(&Imds) -> String) -> (StatusCode, String) {
    let Ok(mut s) = st.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
    };
    let ok = headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| s.tokens.iter().any(|x| x == t));
    if !ok {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    s.reads += 1;
    (StatusCode::OK, field(&s))
}

async fn instance_id_route(State(st): State<Shared>, headers: HeaderMap) -> (StatusCode, String) {
    read(&st, &headers, |s| s.instance_id.clone())
}

async fn region_route(State(st): State<Shared>, headers: HeaderMap) -> (StatusCode, String) {
    read(&st, &headers, |s| s.region.clone())
}

async fn spot_route(State(st): State<Shared>, headers: HeaderMap) -> (StatusCode, String) {
    optional(&st, &headers, |s| s.spot_action.clone())
}

async fn user_data_route(State(st): State<Shared>, headers: HeaderMap) -> (StatusCode, String) {
    optional(&st, &headers, |s| s.user_data.clone())
}

async fn rebalance_route(State(st): State<Shared>, headers: HeaderMap) -> (StatusCode, String) {
    optional(&st, &headers, |s| s.rebalance.clone())
}

/// A metadata item that exists only after an event: 404 until then, as on EC2.
fn optional(
    st: &Shared,
    headers: &HeaderMap,
    field: impl Fn(&Imds) -> Option<String>,
) -> (StatusCode, String) {
    let (status, body) = read(st, headers, |s| field(s).unwrap_or_default());
    if status == StatusCode::OK && body.is_empty() {
        return (StatusCode::NOT_FOUND, String::new());
    }
    (status, body)
}
