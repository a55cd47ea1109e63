//! The simulated subscription: resource groups, the resources in them, long-running
//! operations, role assignments, tokens, knobs; and what each served operation does to them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Instant, SystemTime};

use base64::Engine;
use serde_json::{json, Map, Value};

use super::contract::Contract;
use super::errors::ArmError;
use super::{AzureConfig, AzureFault, AzureRequest, CapacityError};
use crate::util::{random_hex, rfc3339};

pub(crate) const VM: &str = "Microsoft.Compute/virtualMachines";
pub(crate) const DISK: &str = "Microsoft.Compute/disks";
pub(crate) const VNET: &str = "Microsoft.Network/virtualNetworks";
pub(crate) const NSG: &str = "Microsoft.Network/networkSecurityGroups";
pub(crate) const PIP: &str = "Microsoft.Network/publicIPAddresses";
pub(crate) const NIC: &str = "Microsoft.Network/networkInterfaces";

/// Built-in role definition ids the simulator knows.
pub const ROLE_OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
pub const ROLE_CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
pub const ROLE_VM_CONTRIBUTOR: &str = "9980e02c-c2be-4d73-94e8-173b1dc7cf3c";
pub const ROLE_READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

/// Whether built-in role `role` (a definition id) allows `action`, per the role's published
/// `actions`/`notActions`: Owner everything; Contributor everything but
/// `Microsoft.Authorization/*/Write|Delete`; Virtual Machine Contributor the virtual machines,
/// reads and network joins (not deleting the resource group); Reader reads.
pub fn role_allows(role: &str, action: &str) -> bool {
    let a = action.to_ascii_lowercase();
    match role {
        ROLE_OWNER => true,
        ROLE_CONTRIBUTOR => {
            !(a.starts_with("microsoft.authorization/")
                && (a.ends_with("/write") || a.ends_with("/delete")))
        }
        ROLE_VM_CONTRIBUTOR => {
            a.starts_with("microsoft.compute/virtualmachines/")
                || a.starts_with("microsoft.compute/disks/")
                || a.ends_with("/read")
                || a.ends_with("/join/action")
        }
        ROLE_READER => a.ends_with("/read"),
        _ => false,
    }
}

pub(crate) struct Client {
    pub tenant: String,
    pub client_id: String,
    pub secret: String,
    pub object_id: String,
}

pub(crate) struct Token {
    pub principal: String,
    pub expires: Instant,
}

pub(crate) struct Group {
    pub name: String,
    pub location: String,
    pub tags: Map<String, Value>,
    pub deleting: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Starting,
    Running,
    /// Stopped by the guest: still allocated, still billed.
    Stopped,
    Deallocated,
}

pub(crate) struct Vm {
    pub vm_id: String,
    pub principal_id: Option<String>,
    pub custom_data: Option<Vec<u8>>,
    pub power: Power,
    pub spot: bool,
    pub eviction_policy: String,
    pub size: String,
    pub zone: Option<String>,
    pub events: Vec<Value>,
    pub incarnation: u64,
    pub evict_at: Option<Instant>,
    pub console: String,
    pub disk: Option<String>,
    pub disk_delete: bool,
}

pub(crate) struct Resource {
    pub rg: String,
    pub rtype: &'static str,
    pub name: String,
    pub location: String,
    /// The accepted request body (read-only fields dropped; `customData` removed).
    pub body: Value,
    /// `Creating`, `Updating`, `Succeeded`, `Failed`, `Deleting`.
    pub provisioning: String,
    pub etag: String,
    pub vm: Option<Vm>,
}

pub(crate) enum OpKind {
    /// Creating or updating a resource (index by rg/type/name).
    Put {
        rg: String,
        rtype: &'static str,
        name: String,
    },
    DeleteVm {
        rg: String,
        name: String,
    },
    DeleteGroup {
        rg: String,
    },
}

pub(crate) struct Op {
    pub kind: OpKind,
    pub started: SystemTime,
    pub done_at: Instant,
    pub done: bool,
    pub error: Option<ArmError>,
}

pub(crate) struct Assignment {
    pub name: String,
    pub scope: String,
    pub role: String,
    pub principal: String,
    pub principal_type: Option<String>,
    pub created: SystemTime,
}

pub(crate) struct CapacityRule {
    pub location: String,
    pub zone: Option<String>,
    pub size: Option<String>,
    pub spot_only: bool,
    pub error: CapacityError,
}

pub(crate) struct FaultRule {
    pub op: String,
    pub fault: AzureFault,
    pub left: Option<usize>,
}

pub(crate) struct State {
    pub cfg: AzureConfig,
    pub url: String,
    pub clients: Vec<Client>,
    pub tokens: HashMap<String, Token>,
    pub groups: BTreeMap<String, Group>,
    pub resources: Vec<Resource>,
    pub deleted_vms: Vec<String>,
    pub ops: HashMap<String, Op>,
    pub assignments: Vec<Assignment>,
    pub identities: HashMap<String, Instant>,
    pub denied: HashSet<(String, String)>,
    pub capacity: Vec<CapacityRule>,
    pub quotas: HashMap<(String, String), u32>,
    pub faults: Vec<FaultRule>,
    pub requests: Vec<AzureRequest>,
    pub grants: usize,
}

/// What a handler answers: status, extra headers, body (None: empty).
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }
    fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: None,
        }
    }
}

fn lc(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// vCPUs of a size name (`Standard_F8s_v2` → 8, `Standard_NC4as_T4_v3` → 4), if it has the
/// shape of an Azure size.
pub fn vcpus(size: &str) -> Option<u32> {
    let rest = size.strip_prefix("Standard_")?;
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    if start == 0 || !rest[..start].chars().all(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let digits: String = rest[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok().filter(|n| *n > 0)
}

impl State {
    pub fn new(cfg: AzureConfig, url: String) -> State {
        State {
            cfg,
            url,
            clients: Vec::new(),
            tokens: HashMap::new(),
            groups: BTreeMap::new(),
            resources: Vec::new(),
            deleted_vms: Vec::new(),
            ops: HashMap::new(),
            assignments: Vec::new(),
            identities: HashMap::new(),
            denied: HashSet::new(),
            capacity: Vec::new(),
            quotas: HashMap::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            grants: 0,
        }
    }

    pub fn sub_path(&self) -> String {
        format!("/subscriptions/{}", self.cfg.subscription)
    }

    pub fn group_id(&self, rg: &str) -> String {
        format!("{}/resourceGroups/{rg}", self.sub_path())
    }

    pub fn resource_id(&self, rg: &str, rtype: &str, name: &str) -> String {
        format!("{}/providers/{rtype}/{name}", self.group_id(rg))
    }

    pub fn issue_token(&mut self, principal: &str) -> String {
        // Shaped like a JWT (three base64url parts), as Entra ID's are; only the simulator
        // reads it.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!(
            "{}.{}.{}",
            b64.encode(br#"{"typ":"JWT","alg":"RS256"}"#),
            b64.encode(format!(
                r#"{{"oid":"{principal}","aud":"https://management.azure.com/"}}"#
            )),
            random_hex(43)
        );
        let expires = Instant::now() + self.cfg.token_ttl;
        self.tokens.insert(
            token.clone(),
            Token {
                principal: principal.into(),
                expires,
            },
        );
        token
    }

    pub fn principal_exists(&self, id: &str) -> bool {
        self.clients.iter().any(|c| c.object_id == id) || self.identities.contains_key(id)
    }

    /// Completes what is due: operations, evictions.
    pub fn advance(&mut self, now: Instant) {
        let due: Vec<String> = self
            .ops
            .iter()
            .filter(|(_, o)| !o.done && o.done_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for id in due {
            let (kind_is_delete_group, failed) = {
                let o = &self.ops[&id];
                (
                    matches!(o.kind, OpKind::DeleteGroup { .. }),
                    o.error.is_some(),
                )
            };
            let _ = kind_is_delete_group;
            let kind = match &self.ops[&id].kind {
                OpKind::Put { rg, rtype, name } => OpKind::Put {
                    rg: rg.clone(),
                    rtype,
                    name: name.clone(),
                },
                OpKind::DeleteVm { rg, name } => OpKind::DeleteVm {
                    rg: rg.clone(),
                    name: name.clone(),
                },
                OpKind::DeleteGroup { rg } => OpKind::DeleteGroup { rg: rg.clone() },
            };
            match kind {
                OpKind::Put { rg, rtype, name } => {
                    if let Some(r) = self.find_mut(&rg, rtype, &name) {
                        r.provisioning = if failed { "Failed" } else { "Succeeded" }.into();
                        if let Some(vm) = r.vm.as_mut() {
                            vm.power = if failed {
                                Power::Deallocated
                            } else {
                                Power::Running
                            };
                        }
                    }
                }
                OpKind::DeleteVm { rg, name } => self.remove_vm(&rg, &name),
                OpKind::DeleteGroup { rg } => {
                    let names: Vec<String> = self
                        .resources
                        .iter()
                        .filter(|r| lc(&r.rg) == lc(&rg) && r.rtype == VM)
                        .map(|r| r.name.clone())
                        .collect();
                    self.deleted_vms.extend(names);
                    self.resources.retain(|r| lc(&r.rg) != lc(&rg));
                    self.assignments.retain(|a| {
                        !lc(&a.scope).starts_with(&lc(&format!(
                            "/subscriptions/{}/resourceGroups/{rg}",
                            self.cfg.subscription
                        )))
                    });
                    self.groups.remove(&lc(&rg));
                }
            }
            if let Some(o) = self.ops.get_mut(&id) {
                o.done = true;
            }
        }
        let evicted: Vec<(String, String, String)> = self
            .resources
            .iter()
            .filter_map(|r| {
                let vm = r.vm.as_ref()?;
                (vm.evict_at? <= now)
                    .then(|| (r.rg.clone(), r.name.clone(), vm.eviction_policy.clone()))
            })
            .collect();
        for (rg, name, policy) in evicted {
            if policy.eq_ignore_ascii_case("Delete") {
                self.remove_vm_with_disk(&rg, &name);
            } else if let Some(vm) = self.find_mut(&rg, VM, &name).and_then(|r| r.vm.as_mut()) {
                vm.power = Power::Deallocated;
                vm.evict_at = None;
            }
        }
    }

    fn remove_vm(&mut self, rg: &str, name: &str) {
        let disk = self
            .find(rg, VM, name)
            .and_then(|r| r.vm.as_ref())
            .and_then(|v| v.disk_delete.then(|| v.disk.clone()).flatten());
        self.drop_vm(rg, name, disk);
    }

    fn remove_vm_with_disk(&mut self, rg: &str, name: &str) {
        let disk = self
            .find(rg, VM, name)
            .and_then(|r| r.vm.as_ref())
            .and_then(|v| v.disk.clone());
        self.drop_vm(rg, name, disk);
    }

    fn drop_vm(&mut self, rg: &str, name: &str, disk: Option<String>) {
        if self.find(rg, VM, name).is_none() {
            return;
        }
        self.resources.retain(|r| {
            let here = lc(&r.rg) == lc(rg);
            let the_vm = here && r.rtype == VM && lc(&r.name) == lc(name);
            let its_disk = here && r.rtype == DISK && Some(&r.name) == disk.as_ref();
            !(the_vm || its_disk)
        });
        self.deleted_vms.push(name.to_string());
    }

    pub fn find(&self, rg: &str, rtype: &str, name: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|r| lc(&r.rg) == lc(rg) && r.rtype == rtype && lc(&r.name) == lc(name))
    }

    pub fn find_mut(&mut self, rg: &str, rtype: &str, name: &str) -> Option<&mut Resource> {
        self.resources
            .iter_mut()
            .find(|r| lc(&r.rg) == lc(rg) && r.rtype == rtype && lc(&r.name) == lc(name))
    }

    /// The role check: the launcher's clients may do anything not taken away with
    /// `deny_action`; managed identities only what a role assignment on an enclosing scope
    /// grants.
    pub fn authorize(&self, principal: &str, action: &str, scope: &str) -> Result<(), ArmError> {
        let refuse = || ArmError::authorization_failed(principal, action, scope);
        if self.denied.contains(&(principal.to_string(), lc(action))) {
            return Err(refuse());
        }
        if self.clients.iter().any(|c| c.object_id == principal) {
            return Ok(());
        }
        let target = lc(scope);
        let granted = self.assignments.iter().any(|a| {
            let s = lc(&a.scope);
            a.principal == principal
                && (target == s || target.starts_with(&format!("{s}/")))
                && role_allows(&a.role, action)
        });
        if granted {
            Ok(())
        } else {
            Err(refuse())
        }
    }

    fn new_op(&mut self, kind: OpKind, error: Option<ArmError>) -> String {
        let id = format!(
            "{}-{}-{}-{}-{}",
            random_hex(8),
            random_hex(4),
            random_hex(4),
            random_hex(4),
            random_hex(12)
        );
        self.ops.insert(
            id.clone(),
            Op {
                kind,
                started: SystemTime::now(),
                done_at: Instant::now() + self.cfg.operation_step,
                done: false,
                error,
            },
        );
        id
    }

    /// `Azure-AsyncOperation` URL of operation `id` of provider `ns` in `location`.
    pub fn async_url(&self, ns: &str, location: &str, id: &str, monitor: bool) -> String {
        let version = Contract::bundled().api_version(if ns == "Microsoft.Compute" {
            "virtualMachines.get"
        } else {
            "networkInterfaces.get"
        });
        let monitor = if monitor { "monitor=true&" } else { "" };
        format!(
            "{}{}/providers/{ns}/locations/{location}/operations/{id}?{monitor}api-version={version}",
            self.url,
            self.sub_path()
        )
    }

    fn lro_headers(&self, ns: &str, location: &str, id: &str) -> Vec<(String, String)> {
        vec![
            (
                "Azure-AsyncOperation".into(),
                self.async_url(ns, location, id, false),
            ),
            ("Retry-After".into(), self.cfg.retry_after.to_string()),
        ]
    }

    // ----- resource groups -----

    pub fn render_group(&self, g: &Group) -> Value {
        let mut v = json!({
            "id": self.group_id(&g.name),
            "name": g.name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": g.location,
            "properties": {"provisioningState": if g.deleting { "Deleting" } else { "Succeeded" }},
        });
        if !g.tags.is_empty() {
            v["tags"] = Value::Object(g.tags.clone());
        }
        v
    }

    pub fn put_group(&mut self, rg: &str, body: &Value) -> Result<Reply, ArmError> {
        let location = body["location"].as_str().unwrap_or_default().to_string();
        self.check_location(&location, "Microsoft.Resources/resourceGroups")?;
        validate_tags(body)?;
        let tags = body["tags"].as_object().cloned().unwrap_or_default();
        let status = match self.groups.get_mut(&lc(rg)) {
            Some(g) if g.deleting => {
                return Err(ArmError::new(
                    409,
                    "ResourceGroupBeingDeleted",
                    format!("The resource group '{rg}' is in deprovisioning state and cannot perform this operation."),
                ))
            }
            Some(g) => {
                if !g.location.eq_ignore_ascii_case(&location) {
                    return Err(ArmError::new(
                        409,
                        "InvalidResourceGroupLocation",
                        format!("Invalid resource group location '{location}'. The Resource group already exists in location '{}'.", g.location),
                    ));
                }
                g.tags = tags;
                200
            }
            None => {
                self.groups.insert(
                    lc(rg),
                    Group {
                        name: rg.into(),
                        location,
                        tags,
                        deleting: false,
                    },
                );
                201
            }
        };
        let g = &self.groups[&lc(rg)];
        Ok(Reply::json(status, self.render_group(g)))
    }

    pub fn get_group(&self, rg: &str) -> Result<Reply, ArmError> {
        let g = self
            .groups
            .get(&lc(rg))
            .ok_or_else(|| ArmError::group_not_found(rg))?;
        Ok(Reply::json(200, self.render_group(g)))
    }

    pub fn head_group(&self, rg: &str) -> Reply {
        Reply::empty(if self.groups.contains_key(&lc(rg)) {
            204
        } else {
            404
        })
    }

    pub fn delete_group(&mut self, rg: &str) -> Result<Reply, ArmError> {
        let Some(g) = self.groups.get_mut(&lc(rg)) else {
            return Err(ArmError::group_not_found(rg));
        };
        g.deleting = true;
        for r in self.resources.iter_mut().filter(|r| lc(&r.rg) == lc(rg)) {
            r.provisioning = "Deleting".into();
        }
        let id = self.new_op(OpKind::DeleteGroup { rg: rg.into() }, None);
        let version = Contract::bundled().api_version("resourceGroups.delete");
        let mut r = Reply::empty(202);
        r.headers = vec![
            (
                "Location".into(),
                format!(
                    "{}{}/operationresults/{id}?api-version={version}",
                    self.url,
                    self.sub_path()
                ),
            ),
            ("Retry-After".into(), self.cfg.retry_after.to_string()),
        ];
        Ok(r)
    }

    /// `GET /subscriptions/{sub}/operationresults/{id}`: 202 while the group is deleted, 200
    /// after.
    pub fn operation_result(&self, id: &str) -> Result<Reply, ArmError> {
        let op = self.ops.get(id).ok_or_else(|| {
            ArmError::new(
                404,
                "OperationNotFound",
                format!("The operation '{id}' could not be found."),
            )
        })?;
        if op.done {
            return Ok(Reply::empty(200));
        }
        let mut r = Reply::empty(202);
        let version = Contract::bundled().api_version("resourceGroups.delete");
        r.headers = vec![
            (
                "Location".into(),
                format!(
                    "{}{}/operationresults/{id}?api-version={version}",
                    self.url,
                    self.sub_path()
                ),
            ),
            ("Retry-After".into(), self.cfg.retry_after.to_string()),
        ];
        Ok(r)
    }

    pub fn list_groups(&self, filter: &Filter) -> Value {
        let value: Vec<Value> = self
            .groups
            .values()
            .filter(|g| filter.tags_match(&g.tags) && filter.rtype.is_none())
            .map(|g| self.render_group(g))
            .collect();
        json!({ "value": value })
    }

    pub fn list_resources(&self, filter: &Filter) -> Value {
        let value: Vec<Value> = self
            .resources
            .iter()
            .filter(|r| {
                let tags = r.body["tags"].as_object().cloned().unwrap_or_default();
                filter.tags_match(&tags)
                    && filter
                        .rtype
                        .as_ref()
                        .is_none_or(|t| t.eq_ignore_ascii_case(r.rtype))
            })
            .map(|r| {
                let mut v = json!({
                    "id": self.resource_id(&r.rg, r.rtype, &r.name),
                    "name": r.name,
                    "type": r.rtype,
                    "location": r.location,
                });
                if let Some(t) = r.body["tags"].as_object().filter(|t| !t.is_empty()) {
                    v["tags"] = Value::Object(t.clone());
                }
                v
            })
            .collect();
        json!({ "value": value })
    }

    // ----- shared resource checks -----

    fn check_location(&self, location: &str, rtype: &str) -> Result<(), ArmError> {
        if self
            .cfg
            .locations
            .iter()
            .any(|l| l.eq_ignore_ascii_case(location))
        {
            return Ok(());
        }
        Err(ArmError::new(
            400,
            "LocationNotAvailableForResourceType",
            format!(
                "The provided location '{location}' is not available for resource type '{rtype}'. List of available regions for the resource type is '{}'.",
                self.cfg.locations.join(",")
            ),
        ))
    }

    fn group_for_write(&self, rg: &str) -> Result<&Group, ArmError> {
        match self.groups.get(&lc(rg)) {
            None => Err(ArmError::group_not_found(rg)),
            Some(g) if g.deleting => Err(ArmError::new(
                409,
                "ResourceGroupBeingDeleted",
                format!("The resource group '{rg}' is in deprovisioning state and cannot perform this operation."),
            )),
            Some(g) => Ok(g),
        }
    }

    /// `id` names an existing resource of type `rtype` (or a subnet, `.../virtualNetworks/V/subnets/S`).
    fn exists_by_id(&self, id: &str) -> bool {
        let parts: Vec<&str> = id.trim_start_matches('/').split('/').collect();
        // subscriptions/S/resourceGroups/RG/providers/NS/TYPE/NAME[/subnets/SUB]
        if parts.len() < 8
            || !parts[0].eq_ignore_ascii_case("subscriptions")
            || !parts[1].eq_ignore_ascii_case(&self.cfg.subscription)
            || !parts[2].eq_ignore_ascii_case("resourceGroups")
        {
            return false;
        }
        let rtype = format!("{}/{}", parts[5], parts[6]);
        let Some(r) = self.resources.iter().find(|r| {
            lc(&r.rg) == lc(parts[3]) && lc(r.rtype) == lc(&rtype) && lc(&r.name) == lc(parts[7])
        }) else {
            return false;
        };
        match parts.len() {
            8 => true,
            10 if r.rtype == VNET && parts[8].eq_ignore_ascii_case("subnets") => {
                r.body["properties"]["subnets"].as_array().is_some_and(|s| {
                    s.iter().any(|x| {
                        x["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(parts[9]))
                    })
                })
            }
            _ => false,
        }
    }

    fn reference_ids(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "id" {
                        if let Some(s) = x.as_str() {
                            out.push(s.to_string());
                        }
                    } else {
                        Self::reference_ids(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| Self::reference_ids(x, out)),
            _ => {}
        }
    }

    // ----- network resources -----

    pub fn put_network(
        &mut self,
        rg: &str,
        rtype: &'static str,
        name: &str,
        body: &Value,
    ) -> Result<Reply, ArmError> {
        self.group_for_write(rg)?;
        let location = body["location"].as_str().unwrap_or_default().to_string();
        if location.is_empty() {
            return Err(ArmError::new(
                400,
                "LocationRequired",
                "The location property is required for this definition.",
            ));
        }
        self.check_location(&location, rtype)?;
        validate_tags(body)?;
        let my_id = self.resource_id(rg, rtype, name);
        let mut refs = Vec::new();
        Self::reference_ids(&body["properties"], &mut refs);
        for r in refs {
            if !self.exists_by_id(&r) {
                return Err(ArmError::invalid_reference(&r, &my_id));
            }
        }
        let mut stored = body.clone();
        strip_read_only(&mut stored);
        let existed = self.find(rg, rtype, name).is_some();
        let provisioning = if existed { "Updating" } else { "Creating" };
        let etag = format!("W/\"{}\"", random_hex(32));
        if existed {
            let r = self.find_mut(rg, rtype, name).expect("exists");
            r.body = stored;
            r.provisioning = provisioning.into();
            r.etag = etag;
        } else {
            self.resources.push(Resource {
                rg: rg.into(),
                rtype,
                name: name.into(),
                location: location.clone(),
                body: stored,
                provisioning: provisioning.into(),
                etag,
                vm: None,
            });
        }
        let id = self.new_op(
            OpKind::Put {
                rg: rg.into(),
                rtype,
                name: name.into(),
            },
            None,
        );
        let r = self.find(rg, rtype, name).expect("just stored");
        let mut reply = Reply::json(if existed { 200 } else { 201 }, self.render(r));
        reply.headers = self.lro_headers("Microsoft.Network", &location, &id);
        Ok(reply)
    }

    pub fn get_resource(
        &self,
        rg: &str,
        rtype: &'static str,
        name: &str,
    ) -> Result<Reply, ArmError> {
        if !self.groups.contains_key(&lc(rg)) {
            return Err(ArmError::group_not_found(rg));
        }
        let r = self
            .find(rg, rtype, name)
            .ok_or_else(|| ArmError::resource_not_found(rtype, name, rg))?;
        Ok(Reply::json(200, self.render(r)))
    }

    /// A resource as GET answers it.
    pub fn render(&self, r: &Resource) -> Value {
        let id = self.resource_id(&r.rg, r.rtype, &r.name);
        let mut v = r.body.clone();
        v["id"] = json!(id);
        v["name"] = json!(r.name);
        v["type"] = json!(r.rtype);
        v["location"] = json!(r.location);
        if !v["properties"].is_object() {
            v["properties"] = json!({});
        }
        if r.rtype.starts_with("Microsoft.Network/") {
            v["etag"] = json!(r.etag);
        }
        let mut ident = v.get("identity").cloned();
        let p = &mut v["properties"];
        p["provisioningState"] = json!(r.provisioning);
        let guid = stable_guid(&id);
        match r.rtype {
            VNET => {
                p["resourceGuid"] = json!(guid);
                if let Some(subnets) = p["subnets"].as_array_mut() {
                    for s in subnets {
                        let sname = s["name"].as_str().unwrap_or_default().to_string();
                        s["id"] = json!(format!("{id}/subnets/{sname}"));
                        s["type"] = json!("Microsoft.Network/virtualNetworks/subnets");
                        s["etag"] = json!(r.etag);
                        if !s["properties"].is_object() {
                            s["properties"] = json!({});
                        }
                        s["properties"]["provisioningState"] = json!(r.provisioning);
                    }
                }
            }
            NSG => {
                p["resourceGuid"] = json!(guid);
                if !p["securityRules"].is_array() {
                    p["securityRules"] = json!([]);
                }
            }
            PIP => {
                p["resourceGuid"] = json!(guid);
                if r.provisioning == "Succeeded" {
                    let h = guid.as_bytes();
                    p["ipAddress"] =
                        json!(format!("20.{}.{}.{}", h[0] % 200 + 1, h[1], h[2] % 250 + 1));
                }
            }
            NIC => {
                p["resourceGuid"] = json!(guid);
                if let Some(cfgs) = p["ipConfigurations"].as_array_mut() {
                    for (i, c) in cfgs.iter_mut().enumerate() {
                        let cname = c["name"].as_str().unwrap_or_default().to_string();
                        c["id"] = json!(format!("{id}/ipConfigurations/{cname}"));
                        c["etag"] = json!(r.etag);
                        if !c["properties"].is_object() {
                            c["properties"] = json!({});
                        }
                        c["properties"]["provisioningState"] = json!(r.provisioning);
                        c["properties"]["privateIPAddress"] = json!(format!("10.0.0.{}", 4 + i));
                        if c["properties"]["privateIPAllocationMethod"].is_null() {
                            c["properties"]["privateIPAllocationMethod"] = json!("Dynamic");
                        }
                        c["properties"]["primary"] = json!(i == 0);
                    }
                }
                let vm = self.resources.iter().find(|x| {
                    x.rtype == VM
                        && x.body["properties"]["networkProfile"]["networkInterfaces"]
                            .as_array()
                            .is_some_and(|n| {
                                n.iter().any(|n| {
                                    n["id"]
                                        .as_str()
                                        .is_some_and(|s| s.eq_ignore_ascii_case(&id))
                                })
                            })
                });
                if let Some(vm) = vm {
                    p["virtualMachine"] = json!({"id": self.resource_id(&vm.rg, VM, &vm.name)});
                }
            }
            VM => {
                let vm = r.vm.as_ref().expect("a VM has its machine");
                p["vmId"] = json!(vm.vm_id);
                p["timeCreated"] = json!(rfc3339(SystemTime::now()));
                if let Some(os) = p["osProfile"].as_object_mut() {
                    // ARM never answers these.
                    os.remove("customData");
                    os.remove("adminPassword");
                    os.insert("requireGuestProvisionSignal".into(), json!(true));
                }
                if let Some(disk) = &vm.disk {
                    let d = &mut p["storageProfile"]["osDisk"];
                    d["name"] = json!(disk);
                    d["osType"] = json!("Linux");
                    d["managedDisk"]["id"] = json!(self.resource_id(&r.rg, DISK, disk));
                }
                if let Some(id) = ident.as_mut() {
                    if let Some(pid) = &vm.principal_id {
                        id["principalId"] = json!(pid);
                        id["tenantId"] = json!(self.cfg.tenant);
                    }
                    if let Some(uai) = id
                        .get_mut("userAssignedIdentities")
                        .and_then(Value::as_object_mut)
                    {
                        for (k, x) in uai.iter_mut() {
                            let g = stable_guid(k);
                            *x = json!({"principalId": g, "clientId": stable_guid(&g)});
                        }
                    }
                }
            }
            _ => {}
        }
        if let Some(id) = ident {
            v["identity"] = id;
        }
        v
    }

    // ----- virtual machines -----

    pub fn put_vm(&mut self, rg: &str, name: &str, body: &Value) -> Result<Reply, ArmError> {
        self.group_for_write(rg)?;
        let location = body["location"].as_str().unwrap_or_default().to_string();
        self.check_location(&location, VM)?;
        validate_tags(body)?;
        let props = &body["properties"];
        let size = props["hardwareProfile"]["vmSize"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let Some(cpus) = vcpus(&size) else {
            return Err(ArmError::invalid_parameter(
                format!("The value {size} provided for the VM size is not valid. The valid sizes in the current region are: {}.", self.cfg.sizes.join(",")),
                "vmSize",
            ));
        };
        let zones: Vec<String> = body["zones"]
            .as_array()
            .map(|z| {
                z.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if zones.len() > 1 {
            return Err(ArmError::invalid_parameter(
                "A single zone must be specified for a virtual machine.",
                "zones",
            ));
        }
        if let Some(z) = zones.first() {
            if !["1", "2", "3"].contains(&z.as_str()) {
                return Err(ArmError::invalid_parameter(
                    format!("The zone(s) '{z}' for resource '{name}' is not supported. The supported zones for location '{location}' are '1,2,3'"),
                    "zones",
                ));
            }
        }
        let os = &props["osProfile"];
        let custom_data = match os["customData"].as_str() {
            None => None,
            Some(cd) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(cd)
                    .ok()
                    .filter(|_| cd.len() <= 87_380)
                    .ok_or_else(|| {
                        ArmError::invalid_parameter(
                            "Custom data in OSProfile must be in Base64 encoding and with a maximum length of 87380 characters.",
                            "customData",
                        )
                    })?,
            ),
        };
        if os.is_object() && os["adminUsername"].as_str().unwrap_or_default().is_empty() {
            return Err(ArmError::invalid_parameter(
                "Required parameter 'adminUsername' is missing (null).",
                "adminUsername",
            ));
        }
        let my_id = self.resource_id(rg, VM, name);
        let nics = props["networkProfile"]["networkInterfaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if nics.is_empty() {
            return Err(ArmError::invalid_parameter(
                "Virtual Machine must have at least one network interface.",
                "networkProfile",
            ));
        }
        for n in &nics {
            let nid = n["id"].as_str().unwrap_or_default();
            if !self.exists_by_id(nid) {
                return Err(ArmError::new(
                    400,
                    "NotFound",
                    format!("Resource {nid} referenced by resource {my_id} was not found."),
                ));
            }
        }
        let priority = props["priority"].as_str().unwrap_or("Regular").to_string();
        let spot = priority.eq_ignore_ascii_case("Spot") || priority.eq_ignore_ascii_case("Low");
        if spot {
            if let Some(p) = props["billingProfile"]["maxPrice"].as_f64() {
                if p != -1.0 && p <= 0.0 {
                    return Err(ArmError::invalid_parameter(
                        "The maximum price must be -1 or greater than zero.",
                        "billingProfile.maxPrice",
                    ));
                }
            }
        } else if !props["evictionPolicy"].is_null() || !props["billingProfile"].is_null() {
            return Err(ArmError::invalid_parameter(
                "EvictionPolicy and BillingProfile can only be set for Spot/Low priority virtual machines.",
                "evictionPolicy",
            ));
        }
        // Capacity refused at once (SkuNotAvailable), or later in the operation.
        let zone = zones.first().cloned();
        let rule = self.capacity.iter().find(|c| {
            c.location.eq_ignore_ascii_case(&location)
                && c.zone.as_ref().is_none_or(|z| Some(z) == zone.as_ref())
                && c.size
                    .as_ref()
                    .is_none_or(|s| s.eq_ignore_ascii_case(&size))
                && (!c.spot_only || spot)
        });
        let mut async_error = None;
        if let Some(rule) = rule {
            let where_ = match &zone {
                Some(z) => format!("location '{location}' zone '{z}'"),
                None => format!("location '{location}'"),
            };
            match rule.error {
                CapacityError::SkuNotAvailable => {
                    return Err(ArmError::new(
                        409,
                        "SkuNotAvailable",
                        format!("The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {size}' is currently not available in {where_}. Please try another size or deploy to a different location or different zone. See https://aka.ms/azureskunotavailable for details."),
                    ))
                }
                CapacityError::AllocationFailed => {
                    async_error = Some(ArmError::new(
                        200,
                        if zone.is_some() { "ZonalAllocationFailed" } else { "AllocationFailed" },
                        format!("Allocation failed. We do not have sufficient capacity for the requested VM size in this {}. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance", if zone.is_some() { "zone" } else { "region" }),
                    ))
                }
                CapacityError::Overconstrained => {
                    async_error = Some(ArmError::new(
                        200,
                        "OverconstrainedAllocationRequest",
                        "Allocation failed. VM(s) with the following constraints cannot be allocated, because the condition is too restrictive. Please remove some constraints and try again. Constraints applied are:\n  - Priority\n  - Zones\n  - VM Size\n",
                    ))
                }
            }
        }
        let existed = self.find(rg, VM, name).is_some();
        if !existed {
            let metric = if spot { "lowPriorityCores" } else { "cores" };
            if let Some(limit) = self
                .quotas
                .get(&(lc(&location), metric.to_string()))
                .copied()
            {
                let usage: u32 = self
                    .resources
                    .iter()
                    .filter(|r| {
                        r.rtype == VM
                            && r.location.eq_ignore_ascii_case(&location)
                            && r.provisioning != "Failed"
                    })
                    .filter_map(|r| r.vm.as_ref())
                    .filter(|v| v.spot == spot && v.power != Power::Deallocated)
                    .filter_map(|v| vcpus(&v.size))
                    .sum();
                if usage + cpus > limit {
                    let what = if spot {
                        "Total Regional Low-priority Cores"
                    } else {
                        "Total Regional Cores"
                    };
                    return Err(ArmError::new(
                        409,
                        "OperationNotAllowed",
                        format!("Operation could not be completed as it results in exceeding approved {what} quota. Additional details - Deployment Model: Resource Manager, Location: {location}, Current Limit: {limit}, Current Usage: {usage}, Additional Required: {cpus}, (Minimum) New Limit Required: {}. Submit a request for Quota increase at https://aka.ms/ProdportalCRP by specifying parameters listed in the 'Details' section for deployment to succeed. Please read more about quota limits at https://docs.microsoft.com/en-us/azure/azure-supportability/regional-quota-requests", usage + cpus),
                    ));
                }
            }
        }
        let identity_type = body["identity"]["type"]
            .as_str()
            .unwrap_or("None")
            .to_string();
        let system = identity_type.contains("SystemAssigned");
        let mut stored = body.clone();
        strip_read_only(&mut stored);
        if let Some(os) = stored["properties"]["osProfile"].as_object_mut() {
            os.remove("customData");
        }
        if existed {
            let r = self.find_mut(rg, VM, name).expect("exists");
            r.body = stored;
            r.provisioning = "Updating".into();
        } else {
            let principal_id = system.then(|| stable_guid(&format!("{my_id}/{}", random_hex(8))));
            if let Some(p) = &principal_id {
                self.identities.insert(p.clone(), Instant::now());
            }
            let disk = format!("{name}_OsDisk_1_{}", random_hex(32));
            let disk_delete = props["storageProfile"]["osDisk"]["deleteOption"]
                .as_str()
                .is_some_and(|d| d.eq_ignore_ascii_case("Delete"));
            let disk_gb = props["storageProfile"]["osDisk"]["diskSizeGB"]
                .as_u64()
                .unwrap_or(30);
            self.resources.push(Resource {
                rg: rg.into(),
                rtype: DISK,
                name: disk.clone(),
                location: location.clone(),
                body: json!({"properties": {"diskSizeGB": disk_gb}}),
                provisioning: "Succeeded".into(),
                etag: String::new(),
                vm: None,
            });
            self.resources.push(Resource {
                rg: rg.into(),
                rtype: VM,
                name: name.into(),
                location: location.clone(),
                body: stored,
                provisioning: "Creating".into(),
                etag: String::new(),
                vm: Some(Vm {
                    vm_id: stable_guid(&format!("vm/{my_id}/{}", random_hex(8))),
                    principal_id,
                    custom_data,
                    power: Power::Starting,
                    spot,
                    eviction_policy: props["evictionPolicy"]
                        .as_str()
                        .unwrap_or("Deallocate")
                        .into(),
                    size: size.clone(),
                    zone,
                    events: Vec::new(),
                    incarnation: 1,
                    evict_at: None,
                    console: String::new(),
                    disk: Some(disk),
                    disk_delete,
                }),
            });
        }
        let id = self.new_op(
            OpKind::Put {
                rg: rg.into(),
                rtype: VM,
                name: name.into(),
            },
            async_error,
        );
        let r = self.find(rg, VM, name).expect("just stored");
        let mut reply = Reply::json(if existed { 200 } else { 201 }, self.render(r));
        reply.headers = self.lro_headers("Microsoft.Compute", &location, &id);
        Ok(reply)
    }

    pub fn delete_vm(&mut self, rg: &str, name: &str) -> Result<Reply, ArmError> {
        if !self.groups.contains_key(&lc(rg)) {
            return Err(ArmError::group_not_found(rg));
        }
        let Some(r) = self.find_mut(rg, VM, name) else {
            return Ok(Reply::empty(204));
        };
        r.provisioning = "Deleting".into();
        let location = r.location.clone();
        let id = self.new_op(
            OpKind::DeleteVm {
                rg: rg.into(),
                name: name.into(),
            },
            None,
        );
        let mut reply = Reply::empty(202);
        reply.headers = self.lro_headers("Microsoft.Compute", &location, &id);
        reply.headers.push((
            "Location".into(),
            self.async_url("Microsoft.Compute", &location, &id, true),
        ));
        Ok(reply)
    }

    pub fn instance_view(&self, rg: &str, name: &str) -> Result<Reply, ArmError> {
        let r = self
            .find(rg, VM, name)
            .ok_or_else(|| ArmError::resource_not_found(VM, name, rg))?;
        let vm = r.vm.as_ref().expect("a VM has its machine");
        let power = match vm.power {
            Power::Starting => ("PowerState/starting", "VM starting"),
            Power::Running => ("PowerState/running", "VM running"),
            Power::Stopped => ("PowerState/stopped", "VM stopped"),
            Power::Deallocated => ("PowerState/deallocated", "VM deallocated"),
        };
        let mut v = json!({
            "computerName": r.body["properties"]["osProfile"]["computerName"],
            "osName": "ubuntu",
            "statuses": [
                {"code": format!("ProvisioningState/{}", r.provisioning.to_lowercase()), "level": "Info",
                 "displayStatus": format!("Provisioning {}", r.provisioning.to_lowercase())},
                {"code": power.0, "level": "Info", "displayStatus": power.1},
            ],
        });
        if v["computerName"].is_null() {
            v.as_object_mut().expect("object").remove("computerName");
        }
        Ok(Reply::json(200, v))
    }

    pub fn boot_diagnostics(&self, rg: &str, name: &str) -> Result<Reply, ArmError> {
        let r = self
            .find(rg, VM, name)
            .ok_or_else(|| ArmError::resource_not_found(VM, name, rg))?;
        let enabled = r.body["properties"]["diagnosticsProfile"]["bootDiagnostics"]["enabled"]
            .as_bool()
            .unwrap_or(false);
        if !enabled {
            return Err(ArmError::new(
                409,
                "OperationNotAllowed",
                format!("Boot diagnostics is not enabled for the virtual machine '{name}'."),
            ));
        }
        let id = self.resource_id(rg, VM, name);
        Ok(Reply::json(
            200,
            json!({
                "consoleScreenshotBlobUri": format!("{}/_sim/bootdiagnostics/screenshot?vm={}", self.url, id),
                "serialConsoleLogBlobUri": format!("{}/_sim/bootdiagnostics/serial?vm={}", self.url, id),
            }),
        ))
    }

    pub fn serial_log(&self, vm_id_path: &str) -> Option<String> {
        self.resources
            .iter()
            .find(|r| {
                r.rtype == VM
                    && self
                        .resource_id(&r.rg, VM, &r.name)
                        .eq_ignore_ascii_case(vm_id_path)
            })
            .and_then(|r| r.vm.as_ref().map(|v| v.console.clone()))
    }

    /// `GET .../providers/{ns}/locations/{loc}/operations/{id}`.
    pub fn operation_status(
        &self,
        ns: &str,
        location: &str,
        id: &str,
        monitor: bool,
    ) -> Result<Reply, ArmError> {
        let op = self.ops.get(id).ok_or_else(|| {
            ArmError::new(
                404,
                "NotFound",
                format!("The operation '{id}' could not be found."),
            )
        })?;
        if monitor {
            if op.done {
                return Ok(Reply::empty(200));
            }
            let mut r = Reply::empty(202);
            r.headers = vec![
                ("Location".into(), self.async_url(ns, location, id, true)),
                ("Retry-After".into(), self.cfg.retry_after.to_string()),
            ];
            return Ok(r);
        }
        let mut v = json!({
            "name": id,
            "startTime": rfc3339(op.started),
            "status": if !op.done { "InProgress" } else if op.error.is_some() { "Failed" } else { "Succeeded" },
        });
        if op.done {
            v["endTime"] = json!(rfc3339(SystemTime::now()));
            if let Some(e) = &op.error {
                v["error"] = json!({"code": e.code, "message": e.message});
            }
        }
        let mut r = Reply::json(200, v);
        if !op.done {
            r.headers = vec![("Retry-After".into(), self.cfg.retry_after.to_string())];
        }
        Ok(r)
    }

    // ----- role assignments -----

    pub fn put_role_assignment(
        &mut self,
        scope: &str,
        name: &str,
        body: &Value,
    ) -> Result<Reply, ArmError> {
        let is_guid = name.len() == 36
            && name.chars().enumerate().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        if !is_guid {
            return Err(ArmError::new(
                400,
                "InvalidRoleAssignmentId",
                format!("The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."),
            ));
        }
        let scope = format!("/{}", scope.trim_start_matches('/'));
        let parts: Vec<&str> = scope.trim_start_matches('/').split('/').collect();
        if parts.len() >= 4
            && parts[2].eq_ignore_ascii_case("resourceGroups")
            && !self.groups.contains_key(&lc(parts[3]))
        {
            return Err(ArmError::group_not_found(parts[3]));
        }
        let p = &body["properties"];
        let role_def = p["roleDefinitionId"].as_str().unwrap_or_default();
        let role = role_def
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if ![
            ROLE_OWNER,
            ROLE_CONTRIBUTOR,
            ROLE_VM_CONTRIBUTOR,
            ROLE_READER,
        ]
        .contains(&role.as_str())
        {
            return Err(ArmError::new(
                400,
                "RoleDefinitionDoesNotExist",
                format!("The specified role definition with ID '{role}' does not exist."),
            ));
        }
        let principal = p["principalId"].as_str().unwrap_or_default().to_string();
        let principal_type = p["principalType"].as_str().map(str::to_string);
        let young = self
            .identities
            .get(&principal)
            .is_some_and(|t| t.elapsed() < self.cfg.principal_replication);
        if !self.principal_exists(&principal) || (young && principal_type.is_none()) {
            return Err(ArmError::new(
                400,
                "PrincipalNotFound",
                format!("Principal {} does not exist in the directory {}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype", principal.replace('-', ""), self.cfg.tenant),
            ));
        }
        if let Some(a) = self
            .assignments
            .iter()
            .find(|a| lc(&a.scope) == lc(&scope) && a.role == role && a.principal == principal)
        {
            if a.name != name {
                return Err(ArmError::new(
                    409,
                    "RoleAssignmentExists",
                    "The role assignment already exists.",
                ));
            }
        }
        let status = if self.assignments.iter().any(|a| a.name == name) {
            200
        } else {
            201
        };
        self.assignments.retain(|a| a.name != name);
        self.assignments.push(Assignment {
            name: name.into(),
            scope: scope.clone(),
            role: role.clone(),
            principal,
            principal_type,
            created: SystemTime::now(),
        });
        let a = self.assignments.last().expect("just pushed");
        Ok(Reply::json(status, self.render_assignment(a)))
    }

    fn render_assignment(&self, a: &Assignment) -> Value {
        let when = rfc3339(a.created);
        json!({
            "id": format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", a.scope, a.name),
            "name": a.name,
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": {
                "roleDefinitionId": format!("{}/providers/Microsoft.Authorization/roleDefinitions/{}", self.sub_path(), a.role),
                "principalId": a.principal,
                "principalType": a.principal_type.clone().unwrap_or_else(|| "ServicePrincipal".into()),
                "scope": a.scope,
                "createdOn": when,
                "updatedOn": when,
            },
        })
    }
}

/// Azure's tag rules (on resource groups and resources): at most 50 tags; names at most 512
/// characters (128 on storage accounts) without `<>%&\?/`; values at most 256 characters.
pub(crate) fn validate_tags(body: &Value) -> Result<(), ArmError> {
    let Some(tags) = body["tags"].as_object() else {
        return Ok(());
    };
    if tags.len() > 50 {
        return Err(ArmError::new(
            400,
            "InvalidTag",
            format!(
                "The resource has {} tags; at most 50 are allowed.",
                tags.len()
            ),
        ));
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > 512 || k.contains(['<', '>', '%', '&', '\\', '?', '/']) {
            return Err(ArmError::new(
                400,
                "InvalidTagNameCharacters",
                format!("The tag names '{k}' have reserved characters '<,>,%,&,\\,?,/' or control characters."),
            ));
        }
        if v.as_str().is_some_and(|s| s.len() > 256) {
            return Err(ArmError::new(
                400,
                "InvalidTag",
                format!("The tag value of '{k}' exceeds the maximum length of 256 characters."),
            ));
        }
    }
    Ok(())
}

fn strip_read_only(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        for k in ["id", "name", "type", "etag"] {
            o.remove(k);
        }
        if let Some(p) = o.get_mut("properties").and_then(Value::as_object_mut) {
            p.remove("provisioningState");
            p.remove("vmId");
        }
    }
}

/// A GUID derived from `seed` (stable for one seed).
pub fn stable_guid(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(seed.as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A `$filter` of the list operations: `tagName eq 'N' [and tagValue eq 'V']` or
/// `resourceType eq 'T'`, as ARM accepts them.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    pub tag_name: Option<String>,
    pub tag_value: Option<String>,
    pub rtype: Option<String>,
}

impl Filter {
    pub fn parse(s: &str) -> Result<Filter, ArmError> {
        let mut f = Filter::default();
        if s.trim().is_empty() {
            return Ok(f);
        }
        let bad = || {
            ArmError::new(
                400,
                "InvalidFilterInQueryString",
                format!("Invalid $filter '{s}' specified in the query string."),
            )
        };
        for clause in s.split(" and ") {
            let (k, v) = clause.trim().split_once(" eq ").ok_or_else(bad)?;
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|x| x.strip_suffix('\''))
                .ok_or_else(bad)?
                .replace("''", "'");
            match k.trim() {
                "tagName" => f.tag_name = Some(v),
                "tagValue" => f.tag_value = Some(v),
                "resourceType" => f.rtype = Some(v),
                _ => return Err(bad()),
            }
        }
        if f.tag_value.is_some() && f.tag_name.is_none() {
            return Err(bad());
        }
        Ok(f)
    }

    /// Tag names compare case-insensitively, values exactly (as ARM's do).
    pub fn tags_match(&self, tags: &Map<String, Value>) -> bool {
        let Some(name) = &self.tag_name else {
            return true;
        };
        tags.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case(name)
                && self
                    .tag_value
                    .as_ref()
                    .is_none_or(|want| v.as_str() == Some(want.as_str()))
        })
    }
}

impl State {
    /// Schedules an eviction of spot VM `name`: a `Preempt` scheduled event now, and after
    /// the notice its eviction policy.
    pub fn evict(&mut self, rg: &str, name: &str) -> bool {
        let notice = self.cfg.eviction_notice;
        let Some(r) = self.find_mut(rg, VM, name) else {
            return false;
        };
        let vm_name = r.name.clone();
        let Some(vm) = r.vm.as_mut() else {
            return false;
        };
        if !vm.spot || vm.power != Power::Running || vm.evict_at.is_some() {
            return false;
        }
        let not_before = SystemTime::now() + notice;
        vm.events.push(json!({
            "EventId": stable_guid(&format!("evict/{}", random_hex(8))).to_uppercase(),
            "EventStatus": "Scheduled",
            "EventType": "Preempt",
            "ResourceType": "VirtualMachine",
            "Resources": [vm_name],
            "NotBefore": httpdate(not_before),
            "Description": "",
            "EventSource": "Platform",
            "DurationInSeconds": -1,
        }));
        vm.incarnation += 1;
        vm.evict_at = Some(Instant::now() + notice);
        true
    }

    pub fn power_off(&mut self, rg: &str, name: &str) -> bool {
        match self.find_mut(rg, VM, name).and_then(|r| r.vm.as_mut()) {
            Some(vm) if vm.power == Power::Running => {
                vm.power = Power::Stopped;
                true
            }
            _ => false,
        }
    }
}

/// `t` as an HTTP date (`Mon, 19 Sep 2016 18:29:47 GMT`), the format of `NotBefore`.
pub fn httpdate(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    dt.format(time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))
    .unwrap_or_default()
}
