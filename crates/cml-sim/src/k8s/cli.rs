//! `cml-sim k8s ...`: the simulated Kubernetes API server as a command.

use super::{K8sConfig, K8sSim, SimNode};

const USAGE: &str = "usage: cml-sim k8s serve [--port N] [--kubernetes 1.29|1.37] [--token TOKEN] \
[--gpu-node COUNT:LABEL]

Serves the simulated Kubernetes API on 127.0.0.1 (plain HTTP) until SIGINT/SIGTERM and prints
its URL (a kubeconfig's server). --token is the bearer token accepted (default sim-token).
The cluster has one 8-core 32 GiB node; --gpu-node adds an 8-core 64 GiB node with COUNT
nvidia.com/gpu devices and the label accelerator=LABEL.";

/// Runs `cml-sim k8s ARGS`; returns the exit code.
pub fn cli_main(args: Vec<String>) -> i32 {
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            0
        }
        _ => {
            eprintln!("{USAGE}");
            2
        }
    }
}

fn serve(args: &[String]) -> i32 {
    let a = crate::agent::Args::parse(args);
    let fail = |m: String| {
        eprintln!("cml-sim k8s: {m}");
        1
    };
    let port: u16 = match a.value("port").map(|p| p.parse()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => return fail("--port must be a port number".into()),
    };
    let mut cfg = K8sConfig::default();
    if let Some(v) = a.value("kubernetes") {
        cfg.kubernetes = v;
    }
    if let Some(t) = a.value("token") {
        cfg.tokens = vec![t];
    }
    if let Some(g) = a.value("gpu-node") {
        let Some((n, label)) = g.split_once(':') else {
            return fail(format!(
                "--gpu-node {g}: expected COUNT:LABEL (e.g. 1:nvidia-tesla-t4)"
            ));
        };
        let Ok(n) = n.parse::<u32>() else {
            return fail(format!("--gpu-node {g}: COUNT must be a number"));
        };
        let mut node = SimNode::new("gpu-node-1", 8.0, 64.0);
        node.gpu = n.into();
        node.labels.insert("accelerator".into(), label.into());
        cfg.nodes.push(node);
    }
    let sim = match K8sSim::start_on(cfg, port) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    println!("listening on {}", sim.url());
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return fail("cannot start a runtime".into());
    };
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    });
    0
}
