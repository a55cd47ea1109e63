//! Azure credentials: a service principal's client secret exchanged at Microsoft Entra ID for
//! Resource Manager tokens (the launcher and cleanup), or the machine's managed-identity token
//! from the instance metadata service (the machine side).
//!
//! Guarantees: the client secret and every access token stay inside this module's types; no
//! error, log line or `Debug` output contains them. A token is reused until shortly before it
//! expires (five minutes, or half its lifetime when that is shorter) and then fetched anew.

use crate::CloudError;
use cml_core::Secret;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The service principal's application (client) id.
pub const CLIENT_ID: &str = "AZURE_CLIENT_ID";
/// The service principal's client secret (its value, not its id).
pub const CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
/// The directory (tenant) id.
pub const TENANT_ID: &str = "AZURE_TENANT_ID";
/// The subscription everything is created in.
pub const SUBSCRIPTION_ID: &str = "AZURE_SUBSCRIPTION_ID";
/// Overrides the Entra ID authority, as Azure's own SDKs and CLI read it.
pub const AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
/// Microsoft Entra ID's public-cloud authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The scope of a Resource Manager token asked for with a client secret.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// The resource of a Resource Manager token asked of the instance metadata service.
pub const ARM_RESOURCE: &str = "https://management.azure.com/";
/// The api-version of the metadata service's token endpoint.
pub const IMDS_TOKEN_API_VERSION: &str = "2018-02-01";

/// How long one token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// A token is renewed this long before it expires (or at half its lifetime, if sooner).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A service principal's credentials. `Debug` shows the tenant and client, never the secret.
#[derive(Clone)]
pub struct ClientSecret {
    tenant: String,
    client_id: String,
    secret: Secret,
    authority: String,
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecret")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl ClientSecret {
    /// The credentials from [`CLIENT_ID`], [`CLIENT_SECRET`], [`TENANT_ID`] and
    /// [`AUTHORITY_HOST`] (else [`DEFAULT_AUTHORITY`]), read by `get`. Errors naming every
    /// missing variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CloudError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let missing: Vec<&str> = [CLIENT_ID, CLIENT_SECRET, TENANT_ID]
            .into_iter()
            .filter(|k| get(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(CloudError::AzureCredentialsMissing {
                missing: missing.join(", "),
            });
        }
        Ok(ClientSecret {
            tenant: get(TENANT_ID).unwrap_or_default(),
            client_id: get(CLIENT_ID).unwrap_or_default(),
            secret: Secret::new(get(CLIENT_SECRET).unwrap_or_default()),
            authority: get(AUTHORITY_HOST)
                .unwrap_or_else(|| DEFAULT_AUTHORITY.into())
                .trim_end_matches('/')
                .to_string(),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.authority, self.tenant)
    }
}

/// [`SUBSCRIPTION_ID`], read by `get`.
pub fn subscription_from(get: impl Fn(&str) -> Option<String>) -> Result<String, CloudError> {
    get(SUBSCRIPTION_ID)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| CloudError::AzureCredentialsMissing {
            missing: SUBSCRIPTION_ID.into(),
        })
}

/// Where Resource Manager tokens come from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A service principal's client secret (client-credentials grant).
    ClientSecret(ClientSecret),
    /// The instance metadata service at this base URL (`http://169.254.169.254`): the token of
    /// the machine's system-assigned managed identity.
    ManagedIdentity(String),
}

struct Cached {
    token: Secret,
    renew_at: Instant,
}

/// Tokens from one [`TokenSource`], cached until shortly before they expire.
pub struct Tokens {
    source: TokenSource,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    pub fn new(source: TokenSource) -> Tokens {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(TOKEN_TIMEOUT)
            .build()
            .unwrap_or_default();
        Tokens {
            source,
            http,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    /// A valid access token (cached, or fetched now).
    pub async fn token(&self) -> Result<Secret, CloudError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if Instant::now() < c.renew_at {
                return Ok(c.token.clone());
            }
        }
        let (token, lifetime) = match &self.source {
            TokenSource::ClientSecret(c) => self.client_credentials(c).await?,
            TokenSource::ManagedIdentity(base) => self.managed_identity(base).await?,
        };
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        *cache = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(token)
    }

    /// Forgets the cached token (Resource Manager refused it: revoked, or the clock is off).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn client_credentials(&self, c: &ClientSecret) -> Result<(Secret, Duration), CloudError> {
        let url = c.token_url();
        let body = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
            form_encode(&c.client_id),
            form_encode(c.secret.expose()),
            form_encode(ARM_SCOPE)
        );
        let unreachable = |reason: String| CloudError::AzureTokenUnreachable {
            url: url.clone(),
            reason,
        };
        let resp = self
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(transport_reason(&e)))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| unreachable(transport_reason(&e)))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return parse_token(&v).ok_or_else(|| {
                unreachable(format!("HTTP {status}: the answer holds no access token"))
            });
        }
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(unreachable(format!("HTTP {}", status.as_u16())));
        }
        Err(refusal(c, status.as_u16(), &v))
    }

    async fn managed_identity(&self, base: &str) -> Result<(Secret, Duration), CloudError> {
        let url = format!(
            "{}/metadata/identity/oauth2/token",
            base.trim_end_matches('/')
        );
        let fail = |reason: String| CloudError::AzureManagedIdentity {
            url: url.clone(),
            reason,
        };
        let resp = self
            .http
            .get(&url)
            .query(&[
                ("api-version", IMDS_TOKEN_API_VERSION),
                ("resource", ARM_RESOURCE),
            ])
            .header("Metadata", "true")
            .send()
            .await
            .map_err(|e| fail(transport_reason(&e)))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| fail(transport_reason(&e)))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let what = v["error_description"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .unwrap_or("no error message");
            return Err(fail(format!("HTTP {}: {what}", status.as_u16())));
        }
        parse_token(&v).ok_or_else(|| fail("the answer holds no access token".into()))
    }
}

/// Entra ID's refusal (`{"error", "error_description": "AADSTSnnnn: ...", "error_codes"}`) as
/// the error naming the variable at fault.
fn refusal(c: &ClientSecret, status: u16, v: &Value) -> CloudError {
    let error = v["error"].as_str().unwrap_or("unknown error");
    let description = v["error_description"].as_str().unwrap_or_default();
    // The description's first sentence; the trace and correlation ids follow it.
    let short = description
        .split(" Trace ID:")
        .next()
        .unwrap_or(description)
        .trim();
    let code = v["error_codes"][0].as_u64().or_else(|| {
        short
            .strip_prefix("AADSTS")
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse().ok())
    });
    let reason = format!("HTTP {status} {error}: {short}");
    let (variable, hint) = match code {
        Some(7000215) | Some(7000222) | Some(7000216) => (
            CLIENT_SECRET,
            format!(
                "{CLIENT_SECRET} must be the value of a current client secret of the app {} (not the secret's id); create a new one if it expired",
                c.client_id
            ),
        ),
        Some(700016) | Some(700038) => (
            CLIENT_ID,
            format!(
                "{CLIENT_ID} must be the application (client) id of an app registered in the tenant {}",
                c.tenant
            ),
        ),
        Some(90002) | Some(900023) | Some(90013) => (
            TENANT_ID,
            format!("{TENANT_ID} must be the directory (tenant) id the app is registered in"),
        ),
        _ => match error {
            "invalid_client" => (
                CLIENT_SECRET,
                format!("check {CLIENT_SECRET} and {CLIENT_ID}"),
            ),
            "unauthorized_client" => (CLIENT_ID, format!("check {CLIENT_ID}")),
            _ => (
                TENANT_ID,
                format!("check {TENANT_ID}, {CLIENT_ID} and {CLIENT_SECRET}"),
            ),
        },
    };
    CloudError::AzureCredentialRejected {
        variable,
        reason,
        hint,
    }
}

/// `access_token` and its lifetime (`expires_in`: a number from Entra ID, a string from the
/// metadata service).
fn parse_token(v: &Value) -> Option<(Secret, Duration)> {
    let token = v["access_token"].as_str().filter(|t| !t.is_empty())?;
    let secs = v["expires_in"]
        .as_u64()
        .or_else(|| v["expires_in"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(3600);
    Some((Secret::new(token), Duration::from_secs(secs)))
}

/// A transport error's description, with its cause chain.
pub(crate) fn transport_reason(e: &reqwest::Error) -> String {
    use std::error::Error;
    let what = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "the connection failed".to_string()
    };
    let mut causes = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if causes.is_empty() {
        what
    } else {
        format!("{what}: {}", causes.join(": "))
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
