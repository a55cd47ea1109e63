//! Which cloud resources and forge runners left by `cml` are orphaned, and why: the rules of
//! `cml runner cleanup`, decided from what the cloud and the forge list, with no I/O.
//!
//! **Scope.** Every resource carries the repository or organization URL it was made for (the
//! `cml:repo` tag). When a scope is given (`--repo`), a resource is judged only when its tag
//! names the same repository or organization (host and path compared without regard to case
//! or scheme); a resource of any other scope, or without the tag, is "another repository's;
//! not judged" and is never an orphan. Without a scope, every resource is judged, but only by
//! the rules that need no forge (no running machine and no runner is ever an orphan then).
//!
//! A judged resource is an orphan when nothing alive needs it any more:
//! - a **stopped** runner machine (runner machines never stop by themselves; a stopped one
//!   still bills for its disk);
//! - a **running** machine whose runner is not online in the forge, once it is older than
//!   the grace period (a younger one may still be registering); only when the forge's runners
//!   are known;
//! - a **disk** (volume) attached to no machine;
//! - a **spot request or key pair** whose runner has no live machine, once older than the
//!   grace period (a launch in flight creates its key pair before its machine);
//! - a **security group** no instance uses — the shared group `cml-runners` (owner
//!   [`SHARED_OWNER`], judged whatever the scope) only while no cml resource in the region is
//!   younger than the grace period either, since a launch in flight may be about to use it;
//! - a Kubernetes **Job** judged as a running machine while its pod runs, and as an orphan
//!   once older than the grace period when its pod never started (`pending`) or it finished
//!   and its TTL did not remove it; a **pod or Secret** whose Job is gone, once older than the
//!   grace period (while its Job exists it goes with it);
//! - an **offline runner** in the forge that `cml` registered: named in one of the owner tags
//!   of the scope's resources, or with `cml`'s default name (`cml-` and 10 base36 characters).
//!   Busy or online runners are never orphans.
//!
//! Whether a machine is alive is decided over every machine listed, whatever its scope, so
//! two scopes using one runner name can only make cleanup keep more.

use crate::repo::RepoUrl;
use crate::RunnerInfo;
use std::collections::HashSet;
use std::time::Duration;

/// The owner tag value of resources shared between runners (the security group
/// `cml-runners`).
pub const SHARED_OWNER: &str = "shared";

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Instance,
    SpotRequest,
    KeyPair,
    SecurityGroup,
    Volume,
    /// A Compute Engine disk, judged as a volume.
    Disk,
    /// An Azure resource group holding one runner's machine and what it needs: judged as its
    /// machine (its state is the machine's), or, holding none (state `available`), as what a
    /// launch makes before its machine (a key pair).
    ResourceGroup,
    /// A Kubernetes Job (a runner's pod and Secret go with it): judged as a machine while its
    /// pod runs; `pending` (its pod never started) or `finished` (its TTL did not remove it)
    /// once older than the grace period.
    Job,
    /// A Kubernetes pod or Secret of a runner: kept while its Job exists (it goes with it),
    /// an orphan once its Job is gone and it is older than the grace period.
    Pod,
    Secret,
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
            Kind::Disk => "disk",
            Kind::ResourceGroup => "resource-group",
            Kind::Job => "job",
            Kind::Pod => "pod",
            Kind::Secret => "secret",
            Kind::Runner => "runner",
        }
    }
}

/// A cloud resource carrying our owner tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub kind: Kind,
    pub id: String,
    /// The owner tag: the runner's name ([`SHARED_OWNER`] for shared resources).
    pub owner: String,
    /// The repository or organization URL it was made for (the `cml:repo` tag), if tagged.
    pub scope: Option<String>,
    pub state: Option<String>,
    /// Time since the cloud created it, when known.
    pub age: Option<Duration>,
    /// Security groups: the instances (anyone's) using it, when the cloud was asked.
    pub used_by: Option<Vec<String>>,
}

/// What cleanup decided about one resource or runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Nothing alive needs it: `--delete` deletes it.
    Orphan,
    /// Judged, and needed (or not provably unneeded).
    Keep,
    /// Another scope's: not judged, never touched.
    NotJudged,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Orphan => "orphan",
            Verdict::Keep => "keep",
            Verdict::NotJudged => "not-judged",
        }
    }
}

/// The verdict on one resource or runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub id: String,
    /// The runner it belongs to (a runner's own name).
    pub owner: String,
    pub state: String,
    pub verdict: Verdict,
    pub reason: String,
}

impl Finding {
    pub fn is_orphan(&self) -> bool {
        self.verdict == Verdict::Orphan
    }
}

/// What the resources are judged against.
#[derive(Debug, Clone, Copy)]
pub struct Judge<'a> {
    /// The repository or organization cleaned (`--repo`); `None`: no scope was given.
    pub scope: Option<&'a RepoUrl>,
    /// The scope's runners in the forge; `None` when the forge was not asked (then running
    /// machines are kept and no runner is judged). Ignored without a scope.
    pub runners: Option<&'a [RunnerInfo]>,
    /// How old a machine without an online runner, or a key pair or spot request without a
    /// live machine, must be to count as an orphan.
    pub grace: Duration,
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

/// True when the `cml:repo` tag value `tag` names the repository or organization `scope`:
/// the same host (with port) and the same path, compared without regard to case (forges
/// route paths case-insensitively) or scheme. A tag that is not a URL names no scope.
pub fn same_scope(scope: &RepoUrl, tag: &str) -> bool {
    let Ok(t) = RepoUrl::parse(tag) else {
        return false;
    };
    scope.host.eq_ignore_ascii_case(&t.host)
        && scope.path.len() == t.path.len()
        && scope
            .path
            .iter()
            .zip(&t.path)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
}

/// Applies the module's rules to every resource listed, then to the scope's runners.
/// Orphans come first in the result, then kept resources, then other scopes'.
pub fn analyze(owned: &[Owned], judge: &Judge) -> Vec<Finding> {
    let grace = judge.grace;
    let runners = judge.scope.and(judge.runners);
    let live = |owner: &str| {
        owned.iter().any(|o| {
            matches!(o.kind, Kind::Instance | Kind::ResourceGroup | Kind::Job)
                && o.owner == owner
                && matches!(o.state.as_deref(), Some("pending" | "running"))
        })
    };
    let young = |o: &Owned| o.age.is_some_and(|a| a < grace);
    // A launch in flight (anyone's) shows as a young key pair, spot request or machine.
    let launch_in_flight = owned.iter().any(|o| {
        matches!(
            o.kind,
            Kind::KeyPair
                | Kind::SpotRequest
                | Kind::Instance
                | Kind::ResourceGroup
                | Kind::Job
                | Kind::Secret
        ) && young(o)
    });
    let in_scope = |o: &Owned| match (judge.scope, o.scope.as_deref()) {
        (None, _) => true,
        (Some(scope), Some(tag)) => same_scope(scope, tag),
        (Some(_), None) => false,
    };
    let unused = |o: &Owned| -> Result<(), String> {
        match &o.used_by {
            None => Err("not known whether an instance uses it".into()),
            Some(users) if !users.is_empty() => Err(format!("used by {}", users.join(", "))),
            Some(_) => Ok(()),
        }
    };
    let mut out = Vec::new();
    for o in owned {
        let state = o.state.clone().unwrap_or_else(|| "-".into());
        let shared = o.kind == Kind::SecurityGroup && o.owner == SHARED_OWNER;
        let (orphan, reason) = if shared {
            match unused(o) {
                Err(why) => (false, why),
                Ok(()) if launch_in_flight => (
                    false,
                    format!(
                        "no instance uses it, but a cml resource is younger than {} s: a launch may be about to",
                        grace.as_secs()
                    ),
                ),
                Ok(()) => (true, "shared by runners, and no instance uses it".to_string()),
            }
        } else if !in_scope(o) {
            out.push(Finding {
                kind: o.kind,
                id: o.id.clone(),
                owner: o.owner.clone(),
                state,
                verdict: Verdict::NotJudged,
                reason: match &o.scope {
                    Some(tag) => format!("another repository's ({tag}); not judged"),
                    None => "another repository's (no cml:repo tag); not judged".to_string(),
                },
            });
            continue;
        } else {
            match o.kind {
                Kind::ResourceGroup if o.state.as_deref() == Some("available") => {
                    if live(&o.owner) {
                        (false, "its machine is alive".to_string())
                    } else if young(o) {
                        (
                            false,
                            format!(
                                "it holds no machine, but it is younger than {} s: a launch may be in flight",
                                grace.as_secs()
                            ),
                        )
                    } else {
                        (true, "it holds no machine".to_string())
                    }
                }
                Kind::Job if o.state.as_deref() == Some("finished") => {
                    if young(o) {
                        (
                            false,
                            "finished: Kubernetes removes it after its ttlSecondsAfterFinished"
                                .to_string(),
                        )
                    } else {
                        (
                            true,
                            format!(
                                "finished, and older than {} s: its TTL did not remove it",
                                grace.as_secs()
                            ),
                        )
                    }
                }
                Kind::Job if o.state.as_deref() == Some("pending") => {
                    if young(o) {
                        (
                            false,
                            format!(
                                "its pod is starting (younger than {} s)",
                                grace.as_secs()
                            ),
                        )
                    } else {
                        (
                            true,
                            format!(
                                "its pod never started, and it is older than {} s",
                                grace.as_secs()
                            ),
                        )
                    }
                }
                Kind::Pod | Kind::Secret => match unused(o) {
                    Err(why) => (false, format!("{why}, and goes with it")),
                    Ok(()) if young(o) => (
                        false,
                        format!(
                            "its Job is gone, but it is younger than {} s: a launch may be in flight",
                            grace.as_secs()
                        ),
                    ),
                    Ok(()) => (true, "its Job is gone".to_string()),
                },
                Kind::Instance | Kind::ResourceGroup | Kind::Job => match (o.state.as_deref(), runners) {
                    (Some("stopped" | "stopping"), _) => (
                        true,
                        "stopped: runner machines never stop by themselves, and the disk still bills"
                            .to_string(),
                    ),
                    (Some("pending"), _) => (false, "booting".to_string()),
                    (Some("shutting-down"), _) => (false, "already terminating".to_string()),
                    (_, None) => (
                        false,
                        if judge.scope.is_some() {
                            "not checked against the forge (give a token)".to_string()
                        } else {
                            "not checked against the forge (give --repo and a token)".to_string()
                        },
                    ),
                    (_, Some(rs)) => match rs.iter().find(|r| r.name == o.owner) {
                        Some(r) if r.online || r.busy => {
                            (false, "its runner is online".to_string())
                        }
                        found => {
                            let why = if found.is_some() {
                                format!("its runner {} is offline", o.owner)
                            } else {
                                format!("no runner named {} in the forge", o.owner)
                            };
                            if young(o) {
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
                Kind::SpotRequest | Kind::KeyPair => {
                    if live(&o.owner) {
                        (false, "its machine is alive".to_string())
                    } else if young(o) {
                        (
                            false,
                            format!(
                                "runner {} has no live machine, but this is younger than {} s: a launch may be in flight",
                                o.owner,
                                grace.as_secs()
                            ),
                        )
                    } else {
                        (true, format!("runner {} has no live machine", o.owner))
                    }
                }
                Kind::SecurityGroup => match unused(o) {
                    Err(why) => (false, why),
                    Ok(()) if live(&o.owner) => (false, "its machine is alive".to_string()),
                    Ok(()) => (
                        true,
                        format!("no instance uses it and runner {} has no live machine", o.owner),
                    ),
                },
                Kind::Volume | Kind::Disk => match o.state.as_deref() {
                    Some("available") => (true, "a disk attached to no machine".to_string()),
                    _ => (false, "attached to a machine".to_string()),
                },
                Kind::Runner => continue,
            }
        };
        out.push(Finding {
            kind: o.kind,
            id: o.id.clone(),
            owner: o.owner.clone(),
            state,
            verdict: if orphan {
                Verdict::Orphan
            } else {
                Verdict::Keep
            },
            reason,
        });
    }
    if let Some(rs) = runners {
        let ours: HashSet<&str> = owned
            .iter()
            .filter(|o| in_scope(o))
            .map(|o| o.owner.as_str())
            .collect();
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
                verdict: Verdict::Orphan,
                reason: if tagged {
                    "offline, and named in our cloud resources".into()
                } else {
                    "offline, with cml's default name".into()
                },
            });
        }
    }
    out.sort_by(|a, b| (a.verdict, a.kind, &a.owner).cmp(&(b.verdict, b.kind, &b.owner)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "https://github.com/octo/app";

    fn res(kind: Kind, id: &str, owner: &str, state: Option<&str>, age: u64) -> Owned {
        Owned {
            kind,
            id: id.into(),
            owner: owner.into(),
            scope: Some(REPO.into()),
            state: state.map(String::from),
            age: Some(Duration::from_secs(age)),
            used_by: None,
        }
    }
    fn scoped(mut o: Owned, scope: Option<&str>) -> Owned {
        o.scope = scope.map(String::from);
        o
    }
    fn group(id: &str, owner: &str, users: &[&str]) -> Owned {
        let mut o = res(Kind::SecurityGroup, id, owner, None, 5000);
        o.used_by = Some(users.iter().map(|u| u.to_string()).collect());
        o.age = None;
        if owner == SHARED_OWNER {
            o.scope = None;
        }
        o
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
    fn verdict(f: &[Finding], id: &str) -> (Verdict, String) {
        let x = f
            .iter()
            .find(|x| x.id == id)
            .unwrap_or_else(|| panic!("{id}: {f:?}"));
        (x.verdict, x.reason.clone())
    }
    fn orphan(f: &[Finding], id: &str) -> bool {
        verdict(f, id).0 == Verdict::Orphan
    }
    const GRACE: Duration = Duration::from_secs(1200);

    #[test]
    fn the_rules() {
        let repo = RepoUrl::parse(REPO).unwrap();
        let owned = vec![
            res(Kind::Instance, "i-live", "a", Some("running"), 5000),
            res(Kind::KeyPair, "cml-a", "a", None, 5000),
            res(Kind::Instance, "i-gone", "b", Some("running"), 5000),
            res(Kind::Instance, "i-young", "c", Some("running"), 10),
            res(Kind::Instance, "i-stopped", "d", Some("stopped"), 5000),
            res(Kind::SpotRequest, "sir-1", "e", Some("open"), 5000),
            group("sg-1", "e", &[]),
            res(Kind::Instance, "i-booting", "f", Some("pending"), 5000),
            res(Kind::Volume, "vol-free", "g", Some("available"), 5000),
            res(Kind::Volume, "vol-used", "a", Some("in-use"), 5000),
            res(Kind::Instance, "i-ending", "h", Some("shutting-down"), 5000),
        ];
        let runners = vec![
            runner("a", true, false),
            runner("b", false, false),
            runner("cml-0123456789", false, false),
            runner("someone-else", false, false),
            runner("cml-abcdefghij", false, true),
        ];
        let judge = Judge {
            scope: Some(&repo),
            runners: Some(&runners),
            grace: GRACE,
        };
        let f = analyze(&owned, &judge);
        assert!(!orphan(&f, "i-live"));
        assert!(!orphan(&f, "cml-a"), "a key pair of a live machine");
        assert_eq!(
            verdict(&f, "i-gone"),
            (Verdict::Orphan, "its runner b is offline".into())
        );
        assert!(!orphan(&f, "i-young"));
        assert!(orphan(&f, "i-stopped"));
        assert!(orphan(&f, "sir-1") && orphan(&f, "sg-1"));
        assert!(!orphan(&f, "i-booting"));
        assert!(!orphan(&f, "i-ending"));
        assert!(orphan(&f, "vol-free") && !orphan(&f, "vol-used"));
        assert!(orphan(&f, "id-b"), "an offline runner named in our tags");
        assert!(orphan(&f, "id-cml-0123456789"), "default name");
        assert!(!f.iter().any(|x| x.id == "id-someone-else"), "not ours");
        assert!(!f.iter().any(|x| x.id == "id-cml-abcdefghij"), "busy");
        assert!(f[0].is_orphan(), "orphans first");

        // Without the forge, running machines are kept and runners not judged.
        let f = analyze(
            &owned,
            &Judge {
                runners: None,
                ..judge
            },
        );
        assert!(!orphan(&f, "i-gone"));
        assert!(!f.iter().any(|x| x.kind == Kind::Runner));
        assert!(is_default_name("cml-0a1b2c3d4e") && !is_default_name("cml-ABCDEFGHIJ"));
    }

    #[test]
    fn resources_of_another_scope_are_never_judged() {
        let repo = RepoUrl::parse(REPO).unwrap();
        let other = "https://github.com/octo/other";
        let org = "https://github.com/octo";
        let gitlab = "https://gitlab.com/octo/app";
        let owned = vec![
            // Same runner name as one offline in this repository's forge: still not judged.
            scoped(
                res(Kind::Instance, "i-other", "b", Some("running"), 5000),
                Some(other),
            ),
            scoped(
                res(Kind::Instance, "i-org", "o", Some("running"), 5000),
                Some(org),
            ),
            scoped(
                res(Kind::Instance, "i-gl", "g", Some("stopped"), 5000),
                Some(gitlab),
            ),
            scoped(res(Kind::KeyPair, "cml-x", "x", None, 5000), None),
            scoped(
                res(Kind::Volume, "vol-x", "x", Some("available"), 5000),
                Some(other),
            ),
            // The same repository, written differently: judged.
            scoped(
                res(Kind::Instance, "i-mine", "m", Some("running"), 5000),
                Some("http://GitHub.com/Octo/App.git"),
            ),
        ];
        let runners = vec![runner("b", false, false), runner("x", false, false)];
        let f = analyze(
            &owned,
            &Judge {
                scope: Some(&repo),
                runners: Some(&runners),
                grace: GRACE,
            },
        );
        for id in ["i-other", "i-org", "i-gl", "cml-x", "vol-x"] {
            let (v, why) = verdict(&f, id);
            assert_eq!(v, Verdict::NotJudged, "{id}: {why}");
            assert!(why.contains("another repository's"), "{why}");
        }
        assert!(verdict(&f, "i-org").1.contains(org));
        assert!(verdict(&f, "cml-x").1.contains("no cml:repo tag"));
        assert!(orphan(&f, "i-mine"), "{:?}", verdict(&f, "i-mine"));
        assert!(
            !f.iter().any(|x| x.id == "id-x"),
            "a runner named only in another scope's tags is not ours"
        );
        assert_eq!(f.last().unwrap().verdict, Verdict::NotJudged, "listed last");

        // Without a scope: every scope is judged, by the rules needing no forge only.
        let f = analyze(
            &owned,
            &Judge {
                scope: None,
                runners: Some(&runners),
                grace: GRACE,
            },
        );
        assert!(orphan(&f, "i-gl"), "stopped");
        assert!(orphan(&f, "vol-x") && orphan(&f, "cml-x"));
        for id in ["i-other", "i-org", "i-mine"] {
            assert_eq!(verdict(&f, id).0, Verdict::Keep, "{id}");
        }
        assert!(!f.iter().any(|x| x.kind == Kind::Runner));
    }

    #[test]
    fn resource_groups_are_judged_as_their_machine_or_as_a_launch_leftover() {
        let repo = RepoUrl::parse(REPO).unwrap();
        let owned = vec![
            res(
                Kind::ResourceGroup,
                "cml-live",
                "live",
                Some("running"),
                5000,
            ),
            res(
                Kind::ResourceGroup,
                "cml-gone",
                "gone",
                Some("running"),
                5000,
            ),
            res(
                Kind::ResourceGroup,
                "cml-stopped",
                "stopped",
                Some("stopped"),
                5000,
            ),
            res(
                Kind::ResourceGroup,
                "cml-empty-new",
                "new",
                Some("available"),
                30,
            ),
            res(
                Kind::ResourceGroup,
                "cml-empty-old",
                "old",
                Some("available"),
                5000,
            ),
        ];
        let runners = [runner("live", true, false)];
        let f = analyze(
            &owned,
            &Judge {
                scope: Some(&repo),
                runners: Some(&runners),
                grace: GRACE,
            },
        );
        assert_eq!(verdict(&f, "cml-live").0, Verdict::Keep);
        assert!(orphan(&f, "cml-gone"));
        assert!(orphan(&f, "cml-stopped"));
        let (v, why) = verdict(&f, "cml-empty-new");
        assert_eq!(v, Verdict::Keep);
        assert!(why.contains("launch may be in flight"), "{why}");
        let (v, why) = verdict(&f, "cml-empty-old");
        assert_eq!(v, Verdict::Orphan);
        assert!(why.contains("holds no machine"), "{why}");
    }

    #[test]
    fn kubernetes_jobs_pods_and_secrets_are_judged_by_their_pod_and_their_job() {
        let repo = RepoUrl::parse(REPO).unwrap();
        let used = |mut o: Owned, by: &[&str]| {
            o.used_by = Some(by.iter().map(|s| s.to_string()).collect());
            o
        };
        let owned = vec![
            res(Kind::Job, "live", "live", Some("running"), 5000),
            res(Kind::Job, "gone", "gone", Some("running"), 5000),
            res(Kind::Job, "starting", "starting", Some("pending"), 30),
            res(Kind::Job, "stuck", "stuck", Some("pending"), 5000),
            res(Kind::Job, "done-new", "done-new", Some("finished"), 30),
            res(Kind::Job, "done-old", "done-old", Some("finished"), 5000),
            used(
                res(Kind::Secret, "live-token", "live", None, 5000),
                &["job live"],
            ),
            used(res(Kind::Secret, "lone-token", "lone", None, 5000), &[]),
            used(
                res(Kind::Pod, "lone-x1", "lone", Some("running"), 5000),
                &[],
            ),
            used(
                res(Kind::Pod, "live-x1", "live", Some("running"), 5000),
                &["job live"],
            ),
        ];
        let runners = [runner("live", true, false)];
        let f = analyze(
            &owned,
            &Judge {
                scope: Some(&repo),
                runners: Some(&runners),
                grace: GRACE,
            },
        );
        assert_eq!(verdict(&f, "live").0, Verdict::Keep);
        assert!(orphan(&f, "gone"));
        assert_eq!(verdict(&f, "starting").0, Verdict::Keep);
        let (v, why) = verdict(&f, "stuck");
        assert_eq!(v, Verdict::Orphan);
        assert!(why.contains("never started"), "{why}");
        assert_eq!(verdict(&f, "done-new").0, Verdict::Keep);
        assert!(orphan(&f, "done-old"));
        assert_eq!(verdict(&f, "live-token").0, Verdict::Keep);
        assert_eq!(verdict(&f, "live-x1").0, Verdict::Keep);
        assert!(orphan(&f, "lone-token"));
        assert!(orphan(&f, "lone-x1"));
        // Without the forge, a running Job is never an orphan.
        let f = analyze(
            &owned,
            &Judge {
                scope: Some(&repo),
                runners: None,
                grace: GRACE,
            },
        );
        assert_eq!(verdict(&f, "gone").0, Verdict::Keep);
    }

    #[test]
    fn key_pairs_and_spot_requests_of_a_launch_in_flight_are_kept() {
        let repo = RepoUrl::parse(REPO).unwrap();
        let owned = vec![
            res(Kind::KeyPair, "cml-new", "new", None, 30),
            res(Kind::SpotRequest, "sir-new", "new", Some("open"), 30),
            res(Kind::KeyPair, "cml-old", "old", None, 5000),
        ];
        let f = analyze(
            &owned,
            &Judge {
                scope: Some(&repo),
                runners: Some(&[]),
                grace: GRACE,
            },
        );
        let (v, why) = verdict(&f, "cml-new");
        assert_eq!(v, Verdict::Keep);
        assert!(why.contains("launch may be in flight"), "{why}");
        assert_eq!(verdict(&f, "sir-new").0, Verdict::Keep);
        assert!(orphan(&f, "cml-old"));
    }

    #[test]
    fn a_security_group_in_use_is_never_an_orphan() {
        let repo = RepoUrl::parse(REPO).unwrap();
        let judge = Judge {
            scope: Some(&repo),
            runners: Some(&[]),
            grace: GRACE,
        };
        // The shared group, used by another repository's machine.
        let mut other_machine = res(Kind::Instance, "i-9", "z", Some("running"), 5000);
        other_machine.scope = Some("https://github.com/someone/else".into());
        let owned = vec![group("sg-shared", SHARED_OWNER, &["i-9"]), other_machine];
        let f = analyze(&owned, &judge);
        assert_eq!(
            verdict(&f, "sg-shared"),
            (Verdict::Keep, "used by i-9".into())
        );
        // Unused, but a launch may be in flight.
        let owned = vec![
            group("sg-shared", SHARED_OWNER, &[]),
            res(Kind::KeyPair, "cml-k", "k", None, 5),
        ];
        let (v, why) = verdict(&analyze(&owned, &judge), "sg-shared");
        assert_eq!(v, Verdict::Keep);
        assert!(why.contains("a launch may be about to"), "{why}");
        // Unused and nothing recent; unknown use is kept.
        let owned = vec![group("sg-shared", SHARED_OWNER, &[])];
        assert!(orphan(&analyze(&owned, &judge), "sg-shared"));
        let mut unknown = group("sg-shared", SHARED_OWNER, &[]);
        unknown.used_by = None;
        assert!(!orphan(&analyze(&[unknown], &judge), "sg-shared"));
        // A per-runner group in use by an untagged instance.
        let owned = vec![group("sg-r", "r", &["i-untagged"])];
        assert!(!orphan(&analyze(&owned, &judge), "sg-r"));
    }

    #[test]
    fn scopes_compare_by_host_and_path() {
        let repo = RepoUrl::parse("https://github.com/Octo/App").unwrap();
        assert!(same_scope(&repo, "https://github.com/octo/app"));
        assert!(same_scope(&repo, "git@github.com:octo/app.git"));
        assert!(!same_scope(&repo, "https://github.com/octo"));
        assert!(!same_scope(&repo, "https://github.com/octo/app/sub"));
        assert!(!same_scope(&repo, "https://ghe.example.com/octo/app"));
        assert!(!same_scope(&repo, "not a url"));
    }
}
