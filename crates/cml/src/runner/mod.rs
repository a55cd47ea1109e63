//! `cml runner launch` on this machine: check the forge, register, supervise the agent,
//! deregister.
//!
//! Teardown contract: once `config.sh` has been started, every way out of [`launch`]
//! (idle timeout, single job done, signal, agent crash, our own error) deregisters the
//! runner exactly once. Nothing is registered before the settings, the token, the reuse
//! rules and the agent install have all been checked.

mod agent;
pub mod cleanup;
mod cloud;
mod forge;
pub(crate) mod machine;
mod registration;
mod signals;
mod supervise;

pub(crate) use signals::Signals;

use crate::exit::{ExitCode, Failure};
use crate::logging;
use crate::settings::RunnerSettings;
use agent::Agent;
use cml_core::cloud::Cloud;
use cml_core::reuse::{decide, ReuseDecision};
use cml_forge::{Forge, Registration};
use registration::Registered;

/// Runs the whole local lifecycle and returns the process exit code.
pub async fn launch(s: RunnerSettings) -> Result<ExitCode, Failure> {
    if let (Some(user), Some(Cloud::Kubernetes)) = (&s.job_user, s.cloud.as_ref().map(|c| c.cloud))
    {
        return Err(Failure::usage(anyhow::anyhow!(
            "--cloud-job-user={user} cannot be used with --cloud=kubernetes: the pod's container runs the agent, and only a machine's startup script creates that user\nhint: leave --cloud-job-user out (a runner pod holds no cloud credential, and its service-account token is not mounted unless --cloud-permission-set names one); nothing was created or registered"
        )));
    }
    note_inapplicable(&s);
    let mut signals = Signals::install().map_err(Failure::error)?;
    // The agent decides Bitbucket's runner-type label, so it is chosen before registering.
    let agent = match s.cloud {
        Some(_) => None,
        None => tokio::select! {
            a = Agent::choose(&s) => Some(a),
            sig = signals.recv() => return Ok(terminated_before_registration(sig)),
        },
    };
    // The job user is resolved before anything is registered. On a cloud machine the
    // startup script has created it; a launcher only passes the name on.
    let run_as = match (&s.job_user, &s.cloud) {
        (Some(user), None) => Some(job_user(user)?),
        _ => None,
    };
    let client = match (&s.gitlab_own_runner, &s.github_jit) {
        // On a cloud machine whose launcher created the GitLab runner: its own token only.
        (Some(own), _) => own_gitlab_runner(&s, own)?,
        // A pool's GitHub runner on a cloud machine: its JIT configuration only.
        (None, Some(jit)) if s.holds_only_jit() => jit_only_runner(&s, jit),
        _ => tokio::select! {
            r = forge::connect(&s, agent.as_ref().and_then(Agent::runtime_label)) => r.map_err(Failure::error)?,
            sig = signals.recv() => return Ok(terminated_before_registration(sig)),
        },
    };
    let forge = client.as_ref();
    logging::add_secrets(forge.secrets());
    logging::add_secrets(s.github_jit.iter().map(|j| j.config.expose().to_string()));
    tracing::info!(
        repo = %s.repo,
        name = %s.name,
        labels = %s.labels,
        idle_timeout = %s.idle_timeout,
        "launching a {} runner {}",
        s.driver,
        match (&s.cloud, &agent) {
            (Some(c), _) => format!("on {}: {} in {}", c.cloud, c.machine_type, c.region),
            (None, Some(a)) => format!("on this machine with {}", a.describe()),
            (None, None) => "on this machine".into(),
        }
    );

    // 1. The token works and the reuse rules allow launching (nothing registered yet). A
    // runner the launcher created exists by design: it is only checked when it is started.
    let runners = if s.gitlab_own_runner.is_some() || s.github_jit.is_some() {
        Vec::new()
    } else {
        tokio::select! {
        r = forge.runners() => r.map_err(|e| Failure::error(e.into()))?,
        sig = signals.recv() => return Ok(terminated_before_registration(sig)),
        }
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

    let (Some(agent), None) = (agent, &s.cloud) else {
        let spec = s
            .cloud
            .as_ref()
            .expect("a runner without an agent here is a cloud runner");
        return cloud::launch(&s, spec, forge, &mut signals).await;
    };

    // 2. The agent is installed (no registration yet, so a failed download leaves nothing).
    tokio::select! {
        r = agent.install(&s, run_as.as_ref().map(|u| u.uid)) => r.map_err(|e| Failure::error(e.into()))?,
        sig = signals.recv() => return Ok(terminated_before_registration(sig)),
    };

    // 3. Register and supervise; from here on every path deregisters. A pool's runner was
    // registered by the pool: its JIT configuration is its registration.
    let registration = {
        let registering = async {
            match &s.github_jit {
                Some(jit) => Ok(jit.registration()),
                None => forge.registration(&s.name, &s.labels).await,
            }
        };
        tokio::pin!(registering);
        tokio::select! {
            r = &mut registering => r.map_err(|e| Failure::error(e.into()))?,
            sig = signals.recv() => {
                return terminated_during_registration(&s, forge, registering, sig).await;
            }
        }
    };
    logging::add_secrets(forge.secrets());
    let mut registered = Registered::new(forge, &s.name, registration.runner_id());
    let outcome = registered_lifecycle(
        &s,
        forge,
        &agent,
        registration,
        run_as.as_ref(),
        &mut registered,
        &mut signals,
    )
    .await;
    agent.forget_credentials(&s);
    let deregistered = registered.deregister().await;
    let outcome = match outcome {
        Ok(ended) => {
            if let Some(job) = ended.interrupted_job {
                rerun_interrupted(&s, forge, &job).await;
            }
            Ok(ended.code)
        }
        Err(e) => Err(e),
    };
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

/// Start (GitHub: configure, then start) and supervise the agent. The caller deregisters
/// afterwards.
async fn registered_lifecycle(
    s: &RunnerSettings,
    forge: &dyn Forge,
    agent: &Agent,
    registration: Registration,
    run_as: Option<&cml_agent::RunAs>,
    registered: &mut Registered<'_>,
    signals: &mut Signals,
) -> Result<supervise::Ended, Failure> {
    let mut secrets = forge.secrets();
    secrets.extend(s.github_jit.iter().map(|j| j.config.expose().to_string()));
    let mut env = cml_agent::env::agent_env(&secrets);
    if let Some(user) = run_as {
        user.apply_env(&mut env);
    }
    let process = tokio::select! {
        r = agent.start(s, registration, &env, run_as) => r.map_err(|e| Failure::error(e.into()))?,
        sig = signals.recv() => {
            tracing::info!(status = "terminated", reason = "signal", "stopped by signal {sig} while configuring");
            return Ok(supervise::Ended { code: ExitCode::from_signal(sig), interrupted_job: None });
        }
    };
    registered.lookup_id().await;
    tracing::info!(name = %s.name, "runner registered in {}", forge.scope());
    release_startup_memory();
    supervise::supervise(s, process, registered, signals).await
}

/// Hands the heap pages freed by start-up (the command-line parser's tree, the agent's
/// download and configuration, the first TLS handshakes) back to the kernel before the
/// long, quiet supervision, so the supervisor's resident memory is what it uses.
fn release_startup_memory() {
    // SAFETY: `malloc_trim` only returns free memory at the heap's top and in free chunks to
    // the kernel; it takes no pointer, touches no live allocation and is thread-safe in glibc.
    // Other C libraries (musl) have no such call, so it is glibc-only.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How long an interrupted machine waits for the interrupted job's run to complete before
/// asking for the re-run: AWS gives two minutes' notice, part of which stopping took.
const RERUN_WAIT: std::time::Duration = std::time::Duration::from_secs(90);

/// Re-runs the work lost to an interruption, unless `--no-retry`; never fails the runner.
async fn rerun_interrupted(s: &RunnerSettings, forge: &dyn Forge, job: &str) {
    if s.no_retry {
        tracing::info!("--no-retry: the interrupted job is not re-run");
        return;
    }
    match forge.rerun_interrupted(&s.name, job, RERUN_WAIT).await {
        Ok(cml_forge::Rerun::Requested(what)) => {
            tracing::info!(status = "rerun", "re-run requested for {what}")
        }
        Ok(cml_forge::Rerun::AlreadyRerun(what)) => {
            tracing::info!("{what} was re-run already; not asking again")
        }
        Ok(cml_forge::Rerun::StillRunning(what)) => {
            tracing::warn!("{what} was still running when this machine had to go; it is not re-run")
        }
        Ok(cml_forge::Rerun::NothingToRerun) => {
            tracing::info!("the forge knows no job of this runner to re-run")
        }
        Ok(cml_forge::Rerun::Unsupported) => tracing::warn!(
            "re-running interrupted jobs is not available for {} yet",
            forge.scope()
        ),
        Err(e) => tracing::warn!("{e}"),
    }
}

/// Options CML accepts everywhere but that only act elsewhere: say so instead of silently
/// ignoring them.
fn note_inapplicable(s: &RunnerSettings) {
    if !s.docker_volumes.is_empty() && s.driver != cml_core::Driver::Gitlab {
        tracing::warn!(
            "--docker-volumes applies to GitLab's docker executor only; ignored for {}",
            s.driver
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

/// The cloud this machine runs on, as its launcher wrote it down (`aws` for machines
/// launched before it was written).
pub fn machine_cloud() -> String {
    std::env::var(crate::settings::vars::MACHINE_CLOUD)
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "aws".into())
}

/// On a cloud machine (`--self-terminate`), after the runner has ended on any path: wait
/// `--destroy-delay` so logs can be collected, then remove the machine — through the cloud
/// API with the machine's own identity (`cml_cloud::machine::Host`), else by an OS shutdown
/// (which removes an AWS machine, launched with shutdown behaviour `terminate`, and leaves a
/// machine of another cloud stopped, where `cml runner cleanup` finds it).
/// `credentials` are the cloud credentials the launcher put on the machine, if any (Azure's
/// `--cloud-azure-credentials-on-machine`).
pub async fn terminate_this_machine(
    delay: std::time::Duration,
    credentials: &[(String, cml_core::Secret)],
) {
    tracing::info!("removing this machine in {} s", delay.as_secs());
    tokio::time::sleep(delay).await;
    let cloud = machine_cloud();
    let credential = |k: &str| {
        credentials
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.expose().to_string())
            .or_else(|| std::env::var(k).ok())
    };
    let deleted = match cml_cloud::machine::host_for(&cloud, &credential) {
        Some(host) => host.delete_self().await,
        None => Err(cml_cloud::CloudError::NotInThisBuild { cloud }),
    };
    match deleted {
        Ok(id) => tracing::info!("deleting machine {id}"),
        Err(e) => {
            tracing::warn!("{e}; shutting down instead");
            tell_the_console(&format!(
                "cml: this machine could not delete itself ({e}); powering it off instead: `cml runner cleanup --cloud={}` finds it",
                machine_cloud()
            ));
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

/// Appends `message` to the machine's console ([`crate::settings::vars::MACHINE_CONSOLE`]), where
/// the cloud's console output (which `cml runner` prints on a launch timeout, and the
/// cloud's console shows) keeps it after the machine is off. Best effort: the log has it too.
fn tell_the_console(message: &str) {
    use std::io::Write;
    let path = std::env::var(crate::settings::vars::MACHINE_CONSOLE)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/dev/console".into());
    let written = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{}", crate::logging::redact(message)));
    if let Err(e) = written {
        tracing::debug!("cannot write to the console {path}: {e}");
    }
}

/// How long a registration interrupted by a signal may still take to finish: its request may
/// be at the forge, and what it creates must be removed.
const REGISTRATION_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A signal arrived while the forge was creating the runner (GitLab, Bitbucket): the request
/// may have created it already, or be about to. The registration is let finish (bounded by
/// [`REGISTRATION_GRACE`]) and the runner it created is deleted; when it did not finish, a
/// runner with our name (none existed before: the launcher checked) is looked for and deleted.
async fn terminated_during_registration(
    s: &RunnerSettings,
    forge: &dyn Forge,
    registering: std::pin::Pin<
        &mut impl std::future::Future<Output = Result<Registration, cml_forge::ForgeError>>,
    >,
    sig: i32,
) -> Result<ExitCode, Failure> {
    tracing::info!("received signal {sig} while registering; removing what was registered");
    let id = match tokio::time::timeout(REGISTRATION_GRACE, registering).await {
        Ok(Ok(registration)) => {
            logging::add_secrets(forge.secrets());
            registration.runner_id().map(str::to_string)
        }
        Ok(Err(e)) => {
            tracing::debug!("the interrupted registration failed: {e}");
            None
        }
        Err(_) => None,
    };
    // GitHub's registration only mints a token (`config.sh` registers): nothing to remove
    // (a JIT runner was registered by its pool, which removes it). Elsewhere no agent was
    // started: the runner is deleted whatever the forge says of it.
    if s.driver != cml_core::Driver::Github {
        Registered::new(forge, &s.name, id.as_deref())
            .deregister()
            .await
            .map_err(Failure::error)?;
    }
    tracing::info!(
        status = "terminated",
        reason = "signal",
        "stopped by signal {sig} while registering; nothing is left registered"
    );
    Ok(ExitCode::from_signal(sig))
}

/// The GitLab runner the launcher created for this machine, seen with its own token.
fn own_gitlab_runner(
    s: &RunnerSettings,
    own: &crate::settings::OwnRunner,
) -> Result<Box<dyn Forge>, Failure> {
    let crate::settings::Credential::Token { token, .. } = &s.credential else {
        return Err(Failure::usage(anyhow::anyhow!(
            "a GitLab runner created by the launcher needs its runner token"
        )));
    };
    logging::add_secrets([token.expose().to_string()]);
    let runner = cml_forge::gitlab::OwnRunner::new(
        &own.url,
        &own.id,
        &s.name,
        &s.labels,
        token.clone(),
        cml_forge::RetryPolicy::default(),
    )
    .map_err(|e| Failure::error(e.into()))?;
    tracing::info!(
        "GitLab runner {} (id {}) was created by the launcher; this machine holds only its runner token",
        s.name,
        own.id
    );
    Ok(Box::new(runner))
}

/// A pool's GitHub runner that holds only its JIT configuration (see
/// [`cml_forge::github::jit::JitOnly`]).
fn jit_only_runner(s: &RunnerSettings, jit: &crate::settings::GithubJit) -> Box<dyn Forge> {
    tracing::info!(
        "GitHub runner {} (id {}) was registered by its pool; this machine holds only its just-in-time configuration",
        s.name,
        jit.runner_id
    );
    Box::new(cml_forge::github::jit::JitOnly::new(
        &jit.runner_id,
        &s.name,
        jit.config.clone(),
    ))
}

/// The `--cloud-job-user` the agent will run as: an existing unprivileged user, and `cml`
/// running as root (only root can start a process as another user).
fn job_user(name: &str) -> Result<cml_agent::RunAs, Failure> {
    let user = cml_agent::RunAs::lookup(name).map_err(|e| Failure::usage(e.into()))?;
    // SAFETY: geteuid(2) reads this process's effective user id; it cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Failure::usage(anyhow::anyhow!(
            "--cloud-job-user={name}: cml runs as an unprivileged user and cannot start the agent as another one\nhint: run cml as root, or leave --cloud-job-user unset to run jobs as yourself; nothing was registered"
        )));
    }
    tracing::info!("the agent and its jobs run as {name} (uid {})", user.uid);
    Ok(user)
}

fn terminated_before_registration(sig: i32) -> ExitCode {
    tracing::info!(
        status = "terminated",
        reason = "signal",
        "stopped by signal {sig}; nothing was registered"
    );
    ExitCode::from_signal(sig)
}
