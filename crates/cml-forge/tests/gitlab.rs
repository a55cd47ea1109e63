//! The GitLab client against the simulated GitLab.

use cml_core::{Labels, RepoUrl, Secret};
use cml_forge::gitlab::GitlabClient;
use cml_forge::{Deleted, Forge, ForgeError, Registration};
use cml_sim::gitlab::DEFAULT_GITLAB_TOKEN;
use cml_sim::{Fault, SimServer};

mod common;

use common::{quick_retries, rt, sim_with};

async fn connect(sim: &SimServer, path: &str, token: &str) -> Result<GitlabClient, ForgeError> {
    let url = RepoUrl::parse(&format!("{}/{path}", sim.url())).unwrap();
    let retry = quick_retries();
    GitlabClient::connect(&url, Secret::new(token), "GITLAB_TOKEN", retry).await
}

#[test]
fn sub_path_discovery_registration_listing_and_deletion() {
    let sim = sim_with(|c| c.gitlab.path_prefix = "/git/lab".into());
    rt().block_on(async {
        let c = connect(&sim, "git/lab/group/sub/app", DEFAULT_GITLAB_TOKEN)
            .await
            .unwrap();
        assert_eq!(c.instance_url(), format!("{}/git/lab", sim.url()));
        assert_eq!(c.project_path(), "group/sub/app");
        let probes: Vec<String> = sim
            .requests()
            .into_iter()
            .filter(|q| q.path.ends_with("/api/v4/version"))
            .map(|q| format!("{} {}", q.path, q.status))
            .collect();
        assert_eq!(
            probes,
            [
                "/api/v4/version 404",
                "/git/api/v4/version 404",
                "/git/lab/api/v4/version 200"
            ]
        );
        let Registration::Gitlab { url, id, token } =
            c.registration("r0", &Labels::parse("a,b")).await.unwrap()
        else {
            panic!("a GitLab registration")
        };
        assert_eq!(url, c.instance_url());
        assert!(token.expose().starts_with("glrt-"));
        assert!(c.secrets().contains(&token.expose().to_string()));
        assert!(!format!("{c:?}").contains(DEFAULT_GITLAB_TOKEN));
        for i in 1..=120 {
            c.registration(&format!("r{i}"), &Labels::parse("a"))
                .await
                .unwrap();
        }
        let all = c.runners().await.unwrap();
        assert_eq!(all.len(), 121, "all pages followed");
        let r0 = all.iter().find(|r| r.name == "r0").unwrap();
        assert_eq!(r0.id, id);
        assert_eq!(r0.labels, ["a", "b"]);
        assert!(!r0.online && !r0.busy);
        assert_eq!(c.delete_runner(&id, "r0").await.unwrap(), Deleted::Removed);
        assert_eq!(
            c.delete_runner(&id, "r0").await.unwrap(),
            Deleted::AlreadyGone
        );
        assert_eq!(sim.gitlab_deletes().len(), 1);
    });
}

#[test]
fn a_runner_with_a_running_job_is_not_deleted() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, "group/app", DEFAULT_GITLAB_TOKEN)
            .await
            .unwrap();
        let Registration::Gitlab { id, token, .. } =
            c.registration("busy", &Labels::parse("t")).await.unwrap()
        else {
            panic!()
        };
        let job = sim.gitlab_queue_job("group/app", "long", &["t"], "sleep 1");
        // Take the job the way gitlab-runner does.
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{}/api/v4/jobs/request", sim.url()))
            .json(&serde_json::json!({"token": token.expose()}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        match c.delete_runner(&id, "busy").await.unwrap() {
            Deleted::Busy(m) => assert!(m.contains(&job), "{m}"),
            other => panic!("deleted a busy runner: {other:?}"),
        }
        assert!(sim.gitlab_deletes().is_empty());
        let runners = c.runners().await.unwrap();
        assert!(runners[0].online && runners[0].busy, "{runners:?}");
    });
}

#[test]
fn rejected_tokens_name_their_source_and_server_errors_are_retried() {
    let sim = sim_with(|c| {
        c.gitlab.tokens.push(cml_sim::Pat {
            token: "glpat-readonly".into(),
            admin: false,
        })
    });
    rt().block_on(async {
        let e = connect(&sim, "group/app", "glpat-wrongwrong")
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(e.is_auth(), "{msg}");
        assert!(
            msg.contains("rejected the token from GITLAB_TOKEN"),
            "{msg}"
        );
        assert!(
            msg.contains("hint:") && !msg.contains("glpat-wrongwrong"),
            "{msg}"
        );

        let c = connect(&sim, "group/app", "glpat-readonly").await.unwrap();
        let e = c.registration("x", &Labels::parse("a")).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("refused the token from GITLAB_TOKEN (403"),
            "{e}"
        );
        assert!(sim.gitlab_registered_names().is_empty());

        sim.inject_fault(Fault::status(503).path_contains("/runners").times(2));
        sim.inject_fault(
            Fault::status(429)
                .path_contains("/user/runners")
                .retry_after(1),
        );
        let c = connect(&sim, "group/app", DEFAULT_GITLAB_TOKEN)
            .await
            .unwrap();
        assert!(c.runners().await.unwrap().is_empty());
        c.registration("y", &Labels::parse("a")).await.unwrap();
        let statuses: Vec<u16> = sim.requests().iter().map(|q| q.status).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 2);
        assert!(statuses.contains(&429));
        assert_eq!(sim.gitlab_registered_names(), ["y"]);
    });
}

/// A registered runner and its token.
async fn register(c: &GitlabClient, name: &str, labels: &str) -> (String, String) {
    let Registration::Gitlab { id, token, .. } =
        c.registration(name, &Labels::parse(labels)).await.unwrap()
    else {
        panic!("a GitLab registration")
    };
    (id, token.expose().to_string())
}

#[test]
fn a_job_handed_over_after_the_jobs_check_is_not_orphaned_by_the_deletion() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, "group/app", DEFAULT_GITLAB_TOKEN)
            .await
            .unwrap();
        let (id, _) = register(&c, "racy", "t").await;
        // The runner's request for a job is processed right after the "running jobs?" answer.
        let job = sim.gitlab_race(
            cml_sim::gitlab::Race::AfterJobsCheck,
            "group/app",
            "late",
            &["t"],
            "true",
        );
        assert_eq!(
            c.delete_runner(&id, "racy").await.unwrap(),
            Deleted::Removed
        );
        // The runner was paused before the check, so the job could not be handed to it: it
        // is still queued for another runner, not running on a deleted one.
        let j = sim.gitlab_job(&job).unwrap();
        assert_eq!(j.state, cml_sim::JobState::Queued, "{j:?}");
        assert_eq!(j.runner_name, None);
        assert_eq!(sim.gitlab_deletes().len(), 1);
    });
}

#[test]
fn a_job_handed_over_as_the_runner_is_paused_keeps_the_runner_and_resumes_it() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, "group/app", DEFAULT_GITLAB_TOKEN)
            .await
            .unwrap();
        let (id, _) = register(&c, "racy", "t").await;
        let job = sim.gitlab_race(
            cml_sim::gitlab::Race::BeforePause,
            "group/app",
            "late",
            &["t"],
            "true",
        );
        match c.delete_runner(&id, "racy").await.unwrap() {
            Deleted::Busy(m) => assert!(m.contains(&job), "{m}"),
            other => panic!("deleted a runner that had just taken a job: {other:?}"),
        }
        assert!(sim.gitlab_deletes().is_empty());
        assert_eq!(
            sim.gitlab_runner_paused(&id),
            Some(false),
            "the kept runner takes jobs again"
        );
        assert_eq!(
            sim.gitlab_job(&job).unwrap().runner_name.as_deref(),
            Some("racy")
        );
        let puts: Vec<String> = sim
            .requests()
            .into_iter()
            .filter(|q| q.method == "PUT")
            .map(|q| q.path)
            .collect();
        assert_eq!(puts.len(), 2, "paused, then resumed: {puts:?}");
    });
}

#[test]
fn a_failure_after_the_pause_resumes_the_runner_and_deletes_nothing() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, "group/app", DEFAULT_GITLAB_TOKEN)
            .await
            .unwrap();
        let (id, _) = register(&c, "kept", "t").await;
        sim.inject_fault(
            Fault::status(502)
                .method("DELETE")
                .path_contains("/runners/")
                .times(5),
        );
        let e = c.delete_runner(&id, "kept").await.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("deleting runner kept (id") && msg.contains("502"),
            "{msg}"
        );
        assert!(sim.gitlab_deletes().is_empty());
        assert_eq!(sim.gitlab_runner_paused(&id), Some(false));

        // A pause that fails says so, and changes nothing.
        sim.inject_fault(Fault::status(502).method("PUT").times(5));
        let e = c.delete_runner(&id, "kept").await.unwrap_err();
        assert!(
            e.to_string()
                .contains("stopping runner kept (id {id}) of GitLab project group/app from taking new jobs failed".replace("{id}", &id).as_str()),
            "{e}"
        );
        assert!(sim.gitlab_deletes().is_empty());
        assert_eq!(sim.gitlab_runner_paused(&id), Some(false));
    });
}

#[test]
fn a_stopped_runner_is_deleted_even_while_gitlab_lists_its_job_as_running() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, "group/app", DEFAULT_GITLAB_TOKEN)
            .await
            .unwrap();
        let (id, token) = register(&c, "killed", "t").await;
        sim.gitlab_queue_job("group/app", "long", &["t"], "sleep 1");
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v4/jobs/request", sim.url()))
            .json(&serde_json::json!({ "token": token }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        // The agent was killed mid-job: GitLab still lists the job as running.
        assert!(matches!(
            c.delete_runner(&id, "killed").await.unwrap(),
            Deleted::Busy(_)
        ));
        assert_eq!(
            c.delete_stopped_runner(&id, "killed").await.unwrap(),
            Deleted::Removed
        );
        assert_eq!(
            c.delete_stopped_runner(&id, "killed").await.unwrap(),
            Deleted::AlreadyGone
        );
        assert_eq!(sim.gitlab_deletes().len(), 1);
    });
}

#[test]
fn a_runner_creation_whose_answer_is_lost_leaves_exactly_one_runner() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, "group/app", DEFAULT_GITLAB_TOKEN)
            .await
            .unwrap();
        // GitLab creates the runner, then the answer is lost (a 502 from a proxy).
        sim.inject_fault(
            Fault::status(502)
                .method("POST")
                .path_contains("/user/runners")
                .after_serving(),
        );
        let (id, token) = register(&c, "once", "a").await;
        let runners = c.runners().await.unwrap();
        let named: Vec<_> = runners.iter().filter(|r| r.name == "once").collect();
        assert_eq!(named.len(), 1, "exactly one runner: {runners:?}");
        assert_eq!(named[0].id, id, "the one whose token we hold");
        assert!(c.secrets().contains(&token));
        // The first one (token unknown) was found by name and deleted, then one created.
        assert_eq!(sim.gitlab_registered_names(), ["once", "once"]);
        assert_eq!(sim.gitlab_deletes().len(), 1);

        // A creation refused for a reason of its own (a 4xx) is not looked up nor repeated.
        sim.inject_fault(
            Fault::status(400)
                .method("POST")
                .path_contains("/user/runners"),
        );
        let e = c
            .registration("bad", &Labels::parse("a"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("registering runner bad"), "{e}");
        assert_eq!(sim.gitlab_registered_names(), ["once", "once"]);
    });
}

#[test]
fn a_job_retry_whose_answer_is_lost_retries_the_job_once() {
    let sim = sim_with(|_| {});
    rt().block_on(async {
        let c = connect(&sim, "group/app", DEFAULT_GITLAB_TOKEN)
            .await
            .unwrap();
        let (_, token) = register(&c, "spot", "t").await;
        let job = sim.gitlab_queue_job("group/app", "train", &["t"], "sleep 1");
        let http = reqwest::Client::new();
        let taken: serde_json::Value = http
            .post(format!("{}/api/v4/jobs/request", sim.url()))
            .json(&serde_json::json!({ "token": token }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The machine went away: the job failed.
        http.put(format!("{}/api/v4/jobs/{job}", sim.url()))
            .json(&serde_json::json!({"token": taken["token"], "state": "failed"}))
            .send()
            .await
            .unwrap();
        sim.inject_fault(
            Fault::status(502)
                .method("POST")
                .path_contains("/retry")
                .after_serving(),
        );
        let rerun = c
            .rerun_interrupted("spot", &job, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(rerun, cml_forge::Rerun::Requested(_)), "{rerun:?}");
        assert_eq!(sim.gitlab_retries().len(), 1, "retried exactly once");
    });
}

#[test]
fn gitlab_before_14_8_is_paused_through_active() {
    let sim = sim_with(|c| c.gitlab.without_paused = true);
    rt().block_on(async {
        let c = connect(&sim, "group/app", DEFAULT_GITLAB_TOKEN)
            .await
            .unwrap();
        let (id, _) = register(&c, "old", "t").await;
        let job = sim.gitlab_race(
            cml_sim::gitlab::Race::AfterJobsCheck,
            "group/app",
            "late",
            &["t"],
            "true",
        );
        assert_eq!(c.delete_runner(&id, "old").await.unwrap(), Deleted::Removed);
        // `paused` was ignored, `active=false` took: the job was not handed over.
        assert_eq!(
            sim.gitlab_job(&job).unwrap().state,
            cml_sim::JobState::Queued
        );
        let puts = sim.requests().iter().filter(|q| q.method == "PUT").count();
        assert_eq!(puts, 2, "`paused`, then `active`");
    });
}

/// A runner holding only its own token (under an instance sub-path): it checks itself, cannot
/// tell whether it is busy, deletes itself once (`DELETE /runners`), and is gone after; the
/// token shows nowhere.
#[test]
fn a_runner_with_its_own_token_checks_and_deletes_itself() {
    use cml_forge::gitlab::OwnRunner;
    let sim = sim_with(|c| c.gitlab.path_prefix = "/git/lab".into());
    let (id, token) = sim.gitlab_create_runner("group/app", "own", &["a"]);
    let instance = format!("{}/git/lab", sim.url());
    rt().block_on(async {
        let own = |t: &str| {
            OwnRunner::new(
                &instance,
                &id,
                "own",
                &Labels::parse("a"),
                Secret::new(t),
                quick_retries(),
            )
            .unwrap()
        };
        let r = own(&token);
        assert!(!r.sees_running_jobs());
        assert!(!format!("{r:?}").contains(&token));
        let Registration::Gitlab { url, id: rid, .. } =
            r.registration("own", &Labels::parse("a")).await.unwrap()
        else {
            panic!("a GitLab registration")
        };
        assert_eq!(
            (url.as_str(), rid.as_str()),
            (instance.as_str(), id.as_str())
        );
        assert_eq!(r.runners().await.unwrap().len(), 1);

        let stranger = own("glrt-notarunnertoken");
        let e = stranger
            .registration("own", &Labels::parse("a"))
            .await
            .unwrap_err();
        assert!(e.is_auth(), "{e}");
        let text = e.to_string();
        assert!(text.contains("hint:") && !text.contains("glrt-"), "{text}");
        assert!(stranger.runners().await.unwrap().is_empty());

        assert_eq!(r.delete_runner(&id, "own").await.unwrap(), Deleted::Removed);
        assert_eq!(
            r.delete_runner(&id, "own").await.unwrap(),
            Deleted::AlreadyGone
        );
        assert!(r.runners().await.unwrap().is_empty());
        assert_eq!(sim.gitlab_token_deletes(), std::slice::from_ref(&id));
        assert!(sim.gitlab_runners().is_empty());
    });
}

#[test]
fn pending_jobs_are_listed_with_their_tags() {
    let sim = sim_with(|_| {});
    let job = sim.gitlab_queue_job("group/app", "train", &["gpu", "cml"], "true");
    sim.gitlab_queue_job("group/other", "elsewhere", &["gpu"], "true");
    rt().block_on(async {
        let c = connect(&sim, "group/app", DEFAULT_GITLAB_TOKEN)
            .await
            .unwrap();
        let jobs = c.queued_jobs().await.unwrap();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].id, job);
        assert_eq!(jobs[0].name, "train");
        assert_eq!(jobs[0].labels, ["gpu", "cml"]);
    });
}
