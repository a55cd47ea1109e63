//! Kubernetes (`--cloud=kubernetes`): a runner is a `batch/v1` Job whose pod runs `cml runner`
//! from the runner image, with its credential in a Secret the Job owns (see [`manifest`]).
//!
//! Credentials: see `config.rs` (`KUBERNETES_CONFIGURATION`, `KUBECONFIG`, `~/.kube/config`,
//! in-cluster). The namespace is the kubeconfig context's, or `--cloud-kubernetes-namespace`.
//! The user needs, in that namespace ([`PERMISSIONS`]): `create`, `get`, `list` and `delete`
//! on `jobs` (group `batch`); `create`, `list` and `delete` on `secrets`; `list` and `delete`
//! on `pods`; `get` on `pods/log`; `list` on `events`.
//! A runner pool running as a Deployment also elects its leader over a Lease ([`lease`]).
//!
//! Teardown contract (the crate's): the Job is recorded in the ledger once the API server has
//! created it, and its launch (the [`LAUNCH_LABEL`] value the Job and Secret carry) before
//! the request is sent, so a creation whose answer never arrived is found by that label.
//! [`KubernetesProvider::destroy`] deletes Jobs with `propagationPolicy: Background` (the
//! REST default for Jobs orphans their pods), so the pod goes with its Job, and the Secret
//! with it (owner reference) or by its own deletion. A deleted pod gets SIGTERM and the
//! Job's termination grace. Deleting what is already gone counts as deleted.
//!
//! Waiting (`wait_running`) reports, once each, why the pod is not running yet: the
//! scheduler's message (no node with the GPU or labels asked, insufficient resources,
//! untolerated taints), image pull errors, missing configuration, quota refusals of the Job
//! controller. A pod that ends, or a Job that fails, before the runner is online is an error
//! at once.

mod config;
mod host;
pub mod lease;
pub mod manifest;

pub use config::CONFIGURATION;
pub use host::KubernetesHost;

use crate::{CloudError, Created, Machine, MachineSpec, OwnedResource, Provider, Resource};
use async_trait::async_trait;
use cml_core::k8s;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The RBAC rules the provider needs in its namespace, as the module documentation lists
/// them: `(API group, resources, verbs)`.
pub const PERMISSIONS: &[(&str, &[&str], &[&str])] = &[
    ("batch", &["jobs"], &["create", "get", "list", "delete"]),
    ("", &["secrets"], &["create", "list", "delete"]),
    ("", &["pods"], &["list", "delete"]),
    ("", &["pods/log"], &["get"]),
    ("", &["events"], &["list"]),
];

/// The label a launch puts on the Job and Secret it creates; its value is unique to the launch.
pub const LAUNCH_LABEL: &str = "cml.dev/launch";

const DEFAULT_POLL: Duration = Duration::from_secs(2);
const DEFAULT_DESTROY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long teardown looks for what an unanswered creation made.
const LAUNCH_SETTLE: Duration = Duration::from_secs(5);
/// Lines of the pod's log shown when its runner did not come online.
const LOG_TAIL: i64 = 100;

/// Runners as Jobs in one namespace of one cluster.
pub struct KubernetesProvider {
    client: kube::Client,
    namespace: String,
    /// Where the configuration came from, for messages.
    origin: String,
    poll: Duration,
    destroy_timeout: Duration,
}

impl KubernetesProvider {
    /// A provider with the configuration of `config.rs`; `namespace` overrides the context's.
    /// Sends nothing: a configuration the cluster refuses fails the first request.
    pub async fn from_env(namespace: Option<&str>) -> Result<KubernetesProvider, CloudError> {
        Self::with_config(config::load(namespace).await?)
    }

    /// A provider for the current context of kubeconfig `text` (its contents);
    /// `namespace` overrides the context's.
    pub async fn from_kubeconfig(
        text: &str,
        namespace: Option<&str>,
    ) -> Result<KubernetesProvider, CloudError> {
        let mut loaded = config::from_yaml(text, "the kubeconfig given").await?;
        if let Some(ns) = namespace {
            loaded.config.default_namespace = ns.to_string();
        }
        Self::with_config(loaded)
    }

    fn with_config(loaded: config::Loaded) -> Result<KubernetesProvider, CloudError> {
        let namespace = loaded.config.default_namespace.clone();
        let origin = loaded.origin.clone();
        let client =
            kube::Client::try_from(loaded.config).map_err(|e| CloudError::KubernetesConfig {
                origin: origin.clone(),
                reason: config::unquoted(&e.to_string()),
                hint: "check the cluster's server address and certificate authority in it".into(),
            })?;
        Ok(KubernetesProvider {
            client,
            namespace,
            origin,
            poll: DEFAULT_POLL,
            destroy_timeout: DEFAULT_DESTROY_TIMEOUT,
        })
    }

    /// How often a starting pod is looked at (default 2 s).
    pub fn with_poll_interval(mut self, d: Duration) -> KubernetesProvider {
        self.poll = d;
        self
    }

    /// The bound of [`Provider::destroy`] (default 60 s).
    pub fn with_destroy_timeout(mut self, d: Duration) -> KubernetesProvider {
        self.destroy_timeout = d;
        self
    }

    /// The namespace runners are made in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The client, to share its connection and credentials (as [`lease::LeaseLock::new`]
    /// takes them).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn events(&self) -> Api<Event> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn refused(&self, operation: String, e: &kube::Error) -> CloudError {
        let (reason, hint) = explain(e, &self.origin, &self.namespace);
        CloudError::KubernetesRequest {
            operation,
            namespace: self.namespace.clone(),
            reason,
            hint,
        }
    }

    /// The newest pod of Job `job`, if any.
    async fn pod_of(&self, job: &str) -> Result<Option<Pod>, kube::Error> {
        let pods = self
            .pods()
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await?;
        Ok(pods
            .items
            .into_iter()
            .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0)))
    }

    /// Warning events about `name`, as `Reason: message` lines, oldest first.
    async fn warnings(&self, name: &str) -> Vec<String> {
        let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
        match self.events().list(&lp).await {
            Ok(list) => list
                .items
                .iter()
                .filter(|e| e.type_.as_deref() != Some("Normal"))
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.reason.as_deref().unwrap_or("Event"),
                        e.message.as_deref().unwrap_or("").trim()
                    )
                })
                .collect(),
            Err(e) => {
                tracing::debug!("listing the events of {name} failed: {e}");
                Vec::new()
            }
        }
    }

    /// Where Job `job` stands.
    async fn look(&self, job: &str) -> Result<Phase, kube::Error> {
        let j = self.jobs().get(job).await?;
        if let Some(why) = job_failure(&j) {
            return Ok(Phase::Ended(why));
        }
        let Some(pod) = self.pod_of(job).await? else {
            let mut why = self.warnings(job).await;
            if why.is_empty() {
                why.push("the Job controller has not created its pod yet".into());
            }
            return Ok(Phase::Pending(why));
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        match status.phase.as_deref() {
            Some("Running") => Ok(Phase::Running {
                node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                ip: status.pod_ip.clone(),
            }),
            Some("Succeeded" | "Failed") => Ok(Phase::Ended(pod_end(&pod))),
            _ => {
                let mut why = Vec::new();
                for c in status.conditions.iter().flatten() {
                    if c.type_ == "PodScheduled" && c.status == "False" {
                        if let Some(m) = &c.message {
                            why.push(format!(
                                "{}: {m}",
                                c.reason.as_deref().unwrap_or("Unschedulable")
                            ));
                        }
                    }
                }
                for cs in status.container_statuses.iter().flatten() {
                    if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                        let reason = w.reason.as_deref().unwrap_or("Waiting");
                        if reason != "ContainerCreating" {
                            why.push(format!(
                                "{reason}: {}",
                                w.message.as_deref().unwrap_or("").trim()
                            ));
                        }
                    }
                }
                // An event repeating what the status says (the scheduler's message is both a
                // condition and a FailedScheduling event) is not said twice.
                let message =
                    |line: &str| line.split_once(": ").map_or(line, |(_, m)| m).to_string();
                for w in self
                    .warnings(&name)
                    .await
                    .into_iter()
                    .chain(self.warnings(job).await)
                {
                    if !why.iter().any(|x| message(x) == message(&w)) {
                        why.push(w);
                    }
                }
                if why.is_empty() {
                    why.push(format!(
                        "pod {name} is {}",
                        status.phase.as_deref().unwrap_or("Pending")
                    ));
                }
                Ok(Phase::Pending(why))
            }
        }
    }

    /// Finds what the launch labelled `launch` created and records it. An answered launch is
    /// looked up once; an unanswered one until something shows or [`LAUNCH_SETTLE`] passed.
    async fn reap_launch(&self, created: &Created, launch: &str, answered: bool) {
        let until = Instant::now()
            + if answered {
                Duration::ZERO
            } else {
                LAUNCH_SETTLE.min(self.destroy_timeout / 2)
            };
        let lp = ListParams::default().labels(&format!("{LAUNCH_LABEL}={launch}"));
        loop {
            let (jobs, secrets) = (self.jobs(), self.secrets());
            let found = tokio::try_join!(jobs.list(&lp), secrets.list(&lp));
            match found {
                Ok((jobs, secrets)) => {
                    let mut any = false;
                    for j in jobs.items {
                        if let Some(n) = j.metadata.name {
                            created.push(Resource::Job(n));
                            any = true;
                        }
                    }
                    for s in secrets.items {
                        if let Some(n) = s.metadata.name {
                            created.push(Resource::Secret(n));
                            any = true;
                        }
                    }
                    if any || Instant::now() >= until {
                        if any {
                            tracing::info!(launch, "found what the launch request created");
                        }
                        created.launch_resolved(launch);
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(launch, error = %e, "looking up what a launch request created failed");
                    if Instant::now() >= until {
                        return;
                    }
                }
            }
            tokio::time::sleep(self.poll.min(Duration::from_millis(500))).await;
        }
    }

    /// Deletes every resource in `created` concurrently; records the outcome of each.
    async fn delete_all(&self, created: &Created) {
        let mut set = tokio::task::JoinSet::new();
        for r in created.list() {
            let client = self.client.clone();
            let ns = self.namespace.clone();
            let origin = self.origin.clone();
            set.spawn(async move {
                let outcome = delete_one(client, &ns, &r).await;
                (r, outcome.map_err(|e| explain(&e, &origin, &ns).0))
            });
        }
        while let Some(done) = set.join_next().await {
            match done {
                Ok((r, Ok(()))) => {
                    tracing::info!("deleted {r}");
                    created.remove(&r);
                }
                Ok((r, Err(why))) => created.failed(&r, &why),
                Err(e) => tracing::error!("a deletion task failed: {e}"),
            }
        }
    }
}

/// Where a runner's Job stands.
enum Phase {
    Running {
        node: Option<String>,
        ip: Option<String>,
    },
    /// Why not yet, one line each.
    Pending(Vec<String>),
    /// It ended (why).
    Ended(String),
}

/// Deletes one object; gone already counts as deleted.
async fn delete_one(client: kube::Client, ns: &str, r: &Resource) -> Result<(), kube::Error> {
    let outcome = match r {
        Resource::Job(n) => Api::<Job>::namespaced(client, ns)
            .delete(n, &DeleteParams::background())
            .await
            .map(|_| ()),
        Resource::Pod(n) => Api::<Pod>::namespaced(client, ns)
            .delete(n, &DeleteParams::default())
            .await
            .map(|_| ()),
        Resource::Secret(n) => Api::<Secret>::namespaced(client, ns)
            .delete(n, &DeleteParams::default())
            .await
            .map(|_| ()),
        // Not a Kubernetes object: nothing of it can be here.
        _ => Ok(()),
    };
    match outcome {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    }
}

/// What went wrong, and the hint for it.
fn explain(e: &kube::Error, origin: &str, namespace: &str) -> (String, String) {
    match e {
        kube::Error::Api(s) => {
            let reason = format!("{} ({} {})", s.message.trim(), s.code, s.reason);
            let hint = match s.code {
                401 => format!("the cluster refused the credentials from {origin}: check the token, client certificate or exec plugin of its user"),
                403 => format!("the user from {origin} lacks a permission: grant it (a Role in namespace {namespace}) create, get, list and delete on jobs, create, list and delete on secrets, list and delete on pods, get on pods/log and list on events"),
                404 if s.message.contains("namespaces") => format!("namespace {namespace} does not exist: create it, or pass --cloud-kubernetes-namespace"),
                400 | 422 => "the cluster refused the object: check --cloud-image, --cloud-kubernetes-node-selector, --cloud-metadata and --cloud-permission-set".into(),
                _ => "check the cluster's state (`kubectl get events`) and try again".into(),
            };
            (reason, hint)
        }
        kube::Error::Auth(a) => (
            config::unquoted(&a.to_string()),
            format!("the credentials of the user in {origin} could not be obtained: check its token file, certificate or exec plugin (is the plugin installed and on PATH?)"),
        ),
        other => (
            config::unquoted(&other.to_string()),
            format!("check that the API server named in {origin} is reachable from here"),
        ),
    }
}

/// Why the Job failed, when it did.
fn job_failure(j: &Job) -> Option<String> {
    j.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .map(|c| {
            format!(
                "the Job failed: {}{}",
                c.reason.as_deref().unwrap_or("Failed"),
                c.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            )
        })
}

/// How a pod that is not running any more ended.
fn pod_end(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let container = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.state.as_ref().and_then(|s| s.terminated.clone()));
    let mut why = format!(
        "pod {name} is {}",
        status.phase.as_deref().unwrap_or("gone")
    );
    if let Some(reason) = &status.reason {
        why.push_str(&format!(": {reason}"));
    }
    if let Some(m) = &status.message {
        why.push_str(&format!(" ({m})"));
    }
    if let Some(t) = container {
        why.push_str(&format!(
            "; its container exited with code {}{}",
            t.exit_code,
            t.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    why
}

/// A [`LAUNCH_LABEL`] value unique to one launch (a valid label value).
fn launch_value() -> String {
    let mut b = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b = (nanos as u64 ^ u64::from(std::process::id())).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The owner, scope and age of an object of ours.
fn ownership(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<(String, Option<String>, Option<Duration>)> {
    let annotation = |k: &str| meta.annotations.as_ref().and_then(|a| a.get(k)).cloned();
    let owner = annotation("cml.dev/runner").or_else(|| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(k8s::LABEL_RUNNER))
            .cloned()
    })?;
    let age = meta.creation_timestamp.as_ref().and_then(|t| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs() as i64;
        u64::try_from(now - t.0.as_second())
            .ok()
            .map(Duration::from_secs)
    });
    Some((owner, annotation("cml.dev/repo"), age))
}

/// The Job names among `meta`'s owner references.
fn owning_jobs(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Vec<String> {
    meta.owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == "Job")
        .map(|o| o.name.clone())
        .collect()
}

/// Checks `spec` against what Kubernetes takes, before anything exists.
pub fn check_spec(spec: &MachineSpec) -> Result<(), CloudError> {
    manifest::Plan::new(spec, "default").map(|_| ())
}

#[async_trait]
impl Provider for KubernetesProvider {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    /// The namespace.
    fn region(&self) -> &str {
        &self.namespace
    }

    fn cleanup_options(&self) -> String {
        format!(
            "--cloud=kubernetes --cloud-kubernetes-namespace={}",
            self.namespace
        )
    }

    async fn create(&self, spec: &MachineSpec, created: &Created) -> Result<Machine, CloudError> {
        let plan = manifest::Plan::new(spec, &self.namespace)?;
        let launch = launch_value();
        let job: Job = serde_json::from_value(manifest::job(&plan, &launch))
            .expect("the Job manifest has the shape of k8s-openapi's Job");
        created.launch_sent(&launch);
        let made = match self.jobs().create(&PostParams::default(), &job).await {
            Ok(made) => made,
            Err(e) => {
                if let kube::Error::Api(s) = &e {
                    // An answer: nothing was created.
                    created.launch_answered(&launch);
                    created.launch_resolved(&launch);
                    if s.code == 409 {
                        return Err(CloudError::KubernetesExists {
                            kind: "Job",
                            name: plan.job.clone(),
                            namespace: self.namespace.clone(),
                        });
                    }
                }
                return Err(self.refused(format!("creating Job {}", plan.job), &e));
            }
        };
        created.push(Resource::Job(plan.job.clone()));
        created.launch_answered(&launch);
        created.launch_resolved(&launch);
        tracing::info!(
            job = %plan.job,
            namespace = %self.namespace,
            image = %plan.image,
            "created Job {} in namespace {} ({}), image {}",
            plan.job,
            self.namespace,
            plan.describe(),
            plan.image
        );
        let uid = made.metadata.uid.clone().unwrap_or_default();
        let secret: Secret = serde_json::from_value(manifest::secret(&plan, spec, &uid, &launch))
            .expect("the Secret manifest has the shape of k8s-openapi's Secret");
        if let Err(e) = self.secrets().create(&PostParams::default(), &secret).await {
            match &e {
                kube::Error::Api(s) if s.code == 409 => {
                    return Err(CloudError::KubernetesExists {
                        kind: "Secret",
                        name: plan.secret.clone(),
                        namespace: self.namespace.clone(),
                    })
                }
                kube::Error::Api(_) => {}
                // No answer: it may exist; deleting it when it does not is harmless.
                _ => created.push(Resource::Secret(plan.secret.clone())),
            }
            return Err(self.refused(format!("creating Secret {}", plan.secret), &e));
        }
        created.push(Resource::Secret(plan.secret.clone()));
        Ok(Machine {
            id: plan.job.clone(),
            region: self.namespace.clone(),
            zone: None,
            machine_type: plan.describe(),
            spot: plan.spot,
            state: "pending".into(),
            public_ip: None,
            private_ip: None,
        })
    }

    async fn wait_running(
        &self,
        machine: &Machine,
        timeout: Duration,
    ) -> Result<Machine, CloudError> {
        let job = &machine.id;
        let deadline = Instant::now() + timeout;
        let mut told: BTreeSet<String> = BTreeSet::new();
        let mut last: Vec<String> = Vec::new();
        loop {
            match self.look(job).await {
                Ok(Phase::Running { node, ip }) => {
                    let mut m = machine.clone();
                    m.state = "running".into();
                    m.zone = node;
                    m.private_ip = ip;
                    return Ok(m);
                }
                Ok(Phase::Ended(why)) => {
                    return Err(CloudError::KubernetesPodEnded {
                        job: job.clone(),
                        namespace: self.namespace.clone(),
                        why,
                    })
                }
                Ok(Phase::Pending(why)) => {
                    for line in &why {
                        if told.insert(line.clone()) {
                            tracing::warn!(job = %job, "the pod of Job {job} is not running yet: {line}");
                        }
                    }
                    last = why;
                }
                Err(e @ kube::Error::Api(_)) if matches!(&e, kube::Error::Api(s) if matches!(s.code, 401 | 403 | 404)) => {
                    return Err(self.refused(format!("reading Job {job} and its pod"), &e))
                }
                Err(e) => tracing::warn!("reading Job {job} failed, trying again: {e}"),
            }
            if Instant::now() >= deadline {
                let all = last.join("\n").to_ascii_lowercase();
                let hint = if all.contains("nvidia.com/gpu") || all.contains("affinity/selector") {
                    "no node has the GPUs or labels asked for: compare --cloud-gpu and --cloud-kubernetes-node-selector with `kubectl get nodes --show-labels`, or add such nodes"
                } else if all.contains("image") {
                    "check --cloud-image, and that the cluster can pull it (a private registry needs an imagePullSecret on the service account)"
                } else if all.contains("quota") {
                    "the namespace's ResourceQuota is exhausted: ask for a smaller --cloud-type, or raise the quota"
                } else if all.contains("insufficient") || all.contains("taint") {
                    "no node has room for the pod: ask for a smaller --cloud-type, or add nodes"
                } else {
                    "raise --cloud-timeout, or look at `kubectl describe pod` in the namespace"
                };
                return Err(CloudError::KubernetesPodPending {
                    job: job.clone(),
                    namespace: self.namespace.clone(),
                    seconds: timeout.as_secs_f64().ceil() as u64,
                    why: last
                        .iter()
                        .map(|l| format!("  - {l}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    hint: hint.into(),
                });
            }
            tokio::time::sleep(
                self.poll
                    .min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
        }
    }

    async fn destroy(&self, created: &Created) -> Result<(), CloudError> {
        let work = async {
            // What is known goes at once; what unanswered launches made, as soon as found.
            let lookups = async {
                for (launch, answered) in created.launches() {
                    self.reap_launch(created, &launch, answered).await;
                }
            };
            tokio::join!(lookups, self.delete_all(created));
            if !created.list().is_empty() {
                self.delete_all(created).await;
            }
        };
        let finished = tokio::time::timeout(self.destroy_timeout, work).await;
        let mut left: Vec<String> = created.left().iter().map(|l| format!("  - {l}")).collect();
        left.extend(created.launches().into_iter().map(|(tag, _)| {
            format!("  - whatever the creation labelled {LAUNCH_LABEL}={tag} made")
        }));
        if left.is_empty() {
            return Ok(());
        }
        Err(CloudError::KubernetesIncomplete {
            namespace: self.namespace.clone(),
            why: match finished {
                Ok(()) => String::new(),
                Err(_) => format!(" within {} s", self.destroy_timeout.as_secs()),
            },
            left: left.join("\n"),
        })
    }

    async fn list_owned(&self) -> Result<Vec<OwnedResource>, CloudError> {
        let lp =
            ListParams::default().labels(&format!("{}={}", k8s::LABEL_MANAGED_BY, k8s::MANAGED_BY));
        let (job_api, pod_api, secret_api) = (self.jobs(), self.pods(), self.secrets());
        let (jobs, pods, secrets) =
            tokio::try_join!(job_api.list(&lp), pod_api.list(&lp), secret_api.list(&lp)).map_err(
                |e| {
                    let (reason, hint) = explain(&e, &self.origin, &self.namespace);
                    CloudError::List {
                        region: format!("namespace {}", self.namespace),
                        reason: format!("{reason}\nhint: {hint}"),
                    }
                },
            )?;
        let job_names: BTreeSet<String> = jobs
            .items
            .iter()
            .filter_map(|j| j.metadata.name.clone())
            .collect();
        let mut found = Vec::new();
        for j in &jobs.items {
            let (Some(name), Some((owner, scope, age))) =
                (&j.metadata.name, ownership(&j.metadata))
            else {
                continue;
            };
            let running = pods.items.iter().any(|p| {
                owning_jobs(&p.metadata).contains(name)
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            });
            let state = if job_failure(j).is_some()
                || j.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Complete" && c.status == "True")
                }) {
                "finished"
            } else if running {
                "running"
            } else {
                "pending"
            };
            found.push(OwnedResource {
                resource: Resource::Job(name.clone()),
                owner,
                scope,
                state: Some(state.into()),
                age,
                used_by: None,
            });
        }
        let users = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            owning_jobs(meta)
                .into_iter()
                .filter(|j| job_names.contains(j))
                .map(|j| format!("job {j}"))
                .collect::<Vec<_>>()
        };
        for p in &pods.items {
            let (Some(name), Some((owner, scope, age))) =
                (&p.metadata.name, ownership(&p.metadata))
            else {
                continue;
            };
            found.push(OwnedResource {
                resource: Resource::Pod(name.clone()),
                owner,
                scope,
                state: p
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .map(str::to_ascii_lowercase),
                age,
                used_by: Some(users(&p.metadata)),
            });
        }
        for s in &secrets.items {
            let (Some(name), Some((owner, scope, age))) =
                (&s.metadata.name, ownership(&s.metadata))
            else {
                continue;
            };
            found.push(OwnedResource {
                resource: Resource::Secret(name.clone()),
                owner,
                scope,
                state: None,
                age,
                used_by: Some(users(&s.metadata)),
            });
        }
        Ok(found)
    }

    async fn console_output(&self, machine: &Machine) -> Result<Option<String>, CloudError> {
        let job = &machine.id;
        let mut out = Vec::new();
        let pod = self.pod_of(job).await.map_err(|e| CloudError::Console {
            id: format!("Job {job}"),
            reason: explain(&e, &self.origin, &self.namespace).0,
        })?;
        for w in self.warnings(job).await {
            out.push(format!("event of Job {job}: {w}"));
        }
        if let Some(pod) = pod {
            let name = pod.metadata.name.clone().unwrap_or_default();
            for w in self.warnings(&name).await {
                out.push(format!("event of pod {name}: {w}"));
            }
            let lp = LogParams {
                tail_lines: Some(LOG_TAIL),
                ..LogParams::default()
            };
            match self.pods().logs(&name, &lp).await {
                Ok(log) => {
                    out.push(format!("last {LOG_TAIL} lines of the log of pod {name}:"));
                    out.push(log);
                }
                Err(e) => out.push(format!(
                    "the log of pod {name} could not be read: {}",
                    explain(&e, &self.origin, &self.namespace).0
                )),
            }
        }
        Ok((!out.is_empty()).then(|| out.join("\n")))
    }
}
