//! The few Azure Resource Manager REST operations cml uses, over plain HTTPS with pinned
//! api-versions.
//!
//! Guarantees: every call is bounded (connect 5 s, each attempt [`ATTEMPT_TIMEOUT`]); calls are
//! retried only when they are safe to repeat (ARM's PUT, GET and DELETE are idempotent; the
//! one POST used only reads) and only after no answer or a server error (5xx, 429), waiting as
//! `Retry-After` says (capped); a refused token (401) is renewed once. Long-running operations
//! are followed through `Azure-AsyncOperation` (status `InProgress` until `Succeeded`, `Failed`
//! or `Canceled`) or `Location` (202 until done), until a deadline the caller gives. Polling
//! URLs are followed only on the Resource Manager's own origin, so the bearer token never goes
//! anywhere else. ARM's error bodies become [`ApiError::Status`] with their code and message.

use super::auth::{transport_reason, Tokens};
use crate::CloudError;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Overrides the Resource Manager endpoint (a sovereign cloud, or a simulator).
pub const RESOURCE_MANAGER_URL: &str = "CML_AZURE_RESOURCE_MANAGER_URL";
/// Azure Resource Manager in the public cloud.
pub const DEFAULT_RESOURCE_MANAGER: &str = "https://management.azure.com";

/// api-version of `Microsoft.Compute` (virtual machines).
pub const COMPUTE_API: &str = "2026-04-01";
/// api-version of `Microsoft.Network` (virtual networks, security groups, addresses, NICs).
pub const NETWORK_API: &str = "2026-03-01";
/// api-version of `Microsoft.Resources` (resource groups, the resources list).
pub const RESOURCES_API: &str = "2025-04-01";
/// api-version of `Microsoft.Authorization` (role assignments).
pub const AUTHORIZATION_API: &str = "2022-04-01";

/// How long one attempt of one call may take (sending, and reading the whole answer).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of one call.
const ATTEMPTS: u32 = 3;
/// The longest `Retry-After` honoured.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// A failed call.
#[derive(Debug)]
pub enum ApiError {
    /// No access token could be had (the error says why and what to do).
    Credentials(Box<CloudError>),
    /// Resource Manager answered with an error.
    Status {
        status: u16,
        /// ARM's `error.code` (`ResourceGroupNotFound`, `AuthorizationFailed`, ...), or empty.
        code: String,
        message: String,
    },
    /// A long-running operation ended `Failed` or `Canceled`.
    Operation { code: String, message: String },
    /// No answer came (the request may or may not have been carried out), or a long-running
    /// operation did not end in time.
    Transport(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Credentials(e) => write!(f, "{e}"),
            ApiError::Status {
                status,
                code,
                message,
            } => {
                write!(f, "HTTP {status}")?;
                if !code.is_empty() {
                    write!(f, " {code}")?;
                }
                write!(f, ": {message}")
            }
            ApiError::Operation { code, message } => {
                write!(f, "the operation failed: {code}: {message}")
            }
            ApiError::Transport(why) => write!(f, "no answer from Azure Resource Manager: {why}"),
        }
    }
}

impl ApiError {
    /// The resource (or its group) does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Status { status: 404, .. })
    }

    /// Resource Manager refused the request (4xx): it did nothing.
    pub fn refused(&self) -> bool {
        matches!(self, ApiError::Status { status, .. } if (400..500).contains(status))
    }

    /// ARM's error code, at once or from the operation.
    pub fn code(&self) -> &str {
        match self {
            ApiError::Status { code, .. } | ApiError::Operation { code, .. } => code,
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

/// A successful answer, with what a long-running operation is followed by.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub async_operation: Option<String>,
    pub location: Option<String>,
    pub retry_after: Option<Duration>,
}

/// A client of one subscription's Resource Manager.
#[derive(Clone)]
pub struct Arm {
    base: String,
    subscription: String,
    tokens: Arc<Tokens>,
    http: reqwest::Client,
    attempt_timeout: Duration,
}

impl std::fmt::Debug for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arm")
            .field("base", &self.base)
            .field("subscription", &self.subscription)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// The endpoint: `override_` (without its trailing `/`) or [`DEFAULT_RESOURCE_MANAGER`].
pub fn endpoint(override_: Option<&str>) -> String {
    match override_.map(str::trim).filter(|s| !s.is_empty()) {
        Some(e) => e.trim_end_matches('/').to_string(),
        None => DEFAULT_RESOURCE_MANAGER.to_string(),
    }
}

/// `scheme://host[:port]` of `url`.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

impl Arm {
    /// A client of `subscription` at `endpoint` (see [`endpoint`]) with tokens from `tokens`.
    pub fn new(endpoint: &str, subscription: &str, tokens: Arc<Tokens>) -> Arm {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Arm {
            base: endpoint.trim_end_matches('/').to_string(),
            subscription: subscription.to_string(),
            tokens,
            http,
            attempt_timeout: ATTEMPT_TIMEOUT,
        }
    }

    /// Bounds each attempt by `timeout` instead of [`ATTEMPT_TIMEOUT`].
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Arm {
        self.attempt_timeout = timeout;
        self
    }

    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// `/subscriptions/{sub}`.
    pub fn subscription_path(&self) -> String {
        format!("/subscriptions/{}", self.subscription)
    }

    /// `/subscriptions/{sub}/resourceGroups/{rg}` (a resource group's id).
    pub fn group_id(&self, rg: &str) -> String {
        format!("/subscriptions/{}/resourceGroups/{rg}", self.subscription)
    }

    /// The id of resource `name` of type `rtype` (`Microsoft.Compute/virtualMachines`) in `rg`.
    pub fn resource_id(&self, rg: &str, rtype: &str, name: &str) -> String {
        format!("{}/providers/{rtype}/{name}", self.group_id(rg))
    }

    /// `method` on `path` (from the endpoint's root; or a full URL on the endpoint's origin,
    /// as polling links are) with `api-version` when given, retried as the module says.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        api_version: Option<&str>,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Answer, ApiError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            if origin(path) != origin(&self.base) {
                return Err(ApiError::Transport(format!(
                    "Resource Manager pointed at {} to follow an operation, not at its own origin {}; not sending the token there",
                    origin(path),
                    origin(&self.base)
                )));
            }
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
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
            if let Some(v) = api_version {
                req = req.query(&[("api-version", v)]);
            }
            if !query.is_empty() {
                req = req.query(query);
            }
            match body {
                Some(b) => req = req.json(b),
                None if method == reqwest::Method::POST => {
                    req = req.header("content-length", "0");
                }
                None => {}
            }
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let header = |k: &str| {
                        resp.headers()
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let async_operation = header("azure-asyncoperation");
                    let location = header("location");
                    let retry_after = header("retry-after")
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s).min(RETRY_AFTER_CAP));
                    match resp.text().await {
                        Ok(text) => Ok(Answer {
                            status,
                            body: serde_json::from_str(&text).unwrap_or(Value::Null),
                            async_operation,
                            location,
                            retry_after,
                        }),
                        Err(e) => Err(transport_reason(&e)),
                    }
                }
                Err(e) => Err(transport_reason(&e)),
            };
            let (err, wait) = match outcome {
                Ok(a) if (200..300).contains(&a.status) => return Ok(a),
                Ok(a) if a.status == 401 && !renewed => {
                    // Not carried out: renew the token once and ask again.
                    renewed = true;
                    attempt -= 1;
                    self.tokens.invalidate().await;
                    continue;
                }
                Ok(a) => (arm_error(a.status, &a.body), a.retry_after),
                Err(why) => (ApiError::Transport(why), None),
            };
            let transient = match &err {
                ApiError::Transport(_) => true,
                ApiError::Status { status, .. } => *status >= 500 || *status == 429,
                _ => false,
            };
            if !transient || attempt >= ATTEMPTS {
                return Err(err);
            }
            tracing::debug!(%method, path, attempt, error = %err, "Resource Manager call failed; retrying");
            let backoff = Duration::from_millis(250 * 2u64.pow(attempt - 1));
            tokio::time::sleep(wait.map_or(backoff, |w| w.max(backoff))).await;
        }
    }

    pub async fn get(&self, path: &str, api_version: &str) -> Result<Value, ApiError> {
        Ok(self
            .call(reqwest::Method::GET, path, Some(api_version), &[], None)
            .await?
            .body)
    }

    /// GET; `None` when the resource (or its group) does not exist.
    pub async fn get_opt(&self, path: &str, api_version: &str) -> Result<Option<Value>, ApiError> {
        match self.get(path, api_version).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn put(
        &self,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<Answer, ApiError> {
        self.call(
            reqwest::Method::PUT,
            path,
            Some(api_version),
            &[],
            Some(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str, api_version: &str) -> Result<Answer, ApiError> {
        self.call(reqwest::Method::DELETE, path, Some(api_version), &[], None)
            .await
    }

    /// Every item of a list (`{"value": [...], "nextLink"}`), following `nextLink`.
    pub async fn list(
        &self,
        path: &str,
        api_version: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut answer = self
            .call(reqwest::Method::GET, path, Some(api_version), query, None)
            .await?;
        // Bounded: pages hold up to 1000 items.
        for _ in 0..1000 {
            out.extend(answer.body["value"].as_array().cloned().unwrap_or_default());
            match answer.body["nextLink"].as_str().filter(|l| !l.is_empty()) {
                Some(next) => {
                    let next = next.to_string();
                    answer = self
                        .call(reqwest::Method::GET, &next, None, &[], None)
                        .await?;
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Follows the long-running operation `answer` started, until it ends or `deadline`:
    /// `Ok` when it succeeded (or there was nothing to follow), [`ApiError::Operation`] when
    /// it failed, [`ApiError::Transport`] at the deadline. Polls every `poll` at least, or
    /// as `Retry-After` asks.
    pub async fn wait(
        &self,
        answer: &Answer,
        poll: Duration,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        let pause = |ra: Option<Duration>| ra.map_or(poll, |r| r.max(poll));
        if let Some(url) = &answer.async_operation {
            let mut wait = pause(answer.retry_after);
            loop {
                if Instant::now() + wait > deadline {
                    return Err(ApiError::Transport(
                        "the operation did not end in time".into(),
                    ));
                }
                tokio::time::sleep(wait).await;
                let a = self
                    .call(reqwest::Method::GET, url, None, &[], None)
                    .await?;
                match a.body["status"].as_str().unwrap_or_default() {
                    "Succeeded" => return Ok(()),
                    "Failed" | "Canceled" => {
                        let e = &a.body["error"];
                        return Err(ApiError::Operation {
                            code: e["code"].as_str().unwrap_or("Failed").to_string(),
                            message: e["message"]
                                .as_str()
                                .unwrap_or("no error message")
                                .to_string(),
                        });
                    }
                    _ => wait = pause(a.retry_after),
                }
            }
        }
        if let (202, Some(url)) = (answer.status, &answer.location) {
            let mut url = url.clone();
            let mut wait = pause(answer.retry_after);
            loop {
                if Instant::now() + wait > deadline {
                    return Err(ApiError::Transport(
                        "the operation did not end in time".into(),
                    ));
                }
                tokio::time::sleep(wait).await;
                let a = match self.call(reqwest::Method::GET, &url, None, &[], None).await {
                    Ok(a) => a,
                    // What was being deleted is gone.
                    Err(e) if e.is_not_found() => return Ok(()),
                    Err(e) => return Err(e),
                };
                if a.status != 202 {
                    return Ok(());
                }
                if let Some(l) = a.location {
                    url = l;
                }
                wait = pause(a.retry_after);
            }
        }
        Ok(())
    }
}

/// ARM's error body (`{"error": {"code", "message"}}`, or the older unwrapped form) as an
/// [`ApiError::Status`]; a body that is not one is summarized.
pub fn arm_error(status: u16, body: &Value) -> ApiError {
    let e = if body["error"].is_object() {
        &body["error"]
    } else {
        body
    };
    let code = e["code"].as_str().unwrap_or_default().to_string();
    let message = e["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            let t: String = body.to_string().chars().take(200).collect();
            if body.is_null() {
                "no error message".into()
            } else {
                t
            }
        });
    ApiError::Status {
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_compared_by_scheme_host_and_port() {
        assert_eq!(
            origin("https://management.azure.com/subscriptions/x?a=b"),
            "https://management.azure.com"
        );
        assert_eq!(origin("http://127.0.0.1:9/x"), "http://127.0.0.1:9");
        assert_eq!(origin("http://127.0.0.1:9"), "http://127.0.0.1:9");
    }

    #[test]
    fn arm_errors_are_read() {
        let e = arm_error(
            404,
            &serde_json::json!({"error": {"code": "ResourceGroupNotFound", "message": "Resource group 'x' could not be found."}}),
        );
        assert!(e.is_not_found());
        assert_eq!(e.code(), "ResourceGroupNotFound");
        assert_eq!(
            e.to_string(),
            "HTTP 404 ResourceGroupNotFound: Resource group 'x' could not be found."
        );
        assert_eq!(
            arm_error(502, &Value::Null).to_string(),
            "HTTP 502: no error message"
        );
    }
}
