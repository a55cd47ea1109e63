//! A string that must never be printed.

use std::fmt;

/// A secret value (token, private key, OAuth secret).
///
/// Guarantees: `Debug` and `Display` never show the value (they print `Secret(***)` / `***`);
/// the value is only reachable through [`Secret::expose`], so every place that sends it
/// somewhere is greppable. It is not `Serialize`, so it cannot end up in a JSON log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value. Surrounding whitespace is trimmed: tokens pasted into CI secrets often
    /// carry a trailing newline, and no forge token contains whitespace.
    pub fn new(value: impl Into<String>) -> Self {
        let v: String = value.into();
        Secret(v.trim().to_string())
    }

    /// The raw value, for the one place that must send it (an HTTP header, a child's stdin).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces every occurrence of any of `secrets` in `text` with `***`.
///
/// Used by the logging layer as a last line of defence: even if a secret reached a message
/// (an error body echoing a token, a child's output), it is masked before it is written.
/// Secrets shorter than 4 characters are ignored, so that masking cannot shred ordinary text.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.len() >= 4 && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("ghp_abcdef123456\n");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(s.expose(), "ghp_abcdef123456");
        assert!(!format!("{:?}", Some(&s)).contains("ghp_"));
    }

    #[test]
    fn redact_masks_every_occurrence() {
        let secrets = vec!["ghp_abc123".to_string(), "xy".to_string()];
        assert_eq!(
            redact("token ghp_abc123 and ghp_abc123, xy", &secrets),
            "token *** and ***, xy"
        );
    }
}
