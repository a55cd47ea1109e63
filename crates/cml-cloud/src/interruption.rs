//! The machine side of interruptions: is this machine about to be taken away?
//!
//! AWS: the instance metadata service (IMDSv2) answers `spot/instance-action` only once a
//! spot interruption is scheduled (two minutes ahead), and
//! `events/recommendations/rebalance` once EC2 recommends moving away. Its address can be
//! overridden with `AWS_EC2_METADATA_SERVICE_ENDPOINT`, as for every AWS SDK. (A shutdown
//! from anywhere, ACPI power button included, reaches `cml` as SIGTERM from systemd.)

use crate::CloudError;

/// What the cloud announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The machine will be taken away (the cloud's own words).
    Interruption(String),
    /// The cloud suggests moving work elsewhere; nothing is taken away yet.
    Rebalance(String),
}

/// Watches the AWS metadata service of this instance.
#[cfg(feature = "aws")]
pub struct AwsWatch {
    client: aws_config::imds::Client,
    rebalance_seen: bool,
}

#[cfg(feature = "aws")]
impl Default for AwsWatch {
    fn default() -> Self {
        AwsWatch::new()
    }
}

#[cfg(feature = "aws")]
impl AwsWatch {
    pub fn new() -> AwsWatch {
        AwsWatch {
            client: aws_config::imds::Client::builder().build(),
            rebalance_seen: false,
        }
    }

    /// One look: an interruption notice first, else a rebalance recommendation the first
    /// time it appears, else nothing.
    pub async fn poll(&mut self) -> Result<Option<Notice>, CloudError> {
        if let Some(action) = self
            .optional("/latest/meta-data/spot/instance-action")
            .await?
        {
            return Ok(Some(Notice::Interruption(format!(
                "spot interruption notice {action}"
            ))));
        }
        if !self.rebalance_seen {
            if let Some(r) = self
                .optional("/latest/meta-data/events/recommendations/rebalance")
                .await?
            {
                self.rebalance_seen = true;
                return Ok(Some(Notice::Rebalance(format!(
                    "rebalance recommendation {r}"
                ))));
            }
        }
        Ok(None)
    }

    /// A metadata item that exists only after an event (404 until then).
    async fn optional(&self, path: &'static str) -> Result<Option<String>, CloudError> {
        use aws_config::imds::client::error::ImdsError;
        match self.client.get(path).await {
            Ok(v) => Ok(Some(String::from(v))),
            Err(ImdsError::ErrorResponse(e)) if e.response().status().as_u16() == 404 => Ok(None),
            Err(e) => Err(CloudError::Metadata {
                path: path.to_string(),
                reason: aws_sdk_ec2::error::DisplayErrorContext(e).to_string(),
            }),
        }
    }
}
