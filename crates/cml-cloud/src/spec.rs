//! What a provider is asked to create, and what it reports back.

use cml_core::cloud::CloudSpec;
use std::sync::{Arc, Mutex};

/// A machine to create.
#[derive(Clone)]
pub struct MachineSpec {
    /// Runner name; resources are named `cml-<name>`.
    pub name: String,
    /// Validated `--cloud*` options (native type and region already resolved).
    pub cloud: CloudSpec,
    /// The startup script (plain text; the provider encodes it as the cloud requires).
    /// Contains secrets: never logged.
    pub user_data: String,
    /// Tags for every resource: the owner tag, runner, repo, labels, and `--cloud-metadata`.
    pub tags: Vec<(String, String)>,
    /// `--cloud-ssh-private` (PEM), if given; otherwise the provider generates a key pair.
    pub ssh_private_key: Option<cml_core::Secret>,
}

impl std::fmt::Debug for MachineSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineSpec")
            .field("name", &self.name)
            .field("cloud", &self.cloud)
            .field(
                "user_data",
                &format_args!("<{} bytes>", self.user_data.len()),
            )
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

/// A resource the provider created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Instance(String),
    SpotRequest(String),
    KeyPair(String),
    /// A security group created for this runner only (shared groups are not listed here:
    /// they may outlive runners).
    SecurityGroup(String),
    /// A disk carrying our tag (machines' disks go with their machine; a detached one is
    /// only found by [`crate::Provider::list_owned`]).
    Volume(String),
}

/// The resources created so far, shared between a provider and its caller.
#[derive(Debug, Clone, Default)]
pub struct Created(Arc<Mutex<Vec<Resource>>>);

impl Created {
    pub fn new() -> Created {
        Created::default()
    }

    pub fn push(&self, r: Resource) {
        if let Ok(mut v) = self.0.lock() {
            if !v.contains(&r) {
                v.push(r);
            }
        }
    }

    pub fn list(&self) -> Vec<Resource> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.list().is_empty()
    }
}

/// A machine as the cloud reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub id: String,
    pub region: String,
    pub zone: Option<String>,
    pub machine_type: String,
    pub spot: bool,
    pub state: String,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
}

/// A resource found by its owner tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedResource {
    pub resource: Resource,
    /// The owner tag's value (the runner name).
    pub owner: String,
    /// Cloud state (`running`, `terminated`, `open`, ...), when it has one.
    pub state: Option<String>,
    /// Time since the cloud created it, when the cloud says.
    pub age: Option<std::time::Duration>,
}
