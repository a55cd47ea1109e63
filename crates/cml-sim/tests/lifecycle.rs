//! End-to-end behaviour of the simulator and the simulated agent.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cml_sim::{AppConfig, Fault, Pat, SimConfig, SimServer, DEFAULT_PAT};
use common::{configure, jwt, rsa_keys, wait_until, Agent, Http, EXE};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(20);

fn server() -> SimServer {
    SimServer::start(SimConfig::new(EXE)).unwrap()
}

fn reg_token(http: &Http, url: &str, scope: &str) -> String {
    let a = http.call(
        "POST",
        &format!("{url}/api/v3/{scope}/actions/runners/registration-token"),
        Some(DEFAULT_PAT),
        None,
    );
    assert_eq!(a.status, 201, "{}", a.json);
    a.json["token"].as_str().unwrap().to_string()
}

fn runner(sim: &SimServer, name: &str) -> Option<cml_sim::SimRunner> {
    sim.runners().into_iter().find(|r| r.name == name)
}

fn is_ts_line(line: &str, rest: &str) -> bool {
    // yyyy-MM-dd HH:mm:ssZ: rest
    line.len() == 22 + rest.len()
        && line.as_bytes()[10] == b' '
        && line[19..].starts_with("Z: ")
        && line.ends_with(rest)
}

#[test]
fn register_run_job_and_delete() {
    let sim = server();
    let http = Http::new();
    let url = sim.url();
    let dir = tempfile::tempdir().unwrap();
    cml_sim::write_agent_scripts(dir.path(), EXE.as_ref()).unwrap();
    let token = reg_token(&http, &url, "repos/owner/repo");
    assert_eq!(sim.registration_tokens_issued(), 1);

    let out = configure(
        dir.path(),
        &token,
        &[
            "--unattended",
            "--url",
            &format!("{url}/owner/repo"),
            "--name",
            "r1",
            "--labels",
            "cml,gpu",
            "--work",
            "_work",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for l in [
        "√ Connected to GitHub",
        "√ Runner successfully added",
        "√ Runner connection is good",
        "√ Settings Saved.",
    ] {
        assert!(stdout.contains(l), "{stdout}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join(".credentials"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let r = runner(&sim, "r1").unwrap();
    assert_eq!(r.labels, ["self-hosted", "Linux", "X64", "cml", "gpu"]);
    assert_eq!(r.status, "offline");

    // A second registration with the same name fails, unless --replace.
    let other = tempfile::tempdir().unwrap();
    cml_sim::write_agent_scripts(other.path(), EXE.as_ref()).unwrap();
    let dup = configure(
        other.path(),
        &token,
        &[
            "--unattended",
            "--url",
            &format!("{url}/owner/repo"),
            "--name",
            "r1",
        ],
    );
    assert!(!dup.status.success());
    let bad = configure(
        other.path(),
        "AWRONG",
        &[
            "--unattended",
            "--url",
            &format!("{url}/owner/repo"),
            "--name",
            "r9",
        ],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("NotFound"));

    let mut agent = Agent::start(dir.path(), &[], &[("MY_SECRET_CHECK", "visible")]);
    let ready = agent.expect("Listening for Jobs", T);
    assert!(is_ts_line(&ready, "Listening for Jobs"), "{ready}");
    assert!(agent.has("Current runner version: '2.330.0'"));
    wait_until(T, "runner online", || {
        runner(&sim, "r1").is_some_and(|r| r.status == "online")
    });

    let api = http.call(
        "GET",
        &format!("{url}/repos/owner/repo/actions/runners/{}", r.id),
        Some(DEFAULT_PAT),
        None,
    );
    assert_eq!(api.json["status"], "online");
    assert_eq!(
        api.json["labels"][0],
        json!({"id": api.json["labels"][0]["id"], "name": "self-hosted", "type": "read-only"})
    );
    assert_eq!(api.json["labels"][3]["type"], "custom");

    // A job whose labels do not match stays queued; a matching one runs.
    let other_job = sim.queue_job("owner/repo", "elsewhere", &["self-hosted", "arm64"], "true");
    let q = sim.queue_job(
        "owner/repo",
        "train (cml)",
        &["self-hosted", "CML"],
        "echo hello from job; env | grep MY_SECRET_CHECK; sleep 1",
    );
    assert!(is_ts_line(
        &agent.expect("Running job: train (cml)", T),
        "Running job: train (cml)"
    ));
    wait_until(T, "runner busy", || {
        runner(&sim, "r1").is_some_and(|r| r.busy)
    });
    let del_busy = http.call(
        "DELETE",
        &format!("{url}/repos/owner/repo/actions/runners/{}", r.id),
        Some(DEFAULT_PAT),
        None,
    );
    assert_eq!(del_busy.status, 422);
    assert!(del_busy.json["message"]
        .as_str()
        .unwrap()
        .contains("is still running a job"));
    let j = http.call(
        "GET",
        &format!("{url}/repos/owner/repo/actions/jobs/{}", q.job_id),
        Some(DEFAULT_PAT),
        None,
    );
    assert_eq!(j.json["status"], "in_progress");
    assert_eq!(j.json["runner_name"], "r1");
    agent.expect("hello from job", T);
    agent.expect("MY_SECRET_CHECK=visible", T);
    agent.expect("Job train (cml) completed with result: Succeeded", T);
    wait_until(T, "runner idle", || {
        runner(&sim, "r1").is_some_and(|r| !r.busy)
    });
    let job = sim.job(q.job_id).unwrap();
    assert_eq!(
        (job.status.as_str(), job.conclusion.as_deref()),
        ("completed", Some("success"))
    );
    assert!(job.output.contains("hello from job"));
    assert_eq!(sim.job(other_job.job_id).unwrap().status, "queued");
    let run = http.call(
        "GET",
        &format!("{url}/repos/owner/repo/actions/runs/{}", q.run_id),
        Some(DEFAULT_PAT),
        None,
    );
    assert_eq!(
        (run.json["status"].as_str(), run.json["conclusion"].as_str()),
        (Some("completed"), Some("success"))
    );

    // A failing job.
    let f = sim.queue_job("owner/repo", "fail", &[], "exit 3");
    agent.expect("Job fail completed with result: Failed", T);
    wait_until(T, "failure recorded", || {
        sim.job(f.job_id).unwrap().conclusion.as_deref() == Some("failure")
    });

    // SIGINT while idle: "Exiting...", exit 0, offline at once.
    agent.signal(libc::SIGINT);
    assert_eq!(agent.finish(T), 0);
    assert!(agent.has("Exiting..."));
    assert_eq!(runner(&sim, "r1").unwrap().status, "offline");

    let del = http.call(
        "DELETE",
        &format!("{url}/api/v3/repos/owner/repo/actions/runners/{}", r.id),
        Some(DEFAULT_PAT),
        None,
    );
    assert_eq!(del.status, 204);
    assert_eq!(sim.deletes(), vec![(r.id, "r1".to_string())]);
    let again = http.call(
        "DELETE",
        &format!("{url}/repos/owner/repo/actions/runners/{}", r.id),
        Some(DEFAULT_PAT),
        None,
    );
    assert_eq!(again.status, 404);
    assert_eq!(again.json["message"], "Not Found");
    assert_eq!(sim.registered_names(), ["r1"]);
}

#[test]
fn ephemeral_jit_runner_and_cancellation() {
    let sim = server();
    let http = Http::new();
    let url = sim.url();
    let dir = tempfile::tempdir().unwrap();
    cml_sim::write_agent_scripts(dir.path(), EXE.as_ref()).unwrap();
    let body =
        json!({"name": "jit-1", "runner_group_id": 1, "labels": ["cml"], "work_folder": "_work"});
    let a = http.call(
        "POST",
        &format!("{url}/orgs/acme/actions/runners/generate-jitconfig"),
        Some(DEFAULT_PAT),
        Some(body.clone()),
    );
    assert_eq!(a.status, 201, "{}", a.json);
    assert_eq!(a.json["runner"]["ephemeral"], true);
    let dup = http.call(
        "POST",
        &format!("{url}/orgs/acme/actions/runners/generate-jitconfig"),
        Some(DEFAULT_PAT),
        Some(body),
    );
    assert_eq!(dup.status, 409);
    assert_eq!(sim.registration_tokens_issued(), 0);
    let blob = a.json["encoded_jit_config"].as_str().unwrap().to_string();
    let mut agent = Agent::start(
        dir.path(),
        &[],
        &[("ACTIONS_RUNNER_INPUT_JITCONFIG", &blob)],
    );
    agent.expect("Listening for Jobs", T);
    // Org runners take jobs of the org's repositories.
    let q = sim.queue_job("acme/widgets", "build", &["cml"], "echo built");
    agent.expect("Job build completed with result: Succeeded", T);
    agent.expect("√ Removed .credentials", T);
    agent.expect("√ Removed .runner", T);
    assert_eq!(agent.finish(T), 0);
    assert!(!dir.path().join(".runner").exists());
    assert!(
        runner(&sim, "jit-1").is_none(),
        "ephemeral runner removed after its job"
    );
    assert_eq!(
        sim.job(q.job_id).unwrap().runner_name.as_deref(),
        Some("jit-1")
    );

    // SIGTERM during a job: cancelled, no "Exiting...".
    let token = reg_token(&http, &url, "repos/o/r");
    let out = configure(
        dir.path(),
        &token,
        &[
            "--unattended",
            "--url",
            &format!("{url}/o/r"),
            "--name",
            "e1",
            "--ephemeral",
        ],
    );
    assert!(out.status.success());
    let mut agent = Agent::start(dir.path(), &[], &[]);
    agent.expect("Listening for Jobs", T);
    let q = sim.queue_job("o/r", "long", &[], "sleep 30");
    agent.expect("Running job: long", T);
    std::thread::sleep(Duration::from_millis(300));
    agent.signal(libc::SIGTERM);
    agent.expect("Job long completed with result: Canceled", T);
    assert_eq!(agent.finish(T), 0);
    assert!(!agent.has("Exiting..."));
    assert_eq!(
        sim.job(q.job_id).unwrap().conclusion.as_deref(),
        Some("cancelled")
    );
}

#[test]
fn deleted_runner_cleans_up_and_knobs() {
    let sim = server();
    let http = Http::new();
    let url = sim.url();
    let dir = tempfile::tempdir().unwrap();
    cml_sim::write_agent_scripts(dir.path(), EXE.as_ref()).unwrap();
    let token = reg_token(&http, &url, "orgs/acme");
    let out = configure(
        dir.path(),
        &token,
        &[
            "--unattended",
            "--url",
            &format!("{url}/acme"),
            "--name",
            "d1",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = dir.path().join("events.jsonl");
    let events_s = events.to_string_lossy().to_string();
    let mut agent = Agent::start(
        dir.path(),
        &[],
        &[
            ("CML_SIM_AGENT_SPLIT_WRITES", "1"),
            ("CML_SIM_AGENT_EVENTS_FILE", &events_s),
        ],
    );
    let ready = agent.expect("Listening for Jobs", T);
    assert!(is_ts_line(&ready, "Listening for Jobs"));
    let id = runner(&sim, "d1").unwrap().id;
    assert_eq!(
        http.call(
            "DELETE",
            &format!("{url}/orgs/acme/actions/runners/{id}"),
            Some(DEFAULT_PAT),
            None
        )
        .status,
        204
    );
    agent.expect(
        "The runner no longer exists on the server. Cleaning up local configuration.",
        T,
    );
    assert_eq!(agent.finish(T), 0);
    assert!(!dir.path().join(".runner").exists() && !dir.path().join(".credentials").exists());
    let ev: Vec<Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(ev.iter().any(
        |e| e["line"].as_str().unwrap().ends_with("Listening for Jobs")
            && e["unix_nanos"].as_u64().unwrap() > 0
    ));

    // Crash knob.
    let token = reg_token(&http, &url, "orgs/acme");
    assert!(configure(
        dir.path(),
        &token,
        &[
            "--unattended",
            "--url",
            &format!("{url}/acme"),
            "--name",
            "d2"
        ]
    )
    .status
    .success());
    let mut agent = Agent::start(dir.path(), &[], &[("CML_SIM_AGENT_CRASH_AFTER_READY", "1")]);
    agent.expect("Listening for Jobs", T);
    assert_eq!(agent.finish(T), 1);
    assert!(agent
        .lines
        .iter()
        .any(|(err, l)| *err && l == "An error occurred: simulated agent crash"));

    // Ignore-signals knob: SIGINT and SIGTERM do nothing, SIGKILL is needed.
    let mut agent = Agent::start(dir.path(), &[], &[("CML_SIM_AGENT_IGNORE_SIGINT", "1")]);
    agent.expect("Listening for Jobs", T);
    agent.signal(libc::SIGINT);
    agent.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(agent.child.try_wait().unwrap().is_none());
    agent.signal(libc::SIGKILL);
    agent.finish(T);
    wait_until(T, "killed runner goes offline", || {
        runner(&sim, "d2").is_some_and(|r| r.status == "offline")
    });
}

#[test]
fn pagination_with_250_runners() {
    let sim = server();
    let http = Http::new();
    let url = sim.url();
    for i in 0..250 {
        let body = json!({"name": format!("p-{i:03}"), "runner_group_id": 1, "labels": ["x"]});
        assert_eq!(
            http.call(
                "POST",
                &format!("{url}/repos/o/r/actions/runners/generate-jitconfig"),
                Some(DEFAULT_PAT),
                Some(body)
            )
            .status,
            201
        );
    }
    let first = http.call(
        "GET",
        &format!("{url}/repos/o/r/actions/runners"),
        Some(DEFAULT_PAT),
        None,
    );
    assert_eq!(first.json["runners"].as_array().unwrap().len(), 30);
    assert_eq!(first.json["total_count"], 250);
    let mut next = Some(format!(
        "{url}/api/v3/repos/o/r/actions/runners?per_page=100"
    ));
    let mut names = Vec::new();
    let mut pages = 0;
    while let Some(u) = next.take() {
        pages += 1;
        assert!(pages <= 5, "too many pages");
        let a = http.call("GET", &u, Some(DEFAULT_PAT), None);
        assert_eq!(a.status, 200);
        names.extend(
            a.json["runners"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_string()),
        );
        if let Some(link) = a.header("link") {
            if pages == 1 {
                assert!(link.contains("page=3>; rel=\"last\""), "{link}");
            }
            next = link
                .split(", ")
                .find(|p| p.ends_with("rel=\"next\""))
                .map(|p| p[1..p.find('>').unwrap()].to_string());
        }
    }
    assert_eq!(pages, 3);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 250);
    let org = http.call(
        "GET",
        &format!("{url}/orgs/o/actions/runners"),
        Some(DEFAULT_PAT),
        None,
    );
    assert_eq!(org.json["total_count"], 0);
}

#[test]
fn auth_and_fault_injection() {
    let mut cfg = SimConfig::new(EXE);
    cfg.pats.push(Pat {
        token: "ghp_readonly".into(),
        admin: false,
    });
    let sim = SimServer::start(cfg).unwrap();
    let http = Http::new();
    let url = sim.url();
    let list = format!("{url}/repos/o/r/actions/runners");
    let bad = http.call("GET", &list, Some("nope"), None);
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json["message"], "Bad credentials");
    let ro = http.call("GET", &list, Some("ghp_readonly"), None);
    assert_eq!(ro.status, 403);
    assert_eq!(
        ro.json["message"],
        "Resource not accessible by personal access token"
    );
    assert!(ro.header("x-ratelimit-remaining").is_none());

    sim.inject_fault(
        Fault::status(429)
            .path_contains("registration-token")
            .retry_after(7),
    );
    sim.inject_fault(Fault::status(403).method("GET").ratelimit_reset_in(30));
    sim.inject_fault(
        Fault::status(502)
            .path_contains("/actions/runners/1")
            .times(2),
    );
    let a = http.call(
        "POST",
        &format!("{url}/repos/o/r/actions/runners/registration-token"),
        Some(DEFAULT_PAT),
        None,
    );
    assert_eq!(
        (a.status, a.header("retry-after").as_deref()),
        (429, Some("7"))
    );
    assert!(a.json["message"]
        .as_str()
        .unwrap()
        .contains("secondary rate limit"));
    assert_eq!(
        http.call(
            "POST",
            &format!("{url}/repos/o/r/actions/runners/registration-token"),
            Some(DEFAULT_PAT),
            None
        )
        .status,
        201
    );
    let a = http.call("GET", &list, Some(DEFAULT_PAT), None);
    assert_eq!(a.status, 403);
    assert_eq!(a.header("x-ratelimit-remaining").as_deref(), Some("0"));
    let reset: u64 = a.header("x-ratelimit-reset").unwrap().parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(reset >= now + 28 && reset <= now + 31);
    for _ in 0..2 {
        assert_eq!(
            http.call("GET", &format!("{list}/1"), Some(DEFAULT_PAT), None)
                .status,
            502
        );
    }
    assert_eq!(
        http.call("GET", &format!("{list}/1"), Some(DEFAULT_PAT), None)
            .status,
        404
    );
    assert_eq!(http.call("GET", &list, Some(DEFAULT_PAT), None).status, 200);
    let log = sim.requests();
    assert_eq!(log.iter().filter(|r| r.status == 502).count(), 2);
}

#[test]
fn github_app_flow() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = rsa_keys(dir.path());
    let mut cfg = SimConfig::new(EXE);
    cfg.app = Some(AppConfig {
        app_id: 4242,
        public_key_pem: public,
        installation_id: 77,
    });
    cfg.installation_token_ttl = Duration::from_secs(2);
    let sim = SimServer::start(cfg).unwrap();
    let http = Http::new();
    let url = sim.url();
    let good = jwt(&private, json!("4242"), 540);
    let inst = http.call(
        "GET",
        &format!("{url}/repos/o/r/installation"),
        Some(&good),
        None,
    );
    assert_eq!(inst.status, 200, "{}", inst.json);
    assert_eq!(inst.json["id"], 77);
    assert_eq!(inst.json["account"]["login"], "o");
    assert_eq!(
        http.call(
            "GET",
            &format!("{url}/orgs/o/installation"),
            Some(&jwt(&private, json!(4242), 600)),
            None
        )
        .status,
        200
    );
    for bad in [
        jwt(&private, json!(1), 540),
        jwt(&private, json!(4242), 900),
        jwt(&private, json!(4242), -30),
        "x.y.z".to_string(),
    ] {
        assert_eq!(
            http.call(
                "GET",
                &format!("{url}/repos/o/r/installation"),
                Some(&bad),
                None
            )
            .status,
            401
        );
    }
    let tok = http.call(
        "POST",
        &format!("{url}/app/installations/77/access_tokens"),
        Some(&good),
        None,
    );
    assert_eq!(tok.status, 201);
    let token = tok.json["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ghs_"));
    assert_eq!(
        http.call(
            "POST",
            &format!("{url}/app/installations/78/access_tokens"),
            Some(&good),
            None
        )
        .status,
        404
    );
    // The JWT itself is not accepted on runner routes; the installation token is, until it expires.
    assert_eq!(
        http.call(
            "GET",
            &format!("{url}/repos/o/r/actions/runners"),
            Some(&good),
            None
        )
        .status,
        401
    );
    assert_eq!(
        http.call(
            "POST",
            &format!("{url}/repos/o/r/actions/runners/registration-token"),
            Some(&token),
            None
        )
        .status,
        201
    );
    std::thread::sleep(Duration::from_millis(2200));
    let expired = http.call(
        "GET",
        &format!("{url}/repos/o/r/actions/runners"),
        Some(&token),
        None,
    );
    assert_eq!(expired.status, 401);
    assert_eq!(expired.json["message"], "Bad credentials");
}

fn release_sha(body: &str, arch: &str) -> String {
    let start = format!("<!-- BEGIN SHA {arch} -->");
    let from = body.find(&start).unwrap() + start.len();
    let to = body[from..].find("<!-- END SHA").unwrap();
    body[from..from + to].to_string()
}

#[test]
fn agent_download_and_tampering() {
    for tamper in [false, true] {
        let mut cfg = SimConfig::new(EXE);
        cfg.tamper_download = tamper;
        let sim = SimServer::start(cfg).unwrap();
        let http = Http::new();
        let url = sim.url();
        let rel = http.call(
            "GET",
            &format!("{url}/api/v3/repos/actions/runner/releases/latest"),
            None,
            None,
        );
        assert_eq!(rel.status, 200);
        assert_eq!(rel.json["tag_name"], "v2.330.0");
        let tagged = http.call(
            "GET",
            &format!("{url}/repos/actions/runner/releases/tags/v2.330.0"),
            Some(DEFAULT_PAT),
            None,
        );
        assert_eq!(tagged.json["tag_name"], "v2.330.0");
        let body = rel.json["body"].as_str().unwrap();
        let asset = rel.json["assets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "actions-runner-linux-x64-2.330.0.tar.gz")
            .unwrap();
        let data = http.call(
            "GET",
            asset["browser_download_url"].as_str().unwrap(),
            None,
            None,
        );
        assert_eq!(data.status, 200);
        assert_eq!(sim.downloads(), 1);
        let sha = hex::encode(Sha256::digest(&data.bytes));
        assert_eq!(sha == release_sha(body, "linux-x64"), !tamper);
        assert_eq!(
            release_sha(body, "linux-x64"),
            release_sha(body, "linux-arm64")
        );
        if tamper {
            continue;
        }
        // The tarball extracted anywhere is a working agent.
        let dir = tempfile::tempdir().unwrap();
        tar::Archive::new(flate2::read::GzDecoder::new(&data.bytes[..]))
            .unpack(dir.path())
            .unwrap();
        let token = reg_token(&http, &url, "repos/o/r");
        let out = configure(
            dir.path(),
            &token,
            &[
                "--unattended",
                "--url",
                &format!("{url}/o/r"),
                "--name",
                "t1",
                "--work",
                "w",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut agent = Agent::start(dir.path(), &[], &[]);
        agent.expect("Listening for Jobs", T);
        let q = sim.queue_job("o/r", "pwd", &[], "pwd");
        agent.expect("Job pwd completed with result: Succeeded", T);
        assert!(sim.job(q.job_id).unwrap().output.trim().ends_with("/w"));
    }
}
