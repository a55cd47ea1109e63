//! The simulated `gitlab-runner`: `gitlab-runner [--log-format=json] run-single --url URL
//! [--token T] --executor docker|shell [--wait-timeout N] [--max-builds N] ...`.
//!
//! What a supervisor observes is gitlab-runner's: logrus lines on stderr (JSON with sorted
//! keys, or text), `Starting runner for <url> with token <short> ...` when it starts,
//! `Checking for jobs... received` with `job` when it takes one, `Job succeeded` / `Job failed:
//! exit code N` with `duration_s` when it ends one, `This runner has not received a job in N
//! seconds, so now exiting` and exit 0 after `--wait-timeout`, exit 0 after `--max-builds`.
//! The runner comes from `--config FILE --runner NAME` (the file must not be readable by
//! others) or from `--url` and `--token`/`CI_SERVER_TOKEN`, as gitlab-runner reads them. It
//! talks to GitLab's real runner API (`/api/v4/jobs/request`, job updates, traces). The
//! non-secret settings it read from the file are appended to `./.sim-argv` as `config KEY=VALUE`.
//!
//! Jobs run with `sh -c` in `--builds-dir`: with the shell executor in the runner's own
//! environment (as gitlab-runner's shell executor does), with the docker executor in a clean
//! one (the job's container has only the job's variables).
//!
//! Knobs: `CML_SIM_GITLAB_QUIET_JOBS=1` (print nothing about jobs taken and finished: a
//! supervisor sees the runner idle while it runs a job, as in the moment between taking a
//! job and printing so), `CML_SIM_AGENT_IGNORE_SIGINT`, `CML_SIM_AGENT_CRASH_AFTER_READY`,
//! `CML_SIM_AGENT_IGNORE_WAIT_TIMEOUT` (never exit for `--wait-timeout`, so that the
//! supervisor's own idle deadline comes first),
//! `CML_SIM_AGENT_SPLIT_WRITES` (stdout only; gitlab-runner writes to stderr),
//! `CML_SIM_AGENT_EVENTS_FILE`. The arguments received are written to `./.sim-argv`.
//!
//! Signals, as `run-single` handles them: SIGINT and SIGTERM abort a running job (it fails)
//! and exit; SIGQUIT lets a running job finish, takes no new one, and exits 0.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::signal::unix::{signal, SignalKind};

use crate::agent::out::Out;

const POLL_EVERY: Duration = Duration::from_millis(100);

/// Parsed gitlab-runner arguments.
#[derive(Debug, Default)]
struct Opts {
    json: bool,
    url: String,
    token: String,
    executor: String,
    wait_timeout: u64,
    max_builds: u64,
    builds_dir: Option<String>,
    config: Option<String>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter().peekable();
    let mut sub = None;
    while let Some(a) = it.next() {
        let (name, inline) = match a.strip_prefix("--") {
            Some(n) => match n.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (n.to_string(), None),
            },
            None => {
                sub.get_or_insert(a.clone());
                continue;
            }
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .unwrap_or_default()
        };
        match name.as_str() {
            "log-format" => o.json = value() == "json",
            "url" => o.url = value(),
            "token" => o.token = value(),
            "executor" => o.executor = value(),
            "wait-timeout" => o.wait_timeout = value().parse().map_err(|_| "bad --wait-timeout")?,
            "max-builds" => o.max_builds = value().parse().map_err(|_| "bad --max-builds")?,
            "builds-dir" => o.builds_dir = Some(value()),
            "config" | "c" => o.config = Some(value()),
            "debug" => {}
            _ => {
                value();
            }
        }
    }
    if sub.as_deref() != Some("run-single") {
        return Err("only run-single is simulated".into());
    }
    if let Some(path) = o.config.clone() {
        read_config(&mut o, &path)?;
    }
    if o.url.is_empty() {
        o.url = std::env::var("CI_SERVER_URL").unwrap_or_default();
    }
    if o.token.is_empty() {
        o.token = std::env::var("CI_SERVER_TOKEN").unwrap_or_default();
    }
    if o.url.is_empty() || o.token.is_empty() {
        return Err("missing --url or --token".into());
    }
    if o.executor.is_empty() {
        return Err("missing --executor".into());
    }
    Ok(o)
}

/// Reads the runner's settings from a gitlab-runner `config.toml` (the subset `cml` writes).
fn read_config(o: &mut Opts, path: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!("{path} is readable by other users"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut noted = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(" = ") else {
            continue;
        };
        let k = k.trim();
        let v = v.trim();
        let unquoted = || {
            v.trim_matches('"')
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        };
        match k {
            "url" => o.url = unquoted(),
            "token" => o.token = unquoted(),
            "executor" => o.executor = unquoted(),
            "builds_dir" => o.builds_dir = Some(unquoted()),
            "image" | "runtime" | "gpus" | "volumes" | "name" | "cache_dir" => {}
            _ => continue,
        }
        if k != "token" {
            noted.push(format!("config {k}={v}"));
        }
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(".sim-argv") {
        use std::io::Write;
        let _ = writeln!(f, "{}", noted.join("\n"));
    }
    Ok(())
}

struct Log<'a> {
    out: &'a Out,
    json: bool,
    /// Print nothing.
    quiet: bool,
}

impl Log<'_> {
    /// One logrus record on stderr.
    fn log(&self, level: &str, msg: &str, fields: &[(&str, Value)]) {
        if self.quiet {
            return;
        }
        let time = crate::util::rfc3339(std::time::SystemTime::now());
        if self.json {
            let mut m: BTreeMap<&str, Value> = fields.iter().cloned().collect();
            m.insert("level", json!(level));
            m.insert("msg", json!(msg));
            m.insert("time", json!(time));
            self.out.err(&serde_json::to_string(&m).unwrap_or_default());
        } else {
            let prefix = match level {
                "warning" => "WARNING: ",
                "error" => "ERROR: ",
                _ => "",
            };
            let f: Vec<String> = fields
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            self.out.err(&format!("{prefix}{msg:<50}  {}", f.join(" ")));
        }
    }
}

fn env_on(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Entry point; returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    let _ = std::fs::write(".sim-argv", args.join("\n") + "\n");
    let out = Out::from_env();
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            out.err(&format!("FATAL: {e}"));
            return 1;
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 1;
    };
    rt.block_on(run(&out, opts))
}

async fn run(out: &Out, o: Opts) -> i32 {
    let log = Log {
        out,
        json: o.json,
        quiet: false,
    };
    let short: String = o
        .token
        .trim_start_matches("glrt-")
        .chars()
        .take(8)
        .collect();
    let short_v = json!(short);
    log.log(
        "info",
        "Runtime platform",
        &[
            ("arch", json!("amd64")),
            ("os", json!("linux")),
            ("pid", json!(std::process::id())),
            ("revision", json!("a1b2c3d4")),
            ("version", json!(super::GITLAB_RUNNER_VERSION)),
        ],
    );
    let (Ok(mut sigint), Ok(mut sigterm), Ok(mut sigquit)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::quit()),
    ) else {
        return 1;
    };
    let ignore = env_on("CML_SIM_AGENT_IGNORE_SIGINT");
    let Ok(http) = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
    else {
        return 1;
    };
    let api = format!("{}/api/v4", o.url.trim_end_matches('/'));
    log.log(
        "info",
        &format!("Starting runner for {} with token {short} ...", o.url),
        &[],
    );
    if env_on("CML_SIM_AGENT_CRASH_AFTER_READY") {
        log.log("fatal", "simulated agent crash", &[]);
        return 1;
    }
    let mut builds = 0u64;
    let mut last_build = Instant::now();
    let wait_timeout = if env_on("CML_SIM_AGENT_IGNORE_WAIT_TIMEOUT") {
        0
    } else {
        o.wait_timeout
    };
    let mut forbidden_logged = false;
    let mut quitting = false;
    loop {
        if wait_timeout > 0 && last_build.elapsed() >= Duration::from_secs(wait_timeout) {
            log.log(
                "info",
                &format!(
                    "This runner has not received a job in {wait_timeout} seconds, so now exiting"
                ),
                &[],
            );
            return 0;
        }
        let resp = http
            .post(format!("{api}/jobs/request"))
            .json(&json!({"token": o.token, "info": {"name": "gitlab-runner", "version": super::GITLAB_RUNNER_VERSION, "executor": o.executor}}))
            .send()
            .await;
        match resp {
            Ok(r) if r.status().as_u16() == 201 => {
                forbidden_logged = false;
                let job: Value = r.json().await.unwrap_or(Value::Null);
                let id = job["id"].as_u64().unwrap_or(0);
                let jobs_log = Log {
                    out,
                    json: o.json,
                    quiet: env_on("CML_SIM_GITLAB_QUIET_JOBS"),
                };
                jobs_log.log(
                    "info",
                    "Checking for jobs... received",
                    &[
                        ("job", json!(id)),
                        ("repo_url", job["git_info"]["repo_url"].clone()),
                        ("runner", short_v.clone()),
                    ],
                );
                let started = Instant::now();
                // SIGQUIT is gitlab-runner's graceful stop: the running job finishes, no new
                // one is taken. SIGINT and SIGTERM abort the job.
                let job_run = run_job(&http, &api, &job, &o);
                tokio::pin!(job_run);
                let outcome = loop {
                    tokio::select! {
                        r = &mut job_run => break Outcome::Done(r),
                        _ = sigint.recv(), if !ignore => break Outcome::Interrupted("interrupt"),
                        _ = sigterm.recv(), if !ignore => break Outcome::Interrupted("terminated"),
                        _ = sigquit.recv(), if !ignore && !quitting => {
                            quitting = true;
                            log.log("warning", "Requested quit, waiting for builds to finish", &[]);
                        }
                    }
                };
                let job_token = job["token"].as_str().unwrap_or_default();
                let duration = json!(started.elapsed().as_secs_f64());
                let fields = [
                    ("duration_s", duration),
                    ("job", json!(id)),
                    ("project", job["job_info"]["project_id"].clone()),
                    ("runner", short_v.clone()),
                ];
                match outcome {
                    Outcome::Done(Ok(())) => {
                        update(&http, &api, id, job_token, "success").await;
                        jobs_log.log("info", "Job succeeded", &fields);
                    }
                    Outcome::Done(Err(code)) => {
                        update(&http, &api, id, job_token, "failed").await;
                        jobs_log.log("warning", &format!("Job failed: exit code {code}"), &fields);
                    }
                    Outcome::Interrupted(sig) => {
                        update(&http, &api, id, job_token, "failed").await;
                        log.log(
                            "error",
                            &format!("Job failed (system failure): aborted: {sig}"),
                            &fields,
                        );
                        return 0;
                    }
                }
                builds += 1;
                last_build = Instant::now();
                if quitting {
                    return 0;
                }
                if o.max_builds > 0 && builds >= o.max_builds {
                    log.log(
                        "info",
                        "This runner has processed its build limit, so now exiting",
                        &[],
                    );
                    return 0;
                }
                continue;
            }
            Ok(r) if r.status().as_u16() == 403 => {
                if !forbidden_logged {
                    log.log(
                        "warning",
                        "Checking for jobs... forbidden",
                        &[
                            ("runner", short_v.clone()),
                            ("status", json!("403 Forbidden")),
                        ],
                    );
                    forbidden_logged = true;
                }
            }
            Ok(_) => {}
            Err(e) => log.log(
                "error",
                "Checking for jobs... error",
                &[("error", json!(e.to_string())), ("runner", short_v.clone())],
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = sigint.recv(), if !ignore => return 0,
            _ = sigterm.recv(), if !ignore => return 0,
            _ = sigquit.recv(), if !ignore => return 0,
        }
    }
}

enum Outcome {
    Done(Result<(), i32>),
    Interrupted(&'static str),
}

/// Runs the job's script and sends its trace; `Err(exit code)` when it failed.
async fn run_job(http: &reqwest::Client, api: &str, job: &Value, o: &Opts) -> Result<(), i32> {
    let id = job["id"].as_u64().unwrap_or(0);
    let script: Vec<String> = job["steps"][0]["script"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let dir = o
        .builds_dir
        .clone()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("gitlab-runner-builds"));
    let _ = std::fs::create_dir_all(&dir);
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(script.join("\n"))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if o.executor != "shell" {
        // A container starts from the image's environment plus the job's variables.
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", "/root");
    }
    if let Some(vars) = job["variables"].as_array() {
        for v in vars {
            if let (Some(k), Some(val)) = (v["key"].as_str(), v["value"].as_str()) {
                cmd.env(k, val);
            }
        }
    }
    let output = cmd.output().await;
    let (code, trace) = match output {
        Ok(out) => (
            out.status.code().unwrap_or(1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (1, format!("cannot run the job: {e}\n")),
    };
    let _ = http
        .patch(format!("{api}/jobs/{id}/trace"))
        .header("JOB-TOKEN", job["token"].as_str().unwrap_or_default())
        .body(trace)
        .send()
        .await;
    if code == 0 {
        Ok(())
    } else {
        Err(code)
    }
}

async fn update(http: &reqwest::Client, api: &str, id: u64, token: &str, state: &str) {
    let _ = http
        .put(format!("{api}/jobs/{id}"))
        .json(&json!({"token": token, "state": state}))
        .send()
        .await;
}
