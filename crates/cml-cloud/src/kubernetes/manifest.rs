//! The objects a Kubernetes runner is made of, as the API takes them (pure: no I/O).
//!
//! - A `batch/v1` Job: one pod, never restarted nor retried (`restartPolicy: Never`,
//!   `backoffLimit: 0`), ended by `--cloud-max-lifetime` (`activeDeadlineSeconds`), removed
//!   [`TTL_AFTER_FINISHED`] seconds after it finished. Its container runs `cml runner` from the
//!   runner image through the image's entry point (tini, which hands SIGTERM on), with
//!   [`termination_grace`] seconds between SIGTERM and SIGKILL so the runner can stop its agent,
//!   deregister and ask for the re-run of an interrupted job.
//! - A Secret holding the runner's credential (and `--cloud-startup-script`), owned by the Job
//!   (so deleting the Job deletes it); the pod reads each credential variable from it by
//!   `secretKeyRef`, so no credential is in the pod spec.
//!
//! Every object carries the owner labels of [`cml_core::k8s::owner_labels`] and the launch label
//! [`LAUNCH_LABEL`]; the runner's tags become `cml.dev/*` annotations.

use super::LAUNCH_LABEL;
use crate::{CloudError, MachineSpec};
use cml_core::k8s;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Seconds a finished Job (and its pod) stays, for `kubectl logs`, before Kubernetes removes it.
pub const TTL_AFTER_FINISHED: u64 = 300;

/// The Secret key holding `--cloud-startup-script`, mounted as a file.
pub const STARTUP_SCRIPT_KEY: &str = "startup-script";
/// Where the pod finds `--cloud-startup-script`.
pub const STARTUP_SCRIPT_DIR: &str = "/etc/cml/startup";

/// The most a Secret may hold (the API server's limit, 1 MiB).
pub const SECRET_LIMIT: usize = 1024 * 1024;

/// The container's name.
pub const CONTAINER: &str = "runner";

/// Time the runner gets after the pod's SIGTERM: its `--stop-grace`, then deregistering and
/// the re-run of an interrupted job (which waits up to 90 s for the job's run to end), with
/// room to spare.
pub fn termination_grace(stop_grace: Duration) -> u64 {
    stop_grace.as_secs().saturating_add(150)
}

/// Everything the objects are built from, resolved and checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub runner: String,
    pub job: String,
    pub secret: String,
    pub namespace: String,
    pub image: String,
    /// The generic type the size comes from (`m+t4`).
    pub machine_type: String,
    pub size: k8s::PodSize,
    pub node_selector: BTreeMap<String, String>,
    pub spot: bool,
    pub disk_gb: u32,
    pub deadline: Option<u64>,
    pub grace: u64,
    pub service_account: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The credential variables (the Secret's keys).
    pub secret_keys: Vec<String>,
    pub startup_script: bool,
}

impl Plan {
    /// Resolves `spec` for `namespace`; errors name the option at fault.
    pub fn new(spec: &MachineSpec, namespace: &str) -> Result<Plan, CloudError> {
        let option = |option: &'static str, value: &str, reason: String, hint: &str| {
            CloudError::KubernetesOption {
                option,
                value: value.to_string(),
                reason,
                hint: hint.to_string(),
            }
        };
        let c = &spec.cloud;
        let (size_key, gpu) = k8s::size_and_gpu(&c.machine_type, c.gpu.as_deref());
        let size = k8s::pod_size(size_key, &gpu).map_err(|e| {
            option(
                "cloud-type",
                &c.machine_type,
                e.to_string(),
                "use s, m, l or xl, with --cloud-gpu k80, v100 or t4",
            )
        })?;
        let selector_text = c
            .kubernetes_node_selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let node_selector = k8s::node_selector(&selector_text, &gpu).map_err(|e| {
            option(
                "cloud-kubernetes-node-selector",
                &selector_text,
                e.to_string(),
                "pass key=value node labels",
            )
        })?;
        let image = match &c.image {
            Some(i) if i.trim().is_empty() || i.chars().any(char::is_whitespace) => {
                return Err(option(
                    "cloud-image",
                    i,
                    "not a container image reference".into(),
                    "pass REGISTRY/REPOSITORY:TAG (or @sha256:DIGEST)",
                ))
            }
            Some(i) => i.clone(),
            None => k8s::default_image(env!("CARGO_PKG_VERSION"), size.gpus > 0),
        };
        if let Some(sa) = &c.permission_set {
            if !dns1123_subdomain(sa) {
                return Err(option(
                    "cloud-permission-set",
                    sa,
                    "not a service account name".into(),
                    "on Kubernetes it names a ServiceAccount of the namespace",
                ));
            }
        }
        for (k, _) in &spec.runner.secrets {
            if !k
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
            {
                return Err(option(
                    "token",
                    k,
                    "a credential variable that cannot be a Secret key".into(),
                    "report this as a bug",
                ));
            }
        }
        let mut labels = k8s::owner_labels(&spec.name);
        let mut annotations = BTreeMap::new();
        for (k, v) in &spec.tags {
            match k.strip_prefix("cml:") {
                Some(name) => {
                    annotations.insert(format!("{}{name}", k8s::LABEL_PREFIX), v.clone());
                }
                None if k8s::label_key_ok(k)
                    && k8s::label_value_ok(v)
                    && !k.starts_with(k8s::LABEL_PREFIX)
                    && !labels.contains_key(k) =>
                {
                    labels.insert(k.clone(), v.clone());
                }
                None if k8s::label_key_ok(k) && !k.starts_with(k8s::LABEL_PREFIX) => {
                    annotations.insert(k.clone(), v.clone());
                }
                None => {
                    return Err(option(
                        "cloud-metadata",
                        k,
                        "not a valid Kubernetes label or annotation key".into(),
                        "use [prefix/]name with letters, digits, '-', '_' and '.'",
                    ))
                }
            }
        }
        let plan = Plan {
            runner: spec.name.clone(),
            job: k8s::job_name(&spec.name),
            secret: k8s::secret_name(&spec.name),
            namespace: namespace.to_string(),
            image,
            machine_type: c.machine_type.clone(),
            size,
            node_selector,
            spot: c.spot,
            disk_gb: c.hdd_size_gb,
            deadline: spec.max_lifetime.map(|d| d.as_secs().max(1)),
            grace: termination_grace(spec.runner.stop_grace),
            service_account: c.permission_set.clone(),
            labels,
            annotations,
            args: spec.runner.args.clone(),
            env: spec.runner.env.clone(),
            secret_keys: spec.runner.secrets.iter().map(|(k, _)| k.clone()).collect(),
            startup_script: c.startup_script.is_some(),
        };
        let bytes = secret_bytes(spec);
        if bytes > SECRET_LIMIT {
            return Err(option(
                "cloud-startup-script",
                &format!("<{bytes} bytes with the credential>"),
                format!("a Secret holds at most {SECRET_LIMIT} bytes"),
                "make the startup script smaller (download what it needs instead of embedding it)",
            ));
        }
        Ok(plan)
    }

    /// The pod's resources, as `--cloud-type` asked (`m+t4: 4 cpu, 16Gi, 1 nvidia.com/gpu`).
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{}: {} cpu, {} memory",
            self.machine_type, self.size.cpu, self.size.memory
        );
        if self.size.gpus > 0 {
            s.push_str(&format!(", {} {}", self.size.gpus, k8s::GPU_RESOURCE));
        }
        s
    }
}

/// The Job (see the module documentation), labelled with `launch`.
pub fn job(plan: &Plan, launch: &str) -> Value {
    let mut labels = plan.labels.clone();
    labels.insert(LAUNCH_LABEL.into(), launch.into());
    let mut resources = Map::new();
    resources.insert("cpu".into(), json!(plan.size.cpu.to_string()));
    resources.insert("memory".into(), json!(plan.size.memory));
    resources.insert(
        "ephemeral-storage".into(),
        json!(format!("{}Gi", plan.disk_gb)),
    );
    if plan.size.gpus > 0 {
        resources.insert(k8s::GPU_RESOURCE.into(), json!(plan.size.gpus.to_string()));
    }
    let mut env: Vec<Value> = plan
        .env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    for k in &plan.secret_keys {
        env.push(
            json!({"name": k, "valueFrom": {"secretKeyRef": {"name": plan.secret, "key": k}}}),
        );
    }
    let args: Vec<String> = if plan.startup_script {
        let mut a = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            format!("/bin/sh {STARTUP_SCRIPT_DIR}/script && exec cml \"$@\""),
            "cml".into(),
        ];
        a.extend(plan.args.iter().cloned());
        a
    } else {
        plan.args.clone()
    };
    let mut container = json!({
        "name": CONTAINER,
        "image": plan.image,
        "args": args,
        "env": env,
        "resources": {"requests": resources.clone(), "limits": resources},
    });
    let mut pod = json!({
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": plan.grace,
        "automountServiceAccountToken": plan.service_account.is_some(),
        "containers": [],
    });
    if let Some(sa) = &plan.service_account {
        pod["serviceAccountName"] = json!(sa);
    }
    if !plan.node_selector.is_empty() {
        pod["nodeSelector"] = json!(plan.node_selector);
    }
    if plan.spot {
        let terms: Vec<Value> = k8s::spot_node_terms()
            .into_iter()
            .map(
                |(k, v)| json!({"matchExpressions": [{"key": k, "operator": "In", "values": [v]}]}),
            )
            .collect();
        pod["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}});
        pod["tolerations"] = Value::Array(
            k8s::spot_tolerations()
                .into_iter()
                .map(|(key, operator, value, effect)| {
                    json!({"key": key, "operator": operator, "value": value, "effect": effect})
                })
                .collect(),
        );
    }
    if plan.startup_script {
        container["volumeMounts"] = json!([{"name": STARTUP_SCRIPT_KEY, "mountPath": STARTUP_SCRIPT_DIR, "readOnly": true}]);
        pod["volumes"] = json!([{"name": STARTUP_SCRIPT_KEY, "secret": {
            "secretName": plan.secret,
            "items": [{"key": STARTUP_SCRIPT_KEY, "path": "script"}],
            "defaultMode": 0o500,
        }}]);
    }
    pod["containers"] = json!([container]);
    let mut spec = json!({
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
        "template": {
            "metadata": {"labels": labels, "annotations": plan.annotations},
            "spec": pod,
        },
    });
    if let Some(d) = plan.deadline {
        spec["activeDeadlineSeconds"] = json!(d);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": plan.job,
            "namespace": plan.namespace,
            "labels": labels,
            "annotations": plan.annotations,
        },
        "spec": spec,
    })
}

/// The Secret of `spec`'s credential (and startup script), owned by the Job `job_uid`.
/// Contains secrets: never logged.
pub fn secret(plan: &Plan, spec: &MachineSpec, job_uid: &str, launch: &str) -> Value {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let mut data = Map::new();
    for (k, v) in &spec.runner.secrets {
        data.insert(k.clone(), json!(b64(v.expose())));
    }
    if let Some(script) = &spec.cloud.startup_script {
        data.insert(STARTUP_SCRIPT_KEY.into(), json!(b64(script)));
    }
    let mut labels = plan.labels.clone();
    labels.insert(LAUNCH_LABEL.into(), launch.into());
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": plan.secret,
            "namespace": plan.namespace,
            "labels": labels,
            "annotations": plan.annotations,
            "ownerReferences": [{
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": plan.job,
                "uid": job_uid,
            }],
        },
        "data": data,
    })
}

/// The size of the Secret's data as stored (base64 values and their keys).
fn secret_bytes(spec: &MachineSpec) -> usize {
    let b64 = |n: usize| n.div_ceil(3) * 4;
    spec.runner
        .secrets
        .iter()
        .map(|(k, v)| k.len() + b64(v.expose().len()))
        .sum::<usize>()
        + spec
            .cloud
            .startup_script
            .as_ref()
            .map_or(0, |s| STARTUP_SCRIPT_KEY.len() + b64(s.len()))
}

/// A DNS-1123 subdomain (the names of most objects).
fn dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !p.starts_with('-')
                && !p.ends_with('-')
        })
}
