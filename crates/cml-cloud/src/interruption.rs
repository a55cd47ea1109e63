//! The machine side of interruptions: is this machine about to be taken away?
//!
//! - AWS: the instance metadata service (IMDSv2) answers `spot/instance-action` only once a
//!   spot interruption is scheduled (two minutes ahead), and
//!   `events/recommendations/rebalance` once EC2 recommends moving away. Its address can be
//!   overridden with `AWS_EC2_METADATA_SERVICE_ENDPOINT`, as for every AWS SDK.
//! - GCP: `computeMetadata/v1/instance/preempted` turns `TRUE` (30 s ahead); the metadata
//!   server's address can be overridden with [`GCP_METADATA_URL`].
//! - Azure: Scheduled Events list a `Preempt` event (30 s ahead); the address can be
//!   overridden with [`AZURE_METADATA_URL`].
//!
//! (A shutdown from anywhere, ACPI power button included, reaches `cml` as SIGTERM from
//! systemd.)

use crate::CloudError;

/// What the cloud announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The machine will be taken away (the cloud's own words).
    Interruption(String),
    /// The cloud suggests moving work elsewhere; nothing is taken away yet.
    Rebalance(String),
}

/// Overrides the GCP metadata server (default `http://metadata.google.internal`).
pub const GCP_METADATA_URL: &str = "CML_GCP_METADATA_URL";
/// Overrides the Azure instance metadata service (default `http://169.254.169.254`).
pub const AZURE_METADATA_URL: &str = "CML_AZURE_METADATA_URL";

/// Watches whichever cloud this machine is on.
pub enum Watch {
    #[cfg(feature = "aws")]
    Aws(AwsWatch),
    Gcp(GcpWatch),
    Azure(AzureWatch),
}

impl Watch {
    /// The watch for `cloud` (`aws`, `gcp`, `azure`), its endpoint overridable as the module
    /// says; `None` for a cloud without notices here.
    pub fn for_cloud(cloud: &str) -> Option<Watch> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match cloud {
            #[cfg(feature = "aws")]
            "aws" => Some(Watch::Aws(AwsWatch::new())),
            "gcp" => Some(Watch::Gcp(GcpWatch::new(
                &env(GCP_METADATA_URL).unwrap_or_else(|| "http://metadata.google.internal".into()),
            ))),
            "azure" => Some(Watch::Azure(AzureWatch::new(
                &env(AZURE_METADATA_URL).unwrap_or_else(|| "http://169.254.169.254".into()),
            ))),
            _ => None,
        }
    }

    /// One look (see each watch).
    pub async fn poll(&mut self) -> Result<Option<Notice>, CloudError> {
        match self {
            #[cfg(feature = "aws")]
            Watch::Aws(w) => w.poll().await,
            Watch::Gcp(w) => w.poll().await,
            Watch::Azure(w) => w.poll().await,
        }
    }
}

fn metadata_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap_or_default()
}

/// GETs a metadata `url` with the `header` its service requires; the body of a 2xx answer.
async fn get(
    http: &reqwest::Client,
    url: &str,
    header: (&str, &str),
) -> Result<String, CloudError> {
    let fail = |reason: String| CloudError::Metadata {
        path: url.to_string(),
        reason,
    };
    let resp = http
        .get(url)
        .header(header.0, header.1)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    resp.text().await.map_err(|e| fail(e.to_string()))
}

/// Watches GCP's `instance/preempted`.
pub struct GcpWatch {
    url: String,
    http: reqwest::Client,
}

impl GcpWatch {
    pub fn new(base: &str) -> GcpWatch {
        GcpWatch {
            url: format!(
                "{}/computeMetadata/v1/instance/preempted",
                base.trim_end_matches('/')
            ),
            http: metadata_client(),
        }
    }

    /// `TRUE` is a preemption notice.
    pub async fn poll(&mut self) -> Result<Option<Notice>, CloudError> {
        let body = get(&self.http, &self.url, ("Metadata-Flavor", "Google")).await?;
        Ok((body.trim() == "TRUE").then(|| Notice::Interruption("GCP preemption notice".into())))
    }
}

/// Watches Azure's Scheduled Events for `Preempt`.
pub struct AzureWatch {
    url: String,
    http: reqwest::Client,
}

impl AzureWatch {
    pub fn new(base: &str) -> AzureWatch {
        AzureWatch {
            url: format!(
                "{}/metadata/scheduledevents?api-version=2020-07-01",
                base.trim_end_matches('/')
            ),
            http: metadata_client(),
        }
    }

    /// A `Preempt` event is a notice; other events (`Reboot`, `Redeploy`, ...) are not.
    pub async fn poll(&mut self) -> Result<Option<Notice>, CloudError> {
        let body = get(&self.http, &self.url, ("Metadata", "true")).await?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| CloudError::Metadata {
                path: self.url.clone(),
                reason: e.to_string(),
            })?;
        let preempt = v["Events"].as_array().and_then(|events| {
            events
                .iter()
                .find(|e| e["EventType"].as_str() == Some("Preempt"))
        });
        Ok(preempt.map(|e| {
            Notice::Interruption(format!(
                "Azure scheduled event Preempt {} (not before {})",
                e["EventId"].as_str().unwrap_or("?"),
                e["NotBefore"].as_str().unwrap_or("?")
            ))
        }))
    }
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
