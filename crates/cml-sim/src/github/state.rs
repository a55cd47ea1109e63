//! The simulator's mutable world: runners, tokens, workflow runs and jobs, faults, logs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::config::Fault;

/// Where a runner is registered: a repository or an organization.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Repo { owner: String, repo: String },
    Org(String),
}

impl Scope {
    /// Parse `owner/repo` or `org`.
    pub fn parse(s: &str) -> Option<Scope> {
        let parts: Vec<&str> = s.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            [org] if !org.is_empty() => Some(Scope::Org(org.to_string())),
            [o, r] if !o.is_empty() && !r.is_empty() => Some(Scope::Repo {
                owner: o.to_string(),
                repo: r.to_string(),
            }),
            _ => None,
        }
    }
    /// `owner/repo` or `org`.
    pub fn key(&self) -> String {
        match self {
            Scope::Repo { owner, repo } => format!("{owner}/{repo}"),
            Scope::Org(org) => org.clone(),
        }
    }
    /// Same scope, GitHub names being case-insensitive.
    pub fn same(&self, other: &Scope) -> bool {
        self.key().eq_ignore_ascii_case(&other.key())
    }
    /// Whether a runner in this scope may take a job of repository `owner/repo`.
    pub fn serves_repo(&self, repo_full: &str) -> bool {
        match self {
            Scope::Repo { .. } => self.key().eq_ignore_ascii_case(repo_full),
            Scope::Org(org) => repo_full
                .split('/')
                .next()
                .is_some_and(|o| o.eq_ignore_ascii_case(org)),
        }
    }
}

/// A registered runner.
#[derive(Clone, Debug)]
pub struct Runner {
    pub id: u64,
    pub name: String,
    pub scope: Scope,
    /// (name, read-only?)
    pub labels: Vec<(String, bool)>,
    pub ephemeral: bool,
    pub group_id: u64,
    /// Secret the agent presents on internal routes.
    pub credential: String,
    pub last_seen: Option<Instant>,
    pub busy: bool,
    /// The scale set whose JIT configuration created this runner: it takes only the jobs
    /// acquired by that scale set.
    pub scale_set: Option<u64>,
}

impl Runner {
    /// `online` while the agent polled within `offline_after`.
    pub fn online(&self, offline_after: Duration) -> bool {
        self.last_seen.is_some_and(|t| t.elapsed() <= offline_after)
    }
}

/// A token minted by a registration-token or remove-token route.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub scope: Scope,
    pub expires: SystemTime,
}

/// A workflow job (each simulated workflow run has exactly one).
#[derive(Clone, Debug)]
pub struct Job {
    pub id: u64,
    pub run_id: u64,
    pub repo: String,
    pub name: String,
    pub labels: Vec<String>,
    pub command: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub runner_id: Option<u64>,
    pub runner_name: Option<String>,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub completed_at: Option<SystemTime>,
    pub run_attempt: u64,
    pub head_sha: String,
    pub output: String,
    /// A cancelled run in progress: it reads `completed`/`cancelled` from this instant on (as
    /// on GitHub, a cancellation takes a moment), or when its runner reports it first.
    pub cancel_at: Option<Instant>,
}

/// One request as seen by the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path as requested (with any `/api/v3` prefix), without the query.
    pub path: String,
    pub query: String,
    pub status: u16,
}

/// All mutable state, behind one mutex.
#[derive(Default)]
pub struct State {
    pub next_runner_id: u64,
    pub next_run_id: u64,
    pub next_job_id: u64,
    pub runners: BTreeMap<u64, Runner>,
    pub registered_names: Vec<String>,
    pub deletes: Vec<(u64, String)>,
    pub registration_tokens: Vec<IssuedToken>,
    pub remove_tokens: Vec<IssuedToken>,
    /// installation token → expiry
    pub installation_tokens: HashMap<String, SystemTime>,
    pub jobs: BTreeMap<u64, Job>,
    pub faults: VecDeque<Fault>,
    pub requests: Vec<RecordedRequest>,
    pub downloads: usize,
    pub label_ids: HashMap<String, u64>,
    /// The Actions service (runner scale sets, sessions, message queues).
    pub actions: super::scaleset::Service,
}

impl State {
    pub fn new() -> Self {
        State {
            next_runner_id: 1,
            next_run_id: 5001,
            next_job_id: 90001,
            ..State::default()
        }
    }

    /// Stable id for a label name (case-insensitive).
    pub fn label_id(&mut self, name: &str) -> u64 {
        let n = self.label_ids.len() as u64 + 1;
        *self.label_ids.entry(name.to_lowercase()).or_insert(n)
    }

    /// Register a runner with the default read-only labels plus `custom` ones.
    pub fn add_runner(
        &mut self,
        scope: Scope,
        name: &str,
        custom: &[String],
        ephemeral: bool,
        group_id: u64,
    ) -> Runner {
        let mut labels: Vec<(String, bool)> = ["self-hosted", "Linux", "X64"]
            .iter()
            .map(|l| (l.to_string(), true))
            .collect();
        for l in custom {
            let l = l.trim();
            if !l.is_empty() && !labels.iter().any(|(x, _)| x.eq_ignore_ascii_case(l)) {
                labels.push((l.to_string(), false));
            }
        }
        for (l, _) in &labels {
            self.label_id(l);
        }
        let id = self.next_runner_id;
        self.next_runner_id += 1;
        let runner = Runner {
            id,
            name: name.to_string(),
            scope,
            labels,
            ephemeral,
            group_id,
            credential: crate::util::random_hex(40),
            last_seen: None,
            busy: false,
            scale_set: None,
        };
        self.runners.insert(id, runner.clone());
        self.registered_names.push(name.to_string());
        runner
    }

    /// The runner named `name` in `scope`, if any.
    pub fn runner_by_name(&self, scope: &Scope, name: &str) -> Option<u64> {
        self.runners
            .values()
            .find(|r| r.scope.same(scope) && r.name.eq_ignore_ascii_case(name))
            .map(|r| r.id)
    }

    /// Queue a one-job workflow run.
    pub fn queue_job(
        &mut self,
        repo: &str,
        name: &str,
        labels: &[String],
        command: &str,
    ) -> (u64, u64) {
        let run_id = self.next_run_id;
        self.next_run_id += 1;
        let id = self.next_job_id;
        self.next_job_id += 1;
        self.jobs.insert(
            id,
            Job {
                id,
                run_id,
                repo: repo.to_string(),
                name: name.to_string(),
                labels: labels.to_vec(),
                command: command.to_string(),
                status: "queued".into(),
                conclusion: None,
                runner_id: None,
                runner_name: None,
                created_at: SystemTime::now(),
                started_at: None,
                completed_at: None,
                run_attempt: 1,
                head_sha: crate::util::random_hex(40),
                output: String::new(),
                cancel_at: None,
            },
        );
        (id, run_id)
    }

    /// Completes the cancelled jobs whose cancellation has taken effect.
    pub fn settle_cancellations(&mut self) {
        let now = Instant::now();
        let mut settled = Vec::new();
        for j in self.jobs.values_mut() {
            if j.status != "completed" && j.cancel_at.is_some_and(|t| t <= now) {
                settled.push(j.id);
                j.status = "completed".into();
                j.conclusion = Some("cancelled".into());
                j.completed_at = Some(SystemTime::now());
                if let Some(r) = j.runner_id.and_then(|id| self.runners.get_mut(&id)) {
                    r.busy = false;
                }
            }
        }
        for id in settled {
            self.finish_scale_set_job(id);
        }
    }

    /// Hand the oldest matching queued job to runner `id` (online, idle); returns the job id.
    pub fn assign_job(&mut self, id: u64) -> Option<u64> {
        let runner = self.runners.get(&id)?.clone();
        if runner.busy {
            return None;
        }
        self.route_scale_set_jobs();
        if let Some(set) = runner.scale_set {
            return self.start_scale_set_job(id, set);
        }
        let job_id = self
            .jobs
            .values()
            .find(|j| {
                j.status == "queued"
                    && !self.actions.claims(j.id)
                    && runner.scope.serves_repo(&j.repo)
                    && j.labels.iter().all(|l| {
                        runner
                            .labels
                            .iter()
                            .any(|(rl, _)| rl.eq_ignore_ascii_case(l))
                    })
            })?
            .id;
        let job = self.jobs.get_mut(&job_id)?;
        job.status = "in_progress".into();
        job.runner_id = Some(id);
        job.runner_name = Some(runner.name.clone());
        job.started_at = Some(SystemTime::now());
        if let Some(r) = self.runners.get_mut(&id) {
            r.busy = true;
        }
        Some(job_id)
    }
}
