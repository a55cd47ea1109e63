//! The [`Reports`] clients of the three forges against the simulator: every page of a long
//! comment thread, comments on each target kind, updates, pull requests looked up by commit
//! and by branch, and uploads served back byte for byte. And GitHub's pagination against a
//! small local server whose `Link` headers point elsewhere: the token is not sent there.

mod common;

use cml_core::report::Target;
use cml_core::{RepoUrl, Secret};
use cml_forge::bitbucket::BitbucketClient;
use cml_forge::github::{GithubAuth, GithubClient};
use cml_forge::gitlab::GitlabClient;
use cml_forge::{Forge, Reports, Upload};
use cml_sim::bitbucket::DEFAULT_BITBUCKET_TOKEN;
use cml_sim::gitlab::DEFAULT_GITLAB_TOKEN;
use cml_sim::{ForgeKind, SimServer, DEFAULT_PAT};
use common::{quick_retries, rt, sim_with};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

async fn client(sim: &SimServer, forge: ForgeKind) -> Box<dyn Reports> {
    let repo = |path: &str| RepoUrl::parse(&format!("{}/{path}", sim.url())).unwrap();
    match forge {
        ForgeKind::Github => Box::new(
            GithubClient::new(
                &repo("octo/app"),
                GithubAuth::Token {
                    token: Secret::new(DEFAULT_PAT),
                    source: "REPO_TOKEN".into(),
                },
                quick_retries(),
            )
            .unwrap(),
        ),
        ForgeKind::Gitlab => Box::new(
            GitlabClient::connect(
                &repo("octo/app"),
                Secret::new(DEFAULT_GITLAB_TOKEN),
                "REPO_TOKEN",
                quick_retries(),
            )
            .await
            .unwrap(),
        ),
        ForgeKind::Bitbucket => Box::new(
            BitbucketClient::connect(
                &repo("octo/app"),
                Secret::new(DEFAULT_BITBUCKET_TOKEN),
                "REPO_TOKEN",
                &sim.url(),
                quick_retries(),
            )
            .await
            .unwrap(),
        ),
    }
}

#[test]
fn long_threads_targets_updates_pulls_and_uploads() {
    for forge in [ForgeKind::Github, ForgeKind::Gitlab, ForgeKind::Bitbucket] {
        let sim = sim_with(|_| {});
        rt().block_on(async {
            let c = client(&sim, forge).await;
            let sha = "feedfacefeedfacefeedfacefeedfacefeedface";
            let commit = Target::Commit(sha.into());
            // More comments than fit on one page of any forge.
            for i in 0..130 {
                c.create_comment(&commit, &format!("comment {i}"))
                    .await
                    .unwrap();
            }
            let all = c.comments(&commit).await.unwrap();
            assert_eq!(all.len(), 130, "{forge:?}");
            assert_eq!(all[0].body, "comment 0");
            assert_eq!(all[129].body, "comment 129");
            let url = c
                .update_comment(&commit, &all[129].id, "edited")
                .await
                .unwrap();
            assert!(url.contains(sha), "{forge:?}: {url}");
            let stored = sim.comments(forge, "octo/app");
            assert_eq!(stored[129].body, "edited");
            assert_eq!(stored[129].edits, 1);

            // Pull requests: by commit, by branch; an issue.
            let n = sim.open_pull(forge, "octo/app", "feature", "main", sha);
            let by_commit = c.pull_requests_with_commit(sha).await.unwrap();
            assert_eq!(
                by_commit.iter().map(|p| p.number).collect::<Vec<_>>(),
                vec![n]
            );
            assert_eq!(by_commit[0].source, "feature");
            let by_branch = c.open_pull_requests("feature", "main").await.unwrap();
            assert_eq!(by_branch.len(), 1);
            assert!(c
                .open_pull_requests("feature", "dev")
                .await
                .unwrap()
                .is_empty());
            assert!(c
                .pull_requests_with_commit("0000000000000000000000000000000000000000")
                .await
                .unwrap()
                .is_empty());
            let issue = sim.open_issue(forge, "octo/app");
            c.create_comment(&Target::Pr(n), "on the pull request")
                .await
                .unwrap();
            c.create_comment(&Target::Issue(issue), "on the issue")
                .await
                .unwrap();
            assert_eq!(c.comments(&Target::Pr(n)).await.unwrap().len(), 1);
            assert_eq!(
                c.comments(&Target::Issue(issue)).await.unwrap()[0].body,
                "on the issue"
            );

            // Uploads come back as they went.
            let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
            let url = c
                .upload(Upload {
                    name: "weights file.bin",
                    bytes: &bytes,
                    mime: "application/octet-stream",
                })
                .await
                .unwrap();
            let got = reqwest::get(&url).await.unwrap();
            assert_eq!(got.status().as_u16(), 200, "{forge:?}: {url}");
            assert_eq!(got.bytes().await.unwrap().to_vec(), bytes, "{forge:?}");
        });
    }
}

/// A request a [`Tiny`] server received: its path, and whether it carried `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    path: String,
    authorization: bool,
}

/// A small HTTP server on 127.0.0.1 answering each request with `answer(path)` (extra header
/// lines, JSON body) and recording what it received.
struct Tiny {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Tiny {
    fn start(answer: impl Fn(&str) -> (String, String) + Send + 'static) -> Tiny {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let authorization = head
                    .lines()
                    .any(|l| l.to_ascii_lowercase().starts_with("authorization:"));
                record.lock().unwrap().push(Seen {
                    path: path.clone(),
                    authorization,
                });
                let (headers, body) = answer(&path);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
                    body.len()
                );
            }
        });
        Tiny { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn github_client_for(api: &Tiny) -> GithubClient {
    GithubClient::new(
        &RepoUrl::parse(&format!("{}/octo/app", api.url())).unwrap(),
        GithubAuth::Token {
            token: Secret::new(DEFAULT_PAT),
            source: "REPO_TOKEN".into(),
        },
        quick_retries(),
    )
    .unwrap()
}

#[test]
fn github_next_pages_are_followed_only_on_the_api() {
    let sha = "feedfacefeedfacefeedfacefeedfacefeedface";
    // Another port on the same address is another server.
    let other = Tiny::start(|_| (String::new(), "[]".into()));
    let elsewhere = other.url();
    let first_page = |next: String| {
        move |path: &str| {
            if path.contains("page=2") {
                return (String::new(), r#"[{"id": 2, "body": "second"}]"#.into());
            }
            let body = if path.contains("/actions/runners") {
                r#"{"total_count": 2, "runners": [{"id": 1, "name": "r1", "status": "online", "busy": false}]}"#
            } else {
                r#"[{"id": 1, "body": "first"}]"#
            };
            (format!("link: <{next}>; rel=\"next\"\r\n"), body.into())
        }
    };
    rt().block_on(async {
        // A next page on another server: not followed, and said so.
        let api = Tiny::start(first_page(format!(
            "{elsewhere}/api/v3/repos/octo/app/commits/{sha}/comments?per_page=100&page=2"
        )));
        let c = github_client_for(&api);
        let e = c
            .comments(&Target::Commit(sha.into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("reading the comments of commit")
                && e.contains(&format!("the next page of the list is at {elsewhere}/"))
                && e.contains("it was not followed")
                && e.contains("hint:"),
            "{e}"
        );
        // The runner list, through the same rule.
        let e = c.runners().await.unwrap_err().to_string();
        assert!(
            e.contains("listing the runners of") && e.contains("it was not followed"),
            "{e}"
        );
        assert_eq!(other.seen(), vec![], "the other server was called");
        assert_eq!(api.seen().len(), 2);
        assert!(api.seen().iter().all(|s| s.authorization));

        // The API's own server, but outside its path (`/api/v3`): not followed either.
        let api = Tiny::start(first_page("/elsewhere/comments?page=2".into()));
        let e = github_client_for(&api)
            .comments(&Target::Commit(sha.into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("it was not followed"), "{e}");
        assert_eq!(api.seen().len(), 1, "{:?}", api.seen());

        // A next page on the API (written relative to it here) is followed, with the token.
        let api = Tiny::start(first_page(format!(
            "/api/v3/repos/octo/app/commits/{sha}/comments?per_page=100&page=2"
        )));
        let all = github_client_for(&api)
            .comments(&Target::Commit(sha.into()))
            .await
            .unwrap();
        let bodies: Vec<&str> = all.iter().map(|c| c.body.as_str()).collect();
        assert_eq!(bodies, vec!["first", "second"]);
        let seen = api.seen();
        assert_eq!(seen.len(), 2);
        assert!(
            seen[1].path.ends_with("page=2") && seen[1].authorization,
            "{seen:?}"
        );
    });
}
