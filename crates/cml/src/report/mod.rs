//! The report commands: `cml comment`, `cml check`, `cml asset publish`, `cml pr`, `cml ci`
//! (and their old names `send-comment`, `send-github-check`, `publish`, `pr GLOBS`).
//!
//! Each validates everything it can (files, targets, options) before it writes anything to
//! the forge, prints only its result on standard output (a URL or Markdown; logs go to
//! standard error), and exits non-zero with a message naming what failed and a `hint:`.

pub mod asset;
pub mod check;
pub mod ci;
pub mod comment;
mod git;
pub mod pr;

use crate::exit::Failure;
use crate::forge::Client;
use crate::settings::{Env, ProcessEnv, ReportSettings};
use anyhow::{anyhow, Context};
use cml_core::duration::parse_duration_at_most;
use cml_core::report::{remote_host, RemoteHost};
use cml_forge::Reports;
use std::path::Path;
use std::time::Duration;

pub use git::Git;

/// Connects to the repository's forge.
pub async fn connect(s: &ReportSettings) -> Result<Box<dyn Reports>, Failure> {
    Client::connect(s.driver, &s.repo, &s.credential, &s.bitbucket_api)
        .await
        .map(Client::into_reports)
        .map_err(Failure::error)
}

/// The commit a report is about: `--commit-sha`, else the CI's (a pull request's head on
/// GitHub), else `git rev-parse HEAD`.
pub fn head_commit(explicit: Option<&str>, s: &ReportSettings) -> Result<String, Failure> {
    if let Some(sha) = explicit.map(str::trim).filter(|s| !s.is_empty()) {
        if !cml_core::report::is_commit_id(sha) {
            return Err(Failure::usage(anyhow!(
                "invalid --commit-sha {sha:?}: expected a commit id (hex)"
            )));
        }
        return Ok(sha.to_ascii_lowercase());
    }
    if let Some(sha) = &s.ci.commit {
        return Ok(sha.clone());
    }
    Git::new()
        .try_run(&["rev-parse", "HEAD"])
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Failure::usage(anyhow!(
                "no commit to report on: not in CI and `git rev-parse HEAD` failed\nhint: run inside a Git checkout, or pass --commit-sha"
            ))
        })
}

/// The variable that bounds how long one `git` call reaching a remote may take.
pub const GIT_TIMEOUT_VAR: &str = "CML_GIT_TIMEOUT";
/// The bound when [`GIT_TIMEOUT_VAR`] is not set.
const GIT_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest [`GIT_TIMEOUT_VAR`] accepted: one day.
const GIT_TIMEOUT_MAX: Duration = Duration::from_secs(24 * 3600);

/// How long one `git` call reaching a remote (`ls-remote`, `fetch`, `push`) may take:
/// `CML_GIT_TIMEOUT` (seconds or a duration such as `20m`), else 10 minutes.
pub fn git_timeout() -> Result<Duration, Failure> {
    match ProcessEnv.get(GIT_TIMEOUT_VAR).filter(|v| !v.trim().is_empty()) {
        None => Ok(GIT_TIMEOUT),
        Some(v) => match parse_duration_at_most(&v, GIT_TIMEOUT_MAX) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(Failure::usage(anyhow!(
                "invalid {GIT_TIMEOUT_VAR}={v:?}: it must be longer than 0\nhint: give seconds (600) or a duration such as 20m"
            ))),
            Err(cml_core::duration::DurationError::Invalid { reason, .. }) => {
                Err(Failure::usage(anyhow!(
                    "invalid {GIT_TIMEOUT_VAR}={v:?}: {reason}\nhint: give seconds (600) or a duration such as 20m"
                )))
            }
            Err(e) => Err(Failure::usage(anyhow!("invalid {GIT_TIMEOUT_VAR}: {e}"))),
        },
    }
}

/// A Git remote of the checkout, checked against the forge.
pub struct Remote {
    pub name: String,
    /// `SCHEME://HOST[:PORT]/` of the forge, where the token may go, when the remote is an
    /// http(s) URL on the forge; `None` when it is not http(s) (ssh, a path): Git then
    /// authenticates by its own means.
    pub scope: Option<String>,
    /// How long one call reaching it may take ([`git_timeout`]).
    pub limit: Duration,
}

/// Reads Git remote `name` of the checkout in the current directory and checks where it
/// points, and the time limit of calls reaching it. Guarantees: when `Ok`, none of its fetch
/// or push URLs is an http(s) URL on a host other than the forge's, so the token cannot be
/// sent elsewhere through it; credentials written into its URLs are registered for redaction.
/// Refused (a usage error) before anything is sent otherwise.
pub fn check_remote(s: &ReportSettings, name: &str) -> Result<Remote, Failure> {
    let limit = git_timeout()?;
    let git = Git::new();
    let read = |extra: &[&str]| {
        let mut args = vec!["remote", "get-url", "--all"];
        args.extend(extra);
        args.push(name);
        git.run(&args).map_err(|e| {
            Failure::usage(anyhow!(
                "{e}\nhint: run inside the repository's checkout, or name its remote with --remote"
            ))
        })
    };
    let fetch = read(&[])?;
    let push = read(&["--push"])?;
    let mut scope = None;
    for url in fetch.lines().chain(push.lines()).map(str::trim) {
        if url.is_empty() {
            continue;
        }
        register_url_credentials(url);
        match remote_host(url, &s.repo) {
            RemoteHost::Forge { scope: sc } => {
                scope.get_or_insert(sc);
            }
            RemoteHost::OtherTransport => {}
            RemoteHost::Elsewhere { url } => {
                return Err(Failure::usage(anyhow!(
                    "the Git remote {name} points at {url}, which is not on the forge of {}: the token is only sent to the forge, so nothing was sent\nhint: point the remote at the repository on the forge (`git remote set-url {name} URL`), name another remote with --remote, or name the repository with --repo",
                    s.repo
                )));
            }
        }
    }
    Ok(Remote {
        name: name.to_string(),
        scope,
        limit,
    })
}

/// Registers the user and password written into `url` (as GitLab's runners write
/// `gitlab-ci-token:CI_JOB_TOKEN@`) for redaction.
fn register_url_credentials(url: &str) {
    if let Ok(u) = url::Url::parse(url) {
        match u.password() {
            Some(p) => crate::logging::add_secrets([p.to_string()]),
            // A token may be the user name alone.
            None if !u.username().is_empty() && u.scheme().starts_with("http") => {
                crate::logging::add_secrets([u.username().to_string()])
            }
            None => {}
        }
    }
}

/// A `git` for the calls that reach `remote`: each bounded by its time limit, and
/// authenticated with the forge's token (registered for redaction) when the remote is on the
/// forge.
pub async fn remote_git(forge: &dyn Reports, remote: &Remote) -> Result<Git, Failure> {
    let limit = remote.limit;
    let Some(scope) = &remote.scope else {
        tracing::info!(
            remote = remote.name.as_str(),
            "the remote is not an http(s) URL: git uses its own credentials for it"
        );
        return Ok(Git::new().time_limited(limit));
    };
    let (user, password) = forge
        .git_credentials()
        .await
        .map_err(|e| Failure::error(e.into()))?;
    let git = Git::with_credentials(scope, &user, &password).time_limited(limit);
    crate::logging::add_secrets(git.secret());
    Ok(git)
}

/// Reads a file the user named, with an error naming it.
pub fn read_input(path: &str, what: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .with_context(|| {
            format!(
                "cannot read the {what} {path:?}\nhint: check the path (relative to {})",
                std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|_| ".".into())
            )
        })
        .map_err(Failure::usage)
}

/// Reads a text report the user named.
pub fn read_text(path: &str) -> Result<String, Failure> {
    String::from_utf8(read_input(path, "report")?).map_err(|_| {
        Failure::usage(anyhow!(
            "the report {path:?} is not UTF-8 text\nhint: pass a Markdown file"
        ))
    })
}

/// The file name part of a path.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "file".into())
}
