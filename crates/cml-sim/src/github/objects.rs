//! JSON bodies shaped after GitHub's OpenAPI schemas (`runner`, `job`, `workflow-run`,
//! `simple-user`, `minimal-repository`, `installation`), with every required field present.

use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use super::state::{Job, Runner, State};
use super::{api_url, Shared};
use crate::util::rfc3339;

/// Deterministic numeric id for a name (GitHub ids are opaque numbers).
pub fn name_id(name: &str) -> u64 {
    name.bytes().fold(1469598103u64, |h, b| {
        (h ^ b as u64).wrapping_mul(1099511628211)
    }) % 100_000_000
}

/// `simple-user` for `login`.
pub fn user(sh: &Shared, login: &str, kind: &str) -> Value {
    let url = api_url(sh, &format!("/users/{login}"));
    json!({
        "login": login, "id": name_id(login), "node_id": format!("U_{}", name_id(login)),
        "avatar_url": format!("{}/avatars/{login}", sh.base_url), "gravatar_id": "",
        "url": url, "html_url": format!("{}/{login}", sh.base_url),
        "followers_url": format!("{url}/followers"), "following_url": format!("{url}/following{{/other_user}}"),
        "gists_url": format!("{url}/gists{{/gist_id}}"), "starred_url": format!("{url}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{url}/subscriptions"), "organizations_url": format!("{url}/orgs"),
        "repos_url": format!("{url}/repos"), "events_url": format!("{url}/events{{/privacy}}"),
        "received_events_url": format!("{url}/received_events"), "type": kind, "site_admin": false,
    })
}

const REPO_URL_FIELDS: &[&str] = &[
    "archive",
    "assignees",
    "blobs",
    "branches",
    "collaborators",
    "comments",
    "commits",
    "compare",
    "contents",
    "contributors",
    "deployments",
    "downloads",
    "events",
    "forks",
    "git_commits",
    "git_refs",
    "git_tags",
    "hooks",
    "issue_comment",
    "issue_events",
    "issues",
    "keys",
    "labels",
    "languages",
    "merges",
    "milestones",
    "notifications",
    "pulls",
    "releases",
    "stargazers",
    "statuses",
    "subscribers",
    "subscription",
    "tags",
    "teams",
    "trees",
];

/// `minimal-repository` for `owner/repo`.
pub fn repository(sh: &Shared, full: &str) -> Value {
    let (owner, name) = full.split_once('/').unwrap_or((full, full));
    let url = api_url(sh, &format!("/repos/{full}"));
    let mut m = Map::new();
    for f in REPO_URL_FIELDS {
        m.insert(format!("{f}_url"), json!(format!("{url}/{f}")));
    }
    let rest = json!({
        "id": name_id(full), "node_id": format!("R_{}", name_id(full)), "name": name,
        "full_name": full, "owner": user(sh, owner, "Organization"), "private": true,
        "html_url": format!("{}/{full}", sh.base_url), "description": null, "fork": false, "url": url,
    });
    if let Value::Object(r) = rest {
        m.extend(r);
    }
    Value::Object(m)
}

/// `runner`.
pub fn runner(r: &Runner, st: &mut State, offline_after: Duration) -> Value {
    let labels: Vec<Value> = r
        .labels
        .iter()
        .map(|(name, ro)| {
            json!({"id": st.label_id(name), "name": name, "type": if *ro { "read-only" } else { "custom" }})
        })
        .collect();
    json!({
        "id": r.id, "runner_group_id": r.group_id, "name": r.name, "os": "linux",
        "status": if r.online(offline_after) { "online" } else { "offline" },
        "busy": r.busy, "ephemeral": r.ephemeral, "labels": labels,
    })
}

fn ts(t: Option<SystemTime>) -> Value {
    t.map(|t| json!(rfc3339(t))).unwrap_or(Value::Null)
}

/// `job`.
pub fn job(sh: &Shared, j: &Job) -> Value {
    let repo_api = api_url(sh, &format!("/repos/{}", j.repo));
    json!({
        "id": j.id, "run_id": j.run_id, "run_url": format!("{repo_api}/actions/runs/{}", j.run_id),
        "run_attempt": j.run_attempt, "node_id": format!("CR_{}", j.id), "head_sha": j.head_sha,
        "url": format!("{repo_api}/actions/jobs/{}", j.id),
        "html_url": format!("{}/{}/actions/runs/{}/job/{}", sh.base_url, j.repo, j.run_id, j.id),
        "status": j.status, "conclusion": j.conclusion, "created_at": rfc3339(j.created_at),
        "started_at": ts(j.started_at).as_str().map(str::to_string).unwrap_or_else(|| rfc3339(j.created_at)),
        "completed_at": ts(j.completed_at), "name": j.name, "steps": [],
        "check_run_url": format!("{repo_api}/check-runs/{}", j.id), "labels": j.labels,
        "runner_id": j.runner_id, "runner_name": j.runner_name,
        "runner_group_id": j.runner_id.map(|_| 1), "runner_group_name": j.runner_id.map(|_| "Default"),
        "workflow_name": j.name, "head_branch": "main",
    })
}

/// `workflow-run` for the one-job run of `j`.
pub fn run(sh: &Shared, j: &Job) -> Value {
    let repo_api = api_url(sh, &format!("/repos/{}", j.repo));
    let run_api = format!("{repo_api}/actions/runs/{}", j.run_id);
    let owner = j.repo.split('/').next().unwrap_or_default();
    let updated = j.completed_at.or(j.started_at).unwrap_or(j.created_at);
    json!({
        "id": j.run_id, "name": j.name, "node_id": format!("WFR_{}", j.run_id),
        "check_suite_id": j.run_id, "check_suite_node_id": format!("CS_{}", j.run_id),
        "head_branch": "main", "head_sha": j.head_sha, "path": ".github/workflows/cml.yml",
        "run_number": j.run_id, "run_attempt": j.run_attempt, "event": "push",
        "display_title": j.name, "status": j.status, "conclusion": j.conclusion,
        "workflow_id": 1, "url": run_api,
        "html_url": format!("{}/{}/actions/runs/{}", sh.base_url, j.repo, j.run_id),
        "pull_requests": [], "created_at": rfc3339(j.created_at), "updated_at": rfc3339(updated),
        "run_started_at": rfc3339(j.created_at),
        "actor": user(sh, owner, "User"), "triggering_actor": user(sh, owner, "User"),
        "jobs_url": format!("{run_api}/jobs"), "logs_url": format!("{run_api}/logs"),
        "check_suite_url": format!("{repo_api}/check-suites/{}", j.run_id),
        "artifacts_url": format!("{run_api}/artifacts"), "cancel_url": format!("{run_api}/cancel"),
        "rerun_url": format!("{run_api}/rerun"), "previous_attempt_url": null,
        "workflow_url": format!("{repo_api}/actions/workflows/1"),
        "head_commit": {
            "id": j.head_sha, "tree_id": j.head_sha, "message": j.name,
            "timestamp": rfc3339(j.created_at), "author": null, "committer": null,
        },
        "repository": repository(sh, &j.repo), "head_repository": repository(sh, &j.repo),
    })
}
