//! Azure's pure rules for `--cloud=azure`: locations, zones, VM sizes, the default image, tag
//! rules, the runner's resource-group name and the role its machine gets.
//!
//! Guarantees: every value answered is one Azure Resource Manager accepts by shape (a location
//! of lowercase letters and digits, a size `Standard_...`, tags without Azure's reserved
//! characters and within its limits, a valid resource-group name); errors name the option and
//! the fix. Assumed: a native location or size that has the right shape exists (ARM says so at
//! create time if not).

/// Zones tried in order for a zonal VM (Azure numbers the zones of a region 1–3).
pub const ZONES: &[&str] = &["1", "2", "3"];

/// The default image: Canonical's Ubuntu 24.04 LTS server, latest version.
pub const DEFAULT_IMAGE: ImageReference = ImageReference {
    publisher: "Canonical",
    offer: "ubuntu-24_04-lts",
    sku: "server",
    version: "latest",
};

/// A Marketplace image (`storageProfile.imageReference`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageReference {
    pub publisher: &'static str,
    pub offer: &'static str,
    pub sku: &'static str,
    pub version: &'static str,
}

/// Built-in role "Contributor", given to the machine's system-assigned identity on its own
/// resource group only. Not "Virtual Machine Contributor" (`9980e02c-...`): that role manages
/// virtual machines but lacks `Microsoft.Resources/subscriptions/resourceGroups/delete`, and the
/// machine must delete its whole group (network, disk and IP included) to leave nothing behind.
/// Contributor cannot assign roles, so the machine cannot widen its own access.
pub const MACHINE_ROLE: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";

/// Azure's limits on tags (resource groups and resources).
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_NAME: usize = 512;
pub const MAX_TAG_VALUE: usize = 256;
/// Characters Azure refuses in tag names (`:` is allowed, so the owner tag `cml:id` is kept).
pub const TAG_NAME_RESERVED: &[char] = &['<', '>', '%', '&', '\\', '?', '/'];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzureError {
    #[error("--cloud-region {0:?} is not an Azure location\nhint: give a generic region (us-east, us-west, eu-north, eu-west) or a location such as westeurope")]
    Location(String),
    #[error("--cloud-type {0:?} is not an Azure VM size\nhint: give a generic type (s, m, l, xl, m+t4, m+v100, ...) or a size such as Standard_D4s_v5")]
    Size(String),
    #[error("--cloud-type {machine:?} with --cloud-gpu {gpu:?} has no Azure VM size\nhint: give a generic GPU type (m+t4, m+k80, l+k80, xl+k80, m+v100, l+v100, xl+v100) or a native NC/ND/NV size")]
    NoGenericGpu { machine: String, gpu: String },
    #[error("--cloud-type {machine:?} is an Azure VM size, which already decides its GPU; --cloud-gpu {gpu:?} cannot be added to it\nhint: leave out --cloud-gpu, or pick a GPU size such as Standard_NC4as_T4_v3")]
    GpuOnNative { machine: String, gpu: String },
    #[error("--cloud-gpu {0:?} is not a GPU CML knows for Azure\nhint: use k80, v100, t4, tesla or nogpu")]
    Gpu(String),
}

/// The Azure location of `--cloud-region`: the generic regions map per CML's table; a native
/// location passes through, lowercased, if it has the shape of one.
pub fn location(region_arg: &str) -> Result<String, AzureError> {
    let generic = match region_arg {
        "us-east" => Some("eastus"),
        "us-west" => Some("westus2"),
        "eu-north" => Some("northeurope"),
        "eu-west" => Some("westeurope"),
        _ => None,
    };
    if let Some(l) = generic {
        return Ok(l.to_string());
    }
    let l = region_arg.to_ascii_lowercase();
    let ok = (3..=40).contains(&l.len())
        && l.starts_with(|c: char| c.is_ascii_lowercase())
        && l.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(l)
    } else {
        Err(AzureError::Location(region_arg.to_string()))
    }
}

/// `--cloud-gpu` as CML's GPU key: None for no GPU (`nogpu` or absent), `tesla` = `v100`.
pub fn gpu_key(gpu: Option<&str>) -> Result<Option<&'static str>, AzureError> {
    match gpu.map(str::trim) {
        None | Some("") | Some("nogpu") => Ok(None),
        Some("k80") => Ok(Some("k80")),
        Some("v100") | Some("tesla") => Ok(Some("v100")),
        Some("t4") => Ok(Some("t4")),
        Some(other) => Err(AzureError::Gpu(other.to_string())),
    }
}

/// The VM size of `--cloud-type` and `--cloud-gpu` (CML's generic table; a native size passes
/// through when it has the shape `Standard_<FAMILY><vCPUs>...`).
pub fn vm_size(type_arg: &str, gpu: Option<&str>) -> Result<String, AzureError> {
    let key = gpu_key(gpu)?;
    let (machine, inline_gpu) = match type_arg.split_once('+') {
        Some((m, g)) => (m, Some(g)),
        None => (type_arg, None),
    };
    let gpu = match (inline_gpu, key) {
        (Some(g), None) => {
            Some(gpu_key(Some(g))?.ok_or_else(|| AzureError::Size(type_arg.into()))?)
        }
        (None, k) => k,
        (Some(_), Some(_)) => {
            return Err(AzureError::NoGenericGpu {
                machine: type_arg.into(),
                gpu: gpu.unwrap_or_default().into(),
            })
        }
    };
    let size = match (machine, gpu) {
        ("s", None) => Some("Standard_B1s"),
        ("m", None) => Some("Standard_F8s_v2"),
        ("l", None) => Some("Standard_F32s_v2"),
        ("xl", None) => Some("Standard_F64s_v2"),
        ("m", Some("t4")) => Some("Standard_NC4as_T4_v3"),
        ("m", Some("k80")) => Some("Standard_NC6"),
        ("l", Some("k80")) => Some("Standard_NC12"),
        ("xl", Some("k80")) => Some("Standard_NC24"),
        ("m", Some("v100")) => Some("Standard_NC6s_v3"),
        ("l", Some("v100")) => Some("Standard_NC12s_v3"),
        ("xl", Some("v100")) => Some("Standard_NC24s_v3"),
        _ => None,
    };
    if let Some(s) = size {
        return Ok(s.to_string());
    }
    if ["s", "m", "l", "xl"].contains(&machine) {
        return Err(AzureError::NoGenericGpu {
            machine: machine.into(),
            gpu: gpu.unwrap_or_default().into(),
        });
    }
    if inline_gpu.is_some() || !is_native_size(type_arg) {
        return Err(AzureError::Size(type_arg.into()));
    }
    if let Some(g) = gpu {
        return Err(AzureError::GpuOnNative {
            machine: type_arg.into(),
            gpu: g.into(),
        });
    }
    Ok(type_arg.to_string())
}

/// `Standard_<FAMILY LETTERS><vCPUs><features>[_vN...]`, as Azure names its sizes.
pub fn is_native_size(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("Standard_") else {
        return false;
    };
    let letters = rest.chars().take_while(|c| c.is_ascii_uppercase()).count();
    let digits = rest[letters..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .count();
    letters > 0
        && digits > 0
        && rest.len() <= 60
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A tag name Azure accepts: reserved characters become `_`, cut to 512 characters; None when
/// nothing is left.
pub fn sanitize_tag_name(k: &str) -> Option<String> {
    let s: String = k
        .chars()
        .map(|c| {
            if TAG_NAME_RESERVED.contains(&c) || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(MAX_TAG_NAME)
        .collect();
    let t = s.trim().to_string();
    (!t.is_empty()).then_some(t)
}

/// A tag value Azure accepts: cut to 256 characters.
pub fn sanitize_tag_value(v: &str) -> String {
    v.chars().take(MAX_TAG_VALUE).collect()
}

/// The runner's tags (`cloud::resource_tags`: owner tags first, then `--cloud-metadata`) made
/// Azure-safe: names sanitized, values cut, a name that repeats one before it (Azure compares
/// tag names case-insensitively) dropped, at most 50 kept — the owner tags always.
pub fn tags(all: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in all {
        let Some(k) = sanitize_tag_name(k) else {
            continue;
        };
        if out.len() >= MAX_TAGS || out.iter().any(|(x, _)| x.eq_ignore_ascii_case(&k)) {
            continue;
        }
        out.push((k, sanitize_tag_value(v)));
    }
    out
}

/// The resource group of runner `name`: `cml-<name>` when that is a valid group name (letters,
/// digits, `_ - . ( )`, at most 90 characters, not ending in `.`), else its valid part and a
/// hash of the name, so that two runners never share a group.
pub fn resource_group(name: &str) -> String {
    let ok = |c: char| c.is_ascii_alphanumeric() || "_-.()".contains(c);
    let raw = format!("cml-{name}");
    if raw.len() <= 90 && raw.chars().all(ok) && !raw.ends_with('.') {
        return raw;
    }
    // Changed to fit: a hash of the name keeps two names from sharing a group.
    let mut head: String = raw
        .chars()
        .map(|c| if ok(c) { c } else { '-' })
        .take(70)
        .collect();
    while head.ends_with('.') || head.ends_with('-') {
        head.pop();
    }
    format!("{head}-{}", crate::gcp::short_hash(name))
}

/// The full id of the machine's role definition in `subscription`.
pub fn machine_role_definition_id(subscription: &str) -> String {
    format!("/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{MACHINE_ROLE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_and_native_locations() {
        assert_eq!(location("us-east").unwrap(), "eastus");
        assert_eq!(location("us-west").unwrap(), "westus2");
        assert_eq!(location("eu-north").unwrap(), "northeurope");
        assert_eq!(location("eu-west").unwrap(), "westeurope");
        assert_eq!(location("WestEurope").unwrap(), "westeurope");
        for bad in ["", "us-east-1", "west europe", "1westus", "ab"] {
            let e = location(bad).unwrap_err();
            assert!(
                e.to_string().contains("hint: give a generic region"),
                "{bad}"
            );
        }
        assert_eq!(ZONES, ["1", "2", "3"]);
    }

    #[test]
    fn generic_types_and_gpus() {
        assert_eq!(vm_size("m", None).unwrap(), "Standard_F8s_v2");
        assert_eq!(vm_size("xl", Some("nogpu")).unwrap(), "Standard_F64s_v2");
        assert_eq!(vm_size("m+t4", None).unwrap(), "Standard_NC4as_T4_v3");
        assert_eq!(vm_size("m", Some("t4")).unwrap(), "Standard_NC4as_T4_v3");
        assert_eq!(vm_size("l", Some("tesla")).unwrap(), "Standard_NC12s_v3");
        assert_eq!(vm_size("xl+k80", None).unwrap(), "Standard_NC24");
        assert_eq!(vm_size("m+v100", None).unwrap(), "Standard_NC6s_v3");
        assert!(matches!(
            vm_size("s", Some("t4")),
            Err(AzureError::NoGenericGpu { .. })
        ));
        assert!(matches!(
            vm_size("m+t4", Some("v100")),
            Err(AzureError::NoGenericGpu { .. })
        ));
        assert!(matches!(
            vm_size("m", Some("a100x")),
            Err(AzureError::Gpu(_))
        ));
    }

    #[test]
    fn native_sizes_by_shape() {
        assert_eq!(vm_size("Standard_D4s_v5", None).unwrap(), "Standard_D4s_v5");
        assert_eq!(
            vm_size("Standard_NC24ads_A100_v4", None).unwrap(),
            "Standard_NC24ads_A100_v4"
        );
        for bad in [
            "D4s_v5",
            "Standard_",
            "Standard_4D",
            "standard_d4s_v5",
            "Standard_D4s v5",
            "m5.large",
        ] {
            let e = vm_size(bad, None).unwrap_err();
            assert_eq!(e, AzureError::Size(bad.into()), "{bad}");
            assert!(e.to_string().contains("hint:"));
        }
        assert!(matches!(
            vm_size("Standard_D4s_v5", Some("t4")),
            Err(AzureError::GpuOnNative { .. })
        ));
    }

    #[test]
    fn default_image_is_ubuntu_24_04_from_canonical() {
        assert_eq!(DEFAULT_IMAGE.publisher, "Canonical");
        assert_eq!(DEFAULT_IMAGE.offer, "ubuntu-24_04-lts");
        assert_eq!(DEFAULT_IMAGE.sku, "server");
        assert_eq!(DEFAULT_IMAGE.version, "latest");
    }

    #[test]
    fn tags_follow_azure_rules_and_keep_the_owner_tags() {
        let mut all = vec![
            ("cml:id".to_string(), "r1".to_string()),
            (
                "cml:repo".to_string(),
                "https://github.com/o/r?x=1".to_string(),
            ),
            ("a/b?c".to_string(), "v".to_string()),
            ("CML:ID".to_string(), "evil".to_string()),
            ("long".to_string(), "x".repeat(300)),
            ("<>".to_string(), "y".to_string()),
        ];
        for i in 0..60 {
            all.push((format!("k{i}"), "v".into()));
        }
        let t = tags(&all);
        assert_eq!(t.len(), MAX_TAGS);
        assert_eq!(
            t[0],
            ("cml:id".into(), "r1".into()),
            "':' is allowed in tag names"
        );
        assert_eq!(
            t[1].1, "https://github.com/o/r?x=1",
            "values may hold any character"
        );
        assert_eq!(t[2].0, "a_b_c");
        assert!(!t.iter().any(|(_, v)| v == "evil"));
        assert_eq!(t[3].1.chars().count(), MAX_TAG_VALUE);
        assert_eq!(t[4].0, "__");
        assert!(t
            .iter()
            .all(|(k, _)| !k.contains(TAG_NAME_RESERVED) && k.len() <= MAX_TAG_NAME));
        assert_eq!(sanitize_tag_name("   "), None);
        assert_eq!(
            sanitize_tag_name(&"n".repeat(600)).unwrap().len(),
            MAX_TAG_NAME
        );
    }

    #[test]
    fn resource_group_names() {
        assert_eq!(resource_group("cml-abc123"), "cml-cml-abc123");
        assert!(resource_group("a b/c").starts_with("cml-a-b-c-"));
        assert_ne!(
            resource_group("a b"),
            resource_group("a/b"),
            "never the same group"
        );
        assert!(resource_group(&"x".repeat(200)).len() <= 90);
        assert!(!resource_group("name.").ends_with('.'));
    }

    #[test]
    fn the_machine_gets_contributor_on_its_group() {
        assert_eq!(MACHINE_ROLE, "b24988ac-6180-42a0-ab88-20f7382dd24c");
        assert_eq!(
            machine_role_definition_id("sub"),
            "/subscriptions/sub/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c"
        );
    }
}
