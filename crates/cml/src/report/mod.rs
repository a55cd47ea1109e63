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
use crate::settings::ReportSettings;
use anyhow::{anyhow, Context};
use cml_forge::Reports;
use std::path::Path;

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

/// The URL of Git remote `remote` of the checkout in the current directory.
pub fn remote_url(remote: &str) -> Result<String, Failure> {
    Git::new().run(&["remote", "get-url", remote]).map_err(|e| {
        Failure::usage(anyhow!(
            "{e}\nhint: run inside the repository's checkout, or name its remote with --remote"
        ))
    })
}

/// A `git` that authenticates to `remote_url` with the forge's token (registered for
/// redaction).
pub async fn authed_git(forge: &dyn Reports, remote_url: &str) -> Result<Git, Failure> {
    let (user, password) = forge
        .git_credentials()
        .await
        .map_err(|e| Failure::error(e.into()))?;
    let git = Git::with_credentials(remote_url, &user, &password);
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
