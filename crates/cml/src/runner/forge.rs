//! The forge client for the resolved driver, behind the one [`Forge`] trait.

use crate::forge::Client;
use crate::settings::RunnerSettings;
use cml_forge::Forge;

/// Connects to the forge of `s.driver` (see [`Client::connect`]). `runtime_label` is the
/// Bitbucket runner-type label of the agent that will run.
pub async fn connect(
    s: &RunnerSettings,
    runtime_label: Option<&'static str>,
) -> anyhow::Result<Box<dyn Forge>> {
    Ok(
        Client::connect(s.driver, &s.repo, &s.credential, &s.bitbucket_api)
            .await?
            .into_forge(runtime_label),
    )
}
