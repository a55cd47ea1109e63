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
    let cases: Vec<(Vec<&str>, Vec<(&str, &str)>, &str, &str)> = vec![
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
            "10 minutes",
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
