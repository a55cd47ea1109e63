//! What to do when runners already exist: CML's `--reuse` / `--reuse-idle` rules and the name
//! conflict check, decided from the forge's list of runners before anything is registered.

use crate::{Labels, RunnerInfo};

/// The outcome of looking at the existing runners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReuseDecision {
    /// Register a new runner.
    Launch,
    /// Exit 0 without registering; the message says which runner is reused.
    Reuse(String),
    /// A runner with this name exists and `--reuse` was not given: an error.
    NameTaken(RunnerInfo),
}

/// Applies CML's rules, in CML's order:
/// 1. `--reuse`: reuse a runner with the same name, or any *online* runner with all labels;
/// 2. `--reuse-idle`: reuse an online, not busy runner with all labels;
/// 3. otherwise a runner with the same name is a conflict.
pub fn decide(
    runners: &[RunnerInfo],
    name: &str,
    labels: &Labels,
    reuse: bool,
    reuse_idle: bool,
) -> ReuseDecision {
    let by_name = runners.iter().find(|r| r.name == name);
    let has_labels = |r: &&RunnerInfo| labels.all_in(&r.labels);
    if reuse {
        if let Some(r) = by_name {
            return ReuseDecision::Reuse(format!("Reusing existing runner named {}", r.name));
        }
        if let Some(r) = runners.iter().filter(|r| r.online).find(has_labels) {
            return ReuseDecision::Reuse(format!(
                "Reusing existing online runner {} with the labels {labels}",
                r.name
            ));
        }
    }
    if reuse_idle {
        if let Some(r) = runners
            .iter()
            .filter(|r| r.online && !r.busy)
            .find(has_labels)
        {
            return ReuseDecision::Reuse(format!(
                "Reusing existing idle runner {} with the labels {labels}",
                r.name
            ));
        }
    }
    match by_name {
        Some(r) => ReuseDecision::NameTaken(r.clone()),
        None => ReuseDecision::Launch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: u64, name: &str, online: bool, busy: bool, labels: &[&str]) -> RunnerInfo {
        RunnerInfo {
            id: id.to_string(),
            name: name.into(),
            online,
            busy,
            labels: labels.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn reuse_by_name_or_online_labels() {
        let l = Labels::parse("cml,gpu");
        let rs = vec![
            r(1, "a", false, false, &["cml"]),
            r(2, "b", true, true, &["cml", "gpu"]),
        ];
        assert!(matches!(
            decide(&rs, "a", &l, true, false),
            ReuseDecision::Reuse(_)
        ));
        assert!(
            matches!(decide(&rs, "z", &l, true, false), ReuseDecision::Reuse(m) if m.contains(" b "))
        );
        let offline = vec![r(2, "b", false, false, &["cml", "gpu"])];
        assert_eq!(
            decide(&offline, "z", &l, true, false),
            ReuseDecision::Launch
        );
    }

    #[test]
    fn reuse_idle_needs_online_and_not_busy() {
        let l = Labels::parse("cml");
        let busy = vec![r(2, "b", true, true, &["cml"])];
        assert_eq!(decide(&busy, "z", &l, false, true), ReuseDecision::Launch);
        let idle = vec![r(2, "b", true, false, &["self-hosted", "CML"])];
        assert!(matches!(
            decide(&idle, "z", &l, false, true),
            ReuseDecision::Reuse(_)
        ));
    }

    #[test]
    fn same_name_without_reuse_is_a_conflict() {
        let l = Labels::parse("cml");
        let rs = vec![r(7, "a", true, false, &["other"])];
        assert!(
            matches!(decide(&rs, "a", &l, false, false), ReuseDecision::NameTaken(x) if x.id == "7")
        );
        assert!(matches!(
            decide(&rs, "a", &l, false, true),
            ReuseDecision::NameTaken(_)
        ));
    }
}
