//! Helpers of the Compute Engine simulator tests: a blocking HTTP client for the API, the token
//! endpoint and metadata servers, service-account keys, and instance bodies.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use cml_sim::gcp::{GcpConfig, GcpSim, SCOPE_CLOUD_PLATFORM};
use serde_json::{json, Value};

pub const ZONE: &str = "us-east1-c";
pub const SA: &str = "runner@cml-sim-project.iam.gserviceaccount.com";

/// A blocking HTTP client.
pub struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

/// An answer: status, headers, text and JSON (`Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

impl Client {
    pub fn new() -> Client {
        Client::with_timeout(Duration::from_secs(30))
    }

    /// A client that gives up on an answer after `timeout`.
    pub fn with_timeout(timeout: Duration) -> Client {
        Client {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(timeout)
                .build()
                .unwrap(),
        }
    }

    /// `method url` with `headers` and an optional raw body; `Err` when no answer came.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, String> {
        self.rt.block_on(async {
            let mut req = self.http.request(method.parse().unwrap(), url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.body(b);
            }
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            let json = serde_json::from_str(&text).unwrap_or(Value::Null);
            Ok(Answer {
                status,
                headers,
                text,
                json,
            })
        })
    }

    /// An API call with a bearer token and an optional JSON body.
    pub fn api(&self, method: &str, url: &str, token: &str, body: Option<&Value>) -> Answer {
        let auth = format!("Bearer {token}");
        let mut h = vec![("authorization", auth.as_str())];
        if body.is_some() {
            h.push(("content-type", "application/json"));
        }
        self.send(method, url, &h, body.map(|b| b.to_string().into_bytes()))
            .expect("an answer")
    }

    /// A form POST (the token endpoint).
    pub fn form(&self, url: &str, form: &[(&str, &str)]) -> Answer {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        self.send(
            "POST",
            url,
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(body.join("&").into_bytes()),
        )
        .expect("an answer")
    }

    /// A metadata read with `Metadata-Flavor: Google`.
    pub fn metadata(&self, base: &str, path: &str) -> Answer {
        self.send(
            "GET",
            &format!("{base}/computeMetadata/v1/{path}"),
            &[("Metadata-Flavor", "Google")],
            None,
        )
        .expect("an answer")
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A simulator with fast steps.
pub fn sim() -> GcpSim {
    sim_with(|_| {})
}

pub fn sim_with(f: impl FnOnce(&mut GcpConfig)) -> GcpSim {
    let mut cfg = GcpConfig {
        status_step: Duration::from_millis(50),
        operation_step: Duration::from_millis(50),
        preemption_notice: Duration::from_millis(200),
        max_run_second: Duration::from_millis(10),
        ..GcpConfig::default()
    };
    f(&mut cfg);
    GcpSim::start(cfg).unwrap()
}

/// A `cloud-platform` token of [`SA`].
pub fn token(sim: &GcpSim) -> String {
    sim.issue_token(SA, &[SCOPE_CLOUD_PLATFORM])
}

/// `{endpoint}projects/{project}/{rest}`
pub fn api_url(sim: &GcpSim, rest: &str) -> String {
    format!(
        "{}projects/{}/{rest}",
        sim.compute_endpoint(),
        sim.project()
    )
}

/// An instance body as a runner launcher would send it: Ubuntu 24.04 boot disk of 35 GB with
/// owner labels, a startup script, an external IP, the default service account.
pub fn instance_body(name: &str, zone: &str) -> Value {
    json!({
        "name": name,
        "machineType": format!("zones/{zone}/machineTypes/e2-custom-8-32768"),
        "labels": {"cml-id": name, "cml-repo-hash": "0123456789abcdef"},
        "metadata": {"items": [
            {"key": "startup-script", "value": "#!/bin/sh\necho hello\n"},
            {"key": "cml-repo", "value": "https://github.com/o/r"},
        ]},
        "disks": [{
            "boot": true,
            "autoDelete": true,
            "initializeParams": {
                "sourceImage": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
                "diskSizeGb": "35",
                "labels": {"cml-id": name},
            },
        }],
        "networkInterfaces": [{
            "network": "global/networks/default",
            "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}],
        }],
        "serviceAccounts": [{"email": "default", "scopes": [SCOPE_CLOUD_PLATFORM]}],
        "scheduling": {"onHostMaintenance": "TERMINATE", "automaticRestart": false},
    })
}

/// Polls `zoneOperations.get` until the operation is DONE (at most 10 s); the statuses seen.
pub fn wait_op(c: &Client, sim: &GcpSim, op: &Value, token: &str) -> (Value, Vec<String>) {
    let zone = op["zone"].as_str().unwrap().rsplit('/').next().unwrap();
    let url = api_url(
        sim,
        &format!("zones/{zone}/operations/{}", op["name"].as_str().unwrap()),
    );
    let mut seen = vec![op["status"].as_str().unwrap().to_string()];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let a = c.api("GET", &url, token, None);
        assert_eq!(a.status, 200, "{}", a.text);
        let s = a.json["status"].as_str().unwrap().to_string();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "DONE" {
            return (a.json, seen);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("operation not done within 10 s: {seen:?}");
}

/// Waits (at most 10 s) until `f` holds.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

/// An RSA key pair (private PEM, public PEM) made with the `openssl` CLI.
pub fn rsa_keys(dir: &std::path::Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.pem"));
    let ok = std::process::Command::new("openssl")
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
        .expect("openssl");
    assert!(ok.status.success());
    let pubk = dir.join(format!("{name}.pub.pem"));
    assert!(std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&pubk)
        .output()
        .unwrap()
        .status
        .success());
    (
        std::fs::read_to_string(key).unwrap(),
        std::fs::read_to_string(pubk).unwrap(),
    )
}

/// A service-account JWT assertion signed with `private_pem`; `claims` are merged over the
/// standard ones (`iss` = [`SA`], `aud` = `aud`, `scope` = cloud-platform, `iat` = now,
/// `exp` = now + 1 h).
pub fn assertion(private_pem: &str, kid: &str, aud: &str, claims: Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut c = json!({"iss": SA, "aud": aud, "scope": SCOPE_CLOUD_PLATFORM, "iat": now, "exp": now + 3600});
    for (k, v) in claims.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some(kid.to_string());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&h, &c, &key).unwrap()
}
