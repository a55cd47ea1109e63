//! The simulated Kubernetes API server is checked against Kubernetes' strict JSON schemas as PyPI
//! `kubernetes-validate` ships them: the committed subsets are what the pinned package gives.

use std::path::PathBuf;
use std::process::Command;

use cml_sim::k8s::contract::{Contract, KUBERNETES_VALIDATE, KUBERNETES_VERSIONS};

/// A Python that imports `kubernetes_validate`: `CML_K8S_PYTHON`, else the test venv's. None
/// (test skipped) when absent, unless `CML_REQUIRE_ALL_TOOLS=1`.
fn python() -> Option<PathBuf> {
    let p = std::env::var_os("CML_K8S_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cml-venv/bin/python"))
        })?;
    let ok = Command::new(&p)
        .args(["-c", "import kubernetes_validate"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CML_REQUIRE_ALL_TOOLS").as_deref() == Ok("1") {
        panic!("no Python with kubernetes-validate and CML_REQUIRE_ALL_TOOLS=1 forbids skipping\nhint: run scripts/test.sh, which installs it and sets CML_K8S_PYTHON");
    }
    ok.then_some(p)
}

#[test]
fn committed_subsets_are_what_the_pinned_package_gives() {
    let Some(py) = python() else {
        eprintln!("skipped: no Python with kubernetes-validate (set CML_K8S_PYTHON)");
        return;
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("k8s");
    for v in KUBERNETES_VERSIONS {
        let out = Command::new(&py)
            .arg(dir.join("extract.py"))
            .arg(v)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let committed = std::fs::read(dir.join(format!("k8s-{v}-subset.json"))).unwrap();
        assert!(
            out.stdout == committed,
            "k8s/k8s-{v}-subset.json differs from what extract.py gives\nhint: run `python k8s/extract.py {v} > k8s/k8s-{v}-subset.json`"
        );
    }
}

#[test]
fn subsets_come_from_the_pinned_release() {
    for v in KUBERNETES_VERSIONS {
        let c = Contract::bundled(v).unwrap();
        assert_eq!(
            c.generator(),
            format!("kubernetes-validate {KUBERNETES_VALIDATE}")
        );
        for kind in [
            "batch/v1/Job",
            "batch/v1/JobList",
            "v1/Pod",
            "v1/PodList",
            "v1/Secret",
            "v1/SecretList",
            "v1/Event",
            "v1/EventList",
            "v1/Status",
            "v1/APIResourceList",
            "v1/APIGroupList",
            "v1/APIVersions",
            "version/Info",
            "coordination.k8s.io/v1/Lease",
            "coordination.k8s.io/v1/LeaseList",
            "apps/v1/Deployment",
            "v1/ServiceAccount",
            "rbac.authorization.k8s.io/v1/Role",
            "rbac.authorization.k8s.io/v1/RoleBinding",
        ] {
            assert!(c.kinds().any(|k| k == kind), "{v}: {kind}");
        }
        // The fields a runner Job uses exist in the oldest and newest version alike.
        for f in [
            "spec.activeDeadlineSeconds",
            "spec.backoffLimit",
            "spec.ttlSecondsAfterFinished",
            "spec.template.spec.restartPolicy",
            "spec.template.spec.terminationGracePeriodSeconds",
            "spec.template.spec.nodeSelector.anykey",
            "spec.template.spec.tolerations[].key",
            "spec.template.spec.containers[].resources.limits.anykey",
            "spec.template.spec.containers[].env[].valueFrom.secretKeyRef.key",
            "metadata.ownerReferences[].uid",
        ] {
            assert!(c.has_field("batch/v1/Job", f), "{v}: {f}");
        }
        // The fields leader election writes, and those the pool's Deployment manifest uses.
        for f in [
            "spec.holderIdentity",
            "spec.leaseDurationSeconds",
            "spec.acquireTime",
            "spec.renewTime",
            "spec.leaseTransitions",
            "metadata.resourceVersion",
        ] {
            assert!(c.has_field("coordination.k8s.io/v1/Lease", f), "{v}: {f}");
        }
        for f in [
            "spec.replicas",
            "spec.template.spec.serviceAccountName",
            "spec.template.spec.automountServiceAccountToken",
            "spec.template.spec.containers[].readinessProbe.httpGet.port",
            "spec.template.spec.containers[].ports[].containerPort",
        ] {
            assert!(c.has_field("apps/v1/Deployment", f), "{v}: {f}");
        }
        assert!(c.has_field("rbac.authorization.k8s.io/v1/Role", "rules[].verbs"));
        assert!(c.has_field(
            "rbac.authorization.k8s.io/v1/RoleBinding",
            "subjects[].name"
        ));
    }
}
