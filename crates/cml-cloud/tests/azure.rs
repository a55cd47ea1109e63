//! The Azure provider against the simulated Azure Resource Manager, Entra ID token endpoint and
//! instance metadata service (127.0.0.1 only): what it creates and sends, how it falls back
//! across zones and to on-demand machines, that teardown leaves nothing (also when an answer
//! was lost or Resource Manager hangs), what cleanup sees, its credentials and their errors,
//! and the machine's self-deletion with its managed identity.
#![cfg(feature = "azure")]

use base64::Engine;
use cml_cloud::azure::api::{Arm, RESOURCE_MANAGER_URL};
use cml_cloud::azure::auth::{
    AUTHORITY_HOST, CLIENT_ID, CLIENT_SECRET, SUBSCRIPTION_ID, TENANT_ID,
};
use cml_cloud::azure::{AzureHost, AzureProvider, ClientSecret, TokenSource, Tokens};
use cml_cloud::machine::Host;
use cml_cloud::{CloudError, Created, MachineSpec, Provider, Resource};
use cml_core::cloud::{Cloud, CloudSpec};
use cml_sim::azure::{AzureConfig, AzureFault, AzureSim, CapacityError, Power};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LOC: &str = "eastus";
const APP: &str = "11111111-2222-3333-4444-555555555555";
const SECRET: &str = "s3cr3t-Value~of.the_client";
const REPO: &str = "https://github.com/o/r";
const ROLE_WRITE: &str = "Microsoft.Authorization/roleAssignments/write";

struct Fixture {
    sim: AzureSim,
    /// The launcher's principal (object id).
    principal: String,
}

fn fixture() -> Fixture {
    let sim = AzureSim::start(AzureConfig {
        operation_step: Duration::from_millis(30),
        ..AzureConfig::default()
    })
    .unwrap();
    let principal = sim.add_client(APP, SECRET);
    Fixture { sim, principal }
}

impl Fixture {
    fn env(&self, k: &str) -> Option<String> {
        match k {
            CLIENT_ID => Some(APP.into()),
            CLIENT_SECRET => Some(SECRET.into()),
            TENANT_ID => Some(self.sim.tenant()),
            SUBSCRIPTION_ID => Some(self.sim.subscription()),
            AUTHORITY_HOST => Some(self.sim.url()),
            RESOURCE_MANAGER_URL => Some(self.sim.url()),
            _ => None,
        }
    }

    fn provider(&self) -> AzureProvider {
        AzureProvider::from_lookup(LOC, |k| self.env(k))
            .unwrap()
            .with_poll_interval(Duration::from_millis(20))
            .with_destroy_timeout(Duration::from_secs(10))
            .with_operation_timeout(Duration::from_secs(10))
    }

    /// A provider whose calls each give up after `attempt`.
    fn provider_with_attempt_timeout(&self, attempt: Duration) -> AzureProvider {
        let secret = ClientSecret::from_lookup(|k| self.env(k)).unwrap();
        let tokens = Arc::new(Tokens::new(TokenSource::ClientSecret(secret)));
        let arm = Arm::new(&self.sim.url(), &self.sim.subscription(), tokens)
            .with_attempt_timeout(attempt);
        AzureProvider::with_arm(LOC, arm)
            .unwrap()
            .with_poll_interval(Duration::from_millis(20))
            .with_destroy_timeout(Duration::from_secs(2))
            .with_operation_timeout(Duration::from_secs(10))
    }

    fn requests(&self, op: &str) -> Vec<cml_sim::azure::AzureRequest> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.operation == op)
            .collect()
    }

    /// Waits (bounded) until the simulator holds no resource group and no resource.
    fn wait_empty(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(self.sim.resource_groups().is_empty() && self.sim.resources().is_empty()) {
            assert!(
                Instant::now() < deadline,
                "left: {:?} {:?}",
                self.sim.resource_groups(),
                self.sim.resources()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assert_nothing_left(&self) {
        assert!(
            self.sim.resource_groups().is_empty(),
            "{:?}",
            self.sim.resource_groups()
        );
        assert!(
            self.sim.resources().is_empty(),
            "{:?}",
            self.sim.resources()
        );
    }

    /// Every secret the test knows: the client secret and every token issued.
    fn assert_no_secret(&self, text: &str) {
        assert!(!text.contains(SECRET), "the client secret leaked: {text}");
        for t in self.sim.issued_secrets() {
            assert!(!text.contains(&t), "a token leaked: {text}");
        }
    }
}

fn spec(name: &str) -> MachineSpec {
    MachineSpec {
        name: name.into(),
        cloud: CloudSpec {
            cloud: Cloud::Azure,
            region: LOC.into(),
            machine_type: "Standard_F2s_v2".into(),
            gpu: None,
            hdd_size_gb: 45,
            spot: false,
            spot_price: None,
            spot_fallback: false,
            permission_set: None,
            metadata: vec![],
            startup_script: None,
            image: None,
            aws_security_group: None,
            aws_subnet: None,
            kubernetes_node_selector: vec![],
            kubernetes_namespace: None,
        },
        user_data: "#!/bin/sh\necho runner\n".into(),
        tags: cml_core::cloud::resource_tags(
            name,
            REPO,
            "cml,gpu",
            &[("team".into(), "ml".into())],
        ),
        ssh_private_key: None,
        runner: Default::default(),
        max_lifetime: None,
    }
}

fn spot(mut s: MachineSpec, fallback: bool) -> MachineSpec {
    s.cloud.spot = true;
    s.cloud.spot_fallback = fallback;
    s
}

fn vm_puts(f: &Fixture) -> Vec<Value> {
    f.requests("virtualMachines.createOrUpdate")
        .into_iter()
        .filter_map(|r| r.body)
        .collect()
}

#[tokio::test]
async fn create_wait_destroy_leaves_nothing() {
    let f = fixture();
    let p = f.provider();
    assert_eq!((p.name(), Provider::region(&p)), ("azure", LOC));
    let created = Created::new();
    let m = p.create(&spec("r1"), &created).await.unwrap();
    assert_eq!(m.id, "cml-r1/cml-r1");
    assert_eq!(m.zone.as_deref(), Some("1"));
    assert_eq!(created.list(), [Resource::ResourceGroup("cml-r1".into())]);
    let running = p.wait_running(&m, Duration::from_secs(10)).await.unwrap();
    assert_eq!(running.state, "running");
    assert!(
        running.public_ip.as_deref().unwrap().starts_with("20."),
        "{running:?}"
    );
    assert_eq!(running.private_ip.as_deref(), Some("10.0.0.4"));
    // Everything lives in the one group.
    let mut kinds: Vec<String> = f
        .sim
        .resources()
        .into_iter()
        .map(|r| {
            assert_eq!(r.0, "cml-r1");
            r.1
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "Microsoft.Compute/disks",
            "Microsoft.Compute/virtualMachines",
            "Microsoft.Network/networkInterfaces",
            "Microsoft.Network/networkSecurityGroups",
            "Microsoft.Network/publicIPAddresses",
            "Microsoft.Network/virtualNetworks",
        ]
    );
    // The machine's identity may delete its group, and only that.
    let vm = f.sim.vm("cml-r1", "cml-r1").unwrap();
    let principal = vm["identity"]["principalId"].as_str().unwrap().to_string();
    let group_id = format!(
        "/subscriptions/{}/resourceGroups/cml-r1",
        f.sim.subscription()
    );
    assert_eq!(
        f.sim.role_assignments(),
        [(
            group_id,
            cml_sim::azure::ROLE_CONTRIBUTOR.to_string(),
            principal
        )]
    );
    f.sim.append_console("cml-r1", "cml-r1", "booted\n");
    assert_eq!(
        p.console_output(&m).await.unwrap().as_deref(),
        Some("booted\n")
    );
    p.destroy(&created).await.unwrap();
    assert!(created.is_empty(), "{:?}", created.left());
    f.assert_nothing_left();
    assert_eq!(f.sim.deleted_vms(), ["cml-r1"]);
    // Idempotent: again with the ledger as left, and with the gone group put back.
    p.destroy(&created).await.unwrap();
    let again = Created::new();
    again.push(Resource::ResourceGroup("cml-r1".into()));
    p.destroy(&again).await.unwrap();
    assert!(again.is_empty(), "{:?}", again.left());
    // A machine gone meanwhile has no console.
    assert_eq!(p.console_output(&m).await.unwrap(), None);
}

#[tokio::test]
async fn the_requests_carry_every_field() {
    let f = fixture();
    let p = f.provider();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ED25519", "-out"])
        .arg(&key)
        .output()
        .expect("openssl");
    assert!(ok.status.success());
    let private = std::fs::read_to_string(&key).unwrap();
    let identity = format!(
        "/subscriptions/{}/resourceGroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/runner",
        f.sim.subscription()
    );
    let mut s = spot(spec("r1"), false);
    s.cloud.spot_price = Some(0.25);
    s.cloud.permission_set = Some(identity.clone());
    s.ssh_private_key = Some(cml_core::Secret::new(private.clone()));
    s.user_data = format!("#!/bin/sh\necho {}\n", "x".repeat(1000));
    let created = Created::new();
    p.create(&s, &created).await.unwrap();

    let groups = f.requests("resourceGroups.createOrUpdate");
    assert_eq!(groups.len(), 1);
    let g = groups[0].body.clone().unwrap();
    assert_eq!(g["location"], LOC);
    for (k, v) in [
        ("cml:id", "r1"),
        ("cml:runner", "r1"),
        ("cml:repo", REPO),
        ("cml:labels", "cml,gpu"),
        ("team", "ml"),
    ] {
        assert_eq!(g["tags"][k], v, "{g}");
    }
    // Every resource carries the tags; the security group has no rule at all.
    for op in [
        "networkSecurityGroups.createOrUpdate",
        "virtualNetworks.createOrUpdate",
        "publicIPAddresses.createOrUpdate",
        "networkInterfaces.createOrUpdate",
        "virtualMachines.createOrUpdate",
    ] {
        let r = f.requests(op);
        assert_eq!(r.len(), 1, "{op}");
        assert_eq!(r[0].body.as_ref().unwrap()["tags"], g["tags"], "{op}");
        assert_eq!(
            r[0].query,
            "api-version=".to_string()
                + if op.starts_with("virtualMachines") {
                    "2026-04-01"
                } else {
                    "2026-03-01"
                }
        );
    }
    let nsg = f.requests("networkSecurityGroups.createOrUpdate")[0]
        .body
        .clone()
        .unwrap();
    assert_eq!(nsg["properties"]["securityRules"], json!([]));
    let pip = f.requests("publicIPAddresses.createOrUpdate")[0]
        .body
        .clone()
        .unwrap();
    assert_eq!(pip["sku"]["name"], "Standard");
    assert_eq!(pip["properties"]["publicIPAllocationMethod"], "Static");

    let vm = &vm_puts(&f)[0];
    let p_ = &vm["properties"];
    assert_eq!(p_["hardwareProfile"]["vmSize"], "Standard_F2s_v2");
    assert_eq!(
        p_["storageProfile"]["imageReference"],
        json!({"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"})
    );
    assert_eq!(p_["storageProfile"]["osDisk"]["diskSizeGB"], 45);
    assert_eq!(p_["storageProfile"]["osDisk"]["deleteOption"], "Delete");
    assert_eq!(p_["priority"], "Spot");
    assert_eq!(p_["evictionPolicy"], "Delete");
    assert_eq!(p_["billingProfile"]["maxPrice"], 0.25);
    assert_eq!(p_["diagnosticsProfile"]["bootDiagnostics"]["enabled"], true);
    assert_eq!(vm["zones"], json!(["1"]));
    assert_eq!(vm["identity"]["type"], "SystemAssigned, UserAssigned");
    assert!(
        vm["identity"]["userAssignedIdentities"]
            .get(&identity)
            .is_some(),
        "{vm}"
    );
    let os = &p_["osProfile"];
    assert_eq!(os["computerName"], "cml-r1");
    assert_eq!(
        os["linuxConfiguration"]["disablePasswordAuthentication"],
        true
    );
    assert_eq!(
        os["linuxConfiguration"]["ssh"]["publicKeys"][0]["keyData"]
            .as_str()
            .unwrap(),
        cml_cloud::sshkey::public_key_openssh(&private).unwrap()
    );
    assert!(os.get("adminPassword").is_none());
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(os["customData"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, s.user_data.as_bytes());
    assert_eq!(
        f.sim.custom_data("cml-r1", "cml-r1").unwrap(),
        s.user_data.as_bytes()
    );
    // The user's secret is in no request.
    for r in f.sim.requests() {
        f.assert_no_secret(&format!("{:?} {:?}", r.query, r.body));
    }

    // Without a key, a throwaway one; an on-demand machine has no spot fields.
    let created2 = Created::new();
    p.create(&spec("r2"), &created2).await.unwrap();
    let vm2 = vm_puts(&f).pop().unwrap();
    let key2 = vm2["properties"]["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0]
        ["keyData"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(key2.starts_with("ssh-ed25519 "), "{key2}");
    assert!(vm2["properties"].get("priority").is_none());
    assert!(vm2["properties"].get("billingProfile").is_none());
    assert_eq!(vm2["identity"], json!({"type": "SystemAssigned"}));
    p.destroy(&created).await.unwrap();
    p.destroy(&created2).await.unwrap();
    f.assert_nothing_left();
}

#[tokio::test]
async fn no_capacity_in_zone_1_moves_to_zone_2() {
    for error in [
        CapacityError::AllocationFailed,
        CapacityError::SkuNotAvailable,
        CapacityError::Overconstrained,
    ] {
        let f = fixture();
        let p = f.provider();
        f.sim.refuse_capacity(LOC, Some("1"), None, false, error);
        let created = Created::new();
        let m = p.create(&spec("r1"), &created).await.unwrap();
        assert_eq!(m.zone.as_deref(), Some("2"), "{error:?}");
        let zones: Vec<Value> = vm_puts(&f).iter().map(|b| b["zones"].clone()).collect();
        assert_eq!(zones, [json!(["1"]), json!(["2"])], "{error:?}");
        // A VM that failed in its operation keeps its zone: it is deleted before the next
        // try (Resource Manager does not move a VM to another zone); one refused at once
        // never existed.
        let want: &[&str] = if error == CapacityError::SkuNotAvailable {
            &[]
        } else {
            &["cml-r1"]
        };
        assert_eq!(f.sim.deleted_vms(), want, "{error:?}");
        p.wait_running(&m, Duration::from_secs(10)).await.unwrap();
        assert_eq!(f.sim.power("cml-r1", "cml-r1"), Some(Power::Running));
        p.destroy(&created).await.unwrap();
        f.assert_nothing_left();
    }
}

#[tokio::test]
async fn no_spot_capacity_falls_back_to_on_demand_only_when_asked() {
    let f = fixture();
    let p = f.provider();
    f.sim
        .refuse_capacity(LOC, None, None, true, CapacityError::AllocationFailed);
    let created = Created::new();
    let e = p
        .create(&spot(spec("r1"), false), &created)
        .await
        .unwrap_err();
    assert!(matches!(e, CloudError::AzureCapacity { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("zone 1 (spot), zone 2 (spot), zone 3 (spot)"),
        "{text}"
    );
    assert!(
        text.contains("--cloud-spot-fallback") && text.contains("nothing was left behind"),
        "{text}"
    );
    assert!(created.is_empty(), "{:?}", created.left());
    f.wait_empty();
    assert_eq!(vm_puts(&f).len(), 3);

    let created = Created::new();
    let m = p.create(&spot(spec("r2"), true), &created).await.unwrap();
    assert!(!m.spot);
    let last = vm_puts(&f).pop().unwrap();
    assert!(last["properties"].get("priority").is_none(), "{last}");
    assert_eq!(vm_puts(&f).len(), 7);
    p.destroy(&created).await.unwrap();
    f.assert_nothing_left();
}

#[tokio::test]
async fn an_exceeded_quota_is_a_clear_error_and_leaves_nothing() {
    let f = fixture();
    let p = f.provider();
    f.sim.set_quota(LOC, "cores", 1);
    let created = Created::new();
    let e = p.create(&spec("r1"), &created).await.unwrap_err();
    assert!(matches!(e, CloudError::AzureQuota { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("quota of eastus") && text.contains("Total Regional Cores"),
        "{text}"
    );
    assert!(text.contains("nothing was left behind"), "{text}");
    assert_eq!(
        vm_puts(&f).len(),
        1,
        "a quota error is not retried in other zones"
    );
    assert!(created.is_empty(), "{:?}", created.left());
    f.assert_nothing_left();
}

#[tokio::test]
async fn a_lost_answer_still_leaves_nothing() {
    // The resource group's answer lost every time: it exists, nobody was told.
    let f = fixture();
    let p = f.provider();
    f.sim.inject(
        "resourceGroups.createOrUpdate",
        AzureFault::DropAnswer,
        None,
    );
    let created = Created::new();
    let e = p.create(&spec("r1"), &created).await.unwrap_err();
    assert!(
        e.to_string().contains("creating the resource group cml-r1"),
        "{e}"
    );
    assert_eq!(
        f.requests("resourceGroups.createOrUpdate").len(),
        3,
        "retried, idempotent"
    );
    assert!(created.is_empty(), "{:?}", created.left());
    f.assert_nothing_left();

    // The VM's answer lost once: the retried PUT finds it and the launch goes on.
    let f = fixture();
    let p = f.provider();
    f.sim.inject(
        "virtualMachines.createOrUpdate",
        AzureFault::DropAnswer,
        Some(1),
    );
    let created = Created::new();
    let m = p.create(&spec("r1"), &created).await.unwrap();
    assert_eq!(vm_puts(&f).len(), 2);
    p.wait_running(&m, Duration::from_secs(10)).await.unwrap();
    assert_eq!(f.sim.role_assignments().len(), 1);
    p.destroy(&created).await.unwrap();
    f.assert_nothing_left();

    // The VM's answer never comes: teardown by the ledger still removes it.
    let f = fixture();
    let p = f.provider();
    f.sim.inject(
        "virtualMachines.createOrUpdate",
        AzureFault::DropAnswer,
        None,
    );
    f.sim
        .inject("resourceGroups.delete", AzureFault::Hang, Some(1));
    let created = Created::new();
    let e = p.create(&spec("r1"), &created).await.unwrap_err();
    assert!(e.to_string().contains("no answer"), "{e}");
    // The abandon inside create hung: the ledger still names the group.
    assert_eq!(created.list(), [Resource::ResourceGroup("cml-r1".into())]);
    assert!(!f.sim.resource_groups().is_empty());
    p.destroy(&created).await.unwrap();
    assert!(created.is_empty());
    f.assert_nothing_left();
}

#[tokio::test]
async fn teardown_is_bounded_and_says_what_is_left_when_arm_hangs() {
    let f = fixture();
    let p = f.provider_with_attempt_timeout(Duration::from_secs(30));
    let created = Created::new();
    p.create(&spec("r1"), &created).await.unwrap();
    f.sim
        .inject("resourceGroups.delete", AzureFault::Hang, None);
    let t = Instant::now();
    let e = p.destroy(&created).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let text = e.to_string();
    assert!(text.contains("within 2 s"), "{text}");
    assert!(
        text.contains("resource group cml-r1 (not deleted)"),
        "{text}"
    );
    assert!(
        text.contains("cml runner cleanup --cloud=azure --cloud-region=eastus"),
        "{text}"
    );
    assert_eq!(created.list(), [Resource::ResourceGroup("cml-r1".into())]);
    f.sim.clear_faults();
    p.destroy(&created).await.unwrap();
    assert!(created.is_empty());
    f.assert_nothing_left();
}

#[tokio::test]
async fn a_failed_deletion_is_reported_with_the_group() {
    let f = fixture();
    let p = f.provider();
    let created = Created::new();
    p.create(&spec("r1"), &created).await.unwrap();
    f.sim.inject(
        "resourceGroups.delete",
        AzureFault::Error {
            status: 409,
            code: "ScopeLocked".into(),
            message: "The scope cannot perform delete operation because it has a lock.".into(),
        },
        None,
    );
    let e = p.destroy(&created).await.unwrap_err().to_string();
    assert!(
        e.contains("resource group cml-r1 (deleting it failed: HTTP 409 ScopeLocked"),
        "{e}"
    );
    assert_eq!(created.list().len(), 1);
}

#[tokio::test]
async fn a_refused_role_assignment_names_the_permission_and_leaves_nothing() {
    let f = fixture();
    let p = f.provider();
    f.sim.deny_action(&f.principal, ROLE_WRITE);
    let created = Created::new();
    let e = p.create(&spec("r1"), &created).await.unwrap_err();
    assert!(matches!(e, CloudError::AzurePermission { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(ROLE_WRITE), "{text}");
    assert!(
        text.contains("--cloud-azure-credentials-on-machine"),
        "{text}"
    );
    assert!(text.contains("nothing was left behind"), "{text}");
    assert!(created.is_empty(), "{:?}", created.left());
    f.wait_empty();
    f.assert_no_secret(&text);

    // Opted out: the machine is made, without a role.
    let p = f.provider().with_machine_role(false);
    let created = Created::new();
    p.create(&spec("r2"), &created).await.unwrap();
    assert!(f.sim.role_assignments().is_empty());
    p.destroy(&created).await.unwrap();
    f.assert_nothing_left();
}

#[tokio::test]
async fn an_existing_group_of_that_name_is_never_taken_over() {
    let f = fixture();
    let p = f.provider();
    let created = Created::new();
    p.create(&spec("r1"), &created).await.unwrap();
    let other = Created::new();
    let e = p.create(&spec("r1"), &other).await.unwrap_err();
    assert!(
        matches!(e, CloudError::AzureResourceGroupExists { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("cml-r1 already exists"), "{e}");
    assert!(other.is_empty());
    // The first runner's machine is untouched.
    assert!(f.sim.power("cml-r1", "cml-r1").is_some());
    assert_eq!(f.sim.resources().len(), 6);
    p.destroy(&created).await.unwrap();
}

#[tokio::test]
async fn bad_options_are_refused_before_anything_exists() {
    let f = fixture();
    let p = f.provider();
    let mut cases: Vec<(MachineSpec, &str)> = Vec::new();
    let mut s = spec("r1");
    s.cloud.image = Some("ubuntu".into());
    cases.push((s, "--cloud-image"));
    let mut s = spec("r1");
    s.cloud.permission_set = Some("arn:aws:iam::1:instance-profile/x".into());
    cases.push((s, "--cloud-permission-set"));
    let mut s = spec("r1");
    s.cloud.machine_type = "m5.large".into();
    cases.push((s, "--cloud-type"));
    let mut s = spec("r1");
    s.user_data = "x".repeat(70_000);
    cases.push((s, "87380"));
    for (s, want) in cases {
        let created = Created::new();
        let e = p.create(&s, &created).await.unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("nothing was created"), "{e}");
        assert!(created.is_empty());
    }
    let mut s = spec("r1");
    s.user_data = "x".repeat(70_000);
    let e = cml_cloud::check_spec(&s).unwrap_err().to_string();
    assert!(e.contains("93336 characters") && e.contains("87380"), "{e}");
    assert!(cml_cloud::check_spec(&spec("r1")).is_ok());
    let e = AzureProvider::from_lookup("East US", |k| f.env(k))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--cloud-region") && e.contains("nothing was created"),
        "{e}"
    );
    assert!(f.sim.requests().is_empty(), "{:?}", f.sim.requests());
}

/// Puts a resource group straight into the simulator.
async fn put_group(f: &Fixture, name: &str, location: &str, tags: Value) {
    let token = f.sim.issue_token(&f.principal);
    let r = reqwest::Client::new()
        .put(format!(
            "{}/subscriptions/{}/resourcegroups/{name}?api-version=2025-04-01",
            f.sim.url(),
            f.sim.subscription()
        ))
        .bearer_auth(token)
        .json(&json!({"location": location, "tags": tags}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

#[tokio::test]
async fn list_owned_maps_groups_owners_scopes_and_states() {
    let f = fixture();
    let p = f.provider();
    let c1 = Created::new();
    let m1 = p.create(&spec("r1"), &c1).await.unwrap();
    p.wait_running(&m1, Duration::from_secs(10)).await.unwrap();
    let c2 = Created::new();
    let m2 = p.create(&spec("r2"), &c2).await.unwrap();
    p.wait_running(&m2, Duration::from_secs(10)).await.unwrap();
    assert!(f.sim.power_off("cml-r2", "cml-r2"));
    // A launch that never got to its VM; someone else's group; ours elsewhere.
    put_group(
        &f,
        "cml-r3",
        LOC,
        json!({"cml:id": "r3", "cml:runner": "r3", "cml:repo": REPO}),
    )
    .await;
    put_group(&f, "theirs", LOC, json!({"owner": "x"})).await;
    put_group(&f, "cml-r4", "westus2", json!({"cml:id": "r4"})).await;
    let mut owned = p.list_owned().await.unwrap();
    owned.sort_by(|a, b| a.owner.cmp(&b.owner));
    let summary: Vec<(Resource, String, Option<String>, Option<String>)> = owned
        .iter()
        .map(|o| {
            (
                o.resource.clone(),
                o.owner.clone(),
                o.scope.clone(),
                o.state.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                Resource::ResourceGroup("cml-r1".into()),
                "r1".into(),
                Some(REPO.into()),
                Some("running".into())
            ),
            (
                Resource::ResourceGroup("cml-r2".into()),
                "r2".into(),
                Some(REPO.into()),
                Some("stopped".into())
            ),
            (
                Resource::ResourceGroup("cml-r3".into()),
                "r3".into(),
                Some(REPO.into()),
                Some("available".into())
            ),
        ]
    );
    assert!(owned[0].age.is_some() && owned[2].age.is_none());
    // Cleanup hands what it found to destroy.
    let all = Created::new();
    for o in owned {
        all.push(o.resource);
    }
    p.destroy(&all).await.unwrap();
    let mut left = f.sim.resource_groups();
    left.sort();
    assert_eq!(left, ["cml-r4", "theirs"]);
}

#[tokio::test]
async fn wait_running_reports_a_machine_that_stopped() {
    let f = fixture();
    let p = f.provider();
    let created = Created::new();
    let m = p.create(&spec("r1"), &created).await.unwrap();
    p.wait_running(&m, Duration::from_secs(10)).await.unwrap();
    f.sim.power_off("cml-r1", "cml-r1");
    let e = p
        .wait_running(&m, Duration::from_secs(10))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("PowerState/stopped"), "{e}");
    p.destroy(&created).await.unwrap();
}

#[tokio::test]
async fn tokens_are_cached_and_renewed_when_refused() {
    let f = fixture();
    let p = f.provider();
    let created = Created::new();
    p.create(&spec("r1"), &created).await.unwrap();
    assert_eq!(f.sim.token_grants(), 1, "one token for the whole launch");
    p.destroy(&created).await.unwrap();
    assert_eq!(f.sim.token_grants(), 1);
}

#[tokio::test]
async fn bad_credentials_name_the_variable_and_leak_nothing() {
    let f = fixture();
    let with = |k: &'static str, v: Option<String>| {
        let f = &f;
        move |x: &str| if x == k { v.clone() } else { f.env(x) }
    };
    // Missing variables are named, all at once.
    let e = AzureProvider::from_lookup(LOC, |k| match k {
        CLIENT_SECRET | TENANT_ID => None,
        k => f.env(k),
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("AZURE_CLIENT_SECRET, AZURE_TENANT_ID not set"),
        "{e}"
    );
    let e = AzureProvider::from_lookup(LOC, with(SUBSCRIPTION_ID, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("AZURE_SUBSCRIPTION_ID not set"), "{e}");

    let cases: Vec<(&'static str, Option<String>, &str, &str)> = vec![
        (
            CLIENT_SECRET,
            Some("wrong-secret-value".into()),
            "AZURE_CLIENT_SECRET is wrong",
            "AADSTS7000215",
        ),
        (
            CLIENT_ID,
            Some("99999999-0000-0000-0000-000000000000".into()),
            "AZURE_CLIENT_ID is wrong",
            "AADSTS700016",
        ),
        (
            TENANT_ID,
            Some("00000000-0000-0000-0000-00000000dead".into()),
            "AZURE_TENANT_ID is wrong",
            "AADSTS90002",
        ),
    ];
    for (var, value, want, code) in cases {
        let p = AzureProvider::from_lookup(LOC, with(var, value.clone()))
            .unwrap()
            .with_poll_interval(Duration::from_millis(20));
        let created = Created::new();
        let e = p.create(&spec("r1"), &created).await.unwrap_err();
        assert!(
            matches!(e, CloudError::AzureCredentialRejected { .. }),
            "{e:?}"
        );
        let text = format!("{e} {e:?} {p:?}");
        assert!(text.contains(want) && text.contains(code), "{text}");
        assert!(text.contains("nothing was created"), "{text}");
        f.assert_no_secret(&text);
        assert!(!text.contains("wrong-secret-value"), "{text}");
        assert!(created.is_empty());
    }
    // An authority that does not answer.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let p = AzureProvider::from_lookup(LOC, with(AUTHORITY_HOST, Some(url.clone()))).unwrap();
    let e = p.list_owned().await.unwrap_err().to_string();
    assert!(
        e.contains("could not be reached") && e.contains(&url),
        "{e}"
    );
    assert!(f.sim.resource_groups().is_empty());

    // A working provider's Debug and errors hold no token.
    let p = f.provider();
    let created = Created::new();
    p.create(&spec("r1"), &created).await.unwrap();
    f.sim.inject(
        "resourceGroups.delete",
        AzureFault::Error {
            status: 500,
            code: "InternalServerError".into(),
            message: "boom".into(),
        },
        None,
    );
    let e = p.destroy(&created).await.unwrap_err();
    f.assert_no_secret(&format!("{e} {e:?} {p:?} {:?}", p.arm().tokens()));
    f.sim.clear_faults();
    p.destroy(&created).await.unwrap();
}

#[tokio::test]
async fn the_machine_deletes_its_own_group_with_its_identity() {
    let f = fixture();
    let p = f.provider();
    let created = Created::new();
    p.create(&spec("r1"), &created).await.unwrap();
    let imds = f.sim.imds("cml-r1", "cml-r1").unwrap();
    let host = AzureHost::new(&imds.url(), &f.sim.url());
    assert_eq!(host.cloud(), "azure");
    assert_eq!(host.delete_self().await.unwrap(), "cml-r1/cml-r1");
    // The deletion came from the machine's identity, not the launcher's.
    let deletes = f.requests("resourceGroups.delete");
    assert_eq!(deletes.len(), 1);
    assert_ne!(deletes[0].principal.as_deref(), Some(f.principal.as_str()));
    f.wait_empty();
    p.destroy(&created).await.unwrap();

    // Without the role: the error names the permission.
    let p = f.provider().with_machine_role(false);
    let created = Created::new();
    p.create(&spec("r2"), &created).await.unwrap();
    let imds = f.sim.imds("cml-r2", "cml-r2").unwrap();
    let e = AzureHost::new(&imds.url(), &f.sim.url())
        .delete_self()
        .await
        .unwrap_err();
    assert!(matches!(e, CloudError::AzurePermission { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("Microsoft.Resources/subscriptions/resourceGroups/delete"),
        "{text}"
    );
    assert!(text.contains("powers itself off"), "{text}");
    f.assert_no_secret(&format!("{text} {e:?}"));
    assert!(f.sim.resource_groups().contains(&"cml-r2".to_string()));
    p.destroy(&created).await.unwrap();
    f.assert_nothing_left();
}
