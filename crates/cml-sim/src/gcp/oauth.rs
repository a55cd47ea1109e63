//! Google's OAuth 2.0 token endpoint for service accounts (`token_uri` of a key file):
//! `POST /token` with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and
//! `assertion=<JWT>`, the JWT signed RS256 with the key's private key and claiming
//! `iss` = the account's email, `aud` = the token URI, `scope` = the scopes asked for, and
//! `iat`/`exp` at most one hour apart around now.
//!
//! Answers `{access_token, expires_in, token_type: "Bearer"}`; refusals are Google's
//! `{"error": "invalid_grant" | "invalid_scope" | "unsupported_grant_type" | "invalid_request",
//! "error_description": ...}` with HTTP 400.

use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use super::api::json_response;
use super::state::Token;
use super::Shared;
use crate::util::{random_hex, unix_secs};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn refuse(error: &str, description: &str) -> Response {
    json_response(
        400,
        &json!({"error": error, "error_description": description}),
    )
}

const TIMEFRAME: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";

pub(crate) fn token(sh: &Shared, _headers: &HeaderMap, body: &Bytes) -> Response {
    let form = super::contract::parse_query(&String::from_utf8_lossy(body));
    let get = |k: &str| form.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    let grant = get("grant_type").unwrap_or_default();
    if grant != JWT_BEARER {
        return refuse(
            "unsupported_grant_type",
            &format!("Invalid grant_type: {grant}"),
        );
    }
    let Some(assertion) = get("assertion").filter(|a| !a.is_empty()) else {
        return refuse("invalid_request", "Missing required parameter: assertion");
    };
    let Ok(header) = jsonwebtoken::decode_header(&assertion) else {
        return refuse(
            "invalid_grant",
            "Invalid JWT: the assertion is not a JSON Web Token.",
        );
    };
    let Some(claims) = unverified_claims(&assertion) else {
        return refuse(
            "invalid_grant",
            "Invalid JWT: the assertion is not a JSON Web Token.",
        );
    };
    let iss = claims["iss"].as_str().unwrap_or_default().to_string();
    let st = &mut *sh.lock();
    let keys: Vec<_> = st.keys.iter().filter(|k| k.email == iss).cloned().collect();
    if keys.is_empty() {
        return refuse("invalid_grant", "Invalid grant: account not found");
    }
    // The key named by `kid` (Google's libraries always send it), else any key of the account.
    let candidates: Vec<_> = match &header.kid {
        Some(kid) => keys.iter().filter(|k| &k.key_id == kid).collect(),
        None => keys.iter().collect(),
    };
    let verified = header.alg == Algorithm::RS256
        && candidates.iter().any(|k| {
            if k.disabled {
                return false;
            }
            let Ok(dk) = DecodingKey::from_rsa_pem(k.public_pem.as_bytes()) else {
                return false;
            };
            let mut v = Validation::new(Algorithm::RS256);
            v.validate_exp = false;
            v.validate_aud = false;
            v.required_spec_claims = Default::default();
            jsonwebtoken::decode::<Value>(&assertion, &dk, &v).is_ok()
        });
    if !verified {
        return refuse("invalid_grant", "Invalid JWT Signature.");
    }
    let token_uri = format!("{}/token", st.base_url);
    if claims["aud"].as_str() != Some(token_uri.as_str()) {
        return refuse(
            "invalid_grant",
            &format!("Invalid JWT: Failed audience check. The expected value was {token_uri}"),
        );
    }
    let now = unix_secs(SystemTime::now()) as i64;
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return refuse("invalid_grant", TIMEFRAME);
    };
    if exp <= now || iat > now + 300 || exp - iat > 3600 || exp < iat {
        return refuse("invalid_grant", TIMEFRAME);
    }
    let scopes: Vec<String> = claims["scope"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if scopes.is_empty() {
        return refuse("invalid_scope", "Empty or missing scope not allowed.");
    }
    let ttl = st.cfg.token_ttl;
    let access = format!("ya29.c.{}", random_hex(48));
    st.tokens.insert(
        access.clone(),
        Token {
            principal: iss,
            scopes,
            expires: Instant::now() + ttl,
        },
    );
    st.oauth_grants += 1;
    json_response(
        200,
        &json!({"access_token": access, "expires_in": ttl.as_secs().saturating_sub(1), "token_type": "Bearer"}),
    )
}

/// The claims of a JWT, before its signature is checked (to find the issuer's keys).
fn unverified_claims(jwt: &str) -> Option<Value> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
