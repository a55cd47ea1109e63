//! The JSON GitHub sends, as far as we read it, and the routes we call.
//!
//! [`ROUTES`] lists every route and every response field the client depends on; a test in
//! the simulator crate checks each of them against GitHub's official OpenAPI description.

use serde::Deserialize;

/// (method, path template, success status, response fields read). Field paths use `[]` for
/// array items: `runners[].labels[].name`.
pub const ROUTES: &[(&str, &str, u16, &[&str])] = &[
    (
        "GET",
        "/repos/{owner}/{repo}/actions/runners",
        200,
        RUNNER_LIST_FIELDS,
    ),
    (
        "GET",
        "/orgs/{org}/actions/runners",
        200,
        RUNNER_LIST_FIELDS,
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/actions/runners/{runner_id}",
        200,
        RUNNER_FIELDS,
    ),
    (
        "GET",
        "/orgs/{org}/actions/runners/{runner_id}",
        200,
        RUNNER_FIELDS,
    ),
    (
        "DELETE",
        "/repos/{owner}/{repo}/actions/runners/{runner_id}",
        204,
        &[],
    ),
    (
        "DELETE",
        "/orgs/{org}/actions/runners/{runner_id}",
        204,
        &[],
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/actions/runners/registration-token",
        201,
        TOKEN_FIELDS,
    ),
    (
        "POST",
        "/orgs/{org}/actions/runners/registration-token",
        201,
        TOKEN_FIELDS,
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/actions/runners/remove-token",
        201,
        TOKEN_FIELDS,
    ),
    (
        "POST",
        "/orgs/{org}/actions/runners/remove-token",
        201,
        TOKEN_FIELDS,
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/actions/runners/generate-jitconfig",
        201,
        JIT_FIELDS,
    ),
    (
        "POST",
        "/orgs/{org}/actions/runners/generate-jitconfig",
        201,
        JIT_FIELDS,
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/actions/jobs/{job_id}",
        200,
        JOB_FIELDS,
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/actions/runs",
        200,
        &[
            "total_count",
            "workflow_runs[].id",
            "workflow_runs[].status",
            "workflow_runs[].run_attempt",
        ],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/actions/runs/{run_id}",
        200,
        RUN_FIELDS,
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
        200,
        &[
            "jobs[].id",
            "jobs[].run_id",
            "jobs[].status",
            "jobs[].conclusion",
            "jobs[].name",
            "jobs[].runner_name",
        ],
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs",
        201,
        &[],
    ),
    ("GET", "/repos/{owner}/{repo}/installation", 200, &["id"]),
    ("GET", "/orgs/{org}/installation", 200, &["id"]),
    (
        "POST",
        "/app/installations/{installation_id}/access_tokens",
        201,
        TOKEN_FIELDS,
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/commits/{commit_sha}/comments",
        200,
        &["[].id", "[].body"],
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/commits/{commit_sha}/comments",
        201,
        &["html_url"],
    ),
    (
        "PATCH",
        "/repos/{owner}/{repo}/comments/{comment_id}",
        200,
        &["html_url"],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        200,
        &["[].id", "[].body"],
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        201,
        &["html_url"],
    ),
    (
        "PATCH",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
        200,
        &["html_url"],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/commits/{commit_sha}/pulls",
        200,
        PULL_LIST_FIELDS,
    ),
    ("GET", "/repos/{owner}/{repo}/pulls", 200, PULL_LIST_FIELDS),
    ("POST", "/repos/{owner}/{repo}/pulls", 201, PULL_FIELDS),
    (
        "PUT",
        "/repos/{owner}/{repo}/pulls/{pull_number}/merge",
        200,
        &[],
    ),
    (
        "POST",
        "/repos/{owner}/{repo}/check-runs",
        201,
        &["html_url"],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/git/ref/{ref}",
        200,
        &["object.sha"],
    ),
    ("POST", "/repos/{owner}/{repo}/git/refs", 201, &[]),
    ("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}", 200, &[]),
    ("POST", "/repos/{owner}/{repo}/git/blobs", 201, &["sha"]),
    ("POST", "/repos/{owner}/{repo}/git/trees", 201, &["sha"]),
    ("POST", "/repos/{owner}/{repo}/git/commits", 201, &["sha"]),
    (
        "GET",
        "/repos/{owner}/{repo}/git/commits/{commit_sha}",
        200,
        &["tree.sha"],
    ),
];

const RUNNER_LIST_FIELDS: &[&str] = &[
    "total_count",
    "runners[].id",
    "runners[].name",
    "runners[].status",
    "runners[].busy",
    "runners[].labels[].name",
];
const PULL_LIST_FIELDS: &[&str] = &[
    "[].number",
    "[].html_url",
    "[].state",
    "[].node_id",
    "[].head.ref",
    "[].base.ref",
];
const PULL_FIELDS: &[&str] = &[
    "number", "html_url", "state", "node_id", "head.ref", "base.ref",
];
const RUNNER_FIELDS: &[&str] = &["id", "name", "status", "busy", "labels[].name"];
const TOKEN_FIELDS: &[&str] = &["token", "expires_at"];
const JIT_FIELDS: &[&str] = &["runner.id", "runner.name", "encoded_jit_config"];
const RUN_FIELDS: &[&str] = &["id", "status", "conclusion", "run_attempt"];
const JOB_FIELDS: &[&str] = &[
    "id",
    "run_id",
    "status",
    "conclusion",
    "name",
    "runner_id",
    "runner_name",
];

#[derive(Debug, Deserialize)]
pub(crate) struct RunnerList {
    #[allow(dead_code)]
    pub total_count: u64,
    pub runners: Vec<Runner>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Runner {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub busy: bool,
    #[serde(default)]
    pub labels: Vec<Label>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Label {
    pub name: String,
}

impl From<Runner> for cml_core::RunnerInfo {
    fn from(r: Runner) -> Self {
        cml_core::RunnerInfo {
            id: r.id.to_string(),
            name: r.name,
            online: r.status == "online",
            busy: r.busy,
            labels: r.labels.into_iter().map(|l| l.name).collect(),
        }
    }
}

/// A token with an expiry (registration, remove, installation tokens). Not `Debug`-printed
/// with its value: the field is private to this crate and wrapped in `Secret` on the way out.
#[derive(Deserialize)]
pub(crate) struct ExpiringToken {
    pub token: String,
    pub expires_at: String,
}

#[derive(Deserialize)]
pub(crate) struct JitConfigAnswer {
    pub runner: Runner,
    pub encoded_jit_config: String,
}

#[derive(Deserialize)]
pub(crate) struct Installation {
    pub id: u64,
}

/// A workflow job, as far as the lifecycle needs it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Job {
    pub id: u64,
    pub run_id: u64,
    pub status: String,
    pub conclusion: Option<String>,
    pub name: String,
    pub runner_id: Option<u64>,
    pub runner_name: Option<String>,
    /// Its `runs-on` labels.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// A workflow run, as far as re-running it needs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Run {
    pub id: u64,
    pub status: String,
    pub conclusion: Option<String>,
    pub run_attempt: u64,
}

#[derive(Deserialize)]
pub(crate) struct RunList {
    pub workflow_runs: Vec<Run>,
}

#[derive(Deserialize)]
pub(crate) struct JobList {
    pub jobs: Vec<Job>,
}
