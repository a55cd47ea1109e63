//! Runner labels.

use std::fmt;

/// A set of runner labels, in the order given, without duplicates or empty entries.
///
/// Matching is case-insensitive, as on GitHub (`self-hosted` = `Self-Hosted`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Labels(Vec<String>);

impl Labels {
    /// CML's default label.
    pub const DEFAULT: &'static str = "cml";

    /// Parses a comma-separated list (`"local,runner"`); whitespace around items is dropped.
    pub fn parse(list: &str) -> Labels {
        let mut out: Vec<String> = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !out.iter().any(|l| l.eq_ignore_ascii_case(item)) {
                out.push(item.to_string());
            }
        }
        Labels(out)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when every label of `self` is in `other` (case-insensitive).
    pub fn all_in<S: AsRef<str>>(&self, other: &[S]) -> bool {
        self.0
            .iter()
            .all(|l| other.iter().any(|o| o.as_ref().eq_ignore_ascii_case(l)))
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_trims_and_dedups() {
        let l = Labels::parse(" local, runner,,Local ,gpu");
        assert_eq!(l.as_slice(), ["local", "runner", "gpu"]);
        assert_eq!(l.to_string(), "local,runner,gpu");
    }

    #[test]
    fn subset_is_case_insensitive() {
        let l = Labels::parse("cml,GPU");
        assert!(l.all_in(&["self-hosted", "gpu", "CML"]));
        assert!(!l.all_in(&["cml"]));
    }
}
