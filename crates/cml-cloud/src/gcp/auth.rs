//! Google Cloud credentials: a service-account key exchanged for access tokens (the launcher
//! and cleanup), or the metadata server's token of the machine's own service account (the
//! machine side).
//!
//! Guarantees: the private key and every access token stay inside this module's types; no
//! error, log line or `Debug` output contains them. A token is reused until shortly before it
//! expires (five minutes, or half its lifetime when that is shorter) and then fetched anew.

use crate::CloudError;
use cml_core::Secret;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime};

/// The contents of a service-account JSON key (what `gcloud iam service-accounts keys
/// create` writes). Takes precedence over [`CREDENTIALS_FILE`].
pub const CREDENTIALS_DATA: &str = "GOOGLE_APPLICATION_CREDENTIALS_DATA";
/// The path of a service-account JSON key, as Google's own libraries read it.
pub const CREDENTIALS_FILE: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// The project to work in; overrides the key's `project_id`.
pub const PROJECT: &str = "GOOGLE_CLOUD_PROJECT";
/// The scope asked for with a service-account key: every Google Cloud API, narrowed by the
/// account's IAM roles.
pub const SCOPE_CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The scope a runner machine gets by default: Compute Engine only (enough to delete itself).
pub const SCOPE_COMPUTE: &str = "https://www.googleapis.com/auth/compute";

/// The grant type of a signed-JWT token request (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long one token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// A token is renewed this long before it expires (or at half its lifetime, if sooner).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A parsed service-account key. `Debug` shows the account and key id, never the key.
#[derive(Clone)]
pub struct ServiceAccountKey {
    /// Which variable it came from (named in errors).
    variable: &'static str,
    client_email: String,
    private_key_id: String,
    token_uri: String,
    project_id: Option<String>,
    key: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("variable", &self.variable)
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// The key from [`CREDENTIALS_DATA`], else from the file [`CREDENTIALS_FILE`] names, with
    /// variables read by `get` (the process environment in [`ServiceAccountKey::from_env`]).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CloudError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(data) = get(CREDENTIALS_DATA) {
            return Self::parse(CREDENTIALS_DATA, &data);
        }
        let Some(path) = get(CREDENTIALS_FILE) else {
            return Err(CloudError::GcpCredentialsMissing);
        };
        let text = std::fs::read_to_string(&path).map_err(|e| CloudError::GcpCredentialsRead {
            variable: CREDENTIALS_FILE,
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(CREDENTIALS_FILE, &text)
    }

    /// [`ServiceAccountKey::from_lookup`] on the process environment.
    pub fn from_env() -> Result<Self, CloudError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Parses the JSON key `text`, which came from `variable`.
    pub fn parse(variable: &'static str, text: &str) -> Result<Self, CloudError> {
        let format = |reason: &str| CloudError::GcpCredentialsFormat {
            variable,
            reason: reason.to_string(),
        };
        // serde_json's message quotes no input, only positions.
        let v: Value =
            serde_json::from_str(text).map_err(|e| format(&format!("not JSON ({e})")))?;
        if !v.is_object() {
            return Err(format("not a JSON object"));
        }
        match v["type"].as_str() {
            Some("service_account") => {}
            Some(other) => {
                return Err(format(&format!(
                    "a key of type {other:?}, not a service-account key (user and external-account credentials are not supported)"
                )))
            }
            None => return Err(format("no \"type\" field: not a service-account key")),
        }
        let field = |name: &str| -> Result<String, CloudError> {
            v[name]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format(&format!("the field {name:?} is missing")))
        };
        let client_email = field("client_email")?;
        let private_key_id = field("private_key_id")?;
        let pem = field("private_key")?;
        let token_uri = v["token_uri"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("https://oauth2.googleapis.com/token")
            .to_string();
        let project_id = v["project_id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
            // The error names the kind of failure only (never the key's bytes).
            CloudError::GcpPrivateKey {
                variable,
                reason: format!("not an RSA private key in PEM form ({e})"),
            }
        })?;
        Ok(ServiceAccountKey {
            variable,
            client_email,
            private_key_id,
            token_uri,
            project_id,
            key,
        })
    }

    /// The service account's email.
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The key's `project_id`, if any.
    pub fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    /// The variable the key came from.
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// The token endpoint.
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// A signed JWT asking for `scope`, valid for one hour from now.
    fn assertion(&self, scope: &str) -> Result<String, CloudError> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.private_key_id.clone());
        let claims = serde_json::json!({
            "iss": self.client_email,
            "sub": self.client_email,
            "aud": self.token_uri,
            "scope": scope,
            "iat": now,
            "exp": now + 3600,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| CloudError::GcpPrivateKey {
            variable: self.variable,
            reason: format!("signing failed ({e})"),
        })
    }
}

/// The project: [`PROJECT`] if set, else the key's `project_id`.
pub fn project_from(
    key: &ServiceAccountKey,
    get: impl Fn(&str) -> Option<String>,
) -> Result<String, CloudError> {
    get(PROJECT)
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .or_else(|| key.project_id.clone())
        .ok_or(CloudError::GcpProject {
            variable: key.variable,
        })
}

/// Where access tokens come from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A service-account key, exchanged at its token endpoint for a `cloud-platform` token.
    ServiceAccount(ServiceAccountKey),
    /// The metadata server at this base URL (`http://metadata.google.internal`): the token of
    /// the machine's default service account, with the scopes the machine was given.
    Metadata(String),
}

struct Cached {
    token: Secret,
    renew_at: Instant,
}

/// Access tokens from one [`TokenSource`], cached until shortly before they expire.
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
        let (token, lifetime) = self.fetch().await?;
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        *cache = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(token)
    }

    /// Forgets the cached token (the API refused it: revoked, or the clock is off).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn fetch(&self) -> Result<(Secret, Duration), CloudError> {
        match &self.source {
            TokenSource::ServiceAccount(key) => self.exchange(key).await,
            TokenSource::Metadata(base) => self.metadata_token(base).await,
        }
    }

    async fn exchange(&self, key: &ServiceAccountKey) -> Result<(Secret, Duration), CloudError> {
        let assertion = key.assertion(SCOPE_CLOUD_PLATFORM)?;
        let body = format!(
            "grant_type={}&assertion={}",
            form_encode(JWT_BEARER),
            form_encode(&assertion)
        );
        let unreachable = |reason: String| CloudError::GcpTokenUnreachable {
            token_uri: key.token_uri.clone(),
            reason,
        };
        let resp = self
            .http
            .post(&key.token_uri)
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
        if status.is_server_error() {
            return Err(unreachable(format!("HTTP {status}")));
        }
        let error = v["error"].as_str().unwrap_or("unknown error");
        let description = v["error_description"].as_str().unwrap_or_default();
        let hint = match error {
            "invalid_grant" => format!(
                "the key {} of {} may be disabled, expired or deleted, or the service account removed; create a new key (`gcloud iam service-accounts keys create`) and check this machine's clock",
                key.private_key_id, key.client_email
            ),
            "invalid_scope" => "the service account may not ask for the cloud-platform scope".into(),
            _ => "check that the key file is the one Google issued, unchanged".into(),
        };
        Err(CloudError::GcpTokenRefused {
            variable: key.variable,
            token_uri: key.token_uri.clone(),
            reason: format!("HTTP {}: {error}: {description}", status.as_u16()),
            hint,
        })
    }

    async fn metadata_token(&self, base: &str) -> Result<(Secret, Duration), CloudError> {
        let url = format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            base.trim_end_matches('/')
        );
        let fail = |reason: String| CloudError::GcpMetadataToken {
            url: url.clone(),
            reason,
        };
        let resp = self
            .http
            .get(&url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| fail(transport_reason(&e)))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| fail(transport_reason(&e)))?;
        if !status.is_success() {
            return Err(fail(format!(
                "HTTP {}{}",
                status.as_u16(),
                if status.as_u16() == 404 {
                    " (the machine has no service account)"
                } else {
                    ""
                }
            )));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        parse_token(&v).ok_or_else(|| fail("the answer holds no access token".into()))
    }
}

fn parse_token(v: &Value) -> Option<(Secret, Duration)> {
    let token = v["access_token"].as_str().filter(|t| !t.is_empty())?;
    let secs = v["expires_in"].as_u64().unwrap_or(3600);
    Some((Secret::new(token), Duration::from_secs(secs)))
}

/// A transport error's description without the URL's query (which holds nothing secret
/// here, but keeps messages short) and with its cause chain.
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
