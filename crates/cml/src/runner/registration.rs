//! The registered runner, and its one deregistration.

use cml_forge::{Deleted, Forge};
use std::time::Duration;

/// How often deletion is retried while the forge still sees a job on a stopped agent.
const BUSY_RETRIES: u32 = 15;
const BUSY_RETRY_DELAY: Duration = Duration::from_secs(1);

/// A runner we registered (or may have: GitHub's `config.sh` was started).
///
/// Contract: [`Registered::deregister`] removes it from the forge at most once, however
/// often it is called; later calls return the first call's success at once.
pub struct Registered<'a> {
    forge: &'a dyn Forge,
    name: String,
    id: Option<String>,
    done: bool,
}

impl<'a> Registered<'a> {
    /// `id` is the runner's id when the forge created the runner (GitLab, Bitbucket); GitHub's
    /// is looked up by name once its agent has registered.
    pub fn new(forge: &'a dyn Forge, name: &str, id: Option<&str>) -> Registered<'a> {
        Registered {
            forge,
            name: name.to_string(),
            id: id.map(str::to_string),
            done: false,
        }
    }

    /// Finds the runner's id by name (after `config.sh`) unless it is known; failures are only
    /// logged, the lookup is tried again when deregistering.
    pub async fn lookup_id(&mut self) {
        if self.id.is_some() {
            return;
        }
        match self.forge.runners().await {
            Ok(rs) => {
                self.id = rs
                    .iter()
                    .find(|r| r.name == self.name)
                    .map(|r| r.id.clone())
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Whether the forge can tell that the runner is running a job; when it cannot, the
    /// runner may only be deleted after its agent stopped taking jobs.
    pub fn sees_running_jobs(&self) -> bool {
        self.forge.sees_running_jobs()
    }

    /// One attempt while the agent may still run: the forge deletes the runner only if it has
    /// no job, and `Busy` (it has one, and keeps it) is returned, not retried. On an error the
    /// runner may still exist and be handed jobs: its agent must be kept.
    pub async fn try_deregister(&mut self) -> anyhow::Result<Deleted> {
        self.attempt(false).await
    }

    /// One attempt; `agent_gone`: the agent has stopped, so the forge's "busy" is not asked.
    async fn attempt(&mut self, agent_gone: bool) -> anyhow::Result<Deleted> {
        if self.done {
            return Ok(Deleted::AlreadyGone);
        }
        if self.id.is_none() {
            let runners = self.forge.runners().await?;
            self.id = runners
                .iter()
                .find(|r| r.name == self.name)
                .map(|r| r.id.clone());
        }
        let Some(id) = self.id.clone() else {
            self.done = true;
            tracing::info!("runner {} is not registered (any more)", self.name);
            return Ok(Deleted::AlreadyGone);
        };
        let d = if agent_gone {
            self.forge.delete_stopped_runner(&id, &self.name).await?
        } else {
            self.forge.delete_runner(&id, &self.name).await?
        };
        match &d {
            Deleted::Removed => {
                self.done = true;
                tracing::info!(
                    "runner {} deregistered from {}",
                    self.name,
                    self.forge.scope()
                );
            }
            Deleted::AlreadyGone => {
                self.done = true;
                tracing::info!(
                    "runner {} was already removed from {}",
                    self.name,
                    self.forge.scope()
                );
            }
            Deleted::Busy(_) => {}
        }
        Ok(d)
    }

    /// Deregisters after the agent has stopped (or never started): no agent runs the
    /// runner's jobs any more, so it is deleted whatever the forge says of its jobs (GitLab
    /// lists a killed runner's job as running for up to an hour). A forge that refuses to
    /// delete a runner it still counts busy (GitHub, while the cancelled job is wound up) is
    /// asked again, bounded.
    pub async fn deregister(&mut self) -> anyhow::Result<()> {
        for attempt in 0..=BUSY_RETRIES {
            match self.attempt(true).await? {
                Deleted::Removed | Deleted::AlreadyGone => return Ok(()),
                Deleted::Busy(message) if attempt < BUSY_RETRIES => {
                    tracing::debug!("runner still busy in the forge ({message}); retrying");
                    tokio::time::sleep(BUSY_RETRY_DELAY).await;
                }
                Deleted::Busy(message) => {
                    anyhow::bail!(
                        "runner {} could not be deregistered from {}: {message}\nhint: remove it in the runner settings of {}",
                        self.name,
                        self.forge.scope(),
                        self.forge.scope()
                    )
                }
            }
        }
        Ok(())
    }
}
