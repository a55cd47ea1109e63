//! Drop-in compatibility with CML's command line, through the real binary: the commands CML
//! has besides the runner and the reports (`workflow rerun` and `rerun-workflow` on each
//! forge, `repo prepare`, `tensorboard connect` and `tensorboard-dev`), plugins (`cml X` runs
//! `cml-X` from `PATH`) and `--version`.

mod harness;

use harness::{Kind, World};
use std::time::Duration;

/// What a finished `cml` run printed.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(mut cmd: std::process::Command) -> Out {
    let out = cmd.output().expect("cml runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `cml ARGS` against the world's repository with its admin token.
fn cml(w: &World, args: &[&str]) -> std::process::Command {
    let mut cmd = w.cml(args);
    cmd.env("REPO_TOKEN", w.kind.token())
        .env("CML_REPO", w.repo_url())
        .env("CML_DRIVER", w.kind.driver());
    cmd
}

/// The run (GitHub), pipeline (GitLab) or pipeline `{uuid}` (Bitbucket) of job `job`.
fn run_of(w: &World, job: &str) -> String {
    match w.kind {
        Kind::Github => w
            .sim
            .jobs()
            .into_iter()
            .find(|j| j.id.to_string() == job)
            .map(|j| j.run_id.to_string()),
        Kind::Gitlab => w.sim.gitlab_pipeline_of(job).map(|p| p.to_string()),
        Kind::Bitbucket => w.sim.bitbucket_pipeline_of(job),
    }
    .expect("the job's run")
}

/// The re-runs the forge recorded, as (old, new) identifiers.
fn reruns(w: &World) -> Vec<(String, String)> {
    match w.kind {
        Kind::Github => {
            let jobs = w.sim.jobs();
            jobs.iter()
                .filter(|j| j.run_attempt > 1)
                .map(|j| (j.run_id.to_string(), j.id.to_string()))
                .collect()
        }
        Kind::Gitlab => w
            .sim
            .gitlab_retries()
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        Kind::Bitbucket => w.sim.bitbucket_reruns(),
    }
}

/// `workflow rerun --id`, `rerun-workflow` (the old name) and the CI's own run as default:
/// each asks the forge for exactly one re-run of that run; a queued GitHub run and an active
/// GitLab pipeline are cancelled first, as CML does.
fn workflow_rerun(kind: Kind) {
    let w = World::of(kind);
    // Queued work no runner takes: the run is active (not completed).
    let job = w.queue_job("train", &["nomatch"], "true");
    let id = run_of(&w, &job);

    let out = run(cml(&w, &["workflow", "rerun", "--id", &id]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "", "logs go to stderr");
    let first = reruns(&w);
    assert_eq!(first.len(), 1, "one re-run: {first:?}");
    match kind {
        Kind::Github => {
            let jobs = w.sim.jobs();
            let old = jobs.iter().find(|j| j.id.to_string() == job).unwrap();
            assert_eq!(
                (old.status.as_str(), old.conclusion.as_deref()),
                ("completed", Some("cancelled")),
                "the queued run was cancelled before its re-run"
            );
        }
        Kind::Gitlab => {
            let jobs = w.sim.gitlab_pipeline_jobs(id.parse().unwrap());
            assert_eq!(jobs[0].1, "canceled", "cancelled first: {jobs:?}");
            assert_eq!(jobs.len(), 2, "then retried: {jobs:?}");
        }
        Kind::Bitbucket => assert_eq!(first[0].0, id, "a new pipeline on the old one's target"),
    }

    // The old name, with the id from the CI's own variable.
    let ci_var = match kind {
        Kind::Github => "GITHUB_RUN_ID",
        Kind::Gitlab => "CI_PIPELINE_ID",
        Kind::Bitbucket => "BITBUCKET_PIPELINE_UUID",
    };
    let second_job = w.queue_job("evaluate", &["nomatch"], "true");
    let second = run_of(&w, &second_job);
    let mut cmd = cml(&w, &["rerun-workflow"]);
    cmd.env(ci_var, &second);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(reruns(&w).len(), 2, "{:?}", reruns(&w));

    // CML's per-command variable.
    let third_job = w.queue_job("report", &["nomatch"], "true");
    let third = run_of(&w, &third_job);
    let mut cmd = cml(&w, &["workflow", "rerun"]);
    cmd.env("CML_WORKFLOW_ID", &third);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(reruns(&w).len(), 3, "{:?}", reruns(&w));

    // No id anywhere: a usage error naming the variable, and nothing asked.
    let out = run(cml(&w, &["workflow", "rerun"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains(ci_var), "{}", out.stderr);
    // A run that does not exist: a clear error, nothing re-run.
    let missing = match kind {
        Kind::Bitbucket => "{00000000-0000-0000-0000-000000000000}",
        _ => "987654",
    };
    let out = run(cml(&w, &["workflow", "rerun", "--id", missing]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("reading run {missing}")),
        "{}",
        out.stderr
    );
    assert_eq!(reruns(&w).len(), 3, "nothing more was re-run");
}

#[test]
fn workflow_rerun_on_github() {
    workflow_rerun(Kind::Github);
}

#[test]
fn workflow_rerun_on_gitlab() {
    workflow_rerun(Kind::Gitlab);
}

#[test]
fn workflow_rerun_on_bitbucket() {
    workflow_rerun(Kind::Bitbucket);
}

/// A GitHub run in progress is cancelled, and its re-run is asked only once GitHub reports it
/// completed (GitHub refuses re-runs of a run in progress; the simulator takes a moment to
/// cancel, as GitHub does).
#[test]
fn a_github_run_in_progress_is_cancelled_then_rerun() {
    let w = World::new();
    let job = w.queue_job("long", &["cml"], "sleep 20");
    let mut runner = w.runner("rerun-runner", &["--idle-timeout", "60"]);
    runner.wait_status("job_started", Duration::from_secs(30));
    let id = run_of(&w, &job);
    let out = run(cml(&w, &["workflow", "rerun", "--id", &id]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("cancelling it first"), "{}", out.stderr);
    let jobs = w.sim.jobs();
    let attempts: Vec<_> = jobs
        .iter()
        .filter(|j| j.run_id.to_string() == id)
        .map(|j| (j.run_attempt, j.conclusion.clone()))
        .collect();
    assert_eq!(attempts[0], (1, Some("cancelled".into())), "{attempts:?}");
    assert_eq!(attempts.len(), 2, "exactly one new attempt: {attempts:?}");
    runner.signal(libc::SIGTERM);
    runner.wait_exit(Duration::from_secs(60));
}

#[test]
fn tensorboard_says_the_service_is_gone_and_fails() {
    let w = World::new();
    for args in [
        &[
            "tensorboard",
            "connect",
            "--credentials",
            "{}",
            "--logdir",
            "logs",
            "--md",
        ][..],
        &[
            "tensorboard-dev",
            "-c",
            "{}",
            "--logdir=logs",
            "--name",
            "x",
        ][..],
    ] {
        let out = run(w.cml(args));
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("TensorBoard.dev has been shut down as of January 1, 2024"),
            "{}",
            out.stderr
        );
        assert_eq!(out.stdout, "");
    }
}

/// `cml hello ARGS` runs `cml-hello ARGS` from PATH, which owns the process (its output and
/// exit code are the command's); an unknown command without a plugin is a usage error.
#[test]
fn unknown_commands_run_plugins_from_path() {
    let w = World::new();
    let bin = w.tmp.path().join("plugins");
    std::fs::create_dir_all(&bin).unwrap();
    let plugin = bin.join("cml-hello");
    std::fs::write(&plugin, "#!/bin/sh\necho \"hello $*\"\nexit 7\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut cmd = w.cml(&["hello", "world", "--loud"]);
    cmd.env("PATH", &path);
    let out = run(cmd);
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert_eq!(out.stdout, "hello world --loud\n");

    let mut cmd = w.cml(&["nosuchcommand", "x"]);
    cmd.env("PATH", &path);
    let out = run(cmd);
    assert_eq!(out.code, 2, "{}", out.stderr);
    // A JSON record, standard output not being a terminal.
    let record: serde_json::Value = serde_json::from_str(out.stderr.trim()).unwrap();
    assert!(
        record["message"].as_str().unwrap_or_default().contains(
            "unknown command \"nosuchcommand\", and no program cml-nosuchcommand on PATH"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn version_prints_our_version() {
    let w = World::new();
    let out = run(w.cml(&["--version"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!("cml {}", env!("CARGO_PKG_VERSION"))
    );
}
