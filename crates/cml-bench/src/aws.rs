//! The `--cloud=aws` launcher's own overhead, against moto (`moto_server` on 127.0.0.1) and
//! the GitHub simulator. The bench plays the machines: when an instance tagged
//! `cml:id=<name>` appears, it starts a local `cml runner <name>` with a simulated agent,
//! which is what the machine's startup script would do, so the launcher sees its runner
//! online and exits.
//!
//! Figures: start → instance requested (the `booting` phase record, printed right after
//! RunInstances answered), and start → exit of 10 launchers run in parallel.

use cml_sim::{write_agent_scripts, SimConfig, SimServer, DEFAULT_PAT};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LAUNCHERS: usize = 10;
const AMIS: &str = r#"[{"ami_id":"ami-0c0ffee0c0ffee001","name":"ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250101","description":"Ubuntu","owner_id":"099720109477","public":true,"virtualization_type":"hvm","architecture":"x86_64","state":"available","root_device_type":"ebs","root_device_name":"/dev/sda1","creation_date":"2025-01-01T00:00:00.000Z","hypervisor":"xen","image_location":"099720109477/ubuntu-noble","sriov":"simple"}]"#;

pub fn launcher(cml: &Path, sim_exe: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let amis = tmp.path().join("amis.json");
    std::fs::write(&amis, AMIS).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Ok(mut moto) = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("MOTO_AMIS_PATH", &amis)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        println!("AWS launcher: skipped (moto_server not found; pip install 'moto[server]')");
        return;
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto_server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let moto_url = format!("http://127.0.0.1:{port}");
    let sim = SimServer::start(SimConfig::new(sim_exe)).expect("simulator starts");

    let (tx, rx) = mpsc::channel::<(usize, &'static str, Instant)>();
    let mut launchers: Vec<Child> = Vec::new();
    let t0 = Instant::now();
    for i in 0..LAUNCHERS {
        let mut child = Command::new(cml)
            .args([
                "runner",
                "--driver=github",
                "--cloud=aws",
                "--cloud-region=us-east",
                "--cloud-type=m",
            ])
            .arg(format!("--name=bench-aws-{i}"))
            .arg(format!("--repo={}/octo/bench", sim.url()))
            .arg(format!("--token={DEFAULT_PAT}"))
            .env("HOME", tmp.path())
            .env("AWS_ENDPOINT_URL", &moto_url)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("CML_CLOUD_POLL_INTERVAL", "0.1")
            // Its log records are on standard error.
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cml starts");
        let out = child.stderr.take().unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["phase"] == "booting" {
                        let _ = tx.send((i, "booting", Instant::now()));
                    }
                }
            }
            let _ = tx.send((i, "closed", Instant::now()));
        });
        launchers.push(child);
    }

    // Play the machines: a local runner for each instance that appears.
    let mut machines: Vec<Child> = Vec::new();
    let mut requested = vec![None; LAUNCHERS];
    let mut exited = vec![None; LAUNCHERS];
    let mut started = [false; LAUNCHERS];
    let deadline = Instant::now() + Duration::from_secs(120);
    while exited.iter().any(Option::is_none) && Instant::now() < deadline {
        while let Ok((i, what, at)) = rx.try_recv() {
            if what == "booting" {
                requested[i] = Some(at - t0);
            }
        }
        for (i, l) in launchers.iter_mut().enumerate() {
            if exited[i].is_none() {
                if let Ok(Some(status)) = l.try_wait() {
                    assert!(status.success(), "launcher {i} failed: {status}");
                    exited[i] = Some(t0.elapsed());
                }
            }
            if requested[i].is_some() && !started[i] {
                started[i] = true;
                machines.push(local_runner(
                    cml,
                    &sim,
                    tmp.path(),
                    sim_exe,
                    &format!("bench-aws-{i}"),
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for m in &mut machines {
        // SAFETY: signals our own child; no memory involved.
        unsafe {
            libc::kill(m.id() as i32, libc::SIGTERM);
        }
    }
    for m in &mut machines {
        let _ = m.wait();
    }
    let _ = moto.kill();
    let _ = moto.wait();
    let mut req: Vec<Duration> = requested.into_iter().flatten().collect();
    req.sort();
    let all_done = exited.iter().all(Option::is_some);
    let slowest = exited.into_iter().flatten().max().unwrap_or_default();
    if req.is_empty() || !all_done {
        println!("AWS launcher: did not complete within 120 s");
        return;
    }
    println!(
        "AWS launcher vs moto, {LAUNCHERS} in parallel: start -> instance requested median {:.0} ms, max {:.0} ms; start -> exit of all {LAUNCHERS} (runners online) {:.0} ms",
        crate::ms(req[req.len() / 2]),
        crate::ms(req[req.len() - 1]),
        crate::ms(slowest)
    );
}

/// What the machine's startup script would start: `cml runner` with the same name.
pub fn local_runner(cml: &Path, sim: &SimServer, tmp: &Path, sim_exe: &Path, name: &str) -> Child {
    let workdir = tmp.join(format!("machine-{name}"));
    std::fs::create_dir_all(&workdir).unwrap();
    write_agent_scripts(&workdir, sim_exe).unwrap();
    Command::new(cml)
        .args(["runner", "--driver=github", "--idle-timeout=never"])
        .arg(format!("--name={name}"))
        .arg(format!("--repo={}/octo/bench", sim.url()))
        .arg(format!("--token={DEFAULT_PAT}"))
        .arg("--workdir")
        .arg(&workdir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cml starts")
}
