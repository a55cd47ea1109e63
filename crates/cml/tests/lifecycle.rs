//! Whole-lifecycle tests: the real `cml` binary against the GitHub simulator and its
//! simulated agent.

mod harness;

use cml_sim::{AppConfig, Fault, Pat};
use harness::{fixture, Running, World, PAT, SECS};

fn registered_runner_names(w: &World) -> Vec<String> {
    w.sim.runners().into_iter().map(|r| r.name).collect()
}

#[test]
fn ready_job_idle_shutdown_deregistered() {
    let w = World::new();
    let workdir = w.workdir("lc-main");
    let env_dump = w.tmp.path().join("job-env.txt");
    let repo = w.repo_url();
    // The token comes from REPO_TOKEN here, to prove the agent's environment drops it.
    let mut cmd = w.cml(&[
        "runner",
        "--driver=github",
        "--repo",
        &repo,
        "--labels=local,runner",
        "--idle-timeout=2",
        "--name=lc-main",
        "--workdir",
        workdir.to_str().unwrap(),
    ]);
    cmd.env("REPO_TOKEN", PAT)
        .env("CML_SIM_AGENT_SPLIT_WRITES", "1");
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(20));
    assert_eq!(registered_runner_names(&w), ["lc-main"]);
    let job = w.sim.queue_job(
        "octo/app",
        "train",
        &["self-hosted", "local"],
        &format!("env > {}", env_dump.display()),
    );
    let started = r.wait_status("job_started", SECS(20));
    assert_eq!(started["job"], "train");
    let ended = r.wait_status("job_ended", SECS(20));
    assert_eq!(ended["job"], "train");
    assert_eq!(ended["success"], true);
    assert_eq!(r.wait_exit(SECS(20)), 0, "{}", r.output());
    let terminated = r.wait_status("terminated", SECS(1));
    assert_eq!(terminated["reason"], "idle_timeout");
    assert_eq!(
        r.statuses(),
        ["ready", "job_started", "job_ended", "terminated"]
    );

    let job = w.sim.job(job.job_id).unwrap();
    assert_eq!(job.conclusion.as_deref(), Some("success"));
    assert_eq!(job.runner_name.as_deref(), Some("lc-main"));
    assert!(
        w.sim.runners().is_empty(),
        "runner left behind: {:?}",
        w.sim.runners()
    );
    let deletes = w.sim.deletes();
    assert_eq!(deletes.len(), 1, "deregistered exactly once: {deletes:?}");
    assert_eq!(deletes[0].1, "lc-main");

    // Nothing of ours in the job's environment.
    let env = std::fs::read_to_string(&env_dump).unwrap();
    assert!(env.contains("PATH="), "the dump is the job's environment");
    assert!(!env.contains(PAT), "the token reached a job step");
    assert!(!env.contains("REPO_TOKEN"));
    assert!(!env.contains("ACTIONS_RUNNER_INPUT_TOKEN"));
    // Every log record has time, level and message.
    for rec in &r.seen {
        assert!(
            rec["time"].is_string() && rec["level"].is_string() && rec["message"].is_string(),
            "{rec}"
        );
    }
    assert!(!r.output().contains(PAT));
}

#[test]
fn single_ends_after_one_job() {
    let w = World::new();
    let mut r = w.runner(
        "lc-single",
        &["--single", "--labels=gpu", "--idle-timeout=never"],
    );
    r.wait_status("ready", SECS(20));
    w.sim.queue_job("octo/app", "one", &["gpu"], "exit 1");
    let ended = r.wait_status("job_ended", SECS(20));
    assert_eq!(ended["success"], false);
    assert_eq!(r.wait_exit(SECS(20)), 0, "{}", r.output());
    assert_eq!(
        r.wait_status("terminated", SECS(1))["reason"],
        "single_job_done"
    );
    assert!(w.sim.runners().is_empty());
    assert_eq!(w.sim.registered_names(), ["lc-single"]);
    // A second queued job is not taken by anyone.
    let second = w.sim.queue_job("octo/app", "two", &["gpu"], "true");
    std::thread::sleep(SECS(1));
    assert_eq!(w.sim.job(second.job_id).unwrap().status, "queued");
}

#[test]
fn reuse_rules_name_conflict_and_sigterm_while_idle() {
    let w = World::new();
    let mut first = w.runner("lc-keeper", &["--labels=shared,x", "--idle-timeout=never"]);
    first.wait_status("ready", SECS(20));
    w.wait_until("the runner online", SECS(10), |s| {
        s.runners().iter().any(|r| r.status == "online")
    });
    let tokens = w.sim.registration_tokens_issued();

    for (name, flags) in [
        ("lc-keeper", vec!["--reuse"]),                          // same name
        ("lc-other", vec!["--reuse", "--labels=shared"]),        // an online runner has the labels
        ("lc-other", vec!["--reuse-idle", "--labels=shared,x"]), // an idle one has them
    ] {
        let mut r = w.runner(name, &flags);
        assert_eq!(r.wait_exit(SECS(20)), 0, "{flags:?}: {}", r.output());
        assert!(r.output().contains("Reusing existing"), "{}", r.output());
    }
    // --reuse-idle with labels nobody has launches nothing either way: checked by name conflict below.
    let mut conflict = w.runner("lc-keeper", &["--labels=other"]);
    assert_eq!(conflict.wait_exit(SECS(20)), 1);
    let out = conflict.output();
    assert!(
        out.contains("a runner named lc-keeper is already registered"),
        "{out}"
    );
    assert!(out.contains("hint:"), "{out}");
    assert_eq!(
        w.sim.registration_tokens_issued(),
        tokens,
        "nothing minted for reused or conflicting runners"
    );
    assert_eq!(w.sim.registered_names(), ["lc-keeper"]);

    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit(SECS(20)), 143, "{}", first.output());
    assert_eq!(first.wait_status("terminated", SECS(1))["reason"], "signal");
    assert!(w.sim.runners().is_empty());
    assert_eq!(w.sim.deletes().len(), 1);
}

#[test]
fn reuse_idle_launches_when_the_matching_runner_is_busy() {
    let w = World::new();
    let mut busy = w.runner("lc-busy", &["--labels=b", "--idle-timeout=never"]);
    busy.wait_status("ready", SECS(20));
    w.sim.queue_job("octo/app", "long", &["b"], "sleep 30");
    busy.wait_status("job_started", SECS(20));
    w.wait_until("the runner busy", SECS(10), |s| {
        s.runners().iter().any(|r| r.busy)
    });
    let mut second = w.runner(
        "lc-second",
        &["--reuse-idle", "--labels=b", "--idle-timeout=1"],
    );
    second.wait_status("ready", SECS(20));
    assert_eq!(second.wait_exit(SECS(20)), 0, "{}", second.output());
    busy.signal(libc::SIGINT);
    assert_eq!(busy.wait_exit(SECS(20)), 130, "{}", busy.output());
    assert!(w.sim.runners().is_empty());
}

#[test]
fn sigterm_while_a_job_runs_cancels_it_and_deregisters() {
    let w = World::new();
    let mut r = w.runner("lc-term", &["--labels=t", "--idle-timeout=1"]);
    r.wait_status("ready", SECS(20));
    let job = w.sim.queue_job("octo/app", "long job", &["t"], "sleep 60");
    assert_eq!(r.wait_status("job_started", SECS(20))["job"], "long job");
    // The idle timeout (1 s) passes during the job: the job must not be stopped by it.
    std::thread::sleep(SECS(3));
    assert_eq!(w.sim.job(job.job_id).unwrap().status, "in_progress");
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait_exit(SECS(30)), 143, "{}", r.output());
    assert!(w.sim.runners().is_empty(), "{:?}", w.sim.runners());
    assert_eq!(w.sim.deletes().len(), 1);
    let job = w.sim.job(job.job_id).unwrap();
    assert_eq!(job.status, "completed");
    assert_eq!(job.conclusion.as_deref(), Some("cancelled"));
}

#[test]
fn an_agent_ignoring_sigint_is_killed_after_the_grace_period() {
    let w = World::new();
    let mut cmd = w.runner_command(
        "lc-stubborn",
        &["--idle-timeout", "never", "--stop-grace", "1"],
    );
    cmd.env("CML_SIM_AGENT_IGNORE_SIGINT", "1");
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(20));
    r.signal(libc::SIGINT);
    assert_eq!(r.wait_exit(SECS(20)), 130, "{}", r.output());
    assert!(
        r.output().contains("killed after the 1 s grace period"),
        "{}",
        r.output()
    );
    assert!(w.sim.runners().is_empty());
}

#[test]
fn an_agent_that_dies_is_deregistered_and_reported() {
    let w = World::new();
    let mut cmd = w.runner_command("lc-crash", &[]);
    cmd.env("CML_SIM_AGENT_CRASH_AFTER_READY", "1");
    let mut r = Running::spawn(cmd);
    assert_eq!(r.wait_exit(SECS(20)), 3, "{}", r.output());
    let out = r.output();
    assert!(
        out.contains("the agent exited on its own (exit code 1)"),
        "{out}"
    );
    assert!(
        out.contains("simulated agent crash"),
        "the agent's last lines are in the error: {out}"
    );
    assert_eq!(
        r.wait_status("terminated", SECS(1))["reason"],
        "agent_exited"
    );
    assert!(w.sim.runners().is_empty());
    assert_eq!(w.sim.deletes().len(), 1);
}

#[test]
fn a_bad_token_fails_at_once_and_registers_nothing() {
    let w = World::new();
    let repo = w.repo_url();
    let workdir = w.workdir("lc-bad");
    let mut r = Running::spawn(w.cml(&[
        "runner",
        "--driver=github",
        "--repo",
        &repo,
        "--token",
        "ghp_wrongwrongwrong",
        "--workdir",
        workdir.to_str().unwrap(),
    ]));
    assert_eq!(r.wait_exit(SECS(20)), 1);
    let out = r.output();
    assert!(
        out.contains("rejected the token from --token (401 Bad credentials)"),
        "{out}"
    );
    assert!(out.contains("`repo` scope"), "{out}");
    assert!(
        !out.contains("ghp_wrongwrongwrong"),
        "the token was printed: {out}"
    );
    assert_eq!(w.sim.registration_tokens_issued(), 0);
    assert!(w.sim.registered_names().is_empty());
    // One request, no retries: a bad token is not a transient error.
    assert_eq!(w.sim.requests().len(), 1, "{:?}", w.sim.requests());

    // From an environment variable, the message names that variable.
    let mut cmd = w.cml(&[
        "runner",
        "--driver=github",
        "--repo",
        &repo,
        "--workdir",
        workdir.to_str().unwrap(),
    ]);
    cmd.env("GITHUB_TOKEN", "ghp_alsowrongtoken");
    let mut r = Running::spawn(cmd);
    assert_eq!(r.wait_exit(SECS(20)), 1);
    assert!(
        r.output().contains("the token from GITHUB_TOKEN"),
        "{}",
        r.output()
    );
}

#[test]
fn a_token_without_admin_rights_is_refused_with_a_hint() {
    let w = World::with(|c| {
        c.pats.push(Pat {
            token: "ghp_readonlytoken".into(),
            admin: false,
        })
    });
    let repo = w.repo_url();
    let mut r = Running::spawn(w.cml(&[
        "runner",
        "--driver=github",
        "--repo",
        &repo,
        "--token",
        "ghp_readonlytoken",
    ]));
    assert_eq!(r.wait_exit(SECS(20)), 1);
    let out = r.output();
    assert!(out.contains("refused the token from --token (403"), "{out}");
    assert!(out.contains("hint:"), "{out}");
    assert!(w.sim.registered_names().is_empty());
}

#[test]
fn server_errors_and_rate_limits_are_retried() {
    let w = World::new();
    w.sim.inject_fault(
        Fault::status(503)
            .method("GET")
            .path_contains("/actions/runners")
            .times(2),
    );
    w.sim.inject_fault(
        Fault::status(429)
            .path_contains("registration-token")
            .retry_after(1),
    );
    w.sim.inject_fault(
        Fault::status(403)
            .method("DELETE")
            .path_contains("/actions/runners/")
            .ratelimit_reset_in(1),
    );
    let mut r = w.runner("lc-retry", &["--idle-timeout=1"]);
    r.wait_status("ready", SECS(30));
    assert_eq!(r.wait_exit(SECS(30)), 0, "{}", r.output());
    let statuses: Vec<u16> = w.sim.requests().iter().map(|q| q.status).collect();
    assert!(
        statuses.iter().filter(|s| **s == 503).count() == 2,
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429) && statuses.contains(&403),
        "{statuses:?}"
    );
    assert!(w.sim.runners().is_empty());
    assert_eq!(w.sim.deletes().len(), 1);
}

#[test]
fn an_organization_runner_takes_jobs_of_the_org_repositories() {
    let w = World::new();
    let workdir = w.workdir("lc-org");
    let org = format!("{}/octo", w.sim.url());
    let mut r = Running::spawn(w.cml(&[
        "runner",
        "--driver=github",
        "--repo",
        &org,
        "--token",
        PAT,
        "--name",
        "lc-org",
        "--labels",
        "org-wide",
        "--idle-timeout",
        "2",
        "--workdir",
        workdir.to_str().unwrap(),
    ]));
    r.wait_status("ready", SECS(20));
    let runner = w.sim.runners().pop().unwrap();
    assert_eq!(runner.scope, "octo", "registered at organization level");
    let job = w
        .sim
        .queue_job("octo/other-repo", "lint", &["org-wide"], "true");
    r.wait_status("job_ended", SECS(20));
    assert_eq!(r.wait_exit(SECS(20)), 0, "{}", r.output());
    assert_eq!(
        w.sim.job(job.job_id).unwrap().runner_name.as_deref(),
        Some("lc-org")
    );
    assert!(w.sim.runners().is_empty());
    assert!(w
        .sim
        .requests()
        .iter()
        .any(|q| q.path.contains("/orgs/octo/actions/runners")));
}

#[test]
fn a_github_app_mints_and_refreshes_installation_tokens() {
    let w = World::with(|c| {
        c.app = Some(AppConfig {
            app_id: 4242,
            public_key_pem: fixture("github-app-test-key.pub.pem"),
            installation_id: 77,
        });
        c.installation_token_ttl = SECS(4);
    });
    let workdir = w.workdir("lc-app");
    let repo = w.repo_url();
    let pem = fixture("github-app-test-key.pem");
    let mut cmd = w.cml(&[
        "runner",
        "--driver=github",
        "--repo",
        &repo,
        "--name",
        "lc-app",
        "--idle-timeout",
        "4",
        "--log",
        "debug",
        "--workdir",
        workdir.to_str().unwrap(),
    ]);
    cmd.env("CML_GITHUB_APP_ID", "4242")
        .env("CML_GITHUB_APP_PEM", &pem);
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(20));
    assert_eq!(r.wait_exit(SECS(30)), 0, "{}", r.output());
    let minted = w
        .sim
        .requests()
        .iter()
        .filter(|q| q.path.ends_with("/access_tokens") && q.status == 201)
        .count();
    assert!(
        minted >= 2,
        "the installation token was refreshed: {minted} minted"
    );
    assert!(
        w.sim.requests().iter().all(|q| q.status != 401),
        "no call used an expired token"
    );
    assert!(w.sim.runners().is_empty());
    let out = r.output();
    let issued = w.sim.issued_secrets();
    assert!(
        issued.len() >= 3,
        "installation and registration tokens were issued"
    );
    for s in &issued {
        assert!(!out.contains(s.as_str()), "an issued token reached the log");
    }
    for line in pem.lines().filter(|l| l.len() > 20) {
        assert!(!out.contains(line), "a line of the app key was printed");
    }
}

#[test]
fn the_agent_is_downloaded_and_verified_when_the_workdir_is_empty() {
    let w = World::new();
    let workdir = w.tmp.path().join("fresh");
    let repo = w.repo_url();
    let mut cmd = w.cml(&[
        "runner",
        "--driver=github",
        "--repo",
        &repo,
        "--token",
        PAT,
        "--name",
        "lc-dl",
        "--idle-timeout",
        "1",
        "--workdir",
        workdir.to_str().unwrap(),
    ]);
    cmd.env("CML_GITHUB_RUNNER_RELEASES_URL", w.releases_url());
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(30));
    assert_eq!(r.wait_exit(SECS(30)), 0, "{}", r.output());
    assert_eq!(w.sim.downloads(), 1);
    assert!(workdir.join("run.sh").is_file());
    assert!(
        r.output().contains("installed actions/runner"),
        "{}",
        r.output()
    );
}

#[test]
fn a_tampered_download_is_refused_and_nothing_is_registered() {
    let w = World::with(|c| c.tamper_download = true);
    let workdir = w.tmp.path().join("tampered");
    let repo = w.repo_url();
    let mut cmd = w.cml(&[
        "runner",
        "--driver=github",
        "--repo",
        &repo,
        "--token",
        PAT,
        "--workdir",
        workdir.to_str().unwrap(),
    ]);
    cmd.env("CML_GITHUB_RUNNER_RELEASES_URL", w.releases_url());
    let mut r = Running::spawn(cmd);
    assert_eq!(r.wait_exit(SECS(30)), 1);
    assert!(r.output().contains("checksum mismatch"), "{}", r.output());
    assert!(!workdir.join("run.sh").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&workdir)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "the download was discarded: {leftovers:?}"
    );
    assert_eq!(w.sim.registration_tokens_issued(), 0);
}

#[test]
fn cloud_options_are_validated_before_anything_happens() {
    let w = World::new();
    let repo = w.repo_url();
    for (args, needle, code) in [
        (
            vec!["--cloud=aws", "--cloud-hdd-size=-5"],
            "--cloud-hdd-size",
            2,
        ),
        (
            vec!["--cloud=aws", "--cloud-spot-price=cheap"],
            "--cloud-spot-price",
            2,
        ),
        (vec!["--cloud=mainframe"], "unknown cloud", 2),
        (
            vec!["--cloud=gcp", "--cloud-type=m+t4"],
            "--cloud=gcp is not available in this build yet",
            2,
        ),
        (vec!["--idle-timeout=soon"], "--idle-timeout", 2),
        (vec!["--driver="], "unknown driver", 2),
    ] {
        let mut full = vec!["runner", "--repo", &repo, "--token", PAT];
        if !args.iter().any(|a| a.starts_with("--driver")) {
            full.push("--driver=github");
        }
        full.extend(args.iter().copied());
        let mut r = Running::spawn(w.cml(&full));
        assert_eq!(r.wait_exit(SECS(20)), code, "{args:?}: {}", r.output());
        assert!(r.output().contains(needle), "{args:?}: {}", r.output());
    }
    assert!(
        w.sim.requests().is_empty(),
        "no API call for invalid settings: {:?}",
        w.sim.requests()
    );
}

#[test]
fn runner_launch_is_the_same_command_and_help_is_fast_to_reach() {
    let w = World::new();
    let out = w.cml(&["runner", "launch", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--labels",
        "--idle-timeout",
        "--name",
        "--no-retry",
        "--single",
        "--reuse",
        "--reuse-idle",
        "--workdir",
        "--path",
        "--docker-volumes",
        "--cloud",
        "--cloud-region",
        "--cloud-type",
        "--cloud-gpu",
        "--cloud-hdd-size",
        "--cloud-spot",
        "--cloud-spot-price",
        "--cloud-permission-set",
        "--cloud-metadata",
        "--cloud-startup-script",
        "--cloud-ssh-private",
        "--cloud-image",
        "--cloud-aws-security-group",
        "--cloud-aws-subnet",
        "--cloud-kubernetes-node-selector",
        "--destroy-delay",
        "--driver",
        "--repo",
        "--token",
        "--log",
    ] {
        assert!(help.contains(opt), "{opt} missing from help");
    }
    let mut r = Running::spawn(w.cml(&[
        "runner",
        "launch",
        "--repo",
        &w.repo_url(),
        "--token",
        PAT,
        "--name",
        "lc-l",
        "--single",
        "--reuse",
    ]));
    assert_eq!(r.wait_exit(SECS(10)), 2);
}

/// Every secret in play: the PAT (from the environment), the registration tokens minted.
/// None may reach a log line (even at debug level), a process's command line, or a job step.
#[test]
fn no_secret_reaches_logs_command_lines_or_job_steps() {
    let w = World::new();
    let workdir = w.workdir("lc-secrets");
    // Wrap config.sh to record the command line and environment it is started with.
    std::fs::rename(workdir.join("config.sh"), workdir.join("config-real.sh")).unwrap();
    let wrapper = workdir.join("config.sh");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nd=$(dirname \"$0\")\nprintf '%s\\n' \"$@\" > \"$d/config-argv.txt\"\nenv > \"$d/config-env.txt\"\nexec \"$d/config-real.sh\" \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let repo = w.repo_url();
    let mut cmd = w.cml(&[
        "runner",
        "--driver=github",
        "--repo",
        &repo,
        "--name=lc-secrets",
        "--labels=s",
        "--idle-timeout=2",
        "--log=debug",
        "--workdir",
        workdir.to_str().unwrap(),
    ]);
    cmd.env("REPO_TOKEN", PAT);
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(20));
    let job = w.sim.queue_job(
        "octo/app",
        "leak?",
        &["s"],
        "env; ps -eo args 2>/dev/null || true",
    );
    r.wait_status("job_ended", SECS(20));
    // While the runner is up, neither it nor any process it started shows a secret on its
    // command line.
    let mut secrets = w.sim.issued_secrets();
    secrets.push(PAT.to_string());
    assert!(secrets.len() >= 2, "a registration token was minted");
    let tree = harness::process_tree(r.child.id());
    assert!(tree.len() >= 2, "cml and the agent: {tree:?}");
    for pid in tree {
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            for s in &secrets {
                assert!(
                    !cmdline.contains(s.as_str()),
                    "a secret is on a command line: {cmdline}"
                );
            }
        }
    }
    assert_eq!(r.wait_exit(SECS(20)), 0, "{}", r.output());

    let out = r.output();
    assert!(
        out.contains("agent: "),
        "debug output includes the agent's lines"
    );
    let argv = std::fs::read_to_string(workdir.join("config-argv.txt")).unwrap();
    assert!(
        argv.contains("--unattended") && argv.contains("lc-secrets"),
        "{argv}"
    );
    assert!(
        !argv.contains("--token"),
        "the token is not passed as an argument: {argv}"
    );
    let config_env = std::fs::read_to_string(workdir.join("config-env.txt")).unwrap();
    assert!(
        config_env.contains("ACTIONS_RUNNER_INPUT_TOKEN="),
        "config.sh gets the token from its environment"
    );
    assert!(!config_env.contains(PAT), "config.sh does not get the PAT");
    let job_output = w.sim.job(job.job_id).unwrap().output;
    assert!(job_output.contains("PATH="), "{job_output}");
    for s in &secrets {
        assert!(!out.contains(s.as_str()), "a secret reached the log");
        assert!(
            !job_output.contains(s.as_str()),
            "a secret reached the job step"
        );
    }
}

/// CML's on-premise example, run exactly as its documentation writes it, inside a GitHub
/// workflow (where `GITHUB_REPOSITORY` names the forge) with the default work directory.
#[test]
fn the_seed_on_premise_example_runs_as_written() {
    let w = World::new();
    let mut cmd = w.cml(&[
        "runner",
        &format!("--repo={}", w.repo_url()),
        &format!("--token={PAT}"),
        "--labels=local,runner",
        "--idle-timeout=180",
    ]);
    cmd.env("GITHUB_REPOSITORY", "octo/app")
        .env("CML_GITHUB_RUNNER_RELEASES_URL", w.releases_url());
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(30));
    let runner = w.sim.runners().pop().unwrap();
    assert!(
        runner.name.starts_with("cml-") && runner.name.len() == 14,
        "{}",
        runner.name
    );
    assert!(
        runner.labels.iter().any(|l| l == "local") && runner.labels.iter().any(|l| l == "runner")
    );
    assert!(
        w.tmp
            .path()
            .join("home/.cml")
            .join(&runner.name)
            .join("run.sh")
            .is_file(),
        "default workdir"
    );
    let job = w.sim.queue_job(
        "octo/app",
        "train",
        &["self-hosted", "local", "runner"],
        "true",
    );
    r.wait_status("job_ended", SECS(20));
    assert_eq!(
        w.sim.job(job.job_id).unwrap().conclusion.as_deref(),
        Some("success")
    );
    r.signal(libc::SIGINT);
    assert_eq!(r.wait_exit(SECS(20)), 130, "{}", r.output());
    assert!(w.sim.runners().is_empty());
}

#[test]
fn the_repository_defaults_to_the_origin_remote() {
    let w = World::new();
    let checkout = w.tmp.path().join("checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(&checkout)
            .status()
            .unwrap();
        assert!(ok.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    // A remote with embedded credentials, as CI checkouts often have.
    let origin = format!("{}/octo/app.git", w.sim.url())
        .replace("http://", "http://x-access-token:ghs_embedded@");
    git(&["remote", "add", "origin", &origin]);
    let mut cmd = w.cml(&["runner", "--driver=github", "--token=ghp_wrongwrongwrong"]);
    cmd.current_dir(&checkout);
    let mut r = Running::spawn(cmd);
    assert_eq!(r.wait_exit(SECS(20)), 1);
    let out = r.output();
    assert!(out.contains("GitHub repository octo/app"), "{out}");
    assert!(!out.contains("ghs_embedded"), "{out}");
    assert_eq!(
        w.sim.requests()[0].path,
        "/api/v3/repos/octo/app/actions/runners"
    );
}
