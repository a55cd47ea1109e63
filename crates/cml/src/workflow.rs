//! `cml workflow rerun` (old name `cml rerun-workflow`): re-run a workflow run or pipeline,
//! by default the one this command runs in, as CML does.

use crate::cli::WorkflowRerunArgs;
use crate::exit::Failure;
use crate::forge::Client;
use crate::settings::{Env, ReportSettings};
use anyhow::anyhow;
use cml_core::Driver;
use std::time::Duration;

/// How long a cancelled GitHub run (GitLab pipeline) may take to stop before its re-run is
/// asked; GitHub refuses re-runs of a run in progress.
pub const CANCEL_WAIT: Duration = Duration::from_secs(10 * 60);

/// Where each forge's CI says which run this is.
fn ci_run_variable(driver: Driver) -> &'static str {
    match driver {
        Driver::Github => "GITHUB_RUN_ID",
        Driver::Gitlab => "CI_PIPELINE_ID",
        Driver::Bitbucket => "BITBUCKET_PIPELINE_UUID",
    }
}

/// The run to re-run: `--id` (or its variables), else the CI's own run.
pub fn run_id(args: &WorkflowRerunArgs, driver: Driver, env: &dyn Env) -> Result<String, Failure> {
    let ci = ci_run_variable(driver);
    args.id
        .clone()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| env.get(ci))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Failure::usage(anyhow!(
                "no run to re-run: --id was not given and {ci} is not set\nhint: pass --id, or run this inside the CI job whose run you mean"
            ))
        })
}

/// Runs `cml workflow rerun` of run `id`; prints nothing on stdout, logs what was asked.
pub async fn run(s: ReportSettings, id: String) -> Result<i32, Failure> {
    let forge = Client::connect(s.driver, &s.repo, &s.credential, &s.bitbucket_api)
        .await
        .map_err(Failure::error)?
        .into_workflows();
    let what = forge
        .rerun_workflow(&id, CANCEL_WAIT)
        .await
        .map_err(|e| Failure::error(e.into()))?;
    tracing::info!("re-run requested for {what} of {}", forge.scope());
    Ok(0)
}

/// `cml tensorboard connect` / `cml tensorboard-dev`: TensorBoard.dev was shut down, so this
/// says so and fails, as CML does.
pub fn tensorboard() -> Result<i32, Failure> {
    Err(Failure::error(anyhow!(
        "TensorBoard.dev has been shut down as of January 1, 2024\nhint: publish TensorBoard's output another way, e.g. `cml asset publish` of an exported plot"
    )))
}

/// `cml NAME ARGS...` for a command `cml` does not have: replaces this process with `cml-NAME`
/// from `PATH`, as CML runs its plugins. Returns only when that is impossible.
pub fn external(argv: &[String]) -> Failure {
    let Some((name, args)) = argv.split_first() else {
        return Failure::usage(anyhow!("no command given\nhint: see `cml --help`"));
    };
    let program = format!("cml-{name}");
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(&program))
            .find(|p| is_executable(p))
    });
    let Some(path) = found else {
        return Failure::usage(anyhow!(
            "unknown command {name:?}, and no program {program} on PATH\nhint: see `cml --help` for the commands"
        ));
    };
    use std::os::unix::process::CommandExt;
    // `exec` only returns on failure; on success the plugin owns this process (its exit code
    // is ours), as with CML's plugins.
    let e = std::process::Command::new(&path).args(args).exec();
    Failure::error(anyhow!("cannot run {}: {e}", path.display()))
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
