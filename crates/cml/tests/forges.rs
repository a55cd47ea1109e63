//! The lifecycle scenarios, each run against all three forges (GitHub, GitLab, Bitbucket):
//! the real `cml` binary, the forge's simulated API and its simulated agent. One policy engine
//! serves every forge, so every scenario must hold for each.

mod harness;

use cml_sim::{Fault, JobState};
use harness::{Kind, Running, World, SECS};

/// `mod scenario { fn github(), fn gitlab(), fn bitbucket() }` for each scenario function.
macro_rules! each_forge {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::*;
                #[test]
                fn github() {
                    super::$scenario(Kind::Github)
                }
                #[test]
                fn gitlab() {
                    super::$scenario(Kind::Gitlab)
                }
                #[test]
                fn bitbucket() {
                    super::$scenario(Kind::Bitbucket)
                }
            }
        )*
    };
}

each_forge!(
    ready_job_idle_shutdown_deregistered,
    single_ends_after_one_job,
    reuse_rules_and_name_conflict,
    reuse_idle_launches_when_the_matching_runner_is_busy,
    sigterm_while_a_job_runs_stops_it_and_deregisters,
    an_agent_that_dies_is_deregistered_and_reported,
    a_bad_token_fails_at_once_and_registers_nothing,
    server_errors_and_rate_limits_are_retried,
);

fn ready_job_idle_shutdown_deregistered(kind: Kind) {
    let w = World::of(kind);
    let name = format!("{}-main", kind.driver());
    let workdir = w.workdir(&name);
    let env_dump = w.tmp.path().join("job-env.txt");
    let repo = w.repo_url();
    // The token comes from REPO_TOKEN here, to prove the agent's environment drops it.
    let mut cmd = w.cml(&[
        "runner",
        &format!("--driver={}", kind.driver()),
        "--repo",
        &repo,
        "--labels=local,runner",
        "--idle-timeout=2",
        "--name",
        &name,
        "--workdir",
        workdir.to_str().unwrap(),
    ]);
    cmd.env("REPO_TOKEN", kind.token())
        .env("CML_SIM_AGENT_SPLIT_WRITES", "1");
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(20));
    assert_eq!(w.runner_names(), [name.as_str()]);
    let job = w.queue_job(
        "train",
        &["local"],
        &format!("env > {}", env_dump.display()),
    );
    let label = w.job_label(&job, "train");
    assert_eq!(
        r.wait_status("job_started", SECS(20))["job"],
        label.as_str()
    );
    let ended = r.wait_status("job_ended", SECS(20));
    assert_eq!(ended["job"], label.as_str());
    assert_eq!(ended["success"], true, "{}", r.output());
    assert_eq!(r.wait_exit(SECS(20)), 0, "{}", r.output());
    assert_eq!(
        r.wait_status("terminated", SECS(1))["reason"],
        "idle_timeout"
    );
    assert_eq!(
        r.statuses(),
        ["ready", "job_started", "job_ended", "terminated"]
    );

    let job = w.job(&job);
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.runner_name.as_deref(), Some(name.as_str()));
    assert!(
        w.runners().is_empty(),
        "runner left behind: {:?}",
        w.runners()
    );
    let deletes = w.deletes();
    assert_eq!(deletes.len(), 1, "deregistered exactly once: {deletes:?}");
    assert_eq!(deletes[0].1, name);

    // Nothing of ours in the job's environment, nothing secret in our output.
    let env = std::fs::read_to_string(&env_dump).unwrap();
    assert!(env.contains("PATH="), "the dump is the job's environment");
    assert!(!env.contains("REPO_TOKEN"));
    let out = r.output();
    for secret in w
        .issued_secrets()
        .iter()
        .map(String::as_str)
        .chain([kind.token()])
    {
        assert!(
            !env.contains(secret),
            "a secret reached a job step: {secret}"
        );
        assert!(
            !out.contains(secret),
            "a secret was printed: {secret}\n{out}"
        );
    }
    for rec in &r.seen {
        assert!(
            rec["time"].is_string() && rec["level"].is_string() && rec["message"].is_string(),
            "{rec}"
        );
    }
}

fn single_ends_after_one_job(kind: Kind) {
    let w = World::of(kind);
    let mut r = w.runner(
        "lc-single",
        &["--single", "--labels=gpu", "--idle-timeout=never"],
    );
    r.wait_status("ready", SECS(20));
    w.queue_job("one", &["gpu"], "exit 1");
    let ended = r.wait_status("job_ended", SECS(20));
    assert_eq!(ended["success"], false);
    assert_eq!(r.wait_exit(SECS(20)), 0, "{}", r.output());
    assert_eq!(
        r.wait_status("terminated", SECS(1))["reason"],
        "single_job_done"
    );
    assert!(w.runners().is_empty(), "{:?}", w.runners());
    assert_eq!(w.registered_names(), ["lc-single"]);
    // A second queued job is not taken by anyone.
    let second = w.queue_job("two", &["gpu"], "true");
    std::thread::sleep(SECS(1));
    assert_eq!(w.job(&second).state, JobState::Queued);
}

fn reuse_rules_and_name_conflict(kind: Kind) {
    let w = World::of(kind);
    let mut first = w.runner("lc-keeper", &["--labels=shared,x", "--idle-timeout=never"]);
    first.wait_status("ready", SECS(20));
    w.wait_for("the runner online", SECS(10), |w| {
        w.runners().iter().any(|r| r.online)
    });

    for (name, flags) in [
        ("lc-keeper", vec!["--reuse"]),                          // same name
        ("lc-other", vec!["--reuse", "--labels=shared"]),        // an online runner has the labels
        ("lc-other", vec!["--reuse-idle", "--labels=shared,x"]), // an idle one has them
    ] {
        let mut r = w.runner(name, &flags);
        assert_eq!(r.wait_exit(SECS(20)), 0, "{flags:?}: {}", r.output());
        assert!(r.output().contains("Reusing existing"), "{}", r.output());
    }
    let mut conflict = w.runner("lc-keeper", &["--labels=other"]);
    assert_eq!(conflict.wait_exit(SECS(20)), 1);
    let out = conflict.output();
    assert!(
        out.contains("a runner named lc-keeper is already registered"),
        "{out}"
    );
    assert!(out.contains("hint:"), "{out}");
    assert_eq!(
        w.registered_names(),
        ["lc-keeper"],
        "nothing registered for reused or conflicting runners"
    );

    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit(SECS(20)), 143, "{}", first.output());
    assert_eq!(first.wait_status("terminated", SECS(1))["reason"], "signal");
    assert!(w.runners().is_empty());
    assert_eq!(w.deletes().len(), 1);
}

fn reuse_idle_launches_when_the_matching_runner_is_busy(kind: Kind) {
    let w = World::of(kind);
    let mut busy = w.runner("lc-busy", &["--labels=b", "--idle-timeout=never"]);
    busy.wait_status("ready", SECS(20));
    w.queue_job("long", &["b"], "sleep 30");
    busy.wait_status("job_started", SECS(20));
    w.wait_for("the runner busy", SECS(10), |w| {
        w.runners().iter().any(|r| r.busy)
    });
    let mut second = w.runner(
        "lc-second",
        &["--reuse-idle", "--labels=b", "--idle-timeout=1"],
    );
    second.wait_status("ready", SECS(20));
    assert_eq!(second.wait_exit(SECS(20)), 0, "{}", second.output());
    assert_eq!(w.registered_names(), ["lc-busy", "lc-second"]);
    busy.signal(libc::SIGINT);
    assert_eq!(busy.wait_exit(SECS(30)), 130, "{}", busy.output());
    assert!(w.runners().is_empty(), "{:?}", w.runners());
}

fn sigterm_while_a_job_runs_stops_it_and_deregisters(kind: Kind) {
    let w = World::of(kind);
    let mut r = w.runner("lc-term", &["--labels=t", "--idle-timeout=1"]);
    r.wait_status("ready", SECS(20));
    let job = w.queue_job("long job", &["t"], "sleep 60");
    assert_eq!(
        r.wait_status("job_started", SECS(20))["job"],
        w.job_label(&job, "long job").as_str()
    );
    // The idle timeout (1 s) passes during the job: the job must not be stopped by it.
    std::thread::sleep(SECS(3));
    assert_eq!(w.job(&job).state, JobState::Running, "{}", r.output());
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait_exit(SECS(30)), 143, "{}", r.output());
    assert!(w.runners().is_empty(), "{:?}", w.runners());
    assert_eq!(w.deletes().len(), 1);
    let state = w.job(&job).state;
    assert!(
        matches!(state, JobState::Cancelled | JobState::Failed),
        "the interrupted job ended {state:?}"
    );
}

fn an_agent_that_dies_is_deregistered_and_reported(kind: Kind) {
    let w = World::of(kind);
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
    assert!(w.runners().is_empty());
    assert_eq!(w.deletes().len(), 1);
}

fn a_bad_token_fails_at_once_and_registers_nothing(kind: Kind) {
    let w = World::of(kind);
    let repo = w.repo_url();
    let workdir = w.workdir("lc-bad");
    let bad = match kind {
        Kind::Github => "ghp_wrongwrongwrong",
        Kind::Gitlab => "glpat-wrongwrongwrong",
        // base64("someone:wrongapppassword")
        Kind::Bitbucket => "c29tZW9uZTp3cm9uZ2FwcHBhc3N3b3Jk",
    };
    let driver = format!("--driver={}", kind.driver());
    let mut r = Running::spawn(w.cml(&[
        "runner",
        &driver,
        "--repo",
        &repo,
        "--token",
        bad,
        "--workdir",
        workdir.to_str().unwrap(),
    ]));
    assert_eq!(r.wait_exit(SECS(20)), 1);
    let out = r.output();
    assert!(out.contains("rejected the token from --token"), "{out}");
    assert!(out.contains("hint:"), "{out}");
    assert!(!out.contains(bad), "the token was printed: {out}");
    assert!(w.registered_names().is_empty());
    // No retries: a bad token is not a transient error.
    let requests = w.sim.requests();
    let mut seen = std::collections::HashSet::new();
    for q in &requests {
        assert!(
            seen.insert((q.method.clone(), q.path.clone(), q.query.clone())),
            "retried after a rejected token: {requests:?}"
        );
    }

    // From an environment variable, the message names that variable.
    let var = match kind {
        Kind::Github => "GITHUB_TOKEN",
        Kind::Gitlab => "GITLAB_TOKEN",
        Kind::Bitbucket => "BITBUCKET_TOKEN",
    };
    let mut cmd = w.cml(&[
        "runner",
        &driver,
        "--repo",
        &repo,
        "--workdir",
        workdir.to_str().unwrap(),
    ]);
    cmd.env(var, bad);
    let mut r = Running::spawn(cmd);
    assert_eq!(r.wait_exit(SECS(20)), 1);
    assert!(
        r.output().contains(&format!("the token from {var}")),
        "{}",
        r.output()
    );
    assert!(w.registered_names().is_empty());
}

fn server_errors_and_rate_limits_are_retried(kind: Kind) {
    let w = World::of(kind);
    let (list, register, delete) = match kind {
        Kind::Github => (
            "/actions/runners",
            "registration-token",
            "/actions/runners/",
        ),
        Kind::Gitlab => ("/runners", "/user/runners", "/api/v4/runners/"),
        Kind::Bitbucket => (
            "/pipelines-config/runners",
            "/pipelines-config/runners",
            "/pipelines-config/runners/",
        ),
    };
    w.sim.inject_fault(
        Fault::status(503)
            .method("GET")
            .path_contains(list)
            .times(2),
    );
    w.sim.inject_fault(
        Fault::status(429)
            .method("POST")
            .path_contains(register)
            .retry_after(1),
    );
    w.sim
        .inject_fault(Fault::status(502).method("DELETE").path_contains(delete));
    let mut r = w.runner("lc-retry", &["--idle-timeout=1"]);
    r.wait_status("ready", SECS(30));
    assert_eq!(r.wait_exit(SECS(30)), 0, "{}", r.output());
    let statuses: Vec<u16> = w.sim.requests().iter().map(|q| q.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        2,
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429) && statuses.contains(&502),
        "{statuses:?}"
    );
    assert!(w.runners().is_empty());
    assert_eq!(w.deletes().len(), 1);
}

/// `mod scenario { fn gitlab(), fn bitbucket() }`: scenarios of the forges that would delete a
/// runner running a job, where `cml` itself keeps the runner from taking work before deleting.
macro_rules! gitlab_and_bitbucket {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::*;
                #[test]
                fn gitlab() {
                    super::$scenario(Kind::Gitlab)
                }
                #[test]
                fn bitbucket() {
                    super::$scenario(Kind::Bitbucket)
                }
            }
        )*
    };
}

gitlab_and_bitbucket!(
    a_job_handed_over_as_the_idle_deregistration_starts_is_kept_and_run,
    a_job_handed_over_after_the_last_check_is_not_orphaned,
    sigint_while_the_forge_creates_the_runner_leaves_no_runner,
    an_agent_killed_mid_job_leaves_no_runner_behind,
);

each_forge!(a_failed_idle_deregistration_keeps_the_agent_and_tries_again);

/// Arms the simulator to hand the runner a held job as `cml` starts deregistering it: just
/// before the runner is paused/disabled (`first`), or just after the forge answered that the
/// runner runs nothing (otherwise). Returns the job's id.
fn race_a_job(w: &World, first: bool, name: &str, labels: &[&str], command: &str) -> String {
    let repo = w.kind.repo_path();
    match w.kind {
        Kind::Gitlab => {
            use cml_sim::gitlab::Race;
            let at = if first {
                Race::BeforePause
            } else {
                Race::AfterJobsCheck
            };
            w.sim.gitlab_race(at, repo, name, labels, command)
        }
        Kind::Bitbucket => {
            use cml_sim::bitbucket::Race;
            let at = if first {
                Race::BeforeDisable
            } else {
                Race::AfterStateRead
            };
            w.sim.bitbucket_race(at, repo, name, labels, command)
        }
        Kind::Github => unreachable!("GitHub itself refuses to delete a busy runner"),
    }
}

/// [`World::runner`] whose idle end is `cml`'s own deadline: the simulated gitlab-runner
/// does not leave by itself at `--wait-timeout` (which would otherwise come at about the same
/// moment and end the runner with no deregistration attempt while the agent runs).
fn runner_ending_at_its_deadline(w: &World, name: &str, extra: &[&str]) -> Running {
    let mut cmd = w.runner_command(name, extra);
    cmd.env("CML_SIM_AGENT_IGNORE_WAIT_TIMEOUT", "1");
    Running::spawn(cmd)
}

fn a_job_handed_over_as_the_idle_deregistration_starts_is_kept_and_run(kind: Kind) {
    let w = World::of(kind);
    let mut r = runner_ending_at_its_deadline(&w, "lc-race", &["--labels=t", "--idle-timeout=2"]);
    r.wait_status("ready", SECS(20));
    let late = race_a_job(&w, true, "late", &["t"], "sleep 1");
    // The idle deadline comes, and the forge hands the runner the job as it is paused: the
    // runner is kept, resumed, and its agent runs the job.
    assert_eq!(
        r.wait_status("job_started", SECS(20))["job"],
        w.job_label(&late, "late").as_str(),
        "{}",
        r.output()
    );
    let ended = r.wait_status("job_ended", SECS(20));
    assert_eq!(ended["success"], true, "{}", r.output());
    // Resumed: the runner takes the next job too.
    let next = w.queue_job("next", &["t"], "true");
    w.wait_for("the next job to be run", SECS(20), |w| {
        w.job(&next).state == JobState::Succeeded
    });
    assert_eq!(r.wait_exit(SECS(30)), 0, "{}", r.output());
    assert_eq!(
        r.wait_status("terminated", SECS(1))["reason"],
        "idle_timeout"
    );
    for id in [&late, &next] {
        let job = w.job(id);
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(job.runner_name.as_deref(), Some("lc-race"));
    }
    assert!(w.runners().is_empty(), "{:?}", w.runners());
    assert_eq!(w.deletes().len(), 1);
}

fn a_job_handed_over_after_the_last_check_is_not_orphaned(kind: Kind) {
    let w = World::of(kind);
    let mut r = runner_ending_at_its_deadline(&w, "lc-late", &["--labels=t", "--idle-timeout=2"]);
    r.wait_status("ready", SECS(20));
    let late = race_a_job(&w, false, "late", &["t"], "true");
    assert_eq!(r.wait_exit(SECS(30)), 0, "{}", r.output());
    assert_eq!(
        r.wait_status("terminated", SECS(1))["reason"],
        "idle_timeout"
    );
    assert!(w.runners().is_empty(), "{:?}", w.runners());
    // The runner could take no job once paused: the job waits for another runner rather than
    // being given to a runner that is deleted and an agent that is stopped.
    let job = w.job(&late);
    assert_eq!(job.state, JobState::Queued, "{job:?}\n{}", r.output());
    assert_eq!(job.runner_name, None);
}

fn sigint_while_the_forge_creates_the_runner_leaves_no_runner(kind: Kind) {
    let w = World::of(kind);
    let create = match kind {
        Kind::Gitlab => "/user/runners",
        _ => "/pipelines-config/runners",
    };
    // The forge creates the runner at once but answers 3 s later.
    w.sim.inject_fault(
        Fault::delayed_answer(3000)
            .method("POST")
            .path_contains(create),
    );
    let mut r = w.runner("lc-sigint", &["--labels=t"]);
    w.wait_for("the forge to create the runner", SECS(20), |w| {
        !w.registered_names().is_empty()
    });
    r.signal(libc::SIGINT);
    assert_eq!(r.wait_exit(SECS(30)), 130, "{}", r.output());
    assert!(w.runners().is_empty(), "runner left: {:?}", w.runners());
    assert_eq!(w.deletes().len(), 1, "{}", r.output());
    assert!(!r.statuses().contains(&"ready".to_string()));
}

/// The pids of `root`'s descendants (not `root`), from /proc.
fn descendants(root: u32) -> Vec<u32> {
    harness::process_tree(root)
        .into_iter()
        .filter(|p| *p != root)
        .collect()
}

fn an_agent_killed_mid_job_leaves_no_runner_behind(kind: Kind) {
    let w = World::of(kind);
    let mut r = w.runner("lc-killed", &["--labels=t", "--idle-timeout=never"]);
    r.wait_status("ready", SECS(20));
    let job = w.queue_job("long", &["t"], "sleep 60");
    r.wait_status("job_started", SECS(20));
    // Kill the agent outright, then what it ran: the forge still counts the job running.
    let tree = descendants(r.child.id());
    assert!(!tree.is_empty(), "the agent runs");
    for pid in &tree {
        // SAFETY: kill(2) on processes of this test's own child tree; no memory is involved.
        unsafe {
            libc::kill(*pid as i32, libc::SIGKILL);
        }
    }
    assert_eq!(r.wait_exit(SECS(30)), 3, "{}", r.output());
    assert_eq!(
        r.wait_status("terminated", SECS(1))["reason"],
        "agent_exited"
    );
    assert_eq!(
        w.job(&job).state,
        JobState::Running,
        "the forge still lists the job as running"
    );
    assert!(w.runners().is_empty(), "runner left: {:?}", w.runners());
    assert_eq!(w.deletes().len(), 1);
}

fn a_failed_idle_deregistration_keeps_the_agent_and_tries_again(kind: Kind) {
    let w = World::of(kind);
    let delete = match kind {
        Kind::Github => "/actions/runners/",
        Kind::Gitlab => "/api/v4/runners/",
        Kind::Bitbucket => "/pipelines-config/runners/",
    };
    // Every attempt of the first deletion fails (the client's retries included).
    w.sim.inject_fault(
        Fault::status(503)
            .method("DELETE")
            .path_contains(delete)
            .times(5),
    );
    let mut r = runner_ending_at_its_deadline(&w, "lc-flaky", &["--labels=t", "--idle-timeout=4"]);
    r.wait_status("ready", SECS(20));
    w.wait_until("the idle deletion to fail", SECS(30), |sim| {
        let failed = sim.requests().iter().filter(|q| q.status == 503).count();
        failed == 5
    });
    // The runner may still be handed work, so its agent was kept: it takes a job.
    let job = w.queue_job("after", &["t"], "true");
    assert_eq!(r.wait_exit(SECS(40)), 0, "{}", r.output());
    let job = w.job(&job);
    assert_eq!(job.state, JobState::Succeeded, "{job:?}\n{}", r.output());
    assert_eq!(job.runner_name.as_deref(), Some("lc-flaky"));
    assert_eq!(
        r.wait_status("terminated", SECS(1))["reason"],
        "idle_timeout"
    );
    assert!(w.runners().is_empty(), "{:?}", w.runners());
    assert_eq!(w.deletes().len(), 1);
    assert!(
        r.output().contains("deregistered again in"),
        "the failure is logged: {}",
        r.output()
    );
}
