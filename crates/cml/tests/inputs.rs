//! Hostile inputs and a hostile environment, with the real `cml` binary: absurd option values,
//! a stalled agent download, a hanging `nvidia-smi`, a flaky metadata service, and an agent
//! install that other users could have changed. Each is refused or survived without
//! registering anything it should not, and without crashing.

mod harness;

use harness::{Kind, Running, World, PAT, SECS};

/// Every way a duration setting can be absurd: each is refused with exit code 2 and a message
/// naming the option and its maximum, before any call to the forge.
#[test]
fn absurd_durations_are_refused_before_anything_is_registered() {
    let huge = "9223372036854775807";
    // Arguments, variables, the option named in the error, its maximum.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--idle-timeout", huge],
            vec![],
            "--idle-timeout",
            "365 days",
        ),
        (
            vec!["--idle-timeout=1e30"],
            vec![],
            "--idle-timeout",
            "365 days",
        ),
        (
            vec![],
            vec![("CML_RUNNER_IDLE_TIMEOUT", huge)],
            "--idle-timeout",
            "365 days",
        ),
        (
            vec!["--destroy-delay", huge],
            vec![],
            "--destroy-delay",
            "1 day",
        ),
        (vec!["--stop-grace=1e30"], vec![], "--stop-grace", "1 hour"),
        (
            vec!["--cloud=aws", "--cloud-timeout", huge],
            vec![],
            "--cloud-timeout",
            "1 day",
        ),
        (
            vec!["--cloud=aws", "--cloud-max-lifetime=99999999999w"],
            vec![],
            "--cloud-max-lifetime",
            "365 days",
        ),
        (
            vec!["--job-time-limit-margin", huge],
            vec![],
            "--job-time-limit-margin",
            "30 days",
        ),
        (
            vec![],
            vec![("CML_JOB_TIME_LIMIT", huge)],
            "CML_JOB_TIME_LIMIT",
            "30 days",
        ),
        (
            vec!["--cloud=aws"],
            vec![("CML_CLOUD_POLL_INTERVAL", "1e30")],
            "CML_CLOUD_POLL_INTERVAL",
            "5 minutes",
        ),
    ];
    for kind in [Kind::Github, Kind::Gitlab] {
        let w = World::of(kind);
        for (i, (args, vars, option, max)) in cases.iter().enumerate() {
            let mut cmd = w.runner_command(&format!("absurd-{i}"), args);
            for (k, v) in vars {
                cmd.env(k, v);
            }
            let mut r = Running::spawn(cmd);
            let code = r.wait_exit(SECS(20));
            let out = r.output();
            assert_eq!(code, 2, "{kind:?} {args:?} {vars:?}: {out}");
            assert!(
                out.contains(&format!("{option}: "))
                    && out.contains(&format!("longer than the maximum of {max}"))
                    && out.contains("hint: give at most"),
                "{kind:?} {args:?} {vars:?}: {out}"
            );
            assert!(!out.contains("panicked"), "{out}");
        }
        assert!(w.runners().is_empty(), "{:?}", w.runners());
        assert!(w.registered_names().is_empty());
        assert_eq!(w.sim.registration_tokens_issued(), 0);
        assert!(
            w.sim.requests().is_empty(),
            "no API call for invalid settings: {:?}",
            w.sim.requests()
        );
    }
}

/// A margin as long as the job time limit would stop every job as it starts: refused.
#[test]
fn a_job_time_limit_margin_not_shorter_than_the_limit_is_refused() {
    let w = World::new();
    let mut cmd = w.runner_command("margin", &["--job-time-limit-margin=1h"]);
    cmd.env("CML_JOB_TIME_LIMIT", "3600");
    let mut r = Running::spawn(cmd);
    assert_eq!(r.wait_exit(SECS(20)), 2, "{}", r.output());
    assert!(
        r.output()
            .contains("--job-time-limit-margin (3600 s) must be shorter than the job time limit"),
        "{}",
        r.output()
    );
    assert!(w.sim.requests().is_empty());
    assert_eq!(w.sim.registration_tokens_issued(), 0);
}

#[test]
fn cleanup_refuses_an_absurd_older_than() {
    let w = World::new();
    let repo = w.repo_url();
    let mut r = Running::spawn(w.cml(&[
        "runner",
        "cleanup",
        "--cloud=aws",
        "--driver=github",
        "--repo",
        &repo,
        "--token",
        PAT,
        "--older-than=1e30",
    ]));
    assert_eq!(r.wait_exit(SECS(20)), 2, "{}", r.output());
    let out = r.output();
    assert!(
        out.contains("--older-than: ") && out.contains("longer than the maximum of 365 days"),
        "{out}"
    );
    assert!(w.sim.requests().is_empty());
}

/// A releases API on 127.0.0.1 for actions/runner whose package answers its headers and a few
/// bytes, then nothing more (the connection is held open for two minutes).
fn stalling_releases_api() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let asset_url = format!("{base}/asset.tar.gz");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(10).flatten() {
            let asset_url = asset_url.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let mut s = stream;
                if request.contains("/latest") {
                    let platform = cml_agent::install::platform().unwrap();
                    let version = "2.330.0";
                    let body = serde_json::json!({
                        "tag_name": format!("v{version}"),
                        "body": format!("<!-- BEGIN SHA {platform} -->{}<!-- END SHA {platform} -->", "a".repeat(64)),
                        "assets": [{
                            "name": format!("actions-runner-{platform}-{version}.tar.gz"),
                            "browser_download_url": asset_url,
                        }],
                    })
                    .to_string();
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                } else {
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: 200000000\r\n\r\nthe first bytes"
                    );
                    let _ = s.flush();
                    std::thread::sleep(SECS(120));
                }
            });
        }
    });
    format!("{base}/repos/actions/runner/releases")
}

/// A download that stops sending after its headers fails after the stall timeout (30 s),
/// with a clear error, no partial file, and nothing registered.
#[test]
fn a_stalled_agent_download_fails_in_bounded_time_and_registers_nothing() {
    let w = World::new();
    let repo = w.repo_url();
    let workdir = w.empty_workdir("stalled");
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
    cmd.env("CML_GITHUB_RUNNER_RELEASES_URL", stalling_releases_api());
    let started = std::time::Instant::now();
    let mut r = Running::spawn(cmd);
    assert_eq!(r.wait_exit(SECS(75)), 1, "{}", r.output());
    assert!(started.elapsed() >= SECS(25), "{:?}", started.elapsed());
    let out = r.output();
    assert!(
        out.contains("stalled: nothing was received for 30 s") && out.contains("hint:"),
        "{out}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&workdir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "partial install left: {leftovers:?}");
    assert_eq!(w.sim.registration_tokens_issued(), 0);
    assert!(w.registered_names().is_empty());
}

/// A directory holding an `nvidia-smi` that writes its pid to `nvidia-smi.pid` beside it and
/// then hangs for `secs` seconds.
fn hanging_nvidia_smi(w: &World, secs: u64) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = w.tmp.path().join("gpu-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let smi = bin.join("nvidia-smi");
    std::fs::write(
        &smi,
        format!(
            "#!/bin/sh\necho $$ > {}/nvidia-smi.pid\nexec sleep {secs}\n",
            bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// True when process `pid` is gone (or a zombie waiting for its new parent to reap it).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn with_path(cmd: &mut std::process::Command, dir: &std::path::Path) {
    cmd.env(
        "PATH",
        format!("{}:{}", dir.display(), std::env::var("PATH").unwrap()),
    );
}

/// GitLab's executor asks `nvidia-smi` whether there are GPUs; one that hangs is given 10 s,
/// killed, and the runner goes on without GPUs.
#[test]
fn a_hanging_nvidia_smi_does_not_keep_the_runner_from_starting() {
    let w = World::of(Kind::Gitlab);
    let bin = hanging_nvidia_smi(&w, 60);
    let mut cmd = w.runner_command("gpu-hang", &["--idle-timeout=1"]);
    with_path(&mut cmd, &bin);
    let started = std::time::Instant::now();
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(30));
    assert!(started.elapsed() < SECS(25), "{:?}", started.elapsed());
    assert_eq!(r.wait_exit(SECS(30)), 0, "{}", r.output());
    let out = r.output();
    assert!(
        out.contains("nvidia-smi did not answer within 10 s; going on without GPUs"),
        "{out}"
    );
    let pid = std::fs::read_to_string(bin.join("nvidia-smi.pid")).unwrap();
    assert!(gone(&pid), "the hung nvidia-smi ({pid}) was killed");
    let args = std::fs::read_to_string(w.tmp.path().join("agents/gpu-hang/.sim-argv")).unwrap();
    assert!(
        args.contains("config image=\"iterativeai/cml:latest\"") && !args.contains("nvidia"),
        "{args}"
    );
}

/// SIGTERM while `nvidia-smi` hangs is handled at once: nothing was registered yet.
#[test]
fn sigterm_while_nvidia_smi_hangs_is_handled_at_once() {
    let w = World::of(Kind::Gitlab);
    let bin = hanging_nvidia_smi(&w, 60);
    let mut cmd = w.runner_command("gpu-term", &[]);
    with_path(&mut cmd, &bin);
    let mut r = Running::spawn(cmd);
    let pid_file = bin.join("nvidia-smi.pid");
    let deadline = std::time::Instant::now() + SECS(20);
    while !pid_file.exists() {
        assert!(std::time::Instant::now() < deadline, "{}", r.output());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let signalled = std::time::Instant::now();
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait_exit(SECS(10)), 143, "{}", r.output());
    assert!(
        signalled.elapsed() < SECS(3),
        "handled after {:?}",
        signalled.elapsed()
    );
    assert!(
        r.output().contains("nothing was registered"),
        "{}",
        r.output()
    );
    assert!(w.registered_names().is_empty());
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(gone(&pid), "the hung nvidia-smi ({pid}) was killed");
}

/// A GCP metadata server that answers 500 to its first `failures` requests, then `FALSE`, and
/// `TRUE` (a preemption notice) once `preempt` is set; it counts the requests.
fn flaky_gcp_metadata(
    failures: usize,
    preempt: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200).flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            let (status, text) = if n <= failures {
                ("500 Internal Server Error", "")
            } else if preempt.load(Ordering::SeqCst) {
                ("200 OK", "TRUE")
            } else {
                ("200 OK", "FALSE")
            };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, count)
}

/// The metadata service failing a few times in a row does not end the watch: the preemption
/// notice that follows still stops the runner.
#[test]
fn interruption_watching_survives_metadata_errors() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let w = World::new();
    let imds = cml_sim::ImdsServer::start("i-0123456789abcdef0", "us-east-1").unwrap();
    let preempt = std::sync::Arc::new(AtomicBool::new(false));
    let (url, requests) = flaky_gcp_metadata(3, preempt.clone());
    let (mut cmd, _machine) =
        w.machine_runner_command("flaky-md", &["--idle-timeout=never"], &imds);
    cmd.env("CML_MACHINE_CLOUD", "gcp")
        .env("CML_GCP_METADATA_URL", &url);
    let mut r = Running::spawn(cmd);
    r.wait_status("ready", SECS(20));
    // Three failed looks and then good answers: the watch goes on.
    let deadline = std::time::Instant::now() + SECS(40);
    while requests.load(Ordering::SeqCst) < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the metadata service was asked {} times only: {}",
            requests.load(Ordering::SeqCst),
            r.output()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    preempt.store(true, Ordering::SeqCst);
    let interrupted = r.wait_status("interrupted", SECS(20));
    assert_eq!(interrupted["job"], "", "{interrupted}");
    assert_eq!(r.wait_exit(SECS(30)), 0, "{}", r.output());
    assert!(w.runners().is_empty());
}

/// An existing agent install that other users could have changed is not run: refused with the
/// path and the fix, and nothing is registered.
#[test]
fn an_agent_install_others_can_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    for (kind, file) in [
        (Kind::Github, "run.sh"),
        (Kind::Gitlab, "gitlab-runner"),
        (
            Kind::Bitbucket,
            "atlassian-bitbucket-pipelines-runner/bin/start.sh",
        ),
        (Kind::Github, ""),
    ] {
        let w = World::of(kind);
        let name = "unsafe";
        let workdir = w.workdir(name);
        let path = if file.is_empty() {
            workdir.clone()
        } else {
            workdir.join(file)
        };
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o002)).unwrap();
        let repo = w.repo_url();
        let driver = format!("--driver={}", kind.driver());
        let mut r = Running::spawn(w.cml(&[
            "runner",
            &driver,
            "--repo",
            &repo,
            "--token",
            kind.token(),
            "--name",
            name,
            "--workdir",
            workdir.to_str().unwrap(),
        ]));
        assert_eq!(r.wait_exit(SECS(20)), 1, "{kind:?} {file}: {}", r.output());
        let out = r.output();
        let shown = path.display().to_string();
        assert!(
            out.contains(&format!("{shown} is writable by every user"))
                && out.contains(&format!("run `chmod go-w {shown}`")),
            "{kind:?} {file}: {out}"
        );
        assert!(w.registered_names().is_empty(), "{kind:?} {file}");
        assert_eq!(w.sim.registration_tokens_issued(), 0);
        let posts: Vec<_> = w
            .sim
            .requests()
            .into_iter()
            .filter(|q| q.method != "GET")
            .collect();
        assert!(posts.is_empty(), "{kind:?} {file}: {posts:?}");
    }
}
