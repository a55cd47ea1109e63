//! [`SimServer`]: the simulated GitHub API on its own thread and tokio runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::{Fault, SimConfig};
use crate::github::state::RecordedRequest;
use crate::github::{entry, Shared};
use crate::types::{AnyJob, AnyRunner, QueuedJob, SimJob, SimRunner, SimScaleSet};

/// A running simulator. Dropping it stops the server.
pub struct SimServer {
    pub(crate) shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SimServer {
    /// Bind `127.0.0.1:0` and serve.
    pub fn start(cfg: SimConfig) -> std::io::Result<SimServer> {
        Self::start_on(cfg, 0)
    }

    /// Bind `127.0.0.1:port` (0 = any free port) and serve.
    pub fn start_on(cfg: SimConfig, port: u16) -> std::io::Result<SimServer> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(cfg, format!("http://{addr}"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cml-sim-server".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = axum::Router::new().fallback(entry).with_state(sh);
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = rx => {}
                    }
                });
            })?;
        Ok(SimServer {
            shared,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Registered runners, by id.
    pub fn runners(&self) -> Vec<SimRunner> {
        let off = self.shared.cfg.offline_after;
        self.shared
            .lock()
            .runners
            .values()
            .map(|r| SimRunner::from_runner(r, off))
            .collect()
    }

    /// Successful runner deletions (API `DELETE` and agent `remove`), in order: (id, name).
    pub fn deletes(&self) -> Vec<(u64, String)> {
        self.shared.lock().deletes.clone()
    }

    /// Names of every runner ever registered (agent config or JIT), in order.
    pub fn registered_names(&self) -> Vec<String> {
        self.shared.lock().registered_names.clone()
    }

    /// How many registration tokens the API minted.
    pub fn registration_tokens_issued(&self) -> usize {
        self.shared.lock().registration_tokens.len()
    }

    /// Every secret the server has handed out so far: registration, remove and installation
    /// tokens (tests check that none of them is ever printed).
    pub fn issued_secrets(&self) -> Vec<String> {
        let state = self.shared.lock();
        state
            .registration_tokens
            .iter()
            .chain(&state.remove_tokens)
            .map(|t| t.token.clone())
            .chain(state.installation_tokens.keys().cloned())
            .chain(state.actions.issued.iter().cloned())
            .collect()
    }

    /// The Actions service's runner scale sets, by id.
    pub fn scale_sets(&self) -> Vec<SimScaleSet> {
        let st = self.shared.lock();
        let sessions = st.actions.sessions();
        st.actions
            .scale_sets
            .values()
            .map(|s| SimScaleSet {
                id: s.id,
                name: s.name.clone(),
                scope: s.scope.key(),
                labels: s.labels.iter().map(|(_, n)| n.clone()).collect(),
                session_owners: sessions
                    .iter()
                    .filter(|(id, _)| *id == s.id)
                    .map(|(_, o)| o.clone())
                    .collect(),
                max_capacity: s.max_capacity,
                statistics: st.scale_set_statistics(s.id),
            })
            .collect()
    }

    /// Makes every Actions service admin token expire now; clients holding one are refused
    /// (401) until they exchange a registration token for a new one.
    pub fn expire_actions_admin_tokens(&self) {
        self.shared.lock().actions.expire_admin_tokens();
    }

    /// Replaces every message session's queue token: the next queue call with the old one is
    /// refused (401) until the client refreshes its session.
    pub fn expire_message_queue_tokens(&self) {
        self.shared.lock().actions.expire_queue_tokens();
    }

    /// The next message-session create answers 409 (a session conflict), as when another
    /// listener holds the scale set.
    pub fn conflict_next_session(&self) {
        self.shared.lock().actions.conflict_next_session = true;
    }

    /// Queue a one-job workflow run in `repo` (`owner/repo`).
    pub fn queue_job(&self, repo: &str, name: &str, labels: &[&str], command: &str) -> QueuedJob {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        let (job_id, run_id) = self.shared.lock().queue_job(repo, name, &labels, command);
        QueuedJob { job_id, run_id }
    }

    /// A job by id.
    pub fn job(&self, id: u64) -> Option<SimJob> {
        self.shared.lock().jobs.get(&id).map(SimJob::from)
    }

    /// All jobs, by id.
    pub fn jobs(&self) -> Vec<SimJob> {
        self.shared.lock().jobs.values().map(SimJob::from).collect()
    }

    /// Queue a fault (see [`Fault`]).
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// GitHub-route requests seen so far (agent-internal and admin routes are not logged).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many agent tarballs were downloaded.
    pub fn downloads(&self) -> usize {
        self.shared.lock().downloads
    }
}

/// The forge-independent view of the GitHub side, named like the GitLab (`gitlab_*`) and
/// Bitbucket (`bitbucket_*`) accessors so tests can run one scenario on every forge.
impl SimServer {
    pub fn github_runners(&self) -> Vec<AnyRunner> {
        self.runners().iter().map(AnyRunner::from).collect()
    }

    /// API deletions: (id, name).
    pub fn github_deletes(&self) -> Vec<(String, String)> {
        self.deletes()
            .into_iter()
            .map(|(id, name)| (id.to_string(), name))
            .collect()
    }

    pub fn github_registered_names(&self) -> Vec<String> {
        self.registered_names()
    }

    /// Queues a job in `repo` (`owner/repo`); returns its id.
    pub fn github_queue_job(
        &self,
        repo: &str,
        name: &str,
        labels: &[&str],
        command: &str,
    ) -> String {
        self.queue_job(repo, name, labels, command)
            .job_id
            .to_string()
    }

    pub fn github_job(&self, id: &str) -> Option<AnyJob> {
        self.job(id.parse().ok()?).as_ref().map(AnyJob::from)
    }

    pub fn github_issued_secrets(&self) -> Vec<String> {
        self.issued_secrets()
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
