//! `run.sh [--jitconfig BLOB]`: the listener. Prints the ready line, polls for jobs, runs each
//! with `sh -c` in the work folder, and handles ephemeral clean-up, deletion and signals.
//!
//! Exit codes: 0 after a signal, an ephemeral job, or a server-side deletion; 1 on errors
//! (including the `CML_SIM_AGENT_CRASH_AFTER_READY` knob).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::args::Args;
use super::client::Client;
use super::files::{self, Settings};
use super::out::Out;
use crate::util::agent_ts;

const POLL_EVERY: Duration = Duration::from_millis(100);
const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

/// Which signal stopped the agent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Int,
    Term,
}

struct Listener<'a> {
    out: &'a Out,
    client: Client,
    settings: Settings,
    sigint: Signal,
    sigterm: Signal,
    ignore_signals: bool,
    connect_error: bool,
}

fn env_on(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn load_settings(root: &Path, args: &Args) -> Result<Settings, String> {
    let Some(blob) = args.value("jitconfig") else {
        return files::load(root);
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = |e: String| format!("Invalid JIT configuration: {e}");
    let data = b64.decode(blob.trim()).map_err(|e| bad(e.to_string()))?;
    let v: Value = serde_json::from_slice(&data).map_err(|e| bad(e.to_string()))?;
    // Each file's contents, base64-encoded, as the service sends them.
    let file = |name: &str| -> Result<Value, String> {
        let text = v[name].as_str().ok_or_else(|| bad(format!("no {name}")))?;
        let data = b64.decode(text).map_err(|e| bad(format!("{name}: {e}")))?;
        serde_json::from_slice(&data).map_err(|e| bad(format!("{name}: {e}")))
    };
    let (runner, creds) = (file(".runner")?, file(".credentials")?);
    files::save(root, &runner, &creds).map_err(|e| e.to_string())?;
    files::settings(&runner, &creds)
}

/// Entry point of `cml-sim agent run`.
pub async fn run(out: &Out, args: &Args) -> i32 {
    let root = super::root_dir();
    let settings = match load_settings(&root, args) {
        Ok(s) => s,
        Err(e) => {
            out.err(&format!("An error occurred: {e}"));
            return 1;
        }
    };
    let (sigint, sigterm) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            out.err("An error occurred: cannot install signal handlers");
            return 1;
        }
    };
    let client = match Client::new(&settings.server_url) {
        Ok(c) => c,
        Err(e) => {
            out.err(&format!("An error occurred: {e}"));
            return 1;
        }
    };
    let mut l = Listener {
        out,
        client,
        settings,
        sigint,
        sigterm,
        ignore_signals: env_on("CML_SIM_AGENT_IGNORE_SIGINT"),
        connect_error: false,
    };
    l.listen(&root).await
}

impl Listener<'_> {
    fn auth(&self) -> Value {
        json!({"id": self.settings.id, "credential": self.settings.credential})
    }

    /// Wait `d`, returning early with the signal that arrived (unless signals are ignored).
    async fn sleep_or_signal(&mut self, d: Duration) -> Option<Stop> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return None,
                _ = self.sigint.recv() => if !self.ignore_signals { return Some(Stop::Int) },
                _ = self.sigterm.recv() => if !self.ignore_signals { return Some(Stop::Term) },
            }
        }
    }

    fn connect_failed(&mut self, msg: &str) {
        if !self.connect_error {
            self.out.err(&format!(
                "{}: Runner connect error: {msg}. Retrying until reconnected.",
                agent_ts()
            ));
            self.connect_error = true;
        }
    }

    fn connected(&mut self) {
        if self.connect_error {
            self.out
                .line(&format!("{}: Runner reconnected.", agent_ts()));
            self.connect_error = false;
        }
    }

    async fn stop(&mut self, how: Stop) -> i32 {
        if how == Stop::Int {
            self.out.line("Exiting...");
        }
        let _ = self.client.call("end", &self.auth()).await;
        0
    }

    async fn listen(&mut self, root: &Path) -> i32 {
        self.out.line("");
        self.out.line("√ Connected to GitHub");
        self.out.line("");
        // Create the session.
        loop {
            match self.client.call("session", &self.auth()).await {
                Ok(a) if a.status == 200 => break,
                Ok(a) if a.status == 404 => {
                    self.out.err(
                        "The runner no longer exists on the server. Please reconfigure the runner.",
                    );
                    return 1;
                }
                Ok(a) if a.status == 401 => {
                    self.out.err("Failed to create a session. The runner registration has been deleted from the server, please re-configure. Runner registrations are automatically deleted for runners that have not connected to the service recently.");
                    return 1;
                }
                Ok(a) => self.connect_failed(&format!(
                    "Response status code does not indicate success: {}",
                    a.status
                )),
                Err(e) => self.connect_failed(&e),
            }
            if let Some(how) = self.sleep_or_signal(Duration::from_millis(500)).await {
                return self.stop(how).await;
            }
        }
        self.connected();
        self.out.line(&format!(
            "Current runner version: '{}'",
            super::AGENT_VERSION
        ));
        self.out
            .line(&format!("{}: Listening for Jobs", agent_ts()));
        if env_on("CML_SIM_AGENT_CRASH_AFTER_READY") {
            self.out.err("An error occurred: simulated agent crash");
            return 1;
        }
        loop {
            if let Some(how) = self.sleep_or_signal(POLL_EVERY).await {
                return self.stop(how).await;
            }
            let answer = match self.client.call("poll", &self.auth()).await {
                Ok(a) => a,
                Err(e) => {
                    self.connect_failed(&e);
                    continue;
                }
            };
            match answer.status {
                200 => self.connected(),
                404 => {
                    self.out.err("The runner no longer exists on the server. Cleaning up local configuration.");
                    files::remove(root, self.out);
                    return 0;
                }
                401 => {
                    self.out.err("Failed to create a session. The runner registration has been deleted from the server, please re-configure. Runner registrations are automatically deleted for runners that have not connected to the service recently.");
                    return 1;
                }
                s => {
                    self.connect_failed(&format!(
                        "Response status code does not indicate success: {s}"
                    ));
                    continue;
                }
            }
            let job = &answer.body["job"];
            if job.is_null() {
                continue;
            }
            let id = job["id"].as_u64().unwrap_or(0);
            let name = job["name"].as_str().unwrap_or("").to_string();
            let command = job["command"].as_str().unwrap_or("").to_string();
            let stopped = self.run_job(root, id, &name, &command).await;
            if let Some(how) = stopped {
                return self.stop(how).await;
            }
            if self.settings.ephemeral {
                files::remove(root, self.out);
                let _ = self.client.call("end", &self.auth()).await;
                return 0;
            }
        }
    }

    /// Run one job; returns the signal that interrupted it, if any.
    async fn run_job(&mut self, root: &Path, id: u64, name: &str, command: &str) -> Option<Stop> {
        self.out
            .line(&format!("{}: Running job: {name}", agent_ts()));
        let work = root.join(if self.settings.work.is_empty() {
            "_work"
        } else {
            &self.settings.work
        });
        let _ = std::fs::create_dir_all(&work);
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .current_dir(&work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("RUNNER_NAME", &self.settings.name);
        let mut output = String::new();
        let mut stopped = None;
        let conclusion = match cmd.spawn() {
            Err(e) => {
                output = format!("cannot start the job: {e}");
                "failure"
            }
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0) as i32;
                let mut so = BufReader::new(child.stdout.take().expect("piped")).lines();
                let mut se = BufReader::new(child.stderr.take().expect("piped")).lines();
                let (mut so_done, mut se_done) = (false, false);
                let mut exit = None;
                let mut drain_until: Option<tokio::time::Instant> = None;
                let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
                loop {
                    if exit.is_some() && so_done && se_done {
                        break;
                    }
                    tokio::select! {
                        l = so.next_line(), if !so_done => match l {
                            Ok(Some(l)) => { self.out.line(&l); output.push_str(&l); output.push('\n'); }
                            _ => so_done = true,
                        },
                        l = se.next_line(), if !se_done => match l {
                            Ok(Some(l)) => { self.out.line(&l); output.push_str(&l); output.push('\n'); }
                            _ => se_done = true,
                        },
                        st = child.wait(), if exit.is_none() => {
                            exit = Some(st.map(|s| s.success()).unwrap_or(false));
                            drain_until = Some(tokio::time::Instant::now() + Duration::from_millis(500));
                        }
                        _ = tokio::time::sleep_until(drain_until.unwrap_or_else(tokio::time::Instant::now)), if drain_until.is_some() => break,
                        _ = self.sigint.recv() => if !self.ignore_signals { stopped = Some(Stop::Int); break },
                        _ = self.sigterm.recv() => if !self.ignore_signals { stopped = Some(Stop::Term); break },
                        _ = beat.tick() => { let _ = self.client.call("poll", &self.auth()).await; }
                    }
                }
                if stopped.is_some() {
                    if pid > 0 {
                        // SAFETY: plain kill(2) on the job's own process group.
                        unsafe { libc::kill(-pid, libc::SIGKILL) };
                    }
                    let _ = child.wait().await;
                    "cancelled"
                } else if exit == Some(true) {
                    "success"
                } else {
                    "failure"
                }
            }
        };
        let body = json!({
            "id": self.settings.id, "credential": self.settings.credential,
            "job_id": id, "conclusion": conclusion, "output": output,
        });
        for _ in 0..20 {
            match self.client.call("complete", &body).await {
                Ok(a) if a.status < 500 => break,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let result = match conclusion {
            "success" => "Succeeded",
            "cancelled" => "Canceled",
            _ => "Failed",
        };
        self.out.line(&format!(
            "{}: Job {name} completed with result: {result}",
            agent_ts()
        ));
        stopped
    }
}
