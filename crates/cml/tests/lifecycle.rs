//! Whole-lifecycle tests of GitHub-only behaviour: the real `cml` binary against the GitHub
//! simulator and its simulated agent. The scenarios every forge shares are in `forges.rs`.

mod harness;

use cml_sim::{AppConfig, Fault, Pat};
use harness::{fixture, Running, World, PAT, SECS};

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
            vec!["--cloud=kubernetes", "--cloud-type=m+quantum"],
            "--cloud-gpu quantum is not offered with --cloud-type m on --cloud=kubernetes",
            2,
        ),
        (
            vec!["--cloud=kubernetes", "--cloud-kubernetes-namespace=Bad_NS"],
            "is not a namespace name",
            2,
        ),
        (
            vec!["--cloud=kubernetes", "--cloud-job-user=ci"],
            "--cloud-job-user=ci cannot be used with --cloud=kubernetes",
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
fn a_bad_job_user_fails_before_anything_is_registered() {
    let w = World::new();
    let repo = w.repo_url();
    let workdir = w.workdir("lc-job-user");
    for (user, needle) in [
        (
            "no-such-user-here",
            "cannot run jobs as user no-such-user-here: no such user",
        ),
        ("Not A Name", "invalid --cloud-job-user"),
    ] {
        let flag = format!("--cloud-job-user={user}");
        let mut r = Running::spawn(w.cml(&[
            "runner",
            "--driver=github",
            "--repo",
            &repo,
            "--token",
            PAT,
            "--workdir",
            workdir.to_str().unwrap(),
            &flag,
        ]));
        assert_eq!(r.wait_exit(SECS(20)), 2, "{user}: {}", r.output());
        assert!(r.output().contains(needle), "{user}: {}", r.output());
        assert!(r.output().contains("hint:"), "{user}: {}", r.output());
    }
    assert!(
        w.sim.requests().is_empty(),
        "no API call: {:?}",
        w.sim.requests()
    );
    assert_eq!(w.sim.registration_tokens_issued(), 0);
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
    // A token of this test only: the job lists every process of the machine, and the other
    // tests running meanwhile pass the shared test token on their command lines.
    const OWN_PAT: &str = "ghp_secretstestonlytoken0123456789";
    let w = World::with(|c| {
        c.pats.push(Pat {
            token: OWN_PAT.into(),
            admin: true,
        })
    });
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
    cmd.env("REPO_TOKEN", OWN_PAT);
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
    secrets.push(OWN_PAT.to_string());
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
    assert!(
        !config_env.contains(OWN_PAT),
        "config.sh does not get the PAT"
    );
    let job_output = w.sim.job(job.job_id).unwrap().output;
    assert!(job_output.contains("PATH="), "{job_output}");
    for s in &secrets {
        assert!(!out.contains(s.as_str()), "a secret reached the log");
        assert!(
            !job_output.contains(s.as_str()),
            "a secret reached the job step: {s} in\n{job_output}"
        );
    }
}

/// The supervisor is handed its token through its environment, or on its command line; once
/// it runs, neither `/proc/PID/environ` nor `/proc/PID/cmdline` (which the kernel shows from
/// the memory the process started with, whatever it did with its environment since) holds it.
#[test]
fn the_supervisor_keeps_no_secret_in_its_environment_or_command_line() {
    const ENV_PAT: &str = "ghp_scrubenvtestonlytoken012345678";
    const ARG_PAT: &str = "ghp_scrubargtestonlytoken012345678";
    const UNUSED: &str = "glpat-unusedscrubtestonlytoken0123";
    let w = World::with(|c| {
        for token in [ENV_PAT, ARG_PAT] {
            c.pats.push(Pat {
                token: token.into(),
                admin: true,
            })
        }
    });
    let repo = w.repo_url();
    let read = |pid: u32, what: &str| {
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/{what}")).unwrap())
            .replace('\0', " ")
    };
    for (name, token_arg) in [("lc-scrub-env", None), ("lc-scrub-arg", Some(ARG_PAT))] {
        let workdir = w.workdir(name);
        let mut args = vec![
            "runner",
            "--driver=github",
            "--repo",
            &repo,
            "--name",
            name,
            "--labels=s",
            "--idle-timeout=never",
            "--workdir",
            workdir.to_str().unwrap(),
        ];
        if let Some(token) = token_arg {
            args.extend(["--token", token]);
        }
        let mut cmd = w.cml(&args);
        cmd.env("GITLAB_TOKEN", UNUSED);
        if token_arg.is_none() {
            cmd.env("REPO_TOKEN", ENV_PAT);
        }
        let mut r = Running::spawn(cmd);
        r.wait_status("ready", SECS(20));
        let pid = r.child.id();
        let environ = read(pid, "environ");
        assert!(environ.contains("PATH="), "{environ}");
        let cmdline = read(pid, "cmdline");
        assert!(cmdline.contains("--workdir"), "{cmdline}");
        for secret in [ENV_PAT, ARG_PAT, UNUSED] {
            assert!(!environ.contains(secret), "{name}: environ holds {secret}");
            assert!(
                !cmdline.contains(secret),
                "{name}: cmdline holds {secret}: {cmdline}"
            );
        }
        r.signal(libc::SIGTERM);
        assert_eq!(r.wait_exit(SECS(20)), 143, "{}", r.output());
        assert!(
            w.runner_names().is_empty(),
            "the token still worked: the runner was deregistered"
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

#[test]
fn a_job_reaching_the_time_limit_is_stopped_and_rerun_once() {
    let w = World::new();
    let mut cmd = w.runner_command(
        "lc-limit",
        &[
            "--labels=long",
            "--idle-timeout=never",
            "--job-time-limit-margin=1s",
        ],
    );
    // A 4-second job time limit instead of GitHub's 5 days.
    cmd.env("CML_JOB_TIME_LIMIT", "4");
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(20));
    let job = w.sim.queue_job("octo/app", "train", &["long"], "sleep 60");
    r.wait_status("job_started", SECS(20));
    let started = std::time::Instant::now();
    let interrupted = r.wait_status("interrupted", SECS(20));
    assert_eq!(interrupted["job"], "train");
    assert!(
        started.elapsed() >= SECS(2),
        "stopped at the limit less the margin, not before"
    );
    assert_eq!(r.wait_exit(SECS(60)), 0, "{}", r.output());
    assert_eq!(
        r.wait_status("terminated", SECS(1))["reason"],
        "job_time_limit"
    );
    assert!(w.sim.runners().is_empty());
    let attempts: Vec<u64> = w
        .sim
        .jobs()
        .into_iter()
        .filter(|j| j.run_id == job.run_id)
        .map(|j| j.run_attempt)
        .collect();
    assert_eq!(attempts, [1, 2], "re-run exactly once");
}

#[test]
fn an_interruption_while_idle_reruns_nothing_not_even_an_earlier_failed_job() {
    let w = World::new();
    let imds = cml_sim::ImdsServer::start("i-0123456789abcdef0", "us-east-1").unwrap();
    let (cmd, _machine) = w.machine_runner_command(
        "lc-idle-spot",
        &["--idle-timeout=never", "--labels=t"],
        &imds,
    );
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(20));
    // An earlier job of this runner failed; it is over, and the runner is idle again.
    let failed = w.sim.queue_job("octo/app", "flaky", &["t"], "exit 1");
    assert_eq!(r.wait_status("job_ended", SECS(20))["success"], false);
    imds.interrupt_spot();
    let interrupted = r.wait_status("interrupted", SECS(20));
    assert_eq!(interrupted["job"], "", "no job was running");
    assert_eq!(r.wait_exit(SECS(60)), 0, "{}", r.output());
    assert_eq!(
        r.wait_status("terminated", SECS(1))["reason"],
        "interrupted"
    );
    let attempts: Vec<u64> = w
        .sim
        .jobs()
        .into_iter()
        .filter(|j| j.run_id == failed.run_id)
        .map(|j| j.run_attempt)
        .collect();
    assert_eq!(attempts, [1], "nothing was re-run:\n{}", r.output());
    assert!(
        !r.output().contains("\"status\":\"rerun\""),
        "{}",
        r.output()
    );
    assert!(
        !w.sim.requests().iter().any(|q| q.path.contains("rerun")),
        "no re-run was asked"
    );
}
