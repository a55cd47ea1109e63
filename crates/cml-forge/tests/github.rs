//! The GitHub client against the simulator, and its routes and fields against GitHub's
//! official OpenAPI description.

use cml_core::{Labels, RepoUrl, Secret};
use cml_forge::github::{GithubAuth, GithubClient, ROUTES};
use cml_forge::{ApiError, Deleted, Forge, ForgeError, Registration, RetryPolicy};
use cml_sim::openapi::Spec;
use cml_sim::{Fault, SimConfig, SimServer, DEFAULT_PAT};
use std::path::PathBuf;
use std::time::Duration;

fn sim() -> SimServer {
    // The agent executable is not used by these tests.
    SimServer::start(SimConfig::new(PathBuf::from("/bin/false"))).unwrap()
}

fn client(sim: &SimServer, path: &str, token: &str) -> GithubClient {
    let url = RepoUrl::parse(&format!("{}/{path}", sim.url())).unwrap();
    let retry = RetryPolicy {
        base_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    GithubClient::new(
        &url,
        GithubAuth::Token {
            token: Secret::new(token),
            source: "REPO_TOKEN".into(),
        },
        retry,
    )
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_route_and_field_the_client_reads_is_in_the_official_description() {
    let spec = Spec::bundled();
    for (method, template, status, fields) in ROUTES {
        let route = spec
            .route(method, template)
            .unwrap_or_else(|| panic!("{method} {template} is not a GitHub route"));
        assert_eq!(route.status, *status, "{method} {template}");
        for f in *fields {
            assert!(
                spec.has_response_field(method, template, f),
                "{method} {template}: no field {f}"
            );
        }
    }
    // The bodies the report calls send.
    let requests: &[(&str, &str, &[&str])] = &[
        (
            "POST",
            "/repos/{owner}/{repo}/commits/{commit_sha}/comments",
            &["body"],
        ),
        (
            "PATCH",
            "/repos/{owner}/{repo}/comments/{comment_id}",
            &["body"],
        ),
        (
            "POST",
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            &["body"],
        ),
        (
            "PATCH",
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
            &["body"],
        ),
        (
            "POST",
            "/repos/{owner}/{repo}/pulls",
            &["title", "head", "base", "body"],
        ),
        (
            "PUT",
            "/repos/{owner}/{repo}/pulls/{pull_number}/merge",
            &["merge_method"],
        ),
        (
            "POST",
            "/repos/{owner}/{repo}/check-runs",
            &[
                "name",
                "head_sha",
                "status",
                "conclusion",
                "completed_at",
                "output.title",
                "output.summary",
            ],
        ),
        (
            "POST",
            "/repos/{owner}/{repo}/git/blobs",
            &["content", "encoding"],
        ),
        (
            "POST",
            "/repos/{owner}/{repo}/git/trees",
            &[
                "base_tree",
                "tree[].path",
                "tree[].mode",
                "tree[].type",
                "tree[].sha",
            ],
        ),
        (
            "POST",
            "/repos/{owner}/{repo}/git/commits",
            &["message", "tree", "parents"],
        ),
        ("POST", "/repos/{owner}/{repo}/git/refs", &["ref", "sha"]),
        (
            "PATCH",
            "/repos/{owner}/{repo}/git/refs/{ref}",
            &["sha", "force"],
        ),
    ];
    for (method, template, fields) in requests {
        for f in *fields {
            assert!(
                spec.has_request_field(method, template, f),
                "{method} {template}: the request has no field {f}"
            );
        }
    }
    for f in ["name", "runner_group_id", "labels", "work_folder"] {
        assert!(spec.has_request_field(
            "POST",
            "/repos/{owner}/{repo}/actions/runners/generate-jitconfig",
            f
        ));
    }
}

#[test]
fn runners_tokens_jit_get_delete_and_pagination() {
    let sim = sim();
    let c = client(&sim, "octo/app", DEFAULT_PAT);
    let rt = rt();
    rt.block_on(async {
        assert!(c.runners().await.unwrap().is_empty());
        let Registration::GithubToken { url, token } =
            c.registration("r", &Labels::parse("a")).await.unwrap()
        else {
            panic!("GitHub registers with a token")
        };
        assert_eq!(url, format!("{}/octo/app", sim.url()));
        assert!(!token.expose().is_empty());
        assert!(!c.remove_token().await.unwrap().expose().is_empty());
        for i in 0..250 {
            c.jit_config(&format!("jit-{i:03}"), &Labels::parse("x,y"), "_work")
                .await
                .unwrap();
        }
        let all = c.runners().await.unwrap();
        assert_eq!(all.len(), 250, "all pages followed");
        let first = all.iter().find(|r| r.name == "jit-000").unwrap().clone();
        let id: u64 = first.id.parse().unwrap();
        assert!(first.labels.iter().any(|l| l == "x"));
        assert_eq!(c.runner(id).await.unwrap().unwrap().name, "jit-000");
        assert_eq!(
            c.delete_runner(&first.id, "jit-000").await.unwrap(),
            Deleted::Removed
        );
        assert_eq!(
            c.delete_runner(&first.id, "jit-000").await.unwrap(),
            Deleted::AlreadyGone
        );
        assert_eq!(c.runner(id).await.unwrap(), None);
    });
    let pages = sim
        .requests()
        .iter()
        .filter(|q| {
            q.method == "GET"
                && q.path.contains("/actions/runners")
                && !q.path.contains("/runners/")
        })
        .count();
    assert_eq!(pages, 1 + 3, "one empty list, then three pages of 100");
    // Every request the client made is a route of the official description.
    for q in sim.requests() {
        assert!(
            Spec::bundled().match_path(&q.method, &q.path).is_some(),
            "{} {} is not a GitHub route",
            q.method,
            q.path
        );
    }
}

#[test]
fn jobs_are_read_from_the_repository() {
    let sim = sim();
    let queued = sim.queue_job("octo/app", "build", &["self-hosted"], "true");
    let c = client(&sim, "octo/app", DEFAULT_PAT);
    let job = rt().block_on(c.job(queued.job_id)).unwrap();
    assert_eq!(job.id, queued.job_id);
    assert_eq!(job.run_id, queued.run_id);
    assert_eq!(job.status, "queued");
    assert_eq!(job.runner_name, None);
}

#[test]
fn transient_failures_are_retried_and_bounded() {
    let sim = sim();
    let c = client(&sim, "octo/app", DEFAULT_PAT);
    let rt = rt();
    sim.inject_fault(Fault::status(502).times(2));
    assert!(rt.block_on(c.runners()).is_ok());
    sim.inject_fault(Fault::status(503).times(5));
    let e = rt.block_on(c.runners()).unwrap_err();
    assert!(
        matches!(e.api(), Some(ApiError::Exhausted { attempts: 5, .. })),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("listing the runners of GitHub repository octo/app failed"),
        "{e}"
    );
    // A rate limit that resets far in the future is not waited for.
    sim.inject_fault(Fault::status(403).ratelimit_reset_in(3600));
    let started = std::time::Instant::now();
    let e = rt.block_on(c.registration_token()).unwrap_err();
    assert!(matches!(e.api(), Some(ApiError::RateLimited { .. })), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.to_string().contains("hint:"));
}

#[test]
fn errors_and_debug_output_never_show_secrets() {
    let sim = sim();
    let rt = rt();
    let bad = client(&sim, "octo/app", "ghp_notavalidtoken123");
    let e = rt.block_on(bad.runners()).unwrap_err();
    assert!(e.is_auth());
    let text = format!("{e} {e:?} {bad:?}");
    assert!(
        text.contains("REPO_TOKEN") && text.contains("401"),
        "{text}"
    );
    assert!(!text.contains("ghp_notavalidtoken123"), "{text}");

    let good = client(&sim, "octo", DEFAULT_PAT);
    let token = rt.block_on(good.registration_token()).unwrap();
    let (_, jit) = rt
        .block_on(good.jit_config("j", &Labels::parse("a"), "_work"))
        .unwrap();
    let shown = format!("{good:?} {token:?} {token} {jit:?}");
    for secret in [DEFAULT_PAT, token.expose(), jit.expose()] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(
            good.secrets().iter().any(|s| s == secret),
            "registered for redaction"
        );
    }
    let err = ForgeError::AppKey { reason: "x".into() };
    assert!(err.to_string().contains("CML_GITHUB_APP_PEM"));
}

#[test]
fn two_runners_interrupted_in_one_run_lead_to_one_rerun() {
    let sim = sim();
    let c = client(&sim, "octo/app", DEFAULT_PAT);
    rt().block_on(async {
        let Registration::GithubToken { token, .. } =
            c.registration("r1", &Labels::parse("x")).await.unwrap()
        else {
            panic!()
        };
        // The agent's side, through the simulator's agent routes: register, take, cancel.
        let http = reqwest::Client::new();
        let agent = |action: &str, body: serde_json::Value| {
            http.post(format!("{}/_sim/agent/{action}", sim.url()))
                .json(&body)
                .send()
        };
        let reg: serde_json::Value = agent(
            "register",
            serde_json::json!({"token": token.expose(), "scope": "octo/app", "name": "r1", "labels": ["self-hosted", "x"]}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let who = serde_json::json!({"id": reg["id"], "credential": reg["credential"]});
        let queued = sim.queue_job("octo/app", "train", &["x"], "sleep 1");
        let polled: serde_json::Value = agent("poll", who.clone()).await.unwrap().json().await.unwrap();
        assert_eq!(polled["job"]["id"], queued.job_id);
        // While the run is in progress nothing is re-run (bounded wait).
        assert!(matches!(
            c.rerun_interrupted("r1", "train", Duration::from_millis(100)).await.unwrap(),
            cml_forge::Rerun::StillRunning(_)
        ));
        let mut done = who.clone();
        done["job_id"] = queued.job_id.into();
        done["conclusion"] = "cancelled".into();
        agent("complete", done).await.unwrap();

        // Two runners of the run ask at the same time: one re-run.
        let (a, b) = tokio::join!(
            c.rerun_interrupted("r1", "train", Duration::from_secs(5)),
            c.rerun_interrupted("r1", "train", Duration::from_secs(5)),
        );
        let results = [a.unwrap(), b.unwrap()];
        let requested = results
            .iter()
            .filter(|r| matches!(r, cml_forge::Rerun::Requested(_)))
            .count();
        assert_eq!(requested, 1, "{results:?}");
        let attempts: Vec<u64> = sim
            .jobs()
            .into_iter()
            .filter(|j| j.run_id == queued.run_id)
            .map(|j| j.run_attempt)
            .collect();
        assert_eq!(attempts, [1, 2]);
    });
}

#[test]
fn queued_jobs_of_the_repository_are_listed_with_their_labels() {
    let sim = sim();
    let a = sim.queue_job("octo/app", "build", &["self-hosted", "gpu"], "true");
    let b = sim.queue_job("octo/app", "test", &["cml"], "true");
    sim.queue_job("octo/other", "elsewhere", &["cml"], "true");
    let c = client(&sim, "octo/app", DEFAULT_PAT);
    let mut jobs = rt().block_on(c.queued_jobs()).unwrap();
    jobs.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(jobs[0].id, a.job_id.to_string());
    assert_eq!(jobs[0].labels, ["self-hosted", "gpu"]);
    assert_eq!(jobs[1].id, b.job_id.to_string());
    // An organization's queue is not listed by the REST fallback.
    let org = GithubClient::new(
        &RepoUrl::parse(&format!("{}/octo", sim.url())).unwrap(),
        GithubAuth::Token {
            token: Secret::new(DEFAULT_PAT),
            source: "REPO_TOKEN".into(),
        },
        RetryPolicy::default(),
    )
    .unwrap();
    let e = rt().block_on(org.queued_jobs()).unwrap_err();
    assert!(matches!(e, ForgeError::QueueUnsupported { .. }), "{e}");
}
