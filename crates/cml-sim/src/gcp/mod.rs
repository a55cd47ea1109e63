//! A simulated Google Compute Engine (REST API v1), its OAuth token endpoint and per-instance
//! metadata servers, all on 127.0.0.1.
//!
//! - **API** under `{url}/compute/v1/` (what `CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE` points
//!   at): the methods in [`GCP_METHODS`], routed, checked and answered per Google's discovery
//!   document (see [`contract`]): unknown query parameters and body fields are refused with
//!   HTTP 400 as Google's front end does, and every answer is checked against the contract
//!   before it is sent (a non-conforming answer is a simulator bug, answered as HTTP 500).
//!   Requests need `Authorization: Bearer TOKEN` with a token the simulator issued (token
//!   endpoint, metadata server or [`GcpSim::issue_token`]) whose scopes allow the method
//!   (`cloud-platform` or `compute`; reads also `compute.readonly`), and IAM permissions that
//!   [`GcpSim::deny_permission`] can take away.
//! - **Instances** go PROVISIONING → STAGING → RUNNING (each step [`GcpConfig::status_step`]);
//!   a guest power-off ([`GcpSim::power_off`]) makes them STOPPING → TERMINATED; preemption
//!   ([`GcpSim::preempt`]) sets `instance/preempted` and after
//!   [`GcpConfig::preemption_notice`] stops or deletes them per
//!   `scheduling.instanceTerminationAction`; `scheduling.maxRunDuration` does the same when it
//!   runs out. Deleting an instance deletes its `autoDelete` disks and detaches the others.
//! - **Zone operations** (insert and delete answer one) go PENDING → RUNNING → DONE (each step
//!   [`GcpConfig::operation_step`]); `zoneOperations.wait` returns when DONE or after
//!   [`GcpConfig::wait_timeout`]. An insert with the `requestId` of an earlier insert answers
//!   that insert's operation and does nothing else.
//! - **Capacity** ([`GcpSim::set_capacity`]): an insert into an exhausted zone is accepted and
//!   its operation ends with `ZONE_RESOURCE_POOL_EXHAUSTED` (HTTP 503 in
//!   `httpErrorStatusCode`), as Compute Engine reports resource availability errors; the
//!   instance shows as PROVISIONING until then and is gone after.
//! - **Quota** ([`GcpSim::set_quota`], regional metrics `CPUS`, `INSTANCES`,
//!   `NVIDIA_T4_GPUS`...): exceeded in the operation (`QUOTA_EXCEEDED`, 403) by default, or
//!   refused at once with HTTP 403 `quotaExceeded` ([`QuotaDelivery::Http`]); Compute Engine
//!   does both.
//! - **Faults** ([`GcpSim::inject`]): lose an answer after carrying the request out, delay it,
//!   hang, or answer an error instead.
//! - **Token endpoint** `POST {url}/token` (a key file's `token_uri`): see [`oauth`].
//! - **Metadata server** per instance ([`GcpSim::metadata_server`]): see [`metadata`].

pub mod api;
mod cli;
pub mod contract;
pub mod errors;
pub mod filter;
pub mod metadata;
pub mod oauth;
pub(crate) mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use cli::cli_main;
pub use metadata::GcpMetadataServer;
pub use state::{
    SCOPE_CLOUD_PLATFORM, SCOPE_CLOUD_PLATFORM_READONLY, SCOPE_COMPUTE, SCOPE_COMPUTE_READONLY,
};

/// Every Compute Engine v1 method the simulator serves, by discovery id. `gcp/extract.py`
/// reads this list to extract the contract subset (`gcp/compute-subset.json`).
pub const GCP_METHODS: &[&str] = &[
    "compute.instances.insert",
    "compute.instances.get",
    "compute.instances.delete",
    "compute.instances.list",
    "compute.instances.aggregatedList",
    "compute.instances.getSerialPortOutput",
    "compute.zoneOperations.get",
    "compute.zoneOperations.wait",
    "compute.disks.list",
    "compute.disks.aggregatedList",
    "compute.disks.delete",
    "compute.zones.get",
    "compute.regions.get",
    "compute.images.getFromFamily",
];

/// Everything a [`GcpSim`] needs at start.
#[derive(Clone, Debug)]
pub struct GcpConfig {
    /// Project id (`projects/{project}` in paths).
    pub project: String,
    pub project_number: u64,
    /// Regions and their zones, in order.
    pub regions: Vec<(String, Vec<String>)>,
    /// How long an instance stays PROVISIONING, STAGING and STOPPING.
    pub status_step: Duration,
    /// How long an operation stays PENDING and RUNNING.
    pub operation_step: Duration,
    /// The longest `zoneOperations.wait` holds its answer (Compute Engine: about 2 minutes).
    pub wait_timeout: Duration,
    /// From a preemption to the stop or deletion (Compute Engine: 30 seconds).
    pub preemption_notice: Duration,
    /// Lifetime of access tokens (Google: 1 hour).
    pub token_ttl: Duration,
    /// How long one second of `scheduling.maxRunDuration` lasts (1 s; tests shorten it, as
    /// Compute Engine's shortest run duration is 30 seconds).
    pub max_run_second: Duration,
}

impl Default for GcpConfig {
    /// Project `cml-sim-project` (number 123456789012); the regions of CML's generic regions
    /// plus `us-central1`, with their real zones; steps of 100 ms; waits up to 2 minutes;
    /// preemption notice 1 s; tokens for 1 hour; maxRunDuration in real seconds.
    fn default() -> Self {
        let r = |name: &str, letters: &[&str]| {
            (
                name.to_string(),
                letters.iter().map(|l| format!("{name}-{l}")).collect(),
            )
        };
        GcpConfig {
            project: "cml-sim-project".into(),
            project_number: 123_456_789_012,
            regions: vec![
                r("us-east1", &["b", "c", "d"]),
                r("us-west1", &["a", "b", "c"]),
                r("europe-north1", &["a", "b", "c"]),
                r("europe-west1", &["b", "c", "d"]),
                r("us-central1", &["a", "b", "c", "f"]),
            ],
            status_step: Duration::from_millis(100),
            operation_step: Duration::from_millis(100),
            wait_timeout: Duration::from_secs(120),
            preemption_notice: Duration::from_secs(1),
            token_ttl: Duration::from_secs(3600),
            max_run_second: Duration::from_secs(1),
        }
    }
}

/// Capacity of a zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capacity {
    Available,
    /// Spot instances fail with `ZONE_RESOURCE_POOL_EXHAUSTED`; standard ones are created.
    SpotExhausted,
    /// Every insert fails with `ZONE_RESOURCE_POOL_EXHAUSTED`.
    Exhausted,
}

/// How an exceeded quota is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaDelivery {
    /// In the insert operation's `error` (`QUOTA_EXCEEDED`).
    Operation,
    /// As the insert's answer: HTTP 403, reason `quotaExceeded`.
    Http,
}

/// What the simulator does to a request of a method with an injected fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcpFault {
    /// Carries the request out, then cuts the connection instead of answering.
    DropAnswer,
    /// Carries the request out, then answers only after this long.
    DelayAnswer(Duration),
    /// Neither carries out nor answers: a hung endpoint.
    Hang,
    /// Answers this HTTP error (Google's error body) instead of carrying the request out.
    Error {
        status: u16,
        reason: String,
        message: String,
    },
}

/// One API request as the simulator saw it (token endpoint and metadata reads excluded).
#[derive(Clone, Debug)]
pub struct GcpRequest {
    pub at: Instant,
    /// Discovery method id (`compute.instances.insert`).
    pub method: String,
    pub http_method: String,
    pub path: String,
    /// Undecoded query string.
    pub query: String,
    pub body: Option<Value>,
    /// Email of the authenticated principal, if authentication succeeded.
    pub principal: Option<String>,
    /// HTTP status answered (0: never answered).
    pub status: u16,
    pub fault: Option<GcpFault>,
}

pub(crate) struct Shared {
    state: Mutex<state::State>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, state::State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut state::State) -> T) -> Option<T> {
        Some(f(&mut self.lock()))
    }
}

/// A running simulated Compute Engine. Dropping it stops it.
pub struct GcpSim {
    shared: Arc<Shared>,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for GcpSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpSim").field("url", &self.url).finish()
    }
}

impl GcpSim {
    /// Binds `127.0.0.1:0` and serves.
    pub fn start(cfg: GcpConfig) -> std::io::Result<GcpSim> {
        Self::start_on(cfg, 0)
    }

    /// Binds `127.0.0.1:port` (0 = any free port) and serves.
    pub fn start_on(cfg: GcpConfig, port: u16) -> std::io::Result<GcpSim> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            state: Mutex::new(state::State::new(cfg, url.clone())),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cml-sim-gcp".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = axum::Router::new().fallback(api::entry).with_state(sh);
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = rx => {}
                    }
                });
            })?;
        Ok(GcpSim {
            shared,
            url,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// `http://127.0.0.1:PORT/compute/v1/`: the value for
    /// `CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE`.
    pub fn compute_endpoint(&self) -> String {
        format!("{}/compute/v1/", self.url)
    }

    /// `http://127.0.0.1:PORT/token`: the `token_uri` of service-account keys.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.url)
    }

    pub fn project(&self) -> String {
        self.shared.lock().cfg.project.clone()
    }

    pub fn project_number(&self) -> u64 {
        self.shared.lock().cfg.project_number
    }

    /// The email of the project's default Compute Engine service account.
    pub fn default_service_account(&self) -> String {
        self.shared.lock().default_service_account()
    }

    fn now(&self) -> MutexGuard<'_, state::State> {
        let mut st = self.shared.lock();
        st.advance(Instant::now());
        st
    }

    /// Accepts JWTs signed by the key `key_id` (RSA, `public_pem`) of service account `email`.
    pub fn add_service_account_key(&self, email: &str, key_id: &str, public_pem: &str) {
        self.shared.lock().keys.push(state::SaKey {
            email: email.into(),
            key_id: key_id.into(),
            public_pem: public_pem.into(),
            disabled: false,
        });
    }

    /// Refuses JWTs signed by key `key_id` from now on (a deleted or expired key: Google
    /// answers `invalid_grant`, "Invalid JWT Signature.").
    pub fn disable_service_account_key(&self, key_id: &str) {
        for k in self.shared.lock().keys.iter_mut() {
            if k.key_id == key_id {
                k.disabled = true;
            }
        }
    }

    /// An access token for `email` with `scopes`, as if the token endpoint had issued it.
    pub fn issue_token(&self, email: &str, scopes: &[&str]) -> String {
        let token = format!("ya29.c.{}", crate::util::random_hex(48));
        self.add_token(&token, email, scopes);
        token
    }

    /// Accepts `token` as an access token of `email` with `scopes`.
    pub fn add_token(&self, token: &str, email: &str, scopes: &[&str]) {
        let mut st = self.shared.lock();
        let expires = Instant::now() + st.cfg.token_ttl;
        st.tokens.insert(
            token.into(),
            state::Token {
                principal: email.into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                expires,
            },
        );
    }

    /// How many access tokens the token endpoint granted.
    pub fn oauth_grants(&self) -> usize {
        self.shared.lock().oauth_grants
    }

    /// Every access token issued so far (tests check that none is ever printed).
    pub fn issued_secrets(&self) -> Vec<String> {
        self.shared.lock().tokens.keys().cloned().collect()
    }

    /// IAM: `email` no longer has `permission` (`compute.instances.delete`): the API answers
    /// 403 "Required 'PERMISSION' permission for 'RESOURCE'".
    pub fn deny_permission(&self, email: &str, permission: &str) {
        self.shared
            .lock()
            .denied
            .insert((email.into(), permission.into()));
    }

    /// Undoes [`GcpSim::deny_permission`].
    pub fn allow_permission(&self, email: &str, permission: &str) {
        self.shared
            .lock()
            .denied
            .remove(&(email.to_string(), permission.to_string()));
    }

    pub fn set_capacity(&self, zone: &str, capacity: Capacity) {
        self.shared.lock().capacity.insert(zone.into(), capacity);
    }

    /// A regional quota: `metric` (`CPUS`, `INSTANCES`, `NVIDIA_T4_GPUS`, ...) may not exceed
    /// `limit` in `region`, counting every instance that is not TERMINATED.
    pub fn set_quota(&self, region: &str, metric: &str, limit: f64) {
        self.shared
            .lock()
            .quotas
            .insert((region.into(), metric.into()), limit);
    }

    pub fn set_quota_delivery(&self, delivery: QuotaDelivery) {
        self.shared.lock().quota_delivery = delivery;
    }

    /// Applies `fault` to the next `times` requests (all, with `None`) of `method` (a
    /// discovery id such as `compute.instances.insert`). Rules apply in the order injected.
    pub fn inject(&self, method: &str, fault: GcpFault, times: Option<usize>) {
        self.shared.lock().faults.push(state::FaultRule {
            method: method.into(),
            fault,
            left: times,
        });
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// API requests so far, in order of arrival.
    pub fn requests(&self) -> Vec<GcpRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every instance, as `instances.get` answers it.
    pub fn instances(&self) -> Vec<Value> {
        let st = self.now();
        st.instances_raw().map(|i| st.render_instance(i)).collect()
    }

    /// The instance `name` of `zone`, as `instances.get` answers it.
    pub fn instance(&self, zone: &str, name: &str) -> Option<Value> {
        let st = self.now();
        st.find(zone, name).map(|i| st.render_instance(i))
    }

    /// Names of the instances deleted so far (by the API, maxRunDuration or preemption).
    pub fn deleted_instances(&self) -> Vec<String> {
        self.now().removed_raw().map(|i| i.name.clone()).collect()
    }

    /// Every disk, as `disks.list` answers it.
    pub fn disks(&self) -> Vec<Value> {
        self.now().disks_rendered()
    }

    /// The guest powers itself off: STOPPING, then TERMINATED (billing for the machine
    /// stops; the instance and its disks stay). False if it is not running.
    pub fn power_off(&self, zone: &str, name: &str) -> bool {
        self.now().power_off(zone, name)
    }

    /// Compute Engine preempts the (spot) instance: `instance/preempted` turns TRUE, and
    /// after the preemption notice it is stopped or, with `instanceTerminationAction:
    /// DELETE`, deleted. False if it is not a running spot (or preemptible) instance:
    /// Compute Engine preempts no other.
    pub fn preempt(&self, zone: &str, name: &str) -> bool {
        self.now().preempt(zone, name)
    }

    /// Appends `text` to the instance's serial port 1 (console) output.
    pub fn append_serial(&self, zone: &str, name: &str, text: &str) -> bool {
        self.now().append_serial(zone, name, text)
    }

    /// A disk made outside the API (no instance), with `labels`.
    pub fn add_disk(&self, zone: &str, name: &str, size_gb: u64, labels: &[(&str, &str)]) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        self.now().add_disk(zone, name, size_gb, labels, None);
    }

    /// As [`GcpSim::add_disk`], with a `description` (what `initializeParams.description`
    /// gives a disk made with its instance).
    pub fn add_disk_described(
        &self,
        zone: &str,
        name: &str,
        size_gb: u64,
        labels: &[(&str, &str)],
        description: &str,
    ) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        self.now()
            .add_disk(zone, name, size_gb, labels, Some(description.to_string()));
    }

    /// Serves image `name` as the newest of `family` in `project` (`architecture`: `X86_64`
    /// or `ARM64`). Ubuntu's families in `ubuntu-os-cloud` are served from the start.
    pub fn add_image(&self, project: &str, family: &str, name: &str, architecture: &str) {
        self.shared
            .lock()
            .add_image(project, family, name, architecture);
    }

    /// Starts the metadata server of instance `name` in `zone` (it keeps answering for the
    /// instance after the instance is deleted).
    pub fn metadata_server(&self, zone: &str, name: &str) -> std::io::Result<GcpMetadataServer> {
        let id = self
            .now()
            .find(zone, name)
            .map(|i| i.id)
            .ok_or_else(|| std::io::Error::other(format!("no instance {name} in {zone}")))?;
        GcpMetadataServer::start(self.shared.clone(), id)
    }
}

impl Drop for GcpSim {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A service-account key file (the JSON `GOOGLE_APPLICATION_CREDENTIALS` names) for
/// `email` with the RSA `private_pem`, whose `token_uri` is the simulator's.
pub fn service_account_key_file(
    project: &str,
    email: &str,
    key_id: &str,
    private_pem: &str,
    token_uri: &str,
) -> Value {
    json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": key_id,
        "private_key": private_pem,
        "client_email": email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{}", email.replace('@', "%40")),
        "universe_domain": "googleapis.com",
    })
}
