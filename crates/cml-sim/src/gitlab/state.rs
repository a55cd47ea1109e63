//! The simulated GitLab's mutable world: projects, runners, pipelines and jobs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::types::{AnyJob, AnyRunner, JobState};
use crate::util::random_hex;

#[derive(Debug, Clone)]
pub struct Project {
    pub id: u64,
    pub path: String,
    /// The legacy registration token, for projects that still have one.
    pub runners_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Runner {
    pub id: u64,
    pub description: String,
    pub tags: Vec<String>,
    pub token: String,
    pub project_id: u64,
    pub run_untagged: bool,
    pub last_contact: Option<Instant>,
    /// A paused runner is handed no new job (GitLab's `paused`, formerly `active: false`).
    pub paused: bool,
}

impl Runner {
    pub fn online(&self, offline_after: Duration) -> bool {
        self.last_contact
            .is_some_and(|t| t.elapsed() < offline_after)
    }
    /// GitLab's `status`: online, offline, or never_contacted.
    pub fn status(&self, offline_after: Duration) -> &'static str {
        match self.last_contact {
            None => "never_contacted",
            Some(_) if self.online(offline_after) => "online",
            Some(_) => "offline",
        }
    }
    pub(crate) fn any(&self, offline_after: Duration) -> AnyRunner {
        AnyRunner {
            id: self.id.to_string(),
            name: self.description.clone(),
            labels: self.tags.clone(),
            online: self.online(offline_after),
            busy: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    pub project_id: u64,
    pub pipeline_id: u64,
    pub name: String,
    pub tags: Vec<String>,
    pub command: String,
    /// pending, running, success, failed, canceled.
    pub status: String,
    pub runner_id: Option<u64>,
    pub runner_description: Option<String>,
    /// The job token the runner authenticates job updates with.
    pub token: String,
    pub output: String,
}

impl Job {
    pub(crate) fn any(&self) -> AnyJob {
        AnyJob {
            id: self.id.to_string(),
            name: self.name.clone(),
            state: match self.status.as_str() {
                "pending" | "created" => JobState::Queued,
                "running" => JobState::Running,
                "success" => JobState::Succeeded,
                "canceled" => JobState::Cancelled,
                _ => JobState::Failed,
            },
            runner_name: self.runner_description.clone(),
            output: self.output.clone(),
        }
    }
}

/// When a held job (status `created`, which no runner takes) is queued and handed to a runner
/// by the simulator itself, as though the runner's own request for a job were processed at
/// that moment (a one-shot test knob).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Race {
    /// Right after answering the runner's running jobs (`GET /runners/:id/jobs`).
    AfterJobsCheck,
    /// Right before pausing the runner (`PUT /runners/:id` with `paused=true`).
    BeforePause,
}

/// GitLab simulator state.
#[derive(Debug, Default)]
pub struct State {
    pub projects: BTreeMap<String, Project>,
    pub runners: BTreeMap<u64, Runner>,
    pub jobs: BTreeMap<u64, Job>,
    pub deletes: Vec<(String, String)>,
    /// Ids of runners that deleted themselves with their own token (`DELETE /runners`).
    pub token_deletes: Vec<String>,
    pub registered_names: Vec<String>,
    /// Every secret handed out (runner, job and registration tokens).
    pub issued: Vec<String>,
    pub retries: Vec<(u64, u64)>,
    pub downloads: usize,
    /// The pending [`Race`] and the held job it hands over, if any.
    pub race: Option<(Race, u64)>,
    /// Jobs handed to a runner outside its own request (a [`Race`]), delivered on its next
    /// request: runner id → job id.
    pub delivering: BTreeMap<u64, u64>,
    next_id: u64,
}

impl State {
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        1000 + self.next_id
    }

    /// The project at `path`, created on first use (legacy registration token if `legacy`).
    pub fn project(&mut self, path: &str, legacy: bool) -> Project {
        if let Some(p) = self.projects.get(path) {
            return p.clone();
        }
        let id = self.next_id();
        let runners_token = legacy.then(|| format!("GR1348941{}", random_hex(20)));
        if let Some(t) = &runners_token {
            self.issued.push(t.clone());
        }
        let p = Project {
            id,
            path: path.to_string(),
            runners_token,
        };
        self.projects.insert(path.to_string(), p.clone());
        p
    }

    pub fn project_by_id(&self, id: u64) -> Option<Project> {
        self.projects.values().find(|p| p.id == id).cloned()
    }

    /// Creates a runner of `project_id` and returns it.
    pub fn create_runner(
        &mut self,
        project_id: u64,
        description: &str,
        tags: Vec<String>,
        run_untagged: bool,
    ) -> Runner {
        let id = self.next_id();
        let token = format!("glrt-{}", random_hex(20));
        self.issued.push(token.clone());
        self.registered_names.push(description.to_string());
        let r = Runner {
            id,
            description: description.to_string(),
            tags,
            token,
            project_id,
            run_untagged,
            last_contact: None,
            paused: false,
        };
        self.runners.insert(id, r.clone());
        r
    }

    pub fn runner_by_token(&mut self, token: &str) -> Option<&mut Runner> {
        self.runners.values_mut().find(|r| r.token == token)
    }

    /// The job `runner_id` is running, if any.
    pub fn running_job(&self, runner_id: u64) -> Option<&Job> {
        self.jobs
            .values()
            .find(|j| j.status == "running" && j.runner_id == Some(runner_id))
    }

    pub fn queue_job(&mut self, project: &str, name: &str, tags: &[String], command: &str) -> u64 {
        let project_id = self.project(project, false).id;
        let pipeline_id = self.next_id();
        self.add_job(project_id, pipeline_id, name, tags, command)
    }

    pub fn add_job(
        &mut self,
        project_id: u64,
        pipeline_id: u64,
        name: &str,
        tags: &[String],
        command: &str,
    ) -> u64 {
        let id = self.next_id();
        self.jobs.insert(
            id,
            Job {
                id,
                project_id,
                pipeline_id,
                name: name.to_string(),
                tags: tags.to_vec(),
                command: command.to_string(),
                status: "pending".into(),
                runner_id: None,
                runner_description: None,
                token: String::new(),
                output: String::new(),
            },
        );
        id
    }

    /// Hands the oldest pending job `runner` can take to it (tags: the job's tags must all be
    /// the runner's; an untagged job needs `run_untagged`).
    /// A paused runner gets none, nor does one that has a job running.
    pub fn assign(&mut self, runner_id: u64) -> Option<Job> {
        let runner = self.runners.get(&runner_id)?.clone();
        if runner.paused || self.running_job(runner_id).is_some() {
            return None;
        }
        let job = self.jobs.values_mut().find(|j| {
            j.status == "pending"
                && j.project_id == runner.project_id
                && (if j.tags.is_empty() {
                    runner.run_untagged
                } else {
                    j.tags.iter().all(|t| runner.tags.contains(t))
                })
        })?;
        job.status = "running".into();
        job.runner_id = Some(runner_id);
        job.runner_description = Some(runner.description.clone());
        job.token = format!("glcbt-{}", random_hex(20));
        let job = job.clone();
        self.issued.push(job.token.clone());
        Some(job)
    }

    /// Plays the pending [`Race`] if it is `at`: queues its held job and hands it to runner
    /// `runner_id` now (when the runner can take it: a paused one cannot, and the job then
    /// stays queued for any runner), delivered on the runner's next request.
    pub fn race(&mut self, at: Race, runner_id: u64) {
        let Some((race, job_id)) = self.race else {
            return;
        };
        if race != at {
            return;
        }
        self.race = None;
        if let Some(j) = self.jobs.get_mut(&job_id) {
            j.status = "pending".into();
        }
        if let Some(job) = self.assign(runner_id) {
            self.delivering.insert(runner_id, job.id);
        }
    }
}
