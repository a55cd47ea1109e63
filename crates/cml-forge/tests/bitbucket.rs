//! The Bitbucket client against the simulated Bitbucket.

use cml_core::{Labels, RepoUrl, Secret};
use cml_forge::bitbucket::BitbucketClient;
use cml_forge::{Deleted, Forge, ForgeError, Registration};
use cml_sim::bitbucket::{token_for, Credential, DEFAULT_BITBUCKET_TOKEN};
use cml_sim::{Fault, SimServer};

mod common;

use common::{quick_retries, rt, sim_with};
use std::time::Duration;

async fn connect(sim: &SimServer, token: &str) -> Result<BitbucketClient, ForgeError> {
    let url = RepoUrl::parse("https://bitbucket.org/octo/app").unwrap();
    let retry = quick_retries();
    BitbucketClient::connect(
        &url,
        Secret::new(token),
        "BITBUCKET_TOKEN",
        &sim.url(),
        retry,
    )
    .await
}

#[test]
fn registration_listing_pagination_and_deletion() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, DEFAULT_BITBUCKET_TOKEN)
            .await
            .unwrap()
            .with_runtime_label("linux.shell");
        assert!(c.repository_uuid().starts_with('{') && c.account_uuid().starts_with('{'));
        let Registration::Bitbucket {
            runner_uuid,
            oauth_client_secret,
            repository_uuid,
            ..
        } = c
            .registration("r0", &Labels::parse("gpu,self.hosted"))
            .await
            .unwrap()
        else {
            panic!("a Bitbucket registration")
        };
        assert_eq!(repository_uuid, c.repository_uuid());
        assert!(c
            .secrets()
            .contains(&oauth_client_secret.expose().to_string()));
        assert!(!format!("{c:?}").contains(DEFAULT_BITBUCKET_TOKEN));
        for i in 1..=120 {
            c.registration(&format!("r{i}"), &Labels::parse("x"))
                .await
                .unwrap();
        }
        let all = c.runners().await.unwrap();
        assert_eq!(all.len(), 121, "all pages followed");
        let r0 = all.iter().find(|r| r.name == "r0").unwrap();
        assert_eq!(r0.id, runner_uuid);
        assert_eq!(r0.labels, ["self.hosted", "linux.shell", "gpu"]);
        assert!(!r0.online && !r0.busy);
        assert_eq!(
            c.delete_runner(&runner_uuid, "r0").await.unwrap(),
            Deleted::Removed
        );
        assert_eq!(
            c.delete_runner(&runner_uuid, "r0").await.unwrap(),
            Deleted::AlreadyGone
        );
        assert_eq!(sim.bitbucket_deletes().len(), 1);
    });
}

#[test]
fn a_runner_running_a_step_is_not_deleted() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, DEFAULT_BITBUCKET_TOKEN).await.unwrap();
        let Registration::Bitbucket {
            runner_uuid,
            oauth_client_id,
            oauth_client_secret,
            ..
        } = c.registration("busy", &Labels::parse("t")).await.unwrap()
        else {
            panic!()
        };
        let step = sim.bitbucket_queue_job("octo/app", "long", &["t"], "sleep 1");
        let resp = reqwest::Client::new()
            .post(format!("{}/_sim/bitbucket/runner/next", sim.url()))
            .json(&serde_json::json!({"runner_uuid": runner_uuid, "client_id": oauth_client_id, "client_secret": oauth_client_secret.expose()}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        match c.delete_runner(&runner_uuid, "busy").await.unwrap() {
            Deleted::Busy(m) => assert!(m.contains(&step), "{m}"),
            other => panic!("deleted a busy runner: {other:?}"),
        }
        let runners = c.runners().await.unwrap();
        assert!(runners[0].online && runners[0].busy, "{runners:?}");
        assert!(sim.bitbucket_deletes().is_empty());
    });
}

#[test]
fn rejected_credentials_name_their_source_and_server_errors_are_retried() {
    let readonly = token_for("reader", "readonlypassword");
    let sim = sim_with(|c| {
        c.bitbucket.credentials.push(Credential {
            token: readonly.clone(),
            admin: false,
        })
    });
    rt().block_on(async {
        let wrong = token_for("someone", "wrongpassword");
        let e = connect(&sim, &wrong).await.unwrap_err();
        let msg = e.to_string();
        assert!(e.is_auth(), "{msg}");
        assert!(
            msg.contains("rejected the token from BITBUCKET_TOKEN"),
            "{msg}"
        );
        assert!(msg.contains("hint:") && !msg.contains(&wrong), "{msg}");

        let c = connect(&sim, &readonly).await.unwrap();
        let e = c.registration("x", &Labels::parse("a")).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("refused the token from BITBUCKET_TOKEN (403"),
            "{e}"
        );
        assert!(sim.bitbucket_registered_names().is_empty());

        sim.inject_fault(Fault::status(503).path_contains("/runners").times(2));
        sim.inject_fault(Fault::status(429).method("POST").retry_after(1));
        let c = connect(&sim, DEFAULT_BITBUCKET_TOKEN).await.unwrap();
        assert!(c.runners().await.unwrap().is_empty());
        c.registration("y", &Labels::parse("a")).await.unwrap();
        let statuses: Vec<u16> = sim.requests().iter().map(|q| q.status).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 2);
        assert!(statuses.contains(&429));
        assert_eq!(sim.bitbucket_registered_names(), ["y"]);
    });
}

#[test]
fn two_runners_interrupted_in_one_pipeline_start_one_new_pipeline() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, DEFAULT_BITBUCKET_TOKEN).await.unwrap();
        let Registration::Bitbucket {
            runner_uuid,
            oauth_client_id,
            oauth_client_secret,
            ..
        } = c.registration("r1", &Labels::parse("t")).await.unwrap()
        else {
            panic!()
        };
        let step = sim.bitbucket_queue_job("octo/app", "train", &["t"], "sleep 1");
        let auth = serde_json::json!({"runner_uuid": runner_uuid, "client_id": oauth_client_id, "client_secret": oauth_client_secret.expose()});
        let http = reqwest::Client::new();
        let call = |action: &str, extra: serde_json::Value| {
            let mut body = auth.clone();
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            http.post(format!("{}/_sim/bitbucket/runner/{action}", sim.url()))
                .json(&body)
                .send()
        };
        assert_eq!(call("next", serde_json::json!({})).await.unwrap().status().as_u16(), 200);
        // Not re-run while the pipeline runs; bounded wait.
        assert!(matches!(
            c.rerun_interrupted("r1", &step, Duration::from_millis(100)).await.unwrap(),
            cml_forge::Rerun::StillRunning(_)
        ));
        call("result", serde_json::json!({"step_uuid": step, "status": "STOPPED"}))
            .await
            .unwrap();
        // Two interrupted runners of this pipeline ask: one new pipeline.
        let first = c.rerun_interrupted("r1", &step, Duration::from_secs(5)).await.unwrap();
        let second = c.rerun_interrupted("r2", &step, Duration::from_secs(5)).await.unwrap();
        assert!(matches!(first, cml_forge::Rerun::Requested(_)), "{first:?}");
        assert!(matches!(second, cml_forge::Rerun::AlreadyRerun(_)), "{second:?}");
        assert_eq!(sim.bitbucket_reruns().len(), 1);
        // A step nobody knows: nothing to re-run.
        assert_eq!(
            c.rerun_interrupted("r1", "{unknown}", Duration::from_secs(1)).await.unwrap(),
            cml_forge::Rerun::NothingToRerun
        );
    });
}

/// A registered runner: its uuid and the body that authenticates it as its agent.
async fn register(c: &BitbucketClient, name: &str, labels: &str) -> (String, serde_json::Value) {
    let Registration::Bitbucket {
        runner_uuid,
        oauth_client_id,
        oauth_client_secret,
        ..
    } = c.registration(name, &Labels::parse(labels)).await.unwrap()
    else {
        panic!("a Bitbucket registration")
    };
    let auth = serde_json::json!({"runner_uuid": runner_uuid, "client_id": oauth_client_id, "client_secret": oauth_client_secret.expose()});
    (runner_uuid, auth)
}

#[test]
fn a_step_given_after_the_state_read_is_not_orphaned_by_the_deletion() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, DEFAULT_BITBUCKET_TOKEN).await.unwrap();
        let (uuid, _) = register(&c, "racy", "t").await;
        // The runner's request for a step is processed right after its state was read.
        let step = sim.bitbucket_race(
            cml_sim::bitbucket::Race::AfterStateRead,
            "octo/app",
            "late",
            &["t"],
            "true",
        );
        assert_eq!(
            c.delete_runner(&uuid, "racy").await.unwrap(),
            Deleted::Removed
        );
        // The runner was disabled before its state was read: the step could not be given to
        // it and waits for another runner, instead of running on a deleted one.
        let s = sim.bitbucket_job(&step).unwrap();
        assert_eq!(s.state, cml_sim::JobState::Queued, "{s:?}");
        assert_eq!(s.runner_name, None);
    });
}

#[test]
fn a_step_given_as_the_runner_is_disabled_keeps_the_runner_and_enables_it_again() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, DEFAULT_BITBUCKET_TOKEN).await.unwrap();
        let (uuid, auth) = register(&c, "racy", "t").await;
        let step = sim.bitbucket_race(
            cml_sim::bitbucket::Race::BeforeDisable,
            "octo/app",
            "late",
            &["t"],
            "true",
        );
        match c.delete_runner(&uuid, "racy").await.unwrap() {
            Deleted::Busy(m) => assert!(m.contains(&step), "{m}"),
            other => panic!("deleted a runner that had just been given a step: {other:?}"),
        }
        assert!(sim.bitbucket_deletes().is_empty());
        assert_eq!(sim.bitbucket_runner_disabled(&uuid), Some(false));
        // Its agent gets the step on its next request.
        let next: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/_sim/bitbucket/runner/next", sim.url()))
            .json(&auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(next["step_uuid"], step.as_str());
    });
}

#[test]
fn a_failed_deletion_enables_the_runner_again_and_a_stopped_runner_is_deleted_whatever_it_runs() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, DEFAULT_BITBUCKET_TOKEN).await.unwrap();
        let (uuid, auth) = register(&c, "kept", "t").await;
        sim.inject_fault(Fault::status(503).method("DELETE").times(5));
        let e = c.delete_runner(&uuid, "kept").await.unwrap_err();
        assert!(e.to_string().contains("deleting runner kept"), "{e}");
        assert_eq!(sim.bitbucket_runner_disabled(&uuid), Some(false));
        assert!(sim.bitbucket_deletes().is_empty());

        // Its agent takes a step, then is killed: the runner is deleted anyway.
        sim.bitbucket_queue_job("octo/app", "long", &["t"], "sleep 1");
        let resp = reqwest::Client::new()
            .post(format!("{}/_sim/bitbucket/runner/next", sim.url()))
            .json(&auth)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            c.delete_stopped_runner(&uuid, "kept").await.unwrap(),
            Deleted::Removed
        );
        assert_eq!(sim.bitbucket_deletes().len(), 1);
    });
}

#[test]
fn lost_answers_create_exactly_one_runner_and_start_exactly_one_pipeline() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, DEFAULT_BITBUCKET_TOKEN).await.unwrap();
        sim.inject_fault(
            Fault::status(502)
                .method("POST")
                .path_contains("/pipelines-config/runners")
                .after_serving(),
        );
        let (uuid, auth) = register(&c, "once", "t").await;
        let runners = c.runners().await.unwrap();
        let named: Vec<_> = runners.iter().filter(|r| r.name == "once").collect();
        assert_eq!(named.len(), 1, "exactly one runner: {runners:?}");
        assert_eq!(named[0].id, uuid, "the one whose secret we hold");
        assert_eq!(sim.bitbucket_registered_names(), ["once", "once"]);

        // A re-run whose answer is lost: the new pipeline is found, not started again.
        let step = sim.bitbucket_queue_job("octo/app", "train", &["t"], "sleep 1");
        let http = reqwest::Client::new();
        let call = |action: &str, extra: serde_json::Value| {
            let mut body = auth.clone();
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            http.post(format!("{}/_sim/bitbucket/runner/{action}", sim.url()))
                .json(&body)
                .send()
        };
        call("next", serde_json::json!({})).await.unwrap();
        call(
            "result",
            serde_json::json!({"step_uuid": step, "status": "STOPPED"}),
        )
        .await
        .unwrap();
        sim.inject_fault(
            Fault::status(502)
                .method("POST")
                .path_contains("/pipelines")
                .after_serving(),
        );
        let rerun = c
            .rerun_interrupted("once", &step, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(rerun, cml_forge::Rerun::Requested(_)), "{rerun:?}");
        assert_eq!(sim.bitbucket_reruns().len(), 1, "exactly one new pipeline");
    });
}

#[test]
fn pending_steps_are_listed() {
    let sim = sim_with(|_| {});
    let step = sim.bitbucket_queue_job("octo/app", "train", &["gpu"], "true");
    rt().block_on(async {
        let c = connect(&sim, DEFAULT_BITBUCKET_TOKEN).await.unwrap();
        let jobs = c.queued_jobs().await.unwrap();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].id, step);
        assert!(jobs[0].labels.is_empty(), "Bitbucket does not say");
    });
}
