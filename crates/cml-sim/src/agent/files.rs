//! The agent's local configuration: `.runner` and `.credentials` (mode 0600) in its directory.

use std::io;
use std::path::Path;

use serde_json::{json, Value};

/// Contents of `.runner`.
pub fn runner_file(
    id: u64,
    name: &str,
    server_url: &str,
    github_url: &str,
    work: &str,
    ephemeral: bool,
) -> Value {
    json!({
        "agentId": id, "agentName": name, "poolId": 1, "poolName": "Default",
        "serverUrl": server_url, "gitHubUrl": github_url, "workFolder": work,
        "ephemeral": ephemeral, "disableUpdate": true,
    })
}

/// Contents of `.credentials`.
pub fn credentials_file(server_url: &str, credential: &str) -> Value {
    json!({
        "scheme": "OAuth",
        "data": {
            "clientId": crate::util::random_hex(32),
            "authorizationUrl": format!("{server_url}/_sim/agent/oauth"),
            "requireFipsCryptography": "False",
            "token": credential,
        }
    })
}

/// What `run` needs from the two files.
#[derive(Clone, Debug)]
pub struct Settings {
    pub id: u64,
    pub name: String,
    pub server_url: String,
    pub work: String,
    pub ephemeral: bool,
    pub credential: String,
}

/// Write both files (`.credentials` with mode 0600).
pub fn save(root: &Path, runner: &Value, credentials: &Value) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::write(root.join(".runner"), serde_json::to_vec_pretty(runner)?)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(root.join(".credentials"))?;
    f.write_all(&serde_json::to_vec_pretty(credentials)?)?;
    Ok(())
}

/// Whether `.runner` exists.
pub fn configured(root: &Path) -> bool {
    root.join(".runner").exists()
}

/// Read both files.
pub fn load(root: &Path) -> Result<Settings, String> {
    let read = |name: &str| -> Result<Value, String> {
        let data = std::fs::read(root.join(name)).map_err(|_| {
            "Not configured. Run config.(sh/cmd) to configure the runner.".to_string()
        })?;
        serde_json::from_slice(&data).map_err(|e| format!("{name} is corrupted: {e}"))
    };
    let runner = read(".runner")?;
    let creds = read(".credentials")?;
    settings(&runner, &creds)
}

/// Settings from the two documents.
pub fn settings(runner: &Value, creds: &Value) -> Result<Settings, String> {
    let s = |k: &str| {
        runner
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Ok(Settings {
        id: runner
            .get("agentId")
            .and_then(Value::as_u64)
            .ok_or(".runner has no agentId")?,
        name: s("agentName"),
        server_url: s("serverUrl"),
        work: s("workFolder"),
        ephemeral: runner
            .get("ephemeral")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        credential: creds
            .pointer("/data/token")
            .and_then(Value::as_str)
            .ok_or(".credentials has no token")?
            .to_string(),
    })
}

/// Delete both files, printing `√ Removed .credentials` / `√ Removed .runner` as the runner does.
pub fn remove(root: &Path, out: &super::out::Out) {
    for name in [".credentials", ".runner"] {
        if std::fs::remove_file(root.join(name)).is_ok() {
            out.line(&format!("√ Removed {name}"));
        }
    }
}
