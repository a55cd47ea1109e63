//! The simulated Bitbucket Pipelines runner against the simulated Bitbucket: its console
//! lines, steps and their results, labels, deletion, signals, the test knobs, the Linux Shell
//! runner's `start.sh` and the `docker` stand-in.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cml_sim::bitbucket::{
    write_docker_standin, write_shell_runner, API_URL_VAR, DEFAULT_BITBUCKET_TOKEN,
};
use cml_sim::{JobState, SimConfig, SimServer};
use common::{wait_until, Agent, Http, EXE};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);
const REPO: &str = "octo/app";

fn server(offline_after: Duration) -> SimServer {
    let mut cfg = SimConfig::new(EXE);
    cfg.offline_after = offline_after;
    SimServer::start(cfg).unwrap()
}

fn admin() -> String {
    format!("Basic {DEFAULT_BITBUCKET_TOKEN}")
}

/// What a launcher learns by registering a runner.
struct Registered {
    account: String,
    repository: String,
    uuid: String,
    client_id: String,
    secret: String,
}

fn register(http: &Http, sim: &SimServer, name: &str, labels: &[&str]) -> Registered {
    let repo = http.call_auth(
        "GET",
        &format!("{}/2.0/repositories/{REPO}", sim.url()),
        Some(&admin()),
        None,
    );
    assert_eq!(repo.status, 200, "{}", repo.json);
    let r = http.call_auth(
        "POST",
        &format!(
            "{}/internal/repositories/{REPO}/pipelines-config/runners",
            sim.url()
        ),
        Some(&admin()),
        Some(json!({"name": name, "labels": labels})),
    );
    assert_eq!(r.status, 200, "{}", r.json);
    let ws = http.call_auth(
        "GET",
        &format!("{}/2.0/workspaces/octo", sim.url()),
        Some(&admin()),
        None,
    );
    assert_eq!(ws.json["uuid"], repo.json["workspace"]["uuid"]);
    let s = |v: &Value| v.as_str().unwrap().to_string();
    Registered {
        account: s(&repo.json["workspace"]["uuid"]),
        repository: s(&repo.json["uuid"]),
        uuid: s(&r.json["uuid"]),
        client_id: s(&r.json["oauth_client"]["id"]),
        secret: s(&r.json["oauth_client"]["secret"]),
    }
}

/// Where the simulated Linux Shell runner installed in `dir` has `start.sh` and `runner.jar`.
fn runner_bin(dir: &Path) -> std::path::PathBuf {
    dir.join("atlassian-bitbucket-pipelines-runner/bin")
}

/// Bitbucket's run command for a runner installed in `dir`: from its `bin` directory,
/// `./start.sh ... --runtime linux-shell --workingDirectory ../temp`.
fn shell_runner(dir: &Path, sim: &SimServer, r: &Registered, env: &[(&str, &str)]) -> Agent {
    write_shell_runner(dir, EXE.as_ref()).unwrap();
    let mut cmd = shell_runner_command(dir, r, &runner_bin(dir), "../temp");
    cmd.env(API_URL_VAR, sim.url());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Agent::spawn(cmd)
}

/// The installed `start.sh` of `dir` with the run command's arguments, started in `cwd`.
fn shell_runner_command(dir: &Path, r: &Registered, cwd: &Path, working_dir: &str) -> Command {
    let mut cmd = Command::new(runner_bin(dir).join("start.sh"));
    cmd.args([
        "--accountUuid",
        &r.account,
        "--repositoryUuid",
        &r.repository,
        "--runnerUuid",
        &r.uuid,
        "--OAuthClientId",
        &r.client_id,
        "--OAuthClientSecret",
        &r.secret,
        "--runtime",
        "linux-shell",
        "--workingDirectory",
        working_dir,
    ])
    .current_dir(cwd);
    cmd
}

/// `[YYYY-MM-DD HH:MM:SS,mmm] message`
fn is_runner_line(line: &str, message_start: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 26
        && b[0] == b'['
        && b[11] == b' '
        && b[20] == b','
        && line[24..].starts_with("] ")
        && line[1..24]
            .chars()
            .all(|c| c.is_ascii_digit() || "-: ,".contains(c))
        && line[26..].starts_with(message_start)
}

fn job_state(sim: &SimServer, id: &str) -> JobState {
    sim.bitbucket_job(id).expect("the step exists").state
}

const READY: &str = "Updating runner status to \"ONLINE\" and checking for new steps assigned to the runner after 0 seconds and then every 30 seconds.";

#[test]
fn shell_runner_runs_matching_steps_and_stops_taking_work_once_deleted() {
    let sim = server(Duration::from_secs(2));
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let r = register(&http, &sim, "shell-1", &["self.hosted", "linux.shell"]);
    let mut agent = shell_runner(dir.path(), &sim, &r, &[("CML_TEST_MARK", "inherited")]);
    let ready = agent.expect("Updating runner status", T);
    assert!(
        is_runner_line(&ready, READY) && ready.ends_with(READY),
        "{ready}"
    );
    let argv = std::fs::read_to_string(runner_bin(dir.path()).join(".sim-argv")).unwrap();
    assert!(
        argv.ends_with("--runtime\nlinux-shell\n--workingDirectory\n../temp\n"),
        "{argv}"
    );
    wait_until(T, "the runner is online", || {
        sim.bitbucket_runners()
            .iter()
            .any(|x| x.id == r.uuid && x.online && !x.busy)
    });

    // A step for other labels is left alone; a matching one runs in the runner's environment.
    let gpu = sim.bitbucket_queue_job(REPO, "gpu", &["self.hosted", "gpu"], "true");
    let ok = sim.bitbucket_queue_job(
        REPO,
        "build",
        &["self.hosted", "linux.shell"],
        "echo mark=$CML_TEST_MARK; pwd; env",
    );
    let started = agent.expect("Getting step", T);
    assert!(
        is_runner_line(&started, "Getting step StepId{"),
        "{started}"
    );
    let ids = format!(
        "Getting step StepId{{accountUuid={}, repositoryUuid={}, pipelineUuid={{",
        r.account, r.repository
    );
    assert!(started.contains(&ids), "{started}");
    assert!(
        started.ends_with(&format!("}}, stepUuid={ok}}}.")),
        "{started}"
    );
    let done = agent.expect("Completing step", T);
    assert!(
        done.ends_with("Completing step with result Result{status=PASSED, error=None}."),
        "{done}"
    );
    wait_until(T, "the step succeeded", || {
        job_state(&sim, &ok) == JobState::Succeeded
    });
    let job = sim.bitbucket_job(&ok).unwrap();
    assert_eq!(job.runner_name.as_deref(), Some("shell-1"));
    assert!(job.output.contains("mark=inherited"), "{}", job.output);
    // `../temp` from `bin`: the install's `temp` directory.
    let temp = dir
        .path()
        .join("atlassian-bitbucket-pipelines-runner/temp")
        .canonicalize()
        .unwrap();
    assert!(
        job.output.contains(&format!("\n{}\n", temp.display())),
        "{}",
        job.output
    );
    assert!(
        !job.output.contains(&r.secret),
        "the OAuth secret is not in a step's environment"
    );
    assert!(
        !agent.has("mark=inherited"),
        "the step's output is not on the console"
    );
    assert_eq!(job_state(&sim, &gpu), JobState::Queued);

    // A failing step.
    let bad = sim.bitbucket_queue_job(REPO, "bad", &["linux.shell"], "exit 3");
    wait_until(T, "the step failed", || {
        job_state(&sim, &bad) == JobState::Failed
    });
    agent.expect("Result{status=FAILED, error=None}.", T);

    // Deleted in Bitbucket: the runner says so and takes no more steps.
    let del = http.call_auth(
        "DELETE",
        &format!(
            "{}/internal/repositories/{REPO}/pipelines-config/runners/{}",
            sim.url(),
            r.uuid
        ),
        Some(&admin()),
        None,
    );
    assert_eq!(del.status, 204);
    agent.expect("Runner has been unregistered", T);
    let after = sim.bitbucket_queue_job(REPO, "after", &["linux.shell"], "true");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(job_state(&sim, &after), JobState::Queued);
    assert!(agent.child.try_wait().unwrap().is_none());
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.finish(T), 0);
    assert_eq!(
        sim.bitbucket_deletes(),
        [(r.uuid.clone(), "shell-1".into())]
    );
    assert!(sim.bitbucket_issued_secrets().contains(&r.secret));
    assert_eq!(sim.bitbucket_registered_names(), ["shell-1"]);
}

#[test]
fn a_long_step_keeps_the_runner_online_and_a_signal_stops_it() {
    let sim = server(Duration::from_secs(1));
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let r = register(&http, &sim, "long", &["self.hosted", "linux.shell"]);
    let mut agent = shell_runner(dir.path(), &sim, &r, &[]);
    agent.expect("Updating runner status", T);
    let step = sim.bitbucket_queue_job(REPO, "train", &[], "sleep 60");
    agent.expect("Getting step", T);
    // Longer than `offline_after`: still online, and busy.
    std::thread::sleep(Duration::from_millis(1600));
    let me = sim
        .bitbucket_runners()
        .into_iter()
        .find(|x| x.id == r.uuid)
        .unwrap();
    assert!(me.online && me.busy, "{me:?}");
    assert_eq!(job_state(&sim, &step), JobState::Running);

    let stopped_at = Instant::now();
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.finish(T), 0);
    assert!(stopped_at.elapsed() < Duration::from_secs(3));
    assert!(agent.has("Completing step with result Result{status=STOPPED, error=None}."));
    assert_eq!(job_state(&sim, &step), JobState::Cancelled);
    wait_until(T, "the stopped runner goes offline", || {
        sim.bitbucket_runners()
            .iter()
            .any(|x| x.id == r.uuid && !x.online && !x.busy)
    });
}

#[test]
fn knobs_crash_ignored_signals_split_writes_and_events() {
    let sim = server(Duration::from_secs(2));
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let r = register(&http, &sim, "knobs", &["self.hosted", "linux.shell"]);

    let mut agent = shell_runner(
        dir.path(),
        &sim,
        &r,
        &[("CML_SIM_AGENT_CRASH_AFTER_READY", "1")],
    );
    agent.expect("Updating runner status", T);
    assert_eq!(agent.finish(T), 1);
    assert!(agent
        .lines
        .iter()
        .any(|(stderr, l)| *stderr && l == "simulated agent crash"));

    let events = dir.path().join("events.jsonl");
    let mut agent = shell_runner(
        dir.path(),
        &sim,
        &r,
        &[
            ("CML_SIM_AGENT_IGNORE_SIGINT", "1"),
            ("CML_SIM_AGENT_SPLIT_WRITES", "1"),
            ("CML_SIM_AGENT_EVENTS_FILE", &events.to_string_lossy()),
        ],
    );
    let ready = agent.expect("Updating runner status", T);
    assert!(
        ready.ends_with(READY),
        "split writes still make whole lines"
    );
    let step = sim.bitbucket_queue_job(REPO, "s", &[], "sleep 60");
    agent.expect("Getting step", T);
    agent.signal(libc::SIGINT);
    agent.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(agent.child.try_wait().unwrap().is_none());
    assert_eq!(job_state(&sim, &step), JobState::Running);
    agent.signal(libc::SIGKILL);
    agent.finish(T);
    let logged = std::fs::read_to_string(&events).unwrap();
    let ev: Vec<Value> = logged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(ev
        .iter()
        .any(|e| e["line"].as_str().is_some_and(|l| l.ends_with(READY))
            && e["unix_nanos"].as_u64().unwrap() > 0));
}

#[test]
fn docker_standin_runs_the_runner_with_values_from_its_environment() {
    let sim = server(Duration::from_secs(2));
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    write_docker_standin(&bin, EXE.as_ref()).unwrap();
    let docker = bin.join("docker");
    assert!(Command::new(&docker)
        .arg("info")
        .output()
        .unwrap()
        .status
        .success());
    let r = register(&http, &sim, "docker-1", &["self.hosted", "linux"]);

    let mut cmd = Command::new(&docker);
    cmd.args([
        "container",
        "run",
        "-a",
        "stderr",
        "-a",
        "stdout",
        "--rm",
        "-v",
        "/tmp:/tmp",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        "/var/lib/docker/containers:/var/lib/docker/containers:ro",
    ]);
    for name in [
        "ACCOUNT_UUID",
        "REPOSITORY_UUID",
        "RUNNER_UUID",
        "RUNTIME_PREREQUISITES_ENABLED",
        "OAUTH_CLIENT_ID",
        "OAUTH_CLIENT_SECRET",
        "WORKING_DIRECTORY",
    ] {
        cmd.args(["-e", name]);
    }
    cmd.args(["--name", "runner-x", cml_sim::bitbucket::runner::IMAGE])
        .current_dir(&bin)
        .env(API_URL_VAR, sim.url())
        .env("ACCOUNT_UUID", &r.account)
        .env("REPOSITORY_UUID", &r.repository)
        .env("RUNNER_UUID", &r.uuid)
        .env("RUNTIME_PREREQUISITES_ENABLED", "true")
        .env("OAUTH_CLIENT_ID", &r.client_id)
        .env("OAUTH_CLIENT_SECRET", &r.secret)
        .env("WORKING_DIRECTORY", dir.path().join("work"))
        .env("CML_TEST_MARK", "client-only");
    let mut agent = Agent::spawn(cmd);
    agent.expect("Updating runner status", T);
    let argv = std::fs::read_to_string(bin.join("docker.argv")).unwrap();
    assert!(argv.contains("-e\nOAUTH_CLIENT_SECRET\n"), "{argv}");
    assert!(!argv.contains(&r.secret), "no secret on the command line");

    // Steps run in their own container: none of the client's environment.
    let step = sim.bitbucket_queue_job(
        REPO,
        "d",
        &["linux"],
        "echo mark=[$CML_TEST_MARK] oauth=[$OAUTH_CLIENT_SECRET]",
    );
    wait_until(T, "the step succeeded", || {
        job_state(&sim, &step) == JobState::Succeeded
    });
    let out = sim.bitbucket_job(&step).unwrap().output;
    assert!(out.contains("mark=[] oauth=[]"), "{out}");
    agent.signal(libc::SIGINT);
    assert_eq!(agent.finish(T), 0);

    // Another image is refused, as a mistyped one would be.
    let other = Command::new(&docker)
        .args(["container", "run", "--rm", "ubuntu"])
        .current_dir(&bin)
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(125));
}

#[test]
fn wrong_oauth_client_is_refused_and_the_runner_exits() {
    let sim = server(Duration::from_secs(2));
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    let mut r = register(&http, &sim, "wrong", &["self.hosted", "linux.shell"]);
    r.secret = "not-the-secret".into();
    let mut agent = shell_runner(dir.path(), &sim, &r, &[]);
    assert_eq!(agent.finish(T), 1);
    assert!(agent.has("Failed to update runner status: 401"));
    assert!(!agent.has("Updating runner status to"));
}

/// Atlassian's `start.sh` runs `java -jar ./runner.jar`: from anywhere but its `bin`
/// directory it cannot start, and it requires `--workingDirectory`.
#[test]
fn shell_runner_starts_only_from_its_bin_directory_and_with_a_working_directory() {
    let sim = server(Duration::from_secs(2));
    let http = Http::new();
    let dir = tempfile::tempdir().unwrap();
    write_shell_runner(dir.path(), EXE.as_ref()).unwrap();
    let r = register(&http, &sim, "where", &["self.hosted", "linux.shell"]);
    // Its exit code and what it printed on stderr (bounded: a runner that starts is killed).
    let run = |cwd: &Path, working_dir: &str| {
        let mut cmd = shell_runner_command(dir.path(), &r, cwd, working_dir);
        cmd.env(API_URL_VAR, sim.url());
        let mut agent = Agent::spawn(cmd);
        let code = agent.finish(T);
        let stderr: Vec<String> = agent
            .lines
            .iter()
            .filter(|(stderr, _)| *stderr)
            .map(|(_, l)| l.clone())
            .collect();
        (code, stderr)
    };
    for cwd in [dir.path().to_path_buf(), runner_bin(dir.path()).join("..")] {
        assert_eq!(
            run(&cwd, "../temp"),
            (
                1,
                vec!["Error: Unable to access jarfile ./runner.jar".to_string()]
            )
        );
    }
    assert_eq!(
        run(&runner_bin(dir.path()), ""),
        (
            1,
            vec!["start.sh: --workingDirectory is required.".to_string()]
        )
    );
    // Nothing reached Bitbucket: the runner never came online.
    assert!(sim
        .bitbucket_runners()
        .iter()
        .all(|x| x.id != r.uuid || !x.online));
}

#[test]
fn cli_help_install_and_queue_job() {
    let sim = server(Duration::from_secs(2));
    let help = Command::new(EXE)
        .args(["bitbucket", "help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("queue-job"));
    assert_eq!(
        Command::new(EXE)
            .args(["bitbucket", "nonsense"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );

    let dir = tempfile::tempdir().unwrap();
    let st = Command::new(EXE)
        .args(["bitbucket", "install", &dir.path().to_string_lossy()])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(runner_bin(dir.path()).join("start.sh").is_file());
    assert!(runner_bin(dir.path()).join("runner.jar").is_file());

    let out = Command::new(EXE)
        .args([
            "bitbucket",
            "queue-job",
            "--server",
            &sim.url(),
            "--repo",
            REPO,
            "--name",
            "from-cli",
            "--labels",
            "self.hosted,gpu",
            "--command",
            "true",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = answer["step_uuid"].as_str().unwrap();
    let job = sim.bitbucket_job(id).unwrap();
    assert_eq!(
        (job.name.as_str(), job.state),
        ("from-cli", JobState::Queued)
    );
}
