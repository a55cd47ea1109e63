//! The simulated GitLab: the REST API a runner launcher uses (`/api/v4/...`, with the
//! `PRIVATE-TOKEN` header), the runner API gitlab-runner uses (`/api/v4/runners/verify`,
//! `/api/v4/jobs/request`, job updates and traces), gitlab-runner downloads in GitLab's bucket
//! layout, and a simulated `gitlab-runner` ([`runner`]).
//!
//! An instance under a sub-path is simulated with [`Config::path_prefix`]: the API then
//! answers only below that prefix, as a self-managed GitLab at `https://host/gitlab` does.

mod api;
pub mod runner;
mod state;

use std::io;
use std::path::Path;

use crate::config::Pat;
use crate::github::{Req, Resp, Shared};
use crate::types::{AnyJob, AnyRunner};
use crate::SimServer;

pub use state::{Race, State};

/// The admin personal access token accepted by default.
pub const DEFAULT_GITLAB_TOKEN: &str = "glpat-simulatoradmintoken";
/// The gitlab-runner version the simulator reports and serves.
pub const GITLAB_RUNNER_VERSION: &str = "17.5.0";

/// GitLab simulator settings, part of [`crate::SimConfig`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Accepted personal access tokens; `admin: false` gets 403 on runner routes.
    pub tokens: Vec<Pat>,
    /// The instance's sub-path (`/gitlab`), or empty.
    pub path_prefix: String,
    /// Projects (by path) that still expose a legacy `runners_token`.
    pub legacy_projects: Vec<String>,
    /// Serve gitlab-runner binaries that do not match `release.sha256`.
    pub tamper_download: bool,
    /// Play GitLab before 14.8: runners have `active` only; a `paused` parameter is ignored.
    pub without_paused: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tokens: vec![Pat {
                token: DEFAULT_GITLAB_TOKEN.into(),
                admin: true,
            }],
            path_prefix: String::new(),
            legacy_projects: Vec::new(),
            tamper_download: false,
            without_paused: false,
        }
    }
}

/// Serves `req` if it is a GitLab route; `None` otherwise.
pub(crate) fn handle(sh: &Shared, req: &Req, segs: &[&str]) -> Option<Resp> {
    let prefix: Vec<&str> = sh
        .cfg
        .gitlab
        .path_prefix
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs {
        ["gitlab-runner-downloads", rest @ ..] => return Some(api::download(sh, rest)),
        ["_sim", "gitlab", rest @ ..] => return Some(api::admin(sh, req, rest)),
        _ => {}
    }
    let api_at = segs.windows(2).position(|w| w == ["api", "v4"])?;
    if segs[..api_at] != prefix[..] {
        let resp = Resp::json(404, serde_json::json!({"message": "404 Not Found"}));
        crate::github::record(sh, req, resp.status);
        return Some(resp);
    }
    Some(api::route(sh, req, &segs[api_at + 2..]))
}

/// `cml-sim gitlab ARGS`; returns the exit code.
pub fn cli_main(args: Vec<String>) -> i32 {
    match args.first().map(String::as_str) {
        Some("runner") => runner::main(args[1..].to_vec()),
        Some("install") if args.len() == 2 => {
            let exe = std::env::current_exe().and_then(|e| e.canonicalize());
            match exe.and_then(|e| write_gitlab_runner(Path::new(&args[1]), &e)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("cml-sim gitlab install: {e}");
                    1
                }
            }
        }
        Some("queue-job") => crate::util::queue_job_cli(&args[1..], "gitlab", "project"),
        _ => {
            eprintln!(
                "usage: cml-sim gitlab runner [gitlab-runner options] | install DIR | queue-job --server URL --project P --name N [--labels a,b] --command CMD"
            );
            2
        }
    }
}

/// Writes an executable `<dir>/gitlab-runner` that runs the simulated gitlab-runner
/// (a pre-installed agent).
pub fn write_gitlab_runner(dir: &Path, sim_exe: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("gitlab-runner");
    std::fs::write(&path, runner_script(sim_exe))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
}

/// The simulated gitlab-runner executable: a script that `exec`s the simulator.
pub(crate) fn runner_script(sim_exe: &Path) -> String {
    format!(
        "#!/bin/sh\n# Simulated gitlab-runner: runs the cml-sim GitLab runner.\nexec {} gitlab runner \"$@\"\n",
        crate::tarball::sh_quote(&sim_exe.to_string_lossy())
    )
}

/// The forge-independent test view of the GitLab side (see `SimServer::github_runners`).
impl SimServer {
    pub fn gitlab_runners(&self) -> Vec<AnyRunner> {
        let off = self.shared.cfg.offline_after;
        let st = self.shared.gitlab();
        st.runners
            .values()
            .map(|r| AnyRunner {
                busy: st.running_job(r.id).is_some(),
                ..r.any(off)
            })
            .collect()
    }

    pub fn gitlab_deletes(&self) -> Vec<(String, String)> {
        self.shared.gitlab().deletes.clone()
    }

    /// Creates a runner of project `project` (`group/app`), as `POST /user/runners` does;
    /// returns its id and its `glrt-` token.
    pub fn gitlab_create_runner(
        &self,
        project: &str,
        name: &str,
        tags: &[&str],
    ) -> (String, String) {
        let mut st = self.shared.gitlab();
        let p = st.project(project, false);
        let tags = tags.iter().map(|t| t.to_string()).collect();
        let r = st.create_runner(p.id, name, tags, true);
        (r.id.to_string(), r.token)
    }

    /// Ids of the runners that deleted themselves with their own token (`DELETE /runners`).
    pub fn gitlab_token_deletes(&self) -> Vec<String> {
        self.shared.gitlab().token_deletes.clone()
    }

    pub fn gitlab_registered_names(&self) -> Vec<String> {
        self.shared.gitlab().registered_names.clone()
    }

    /// Queues a one-job pipeline in project `project` (`group/app`) with `labels` as the job's
    /// tags; returns the job id.
    pub fn gitlab_queue_job(
        &self,
        project: &str,
        name: &str,
        labels: &[&str],
        command: &str,
    ) -> String {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        self.shared
            .gitlab()
            .queue_job(project, name, &labels, command)
            .to_string()
    }

    pub fn gitlab_job(&self, id: &str) -> Option<AnyJob> {
        let id: u64 = id.parse().ok()?;
        self.shared.gitlab().jobs.get(&id).map(|j| j.any())
    }

    pub fn gitlab_issued_secrets(&self) -> Vec<String> {
        self.shared.gitlab().issued.clone()
    }

    /// The pipeline job `id` belongs to.
    pub fn gitlab_pipeline_of(&self, id: &str) -> Option<u64> {
        let id: u64 = id.parse().ok()?;
        self.shared.gitlab().jobs.get(&id).map(|j| j.pipeline_id)
    }

    /// Every job of pipeline `pipeline`, oldest first, with its status.
    pub fn gitlab_pipeline_jobs(&self, pipeline: u64) -> Vec<(u64, String)> {
        self.shared
            .gitlab()
            .jobs
            .values()
            .filter(|j| j.pipeline_id == pipeline)
            .map(|j| (j.id, j.status.clone()))
            .collect()
    }

    /// Arms a one-shot [`Race`]: a job in project `project` (`group/app`) with `labels` as its
    /// tags is held (status `created`: no runner takes it) until that moment, then queued and
    /// handed to the runner then, as though the runner's own request were processed at that
    /// instant (a paused runner cannot take it: it stays queued). Returns the job id.
    pub fn gitlab_race(
        &self,
        at: Race,
        project: &str,
        name: &str,
        labels: &[&str],
        command: &str,
    ) -> String {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        let mut st = self.shared.gitlab();
        let id = st.queue_job(project, name, &labels, command);
        if let Some(j) = st.jobs.get_mut(&id) {
            j.status = "created".into();
        }
        st.race = Some((at, id));
        id.to_string()
    }

    /// Whether runner `id` is paused.
    pub fn gitlab_runner_paused(&self, id: &str) -> Option<bool> {
        let id: u64 = id.parse().ok()?;
        self.shared.gitlab().runners.get(&id).map(|r| r.paused)
    }

    /// Retries requested through the API: (job id, new job id).
    pub fn gitlab_retries(&self) -> Vec<(u64, u64)> {
        self.shared.gitlab().retries.clone()
    }

    /// How many gitlab-runner binaries were downloaded.
    pub fn gitlab_downloads(&self) -> usize {
        self.shared.gitlab().downloads
    }
}

impl Shared {
    pub(crate) fn gitlab(&self) -> std::sync::MutexGuard<'_, State> {
        self.gitlab.lock().unwrap_or_else(|e| e.into_inner())
    }
}
