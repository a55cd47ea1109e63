//! The Bitbucket Pipelines runner: the Docker runner image when a Docker engine answers,
//! otherwise the Linux Shell runner.
//!
//! | runtime | when | how | runtime label |
//! |---|---|---|---|
//! | Docker | `docker info` succeeds | `docker container run -a stderr -a stdout --rm ... IMAGE` | `linux` |
//! | Shell | no Docker engine (or `CML_BITBUCKET_RUNTIME=shell`) | `./start.sh ... --workingDirectory ../temp` in `<workdir>/atlassian-bitbucket-pipelines-runner/bin` | `linux.shell` |
//!
//! Secrets: the Docker runner gets its OAuth client through the environment of the `docker`
//! client (`-e NAME` without a value), never on a command line; its steps run in their own
//! containers without it. The Linux Shell runner is given its configuration as `start.sh`
//! arguments, so the OAuth secret is on its command line: local users (`/proc/PID/cmdline`,
//! `ps`), and steps (which run as the same user, with the runner's environment), can read it
//! while the runner runs. It lets its holder act as this one runner, which is deleted when
//! `cml` ends. Prefer Docker where steps must not see it. Nothing else is added to the Shell
//! runner's environment: it is `env` as given (`cml_agent::env::agent_env`, without `cml`'s
//! own credentials), which its steps inherit.
//!
//! Why arguments for the Shell runner: the run command Bitbucket shows for it, and the
//! integrations published around it, all pass `--accountUuid --repositoryUuid --runnerUuid
//! --OAuthClientId --OAuthClientSecret --runtime linux-shell --workingDirectory`. The runner
//! is closed source; one community installer starts `start.sh` without arguments from a
//! systemd `EnvironmentFile` holding `ACCOUNT_UUID`, `RUNNER_UUID`, `OAUTH_CLIENT_SECRET`, ...
//! (the Docker image's names), which suggests the runner also reads those variables, but no
//! Atlassian document says so, so the documented arguments are used.
//!
//! The Linux Shell runner's tarball has its files at the archive's root (`bin/start.sh`, ...):
//! Bitbucket's instructions unpack it into a directory made for it, as [`ensure_shell_runner`]
//! does, then say to go to its `bin` directory and run the command the runner dialog shows,
//! which ends with `--runtime linux-shell --workingDirectory ../temp`. The runner is started
//! exactly so: `start.sh` runs `java -jar ./runner.jar`, a path relative to the current
//! directory, so it only works from `bin`; steps then run under the install's `temp`
//! directory.

use crate::install::{download, http_client, remove_group_other_write, unpack, Installed};
use crate::AgentError;
use cml_core::Secret;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Atlassian's runner image.
pub const IMAGE: &str =
    "docker-public.packages.atlassian.com/sox/atlassian/bitbucket-pipelines-runner:1";
/// Where the Linux Shell runner lives inside the work directory.
pub const SHELL_RUNNER_START: &str = "atlassian-bitbucket-pipelines-runner/bin/start.sh";
/// The Linux Shell runner's programs (checked before an existing install is run) and its
/// current directory, inside the work directory (Bitbucket's run command is given from there).
pub const SHELL_RUNNER_BIN: &str = "atlassian-bitbucket-pipelines-runner/bin";
/// The `--workingDirectory` of Bitbucket's run command, relative to [`SHELL_RUNNER_BIN`].
pub const SHELL_RUNNER_WORKING_DIRECTORY: &str = "../temp";

/// Which runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Docker,
    Shell,
}

/// Docker when a Docker engine answers `docker info` within 10 s, else Shell. The wait does
/// not block the caller's runtime.
pub async fn choose_runtime() -> Runtime {
    runtime_for(docker_answers().await)
}

/// The pure choice behind [`choose_runtime`].
pub fn runtime_for(docker: bool) -> Runtime {
    if docker {
        Runtime::Docker
    } else {
        Runtime::Shell
    }
}

async fn docker_answers() -> bool {
    // `kill_on_drop`: a hung engine's client is killed when the timeout drops the wait.
    let status = Command::new("docker")
        .arg("info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    // Bounded: a hung engine counts as none.
    matches!(
        tokio::time::timeout(Duration::from_secs(10), status).await,
        Ok(Ok(s)) if s.success()
    )
}

/// Bitbucket's runner-type label.
pub fn runtime_label(r: Runtime) -> &'static str {
    match r {
        Runtime::Docker => "linux",
        Runtime::Shell => "linux.shell",
    }
}

/// Where Atlassian publishes the Linux Shell runner: `atlassian-bitbucket-pipelines-runner-<version>.tar.gz`,
/// the versions listed in `CHANGELOG.md` there.
pub const ATLASSIAN_DOWNLOADS: &str =
    "https://product-downloads.atlassian.com/software/bitbucket/pipelines";

/// The URL of Atlassian's Linux Shell runner tarball of `version` (e.g. `3.33.0`).
pub fn atlassian_shell_runner_url(version: &str) -> String {
    format!("{ATLASSIAN_DOWNLOADS}/atlassian-bitbucket-pipelines-runner-{version}.tar.gz")
}

/// Where the Linux Shell runner is downloaded from when it is not installed. The default
/// downloads nothing (Atlassian publishes no checksum to verify a download against).
#[derive(Debug, Clone, Default)]
pub struct ShellRunnerSource {
    /// A `.tar.gz` of the runner (`CML_BITBUCKET_RUNNER_URL`); `None`: no download.
    pub url: Option<String>,
    /// Its SHA-256, checked when given (`CML_BITBUCKET_RUNNER_SHA256`).
    pub sha256: Option<String>,
}

impl ShellRunnerSource {
    /// Atlassian's tarball of `version`, checked against `sha256` when given.
    pub fn atlassian(version: &str, sha256: Option<String>) -> ShellRunnerSource {
        ShellRunnerSource {
            url: Some(atlassian_shell_runner_url(version)),
            sha256,
        }
    }
}

/// Makes sure the Linux Shell runner is in `dir`. An install already there is used as is,
/// without network, once `crate::install::check_install` found that no other user could have
/// changed it. Otherwise the tarball at `source.url` is downloaded and unpacked into
/// `dir/atlassian-bitbucket-pipelines-runner/`. What is verified: the SHA-256 of the
/// downloaded tarball, only when `source.sha256` is given (a mismatch installs nothing), and
/// that the tarball held `bin/start.sh`. Without a URL, the error says how to install it.
pub async fn ensure_shell_runner(
    dir: &Path,
    source: &ShellRunnerSource,
    agent_user: Option<u32>,
) -> Result<Installed, AgentError> {
    if dir.join(SHELL_RUNNER_START).is_file() {
        crate::install::check_install(dir, &[SHELL_RUNNER_BIN], agent_user)?;
        return Ok(Installed::Existing);
    }
    let Some(url) = &source.url else {
        return Err(AgentError::NoShellRunner {
            path: dir.join(SHELL_RUNNER_START),
        });
    };
    crate::install::prepare_workdir(dir, agent_user)?;
    let client = http_client().map_err(|reason| AgentError::Download {
        url: url.clone(),
        reason,
    })?;
    let partial = dir.join(".bitbucket-runner.tar.gz.partial");
    let actual = match download(&client, url, &partial).await {
        Ok(sha) => sha,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if let Some(expected) = &source.sha256 {
        if !actual.eq_ignore_ascii_case(expected) {
            let _ = std::fs::remove_file(&partial);
            return Err(AgentError::Checksum {
                asset: url.clone(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    let into = dir.join("atlassian-bitbucket-pipelines-runner");
    let archive = partial.clone();
    let unpacked = tokio::task::spawn_blocking(move || {
        unpack(&archive, &into).and_then(|()| remove_group_other_write(&into))
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r);
    let _ = std::fs::remove_file(&partial);
    unpacked.map_err(|cause| AgentError::Unpack {
        asset: url.clone(),
        path: dir.to_path_buf(),
        cause,
    })?;
    if !dir.join(SHELL_RUNNER_START).is_file() {
        return Err(AgentError::Incomplete {
            path: dir.to_path_buf(),
            missing: SHELL_RUNNER_START.into(),
        });
    }
    Ok(Installed::Downloaded {
        version: "from CML_BITBUCKET_RUNNER_URL".into(),
    })
}

/// What the runner needs (from the registration).
#[derive(Debug, Clone)]
pub struct BitbucketAgent {
    /// The work directory.
    pub dir: PathBuf,
    pub runtime: Runtime,
    pub account_uuid: String,
    pub repository_uuid: String,
    pub runner_uuid: String,
    pub oauth_client_id: String,
    pub oauth_client_secret: Secret,
}

/// The arguments of the runner's command (see the module table).
pub fn agent_args(a: &BitbucketAgent) -> Vec<String> {
    match a.runtime {
        Runtime::Docker => {
            let mut args: Vec<String> = [
                // No `-t`: docker forwards signals to the container only without a TTY, so
                // stopping the client stops the runner (and `--rm` removes it).
                "container",
                "run",
                "-a",
                "stderr",
                "-a",
                "stdout",
                "--rm",
                "-v",
                "/tmp:/tmp",
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock",
                "-v",
                "/var/lib/docker/containers:/var/lib/docker/containers:ro",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            for name in [
                "ACCOUNT_UUID",
                "REPOSITORY_UUID",
                "RUNNER_UUID",
                "RUNTIME_PREREQUISITES_ENABLED",
                "OAUTH_CLIENT_ID",
                "OAUTH_CLIENT_SECRET",
                "WORKING_DIRECTORY",
            ] {
                args.push("-e".into());
                args.push(name.into());
            }
            args.push("--name".into());
            args.push(format!(
                "runner-{}",
                a.runner_uuid.trim_matches(|c| c == '{' || c == '}')
            ));
            args.push(IMAGE.into());
            args
        }
        Runtime::Shell => vec![
            "--accountUuid".into(),
            a.account_uuid.clone(),
            "--repositoryUuid".into(),
            a.repository_uuid.clone(),
            "--runnerUuid".into(),
            a.runner_uuid.clone(),
            "--OAuthClientId".into(),
            a.oauth_client_id.clone(),
            "--OAuthClientSecret".into(),
            a.oauth_client_secret.expose().to_string(),
            "--runtime".into(),
            "linux-shell".into(),
            "--workingDirectory".into(),
            SHELL_RUNNER_WORKING_DIRECTORY.into(),
        ],
    }
}

/// The runner's command with `env` (Docker: plus the values its `-e NAME` arguments take).
/// The Shell runner runs as Bitbucket's run command says: `start.sh` from its `bin`
/// directory (the current directory), steps under `../temp`; the Docker client runs in the
/// work directory.
pub fn agent_command(a: &BitbucketAgent, env: &[(String, String)]) -> Command {
    let (program, cwd) = match a.runtime {
        Runtime::Docker => (PathBuf::from("docker"), a.dir.clone()),
        Runtime::Shell => (a.dir.join(SHELL_RUNNER_START), a.dir.join(SHELL_RUNNER_BIN)),
    };
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd)
        .args(agent_args(a))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)));
    if a.runtime == Runtime::Docker {
        cmd.env("ACCOUNT_UUID", &a.account_uuid)
            .env("REPOSITORY_UUID", &a.repository_uuid)
            .env("RUNNER_UUID", &a.runner_uuid)
            .env("RUNTIME_PREREQUISITES_ENABLED", "true")
            .env("OAUTH_CLIENT_ID", &a.oauth_client_id)
            .env("OAUTH_CLIENT_SECRET", a.oauth_client_secret.expose())
            .env("WORKING_DIRECTORY", "/tmp");
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(runtime: Runtime) -> BitbucketAgent {
        BitbucketAgent {
            dir: "/w".into(),
            runtime,
            account_uuid: "{a}".into(),
            repository_uuid: "{r}".into(),
            runner_uuid: "{u-1}".into(),
            oauth_client_id: "cid".into(),
            oauth_client_secret: Secret::new("oauth-secret-value"),
        }
    }

    #[test]
    fn docker_keeps_the_secret_off_the_command_line() {
        let args = agent_args(&agent(Runtime::Docker)).join(" ");
        assert!(!args.contains("oauth-secret-value"), "{args}");
        assert!(
            args.contains("-e OAUTH_CLIENT_SECRET -e WORKING_DIRECTORY --name runner-u-1"),
            "{args}"
        );
        assert!(args.ends_with(IMAGE));
        assert_eq!(runtime_for(true), Runtime::Docker);
        assert_eq!(runtime_label(runtime_for(false)), "linux.shell");
    }

    #[test]
    fn environments_of_the_two_runners() {
        let given = [("PATH".to_string(), "/usr/bin".to_string())];
        let envs = |r| {
            let cmd = agent_command(&agent(r), &given);
            cmd.as_std()
                .get_envs()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.map(|v| v.to_string_lossy().into_owned()),
                    )
                })
                .collect::<Vec<_>>()
        };
        // Shell: exactly what it is given (its steps inherit it).
        assert_eq!(
            envs(Runtime::Shell),
            [("PATH".into(), Some("/usr/bin".into()))]
        );
        // Docker: the values of the `-e NAME` arguments, for the docker client only.
        let docker = envs(Runtime::Docker);
        assert!(docker.contains(&(
            "OAUTH_CLIENT_SECRET".into(),
            Some("oauth-secret-value".into())
        )));
        assert!(docker.contains(&("RUNNER_UUID".into(), Some("{u-1}".into()))));
    }

    #[test]
    fn shell_runner_is_started_as_bitbuckets_run_command_says() {
        let args = agent_args(&agent(Runtime::Shell)).join(" ");
        assert_eq!(
            args,
            "--accountUuid {a} --repositoryUuid {r} --runnerUuid {u-1} --OAuthClientId cid --OAuthClientSecret oauth-secret-value --runtime linux-shell --workingDirectory ../temp"
        );
        // `cd atlassian-bitbucket-pipelines-runner/bin && ./start.sh ...`
        let cmd = agent_command(&agent(Runtime::Shell), &[]);
        let cmd = cmd.as_std();
        assert_eq!(
            cmd.get_current_dir(),
            Some(Path::new("/w/atlassian-bitbucket-pipelines-runner/bin"))
        );
        assert_eq!(
            Path::new(cmd.get_program()),
            Path::new("/w/atlassian-bitbucket-pipelines-runner/bin/start.sh")
        );
        // The Docker client stays in the work directory.
        let docker = agent_command(&agent(Runtime::Docker), &[]);
        assert_eq!(docker.as_std().get_current_dir(), Some(Path::new("/w")));
    }

    /// Serves `body` to every GET on a local port, for at most `count` requests.
    fn serve(body: Vec<u8>, count: usize) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/runner.tar.gz", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(count) {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            }
        });
        url
    }

    fn runner_tarball() -> Vec<u8> {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let script = b"#!/bin/sh\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(script.len() as u64);
        h.set_mode(0o755);
        tar.append_data(&mut h, "bin/start.sh", &script[..])
            .unwrap();
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn a_download_is_unpacked_and_checked_when_a_checksum_is_given() {
        use sha2::Digest;
        let body = runner_tarball();
        let sha = hex::encode(sha2::Sha256::digest(&body));
        let url = serve(body, 2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let wrong = ShellRunnerSource {
            url: Some(url.clone()),
            sha256: Some("0".repeat(64)),
        };
        let err = rt
            .block_on(ensure_shell_runner(dir.path(), &wrong, None))
            .unwrap_err();
        assert!(matches!(err, AgentError::Checksum { .. }), "{err}");
        assert!(!dir.path().join(SHELL_RUNNER_START).exists());
        let right = ShellRunnerSource {
            url: Some(url),
            sha256: Some(sha.to_uppercase()),
        };
        assert!(matches!(
            rt.block_on(ensure_shell_runner(dir.path(), &right, None))
                .unwrap(),
            Installed::Downloaded { .. }
        ));
        assert!(dir.path().join(SHELL_RUNNER_START).is_file());
        assert_eq!(
            ShellRunnerSource::atlassian("3.33.0", None).url.as_deref(),
            Some("https://product-downloads.atlassian.com/software/bitbucket/pipelines/atlassian-bitbucket-pipelines-runner-3.33.0.tar.gz")
        );
    }

    #[test]
    fn an_existing_shell_runner_is_used_and_a_missing_one_explained() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(ensure_shell_runner(
                dir.path(),
                &ShellRunnerSource::default(),
                None,
            ))
            .unwrap_err();
        assert!(err.to_string().contains("hint:"), "{err}");
        let start = dir.path().join(SHELL_RUNNER_START);
        std::fs::create_dir_all(start.parent().unwrap()).unwrap();
        std::fs::write(&start, "").unwrap();
        assert_eq!(
            rt.block_on(ensure_shell_runner(
                dir.path(),
                &ShellRunnerSource::default(),
                None,
            ))
            .unwrap(),
            Installed::Existing
        );
    }
}
