//! The `--cloud=azure` launcher's own overhead, against the simulated Azure Resource Manager
//! (in this process, on 127.0.0.1, its long-running operations moving every 50 ms) and the
//! GitHub simulator. As for AWS, the bench plays the machines: when a launcher reports its
//! machine requested, it starts a local `cml runner` of the same name, so the launcher sees
//! its runner online and exits.
//!
//! Figures: start → machine requested (the `booting` phase record, once the resource group,
//! network, NIC, VM and the machine's role exist), and start → exit of 10 launchers run in
//! parallel. Each launcher gets its own client-credentials token.

use crate::launches::LAUNCHERS;
use cml_sim::azure::{AzureConfig, AzureSim};
use cml_sim::{SimConfig, SimServer};
use std::path::Path;
use std::time::Duration;

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

    let figures = match crate::launches::parallel(
        cml,
        sim_exe,
        &sim,
        tmp.path(),
        &["--cloud=azure", "--cloud-region=us-west"],
        &[
            ("AZURE_CLIENT_ID", CLIENT_ID.to_string()),
            ("AZURE_CLIENT_SECRET", CLIENT_SECRET.to_string()),
            ("AZURE_TENANT_ID", az.tenant()),
            ("AZURE_SUBSCRIPTION_ID", az.subscription()),
            ("AZURE_AUTHORITY_HOST", az.url()),
            ("CML_AZURE_RESOURCE_MANAGER_URL", az.url()),
        ],
        "bench-az",
    ) {
        Ok(f) => f,
        Err(why) => {
            println!("Azure launcher: {why}");
            return;
        }
    };
    let req = &figures.requested;
    let requests = az.requests().len();
    println!(
        "Azure launcher vs simulated Resource Manager, {LAUNCHERS} in parallel: start -> machine requested median {:.0} ms, max {:.0} ms; start -> exit of all {LAUNCHERS} (runners online) {:.0} ms; {requests} API requests, {} token grants",
        crate::ms(req[req.len() / 2]),
        crate::ms(req[req.len() - 1]),
        crate::ms(figures.slowest),
        az.token_grants()
    );
}
