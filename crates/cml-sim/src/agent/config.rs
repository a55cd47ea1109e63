//! `config.sh` (register) and `config.sh remove` (unregister).
//!
//! Exit codes: 0 on success, 1 on any error (message on stderr).

use serde_json::json;

use super::args::Args;
use super::client::Client;
use super::files;
use super::out::Out;

/// Split a repository/organization page URL into (server root, scope path).
fn split_url(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_matches('/').to_string();
    let segs = path.split('/').filter(|s| !s.is_empty()).count();
    if host.is_empty() || !(1..=2).contains(&segs) {
        return None;
    }
    Some((format!("{scheme}://{host}"), path))
}

fn section(out: &Out, title: &str) {
    out.line("");
    out.line(&format!("# {title}"));
    out.line("");
}

fn http_error(out: &Out, server: &str, status: u16, what: &str) -> i32 {
    let reason = match status {
        404 => "NotFound",
        409 => "Conflict",
        401 => "Unauthorized",
        422 => "UnprocessableEntity",
        _ => "InternalServerError",
    };
    out.err(&format!(
        "Http response code: {reason} from 'POST {server}/actions/{what}'"
    ));
    out.err(&format!(
        "An error occurred: Response status code does not indicate success: {status} ({reason})."
    ));
    1
}

/// `config.sh --url URL --token T --name N --labels a,b --work DIR [--ephemeral] [--replace] …`
pub async fn configure(out: &Out, args: &Args) -> i32 {
    let root = super::root_dir();
    if files::configured(&root) {
        out.err("Cannot configure the runner because it is already configured. To reconfigure the runner, run 'config.cmd remove' or './config.sh remove' first.");
        return 1;
    }
    let Some(url) = args.value("url") else {
        out.err("Invalid configuration provided for url. Terminating unattended configuration.");
        return 1;
    };
    let Some(token) = args.value("token") else {
        out.err("Invalid configuration provided for token. Terminating unattended configuration.");
        return 1;
    };
    let Some((server, scope)) = split_url(&url) else {
        out.err(&format!(
            "An error occurred: Invalid URL '{url}': expected a repository or organization URL."
        ));
        return 1;
    };
    let name = args.value("name").unwrap_or_else(hostname);
    let labels: Vec<String> = args
        .value("labels")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let work = args.value("work").unwrap_or_else(|| "_work".to_string());
    let ephemeral = args.flag("ephemeral");
    let client = match Client::new(&server) {
        Ok(c) => c,
        Err(e) => {
            out.err(&format!("An error occurred: {e}"));
            return 1;
        }
    };
    out.line("");
    out.line("--------------------------------------------------------------------------------");
    out.line("|                 Self-hosted runner registration (simulated)                  |");
    out.line("--------------------------------------------------------------------------------");
    section(out, "Authentication");
    let body = json!({
        "token": token, "scope": scope, "name": name, "labels": labels,
        "ephemeral": ephemeral, "replace": args.flag("replace"),
        "runner_group": args.value("runnergroup").unwrap_or_else(|| "Default".into()),
    });
    let answer = match client.call("register", &body).await {
        Ok(a) => a,
        Err(e) => {
            out.err(&format!("An error occurred: {e}"));
            return 1;
        }
    };
    if answer.status == 404 {
        return http_error(out, &server, 404, "runner-registration");
    }
    out.line("");
    out.line("√ Connected to GitHub");
    section(out, "Runner Registration");
    if answer.status == 409 {
        out.err(&format!("A runner exists with the same name {name}."));
        out.err(
            "An error occurred: A runner exists with the same name; use --replace to replace it.",
        );
        return 1;
    }
    if answer.status != 201 {
        return http_error(out, &server, answer.status, "runner-registration");
    }
    let id = answer.body.get("id").and_then(|v| v.as_u64()).unwrap_or(0);
    let credential = answer
        .body
        .get("credential")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    out.line("√ Runner successfully added");
    out.line("√ Runner connection is good");
    section(out, "Runner settings");
    let runner = files::runner_file(id, &name, &server, &url, &work, ephemeral);
    let creds = files::credentials_file(&server, credential);
    if let Err(e) = files::save(&root, &runner, &creds) {
        out.err(&format!("An error occurred: {e}"));
        return 1;
    }
    out.line("");
    out.line("√ Settings Saved.");
    out.line("");
    0
}

/// `config.sh remove --token T` (a remove token).
pub async fn remove(out: &Out, args: &Args) -> i32 {
    let root = super::root_dir();
    let settings = match files::load(&root) {
        Ok(s) => s,
        Err(e) => {
            out.err(&format!("An error occurred: {e}"));
            return 1;
        }
    };
    let Some(token) = args.value("token") else {
        out.err("Invalid configuration provided for token. Terminating unattended configuration.");
        return 1;
    };
    let url = std::fs::read(root.join(".runner"))
        .ok()
        .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
        .and_then(|v| {
            v.get("gitHubUrl")
                .and_then(|u| u.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let scope = split_url(&url).map(|(_, s)| s).unwrap_or_default();
    let client = match Client::new(&settings.server_url) {
        Ok(c) => c,
        Err(e) => {
            out.err(&format!("An error occurred: {e}"));
            return 1;
        }
    };
    section(out, "Runner removal");
    match client
        .call(
            "remove",
            &json!({"token": token, "scope": scope, "id": settings.id}),
        )
        .await
    {
        Ok(a) if a.status == 204 => out.line("√ Runner removed successfully"),
        Ok(a) => return http_error(out, &settings.server_url, a.status, "runner-registration"),
        Err(e) => {
            out.err(&format!("An error occurred: {e}"));
            return 1;
        }
    }
    files::remove(&root, out);
    0
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "runner".to_string())
}
