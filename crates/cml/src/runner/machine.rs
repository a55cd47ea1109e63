//! What a cloud machine is given: its startup script, and in it the `cml runner` command line,
//! environment and credential the machine's runner starts with.
//!
//! Contract: everything the launcher resolved that matters on the machine reaches it, built
//! here and only here from [`RunnerSettings`]: resolving the machine's own command line
//! ([`machine_args`]), environment ([`machine_env`]) and credential ([`machine_secrets`]) gives
//! back the same machine-relevant settings (the round trip is tested below). Launcher-only
//! settings (the `--cloud-*` options, `--reuse`, the launcher's work directory) do not go.
//! No secret is among the arguments or the environment.
//!
//! The credential: the launcher's (token or GitHub App), except for a GitLab runner without
//! re-runs (`--no-retry`): the launcher then creates the runner itself and the machine gets
//! only that runner's own token ([`GitlabRunner`]), which lets it run jobs and delete the
//! runner, nothing else. Re-running interrupted jobs needs the access token, so with re-runs
//! on it goes to the machine as before.

use crate::settings::{vars, AgentMode, Credential, LogLevel, RunnerSettings, DEFAULT_JOB_LIMIT};
use cml_core::startup::{StartupScript, MACHINE_WORKDIR};
use cml_core::{Driver, IdleTimeout, Secret};
use std::time::Duration;

/// A GitLab runner the launcher created, handed to the machine instead of the access token.
pub struct GitlabRunner {
    /// The instance's web URL, with its sub-path.
    pub url: String,
    pub id: String,
    /// The runner's own authentication token.
    pub token: Secret,
}

impl GitlabRunner {
    /// A runner as long as a real one, to size the machine's startup script before the real
    /// one is created.
    pub fn stand_in() -> GitlabRunner {
        GitlabRunner {
            url: "https://gitlab.example.com/a/sub/path/of/some/length".into(),
            id: u64::MAX.to_string(),
            token: Secret::new(format!("glrt-{}", "x".repeat(120))),
        }
    }
}

/// Whether the launcher creates the runner and hands the machine only the runner's own
/// token: GitLab, whose runners can delete themselves with it, when interrupted jobs are not
/// re-run (that needs the access token).
pub fn hands_over_runner_token(s: &RunnerSettings) -> bool {
    s.driver == Driver::Gitlab && s.no_retry && s.cloud.is_some()
}

/// The machine's startup script: the runner's settings, run by `cml` under systemd; `own` is
/// the runner the launcher created, when it did.
pub fn startup_script(s: &RunnerSettings, own: Option<&GitlabRunner>) -> StartupScript {
    StartupScript {
        cml_url_template: s.cloud_cml_url.clone(),
        cml_version: env!("CARGO_PKG_VERSION").into(),
        cml_checksum: s
            .cloud_cml_checksum
            .clone()
            .expect("settings resolve the download's checksum for every cloud runner"),
        user_script: s.cloud.as_ref().and_then(|c| c.startup_script.clone()),
        runner_args: machine_args(s),
        env: machine_env(s, own),
        secrets: machine_secrets(s, own),
        max_lifetime: s.cloud_max_lifetime,
        job_user: s.job_user.clone(),
    }
}

/// The arguments after `cml` of the machine's runner (no secret among them).
pub fn machine_args(s: &RunnerSettings) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "runner".into(),
        "--log".into(),
        log_level(s.log_level).into(),
        "--driver".into(),
        s.driver.to_string(),
        "--repo".into(),
        s.repo.to_string(),
        "--name".into(),
        s.name.clone(),
        "--labels".into(),
        s.labels.to_string(),
        "--idle-timeout".into(),
        match s.idle_timeout {
            IdleTimeout::Never => "never".into(),
            IdleTimeout::After(d) => seconds(d),
        },
        "--workdir".into(),
        MACHINE_WORKDIR.into(),
        "--destroy-delay".into(),
        seconds(s.destroy_delay),
        "--stop-grace".into(),
        seconds(s.stop_grace),
        "--self-terminate".into(),
    ];
    if s.driver == Driver::Github {
        args.push("--job-time-limit-margin".into());
        args.push(match s.job_time_limit_margin {
            Some(margin) => seconds(margin),
            None => "never".into(),
        });
    }
    if s.single {
        args.push("--single".into());
    }
    if s.no_retry {
        args.push("--no-retry".into());
    }
    if let Some(v) = &s.github_runner_version {
        args.push("--github-runner-version".into());
        args.push(v.clone());
    }
    for v in &s.docker_volumes {
        args.push("--docker-volumes".into());
        args.push(v.clone());
    }
    if let Some(user) = &s.job_user {
        args.push("--cloud-job-user".into());
        args.push(user.clone());
    }
    args
}

/// The machine runner's environment (none of it secret): where agents are downloaded from
/// and how they run jobs when that differs from the defaults, the job time limit, the cloud,
/// and which runner the launcher created (`own`), if it did.
pub fn machine_env(s: &RunnerSettings, own: Option<&GitlabRunner>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(own) = own {
        env.push((vars::GITLAB_RUNNER_ID.into(), own.id.clone()));
        env.push((vars::GITLAB_URL.into(), own.url.clone()));
    }
    if let Some(jit) = &s.github_jit {
        env.push((vars::GITHUB_JIT_RUNNER_ID.into(), jit.runner_id.clone()));
    }
    for (var, value, default) in [
        (
            vars::GITHUB_RUNNER_RELEASES_URL,
            &s.github_runner_releases,
            cml_agent::install::DEFAULT_RELEASES_API,
        ),
        (
            vars::GITLAB_RUNNER_DOWNLOAD_URL,
            &s.gitlab_runner_download,
            cml_agent::gitlab::DEFAULT_DOWNLOAD_URL,
        ),
        (
            vars::GITLAB_RUNNER_VERSION,
            &s.gitlab_runner_version,
            "latest",
        ),
        (
            vars::BITBUCKET_API_URL,
            &s.bitbucket_api,
            cml_forge::bitbucket::DEFAULT_API_URL,
        ),
    ] {
        if value != default {
            env.push((var.to_string(), value.clone()));
        }
    }
    if let Some(url) = &s.bitbucket_runner_url {
        env.push((vars::BITBUCKET_RUNNER_URL.into(), url.clone()));
    }
    if let Some(sha) = &s.bitbucket_runner_sha256 {
        env.push((vars::BITBUCKET_RUNNER_SHA256.into(), sha.clone()));
    }
    let mode_var = match s.driver {
        Driver::Gitlab => Some(vars::GITLAB_EXECUTOR),
        Driver::Bitbucket => Some(vars::BITBUCKET_RUNTIME),
        Driver::Github => None,
    };
    if let (Some(var), Some(mode)) = (mode_var, s.forced_agent_mode) {
        let mode = match mode {
            AgentMode::Docker => "docker",
            AgentMode::Shell => "shell",
        };
        env.push((var.into(), mode.into()));
    }
    if s.driver == Driver::Github && s.job_limit != DEFAULT_JOB_LIMIT {
        env.push((vars::JOB_TIME_LIMIT.into(), seconds(s.job_limit)));
    }
    if let Some(c) = &s.cloud {
        env.push((vars::MACHINE_CLOUD.to_string(), c.cloud.to_string()));
    }
    env
}

/// The machine's credential, as the variables `cml` reads it from: the runner's own token
/// when the launcher created the runner (`own`), the just-in-time configuration of a pool's
/// GitHub runner (never the pool's PAT or App key), else the launcher's credential.
pub fn machine_secrets(s: &RunnerSettings, own: Option<&GitlabRunner>) -> Vec<(String, Secret)> {
    let mut secrets = match (own, &s.credential) {
        (Some(own), _) => vec![(vars::GITLAB_RUNNER_TOKEN.to_string(), own.token.clone())],
        (None, _) if s.github_jit.is_some() => s
            .github_jit
            .iter()
            .map(|jit| (vars::GITHUB_JIT_CONFIG.to_string(), jit.config.clone()))
            .collect(),
        (None, Credential::Token { token, .. }) => {
            vec![("REPO_TOKEN".to_string(), token.clone())]
        }
        (None, Credential::GithubApp { app_id, pem }) => vec![
            (vars::GITHUB_APP_ID.to_string(), Secret::new(app_id.clone())),
            (vars::GITHUB_APP_PEM.to_string(), pem.clone()),
        ],
    };
    // `--cloud-azure-credentials-on-machine`: the machine deletes its resource group with them.
    secrets.extend(s.azure_machine_credentials.iter().flatten().cloned());
    secrets
}

/// `--log`'s value for `level`.
fn log_level(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    }
}

/// A duration in seconds, as exactly as the settings parser reads it back (`90`, `0.25`).
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        d.as_secs_f64().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, GlobalArgs, RunnerArgs};
    use crate::settings::resolve_runner;
    use std::collections::HashMap;

    /// Resolves `args` (after `cml`) with the environment `env` as the launcher would.
    fn resolve(args: &[&str], env: &[(&str, &str)]) -> RunnerSettings {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = |k: &str| env.get(k).cloned();
        let (global, runner) = parse(args.iter().map(|a| a.to_string()).collect(), &env);
        resolve_runner(&global, &runner, &env, || None).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Parses as the binary does: CML's option forms, the options' variables from `env`.
    fn parse(args: Vec<String>, env: &dyn crate::settings::Env) -> (GlobalArgs, RunnerArgs) {
        let argv = std::iter::once("cml".to_string())
            .chain(args)
            .map(Into::into)
            .collect();
        let cli = crate::options::parse(argv, env)
            .unwrap_or_else(|e| panic!("{e}"))
            .cli;
        match cli.command {
            Command::Runner { args, .. } => (cli.global, *args),
            other => panic!("not a runner command: {other:?}"),
        }
    }

    /// What the machine resolves from the startup script's arguments, environment and
    /// credentials file, exactly as its `cml` would.
    fn on_the_machine(s: &RunnerSettings) -> RunnerSettings {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        let secrets: Vec<(String, String)> = machine_secrets(s, None)
            .into_iter()
            .map(|(k, v)| (k, v.expose().to_string()))
            .collect();
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .unwrap();
            f.write_all(cml_core::startup::key_value_lines(&secrets).as_bytes())
                .unwrap();
        }
        let mut args = machine_args(s);
        args.push("--credentials-file".into());
        args.push(file.to_string_lossy().into_owned());
        let env: HashMap<String, String> = machine_env(s, None).into_iter().collect();
        let env = |k: &str| env.get(k).cloned();
        let (global, runner) = parse(args, &env);
        resolve_runner(&global, &runner, &env, || None)
            .unwrap_or_else(|e| panic!("the machine cannot resolve its settings: {e}"))
    }

    /// Every machine-relevant setting, as comparable text.
    fn relevant(s: &RunnerSettings) -> Vec<String> {
        let credential = match &s.credential {
            Credential::Token { token, .. } => format!("token {}", token.expose()),
            Credential::GithubApp { app_id, pem } => format!("app {app_id} {}", pem.expose()),
        };
        vec![
            format!("driver {}", s.driver),
            format!("repo {}", s.repo),
            format!("name {}", s.name),
            format!("labels {}", s.labels),
            format!("idle timeout {:?}", s.idle_timeout),
            format!("single {}", s.single),
            format!("no retry {}", s.no_retry),
            format!("docker volumes {:?}", s.docker_volumes),
            format!("destroy delay {:?}", s.destroy_delay),
            format!("stop grace {:?}", s.stop_grace),
            format!("job time limit {:?}", s.job_time_limit),
            format!("job limit {:?}", s.job_limit),
            format!("job time limit margin {:?}", s.job_time_limit_margin),
            format!("log level {:?}", s.log_level),
            format!("runner version {:?}", s.github_runner_version),
            format!("releases {}", s.github_runner_releases),
            format!("gitlab download {}", s.gitlab_runner_download),
            format!("gitlab version {}", s.gitlab_runner_version),
            format!("bitbucket api {}", s.bitbucket_api),
            format!("bitbucket runner {:?}", s.bitbucket_runner_url),
            format!("bitbucket sha {:?}", s.bitbucket_runner_sha256),
            format!("agent mode {:?}", s.forced_agent_mode),
            format!("job user {:?}", s.job_user),
            credential,
        ]
    }

    fn round_trip(args: &[&str], env: &[(&str, &str)]) {
        let launcher = resolve(args, env);
        assert!(launcher.cloud.is_some(), "{args:?} is a cloud launch");
        let machine = on_the_machine(&launcher);
        assert_eq!(relevant(&machine), relevant(&launcher), "{args:?} {env:?}");
        assert!(machine.self_terminate, "the machine removes itself");
        assert!(machine.cloud.is_none(), "the machine launches no machine");
        assert_eq!(machine.workdir, std::path::Path::new(MACHINE_WORKDIR));
        let machine_cloud = machine_env(&launcher, None)
            .into_iter()
            .find(|(k, _)| k == vars::MACHINE_CLOUD);
        assert_eq!(
            machine_cloud,
            Some((vars::MACHINE_CLOUD.into(), "aws".into()))
        );
        // Nothing secret on the command line or in the environment.
        let secrets: Vec<String> = machine_secrets(&launcher, None)
            .into_iter()
            .map(|(_, v)| v.expose().to_string())
            .collect();
        let visible = format!(
            "{:?} {:?}",
            machine_args(&launcher),
            machine_env(&launcher, None)
        );
        for secret in secrets {
            assert!(!visible.contains(&secret), "{visible}");
        }
    }

    #[test]
    fn the_machine_resolves_every_machine_setting_the_launcher_resolved() {
        let home = ("HOME", "/home/u");
        round_trip(
            &[
                "runner",
                "--cloud=aws",
                "--repo=https://github.com/o/r",
                "--token=ghp_rt",
            ],
            &[home],
        );
        round_trip(
            &[
                "--log=debug",
                "runner",
                "--cloud=aws",
                "--repo=https://github.com/o/r",
                "--token=ghp_rt",
                "--name=gpu-1",
                "--labels=cml,gpu",
                "--idle-timeout=90m",
                "--single",
                "--no-retry",
                "--destroy-delay=0",
                "--stop-grace=0.25",
                "--job-time-limit-margin=1h",
                "--github-runner-version=2.330.0",
                "--cloud-job-user=runner",
                "--cloud-startup-script=ZWNobyBoaQ==",
            ],
            &[
                home,
                ("CML_JOB_TIME_LIMIT", "86400"),
                ("CML_GITHUB_RUNNER_RELEASES_URL", "http://mirror/releases"),
            ],
        );
        round_trip(
            &[
                "runner",
                "--cloud=aws",
                "--repo=https://github.com/o/r",
                "--idle-timeout=never",
                "--job-time-limit-margin=never",
            ],
            &[
                home,
                ("CML_GITHUB_APP_ID", "17"),
                (
                    "CML_GITHUB_APP_PEM",
                    "-----BEGIN KEY-----\nabc\n-----END KEY-----",
                ),
                ("CML_RUNNER_LOG", "warn"),
            ],
        );
        round_trip(
            &[
                "runner",
                "--cloud=aws",
                "--repo=https://gitlab.example.com/g/p",
                "--docker-volumes=/data:/data",
                "--docker-volumes=/cache:/cache",
                "--reuse",
            ],
            &[
                home,
                ("GITLAB_TOKEN", "glpat-rt"),
                ("CML_GITLAB_EXECUTOR", "docker"),
                ("CML_GITLAB_RUNNER_VERSION", "v17.5.0"),
                ("CML_GITLAB_RUNNER_DOWNLOAD_URL", "http://mirror/gitlab"),
            ],
        );
        round_trip(
            &[
                "runner",
                "--cloud=aws",
                "--repo=https://bitbucket.org/w/r",
                "--cloud-job-user=runner",
            ],
            &[
                home,
                ("BITBUCKET_TOKEN", "dTpw"),
                ("CML_BITBUCKET_API_URL", "http://bb.example"),
                ("CML_BITBUCKET_RUNNER_URL", "http://mirror/runner.tgz"),
                ("CML_BITBUCKET_RUNNER_SHA256", &"a".repeat(64)),
            ],
        );
    }

    #[test]
    fn a_pools_github_machine_gets_only_its_jit_configuration() {
        let args = [
            "runner",
            "--cloud=aws",
            "--repo=https://github.com/o/r",
            "--name=pool-abc123",
            "--single",
        ];
        let env = [
            ("HOME", "/h"),
            ("REPO_TOKEN", "ghp_poolstoken"),
            ("CML_GITHUB_JIT_CONFIG", "eyJqaXRibG9iIjp0cnVlfQ=="),
            ("CML_GITHUB_JIT_RUNNER_ID", "99"),
        ];
        let s = resolve(&args, &env);
        let secrets = machine_secrets(&s, None);
        assert_eq!(secrets.len(), 1, "{secrets:?}");
        assert_eq!(secrets[0].0, vars::GITHUB_JIT_CONFIG);
        let script = startup_script(&s, None).render();
        assert!(!script.contains("ghp_poolstoken"), "{script}");
        // The machine resolves the runner with its configuration as its only credential.
        let m = on_the_machine(&s);
        assert!(m.holds_only_jit());
        let jit = m.github_jit.expect("the JIT configuration");
        assert_eq!(jit.runner_id, "99");
        assert_eq!(jit.config.expose(), "eyJqaXRibG9iIjp0cnVlfQ==");
    }

    #[test]
    fn a_gitlab_machine_without_retries_gets_only_its_runner_token() {
        let args = [
            "runner",
            "--cloud=aws",
            "--repo=https://gitlab.example.com/sub/g/p",
            "--name=gl-1",
            "--labels=a,b",
        ];
        let env = [("HOME", "/h"), ("GITLAB_TOKEN", "glpat-accesstoken")];
        // Re-runs on: the access token goes, as it must for re-runs.
        let with_retries = resolve(&args, &env);
        assert!(!hands_over_runner_token(&with_retries));
        let mut no_retry = args.to_vec();
        no_retry.push("--no-retry");
        let s = resolve(&no_retry, &env);
        assert!(hands_over_runner_token(&s));
        let own = GitlabRunner {
            url: "https://gitlab.example.com/sub".into(),
            id: "1234".into(),
            token: Secret::new("glrt-runnertoken"),
        };
        let secrets = machine_secrets(&s, Some(&own));
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0].0, vars::GITLAB_RUNNER_TOKEN);
        let script = startup_script(&s, Some(&own)).render();
        assert!(!script.contains("glpat-accesstoken"), "{script}");
        assert!(script.contains("CML_GITLAB_RUNNER_TOKEN=\"glrt-runnertoken\""));

        // The machine resolves the runner and its token, and nothing else.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(&file, "CML_GITLAB_RUNNER_TOKEN=\"glrt-runnertoken\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut args = machine_args(&s);
        args.extend([
            "--credentials-file".into(),
            file.to_string_lossy().into_owned(),
        ]);
        let env: HashMap<String, String> = machine_env(&s, Some(&own)).into_iter().collect();
        let env = |k: &str| env.get(k).cloned();
        let (global, runner) = parse(args, &env);
        let m = resolve_runner(&global, &runner, &env, || None).unwrap();
        assert_eq!(
            m.gitlab_own_runner,
            Some(crate::settings::OwnRunner {
                id: "1234".into(),
                url: "https://gitlab.example.com/sub".into()
            })
        );
        assert!(
            matches!(&m.credential, Credential::Token { token, source } if token.expose() == "glrt-runnertoken" && source == vars::GITLAB_RUNNER_TOKEN)
        );
        assert!(m.no_retry);
        // Without its token, the machine refuses to start.
        std::fs::write(&file, "").unwrap();
        let err = resolve_runner(&global, &runner, &env, || None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CML_GITLAB_RUNNER_TOKEN") && err.contains("hint:"),
            "{err}"
        );
    }

    #[test]
    fn settings_that_used_to_stay_behind_reach_the_machine() {
        let s = resolve(
            &[
                "--log=debug",
                "runner",
                "--cloud=aws",
                "--repo=https://github.com/o/r",
                "--token=t",
                "--stop-grace=45",
                "--job-time-limit-margin=30m",
            ],
            &[("HOME", "/h"), ("CML_JOB_TIME_LIMIT", "7200")],
        );
        let args = machine_args(&s).join(" ");
        assert!(args.contains("--log debug"), "{args}");
        assert!(args.contains("--stop-grace 45"), "{args}");
        assert!(args.contains("--job-time-limit-margin 1800"), "{args}");
        assert!(
            machine_env(&s, None).contains(&(vars::JOB_TIME_LIMIT.into(), "7200".into())),
            "{:?}",
            machine_env(&s, None)
        );
    }
}
