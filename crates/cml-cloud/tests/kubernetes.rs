//! The Kubernetes provider against the simulated API server (`cml_sim::k8s`), which refuses
//! any object that does not meet Kubernetes' strict schemas.

#![cfg(feature = "kubernetes")]

use cml_cloud::kubernetes::{manifest, KubernetesProvider, LAUNCH_LABEL};
use cml_cloud::{CloudError, Created, MachineSpec, Provider, Resource, RunnerCommand};
use cml_core::cloud::{resource_tags, validate, CloudArgs};
use cml_core::Secret;
use cml_sim::k8s::contract::{Contract, Violation, KUBERNETES_VERSIONS};
use cml_sim::k8s::{K8sConfig, K8sFault, K8sSim, SimNode};
use serde_json::{json, Value};
use std::time::Duration;

const NS: &str = "default";
const TOKEN: &str = "ghp_k8sRunnerTokenValue0123456789";

fn kubeconfig(url: &str, user: &str, ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: sim\nclusters:\n- name: sim\n  cluster:\n    server: {url}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: {ns}\nusers:\n- name: sim\n  user:\n{user}\n"
    )
}

fn token_user(token: &str) -> String {
    format!("    token: {token}")
}

fn sim(cfg: K8sConfig) -> K8sSim {
    K8sSim::start(K8sConfig {
        schedule_delay: Duration::from_millis(20),
        ..cfg
    })
    .unwrap()
}

async fn provider(sim: &K8sSim) -> KubernetesProvider {
    KubernetesProvider::from_kubeconfig(&kubeconfig(&sim.url(), &token_user("sim-token"), NS), None)
        .await
        .unwrap()
        .with_poll_interval(Duration::from_millis(50))
        .with_destroy_timeout(Duration::from_secs(10))
}

fn cloud_args(machine_type: &str) -> CloudArgs {
    CloudArgs {
        cloud: Some("kubernetes".into()),
        region: "us-west".into(),
        machine_type: machine_type.into(),
        hdd_size: "35".into(),
        spot_price: "-1".into(),
        kubernetes_node_selector: "accelerator=infer".into(),
        ..CloudArgs::default()
    }
}

fn spec_with(name: &str, args: CloudArgs) -> MachineSpec {
    let cloud = validate(&args).unwrap().unwrap();
    MachineSpec {
        name: name.into(),
        tags: resource_tags(name, "https://github.com/o/r", "cml,gpu", &cloud.metadata),
        cloud,
        user_data: String::new(),
        ssh_private_key: None,
        runner: RunnerCommand {
            args: vec![
                "runner".into(),
                "--name".into(),
                name.into(),
                "--self-terminate".into(),
            ],
            env: vec![("CML_MACHINE_CLOUD".into(), "kubernetes".into())],
            secrets: vec![("REPO_TOKEN".into(), Secret::new(TOKEN.to_string()))],
            stop_grace: Duration::from_secs(30),
        },
        max_lifetime: Some(Duration::from_secs(3600)),
    }
}

fn spec(name: &str) -> MachineSpec {
    spec_with(name, cloud_args("s"))
}

fn deletes(sim: &K8sSim, resource: &str) -> Vec<Value> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.contains(&format!("/{resource}/")))
        .map(|r| r.body)
        .collect()
}

#[tokio::test]
async fn a_runner_is_a_job_whose_pod_reads_its_credential_from_a_secret_the_job_owns() {
    for version in KUBERNETES_VERSIONS {
        let sim = sim(K8sConfig {
            kubernetes: version.to_string(),
            ..K8sConfig::default()
        });
        let p = provider(&sim).await;
        let created = Created::new();
        let m = p.create(&spec("cml-k1"), &created).await.unwrap();
        assert_eq!(m.id, "cml-k1");
        assert_eq!(
            created.list(),
            vec![
                Resource::Job("cml-k1".into()),
                Resource::Secret("cml-k1-token".into())
            ]
        );
        let m = p.wait_running(&m, Duration::from_secs(5)).await.unwrap();
        assert_eq!(m.state, "running");
        assert_eq!(m.zone.as_deref(), Some("node-1"));

        let job = sim.object("jobs", NS, "cml-k1").unwrap();
        assert!(
            !job.to_string().contains(TOKEN),
            "{version}: the token is in the Job"
        );
        let s = &job["spec"];
        assert_eq!(s["backoffLimit"], 0);
        assert_eq!(s["activeDeadlineSeconds"], 3600);
        assert_eq!(s["ttlSecondsAfterFinished"], manifest::TTL_AFTER_FINISHED);
        let pod = &s["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > 30);
        assert!(
            pod.get("nodeSelector").is_none(),
            "accelerator=infer without a GPU selects nothing"
        );
        let c = &pod["containers"][0];
        assert_eq!(
            c["image"],
            format!("ghcr.io/cml-rs/cml:{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(c["resources"]["limits"]["cpu"], "1");
        assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
        assert_eq!(c["resources"]["requests"]["ephemeral-storage"], "35Gi");
        assert_eq!(
            job["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "cml"
        );
        assert_eq!(
            job["metadata"]["annotations"]["cml.dev/repo"],
            "https://github.com/o/r"
        );

        let secret = sim.object("secrets", NS, "cml-k1-token").unwrap();
        let owner = &secret["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Job");
        assert_eq!(owner["uid"], job["metadata"]["uid"]);

        // What the kubelet runs: the runner's arguments, the token from the Secret.
        let pod_name = sim.pods_of(NS, "cml-k1").pop().unwrap();
        let run = sim.container_run(NS, &pod_name).unwrap();
        assert_eq!(run.args[0], "runner");
        assert!(
            run.command.is_empty(),
            "the image's entry point (tini) must stay"
        );
        assert!(run.env.contains(&("REPO_TOKEN".into(), TOKEN.into())));
        assert!(run
            .env
            .contains(&("CML_MACHINE_CLOUD".into(), "kubernetes".into())));

        p.destroy(&created).await.unwrap();
        assert!(created.is_empty());
        assert!(sim.names("jobs", NS).is_empty());
        assert!(
            sim.names("pods", NS).is_empty(),
            "{version}: the pod outlived its Job"
        );
        assert!(sim.names("secrets", NS).is_empty());
        let job_deletes = deletes(&sim, "jobs");
        assert_eq!(job_deletes[0]["propagationPolicy"], "Background");
        // Idempotent.
        created.push(Resource::Job("cml-k1".into()));
        p.destroy(&created).await.unwrap();
    }
}

#[test]
fn every_manifest_meets_the_strict_schemas_and_a_misspelled_field_fails() {
    let mut args = cloud_args("m");
    args.gpu = Some("t4".into());
    args.spot = true;
    args.permission_set = Some("runner-sa".into());
    args.startup_script = Some("ZWNobyBoaQo=".into());
    args.metadata = vec!["team=ml".into(), "note=two words".into()];
    args.kubernetes_node_selector = "accelerator=infer,pool=gpu".into();
    let spec = spec_with("cml-every", args);
    let plan = manifest::Plan::new(&spec, NS).unwrap();
    let job = manifest::job(&plan, "0123456789abcdef");
    let secret = manifest::secret(&plan, &spec, "3f1e0000-0000-4000-8000-000000000000", "x");
    for v in KUBERNETES_VERSIONS {
        let c = Contract::bundled(v).unwrap();
        assert_eq!(c.check("batch/v1/Job", &job), vec![], "{v}");
        assert_eq!(c.check("v1/Secret", &secret), vec![], "{v}");
        let mut bad = job.clone();
        let pod = bad["spec"]["template"]["spec"].as_object_mut().unwrap();
        let policy = pod.remove("restartPolicy").unwrap();
        pod.insert("restartPolicyy".into(), policy);
        assert_eq!(
            c.check("batch/v1/Job", &bad),
            vec![Violation::UnknownField(
                "spec.template.spec.restartPolicyy".into()
            )],
            "{v}"
        );
    }
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["accelerator"], "nvidia-tesla-t4");
    assert_eq!(pod["nodeSelector"]["pool"], "gpu");
    assert_eq!(pod["serviceAccountName"], "runner-sa");
    assert_eq!(pod["automountServiceAccountToken"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(c["resources"]["limits"]["cpu"], "4");
    assert_eq!(c["resources"]["limits"]["memory"], "16Gi");
    assert!(c["image"].as_str().unwrap().ends_with("-gpu"));
    assert_eq!(c["args"][0], "/bin/sh");
    assert_eq!(c["args"][4], "runner");
    let terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()
        .unwrap();
    assert_eq!(terms.len(), 3, "EKS, GKE and AKS spot labels");
    assert_eq!(job["metadata"]["labels"]["team"], "ml");
    assert_eq!(job["metadata"]["annotations"]["note"], "two words");
}

#[tokio::test]
async fn bad_options_are_refused_before_anything_is_sent() {
    let sim = sim(K8sConfig::default());
    let p = provider(&sim).await;
    let mut bad_image = spec("cml-bad");
    bad_image.cloud.image = Some("not an image".into());
    let mut bad_sa = spec("cml-bad");
    bad_sa.cloud.permission_set = Some("Not_A_Name".into());
    let mut bad_meta = spec("cml-bad");
    bad_meta.tags.push(("a:b:c".into(), "x".into()));
    for (s, needle) in [
        (bad_image, "--cloud-image"),
        (bad_sa, "--cloud-permission-set"),
        (bad_meta, "--cloud-metadata"),
    ] {
        let created = Created::new();
        let e = p.create(&s, &created).await.unwrap_err().to_string();
        assert!(
            e.contains(needle) && e.contains("nothing was created"),
            "{e}"
        );
        assert!(created.is_empty());
    }
    assert!(sim.requests().is_empty(), "{:?}", sim.requests());
}

#[tokio::test]
async fn a_gpu_pod_no_node_can_take_is_diagnosed_and_the_teardown_leaves_nothing() {
    let sim = sim(K8sConfig::default());
    let p = provider(&sim).await;
    let mut args = cloud_args("m");
    args.gpu = Some("v100".into());
    let created = Created::new();
    let m = p
        .create(&spec_with("cml-gpu", args), &created)
        .await
        .unwrap();
    let e = p
        .wait_running(&m, Duration::from_millis(800))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, CloudError::KubernetesPodPending { .. }),
        "{text}"
    );
    assert!(text.contains("0/1 nodes are available"), "{text}");
    assert!(
        text.contains("didn't match Pod's node affinity/selector"),
        "{text}"
    );
    assert!(
        text.contains("no node has the GPUs or labels asked for"),
        "{text}"
    );
    p.destroy(&created).await.unwrap();
    assert!(sim.names("jobs", NS).is_empty() && sim.names("secrets", NS).is_empty());
}

#[tokio::test]
async fn spot_pods_go_to_spot_nodes_of_any_vendor_and_gpus_to_their_accelerator() {
    let mut gke_spot = SimNode::new("gke-spot", 8.0, 32.0);
    gke_spot.gpu = 1.0;
    gke_spot
        .labels
        .insert("cloud.google.com/gke-spot".into(), "true".into());
    gke_spot
        .labels
        .insert("accelerator".into(), "nvidia-tesla-t4".into());
    gke_spot.taints.push((
        "cloud.google.com/gke-spot".into(),
        "true".into(),
        "NoSchedule".into(),
    ));
    let mut plain_gpu = SimNode::new("plain-gpu", 8.0, 32.0);
    plain_gpu.gpu = 1.0;
    plain_gpu
        .labels
        .insert("accelerator".into(), "nvidia-tesla-t4".into());
    let sim = sim(K8sConfig {
        nodes: vec![SimNode::new("cpu", 8.0, 32.0), plain_gpu, gke_spot],
        ..K8sConfig::default()
    });
    let p = provider(&sim).await;
    let mut args = cloud_args("m+t4");
    args.spot = true;
    let created = Created::new();
    let m = p
        .create(&spec_with("cml-spot", args), &created)
        .await
        .unwrap();
    let m = p.wait_running(&m, Duration::from_secs(5)).await.unwrap();
    assert_eq!(m.zone.as_deref(), Some("gke-spot"));
    assert!(m.spot);
    p.destroy(&created).await.unwrap();
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_is_diagnosed_with_the_pods_log_and_events() {
    let sim = sim(K8sConfig::default());
    sim.fail_image("registry.example/cml:missing");
    let p = provider(&sim).await;
    let mut s = spec("cml-img");
    s.cloud.image = Some("registry.example/cml:missing".into());
    let created = Created::new();
    let m = p.create(&s, &created).await.unwrap();
    let e = p
        .wait_running(&m, Duration::from_millis(800))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ImagePullBackOff") || e.contains("ErrImagePull"),
        "{e}"
    );
    assert!(e.contains("check --cloud-image"), "{e}");
    let console = p.console_output(&m).await.unwrap().unwrap();
    assert!(console.contains("event of pod"), "{console}");
    p.destroy(&created).await.unwrap();
}

#[tokio::test]
async fn a_pod_that_ends_before_its_runner_is_online_is_an_error_at_once() {
    let sim = sim(K8sConfig::default());
    let p = provider(&sim).await;
    let created = Created::new();
    let m = p.create(&spec("cml-end"), &created).await.unwrap();
    let m = p.wait_running(&m, Duration::from_secs(5)).await.unwrap();
    let pod = sim.pods_of(NS, "cml-end").pop().unwrap();
    sim.set_log(NS, &pod, "error: the token was refused\n");
    let console = p.console_output(&m).await.unwrap().unwrap();
    assert!(console.contains("the token was refused"), "{console}");
    assert!(sim.finish_pod(NS, &pod, 1));
    let started = std::time::Instant::now();
    let e = p
        .wait_running(&m, Duration::from_secs(30))
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        e.contains("exited with code 1") || e.contains("the Job failed"),
        "{e}"
    );
    p.destroy(&created).await.unwrap();
}

#[tokio::test]
async fn a_creation_whose_answer_is_lost_is_found_by_its_launch_label_and_deleted() {
    let sim = sim(K8sConfig::default());
    let p = provider(&sim).await;
    sim.inject("POST", "/jobs", K8sFault::Drop);
    let created = Created::new();
    let e = p.create(&spec("cml-lost"), &created).await.unwrap_err();
    assert!(matches!(e, CloudError::KubernetesRequest { .. }), "{e}");
    assert_eq!(sim.names("jobs", NS), vec!["cml-lost".to_string()]);
    assert!(created.list().is_empty());
    assert_eq!(created.launches().len(), 1);
    p.destroy(&created).await.unwrap();
    assert!(created.is_empty());
    assert!(sim.names("jobs", NS).is_empty());
    assert!(sim
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.query.contains(&urlencode(LAUNCH_LABEL))));
}

fn urlencode(s: &str) -> String {
    s.replace('/', "%2F")
}

#[tokio::test]
async fn refused_credentials_a_missing_namespace_and_a_missing_permission_say_so() {
    let sim = sim(K8sConfig::default());
    // A token the cluster refuses: nothing is created.
    let p = KubernetesProvider::from_kubeconfig(
        &kubeconfig(&sim.url(), &token_user("wrong"), NS),
        None,
    )
    .await
    .unwrap();
    let created = Created::new();
    let e = p
        .create(&spec("cml-401"), &created)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("401") && e.contains("refused the credentials"),
        "{e}"
    );
    assert!(!e.contains("wrong"), "the token is quoted: {e}");
    assert!(created.is_empty());
    // A namespace that does not exist.
    let p = KubernetesProvider::from_kubeconfig(
        &kubeconfig(&sim.url(), &token_user("sim-token"), NS),
        Some("nope"),
    )
    .await
    .unwrap();
    let e = p
        .create(&spec("cml-404"), &created)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("namespace nope does not exist"), "{e}");
    assert!(created.is_empty());
    // No permission to create Secrets: the Job created first is torn down.
    sim.forbid("sim-token", "create", "secrets");
    let p = provider(&sim).await;
    let e = p
        .create(&spec("cml-403"), &created)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("403") && e.contains("grant it"), "{e}");
    assert_eq!(created.list(), vec![Resource::Job("cml-403".into())]);
    p.destroy(&created).await.unwrap();
    assert!(sim.names("jobs", NS).is_empty());
    assert!(sim.names("secrets", NS).is_empty());
}

#[tokio::test]
async fn a_kubeconfig_that_is_not_one_is_refused_without_quoting_it() {
    let e = KubernetesProvider::from_kubeconfig("users: \"s3cr3t-value\"\n", None)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("is not usable") && e.contains("nothing was created"),
        "{e}"
    );
    assert!(!e.contains("s3cr3t-value"), "{e}");
}

#[tokio::test]
async fn an_exec_plugin_supplies_the_token() {
    let sim = sim(K8sConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("get-token");
    std::fs::write(
        &plugin,
        "#!/bin/sh\nprintf '%s' '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"sim-token\"}}'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let user = format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never",
        plugin.display()
    );
    let p = KubernetesProvider::from_kubeconfig(&kubeconfig(&sim.url(), &user, NS), None)
        .await
        .unwrap();
    let created = Created::new();
    p.create(&spec("cml-exec"), &created).await.unwrap();
    assert_eq!(sim.names("jobs", NS), vec!["cml-exec".to_string()]);
    p.destroy(&created).await.unwrap();
}

#[tokio::test]
async fn owned_objects_are_listed_with_owner_scope_state_and_what_uses_them() {
    let sim = sim(K8sConfig::default());
    let p = provider(&sim).await;
    let (a, b) = (Created::new(), Created::new());
    let m = p.create(&spec("cml-a"), &a).await.unwrap();
    p.wait_running(&m, Duration::from_secs(5)).await.unwrap();
    p.create(&spec("cml-b"), &b).await.unwrap();
    // Job b deleted without propagation (the REST default for Jobs): its pod and Secret stay.
    let http = reqwest::Client::new();
    let r = http
        .delete(format!(
            "{}/apis/batch/v1/namespaces/{NS}/jobs/cml-b",
            sim.url()
        ))
        .bearer_auth("sim-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let owned = p.list_owned().await.unwrap();
    let find = |r: Resource| owned.iter().find(|o| o.resource == r).cloned();
    let job_a = find(Resource::Job("cml-a".into())).unwrap();
    assert_eq!(job_a.owner, "cml-a");
    assert_eq!(job_a.scope.as_deref(), Some("https://github.com/o/r"));
    assert_eq!(job_a.state.as_deref(), Some("running"));
    assert!(job_a.age.is_some());
    let secret_a = find(Resource::Secret("cml-a-token".into())).unwrap();
    assert_eq!(secret_a.used_by, Some(vec!["job cml-a".to_string()]));
    let secret_b = find(Resource::Secret("cml-b-token".into())).unwrap();
    assert_eq!(secret_b.used_by, Some(vec![]));
    let pods_b: Vec<_> = owned
        .iter()
        .filter(|o| matches!(&o.resource, Resource::Pod(n) if n.starts_with("cml-b")))
        .collect();
    assert_eq!(pods_b.len(), 1);
    assert_eq!(pods_b[0].used_by, Some(vec![]));
    p.destroy(&a).await.unwrap();
}

/// The runner pool's Deployment manifest (`deploy/kubernetes/pool.yaml`), every document.
fn pool_manifest() -> Vec<Value> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/pool.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text).unwrap()
}

/// `(API group, resource, verb)` triples of RBAC rules given as `(group, resources, verbs)`.
fn triples(
    rules: &[(&str, &[&str], &[&str])],
) -> std::collections::BTreeSet<(String, String, String)> {
    let mut out = std::collections::BTreeSet::new();
    for (g, rs, vs) in rules {
        for r in *rs {
            for v in *vs {
                out.insert((g.to_string(), r.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// What the manifest's Role grants, as triples.
fn role_grants(docs: &[Value]) -> std::collections::BTreeSet<(String, String, String)> {
    let role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    let mut out = std::collections::BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        assert!(rule.get("resourceNames").is_none());
        let strs = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        for g in strs("apiGroups") {
            for r in strs("resources") {
                for v in strs("verbs") {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

fn needed() -> std::collections::BTreeSet<(String, String, String)> {
    let mut need = triples(cml_cloud::kubernetes::PERMISSIONS);
    need.extend(triples(cml_cloud::kubernetes::lease::PERMISSIONS));
    need
}

#[test]
fn the_pool_manifest_meets_the_strict_schemas_and_grants_exactly_what_the_pool_needs() {
    let docs = pool_manifest();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ServiceAccount", "Role", "RoleBinding", "Deployment"]
    );
    for v in KUBERNETES_VERSIONS {
        let c = Contract::bundled(v).unwrap();
        for d in &docs {
            let kind = format!(
                "{}/{}",
                d["apiVersion"].as_str().unwrap(),
                d["kind"].as_str().unwrap()
            );
            assert_eq!(c.check(&kind, d), vec![], "{v}: {kind}");
            assert!(
                d["metadata"].get("namespace").is_none(),
                "{kind}: applied with -n"
            );
            // Cleanup deletes what carries the owner label: the pool itself must not.
            for labels in [
                &d["metadata"]["labels"],
                &d["spec"]["template"]["metadata"]["labels"],
            ] {
                assert!(
                    labels.get(cml_core::k8s::LABEL_MANAGED_BY).is_none()
                        && labels
                            .as_object()
                            .into_iter()
                            .flatten()
                            .all(|(k, _)| !k.starts_with(cml_core::k8s::LABEL_PREFIX)),
                    "{kind}: {labels}"
                );
            }
        }
        // The check can fail: a misspelled field of the Deployment is refused.
        let mut bad = docs[3].clone();
        bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = json!({});
        assert_eq!(
            c.check("apps/v1/Deployment", &bad),
            vec![Violation::UnknownField(
                "spec.template.spec.containers[0].readinesProbe".into()
            )]
        );
    }
    assert_eq!(role_grants(&docs), needed());

    let (sa, role, binding, deploy) = (&docs[0], &docs[1], &docs[2], &docs[3]);
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    let spec = &deploy["spec"];
    assert_eq!(spec["replicas"], 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(pod["automountServiceAccountToken"], true);
    for (k, v) in spec["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&spec["template"]["metadata"]["labels"][k], v);
    }
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/cml-rs/cml:VERSION");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[..3], ["runner", "pool", "--cloud=kubernetes"]);
    let at = args.iter().position(|a| *a == "--metrics-addr").unwrap();
    assert_eq!(args[at + 1], "0.0.0.0:9090");
    assert!(
        c.get("command").is_none(),
        "the image's entry point (tini) must stay"
    );
    // The forge token comes from the Secret, never from a literal value.
    let env = c["env"].as_array().unwrap();
    let token = env.iter().find(|e| e["name"] == "REPO_TOKEN").unwrap();
    assert_eq!(token["valueFrom"]["secretKeyRef"]["name"], "cml-pool-token");
    assert!(env.iter().all(|e| e.get("value").is_none()), "{env:?}");
    // The readiness probe asks the metrics port.
    let port = &c["ports"][0];
    assert_eq!(port["containerPort"], 9090);
    let probe = &c["readinessProbe"]["httpGet"]["port"];
    assert!(
        *probe == port["name"] || *probe == port["containerPort"],
        "{probe}"
    );
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
}

/// The API request `r` as `(API group, resource[/subresource], verb)`.
fn request_triple(r: &cml_sim::k8s::K8sRequest) -> (String, String, String) {
    let parts: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", "namespaces", _, rest @ ..] => ("", rest),
        ["apis", g, _, "namespaces", _, rest @ ..] => (*g, rest),
        _ => panic!("not a namespaced request: {}", r.path),
    };
    let resource = match rest {
        [res, _, sub] => format!("{res}/{sub}"),
        [res, ..] => res.to_string(),
        [] => panic!("{}", r.path),
    };
    let named = rest.len() >= 2;
    let verb = match (r.method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        (m, _) => panic!("{m} {}", r.path),
    };
    (group.to_string(), resource, verb.to_string())
}

#[tokio::test]
async fn the_pool_role_allows_every_request_the_provider_and_the_lease_make_and_no_more() {
    use cml_cloud::kubernetes::lease::{LeaseLock, LeaseTimings};
    let sim = sim(K8sConfig::default());
    let p = provider(&sim).await;
    // A runner's whole life: created, running, its log read, listed, destroyed with its pod.
    let created = Created::new();
    let m = p.create(&spec("cml-rbac"), &created).await.unwrap();
    let m = p.wait_running(&m, Duration::from_secs(5)).await.unwrap();
    let pod = sim.pods_of(NS, "cml-rbac").pop().unwrap();
    sim.set_log(NS, &pod, "starting\n");
    p.console_output(&m).await.unwrap();
    let owned = p.list_owned().await.unwrap();
    assert!(owned
        .iter()
        .any(|o| o.resource == Resource::Pod(pod.clone())));
    created.push(Resource::Pod(pod.clone()));
    p.destroy(&created).await.unwrap();
    // A pod no node takes (diagnosed from events), and a creation whose answer was lost
    // (found by its launch label).
    let mut args = cloud_args("m");
    args.gpu = Some("v100".into());
    let pending = Created::new();
    let m = p
        .create(&spec_with("cml-rbac-gpu", args), &pending)
        .await
        .unwrap();
    p.wait_running(&m, Duration::from_millis(500))
        .await
        .unwrap_err();
    p.destroy(&pending).await.unwrap();
    sim.inject("POST", "/jobs", K8sFault::Drop);
    let lost = Created::new();
    p.create(&spec("cml-rbac-lost"), &lost).await.unwrap_err();
    p.destroy(&lost).await.unwrap();
    // Leader election: created, renewed, released.
    let t = LeaseTimings {
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(700),
        retry_period: Duration::from_millis(100),
    };
    let mut lock = LeaseLock::new(p.client(), NS, "cml-pool", "pool-a", t).unwrap();
    lock.acquire().await.unwrap();
    lock.renew().await.unwrap();
    assert!(lock.release().await.unwrap());
    assert!(sim.names("jobs", NS).is_empty() && sim.names("secrets", NS).is_empty());

    let made: std::collections::BTreeSet<_> = sim.requests().iter().map(request_triple).collect();
    let granted = role_grants(&pool_manifest());
    let missing: Vec<_> = made.difference(&granted).collect();
    assert!(missing.is_empty(), "the Role does not grant {missing:?}");
    let unused: Vec<_> = granted.difference(&made).collect();
    assert!(
        unused.is_empty(),
        "the Role grants {unused:?}, which nothing uses"
    );
}
