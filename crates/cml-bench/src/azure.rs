//! The `--cloud=azure` launcher's own overhead, against the simulated Azure Resource Manager
//! (in this process, on 127.0.0.1, its long-running operations moving every 50 ms) and the
//! GitHub simulator. As for AWS, the bench plays the machines: when a launcher reports its
//! machine requested, it starts a local `cml runner` of the same name, so the launcher sees
//! its runner online and exits.
//!
//! Figures: start → machine requested (the `booting` phase record, once the resource group,
//! network, NIC, VM and the machine's role exist), and start → exit of 10 launchers run in
//! parallel. Each launcher gets its own client-credentials token.

use cml_sim::azure::{AzureConfig, AzureSim};
use cml_sim::{SimConfig, SimServer, DEFAULT_PAT};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LAUNCHERS: usize = 10;
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT_SECRET: &str = "bench-client-secret";

pub fn launcher(cml: &Path, sim_exe: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let az = AzureSim::start(AzureConfig {
        operation_step: Duration::from_millis(50),
        ..AzureConfig::default()
    })
    .expect("the Resource Manager simulator starts");
    az.add_client(CLIENT_ID, CLIENT_SECRET);
    let sim = SimServer::start(SimConfig::new(sim_exe)).expect("simulator starts");

    let (tx, rx) = mpsc::channel::<(usize, Instant)>();
    let mut launchers: Vec<Child> = Vec::new();
    let t0 = Instant::now();
    for i in 0..LAUNCHERS {
        let mut child = Command::new(cml)
            .args([
                "runner",
                "--driver=github",
                "--cloud=azure",
                "--cloud-region=us-west",
                "--cloud-type=m",
            ])
            .arg(format!("--name=bench-az-{i}"))
            .arg(format!("--repo={}/octo/bench", sim.url()))
            .arg(format!("--token={DEFAULT_PAT}"))
            .env("HOME", tmp.path())
            .env("AZURE_CLIENT_ID", CLIENT_ID)
            .env("AZURE_CLIENT_SECRET", CLIENT_SECRET)
            .env("AZURE_TENANT_ID", az.tenant())
            .env("AZURE_SUBSCRIPTION_ID", az.subscription())
            .env("AZURE_AUTHORITY_HOST", az.url())
            .env("CML_AZURE_RESOURCE_MANAGER_URL", az.url())
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
                    &sim,
                    tmp.path(),
                    sim_exe,
                    &format!("bench-az-{i}"),
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
        println!("Azure launcher: {why}");
        return;
    }
    let mut req: Vec<Duration> = requested.into_iter().flatten().collect();
    req.sort();
    let all_done = exited.iter().all(Option::is_some);
    let slowest = exited.into_iter().flatten().max().unwrap_or_default();
    if req.is_empty() || !all_done {
        println!("Azure launcher: did not complete within 120 s");
        return;
    }
    let requests = az.requests().len();
    println!(
        "Azure launcher vs simulated Resource Manager, {LAUNCHERS} in parallel: start -> machine requested median {:.0} ms, max {:.0} ms; start -> exit of all {LAUNCHERS} (runners online) {:.0} ms; {requests} API requests, {} token grants",
        crate::ms(req[req.len() / 2]),
        crate::ms(req[req.len() - 1]),
        crate::ms(slowest),
        az.token_grants()
    );
}
