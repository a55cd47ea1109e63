//! A simulated Kubernetes API server (plain HTTP on 127.0.0.1), checked against Kubernetes'
//! strict JSON schemas (see [`contract`]).
//!
//! - **Discovery**: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/batch/v1`,
//!   `/apis/coordination.k8s.io/v1`.
//! - **Resources** (namespaced, in [`K8sConfig::namespaces`]): `batch/v1` jobs (create, get,
//!   list, delete with `propagationPolicy`; the REST default for Jobs is `Orphan`, as on a real
//!   API server), `v1` pods (get, list, `log`), `v1` secrets (create, get, list, delete),
//!   `v1` events (list), `coordination.k8s.io/v1` leases (create, get, list, delete, and
//!   update with `PUT`: a `metadata.resourceVersion` other than the stored one is 409
//!   `Conflict`, as for optimistic concurrency on a real API server). Lists take
//!   `labelSelector` and `fieldSelector` (`involvedObject.name=...` for events).
//! - **Strict decoding**: every created or updated object is checked against the schema of
//!   [`K8sConfig::kubernetes`]; an unknown field is refused with HTTP 400 `BadRequest`
//!   (`strict decoding error: unknown field "spec.foo"`), a missing or invalid value with HTTP
//!   422 `Invalid` and its causes; malformed JSON with 400. Answers are checked too (a
//!   non-conforming answer is a simulator bug, answered as HTTP 500). Nothing is stored on a
//!   refusal.
//! - **Auth**: `Authorization: Bearer TOKEN` with a token of [`K8sConfig::tokens`], else 401
//!   `Unauthorized`; [`K8sSim::forbid`] makes a verb on a resource 403 `Forbidden`.
//! - **Controllers**: a Job makes one Pod (owner reference, `job-name`/`controller-uid`
//!   labels) that stays Pending until a node in [`K8sConfig::nodes`] fits its nodeSelector,
//!   tolerations and cpu/memory/`nvidia.com/gpu` requests (else one `FailedScheduling` event
//!   with the scheduler's message, Pending for ever), then Running after
//!   [`K8sConfig::schedule_delay`] (or waiting `ImagePullBackOff` with its events for an image
//!   of [`K8sSim::fail_image`]). The container's exit comes from the test
//!   ([`K8sSim::finish_pod`]) and makes the Job Complete or Failed; `activeDeadlineSeconds`
//!   fails it with `DeadlineExceeded`; `ttlSecondsAfterFinished` deletes it with its pods; the
//!   garbage collector deletes objects whose owners are all gone (a Secret owned by the Job).
//!   [`K8sSim::lose_node`] fails the node's pods (`NodeLost`, a `DisruptionTarget` condition).
//! - **Faults** ([`K8sSim::inject`]): drop, delay or hang an answer after carrying it out.

mod api;
mod cli;
pub mod contract;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use api::selector_matches;
pub use cli::cli_main;
pub use state::parse_quantity;

/// A node of the simulated cluster.
#[derive(Clone, Debug)]
pub struct SimNode {
    pub name: String,
    /// Allocatable cores, bytes of memory and `nvidia.com/gpu` devices.
    pub cpu: f64,
    pub memory: f64,
    pub gpu: f64,
    pub labels: BTreeMap<String, String>,
    /// `(key, value, effect)`.
    pub taints: Vec<(String, String, String)>,
}

impl SimNode {
    /// A node without GPUs, labels or taints.
    pub fn new(name: &str, cpu: f64, memory_gib: f64) -> SimNode {
        SimNode {
            name: name.into(),
            cpu,
            memory: memory_gib * 1024f64.powi(3),
            gpu: 0.0,
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }
}

/// Everything a [`K8sSim`] needs at start.
#[derive(Clone, Debug)]
pub struct K8sConfig {
    /// The Kubernetes version served and checked against (one of
    /// [`contract::KUBERNETES_VERSIONS`]).
    pub kubernetes: String,
    pub namespaces: Vec<String>,
    /// Bearer tokens accepted.
    pub tokens: Vec<String>,
    pub nodes: Vec<SimNode>,
    /// From a pod's creation to its scheduling, and from there to its container's start.
    pub schedule_delay: Duration,
    /// How long one second of `activeDeadlineSeconds` and `ttlSecondsAfterFinished` lasts.
    pub second: Duration,
}

impl Default for K8sConfig {
    /// Kubernetes 1.37, namespace `default`, token `sim-token`, one 8-core 32 GiB node without
    /// GPUs, 50 ms steps, real seconds.
    fn default() -> Self {
        K8sConfig {
            kubernetes: "1.37".into(),
            namespaces: vec!["default".into()],
            tokens: vec!["sim-token".into()],
            nodes: vec![SimNode::new("node-1", 8.0, 32.0)],
            schedule_delay: Duration::from_millis(50),
            second: Duration::from_secs(1),
        }
    }
}

/// A fault applied to the next matching answer, after the request was carried out.
#[derive(Clone, Debug)]
pub enum K8sFault {
    /// The connection is cut instead of the answer.
    Drop,
    Delay(Duration),
    /// No answer, ever.
    Hang,
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct K8sRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The JSON body, or null.
    pub body: Value,
    pub status: u16,
}

/// What the kubelet would run for a pod's first container, Secret references resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerRun {
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

pub(crate) struct Shared {
    state: Mutex<state::State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, state::State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running simulated API server. Dropping it stops it.
pub struct K8sSim {
    shared: Arc<Shared>,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for K8sSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sSim").field("url", &self.url).finish()
    }
}

impl K8sSim {
    /// Binds `127.0.0.1:port` (0 = any free port) and serves. Fails on a Kubernetes version
    /// without bundled schemas.
    pub fn start_on(cfg: K8sConfig, port: u16) -> std::io::Result<K8sSim> {
        if contract::Contract::bundled(&cfg.kubernetes).is_none() {
            return Err(std::io::Error::other(format!(
                "no schemas for Kubernetes {}\nhint: use one of {:?}",
                cfg.kubernetes,
                contract::KUBERNETES_VERSIONS
            )));
        }
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            state: Mutex::new(state::State::new(cfg)),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cml-sim-k8s".into())
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
        Ok(K8sSim {
            shared,
            url,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Binds any free port on 127.0.0.1 and serves.
    pub fn start(cfg: K8sConfig) -> std::io::Result<K8sSim> {
        Self::start_on(cfg, 0)
    }

    /// `http://127.0.0.1:PORT` (a kubeconfig's `server`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn now(&self) -> MutexGuard<'_, state::State> {
        let mut st = self.shared.lock();
        st.advance(Instant::now());
        st
    }

    /// A stored object (`jobs`, `pods`, `secrets`, `leases`), as the API would answer it.
    pub fn object(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        let st = self.now();
        st.objects
            .iter()
            .find(|((k, n, nm), _)| *k == resource && n == ns && nm == name)
            .map(|(_, v)| v.clone())
    }

    /// Names of the stored objects of `resource` in `ns`.
    pub fn names(&self, resource: &str, ns: &str) -> Vec<String> {
        let st = self.now();
        st.objects
            .keys()
            .filter(|(k, n, _)| *k == resource && n == ns)
            .map(|(_, _, nm)| nm.clone())
            .collect()
    }

    /// The pods of Job `job`.
    pub fn pods_of(&self, ns: &str, job: &str) -> Vec<String> {
        let st = self.now();
        match st.objects.get(&("jobs", ns.into(), job.into())) {
            Some(j) => st.pods_of(ns, &j.clone()),
            None => Vec::new(),
        }
    }

    /// The container of pod `name` exited with `code`. False when it was not running.
    pub fn finish_pod(&self, ns: &str, name: &str, code: i32) -> bool {
        self.now().finish_pod(ns, name, code)
    }

    /// Sets what the pod's `log` subresource answers.
    pub fn set_log(&self, ns: &str, pod: &str, text: &str) {
        self.shared
            .lock()
            .logs
            .insert((ns.into(), pod.into()), text.into());
    }

    /// Pulling `image` fails (`ErrImagePull`, then `ImagePullBackOff`).
    pub fn fail_image(&self, image: &str) {
        self.shared.lock().bad_images.push(image.into());
    }

    /// Node `node` is lost: its running pods fail with `NodeLost` and a `DisruptionTarget`
    /// condition, and nothing is scheduled on it any more. Returns the pods it failed.
    pub fn lose_node(&self, node: &str) -> Vec<(String, String)> {
        self.now().lose_node(node)
    }

    /// `token` is Forbidden `verb` (`create`, `get`, `list`, `update`, `delete`) on `resource`
    /// (`jobs`, `pods/log`, `leases`, ...).
    pub fn forbid(&self, token: &str, verb: &str, resource: &str) {
        self.shared
            .lock()
            .forbidden
            .push((token.into(), verb.into(), resource.into()));
    }

    /// Applies `fault` once, to the next `method` request whose path contains `path_part`.
    pub fn inject(&self, method: &str, path_part: &str, fault: K8sFault) {
        self.shared
            .lock()
            .faults
            .push((method.into(), path_part.into(), fault));
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<K8sRequest> {
        self.shared.lock().requests.clone()
    }

    /// Events recorded about `name` (its `reason: message` lines).
    pub fn events_of(&self, ns: &str, name: &str) -> Vec<String> {
        let st = self.now();
        st.events
            .iter()
            .filter(|e| e["metadata"]["namespace"] == ns && e["involvedObject"]["name"] == name)
            .map(|e| {
                format!(
                    "{}: {}",
                    e["reason"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    /// What the kubelet would run for pod `name`'s first container: its command, args and
    /// environment with `secretKeyRef` and `envFrom.secretRef` resolved from the namespace's
    /// Secrets. Err names a missing Secret or key (the kubelet's `CreateContainerConfigError`).
    pub fn container_run(&self, ns: &str, name: &str) -> Result<ContainerRun, String> {
        use base64::Engine;
        let st = self.now();
        let pod = st
            .objects
            .get(&("pods", ns.into(), name.into()))
            .ok_or_else(|| format!("pod {ns}/{name} not found"))?;
        let c = &pod["spec"]["containers"][0];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        };
        let secret_data = |sname: &str| -> Result<BTreeMap<String, String>, String> {
            let s = st
                .objects
                .get(&("secrets", ns.into(), sname.into()))
                .ok_or_else(|| format!("secret \"{sname}\" not found"))?;
            Ok(s["data"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(v.as_str().unwrap_or(""))
                        .unwrap_or_default();
                    (k.clone(), String::from_utf8_lossy(&raw).into_owned())
                })
                .collect())
        };
        let mut env = Vec::new();
        for e in c["envFrom"].as_array().into_iter().flatten() {
            if let Some(sname) = e["secretRef"]["name"].as_str() {
                let prefix = e["prefix"].as_str().unwrap_or("");
                for (k, v) in secret_data(sname)? {
                    env.push((format!("{prefix}{k}"), v));
                }
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let n = e["name"].as_str().unwrap_or("").to_string();
            if let Some(v) = e["value"].as_str() {
                env.push((n, v.into()));
            } else if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
                let sname = r.get("name").and_then(Value::as_str).unwrap_or("");
                let key = r.get("key").and_then(Value::as_str).unwrap_or("");
                let data = secret_data(sname)?;
                let v = data
                    .get(key)
                    .ok_or_else(|| format!("couldn't find key {key} in Secret {ns}/{sname}"))?;
                env.push((n, v.clone()));
            }
        }
        Ok(ContainerRun {
            image: c["image"].as_str().unwrap_or("").into(),
            command: strings(&c["command"]),
            args: strings(&c["args"]),
            env,
        })
    }
}

impl Drop for K8sSim {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
