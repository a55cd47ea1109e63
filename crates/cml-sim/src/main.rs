//! `cml-sim`: the GitHub API simulator and the simulated runner agent.
//!
//! - `cml-sim serve [--port 0] [--pat TOKEN]... [--app-id N --app-public-key FILE] [--tamper-download] [--git-root DIR]`
//! - `cml-sim install-agent DIR`
//! - `cml-sim queue-job --server URL --repo owner/repo --name NAME [--labels a,b] --command CMD`
//! - `cml-sim state --server URL`
//! - `cml-sim agent config|run|remove ...`
//! - `cml-sim gcp serve ...` (the simulated Compute Engine; `cml-sim gcp help`)
//! - `cml-sim azure serve ...` (the simulated Azure Resource Manager; `cml-sim azure help`)
//! - `cml-sim k8s serve ...` (the simulated Kubernetes API server; `cml-sim k8s help`)

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cml_sim::{AppConfig, Pat, SimConfig, SimServer};

#[derive(Parser)]
#[command(
    name = "cml-sim",
    about = "GitHub API simulator and simulated runner agent"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Admin personal access token (repeatable); default: the built-in one.
    #[arg(long)]
    pat: Vec<String>,
    /// Non-admin personal access token (repeatable): runner routes answer 403.
    #[arg(long)]
    readonly_pat: Vec<String>,
    #[arg(long, requires = "app_public_key")]
    app_id: Option<u64>,
    /// PEM file with the App's RSA public key.
    #[arg(long, requires = "app_id")]
    app_public_key: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    installation_id: u64,
    /// Lifetime of installation tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    installation_token_ttl: u64,
    /// Serve agent tarballs that fail checksum verification.
    #[arg(long)]
    tamper_download: bool,
    /// Serve the bare repositories under DIR (`DIR/<owner>/<repo>.git`) over Git's HTTP protocol.
    #[arg(long, value_name = "DIR")]
    git_root: Option<PathBuf>,
    /// A GitHub branch with required checks, where auto-merge can be scheduled (repeatable).
    #[arg(long)]
    protected_branch: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the simulated forges on 127.0.0.1 until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Write config.sh and run.sh (a pre-installed simulated agent) into DIR.
    InstallAgent { dir: PathBuf },
    /// Queue a one-job workflow run on a running simulator.
    QueueJob {
        #[arg(long)]
        server: String,
        #[arg(long)]
        repo: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        labels: String,
        #[arg(long)]
        command: String,
    },
    /// Print the simulator's state as JSON.
    State {
        #[arg(long)]
        server: String,
    },
    /// The simulated runner agent (what config.sh / run.sh execute).
    Agent {
        #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// GitLab: the simulated gitlab-runner and admin commands (`cml-sim gitlab help`).
    Gitlab {
        #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Bitbucket: the simulated Pipelines runner and admin commands (`cml-sim bitbucket help`).
    Bitbucket {
        #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Google Compute Engine: the simulated API (`cml-sim gcp help`).
    Gcp {
        #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Azure Resource Manager: the simulated API (`cml-sim azure help`).
    Azure {
        #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Kubernetes: the simulated API server (`cml-sim k8s help`).
    K8s {
        #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Agent { args } => cml_sim::agent::main(args),
        Cmd::Gitlab { args } => cml_sim::gitlab::cli_main(args),
        Cmd::Bitbucket { args } => cml_sim::bitbucket::cli_main(args),
        Cmd::Gcp { args } => cml_sim::gcp::cli_main(args),
        Cmd::Azure { args } => cml_sim::azure::cli_main(args),
        Cmd::K8s { args } => cml_sim::k8s::cli_main(args),
        Cmd::InstallAgent { dir } => {
            match exe().and_then(|e| cml_sim::write_agent_scripts(&dir, &e)) {
                Ok(()) => 0,
                Err(e) => fail(&e.to_string()),
            }
        }
        Cmd::Serve(args) => serve(args),
        Cmd::QueueJob {
            server,
            repo,
            name,
            labels,
            command,
        } => {
            let labels: Vec<&str> = labels
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let body = serde_json::json!({"repo": repo, "name": name, "labels": labels, "command": command});
            admin(&server, "/_sim/jobs", Some(body))
        }
        Cmd::State { server } => admin(&server, "/_sim/state", None),
    };
    std::process::exit(code);
}

fn exe() -> std::io::Result<PathBuf> {
    std::env::current_exe()?.canonicalize()
}

fn fail(msg: &str) -> i32 {
    eprintln!("cml-sim: {msg}");
    1
}

fn serve(args: ServeArgs) -> i32 {
    let ServeArgs {
        port,
        pat: pats,
        readonly_pat: readonly,
        app_id,
        app_public_key,
        installation_id,
        installation_token_ttl: ttl,
        tamper_download: tamper,
        git_root,
        protected_branch,
    } = args;
    let app = app_id.zip(app_public_key);
    let exe = match exe() {
        Ok(e) => e,
        Err(e) => return fail(&e.to_string()),
    };
    let mut cfg = SimConfig::new(exe);
    if !pats.is_empty() {
        cfg.pats = pats
            .into_iter()
            .map(|token| Pat { token, admin: true })
            .collect();
    }
    cfg.pats.extend(readonly.into_iter().map(|token| Pat {
        token,
        admin: false,
    }));
    if let Some((app_id, key)) = app {
        match std::fs::read_to_string(&key) {
            Ok(pem) => {
                cfg.app = Some(AppConfig {
                    app_id,
                    public_key_pem: pem,
                    installation_id,
                })
            }
            Err(e) => return fail(&format!("{}: {e}", key.display())),
        }
    }
    cfg.installation_token_ttl = Duration::from_secs(ttl);
    cfg.tamper_download = tamper;
    cfg.git_root = git_root;
    cfg.protected_branches = protected_branch;
    let server = match SimServer::start_on(cfg, port) {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    {
        let mut so = std::io::stdout().lock();
        let _ = writeln!(so, "listening on {}", server.url());
        let _ = so.flush();
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e.to_string()),
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
    drop(server);
    0
}

fn admin(server: &str, path: &str, body: Option<serde_json::Value>) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e.to_string()),
    };
    let url = format!("{}{path}", server.trim_end_matches('/'));
    rt.block_on(async move {
        let client = reqwest::Client::builder().no_proxy().build();
        let Ok(client) = client else {
            return fail("cannot build an HTTP client");
        };
        let req = match body {
            Some(b) => client.post(&url).json(&b),
            None => client.get(&url),
        };
        match req.send().await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                let text = resp.text().await.unwrap_or_default();
                let pretty = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| serde_json::to_string_pretty(&v).ok())
                    .unwrap_or(text);
                println!("{pretty}");
                if ok {
                    0
                } else {
                    1
                }
            }
            Err(e) => fail(&e.to_string()),
        }
    })
}
