//! The simulated Compute Engine behaves as Compute Engine does: instance and operation
//! lifecycles, capacity and quota errors, idempotent inserts, lost answers, preemption, power
//! off, run-time limits, the metadata server of a machine and the token endpoint of a
//! service-account key — each driven through the REST API with a real HTTP client.

mod gcp_support;

use std::time::{Duration, Instant};

use cml_sim::gcp::{
    service_account_key_file, Capacity, GcpFault, QuotaDelivery, SCOPE_COMPUTE_READONLY,
};
use gcp_support::*;
use serde_json::{json, Value};

fn insert(c: &Client, sim: &cml_sim::gcp::GcpSim, t: &str, zone: &str, body: &Value) -> Answer {
    c.api(
        "POST",
        &api_url(sim, &format!("zones/{zone}/instances")),
        t,
        Some(body),
    )
}

#[test]
fn an_instance_lives_through_the_api() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    let a = insert(&c, &sim, &t, ZONE, &instance_body("vm-1", ZONE));
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["kind"], "compute#operation");
    assert_eq!(a.json["operationType"], "insert");
    assert_eq!(a.json["status"], "PENDING");
    assert_eq!(a.json["user"], SA);
    assert!(a.json["targetLink"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/zones/{ZONE}/instances/vm-1")));
    // The operation goes PENDING → RUNNING → DONE, without an error.
    let (done, seen) = wait_op(&c, &sim, &a.json, &t);
    assert_eq!(seen, ["PENDING", "RUNNING", "DONE"]);
    assert!(done["error"].is_null());
    assert_eq!(done["progress"], 100);
    // The instance goes PROVISIONING → STAGING → RUNNING.
    let url = api_url(&sim, &format!("zones/{ZONE}/instances/vm-1"));
    let mut statuses: Vec<String> = Vec::new();
    wait_until("RUNNING", || {
        let g = c.api("GET", &url, &t, None);
        let s = g.json["status"].as_str().unwrap().to_string();
        if statuses.last() != Some(&s) {
            statuses.push(s.clone());
        }
        s == "RUNNING"
    });
    assert_eq!(statuses.last().unwrap(), "RUNNING");
    let order = ["PROVISIONING", "STAGING", "RUNNING"];
    let idx: Vec<usize> = statuses
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "{statuses:?}");
    let inst = c.api("GET", &url, &t, None).json;
    assert_eq!(inst["labels"]["cml-id"], "vm-1");
    assert!(inst["machineType"]
        .as_str()
        .unwrap()
        .ends_with("/machineTypes/e2-custom-8-32768"));
    assert_eq!(
        inst["metadata"]["items"][0],
        json!({"key": "startup-script", "value": "#!/bin/sh\necho hello\n"})
    );
    let nat = inst["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
        .as_str()
        .unwrap();
    assert!(nat.starts_with("34."), "{nat}");
    assert_eq!(
        inst["serviceAccounts"][0]["email"],
        sim.default_service_account()
    );
    assert_eq!(inst["disks"][0]["boot"], true);
    assert_eq!(inst["disks"][0]["diskSizeGb"], "35");
    assert_eq!(inst["scheduling"]["provisioningModel"], "STANDARD");
    assert!(inst["lastStartTimestamp"].is_string());
    // Its boot disk has the labels given in initializeParams, and is in use.
    let disks = sim.disks();
    assert_eq!(disks.len(), 1);
    assert_eq!(disks[0]["name"], "vm-1");
    assert_eq!(disks[0]["labels"]["cml-id"], "vm-1");
    assert_eq!(disks[0]["sizeGb"], "35");
    assert!(disks[0]["users"][0]
        .as_str()
        .unwrap()
        .ends_with("/instances/vm-1"));
    assert!(disks[0]["sourceImage"]
        .as_str()
        .unwrap()
        .contains("/projects/ubuntu-os-cloud/global/images/ubuntu-2404-noble-amd64"));
    // Found by owner label, in its zone and across zones.
    let list = c.api(
        "GET",
        &api_url(
            &sim,
            &format!("zones/{ZONE}/instances?filter=labels.cml-id%20%3D%20vm-1"),
        ),
        &t,
        None,
    );
    assert_eq!(list.json["items"][0]["name"], "vm-1");
    let none = c.api(
        "GET",
        &api_url(
            &sim,
            &format!("zones/{ZONE}/instances?filter=labels.cml-id%3Dother"),
        ),
        &t,
        None,
    );
    assert!(none.json["items"].is_null(), "{}", none.text);
    let agg = c.api("GET", &api_url(&sim, "aggregated/instances"), &t, None);
    assert_eq!(
        agg.json["items"][format!("zones/{ZONE}")]["instances"][0]["name"],
        "vm-1"
    );
    assert_eq!(
        agg.json["items"]["zones/us-west1-b"]["warning"]["code"],
        "NO_RESULTS_ON_PAGE"
    );
    // Console output, from an offset.
    sim.append_serial(ZONE, "vm-1", "line one\n");
    let serial = api_url(&sim, &format!("zones/{ZONE}/instances/vm-1/serialPort"));
    let out = c.api("GET", &serial, &t, None).json;
    assert_eq!(
        (out["contents"].as_str(), out["next"].as_str()),
        (Some("line one\n"), Some("9"))
    );
    sim.append_serial(ZONE, "vm-1", "line two\n");
    let out = c.api("GET", &format!("{serial}?start=9"), &t, None).json;
    assert_eq!(out["contents"], "line two\n");
    assert_eq!(out["start"], "9");
    // Deleted: STOPPING while the operation runs, then gone with its auto-delete disk.
    let del = c.api("DELETE", &url, &t, None);
    assert_eq!(del.status, 200, "{}", del.text);
    assert_eq!(c.api("GET", &url, &t, None).json["status"], "STOPPING");
    let again = c.api("DELETE", &url, &t, None);
    assert_eq!(again.status, 400);
    assert_eq!(
        again.json["error"]["errors"][0]["reason"],
        "resourceNotReady"
    );
    wait_op(&c, &sim, &del.json, &t);
    let gone = c.api("GET", &url, &t, None);
    assert_eq!(gone.status, 404);
    assert_eq!(
        gone.json["error"]["message"],
        format!(
            "The resource 'projects/{}/zones/{ZONE}/instances/vm-1' was not found",
            sim.project()
        )
    );
    assert_eq!(gone.json["error"]["errors"][0]["reason"], "notFound");
    assert!(sim.disks().is_empty());
    assert_eq!(sim.deleted_instances(), ["vm-1"]);
}

#[test]
fn zone_operations_wait_returns_when_done() {
    let sim = sim_with(|c| c.operation_step = Duration::from_millis(300));
    let t = token(&sim);
    let c = Client::new();
    let op = insert(&c, &sim, &t, ZONE, &instance_body("vm-1", ZONE)).json;
    let start = Instant::now();
    let w = c.api(
        "POST",
        &api_url(
            &sim,
            &format!(
                "zones/{ZONE}/operations/{}/wait",
                op["name"].as_str().unwrap()
            ),
        ),
        &t,
        None,
    );
    assert_eq!(w.json["status"], "DONE");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // With a short wait timeout, the operation comes back as it is.
    let sim = sim_with(|c| {
        c.operation_step = Duration::from_secs(5);
        c.wait_timeout = Duration::from_millis(100);
    });
    let t = token(&sim);
    let op = insert(&c, &sim, &t, ZONE, &instance_body("vm-1", ZONE)).json;
    let w = c.api(
        "POST",
        &api_url(
            &sim,
            &format!(
                "zones/{ZONE}/operations/{}/wait",
                op["name"].as_str().unwrap()
            ),
        ),
        &t,
        None,
    );
    assert_eq!(w.json["status"], "PENDING");
    let missing = c.api(
        "GET",
        &api_url(&sim, &format!("zones/{ZONE}/operations/operation-nope")),
        &t,
        None,
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn an_exhausted_zone_fails_the_insert_operation() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    sim.set_capacity(ZONE, Capacity::SpotExhausted);
    let mut spot = instance_body("vm-spot", ZONE);
    spot["scheduling"] =
        json!({"provisioningModel": "SPOT", "instanceTerminationAction": "DELETE"});
    let a = insert(&c, &sim, &t, ZONE, &spot);
    assert_eq!(a.status, 200, "{}", a.text);
    // Visible while the operation runs, gone once it fails.
    assert_eq!(
        sim.instance(ZONE, "vm-spot").unwrap()["status"],
        "PROVISIONING"
    );
    let (done, _) = wait_op(&c, &sim, &a.json, &t);
    let e = &done["error"]["errors"][0];
    assert_eq!(e["code"], "ZONE_RESOURCE_POOL_EXHAUSTED");
    assert_eq!(
        e["message"],
        format!("The zone 'projects/{}/zones/{ZONE}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.", sim.project())
    );
    assert_eq!(done["httpErrorStatusCode"], 503);
    assert_eq!(done["httpErrorMessage"], "SERVICE UNAVAILABLE");
    assert_eq!(e["errorDetails"][2]["errorInfo"]["metadatas"]["zone"], ZONE);
    let get = c.api(
        "GET",
        &api_url(&sim, &format!("zones/{ZONE}/instances/vm-spot")),
        &t,
        None,
    );
    assert_eq!(get.status, 404);
    assert!(sim.disks().is_empty());
    // The same spot machine in another zone of the region, and a standard one here, work.
    let mut other = instance_body("vm-spot-b", "us-east1-b");
    other["scheduling"] = spot["scheduling"].clone();
    let b = insert(&c, &sim, &t, "us-east1-b", &other);
    assert_eq!(b.status, 200, "{}", b.text);
    assert!(wait_op(&c, &sim, &b.json, &t).0["error"].is_null());
    let std_ = insert(&c, &sim, &t, ZONE, &instance_body("vm-std", ZONE));
    assert_eq!(std_.status, 200, "{}", std_.text);
    assert!(wait_op(&c, &sim, &std_.json, &t).0["error"].is_null());
    // An exhausted zone refuses standard machines too.
    sim.set_capacity("us-east1-d", Capacity::Exhausted);
    let d = insert(
        &c,
        &sim,
        &t,
        "us-east1-d",
        &instance_body("vm-d", "us-east1-d"),
    );
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(
        wait_op(&c, &sim, &d.json, &t).0["error"]["errors"][0]["code"],
        "ZONE_RESOURCE_POOL_EXHAUSTED"
    );
}

#[test]
fn quotas_fail_in_the_operation_or_at_once() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    sim.set_quota("us-east1", "CPUS", 8.0);
    let a = insert(&c, &sim, &t, ZONE, &instance_body("vm-1", ZONE));
    assert!(wait_op(&c, &sim, &a.json, &t).0["error"].is_null());
    let b = insert(
        &c,
        &sim,
        &t,
        "us-east1-b",
        &instance_body("vm-2", "us-east1-b"),
    );
    assert_eq!(b.status, 200);
    let (done, _) = wait_op(&c, &sim, &b.json, &t);
    assert_eq!(done["error"]["errors"][0]["code"], "QUOTA_EXCEEDED");
    assert_eq!(
        done["error"]["errors"][0]["message"],
        "Quota 'CPUS' exceeded.  Limit: 8.0 in region us-east1."
    );
    assert_eq!(
        done["error"]["errors"][0]["errorDetails"][0]["quotaInfo"]["limit"],
        8.0
    );
    assert_eq!(done["httpErrorStatusCode"], 403);
    assert!(sim.instance("us-east1-b", "vm-2").is_none());
    // Another region has its own quota.
    let w = insert(
        &c,
        &sim,
        &t,
        "us-west1-b",
        &instance_body("vm-3", "us-west1-b"),
    );
    assert!(wait_op(&c, &sim, &w.json, &t).0["error"].is_null());
    // Refused at once, and nothing is created.
    sim.set_quota_delivery(QuotaDelivery::Http);
    let h = insert(
        &c,
        &sim,
        &t,
        "us-east1-b",
        &instance_body("vm-4", "us-east1-b"),
    );
    assert_eq!(h.status, 403);
    assert_eq!(h.json["error"]["errors"][0]["reason"], "quotaExceeded");
    assert_eq!(h.json["error"]["errors"][0]["domain"], "usageLimits");
    assert!(sim.instance("us-east1-b", "vm-4").is_none());
    assert_eq!(sim.disks().len(), 2);
    // A TERMINATED instance holds no CPU quota.
    assert!(
        sim.power_off(ZONE, "vm-1") || {
            wait_until("running", || {
                sim.instance(ZONE, "vm-1").unwrap()["status"] == "RUNNING"
            });
            sim.power_off(ZONE, "vm-1")
        }
    );
    wait_until("terminated", || {
        sim.instance(ZONE, "vm-1").unwrap()["status"] == "TERMINATED"
    });
    let r = insert(
        &c,
        &sim,
        &t,
        "us-east1-b",
        &instance_body("vm-5", "us-east1-b"),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let region = c.api("GET", &api_url(&sim, "regions/us-east1"), &t, None);
    assert_eq!(
        region.json["quotas"][0],
        json!({"metric": "CPUS", "limit": 8.0, "usage": 8.0})
    );
}

#[test]
fn an_insert_with_the_same_request_id_is_done_once() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    let url = api_url(
        &sim,
        &format!("zones/{ZONE}/instances?requestId=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
    );
    let body = instance_body("vm-1", ZONE);
    let a = c.api("POST", &url, &t, Some(&body));
    let b = c.api("POST", &url, &t, Some(&body));
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(a.json["name"], b.json["name"]);
    assert_eq!(
        b.json["clientOperationId"],
        "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    );
    assert_eq!(sim.instances().len(), 1);
    // A request id must be a UUID.
    for bad in ["retry-1", "00000000-0000-0000-0000-000000000000"] {
        let r = c.api(
            "POST",
            &api_url(&sim, &format!("zones/{ZONE}/instances?requestId={bad}")),
            &t,
            Some(&instance_body("vm-2", ZONE)),
        );
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("must be a valid UUID"));
    }
    // Without a request id, the same name is a conflict.
    let dup = insert(&c, &sim, &t, ZONE, &body);
    assert_eq!(dup.status, 409);
    assert_eq!(dup.json["error"]["errors"][0]["reason"], "alreadyExists");
    assert_eq!(sim.instances().len(), 1);
}

#[test]
fn a_lost_answer_leaves_an_instance_found_by_its_owner_label() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    sim.inject("compute.instances.insert", GcpFault::DropAnswer, Some(1));
    let url = api_url(&sim, &format!("zones/{ZONE}/instances"));
    let body = instance_body("vm-lost", ZONE).to_string().into_bytes();
    let auth = format!("Bearer {t}");
    let lost = c.send(
        "POST",
        &url,
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        Some(body),
    );
    assert!(lost.is_err(), "the answer should be lost: {lost:?}");
    let found = c.api(
        "GET",
        &api_url(&sim, "aggregated/instances?filter=labels.cml-id%3Dvm-lost"),
        &t,
        None,
    );
    assert_eq!(
        found.json["items"][format!("zones/{ZONE}")]["instances"][0]["name"],
        "vm-lost"
    );
    let r = sim.requests();
    assert_eq!(r[0].fault, Some(GcpFault::DropAnswer));
    assert_eq!(r[0].status, 200);
    // A delayed answer still comes; an injected error replaces the request.
    sim.inject(
        "compute.instances.get",
        GcpFault::DelayAnswer(Duration::from_millis(300)),
        Some(1),
    );
    let start = Instant::now();
    let g = c.api(
        "GET",
        &api_url(&sim, &format!("zones/{ZONE}/instances/vm-lost")),
        &t,
        None,
    );
    assert_eq!(g.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    sim.inject(
        "compute.instances.delete",
        GcpFault::Error {
            status: 503,
            reason: "backendError".into(),
            message: "Internal error.".into(),
        },
        Some(1),
    );
    let d = c.api(
        "DELETE",
        &api_url(&sim, &format!("zones/{ZONE}/instances/vm-lost")),
        &t,
        None,
    );
    assert_eq!(d.status, 503);
    assert_eq!(d.json["error"]["errors"][0]["reason"], "backendError");
    // A hung endpoint never answers, and nothing is done.
    sim.inject("compute.instances.delete", GcpFault::Hang, Some(1));
    let quick = Client::with_timeout(Duration::from_millis(300));
    let auth = format!("Bearer {t}");
    let hung = quick.send(
        "DELETE",
        &api_url(&sim, &format!("zones/{ZONE}/instances/vm-lost")),
        &[("authorization", auth.as_str())],
        None,
    );
    assert!(hung.is_err(), "{hung:?}");
    assert_eq!(sim.requests().last().unwrap().status, 0);
    assert_eq!(
        sim.instance(ZONE, "vm-lost").unwrap()["status"]
            .as_str()
            .map(|s| s != "STOPPING"),
        Some(true)
    );
}

#[test]
fn a_spot_machine_is_preempted_and_deleted() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    let mut spot = instance_body("vm-spot", ZONE);
    spot["scheduling"] =
        json!({"provisioningModel": "SPOT", "instanceTerminationAction": "DELETE"});
    let a = insert(&c, &sim, &t, ZONE, &spot);
    wait_op(&c, &sim, &a.json, &t);
    wait_until("running", || {
        sim.instance(ZONE, "vm-spot").unwrap()["status"] == "RUNNING"
    });
    let inst = sim.instance(ZONE, "vm-spot").unwrap();
    assert_eq!(
        inst["scheduling"],
        json!({"onHostMaintenance": "TERMINATE", "automaticRestart": false, "preemptible": true,
               "provisioningModel": "SPOT", "instanceTerminationAction": "DELETE"})
    );
    let md = sim.metadata_server(ZONE, "vm-spot").unwrap();
    assert_eq!(c.metadata(&md.url(), "instance/preempted").text, "FALSE");
    // A watcher waiting for a change hears of the preemption at once.
    let url = md.url();
    let watcher = std::thread::spawn(move || {
        let c = Client::new();
        let start = Instant::now();
        let a = c.metadata(
            &url,
            "instance/preempted?wait_for_change=true&timeout_sec=30",
        );
        (a.text, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(sim.preempt(ZONE, "vm-spot"));
    let (seen, took) = watcher.join().unwrap();
    assert_eq!(seen, "TRUE");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(sim.instance(ZONE, "vm-spot").unwrap()["status"], "STOPPING");
    wait_until("deleted", || sim.instance(ZONE, "vm-spot").is_none());
    assert!(sim.disks().is_empty());
    // The machine's metadata server still says why.
    assert_eq!(c.metadata(&md.url(), "instance/preempted").text, "TRUE");
}

#[test]
fn a_powered_off_machine_is_terminated_and_keeps_its_disk() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    let mut body = instance_body("vm-1", ZONE);
    body["disks"][0]["autoDelete"] = json!(false);
    let a = insert(&c, &sim, &t, ZONE, &body);
    wait_op(&c, &sim, &a.json, &t);
    wait_until("running", || {
        sim.instance(ZONE, "vm-1").unwrap()["status"] == "RUNNING"
    });
    assert!(sim.power_off(ZONE, "vm-1"));
    wait_until("terminated", || {
        sim.instance(ZONE, "vm-1").unwrap()["status"] == "TERMINATED"
    });
    let inst = sim.instance(ZONE, "vm-1").unwrap();
    assert!(inst["networkInterfaces"][0]["accessConfigs"][0]["natIP"].is_null());
    assert!(inst["lastStopTimestamp"].is_string());
    let terminated = c.api(
        "GET",
        &api_url(
            &sim,
            &format!("zones/{ZONE}/instances?filter=status%20%3D%20TERMINATED"),
        ),
        &t,
        None,
    );
    assert_eq!(terminated.json["items"][0]["name"], "vm-1");
    // The disk cannot go while the instance uses it; after the instance, it can.
    let disk_url = api_url(&sim, &format!("zones/{ZONE}/disks/vm-1"));
    let busy = c.api("DELETE", &disk_url, &t, None);
    assert_eq!(busy.status, 400);
    assert_eq!(
        busy.json["error"]["errors"][0]["reason"],
        "resourceInUseByAnotherResource"
    );
    let d = c.api(
        "DELETE",
        &api_url(&sim, &format!("zones/{ZONE}/instances/vm-1")),
        &t,
        None,
    );
    wait_op(&c, &sim, &d.json, &t);
    let disks = sim.disks();
    assert_eq!(
        disks.len(),
        1,
        "a disk without autoDelete outlives its instance"
    );
    assert!(disks[0]["users"].is_null());
    let dd = c.api("DELETE", &disk_url, &t, None);
    assert_eq!(dd.status, 200, "{}", dd.text);
    wait_op(&c, &sim, &dd.json, &t);
    assert!(sim.disks().is_empty());
}

#[test]
fn max_run_duration_deletes_the_machine() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    let mut body = instance_body("vm-1", ZONE);
    body["scheduling"]["maxRunDuration"] = json!({"seconds": "30"});
    body["scheduling"]["instanceTerminationAction"] = json!("DELETE");
    let a = insert(&c, &sim, &t, ZONE, &body);
    assert_eq!(a.status, 200, "{}", a.text);
    wait_until("running", || {
        sim.instance(ZONE, "vm-1")
            .is_some_and(|i| i["status"] == "RUNNING")
    });
    assert_eq!(
        sim.instance(ZONE, "vm-1").unwrap()["scheduling"]["maxRunDuration"]["seconds"],
        "30"
    );
    // 30 "seconds" of 10 ms each.
    wait_until("deleted by maxRunDuration", || {
        sim.instance(ZONE, "vm-1").is_none()
    });
    assert!(sim.disks().is_empty());
    // With STOP, the instance is TERMINATED instead.
    body["name"] = json!("vm-2");
    body["disks"][0]["initializeParams"]["labels"] = json!({});
    body["scheduling"]["instanceTerminationAction"] = json!("STOP");
    insert(&c, &sim, &t, ZONE, &body);
    wait_until("terminated by maxRunDuration", || {
        sim.instance(ZONE, "vm-2")
            .is_some_and(|i| i["status"] == "TERMINATED")
    });
}

#[test]
fn bad_instance_bodies_are_refused_and_create_nothing() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, u16, &str)> = vec![
        (Box::new(|b| b["labels"]["cml-repo"] = json!("https://github.com/o/r")), 400,
         "Label value 'https://github.com/o/r' violates format constraints"),
        (Box::new(|b| b["labels"]["Team"] = json!("ml")), 400, "Label key 'Team' violates format constraints"),
        (Box::new(|b| b["disks"][0]["initializeParams"]["labels"]["x"] = json!("A")), 400,
         "Invalid value for field 'resource.disks[0].initializeParams.labels'"),
        (Box::new(|b| b["machineType"] = json!(format!("zones/{ZONE}/machineTypes/m"))), 400,
         "Machine type with name 'm' does not exist in zone 'us-east1-c'."),
        (Box::new(|b| b["machineType"] = json!("zones/us-east1-b/machineTypes/n1-standard-4")), 400,
         "does not exist in zone 'us-east1-c'"),
        (Box::new(|b| {
            b["guestAccelerators"] = json!([{"acceleratorType": format!("zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4"), "acceleratorCount": 1}]);
            b["scheduling"] = json!({});
        }), 400, "Instances with guest accelerators do not support live migration."),
        (Box::new(|b| {
            b["guestAccelerators"] = json!([{"acceleratorType": format!("zones/{ZONE}/acceleratorTypes/tesla"), "acceleratorCount": 1}]);
        }), 400, "Accelerator type 'tesla' does not exist in zone 'us-east1-c'."),
        (Box::new(|b| b["disks"][0]["initializeParams"]["sourceImage"] = json!("projects/ubuntu-os-cloud/global/images/family/ubuntu-9999")), 404,
         "The resource 'projects/ubuntu-os-cloud/global/images/family/ubuntu-9999' was not found"),
        (Box::new(|b| b["disks"][0]["initializeParams"]["diskSizeGb"] = json!("5")), 400,
         "Requested disk size cannot be smaller than the image size (10 GB)."),
        (Box::new(|b| b["scheduling"]["maxRunDuration"] = json!({"seconds": "600"})), 400,
         "Instance termination action must be specified when max run duration or termination time is specified."),
        (Box::new(|b| {
            b["scheduling"] = json!({"provisioningModel": "SPOT", "automaticRestart": true});
        }), 400, "Preemptible instances cannot be automatically restarted."),
        (Box::new(|b| b["name"] = json!("Bad_Name")), 400, "Invalid value at 'instance_resource.name'"),
        (Box::new(|b| { b.as_object_mut().unwrap().remove("networkInterfaces"); }), 400,
         "At least one network interface is required."),
        (Box::new(|b| b["disks"][0]["boot"] = json!(false)), 400, "Exactly one boot disk must be specified."),
        (Box::new(|b| b["metadata"]["items"][1]["key"] = json!("startup-script")), 400, "Duplicate metadata key 'startup-script'."),
        (Box::new(|b| b["scheduling"]["provisioningModel"] = json!("CHEAP")), 400, "Invalid value at 'instance_resource.scheduling.provisioningModel'"),
    ];
    for (edit, status, needle) in cases {
        let mut b = instance_body("vm-1", ZONE);
        edit(&mut b);
        let a = insert(&c, &sim, &t, ZONE, &b);
        assert_eq!(a.status, status, "{needle}: {}", a.text);
        let msg = a.json["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{msg:?} should contain {needle:?}");
        assert!(
            sim.instances().is_empty(),
            "{needle}: an instance was created"
        );
        assert!(sim.disks().is_empty(), "{needle}: a disk was created");
    }
    // An unknown zone, and an unknown project.
    let a = insert(
        &c,
        &sim,
        &t,
        "mars-north1-a",
        &instance_body("vm-1", "mars-north1-a"),
    );
    assert_eq!(a.status, 404);
    assert!(a.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("zones/mars-north1-a"));
    let a = c.api(
        "POST",
        &format!(
            "{}projects/someone-else/zones/{ZONE}/instances",
            sim.compute_endpoint()
        ),
        &t,
        Some(&instance_body("vm-1", ZONE)),
    );
    assert_eq!(a.status, 404);
    assert!(sim.instances().is_empty());
    // A path no API serves gets Google's HTML 404.
    let a = c.api("GET", &api_url(&sim, "zones/us-east1-c/widgets"), &t, None);
    assert_eq!(a.status, 404);
    assert!(a.text.contains("That’s an error."));
}

#[test]
fn requests_need_a_token_with_scopes_and_permissions() {
    let sim = sim_with(|c| c.token_ttl = Duration::from_millis(300));
    let c = Client::new();
    let url = api_url(&sim, &format!("zones/{ZONE}/instances"));
    let none = c.send("GET", &url, &[], None).unwrap();
    assert_eq!(none.status, 401);
    assert_eq!(none.json["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(none.json["error"]["errors"][0]["reason"], "required");
    let bogus = c.api("GET", &url, "ya29.made-up", None);
    assert_eq!(bogus.status, 401);
    assert_eq!(bogus.json["error"]["errors"][0]["reason"], "authError");
    let t = token(&sim);
    assert_eq!(c.api("GET", &url, &t, None).status, 200);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(c.api("GET", &url, &t, None).status, 401, "an expired token");
    // Read-only scopes read but do not write.
    let ro = sim.issue_token(SA, &[SCOPE_COMPUTE_READONLY]);
    assert_eq!(c.api("GET", &url, &ro, None).status, 200);
    let w = c.api("POST", &url, &ro, Some(&instance_body("vm-1", ZONE)));
    assert_eq!(w.status, 403);
    assert_eq!(
        w.json["error"]["message"],
        "Request had insufficient authentication scopes."
    );
    // IAM.
    sim.deny_permission(SA, "compute.instances.create");
    let t = token(&sim);
    let d = c.api("POST", &url, &t, Some(&instance_body("vm-1", ZONE)));
    assert_eq!(d.status, 403);
    assert_eq!(
        d.json["error"]["message"],
        format!(
            "Required 'compute.instances.create' permission for 'projects/{}/zones/{ZONE}'",
            sim.project()
        )
    );
    assert!(sim.instances().is_empty());
    sim.allow_permission(SA, "compute.instances.create");
    assert_eq!(
        c.api("POST", &url, &t, Some(&instance_body("vm-1", ZONE)))
            .status,
        200
    );
}

#[test]
fn the_metadata_server_answers_a_machine_about_itself() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    let a = insert(&c, &sim, &t, ZONE, &instance_body("vm-1", ZONE));
    wait_op(&c, &sim, &a.json, &t);
    wait_until("running", || {
        sim.instance(ZONE, "vm-1").unwrap()["status"] == "RUNNING"
    });
    let inst = sim.instance(ZONE, "vm-1").unwrap();
    assert!(
        !sim.preempt(ZONE, "vm-1"),
        "a standard instance is not preempted"
    );
    let md = sim.metadata_server(ZONE, "vm-1").unwrap();
    let base = md.url();
    // Without the header, refused.
    let bare = c
        .send(
            "GET",
            &format!("{base}/computeMetadata/v1/instance/id"),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(bare.status, 403);
    assert!(bare.text.contains("Missing Metadata-Flavor:Google header."));
    let fwd = c
        .send(
            "GET",
            &format!("{base}/computeMetadata/v1/instance/id"),
            &[
                ("Metadata-Flavor", "Google"),
                ("X-Forwarded-For", "10.0.0.1"),
            ],
            None,
        )
        .unwrap();
    assert_eq!(fwd.status, 403);
    let id = c.metadata(&base, "instance/id");
    assert_eq!(id.status, 200);
    assert_eq!(id.header("metadata-flavor").as_deref(), Some("Google"));
    assert!(id.header("etag").is_some());
    assert_eq!(id.text, inst["id"].as_str().unwrap());
    assert_eq!(c.metadata(&base, "instance/name").text, "vm-1");
    assert_eq!(
        c.metadata(&base, "instance/zone").text,
        format!("projects/{}/zones/{ZONE}", sim.project_number())
    );
    assert_eq!(c.metadata(&base, "project/project-id").text, sim.project());
    assert_eq!(
        c.metadata(&base, "instance/attributes/startup-script").text,
        "#!/bin/sh\necho hello\n"
    );
    assert_eq!(
        c.metadata(&base, "instance/attributes/").text,
        "startup-script\ncml-repo\n"
    );
    assert_eq!(c.metadata(&base, "instance/attributes/nope").status, 404);
    assert_eq!(c.metadata(&base, "instance/preempted").text, "FALSE");
    assert_eq!(
        c.metadata(&base, "instance/service-accounts/default/email")
            .text,
        sim.default_service_account()
    );
    // The machine's token works on the API, as its service account.
    let tok = c.metadata(&base, "instance/service-accounts/default/token");
    assert_eq!(tok.json["token_type"], "Bearer");
    assert!(tok.json["expires_in"].as_u64().unwrap() > 3000);
    let mt = tok.json["access_token"].as_str().unwrap().to_string();
    let me = api_url(&sim, &format!("zones/{ZONE}/instances/vm-1"));
    let g = c.api("GET", &me, &mt, None);
    assert_eq!(g.status, 200, "{}", g.text);
    // Refused the permission to delete itself, the machine gets 403 naming it.
    sim.deny_permission(&sim.default_service_account(), "compute.instances.delete");
    let d = c.api("DELETE", &me, &mt, None);
    assert_eq!(d.status, 403);
    assert_eq!(
        d.json["error"]["message"],
        format!("Required 'compute.instances.delete' permission for 'projects/{}/zones/{ZONE}/instances/vm-1'", sim.project())
    );
    assert_eq!(
        sim.requests().last().unwrap().principal.as_deref(),
        Some(sim.default_service_account().as_str())
    );
    sim.allow_permission(&sim.default_service_account(), "compute.instances.delete");
    let d = c.api("DELETE", &me, &mt, None);
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(d.json["user"], sim.default_service_account());
    wait_op(&c, &sim, &d.json, &mt);
    assert!(sim.instance(ZONE, "vm-1").is_none());
}

#[test]
fn a_machine_with_read_only_scopes_cannot_delete_itself() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    let mut body = instance_body("vm-ro", ZONE);
    body["serviceAccounts"] = json!([{"email": "default", "scopes": [SCOPE_COMPUTE_READONLY]}]);
    let a = insert(&c, &sim, &t, ZONE, &body);
    wait_op(&c, &sim, &a.json, &t);
    let md = sim.metadata_server(ZONE, "vm-ro").unwrap();
    let tok = c.metadata(&md.url(), "instance/service-accounts/default/token");
    let mt = tok.json["access_token"].as_str().unwrap();
    let me = api_url(&sim, &format!("zones/{ZONE}/instances/vm-ro"));
    assert_eq!(c.api("GET", &me, mt, None).status, 200);
    let d = c.api("DELETE", &me, mt, None);
    assert_eq!(d.status, 403);
    assert_eq!(
        d.json["error"]["errors"][0]["reason"],
        "insufficientPermissions"
    );
    assert!(sim.instance(ZONE, "vm-ro").is_some());
    // A machine without a service account has no token at all.
    let mut none = instance_body("vm-nosa", ZONE);
    none.as_object_mut().unwrap().remove("serviceAccounts");
    insert(&c, &sim, &t, ZONE, &none);
    let md = sim.metadata_server(ZONE, "vm-nosa").unwrap();
    assert_eq!(
        c.metadata(&md.url(), "instance/service-accounts/default/token")
            .status,
        404
    );
}

#[test]
fn the_token_endpoint_exchanges_a_signed_jwt() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = rsa_keys(dir.path(), "sa");
    let (other_private, _) = rsa_keys(dir.path(), "other");
    let sim = sim();
    sim.add_service_account_key(SA, "key-1", &public);
    let c = Client::new();
    let uri = sim.token_uri();
    let key_file = service_account_key_file(&sim.project(), SA, "key-1", &private, &uri);
    assert_eq!(key_file["token_uri"], uri.as_str());
    let grant = |jwt: &str| {
        c.form(
            &uri,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", jwt),
            ],
        )
    };
    let ok = grant(&assertion(&private, "key-1", &uri, json!({})));
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json["token_type"], "Bearer");
    assert_eq!(ok.json["expires_in"], 3599);
    let access = ok.json["access_token"].as_str().unwrap();
    let list = c.api(
        "GET",
        &api_url(&sim, &format!("zones/{ZONE}/instances")),
        access,
        None,
    );
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(sim.oauth_grants(), 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let cases: Vec<(String, &str, &str)> = vec![
        (assertion(&other_private, "key-1", &uri, json!({})), "invalid_grant", "Invalid JWT Signature."),
        (assertion(&private, "key-1", &uri, json!({"iat": now - 7200, "exp": now - 3600})), "invalid_grant",
         "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."),
        (assertion(&private, "key-1", &uri, json!({"exp": now + 7200})), "invalid_grant", "Token must be a short-lived token"),
        (assertion(&private, "key-1", "https://oauth2.googleapis.com/token", json!({})), "invalid_grant", "Failed audience check"),
        (assertion(&private, "key-1", &uri, json!({"scope": null})), "invalid_scope", "Empty or missing scope not allowed."),
        (assertion(&private, "key-1", &uri, json!({"iss": "nobody@x.iam.gserviceaccount.com"})), "invalid_grant", "Invalid grant: account not found"),
        ("not-a-jwt".to_string(), "invalid_grant", "not a JSON Web Token"),
    ];
    for (jwt, error, needle) in cases {
        let a = grant(&jwt);
        assert_eq!(a.status, 400, "{needle}: {}", a.text);
        assert_eq!(a.json["error"], error, "{}", a.text);
        assert!(
            a.json["error_description"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{}",
            a.text
        );
    }
    let g = c.form(
        &uri,
        &[("grant_type", "client_credentials"), ("assertion", "x")],
    );
    assert_eq!(g.json["error"], "unsupported_grant_type");
    let g = c.form(
        &uri,
        &[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")],
    );
    assert_eq!(g.json["error"], "invalid_request");
    // A disabled (deleted, expired) key is refused like a wrong signature.
    sim.disable_service_account_key("key-1");
    let a = grant(&assertion(&private, "key-1", &uri, json!({})));
    assert_eq!(a.json["error_description"], "Invalid JWT Signature.");
    assert_eq!(sim.oauth_grants(), 1);
}

#[test]
fn regions_zones_and_images() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    let r = c.api("GET", &api_url(&sim, "regions/europe-west1"), &t, None);
    let zones: Vec<&str> = r.json["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z.as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        zones,
        ["europe-west1-b", "europe-west1-c", "europe-west1-d"]
    );
    let z = c.api("GET", &api_url(&sim, "zones/europe-west1-d"), &t, None);
    assert!(z.json["region"]
        .as_str()
        .unwrap()
        .ends_with("/regions/europe-west1"));
    assert_eq!(
        c.api("GET", &api_url(&sim, "regions/mars1"), &t, None)
            .status,
        404
    );
    let img = c.api(
        "GET",
        &format!(
            "{}projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-arm64",
            sim.compute_endpoint()
        ),
        &t,
        None,
    );
    assert_eq!(img.json["architecture"], "ARM64");
    sim.add_image(&sim.project(), "runner", "runner-v2", "X86_64");
    let mine = c.api(
        "GET",
        &api_url(&sim, "global/images/family/runner"),
        &t,
        None,
    );
    assert_eq!(mine.json["name"], "runner-v2");
    // An instance from an image URL (not a family).
    let mut b = instance_body("vm-1", ZONE);
    b["disks"][0]["initializeParams"]["sourceImage"] = mine.json["selfLink"].clone();
    let a = insert(&c, &sim, &t, ZONE, &b);
    assert_eq!(a.status, 200, "{}", a.text);
    // Leaked disks are listed by label and deleted.
    sim.add_disk("europe-west1-d", "leak-1", 35, &[("cml-id", "r9")]);
    let l = c.api(
        "GET",
        &api_url(&sim, "aggregated/disks?filter=labels.cml-id%20%3D%20r9"),
        &t,
        None,
    );
    assert_eq!(
        l.json["items"]["zones/europe-west1-d"]["disks"][0]["name"],
        "leak-1"
    );
}

#[test]
fn cml_sim_gcp_serve_runs_the_simulator() {
    use std::io::{BufRead, BufReader};
    let exe = env!("CARGO_BIN_EXE_cml-sim");
    let bad = std::process::Command::new(exe)
        .args(["gcp", "serve", "--token", "x"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("--public-key and --token need --service-account"));
    let mut child = std::process::Command::new(exe)
        .args([
            "gcp",
            "serve",
            "--service-account",
            SA,
            "--token",
            "ya29.cli-token",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let endpoint = lines.next().unwrap().unwrap();
    let endpoint = endpoint
        .strip_prefix("compute endpoint ")
        .unwrap()
        .to_string();
    assert!(
        first.starts_with("listening on http://127.0.0.1:"),
        "{first}"
    );
    let c = Client::new();
    let a = c.api(
        "GET",
        &format!("{endpoint}projects/cml-sim-project/zones/{ZONE}/instances"),
        "ya29.cli-token",
        None,
    );
    assert_eq!(a.status, 200, "{}", a.text);
    // SAFETY: kill(2) on the child this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(0));
}
