//! `cml runner pool` with the real binary against the GitHub simulator: single-use runners on
//! this machine sized to the queue, the warm floor, SIGTERM, a runner that never comes online,
//! bad values, and the Prometheus metrics the pool serves.

mod harness;

use cml_sim::JobState;
use harness::machine::wait_for;
use harness::{Kind, Running, World, PAT, SECS};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cml runner pool` for the world's simulated repository, polling every 0.2 s.
fn pool(w: &World, name: &str, extra: &[&str]) -> std::process::Command {
    pool_of(w, &w.repo_url(), Some(name), extra)
}

/// `cml runner pool` for `repo` (a repository or an organization of the world's forge),
/// named `name` (the default name when `None`), polling every 0.2 s.
fn pool_of(w: &World, repo: &str, name: Option<&str>, extra: &[&str]) -> std::process::Command {
    let workdir = w.tmp.path().join("pool").join(name.unwrap_or("unnamed"));
    let driver = format!("--driver={}", w.kind.driver());
    let mut args = vec![
        "runner",
        "pool",
        &driver,
        "--repo",
        repo,
        "--token",
        w.kind.token(),
        "--labels=cml",
    ];
    let named = name.map(|n| format!("--name={n}"));
    args.extend(named.as_deref());
    let wd = format!("--workdir={}", workdir.display());
    args.push(&wd);
    args.extend_from_slice(extra);
    let mut cmd = w.cml(&args);
    cmd.env("CML_POOL_POLL_INTERVAL", "0.2");
    cmd.env("CML_GITHUB_RUNNER_RELEASES_URL", w.releases_url());
    cmd
}

/// The metrics text the pool serves on `port`.
fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(SECS(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// Exactly one launch and its one replacement happened (launches then pause), both counted
/// in `cml_pool_launch_failures_total` for `reason`; returns the metrics text.
fn assert_replaced_once(p: &mut Running, port: u16, reason: &str) -> String {
    p.poll_records();
    let launches = p
        .seen
        .iter()
        .filter(|v| v["status"] == "pool_launch")
        .count();
    assert_eq!(
        launches,
        2,
        "one launch and one replacement:\n{}",
        p.output()
    );
    let text = scrape(port);
    let series = format!("cml_pool_launch_failures_total{{cloud=\"local\",reason=\"{reason}\"}}");
    assert_eq!(sample(&text, &series), Some(2.0), "{text}");
    text
}

/// The value of the sample `series` (a metric name with its labels, if any).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_burst_scales_up_to_max_runs_each_job_on_its_own_runner_and_returns_to_the_floor() {
    let w = World::new();
    let port = free_port();
    let ids: Vec<String> = (0..10)
        .map(|i| w.queue_job(&format!("train-{i}"), &["self-hosted", "cml"], "sleep 2"))
        .collect();
    // A job for other labels is not the pool's.
    let other = w.queue_job("elsewhere", &["self-hosted", "arm64"], "true");
    let metrics = format!("--metrics-addr=127.0.0.1:{port}");
    let mut p = Running::spawn(pool(
        &w,
        "burst",
        &["--max=6", "--min-idle=1", "--idle-timeout=never", &metrics],
    ));
    let mut most = 0;
    let start = Instant::now();
    loop {
        let ours = w
            .runners()
            .into_iter()
            .filter(|r| r.name.starts_with("burst-"))
            .count();
        most = most.max(ours);
        if ids.iter().all(|id| w.job(id).state == JobState::Succeeded) {
            break;
        }
        assert!(
            start.elapsed() < SECS(120),
            "jobs not done:\n{}",
            p.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(most <= 6, "{most} runners at once with --max=6");
    assert!(
        most >= 4,
        "the burst was served by several runners at once ({most})"
    );
    let used: BTreeSet<String> = ids
        .iter()
        .map(|id| w.job(id).runner_name.expect("a runner ran it"))
        .collect();
    assert_eq!(used.len(), 10, "one runner per job: {used:?}");
    assert_eq!(w.job(&other).state, JobState::Queued);
    // Back to the floor: one warm runner, idle.
    wait_for("the warm floor", SECS(60), || {
        let rs: Vec<_> = w
            .runners()
            .into_iter()
            .filter(|r| r.name.starts_with("burst-"))
            .collect();
        (rs.len() == 1 && rs[0].online && !rs[0].busy).then_some(())
    });
    let text = wait_for("the metrics to settle", SECS(30), || {
        let t = scrape(port);
        (sample(&t, "gha_idle_runners") == Some(1.0)
            && sample(&t, "gha_desired_runners") == Some(1.0))
        .then_some(t)
    });
    assert_eq!(sample(&text, "gha_max_runners"), Some(6.0), "{text}");
    assert_eq!(sample(&text, "gha_min_runners"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "gha_busy_runners"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "gha_assigned_jobs"), Some(0.0), "{text}");
    assert!(
        sample(&text, "gha_started_jobs_total").unwrap() >= 10.0,
        "{text}"
    );
    assert!(
        sample(&text, "gha_job_startup_duration_seconds_count").unwrap() >= 10.0,
        "{text}"
    );
    assert!(
        text.contains("# TYPE gha_job_execution_duration_seconds histogram"),
        "{text}"
    );
    assert!(!text.contains("runner=\""), "no per-runner label: {text}");
    // The scale-set protocol sized the pool, and the pool registered every runner with a
    // JIT configuration: one registration token in all, the pool's own, for the exchange.
    assert!(
        p.output().contains("listening on runner scale set burst"),
        "{}",
        p.output()
    );
    let tokens = w
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/actions/runners/registration-token"))
        .count();
    assert_eq!(tokens, 1, "registration tokens minted");

    // SIGTERM: the idle runner is removed, nothing is left.
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(SECS(60)), 143, "{}", p.output());
    wait_for("no runner left", SECS(30), || {
        w.runners()
            .iter()
            .all(|r| !r.name.starts_with("burst-"))
            .then_some(())
    });
    let out = p.output();
    assert!(!out.contains(PAT), "the token was printed");
    for secret in w.sim.github_issued_secrets() {
        assert!(!out.contains(&secret), "a minted token was printed");
    }
}

#[test]
fn sigterm_mid_burst_lets_busy_runners_finish_and_loses_no_job() {
    let w = World::new();
    let ids: Vec<String> = (0..3)
        .map(|i| w.queue_job(&format!("long-{i}"), &["self-hosted", "cml"], "sleep 3"))
        .collect();
    let mut p = Running::spawn(pool(&w, "term", &["--max=3", "--idle-timeout=never"]));
    wait_for("three jobs running", SECS(60), || {
        ids.iter()
            .all(|id| w.job(id).state == JobState::Running)
            .then_some(())
    });
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(SECS(90)), 143, "{}", p.output());
    for id in &ids {
        assert_eq!(w.job(id).state, JobState::Succeeded, "{}", p.output());
    }
    wait_for("no runner left", SECS(30), || {
        w.runners()
            .iter()
            .all(|r| !r.name.starts_with("term-"))
            .then_some(())
    });
}

#[test]
fn a_runner_that_never_comes_online_is_replaced_once_then_reported() {
    let w = World::new();
    let port = free_port();
    w.queue_job("waiting", &["self-hosted", "cml"], "true");
    let metrics = format!("--metrics-addr=127.0.0.1:{port}");
    let mut cmd = pool(&w, "broken", &["--max=2", &metrics]);
    // No agent can be downloaded: every launch fails before its runner is online.
    cmd.env("CML_GITHUB_RUNNER_RELEASES_URL", "http://127.0.0.1:9/none");
    let mut p = Running::spawn(cmd);
    p.wait_status("launch_failed", SECS(90));
    // Launches pause: no third launch comes.
    std::thread::sleep(SECS(2));
    assert_replaced_once(&mut p, port, "launch_error");
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(SECS(60)), 143, "{}", p.output());
    assert!(w.runners().is_empty());
}

#[test]
fn bad_pool_values_are_refused_before_anything_is_registered() {
    let w = World::new();
    for (args, needle) in [
        (vec!["--max=0"], "--max must be at least 1"),
        (
            vec!["--min-idle=5", "--max=2"],
            "--min-idle (5) is more than --max (2)",
        ),
        (vec!["--max=lots"], "is not a number of runners"),
        (vec!["--min-idle-schedule=weekdays=3"], "is not a schedule"),
        (vec!["--metrics-addr=nowhere"], "is not HOST:PORT"),
        (vec!["--boot-window=soon"], "--boot-window"),
    ] {
        let mut p = Running::spawn(pool(&w, "bad", &args));
        assert_eq!(p.wait_exit(SECS(30)), 2, "{args:?}: {}", p.output());
        let out = p.output();
        assert!(out.contains(needle), "{args:?}: {out}");
    }
    assert!(w.sim.github_registered_names().is_empty());
}

#[test]
fn a_gitlab_pool_runs_each_pending_job_on_its_own_runner() {
    let w = World::of(Kind::Gitlab);
    let ids: Vec<String> = (0..2)
        .map(|i| w.queue_job(&format!("train-{i}"), &["cml"], "sleep 1"))
        .collect();
    let mut p = Running::spawn(pool(&w, "gl", &["--max=2", "--idle-timeout=never"]));
    wait_for("the jobs to succeed", SECS(120), || {
        ids.iter()
            .all(|id| w.job(id).state == JobState::Succeeded)
            .then_some(())
    });
    let used: BTreeSet<String> = ids
        .iter()
        .map(|id| w.job(id).runner_name.expect("a runner ran it"))
        .collect();
    assert_eq!(
        used.len(),
        2,
        "one runner per job: {used:?}\n{}",
        p.output()
    );
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(SECS(60)), 143, "{}", p.output());
    wait_for("no runner left", SECS(30), || {
        w.runners()
            .iter()
            .all(|r| !r.name.starts_with("gl-"))
            .then_some(())
    });
    assert!(
        !p.output().contains(w.kind.token()),
        "the token was printed"
    );
}

/// Two pools on one Lease (as two replicas of the Kubernetes Deployment): one leads, the other
/// stands by without launching anything, and takes over once the leader stops and releases it.
#[test]
fn only_the_holder_of_the_lease_runs_the_pool_and_the_other_takes_over() {
    let w = World::new();
    let k = harness::k8s::K8s::start();
    let kubeconfig = k.env();
    let start = |host: &str| {
        let mut cmd = pool(&w, host, &["--max=2", "--lease=cml-pool"]);
        cmd.envs(kubeconfig.iter().map(|(k, v)| (*k, v.as_str())))
            .env("HOSTNAME", host);
        Running::spawn(cmd)
    };
    let mut a = start("pool-a");
    a.wait_status("pool", SECS(30));
    let mut b = start("pool-b");
    std::thread::sleep(SECS(3));
    b.poll_records();
    assert!(
        !b.seen.iter().any(|v| v["status"] == "pool"),
        "a second pool ran while the first held the Lease:\n{}",
        b.output()
    );
    assert!(
        b.output()
            .contains("standing by until pool-b holds the Lease default/cml-pool"),
        "{}",
        b.output()
    );
    let lease = k
        .sim
        .object("leases", harness::k8s::NS, "cml-pool")
        .expect("the Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "pool-a");
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait_exit(SECS(60)), 143, "{}", a.output());
    assert!(a.output().contains("released the Lease"), "{}", a.output());
    b.wait_status("pool", SECS(30));
    let lease = k
        .sim
        .object("leases", harness::k8s::NS, "cml-pool")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pool-b");
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait_exit(SECS(60)), 143, "{}", b.output());
}

/// A pool whose runners are Kubernetes pods: each job runs in a pod of its own (the pod's
/// container really run, as in `cloud_k8s.rs`), and every pod ends with its one job.
#[test]
fn a_pool_on_kubernetes_runs_each_job_in_a_pod_of_its_own() {
    use harness::k8s::{K8s, NS};
    let w = World::new();
    let k = K8s::start_with(|c| c.nodes = vec![cml_sim::k8s::SimNode::new("node-1", 64.0, 256.0)]);
    let ids: Vec<String> = (0..2)
        .map(|i| w.queue_job(&format!("pod-job-{i}"), &["self-hosted", "cml"], "sleep 1"))
        .collect();
    let mut cmd = pool(
        &w,
        "kp",
        &[
            "--max=2",
            "--idle-timeout=never",
            "--destroy-delay=0",
            "--cloud=kubernetes",
            "--cloud-type=s",
        ],
    );
    cmd.envs(k.env().into_iter().map(|(a, b)| (a.to_string(), b)))
        .env("CML_CLOUD_POLL_INTERVAL", "0.2");
    let mut p = Running::spawn(cmd);
    // The kubelet: each running pod's container is started once; its exit ends the pod.
    let mut containers: std::collections::BTreeMap<String, (Running, bool)> = Default::default();
    let start = Instant::now();
    // What each runner pod's Secret holds: its JIT configuration, never the pool's PAT.
    let secrets_checked = std::cell::RefCell::new(BTreeSet::new());
    let kubelet = |containers: &mut std::collections::BTreeMap<String, (Running, bool)>| {
        for name in k.names("secrets") {
            if let Some(secret) = k.sim.object("secrets", NS, &name) {
                let keys: Vec<String> = secret["data"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                assert!(
                    keys.iter().any(|k| k == "CML_GITHUB_JIT_CONFIG"),
                    "{name}: {keys:?}"
                );
                assert!(!secret.to_string().contains(PAT), "{name} holds the PAT");
                use base64::Engine;
                for v in secret["data"].as_object().unwrap().values() {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(v.as_str().unwrap())
                        .unwrap();
                    assert!(
                        !String::from_utf8_lossy(&raw).contains(PAT),
                        "{name} holds the PAT"
                    );
                }
                assert!(!keys.iter().any(|k| k == "REPO_TOKEN"), "{name}: {keys:?}");
                secrets_checked.borrow_mut().insert(name);
            }
        }
        for job in k.names("jobs") {
            for pod in k.sim.pods_of(NS, &job) {
                let running = k
                    .sim
                    .object("pods", NS, &pod)
                    .is_some_and(|o| o["status"]["phase"] == "Running");
                if running && !containers.contains_key(&pod) {
                    let root = w.tmp.path().join("pods").join(&pod);
                    containers.insert(pod.clone(), (k.run_container(&pod, &root), false));
                }
            }
        }
        for (pod, (c, ended)) in containers.iter_mut() {
            if !*ended {
                if let Ok(Some(status)) = c.child.try_wait() {
                    *ended = true;
                    k.sim.finish_pod(NS, pod, status.code().unwrap_or(1));
                }
            }
        }
    };
    while !ids.iter().all(|id| w.job(id).state == JobState::Succeeded) {
        assert!(
            start.elapsed() < SECS(180),
            "jobs not done:\n{}",
            p.output()
        );
        kubelet(&mut containers);
        std::thread::sleep(Duration::from_millis(100));
    }
    let used: BTreeSet<String> = ids
        .iter()
        .map(|id| w.job(id).runner_name.expect("a runner ran it"))
        .collect();
    assert_eq!(used.len(), 2, "one runner per job: {used:?}");
    assert!(used.iter().all(|n| n.starts_with("kp-")), "{used:?}");
    // Single use: each pod's `cml` ends after its job, the Job completes and goes.
    while !(containers.values().all(|(_, ended)| *ended) && k.empty()) {
        assert!(
            start.elapsed() < SECS(240),
            "pods left: {:?}\n{}",
            k.names("pods"),
            p.output()
        );
        kubelet(&mut containers);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(containers.len() >= 2, "{:?}", containers.keys());
    assert!(secrets_checked.borrow().len() >= 2, "{secrets_checked:?}");
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(SECS(60)), 143, "{}", p.output());
    assert!(w.runners().iter().all(|r| !r.name.starts_with("kp-")));
    assert!(!p.output().contains(PAT), "the token was printed");
}

/// A runner stuck booting (its agent download never answers) is stopped at the boot window and
/// replaced once; the stopped one is not taken for a failure again, so exactly two launches
/// happen before the pool reports and pauses.
#[test]
fn a_runner_stuck_booting_is_stopped_at_the_boot_window_and_replaced_once() {
    let w = World::new();
    let port = free_port();
    // A server that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/releases", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().take(16).flatten() {
            held.push(c);
        }
        std::thread::sleep(SECS(600));
    });
    w.queue_job("waiting", &["self-hosted", "cml"], "true");
    let metrics = format!("--metrics-addr=127.0.0.1:{port}");
    let mut cmd = pool(&w, "stuck", &["--max=2", "--boot-window=2s", &metrics]);
    cmd.env("CML_GITHUB_RUNNER_RELEASES_URL", &silent_url);
    let mut p = Running::spawn(cmd);
    p.wait_status("launch_failed", SECS(60));
    std::thread::sleep(SECS(3));
    let text = assert_replaced_once(&mut p, port, "boot_timeout");
    assert_eq!(
        sample(
            &text,
            "cml_pool_launch_failures_total{cloud=\"local\",reason=\"launch_error\"}"
        ),
        None,
        "a runner the pool stopped is no failure of its own: {text}"
    );
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(SECS(60)), 143, "{}", p.output());
    assert!(w.runners().is_empty());
}

/// A warm runner killed hard (no deregistration: it stays listed, offline) is not counted as
/// capacity for ever: once its process is gone the pool removes its registration, forgets it
/// and launches another to keep the floor.
#[test]
fn a_runner_killed_hard_is_not_counted_and_the_floor_is_kept() {
    let w = World::new();
    let mut p = Running::spawn(pool(
        &w,
        "hard",
        &["--max=2", "--min-idle=1", "--idle-timeout=never"],
    ));
    let first = wait_for("a warm runner", SECS(60), || {
        w.runners()
            .into_iter()
            .find(|r| r.name.starts_with("hard-") && r.online)
            .map(|r| r.name)
    });
    // Its `cml` and agent, killed at once: nothing deregisters it.
    let child = harness::process_tree(p.child.id())
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&first))
                .unwrap_or(false)
        })
        .expect("the runner's process");
    // The runner's `cml` and everything under it (its agent leads a process group of its own).
    for pid in harness::process_tree(child) {
        // SAFETY: kill(2) of a process this test's pool started; no memory is involved.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    let second = wait_for("another warm runner", SECS(60), || {
        w.runners()
            .into_iter()
            .find(|r| r.name.starts_with("hard-") && r.name != first && r.online)
            .map(|r| r.name)
    });
    assert_ne!(first, second);
    // Its process has ended and it is offline: the pool removes its registration.
    assert!(
        p.output().contains(&format!(
            "removed the registration of stopped runner {first}"
        )),
        "{}",
        p.output()
    );
    assert!(w.runners().iter().all(|r| r.name != first));
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(SECS(60)), 143, "{}", p.output());
}

/// The runner scale set has one session owner: a second pool of the same name is refused
/// before it launches anything, and the first one goes on serving jobs. Once the first has
/// stopped (closing its session), a pool of that name starts again.
#[test]
fn a_second_pool_for_the_same_scale_set_is_refused_and_the_first_goes_on() {
    let w = World::new();
    let mut a = Running::spawn(pool(&w, "owned", &["--max=2", "--idle-timeout=never"]));
    a.wait_status("pool", SECS(30));
    let mut b = Running::spawn(pool(&w, "owned", &["--max=2"]));
    assert_eq!(b.wait_exit(SECS(30)), 1, "{}", b.output());
    let out = b.output();
    assert!(
        out.contains("another pool owns runner scale set owned") && out.contains("hint:"),
        "{out}"
    );
    assert!(!out.contains("pool_launch"), "{out}");
    assert!(!out.contains(PAT), "the token was printed: {out}");
    let id = w.queue_job("after", &["self-hosted", "cml"], "true");
    wait_for("the first pool to serve a job", SECS(60), || {
        (w.job(&id).state == JobState::Succeeded).then_some(())
    });
    assert!(w.job(&id).runner_name.unwrap().starts_with("owned-"));
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait_exit(SECS(60)), 143, "{}", a.output());
    assert!(
        a.output()
            .contains("closed the message session on scale set owned"),
        "{}",
        a.output()
    );
    // No runner of it left: its scale set is deleted, so that it takes no more jobs.
    assert!(
        w.sim.scale_sets().iter().all(|s| s.name != "owned"),
        "{}",
        a.output()
    );
    // A runner of an earlier run of the pool, left registered and offline (killed), is
    // removed when a pool of that name starts; another's offline runner is not.
    for name in ["owned-k1ll3d", "other-k1ll3d"] {
        let mut dead = w.runner(name, &["--idle-timeout=never"]);
        dead.wait_status("ready", SECS(20));
        dead.child.kill().unwrap();
        dead.wait_exit(SECS(10));
    }
    wait_for("the killed runners offline", SECS(20), || {
        (w.runners()
            .iter()
            .filter(|r| r.name.ends_with("-k1ll3d") && !r.online)
            .count()
            == 2)
            .then_some(())
    });
    let mut c = Running::spawn(pool(&w, "owned", &["--max=1"]));
    c.wait_status("pool", SECS(30));
    assert!(
        c.output()
            .contains("removed offline runner owned-k1ll3d left by an earlier run"),
        "{}",
        c.output()
    );
    let names: Vec<String> = w.runners().into_iter().map(|r| r.name).collect();
    assert!(!names.contains(&"owned-k1ll3d".to_string()), "{names:?}");
    assert!(names.contains(&"other-k1ll3d".to_string()), "{names:?}");
    c.signal(libc::SIGTERM);
    assert_eq!(c.wait_exit(SECS(60)), 143, "{}", c.output());
    wait_for("no runner left", SECS(30), || {
        w.runners()
            .iter()
            .all(|r| !r.name.starts_with("owned-"))
            .then_some(())
    });
}

/// Where the service offers no scale sets (GitHub Enterprise Server without the protocol),
/// the pool polls queued jobs instead, and still registers each runner itself with a JIT
/// configuration: no registration token is minted, and no job step sees a credential.
/// Asked for the protocol only, the pool refuses to start.
#[test]
fn without_scale_sets_the_pool_polls_the_queue_and_registers_jit_runners() {
    let w = World::with(|c| c.actions_scale_sets = false);
    let envs = w.tmp.path().join("envs");
    std::fs::create_dir_all(&envs).unwrap();
    let ids: Vec<String> = (0..2)
        .map(|i| {
            w.queue_job(
                &format!("fb-{i}"),
                &["self-hosted", "cml"],
                &format!("env > {}/job-{i}.env", envs.display()),
            )
        })
        .collect();
    let mut p = Running::spawn(pool(&w, "fb", &["--max=2", "--idle-timeout=never"]));
    wait_for("the jobs to succeed", SECS(120), || {
        ids.iter()
            .all(|id| w.job(id).state == JobState::Succeeded)
            .then_some(())
    });
    let out = p.output();
    assert!(out.contains("does not offer runner scale sets"), "{out}");
    let reqs = w.sim.requests();
    let jit = reqs
        .iter()
        .filter(|r| r.path.ends_with("/actions/runners/generate-jitconfig"))
        .count();
    assert!(jit >= 2, "{jit} JIT configurations");
    // One registration token: the pool's own, for the scale-set exchange the service refused.
    // None for a runner.
    let tokens = reqs
        .iter()
        .filter(|r| r.path.ends_with("/actions/runners/registration-token"))
        .count();
    assert_eq!(tokens, 1, "registration tokens minted");
    for i in 0..2 {
        let env = std::fs::read_to_string(envs.join(format!("job-{i}.env"))).unwrap();
        for needle in [
            PAT,
            "CML_GITHUB_JIT_CONFIG",
            "ACTIONS_RUNNER_INPUT",
            "REPO_TOKEN",
        ] {
            assert!(!env.contains(needle), "job {i} sees {needle}:\n{env}");
        }
    }
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(SECS(60)), 143, "{}", p.output());
    wait_for("no runner left", SECS(30), || {
        w.runners()
            .iter()
            .all(|r| !r.name.starts_with("fb-"))
            .then_some(())
    });
    assert!(!p.output().contains(PAT), "the token was printed");

    let mut strict = pool(&w, "strict", &["--max=1"]);
    strict.env("CML_POOL_GITHUB_PROTOCOL", "scale-set");
    let mut q = Running::spawn(strict);
    assert_eq!(q.wait_exit(SECS(30)), 2, "{}", q.output());
    assert!(
        q.output().contains("does not offer runner scale sets") && q.output().contains("hint:"),
        "{}",
        q.output()
    );
    assert!(w.runners().iter().all(|r| !r.name.starts_with("strict-")));
}

/// Without `--name` a pool is `cml-pool`, not a random name: its scale set and its runners'
/// names must be the same from one run to the next.
#[test]
fn a_pool_without_a_name_is_cml_pool() {
    let w = World::new();
    let mut p = Running::spawn(pool_of(&w, &w.repo_url(), None, &["--max=1"]));
    let record = p.wait_status("pool", SECS(30));
    assert_eq!(record["name"], "cml-pool", "{}", p.output());
    assert!(
        w.sim.scale_sets().iter().any(|s| s.name == "cml-pool"),
        "{}",
        p.output()
    );
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(SECS(60)), 143, "{}", p.output());
}

/// An organization's pool: the scale set serves every repository of the organization, so no
/// queue listing is needed (GitHub lists queued jobs per repository only).
#[test]
fn an_organizations_pool_serves_its_repositories_jobs_over_the_scale_set() {
    let w = World::new();
    let org = w.repo_url().rsplit_once('/').unwrap().0.to_string();
    let mut p = Running::spawn(pool_of(
        &w,
        &org,
        Some("org-pool"),
        &["--max=2", "--idle-timeout=never"],
    ));
    p.wait_status("pool", SECS(30));
    let ids: Vec<String> = (0..2)
        .map(|i| w.queue_job(&format!("org-{i}"), &["self-hosted", "cml"], "true"))
        .collect();
    wait_for("the jobs to succeed", SECS(120), || {
        ids.iter()
            .all(|id| w.job(id).state == JobState::Succeeded)
            .then_some(())
    });
    for id in &ids {
        assert!(w.job(id).runner_name.unwrap().starts_with("org-pool-"));
    }
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(SECS(60)), 143, "{}", p.output());
    assert!(!p.output().contains(PAT), "the token was printed");
}
