//! Small helpers shared by the server and the agent: timestamps and random-looking tokens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// `t` as GitHub renders timestamps: RFC 3339, UTC, whole seconds (`2024-01-01T12:00:00Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let dt = OffsetDateTime::from(t);
    dt.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}

/// Current time as the runner listener prints it: `yyyy-MM-dd HH:mm:ssZ` (UTC).
pub fn agent_ts() -> String {
    OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default()
}

/// Seconds since the Unix epoch.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// Nanoseconds since the Unix epoch, now.
pub fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
}

/// `n` lowercase hex characters, unique within the process and unpredictable enough for tests.
pub fn random_hex(n: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::new();
    while out.len() < n {
        let mut h = Sha256::new();
        h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        h.update(unix_nanos().to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        out.push_str(&hex::encode(h.finalize()));
    }
    out.truncate(n);
    out
}

/// `n` uppercase alphanumeric characters (the shape of GitHub registration tokens).
pub fn random_upper(n: usize) -> String {
    random_hex(n).to_uppercase()
}

/// `POST url` with a JSON body from a command-line tool; prints the answer, returns the exit code.
pub fn post_json(url: &str, body: &serde_json::Value) -> i32 {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("cml-sim: cannot start a runtime");
        return 1;
    };
    rt.block_on(async {
        let Ok(client) = reqwest::Client::builder().no_proxy().build() else {
            eprintln!("cml-sim: cannot build an HTTP client");
            return 1;
        };
        match client.post(url).json(body).send().await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                println!("{}", resp.text().await.unwrap_or_default());
                if ok {
                    0
                } else {
                    1
                }
            }
            Err(e) => {
                eprintln!("cml-sim: {url}: {e}");
                1
            }
        }
    })
}

/// Decodes `%XX` escapes and `+` (form encoding).
pub fn percent_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `cml-sim FORGE queue-job --server URL --REPO_FLAG PATH --name NAME [--labels a,b]
/// --command CMD`: queues a job through `/_sim/FORGE/jobs`; returns the exit code.
pub fn queue_job_cli(args: &[String], forge: &str, repo_flag: &str) -> i32 {
    let a = crate::agent::Args::parse(args);
    let (Some(server), Some(repo), Some(name), Some(command)) = (
        a.value("server"),
        a.value(repo_flag),
        a.value("name"),
        a.value("command"),
    ) else {
        eprintln!("usage: cml-sim {forge} queue-job --server URL --{repo_flag} PATH --name NAME [--labels a,b] --command CMD");
        return 2;
    };
    let labels: Vec<String> = a
        .value("labels")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let body =
        serde_json::json!({repo_flag: repo, "name": name, "labels": labels, "command": command});
    post_json(
        &format!("{}/_sim/{forge}/jobs", server.trim_end_matches('/')),
        &body,
    )
}
