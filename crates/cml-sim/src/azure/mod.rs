//! A simulated Azure Resource Manager, Microsoft Entra ID token endpoint and per-VM Instance
//! Metadata Service, all on 127.0.0.1.
//!
//! - **Resource Manager** at [`AzureSim::url`] (what `CML_AZURE_RESOURCE_MANAGER_URL` points
//!   at): the operations of [`contract`] (resource groups PUT/GET/HEAD/DELETE/list, resources
//!   list, virtual machines PUT/GET/DELETE/instanceView/retrieveBootDiagnosticsData, virtual
//!   networks, network security groups, public IP addresses and network interfaces PUT/GET,
//!   role assignments PUT). Each request needs `?api-version=` equal to the version the pinned
//!   SDK sends (else `MissingApiVersionParameter` / `NoRegisteredProviderFound` /
//!   `InvalidApiVersionParameter`, 400) and `Authorization: Bearer` with a token the simulator
//!   issued (else 401 `AuthenticationFailed` / `InvalidAuthenticationToken`). Bodies are checked
//!   against Microsoft's models: an unknown member or wrong JSON type is 400
//!   `InvalidRequestContent`; every answer is checked too (an off-contract answer is a
//!   simulator bug, answered 500). Errors are ARM's `{"error": {"code", "message"}}`.
//! - **Long-running operations**: resource PUTs answer 201 (200 on update) with
//!   `provisioningState: Creating` (`Updating`) and an `Azure-AsyncOperation` URL whose status
//!   is `InProgress` for [`AzureConfig::operation_step`], then `Succeeded` or `Failed` with
//!   `error`; VM DELETE answers 202 with `Azure-AsyncOperation` and `Location`; resource-group
//!   DELETE answers 202 with `Location` and `Retry-After`, polled 202 until 200, and removes
//!   everything in the group (and role assignments scoped inside it).
//! - **Virtual machines**: `priority: Spot` with `evictionPolicy` and `billingProfile.maxPrice`;
//!   `identity` SystemAssigned (a `principalId` appears, usable through the VM's IMDS) and/or
//!   UserAssigned; `osProfile.customData` must be base64 (≤ 87380 characters), is kept for
//!   [`AzureSim::custom_data`] and never answered; one zone of "1", "2", "3"; the NIC must
//!   exist. Each VM gets an OS disk resource (`Microsoft.Compute/disks`, untagged, as Azure
//!   makes it), deleted with the VM only with `osDisk.deleteOption: Delete`.
//! - **Capacity** ([`AzureSim::refuse_capacity`]): `SkuNotAvailable` is refused at once with
//!   409; `AllocationFailed` (`ZonalAllocationFailed` with a zone) and
//!   `OverconstrainedAllocationRequest` are accepted and fail in the operation (the VM stays,
//!   `provisioningState: Failed`), as Azure reports them.
//! - **Quota** ([`AzureSim::set_quota`], `cores` / `lowPriorityCores` per location): 409
//!   `OperationNotAllowed` at once, in ARM's words ("... exceeding approved Total Regional
//!   Cores quota ...").
//! - **Roles**: the launcher's clients may do anything except what
//!   [`AzureSim::deny_action`] takes away (403 `AuthorizationFailed` naming the action and
//!   scope); a VM identity may do only what a role assignment (Owner, Contributor, Virtual
//!   Machine Contributor, Reader) on an enclosing scope grants. A role assignment for an
//!   identity younger than [`AzureConfig::principal_replication`] without `principalType` is
//!   refused with `PrincipalNotFound`, Entra's replication delay.
//! - **Faults** ([`AzureSim::inject`], by operation id, `asyncOperation`, `operationResult` or
//!   `token`): lose an answer after carrying the request out, delay it, hang, or answer an ARM
//!   error instead.
//! - **Hooks**: [`AzureSim::evict`] (a `Preempt` scheduled event, then the eviction policy after
//!   [`AzureConfig::eviction_notice`]), [`AzureSim::power_off`] (the guest stops: still
//!   allocated and billing), [`AzureSim::append_console`] (boot diagnostics' serial log).
//! - **Token endpoint** `POST {url}/{tenant}/oauth2/v2.0/token` (`AZURE_AUTHORITY_HOST` = the
//!   url): see [`oauth`]. **IMDS** per VM ([`AzureSim::imds`]): see [`imds`].

pub mod api;
mod cli;
pub mod contract;
pub mod errors;
pub mod imds;
pub mod oauth;
pub(crate) mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use cli::cli_main;
pub use imds::AzureImds;
pub use state::{
    role_allows, vcpus, Power, ROLE_CONTRIBUTOR, ROLE_OWNER, ROLE_READER, ROLE_VM_CONTRIBUTOR,
};

/// Everything an [`AzureSim`] needs at start.
#[derive(Clone, Debug)]
pub struct AzureConfig {
    pub subscription: String,
    pub tenant: String,
    /// Locations VMs, networks and groups may be created in.
    pub locations: Vec<String>,
    /// Sizes named in the "not valid" error (any `Standard_<FAMILY><vCPUs>...` is accepted).
    pub sizes: Vec<String>,
    /// How long an operation stays `InProgress`.
    pub operation_step: Duration,
    /// `Retry-After` seconds in long-running answers (ARM: 15 for groups; tests use 0).
    pub retry_after: u64,
    /// From an eviction to its policy (Azure: at least 30 seconds).
    pub eviction_notice: Duration,
    /// Lifetime of access tokens (Entra: about an hour).
    pub token_ttl: Duration,
    /// How long a new managed identity is unknown to role assignments that do not give
    /// `principalType` (Entra's replication delay).
    pub principal_replication: Duration,
}

impl Default for AzureConfig {
    /// Subscription `00000000-0000-0000-0000-00000000c0de`, tenant
    /// `00000000-0000-0000-0000-0000000000a1`; the Azure regions of CML's generic regions plus
    /// `westus2`; steps of 100 ms; `Retry-After: 0`; eviction notice 1 s; tokens 1 hour; no
    /// replication delay.
    fn default() -> Self {
        AzureConfig {
            subscription: "00000000-0000-0000-0000-00000000c0de".into(),
            tenant: "00000000-0000-0000-0000-0000000000a1".into(),
            locations: ["eastus", "westus", "northeurope", "westeurope", "westus2"]
                .map(String::from)
                .to_vec(),
            sizes: [
                "Standard_F2s_v2",
                "Standard_F8s_v2",
                "Standard_F32s_v2",
                "Standard_NC4as_T4_v3",
                "Standard_NC6s_v3",
            ]
            .map(String::from)
            .to_vec(),
            operation_step: Duration::from_millis(100),
            retry_after: 0,
            eviction_notice: Duration::from_secs(1),
            token_ttl: Duration::from_secs(3600),
            principal_replication: Duration::ZERO,
        }
    }
}

/// A capacity error a VM create meets (see the module documentation for when each comes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityError {
    SkuNotAvailable,
    AllocationFailed,
    Overconstrained,
}

/// What the simulator does to a request with an injected fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AzureFault {
    /// Carries the request out, then cuts the connection instead of answering.
    DropAnswer,
    /// Carries the request out, then answers only after this long.
    DelayAnswer(Duration),
    /// Neither carries out nor answers.
    Hang,
    /// Answers this ARM error instead of carrying the request out.
    Error {
        status: u16,
        code: String,
        message: String,
    },
}

/// One Resource Manager request as the simulator saw it (token and IMDS requests excluded).
#[derive(Clone, Debug)]
pub struct AzureRequest {
    pub at: Instant,
    /// Operation id (`virtualMachines.createOrUpdate`, `asyncOperation`, `operationResult`;
    /// empty for an unknown path).
    pub operation: String,
    pub http_method: String,
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
    /// Object id of the authenticated principal.
    pub principal: Option<String>,
    /// HTTP status answered (0: never answered).
    pub status: u16,
    pub fault: Option<AzureFault>,
}

pub(crate) struct Shared {
    state: Mutex<state::State>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, state::State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running simulated Azure. Dropping it stops it.
pub struct AzureSim {
    shared: Arc<Shared>,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AzureSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureSim").field("url", &self.url).finish()
    }
}

impl AzureSim {
    /// Binds `127.0.0.1:0` and serves.
    pub fn start(cfg: AzureConfig) -> std::io::Result<AzureSim> {
        Self::start_on(cfg, 0)
    }

    /// Binds `127.0.0.1:port` (0 = any free port) and serves.
    pub fn start_on(cfg: AzureConfig, port: u16) -> std::io::Result<AzureSim> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            state: Mutex::new(state::State::new(cfg, url.clone())),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cml-sim-azure".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = axum::Router::new().fallback(api::entry).with_state(sh);
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = rx => {}
                    }
                });
            })?;
        Ok(AzureSim {
            shared,
            url,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`: both the Resource Manager URL and the authority host.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn subscription(&self) -> String {
        self.shared.lock().cfg.subscription.clone()
    }

    pub fn tenant(&self) -> String {
        self.shared.lock().cfg.tenant.clone()
    }

    fn now(&self) -> MutexGuard<'_, state::State> {
        let mut st = self.shared.lock();
        st.advance(Instant::now());
        st
    }

    /// Registers an app (service principal) of the tenant: the token endpoint grants it
    /// tokens for `secret`. Answers its object id (the principal ARM names in refusals).
    pub fn add_client(&self, client_id: &str, secret: &str) -> String {
        let mut st = self.shared.lock();
        let object_id = state::stable_guid(&format!("sp/{client_id}"));
        let tenant = st.cfg.tenant.clone();
        st.clients.push(state::Client {
            tenant,
            client_id: client_id.into(),
            secret: secret.into(),
            object_id: object_id.clone(),
        });
        object_id
    }

    /// An access token for principal `object_id`, as if the token endpoint had issued it.
    pub fn issue_token(&self, object_id: &str) -> String {
        self.shared.lock().issue_token(object_id)
    }

    /// How many tokens the token endpoint granted.
    pub fn token_grants(&self) -> usize {
        self.shared.lock().grants
    }

    /// Every access token issued so far (tests check none is ever printed).
    pub fn issued_secrets(&self) -> Vec<String> {
        self.shared.lock().tokens.keys().cloned().collect()
    }

    /// `principal` may no longer perform `action`
    /// (`Microsoft.Authorization/roleAssignments/write`): 403 `AuthorizationFailed`.
    pub fn deny_action(&self, principal: &str, action: &str) {
        self.shared
            .lock()
            .denied
            .insert((principal.into(), action.to_ascii_lowercase()));
    }

    /// VM creates in `location` (and `zone`, `size` when given; only spot ones with
    /// `spot_only`) meet `error`. Rules apply in the order added.
    pub fn refuse_capacity(
        &self,
        location: &str,
        zone: Option<&str>,
        size: Option<&str>,
        spot_only: bool,
        error: CapacityError,
    ) {
        self.shared.lock().capacity.push(state::CapacityRule {
            location: location.into(),
            zone: zone.map(str::to_string),
            size: size.map(str::to_string),
            spot_only,
            error,
        });
    }

    pub fn clear_capacity_rules(&self) {
        self.shared.lock().capacity.clear();
    }

    /// A regional vCPU quota: `metric` `cores` (regular VMs) or `lowPriorityCores` (spot) may
    /// not exceed `limit` in `location`, counting VMs that are not failed or deallocated.
    pub fn set_quota(&self, location: &str, metric: &str, limit: u32) {
        self.shared
            .lock()
            .quotas
            .insert((location.to_ascii_lowercase(), metric.into()), limit);
    }

    /// Applies `fault` to the next `times` requests (all, with `None`) of operation `op`.
    pub fn inject(&self, op: &str, fault: AzureFault, times: Option<usize>) {
        self.shared.lock().faults.push(state::FaultRule {
            op: op.into(),
            fault,
            left: times,
        });
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Resource Manager requests so far, in order of arrival.
    pub fn requests(&self) -> Vec<AzureRequest> {
        self.shared.lock().requests.clone()
    }

    /// Names of the resource groups that exist (being deleted included).
    pub fn resource_groups(&self) -> Vec<String> {
        self.now().groups.values().map(|g| g.name.clone()).collect()
    }

    /// Every resource as `(resource group, type, name)`.
    pub fn resources(&self) -> Vec<(String, String, String)> {
        self.now()
            .resources
            .iter()
            .map(|r| (r.rg.clone(), r.rtype.to_string(), r.name.clone()))
            .collect()
    }

    /// The VM as GET answers it.
    pub fn vm(&self, rg: &str, name: &str) -> Option<Value> {
        let st = self.now();
        st.find(rg, state::VM, name).map(|r| st.render(r))
    }

    /// The power state of a VM.
    pub fn power(&self, rg: &str, name: &str) -> Option<Power> {
        self.now()
            .find(rg, state::VM, name)
            .and_then(|r| r.vm.as_ref().map(|v| v.power))
    }

    /// The decoded `customData` the VM was created with (what cloud-init runs).
    pub fn custom_data(&self, rg: &str, name: &str) -> Option<Vec<u8>> {
        self.now()
            .find(rg, state::VM, name)
            .and_then(|r| r.vm.as_ref()?.custom_data.clone())
    }

    /// Names of the VMs deleted so far (by the API, a group delete or an eviction).
    pub fn deleted_vms(&self) -> Vec<String> {
        self.now().deleted_vms.clone()
    }

    /// Role assignments as `(scope, role definition id, principal id)`.
    pub fn role_assignments(&self) -> Vec<(String, String, String)> {
        self.now()
            .assignments
            .iter()
            .map(|a| (a.scope.clone(), a.role.clone(), a.principal.clone()))
            .collect()
    }

    /// Azure evicts the spot VM: a `Preempt` scheduled event, then after the notice its
    /// `evictionPolicy` (Delete: the VM and its OS disk go; Deallocate: it stops billing for
    /// compute). False if it is not a running spot VM.
    pub fn evict(&self, rg: &str, name: &str) -> bool {
        self.now().evict(rg, name)
    }

    /// The guest powers itself off: `PowerState/stopped`, still allocated and billed. False if
    /// it is not running.
    pub fn power_off(&self, rg: &str, name: &str) -> bool {
        self.now().power_off(rg, name)
    }

    /// Appends `text` to the VM's serial log (boot diagnostics).
    pub fn append_console(&self, rg: &str, name: &str, text: &str) -> bool {
        match self
            .now()
            .find_mut(rg, state::VM, name)
            .and_then(|r| r.vm.as_mut())
        {
            Some(vm) => {
                vm.console.push_str(text);
                true
            }
            None => false,
        }
    }

    /// Starts the metadata service of VM `name` in `rg`.
    pub fn imds(&self, rg: &str, name: &str) -> std::io::Result<AzureImds> {
        let found = self.now().find(rg, state::VM, name).map(|r| r.name.clone());
        let name = found.ok_or_else(|| std::io::Error::other(format!("no VM {name} in {rg}")))?;
        AzureImds::start(self.shared.clone(), rg, &name)
    }
}

impl Drop for AzureSim {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
