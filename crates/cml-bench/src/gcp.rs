//! The `--cloud=gcp` launcher's own overhead, against the simulated Compute Engine (in this
//! process, on 127.0.0.1, its instances and operations moving every 50 ms) and the GitHub
//! simulator. As for AWS, the bench plays the machines: when a launcher reports its instance
//! requested, it starts a local `cml runner` of the same name, so the launcher sees its runner
//! online and exits.
//!
//! Figures: start → instance requested (the `booting` phase record, printed once the insert
//! operation is done), and start → exit of 10 launchers run in parallel. Each launcher signs
//! its own service-account JWT and exchanges it at the simulated token endpoint.

use cml_sim::gcp::{GcpConfig, GcpSim};
use cml_sim::{SimConfig, SimServer, DEFAULT_PAT};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LAUNCHERS: usize = 10;
const SA: &str = "cml-bench@cml-sim-project.iam.gserviceaccount.com";

pub fn launcher(cml: &Path, sim_exe: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let Some((private, public)) = rsa_keys(tmp.path()) else {
        println!("GCP launcher: skipped (the openssl CLI is needed to make a service-account key)");
        return;
    };
    let gcp = GcpSim::start(GcpConfig {
        status_step: Duration::from_millis(50),
        operation_step: Duration::from_millis(50),
        ..GcpConfig::default()
    })
    .expect("the Compute Engine simulator starts");
    gcp.add_service_account_key(SA, "bench-key", &public);
    let key = cml_sim::gcp::service_account_key_file(
        &gcp.project(),
        SA,
        "bench-key",
        &private,
        &gcp.token_uri(),
    )
    .to_string();
    let sim = SimServer::start(SimConfig::new(sim_exe)).expect("simulator starts");

    let (tx, rx) = mpsc::channel::<(usize, Instant)>();
    let mut launchers: Vec<Child> = Vec::new();
    let t0 = Instant::now();
    for i in 0..LAUNCHERS {
        let mut child = Command::new(cml)
            .args([
                "runner",
                "--driver=github",
                "--cloud=gcp",
                "--cloud-region=us-west1-a",
                "--cloud-type=m",
            ])
            .arg(format!("--name=bench-gcp-{i}"))
            .arg(format!("--repo={}/octo/bench", sim.url()))
            .arg(format!("--token={DEFAULT_PAT}"))
            .env("HOME", tmp.path())
            .env("GOOGLE_APPLICATION_CREDENTIALS_DATA", &key)
            .env(
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE",
                gcp.compute_endpoint(),
            )
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
                    &format!("bench-gcp-{i}"),
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
        println!("GCP launcher: {why}");
        return;
    }
    let mut req: Vec<Duration> = requested.into_iter().flatten().collect();
    req.sort();
    let all_done = exited.iter().all(Option::is_some);
    let slowest = exited.into_iter().flatten().max().unwrap_or_default();
    if req.is_empty() || !all_done {
        println!("GCP launcher: did not complete within 120 s");
        return;
    }
    let inserts = gcp
        .requests()
        .iter()
        .filter(|r| r.method == "compute.instances.insert")
        .count();
    println!(
        "GCP launcher vs simulated Compute Engine, {LAUNCHERS} in parallel: start -> instance requested median {:.0} ms, max {:.0} ms; start -> exit of all {LAUNCHERS} (runners online) {:.0} ms; {inserts} inserts, {} token grants",
        crate::ms(req[req.len() / 2]),
        crate::ms(req[req.len() - 1]),
        crate::ms(slowest),
        gcp.oauth_grants()
    );
}

/// An RSA key pair (private PKCS#8 PEM, public PEM) made with the `openssl` CLI.
fn rsa_keys(dir: &Path) -> Option<(String, String)> {
    let key = dir.join("bench-sa.pem");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .ok()?;
    if !made.status.success() {
        return None;
    }
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .ok()?;
    Some((
        std::fs::read_to_string(key).ok()?,
        String::from_utf8(public.stdout).ok()?,
    ))
}
