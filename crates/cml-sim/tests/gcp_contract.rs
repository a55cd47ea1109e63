//! The simulated Compute Engine speaks Google's Compute Engine v1 API as its discovery document
//! describes it: every served method is in the document, every request a client sends and every
//! answer the simulator gives is checked against it, and the committed subset is what the pinned
//! `google-api-python-client` ships.

mod gcp_support;

use std::collections::BTreeSet;
use std::time::Duration;

use cml_sim::gcp::contract::{full_match, Contract, Level};
use cml_sim::gcp::GCP_METHODS;
use gcp_support::*;
use serde_json::{json, Value};

/// The `google-api-python-client` version the committed subset comes from.
const PINNED: &str = "2.202.0";

#[test]
fn served_methods_are_in_the_contract() {
    let c = Contract::bundled();
    assert_eq!(c.version(), Some(PINNED));
    assert!(c.revision().is_some());
    let ids: BTreeSet<&str> = c.methods().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, GCP_METHODS.iter().copied().collect());
    let (m, p) = c
        .match_path(
            "GET",
            "/compute/v1/projects/p/zones/us-east1-c/instances/vm-1",
        )
        .unwrap();
    assert_eq!(m.id, "compute.instances.get");
    assert_eq!(p["instance"], "vm-1");
    assert_eq!(
        c.match_path("POST", "projects/p/zones/z/operations/op-1/wait")
            .unwrap()
            .0
            .id,
        "compute.zoneOperations.wait"
    );
    assert!(c
        .match_path("GET", "/compute/v1/projects/p/zones/z/widgets")
        .is_none());
    // The fields a launcher sets exist where it sets them.
    for f in [
        "scheduling.provisioningModel",
        "scheduling.instanceTerminationAction",
        "scheduling.maxRunDuration.seconds",
        "scheduling.onHostMaintenance",
        "guestAccelerators[].acceleratorType",
        "disks[].initializeParams.diskSizeGb",
        "disks[].initializeParams.labels",
        "metadata.items[].key",
        "networkInterfaces[].accessConfigs[].natIP",
        "labels.anykey",
    ] {
        assert!(c.has_field("Instance", f), "Instance.{f}");
    }
    assert!(!c.has_field("Instance", "scheduling.maxRunDuraton"));
    assert!(c.has_field("Operation", "error.errors[].code"));
}

/// Every `pattern` in the subset compiles (a pattern that does not would accept nothing).
#[test]
fn every_pattern_compiles() {
    fn walk(v: &Value, n: &mut usize) {
        match v {
            Value::Object(m) => {
                if let Some(p) = m.get("pattern").and_then(Value::as_str) {
                    assert!(
                        regex_lite::Regex::new(&format!("^(?:{p})$")).is_ok(),
                        "pattern {p}"
                    );
                    *n += 1;
                }
                m.values().for_each(|x| walk(x, n));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, n)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("gcp/compute-subset.json"),
    )
    .unwrap();
    let mut n = 0;
    walk(&serde_json::from_str(&text).unwrap(), &mut n);
    assert!(n > 5, "only {n} patterns");
    assert!(full_match("[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?", "cml-abc"));
    assert!(!full_match("[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?", "Cml"));
}

/// A misspelled field fails the check, in a request and in an answer, at any depth.
#[test]
fn misspelled_fields_fail_the_check() {
    let c = Contract::bundled();
    let good = instance_body("vm-1", ZONE);
    let ok = c.check_request("compute.instances.insert", &good, Level::Contract);
    assert!(ok.is_empty(), "{ok:?}");

    let mut bad = good.clone();
    bad["labelz"] = json!({"a": "b"});
    let p = c.check_request("compute.instances.insert", &bad, Level::Contract);
    assert_eq!(p, vec!["$.labelz: field not in the schema".to_string()]);

    let mut bad = good.clone();
    bad["scheduling"]["maxRunDuraton"] = json!({"seconds": "60"});
    let p = c.check_request("compute.instances.insert", &bad, Level::Server);
    assert_eq!(
        p,
        vec!["$.scheduling.maxRunDuraton: field not in the schema".to_string()]
    );

    let mut bad = good.clone();
    bad["disks"][0]["initializeParams"]["diskSizeGB"] = json!("35");
    let p = c.check_request("compute.instances.insert", &bad, Level::Server);
    assert_eq!(
        p,
        vec!["$.disks[0].initializeParams.diskSizeGB: field not in the schema".to_string()]
    );

    // An answer: a real one passes; a renamed field, an int64 as a number, a bad enum fail.
    let sim = sim();
    let t = token(&sim);
    let cl = Client::new();
    let op = cl.api(
        "POST",
        &api_url(&sim, &format!("zones/{ZONE}/instances")),
        &t,
        Some(&good),
    );
    assert_eq!(op.status, 200, "{}", op.text);
    let inst = sim.instance(ZONE, "vm-1").unwrap();
    assert!(c.check_response("compute.instances.get", &inst).is_empty());
    let mut renamed = inst.clone();
    let status = renamed.as_object_mut().unwrap().remove("status").unwrap();
    renamed["statuz"] = status;
    assert_eq!(
        c.check_response("compute.instances.get", &renamed),
        vec!["$.statuz: field not in the schema".to_string()]
    );
    let mut number = inst.clone();
    number["id"] = json!(12);
    assert!(
        c.check_response("compute.instances.get", &number)[0].contains("$.id: expected a string")
    );
    let mut nested = op.json.clone();
    nested["eror"] = json!({"errors": []});
    assert_eq!(
        c.check_response("compute.instances.insert", &nested),
        vec!["$.eror: field not in the schema".to_string()]
    );
    let mut e = inst.clone();
    e["status"] = json!("BOOTING");
    assert!(c.check_response("compute.instances.get", &e)[0].contains("is not one of"));
}

/// What the contract level adds over what Google's front end refuses.
#[test]
fn contract_level_is_stricter_than_the_server() {
    let c = Contract::bundled();
    let mut b = instance_body("vm-1", ZONE);
    b["disks"][0]["initializeParams"]["diskSizeGb"] = json!(35);
    b["status"] = json!("RUNNING");
    let server = c.check_request("compute.instances.insert", &b, Level::Server);
    assert!(server.is_empty(), "{server:?}");
    let strict = c.check_request("compute.instances.insert", &b, Level::Contract);
    assert!(
        strict.iter().any(|p| p.contains("$.status: output-only")),
        "{strict:?}"
    );
    assert!(
        strict
            .iter()
            .any(|p| p.contains("diskSizeGb: expected a string")),
        "{strict:?}"
    );
    // Required fields (`annotations.required`) and patterns are checked by both.
    let mut nameless = instance_body("vm-1", ZONE);
    nameless.as_object_mut().unwrap().remove("name");
    for level in [Level::Server, Level::Contract] {
        assert_eq!(
            c.check_request("compute.instances.insert", &nameless, level),
            vec!["$.name: missing required field".to_string()]
        );
    }
    let mut upper = instance_body("VM", ZONE);
    upper["labels"] = json!({});
    assert!(
        c.check_request("compute.instances.insert", &upper, Level::Server)[0]
            .starts_with("$.name: \"VM\" does not match")
    );
    assert_eq!(
        c.check_query(
            "compute.instances.list",
            "filter=x&maxResults=5&pageToken=a"
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        c.check_query("compute.instances.list", "maxResult=5"),
        vec!["query parameter maxResult: not a parameter of compute.instances.list".to_string()]
    );
    assert!(!c
        .check_query("compute.instances.list", "maxResults=many")
        .is_empty());
    assert!(!c
        .check_query("compute.instances.delete", "filter=x")
        .is_empty());
}

/// Calls `method url` on the simulator, checks the request (query, path, body) and the answer
/// against the contract, and records the method.
fn conforming(
    c: &Client,
    seen: &mut BTreeSet<String>,
    method: &str,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> Value {
    let contract = Contract::bundled();
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = &path[path.find("/compute/v1/").unwrap()..];
    let (m, params) = contract
        .match_path(method, path)
        .unwrap_or_else(|| panic!("{method} {path}: no method"));
    assert!(contract.check_path_params(&m.id, &params).is_empty());
    assert_eq!(contract.check_query(&m.id, query), Vec::<String>::new());
    if let Some(b) = body {
        let p = contract.check_request(&m.id, b, Level::Contract);
        assert!(p.is_empty(), "request of {}: {p:?}", m.id);
    }
    let a = c.api(method, url, token, body);
    assert_eq!(a.status, 200, "{} {url}: {}", m.id, a.text);
    let p = contract.check_response(&m.id, &a.json);
    assert!(p.is_empty(), "answer of {}:\n{}", m.id, p.join("\n"));
    seen.insert(m.id.clone());
    a.json
}

#[test]
fn every_method_answers_as_the_contract_says() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    let mut seen = BTreeSet::new();
    let mut call = |m: &str, rest: &str, body: Option<&Value>| {
        conforming(&c, &mut seen, m, &api_url(&sim, rest), &t, body)
    };
    // A GPU spot instance with a run-time limit, and a plain one.
    let mut gpu = instance_body("vm-gpu", ZONE);
    gpu["machineType"] = json!(format!("zones/{ZONE}/machineTypes/n1-standard-4"));
    gpu["guestAccelerators"] = json!([{"acceleratorType": format!("projects/{}/zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4", sim.project()), "acceleratorCount": 1}]);
    gpu["scheduling"] = json!({"provisioningModel": "SPOT", "instanceTerminationAction": "DELETE",
        "onHostMaintenance": "TERMINATE", "automaticRestart": false,
        "maxRunDuration": {"seconds": "3600"}});
    let op = call(
        "POST",
        &format!("zones/{ZONE}/instances?requestId=7c9e6679-7425-40de-944b-e07fc1f90ae7"),
        Some(&gpu),
    );
    assert_eq!(op["status"], "PENDING");
    let plain = instance_body("vm-plain", "us-east1-b");
    call("POST", "zones/us-east1-b/instances", Some(&plain));
    let done = call(
        "POST",
        &format!(
            "zones/{ZONE}/operations/{}/wait",
            op["name"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(done["status"], "DONE");
    call(
        "GET",
        &format!("zones/{ZONE}/operations/{}", op["id"].as_str().unwrap()),
        None,
    );
    wait_until("RUNNING", || {
        sim.instance(ZONE, "vm-gpu").unwrap()["status"] == "RUNNING"
    });
    let inst = call("GET", &format!("zones/{ZONE}/instances/vm-gpu"), None);
    assert_eq!(inst["scheduling"]["provisioningModel"], "SPOT");
    call(
        "GET",
        &format!("zones/{ZONE}/instances/{}", inst["id"].as_str().unwrap()),
        None,
    );
    sim.append_serial(ZONE, "vm-gpu", "boot\ncml runner ready\n");
    let out = call(
        "GET",
        &format!("zones/{ZONE}/instances/vm-gpu/serialPort?port=1&start=5"),
        None,
    );
    assert_eq!(out["contents"], "cml runner ready\n");
    call(
        "GET",
        &format!("zones/{ZONE}/instances?filter=labels.cml-id%3Dvm-gpu&maxResults=10"),
        None,
    );
    call(
        "GET",
        &format!("zones/{ZONE}/instances?orderBy=creationTimestamp%20desc"),
        None,
    );
    let agg = call("GET", "aggregated/instances?maxResults=1", None);
    assert!(agg["nextPageToken"].is_string());
    call(
        "GET",
        &format!(
            "aggregated/instances?maxResults=1&pageToken={}",
            agg["nextPageToken"].as_str().unwrap()
        ),
        None,
    );
    call("GET", &format!("zones/{ZONE}/disks"), None);
    call(
        "GET",
        "aggregated/disks?filter=labels.cml-id%3Avm-gpu",
        None,
    );
    call("GET", &format!("zones/{ZONE}"), None);
    let region = call("GET", "regions/us-east1", None);
    assert_eq!(region["zones"].as_array().unwrap().len(), 3);
    let img = conforming(
        &c,
        &mut seen,
        "GET",
        &format!(
            "{}projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
            sim.compute_endpoint()
        ),
        &t,
        None,
    );
    assert_eq!(img["family"], "ubuntu-2404-lts-amd64");
    let mut call = |m: &str, rest: &str, body: Option<&Value>| {
        conforming(&c, &mut seen, m, &api_url(&sim, rest), &t, body)
    };
    let del = call("DELETE", &format!("zones/{ZONE}/instances/vm-gpu"), None);
    assert_eq!(del["operationType"], "delete");
    // A leaked disk, deleted.
    sim.add_disk(ZONE, "leaked", 35, &[("cml-id", "gone")]);
    call("DELETE", &format!("zones/{ZONE}/disks/leaked"), None);
    // A failed operation's answer conforms too.
    sim.set_capacity("us-west1-b", cml_sim::gcp::Capacity::Exhausted);
    let op = call(
        "POST",
        "zones/us-west1-b/instances",
        Some(&instance_body("vm-x", "us-west1-b")),
    );
    std::thread::sleep(Duration::from_millis(150));
    let failed = call(
        "GET",
        &format!(
            "zones/us-west1-b/operations/{}",
            op["name"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(
        failed["error"]["errors"][0]["code"],
        "ZONE_RESOURCE_POOL_EXHAUSTED"
    );

    let all: BTreeSet<String> = GCP_METHODS.iter().map(|s| s.to_string()).collect();
    let missed: Vec<_> = all.difference(&seen).collect();
    assert!(missed.is_empty(), "methods not exercised: {missed:?}");
}

/// The simulator refuses what Google's front end refuses: a misspelled body field or query
/// parameter gets HTTP 400 with Google's message, and nothing is created.
#[test]
fn the_simulator_refuses_misspelled_fields() {
    let sim = sim();
    let t = token(&sim);
    let c = Client::new();
    let url = api_url(&sim, &format!("zones/{ZONE}/instances"));
    let mut b = instance_body("vm-1", ZONE);
    let mt = b.as_object_mut().unwrap().remove("machineType").unwrap();
    b["machineTyp"] = mt;
    let a = c.api("POST", &url, &t, Some(&b));
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(
        a.json["error"]["message"],
        "Invalid JSON payload received. Unknown name \"machineTyp\" at 'instance_resource': Cannot find field."
    );
    assert_eq!(a.json["error"]["status"], "INVALID_ARGUMENT");
    let mut b = instance_body("vm-1", ZONE);
    b["scheduling"]["provisioningModle"] = json!("SPOT");
    let a = c.api("POST", &url, &t, Some(&b));
    assert_eq!(a.status, 400);
    assert!(a.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Unknown name \"provisioningModle\" at 'instance_resource.scheduling'"));
    let a = c.api("GET", &format!("{url}?maxResult=3"), &t, None);
    assert_eq!(a.status, 400);
    assert!(a.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("\"maxResult\""));
    assert!(sim.instances().is_empty());
    assert!(sim.disks().is_empty());
}

/// With `CML_GCP_DISCOVERY=/path/to/compute.v1.json` (from google-api-python-client 2.202.0),
/// re-extracting gives the committed subset. Without it the check is skipped, unless
/// `CML_REQUIRE_ALL_TOOLS=1` (set by `scripts/test.sh`), where a skip is a failure.
#[test]
fn committed_subset_matches_extraction() {
    let Some(doc) = std::env::var_os("CML_GCP_DISCOVERY") else {
        assert!(
            std::env::var_os("CML_REQUIRE_ALL_TOOLS").is_none_or(|v| v != "1"),
            "CML_GCP_DISCOVERY is unset and CML_REQUIRE_ALL_TOOLS=1 forbids skipping\nhint: run scripts/test.sh, which installs google-api-python-client and sets it"
        );
        eprintln!(
            "note: CML_GCP_DISCOVERY is unset; skipping the re-extraction check. Set it to \
             googleapiclient/discovery_cache/documents/compute.v1.json of \
             `pip install --no-deps google-api-python-client=={PINNED}`"
        );
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("gcp");
    let out = tempfile::NamedTempFile::new().unwrap();
    let st = std::process::Command::new("python3")
        .arg(root.join("extract.py"))
        .arg(&doc)
        .arg(out.path())
        .status()
        .expect("python3");
    assert!(st.success(), "extract.py failed on {doc:?}");
    let fresh = std::fs::read_to_string(out.path()).unwrap();
    let fresh_v: Value = serde_json::from_str(&fresh).unwrap();
    assert_eq!(
        fresh_v["source"]["version"], PINNED,
        "CML_GCP_DISCOVERY={doc:?} is not from google-api-python-client {PINNED}"
    );
    let committed = std::fs::read_to_string(root.join("compute-subset.json")).unwrap();
    assert!(
        fresh == committed,
        "gcp/compute-subset.json is stale: re-run gcp/extract.py"
    );
}
