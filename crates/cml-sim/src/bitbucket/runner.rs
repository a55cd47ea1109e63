//! The simulated Bitbucket Pipelines runner, started either like the Linux Shell runner
//! (`start.sh --accountUuid .. --repositoryUuid .. --runnerUuid .. --OAuthClientId ..
//! --OAuthClientSecret .. --runtime linux-shell --workingDirectory DIR`) or like the Docker
//! runner image (values in `ACCOUNT_UUID`, `REPOSITORY_UUID`, `RUNNER_UUID`, `OAUTH_CLIENT_ID`,
//! `OAUTH_CLIENT_SECRET`, `WORKING_DIRECTORY`), through the `docker` stand-in.
//!
//! As Atlassian's `start.sh`, the Shell runner requires `--accountUuid`, `--runnerUuid`,
//! `--OAuthClientId`, `--OAuthClientSecret`, `--workingDirectory` and `--runtime`
//! (`--repositoryUuid` is optional), and then runs `java -jar ./runner.jar`: a path relative
//! to the current directory, so it fails with Java's `Error: Unable to access jarfile
//! ./runner.jar` (exit 1) unless it is started from the install's `bin` directory, which holds
//! `runner.jar` (Bitbucket's instructions: go to the `bin` directory and run the command shown,
//! `... --workingDirectory ../temp`). A relative working directory is taken from there.
//!
//! It prints the runner's lines on stdout, as `[YYYY-MM-DD HH:MM:SS,mmm] message`: `Updating
//! runner status to "ONLINE" ...` once connected, `Getting step StepId{...}.` when it takes a
//! step, `Completing step with result Result{status=PASSED|FAILED|STOPPED, error=None}.` when
//! the step ends; while a step runs it keeps reporting itself, so it stays `ONLINE`. Steps run with `sh -c` in the working directory: in the runner's own
//! environment for the Shell runner (as its steps do), in a clean one for the Docker runner
//! (each step gets its own container). SIGINT/SIGTERM stop it; a running step ends STOPPED.
//! A runner deleted in Bitbucket is refused (`401`): the runner logs it and keeps retrying,
//! taking no more work.
//!
//! Knobs: `CML_SIM_AGENT_IGNORE_SIGINT`, `CML_SIM_AGENT_CRASH_AFTER_READY`,
//! `CML_SIM_AGENT_SPLIT_WRITES`, `CML_SIM_AGENT_EVENTS_FILE`. Arguments go to `./.sim-argv`
//! (start.sh) or `./docker.argv` (docker).

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::signal::unix::{signal, SignalKind};

use crate::agent::out::Out;

const POLL_EVERY: Duration = Duration::from_millis(100);
/// How often a runner busy with a step reports itself (well within the simulator's
/// `offline_after`).
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// The runner image `cml` runs (Atlassian's).
pub const IMAGE: &str =
    "docker-public.packages.atlassian.com/sox/atlassian/bitbucket-pipelines-runner:1";

struct Opts {
    server: String,
    account: String,
    repository: String,
    runner: String,
    client_id: String,
    client_secret: String,
    working_dir: String,
    /// Steps run in their own container (clean environment).
    containerized: bool,
}

fn ts() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second],[subsecond digits:3]"
        ))
        .unwrap_or_default()
}

fn env_on(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// What Atlassian's `start.sh` runs, relative to the current directory.
pub const RUNNER_JAR: &str = "runner.jar";

/// `start.sh ARGS`, in the current directory it was started from.
pub fn main(args: Vec<String>) -> i32 {
    let _ = std::fs::write(".sim-argv", args.join("\n") + "\n");
    let mut v: HashMap<String, String> = HashMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            v.insert(name.to_string(), it.next().cloned().unwrap_or_default());
        }
    }
    let get = |k: &str| v.get(k).cloned().unwrap_or_default();
    // start.sh's `${VAR:?'--option is required.'}` checks, in its order.
    for option in [
        "accountUuid",
        "runnerUuid",
        "OAuthClientId",
        "OAuthClientSecret",
        "workingDirectory",
        "runtime",
    ] {
        if get(option).is_empty() {
            eprintln!("start.sh: --{option} is required.");
            return 1;
        }
    }
    // `exec java -jar ... ./runner.jar`
    if !std::path::Path::new(RUNNER_JAR).is_file() {
        eprintln!("Error: Unable to access jarfile ./{RUNNER_JAR}");
        return 1;
    }
    if get("runtime") != "linux-shell" {
        eprintln!("Unsupported runtime: {:?}", get("runtime"));
        return 1;
    }
    // The JVM resolves a relative working directory against the current directory.
    let working_dir = match std::path::absolute(get("workingDirectory")) {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(e) => {
            eprintln!("cannot resolve the working directory: {e}");
            return 1;
        }
    };
    run(Opts {
        server: std::env::var(super::API_URL_VAR).unwrap_or_default(),
        account: get("accountUuid"),
        repository: get("repositoryUuid"),
        runner: get("runnerUuid"),
        client_id: get("OAuthClientId"),
        client_secret: get("OAuthClientSecret"),
        working_dir,
        containerized: false,
    })
}

/// The `docker` stand-in: `docker info`, `docker container run ...`.
pub fn docker_main(args: Vec<String>) -> i32 {
    match args.first().map(String::as_str) {
        Some("info") => {
            println!("Server Version: simulated");
            return 0;
        }
        Some("container") if args.get(1).map(String::as_str) == Some("run") => {}
        _ => {
            eprintln!("docker stand-in: only `info` and `container run` are simulated");
            return 1;
        }
    }
    let _ = std::fs::write("docker.argv", args.join("\n") + "\n");
    let mut env: HashMap<String, String> = HashMap::new();
    let mut image = None;
    let mut it = args[2..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-e" | "--env" => {
                let spec = it.next().cloned().unwrap_or_default();
                match spec.split_once('=') {
                    Some((k, val)) => env.insert(k.to_string(), val.to_string()),
                    None => env.insert(spec.clone(), std::env::var(&spec).unwrap_or_default()),
                };
            }
            "-v" | "--volume" | "--name" | "-a" | "--attach" => {
                it.next();
            }
            s if s.starts_with('-') => {}
            s => {
                image = Some(s.to_string());
                break;
            }
        }
    }
    if image.as_deref() != Some(IMAGE) {
        eprintln!("docker stand-in: unexpected image {image:?}");
        return 125;
    }
    let get = |k: &str| env.get(k).cloned().unwrap_or_default();
    run(Opts {
        server: std::env::var(super::API_URL_VAR).unwrap_or_default(),
        account: get("ACCOUNT_UUID"),
        repository: get("REPOSITORY_UUID"),
        runner: get("RUNNER_UUID"),
        client_id: get("OAUTH_CLIENT_ID"),
        client_secret: get("OAUTH_CLIENT_SECRET"),
        working_dir: get("WORKING_DIRECTORY"),
        containerized: true,
    })
}

fn run(o: Opts) -> i32 {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 1;
    };
    rt.block_on(serve(o))
}

async fn serve(o: Opts) -> i32 {
    let out = Out::from_env();
    let say = |msg: &str| out.line(&format!("[{}] {msg}", ts()));
    if o.server.is_empty() || o.runner.is_empty() || o.client_secret.is_empty() {
        say("Runner configuration is incomplete: set the account, repository and runner UUIDs and the OAuth client.");
        return 1;
    }
    let ignore = env_on("CML_SIM_AGENT_IGNORE_SIGINT");
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return 1;
    };
    let Ok(http) = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
    else {
        return 1;
    };
    let base = format!("{}/_sim/bitbucket/runner", o.server.trim_end_matches('/'));
    let auth = json!({"runner_uuid": o.runner, "client_id": o.client_id, "client_secret": o.client_secret});
    let call = |action: &str, extra: Value| {
        let mut body = auth.clone();
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        http.post(format!("{base}/{action}")).json(&body).send()
    };
    say("Starting websocket listening to RUNNER_UPDATED events.");
    match call("state", json!({"status": "ONLINE"})).await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            say(&format!("Failed to update runner status: {}", r.status()));
            return 1;
        }
        Err(e) => {
            say(&format!("Failed to connect: {e}"));
            return 1;
        }
    }
    say("Updating runner status to \"ONLINE\" and checking for new steps assigned to the runner after 0 seconds and then every 30 seconds.");
    if env_on("CML_SIM_AGENT_CRASH_AFTER_READY") {
        eprintln!("simulated agent crash");
        return 1;
    }
    let mut refused = false;
    loop {
        match call("next", json!({})).await {
            Ok(r) if r.status().as_u16() == 200 => {
                refused = false;
                let step: Value = r.json().await.unwrap_or(Value::Null);
                let (pipeline, uuid) = (
                    step["pipeline_uuid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    step["step_uuid"].as_str().unwrap_or_default().to_string(),
                );
                say(&format!(
                    "Getting step StepId{{accountUuid={}, repositoryUuid={}, pipelineUuid={pipeline}, stepUuid={uuid}}}.",
                    o.account, o.repository
                ));
                let command = step["command"].as_str().unwrap_or("true").to_string();
                let mut step_run = Box::pin(run_step(&command, &o));
                // The runner keeps reporting itself while a step runs, so it stays ONLINE.
                let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
                let (status, output, stop) = loop {
                    tokio::select! {
                        r = &mut step_run => break (if r.0 == 0 { "PASSED" } else { "FAILED" }, r.1, false),
                        _ = sigint.recv(), if !ignore => break ("STOPPED", String::new(), true),
                        _ = sigterm.recv(), if !ignore => break ("STOPPED", String::new(), true),
                        _ = beat.tick() => {
                            let _ = call("state", json!({"status": "ONLINE"})).await;
                        }
                    }
                };
                // A stopped step's shell is killed here (`kill_on_drop`).
                drop(step_run);
                let _ = call(
                    "result",
                    json!({"step_uuid": uuid, "status": status, "output": output}),
                )
                .await;
                say(&format!(
                    "Completing step with result Result{{status={status}, error=None}}."
                ));
                if stop {
                    say("Runner shutting down.");
                    return 0;
                }
            }
            Ok(r) if r.status().as_u16() == 401 => {
                if !refused {
                    say("Runner has been unregistered or its credentials were revoked; retrying.");
                    refused = true;
                }
            }
            Ok(_) => {}
            Err(e) => say(&format!("Error while checking for steps: {e}")),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = sigint.recv(), if !ignore => { say("Runner shutting down."); return 0; }
            _ = sigterm.recv(), if !ignore => { say("Runner shutting down."); return 0; }
        }
    }
}

/// Runs a step's command: (exit code, output).
async fn run_step(command: &str, o: &Opts) -> (i32, String) {
    let dir = if o.working_dir.is_empty() {
        std::env::temp_dir()
    } else {
        std::path::PathBuf::from(&o.working_dir)
    };
    let _ = std::fs::create_dir_all(&dir);
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if o.containerized {
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", "/root");
    }
    match cmd.output().await {
        Ok(out) => (
            out.status.code().unwrap_or(1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (1, format!("cannot run the step: {e}\n")),
    }
}
