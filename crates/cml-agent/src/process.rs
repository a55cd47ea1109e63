//! A running agent: its process group, its output as whole lines, and a graceful stop.

use crate::AgentError;
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
    /// Starts `cmd` in a new process group with piped stdout/stderr and no stdin.
    ///
    /// The caller sets the program, arguments, working directory and environment.
    pub fn spawn(mut cmd: Command, program: &str) -> Result<AgentProcess, AgentError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        #[cfg(target_os = "linux")]
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
        // which is async-signal-safe and touches no memory of the parent. It asks the kernel
        // to send SIGTERM to the agent if this supervisor dies without stopping it (SIGKILL,
        // crash), so an agent is not left running unsupervised.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
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
