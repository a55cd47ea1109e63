//! Pure Kubernetes rules of `--cloud=kubernetes`: generic machine types as pod resources, GPUs,
//! node selectors (with CML's `accelerator=infer`), spot placement on EKS, GKE and AKS, label
//! values, owner labels and object names.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The prefix of every label CML puts on the objects it creates.
pub const LABEL_PREFIX: &str = "cml.dev/";
/// Owner label: the runner's name (sanitized as a label value); cleanup lists by it.
pub const LABEL_RUNNER: &str = "cml.dev/runner";
/// Owner label: constant `cml`, on every object CML creates (cleanup's `labelSelector`).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "cml";
/// The GPU resource name of NVIDIA's device plugin.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// CML's default `--cloud-kubernetes-node-selector`: derive the selector from `--cloud-gpu`.
pub const INFER_SELECTOR: &str = "accelerator=infer";

/// What a failed Kubernetes rule reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum K8sError {
    #[error("unknown --cloud-type {0:?} for --cloud=kubernetes\nhint: use one of s, m, l, xl (with --cloud-gpu k80 or v100 for m, l, xl; t4 for m)")]
    UnknownType(String),
    #[error("--cloud-gpu {gpu} is not offered with --cloud-type {size} on --cloud=kubernetes\nhint: use --cloud-type m, l or xl with k80 or v100, or m with t4")]
    UnknownGpu { size: String, gpu: String },
    #[error("--cloud-kubernetes-node-selector {0:?} is not key=value\nhint: pass key=value pairs, e.g. accelerator=nvidia-tesla-t4,pool=ci")]
    BadSelector(String),
    #[error("--cloud-kubernetes-node-selector key {0:?} is not a valid label key\nhint: a key is [prefix/]name, the name at most 63 characters of [A-Za-z0-9._-] starting and ending alphanumeric")]
    BadSelectorKey(String),
}

/// Pod resources of a generic type: cores, memory (a Kubernetes quantity), GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSize {
    pub cpu: u32,
    pub memory: &'static str,
    pub gpus: u32,
}

/// `--cloud-type` (+ `--cloud-gpu`) → pod resources, per CML's Kubernetes column (REFERENCE
/// §2). `m+t4`, absent from CML's column, takes AWS's `g4dn.xlarge` (4 cores, 16 GiB, one T4).
/// An empty type is `m`; `nogpu` and an empty GPU mean none.
pub fn pod_size(cloud_type: &str, gpu: &str) -> Result<PodSize, K8sError> {
    let size = if cloud_type.is_empty() {
        "m"
    } else {
        cloud_type
    };
    let gpu = if gpu == "nogpu" { "" } else { gpu };
    let p = |cpu, memory, gpus| Ok(PodSize { cpu, memory, gpus });
    match (size, gpu) {
        ("s", "") => p(1, "1Gi", 0),
        ("m", "") => p(8, "32Gi", 0),
        ("l", "") => p(32, "128Gi", 0),
        ("xl", "") => p(64, "256Gi", 0),
        ("m", "t4") => p(4, "16Gi", 1),
        ("m", "k80") => p(4, "64Gi", 1),
        ("l", "k80") => p(32, "512Gi", 8),
        ("xl", "k80") => p(64, "768Gi", 16),
        ("m", "v100") => p(8, "64Gi", 1),
        ("l", "v100") => p(32, "256Gi", 4),
        ("xl", "v100") => p(64, "512Gi", 8),
        ("s" | "m" | "l" | "xl", g) => Err(K8sError::UnknownGpu {
            size: size.into(),
            gpu: g.into(),
        }),
        _ => Err(K8sError::UnknownType(cloud_type.into())),
    }
}

/// `--cloud-type` as cml resolves it for Kubernetes (`m+t4`) → the size (`m`) and the GPU
/// named in it (`t4`), if any.
pub fn split_type(machine_type: &str) -> (&str, Option<&str>) {
    match machine_type.split_once('+') {
        Some((size, gpu)) => (size, Some(gpu)),
        None => (machine_type, None),
    }
}

/// The size and GPU model of a pod from `--cloud-type` (`m`, or `m+t4` with the GPU in it)
/// and `--cloud-gpu` (which wins; `tesla` is `v100`, `nogpu` none, as everywhere in CML).
pub fn size_and_gpu<'a>(machine_type: &'a str, gpu: Option<&str>) -> (&'a str, String) {
    let (size, in_type) = split_type(machine_type);
    let gpu = match gpu.or(in_type) {
        None | Some("nogpu") => "",
        Some("tesla") => "v100",
        Some(g) => g,
    };
    (size, gpu.to_string())
}

/// Whether `ns` is a valid namespace name (a DNS-1123 label).
pub fn namespace_ok(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 63
        && ns
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !ns.starts_with('-')
        && !ns.ends_with('-')
}

/// The runner image a pod runs unless `--cloud-image` says otherwise: the project's published
/// image of `version`, its CUDA variant (`-gpu`) when the pod asks for GPUs.
pub fn default_image(version: &str, gpu: bool) -> String {
    format!(
        "{IMAGE_REPOSITORY}:{version}{}",
        if gpu { "-gpu" } else { "" }
    )
}

/// Where the project publishes its runner images (see the `Dockerfile`).
pub const IMAGE_REPOSITORY: &str = "ghcr.io/cml-rs/cml";

/// The node labels of spot capacity on every vendor, as the alternatives (ORed
/// `nodeSelectorTerms`) of a required node affinity: one pod spec fits EKS, GKE and AKS.
pub fn spot_node_terms() -> Vec<(&'static str, &'static str)> {
    [SpotVendor::Eks, SpotVendor::Gke, SpotVendor::Aks]
        .into_iter()
        .map(spot_selector)
        .collect()
}

/// The `accelerator` node label value of a GPU model (`t4` → `nvidia-tesla-t4`), the naming of
/// GKE's and CML's accelerator labels.
pub fn accelerator_label(gpu: &str) -> Option<String> {
    match gpu {
        "" | "nogpu" => None,
        g => Some(format!("nvidia-tesla-{}", g.to_ascii_lowercase())),
    }
}

/// Parses `--cloud-kubernetes-node-selector` (`k=v` pairs, comma-separated) into the pod's
/// `nodeSelector`. `accelerator=infer` (CML's default) is never sent: it becomes
/// `accelerator=<model>` when a GPU is asked and nothing otherwise.
pub fn node_selector(spec: &str, gpu: &str) -> Result<BTreeMap<String, String>, K8sError> {
    let mut out = BTreeMap::new();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| K8sError::BadSelector(pair.into()))?;
        let (k, v) = (k.trim(), v.trim());
        if !label_key_ok(k) {
            return Err(K8sError::BadSelectorKey(k.into()));
        }
        if k == "accelerator" && v == "infer" {
            if let Some(a) = accelerator_label(gpu) {
                out.insert(k.into(), a);
            }
            continue;
        }
        if !label_value_ok(v) {
            return Err(K8sError::BadSelector(pair.into()));
        }
        out.insert(k.into(), v.into());
    }
    Ok(out)
}

/// Managed Kubernetes services whose spot nodes CML can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpotVendor {
    /// Amazon EKS managed node groups: label `eks.amazonaws.com/capacityType=SPOT`, no taint.
    Eks,
    /// Google GKE Spot VMs: label `cloud.google.com/gke-spot=true`; GKE's documented taint
    /// `cloud.google.com/gke-spot=true:NoSchedule` (Autopilot sets it) is tolerated.
    Gke,
    /// Azure AKS spot node pools: label and taint
    /// `kubernetes.azure.com/scalesetpriority=spot` (`NoSchedule`, set by AKS).
    Aks,
}

/// A pod toleration: `(key, operator, value, effect)`.
pub type Toleration = (&'static str, &'static str, &'static str, &'static str);

/// The node selector a spot pod sets on `vendor`.
pub fn spot_selector(vendor: SpotVendor) -> (&'static str, &'static str) {
    match vendor {
        SpotVendor::Eks => ("eks.amazonaws.com/capacityType", "SPOT"),
        SpotVendor::Gke => ("cloud.google.com/gke-spot", "true"),
        SpotVendor::Aks => ("kubernetes.azure.com/scalesetpriority", "spot"),
    }
}

/// Tolerations of every vendor's spot taint. They are sent together with any spot request: a
/// toleration of a taint a cluster does not have changes nothing, so one pod spec fits all three.
pub fn spot_tolerations() -> Vec<Toleration> {
    vec![
        ("cloud.google.com/gke-spot", "Equal", "true", "NoSchedule"),
        (
            "kubernetes.azure.com/scalesetpriority",
            "Equal",
            "spot",
            "NoSchedule",
        ),
    ]
}

/// `s` as a label value: at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends
/// (other characters become `-`; empty when nothing alphanumeric remains).
pub fn label_value(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cut: String = mapped.chars().take(63).collect();
    cut.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// Whether `v` is a valid label value.
pub fn label_value_ok(v: &str) -> bool {
    v.is_empty() || label_value(v) == v
}

/// Whether `k` is a valid label (or annotation) key: `[prefix/]name`.
pub fn label_key_ok(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|s| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !s.starts_with('-')
                    && !s.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && label_value(name) == name
}

/// The owner labels of every object made for runner `runner`.
pub fn owner_labels(runner: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (LABEL_RUNNER.to_string(), label_value(runner)),
    ])
}

/// The Job name of runner `runner`: a DNS-1123 label of at most 56 characters (so
/// [`secret_name`] and the pod name the Job controller derives, `NAME-xxxxx`, stay within 63).
/// Lowercased, other characters become `-`; a name that had to change ends in 8 hex digits of
/// the original's SHA-256, so different runners never share a name.
pub fn job_name(runner: &str) -> String {
    let mapped: String = runner
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let trimmed = mapped.trim_matches('-');
    if trimmed == runner && trimmed.len() <= 56 && !trimmed.is_empty() {
        return trimmed.to_string();
    }
    let hash = hex8(runner);
    let head: String = trimmed.chars().take(47).collect();
    let head = head.trim_end_matches('-');
    if head.is_empty() {
        format!("cml-{hash}")
    } else {
        format!("{head}-{hash}")
    }
}

/// The name of the Secret holding runner `runner`'s forge token: `<job>-token`.
pub fn secret_name(runner: &str) -> String {
    format!("{}-token", job_name(runner))
}

fn hex8(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_types_follow_cmls_kubernetes_column() {
        assert_eq!(
            pod_size("s", "").unwrap(),
            PodSize {
                cpu: 1,
                memory: "1Gi",
                gpus: 0
            }
        );
        assert_eq!(
            pod_size("", "nogpu").unwrap(),
            PodSize {
                cpu: 8,
                memory: "32Gi",
                gpus: 0
            }
        );
        assert_eq!(
            pod_size("xl", "k80").unwrap(),
            PodSize {
                cpu: 64,
                memory: "768Gi",
                gpus: 16
            }
        );
        assert_eq!(
            pod_size("l", "v100").unwrap(),
            PodSize {
                cpu: 32,
                memory: "256Gi",
                gpus: 4
            }
        );
        assert_eq!(
            pod_size("m", "t4").unwrap(),
            PodSize {
                cpu: 4,
                memory: "16Gi",
                gpus: 1
            }
        );
    }

    #[test]
    fn unknown_types_and_gpus_are_refused_with_a_hint() {
        let e = pod_size("xxl", "").unwrap_err();
        assert_eq!(e, K8sError::UnknownType("xxl".into()));
        assert!(e.to_string().contains("hint: use one of s, m, l, xl"));
        let e = pod_size("s", "v100").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("--cloud-gpu v100 is not offered with --cloud-type s"));
        assert!(pod_size("l", "t4").is_err());
    }

    #[test]
    fn accelerator_infer_is_derived_never_sent() {
        assert!(node_selector(INFER_SELECTOR, "").unwrap().is_empty());
        assert!(node_selector(INFER_SELECTOR, "nogpu").unwrap().is_empty());
        assert_eq!(
            node_selector(INFER_SELECTOR, "v100").unwrap(),
            BTreeMap::from([("accelerator".into(), "nvidia-tesla-v100".into())])
        );
        assert_eq!(
            node_selector("pool=ci, accelerator=nvidia-l4", "t4").unwrap(),
            BTreeMap::from([
                ("accelerator".into(), "nvidia-l4".into()),
                ("pool".into(), "ci".into())
            ])
        );
    }

    #[test]
    fn bad_node_selectors_are_refused() {
        assert_eq!(
            node_selector("pool", "").unwrap_err(),
            K8sError::BadSelector("pool".into())
        );
        assert_eq!(
            node_selector("-pool=a", "").unwrap_err(),
            K8sError::BadSelectorKey("-pool".into())
        );
        assert!(node_selector("Example.com/pool=a", "").is_err());
        assert!(node_selector("example.com/pool=a", "").is_ok());
        assert!(node_selector("pool=a b", "").is_err());
        assert!(node_selector(&format!("pool={}", "a".repeat(64)), "").is_err());
    }

    #[test]
    fn spot_placement_per_vendor() {
        assert_eq!(
            spot_selector(SpotVendor::Eks),
            ("eks.amazonaws.com/capacityType", "SPOT")
        );
        assert_eq!(
            spot_selector(SpotVendor::Gke),
            ("cloud.google.com/gke-spot", "true")
        );
        assert_eq!(
            spot_selector(SpotVendor::Aks),
            ("kubernetes.azure.com/scalesetpriority", "spot")
        );
        let t = spot_tolerations();
        assert!(t.contains(&(
            "kubernetes.azure.com/scalesetpriority",
            "Equal",
            "spot",
            "NoSchedule"
        )));
        assert!(t.contains(&("cloud.google.com/gke-spot", "Equal", "true", "NoSchedule")));
    }

    #[test]
    fn label_values_are_sanitized() {
        assert_eq!(label_value("cml-runner_1.a"), "cml-runner_1.a");
        assert_eq!(label_value("my runner/x"), "my-runner-x");
        assert_eq!(label_value("-_x_-"), "x");
        assert_eq!(label_value("ééé"), "");
        let long = format!("{}-", "a".repeat(62));
        let v = label_value(&format!("{long}bbbb"));
        assert_eq!(v, "a".repeat(62));
        assert!(label_value_ok(""));
        assert!(!label_value_ok("a b"));
        assert_eq!(owner_labels("r 1")[LABEL_RUNNER], "r-1");
        assert_eq!(owner_labels("r")[LABEL_MANAGED_BY], "cml");
    }

    #[test]
    fn names_are_dns1123_labels_within_limits_and_distinct() {
        assert_eq!(job_name("cml-abc123"), "cml-abc123");
        let a = job_name("CML_Runner");
        assert!(
            a.starts_with("cml-runner-") && a.len() == "cml-runner-".len() + 8,
            "{a}"
        );
        assert_ne!(job_name("cml_runner"), job_name("cml.runner"));
        let long = job_name(&"x".repeat(100));
        assert!(long.len() <= 56, "{long}");
        assert!(secret_name(&"x".repeat(100)).len() <= 63);
        assert!(job_name("___").starts_with("cml-"));
        for n in [job_name("A--b__"), job_name("-x-"), long] {
            assert!(n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            assert!(!n.starts_with('-') && !n.ends_with('-'), "{n}");
        }
    }
}
