//! Settings resolved once, from the options [`crate::options::parse`] gave (the command line,
//! else the options' variables, in CML's order), then the defaults below; validated here,
//! before anything is done. The variables read here are only those that are no option's
//! ([`vars`], the CI's, `HOME`).

use crate::cli::{CleanupArgs, GlobalArgs, RunnerArgs};
use cml_core::cloud::{self, CloudArgs, CloudSpec};
use cml_core::duration::{parse_duration_at_most, parse_idle_timeout_at_most};
use cml_core::repo::{infer_driver, RepoUrl};
use cml_core::report::{ci_context, CiContext};
use cml_core::{Driver, IdleTimeout, Labels, Secret};
use std::path::PathBuf;
use std::time::Duration;

/// Environment variables read besides the options' own (see [`crate::options::variables`]).
pub mod vars {
    /// Token variables tried, in this order, when `--token` and its variables are not set
    /// and no GitHub App is.
    pub const TOKEN_CHAIN: &[&str] = &[
        "REPO_TOKEN",
        "repo_token",
        "GITHUB_TOKEN",
        "GITLAB_TOKEN",
        "BITBUCKET_TOKEN",
    ];
    /// GitHub App id and private key (PEM contents).
    pub const GITHUB_APP_ID: &str = "CML_GITHUB_APP_ID";
    pub const GITHUB_APP_PEM: &str = "CML_GITHUB_APP_PEM";
    /// Seconds between the launcher's checks of a booting cloud runner (default 5).
    pub const CLOUD_POLL_INTERVAL: &str = "CML_CLOUD_POLL_INTERVAL";
    /// Seconds the launcher's teardown may take before it reports what is left (default 60).
    pub const CLOUD_TEARDOWN_TIMEOUT: &str = "CML_CLOUD_TEARDOWN_TIMEOUT";
    /// Releases API the GitHub agent is downloaded from (a mirror, or the simulator).
    pub const GITHUB_RUNNER_RELEASES_URL: &str = "CML_GITHUB_RUNNER_RELEASES_URL";
    /// Where gitlab-runner binaries are downloaded from (GitLab's bucket layout:
    /// `{url}/{version}/binaries/gitlab-runner-linux-amd64` and `{url}/{version}/release.sha256`).
    pub const GITLAB_RUNNER_DOWNLOAD_URL: &str = "CML_GITLAB_RUNNER_DOWNLOAD_URL";
    /// The gitlab-runner version downloaded when none is installed (`latest` or `v17.5.0`).
    pub const GITLAB_RUNNER_VERSION: &str = "CML_GITLAB_RUNNER_VERSION";
    /// Bitbucket Cloud's API base (default `https://api.bitbucket.org`): a proxy, or the simulator.
    pub const BITBUCKET_API_URL: &str = "CML_BITBUCKET_API_URL";
    /// A tarball of the Bitbucket Linux Shell runner, downloaded when none is installed.
    pub const BITBUCKET_RUNNER_URL: &str = "CML_BITBUCKET_RUNNER_URL";
    /// Its SHA-256, checked when given.
    pub const BITBUCKET_RUNNER_SHA256: &str = "CML_BITBUCKET_RUNNER_SHA256";
    /// Forces gitlab-runner's executor (`docker` or `shell`) instead of detecting it.
    pub const GITLAB_EXECUTOR: &str = "CML_GITLAB_EXECUTOR";
    /// Forces the Bitbucket runner (`docker` or `shell`) instead of detecting it.
    pub const BITBUCKET_RUNTIME: &str = "CML_BITBUCKET_RUNTIME";
    /// GitHub's job time limit for self-hosted runners, in seconds (default 5 days).
    pub const JOB_TIME_LIMIT: &str = "CML_JOB_TIME_LIMIT";
    /// On a cloud machine whose launcher created the GitLab runner: the runner's id, the
    /// instance's web URL, and (in the credentials file) the runner's own token, which is
    /// then the machine's only credential.
    pub const GITLAB_RUNNER_ID: &str = "CML_GITLAB_RUNNER_ID";
    pub const GITLAB_URL: &str = "CML_GITLAB_URL";
    pub const GITLAB_RUNNER_TOKEN: &str = "CML_GITLAB_RUNNER_TOKEN";
    /// Set by a runner pool on each GitHub runner it launches: the just-in-time configuration
    /// the pool made for it (a secret) and the runner's id. The runner then registers nothing:
    /// its agent runs that configuration. On a cloud machine it is the only credential.
    pub const GITHUB_JIT_CONFIG: &str = "CML_GITHUB_JIT_CONFIG";
    pub const GITHUB_JIT_RUNNER_ID: &str = "CML_GITHUB_JIT_RUNNER_ID";
    /// On a cloud machine: which cloud it is (`aws`, `gcp`, `azure`), for interruption
    /// notices; written by the launcher, `aws` when unset.
    pub const MACHINE_CLOUD: &str = "CML_MACHINE_CLOUD";
    /// On a cloud machine: where a machine that cannot delete itself says why before it
    /// powers off (default `/dev/console`, the serial console clouds keep).
    pub const MACHINE_CONSOLE: &str = "CML_MACHINE_CONSOLE";
}

/// The longest value each duration setting accepts; a longer one is refused when the
/// settings are resolved (exit code 2, before anything is registered or created). Every
/// duration in [`RunnerSettings`] and [`CleanupSettings`] is at most one of these, so adding it
/// to the clock cannot overflow.
pub mod limits {
    use std::time::Duration;

    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;

    /// `--idle-timeout` (`never` waits forever).
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(365 * DAY);
    /// `--destroy-delay`.
    pub const DESTROY_DELAY: Duration = Duration::from_secs(DAY);
    /// `--stop-grace`.
    pub const STOP_GRACE: Duration = Duration::from_secs(HOUR);
    /// `--cloud-timeout`.
    pub const CLOUD_TIMEOUT: Duration = Duration::from_secs(DAY);
    /// `--cloud-max-lifetime` (`never` disables it).
    pub const CLOUD_MAX_LIFETIME: Duration = Duration::from_secs(365 * DAY);
    /// `CML_JOB_TIME_LIMIT` (and so `--job-time-limit-margin`, which must be shorter).
    pub const JOB_TIME_LIMIT: Duration = Duration::from_secs(30 * DAY);
    /// `CML_CLOUD_POLL_INTERVAL` (which takes 0.1 to 300 seconds).
    pub const CLOUD_POLL_INTERVAL: Duration = Duration::from_secs(5 * MINUTE);
    /// `cml runner cleanup --older-than`.
    pub const CLEANUP_OLDER_THAN: Duration = Duration::from_secs(365 * DAY);
}

/// An invalid setting.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `option` is how the user named it: `--idle-timeout`, or a variable's name.
    #[error("{option}: {cause}")]
    Duration {
        option: &'static str,
        cause: cml_core::duration::DurationError,
    },
    /// A duration longer than its maximum, for a setting that also has a minimum.
    #[error("{option}: {cause} (it takes {range})")]
    DurationRange {
        option: &'static str,
        cause: cml_core::duration::DurationError,
        range: &'static str,
    },
    #[error("--job-time-limit-margin ({margin} s) must be shorter than the job time limit ({limit} s, CML_JOB_TIME_LIMIT): a job would be stopped as soon as it starts\nhint: give a smaller --job-time-limit-margin, a larger CML_JOB_TIME_LIMIT, or --job-time-limit-margin=never")]
    MarginNotShorter { margin: u64, limit: u64 },
    #[error(transparent)]
    Repo(#[from] cml_core::repo::RepoError),
    #[error(transparent)]
    Cloud(#[from] cml_core::cloud::CloudError),
    #[error("--cloud-azure-credentials-on-machine needs {var}, the launcher's service principal to put on the machine\nhint: set AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID and AZURE_SUBSCRIPTION_ID")]
    AzureMachineCredentials { var: &'static str },
    #[error("no repository given and `git config --get remote.origin.url` found none\nhint: pass --repo https://github.com/OWNER/REPO (or set CML_REPO)")]
    NoRepo,
    #[error("invalid --log level {0:?}\nhint: use error, warn, info or debug")]
    LogLevel(String),
    #[error("invalid --{option} {value:?}: {reason}")]
    Value {
        option: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("invalid {var}={value:?}: {reason}\nhint: unset it to have it detected")]
    Variable {
        var: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("cml runner cleanup needs --cloud\nhint: add --cloud=aws --cloud-region=REGION, --cloud=gcp --cloud-region=ZONE, --cloud=azure --cloud-region=LOCATION or --cloud=kubernetes [--cloud-kubernetes-namespace=NAMESPACE]")]
    CleanupCloud,
    #[error("--single cannot be combined with --reuse or --reuse-idle (CML refuses this too)")]
    SingleWithReuse,
    #[error("no token found\nhint: pass --token, or set CML_TOKEN or one of {tried}{forge_hint}")]
    NoToken {
        tried: String,
        forge_hint: &'static str,
    },
    #[error("CML_GITHUB_APP_ID is set but CML_GITHUB_APP_PEM is not (or the other way round)\nhint: set both, or neither")]
    HalfApp,
    #[error("cannot determine the home directory for the default --workdir\nhint: pass --workdir")]
    NoHome,
    #[error("cannot read the credentials file {path}: {reason}\nhint: it is written by the launcher as root-only `KEY=\"value\"` lines (chmod 600, owned by root)")]
    CredentialsFile { path: String, reason: String },
    #[error("CML_GITLAB_RUNNER_ID is set but {missing} is not\nhint: the launcher sets these together on a cloud machine; unset CML_GITLAB_RUNNER_ID to register a new runner with an access token")]
    OwnRunner { missing: &'static str },
    #[error("{problem}\nhint: a runner pool sets CML_GITHUB_JIT_CONFIG and CML_GITHUB_JIT_RUNNER_ID together on the GitHub runners it launches; unset both to register a runner with a token")]
    Jit { problem: String },
}

/// How the agent runs jobs, when forced by `CML_GITLAB_EXECUTOR` / `CML_BITBUCKET_RUNTIME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentMode {
    Docker,
    Shell,
}

/// Credentials for the forge.
pub enum Credential {
    Token { token: Secret, source: String },
    GithubApp { app_id: String, pem: Secret },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token { source, .. } => write!(f, "Token(from {source})"),
            Credential::GithubApp { app_id, .. } => write!(f, "GithubApp({app_id})"),
        }
    }
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// Everything `cml runner launch` needs, validated.
#[derive(Debug)]
pub struct RunnerSettings {
    pub repo: RepoUrl,
    pub driver: Driver,
    pub credential: Credential,
    pub labels: Labels,
    pub idle_timeout: IdleTimeout,
    pub name: String,
    pub no_retry: bool,
    pub single: bool,
    pub reuse: bool,
    pub reuse_idle: bool,
    pub workdir: PathBuf,
    pub docker_volumes: Vec<String>,
    pub cloud: Option<CloudSpec>,
    pub destroy_delay: Duration,
    pub github_runner_version: Option<String>,
    pub github_runner_releases: String,
    /// gitlab-runner download base and version.
    pub gitlab_runner_download: String,
    pub gitlab_runner_version: String,
    /// Bitbucket Cloud API base.
    pub bitbucket_api: String,
    /// Where the Bitbucket Linux Shell runner is downloaded from, if anywhere, and its SHA-256.
    pub bitbucket_runner_url: Option<String>,
    pub bitbucket_runner_sha256: Option<String>,
    /// The agent's way of running jobs when forced: GitLab's executor or the Bitbucket runner
    /// (`CML_GITLAB_EXECUTOR`, `CML_BITBUCKET_RUNTIME`); `None` = detected.
    pub forced_agent_mode: Option<AgentMode>,
    pub stop_grace: Duration,
    pub cloud_timeout: Duration,
    /// The machine powers itself off this long after boot; `None` = never.
    pub cloud_max_lifetime: Option<Duration>,
    /// GitHub: a job running this long is stopped and re-run (the job time limit less
    /// `--job-time-limit-margin`); `None` = never.
    pub job_time_limit: Option<Duration>,
    /// The parts of [`RunnerSettings::job_time_limit`]: GitHub's limit (`CML_JOB_TIME_LIMIT`)
    /// and `--job-time-limit-margin` (`None` = never).
    pub job_limit: Duration,
    pub job_time_limit_margin: Option<Duration>,
    pub cloud_cml_url: String,
    /// What the machine checks the downloaded `cml` against: `--cloud-cml-sha256`, else the
    /// `SHA256SUMS` published next to `--cloud-cml-url`. Always set for a cloud runner
    /// (resolution fails otherwise); `None` only for a runner on this machine.
    pub cloud_cml_checksum: Option<cml_core::startup::CmlChecksum>,
    pub cloud_poll_interval: Duration,
    /// How long the launcher's teardown may take (`CML_CLOUD_TEARDOWN_TIMEOUT`).
    pub cloud_teardown_timeout: Duration,
    pub self_terminate: bool,
    /// `--cloud-ssh-private`, checked to look like a PEM key.
    pub cloud_ssh_private: Option<Secret>,
    /// `--log`, the level this runner logs at (passed on to cloud machines).
    pub log_level: LogLevel,
    /// `--cloud-job-user`: the unprivileged user the agent and its jobs run as; `None` = root.
    pub job_user: Option<String>,
    /// `--cloud-azure-credentials-on-machine`: the launcher's service principal, to be put on
    /// the Azure machine (read from the `AZURE_*` variables when the settings are resolved);
    /// `None` = the machine uses its own managed identity.
    pub azure_machine_credentials: Option<Vec<(String, Secret)>>,
    /// On a cloud machine: the GitLab runner the launcher created, whose own token is the
    /// credential (see [`vars::GITLAB_RUNNER_ID`]).
    pub gitlab_own_runner: Option<OwnRunner>,
    /// A GitHub runner a pool registered: its just-in-time configuration (see
    /// [`vars::GITHUB_JIT_CONFIG`]).
    pub github_jit: Option<GithubJit>,
}

/// A GitHub runner's just-in-time configuration, made by the pool that launched it.
#[derive(Debug, Clone)]
pub struct GithubJit {
    pub runner_id: String,
    pub config: Secret,
}

impl GithubJit {
    /// The registration it stands for: the pool registered the runner already.
    pub fn registration(&self) -> cml_forge::Registration {
        cml_forge::Registration::GithubJit {
            runner_id: self.runner_id.clone(),
            config: self.config.clone(),
        }
    }
}

impl RunnerSettings {
    /// A pool's GitHub runner whose JIT configuration came without a PAT or App key: the
    /// configuration is its only credential (on a cloud machine).
    pub fn holds_only_jit(&self) -> bool {
        self.github_jit.is_some()
            && matches!(&self.credential, Credential::Token { source, .. } if source == vars::GITHUB_JIT_CONFIG)
    }
}

/// A GitLab runner created by the launcher, as its machine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnRunner {
    pub id: String,
    /// The instance's web URL, with its sub-path if any.
    pub url: String,
}

/// Seconds, for the JSON summaries.
fn secs(d: Duration) -> serde_json::Value {
    serde_json::json!(d.as_secs_f64())
}

fn credential_json(c: &Credential) -> serde_json::Value {
    match c {
        Credential::Token { source, .. } => serde_json::json!({"token_from": source}),
        Credential::GithubApp { app_id, .. } => serde_json::json!({"github_app": app_id}),
    }
}

fn cloud_json(c: &CloudSpec) -> serde_json::Value {
    let pairs = |p: &[(String, String)]| {
        p.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    serde_json::json!({
        "cloud": c.cloud.to_string(),
        "region": c.region,
        "type": c.machine_type,
        "gpu": c.gpu,
        "hdd_size": c.hdd_size_gb,
        "spot": c.spot,
        "spot_price": c.spot_price,
        "spot_fallback": c.spot_fallback,
        "permission_set": c.permission_set,
        "metadata": pairs(&c.metadata),
        "startup_script": c.startup_script.is_some(),
        "image": c.image,
        "aws_security_group": c.aws_security_group,
        "aws_subnet": c.aws_subnet,
        "kubernetes_node_selector": pairs(&c.kubernetes_node_selector),
        "kubernetes_namespace": c.kubernetes_namespace,
    })
}

impl RunnerSettings {
    /// The settings as JSON, credentials left out (for `CML_PRINT_SETTINGS`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "repo": self.repo.to_string(),
            "driver": self.driver.to_string(),
            "credential": credential_json(&self.credential),
            "labels": self.labels.to_string(),
            "idle_timeout": match self.idle_timeout {
                IdleTimeout::Never => serde_json::json!("never"),
                IdleTimeout::After(d) => secs(d),
            },
            "name": self.name,
            "no_retry": self.no_retry,
            "single": self.single,
            "reuse": self.reuse,
            "reuse_idle": self.reuse_idle,
            "workdir": self.workdir.display().to_string(),
            "docker_volumes": self.docker_volumes,
            "cloud": self.cloud.as_ref().map(cloud_json),
            "destroy_delay": secs(self.destroy_delay),
            "github_runner_version": self.github_runner_version,
            "stop_grace": secs(self.stop_grace),
            "cloud_timeout": secs(self.cloud_timeout),
            "cloud_max_lifetime": self.cloud_max_lifetime.map(secs),
            "job_time_limit": self.job_time_limit.map(secs),
            "cloud_cml_url": self.cloud_cml_url,
            "cloud_cml_checksum": match &self.cloud_cml_checksum {
                None => serde_json::Value::Null,
                Some(cml_core::startup::CmlChecksum::Sha256(sha)) => serde_json::json!({ "sha256": sha }),
                Some(cml_core::startup::CmlChecksum::Published { sums_url_template }) => {
                    serde_json::json!({ "published": sums_url_template })
                }
            },
            "self_terminate": self.self_terminate,
            "cloud_ssh_private": self.cloud_ssh_private.is_some(),
            "job_user": self.job_user,
        })
    }
}

/// A cloud machine's default hard lifetime: GitHub stops a self-hosted job after 5 days, so no
/// job outlives this; the hour is for the last job's wind-down.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs((5 * 24 + 1) * 3600);

/// GitHub's job time limit for self-hosted runners: 5 days.
pub const DEFAULT_JOB_LIMIT: Duration = Duration::from_secs(5 * 24 * 3600);

/// Where cloud machines download `cml` from by default: this project's release of the
/// launcher's own version, the static binary for the machine's architecture (see
/// `cml_core::release`, which also says where its checksum is published). Forks that publish
/// elsewhere pass `--cloud-cml-url`.
pub const DEFAULT_CML_URL: &str = cml_core::release::DEFAULT_URL_TEMPLATE;

/// Looks up environment variables (a function, so tests can give their own).
pub trait Env {
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment, with the credentials `main` took out of it
/// ([`crate::environ::captured`]).
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        crate::environ::captured(key).or_else(|| std::env::var(key).ok())
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, key: &str) -> Option<String> {
        self(key)
    }
}

/// The value given, if any. An empty value given on the command line is a value like any
/// other, and validated as such (an empty variable never reaches here: it counts as unset).
fn given(value: &Option<String>) -> Option<String> {
    value.clone()
}

/// The log level (`--log`).
pub fn log_level(global: &GlobalArgs) -> Result<LogLevel, SettingsError> {
    let v = given(&global.log).unwrap_or_else(|| "info".into());
    match v.trim().to_ascii_lowercase().as_str() {
        "error" => Ok(LogLevel::Error),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" | "trace" => Ok(LogLevel::Debug),
        _ => Err(SettingsError::LogLevel(v)),
    }
}

/// Resolves and validates every runner setting. Touches no network; `git_origin` is asked
/// only when no repository was given.
pub fn resolve_runner(
    global: &GlobalArgs,
    args: &RunnerArgs,
    env: &dyn Env,
    git_origin: impl FnOnce() -> Option<String>,
) -> Result<RunnerSettings, SettingsError> {
    let single = args.single.unwrap_or(false);
    let reuse = args.reuse.unwrap_or(false);
    let reuse_idle = args.reuse_idle.unwrap_or(false);
    if single && (reuse || reuse_idle) {
        return Err(SettingsError::SingleWithReuse);
    }
    let idle_timeout = match given(&args.idle_timeout) {
        Some(v) => parse_idle_timeout_at_most(&v, limits::IDLE_TIMEOUT).map_err(|cause| {
            SettingsError::Duration {
                option: "--idle-timeout",
                cause,
            }
        })?,
        None => IdleTimeout::DEFAULT,
    };
    // `--labels a --labels b` is `--labels a,b`.
    let labels = Labels::parse(&if args.labels.is_empty() {
        Labels::DEFAULT.to_string()
    } else {
        args.labels.join(",")
    });
    if labels.is_empty() {
        return Err(SettingsError::Value {
            option: "labels",
            value: String::new(),
            reason: "at least one label is needed",
        });
    }
    let name = given(&args.name).unwrap_or_else(random_name);
    validate_name(&name)?;

    let repo_raw = given(&global.repo)
        .or_else(git_origin)
        .ok_or(SettingsError::NoRepo)?;
    let repo = RepoUrl::parse(&repo_raw)?;
    let explicit_driver = given(&global.driver)
        .map(|d| Driver::parse(&d))
        .transpose()?;
    let driver = infer_driver(explicit_driver, &repo, |k| env.get(k))?;

    let cloud = cloud::validate(&cloud_args(args))?;
    let file = match given(&args.credentials_file) {
        None => Vec::new(),
        Some(path) => read_credentials_file(&path)?,
    };
    let layered = |k: &str| {
        file.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
            .or_else(|| env.get(k))
    };
    let gitlab_own_runner = own_runner(&layered, driver)?;
    let github_jit = github_jit(&layered, driver)?;
    let credential = match &gitlab_own_runner {
        Some(_) => Credential::Token {
            token: Secret::new(
                layered(vars::GITLAB_RUNNER_TOKEN)
                    .filter(|t| !t.trim().is_empty())
                    .ok_or(SettingsError::OwnRunner {
                        missing: vars::GITLAB_RUNNER_TOKEN,
                    })?,
            ),
            source: vars::GITLAB_RUNNER_TOKEN.into(),
        },
        None => match (credential(global, &layered, driver), &github_jit) {
            (Ok(c), _) => c,
            (Err(SettingsError::NoToken { .. }), Some(jit)) => Credential::Token {
                token: jit.config.clone(),
                source: vars::GITHUB_JIT_CONFIG.into(),
            },
            (Err(e), _) => return Err(e),
        },
    };

    let workdir = match given(&args.workdir) {
        Some(w) => expand_home(&w, env)?,
        None => PathBuf::from(
            env.get("HOME")
                .filter(|h| !h.is_empty())
                .ok_or(SettingsError::NoHome)?,
        )
        .join(".cml")
        .join(&name),
    };
    let destroy_delay = seconds(
        args.destroy_delay.clone(),
        env,
        None,
        "--destroy-delay",
        10,
        limits::DESTROY_DELAY,
    )?;
    let stop_grace = seconds(
        args.stop_grace.clone(),
        env,
        None,
        "--stop-grace",
        30,
        limits::STOP_GRACE,
    )?;
    let cloud_timeout = seconds(
        args.cloud_timeout.clone(),
        env,
        None,
        "--cloud-timeout",
        1200,
        limits::CLOUD_TIMEOUT,
    )?;
    let cloud_max_lifetime = match given(&args.cloud_max_lifetime) {
        None => Some(DEFAULT_MAX_LIFETIME),
        Some(v) => match parse_idle_timeout_at_most(&v, limits::CLOUD_MAX_LIFETIME) {
            Ok(IdleTimeout::Never) => None,
            Ok(IdleTimeout::After(d)) => Some(d),
            Err(cause) => {
                return Err(SettingsError::Duration {
                    option: "--cloud-max-lifetime",
                    cause,
                })
            }
        },
    };
    let job_limit = seconds(
        None,
        env,
        Some(vars::JOB_TIME_LIMIT),
        vars::JOB_TIME_LIMIT,
        DEFAULT_JOB_LIMIT.as_secs(),
        limits::JOB_TIME_LIMIT,
    )?;
    let job_time_limit_margin = match given(&args.job_time_limit_margin) {
        None => Some(Duration::from_secs(600)),
        Some(v) => match parse_idle_timeout_at_most(&v, limits::JOB_TIME_LIMIT) {
            Ok(IdleTimeout::Never) => None,
            Ok(IdleTimeout::After(margin)) => Some(margin),
            Err(cause) => {
                return Err(SettingsError::Duration {
                    option: "--job-time-limit-margin",
                    cause,
                })
            }
        },
    };
    // A margin as long as the limit would stop every job the moment it starts.
    let job_time_limit = match job_time_limit_margin {
        None => None,
        Some(margin) if margin < job_limit => Some(job_limit - margin),
        Some(margin) if driver == Driver::Github => {
            return Err(SettingsError::MarginNotShorter {
                margin: margin.as_secs(),
                limit: job_limit.as_secs(),
            })
        }
        Some(_) => None,
    }
    .filter(|_| driver == Driver::Github);
    // Zero would poll the cloud and the forge in a tight loop; hours would miss the timeout.
    let poll_range = |value: String| SettingsError::Value {
        option: "CML_CLOUD_POLL_INTERVAL",
        value,
        reason: "expected 0.1 to 300 seconds",
    };
    let cloud_poll_interval = match seconds(
        None,
        env,
        Some(vars::CLOUD_POLL_INTERVAL),
        vars::CLOUD_POLL_INTERVAL,
        5,
        limits::CLOUD_POLL_INTERVAL,
    ) {
        Err(SettingsError::Duration { option, cause }) => {
            return Err(SettingsError::DurationRange {
                option,
                cause,
                range: "0.1 to 300 seconds",
            })
        }
        other => other?,
    };
    if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&cloud_poll_interval) {
        return Err(poll_range(format!("{}", cloud_poll_interval.as_secs_f64())));
    }
    let cloud_teardown_timeout = seconds(
        None,
        env,
        Some(vars::CLOUD_TEARDOWN_TIMEOUT),
        "CML_CLOUD_TEARDOWN_TIMEOUT",
        60,
        Duration::from_secs(3600),
    )?;
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&cloud_teardown_timeout) {
        return Err(SettingsError::Value {
            option: "CML_CLOUD_TEARDOWN_TIMEOUT",
            value: format!("{}", cloud_teardown_timeout.as_secs_f64()),
            reason: "expected 1 to 3600 seconds",
        });
    }
    let cloud_cml_sha256 = given(&args.cloud_cml_sha256);
    if let Some(sha) = &cloud_cml_sha256 {
        if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SettingsError::Value {
                option: "cloud-cml-sha256",
                value: sha.clone(),
                reason: "expected 64 hexadecimal digits",
            });
        }
    }
    let cloud_cml_url = given(&args.cloud_cml_url).unwrap_or_else(|| DEFAULT_CML_URL.to_string());
    let cloud_cml_checksum = match cloud_cml_sha256 {
        Some(sha) => Some(cml_core::startup::CmlChecksum::Sha256(
            sha.to_ascii_lowercase(),
        )),
        None => match cml_core::release::checksums_for(&cloud_cml_url) {
            Some(c) => Some(cml_core::startup::CmlChecksum::Published {
                sums_url_template: c.sums_url,
            }),
            None if cloud.is_some() => {
                return Err(SettingsError::Value {
                    option: "cloud-cml-url",
                    value: cloud_cml_url,
                    reason: "the machine cannot find a checksum for it (not an http(s) URL with a file name, or a signed URL with a query)\nhint: pass --cloud-cml-sha256 with the binary's SHA-256, or publish a SHA256SUMS file next to it",
                })
            }
            // No machine is made: nothing is downloaded.
            None => None,
        },
    };
    let mode_var = match driver {
        Driver::Gitlab => Some(vars::GITLAB_EXECUTOR),
        Driver::Bitbucket => Some(vars::BITBUCKET_RUNTIME),
        Driver::Github => None,
    };
    let forced_agent_mode = match mode_var.and_then(|v| env.get(v).map(|x| (v, x))) {
        None => None,
        Some((_, x)) if x.is_empty() => None,
        Some((_, x)) if x.eq_ignore_ascii_case("docker") => Some(AgentMode::Docker),
        Some((_, x)) if x.eq_ignore_ascii_case("shell") => Some(AgentMode::Shell),
        Some((var, x)) => {
            return Err(SettingsError::Variable {
                var,
                value: x,
                reason: "expected docker or shell",
            })
        }
    };
    let job_user = job_user(args, driver, forced_agent_mode)?;
    let azure_machine_credentials = match (args.cloud_azure_credentials_on_machine, &cloud) {
        (Some(true), Some(c)) if c.cloud == cloud::Cloud::Azure => {
            let mut found = Vec::new();
            for var in AZURE_MACHINE_VARIABLES {
                match env.get(var).filter(|v| !v.is_empty()) {
                    Some(v) => found.push((var.to_string(), Secret::new(v))),
                    None => return Err(SettingsError::AzureMachineCredentials { var }),
                }
            }
            // A sovereign cloud's authority goes with them.
            if let Some(v) = env.get(AZURE_AUTHORITY_HOST).filter(|v| !v.is_empty()) {
                found.push((AZURE_AUTHORITY_HOST.to_string(), Secret::new(v)));
            }
            Some(found)
        }
        (Some(true), _) => {
            tracing::warn!(
                "--cloud-azure-credentials-on-machine applies to --cloud=azure only; ignored"
            );
            None
        }
        // On the machine: what its launcher put in the credentials file.
        _ if file.iter().any(|(k, _)| k == "AZURE_CLIENT_SECRET") => Some(
            file.iter()
                .filter(|(k, _)| {
                    AZURE_MACHINE_VARIABLES.contains(&k.as_str()) || k == AZURE_AUTHORITY_HOST
                })
                .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
                .collect(),
        ),
        _ => None,
    };
    // The job user has no Docker access: its agent runs jobs in its own shell.
    let forced_agent_mode = match (&job_user, driver) {
        (Some(_), Driver::Gitlab | Driver::Bitbucket) => Some(AgentMode::Shell),
        _ => forced_agent_mode,
    };
    let docker_volumes: Vec<String> = args
        .docker_volumes
        .iter()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    Ok(RunnerSettings {
        repo,
        driver,
        credential,
        labels,
        idle_timeout,
        name,
        no_retry: args.no_retry.unwrap_or(false),
        single,
        reuse,
        reuse_idle,
        workdir,
        docker_volumes,
        cloud,
        destroy_delay,
        github_runner_version: given(&args.github_runner_version),
        github_runner_releases: env
            .get(vars::GITHUB_RUNNER_RELEASES_URL)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| cml_agent::install::DEFAULT_RELEASES_API.to_string()),
        gitlab_runner_download: env
            .get(vars::GITLAB_RUNNER_DOWNLOAD_URL)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| cml_agent::gitlab::DEFAULT_DOWNLOAD_URL.to_string()),
        gitlab_runner_version: env
            .get(vars::GITLAB_RUNNER_VERSION)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "latest".to_string()),
        bitbucket_api: env
            .get(vars::BITBUCKET_API_URL)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| cml_forge::bitbucket::DEFAULT_API_URL.to_string()),
        bitbucket_runner_url: env
            .get(vars::BITBUCKET_RUNNER_URL)
            .filter(|v| !v.is_empty()),
        bitbucket_runner_sha256: env
            .get(vars::BITBUCKET_RUNNER_SHA256)
            .filter(|v| !v.is_empty()),
        forced_agent_mode,
        stop_grace,
        cloud_timeout,
        cloud_max_lifetime,
        job_time_limit,
        job_limit,
        job_time_limit_margin,
        cloud_cml_url,
        cloud_cml_checksum,
        cloud_poll_interval,
        cloud_teardown_timeout,
        // CML's own machines pass --tf-resource so that their runner destroys the machine.
        self_terminate: args.self_terminate.unwrap_or(false) || given(&args.tf_resource).is_some(),
        cloud_ssh_private: given(&args.cloud_ssh_private).map(Secret::new),
        log_level: log_level(global)?,
        job_user,
        azure_machine_credentials,
        gitlab_own_runner,
        github_jit,
    })
}

/// Entra ID's authority for the service principal (sovereign clouds), handed to the machine
/// with it when set.
pub const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";

/// The launcher's service principal, as `--cloud-azure-credentials-on-machine` hands it to
/// the machine.
pub const AZURE_MACHINE_VARIABLES: [&str; 4] = [
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_SUBSCRIPTION_ID",
];

/// The GitLab runner the launcher created for this machine, when `CML_GITLAB_RUNNER_ID` says
/// there is one (GitLab only).
fn own_runner(env: &dyn Env, driver: Driver) -> Result<Option<OwnRunner>, SettingsError> {
    let Some(id) = env
        .get(vars::GITLAB_RUNNER_ID)
        .filter(|v| !v.trim().is_empty() && driver == Driver::Gitlab)
    else {
        return Ok(None);
    };
    let url = env
        .get(vars::GITLAB_URL)
        .filter(|v| !v.trim().is_empty())
        .ok_or(SettingsError::OwnRunner {
            missing: vars::GITLAB_URL,
        })?;
    Ok(Some(OwnRunner { id, url }))
}

/// The just-in-time configuration a pool made for this GitHub runner, when
/// `CML_GITHUB_JIT_CONFIG` is set (GitHub only; the runner's id must come with it).
fn github_jit(env: &dyn Env, driver: Driver) -> Result<Option<GithubJit>, SettingsError> {
    let config = env
        .get(vars::GITHUB_JIT_CONFIG)
        .filter(|v| !v.trim().is_empty());
    let id = env
        .get(vars::GITHUB_JIT_RUNNER_ID)
        .filter(|v| !v.trim().is_empty());
    let problem = match (config, id) {
        (None, None) => return Ok(None),
        (Some(_), _) if driver != Driver::Github => format!(
            "{} is set for a {driver} runner, but just-in-time configurations are GitHub's",
            vars::GITHUB_JIT_CONFIG
        ),
        (Some(config), Some(id)) if id.trim().parse::<u64>().is_ok() => {
            return Ok(Some(GithubJit {
                runner_id: id.trim().to_string(),
                config: Secret::new(config),
            }))
        }
        (Some(_), Some(id)) => format!(
            "{}={id:?} is not a runner id (a whole number)",
            vars::GITHUB_JIT_RUNNER_ID
        ),
        (Some(_), None) => format!(
            "{} is set but {} is not",
            vars::GITHUB_JIT_CONFIG,
            vars::GITHUB_JIT_RUNNER_ID
        ),
        (None, Some(_)) => format!(
            "{} is set but {} is not",
            vars::GITHUB_JIT_RUNNER_ID,
            vars::GITHUB_JIT_CONFIG
        ),
    };
    Err(SettingsError::Jit { problem })
}

/// `--cloud-job-user`, checked: a portable user name (`root` means the default, no switch),
/// and no Docker-based agent, which the job user could not run.
fn job_user(
    args: &RunnerArgs,
    driver: Driver,
    forced_agent_mode: Option<AgentMode>,
) -> Result<Option<String>, SettingsError> {
    let Some(user) = given(&args.cloud_job_user) else {
        return Ok(None);
    };
    let user = user.trim().to_string();
    if user == "root" {
        return Ok(None);
    }
    let valid = !user.is_empty()
        && user.len() <= 32
        && user
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if !valid {
        return Err(SettingsError::Value {
            option: "cloud-job-user",
            value: user,
            reason: "a user name is 1 to 32 lower-case letters, digits, '_' or '-', starting with a letter or '_'\nhint: pass an unprivileged user's name (a cloud machine creates it), or leave it unset to run jobs as root",
        });
    }
    if forced_agent_mode == Some(AgentMode::Docker) && driver != Driver::Github {
        return Err(SettingsError::Value {
            option: "cloud-job-user",
            value: user,
            reason: "the job user has no Docker access, so jobs cannot run in Docker\nhint: unset CML_GITLAB_EXECUTOR / CML_BITBUCKET_RUNTIME (jobs then run in the job user's shell), or leave --cloud-job-user unset",
        });
    }
    Ok(Some(user))
}

/// The `KEY="value"` lines of a root-only credentials file (see
/// [`cml_core::startup::parse_credentials`]). The file must not be readable by anyone but its
/// owner: a credential others can read is refused rather than used.
fn read_credentials_file(path: &str) -> Result<Vec<(String, String)>, SettingsError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |reason: String| SettingsError::CredentialsFile {
        path: path.to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "it is readable or writable by others (mode {mode:04o})"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    cml_core::startup::parse_credentials(&text).map_err(err)
}

/// What `cml runner cleanup` needs.
#[derive(Debug)]
pub struct CleanupSettings {
    pub cloud: CloudSpec,
    pub delete: bool,
    /// A running machine without an online runner is an orphan only when older than this.
    pub older_than: Duration,
    /// The forge to match machines with, when a repository and a token are known.
    pub forge: Option<RunnerSettings>,
    /// The repository or organization cleaned (`--repo`, else the git origin), if known:
    /// resources made for any other are not judged.
    pub repo: Option<RepoUrl>,
}

impl CleanupSettings {
    /// The settings as JSON, credentials left out (for `CML_PRINT_SETTINGS`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "cloud": cloud_json(&self.cloud),
            "delete": self.delete,
            "older_than": secs(self.older_than),
            "repo": self.repo.as_ref().map(|r| r.to_string()),
            "forge": self.forge.as_ref().map(|f| credential_json(&f.credential)),
        })
    }
}

/// Resolves `cml runner cleanup`'s settings. Without a repository or a token the forge is
/// simply not consulted; any other bad value is an error.
pub fn resolve_cleanup(
    global: &GlobalArgs,
    args: &CleanupArgs,
    env: &dyn Env,
    git_origin: impl FnOnce() -> Option<String>,
) -> Result<CleanupSettings, SettingsError> {
    let runner_args = RunnerArgs {
        cloud: args.cloud.clone(),
        cloud_region: args.cloud_region.clone(),
        cloud_kubernetes_namespace: args.cloud_kubernetes_namespace.clone(),
        ..RunnerArgs::default()
    };
    let cloud = cloud::validate(&cloud_args(&runner_args))?.ok_or(SettingsError::CleanupCloud)?;
    let older_than = seconds(
        args.older_than.clone(),
        env,
        None,
        "--older-than",
        1200,
        limits::CLEANUP_OLDER_THAN,
    )?;
    let origin = git_origin();
    let forge = match resolve_runner(global, &runner_args, env, || origin.clone()) {
        Ok(s) => Some(s),
        Err(SettingsError::NoRepo | SettingsError::NoToken { .. }) => None,
        Err(e) => return Err(e),
    };
    let repo = match &forge {
        Some(f) => Some(f.repo.clone()),
        None => given(&global.repo)
            .or(origin)
            .map(|r| RepoUrl::parse(&r))
            .transpose()?,
    };
    Ok(CleanupSettings {
        cloud,
        delete: args.delete.unwrap_or(false),
        older_than,
        forge,
        repo,
    })
}

/// What the report commands (`comment`, `check`, `asset`, `pr`, `ci`) need to reach the forge.
#[derive(Debug)]
pub struct ReportSettings {
    pub repo: RepoUrl,
    pub driver: Driver,
    pub credential: Credential,
    pub bitbucket_api: String,
    /// What the CI environment says about the change.
    pub ci: CiContext,
}

impl ReportSettings {
    /// The settings as JSON, credentials left out (for `CML_PRINT_SETTINGS`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "repo": self.repo.to_string(),
            "driver": self.driver.to_string(),
            "credential": credential_json(&self.credential),
        })
    }
}

/// Resolves the report commands' forge: `--repo` > `CML_REPO` > the CI's repository
/// (`GITHUB_SERVER_URL`/`GITHUB_REPOSITORY`, `CI_PROJECT_URL`, `BITBUCKET_GIT_HTTP_ORIGIN`) >
/// the `origin` remote; the driver and token as for `cml runner`. `github_event` is the
/// contents of `$GITHUB_EVENT_PATH`, when readable.
pub fn resolve_report(
    global: &GlobalArgs,
    env: &dyn Env,
    git_origin: impl FnOnce() -> Option<String>,
    github_event: Option<&str>,
) -> Result<ReportSettings, SettingsError> {
    let ci = ci_context(|k| env.get(k), github_event);
    let repo_raw = given(&global.repo)
        .or_else(|| ci.repo_url.clone())
        .or_else(git_origin)
        .ok_or(SettingsError::NoRepo)?;
    let repo = RepoUrl::parse(&repo_raw)?;
    let explicit_driver = given(&global.driver)
        .map(|d| Driver::parse(&d))
        .transpose()?;
    let driver = infer_driver(explicit_driver, &repo, |k| env.get(k))?;
    let credential = credential(global, env, driver)?;
    Ok(ReportSettings {
        repo,
        driver,
        credential,
        bitbucket_api: env
            .get(vars::BITBUCKET_API_URL)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| cml_forge::bitbucket::DEFAULT_API_URL.to_string()),
        ci,
    })
}

/// `key=value` pairs given in any number of values (each may hold several, comma-separated),
/// merged as CML merges them: a later value of a key replaces the earlier one, in the
/// earlier one's place. A value without `=` is kept as it is (and refused by validation).
pub fn merge_pairs(values: &[String]) -> Vec<String> {
    let mut merged: Vec<(String, String)> = Vec::new();
    for item in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let key = item.split_once('=').map_or(item, |(k, _)| k).to_string();
        match merged.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = item.to_string(),
            None => merged.push((key, item.to_string())),
        }
    }
    merged.into_iter().map(|(_, item)| item).collect()
}

fn cloud_args(args: &RunnerArgs) -> CloudArgs {
    let selectors = merge_pairs(&args.cloud_kubernetes_node_selector);
    CloudArgs {
        cloud: given(&args.cloud),
        region: given(&args.cloud_region).unwrap_or_else(|| "us-west".into()),
        machine_type: given(&args.cloud_type).unwrap_or_else(|| "m".into()),
        gpu: given(&args.cloud_gpu),
        hdd_size: given(&args.cloud_hdd_size).unwrap_or_else(|| "35".into()),
        spot: args.cloud_spot.unwrap_or(false),
        spot_fallback: args.cloud_spot_fallback.unwrap_or(false),
        spot_price: given(&args.cloud_spot_price).unwrap_or_else(|| "-1".into()),
        permission_set: given(&args.cloud_permission_set),
        metadata: merge_pairs(&args.cloud_metadata),
        startup_script: given(&args.cloud_startup_script),
        ssh_private_is_pem: given(&args.cloud_ssh_private)
            .map(|k| cloud::looks_like_pem_private_key(&k)),
        image: given(&args.cloud_image),
        aws_security_group: given(&args.cloud_aws_security_group),
        aws_subnet: given(&args.cloud_aws_subnet),
        kubernetes_namespace: given(&args.cloud_kubernetes_namespace),
        kubernetes_node_selector: if selectors.is_empty() {
            "accelerator=infer".into()
        } else {
            selectors.join(",")
        },
    }
}

/// CML's hidden options that mean nothing here, when given: one warning each (never with
/// its value, which may be a credential).
pub fn ignored_options(args: &RunnerArgs) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |value: &Option<String>, what: &str| {
        if given(value).is_some() {
            out.push(what.to_string());
        }
    };
    note(
        &args.tpi_version,
        "--tpi-version is ignored: cloud machines are made without Terraform here",
    );
    note(
        &args.cml_version,
        "--cml-version is ignored: cloud machines run this cml's version (see --cloud-cml-url)",
    );
    note(
        &args.gcp_access_token,
        "--gcp-access-token is ignored: there is no GCP support in this build",
    );
    note(
        &args.runner_path,
        "--runner-path is ignored (CML never used it either)",
    );
    out
}

/// The forge credential: `--token` (or its variables, `CML_TOKEN` among them), then a GitHub
/// App, then the generic token variables.
fn credential(
    global: &GlobalArgs,
    env: &dyn Env,
    driver: Driver,
) -> Result<Credential, SettingsError> {
    if let Some(t) = global.driver_token.clone().filter(|t| !t.trim().is_empty()) {
        return Ok(Credential::Token {
            token: Secret::new(t),
            source: global.sources.name("driver_token", "--token"),
        });
    }
    let from = |names: &[&str]| {
        names.iter().find_map(|n| {
            env.get(n)
                .filter(|v| !v.trim().is_empty())
                .map(|v| Credential::Token {
                    token: Secret::new(v),
                    source: n.to_string(),
                })
        })
    };
    // A GitHub App only authenticates to GitHub.
    let github = driver == Driver::Github;
    let app_id = env
        .get(vars::GITHUB_APP_ID)
        .filter(|v| github && !v.trim().is_empty());
    let pem = env
        .get(vars::GITHUB_APP_PEM)
        .filter(|v| github && !v.trim().is_empty());
    match (app_id, pem) {
        (Some(app_id), Some(pem)) => {
            return Ok(Credential::GithubApp {
                app_id,
                pem: Secret::new(pem),
            })
        }
        (None, None) => {}
        _ => return Err(SettingsError::HalfApp),
    }
    from(vars::TOKEN_CHAIN).ok_or_else(|| SettingsError::NoToken {
        tried: vars::TOKEN_CHAIN.join(", "),
        forge_hint: match driver {
            Driver::Github => ", or CML_GITHUB_APP_ID and CML_GITHUB_APP_PEM for a GitHub App",
            Driver::Gitlab => {
                " (a GitLab personal, group or project access token with the api scope)"
            }
            Driver::Bitbucket => " (Bitbucket: base64 of `user:app_password`)",
        },
    })
}

/// A duration option (seconds, or a duration string), or the variable `var` for settings that
/// are no option, at most `max`; `option` names it in errors as the user knows it
/// (`--stop-grace`, or the variable's name for variable-only settings).
fn seconds(
    cli: Option<String>,
    env: &dyn Env,
    var: Option<&str>,
    option: &'static str,
    default: u64,
    max: Duration,
) -> Result<Duration, SettingsError> {
    let value = given(&cli).or_else(|| var.and_then(|v| env.get(v)).filter(|v| !v.is_empty()));
    match value {
        None => Ok(Duration::from_secs(default)),
        Some(v) => parse_duration_at_most(&v, max)
            .map_err(|cause| SettingsError::Duration { option, cause }),
    }
}

fn validate_name(name: &str) -> Result<(), SettingsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SettingsError::Value {
            option: "name",
            value: name.to_string(),
            reason: "use 1 to 64 letters, digits, '-', '_' or '.'",
        })
    }
}

fn expand_home(path: &str, env: &dyn Env) -> Result<PathBuf, SettingsError> {
    match path.strip_prefix("~/") {
        Some(rest) => Ok(PathBuf::from(env.get("HOME").ok_or(SettingsError::NoHome)?).join(rest)),
        None => Ok(PathBuf::from(path)),
    }
}

/// `cml-` and 10 random base36 characters, like CML's default names.
pub fn random_name() -> String {
    let mut bytes = [0u8; 10];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !filled {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ (std::process::id() as u128) << 64;
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(97);
        }
    }
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let id: String = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % 36] as char)
        .collect();
    format!("cml-{id}")
}

/// `git config --get remote.origin.url` in the current directory, if any.
pub fn git_origin() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["config", "--get", "remote.origin.url"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let url = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !url.is_empty()).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    /// `cml runner ARGS` as the binary resolves it: parsed with `vars` as the environment
    /// (the options' variables), then resolved with the same environment.
    fn runner_from(args: &[&str], vars: &[(&str, &str)]) -> Result<RunnerSettings, SettingsError> {
        let e = env(vars);
        let argv = ["cml", "runner"]
            .iter()
            .chain(args)
            .map(Into::into)
            .collect();
        let cli = crate::options::parse(argv, &e).unwrap().cli;
        let crate::cli::Command::Runner { args, .. } = cli.command else {
            panic!("not a runner command line")
        };
        resolve_runner(&cli.global, &args, &e, || None)
    }

    fn global(repo: &str, token: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            repo: Some(repo.into()),
            driver_token: token.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn report_repository_comes_from_the_option_the_ci_then_origin() {
        let none = GlobalArgs::default();
        let origin = || Some("https://gitlab.com/group/origin.git".to_string());
        // In GitHub Actions: the CI's repository and its pull request, not `origin`.
        let gh = env(&[
            ("GITHUB_REPOSITORY", "o/r"),
            ("GITHUB_SERVER_URL", "https://ghe.example.com"),
            ("GITHUB_REF", "refs/pull/7/merge"),
            ("GITHUB_SHA", "abc"),
            ("REPO_TOKEN", "t"),
        ]);
        let s = resolve_report(&none, &gh, origin, None).unwrap();
        assert_eq!(s.repo.to_string(), "https://ghe.example.com/o/r");
        assert_eq!((s.driver, s.ci.pr), (Driver::Github, Some(7)));
        // --repo (or its variables: CML_REPO) wins.
        let s = resolve_report(&global("https://github.com/a/b", None), &gh, origin, None).unwrap();
        assert_eq!(s.repo.to_string(), "https://github.com/a/b");
        // Outside CI: the `origin` remote.
        let s = resolve_report(&none, &env(&[("REPO_TOKEN", "t")]), origin, None).unwrap();
        assert_eq!(
            (s.repo.to_string().as_str(), s.driver),
            ("https://gitlab.com/group/origin", Driver::Gitlab)
        );
        // Nothing at all: a clear error, and a missing token names the variables.
        let e = resolve_report(&none, &env(&[]), || None, None).unwrap_err();
        assert!(e.to_string().contains("hint: pass --repo"), "{e}");
        let e = resolve_report(&none, &env(&[]), origin, None).unwrap_err();
        assert!(e.to_string().contains("REPO_TOKEN"), "{e}");
    }

    #[test]
    fn seed_on_premise_example() {
        let args = RunnerArgs {
            labels: vec!["local,runner".into()],
            idle_timeout: Some("180".into()),
            ..Default::default()
        };
        let s = resolve_runner(
            &global("https://github.com/o/r", Some("ghp_x")),
            &args,
            &env(&[("HOME", "/home/u")]),
            || None,
        )
        .unwrap();
        assert_eq!(s.labels.to_string(), "local,runner");
        assert_eq!(s.idle_timeout, IdleTimeout::After(Duration::from_secs(180)));
        assert_eq!(s.driver, Driver::Github);
        assert!(
            s.name.starts_with("cml-") && s.name.len() == 14,
            "{}",
            s.name
        );
        assert_eq!(s.workdir, PathBuf::from("/home/u/.cml").join(&s.name));
        assert!(matches!(&s.credential, Credential::Token { source, .. } if source == "--token"));
        assert!(s.cloud.is_none());
    }

    #[test]
    fn max_lifetime_default_never_and_bad_values() {
        let g = global("https://github.com/o/r", Some("t"));
        let e = env(&[("HOME", "/h")]);
        let with = |v: Option<&str>| {
            let args = RunnerArgs {
                cloud_max_lifetime: v.map(String::from),
                ..Default::default()
            };
            resolve_runner(&g, &args, &e, || None)
        };
        assert_eq!(
            with(None).unwrap().cloud_max_lifetime,
            Some(DEFAULT_MAX_LIFETIME)
        );
        assert_eq!(with(Some("never")).unwrap().cloud_max_lifetime, None);
        assert_eq!(
            with(Some("2h")).unwrap().cloud_max_lifetime,
            Some(Duration::from_secs(7200))
        );
        let err = with(Some("soon")).unwrap_err().to_string();
        assert!(err.contains("--cloud-max-lifetime"), "{err}");
    }

    #[test]
    fn the_job_time_limit_is_github_s_less_the_margin() {
        let e = env(&[("HOME", "/h")]);
        let with = |repo: &str, margin: Option<&str>| {
            let args = RunnerArgs {
                job_time_limit_margin: margin.map(String::from),
                ..Default::default()
            };
            resolve_runner(&global(repo, Some("t")), &args, &e, || None)
        };
        let five_days = Duration::from_secs(5 * 24 * 3600);
        assert_eq!(
            with("https://github.com/o/r", None).unwrap().job_time_limit,
            Some(five_days - Duration::from_secs(600))
        );
        assert_eq!(
            with("https://github.com/o/r", Some("1h"))
                .unwrap()
                .job_time_limit,
            Some(five_days - Duration::from_secs(3600))
        );
        assert_eq!(
            with("https://github.com/o/r", Some("never"))
                .unwrap()
                .job_time_limit,
            None
        );
        assert_eq!(
            with("https://gitlab.com/g/p", None).unwrap().job_time_limit,
            None
        );
        assert!(with("https://github.com/o/r", Some("soon"))
            .unwrap_err()
            .to_string()
            .contains("--job-time-limit-margin"));
    }

    #[test]
    fn every_duration_setting_has_a_maximum_named_in_its_error() {
        let g = global("https://github.com/o/r", Some("t"));
        let huge = "9223372036854775807";
        let refused = |args: RunnerArgs, vars: &[(&str, &str)]| {
            let mut pairs = vec![("HOME", "/h")];
            pairs.extend_from_slice(vars);
            resolve_runner(&g, &args, &env(&pairs), || None)
                .unwrap_err()
                .to_string()
        };
        // Arguments, variables, the option named in the error, its maximum.
        type Case = (
            RunnerArgs,
            Vec<(&'static str, &'static str)>,
            &'static str,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                RunnerArgs {
                    idle_timeout: Some(huge.into()),
                    ..Default::default()
                },
                vec![],
                "--idle-timeout",
                "365 days",
            ),
            (
                RunnerArgs {
                    destroy_delay: Some(huge.into()),
                    ..Default::default()
                },
                vec![],
                "--destroy-delay",
                "1 day",
            ),
            (
                RunnerArgs {
                    stop_grace: Some("1e30".into()),
                    ..Default::default()
                },
                vec![],
                "--stop-grace",
                "1 hour",
            ),
            (
                RunnerArgs {
                    cloud_timeout: Some("2 days".into()),
                    ..Default::default()
                },
                vec![],
                "--cloud-timeout",
                "1 day",
            ),
            (
                RunnerArgs {
                    cloud_max_lifetime: Some("53w".into()),
                    ..Default::default()
                },
                vec![],
                "--cloud-max-lifetime",
                "365 days",
            ),
            (
                RunnerArgs {
                    job_time_limit_margin: Some(huge.into()),
                    ..Default::default()
                },
                vec![],
                "--job-time-limit-margin",
                "30 days",
            ),
            (
                RunnerArgs::default(),
                vec![("CML_JOB_TIME_LIMIT", huge)],
                "CML_JOB_TIME_LIMIT",
                "30 days",
            ),
        ];
        for (args, vars, option, max) in cases {
            let e = refused(args, &vars);
            assert!(
                e.starts_with(&format!("{option}: ")) && e.contains(&format!("maximum of {max}")),
                "{option}: {e}"
            );
            assert!(e.contains("hint: give at most"), "{e}");
        }
        // The poll interval also says its range.
        let e = refused(
            RunnerArgs::default(),
            &[("CML_CLOUD_POLL_INTERVAL", "1e30")],
        );
        assert!(
            e.starts_with("CML_CLOUD_POLL_INTERVAL: ")
                && e.contains("maximum of 5 minutes")
                && e.contains("hint: give at most")
                && e.contains("0.1 to 300 seconds"),
            "{e}"
        );
        // The maxima themselves are accepted.
        let s = resolve_runner(
            &g,
            &RunnerArgs {
                idle_timeout: Some("365d".into()),
                stop_grace: Some("3600".into()),
                ..Default::default()
            },
            &env(&[("HOME", "/h"), ("CML_JOB_TIME_LIMIT", "30d")]),
            || None,
        )
        .unwrap();
        assert_eq!(s.idle_timeout, IdleTimeout::After(limits::IDLE_TIMEOUT));
        assert_eq!(s.stop_grace, limits::STOP_GRACE);
        assert_eq!(
            s.job_time_limit,
            Some(limits::JOB_TIME_LIMIT - Duration::from_secs(600))
        );
    }

    #[test]
    fn a_margin_not_shorter_than_the_job_time_limit_is_refused() {
        let g = global("https://github.com/o/r", Some("t"));
        let with = |margin: Option<&str>, limit: &str| {
            let args = RunnerArgs {
                job_time_limit_margin: margin.map(String::from),
                ..Default::default()
            };
            resolve_runner(
                &g,
                &args,
                &env(&[("HOME", "/h"), ("CML_JOB_TIME_LIMIT", limit)]),
                || None,
            )
        };
        // Before, these stopped every job the moment it started (a zero job deadline).
        for (margin, limit) in [(None, "600"), (None, "0"), (Some("2h"), "3600")] {
            let e = with(margin, limit).unwrap_err().to_string();
            assert!(
                e.contains("--job-time-limit-margin") && e.contains("hint:"),
                "{e}"
            );
        }
        assert_eq!(
            with(Some("59m"), "3600").unwrap().job_time_limit,
            Some(Duration::from_secs(60))
        );
        assert_eq!(with(Some("never"), "0").unwrap().job_time_limit, None);
    }

    #[test]
    fn a_cloud_machine_always_checks_the_cml_it_downloads() {
        use cml_core::startup::CmlChecksum;
        let g = global("https://github.com/o/r", Some("t"));
        let with = |url: Option<&str>, sha: Option<&str>| {
            let args = RunnerArgs {
                cloud: Some("aws".into()),
                cloud_cml_url: url.map(String::from),
                cloud_cml_sha256: sha.map(String::from),
                ..Default::default()
            };
            resolve_runner(&g, &args, &env(&[("HOME", "/h")]), || None)
        };
        // By default: the SHA256SUMS of the launcher's own release.
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            with(None, None).unwrap().cloud_cml_checksum,
            Some(CmlChecksum::Published {
                sums_url_template: format!(
                    "{}/releases/download/v{{version}}/SHA256SUMS",
                    cml_core::release::REPOSITORY
                )
            }),
            "{version}"
        );
        let sha = "AB".repeat(32);
        assert_eq!(
            with(Some("file:///opt/cml"), Some(&sha))
                .unwrap()
                .cloud_cml_checksum,
            Some(CmlChecksum::Sha256("ab".repeat(32)))
        );
        // A URL next to which no checksum list can be found, and no SHA-256: refused.
        for url in [
            "file:///opt/cml",
            "https://bucket.example.com/cml?X-Amz-Signature=1",
        ] {
            let e = with(Some(url), None).unwrap_err().to_string();
            assert!(
                e.contains("--cloud-cml-url") && e.contains("hint: pass --cloud-cml-sha256"),
                "{e}"
            );
        }
    }

    #[test]
    fn gitlab_and_bitbucket_agent_modes_are_checked() {
        let e = env(&[("HOME", "/h"), ("CML_GITLAB_EXECUTOR", "Shell")]);
        let s = resolve_runner(
            &global("https://gitlab.com/g/p", Some("t")),
            &RunnerArgs::default(),
            &e,
            || None,
        )
        .unwrap();
        assert_eq!(s.forced_agent_mode, Some(AgentMode::Shell));
        // Each forge reads its own variable only.
        let s = resolve_runner(
            &global("https://github.com/o/r", Some("t")),
            &RunnerArgs::default(),
            &e,
            || None,
        )
        .unwrap();
        assert_eq!(s.forced_agent_mode, None);
        let e = env(&[("HOME", "/h"), ("CML_BITBUCKET_RUNTIME", "podman")]);
        let err = resolve_runner(
            &global("https://bitbucket.org/w/r", Some("t")),
            &RunnerArgs::default(),
            &e,
            || None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("CML_BITBUCKET_RUNTIME") && err.contains("hint:"),
            "{err}"
        );
    }

    #[test]
    fn a_pools_jit_configuration_is_checked_and_alone_is_the_credential() {
        let repo = "--repo=https://github.com/o/r";
        let config = ("CML_GITHUB_JIT_CONFIG", "eyJqaXRjb25maWciOjF9");
        let id = ("CML_GITHUB_JIT_RUNNER_ID", "17");
        let home = ("HOME", "/h");
        // Launched by a pool on its own host: the pool's token comes along.
        let s = runner_from(&[repo, "--token=ghp_pooltoken1"], &[home, config, id]).unwrap();
        let jit = s.github_jit.as_ref().unwrap();
        assert_eq!(jit.runner_id, "17");
        assert!(!s.holds_only_jit());
        assert!(!format!("{s:?}").contains(config.1));
        // On a machine: the configuration is the only credential.
        let s = runner_from(&[repo], &[home, config, id]).unwrap();
        assert!(s.holds_only_jit());
        assert!(
            matches!(&s.credential, Credential::Token { source, .. } if source == vars::GITHUB_JIT_CONFIG)
        );
        for (args, vars, needle) in [
            (
                vec![repo],
                vec![home, config],
                "CML_GITHUB_JIT_RUNNER_ID is not",
            ),
            (vec![repo], vec![home, id], "CML_GITHUB_JIT_CONFIG is not"),
            (
                vec![repo],
                vec![home, config, ("CML_GITHUB_JIT_RUNNER_ID", "x1")],
                "is not a runner id",
            ),
            (
                vec!["--repo=https://gitlab.com/o/r", "--token=glpat-x1234"],
                vec![home, config, id],
                "just-in-time configurations are GitHub's",
            ),
        ] {
            let e = runner_from(&args, &vars).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("hint:"), "{e}");
            assert!(!e.contains(config.1), "{e}");
        }
    }

    #[test]
    fn debug_output_of_settings_shows_no_secret() {
        let g = global("https://github.com/o/r", Some("ghp_debugtoken123"));
        let s =
            resolve_runner(&g, &RunnerArgs::default(), &env(&[("HOME", "/h")]), || None).unwrap();
        let shown = format!("{s:?}");
        assert!(shown.contains("Token(from --token)"), "{shown}");
        assert!(!shown.contains("ghp_debugtoken123"), "{shown}");
        let e = env(&[
            ("HOME", "/h"),
            ("CML_GITHUB_APP_ID", "1"),
            ("CML_GITHUB_APP_PEM", "-----BEGIN RSA PRIVATE KEY-----abc"),
        ]);
        let s = resolve_runner(
            &global("https://github.com/o/r", None),
            &RunnerArgs::default(),
            &e,
            || None,
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("BEGIN RSA"));
    }

    #[test]
    fn cli_beats_legacy_beats_global_beats_cml_runner_variables() {
        let vars = [
            ("HOME", "/h"),
            ("CML_REPO", "https://github.com/o/r"),
            ("CML_RUNNER_LABELS", "a"),
            ("RUNNER_LABELS", "b"),
            ("RUNNER_IDLE_TIMEOUT", "never"),
            ("CML_RUNNER_IDLE_TIMEOUT", "60"),
            ("RUNNER_SINGLE", "true"),
            ("CML_RUNNER_SINGLE", "false"),
            ("RUNNER_PATH", "~/w"),
            ("CML_RUNNER_WORKDIR", "/elsewhere"),
            ("REPO_TOKEN", "t1"),
        ];
        let s = runner_from(&[], &vars).unwrap();
        // CML copies the legacy RUNNER_* onto CML_RUNNER_*: they win.
        assert_eq!(s.labels.to_string(), "b");
        assert_eq!(s.idle_timeout, IdleTimeout::Never);
        assert!(s.single);
        assert_eq!(s.workdir, PathBuf::from("/h/w"));
        assert!(
            matches!(&s.credential, Credential::Token { source, .. } if source == "REPO_TOKEN")
        );
        // The command line wins over every variable, a boolean's false included.
        let s = runner_from(&["--labels=c", "--no-single", "--path", "/p"], &vars).unwrap();
        assert_eq!(s.labels.to_string(), "c");
        assert!(!s.single);
        assert_eq!(s.workdir, PathBuf::from("/p"));
        // CML_<OPTION> (the global options) beats CML_RUNNER_<OPTION>.
        let s = runner_from(
            &[],
            &[
                ("HOME", "/h"),
                ("CML_REPO", "https://gitlab.com/g/p"),
                ("CML_RUNNER_REPO", "https://github.com/o/r"),
                ("CML_RUNNER_TOKEN", "runner-token"),
                ("CML_TOKEN", "global-token"),
            ],
        )
        .unwrap();
        assert_eq!(s.repo.to_string(), "https://gitlab.com/g/p");
        match &s.credential {
            Credential::Token { token, source } => {
                assert_eq!(
                    (token.expose(), source.as_str()),
                    ("global-token", "CML_TOKEN")
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn token_chain_and_app() {
        let app = [
            ("HOME", "/h"),
            ("CML_REPO", "https://github.com/o/r"),
            ("CML_GITHUB_APP_ID", "1"),
            ("CML_GITHUB_APP_PEM", "pem"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut vars = app.to_vec();
            vars.extend_from_slice(extra);
            runner_from(&[], &vars)
        };
        // A GitHub App outranks the generic token variables...
        let s = with(&[("GITHUB_TOKEN", "g")]).unwrap();
        assert!(matches!(s.credential, Credential::GithubApp { .. }));
        // ...but not --token's own variables.
        for var in [
            "CML_TOKEN",
            "CML_DRIVER_TOKEN",
            "CML_RUNNER_TOKEN",
            "CML_RUNNER_DRIVER_TOKEN",
        ] {
            let s = with(&[(var, "c")]).unwrap();
            assert!(
                matches!(&s.credential, Credential::Token { source, .. } if source == var),
                "{var}: {:?}",
                s.credential
            );
        }
        let g = global("https://github.com/o/r", None);
        let a = RunnerArgs::default();
        let err = resolve_runner(&g, &a, &env(&[("HOME", "/h")]), || None).unwrap_err();
        assert!(err.to_string().contains("REPO_TOKEN"), "{err}");
        let err = resolve_runner(
            &g,
            &a,
            &env(&[("HOME", "/h"), ("CML_GITHUB_APP_ID", "1")]),
            || None,
        )
        .unwrap_err();
        assert!(matches!(err, SettingsError::HalfApp));
    }

    #[test]
    fn repo_defaults_to_origin_without_credentials() {
        let g = GlobalArgs {
            driver_token: Some("t".into()),
            ..Default::default()
        };
        let s = resolve_runner(&g, &RunnerArgs::default(), &env(&[("HOME", "/h")]), || {
            Some("https://x:ghp_secret@github.com/o/r.git".into())
        })
        .unwrap();
        assert_eq!(s.repo.to_string(), "https://github.com/o/r");
        let err = resolve_runner(&g, &RunnerArgs::default(), &env(&[("HOME", "/h")]), || None)
            .unwrap_err();
        assert!(matches!(err, SettingsError::NoRepo));
    }

    #[test]
    fn the_job_user_is_checked_and_keeps_jobs_out_of_docker() {
        let e = env(&[("HOME", "/h")]);
        let with = |repo: &str, user: &str, e: &dyn Env| {
            let args = RunnerArgs {
                cloud_job_user: Some(user.into()),
                ..Default::default()
            };
            resolve_runner(&global(repo, Some("t")), &args, e, || None)
        };
        let s = with("https://github.com/o/r", "runner", &e).unwrap();
        assert_eq!(s.job_user.as_deref(), Some("runner"));
        assert_eq!(
            with("https://github.com/o/r", "root", &e).unwrap().job_user,
            None,
            "root is the default, no switch"
        );
        for bad in ["Runner", "1abc", "a b", "x;rm", &"a".repeat(33)] {
            let err = with("https://github.com/o/r", bad, &e)
                .unwrap_err()
                .to_string();
            assert!(err.contains("--cloud-job-user"), "{bad}: {err}");
        }
        // The job user has no Docker: GitLab and Bitbucket run jobs in its shell.
        let s = with("https://gitlab.com/g/p", "runner", &e).unwrap();
        assert_eq!(s.forced_agent_mode, Some(AgentMode::Shell));
        let docker = env(&[("HOME", "/h"), ("CML_GITLAB_EXECUTOR", "docker")]);
        let err = with("https://gitlab.com/g/p", "runner", &docker)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no Docker access"), "{err}");
        let s = runner_from(
            &["--repo=https://github.com/o/r", "--token=t"],
            &[("HOME", "/h"), ("CML_RUNNER_CLOUD_JOB_USER", "ci")],
        )
        .unwrap();
        assert_eq!(s.job_user.as_deref(), Some("ci"));
    }

    #[test]
    fn azure_credentials_go_to_the_machine_only_when_asked_and_complete() {
        let base = [
            "--repo=https://github.com/o/r",
            "--token=t",
            "--cloud=azure",
            "--cloud-cml-sha256=0000000000000000000000000000000000000000000000000000000000000000",
        ];
        let all = [
            ("HOME", "/h"),
            ("AZURE_CLIENT_ID", "id"),
            ("AZURE_CLIENT_SECRET", "s3cret"),
            ("AZURE_TENANT_ID", "tenant"),
            ("AZURE_SUBSCRIPTION_ID", "sub"),
        ];
        let s = runner_from(&base, &all).unwrap();
        assert!(s.azure_machine_credentials.is_none(), "off by default");
        let with_flag: Vec<&str> = base
            .iter()
            .copied()
            .chain(["--cloud-azure-credentials-on-machine"])
            .collect();
        let s = runner_from(&with_flag, &all).unwrap();
        let names: Vec<&str> = s
            .azure_machine_credentials
            .as_ref()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(names, AZURE_MACHINE_VARIABLES);
        let secrets = crate::runner::machine::machine_secrets(&s, None);
        assert!(secrets
            .iter()
            .any(|(k, v)| k == "AZURE_CLIENT_SECRET" && v.expose() == "s3cret"));
        assert!(
            !format!("{s:?}").contains("s3cret"),
            "Debug shows no secret"
        );
        let err = runner_from(&with_flag, &all[..2]).unwrap_err().to_string();
        assert!(
            err.contains("AZURE_CLIENT_SECRET") && err.contains("hint:"),
            "{err}"
        );
        // Another cloud: ignored.
        let aws: Vec<&str> = with_flag
            .iter()
            .map(|a| {
                if *a == "--cloud=azure" {
                    "--cloud=aws"
                } else {
                    a
                }
            })
            .collect();
        assert!(runner_from(&aws, &all)
            .unwrap()
            .azure_machine_credentials
            .is_none());
    }

    #[test]
    fn a_credentials_file_is_read_only_when_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, "REPO_TOKEN=\"ghp_fromthefile\"\n").unwrap();
        let args = RunnerArgs {
            credentials_file: Some(path.to_string_lossy().into_owned()),
            ..Default::default()
        };
        let e = env(&[("HOME", "/h"), ("REPO_TOKEN", "ghp_fromtheenv")]);
        let g = global("https://github.com/o/r", None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = resolve_runner(&g, &args, &e, || None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("readable or writable by others (mode 0644)") && err.contains("hint:"),
            "{err}"
        );
        assert!(!err.contains("ghp_"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = resolve_runner(&g, &args, &e, || None).unwrap();
        assert!(
            matches!(&s.credential, Credential::Token { token, source } if token.expose() == "ghp_fromthefile" && source == "REPO_TOKEN"),
            "{:?}",
            s.credential
        );
        std::fs::write(&path, "REPO_TOKEN=ghp_unquoted\n").unwrap();
        let err = resolve_runner(&g, &args, &e, || None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && !err.contains("ghp_"), "{err}");
        let missing = RunnerArgs {
            credentials_file: Some("/nonexistent/credentials".into()),
            ..Default::default()
        };
        let err = resolve_runner(&g, &missing, &e, || None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/credentials"), "{err}");
    }

    #[test]
    fn bad_values_fail_with_the_option_named() {
        let g = global("https://github.com/o/r", Some("t"));
        let e = env(&[("HOME", "/h")]);
        let bad = |a: RunnerArgs| resolve_runner(&g, &a, &e, || None).unwrap_err().to_string();
        assert!(bad(RunnerArgs {
            idle_timeout: Some("soon".into()),
            ..Default::default()
        })
        .contains("--idle-timeout"));
        assert!(bad(RunnerArgs {
            name: Some("bad name".into()),
            ..Default::default()
        })
        .contains("--name"));
        assert!(bad(RunnerArgs {
            labels: vec![",".into()],
            ..Default::default()
        })
        .contains("--labels"));
        assert!(bad(RunnerArgs {
            single: Some(true),
            reuse: Some(true),
            ..Default::default()
        })
        .contains("--single"));
        assert!(bad(RunnerArgs {
            cloud: Some("aws".into()),
            cloud_hdd_size: Some("-1".into()),
            ..Default::default()
        })
        .contains("--cloud-hdd-size"));
        assert!(bad(RunnerArgs {
            stop_grace: Some("x".into()),
            ..Default::default()
        })
        .contains("--stop-grace"));
    }
}
