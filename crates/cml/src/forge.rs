//! The forge client for a resolved driver, seen as a [`Forge`] (runners) or as [`Reports`]
//! (comments, pull requests, uploads, checks).

use crate::logging;
use crate::settings::Credential;
use anyhow::Context;
use cml_core::{Driver, RepoUrl};
use cml_forge::bitbucket::BitbucketClient;
use cml_forge::github::{AppAuth, GithubAuth, GithubClient};
use cml_forge::gitlab::GitlabClient;
use cml_forge::{Forge, Reports, RetryPolicy, Workflows};

/// One forge's client.
pub enum Client {
    Github(GithubClient),
    Gitlab(GitlabClient),
    Bitbucket(BitbucketClient),
}

impl Client {
    /// Connects to the forge of `driver`. GitLab's API base is discovered and Bitbucket's
    /// repository read here, so a wrong URL or token fails before anything else happens. The
    /// credential is registered for log redaction first.
    pub async fn connect(
        driver: Driver,
        repo: &RepoUrl,
        credential: &Credential,
        bitbucket_api: &str,
    ) -> anyhow::Result<Client> {
        let (token, source) = match credential {
            Credential::Token { token, source } => (token.clone(), source.clone()),
            Credential::GithubApp { app_id, pem } => {
                logging::add_secrets([pem.expose().to_string()]);
                let auth = GithubAuth::App(AppAuth::new(app_id, pem.clone())?);
                return Ok(Client::Github(github(repo, auth)?));
            }
        };
        logging::add_secrets([token.expose().to_string()]);
        Ok(match driver {
            Driver::Github => Client::Github(github(repo, GithubAuth::Token { token, source })?),
            Driver::Gitlab => Client::Gitlab(
                GitlabClient::connect(repo, token, &source, RetryPolicy::default()).await?,
            ),
            Driver::Bitbucket => Client::Bitbucket(
                BitbucketClient::connect(
                    repo,
                    token,
                    &source,
                    bitbucket_api,
                    RetryPolicy::default(),
                )
                .await?,
            ),
        })
    }

    /// The runner view; `runtime_label` is the Bitbucket runner-type label of the agent that
    /// will run.
    pub fn into_forge(self, runtime_label: Option<&'static str>) -> Box<dyn Forge> {
        match self {
            Client::Github(c) => Box::new(c),
            Client::Gitlab(c) => Box::new(c),
            Client::Bitbucket(c) => Box::new(match runtime_label {
                Some(label) => c.with_runtime_label(label),
                None => c,
            }),
        }
    }

    /// The workflow view (`cml workflow rerun`).
    pub fn into_workflows(self) -> Box<dyn Workflows> {
        match self {
            Client::Github(c) => Box::new(c),
            Client::Gitlab(c) => Box::new(c),
            Client::Bitbucket(c) => Box::new(c),
        }
    }

    /// The report view.
    pub fn into_reports(self) -> Box<dyn Reports> {
        match self {
            Client::Github(c) => Box::new(c),
            Client::Gitlab(c) => Box::new(c),
            Client::Bitbucket(c) => Box::new(c),
        }
    }
}

fn github(repo: &RepoUrl, auth: GithubAuth) -> anyhow::Result<GithubClient> {
    GithubClient::new(repo, auth, RetryPolicy::default()).context("creating the GitHub client")
}
