//! The `--cloud=kubernetes` launcher's own overhead, against the simulated Kubernetes API
//! server (in this process, on 127.0.0.1, pods scheduled and started 50 ms apart) and the
//! GitHub simulator. As for the other clouds, the bench plays the pods: when a launcher
//! reports its Job created, it starts a local `cml runner` of the same name, so the launcher
//! sees its runner online and exits.
//!
//! Figures: start → Job and Secret created (the `booting` phase record), and start → exit of
//! 10 launchers run in parallel, each reading the kubeconfig from `KUBERNETES_CONFIGURATION`.

use crate::launches::LAUNCHERS;
use cml_sim::k8s::{K8sConfig, K8sSim, SimNode};
use cml_sim::{SimConfig, SimServer};
use std::path::Path;
use std::time::Duration;

pub fn launcher(cml: &Path, sim_exe: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let k8s = K8sSim::start(K8sConfig {
        schedule_delay: Duration::from_millis(50),
        // Room for ten `m` pods (8 cores, 32 GiB each).
        nodes: vec![SimNode::new("node-1", 96.0, 384.0)],
        ..K8sConfig::default()
    })
    .expect("the Kubernetes simulator starts");
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: sim\nclusters:\n- name: sim\n  cluster:\n    server: {}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: ci\nusers:\n- name: ci\n  user:\n    token: sim-token\n",
        k8s.url()
    );
    let sim = SimServer::start(SimConfig::new(sim_exe)).expect("simulator starts");
    let figures = match crate::launches::parallel(
        cml,
        sim_exe,
        &sim,
        tmp.path(),
        &["--cloud=kubernetes"],
        &[("KUBERNETES_CONFIGURATION", kubeconfig)],
        "bench-k8s",
    ) {
        Ok(f) => f,
        Err(why) => {
            println!("Kubernetes launcher: {why}");
            return;
        }
    };
    let req = &figures.requested;
    let requests = k8s.requests().len();
    println!(
        "Kubernetes launcher vs simulated API server, {LAUNCHERS} in parallel: start -> Job created median {:.0} ms, max {:.0} ms; start -> exit of all {LAUNCHERS} (runners online) {:.0} ms; {requests} API requests",
        crate::ms(req[req.len() / 2]),
        crate::ms(req[req.len() - 1]),
        crate::ms(figures.slowest),
    );
}
