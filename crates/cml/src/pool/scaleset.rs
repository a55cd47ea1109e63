//! The pool's side of GitHub's runner scale-set protocol (see
//! [`cml_forge::github::scaleset`]): the scale set named after the pool, one message session
//! on it, and a listener that long-polls its queue, acquires every job offered, and keeps what
//! the pool sizes itself by: the jobs assigned to the scale set that no runner has taken yet.
//!
//! Contract:
//! - A second pool for the same scale set is refused when it opens its session
//!   ([`ScaleSetError::SessionConflict`]): one session owner, never a race.
//! - Every message is acknowledged after its jobs were handled; one whose acknowledgement
//!   failed is delivered again, and handling it again is harmless (an acquisition of a job
//!   already assigned is refused by the service, waiting jobs are keyed by request id).
//! - A lost session (expired, or dropped by the service) is opened again; when another pool
//!   took the scale set meanwhile, the listener reports that as fatal and the pool stops.
//! - [`Listener::close`] closes the session (the service also drops it when it expires) and,
//!   when asked, deletes the scale set, so that a pool stopped for good leaves no scale set
//!   that would keep taking its labels' jobs; a pool started again creates it anew.
//! - Each message that changed what the pool waits for wakes the pool
//!   ([`Listener::changed`]), so a job is acted on as soon as it is assigned.

use cml_core::Labels;
use cml_forge::github::scaleset::{
    JobMessage, ScaleSet, ScaleSetClient, ScaleSetError, Session, Statistics, DEFAULT_RUNNER_GROUP,
};
use cml_forge::github::GithubClient;
use cml_forge::{ApiError, QueuedJob, RetryPolicy};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one poll of the queue may stay open (the service answers within about 50 s).
const LONG_POLL: Duration = Duration::from_secs(60);
/// The longest wait between two attempts after failed polls in a row.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the listener learned, for the pool's rounds.
#[derive(Default)]
struct Seen {
    statistics: Option<Statistics>,
    /// Jobs assigned to the scale set that no runner has started, by request id.
    waiting: BTreeMap<i64, QueuedJob>,
    /// Why the listener stopped, when it had to.
    fatal: Option<String>,
}

/// An open session on the pool's scale set, with its listener running.
pub struct Listener {
    pub client: Arc<ScaleSetClient>,
    pub set: ScaleSet,
    seen: Arc<Mutex<Seen>>,
    wake: Arc<tokio::sync::Notify>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Whether `e` says the Actions service does not offer scale sets here (GitHub Enterprise
/// Server versions without the protocol answer the registration exchange with 404).
pub fn unavailable(e: &ScaleSetError) -> bool {
    matches!(
        e,
        ScaleSetError::AdminToken {
            cause: ApiError::Status { status: 404, .. },
            ..
        }
    )
}

/// The labels the scale set carries: its name, `self-hosted` (which jobs written for CML's
/// runners ask for) and the pool's `--labels`.
pub fn scale_set_labels(name: &str, labels: &Labels) -> Vec<String> {
    let mut out = vec![name.to_string(), "self-hosted".to_string()];
    for l in labels.as_slice() {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(l)) {
            out.push(l.clone());
        }
    }
    out
}

impl Listener {
    /// Finds or creates the scale set `name` with the pool's labels, opens its session for
    /// `owner` and starts listening. `Ok(None)`: the service has no scale sets here (the pool
    /// falls back to polling the queue with JIT runners).
    pub async fn open(
        github: Arc<GithubClient>,
        name: &str,
        labels: &Labels,
        owner: &str,
        max_capacity: u32,
    ) -> Result<Option<Listener>, ScaleSetError> {
        let client = Arc::new(ScaleSetClient::new(
            github,
            RetryPolicy::default(),
            LONG_POLL,
        )?);
        let set = match client
            .get_or_create_scale_set(name, &scale_set_labels(name, labels), DEFAULT_RUNNER_GROUP)
            .await
        {
            Ok(set) => set,
            Err(e) if unavailable(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let session = client.create_session(&set, owner).await?;
        crate::logging::add_secrets(client.secrets());
        let seen = Arc::new(Mutex::new(Seen {
            statistics: session.statistics,
            ..Seen::default()
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let wake = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(listen(
            client.clone(),
            set.clone(),
            session,
            owner.to_string(),
            max_capacity,
            Shared {
                seen: seen.clone(),
                wake: wake.clone(),
            },
            stopped,
        ));
        Ok(Some(Listener {
            client,
            set,
            seen,
            wake,
            stop: Some(stop),
            task: Some(task),
        }))
    }

    /// The jobs waiting for a runner, and how many the service counts (assigned and not
    /// running), which may be more when jobs were assigned before this pool listened.
    /// `Err`: the listener stopped, and why.
    pub fn waiting(&self) -> Result<(Vec<QueuedJob>, u32), String> {
        let seen = self
            .seen
            .lock()
            .map_err(|_| "the listener failed".to_string())?;
        if let Some(why) = &seen.fatal {
            return Err(why.clone());
        }
        let jobs: Vec<QueuedJob> = seen.waiting.values().cloned().collect();
        let counted = seen.statistics.map_or(0, |s| {
            s.total_assigned_jobs.saturating_sub(s.total_running_jobs) as u32
        });
        let n = counted.max(jobs.len() as u32);
        Ok((jobs, n))
    }

    /// Resolves when a message changed the waiting jobs or the statistics.
    pub async fn changed(&self) {
        self.wake.notified().await
    }

    /// Stops listening (no job is acquired any more) and closes the session; done once.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }

    /// [`Listener::stop`]s, then with `delete` deletes the scale set.
    pub async fn close(mut self, delete: bool) {
        self.stop().await;
        if delete {
            match self.client.delete_scale_set(&self.set).await {
                Ok(()) => tracing::info!(
                    "deleted runner scale set {}: its labels' jobs wait for the next pool or other runners",
                    self.set.name
                ),
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }
}

/// What the listener shares with the pool.
struct Shared {
    seen: Arc<Mutex<Seen>>,
    wake: Arc<tokio::sync::Notify>,
}

/// The listener's loop (see the module contract).
async fn listen(
    client: Arc<ScaleSetClient>,
    set: ScaleSet,
    mut session: Session,
    owner: String,
    max_capacity: u32,
    shared: Shared,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let seen = &shared.seen;
    let mut last_id = 0u64;
    let mut failures = 0u32;
    let fatal = |why: String| {
        tracing::error!("{why}");
        if let Ok(mut s) = seen.lock() {
            s.fatal = Some(why);
        }
    };
    loop {
        let polled = tokio::select! {
            _ = &mut stopped => break,
            m = client.get_message(&mut session, last_id, max_capacity) => m,
        };
        let message = match polled {
            Ok(m) => {
                failures = 0;
                m
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let gone = matches!(
                    e.api(),
                    Some(ApiError::Status {
                        status: 404 | 410,
                        ..
                    })
                );
                if gone {
                    tracing::warn!(
                        "{e}; the session on scale set {} is gone, opening a new one",
                        set.name
                    );
                    match client.create_session(&set, &owner).await {
                        Ok(s) => {
                            crate::logging::add_secrets(client.secrets());
                            session = s;
                            last_id = 0;
                            continue;
                        }
                        Err(e @ ScaleSetError::SessionConflict { .. }) => {
                            fatal(e.to_string());
                            return;
                        }
                        Err(e) => tracing::warn!("{e}"),
                    }
                } else {
                    tracing::warn!("{e}; polling again");
                }
                let wait = Duration::from_millis(500)
                    .saturating_mul(1u32 << failures.min(6))
                    .min(MAX_BACKOFF);
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        let Some(message) = message else { continue };
        let mut acquire = Vec::new();
        if let Ok(mut s) = seen.lock() {
            if message.statistics.is_some() {
                s.statistics = message.statistics;
            }
            for m in &message.jobs {
                let job = m.job();
                match m {
                    JobMessage::Available { .. } => acquire.push(job.runner_request_id),
                    JobMessage::Assigned { .. } => {
                        s.waiting.insert(
                            job.runner_request_id,
                            QueuedJob {
                                id: job.runner_request_id.to_string(),
                                name: job.job_display_name.clone(),
                                labels: job.request_labels.clone(),
                            },
                        );
                    }
                    JobMessage::Started { .. } | JobMessage::Completed { .. } => {
                        s.waiting.remove(&job.runner_request_id);
                    }
                }
            }
        }
        if !message.jobs.is_empty() || message.statistics.is_some() {
            shared.wake.notify_one();
        }
        if !acquire.is_empty() {
            match client.acquire_jobs(&mut session, &acquire).await {
                Ok(got) => tracing::info!(
                    "acquired {} of {} job(s) offered to scale set {}",
                    got.len(),
                    acquire.len(),
                    set.name
                ),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        match client.ack(&mut session, message.id).await {
            Ok(()) => last_id = message.id,
            Err(e) => tracing::warn!("{e}"),
        }
    }
    match client.delete_session(&session).await {
        Ok(()) => tracing::info!("closed the message session on scale set {}", set.name),
        Err(e) => tracing::warn!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_set_carries_its_name_self_hosted_and_the_pools_labels_once() {
        assert_eq!(
            scale_set_labels("gpu-pool", &Labels::parse("cml,gpu,self-hosted")),
            ["gpu-pool", "self-hosted", "cml", "gpu"]
        );
    }
}
