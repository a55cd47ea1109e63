//! Leader election over a `coordination.k8s.io/v1` Lease, so that of the replicas of a runner
//! pool's Deployment only one takes work at a time.
//!
//! The semantics are client-go's (`tools/leaderelection/leaderelection.go`, the
//! `tryAcquireOrRenew`, `renew` and `release` functions, and
//! `tools/leaderelection/resourcelock/leaselock.go` for how the record maps onto the Lease):
//!
//! - The record is the Lease's `spec`: `holderIdentity`, `leaseDurationSeconds`,
//!   `acquireTime`, `renewTime` and `leaseTransitions`.
//! - One attempt ([`LeaseLock::renew`]) reads the Lease and creates it, held by this
//!   candidate, when there is none. A Lease with a holder that is not this candidate is
//!   left alone while it is *valid*: until `leaseDurationSeconds` have passed, on this
//!   candidate's clock, since it last saw the record change (client-go's `observedTime`, so
//!   that clock skew between nodes cannot shorten a lease; `renewTime` is informative). A
//!   Lease without a holder (released) may be taken at once.
//! - Taking the Lease from another holder increments `leaseTransitions` and sets
//!   `acquireTime`; renewing keeps both and moves `renewTime`.
//! - Every write is an update (`PUT`) carrying the `resourceVersion` that was read, so of two
//!   candidates writing the same version the API server accepts one and answers the other 409
//!   `Conflict`: two candidates never both win. A creation that meets an existing Lease
//!   (409 `AlreadyExists`) loses the same way.
//! - [`LeaseLock::release`] writes an empty holder with `leaseDurationSeconds: 1`, so another
//!   candidate takes over at its next attempt rather than after the lease duration.
//! - [`LeaseLock::keep_renewing`] renews every `retry_period`; when no renewal has succeeded
//!   for `renew_deadline`, or another holder is seen, leadership is lost and reported. Since
//!   `renew_deadline < lease_duration`, the loss is reported before any other candidate can
//!   consider the Lease expired (given both processes' clocks run at the same rate).
//!
//! The candidate's identity is its pod's name ([`pod_identity`]: `HOSTNAME`, which the kubelet
//! sets to it), so `kubectl get lease` shows which replica leads.
//!
//! Permissions: `get`, `create` and `update` on `leases` (group `coordination.k8s.io`) in the
//! Lease's namespace ([`PERMISSIONS`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::{oneshot, watch};

/// The RBAC rules leader election needs in the Lease's namespace: `(API group, resources,
/// verbs)`.
pub const PERMISSIONS: &[(&str, &[&str], &[&str])] = &[(
    "coordination.k8s.io",
    &["leases"],
    &["get", "create", "update"],
)];

/// client-go's `JitterFactor`: retries wait `retry_period` plus up to 1.2 times more.
const JITTER_FACTOR: f64 = 1.2;

/// How long a Lease lasts, how long a leader keeps trying to renew it, and how often
/// candidates try. The defaults are those of Kubernetes' own controllers (15 s, 10 s, 2 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long a Lease stays valid after its last change (whole seconds, at least 1).
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a failed renewal before it gives up leadership.
    pub renew_deadline: Duration,
    /// The time between two attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseTimings {
    /// client-go's checks: `lease_duration > renew_deadline > 1.2 × retry_period > 0`, plus
    /// a lease duration of whole seconds (what a Lease can state).
    fn check(&self) -> Result<(), String> {
        let d = self.lease_duration;
        if d.as_secs() == 0 || d.subsec_nanos() != 0 {
            return Err(format!(
                "the lease duration must be a whole number of seconds, at least 1 (it is {d:?})"
            ));
        }
        if self.retry_period.is_zero() {
            return Err("the retry period must be greater than zero".into());
        }
        if self.renew_deadline >= d {
            return Err(format!(
                "the lease duration ({d:?}) must be greater than the renew deadline ({:?})",
                self.renew_deadline
            ));
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return Err(format!(
                "the renew deadline ({:?}) must be greater than {JITTER_FACTOR} times the retry period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(())
    }
}

/// A failed leader-election operation. Messages name the Lease; none quotes a credential.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("leader election on Lease {namespace}/{name} cannot start: {reason}\nhint: {hint}")]
    Config {
        namespace: String,
        name: String,
        reason: String,
        hint: String,
    },
    #[error("this replica has no identity for leader election: {reason}\nhint: {hint}")]
    Identity { reason: String, hint: String },
    #[error("reading Lease {namespace}/{name} failed: {reason}\nhint: {hint}")]
    Get {
        namespace: String,
        name: String,
        reason: String,
        hint: String,
        transient: bool,
    },
    #[error("creating Lease {namespace}/{name} failed: {reason}\nhint: {hint}")]
    Create {
        namespace: String,
        name: String,
        reason: String,
        hint: String,
        transient: bool,
    },
    #[error("updating Lease {namespace}/{name} failed: {reason}\nhint: {hint}")]
    Update {
        namespace: String,
        name: String,
        reason: String,
        hint: String,
        transient: bool,
    },
    #[error("releasing Lease {namespace}/{name} failed: {reason}\nhint: {hint}; the other replicas take over once it expires")]
    Release {
        namespace: String,
        name: String,
        reason: String,
        hint: String,
    },
}

impl LeaseError {
    /// Whether trying again may succeed (no answer, a timeout, 429 or a server error), as
    /// opposed to a refusal that will stand (credentials, permissions, a missing namespace).
    pub fn is_transient(&self) -> bool {
        match self {
            LeaseError::Get { transient, .. }
            | LeaseError::Create { transient, .. }
            | LeaseError::Update { transient, .. } => *transient,
            LeaseError::Config { .. }
            | LeaseError::Identity { .. }
            | LeaseError::Release { .. } => false,
        }
    }
}

/// The outcome of one attempt to acquire or renew.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Election {
    /// This candidate holds the Lease (it just wrote it).
    Leading,
    /// Another candidate holds a Lease that is still valid: its identity.
    HeldBy(String),
    /// Another candidate wrote (or deleted) the Lease between this one's read and write.
    Conflict,
}

/// Where a [`Leadership`] stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leading {
    Yes,
    /// Leadership was lost (why); the holder must stop taking work.
    Lost(String),
}

/// The identity of this candidate: the pod's name, which the kubelet puts in `HOSTNAME`.
pub fn pod_identity() -> Result<String, LeaseError> {
    identity_from_hostname(std::env::var("HOSTNAME").ok().as_deref())
}

/// [`pod_identity`] given `HOSTNAME`'s value.
pub fn identity_from_hostname(hostname: Option<&str>) -> Result<String, LeaseError> {
    match hostname.map(str::trim) {
        Some(h) if !h.is_empty() => Ok(h.to_string()),
        _ => Err(LeaseError::Identity {
            reason: "HOSTNAME is not set, so this replica has no identity".into(),
            hint: "run the pool in a pod (the kubelet sets HOSTNAME to the pod's name), or set HOSTNAME to a name unique among the candidates".into(),
        }),
    }
}

/// What this candidate last saw of the Lease.
struct Observed {
    /// The object as last read or written (its `resourceVersion` guards the next update).
    lease: Lease,
    record: LeaseSpec,
    /// When the record was last seen to change, on this candidate's clock.
    at: Instant,
}

/// One candidate for leadership over Lease `name` in `namespace`.
pub struct LeaseLock {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timings: LeaseTimings,
    observed: Option<Observed>,
}

impl std::fmt::Debug for LeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseLock")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("identity", &self.identity)
            .field("timings", &self.timings)
            .finish()
    }
}

impl LeaseLock {
    /// A candidate named `identity` (see [`pod_identity`]) for Lease `name` in `namespace`.
    /// Sends nothing. Err when the timings break client-go's rules or a name is empty.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: LeaseTimings,
    ) -> Result<LeaseLock, LeaseError> {
        let config = |reason: String, hint: &str| LeaseError::Config {
            namespace: namespace.into(),
            name: name.into(),
            reason,
            hint: hint.into(),
        };
        if name.is_empty() || namespace.is_empty() {
            return Err(config(
                "the Lease needs a name and a namespace".into(),
                "name the Lease all replicas of the pool share",
            ));
        }
        if identity.trim().is_empty() {
            return Err(config(
                "the candidate's identity is empty".into(),
                "use the pod's name (HOSTNAME)",
            ));
        }
        timings.check().map_err(|r| {
            config(
                r,
                "keep lease duration > renew deadline > 1.2 × retry period (the defaults are 15 s, 10 s, 2 s)",
            )
        })?;
        Ok(LeaseLock {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            timings,
            observed: None,
        })
    }

    /// This candidate's identity (what it writes as `holderIdentity`).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The holder of the Lease as last seen (None before the first attempt, or when it was
    /// released).
    pub fn holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .and_then(|o| o.record.holder_identity.as_deref())
            .filter(|h| !h.is_empty())
    }

    /// Whether this candidate holds the Lease as last seen and that Lease has not expired
    /// since (on this candidate's clock).
    pub fn is_leader(&self) -> bool {
        self.holds() && self.valid(Instant::now())
    }

    /// client-go's `IsLeader`: the last record seen names this candidate.
    fn holds(&self) -> bool {
        self.holder() == Some(self.identity.as_str())
    }

    /// client-go's `isLeaseValid`: the record seen has not outlived its duration.
    fn valid(&self, now: Instant) -> bool {
        self.observed.as_ref().is_some_and(|o| {
            let secs = o.record.lease_duration_seconds.unwrap_or(0).max(0) as u64;
            o.at + Duration::from_secs(secs) > now
        })
    }

    /// Tries until this candidate leads, every `retry_period` (with client-go's jitter).
    /// Transient failures are logged and retried; a refusal that will stand (credentials,
    /// permissions, namespace, an invalid Lease) is returned.
    pub async fn acquire(&mut self) -> Result<(), LeaseError> {
        loop {
            match self.renew().await {
                Ok(Election::Leading) => {
                    tracing::info!(
                        "leading: Lease {}/{} is held by {}",
                        self.namespace,
                        self.name,
                        self.identity
                    );
                    return Ok(());
                }
                Ok(Election::HeldBy(h)) => {
                    tracing::debug!("Lease {}/{} is held by {h}", self.namespace, self.name)
                }
                Ok(Election::Conflict) => tracing::debug!(
                    "Lease {}/{} was written by another candidate first",
                    self.namespace,
                    self.name
                ),
                Err(e) if e.is_transient() => tracing::warn!("{e}"),
                Err(e) => return Err(e),
            }
            tokio::time::sleep(jittered(self.timings.retry_period)).await;
        }
    }

    /// One attempt to acquire or renew the Lease (client-go's `tryAcquireOrRenew`): creates
    /// it when absent, takes it when released or expired, renews it when this candidate
    /// holds it. Each request is bounded by `renew_deadline`.
    pub async fn renew(&mut self) -> Result<Election, LeaseError> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let mut record = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timings.lease_duration.as_secs() as i32),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: None,
            ..LeaseSpec::default()
        };
        // 1. Obtain the record, or create it.
        let got = self
            .bounded(self.api.get_opt(&self.name))
            .await
            .map_err(|e| self.failed(Op::Get, e))?;
        let Some(current) = got else {
            record.lease_transitions = Some(0);
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(record.clone()),
            };
            return match self
                .bounded(self.api.create(&PostParams::default(), &lease))
                .await
            {
                Ok(made) => {
                    self.observe(made, true);
                    Ok(Election::Leading)
                }
                Err(e) if conflict(&e) => Ok(Election::Conflict),
                Err(e) => Err(self.failed(Op::Create, e)),
            };
        };
        // 2. Look at the holder and the time.
        let old = current.spec.clone().unwrap_or_default();
        let changed = self.observed.as_ref().is_none_or(|o| o.record != old);
        self.observe(current, changed);
        if let Some(holder) = old.holder_identity.as_deref().filter(|h| !h.is_empty()) {
            if !self.holds() && self.valid(Instant::now()) {
                return Ok(Election::HeldBy(holder.to_string()));
            }
        }
        // 3. Keep the acquisition's fields when renewing; count a transition when taking.
        let transitions = old.lease_transitions.unwrap_or(0);
        if self.holds() {
            record.acquire_time = old.acquire_time.clone();
            record.lease_transitions = Some(transitions);
        } else {
            record.lease_transitions = Some(transitions.saturating_add(1));
        }
        self.write(record, Op::Update).await
    }

    /// Gives the Lease up when this candidate holds it, so another takes over at once
    /// (client-go's `release`). Ok(false) when it did not hold it (nothing is sent).
    pub async fn release(&mut self) -> Result<bool, LeaseError> {
        if !self.holds() {
            return Ok(false);
        }
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let transitions = self
            .observed
            .as_ref()
            .and_then(|o| o.record.lease_transitions);
        let record = LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: transitions,
            ..LeaseSpec::default()
        };
        match self.write(record, Op::Release).await? {
            Election::Leading => {
                tracing::info!(
                    "released Lease {}/{} ({})",
                    self.namespace,
                    self.name,
                    self.identity
                );
                Ok(true)
            }
            // Another candidate wrote it meanwhile: it is not ours to release any more.
            _ => Ok(false),
        }
    }

    /// Renews in the background every `retry_period` until leadership is lost or the
    /// returned [`Leadership`] is stopped. Call it once this candidate leads.
    pub fn keep_renewing(self) -> Leadership {
        let (tx, rx) = watch::channel(if self.is_leader() {
            Leading::Yes
        } else {
            Leading::Lost("this candidate did not hold the Lease when renewing began".into())
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(renew_loop(self, tx, stop_rx));
        Leadership {
            leading: rx,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Writes `record` over the Lease last seen, with its `resourceVersion`.
    async fn write(&mut self, record: LeaseSpec, op: Op) -> Result<Election, LeaseError> {
        let Some(seen) = self.observed.as_ref() else {
            return Err(self.failed(
                op,
                kube::Error::Service("the Lease was not read before updating it".into()),
            ));
        };
        let mut lease = seen.lease.clone();
        lease.spec = Some(record);
        match self
            .bounded(self.api.replace(&self.name, &PostParams::default(), &lease))
            .await
        {
            Ok(written) => {
                self.observe(written, true);
                Ok(Election::Leading)
            }
            // Written or deleted by another since it was read: the race is lost (the next
            // attempt reads, or creates, it afresh).
            Err(e) if conflict(&e) || gone(&e) => Ok(Election::Conflict),
            Err(e) => Err(self.failed(op, e)),
        }
    }

    fn observe(&mut self, lease: Lease, changed: bool) {
        let record = lease.spec.clone().unwrap_or_default();
        let at = match &self.observed {
            Some(o) if !changed => o.at,
            _ => Instant::now(),
        };
        self.observed = Some(Observed { lease, record, at });
    }

    /// `fut`, or a timeout error after `renew_deadline`.
    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, kube::Error> {
        match tokio::time::timeout(self.timings.renew_deadline, fut).await {
            Ok(r) => r,
            Err(_) => Err(kube::Error::Service(
                format!("no answer within {:?}", self.timings.renew_deadline).into(),
            )),
        }
    }

    fn failed(&self, op: Op, e: kube::Error) -> LeaseError {
        let (reason, hint, transient) = explain(&e, &self.namespace);
        let (namespace, name) = (self.namespace.clone(), self.name.clone());
        match op {
            Op::Get => LeaseError::Get {
                namespace,
                name,
                reason,
                hint,
                transient,
            },
            Op::Create => LeaseError::Create {
                namespace,
                name,
                reason,
                hint,
                transient,
            },
            Op::Update => LeaseError::Update {
                namespace,
                name,
                reason,
                hint,
                transient,
            },
            Op::Release => LeaseError::Release {
                namespace,
                name,
                reason,
                hint,
            },
        }
    }
}

#[derive(Clone, Copy)]
enum Op {
    Get,
    Create,
    Update,
    Release,
}

/// A leader renewing its Lease in the background (see [`LeaseLock::keep_renewing`]).
/// Dropping it stops renewing without releasing.
#[derive(Debug)]
pub struct Leadership {
    leading: watch::Receiver<Leading>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<LeaseLock>>,
}

impl Leadership {
    /// Whether this candidate still leads.
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow() == Leading::Yes
    }

    /// A receiver that sees the change to [`Leading::Lost`].
    pub fn subscribe(&self) -> watch::Receiver<Leading> {
        self.leading.clone()
    }

    /// Resolves when leadership is lost, with why.
    pub async fn lost(&mut self) -> String {
        loop {
            if let Leading::Lost(why) = &*self.leading.borrow_and_update() {
                return why.clone();
            }
            if self.leading.changed().await.is_err() {
                return "the renewing task ended".into();
            }
        }
    }

    /// Stops renewing and gives the lock back, still holding the Lease if it did: the Lease
    /// then expires after its duration unless renewed or released.
    pub async fn stop(mut self) -> LeaseLock {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let task = self
            .task
            .take()
            .expect("a Leadership has its task until stopped");
        match task.await {
            Ok(lock) => lock,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Stops renewing and releases the Lease so another replica takes over at once. Ok(false)
    /// when leadership had already been lost.
    pub async fn release(self) -> Result<bool, LeaseError> {
        let mut lock = self.stop().await;
        lock.release().await
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn renew_loop(
    mut lock: LeaseLock,
    tx: watch::Sender<Leading>,
    mut stop: oneshot::Receiver<()>,
) -> LeaseLock {
    if *tx.borrow() != Leading::Yes {
        return lock;
    }
    let retry = lock.timings.retry_period;
    let deadline = lock.timings.renew_deadline;
    // The start of the last successful renewal: the Lease is valid for others from a later
    // instant than this.
    let mut renewed = Instant::now();
    // Why the last answered attempt failed: a deadline that runs out mid-attempt says so.
    let mut last_failure: Option<String> = None;
    loop {
        tokio::select! {
            _ = &mut stop => return lock,
            _ = tokio::time::sleep(retry) => {}
        }
        let started = Instant::now();
        let left = deadline.saturating_sub(started.duration_since(renewed));
        let attempt = tokio::select! {
            _ = &mut stop => return lock,
            r = tokio::time::timeout(left, lock.renew()) => r,
        };
        let failure = match attempt {
            Ok(Ok(Election::Leading)) => {
                renewed = started;
                continue;
            }
            Ok(Ok(Election::HeldBy(h))) => {
                let why = format!("Lease {}/{} is now held by {h}", lock.namespace, lock.name);
                tracing::warn!("stopped leading: {why}");
                let _ = tx.send(Leading::Lost(why));
                return lock;
            }
            Ok(Ok(Election::Conflict)) => "another candidate wrote the Lease first".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => last_failure
                .clone()
                .unwrap_or_else(|| format!("no renewal answered within {deadline:?}")),
        };
        last_failure = Some(failure.clone());
        if renewed.elapsed() >= deadline {
            let why = format!(
                "Lease {}/{} was not renewed within {deadline:?}: {failure}",
                lock.namespace, lock.name
            );
            tracing::warn!("stopped leading: {why}");
            let _ = tx.send(Leading::Lost(why));
            return lock;
        }
    }
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The Lease is not found (but its namespace is).
fn gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 && !s.message.contains("namespaces"))
}

/// `(reason, hint, transient)` for a failed request.
fn explain(e: &kube::Error, namespace: &str) -> (String, String, bool) {
    match e {
        kube::Error::Api(s) => {
            let reason = format!("{} ({} {})", s.message.trim(), s.code, s.reason);
            let (hint, transient) = match s.code {
                401 => ("the cluster refused the credentials: check the service account token (automountServiceAccountToken) or the kubeconfig's user".to_string(), false),
                403 => (format!("grant get, create and update on leases (group coordination.k8s.io) in namespace {namespace} to the pool's service account (deploy/kubernetes/pool.yaml's Role does)"), false),
                404 if s.message.contains("namespaces") => (format!("namespace {namespace} does not exist: create it, or run the pool in the namespace it was applied to"), false),
                400 | 422 => ("the cluster refused the Lease: check its name (a DNS subdomain) and the timings".to_string(), false),
                429 | 500.. => ("the API server is overloaded or failing; it is tried again".to_string(), true),
                _ => ("check the cluster's state and try again".to_string(), true),
            };
            (reason, hint, transient)
        }
        kube::Error::Auth(a) => (
            super::config::unquoted(&a.to_string()),
            "the credentials could not be obtained: check the service account token or the kubeconfig's exec plugin".into(),
            false,
        ),
        other => (
            super::config::unquoted(&other.to_string()),
            "check that the API server is reachable from here; it is tried again".into(),
            true,
        ),
    }
}

/// `period` plus a random part of up to [`JITTER_FACTOR`] times it (client-go's
/// `wait.Jitter`), so candidates started together do not ask in lockstep.
fn jittered(period: Duration) -> Duration {
    // A fresh `RandomState` is randomly keyed; its hash of nothing is a random number.
    let r = RandomState::new().build_hasher().finish();
    let frac = (r >> 11) as f64 / (1u64 << 53) as f64;
    period + period.mul_f64(JITTER_FACTOR * frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_follow_client_go_rules() {
        assert!(LeaseTimings::default().check().is_ok());
        let t = |l: u64, d: u64, r: u64| LeaseTimings {
            lease_duration: Duration::from_millis(l),
            renew_deadline: Duration::from_millis(d),
            retry_period: Duration::from_millis(r),
        };
        assert!(t(1000, 700, 100).check().is_ok());
        let e = t(1000, 1000, 100).check().unwrap_err();
        assert!(e.contains("must be greater than the renew deadline"), "{e}");
        let e = t(2000, 1000, 900).check().unwrap_err();
        assert!(e.contains("1.2 times the retry period"), "{e}");
        let e = t(1500, 700, 100).check().unwrap_err();
        assert!(e.contains("whole number of seconds"), "{e}");
        let e = t(0, 0, 0).check().unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
    }

    #[test]
    fn jitter_stays_within_the_factor() {
        let p = Duration::from_millis(100);
        for _ in 0..100 {
            let j = jittered(p);
            assert!(j >= p && j <= p.mul_f64(1.0 + JITTER_FACTOR), "{j:?}");
        }
    }

    #[test]
    fn the_identity_is_the_hostname() {
        assert_eq!(
            identity_from_hostname(Some("cml-pool-7d9f-abcde")).unwrap(),
            "cml-pool-7d9f-abcde"
        );
        for h in [None, Some(""), Some("  ")] {
            let e = identity_from_hostname(h).unwrap_err().to_string();
            assert!(e.contains("HOSTNAME is not set"), "{e}");
            assert!(e.contains("hint: run the pool in a pod"), "{e}");
        }
    }
}
