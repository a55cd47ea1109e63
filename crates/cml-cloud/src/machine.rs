//! The machine side: what a runner machine knows about the cloud it runs on, behind one
//! trait, chosen from the cloud its launcher wrote down (`CML_MACHINE_CLOUD`).
//!
//! Contract, for every cloud: [`Host::delete_self`] removes this machine and everything that
//! bills with it (its disk), using only the machine's own identity (never the user's
//! credentials); when it fails, the caller powers the machine off, which on every cloud
//! either removes it (AWS: shutdown behaviour `terminate`) or stops it in a state
//! `cml runner cleanup` judges orphaned. The hard lifetime is not here: the startup script
//! arms it before anything else, and where the cloud has its own (GCP `maxRunDuration`) the
//! launcher sets that too.

use crate::interruption::Watcher;
use crate::CloudError;
use async_trait::async_trait;

/// The cloud this process runs on, from the machine's side.
#[async_trait]
pub trait Host: Send + Sync {
    /// Short name (`aws`).
    fn cloud(&self) -> &'static str;

    /// Deletes this machine; returns its id. See the module contract.
    async fn delete_self(&self) -> Result<String, CloudError>;

    /// The watch for the cloud's notices that it takes the machine away, if it gives any.
    fn interruption_watcher(&self) -> Option<Watcher> {
        Watcher::for_cloud(self.cloud())
    }
}

/// The host for `cloud` (`aws`, ...); `None` for a cloud this build has no machine side for.
/// `credential` reads what the launcher put in the machine's root-only credentials file:
/// a cloud whose launcher may hand the machine credentials of its own (Azure's
/// `--cloud-azure-credentials-on-machine`) uses them, else the machine's own identity.
pub fn host_for(cloud: &str, credential: &dyn Fn(&str) -> Option<String>) -> Option<Box<dyn Host>> {
    let _ = credential;
    match cloud {
        #[cfg(feature = "aws")]
        "aws" => Some(Box::new(AwsHost)),
        #[cfg(feature = "gcp")]
        "gcp" => Some(Box::new(crate::gcp::GcpHost::from_env())),
        #[cfg(feature = "azure")]
        "azure" => {
            let host = crate::azure::AzureHost::from_env();
            Some(Box::new(
                match crate::azure::ClientSecret::from_lookup(credential) {
                    Ok(secret) => host.with_client_secret(secret),
                    Err(_) => host,
                },
            ))
        }
        #[cfg(feature = "kubernetes")]
        "kubernetes" => Some(Box::new(crate::kubernetes::KubernetesHost)),
        _ => None,
    }
}

/// An EC2 instance.
#[cfg(feature = "aws")]
pub struct AwsHost;

#[cfg(feature = "aws")]
#[async_trait]
impl Host for AwsHost {
    fn cloud(&self) -> &'static str {
        "aws"
    }

    /// The instance id and region come from the instance metadata service (IMDSv2; its
    /// address can be overridden with `AWS_EC2_METADATA_SERVICE_ENDPOINT`, as for every AWS
    /// SDK), and `TerminateInstances` uses the machine's own credentials (its instance
    /// profile, or the standard AWS variables). Instances are launched with shutdown
    /// behaviour `terminate`, so the caller's power-off fallback removes them too.
    async fn delete_self(&self) -> Result<String, CloudError> {
        use aws_config::imds;
        let fail = |reason: String| CloudError::Destroy {
            resource: "this instance".into(),
            reason,
        };
        let client = imds::Client::builder().build();
        let read = |path: &'static str| {
            let client = client.clone();
            async move {
                client.get(path).await.map(String::from).map_err(|e| {
                    format!(
                        "instance metadata {path}: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(e)
                    )
                })
            }
        };
        let id = read("/latest/meta-data/instance-id").await.map_err(fail)?;
        let region = read("/latest/meta-data/placement/region")
            .await
            .map_err(fail)?;
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region))
            .load()
            .await;
        let ec2 = aws_sdk_ec2::Client::new(&config);
        ec2.terminate_instances()
            .instance_ids(&id)
            .send()
            .await
            .map_err(|e| fail(format!("{}", aws_sdk_ec2::error::DisplayErrorContext(e))))?;
        Ok(id)
    }
}
