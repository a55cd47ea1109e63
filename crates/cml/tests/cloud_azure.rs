//! `cml runner --cloud=azure` against the simulated Azure Resource Manager and the GitHub
//! simulator: the launcher, its teardown at every phase, bad values and credentials, the
//! machine's role, spot capacity, cleanup, and the whole life of a machine whose customData
//! is really run in a sandbox against its own simulated metadata service.

mod harness;

use cml_sim::azure::CapacityError;
use harness::azure::{Azure, CLIENT_SECRET};
use harness::machine::{fixtures, service_log, sha256_of, wait_for};
use harness::{Running, World, PAT, SECS};
use std::path::Path;
use std::time::{Duration, Instant};

/// `--cloud-region` of every test (CML's `us-west`).
const LOCATION: &str = "westus2";

/// `cml runner --cloud=azure ...` for the simulated GitHub, with the simulator's variables.
fn launcher(w: &World, az: &Azure, name: &str, extra: &[&str]) -> std::process::Command {
    let key = |a: &str| a.split('=').next().unwrap_or_default().to_string();
    let mut args: Vec<&str> = [
        "--cloud=azure",
        "--cloud-region=us-west",
        "--cloud-type=m",
        "--labels=cml-gpu",
        "--cloud-cml-url=https://releases.example.invalid/cml-{version}-{arch}",
    ]
    .into_iter()
    .filter(|d| !extra.iter().any(|e| key(e) == key(d)))
    .collect();
    args.extend_from_slice(extra);
    let mut cmd = w.runner_command(name, &args);
    for (k, v) in az.env() {
        cmd.env(k, v);
    }
    cmd.env("CML_CLOUD_POLL_INTERVAL", "0.2");
    cmd.env("CML_GITHUB_RUNNER_RELEASES_URL", w.releases_url());
    cmd
}

/// The resource group and VM name of runner `name`, once its VM exists.
fn vm_of(az: &Azure, name: &str) -> (String, String) {
    let rg = format!("cml-{name}");
    wait_for(&format!("the VM of {name}"), SECS(60), || {
        az.sim.vm(&rg, &rg).map(|_| ())
    });
    (rg.clone(), rg)
}

fn assert_nothing_left(az: &Azure, what: &str, output: &str) {
    let start = Instant::now();
    while !az.sim.resource_groups().is_empty() {
        assert!(
            start.elapsed() < SECS(30),
            "{what}: left {:?}\n{output}",
            az.sim.resource_groups()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_azure_runner_that_never_comes_online_is_deleted_after_the_timeout() {
    let w = World::new();
    let az = Azure::start();
    let mut r = Running::spawn(launcher(&w, &az, "az-timeout", &["--cloud-timeout=8"]));
    let (rg, vm) = vm_of(&az, "az-timeout");
    az.sim
        .append_console(&rg, &vm, "cloud-init: customData failed\n");
    assert_eq!(r.wait_exit(SECS(90)), 1, "{}", r.output());
    let out = r.output();
    assert!(out.contains("did not come online"), "{out}");
    assert!(
        out.contains("customData failed"),
        "boot diagnostics shown: {out}"
    );
    assert_nothing_left(&az, "timeout", &out);
    assert!(!out.contains(CLIENT_SECRET) && !out.contains(PAT), "{out}");
    assert!(w.sim.runners().is_empty());
}

#[test]
fn an_azure_launcher_stopped_at_each_phase_leaves_nothing_behind() {
    for phase in ["creating", "booting", "registering"] {
        let w = World::new();
        let az = Azure::start();
        let mut r = Running::spawn(launcher(&w, &az, "az-sig", &["--cloud-spot"]));
        wait_for(&format!("phase {phase}"), SECS(60), || {
            r.poll_records();
            r.seen.iter().any(|v| v["phase"] == phase).then_some(())
        });
        r.signal(libc::SIGTERM);
        assert_eq!(r.wait_exit(SECS(60)), 143, "{phase}: {}", r.output());
        assert_nothing_left(&az, phase, &r.output());
    }
}

#[test]
fn bad_azure_values_and_credentials_create_nothing_and_mint_no_token() {
    let w = World::new();
    let az = Azure::start();
    for (extra, needle) in [
        (vec!["--cloud-region=not a place"], "--cloud-region"),
        (vec!["--cloud-type=huge!"], "--cloud-type"),
        (
            vec!["--cloud-type=Standard_F8s_v2", "--cloud-gpu=t4"],
            "--cloud-gpu",
        ),
        (vec!["--cloud-hdd-size=0"], "--cloud-hdd-size"),
    ] {
        let mut r = Running::spawn(launcher(&w, &az, "az-bad", &extra));
        let code = r.wait_exit(SECS(60));
        assert!(code == 1 || code == 2, "{extra:?}: {code} {}", r.output());
        assert!(r.output().contains(needle), "{extra:?}: {}", r.output());
    }
    for (var, value, needle) in [
        ("AZURE_CLIENT_SECRET", "", "AZURE_CLIENT_SECRET"),
        (
            "AZURE_CLIENT_SECRET",
            "wrong-secret-value",
            "AZURE_CLIENT_SECRET",
        ),
        ("AZURE_TENANT_ID", "no-such-tenant", "AZURE_TENANT_ID"),
    ] {
        let mut cmd = launcher(&w, &az, "az-bad-key", &[]);
        cmd.env(var, value);
        let mut r = Running::spawn(cmd);
        assert_eq!(r.wait_exit(SECS(60)), 1, "{var}: {}", r.output());
        assert!(r.output().contains(needle), "{var}: {}", r.output());
        assert!(!r.output().contains(CLIENT_SECRET), "{}", r.output());
    }
    assert!(az.sim.resource_groups().is_empty());
    assert_eq!(w.sim.registration_tokens_issued(), 0);
}

#[test]
fn a_launcher_that_may_not_assign_roles_stops_before_the_machine_runs_and_names_the_opt_in() {
    let w = World::new();
    let az = Azure::start();
    az.sim.deny_action(
        &az.launcher,
        "Microsoft.Authorization/roleAssignments/write",
    );
    let mut r = Running::spawn(launcher(&w, &az, "az-norole", &[]));
    assert_eq!(r.wait_exit(SECS(90)), 1, "{}", r.output());
    let out = r.output();
    assert!(
        out.contains("Microsoft.Authorization/roleAssignments/write")
            && out.contains("--cloud-azure-credentials-on-machine"),
        "{out}"
    );
    assert_nothing_left(&az, "refused role", &out);
}

#[test]
fn spot_without_capacity_tries_each_zone_then_on_demand_with_fallback() {
    let w = World::new();
    let az = Azure::start();
    az.sim
        .refuse_capacity(LOCATION, None, None, true, CapacityError::SkuNotAvailable);
    let mut r = Running::spawn(launcher(&w, &az, "az-nospot", &["--cloud-spot"]));
    assert_eq!(r.wait_exit(SECS(90)), 1, "{}", r.output());
    assert!(
        r.output().contains("--cloud-spot-fallback"),
        "{}",
        r.output()
    );
    assert_nothing_left(&az, "no spot", &r.output());

    let mut r = Running::spawn(launcher(
        &w,
        &az,
        "az-fallback",
        &["--cloud-spot", "--cloud-spot-fallback"],
    ));
    let (rg, vm) = wait_for("the on-demand VM", SECS(60), || {
        let rg = "cml-az-fallback".to_string();
        let v = az.sim.vm(&rg, &rg)?;
        (v["properties"]["priority"].as_str().unwrap_or("Regular") != "Spot")
            .then(|| (rg.clone(), rg))
    });
    assert!(az.sim.vm(&rg, &vm).is_some());
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait_exit(SECS(60)), 143, "{}", r.output());
    assert!(
        r.output().contains("on-demand") || r.output().contains("on demand"),
        "{}",
        r.output()
    );
    assert_nothing_left(&az, "fallback", &r.output());
}

/// The launcher creates the resource group and VM in the simulator; the test plays the
/// machine: it runs the VM's customData in a sandbox with the VM's own metadata service. The
/// runner registers, a job runs, the runner idles out and deregisters, and the machine deletes
/// its resource group with its managed identity (the launcher's secret is not on it).
#[test]
fn whole_lifecycle_of_an_azure_runner() {
    machine_life(false);
}

/// `--cloud-azure-credentials-on-machine`: no role is assigned; the machine deletes its
/// resource group with the launcher's service principal, from its root-only credentials file.
#[test]
fn with_credentials_on_the_machine_it_deletes_its_group_with_them() {
    machine_life(true);
}

fn machine_life(credentials_on_machine: bool) {
    let w = World::new();
    let az = Azure::start();
    let sha = sha256_of(&harness::cml_exe());
    let sha = format!("--cloud-cml-sha256={sha}");
    let mut extra = vec![
        "--idle-timeout=3",
        "--destroy-delay=0",
        "--cloud-metadata=Team=ML",
        sha.as_str(),
    ];
    if credentials_on_machine {
        extra.push("--cloud-azure-credentials-on-machine");
    }
    let mut launch = Running::spawn(launcher(&w, &az, "az-life", &extra));
    let (rg, vm) = vm_of(&az, "az-life");
    let custom_data = wait_for("the VM's customData", SECS(30), || {
        az.sim.custom_data(&rg, &vm)
    });
    let script = String::from_utf8(custom_data).unwrap();
    assert!(script.contains("systemctl enable --now cml.service"));
    assert_eq!(
        script.contains(CLIENT_SECRET),
        credentials_on_machine,
        "the launcher's secret is on the machine only when asked"
    );
    let imds = az.sim.imds(&rg, &vm).unwrap();
    let root = w.tmp.path().join("machine");
    let booted = run_custom_data(&root, &script, &az, &imds.url());
    assert!(
        booted.status.success(),
        "customData failed: {}{}",
        String::from_utf8_lossy(&booted.stdout),
        String::from_utf8_lossy(&booted.stderr)
    );
    let env = std::fs::read_to_string(root.join("etc/cml/env")).unwrap();
    assert!(env.contains("azure"), "{env}");
    assert_eq!(
        launch.wait_exit(SECS(90)),
        0,
        "{}\nmachine log:\n{}",
        launch.output(),
        service_log(&root)
    );
    let roles = az.sim.role_assignments();
    assert_eq!(
        roles.is_empty(),
        credentials_on_machine,
        "a role for the machine's identity unless it has the launcher's credentials: {roles:?}"
    );

    let job = w
        .sim
        .queue_job("octo/app", "train", &["cml-gpu"], "echo training");
    wait_for("the job to complete", SECS(60), || {
        (w.sim.job(job.job_id).unwrap().status == "completed").then_some(())
    });
    let start = Instant::now();
    while !az.sim.resource_groups().is_empty() {
        assert!(
            start.elapsed() < SECS(60),
            "the machine did not delete its resource group; machine log:\n{}",
            service_log(&root)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(w.sim.runners().is_empty(), "{:?}", w.sim.runners());
    let delete = az
        .sim
        .requests()
        .into_iter()
        .find(|q| {
            q.http_method == "DELETE"
                && q.path
                    .to_ascii_lowercase()
                    .contains("/resourcegroups/cml-az-life")
        })
        .expect("a resource-group delete");
    if credentials_on_machine {
        assert_eq!(delete.principal.as_deref(), Some(az.launcher.as_str()));
    } else {
        assert_ne!(
            delete.principal.as_deref(),
            Some(az.launcher.as_str()),
            "the machine's own identity deleted it"
        );
    }
    assert!(!root.join("poweroff").exists(), "deleted, not powered off");
    let log = service_log(&root);
    assert!(!log.contains(PAT) && !log.contains(CLIENT_SECRET), "{log}");
}

#[test]
fn cleanup_on_azure_deletes_a_leaked_group_and_keeps_another_repositorys() {
    let w = World::new();
    let az = Azure::start();
    let mut r = Running::spawn(launcher(&w, &az, "az-leak", &["--cloud-timeout=600"]));
    vm_of(&az, "az-leak");
    r.signal(libc::SIGKILL);
    r.wait_exit(SECS(20));
    let elsewhere = World::new();
    let mut o = Running::spawn(launcher(
        &elsewhere,
        &az,
        "az-other",
        &["--cloud-timeout=600"],
    ));
    vm_of(&az, "az-other");
    o.signal(libc::SIGKILL);
    o.wait_exit(SECS(20));

    let repo = w.repo_url();
    let cleanup = |extra: &[&str]| {
        let mut args = vec![
            "runner",
            "cleanup",
            "--driver=github",
            "--cloud=azure",
            "--cloud-region=us-west",
            "--repo",
            &repo,
            "--token",
            PAT,
            "--older-than=0",
        ];
        args.extend_from_slice(extra);
        let mut cmd = w.cml(&args);
        for (k, v) in az.env() {
            cmd.env(k, v);
        }
        Running::spawn(cmd)
    };
    let mut dry = cleanup(&[]);
    assert_eq!(dry.wait_exit(SECS(60)), 0, "{}", dry.output());
    let out = dry.output();
    let other = out
        .lines()
        .find(|l| l.contains("cml-az-other"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(other.contains("another repository"), "{other}");
    assert!(out.contains("cml-az-leak"), "{out}");
    assert_eq!(az.sim.resource_groups().len(), 2);

    let mut del = cleanup(&["--delete"]);
    assert_eq!(del.wait_exit(SECS(90)), 0, "{}", del.output());
    wait_for("the leak's deletion", SECS(30), || {
        (az.sim.resource_groups() == vec!["cml-az-other".to_string()]).then_some(())
    });
}

/// Runs customData as cloud-init would (as root), with the machine's files below `root`, its
/// metadata service at `imds` and the simulator's Resource Manager.
fn run_custom_data(root: &Path, script: &str, az: &Azure, imds: &str) -> std::process::Output {
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("console"), "").unwrap();
    let file = root.join("custom-data");
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
        .env("CML_AZURE_METADATA_URL", imds)
        .env("CML_AZURE_RESOURCE_MANAGER_URL", az.sim.url())
        .env("AZURE_AUTHORITY_HOST", az.sim.url())
        .env("CML_MACHINE_CONSOLE", root.join("console"))
        .output()
        .unwrap()
}

/// A spot VM evicted while a job runs: the machine sees the `Preempt` scheduled event, stops
/// the job, deregisters, re-runs the job's workflow once, and its group goes.
#[test]
fn an_evicted_azure_machine_stops_the_job_deregisters_and_reruns_it_once() {
    let w = World::new();
    // Azure's own notice: at least 30 s from the Preempt event to the eviction.
    let az = Azure::start_with(|c| c.eviction_notice = SECS(30));
    let sha = format!("--cloud-cml-sha256={}", sha256_of(&harness::cml_exe()));
    let mut launch = Running::spawn(launcher(
        &w,
        &az,
        "az-spot",
        &[
            "--idle-timeout=never",
            "--cloud-spot",
            "--destroy-delay=0",
            &sha,
        ],
    ));
    let (rg, vm) = vm_of(&az, "az-spot");
    let script = String::from_utf8(wait_for("customData", SECS(30), || {
        az.sim.custom_data(&rg, &vm)
    }))
    .unwrap();
    let imds = az.sim.imds(&rg, &vm).unwrap();
    let root = w.tmp.path().join("machine");
    assert!(run_custom_data(&root, &script, &az, &imds.url())
        .status
        .success());
    assert_eq!(launch.wait_exit(SECS(90)), 0, "{}", launch.output());

    let job = w
        .sim
        .queue_job("octo/app", "train", &["cml-gpu"], "sleep 60");
    wait_for("the job to start", SECS(30), || {
        (w.sim.job(job.job_id).unwrap().status == "in_progress").then_some(())
    });
    assert!(az.sim.evict(&rg, &vm));
    let start = Instant::now();
    while !az.sim.resource_groups().is_empty() {
        assert!(
            start.elapsed() < SECS(60),
            "the group was not removed; machine log:\n{}",
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
    assert_eq!(attempts, [1, 2], "exactly one re-run of the evicted run");
}
