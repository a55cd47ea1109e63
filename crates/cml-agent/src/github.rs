//! GitHub's `actions/runner`: configuration with `config.sh` and the `run.sh` command.
//!
//! The registration token is handed to `config.sh` through `ACTIONS_RUNNER_INPUT_TOKEN`
//! (the runner reads any `--x` argument from `ACTIONS_RUNNER_INPUT_X`), never on its command
//! line, where every local user could read it in the process list. `run.sh` gets no token.
//!
//! A just-in-time configuration (a pool's runner) is not passed to `run.sh --jitconfig` (the
//! command line is public, and `ACTIONS_RUNNER_INPUT_JITCONFIG` would reach every job step):
//! its files are written into the agent directory, readable by their owner only, as the agent
//! itself writes them from `--jitconfig`, and `run.sh` starts as a configured runner.

use crate::{AgentError, RunAs};
use cml_core::{Labels, Secret};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

/// Files `config.sh` writes; removed before configuring so a stale registration from an
/// earlier run in the same work directory does not make `config.sh` refuse.
const LOCAL_CONFIG: &[&str] = &[".runner", ".credentials", ".credentials_rsaparams"];

/// Writes the files of the just-in-time configuration `config` into `dir` (see the module
/// documentation). The configuration is base64 of a JSON object mapping each file the agent
/// keeps (`.runner`, `.credentials`, `.credentials_rsaparams`) to the base64 of its contents;
/// any other name is refused, so a configuration cannot write outside those files. Errors
/// never quote the configuration.
pub fn write_jit_config(dir: &Path, config: &Secret) -> Result<(), AgentError> {
    use base64::Engine;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = |reason: &str| AgentError::JitConfig {
        reason: reason.to_string(),
    };
    let data = b64
        .decode(config.expose().trim())
        .map_err(|_| bad("it is not base64"))?;
    let files: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&data).map_err(|_| bad("it is not a JSON object of files"))?;
    if !files.contains_key(".runner") || !files.contains_key(".credentials") {
        return Err(bad("it lacks the .runner or .credentials file"));
    }
    let mut decoded = Vec::new();
    for (name, contents) in &files {
        if !LOCAL_CONFIG.contains(&name.as_str()) {
            return Err(AgentError::JitConfig {
                reason: format!("it names a file {name:?} the agent does not keep"),
            });
        }
        let bytes = b64
            .decode(contents.trim())
            .map_err(|_| AgentError::JitConfig {
                reason: format!("its {name} is not base64"),
            })?;
        decoded.push((name, bytes));
    }
    for f in LOCAL_CONFIG {
        let _ = std::fs::remove_file(dir.join(f));
    }
    for (name, bytes) in decoded {
        let path = dir.join(name);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(&bytes)
        };
        write().map_err(|cause| AgentError::JitConfigWrite {
            path: path.clone(),
            cause,
        })?;
    }
    Ok(())
}

/// Removes the files a configuration (`config.sh` or [`write_jit_config`]) left in `dir`.
pub fn remove_config(dir: &Path) {
    for f in LOCAL_CONFIG {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;

    fn blob(files: serde_json::Value) -> Secret {
        Secret::new(base64::engine::general_purpose::STANDARD.encode(files.to_string()))
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn a_jit_configuration_becomes_the_agents_files_readable_by_their_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".credentials_rsaparams"), "stale").unwrap();
        let config = blob(serde_json::json!({
            ".runner": b64(r#"{"agentId":7}"#),
            ".credentials": b64(r#"{"scheme":"OAuth"}"#),
        }));
        write_jit_config(dir.path(), &config).unwrap();
        let runner = std::fs::read_to_string(dir.path().join(".runner")).unwrap();
        assert_eq!(runner, r#"{"agentId":7}"#);
        for f in [".runner", ".credentials"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        assert!(!dir.path().join(".credentials_rsaparams").exists());
        remove_config(dir.path());
        assert!(!dir.path().join(".runner").exists());
    }

    #[test]
    fn a_bad_jit_configuration_is_refused_without_quoting_it_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (Secret::new("not base64 at all!".to_string()), "not base64"),
            (blob(serde_json::json!([1, 2])), "JSON object"),
            (
                blob(serde_json::json!({".runner": b64("{}")})),
                "lacks the .runner or .credentials",
            ),
            (
                blob(serde_json::json!({
                    ".runner": b64("{}"), ".credentials": b64("{}"), "../../etc/passwd": b64("x"),
                })),
                "does not keep",
            ),
            (
                blob(serde_json::json!({".runner": "%%%", ".credentials": b64("{}")})),
                "is not base64",
            ),
        ];
        for (config, want) in cases {
            let e = write_jit_config(dir.path(), &config)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want) && e.contains("hint:"), "{e}");
            assert!(!e.contains(config.expose()), "{e}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{e}");
        }
    }
}
