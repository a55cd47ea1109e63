//! The report commands of the real binary against the forge simulators, on GitHub, GitLab and
//! Bitbucket: `cml comment` on every target kind and its updates, publishing (alone and from
//! a report's links), `cml check`, `cml pr` against a real bare repository served over Git's
//! HTTP protocol, `cml ci`, bad inputs, and the seed's workflow lines run unchanged. And the
//! attacks on them: reports linking to the runner's own files, file names that are Git
//! patterns, remotes pointing away from the forge, credentials in remote URLs.

mod harness;

use base64::Engine;
use cml_sim::{CommentOn, ForgeKind, SimComment};
use harness::{Kind, World};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A token that authenticates on every forge but may not write.
const READ_ONLY: &str = "glpat-readonlytoken0";

fn forge_of(kind: Kind) -> ForgeKind {
    match kind {
        Kind::Github => ForgeKind::Github,
        Kind::Gitlab => ForgeKind::Gitlab,
        Kind::Bitbucket => ForgeKind::Bitbucket,
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A simulated forge serving a bare repository, and a checkout of it.
struct Site {
    world: World,
    _git: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
    head: String,
}

/// What a `cml` run printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Site {
    fn new(kind: Kind) -> Site {
        Site::with(kind, |_| {})
    }

    fn with(kind: Kind, configure: impl FnOnce(&mut cml_sim::SimConfig)) -> Site {
        let git_root = tempfile::tempdir().unwrap();
        let root = git_root.path().to_path_buf();
        let world = World::of_with(kind, |cfg| {
            cfg.git_root = Some(root.clone());
            cfg.pats.push(cml_sim::Pat {
                token: READ_ONLY.into(),
                admin: false,
            });
            cfg.gitlab.tokens.push(cml_sim::Pat {
                token: READ_ONLY.into(),
                admin: false,
            });
            cfg.bitbucket
                .credentials
                .push(cml_sim::bitbucket::Credential {
                    token: bitbucket_read_only(),
                    admin: false,
                });
            configure(cfg)
        });
        let bare = root.join(format!("{}.git", kind.repo_path()));
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        let work = world.tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["config", "user.name", "Dev"]);
        git(&work, &["config", "user.email", "dev@example.com"]);
        std::fs::write(work.join("README.md"), "# app\n").unwrap();
        std::fs::write(work.join("dvc.lock"), "v1\n").unwrap();
        git(&work, &["add", "."]);
        git(&work, &["commit", "-q", "-m", "initial"]);
        git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
        let origin = format!("{}/{}.git", world.sim.url(), kind.repo_path());
        git(&work, &["remote", "add", "origin", &origin]);
        let head = git(&work, &["rev-parse", "HEAD"]);
        Site {
            world,
            _git: git_root,
            bare,
            work,
            head,
        }
    }

    fn kind(&self) -> Kind {
        self.world.kind
    }

    fn repo(&self) -> &'static str {
        self.kind().repo_path()
    }

    /// `cml ARGS` in the checkout with the forge's admin token in `REPO_TOKEN`.
    fn cml(&self, args: &[&str]) -> Command {
        let mut c = self.world.cml(args);
        c.current_dir(&self.work)
            .env("REPO_TOKEN", self.kind().token())
            .env("CML_DRIVER", self.kind().driver());
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        run(self.cml(args))
    }

    fn comments(&self) -> Vec<SimComment> {
        self.world.sim.comments(forge_of(self.kind()), self.repo())
    }

    fn pulls(&self) -> Vec<cml_sim::SimPull> {
        self.world.sim.pulls(forge_of(self.kind()), self.repo())
    }

    /// Requests that wrote to the forge's API (anything but GET).
    fn writes(&self) -> Vec<String> {
        self.world
            .sim
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    fn write(&self, name: &str, content: &[u8]) {
        let path = self.work.join(name);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(path, content).unwrap();
    }

    /// Every secret of the forge, in the forms it could leak in.
    fn secrets(&self) -> Vec<String> {
        let token = self.kind().token().to_string();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = vec![
            token.clone(),
            b64.encode(format!("x-access-token:{token}")),
            b64.encode(format!("oauth2:{token}")),
        ];
        if let Ok(d) = b64.decode(&token) {
            if let Some((_, pw)) = String::from_utf8_lossy(&d).split_once(':') {
                out.push(pw.to_string());
            }
        }
        out
    }

    fn assert_no_secret(&self, r: &Run) {
        for s in self.secrets() {
            assert!(
                !r.stdout.contains(&s) && !r.stderr.contains(&s),
                "a secret was printed:\n{}\n{}",
                r.stdout,
                r.stderr
            );
        }
    }

    fn get(&self, url: &str) -> (u16, Vec<u8>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        })
    }
}

fn bitbucket_read_only() -> String {
    cml_sim::bitbucket::token_for("reader", "readonlypassword")
}

fn read_only_token(kind: Kind) -> String {
    match kind {
        Kind::Bitbucket => bitbucket_read_only(),
        _ => READ_ONLY.into(),
    }
}

fn run(mut c: Command) -> Run {
    let out = c.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake image bytes";

macro_rules! each_forge {
    ($($name:ident),* $(,)?) => {
        mod github {
            $(#[test] fn $name() { super::$name(super::Kind::Github) })*
        }
        mod gitlab {
            $(#[test] fn $name() { super::$name(super::Kind::Gitlab) })*
        }
        mod bitbucket {
            $(#[test] fn $name() { super::$name(super::Kind::Bitbucket) })*
        }
    };
}

each_forge!(
    comments_reach_every_target_kind,
    update_edits_our_last_comment,
    linked_files_are_published_and_rewritten,
    bad_inputs_post_nothing,
    pr_commits_pushes_and_opens_once,
    the_seed_workflow_lines_run_unchanged,
    links_to_files_outside_the_tree_stay_links,
);

fn comments_reach_every_target_kind(kind: Kind) {
    let s = Site::new(kind);
    let forge = forge_of(kind);
    s.write("report.md", b"# Metrics\n\naccuracy: 0.9\n");
    // auto without a pull request: the commit.
    let r = s.run(&["comment", "create", "report.md"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    s.assert_no_secret(&r);
    let c = s.comments();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].on, CommentOn::Commit(s.head.clone()));
    assert!(c[0].body.starts_with("# Metrics\n\naccuracy: 0.9\n"));
    assert!(c[0].body.contains("\"CML watermark\""), "{}", c[0].body);
    assert!(r.stdout.trim().starts_with("http://"), "{}", r.stdout);
    assert!(r.stdout.trim().contains(&s.head), "{}", r.stdout);

    // auto with an open pull request containing the commit: the pull request.
    let n = s
        .world
        .sim
        .open_pull(forge, s.repo(), "feature", "main", &s.head);
    let r = s.run(&["comment", "create", "report.md"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(s.comments().last().unwrap().on, CommentOn::Pull(n));

    // Explicit targets.
    let issue = s.world.sim.open_issue(forge, s.repo());
    let other = "0123456789abcdef0123456789abcdef01234567";
    for (target, want) in [
        (format!("pr/{n}"), CommentOn::Pull(n)),
        (format!("issue/{issue}"), CommentOn::Issue(issue)),
        (format!("commit/{other}"), CommentOn::Commit(other.into())),
        ("commit".to_string(), CommentOn::Commit(s.head.clone())),
        ("pr".to_string(), CommentOn::Pull(n)),
    ] {
        let r = s.run(&[
            "comment",
            "create",
            "report.md",
            &format!("--target={target}"),
        ]);
        assert_eq!(r.code, 0, "{target}: {}", r.stderr);
        assert_eq!(s.comments().last().unwrap().on, want, "{target}");
    }

    // The CI's own pull request and commit variables.
    let (pr_var, sha_var, repo_vars): (&str, &str, Vec<(&str, String)>) = match kind {
        Kind::Github => (
            "GITHUB_REF",
            "GITHUB_SHA",
            vec![
                ("GITHUB_REPOSITORY", s.repo().into()),
                ("GITHUB_SERVER_URL", s.world.sim.url()),
            ],
        ),
        Kind::Gitlab => (
            "CI_MERGE_REQUEST_IID",
            "CI_COMMIT_SHA",
            vec![("CI_PROJECT_URL", s.world.repo_url())],
        ),
        Kind::Bitbucket => (
            "BITBUCKET_PR_ID",
            "BITBUCKET_COMMIT",
            vec![
                ("BITBUCKET_GIT_HTTP_ORIGIN", s.world.repo_url()),
                ("BITBUCKET_REPO_UUID", "{0}".into()),
            ],
        ),
    };
    let second = s.world.sim.open_pull(forge, s.repo(), "other", "main", "");
    let pr_value = match kind {
        Kind::Github => format!("refs/pull/{second}/merge"),
        _ => second.to_string(),
    };
    let mut c = s.world.cml(&["send-comment", "report.md"]);
    c.current_dir(&s.work)
        .env("REPO_TOKEN", kind.token())
        .env(pr_var, &pr_value)
        .env(sha_var, other)
        .envs(repo_vars.clone());
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(s.comments().last().unwrap().on, CommentOn::Pull(second));
    // And the CI's commit when there is no pull request.
    let mut c = s
        .world
        .cml(&["comment", "create", "report.md", "--target=commit"]);
    c.current_dir(&s.work)
        .env("REPO_TOKEN", kind.token())
        .env(sha_var, other)
        .envs(repo_vars);
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        s.comments().last().unwrap().on,
        CommentOn::Commit(other.into())
    );
}

fn update_edits_our_last_comment(kind: Kind) {
    let s = Site::new(kind);
    let n = s
        .world
        .sim
        .open_pull(forge_of(kind), s.repo(), "feature", "main", &s.head);
    s.write("report.md", b"first\n");
    assert_eq!(s.run(&["comment", "create", "report.md"]).code, 0);
    // Someone else's comment in between.
    s.write("other.md", b"a human comment\n");
    assert_eq!(
        s.run(&["comment", "create", "other.md", "--rm-watermark"])
            .code,
        0
    );
    s.write("report.md", b"second\n");
    let r = s.run(&["comment", "update", "report.md"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = s.comments();
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(
        c[0].body.starts_with("second\n") && c[0].edits == 1,
        "{c:?}"
    );
    assert_eq!(c[1].body, "a human comment\n");
    assert!(c.iter().all(|c| c.on == CommentOn::Pull(n)));

    // Old name with --update, and a separate report by watermark title.
    s.write("report.md", b"third\n");
    let r = s.run(&["send-comment", "report.md", "--update"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = s.run(&[
        "comment",
        "update",
        "report.md",
        "--watermark-title=nightly",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = s.comments();
    assert_eq!(c.len(), 3);
    assert!(c[0].body.starts_with("third\n") && c[0].edits == 2);
    assert!(c[2].body.contains("\"CML watermark nightly\""));
    // A comment CML wrote (its image watermark) is updated too.
    let forge = forge_of(kind);
    let issue = s.world.sim.open_issue(forge, s.repo());
    s.write(
        "cml.md",
        b"old\n\n![](https://cml.dev/watermark.png#abc \"CML watermark\")\n",
    );
    let target = format!("--target=issue/{issue}");
    assert_eq!(
        s.run(&["comment", "create", "cml.md", &target, "--rm-watermark"])
            .code,
        0
    );
    let r = s.run(&["comment", "update", "report.md", &target]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let on_issue: Vec<_> = s
        .comments()
        .into_iter()
        .filter(|c| c.on == CommentOn::Issue(issue))
        .collect();
    assert_eq!(on_issue.len(), 1);
    assert!(on_issue[0].body.starts_with("third\n") && on_issue[0].edits == 1);
}

fn linked_files_are_published_and_rewritten(kind: Kind) {
    let s = Site::new(kind);
    s.write("plots/plot.png", PNG);
    s.write("data.csv", b"a,b\n1,2\n");
    s.write(
        "report.md",
        b"# Report\n\n![confusion](plots/plot.png \"Confusion\")\n\n[data](data.csv) [gone](missing.png) [web](https://example.com/x.png)\n",
    );
    let r = s.run(&["comment", "create", "report.md"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    s.assert_no_secret(&r);
    let body = s.comments()[0].body.clone();
    assert!(!body.contains("(plots/plot.png"), "{body}");
    assert!(!body.contains("(data.csv)"), "{body}");
    assert!(body.contains("[gone](missing.png)") && body.contains("(https://example.com/x.png)"));
    let urls: Vec<&str> = body
        .split("](")
        .skip(1)
        .map(|rest| rest.split([' ', ')']).next().unwrap())
        .filter(|u| u.starts_with(&s.world.sim.url()))
        .collect();
    assert_eq!(urls.len(), 2, "{body}");
    assert_eq!(s.get(urls[0]), (200, PNG.to_vec()));
    assert_eq!(s.get(urls[1]), (200, b"a,b\n1,2\n".to_vec()));
    // The forge holds them where the README says.
    let stored = s.world.sim.uploads(forge_of(kind), s.repo());
    let names: Vec<&str> = stored.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.contains(&"plot.png") && names.contains(&"data.csv"),
        "{names:?}"
    );
    assert!(stored.iter().any(|u| u.bytes == PNG));
    // --no-publish leaves the links alone.
    let r = s.run(&["comment", "create", "report.md", "--no-publish"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(s.comments()[1]
        .body
        .contains("(plots/plot.png \"Confusion\")"));

    // `cml asset publish`: URL, Markdown, --mime-type, --file.
    let r = s.run(&["asset", "publish", "plots/plot.png"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let url = r.stdout.trim().to_string();
    assert_eq!(s.get(&url), (200, PNG.to_vec()));
    let r = s.run(&[
        "publish",
        "data.csv",
        "--md",
        "--title=Data",
        "-f",
        "out.md",
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    let out = std::fs::read_to_string(s.work.join("out.md")).unwrap();
    assert!(
        out.starts_with("[Data](http://") && out.ends_with(")\n"),
        "{out}"
    );
    let r = s.run(&["publish", "data.csv", "--md", "--mime-type=image/png"]);
    assert!(r.stdout.starts_with("![](http://"), "{}", r.stdout);
    assert!(
        r.stderr.contains(match kind {
            Kind::Github => "branch cml-assets",
            Kind::Gitlab => "uploads of GitLab project",
            Kind::Bitbucket => "downloads of Bitbucket repository",
        }),
        "where files go is said: {}",
        r.stderr
    );
    // An asset server named with --url instead of the forge.
    let before = s.world.sim.uploads(forge_of(kind), s.repo()).len();
    let server = format!("{}/_sim/assets", s.world.sim.url());
    let r = s.run(&["publish", "plots/plot.png", "--url", &server]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.trim().starts_with(&server));
    assert_eq!(s.get(r.stdout.trim()), (200, PNG.to_vec()));
    assert_eq!(s.world.sim.uploads(forge_of(kind), s.repo()).len(), before);
}

fn bad_inputs_post_nothing(kind: Kind) {
    let s = Site::new(kind);
    s.write("report.md", b"ok\n");
    s.write("plot.png", PNG);
    let r = s.run(&["comment", "create", "nope.md"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("cannot read the report \\\"nope.md\\\""),
        "{}",
        r.stderr
    );
    let r = s.run(&["comment", "create", "report.md", "--target=pull/3"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unknown comment target `pull/3`") && r.stderr.contains("hint: use auto"),
        "{}",
        r.stderr
    );
    let r = s.run(&["publish", "missing.png"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("missing.png"));
    let r = s.run(&["publish", "plot.png", "--mime-type=png"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // A pull request that does not exist.
    let r = s.run(&["comment", "create", "report.md", "--target=pr/77"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("pull request #77"), "{}", r.stderr);
    // --target=pr without any pull request.
    let r = s.run(&["comment", "create", "report.md", "--target=pr"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("no open pull request contains commit"),
        "{}",
        r.stderr
    );
    // A token that may read but not write.
    let mut c = s.cml(&["comment", "create", "report.md", "--target=commit"]);
    c.env("REPO_TOKEN", read_only_token(kind));
    let r = run(c);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("posting a comment on commit")
            && r.stderr.contains("refused the token from REPO_TOKEN")
            && r.stderr.contains("hint:"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(&read_only_token(kind)));
    let mut c = s.cml(&["publish", "plot.png"]);
    c.env("REPO_TOKEN", read_only_token(kind));
    let r = run(c);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("uploading plot.png to"), "{}", r.stderr);
    // A check run is GitHub's only.
    if kind != Kind::Github {
        let r = s.run(&["check", "create", "report.md"]);
        assert_eq!(r.code, 2);
        assert!(
            r.stderr.contains("check runs are a GitHub feature"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(s.comments(), vec![]);
    assert!(s.world.sim.uploads(forge_of(kind), s.repo()).is_empty());
    // The only writes tried are the three the forge refused: the comment on the missing pull
    // request, and the comment and the upload with the read-only token.
    let writes = s.writes();
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert!(
        writes[0].contains("/77/")
            && writes[2].contains(match kind {
                Kind::Github => "/git/blobs",
                Kind::Gitlab => "/uploads",
                Kind::Bitbucket => "/downloads",
            }),
        "{writes:?}"
    );
}

fn pr_commits_pushes_and_opens_once(kind: Kind) {
    let s = Site::new(kind);
    let short = &s.head[..8];
    // Nothing changed, then nothing matching: nothing happens.
    let r = s.run(&["pr", "create"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no files changed"), "{}", r.stderr);
    s.write("notes.txt", b"scratch\n");
    let r = s.run(&["pr", "create", "*.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no changed file matches"), "{}", r.stderr);
    assert!(s.pulls().is_empty() && s.world.sim.git_pushes().is_empty());

    s.write("dvc.lock", b"v2\n");
    s.write("metrics/score.json", b"{\"acc\": 0.9}\n");
    let r = s.run(&["pr", "create", "dvc.lock", "metrics/*.json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    s.assert_no_secret(&r);
    let branch = format!("main-cml-pr-{short}");
    let pulls = s.pulls();
    assert_eq!(pulls.len(), 1);
    let p = &pulls[0];
    assert_eq!(
        (p.source.as_str(), p.target.as_str()),
        (branch.as_str(), "main")
    );
    assert_eq!(p.title, format!("CML PR for main {short}"));
    assert!(p.body.contains(&format!("/commit/{}", s.head)));
    assert!(
        r.stdout.trim().ends_with(&p.number.to_string()),
        "{}",
        r.stdout
    );
    // The branch on the remote holds exactly the matching files, committed with [skip ci].
    let bare = s.bare.clone();
    let tip = git(&bare, &["rev-parse", &format!("refs/heads/{branch}")]);
    assert_eq!(p.head_sha, tip);
    assert_eq!(
        git(&bare, &["log", "-1", "--format=%s", &tip]),
        format!("CML PR for {short} [skip ci]")
    );
    let files = git(&bare, &["diff", "--name-only", &s.head, &tip]);
    assert_eq!(files, "dvc.lock\nmetrics/score.json");
    let user = match kind {
        Kind::Github => "x-access-token",
        Kind::Gitlab => "oauth2",
        Kind::Bitbucket => "cml-sim",
    };
    assert_eq!(
        s.world.sim.git_pushes(),
        vec![(format!("{}.git", s.repo()), user.to_string())]
    );
    // The token is nowhere in the checkout.
    let config = std::fs::read_to_string(s.work.join(".git/config")).unwrap();
    for secret in s.secrets() {
        assert!(!config.contains(&secret));
    }
    // Again for the same commit: the open pull request is reused, nothing is pushed.
    git(&s.work, &["checkout", "-q", "main"]);
    s.write("dvc.lock", b"v2\n");
    let r = s.run(&["pr", "dvc.lock", "--md"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.trim(),
        format!("[CML's Pull Request]({})", pr_url(&s, p.number))
    );
    assert_eq!(s.pulls().len(), 1);
    assert_eq!(s.world.sim.git_pushes().len(), 1);

    // Auto-merge: no [skip ci] (its checks must run).
    git(&s.work, &["checkout", "-q", "-f", "main"]);
    git(&s.work, &["checkout", "-q", "-b", "dev"]);
    s.write("dvc.lock", b"v3\n");
    let mut c = s.cml(&["pr", "create", "--squash", "--target-branch=dev"]);
    c.env("REPO_TOKEN", kind.token());
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let p = s.pulls().into_iter().find(|p| p.target == "dev").unwrap();
    assert_eq!(p.auto_merge.as_deref(), Some("squash"));
    let tip = git(
        &bare,
        &["rev-parse", &format!("refs/heads/dev-cml-pr-{short}")],
    );
    assert_eq!(
        git(&bare, &["log", "-1", "--format=%s", &tip]),
        format!("CML PR for {short}")
    );
    // GitLab cannot rebase-merge: refused before anything is pushed.
    if kind == Kind::Gitlab {
        git(&s.work, &["checkout", "-q", "-f", "main"]);
        s.write("dvc.lock", b"v4\n");
        let pushes = s.world.sim.git_pushes().len();
        let r = s.run(&["pr", "create", "--rebase", "--branch=rebased"]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains("rebase auto-merge") && r.stderr.contains("hint:"),
            "{}",
            r.stderr
        );
        assert_eq!(s.world.sim.git_pushes().len(), pushes);
    }
    // A token that may not write pushes nothing.
    git(&s.work, &["checkout", "-q", "-f", "main"]);
    s.write("dvc.lock", b"v5\n");
    let mut c = s.cml(&["pr", "create", "--branch=readonly"]);
    c.env("REPO_TOKEN", read_only_token(kind));
    let r = run(c);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("pushing branch readonly"), "{}", r.stderr);
    assert!(git(&bare, &["branch", "--list", "readonly"]).is_empty());
}

#[test]
fn pr_on_a_github_pull_request_event_branches_from_its_head_not_the_merge_commit() {
    let s = Site::new(Kind::Github);
    // The pull request's head is pushed; the checkout is a merge commit on top of it.
    git(
        &s.work,
        &["push", "-q", s.bare.to_str().unwrap(), "main:feature"],
    );
    git(
        &s.work,
        &["commit", "-q", "--allow-empty", "-m", "merge commit"],
    );
    let event = s.world.tmp.path().join("event.json");
    std::fs::write(
        &event,
        format!(
            "{{\"pull_request\": {{\"number\": 3, \"head\": {{\"sha\": \"{}\"}}}}}}",
            s.head
        ),
    )
    .unwrap();
    s.write("dvc.lock", b"from the pull request\n");
    let mut c = s.world.cml(&["pr", "create"]);
    c.current_dir(&s.work)
        .env("REPO_TOKEN", Kind::Github.token())
        .env("GITHUB_REPOSITORY", s.repo())
        .env("GITHUB_SERVER_URL", s.world.sim.url())
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", &event)
        .env("GITHUB_HEAD_REF", "feature")
        .env("GITHUB_SHA", git(&s.work, &["rev-parse", "HEAD"]));
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let branch = format!("feature-cml-pr-{}", &s.head[..8]);
    let tip = git(&s.bare, &["rev-parse", &format!("refs/heads/{branch}")]);
    assert_eq!(git(&s.bare, &["rev-parse", &format!("{tip}^")]), s.head);
    let p = &s.pulls()[0];
    assert_eq!(
        (p.source.as_str(), p.target.as_str()),
        (branch.as_str(), "feature")
    );
}

fn pr_url(s: &Site, n: u64) -> String {
    let base = s.world.repo_url();
    match s.kind() {
        Kind::Github => format!("{base}/pull/{n}"),
        Kind::Gitlab => format!("{base}/-/merge_requests/{n}"),
        Kind::Bitbucket => format!("{base}/pull-requests/{n}"),
    }
}

/// The seed's lines, through a shell, in each forge's CI environment.
fn the_seed_workflow_lines_run_unchanged(kind: Kind) {
    let s = Site::new(kind);
    s.write("plot.png", PNG);
    s.write("metrics.txt", b"accuracy: 0.93\n");
    let script = "cat metrics.txt >> report.md\ncml publish plot.png --md --title=\"Confusion Matrix\" >> report.md\ncml send-comment report.md\n";
    let bin = harness::cml_exe();
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = s.world.cml(&[]);
    c.current_dir(&s.work);
    c.env("PATH", path).env("REPO_TOKEN", kind.token());
    match kind {
        Kind::Github => c
            .env("GITHUB_REPOSITORY", s.repo())
            .env("GITHUB_SERVER_URL", s.world.sim.url())
            .env("GITHUB_SHA", &s.head),
        Kind::Gitlab => c
            .env("CI_PROJECT_URL", s.world.repo_url())
            .env("CI_COMMIT_SHA", &s.head),
        Kind::Bitbucket => c
            .env("BITBUCKET_GIT_HTTP_ORIGIN", s.world.repo_url())
            .env("BITBUCKET_REPO_UUID", "{1}")
            .env("BITBUCKET_COMMIT", &s.head),
    };
    let mut sh = Command::new("sh");
    sh.arg("-ec").arg(script).current_dir(&s.work).env_clear();
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh.env_remove("CML_DRIVER");
    sh.stdout(Stdio::piped()).stderr(Stdio::piped());
    let r = run(sh);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    s.assert_no_secret(&r);
    let report = std::fs::read_to_string(s.work.join("report.md")).unwrap();
    assert!(
        report.starts_with("accuracy: 0.93\n![](http://"),
        "{report}"
    );
    assert!(
        report.trim_end().ends_with("\"Confusion Matrix\")"),
        "{report}"
    );
    let c = s.comments();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].on, CommentOn::Commit(s.head.clone()));
    assert!(c[0].body.starts_with(report.trim_end()), "{}", c[0].body);
    let url = report
        .split("![](")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert_eq!(s.get(url), (200, PNG.to_vec()));
}

#[test]
fn github_check_runs_need_an_app_token() {
    let s = Site::with(Kind::Github, |cfg| {
        cfg.pats.push(cml_sim::Pat {
            token: "ghs_actionsinstallationtoken".into(),
            admin: true,
        })
    });
    s.write("report.md", b"## Results\n\nall good\n");
    // A personal access token: GitHub refuses, and says why.
    let r = s.run(&["check", "create", "report.md"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("only GitHub Apps can create check runs"),
        "{}",
        r.stderr
    );
    assert!(s.world.sim.checks(s.repo()).is_empty());
    // Bad values fail before any call.
    let r = s.run(&["check", "create", "report.md", "--conclusion=great"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("invalid --conclusion \\\"great\\\""),
        "{}",
        r.stderr
    );
    // Actions' GITHUB_TOKEN (an installation token).
    let mut c = s.cml(&[
        "send-github-check",
        "report.md",
        "--title=Nightly",
        "--conclusion=failure",
    ]);
    c.env_remove("REPO_TOKEN")
        .env("GITHUB_TOKEN", "ghs_actionsinstallationtoken");
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let checks = s.world.sim.checks(s.repo());
    assert_eq!(checks.len(), 1);
    let k = &checks[0];
    assert_eq!(
        (
            k.name.as_str(),
            k.head_sha.as_str(),
            k.status.as_str(),
            k.conclusion.as_deref()
        ),
        ("Nightly", s.head.as_str(), "completed", Some("failure"))
    );
    assert_eq!(
        (k.title.as_str(), k.summary.as_str()),
        ("Nightly", "## Results\n\nall good\n")
    );
    assert!(r.stdout.trim().ends_with(&format!("/runs/{}", k.id)));
}

#[test]
fn gitlab_notes_longer_than_its_limit_are_refused_before_posting() {
    let s = Site::new(Kind::Gitlab);
    let long = "x".repeat(1_000_001);
    s.write("report.md", long.as_bytes());
    let r = s.run(&["comment", "create", "report.md", "--no-publish"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("accepts at most 1000000") && r.stderr.contains("hint:"),
        "{}",
        r.stderr
    );
    assert!(s.comments().is_empty());
    // Just under the limit, watermark included, it is posted.
    let fits = "y".repeat(1_000_000 - 40);
    s.write("report.md", fits.as_bytes());
    let r = s.run(&["comment", "create", "report.md"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(s.comments().len(), 1);
}

#[test]
fn watch_updates_the_comment_when_the_file_changes() {
    let s = Site::new(Kind::Github);
    s.write("report.md", b"epoch 1\n");
    let mut c = s.cml(&["comment", "create", "report.md", "--watch"]);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out: {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("the first comment", &|| s.comments().len() == 1);
    s.write("report.md", b"epoch 2\n");
    wait("the update", &|| {
        s.comments()
            .first()
            .is_some_and(|c| c.body.starts_with("epoch 2\n"))
    });
    assert_eq!(s.comments().len(), 1);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "--watch did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

/// `--watch --trigger-file F` (CML's): nothing is posted until F appears; then the report is
/// posted, F deleted, and each later F updates the same comment.
#[test]
fn a_trigger_file_posts_the_report_each_time_it_appears() {
    let s = Site::new(Kind::Github);
    s.write("report.md", b"epoch 1\n");
    let mut c = s.cml(&[
        "comment",
        "create",
        "report.md",
        "--watch",
        "--trigger-file=go",
    ]);
    c.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out: {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert!(s.comments().is_empty(), "posted before the trigger");
    s.write("go", b"");
    wait("the first comment", &|| s.comments().len() == 1);
    wait("the trigger's removal", &|| !s.work.join("go").exists());
    s.write("report.md", b"epoch 2\n");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        s.comments()[0].body.starts_with("epoch 1\n"),
        "updated without a trigger"
    );
    s.write("go", b"");
    wait("the update", &|| {
        s.comments()
            .first()
            .is_some_and(|c| c.body.starts_with("epoch 2\n"))
    });
    wait("the trigger's removal", &|| !s.work.join("go").exists());
    assert_eq!(s.comments().len(), 1);
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "--watch did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(out.lines().count(), 2, "one URL per post: {out}");
}

#[test]
fn ci_configures_identity_and_the_token_for_plain_git() {
    for kind in [Kind::Github, Kind::Gitlab, Kind::Bitbucket] {
        let s = Site::new(kind);
        // What actions/checkout leaves behind, which would be sent instead of our token.
        git(
            &s.work,
            &[
                "config",
                "http.https://github.com/.extraheader",
                "AUTHORIZATION: basic stale",
            ],
        );
        // `cml repo prepare` is CML's newer name of `cml ci`.
        let command: &[&str] = match kind {
            Kind::Gitlab => &["repo", "prepare"],
            _ => &["ci"],
        };
        let r = s.run(
            &[
                command,
                &["--user-name=Bot", "--user-email=bot@example.com"],
            ]
            .concat(),
        );
        assert_eq!(r.code, 0, "{kind:?}: {}", r.stderr);
        s.assert_no_secret(&r);
        assert_eq!(git(&s.work, &["config", "user.name"]), "Bot");
        assert_eq!(git(&s.work, &["config", "user.email"]), "bot@example.com");
        assert!(Command::new("git")
            .args(["config", "http.https://github.com/.extraheader"])
            .current_dir(&s.work)
            .output()
            .unwrap()
            .stdout
            .is_empty());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.work.join(".git/config"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{kind:?}: .git/config is {mode:o}");
        let remotes = git(&s.work, &["remote", "-v"]);
        assert!(!remotes.contains('@'), "{remotes}");
        // Plain git now pushes with the token, with nothing else configured.
        std::fs::write(s.work.join("new.txt"), "n\n").unwrap();
        git(&s.work, &["add", "new.txt"]);
        git(&s.work, &["commit", "-q", "-m", "more"]);
        git(&s.work, &["push", "-q", "origin", "HEAD:refs/heads/pushed"]);
        assert_eq!(
            git(&s.bare, &["rev-parse", "refs/heads/pushed"]),
            git(&s.work, &["rev-parse", "HEAD"])
        );
    }
}

/// A report linking to the process's environment (the token is in it), to a file above the
/// working tree, to a symlink in the tree pointing out of it, and to `.git/config` (where
/// `cml ci` stored the token): none is uploaded, each stays a plain link with a warning, and
/// a file in the tree is still published.
fn links_to_files_outside_the_tree_stay_links(kind: Kind) {
    let s = Site::new(kind);
    let r = s.run(&["ci"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let marker = "MARKER-a-file-outside-the-tree";
    // `work/reports/../../secret` is the directory holding the checkout.
    let secret = s.world.tmp.path().join("secret");
    std::fs::write(&secret, marker).unwrap();
    std::os::unix::fs::symlink(&secret, s.work.join("leak.txt")).unwrap();
    s.write("reports/ok.csv", b"a,b\n1,2\n");
    let links = [
        ("/proc/self/environ", "a file of the system"),
        ("../../secret", "outside the repository's working tree"),
        ("../leak.txt", "outside the repository's working tree"),
        ("../.git/config", "one of Git's own files"),
    ];
    s.write(
        "reports/report.md",
        format!(
            "# Report\n\n[env]({}) [up]({}) ![sym]({}) [git]({})\n\n[ok](ok.csv)\n",
            links[0].0, links[1].0, links[2].0, links[3].0
        )
        .as_bytes(),
    );
    let r = s.run(&["comment", "create", "reports/report.md"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    s.assert_no_secret(&r);
    let uploads = s.world.sim.uploads(forge_of(kind), s.repo());
    let names: Vec<&str> = uploads.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, vec!["ok.csv"]);
    for u in &uploads {
        let text = String::from_utf8_lossy(&u.bytes);
        assert!(!text.contains(marker), "{}", u.name);
        for secret in s.secrets() {
            assert!(!text.contains(&secret), "{}", u.name);
        }
    }
    let body = &s.comments()[0].body;
    for (link, _) in links {
        assert!(body.contains(&format!("]({link})")), "{link}: {body}");
    }
    assert!(!body.contains("(ok.csv)"), "{body}");
    // One warning per refused link, naming it and why.
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("not published, left as a link"))
        .collect();
    assert_eq!(warnings.len(), links.len(), "{}", r.stderr);
    for (w, (link, why)) in warnings.iter().zip(links) {
        assert!(w.contains(link) && w.contains(why), "{w}");
    }
}

/// What a [`Recorder`] received: a request's path and whether it carried `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Received {
    path: String,
    authorization: bool,
}

/// A server on another port of 127.0.0.1 (so another host for Git) that records each
/// request and answers 401, asking for credentials.
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    fn start() -> Recorder {
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
                record.lock().unwrap().push(Received {
                    path: head.split_whitespace().nth(1).unwrap_or("").to_string(),
                    authorization: head
                        .lines()
                        .any(|l| l.to_ascii_lowercase().starts_with("authorization:")),
                });
                let _ = conn.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm=\"x\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Recorder { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn pr_commits_exactly_the_matching_files_even_when_named_like_patterns() {
    let s = Site::new(Kind::Github);
    // Matching `*.json` and `:(glob)*`, with names Git would read as patterns.
    s.write("a.json", b"{}\n");
    s.write("*.json", b"star\n");
    s.write(":(glob)**", b"magic\n");
    // Not matching: they must stay out of the commit.
    s.write("sub/deep.json", b"{}\n");
    s.write("notes.txt", b"scratch\n");
    s.write("dvc.lock", b"v2\n");
    s.write("staged.txt", b"staged before\n");
    git(&s.work, &["add", "staged.txt"]);
    let r = s.run(&["pr", "create", "*.json", ":(glob)*"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let branch = format!("main-cml-pr-{}", &s.head[..8]);
    let tip = git(&s.bare, &["rev-parse", &format!("refs/heads/{branch}")]);
    let files = git(&s.bare, &["diff", "--name-only", &s.head, &tip]);
    assert_eq!(files, "*.json\n:(glob)**\na.json");
    // What was staged before is still staged, not committed.
    assert_eq!(
        git(&s.work, &["diff", "--cached", "--name-only"]),
        "staged.txt"
    );
}

#[test]
fn pr_and_ci_send_the_token_only_to_the_forge() {
    let s = Site::new(Kind::Github);
    let elsewhere = Recorder::start();
    let forge_remote = git(&s.work, &["remote", "get-url", "origin"]);
    let cml = |args: &[&str]| {
        let mut c = s.cml(args);
        c.env("CML_REPO", s.world.repo_url());
        run(c)
    };
    let untouched = |r: &Run, what: &str| {
        assert_eq!(r.code, 2, "{what}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "the Git remote origin points at {}, which is not on the forge of {}",
                elsewhere.url("octo/app.git"),
                s.world.repo_url()
            )) && r
                .stderr
                .contains("hint: point the remote at the repository on the forge"),
            "{what}: {}",
            r.stderr
        );
        s.assert_no_secret(r);
        assert_eq!(
            elsewhere.seen(),
            vec![],
            "{what}: the other server was called"
        );
        assert!(s.pulls().is_empty() && s.world.sim.git_pushes().is_empty());
        assert_eq!(git(&s.work, &["branch", "--show-current"]), "main");
        assert_eq!(git(&s.work, &["branch", "--list", "main-cml-pr-*"]), "");
        let config = std::fs::read_to_string(s.work.join(".git/config")).unwrap();
        assert!(!config.contains("extraheader"), "{what}: {config}");
    };
    s.write("dvc.lock", b"v2\n");
    // `origin` on another server: refused before anything is sent.
    git(
        &s.work,
        &[
            "remote",
            "set-url",
            "origin",
            &elsewhere.url("octo/app.git"),
        ],
    );
    untouched(&cml(&["pr", "create"]), "pr");
    untouched(&cml(&["ci"]), "ci");
    // Fetching from the forge but pushing elsewhere: refused too.
    git(&s.work, &["remote", "set-url", "origin", &forge_remote]);
    git(
        &s.work,
        &[
            "remote",
            "set-url",
            "--push",
            "origin",
            &elsewhere.url("octo/app.git"),
        ],
    );
    untouched(&cml(&["pr", "create"]), "pr with a push URL elsewhere");
    // A bad time limit for Git is refused before anything happens, too.
    git(&s.work, &["config", "--unset-all", "remote.origin.pushurl"]);
    for (value, says) in [
        ("soon", "invalid CML_GIT_TIMEOUT=\\\"soon\\\""),
        ("0", "longer than 0"),
    ] {
        for command in ["pr", "ci"] {
            let mut c = s.cml(&[command]);
            c.env("CML_REPO", s.world.repo_url())
                .env("CML_GIT_TIMEOUT", value);
            let r = run(c);
            assert_eq!(r.code, 2, "{command} {value}: {}", r.stderr);
            assert!(
                r.stderr.contains(says) && r.stderr.contains("hint: give seconds"),
                "{command} {value}: {}",
                r.stderr
            );
            assert!(s.pulls().is_empty() && s.world.sim.git_pushes().is_empty());
            assert_eq!(git(&s.work, &["branch", "--show-current"]), "main");
            let config = std::fs::read_to_string(s.work.join(".git/config")).unwrap();
            assert!(!config.contains("extraheader") && !config.contains("Olivaw"));
        }
    }
    // Back on the forge alone, the same command pushes there.
    let r = cml(&["pr", "create"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(s.world.sim.git_pushes().len(), 1);
    assert_eq!(elsewhere.seen(), vec![]);
}

#[test]
fn ci_prints_no_credential_of_the_remote_url() {
    let s = Site::new(Kind::Gitlab);
    // What GitLab's runners leave in the checkout: the job token in the remote URL.
    let job_token = "glcbt-64_SECRETJOBTOKEN1234";
    let plain = git(&s.work, &["remote", "get-url", "origin"]);
    let with_token = plain.replacen(
        "http://",
        &format!("http://gitlab-ci-token:{job_token}@"),
        1,
    );
    git(&s.work, &["remote", "set-url", "origin", &with_token]);
    let mut c = s.cml(&["ci", "--log=debug", "--unshallow"]);
    c.env("CML_REPO", s.world.repo_url());
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stdout.contains(job_token) && !r.stderr.contains(job_token),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    s.assert_no_secret(&r);
    // The token is stored for the forge's host, and plain git pushes with it (not with the
    // job token in the URL, which may not push).
    let config = std::fs::read_to_string(s.work.join(".git/config")).unwrap();
    let port = s.world.sim.url().rsplit(':').next().unwrap().to_string();
    assert!(
        config.contains(&format!("[http \"http://127.0.0.1:{port}/\"]")),
        "{config}"
    );
    git(&s.work, &["push", "-q", "origin", "HEAD:refs/heads/pushed"]);
    assert_eq!(
        s.world.sim.git_pushes(),
        vec![(format!("{}.git", s.repo()), "oauth2".to_string())]
    );
    // A git failure's message passes no URL credential on either.
    let mut c = s.cml(&["pr", "create", "--branch=x"]);
    c.env("CML_REPO", s.world.repo_url())
        .env("REPO_TOKEN", READ_ONLY);
    s.write("dvc.lock", b"v9\n");
    let r = run(c);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("pushing branch x"), "{}", r.stderr);
    assert!(!r.stderr.contains(job_token), "{}", r.stderr);
}
