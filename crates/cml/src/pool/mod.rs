//! `cml runner pool`: one process that keeps a pool of single-use runners sized to the forge's
//! queue (rules in [`cml_core::pool`]), on this machine or on any cloud.
//!
//! How: every round (`CML_POOL_POLL_INTERVAL`, 2 s by default) the pool lists the jobs waiting
//! for a runner ([`cml_forge::Forge::queued_jobs`]) and keeps those that fit its labels, lists
//! its runners in the forge (its runners are named `<pool name>-<6 characters>`), plans, and
//! carries out the plan. A runner is a child `cml runner launch --single` with the pool's own
//! options (its forge, labels and `--cloud*` options), a name and, on this machine, a work
//! directory of its own: on this machine it is the runner itself; with `--cloud` it is the
//! launcher, which exits once the runner is online while the machine runs its one job and
//! removes itself. The credential reaches a child through its environment, never its command
//! line. Children run in process groups of their own, so a signal to the pool's group (a CI
//! system stopping the pool) reaches only the pool, which decides what happens to them.
//!
//! Contract:
//! - Capacity that is busy, or whose state is unknown, is never removed. An idle runner is
//!   removed through the forge's guarded deletion ([`cml_forge::Forge::delete_runner`], which
//!   refuses a runner that has just taken a job), and only then is its process stopped.
//! - On SIGINT/SIGTERM/SIGHUP the pool launches nothing more, stops booting launches (each
//!   tears down what it made), removes idle runners as above, and lets busy runners finish
//!   their job: on this machine it waits for them (a second signal stops them at once); cloud
//!   machines end by themselves after their job. Queued jobs stay queued in the forge.
//! - If the pool itself dies, every runner still ends by itself: single use, the idle timeout
//!   (`--idle-timeout`) and, on a cloud, the machine's maximum lifetime; what a killed launch
//!   left is found by `cml runner cleanup`.

pub mod metrics;
pub mod scaleset;

use crate::exit::{ExitCode, Failure};
use crate::settings::{Credential, RunnerSettings};
use cml_core::pool::{Bounds, Plan, Pool, Runner, State};
use cml_core::RunnerInfo;
use cml_forge::{Deleted, Forge};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A pool's name when `--name` is not given: a pool's name must be stable, since the scale
/// set named after it, and its runners' names, outlive one run of the pool.
pub const DEFAULT_NAME: &str = "cml-pool";

/// Overrides the pool's round interval (seconds, 0.1 to 60).
pub const POLL_INTERVAL_VAR: &str = "CML_POOL_POLL_INTERVAL";
/// How a GitHub pool learns of its jobs: `auto` (the default: the runner scale-set protocol
/// where the service offers it, else the queue), `scale-set` (only the protocol), or `queue`
/// (polling queued jobs; its runners still get JIT configurations).
pub const GITHUB_PROTOCOL_VAR: &str = "CML_POOL_GITHUB_PROTOCOL";

/// [`GITHUB_PROTOCOL_VAR`], resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GithubProtocol {
    Auto,
    ScaleSet,
    Queue,
}

/// Options of `cml runner pool` beyond a runner's, resolved.
#[derive(Debug)]
pub struct PoolSettings {
    pub bounds: Bounds,
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub poll: Duration,
    /// The pool's own command line (after the program name), from which each runner's is made.
    pub argv: Vec<String>,
    /// `--lease`: the Kubernetes Lease whose holder alone runs the pool.
    pub lease: Option<String>,
    pub github_protocol: GithubProtocol,
}

/// Resolves the pool's own options (`args`) next to the runner settings `s`.
pub fn resolve(
    args: &crate::cli::PoolArgs,
    s: &RunnerSettings,
    env: &dyn crate::settings::Env,
) -> anyhow::Result<PoolSettings> {
    let count = |option: &str, value: &Option<String>, default: u32| -> anyhow::Result<u32> {
        match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v.parse::<u32>().ok().filter(|n| *n <= 10_000).ok_or_else(|| {
                anyhow::anyhow!("--{option} {v:?} is not a number of runners\nhint: pass a whole number from 0 to 10000")
            }),
        }
    };
    let min_idle = count("min-idle", &args.min_idle, 0)?;
    let max = count("max", &args.max, 10)?;
    let floor = match args
        .min_idle_schedule
        .as_deref()
        .filter(|v| !v.trim().is_empty())
    {
        Some(spec) => cml_core::pool::Schedule::parse(spec, min_idle)?,
        None => cml_core::pool::Schedule::constant(min_idle),
    };
    let boot_window = match args.boot_window.as_deref().filter(|v| !v.trim().is_empty()) {
        Some(v) => cml_core::duration::parse_duration_at_most(v, Duration::from_secs(86_400))
            .map_err(|e| {
                anyhow::anyhow!(
                    "--boot-window {v:?}: {e}\nhint: pass a duration such as 5m, at most 1 day"
                )
            })?,
        None if s.cloud.is_some() => s.cloud_timeout,
        None => Duration::from_secs(300),
    };
    let bounds = Bounds::new(floor, max, boot_window)?;
    let metrics_addr = match args.metrics_addr.as_deref().filter(|v| !v.trim().is_empty()) {
        None => None,
        Some(v) => Some(v.trim().parse().map_err(|_| {
            anyhow::anyhow!("--metrics-addr {v:?} is not HOST:PORT\nhint: an IP address and a port, e.g. 127.0.0.1:9090 or 0.0.0.0:9090")
        })?),
    };
    let poll = match env.get(POLL_INTERVAL_VAR) {
        None => Duration::from_secs(2),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(x) if (0.1..=60.0).contains(&x) => Duration::from_secs_f64(x),
            _ => {
                anyhow::bail!("{POLL_INTERVAL_VAR}={v:?} is not a number of seconds from 0.1 to 60")
            }
        },
    };
    let github_protocol = match env.get(GITHUB_PROTOCOL_VAR).as_deref().map(str::trim) {
        None | Some("") | Some("auto") => GithubProtocol::Auto,
        Some("scale-set") => GithubProtocol::ScaleSet,
        Some("queue") => GithubProtocol::Queue,
        Some(v) => anyhow::bail!(
            "{GITHUB_PROTOCOL_VAR}={v:?} is not a protocol\nhint: auto, scale-set or queue"
        ),
    };
    if s.reuse || s.reuse_idle {
        tracing::warn!("--reuse and --reuse-idle do not apply to a pool: each of its runners is new and single-use");
    }
    let lease = args
        .lease
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from);
    if let Some(name) = &lease {
        if !cml_core::k8s::namespace_ok(name) {
            anyhow::bail!("--lease {name:?} is not a Lease name\nhint: at most 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit");
        }
    }
    Ok(PoolSettings {
        bounds,
        metrics_addr,
        poll,
        argv: std::env::args().skip(1).collect(),
        lease,
        github_protocol,
    })
}

/// A runner the pool launched.
struct Tracked {
    name: String,
    child: Option<tokio::process::Child>,
    launched: Instant,
    replacement: bool,
    /// Seen online in the forge at least once.
    was_online: bool,
    busy_since: Option<Instant>,
    /// How its process ended, once it has.
    exited: Option<std::process::ExitStatus>,
    /// When the forge first listed it offline after it had been online.
    offline_since: Option<Instant>,
    /// The pool stopped it (past the boot window, or removed while idle): no longer capacity,
    /// and forgotten once its process has ended.
    stopping: bool,
    workdir: Option<PathBuf>,
}

/// Runs the pool until a signal; see the module contract.
pub async fn run(s: RunnerSettings, p: PoolSettings) -> Result<ExitCode, Failure> {
    let mut signals = crate::runner::Signals::install().map_err(Failure::error)?;
    let connected =
        crate::forge::Client::connect(s.driver, &s.repo, &s.credential, &s.bitbucket_api)
            .await
            .map_err(Failure::error)?;
    let (github, other) = match connected {
        crate::forge::Client::Github(c) => (Some(Arc::new(c)), None),
        c => (None, Some(c.into_forge(None))),
    };
    let forge: &dyn Forge = match (&github, &other) {
        (Some(g), _) => g.as_ref(),
        (None, Some(o)) => o.as_ref(),
        (None, None) => unreachable!("a pool connects to one forge"),
    };
    crate::logging::add_secrets(forge.secrets());
    // The queue must be readable before anything is launched (a GitHub pool on the
    // scale-set protocol checks its access when it opens its session).
    let uses_queue = github.is_none() || p.github_protocol == GithubProtocol::Queue;
    let first = if uses_queue {
        forge
            .queued_jobs()
            .await
            .map_err(|e| Failure::error(e.into()))?
            .len()
    } else {
        0
    };
    let metrics = metrics::Metrics::new();
    metrics.max_runners.set(p.bounds.max.into());
    let _server = match p.metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                Failure::usage(anyhow::anyhow!(
                    "--metrics-addr {addr}: cannot listen there: {e}\nhint: pick a free HOST:PORT"
                ))
            })?;
            tracing::info!(
                "serving Prometheus metrics on http://{}/metrics",
                listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            );
            Some(AbortOnDrop(tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
            ))))
        }
        None => None,
    };
    // With --lease, only the Lease's holder goes on; the others wait here (their metrics
    // answer meanwhile, so a Deployment's readiness probe passes on every replica).
    let mut leadership = match &p.lease {
        None => None,
        Some(name) => {
            let namespace = s
                .cloud
                .as_ref()
                .and_then(|c| c.kubernetes_namespace.clone());
            tokio::select! {
                l = lead(name, namespace.as_deref()) => Some(l.map_err(Failure::error)?),
                sig = signals.recv() => {
                    tracing::info!(status = "terminated", reason = "signal", "received signal {sig} while standing by");
                    return Ok(ExitCode::from_signal(sig));
                }
            }
        }
    };
    // How jobs are learned of, and how GitHub runners are registered (by the pool, each with
    // a JIT configuration: no PAT or App key reaches a runner machine).
    let mut jit = match (&github, p.github_protocol) {
        (None, _) => Jit::None,
        (Some(g), GithubProtocol::Queue) => Jit::Rest(g.clone()),
        (Some(g), protocol) => {
            let opened = tokio::select! {
                l = scaleset::Listener::open(g.clone(), &s.name, &s.labels, &s.name, p.bounds.max) => l,
                sig = signals.recv() => {
                    tracing::info!(status = "terminated", reason = "signal", "received signal {sig} before the pool started");
                    return Ok(ExitCode::from_signal(sig));
                }
            };
            match opened {
                Ok(Some(l)) => {
                    tracing::info!(
                        "listening on runner scale set {} (id {}) of {}: jobs with runs-on {} are this pool's",
                        l.set.name,
                        l.set.id,
                        forge.scope(),
                        scaleset::scale_set_labels(&s.name, &s.labels).join(", ")
                    );
                    Jit::ScaleSet(l)
                }
                Ok(None) if protocol == GithubProtocol::Auto => {
                    tracing::warn!(
                        "{} does not offer runner scale sets: polling its queued jobs instead (runners still get JIT configurations)",
                        forge.scope()
                    );
                    g.queued_jobs().await.map_err(|e| Failure::error(e.into()))?;
                    Jit::Rest(g.clone())
                }
                Ok(None) => {
                    return Err(Failure::usage(anyhow::anyhow!(
                        "{} does not offer runner scale sets\nhint: unset {GITHUB_PROTOCOL_VAR} (or set it to queue) to poll queued jobs instead",
                        forge.scope()
                    )))
                }
                Err(e) => return Err(Failure::error(e.into())),
            }
        }
    };
    remove_previous(forge, &s.name).await;
    let cloud = s
        .cloud
        .as_ref()
        .map_or("local".to_string(), |c| c.cloud.to_string());
    tracing::info!(
        status = "pool",
        name = %s.name,
        labels = %s.labels,
        max = p.bounds.max,
        "runner pool {} for {}: labels {}, at most {} runners, {} queued job(s) now",
        s.name,
        forge.scope(),
        s.labels,
        p.bounds.max,
        first
    );
    let mut pool = Pool::new();
    let mut runners: Vec<Tracked> = Vec::new();
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(p.poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let signal = loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = changed(&jit) => {}
            sig = signals.recv() => break Stop::Signal(sig),
            why = lost(&mut leadership) => break Stop::LostLease(why),
        }
        reap(&mut runners);
        let (queued, waiting) = match &jit {
            Jit::ScaleSet(l) => match l.waiting() {
                Ok(w) => w,
                Err(why) => break Stop::Fatal(why),
            },
            _ => match forge.queued_jobs().await {
                Ok(jobs) => {
                    let fit: Vec<_> = jobs
                        .into_iter()
                        .filter(|j| cml_core::pool::fits(s.driver, &j.labels, &s.labels))
                        .collect();
                    let n = fit.len() as u32;
                    (fit, n)
                }
                Err(e) => {
                    tracing::warn!("{e}; trying again next round");
                    continue;
                }
            },
        };
        let mut seen: Vec<RunnerInfo> = match forge.runners().await {
            Ok(rs) => rs,
            Err(e) => {
                tracing::warn!("{e}; trying again next round");
                continue;
            }
        };
        let now = Instant::now();
        // Job startup: from first seen queued to gone from the queue.
        let ids: Vec<String> = queued.iter().map(|j| j.id.clone()).collect();
        for id in &ids {
            first_seen.entry(id.clone()).or_insert(now);
        }
        first_seen.retain(|id, since| {
            let still = ids.contains(id);
            if !still {
                metrics.job_started(now.saturating_duration_since(*since));
            }
            still
        });
        remove_stale(forge, &runners, &mut seen, !matches!(jit, Jit::None)).await;
        let observed = observe(&mut runners, &seen, now, &metrics, p.bounds.boot_window);
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let plan = pool.plan(&p.bounds, waiting, &observed, now, unix);
        report(
            &metrics,
            &plan,
            &observed,
            waiting as usize,
            &p.bounds,
            unix,
        );
        carry_out(
            &s,
            &p,
            forge,
            &jit,
            &mut runners,
            &seen,
            &plan,
            &cloud,
            &metrics,
        )
        .await;
    };
    match &signal {
        Stop::Signal(sig) => tracing::info!(
            "received signal {sig}: the pool launches nothing more, removes idle runners and lets busy ones finish"
        ),
        Stop::LostLease(why) => tracing::error!(
            "lost the Lease ({why}): the pool launches nothing more, removes idle runners and lets busy ones finish"
        ),
        Stop::Fatal(why) => tracing::error!(
            "{why}: the pool launches nothing more, removes idle runners and lets busy ones finish"
        ),
    }
    // No more work is taken: the scale set's session is closed first.
    if let Jit::ScaleSet(l) = &mut jit {
        l.stop().await;
    }
    let seen = forge.runners().await.unwrap_or_default();
    shut_down(forge, &mut runners, &seen, &mut signals).await;
    if let Jit::ScaleSet(l) = jit {
        // A scale set left behind would keep taking its labels' jobs: it is deleted once no
        // runner of the pool is registered any more (cloud runners finishing a job still are).
        let left = match forge.runners().await {
            Ok(rs) => rs
                .iter()
                .filter(|r| is_pool_runner(&s.name, &r.name))
                .count(),
            Err(e) => {
                tracing::warn!("{e}");
                usize::MAX
            }
        };
        if left > 0 {
            tracing::info!(
                "runner scale set {} is kept: runners of the pool are still registered; a pool of the same name takes it back",
                l.set.name
            );
        }
        l.close(left == 0).await;
    }
    if let Some(l) = leadership {
        match l.release().await {
            Ok(_) => tracing::info!("released the Lease"),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    match signal {
        Stop::Signal(sig) => {
            tracing::info!(status = "terminated", reason = "signal", "runner pool stopped");
            Ok(ExitCode::from_signal(sig))
        }
        Stop::LostLease(why) => Err(Failure::error(anyhow::anyhow!(
            "the pool lost its Lease: {why}\nhint: another replica leads now; this one exits to stand by again"
        ))),
        Stop::Fatal(why) => Err(Failure::error(anyhow::anyhow!("the pool stopped: {why}"))),
    }
}

/// Why the pool stops.
enum Stop {
    Signal(i32),
    LostLease(String),
    /// The scale-set listener cannot go on (another pool took the scale set).
    Fatal(String),
}

/// How the pool's GitHub runners are registered: by the pool, each with a just-in-time
/// configuration from the scale set or from the REST API; `None` for the other forges,
/// whose runners register themselves.
enum Jit {
    None,
    Rest(Arc<cml_forge::github::GithubClient>),
    ScaleSet(scaleset::Listener),
}

/// Removes from the forge the registrations of runners whose process ended and that are not
/// online: a runner on this machine that did not deregister, or a runner the pool
/// registered (`pool_registers`) whose launch failed before it ever came online. Deleted
/// ones are dropped from `seen`.
async fn remove_stale(
    forge: &dyn Forge,
    runners: &[Tracked],
    seen: &mut Vec<RunnerInfo>,
    pool_registers: bool,
) {
    for r in runners {
        if r.exited.is_none() || !(r.workdir.is_some() || (pool_registers && !r.was_online)) {
            continue;
        }
        let Some(info) = seen.iter().find(|i| i.name == r.name && !i.online).cloned() else {
            continue;
        };
        match forge.delete_stopped_runner(&info.id, &r.name).await {
            Ok(Deleted::Busy(m)) => tracing::warn!(
                "runner {} is stopped but the forge still counts it busy ({m}); removing it later",
                r.name
            ),
            Ok(_) => {
                tracing::info!(runner = %r.name, "removed the registration of stopped runner {}", r.name);
                seen.retain(|i| i.name != r.name);
            }
            Err(e) => tracing::warn!("{e}; removing runner {} later", r.name),
        }
    }
}

/// Waits until this process holds Lease `name`, then keeps renewing it.
async fn lead(
    name: &str,
    namespace: Option<&str>,
) -> anyhow::Result<cml_cloud::kubernetes::lease::Leadership> {
    use cml_cloud::kubernetes::lease::{pod_identity, LeaseLock, LeaseTimings};
    let provider = cml_cloud::kubernetes::KubernetesProvider::from_env(namespace).await?;
    let identity = pod_identity()?;
    let mut lock = LeaseLock::new(
        provider.client(),
        provider.namespace(),
        name,
        &identity,
        LeaseTimings::default(),
    )?;
    tracing::info!(
        "standing by until {identity} holds the Lease {}/{name}",
        provider.namespace()
    );
    lock.acquire().await?;
    Ok(lock.keep_renewing())
}

/// Resolves when the scale-set listener learned something (never without one).
async fn changed(jit: &Jit) {
    match jit {
        Jit::ScaleSet(l) => l.changed().await,
        _ => std::future::pending().await,
    }
}

/// Resolves when leadership is lost (never without a Lease).
async fn lost(leadership: &mut Option<cml_cloud::kubernetes::lease::Leadership>) -> String {
    match leadership {
        Some(l) => l.lost().await,
        None => std::future::pending().await,
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Notes the exit of runner processes that ended.
fn reap(runners: &mut [Tracked]) {
    for r in runners.iter_mut() {
        if r.exited.is_none() {
            if let Some(child) = r.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    r.exited = Some(status);
                }
            }
        }
    }
}

/// Each tracked runner's state from what the forge lists; forgets runners whose life is over
/// (gone from the forge after having been online, or whose process ended cleanly).
fn observe(
    runners: &mut Vec<Tracked>,
    seen: &[RunnerInfo],
    now: Instant,
    metrics: &metrics::Metrics,
    offline_limit: Duration,
) -> Vec<Runner> {
    let mut out = Vec::new();
    runners.retain_mut(|r| {
        if r.stopping {
            if r.exited.is_some() {
                finish(r);
                return false;
            }
            return true;
        }
        let info = seen.iter().find(|i| i.name == r.name);
        let state = match info {
            Some(i) if i.online && i.busy => State::Busy,
            Some(i) if i.online => State::Idle,
            Some(_) if r.was_online => {
                // Offline after having been online: its state is unknown and it is never
                // removed, but a runner whose process has ended, or that stays offline longer
                // than the boot window (a machine lost without deregistering), is no longer
                // capacity: it is forgotten, and left to `cml runner cleanup`.
                let since = *r.offline_since.get_or_insert(now);
                let local_gone = r.exited.is_some() && r.workdir.is_some();
                if local_gone || now.saturating_duration_since(since) >= offline_limit {
                    tracing::warn!(
                        runner = %r.name,
                        "runner {} is offline and no longer counted; `cml runner cleanup` removes it",
                        r.name
                    );
                    finish(r);
                    return false;
                }
                State::Unknown
            }
            Some(_) => State::Booting,
            None if r.was_online => {
                // Its one job is done (or it was removed): its life is over.
                if let Some(since) = r.busy_since.take() {
                    metrics.job_completed(now.saturating_duration_since(since));
                }
                finish(r);
                return false;
            }
            None => match r.exited {
                // A launcher that exited cleanly saw its runner online: between two rounds
                // the runner ran its job and left.
                Some(st) if st.success() => {
                    finish(r);
                    return false;
                }
                Some(_) => State::Failed,
                None => State::Booting,
            },
        };
        if matches!(state, State::Idle | State::Busy) {
            r.was_online = true;
            r.offline_since = None;
        }
        match (state, r.busy_since) {
            (State::Busy, None) => r.busy_since = Some(now),
            (State::Idle, Some(since)) => {
                metrics.job_completed(now.saturating_duration_since(since));
                r.busy_since = None;
            }
            _ => {}
        }
        out.push(Runner {
            name: r.name.clone(),
            state,
            launched: r.launched,
            replacement: r.replacement,
        });
        true
    });
    out
}

/// Removes a finished runner's work directory.
fn finish(r: &mut Tracked) {
    if let Some(dir) = r.workdir.take() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn report(
    metrics: &metrics::Metrics,
    plan: &Plan,
    runners: &[Runner],
    queued: usize,
    bounds: &Bounds,
    unix: u64,
) {
    let count = |s: State| runners.iter().filter(|r| r.state == s).count() as i64;
    metrics.assigned_jobs.set(queued as i64);
    metrics.running_jobs.set(count(State::Busy));
    metrics.busy_runners.set(count(State::Busy));
    metrics.idle_runners.set(count(State::Idle));
    metrics.booting_runners.set(count(State::Booting));
    metrics
        .registered_runners
        .set(count(State::Busy) + count(State::Idle) + count(State::Unknown));
    metrics.desired_runners.set(plan.desired.into());
    metrics.min_runners.set(bounds.floor.floor_at(unix).into());
}

#[allow(clippy::too_many_arguments)]
async fn carry_out(
    s: &RunnerSettings,
    p: &PoolSettings,
    forge: &dyn Forge,
    jit: &Jit,
    runners: &mut Vec<Tracked>,
    seen: &[RunnerInfo],
    plan: &Plan,
    cloud: &str,
    metrics: &metrics::Metrics,
) {
    for name in &plan.remove {
        let Some(r) = runners.iter_mut().find(|r| &r.name == name) else {
            continue;
        };
        let failed = plan.failed.contains(name);
        let booting = !r.was_online;
        if booting {
            let reason = if r.exited.is_some() {
                "launch_error"
            } else {
                "boot_timeout"
            };
            metrics.launch_failed(cloud, reason);
            if failed {
                tracing::error!(
                    status = "launch_failed",
                    runner = %name,
                    "runner {name} did not come online within the boot window either ({reason}); launches pause"
                );
            } else {
                tracing::warn!(runner = %name, "runner {name} did not come online within the boot window ({reason}): replacing it once");
            }
            stop(r);
            // Its launch tears down what it made; it is forgotten once its process ended.
            continue;
        }
        // Idle above desired: the forge's guarded deletion first.
        let Some(info) = seen.iter().find(|i| &i.name == name) else {
            continue;
        };
        match forge.delete_runner(&info.id, name).await {
            Ok(Deleted::Busy(_)) => {
                tracing::info!("runner {name} took a job as it was being removed; keeping it")
            }
            Ok(_) => {
                tracing::info!(runner = %name, "removed idle runner {name} (above the {} desired)", plan.desired);
                stop(r);
            }
            Err(e) => tracing::warn!("{e}; runner {name} is kept"),
        }
    }
    // Launched runners whose process ended and that the forge does not list any more are
    // forgotten once they were planned away (their replacement, if any, is launched below).
    runners.retain_mut(|r| {
        let gone = r.exited.is_some()
            && !r.was_online
            && plan.remove.contains(&r.name)
            && !seen.iter().any(|i| i.name == r.name);
        if gone {
            finish(r);
        }
        !gone
    });
    for i in 0..plan.launch {
        let replacement = i < plan.replacements;
        match launch(s, p, jit).await {
            Ok(mut t) => {
                t.replacement = replacement;
                tracing::info!(
                    status = "pool_launch",
                    runner = %t.name,
                    replacement,
                    "launching runner {} ({} desired)",
                    t.name,
                    plan.desired
                );
                runners.push(t);
            }
            Err(e) => {
                metrics.launch_failed(cloud, "launch_error");
                tracing::error!("launching a runner failed: {e:#}");
            }
        }
    }
}

/// Stops a runner's process (SIGTERM: a runner deregisters, a launcher tears down).
fn stop(r: &mut Tracked) {
    r.stopping = true;
    if let (Some(child), None) = (r.child.as_ref(), r.exited) {
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on our own child's pid (not reaped yet, so not reused).
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
}

/// Whether `runner` is a name [`runner_name`] gives for pool `pool`.
fn is_pool_runner(pool: &str, runner: &str) -> bool {
    runner
        .strip_prefix(pool)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|suffix| {
            suffix.len() == 6
                && suffix
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        })
}

/// Removes the offline runners an earlier run of this pool (same name) left registered, e.g.
/// after it was killed: their processes or machines are gone, or stopped taking jobs. Online
/// runners of that name are left alone (they end by themselves). Failures are only logged.
async fn remove_previous(forge: &dyn Forge, pool: &str) {
    let runners = match forge.runners().await {
        Ok(rs) => rs,
        Err(e) => return tracing::warn!("{e}; runners left by an earlier run are not looked for"),
    };
    for r in runners
        .iter()
        .filter(|r| !r.online && is_pool_runner(pool, &r.name))
    {
        match forge.delete_stopped_runner(&r.id, &r.name).await {
            Ok(Deleted::Busy(m)) => tracing::warn!(
                "runner {} of an earlier run is offline but still counted busy ({m}); left for now",
                r.name
            ),
            Ok(_) => tracing::info!(
                "removed offline runner {} left by an earlier run of this pool",
                r.name
            ),
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

/// A name for a new runner of the pool.
fn runner_name(pool: &str) -> String {
    let mut b = [0u8; 6];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok();
    if !ok {
        let n = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        b = [
            n as u8,
            (n >> 8) as u8,
            (n >> 16) as u8,
            (n >> 24) as u8,
            std::process::id() as u8,
            (std::process::id() >> 8) as u8,
        ];
    }
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let suffix: String = b
        .iter()
        .map(|x| ALPHABET[(*x as usize) % 36] as char)
        .collect();
    format!("{pool}-{suffix}")
}

/// Options of the pool that a runner does not take, or takes from the pool itself.
const POOL_ONLY: &[&str] = &[
    "--min-idle",
    "--max",
    "--min-idle-schedule",
    "--metrics-addr",
    "--boot-window",
    "--lease",
    "--name",
    "--workdir",
    "--path",
    "--token",
    "--driver-token",
];
/// Flags the pool sets itself on each runner.
const POOL_FLAGS: &[&str] = &["--single", "--reuse", "--reuse-idle"];

/// A runner's command line from the pool's (`argv`, after the program name): `pool` becomes
/// `launch`, the pool-only options and those the pool sets itself are dropped (in both the
/// `--opt=value` and `--opt value` forms), then `--single`, the name and the work directory
/// are added.
pub fn runner_args(argv: &[String], name: &str, workdir: Option<&std::path::Path>) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_value = false;
    let mut replaced = false;
    for a in argv {
        if skip_value {
            skip_value = false;
            continue;
        }
        if !replaced && a == "pool" {
            out.push("launch".to_string());
            replaced = true;
            continue;
        }
        let key = a.split('=').next().unwrap_or(a);
        if POOL_ONLY.contains(&key) {
            skip_value = !a.contains('=');
            continue;
        }
        if POOL_FLAGS.contains(&key) {
            continue;
        }
        out.push(a.clone());
    }
    out.push("--single".into());
    out.push("--name".into());
    out.push(name.into());
    if let Some(dir) = workdir {
        out.push("--workdir".into());
        out.push(dir.display().to_string());
    }
    out
}

/// Starts one runner (see the module documentation); a GitHub runner is registered first,
/// and its process gets its JIT configuration besides the pool's credential (which a cloud
/// launcher uses to watch the runner, and never hands to the machine).
async fn launch(s: &RunnerSettings, p: &PoolSettings, jit: &Jit) -> anyhow::Result<Tracked> {
    let name = runner_name(&s.name);
    let registered = match jit {
        Jit::None => None,
        Jit::Rest(g) => {
            let (info, config) = g.jit_config(&name, &s.labels, "_work").await?;
            crate::logging::add_secrets([config.expose().to_string()]);
            Some((info.id, config))
        }
        Jit::ScaleSet(l) => {
            let r = l.client.generate_jit_config(&l.set, &name, "_work").await?;
            crate::logging::add_secrets([r.config.expose().to_string()]);
            Some((r.id.to_string(), r.config))
        }
    };
    let workdir = s.cloud.is_none().then(|| s.workdir.join(&name));
    if let Some(dir) = &workdir {
        std::fs::create_dir_all(dir)?;
    }
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(runner_args(&p.argv, &name, workdir.as_deref()))
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        // Its own process group: a signal to the pool's group is the pool's to handle.
        .process_group(0)
        .kill_on_drop(false);
    match &s.credential {
        Credential::Token { token, .. } => {
            cmd.env("REPO_TOKEN", token.expose());
        }
        Credential::GithubApp { app_id, pem } => {
            cmd.env(crate::settings::vars::GITHUB_APP_ID, app_id)
                .env(crate::settings::vars::GITHUB_APP_PEM, pem.expose());
        }
    }
    if let Some((id, config)) = &registered {
        cmd.env(crate::settings::vars::GITHUB_JIT_CONFIG, config.expose())
            .env(crate::settings::vars::GITHUB_JIT_RUNNER_ID, id);
    }
    let child = cmd.spawn()?;
    Ok(Tracked {
        name,
        child: Some(child),
        launched: Instant::now(),
        replacement: false,
        was_online: false,
        busy_since: None,
        exited: None,
        stopping: false,
        offline_since: None,
        workdir,
    })
}

/// How long a shutdown waits for launches being stopped to tear down.
const TEARDOWN_WAIT: Duration = Duration::from_secs(120);

/// The shutdown of the module contract.
async fn shut_down(
    forge: &dyn Forge,
    runners: &mut [Tracked],
    seen: &[RunnerInfo],
    signals: &mut crate::runner::Signals,
) {
    let by_name: BTreeMap<&str, &RunnerInfo> = seen.iter().map(|i| (i.name.as_str(), i)).collect();
    for r in runners.iter_mut() {
        reap_one(r);
        match by_name.get(r.name.as_str()) {
            Some(i) if i.online && i.busy => {
                tracing::info!("runner {} is running a job: it finishes it", r.name)
            }
            Some(i) if i.online => match forge.delete_runner(&i.id, &r.name).await {
                Ok(Deleted::Busy(_)) => {
                    tracing::info!("runner {} has just taken a job: it finishes it", r.name)
                }
                Ok(_) => {
                    tracing::info!("removed idle runner {}", r.name);
                    stop(r);
                }
                Err(e) => tracing::warn!("{e}; runner {} is left to its idle timeout", r.name),
            },
            _ if !r.was_online => stop(r),
            _ => {}
        }
    }
    // Local runners and launches still running are waited for; a further signal stops them.
    let deadline = Instant::now() + TEARDOWN_WAIT;
    loop {
        let waiting: Vec<&str> = runners
            .iter_mut()
            .filter_map(|r| {
                reap_one(r);
                r.exited.is_none().then_some(r.name.as_str())
            })
            .collect();
        if waiting.is_empty() {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            sig = signals.recv() => {
                tracing::warn!("signal {sig}: stopping every runner now");
                for r in runners.iter_mut() {
                    stop(r);
                }
            }
        }
        // Launches tearing down are bounded; local runners finishing a job are not.
        let only_launches = runners
            .iter()
            .filter(|r| r.exited.is_none())
            .all(|r| !r.was_online);
        if only_launches && Instant::now() > deadline {
            tracing::error!("launches still tearing down after {} s; `cml runner cleanup` finds what they leave", TEARDOWN_WAIT.as_secs());
            break;
        }
    }
    for r in runners.iter_mut() {
        finish(r);
    }
}

fn reap_one(r: &mut Tracked) {
    if r.exited.is_none() {
        if let Some(child) = r.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                r.exited = Some(status);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_the_pool_gives_are_its_runners() {
        let name = runner_name("gpu-pool");
        assert!(is_pool_runner("gpu-pool", &name), "{name}");
        for other in [
            "gpu-pool",
            "gpu-pool-",
            "gpu-pool-abc12",
            "gpu-pool-abc1234",
            "gpu-pool-ABC123",
            "gpu-pool-x-abc123",
            "gpu-poolx-abc123",
            "cml-0deadbeef1",
        ] {
            assert!(!is_pool_runner("gpu-pool", other), "{other}");
        }
    }

    #[test]
    fn a_runner_takes_the_pools_options_but_its_own_name_workdir_and_single_use() {
        let argv: Vec<String> = [
            "--log",
            "debug",
            "runner",
            "pool",
            "--repo=https://github.com/o/r",
            "--token",
            "secret",
            "--max",
            "5",
            "--min-idle=1",
            "--labels",
            "gpu",
            "--name",
            "pool-a",
            "--reuse",
            "--cloud=aws",
            "--metrics-addr",
            "127.0.0.1:9090",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let got = runner_args(
            &argv,
            "pool-a-x1",
            Some(std::path::Path::new("/w/pool-a-x1")),
        );
        assert_eq!(
            got,
            [
                "--log",
                "debug",
                "runner",
                "launch",
                "--repo=https://github.com/o/r",
                "--labels",
                "gpu",
                "--cloud=aws",
                "--single",
                "--name",
                "pool-a-x1",
                "--workdir",
                "/w/pool-a-x1"
            ]
        );
        assert!(!got.contains(&"secret".to_string()));
    }
}
