//! The [`Reports`] clients of the three forges against the simulator: every page of a long
//! comment thread, comments on each target kind, updates, pull requests looked up by commit
//! and by branch, and uploads served back byte for byte.

mod common;

use cml_core::report::Target;
use cml_core::{RepoUrl, Secret};
use cml_forge::bitbucket::BitbucketClient;
use cml_forge::github::{GithubAuth, GithubClient};
use cml_forge::gitlab::GitlabClient;
use cml_forge::{Reports, Upload};
use cml_sim::bitbucket::DEFAULT_BITBUCKET_TOKEN;
use cml_sim::gitlab::DEFAULT_GITLAB_TOKEN;
use cml_sim::{ForgeKind, SimServer, DEFAULT_PAT};
use common::{quick_retries, rt, sim_with};

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
