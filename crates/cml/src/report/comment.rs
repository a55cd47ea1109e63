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

use super::asset::{mime_of, Publisher};
use super::{file_name, head_commit, read_text};
use crate::cli::CommentArgs;
use crate::exit::Failure;
use crate::settings::ReportSettings;
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

/// What a `cml comment` command line asks for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub spec: TargetSpec,
    /// Edit our last comment (`comment update`, `--update`).
    pub update: bool,
    /// Add the hidden watermark (unless `--rm-watermark`).
    pub watermark: bool,
    /// Publish linked files (unless `--no-publish`).
    pub publish: bool,
    /// The asset server files go to; `None`: the forge (`--publish-native`, or no
    /// `--publish-url`).
    pub server: Option<String>,
    pub watch: bool,
    pub trigger_file: Option<String>,
}

impl Plan {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "target": match &self.spec {
                TargetSpec::Auto => "auto".to_string(),
                TargetSpec::Pr => "pr".to_string(),
                TargetSpec::Commit => "commit".to_string(),
                TargetSpec::CommitSha(sha) => format!("commit/{sha}"),
                TargetSpec::PrNumber(n) => format!("pr/{n}"),
                TargetSpec::Issue(n) => format!("issue/{n}"),
            },
            "update": self.update,
            "watermark": self.watermark,
            "publish": self.publish,
            "asset_server": self.server,
            "watch": self.watch,
            "trigger_file": self.trigger_file,
        })
    }
}

/// Checks the options (`update`: `cml comment update`): what is posted where.
pub fn plan(args: &CommentArgs, update: bool) -> Result<Plan, Failure> {
    let update = update || args.update.unwrap_or(false);
    let watermark = !args.rm_watermark.unwrap_or(false);
    if update && !watermark {
        return Err(Failure::usage(anyhow!(
            "--rm-watermark cannot be combined with updating a comment: our last comment is found by its watermark (CML refuses this too)\nhint: drop --rm-watermark, or post a new comment with `cml comment create`"
        )));
    }
    let target = match args.pr {
        Some(true) => Some("pr".to_string()),
        _ => args.target.clone().filter(|t| !t.is_empty()),
    };
    let spec = match target.as_deref() {
        Some(t) => TargetSpec::parse(t).map_err(|e| Failure::usage(e.into()))?,
        None => TargetSpec::Auto,
    };
    // --publish-native wins over an asset server, as in CML.
    let native = args.publish_native.unwrap_or(false);
    let server = args
        .publish_url
        .clone()
        .filter(|u| !u.is_empty() && !native);
    let watch = args.watch.unwrap_or(false);
    let trigger_file = args.trigger_file.clone().filter(|f| !f.is_empty());
    if trigger_file.is_some() && !watch {
        tracing::warn!("--trigger-file is used only with --watch: ignored");
    }
    Ok(Plan {
        spec,
        update,
        watermark,
        publish: args.publish.unwrap_or(true),
        server,
        watch,
        trigger_file: trigger_file.filter(|_| watch),
    })
}

/// Runs `cml comment create` (`cml comment update`, `--update`) as `plan` says.
pub async fn run(s: ReportSettings, args: CommentArgs, plan: Plan) -> Result<i32, Failure> {
    let commit_sha = args.commit_sha.clone().filter(|c| !c.is_empty());
    let title = expand_watermark_title(
        args.watermark_title.as_deref().unwrap_or_default(),
        &s.ci.workflow,
        &s.ci.run,
    );
    let report = read_text(&args.markdown_file)?;
    // Resolve the commit before connecting when it is needed, so a missing one fails first.
    let spec = &plan.spec;
    let needs_commit = matches!(spec, TargetSpec::Auto | TargetSpec::Pr | TargetSpec::Commit);
    let commit = needs_commit
        .then(|| head_commit(commit_sha.as_deref(), &s))
        .transpose()?;
    let forge = super::connect(&s).await?;
    let target = resolve_target(forge.as_ref(), spec, s.ci.pr, commit.as_deref()).await?;
    let publisher = plan
        .publish
        .then(|| Publisher::new(forge.as_ref(), plan.server.clone()));
    let root = publish_root()?;
    let post = Post {
        forge: forge.as_ref(),
        publisher: publisher.as_ref(),
        root: &root,
        target: &target,
        title: &title,
        watermark: plan.watermark,
        file: &args.markdown_file,
    };
    if let Some(trigger) = &plan.trigger_file {
        return watch_trigger(&post, Path::new(trigger), plan.update).await;
    }
    let url = post.send(&report, plan.update).await?;
    println!("{url}");
    if !plan.watch {
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

/// SIGINT and SIGTERM, which end a watch.
fn stop_signals() -> Result<(tokio::signal::unix::Signal, tokio::signal::unix::Signal), Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(int), Ok(term)) => Ok((int, term)),
        _ => Err(Failure::error(anyhow!("cannot watch for signals"))),
    }
}

/// `--watch --trigger-file`: each time the trigger file exists (it is there at the start, is
/// created, or changes), posts the report — the first time as asked, then as an update — and
/// deletes the trigger file, as CML does; until SIGINT or SIGTERM. A report that cannot be
/// posted is a warning, and the next trigger tries again.
async fn watch_trigger(post: &Post<'_>, trigger: &Path, update: bool) -> Result<i32, Failure> {
    let (mut int, mut term) = stop_signals()?;
    tracing::info!(
        file = post.file,
        trigger = %trigger.display(),
        "watching the trigger file; stop with Ctrl-C"
    );
    let mut first = true;
    loop {
        if trigger.exists() {
            let sent = match read_text(post.file) {
                Ok(report) => post.send(&report, update || !first).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(url) => {
                    println!("{url}");
                    first = false;
                }
                Err(f) => tracing::warn!("{:#}", f.error),
            }
            if let Err(e) = std::fs::remove_file(trigger) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(Failure::error(anyhow!(
                        "cannot delete the trigger file {}: {e}\nhint: make it deletable by this user, or watch another file",
                        trigger.display()
                    )));
                }
            }
        }
        tokio::select! {
            _ = int.recv() => return Ok(0),
            _ = term.recv() => return Ok(0),
            _ = tokio::time::sleep(WATCH_POLL) => {}
        }
    }
}

/// `--watch`: updates the comment each time the file changes, until SIGINT or SIGTERM.
async fn watch(post: &Post<'_>, mut last: String) -> Result<i32, Failure> {
    let (mut int, mut term) = stop_signals()?;
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
