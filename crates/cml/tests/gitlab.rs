//! GitLab-only behaviour of the real `cml` binary against the simulated GitLab: an instance
//! under a sub-path, the legacy registration flow, gitlab-runner download and checksum, and
//! the executor arguments.

mod harness;

use harness::{Kind, Running, World, SECS};
use std::path::Path;

fn argv(workdir: &Path) -> Vec<String> {
    std::fs::read_to_string(workdir.join(".sim-argv"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// `cml runner` for the GitLab world with `workdir` as is (no pre-installed agent).
fn gitlab_runner_in(w: &World, workdir: &Path, extra: &[&str]) -> std::process::Command {
    let repo = w.repo_url();
    let mut args = vec![
        "runner",
        "--driver=gitlab",
        "--repo",
        &repo,
        "--token",
        Kind::Gitlab.token(),
        "--workdir",
        workdir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    w.cml(&args)
}

#[test]
fn an_instance_under_a_sub_path_is_found_and_served() {
    let w = World::of_with(Kind::Gitlab, |c| c.gitlab.path_prefix = "/gitlab".into());
    let repo = format!("{}/gitlab/group/app", w.sim.url());
    let workdir = w.workdir("sub");
    let mut r = Running::spawn(w.cml(&[
        "runner",
        "--driver=gitlab",
        "--repo",
        &repo,
        "--token",
        Kind::Gitlab.token(),
        "--name=sub",
        "--labels=x",
        "--idle-timeout=1",
        "--workdir",
        workdir.to_str().unwrap(),
    ]));
    r.wait_status("ready", SECS(20));
    let job = w.queue_job("build", &["x"], "true");
    r.wait_status("job_ended", SECS(20));
    assert_eq!(r.wait_exit(SECS(20)), 0, "{}", r.output());
    assert_eq!(w.job(&job).state, cml_sim::JobState::Succeeded);
    let args = argv(&workdir);
    assert!(
        args.contains(&format!("config url=\"{}/gitlab\"", w.sim.url())),
        "{args:?}"
    );
    let requests = w.sim.requests();
    assert!(
        requests
            .iter()
            .any(|q| q.path == "/api/v4/version" && q.status == 404),
        "the root was probed first: {requests:?}"
    );
    assert!(requests
        .iter()
        .any(|q| q.path == "/gitlab/api/v4/user/runners" && q.status == 201));
    assert!(w.runners().is_empty());
}

#[test]
fn a_project_with_a_legacy_token_registers_the_legacy_way_and_others_the_current_way() {
    let w = World::of_with(Kind::Gitlab, |c| {
        c.gitlab.legacy_projects = vec!["group/app".into()]
    });
    let mut r = w.runner("legacy", &["--idle-timeout=1"]);
    r.wait_status("ready", SECS(20));
    assert_eq!(r.wait_exit(SECS(20)), 0, "{}", r.output());
    let posts: Vec<String> = w
        .sim
        .requests()
        .into_iter()
        .filter(|q| q.method == "POST")
        .map(|q| q.path)
        .collect();
    assert_eq!(posts, ["/api/v4/runners"], "legacy registration only");
    // The legacy registration token is a secret too.
    let out = r.output();
    for s in w.issued_secrets() {
        assert!(!out.contains(&s), "{s} printed");
    }

    let w = World::of(Kind::Gitlab);
    let mut r = w.runner("current", &["--idle-timeout=1"]);
    assert_eq!(r.wait_exit(SECS(20)), 0, "{}", r.output());
    let posts: Vec<String> = w
        .sim
        .requests()
        .into_iter()
        .filter(|q| q.method == "POST")
        .map(|q| q.path)
        .collect();
    assert_eq!(
        posts,
        ["/api/v4/user/runners"],
        "no runners_token: the current flow"
    );
}

#[test]
fn gitlab_runner_is_downloaded_and_verified_and_a_tampered_one_refused() {
    let w = World::of(Kind::Gitlab);
    let workdir = w.empty_workdir("dl");
    let mut r = Running::spawn(gitlab_runner_in(&w, &workdir, &["--idle-timeout=1"]));
    assert_eq!(r.wait_exit(SECS(30)), 0, "{}", r.output());
    assert_eq!(w.sim.gitlab_downloads(), 1);
    assert!(
        r.output().contains("installed gitlab-runner"),
        "{}",
        r.output()
    );
    assert!(!workdir.join(".gitlab-runner.partial").exists());

    let w = World::of_with(Kind::Gitlab, |c| c.gitlab.tamper_download = true);
    let workdir = w.empty_workdir("tampered");
    let mut r = Running::spawn(gitlab_runner_in(&w, &workdir, &[]));
    assert_eq!(r.wait_exit(SECS(30)), 1, "{}", r.output());
    assert!(r.output().contains("checksum mismatch"), "{}", r.output());
    assert!(!workdir.join("gitlab-runner").exists());
    assert!(!workdir.join(".gitlab-runner.partial").exists());
    assert!(w.registered_names().is_empty(), "nothing registered");
}

#[test]
fn executor_arguments_follow_the_machine_and_keep_the_token_off_the_command_line() {
    let w = World::of(Kind::Gitlab);
    // A working nvidia-smi: the GPU image and the NVIDIA runtime.
    let bin = w.tmp.path().join("gpu-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let smi = bin.join("nvidia-smi");
    std::fs::write(&smi, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut cmd = w.runner_command(
        "gpu",
        &[
            "--idle-timeout=1",
            "--single",
            "--docker-volumes=/data:/data",
        ],
    );
    cmd.env("PATH", &path);
    let mut r = Running::spawn(cmd);
    assert_eq!(r.wait_exit(SECS(20)), 0, "{}", r.output());
    let workdir = w.tmp.path().join("agents/gpu");
    let args = argv(&workdir).join(" ");
    for needle in [
        "--log-format=json run-single --config",
        "--runner gpu",
        "--max-builds 1",
        "--wait-timeout 1",
        "config executor=\"docker\"",
        "config image=\"iterativeai/cml:latest-gpu\"",
        "config runtime=\"nvidia\"",
        "config volumes=[\"/data:/data\"]",
    ] {
        assert!(args.contains(needle), "{needle} missing: {args}");
    }
    for s in w.issued_secrets() {
        assert!(!args.contains(&s), "a token on the command line: {args}");
    }
    assert!(
        !workdir.join("gitlab-runner.toml").exists(),
        "the runner's configuration (and token) is removed when it ends"
    );

    // The shell executor: a job step sees gitlab-runner's environment, and no token in it.
    let mut cmd = w.runner_command("shell", &["--idle-timeout=2", "--labels=sh"]);
    cmd.env("CML_GITLAB_EXECUTOR", "shell");
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(20));
    let dump = w.tmp.path().join("shell-env.txt");
    w.queue_job("env", &["sh"], &format!("env > {}", dump.display()));
    r.wait_status("job_ended", SECS(20));
    assert_eq!(r.wait_exit(SECS(20)), 0, "{}", r.output());
    let args = argv(&w.tmp.path().join("agents/shell")).join(" ");
    assert!(
        args.contains("config executor=\"shell\"") && !args.contains("docker"),
        "{args}"
    );
    let env = std::fs::read_to_string(&dump).unwrap();
    assert!(env.contains("PATH="), "the dump is the step's environment");
    for s in w.issued_secrets() {
        assert!(
            !env.contains(&s),
            "a secret reached a shell-executor job step"
        );
    }

    let mut cmd = w.runner_command("podman", &[]);
    cmd.env("CML_GITLAB_EXECUTOR", "podman");
    let before = w.sim.requests().len();
    let mut r = Running::spawn(cmd);
    assert_eq!(r.wait_exit(SECS(20)), 2, "{}", r.output());
    assert!(
        r.output().contains("invalid CML_GITLAB_EXECUTOR=") && r.output().contains("podman"),
        "{}",
        r.output()
    );
    assert_eq!(w.sim.requests().len(), before, "no API call");
}

#[test]
fn an_interrupted_gitlab_job_is_retried_once_and_the_machine_goes() {
    let w = World::of(Kind::Gitlab);
    let imds = cml_sim::ImdsServer::start("i-0123456789abcdef0", "us-east-1").unwrap();
    let (cmd, machine) =
        w.machine_runner_command("spot", &["--idle-timeout=never", "--labels=t"], &imds);
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(20));
    let job = w.queue_job("train", &["t"], "sleep 60");
    r.wait_status("job_started", SECS(20));
    imds.interrupt_spot();
    let interrupted = r.wait_status("interrupted", SECS(20));
    assert_eq!(interrupted["job"], job.as_str());
    assert_eq!(r.wait_exit(SECS(60)), 0, "{}", r.output());
    assert_eq!(
        r.wait_status("terminated", SECS(1))["reason"],
        "interrupted"
    );
    assert!(w.runners().is_empty());
    let retries = w.sim.gitlab_retries();
    assert_eq!(retries.len(), 1, "exactly one retry: {retries:?}");
    assert_eq!(retries[0].0.to_string(), job);
    assert!(
        r.output().contains("\"status\":\"rerun\""),
        "{}",
        r.output()
    );
    assert!(
        machine.join("poweroff").exists(),
        "the machine powered itself off"
    );
}
