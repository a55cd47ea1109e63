//! `cml runner --cloud=aws` against moto (EC2) and the GitHub simulator: the launcher, its
//! teardown at every phase, and the whole life of a machine whose user-data is really run
//! in a sandbox (systemd and curl stood in for by `fixtures/machine/`).

mod harness;

use harness::machine::{fixtures, service_log, sha256_of, wait_for};
use harness::moto::{Moto, REGION};
use harness::{Kind, Running, World, PAT, SECS};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `cml runner --cloud=aws ...` for the simulated GitHub, with moto's variables.
fn launcher(w: &World, moto: &Moto, name: &str, extra: &[&str]) -> std::process::Command {
    let mut args = vec![
        "--cloud=aws",
        "--cloud-region=us-east",
        "--cloud-type=m",
        "--labels=cml-gpu",
        "--cloud-cml-url=https://releases.example.invalid/cml-{version}-{arch}",
    ];
    args.extend_from_slice(extra);
    let mut cmd = w.runner_command(name, &args);
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    cmd.env("CML_CLOUD_POLL_INTERVAL", "0.2");
    cmd.env("CML_GITHUB_RUNNER_RELEASES_URL", w.releases_url());
    cmd
}

#[test]
fn a_runner_that_never_comes_online_is_destroyed_after_the_timeout() {
    let w = World::new();
    let moto = Moto::start();
    let ec2 = moto.ec2();
    // Long enough for moto to create the machine on a busy machine; the runner never comes.
    let mut r = Running::spawn(launcher(&w, &moto, "aws-timeout", &["--cloud-timeout=8"]));
    assert_eq!(r.wait_exit(SECS(60)), 1, "{}", r.output());
    let out = r.output();
    assert!(out.contains("did not come online"), "{out}");
    assert!(out.contains("destroying what this launch created"), "{out}");
    let instances = ec2.instances();
    assert_eq!(
        instances.len(),
        1,
        "one instance was launched: {instances:?}"
    );
    assert!(
        ec2.live_instances().is_empty(),
        "{:?}",
        ec2.live_instances()
    );
    assert!(ec2.key_pairs().is_empty(), "{:?}", ec2.key_pairs());
    assert!(!out.contains(PAT), "the token was printed");
    assert!(w.sim.runners().is_empty());
}

#[test]
fn a_launcher_stopped_at_each_phase_leaves_nothing_behind() {
    for phase in ["creating", "booting", "registering"] {
        let w = World::new();
        let moto = Moto::start();
        let ec2 = moto.ec2();
        let mut r = Running::spawn(launcher(&w, &moto, "aws-sig", &["--cloud-spot"]));
        wait_for(&format!("phase {phase}"), SECS(60), || {
            r.poll_records();
            r.seen.iter().any(|v| v["phase"] == phase).then_some(())
        });
        r.signal(libc::SIGTERM);
        assert_eq!(r.wait_exit(SECS(60)), 143, "{phase}: {}", r.output());
        assert!(
            ec2.live_instances().is_empty(),
            "{phase}: {:?}",
            ec2.live_instances()
        );
        assert!(ec2.key_pairs().is_empty(), "{phase}: {:?}", ec2.key_pairs());
        assert!(
            ec2.open_spot_requests().is_empty(),
            "{phase}: {:?}",
            ec2.open_spot_requests()
        );
    }
}

#[test]
fn bad_cloud_values_create_nothing_and_mint_no_token() {
    let w = World::new();
    let moto = Moto::start();
    let ec2 = moto.ec2();
    for (extra, needle) in [
        (vec!["--cloud-spot-price=cheap"], "--cloud-spot-price"),
        (vec!["--cloud-hdd-size=-1"], "--cloud-hdd-size"),
        (vec!["--cloud-ssh-private=not a key"], "--cloud-ssh-private"),
        (vec!["--cloud-metadata=novalue"], "--cloud-metadata"),
        (
            vec!["--cloud-image=no-such-image-name"],
            "no-such-image-name",
        ),
    ] {
        let mut r = Running::spawn(launcher(&w, &moto, "aws-bad", &extra));
        let code = r.wait_exit(SECS(60));
        assert!(code == 1 || code == 2, "{extra:?}: {code} {}", r.output());
        assert!(r.output().contains(needle), "{extra:?}: {}", r.output());
    }
    assert!(ec2.instances().is_empty());
    assert!(ec2.key_pairs().is_empty());
    assert_eq!(w.sim.registration_tokens_issued(), 0);
}

/// The launcher creates the instance in moto; the test plays the machine: it takes the
/// instance's user-data from moto and runs it in a sandbox, with moto standing in for the
/// machine's AWS identity and a simulated IMDSv2. The machine's runner registers, the
/// launcher exits 0, a job runs, the runner idles out, deregisters and terminates its own
/// instance.
#[test]
fn whole_lifecycle_of_an_aws_runner() {
    let w = World::new();
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let cml = harness::cml_exe();
    let sha = sha256_of(&cml);
    let mut launch = Running::spawn(launcher(
        &w,
        &moto,
        "aws-life",
        &[
            "--idle-timeout=3",
            "--destroy-delay=0",
            &format!("--cloud-cml-sha256={sha}"),
        ],
    ));

    // The machine boots: run its user-data in a sandbox.
    let instance = wait_for("the instance", SECS(60), || {
        ec2.live_instances()
            .into_iter()
            .find(|i| i.tags.iter().any(|(k, v)| k == "cml:id" && v == "aws-life"))
    });
    assert_eq!(instance.instance_type, "m5.2xlarge");
    let user_data = ec2.user_data(&instance.id);
    assert!(user_data.contains("systemctl enable --now cml.service"));
    let imds = cml_sim::ImdsServer::start(&instance.id, REGION).unwrap();
    let root = boot(&w, &moto, &user_data, &imds);

    // Secrets stay in a root-only file; the service's command line and environment hold none.
    let credentials = root.join("etc/cml/credentials");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&credentials)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&credentials).unwrap().contains(PAT));
    assert!(!std::fs::read_to_string(root.join("etc/cml/env"))
        .unwrap()
        .contains(PAT));
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/cml.service")).unwrap();
    assert!(!unit.contains(PAT));
    assert!(
        unit.contains("\"--credentials-file\" \"/etc/cml/credentials\""),
        "{unit}"
    );
    assert!(
        unit.contains("\"--idle-timeout\" \"3\""),
        "the idle timeout reaches the machine: {unit}"
    );

    // The launcher sees the runner online and reports the machine.
    assert_eq!(
        launch.wait_exit(SECS(90)),
        0,
        "{}\nmachine log:\n{}",
        launch.output(),
        service_log(&root)
    );
    let launched = launch.wait_status("launched", SECS(1));
    assert_eq!(launched["instance"], instance.id.as_str());
    assert_eq!(launched["machine_type"], "m5.2xlarge");
    assert!(
        ec2.key_pairs().is_empty(),
        "the per-runner key pair is gone once the machine runs"
    );

    // A job runs on the machine; then the runner idles out and the machine removes itself.
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
    while !ec2.live_instances().is_empty() {
        assert!(
            start.elapsed() < SECS(60),
            "the instance did not terminate itself; machine log:\n{}",
            service_log(&root)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(w.sim.runners().is_empty(), "{:?}", w.sim.runners());
    assert!(
        imds.reads() >= 2,
        "the instance id and region came from IMDSv2"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("cml-deadline.secs"))
            .unwrap()
            .trim(),
        "435600",
        "the default maximum lifetime (121 h) is set at boot"
    );
    let log = service_log(&root);
    assert!(log.contains("\"status\":\"terminated\""), "{log}");
    assert!(!log.contains(PAT), "the machine's log shows no token");
}

/// Runs `user_data` in a sandbox machine root (see the whole-lifecycle test).
fn boot(w: &World, moto: &Moto, user_data: &str, imds: &cml_sim::ImdsServer) -> PathBuf {
    let root = w.tmp.path().join("machine");
    let booted = run_user_data(w, moto, &root, user_data, &imds.url(), None);
    assert!(
        booted.status.success(),
        "user-data failed: {}{}",
        String::from_utf8_lossy(&booted.stdout),
        String::from_utf8_lossy(&booted.stderr)
    );
    root
}

/// Runs `user_data` as cloud-init would, with the machine's files below `root`: saved as
/// cloud-init saves it (root-only copies in `var/lib/cloud/instance`, which links to the
/// instance's directory) and executed from there, as root, with `metadata` as the metadata
/// service, inside `net` when given. Returns how the script ended.
fn run_user_data(
    w: &World,
    moto: &Moto,
    root: &Path,
    user_data: &str,
    metadata: &str,
    net: Option<&harness::netns::MachineNet>,
) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    for dir in [
        "",
        "etc",
        "var",
        "var/lib",
        "var/lib/cloud",
        "var/lib/cloud/instances",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        mode(&root.join(dir), 0o755).unwrap();
    }
    let instance = root.join("var/lib/cloud/instances/i-sandbox");
    std::fs::create_dir_all(instance.join("scripts")).unwrap();
    std::os::unix::fs::symlink("instances/i-sandbox", root.join("var/lib/cloud/instance")).unwrap();
    for (file, m) in [
        ("user-data.txt", 0o600),
        ("user-data.txt.i", 0o600),
        ("scripts/part-001", 0o700),
    ] {
        std::fs::write(instance.join(file), user_data).unwrap();
        mode(&instance.join(file), m).unwrap();
    }
    let path = format!(
        "{}:{}:/usr/sbin:/sbin",
        fixtures().display(),
        std::env::var("PATH").unwrap()
    );
    let mut boot = std::process::Command::new("bash");
    boot.arg(root.join("var/lib/cloud/instance/scripts/part-001"))
        .env_clear()
        .env("PATH", path)
        .env("HOME", root)
        .env("CML_MACHINE_ROOT", root)
        .env("CML_TEST_CML_BINARY", harness::cml_exe())
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", metadata);
    for (k, v) in moto.env() {
        if k != "AWS_EC2_METADATA_DISABLED" {
            boot.env(k, v);
        }
    }
    if let Some(net) = net {
        net.enter(&mut boot);
    }
    let _ = w;
    boot.output().unwrap()
}

#[test]
fn a_machine_whose_setup_fails_powers_itself_off() {
    let w = World::new();
    let moto = Moto::start();
    let ec2 = moto.ec2();
    // `echo preparing the network; exit 3`
    let failing_script = "--cloud-startup-script=ZWNobyBwcmVwYXJpbmcgdGhlIG5ldHdvcms7IGV4aXQgMwo=";
    let wrong_sum = format!("--cloud-cml-sha256={}", "0".repeat(64));
    // Without --cloud-cml-sha256 the release's published SHA256SUMS is the reference: the
    // stand-in `curl` publishes a wrong one when the machine has `.sums-wrong`.
    for (name, extra, why) in [
        ("aws-bad-script", failing_script, "(exit status 3)"),
        ("aws-bad-sum", wrong_sum.as_str(), "cml checksum mismatch"),
        (
            "aws-bad-published-sum",
            "--cloud-hdd-size=35",
            "cml checksum mismatch",
        ),
    ] {
        let mut launch = Running::spawn(launcher(&w, &moto, name, &[extra, "--cloud-timeout=300"]));
        let instance = wait_for("the instance", SECS(60), || {
            ec2.live_instances()
                .into_iter()
                .find(|i| i.tags.iter().any(|(k, v)| k == "cml:id" && v == name))
        });
        let imds = cml_sim::ImdsServer::start(&instance.id, REGION).unwrap();
        let root = w.tmp.path().join(name);
        if name == "aws-bad-published-sum" {
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(root.join(".sums-wrong"), "").unwrap();
        }
        let booted = run_user_data(
            &w,
            &moto,
            &root,
            &ec2.user_data(&instance.id),
            &imds.url(),
            None,
        );
        let log = String::from_utf8_lossy(&booted.stdout);
        assert!(!booted.status.success(), "{name}: {log}");
        assert!(
            root.join("poweroff").exists(),
            "{name}: the machine powered itself off: {log}"
        );
        assert!(log.contains("setup failed at line"), "{name}: {log}");
        assert!(log.contains(why), "{name}: {log}");
        if name == "aws-bad-published-sum" {
            let asked = std::fs::read_to_string(root.join("curl.log")).unwrap();
            assert!(
                asked
                    .lines()
                    .nth(1)
                    .is_some_and(|l| l == "https://releases.example.invalid/SHA256SUMS"),
                "the release's checksum list was read: {asked}"
            );
        }
        assert!(
            !root.join("cml.service.pid").exists() && !root.join("usr/local/bin/cml").exists(),
            "{name}: cml was never installed nor started"
        );
        launch.signal(libc::SIGTERM);
        assert_eq!(launch.wait_exit(SECS(60)), 143, "{}", launch.output());
    }
}

/// A runner with `--cloud-job-user=nobody`, on a sandbox machine booted in its own network
/// namespace, where the simulated metadata service has its real address (169.254.169.254:80)
/// and serves the instance's user-data, and where the startup script's firewall rule really
/// applies. A job step (run by the agent as `nobody`) looks for the forge token everywhere: cml's
/// files, cloud-init's copies of user-data, every file of the machine, every process's
/// environment and command line, its own environment, and user-data through the metadata
/// service. It finds it nowhere; the same probe run as root finds it (so it does look).
#[test]
fn a_job_on_a_machine_with_a_job_user_can_read_no_credential() {
    const OWN_PAT: &str = "ghp_jobusertestonlytoken0123456789";
    const NEEDLE: &str = "ghp_jobuser";
    use std::os::unix::fs::PermissionsExt;
    // What the job user must be able to run lives in a directory anyone can read: the
    // simulated agent (linked, or copied, out of the build directory below /root) and the probe.
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = shared.path().join("cml-sim");
    if std::fs::hard_link(harness::sim_exe(), &agent).is_err() {
        std::fs::copy(harness::sim_exe(), &agent).unwrap();
    }
    let probe = shared.path().join("read-credentials.sh");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probe/read-credentials.sh"),
        &probe,
    )
    .unwrap();
    let nft = ["/usr/sbin/nft", "/sbin/nft"]
        .iter()
        .any(|p| Path::new(p).exists());
    assert!(
        nft,
        "nft is missing: install the Debian package nftables (.ci/run does)"
    );

    let w = World::with(|c| {
        c.pats.push(cml_sim::Pat {
            token: OWN_PAT.into(),
            admin: true,
        });
        c.agent_exe = agent.clone();
    });
    // The machine's files must be reachable by the job user, as they are on a real machine.
    std::fs::set_permissions(w.tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let repo = w.repo_url();
    let mut cmd = w.cml(&[
        "runner",
        "--driver=github",
        "--repo",
        &repo,
        "--name=aws-job-user",
        "--labels=cml-gpu",
        "--cloud=aws",
        "--cloud-region=us-east",
        "--cloud-type=m",
        "--cloud-cml-url=https://releases.example.invalid/cml-{version}-{arch}",
        "--idle-timeout=3",
        "--destroy-delay=0",
        "--cloud-job-user=nobody",
    ]);
    cmd.env("REPO_TOKEN", OWN_PAT)
        .env("CML_CLOUD_POLL_INTERVAL", "0.2")
        .env("CML_GITHUB_RUNNER_RELEASES_URL", w.releases_url());
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    let mut launch = Running::spawn(cmd);
    let instance = wait_for("the instance", SECS(60), || {
        ec2.live_instances().into_iter().find(|i| {
            i.tags
                .iter()
                .any(|(k, v)| k == "cml:id" && v == "aws-job-user")
        })
    });
    let user_data = ec2.user_data(&instance.id);
    assert!(
        user_data.contains(OWN_PAT),
        "the credential is in user-data"
    );

    let port = |url: &str| -> u16 {
        url.rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .parse()
            .unwrap()
    };
    let (net, metadata) = harness::netns::MachineNet::new(&[port(&w.sim.url()), port(&moto.url)]);
    let imds = cml_sim::ImdsServer::start_on(metadata, &instance.id, REGION).unwrap();
    imds.set_user_data(&user_data);
    assert_eq!(imds.url(), "http://169.254.169.254");
    let root = w.tmp.path().join("machine");
    let booted = run_user_data(&w, &moto, &root, &user_data, &imds.url(), Some(&net));
    assert!(
        booted.status.success(),
        "user-data failed: {}{}",
        String::from_utf8_lossy(&booted.stdout),
        String::from_utf8_lossy(&booted.stderr)
    );
    for copy in ["user-data.txt", "user-data.txt.i", "scripts/part-001"] {
        assert!(
            !root.join("var/lib/cloud/instance").join(copy).exists(),
            "cloud-init's {copy} was removed"
        );
    }
    assert_eq!(
        launch.wait_exit(SECS(90)),
        0,
        "{}\nmachine log:\n{}",
        launch.output(),
        service_log(&root)
    );

    // Root, on the machine, finds the credential: the probe does look in the right places.
    let mut as_root = std::process::Command::new("bash");
    as_root.arg(&probe).arg(&root).arg(NEEDLE);
    net.enter(&mut as_root);
    let root_saw = String::from_utf8_lossy(&as_root.output().unwrap().stdout).into_owned();
    assert!(root_saw.contains("metadata: answered"), "{root_saw}");
    assert!(
        root_saw.matches(OWN_PAT).count() >= 2,
        "root reads the credentials file and user-data: {root_saw}"
    );

    // The job step, run by the agent as the job user, finds it nowhere.
    let job = w.sim.queue_job(
        "octo/app",
        "probe",
        &["cml-gpu"],
        &format!("bash {} {} {NEEDLE}", probe.display(), root.display()),
    );
    wait_for("the job to complete", SECS(60), || {
        (w.sim.job(job.job_id).unwrap().status == "completed").then_some(())
    });
    let job = w.sim.job(job.job_id).unwrap();
    let out = job.output;
    let nobody = std::process::Command::new("id")
        .args(["-u", "nobody"])
        .output()
        .unwrap();
    let nobody = String::from_utf8_lossy(&nobody.stdout).trim().to_string();
    assert!(
        out.contains(&format!("uid={nobody}\n")),
        "the job ran as nobody: {out}"
    );
    assert!(
        out.contains(&format!(
            "file {}/etc/cml/credentials: unreadable",
            root.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("/var/lib/cloud/instance/user-data.txt: unreadable"),
        "{out}"
    );
    assert!(out.contains("metadata: refused"), "{out}");
    assert!(!out.contains("LEAK"), "{out}");
    assert!(
        !out.contains(OWN_PAT),
        "the job step read the credential:\n{out}"
    );

    // The machine still ends as usual.
    let start = Instant::now();
    while !ec2.live_instances().is_empty() {
        assert!(
            start.elapsed() < SECS(60),
            "the instance did not terminate itself; machine log:\n{}",
            service_log(&root)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(w.sim.runners().is_empty(), "{:?}", w.sim.runners());
    assert!(!service_log(&root).contains(OWN_PAT));
}

#[test]
fn a_killed_supervisor_still_powers_the_machine_off_at_its_maximum_lifetime() {
    let w = World::new();
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let mut launch = Running::spawn(launcher(
        &w,
        &moto,
        "aws-deadline",
        &["--idle-timeout=never", "--cloud-max-lifetime=20"],
    ));
    let instance = wait_for("the instance", SECS(60), || {
        ec2.live_instances().into_iter().find(|i| {
            i.tags
                .iter()
                .any(|(k, v)| k == "cml:id" && v == "aws-deadline")
        })
    });
    let user_data = ec2.user_data(&instance.id);
    // 20 s: the launch and the boot, slow on a loaded machine, must end well before it.
    assert!(user_data.contains("OnBootSec=20s"), "{user_data}");
    let imds = cml_sim::ImdsServer::start(&instance.id, REGION).unwrap();
    let booted_at = Instant::now();
    let root = boot(&w, &moto, &user_data, &imds);
    assert_eq!(launch.wait_exit(SECS(90)), 0, "{}", launch.output());

    // The supervisor dies without a chance to clean up.
    let pid: i32 = std::fs::read_to_string(root.join("cml.service.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the sandbox's cml process; no memory is involved.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    assert!(
        !root.join("poweroff").exists(),
        "nothing else powered the sandbox off"
    );
    wait_for("the machine's own power-off", SECS(40), || {
        root.join("poweroff").exists().then_some(())
    });
    assert!(
        booted_at.elapsed() >= Duration::from_secs(19),
        "powered off at its deadline, not before"
    );
}

#[test]
fn a_spot_interruption_notice_stops_the_job_deregisters_reruns_once_and_removes_the_machine() {
    spot_interruption(false);
}

#[test]
fn with_no_retry_an_interrupted_job_is_not_rerun() {
    spot_interruption(true);
}

fn spot_interruption(no_retry: bool) {
    let w = World::new();
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let mut flags = vec!["--idle-timeout=never", "--cloud-spot", "--destroy-delay=0"];
    if no_retry {
        flags.push("--no-retry");
    }
    let mut launch = Running::spawn(launcher(&w, &moto, "aws-spot", &flags));
    let instance = wait_for("the instance", SECS(60), || {
        ec2.live_instances()
            .into_iter()
            .find(|i| i.tags.iter().any(|(k, v)| k == "cml:id" && v == "aws-spot"))
    });
    let imds = cml_sim::ImdsServer::start(&instance.id, REGION).unwrap();
    let root = boot(&w, &moto, &ec2.user_data(&instance.id), &imds);
    assert_eq!(launch.wait_exit(SECS(90)), 0, "{}", launch.output());

    let job = w
        .sim
        .queue_job("octo/app", "train", &["cml-gpu"], "sleep 60");
    wait_for("the job to start", SECS(30), || {
        (w.sim.job(job.job_id).unwrap().status == "in_progress").then_some(())
    });
    // A rebalance recommendation is only logged; the interruption notice stops everything.
    imds.recommend_rebalance();
    std::thread::sleep(SECS(3));
    assert_eq!(w.sim.job(job.job_id).unwrap().status, "in_progress");
    imds.interrupt_spot();
    let start = Instant::now();
    while !ec2.live_instances().is_empty() {
        assert!(
            start.elapsed() < SECS(60),
            "the instance was not removed; machine log:\n{}",
            service_log(&root)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = service_log(&root);
    assert!(log.contains("rebalance recommendation"), "{log}");
    let interrupted = log
        .lines()
        .find(|l| l.contains("\"status\":\"interrupted\""))
        .unwrap_or_else(|| panic!("no interrupted record:\n{log}"));
    assert!(interrupted.contains("\"job\":\"train\""), "{interrupted}");
    assert!(log.contains("\"reason\":\"interrupted\""), "{log}");
    assert!(w.sim.runners().is_empty(), "{:?}", w.sim.runners());
    let interrupted = w.sim.job(job.job_id).unwrap();
    assert_eq!(interrupted.status, "completed");
    assert_eq!(interrupted.conclusion.as_deref(), Some("cancelled"));
    let attempts: Vec<u64> = w
        .sim
        .jobs()
        .into_iter()
        .filter(|j| j.run_id == job.run_id)
        .map(|j| j.run_attempt)
        .collect();
    if no_retry {
        assert_eq!(attempts, [1], "--no-retry: no re-run");
        assert!(log.contains("--no-retry"), "{log}");
    } else {
        assert_eq!(
            attempts,
            [1, 2],
            "exactly one re-run of the interrupted run"
        );
        assert!(log.contains("\"status\":\"rerun\""), "{log}");
    }
}

/// [`launcher`] talking to EC2 through a fault proxy in front of moto.
fn launcher_via(
    w: &World,
    moto: &Moto,
    proxy: &cml_sim::ec2proxy::Ec2FaultProxy,
    name: &str,
    extra: &[&str],
) -> std::process::Command {
    let mut cmd = launcher(w, moto, name, extra);
    cmd.env("AWS_ENDPOINT_URL", proxy.url());
    cmd
}

#[test]
fn sigint_inside_run_instances_leaves_nothing_and_terminate_follows_at_once() {
    use cml_sim::ec2proxy::{Ec2FaultProxy, Fault};
    let w = World::new();
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let proxy = Ec2FaultProxy::start(&moto.url, &[]).unwrap();
    // EC2 makes the machine, but its answer is held back: the launcher never learns its id.
    proxy.inject("RunInstances", None, Fault::DelayAnswer(SECS(120)), None);
    let mut r = Running::spawn(launcher_via(&w, &moto, &proxy, "aws-inflight", &[]));
    let instance = wait_for("the instance in EC2", SECS(60), || {
        ec2.live_instances().into_iter().next()
    });
    assert_eq!(proxy.arrivals("RunInstances").len(), 1);
    let signalled = Instant::now();
    r.signal(libc::SIGINT);
    assert_eq!(r.wait_exit(SECS(60)), 130, "{}", r.output());
    let took = proxy.arrivals("TerminateInstances")[0].saturating_duration_since(signalled);
    eprintln!("TerminateInstances reached EC2 {took:?} after SIGINT (answer never received)");
    assert!(took < SECS(3), "terminate issued {took:?} after the signal");
    assert!(
        ec2.live_instances().is_empty(),
        "{} was left: {:?}\n{}",
        instance.id,
        ec2.live_instances(),
        r.output()
    );
    assert!(ec2.key_pairs().is_empty(), "{:?}", ec2.key_pairs());
    assert!(r.output().contains(&instance.id), "{}", r.output());
}

#[test]
fn sighup_and_sigquit_tear_down_like_sigterm_and_terminate_follows_at_once() {
    use cml_sim::ec2proxy::Ec2FaultProxy;
    for sig in [libc::SIGHUP, libc::SIGQUIT] {
        let w = World::new();
        let moto = Moto::start();
        let ec2 = moto.ec2();
        let proxy = Ec2FaultProxy::start(&moto.url, &[]).unwrap();
        let mut r = Running::spawn(launcher_via(&w, &moto, &proxy, "aws-hup", &[]));
        wait_for("phase registering", SECS(60), || {
            r.poll_records();
            r.seen
                .iter()
                .any(|v| v["phase"] == "registering")
                .then_some(())
        });
        let signalled = Instant::now();
        r.signal(sig);
        assert_eq!(r.wait_exit(SECS(60)), 128 + sig, "{sig}: {}", r.output());
        let took = proxy.arrivals("TerminateInstances")[0].saturating_duration_since(signalled);
        eprintln!("signal {sig}: TerminateInstances reached EC2 {took:?} after it");
        assert!(took < SECS(2), "terminate issued {took:?} after the signal");
        assert!(
            ec2.live_instances().is_empty(),
            "{sig}: {:?}",
            ec2.live_instances()
        );
        assert!(ec2.key_pairs().is_empty());
        assert!(
            r.output()
                .contains("everything this launch created was destroyed"),
            "{}",
            r.output()
        );
    }
}

#[test]
fn a_hung_ec2_endpoint_cannot_hang_the_teardown_which_names_what_is_left() {
    use cml_sim::ec2proxy::{Ec2FaultProxy, Fault};
    let w = World::new();
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let proxy = Ec2FaultProxy::start(&moto.url, &[]).unwrap();
    let mut cmd = launcher_via(&w, &moto, &proxy, "aws-hung", &[]);
    cmd.env("CML_CLOUD_TEARDOWN_TIMEOUT", "3");
    let mut r = Running::spawn(cmd);
    wait_for("phase registering", SECS(60), || {
        r.poll_records();
        r.seen
            .iter()
            .any(|v| v["phase"] == "registering")
            .then_some(())
    });
    let instance = ec2.live_instances().remove(0);
    proxy.inject("TerminateInstances", None, Fault::Hang, None);
    let signalled = Instant::now();
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait_exit(SECS(30)), 143, "{}", r.output());
    assert!(
        signalled.elapsed() < SECS(10),
        "teardown took {:?}",
        signalled.elapsed()
    );
    let out = r.output();
    assert!(out.contains("did not finish"), "{out}");
    assert!(
        out.contains(&format!("instance {}", instance.id)),
        "names what is left: {out}"
    );
    assert!(out.contains("cml runner cleanup"), "{out}");
    assert!(ec2.key_pairs().is_empty(), "the key pair went all the same");
    assert!(w.sim.runners().is_empty());
}

#[test]
fn limits_are_checked_before_anything_is_created() {
    use base64::Engine;
    let w = World::new();
    let moto = Moto::start();
    let ec2 = moto.ec2();
    for interval in ["0", "100000"] {
        let mut cmd = launcher(&w, &moto, "aws-limits", &[]);
        cmd.env("CML_CLOUD_POLL_INTERVAL", interval);
        let mut r = Running::spawn(cmd);
        assert_eq!(r.wait_exit(SECS(30)), 2, "{interval}: {}", r.output());
        assert!(
            r.output().contains("CML_CLOUD_POLL_INTERVAL"),
            "{}",
            r.output()
        );
        let said = if interval == "0" {
            "0.1 to 300 seconds"
        } else {
            "longer than the maximum of 5 minutes"
        };
        assert!(r.output().contains(said), "{}", r.output());
    }
    let script = format!("#!/bin/sh\n# {}\n", "x".repeat(17_000));
    let encoded = base64::engine::general_purpose::STANDARD.encode(&script);
    let flag = format!("--cloud-startup-script={encoded}");
    let mut r = Running::spawn(launcher(&w, &moto, "aws-limits", &[&flag]));
    assert_eq!(r.wait_exit(SECS(30)), 2, "{}", r.output());
    let out = r.output();
    assert!(out.contains("over EC2's limit of 16384 bytes"), "{out}");
    assert!(
        out.contains(&format!(
            "--cloud-startup-script makes {} bytes",
            script.len()
        )),
        "{out}"
    );
    assert!(ec2.instances().is_empty());
    assert!(ec2.key_pairs().is_empty());
    assert_eq!(w.sim.registration_tokens_issued(), 0);
}

/// A GitLab runner launched with `--no-retry`: the launcher creates the runner itself, so the
/// machine (its user-data, its files, its logs) never holds the access token, only the
/// runner's own token. The machine runs a job, idles out, and the runner deletes itself with
/// that token (`DELETE /api/v4/runners`); then the machine removes itself.
#[test]
fn a_gitlab_machine_without_retries_never_holds_the_access_token() {
    let w = World::of(Kind::Gitlab);
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let access_token = Kind::Gitlab.token();
    let mut cmd = w.runner_command(
        "aws-gitlab",
        &[
            "--cloud=aws",
            "--cloud-region=us-east",
            "--cloud-type=m",
            "--labels=cml-gpu",
            "--cloud-cml-url=https://releases.example.invalid/cml-{version}-{arch}",
            "--idle-timeout=3",
            "--destroy-delay=0",
            "--no-retry",
        ],
    );
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    cmd.env("CML_CLOUD_POLL_INTERVAL", "0.2");
    let mut launch = Running::spawn(cmd);
    let instance = wait_for("the instance", SECS(60), || {
        ec2.live_instances().into_iter().find(|i| {
            i.tags
                .iter()
                .any(|(k, v)| k == "cml:id" && v == "aws-gitlab")
        })
    });
    let runner = w
        .runners()
        .into_iter()
        .find(|r| r.name == "aws-gitlab")
        .expect("the launcher created the runner before the machine");
    let user_data = ec2.user_data(&instance.id);
    assert!(
        !user_data.contains(access_token),
        "the access token is not in user-data"
    );
    assert!(
        user_data.contains("CML_GITLAB_RUNNER_TOKEN=\"glrt-"),
        "{user_data}"
    );
    let imds = cml_sim::ImdsServer::start(&instance.id, REGION).unwrap();
    let root = boot(&w, &moto, &user_data, &imds);
    assert_eq!(
        launch.wait_exit(SECS(90)),
        0,
        "{}\nmachine log:\n{}",
        launch.output(),
        service_log(&root)
    );
    let credentials = std::fs::read_to_string(root.join("etc/cml/credentials")).unwrap();
    assert!(
        credentials.starts_with("CML_GITLAB_RUNNER_TOKEN=") && credentials.lines().count() == 1,
        "only the runner token is on the machine"
    );

    let job = w.queue_job("train", &["cml-gpu"], "echo training");
    wait_for("the job to succeed", SECS(60), || {
        (w.job(&job).state == cml_sim::JobState::Succeeded).then_some(())
    });
    let start = Instant::now();
    while !ec2.live_instances().is_empty() {
        assert!(
            start.elapsed() < SECS(60),
            "the instance did not terminate itself; machine log:\n{}",
            service_log(&root)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(w.runners().is_empty(), "{:?}", w.runners());
    assert_eq!(
        w.sim.gitlab_token_deletes(),
        [runner.id],
        "the runner deleted itself with its own token"
    );
    let log = service_log(&root);
    assert!(!log.contains(access_token), "{log}");
    assert!(log.contains("holds only its runner token"), "{log}");
}

/// A machine's GitLab runner holding only its own token cannot ask GitLab whether it has just
/// taken a job. Here gitlab-runner takes one without printing so (as in the moment between
/// taking a job and saying it), so `cml` sees the runner idle and its idle timeout expires
/// mid-job: the agent is told to finish its work and take no more (SIGQUIT), the job
/// succeeds, and only then is the runner deleted.
#[test]
fn a_runner_with_only_its_own_token_lets_a_just_taken_job_finish_at_the_idle_timeout() {
    let w = World::of(Kind::Gitlab);
    let (id, token) = w
        .sim
        .gitlab_create_runner(Kind::Gitlab.repo_path(), "gl-own", &["s"]);
    let job = w.queue_job("just-taken", &["s"], "sleep 3; echo finished");
    let imds = cml_sim::ImdsServer::start("i-0gitlabown", REGION).unwrap();
    let (mut cmd, _machine) = w.machine_runner_command(
        "gl-own",
        &["--labels=s", "--idle-timeout=1", "--no-retry"],
        &imds,
    );
    cmd.env("CML_GITLAB_RUNNER_ID", &id)
        .env("CML_GITLAB_URL", w.sim.url())
        .env("CML_GITLAB_RUNNER_TOKEN", &token)
        .env("CML_SIM_GITLAB_QUIET_JOBS", "1");
    let mut r = Running::spawn(cmd);
    assert_eq!(r.wait_exit(SECS(60)), 0, "{}", r.output());
    let out = r.output();
    assert_eq!(w.job(&job).state, cml_sim::JobState::Succeeded, "{out}");
    assert!(out.contains("finishes any job it has and stops"), "{out}");
    assert_eq!(w.sim.gitlab_token_deletes(), [id]);
    assert!(w.runners().is_empty());
    assert!(!out.contains(&token), "{out}");
}
