//! The simulated Bitbucket Cloud's mutable world: repositories, runners, pipelines and steps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::types::{AnyJob, AnyRunner, JobState};
use crate::util::random_hex;

/// A `{uuid}` in Bitbucket's braces.
pub fn uuid() -> String {
    let h = random_hex(32);
    format!(
        "{{{}-{}-{}-{}-{}}}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub uuid: String,
    pub workspace_uuid: String,
    pub full_name: String,
}

#[derive(Debug, Clone)]
pub struct Runner {
    pub uuid: String,
    pub name: String,
    pub labels: Vec<String>,
    pub repo: String,
    pub client_id: String,
    pub client_secret: String,
    pub last_contact: Option<Instant>,
    /// A disabled runner is given no new step (the runners page's toggle).
    pub disabled: bool,
}

impl Runner {
    pub fn online(&self, offline_after: Duration) -> bool {
        self.last_contact
            .is_some_and(|t| t.elapsed() < offline_after)
    }
    /// `DISABLED` while disabled; else `UNREGISTERED` until the runner first connects, then
    /// `ONLINE` / `OFFLINE`.
    pub fn status(&self, offline_after: Duration) -> &'static str {
        match self.last_contact {
            _ if self.disabled => "DISABLED",
            None => "UNREGISTERED",
            Some(_) if self.online(offline_after) => "ONLINE",
            Some(_) => "OFFLINE",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub uuid: String,
    pub pipeline_uuid: String,
    pub repo: String,
    pub name: String,
    pub labels: Vec<String>,
    pub command: String,
    /// PENDING, IN_PROGRESS, COMPLETED.
    pub state: String,
    /// PASSED, FAILED, STOPPED once completed.
    pub result: Option<String>,
    pub runner_uuid: Option<String>,
    pub runner_name: Option<String>,
    pub output: String,
}

impl Step {
    pub(crate) fn any(&self) -> AnyJob {
        AnyJob {
            id: self.uuid.clone(),
            name: self.name.clone(),
            state: match (self.state.as_str(), self.result.as_deref()) {
                ("PENDING" | "HELD", _) => JobState::Queued,
                ("IN_PROGRESS", _) => JobState::Running,
                (_, Some("PASSED")) => JobState::Succeeded,
                (_, Some("STOPPED")) => JobState::Cancelled,
                _ => JobState::Failed,
            },
            runner_name: self.runner_name.clone(),
            output: self.output.clone(),
        }
    }
}

/// When a held step (state `HELD`, which no runner takes) is queued and given to a runner by
/// the simulator itself, as though the runner's own request for a step were processed at that
/// moment (a one-shot test knob).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Race {
    /// Right after answering a read of the runner (`GET …/runners/{uuid}`).
    AfterStateRead,
    /// Right before disabling the runner (`PUT …/runners/{uuid}/state`, `DISABLED`).
    BeforeDisable,
}

/// Bitbucket simulator state.
#[derive(Debug, Default)]
pub struct State {
    pub repos: BTreeMap<String, Repo>,
    /// Workspace slug → `{uuid}`.
    pub workspaces: BTreeMap<String, String>,
    pub runners: BTreeMap<String, Runner>,
    pub steps: Vec<Step>,
    pub deletes: Vec<(String, String)>,
    pub registered_names: Vec<String>,
    pub issued: Vec<String>,
    /// Pipelines started through the API: (target pipeline uuid it re-runs, new uuid).
    pub reruns: Vec<(String, String)>,
    /// The pending [`Race`] and the uuid of the held step it gives, if any.
    pub race: Option<(Race, String)>,
    /// Steps given to a runner outside its own request (a [`Race`]), delivered on its next
    /// request: runner uuid → step uuid.
    pub delivering: BTreeMap<String, String>,
}

impl State {
    /// The `{uuid}` of workspace `slug`, created on first use.
    pub fn workspace(&mut self, slug: &str) -> String {
        self.workspaces
            .entry(slug.to_string())
            .or_insert_with(uuid)
            .clone()
    }

    /// The repository `ws/slug`, created on first use.
    pub fn repo(&mut self, full_name: &str) -> Repo {
        let ws = full_name.split('/').next().unwrap_or_default();
        let workspace_uuid = self.workspace(ws);
        self.repos
            .entry(full_name.to_string())
            .or_insert_with(|| Repo {
                uuid: uuid(),
                workspace_uuid,
                full_name: full_name.to_string(),
            })
            .clone()
    }

    pub fn running_step(&self, runner_uuid: &str) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| s.state == "IN_PROGRESS" && s.runner_uuid.as_deref() == Some(runner_uuid))
    }

    pub fn any_runner(&self, r: &Runner, offline_after: Duration) -> AnyRunner {
        AnyRunner {
            id: r.uuid.clone(),
            name: r.name.clone(),
            labels: r.labels.clone(),
            online: r.online(offline_after),
            busy: self.running_step(&r.uuid).is_some(),
        }
    }

    pub fn queue_step(
        &mut self,
        repo: &str,
        name: &str,
        labels: &[String],
        command: &str,
    ) -> String {
        self.repo(repo);
        let step = Step {
            uuid: uuid(),
            pipeline_uuid: uuid(),
            repo: repo.to_string(),
            name: name.to_string(),
            labels: labels.to_vec(),
            command: command.to_string(),
            state: "PENDING".into(),
            result: None,
            runner_uuid: None,
            runner_name: None,
            output: String::new(),
        };
        let id = step.uuid.clone();
        self.steps.push(step);
        id
    }

    /// Gives the oldest pending step of the runner's repository whose labels the runner all
    /// has to it.
    /// A disabled runner gets none, nor does one running a step.
    pub fn assign(&mut self, runner_uuid: &str) -> Option<Step> {
        let r = self.runners.get(runner_uuid)?.clone();
        if r.disabled || self.running_step(runner_uuid).is_some() {
            return None;
        }
        let s = self.steps.iter_mut().find(|s| {
            s.state == "PENDING"
                && s.repo == r.repo
                && s.labels.iter().all(|l| r.labels.contains(l))
        })?;
        s.state = "IN_PROGRESS".into();
        s.runner_uuid = Some(r.uuid.clone());
        s.runner_name = Some(r.name.clone());
        Some(s.clone())
    }

    /// Plays the pending [`Race`] if it is `at`: queues its held step and gives it to runner
    /// `runner_uuid` now (when the runner can take it: a disabled one cannot, and the step then
    /// stays queued for any runner), delivered on the runner's next request.
    pub fn race(&mut self, at: Race, runner_uuid: &str) {
        let Some((race, step)) = self.race.clone() else {
            return;
        };
        if race != at {
            return;
        }
        self.race = None;
        if let Some(s) = self.steps.iter_mut().find(|s| s.uuid == step) {
            s.state = "PENDING".into();
        }
        if let Some(s) = self.assign(runner_uuid) {
            self.delivering.insert(runner_uuid.to_string(), s.uuid);
        }
    }
}
