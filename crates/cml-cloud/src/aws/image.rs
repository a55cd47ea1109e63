//! Which AMI to launch: an id as given, a name looked up among trusted owners only, or the
//! newest Ubuntu LTS published by Canonical.

/// Canonical's AWS account: the publisher of the official Ubuntu images.
pub const CANONICAL_OWNER: &str = "099720109477";

/// Owners a `--cloud-image` name is looked up among. A name lookup without owners would let
/// anyone publish an image with the same name and have it run the runner (and its secrets).
pub const NAME_OWNERS: &[&str] = &["self", CANONICAL_OWNER, "amazon"];

/// Ubuntu LTS releases the default image is chosen from, preferred in this order.
pub const UBUNTU_LTS: &[&str] = &["24.04", "22.04"];

/// What `--cloud-image` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageQuery {
    /// An AMI id, used as is.
    Id(String),
    /// A name (wildcards allowed) among [`NAME_OWNERS`].
    Name(String),
    /// The newest Ubuntu LTS from Canonical for this architecture.
    DefaultUbuntu { arch: &'static str },
}

impl ImageQuery {
    pub fn new(image: Option<&str>, machine_type: &str) -> ImageQuery {
        match image.map(str::trim).filter(|s| !s.is_empty()) {
            Some(id) if is_ami_id(id) => ImageQuery::Id(id.to_string()),
            Some(name) => ImageQuery::Name(name.to_string()),
            None => ImageQuery::DefaultUbuntu {
                arch: architecture(machine_type),
            },
        }
    }

    /// The owners to pass to `DescribeImages` (empty for an id lookup).
    pub fn owners(&self) -> Vec<String> {
        match self {
            ImageQuery::Id(_) => vec![],
            ImageQuery::Name(_) => NAME_OWNERS.iter().map(|s| s.to_string()).collect(),
            ImageQuery::DefaultUbuntu { .. } => vec![CANONICAL_OWNER.to_string()],
        }
    }

    /// `DescribeImages` filters as (name, values).
    pub fn filters(&self) -> Vec<(&'static str, Vec<String>)> {
        match self {
            ImageQuery::Id(_) => vec![],
            ImageQuery::Name(name) => vec![
                ("name", vec![name.clone()]),
                ("state", vec!["available".into()]),
            ],
            ImageQuery::DefaultUbuntu { arch } => {
                let ubuntu_arch = if *arch == "arm64" { "arm64" } else { "amd64" };
                vec![
                    (
                        "name",
                        UBUNTU_LTS
                            .iter()
                            .map(|v| {
                                format!(
                                    "ubuntu/images/hvm-ssd*/ubuntu-*-{v}-{ubuntu_arch}-server-*"
                                )
                            })
                            .collect(),
                    ),
                    ("architecture", vec![arch.to_string()]),
                    ("state", vec!["available".into()]),
                    ("root-device-type", vec!["ebs".into()]),
                    ("virtualization-type", vec!["hvm".into()]),
                ]
            }
        }
    }

    /// What to call the image in an error message.
    pub fn describe(&self) -> String {
        match self {
            ImageQuery::Id(id) => id.clone(),
            ImageQuery::Name(name) => {
                format!("named {name:?} (owners: {})", NAME_OWNERS.join(", "))
            }
            ImageQuery::DefaultUbuntu { arch } => format!(
                "Ubuntu {} {arch} from Canonical ({CANONICAL_OWNER})",
                UBUNTU_LTS.join(" or ")
            ),
        }
    }

    /// The rank of an image among the matches: higher is preferred. Default Ubuntu: the newest
    /// LTS release first, then the newest build; names: the newest creation date.
    pub fn rank(&self, name: &str, creation_date: &str) -> (usize, String) {
        let release = match self {
            ImageQuery::DefaultUbuntu { .. } => UBUNTU_LTS
                .iter()
                .position(|v| name.contains(&format!("-{v}-")))
                .map(|i| UBUNTU_LTS.len() - i)
                .unwrap_or(0),
            _ => 0,
        };
        (release, creation_date.to_string())
    }
}

fn is_ami_id(s: &str) -> bool {
    s.strip_prefix("ami-")
        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// `arm64` for Graviton (and `a1`) instance families, `x86_64` otherwise.
///
/// Families are `<series><generation><attributes>` (`m7gd`, `c6gn`, `t4g`, `im4gn`, `g5g`);
/// Graviton is attribute `g`. `g4dn` (series `g`) and `gr6` are x86.
pub fn architecture(machine_type: &str) -> &'static str {
    let family = machine_type.split('.').next().unwrap_or("");
    if family == "a1" {
        return "arm64";
    }
    let Some(digit) = family.find(|c: char| c.is_ascii_digit()) else {
        return "x86_64";
    };
    let attributes = family[digit..].trim_start_matches(|c: char| c.is_ascii_digit());
    if attributes.contains('g') && !family.contains('-') {
        "arm64"
    } else {
        "x86_64"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_follows_the_family() {
        for t in [
            "t4g.small",
            "m7gd.large",
            "c6gn.xlarge",
            "im4gn.large",
            "g5g.xlarge",
            "a1.large",
            "m8g.large",
            "x2gd.large",
        ] {
            assert_eq!(architecture(t), "arm64", "{t}");
        }
        for t in [
            "t2.micro",
            "m5.2xlarge",
            "g4dn.xlarge",
            "p3.2xlarge",
            "gr6.4xlarge",
            "c7a.large",
            "m7i-flex.large",
            "x2iedn.xlarge",
            "weird",
        ] {
            assert_eq!(architecture(t), "x86_64", "{t}");
        }
    }

    #[test]
    fn queries_by_shape() {
        assert_eq!(
            ImageQuery::new(Some("ami-0abc123"), "m5.large"),
            ImageQuery::Id("ami-0abc123".into())
        );
        assert_eq!(
            ImageQuery::new(Some("my-image-*"), "m5.large"),
            ImageQuery::Name("my-image-*".into())
        );
        assert_eq!(
            ImageQuery::new(Some("ami-"), "m5.large"),
            ImageQuery::Name("ami-".into())
        );
        assert_eq!(
            ImageQuery::new(None, "t4g.small"),
            ImageQuery::DefaultUbuntu { arch: "arm64" }
        );
        assert_eq!(
            ImageQuery::new(Some("  "), "m5.large"),
            ImageQuery::DefaultUbuntu { arch: "x86_64" }
        );
    }

    #[test]
    fn a_name_is_never_looked_up_without_owners() {
        let q = ImageQuery::Name("ubuntu/images/*".into());
        assert_eq!(q.owners(), ["self", CANONICAL_OWNER, "amazon"]);
        assert!(q
            .filters()
            .contains(&("name", vec!["ubuntu/images/*".into()])));
    }

    #[test]
    fn the_default_is_canonical_ubuntu_lts_only() {
        let q = ImageQuery::new(None, "m5.2xlarge");
        assert_eq!(q.owners(), [CANONICAL_OWNER]);
        let f = q.filters();
        assert!(f.contains(&(
            "name",
            vec![
                "ubuntu/images/hvm-ssd*/ubuntu-*-24.04-amd64-server-*".into(),
                "ubuntu/images/hvm-ssd*/ubuntu-*-22.04-amd64-server-*".into(),
            ]
        )));
        assert!(f.contains(&("architecture", vec!["x86_64".into()])));
        let arm = ImageQuery::new(None, "c7g.large").filters();
        assert!(arm[0].1[0].contains("-24.04-arm64-server-"));
    }

    #[test]
    fn newer_lts_wins_over_a_newer_build_of_an_older_one() {
        let q = ImageQuery::new(None, "m5.large");
        let noble = q.rank(
            "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240101",
            "2024-01-01T00:00:00.000Z",
        );
        let jammy = q.rank(
            "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20250101",
            "2025-01-01T00:00:00.000Z",
        );
        assert!(noble > jammy);
        let n = ImageQuery::Name("x".into());
        assert!(n.rank("x", "2025-01-01") > n.rank("x", "2024-12-31"));
    }
}
