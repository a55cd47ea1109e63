//! The Compute Engine provider against the simulated Compute Engine (127.0.0.1 only): what it
//! creates and sends, how it falls back across zones and to on-demand machines, that teardown
//! leaves nothing (also when an answer was lost or the API hangs), what cleanup sees, its
//! credentials and their errors, and the machine's self-deletion.
#![cfg(feature = "gcp")]

use cml_cloud::gcp::auth::{CREDENTIALS_DATA, CREDENTIALS_FILE, PROJECT};
use cml_cloud::gcp::{api::COMPUTE_ENDPOINT, GcpHost, GcpProvider, LAUNCH_LABEL};
use cml_cloud::machine::Host;
use cml_cloud::{CloudError, Created, MachineSpec, Provider, Resource};
use cml_core::cloud::{Cloud, CloudSpec};
use cml_sim::gcp::{
    service_account_key_file, Capacity, GcpConfig, GcpFault, GcpSim, QuotaDelivery,
};
use serde_json::Value;
use std::time::{Duration, Instant};

const ZONE: &str = "us-east1-c";
const SA: &str = "launcher@cml-sim-project.iam.gserviceaccount.com";
const REPO: &str = "https://github.com/o/r";

struct Fixture {
    sim: GcpSim,
    key: String,
    private: String,
    _dir: tempfile::TempDir,
}

fn rsa_private(dir: &std::path::Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .expect("openssl");
    assert!(ok.status.success());
    let public = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(public.status.success());
    (
        std::fs::read_to_string(key).unwrap(),
        String::from_utf8(public.stdout).unwrap(),
    )
}

fn fixture_with(f: impl FnOnce(&mut GcpConfig)) -> Fixture {
    let mut cfg = GcpConfig {
        status_step: Duration::from_millis(50),
        operation_step: Duration::from_millis(50),
        preemption_notice: Duration::from_millis(200),
        max_run_second: Duration::from_millis(10),
        ..GcpConfig::default()
    };
    f(&mut cfg);
    let sim = GcpSim::start(cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = rsa_private(dir.path(), "sa");
    sim.add_service_account_key(SA, "key-1", &public);
    let key = service_account_key_file(&sim.project(), SA, "key-1", &private, &sim.token_uri())
        .to_string();
    Fixture {
        sim,
        key,
        private,
        _dir: dir,
    }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

impl Fixture {
    fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |k: &str| match k {
            CREDENTIALS_DATA => Some(self.key.clone()),
            COMPUTE_ENDPOINT => Some(self.sim.compute_endpoint()),
            _ => None,
        }
    }

    fn provider(&self) -> GcpProvider {
        GcpProvider::from_lookup(ZONE, self.lookup())
            .unwrap()
            .with_poll_interval(Duration::from_millis(25))
            .with_destroy_timeout(Duration::from_secs(10))
            .with_launch_settle(Duration::from_millis(500))
    }

    fn inserts(&self) -> Vec<cml_sim::gcp::GcpRequest> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.method == "compute.instances.insert")
            .collect()
    }

    /// Waits (bounded) until the simulator holds no instance and no disk.
    fn wait_empty(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(self.sim.instances().is_empty() && self.sim.disks().is_empty()) {
            assert!(
                Instant::now() < deadline,
                "left: {:?} {:?}",
                self.sim.instances(),
                self.sim.disks()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn spec(name: &str) -> MachineSpec {
    MachineSpec {
        name: name.into(),
        cloud: CloudSpec {
            cloud: Cloud::Gcp,
            region: ZONE.into(),
            machine_type: "e2-standard-2".into(),
            gpu: None,
            hdd_size_gb: 35,
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
        tags: cml_core::cloud::resource_tags(name, REPO, "cml,gpu", &[]),
        ssh_private_key: None,
        runner: Default::default(),
        max_lifetime: None,
    }
}

fn items(body: &Value) -> Vec<(String, String)> {
    body["metadata"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["key"].as_str().unwrap().to_string(),
                i["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn create_wait_destroy_leaves_nothing() {
    let f = fixture();
    let p = f.provider();
    assert_eq!((p.name(), Provider::region(&p)), ("gcp", ZONE));
    let created = Created::new();
    let m = p.create(&spec("r1"), &created).await.unwrap();
    assert_eq!(m.id, format!("{ZONE}/cml-r1"));
    assert_eq!(created.list(), [Resource::Instance(m.id.clone())]);
    assert!(created.launches().is_empty() || created.launches()[0].1);
    let running = p.wait_running(&m, Duration::from_secs(10)).await.unwrap();
    assert_eq!(running.state, "RUNNING");
    assert!(running.public_ip.as_deref().unwrap().starts_with("34."));
    assert!(running.private_ip.is_some());
    assert_eq!(f.sim.disks().len(), 1);
    f.sim.append_serial(ZONE, "cml-r1", "booted\n");
    assert_eq!(
        p.console_output(&m).await.unwrap().as_deref(),
        Some("booted\n")
    );
    p.destroy(&created).await.unwrap();
    f.wait_empty();
    assert_eq!(f.sim.deleted_instances(), ["cml-r1"]);
    // Idempotent: again with the ledger as left, and with the gone instance put back.
    p.destroy(&created).await.unwrap();
    let again = Created::new();
    again.push(Resource::Instance(m.id.clone()));
    again.push(Resource::Disk(format!("{ZONE}/cml-r1")));
    p.destroy(&again).await.unwrap();
    assert!(again.list().is_empty(), "{:?}", again.left());
    // A machine gone meanwhile has no console.
    assert_eq!(p.console_output(&m).await.unwrap(), None);
}

#[tokio::test]
async fn the_insert_carries_every_field() {
    let f = fixture();
    let p = f.provider();
    let dir = tempfile::tempdir().unwrap();
    let (ssh_private, _) = rsa_private(dir.path(), "ssh");
    let mut s = spec("Runner_One");
    s.cloud.machine_type = "n1-standard-4+nvidia-tesla-t4*1".into();
    s.cloud.gpu = Some("t4".into());
    s.cloud.spot = true;
    s.cloud.spot_price = Some(0.5);
    s.cloud.metadata = vec![("Team Name".into(), "ML Ops".into())];
    s.cloud.permission_set = Some(
        "worker@cml-sim-project.iam.gserviceaccount.com,scopes=compute,devstorage.read_only".into(),
    );
    s.ssh_private_key = Some(cml_core::Secret::new(ssh_private.clone()));
    s.max_lifetime = Some(Duration::from_secs(3600));
    let created = Created::new();
    let m = p.create(&s, &created).await.unwrap();
    assert!(m.spot);
    let inserts = f.inserts();
    assert_eq!(inserts.len(), 1);
    let r = &inserts[0];
    assert!(r.query.starts_with("requestId="), "{}", r.query);
    let b = r.body.as_ref().unwrap();
    let name = b["name"].as_str().unwrap();
    assert!(
        name.starts_with("cml-runner-one-") && name.len() <= 63,
        "{name}"
    );
    assert_eq!(
        b["machineType"],
        format!("zones/{ZONE}/machineTypes/n1-standard-4")
    );
    assert_eq!(
        b["guestAccelerators"][0]["acceleratorType"],
        format!("zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4")
    );
    assert_eq!(b["guestAccelerators"][0]["acceleratorCount"], 1);
    let sch = &b["scheduling"];
    assert_eq!(sch["provisioningModel"], "SPOT");
    assert_eq!(sch["instanceTerminationAction"], "DELETE");
    assert_eq!(sch["onHostMaintenance"], "TERMINATE");
    assert_eq!(sch["maxRunDuration"]["seconds"], "3600");
    // Labels: owner labels, the sanitized --cloud-metadata pair, the launch label.
    let labels = &b["labels"];
    assert_eq!(labels["cml-id"], cml_core::gcp::id_label("Runner_One"));
    assert_eq!(labels["cml-repo"], cml_core::gcp::repo_label(REPO));
    assert_eq!(labels["team_name"], "ml_ops");
    assert_eq!(labels[LAUNCH_LABEL].as_str().unwrap().len(), 32);
    assert_eq!(
        created
            .launches()
            .into_iter()
            .map(|l| l.0)
            .collect::<Vec<_>>(),
        [labels[LAUNCH_LABEL].as_str().unwrap()]
    );
    let disk = &b["disks"][0];
    assert_eq!(disk["boot"], true);
    assert_eq!(disk["autoDelete"], true);
    assert_eq!(disk["initializeParams"]["diskSizeGb"], "35");
    assert_eq!(disk["initializeParams"]["labels"], *labels);
    assert_eq!(
        disk["initializeParams"]["sourceImage"],
        cml_core::gcp::DEFAULT_IMAGE
    );
    let items = items(b);
    assert_eq!(items[0], ("startup-script".into(), s.user_data.clone()));
    assert!(items.contains(&("cml-runner".into(), "Runner_One".into())));
    assert!(items.contains(&("cml-repo".into(), REPO.into())));
    assert!(items.contains(&("cml-labels".into(), "cml,gpu".into())));
    let ssh = &items.iter().find(|(k, _)| k == "ssh-keys").unwrap().1;
    let public = cml_cloud::sshkey::public_key_openssh(&ssh_private).unwrap();
    assert_eq!(*ssh, format!("ubuntu:{public} ubuntu"));
    assert!(!ssh.contains("PRIVATE"));
    assert_eq!(
        b["serviceAccounts"][0]["email"],
        "worker@cml-sim-project.iam.gserviceaccount.com"
    );
    assert_eq!(
        b["serviceAccounts"][0]["scopes"],
        serde_json::json!([
            "https://www.googleapis.com/auth/compute",
            "https://www.googleapis.com/auth/devstorage.read_only"
        ])
    );
    let nic = &b["networkInterfaces"][0];
    assert_eq!(nic["network"], "global/networks/default");
    assert_eq!(nic["accessConfigs"][0]["type"], "ONE_TO_ONE_NAT");
    // No firewall rule, nothing but instances and operations.
    for r in f.sim.requests() {
        assert!(
            r.method.starts_with("compute.instances.")
                || r.method.starts_with("compute.zoneOperations."),
            "{}",
            r.method
        );
    }
    // The defaults: on-demand, no GPU, default account with the compute scope, no ssh-keys.
    let created2 = Created::new();
    p.create(&spec("plain"), &created2).await.unwrap();
    let b = f.inserts()[1].body.clone().unwrap();
    assert_eq!(b["scheduling"]["provisioningModel"], "STANDARD");
    assert!(b["scheduling"]["maxRunDuration"].is_null());
    assert!(b["guestAccelerators"].is_null());
    assert_eq!(
        b["serviceAccounts"][0],
        serde_json::json!({"email": "default", "scopes": ["https://www.googleapis.com/auth/compute"]})
    );
    assert!(!items_has(&b, "ssh-keys"));
    // An on-demand GPU machine cannot live-migrate.
    let created3 = Created::new();
    let mut gpu = spec("gpu");
    gpu.cloud.machine_type = "n1-standard-4+nvidia-tesla-t4*1".into();
    p.create(&gpu, &created3).await.unwrap();
    let b = f.inserts()[2].body.clone().unwrap();
    assert_eq!(b["scheduling"]["provisioningModel"], "STANDARD");
    assert_eq!(b["scheduling"]["onHostMaintenance"], "TERMINATE");
    p.destroy(&created3).await.unwrap();
    p.destroy(&created).await.unwrap();
    p.destroy(&created2).await.unwrap();
    f.wait_empty();
}

fn items_has(b: &Value, key: &str) -> bool {
    items(b).iter().any(|(k, _)| k == key)
}

#[tokio::test]
async fn an_exhausted_zone_falls_back_to_the_next() {
    let f = fixture();
    let p = f.provider();
    f.sim.set_capacity(ZONE, Capacity::Exhausted);
    let created = Created::new();
    let m = p.create(&spec("r1"), &created).await.unwrap();
    assert_eq!(m.zone.as_deref(), Some("us-east1-b"));
    assert_eq!(m.id, "us-east1-b/cml-r1");
    // The failed attempt is not in the ledger: it left nothing.
    assert_eq!(created.list(), [Resource::Instance(m.id.clone())]);
    let zones: Vec<String> = f
        .inserts()
        .iter()
        .map(|r| {
            r.path
                .split("/zones/")
                .nth(1)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(zones, [ZONE, "us-east1-b"]);
    assert!(f.sim.instance(ZONE, "cml-r1").is_none());
    p.destroy(&created).await.unwrap();
    f.wait_empty();
}

#[tokio::test]
async fn no_spot_capacity_anywhere_falls_back_to_on_demand_only_when_asked() {
    let f = fixture();
    let p = f.provider();
    for z in ["us-east1-b", "us-east1-c", "us-east1-d"] {
        f.sim.set_capacity(z, Capacity::SpotExhausted);
    }
    let mut s = spec("r1");
    s.cloud.spot = true;
    s.cloud.spot_fallback = true;
    let created = Created::new();
    let m = p.create(&s, &created).await.unwrap();
    assert!(!m.spot);
    assert_eq!(m.zone.as_deref(), Some(ZONE));
    let models: Vec<String> = f
        .inserts()
        .iter()
        .map(|r| {
            r.body.as_ref().unwrap()["scheduling"]["provisioningModel"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(models, ["SPOT", "SPOT", "SPOT", "STANDARD"]);
    assert_eq!(
        f.sim.instance(ZONE, "cml-r1").unwrap()["scheduling"]["provisioningModel"],
        "STANDARD"
    );
    p.destroy(&created).await.unwrap();
    f.wait_empty();

    // Without --cloud-spot-fallback: an error, and nothing left.
    s.cloud.spot_fallback = false;
    let created = Created::new();
    let e = p.create(&s, &created).await.unwrap_err();
    assert!(matches!(e, CloudError::GcpCapacity { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("us-east1-c, us-east1-b, us-east1-d"),
        "{text}"
    );
    assert!(text.contains("--cloud-spot-fallback"), "{text}");
    assert!(text.contains("ZONE_RESOURCE_POOL_EXHAUSTED"), "{text}");
    assert!(created.list().is_empty(), "{:?}", created.left());
    p.destroy(&created).await.unwrap();
    assert!(created.is_empty());
    assert!(f.sim.instances().is_empty());
    assert!(f.sim.disks().is_empty());
}

#[tokio::test]
async fn an_exceeded_quota_is_a_clear_error_and_leaves_nothing() {
    let f = fixture();
    let p = f.provider();
    f.sim.set_quota("us-east1", "CPUS", 1.0);
    for delivery in [QuotaDelivery::Operation, QuotaDelivery::Http] {
        f.sim.set_quota_delivery(delivery);
        let created = Created::new();
        let e = p.create(&spec("r1"), &created).await.unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, CloudError::GcpQuota { .. }),
            "{delivery:?}: {e:?}"
        );
        assert!(text.contains("quota CPUS of region us-east1"), "{text}");
        assert!(text.contains("request a higher CPUS quota"), "{text}");
        assert!(created.list().is_empty(), "{:?}", created.left());
        p.destroy(&created).await.unwrap();
        assert!(f.sim.instances().is_empty());
        assert!(f.sim.disks().is_empty());
    }
    // A quota is regional: no other zone of the region is tried.
    assert!(f
        .inserts()
        .iter()
        .all(|r| r.path.contains(&format!("/zones/{ZONE}/"))));
}

#[tokio::test]
async fn a_lost_insert_answer_is_found_by_its_launch_label() {
    let f = fixture();
    let p = f.provider();
    f.sim
        .inject("compute.instances.insert", GcpFault::DropAnswer, None);
    let created = Created::new();
    let e = p.create(&spec("r1"), &created).await.unwrap_err();
    assert!(e.to_string().contains("no answer"), "{e}");
    // Retried with the same request id: one machine, not three.
    assert!(f.inserts().len() > 1);
    let ids: std::collections::BTreeSet<String> =
        f.inserts().iter().map(|r| r.query.clone()).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(f.sim.instances().len(), 1);
    assert!(created.list().is_empty());
    assert_eq!(created.launches().len(), 1);
    assert!(!created.launches()[0].1);
    p.destroy(&created).await.unwrap();
    assert!(created.launches().is_empty());
    assert_eq!(
        created.list(),
        [Resource::Instance(format!("{ZONE}/cml-r1"))]
    );
    assert!(
        created.left().iter().all(|l| l.deleting),
        "{:?}",
        created.left()
    );
    f.wait_empty();
}

#[tokio::test]
async fn teardown_is_bounded_when_the_api_hangs() {
    let f = fixture();
    let p = f
        .provider()
        .with_destroy_timeout(Duration::from_millis(800));
    let created = Created::new();
    let m = p.create(&spec("r1"), &created).await.unwrap();
    f.sim
        .inject("compute.instances.delete", GcpFault::Hang, None);
    let start = Instant::now();
    let e = p.destroy(&created).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let text = e.to_string();
    assert!(text.contains(&format!("instance {}", m.id)), "{text}");
    assert!(
        text.contains(&format!(
            "cml runner cleanup --cloud=gcp --cloud-region={ZONE}"
        )),
        "{text}"
    );
    assert!(text.contains("within 1 s"), "{text}");
    assert_eq!(created.list(), [Resource::Instance(m.id.clone())]);
    // Once the API answers again, the same ledger is torn down.
    f.sim.clear_faults();
    p.destroy(&created).await.unwrap();
    f.wait_empty();
}

#[tokio::test]
async fn a_failed_deletion_is_reported_with_the_resource() {
    let f = fixture();
    let p = f.provider();
    let created = Created::new();
    let m = p.create(&spec("r1"), &created).await.unwrap();
    f.sim.inject(
        "compute.instances.delete",
        GcpFault::Error {
            status: 403,
            reason: "forbidden".into(),
            message: "Required 'compute.instances.delete' permission".into(),
        },
        None,
    );
    let e = p.destroy(&created).await.unwrap_err().to_string();
    assert!(
        e.contains(&m.id) && e.contains("deleting it failed: HTTP 403 forbidden"),
        "{e}"
    );
    assert!(e.contains("cml runner cleanup --cloud=gcp"), "{e}");
    f.sim.clear_faults();
    p.destroy(&created).await.unwrap();
    f.wait_empty();
}

#[tokio::test]
async fn list_owned_maps_states_owners_and_scopes() {
    let f = fixture();
    let p = f.provider();
    let (a, b) = (Created::new(), Created::new());
    let ma = p.create(&spec("runner.A"), &a).await.unwrap();
    let mb = p.create(&spec("runner-b"), &b).await.unwrap();
    p.wait_running(&ma, Duration::from_secs(10)).await.unwrap();
    p.wait_running(&mb, Duration::from_secs(10)).await.unwrap();
    let (bz, bn) = mb.id.split_once('/').unwrap();
    assert!(f.sim.power_off(bz, bn));
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.sim.instance(bz, bn).unwrap()["status"] != "TERMINATED" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A detached disk of ours, one without a description, one elsewhere, one not ours.
    let desc = serde_json::json!({"cml-runner": "runner.C", "cml-repo": REPO}).to_string();
    f.sim.add_disk_described(
        "us-east1-d",
        "cml-c",
        10,
        &[("cml-id", "runner_c-0123")],
        &desc,
    );
    f.sim
        .add_disk("us-east1-b", "bare", 10, &[("cml-id", "runner-d")]);
    f.sim
        .add_disk("us-west1-b", "far", 10, &[("cml-id", "runner-e")]);
    f.sim.add_disk(ZONE, "someone-elses", 10, &[("team", "x")]);
    let mut owned = p.list_owned().await.unwrap();
    owned.sort_by_key(|o| o.resource.to_string());
    let view: Vec<(String, String, Option<String>, Option<String>)> = owned
        .iter()
        .map(|o| {
            (
                o.resource.to_string(),
                o.owner.clone(),
                o.scope.clone(),
                o.state.clone(),
            )
        })
        .collect();
    let s = |x: &str| Some(x.to_string());
    let na = ma.id.split('/').nth(1).unwrap();
    let mut want = vec![
        (
            format!("disk {ZONE}/{bn}"),
            "runner-b".to_string(),
            s(REPO),
            s("in-use"),
        ),
        (
            format!("disk {ZONE}/{na}"),
            "runner.A".into(),
            s(REPO),
            s("in-use"),
        ),
        (
            "disk us-east1-b/bare".into(),
            "runner-d".into(),
            None,
            s("available"),
        ),
        (
            "disk us-east1-d/cml-c".into(),
            "runner.C".into(),
            s(REPO),
            s("available"),
        ),
        (
            format!("instance {}", mb.id),
            "runner-b".into(),
            s(REPO),
            s("stopped"),
        ),
        (
            format!("instance {}", ma.id),
            "runner.A".into(),
            s(REPO),
            s("running"),
        ),
    ];
    want.sort();
    assert_eq!(view, want);
    assert!(owned
        .iter()
        .all(|o| o.age.is_some_and(|a| a < Duration::from_secs(60))));
    p.destroy(&a).await.unwrap();
    p.destroy(&b).await.unwrap();
}

#[tokio::test]
async fn wait_running_reports_a_machine_that_stopped() {
    let f = fixture();
    let p = f.provider();
    let created = Created::new();
    let m = p.create(&spec("r1"), &created).await.unwrap();
    p.wait_running(&m, Duration::from_secs(10)).await.unwrap();
    assert!(f.sim.power_off(ZONE, "cml-r1"));
    let e = p
        .wait_running(&m, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("the instance is STOPPING") || e.to_string().contains("TERMINATED"),
        "{e}"
    );
    p.destroy(&created).await.unwrap();
}

#[tokio::test]
async fn tokens_come_from_the_key_by_value_or_path_and_are_renewed() {
    let f = fixture_with(|c| c.token_ttl = Duration::from_secs(4));
    // By value.
    let p = f.provider();
    p.list_owned().await.unwrap();
    p.list_owned().await.unwrap();
    assert_eq!(f.sim.oauth_grants(), 1, "the token is reused");
    // Renewed before it expires (4 s tokens: after half their life).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    p.list_owned().await.unwrap();
    assert_eq!(f.sim.oauth_grants(), 2);
    // By path, with GOOGLE_CLOUD_PROJECT overriding the key's project.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    std::fs::write(&path, &f.key).unwrap();
    let path_s = path.to_string_lossy().to_string();
    let by_path = GcpProvider::from_lookup(ZONE, |k| match k {
        CREDENTIALS_FILE => Some(path_s.clone()),
        COMPUTE_ENDPOINT => Some(f.sim.compute_endpoint().trim_end_matches('/').to_string()),
        _ => None,
    })
    .unwrap();
    by_path.list_owned().await.unwrap();
    assert_eq!(f.sim.oauth_grants(), 3);
    let other = GcpProvider::from_lookup(ZONE, |k| match k {
        CREDENTIALS_FILE => Some(path_s.clone()),
        PROJECT => Some("other-project".into()),
        COMPUTE_ENDPOINT => Some(f.sim.compute_endpoint()),
        _ => None,
    })
    .unwrap();
    assert_eq!(other.api().project(), "other-project");
}

/// Every secret of the fixture: the private key's body lines and the tokens issued.
fn secrets(f: &Fixture) -> Vec<String> {
    let mut s: Vec<String> = f
        .private
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_string)
        .collect();
    s.extend(f.sim.issued_secrets());
    s
}

fn assert_no_secret(f: &Fixture, text: &str) {
    for s in secrets(f) {
        assert!(!text.contains(&s), "a secret leaked into: {text}");
    }
}

#[tokio::test]
async fn bad_credentials_name_the_variable_and_leak_nothing() {
    let f = fixture();
    let err =
        |get: &dyn Fn(&str) -> Option<String>| GcpProvider::from_lookup(ZONE, get).unwrap_err();
    // Missing.
    let e = err(&|_| None);
    assert!(matches!(e, CloudError::GcpCredentialsMissing));
    let t = e.to_string();
    assert!(
        t.contains(CREDENTIALS_DATA) && t.contains(CREDENTIALS_FILE),
        "{t}"
    );
    // Unreadable file.
    let e = err(&|k| (k == CREDENTIALS_FILE).then(|| "/nonexistent/key.json".into()));
    let t = e.to_string();
    assert!(
        t.contains("/nonexistent/key.json") && t.contains(CREDENTIALS_FILE),
        "{t}"
    );
    // Not JSON (the text is not quoted back).
    let not_json = format!("oops {}", f.private);
    let e = err(&|k| (k == CREDENTIALS_DATA).then(|| not_json.clone()));
    let t = e.to_string();
    assert!(
        t.contains(CREDENTIALS_DATA) && t.contains("not JSON"),
        "{t}"
    );
    assert_no_secret(&f, &t);
    // Not a service-account key.
    let user = r#"{"type": "authorized_user", "client_id": "x", "refresh_token": "1//secret"}"#;
    let e = err(&|k| (k == CREDENTIALS_DATA).then(|| user.to_string()));
    let t = e.to_string();
    assert!(
        t.contains("authorized_user") && t.contains("service-account key"),
        "{t}"
    );
    assert!(!t.contains("1//secret"), "{t}");
    // A private key that is not one.
    let mut broken: Value = serde_json::from_str(&f.key).unwrap();
    let pem = broken["private_key"].as_str().unwrap().to_string();
    let cut: String = pem.lines().take(5).collect::<Vec<_>>().join("\n");
    broken["private_key"] = Value::String(cut.clone());
    let broken = broken.to_string();
    let e = err(&|k| (k == CREDENTIALS_DATA).then(|| broken.clone()));
    let t = e.to_string();
    assert!(matches!(e, CloudError::GcpPrivateKey { .. }), "{e:?}");
    assert!(t.contains(CREDENTIALS_DATA), "{t}");
    for line in cut.lines().skip(1) {
        assert!(!t.contains(line), "{t}");
    }
    // No project anywhere.
    let mut no_project: Value = serde_json::from_str(&f.key).unwrap();
    no_project["project_id"] = Value::Null;
    let no_project = no_project.to_string();
    let e = err(&|k| (k == CREDENTIALS_DATA).then(|| no_project.clone()));
    assert!(e.to_string().contains(PROJECT), "{e}");

    // A disabled key: the token endpoint refuses it, and nothing is created.
    let p = f.provider();
    let debug = format!("{p:?}");
    assert!(debug.contains(SA), "{debug}");
    f.sim.disable_service_account_key("key-1");
    let created = Created::new();
    let e = p.create(&spec("r1"), &created).await.unwrap_err();
    let t = e.to_string();
    assert!(matches!(e, CloudError::GcpTokenRefused { .. }), "{e:?}");
    assert!(
        t.contains("invalid_grant") && t.contains(CREDENTIALS_DATA),
        "{t}"
    );
    assert!(t.contains("disabled, expired or deleted"), "{t}");
    assert!(f.sim.instances().is_empty());
    assert!(created.list().is_empty());
    p.destroy(&created).await.unwrap();
    assert_no_secret(&f, &t);
    assert_no_secret(&f, &format!("{p:?} {e:?}"));
    // The token endpoint unreachable.
    let mut moved: Value = serde_json::from_str(&f.key).unwrap();
    moved["token_uri"] = Value::String("http://127.0.0.1:9/token".into());
    let moved = moved.to_string();
    let p = GcpProvider::from_lookup(ZONE, |k| match k {
        CREDENTIALS_DATA => Some(moved.clone()),
        COMPUTE_ENDPOINT => Some(f.sim.compute_endpoint()),
        _ => None,
    })
    .unwrap();
    let e = p.list_owned().await.unwrap_err().to_string();
    assert!(
        e.contains("could not be reached") && e.contains("127.0.0.1:9"),
        "{e}"
    );
}

#[tokio::test]
async fn tokens_never_show_in_debug_or_errors() {
    let f = fixture();
    let p = f.provider();
    let created = Created::new();
    let m = p.create(&spec("r1"), &created).await.unwrap();
    assert!(!f.sim.issued_secrets().is_empty());
    f.sim.inject(
        "compute.instances.get",
        GcpFault::Error {
            status: 400,
            reason: "invalid".into(),
            message: "bad".into(),
        },
        None,
    );
    let e = p
        .wait_running(&m, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_no_secret(&f, &format!("{e} {e:?} {p:?} {:?}", p.api()));
    f.sim.clear_faults();
    p.destroy(&created).await.unwrap();
}

#[tokio::test]
async fn metadata_over_the_limits_is_refused_before_anything_exists() {
    let f = fixture();
    let p = f.provider();
    let mut s = spec("r1");
    s.user_data = "x".repeat(300 * 1024);
    s.cloud.startup_script = Some("y".repeat(290 * 1024));
    let e = cml_cloud::check_spec(&s).unwrap_err().to_string();
    assert!(
        e.contains("item startup-script") && e.contains("262144"),
        "{e}"
    );
    assert!(
        e.contains("--cloud-startup-script makes 296960 bytes"),
        "{e}"
    );
    assert!(e.contains("nothing was created"), "{e}");
    let created = Created::new();
    let e2 = p.create(&s, &created).await.unwrap_err().to_string();
    assert_eq!(e, e2);
    // Under the per-value limit, over the total.
    s.user_data = "x".repeat(200 * 1024);
    s.cloud.startup_script = None;
    s.tags =
        cml_core::cloud::resource_tags("r1", &"r".repeat(150 * 1024), &"l".repeat(200 * 1024), &[]);
    let e = cml_cloud::check_spec(&s).unwrap_err().to_string();
    assert!(e.contains("in total") && e.contains("524288"), "{e}");
    s.user_data = "x".repeat(1024);
    s.tags = spec("r1").tags;
    cml_cloud::check_spec(&s).unwrap();
    assert!(f.sim.requests().is_empty());
    // A bad permission set is refused before anything exists too.
    s.cloud.permission_set = Some("arn:aws:iam::1:instance-profile/x".into());
    let e = p.create(&s, &created).await.unwrap_err().to_string();
    assert!(
        e.contains("--cloud-permission-set") && e.contains("nothing was created"),
        "{e}"
    );
    assert!(f.sim.requests().is_empty());
    assert!(created.is_empty());
}

#[tokio::test]
async fn the_machine_deletes_itself_or_names_the_permission_it_lacks() {
    let f = fixture();
    let p = f.provider();
    let created = Created::new();
    let m = p.create(&spec("r1"), &created).await.unwrap();
    p.wait_running(&m, Duration::from_secs(10)).await.unwrap();
    let md = f.sim.metadata_server(ZONE, "cml-r1").unwrap();
    let host = GcpHost::new(&md.url(), &f.sim.compute_endpoint());
    assert_eq!(host.cloud(), "gcp");
    // Denied: the error names the permission and how to grant it; the machine still exists.
    let machine_sa = f.sim.default_service_account();
    f.sim
        .deny_permission(&machine_sa, "compute.instances.delete");
    let e = host.delete_self().await.unwrap_err();
    let t = e.to_string();
    assert!(matches!(e, CloudError::GcpPermission { .. }), "{e:?}");
    assert!(
        t.contains("compute.instances.delete") && t.contains("--cloud-permission-set"),
        "{t}"
    );
    assert_eq!(f.sim.instance(ZONE, "cml-r1").unwrap()["status"], "RUNNING");
    assert_no_secret(&f, &t);
    // Allowed: deleted with the machine's own token (not the launcher's key).
    f.sim
        .allow_permission(&machine_sa, "compute.instances.delete");
    assert_eq!(host.delete_self().await.unwrap(), format!("{ZONE}/cml-r1"));
    let del = f
        .sim
        .requests()
        .into_iter()
        .rfind(|r| r.method == "compute.instances.delete")
        .unwrap();
    assert_eq!(del.principal.as_deref(), Some(machine_sa.as_str()));
    f.wait_empty();
    // Already gone counts as deleted.
    assert_eq!(host.delete_self().await.unwrap(), format!("{ZONE}/cml-r1"));
    p.destroy(&created).await.unwrap();
}
