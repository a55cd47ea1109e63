//! GitHub credentials: a token (personal access token, installation token from the CI), or a
//! GitHub App whose installation tokens are minted and refreshed before they expire.

use crate::http::now_unix;
use cml_core::Secret;
use std::fmt;
use tokio::sync::Mutex;

/// How the client authenticates.
pub enum GithubAuth {
    /// A token, and where it came from (`--token`, `REPO_TOKEN`, ...) for error messages.
    Token { token: Secret, source: String },
    /// A GitHub App: `CML_GITHUB_APP_ID` + `CML_GITHUB_APP_PEM`.
    App(AppAuth),
}

impl fmt::Debug for GithubAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GithubAuth::Token { source, .. } => write!(f, "Token(from {source}, ***)"),
            GithubAuth::App(a) => write!(f, "App(id {}, ***)", a.app_id),
        }
    }
}

impl GithubAuth {
    /// Where the credential came from, for messages.
    pub fn source(&self) -> String {
        match self {
            GithubAuth::Token { source, .. } => source.clone(),
            GithubAuth::App(a) => format!(
                "GitHub App {} (CML_GITHUB_APP_ID/CML_GITHUB_APP_PEM)",
                a.app_id
            ),
        }
    }
}

/// A GitHub App's key and its cached installation token.
pub struct AppAuth {
    pub(crate) app_id: String,
    pub(crate) key: jsonwebtoken::EncodingKey,
    pub(crate) pem: Secret,
    pub(crate) cached: Mutex<Option<CachedToken>>,
}

pub(crate) struct CachedToken {
    pub token: Secret,
    pub issued_at: u64,
    pub expires_at: u64,
}

impl CachedToken {
    /// Refresh when less than a quarter of the lifetime (at most 5 minutes) is left.
    pub fn fresh(&self, now: u64) -> bool {
        let lifetime = self.expires_at.saturating_sub(self.issued_at);
        let margin = (lifetime / 4).min(300);
        now + margin < self.expires_at
    }
}

impl AppAuth {
    /// Parses the app's PEM private key (PKCS#1 or PKCS#8 RSA).
    pub fn new(app_id: &str, pem: Secret) -> Result<AppAuth, crate::ForgeError> {
        let app_id = app_id.trim().to_string();
        if app_id.is_empty() || !app_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(crate::ForgeError::AppKey {
                reason: format!("CML_GITHUB_APP_ID must be the numeric app id, got {app_id:?}"),
            });
        }
        // CI secrets sometimes carry the PEM with literal "\n" sequences.
        let text = pem.expose().replace("\\n", "\n");
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(text.as_bytes()).map_err(|e| {
            crate::ForgeError::AppKey {
                reason: e.to_string(),
            }
        })?;
        Ok(AppAuth {
            app_id,
            key,
            pem,
            cached: Mutex::new(None),
        })
    }

    /// A fresh RS256 JWT for the app (valid 9 minutes, issued 60 s in the past for clock skew).
    pub(crate) fn jwt(&self) -> Result<Secret, crate::ForgeError> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iat: u64,
            exp: u64,
            iss: &'a str,
        }
        let now = now_unix();
        let claims = Claims {
            iat: now - 60,
            exp: now + 540,
            iss: &self.app_id,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map(Secret::new)
        .map_err(|e| crate::ForgeError::AppJwt {
            reason: e.to_string(),
        })
    }
}
