//! `cml runner --cloud=kubernetes` against the simulated Kubernetes API server and the GitHub
//! simulator: the launcher, its teardown at every phase, pending pods diagnosed, bad
//! configurations, cleanup, and the whole life of a runner whose pod's container is really run
//! (the runner image's entry point and `cml`, with the pod's arguments and environment).

mod harness;

use base64::Engine;
use harness::k8s::{K8s, NS};
use harness::machine::wait_for;
use harness::{Running, World, PAT, SECS};
use std::time::{Duration, Instant};

/// `cml runner --cloud=kubernetes ...` for the simulated GitHub, with the simulator's
/// kubeconfig in `KUBERNETES_CONFIGURATION`.
fn launcher(w: &World, k: &K8s, name: &str, extra: &[&str]) -> std::process::Command {
    let key = |a: &str| a.split('=').next().unwrap_or_default().to_string();
    let mut args: Vec<&str> = ["--cloud=kubernetes", "--cloud-type=s", "--labels=cml-gpu"]
        .into_iter()
        .filter(|d| !extra.iter().any(|e| key(e) == key(d)))
        .collect();
    args.extend_from_slice(extra);
    let mut cmd = w.runner_command(name, &args);
    for (k, v) in k.env() {
        cmd.env(k, v);
    }
    cmd.env("CML_CLOUD_POLL_INTERVAL", "0.2");
    cmd.env("CML_GITHUB_RUNNER_RELEASES_URL", w.releases_url());
    cmd
}

/// Waits until no Job, pod or Secret is left.
fn assert_nothing_left(k: &K8s, what: &str, output: &str) {
    let start = Instant::now();
    while !k.empty() {
        assert!(
            start.elapsed() < SECS(30),
            "{what}: left jobs {:?} pods {:?} secrets {:?}\n{output}",
            k.names("jobs"),
            k.names("pods"),
            k.names("secrets")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn whole_lifecycle_of_a_kubernetes_runner() {
    let w = World::new();
    let k = K8s::start();
    let script = base64::engine::general_purpose::STANDARD
        .encode("echo \"set up by the startup script\" > \"$HOME/setup-mark\"\n");
    let mut launch = Running::spawn(launcher(
        &w,
        &k,
        "k8s-life",
        &[
            "--idle-timeout=3",
            "--destroy-delay=0",
            &format!("--cloud-startup-script={script}"),
        ],
    ));
    let pod = k.running_pod("k8s-life", SECS(60));
    // What the runner is made of: no credential in the Job or its pod.
    let job = k.sim.object("jobs", NS, "k8s-life").unwrap();
    let pod_object = k.sim.object("pods", NS, &pod).unwrap();
    for (what, o) in [("Job", &job), ("pod", &pod_object)] {
        assert!(!o.to_string().contains(PAT), "the token is in the {what}");
    }
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(
        job["spec"]["activeDeadlineSeconds"], 435600,
        "the default maximum lifetime"
    );
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"][0], "/bin/sh", "the startup script runs first");
    assert!(c["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "REPO_TOKEN"
            && e["valueFrom"]["secretKeyRef"]["name"] == "k8s-life-token"));

    // The kubelet starts the container.
    let root = w.tmp.path().join("pod");
    let mut container = k.run_container(&pod, &root);
    assert_eq!(
        launch.wait_exit(SECS(90)),
        0,
        "{}\ncontainer:\n{}",
        launch.output(),
        container.output()
    );
    let launched = launch.wait_status("launched", SECS(1));
    assert_eq!(launched["instance"], "k8s-life", "{launched}");
    assert_eq!(
        std::fs::read_to_string(root.join("root/setup-mark")).unwrap(),
        "set up by the startup script\n"
    );

    let queued = w
        .sim
        .queue_job("octo/app", "train", &["cml-gpu"], "echo training");
    wait_for("the job to complete", SECS(60), || {
        (w.sim.job(queued.job_id).unwrap().status == "completed").then_some(())
    });
    assert_eq!(
        w.sim.job(queued.job_id).unwrap().conclusion.as_deref(),
        Some("success")
    );
    // Idle: the runner deregisters, `cml` exits, the container ends, the Job completes and
    // its TTL removes it, its pod and (garbage collection) its Secret.
    let code = container.wait_exit(SECS(60));
    assert_eq!(code, 0, "{}", container.output());
    assert!(k.sim.finish_pod(NS, &pod, code));
    let done = k.sim.object("jobs", NS, "k8s-life").unwrap();
    assert_eq!(done["status"]["succeeded"], 1, "{done}");
    assert_nothing_left(&k, "after the runner's life", &container.output());
    assert!(w.sim.runners().is_empty(), "{:?}", w.sim.runners());
    let out = container.output();
    assert!(out.contains("\"status\":\"terminated\""), "{out}");
    for text in [out, launch.output()] {
        assert!(!text.contains(PAT), "the token was printed:\n{text}");
    }
}

/// A node lost under a busy pod (a spot node reclaimed): the kubelet's SIGTERM reaches `cml`,
/// which stops the job, deregisters and re-runs the job's workflow exactly once.
#[test]
fn a_node_lost_under_a_busy_pod_reruns_its_job_once() {
    let w = World::new();
    let k = K8s::start();
    let mut launch = Running::spawn(launcher(
        &w,
        &k,
        "k8s-spot",
        &["--idle-timeout=never", "--destroy-delay=0", "--cloud-spot"],
    ));
    let node = "spot-1";
    // The default node carries no spot label: the pod waits, saying so.
    let out = wait_for("the pending pod's diagnosis", SECS(30), || {
        launch.poll_records();
        let o = launch.output();
        o.contains("didn't match Pod's node affinity/selector")
            .then_some(o)
    });
    assert!(out.contains("is not running yet"), "{out}");
    launch.signal(libc::SIGTERM);
    assert_eq!(launch.wait_exit(SECS(60)), 143, "{}", launch.output());
    assert_nothing_left(&k, "pending spot pod", &launch.output());
    drop(k);

    // Now with a GKE spot node.
    let k = K8s::start_with(|c| {
        let mut spot = cml_sim::k8s::SimNode::new(node, 8.0, 32.0);
        spot.labels
            .insert("cloud.google.com/gke-spot".into(), "true".into());
        spot.taints.push((
            "cloud.google.com/gke-spot".into(),
            "true".into(),
            "NoSchedule".into(),
        ));
        c.nodes = vec![spot];
    });
    let mut launch = Running::spawn(launcher(
        &w,
        &k,
        "k8s-spot",
        &["--idle-timeout=never", "--destroy-delay=0", "--cloud-spot"],
    ));
    let pod = k.running_pod("k8s-spot", SECS(60));
    let mut container = k.run_container(&pod, &w.tmp.path().join("pod"));
    assert_eq!(launch.wait_exit(SECS(90)), 0, "{}", launch.output());
    let queued = w
        .sim
        .queue_job("octo/app", "train", &["cml-gpu"], "sleep 60");
    wait_for("the job to start", SECS(30), || {
        (w.sim.job(queued.job_id).unwrap().status == "in_progress").then_some(())
    });
    let failed = k.sim.lose_node(node);
    assert_eq!(failed, vec![(NS.to_string(), pod.clone())]);
    // Graceful node shutdown: SIGTERM, then the pod's termination grace.
    container.signal(libc::SIGTERM);
    let code = container.wait_exit(SECS(120));
    let log = container.output();
    assert_eq!(code, 143, "{log}");
    let interrupted = log
        .lines()
        .find(|l| l.contains("\"status\":\"interrupted\""))
        .unwrap_or_else(|| panic!("no interrupted record:\n{log}"));
    assert!(interrupted.contains("\"job\":\"train\""), "{interrupted}");
    assert!(log.contains("\"status\":\"rerun\""), "{log}");
    wait_for("the runner's deregistration", SECS(20), || {
        w.sim.runners().is_empty().then_some(())
    });
    let attempts: Vec<u64> = w
        .sim
        .jobs()
        .into_iter()
        .filter(|j| j.run_id == queued.run_id)
        .map(|j| j.run_attempt)
        .collect();
    assert_eq!(attempts, [1, 2], "exactly one re-run of the lost job's run");
    // The Job failed with its pod; its TTL removes everything.
    assert_nothing_left(&k, "after the node was lost", &log);
}

#[test]
fn a_gpu_pod_no_node_can_take_is_diagnosed_and_deleted_at_the_timeout() {
    let w = World::new();
    let k = K8s::start();
    let mut r = Running::spawn(launcher(
        &w,
        &k,
        "k8s-gpu",
        &["--cloud-type=m", "--cloud-gpu=v100", "--cloud-timeout=3"],
    ));
    assert_eq!(r.wait_exit(SECS(60)), 1, "{}", r.output());
    let out = r.output();
    assert!(out.contains("is not running yet"), "{out}");
    assert!(out.contains("0/1 nodes are available"), "{out}");
    assert!(out.contains("did not start within 3 s"), "{out}");
    assert!(
        out.contains("no node has the GPUs or labels asked for"),
        "{out}"
    );
    assert!(out.contains("destroying what this launch created"), "{out}");
    let job = k
        .sim
        .requests()
        .into_iter()
        .find(|q| q.method == "POST" && q.path.ends_with("/jobs"))
        .unwrap();
    let c = &job.body["spec"]["template"]["spec"];
    assert_eq!(c["nodeSelector"]["accelerator"], "nvidia-tesla-v100");
    assert_eq!(
        c["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    assert!(c["containers"][0]["image"]
        .as_str()
        .unwrap()
        .ends_with("-gpu"));
    assert_nothing_left(&k, "gpu timeout", &out);
    assert!(w.sim.runners().is_empty());
}

#[test]
fn an_image_that_cannot_be_pulled_and_a_runner_that_never_comes_online_show_why() {
    let w = World::new();
    let k = K8s::start();
    k.sim.fail_image("registry.example/cml:missing");
    let mut r = Running::spawn(launcher(
        &w,
        &k,
        "k8s-image",
        &[
            "--cloud-image=registry.example/cml:missing",
            "--cloud-timeout=3",
        ],
    ));
    assert_eq!(r.wait_exit(SECS(60)), 1, "{}", r.output());
    let out = r.output();
    assert!(
        out.contains("ImagePullBackOff") || out.contains("ErrImagePull"),
        "{out}"
    );
    assert!(out.contains("check --cloud-image"), "{out}");
    assert_nothing_left(&k, "bad image", &out);

    // The pod runs, but its runner never registers: the pod's log is shown.
    let mut r = Running::spawn(launcher(&w, &k, "k8s-silent", &["--cloud-timeout=4"]));
    let pod = k.running_pod("k8s-silent", SECS(30));
    k.sim
        .set_log(NS, &pod, "cml: the forge refused the token\n");
    assert_eq!(r.wait_exit(SECS(60)), 1, "{}", r.output());
    let out = r.output();
    assert!(out.contains("did not come online"), "{out}");
    assert!(out.contains("the forge refused the token"), "{out}");
    assert_nothing_left(&k, "never online", &out);
}

#[test]
fn a_kubernetes_launcher_stopped_at_each_phase_leaves_nothing_behind() {
    for phase in ["creating", "booting", "registering"] {
        let w = World::new();
        // Slow enough scheduling to be caught booting.
        let k = K8s::start_with(|c| {
            c.schedule_delay = Duration::from_millis(700);
            c.namespaces = vec!["default".into(), "ci".into()];
        });
        let mut r = Running::spawn(launcher(
            &w,
            &k,
            "k8s-sig",
            &["--cloud-kubernetes-namespace=ci"],
        ));
        wait_for(&format!("phase {phase}"), SECS(60), || {
            r.poll_records();
            r.seen.iter().any(|v| v["phase"] == phase).then_some(())
        });
        r.signal(libc::SIGTERM);
        assert_eq!(r.wait_exit(SECS(60)), 143, "{phase}: {}", r.output());
        let made_in: Vec<String> = k
            .sim
            .requests()
            .into_iter()
            .filter(|q| q.method == "POST")
            .map(|q| q.path)
            .collect();
        assert!(
            made_in.iter().all(|p| p.contains("/namespaces/ci/")),
            "{made_in:?}"
        );
        let start = Instant::now();
        while !["jobs", "pods", "secrets"]
            .iter()
            .all(|res| k.sim.names(res, "ci").is_empty())
        {
            assert!(start.elapsed() < SECS(30), "{phase}: {}", r.output());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(w.sim.runners().is_empty());
    }
}

#[test]
fn a_bad_kubeconfig_or_a_refused_token_creates_nothing() {
    let w = World::new();
    let k = K8s::start();
    let mut cmd = launcher(&w, &k, "k8s-badconf", &[]);
    cmd.env(
        "KUBERNETES_CONFIGURATION",
        "token: \"s3cr3t\"\nclusters: [oops\n",
    );
    let mut r = Running::spawn(cmd);
    assert_eq!(r.wait_exit(SECS(30)), 1, "{}", r.output());
    let out = r.output();
    assert!(
        out.contains("the Kubernetes configuration from KUBERNETES_CONFIGURATION is not usable"),
        "{out}"
    );
    assert!(out.contains("nothing was created"), "{out}");
    assert!(
        !out.contains("s3cr3t"),
        "a value of the kubeconfig was printed: {out}"
    );
    assert!(k.sim.requests().is_empty());

    let mut cmd = launcher(&w, &k, "k8s-badtoken", &[]);
    cmd.env(
        "KUBERNETES_CONFIGURATION",
        k.kubeconfig_with("not-the-token"),
    );
    let mut r = Running::spawn(cmd);
    assert_eq!(r.wait_exit(SECS(30)), 1, "{}", r.output());
    let out = r.output();
    assert!(
        out.contains("401") && out.contains("refused the credentials"),
        "{out}"
    );
    assert!(!out.contains("not-the-token"), "{out}");
    assert!(k.empty());
    assert!(w.sim.runners().is_empty());

    // Without KUBERNETES_CONFIGURATION, the file KUBECONFIG names (as kubectl reads it).
    let file = w.tmp.path().join("kubeconfig");
    std::fs::write(&file, k.kubeconfig_with(harness::k8s::TOKEN)).unwrap();
    for (path, code) in [(file.clone(), 0), (w.tmp.path().join("missing"), 1)] {
        let mut cmd = w.cml(&["runner", "cleanup", "--cloud=kubernetes"]);
        cmd.env("KUBECONFIG", &path);
        let mut r = Running::spawn(cmd);
        assert_eq!(r.wait_exit(SECS(30)), code, "{}", r.output());
        let out = r.output();
        if code == 0 {
            assert!(out.contains("nothing of cml's found"), "{out}");
        } else {
            assert!(
                out.contains(&format!("from KUBECONFIG ({})", path.display())),
                "{out}"
            );
        }
    }
    assert!(k
        .sim
        .requests()
        .iter()
        .any(|q| q.method == "GET" && q.path.ends_with("/jobs")));
}

#[test]
fn cleanup_on_kubernetes_judges_only_its_scope_and_deletes_leaked_jobs_pods_and_secrets() {
    let w = World::new();
    let k = K8s::start();
    // A leaked launch of this repository: its pod runs, its runner never came online.
    let mut r = Running::spawn(launcher(&w, &k, "k8s-leak", &["--cloud-timeout=600"]));
    k.running_pod("k8s-leak", SECS(60));
    r.signal(libc::SIGKILL);
    r.wait_exit(SECS(20));
    // Another leak whose Job was deleted without propagation: its pod and Secret stay.
    let mut r = Running::spawn(launcher(&w, &k, "k8s-orphans", &["--cloud-timeout=600"]));
    let orphan_pod = k.running_pod("k8s-orphans", SECS(60));
    wait_for("the Secret", SECS(10), || {
        k.names("secrets")
            .contains(&"k8s-orphans-token".to_string())
            .then_some(())
    });
    r.signal(libc::SIGKILL);
    r.wait_exit(SECS(20));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .delete(format!(
                "{}/apis/batch/v1/namespaces/{NS}/jobs/k8s-orphans",
                k.sim.url()
            ))
            .bearer_auth(harness::k8s::TOKEN)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert!(status.is_success());
    // Another repository's leak.
    let elsewhere = World::new();
    let mut o = Running::spawn(launcher(
        &elsewhere,
        &k,
        "k8s-other",
        &["--cloud-timeout=600"],
    ));
    k.running_pod("k8s-other", SECS(60));
    o.signal(libc::SIGKILL);
    o.wait_exit(SECS(20));

    let repo = w.repo_url();
    let cleanup = |extra: &[&str]| {
        let mut args = vec![
            "runner",
            "cleanup",
            "--driver=github",
            "--cloud=kubernetes",
            "--repo",
            &repo,
            "--token",
            PAT,
            "--older-than=0",
        ];
        args.extend_from_slice(extra);
        let mut cmd = w.cml(&args);
        for (k, v) in k.env() {
            cmd.env(k, v);
        }
        Running::spawn(cmd)
    };
    let mut dry = cleanup(&[]);
    assert_eq!(dry.wait_exit(SECS(60)), 0, "{}", dry.output());
    let out = dry.output();
    let line = |id: &str| {
        out.lines()
            .find(|l| {
                l.contains(id)
                    && (l.contains("orphan") || l.contains("keep") || l.contains("not-judged"))
            })
            .unwrap_or_else(|| panic!("{id} not listed:\n{out}"))
            .to_string()
    };
    assert!(line("k8s-leak ").starts_with("orphan"), "{out}");
    // The Job's pod and Secret go with it.
    assert!(
        line("k8s-leak-token").contains("used by job k8s-leak, and goes with it"),
        "{out}"
    );
    assert!(
        line("k8s-orphans-token").contains("its Job is gone"),
        "{out}"
    );
    assert!(line(&orphan_pod).contains("its Job is gone"), "{out}");
    assert!(line("k8s-other ").contains("another repository"), "{out}");
    assert!(out.contains("namespace default"), "{out}");
    assert_eq!(k.names("jobs").len(), 2, "nothing changes without --delete");

    let mut del = cleanup(&["--delete"]);
    assert_eq!(del.wait_exit(SECS(60)), 0, "{}", del.output());
    let start = Instant::now();
    loop {
        let left: Vec<String> = ["jobs", "pods", "secrets"]
            .iter()
            .flat_map(|r| k.names(r))
            .filter(|n| !n.starts_with("k8s-other"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < SECS(30),
            "left: {left:?}\n{}",
            del.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        k.names("jobs"),
        vec!["k8s-other".to_string()],
        "only the other scope's is kept"
    );
    assert_eq!(k.names("secrets"), vec!["k8s-other-token".to_string()]);
    let mut again = cleanup(&["--delete"]);
    assert_eq!(again.wait_exit(SECS(60)), 0, "{}", again.output());
    assert!(!again.output().contains("deleted "), "{}", again.output());
}
