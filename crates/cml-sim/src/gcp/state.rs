//! The simulated project: instances, disks, zone operations, tokens and the knobs tests turn.
//!
//! Time moves lazily: every request and every accessor first calls [`State::advance`], which
//! carries out every transition whose time has come, at the instant it was due (so results do
//! not depend on how often anyone looks).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Instant, SystemTime};

use serde_json::{json, Map, Value};

use super::errors::{ApiError, OpError};
use super::filter::Filter;
use super::{Capacity, GcpConfig, GcpFault, GcpRequest, QuotaDelivery};
use crate::util::random_hex;

/// The access scopes that allow changes (`compute`, `cloud-platform`) and reads.
pub const SCOPE_CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const SCOPE_COMPUTE: &str = "https://www.googleapis.com/auth/compute";
pub const SCOPE_COMPUTE_READONLY: &str = "https://www.googleapis.com/auth/compute.readonly";
pub const SCOPE_CLOUD_PLATFORM_READONLY: &str =
    "https://www.googleapis.com/auth/cloud-platform.read-only";

/// Images served by default: Canonical's Ubuntu families in `ubuntu-os-cloud`.
const DEFAULT_IMAGES: &[(&str, &str, &str, &str)] = &[
    // project, family, image name, architecture
    (
        "ubuntu-os-cloud",
        "ubuntu-2404-lts-amd64",
        "ubuntu-2404-noble-amd64-v20261101",
        "X86_64",
    ),
    (
        "ubuntu-os-cloud",
        "ubuntu-2404-lts-arm64",
        "ubuntu-2404-noble-arm64-v20261101",
        "ARM64",
    ),
    (
        "ubuntu-os-cloud",
        "ubuntu-2204-lts",
        "ubuntu-2204-jammy-v20261101",
        "X86_64",
    ),
    (
        "ubuntu-os-cloud",
        "ubuntu-2204-lts-arm64",
        "ubuntu-2204-jammy-arm64-v20261101",
        "ARM64",
    ),
];

/// GPU models Compute Engine offers (accelerator type names).
const ACCELERATORS: &[&str] = &[
    "nvidia-tesla-k80",
    "nvidia-tesla-p4",
    "nvidia-tesla-p100",
    "nvidia-tesla-v100",
    "nvidia-tesla-t4",
    "nvidia-tesla-a100",
    "nvidia-a100-80gb",
    "nvidia-l4",
    "nvidia-h100-80gb",
];

const DISK_TYPES: &[&str] = &[
    "pd-standard",
    "pd-balanced",
    "pd-ssd",
    "pd-extreme",
    "hyperdisk-balanced",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    Stop,
    Delete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Provisioning,
    Staging,
    Running,
    Stopping(After),
    Terminated,
    /// Being deleted by an operation; gone when the operation is done.
    Deleting,
}

impl Phase {
    fn status(self) -> &'static str {
        match self {
            Phase::Provisioning => "PROVISIONING",
            Phase::Staging => "STAGING",
            Phase::Running => "RUNNING",
            Phase::Stopping(_) | Phase::Deleting => "STOPPING",
            Phase::Terminated => "TERMINATED",
        }
    }
}

#[derive(Clone, Debug)]
struct AttachedDisk {
    disk: u64,
    device_name: String,
    boot: bool,
    auto_delete: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Inst {
    pub id: u64,
    pub name: String,
    pub zone: String,
    /// The accepted insert body (what the client asked for).
    spec: Value,
    machine_type: String,
    phase: Phase,
    phase_until: Option<Instant>,
    created: SystemTime,
    last_start: Option<SystemTime>,
    last_stop: Option<SystemTime>,
    run_deadline: Option<Instant>,
    pub preempted: bool,
    pub serial: String,
    network_ip: String,
    nat_ip: String,
    disks: Vec<AttachedDisk>,
    /// The service account (email, scopes), if the instance has one.
    pub service_account: Option<(String, Vec<String>)>,
    /// The insert operation will fail: the instance never leaves PROVISIONING.
    doomed: bool,
    fingerprint: String,
}

impl Inst {
    /// `instance/attributes/*` of the metadata server: the metadata items.
    pub fn attributes(&self) -> Vec<(String, String)> {
        self.spec["metadata"]["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| {
                Some((
                    i["key"].as_str()?.to_string(),
                    i["value"].as_str().unwrap_or_default().to_string(),
                ))
            })
            .collect()
    }

    pub fn machine_type(&self) -> &str {
        &self.machine_type
    }

    pub fn network_ip(&self) -> &str {
        &self.network_ip
    }

    /// The external address while the instance runs (ephemeral: released when it stops).
    pub fn external_ip(&self) -> Option<&str> {
        self.has_access_config().then_some(self.nat_ip.as_str())
    }

    fn has_access_config(&self) -> bool {
        self.spec["networkInterfaces"][0]["accessConfigs"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    }
}

#[derive(Clone, Debug)]
struct Disk {
    id: u64,
    name: String,
    zone: String,
    size_gb: u64,
    disk_type: String,
    source_image: String,
    source_image_id: u64,
    architecture: String,
    labels: Map<String, Value>,
    /// `initializeParams.description`, if given.
    description: Option<String>,
    /// The instance using it (id), if attached.
    user: Option<u64>,
    created: SystemTime,
    deleting: bool,
    label_fingerprint: String,
}

#[derive(Clone, Debug)]
enum Target {
    Instance(u64),
    Disk(u64),
}

#[derive(Clone, Debug)]
struct Op {
    id: u64,
    name: String,
    zone: String,
    op_type: &'static str,
    target_link: String,
    target_id: u64,
    target: Target,
    user: String,
    client_id: Option<String>,
    created: Instant,
    insert_time: SystemTime,
    error: Option<OpError>,
    finalized: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub principal: String,
    pub scopes: Vec<String>,
    pub expires: Instant,
}

#[derive(Clone, Debug)]
pub(crate) struct SaKey {
    pub email: String,
    pub key_id: String,
    pub public_pem: String,
    pub disabled: bool,
}

#[derive(Clone, Debug)]
struct Image {
    project: String,
    family: String,
    name: String,
    architecture: String,
    id: u64,
}

pub(crate) struct FaultRule {
    pub method: String,
    pub fault: GcpFault,
    pub left: Option<usize>,
}

/// Everything the simulator knows.
pub(crate) struct State {
    pub cfg: GcpConfig,
    pub base_url: String,
    instances: BTreeMap<u64, Inst>,
    /// Deleted instances, kept for their metadata servers (a machine outlives its record by
    /// a moment) and for [`super::GcpSim::deleted_instances`].
    removed: BTreeMap<u64, Inst>,
    disks: BTreeMap<u64, Disk>,
    ops: Vec<Op>,
    pub tokens: HashMap<String, Token>,
    pub keys: Vec<SaKey>,
    pub denied: BTreeSet<(String, String)>,
    pub capacity: BTreeMap<String, Capacity>,
    pub quotas: BTreeMap<(String, String), f64>,
    pub quota_delivery: QuotaDelivery,
    pub faults: Vec<FaultRule>,
    pub requests: Vec<GcpRequest>,
    /// Access tokens the token endpoint granted.
    pub oauth_grants: usize,
    images: Vec<Image>,
    next_ip: u32,
}

/// A resource path relative to the service path (`projects/P/zones/Z/instances/N`), from a
/// full URL of any host, a path with `projects/`, or a project-relative path (`zones/...`).
pub fn resource_path(project: &str, url: &str) -> String {
    let rest = match url.find("/compute/v1/") {
        Some(i) => &url[i + "/compute/v1/".len()..],
        None => url.trim_start_matches('/'),
    };
    if rest.starts_with("projects/") {
        rest.to_string()
    } else {
        format!("projects/{project}/{rest}")
    }
}

/// Compute Engine's timestamp form: RFC 3339 with milliseconds and a -07:00 offset
/// (`2026-01-01T05:00:00.000-07:00`).
pub fn ts(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t)
        .to_offset(time::UtcOffset::from_hms(-7, 0, 0).unwrap_or(time::UtcOffset::UTC));
    dt.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory]:[offset_minute]"
    ))
    .unwrap_or_default()
}

/// A random 19-digit resource id.
pub fn new_id() -> u64 {
    let h = u64::from_str_radix(&random_hex(15), 16).unwrap_or(1);
    1_000_000_000_000_000_000 + h % 8_000_000_000_000_000_000
}

fn fingerprint() -> String {
    use base64::Engine;
    let bytes = hex::decode(random_hex(16)).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// vCPUs of a machine type, for quotas; `None` for a type Compute Engine does not have.
pub fn machine_cpus(t: &str) -> Option<u32> {
    let parts: Vec<&str> = t.split('-').collect();
    // custom-CPU-MEM[-ext], FAMILY-custom-CPU-MEM[-ext]
    if let Some(i) = parts.iter().position(|p| *p == "custom") {
        let rest = &parts[i + 1..];
        let ext = rest.len() == 3 && rest[2] == "ext";
        if (rest.len() == 2 || ext) && i <= 1 {
            let cpus: u32 = rest[0].parse().ok()?;
            let mem: u32 = rest[1].parse().ok()?;
            return (cpus > 0 && mem > 0 && mem.is_multiple_of(256)).then_some(cpus);
        }
        return None;
    }
    match parts.as_slice() {
        ["e2" | "f1" | "g1", "micro" | "small" | "medium"] => {
            Some(if parts[0] == "e2" { 2 } else { 1 })
        }
        [family, kind, n]
            if family.chars().all(|c| c.is_ascii_alphanumeric())
                && matches!(
                    *kind,
                    "standard"
                        | "highmem"
                        | "highcpu"
                        | "megamem"
                        | "ultramem"
                        | "highgpu"
                        | "megagpu"
                        | "ultragpu"
                ) =>
        {
            let n = n.trim_end_matches('g');
            let n: u32 = n.parse().ok()?;
            (n > 0).then_some(if kind.ends_with("gpu") { n * 12 } else { n })
        }
        _ => None,
    }
}

/// The quota metric of an accelerator (`nvidia-tesla-t4` → `NVIDIA_T4_GPUS`).
pub fn gpu_metric(accelerator: &str) -> String {
    format!(
        "{}_GPUS",
        accelerator
            .replace("tesla-", "")
            .replace('-', "_")
            .to_ascii_uppercase()
    )
}

fn label_key_ok(k: &str) -> bool {
    let mut cs = k.chars();
    k.len() <= 63
        && cs.next().is_some_and(|c| c.is_ascii_lowercase())
        && cs.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn label_value_ok(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Compute Engine's label rules, on the labels at `field`.
fn check_labels(field: &str, labels: &Value) -> Result<Map<String, Value>, ApiError> {
    let Some(map) = labels.as_object() else {
        return Ok(Map::new());
    };
    if map.len() > 64 {
        return Err(ApiError::invalid_field(
            field,
            "",
            "A resource can have at most 64 labels.",
        ));
    }
    for (k, v) in map {
        if !label_key_ok(k) {
            return Err(ApiError::invalid_field(field, "", &format!("Label key '{k}' violates format constraints. The key must start with a lowercase character, can only contain lowercase letters, numeric characters, underscores and dashes. The key can be at most 63 characters long. International characters are allowed.")));
        }
        let v = v.as_str().unwrap_or_default();
        if !label_value_ok(v) {
            return Err(ApiError::invalid_field(field, "", &format!("Label value '{v}' violates format constraints. The value can only contain lowercase letters, numeric characters, underscores and dashes. The value can be at most 63 characters long. International characters are allowed.")));
        }
    }
    Ok(map.clone())
}

/// An int64 field accepted as a JSON number or string.
fn int64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl State {
    pub fn new(cfg: GcpConfig, base_url: String) -> State {
        let images = DEFAULT_IMAGES
            .iter()
            .map(|(p, f, n, a)| Image {
                project: p.to_string(),
                family: f.to_string(),
                name: n.to_string(),
                architecture: a.to_string(),
                id: new_id(),
            })
            .collect();
        State {
            cfg,
            base_url,
            instances: BTreeMap::new(),
            removed: BTreeMap::new(),
            disks: BTreeMap::new(),
            ops: Vec::new(),
            tokens: HashMap::new(),
            keys: Vec::new(),
            denied: BTreeSet::new(),
            capacity: BTreeMap::new(),
            quotas: BTreeMap::new(),
            quota_delivery: QuotaDelivery::Operation,
            faults: Vec::new(),
            requests: Vec::new(),
            oauth_grants: 0,
            images,
            next_ip: 2,
        }
    }

    /// `{base}/compute/v1/projects/{project}/{rest}`
    pub fn link(&self, rest: &str) -> String {
        format!(
            "{}/compute/v1/projects/{}/{rest}",
            self.base_url, self.cfg.project
        )
    }

    pub fn region_of(&self, zone: &str) -> Option<&str> {
        self.cfg
            .regions
            .iter()
            .find(|(_, zs)| zs.iter().any(|z| z == zone))
            .map(|(r, _)| r.as_str())
    }

    pub fn is_project(&self, p: &str) -> bool {
        p == self.cfg.project || p == self.cfg.project_number.to_string()
    }

    pub fn add_image(&mut self, project: &str, family: &str, name: &str, arch: &str) {
        self.images.push(Image {
            project: project.into(),
            family: family.into(),
            name: name.into(),
            architecture: arch.into(),
            id: new_id(),
        });
    }

    // ---- time ----------------------------------------------------------------------------

    /// Carries out every transition due by `now`.
    pub fn advance(&mut self, now: Instant) {
        let step = self.cfg.operation_step;
        // Operations finish (in the order they were made).
        for i in 0..self.ops.len() {
            let done_at = self.ops[i].created + step * 2;
            if self.ops[i].finalized || done_at > now {
                continue;
            }
            self.ops[i].finalized = true;
            let op = self.ops[i].clone();
            match (op.op_type, &op.target) {
                ("insert", Target::Instance(id)) if op.error.is_some() => {
                    if let Some(inst) = self.instances.remove(id) {
                        for d in &inst.disks {
                            self.disks.remove(&d.disk);
                        }
                    }
                }
                ("delete", Target::Instance(id)) => self.remove_instance(*id, done_at),
                ("delete", Target::Disk(id)) => {
                    self.disks.remove(id);
                }
                _ => {}
            }
        }
        // Instances move through their states.
        let ids: Vec<u64> = self.instances.keys().copied().collect();
        for id in ids {
            for _ in 0..16 {
                let Some(inst) = self.instances.get_mut(&id) else {
                    break;
                };
                if let (Phase::Running, Some(d)) = (inst.phase, inst.run_deadline) {
                    if d <= now {
                        // maxRunDuration: Compute Engine stops or deletes the instance.
                        let action =
                            match inst.spec["scheduling"]["instanceTerminationAction"].as_str() {
                                Some("DELETE") => After::Delete,
                                _ => After::Stop,
                            };
                        inst.phase = Phase::Stopping(action);
                        inst.phase_until = Some(d + self.cfg.status_step);
                        inst.run_deadline = None;
                        continue;
                    }
                }
                let Some(until) = inst.phase_until.filter(|u| *u <= now) else {
                    break;
                };
                let at = SystemTime::now()
                    .checked_sub(now.saturating_duration_since(until))
                    .unwrap_or_else(SystemTime::now);
                match inst.phase {
                    Phase::Provisioning => {
                        inst.phase = Phase::Staging;
                        inst.phase_until = Some(until + self.cfg.status_step);
                    }
                    Phase::Staging => {
                        inst.phase = Phase::Running;
                        inst.phase_until = None;
                        inst.last_start = Some(at);
                        inst.run_deadline = inst.spec["scheduling"]["maxRunDuration"]
                            .get("seconds")
                            .and_then(int64)
                            .map(|s| until + self.cfg.max_run_second * s.max(0) as u32);
                    }
                    Phase::Stopping(After::Stop) => {
                        inst.phase = Phase::Terminated;
                        inst.phase_until = None;
                        inst.last_stop = Some(at);
                    }
                    Phase::Stopping(After::Delete) => {
                        self.remove_instance(id, until);
                        break;
                    }
                    _ => {
                        inst.phase_until = None;
                    }
                }
            }
        }
    }

    /// The instance is gone: auto-delete disks go with it, the others are detached.
    fn remove_instance(&mut self, id: u64, _at: Instant) {
        let Some(inst) = self.instances.remove(&id) else {
            return;
        };
        for d in &inst.disks {
            if d.auto_delete {
                self.disks.remove(&d.disk);
            } else if let Some(disk) = self.disks.get_mut(&d.disk) {
                disk.user = None;
            }
        }
        self.removed.insert(id, inst);
    }

    // ---- hooks ---------------------------------------------------------------------------

    fn find_mut(&mut self, zone: &str, name: &str) -> Option<&mut Inst> {
        self.instances
            .values_mut()
            .find(|i| i.zone == zone && (i.name == name || i.id.to_string() == name))
    }

    pub fn find(&self, zone: &str, name: &str) -> Option<&Inst> {
        self.instances
            .values()
            .find(|i| i.zone == zone && (i.name == name || i.id.to_string() == name))
    }

    /// A live or removed instance by id (for metadata servers).
    pub fn instance_by_id(&self, id: u64) -> Option<&Inst> {
        self.instances.get(&id).or_else(|| self.removed.get(&id))
    }

    pub fn power_off(&mut self, zone: &str, name: &str) -> bool {
        let step = self.cfg.status_step;
        match self.find_mut(zone, name) {
            Some(i) if matches!(i.phase, Phase::Running | Phase::Staging) => {
                i.phase = Phase::Stopping(After::Stop);
                i.phase_until = Some(Instant::now() + step);
                i.run_deadline = None;
                true
            }
            _ => false,
        }
    }

    pub fn preempt(&mut self, zone: &str, name: &str) -> bool {
        let notice = self.cfg.preemption_notice;
        match self.find_mut(zone, name) {
            Some(i)
                if matches!(i.phase, Phase::Running | Phase::Staging)
                    && (i.spec["scheduling"]["provisioningModel"] == "SPOT"
                        || i.spec["scheduling"]["preemptible"] == true) =>
            {
                let action = match i.spec["scheduling"]["instanceTerminationAction"].as_str() {
                    Some("DELETE") => After::Delete,
                    _ => After::Stop,
                };
                i.preempted = true;
                i.phase = Phase::Stopping(action);
                i.phase_until = Some(Instant::now() + notice);
                i.run_deadline = None;
                true
            }
            _ => false,
        }
    }

    pub fn append_serial(&mut self, zone: &str, name: &str, text: &str) -> bool {
        match self.find_mut(zone, name) {
            Some(i) => {
                i.serial.push_str(text);
                true
            }
            None => false,
        }
    }

    /// A disk made outside the API (a leaked one, for cleanup tests).
    pub fn add_disk(
        &mut self,
        zone: &str,
        name: &str,
        size_gb: u64,
        labels: Map<String, Value>,
        description: Option<String>,
    ) {
        let img = &self.images[0];
        let id = new_id();
        self.disks.insert(
            id,
            Disk {
                id,
                name: name.into(),
                zone: zone.into(),
                size_gb,
                disk_type: "pd-standard".into(),
                source_image: format!(
                    "{}/compute/v1/projects/{}/global/images/{}",
                    self.base_url, img.project, img.name
                ),
                source_image_id: img.id,
                architecture: img.architecture.clone(),
                labels,
                description,
                user: None,
                created: SystemTime::now(),
                deleting: false,
                label_fingerprint: fingerprint(),
            },
        );
    }

    // ---- rendering -----------------------------------------------------------------------

    pub fn render_instance(&self, i: &Inst) -> Value {
        let zone_rest = format!("zones/{}", i.zone);
        let mut v = json!({
            "kind": "compute#instance",
            "id": i.id.to_string(),
            "creationTimestamp": ts(i.created),
            "name": i.name,
            "tags": {"fingerprint": "42WmSpB8rSM="},
            "machineType": self.link(&format!("{zone_rest}/machineTypes/{}", i.machine_type)),
            "status": i.phase.status(),
            "zone": self.link(&zone_rest),
            "canIpForward": i.spec["canIpForward"].as_bool().unwrap_or(false),
            "selfLink": self.link(&format!("{zone_rest}/instances/{}", i.name)),
            "cpuPlatform": if i.phase == Phase::Running { "Intel Broadwell" } else { "Unknown CPU Platform" },
            "labelFingerprint": fingerprint(),
            "startRestricted": false,
            "deletionProtection": i.spec["deletionProtection"].as_bool().unwrap_or(false),
            "fingerprint": i.fingerprint,
            "satisfiesPzi": true,
        });
        if let Some(d) = i.spec["description"].as_str() {
            v["description"] = json!(d);
        }
        if let Some(items) = i.spec["tags"]["items"].as_array() {
            v["tags"]["items"] = Value::Array(items.clone());
        }
        if let Some(l) = i.spec["labels"].as_object().filter(|l| !l.is_empty()) {
            v["labels"] = Value::Object(l.clone());
        }
        // Network.
        let region = self.region_of(&i.zone).unwrap_or_default().to_string();
        let mut nic = json!({
            "kind": "compute#networkInterface",
            "network": self.link("global/networks/default"),
            "subnetwork": self.link(&format!("regions/{region}/subnetworks/default")),
            "networkIP": i.network_ip,
            "name": "nic0",
            "fingerprint": "yq9XpnWzNgo=",
            "stackType": "IPV4_ONLY",
        });
        if i.has_access_config() {
            let mut ac = json!({"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT",
                                "name": "External NAT", "networkTier": "PREMIUM"});
            if matches!(i.phase, Phase::Staging | Phase::Running) {
                ac["natIP"] = json!(i.nat_ip);
            }
            nic["accessConfigs"] = json!([ac]);
        }
        v["networkInterfaces"] = json!([nic]);
        // Disks.
        let disks: Vec<Value> = i
            .disks
            .iter()
            .enumerate()
            .filter_map(|(n, a)| {
                let d = self.disks.get(&a.disk)?;
                Some(json!({
                    "kind": "compute#attachedDisk",
                    "type": "PERSISTENT",
                    "mode": "READ_WRITE",
                    "source": self.link(&format!("zones/{}/disks/{}", d.zone, d.name)),
                    "deviceName": a.device_name,
                    "index": n,
                    "boot": a.boot,
                    "autoDelete": a.auto_delete,
                    "interface": "SCSI",
                    "diskSizeGb": d.size_gb.to_string(),
                    "architecture": d.architecture,
                }))
            })
            .collect();
        v["disks"] = Value::Array(disks);
        // Metadata.
        let mut md = json!({"kind": "compute#metadata", "fingerprint": fingerprint()});
        if let Some(items) = i.spec["metadata"]["items"]
            .as_array()
            .filter(|a| !a.is_empty())
        {
            md["items"] = Value::Array(items.clone());
        }
        v["metadata"] = md;
        if let Some((email, scopes)) = &i.service_account {
            v["serviceAccounts"] = json!([{"email": email, "scopes": scopes}]);
        }
        v["scheduling"] = self.render_scheduling(&i.spec["scheduling"]);
        if let Some(acc) = i.spec["guestAccelerators"]
            .as_array()
            .filter(|a| !a.is_empty())
        {
            let acc: Vec<Value> = acc
                .iter()
                .map(|a| {
                    let name = a["acceleratorType"]
                        .as_str()
                        .unwrap_or_default()
                        .rsplit('/')
                        .next()
                        .unwrap_or_default();
                    json!({
                        "acceleratorType": self.link(&format!("{zone_rest}/acceleratorTypes/{name}")),
                        "acceleratorCount": int64(&a["acceleratorCount"]).unwrap_or(1),
                    })
                })
                .collect();
            v["guestAccelerators"] = Value::Array(acc);
        }
        if let Some(t) = i.last_start {
            v["lastStartTimestamp"] = json!(ts(t));
        }
        if let Some(t) = i.last_stop {
            v["lastStopTimestamp"] = json!(ts(t));
        }
        v
    }

    fn render_scheduling(&self, s: &Value) -> Value {
        let spot = s["provisioningModel"] == "SPOT";
        let preemptible = spot || s["preemptible"] == true;
        let mut out = json!({
            "onHostMaintenance": s["onHostMaintenance"].as_str().unwrap_or(if preemptible { "TERMINATE" } else { "MIGRATE" }),
            "automaticRestart": s["automaticRestart"].as_bool().unwrap_or(!preemptible),
            "preemptible": preemptible,
            "provisioningModel": s["provisioningModel"].as_str().unwrap_or("STANDARD"),
        });
        if let Some(a) = s["instanceTerminationAction"].as_str() {
            out["instanceTerminationAction"] = json!(a);
        }
        if let Some(secs) = s["maxRunDuration"].get("seconds").and_then(int64) {
            out["maxRunDuration"] = json!({"seconds": secs.to_string()});
        }
        out
    }

    fn render_disk(&self, d: &Disk) -> Value {
        let mut v = json!({
            "kind": "compute#disk",
            "id": d.id.to_string(),
            "creationTimestamp": ts(d.created),
            "name": d.name,
            "sizeGb": d.size_gb.to_string(),
            "zone": self.link(&format!("zones/{}", d.zone)),
            "status": if d.deleting { "DELETING" } else { "READY" },
            "selfLink": self.link(&format!("zones/{}/disks/{}", d.zone, d.name)),
            "sourceImage": d.source_image,
            "sourceImageId": d.source_image_id.to_string(),
            "type": self.link(&format!("zones/{}/diskTypes/{}", d.zone, d.disk_type)),
            "labelFingerprint": d.label_fingerprint,
            "physicalBlockSizeBytes": "4096",
            "architecture": d.architecture,
        });
        if !d.labels.is_empty() {
            v["labels"] = Value::Object(d.labels.clone());
        }
        if let Some(desc) = &d.description {
            v["description"] = json!(desc);
        }
        if let Some(user) = d.user.and_then(|u| self.instances.get(&u)) {
            v["users"] =
                json!([self.link(&format!("zones/{}/instances/{}", user.zone, user.name))]);
            v["lastAttachTimestamp"] = json!(ts(d.created));
        }
        v
    }

    fn render_op(&self, op: &Op, now: Instant) -> Value {
        let step = self.cfg.operation_step;
        let (status, progress) = if now >= op.created + step * 2 {
            ("DONE", 100)
        } else if now >= op.created + step {
            ("RUNNING", 0)
        } else {
            ("PENDING", 0)
        };
        let mut v = json!({
            "kind": "compute#operation",
            "id": op.id.to_string(),
            "name": op.name,
            "zone": self.link(&format!("zones/{}", op.zone)),
            "operationType": op.op_type,
            "targetLink": op.target_link,
            "targetId": op.target_id.to_string(),
            "status": status,
            "user": op.user,
            "progress": progress,
            "insertTime": ts(op.insert_time),
            "selfLink": self.link(&format!("zones/{}/operations/{}", op.zone, op.name)),
        });
        if status != "PENDING" {
            v["startTime"] = json!(ts(op.insert_time + step));
        }
        if status == "DONE" {
            v["endTime"] = json!(ts(op.insert_time + step * 2));
            if let Some(e) = &op.error {
                v["error"] = e.body();
                v["httpErrorStatusCode"] = json!(e.http_status);
                v["httpErrorMessage"] = json!(e.http_message);
            }
        }
        if let Some(c) = &op.client_id {
            v["clientOperationId"] = json!(c);
        }
        v
    }

    fn new_op(
        &mut self,
        zone: &str,
        op_type: &'static str,
        target: Target,
        user: &str,
        request_id: Option<&str>,
        error: Option<OpError>,
    ) -> Value {
        let (target_link, target_id) = match target {
            Target::Instance(i) => (
                self.instances
                    .get(&i)
                    .map(|x| self.link(&format!("zones/{}/instances/{}", x.zone, x.name)))
                    .unwrap_or_default(),
                i,
            ),
            Target::Disk(d) => (
                self.disks
                    .get(&d)
                    .map(|x| self.link(&format!("zones/{}/disks/{}", x.zone, x.name)))
                    .unwrap_or_default(),
                d,
            ),
        };
        let id = new_id();
        let name = format!(
            "operation-{}-{}-{}-{}",
            crate::util::unix_nanos() / 1_000_000,
            random_hex(13),
            random_hex(8),
            random_hex(8)
        );
        let op = Op {
            id,
            name,
            zone: zone.into(),
            op_type,
            target_link,
            target_id,
            target,
            user: user.into(),
            client_id: request_id.map(str::to_string),
            created: Instant::now(),
            insert_time: SystemTime::now(),
            error,
            finalized: false,
        };
        let v = self.render_op(&op, Instant::now());
        self.ops.push(op);
        v
    }

    /// An operation made by an earlier request with the same `requestId` (Compute Engine
    /// answers a repeated request with the first one's operation and does nothing else).
    fn replayed(&self, request_id: Option<&str>, op_type: &str) -> Option<Value> {
        let rid = request_id?;
        let op = self
            .ops
            .iter()
            .find(|o| o.client_id.as_deref() == Some(rid) && o.op_type == op_type)?;
        Some(self.render_op(op, Instant::now()))
    }

    // ---- API -----------------------------------------------------------------------------

    fn check_zone(&self, zone: &str) -> Result<(), ApiError> {
        match self.region_of(zone) {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(&format!(
                "projects/{}/zones/{zone}",
                self.cfg.project
            ))),
        }
    }

    /// `compute.instances.insert`: validates like Compute Engine, then creates the instance
    /// (PROVISIONING) and its disks, and answers the insert operation.
    pub fn insert_instance(
        &mut self,
        zone: &str,
        body: &Value,
        user: &str,
        request_id: Option<&str>,
    ) -> Result<Value, ApiError> {
        if let Some(op) = self.replayed(request_id, "insert") {
            return Ok(op);
        }
        self.check_zone(zone)?;
        let project = self.cfg.project.clone();
        let name = body["name"].as_str().unwrap_or_default().to_string();
        let inst_rest = format!("projects/{project}/zones/{zone}/instances/{name}");
        if self.find(zone, &name).is_some() {
            return Err(ApiError::already_exists(&inst_rest));
        }
        // Machine type.
        let mt_raw = body["machineType"].as_str().unwrap_or_default();
        if mt_raw.is_empty() {
            return Err(ApiError::invalid_field(
                "resource.machineType",
                "",
                "Machine type must be specified.",
            ));
        }
        let mt_path = resource_path(&project, mt_raw);
        let machine_type =
            match mt_path.strip_prefix(&format!("projects/{project}/zones/{zone}/machineTypes/")) {
                Some(t) if machine_cpus(t).is_some() => t.to_string(),
                _ => {
                    let t = mt_raw.rsplit('/').next().unwrap_or_default();
                    return Err(ApiError::invalid_field(
                        "resource.machineType",
                        mt_raw,
                        &format!("Machine type with name '{t}' does not exist in zone '{zone}'."),
                    ));
                }
            };
        // Labels and metadata.
        let labels = check_labels("resource.labels", &body["labels"])?;
        let items = body["metadata"]["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut keys = BTreeSet::new();
        let mut total = 0;
        for it in &items {
            let k = it["key"].as_str().unwrap_or_default();
            let v = it["value"].as_str().unwrap_or_default();
            if !keys.insert(k.to_string()) {
                return Err(ApiError::invalid_field(
                    "resource.metadata",
                    "",
                    &format!("Duplicate metadata key '{k}'."),
                ));
            }
            if v.len() > 256 * 1024 {
                return Err(ApiError::invalid_field(
                    "resource.metadata",
                    "",
                    &format!("Metadata value for key '{k}' is longer than 262144 bytes."),
                ));
            }
            total += k.len() + v.len();
        }
        if total > 512 * 1024 {
            return Err(ApiError::invalid_field(
                "resource.metadata",
                "",
                "The total size of all metadata keys and values exceeds 524288 bytes.",
            ));
        }
        // Scheduling.
        let s = &body["scheduling"];
        let spot = s["provisioningModel"] == "SPOT";
        let preemptible = spot || s["preemptible"] == true;
        if preemptible && s["automaticRestart"] == true {
            return Err(ApiError::invalid_field(
                "resource.scheduling.automaticRestart",
                "true",
                "Preemptible instances cannot be automatically restarted.",
            ));
        }
        if preemptible && s["onHostMaintenance"] == "MIGRATE" {
            return Err(ApiError::invalid_field(
                "resource.scheduling.onHostMaintenance",
                "MIGRATE",
                "Preemptible instances must have onHostMaintenance set to TERMINATE.",
            ));
        }
        if !s["maxRunDuration"].is_null() {
            let secs = s["maxRunDuration"]
                .get("seconds")
                .and_then(int64)
                .unwrap_or(0);
            if !(30..=10_368_000).contains(&secs) {
                return Err(ApiError::invalid_field(
                    "resource.scheduling.maxRunDuration.seconds",
                    &secs.to_string(),
                    "Must be between 30 and 10368000 seconds.",
                ));
            }
            if s["instanceTerminationAction"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
                || s["instanceTerminationAction"] == "INSTANCE_TERMINATION_ACTION_UNSPECIFIED"
            {
                return Err(ApiError::invalid_field(
                    "resource.scheduling.instanceTerminationAction",
                    "",
                    "Instance termination action must be specified when max run duration or termination time is specified.",
                ));
            }
        }
        // Accelerators.
        let mut gpus: Vec<(String, i64)> = Vec::new();
        for (n, a) in body["guestAccelerators"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let raw = a["acceleratorType"].as_str().unwrap_or_default();
            let path = resource_path(&project, raw);
            let field = format!("resource.guestAccelerators[{n}].acceleratorType");
            let name = match path.strip_prefix(&format!(
                "projects/{project}/zones/{zone}/acceleratorTypes/"
            )) {
                Some(t) if ACCELERATORS.contains(&t) => t.to_string(),
                _ => {
                    let t = raw.rsplit('/').next().unwrap_or_default();
                    return Err(ApiError::invalid_field(
                        &field,
                        raw,
                        &format!("Accelerator type '{t}' does not exist in zone '{zone}'."),
                    ));
                }
            };
            let count = int64(&a["acceleratorCount"]).unwrap_or(0);
            if !(1..=16).contains(&count) {
                return Err(ApiError::invalid_field(
                    &format!("resource.guestAccelerators[{n}].acceleratorCount"),
                    &count.to_string(),
                    "Accelerator count must be between 1 and 16.",
                ));
            }
            gpus.push((name, count));
        }
        if !gpus.is_empty() && s["onHostMaintenance"] != "TERMINATE" && !preemptible {
            return Err(ApiError::bad_request(
                "badRequest",
                "Instances with guest accelerators do not support live migration.",
            ));
        }
        // Network.
        let nics = body["networkInterfaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if nics.is_empty() {
            return Err(ApiError::invalid_field(
                "resource.networkInterfaces",
                "",
                "At least one network interface is required.",
            ));
        }
        for (n, nic) in nics.iter().enumerate() {
            if let Some(net) = nic["network"].as_str() {
                let p = resource_path(&project, net);
                if p != format!("projects/{project}/global/networks/default") {
                    return Err(ApiError::not_found(&p));
                }
            }
            if n > 0 {
                return Err(ApiError::bad_request(
                    "invalid",
                    "The simulator supports one network interface.",
                ));
            }
        }
        // Disks.
        let disks_in = body["disks"].as_array().cloned().unwrap_or_default();
        if disks_in.iter().filter(|d| d["boot"] == true).count() != 1 {
            return Err(ApiError::invalid_field(
                "resource.disks",
                "",
                "Exactly one boot disk must be specified.",
            ));
        }
        let mut new_disks = Vec::new();
        for (n, d) in disks_in.iter().enumerate() {
            let field = format!("resource.disks[{n}].initializeParams");
            let ip = &d["initializeParams"];
            if ip.is_null() {
                return Err(ApiError::bad_request(
                    "invalid",
                    format!("{field}: the simulator creates disks from initializeParams only"),
                ));
            }
            let img_raw = ip["sourceImage"].as_str().unwrap_or_default();
            let img_path = resource_path(&project, img_raw);
            let image = self
                .image_for(&img_path)
                .ok_or_else(|| ApiError::not_found(&img_path))?
                .clone();
            let size = match ip.get("diskSizeGb").filter(|v| !v.is_null()) {
                None => 10,
                Some(v) => int64(v).unwrap_or(0),
            };
            if size < 10 {
                return Err(ApiError::invalid_field(
                    &format!("{field}.diskSizeGb"),
                    &size.to_string(),
                    "Requested disk size cannot be smaller than the image size (10 GB).",
                ));
            }
            let dtype = match ip["diskType"].as_str() {
                None => "pd-standard".to_string(),
                Some(t) => {
                    let p = resource_path(&project, t);
                    match p.strip_prefix(&format!("projects/{project}/zones/{zone}/diskTypes/")) {
                        Some(t) if DISK_TYPES.contains(&t) => t.to_string(),
                        _ => return Err(ApiError::not_found(&p)),
                    }
                }
            };
            let dname = ip["diskName"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| {
                    if d["boot"] == true {
                        name.clone()
                    } else {
                        format!("{name}-{n}")
                    }
                });
            if self
                .disks
                .values()
                .any(|x| x.zone == zone && x.name == dname)
                || new_disks.iter().any(|x: &Disk| x.name == dname)
            {
                return Err(ApiError::already_exists(&format!(
                    "projects/{project}/zones/{zone}/disks/{dname}"
                )));
            }
            let dlabels = check_labels(&format!("{field}.labels"), &ip["labels"])?;
            new_disks.push(Disk {
                id: new_id(),
                name: dname.clone(),
                zone: zone.into(),
                size_gb: size as u64,
                disk_type: dtype,
                source_image: format!(
                    "{}/compute/v1/projects/{}/global/images/{}",
                    self.base_url, image.project, image.name
                ),
                source_image_id: image.id,
                architecture: image.architecture.clone(),
                labels: dlabels,
                description: ip["description"].as_str().map(str::to_string),
                user: None,
                created: SystemTime::now(),
                deleting: false,
                label_fingerprint: fingerprint(),
            });
        }
        // Service account.
        let service_account = body["serviceAccounts"]
            .as_array()
            .and_then(|a| a.first())
            .map(|sa| {
                let email = match sa["email"].as_str() {
                    None | Some("default") => self.default_service_account(),
                    Some(e) => e.to_string(),
                };
                let scopes = sa["scopes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
                (email, scopes)
            });
        // Quota, synchronously or in the operation.
        let region = self.region_of(zone).unwrap_or_default().to_string();
        let mut failure = None;
        if let Some((metric, limit)) = self.quota_exceeded(&region, &machine_type, &gpus) {
            match self.quota_delivery {
                QuotaDelivery::Http => {
                    return Err(ApiError::quota_exceeded(super::errors::quota_message(
                        &metric, limit, &region,
                    )))
                }
                QuotaDelivery::Operation => {
                    failure = Some(OpError::quota_exceeded(&metric, limit, &region))
                }
            }
        }
        // Capacity: in the operation, as Compute Engine reports a zone without resources.
        let cap = self
            .capacity
            .get(zone)
            .copied()
            .unwrap_or(Capacity::Available);
        if failure.is_none()
            && (cap == Capacity::Exhausted || (cap == Capacity::SpotExhausted && spot))
        {
            failure = Some(OpError::zone_exhausted(&project, zone, &machine_type));
        }
        // Create.
        let id = new_id();
        let mut attached = Vec::new();
        for (n, (d, mut disk)) in disks_in.iter().zip(new_disks).enumerate() {
            disk.user = Some(id);
            attached.push(AttachedDisk {
                disk: disk.id,
                device_name: d["deviceName"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        if n == 0 {
                            "persistent-disk-0".into()
                        } else {
                            format!("persistent-disk-{n}")
                        }
                    }),
                boot: d["boot"] == true,
                auto_delete: d["autoDelete"].as_bool().unwrap_or(false),
            });
            self.disks.insert(disk.id, disk);
        }
        let ip = self.next_ip;
        self.next_ip += 1;
        let mut spec = body.clone();
        spec["labels"] = Value::Object(labels);
        let doomed = failure.is_some();
        let now = Instant::now();
        self.instances.insert(
            id,
            Inst {
                id,
                name: name.clone(),
                zone: zone.into(),
                spec,
                machine_type,
                phase: Phase::Provisioning,
                phase_until: (!doomed).then(|| now + self.cfg.status_step),
                created: SystemTime::now(),
                last_start: None,
                last_stop: None,
                run_deadline: None,
                preempted: false,
                serial: String::new(),
                network_ip: format!("10.128.{}.{}", ip / 250, ip % 250 + 2),
                nat_ip: format!(
                    "34.{}.{}.{}",
                    100 + ip / 62500 % 100,
                    ip / 250 % 250,
                    ip % 250 + 2
                ),
                disks: attached,
                service_account,
                doomed,
                fingerprint: fingerprint(),
            },
        );
        Ok(self.new_op(
            zone,
            "insert",
            Target::Instance(id),
            user,
            request_id,
            failure,
        ))
    }

    pub fn default_service_account(&self) -> String {
        format!(
            "{}-compute@developer.gserviceaccount.com",
            self.cfg.project_number
        )
    }

    fn image_for(&self, path: &str) -> Option<&Image> {
        let rest = path.strip_prefix("projects/")?;
        let (project, rest) = rest.split_once("/global/images/")?;
        match rest.strip_prefix("family/") {
            Some(f) => self
                .images
                .iter()
                .rev()
                .find(|i| i.project == project && i.family == f),
            None => self
                .images
                .iter()
                .find(|i| i.project == project && i.name == rest),
        }
    }

    /// The first regional quota the new instance would exceed: (metric, limit).
    fn quota_exceeded(
        &self,
        region: &str,
        machine_type: &str,
        gpus: &[(String, i64)],
    ) -> Option<(String, f64)> {
        let mut usage: BTreeMap<String, f64> = BTreeMap::new();
        for i in self.instances.values() {
            if i.doomed || i.phase == Phase::Terminated || self.region_of(&i.zone) != Some(region) {
                continue;
            }
            *usage.entry("CPUS".into()).or_default() +=
                f64::from(machine_cpus(&i.machine_type).unwrap_or(0));
            *usage.entry("INSTANCES".into()).or_default() += 1.0;
            for a in i.spec["guestAccelerators"].as_array().into_iter().flatten() {
                let name = a["acceleratorType"]
                    .as_str()
                    .unwrap_or_default()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default();
                *usage.entry(gpu_metric(name)).or_default() +=
                    int64(&a["acceleratorCount"]).unwrap_or(1) as f64;
            }
        }
        let mut want = vec![
            (
                "CPUS".to_string(),
                f64::from(machine_cpus(machine_type).unwrap_or(0)),
            ),
            ("INSTANCES".to_string(), 1.0),
        ];
        want.extend(gpus.iter().map(|(g, n)| (gpu_metric(g), *n as f64)));
        want.into_iter().find_map(|(metric, n)| {
            let limit = *self.quotas.get(&(region.to_string(), metric.clone()))?;
            (usage.get(&metric).copied().unwrap_or(0.0) + n > limit).then_some((metric, limit))
        })
    }

    pub fn get_instance(&self, zone: &str, name: &str) -> Result<Value, ApiError> {
        self.check_zone(zone)?;
        match self.find(zone, name) {
            Some(i) => Ok(self.render_instance(i)),
            None => Err(ApiError::not_found(&format!(
                "projects/{}/zones/{zone}/instances/{name}",
                self.cfg.project
            ))),
        }
    }

    pub fn delete_instance(
        &mut self,
        zone: &str,
        name: &str,
        user: &str,
        request_id: Option<&str>,
    ) -> Result<Value, ApiError> {
        if let Some(op) = self.replayed(request_id, "delete") {
            return Ok(op);
        }
        self.check_zone(zone)?;
        let rest = format!(
            "projects/{}/zones/{zone}/instances/{name}",
            self.cfg.project
        );
        let Some(inst) = self.find_mut(zone, name) else {
            return Err(ApiError::not_found(&rest));
        };
        if inst.phase == Phase::Deleting || inst.doomed {
            return Err(ApiError::not_ready(&rest));
        }
        inst.phase = Phase::Deleting;
        inst.phase_until = None;
        inst.run_deadline = None;
        let id = inst.id;
        Ok(self.new_op(zone, "delete", Target::Instance(id), user, request_id, None))
    }

    /// Instances of `zone` (all zones: `None`) passing `filter`, ordered.
    pub fn list_instances(
        &self,
        zone: Option<&str>,
        filter: &Filter,
        order: Order,
    ) -> Vec<(String, Value)> {
        let mut out: Vec<(String, SystemTime, Value)> = self
            .instances
            .values()
            .filter(|i| zone.is_none_or(|z| z == i.zone))
            .map(|i| (i.zone.clone(), i.created, self.render_instance(i)))
            .filter(|(_, _, v)| filter.matches(v))
            .collect();
        sort(&mut out, order);
        out.into_iter().map(|(z, _, v)| (z, v)).collect()
    }

    pub fn list_disks(
        &self,
        zone: Option<&str>,
        filter: &Filter,
        order: Order,
    ) -> Vec<(String, Value)> {
        let mut out: Vec<(String, SystemTime, Value)> = self
            .disks
            .values()
            .filter(|d| zone.is_none_or(|z| z == d.zone))
            .map(|d| (d.zone.clone(), d.created, self.render_disk(d)))
            .filter(|(_, _, v)| filter.matches(v))
            .collect();
        sort(&mut out, order);
        out.into_iter().map(|(z, _, v)| (z, v)).collect()
    }

    pub fn all_zones(&self) -> Vec<String> {
        self.cfg
            .regions
            .iter()
            .flat_map(|(_, zs)| zs.iter().cloned())
            .collect()
    }

    pub fn check_zone_pub(&self, zone: &str) -> Result<(), ApiError> {
        self.check_zone(zone)
    }

    pub fn serial_output(
        &self,
        zone: &str,
        name: &str,
        port: i64,
        start: i64,
    ) -> Result<Value, ApiError> {
        self.check_zone(zone)?;
        let Some(i) = self.find(zone, name) else {
            return Err(ApiError::not_found(&format!(
                "projects/{}/zones/{zone}/instances/{name}",
                self.cfg.project
            )));
        };
        if !(1..=4).contains(&port) {
            return Err(ApiError::invalid_field(
                "port",
                &port.to_string(),
                "Must be between 1 and 4.",
            ));
        }
        let buf = if port == 1 {
            i.serial.as_bytes()
        } else {
            &[][..]
        };
        let len = buf.len() as i64;
        let start = if start < 0 {
            (len + start).max(0)
        } else {
            start.min(len)
        };
        let contents = String::from_utf8_lossy(&buf[start as usize..]).into_owned();
        Ok(json!({
            "kind": "compute#serialPortOutput",
            "contents": contents,
            "start": start.to_string(),
            "next": len.to_string(),
            "selfLink": self.link(&format!("zones/{zone}/instances/{}/serialPort", i.name)),
        }))
    }

    pub fn get_op(&self, zone: &str, name: &str) -> Result<(Value, bool), ApiError> {
        self.check_zone(zone)?;
        let op = self
            .ops
            .iter()
            .find(|o| o.zone == zone && (o.name == name || o.id.to_string() == name))
            .ok_or_else(|| {
                ApiError::not_found(&format!(
                    "projects/{}/zones/{zone}/operations/{name}",
                    self.cfg.project
                ))
            })?;
        let v = self.render_op(op, Instant::now());
        let done = v["status"] == "DONE";
        Ok((v, done))
    }

    pub fn delete_disk(
        &mut self,
        zone: &str,
        name: &str,
        user: &str,
        request_id: Option<&str>,
    ) -> Result<Value, ApiError> {
        if let Some(op) = self.replayed(request_id, "delete") {
            return Ok(op);
        }
        self.check_zone(zone)?;
        let project = self.cfg.project.clone();
        let rest = format!("projects/{project}/zones/{zone}/disks/{name}");
        let Some(disk) = self
            .disks
            .values()
            .find(|d| d.zone == zone && (d.name == name || d.id.to_string() == name))
        else {
            return Err(ApiError::not_found(&rest));
        };
        if let Some(u) = disk.user.and_then(|u| self.instances.get(&u)) {
            return Err(ApiError::bad_request(
                "resourceInUseByAnotherResource",
                format!(
                    "The disk resource '{rest}' is already being used by 'projects/{project}/zones/{}/instances/{}'",
                    u.zone, u.name
                ),
            ));
        }
        if disk.deleting {
            return Err(ApiError::not_ready(&rest));
        }
        let id = disk.id;
        if let Some(d) = self.disks.get_mut(&id) {
            d.deleting = true;
        }
        Ok(self.new_op(zone, "delete", Target::Disk(id), user, request_id, None))
    }

    pub fn get_zone(&self, zone: &str) -> Result<Value, ApiError> {
        let region = self.region_of(zone).ok_or_else(|| {
            ApiError::not_found(&format!("projects/{}/zones/{zone}", self.cfg.project))
        })?;
        Ok(json!({
            "kind": "compute#zone",
            "id": (2000 + self.all_zones().iter().position(|z| z == zone).unwrap_or(0)).to_string(),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
            "name": zone,
            "description": zone,
            "status": "UP",
            "region": self.link(&format!("regions/{region}")),
            "selfLink": self.link(&format!("zones/{zone}")),
            "availableCpuPlatforms": ["Intel Broadwell", "Intel Skylake", "AMD Milan"],
            "supportsPzs": false,
        }))
    }

    pub fn get_region(&self, region: &str) -> Result<Value, ApiError> {
        let (i, (_, zones)) = self
            .cfg
            .regions
            .iter()
            .enumerate()
            .find(|(_, (r, _))| r == region)
            .ok_or_else(|| {
                ApiError::not_found(&format!("projects/{}/regions/{region}", self.cfg.project))
            })?;
        let mut quotas = Vec::new();
        for ((r, metric), limit) in &self.quotas {
            if r != region {
                continue;
            }
            let usage = self
                .instances
                .values()
                .filter(|x| {
                    !x.doomed
                        && x.phase != Phase::Terminated
                        && self.region_of(&x.zone) == Some(region)
                })
                .map(|x| match metric.as_str() {
                    "CPUS" => f64::from(machine_cpus(&x.machine_type).unwrap_or(0)),
                    "INSTANCES" => 1.0,
                    _ => 0.0,
                })
                .sum::<f64>();
            quotas.push(json!({"metric": metric, "limit": limit, "usage": usage}));
        }
        let mut v = json!({
            "kind": "compute#region",
            "id": (1000 + i).to_string(),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
            "name": region,
            "description": region,
            "status": "UP",
            "zones": zones.iter().map(|z| self.link(&format!("zones/{z}"))).collect::<Vec<_>>(),
            "selfLink": self.link(&format!("regions/{region}")),
            "supportsPzs": false,
        });
        if !quotas.is_empty() {
            v["quotas"] = Value::Array(quotas);
        }
        Ok(v)
    }

    pub fn image_from_family(&self, project: &str, family: &str) -> Result<Value, ApiError> {
        let img = self
            .images
            .iter()
            .rev()
            .find(|i| i.project == project && i.family == family)
            .ok_or_else(|| {
                ApiError::not_found(&format!("projects/{project}/global/images/family/{family}"))
            })?;
        Ok(json!({
            "kind": "compute#image",
            "id": img.id.to_string(),
            "creationTimestamp": "2026-11-01T00:00:00.000-07:00",
            "name": img.name,
            "description": format!("Canonical, Ubuntu, {}", img.family),
            "sourceType": "RAW",
            "status": "READY",
            "archiveSizeBytes": "2000000000",
            "diskSizeGb": "10",
            "licenses": [format!("{}/compute/v1/projects/{}/global/licenses/{}", self.base_url, img.project, img.family)],
            "family": img.family,
            "selfLink": format!("{}/compute/v1/projects/{}/global/images/{}", self.base_url, img.project, img.name),
            "labelFingerprint": "42WmSpB8rSM=",
            "guestOsFeatures": [{"type": "VIRTIO_SCSI_MULTIQUEUE"}, {"type": "UEFI_COMPATIBLE"}, {"type": "GVNIC"}],
            "storageLocations": ["us", "eu", "asia"],
            "architecture": img.architecture,
        }))
    }

    pub fn images_project(&self, project: &str) -> bool {
        self.images.iter().any(|i| i.project == project)
    }

    pub fn instances_raw(&self) -> impl Iterator<Item = &Inst> {
        self.instances.values()
    }

    pub fn removed_raw(&self) -> impl Iterator<Item = &Inst> {
        self.removed.values()
    }

    pub fn disks_rendered(&self) -> Vec<Value> {
        self.disks.values().map(|d| self.render_disk(d)).collect()
    }
}

/// `orderBy` of list methods: Compute Engine supports `name` and `creationTimestamp desc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Unspecified,
    Name,
    NewestFirst,
}

fn sort(v: &mut [(String, SystemTime, Value)], order: Order) {
    match order {
        Order::Unspecified => {}
        Order::Name => v.sort_by(|a, b| a.2["name"].as_str().cmp(&b.2["name"].as_str())),
        Order::NewestFirst => v.sort_by_key(|x| std::cmp::Reverse(x.1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn machine_types_and_cpus() {
        assert_eq!(machine_cpus("e2-custom-8-32768"), Some(8));
        assert_eq!(machine_cpus("custom-64-212992-ext"), Some(64));
        assert_eq!(machine_cpus("n1-standard-4"), Some(4));
        assert_eq!(machine_cpus("g2-standard-16"), Some(16));
        assert_eq!(machine_cpus("g1-small"), Some(1));
        assert_eq!(machine_cpus("a2-highgpu-1g"), Some(12));
        assert_eq!(machine_cpus("custom-8-1000"), None);
        assert_eq!(machine_cpus("m"), None);
        assert_eq!(machine_cpus("n1-standard-x"), None);
        assert_eq!(gpu_metric("nvidia-tesla-t4"), "NVIDIA_T4_GPUS");
        assert_eq!(gpu_metric("nvidia-l4"), "NVIDIA_L4_GPUS");
    }

    #[test]
    fn resource_paths() {
        assert_eq!(
            resource_path("p", "zones/z/machineTypes/t"),
            "projects/p/zones/z/machineTypes/t"
        );
        assert_eq!(
            resource_path(
                "p",
                "https://www.googleapis.com/compute/v1/projects/q/zones/z"
            ),
            "projects/q/zones/z"
        );
        assert_eq!(
            resource_path("p", "projects/ubuntu-os-cloud/global/images/family/f"),
            "projects/ubuntu-os-cloud/global/images/family/f"
        );
    }

    #[test]
    fn timestamps_have_the_compute_engine_form() {
        let t = ts(std::time::UNIX_EPOCH + Duration::from_millis(1_500));
        assert_eq!(t, "1969-12-31T17:00:01.500-07:00");
    }
}
