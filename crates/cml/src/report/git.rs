//! The machine's `git`, run in the current directory.
//!
//! Credentials: a token reaches `git` only through the environment of the one `git` process
//! that talks to the remote (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`, an
//! `http.<remote URL>.extraHeader`), never through its command line (visible to every user
//! in the process list) or the remote URL (printed by `git remote -v` and in errors). The
//! process environment is readable only by the same user. An empty header first resets
//! headers configured for the host before (actions/checkout persists its own token there).

use anyhow::{bail, Context};
use base64::Engine;
use cml_core::Secret;
use std::process::{Command, Output};

/// `git` with an optional credential for one remote.
#[derive(Default)]
pub struct Git {
    auth: Option<(String, Secret)>,
}

impl Git {
    pub fn new() -> Git {
        Git::default()
    }

    /// Calls that reach `remote_url` authenticate as `user` with `password`.
    pub fn with_credentials(remote_url: &str, user: &str, password: &Secret) -> Git {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{user}:{}", password.expose()));
        Git {
            auth: Some((
                remote_url.to_string(),
                Secret::new(format!("Authorization: Basic {basic}")),
            )),
        }
    }

    /// The `Authorization` header this `git` sends, for redaction.
    pub fn secret(&self) -> Option<String> {
        self.auth.as_ref().map(|(_, h)| {
            h.expose()
                .trim_start_matches("Authorization: Basic ")
                .to_string()
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("git");
        c.args(args).env("GIT_TERMINAL_PROMPT", "0");
        if let Some((url, header)) = &self.auth {
            let base: usize = std::env::var("GIT_CONFIG_COUNT")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let key = format!("http.{url}.extraHeader");
            c.env("GIT_CONFIG_COUNT", (base + 2).to_string())
                .env(format!("GIT_CONFIG_KEY_{base}"), &key)
                .env(format!("GIT_CONFIG_VALUE_{base}"), "")
                .env(format!("GIT_CONFIG_KEY_{}", base + 1), &key)
                .env(format!("GIT_CONFIG_VALUE_{}", base + 1), header.expose());
        }
        c
    }

    fn output(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.command(args)
            .output()
            .with_context(|| format!("running `git {}`\nhint: install git", args.join(" ")))
    }

    /// Runs `git ARGS`; its standard output, trimmed. A failure carries git's message.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run_raw(args)?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// Runs `git ARGS`; its standard output when it succeeded.
    pub fn try_run(&self, args: &[&str]) -> Option<String> {
        let out = self.output(args).ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Raw standard output of a successful `git ARGS`; a failure carries git's message.
    pub fn run_raw(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let out = self.output(args)?;
        if !out.status.success() {
            bail!(
                "`git {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out.stdout)
    }
}

/// Paths changed in the working tree (modified, added, deleted, untracked), from
/// `git status --porcelain -z`.
pub fn changed_paths(porcelain_z: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut entries = porcelain_z.split(|b| *b == 0).filter(|e| !e.is_empty());
    while let Some(e) = entries.next() {
        if e.len() < 4 {
            continue;
        }
        let status = &e[..2];
        out.push(String::from_utf8_lossy(&e[3..]).to_string());
        // A rename or copy is followed by its source path.
        if status.contains(&b'R') || status.contains(&b'C') {
            entries.next();
        }
    }
    out
}

/// Whether `path` matches `pattern`: `*` (within a path segment), `**` (any depth), `?`; a
/// pattern without wildcards also matches every path below it (a directory).
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pattern = pattern.trim_start_matches("./");
    if !pattern.contains(['*', '?']) {
        let dir = pattern.trim_end_matches('/');
        return path == dir || path.starts_with(&format!("{dir}/"));
    }
    fn m(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) if p.get(1) == Some(&b'*') => {
                let rest = if p.get(2) == Some(&b'/') {
                    &p[3..]
                } else {
                    &p[2..]
                };
                (0..=s.len()).any(|i| m(rest, &s[i..]))
            }
            (Some(b'*'), _) => {
                let max = s.iter().position(|c| *c == b'/').unwrap_or(s.len());
                (0..=max).any(|i| m(&p[1..], &s[i..]))
            }
            (Some(b'?'), Some(c)) if *c != b'/' => m(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &s[1..]),
            _ => false,
        }
    }
    m(pattern.as_bytes(), path.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("dvc.lock", "dvc.lock"));
        assert!(!glob_match("dvc.lock", "sub/dvc.lock"));
        assert!(glob_match("models", "models/a/b.pkl"));
        assert!(glob_match("*.csv", "a.csv"));
        assert!(!glob_match("*.csv", "d/a.csv"));
        assert!(glob_match("**/*.csv", "d/e/a.csv"));
        assert!(glob_match("**/*.csv", "a.csv"));
        assert!(glob_match("out/**", "out/x/y"));
        assert!(glob_match("m?del.pkl", "model.pkl"));
        assert!(glob_match("./metrics.json", "metrics.json"));
    }

    #[test]
    fn porcelain() {
        let z = b" M dvc.lock\0?? new file.txt\0R  to.txt\0from.txt\0D  gone\0";
        assert_eq!(
            changed_paths(z),
            vec!["dvc.lock", "new file.txt", "to.txt", "gone"]
        );
    }
}
