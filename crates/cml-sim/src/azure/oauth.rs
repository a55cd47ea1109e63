//! Microsoft Entra ID's token endpoint for the client-credentials grant:
//! `POST {authority}/{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`,
//! `client_id`, `client_secret` and `scope=https://management.azure.com/.default`.
//!
//! Answers `{token_type: "Bearer", expires_in, ext_expires_in, access_token}`; refusals are
//! Entra's `{"error", "error_description": "AADSTSnnnn: ...", "error_codes": [nnnn], ...}`:
//! unknown tenant `invalid_request` AADSTS90002 (400), unknown client `unauthorized_client`
//! AADSTS700016 (400), wrong secret `invalid_client` AADSTS7000215 (401), a scope without
//! `/.default` `invalid_scope` AADSTS1002012 (400), another grant `unsupported_grant_type`
//! AADSTS70003 (400).

use axum::body::Bytes;
use axum::response::Response;
use serde_json::json;

use super::api::json_response;
use super::contract::parse_query;
use super::Shared;
use crate::util::{random_hex, rfc3339};

fn refuse(status: u16, error: &str, code: u32, text: &str) -> Response {
    let trace = super::state::stable_guid(&random_hex(16));
    let corr = super::state::stable_guid(&random_hex(16));
    json_response(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {corr} Timestamp: {}", rfc3339(std::time::SystemTime::now())),
            "error_codes": [code],
            "timestamp": rfc3339(std::time::SystemTime::now()),
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

pub(crate) fn token(sh: &Shared, tenant: &str, body: &Bytes) -> Response {
    let form = parse_query(&String::from_utf8_lossy(body));
    let get = |k: &str| {
        form.iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut st = sh.lock();
    if !st.cfg.tenant.eq_ignore_ascii_case(tenant) {
        return refuse(400, "invalid_request", 90002, &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."));
    }
    let grant = get("grant_type");
    if grant != "client_credentials" {
        return refuse(
            400,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        );
    }
    let client_id = get("client_id");
    let Some(i) = st
        .clients
        .iter()
        .position(|c| c.client_id == client_id && c.tenant.eq_ignore_ascii_case(tenant))
    else {
        return refuse(400, "unauthorized_client", 700016, &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."));
    };
    if st.clients[i].secret != get("client_secret") {
        return refuse(401, "invalid_client", 7000215, &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."));
    }
    let scope = get("scope");
    if !scope.ends_with("/.default") {
        return refuse(400, "invalid_scope", 1002012, &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."));
    }
    let principal = st.clients[i].object_id.clone();
    let access = st.issue_token(&principal);
    st.grants += 1;
    let ttl = st.cfg.token_ttl.as_secs();
    json_response(
        200,
        &json!({"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": access}),
    )
}
