//! `cml runner --cloud=...`: the launcher side. Creates a machine whose startup script runs
//! `cml runner` there, waits until that runner is online in the forge, and exits.
//!
//! Teardown contract: from the first resource the cloud creates until the runner is online,
//! any failure, timeout or signal destroys everything this launch created (instance, spot
//! request, key pair) and removes the runner from the forge if it had registered, then
//! exits non-zero. Resources are recorded the moment they exist, and launch requests before
//! they are sent (see `cml_cloud::Created`), so even a launch interrupted inside a cloud
//! call, or whose answer never arrived, leaves nothing behind.
//!
//! Teardown issues every deletion at once (instances, spot requests, key pairs, the forge's
//! runner) and only then waits, so the work that matters is done within a second or so of
//! the first signal, well before a CI system's SIGKILL. It is bounded in time
//! (`CML_CLOUD_TEARDOWN_TIMEOUT`), and a further signal cuts its waiting short; either way
//! it names, with ids, whatever may be left.

use super::signals::Signals;
use crate::exit::{ExitCode, Failure};
use crate::progress::Progress;
use crate::settings::RunnerSettings;
use cml_cloud::{Created, Machine, MachineSpec, Provider, ProviderOptions, Resource};
use cml_core::cloud::{resource_tags, CloudSpec};
use cml_forge::Forge;
use std::time::{Duration, Instant};

/// How long teardown goes on after a further signal (GitHub Actions sends SIGKILL 2.5 s
/// after its SIGTERM).
const AFTER_SECOND_SIGNAL: Duration = Duration::from_secs(2);

/// How a launch failed after resources may exist.
enum LaunchError {
    Failed(anyhow::Error),
    /// The runner did not come online in time; the console output, when there is one.
    TimedOut(anyhow::Error, Option<String>),
    Signal(i32),
}

pub async fn launch(
    s: &RunnerSettings,
    spec: &CloudSpec,
    forge: &dyn Forge,
    signals: &mut Signals,
) -> Result<ExitCode, Failure> {
    let hands_over = super::machine::hands_over_runner_token(s);
    let spec_for = |own: Option<&super::machine::GitlabRunner>| MachineSpec {
        name: s.name.clone(),
        cloud: spec.clone(),
        user_data: super::machine::startup_script(s, own).render(),
        tags: resource_tags(
            &s.name,
            &s.repo.to_string(),
            &s.labels.to_string(),
            &spec.metadata,
        ),
        ssh_private_key: s.cloud_ssh_private.clone(),
        runner: cml_cloud::RunnerCommand {
            args: super::machine::machine_args(s),
            env: super::machine::machine_env(s, own),
            secrets: super::machine::machine_secrets(s, own),
            stop_grace: s.stop_grace,
        },
        max_lifetime: s.cloud_max_lifetime,
    };
    // Limits are checked before anything exists (a runner token the launcher is yet to create
    // is stood in for by one of the longest kind).
    let probe = hands_over.then(super::machine::GitlabRunner::stand_in);
    cml_cloud::check_spec(&spec_for(probe.as_ref())).map_err(|e| Failure::usage(e.into()))?;
    let options = ProviderOptions {
        poll_interval: Some(s.cloud_poll_interval),
        destroy_timeout: Some(s.cloud_teardown_timeout),
        credentials_on_machine: s.azure_machine_credentials.is_some(),
    };
    let provider = tokio::select! {
        p = cml_cloud::provider_for(spec, &options) => p.map_err(|e| Failure::error(e.into()))?,
        sig = signals.recv() => return Ok(ExitCode::from_signal(sig)),
    };
    let provider = provider.as_ref();
    // A GitLab runner without re-runs is created here, so the machine gets only its own
    // token; a failure or signal from here on tears down like any other.
    let own = if hands_over {
        let created = tokio::select! {
            r = create_gitlab_runner(s, forge) => r.map_err(LaunchError::Failed),
            sig = signals.recv() => Err(LaunchError::Signal(sig)),
        };
        match created {
            Ok(own) => Some(own),
            Err(e) => return Err(teardown(s, provider, &Created::new(), forge, e, signals).await),
        }
    } else {
        None
    };
    let machine_spec = spec_for(own.as_ref());
    let created = Created::new();
    let progress = Progress::start();
    let outcome = tokio::select! {
        r = create_and_register(s, provider, &machine_spec, &created, forge, &progress) => r,
        sig = signals.recv() => Err(LaunchError::Signal(sig)),
    };
    let machine = match outcome {
        Ok(machine) => machine,
        Err(e) => {
            progress.finish();
            return Err(teardown(s, provider, &created, forge, e, signals).await);
        }
    };
    progress.finish();
    tracing::info!(
        status = "launched",
        instance = %machine.id,
        machine_type = %machine.machine_type,
        region = %machine.region,
        spot = machine.spot,
        ip = machine.public_ip.as_deref().or(machine.private_ip.as_deref()).unwrap_or("none"),
        "runner {} is online on {} instance {} ({}, {}{}), address {}",
        s.name,
        provider.name(),
        machine.id,
        machine.machine_type,
        machine.region,
        if machine.spot { ", spot" } else { "" },
        machine.public_ip.as_deref().or(machine.private_ip.as_deref()).unwrap_or("none"),
    );
    Ok(ExitCode::Success)
}

/// Creates the machine's GitLab runner (see [`super::machine::hands_over_runner_token`]).
async fn create_gitlab_runner(
    s: &RunnerSettings,
    forge: &dyn Forge,
) -> anyhow::Result<super::machine::GitlabRunner> {
    let registration = forge.registration(&s.name, &s.labels).await?;
    crate::logging::add_secrets(forge.secrets());
    match registration {
        cml_forge::Registration::Gitlab { url, id, token } => {
            tracing::info!(
                "created GitLab runner {} (id {id}); the machine gets only its runner token",
                s.name
            );
            Ok(super::machine::GitlabRunner { url, id, token })
        }
        _ => anyhow::bail!(
            "{} answered a registration that is not GitLab's",
            forge.scope()
        ),
    }
}

async fn create_and_register(
    s: &RunnerSettings,
    provider: &dyn Provider,
    spec: &MachineSpec,
    created: &Created,
    forge: &dyn Forge,
    progress: &Progress,
) -> Result<Machine, LaunchError> {
    let deadline = Instant::now() + s.cloud_timeout;
    progress.phase("creating");
    // `--cloud-timeout` bounds the whole launch, a cloud API that hangs included.
    let machine = match tokio::time::timeout(s.cloud_timeout, provider.create(spec, created)).await
    {
        Ok(created) => created.map_err(|e| LaunchError::Failed(e.into()))?,
        Err(_) => {
            return Err(LaunchError::Failed(anyhow::anyhow!(
                "{} did not finish creating the machine within {} s\nhint: raise --cloud-timeout, or check the cloud's status",
                provider.name(),
                s.cloud_timeout.as_secs()
            )))
        }
    };
    progress.phase("booting");
    let machine = provider
        .wait_running(&machine, deadline.saturating_duration_since(Instant::now()))
        .await
        .map_err(|e| LaunchError::Failed(e.into()))?;
    // What is only read at launch (a key pair) goes now, so that nothing of this runner but
    // the machine (which removes itself) outlives the launch.
    let launch_only = Created::new();
    for r in created.list() {
        if r.is_launch_only() {
            launch_only.push(r);
        }
    }
    if !launch_only.is_empty() {
        if let Err(e) = provider.destroy(&launch_only).await {
            tracing::warn!("{e}");
        }
        let still = launch_only.list();
        for r in created.list() {
            if r.is_launch_only() && !still.contains(&r) {
                created.remove(&r);
            }
        }
    }
    progress.phase("registering");
    loop {
        match forge.runners().await {
            Ok(rs) if rs.iter().any(|r| r.name == s.name && r.online) => return Ok(machine),
            Ok(_) => {}
            Err(e) if e.is_auth() => return Err(LaunchError::Failed(e.into())),
            Err(e) => tracing::warn!("{e}"),
        }
        if Instant::now() >= deadline {
            let console = provider.console_output(&machine).await.ok().flatten();
            return Err(LaunchError::TimedOut(
                anyhow::anyhow!(
                    "runner {} did not come online in {} within {} s\nhint: raise --cloud-timeout, or check the console output below and --cloud-startup-script",
                    s.name,
                    forge.scope(),
                    s.cloud_timeout.as_secs()
                ),
                console,
            ));
        }
        tokio::time::sleep(
            s.cloud_poll_interval
                .min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}

/// Destroys what was created and removes a half-registered runner; returns the failure to
/// report. Every deletion is issued at once; the whole is bounded by the teardown timeout,
/// and a further signal ends it [`AFTER_SECOND_SIGNAL`] later. Whatever may be left is
/// named with its id.
async fn teardown(
    s: &RunnerSettings,
    provider: &dyn Provider,
    created: &Created,
    forge: &dyn Forge,
    error: LaunchError,
    signals: &mut Signals,
) -> Failure {
    let started = Instant::now();
    let (failure, console) = match error {
        LaunchError::Failed(e) => (Failure::error(e), None),
        LaunchError::TimedOut(e, console) => (Failure::error(e), console),
        LaunchError::Signal(sig) => (
            Failure {
                code: ExitCode::from_signal(sig).code(),
                error: anyhow::anyhow!("stopped by signal {sig}"),
            },
            None,
        ),
    };
    if !created.is_empty() {
        let mut what = created
            .list()
            .iter()
            .map(Resource::to_string)
            .collect::<Vec<_>>();
        let unanswered = created
            .launches()
            .iter()
            .filter(|(_, answered)| !answered)
            .count();
        if unanswered > 0 {
            what.push(format!(
                "whatever {unanswered} unanswered launch request(s) made (looked up by their launch tag)"
            ));
        }
        tracing::info!("destroying what this launch created: {}", what.join(", "));
    }
    let cloud = async {
        if created.is_empty() {
            Ok(())
        } else {
            provider.destroy(created).await
        }
    };
    let both = async { tokio::join!(cloud, remove_runner(s, forge)) };
    tokio::pin!(both);
    // Bounded as a whole: the provider bounds its own part; the forge's calls are bounded
    // by this.
    let limit = tokio::time::sleep(s.cloud_teardown_timeout + Duration::from_secs(1));
    tokio::pin!(limit);
    let outcome = tokio::select! {
        r = &mut both => Some(r),
        () = &mut limit => None,
        sig = signals.recv() => {
            tracing::warn!("signal {sig} during teardown: stopping in {} s", AFTER_SECOND_SIGNAL.as_secs());
            tokio::select! {
                r = &mut both => Some(r),
                () = &mut limit => None,
                () = tokio::time::sleep(AFTER_SECOND_SIGNAL) => None,
            }
        }
    };
    let complete = match outcome {
        Some((cloud, runner)) => {
            if let Err(e) = &cloud {
                tracing::error!("{e}");
            }
            cloud.is_ok() && runner
        }
        None => {
            let left = left_over(created);
            if !left.is_empty() {
                tracing::error!(
                    "teardown stopped after {} s; what may be left:\n{}\nhint: run `cml runner cleanup {}` (with --delete to remove it); everything cml creates carries its owner tag",
                    started.elapsed().as_secs(),
                    left.join("\n"),
                    provider.cleanup_options()
                );
            }
            false
        }
    };
    if let Some(console) = console {
        tracing::error!("console output of the machine:\n{console}");
    }
    let mut failure = failure;
    failure.error = if complete {
        failure
            .error
            .context("everything this launch created was destroyed")
    } else {
        failure
            .error
            .context("teardown did not finish: what may be left is listed above")
    };
    failure
}

/// Removes this launch's runner from the forge if it registered; false when that failed.
async fn remove_runner(s: &RunnerSettings, forge: &dyn Forge) -> bool {
    let runners = match forge.runners().await {
        Ok(runners) => runners,
        Err(e) => {
            tracing::error!("{e}");
            return false;
        }
    };
    let mut ok = true;
    // Its machine is being destroyed with it, so whatever the forge says about a job, the agent
    // is gone: the busy guard would only leak the runner.
    for r in runners.iter().filter(|r| r.name == s.name) {
        if let Err(e) = forge.delete_stopped_runner(&r.id, &r.name).await {
            tracing::error!("{e}");
            ok = false;
        }
    }
    ok
}

/// What may still exist after an interrupted teardown, one indented line each.
fn left_over(created: &Created) -> Vec<String> {
    let mut lines: Vec<String> = created
        .left()
        .into_iter()
        .map(|l| format!("  - {l}"))
        .collect();
    lines.extend(created.launches().into_iter().map(|(tag, _)| {
        format!(
            "  - whatever the launch request tagged {}={tag} created",
            cml_cloud::LAUNCH_TAG
        )
    }));
    lines
}
