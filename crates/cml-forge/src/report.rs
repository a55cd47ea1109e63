//! What the report commands need from a forge: comments, pull requests, uploads and checks,
//! behind one trait with one implementation per forge.
//!
//! Contracts shared by every implementation:
//! - Nothing is written before the inputs are known to be usable: callers validate first, and
//!   a refused call leaves nothing behind (each operation is one write).
//! - Errors name the operation, the target and the repository, and end with a `hint:` saying
//!   which permission the token lacks when the forge refused it.
//! - Tokens never appear in errors or `Debug` output.

use async_trait::async_trait;
use cml_core::report::Target;
use cml_core::Secret;

use crate::ForgeError;

/// A comment as the forge lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// The id to update it with (GitLab commit notes: `discussion/note`).
    pub id: String,
    pub body: String,
}

/// A pull (merge) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// Its number (GitLab: the `iid`).
    pub number: u64,
    pub url: String,
    pub source: String,
    pub target: String,
    /// GitHub's GraphQL node id, for auto-merge.
    pub node_id: Option<String>,
}

/// A pull request to open.
#[derive(Debug, Clone)]
pub struct NewPullRequest {
    pub source: String,
    pub target: String,
    pub title: String,
    pub body: String,
}

/// How a pull request is to be merged once its checks pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeMethod {
    Merge,
    Squash,
    Rebase,
}

impl MergeMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

/// What became of an auto-merge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoMerged {
    /// The forge will merge it when its checks pass.
    Scheduled,
    /// It was merged now (nothing to wait for, or the forge has no auto-merge).
    MergedNow,
}

/// A GitHub check run.
#[derive(Debug, Clone)]
pub struct CheckRun {
    pub name: String,
    pub head_sha: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// With `completed`: `success`, `failure`, `neutral`, `cancelled`, `skipped`,
    /// `timed_out` or `action_required`.
    pub conclusion: Option<String>,
    pub title: String,
    pub summary: String,
}

/// A file to publish.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
    pub mime: &'a str,
}

/// A forge seen by the report commands, for one repository.
#[async_trait]
pub trait Reports: Send + Sync {
    /// `GitHub repository o/r`, for messages.
    fn scope(&self) -> String;
    /// The repository's web URL.
    fn web_url(&self) -> String;
    /// The longest comment the forge accepts, in characters.
    fn comment_limit(&self) -> usize;
    /// Comments on `target`, oldest first.
    async fn comments(&self, target: &Target) -> Result<Vec<Comment>, ForgeError>;
    /// Posts a comment; its URL.
    async fn create_comment(&self, target: &Target, body: &str) -> Result<String, ForgeError>;
    /// Replaces comment `id` on `target`; its URL.
    async fn update_comment(
        &self,
        target: &Target,
        id: &str,
        body: &str,
    ) -> Result<String, ForgeError>;
    /// The open pull requests whose head is commit `sha`.
    async fn pull_requests_with_commit(&self, sha: &str) -> Result<Vec<PullRequest>, ForgeError>;
    /// The open pull requests from branch `source` into `target`.
    async fn open_pull_requests(
        &self,
        source: &str,
        target: &str,
    ) -> Result<Vec<PullRequest>, ForgeError>;
    /// Opens a pull request.
    async fn create_pull_request(&self, pr: &NewPullRequest) -> Result<PullRequest, ForgeError>;
    /// Whether `method` can be asked for on this forge (checked before anything is written).
    fn supports_merge(&self, method: MergeMethod) -> Result<(), ForgeError> {
        let _ = method;
        Ok(())
    }
    /// Asks for `pr` to be merged with `method` once its checks pass.
    async fn auto_merge(
        &self,
        pr: &PullRequest,
        method: MergeMethod,
    ) -> Result<AutoMerged, ForgeError>;
    /// Where [`Reports::upload`] puts files, for messages (`GitLab project uploads`).
    fn upload_place(&self) -> String;
    /// Stores a file with the forge; the URL it is served at.
    async fn upload(&self, file: Upload<'_>) -> Result<String, ForgeError>;
    /// Creates a check run; its URL. Only GitHub has them.
    async fn create_check(&self, check: &CheckRun) -> Result<String, ForgeError> {
        let _ = check;
        Err(ForgeError::Unsupported {
            scope: self.scope(),
            what: "check runs",
            hint: "checks are a GitHub feature; post the report with `cml comment create` instead",
        })
    }
    /// User name and password for Git over HTTPS with this token.
    async fn git_credentials(&self) -> Result<(String, Secret), ForgeError>;
}
