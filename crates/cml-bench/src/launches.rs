//! Launchers run in parallel against a simulated cloud, the bench playing their machines:
//! when a launcher reports its machine requested (the `booting` phase record), a local
//! `cml runner` of the same name starts, as the machine's startup script would, so the
//! launcher sees its runner online and exits.

use cml_sim::{SimServer, DEFAULT_PAT};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Launchers run at once.
pub const LAUNCHERS: usize = 10;

/// What [`parallel`] measured.
pub struct Figures {
    /// Start → machine requested, sorted.
    pub requested: Vec<Duration>,
    /// Start → exit of the last launcher.
    pub slowest: Duration,
}

/// Runs [`LAUNCHERS`] `cml runner --cloud-type=m CLOUD_ARGS --name=PREFIX-i` for the GitHub
/// simulator `sim` with `env`, plays their machines, and stops everything it started. Errors
/// name a launcher that failed, or say that they did not all finish within 120 s.
pub fn parallel(
    cml: &Path,
    sim_exe: &Path,
    sim: &SimServer,
    tmp: &Path,
    cloud_args: &[&str],
    env: &[(&str, String)],
    prefix: &str,
) -> Result<Figures, String> {
    let (tx, rx) = mpsc::channel::<(usize, Instant)>();
    let mut launchers: Vec<Child> = Vec::new();
    let t0 = Instant::now();
    for i in 0..LAUNCHERS {
        let mut child = Command::new(cml)
            .args(["runner", "--driver=github", "--cloud-type=m"])
            .args(cloud_args)
            .arg(format!("--name={prefix}-{i}"))
            .arg(format!("--repo={}/octo/bench", sim.url()))
            .arg(format!("--token={DEFAULT_PAT}"))
            .env("HOME", tmp)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("CML_CLOUD_POLL_INTERVAL", "0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cml starts");
        let out = child.stderr.take().unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["phase"] == "booting" {
                        let _ = tx.send((i, Instant::now()));
                    }
                }
            }
        });
        launchers.push(child);
    }

    let mut machines: Vec<Child> = Vec::new();
    let mut requested = vec![None; LAUNCHERS];
    let mut exited = vec![None; LAUNCHERS];
    let mut started = [false; LAUNCHERS];
    let mut failed = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while exited.iter().any(Option::is_none) && Instant::now() < deadline && failed.is_none() {
        while let Ok((i, at)) = rx.try_recv() {
            requested[i] = Some(at - t0);
        }
        for (i, l) in launchers.iter_mut().enumerate() {
            if exited[i].is_none() {
                if let Ok(Some(status)) = l.try_wait() {
                    if !status.success() {
                        failed = Some(format!("launcher {i} failed: {status}"));
                    }
                    exited[i] = Some(t0.elapsed());
                }
            }
            if requested[i].is_some() && !started[i] {
                started[i] = true;
                machines.push(crate::aws::local_runner(
                    cml,
                    sim,
                    tmp,
                    sim_exe,
                    &format!("{prefix}-{i}"),
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for child in machines.iter_mut().chain(launchers.iter_mut()) {
        // SAFETY: signals our own child; no memory involved.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
    }
    for child in machines.iter_mut().chain(launchers.iter_mut()) {
        let _ = child.wait();
    }
    if let Some(why) = failed {
        return Err(why);
    }
    let mut requested: Vec<Duration> = requested.into_iter().flatten().collect();
    requested.sort();
    let all_done = exited.iter().all(Option::is_some);
    let slowest = exited.into_iter().flatten().max().unwrap_or_default();
    if requested.is_empty() || !all_done {
        return Err("did not complete within 120 s".into());
    }
    Ok(Figures { requested, slowest })
}
