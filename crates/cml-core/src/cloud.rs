//! `--cloud*` options: generic machine types and regions (CML's tables), and validation of
//! every value before anything is created.

use std::fmt;

/// A cloud provider CML knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Aws,
    Azure,
    Gcp,
    Kubernetes,
}

impl Cloud {
    pub fn parse(s: &str) -> Result<Cloud, CloudError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "aws" => Ok(Cloud::Aws),
            "azure" => Ok(Cloud::Azure),
            "gcp" => Ok(Cloud::Gcp),
            "kubernetes" | "k8s" => Ok(Cloud::Kubernetes),
            other => Err(CloudError::UnknownCloud(other.to_string())),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Azure => "azure",
            Cloud::Gcp => "gcp",
            Cloud::Kubernetes => "kubernetes",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    #[error("unknown cloud {0:?}\nhint: use --cloud aws, azure, gcp or kubernetes (or leave it out to run on this machine)")]
    UnknownCloud(String),
    #[error("--cloud-hdd-size must be a positive number of GB, got {0:?}")]
    HddSize(String),
    #[error("--cloud-spot-price must be a number of USD per hour, or -1 for the market price, got {0:?}")]
    SpotPrice(String),
    #[error("--cloud-metadata must be key=value, got {0:?}")]
    Metadata(String),
    #[error("--cloud-startup-script must be a base64-encoded script: {0}\nhint: pass $(base64 -w0 script.sh)")]
    StartupScript(String),
    #[error("--cloud-ssh-private does not hold a PEM private key\nhint: pass the contents of the key file, starting with -----BEGIN ... PRIVATE KEY-----")]
    SshKey,
    #[error("unknown --cloud-gpu {0:?}\nhint: use nogpu, k80, v100, t4 or tesla (or a native accelerator name)")]
    Gpu(String),
    #[error(
        "--cloud-kubernetes-node-selector must be key=value pairs separated by commas, got {0:?}"
    )]
    NodeSelector(String),
    #[error("--cloud-kubernetes-namespace {0:?} is not a namespace name\nhint: a namespace is at most 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit")]
    Namespace(String),
    #[error(transparent)]
    Kubernetes(#[from] crate::k8s::K8sError),
    #[error("--{option} is empty")]
    Empty { option: &'static str },
    #[error(transparent)]
    Gcp(#[from] crate::gcp::GcpError),
    #[error(transparent)]
    Azure(#[from] crate::azure::AzureError),
}

/// Generic machine types (CML's table): `type+gpu` → per-cloud native type.
const TYPES: &[(&str, &str, &str, &str)] = &[
    // generic, AWS, Azure, GCP
    ("s", "t2.micro", "Standard_B1s", "g1-small"),
    ("m", "m5.2xlarge", "Standard_F8s_v2", "e2-custom-8-32768"),
    ("l", "m5.8xlarge", "Standard_F32s_v2", "e2-custom-32-131072"),
    (
        "xl",
        "m5.16xlarge",
        "Standard_F64s_v2",
        "n2-custom-64-262144",
    ),
    (
        "m+t4",
        "g4dn.xlarge",
        "Standard_NC4as_T4_v3",
        "n1-standard-4+nvidia-tesla-t4*1",
    ),
    (
        "m+k80",
        "p2.xlarge",
        "Standard_NC6",
        "custom-8-53248+nvidia-tesla-k80*1",
    ),
    (
        "l+k80",
        "p2.8xlarge",
        "Standard_NC12",
        "custom-32-131072+nvidia-tesla-k80*4",
    ),
    (
        "xl+k80",
        "p2.16xlarge",
        "Standard_NC24",
        "custom-64-212992-ext+nvidia-tesla-k80*8",
    ),
    // CML maps m+v100 to p3.xlarge, which does not exist; p3.2xlarge is the 1×V100 type.
    (
        "m+v100",
        "p3.2xlarge",
        "Standard_NC6s_v3",
        "custom-8-65536-ext+nvidia-tesla-v100*1",
    ),
    (
        "l+v100",
        "p3.8xlarge",
        "Standard_NC12s_v3",
        "custom-32-262144-ext+nvidia-tesla-v100*4",
    ),
    (
        "xl+v100",
        "p3.16xlarge",
        "Standard_NC24s_v3",
        "custom-64-524288-ext+nvidia-tesla-v100*8",
    ),
];

/// Generic regions: generic → AWS region, Azure region, GCP zone.
const REGIONS: &[(&str, &str, &str, &str)] = &[
    ("us-east", "us-east-1", "eastus", "us-east1-c"),
    ("us-west", "us-west-1", "westus2", "us-west1-b"),
    ("eu-north", "eu-north-1", "northeurope", "europe-north1-a"),
    ("eu-west", "eu-west-1", "westeurope", "europe-west1-d"),
];

const GPUS: &[&str] = &["nogpu", "k80", "v100", "t4", "tesla"];

/// The native machine type for `type` (+ `gpu`). Unknown keys pass through as native types.
/// Kubernetes has no native types: the generic key is returned for the provider to size.
pub fn machine_type(cloud: Cloud, generic: &str, gpu: Option<&str>) -> String {
    let gpu = gpu.map(|g| if g == "tesla" { "v100" } else { g });
    let key = match gpu {
        Some("nogpu") | None => generic.to_string(),
        Some(g) => format!("{generic}+{g}"),
    };
    match TYPES.iter().find(|t| t.0 == key) {
        Some(t) => match cloud {
            Cloud::Aws => t.1.to_string(),
            Cloud::Azure => t.2.to_string(),
            Cloud::Gcp => t.3.to_string(),
            Cloud::Kubernetes => key,
        },
        None => generic.to_string(),
    }
}

/// The native region (GCP: zone) for a generic region; native values pass through.
pub fn region(cloud: Cloud, generic: &str) -> String {
    match REGIONS.iter().find(|r| r.0 == generic) {
        Some(r) => match cloud {
            Cloud::Aws => r.1.to_string(),
            Cloud::Azure => r.2.to_string(),
            Cloud::Gcp => r.3.to_string(),
            Cloud::Kubernetes => generic.to_string(),
        },
        None => generic.to_string(),
    }
}

/// The raw `--cloud*` values as given (after CLI/env resolution).
#[derive(Debug, Clone, Default)]
pub struct CloudArgs {
    pub cloud: Option<String>,
    pub region: String,
    pub machine_type: String,
    pub gpu: Option<String>,
    pub hdd_size: String,
    pub spot: bool,
    pub spot_price: String,
    /// `--cloud-spot-fallback`: launch on demand when no zone has spot capacity.
    pub spot_fallback: bool,
    pub permission_set: Option<String>,
    pub metadata: Vec<String>,
    pub startup_script: Option<String>,
    /// PEM; only checked for shape here, never printed.
    pub ssh_private_is_pem: Option<bool>,
    pub image: Option<String>,
    pub aws_security_group: Option<String>,
    pub aws_subnet: Option<String>,
    pub kubernetes_node_selector: String,
    /// `--cloud-kubernetes-namespace`; `None` = the kubeconfig context's.
    pub kubernetes_namespace: Option<String>,
}

/// Validated cloud settings, with generic names resolved to native ones.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudSpec {
    pub cloud: Cloud,
    pub region: String,
    pub machine_type: String,
    pub gpu: Option<String>,
    pub hdd_size_gb: u32,
    pub spot: bool,
    /// `None` = market price.
    pub spot_price: Option<f64>,
    /// Launch on demand when no zone of the region has spot capacity at the price.
    pub spot_fallback: bool,
    pub permission_set: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub startup_script: Option<String>,
    pub image: Option<String>,
    pub aws_security_group: Option<String>,
    pub aws_subnet: Option<String>,
    pub kubernetes_node_selector: Vec<(String, String)>,
    /// `--cloud-kubernetes-namespace` (a DNS-1123 label); `None` = the kubeconfig context's.
    pub kubernetes_namespace: Option<String>,
}

/// Validates every `--cloud*` value. Returns `Ok(None)` when no cloud was asked for.
pub fn validate(args: &CloudArgs) -> Result<Option<CloudSpec>, CloudError> {
    let Some(name) = args.cloud.as_deref().filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    let cloud = Cloud::parse(name)?;
    let hdd: f64 = args
        .hdd_size
        .trim()
        .parse()
        .map_err(|_| CloudError::HddSize(args.hdd_size.clone()))?;
    if !(hdd > 0.0 && hdd.fract() == 0.0 && hdd <= 65536.0) {
        return Err(CloudError::HddSize(args.hdd_size.clone()));
    }
    let price: f64 = args
        .spot_price
        .trim()
        .parse()
        .map_err(|_| CloudError::SpotPrice(args.spot_price.clone()))?;
    let spot_price = if price == -1.0 {
        None
    } else if price > 0.0 && price.is_finite() {
        Some(price)
    } else {
        return Err(CloudError::SpotPrice(args.spot_price.clone()));
    };
    let metadata = args
        .metadata
        .iter()
        .map(|m| key_value(m).ok_or_else(|| CloudError::Metadata(m.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let startup_script = match &args.startup_script {
        None => None,
        Some(s) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| CloudError::StartupScript(e.to_string()))?;
            Some(
                String::from_utf8(bytes)
                    .map_err(|_| CloudError::StartupScript("not UTF-8 text".into()))?,
            )
        }
    };
    if args.ssh_private_is_pem == Some(false) {
        return Err(CloudError::SshKey);
    }
    let gpu = match args.gpu.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
        None => None,
        Some(g) if GPUS.contains(&g) => Some(g.to_string()),
        Some(g) if g.contains(char::is_whitespace) => return Err(CloudError::Gpu(g.into())),
        Some(g) => Some(g.to_string()),
    };
    if args.machine_type.trim().is_empty() {
        return Err(CloudError::Empty {
            option: "cloud-type",
        });
    }
    if args.region.trim().is_empty() {
        return Err(CloudError::Empty {
            option: "cloud-region",
        });
    }
    let node_selector = args
        .kubernetes_node_selector
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|kv| {
            key_value(kv)
                .ok_or_else(|| CloudError::NodeSelector(args.kubernetes_node_selector.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (region, machine_type) = match cloud {
        // Compute Engine: a zone, and `MACHINE[+ACCELERATOR*COUNT]` (see [`crate::gcp`]).
        Cloud::Gcp => {
            let machine = crate::gcp::machine(&args.machine_type, gpu.as_deref())?;
            crate::gcp::image(args.image.as_deref(), &machine)?;
            (crate::gcp::zone(&args.region)?, machine.to_string())
        }
        // Azure: a location, and a VM size (see [`crate::azure`]).
        Cloud::Azure => (
            crate::azure::location(&args.region)?,
            crate::azure::vm_size(&args.machine_type, gpu.as_deref())?,
        ),
        // Kubernetes: pod resources (see [`crate::k8s`]), checked here; no region.
        Cloud::Kubernetes => {
            let (size, pod_gpu) =
                crate::k8s::size_and_gpu(args.machine_type.trim(), gpu.as_deref());
            crate::k8s::pod_size(size, &pod_gpu)?;
            crate::k8s::node_selector(&args.kubernetes_node_selector, &pod_gpu)?;
            (
                region(cloud, args.region.trim()),
                machine_type(cloud, args.machine_type.trim(), gpu.as_deref()),
            )
        }
        _ => (
            region(cloud, args.region.trim()),
            machine_type(cloud, args.machine_type.trim(), gpu.as_deref()),
        ),
    };
    let kubernetes_namespace = match args
        .kubernetes_namespace
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        None => None,
        Some(ns) if crate::k8s::namespace_ok(ns) => Some(ns.to_string()),
        Some(ns) => return Err(CloudError::Namespace(ns.to_string())),
    };
    Ok(Some(CloudSpec {
        cloud,
        region,
        machine_type,
        gpu,
        hdd_size_gb: hdd as u32,
        spot: args.spot,
        spot_price,
        spot_fallback: args.spot && args.spot_fallback,
        permission_set: args.permission_set.clone().filter(|s| !s.is_empty()),
        metadata,
        startup_script,
        image: args.image.clone().filter(|s| !s.is_empty()),
        aws_security_group: args.aws_security_group.clone().filter(|s| !s.is_empty()),
        aws_subnet: args.aws_subnet.clone().filter(|s| !s.is_empty()),
        kubernetes_node_selector: node_selector,
        kubernetes_namespace,
    }))
}

/// The tags every resource of runner `name` carries: the owner tag `cml:id` (how leaked
/// resources are found again), the runner, repository and labels, then `--cloud-metadata`
/// (which cannot override the `cml:` tags).
pub fn resource_tags(
    name: &str,
    repo: &str,
    labels: &str,
    metadata: &[(String, String)],
) -> Vec<(String, String)> {
    let mut tags = vec![
        ("cml:id".to_string(), name.to_string()),
        ("cml:runner".to_string(), name.to_string()),
        ("cml:repo".to_string(), repo.to_string()),
        ("cml:labels".to_string(), labels.to_string()),
    ];
    for (k, v) in metadata {
        if !k.starts_with("cml:") && !tags.iter().any(|(t, _)| t == k) {
            tags.push((k.clone(), v.clone()));
        }
    }
    tags
}

/// True when `text` looks like a PEM private key (any algorithm).
pub fn looks_like_pem_private_key(text: &str) -> bool {
    let t = text.trim();
    t.starts_with("-----BEGIN ") && t.contains("PRIVATE KEY-----") && t.ends_with("-----")
}

fn key_value(s: &str) -> Option<(String, String)> {
    let (k, v) = s.split_once('=')?;
    let k = k.trim();
    (!k.is_empty()).then(|| (k.to_string(), v.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cloud: &str) -> CloudArgs {
        CloudArgs {
            cloud: Some(cloud.into()),
            region: "us-west".into(),
            machine_type: "m".into(),
            hdd_size: "35".into(),
            spot_price: "-1".into(),
            spot_fallback: false,
            kubernetes_node_selector: "accelerator=infer".into(),
            kubernetes_namespace: None,
            ..Default::default()
        }
    }

    #[test]
    fn generic_types_and_regions_resolve() {
        assert_eq!(machine_type(Cloud::Aws, "m", None), "m5.2xlarge");
        assert_eq!(machine_type(Cloud::Aws, "m", Some("t4")), "g4dn.xlarge");
        assert_eq!(machine_type(Cloud::Aws, "m", Some("tesla")), "p3.2xlarge");
        assert_eq!(machine_type(Cloud::Aws, "m+v100", None), "p3.2xlarge");
        assert_eq!(machine_type(Cloud::Azure, "l+k80", None), "Standard_NC12");
        assert_eq!(machine_type(Cloud::Aws, "p2.xlarge", None), "p2.xlarge");
        assert_eq!(machine_type(Cloud::Aws, "m", Some("nogpu")), "m5.2xlarge");
        assert_eq!(region(Cloud::Aws, "us-west"), "us-west-1");
        assert_eq!(region(Cloud::Gcp, "eu-west"), "europe-west1-d");
        assert_eq!(region(Cloud::Aws, "us-east-1a"), "us-east-1a");
    }

    #[test]
    fn seed_example_validates() {
        let mut a = args("aws");
        a.machine_type = "p2.xlarge".into();
        let spec = validate(&a).unwrap().unwrap();
        assert_eq!(spec.machine_type, "p2.xlarge");
        assert_eq!(spec.region, "us-west-1");
        assert_eq!(spec.hdd_size_gb, 35);
        assert_eq!(spec.spot_price, None);
    }

    #[test]
    fn bad_values_are_rejected_with_the_option_named() {
        type Mutation = Box<dyn Fn(&mut CloudArgs)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|a| a.cloud = Some("digitalocean".into())),
                "unknown cloud",
            ),
            (Box::new(|a| a.hdd_size = "-5".into()), "--cloud-hdd-size"),
            (Box::new(|a| a.hdd_size = "big".into()), "--cloud-hdd-size"),
            (
                Box::new(|a| a.spot_price = "cheap".into()),
                "--cloud-spot-price",
            ),
            (
                Box::new(|a| a.spot_price = "0".into()),
                "--cloud-spot-price",
            ),
            (
                Box::new(|a| a.metadata = vec!["novalue".into()]),
                "--cloud-metadata",
            ),
            (
                Box::new(|a| a.startup_script = Some("%%%".into())),
                "--cloud-startup-script",
            ),
            (
                Box::new(|a| a.ssh_private_is_pem = Some(false)),
                "--cloud-ssh-private",
            ),
            (
                Box::new(|a| a.kubernetes_node_selector = "x".into()),
                "node-selector",
            ),
            (Box::new(|a| a.machine_type = " ".into()), "--cloud-type"),
        ];
        for (mutate, needle) in cases {
            let mut a = args("aws");
            mutate(&mut a);
            let e = validate(&a).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should mention {needle}");
        }
    }

    #[test]
    fn gcp_values_resolve_to_zones_and_machines() {
        let mut a = args("gcp");
        a.gpu = Some("t4".into());
        let spec = validate(&a).unwrap().unwrap();
        assert_eq!(spec.region, "us-west1-b");
        assert_eq!(spec.machine_type, "n1-standard-4+nvidia-tesla-t4*1");
        a.machine_type = "n1-highmem-8".into();
        a.region = "europe-west4-a".into();
        let spec = validate(&a).unwrap().unwrap();
        assert_eq!(spec.machine_type, "n1-highmem-8+nvidia-tesla-t4*1");
        assert_eq!(spec.region, "europe-west4-a");
        a.gpu = None;
        a.machine_type = "g2-standard-16+nvidia-l4*1".into();
        assert_eq!(
            validate(&a).unwrap().unwrap().machine_type,
            "g2-standard-16+nvidia-l4*1"
        );
    }

    #[test]
    fn bad_gcp_values_are_rejected_with_the_option_named() {
        type Mutation = Box<dyn Fn(&mut CloudArgs)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|a| a.region = "us-east1".into()),
                "--cloud-region \"us-east1\" is a Compute Engine region",
            ),
            (
                Box::new(|a| a.region = "mars".into()),
                "--cloud-region \"mars\"",
            ),
            (
                Box::new(|a| a.machine_type = "g2-standard-16+nvidia-l4*99".into()),
                "--cloud-type",
            ),
            (
                Box::new(|a| a.gpu = Some("nvidia-l4".into())),
                "--cloud-type \"m\" with --cloud-gpu \"nvidia-l4\"",
            ),
            (
                Box::new(|a| a.image = Some("noble".into())),
                "--cloud-image \"noble\"",
            ),
        ];
        for (mutate, needle) in cases {
            let mut a = args("gcp");
            mutate(&mut a);
            let e = validate(&a).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should mention {needle}");
            assert!(e.contains("hint:"), "{e}");
        }
        // The same values are no concern of the other clouds.
        let mut a = args("aws");
        a.image = Some("noble".into());
        assert!(validate(&a).is_ok());
    }

    #[test]
    fn no_cloud_is_none() {
        assert_eq!(validate(&CloudArgs::default()).unwrap(), None);
    }

    #[test]
    fn tags_carry_the_owner_and_cannot_be_overridden() {
        let t = resource_tags(
            "r1",
            "https://github.com/o/r",
            "cml,gpu",
            &[
                ("team".into(), "ml".into()),
                ("cml:id".into(), "evil".into()),
            ],
        );
        assert_eq!(t[0], ("cml:id".into(), "r1".into()));
        assert!(t.contains(&("team".into(), "ml".into())));
        assert_eq!(t.iter().filter(|(k, _)| k == "cml:id").count(), 1);
    }

    #[test]
    fn pem_shape() {
        assert!(looks_like_pem_private_key(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
        ));
        assert!(!looks_like_pem_private_key("ssh-rsa AAAA"));
    }
}
