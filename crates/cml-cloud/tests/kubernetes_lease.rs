//! Leader election over a Lease (`cml_cloud::kubernetes::lease`) against the simulated API
//! server, which enforces `resourceVersion` optimistic concurrency on updates.

#![cfg(feature = "kubernetes")]

use cml_cloud::kubernetes::lease::{
    pod_identity, Election, Leading, LeaseError, LeaseLock, LeaseTimings,
};
use cml_cloud::kubernetes::KubernetesProvider;
use cml_sim::k8s::{K8sConfig, K8sFault, K8sSim};
use serde_json::Value;
use std::time::{Duration, Instant};

const NS: &str = "default";
const LEASE: &str = "cml-pool";

fn kubeconfig(url: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: sim\nclusters:\n- name: sim\n  cluster:\n    server: {url}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: {NS}\nusers:\n- name: sim\n  user:\n    token: {token}\n"
    )
}

fn sim() -> K8sSim {
    K8sSim::start(K8sConfig {
        tokens: vec!["sim-token".into(), "other-token".into()],
        ..K8sConfig::default()
    })
    .unwrap()
}

/// Short timings: a 1 s lease, renewed every 100 ms, given up after 700 ms without renewal.
fn fast() -> LeaseTimings {
    LeaseTimings {
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(700),
        retry_period: Duration::from_millis(100),
    }
}

async fn candidate_with(sim: &K8sSim, token: &str, id: &str, t: LeaseTimings) -> LeaseLock {
    let p = KubernetesProvider::from_kubeconfig(&kubeconfig(&sim.url(), token), None)
        .await
        .unwrap();
    LeaseLock::new(p.client(), p.namespace(), LEASE, id, t).unwrap()
}

async fn candidate(sim: &K8sSim, id: &str) -> LeaseLock {
    candidate_with(sim, "sim-token", id, fast()).await
}

fn stored(sim: &K8sSim) -> Value {
    sim.object("leases", NS, LEASE).expect("the Lease exists")
}

#[tokio::test]
async fn two_candidates_only_one_wins() {
    let sim = sim();
    let mut a = candidate(&sim, "pool-a").await;
    let mut b = candidate(&sim, "pool-b").await;
    // Both find no Lease and create it: the API server accepts one creation.
    let (ra, rb) = tokio::join!(a.renew(), b.renew());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let winners = [&ra, &rb]
        .iter()
        .filter(|r| ***r == Election::Leading)
        .count();
    assert_eq!(winners, 1, "{ra:?} {rb:?}");
    let (winner, loser) = if ra == Election::Leading {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert_eq!(stored(&sim)["spec"]["holderIdentity"], winner.identity());
    assert_eq!(stored(&sim)["spec"]["leaseTransitions"], 0);
    assert_eq!(stored(&sim)["spec"]["leaseDurationSeconds"], 1);
    assert!(winner.is_leader() && !loser.is_leader());
    // The loser sees a valid Lease held by the winner, and leaves it alone.
    assert_eq!(
        loser.renew().await.unwrap(),
        Election::HeldBy(winner.identity().to_string())
    );
    assert_eq!(loser.holder(), Some(winner.identity()));

    // Released Leases raced for over and over: never two winners, and the Lease always names
    // the one that won.
    for round in 0..15 {
        let leader_is_a = a.is_leader();
        let released = if leader_is_a {
            a.release().await
        } else {
            b.release().await
        };
        assert!(released.unwrap(), "round {round}");
        let (ra, rb) = tokio::join!(a.renew(), b.renew());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let won: Vec<&str> = [(&ra, "pool-a"), (&rb, "pool-b")]
            .iter()
            .filter(|(r, _)| **r == Election::Leading)
            .map(|(_, id)| *id)
            .collect();
        // Both read the released Lease at the same version, or one read the other's fresh
        // write: either way exactly one wins.
        assert_eq!(won.len(), 1, "round {round}: {ra:?} {rb:?}");
        assert_eq!(
            stored(&sim)["spec"]["holderIdentity"],
            won[0],
            "round {round}"
        );
        assert!(a.is_leader() != b.is_leader(), "round {round}");
    }
}

#[tokio::test]
async fn a_stale_resource_version_loses() {
    let sim = sim();
    let mut a = candidate(&sim, "pool-a").await;
    let mut b = candidate(&sim, "pool-b").await;
    assert_eq!(a.renew().await.unwrap(), Election::Leading);
    assert!(a.release().await.unwrap());
    let released_rv = stored(&sim)["metadata"]["resourceVersion"].clone();
    // b reads the released Lease, but its answer is late: meanwhile a takes the Lease again.
    sim.inject(
        "GET",
        &format!("/leases/{LEASE}"),
        K8sFault::Delay(Duration::from_millis(400)),
    );
    let late = tokio::spawn(async move {
        let r = b.renew().await;
        (b, r)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a.renew().await.unwrap(), Election::Leading);
    let (b, rb) = late.await.unwrap();
    // b's write carries the version it read, which is stale now: 409, and b does not lead.
    assert_eq!(rb.unwrap(), Election::Conflict);
    assert!(!b.is_leader());
    assert_eq!(stored(&sim)["spec"]["holderIdentity"], "pool-a");
    let conflicts: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.status == 409)
        .collect();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(
        conflicts[0].body["metadata"]["resourceVersion"],
        released_rv
    );
    assert_eq!(conflicts[0].body["spec"]["holderIdentity"], "pool-b");
}

#[tokio::test]
async fn a_lease_deleted_between_read_and_write_is_a_lost_race_then_made_again() {
    let sim = sim();
    let mut a = candidate(&sim, "pool-a").await;
    assert_eq!(a.renew().await.unwrap(), Election::Leading);
    sim.inject(
        "GET",
        &format!("/leases/{LEASE}"),
        K8sFault::Delay(Duration::from_millis(300)),
    );
    let late = tokio::spawn(async move {
        let r = a.renew().await;
        (a, r)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = reqwest::Client::new()
        .delete(format!(
            "{}/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{LEASE}",
            sim.url()
        ))
        .bearer_auth("sim-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (mut a, r) = late.await.unwrap();
    assert_eq!(r.unwrap(), Election::Conflict);
    assert!(sim
        .requests()
        .iter()
        .any(|r| r.method == "PUT" && r.status == 404));
    assert_eq!(a.renew().await.unwrap(), Election::Leading);
    assert_eq!(stored(&sim)["spec"]["holderIdentity"], "pool-a");
}

#[tokio::test]
async fn the_loser_takes_over_after_the_winner_stops_renewing() {
    let sim = sim();
    let mut a = candidate(&sim, "pool-a").await;
    let mut b = candidate(&sim, "pool-b").await;
    a.acquire().await.unwrap();
    let first = stored(&sim)["spec"].clone();
    let leadership = a.keep_renewing();
    // While a renews, b cannot acquire, well past the lease duration.
    let waited = tokio::time::timeout(Duration::from_millis(2500), b.acquire()).await;
    assert!(waited.is_err(), "b acquired a Lease that was being renewed");
    assert!(leadership.is_leading());
    assert_eq!(b.holder(), Some("pool-a"));
    let renewed = stored(&sim)["spec"].clone();
    assert_ne!(renewed["renewTime"], first["renewTime"]);
    assert_eq!(renewed["acquireTime"], first["acquireTime"]);
    assert_eq!(renewed["leaseTransitions"], 0);

    // a stops renewing without releasing (a crash): b takes over once the Lease expired.
    let mut a = leadership.stop().await;
    let stopped = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), b.acquire())
        .await
        .expect("b took over within 5 s")
        .unwrap();
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "b took over after {took:?}, before the 1 s lease could have expired"
    );
    let spec = stored(&sim)["spec"].clone();
    assert_eq!(spec["holderIdentity"], "pool-b");
    assert_eq!(spec["leaseTransitions"], 1);
    assert_ne!(spec["acquireTime"], first["acquireTime"]);
    // The old leader, back, sees the new holder and does not take the Lease back.
    assert_eq!(a.renew().await.unwrap(), Election::HeldBy("pool-b".into()));
    assert!(!a.is_leader());
    assert!(!a.release().await.unwrap());
    assert_eq!(stored(&sim)["spec"]["holderIdentity"], "pool-b");
}

#[tokio::test]
async fn release_hands_over_at_once() {
    let sim = sim();
    let slow = LeaseTimings {
        lease_duration: Duration::from_secs(30),
        ..fast()
    };
    let mut a = candidate_with(&sim, "sim-token", "pool-a", slow).await;
    let mut b = candidate_with(&sim, "sim-token", "pool-b", slow).await;
    a.acquire().await.unwrap();
    assert_eq!(b.renew().await.unwrap(), Election::HeldBy("pool-a".into()));
    let leadership = a.keep_renewing();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(leadership.release().await.unwrap());
    let released = stored(&sim)["spec"].clone();
    assert!(released.get("holderIdentity").is_none(), "{released}");
    assert_eq!(released["leaseDurationSeconds"], 1);
    // A 30 s lease, released: b takes it at its next attempt.
    let started = Instant::now();
    b.acquire().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let spec = stored(&sim)["spec"].clone();
    assert_eq!(spec["holderIdentity"], "pool-b");
    assert_eq!(spec["leaseDurationSeconds"], 30);
    assert_eq!(spec["leaseTransitions"], 1);
}

#[tokio::test]
async fn a_leader_that_cannot_renew_reports_the_loss_before_anyone_takes_over() {
    let sim = sim();
    let mut a = candidate_with(&sim, "other-token", "pool-a", fast()).await;
    let mut b = candidate(&sim, "pool-b").await;
    a.acquire().await.unwrap();
    let mut leadership = a.keep_renewing();
    let mut watch = leadership.subscribe();
    assert_eq!(*watch.borrow(), Leading::Yes);
    // From now on a's renewals are refused.
    sim.forbid("other-token", "update", "leases");
    let cut = Instant::now();
    let b_task = tokio::spawn(async move {
        b.acquire().await.unwrap();
        Instant::now()
    });
    let why = tokio::time::timeout(Duration::from_secs(3), leadership.lost())
        .await
        .expect("the loss is reported");
    let lost_at = Instant::now();
    assert!(!leadership.is_leading());
    assert!(
        why.contains("was not renewed within 700ms") && why.contains("Forbidden"),
        "{why}"
    );
    watch.changed().await.ok();
    assert!(matches!(&*watch.borrow(), Leading::Lost(_)));
    let b_at = tokio::time::timeout(Duration::from_secs(5), b_task)
        .await
        .expect("b takes over")
        .unwrap();
    assert!(
        lost_at < b_at,
        "a reported the loss {:?} after the cut, b led {:?} after it",
        lost_at - cut,
        b_at - cut
    );
    assert_eq!(stored(&sim)["spec"]["holderIdentity"], "pool-b");
}

#[tokio::test]
async fn a_leader_that_sees_another_holder_reports_the_loss() {
    let sim = sim();
    let mut a = candidate(&sim, "pool-a").await;
    a.acquire().await.unwrap();
    let mut leadership = a.keep_renewing();
    // Another writer takes the Lease by force (kubectl edit, a misconfigured replica).
    let mut lease = stored(&sim);
    lease["spec"]["holderIdentity"] = Value::from("intruder");
    let p = KubernetesProvider::from_kubeconfig(&kubeconfig(&sim.url(), "sim-token"), None)
        .await
        .unwrap();
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(p.client(), NS);
    let mut obj: k8s_openapi::api::coordination::v1::Lease = serde_json::from_value(lease).unwrap();
    obj.metadata.resource_version = None;
    api.replace(LEASE, &Default::default(), &obj).await.unwrap();
    let why = tokio::time::timeout(Duration::from_secs(2), leadership.lost())
        .await
        .expect("the loss is reported");
    assert_eq!(why, format!("Lease {NS}/{LEASE} is now held by intruder"));
    assert_eq!(stored(&sim)["spec"]["holderIdentity"], "intruder");
}

#[tokio::test]
async fn refusals_fail_with_the_lease_named_and_create_nothing() {
    let sim = sim();
    let mut a = candidate_with(&sim, "other-token", "pool-a", fast()).await;
    sim.forbid("other-token", "create", "leases");
    let e = a.acquire().await.unwrap_err();
    assert!(matches!(e, LeaseError::Create { .. }), "{e:?}");
    assert!(!e.is_transient());
    let msg = e.to_string();
    assert!(
        msg.starts_with("creating Lease default/cml-pool failed: "),
        "{msg}"
    );
    assert!(msg.contains("hint: grant get, create and update on leases (group coordination.k8s.io) in namespace default"), "{msg}");
    assert!(sim.names("leases", NS).is_empty());
    assert!(!msg.contains("other-token"));

    sim.forbid("other-token", "get", "leases");
    let e = a.acquire().await.unwrap_err();
    assert!(matches!(e, LeaseError::Get { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("reading Lease default/cml-pool failed: "),
        "{e}"
    );

    // A namespace that does not exist.
    let p = KubernetesProvider::from_kubeconfig(&kubeconfig(&sim.url(), "sim-token"), Some("nope"))
        .await
        .unwrap();
    let mut c = LeaseLock::new(p.client(), "nope", LEASE, "pool-c", fast()).unwrap();
    let e = c.acquire().await.unwrap_err();
    assert!(
        e.to_string()
            .contains("hint: namespace nope does not exist"),
        "{e}"
    );
    assert!(sim.names("leases", "nope").is_empty());
}

#[tokio::test]
async fn bad_settings_are_refused_before_anything_is_sent() {
    let sim = sim();
    let p = KubernetesProvider::from_kubeconfig(&kubeconfig(&sim.url(), "sim-token"), None)
        .await
        .unwrap();
    let cases = [
        (
            LEASE,
            "pool-a",
            LeaseTimings {
                renew_deadline: Duration::from_secs(1),
                ..fast()
            },
            "the lease duration (1s) must be greater than the renew deadline (1s)",
        ),
        (
            LEASE,
            "pool-a",
            LeaseTimings {
                lease_duration: Duration::from_millis(1500),
                ..fast()
            },
            "the lease duration must be a whole number of seconds",
        ),
        (
            LEASE,
            "pool-a",
            LeaseTimings {
                retry_period: Duration::from_millis(600),
                ..fast()
            },
            "must be greater than 1.2 times the retry period",
        ),
        (LEASE, " ", fast(), "the candidate's identity is empty"),
        (
            "",
            "pool-a",
            fast(),
            "the Lease needs a name and a namespace",
        ),
    ];
    for (name, id, t, want) in cases {
        let e = LeaseLock::new(p.client(), NS, name, id, t).unwrap_err();
        assert!(matches!(e, LeaseError::Config { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(want) && msg.contains("\nhint: "), "{msg}");
    }
    assert!(sim.requests().is_empty());
}

/// The child side of [`the_holder_identity_is_the_pod_name`]: runs only with
/// `CML_LEASE_IDENTITY_CHILD` set, in a process whose `HOSTNAME` the parent chose.
#[tokio::test]
async fn identity_child() {
    if std::env::var_os("CML_LEASE_IDENTITY_CHILD").is_none() {
        return;
    }
    let sim = sim();
    let id = match pod_identity() {
        Ok(id) => id,
        Err(e) => {
            println!("IDENTITY-ERROR: {e}");
            return;
        }
    };
    let mut a = candidate(&sim, &id).await;
    a.acquire().await.unwrap();
    println!(
        "HOLDER: {}",
        stored(&sim)["spec"]["holderIdentity"].as_str().unwrap()
    );
}

#[test]
fn the_holder_identity_is_the_pod_name() {
    let run = |hostname: Option<&str>| {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "identity_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CML_LEASE_IDENTITY_CHILD", "1");
        match hostname {
            Some(h) => cmd.env("HOSTNAME", h),
            None => cmd.env_remove("HOSTNAME"),
        };
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run(Some("cml-pool-6f7d8b9c4-x2x9q"));
    assert!(out.contains("HOLDER: cml-pool-6f7d8b9c4-x2x9q\n"), "{out}");
    let out = run(None);
    assert!(
        out.contains(
            "IDENTITY-ERROR: this replica has no identity for leader election: HOSTNAME is not set"
        ),
        "{out}"
    );
}
