//! The simulated Kubernetes API server, driven over HTTP as a client would.

use std::time::{Duration, Instant};

use cml_sim::k8s::{K8sConfig, K8sFault, K8sSim, SimNode};
use serde_json::{json, Value};

const NS: &str = "default";

struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    fn new(sim: &K8sSim) -> Client {
        Client {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            url: sim.url(),
            token: "sim-token".into(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self
            .http
            .request(m, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        self.rt.block_on(async {
            let resp = r.send().await.map_err(|e| format!("{e:?}"))?;
            let code = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| format!("{e:?}"))?;
            Ok((
                code,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            ))
        })
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).unwrap()
    }
    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).unwrap()
    }
    fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None).unwrap()
    }
    fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("PUT", path, Some(body)).unwrap()
    }
}

fn jobs() -> String {
    format!("/apis/batch/v1/namespaces/{NS}/jobs")
}
fn secrets() -> String {
    format!("/api/v1/namespaces/{NS}/secrets")
}
fn pods() -> String {
    format!("/api/v1/namespaces/{NS}/pods")
}

fn job(name: &str, spec_extra: Value, pod_extra: Value) -> Value {
    let mut j = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {"cml.dev/runner": name}},
        "spec": {"backoffLimit": 0,
            "template": {"metadata": {"labels": {"cml.dev/runner": name}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "runner", "image": "cml/runner:1",
                    "command": ["cml", "runner"], "args": ["--labels", "cml"],
                    "env": [{"name": "REPO_TOKEN", "valueFrom": {"secretKeyRef": {"name": format!("{name}-token"), "key": "token"}}}],
                    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}}}});
    for (k, v) in spec_extra.as_object().unwrap() {
        j["spec"][k] = v.clone();
    }
    for (k, v) in pod_extra.as_object().unwrap() {
        j["spec"]["template"]["spec"][k] = v.clone();
    }
    j
}

fn secret_owned_by(name: &str, job: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{name}-token"), "labels": {"cml.dev/runner": name},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                "uid": job["metadata"]["uid"], "controller": true}]},
        "stringData": {"token": "ghp_secret"}})
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

fn phase(c: &Client, pod: &str) -> String {
    c.get(&format!("{}/{pod}", pods())).1["status"]["phase"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn start(cfg: K8sConfig) -> (K8sSim, Client) {
    let sim = K8sSim::start(cfg).unwrap();
    let c = Client::new(&sim);
    (sim, c)
}

#[test]
fn discovery_serves_what_a_client_fetches() {
    let (_sim, c) = start(K8sConfig::default());
    let (s, v) = c.get("/version");
    assert_eq!(
        (s, v["major"].as_str(), v["minor"].as_str()),
        (200, Some("1"), Some("37"))
    );
    assert_eq!(c.get("/api").1["versions"], json!(["v1"]));
    assert_eq!(
        c.get("/apis").1["groups"][0]["preferredVersion"]["groupVersion"],
        "batch/v1"
    );
    let core = c.get("/api/v1").1;
    let names: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"pods")
            && names.contains(&"pods/log")
            && names.contains(&"secrets")
            && names.contains(&"events")
    );
    let batch = c.get("/apis/batch/v1").1;
    assert_eq!(batch["resources"][0]["name"], "jobs");
    assert_eq!(batch["resources"][0]["namespaced"], true);
    assert_eq!(c.get("/apis/apps/v1").0, 404);
}

#[test]
fn a_job_runs_completes_expires_and_takes_its_secret_along() {
    let cfg = K8sConfig {
        second: Duration::from_millis(20),
        ..K8sConfig::default()
    };
    let (sim, c) = start(cfg);
    let (s, j) = c.post(
        &jobs(),
        &job("r1", json!({"ttlSecondsAfterFinished": 5}), json!({})),
    );
    assert_eq!(s, 201, "{j}");
    assert_eq!(
        j["spec"]["template"]["metadata"]["labels"]["job-name"],
        "r1"
    );
    let (s, sec) = c.post(&secrets(), &secret_owned_by("r1", &j));
    assert_eq!(s, 201, "{sec}");
    assert!(sec.get("stringData").is_none());
    assert_eq!(sec["data"]["token"], "Z2hwX3NlY3JldA==");
    let pod_list = c.get(&format!("{}?labelSelector=job-name%3Dr1", pods())).1;
    let pod = pod_list["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        pod_list["items"][0]["metadata"]["ownerReferences"][0]["uid"],
        j["metadata"]["uid"]
    );
    assert_eq!(phase(&c, &pod), "Pending");
    wait_for("Running", || phase(&c, &pod) == "Running");
    let run = sim.container_run(NS, &pod).unwrap();
    assert_eq!(run.command, vec!["cml", "runner"]);
    assert_eq!(
        run.env,
        vec![("REPO_TOKEN".to_string(), "ghp_secret".to_string())]
    );
    sim.set_log(NS, &pod, "runner listening\n");
    assert_eq!(
        c.get(&format!("{}/{pod}/log", pods())).1,
        Value::String("runner listening\n".into())
    );
    assert!(sim.finish_pod(NS, &pod, 0));
    assert_eq!(phase(&c, &pod), "Succeeded");
    let conds = c.get(&format!("{}/r1", jobs())).1["status"]["conditions"].clone();
    assert!(
        conds
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Complete"),
        "{conds}"
    );
    wait_for("TTL removal", || c.get(&format!("{}/r1", jobs())).0 == 404);
    assert_eq!(c.get(&format!("{}/{pod}", pods())).0, 404);
    assert_eq!(
        c.get(&format!("{}/r1-token", secrets())).0,
        404,
        "the owned Secret is collected"
    );
}

#[test]
fn deleting_a_job_without_propagation_orphans_its_secret_and_background_does_not() {
    let (_sim, c) = start(K8sConfig::default());
    for (name, q) in [("a", ""), ("b", "?propagationPolicy=Background")] {
        let j = c.post(&jobs(), &job(name, json!({}), json!({}))).1;
        assert_eq!(c.post(&secrets(), &secret_owned_by(name, &j)).0, 201);
        let (s, st) = c.delete(&format!("{}/{name}{q}", jobs()));
        assert_eq!((s, st["status"].as_str()), (200, Some("Success")));
    }
    assert_eq!(c.get(&format!("{}/a-token", secrets())).0, 200);
    assert_eq!(c.get(&format!("{}/b-token", secrets())).0, 404);
    let left = c
        .get(&format!("{}?labelSelector=cml.dev%2Frunner", secrets()))
        .1;
    assert_eq!(left["items"].as_array().unwrap().len(), 1);
}

#[test]
fn a_gpu_pod_no_node_can_take_stays_pending_with_the_schedulers_event() {
    let (sim, c) = start(K8sConfig::default());
    let mut j = job(
        "g",
        json!({}),
        json!({"nodeSelector": {"accelerator": "nvidia-tesla-t4"}}),
    );
    j["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] =
        json!(1);
    assert_eq!(c.post(&jobs(), &j).0, 201);
    let pod = sim.pods_of(NS, "g")[0].clone();
    wait_for("FailedScheduling", || {
        let ev = c
            .get(&format!(
                "/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name%3D{pod}"
            ))
            .1;
        ev["items"].as_array().unwrap().iter().any(|e| {
            e["reason"] == "FailedScheduling"
                && e["message"].as_str().unwrap().starts_with(
                    "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector",
                )
        })
    });
    assert_eq!(phase(&c, &pod), "Pending");
    // A GPU node with the label but a taint: still no fit, now for the taint.
    let mut cfg = K8sConfig::default();
    let mut n = SimNode::new("gpu-1", 8.0, 32.0);
    n.gpu = 1.0;
    n.labels
        .insert("accelerator".into(), "nvidia-tesla-t4".into());
    cfg.nodes = vec![n.clone()];
    let (sim2, c2) = start(cfg);
    j["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] =
        json!(2);
    assert_eq!(c2.post(&jobs(), &j).0, 201);
    let pod = sim2.pods_of(NS, "g")[0].clone();
    wait_for("Insufficient", || {
        sim2.events_of(NS, &pod)
            .iter()
            .any(|e| e.contains("1 Insufficient nvidia.com/gpu"))
    });
    assert_eq!(phase(&c2, &pod), "Pending");
}

#[test]
fn taints_need_tolerations() {
    let mut cfg = K8sConfig::default();
    let mut n = SimNode::new("spot-1", 8.0, 32.0);
    n.taints.push((
        "kubernetes.azure.com/scalesetpriority".into(),
        "spot".into(),
        "NoSchedule".into(),
    ));
    cfg.nodes = vec![n];
    let (sim, c) = start(cfg);
    assert_eq!(c.post(&jobs(), &job("t1", json!({}), json!({}))).0, 201);
    let tol = json!({"tolerations": [{"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot", "effect": "NoSchedule"}]});
    assert_eq!(c.post(&jobs(), &job("t2", json!({}), tol)).0, 201);
    let (p1, p2) = (
        sim.pods_of(NS, "t1")[0].clone(),
        sim.pods_of(NS, "t2")[0].clone(),
    );
    wait_for("t2 running", || phase(&c, &p2) == "Running");
    assert_eq!(phase(&c, &p1), "Pending");
    assert!(sim
        .events_of(NS, &p1)
        .iter()
        .any(|e| e.contains("untolerated taint {kubernetes.azure.com/scalesetpriority: spot}")));
}

#[test]
fn an_image_that_cannot_be_pulled_shows_in_events_and_container_state() {
    let (sim, c) = start(K8sConfig::default());
    sim.fail_image("cml/runner:1");
    assert_eq!(c.post(&jobs(), &job("i", json!({}), json!({}))).0, 201);
    let pod = sim.pods_of(NS, "i")[0].clone();
    wait_for("back-off", || {
        c.get(&format!("{}/{pod}", pods())).1["status"]["containerStatuses"][0]["state"]["waiting"]
            ["reason"]
            == "ImagePullBackOff"
    });
    let ev = sim.events_of(NS, &pod);
    assert!(
        ev.iter().any(|e| e == "Failed: Error: ErrImagePull"),
        "{ev:?}"
    );
    let (s, st) = c.get(&format!("{}/{pod}/log", pods()));
    assert_eq!(s, 400);
    assert!(st["message"]
        .as_str()
        .unwrap()
        .contains("is waiting to start: ImagePullBackOff"));
}

#[test]
fn the_active_deadline_fails_the_job_and_its_pod() {
    let cfg = K8sConfig {
        second: Duration::from_millis(30),
        ..K8sConfig::default()
    };
    let (sim, c) = start(cfg);
    assert_eq!(
        c.post(
            &jobs(),
            &job("d", json!({"activeDeadlineSeconds": 3}), json!({}))
        )
        .0,
        201
    );
    let pod = sim.pods_of(NS, "d")[0].clone();
    wait_for("deadline", || {
        c.get(&format!("{}/d", jobs())).1["status"]["conditions"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|x| x["type"] == "Failed" && x["reason"] == "DeadlineExceeded")
            })
    });
    assert_eq!(phase(&c, &pod), "Failed");
    assert!(!sim.finish_pod(NS, &pod, 0));
}

#[test]
fn a_lost_node_fails_its_pod_as_a_disruption() {
    let (sim, c) = start(K8sConfig::default());
    assert_eq!(c.post(&jobs(), &job("n", json!({}), json!({}))).0, 201);
    let pod = sim.pods_of(NS, "n")[0].clone();
    wait_for("Running", || phase(&c, &pod) == "Running");
    assert_eq!(sim.lose_node("node-1"), vec![(NS.to_string(), pod.clone())]);
    let p = c.get(&format!("{}/{pod}", pods())).1;
    assert_eq!(p["status"]["phase"], "Failed");
    assert_eq!(p["status"]["reason"], "NodeLost");
    assert!(p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["type"] == "DisruptionTarget"));
    let j = c.get(&format!("{}/n", jobs())).1;
    assert!(j["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["type"] == "Failed"));
}

#[test]
fn duplicates_conflict_and_missing_objects_are_not_found() {
    let (sim, c) = start(K8sConfig::default());
    assert_eq!(c.post(&jobs(), &job("x", json!({}), json!({}))).0, 201);
    let (s, st) = c.post(&jobs(), &job("x", json!({}), json!({})));
    assert_eq!((s, st["reason"].as_str()), (409, Some("AlreadyExists")));
    assert_eq!(st["message"], "jobs.batch \"x\" already exists");
    assert_eq!(
        sim.pods_of(NS, "x").len(),
        1,
        "the refused duplicate made no pod"
    );
    let (s, st) = c.get(&format!("{}/nope", secrets()));
    assert_eq!(
        (s, st["kind"].as_str(), st["reason"].as_str()),
        (404, Some("Status"), Some("NotFound"))
    );
    assert_eq!(st["message"], "secrets \"nope\" not found");
    assert_eq!(c.get("/api/v1/namespaces/other/pods").0, 404);
}

#[test]
fn strict_decoding_refuses_a_misspelled_field_and_stores_nothing() {
    for version in ["1.29", "1.37"] {
        let cfg = K8sConfig {
            kubernetes: version.into(),
            ..K8sConfig::default()
        };
        let (sim, c) = start(cfg);
        let mut j = job("m", json!({}), json!({}));
        j["spec"]["template"]["spec"]["nodeSelecter"] = json!({"a": "b"});
        let (s, st) = c.post(&jobs(), &j);
        assert_eq!(s, 400, "{version}: {st}");
        assert_eq!(st["reason"], "BadRequest");
        assert_eq!(
            st["message"],
            "Job in version \"v1\" cannot be handled as a Job: strict decoding error: unknown field \"spec.template.spec.nodeSelecter\""
        );
        // A missing required value: 422 Invalid with its cause.
        let mut j = job("m", json!({}), json!({}));
        j["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("name");
        let (s, st) = c.post(&jobs(), &j);
        assert_eq!((s, st["reason"].as_str()), (422, Some("Invalid")), "{st}");
        assert_eq!(
            st["details"]["causes"][0]["field"],
            "spec.template.spec.containers[0].name"
        );
        // Malformed JSON.
        let (s, st) = c
            .call("POST", &secrets(), Some(&Value::String("{".into())))
            .unwrap();
        assert_eq!((s, st["reason"].as_str()), (400, Some("BadRequest")));
        // restartPolicy Always is not a Job's.
        let j = job("m", json!({}), json!({"restartPolicy": "Always"}));
        assert_eq!(c.post(&jobs(), &j).0, 422);
        assert!(
            sim.names("jobs", NS).is_empty()
                && sim.names("pods", NS).is_empty()
                && sim.names("secrets", NS).is_empty()
        );
    }
}

#[test]
fn unknown_tokens_are_unauthorized_and_forbidden_verbs_are_forbidden() {
    let (sim, mut c) = start(K8sConfig::default());
    sim.forbid("sim-token", "create", "secrets");
    let (s, st) = c.post(
        &secrets(),
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
    );
    assert_eq!((s, st["reason"].as_str()), (403, Some("Forbidden")));
    assert!(st["message"]
        .as_str()
        .unwrap()
        .contains("cannot create resource \"secrets\""));
    assert_eq!(c.get(&secrets()).0, 200);
    c.token = "wrong".into();
    let (s, st) = c.get("/api/v1");
    assert_eq!((s, st["reason"].as_str()), (401, Some("Unauthorized")));
    assert!(sim.names("secrets", NS).is_empty());
}

#[test]
fn faults_hit_after_the_request_is_carried_out() {
    let (sim, c) = start(K8sConfig::default());
    sim.inject("POST", "/jobs", K8sFault::Drop);
    assert!(c
        .call("POST", &jobs(), Some(&job("f", json!({}), json!({}))))
        .is_err());
    assert_eq!(
        c.get(&format!("{}/f", jobs())).0,
        200,
        "the job exists although the answer was lost"
    );
    sim.inject(
        "GET",
        "/jobs/f",
        K8sFault::Delay(Duration::from_millis(300)),
    );
    let t = Instant::now();
    assert_eq!(c.get(&format!("{}/f", jobs())).0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    sim.inject("GET", "/jobs/f", K8sFault::Hang);
    let err = c.call("GET", &format!("{}/f", jobs()), None).unwrap_err();
    assert!(
        err.to_lowercase().contains("timeout") || err.contains("TimedOut"),
        "{err}"
    );
    let log = sim.requests();
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].status, 201);
}

fn leases() -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases")
}

fn lease(name: &str, holder: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
            "acquireTime": "2026-01-01T00:00:00.000000Z", "renewTime": "2026-01-01T00:00:00.000000Z",
            "leaseTransitions": 0}})
}

#[test]
fn leases_are_discovered_in_the_coordination_group() {
    for version in ["1.29", "1.37"] {
        let (_sim, c) = start(K8sConfig {
            kubernetes: version.into(),
            ..K8sConfig::default()
        });
        let contract = cml_sim::k8s::contract::Contract::bundled(version).unwrap();
        let groups = c.get("/apis").1;
        assert!(contract.check("v1/APIGroupList", &groups).is_empty());
        assert!(
            groups["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["preferredVersion"]["groupVersion"] == "coordination.k8s.io/v1"),
            "{groups}"
        );
        let (s, list) = c.get("/apis/coordination.k8s.io/v1");
        assert_eq!(s, 200);
        assert!(contract.check("v1/APIResourceList", &list).is_empty());
        let r = &list["resources"][0];
        assert_eq!(
            (&r["name"], &r["kind"], &r["namespaced"]),
            (&json!("leases"), &json!("Lease"), &json!(true))
        );
        for verb in ["create", "get", "list", "update", "delete"] {
            assert!(
                r["verbs"].as_array().unwrap().contains(&json!(verb)),
                "{verb}"
            );
        }
    }
}

#[test]
fn a_lease_is_created_read_listed_updated_and_deleted() {
    let (sim, c) = start(K8sConfig::default());
    let (s, made) = c.post(&leases(), &lease("pool", "pod-a"));
    assert_eq!(s, 201, "{made}");
    let rv = made["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(made["metadata"]["uid"].is_string());
    let (s, got) = c.get(&format!("{}/pool", leases()));
    assert_eq!((s, &got), (200, &made));
    let (s, list) = c.get(&leases());
    assert_eq!((s, list["kind"].as_str()), (200, Some("LeaseList")));
    assert_eq!(list["items"][0]["spec"]["holderIdentity"], "pod-a");

    let mut next = got.clone();
    next["spec"]["holderIdentity"] = json!("pod-b");
    next["spec"]["leaseTransitions"] = json!(1);
    let (s, updated) = c.put(&format!("{}/pool", leases()), &next);
    assert_eq!(s, 200, "{updated}");
    assert_eq!(updated["spec"]["holderIdentity"], "pod-b");
    assert_ne!(updated["metadata"]["resourceVersion"], json!(rv));
    assert_eq!(updated["metadata"]["uid"], made["metadata"]["uid"]);
    assert_eq!(
        sim.object("leases", NS, "pool").unwrap()["spec"]["holderIdentity"],
        "pod-b"
    );

    let (s, _) = c.delete(&format!("{}/pool", leases()));
    assert_eq!(s, 200);
    assert_eq!(c.get(&format!("{}/pool", leases())).0, 404);
    // An update does not create.
    let (s, v) = c.put(&format!("{}/pool", leases()), &lease("pool", "pod-a"));
    assert_eq!(s, 404, "{v}");
    assert_eq!(
        v["message"],
        "leases.coordination.k8s.io \"pool\" not found"
    );
    assert!(sim.names("leases", NS).is_empty());
}

#[test]
fn an_update_with_a_stale_resource_version_conflicts_and_changes_nothing() {
    let (sim, c) = start(K8sConfig::default());
    let (_, made) = c.post(&leases(), &lease("pool", "pod-a"));
    let mut a = made.clone();
    a["spec"]["holderIdentity"] = json!("pod-a");
    a["spec"]["renewTime"] = json!("2026-01-01T00:00:05.000000Z");
    let (s, _) = c.put(&format!("{}/pool", leases()), &a);
    assert_eq!(s, 200);
    // A second writer still holding the first version loses.
    let mut b = made.clone();
    b["spec"]["holderIdentity"] = json!("pod-b");
    let (s, v) = c.put(&format!("{}/pool", leases()), &b);
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["reason"], "Conflict");
    assert_eq!(
        v["message"],
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"pool\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let stored = sim.object("leases", NS, "pool").unwrap();
    assert_eq!(stored["spec"]["holderIdentity"], "pod-a");
    assert_eq!(stored["spec"]["renewTime"], "2026-01-01T00:00:05.000000Z");
}

#[test]
fn invalid_lease_updates_are_refused_and_store_nothing() {
    let (sim, c) = start(K8sConfig::default());
    let (_, made) = c.post(&leases(), &lease("pool", "pod-a"));
    let url = format!("{}/pool", leases());
    let mut typo = made.clone();
    typo["spec"]["holderIdentiy"] = json!("pod-b");
    let (s, v) = c.put(&url, &typo);
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"spec.holderIdentiy\""),
        "{v}"
    );
    let mut zero = made.clone();
    zero["spec"]["leaseDurationSeconds"] = json!(0);
    let (s, v) = c.put(&url, &zero);
    assert_eq!(s, 422, "{v}");
    assert_eq!(
        v["message"],
        "Lease.coordination.k8s.io \"pool\" is invalid: [spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0]"
    );
    let mut renamed = made.clone();
    renamed["metadata"]["name"] = json!("other");
    let (s, v) = c.put(&url, &renamed);
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        v["message"],
        "the name of the object (other) does not match the name on the URL (pool)"
    );
    let (s, v) = c.post(
        &leases(),
        &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "neg"}, "spec": {"leaseTransitions": -1}}),
    );
    assert_eq!(s, 422, "{v}");
    assert_eq!(sim.object("leases", NS, "pool").unwrap(), made);
    assert_eq!(sim.names("leases", NS), vec!["pool".to_string()]);
    // PUT is for Leases only.
    let (s, _) = c.put(&format!("{}/x", secrets()), &json!({}));
    assert_eq!(s, 405);
}
