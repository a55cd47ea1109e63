//! A simulated Kubernetes API server (`cml_sim::k8s`) on 127.0.0.1, one per test, the
//! kubeconfig a launcher reads it from, and a kubelet stand-in that runs a pod's container as
//! the runner image would: through the image's entry point (`docker/entrypoint.sh`), with the
//! pod's arguments and environment (Secret references resolved by the simulator), `cml` on
//! PATH, and its files below a sandbox root.

use super::{cml_exe, Running};
use cml_sim::k8s::{K8sConfig, K8sSim};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The namespace runners go to (the kubeconfig context's).
pub const NS: &str = "default";
/// The token the simulator accepts.
pub const TOKEN: &str = "sim-token";

pub struct K8s {
    pub sim: K8sSim,
}

impl K8s {
    /// A simulator with fast steps: pods schedule and start 50 ms apart, and one second of
    /// `ttlSecondsAfterFinished` or `activeDeadlineSeconds` lasts 10 ms.
    pub fn start() -> K8s {
        K8s::start_with(|_| {})
    }

    pub fn start_with(f: impl FnOnce(&mut K8sConfig)) -> K8s {
        let mut cfg = K8sConfig {
            schedule_delay: Duration::from_millis(50),
            second: Duration::from_millis(10),
            ..K8sConfig::default()
        };
        f(&mut cfg);
        K8s {
            sim: K8sSim::start(cfg).unwrap(),
        }
    }

    /// A kubeconfig for this simulator whose user authenticates with `token`.
    pub fn kubeconfig_with(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: sim\nclusters:\n- name: sim\n  cluster:\n    server: {}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: ci\n    namespace: {NS}\nusers:\n- name: ci\n  user:\n    token: {token}\n",
            self.sim.url()
        )
    }

    /// The variables a launcher needs to use this simulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("KUBERNETES_CONFIGURATION", self.kubeconfig_with(TOKEN))]
    }

    /// Every object of `resource` (`jobs`, `pods`, `secrets`) in the namespace.
    pub fn names(&self, resource: &str) -> Vec<String> {
        self.sim.names(resource, NS)
    }

    /// True when no Job, pod or Secret is left.
    pub fn empty(&self) -> bool {
        ["jobs", "pods", "secrets"]
            .iter()
            .all(|r| self.names(r).is_empty())
    }

    /// The running pod of Job `job`, once there is one.
    pub fn running_pod(&self, job: &str, timeout: Duration) -> String {
        super::machine::wait_for(&format!("a running pod of Job {job}"), timeout, || {
            self.sim.pods_of(NS, job).into_iter().find(|p| {
                self.sim
                    .object("pods", NS, p)
                    .is_some_and(|o| o["status"]["phase"] == "Running")
            })
        })
    }

    /// Starts pod `pod`'s container (see the module documentation), its files below `root`.
    pub fn run_container(&self, pod: &str, root: &Path) -> Running {
        let run = self
            .sim
            .container_run(NS, pod)
            .expect("the kubelet can start it");
        assert!(
            run.command.is_empty(),
            "the pod replaces the image's entry point: {:?}",
            run.command
        );
        let bin = root.join("image-bin");
        std::fs::create_dir_all(&bin).unwrap();
        let link = bin.join("cml");
        if !link.exists() {
            std::os::unix::fs::symlink(cml_exe(), &link).unwrap();
        }
        // The Secret's files (the startup script's volume), mounted where the pod says.
        if let Some(job) = self.sim.object("pods", NS, pod) {
            let mounts = &job["spec"]["containers"][0]["volumeMounts"];
            for m in mounts.as_array().into_iter().flatten() {
                let vol = job["spec"]["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|v| v["name"] == m["name"])
                    .cloned()
                    .unwrap();
                let secret = self
                    .sim
                    .object("secrets", NS, vol["secret"]["secretName"].as_str().unwrap())
                    .expect("the volume's Secret exists");
                let dir = sandboxed(root, m["mountPath"].as_str().unwrap());
                std::fs::create_dir_all(&dir).unwrap();
                for item in vol["secret"]["items"].as_array().into_iter().flatten() {
                    use base64::Engine;
                    let data = secret["data"][item["key"].as_str().unwrap()]
                        .as_str()
                        .unwrap();
                    std::fs::write(
                        dir.join(item["path"].as_str().unwrap()),
                        base64::engine::general_purpose::STANDARD
                            .decode(data)
                            .unwrap(),
                    )
                    .unwrap();
                }
            }
        }
        let args: Vec<String> = run
            .args
            .iter()
            .map(|a| {
                a.replace("/var/lib/cml", &format!("{}/var/lib/cml", root.display()))
                    .replace("/etc/cml/", &format!("{}/etc/cml/", root.display()))
            })
            .collect();
        let entrypoint = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker/entrypoint.sh");
        let mut cmd = Command::new("sh");
        cmd.arg(entrypoint)
            .args(&args)
            .env_clear()
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env("HOME", root.join("root"))
            .env("HOSTNAME", pod)
            .envs(run.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::fs::create_dir_all(root.join("root")).unwrap();
        Running::spawn(cmd)
    }
}

/// `path` (absolute) below `root`.
fn sandboxed(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}
