//! The `--cloud=gcp` launcher's own overhead, against the simulated Compute Engine (in this
//! process, on 127.0.0.1, its instances and operations moving every 50 ms) and the GitHub
//! simulator. As for AWS, the bench plays the machines: when a launcher reports its instance
//! requested, it starts a local `cml runner` of the same name, so the launcher sees its runner
//! online and exits.
//!
//! Figures: start → instance requested (the `booting` phase record, printed once the insert
//! operation is done), and start → exit of 10 launchers run in parallel. Each launcher signs
//! its own service-account JWT and exchanges it at the simulated token endpoint.

use crate::launches::LAUNCHERS;
use cml_sim::gcp::{GcpConfig, GcpSim};
use cml_sim::{SimConfig, SimServer};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

    let figures = match crate::launches::parallel(
        cml,
        sim_exe,
        &sim,
        tmp.path(),
        &["--cloud=gcp", "--cloud-region=us-west1-a"],
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS_DATA", key),
            (
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE",
                gcp.compute_endpoint(),
            ),
        ],
        "bench-gcp",
    ) {
        Ok(f) => f,
        Err(why) => {
            println!("GCP launcher: {why}");
            return;
        }
    };
    let req = &figures.requested;
    let inserts = gcp
        .requests()
        .iter()
        .filter(|r| r.method == "compute.instances.insert")
        .count();
    println!(
        "GCP launcher vs simulated Compute Engine, {LAUNCHERS} in parallel: start -> instance requested median {:.0} ms, max {:.0} ms; start -> exit of all {LAUNCHERS} (runners online) {:.0} ms; {inserts} inserts, {} token grants",
        crate::ms(req[req.len() / 2]),
        crate::ms(req[req.len() - 1]),
        crate::ms(figures.slowest),
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
