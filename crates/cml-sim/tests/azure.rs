//! The simulated Azure Resource Manager, token endpoint and IMDS through their REST APIs.

mod azure_support;

use std::time::Duration;

use azure_support::*;
use cml_sim::azure::{
    AzureConfig, AzureFault, CapacityError, Power, ROLE_CONTRIBUTOR, ROLE_VM_CONTRIBUTOR,
};
use serde_json::{json, Value};

const VMS: &str = "Microsoft.Compute/virtualMachines";

fn launch(e: &Env, rg: &str, spot: bool, zone: Option<&str>) -> Answer {
    e.put_group(rg);
    e.put_network(rg);
    e.call(
        "PUT",
        &e.res_path(rg, VMS, "vm"),
        "virtualMachines.createOrUpdate",
        Some(vm_body(&e.nic_id(rg), spot, zone, "#!/bin/sh\necho hi\n")),
    )
}

fn assign(e: &Env, token: &str, scope: &str, role: &str, principal: &str) -> Answer {
    let name = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    let role_id = format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        e.sub()
    );
    e.call_as(token, "PUT", &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"), "roleAssignments.create",
        Some(json!({"properties": {"roleDefinitionId": role_id, "principalId": principal, "principalType": "ServicePrincipal"}})))
}

#[test]
fn a_vm_life_with_its_long_running_operation() {
    let e = env();
    let a = launch(&e, "cml-r1", true, Some("1"));
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.json["properties"]["provisioningState"], "Creating");
    assert!(
        a.json["properties"]["osProfile"]
            .get("customData")
            .is_none(),
        "customData is never answered"
    );
    let op = a
        .header("azure-asyncoperation")
        .expect("Azure-AsyncOperation");
    assert!(
        op.contains("/providers/Microsoft.Compute/locations/eastus/operations/")
            && op.contains("api-version=2026-04-01"),
        "{op}"
    );
    assert_eq!(e.get_url(&e.token, &op).json["status"], "InProgress");
    assert_eq!(e.wait_async(&op)["status"], "Succeeded");
    let vm = e
        .call(
            "GET",
            &e.res_path("cml-r1", VMS, "vm"),
            "virtualMachines.get",
            None,
        )
        .json;
    assert_eq!(vm["properties"]["provisioningState"], "Succeeded");
    assert_eq!(vm["properties"]["priority"], "Spot");
    assert_eq!(vm["properties"]["billingProfile"]["maxPrice"], -1);
    assert_eq!(vm["zones"], json!(["1"]));
    assert!(vm["identity"]["principalId"].is_string());
    assert!(vm["properties"]["osProfile"].get("customData").is_none());
    assert_eq!(
        e.sim.custom_data("cml-r1", "vm").unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(e.sim.power("cml-r1", "vm"), Some(Power::Running));
    let iv = e
        .call(
            "GET",
            &format!("{}/instanceView", e.res_path("cml-r1", VMS, "vm")),
            "virtualMachines.instanceView",
            None,
        )
        .json;
    assert_eq!(iv["statuses"][1]["code"], "PowerState/running");
    // Boot diagnostics: the serial log's URL serves the console.
    e.sim.append_console("cml-r1", "vm", "cloud-init: done\n");
    let bd = e.call(
        "POST",
        &format!(
            "{}/retrieveBootDiagnosticsData",
            e.res_path("cml-r1", VMS, "vm")
        ),
        "virtualMachines.retrieveBootDiagnosticsData",
        None,
    );
    assert_eq!(bd.status, 200, "{}", bd.text);
    let log = e
        .http
        .send(
            "GET",
            bd.json["serialConsoleLogBlobUri"].as_str().unwrap(),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(log.text, "cloud-init: done\n");
    // VM delete: 202 with both headers; the OS disk (deleteOption Delete) goes with it.
    let d = e.call(
        "DELETE",
        &e.res_path("cml-r1", VMS, "vm"),
        "virtualMachines.delete",
        None,
    );
    assert_eq!(d.status, 202);
    assert_eq!(
        e.wait_location(&e.token, &d.header("location").unwrap()),
        200
    );
    assert!(
        e.sim
            .resources()
            .iter()
            .all(|(_, t, _)| t != VMS && t != "Microsoft.Compute/disks"),
        "{:?}",
        e.sim.resources()
    );
    assert_eq!(
        e.call(
            "DELETE",
            &e.res_path("cml-r1", VMS, "vm"),
            "virtualMachines.delete",
            None
        )
        .status,
        204
    );
}

#[test]
fn api_version_and_token_are_required() {
    let e = env();
    let url = format!("{}{}", e.sim.url(), e.rg_path("cml-x"));
    let auth = format!("Bearer {}", e.token);
    let a = e
        .http
        .send("GET", &url, &[("authorization", &auth)], None)
        .unwrap();
    assert_eq!(
        (a.status, a.json["error"]["code"].as_str()),
        (400, Some("MissingApiVersionParameter"))
    );
    let a = e
        .http
        .send(
            "GET",
            &format!("{url}?api-version=2019-01-01"),
            &[("authorization", &auth)],
            None,
        )
        .unwrap();
    assert_eq!(
        a.json["error"]["code"], "InvalidApiVersionParameter",
        "{}",
        a.text
    );
    let a = e
        .http
        .send(
            "GET",
            &format!(
                "{}{}?api-version=2019-01-01",
                e.sim.url(),
                e.res_path("g", VMS, "v")
            ),
            &[("authorization", &auth)],
            None,
        )
        .unwrap();
    assert_eq!(
        a.json["error"]["code"], "NoRegisteredProviderFound",
        "{}",
        a.text
    );
    let a = e
        .http
        .send(
            "GET",
            &format!("{url}?api-version={}", version("resourceGroups.get")),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(
        (a.status, a.json["error"]["code"].as_str()),
        (401, Some("AuthenticationFailed"))
    );
    let a = e.call_as(
        "made-up",
        "GET",
        &e.rg_path("cml-x"),
        "resourceGroups.get",
        None,
    );
    assert_eq!(
        (a.status, a.json["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationToken"))
    );
    let a = e.call("GET", &e.rg_path("cml-x"), "resourceGroups.get", None);
    assert_eq!(
        (a.status, a.json["error"]["code"].as_str()),
        (404, Some("ResourceGroupNotFound"))
    );
}

#[test]
fn deleting_the_resource_group_removes_everything_in_it() {
    let e = env();
    assert_eq!(launch(&e, "cml-r2", false, None).status, 201);
    launch(&e, "cml-keep", false, None);
    assert!(
        e.sim
            .resources()
            .iter()
            .filter(|(g, _, _)| g == "cml-r2")
            .count()
            >= 6
    );
    let head = e.call(
        "HEAD",
        &e.rg_path("cml-r2"),
        "resourceGroups.checkExistence",
        None,
    );
    assert_eq!(head.status, 204);
    let d = e.call(
        "DELETE",
        &e.rg_path("cml-r2"),
        "resourceGroups.delete",
        None,
    );
    assert_eq!(d.status, 202);
    let loc = d.header("location").unwrap();
    assert!(loc.contains("/operationresults/") && d.header("retry-after").is_some());
    assert_eq!(e.get_url(&e.token, &loc).status, 202);
    assert_eq!(e.wait_location(&e.token, &loc), 200);
    assert!(e.sim.resources().iter().all(|(g, _, _)| g != "cml-r2"));
    assert!(e.sim.resources().iter().any(|(g, _, _)| g == "cml-keep"));
    assert_eq!(
        e.call(
            "HEAD",
            &e.rg_path("cml-r2"),
            "resourceGroups.checkExistence",
            None
        )
        .status,
        404
    );
    assert_eq!(e.sim.deleted_vms(), vec!["vm".to_string()]);
}

#[test]
fn listing_by_tag_for_cleanup() {
    let e = env();
    launch(&e, "cml-r3", false, None);
    e.call(
        "PUT",
        &e.rg_path("other"),
        "resourceGroups.createOrUpdate",
        Some(json!({"location": "eastus", "tags": {"team": "x"}})),
    );
    let a = e.call(
        "GET",
        &format!(
            "{}/resourcegroups?$filter=tagName eq 'cml:id' and tagValue eq 'runner-1'",
            e.sub()
        ),
        "resourceGroups.list",
        None,
    );
    let names: Vec<&str> = a.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["cml-r3"]);
    let a = e.call(
        "GET",
        &format!("{}/resources?$filter=tagName eq 'cml:id'", e.sub()),
        "resources.list",
        None,
    );
    let types: Vec<&str> = a.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec![VMS]);
    let a = e.call(
        "GET",
        &format!("{}/resources?$filter=name eq 'x'", e.sub()),
        "resources.list",
        None,
    );
    assert_eq!(a.json["error"]["code"], "InvalidFilterInQueryString");
}

#[test]
fn capacity_errors_come_as_azure_reports_them() {
    let e = env();
    e.sim.refuse_capacity(
        "eastus",
        Some("1"),
        None,
        true,
        CapacityError::SkuNotAvailable,
    );
    e.sim.refuse_capacity(
        "eastus",
        Some("2"),
        None,
        true,
        CapacityError::AllocationFailed,
    );
    e.sim.refuse_capacity(
        "eastus",
        Some("3"),
        None,
        false,
        CapacityError::Overconstrained,
    );
    let a = launch(&e, "cml-c", true, Some("1"));
    assert_eq!(
        (a.status, a.json["error"]["code"].as_str()),
        (409, Some("SkuNotAvailable")),
        "{}",
        a.text
    );
    assert!(e.sim.vm("cml-c", "vm").is_none());
    let path = e.res_path("cml-c", VMS, "vm");
    let a = e.call(
        "PUT",
        &path,
        "virtualMachines.createOrUpdate",
        Some(vm_body(&e.nic_id("cml-c"), true, Some("2"), "x")),
    );
    assert_eq!(a.status, 201);
    let st = e.wait_async(&a.header("azure-asyncoperation").unwrap());
    assert_eq!(
        (st["status"].as_str(), st["error"]["code"].as_str()),
        (Some("Failed"), Some("ZonalAllocationFailed")),
        "{st}"
    );
    assert_eq!(
        e.sim.vm("cml-c", "vm").unwrap()["properties"]["provisioningState"],
        "Failed"
    );
    // Not spot in zone 2: fine.
    let a = e.call(
        "PUT",
        &e.res_path("cml-c", VMS, "vm2"),
        "virtualMachines.createOrUpdate",
        Some(vm_body(&e.nic_id("cml-c"), false, Some("2"), "x")),
    );
    assert_eq!(
        e.wait_async(&a.header("azure-asyncoperation").unwrap())["status"],
        "Succeeded"
    );
    let a = e.call(
        "PUT",
        &e.res_path("cml-c", VMS, "vm3"),
        "virtualMachines.createOrUpdate",
        Some(vm_body(&e.nic_id("cml-c"), false, Some("3"), "x")),
    );
    assert_eq!(
        e.wait_async(&a.header("azure-asyncoperation").unwrap())["error"]["code"],
        "OverconstrainedAllocationRequest"
    );
}

#[test]
fn quota_is_refused_at_once_and_creates_nothing() {
    let e = env();
    e.sim.set_quota("eastus", "lowPriorityCores", 3);
    let a = launch(&e, "cml-q", true, None);
    assert_eq!(a.status, 201, "{}", a.text);
    let a = e.call(
        "PUT",
        &e.res_path("cml-q", VMS, "vm2"),
        "virtualMachines.createOrUpdate",
        Some(vm_body(&e.nic_id("cml-q"), true, None, "x")),
    );
    assert_eq!(
        (a.status, a.json["error"]["code"].as_str()),
        (409, Some("OperationNotAllowed"))
    );
    let m = a.json["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("Total Regional Low-priority Cores quota")
            && m.contains("Current Limit: 3, Current Usage: 2, Additional Required: 2"),
        "{m}"
    );
    assert!(e.sim.vm("cml-q", "vm2").is_none());
}

#[test]
fn bad_values_are_refused_and_nothing_is_created() {
    let e = env();
    e.put_group("cml-b");
    e.put_network("cml-b");
    let path = e.res_path("cml-b", VMS, "vm");
    let mut b = vm_body(&e.nic_id("cml-b"), false, None, "x");
    b["properties"]["osProfile"]["customData"] = json!("not base64!");
    let a = e.call("PUT", &path, "virtualMachines.createOrUpdate", Some(b));
    assert_eq!(
        (a.status, a.json["error"]["target"].as_str()),
        (400, Some("customData")),
        "{}",
        a.text
    );
    let mut b = vm_body(&e.nic_id("cml-b"), false, None, "x");
    b["location"] = json!("mars");
    let a = e.call("PUT", &path, "virtualMachines.createOrUpdate", Some(b));
    assert_eq!(
        a.json["error"]["code"],
        "LocationNotAvailableForResourceType"
    );
    let mut b = vm_body(&e.nic_id("cml-b"), false, None, "x");
    b["tags"] = json!({"a/b": "x"});
    let a = e.call("PUT", &path, "virtualMachines.createOrUpdate", Some(b));
    assert_eq!(a.json["error"]["code"], "InvalidTagNameCharacters");
    let b = vm_body(&format!("{}x", e.nic_id("cml-b")), false, None, "x");
    assert_eq!(
        e.call("PUT", &path, "virtualMachines.createOrUpdate", Some(b))
            .status,
        400
    );
    let a = e.call("PUT", &e.res_path("cml-b", "Microsoft.Network/networkInterfaces", "n2"), "networkInterfaces.createOrUpdate",
        Some(json!({"location": "eastus", "properties": {"ipConfigurations": [{"name": "c", "properties": {"subnet": {"id": format!("{}/subnets/nope", e.res_path("cml-b", "Microsoft.Network/virtualNetworks", "vnet"))}}}]}})));
    assert_eq!(
        a.json["error"]["code"], "InvalidResourceReference",
        "{}",
        a.text
    );
    assert!(e.sim.vm("cml-b", "vm").is_none());
    assert!(e.sim.resources().iter().all(|(_, _, n)| n != "n2"));
}

#[test]
fn role_assignment_allowed_and_refused() {
    let e = env();
    launch(&e, "cml-ra", false, None);
    let principal = e.sim.vm("cml-ra", "vm").unwrap()["identity"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    let a = assign(
        &e,
        &e.token,
        &e.rg_path("cml-ra"),
        ROLE_CONTRIBUTOR,
        &principal,
    );
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.json["properties"]["principalId"], principal.as_str());
    e.sim
        .deny_action(&e.launcher, "Microsoft.Authorization/roleAssignments/write");
    let a = assign(
        &e,
        &e.token,
        &e.rg_path("cml-ra"),
        ROLE_VM_CONTRIBUTOR,
        &principal,
    );
    assert_eq!(
        (a.status, a.json["error"]["code"].as_str()),
        (403, Some("AuthorizationFailed"))
    );
    assert!(
        a.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'Microsoft.Authorization/roleAssignments/write'"),
        "{}",
        a.text
    );
    assert_eq!(e.sim.role_assignments().len(), 1);
}

#[test]
fn a_new_identity_needs_principal_type_during_replication() {
    let e = env_with(AzureConfig {
        principal_replication: Duration::from_secs(60),
        ..AzureConfig::default()
    });
    launch(&e, "cml-pr", false, None);
    let principal = e.sim.vm("cml-pr", "vm").unwrap()["identity"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    let role_id = format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions/{ROLE_CONTRIBUTOR}",
        e.sub()
    );
    let path = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/3fa85f64-5717-4562-b3fc-2c963f66afa6",
        e.rg_path("cml-pr")
    );
    let a = e.call(
        "PUT",
        &path,
        "roleAssignments.create",
        Some(json!({"properties": {"roleDefinitionId": role_id, "principalId": principal}})),
    );
    assert_eq!(a.json["error"]["code"], "PrincipalNotFound", "{}", a.text);
    assert_eq!(
        assign(
            &e,
            &e.token,
            &e.rg_path("cml-pr"),
            ROLE_CONTRIBUTOR,
            &principal
        )
        .status,
        201
    );
}

#[test]
fn token_endpoint_good_and_bad_secret() {
    let e = env();
    let url = format!("{}/{}/oauth2/v2.0/token", e.sim.url(), e.sim.tenant());
    let form = |secret: &str| {
        format!("grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={secret}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default")
    };
    let ct = [("content-type", "application/x-www-form-urlencoded")];
    let a = e.http.send("POST", &url, &ct, Some(form(SECRET))).unwrap();
    assert_eq!(a.status, 200, "{}", a.text);
    let token = a.json["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        e.call_as(
            &token,
            "PUT",
            &e.rg_path("cml-t"),
            "resourceGroups.createOrUpdate",
            Some(json!({"location": "eastus"}))
        )
        .status,
        201
    );
    let a = e.http.send("POST", &url, &ct, Some(form("wrong"))).unwrap();
    assert_eq!(
        (a.status, a.json["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(a.json["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS7000215: Invalid client secret provided."));
    assert!(!a.text.contains(SECRET) && !a.text.contains("wrong&"));
    let a = e
        .http
        .send(
            "POST",
            &format!("{}/nope/oauth2/v2.0/token", e.sim.url()),
            &ct,
            Some(form(SECRET)),
        )
        .unwrap();
    assert!(
        a.json["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS90002: Tenant 'nope' not found"),
        "{}",
        a.text
    );
    let a = e
        .http
        .send(
            "POST",
            &url,
            &ct,
            Some(form(SECRET).replace(CLIENT_ID, "someone-else")),
        )
        .unwrap();
    assert_eq!(a.json["error"], "unauthorized_client");
    assert_eq!(e.sim.token_grants(), 1);
}

#[test]
fn imds_needs_the_metadata_header_and_describes_the_vm() {
    let e = env();
    launch(&e, "cml-i", true, Some("3"));
    let imds = e.sim.imds("cml-i", "vm").unwrap();
    let url = format!("{}/metadata/instance?api-version=2021-02-01", imds.url());
    let a = e.http.send("GET", &url, &[], None).unwrap();
    assert_eq!(
        (a.status, a.json["error"].as_str()),
        (
            400,
            Some("Bad request. Required metadata header not specified")
        )
    );
    let a = e
        .http
        .send("GET", &url, &[("Metadata", "true")], None)
        .unwrap();
    assert_eq!(a.status, 200);
    let c = &a.json["compute"];
    assert_eq!(
        (
            c["name"].as_str(),
            c["resourceGroupName"].as_str(),
            c["location"].as_str(),
            c["zone"].as_str(),
            c["priority"].as_str()
        ),
        (
            Some("vm"),
            Some("cml-i"),
            Some("eastus"),
            Some("3"),
            Some("Spot")
        )
    );
    assert_eq!(c["subscriptionId"], e.sim.subscription().as_str());
}

#[test]
fn the_vm_identity_deletes_its_own_group_and_nothing_else() {
    let e = env();
    launch(&e, "cml-own", false, None);
    launch(&e, "cml-other", false, None);
    let imds = e.sim.imds("cml-own", "vm").unwrap();
    let tok = e.http.send("GET", &format!("{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/", imds.url()), &[("Metadata", "true")], None).unwrap();
    assert_eq!(tok.status, 200, "{}", tok.text);
    let mi = tok.json["access_token"].as_str().unwrap().to_string();
    // Before any role: refused.
    let a = e.call_as(
        &mi,
        "DELETE",
        &e.rg_path("cml-own"),
        "resourceGroups.delete",
        None,
    );
    assert_eq!(a.status, 403, "{}", a.text);
    let principal = e.sim.vm("cml-own", "vm").unwrap()["identity"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    // Virtual Machine Contributor cannot delete the group.
    assert_eq!(
        assign(
            &e,
            &e.token,
            &e.rg_path("cml-own"),
            ROLE_VM_CONTRIBUTOR,
            &principal
        )
        .status,
        201
    );
    let a = e.call_as(
        &mi,
        "DELETE",
        &e.rg_path("cml-own"),
        "resourceGroups.delete",
        None,
    );
    assert_eq!(a.status, 403, "{}", a.text);
    assert!(a.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Microsoft.Resources/subscriptions/resourceGroups/delete"));
    // Contributor on its own group: may delete it, and not another group.
    let name = "7d1e2f3a-0000-4000-8000-000000000001";
    let role_id = format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions/{ROLE_CONTRIBUTOR}",
        e.sub()
    );
    let a = e.call("PUT", &format!("{}/providers/Microsoft.Authorization/roleAssignments/{name}", e.rg_path("cml-own")), "roleAssignments.create",
        Some(json!({"properties": {"roleDefinitionId": role_id, "principalId": principal, "principalType": "ServicePrincipal"}})));
    assert_eq!(a.status, 201, "{}", a.text);
    let a = e.call_as(
        &mi,
        "DELETE",
        &e.rg_path("cml-other"),
        "resourceGroups.delete",
        None,
    );
    assert_eq!(a.status, 403);
    let a = e.call_as(&mi, "PUT", &format!("{}/providers/Microsoft.Authorization/roleAssignments/7d1e2f3a-0000-4000-8000-000000000002", e.rg_path("cml-own")), "roleAssignments.create",
        Some(json!({"properties": {"roleDefinitionId": role_id, "principalId": principal}})));
    assert_eq!(a.status, 403, "a Contributor may not assign roles");
    let a = e.call_as(
        &mi,
        "DELETE",
        &e.rg_path("cml-own"),
        "resourceGroups.delete",
        None,
    );
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(e.wait_location(&mi, &a.header("location").unwrap()), 200);
    assert_eq!(e.sim.resource_groups(), vec!["cml-other".to_string()]);
}

#[test]
fn eviction_posts_preempt_then_deletes_the_vm() {
    let e = env();
    let a = launch(&e, "cml-ev", true, None);
    e.wait_async(&a.header("azure-asyncoperation").unwrap());
    let imds = e.sim.imds("cml-ev", "vm").unwrap();
    let ev_url = format!(
        "{}/metadata/scheduledevents?api-version=2020-07-01",
        imds.url()
    );
    let a = e
        .http
        .send("GET", &ev_url, &[("Metadata", "true")], None)
        .unwrap();
    assert_eq!(a.json["Events"], json!([]));
    assert!(e.sim.evict("cml-ev", "vm"));
    let a = e
        .http
        .send("GET", &ev_url, &[("Metadata", "true")], None)
        .unwrap();
    assert_eq!(a.json["Events"][0]["EventType"], "Preempt");
    assert_eq!(a.json["Events"][0]["Resources"], json!(["vm"]));
    assert!(e.sim.vm("cml-ev", "vm").is_some());
    std::thread::sleep(Duration::from_millis(1200));
    assert!(e.sim.vm("cml-ev", "vm").is_none(), "evictionPolicy Delete");
    assert!(e
        .sim
        .resources()
        .iter()
        .all(|(_, t, _)| t != "Microsoft.Compute/disks"));
    // A regular VM is never evicted; a guest power-off leaves it allocated.
    e.call(
        "PUT",
        &e.res_path("cml-ev", VMS, "reg"),
        "virtualMachines.createOrUpdate",
        Some(vm_body(&e.nic_id("cml-ev"), false, None, "x")),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!e.sim.evict("cml-ev", "reg"));
    assert!(e.sim.power_off("cml-ev", "reg"));
    assert_eq!(e.sim.power("cml-ev", "reg"), Some(Power::Stopped));
}

#[test]
fn faults_lose_delay_or_replace_an_answer() {
    let e = env();
    e.put_group("cml-f");
    e.sim
        .inject("resourceGroups.delete", AzureFault::DropAnswer, Some(1));
    let url = format!(
        "{}{}?api-version={}",
        e.sim.url(),
        e.rg_path("cml-f"),
        version("resourceGroups.delete")
    );
    let auth = format!("Bearer {}", e.token);
    assert!(e
        .http
        .send("DELETE", &url, &[("authorization", &auth)], None)
        .is_err());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        e.sim.resource_groups().is_empty(),
        "carried out although the answer was lost"
    );
    e.sim.inject(
        "resourceGroups.get",
        AzureFault::Error {
            status: 429,
            code: "TooManyRequests".into(),
            message: "slow down".into(),
        },
        Some(1),
    );
    let a = e.call("GET", &e.rg_path("cml-f"), "resourceGroups.get", None);
    assert_eq!(
        (a.status, a.json["error"]["code"].as_str()),
        (429, Some("TooManyRequests"))
    );
    e.sim
        .inject("resourceGroups.createOrUpdate", AzureFault::Hang, None);
    let quick = Client::with_timeout(Duration::from_millis(300));
    let url = format!(
        "{}{}?api-version={}",
        e.sim.url(),
        e.rg_path("cml-h"),
        version("resourceGroups.createOrUpdate")
    );
    assert!(quick
        .send(
            "PUT",
            &url,
            &[("authorization", &auth)],
            Some(json!({"location": "eastus"}).to_string())
        )
        .is_err());
    assert!(
        e.sim.resource_groups().is_empty(),
        "a hung request is not carried out"
    );
    let statuses: Vec<u16> = e.sim.requests().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&0));
    let _: Value = Value::Null;
}
