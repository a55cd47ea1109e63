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
