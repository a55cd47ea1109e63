//! The simulated `actions/runner` agent: `cml-sim agent config|run|remove …`.
//!
//! It behaves like the real `config.sh`/`run.sh` as far as a supervisor can observe: the same
//! console lines (see the `github-source-strings.md` fixture), `.runner`/`.credentials` files in
//! the agent directory, ephemeral clean-up, signal handling and exit codes. It talks to the
//! simulator through `/_sim/agent/…` routes instead of GitHub's broker.
//!
//! Knobs (environment variables read by the agent):
//! - `CML_SIM_AGENT_ROOT`: agent directory (set by the scripts; default: current directory).
//! - `CML_SIM_AGENT_IGNORE_SIGINT=1`: ignore SIGINT and SIGTERM.
//! - `CML_SIM_AGENT_CRASH_AFTER_READY=1`: exit 1 right after the ready line.
//! - `CML_SIM_AGENT_SPLIT_WRITES=1`: write each stdout line in 2–3 flushed fragments.
//! - `CML_SIM_AGENT_EVENTS_FILE=path`: append `{"line","unix_nanos"}` per printed line.

mod args;
mod client;
mod config;
pub mod files;
pub(crate) mod out;
mod run;

use std::path::PathBuf;

pub use args::Args;

/// Runner agent version the simulator reports and publishes.
pub const AGENT_VERSION: &str = "2.330.0";

/// Agent directory: `$CML_SIM_AGENT_ROOT` or the current directory.
pub fn root_dir() -> PathBuf {
    std::env::var_os("CML_SIM_AGENT_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Run `cml-sim agent <args>`; returns the process exit code.
pub fn main(args: Vec<String>) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("An error occurred: {e}");
            return 1;
        }
    };
    let out = out::Out::from_env();
    let (sub, rest) = match args.split_first() {
        Some((s, r)) => (s.as_str(), r),
        None => ("", &[][..]),
    };
    let parsed = Args::parse(rest);
    match sub {
        "config" => rt.block_on(config::configure(&out, &parsed)),
        "remove" => rt.block_on(config::remove(&out, &parsed)),
        "run" => rt.block_on(run::run(&out, &parsed)),
        _ => {
            out.err("Usage: cml-sim agent config|run|remove [options]");
            2
        }
    }
}
