//! The scale-set client against the simulated Actions service: the whole protocol from a
//! PAT to a job run by a JIT runner, session conflicts, token refresh, retries, and the
//! requests that must not be sent twice.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cml_core::{RepoUrl, Secret};
use cml_forge::github::scaleset::{
    JobMessage, ScaleSetClient, ScaleSetError, Session, Statistics, DEFAULT_RUNNER_GROUP,
};
use cml_forge::github::{GithubAuth, GithubClient};
use cml_forge::{Deleted, RetryPolicy};
use cml_sim::{Fault, Pat, SimConfig, SimServer, DEFAULT_PAT};

const T: Duration = Duration::from_secs(20);

fn config() -> SimConfig {
    // The simulated agent runs in this process (see `run_agent`).
    let mut cfg = SimConfig::new(PathBuf::from("/bin/false"));
    cfg.actions_message_wait = Duration::from_millis(300);
    cfg
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    }
}

fn client(sim: &SimServer, path: &str, token: &str) -> ScaleSetClient {
    let url = RepoUrl::parse(&format!("{}/{path}", sim.url())).unwrap();
    let auth = GithubAuth::Token {
        token: Secret::new(token),
        source: "REPO_TOKEN".into(),
    };
    let github = GithubClient::new(&url, auth, retry()).unwrap();
    ScaleSetClient::new(Arc::new(github), retry(), Duration::from_secs(5)).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `cml-sim agent run --jitconfig BLOB` in this process (in its own directory, on its
/// own thread); returns its exit code.
fn run_agent(blob: &str) -> (std::thread::JoinHandle<i32>, PathBuf) {
    let dir = tempfile_dir();
    // Only this test of the binary starts an agent; the variable is read by the agent only.
    std::env::set_var("CML_SIM_AGENT_ROOT", &dir);
    let args = vec!["run".to_string(), "--jitconfig".into(), blob.to_string()];
    (std::thread::spawn(move || cml_sim::agent::main(args)), dir)
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cml-forge-scaleset-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Job messages read from the queue (acknowledged) and not yet looked at, each with the
/// statistics of its message.
#[derive(Default)]
struct Inbox {
    last: u64,
    pending: Vec<(Option<Statistics>, JobMessage)>,
}

impl Inbox {
    /// The first job message `want` accepts, reading (and acknowledging) messages until one
    /// comes.
    async fn next(
        &mut self,
        c: &ScaleSetClient,
        session: &mut Session,
        want: impl Fn(&JobMessage) -> bool,
    ) -> (Option<Statistics>, JobMessage) {
        let start = Instant::now();
        loop {
            if let Some(i) = self.pending.iter().position(|(_, j)| want(j)) {
                return self.pending.remove(i);
            }
            assert!(start.elapsed() < T, "no such job message within {T:?}");
            if let Some(m) = c.get_message(session, self.last, 4).await.unwrap() {
                self.last = m.id;
                c.ack(session, m.id).await.unwrap();
                let stats = m.statistics;
                self.pending.extend(m.jobs.into_iter().map(|j| (stats, j)));
            }
        }
    }
}

fn count(sim: &SimServer, method: &str, path_part: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == method && r.path.contains(path_part))
        .count()
}

fn assert_no_secret(sim: &SimServer, text: &str) {
    for s in sim.issued_secrets() {
        assert!(!text.contains(&s), "a secret leaked into: {text}");
    }
}

#[test]
fn the_whole_protocol_from_a_pat_to_a_job_run_by_a_jit_runner() {
    let sim = SimServer::start(config()).unwrap();
    let c = client(&sim, "o/r", DEFAULT_PAT);
    rt().block_on(async {
        let set = c
            .get_or_create_scale_set("pool", &[], DEFAULT_RUNNER_GROUP)
            .await
            .unwrap();
        assert_eq!(set.name, "pool");
        assert_eq!(set.labels[0].name, "pool");
        // Found, not created again.
        let again = c
            .get_or_create_scale_set("pool", &[], DEFAULT_RUNNER_GROUP)
            .await
            .unwrap();
        assert_eq!(again.id, set.id);
        assert_eq!(sim.scale_sets().len(), 1);

        let mut session = c.create_session(&set, "pool-host-1").await.unwrap();
        assert_eq!(session.owner, "pool-host-1");
        assert_eq!(session.statistics.unwrap().total_available_jobs, 0);
        // Nothing to say: the poll ends empty.
        assert_eq!(c.get_message(&mut session, 0, 4).await.unwrap(), None);
        assert_eq!(sim.scale_sets()[0].max_capacity, Some(4));

        let q = sim.queue_job("o/r", "build", &["pool"], "sleep 1; echo via-scale-set");
        let mut inbox = Inbox::default();
        let (stats, available) = inbox
            .next(&c, &mut session, |j| {
                matches!(j, JobMessage::Available { .. })
            })
            .await;
        assert_eq!(stats.unwrap().total_available_jobs, 1);
        let job = available.job().clone();
        assert_eq!(job.runner_request_id, q.job_id as i64);
        assert_eq!(job.request_labels, ["pool"]);
        assert_eq!(
            (job.owner_name.as_str(), job.repository_name.as_str()),
            ("o", "r")
        );
        assert_eq!(job.job_display_name, "build");

        let got = c
            .acquire_jobs(&mut session, &[job.runner_request_id])
            .await
            .unwrap();
        assert_eq!(got, [job.runner_request_id]);
        let (stats, _) = inbox
            .next(&c, &mut session, |j| {
                matches!(j, JobMessage::Assigned { .. })
            })
            .await;
        assert_eq!(stats.unwrap().total_assigned_jobs, 1);

        let runner = c
            .generate_jit_config(&set, "pool-1", "_work")
            .await
            .unwrap();
        assert_eq!(runner.name, "pool-1");
        assert_eq!(runner.scale_set_id, set.id);
        let debug = format!("{runner:?} {session:?} {c:?}");
        assert_no_secret(&sim, &debug);
        assert!(!debug.contains(runner.config.expose()));
        assert!(c.secrets().contains(&runner.config.expose().to_string()));

        let (agent, dir) = run_agent(runner.config.expose());
        let (_, started) = inbox
            .next(&c, &mut session, |j| {
                matches!(j, JobMessage::Started { .. })
            })
            .await;
        let JobMessage::Started {
            runner_id,
            runner_name,
            ..
        } = started
        else {
            unreachable!()
        };
        assert_eq!((runner_id, runner_name.as_str()), (runner.id, "pool-1"));
        // Running its job: not deleted.
        let busy = c.delete_runner(runner.id).await.unwrap();
        assert!(
            matches!(busy, Deleted::Busy(ref m) if m.contains("pool-1")),
            "{busy:?}"
        );
        let (_, completed) = inbox
            .next(&c, &mut session, |j| {
                matches!(j, JobMessage::Completed { .. })
            })
            .await;
        let JobMessage::Completed { result, job, .. } = completed else {
            unreachable!()
        };
        assert_eq!(result, "succeeded");
        assert_eq!(job.runner_request_id, q.job_id as i64);
        assert_eq!(
            agent.join().unwrap(),
            0,
            "the JIT runner exits after its job"
        );
        let _ = std::fs::remove_dir_all(dir);
        let s = sim.scale_sets()[0].statistics;
        assert_eq!((s.total_assigned_jobs, s.total_registered_runners), (0, 0));
        let done = sim.job(q.job_id).unwrap();
        assert_eq!(done.runner_name.as_deref(), Some("pool-1"));
        assert!(done.output.contains("via-scale-set"));
        // Ephemeral: it went away by itself.
        assert_eq!(c.get_runner_by_name("pool-1").await.unwrap(), None);
        assert_eq!(
            c.delete_runner(runner.id).await.unwrap(),
            Deleted::AlreadyGone
        );

        c.delete_session(&session).await.unwrap();
        assert!(sim.scale_sets()[0].session_owners.is_empty());
        c.delete_scale_set(&set).await.unwrap();
        assert!(sim.scale_sets().is_empty());
    });
}

#[test]
fn a_second_pool_on_the_same_scale_set_gets_the_session_conflict() {
    let sim = SimServer::start(config()).unwrap();
    let a = client(&sim, "acme", DEFAULT_PAT);
    let b = client(&sim, "acme", DEFAULT_PAT);
    rt().block_on(async {
        let labels = ["gpu".to_string(), "linux".to_string()];
        let set = a
            .get_or_create_scale_set("pool", &labels, DEFAULT_RUNNER_GROUP)
            .await
            .unwrap();
        assert_eq!(sim.scale_sets()[0].labels, ["gpu", "linux"]);
        // Other labels: the same scale set, its labels set.
        let relabelled = b
            .get_or_create_scale_set("pool", &["gpu".to_string()], DEFAULT_RUNNER_GROUP)
            .await
            .unwrap();
        assert_eq!(relabelled.id, set.id);
        assert_eq!(sim.scale_sets()[0].labels, ["gpu"]);
        assert_eq!(count(&sim, "PATCH", "/runnerscalesets/"), 1);
        let first = a.create_session(&set, "host-a").await.unwrap();
        let e = b.create_session(&set, "host-b").await.unwrap_err();
        assert!(matches!(e, ScaleSetError::SessionConflict { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("another pool owns runner scale set pool"),
            "{msg}"
        );
        assert!(msg.contains("host-a"), "{msg}");
        assert!(msg.contains("hint: stop the other pool"), "{msg}");
        assert_no_secret(&sim, &msg);
        assert_eq!(sim.scale_sets()[0].session_owners, ["host-a"]);

        a.delete_session(&first).await.unwrap();
        let second = b.create_session(&set, "host-b").await.unwrap();
        assert_eq!(second.owner, "host-b");

        // The service's knob: a conflict with no session of ours open.
        b.delete_session(&second).await.unwrap();
        sim.conflict_next_session();
        let e = a.create_session(&set, "host-a").await.unwrap_err();
        assert!(matches!(e, ScaleSetError::SessionConflict { .. }), "{e:?}");
        // Sent once: a conflict is not retried blindly.
        assert_eq!(count(&sim, "POST", "/sessions"), 4);
    });
}

#[test]
fn the_admin_token_is_refreshed_before_it_expires_and_after_a_refusal() {
    let mut cfg = config();
    cfg.actions_admin_token_ttl = Duration::from_secs(4);
    let sim = SimServer::start(cfg).unwrap();
    let c = client(&sim, "o/r", DEFAULT_PAT);
    let exchanges = || count(&sim, "POST", "/actions/runner-registration");
    let refused = || {
        sim.requests()
            .iter()
            .filter(|r| r.path.starts_with("/_actions/") && r.status == 401)
            .count()
    };
    rt().block_on(async {
        let set = c
            .get_or_create_scale_set("pool", &[], DEFAULT_RUNNER_GROUP)
            .await
            .unwrap();
        assert_eq!(exchanges(), 1);
        c.get_runner_by_name("nobody").await.unwrap();
        assert_eq!(exchanges(), 1, "a fresh token is reused");
        // Refreshed a quarter of its life (1 s) before it expires: no call is refused.
        tokio::time::sleep(Duration::from_millis(3200)).await;
        c.get_runner_by_name("nobody").await.unwrap();
        assert_eq!(exchanges(), 2);
        assert_eq!(refused(), 0);

        // Revoked early: the refused call is made again with a new token.
        sim.expire_actions_admin_tokens();
        let mut session = c.create_session(&set, "host").await.unwrap();
        assert_eq!(exchanges(), 3);
        assert_eq!(refused(), 1);
        assert_eq!(count(&sim, "POST", "/sessions"), 2, "refused, then made");

        // A rotated queue token: the session is refreshed and the poll made again.
        sim.expire_message_queue_tokens();
        assert_eq!(c.get_message(&mut session, 0, 1).await.unwrap(), None);
        assert_eq!(count(&sim, "PATCH", "/sessions/"), 1);
        for s in c.secrets() {
            assert!(sim.issued_secrets().contains(&s));
        }
    });
}

#[test]
fn a_failing_idempotent_call_is_retried() {
    let sim = SimServer::start(config()).unwrap();
    let c = client(&sim, "o/r", DEFAULT_PAT);
    rt().block_on(async {
        sim.inject_fault(
            Fault::status(503)
                .method("GET")
                .path_contains("/runnergroups")
                .times(2),
        );
        let set = c
            .get_or_create_scale_set("pool", &[], DEFAULT_RUNNER_GROUP)
            .await
            .unwrap();
        assert_eq!(count(&sim, "GET", "/runnergroups"), 3);
        let mut session = c.create_session(&set, "host").await.unwrap();
        sim.inject_fault(Fault::status(502).method("GET").path_contains("/messages"));
        assert_eq!(c.get_message(&mut session, 0, 1).await.unwrap(), None);
        assert_eq!(count(&sim, "GET", "/messages"), 2);
    });
}

#[test]
fn a_lost_answer_to_an_acquisition_is_not_sent_again() {
    let sim = SimServer::start(config()).unwrap();
    let c = client(&sim, "o/r", DEFAULT_PAT);
    rt().block_on(async {
        let set = c
            .get_or_create_scale_set("pool", &[], DEFAULT_RUNNER_GROUP)
            .await
            .unwrap();
        let mut session = c.create_session(&set, "host").await.unwrap();
        let q = sim.queue_job("o/r", "build", &["pool"], "true");
        let mut inbox = Inbox::default();
        inbox
            .next(&c, &mut session, |j| {
                matches!(j, JobMessage::Available { .. })
            })
            .await;
        sim.inject_fault(
            Fault::status(502)
                .path_contains("/acquirejobs")
                .after_serving(),
        );
        let e = c
            .acquire_jobs(&mut session, &[q.job_id as i64])
            .await
            .unwrap_err();
        assert!(matches!(e, ScaleSetError::AcquireJobs { .. }), "{e:?}");
        assert!(e.api().unwrap().may_have_taken_effect(), "{e}");
        assert!(e.to_string().contains("JobAssigned"), "{e}");
        assert_eq!(count(&sim, "POST", "/acquirejobs"), 1, "sent once");
        // The service did acquire it: the queue says so.
        let (stats, assigned) = inbox
            .next(&c, &mut session, |j| {
                matches!(j, JobMessage::Assigned { .. })
            })
            .await;
        assert_eq!(assigned.job().runner_request_id, q.job_id as i64);
        assert_eq!(stats.unwrap().total_assigned_jobs, 1);
        assert_eq!(count(&sim, "POST", "/acquirejobs"), 1);
    });
}

#[test]
fn lost_answers_to_creations_are_looked_up_not_repeated() {
    let sim = SimServer::start(config()).unwrap();
    let c = client(&sim, "o/r", DEFAULT_PAT);
    rt().block_on(async {
        sim.inject_fault(
            Fault::status(502)
                .method("POST")
                .path_contains("/runnerscalesets")
                .after_serving(),
        );
        let set = c
            .get_or_create_scale_set("pool", &[], DEFAULT_RUNNER_GROUP)
            .await
            .unwrap();
        assert_eq!(sim.scale_sets().len(), 1);
        assert_eq!(sim.scale_sets()[0].id, set.id);
        assert_eq!(count(&sim, "POST", "/runnerscalesets"), 1);

        // The JIT configuration is lost: the runner the service registered is deleted.
        sim.inject_fault(
            Fault::status(502)
                .path_contains("/generatejitconfig")
                .after_serving(),
        );
        let e = c
            .generate_jit_config(&set, "pool-1", "_work")
            .await
            .unwrap_err();
        assert!(matches!(e, ScaleSetError::JitConfigLost { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("runner pool-1"), "{msg}");
        assert!(msg.contains("was deleted"), "{msg}");
        assert_no_secret(&sim, &msg);
        assert_eq!(count(&sim, "POST", "/generatejitconfig"), 1);
        assert!(sim.runners().iter().all(|r| r.name != "pool-1"));
        assert_eq!(sim.deletes().last().unwrap().1, "pool-1");
        // The name is free again.
        c.generate_jit_config(&set, "pool-1", "_work")
            .await
            .unwrap();
    });
}

#[test]
fn bad_credentials_and_groups_fail_naming_the_fix_and_create_nothing() {
    let mut cfg = config();
    cfg.pats.push(Pat {
        token: "ghp_readonly".into(),
        admin: false,
    });
    let sim = SimServer::start(cfg).unwrap();
    rt().block_on(async {
        let e = client(&sim, "o/r", "ghp_readonly")
            .get_or_create_scale_set("pool", &[], DEFAULT_RUNNER_GROUP)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ScaleSetError::RegistrationToken { .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("GitHub repository o/r"), "{msg}");
        assert!(msg.contains("hint:"), "{msg}");

        let e = client(&sim, "o/r", DEFAULT_PAT)
            .get_or_create_scale_set("pool", &[], "gpu-machines")
            .await
            .unwrap_err();
        assert!(matches!(e, ScaleSetError::NoRunnerGroup { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("no runner group named \"gpu-machines\""),
            "{msg}"
        );
        assert!(msg.contains("hint: create it"), "{msg}");
        assert_no_secret(&sim, &msg);
        let c = client(&sim, "o/r", DEFAULT_PAT);
        for (name, labels, value) in [
            ("", vec![], "\"\""),
            ("my pool", vec![], "\"my pool\""),
            ("pool", vec![" ".to_string()], "\" \""),
        ] {
            let e = c
                .get_or_create_scale_set(name, &labels, DEFAULT_RUNNER_GROUP)
                .await
                .unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, ScaleSetError::BadName { .. }), "{e:?}");
            assert!(
                msg.contains(value) && msg.contains("hint: use a name"),
                "{msg}"
            );
        }
        assert!(sim.scale_sets().is_empty());
        assert_eq!(count(&sim, "POST", "/runnerscalesets"), 0);
    });
}

#[test]
fn the_scale_set_of_a_pool_that_died_is_taken_once_its_session_expires() {
    let mut cfg = config();
    cfg.actions_session_expiry = Duration::from_millis(500);
    let sim = SimServer::start(cfg).unwrap();
    let dead = client(&sim, "o/r", DEFAULT_PAT);
    let next = client(&sim, "o/r", DEFAULT_PAT);
    rt().block_on(async {
        let set = dead
            .get_or_create_scale_set("pool", &[], DEFAULT_RUNNER_GROUP)
            .await
            .unwrap();
        let _abandoned = dead.create_session(&set, "dead-host").await.unwrap();
        let e = next.create_session(&set, "next-host").await.unwrap_err();
        assert!(matches!(e, ScaleSetError::SessionConflict { .. }), "{e:?}");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let s = next.create_session(&set, "next-host").await.unwrap();
        assert_eq!(s.owner, "next-host");
    });
}
