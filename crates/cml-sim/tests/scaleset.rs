//! The simulated Actions service of runner scale sets, driven over HTTP as a listener
//! (actions-runner-controller, `actions/scaleset`) drives the real one.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use cml_sim::{Fault, SimConfig, SimServer, DEFAULT_PAT};
use common::{Agent, Http, EXE};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_millis(700);

fn server() -> SimServer {
    let mut cfg = SimConfig::new(EXE);
    cfg.actions_message_wait = WAIT;
    SimServer::start(cfg).unwrap()
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

/// The registration exchange for `owner/repo` (or an org): (service URL, admin token).
fn admin_token(http: &Http, url: &str, scope: &str) -> (String, String) {
    let prefix = if scope.contains('/') { "repos" } else { "orgs" };
    let token = reg_token(http, url, &format!("{prefix}/{scope}"));
    let a = http.call_auth(
        "POST",
        &format!("{url}/api/v3/actions/runner-registration"),
        Some(&format!("RemoteAuth {token}")),
        Some(json!({"url": format!("{url}/{scope}"), "runner_event": "register"})),
    );
    assert_eq!(a.status, 200, "{}", a.json);
    (
        a.json["url"].as_str().unwrap().to_string(),
        a.json["token"].as_str().unwrap().to_string(),
    )
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn create_set(http: &Http, svc: &str, admin: &str, body: Value) -> Value {
    let a = http.call(
        "POST",
        &format!("{svc}_apis/runtime/runnerscalesets?api-version=6.0-preview"),
        Some(admin),
        Some(body),
    );
    assert_eq!(a.status, 200, "{}", a.json);
    a.json
}

fn open_session(http: &Http, svc: &str, admin: &str, set: u64, owner: &str) -> Value {
    let a = http.call(
        "POST",
        &format!("{svc}_apis/runtime/runnerscalesets/{set}/sessions"),
        Some(admin),
        Some(json!({"ownerName": owner})),
    );
    assert_eq!(a.status, 200, "{}", a.json);
    a.json
}

/// `GET messageQueueUrl`: (status, message).
fn poll(http: &Http, session: &Value, last: u64) -> (u16, Value) {
    let url = session["messageQueueUrl"].as_str().unwrap();
    let a = http.call(
        "GET",
        &format!("{url}?lastMessageId={last}"),
        session["messageQueueAccessToken"].as_str(),
        None,
    );
    (a.status, a.json)
}

fn ack(http: &Http, session: &Value, id: u64) -> u16 {
    let url = session["messageQueueUrl"].as_str().unwrap();
    http.call(
        "DELETE",
        &format!("{url}/{id}"),
        session["messageQueueAccessToken"].as_str(),
        None,
    )
    .status
}

/// The job messages of a queue message (its `body` is a JSON string).
fn jobs_of(message: &Value) -> Vec<Value> {
    serde_json::from_str(message["body"].as_str().unwrap()).unwrap()
}

/// Job messages read from a queue (acknowledged) and not yet looked at.
#[derive(Default)]
struct Inbox(Vec<Value>);

impl Inbox {
    /// The first job message of `kind`, polling (and acknowledging) until it comes.
    fn next(&mut self, http: &Http, session: &Value, kind: &str) -> Value {
        let start = Instant::now();
        loop {
            if let Some(i) = self.0.iter().position(|j| j["messageType"] == kind) {
                return self.0.remove(i);
            }
            assert!(start.elapsed() < T, "no {kind} message within {T:?}");
            let (status, m) = poll(http, session, 0);
            if status == 200 {
                assert_eq!(ack(http, session, m["messageId"].as_u64().unwrap()), 204);
                self.0.extend(jobs_of(&m));
            }
        }
    }
}

fn stats(sim: &SimServer, name: &str) -> cml_sim::ScaleSetStatistics {
    sim.scale_sets()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
        .statistics
}

#[test]
fn the_registration_exchange_gives_an_expiring_admin_token_for_its_scope_only() {
    let sim = server();
    let http = Http::new();
    let url = sim.url();
    let token = reg_token(&http, &url, "repos/o/r");
    let exchange = |auth: &str, body: Value| {
        http.call_auth(
            "POST",
            &format!("{url}/api/v3/actions/runner-registration"),
            Some(auth),
            Some(body),
        )
    };
    let body = json!({"url": format!("{url}/o/r"), "runner_event": "register"});
    // The token is a registration token, presented as RemoteAuth, for the URL's scope.
    assert_eq!(
        exchange(&format!("Bearer {DEFAULT_PAT}"), body.clone()).status,
        401
    );
    assert_eq!(exchange("RemoteAuth AWRONGTOKEN", body.clone()).status, 401);
    let other = json!({"url": format!("{url}/o/other"), "runner_event": "register"});
    assert_eq!(exchange(&format!("RemoteAuth {token}"), other).status, 401);
    let bad = exchange(
        &format!("RemoteAuth {token}"),
        json!({"url": format!("{url}/o/r")}),
    );
    assert_eq!(bad.status, 422, "{}", bad.json);
    assert!(sim.scale_sets().is_empty());

    let a = exchange(&format!("RemoteAuth {token}"), body);
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["url"], format!("{url}/_actions/"));
    let admin = a.json["token"].as_str().unwrap().to_string();
    let exp = jwt_claims(&admin)["exp"].as_u64().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 3590..=now + 3610).contains(&exp),
        "exp {exp}, now {now}"
    );
    assert!(sim.issued_secrets().contains(&admin));

    let svc = format!("{url}/_actions/");
    let groups = http.call(
        "GET",
        &format!("{svc}_apis/runtime/runnergroups/?groupName=default"),
        Some(&admin),
        None,
    );
    assert_eq!(groups.status, 200);
    assert_eq!(
        groups.json,
        json!({"count": 1, "value": [{"id": 1, "name": "Default", "size": 0, "isDefaultGroup": true}]})
    );
    let none = http.call(
        "GET",
        &format!("{svc}_apis/runtime/runnergroups/?groupName=gpu"),
        Some(&admin),
        None,
    );
    assert_eq!(none.json["count"], 0);
    // A PAT is not an admin token.
    let pat = http.call(
        "GET",
        &format!("{svc}_apis/runtime/runnergroups/?groupName=default"),
        Some(DEFAULT_PAT),
        None,
    );
    assert_eq!(pat.status, 401);

    // Another scope's admin token does not see this scope's scale sets.
    let set = create_set(
        &http,
        &svc,
        &admin,
        json!({"name": "pool", "runnerGroupId": 1}),
    );
    let (_, other_admin) = admin_token(&http, &url, "o/r2");
    let id = set["id"].as_u64().unwrap();
    let get = |tok: &str| {
        http.call(
            "GET",
            &format!("{svc}_apis/runtime/runnerscalesets/{id}"),
            Some(tok),
            None,
        )
    };
    assert_eq!(get(&admin).status, 200);
    assert_eq!(get(&other_admin).status, 404);

    // Expired: refused until a new exchange.
    sim.expire_actions_admin_tokens();
    let expired = get(&admin);
    assert_eq!(expired.status, 401);
    assert!(expired.json["typeName"]
        .as_str()
        .unwrap()
        .contains("TokenExpiredException"));
    let (_, fresh) = admin_token(&http, &url, "o/r");
    assert_eq!(get(&fresh).status, 200);
}

#[test]
fn scale_sets_are_created_found_patched_and_deleted() {
    let sim = server();
    let http = Http::new();
    let (svc, admin) = admin_token(&http, &sim.url(), "acme");
    let base = format!("{svc}_apis/runtime/runnerscalesets");

    // Bad input: no name, unknown group. Nothing is created.
    for (body, status) in [
        (json!({"runnerGroupId": 1}), 400),
        (json!({"name": "x", "runnerGroupId": 9}), 400),
    ] {
        let a = http.call("POST", &base, Some(&admin), Some(body));
        assert_eq!(a.status, status, "{}", a.json);
        assert!(a.json["message"].as_str().unwrap().len() > 5);
    }
    assert!(sim.scale_sets().is_empty());

    let set = create_set(
        &http,
        &svc,
        &admin,
        json!({"name": "pool", "runnerGroupId": 1,
               "RunnerSetting": {"ephemeral": true, "isElastic": true, "disableUpdate": true}}),
    );
    assert_eq!(set["labels"], json!([{"type": "System", "name": "pool"}]));
    assert_eq!(
        set["RunnerSetting"],
        json!({"ephemeral": true, "isElastic": true, "disableUpdate": true})
    );
    assert_eq!(set["runnerGroupName"], "Default");
    assert_eq!(set["statistics"]["totalAvailableJobs"], 0);
    let id = set["id"].as_u64().unwrap();
    let dup = http.call(
        "POST",
        &base,
        Some(&admin),
        Some(json!({"name": "POOL", "runnerGroupId": 1})),
    );
    assert_eq!(dup.status, 409);
    assert_eq!(sim.scale_sets().len(), 1);

    let found = http.call(
        "GET",
        &format!("{base}?runnerGroupId=1&name=pool"),
        Some(&admin),
        None,
    );
    assert_eq!(found.json["count"], 1);
    assert_eq!(found.json["value"][0]["id"], id);
    let missing = http.call(
        "GET",
        &format!("{base}?runnerGroupId=1&name=other"),
        Some(&admin),
        None,
    );
    assert_eq!(missing.json, json!({"count": 0, "value": []}));

    let patched = http.call(
        "PATCH",
        &format!("{base}/{id}"),
        Some(&admin),
        Some(json!({"labels": [{"name": "pool"}, {"name": "gpu"}]})),
    );
    assert_eq!(patched.status, 200, "{}", patched.json);
    assert_eq!(sim.scale_sets()[0].labels, ["pool", "gpu"]);

    // A job it acquired but no runner took is offered again once it is deleted.
    let q = sim.queue_job("acme/app", "build", &["gpu"], "true");
    let session = open_session(&http, &svc, &admin, id, "p");
    let acquired = http.call(
        "POST",
        &format!("{base}/{id}/acquirejobs"),
        session["messageQueueAccessToken"].as_str(),
        Some(json!([q.job_id])),
    );
    assert_eq!(acquired.json["value"], json!([q.job_id]));
    assert_eq!(
        http.call("DELETE", &format!("{base}/{id}"), Some(&admin), None)
            .status,
        204
    );
    assert_eq!(
        http.call("GET", &format!("{base}/{id}"), Some(&admin), None)
            .status,
        404
    );
    assert!(sim.scale_sets().is_empty());
    assert_eq!(poll(&http, &session, 0).0, 404, "its session went with it");
    let again = create_set(
        &http,
        &svc,
        &admin,
        json!({"name": "gpus", "runnerGroupId": 1, "labels": [{"name": "gpu"}]}),
    );
    let session = open_session(&http, &svc, &admin, again["id"].as_u64().unwrap(), "p");
    let (status, m) = poll(&http, &session, 0);
    assert_eq!(status, 200);
    let offered = jobs_of(&m);
    assert_eq!(offered[0]["messageType"], "JobAvailable");
    assert_eq!(offered[0]["runnerRequestId"], q.job_id);
}

#[test]
fn a_second_session_is_refused_with_a_conflict_until_the_first_is_closed() {
    let sim = server();
    let http = Http::new();
    let (svc, admin) = admin_token(&http, &sim.url(), "o/r");
    let set = create_set(
        &http,
        &svc,
        &admin,
        json!({"name": "pool", "runnerGroupId": 1}),
    );
    let id = set["id"].as_u64().unwrap();
    let sessions = format!("{svc}_apis/runtime/runnerscalesets/{id}/sessions");

    let missing_owner = http.call("POST", &sessions, Some(&admin), Some(json!({})));
    assert_eq!(missing_owner.status, 400);
    let first = open_session(&http, &svc, &admin, id, "pool-a");
    assert_eq!(first["ownerName"], "pool-a");
    assert_eq!(first["runnerScaleSet"]["id"], id);
    assert!(first["statistics"].is_object());
    let second = http.call(
        "POST",
        &sessions,
        Some(&admin),
        Some(json!({"ownerName": "pool-b"})),
    );
    assert_eq!(second.status, 409, "{}", second.json);
    assert!(second.json["typeName"]
        .as_str()
        .unwrap()
        .contains("TaskAgentSessionConflictException"));
    assert!(second.json["message"].as_str().unwrap().contains("pool-a"));
    assert_eq!(sim.scale_sets()[0].session_owners, ["pool-a"]);

    // Refresh: a new queue token; the old one is refused.
    let sid = first["sessionId"].as_str().unwrap();
    let refreshed = http.call("PATCH", &format!("{sessions}/{sid}"), Some(&admin), None);
    assert_eq!(refreshed.status, 200);
    assert_ne!(
        refreshed.json["messageQueueAccessToken"],
        first["messageQueueAccessToken"]
    );
    assert_eq!(poll(&http, &first, 0).0, 401);
    assert_eq!(poll(&http, &refreshed.json, 0).0, 202);

    assert_eq!(
        http.call("DELETE", &format!("{sessions}/{sid}"), Some(&admin), None)
            .status,
        204
    );
    assert_eq!(
        http.call("DELETE", &format!("{sessions}/{sid}"), Some(&admin), None)
            .status,
        404
    );
    let b = open_session(&http, &svc, &admin, id, "pool-b");
    assert_eq!(b["ownerName"], "pool-b");

    // The knob: the next create conflicts even with no session open.
    let sid = b["sessionId"].as_str().unwrap();
    http.call("DELETE", &format!("{sessions}/{sid}"), Some(&admin), None);
    sim.conflict_next_session();
    let c = http.call(
        "POST",
        &sessions,
        Some(&admin),
        Some(json!({"ownerName": "pool-c"})),
    );
    assert_eq!(c.status, 409);
    open_session(&http, &svc, &admin, id, "pool-c");
}

#[test]
fn the_long_poll_is_held_for_the_configured_wait_and_answers_as_soon_as_a_job_comes() {
    let sim = server();
    let http = Http::new();
    let (svc, admin) = admin_token(&http, &sim.url(), "o/r");
    let set = create_set(
        &http,
        &svc,
        &admin,
        json!({"name": "pool", "runnerGroupId": 1}),
    );
    let session = open_session(&http, &svc, &admin, set["id"].as_u64().unwrap(), "p");

    let start = Instant::now();
    let (status, body) = poll(&http, &session, 0);
    let held = start.elapsed();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, Value::Null, "no body");
    assert!(held >= WAIT, "answered after {held:?}");
    assert!(held < WAIT + Duration::from_millis(500), "held {held:?}");

    // A job queued during a poll ends it early.
    let sim_ref = &sim;
    let start = Instant::now();
    let (status, m) = std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            sim_ref.queue_job("o/r", "build", &["pool"], "true");
        });
        poll(&http, &session, 0)
    });
    let took = start.elapsed();
    assert_eq!(status, 200, "{m}");
    assert!(
        took >= Duration::from_millis(200) && took < WAIT,
        "took {took:?}"
    );
    assert_eq!(m["messageType"], "RunnerScaleSetJobMessages");
    assert_eq!(jobs_of(&m)[0]["messageType"], "JobAvailable");

    let bad = http.call(
        "GET",
        &format!(
            "{}?lastMessageId=x",
            session["messageQueueUrl"].as_str().unwrap()
        ),
        session["messageQueueAccessToken"].as_str(),
        None,
    );
    assert_eq!(bad.status, 400);
    // The admin token is not the queue token.
    let wrong = http.call(
        "GET",
        session["messageQueueUrl"].as_str().unwrap(),
        Some(&admin),
        None,
    );
    assert_eq!(wrong.status, 401);
}

#[test]
fn an_unacknowledged_message_is_delivered_again_and_an_acknowledged_one_never() {
    let sim = server();
    let http = Http::new();
    let (svc, admin) = admin_token(&http, &sim.url(), "o/r");
    let set = create_set(
        &http,
        &svc,
        &admin,
        json!({"name": "pool", "runnerGroupId": 1}),
    );
    let session = open_session(&http, &svc, &admin, set["id"].as_u64().unwrap(), "p");
    let q = sim.queue_job("o/r", "build", &["pool"], "true");

    let (s1, m1) = poll(&http, &session, 0);
    assert_eq!(s1, 200);
    let id = m1["messageId"].as_u64().unwrap();
    // Not acknowledged: the same message again, even when told it was seen.
    let (s2, m2) = poll(&http, &session, id);
    assert_eq!(s2, 200);
    assert_eq!(m2["messageId"], id);
    assert_eq!(m2["body"], m1["body"]);
    // A job that comes meanwhile waits behind it, in the next message.
    let q2 = sim.queue_job("o/r", "test", &["pool"], "true");
    assert_eq!(poll(&http, &session, id).1["messageId"], id);
    assert_eq!(ack(&http, &session, id), 204);
    let (s3, m3) = poll(&http, &session, id);
    assert_eq!(s3, 200);
    assert!(m3["messageId"].as_u64().unwrap() > id);
    let jobs = jobs_of(&m3);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["runnerRequestId"], q2.job_id);
    assert_eq!(ack(&http, &session, m3["messageId"].as_u64().unwrap()), 204);
    assert_eq!(poll(&http, &session, 0).0, 202);
    assert_eq!(jobs_of(&m1)[0]["runnerRequestId"], q.job_id);
}

#[test]
fn a_scale_set_job_runs_on_a_jit_runner_with_every_message_and_statistic() {
    let sim = server();
    let http = Http::new();
    let url = sim.url();
    let (svc, admin) = admin_token(&http, &url, "o/r");
    let set = create_set(
        &http,
        &svc,
        &admin,
        json!({"name": "pool", "runnerGroupId": 1}),
    );
    let id = set["id"].as_u64().unwrap();
    // A regular runner with the same label does not take the scale set's job.
    let regular = http.call(
        "POST",
        &format!("{url}/repos/o/r/actions/runners/generate-jitconfig"),
        Some(DEFAULT_PAT),
        Some(json!({"name": "regular", "runner_group_id": 1, "labels": ["pool"]})),
    );
    assert_eq!(regular.status, 201);
    let dir_regular = tempfile::tempdir().unwrap();
    cml_sim::write_agent_scripts(dir_regular.path(), EXE.as_ref()).unwrap();
    let mut regular_agent = Agent::start(
        dir_regular.path(),
        &[
            "--jitconfig",
            regular.json["encoded_jit_config"].as_str().unwrap(),
        ],
        &[],
    );
    regular_agent.expect("Listening for Jobs", T);

    let session = open_session(&http, &svc, &admin, id, "p");
    let mut inbox = Inbox::default();
    let q = sim.queue_job("o/r", "build", &["pool"], "echo from-the-scale-set");
    let other = sim.queue_job("o/r", "elsewhere", &["gpu"], "true");

    let available = inbox.next(&http, &session, "JobAvailable");
    for (k, v) in [
        ("runnerRequestId", json!(q.job_id)),
        ("repositoryName", json!("r")),
        ("ownerName", json!("o")),
        ("jobDisplayName", json!("build")),
        ("workflowRunId", json!(q.run_id)),
        ("eventName", json!("push")),
        ("requestLabels", json!(["pool"])),
        ("scaleSetAssignTime", json!("0001-01-01T00:00:00Z")),
    ] {
        assert_eq!(available[k], v, "{k}: {available}");
    }
    for k in ["jobId", "jobWorkflowRef", "queueTime", "acquireJobUrl"] {
        assert!(!available[k].as_str().unwrap().is_empty(), "{k}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sim.job(q.job_id).unwrap().status,
        "queued",
        "regular runner kept off"
    );
    let s = stats(&sim, "pool");
    assert_eq!(
        (
            s.total_available_jobs,
            s.total_acquired_jobs,
            s.total_assigned_jobs
        ),
        (1, 0, 0)
    );

    // Acquire: with the queue token only; an unknown id is not acquired.
    let acquire_url = format!("{svc}_apis/runtime/runnerscalesets/{id}/acquirejobs");
    let ids = json!([q.job_id, other.job_id, 424242]);
    let by_admin = http.call("POST", &acquire_url, Some(&admin), Some(ids.clone()));
    assert_eq!(by_admin.status, 401);
    let got = http.call(
        "POST",
        &acquire_url,
        session["messageQueueAccessToken"].as_str(),
        Some(ids.clone()),
    );
    assert_eq!(got.status, 200, "{}", got.json);
    assert_eq!(got.json, json!({"count": 1, "value": [q.job_id]}));
    let again = http.call(
        "POST",
        &acquire_url,
        session["messageQueueAccessToken"].as_str(),
        Some(ids),
    );
    assert_eq!(again.json, json!({"count": 0, "value": []}));
    let assigned = inbox.next(&http, &session, "JobAssigned");
    assert_eq!(assigned["runnerRequestId"], q.job_id);
    assert_ne!(assigned["scaleSetAssignTime"], "0001-01-01T00:00:00Z");
    let s = stats(&sim, "pool");
    assert_eq!(
        (
            s.total_available_jobs,
            s.total_acquired_jobs,
            s.total_assigned_jobs,
            s.total_running_jobs
        ),
        (0, 1, 1, 0)
    );

    // A JIT runner of the scale set runs it, once, and goes away.
    let jit = http.call(
        "POST",
        &format!("{svc}_apis/runtime/runnerscalesets/{id}/generatejitconfig"),
        Some(&admin),
        Some(json!({"name": "pool-1", "workFolder": "_work"})),
    );
    assert_eq!(jit.status, 200, "{}", jit.json);
    assert_eq!(jit.json["runner"]["name"], "pool-1");
    assert_eq!(jit.json["runner"]["runnerScaleSetId"], id);
    let dup = http.call(
        "POST",
        &format!("{svc}_apis/runtime/runnerscalesets/{id}/generatejitconfig"),
        Some(&admin),
        Some(json!({"name": "pool-1", "workFolder": "_work"})),
    );
    assert_eq!(dup.status, 409);
    assert!(dup.json["typeName"]
        .as_str()
        .unwrap()
        .contains("AgentExistsException"));
    let by_name = http.call(
        "GET",
        &format!("{svc}_apis/distributedtask/pools/0/agents?agentName=pool-1"),
        Some(&admin),
        None,
    );
    assert_eq!(by_name.json["count"], 1);
    assert_eq!(by_name.json["value"][0]["runnerScaleSetId"], id);
    assert_eq!(stats(&sim, "pool").total_registered_runners, 1);
    assert_eq!(stats(&sim, "pool").total_idle_runners, 1);

    let dir = tempfile::tempdir().unwrap();
    cml_sim::write_agent_scripts(dir.path(), EXE.as_ref()).unwrap();
    let blob = jit.json["encodedJITConfig"].as_str().unwrap();
    let mut agent = Agent::start(dir.path(), &["--jitconfig", blob], &[]);
    let started = inbox.next(&http, &session, "JobStarted");
    assert_eq!(started["runnerName"], "pool-1");
    assert_eq!(started["runnerId"], jit.json["runner"]["id"]);
    agent.expect("Job build completed with result: Succeeded", T);
    assert_eq!(agent.finish(T), 0);
    let completed = inbox.next(&http, &session, "JobCompleted");
    assert_eq!(completed["result"], "succeeded");
    assert_eq!(completed["runnerName"], "pool-1");
    assert_ne!(completed["finishTime"], "0001-01-01T00:00:00Z");
    let job = sim.job(q.job_id).unwrap();
    assert_eq!(job.runner_name.as_deref(), Some("pool-1"));
    assert!(job.output.contains("from-the-scale-set"));
    assert_eq!(stats(&sim, "pool"), cml_sim::ScaleSetStatistics::default());
    assert!(
        sim.runners().iter().all(|r| r.name != "pool-1"),
        "ephemeral"
    );
    assert_eq!(sim.job(other.job_id).unwrap().status, "queued");
    regular_agent.signal(libc::SIGTERM);
    regular_agent.finish(T);
}

#[test]
fn faults_apply_to_the_actions_service_and_a_lost_jit_answer_leaves_a_runner_to_delete() {
    let sim = server();
    let http = Http::new();
    let (svc, admin) = admin_token(&http, &sim.url(), "o/r");
    let set = create_set(
        &http,
        &svc,
        &admin,
        json!({"name": "pool", "runnerGroupId": 1}),
    );
    let id = set["id"].as_u64().unwrap();
    sim.inject_fault(Fault::status(503).path_contains("/runnerscalesets/"));
    let get = || {
        http.call(
            "GET",
            &format!("{svc}_apis/runtime/runnerscalesets/{id}"),
            Some(&admin),
            None,
        )
    };
    assert_eq!(get().status, 503);
    assert_eq!(get().status, 200);
    assert!(sim
        .requests()
        .iter()
        .any(|r| r.path.ends_with(&format!("/runnerscalesets/{id}")) && r.status == 503));

    // A lost answer: the runner was registered even though the caller saw a 502.
    sim.inject_fault(
        Fault::status(502)
            .path_contains("generatejitconfig")
            .after_serving(),
    );
    let jit = http.call(
        "POST",
        &format!("{svc}_apis/runtime/runnerscalesets/{id}/generatejitconfig"),
        Some(&admin),
        Some(json!({"name": "lost", "workFolder": "_work"})),
    );
    assert_eq!(jit.status, 502);
    let agents = format!("{svc}_apis/distributedtask/pools/0/agents");
    let found = http.call(
        "GET",
        &format!("{agents}?agentName=lost"),
        Some(&admin),
        None,
    );
    let rid = found.json["value"][0]["id"].as_u64().unwrap();
    assert_eq!(
        http.call("GET", &format!("{agents}/{rid}"), Some(&admin), None)
            .json["name"],
        "lost"
    );
    assert_eq!(
        http.call("DELETE", &format!("{agents}/{rid}"), Some(&admin), None)
            .status,
        204
    );
    let gone = http.call("DELETE", &format!("{agents}/{rid}"), Some(&admin), None);
    assert_eq!(gone.status, 404);
    assert!(gone.json["typeName"]
        .as_str()
        .unwrap()
        .contains("AgentNotFoundException"));
    assert_eq!(sim.deletes().last().unwrap().1, "lost");
}

#[test]
fn the_session_of_a_listener_that_stopped_using_it_expires_and_frees_the_scale_set() {
    let mut cfg = SimConfig::new(EXE);
    cfg.actions_message_wait = WAIT;
    cfg.actions_session_expiry = Duration::from_millis(500);
    let sim = SimServer::start(cfg).unwrap();
    let http = Http::new();
    let (svc, admin) = admin_token(&http, &sim.url(), "o/r");
    let set = create_set(
        &http,
        &svc,
        &admin,
        json!({"name": "pool", "runnerGroupId": 1}),
    );
    let id = set["id"].as_u64().unwrap();
    let sessions = format!("{svc}_apis/runtime/runnerscalesets/{id}/sessions");
    let second = |owner: &str| {
        http.call(
            "POST",
            &sessions,
            Some(&admin),
            Some(json!({"ownerName": owner})),
        )
    };
    let alive = open_session(&http, &svc, &admin, id, "alive");
    // A long poll (longer than the expiry) keeps the session: it is in use.
    assert_eq!(poll(&http, &alive, 0).0, 202);
    assert_eq!(second("other").status, 409);
    // Unused past the expiry: dropped, and the scale set is free.
    std::thread::sleep(Duration::from_millis(700));
    let taken = second("other");
    assert_eq!(taken.status, 200, "{}", taken.json);
    assert_eq!(sim.scale_sets()[0].session_owners, ["other"]);
    assert_eq!(poll(&http, &alive, 0).0, 404);
}

#[test]
fn a_jit_runner_of_a_scale_set_takes_exactly_one_of_its_acquired_jobs() {
    let sim = server();
    let http = Http::new();
    let (svc, admin) = admin_token(&http, &sim.url(), "o/r");
    let set = create_set(
        &http,
        &svc,
        &admin,
        json!({"name": "pool", "runnerGroupId": 1}),
    );
    let id = set["id"].as_u64().unwrap();
    let session = open_session(&http, &svc, &admin, id, "p");
    let a = sim.queue_job("o/r", "first", &["pool"], "true");
    let b = sim.queue_job("o/r", "second", &["pool"], "true");
    // Offered but not acquired: no runner of the scale set takes it.
    let early = http.call(
        "POST",
        &format!("{svc}_apis/runtime/runnerscalesets/{id}/generatejitconfig"),
        Some(&admin),
        Some(json!({"name": "early", "workFolder": "_work"})),
    );
    let dir = tempfile::tempdir().unwrap();
    cml_sim::write_agent_scripts(dir.path(), EXE.as_ref()).unwrap();
    let blob = |a: &common::Answer| a.json["encodedJITConfig"].as_str().unwrap().to_string();
    let mut agent = Agent::start(dir.path(), &["--jitconfig", &blob(&early)], &[]);
    agent.expect("Listening for Jobs", T);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sim.job(a.job_id).unwrap().status, "queued");
    assert_eq!(stats(&sim, "pool").total_available_jobs, 2);

    let got = http.call(
        "POST",
        &format!("{svc}_apis/runtime/runnerscalesets/{id}/acquirejobs"),
        session["messageQueueAccessToken"].as_str(),
        Some(json!([a.job_id, b.job_id])),
    );
    assert_eq!(got.json["count"], 2);
    agent.expect("completed with result: Succeeded", T);
    assert_eq!(agent.finish(T), 0, "one job, then it is gone");
    let done: Vec<_> = [a.job_id, b.job_id]
        .iter()
        .filter(|j| sim.job(**j).unwrap().status == "completed")
        .copied()
        .collect();
    assert_eq!(done.len(), 1, "exactly one job ran");
    let s = stats(&sim, "pool");
    assert_eq!(
        (
            s.total_acquired_jobs,
            s.total_assigned_jobs,
            s.total_registered_runners
        ),
        (1, 1, 0)
    );

    let second = http.call(
        "POST",
        &format!("{svc}_apis/runtime/runnerscalesets/{id}/generatejitconfig"),
        Some(&admin),
        Some(json!({"name": "second", "workFolder": "_work"})),
    );
    let dir = tempfile::tempdir().unwrap();
    cml_sim::write_agent_scripts(dir.path(), EXE.as_ref()).unwrap();
    let mut agent = Agent::start(dir.path(), &["--jitconfig", &blob(&second)], &[]);
    agent.expect("completed with result: Succeeded", T);
    assert_eq!(agent.finish(T), 0);
    for j in [a.job_id, b.job_id] {
        assert_eq!(sim.job(j).unwrap().status, "completed");
    }
    assert_eq!(stats(&sim, "pool"), cml_sim::ScaleSetStatistics::default());
}

#[test]
fn a_cancelled_job_of_a_scale_set_completes_as_canceled() {
    let sim = server();
    let http = Http::new();
    let url = sim.url();
    let (svc, admin) = admin_token(&http, &url, "o/r");
    let set = create_set(
        &http,
        &svc,
        &admin,
        json!({"name": "pool", "runnerGroupId": 1}),
    );
    let session = open_session(&http, &svc, &admin, set["id"].as_u64().unwrap(), "p");
    let q = sim.queue_job("o/r", "build", &["pool"], "true");
    let mut inbox = Inbox::default();
    inbox.next(&http, &session, "JobAvailable");
    let cancel = http.call(
        "POST",
        &format!("{url}/repos/o/r/actions/runs/{}/cancel", q.run_id),
        Some(DEFAULT_PAT),
        None,
    );
    assert_eq!(cancel.status, 202);
    let done = inbox.next(&http, &session, "JobCompleted");
    assert_eq!(done["runnerRequestId"], q.job_id);
    assert_eq!(done["result"], "canceled");
    assert_eq!(stats(&sim, "pool"), cml_sim::ScaleSetStatistics::default());
}
