//! Google Compute Engine, over its REST API (v1) with a service-account key.
//!
//! Credentials: [`auth::CREDENTIALS_DATA`] (a key's contents) or [`auth::CREDENTIALS_FILE`]
//! (its path); the project is the key's `project_id` unless [`auth::PROJECT`] is set; the
//! endpoint can be overridden with [`api::COMPUTE_ENDPOINT`], as for gcloud.
//!
//! What a runner gets: one instance `cml-<name>` (sanitized, see [`instance_name`]) in the
//! zone `--cloud-region` resolved to, or in another zone of its region when that zone has no
//! capacity; its boot disk is deleted with it. It has an external address and the `default`
//! network, and no firewall rule is made: the machine only dials out. Labels: the owner
//! labels of `cml_core::gcp` and [`LAUNCH_LABEL`], on the instance and its disk; metadata:
//! the startup script, `cml-runner`/`cml-repo`/`cml-labels`, and `ssh-keys` when
//! `--cloud-ssh-private` is given. The machine runs as the service account of
//! `--cloud-permission-set`, by default the project's default compute account with the
//! `compute` scope (what it needs to delete itself). Spot machines are deleted when
//! preempted; `--cloud-max-lifetime` also becomes the instance's `maxRunDuration`, after which
//! Compute Engine deletes it.

pub mod api;
pub mod auth;
pub mod host;

pub use api::Api;
pub use auth::{ServiceAccountKey, TokenSource, Tokens};
pub use host::GcpHost;

use crate::{CloudError, Created, Machine, MachineSpec, OwnedResource, Provider, Resource};
use api::ApiError;
use async_trait::async_trait;
use cml_core::gcp as rules;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The label a launch request puts on the instance and disk it creates (the GCP form of
/// [`crate::LAUNCH_TAG`]); its value is unique to the launch.
pub const LAUNCH_LABEL: &str = "cml-launch";
/// Compute Engine's limit on one metadata value.
pub const METADATA_VALUE_LIMIT: usize = 256 * 1024;
/// Compute Engine's limit on all metadata keys and values together.
pub const METADATA_TOTAL_LIMIT: usize = 512 * 1024;
/// The user `ssh-keys` entries are for (Ubuntu images' default user).
pub const SSH_USER: &str = "ubuntu";
/// Operation error codes meaning "no capacity here now": another zone may have it.
pub const CAPACITY_CODES: &[&str] = &[
    "ZONE_RESOURCE_POOL_EXHAUSTED",
    "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
    "STOCKOUT",
    "RESOURCE_POOL_EXHAUSTED",
];
/// The shortest and longest `scheduling.maxRunDuration` Compute Engine takes.
const MAX_RUN_RANGE: (u64, u64) = (30, 10_368_000);

/// The Compute Engine provider of one zone.
#[derive(Clone)]
pub struct GcpProvider {
    api: Api,
    zone: String,
    /// The zone's region (quotas and `list_owned` are regional).
    zone_region: String,
    poll_interval: Duration,
    destroy_timeout: Duration,
    launch_settle: Duration,
    operation_timeout: Duration,
}

impl std::fmt::Debug for GcpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpProvider")
            .field("api", &self.api)
            .field("zone", &self.zone)
            .field("poll_interval", &self.poll_interval)
            .field("destroy_timeout", &self.destroy_timeout)
            .finish_non_exhaustive()
    }
}

impl GcpProvider {
    /// The provider of `zone` with credentials, project and endpoint from the environment
    /// (see the module documentation). Nothing is asked of Google yet.
    pub fn from_env(zone: &str) -> Result<GcpProvider, CloudError> {
        Self::from_lookup(zone, |k| std::env::var(k).ok())
    }

    /// As [`GcpProvider::from_env`]; when no key is given at all and this process runs on a
    /// GCP machine (its metadata server answers within 2 s), the machine's own service
    /// account instead: its token and project from the metadata server, as Google's client
    /// libraries do.
    pub async fn from_env_or_metadata(zone: &str) -> Result<GcpProvider, CloudError> {
        match Self::from_env(zone) {
            Err(CloudError::GcpCredentialsMissing) => {
                let host = GcpHost::from_env();
                let Some(project) = host.project(Duration::from_secs(2)).await else {
                    return Err(CloudError::GcpCredentialsMissing);
                };
                let get = |k: &str| std::env::var(k).ok();
                let project = get(auth::PROJECT)
                    .filter(|p| !p.trim().is_empty())
                    .unwrap_or(project);
                let endpoint = api::endpoint(get(api::COMPUTE_ENDPOINT).as_deref());
                let tokens = Arc::new(Tokens::new(TokenSource::Metadata(
                    host.metadata_url().to_string(),
                )));
                tracing::info!("no service-account key given: using this machine's own service account (metadata server)");
                Self::with_api(zone, Api::new(&endpoint, &project, tokens))
            }
            other => other,
        }
    }

    /// As [`GcpProvider::from_env`], with variables read by `get`.
    pub fn from_lookup(
        zone: &str,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<GcpProvider, CloudError> {
        let key = ServiceAccountKey::from_lookup(&get)?;
        let project = auth::project_from(&key, &get)?;
        let endpoint = api::endpoint(get(api::COMPUTE_ENDPOINT).as_deref());
        let tokens = Arc::new(Tokens::new(TokenSource::ServiceAccount(key)));
        Self::with_api(zone, Api::new(&endpoint, &project, tokens))
    }

    /// The provider of `zone` using `api`.
    pub fn with_api(zone: &str, api: Api) -> Result<GcpProvider, CloudError> {
        let zone = rules::zone(zone).map_err(|e| CloudError::Launch {
            machine_type: String::new(),
            region: zone.to_string(),
            reason: e.to_string(),
        })?;
        let region = rules::region_of_zone(&zone).unwrap_or(&zone).to_string();
        Ok(GcpProvider {
            api,
            zone,
            zone_region: region,
            poll_interval: Duration::from_secs(2),
            destroy_timeout: Duration::from_secs(300),
            launch_settle: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(600),
        })
    }

    /// How often it asks about an operation or a booting machine (default 2 s).
    pub fn with_poll_interval(mut self, interval: Duration) -> GcpProvider {
        self.poll_interval = interval;
        self
    }

    /// The bound of [`Provider::destroy`] (default 300 s).
    pub fn with_destroy_timeout(mut self, timeout: Duration) -> GcpProvider {
        self.destroy_timeout = timeout;
        self
    }

    /// How long teardown looks for what an unanswered launch created (default 10 s).
    pub fn with_launch_settle(mut self, settle: Duration) -> GcpProvider {
        self.launch_settle = settle;
        self
    }

    /// The longest wait for one insert operation (default 600 s).
    pub fn with_operation_timeout(mut self, timeout: Duration) -> GcpProvider {
        self.operation_timeout = timeout;
        self
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Waits for a zone operation to end: `Ok(None)` when it succeeded, `Ok(Some(error))`
    /// with its first error (code, message) when it failed.
    async fn wait_operation(
        &self,
        zone: &str,
        op: &Value,
    ) -> Result<Option<(String, String)>, String> {
        let name = op["name"].as_str().unwrap_or_default().to_string();
        let deadline = Instant::now() + self.operation_timeout;
        let mut op = op.clone();
        loop {
            if op["status"] == "DONE" {
                let e = &op["error"]["errors"][0];
                if e.is_null() {
                    return Ok(None);
                }
                return Ok(Some((
                    e["code"].as_str().unwrap_or("UNKNOWN").to_string(),
                    e["message"].as_str().unwrap_or_default().to_string(),
                )));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the operation {name} did not finish within {} s",
                    self.operation_timeout.as_secs()
                ));
            }
            tokio::time::sleep(self.poll_interval).await;
            match self.api.get_operation(zone, &name).await {
                Ok(v) => op = v,
                Err(e) if e.refused() => return Err(e.to_string()),
                Err(e) => {
                    tracing::debug!(operation = %name, error = %e, "reading the operation failed; retrying")
                }
            }
        }
    }

    /// Records that `zone/name` is gone if Compute Engine says so (a failed insert).
    async fn forget_if_gone(&self, created: &Created, zone: &str, name: &str) {
        if let Ok(None) = self.api.get_instance(zone, name).await {
            created.remove(&Resource::Instance(format!("{zone}/{name}")));
        }
    }

    async fn delete_instance(&self, created: &Created, zone: &str, name: &str) {
        let r = Resource::Instance(format!("{zone}/{name}"));
        loop {
            match self.api.delete_instance(zone, name).await {
                Ok(_) => return created.deleting(&r),
                Err(e) if e.is_not_found() => return created.remove(&r),
                // Being created or already being deleted: ask again until it is accepted or
                // the instance is gone (the caller bounds this).
                Err(e) if e.reason() == "resourceNotReady" => {
                    tracing::debug!(resource = %r, "not ready to be deleted; asking again");
                    tokio::time::sleep(self.poll_interval).await;
                }
                Err(e) => return failed(created, &r, e.to_string()),
            }
        }
    }

    async fn delete_disk(&self, created: &Created, zone: &str, name: &str) {
        let r = Resource::Disk(format!("{zone}/{name}"));
        match self.api.delete_disk(zone, name).await {
            Ok(_) => created.deleting(&r),
            Err(e) if e.is_not_found() => created.remove(&r),
            Err(e) => failed(created, &r, e.to_string()),
        }
    }

    /// Finds what the launch labelled `launch` created, records it and deletes it. An
    /// answered launch is looked up once; an unanswered one until something shows or the
    /// settle time has passed.
    async fn reap_launch(&self, created: &Created, launch: &str, answered: bool) {
        let settle = Instant::now()
            + if answered {
                Duration::ZERO
            } else {
                self.launch_settle.min(self.destroy_timeout / 2)
            };
        let filter = format!("labels.{LAUNCH_LABEL} = {launch}");
        loop {
            match self.api.aggregated_instances(&filter).await {
                Ok(found) => {
                    let ids: Vec<(String, String)> = found
                        .iter()
                        .filter_map(|(z, i)| Some((z.clone(), i["name"].as_str()?.to_string())))
                        .collect();
                    for (z, n) in &ids {
                        created.push(Resource::Instance(format!("{z}/{n}")));
                    }
                    if !ids.is_empty() || Instant::now() >= settle {
                        if !ids.is_empty() {
                            tracing::info!(launch, instances = ?ids, "found what the launch request created");
                        }
                        created.launch_resolved(launch);
                        let mut set = tokio::task::JoinSet::new();
                        for (z, n) in ids {
                            let (me, c) = (self.clone(), created.clone());
                            set.spawn(async move { me.delete_instance(&c, &z, &n).await });
                        }
                        while set.join_next().await.is_some() {}
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(launch, error = %e, "looking up what a launch request created failed");
                    if Instant::now() >= settle {
                        return;
                    }
                }
            }
            tokio::time::sleep(self.poll_interval.min(Duration::from_secs(1))).await;
        }
    }

    /// The teardown itself, unbounded: every deletion at once.
    async fn destroy_all(&self, created: &Created) {
        let mut set = tokio::task::JoinSet::new();
        for r in created.list() {
            let (me, c) = (self.clone(), created.clone());
            match r {
                Resource::Instance(id) => {
                    let Some((z, n)) = split_id(&id) else {
                        failed(
                            created,
                            &Resource::Instance(id.clone()),
                            "not a ZONE/NAME id".into(),
                        );
                        continue;
                    };
                    set.spawn(async move { me.delete_instance(&c, &z, &n).await });
                }
                Resource::Disk(id) => {
                    let Some((z, n)) = split_id(&id) else {
                        failed(
                            created,
                            &Resource::Disk(id.clone()),
                            "not a ZONE/NAME id".into(),
                        );
                        continue;
                    };
                    set.spawn(async move { me.delete_disk(&c, &z, &n).await });
                }
                other => failed(created, &other, "not a Compute Engine resource".into()),
            }
        }
        for (launch, answered) in created.launches() {
            let (me, c) = (self.clone(), created.clone());
            set.spawn(async move { me.reap_launch(&c, &launch, answered).await });
        }
        while set.join_next().await.is_some() {}
    }

    fn machine_of(&self, zone: &str, i: &Value, machine_type: &str, spot: bool) -> Machine {
        let nic = &i["networkInterfaces"][0];
        Machine {
            id: format!("{zone}/{}", i["name"].as_str().unwrap_or_default()),
            region: zone.to_string(),
            zone: Some(zone.to_string()),
            machine_type: machine_type.to_string(),
            spot: spot || i["scheduling"]["provisioningModel"] == "SPOT",
            state: i["status"].as_str().unwrap_or("unknown").to_string(),
            public_ip: nic["accessConfigs"][0]["natIP"]
                .as_str()
                .map(str::to_string),
            private_ip: nic["networkIP"].as_str().map(str::to_string),
        }
    }
}

fn failed(created: &Created, r: &Resource, reason: String) {
    tracing::warn!(resource = %r, %reason, "teardown step failed; continuing");
    created.failed(r, &reason);
}

/// `ZONE/NAME` → (zone, name).
fn split_id(id: &str) -> Option<(String, String)> {
    let (z, n) = id.split_once('/')?;
    (!z.is_empty() && !n.is_empty() && !n.contains('/')).then(|| (z.to_string(), n.to_string()))
}

/// The instance name of runner `runner`: `cml-<runner>` when that is a valid Compute Engine
/// name (lowercase letters, digits and `-`, at most 63 characters, not ending in `-`), else
/// its sanitized form cut short and followed by `-` and 16 hex digits of the SHA-256 of the
/// runner name, so two runner names never share an instance name.
pub fn instance_name(runner: &str) -> String {
    let raw = format!("cml-{runner}");
    let valid = raw.len() <= 63
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !raw.ends_with('-');
    if valid {
        return raw;
    }
    let mut head: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(46)
        .collect();
    while head.ends_with('-') {
        head.pop();
    }
    format!("{head}-{}", rules::short_hash(runner))
}

/// `count` random bytes (the system's generator).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // Never expected; fall back to the clock and a counter, still unique per process.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            ^ ((COUNTER.fetch_add(1, Ordering::Relaxed) as u128) << 64)
            ^ std::process::id() as u128;
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    b
}

/// A random UUID (version 4), the form of Compute Engine's `requestId`.
pub fn request_id() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A [`LAUNCH_LABEL`] value unique to one launch (a valid label value).
fn launch_value() -> String {
    random_bytes::<16>()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn tag<'a>(spec: &'a MachineSpec, key: &str) -> &'a str {
    spec.tags
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// The instance metadata items of `spec` (`ssh_public`: an OpenSSH public key line).
fn metadata_items(spec: &MachineSpec, ssh_public: Option<&str>) -> Vec<(String, String)> {
    let mut items = vec![("startup-script".to_string(), spec.user_data.clone())];
    items.extend(rules::owner_metadata(
        &spec.name,
        tag(spec, crate::SCOPE_TAG),
        tag(spec, "cml:labels"),
    ));
    if let Some(key) = ssh_public {
        items.push(("ssh-keys".into(), format!("{SSH_USER}:{key} {SSH_USER}")));
    }
    items
}

fn check_items(spec: &MachineSpec, items: &[(String, String)]) -> Result<(), CloudError> {
    let user = spec.cloud.startup_script.as_ref().map_or(0, |s| s.len());
    let startup_cause = |bytes: usize| {
        let user = user.min(bytes);
        if user > 0 {
            (
                format!(
                    ": --cloud-startup-script makes {user} bytes of the startup script, cml's own part {} bytes",
                    bytes - user
                ),
                "shorten --cloud-startup-script, for example by having it download the longer part".to_string(),
            )
        } else {
            (
                String::new(),
                "pass fewer or shorter runner options and forwarded variables (labels, --docker-volumes, --cloud-metadata)".to_string(),
            )
        }
    };
    for (k, v) in items {
        if v.len() > METADATA_VALUE_LIMIT {
            let (cause, hint) = if k == "startup-script" {
                startup_cause(v.len())
            } else {
                (String::new(), format!("shorten what goes into {k}"))
            };
            return Err(CloudError::MetadataTooLarge {
                what: format!("item {k}"),
                bytes: v.len(),
                limit: METADATA_VALUE_LIMIT,
                cause,
                hint,
            });
        }
    }
    let total: usize = items.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > METADATA_TOTAL_LIMIT {
        let script = items
            .iter()
            .find(|(k, _)| k == "startup-script")
            .map_or(0, |(_, v)| v.len());
        let (cause, hint) = startup_cause(script);
        return Err(CloudError::MetadataTooLarge {
            what: "in total".into(),
            bytes: total,
            limit: METADATA_TOTAL_LIMIT,
            cause,
            hint,
        });
    }
    Ok(())
}

/// Checks the machine's metadata against Compute Engine's limits before anything is created.
pub fn check_metadata(spec: &MachineSpec) -> Result<(), CloudError> {
    let ssh = spec
        .ssh_private_key
        .as_ref()
        .and_then(|k| crate::sshkey::public_key_openssh(k.expose()).ok());
    check_items(spec, &metadata_items(spec, ssh.as_deref()))
}

/// The machine's service account: `--cloud-permission-set` as CML takes it
/// (`EMAIL[,scopes=SCOPE,SCOPE...]`; a scope without `https://` is short for
/// `https://www.googleapis.com/auth/SCOPE`; an account given without scopes gets
/// `cloud-platform`, narrowed by its IAM roles), or by default the project's default compute
/// service account with the `compute` scope.
pub fn service_account(permission_set: Option<&str>) -> Result<(String, Vec<String>), CloudError> {
    let Some(value) = permission_set.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(("default".into(), vec![auth::SCOPE_COMPUTE.into()]));
    };
    let bad = |reason: &str| CloudError::GcpPermissionSet {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let (email, rest) = match value.split_once(',') {
        Some((e, r)) => (e.trim(), Some(r.trim())),
        None => (value, None),
    };
    if email.is_empty()
        || (email != "default" && !email.contains('@'))
        || email.contains(char::is_whitespace)
    {
        return Err(bad(
            "the service account must be an email address (or `default`)",
        ));
    }
    let scopes = match rest {
        None => vec![auth::SCOPE_CLOUD_PLATFORM.to_string()],
        Some(r) => {
            let list = r
                .strip_prefix("scopes=")
                .ok_or_else(|| bad("what follows the email must be scopes=SCOPE,SCOPE"))?;
            let scopes: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    if s.starts_with("https://") {
                        s.to_string()
                    } else {
                        format!("https://www.googleapis.com/auth/{s}")
                    }
                })
                .collect();
            if scopes.is_empty() || scopes.iter().any(|s| s.contains(char::is_whitespace)) {
                return Err(bad("no usable scope after scopes="));
            }
            scopes
        }
    };
    Ok((email.to_string(), scopes))
}

fn labels_json(labels: &[(String, String)]) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<Map<_, _>>(),
    )
}

/// Everything of an insert body but the zone-dependent parts.
struct Plan {
    name: String,
    machine: rules::Machine,
    image: String,
    labels: Vec<(String, String)>,
    items: Vec<(String, String)>,
    account: (String, Vec<String>),
    disk_description: String,
    disk_gb: u32,
    max_run: Option<u64>,
}

impl Plan {
    fn body(&self, zone: &str, spot: bool) -> Value {
        let mut scheduling = Map::new();
        if spot {
            scheduling.insert("provisioningModel".into(), json!("SPOT"));
            scheduling.insert("instanceTerminationAction".into(), json!("DELETE"));
            scheduling.insert("automaticRestart".into(), json!(false));
            scheduling.insert("onHostMaintenance".into(), json!("TERMINATE"));
        } else {
            scheduling.insert("provisioningModel".into(), json!("STANDARD"));
        }
        if self.machine.accelerator.is_some() {
            // Machines with GPUs cannot live-migrate.
            scheduling.insert("onHostMaintenance".into(), json!("TERMINATE"));
        }
        if let Some(secs) = self.max_run {
            scheduling.insert(
                "maxRunDuration".into(),
                json!({"seconds": secs.to_string()}),
            );
            scheduling.insert("instanceTerminationAction".into(), json!("DELETE"));
        }
        let labels = labels_json(&self.labels);
        let mut body = json!({
            "name": self.name,
            "machineType": format!("zones/{zone}/machineTypes/{}", self.machine.machine_type),
            "labels": labels,
            "metadata": {"items": self.items.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>()},
            "disks": [{
                "boot": true,
                "autoDelete": true,
                "initializeParams": {
                    "sourceImage": self.image,
                    "diskSizeGb": self.disk_gb.to_string(),
                    "labels": labels,
                    "description": self.disk_description,
                },
            }],
            "networkInterfaces": [{
                "network": "global/networks/default",
                "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}],
            }],
            "serviceAccounts": [{"email": self.account.0, "scopes": self.account.1}],
            "scheduling": Value::Object(scheduling),
        });
        if let Some(a) = &self.machine.accelerator {
            body["guestAccelerators"] = json!([{
                "acceleratorType": format!("zones/{zone}/acceleratorTypes/{}", a.name),
                "acceleratorCount": a.count,
            }]);
        }
        body
    }
}

/// The quota metric named in a quota error message (`Quota 'CPUS' exceeded. ...`).
fn quota_metric(message: &str) -> String {
    message
        .split_once("Quota '")
        .and_then(|(_, r)| r.split_once('\''))
        .map(|(m, _)| m.to_string())
        .unwrap_or_else(|| "(unnamed)".into())
}

/// The owner and scope a disk's description records (written at creation).
fn description_fields(d: &Value) -> (Option<String>, Option<String>) {
    let v: Value = d["description"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let f = |k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
    (f("cml-runner"), f("cml-repo"))
}

fn metadata_item(i: &Value, key: &str) -> Option<String> {
    i["metadata"]["items"]
        .as_array()?
        .iter()
        .find(|it| it["key"] == key)
        .and_then(|it| it["value"].as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Time since `creationTimestamp` (RFC 3339).
fn age_of(v: &Value) -> Option<Duration> {
    let t = time::OffsetDateTime::parse(
        v["creationTimestamp"].as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    let secs = (time::OffsetDateTime::now_utc() - t).whole_milliseconds();
    Some(Duration::from_millis(secs.max(0) as u64))
}

/// Compute Engine's instance status in the vocabulary of [`OwnedResource::state`].
pub fn instance_state(status: &str) -> &'static str {
    match status {
        "PROVISIONING" | "STAGING" | "REPAIRING" => "pending",
        "RUNNING" => "running",
        "STOPPING" | "SUSPENDING" => "stopping",
        "TERMINATED" | "SUSPENDED" | "STOPPED" => "stopped",
        _ => "pending",
    }
}

/// The error for what teardown left, or `Ok` when nothing but instances being deleted is.
fn teardown_outcome(
    zone: &str,
    created: &Created,
    timeout: Option<Duration>,
) -> Result<(), CloudError> {
    let left = created.left();
    let unknown: Vec<String> = created
        .launches()
        .into_iter()
        .map(|(v, _)| {
            format!("  - whatever the launch request labelled {LAUNCH_LABEL}={v} created (not looked up)")
        })
        .collect();
    let deleting: Vec<String> = left
        .iter()
        .filter(|l| l.deleting)
        .map(|l| l.resource.to_string())
        .collect();
    if !deleting.is_empty() {
        tracing::info!(resources = ?deleting, "deletion accepted; Compute Engine finishes it on its own");
    }
    if unknown.is_empty() && left.iter().all(|l| l.deleting && l.failure.is_none()) {
        return Ok(());
    }
    let mut lines: Vec<String> = left
        .iter()
        .filter(|l| !l.deleting || l.failure.is_some())
        .map(|l| format!("  - {l}"))
        .collect();
    lines.extend(unknown);
    Err(CloudError::GcpIncomplete {
        zone: zone.to_string(),
        why: match timeout {
            Some(t) => format!(" within {} s", t.as_secs_f64().ceil() as u64),
            None => String::new(),
        },
        left: lines.join("\n"),
    })
}

#[async_trait]
impl Provider for GcpProvider {
    fn name(&self) -> &'static str {
        "gcp"
    }

    /// The zone.
    fn region(&self) -> &str {
        &self.zone
    }

    async fn create(&self, spec: &MachineSpec, created: &Created) -> Result<Machine, CloudError> {
        let c = &spec.cloud;
        let launch_fail = |reason: String| CloudError::Launch {
            machine_type: c.machine_type.clone(),
            region: self.zone.clone(),
            reason,
        };
        // Everything that can fail without creating anything comes first.
        let mut machine =
            rules::machine(&c.machine_type, None).map_err(|e| launch_fail(e.to_string()))?;
        if machine.accelerator.is_none() && c.gpu.is_some() {
            machine = rules::machine(&c.machine_type, c.gpu.as_deref())
                .map_err(|e| launch_fail(e.to_string()))?;
        }
        let image = rules::image(c.image.as_deref(), &machine).map_err(|e| CloudError::Image {
            image: c.image.clone().unwrap_or_default(),
            region: self.zone.clone(),
            reason: e.to_string(),
        })?;
        let ssh_public = match &spec.ssh_private_key {
            Some(k) => Some(crate::sshkey::public_key_openssh(k.expose())?),
            None => None,
        };
        let items = metadata_items(spec, ssh_public.as_deref());
        check_items(spec, &items)?;
        let account = service_account(c.permission_set.as_deref())?;
        if c.spot_price.is_some() {
            tracing::warn!("--cloud-spot-price has no meaning on Compute Engine (spot machines are billed at the current spot price); ignored");
        }
        let repo = tag(spec, crate::SCOPE_TAG);
        let launch = launch_value();
        let mut labels = rules::resource_labels(&spec.name, repo, &c.metadata);
        labels.truncate(63);
        labels.push((LAUNCH_LABEL.into(), launch.clone()));
        let max_run = spec.max_lifetime.and_then(|d| {
            let secs = d.as_secs().max(MAX_RUN_RANGE.0);
            if secs > MAX_RUN_RANGE.1 {
                tracing::debug!(secs, "--cloud-max-lifetime is longer than Compute Engine's longest maxRunDuration; the startup script alone enforces it");
                None
            } else {
                Some(secs)
            }
        });
        let plan = Plan {
            name: instance_name(&spec.name),
            machine: machine.clone(),
            image,
            labels,
            items,
            account,
            disk_description: json!({"cml-runner": spec.name, "cml-repo": repo}).to_string(),
            disk_gb: c.hdd_size_gb,
            max_run,
        };
        let mut zones = vec![self.zone.clone()];
        zones.extend(rules::fallback_zones(&self.zone));
        let mut models = vec![c.spot];
        if c.spot && c.spot_fallback {
            models.push(false);
        }
        let mut exhausted: Vec<String> = Vec::new();
        let mut last_reason = String::new();
        created.launch_sent(&launch);
        for &spot in &models {
            if !spot && c.spot {
                tracing::warn!(zones = ?zones, "no zone had spot capacity; launching an on-demand machine (--cloud-spot-fallback)");
            }
            for zone in &zones {
                let body = plan.body(zone, spot);
                let id = format!("{zone}/{}", plan.name);
                let op = match self.api.insert_instance(zone, &body, &request_id()).await {
                    Ok(op) => op,
                    Err(ApiError::Credentials(e)) => {
                        created.launch_answered(&launch);
                        created.launch_resolved(&launch);
                        return Err(*e);
                    }
                    Err(e) if e.refused() => {
                        let reason = e.to_string();
                        if e.reason() == "quotaExceeded" || e.reason() == "QUOTA_EXCEEDED" {
                            created.launch_answered(&launch);
                            let metric = match &e {
                                ApiError::Status { message, .. } => quota_metric(message),
                                _ => String::new(),
                            };
                            return Err(CloudError::GcpQuota {
                                metric,
                                region: self.zone_region.clone(),
                                reason,
                            });
                        }
                        if CAPACITY_CODES.iter().any(|c| reason.contains(c)) {
                            exhausted.push(zone.clone());
                            last_reason = reason;
                            continue;
                        }
                        created.launch_answered(&launch);
                        return Err(launch_fail(reason));
                    }
                    // No answer (after retries with the same request id): whatever it made is
                    // found by its launch label.
                    Err(e) => return Err(launch_fail(e.to_string())),
                };
                created.push(Resource::Instance(id.clone()));
                match self.wait_operation(zone, &op).await {
                    Ok(None) => {
                        created.launch_answered(&launch);
                        let machine = Machine {
                            id,
                            region: zone.clone(),
                            zone: Some(zone.clone()),
                            machine_type: machine.to_string(),
                            spot,
                            state: "PROVISIONING".into(),
                            public_ip: None,
                            private_ip: None,
                        };
                        tracing::info!(instance = %machine.id, machine_type = %machine.machine_type, spot, "instance created");
                        return Ok(machine);
                    }
                    Ok(Some((code, message))) => {
                        self.forget_if_gone(created, zone, &plan.name).await;
                        let reason = format!("{code}: {message}");
                        if code == "QUOTA_EXCEEDED" {
                            created.launch_answered(&launch);
                            return Err(CloudError::GcpQuota {
                                metric: quota_metric(&message),
                                region: self.zone_region.clone(),
                                reason,
                            });
                        }
                        if CAPACITY_CODES.contains(&code.as_str()) {
                            tracing::info!(zone = %zone, spot, "no capacity in this zone; trying the next");
                            exhausted.push(zone.clone());
                            last_reason = reason;
                            continue;
                        }
                        created.launch_answered(&launch);
                        return Err(launch_fail(reason));
                    }
                    Err(reason) => {
                        // The instance is recorded: teardown deletes it.
                        created.launch_answered(&launch);
                        return Err(launch_fail(reason));
                    }
                }
            }
        }
        created.launch_answered(&launch);
        let spot_only = c.spot && !c.spot_fallback;
        Err(CloudError::GcpCapacity {
            region: self.zone_region.clone(),
            what: format!(
                "a {}{machine} machine",
                if spot_only { "spot " } else { "" }
            ),
            zones: exhausted.join(", "),
            reason: last_reason,
            hint: if spot_only {
                "pass --cloud-spot-fallback to accept an on-demand machine, try another region or machine type, or leave out --cloud-spot".into()
            } else {
                "try another region (--cloud-region) or machine type (--cloud-type), or try again later".into()
            },
        })
    }

    async fn wait_running(
        &self,
        machine: &Machine,
        timeout: Duration,
    ) -> Result<Machine, CloudError> {
        let (zone, name) = split_id(&machine.id).ok_or_else(|| CloudError::Wait {
            id: machine.id.clone(),
            reason: "not a ZONE/NAME instance id".into(),
        })?;
        let deadline = Instant::now() + timeout;
        let mut last = machine.state.clone();
        loop {
            match self.api.get_instance(&zone, &name).await {
                Ok(None) => last = "not visible (deleted?)".into(),
                Ok(Some(i)) => {
                    let status = i["status"].as_str().unwrap_or("unknown").to_string();
                    match status.as_str() {
                        "RUNNING" => {
                            return Ok(self.machine_of(
                                &zone,
                                &i,
                                &machine.machine_type,
                                machine.spot,
                            ))
                        }
                        "STOPPING" | "TERMINATED" | "STOPPED" | "SUSPENDING" | "SUSPENDED" => {
                            let why = i["statusMessage"].as_str().unwrap_or("no reason given");
                            return Err(CloudError::Wait {
                                id: machine.id.clone(),
                                reason: format!("the instance is {status}: {why}"),
                            });
                        }
                        _ => last = status,
                    }
                }
                Err(ApiError::Credentials(e)) => return Err(*e),
                Err(e) => {
                    tracing::debug!(instance = %machine.id, error = %e, "reading the instance failed; retrying")
                }
            }
            if Instant::now() >= deadline {
                return Err(CloudError::WaitTimeout {
                    id: machine.id.clone(),
                    seconds: timeout.as_secs(),
                    state: last,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(self.poll_interval.min(left)).await;
        }
    }

    async fn destroy(&self, created: &Created) -> Result<(), CloudError> {
        let timed_out = tokio::time::timeout(self.destroy_timeout, self.destroy_all(created))
            .await
            .is_err();
        teardown_outcome(
            &self.zone,
            created,
            timed_out.then_some(self.destroy_timeout),
        )
    }

    async fn list_owned(&self) -> Result<Vec<OwnedResource>, CloudError> {
        let fail = |e: ApiError| {
            e.into_cloud(|reason| CloudError::List {
                region: self.zone_region.clone(),
                reason,
            })
        };
        let filter = format!("labels.{}:*", rules::ID_LABEL);
        let in_region = |z: &str| rules::region_of_zone(z) == Some(self.zone_region.as_str());
        let instances: Vec<(String, Value)> = self
            .api
            .aggregated_instances(&filter)
            .await
            .map_err(fail)?
            .into_iter()
            .filter(|(z, _)| in_region(z))
            .collect();
        let disks: Vec<(String, Value)> = self
            .api
            .aggregated_disks(&filter)
            .await
            .map_err(fail)?
            .into_iter()
            .filter(|(z, _)| in_region(z))
            .collect();
        let label = |v: &Value| v["labels"][rules::ID_LABEL].as_str().map(str::to_string);
        let mut found = Vec::new();
        for (zone, i) in &instances {
            let Some(name) = i["name"].as_str() else {
                continue;
            };
            let Some(owner) = metadata_item(i, "cml-runner").or_else(|| label(i)) else {
                continue;
            };
            found.push(OwnedResource {
                resource: Resource::Instance(format!("{zone}/{name}")),
                owner,
                scope: metadata_item(i, "cml-repo"),
                state: Some(instance_state(i["status"].as_str().unwrap_or_default()).into()),
                age: age_of(i),
                used_by: None,
            });
        }
        for (zone, d) in &disks {
            let Some(name) = d["name"].as_str() else {
                continue;
            };
            let users: Vec<&str> = d["users"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            // The instance using it, when it is one of ours.
            let user = users.iter().find_map(|u| {
                instances.iter().find(|(_, i)| {
                    i["selfLink"].as_str() == Some(u)
                        || u.ends_with(&format!(
                            "/zones/{zone}/instances/{}",
                            i["name"].as_str().unwrap_or("\0")
                        ))
                })
            });
            let (d_owner, d_scope) = description_fields(d);
            let owner = user
                .and_then(|(_, i)| metadata_item(i, "cml-runner"))
                .or(d_owner)
                .or_else(|| label(d));
            let Some(owner) = owner else { continue };
            let scope = user
                .and_then(|(_, i)| metadata_item(i, "cml-repo"))
                .or(d_scope);
            found.push(OwnedResource {
                resource: Resource::Disk(format!("{zone}/{name}")),
                owner,
                scope,
                state: Some(
                    if users.is_empty() {
                        "available"
                    } else {
                        "in-use"
                    }
                    .into(),
                ),
                age: age_of(d),
                used_by: None,
            });
        }
        Ok(found)
    }

    async fn console_output(&self, machine: &Machine) -> Result<Option<String>, CloudError> {
        let (zone, name) = split_id(&machine.id).ok_or_else(|| CloudError::Console {
            id: machine.id.clone(),
            reason: "not a ZONE/NAME instance id".into(),
        })?;
        match self.api.serial_port_output(&zone, &name).await {
            Ok(s) if s.is_empty() => Ok(None),
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into_cloud(|reason| CloudError::Console {
                id: machine.id.clone(),
                reason,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_valid_and_distinct() {
        assert_eq!(instance_name("runner-1"), "cml-runner-1");
        let long = "x".repeat(100);
        for n in ["My_Runner.1", "UPPER", &long, "a--", "ünïcode"] {
            let got = instance_name(n);
            assert!(got.len() <= 63, "{got}");
            assert!(got.starts_with("cml-"), "{got}");
            assert!(
                got.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{got}"
            );
            assert!(!got.ends_with('-'), "{got}");
        }
        assert_ne!(instance_name("A"), instance_name("a_"));
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let a = request_id();
        let b = request_id();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(
            parts[3].chars().next(),
            Some('8' | '9' | 'a' | 'b')
        ));
    }

    #[test]
    fn permission_sets_parse_as_cml_writes_them() {
        assert_eq!(
            service_account(None).unwrap(),
            ("default".to_string(), vec![auth::SCOPE_COMPUTE.to_string()])
        );
        assert_eq!(
            service_account(Some("sa@p.iam.gserviceaccount.com,scopes=compute,https://www.googleapis.com/auth/devstorage.read_only")).unwrap(),
            (
                "sa@p.iam.gserviceaccount.com".to_string(),
                vec![
                    "https://www.googleapis.com/auth/compute".to_string(),
                    "https://www.googleapis.com/auth/devstorage.read_only".to_string()
                ]
            )
        );
        assert_eq!(
            service_account(Some("sa@p.iam.gserviceaccount.com"))
                .unwrap()
                .1,
            [auth::SCOPE_CLOUD_PLATFORM]
        );
        for bad in [
            "arn:aws:iam::1:instance-profile/x",
            "sa@p,roles=x",
            "sa@p,scopes=",
        ] {
            let e = service_account(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("--cloud-permission-set"), "{e}");
            assert!(e.contains("nothing was created"), "{e}");
        }
    }

    #[test]
    fn states_map_to_the_shared_vocabulary() {
        for (s, want) in [
            ("PROVISIONING", "pending"),
            ("STAGING", "pending"),
            ("RUNNING", "running"),
            ("STOPPING", "stopping"),
            ("SUSPENDING", "stopping"),
            ("TERMINATED", "stopped"),
            ("SUSPENDED", "stopped"),
        ] {
            assert_eq!(instance_state(s), want, "{s}");
        }
    }

    #[test]
    fn quota_metrics_are_read_from_messages() {
        assert_eq!(
            quota_metric("Quota 'CPUS' exceeded.  Limit: 8.0 in region us-east1."),
            "CPUS"
        );
    }
}
