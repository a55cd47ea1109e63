//! `cml-sim azure ...`: the simulated Azure Resource Manager as a command.

use super::{AzureConfig, AzureSim};

const USAGE: &str = "usage: cml-sim azure serve [--port N] [--client-id ID --client-secret SECRET]

Serves the simulated Azure Resource Manager and Entra ID token endpoint on 127.0.0.1 until
SIGINT/SIGTERM, and prints its URL (for CML_AZURE_RESOURCE_MANAGER_URL and
AZURE_AUTHORITY_HOST), the subscription and the tenant. --client-id/--client-secret register
an app whose client-credentials grant succeeds.";

/// Runs `cml-sim azure ARGS`; returns the exit code.
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
        eprintln!("cml-sim azure: {m}");
        1
    };
    let port: u16 = match a.value("port").map(|p| p.parse()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => return fail("--port must be a port number".into()),
    };
    let sim = match AzureSim::start_on(AzureConfig::default(), port) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    match (a.value("client-id"), a.value("client-secret")) {
        (Some(id), Some(secret)) => {
            sim.add_client(&id, &secret);
        }
        (None, None) => {}
        _ => return fail("--client-id and --client-secret go together".into()),
    }
    println!("listening on {}", sim.url());
    println!("subscription {}", sim.subscription());
    println!("tenant {}", sim.tenant());
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
