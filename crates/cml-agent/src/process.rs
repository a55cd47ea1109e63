//! A running agent: its process group, its output as whole lines, and a graceful stop.

use crate::{AgentError, RunAs};
use std::collections::VecDeque;
use std::fmt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Lines of output kept for error messages.
const TAIL_LINES: usize = 20;
/// How long to wait for buffered output after the agent process has exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One whole line of agent output, without its line ending.
#[derive(Debug, Clone)]
pub struct Line {
    pub stream: Stream,
    pub text: String,
    /// When the line's last byte was read.
    pub at: Instant,
}

/// How the agent process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "signal {s}"),
            _ => f.write_str("unknown status"),
        }
    }
}

/// What the agent did next.
#[derive(Debug, Clone)]
pub enum Output {
    Line(Line),
    /// The agent process ended (after its buffered output was delivered).
    Exited(ExitInfo),
}

/// A supervised agent process.
pub struct AgentProcess {
    child: Child,
    pgid: i32,
    lines: mpsc::Receiver<Line>,
    lines_open: bool,
    exited: Option<(ExitInfo, Instant)>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl AgentProcess {
    /// Starts `cmd` in a new process group with piped stdout/stderr and no stdin, prepared
    /// by [`prepare`] (default signal dispositions, empty signal mask, killed with its
    /// supervisor).
    ///
    /// The caller sets the program, arguments, working directory and environment.
    pub fn spawn(cmd: Command, program: &str) -> Result<AgentProcess, AgentError> {
        AgentProcess::spawn_as(cmd, program, None)
    }

    /// [`AgentProcess::spawn`], the process running as `run_as` when given.
    pub fn spawn_as(
        mut cmd: Command,
        program: &str,
        run_as: Option<&RunAs>,
    ) -> Result<AgentProcess, AgentError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        prepare(&mut cmd, run_as);
        let mut child = cmd.spawn().map_err(|cause| AgentError::Spawn {
            program: program.to_string(),
            cause,
        })?;
        let pgid = child.id().map(|p| p as i32).unwrap_or(0);
        let (tx, rx) = mpsc::channel(1024);
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(read_lines(out, Stream::Stdout, tx.clone(), tail.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(read_lines(err, Stream::Stderr, tx, tail.clone()));
        }
        Ok(AgentProcess {
            child,
            pgid,
            lines: rx,
            lines_open: true,
            exited: None,
            tail,
        })
    }

    /// The process id of the agent (also its process group id).
    pub fn pid(&self) -> i32 {
        self.pgid
    }

    /// The next line, or the exit once the process has ended and its output is drained.
    /// After `Exited` was returned once, every later call returns it again at once.
    ///
    /// Cancel-safe: it can be used as a branch of `tokio::select!`.
    pub async fn next(&mut self) -> Output {
        loop {
            if let Some((info, deadline)) = self.exited {
                if !self.lines_open {
                    return Output::Exited(info);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                return match tokio::time::timeout(left, self.lines.recv()).await {
                    Ok(Some(line)) => Output::Line(line),
                    Ok(None) => {
                        self.lines_open = false;
                        Output::Exited(info)
                    }
                    Err(_) => {
                        // A grandchild keeps the pipe open; do not wait for it.
                        self.lines_open = false;
                        Output::Exited(info)
                    }
                };
            }
            tokio::select! {
                line = self.lines.recv(), if self.lines_open => match line {
                    Some(line) => return Output::Line(line),
                    None => self.lines_open = false,
                },
                status = self.child.wait() => {
                    let info = exit_info(status.ok());
                    self.exited = Some((info, Instant::now() + DRAIN_AFTER_EXIT));
                    self.kill_group(libc::SIGKILL);
                }
            }
        }
    }

    /// Asks the agent to stop (SIGINT to its process group, as Ctrl-C would), waits up to
    /// `grace`, then kills the whole group. Returns how it ended and whether it stopped
    /// within the grace period. Idempotent: stopping an exited agent returns its exit.
    pub async fn stop(&mut self, grace: Duration) -> (ExitInfo, bool) {
        if let Some((info, _)) = self.exited {
            return (info, true);
        }
        self.kill_group(libc::SIGINT);
        let graceful = tokio::time::timeout(grace, self.child.wait()).await;
        let (status, in_time) = match graceful {
            Ok(status) => (status.ok(), true),
            Err(_) => {
                tracing::warn!(
                    "the agent did not stop within {} s; killing it",
                    grace.as_secs_f32()
                );
                self.kill_group(libc::SIGKILL);
                (self.child.wait().await.ok(), false)
            }
        };
        // Leave nothing of the group behind (workers the wrapper did not wait for).
        self.kill_group(libc::SIGKILL);
        let info = exit_info(status);
        self.exited = Some((info, Instant::now() + DRAIN_AFTER_EXIT));
        (info, in_time)
    }

    /// Sends `signal` to the agent's process group (gitlab-runner's graceful stop is SIGQUIT:
    /// it finishes the running job and takes no new one). Does nothing once it has exited.
    pub fn signal(&self, signal: i32) {
        if self.exited.is_none() {
            self.kill_group(signal);
        }
    }

    /// The last lines the agent printed (both streams), oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn kill_group(&self, signal: i32) {
        if self.pgid > 0 {
            // SAFETY: kill(2) with a negative pid signals the process group we created with
            // process_group(0) at spawn (its id is the agent's pid). It reads no memory. The
            // group id cannot have been reused by an unrelated group while the agent itself is
            // unreaped; right after reaping, reuse within this call is not a practical risk
            // because Linux allocates pids sequentially. ESRCH (no such group) is ignored.
            unsafe {
                libc::kill(-self.pgid, signal);
            }
        }
    }
}

/// Makes the child of `cmd` start the way an agent must, whatever state the supervisor was
/// started in. In the child, between `fork` and `exec`:
/// - every signal disposition is reset to the default and the signal mask is emptied: an
///   "ignore" disposition survives `exec`, so a supervisor started with SIGINT ignored (by
///   `nohup`, from a script's background job, by some service managers) would otherwise hand
///   the agent an ignored SIGINT, and the graceful stop would be lost;
/// - with `run_as`, the process takes the user's supplementary groups, then its group, then
///   its user id (in that order: once the user id is dropped, the groups can no longer be
///   changed), so the agent and every job it runs hold none of root's rights;
/// - on Linux it asks for SIGTERM when the supervisor dies without stopping it (SIGKILL, a
///   crash), so an agent is never left running unsupervised. This comes after the user
///   switch, because changing credentials clears that setting.
///
/// A failed step makes the spawn fail with that step's error; the supervisor is unchanged.
pub fn prepare(cmd: &mut Command, run_as: Option<&RunAs>) {
    // Everything the child needs is computed here, in the parent: between `fork` and `exec`
    // only async-signal-safe calls are allowed, so nothing may allocate or lock there.
    let ids = run_as.map(|u| (u.uid, u.gid, u.groups.clone()));
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec. It only makes system calls
    // that are async-signal-safe (rt_sigaction, sigprocmask, setgroups, setgid, setuid, prctl,
    // getppid) on memory it owns (`ids`, moved in before the fork, and locals); it takes no
    // lock and allocates nothing, so it cannot deadlock on state another thread of the parent
    // held at the fork.
    unsafe {
        cmd.pre_exec(move || {
            for sig in 1..NSIG {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    set_default_disposition(sig);
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some((uid, gid, groups)) = &ids {
                if libc::setgroups(groups.len() as _, groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            #[cfg(target_os = "linux")]
            {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The supervisor died before the request took effect: nobody would stop us.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = parent;
            Ok(())
        });
    }
}

/// One more than the highest signal number on Linux (64 real-time signals included).
const NSIG: libc::c_int = 65;

/// Sets the disposition of `sig` to the default (`SIG_DFL`), including the two real-time
/// signals the C library reserves for itself (32 and 33), whose dispositions its
/// `sigaction` wrapper refuses to touch but which are inherited across `exec` like any other.
///
/// # Safety
/// Async-signal-safe: one system call on a stack buffer.
#[cfg(target_os = "linux")]
unsafe fn set_default_disposition(sig: libc::c_int) {
    // The kernel's `struct sigaction` is (handler, flags, [restorer,] mask): three or four
    // words, depending on the architecture. An all-zero buffer of four words means handler
    // SIG_DFL (0), no flags and an empty mask under either layout, so the raw
    // `rt_sigaction(2)` call needs no per-architecture definition. The last argument is the
    // size of the kernel's signal set (64 signals, 8 bytes).
    let default = [0u64; 4];
    libc::syscall(
        libc::SYS_rt_sigaction,
        sig as libc::c_long,
        default.as_ptr(),
        std::ptr::null_mut::<u64>(),
        8 as libc::c_long,
    );
}

#[cfg(not(target_os = "linux"))]
unsafe fn set_default_disposition(sig: libc::c_int) {
    libc::signal(sig, libc::SIG_DFL);
}

fn exit_info(status: Option<std::process::ExitStatus>) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    ExitInfo {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
    }
}

async fn read_lines<R: AsyncRead + Unpin>(
    reader: R,
    stream: Stream,
    tx: mpsc::Sender<Line>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Ok(mut t) = tail.lock() {
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(text.clone());
                }
                let line = Line {
                    stream,
                    text,
                    at: Instant::now(),
                };
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> AgentProcess {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        AgentProcess::spawn(cmd, "sh").unwrap()
    }

    async fn collect(p: &mut AgentProcess) -> (Vec<String>, ExitInfo) {
        let mut lines = Vec::new();
        for _ in 0..1000 {
            match p.next().await {
                Output::Line(l) => lines.push(l.text),
                Output::Exited(e) => return (lines, e),
            }
        }
        panic!("too many lines");
    }

    #[tokio::test]
    async fn assembles_lines_split_across_writes_and_splits_joined_ones() {
        let mut p = sh("printf 'Listen'; sleep 0.05; printf 'ing for Jobs\\nRunning job: a\\nJob a completed'; sleep 0.05; printf ' with result: Succeeded\\n'; echo err >&2; exit 3");
        let (mut lines, exit) = collect(&mut p).await;
        lines.sort();
        assert_eq!(
            lines,
            [
                "Job a completed with result: Succeeded",
                "Listening for Jobs",
                "Running job: a",
                "err"
            ]
        );
        assert_eq!(exit.code, Some(3));
        assert_eq!(p.tail().len(), 4);
    }

    /// The dispositions `nohup` or a script's background job would give `cml`: SIGINT and
    /// SIGQUIT ignored (and, for good measure, blocked in the spawning thread).
    fn ignore_like_nohup() -> impl Drop {
        struct Restore(libc::sighandler_t, libc::sighandler_t, libc::sigset_t);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: restores what `ignore_like_nohup` saw; plain signal(2) and
                // sigprocmask(2) calls on this process and thread.
                unsafe {
                    libc::signal(libc::SIGINT, self.0);
                    libc::signal(libc::SIGQUIT, self.1);
                    libc::sigprocmask(libc::SIG_SETMASK, &self.2, std::ptr::null_mut());
                }
            }
        }
        // SAFETY: as above; the old mask is written into `old`.
        unsafe {
            let mut block: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut block);
            libc::sigaddset(&mut block, libc::SIGINT);
            libc::sigaddset(&mut block, libc::SIGQUIT);
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigprocmask(libc::SIG_BLOCK, &block, &mut old);
            Restore(
                libc::signal(libc::SIGINT, libc::SIG_IGN),
                libc::signal(libc::SIGQUIT, libc::SIG_IGN),
                old,
            )
        }
    }

    /// `SigIgn` and `SigBlk` of process `pid`, from /proc.
    fn ignored_and_blocked(pid: i32) -> (String, String) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .trim()
                .to_string()
        };
        (field("SigIgn:"), field("SigBlk:"))
    }

    #[tokio::test]
    async fn an_agent_started_by_a_supervisor_ignoring_sigint_still_stops_gracefully() {
        let (mut graceful, mut plain) = {
            let _ignoring = ignore_like_nohup();
            // A shell cannot trap a signal that was ignored when it started.
            let graceful =
                sh("trap 'echo bye; exit 0' INT; echo ready; while true; do sleep 0.02; done");
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            (graceful, AgentProcess::spawn(cmd, "sleep").unwrap())
        };
        assert_eq!(
            ignored_and_blocked(plain.pid()),
            ("0000000000000000".into(), "0000000000000000".into()),
            "the agent starts with no signal ignored and none blocked"
        );
        plain.stop(Duration::from_secs(5)).await;
        let ready = tokio::time::timeout(Duration::from_secs(5), graceful.next()).await;
        assert!(
            matches!(&ready, Ok(Output::Line(l)) if l.text == "ready"),
            "{ready:?}"
        );
        let (exit, in_time) = graceful.stop(Duration::from_secs(5)).await;
        assert!(in_time, "SIGINT reached the agent's handler");
        assert_eq!(exit.code, Some(0));
        let (lines, _) = collect(&mut graceful).await;
        assert_eq!(lines, ["bye"]);
    }

    #[tokio::test]
    async fn stop_is_graceful_then_forced() {
        let mut p = sh("trap 'echo bye; exit 0' INT; while true; do sleep 0.02; done");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, in_time) = p.stop(Duration::from_secs(5)).await;
        assert!(in_time);

        let mut stubborn = sh("trap '' INT; while true; do sleep 0.02; done");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let (exit, in_time) = stubborn.stop(Duration::from_millis(300)).await;
        assert!(!in_time);
        assert_eq!(exit.signal, Some(libc::SIGKILL));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(stubborn.next().await, Output::Exited(_)));
    }
}
