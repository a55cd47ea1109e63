//! Microsoft Azure, over the Resource Manager REST API with a service principal's client
//! secret.
//!
//! Credentials: [`auth::CLIENT_ID`], [`auth::CLIENT_SECRET`], [`auth::TENANT_ID`] and
//! [`auth::SUBSCRIPTION_ID`]; the authority can be changed with [`auth::AUTHORITY_HOST`] and
//! Resource Manager with [`api::RESOURCE_MANAGER_URL`].
//!
//! What a runner gets: one resource group `cml-<name>` (see [`group_name`]) in the location
//! `--cloud-region` resolved to, holding a virtual network with one subnet, a network security
//! group with no inbound rule (the machine only dials out), a static Standard public IP, a NIC
//! and the VM (Ubuntu 24.04 LTS unless `--cloud-image`; its OS disk is deleted with it; boot
//! diagnostics on, for the console output). Everything carries the owner tags (`cml:id`, ...).
//! The resource group is recorded in the teardown ledger before it is asked for: its name is
//! ours, so a lost answer leaves nothing untracked; deleting it deletes everything in it.
//!
//! Self-removal without the user's secret: the VM has a system-assigned managed identity, which
//! the launcher gives the built-in role Contributor on the runner's resource group only
//! ([`MACHINE_ROLE`]); the machine then deletes its own group with its identity's token
//! ([`AzureHost`]). Contributor, not Virtual Machine Contributor: the machine must delete the
//! whole group (network, address, disk), which the latter may not. When the launcher may not
//! assign roles, everything is deleted and the error names
//! `Microsoft.Authorization/roleAssignments/write` (unless the caller opted out with
//! [`AzureProvider::with_machine_role`]).
//!
//! Spot: `priority: Spot`, `evictionPolicy: Delete`, `billingProfile.maxPrice` from
//! `--cloud-spot-price` (-1: up to the on-demand price). Capacity errors move to zones 1, 2, 3
//! in turn, then to an on-demand machine with `--cloud-spot-fallback`. Azure has no
//! cloud-side lifetime for a VM: `--cloud-max-lifetime` is the startup script's timer alone.

pub mod api;
pub mod auth;
pub mod host;

pub use api::Arm;
pub use auth::{ClientSecret, TokenSource, Tokens};
pub use host::AzureHost;

use crate::{CloudError, Created, Machine, MachineSpec, OwnedResource, Provider, Resource};
use api::{ApiError, COMPUTE_API, NETWORK_API, RESOURCES_API};
use async_trait::async_trait;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The built-in role the machine's identity gets on its resource group: Contributor (see
/// `cml_core::azure::MACHINE_ROLE` for why).
pub use cml_core::azure::MACHINE_ROLE;
/// The permission the launcher needs to give the machine its role.
pub const ROLE_ASSIGNMENT_PERMISSION: &str = "Microsoft.Authorization/roleAssignments/write";
/// Azure's limit on `osProfile.customData` (base64 characters).
pub const CUSTOM_DATA_LIMIT: usize = 87_380;
/// The admin user of the machine (password login disabled; its SSH key only).
pub const ADMIN_USER: &str = "ubuntu";
/// Zones tried in turn.
pub use cml_core::azure::ZONES;
/// Error codes meaning "no capacity here now": another zone may have it.
pub const CAPACITY_CODES: &[&str] = &[
    "SkuNotAvailable",
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest",
];
/// The default image: Canonical's Ubuntu 24.04 LTS.
pub use cml_core::azure::DEFAULT_IMAGE;
/// The option the caller offers to run without the role assignment (the machine then
/// deletes itself with credentials the caller gives it).
pub const CREDENTIALS_ON_MACHINE_OPTION: &str = "--cloud-azure-credentials-on-machine";

const VM_TYPE: &str = "Microsoft.Compute/virtualMachines";
const VNET_TYPE: &str = "Microsoft.Network/virtualNetworks";
const NSG_TYPE: &str = "Microsoft.Network/networkSecurityGroups";
const PIP_TYPE: &str = "Microsoft.Network/publicIPAddresses";
const NIC_TYPE: &str = "Microsoft.Network/networkInterfaces";
const VNET: &str = "cml-vnet";
const SUBNET: &str = "default";
const NSG: &str = "cml-nsg";
const PIP: &str = "cml-ip";
const NIC: &str = "cml-nic";

/// The Azure provider of one location.
#[derive(Clone)]
pub struct AzureProvider {
    arm: Arm,
    location: String,
    poll_interval: Duration,
    destroy_timeout: Duration,
    operation_timeout: Duration,
    machine_role: bool,
}

impl std::fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProvider")
            .field("arm", &self.arm)
            .field("location", &self.location)
            .field("poll_interval", &self.poll_interval)
            .field("destroy_timeout", &self.destroy_timeout)
            .field("machine_role", &self.machine_role)
            .finish_non_exhaustive()
    }
}

impl AzureProvider {
    /// The provider of `location` with credentials and endpoints from the environment (see
    /// the module documentation). Nothing is asked of Azure yet.
    pub fn from_env(location: &str) -> Result<AzureProvider, CloudError> {
        Self::from_lookup(location, |k| std::env::var(k).ok())
    }

    /// As [`AzureProvider::from_env`], with variables read by `get`.
    pub fn from_lookup(
        location: &str,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<AzureProvider, CloudError> {
        let secret = ClientSecret::from_lookup(&get)?;
        let subscription = auth::subscription_from(&get)?;
        let endpoint = api::endpoint(get(api::RESOURCE_MANAGER_URL).as_deref());
        let tokens = Arc::new(Tokens::new(TokenSource::ClientSecret(secret)));
        Self::with_arm(location, Arm::new(&endpoint, &subscription, tokens))
    }

    /// The provider of `location` using `arm`.
    pub fn with_arm(location: &str, arm: Arm) -> Result<AzureProvider, CloudError> {
        let location =
            cml_core::azure::location(location).map_err(|e| CloudError::AzureOption {
                option: "cloud-region",
                value: location.to_string(),
                reason: e.to_string().lines().next().unwrap_or_default().to_string(),
                hint: "give a generic region (us-east, us-west, eu-north, eu-west) or an Azure location such as eastus or westeurope (`az account list-locations -o table`)".into(),
            })?;
        Ok(AzureProvider {
            arm,
            location,
            poll_interval: Duration::from_secs(2),
            destroy_timeout: Duration::from_secs(600),
            operation_timeout: Duration::from_secs(600),
            machine_role: true,
        })
    }

    /// How often it asks about an operation or a booting machine (default 2 s).
    pub fn with_poll_interval(mut self, interval: Duration) -> AzureProvider {
        self.poll_interval = interval;
        self
    }

    /// The bound of [`Provider::destroy`] (default 600 s: deleting a resource group takes
    /// minutes).
    pub fn with_destroy_timeout(mut self, timeout: Duration) -> AzureProvider {
        self.destroy_timeout = timeout;
        self
    }

    /// The longest wait for one long-running creation (default 600 s).
    pub fn with_operation_timeout(mut self, timeout: Duration) -> AzureProvider {
        self.operation_timeout = timeout;
        self
    }

    /// Whether the machine's identity is given [`MACHINE_ROLE`] on its resource group (the
    /// default). `false` is for callers that give the machine other means of deleting itself
    /// ([`CREDENTIALS_ON_MACHINE_OPTION`]); the machine's own identity then cannot.
    pub fn with_machine_role(mut self, assign: bool) -> AzureProvider {
        self.machine_role = assign;
        self
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn arm(&self) -> &Arm {
        &self.arm
    }

    /// PUTs `body` at `path` and follows its operation until `deadline`; answers the PUT's
    /// body.
    async fn put_wait(
        &self,
        path: &str,
        version: &str,
        body: &Value,
        deadline: Instant,
    ) -> Result<Value, ApiError> {
        let a = self.arm.put(path, version, body).await?;
        self.arm.wait(&a, self.poll_interval, deadline).await?;
        Ok(a.body)
    }

    /// Deletes resource group `rg` and waits for it to be gone, keeping the ledger true.
    async fn delete_group(&self, created: &Created, rg: &str) {
        let r = Resource::ResourceGroup(rg.to_string());
        let path = self.arm.group_id(rg);
        let answer = match self.arm.delete(&path, RESOURCES_API).await {
            Ok(a) => a,
            Err(e) if e.is_not_found() => return created.remove(&r),
            Err(e) => return failed(created, &r, e.to_string()),
        };
        created.deleting(&r);
        if answer.status == 200 || answer.status == 204 {
            return created.remove(&r);
        }
        // The caller bounds the whole teardown; this deadline only keeps the loop finite.
        let deadline = Instant::now() + self.destroy_timeout;
        match self.arm.wait(&answer, self.poll_interval, deadline).await {
            Ok(()) => {
                tracing::info!(resource_group = rg, "resource group deleted");
                created.remove(&r)
            }
            Err(e) => failed(created, &r, e.to_string()),
        }
    }

    /// The teardown itself, unbounded: every group at once.
    async fn destroy_all(&self, created: &Created) {
        let mut set = tokio::task::JoinSet::new();
        for r in created.list() {
            match r {
                Resource::ResourceGroup(rg) => {
                    let (me, c) = (self.clone(), created.clone());
                    set.spawn(async move { me.delete_group(&c, &rg).await });
                }
                other => failed(created, &other, "not an Azure resource".into()),
            }
        }
        while set.join_next().await.is_some() {}
    }

    /// After a failed creation: deletes what the ledger holds (bounded), so that the error
    /// can say nothing was left; when that fails, the ledger still says what is.
    async fn abandon(&self, created: &Created) {
        if tokio::time::timeout(self.destroy_timeout, self.destroy_all(created))
            .await
            .is_err()
        {
            tracing::warn!("deleting what a failed creation made did not finish in time");
        }
        for l in created.left() {
            tracing::warn!(resource = %l, "a failed creation left this behind");
        }
    }

    async fn instance_view(&self, rg: &str, vm: &str) -> Result<Value, ApiError> {
        self.arm
            .get(
                &format!("{}/instanceView", self.arm.resource_id(rg, VM_TYPE, vm)),
                COMPUTE_API,
            )
            .await
    }

    /// The VM's addresses: (public, private).
    async fn addresses(&self, rg: &str) -> (Option<String>, Option<String>) {
        let nic = self
            .arm
            .get(&self.arm.resource_id(rg, NIC_TYPE, NIC), NETWORK_API)
            .await
            .ok();
        let private = nic.as_ref().and_then(|n| {
            n["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
                .as_str()
                .map(str::to_string)
        });
        let public = self
            .arm
            .get(&self.arm.resource_id(rg, PIP_TYPE, PIP), NETWORK_API)
            .await
            .ok()
            .and_then(|p| p["properties"]["ipAddress"].as_str().map(str::to_string));
        (public, private)
    }

    /// Gives the VM's identity [`MACHINE_ROLE`] on `rg`.
    async fn assign_role(
        &self,
        rg: &str,
        principal: &str,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        let scope = self.arm.group_id(rg);
        let path = format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments/{}",
            uuid_v4()
        );
        let body = json!({"properties": {
            "roleDefinitionId": format!(
                "{}/providers/Microsoft.Authorization/roleDefinitions/{MACHINE_ROLE}",
                self.arm.subscription_path()
            ),
            "principalId": principal,
            // Given, so that a just-made identity is not refused for replication delay.
            "principalType": "ServicePrincipal",
        }});
        loop {
            match self.arm.put(&path, api::AUTHORIZATION_API, &body).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == "PrincipalNotFound" && Instant::now() < deadline => {
                    tracing::debug!(error = %e, "the identity is not known to the directory yet; asking again");
                    tokio::time::sleep(self.poll_interval).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates the group and everything in it but the VM; answers the NIC's id.
    async fn network(&self, rg: &str, tags: &Value, deadline: Instant) -> Result<String, ApiError> {
        let loc = &self.location;
        let nsg_id = self.arm.resource_id(rg, NSG_TYPE, NSG);
        // No inbound rule: Azure's default rules deny inbound traffic from the Internet.
        self.put_wait(
            &nsg_id,
            NETWORK_API,
            &json!({"location": loc, "tags": tags, "properties": {"securityRules": []}}),
            deadline,
        )
        .await?;
        let vnet_id = self.arm.resource_id(rg, VNET_TYPE, VNET);
        self.put_wait(
            &vnet_id,
            NETWORK_API,
            &json!({"location": loc, "tags": tags, "properties": {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [{"name": SUBNET, "properties": {
                    "addressPrefix": "10.0.0.0/24",
                    "networkSecurityGroup": {"id": nsg_id},
                }}],
            }}),
            deadline,
        )
        .await?;
        let pip_id = self.arm.resource_id(rg, PIP_TYPE, PIP);
        self.put_wait(
            &pip_id,
            NETWORK_API,
            &json!({"location": loc, "tags": tags, "sku": {"name": "Standard"}, "properties": {
                "publicIPAllocationMethod": "Static",
                "publicIPAddressVersion": "IPv4",
            }}),
            deadline,
        )
        .await?;
        let nic_id = self.arm.resource_id(rg, NIC_TYPE, NIC);
        self.put_wait(
            &nic_id,
            NETWORK_API,
            &json!({"location": loc, "tags": tags, "properties": {
                "networkSecurityGroup": {"id": nsg_id},
                "ipConfigurations": [{"name": "ipconfig1", "properties": {
                    "subnet": {"id": format!("{vnet_id}/subnets/{SUBNET}")},
                    "privateIPAllocationMethod": "Dynamic",
                    "publicIPAddress": {"id": pip_id},
                }}],
            }}),
            deadline,
        )
        .await?;
        Ok(nic_id)
    }

    /// Deletes a VM whose creation failed (so another zone or model can be asked for).
    async fn delete_vm(&self, rg: &str, vm: &str, deadline: Instant) -> Result<(), ApiError> {
        let path = self.arm.resource_id(rg, VM_TYPE, vm);
        match self.arm.delete(&path, COMPUTE_API).await {
            Ok(a) => self.arm.wait(&a, self.poll_interval, deadline).await,
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The creation after validation; on error the caller abandons what the ledger holds.
    async fn create_in(
        &self,
        spec: &MachineSpec,
        plan: &Plan,
        created: &Created,
    ) -> Result<Machine, CloudError> {
        let c = &spec.cloud;
        let rg = &plan.group;
        let launch_fail = |reason: String| CloudError::Launch {
            machine_type: c.machine_type.clone(),
            region: self.location.clone(),
            reason,
        };
        let deadline = Instant::now() + self.operation_timeout;
        let group_path = self.arm.group_id(rg);
        // The group's name is ours: recorded before it is asked for.
        created.push(Resource::ResourceGroup(rg.clone()));
        self.arm
            .put(
                &group_path,
                RESOURCES_API,
                &json!({"location": self.location, "tags": plan.tags}),
            )
            .await
            .map_err(|e| {
                e.into_cloud(|r| launch_fail(format!("creating the resource group {rg}: {r}")))
            })?;
        tracing::info!(resource_group = %rg, location = %self.location, "resource group created");
        let nic_id = self.network(rg, &plan.tags, deadline).await.map_err(|e| {
            e.into_cloud(|r| launch_fail(format!("creating the network of {rg}: {r}")))
        })?;
        let vm_path = self.arm.resource_id(rg, VM_TYPE, &plan.vm);
        let mut models = vec![c.spot];
        if c.spot && c.spot_fallback {
            models.push(false);
        }
        let mut zones: Vec<Option<&str>> = ZONES.iter().map(|z| Some(*z)).collect();
        let mut exhausted: Vec<String> = Vec::new();
        let mut last_reason = String::new();
        let quota = |reason: String| CloudError::AzureQuota {
            region: self.location.clone(),
            reason,
        };
        for &spot in &models {
            if !spot && c.spot {
                tracing::warn!(zones = ?exhausted, "no zone had spot capacity; launching an on-demand machine (--cloud-spot-fallback)");
            }
            let mut i = 0;
            while i < zones.len() {
                let zone = zones[i];
                i += 1;
                let body = plan.vm_body(&self.location, &nic_id, zone, spot, c.spot_price);
                let answer = match self.arm.put(&vm_path, COMPUTE_API, &body).await {
                    Ok(a) => a,
                    Err(ApiError::Credentials(e)) => return Err(*e),
                    Err(e) if e.refused() => {
                        let reason = e.to_string();
                        if is_quota(&e) {
                            return Err(quota(reason));
                        }
                        if CAPACITY_CODES.contains(&e.code()) {
                            tracing::info!(zone = ?zone, spot, "no capacity; trying the next zone");
                            exhausted.push(zone_label(zone, spot));
                            last_reason = reason;
                            continue;
                        }
                        if zone.is_some() && zones_unsupported(&e) {
                            tracing::info!("the location has no availability zones; asking for a machine without one");
                            zones = vec![None];
                            i = 0;
                            continue;
                        }
                        return Err(launch_fail(reason));
                    }
                    Err(e) => return Err(launch_fail(e.to_string())),
                };
                match self.arm.wait(&answer, self.poll_interval, deadline).await {
                    Ok(()) => {}
                    Err(ApiError::Credentials(e)) => return Err(*e),
                    Err(e) if is_quota(&e) => return Err(quota(e.to_string())),
                    Err(e) if CAPACITY_CODES.contains(&e.code()) => {
                        tracing::info!(zone = ?zone, spot, error = %e, "no capacity; trying the next zone");
                        exhausted.push(zone_label(zone, spot));
                        last_reason = e.to_string();
                        // A failed VM keeps its zone and priority: it goes before the next try.
                        self.delete_vm(rg, &plan.vm, deadline).await.map_err(|e| {
                            e.into_cloud(|r| {
                                launch_fail(format!("deleting the VM that found no capacity: {r}"))
                            })
                        })?;
                        continue;
                    }
                    Err(e) => return Err(launch_fail(e.to_string())),
                }
                let principal = match answer.body["identity"]["principalId"].as_str() {
                    Some(p) => p.to_string(),
                    None => self
                        .arm
                        .get(&vm_path, COMPUTE_API)
                        .await
                        .map_err(|e| e.into_cloud(launch_fail))?["identity"]["principalId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                };
                if self.machine_role {
                    if principal.is_empty() {
                        return Err(launch_fail(
                            "the VM has no system-assigned identity to give a role to".into(),
                        ));
                    }
                    self.assign_role(rg, &principal, deadline)
                        .await
                        .map_err(|e| match e {
                            ApiError::Credentials(e) => *e,
                            e if e.code() == "AuthorizationFailed" || matches!(e, ApiError::Status { status: 403, .. }) => {
                                CloudError::AzurePermission {
                                    operation: format!("giving the machine's managed identity the Contributor role on its resource group {rg}"),
                                    permission: ROLE_ASSIGNMENT_PERMISSION.into(),
                                    reason: e.to_string(),
                                    hint: format!("the machine deletes itself with that role; give the service principal of AZURE_CLIENT_ID a role holding {ROLE_ASSIGNMENT_PERMISSION} on the subscription (Owner, User Access Administrator, or Role Based Access Control Administrator), or pass {CREDENTIALS_ON_MACHINE_OPTION} to have the machine delete itself with your service principal's credentials instead; nothing was left behind"),
                                }
                            }
                            e => launch_fail(format!("giving the machine's identity its role: {e}")),
                        })?;
                    tracing::info!(resource_group = %rg, "the machine's identity may delete its resource group");
                }
                let machine = Machine {
                    id: format!("{rg}/{}", plan.vm),
                    region: self.location.clone(),
                    zone: zone.map(str::to_string),
                    machine_type: plan.size.clone(),
                    spot,
                    state: "Creating".into(),
                    public_ip: None,
                    private_ip: None,
                };
                tracing::info!(vm = %machine.id, size = %machine.machine_type, spot, zone = ?zone, "virtual machine created");
                return Ok(machine);
            }
        }
        let spot_only = c.spot && !c.spot_fallback;
        Err(CloudError::AzureCapacity {
            region: self.location.clone(),
            what: format!(
                "a {}{} machine",
                if spot_only { "spot " } else { "" },
                plan.size
            ),
            zones: exhausted.join(", "),
            reason: last_reason,
            hint: if spot_only {
                "pass --cloud-spot-fallback to accept an on-demand machine, try another region or size, or leave out --cloud-spot".into()
            } else {
                "try another region (--cloud-region) or size (--cloud-type), or try again later"
                    .into()
            },
        })
    }
}

fn zone_label(zone: Option<&str>, spot: bool) -> String {
    format!(
        "{}{}",
        zone.map_or("no zone".to_string(), |z| format!("zone {z}")),
        if spot { " (spot)" } else { "" }
    )
}

fn is_quota(e: &ApiError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    (e.code() == "OperationNotAllowed" || e.code() == "QuotaExceeded") && text.contains("quota")
}

fn zones_unsupported(e: &ApiError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    matches!(
        e.code(),
        "InvalidParameter" | "ZonesNotSupported" | "BadRequest"
    ) && text.contains("zone")
        && (text.contains("not supported") || text.contains("not available"))
}

fn failed(created: &Created, r: &Resource, reason: String) {
    tracing::warn!(resource = %r, %reason, "teardown step failed; continuing");
    created.failed(r, &reason);
}

/// The name of runner `runner`'s resource group: `cml-<runner>` when that is a valid resource
/// group name (letters, digits, `_`, `-`, `.`, `(`, `)`, at most 90 characters, not ending in
/// `.`), else its sanitized form cut short and followed by `-` and 16 hex digits of the
/// SHA-256 of the runner name, so two runner names never share a group.
pub fn group_name(runner: &str) -> String {
    cml_core::azure::resource_group(runner)
}

/// The VM's name (and host name) for runner `runner`: `cml-<runner>` when it is made of
/// lowercase letters, digits and `-` within 64 characters (Linux host names), else sanitized
/// and followed by a hash as [`group_name`] does.
pub fn vm_name(runner: &str) -> String {
    let raw = format!("cml-{runner}");
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if raw.len() <= 64 && raw.chars().all(ok) && !raw.ends_with('-') {
        return raw;
    }
    let mut head: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if ok(c) {
                c
            } else {
                '-'
            }
        })
        .take(47)
        .collect();
    while head.ends_with('-') {
        head.pop();
    }
    format!("{head}-{}", cml_core::gcp::short_hash(runner))
}

fn tags_json(tags: &[(String, String)]) -> Value {
    Value::Object(
        tags.iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<Map<_, _>>(),
    )
}

/// `--cloud-image`: `publisher:offer:sku:version` (as the Azure CLI takes it), or an image
/// resource id (`/subscriptions/...`); by default [`DEFAULT_IMAGE`]. The `imageReference`.
pub fn image_reference(image: Option<&str>) -> Result<Value, CloudError> {
    let Some(image) = image.map(str::trim).filter(|s| !s.is_empty()) else {
        let i = DEFAULT_IMAGE;
        return Ok(
            json!({"publisher": i.publisher, "offer": i.offer, "sku": i.sku, "version": i.version}),
        );
    };
    if image.to_ascii_lowercase().starts_with("/subscriptions/") {
        return Ok(json!({ "id": image }));
    }
    let parts: Vec<&str> = image.split(':').collect();
    if parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && !p.contains(char::is_whitespace))
    {
        return Ok(
            json!({"publisher": parts[0], "offer": parts[1], "sku": parts[2], "version": parts[3]}),
        );
    }
    Err(CloudError::AzureOption {
        option: "cloud-image",
        value: image.to_string(),
        reason: "neither PUBLISHER:OFFER:SKU:VERSION nor an image resource id".into(),
        hint: "give an image as the Azure CLI names it, such as Canonical:ubuntu-24_04-lts:server:latest, or the id of an image (/subscriptions/.../images/NAME)".into(),
    })
}

/// `--cloud-permission-set`: the resource id of a user-assigned managed identity
/// (`/subscriptions/S/resourceGroups/G/providers/Microsoft.ManagedIdentity/userAssignedIdentities/N`).
pub fn user_identity(permission_set: Option<&str>) -> Result<Option<String>, CloudError> {
    let Some(v) = permission_set.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let parts: Vec<&str> = v.trim_start_matches('/').split('/').collect();
    let ok = v.starts_with('/')
        && parts.len() == 8
        && parts[0].eq_ignore_ascii_case("subscriptions")
        && parts[2].eq_ignore_ascii_case("resourceGroups")
        && parts[4].eq_ignore_ascii_case("providers")
        && parts[5].eq_ignore_ascii_case("Microsoft.ManagedIdentity")
        && parts[6].eq_ignore_ascii_case("userAssignedIdentities")
        && parts
            .iter()
            .all(|p| !p.is_empty() && !p.contains(char::is_whitespace));
    if ok {
        Ok(Some(v.to_string()))
    } else {
        Err(CloudError::AzureOption {
            option: "cloud-permission-set",
            value: v.to_string(),
            reason: "not the resource id of a user-assigned managed identity".into(),
            hint: "give /subscriptions/SUBSCRIPTION/resourceGroups/GROUP/providers/Microsoft.ManagedIdentity/userAssignedIdentities/NAME (`az identity show --query id`)".into(),
        })
    }
}

/// Checks a VM size's shape (`Standard_F8s_v2`); Azure says whether it exists.
fn check_size(size: &str) -> Result<(), CloudError> {
    let ok = cml_core::azure::is_native_size(size);
    if ok {
        return Ok(());
    }
    Err(CloudError::AzureOption {
        option: "cloud-type",
        value: size.to_string(),
        reason: "not an Azure VM size".into(),
        hint: "give a generic type (s, m, l, xl, with --cloud-gpu) or an Azure size such as Standard_F8s_v2 (`az vm list-sizes --location LOCATION`)".into(),
    })
}

/// `osProfile.customData` of `spec`: its startup script in base64.
fn custom_data(spec: &MachineSpec) -> String {
    base64::engine::general_purpose::STANDARD.encode(spec.user_data.as_bytes())
}

/// Checks the startup script against Azure's customData limit before anything is created.
pub fn check_custom_data(spec: &MachineSpec) -> Result<(), CloudError> {
    let chars = custom_data(spec).len();
    if chars <= CUSTOM_DATA_LIMIT {
        return Ok(());
    }
    let user = spec.cloud.startup_script.as_ref().map_or(0, |s| s.len());
    let (cause, hint) = if user > 0 {
        (
            format!(
                ": --cloud-startup-script makes {} bytes of the {} bytes of the script",
                user.min(spec.user_data.len()),
                spec.user_data.len()
            ),
            "shorten --cloud-startup-script, for example by having it download the longer part"
                .to_string(),
        )
    } else {
        (
            String::new(),
            "pass fewer or shorter runner options and forwarded variables (labels, --docker-volumes, --cloud-metadata)".to_string(),
        )
    };
    Err(CloudError::CustomDataTooLarge {
        chars,
        limit: CUSTOM_DATA_LIMIT,
        cause,
        hint,
    })
}

/// An OpenSSH public key line of a key pair made now and forgotten: Azure requires a key
/// for a Linux VM with password login disabled; nobody can log in with this one.
fn throwaway_public_key() -> Result<String, CloudError> {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let key = Ed25519KeyPair::generate().map_err(|_| CloudError::SshKey {
        reason: "generating a throwaway Ed25519 key failed".into(),
    })?;
    let mut blob = Vec::new();
    for part in [b"ssh-ed25519".as_slice(), key.public_key().as_ref()] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    Ok(format!(
        "ssh-ed25519 {} cml-throwaway",
        base64::engine::general_purpose::STANDARD.encode(blob)
    ))
}

/// A random UUID (version 4): role assignment names.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // Never expected; the clock and a counter still make it unique per process.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            ^ ((COUNTER.fetch_add(1, Ordering::Relaxed) as u128) << 64);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Everything of a VM body but the zone and priority.
struct Plan {
    group: String,
    vm: String,
    size: String,
    image: Value,
    tags: Value,
    custom_data: String,
    ssh_public: String,
    user_identity: Option<String>,
    disk_gb: u32,
}

impl Plan {
    fn vm_body(
        &self,
        location: &str,
        nic_id: &str,
        zone: Option<&str>,
        spot: bool,
        spot_price: Option<f64>,
    ) -> Value {
        let identity = match &self.user_identity {
            None => json!({"type": "SystemAssigned"}),
            Some(id) => json!({
                "type": "SystemAssigned, UserAssigned",
                "userAssignedIdentities": { id.as_str(): {} },
            }),
        };
        let mut body = json!({
            "location": location,
            "tags": self.tags,
            "identity": identity,
            "properties": {
                "hardwareProfile": {"vmSize": self.size},
                "storageProfile": {
                    "imageReference": self.image,
                    "osDisk": {
                        "createOption": "FromImage",
                        "diskSizeGB": self.disk_gb,
                        "deleteOption": "Delete",
                        "managedDisk": {"storageAccountType": "Premium_LRS"},
                    },
                },
                "osProfile": {
                    "computerName": self.vm,
                    "adminUsername": ADMIN_USER,
                    "customData": self.custom_data,
                    "linuxConfiguration": {
                        "disablePasswordAuthentication": true,
                        "ssh": {"publicKeys": [{
                            "path": format!("/home/{ADMIN_USER}/.ssh/authorized_keys"),
                            "keyData": self.ssh_public,
                        }]},
                    },
                },
                "networkProfile": {"networkInterfaces": [{
                    "id": nic_id,
                    "properties": {"primary": true, "deleteOption": "Delete"},
                }]},
                // Managed storage: no storage account of ours.
                "diagnosticsProfile": {"bootDiagnostics": {"enabled": true}},
            },
        });
        if spot {
            let p = &mut body["properties"];
            p["priority"] = json!("Spot");
            p["evictionPolicy"] = json!("Delete");
            p["billingProfile"] = json!({"maxPrice": spot_price.unwrap_or(-1.0)});
        }
        if let Some(z) = zone {
            body["zones"] = json!([z]);
        }
        body
    }
}

/// A VM's power state (`PowerState/running`) in the vocabulary of [`OwnedResource::state`].
pub fn power_state(code: &str) -> &'static str {
    match code.strip_prefix("PowerState/").unwrap_or(code) {
        "running" => "running",
        "starting" => "pending",
        "stopping" | "deallocating" => "stopping",
        "stopped" | "deallocated" => "stopped",
        _ => "pending",
    }
}

/// The power state code of an instance view (`PowerState/...`), if it has one.
fn power_code(view: &Value) -> Option<String> {
    view["statuses"]
        .as_array()?
        .iter()
        .filter_map(|s| s["code"].as_str())
        .find(|c| c.starts_with("PowerState/"))
        .map(str::to_string)
}

/// Time since the RFC 3339 time `v`.
fn age_since(v: &Value) -> Option<Duration> {
    let t =
        time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339)
            .ok()?;
    let ms = (time::OffsetDateTime::now_utc() - t).whole_milliseconds();
    Some(Duration::from_millis(ms.max(0) as u64))
}

/// `RG/VM` → (rg, vm).
fn split_id(id: &str) -> Option<(String, String)> {
    let (g, v) = id.split_once('/')?;
    (!g.is_empty() && !v.is_empty() && !v.contains('/')).then(|| (g.to_string(), v.to_string()))
}

/// The error for what teardown left, or `Ok` when nothing but groups being deleted is.
fn teardown_outcome(
    region: &str,
    created: &Created,
    timeout: Option<Duration>,
) -> Result<(), CloudError> {
    let left = created.left();
    if left.iter().all(|l| l.deleting && l.failure.is_none()) {
        for l in &left {
            tracing::info!(resource = %l.resource, "deletion accepted; Azure finishes it on its own");
        }
        return Ok(());
    }
    let lines: Vec<String> = left.iter().map(|l| format!("  - {l}")).collect();
    Err(CloudError::AzureIncomplete {
        region: region.to_string(),
        why: match timeout {
            Some(t) => format!(" within {} s", t.as_secs_f64().ceil() as u64),
            None => String::new(),
        },
        left: lines.join("\n"),
    })
}

#[async_trait]
impl Provider for AzureProvider {
    fn name(&self) -> &'static str {
        "azure"
    }

    /// The location.
    fn region(&self) -> &str {
        &self.location
    }

    async fn create(&self, spec: &MachineSpec, created: &Created) -> Result<Machine, CloudError> {
        let c = &spec.cloud;
        // Everything that can fail without creating anything comes first.
        check_size(&c.machine_type)?;
        let image = image_reference(c.image.as_deref())?;
        let user_identity = user_identity(c.permission_set.as_deref())?;
        check_custom_data(spec)?;
        let ssh_public = match &spec.ssh_private_key {
            Some(k) => crate::sshkey::public_key_openssh(k.expose())?,
            None => throwaway_public_key()?,
        };
        if spec.max_lifetime.is_some() {
            tracing::debug!(
                "Azure has no lifetime for a VM; the startup script enforces --cloud-max-lifetime"
            );
        }
        let plan = Plan {
            group: group_name(&spec.name),
            vm: vm_name(&spec.name),
            size: c.machine_type.clone(),
            image,
            tags: tags_json(&cml_core::azure::tags(&spec.tags)),
            custom_data: custom_data(spec),
            ssh_public,
            user_identity,
            disk_gb: c.hdd_size_gb,
        };
        // A group of that name may be another runner's: never taken over.
        match self
            .arm
            .get_opt(&self.arm.group_id(&plan.group), RESOURCES_API)
            .await
        {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Err(CloudError::AzureResourceGroupExists {
                    name: plan.group.clone(),
                    region: self.location.clone(),
                })
            }
            Err(e) => {
                return Err(e.into_cloud(|reason| CloudError::Launch {
                    machine_type: c.machine_type.clone(),
                    region: self.location.clone(),
                    reason: format!("reading the resource group {}: {reason}", plan.group),
                }))
            }
        }
        match self.create_in(spec, &plan, created).await {
            Ok(m) => Ok(m),
            Err(e) => {
                self.abandon(created).await;
                Err(e)
            }
        }
    }

    async fn wait_running(
        &self,
        machine: &Machine,
        timeout: Duration,
    ) -> Result<Machine, CloudError> {
        let (rg, vm) = split_id(&machine.id).ok_or_else(|| CloudError::Wait {
            id: machine.id.clone(),
            reason: "not a RESOURCE_GROUP/VM id".into(),
        })?;
        let deadline = Instant::now() + timeout;
        let mut last = machine.state.clone();
        loop {
            match self.instance_view(&rg, &vm).await {
                Ok(view) => {
                    let failed_provisioning = view["statuses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s["code"].as_str())
                        .find(|c| {
                            c.eq_ignore_ascii_case("ProvisioningState/failed")
                                || c.to_ascii_lowercase()
                                    .starts_with("provisioningstate/failed/")
                        });
                    if let Some(code) = failed_provisioning {
                        return Err(CloudError::Wait {
                            id: machine.id.clone(),
                            reason: format!("the VM's provisioning failed ({code})"),
                        });
                    }
                    match power_code(&view) {
                        Some(code) if code == "PowerState/running" => {
                            let (public_ip, private_ip) = self.addresses(&rg).await;
                            return Ok(Machine {
                                state: "running".into(),
                                public_ip,
                                private_ip,
                                ..machine.clone()
                            });
                        }
                        Some(code)
                            if [
                                "PowerState/stopped",
                                "PowerState/deallocated",
                                "PowerState/deallocating",
                            ]
                            .contains(&code.as_str()) =>
                        {
                            return Err(CloudError::Wait {
                                id: machine.id.clone(),
                                reason: format!("the VM is {code}"),
                            })
                        }
                        Some(code) => last = code,
                        None => last = "no power state yet".into(),
                    }
                }
                Err(ApiError::Credentials(e)) => return Err(*e),
                Err(e) if e.is_not_found() => last = "not visible (deleted?)".into(),
                Err(e) => {
                    tracing::debug!(vm = %machine.id, error = %e, "reading the VM failed; retrying")
                }
            }
            if Instant::now() >= deadline {
                return Err(CloudError::WaitTimeout {
                    id: machine.id.clone(),
                    seconds: timeout.as_secs(),
                    state: last,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(self.poll_interval.min(left)).await;
        }
    }

    /// Deletes every recorded resource group (which deletes everything in it), all at once,
    /// waiting for each deletion to end. A group already gone counts as deleted; a deletion
    /// accepted but not seen to end within the bound stays in the ledger as under way.
    async fn destroy(&self, created: &Created) -> Result<(), CloudError> {
        let timed_out = tokio::time::timeout(self.destroy_timeout, self.destroy_all(created))
            .await
            .is_err();
        teardown_outcome(
            &self.location,
            created,
            timed_out.then_some(self.destroy_timeout),
        )
    }

    /// One entry per resource group carrying [`crate::OWNER_TAG`] in this provider's
    /// location: [`Resource::ResourceGroup`], its owner and scope tags, and the state of the
    /// VM in it (its power state in the shared vocabulary; `shutting-down` while it is being
    /// deleted; `available` when the group holds no VM — a launch that never got as far, or a
    /// machine that is gone, whose network and address still bill). The age is the VM's
    /// `timeCreated` (Resource Manager gives none for groups), `None` without a VM.
    async fn list_owned(&self) -> Result<Vec<OwnedResource>, CloudError> {
        let fail = |e: ApiError| {
            e.into_cloud(|reason| CloudError::List {
                region: self.location.clone(),
                reason,
            })
        };
        let filter = format!("tagName eq '{}'", crate::OWNER_TAG);
        let groups = self
            .arm
            .list(
                &format!("{}/resourcegroups", self.arm.subscription_path()),
                RESOURCES_API,
                &[("$filter", filter.as_str())],
            )
            .await
            .map_err(fail)?;
        let vm_filter = format!("resourceType eq '{VM_TYPE}'");
        let vms = self
            .arm
            .list(
                &format!("{}/resources", self.arm.subscription_path()),
                RESOURCES_API,
                &[("$filter", vm_filter.as_str())],
            )
            .await
            .map_err(fail)?;
        let mut found = Vec::new();
        for g in &groups {
            let Some(name) = g["name"].as_str() else {
                continue;
            };
            if !g["location"]
                .as_str()
                .is_some_and(|l| l.eq_ignore_ascii_case(&self.location))
            {
                continue;
            }
            let tag = |k: &str| {
                g["tags"]
                    .as_object()
                    .and_then(|t| t.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)))
                    .and_then(|(_, v)| v.as_str())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            let Some(owner) = tag("cml:runner").or_else(|| tag(crate::OWNER_TAG)) else {
                continue;
            };
            let prefix = format!("{}/", self.arm.group_id(name)).to_ascii_lowercase();
            let vm = vms.iter().find(|v| {
                v["id"]
                    .as_str()
                    .is_some_and(|id| id.to_ascii_lowercase().starts_with(&prefix))
            });
            let (state, age) = match vm.and_then(|v| v["name"].as_str()) {
                None => ("available".to_string(), None),
                Some(vm_name) => {
                    let path = self.arm.resource_id(name, VM_TYPE, vm_name);
                    let body = self.arm.get_opt(&path, COMPUTE_API).await.map_err(fail)?;
                    let provisioning = body
                        .as_ref()
                        .and_then(|b| b["properties"]["provisioningState"].as_str())
                        .unwrap_or_default()
                        .to_string();
                    let age = body
                        .as_ref()
                        .and_then(|b| age_since(&b["properties"]["timeCreated"]));
                    let state = if body.is_none() {
                        "available".to_string()
                    } else if provisioning == "Deleting"
                        || g["properties"]["provisioningState"] == "Deleting"
                    {
                        "shutting-down".to_string()
                    } else {
                        match self.instance_view(name, vm_name).await {
                            Ok(view) => power_code(&view)
                                .map_or("pending", |c| power_state(&c))
                                .to_string(),
                            Err(e) if e.is_not_found() => "available".to_string(),
                            Err(e) => return Err(fail(e)),
                        }
                    };
                    (state, age)
                }
            };
            found.push(OwnedResource {
                resource: Resource::ResourceGroup(name.to_string()),
                owner,
                scope: tag(crate::SCOPE_TAG),
                state: Some(state),
                age,
                used_by: None,
            });
        }
        Ok(found)
    }

    /// The serial log of boot diagnostics; `None` when the VM has none (boot diagnostics off,
    /// or the VM gone). The log is read from its blob URL without the Resource Manager token.
    async fn console_output(&self, machine: &Machine) -> Result<Option<String>, CloudError> {
        let (rg, vm) = split_id(&machine.id).ok_or_else(|| CloudError::Console {
            id: machine.id.clone(),
            reason: "not a RESOURCE_GROUP/VM id".into(),
        })?;
        let fail = |reason: String| CloudError::Console {
            id: machine.id.clone(),
            reason,
        };
        let path = format!(
            "{}/retrieveBootDiagnosticsData",
            self.arm.resource_id(&rg, VM_TYPE, &vm)
        );
        let answer = match self
            .arm
            .call(
                reqwest::Method::POST,
                &path,
                Some(COMPUTE_API),
                &[("sasUriExpirationTimeInMinutes", "10")],
                None,
            )
            .await
        {
            Ok(a) => a,
            Err(e) if e.is_not_found() || e.code() == "OperationNotAllowed" => {
                tracing::info!(vm = %machine.id, error = %e, "no boot diagnostics to read");
                return Ok(None);
            }
            Err(e) => return Err(e.into_cloud(fail)),
        };
        let Some(url) = answer.body["serialConsoleLogBlobUri"].as_str() else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .connect_timeout(api::CONNECT_TIMEOUT)
            .timeout(api::ATTEMPT_TIMEOUT)
            .build()
            .unwrap_or_default();
        let resp = http
            .get(url)
            .send()
            .await
            .map_err(|e| fail(auth::transport_reason(&e)))?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(fail(format!(
                "reading the serial log: HTTP {}",
                resp.status().as_u16()
            )));
        }
        let text = resp
            .text()
            .await
            .map_err(|e| fail(auth::transport_reason(&e)))?;
        Ok((!text.is_empty()).then_some(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_and_vm_names_are_valid_and_distinct() {
        assert_eq!(group_name("runner-1"), "cml-runner-1");
        assert_eq!(vm_name("runner-1"), "cml-runner-1");
        let long = "x".repeat(200);
        for n in ["My Runner/1", "UPPER", &long, "a.", "ünïcode"] {
            let g = group_name(n);
            assert!(
                g.len() <= 90 && g.starts_with("cml-") && !g.ends_with('.'),
                "{g}"
            );
            assert!(
                g.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.()".contains(c)),
                "{g}"
            );
            let v = vm_name(n);
            assert!(v.len() <= 64 && !v.ends_with('-'), "{v}");
            assert!(
                v.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{v}"
            );
        }
        assert_ne!(group_name("a b"), group_name("a/b"));
        assert_ne!(vm_name("A"), vm_name("a_"));
    }

    #[test]
    fn images_parse_as_the_azure_cli_names_them() {
        assert_eq!(
            image_reference(None).unwrap(),
            json!({"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"})
        );
        assert_eq!(
            image_reference(Some(
                "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest"
            ))
            .unwrap()["sku"],
            "22_04-lts-gen2"
        );
        assert_eq!(
            image_reference(Some(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/i"
            ))
            .unwrap()["id"],
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/i"
        );
        for bad in ["ubuntu", "a:b:c", "ami-123", "a::b:c"] {
            let e = image_reference(Some(bad)).unwrap_err().to_string();
            assert!(
                e.contains("--cloud-image") && e.contains("nothing was created"),
                "{e}"
            );
        }
    }

    #[test]
    fn permission_sets_are_user_assigned_identities() {
        assert_eq!(user_identity(None).unwrap(), None);
        let id = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/runner";
        assert_eq!(user_identity(Some(id)).unwrap().as_deref(), Some(id));
        for bad in [
            "runner@p.iam.gserviceaccount.com",
            "arn:aws:iam::1:instance-profile/x",
            "/subscriptions/s/resourceGroups/g",
        ] {
            let e = user_identity(Some(bad)).unwrap_err().to_string();
            assert!(
                e.contains("--cloud-permission-set") && e.contains("userAssignedIdentities"),
                "{e}"
            );
        }
    }

    #[test]
    fn power_states_map_to_the_shared_vocabulary() {
        for (s, want) in [
            ("PowerState/starting", "pending"),
            ("PowerState/running", "running"),
            ("PowerState/stopping", "stopping"),
            ("PowerState/deallocating", "stopping"),
            ("PowerState/stopped", "stopped"),
            ("PowerState/deallocated", "stopped"),
        ] {
            assert_eq!(power_state(s), want, "{s}");
        }
    }

    #[test]
    fn throwaway_keys_are_openssh_ed25519_and_differ() {
        let a = throwaway_public_key().unwrap();
        let b = throwaway_public_key().unwrap();
        assert!(a.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn uuids_are_v4() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, uuid_v4());
    }
}
