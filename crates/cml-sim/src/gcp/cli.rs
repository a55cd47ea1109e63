//! `cml-sim gcp ...`: the simulated Compute Engine as a command.

use super::{GcpConfig, GcpSim, SCOPE_CLOUD_PLATFORM};

const USAGE: &str = "usage: cml-sim gcp serve [--port N] [--project ID] \
[--service-account EMAIL [--public-key PEM_FILE] [--key-id ID] [--token TOKEN]]

Serves the simulated Compute Engine API on 127.0.0.1 until SIGINT/SIGTERM, and prints its
compute endpoint (for CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE) and token URI (a key file's
token_uri). --public-key accepts JWTs of that service-account key at the token URI;
--token accepts TOKEN as a cloud-platform access token of the service account.";

/// Runs `cml-sim gcp ARGS`; returns the exit code.
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
        eprintln!("cml-sim gcp: {m}");
        1
    };
    let port: u16 = match a.value("port").map(|p| p.parse()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => return fail("--port must be a port number".into()),
    };
    let mut cfg = GcpConfig::default();
    if let Some(p) = a.value("project") {
        cfg.project = p;
    }
    let sim = match GcpSim::start_on(cfg, port) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let account = a.value("service-account");
    if let Some(email) = &account {
        if let Some(file) = a.value("public-key") {
            match std::fs::read_to_string(&file) {
                Ok(pem) => sim.add_service_account_key(
                    email,
                    &a.value("key-id").unwrap_or_else(|| "sim-key".into()),
                    &pem,
                ),
                Err(e) => return fail(format!("{file}: {e}")),
            }
        }
        if let Some(t) = a.value("token") {
            sim.add_token(&t, email, &[SCOPE_CLOUD_PLATFORM]);
        }
    } else if a.value("public-key").is_some() || a.value("token").is_some() {
        return fail("--public-key and --token need --service-account".into());
    }
    println!("listening on {}", sim.url());
    println!("compute endpoint {}", sim.compute_endpoint());
    println!("token uri {}", sim.token_uri());
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
