//! Cloud providers behind one trait: the machines that host runners.
//!
//! Teardown contract (the reason for [`Created`]): a provider records every resource in the
//! caller's [`Created`] ledger *as soon as the cloud has created it*, and every launch request
//! *before sending it* (by the [`LAUNCH_TAG`] value everything it creates carries). Whatever
//! happens next — an error, a timeout, an answer that never arrives, the launcher's task
//! being dropped on SIGINT — the caller can hand the ledger to [`Provider::destroy`], which
//! deletes those resources and whatever the recorded launch requests created, and is
//! idempotent (a resource already gone counts as deleted). Every resource also carries the
//! owner tag [`OWNER_TAG`], so anything missed can be found again with
//! [`Provider::list_owned`].
//!
//! The boundary: the launcher and `cml runner cleanup` see only `dyn Provider`, made by
//! [`provider_for`] from the validated `--cloud*` options; a machine sees only
//! `dyn machine::Host`, made by [`machine::host_for`] from the cloud its launcher wrote down.
//! A cloud is a folder (`aws/`, ...) holding its provider and its host, one line in each of
//! those two factories, and its rows in `cml_core`'s tables.

pub mod error;
pub mod interruption;
pub mod machine;
pub mod spec;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "gcp")]
pub mod gcp;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
pub mod sshkey;

pub use error::CloudError;
pub use spec::{Created, Left, Machine, MachineSpec, OwnedResource, Resource, RunnerCommand};

use async_trait::async_trait;
use cml_core::cloud::{Cloud, CloudSpec};
use std::time::Duration;

/// The tag every resource we create carries; its value is the runner name.
pub const OWNER_TAG: &str = "cml:id";

/// The tag naming the repository or organization URL a resource was made for.
pub const SCOPE_TAG: &str = "cml:repo";

/// The tag a launch request puts on everything it creates; its value is unique to that
/// launch, so teardown finds what a request created even when its answer never arrived.
pub const LAUNCH_TAG: &str = "cml:launch";

/// How a provider made by [`provider_for`] paces itself; `None` keeps its default.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProviderOptions {
    /// How often it asks the cloud about something under way (a booting machine, an
    /// operation, a terminating instance).
    pub poll_interval: Option<Duration>,
    /// The bound of [`Provider::destroy`] as a whole.
    pub destroy_timeout: Option<Duration>,
    /// The machine gets the launcher's own credentials (Azure:
    /// `--cloud-azure-credentials-on-machine`), so the provider gives it no role of its own.
    pub credentials_on_machine: bool,
}

/// The provider for `spec.cloud` in `spec.region`, with the cloud's credentials from the
/// environment (each provider documents its variables). Errors when the credentials cannot
/// be read or the cloud is not in this build; nothing is created either way.
pub async fn provider_for(
    spec: &CloudSpec,
    options: &ProviderOptions,
) -> Result<Box<dyn Provider>, CloudError> {
    match spec.cloud {
        #[cfg(feature = "aws")]
        Cloud::Aws => {
            let mut p = aws::AwsProvider::new(&spec.region).await?;
            if let Some(d) = options.poll_interval {
                p = p.with_poll_interval(d);
            }
            if let Some(d) = options.destroy_timeout {
                p = p.with_destroy_timeout(d);
            }
            Ok(Box::new(p))
        }
        #[cfg(feature = "gcp")]
        Cloud::Gcp => {
            let mut p = gcp::GcpProvider::from_env_or_metadata(&spec.region).await?;
            if let Some(d) = options.poll_interval {
                p = p.with_poll_interval(d);
            }
            if let Some(d) = options.destroy_timeout {
                p = p.with_destroy_timeout(d);
            }
            Ok(Box::new(p))
        }
        #[cfg(feature = "azure")]
        Cloud::Azure => {
            let mut p = azure::AzureProvider::from_env(&spec.region)?
                .with_machine_role(!options.credentials_on_machine);
            if let Some(d) = options.poll_interval {
                p = p.with_poll_interval(d);
            }
            if let Some(d) = options.destroy_timeout {
                p = p.with_destroy_timeout(d);
            }
            Ok(Box::new(p))
        }
        #[cfg(feature = "kubernetes")]
        Cloud::Kubernetes => {
            let mut p =
                kubernetes::KubernetesProvider::from_env(spec.kubernetes_namespace.as_deref())
                    .await?;
            if let Some(d) = options.poll_interval {
                p = p.with_poll_interval(d);
            }
            if let Some(d) = options.destroy_timeout {
                p = p.with_destroy_timeout(d);
            }
            Ok(Box::new(p))
        }
        // Reached in a build without some cloud's feature.
        #[allow(unreachable_patterns)]
        other => {
            let _ = options;
            Err(CloudError::NotInThisBuild {
                cloud: other.to_string(),
            })
        }
    }
}

/// Checks, before anything exists, the limits `spec` must fit in its cloud (the size of the
/// startup script, ...). Needs no credentials.
pub fn check_spec(spec: &MachineSpec) -> Result<(), CloudError> {
    match spec.cloud.cloud {
        #[cfg(feature = "aws")]
        Cloud::Aws => aws::check_user_data(spec),
        #[cfg(feature = "gcp")]
        Cloud::Gcp => gcp::check_metadata(spec),
        #[cfg(feature = "azure")]
        Cloud::Azure => azure::check_custom_data(spec),
        #[cfg(feature = "kubernetes")]
        Cloud::Kubernetes => kubernetes::check_spec(spec),
        #[allow(unreachable_patterns)]
        other => Err(CloudError::NotInThisBuild {
            cloud: other.to_string(),
        }),
    }
}

/// A cloud that can host runner machines.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Short name, as `--cloud` takes it (`aws`).
    fn name(&self) -> &'static str;

    /// The region (or zone) it works in, as `--cloud-region` takes it.
    fn region(&self) -> &str;

    /// Creates the machine and what it needs (key pair, security group, spot request),
    /// recording each resource in `created` the moment it exists (see the crate contract).
    /// Returns once the cloud has accepted the machine; it may still be booting.
    async fn create(&self, spec: &MachineSpec, created: &Created) -> Result<Machine, CloudError>;

    /// Waits until the machine runs, returning it with its addresses.
    async fn wait_running(
        &self,
        machine: &Machine,
        timeout: Duration,
    ) -> Result<Machine, CloudError>;

    /// Deletes every resource in `created` and whatever its recorded launch requests created
    /// (looked up by [`LAUNCH_TAG`], also when their answer never arrived).
    ///
    /// Guarantees: every deletion that depends on nothing (terminating instances, cancelling
    /// spot requests, deleting key pairs and volumes) is issued at once, concurrently; only
    /// then does it wait, and only for what needs terminated instances (per-runner security
    /// groups). A failed deletion does not stop the others. The whole call is bounded in
    /// time (the provider's teardown timeout); on return `created` holds exactly what may
    /// still exist, and the error, if any, lists it with ids. An instance whose termination
    /// the cloud accepted counts as deleted. Idempotent; copes with a creation that never
    /// finished.
    async fn destroy(&self, created: &Created) -> Result<(), CloudError>;

    /// Every resource carrying [`OWNER_TAG`] in this provider's region, with its
    /// [`SCOPE_TAG`] and, for security groups, the instances using them.
    async fn list_owned(&self) -> Result<Vec<OwnedResource>, CloudError>;

    /// The options of `cml runner cleanup` that search where this provider works
    /// (`--cloud=aws --cloud-region=us-west-1`), for hints.
    fn cleanup_options(&self) -> String {
        format!("--cloud={} --cloud-region={}", self.name(), self.region())
    }

    /// The machine's console output, when the cloud keeps one (for timeout errors).
    async fn console_output(&self, machine: &Machine) -> Result<Option<String>, CloudError>;
}
