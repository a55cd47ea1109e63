//! `cml runner launch` on this machine: check the forge, register, supervise the agent,
//! deregister.
//!
//! Teardown contract: once `config.sh` has been started, every way out of [`launch`]
//! (idle timeout, single job done, signal, agent crash, our own error) deregisters the
//! runner exactly once. Nothing is registered before the settings, the token, the reuse
//! rules and the agent install have all been checked.

mod cloud;
mod registration;
mod signals;
mod supervise;

use crate::exit::{ExitCode, Failure};
use crate::logging;
use crate::settings::{Credential, RunnerSettings};
use anyhow::Context;
use cml_agent::github::{configure, run_command, ConfigureArgs};
use cml_agent::install::{ensure_github_agent, Installed, ReleaseSource};
use cml_agent::AgentProcess;
use cml_core::cloud::Cloud;
use cml_core::reuse::{decide, ReuseDecision};
use cml_core::Driver;
use cml_forge::github::{AppAuth, GithubAuth, GithubClient};
use cml_forge::{Forge, Registration, RetryPolicy};
use registration::Registered;
use signals::Signals;

/// Runs the whole local lifecycle and returns the process exit code.
pub async fn launch(s: RunnerSettings) -> Result<ExitCode, Failure> {
    if let Some(cloud) = s.cloud.as_ref().filter(|c| c.cloud != Cloud::Aws) {
        return Err(Failure::usage(anyhow::anyhow!(
            "--cloud={} is not available in this build yet: only aws and runners on this machine are\nhint: nothing was created or registered",
            cloud.cloud
        )));
    }
    if s.driver != Driver::Github {
        return Err(Failure::usage(anyhow::anyhow!(
            "the {} driver is not available in this build yet: only GitHub is\nhint: nothing was registered",
            s.driver
        )));
    }
    note_inapplicable(&s);
    let mut signals = Signals::install().map_err(Failure::error)?;
    let forge = github_client(&s).map_err(Failure::error)?;
    logging::add_secrets(forge.secrets());
    tracing::info!(
        repo = %s.repo,
        name = %s.name,
        labels = %s.labels,
        idle_timeout = %s.idle_timeout,
        "launching a runner {}",
        match &s.cloud {
            Some(c) => format!("on {}: {} in {}", c.cloud, c.machine_type, c.region),
            None => "on this machine".into(),
        }
    );

    // 1. The token works and the reuse rules allow launching (nothing registered yet).
    let runners = tokio::select! {
        r = forge.runners() => r.map_err(|e| Failure::error(e.into()))?,
        sig = signals.recv() => return Ok(terminated_before_registration(sig)),
    };
    match decide(&runners, &s.name, &s.labels, s.reuse, s.reuse_idle) {
        ReuseDecision::Launch => {}
        ReuseDecision::Reuse(message) => {
            tracing::info!(status = "terminated", reason = "reused", "{message}; not launching a new one");
            return Ok(ExitCode::Success);
        }
        ReuseDecision::NameTaken(r) => {
            return Err(Failure::error(anyhow::anyhow!(
                "a runner named {} is already registered in {} (id {}, {})\nhint: choose another --name, remove that runner, or pass --reuse to keep it",
                r.name,
                forge.scope(),
                r.id,
                if r.online { "online" } else { "offline" }
            )))
        }
    }

    if let Some(spec) = &s.cloud {
        return cloud::launch(&s, spec, &forge, &mut signals).await;
    }

    // 2. The agent is installed (no registration yet, so a failed download leaves nothing).
    let source = ReleaseSource {
        api: s.github_runner_releases.clone(),
        version: s.github_runner_version.clone(),
    };
    let installed = tokio::select! {
        r = ensure_github_agent(&s.workdir, &source) => r.map_err(|e| Failure::error(e.into()))?,
        sig = signals.recv() => return Ok(terminated_before_registration(sig)),
    };
    match installed {
        Installed::Existing => tracing::info!(
            "using the agent already installed in {}",
            s.workdir.display()
        ),
        Installed::Downloaded { version } => {
            tracing::info!(
                "installed actions/runner {version} in {}",
                s.workdir.display()
            )
        }
    }

    // 3. Register and supervise; from here on every path deregisters.
    let registration = tokio::select! {
        r = forge.registration(&s.name, &s.labels) => r.map_err(|e| Failure::error(e.into()))?,
        sig = signals.recv() => return Ok(terminated_before_registration(sig)),
    };
    logging::add_secrets(forge.secrets());
    let mut registered = Registered::new(&forge, &s.name);
    let outcome =
        registered_lifecycle(&s, &forge, registration, &mut registered, &mut signals).await;
    let deregistered = registered.deregister().await;
    match (outcome, deregistered) {
        (Ok(code), Ok(())) => Ok(code),
        (Ok(_), Err(e)) => Err(Failure::error(e)),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(d)) => {
            tracing::error!("{d:#}");
            Err(e)
        }
    }
}

/// Configure, start and supervise the agent. The caller deregisters afterwards.
async fn registered_lifecycle(
    s: &RunnerSettings,
    forge: &GithubClient,
    registration: Registration,
    registered: &mut Registered<'_>,
    signals: &mut Signals,
) -> Result<ExitCode, Failure> {
    let Registration::GithubToken { url, token } = registration else {
        return Err(Failure::error(anyhow::anyhow!("not a GitHub registration")));
    };
    let secrets = forge.secrets();
    let env = cml_agent::env::agent_env(&secrets);
    let args = ConfigureArgs {
        dir: s.workdir.clone(),
        url,
        token,
        name: s.name.clone(),
        labels: s.labels.clone(),
        work: s.workdir.join("_work"),
        ephemeral: s.single,
    };
    tokio::select! {
        r = configure(&args, &env) => r.map_err(|e| Failure::error(e.into()))?,
        sig = signals.recv() => {
            tracing::info!(status = "terminated", reason = "signal", "stopped by signal {sig} while configuring");
            return Ok(ExitCode::from_signal(sig));
        }
    }
    registered.lookup_id().await;
    tracing::info!(name = %s.name, "runner registered in {}", forge.scope());

    let agent = AgentProcess::spawn(run_command(&s.workdir, &env), "run.sh")
        .map_err(|e| Failure::error(e.into()))?;
    supervise::supervise(s, agent, registered, signals).await
}

/// Options CML accepts everywhere but that only act elsewhere: say so instead of silently
/// ignoring them.
fn note_inapplicable(s: &RunnerSettings) {
    if !s.docker_volumes.is_empty() {
        tracing::warn!(
            "--docker-volumes applies to GitLab's docker executor only; ignored for GitHub"
        );
    }
    if s.no_retry {
        tracing::debug!("--no-retry: a runner on this machine re-runs nothing anyway");
    }
    tracing::debug!(
        "--destroy-delay ({} s) applies to cloud machines only",
        s.destroy_delay.as_secs()
    );
}

/// On a cloud machine (`--self-terminate`), after the runner has ended on any path: wait
/// `--destroy-delay` so logs can be collected, then remove the machine — through the cloud
/// API with the machine's own identity, else by an OS shutdown (machines are launched with
/// shutdown behaviour `terminate`).
pub async fn terminate_this_machine(delay: std::time::Duration) {
    tracing::info!("removing this machine in {} s", delay.as_secs());
    tokio::time::sleep(delay).await;
    match cml_cloud::machine::terminate_self_on_aws().await {
        Ok(id) => tracing::info!("terminating instance {id}"),
        Err(e) => {
            tracing::warn!("{e}; shutting down instead");
            let status = std::process::Command::new("systemctl")
                .arg("poweroff")
                .status();
            if !status.is_ok_and(|s| s.success()) {
                let _ = std::process::Command::new("shutdown")
                    .args(["-h", "now"])
                    .status();
            }
        }
    }
}

fn terminated_before_registration(sig: i32) -> ExitCode {
    tracing::info!(
        status = "terminated",
        reason = "signal",
        "stopped by signal {sig}; nothing was registered"
    );
    ExitCode::from_signal(sig)
}

fn github_client(s: &RunnerSettings) -> anyhow::Result<GithubClient> {
    let auth = match &s.credential {
        Credential::Token { token, source } => GithubAuth::Token {
            token: token.clone(),
            source: source.clone(),
        },
        Credential::GithubApp { app_id, pem } => {
            logging::add_secrets([pem.expose().to_string()]);
            GithubAuth::App(AppAuth::new(app_id, pem.clone())?)
        }
    };
    GithubClient::new(&s.repo, auth, RetryPolicy::default()).context("creating the GitHub client")
}
