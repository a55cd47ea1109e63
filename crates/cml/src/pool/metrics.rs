//! The pool's Prometheus metrics, served as text on `--metrics-addr` (`GET /metrics`).
//!
//! Names follow actions-runner-controller's `gha_*` metrics where the meaning is the same
//! (its listener's gauges and histograms); the few without an ARC equivalent are `cml_pool_*`.
//! No label carries a runner, job or workflow name: the series stay few whatever the load.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The label set of launch failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaunchFailure {
    /// `local`, `aws`, `gcp`, `azure`, `kubernetes`.
    pub cloud: String,
    /// `boot_timeout` (not online within the boot window) or `launch_error` (the launch
    /// exited with an error).
    pub reason: String,
}

/// Every metric of the pool.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub assigned_jobs: Gauge,
    pub running_jobs: Gauge,
    pub started_jobs: Counter,
    pub completed_jobs: Counter,
    pub idle_runners: Gauge,
    pub busy_runners: Gauge,
    pub booting_runners: Gauge,
    pub registered_runners: Gauge,
    pub desired_runners: Gauge,
    pub min_runners: Gauge,
    pub max_runners: Gauge,
    pub job_startup: Histogram,
    pub job_execution: Histogram,
    pub launch_failures: Family<LaunchFailure, Counter>,
}

/// Seconds: 1 s to about 2.3 h (startup), 10 s to about 3 days (execution).
fn startup_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 14)
}
fn execution_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(10.0, 2.0, 15)
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            assigned_jobs: Gauge::default(),
            running_jobs: Gauge::default(),
            started_jobs: Counter::default(),
            completed_jobs: Counter::default(),
            idle_runners: Gauge::default(),
            busy_runners: Gauge::default(),
            booting_runners: Gauge::default(),
            registered_runners: Gauge::default(),
            desired_runners: Gauge::default(),
            min_runners: Gauge::default(),
            max_runners: Gauge::default(),
            job_startup: Histogram::new(startup_buckets()),
            job_execution: Histogram::new(execution_buckets()),
            launch_failures: Family::default(),
        };
        r.register(
            "gha_assigned_jobs",
            "Jobs waiting for a runner of the pool (queued, fitting its labels)",
            m.assigned_jobs.clone(),
        );
        r.register(
            "gha_running_jobs",
            "Jobs running on the pool's runners",
            m.running_jobs.clone(),
        );
        r.register(
            "gha_started_jobs",
            "Jobs the pool's runners started",
            m.started_jobs.clone(),
        );
        r.register(
            "gha_completed_jobs",
            "Jobs the pool's runners completed",
            m.completed_jobs.clone(),
        );
        r.register(
            "gha_idle_runners",
            "Runners online and idle",
            m.idle_runners.clone(),
        );
        r.register(
            "gha_busy_runners",
            "Runners running a job",
            m.busy_runners.clone(),
        );
        r.register(
            "cml_pool_booting_runners",
            "Runners launched and not yet online",
            m.booting_runners.clone(),
        );
        r.register(
            "gha_registered_runners",
            "Runners of the pool registered in the forge",
            m.registered_runners.clone(),
        );
        r.register(
            "gha_desired_runners",
            "Runners the pool wants: running + queued jobs + the warm floor, capped",
            m.desired_runners.clone(),
        );
        r.register(
            "gha_min_runners",
            "The warm floor of the moment",
            m.min_runners.clone(),
        );
        r.register("gha_max_runners", "--max", m.max_runners.clone());
        r.register(
            "gha_job_startup_duration_seconds",
            "From a job seen queued to its start on a pool runner",
            m.job_startup.clone(),
        );
        r.register(
            "gha_job_execution_duration_seconds",
            "From a job's start on a pool runner to its end",
            m.job_execution.clone(),
        );
        r.register(
            "cml_pool_launch_failures",
            "Launches that failed, by cloud and reason",
            m.launch_failures.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            ..m
        }
    }

    /// The text exposition (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn launch_failed(&self, cloud: &str, reason: &str) {
        self.launch_failures
            .get_or_create(&LaunchFailure {
                cloud: cloud.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn job_started(&self, startup: Duration) {
        self.started_jobs.inc();
        self.job_startup.observe(startup.as_secs_f64());
    }

    pub fn job_completed(&self, execution: Duration) {
        self.completed_jobs.inc();
        self.job_execution.observe(execution.as_secs_f64());
    }
}

/// The longest request head read.
const MAX_REQUEST: usize = 8192;

/// Serves `GET /metrics` on `listener` until the task is dropped. Any other path is 404; a
/// request that is not HTTP is closed.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Metrics) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                true
            })
            .await;
            if !matches!(read, Ok(true)) {
                return;
            }
            let head = String::from_utf8_lossy(&buf);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, body, kind) = if head.starts_with("GET ")
                && (path == "/metrics" || path.starts_with("/metrics?"))
            {
                (
                    "200 OK",
                    metrics.render(),
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            } else {
                ("404 Not Found", "not found\n".to_string(), "text/plain")
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}
