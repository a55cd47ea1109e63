//! Bitbucket-only behaviour of the real `cml` binary against the simulated Bitbucket: the
//! Docker runner (through a `docker` stand-in), the Linux Shell runner started as Bitbucket's
//! run command says, runtime labels, and the token's shape.

mod harness;

use harness::{Kind, Running, World, SECS};

#[test]
fn with_a_docker_engine_the_runner_image_runs_with_its_secret_in_the_environment_only() {
    let w = World::of(Kind::Bitbucket);
    let bin = w.tmp.path().join("docker-bin");
    cml_sim::bitbucket::write_docker_standin(&bin, &harness::sim_exe()).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let workdir = w.empty_workdir("dock");
    let repo = w.repo_url();
    let env_dump = w.tmp.path().join("step-env.txt");
    let mut cmd = w.cml(&[
        "runner",
        "--driver=bitbucket",
        "--repo",
        &repo,
        "--token",
        Kind::Bitbucket.token(),
        "--name=dock",
        "--labels=gpu",
        "--idle-timeout=2",
        "--workdir",
        workdir.to_str().unwrap(),
    ]);
    // Detected, not forced: `docker info` answers.
    cmd.env("PATH", &path).env_remove("CML_BITBUCKET_RUNTIME");
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(20));
    assert!(
        r.output().contains("Bitbucket Pipelines runner (Docker)"),
        "{}",
        r.output()
    );
    let runners = w.runners();
    assert_eq!(runners[0].labels, ["self.hosted", "linux", "gpu"]);
    let job = w.queue_job(
        "train",
        &["self.hosted", "linux", "gpu"],
        &format!("env > {}", env_dump.display()),
    );
    let ended = r.wait_status("job_ended", SECS(20));
    assert_eq!(ended["job"], job.as_str());
    assert_eq!(ended["success"], true);
    assert_eq!(r.wait_exit(SECS(20)), 0, "{}", r.output());
    assert!(w.runners().is_empty());

    let argv = std::fs::read_to_string(workdir.join("docker.argv")).unwrap();
    assert!(argv.starts_with("container\nrun\n"), "{argv}");
    assert!(argv.contains("-e\nOAUTH_CLIENT_SECRET\n"), "{argv}");
    let step_env = std::fs::read_to_string(&env_dump).unwrap();
    for s in w
        .issued_secrets()
        .iter()
        .map(String::as_str)
        .chain([Kind::Bitbucket.token()])
    {
        assert!(
            !argv.contains(s),
            "a secret on docker's command line: {argv}"
        );
        assert!(!step_env.contains(s), "a secret in the step's environment");
        assert!(!r.output().contains(s), "a secret printed");
    }
}

/// Bitbucket's run command for the Linux Shell runner: from the install's `bin` directory,
/// `./start.sh ... --runtime linux-shell --workingDirectory ../temp` (the simulated runner,
/// like Atlassian's `start.sh`, cannot start from anywhere else), so steps run in the
/// install's `temp` directory.
#[test]
fn the_shell_runner_starts_from_its_bin_directory_with_working_directory_temp() {
    let w = World::of(Kind::Bitbucket);
    let workdir = w.workdir("shell");
    let repo = w.repo_url();
    let mut r = Running::spawn(w.cml(&[
        "runner",
        "--driver=bitbucket",
        "--repo",
        &repo,
        "--token",
        Kind::Bitbucket.token(),
        "--name=shell",
        "--labels=local",
        "--idle-timeout=2",
        "--workdir",
        workdir.to_str().unwrap(),
    ]));
    r.wait_status("ready", SECS(20));
    let job = w.queue_job("where", &["self.hosted", "linux.shell", "local"], "pwd");
    let ended = r.wait_status("job_ended", SECS(20));
    assert_eq!(ended["success"], true, "{}", r.output());
    assert_eq!(r.wait_exit(SECS(20)), 0, "{}", r.output());

    let install = workdir.join("atlassian-bitbucket-pipelines-runner");
    let argv = std::fs::read_to_string(install.join("bin/.sim-argv")).unwrap();
    assert!(
        argv.ends_with("--runtime\nlinux-shell\n--workingDirectory\n../temp\n"),
        "{argv}"
    );
    let temp = install.join("temp").canonicalize().unwrap();
    assert_eq!(w.job(&job).output, format!("{}\n", temp.display()));
}

#[test]
fn a_token_that_is_not_base64_of_user_and_password_is_refused_before_any_call() {
    let w = World::of(Kind::Bitbucket);
    let repo = w.repo_url();
    let workdir = w.workdir("shape");
    let mut r = Running::spawn(w.cml(&[
        "runner",
        "--driver=bitbucket",
        "--repo",
        &repo,
        "--token",
        "just-an-app-password",
        "--workdir",
        workdir.to_str().unwrap(),
    ]));
    assert_eq!(r.wait_exit(SECS(20)), 1, "{}", r.output());
    assert!(
        r.output().contains("is not base64 of `user:app_password`"),
        "{}",
        r.output()
    );
    assert!(!r.output().contains("just-an-app-password"));
    assert!(w.sim.requests().is_empty());
}

#[test]
fn without_docker_or_an_installed_shell_runner_the_error_says_how_and_nothing_is_registered() {
    let w = World::of(Kind::Bitbucket);
    let workdir = w.empty_workdir("none");
    let repo = w.repo_url();
    let mut r = Running::spawn(w.cml(&[
        "runner",
        "--driver=bitbucket",
        "--repo",
        &repo,
        "--token",
        Kind::Bitbucket.token(),
        "--workdir",
        workdir.to_str().unwrap(),
    ]));
    assert_eq!(r.wait_exit(SECS(20)), 1, "{}", r.output());
    assert!(
        r.output().contains("Linux Shell runner is not installed"),
        "{}",
        r.output()
    );
    assert!(r.output().contains("hint:"));
    assert!(w.registered_names().is_empty());
}

#[test]
fn an_interrupted_step_starts_one_new_pipeline_on_the_same_target() {
    let w = World::of(Kind::Bitbucket);
    let imds = cml_sim::ImdsServer::start("i-0123456789abcdef0", "us-east-1").unwrap();
    let (cmd, machine) =
        w.machine_runner_command("spot", &["--idle-timeout=never", "--labels=t"], &imds);
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(20));
    let step = w.queue_job("train", &["t"], "sleep 60");
    r.wait_status("job_started", SECS(20));
    imds.interrupt_spot();
    assert_eq!(r.wait_status("interrupted", SECS(20))["job"], step.as_str());
    assert_eq!(r.wait_exit(SECS(60)), 0, "{}", r.output());
    assert!(w.runners().is_empty());
    let reruns = w.sim.bitbucket_reruns();
    assert_eq!(reruns.len(), 1, "exactly one new pipeline: {reruns:?}");
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
