//! The AWS provider against moto (`moto_server`, from `pip install 'moto[server]'`), one moto
//! per test, on 127.0.0.1.
#![cfg(feature = "aws")]

use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::types::Filter;
use base64::Engine;
use cml_cloud::aws::{AwsProvider, ATTEMPT_TIMEOUT, CONNECT_TIMEOUT, SHARED_SECURITY_GROUP};
use cml_cloud::{CloudError, Created, MachineSpec, Provider, Resource};
use cml_core::cloud::{Cloud, CloudSpec};
use cml_sim::ec2proxy::{Ec2FaultProxy, Fault};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CANONICAL: &str = "099720109477";
const ACCOUNT: &str = "123456789012";

/// The images moto offers in these tests: Canonical's Ubuntu builds, an impostor publishing
/// under the same name, and two images of this account.
fn amis_json() -> String {
    let ami = |id: &str, owner: &str, name: &str, arch: &str, date: &str, root: &str| {
        format!(
            r#"{{"ami_id":"{id}","name":"{name}","description":"{name}","owner_id":"{owner}","public":true,"virtualization_type":"hvm","architecture":"{arch}","state":"available","root_device_type":"ebs","root_device_name":"{root}","creation_date":"{date}","hypervisor":"xen","image_location":"{owner}/{name}","sriov":"simple"}}"#
        )
    };
    let noble = |arch: &str, date: &str| {
        format!("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-{date}")
    };
    let list = [
        ami(
            "ami-0000000000000a001",
            CANONICAL,
            &noble("amd64", "20240101"),
            "x86_64",
            "2024-01-01T00:00:00.000Z",
            "/dev/sda1",
        ),
        ami(
            "ami-0000000000000a002",
            CANONICAL,
            &noble("amd64", "20250101"),
            "x86_64",
            "2025-01-01T00:00:00.000Z",
            "/dev/sda1",
        ),
        ami(
            "ami-0000000000000a003",
            CANONICAL,
            "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20251201",
            "x86_64",
            "2025-12-01T00:00:00.000Z",
            "/dev/sda1",
        ),
        ami(
            "ami-0000000000000a004",
            "666666666666",
            &noble("amd64", "20260101"),
            "x86_64",
            "2026-01-01T00:00:00.000Z",
            "/dev/sda1",
        ),
        ami(
            "ami-0000000000000a005",
            CANONICAL,
            &noble("arm64", "20250101"),
            "arm64",
            "2025-01-01T00:00:00.000Z",
            "/dev/sda1",
        ),
        ami(
            "ami-0000000000000b001",
            ACCOUNT,
            "cml-test-image-1",
            "x86_64",
            "2024-06-01T00:00:00.000Z",
            "/dev/xvda",
        ),
        ami(
            "ami-0000000000000b002",
            ACCOUNT,
            "cml-test-image-2",
            "x86_64",
            "2025-06-01T00:00:00.000Z",
            "/dev/xvda",
        ),
    ];
    format!("[{}]", list.join(","))
}

/// A moto server on a free port, killed when dropped.
struct Moto {
    child: Child,
    port: u16,
    _amis: tempfile::NamedTempFile,
}

impl Moto {
    fn start() -> Moto {
        let mut amis = tempfile::NamedTempFile::new().unwrap();
        amis.write_all(amis_json().as_bytes()).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_AMIS_PATH", amis.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto_server ({e}); these tests need it: pip install 'moto[server]'"
                )
            });
        let mut moto = Moto {
            child,
            port,
            _amis: amis,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited with {status}; install it: pip install 'moto[server]'");
            }
            if moto.http("GET", "/moto-api/", &[], "").is_some() {
                return moto;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One plain HTTP/1.1 request; the body of the answer, if any answer came.
    fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.starts_with("HTTP/1.").then_some(out)
    }

    /// Creates an IAM instance profile (moto checks that launch profiles exist); its ARN.
    fn instance_profile(&self, name: &str) -> String {
        let body =
            format!("Action=CreateInstanceProfile&InstanceProfileName={name}&Version=2010-05-08");
        let out = self
            .http(
                "POST",
                "/",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    (
                        "Authorization",
                        "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00",
                    ),
                ],
                &body,
            )
            .expect("IAM answer");
        let start = out.find("<Arn>").expect("an ARN in the IAM answer") + 5;
        let end = out[start..].find("</Arn>").unwrap() + start;
        out[start..end].to_string()
    }

    async fn provider(&self, region: &str) -> AwsProvider {
        AwsProvider::from_sdk_config(&self.sdk_config().await, region)
            .unwrap()
            .with_poll_interval(Duration::from_millis(50))
            .with_destroy_timeout(Duration::from_secs(10))
            .with_launch_settle(Duration::from_secs(2))
    }

    async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await
    }

    /// A plain EC2 client, to look at what the provider did.
    async fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        let conf = aws_sdk_ec2::config::Builder::from(&self.sdk_config().await)
            .region(aws_config::Region::new(region.to_string()))
            .build();
        aws_sdk_ec2::Client::from_conf(conf)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SCRIPT: &str = "#!/bin/sh\necho start runner with token ghs_secret_token_value\n";

fn spec(name: &str, region: &str) -> MachineSpec {
    MachineSpec {
        name: name.to_string(),
        cloud: CloudSpec {
            cloud: Cloud::Aws,
            region: region.to_string(),
            machine_type: "t3.micro".into(),
            gpu: None,
            hdd_size_gb: 35,
            spot: false,
            spot_price: None,
            spot_fallback: false,
            permission_set: None,
            metadata: vec![],
            startup_script: None,
            image: None,
            aws_security_group: None,
            aws_subnet: None,
            kubernetes_node_selector: vec![],
            kubernetes_namespace: None,
        },
        user_data: SCRIPT.to_string(),
        tags: cml_core::cloud::resource_tags(
            name,
            "https://github.com/o/r",
            "cml",
            &[("team".into(), "ml".into())],
        ),
        ssh_private_key: None,
        runner: Default::default(),
        max_lifetime: None,
    }
}

fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

async fn instance(ec2: &aws_sdk_ec2::Client, id: &str) -> aws_sdk_ec2::types::Instance {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    out.reservations()[0].instances()[0].clone()
}

async fn key_pairs(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let out = ec2.describe_key_pairs().send().await.unwrap();
    out.key_pairs()
        .iter()
        .filter_map(|k| k.key_name().map(str::to_string))
        .collect()
}

async fn live_instances(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let out = ec2.describe_instances().send().await.unwrap();
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

async fn non_default_groups(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let out = ec2.describe_security_groups().send().await.unwrap();
    out.security_groups()
        .iter()
        .filter(|g| g.group_name() != Some("default"))
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn on_demand_launch_carries_every_setting_and_destroy_removes_it() {
    let moto = Moto::start();
    let region = "us-east-1";
    let aws = moto.provider(region).await;
    let ec2 = moto.ec2(region).await;
    let profile = moto.instance_profile("runner-profile");

    let mut s = spec("r1", region);
    s.cloud.permission_set = Some(profile.clone());
    let created = Created::new();
    let m = aws.create(&s, &created).await.unwrap();
    assert_eq!(m.machine_type, "t3.micro");
    assert!(!m.spot);
    assert_eq!(m.region, region);
    assert_eq!(
        created.list(),
        [
            Resource::KeyPair("cml-r1".into()),
            Resource::Instance(m.id.clone())
        ]
    );

    let m = aws.wait_running(&m, Duration::from_secs(10)).await.unwrap();
    assert_eq!(m.state, "running");
    assert!(m.private_ip.is_some());

    let i = instance(&ec2, &m.id).await;
    // Default image: the newest Ubuntu 24.04 build of Canonical, not the impostor's newer one
    // nor a newer 22.04 build.
    assert_eq!(i.image_id(), Some("ami-0000000000000a002"));
    assert_eq!(i.instance_type().map(|t| t.as_str()), Some("t3.micro"));
    assert_eq!(i.key_name(), Some("cml-r1"));
    assert_eq!(tag(i.tags(), "cml:id"), Some("r1"));
    assert_eq!(tag(i.tags(), "Name"), Some("cml-r1"));
    assert_eq!(tag(i.tags(), "team"), Some("ml"));
    assert_eq!(
        i.iam_instance_profile().and_then(|p| p.arn()),
        Some(profile.as_str())
    );
    let md = i.metadata_options().unwrap();
    assert_eq!(md.http_tokens().map(|t| t.as_str()), Some("required"));
    assert_eq!(md.http_put_response_hop_limit(), Some(1));
    assert!(i.instance_lifecycle().is_none());

    let user_data = ec2
        .describe_instance_attribute()
        .instance_id(&m.id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let encoded = user_data.user_data().and_then(|v| v.value()).unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), SCRIPT);
    let shutdown = ec2
        .describe_instance_attribute()
        .instance_id(&m.id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .send()
        .await
        .unwrap();
    assert_eq!(
        shutdown
            .instance_initiated_shutdown_behavior()
            .and_then(|v| v.value()),
        Some("terminate")
    );

    // Root volume: the size asked for, gp3, deleted with the instance, tagged.
    let vols = ec2
        .describe_volumes()
        .filters(filter("attachment.instance-id", &m.id))
        .send()
        .await
        .unwrap();
    let root = vols
        .volumes()
        .iter()
        .find(|v| {
            v.attachments()
                .iter()
                .any(|a| a.device() == Some("/dev/sda1"))
        })
        .expect("a root volume on /dev/sda1");
    assert_eq!(root.size(), Some(35));
    assert_eq!(root.volume_type().map(|t| t.as_str()), Some("gp3"));
    let root_mapping = i
        .block_device_mappings()
        .iter()
        .find(|b| b.device_name() == Some("/dev/sda1"))
        .unwrap();
    assert_eq!(
        root_mapping.ebs().and_then(|e| e.delete_on_termination()),
        Some(true)
    );
    assert_eq!(tag(root.tags(), "cml:id"), Some("r1"));
    assert_eq!(tag(root.tags(), "Name"), Some("cml-r1"));

    // The shared security group: no inbound rule at all, tagged as shared.
    let groups: Vec<String> = i
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    assert_eq!(groups.len(), 1);
    let sg = ec2
        .describe_security_groups()
        .group_ids(&groups[0])
        .send()
        .await
        .unwrap();
    let sg = &sg.security_groups()[0];
    assert_eq!(sg.group_name(), Some(SHARED_SECURITY_GROUP));
    assert!(sg.ip_permissions().is_empty(), "{:?}", sg.ip_permissions());
    assert_eq!(tag(sg.tags(), "cml:id"), Some("shared"));

    // A key pair without the owner tag is not ours.
    ec2.create_key_pair()
        .key_name("someone-else")
        .send()
        .await
        .unwrap();

    let owned = aws.list_owned().await.unwrap();
    let ours: Vec<_> = owned
        .iter()
        .filter(|o| o.owner == "r1")
        .map(|o| o.resource.clone())
        .collect();
    assert!(
        ours.contains(&Resource::Instance(m.id.clone())),
        "{owned:?}"
    );
    assert!(
        ours.contains(&Resource::KeyPair("cml-r1".into())),
        "{owned:?}"
    );
    assert!(owned
        .iter()
        .all(|o| o.resource != Resource::KeyPair("someone-else".into())));
    assert!(owned
        .iter()
        .any(|o| o.owner == "shared" && o.resource == Resource::SecurityGroup(groups[0].clone())));

    // A second runner reuses the shared group.
    let created2 = Created::new();
    let m2 = aws.create(&spec("r2", region), &created2).await.unwrap();
    let i2 = instance(&ec2, &m2.id).await;
    assert_eq!(i2.security_groups()[0].group_id(), Some(groups[0].as_str()));
    assert_eq!(non_default_groups(&ec2).await, groups);

    aws.destroy(&created).await.unwrap();
    let i = instance(&ec2, &m.id).await;
    assert_eq!(
        i.state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("terminated")
    );
    assert!(!key_pairs(&ec2).await.contains(&"cml-r1".to_string()));
    // Idempotent.
    aws.destroy(&created).await.unwrap();

    let owned = aws.list_owned().await.unwrap();
    assert!(owned.iter().all(|o| o.owner != "r1"), "{owned:?}");
    aws.destroy(&created2).await.unwrap();
    assert!(live_instances(&ec2).await.is_empty());
    let owned = aws.list_owned().await.unwrap();
    assert!(owned.iter().all(|o| o.owner == "shared"), "{owned:?}");
}

#[tokio::test]
async fn spot_launches_with_and_without_a_max_price() {
    let moto = Moto::start();
    let region = "us-east-1";
    let aws = moto.provider(region).await;
    let ec2 = moto.ec2(region).await;
    moto.instance_profile("by-name");

    for (name, price) in [("s1", Some(0.25)), ("s2", None)] {
        let mut s = spec(name, region);
        s.cloud.spot = true;
        s.cloud.spot_price = price;
        s.cloud.permission_set = Some("by-name".into());
        let created = Created::new();
        let m = aws.create(&s, &created).await.unwrap();
        assert!(m.spot);
        let i = instance(&ec2, &m.id).await;
        assert_eq!(i.instance_lifecycle().map(|l| l.as_str()), Some("spot"));
        assert!(i
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .unwrap()
            .ends_with("/by-name"));
        let list = created.list();
        assert!(list.contains(&Resource::Instance(m.id.clone())));
        // A spot request id is recorded whenever EC2 names one.
        if let Some(req) = i.spot_instance_request_id() {
            assert!(list.contains(&Resource::SpotRequest(req.to_string())));
        }
        aws.destroy(&created).await.unwrap();
        aws.destroy(&created).await.unwrap();
    }
    assert!(live_instances(&ec2).await.is_empty());
    assert!(key_pairs(&ec2).await.is_empty());
}

#[tokio::test]
async fn spot_requests_are_listed_and_cancelled() {
    let moto = Moto::start();
    let region = "us-east-1";
    let aws = moto.provider(region).await;
    let ec2 = moto.ec2(region).await;
    let out = ec2
        .request_spot_instances()
        .instance_count(1)
        .launch_specification(
            aws_sdk_ec2::types::RequestSpotLaunchSpecification::builder()
                .image_id("ami-0000000000000a002")
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .build(),
        )
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::SpotInstancesRequest)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("cml:id")
                        .value("sp")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let req = out.spot_instance_requests()[0]
        .spot_instance_request_id()
        .unwrap()
        .to_string();
    let owned = aws.list_owned().await.unwrap();
    assert!(
        owned
            .iter()
            .any(|o| o.owner == "sp" && o.resource == Resource::SpotRequest(req.clone())),
        "{owned:?}"
    );

    let created = Created::new();
    created.push(Resource::SpotRequest(req.clone()));
    aws.destroy(&created).await.unwrap();
    let out = ec2
        .describe_spot_instance_requests()
        .spot_instance_request_ids(&req)
        .send()
        .await
        .unwrap();
    // Cancelled (AWS), or removed outright (moto).
    assert!(out
        .spot_instance_requests()
        .iter()
        .all(|r| r.state().map(|s| s.as_str()) == Some("cancelled")));
    aws.destroy(&created).await.unwrap();
    let owned = aws.list_owned().await.unwrap();
    assert!(owned.iter().all(|o| o.owner != "sp"), "{owned:?}");
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test]
async fn ssh_private_key_is_imported_and_a_malformed_one_creates_nothing() {
    let moto = Moto::start();
    let region = "us-east-1";
    let aws = moto.provider(region).await;
    let ec2 = moto.ec2(region).await;

    let mut s = spec("bad", region);
    s.ssh_private_key = Some(cml_core::Secret::new(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA////\n-----END OPENSSH PRIVATE KEY-----",
    ));
    let created = Created::new();
    let e = aws.create(&s, &created).await.unwrap_err();
    assert!(matches!(e, CloudError::SshKey { .. }), "{e}");
    assert!(created.is_empty());
    assert!(key_pairs(&ec2).await.is_empty());
    assert!(live_instances(&ec2).await.is_empty());
    assert!(non_default_groups(&ec2).await.is_empty());

    for (name, file) in [("k1", "rsa_openssh"), ("k2", "ed25519_pkcs8.pem")] {
        let mut s = spec(name, region);
        s.ssh_private_key = Some(cml_core::Secret::new(fixture(file)));
        let created = Created::new();
        let m = aws.create(&s, &created).await.unwrap();
        let keys = ec2
            .describe_key_pairs()
            .key_names(format!("cml-{name}"))
            .send()
            .await
            .unwrap();
        let k = &keys.key_pairs()[0];
        assert_eq!(tag(k.tags(), "cml:id"), Some(name));
        assert_eq!(
            instance(&ec2, &m.id).await.key_name(),
            Some(format!("cml-{name}").as_str())
        );
        aws.destroy(&created).await.unwrap();
    }
    assert!(key_pairs(&ec2).await.is_empty());
    assert!(live_instances(&ec2).await.is_empty());
}

#[tokio::test]
async fn unknown_images_fail_before_anything_exists() {
    let moto = Moto::start();
    let region = "us-east-1";
    let aws = moto.provider(region).await;
    let ec2 = moto.ec2(region).await;
    for image in ["ami-00000000deadbeef0", "no-such-image-*"] {
        let mut s = spec("img", region);
        s.cloud.image = Some(image.into());
        let created = Created::new();
        let e = aws.create(&s, &created).await.unwrap_err();
        assert!(matches!(e, CloudError::Image { .. }), "{e}");
        assert!(e.to_string().contains(region), "{e}");
        assert!(created.is_empty());
    }
    assert!(key_pairs(&ec2).await.is_empty());
    assert!(live_instances(&ec2).await.is_empty());
    assert!(non_default_groups(&ec2).await.is_empty());
}

#[tokio::test]
async fn images_by_name_and_architecture_zones_and_given_groups() {
    let moto = Moto::start();
    let ec2 = moto.ec2("us-east-1").await;
    let aws = moto.provider("us-east-1b").await;
    assert_eq!(aws.region(), "us-east-1");

    let vpc = ec2.describe_vpcs().send().await.unwrap().vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_string();
    let sg = ec2
        .create_security_group()
        .group_name("mine")
        .description("given")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();

    // A name, among trusted owners only: the newest match, its own root device name.
    let mut s = spec("n1", "us-east-1b");
    s.cloud.image = Some("cml-test-image-*".into());
    s.cloud.aws_security_group = Some(sg.clone());
    s.cloud.hdd_size_gb = 50;
    let created = Created::new();
    let m = aws.create(&s, &created).await.unwrap();
    assert_eq!(m.zone.as_deref(), Some("us-east-1b"));
    let i = instance(&ec2, &m.id).await;
    assert_eq!(i.image_id(), Some("ami-0000000000000b002"));
    assert_eq!(
        i.placement().and_then(|p| p.availability_zone()),
        Some("us-east-1b")
    );
    assert_eq!(i.security_groups()[0].group_id(), Some(sg.as_str()));
    let vols = ec2
        .describe_volumes()
        .filters(filter("attachment.instance-id", &m.id))
        .send()
        .await
        .unwrap();
    assert!(vols.volumes().iter().any(|v| v.size() == Some(50)
        && v.attachments()
            .iter()
            .any(|a| a.device() == Some("/dev/xvda"))));
    // The given group was used: the shared one was never made.
    assert_eq!(non_default_groups(&ec2).await, vec![sg.clone()]);
    aws.destroy(&created).await.unwrap();

    // The default image follows the architecture of the type (Graviton → arm64).
    let mut s = spec("a1", "us-east-1b");
    s.cloud.machine_type = "t4g.small".into();
    s.cloud.aws_security_group = Some("mine".into());
    let created = Created::new();
    let m = aws.create(&s, &created).await.unwrap();
    assert_eq!(
        instance(&ec2, &m.id).await.image_id(),
        Some("ami-0000000000000a005")
    );
    // An AMI id is used as is.
    let mut s = spec("id1", "us-east-1b");
    s.cloud.image = Some("ami-0000000000000a001".into());
    s.cloud.aws_security_group = Some(sg.clone());
    let created2 = Created::new();
    let m2 = aws.create(&s, &created2).await.unwrap();
    assert_eq!(
        instance(&ec2, &m2.id).await.image_id(),
        Some("ami-0000000000000a001")
    );
    aws.destroy(&created).await.unwrap();
    aws.destroy(&created2).await.unwrap();
    assert!(live_instances(&ec2).await.is_empty());
}

#[tokio::test]
async fn destroy_copes_with_a_creation_that_never_finished() {
    let moto = Moto::start();
    let region = "us-east-1";
    let aws = moto.provider(region).await;
    let ec2 = moto.ec2(region).await;

    // Creation stopped after the key pair: only it exists; the list also names resources
    // that are already gone, or never were.
    ec2.create_key_pair()
        .key_name("cml-half")
        .send()
        .await
        .unwrap();
    let sg = ec2
        .create_security_group()
        .group_name("cml-half")
        .description("per runner")
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    let created = Created::new();
    created.push(Resource::KeyPair("cml-half".into()));
    created.push(Resource::Instance("i-0123456789abcdef0".into()));
    created.push(Resource::SpotRequest("sir-00000000".into()));
    created.push(Resource::SecurityGroup(sg.clone()));
    created.push(Resource::KeyPair("cml-never".into()));
    aws.destroy(&created).await.unwrap();
    assert!(key_pairs(&ec2).await.is_empty());
    assert!(non_default_groups(&ec2).await.is_empty());
    aws.destroy(&created).await.unwrap();

    // A create dropped mid-way (here: once the key pair exists) leaves a list destroy clears.
    let s = spec("dropped", region);
    let created = Created::new();
    {
        let fut = aws.create(&s, &created);
        tokio::pin!(fut);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            tokio::select! {
                r = &mut fut => { r.unwrap(); break; }
                _ = tokio::time::sleep(Duration::from_millis(1)) => {
                    if !created.is_empty() { break; }
                }
            }
            assert!(Instant::now() < deadline, "create did not progress");
        }
    }
    assert!(created
        .list()
        .contains(&Resource::KeyPair("cml-dropped".into())));
    // Whatever the dropped call launched is found by its launch tag and removed too.
    aws.destroy(&created).await.unwrap();
    assert!(key_pairs(&ec2).await.is_empty());
    assert!(live_instances(&ec2).await.is_empty());
    assert!(
        created.left().iter().all(|l| l.deleting),
        "{:?}",
        created.left()
    );
}

#[tokio::test]
async fn waits_end_on_termination_and_console_output_is_read() {
    let moto = Moto::start();
    let region = "us-east-1";
    let aws = moto.provider(region).await;
    let ec2 = moto.ec2(region).await;
    let created = Created::new();
    let m = aws.create(&spec("w1", region), &created).await.unwrap();
    let _ = aws.console_output(&m).await.unwrap();
    ec2.terminate_instances()
        .instance_ids(&m.id)
        .send()
        .await
        .unwrap();
    let e = aws
        .wait_running(&m, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(e, CloudError::Wait { .. }), "{e}");
    // An instance that never shows up: a bounded wait.
    let mut ghost = m.clone();
    ghost.id = "i-0fffffffffffffff0".into();
    let started = Instant::now();
    let e = aws
        .wait_running(&ghost, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, CloudError::WaitTimeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    aws.destroy(&created).await.unwrap();
}

#[tokio::test]
async fn new_reads_the_standard_environment_and_debug_hides_credentials() {
    let moto = Moto::start();
    // Only this test reads the environment; the others pass their configuration explicitly.
    std::env::set_var("AWS_ENDPOINT_URL", moto.endpoint());
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDTESTVALUE1234");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "very-secret-test-value");
    let aws = AwsProvider::new("us-east-1").await.unwrap();
    assert_eq!(aws.region(), "us-east-1");
    let owned = aws.list_owned().await.unwrap();
    assert!(owned.is_empty(), "{owned:?}");
    let timeouts = aws.client().config().timeout_config().unwrap();
    assert!(timeouts
        .connect_timeout()
        .is_some_and(|t| t <= CONNECT_TIMEOUT));
    assert_eq!(timeouts.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
    assert!(timeouts.operation_timeout().is_some());
    let debug = format!("{aws:?}");
    assert!(
        !debug.contains("very-secret-test-value") && !debug.contains("AKIDTESTVALUE1234"),
        "{debug}"
    );

    // A failed launch names the AWS error code, never the user data; what it made is
    // recorded for the teardown.
    let mut s = spec("secret", "us-east-1");
    s.cloud.aws_security_group = Some("sg-00000000000000000".into());
    let created = Created::new();
    let e = aws.create(&s, &created).await.map(|_| ()).unwrap_err();
    assert!(matches!(e, CloudError::Launch { .. }), "{e}");
    assert!(e.to_string().contains("InvalidGroup.NotFound"), "{e}");
    assert!(!e.to_string().contains("ghs_secret_token_value"));
    assert_eq!(created.list(), [Resource::KeyPair("cml-secret".into())]);
    aws.destroy(&created).await.unwrap();
    assert!(!format!("{s:?}").contains("ghs_secret_token_value"));
}

/// A provider whose EC2 calls go through `Ec2FaultProxy` to moto.
async fn provider_via(endpoint: &str, region: &str) -> AwsProvider {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await;
    AwsProvider::from_sdk_config(&config, region)
        .unwrap()
        .with_poll_interval(Duration::from_millis(50))
        .with_destroy_timeout(Duration::from_secs(10))
        .with_launch_settle(Duration::from_secs(2))
}

#[tokio::test]
async fn spot_without_capacity_tries_the_other_zones_then_on_demand_when_allowed() {
    let moto = Moto::start();
    let region = "us-east-1";
    let ec2 = moto.ec2(region).await;

    // Capacity only in us-east-1c: the first launch (no zone) and 1a, 1b are refused.
    let proxy = cml_sim::ec2proxy::Ec2FaultProxy::start(&moto.endpoint(), &["us-east-1c"]).unwrap();
    let aws = provider_via(&proxy.url(), region).await;
    let mut s = spec("cap1", region);
    s.cloud.spot = true;
    let created = Created::new();
    let m = aws.create(&s, &created).await.unwrap();
    let i = instance(&ec2, &m.id).await;
    assert_eq!(i.instance_lifecycle().map(|l| l.as_str()), Some("spot"));
    assert_eq!(
        i.placement().and_then(|p| p.availability_zone()),
        Some("us-east-1c")
    );
    assert_eq!(proxy.refused(), ["-", "us-east-1a", "us-east-1b"]);
    aws.destroy(&created).await.unwrap();

    // No capacity anywhere: an error naming the reason, and nothing left behind...
    let proxy = cml_sim::ec2proxy::Ec2FaultProxy::start(&moto.endpoint(), &[]).unwrap();
    let aws = provider_via(&proxy.url(), region).await;
    let mut s = spec("cap2", region);
    s.cloud.spot = true;
    let created = Created::new();
    let err = aws.create(&s, &created).await.unwrap_err().to_string();
    assert!(err.contains("InsufficientInstanceCapacity"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    aws.destroy(&created).await.unwrap();
    assert!(live_instances(&ec2).await.is_empty());
    assert!(key_pairs(&ec2).await.is_empty());

    // ...unless on-demand is allowed.
    let mut s = spec("cap3", region);
    s.cloud.spot = true;
    s.cloud.spot_fallback = true;
    let created = Created::new();
    let m = aws.create(&s, &created).await.unwrap();
    let i = instance(&ec2, &m.id).await;
    assert_eq!(i.instance_lifecycle(), None, "an on-demand instance");
    assert!(!m.spot);
    aws.destroy(&created).await.unwrap();
}

/// Waits (bounded) until `f` holds.
async fn until(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_launch_whose_answer_never_arrives_leaves_nothing_after_teardown() {
    let moto = Moto::start();
    let region = "us-east-1";
    let ec2 = moto.ec2(region).await;
    let proxy = Ec2FaultProxy::start(&moto.endpoint(), &[]).unwrap();
    let aws = provider_via(&proxy.url(), region).await;

    // 1. Every answer to RunInstances is lost after EC2 carried it out: the SDK retries,
    // then gives up. The machines it made are found by their launch tag.
    proxy.inject("RunInstances", None, Fault::DropAnswer, None);
    let created = Created::new();
    let e = aws
        .create(&spec("lost", region), &created)
        .await
        .unwrap_err();
    assert!(matches!(e, CloudError::Launch { .. }), "{e}");
    let launched = live_instances(&ec2).await;
    assert!(!launched.is_empty(), "the requests reached EC2");
    assert_eq!(
        created.list(),
        [Resource::KeyPair("cml-lost".into())],
        "no answer named an instance"
    );
    aws.destroy(&created).await.unwrap();
    assert!(
        live_instances(&ec2).await.is_empty(),
        "{launched:?} were left"
    );
    assert!(key_pairs(&ec2).await.is_empty());
    let left = created.left();
    assert_eq!(left.len(), launched.len(), "{left:?}");
    assert!(
        left.iter().all(|l| l.deleting),
        "only terminating instances: {left:?}"
    );
    assert!(created.launches().is_empty(), "the launch was looked up");

    // 2. The answer is delayed and the launch is given up while it is on its way (the
    // launcher's task dropped on a signal).
    proxy.clear_faults();
    proxy.inject(
        "RunInstances",
        None,
        Fault::DelayAnswer(Duration::from_secs(60)),
        None,
    );
    let created = Created::new();
    {
        let s = spec("slow", region);
        let fut = aws.create(&s, &created);
        tokio::pin!(fut);
        let ec2 = &ec2;
        tokio::select! {
            r = &mut fut => panic!("the delayed launch ended: {:?}", r.map(|m| m.id)),
            _ = until("the instance in EC2", Duration::from_secs(20), async || {
                !live_instances(ec2).await.is_empty()
            }) => {}
        }
    }
    assert!(
        !created
            .list()
            .iter()
            .any(|r| matches!(r, Resource::Instance(_))),
        "{:?}",
        created.list()
    );
    aws.destroy(&created).await.unwrap();
    assert!(live_instances(&ec2).await.is_empty());
    assert!(key_pairs(&ec2).await.is_empty());
}

#[tokio::test]
async fn teardown_issues_every_deletion_first_and_gives_up_on_a_hung_endpoint_naming_what_is_left()
{
    let moto = Moto::start();
    let region = "us-east-1";
    let ec2 = moto.ec2(region).await;
    let proxy = Ec2FaultProxy::start(&moto.endpoint(), &[]).unwrap();
    let aws = provider_via(&proxy.url(), region)
        .await
        .with_destroy_timeout(Duration::from_secs(2));
    let created = Created::new();
    let m = aws.create(&spec("hung", region), &created).await.unwrap();

    // TerminateInstances never answers: the key pair is deleted all the same, and the
    // teardown returns within its bound, naming the instance.
    proxy.inject("TerminateInstances", None, Fault::Hang, None);
    let started = Instant::now();
    let e = aws.destroy(&created).await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "teardown took {took:?}");
    assert!(matches!(e, CloudError::Incomplete { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains(&format!("instance {}", m.id)), "{text}");
    assert!(text.contains("within 2 s"), "{text}");
    assert!(text.contains("cml runner cleanup"), "{text}");
    assert!(!text.contains("key pair"), "{text}");
    assert!(
        key_pairs(&ec2).await.is_empty(),
        "deleted while terminate hung"
    );
    let terminate = proxy.arrivals("TerminateInstances")[0];
    let delete_key = proxy.arrivals("DeleteKeyPair")[0];
    assert!(
        delete_key.saturating_duration_since(terminate) < Duration::from_secs(1),
        "both issued at once"
    );
    assert_eq!(
        created.list(),
        [Resource::Instance(m.id.clone())],
        "the ledger holds what is left"
    );

    // Once the endpoint answers again, the same ledger finishes the job.
    proxy.clear_faults();
    aws.destroy(&created).await.unwrap();
    assert!(live_instances(&ec2).await.is_empty());
}

#[tokio::test]
async fn one_failed_deletion_does_not_stop_the_others() {
    let moto = Moto::start();
    let region = "us-east-1";
    let ec2 = moto.ec2(region).await;
    let proxy = Ec2FaultProxy::start(&moto.endpoint(), &[]).unwrap();
    let aws = provider_via(&proxy.url(), region).await;
    let created = Created::new();
    let a = aws.create(&spec("fa", region), &created).await.unwrap();
    let b = aws.create(&spec("fb", region), &created).await.unwrap();
    proxy.inject(
        "TerminateInstances",
        Some(&a.id),
        Fault::Error("UnauthorizedOperation".into()),
        None,
    );
    proxy.inject(
        "DeleteKeyPair",
        Some("cml-fb"),
        Fault::Error("UnauthorizedOperation".into()),
        None,
    );
    let e = aws.destroy(&created).await.unwrap_err().to_string();
    assert!(e.contains(&format!("instance {}", a.id)), "{e}");
    assert!(e.contains("key pair cml-fb"), "{e}");
    assert!(e.contains("UnauthorizedOperation"), "{e}");
    assert!(!e.contains(&b.id), "a={} b={}: {e}", a.id, b.id);
    assert_eq!(live_instances(&ec2).await, vec![a.id.clone()]);
    assert_eq!(key_pairs(&ec2).await, ["cml-fb"]);
    proxy.clear_faults();
    aws.destroy(&created).await.unwrap();
    assert!(live_instances(&ec2).await.is_empty());
    assert!(key_pairs(&ec2).await.is_empty());
}
