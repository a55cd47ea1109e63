//! `/repos/{owner}/{repo}/actions/{jobs,runs}/…`: workflow jobs and runs, and re-runs.
//!
//! Each simulated run has one job per attempt; a re-run queues a new job (new id,
//! `run_attempt + 1`) in the same run, and the run reports its latest attempt.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long a cancelled run in progress takes to read `completed`.
const CANCEL_DELAY: Duration = Duration::from_millis(1500);

use super::objects;
use super::state::{Job, Scope, State};
use super::{Req, Resp, Shared};

/// `rest` is the path after `actions`.
pub fn handle(sh: &Shared, req: &Req, scope: &Scope, rest: &[&str]) -> Resp {
    let repo = scope.key();
    let id = |s: &str| s.parse::<u64>().ok();
    let mut st = sh.lock();
    st.settle_cancellations();
    match (req.method.as_str(), rest) {
        ("GET", ["jobs", j]) => match id(j)
            .and_then(|j| st.jobs.get(&j))
            .filter(|j| same(&j.repo, &repo))
        {
            Some(j) => Resp::json(200, objects::job(sh, j)),
            None => Resp::not_found(),
        },
        ("POST", ["jobs", j, "rerun"]) => {
            match id(j)
                .and_then(|j| st.jobs.get(&j))
                .filter(|j| same(&j.repo, &repo))
                .cloned()
            {
                Some(j) => rerun(&mut st, &j),
                None => Resp::not_found(),
            }
        }
        ("GET", ["runs"]) => {
            // Newest first, the latest attempt of each run, `status` and `per_page` honoured.
            let per_page: usize = req
                .param("per_page")
                .and_then(|v| v.parse().ok())
                .unwrap_or(30)
                .clamp(1, 100);
            let mut run_ids: Vec<u64> = st
                .jobs
                .values()
                .filter(|j| same(&j.repo, &repo))
                .map(|j| j.run_id)
                .collect();
            run_ids.sort_unstable();
            run_ids.dedup();
            let runs: Vec<Job> = run_ids
                .iter()
                .rev()
                .filter_map(|r| latest(&st, *r, &repo))
                .filter(|j| req.param("status").is_none_or(|s| s == j.status))
                .collect();
            let page: Vec<Value> = runs
                .iter()
                .take(per_page)
                .map(|j| objects::run(sh, j))
                .collect();
            Resp::json(
                200,
                json!({"total_count": runs.len(), "workflow_runs": page}),
            )
        }
        ("GET", ["runs", r]) => match id(r).and_then(|r| latest(&st, r, &repo)) {
            Some(j) => Resp::json(200, objects::run(sh, &j)),
            None => Resp::not_found(),
        },
        ("GET", ["runs", r, "jobs"]) => match id(r).and_then(|r| latest(&st, r, &repo)) {
            Some(j) => Resp::json(
                200,
                json!({"total_count": 1, "jobs": [objects::job(sh, &j)]}),
            ),
            None => Resp::not_found(),
        },
        // A queued run is cancelled at once, one in progress a moment later (its runner may
        // still report the job first).
        ("POST", ["runs", r, "cancel"]) => match id(r).and_then(|r| latest(&st, r, &repo)) {
            Some(j) if j.status == "completed" => {
                Resp::error(409, "Cannot cancel a workflow run that is completed.")
            }
            Some(j) => {
                let delay = if j.status == "queued" {
                    Duration::ZERO
                } else {
                    CANCEL_DELAY
                };
                if let Some(job) = st.jobs.get_mut(&j.id) {
                    job.cancel_at = Some(Instant::now() + delay);
                }
                st.settle_cancellations();
                Resp::json(202, json!({}))
            }
            None => Resp::not_found(),
        },
        ("POST", ["runs", r, "rerun"]) => match id(r).and_then(|r| latest(&st, r, &repo)) {
            Some(j) => rerun(&mut st, &j),
            None => Resp::not_found(),
        },
        ("POST", ["runs", r, "rerun-failed-jobs"]) => match id(r)
            .and_then(|r| latest(&st, r, &repo))
        {
            Some(j) if j.status == "completed" && j.conclusion.as_deref() == Some("success") => {
                Resp::json(201, json!({}))
            }
            Some(j) => rerun(&mut st, &j),
            None => Resp::not_found(),
        },
        _ => Resp::not_found(),
    }
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The latest attempt's job of run `run_id`.
fn latest(st: &State, run_id: u64, repo: &str) -> Option<Job> {
    st.jobs
        .values()
        .rev()
        .find(|j| j.run_id == run_id && same(&j.repo, repo))
        .cloned()
}

fn rerun(st: &mut State, j: &Job) -> Resp {
    let current = latest(st, j.run_id, &j.repo);
    if current.as_ref().is_some_and(|c| c.status != "completed") {
        return Resp::error(403, "This workflow is already running");
    }
    let attempt = current.map(|c| c.run_attempt).unwrap_or(j.run_attempt) + 1;
    let labels = j.labels.clone();
    let (new_id, _) = st.queue_job(&j.repo, &j.name, &labels, &j.command);
    st.next_run_id -= 1; // the re-run stays in the same run
    if let Some(n) = st.jobs.get_mut(&new_id) {
        n.run_id = j.run_id;
        n.run_attempt = attempt;
        n.head_sha = j.head_sha.clone();
    }
    Resp::json(201, Value::Object(Default::default()))
}
