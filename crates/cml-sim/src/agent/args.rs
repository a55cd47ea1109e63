//! Command-line options of the runner scripts, with the real runner's environment fallback:
//! option `--x-y` may also come from `ACTIONS_RUNNER_INPUT_X_Y` (flags: value `true`/`1`).

use std::collections::HashMap;

const FLAGS: &[&str] = &[
    "unattended",
    "ephemeral",
    "replace",
    "once",
    "disableupdate",
    "no-default-labels",
    "check",
];

/// Parsed options.
#[derive(Debug, Default, Clone)]
pub struct Args {
    values: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    pub fn parse(args: &[String]) -> Args {
        let mut a = Args::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--") else {
                continue;
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n.to_lowercase(), Some(v.to_string())),
                None => (name.to_lowercase(), None),
            };
            if FLAGS.contains(&name.as_str()) {
                a.flags.push(name);
            } else if let Some(v) = inline.or_else(|| it.next().cloned()) {
                a.values.insert(name, v);
            }
        }
        a
    }

    fn env_name(name: &str) -> String {
        format!(
            "ACTIONS_RUNNER_INPUT_{}",
            name.to_uppercase().replace('-', "_")
        )
    }

    /// Value of `--name`, else of `ACTIONS_RUNNER_INPUT_NAME`.
    pub fn value(&self, name: &str) -> Option<String> {
        self.values
            .get(name)
            .cloned()
            .or_else(|| std::env::var(Self::env_name(name)).ok())
            .filter(|v| !v.is_empty())
    }

    /// Whether `--name` was given (or `ACTIONS_RUNNER_INPUT_NAME` is `true`/`1`).
    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
            || std::env::var(Self::env_name(name))
                .is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }
}
