//! Test harness: a simulated forge (in process: GitHub, GitLab and Bitbucket are served by the
//! same simulator), a pre-installed simulated agent, and the real `cml` binary run as a child
//! process whose JSON log lines (on its standard error) are collected.
//!
//! Every wait here is bounded in time; a test that hangs fails with what it saw.

#![allow(dead_code)]

pub mod azure;
pub mod gcp;
pub mod k8s;
pub mod machine;
pub mod moto;
pub mod netns;

use cml_sim::{write_agent_scripts, AnyJob, AnyRunner, SimConfig, SimServer, DEFAULT_PAT};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PAT: &str = DEFAULT_PAT;

pub fn cml_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cml"))
}

/// The simulator binary (the simulated agent), built by `cargo test --workspace` next to
/// `cml` because the `cml-sim` package has integration tests of its own.
pub fn sim_exe() -> PathBuf {
    let p = cml_exe().with_file_name("cml-sim");
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p cml-sim` first)",
        p.display()
    );
    p
}

/// Which forge a [`World`] plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Github,
    Gitlab,
    Bitbucket,
}

impl Kind {
    /// The `--driver` value.
    pub fn driver(self) -> &'static str {
        match self {
            Kind::Github => "github",
            Kind::Gitlab => "gitlab",
            Kind::Bitbucket => "bitbucket",
        }
    }

    /// The repository (GitLab: project) path the tests use.
    pub fn repo_path(self) -> &'static str {
        match self {
            Kind::Github => "octo/app",
            Kind::Gitlab => "group/app",
            Kind::Bitbucket => "octo/app",
        }
    }

    /// The simulator's admin token for this forge.
    pub fn token(self) -> &'static str {
        match self {
            Kind::Github => PAT,
            Kind::Gitlab => cml_sim::gitlab::DEFAULT_GITLAB_TOKEN,
            Kind::Bitbucket => cml_sim::bitbucket::DEFAULT_BITBUCKET_TOKEN,
        }
    }
}

/// A simulator plus a scratch directory with a HOME and a pre-installed agent.
pub struct World {
    pub sim: SimServer,
    pub tmp: tempfile::TempDir,
    pub kind: Kind,
}

impl World {
    pub fn new() -> World {
        World::with(|_| {})
    }

    pub fn with(configure: impl FnOnce(&mut SimConfig)) -> World {
        World::of_with(Kind::Github, configure)
    }

    /// A world playing `kind`.
    pub fn of(kind: Kind) -> World {
        World::of_with(kind, |_| {})
    }

    pub fn of_with(kind: Kind, configure: impl FnOnce(&mut SimConfig)) -> World {
        let mut cfg = SimConfig::new(sim_exe());
        configure(&mut cfg);
        let sim = SimServer::start(cfg).expect("simulator starts");
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("home")).unwrap();
        World { sim, tmp, kind }
    }

    pub fn repo_url(&self) -> String {
        format!("{}/{}", self.sim.url(), self.kind.repo_path())
    }

    /// The forge's runners.
    pub fn runners(&self) -> Vec<AnyRunner> {
        match self.kind {
            Kind::Github => self.sim.github_runners(),
            Kind::Gitlab => self.sim.gitlab_runners(),
            Kind::Bitbucket => self.sim.bitbucket_runners(),
        }
    }

    /// Names of the forge's runners.
    pub fn runner_names(&self) -> Vec<String> {
        self.runners().into_iter().map(|r| r.name).collect()
    }

    /// API deletions: (id, name).
    pub fn deletes(&self) -> Vec<(String, String)> {
        match self.kind {
            Kind::Github => self.sim.github_deletes(),
            Kind::Gitlab => self.sim.gitlab_deletes(),
            Kind::Bitbucket => self.sim.bitbucket_deletes(),
        }
    }

    /// Every runner ever registered, in order.
    pub fn registered_names(&self) -> Vec<String> {
        match self.kind {
            Kind::Github => self.sim.github_registered_names(),
            Kind::Gitlab => self.sim.gitlab_registered_names(),
            Kind::Bitbucket => self.sim.bitbucket_registered_names(),
        }
    }

    /// Queues a job in the test repository; returns its id.
    pub fn queue_job(&self, name: &str, labels: &[&str], command: &str) -> String {
        let repo = self.kind.repo_path();
        match self.kind {
            Kind::Github => self.sim.github_queue_job(repo, name, labels, command),
            Kind::Gitlab => self.sim.gitlab_queue_job(repo, name, labels, command),
            Kind::Bitbucket => self.sim.bitbucket_queue_job(repo, name, labels, command),
        }
    }

    pub fn job(&self, id: &str) -> AnyJob {
        match self.kind {
            Kind::Github => self.sim.github_job(id),
            Kind::Gitlab => self.sim.gitlab_job(id),
            Kind::Bitbucket => self.sim.bitbucket_job(id),
        }
        .unwrap_or_else(|| panic!("no job {id}"))
    }

    /// What the agent prints as the job of `job_started`/`job_ended` for job `id` named
    /// `name`: GitHub prints the name, GitLab the id, Bitbucket the step uuid.
    pub fn job_label(&self, id: &str, name: &str) -> String {
        match self.kind {
            Kind::Github => name.to_string(),
            Kind::Gitlab | Kind::Bitbucket => id.to_string(),
        }
    }

    /// Every secret the forge handed out.
    pub fn issued_secrets(&self) -> Vec<String> {
        match self.kind {
            Kind::Github => self.sim.github_issued_secrets(),
            Kind::Gitlab => self.sim.gitlab_issued_secrets(),
            Kind::Bitbucket => self.sim.bitbucket_issued_secrets(),
        }
    }

    /// The simulator's actions/runner releases API (for `CML_GITHUB_RUNNER_RELEASES_URL`).
    pub fn releases_url(&self) -> String {
        format!("{}/repos/actions/runner/releases", self.sim.url())
    }

    /// A work directory holding the simulated agent of this world's forge, pre-installed.
    pub fn workdir(&self, name: &str) -> PathBuf {
        let dir = self.empty_workdir(name);
        match self.kind {
            Kind::Github => write_agent_scripts(&dir, &sim_exe()).unwrap(),
            Kind::Gitlab => cml_sim::gitlab::write_gitlab_runner(&dir, &sim_exe()).unwrap(),
            Kind::Bitbucket => cml_sim::bitbucket::write_shell_runner(&dir, &sim_exe()).unwrap(),
        }
        dir
    }

    /// A work directory with no agent in it.
    pub fn empty_workdir(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join("agents").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `cml` with a clean environment (PATH, HOME) and the given arguments.
    pub fn cml(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(cml_exe());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.tmp.path().join("home"))
            // Not the checkout the tests run in: its `origin` is whatever the clone came from,
            // and commands infer the repository from the directory's `origin`.
            .current_dir(self.tmp.path())
            .env("CML_BITBUCKET_API_URL", self.sim.url())
            // The default outside containers; tests choosing the shell executor say so.
            .env("CML_GITLAB_EXECUTOR", "docker")
            // No Docker engine in tests: the Linux Shell runner, unless a test says otherwise.
            .env("CML_BITBUCKET_RUNTIME", "shell")
            .env(
                "CML_GITLAB_RUNNER_DOWNLOAD_URL",
                format!("{}/gitlab-runner-downloads", self.sim.url()),
            )
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `cml runner` for the repository, with a pre-installed agent in its own work
    /// directory, the admin token and `extra` arguments; the caller may add environment.
    pub fn runner_command(&self, name: &str, extra: &[&str]) -> Command {
        let workdir = self.workdir(name);
        let repo = self.repo_url();
        let driver = format!("--driver={}", self.kind.driver());
        let mut args = vec![
            "runner",
            &driver,
            "--repo",
            &repo,
            "--token",
            self.kind.token(),
            "--name",
            name,
            "--workdir",
            workdir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.cml(&args)
    }

    /// [`World::runner_command`] as the runner of a simulated cloud machine (`--self-terminate`):
    /// its metadata service is `imds`, no EC2 API answers (so it powers itself off), and
    /// `systemctl` is the stand-in of `tests/fixtures/machine`, recording into the returned
    /// machine root.
    pub fn machine_runner_command(
        &self,
        name: &str,
        extra: &[&str],
        imds: &cml_sim::ImdsServer,
    ) -> (Command, PathBuf) {
        let machine = self.tmp.path().join("machine");
        std::fs::create_dir_all(&machine).unwrap();
        let stubs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/machine");
        let mut args = vec!["--self-terminate", "--destroy-delay=0"];
        args.extend_from_slice(extra);
        let mut cmd = self.runner_command(name, &args);
        cmd.env(
            "PATH",
            format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap()),
        )
        .env("CML_MACHINE_ROOT", &machine)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_MAX_ATTEMPTS", "1");
        (cmd, machine)
    }

    /// Starts [`World::runner_command`].
    pub fn runner(&self, name: &str, extra: &[&str]) -> Running {
        Running::spawn(self.runner_command(name, extra))
    }

    /// Waits until `cond` holds for this world, bounded by `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&World) -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}; runners: {:?}",
            self.runners()
        );
    }

    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&SimServer) -> bool,
    ) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if cond(&self.sim) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}; runners: {:?}",
            self.runners()
        );
    }
}

/// A running `cml` process and what it printed.
pub struct Running {
    pub child: Child,
    records: Receiver<Value>,
    pub seen: Vec<Value>,
    pub text: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd.spawn().expect("cml starts");
        let (tx, rx) = channel();
        let text = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        // `cml` logs on standard error (as CML does); standard output should stay empty.
        let t1 = text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                t1.lock().unwrap().push(line.clone());
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let t2 = text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                t2.lock().unwrap().push(format!("[stdout] {line}"));
            }
        });
        Running {
            child,
            records: rx,
            seen: Vec::new(),
            text,
        }
    }

    /// Waits for a record whose `status` is `status`, returning it.
    pub fn wait_status(&mut self, status: &str, timeout: Duration) -> Value {
        if let Some(v) = self.seen.iter().find(|v| v["status"] == status) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.records.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["status"] == status {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "no `{status}` record within {timeout:?}; output so far:\n{}",
                    self.output()
                ),
            }
        }
    }

    /// Collects the records printed so far, without waiting.
    pub fn poll_records(&mut self) {
        while let Ok(v) = self.records.try_recv() {
            self.seen.push(v);
        }
    }

    /// Waits for the process to exit and returns its exit code (128+n for a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // let the reader threads finish
                std::thread::sleep(Duration::from_millis(100));
                while let Ok(v) = self.records.try_recv() {
                    self.seen.push(v);
                }
                use std::os::unix::process::ExitStatusExt;
                return status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "cml did not exit within {timeout:?}; output:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    pub fn output(&self) -> String {
        self.text.lock().unwrap().join("\n")
    }

    /// What the process printed on standard output so far.
    pub fn stdout(&self) -> Vec<String> {
        self.text
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("[stdout] ").map(String::from))
            .collect()
    }

    /// Every record with a `status` field, in order (after the process exited).
    pub fn statuses(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|v| v["status"].as_str().map(String::from))
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `root` and all its descendants, from /proc.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
        if let Some(ppid) = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        {
            parent_of.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

pub fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub const SECS: fn(u64) -> Duration = Duration::from_secs;
