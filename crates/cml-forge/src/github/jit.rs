//! A GitHub runner that holds only its just-in-time configuration: what a cloud machine of a
//! runner pool gets, so that no PAT or App key ever reaches it (the GitHub counterpart of
//! [`crate::gitlab::own::OwnRunner`]).
//!
//! A JIT configuration lets the agent run its one job and nothing else: it cannot list
//! runners, read jobs, or delete a runner. So:
//! - [`Forge::registration`] hands back the configuration; nothing is registered (the pool
//!   registered the runner when it made the configuration).
//! - [`Forge::delete_runner`] (while the agent runs) fails with [`ForgeError::JitOnly`]: a
//!   runner that might take a job at that moment must be removed by someone who can see its
//!   jobs. The pool does that for its idle runners (GitHub refuses to delete a busy one); the
//!   runner is kept meanwhile, so no job is ever lost to it.
//! - [`Forge::delete_stopped_runner`] (the agent has stopped) answers
//!   [`Deleted::AlreadyGone`]: an ephemeral runner unregisters itself after its job, a runner
//!   the pool removed is gone, and one whose agent stopped otherwise is offline, takes no job,
//!   and is removed by its pool or by `cml runner cleanup`.
//! - Interrupted jobs are re-run by GitHub for JIT runners of a scale set, not by the machine
//!   ([`Forge::rerun_interrupted`] answers [`Rerun::Unsupported`](crate::Rerun::Unsupported)).
//! - The configuration is a secret: never in `Debug`, errors or logs.

use async_trait::async_trait;
use cml_core::{Labels, RunnerInfo, Secret};

use crate::{Deleted, Forge, ForgeError, Registration};

/// A runner known only by its JIT configuration.
pub struct JitOnly {
    runner_id: String,
    name: String,
    config: Secret,
}

impl std::fmt::Debug for JitOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitOnly")
            .field("runner_id", &self.runner_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl JitOnly {
    /// Runner `runner_id` (named `name`) with its configuration `config`. No request is made,
    /// here or later.
    pub fn new(runner_id: &str, name: &str, config: Secret) -> JitOnly {
        JitOnly {
            runner_id: runner_id.to_string(),
            name: name.to_string(),
            config,
        }
    }
}

#[async_trait]
impl Forge for JitOnly {
    fn scope(&self) -> String {
        format!("GitHub (just-in-time runner {})", self.name)
    }

    /// Unknown to a JIT runner: only the error, so nothing is concluded from an empty list.
    async fn runners(&self) -> Result<Vec<RunnerInfo>, ForgeError> {
        Err(ForgeError::JitOnly {
            runner: self.name.clone(),
            operation: "list runners",
        })
    }

    async fn registration(&self, name: &str, _: &Labels) -> Result<Registration, ForgeError> {
        if name != self.name {
            return Err(ForgeError::JitOnly {
                runner: self.name.clone(),
                operation: "register a runner of another name",
            });
        }
        Ok(Registration::GithubJit {
            runner_id: self.runner_id.clone(),
            config: self.config.clone(),
        })
    }

    async fn delete_runner(&self, _: &str, _: &str) -> Result<Deleted, ForgeError> {
        Err(ForgeError::JitOnly {
            runner: self.name.clone(),
            operation: "remove a runner that may take a job",
        })
    }

    async fn delete_stopped_runner(&self, _: &str, _: &str) -> Result<Deleted, ForgeError> {
        Ok(Deleted::AlreadyGone)
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.config.expose().to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_hands_back_its_configuration_and_refuses_what_it_cannot_see() {
        let f = JitOnly::new(
            "42",
            "pool-abc123",
            Secret::new("eyJqaXQiOnRydWV9".to_string()),
        );
        assert!(!format!("{f:?}").contains("eyJqaXQ"));
        let Registration::GithubJit { runner_id, config } = f
            .registration("pool-abc123", &Labels::parse("cml"))
            .await
            .unwrap()
        else {
            panic!("not a JIT registration");
        };
        assert_eq!(runner_id, "42");
        assert_eq!(config.expose(), "eyJqaXQiOnRydWV9");
        assert!(f
            .registration("other", &Labels::parse("cml"))
            .await
            .is_err());
        let e = f.delete_runner("42", "pool-abc123").await.unwrap_err();
        assert!(e.to_string().contains("hint:"), "{e}");
        assert!(f.runners().await.is_err());
        assert_eq!(
            f.delete_stopped_runner("42", "pool-abc123").await.unwrap(),
            Deleted::AlreadyGone
        );
        assert_eq!(f.secrets(), vec!["eyJqaXQiOnRydWV9".to_string()]);
    }
}
