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
//!
//! [`Watcher`] is what a runner uses: it never stops watching. A failed look (the metadata
//! service down, slow or answering nonsense) is retried after a pause that doubles with each
//! failure in a row, from [`FIRST_BACKOFF`] to at most [`MAX_BACKOFF`]; a look never takes longer
//! than [`POLL_TIMEOUT`], whatever HTTP client it uses.

use crate::CloudError;
use std::time::{Duration, Instant};

/// The longest one look at the metadata service may take, the client's own retries included.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(5);
/// The timeout of the HTTP client of the GCP and Azure watches.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause after a first failed look.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest pause between failed looks: well under the shortest notice (30 s on GCP and
/// Azure), so a notice given while the service recovers is still seen in time.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

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

    /// One look (see each watch), at most [`POLL_TIMEOUT`] long.
    pub async fn poll(&mut self) -> Result<Option<Notice>, CloudError> {
        let look = async {
            match self {
                #[cfg(feature = "aws")]
                Watch::Aws(w) => w.poll().await,
                Watch::Gcp(w) => w.poll().await,
                Watch::Azure(w) => w.poll().await,
            }
        };
        tokio::time::timeout(POLL_TIMEOUT, look)
            .await
            .unwrap_or_else(|_| {
                Err(CloudError::Metadata {
                    path: "(interruption notice)".into(),
                    reason: format!("no answer within {} s", POLL_TIMEOUT.as_secs()),
                })
            })
    }
}

/// A [`Watch`] that survives errors: see the module documentation.
pub struct Watcher {
    watch: Watch,
    first_backoff: Duration,
    max_backoff: Duration,
    /// Failed looks in a row.
    failures: u32,
    /// No look before this, after a failure.
    next_look: Option<Instant>,
}

impl Watcher {
    /// Watches with the default pauses ([`FIRST_BACKOFF`], [`MAX_BACKOFF`]).
    pub fn new(watch: Watch) -> Watcher {
        Watcher::with_backoff(watch, FIRST_BACKOFF, MAX_BACKOFF)
    }

    /// Watches, pausing `first` after a failed look, doubling up to `max`.
    pub fn with_backoff(watch: Watch, first: Duration, max: Duration) -> Watcher {
        Watcher {
            watch,
            first_backoff: first,
            max_backoff: max.max(first),
            failures: 0,
            next_look: None,
        }
    }

    /// The watcher for `cloud`, as [`Watch::for_cloud`].
    pub fn for_cloud(cloud: &str) -> Option<Watcher> {
        Watch::for_cloud(cloud).map(Watcher::new)
    }

    /// One look, unless it is still pausing after a failed one (then `None` at once, without
    /// asking). Errors are logged and never end the watch.
    pub async fn check(&mut self) -> Option<Notice> {
        if self.next_look.is_some_and(|at| Instant::now() < at) {
            return None;
        }
        match self.watch.poll().await {
            Ok(notice) => {
                if self.failures > 0 {
                    tracing::info!(
                        "the metadata service answers again after {} failed looks",
                        self.failures
                    );
                }
                self.failures = 0;
                self.next_look = None;
                notice
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                let pause = self.pause();
                // `pause` is at most `max_backoff`, which the caller chose: no overflow in practice,
                // and none at all with `checked_add`.
                self.next_look = Instant::now().checked_add(pause);
                let message = format!(
                    "watching for interruption notices: {e}; looking again in {} ms",
                    pause.as_millis()
                );
                if self.failures == 1 {
                    tracing::warn!("{message}");
                } else {
                    tracing::debug!("{message} (failure {} in a row)", self.failures);
                }
                None
            }
        }
    }

    /// Failed looks in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The pause after the current streak of failures: `first · 2^(failures-1)`, at most `max`.
    fn pause(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(31);
        self.first_backoff
            .checked_mul(1u32 << doublings)
            .map_or(self.max_backoff, |d| d.min(self.max_backoff))
    }
}

/// The HTTP client of the GCP and Azure watches: no proxy, [`HTTP_TIMEOUT`]. When it cannot be
/// built, there is no client (and no look succeeds) rather than one without a timeout.
fn metadata_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(HTTP_TIMEOUT)
        .build()
        .or_else(|first| {
            // Without the proxy setting, which needs nothing from the system.
            reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .build()
                .map_err(|_| first.to_string())
        })
}

/// The client in `slot`, built now if it could not be before.
fn client<'a>(
    slot: &'a mut Result<reqwest::Client, String>,
    url: &str,
) -> Result<&'a reqwest::Client, CloudError> {
    if slot.is_err() {
        *slot = metadata_client();
    }
    slot.as_ref().map_err(|reason| CloudError::Metadata {
        path: url.to_string(),
        reason: format!("no HTTP client: {reason}"),
    })
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
    http: Result<reqwest::Client, String>,
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
        let http = client(&mut self.http, &self.url)?;
        let body = get(http, &self.url, ("Metadata-Flavor", "Google")).await?;
        Ok((body.trim() == "TRUE").then(|| Notice::Interruption("GCP preemption notice".into())))
    }
}

/// Watches Azure's Scheduled Events for `Preempt`.
pub struct AzureWatch {
    url: String,
    http: Result<reqwest::Client, String>,
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
        let http = client(&mut self.http, &self.url)?;
        let body = get(http, &self.url, ("Metadata", "true")).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that accepts connections and never answers.
    fn silent_server() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().take(3).collect();
            std::thread::sleep(Duration::from_secs(60));
            drop(held);
        });
        url
    }

    #[tokio::test]
    async fn a_look_is_bounded_even_with_a_client_without_a_timeout() {
        // As if building the preferred client had failed and a default one were used.
        let url = silent_server();
        let mut w = Watch::Gcp(GcpWatch {
            url: format!("{url}/computeMetadata/v1/instance/preempted"),
            http: Ok(reqwest::Client::new()),
        });
        let started = Instant::now();
        let e = w.poll().await.unwrap_err().to_string();
        assert!(started.elapsed() < POLL_TIMEOUT + Duration::from_secs(2));
        assert!(e.contains("no answer within 5 s"), "{e}");
    }

    #[tokio::test]
    async fn a_client_that_could_not_be_built_is_built_again_later() {
        let mut w = GcpWatch {
            url: "http://127.0.0.1:9/computeMetadata/v1/instance/preempted".into(),
            http: Err("no TLS backend".into()),
        };
        // Building succeeds now; the look fails only because nothing listens there.
        let e = w.poll().await.unwrap_err().to_string();
        assert!(!e.contains("no HTTP client"), "{e}");
        assert!(w.http.is_ok());
    }
}
