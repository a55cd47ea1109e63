//! `cml comment create|update` (old name `cml send-comment`): post a Markdown report as a
//! comment on a pull request, a commit or an issue.
//!
//! Order of work, so that a bad input posts nothing: the file is read, the target parsed and
//! resolved, linked files uploaded, the length checked against the forge's limit; only then is
//! the comment written (one call: create, or update of our last comment found by its
//! watermark).
//!
//! Which linked files are published: only regular files inside the repository's working tree
//! (`git rev-parse --show-toplevel`; outside a repository, the current directory), checked
//! after following symlinks, never one in a `.git` directory (`cml ci` keeps the token in
//! `.git/config`) and never one of `/proc`, `/sys` or `/dev`. A link to anything else
//! (`/proc/self/environ`, `../../secret`, a symlink pointing out of the tree, a directory)
//! stays a plain link, with a warning, so a report cannot carry the runner's own files (its
//! token among them) to the forge.

use super::asset::{mime_of, Publisher, PUBLISH_URL_VAR};
use super::{file_name, head_commit, read_text};
use crate::cli::CommentArgs;
use crate::exit::Failure;
use crate::settings::{option, Env, ReportSettings};
use anyhow::anyhow;
use cml_core::report::{
    expand_watermark_title, has_watermark, local_links, rewrite_links, with_watermark, Target,
    TargetSpec,
};
use cml_forge::Reports;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `--watch` looks at the file.
const WATCH_POLL: Duration = Duration::from_millis(500);

/// Runs `cml comment create` (`update`: `cml comment update` or `--update`).
pub async fn run(
    s: ReportSettings,
    args: CommentArgs,
    update: bool,
    env: &dyn Env,
) -> Result<i32, Failure> {
    let update = update || args.update;
    let target_raw = if args.pr {
        Some("pr".to_string())
    } else {
        option(args.target.clone(), env, "CML_COMMENT_TARGET")
    };
    let spec = match target_raw.as_deref() {
        Some(t) => TargetSpec::parse(t).map_err(|e| Failure::usage(e.into()))?,
        None => TargetSpec::Auto,
    };
    let commit_sha = option(args.commit_sha.clone(), env, "CML_COMMENT_COMMIT_SHA");
    let title = expand_watermark_title(
        &option(
            args.watermark_title.clone(),
            env,
            "CML_COMMENT_WATERMARK_TITLE",
        )
        .unwrap_or_default(),
        &s.ci.workflow,
        &s.ci.run,
    );
    // --native wins over an asset server, as in CML.
    let server = option(args.publish_url.clone(), env, "CML_COMMENT_PUBLISH_URL")
        .or_else(|| env.get(PUBLISH_URL_VAR).filter(|v| !v.is_empty()))
        .filter(|_| !args.native);
    let report = read_text(&args.markdown_file)?;
    // Resolve the commit before connecting when it is needed, so a missing one fails first.
    let needs_commit = matches!(spec, TargetSpec::Auto | TargetSpec::Pr | TargetSpec::Commit);
    let commit = needs_commit
        .then(|| head_commit(commit_sha.as_deref(), &s))
        .transpose()?;
    let forge = super::connect(&s).await?;
    let target = resolve_target(forge.as_ref(), &spec, s.ci.pr, commit.as_deref()).await?;
    let publisher = (!args.no_publish).then(|| Publisher::new(forge.as_ref(), server));
    let root = publish_root()?;
    let post = Post {
        forge: forge.as_ref(),
        publisher: publisher.as_ref(),
        root: &root,
        target: &target,
        title: &title,
        watermark: !args.rm_watermark,
        file: &args.markdown_file,
    };
    let url = post.send(&report, update).await?;
    println!("{url}");
    if !args.watch {
        return Ok(0);
    }
    watch(&post, report).await
}

/// Where the comment goes, from `--target`, the CI's pull request and the forge.
async fn resolve_target(
    forge: &dyn Reports,
    spec: &TargetSpec,
    ci_pr: Option<u64>,
    commit: Option<&str>,
) -> Result<Target, Failure> {
    let commit_of = || commit.unwrap_or_default().to_string();
    match spec {
        TargetSpec::CommitSha(sha) => Ok(Target::Commit(sha.clone())),
        TargetSpec::PrNumber(n) => Ok(Target::Pr(*n)),
        TargetSpec::Issue(n) => Ok(Target::Issue(*n)),
        TargetSpec::Commit => Ok(Target::Commit(commit_of())),
        TargetSpec::Auto | TargetSpec::Pr => {
            if let Some(n) = ci_pr {
                return Ok(Target::Pr(n));
            }
            let sha = commit_of();
            let prs = forge
                .pull_requests_with_commit(&sha)
                .await
                .map_err(|e| Failure::error(e.into()))?;
            match (prs.first(), spec) {
                (Some(pr), _) => Ok(Target::Pr(pr.number)),
                (None, TargetSpec::Auto) => Ok(Target::Commit(sha)),
                (None, _) => Err(Failure::error(anyhow!(
                    "no open pull request contains commit {sha} in {}\nhint: open one first, or use --target=commit",
                    forge.scope()
                ))),
            }
        }
    }
}

/// One comment to keep up to date.
struct Post<'a> {
    forge: &'a dyn Reports,
    publisher: Option<&'a Publisher<'a>>,
    /// Linked files are published only from below this directory (canonical).
    root: &'a Path,
    target: &'a Target,
    title: &'a str,
    watermark: bool,
    file: &'a str,
}

impl Post<'_> {
    /// Publishes linked files, checks the length, then creates or updates the comment.
    async fn send(&self, report: &str, update: bool) -> Result<String, Failure> {
        let mut body = match self.publisher {
            Some(p) => self.publish_links(p, report).await?,
            None => report.to_string(),
        };
        if self.watermark {
            body = with_watermark(&body, self.title);
        }
        let limit = self.forge.comment_limit();
        let len = body.chars().count();
        if len > limit {
            return Err(Failure::error(anyhow!(
                "the report {:?} is {len} characters with its watermark; {} accepts at most {limit}\nhint: shorten it, or publish the long parts with `cml asset publish` and link to them",
                self.file,
                self.forge.scope()
            )));
        }
        let existing = if update {
            let comments = self
                .forge
                .comments(self.target)
                .await
                .map_err(|e| Failure::error(e.into()))?;
            comments
                .into_iter()
                .rev()
                .find(|c| has_watermark(&c.body, self.title))
        } else {
            None
        };
        let url = match existing {
            Some(c) => {
                let url = self
                    .forge
                    .update_comment(self.target, &c.id, &body)
                    .await
                    .map_err(|e| Failure::error(e.into()))?;
                tracing::info!(url = url.as_str(), "updated the comment on {}", self.target);
                url
            }
            None => {
                if update {
                    tracing::info!("no earlier comment of ours on {}: posting one", self.target);
                }
                let url = self
                    .forge
                    .create_comment(self.target, &body)
                    .await
                    .map_err(|e| Failure::error(e.into()))?;
                tracing::info!(url = url.as_str(), "commented on {}", self.target);
                url
            }
        };
        Ok(url)
    }

    /// The report with each linked local file uploaded and its link pointing at the upload.
    /// Paths are relative to the report's directory; a link to a missing file, or to one that
    /// may not be published (see the module's documentation), is left as is, with a warning.
    async fn publish_links(&self, p: &Publisher<'_>, report: &str) -> Result<String, Failure> {
        let base = Path::new(self.file).parent().unwrap_or(Path::new(""));
        let mut replacements = Vec::new();
        for link in local_links(report) {
            let decoded = link.path.replace("%20", " ");
            let path = base.join(&decoded);
            let bytes = match publishable(&path, self.root) {
                Ok(bytes) => bytes,
                Err(refused) => {
                    tracing::warn!(
                        link = link.path.as_str(),
                        "the report links to {}: not published, left as a link",
                        refused.describe(self.root)
                    );
                    continue;
                }
            };
            let mime = mime_of(&path, &bytes, None);
            let url = p
                .upload(&file_name(&path), &bytes, &mime)
                .await
                .map_err(Failure::error)?;
            replacements.push((link.range, url));
        }
        Ok(rewrite_links(report, &replacements))
    }
}

/// The directory linked files may be published from: the repository's working tree, else
/// the current directory; canonical.
fn publish_root() -> Result<PathBuf, Failure> {
    let dir = super::Git::new()
        .try_run(&["rev-parse", "--show-toplevel"])
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .map_or_else(std::env::current_dir, Ok)
        .and_then(std::fs::canonicalize);
    dir.map_err(|e| {
        Failure::error(anyhow!(
            "cannot tell the working tree the report's files may come from: {e}\nhint: run in the repository's checkout"
        ))
    })
}

/// Why a linked file is not published.
#[derive(Debug)]
enum Refused {
    Missing,
    /// Outside the working tree; its real path.
    Outside(PathBuf),
    /// A pseudo-file of the system (`/proc`, `/sys`, `/dev`).
    System(PathBuf),
    /// In a `.git` directory of the tree: Git's own files (`cml ci` stores the token in
    /// `.git/config`).
    GitFile(PathBuf),
    NotAFile,
}

impl Refused {
    fn describe(&self, root: &Path) -> String {
        match self {
            Refused::Missing => "a file that does not exist".into(),
            Refused::Outside(real) => format!(
                "{}, which is outside the repository's working tree {}",
                real.display(),
                root.display()
            ),
            Refused::System(real) => format!("{}, a file of the system", real.display()),
            Refused::GitFile(real) => format!("{}, one of Git's own files", real.display()),
            Refused::NotAFile => "something that is not a regular file".into(),
        }
    }
}

/// Directories whose files are the system's, not the repository's, wherever the tree is.
const SYSTEM_DIRS: &[&str] = &["/proc", "/sys", "/dev"];

/// Whether the file at canonical path `real` may be published from the tree at `root`.
fn allowed(real: &Path, root: &Path) -> Result<(), Refused> {
    let refused = |make: fn(PathBuf) -> Refused| Err(make(real.to_path_buf()));
    if SYSTEM_DIRS.iter().any(|d| real.starts_with(d)) {
        return refused(Refused::System);
    }
    let Ok(relative) = real.strip_prefix(root) else {
        return refused(Refused::Outside);
    };
    if relative.components().any(|c| c.as_os_str() == ".git") {
        return refused(Refused::GitFile);
    }
    Ok(())
}

/// The contents of `path` if it may be published: after following symlinks, a regular file
/// below `root` (canonical), not in a `.git` directory and not in [`SYSTEM_DIRS`].
///
/// The file is checked by its real path, then opened without following a symlink in its last
/// component and checked again through the open descriptor (type, and on Linux the path the
/// kernel reports for it), so swapping a symlink in between the check and the read publishes
/// nothing.
fn publishable(path: &Path, root: &Path) -> Result<Vec<u8>, Refused> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let real = std::fs::canonicalize(path).map_err(|_| Refused::Missing)?;
    allowed(&real, root)?;
    if !std::fs::metadata(&real)
        .map_err(|_| Refused::Missing)?
        .is_file()
    {
        return Err(Refused::NotAFile);
    }
    // O_NONBLOCK: opening a FIFO swapped in meanwhile must not wait for a writer.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&real)
        .map_err(|_| Refused::Missing)?;
    if !file.metadata().map_err(|_| Refused::Missing)?.is_file() {
        return Err(Refused::NotAFile);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let opened = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map_err(|_| Refused::Missing)?;
        allowed(&opened, root)?;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|_| Refused::Missing)?;
    Ok(bytes)
}

/// `--watch`: updates the comment each time the file changes, until SIGINT or SIGTERM.
async fn watch(post: &Post<'_>, mut last: String) -> Result<i32, Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return Err(Failure::error(anyhow!("cannot watch for signals")));
    };
    tracing::info!(file = post.file, "watching for changes; stop with Ctrl-C");
    loop {
        tokio::select! {
            _ = int.recv() => return Ok(0),
            _ = term.recv() => return Ok(0),
            _ = tokio::time::sleep(WATCH_POLL) => {}
        }
        let Ok(now) = std::fs::read_to_string(post.file) else {
            continue;
        };
        if now != last {
            let url = post.send(&now, true).await?;
            println!("{url}");
            last = now;
        }
    }
}
