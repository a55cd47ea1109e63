//! The forge client for the resolved driver, behind the one [`Forge`] trait.

use crate::logging;
use crate::settings::{Credential, RunnerSettings};
use anyhow::Context;
use cml_core::Driver;
use cml_forge::bitbucket::BitbucketClient;
use cml_forge::github::{AppAuth, GithubAuth, GithubClient};
use cml_forge::gitlab::GitlabClient;
use cml_forge::{Forge, RetryPolicy};

/// Connects to the forge of `s.driver`. GitLab's API base is discovered and Bitbucket's
/// repository read here, so a wrong URL or token fails before anything else happens.
/// `runtime_label` is the Bitbucket runner-type label of the agent that will run.
pub async fn connect(
    s: &RunnerSettings,
    runtime_label: Option<&'static str>,
) -> anyhow::Result<Box<dyn Forge>> {
    let (token, source) = match &s.credential {
        Credential::Token { token, source } => (token.clone(), source.clone()),
        Credential::GithubApp { app_id, pem } => {
            logging::add_secrets([pem.expose().to_string()]);
            let auth = GithubAuth::App(AppAuth::new(app_id, pem.clone())?);
            return Ok(Box::new(github(s, auth)?));
        }
    };
    logging::add_secrets([token.expose().to_string()]);
    Ok(match s.driver {
        Driver::Github => Box::new(github(s, GithubAuth::Token { token, source })?),
        Driver::Gitlab => {
            Box::new(GitlabClient::connect(&s.repo, token, &source, RetryPolicy::default()).await?)
        }
        Driver::Bitbucket => {
            let client = BitbucketClient::connect(
                &s.repo,
                token,
                &source,
                &s.bitbucket_api,
                RetryPolicy::default(),
            )
            .await?;
            Box::new(match runtime_label {
                Some(label) => client.with_runtime_label(label),
                None => client,
            })
        }
    })
}

fn github(s: &RunnerSettings, auth: GithubAuth) -> anyhow::Result<GithubClient> {
    GithubClient::new(&s.repo, auth, RetryPolicy::default()).context("creating the GitHub client")
}
