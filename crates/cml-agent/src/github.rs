//! GitHub's `actions/runner`: configuration with `config.sh` and the `run.sh` command.
//!
//! The registration token is handed to `config.sh` through `ACTIONS_RUNNER_INPUT_TOKEN`
//! (the runner reads any `--x` argument from `ACTIONS_RUNNER_INPUT_X`), never on its command
//! line, where every local user could read it in the process list. `run.sh` gets no token.

use crate::{AgentError, RunAs};
use cml_core::{Labels, Secret};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

/// Files `config.sh` writes; removed before configuring so a stale registration from an
/// earlier run in the same work directory does not make `config.sh` refuse.
const LOCAL_CONFIG: &[&str] = &[".runner", ".credentials", ".credentials_rsaparams"];

/// What `config.sh` needs.
#[derive(Debug, Clone)]
pub struct ConfigureArgs {
    /// The agent directory (holds `config.sh`).
    pub dir: PathBuf,
    /// Repository or organization web URL.
    pub url: String,
    pub token: Secret,
    pub name: String,
    pub labels: Labels,
    /// `--work`: where jobs check out code.
    pub work: PathBuf,
    /// `--ephemeral`: one job, then the runner unregisters itself (`--single`).
    pub ephemeral: bool,
}

/// Runs `config.sh --unattended ...` with `env` (plus the token) and waits for it; as
/// `run_as` when given (the agent's files must then be that user's, see [`RunAs::own`]).
pub async fn configure(
    args: &ConfigureArgs,
    env: &[(String, String)],
    run_as: Option<&RunAs>,
) -> Result<(), AgentError> {
    for f in LOCAL_CONFIG {
        let _ = std::fs::remove_file(args.dir.join(f));
    }
    let mut cmd = Command::new(args.dir.join("config.sh"));
    cmd.current_dir(&args.dir)
        .arg("--unattended")
        .arg("--url")
        .arg(&args.url)
        .arg("--name")
        .arg(&args.name)
        .arg("--labels")
        .arg(args.labels.to_string())
        .arg("--work")
        .arg(&args.work);
    if args.ephemeral {
        cmd.arg("--ephemeral");
    }
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUNNER_ALLOW_RUNASROOT", "1")
        .env("ACTIONS_RUNNER_INPUT_TOKEN", args.token.expose())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    crate::process::prepare(&mut cmd, run_as);
    let out = cmd.output().await.map_err(|cause| AgentError::Spawn {
        program: "config.sh".into(),
        cause,
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        tracing::debug!("config.sh: {line}");
    }
    if !out.status.success() {
        let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(10)..].join("\n");
        return Err(AgentError::Configure {
            code: out
                .status
                .code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "a signal".into()),
            tail,
        });
    }
    Ok(())
}

/// The `run.sh` command for an agent configured in `dir`, with `env` and nothing else.
pub fn run_command(dir: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(dir.join("run.sh"));
    cmd.current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUNNER_ALLOW_RUNASROOT", "1");
    cmd
}
