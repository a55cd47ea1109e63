//! `cml pr create GLOBS` (old form `cml pr GLOBS`): commit the changed files matching GLOBS on
//! a new branch, push it with the token, and open a pull (merge) request, or print the one
//! already open for that branch.
//!
//! Guarantees: the commit holds the changed files matching GLOBS and nothing else (file names
//! are passed to Git literally, and files staged before are left out); the token is sent only
//! to the forge's host. Nothing is committed, pushed or opened when no changed file matches,
//! when the merge method is not available on the forge, when the remote or target branch
//! cannot be found, or when the remote points at a host other than the forge's. The branch
//! starts at the commit under test and is `TARGET-cml-pr-SHORTSHA` (CML's name), so running
//! again for the same commit reuses it and its pull request instead of opening another. The
//! checkout is left on the new branch, as CML leaves it.

use super::git::{changed_paths, glob_match};
use super::{head_commit, Git};
use crate::cli::PrArgs;
use crate::exit::Failure;
use crate::settings::ReportSettings;
use anyhow::anyhow;
use cml_core::report::{pr_branch, pr_commit_message, pr_title_and_body, short_sha};
use cml_forge::{AutoMerged, MergeMethod, NewPullRequest, Reports};

/// CML's default files.
pub const DEFAULT_GLOBS: &[&str] = &["dvc.lock", ".gitignore"];
/// CML's Git identity when none is configured.
pub const DEFAULT_USER_NAME: &str = "Olivaw[bot]";
pub const DEFAULT_USER_EMAIL: &str = "olivaw@iterative.ai";

/// The merge asked for: `--merge` (`--auto-merge`), `--squash` or `--rebase`, at most one.
pub fn merge_method(args: &PrArgs) -> Result<Option<MergeMethod>, Failure> {
    let asked: Vec<(&str, MergeMethod)> = [
        ("--merge", args.merge, MergeMethod::Merge),
        ("--squash", args.squash, MergeMethod::Squash),
        ("--rebase", args.rebase, MergeMethod::Rebase),
    ]
    .into_iter()
    .filter(|(_, on, _)| *on == Some(true))
    .map(|(name, _, m)| (name, m))
    .collect();
    match asked.as_slice() {
        [] => Ok(None),
        [(_, m)] => Ok(Some(*m)),
        many => Err(Failure::usage(anyhow!(
            "{} exclude each other (CML refuses this too)\nhint: ask for one merge method",
            many.iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(" and ")
        ))),
    }
}

/// Runs `cml pr create`, merging with `method` if any.
pub async fn run(
    s: ReportSettings,
    args: PrArgs,
    method: Option<MergeMethod>,
) -> Result<i32, Failure> {
    let git = Git::new();
    let remote = args.remote.clone().unwrap_or_else(|| "origin".into());
    let checked = super::check_remote(&s, &remote)?;
    let status = git
        .run_raw(&["status", "--porcelain=v1", "-z", "--untracked-files=all"])
        .map_err(Failure::error)?;
    let changed = changed_paths(&status);
    if changed.is_empty() {
        tracing::warn!("no files changed: nothing to do");
        return Ok(0);
    }
    let globs: Vec<String> = if args.globs.is_empty() {
        DEFAULT_GLOBS.iter().map(|g| g.to_string()).collect()
    } else {
        args.globs.clone()
    };
    let paths: Vec<&String> = changed
        .iter()
        .filter(|p| globs.iter().any(|g| glob_match(g, p)))
        .collect();
    if paths.is_empty() {
        tracing::warn!(
            globs = globs.join(" ").as_str(),
            "no changed file matches: nothing to do"
        );
        return Ok(0);
    }
    let sha = head_commit(None, &s)?;
    let target = match args.target_branch.clone().or_else(|| s.ci.branch.clone()) {
        Some(t) => t,
        None => git
            .try_run(&["branch", "--show-current"])
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                Failure::usage(anyhow!(
                    "the checkout is not on a branch, so the pull request has no target\nhint: pass --target-branch"
                ))
            })?,
    };
    let source = args
        .branch
        .clone()
        .unwrap_or_else(|| pr_branch(&target, &sha));

    let forge = super::connect(&s).await?;
    if let Some(m) = method {
        forge
            .supports_merge(m)
            .map_err(|e| Failure::usage(e.into()))?;
    }
    let authed = super::remote_git(forge.as_ref(), &checked).await?;

    let heads = authed
        .run(&[
            "ls-remote",
            "--heads",
            &remote,
            &format!("refs/heads/{source}"),
        ])
        .map_err(|e| Failure::error(e.context(format!("reading the branches of {remote}"))))?;
    if heads.is_empty() {
        let message = pr_commit_message(
            args.message.as_deref(),
            &sha,
            args.skip_ci,
            method.is_some(),
        );
        // The branch starts at the commit under test. On a GitHub pull request event the
        // checkout is GitHub's merge commit, not that commit: the commit is fetched and the
        // branch made from it, carrying the changes along (as CML does).
        let head = git.try_run(&["rev-parse", "HEAD"]).unwrap_or_default();
        if head != sha {
            authed
                .run(&["fetch", "--quiet", &remote, &sha])
                .map_err(|e| Failure::error(e.context(format!("fetching commit {sha}"))))?;
        }
        git.run(&["checkout", "-B", &source, &sha])
            .map_err(Failure::error)?;
        // Exactly these files (paths are literal: see `Git`), and only them: `--only` leaves
        // out whatever else was staged before.
        let mut add = vec!["add", "--all", "--"];
        add.extend(paths.iter().map(|p| p.as_str()));
        git.run(&add).map_err(Failure::error)?;
        let identity = identity(&git, &args);
        let mut commit: Vec<&str> = identity.iter().map(String::as_str).collect();
        commit.extend(["commit", "-m", &message, "--only", "--"]);
        commit.extend(paths.iter().map(|p| p.as_str()));
        git.run(&commit).map_err(Failure::error)?;
        authed
            .run(&[
                "push",
                "--set-upstream",
                &remote,
                &format!("{source}:refs/heads/{source}"),
            ])
            .map_err(|e| {
                Failure::error(e.context(format!("pushing branch {source} to {remote}")))
            })?;
        tracing::info!(
            branch = source.as_str(),
            files = paths.len() as u64,
            "pushed the changes"
        );
    } else if let Some(pr) = existing(forge.as_ref(), &source, &target).await? {
        tracing::info!(
            branch = source.as_str(),
            "branch and pull request exist already"
        );
        println!("{}", render(&pr.url, args.md.unwrap_or(false)));
        return Ok(0);
    }
    let (title, body) = pr_title_and_body(&target, &sha, &forge.web_url());
    let pr = forge
        .create_pull_request(&NewPullRequest {
            source: source.clone(),
            target: target.clone(),
            title: args.title.clone().unwrap_or(title),
            body: args.body.clone().unwrap_or(body),
        })
        .await
        .map_err(|e| Failure::error(e.into()))?;
    tracing::info!(
        url = pr.url.as_str(),
        "opened pull request #{} from {source} into {target} (commit {})",
        pr.number,
        short_sha(&sha)
    );
    if let Some(m) = method {
        match forge.auto_merge(&pr, m).await {
            Ok(AutoMerged::Scheduled) => {
                tracing::info!(
                    "auto-merge ({}) is set: it merges when its checks pass",
                    m.as_str()
                )
            }
            Ok(AutoMerged::MergedNow) => tracing::info!("merged now ({})", m.as_str()),
            Err(e) => {
                println!("{}", render(&pr.url, args.md.unwrap_or(false)));
                return Err(Failure::error(e.into()));
            }
        }
    }
    println!("{}", render(&pr.url, args.md.unwrap_or(false)));
    Ok(0)
}

async fn existing(
    forge: &dyn Reports,
    source: &str,
    target: &str,
) -> Result<Option<cml_forge::PullRequest>, Failure> {
    let prs = forge
        .open_pull_requests(source, target)
        .await
        .map_err(|e| Failure::error(e.into()))?;
    Ok(prs.into_iter().next())
}

/// `-c user.name=… -c user.email=…` when given, or when Git has no identity configured.
fn identity(git: &Git, args: &PrArgs) -> Vec<String> {
    let mut out = Vec::new();
    let name = args.user_name.clone().or_else(|| {
        git.try_run(&["config", "user.name"])
            .is_none()
            .then(|| DEFAULT_USER_NAME.into())
    });
    let email = args.user_email.clone().or_else(|| {
        git.try_run(&["config", "user.email"])
            .is_none()
            .then(|| DEFAULT_USER_EMAIL.into())
    });
    if let Some(n) = name {
        out.extend(["-c".to_string(), format!("user.name={n}")]);
    }
    if let Some(e) = email {
        out.extend(["-c".to_string(), format!("user.email={e}")]);
    }
    out
}

fn render(url: &str, md: bool) -> String {
    if md {
        format!("[CML's Pull Request]({url})")
    } else {
        url.to_string()
    }
}
