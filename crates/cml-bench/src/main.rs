//! `cml-bench`: prints the figures of the runner's performance targets.
//!
//! Usage: `cml-bench [--cml PATH] [--sim PATH] [--jobs N] [--only SECTIONS]` (defaults: the `cml` and `cml-sim`
//! binaries next to this one, 20 jobs). Build everything with `--release` first; see
//! `scripts/bench.sh`. Everything runs on 127.0.0.1 against the GitHub simulator.
//!
//! Figures:
//! - `cml runner --help`: wall time (min, median of 30) and peak RSS (from wait4's rusage);
//! - supervisor RSS while idle with an agent attached, and its peak over the whole run
//!   (`VmRSS`, `VmHWM` of /proc/PID/status);
//! - event latency: from the simulated agent writing a job-finished line (its own clock,
//!   taken right before the write) to the `job_ended` record's `time` in cml's log;
//! - idle exit: from the idle deadline (last `job_ended` + idle timeout) to the process exit,
//!   next to one API round trip to the simulator;
//! - the AWS launcher's own overhead against moto (see `aws.rs`), and the GCP launcher's
//!   against the simulated Compute Engine (see `gcp.rs`), and the Azure launcher's against the
//!   simulated Resource Manager (see `azure.rs`), and the Kubernetes launcher's against the
//!   simulated API server (see `kubernetes.rs`);
//! - `cml runner pool`: queued → started for a burst and for a warm runner, and the pool's
//!   own memory and CPU while idle (see `pool.rs`).

use cml_sim::{write_agent_scripts, SimConfig, SimServer, DEFAULT_PAT};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const IDLE_TIMEOUT_S: u64 = 3;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let here = std::env::current_exe().expect("own path");
    let cml = arg("--cml")
        .map(PathBuf::from)
        .unwrap_or_else(|| here.with_file_name("cml"));
    let sim = arg("--sim")
        .map(PathBuf::from)
        .unwrap_or_else(|| here.with_file_name("cml-sim"));
    let jobs: usize = arg("--jobs").and_then(|j| j.parse().ok()).unwrap_or(20);
    for p in [&cml, &sim] {
        assert!(
            p.exists(),
            "{} not found; build with `cargo build --release -p cml -p cml-sim -p cml-bench`",
            p.display()
        );
    }
    // `--only NAME[,NAME]`: only those sections (help, lifecycle, aws, gcp, azure,
    // kubernetes, pool).
    let only = arg("--only");
    let on = |section: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|s| s.trim() == section))
    };
    println!("cml binary: {} ({:.1} MiB)", cml.display(), file_mib(&cml));
    if on("help") {
        help(&cml);
    }
    if on("lifecycle") {
        lifecycle(&cml, &sim, jobs);
    }
    if on("aws") {
        aws::launcher(&cml, &sim);
    }
    if on("gcp") {
        gcp::launcher(&cml, &sim);
    }
    if on("azure") {
        azure::launcher(&cml, &sim);
    }
    if on("kubernetes") {
        kubernetes::launcher(&cml, &sim);
    }
    if on("pool") {
        pool::run(&cml, &sim);
    }
}

mod aws;
mod azure;
mod gcp;
mod kubernetes;
mod launches;
mod pool;

fn file_mib(p: &Path) -> f64 {
    std::fs::metadata(p)
        .map(|m| m.len() as f64 / 1048576.0)
        .unwrap_or(0.0)
}

/// Runs `cml runner --help` 30 times.
fn help(cml: &Path) {
    let mut walls = Vec::new();
    let mut peak_kib = 0i64;
    for _ in 0..30 {
        let start = Instant::now();
        // Reaped by wait4 below (which also gives the peak RSS), not by Child::wait.
        #[allow(clippy::zombie_processes)]
        let child = Command::new(cml)
            .args(["runner", "--help"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cml starts");
        let (code, rss_kib) = wait4(child.id() as i32);
        walls.push(start.elapsed());
        assert_eq!(code, 0, "cml runner --help failed");
        peak_kib = peak_kib.max(rss_kib);
    }
    walls.sort();
    println!(
        "cml runner --help: wall min {:.2} ms, median {:.2} ms (target <= 10 ms); peak RSS {:.1} MiB (CML 0.20.6: 330 ms, 76 MiB)",
        ms(walls[0]),
        ms(walls[walls.len() / 2]),
        peak_kib as f64 / 1024.0
    );
}

/// Waits for `pid` with wait4(2): exit code and peak RSS in KiB.
fn wait4(pid: i32) -> (i32, i64) {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills; zeroed is a valid initial value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child `pid`, writing into the two locals above.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

fn lifecycle(cml: &Path, sim_exe: &Path, jobs: usize) {
    let sim = SimServer::start(SimConfig::new(sim_exe)).expect("simulator starts");
    let tmp = tempfile::tempdir().unwrap();
    let workdir = tmp.path().join("agent");
    std::fs::create_dir_all(&workdir).unwrap();
    write_agent_scripts(&workdir, sim_exe).unwrap();
    let events = tmp.path().join("agent-events.jsonl");
    let mut child = Command::new(cml)
        .args([
            "runner",
            "--driver=github",
            "--name=bench",
            "--labels=bench",
        ])
        .arg(format!("--repo={}/octo/bench", sim.url()))
        .arg(format!("--token={DEFAULT_PAT}"))
        .arg(format!("--idle-timeout={IDLE_TIMEOUT_S}"))
        .arg("--workdir")
        .arg(&workdir)
        .env("HOME", tmp.path())
        .env("CML_SIM_AGENT_EVENTS_FILE", &events)
        // Its log records are on standard error.
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cml starts");
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<Value>();
    let out = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let wait_for = |status: &str| -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no `{status}` record within 30 s"));
            if v["status"] == status {
                return v;
            }
        }
    };
    wait_for("ready");
    std::thread::sleep(Duration::from_millis(1500));
    let (idle_rss, _) = proc_rss(pid);

    let mut ended = Vec::new();
    for i in 0..jobs {
        sim.queue_job("octo/bench", &format!("job-{i}"), &["bench"], "true");
        ended.push(wait_for("job_ended"));
    }
    let (_, peak_hwm) = proc_rss(pid);
    let rtt = api_round_trip(&sim.url());
    let status = child.wait().expect("cml exits");
    let exited_at = unix_nanos(SystemTime::now());
    assert!(status.success(), "cml exited with {status}");

    // Event latency: agent's write of "Job … completed" → cml's job_ended record.
    let agent_lines: Vec<i128> = std::fs::read_to_string(&events)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["line"]
                .as_str()
                .is_some_and(|s| s.contains("completed with result"))
        })
        .filter_map(|v| {
            v["unix_nanos"]
                .as_u64()
                .map(|n| n as i128)
                .or_else(|| v["unix_nanos"].as_f64().map(|f| f as i128))
        })
        .collect();
    let mut lat: Vec<f64> = ended
        .iter()
        .zip(&agent_lines)
        .map(|(rec, agent_ns)| (record_nanos(rec) - agent_ns) as f64 / 1e6)
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let last_end = record_nanos(ended.last().unwrap());
    let expiry = last_end + (IDLE_TIMEOUT_S as i128) * 1_000_000_000;
    println!(
        "supervisor RSS idle with an agent attached: {:.1} MiB; peak over the run: {:.1} MiB (target <= 10 MiB)",
        idle_rss as f64 / 1024.0,
        peak_hwm as f64 / 1024.0
    );
    if !lat.is_empty() {
        println!(
            "event latency (agent line -> job_ended record), {} jobs: median {:.2} ms, p95 {:.2} ms, max {:.2} ms (target <= 50 ms)",
            lat.len(),
            lat[lat.len() / 2],
            lat[(lat.len() * 95 / 100).min(lat.len() - 1)],
            lat[lat.len() - 1]
        );
    }
    println!(
        "exit after idle-timeout expiry: {:.1} ms (target <= 1 s + one API round trip; one round trip: {:.2} ms new connection, {:.2} ms reused)",
        (exited_at - expiry) as f64 / 1e6,
        ms(rtt.0),
        ms(rtt.1)
    );
    println!(
        "simulator: {} runners left, {} deregistration(s)",
        sim.runners().len(),
        sim.deletes().len()
    );
}

/// (VmRSS, VmHWM) in KiB.
pub(crate) fn proc_rss(pid: u32) -> (i64, i64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Round trips of `GET .../actions/runners`: (first, on a new connection; median of the rest).
fn api_round_trip(base: &str) -> (Duration, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let url = format!("{base}/api/v3/repos/octo/bench/actions/runners");
        let mut all = Vec::new();
        for _ in 0..11 {
            let start = Instant::now();
            let resp = c
                .get(&url)
                .bearer_auth(DEFAULT_PAT)
                .send()
                .await
                .expect("simulator answers");
            assert!(
                resp.status().is_success(),
                "simulator answered {}",
                resp.status()
            );
            let _ = resp.bytes().await;
            all.push(start.elapsed());
        }
        let first = all.remove(0);
        all.sort();
        (first, all[all.len() / 2])
    })
}

fn record_nanos(rec: &Value) -> i128 {
    let t = rec["time"].as_str().expect("record has a time");
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 time")
        .unix_timestamp_nanos()
}

fn unix_nanos(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
