//! `cml runner --cloud=gcp` against the simulated Compute Engine and the GitHub simulator:
//! the launcher, its teardown at every phase, bad values, spot capacity across zones, cleanup,
//! and the whole life of a machine whose startup script is really run in a sandbox (systemd
//! and curl stood in for by `fixtures/machine/`), talking to its own simulated metadata server.

mod harness;

use cml_sim::gcp::{Capacity, GcpFault};
use harness::gcp::Gcp;
use harness::machine::{fixtures, service_log, sha256_of, wait_for};
use harness::{Running, World, PAT, SECS};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// The zone every test launches in (`--cloud-region`).
const ZONE: &str = "us-west1-a";

/// `cml runner --cloud=gcp ...` for the simulated GitHub, with the simulator's variables.
fn launcher(w: &World, gcp: &Gcp, name: &str, extra: &[&str]) -> std::process::Command {
    let region = format!("--cloud-region={ZONE}");
    let key = |a: &str| a.split('=').next().unwrap_or_default().to_string();
    // Defaults, unless `extra` gives the option.
    let mut args: Vec<&str> = [
        "--cloud=gcp",
        region.as_str(),
        "--cloud-type=m",
        "--labels=cml-gpu",
        "--cloud-cml-url=https://releases.example.invalid/cml-{version}-{arch}",
    ]
    .into_iter()
    .filter(|d| !extra.iter().any(|e| key(e) == key(d)))
    .collect();
    args.extend_from_slice(extra);
    let mut cmd = w.runner_command(name, &args);
    for (k, v) in gcp.env() {
        cmd.env(k, v);
    }
    cmd.env("CML_CLOUD_POLL_INTERVAL", "0.2");
    cmd.env("CML_GITHUB_RUNNER_RELEASES_URL", w.releases_url());
    cmd
}

/// The instance whose `cml-runner` metadata item is `runner`, once it exists.
fn instance_of(gcp: &Gcp, runner: &str) -> (String, String, Value) {
    wait_for(&format!("the instance of {runner}"), SECS(60), || {
        gcp.live()
            .into_iter()
            .find(|(_, _, i)| Gcp::metadata_item(i, "cml-runner").as_deref() == Some(runner))
    })
}

/// Waits until the simulator holds no instance and no disk.
fn assert_nothing_left(gcp: &Gcp, what: &str, output: &str) {
    let start = Instant::now();
    while !gcp.sim.instances().is_empty() || !gcp.sim.disks().is_empty() {
        assert!(
            start.elapsed() < SECS(30),
            "{what}: left instances {:?} disks {:?}\n{output}",
            gcp.live()
                .iter()
                .map(|(z, n, _)| format!("{z}/{n}"))
                .collect::<Vec<_>>(),
            gcp.sim
                .disks()
                .iter()
                .map(|d| d["name"].clone())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn inserts(gcp: &Gcp) -> Vec<cml_sim::gcp::GcpRequest> {
    gcp.sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "compute.instances.insert")
        .collect()
}

#[test]
fn a_gcp_runner_that_never_comes_online_is_deleted_after_the_timeout_with_its_console() {
    let w = World::new();
    let gcp = Gcp::start();
    let mut r = Running::spawn(launcher(&w, &gcp, "gcp-timeout", &["--cloud-timeout=8"]));
    let (zone, name, _) = instance_of(&gcp, "gcp-timeout");
    assert!(gcp
        .sim
        .append_serial(&zone, &name, "cloud-init: the startup script failed\n"));
    assert_eq!(r.wait_exit(SECS(60)), 1, "{}", r.output());
    let out = r.output();
    assert!(out.contains("did not come online"), "{out}");
    assert!(out.contains("destroying what this launch created"), "{out}");
    assert!(
        out.contains("the startup script failed"),
        "the serial console is shown: {out}"
    );
    assert_nothing_left(&gcp, "timeout", &out);
    assert!(gcp.sim.deleted_instances().contains(&name));
    assert!(!out.contains(PAT), "the token was printed");
    assert!(!out.contains("PRIVATE KEY"), "the key was printed");
    assert!(w.sim.runners().is_empty());
}

#[test]
fn a_gcp_launcher_stopped_at_each_phase_leaves_nothing_behind() {
    for phase in ["creating", "booting", "registering"] {
        let w = World::new();
        let gcp = Gcp::start();
        let mut r = Running::spawn(launcher(&w, &gcp, "gcp-sig", &["--cloud-spot"]));
        wait_for(&format!("phase {phase}"), SECS(60), || {
            r.poll_records();
            r.seen.iter().any(|v| v["phase"] == phase).then_some(())
        });
        r.signal(libc::SIGTERM);
        assert_eq!(r.wait_exit(SECS(60)), 143, "{phase}: {}", r.output());
        assert_nothing_left(&gcp, phase, &r.output());
    }
}

#[test]
fn a_gcp_insert_whose_answer_is_lost_is_found_by_its_launch_label_on_sigint() {
    let w = World::new();
    let gcp = Gcp::start();
    // Compute Engine makes the machine, but the launcher never hears back.
    gcp.sim.inject(
        "compute.instances.insert",
        GcpFault::DelayAnswer(SECS(120)),
        None,
    );
    let mut r = Running::spawn(launcher(&w, &gcp, "gcp-inflight", &[]));
    let (_, name, _) = instance_of(&gcp, "gcp-inflight");
    let signalled = Instant::now();
    r.signal(libc::SIGINT);
    assert_eq!(r.wait_exit(SECS(60)), 130, "{}", r.output());
    assert_nothing_left(&gcp, "lost answer", &r.output());
    let deleted = gcp
        .sim
        .requests()
        .into_iter()
        .find(|q| q.method == "compute.instances.delete")
        .expect("a delete was sent");
    let took = deleted.at.saturating_duration_since(signalled);
    eprintln!("instances.delete reached Compute Engine {took:?} after SIGINT");
    assert!(took < SECS(5), "delete issued {took:?} after the signal");
    assert!(gcp.sim.deleted_instances().contains(&name));
}

#[test]
fn bad_gcp_values_and_credentials_create_nothing_and_mint_no_token() {
    let w = World::new();
    let gcp = Gcp::start();
    for (extra, needle) in [
        (vec!["--cloud-region=us-central1"], "us-central1-a"),
        (vec!["--cloud-region=moon-base"], "--cloud-region"),
        (
            vec!["--cloud-type=g2-standard-16+nvidia-l4*99"],
            "accelerator count",
        ),
        (vec!["--cloud-gpu=warp drive"], "--cloud-gpu"),
        (vec!["--cloud-image=::"], "--cloud-image"),
        (vec!["--cloud-hdd-size=-1"], "--cloud-hdd-size"),
    ] {
        let mut r = Running::spawn(launcher(&w, &gcp, "gcp-bad", &extra));
        let code = r.wait_exit(SECS(60));
        assert!(code == 1 || code == 2, "{extra:?}: {code} {}", r.output());
        assert!(r.output().contains(needle), "{extra:?}: {}", r.output());
    }
    // Credentials: missing, not JSON, a key the token endpoint refuses.
    for (vars, needle) in [
        (vec![], "GOOGLE_APPLICATION_CREDENTIALS"),
        (
            vec![(
                "GOOGLE_APPLICATION_CREDENTIALS_DATA",
                "{not json".to_string(),
            )],
            "GOOGLE_APPLICATION_CREDENTIALS_DATA",
        ),
        (
            vec![(
                "GOOGLE_APPLICATION_CREDENTIALS",
                w.tmp.path().join("missing.json").display().to_string(),
            )],
            "GOOGLE_APPLICATION_CREDENTIALS",
        ),
    ] {
        let mut cmd = launcher(&w, &gcp, "gcp-bad-key", &[]);
        cmd.env_remove("GOOGLE_APPLICATION_CREDENTIALS_DATA");
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let mut r = Running::spawn(cmd);
        assert_eq!(r.wait_exit(SECS(60)), 1, "{vars:?}: {}", r.output());
        assert!(r.output().contains(needle), "{vars:?}: {}", r.output());
        assert!(r.output().contains("hint:"), "{}", r.output());
    }
    gcp.sim.disable_service_account_key("launcher-key-1");
    let mut r = Running::spawn(launcher(&w, &gcp, "gcp-disabled-key", &[]));
    assert_eq!(r.wait_exit(SECS(60)), 1, "{}", r.output());
    assert!(
        r.output().contains("GOOGLE_APPLICATION_CREDENTIALS_DATA"),
        "{}",
        r.output()
    );
    assert!(
        !r.output().contains(gcp.private_pem.lines().nth(1).unwrap()),
        "the key was printed"
    );
    assert!(inserts(&gcp).is_empty(), "{:?}", inserts(&gcp));
    assert!(gcp.sim.instances().is_empty());
    assert_eq!(w.sim.registration_tokens_issued(), 0);
}

#[test]
fn spot_without_capacity_tries_the_other_zones_then_on_demand_with_fallback() {
    let w = World::new();
    let gcp = Gcp::start();
    for zone in cml_core::gcp::zones_of_region("us-west1").unwrap() {
        gcp.sim.set_capacity(zone, Capacity::SpotExhausted);
    }
    // Without --cloud-spot-fallback: every zone is tried, then the launch fails cleanly.
    let mut r = Running::spawn(launcher(&w, &gcp, "gcp-nospot", &["--cloud-spot"]));
    assert_eq!(r.wait_exit(SECS(60)), 1, "{}", r.output());
    assert!(
        r.output().contains("--cloud-spot-fallback"),
        "{}",
        r.output()
    );
    let zones: Vec<String> = inserts(&gcp)
        .iter()
        .map(|q| {
            q.path
                .split("/zones/")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(zones.len(), 3, "each zone once: {zones:?}");
    assert_eq!(zones[0], ZONE);
    assert_nothing_left(&gcp, "no capacity", &r.output());

    // With it: on demand, in the first zone, and the log says why.
    let mut r = Running::spawn(launcher(
        &w,
        &gcp,
        "gcp-fallback",
        &[
            "--cloud-spot",
            "--cloud-spot-fallback",
            "--cloud-spot-price=0.5",
        ],
    ));
    // The spot attempts show while their operations run; the on-demand machine follows.
    let (zone, _, _) = wait_for("the on-demand machine", SECS(60), || {
        gcp.live().into_iter().find(|(_, _, i)| {
            Gcp::metadata_item(i, "cml-runner").as_deref() == Some("gcp-fallback")
                && i["scheduling"]["provisioningModel"]
                    .as_str()
                    .unwrap_or("STANDARD")
                    == "STANDARD"
        })
    });
    assert_eq!(zone, ZONE, "on demand in the zone asked for");
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait_exit(SECS(60)), 143, "{}", r.output());
    assert!(
        r.output().contains("launching an on-demand machine"),
        "{}",
        r.output()
    );
    assert!(
        r.output().contains("--cloud-spot-price"),
        "a spot price has no meaning on GCP, and the log says so: {}",
        r.output()
    );
    assert_nothing_left(&gcp, "fallback", &r.output());
}

/// The launcher creates the instance in the simulator; the test plays the machine: it takes
/// the instance's `startup-script` metadata and runs it in a sandbox, with the instance's own
/// simulated metadata server. The machine's runner registers, the launcher exits 0, a job
/// runs, the runner idles out, deregisters and deletes its own instance with the machine's
/// service-account token (no key of the user's is on the machine).
#[test]
fn whole_lifecycle_of_a_gcp_runner() {
    let w = World::new();
    let gcp = Gcp::start();
    let cml = harness::cml_exe();
    let sha = sha256_of(&cml);
    let mut launch = Running::spawn(launcher(
        &w,
        &gcp,
        "gcp-life",
        &[
            "--idle-timeout=3",
            "--destroy-delay=0",
            "--cloud-spot",
            "--cloud-gpu=t4",
            "--cloud-metadata=Team=ML Research",
            &format!("--cloud-cml-sha256={sha}"),
        ],
    ));
    let (zone, name, instance) = instance_of(&gcp, "gcp-life");
    // What the machine is made of.
    assert_eq!(
        instance["machineType"].as_str().unwrap().rsplit('/').next(),
        Some("n1-standard-4")
    );
    let accel = &instance["guestAccelerators"][0];
    assert!(
        accel["acceleratorType"]
            .as_str()
            .unwrap()
            .ends_with("nvidia-tesla-t4"),
        "{accel}"
    );
    assert_eq!(instance["scheduling"]["onHostMaintenance"], "TERMINATE");
    assert_eq!(instance["scheduling"]["provisioningModel"], "SPOT");
    assert_eq!(
        instance["scheduling"]["instanceTerminationAction"],
        "DELETE"
    );
    assert_eq!(
        instance["scheduling"]["maxRunDuration"]["seconds"], "435600",
        "the default maximum lifetime, enforced by Compute Engine too"
    );
    assert_eq!(instance["labels"]["team"], "ml_research");
    assert!(instance["labels"]["cml-id"].is_string());
    let metadata = serde_json::to_string(&instance["metadata"]).unwrap();
    assert!(!metadata.contains("PRIVATE KEY"), "no key in the metadata");
    assert!(!metadata.contains(&gcp.key_json[..40]));
    assert!(gcp
        .sim
        .requests()
        .iter()
        .all(|q| !q.method.starts_with("compute.firewalls")));
    let script = Gcp::metadata_item(&instance, "startup-script").expect("a startup script");
    assert!(script.contains("systemctl enable --now cml.service"));

    // The machine boots.
    let metadata_server = gcp.sim.metadata_server(&zone, &name).unwrap();
    let root = w.tmp.path().join("machine");
    let booted = run_startup_script(&root, &script, &gcp, &metadata_server.url());
    assert!(
        booted.status.success(),
        "startup script failed: {}{}",
        String::from_utf8_lossy(&booted.stdout),
        String::from_utf8_lossy(&booted.stderr)
    );
    let env = std::fs::read_to_string(root.join("etc/cml/env")).unwrap();
    assert!(
        env.contains("CML_MACHINE_CLOUD=") && env.contains("gcp"),
        "{env}"
    );

    assert_eq!(
        launch.wait_exit(SECS(90)),
        0,
        "{}\nmachine log:\n{}",
        launch.output(),
        service_log(&root)
    );
    let launched = launch.wait_status("launched", SECS(1));
    assert!(
        launched["instance"].as_str().unwrap().contains(&name),
        "{launched}"
    );

    let job = w
        .sim
        .queue_job("octo/app", "train", &["cml-gpu"], "echo training");
    wait_for("the job to complete", SECS(60), || {
        (w.sim.job(job.job_id).unwrap().status == "completed").then_some(())
    });
    assert_eq!(
        w.sim.job(job.job_id).unwrap().conclusion.as_deref(),
        Some("success")
    );
    let start = Instant::now();
    while !gcp.sim.deleted_instances().contains(&name) {
        assert!(
            start.elapsed() < SECS(60),
            "the instance did not delete itself; machine log:\n{}",
            service_log(&root)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_nothing_left(&gcp, "after the machine's life", &service_log(&root));
    assert!(w.sim.runners().is_empty(), "{:?}", w.sim.runners());
    let delete = gcp
        .sim
        .requests()
        .into_iter()
        .find(|q| q.method == "compute.instances.delete")
        .unwrap();
    assert_ne!(
        delete.principal.as_deref(),
        Some(harness::gcp::LAUNCHER_SA),
        "the machine deleted itself with its own identity, not the launcher's key"
    );
    assert!(!root.join("poweroff").exists(), "deleted, not powered off");
    let log = service_log(&root);
    assert!(log.contains("\"status\":\"terminated\""), "{log}");
    assert!(!log.contains(PAT), "the machine's log shows no token");
}

#[test]
fn a_gcp_machine_that_may_not_delete_itself_powers_off_and_cleanup_finds_it() {
    let w = World::new();
    let gcp = Gcp::start();
    gcp.sim.deny_permission(
        &gcp.sim.default_service_account(),
        "compute.instances.delete",
    );
    let sha = sha256_of(&harness::cml_exe());
    let mut launch = Running::spawn(launcher(
        &w,
        &gcp,
        "gcp-stuck",
        &[
            "--idle-timeout=2",
            "--destroy-delay=0",
            &format!("--cloud-cml-sha256={sha}"),
        ],
    ));
    let (zone, name, instance) = instance_of(&gcp, "gcp-stuck");
    let script = Gcp::metadata_item(&instance, "startup-script").unwrap();
    let metadata_server = gcp.sim.metadata_server(&zone, &name).unwrap();
    let root = w.tmp.path().join("machine");
    assert!(
        run_startup_script(&root, &script, &gcp, &metadata_server.url())
            .status
            .success()
    );
    assert_eq!(launch.wait_exit(SECS(90)), 0, "{}", launch.output());
    wait_for("the power-off", SECS(60), || {
        root.join("poweroff").exists().then_some(())
    });
    let log = service_log(&root);
    assert!(log.contains("compute.instances.delete"), "{log}");
    let console = std::fs::read_to_string(root.join("console")).unwrap_or_default();
    assert!(
        console.contains("could not delete itself") && console.contains("compute.instances.delete"),
        "the machine says why on its console: {console:?}"
    );
    // The guest's power-off leaves a TERMINATED instance that still bills for its disk.
    assert!(gcp.sim.power_off(&zone, &name));
    wait_for("TERMINATED", SECS(20), || {
        (gcp.sim.instance(&zone, &name)?["status"] == "TERMINATED").then_some(())
    });

    let repo = w.repo_url();
    let region = format!("--cloud-region={ZONE}");
    let mut cmd = w.cml(&[
        "runner",
        "cleanup",
        "--driver=github",
        "--cloud=gcp",
        &region,
        "--repo",
        &repo,
        "--token",
        PAT,
        "--delete",
    ]);
    for (k, v) in gcp.env() {
        cmd.env(k, v);
    }
    let mut r = Running::spawn(cmd);
    assert_eq!(r.wait_exit(SECS(60)), 0, "{}", r.output());
    let out = r.output();
    let line = out
        .lines()
        .find(|l| l.contains(&name) && l.contains("instance"))
        .unwrap_or_else(|| panic!("not listed:\n{out}"));
    assert!(
        line.contains("orphan") && line.contains("stopped"),
        "{line}"
    );
    assert_nothing_left(&gcp, "cleanup", &out);
}

#[test]
fn cleanup_on_gcp_judges_only_its_scope_and_deletes_leaked_machines_and_disks() {
    let w = World::new();
    let gcp = Gcp::start();
    // A leaked launch of this repository: its machine is up but its runner never came online.
    let mut r = Running::spawn(launcher(&w, &gcp, "gcp-leak", &["--cloud-timeout=600"]));
    let (_, leak, _) = instance_of(&gcp, "gcp-leak");
    // SIGKILL: no teardown, as when a CI job is killed hard.
    r.signal(libc::SIGKILL);
    r.wait_exit(SECS(20));
    // Another repository's machine (another simulated forge, so another repository URL).
    let elsewhere = World::new();
    let mut o = Running::spawn(launcher(
        &elsewhere,
        &gcp,
        "gcp-other",
        &["--cloud-timeout=600"],
    ));
    let (_, other_name, _) = instance_of(&gcp, "gcp-other");
    o.signal(libc::SIGKILL);
    o.wait_exit(SECS(20));

    let repo = w.repo_url();
    let region = format!("--cloud-region={ZONE}");
    let cleanup = |extra: &[&str]| {
        let mut args = vec![
            "runner",
            "cleanup",
            "--driver=github",
            "--cloud=gcp",
            &region,
            "--repo",
            &repo,
            "--token",
            PAT,
            "--older-than=0",
        ];
        args.extend_from_slice(extra);
        let mut cmd = w.cml(&args);
        for (k, v) in gcp.env() {
            cmd.env(k, v);
        }
        Running::spawn(cmd)
    };
    // Without --delete, nothing changes.
    let mut dry = cleanup(&[]);
    assert_eq!(dry.wait_exit(SECS(60)), 0, "{}", dry.output());
    let out = dry.output();
    assert!(out.contains(&leak) && out.contains(&other_name), "{out}");
    let other_line = out.lines().find(|l| l.contains(&other_name)).unwrap();
    assert!(other_line.contains("another repository"), "{other_line}");
    assert_eq!(gcp.live().len(), 2);

    let mut del = cleanup(&["--delete"]);
    assert_eq!(del.wait_exit(SECS(60)), 0, "{}", del.output());
    wait_for("the leak's deletion", SECS(30), || {
        gcp.sim.deleted_instances().contains(&leak).then_some(())
    });
    let live: Vec<String> = gcp.live().into_iter().map(|(_, n, _)| n).collect();
    assert_eq!(
        live,
        vec![other_name.clone()],
        "only the other scope's is kept"
    );
    // Idempotent: nothing more to delete.
    let mut again = cleanup(&["--delete"]);
    assert_eq!(again.wait_exit(SECS(60)), 0, "{}", again.output());
    assert!(!again.output().contains("deleted 1"), "{}", again.output());
}

/// Runs a GCP startup script as the guest agent would: as root, with the machine's files
/// below `root`, its metadata server at `metadata`, and the simulator's Compute Engine
/// endpoint (on a real machine, the default one).
fn run_startup_script(
    root: &Path,
    script: &str,
    gcp: &Gcp,
    metadata: &str,
) -> std::process::Output {
    std::fs::create_dir_all(root.join("etc")).unwrap();
    // The serial console, as `/dev/console` is on a machine.
    std::fs::write(root.join("console"), "").unwrap();
    let file = root.join("startup-script");
    std::fs::write(&file, script).unwrap();
    let path = format!(
        "{}:{}:/usr/sbin:/sbin",
        fixtures().display(),
        std::env::var("PATH").unwrap()
    );
    std::process::Command::new("bash")
        .arg(&file)
        .env_clear()
        .env("PATH", path)
        .env("HOME", root)
        .env("CML_MACHINE_ROOT", root)
        .env("CML_TEST_CML_BINARY", harness::cml_exe())
        .env("CML_GCP_METADATA_URL", metadata)
        .env("CML_MACHINE_CONSOLE", root.join("console"))
        .env(
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE",
            gcp.sim.compute_endpoint(),
        )
        .output()
        .unwrap()
}

/// A spot machine preempted while a job runs: the machine sees `instance/preempted` on its
/// metadata server, stops the job, deregisters, re-runs the job's workflow once, and the
/// instance goes (deleted by the machine, or by Compute Engine at the end of the notice).
#[test]
fn a_preempted_gcp_machine_stops_the_job_deregisters_and_reruns_it_once() {
    let w = World::new();
    // Compute Engine's own notice: 30 s from preemption to deletion.
    let gcp = Gcp::start_with(|c| c.preemption_notice = SECS(30));
    let sha = sha256_of(&harness::cml_exe());
    let mut launch = Running::spawn(launcher(
        &w,
        &gcp,
        "gcp-spot",
        &[
            "--idle-timeout=never",
            "--cloud-spot",
            "--destroy-delay=0",
            &format!("--cloud-cml-sha256={sha}"),
        ],
    ));
    let (zone, name, instance) = instance_of(&gcp, "gcp-spot");
    let script = Gcp::metadata_item(&instance, "startup-script").unwrap();
    let metadata_server = gcp.sim.metadata_server(&zone, &name).unwrap();
    let root = w.tmp.path().join("machine");
    assert!(
        run_startup_script(&root, &script, &gcp, &metadata_server.url())
            .status
            .success()
    );
    assert_eq!(launch.wait_exit(SECS(90)), 0, "{}", launch.output());

    let job = w
        .sim
        .queue_job("octo/app", "train", &["cml-gpu"], "sleep 60");
    wait_for("the job to start", SECS(30), || {
        (w.sim.job(job.job_id).unwrap().status == "in_progress").then_some(())
    });
    assert!(gcp.sim.preempt(&zone, &name));
    let start = Instant::now();
    while !gcp.sim.deleted_instances().contains(&name) {
        assert!(
            start.elapsed() < SECS(60),
            "the instance was not removed; machine log:\n{}",
            service_log(&root)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = service_log(&root);
    let interrupted = log
        .lines()
        .find(|l| l.contains("\"status\":\"interrupted\""))
        .unwrap_or_else(|| panic!("no interrupted record:\n{log}"));
    assert!(interrupted.contains("\"job\":\"train\""), "{interrupted}");
    wait_for("the runner's deregistration", SECS(20), || {
        w.sim.runners().is_empty().then_some(())
    });
    let attempts: Vec<u64> = w
        .sim
        .jobs()
        .into_iter()
        .filter(|j| j.run_id == job.run_id)
        .map(|j| j.run_attempt)
        .collect();
    assert_eq!(attempts, [1, 2], "exactly one re-run of the preempted run");
    assert!(log.contains("\"status\":\"rerun\""), "{log}");
}

/// The lifetime is the cloud's too: with the launcher killed and no machine ever booted (so
/// no timer runs), Compute Engine deletes the instance at its `maxRunDuration`.
#[test]
fn compute_engine_deletes_a_machine_at_its_maximum_lifetime_whatever_runs_on_it() {
    let w = World::new();
    // One second of maxRunDuration lasts 50 ms here: the 30 s minimum is 1.5 s.
    let gcp = Gcp::start_with(|c| c.max_run_second = Duration::from_millis(50));
    let mut r = Running::spawn(launcher(
        &w,
        &gcp,
        "gcp-lifetime",
        &["--cloud-max-lifetime=30", "--cloud-timeout=600"],
    ));
    let (_, name, instance) = instance_of(&gcp, "gcp-lifetime");
    assert_eq!(instance["scheduling"]["maxRunDuration"]["seconds"], "30");
    assert_eq!(
        instance["scheduling"]["instanceTerminationAction"],
        "DELETE"
    );
    // SIGKILL: no teardown.
    r.signal(libc::SIGKILL);
    r.wait_exit(SECS(20));
    wait_for("Compute Engine's deletion", SECS(30), || {
        gcp.sim.deleted_instances().contains(&name).then_some(())
    });
    assert_nothing_left(&gcp, "max lifetime", "");
}

/// `--cloud-timeout` bounds the launch even when Compute Engine never answers the insert.
#[test]
fn a_hung_insert_is_bounded_by_the_cloud_timeout_and_leaves_nothing() {
    let w = World::new();
    let gcp = Gcp::start();
    gcp.sim
        .inject("compute.instances.insert", GcpFault::Hang, None);
    let started = Instant::now();
    let mut r = Running::spawn(launcher(&w, &gcp, "gcp-hang", &["--cloud-timeout=3"]));
    assert_eq!(r.wait_exit(SECS(60)), 1, "{}", r.output());
    let took = started.elapsed();
    // The timeout, then teardown's look for what the unanswered insert may have made.
    assert!(took < SECS(20), "the launch took {took:?}");
    assert!(
        r.output().contains("unanswered launch request"),
        "{}",
        r.output()
    );
    assert!(
        r.output()
            .contains("did not finish creating the machine within 3 s"),
        "{}",
        r.output()
    );
    assert_nothing_left(&gcp, "hung insert", &r.output());
    assert!(w.sim.runners().is_empty());
}

/// A launcher on a GCP machine with no key given uses that machine's own service account,
/// from its metadata server, as Google's client libraries do.
#[test]
fn a_launcher_on_a_gcp_machine_without_a_key_uses_the_machines_service_account() {
    let w = World::new();
    let gcp = Gcp::start();
    // The machine the launcher runs on.
    let mut first = Running::spawn(launcher(&w, &gcp, "gcp-ci-host", &["--cloud-timeout=600"]));
    let (zone, name, _) = instance_of(&gcp, "gcp-ci-host");
    let metadata_server = gcp.sim.metadata_server(&zone, &name).unwrap();

    let mut cmd = launcher(&w, &gcp, "gcp-from-ci", &["--cloud-timeout=600"]);
    cmd.env_remove("GOOGLE_APPLICATION_CREDENTIALS_DATA")
        .env("CML_GCP_METADATA_URL", metadata_server.url());
    let mut second = Running::spawn(cmd);
    instance_of(&gcp, "gcp-from-ci");
    let insert = inserts(&gcp)
        .into_iter()
        .find(|q| {
            serde_json::to_string(&q.body)
                .unwrap()
                .contains("gcp-from-ci")
        })
        .unwrap();
    assert_eq!(
        insert.principal.as_deref(),
        Some(gcp.sim.default_service_account().as_str()),
        "the machine's own account made it"
    );
    for r in [&mut first, &mut second] {
        r.signal(libc::SIGTERM);
        assert_eq!(r.wait_exit(SECS(60)), 143, "{}", r.output());
    }
    assert_nothing_left(&gcp, "from a GCP machine", "");
}
