//! The few Compute Engine v1 REST methods cml uses, over plain HTTPS.
//!
//! Guarantees: every call is bounded (connect 5 s, each attempt [`ATTEMPT_TIMEOUT`]); only
//! calls that are safe to repeat are retried (reads, deletes, and inserts, which carry a
//! `requestId` so that Compute Engine does a repeated insert once), and only after no answer
//! or a server error (5xx, 429); a refused token (401) is renewed once. Google's error bodies
//! become [`ApiError::Status`] with their HTTP status, reason and message.

use super::auth::{transport_reason, Tokens};
use crate::CloudError;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Overrides the Compute Engine endpoint, as for gcloud: a URL ending in `/compute/v1/`.
pub const COMPUTE_ENDPOINT: &str = "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE";
/// Compute Engine's endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://compute.googleapis.com/compute/v1/";

/// How long one attempt of one call may take (sending, and reading the whole answer).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of a call that may be retried.
const ATTEMPTS: u32 = 3;

/// A failed call.
#[derive(Debug)]
pub enum ApiError {
    /// No access token could be had (the error says why and what to do).
    Credentials(Box<CloudError>),
    /// Compute Engine answered with an error.
    Status {
        status: u16,
        /// The first `errors[].reason` (`notFound`, `quotaExceeded`, ...), or empty.
        reason: String,
        message: String,
    },
    /// No answer came (the request may or may not have been carried out).
    Transport(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Credentials(e) => write!(f, "{e}"),
            ApiError::Status {
                status,
                reason,
                message,
            } => {
                write!(f, "HTTP {status}")?;
                if !reason.is_empty() {
                    write!(f, " {reason}")?;
                }
                write!(f, ": {message}")
            }
            ApiError::Transport(why) => write!(f, "no answer from Compute Engine: {why}"),
        }
    }
}

impl ApiError {
    /// The resource does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Status { status: 404, .. })
    }

    /// Compute Engine answered with a refusal (4xx): it did nothing.
    pub fn refused(&self) -> bool {
        matches!(self, ApiError::Status { status, .. } if (400..500).contains(status))
    }

    pub fn reason(&self) -> &str {
        match self {
            ApiError::Status { reason, .. } => reason,
            _ => "",
        }
    }

    /// The credentials error as it is, or `wrap` of this error's text.
    pub fn into_cloud(self, wrap: impl FnOnce(String) -> CloudError) -> CloudError {
        match self {
            ApiError::Credentials(e) => *e,
            other => wrap(other.to_string()),
        }
    }
}

/// A client of one project's Compute Engine API.
#[derive(Clone)]
pub struct Api {
    base: String,
    project: String,
    tokens: Arc<Tokens>,
    http: reqwest::Client,
    attempt_timeout: Duration,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .field("project", &self.project)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// The endpoint: `override_` (with or without its trailing `/`) or [`DEFAULT_ENDPOINT`].
pub fn endpoint(override_: Option<&str>) -> String {
    match override_.map(str::trim).filter(|s| !s.is_empty()) {
        Some(e) => format!("{}/", e.trim_end_matches('/')),
        None => DEFAULT_ENDPOINT.to_string(),
    }
}

impl Api {
    /// A client of `project` at `endpoint` (see [`endpoint`]) with tokens from `tokens`.
    pub fn new(endpoint: &str, project: &str, tokens: Arc<Tokens>) -> Api {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .unwrap_or_default();
        Api {
            base: format!("{}/", endpoint.trim_end_matches('/')),
            project: project.to_string(),
            tokens,
            http,
            attempt_timeout: ATTEMPT_TIMEOUT,
        }
    }

    /// Bounds each attempt by `timeout` instead of [`ATTEMPT_TIMEOUT`].
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Api {
        self.attempt_timeout = timeout;
        self
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// `method` on `projects/{project}/{path}`; retried as the module says when `retry`.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        retry: bool,
    ) -> Result<Value, ApiError> {
        let url = format!("{}projects/{}/{path}", self.base, self.project);
        let attempts = if retry { ATTEMPTS } else { 1 };
        let mut renewed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self
                .tokens
                .token()
                .await
                .map_err(|e| ApiError::Credentials(Box::new(e)))?;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .timeout(self.attempt_timeout)
                .bearer_auth(token.expose());
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.text().await {
                        Ok(text) => Ok((status, text)),
                        Err(e) => Err(transport_reason(&e)),
                    }
                }
                Err(e) => Err(transport_reason(&e)),
            };
            let err = match outcome {
                Ok((status, text)) if (200..300).contains(&status) => {
                    return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
                }
                Ok((401, _)) if !renewed => {
                    // Not carried out: renew the token once and ask again.
                    renewed = true;
                    attempt -= 1;
                    self.tokens.invalidate().await;
                    continue;
                }
                Ok((status, text)) => google_error(status, &text),
                Err(why) => ApiError::Transport(why),
            };
            let transient = match &err {
                ApiError::Transport(_) => true,
                ApiError::Status { status, .. } => *status >= 500 || *status == 429,
                ApiError::Credentials(_) => false,
            };
            if !transient || attempt >= attempts {
                return Err(err);
            }
            tracing::debug!(%method, path, attempt, error = %err, "Compute Engine call failed; retrying");
            tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt - 1))).await;
        }
    }

    /// `instances.insert` in `zone`, done once however often it is retried (`request_id`,
    /// a UUID). Answers the zone operation.
    pub async fn insert_instance(
        &self,
        zone: &str,
        body: &Value,
        request_id: &str,
    ) -> Result<Value, ApiError> {
        self.call(
            reqwest::Method::POST,
            &format!("zones/{zone}/instances"),
            &[("requestId", request_id)],
            Some(body),
            true,
        )
        .await
    }

    /// `instances.get`; `None` when there is no such instance.
    pub async fn get_instance(&self, zone: &str, name: &str) -> Result<Option<Value>, ApiError> {
        match self
            .call(
                reqwest::Method::GET,
                &format!("zones/{zone}/instances/{name}"),
                &[],
                None,
                true,
            )
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `instances.delete`; answers the zone operation.
    pub async fn delete_instance(&self, zone: &str, name: &str) -> Result<Value, ApiError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("zones/{zone}/instances/{name}"),
            &[],
            None,
            true,
        )
        .await
    }

    /// `disks.delete`; answers the zone operation.
    pub async fn delete_disk(&self, zone: &str, name: &str) -> Result<Value, ApiError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("zones/{zone}/disks/{name}"),
            &[],
            None,
            true,
        )
        .await
    }

    /// `zoneOperations.get`.
    pub async fn get_operation(&self, zone: &str, name: &str) -> Result<Value, ApiError> {
        self.call(
            reqwest::Method::GET,
            &format!("zones/{zone}/operations/{name}"),
            &[],
            None,
            true,
        )
        .await
    }

    /// `instances.getSerialPortOutput` of port 1 (the console): its `contents`.
    pub async fn serial_port_output(&self, zone: &str, name: &str) -> Result<String, ApiError> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("zones/{zone}/instances/{name}/serialPort"),
                &[("port", "1")],
                None,
                true,
            )
            .await?;
        Ok(v["contents"].as_str().unwrap_or_default().to_string())
    }

    /// `instances.aggregatedList` with `filter`: (zone, instance) for every page.
    pub async fn aggregated_instances(
        &self,
        filter: &str,
    ) -> Result<Vec<(String, Value)>, ApiError> {
        self.aggregated("aggregated/instances", "instances", filter)
            .await
    }

    /// `disks.aggregatedList` with `filter`: (zone, disk) for every page.
    pub async fn aggregated_disks(&self, filter: &str) -> Result<Vec<(String, Value)>, ApiError> {
        self.aggregated("aggregated/disks", "disks", filter).await
    }

    async fn aggregated(
        &self,
        path: &str,
        kind: &str,
        filter: &str,
    ) -> Result<Vec<(String, Value)>, ApiError> {
        let mut out = Vec::new();
        let mut page = String::new();
        // Bounded: Compute Engine pages hold up to 500 items.
        for _ in 0..1000 {
            let mut q = vec![("filter", filter)];
            if !page.is_empty() {
                q.push(("pageToken", page.as_str()));
            }
            let v = self
                .call(reqwest::Method::GET, path, &q, None, true)
                .await?;
            if let Some(items) = v["items"].as_object() {
                for (scope, list) in items {
                    let zone = scope.strip_prefix("zones/").unwrap_or(scope);
                    for item in list[kind].as_array().into_iter().flatten() {
                        out.push((zone.to_string(), item.clone()));
                    }
                }
            }
            match v["nextPageToken"].as_str().filter(|t| !t.is_empty()) {
                Some(t) => page = t.to_string(),
                None => return Ok(out),
            }
        }
        Ok(out)
    }
}

/// Google's error body (`{"error": {"code", "message", "errors": [{"reason", ...}]}}`) as an
/// [`ApiError::Status`]; a body that is not one is summarized.
pub fn google_error(status: u16, text: &str) -> ApiError {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let e = &v["error"];
    let reason = e["errors"][0]["reason"]
        .as_str()
        .or_else(|| e["status"].as_str())
        .unwrap_or_default()
        .to_string();
    let message = e["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            let t: String = text.chars().take(200).collect();
            if t.trim().is_empty() {
                "no error message".into()
            } else {
                t
            }
        });
    ApiError::Status {
        status,
        reason,
        message,
    }
}
