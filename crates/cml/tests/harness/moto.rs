//! A moto EC2 emulator (`moto_server`, from PyPI `moto[server]`) on 127.0.0.1, one per test,
//! and an EC2 client for the test's own checks.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moto answers HTTP 500 outside us-east-1 once it is given its own image list.
pub const REGION: &str = "us-east-1";

/// The images moto offers: one current Ubuntu LTS published by Canonical's account, so the
/// default image lookup (owner-filtered) finds it.
const AMIS: &str = r#"[{"ami_id":"ami-0c0ffee0c0ffee001","name":"ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250101","description":"Canonical, Ubuntu, 24.04 LTS","owner_id":"099720109477","public":true,"virtualization_type":"hvm","architecture":"x86_64","state":"available","root_device_type":"ebs","root_device_name":"/dev/sda1","creation_date":"2025-01-01T00:00:00.000Z","hypervisor":"xen","image_location":"099720109477/ubuntu-noble","sriov":"simple"}]"#;

pub struct Moto {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let amis = dir.path().join("amis.json");
        std::fs::write(&amis, AMIS).unwrap();
        let child = Command::new("moto_server")
            .env("MOTO_AMIS_PATH", &amis)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server ({e}): install it with `pip install 'moto[server]'` (.ci/run does)"));
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            child,
            url,
            _dir: dir,
        }
    }

    /// The AWS variables a process needs to use this emulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    pub fn ec2(&self) -> Ec2 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(REGION))
                .endpoint_url(&self.url)
                .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                    "testing", "testing", None, None, "test",
                ))
                .load(),
        );
        Ec2 {
            client: aws_sdk_ec2::Client::new(&config),
            rt,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking view of the emulator's state.
pub struct Ec2 {
    pub client: aws_sdk_ec2::Client,
    pub rt: tokio::runtime::Runtime,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub state: String,
    pub instance_type: String,
    pub spot: bool,
    pub tags: Vec<(String, String)>,
    pub key_name: Option<String>,
}

impl Ec2 {
    /// Every instance, whatever its state.
    pub fn instances(&self) -> Vec<Instance> {
        let out = self
            .rt
            .block_on(self.client.describe_instances().send())
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| Instance {
                id: i.instance_id().unwrap_or_default().to_string(),
                state: i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default(),
                instance_type: i
                    .instance_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                spot: i.instance_lifecycle().is_some_and(|l| l.as_str() == "spot"),
                tags: i
                    .tags()
                    .iter()
                    .map(|t| {
                        (
                            t.key().unwrap_or_default().to_string(),
                            t.value().unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
                key_name: i.key_name().map(String::from),
            })
            .collect()
    }

    pub fn live_instances(&self) -> Vec<Instance> {
        self.instances()
            .into_iter()
            .filter(|i| i.state != "terminated" && i.state != "shutting-down")
            .collect()
    }

    pub fn key_pairs(&self) -> Vec<String> {
        let out = self
            .rt
            .block_on(self.client.describe_key_pairs().send())
            .unwrap();
        out.key_pairs()
            .iter()
            .filter_map(|k| k.key_name().map(String::from))
            .collect()
    }

    pub fn open_spot_requests(&self) -> Vec<String> {
        let out = self
            .rt
            .block_on(self.client.describe_spot_instance_requests().send())
            .unwrap();
        out.spot_instance_requests()
            .iter()
            .filter(|r| {
                r.state()
                    .is_some_and(|s| matches!(s.as_str(), "open" | "active"))
            })
            .filter_map(|r| r.spot_instance_request_id().map(String::from))
            .collect()
    }

    pub fn user_data(&self, instance: &str) -> String {
        use base64::Engine;
        let out = self
            .rt
            .block_on(
                self.client
                    .describe_instance_attribute()
                    .instance_id(instance)
                    .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
                    .send(),
            )
            .unwrap();
        let b64 = out.user_data().and_then(|u| u.value()).unwrap_or_default();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    }
}
