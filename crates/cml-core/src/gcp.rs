//! Google Cloud (`--cloud=gcp`): the pure rules that turn `--cloud*` values into Compute
//! Engine's terms — zones and the zones to fall back to, machine types with accelerators,
//! boot images — and the labels every resource of a runner carries.
//!
//! Compute Engine's label rules: keys and values hold only lowercase letters, digits, `_` and
//! `-`, at most 63 characters; keys start with a lowercase letter; at most 64 labels. A runner
//! name usually fits and a repository URL never does, so:
//! - `cml-id` (the owner label, how cleanup finds a runner's instances and disks): the runner
//!   name when it is already a valid label value, else its sanitized form followed by `-` and
//!   16 hex digits of the SHA-256 of the name (so two names never share an owner label);
//! - `cml-repo`: 16 hex digits of the SHA-256 of the repository URL (an exact-match handle for
//!   "every runner of this repository");
//! - the full runner name, repository URL and runner labels go in instance metadata items
//!   `cml-runner`, `cml-repo`, `cml-labels` (metadata values are free text), where people and
//!   tools can read them;
//! - `--cloud-metadata key=value` pairs become labels after [`sanitize_label_key`] and
//!   [`sanitize_label_value`]; keys starting `cml-` or `cml_` after sanitizing are reserved
//!   (left out), so they cannot override the owner labels; the first of two pairs with the
//!   same sanitized key wins.

use sha2::{Digest, Sha256};

use crate::cloud::{self, Cloud};

/// The owner label key.
pub const ID_LABEL: &str = "cml-id";
/// The repository-hash label key.
pub const REPO_LABEL: &str = "cml-repo";

/// Where Compute Engine keeps Ubuntu images.
pub const UBUNTU_PROJECT: &str = "ubuntu-os-cloud";
/// The default boot image (x86-64 machines): Ubuntu 24.04 LTS, latest of its family.
pub const DEFAULT_IMAGE: &str =
    "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64";
/// The default boot image for Arm machine types.
pub const DEFAULT_IMAGE_ARM64: &str =
    "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-arm64";

/// The most accelerators Compute Engine attaches to one instance.
pub const MAX_ACCELERATORS: u32 = 16;

/// The zones of the regions CML's generic regions use (and `us-central1`), as Compute Engine
/// has them. Other regions follow [`fallback_zones`]'s rule.
const REGION_ZONES: &[(&str, &[&str])] = &[
    ("us-east1", &["us-east1-b", "us-east1-c", "us-east1-d"]),
    ("us-west1", &["us-west1-a", "us-west1-b", "us-west1-c"]),
    (
        "europe-north1",
        &["europe-north1-a", "europe-north1-b", "europe-north1-c"],
    ),
    (
        "europe-west1",
        &["europe-west1-b", "europe-west1-c", "europe-west1-d"],
    ),
    (
        "us-central1",
        &[
            "us-central1-a",
            "us-central1-b",
            "us-central1-c",
            "us-central1-f",
        ],
    ),
];

/// `--cloud-gpu` names → Compute Engine accelerator types.
const GPUS: &[(&str, &str)] = &[
    ("k80", "nvidia-tesla-k80"),
    ("v100", "nvidia-tesla-v100"),
    ("tesla", "nvidia-tesla-v100"),
    ("t4", "nvidia-tesla-t4"),
];

/// Machine families that run on Arm (Ampere Altra, Google Axion).
const ARM_FAMILIES: &[&str] = &["t2a", "c4a", "n4a"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GcpError {
    #[error("--cloud-region {0:?} is not a Compute Engine zone\nhint: give a generic region (us-east, us-west, eu-north, eu-west) or a zone such as us-central1-a")]
    Zone(String),
    #[error("--cloud-region {region:?} is a Compute Engine region; machines are placed in zones\nhint: give one of its zones, such as {example}")]
    RegionNotZone { region: String, example: String },
    #[error("--cloud-type {0:?} is not a Compute Engine machine type\nhint: give a generic type (s, m, l, xl), a machine type such as n1-standard-4, or MACHINE+ACCELERATOR*COUNT such as g2-standard-16+nvidia-l4*1")]
    MachineType(String),
    #[error("--cloud-type {machine:?}: the accelerator count must be a whole number from 1 to 16, got {count:?}\nhint: write MACHINE+ACCELERATOR*COUNT, such as g2-standard-16+nvidia-l4*1")]
    AcceleratorCount { machine: String, count: String },
    #[error("--cloud-type {machine:?} with --cloud-gpu {gpu:?} has no Compute Engine machine type\nhint: give a native type with its accelerator, such as g2-standard-16+nvidia-l4*1")]
    NoGenericGpu { machine: String, gpu: String },
    #[error("--cloud-type {machine:?} already names an accelerator, and --cloud-gpu {gpu:?} another\nhint: leave out --cloud-gpu, or give the machine type without +ACCELERATOR*COUNT")]
    GpuTwice { machine: String, gpu: String },
    #[error("--cloud-gpu {0:?} is not a Compute Engine accelerator type\nhint: use k80, v100, t4, tesla or nogpu, or a native accelerator type such as nvidia-l4")]
    Gpu(String),
    #[error("--cloud-image {0:?} is not a Compute Engine image\nhint: give PROJECT/FAMILY (ubuntu-os-cloud/ubuntu-2404-lts-amd64), projects/PROJECT/global/images/NAME, or an image URL")]
    Image(String),
}

// ---- zones -----------------------------------------------------------------------------------

/// Splits `REGION-X` (a zone) into its region, checking the shape Compute Engine uses:
/// lowercase words joined by `-`, the last one ending in digits, then `-` and one letter
/// (`us-central1-a`, `northamerica-northeast2-b`).
pub fn region_of_zone(zone: &str) -> Option<&str> {
    let (region, letter) = zone.rsplit_once('-')?;
    let letter_ok = letter.len() == 1 && letter.chars().all(|c| c.is_ascii_lowercase());
    is_region(region).then_some(region).filter(|_| letter_ok)
}

fn is_region(r: &str) -> bool {
    let words: Vec<&str> = r.split('-').collect();
    let Some((last, first)) = words.split_last() else {
        return false;
    };
    let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase());
    let digits_at = last.find(|c: char| c.is_ascii_digit());
    !first.is_empty()
        && first.iter().all(|w| word(w))
        && digits_at.is_some_and(|i| {
            i > 0 && word(&last[..i]) && last[i..].chars().all(|c| c.is_ascii_digit())
        })
}

/// The zone for `--cloud-region`: a generic region's zone (REFERENCE §3), or a native zone
/// as given. A region name is refused with a hint naming one of its zones.
pub fn zone(region_arg: &str) -> Result<String, GcpError> {
    let arg = region_arg.trim();
    let z = cloud::region(Cloud::Gcp, arg);
    if region_of_zone(&z).is_some() {
        return Ok(z);
    }
    if is_region(&z) {
        let example = zones_of_region(&z)
            .and_then(|zs| zs.first().map(|s| s.to_string()))
            .unwrap_or_else(|| format!("{z}-a"));
        return Err(GcpError::RegionNotZone { region: z, example });
    }
    Err(GcpError::Zone(arg.to_string()))
}

/// The zones of `region`, for the regions in the table.
pub fn zones_of_region(region: &str) -> Option<&'static [&'static str]> {
    REGION_ZONES
        .iter()
        .find(|(r, _)| *r == region)
        .map(|(_, zs)| *zs)
}

/// The other zones of `zone`'s region, in order, to try when `zone` has no capacity. For a
/// region in the table, its real zones; for another region `R`, `R-a`, `R-b`, `R-c` (every
/// Compute Engine region has at least three zones, and in most they are a, b and c; a launcher
/// that can ask `regions.get` for the region's `zones` should prefer that answer).
pub fn fallback_zones(zone: &str) -> Vec<String> {
    let Some(region) = region_of_zone(zone) else {
        return Vec::new();
    };
    match zones_of_region(region) {
        Some(zs) => zs
            .iter()
            .filter(|z| **z != zone)
            .map(|z| z.to_string())
            .collect(),
        None => ["a", "b", "c"]
            .iter()
            .map(|l| format!("{region}-{l}"))
            .filter(|z| z != zone)
            .collect(),
    }
}

// ---- machine types ---------------------------------------------------------------------------

/// Accelerators attached to an instance (`guestAccelerators`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accelerator {
    /// Accelerator type name (`nvidia-tesla-t4`).
    pub name: String,
    pub count: u32,
}

/// A Compute Engine machine: a machine type and optional accelerators. Displayed (and
/// parsed) as `MACHINE` or `MACHINE+ACCELERATOR*COUNT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub machine_type: String,
    pub accelerator: Option<Accelerator>,
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.ends_with('-')
}

impl Machine {
    /// Parses `MACHINE` or `MACHINE+ACCELERATOR*COUNT` (names are Compute Engine resource
    /// names: lowercase letters, digits, `-`).
    pub fn parse(s: &str) -> Result<Machine, GcpError> {
        let s = s.trim();
        let bad = || GcpError::MachineType(s.to_string());
        let (machine, acc) = match s.split_once('+') {
            None => (s, None),
            Some((m, a)) => (m, Some(a)),
        };
        if !name_ok(machine) {
            return Err(bad());
        }
        let accelerator = match acc {
            None => None,
            Some(a) => {
                let (name, count) = a.split_once('*').ok_or_else(bad)?;
                if !name_ok(name) {
                    return Err(bad());
                }
                let n: u32 = count.parse().map_err(|_| GcpError::AcceleratorCount {
                    machine: s.to_string(),
                    count: count.to_string(),
                })?;
                if !(1..=MAX_ACCELERATORS).contains(&n) {
                    return Err(GcpError::AcceleratorCount {
                        machine: s.to_string(),
                        count: count.to_string(),
                    });
                }
                Some(Accelerator {
                    name: name.to_string(),
                    count: n,
                })
            }
        };
        Ok(Machine {
            machine_type: machine.to_string(),
            accelerator,
        })
    }

    /// Whether the machine type runs on Arm (needs an arm64 image).
    pub fn is_arm(&self) -> bool {
        let family = self.machine_type.split('-').next().unwrap_or("");
        ARM_FAMILIES.contains(&family)
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.machine_type)?;
        if let Some(a) = &self.accelerator {
            write!(f, "+{}*{}", a.name, a.count)?;
        }
        Ok(())
    }
}

/// The accelerator type for `--cloud-gpu`: `k80` → `nvidia-tesla-k80`, `v100` and `tesla` →
/// `nvidia-tesla-v100`, `t4` → `nvidia-tesla-t4`, `nogpu` → none; a native accelerator type
/// name passes through.
pub fn accelerator_type(gpu: &str) -> Result<Option<String>, GcpError> {
    let g = gpu.trim();
    if g.is_empty() || g == "nogpu" {
        return Ok(None);
    }
    if let Some((_, native)) = GPUS.iter().find(|(k, _)| *k == g) {
        return Ok(Some(native.to_string()));
    }
    if name_ok(g) && g.contains('-') {
        return Ok(Some(g.to_string()));
    }
    Err(GcpError::Gpu(g.to_string()))
}

const GENERIC_SIZES: &[&str] = &["s", "m", "l", "xl"];

/// The machine for `--cloud-type` and `--cloud-gpu`:
/// - a generic type (with the GPU) found in CML's table (REFERENCE §2) gives its GCP row;
/// - a generic size whose GPU combination is not in the table is refused;
/// - a native `MACHINE` or `MACHINE+ACCELERATOR*COUNT` passes through, and a `--cloud-gpu`
///   (other than `nogpu`) adds one such accelerator to a native type that has none.
pub fn machine(type_arg: &str, gpu: Option<&str>) -> Result<Machine, GcpError> {
    let t = type_arg.trim();
    let gpu = gpu
        .map(str::trim)
        .filter(|g| !g.is_empty() && *g != "nogpu");
    let (size, key_gpu) = match t.split_once('+') {
        Some((s, g)) => (s, Some(g)),
        None => (t, None),
    };
    if GENERIC_SIZES.contains(&size) {
        if let (Some(_), Some(g)) = (key_gpu, gpu) {
            return Err(GcpError::GpuTwice {
                machine: t.to_string(),
                gpu: g.to_string(),
            });
        }
        let resolved = cloud::machine_type(Cloud::Gcp, t, gpu);
        if resolved == t {
            return Err(GcpError::NoGenericGpu {
                machine: size.to_string(),
                gpu: key_gpu.or(gpu).unwrap_or_default().to_string(),
            });
        }
        return Machine::parse(&resolved);
    }
    let mut m = Machine::parse(t)?;
    if let Some(g) = gpu {
        let name = accelerator_type(g)?.ok_or_else(|| GcpError::Gpu(g.to_string()))?;
        if m.accelerator.is_some() {
            return Err(GcpError::GpuTwice {
                machine: t.to_string(),
                gpu: g.to_string(),
            });
        }
        m.accelerator = Some(Accelerator { name, count: 1 });
    }
    Ok(m)
}

// ---- images ----------------------------------------------------------------------------------

/// The boot image for `--cloud-image`, as a resource path relative to the API
/// (`projects/P/global/images/family/F` or `projects/P/global/images/NAME`):
/// - none: Ubuntu 24.04 LTS from `ubuntu-os-cloud` ([`DEFAULT_IMAGE`], or
///   [`DEFAULT_IMAGE_ARM64`] for an Arm machine);
/// - `PROJECT/FAMILY`: the newest image of that family;
/// - `projects/P/global/images/...` or an image URL ending so: that image or family.
pub fn image(arg: Option<&str>, machine: &Machine) -> Result<String, GcpError> {
    let Some(a) = arg.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(if machine.is_arm() {
            DEFAULT_IMAGE_ARM64
        } else {
            DEFAULT_IMAGE
        }
        .to_string());
    };
    let bad = || GcpError::Image(a.to_string());
    let path = match a.find("/compute/v1/") {
        Some(i) if a.starts_with("https://") => &a[i + "/compute/v1/".len()..],
        _ => a,
    };
    if let Some(rest) = path.strip_prefix("projects/") {
        let (project, image) = rest.split_once("/global/images/").ok_or_else(bad)?;
        let name = image.strip_prefix("family/").unwrap_or(image);
        if !project_ok(project) || !name_ok(name) {
            return Err(bad());
        }
        return Ok(path.to_string());
    }
    match a.split('/').collect::<Vec<_>>().as_slice() {
        [project, family] if project_ok(project) && name_ok(family) => {
            Ok(format!("projects/{project}/global/images/family/{family}"))
        }
        _ => Err(bad()),
    }
}

fn project_ok(p: &str) -> bool {
    (6..=30).contains(&p.len())
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

// ---- labels ----------------------------------------------------------------------------------

fn label_char(c: char) -> char {
    let c = c.to_ascii_lowercase();
    if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
        c
    } else {
        '_'
    }
}

/// A valid label value for `v`: lowercased, every other character than `[a-z0-9_-]` replaced
/// by `_`, cut to 63 characters. Valid values are kept as they are.
pub fn sanitize_label_value(v: &str) -> String {
    v.chars().map(label_char).take(63).collect()
}

/// A valid label key for `k` (as [`sanitize_label_value`], and starting with a letter:
/// leading characters that are not letters are dropped); `None` when no letter is left.
pub fn sanitize_label_key(k: &str) -> Option<String> {
    let s: String = k.chars().map(label_char).collect();
    let s = s.trim_start_matches(|c: char| !c.is_ascii_lowercase());
    (!s.is_empty()).then(|| s.chars().take(63).collect())
}

/// Whether `v` is a valid label value.
pub fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// 16 hex digits of the SHA-256 of `s`.
pub fn short_hash(s: &str) -> String {
    Sha256::digest(s.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `cml-id` label of runner `name` (see the module documentation).
pub fn id_label(name: &str) -> String {
    if !name.is_empty() && is_label_value(name) {
        return name.to_string();
    }
    let head: String = sanitize_label_value(name).chars().take(46).collect();
    format!("{head}-{}", short_hash(name))
}

/// The `cml-repo` label of repository `repo`.
pub fn repo_label(repo: &str) -> String {
    short_hash(repo)
}

/// The labels of every resource of runner `name`: the owner labels, then `--cloud-metadata`
/// pairs sanitized (pairs whose key sanitizes to nothing or to a reserved `cml-`/`cml_` key are
/// left out; of
/// two pairs with the same key the first is kept). At most 64 labels, as Compute Engine allows.
pub fn resource_labels(
    name: &str,
    repo: &str,
    metadata: &[(String, String)],
) -> Vec<(String, String)> {
    let mut labels = vec![
        (ID_LABEL.to_string(), id_label(name)),
        (REPO_LABEL.to_string(), repo_label(repo)),
    ];
    for (k, v) in metadata {
        let Some(k) = sanitize_label_key(k) else {
            continue;
        };
        if k.starts_with("cml-")
            || k.starts_with("cml_")
            || labels.iter().any(|(x, _)| *x == k)
            || labels.len() >= 64
        {
            continue;
        }
        labels.push((k, sanitize_label_value(v)));
    }
    labels
}

/// The instance metadata items that record, in full, what the labels abbreviate.
pub fn owner_metadata(name: &str, repo: &str, runner_labels: &str) -> Vec<(String, String)> {
    vec![
        ("cml-runner".to_string(), name.to_string()),
        ("cml-repo".to_string(), repo.to_string()),
        ("cml-labels".to_string(), runner_labels.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generic_regions_map_to_zones_and_zones_pass_through() {
        assert_eq!(zone("us-east").unwrap(), "us-east1-c");
        assert_eq!(zone("us-west").unwrap(), "us-west1-b");
        assert_eq!(zone("eu-north").unwrap(), "europe-north1-a");
        assert_eq!(zone("eu-west").unwrap(), "europe-west1-d");
        assert_eq!(
            zone("northamerica-northeast2-b").unwrap(),
            "northamerica-northeast2-b"
        );
        assert_eq!(zone(" us-central1-f ").unwrap(), "us-central1-f");
        let e = zone("us-east1").unwrap_err();
        assert_eq!(
            e,
            GcpError::RegionNotZone {
                region: "us-east1".into(),
                example: "us-east1-b".into()
            }
        );
        assert!(e
            .to_string()
            .contains("hint: give one of its zones, such as us-east1-b"));
        assert!(zone("asia-south2")
            .unwrap_err()
            .to_string()
            .contains("asia-south2-a"));
        for bad in [
            "us-east-1",
            "Us-east1-a",
            "moon",
            "us-east1-ab",
            "1us-east1-a",
            "",
        ] {
            let e = zone(bad).unwrap_err();
            assert!(e.to_string().starts_with("--cloud-region"), "{bad}: {e}");
        }
    }

    #[test]
    fn zones_fall_back_within_their_region() {
        assert_eq!(region_of_zone("us-east1-c"), Some("us-east1"));
        assert_eq!(
            region_of_zone("northamerica-northeast2-b"),
            Some("northamerica-northeast2")
        );
        assert_eq!(region_of_zone("us-east1"), None);
        assert_eq!(fallback_zones("us-east1-c"), ["us-east1-b", "us-east1-d"]);
        assert_eq!(
            fallback_zones("europe-west1-d"),
            ["europe-west1-b", "europe-west1-c"]
        );
        assert_eq!(
            fallback_zones("us-central1-a"),
            ["us-central1-b", "us-central1-c", "us-central1-f"]
        );
        assert_eq!(
            fallback_zones("asia-south2-b"),
            ["asia-south2-a", "asia-south2-c"]
        );
        assert!(fallback_zones("nonsense").is_empty());
        // Every generic region's zone is in the table.
        for g in ["us-east", "us-west", "eu-north", "eu-west"] {
            let z = zone(g).unwrap();
            let r = region_of_zone(&z).unwrap();
            assert!(zones_of_region(r).unwrap().contains(&z.as_str()), "{g}");
        }
    }

    #[test]
    fn machine_types_resolve() {
        let m = |t: &str, g: Option<&str>| machine(t, g).map(|m| m.to_string());
        assert_eq!(m("m", None).unwrap(), "e2-custom-8-32768");
        assert_eq!(m("s", None).unwrap(), "g1-small");
        assert_eq!(
            m("m", Some("t4")).unwrap(),
            "n1-standard-4+nvidia-tesla-t4*1"
        );
        assert_eq!(m("m+t4", None).unwrap(), "n1-standard-4+nvidia-tesla-t4*1");
        assert_eq!(
            m("l", Some("k80")).unwrap(),
            "custom-32-131072+nvidia-tesla-k80*4"
        );
        assert_eq!(
            m("xl", Some("tesla")).unwrap(),
            "custom-64-524288-ext+nvidia-tesla-v100*8"
        );
        assert_eq!(m("m", Some("nogpu")).unwrap(), "e2-custom-8-32768");
        assert_eq!(
            m("g2-standard-16+nvidia-l4*1", None).unwrap(),
            "g2-standard-16+nvidia-l4*1"
        );
        assert_eq!(m("n1-standard-8", None).unwrap(), "n1-standard-8");
        assert_eq!(
            m("n1-standard-8", Some("t4")).unwrap(),
            "n1-standard-8+nvidia-tesla-t4*1"
        );
        assert_eq!(
            m("n1-standard-8", Some("nvidia-tesla-p4")).unwrap(),
            "n1-standard-8+nvidia-tesla-p4*1"
        );
        let parsed = machine("a2-highgpu-2g+nvidia-tesla-a100*2", None).unwrap();
        assert_eq!(
            parsed.accelerator,
            Some(Accelerator {
                name: "nvidia-tesla-a100".into(),
                count: 2
            })
        );
        assert!(machine("t2a-standard-4", None).unwrap().is_arm());
        assert!(!machine("m", None).unwrap().is_arm());
    }

    #[test]
    fn bad_machine_types_name_the_option() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            (
                "n1-standard-4+nvidia-l4",
                None,
                "is not a Compute Engine machine type",
            ),
            (
                "n1-standard-4+nvidia-l4*0",
                None,
                "accelerator count must be a whole number from 1 to 16, got \"0\"",
            ),
            ("n1-standard-4+nvidia-l4*17", None, "from 1 to 16"),
            ("n1-standard-4+nvidia-l4*x", None, "got \"x\""),
            (
                "N1-Standard-4",
                None,
                "is not a Compute Engine machine type",
            ),
            ("n1 standard", None, "is not a Compute Engine machine type"),
            ("m", Some("nvidia-l4"), "has no Compute Engine machine type"),
            ("s", Some("t4"), "has no Compute Engine machine type"),
            ("m+a100", None, "has no Compute Engine machine type"),
            (
                "g2-standard-16+nvidia-l4*1",
                Some("t4"),
                "already names an accelerator",
            ),
            (
                "n1-standard-4",
                Some("Quadro!"),
                "--cloud-gpu \"Quadro!\" is not a Compute Engine accelerator type",
            ),
        ];
        for (t, g, needle) in cases {
            let e = machine(t, *g).unwrap_err().to_string();
            assert!(e.contains(needle), "{t} {g:?}: {e}");
            assert!(e.starts_with("--cloud-"), "{e}");
        }
    }

    #[test]
    fn gpus_map_to_accelerator_types() {
        assert_eq!(
            accelerator_type("k80").unwrap().unwrap(),
            "nvidia-tesla-k80"
        );
        assert_eq!(
            accelerator_type("v100").unwrap().unwrap(),
            "nvidia-tesla-v100"
        );
        assert_eq!(
            accelerator_type("tesla").unwrap().unwrap(),
            "nvidia-tesla-v100"
        );
        assert_eq!(accelerator_type("t4").unwrap().unwrap(), "nvidia-tesla-t4");
        assert_eq!(
            accelerator_type("nvidia-h100-80gb").unwrap().unwrap(),
            "nvidia-h100-80gb"
        );
        assert_eq!(accelerator_type("nogpu").unwrap(), None);
        assert!(accelerator_type("a100").is_err());
    }

    #[test]
    fn images_default_to_ubuntu_24_04() {
        let x86 = machine("m", None).unwrap();
        let arm = machine("t2a-standard-8", None).unwrap();
        assert_eq!(image(None, &x86).unwrap(), DEFAULT_IMAGE);
        assert_eq!(image(Some(""), &arm).unwrap(), DEFAULT_IMAGE_ARM64);
        assert_eq!(
            image(Some("ubuntu-os-cloud/ubuntu-2204-lts"), &x86).unwrap(),
            "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts"
        );
        assert_eq!(
            image(Some("https://www.googleapis.com/compute/v1/projects/my-project/global/images/runner-v2"), &x86).unwrap(),
            "projects/my-project/global/images/runner-v2"
        );
        assert_eq!(
            image(
                Some("projects/my-project/global/images/family/runner"),
                &x86
            )
            .unwrap(),
            "projects/my-project/global/images/family/runner"
        );
        for bad in [
            "ubuntu",
            "a/b/c",
            "Ubuntu-os-cloud/x",
            "projects/p/images/x",
            "ubuntu-os-cloud/Noble",
        ] {
            let e = image(Some(bad), &x86).unwrap_err().to_string();
            assert!(e.starts_with("--cloud-image"), "{bad}: {e}");
            assert!(e.contains("hint:"));
        }
    }

    #[test]
    fn owner_labels_fit_the_label_rules() {
        let l = resource_labels(
            "cml-abc123xyz",
            "https://github.com/Org/Repo",
            &[
                ("Team".into(), "ML Platform".into()),
                ("cml-id".into(), "evil".into()),
                ("CML:id".into(), "evil".into()),
                ("team".into(), "second".into()),
                ("9lives".into(), "x".into()),
                ("!!!".into(), "x".into()),
            ],
        );
        assert_eq!(l[0], ("cml-id".into(), "cml-abc123xyz".into()));
        assert_eq!(l[1].0, "cml-repo");
        assert_eq!(l[1].1.len(), 16);
        assert_eq!(l[1].1, repo_label("https://github.com/Org/Repo"));
        assert_ne!(
            repo_label("https://github.com/o/a"),
            repo_label("https://github.com/o/b")
        );
        assert!(l.contains(&("team".into(), "ml_platform".into())));
        assert!(l.contains(&("lives".into(), "x".into())));
        assert_eq!(l.iter().filter(|(k, _)| k.starts_with("cml")).count(), 2);
        assert_eq!(l.len(), 4);
        // A name that is not a label value gets a distinct, valid owner label.
        let a = id_label("My.Runner");
        let b = id_label("my_runner");
        assert!(a.starts_with("my_runner-") && is_label_value(&a), "{a}");
        assert_eq!(b, "my_runner");
        assert_ne!(a, b);
        assert!(id_label(&"x".repeat(100)).len() <= 63);
        let md = owner_metadata("r1", "https://github.com/o/r", "cml,gpu");
        assert_eq!(md[1], ("cml-repo".into(), "https://github.com/o/r".into()));
    }

    proptest! {
        #[test]
        fn sanitized_labels_are_always_valid(k in ".{0,80}", v in ".{0,80}", name in ".{0,80}") {
            if let Some(key) = sanitize_label_key(&k) {
                prop_assert!(key.len() <= 63);
                prop_assert!(key.starts_with(|c: char| c.is_ascii_lowercase()));
                prop_assert!(is_label_value(&key));
            }
            prop_assert!(is_label_value(&sanitize_label_value(&v)));
            prop_assert!(is_label_value(&id_label(&name)));
            prop_assert!(!id_label(&name).is_empty());
            prop_assert!(is_label_value(&repo_label(&name)));
        }

        #[test]
        fn valid_labels_are_kept(v in "[a-z0-9_-]{0,63}") {
            prop_assert_eq!(sanitize_label_value(&v), v.clone());
            if !v.is_empty() {
                prop_assert_eq!(id_label(&v), v);
            }
        }

        #[test]
        fn machines_round_trip(m in "[a-z][a-z0-9-]{0,20}[a-z0-9]", a in "[a-z][a-z0-9-]{0,20}[a-z0-9]", n in 1u32..=16) {
            let text = format!("{m}+{a}*{n}");
            prop_assert_eq!(Machine::parse(&text).unwrap().to_string(), text);
        }
    }
}
