//! A simulated Compute Engine (`cml_sim::gcp`) on 127.0.0.1, one per test, with a
//! service-account key the launcher signs its token requests with.

use cml_sim::gcp::{GcpConfig, GcpSim};
use std::path::Path;
use std::time::Duration;

/// The launcher's service account.
pub const LAUNCHER_SA: &str = "cml-launcher@cml-sim-project.iam.gserviceaccount.com";

pub struct Gcp {
    pub sim: GcpSim,
    /// The service-account key file's contents (`GOOGLE_APPLICATION_CREDENTIALS_DATA`).
    pub key_json: String,
    /// The key's private PEM, to check that it is printed nowhere.
    pub private_pem: String,
    _dir: tempfile::TempDir,
}

impl Gcp {
    /// A simulator with fast steps (instances and operations move every 50 ms).
    pub fn start() -> Gcp {
        Gcp::start_with(|_| {})
    }

    pub fn start_with(f: impl FnOnce(&mut GcpConfig)) -> Gcp {
        let mut cfg = GcpConfig {
            status_step: Duration::from_millis(50),
            operation_step: Duration::from_millis(50),
            preemption_notice: Duration::from_millis(500),
            ..GcpConfig::default()
        };
        f(&mut cfg);
        let sim = GcpSim::start(cfg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (private_pem, public_pem) = rsa_keys(dir.path());
        sim.add_service_account_key(LAUNCHER_SA, "launcher-key-1", &public_pem);
        let key = cml_sim::gcp::service_account_key_file(
            &sim.project(),
            LAUNCHER_SA,
            "launcher-key-1",
            &private_pem,
            &sim.token_uri(),
        );
        Gcp {
            sim,
            key_json: key.to_string(),
            private_pem,
            _dir: dir,
        }
    }

    /// The variables a launcher needs to use this simulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GOOGLE_APPLICATION_CREDENTIALS_DATA", self.key_json.clone()),
            (
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE",
                self.sim.compute_endpoint(),
            ),
        ]
    }

    /// Every instance the simulator holds that is not being deleted, as
    /// (`ZONE`, `NAME`, the whole resource).
    pub fn live(&self) -> Vec<(String, String, serde_json::Value)> {
        self.sim
            .instances()
            .into_iter()
            .map(|i| {
                let zone = i["zone"]
                    .as_str()
                    .unwrap_or_default()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let name = i["name"].as_str().unwrap_or_default().to_string();
                (zone, name, i)
            })
            .collect()
    }

    /// The value of the metadata item `key` of `instance`.
    pub fn metadata_item(instance: &serde_json::Value, key: &str) -> Option<String> {
        instance["metadata"]["items"]
            .as_array()?
            .iter()
            .find(|i| i["key"] == key)
            .and_then(|i| i["value"].as_str())
            .map(String::from)
    }
}

/// An RSA key pair (private PEM in PKCS#8, public PEM) made with the `openssl` CLI, as
/// Google's key files hold.
fn rsa_keys(dir: &Path) -> (String, String) {
    let key = dir.join("sa.pem");
    let made = std::process::Command::new("openssl")
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
        .expect("openssl (scripts/test.sh installs it)");
    assert!(made.status.success(), "{made:?}");
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
