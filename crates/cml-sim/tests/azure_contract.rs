//! The simulated Resource Manager against Microsoft's own models: the committed subset is what
//! `azure/extract.py` extracts from the pinned SDK packages, the checker refuses misspelled
//! fields, and the simulator's answers conform.

mod azure_support;

use std::path::PathBuf;

use azure_support::*;
use cml_sim::azure::contract::{Contract, Level, ProblemKind};
use serde_json::json;

/// The Python of the environment holding the pinned `azure-mgmt-*` packages:
/// `CML_AZURE_PYTHON`, else the test venv's. None (test skipped) when absent, unless
/// `CML_REQUIRE_ALL_TOOLS=1`.
fn python() -> Option<PathBuf> {
    let p = std::env::var_os("CML_AZURE_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cml-venv/bin/python"))
        })?;
    let ok = std::process::Command::new(&p)
        .args(["-c", "import azure.mgmt.compute, azure.mgmt.network, azure.mgmt.resource, azure.mgmt.authorization"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var("CML_REQUIRE_ALL_TOOLS").as_deref() == Ok("1") {
        panic!(
            "{} cannot import the azure-mgmt packages; run scripts/test.sh",
            p.display()
        );
    }
    ok.then_some(p)
}

#[test]
fn committed_subset_is_what_the_pinned_packages_give() {
    let Some(py) = python() else {
        eprintln!("skipped: no Python with the azure-mgmt packages (set CML_AZURE_PYTHON)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("subset.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/azure/extract.py");
    let st = std::process::Command::new(py)
        .arg(script)
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let fresh = std::fs::read_to_string(&out).unwrap();
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/azure/azure-subset.json"
    ))
    .unwrap();
    assert!(
        fresh == committed,
        "azure/azure-subset.json differs from a fresh extraction: run azure/extract.py"
    );
}

#[test]
fn subset_pins_the_sdk_api_versions() {
    let c = Contract::bundled();
    assert_eq!(c.sources()["azure-mgmt-compute"], "39.0.0");
    assert_eq!(
        c.api_version("virtualMachines.createOrUpdate"),
        "2026-04-01"
    );
    assert_eq!(
        c.api_version("networkInterfaces.createOrUpdate"),
        "2026-03-01"
    );
    assert_eq!(c.api_version("resourceGroups.delete"), "2025-04-01");
    assert_eq!(c.api_version("roleAssignments.create"), "2022-04-01");
    assert!(c.has_field("compute.VirtualMachine", "properties.osProfile.customData"));
    assert!(c.has_field(
        "compute.VirtualMachine",
        "properties.billingProfile.maxPrice"
    ));
    assert!(!c.has_field("compute.VirtualMachine", "properties.osProfile.custumData"));
}

#[test]
fn checker_refuses_a_misspelled_field() {
    let c = Contract::bundled();
    let good = vm_body(
        "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/networkInterfaces/nic",
        true,
        Some("1"),
        "#!/bin/sh\n",
    );
    assert!(c
        .check_request("virtualMachines.createOrUpdate", &good, Level::Contract)
        .is_empty());
    let mut bad = good.clone();
    bad["properties"]["osProfile"]["custumData"] =
        bad["properties"]["osProfile"]["customData"].take();
    let p = c.check_request("virtualMachines.createOrUpdate", &bad, Level::Server);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].path, "properties.osProfile.custumData");
    assert_eq!(p[0].kind, ProblemKind::UnknownField);
    let mut wrong = good.clone();
    wrong["properties"]["osProfile"]["customData"] = json!(5);
    assert!(!c
        .check_request("virtualMachines.createOrUpdate", &wrong, Level::Server)
        .is_empty());
}

#[test]
fn simulator_refuses_a_misspelled_field_with_arm_error_and_creates_nothing() {
    let e = env();
    assert_eq!(e.put_group("cml-a").status, 201);
    e.put_network("cml-a");
    let mut body = vm_body(&e.nic_id("cml-a"), false, None, "#!/bin/sh\n");
    body["properties"]["hardwareProfile"]["vmSzie"] =
        body["properties"]["hardwareProfile"]["vmSize"].take();
    let a = e.call(
        "PUT",
        &e.res_path("cml-a", "Microsoft.Compute/virtualMachines", "vm"),
        "virtualMachines.createOrUpdate",
        Some(body),
    );
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json["error"]["code"], "InvalidRequestContent");
    assert!(
        a.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Could not find member 'vmSzie' on object of type 'HardwareProfile'"),
        "{}",
        a.text
    );
    assert!(Contract::bundled()
        .check_model("resource.CloudError", &a.json)
        .is_empty());
    assert!(e.sim.vm("cml-a", "vm").is_none());
}

#[test]
fn every_answer_of_a_vm_life_conforms() {
    let e = env();
    e.put_group("cml-b");
    e.put_network("cml-b");
    let path = e.res_path("cml-b", "Microsoft.Compute/virtualMachines", "vm");
    let a = e.call(
        "PUT",
        &path,
        "virtualMachines.createOrUpdate",
        Some(vm_body(&e.nic_id("cml-b"), true, Some("2"), "x")),
    );
    assert_eq!(a.status, 201, "{}", a.text);
    e.wait_async(&a.header("azure-asyncoperation").unwrap());
    for (p, op) in [
        (path.clone(), "virtualMachines.get"),
        (
            format!("{path}/instanceView"),
            "virtualMachines.instanceView",
        ),
        (e.rg_path("cml-b"), "resourceGroups.get"),
        (e.nic_id("cml-b"), "networkInterfaces.get"),
        (
            e.res_path("cml-b", "Microsoft.Network/publicIPAddresses", "ip"),
            "publicIPAddresses.get",
        ),
        (
            e.res_path("cml-b", "Microsoft.Network/virtualNetworks", "vnet"),
            "virtualNetworks.get",
        ),
        (
            e.res_path("cml-b", "Microsoft.Network/networkSecurityGroups", "nsg"),
            "networkSecurityGroups.get",
        ),
        (
            format!("{}/resources?$filter=tagName eq 'cml:id'", e.sub()),
            "resources.list",
        ),
        (format!("{}/resourcegroups", e.sub()), "resourceGroups.list"),
    ] {
        let a = e.call("GET", &p, op, None);
        assert_eq!(a.status, 200, "{op}: {}", a.text);
        let problems = Contract::bundled().check_response(op, &a.json);
        assert!(problems.is_empty(), "{op}: {problems:?}");
    }
    // A sabotaged model makes the same answer fail the check (the check can fail).
    let mut vm = e.call("GET", &path, "virtualMachines.get", None).json;
    vm["properties"]["hardwareProfile"]["vmSzie"] = json!("x");
    assert!(!Contract::bundled()
        .check_response("virtualMachines.get", &vm)
        .is_empty());
}
