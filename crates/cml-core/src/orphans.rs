//! Which cloud resources and forge runners left by `cml` are orphaned, and why: the rules of
//! `cml runner cleanup`, decided from what the cloud and the forge list, with no I/O.
//!
//! A resource is an orphan when nothing alive needs it any more:
//! - a **stopped** runner machine (runner machines never stop by themselves; a stopped one
//!   still bills for its disk);
//! - a **running** machine whose runner is not online in the forge, once it is older than
//!   the grace period (a younger one may still be registering); only when the forge's runners
//!   are known;
//! - a **disk** (volume) attached to no machine;
//! - a **spot request, key pair or security group** whose runner has no live machine (the
//!   launcher deletes key pairs once the machine runs, so one with a live machine is a launch
//!   in progress);
//! - an **offline runner** in the forge that `cml` registered: named in one of our resources'
//!   owner tags, or with `cml`'s default name (`cml-` and 10 base36 characters). Busy or
//!   online runners are never orphans.

use crate::RunnerInfo;
use std::collections::HashSet;
use std::time::Duration;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Instance,
    SpotRequest,
    KeyPair,
    SecurityGroup,
    Volume,
    Runner,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Instance => "instance",
            Kind::SpotRequest => "spot-request",
            Kind::KeyPair => "key-pair",
            Kind::SecurityGroup => "security-group",
            Kind::Volume => "volume",
            Kind::Runner => "runner",
        }
    }
}

/// A cloud resource carrying our owner tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub kind: Kind,
    pub id: String,
    /// The owner tag: the runner's name.
    pub owner: String,
    pub state: Option<String>,
    /// Time since the cloud created it, when known.
    pub age: Option<Duration>,
}

/// The verdict on one resource or runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub id: String,
    /// The runner it belongs to (a runner's own name).
    pub owner: String,
    pub state: String,
    pub orphan: bool,
    pub reason: String,
}

/// True for `cml`'s default runner names: `cml-` and 10 base36 characters.
pub fn is_default_name(name: &str) -> bool {
    name.strip_prefix("cml-").is_some_and(|rest| {
        rest.len() == 10
            && rest
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    })
}

/// Applies the module's rules. `runners` is `None` when the forge was not asked (then running
/// machines are kept and no runner is judged); `grace` is how old a running machine without an
/// online runner must be to count as an orphan.
pub fn analyze(owned: &[Owned], runners: Option<&[RunnerInfo]>, grace: Duration) -> Vec<Finding> {
    let live = |owner: &str| {
        owned.iter().any(|o| {
            o.kind == Kind::Instance
                && o.owner == owner
                && matches!(o.state.as_deref(), Some("pending" | "running"))
        })
    };
    let mut out = Vec::new();
    for o in owned {
        let state = o.state.clone().unwrap_or_else(|| "-".into());
        let (orphan, reason) = match o.kind {
            Kind::Instance => match (o.state.as_deref(), runners) {
                (Some("stopped" | "stopping"), _) => (
                    true,
                    "stopped: runner machines never stop by themselves, and the disk still bills"
                        .to_string(),
                ),
                (Some("pending"), _) => (false, "booting".to_string()),
                (_, None) => (
                    false,
                    "not checked against the forge (give --repo and a token)".to_string(),
                ),
                (_, Some(rs)) => match rs.iter().find(|r| r.name == o.owner) {
                    Some(r) if r.online || r.busy => (false, "its runner is online".to_string()),
                    found => {
                        let young = o.age.is_some_and(|a| a < grace);
                        let why = if found.is_some() {
                            format!("its runner {} is offline", o.owner)
                        } else {
                            format!("no runner named {} in the forge", o.owner)
                        };
                        if young {
                            (
                                false,
                                format!(
                                    "{why}, but it is younger than {} s and may still be registering",
                                    grace.as_secs()
                                ),
                            )
                        } else {
                            (true, why)
                        }
                    }
                },
            },
            Kind::SpotRequest | Kind::KeyPair | Kind::SecurityGroup => {
                if live(&o.owner) {
                    (false, "its machine is alive".to_string())
                } else {
                    (true, format!("runner {} has no live machine", o.owner))
                }
            }
            Kind::Volume => match o.state.as_deref() {
                Some("available") => (true, "a disk attached to no machine".to_string()),
                _ => (false, "attached to a machine".to_string()),
            },
            Kind::Runner => continue,
        };
        out.push(Finding {
            kind: o.kind,
            id: o.id.clone(),
            owner: o.owner.clone(),
            state,
            orphan,
            reason,
        });
    }
    if let Some(rs) = runners {
        let ours: HashSet<&str> = owned.iter().map(|o| o.owner.as_str()).collect();
        for r in rs {
            if r.online || r.busy {
                continue;
            }
            let tagged = ours.contains(r.name.as_str());
            if !tagged && !is_default_name(&r.name) {
                continue;
            }
            out.push(Finding {
                kind: Kind::Runner,
                id: r.id.clone(),
                owner: r.name.clone(),
                state: "offline".into(),
                orphan: true,
                reason: if tagged {
                    "offline, and named in our cloud resources".into()
                } else {
                    "offline, with cml's default name".into()
                },
            });
        }
    }
    out.sort_by(|a, b| (b.orphan, a.kind, &a.owner).cmp(&(a.orphan, b.kind, &b.owner)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(kind: Kind, id: &str, owner: &str, state: Option<&str>, age: u64) -> Owned {
        Owned {
            kind,
            id: id.into(),
            owner: owner.into(),
            state: state.map(String::from),
            age: Some(Duration::from_secs(age)),
        }
    }
    fn runner(name: &str, online: bool, busy: bool) -> RunnerInfo {
        RunnerInfo {
            id: format!("id-{name}"),
            name: name.into(),
            online,
            busy,
            labels: vec![],
        }
    }
    fn verdict(f: &[Finding], id: &str) -> (bool, String) {
        let x = f
            .iter()
            .find(|x| x.id == id)
            .unwrap_or_else(|| panic!("{id}: {f:?}"));
        (x.orphan, x.reason.clone())
    }

    #[test]
    fn the_rules() {
        let grace = Duration::from_secs(1200);
        let owned = vec![
            res(Kind::Instance, "i-live", "a", Some("running"), 5000),
            res(Kind::KeyPair, "cml-a", "a", None, 5000),
            res(Kind::Instance, "i-gone", "b", Some("running"), 5000),
            res(Kind::Instance, "i-young", "c", Some("running"), 10),
            res(Kind::Instance, "i-stopped", "d", Some("stopped"), 5000),
            res(Kind::SpotRequest, "sir-1", "e", Some("open"), 5000),
            res(Kind::SecurityGroup, "sg-1", "e", None, 5000),
            res(Kind::Instance, "i-booting", "f", Some("pending"), 5000),
            res(Kind::Volume, "vol-free", "g", Some("available"), 5000),
            res(Kind::Volume, "vol-used", "a", Some("in-use"), 5000),
        ];
        let runners = vec![
            runner("a", true, false),
            runner("b", false, false),
            runner("cml-0123456789", false, false),
            runner("someone-else", false, false),
            runner("cml-abcdefghij", false, true),
        ];
        let f = analyze(&owned, Some(&runners), grace);
        assert!(!verdict(&f, "i-live").0);
        assert!(!verdict(&f, "cml-a").0, "a key pair of a live machine");
        assert_eq!(
            verdict(&f, "i-gone"),
            (true, "its runner b is offline".into())
        );
        assert!(!verdict(&f, "i-young").0);
        assert!(verdict(&f, "i-stopped").0);
        assert!(verdict(&f, "sir-1").0 && verdict(&f, "sg-1").0);
        assert!(!verdict(&f, "i-booting").0);
        assert!(verdict(&f, "vol-free").0 && !verdict(&f, "vol-used").0);
        assert!(verdict(&f, "id-b").0, "an offline runner named in our tags");
        assert!(verdict(&f, "id-cml-0123456789").0, "default name");
        assert!(!f.iter().any(|x| x.id == "id-someone-else"), "not ours");
        assert!(!f.iter().any(|x| x.id == "id-cml-abcdefghij"), "busy");
        assert!(f[0].orphan, "orphans first");

        // Without the forge, running machines are kept and runners not judged.
        let f = analyze(&owned, None, grace);
        assert!(!verdict(&f, "i-gone").0);
        assert!(!f.iter().any(|x| x.kind == Kind::Runner));
        assert!(is_default_name("cml-0a1b2c3d4e") && !is_default_name("cml-ABCDEFGHIJ"));
    }
}
