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
    /// The `cml runner` a cloud that runs it directly (Kubernetes, from the runner image)
    /// starts, rather than through [`MachineSpec::user_data`].
    pub runner: RunnerCommand,
    /// `--cloud-max-lifetime` (`None` = never). The startup script enforces it on every
    /// cloud; a provider whose cloud can end a machine by itself at a deadline sets that too.
    pub max_lifetime: Option<std::time::Duration>,
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
            .field("runner", &self.runner)
            .field("max_lifetime", &self.max_lifetime)
            .finish_non_exhaustive()
    }
}

/// The machine's `cml runner`, for a cloud that starts it itself (Kubernetes): what
/// `cml_core::startup` puts in the startup script, as parts.
#[derive(Clone, Default)]
pub struct RunnerCommand {
    /// The arguments after `cml` (no secret among them).
    pub args: Vec<String>,
    /// Its environment (none of it secret).
    pub env: Vec<(String, String)>,
    /// Its credential, as the variables `cml` reads it from. Never logged; a provider sends
    /// it only inside the cloud's secret store (a Kubernetes Secret).
    pub secrets: Vec<(String, cml_core::Secret)>,
    /// `--stop-grace`: how long the runner may take to stop its agent after SIGTERM.
    pub stop_grace: std::time::Duration,
}

impl std::fmt::Debug for RunnerCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerCommand")
            .field("args", &self.args)
            .field("env", &self.env)
            .field(
                "secrets",
                &self
                    .secrets
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("stop_grace", &self.stop_grace)
            .finish()
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
    /// An EC2 volume carrying our tag (machines' disks go with their machine; a detached
    /// one is only found by [`crate::Provider::list_owned`]).
    Volume(String),
    /// A Compute Engine disk (`ZONE/NAME`), as [`Resource::Volume`] is on EC2.
    Disk(String),
    /// An Azure resource group (its name): everything of one runner lives in it, and deleting
    /// it deletes all of that.
    ResourceGroup(String),
    /// A Kubernetes Job (its name, in the provider's namespace): a runner's pod and, through
    /// its owner reference, its Secret go with it.
    Job(String),
    /// A Kubernetes pod (its name), as `cml runner cleanup` finds one whose Job is gone.
    Pod(String),
    /// A Kubernetes Secret (its name) holding a runner's credential.
    Secret(String),
}

impl Resource {
    /// Needed only while the machine is being created (an SSH key pair, read once at boot):
    /// the launcher deletes it once the machine runs, so that nothing of a runner but its
    /// machine (which removes itself) outlives the launch.
    pub fn is_launch_only(&self) -> bool {
        matches!(self, Resource::KeyPair(_))
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Instance(id) => write!(f, "instance {id}"),
            Resource::SpotRequest(id) => write!(f, "spot request {id}"),
            Resource::KeyPair(name) => write!(f, "key pair {name}"),
            Resource::SecurityGroup(id) => write!(f, "security group {id}"),
            Resource::Volume(id) => write!(f, "volume {id}"),
            Resource::Disk(id) => write!(f, "disk {id}"),
            Resource::ResourceGroup(name) => write!(f, "resource group {name}"),
            Resource::Job(name) => write!(f, "job {name}"),
            Resource::Pod(name) => write!(f, "pod {name}"),
            Resource::Secret(name) => write!(f, "secret {name}"),
        }
    }
}

/// The teardown ledger of one launch (or one cleanup): what exists and is not yet known to
/// be gone, shared between a provider and its caller.
///
/// A provider records each resource the moment the cloud has created it, and each launch
/// request *before* sending it (by the tag value every resource it makes carries), so a
/// request whose answer never arrived is still found. [`crate::Provider::destroy`] removes
/// what it has deleted, marks what is being deleted (an instance that is terminating), and
/// leaves the rest: after it, [`Created::left`] is exactly what may still exist.
#[derive(Debug, Clone, Default)]
pub struct Created(Arc<Mutex<Ledger>>);

#[derive(Debug, Default)]
struct Ledger {
    entries: Vec<Entry>,
    launches: Vec<Launch>,
}

#[derive(Debug)]
struct Entry {
    resource: Resource,
    requested: bool,
    failure: Option<String>,
}

#[derive(Debug, Clone)]
struct Launch {
    tag: String,
    answered: bool,
}

/// A resource not known to be gone, as [`Created::left`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    pub resource: Resource,
    /// Its deletion was accepted by the cloud and is under way (a terminating instance).
    pub deleting: bool,
    /// Why deleting it failed, when it did.
    pub failure: Option<String>,
}

impl std::fmt::Display for Left {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.resource)?;
        match (&self.failure, self.deleting) {
            (Some(why), _) => write!(f, " (deleting it failed: {why})"),
            (None, true) => write!(f, " (deletion under way, not confirmed)"),
            (None, false) => write!(f, " (not deleted)"),
        }
    }
}

impl Created {
    pub fn new() -> Created {
        Created::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> T {
        // A panic elsewhere cannot make the ledger unreadable: teardown needs it most then.
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Records a resource that exists (once).
    pub fn push(&self, r: Resource) {
        self.with(|l| {
            if !l.entries.iter().any(|e| e.resource == r) {
                l.entries.push(Entry {
                    resource: r,
                    requested: false,
                    failure: None,
                });
            }
        })
    }

    /// Every resource not known to be gone, in the order recorded.
    pub fn list(&self) -> Vec<Resource> {
        self.with(|l| l.entries.iter().map(|e| e.resource.clone()).collect())
    }

    /// True when no resource is recorded and no launch request may have made one.
    pub fn is_empty(&self) -> bool {
        self.with(|l| l.entries.is_empty() && l.launches.is_empty())
    }

    /// Records that a launch request tagging what it creates with `tag` is about to be sent;
    /// until [`Created::launch_answered`], it may have created resources nobody recorded.
    pub fn launch_sent(&self, tag: &str) {
        self.with(|l| match l.launches.iter_mut().find(|x| x.tag == tag) {
            Some(x) => x.answered = false,
            None => l.launches.push(Launch {
                tag: tag.to_string(),
                answered: false,
            }),
        })
    }

    /// Records that the cloud answered the launch request tagged `tag` (with what it made,
    /// already recorded, or with an error meaning it made nothing).
    pub fn launch_answered(&self, tag: &str) {
        self.with(|l| {
            if let Some(x) = l.launches.iter_mut().find(|x| x.tag == tag) {
                x.answered = true;
            }
        })
    }

    /// The launch tags whose resources teardown must look up: (tag, answered).
    pub fn launches(&self) -> Vec<(String, bool)> {
        self.with(|l| {
            l.launches
                .iter()
                .map(|x| (x.tag.clone(), x.answered))
                .collect()
        })
    }

    /// Forgets a launch once everything it made has been looked up and recorded.
    pub fn launch_resolved(&self, tag: &str) {
        self.with(|l| l.launches.retain(|x| x.tag != tag))
    }

    /// Records that `r` is gone.
    pub fn remove(&self, r: &Resource) {
        self.with(|l| l.entries.retain(|e| &e.resource != r))
    }

    /// Records that the cloud accepted the deletion of `r`, which is under way.
    pub fn deleting(&self, r: &Resource) {
        self.with(|l| {
            if let Some(e) = l.entries.iter_mut().find(|e| &e.resource == r) {
                e.requested = true;
                e.failure = None;
            }
        })
    }

    /// Records why deleting `r` failed.
    pub fn failed(&self, r: &Resource, why: &str) {
        self.with(|l| {
            if let Some(e) = l.entries.iter_mut().find(|e| &e.resource == r) {
                e.failure = Some(why.to_string());
            }
        })
    }

    /// What may still exist, with what is known of its deletion. Launch requests not yet
    /// looked up are not resources and are not listed: see [`Created::launches`].
    pub fn left(&self) -> Vec<Left> {
        self.with(|l| {
            l.entries
                .iter()
                .map(|e| Left {
                    resource: e.resource.clone(),
                    deleting: e.requested,
                    failure: e.failure.clone(),
                })
                .collect()
        })
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
    /// The repository or organization URL it was made for (the `cml:repo` tag), if tagged.
    pub scope: Option<String>,
    /// State, in the vocabulary `cml_core::orphans` judges (EC2's words, which each provider
    /// maps its own states onto): instances `pending`, `running`, `stopping`, `stopped`,
    /// `shutting-down`, `terminated`; disks `available` (attached to nothing) or `in-use`;
    /// spot requests their EC2 state. `None` when the resource has none.
    pub state: Option<String>,
    /// Time since the cloud created it, when the cloud says.
    pub age: Option<std::time::Duration>,
    /// Security groups: the instances (anyone's, tagged or not) using it, when asked.
    pub used_by: Option<Vec<String>>,
}
