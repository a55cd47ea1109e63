//! Each forge's official agent, chosen, installed and started for the one supervisor.
//!
//! | forge | agent | registration |
//! |---|---|---|
//! | GitHub | `actions/runner` (`config.sh`, then `run.sh`) | the agent registers itself with a registration token |
//! | GitLab | `gitlab-runner run-single` | the API created the runner; the agent gets its runner token |
//! | Bitbucket | the Pipelines runner (Docker image, or the Linux Shell runner) | the API created the runner; the agent gets its OAuth client |
//!
//! Contract: [`Agent::install`] registers nothing, so a failed download leaves nothing in the
//! forge; [`Agent::start`] is only called with a registration, and the caller deregisters
//! whatever happens.

use crate::settings::{AgentMode, RunnerSettings};
use cml_agent::bitbucket::{BitbucketAgent, Runtime};
use cml_agent::github::{configure, run_command, ConfigureArgs};
use cml_agent::gitlab::{DownloadSource, Executor, RunSingle};
use cml_agent::install::{ensure_github_agent, Installed, ReleaseSource};
use cml_agent::{AgentProcess, RunAs};
use cml_core::{Driver, IdleTimeout};
use cml_forge::Registration;

/// The agent this runner will use.
#[derive(Debug)]
pub enum Agent {
    Github,
    Gitlab(Executor),
    Bitbucket(Runtime),
}

impl Agent {
    /// Chooses the agent, and GitLab's executor or the Bitbucket runner from this machine
    /// unless `CML_GITLAB_EXECUTOR` / `CML_BITBUCKET_RUNTIME` forces one. The probes of the
    /// machine (`nvidia-smi`, `docker info`) are bounded in time and do not block the
    /// runtime, so a signal meanwhile is served at once.
    pub async fn choose(s: &RunnerSettings) -> Agent {
        match (s.driver, s.forced_agent_mode) {
            (Driver::Github, _) => Agent::Github,
            (Driver::Gitlab, None) => Agent::Gitlab(cml_agent::gitlab::choose_executor().await),
            (Driver::Gitlab, Some(AgentMode::Shell)) => Agent::Gitlab(Executor::Shell),
            (Driver::Gitlab, Some(AgentMode::Docker)) => {
                // The image and GPU choice stay detected; only the container check is skipped.
                Agent::Gitlab(cml_agent::gitlab::docker_executor().await)
            }
            (Driver::Bitbucket, None) => {
                Agent::Bitbucket(cml_agent::bitbucket::choose_runtime().await)
            }
            (Driver::Bitbucket, Some(AgentMode::Shell)) => Agent::Bitbucket(Runtime::Shell),
            (Driver::Bitbucket, Some(AgentMode::Docker)) => Agent::Bitbucket(Runtime::Docker),
        }
    }

    /// Bitbucket's runner-type label (`linux`, `linux.shell`), part of the runner's labels.
    pub fn runtime_label(&self) -> Option<&'static str> {
        match self {
            Agent::Bitbucket(r) => Some(cml_agent::bitbucket::runtime_label(*r)),
            _ => None,
        }
    }

    /// Describes the choice for the log.
    pub fn describe(&self) -> String {
        match self {
            Agent::Github => "actions/runner".into(),
            Agent::Gitlab(Executor::Docker { image, gpu }) => format!(
                "gitlab-runner with the docker executor (image {image}{})",
                if *gpu { ", GPUs" } else { "" }
            ),
            Agent::Gitlab(Executor::Shell) => "gitlab-runner with the shell executor".into(),
            Agent::Bitbucket(Runtime::Docker) => "the Bitbucket Pipelines runner (Docker)".into(),
            Agent::Bitbucket(Runtime::Shell) => "the Bitbucket Pipelines Linux Shell runner".into(),
        }
    }

    /// Installs the agent into the work directory unless it is there already.
    /// `agent_user`: the uid the agent will run as, when not this process's (its files may be
    /// that user's, see [`cml_agent::install::check_install`]).
    pub async fn install(
        &self,
        s: &RunnerSettings,
        agent_user: Option<u32>,
    ) -> Result<(), cml_agent::AgentError> {
        let installed = match self {
            Agent::Github => {
                let source = ReleaseSource {
                    api: s.github_runner_releases.clone(),
                    version: s.github_runner_version.clone(),
                };
                ensure_github_agent(&s.workdir, &source, agent_user).await?
            }
            Agent::Gitlab(_) => {
                let source = DownloadSource {
                    base: s.gitlab_runner_download.clone(),
                    version: s.gitlab_runner_version.clone(),
                };
                cml_agent::gitlab::ensure_gitlab_runner(&s.workdir, &source, agent_user).await?
            }
            Agent::Bitbucket(Runtime::Docker) => return Ok(()),
            Agent::Bitbucket(Runtime::Shell) => {
                let source = cml_agent::bitbucket::ShellRunnerSource {
                    url: s.bitbucket_runner_url.clone(),
                    sha256: s.bitbucket_runner_sha256.clone(),
                };
                cml_agent::bitbucket::ensure_shell_runner(&s.workdir, &source, agent_user).await?
            }
        };
        match installed {
            Installed::Existing => tracing::info!(
                "using the agent already installed in {}",
                s.workdir.display()
            ),
            Installed::Downloaded { version } => {
                tracing::info!(
                    "installed {} {version} in {}",
                    self.describe(),
                    s.workdir.display()
                )
            }
        }
        Ok(())
    }

    /// Removes what [`Agent::start`] left for the agent only (GitLab's runner configuration,
    /// which holds its token), once the agent has ended.
    pub fn forget_credentials(&self, s: &RunnerSettings) {
        match self {
            Agent::Gitlab(_) => cml_agent::gitlab::remove_config(&s.workdir),
            Agent::Github if s.github_jit.is_some() => cml_agent::github::remove_config(&s.workdir),
            _ => {}
        }
    }

    /// Starts the agent for `registration` with the filtered environment `env`, as `run_as`
    /// when given (the work directory is handed to that user first). GitHub's agent is
    /// configured (registered) first.
    pub async fn start(
        &self,
        s: &RunnerSettings,
        registration: Registration,
        env: &[(String, String)],
        run_as: Option<&RunAs>,
    ) -> Result<AgentProcess, cml_agent::AgentError> {
        let own = || match run_as {
            Some(user) => user.own(&s.workdir),
            None => Ok(()),
        };
        match (self, registration) {
            (Agent::Github, Registration::GithubToken { url, token }) => {
                let args = ConfigureArgs {
                    dir: s.workdir.clone(),
                    url,
                    token,
                    name: s.name.clone(),
                    labels: s.labels.clone(),
                    work: s.workdir.join("_work"),
                    ephemeral: s.single,
                };
                own()?;
                configure(&args, env, run_as).await?;
                AgentProcess::spawn_as(run_command(&s.workdir, env), "run.sh", run_as)
            }
            (Agent::Github, Registration::GithubJit { config, .. }) => {
                cml_agent::github::write_jit_config(&s.workdir, &config)?;
                own()?;
                AgentProcess::spawn_as(run_command(&s.workdir, env), "run.sh", run_as)
            }
            (Agent::Gitlab(executor), Registration::Gitlab { url, token, .. }) => {
                let args = RunSingle {
                    dir: s.workdir.clone(),
                    url,
                    token,
                    name: s.name.clone(),
                    executor: executor.clone(),
                    wait_timeout: match s.idle_timeout {
                        IdleTimeout::Never => None,
                        IdleTimeout::After(d) => Some(d),
                    },
                    single: s.single,
                    docker_volumes: s.docker_volumes.clone(),
                    builds_dir: s.workdir.join("builds"),
                };
                let cmd = cml_agent::gitlab::run_single_command(&args, env)?;
                own()?;
                AgentProcess::spawn_as(cmd, "gitlab-runner", run_as)
            }
            (
                Agent::Bitbucket(runtime),
                Registration::Bitbucket {
                    account_uuid,
                    repository_uuid,
                    runner_uuid,
                    oauth_client_id,
                    oauth_client_secret,
                },
            ) => {
                let a = BitbucketAgent {
                    dir: s.workdir.clone(),
                    runtime: *runtime,
                    account_uuid,
                    repository_uuid,
                    runner_uuid,
                    oauth_client_id,
                    oauth_client_secret,
                };
                let cmd = cml_agent::bitbucket::agent_command(&a, env);
                own()?;
                AgentProcess::spawn_as(cmd, "the Bitbucket runner", run_as)
            }
            (agent, registration) => Err(cml_agent::AgentError::Spawn {
                program: agent.describe(),
                cause: std::io::Error::other(format!(
                    "a {} registration does not fit this agent",
                    match registration {
                        Registration::GithubToken { .. } | Registration::GithubJit { .. } => {
                            "GitHub"
                        }
                        Registration::Gitlab { .. } => "GitLab",
                        Registration::Bitbucket { .. } => "Bitbucket",
                    }
                )),
            }),
        }
    }
}
