//! The simulated Bitbucket Cloud: the repository and runner APIs a runner launcher uses
//! (`/2.0/workspaces/{ws}`, `/2.0/repositories/{ws}/{slug}` and its `pipelines/`, and the
//! internal `/internal/repositories/{ws}/{slug}/pipelines-config/runners` the web UI uses;
//! workspaces and repositories exist on first use, with stable `{uuid}`s), Basic authentication with `user:app_password`, pipelines of one step, and
//! a simulated Pipelines runner ([`runner`]) with a `docker` stand-in that runs it the way the
//! Docker runner image is run.
//!
//! The real runner talks to Atlassian's closed services; the simulated one talks to
//! `/_sim/bitbucket/runner/...` on the server named by `CML_BITBUCKET_API_URL` (the variable
//! `cml` reads for the API base), authenticated with the runner's OAuth client.

mod api;
pub mod runner;
mod state;

use std::io;
use std::path::Path;

use base64::Engine;

use crate::github::{Req, Resp, Shared};
use crate::types::{AnyJob, AnyRunner};
use crate::SimServer;

pub use state::{Race, State};

/// The variable naming the simulated Bitbucket for the simulated runner (and `cml`).
pub const API_URL_VAR: &str = "CML_BITBUCKET_API_URL";

/// `base64("cml-sim:simulatorapppassword")`, the admin credential accepted by default.
pub const DEFAULT_BITBUCKET_TOKEN: &str = "Y21sLXNpbTpzaW11bGF0b3JhcHBwYXNzd29yZA==";

/// A credential: base64 of `user:app_password`; `admin: false` gets 403 on runner routes.
#[derive(Clone, Debug)]
pub struct Credential {
    pub token: String,
    pub admin: bool,
}

/// Bitbucket simulator settings, part of [`crate::SimConfig`].
#[derive(Clone, Debug)]
pub struct Config {
    pub credentials: Vec<Credential>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            credentials: vec![Credential {
                token: DEFAULT_BITBUCKET_TOKEN.into(),
                admin: true,
            }],
        }
    }
}

/// base64 of `user:password`.
pub fn token_for(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Serves `req` if it is a Bitbucket route; `None` otherwise.
pub(crate) fn handle(sh: &Shared, req: &Req, segs: &[&str]) -> Option<Resp> {
    match segs {
        ["_sim", "bitbucket", rest @ ..] => Some(api::sim(sh, req, rest)),
        ["2.0", rest @ ..] => Some(api::public(sh, req, rest)),
        ["internal", rest @ ..] => Some(api::internal(sh, req, rest)),
        _ => None,
    }
}

const USAGE: &str = "usage: cml-sim bitbucket runner [start.sh options] | docker ARGS | install DIR | token | queue-job --server URL --repo ws/slug --name N [--labels a,b] --command CMD | help
  runner     the simulated Linux Shell runner (what start.sh runs); finds the server in CML_BITBUCKET_API_URL
  docker     the docker client stand-in: `info`, `container run ... -e NAME ... IMAGE`
  install    writes DIR/atlassian-bitbucket-pipelines-runner/bin/{start.sh,runner.jar}: start.sh runs `runner`
  token      prints the default admin token (base64 of user:app_password)
  queue-job  queues a one-step pipeline; prints the answer, {\"step_uuid\": ...}";

/// `cml-sim bitbucket ARGS`; returns the exit code.
pub fn cli_main(args: Vec<String>) -> i32 {
    let exe = || std::env::current_exe().and_then(|e| e.canonicalize());
    match args.first().map(String::as_str) {
        Some("runner") => runner::main(args[1..].to_vec()),
        Some("docker") => runner::docker_main(args[1..].to_vec()),
        Some("token") => {
            println!("{DEFAULT_BITBUCKET_TOKEN}");
            0
        }
        Some("install") if args.len() == 2 => {
            match exe().and_then(|e| write_shell_runner(Path::new(&args[1]), &e)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("cml-sim bitbucket install: {e}");
                    1
                }
            }
        }
        Some("queue-job") => crate::util::queue_job_cli(&args[1..], "bitbucket", "repo"),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            0
        }
        _ => {
            eprintln!("{USAGE}");
            2
        }
    }
}

fn write_exe(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// Writes a pre-installed simulated Linux Shell runner, laid out as Atlassian's tarball:
/// `<dir>/atlassian-bitbucket-pipelines-runner/bin/start.sh` (running the simulated runner,
/// which must be started from that `bin` directory) and a stand-in `bin/runner.jar`.
pub fn write_shell_runner(dir: &Path, sim_exe: &Path) -> io::Result<()> {
    let bin = dir.join("atlassian-bitbucket-pipelines-runner/bin");
    write_exe(
        &bin.join("start.sh"),
        &format!(
            "#!/bin/sh\n# Simulated Bitbucket Pipelines Linux Shell runner.\nexec {} bitbucket runner \"$@\"\n",
            crate::tarball::sh_quote(&sim_exe.to_string_lossy())
        ),
    )?;
    std::fs::write(
        bin.join(runner::RUNNER_JAR),
        "stand-in for the runner's jar\n",
    )
}

/// Writes an executable `<bin_dir>/docker` stand-in: `docker info` succeeds, and
/// `docker container run ... -e NAME ... IMAGE` runs the simulated runner with the values
/// taken from its environment, as the runner image would. Its arguments go to
/// `<bin_dir>/docker.argv`.
pub fn write_docker_standin(bin_dir: &Path, sim_exe: &Path) -> io::Result<()> {
    write_exe(
        &bin_dir.join("docker"),
        &format!(
            "#!/bin/sh\n# A docker client stand-in for the Bitbucket runner image.\nexec {} bitbucket docker \"$@\"\n",
            crate::tarball::sh_quote(&sim_exe.to_string_lossy())
        ),
    )
}

/// The forge-independent test view of the Bitbucket side (see `SimServer::github_runners`).
impl SimServer {
    pub fn bitbucket_runners(&self) -> Vec<AnyRunner> {
        let off = self.shared.cfg.offline_after;
        let st = self.shared.bitbucket();
        st.runners.values().map(|r| st.any_runner(r, off)).collect()
    }

    pub fn bitbucket_deletes(&self) -> Vec<(String, String)> {
        self.shared.bitbucket().deletes.clone()
    }

    pub fn bitbucket_registered_names(&self) -> Vec<String> {
        self.shared.bitbucket().registered_names.clone()
    }

    /// Queues a one-step pipeline in `repo` (`workspace/slug`) whose step runs on a runner
    /// with all of `labels`; returns the step's uuid.
    pub fn bitbucket_queue_job(
        &self,
        repo: &str,
        name: &str,
        labels: &[&str],
        command: &str,
    ) -> String {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        self.shared
            .bitbucket()
            .queue_step(repo, name, &labels, command)
    }

    pub fn bitbucket_job(&self, id: &str) -> Option<AnyJob> {
        self.shared
            .bitbucket()
            .steps
            .iter()
            .find(|s| s.uuid == id)
            .map(|s| s.any())
    }

    /// The `{uuid}` of the pipeline step `id` belongs to.
    pub fn bitbucket_pipeline_of(&self, id: &str) -> Option<String> {
        self.shared
            .bitbucket()
            .steps
            .iter()
            .find(|s| s.uuid == id)
            .map(|s| s.pipeline_uuid.clone())
    }

    pub fn bitbucket_issued_secrets(&self) -> Vec<String> {
        self.shared.bitbucket().issued.clone()
    }

    /// Arms a one-shot [`Race`]: a one-step pipeline in `repo` (`workspace/slug`) whose step
    /// needs `labels` is held (no runner takes it) until that moment, then queued and given to
    /// the runner then, as though the runner's own request were processed at that instant (a
    /// disabled runner cannot take it: it stays queued). Returns the step's uuid.
    pub fn bitbucket_race(
        &self,
        at: Race,
        repo: &str,
        name: &str,
        labels: &[&str],
        command: &str,
    ) -> String {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        let mut st = self.shared.bitbucket();
        let uuid = st.queue_step(repo, name, &labels, command);
        if let Some(s) = st.steps.iter_mut().find(|s| s.uuid == uuid) {
            s.state = "HELD".into();
        }
        st.race = Some((at, uuid.clone()));
        uuid
    }

    /// Whether runner `uuid` is disabled.
    pub fn bitbucket_runner_disabled(&self, uuid: &str) -> Option<bool> {
        self.shared
            .bitbucket()
            .runners
            .get(uuid)
            .map(|r| r.disabled)
    }

    /// Pipelines started through the API: (the pipeline re-run, the new one).
    pub fn bitbucket_reruns(&self) -> Vec<(String, String)> {
        self.shared.bitbucket().reruns.clone()
    }
}

impl Shared {
    pub(crate) fn bitbucket(&self) -> std::sync::MutexGuard<'_, State> {
        self.bitbucket.lock().unwrap_or_else(|e| e.into_inner())
    }
}
