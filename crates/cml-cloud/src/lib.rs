//! Cloud providers behind one trait: the machines that host runners.
//!
//! Teardown contract (the reason for [`Created`]): a provider records every resource in the
//! caller's [`Created`] list *as soon as the cloud has created it*, before doing anything
//! else. Whatever happens next — an error, a timeout, the launcher's task being dropped on
//! SIGINT — the caller can hand that list to [`Provider::destroy`], which deletes exactly
//! those resources, in a safe order, and is idempotent (a resource already gone counts as
//! deleted). Every resource also carries the owner tag [`OWNER_TAG`], so anything missed can
//! be found again with [`Provider::list_owned`].

pub mod error;
pub mod interruption;
pub mod machine;
pub mod spec;

#[cfg(feature = "aws")]
pub mod aws;

pub use error::CloudError;
pub use spec::{Created, Machine, MachineSpec, OwnedResource, Resource};

use async_trait::async_trait;
use std::time::Duration;

/// The tag every resource we create carries; its value is the runner name.
pub const OWNER_TAG: &str = "cml:id";

/// A cloud that can host runner machines.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Short name (`aws`).
    fn name(&self) -> &'static str;

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

    /// Deletes every resource in `created` (instances first, then spot requests, key pairs,
    /// and per-runner security groups). Idempotent; copes with a creation that never finished.
    async fn destroy(&self, created: &Created) -> Result<(), CloudError>;

    /// Every resource carrying [`OWNER_TAG`] in this provider's region.
    async fn list_owned(&self) -> Result<Vec<OwnedResource>, CloudError>;

    /// The machine's console output, when the cloud keeps one (for timeout errors).
    async fn console_output(&self, machine: &Machine) -> Result<Option<String>, CloudError>;
}
