//! The machine's `git`, run in the current directory.
//!
//! Credentials: a token reaches `git` only through the environment of the one `git` process
//! that talks to the remote (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`, an
//! `http.<forge URL>.extraHeader` keyed on the forge's `SCHEME://HOST[:PORT]/`, so Git sends
//! it to that host and no other), never through its command line (visible to every user in
//! the process list) or the remote URL (printed by `git remote -v` and in errors). The process
//! environment is readable only by the same user. An empty header first resets headers
//! configured for the host before (actions/checkout persists its own token there).
//!
//! Paths: every `git` runs with `GIT_LITERAL_PATHSPECS=1`, so a path given to it names that
//! one file, even when it is `*` or starts with `:(glob)`.
//!
//! Time: calls that reach a remote run under a time limit; on expiry the call's whole process
//! group (git and the transport helpers it started) is killed and the error names the call.
//! Git's error output is passed on with the credentials of any URL in it masked.

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use cml_core::report::redact_url_credentials;
use cml_core::Secret;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// `git` with an optional credential for one forge and an optional time limit.
#[derive(Default)]
pub struct Git {
    /// `(SCHEME://HOST[:PORT]/ of the forge, Authorization header)`.
    auth: Option<(String, Secret)>,
    limit: Option<Duration>,
}

impl Git {
    pub fn new() -> Git {
        Git::default()
    }

    /// Calls that reach a URL under `scope` (`SCHEME://HOST[:PORT]/`, the forge) authenticate
    /// as `user` with `password`; calls to any other host get no credential from us.
    pub fn with_credentials(scope: &str, user: &str, password: &Secret) -> Git {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{user}:{}", password.expose()));
        Git {
            auth: Some((
                scope.to_string(),
                Secret::new(format!("Authorization: Basic {basic}")),
            )),
            limit: None,
        }
    }

    /// Every call of this `git` is stopped (with the processes it started) after `limit`.
    pub fn time_limited(mut self, limit: Duration) -> Git {
        self.limit = Some(limit);
        self
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
        c.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_LITERAL_PATHSPECS", "1");
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
        let spawn_failed = || format!("running `git {}`\nhint: install git", args.join(" "));
        let Some(limit) = self.limit else {
            return self.command(args).output().with_context(spawn_failed);
        };
        match output_within(self.command(args), limit).with_context(spawn_failed)? {
            Ok(out) => Ok(out),
            Err(TimedOut { .. }) => Err(anyhow!(
                "`git {}` did not finish within {}: it was stopped, with the processes it started\nhint: check that the remote is reachable from this machine; set {} to allow longer",
                args.join(" "),
                seconds(limit),
                super::GIT_TIMEOUT_VAR
            )),
        }
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
                redact_url_credentials(String::from_utf8_lossy(&out.stderr).trim())
            );
        }
        Ok(out.stdout)
    }
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// A call that ran out of time; its process group was killed.
#[derive(Debug)]
struct TimedOut {
    #[allow(dead_code)] // read by the tests
    pgid: i32,
}

/// Runs `cmd` with no input, collecting its output, in a process group of its own. When
/// `limit` passes first, the whole group is killed: git and the helpers it started
/// (`git-remote-https`, `ssh`, credential helpers), which would otherwise keep the remote's
/// connection open.
///
/// Guarantees: on `Err(TimedOut)` every process of the group has been sent SIGKILL, and the
/// call returns within `limit` plus a few seconds even if a process escaped the group while
/// holding the output pipes open.
fn output_within(mut cmd: Command, limit: Duration) -> std::io::Result<Result<Output, TimedOut>> {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so that expiry can kill git's helpers with it.
        .process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which
    // is async-signal-safe and touches no memory of the parent. Being outside our process
    // group, git no longer gets the terminal's Ctrl-C with us; this asks the kernel to send it
    // SIGTERM if the thread that started it dies (we block in this function until git ends,
    // so that is when `cml` itself is killed), so git does not outlive `cml`.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pgid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    // The waiting thread reads both pipes to their end and reaps git.
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.map(Ok),
        Err(RecvTimeoutError::Disconnected) => Err(std::io::Error::other("git's waiter stopped")),
        Err(RecvTimeoutError::Timeout) => {
            // SAFETY: kill(2) with a negative pid signals the process group created above by
            // process_group(0), whose id is git's pid. It reads no memory. Only the waiter
            // reaps git, and it has not answered: the id can have been freed at most in the
            // instant between that reaping and its answer, and Linux allocates ids
            // sequentially, so reuse by another group in that instant is not a practical
            // risk. ESRCH (the group just ended) is harmless.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            // Once the group is dead the pipes close and git is reaped; a process that left
            // the group could keep them open, so the wait is bounded.
            let _ = rx.recv_timeout(Duration::from_secs(5));
            Ok(Err(TimedOut { pgid }))
        }
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

    /// Pids of the live (not zombie) processes whose command line contains `needle`, with
    /// their process group.
    fn live_processes_with(needle: &str) -> Vec<(i32, i32)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if !String::from_utf8_lossy(&cmdline).contains(needle) {
                continue;
            }
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // After "pid (comm)": state, ppid, pgrp.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().collect())
                .unwrap_or_default();
            if let (Some(state), Some(pgrp)) = (fields.first(), fields.get(2)) {
                if *state != "Z" {
                    out.push((pid, pgrp.parse().unwrap_or(0)));
                }
            }
        }
        out
    }

    #[test]
    fn a_remote_that_never_answers_is_given_up_on_and_git_s_helpers_killed() {
        // The kernel completes connections to a listening socket that nobody accepts: git
        // connects, sends its request and waits for an answer that never comes.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}/o/r.git",
            listener.local_addr().unwrap().port()
        );
        let limit = Duration::from_secs(2);
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let url = url.clone();
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let git = Git::new().time_limited(limit);
                let _ = tx.send((git.run(&["ls-remote", &url]), started.elapsed()));
            });
        }
        // git and its transport helper, both in git's own process group.
        let start = std::time::Instant::now();
        let mut seen = Vec::new();
        while seen.len() < 2 && start.elapsed() < Duration::from_secs(10) {
            seen = live_processes_with(&url);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(seen.len() >= 2, "git and its helper: {seen:?}");
        let group = seen[0].1;
        assert!(seen.iter().all(|(_, g)| *g == group), "{seen:?}");
        assert_ne!(group, unsafe { libc::getpgrp() });
        let (result, took) = rx
            .recv_timeout(limit + Duration::from_secs(10))
            .expect("the call did not end");
        let e = result.unwrap_err().to_string();
        assert!(
            e.contains(&format!("`git ls-remote {url}` did not finish within 2 s"))
                && e.contains("hint:")
                && e.contains("CML_GIT_TIMEOUT"),
            "{e}"
        );
        assert!(
            took >= limit && took < limit + Duration::from_secs(6),
            "{took:?}"
        );
        // Nothing of the group is left running.
        let start = std::time::Instant::now();
        while !live_processes_with(&url).is_empty() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(live_processes_with(&url), vec![]);
        drop(listener);
    }

    #[test]
    fn a_call_that_ends_in_time_gives_its_output() {
        let git = Git::new().time_limited(Duration::from_secs(30));
        assert!(git.run(&["--version"]).unwrap().starts_with("git version"));
        let e = git.run(&["no-such-command"]).unwrap_err().to_string();
        assert!(e.contains("`git no-such-command` failed"), "{e}");
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
