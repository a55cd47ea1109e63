//! GitHub App authentication: RS256 JWT → installation → installation access token.
//!
//! A JWT is valid when it verifies with the configured public key, its `iss` equals the app id
//! (string or number) and its `exp` lies in the future but at most 10 minutes ahead.

use std::time::SystemTime;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use super::objects;
use super::{Req, Resp, Shared};
use crate::util::{random_hex, rfc3339, unix_secs};

fn verify_jwt(sh: &Shared, req: &Req) -> Result<(), Resp> {
    let Some(app) = &sh.cfg.app else {
        return Err(Resp::error(401, "A JSON web token could not be decoded"));
    };
    let Some(token) = req.credential() else {
        return Err(Resp::error(401, "A JSON web token could not be decoded"));
    };
    let key = DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes())
        .map_err(|_| Resp::error(500, "Server Error"))?;
    let mut v = Validation::new(Algorithm::RS256);
    v.leeway = 0;
    // `iss` may be a number, which the library cannot parse: checked below.
    v.required_spec_claims = ["exp".to_string()].into_iter().collect();
    let data = jsonwebtoken::decode::<Value>(&token, &key, &v)
        .map_err(|_| Resp::error(401, "A JSON web token could not be decoded"))?;
    let claims = data.claims;
    let iss_ok = match claims.get("iss") {
        Some(Value::String(s)) => s == &app.app_id.to_string(),
        Some(Value::Number(n)) => n.as_u64() == Some(app.app_id),
        _ => false,
    };
    if !iss_ok {
        return Err(Resp::error(
            401,
            "'Issuer' claim ('iss') must be an Integer",
        ));
    }
    let now = unix_secs(SystemTime::now());
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if exp <= now {
        return Err(Resp::error(401, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"));
    }
    if exp > now + 600 {
        return Err(Resp::error(
            401,
            "'Expiration time' claim ('exp') is too far in the future",
        ));
    }
    Ok(())
}

/// `GET /repos/{owner}/{repo}/installation`, `GET /orgs/{org}/installation` (`login` = owner/org).
pub fn installation(sh: &Shared, req: &Req, login: &str) -> Resp {
    if let Err(r) = verify_jwt(sh, req) {
        return r;
    }
    let Some(app) = &sh.cfg.app else {
        return Resp::not_found();
    };
    let id = app.installation_id;
    let now = rfc3339(SystemTime::now());
    Resp::json(
        200,
        json!({
            "id": id, "account": objects::user(sh, login, "Organization"),
            "repository_selection": "all",
            "access_tokens_url": super::api_url(sh, &format!("/app/installations/{id}/access_tokens")),
            "repositories_url": super::api_url(sh, "/installation/repositories"),
            "html_url": format!("{}/organizations/{login}/settings/installations/{id}", sh.base_url),
            "app_id": app.app_id, "client_id": format!("Iv1.{}", app.app_id), "target_id": objects::name_id(login),
            "target_type": "Organization",
            "permissions": {"administration": "write", "actions": "read", "organization_self_hosted_runners": "write"},
            "events": [], "created_at": now, "updated_at": now, "single_file_name": null,
            "app_slug": "cml-runner", "suspended_by": null, "suspended_at": null,
        }),
    )
}

/// `POST /app/installations/{installation_id}/access_tokens`.
pub fn access_token(sh: &Shared, req: &Req, id: &str) -> Resp {
    if let Err(r) = verify_jwt(sh, req) {
        return r;
    }
    match &sh.cfg.app {
        Some(app) if id.parse::<u64>().ok() == Some(app.installation_id) => {}
        _ => return Resp::not_found(),
    }
    let token = format!("ghs_{}", random_hex(36));
    let expires = SystemTime::now() + sh.cfg.installation_token_ttl;
    sh.lock().installation_tokens.insert(token.clone(), expires);
    Resp::json(
        201,
        json!({
            "token": token, "expires_at": rfc3339(expires),
            "permissions": {"administration": "write", "actions": "read"},
            "repository_selection": "all",
        }),
    )
}
