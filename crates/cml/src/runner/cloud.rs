//! `cml runner --cloud=...`: the launcher side. Creates a machine whose startup script runs
//! `cml runner` there, waits until that runner is online in the forge, and exits.
//!
//! Teardown contract: from the first resource the cloud creates until the runner is online,
//! any failure, timeout or signal destroys everything this launch created (instance, spot
//! request, key pair) and removes the runner from the forge if it had registered, then
//! exits non-zero. Resources are recorded the moment they exist (see `cml_cloud::Created`),
//! so even a launch interrupted inside a cloud call leaves nothing behind.

use super::signals::Signals;
use crate::exit::{ExitCode, Failure};
use crate::progress::Progress;
use crate::settings::RunnerSettings;
use cml_cloud::aws::AwsProvider;
use cml_cloud::{Created, Machine, MachineSpec, Provider, Resource};
use cml_core::cloud::{resource_tags, CloudSpec};
use cml_forge::Forge;
use std::time::Instant;

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
    let provider = tokio::select! {
        p = AwsProvider::new(&spec.region) => p
            .map_err(|e| Failure::error(e.into()))?
            .with_poll_interval(s.cloud_poll_interval),
        sig = signals.recv() => return Ok(ExitCode::from_signal(sig)),
    };
    // A GitLab runner without re-runs is created here, so the machine gets only its own
    // token; a failure or signal from here on tears down like any other.
    let own = if super::machine::hands_over_runner_token(s) {
        tokio::select! {
            r = create_gitlab_runner(s, forge) => match r {
                Ok(own) => Some(own),
                Err(e) => return Err(teardown(s, &provider, &Created::new(), forge, LaunchError::Failed(e)).await),
            },
            sig = signals.recv() => return Err(teardown(s, &provider, &Created::new(), forge, LaunchError::Signal(sig)).await),
        }
    } else {
        None
    };
    let machine_spec = MachineSpec {
        name: s.name.clone(),
        cloud: spec.clone(),
        user_data: super::machine::startup_script(s, own.as_ref()).render(),
        tags: resource_tags(
            &s.name,
            &s.repo.to_string(),
            &s.labels.to_string(),
            &spec.metadata,
        ),
        ssh_private_key: s.cloud_ssh_private.clone(),
    };
    let created = Created::new();
    let progress = Progress::start();
    let outcome = tokio::select! {
        r = create_and_register(s, &provider, &machine_spec, &created, forge, &progress) => r,
        sig = signals.recv() => Err(LaunchError::Signal(sig)),
    };
    let machine = match outcome {
        Ok(machine) => machine,
        Err(e) => {
            progress.finish();
            return Err(teardown(s, &provider, &created, forge, e).await);
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
    provider: &AwsProvider,
    spec: &MachineSpec,
    created: &Created,
    forge: &dyn Forge,
    progress: &Progress,
) -> Result<Machine, LaunchError> {
    let deadline = Instant::now() + s.cloud_timeout;
    progress.phase("creating");
    let machine = provider
        .create(spec, created)
        .await
        .map_err(|e| LaunchError::Failed(e.into()))?;
    progress.phase("booting");
    let machine = provider
        .wait_running(&machine, deadline.saturating_duration_since(Instant::now()))
        .await
        .map_err(|e| LaunchError::Failed(e.into()))?;
    // The key pair is only read at launch: delete it now, so that nothing of this runner but
    // the instance (which removes itself) outlives the launch.
    let keys = Created::new();
    for r in created.list() {
        if matches!(r, Resource::KeyPair(_)) {
            keys.push(r);
        }
    }
    if let Err(e) = provider.destroy(&keys).await {
        tracing::warn!("{e}");
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
/// report. Interrupting this is not possible: signals are only listened to elsewhere.
async fn teardown(
    s: &RunnerSettings,
    provider: &AwsProvider,
    created: &Created,
    forge: &dyn Forge,
    error: LaunchError,
) -> Failure {
    let (failure, console) = match error {
        LaunchError::Failed(e) => (Failure::error(e), None),
        LaunchError::TimedOut(e, console) => (Failure::error(e), console),
        LaunchError::Signal(sig) => (
            Failure {
                code: ExitCode::from_signal(sig).code(),
                error: anyhow::anyhow!("stopped by signal {sig}; everything created was destroyed"),
            },
            None,
        ),
    };
    if let Some(console) = console {
        tracing::error!("console output of the machine:\n{console}");
    }
    if !created.is_empty() {
        tracing::info!("destroying what this launch created: {:?}", created.list());
        if let Err(e) = provider.destroy(created).await {
            tracing::error!("{e}");
        }
    }
    if let Ok(runners) = forge.runners().await {
        for r in runners.iter().filter(|r| r.name == s.name) {
            if let Err(e) = forge.delete_runner(&r.id, &r.name).await {
                tracing::error!("{e}");
            }
        }
    }
    failure
}
