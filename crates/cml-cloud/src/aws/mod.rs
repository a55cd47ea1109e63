//! AWS EC2, with the official `aws-sdk-ec2`.
//!
//! Credentials, region and endpoint are found the standard AWS way (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, profiles, `AWS_ENDPOINT_URL[_EC2]`), so the
//! same code runs against AWS and against an emulator.
//!
//! What a runner gets: a key pair `cml-<name>` (imported from `--cloud-ssh-private`, or
//! generated and discarded), the shared security group `cml-runners` (no inbound rules at
//! all: the machine only dials out) unless `--cloud-aws-security-group` names one, and one
//! instance (IMDSv2 only, shutdown = terminate, root volume deleted with it), spot on request.

pub mod image;
pub use crate::sshkey;

use crate::{
    CloudError, Created, Machine, MachineSpec, OwnedResource, Provider, Resource, LAUNCH_TAG,
    OWNER_TAG, SCOPE_TAG,
};
use async_trait::async_trait;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    Instance, InstanceInterruptionBehavior, InstanceLifecycleType, InstanceMarketOptionsRequest,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceStateName, InstanceType,
    MarketType, Placement, ResourceType, ShutdownBehavior, SpotInstanceType, SpotMarketOptions,
    Tag, TagSpecification, VolumeType,
};
use base64::Engine;
use image::ImageQuery;
use std::time::{Duration, Instant};

/// The security group every runner shares when `--cloud-aws-security-group` is not given.
pub const SHARED_SECURITY_GROUP: &str = "cml-runners";

/// The owner tag value of resources shared between runners.
pub const SHARED_OWNER: &str = cml_core::orphans::SHARED_OWNER;

/// EC2's limit on user-data: 16 KB in raw form, before base64 encoding (EC2 user guide,
/// "Work with instance user data"; the base64 text sent is at most 21,848 bytes).
pub const USER_DATA_LIMIT: usize = 16 * 1024;

/// How long one connection attempt to EC2 may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one attempt of one EC2 call may take (sending, and reading the whole answer).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one EC2 call may take with the SDK's retries.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(90);

const SPOT_ERRORS: &[&str] = &[
    "InsufficientInstanceCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
];

/// The EC2 provider of one region.
#[derive(Clone)]
pub struct AwsProvider {
    client: aws_sdk_ec2::Client,
    region: String,
    zone: Option<String>,
    poll_interval: Duration,
    destroy_timeout: Duration,
    launch_settle: Duration,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the credentials: it is never printed.
        f.debug_struct("AwsProvider")
            .field("region", &self.region)
            .field("zone", &self.zone)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// Splits `--cloud-region` into (region, zone): `us-east-1a` → (`us-east-1`, `us-east-1a`).
pub fn split_zone(region_or_zone: &str) -> (String, Option<String>) {
    let s = region_or_zone.trim();
    let ends_like_zone = {
        let mut rev = s.chars().rev();
        matches!((rev.next(), rev.next()), (Some(l), Some(d)) if l.is_ascii_lowercase() && d.is_ascii_digit())
    };
    if !ends_like_zone {
        return (s.to_string(), None);
    }
    // The region is every part up to the first numeric one (`us-west-2-lax-1a` → `us-west-2`).
    let mut parts = Vec::new();
    for part in s.split('-') {
        if part.starts_with(|c: char| c.is_ascii_digit()) {
            parts.push(part.trim_end_matches(|c: char| c.is_ascii_lowercase()));
            break;
        }
        parts.push(part);
    }
    (parts.join("-"), Some(s.to_string()))
}

impl AwsProvider {
    /// A provider for `region` (a region, or a zone such as `us-east-1a` to place machines
    /// there), with credentials and endpoint from the standard AWS sources.
    pub async fn new(region: &str) -> Result<AwsProvider, CloudError> {
        let (r, _) = split_zone(region);
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(r))
            .load()
            .await;
        AwsProvider::from_sdk_config(&config, region)
    }

    /// A provider from an already loaded SDK configuration; `region` (or zone) overrides its
    /// region.
    pub fn from_sdk_config(
        config: &aws_config::SdkConfig,
        region: &str,
    ) -> Result<AwsProvider, CloudError> {
        let (r, zone) = split_zone(region);
        if r.is_empty() {
            return Err(CloudError::Credentials {
                reason: "no region given".into(),
            });
        }
        if config.credentials_provider().is_none() {
            return Err(CloudError::Credentials {
                reason: "no credentials provider found".into(),
            });
        }
        // A hung endpoint must not hang a launch or its teardown: every call is bounded,
        // unless the caller's configuration sets its own bounds.
        let ours = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT);
        let timeouts = match config.timeout_config() {
            Some(given) => given.to_builder().take_unset_from(ours).build(),
            None => ours.build(),
        };
        let conf = aws_sdk_ec2::config::Builder::from(config)
            .region(aws_config::Region::new(r.clone()))
            .timeout_config(timeouts)
            .build();
        Ok(AwsProvider {
            client: aws_sdk_ec2::Client::from_conf(conf),
            region: r,
            zone,
            poll_interval: Duration::from_secs(2),
            destroy_timeout: Duration::from_secs(300),
            launch_settle: Duration::from_secs(10),
        })
    }

    /// Sets how often instance states are polled (default 2 s).
    pub fn with_poll_interval(mut self, interval: Duration) -> AwsProvider {
        self.poll_interval = interval;
        self
    }

    /// Sets how long `destroy` may take as a whole (default 5 min); what is not deleted by
    /// then is reported as left.
    pub fn with_destroy_timeout(mut self, timeout: Duration) -> AwsProvider {
        self.destroy_timeout = timeout;
        self
    }

    /// Sets how long teardown keeps looking for what a launch request whose answer never
    /// arrived created (default 10 s: EC2 may take a few seconds to list a new instance).
    pub fn with_launch_settle(mut self, settle: Duration) -> AwsProvider {
        self.launch_settle = settle;
        self
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }

    /// The EC2 client (for callers needing an operation this provider does not wrap).
    pub fn client(&self) -> &aws_sdk_ec2::Client {
        &self.client
    }

    async fn resolve_image(&self, query: &ImageQuery) -> Result<ResolvedImage, CloudError> {
        let fail = |reason: String| CloudError::Image {
            image: query.describe(),
            region: self.region.clone(),
            reason,
        };
        let mut req = self.client.describe_images();
        match query {
            ImageQuery::Id(id) => req = req.image_ids(id),
            _ => {
                for owner in query.owners() {
                    req = req.owners(owner);
                }
                for (name, values) in query.filters() {
                    req = req.filters(
                        Filter::builder()
                            .name(name)
                            .set_values(Some(values))
                            .build(),
                    );
                }
            }
        }
        let out = req.send().await.map_err(|e| fail(sdk_reason(&e)))?;
        let best = out
            .images()
            .iter()
            .filter(|i| i.image_id().is_some())
            .max_by_key(|i| query.rank(i.name().unwrap_or(""), i.creation_date().unwrap_or("")))
            .ok_or_else(|| fail("no such image".into()))?;
        Ok(ResolvedImage {
            id: best.image_id().unwrap_or_default().to_string(),
            root_device_name: best.root_device_name().map(str::to_string),
        })
    }

    /// The id of the shared group `cml-runners` in the VPC of `subnet` (or the default VPC),
    /// created without inbound rules when missing.
    async fn shared_security_group(&self, subnet: Option<&str>) -> Result<String, CloudError> {
        let fail = |reason: String| CloudError::SecurityGroup {
            name: SHARED_SECURITY_GROUP.into(),
            reason,
        };
        let vpc = match subnet {
            Some(subnet) => {
                let out = self
                    .client
                    .describe_subnets()
                    .subnet_ids(subnet)
                    .send()
                    .await
                    .map_err(|e| fail(format!("subnet {subnet}: {}", sdk_reason(&e))))?;
                out.subnets()
                    .first()
                    .and_then(|s| s.vpc_id())
                    .map(str::to_string)
                    .ok_or_else(|| fail(format!("subnet {subnet} not found")))?
            }
            None => {
                let out = self
                    .client
                    .describe_vpcs()
                    .filters(filter("isDefault", ["true"]))
                    .send()
                    .await
                    .map_err(|e| fail(sdk_reason(&e)))?;
                out.vpcs()
                    .first()
                    .and_then(|v| v.vpc_id())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        fail(format!(
                            "{} has no default VPC; pass --cloud-aws-subnet",
                            self.region
                        ))
                    })?
            }
        };
        if let Some(id) = self
            .find_group(SHARED_SECURITY_GROUP, &vpc)
            .await
            .map_err(fail)?
        {
            return Ok(id);
        }
        let created = self
            .client
            .create_security_group()
            .group_name(SHARED_SECURITY_GROUP)
            .description("cml runners: no inbound access, outbound only")
            .vpc_id(&vpc)
            .tag_specifications(tag_spec(
                ResourceType::SecurityGroup,
                &[
                    (OWNER_TAG.to_string(), SHARED_OWNER.to_string()),
                    ("Name".to_string(), SHARED_SECURITY_GROUP.to_string()),
                ],
            ))
            .send()
            .await;
        match created {
            Ok(out) => out
                .group_id()
                .map(str::to_string)
                .ok_or_else(|| fail("no group id in the answer".into())),
            // Another launcher created it in the meantime.
            Err(e) if e.code() == Some("InvalidGroup.Duplicate") => self
                .find_group(SHARED_SECURITY_GROUP, &vpc)
                .await
                .map_err(fail)?
                .ok_or_else(|| fail(sdk_reason(&e))),
            Err(e) => Err(fail(sdk_reason(&e))),
        }
    }

    async fn find_group(&self, name: &str, vpc: &str) -> Result<Option<String>, String> {
        let out = self
            .client
            .describe_security_groups()
            .filters(filter("group-name", [name]))
            .filters(filter("vpc-id", [vpc]))
            .send()
            .await
            .map_err(|e| sdk_reason(&e))?;
        let group = out.security_groups().first();
        if let Some(g) = group {
            if !g.ip_permissions().is_empty() {
                tracing::warn!(
                    group = g.group_id().unwrap_or_default(),
                    "the shared security group {name} has inbound rules; runners need none"
                );
            }
        }
        Ok(group.and_then(|g| g.group_id()).map(str::to_string))
    }

    /// `--cloud-aws-security-group`: an id (`sg-...`) as is, or a group name.
    async fn given_security_group(&self, group: &str) -> Result<String, CloudError> {
        if group.starts_with("sg-") {
            return Ok(group.to_string());
        }
        let fail = |reason: String| CloudError::SecurityGroup {
            name: group.to_string(),
            reason,
        };
        let out = self
            .client
            .describe_security_groups()
            .filters(filter("group-name", [group]))
            .send()
            .await
            .map_err(|e| fail(sdk_reason(&e)))?;
        match out.security_groups() {
            [g] => Ok(g.group_id().unwrap_or_default().to_string()),
            [] => Err(fail("no security group has this name".into())),
            _ => Err(fail(
                "several security groups have this name; pass its id (sg-...)".into(),
            )),
        }
    }

    /// The `RunInstances` request for `spec` (everything but sending it).
    pub fn run_instances_request(
        &self,
        spec: &MachineSpec,
        image_id: &str,
        root_device_name: Option<&str>,
        key_name: &str,
        security_group: &str,
    ) -> RunInstancesFluentBuilder {
        self.run_instances_in(
            spec,
            image_id,
            root_device_name,
            key_name,
            security_group,
            self.zone.as_deref(),
            &launch_id(&spec.name),
            0,
        )
    }

    /// [`AwsProvider::run_instances_request`] placed in `zone` (if any), tagging what it
    /// creates with [`LAUNCH_TAG`] = `launch`; `attempt` makes the client token differ from
    /// the earlier attempts' (whose parameters differed).
    #[allow(clippy::too_many_arguments)]
    fn run_instances_in(
        &self,
        spec: &MachineSpec,
        image_id: &str,
        root_device_name: Option<&str>,
        key_name: &str,
        security_group: &str,
        zone: Option<&str>,
        launch: &str,
        attempt: u32,
    ) -> RunInstancesFluentBuilder {
        let c = &spec.cloud;
        let name = format!("cml-{}", spec.name);
        let mut tags = spec.tags.clone();
        if !tags.iter().any(|(k, _)| k == "Name") {
            tags.push(("Name".into(), name));
        }
        tags.retain(|(k, _)| k != LAUNCH_TAG);
        tags.push((LAUNCH_TAG.into(), launch.into()));
        let mut req = self
            .client
            .run_instances()
            .min_count(1)
            .max_count(1)
            .instance_type(InstanceType::from(c.machine_type.as_str()))
            .image_id(image_id)
            .key_name(key_name)
            .security_group_ids(security_group)
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_put_response_hop_limit(1)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .build(),
            )
            .user_data(base64::engine::general_purpose::STANDARD.encode(&spec.user_data))
            .tag_specifications(tag_spec(ResourceType::Instance, &tags))
            .tag_specifications(tag_spec(ResourceType::Volume, &tags))
            // One token per attempt: the SDK's retries cannot start a second machine.
            .client_token(format!("{launch}.{attempt}"));
        if let Some(device) = root_device_name {
            req = req.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(c.hdd_size_gb.min(i32::MAX as u32) as i32)
                            .volume_type(VolumeType::Gp3)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            );
        }
        if let Some(subnet) = &c.aws_subnet {
            req = req.subnet_id(subnet);
        }
        if let Some(zone) = zone {
            req = req.placement(Placement::builder().availability_zone(zone).build());
        }
        if let Some(profile) = &c.permission_set {
            let p = IamInstanceProfileSpecification::builder();
            let p = if profile.starts_with("arn:") {
                p.arn(profile)
            } else {
                p.name(profile)
            };
            req = req.iam_instance_profile(p.build());
        }
        if c.spot {
            let mut options = SpotMarketOptions::builder()
                .spot_instance_type(SpotInstanceType::OneTime)
                .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate);
            if let Some(price) = c.spot_price {
                options = options.max_price(format!("{price}"));
            }
            req = req
                .instance_market_options(
                    InstanceMarketOptionsRequest::builder()
                        .market_type(MarketType::Spot)
                        .spot_options(options.build())
                        .build(),
                )
                .tag_specifications(tag_spec(ResourceType::SpotInstancesRequest, &tags));
        }
        req
    }

    /// Sends RunInstances. A spot launch refused for capacity or price is tried again in the
    /// region's other zones (unless a subnet or a zone pins it), then, with
    /// `--cloud-spot-fallback`, on demand; each change is logged with its reason.
    ///
    /// Each request is recorded in `created` before it is sent, and marked answered once an
    /// answer says what it made (the caller records that) or that it made nothing.
    async fn launch_with_fallback(
        &self,
        spec: &MachineSpec,
        image: &ResolvedImage,
        key_name: &str,
        security_group: &str,
        created: &Created,
        launch: &str,
    ) -> Result<
        (
            aws_sdk_ec2::operation::run_instances::RunInstancesOutput,
            bool,
        ),
        CloudError,
    > {
        let c = &spec.cloud;
        let send = |spec: &MachineSpec, zone: Option<&str>, attempt: u32| {
            let req = self.run_instances_in(
                spec,
                &image.id,
                image.root_device_name.as_deref(),
                key_name,
                security_group,
                zone,
                launch,
                attempt,
            );
            created.launch_sent(launch);
            async move {
                let res = req.send().await;
                if let Err(e) = &res {
                    if refused(e) {
                        created.launch_answered(launch);
                    }
                }
                res
            }
        };
        let launch_err = |reason: String| CloudError::Launch {
            machine_type: c.machine_type.clone(),
            region: self.region.clone(),
            reason,
        };
        let first = send(spec, self.zone.as_deref(), 0).await;
        let capacity = |e: &aws_sdk_ec2::error::SdkError<_, _>| {
            use aws_sdk_ec2::error::ProvideErrorMetadata;
            e.code().is_some_and(|code| SPOT_ERRORS.contains(&code))
        };
        let mut last = match first {
            Ok(out) => return Ok((out, c.spot)),
            Err(e) if c.spot && capacity(&e) => sdk_reason(&e),
            Err(e) => return Err(launch_err(sdk_reason(&e))),
        };
        let mut attempt = 0;
        let pinned = c.aws_subnet.is_some() || self.zone.is_some();
        if !pinned {
            for zone in self.zones().await.map_err(launch_err)? {
                attempt += 1;
                tracing::warn!(
                    "no spot capacity for {} ({last}); trying zone {zone}",
                    c.machine_type
                );
                match send(spec, Some(&zone), attempt).await {
                    Ok(out) => {
                        tracing::info!("spot capacity found in {zone}");
                        return Ok((out, true));
                    }
                    Err(e) if capacity(&e) => last = format!("{zone}: {}", sdk_reason(&e)),
                    Err(e) => return Err(launch_err(sdk_reason(&e))),
                }
            }
        }
        if !c.spot_fallback {
            return Err(CloudError::Spot {
                machine_type: c.machine_type.clone(),
                region: self.region.clone(),
                reason: last,
            });
        }
        tracing::warn!(
            "no spot capacity for {} in {} ({last}); launching on demand (--cloud-spot-fallback)",
            c.machine_type,
            self.region
        );
        let mut on_demand = spec.clone();
        on_demand.cloud.spot = false;
        send(&on_demand, self.zone.as_deref(), attempt + 1)
            .await
            .map(|out| (out, false))
            .map_err(|e| launch_err(sdk_reason(&e)))
    }

    /// The region's available zones.
    async fn zones(&self) -> Result<Vec<String>, String> {
        let out = self
            .client
            .describe_availability_zones()
            .filters(filter("state", ["available"]))
            .send()
            .await
            .map_err(|e| sdk_reason(&e))?;
        let mut zones: Vec<String> = out
            .availability_zones()
            .iter()
            .filter_map(|z| z.zone_name().map(String::from))
            .collect();
        zones.sort();
        Ok(zones)
    }

    async fn describe_instance(&self, id: &str) -> Result<Option<Instance>, String> {
        match self
            .client
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(id))
                .cloned()),
            Err(e) if is_gone(e.code()) => Ok(None),
            Err(e) => Err(sdk_reason(&e)),
        }
    }

    fn machine(&self, i: &Instance) -> Machine {
        Machine {
            id: i.instance_id().unwrap_or_default().to_string(),
            region: self.region.clone(),
            zone: i
                .placement()
                .and_then(|p| p.availability_zone())
                .map(str::to_string)
                .or_else(|| self.zone.clone()),
            machine_type: i
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            spot: i.instance_lifecycle() == Some(&InstanceLifecycleType::Spot),
            state: state_name(i),
            public_ip: i.public_ip_address().map(str::to_string),
            private_ip: i.private_ip_address().map(str::to_string),
        }
    }

    /// Asks EC2 to terminate `ids` (one call; one call per instance when that fails, so one
    /// bad instance does not keep the others running), recording each outcome in `created`.
    async fn terminate(&self, created: &Created, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let batch = self
            .client
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await;
        let e = match batch {
            Ok(_) => {
                for id in ids {
                    created.deleting(&Resource::Instance(id.clone()));
                }
                return;
            }
            Err(e) => e,
        };
        if let [id] = ids {
            let r = Resource::Instance(id.clone());
            if is_gone(e.code()) {
                created.remove(&r);
            } else {
                self.failed(created, &r, sdk_reason(&e));
            }
            return;
        }
        tracing::debug!(reason = %sdk_reason(&e), "terminating the instances together failed; one by one");
        for id in ids {
            let r = Resource::Instance(id.clone());
            match self
                .client
                .terminate_instances()
                .instance_ids(id)
                .send()
                .await
            {
                Ok(_) => created.deleting(&r),
                Err(e) if is_gone(e.code()) => created.remove(&r),
                Err(e) => self.failed(created, &r, sdk_reason(&e)),
            }
        }
    }

    fn failed(&self, created: &Created, r: &Resource, reason: String) {
        tracing::warn!(resource = %r, %reason, "teardown step failed; continuing");
        created.failed(r, &reason);
    }

    /// Cancels a spot request unless it is already gone, cancelled or closed (cancelling
    /// an unknown request is an error on AWS, and a server error on some emulators).
    async fn cancel_spot_request(&self, created: &Created, id: &str) {
        let r = Resource::SpotRequest(id.to_string());
        let described = self
            .client
            .describe_spot_instance_requests()
            .spot_instance_request_ids(id)
            .send()
            .await;
        let open = match described {
            Ok(out) => out
                .spot_instance_requests()
                .iter()
                .filter(|r| r.spot_instance_request_id() == Some(id))
                .any(|r| {
                    !matches!(
                        r.state().map(|s| s.as_str()),
                        Some("cancelled" | "closed" | "failed")
                    )
                }),
            Err(e) if is_gone(e.code()) => false,
            Err(e) => return self.failed(created, &r, sdk_reason(&e)),
        };
        if !open {
            return created.remove(&r);
        }
        match self
            .client
            .cancel_spot_instance_requests()
            .spot_instance_request_ids(id)
            .send()
            .await
        {
            Ok(_) => created.remove(&r),
            Err(e) if is_gone(e.code()) => created.remove(&r),
            Err(e) => self.failed(created, &r, sdk_reason(&e)),
        }
    }

    async fn delete_key_pair(&self, created: &Created, name: &str) {
        let r = Resource::KeyPair(name.to_string());
        match self.client.delete_key_pair().key_name(name).send().await {
            Ok(_) => created.remove(&r),
            Err(e) if is_gone(e.code()) => created.remove(&r),
            Err(e) => self.failed(created, &r, sdk_reason(&e)),
        }
    }

    async fn delete_volume(&self, created: &Created, id: &str) {
        let r = Resource::Volume(id.to_string());
        match self.client.delete_volume().volume_id(id).send().await {
            Ok(_) => created.remove(&r),
            Err(e) if is_gone(e.code()) => created.remove(&r),
            Err(e) => self.failed(created, &r, sdk_reason(&e)),
        }
    }

    async fn delete_security_group(&self, created: &Created, id: &str) {
        let r = Resource::SecurityGroup(id.to_string());
        let attempts = 10;
        for attempt in 1..=attempts {
            match self
                .client
                .delete_security_group()
                .group_id(id)
                .send()
                .await
            {
                Ok(_) => return created.remove(&r),
                Err(e) if is_gone(e.code()) => return created.remove(&r),
                // Instances using it are still shutting down.
                Err(e) if e.code() == Some("DependencyViolation") && attempt < attempts => {
                    tokio::time::sleep(self.poll_interval).await;
                }
                Err(e) => return self.failed(created, &r, sdk_reason(&e)),
            }
        }
    }

    /// Finds what the launch request tagged `launch` created, records it and deletes it.
    /// A request that was answered is looked up once (for a spot request its answer may not
    /// have named); one whose answer never arrived is looked up until something shows or
    /// the settle time has passed, as EC2 may list a new instance only seconds later.
    async fn reap_launch(&self, created: &Created, launch: &str, answered: bool) {
        // Half the teardown budget at most: an answer is wanted before the deadline.
        let settle = Instant::now()
            + if answered {
                Duration::ZERO
            } else {
                self.launch_settle.min(self.destroy_timeout / 2)
            };
        loop {
            match self.launched_by(launch).await {
                Ok((instances, requests)) => {
                    let found = !instances.is_empty() || !requests.is_empty();
                    if found {
                        tracing::info!(
                            launch,
                            ?instances,
                            ?requests,
                            "found what the launch request created"
                        );
                    }
                    for id in &instances {
                        created.push(Resource::Instance(id.clone()));
                    }
                    for id in &requests {
                        created.push(Resource::SpotRequest(id.clone()));
                    }
                    if found || Instant::now() >= settle {
                        created.launch_resolved(launch);
                        let cancels = async {
                            for id in &requests {
                                self.cancel_spot_request(created, id).await;
                            }
                        };
                        tokio::join!(self.terminate(created, &instances), cancels);
                        return;
                    }
                }
                Err(reason) => {
                    tracing::warn!(launch, %reason, "looking up what a launch request created failed");
                    if Instant::now() >= settle {
                        // Left in the ledger: reported as unknown.
                        return;
                    }
                }
            }
            tokio::time::sleep(self.poll_interval.min(Duration::from_secs(1))).await;
        }
    }

    /// The instances (not terminated) and open spot requests tagged [`LAUNCH_TAG`] = `launch`.
    async fn launched_by(&self, launch: &str) -> Result<(Vec<String>, Vec<String>), String> {
        let tag = format!("tag:{LAUNCH_TAG}");
        let mut instances = Vec::new();
        let mut pages = self
            .client
            .describe_instances()
            .filters(filter(&tag, [launch]))
            .filters(filter(
                "instance-state-name",
                ["pending", "running", "stopping", "stopped"],
            ))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_reason(&e))?;
            instances.extend(
                page.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter_map(|i| i.instance_id().map(String::from)),
            );
        }
        let out = self
            .client
            .describe_spot_instance_requests()
            .filters(filter(&tag, [launch]))
            .filters(filter("state", ["open", "active"]))
            .send()
            .await
            .map_err(|e| sdk_reason(&e))?;
        let requests = out
            .spot_instance_requests()
            .iter()
            .filter_map(|r| r.spot_instance_request_id().map(String::from))
            .collect();
        Ok((instances, requests))
    }

    /// Waits until the instances being terminated are gone (needed before deleting a
    /// security group they use); bounded by the caller.
    async fn wait_terminated(&self, created: &Created) {
        loop {
            let terminating: Vec<String> = created
                .left()
                .into_iter()
                .filter(|l| l.deleting)
                .filter_map(|l| match l.resource {
                    Resource::Instance(id) => Some(id),
                    _ => None,
                })
                .collect();
            if terminating.is_empty() {
                return;
            }
            for id in &terminating {
                match self.describe_instance(id).await {
                    Ok(Some(i)) if state_name(&i) != "terminated" => {}
                    Ok(_) => created.remove(&Resource::Instance(id.clone())),
                    Err(reason) => {
                        tracing::debug!(instance = %id, %reason, "describing a terminating instance failed");
                    }
                }
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// The teardown itself, unbounded (see [`Provider::destroy`]).
    async fn destroy_all(&self, created: &Created) {
        let list = created.list();
        let of = |f: fn(&Resource) -> Option<&String>| -> Vec<String> {
            list.iter().filter_map(f).cloned().collect()
        };
        let instances = of(|r| match r {
            Resource::Instance(id) => Some(id),
            _ => None,
        });
        let requests = of(|r| match r {
            Resource::SpotRequest(id) => Some(id),
            _ => None,
        });
        let keys = of(|r| match r {
            Resource::KeyPair(name) => Some(name),
            _ => None,
        });
        let volumes = of(|r| match r {
            Resource::Volume(id) => Some(id),
            _ => None,
        });
        let launches = created.launches();
        // 1. Every deletion that depends on nothing, at once.
        let cancels = async {
            for id in &requests {
                self.cancel_spot_request(created, id).await;
            }
        };
        let key_pairs = async {
            for name in &keys {
                self.delete_key_pair(created, name).await;
            }
        };
        let disks = async {
            for id in &volumes {
                self.delete_volume(created, id).await;
            }
        };
        let lookups = async {
            for (launch, answered) in &launches {
                self.reap_launch(created, launch, *answered).await;
            }
        };
        tokio::join!(
            self.terminate(created, &instances),
            cancels,
            key_pairs,
            disks,
            lookups
        );
        // 2. Security groups, once the instances using them are gone.
        let groups = of(|r| match r {
            Resource::SecurityGroup(id) => Some(id),
            _ => None,
        });
        if !groups.is_empty() {
            self.wait_terminated(created).await;
            for id in &groups {
                self.delete_security_group(created, id).await;
            }
        }
    }
}

/// The error for what teardown left, or `Ok` when nothing but terminating instances is.
fn teardown_outcome(
    region: &str,
    created: &Created,
    timeout: Option<Duration>,
) -> Result<(), CloudError> {
    let left = created.left();
    let unknown: Vec<String> = created
        .launches()
        .into_iter()
        .map(|(tag, _)| {
            format!(
                "  - whatever the launch request tagged {LAUNCH_TAG}={tag} created (not looked up)"
            )
        })
        .collect();
    let terminating: Vec<&crate::Left> = left.iter().filter(|l| l.deleting).collect();
    if !terminating.is_empty() {
        tracing::info!(
            instances = ?terminating.iter().map(|l| l.resource.to_string()).collect::<Vec<_>>(),
            "termination accepted; EC2 finishes it on its own"
        );
    }
    if unknown.is_empty() && left.iter().all(|l| l.deleting && l.failure.is_none()) {
        return Ok(());
    }
    // Instances whose termination was accepted are going: logged above, not listed.
    let mut lines: Vec<String> = left
        .iter()
        .filter(|l| !l.deleting || l.failure.is_some())
        .map(|l| format!("  - {l}"))
        .collect();
    lines.extend(unknown);
    Err(CloudError::Incomplete {
        region: region.to_string(),
        why: match timeout {
            Some(t) => format!(" within {} s", t.as_secs_f64().ceil() as u64),
            None => String::new(),
        },
        left: lines.join("\n"),
    })
}

struct ResolvedImage {
    id: String,
    root_device_name: Option<String>,
}

fn state_name(i: &Instance) -> String {
    i.state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn filter<const N: usize>(name: &str, values: [&str; N]) -> Filter {
    let mut f = Filter::builder().name(name);
    for v in values {
        f = f.values(v);
    }
    f.build()
}

fn tag_spec(kind: ResourceType, tags: &[(String, String)]) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(kind);
    for (k, v) in tags {
        b = b.tags(Tag::builder().key(k).value(v).build());
    }
    b.build()
}

fn owner_of(tags: &[Tag]) -> Option<String> {
    tag_of(tags, OWNER_TAG)
}

fn tag_of(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .map(|t| t.value().unwrap_or_default().to_string())
}

/// A value unique to one launch of runner `name`: its [`LAUNCH_TAG`] value and the stem of
/// its client tokens (at most 60 characters, so `stem.N` fits EC2's 64).
fn launch_id(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let unique = format!(
        "-{:x}-{nanos:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut stem = format!("cml-{name}");
    stem.retain(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    stem.truncate(60usize.saturating_sub(unique.len()));
    stem + &unique
}

/// True when EC2 answered a request with a refusal (a 4xx error): it created nothing. Any
/// other failure (a timeout, a dropped connection, a server error) leaves it unknown.
fn refused<E>(e: &aws_sdk_ec2::error::SdkError<E>) -> bool {
    matches!(e, aws_sdk_ec2::error::SdkError::ServiceError(se) if se.raw().status().is_client_error())
}

/// Checks the user-data against EC2's limit before anything is created.
pub fn check_user_data(spec: &MachineSpec) -> Result<(), CloudError> {
    let bytes = spec.user_data.len();
    if bytes <= USER_DATA_LIMIT {
        return Ok(());
    }
    let user = spec
        .cloud
        .startup_script
        .as_ref()
        .map_or(0, |s| s.len())
        .min(bytes);
    let (cause, hint) = if user > 0 {
        (
            format!(
                ": --cloud-startup-script makes {user} bytes of it, cml's own part {} bytes",
                bytes - user
            ),
            "shorten --cloud-startup-script, for example by having it download the longer part",
        )
    } else {
        (
            String::new(),
            "pass fewer or shorter runner options and forwarded variables (labels, --docker-volumes, --cloud-metadata)",
        )
    };
    Err(CloudError::UserDataTooLarge {
        bytes,
        limit: USER_DATA_LIMIT,
        cause,
        hint: hint.to_string(),
    })
}

/// True for error codes meaning the resource does not exist (any more). Malformed ids
/// cannot name an existing resource either (and some emulators answer NotFound for them).
fn is_gone(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.ends_with("NotFound") || c.ends_with(".Malformed"))
}

/// The AWS error code and message; without a code, the HTTP status (a body without an
/// error code is not quoted) or the chain of the transport error.
fn sdk_reason<E>(e: &aws_sdk_ec2::error::SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_ec2::error::SdkError;
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => match e {
            SdkError::ServiceError(se) => format!(
                "HTTP {} from EC2 without an error code",
                se.raw().status().as_u16()
            ),
            other => format!("{}", DisplayErrorContext(other)),
        },
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn region(&self) -> &str {
        AwsProvider::region(self)
    }

    async fn create(&self, spec: &MachineSpec, created: &Created) -> Result<Machine, CloudError> {
        check_user_data(spec)?;
        let c = &spec.cloud;
        let key_name = format!("cml-{}", spec.name);
        let launch = launch_id(&spec.name);
        // Everything that can fail without creating anything comes first.
        let public_key = match &spec.ssh_private_key {
            Some(private) => Some(sshkey::public_key_openssh(private.expose())?),
            None => None,
        };
        let query = ImageQuery::new(c.image.as_deref(), &c.machine_type);
        let image = self.resolve_image(&query).await?;
        let security_group = match &c.aws_security_group {
            Some(group) => self.given_security_group(group).await?,
            None => self.shared_security_group(c.aws_subnet.as_deref()).await?,
        };

        let key_tags = tag_spec(ResourceType::KeyPair, &spec.tags);
        let key_fail = |e: String| CloudError::KeyPair {
            name: key_name.clone(),
            reason: e,
        };
        match public_key {
            Some(public) => {
                self.client
                    .import_key_pair()
                    .key_name(&key_name)
                    .public_key_material(aws_sdk_ec2::primitives::Blob::new(public.into_bytes()))
                    .tag_specifications(key_tags)
                    .send()
                    .await
                    .map_err(|e| key_fail(sdk_reason(&e)))?;
            }
            None => {
                // The private key is dropped: the machine needs no inbound SSH.
                self.client
                    .create_key_pair()
                    .key_name(&key_name)
                    .tag_specifications(key_tags)
                    .send()
                    .await
                    .map_err(|e| key_fail(sdk_reason(&e)))?;
            }
        }
        created.push(Resource::KeyPair(key_name.clone()));

        let (out, spot) = self
            .launch_with_fallback(spec, &image, &key_name, &security_group, created, &launch)
            .await?;
        let launch_fail = |reason: String| CloudError::Launch {
            machine_type: c.machine_type.clone(),
            region: self.region.clone(),
            reason,
        };
        // Record whatever the answer names before anything else.
        for i in out.instances() {
            if let Some(id) = i.instance_id() {
                created.push(Resource::Instance(id.to_string()));
            }
            if let Some(request) = i.spot_instance_request_id() {
                created.push(Resource::SpotRequest(request.to_string()));
            }
        }
        created.launch_answered(&launch);
        let instance = out
            .instances()
            .first()
            .cloned()
            .ok_or_else(|| launch_fail("the answer names no instance".into()))?;
        let id = instance.instance_id().unwrap_or_default().to_string();
        if instance.spot_instance_request_id().is_none() && spot {
            // Not always in the RunInstances answer: ask again, briefly.
            for attempt in 0..3 {
                if attempt > 0 {
                    tokio::time::sleep(self.poll_interval).await;
                }
                if let Ok(Some(i)) = self.describe_instance(&id).await {
                    if let Some(request) = i.spot_instance_request_id() {
                        created.push(Resource::SpotRequest(request.to_string()));
                        break;
                    }
                    if i.instance_lifecycle() == Some(&InstanceLifecycleType::Spot) {
                        // A spot instance without a request id: nothing more will come.
                        break;
                    }
                }
            }
        }
        let mut machine = self.machine(&instance);
        if machine.machine_type.is_empty() {
            machine.machine_type = c.machine_type.clone();
        }
        machine.spot = machine.spot || spot;
        tracing::info!(
            instance = %machine.id,
            region = %self.region,
            machine_type = %machine.machine_type,
            spot = machine.spot,
            "instance launched"
        );
        Ok(machine)
    }

    async fn wait_running(
        &self,
        machine: &Machine,
        timeout: Duration,
    ) -> Result<Machine, CloudError> {
        let deadline = Instant::now() + timeout;
        let mut last = machine.state.clone();
        loop {
            match self.describe_instance(&machine.id).await {
                // Just created: the instance may not be visible yet.
                Ok(None) => last = "not visible yet".into(),
                Ok(Some(i)) => {
                    last = state_name(&i);
                    match i.state().and_then(|s| s.name()) {
                        Some(InstanceStateName::Running) => {
                            let mut m = self.machine(&i);
                            m.spot = m.spot || machine.spot;
                            return Ok(m);
                        }
                        Some(
                            InstanceStateName::ShuttingDown
                            | InstanceStateName::Terminated
                            | InstanceStateName::Stopping
                            | InstanceStateName::Stopped,
                        ) => {
                            let reason = i
                                .state_reason()
                                .and_then(|r| r.message())
                                .or_else(|| i.state_transition_reason())
                                .unwrap_or("no reason given");
                            return Err(CloudError::Wait {
                                id: machine.id.clone(),
                                reason: format!("the instance is {last}: {reason}"),
                            });
                        }
                        // pending, or a state this SDK does not know yet.
                        _ => {}
                    }
                }
                Err(reason) => {
                    tracing::debug!(instance = %machine.id, %reason, "describing the instance failed; retrying");
                }
            }
            if Instant::now() >= deadline {
                return Err(CloudError::WaitTimeout {
                    id: machine.id.clone(),
                    seconds: timeout.as_secs(),
                    state: last,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(self.poll_interval.min(left)).await;
        }
    }

    async fn destroy(&self, created: &Created) -> Result<(), CloudError> {
        let timed_out = tokio::time::timeout(self.destroy_timeout, self.destroy_all(created))
            .await
            .is_err();
        teardown_outcome(
            &self.region,
            created,
            timed_out.then_some(self.destroy_timeout),
        )
    }

    async fn list_owned(&self) -> Result<Vec<OwnedResource>, CloudError> {
        let fail = |reason: String| CloudError::List {
            region: self.region.clone(),
            reason,
        };
        let mut found = Vec::new();

        let mut pages = self
            .client
            .describe_instances()
            .filters(filter("tag-key", [OWNER_TAG]))
            .filters(filter(
                "instance-state-name",
                ["pending", "running", "shutting-down", "stopping", "stopped"],
            ))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| fail(sdk_reason(&e)))?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let (Some(id), Some(owner)) = (i.instance_id(), owner_of(i.tags())) else {
                    continue;
                };
                let state = state_name(i);
                if state == "terminated" {
                    continue;
                }
                found.push(OwnedResource {
                    resource: Resource::Instance(id.to_string()),
                    owner,
                    scope: tag_of(i.tags(), SCOPE_TAG),
                    state: Some(state),
                    age: i.launch_time().and_then(age_of),
                    used_by: None,
                });
            }
        }

        let mut pages = self
            .client
            .describe_spot_instance_requests()
            .filters(filter("tag-key", [OWNER_TAG]))
            .filters(filter("state", ["open", "active"]))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| fail(sdk_reason(&e)))?;
            for r in page.spot_instance_requests() {
                let (Some(id), Some(owner)) = (r.spot_instance_request_id(), owner_of(r.tags()))
                else {
                    continue;
                };
                found.push(OwnedResource {
                    resource: Resource::SpotRequest(id.to_string()),
                    owner,
                    scope: tag_of(r.tags(), SCOPE_TAG),
                    state: r.state().map(|s| s.as_str().to_string()),
                    age: r.create_time().and_then(age_of),
                    used_by: None,
                });
            }
        }

        let keys = self
            .client
            .describe_key_pairs()
            .filters(filter("tag-key", [OWNER_TAG]))
            .send()
            .await
            .map_err(|e| fail(sdk_reason(&e)))?;
        for k in keys.key_pairs() {
            let (Some(name), Some(owner)) = (k.key_name(), owner_of(k.tags())) else {
                continue;
            };
            found.push(OwnedResource {
                resource: Resource::KeyPair(name.to_string()),
                owner,
                scope: tag_of(k.tags(), SCOPE_TAG),
                state: None,
                age: k.create_time().and_then(age_of),
                used_by: None,
            });
        }

        let mut groups = Vec::new();
        let mut pages = self
            .client
            .describe_security_groups()
            .filters(filter("tag-key", [OWNER_TAG]))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| fail(sdk_reason(&e)))?;
            for g in page.security_groups() {
                let (Some(id), Some(owner)) = (g.group_id(), owner_of(g.tags())) else {
                    continue;
                };
                groups.push(OwnedResource {
                    resource: Resource::SecurityGroup(id.to_string()),
                    owner,
                    scope: tag_of(g.tags(), SCOPE_TAG),
                    state: None,
                    age: None,
                    used_by: None,
                });
            }
        }
        // Which instances (anyone's, tagged or not) use each group.
        if !groups.is_empty() {
            let ids: Vec<String> = groups
                .iter()
                .filter_map(|g| match &g.resource {
                    Resource::SecurityGroup(id) => Some(id.clone()),
                    _ => None,
                })
                .collect();
            let mut users: std::collections::HashMap<String, Vec<String>> =
                ids.iter().map(|id| (id.clone(), Vec::new())).collect();
            let mut pages = self
                .client
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name("instance.group-id")
                        .set_values(Some(ids))
                        .build(),
                )
                .filters(filter(
                    "instance-state-name",
                    ["pending", "running", "shutting-down", "stopping", "stopped"],
                ))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| fail(sdk_reason(&e)))?;
                for i in page.reservations().iter().flat_map(|r| r.instances()) {
                    let Some(id) = i.instance_id() else { continue };
                    for g in i.security_groups() {
                        if let Some(list) = g.group_id().and_then(|g| users.get_mut(g)) {
                            list.push(id.to_string());
                        }
                    }
                }
            }
            for g in &mut groups {
                if let Resource::SecurityGroup(id) = &g.resource {
                    g.used_by = users.remove(id);
                }
            }
            found.extend(groups);
        }

        let mut pages = self
            .client
            .describe_volumes()
            .filters(filter("tag-key", [OWNER_TAG]))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| fail(sdk_reason(&e)))?;
            for v in page.volumes() {
                let (Some(id), Some(owner)) = (v.volume_id(), owner_of(v.tags())) else {
                    continue;
                };
                found.push(OwnedResource {
                    resource: Resource::Volume(id.to_string()),
                    owner,
                    scope: tag_of(v.tags(), SCOPE_TAG),
                    state: v.state().map(|s| s.as_str().to_string()),
                    age: v.create_time().and_then(age_of),
                    used_by: None,
                });
            }
        }
        Ok(found)
    }

    async fn console_output(&self, machine: &Machine) -> Result<Option<String>, CloudError> {
        let out = self
            .client
            .get_console_output()
            .instance_id(&machine.id)
            .latest(true)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            // `latest` is not offered on every instance type: ask without it.
            Err(e) if e.code() == Some("UnsupportedOperation") => self
                .client
                .get_console_output()
                .instance_id(&machine.id)
                .send()
                .await
                .map_err(|e| CloudError::Console {
                    id: machine.id.clone(),
                    reason: sdk_reason(&e),
                })?,
            Err(e) => {
                return Err(CloudError::Console {
                    id: machine.id.clone(),
                    reason: sdk_reason(&e),
                })
            }
        };
        let Some(encoded) = out.output().filter(|s| !s.trim().is_empty()) else {
            return Ok(None);
        };
        let text = match base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => encoded.to_string(),
        };
        Ok((!text.trim().is_empty()).then_some(text))
    }
}

/// Time elapsed since an AWS timestamp (zero for one in the future).
fn age_of(t: &aws_sdk_ec2::primitives::DateTime) -> Option<Duration> {
    let created = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.secs()).ok()?);
    Some(
        std::time::SystemTime::now()
            .duration_since(created)
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_split_into_region_and_zone() {
        assert_eq!(
            split_zone("us-east-1a"),
            ("us-east-1".into(), Some("us-east-1a".into()))
        );
        assert_eq!(split_zone("us-west-1"), ("us-west-1".into(), None));
        assert_eq!(split_zone("eu-north-1"), ("eu-north-1".into(), None));
        assert_eq!(
            split_zone("us-gov-west-1b"),
            ("us-gov-west-1".into(), Some("us-gov-west-1b".into()))
        );
        assert_eq!(
            split_zone("us-west-2-lax-1a"),
            ("us-west-2".into(), Some("us-west-2-lax-1a".into()))
        );
    }

    fn offline_provider() -> AwsProvider {
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        AwsProvider {
            client: aws_sdk_ec2::Client::from_conf(conf),
            region: "us-east-1".into(),
            zone: Some("us-east-1a".into()),
            poll_interval: Duration::from_millis(10),
            destroy_timeout: Duration::from_secs(1),
            launch_settle: Duration::from_secs(1),
        }
    }

    fn spec(spot: bool, price: Option<f64>) -> MachineSpec {
        MachineSpec {
            name: "r1".into(),
            cloud: cml_core::cloud::CloudSpec {
                cloud: cml_core::cloud::Cloud::Aws,
                region: "us-east-1a".into(),
                machine_type: "m5.2xlarge".into(),
                gpu: None,
                hdd_size_gb: 35,
                spot,
                spot_price: price,
                spot_fallback: false,
                permission_set: Some("arn:aws:iam::123456789012:instance-profile/p".into()),
                metadata: vec![],
                startup_script: None,
                image: None,
                aws_security_group: None,
                aws_subnet: Some("subnet-1".into()),
                kubernetes_node_selector: vec![],
                kubernetes_namespace: None,
            },
            user_data: "echo hi".into(),
            tags: vec![(OWNER_TAG.into(), "r1".into())],
            ssh_private_key: None,
            runner: Default::default(),
            max_lifetime: None,
        }
    }

    #[test]
    fn the_run_request_carries_spot_options_and_placement() {
        let p = offline_provider();
        let s = spec(true, Some(0.5));
        let req = p.run_instances_request(&s, "ami-1", Some("/dev/sda1"), "cml-r1", "sg-1");
        let input = req.as_input();
        let market = input.get_instance_market_options().as_ref().unwrap();
        assert_eq!(market.market_type(), Some(&MarketType::Spot));
        let spot = market.spot_options().unwrap();
        assert_eq!(spot.max_price(), Some("0.5"));
        assert_eq!(spot.spot_instance_type(), Some(&SpotInstanceType::OneTime));
        assert_eq!(
            input
                .get_placement()
                .as_ref()
                .and_then(|p| p.availability_zone()),
            Some("us-east-1a")
        );
        assert_eq!(input.get_subnet_id().as_deref(), Some("subnet-1"));
        let profile = input.get_iam_instance_profile().as_ref().unwrap();
        assert_eq!(
            profile.arn(),
            Some("arn:aws:iam::123456789012:instance-profile/p")
        );
        assert_eq!(profile.name(), None);
        let kinds: Vec<_> = input
            .get_tag_specifications()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.resource_type().cloned())
            .collect();
        assert!(kinds.contains(&ResourceType::SpotInstancesRequest));
        assert!(input.get_client_token().is_some());

        let s = spec(true, None);
        let req = p.run_instances_request(&s, "ami-1", None, "cml-r1", "sg-1");
        let input = req.as_input();
        let market = input.get_instance_market_options().as_ref().unwrap();
        assert_eq!(market.spot_options().unwrap().max_price(), None);
        assert!(input.get_block_device_mappings().is_none());

        let mut s = spec(false, None);
        s.cloud.permission_set = Some("by-name".into());
        let req = p.run_instances_request(&s, "ami-1", Some("/dev/xvda"), "cml-r1", "sg-1");
        let input = req.as_input();
        assert!(input.get_instance_market_options().is_none());
        assert_eq!(
            input.get_iam_instance_profile().as_ref().unwrap().name(),
            Some("by-name")
        );
        assert_eq!(
            input.get_user_data().as_deref(),
            Some(
                base64::engine::general_purpose::STANDARD
                    .encode("echo hi")
                    .as_str()
            )
        );
    }

    #[test]
    fn gone_codes() {
        assert!(is_gone(Some("InvalidInstanceID.NotFound")));
        assert!(is_gone(Some("InvalidKeyPair.NotFound")));
        assert!(is_gone(Some("InvalidGroupId.Malformed")));
        assert!(!is_gone(Some("DependencyViolation")));
        assert!(!is_gone(None));
    }

    #[test]
    fn launch_ids_are_bounded_and_unique() {
        let a = launch_id(&"x".repeat(100));
        assert!(format!("{a}.99").len() <= 64, "{a}");
        assert_ne!(launch_id("r"), launch_id("r"));
    }

    #[test]
    fn user_data_over_the_limit_is_refused_naming_the_startup_script() {
        let mut s = spec(false, None);
        s.user_data = "x".repeat(USER_DATA_LIMIT);
        check_user_data(&s).unwrap();
        let script = "y".repeat(10_000);
        s.cloud.startup_script = Some(script.clone());
        s.user_data = format!("{}{script}", "x".repeat(USER_DATA_LIMIT - 9_999));
        let e = check_user_data(&s).unwrap_err().to_string();
        assert!(e.contains("16385 bytes"), "{e}");
        assert!(
            e.contains("--cloud-startup-script makes 10000 bytes"),
            "{e}"
        );
        assert!(
            e.contains("hint:") && e.contains("nothing was created"),
            "{e}"
        );
    }
}
