//! GitLab's `gitlab-runner`: installed as `<workdir>/gitlab-runner` (checksum verified) and
//! run as `gitlab-runner --log-format=json run-single`, the way CML runs it.
//!
//! The runner token is written, with the rest of this one runner's settings, to
//! `<workdir>/gitlab-runner.toml` (created with mode 0600, removed when the runner ends) and
//! read by `run-single --config FILE --runner NAME` (gitlab-runner 17.1 or newer). It is never
//! on a command line, where every local user could read it in the process list, nor in
//! gitlab-runner's environment, which the shell executor hands to every job step.

use crate::install::{download, http_client, Installed};
use crate::AgentError;
use cml_core::Secret;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// GitLab's download bucket for gitlab-runner.
pub const DEFAULT_DOWNLOAD_URL: &str = "https://gitlab-runner-downloads.s3.amazonaws.com";
/// The image jobs run in with the docker executor (CML's).
pub const DEFAULT_IMAGE: &str = "iterativeai/cml:latest";
/// The same with GPU tooling, used when `nvidia-smi` works.
pub const DEFAULT_GPU_IMAGE: &str = "iterativeai/cml:latest-gpu";

/// Where gitlab-runner comes from.
#[derive(Debug, Clone)]
pub struct DownloadSource {
    /// The bucket (`{base}/{version}/binaries/...`, `{base}/{version}/release.sha256`).
    pub base: String,
    /// `latest` or a tag such as `v17.5.0`.
    pub version: String,
}

/// How gitlab-runner runs jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executor {
    /// In containers of `image`; with the NVIDIA runtime when `gpu`.
    Docker { image: String, gpu: bool },
    /// Directly on this machine (used when `cml` already runs inside a container).
    Shell,
}

/// The executor for this machine: shell inside a container (no Docker there, as CML decides),
/// else docker, with GPUs when `nvidia-smi` runs.
pub async fn choose_executor() -> Executor {
    let in_container = in_container();
    let gpu = !in_container && gpu_available().await;
    executor_for(in_container, gpu)
}

/// The docker executor, GPUs detected (when the shell executor was ruled out by choice).
pub async fn docker_executor() -> Executor {
    executor_for(false, gpu_available().await)
}

/// The pure choice behind [`choose_executor`].
pub fn executor_for(in_container: bool, gpu: bool) -> Executor {
    if in_container {
        return Executor::Shell;
    }
    Executor::Docker {
        image: if gpu {
            DEFAULT_GPU_IMAGE
        } else {
            DEFAULT_IMAGE
        }
        .into(),
        gpu,
    }
}

/// `IN_DOCKER` is set (CML's image sets it), or `/.dockerenv` or `/run/.containerenv` exists.
pub fn in_container() -> bool {
    std::env::var_os("IN_DOCKER").is_some_and(|v| !v.is_empty())
        || Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
}

/// How long the GPU tools together may take to answer before the machine counts as having
/// no GPU.
pub const GPU_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// `nvidia-smi` (or `cuda-smi`) runs and succeeds, as CML checks, within
/// [`GPU_PROBE_TIMEOUT`]. A tool still running then is killed and counts as no GPU. The wait
/// is asynchronous, so signals and timers of the caller's runtime keep being served; dropping
/// the future kills the tool too.
pub async fn gpu_available() -> bool {
    gpu_available_within(GPU_PROBE_TIMEOUT).await
}

async fn gpu_available_within(limit: Duration) -> bool {
    let probe = async {
        for tool in ["nvidia-smi", "cuda-smi"] {
            // `kill_on_drop`: when the timeout (or the caller) drops this future, the tool is
            // killed rather than left running; tokio reaps it.
            let status = Command::new(tool)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status()
                .await;
            if status.is_ok_and(|s| s.success()) {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(limit, probe).await {
        Ok(found) => found,
        Err(_) => {
            tracing::warn!(
                "nvidia-smi did not answer within {} s; going on without GPUs",
                limit.as_secs()
            );
            false
        }
    }
}

/// The bucket's name for this machine (`linux-amd64`, `linux-arm64`, ...).
pub fn platform() -> Option<String> {
    let os = match std::env::consts::OS {
        "linux" => "linux",
        "macos" => "darwin",
        _ => return None,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        _ => return None,
    };
    Some(format!("{os}-{arch}"))
}

/// Makes sure `dir/gitlab-runner` exists. An executable already there is used as is, with no
/// network, once `crate::install::check_install` found that no other user could have changed
/// it. Otherwise the binary for this OS/arch is downloaded to a temporary file while it
/// is hashed, compared with the SHA-256 in the bucket's `release.sha256`, made executable and
/// only then renamed into place; a mismatch leaves nothing.
pub async fn ensure_gitlab_runner(
    dir: &Path,
    source: &DownloadSource,
    agent_user: Option<u32>,
) -> Result<Installed, AgentError> {
    let target = dir.join("gitlab-runner");
    if is_executable(&target) {
        crate::install::check_install(dir, &["gitlab-runner"], agent_user)?;
        return Ok(Installed::Existing);
    }
    crate::install::prepare_workdir(dir, agent_user)?;
    let platform = platform().ok_or_else(|| AgentError::NoAsset {
        version: source.version.clone(),
        asset: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
    })?;
    let base = format!("{}/{}", source.base.trim_end_matches('/'), source.version);
    let asset = format!("binaries/gitlab-runner-{platform}");
    let sums_url = format!("{base}/release.sha256");
    let release_err = |reason: String| AgentError::GitlabRelease {
        version: source.version.clone(),
        url: sums_url.clone(),
        reason,
    };
    let client = http_client().map_err(release_err)?;
    let resp = client
        .get(&sums_url)
        .timeout(crate::install::METADATA_TIMEOUT)
        .send()
        .await
        .map_err(|e| release_err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(release_err(format!("HTTP {}", resp.status())));
    }
    let sums = resp.text().await.map_err(|e| release_err(e.to_string()))?;
    let expected = published_sha256(&sums, &asset).ok_or_else(|| AgentError::NoChecksum {
        version: source.version.clone(),
        platform: platform.clone(),
    })?;
    tracing::info!("downloading gitlab-runner {} ({asset})", source.version);
    let partial = dir.join(".gitlab-runner.partial");
    let actual = match download(&client, &format!("{base}/{asset}"), &partial).await {
        Ok(sha) => sha,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if !actual.eq_ignore_ascii_case(&expected) {
        let _ = std::fs::remove_file(&partial);
        return Err(AgentError::Checksum {
            asset,
            expected,
            actual,
        });
    }
    use std::os::unix::fs::PermissionsExt;
    let installed = std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .and_then(|()| std::fs::rename(&partial, &target));
    if let Err(cause) = installed {
        let _ = std::fs::remove_file(&partial);
        return Err(AgentError::Unpack {
            asset,
            path: dir.to_path_buf(),
            cause,
        });
    }
    Ok(Installed::Downloaded {
        version: source.version.clone(),
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The SHA-256 of `asset` in a `release.sha256` file (`sha256sum` output: `HEX *path` or
/// `HEX  path`, the path possibly starting with `./`).
pub fn published_sha256(sums: &str, asset: &str) -> Option<String> {
    sums.lines().find_map(|line| {
        let (sha, path) = line.trim().split_once(char::is_whitespace)?;
        let path = path.trim().trim_start_matches('*').trim_start_matches("./");
        (path == asset && sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| sha.to_ascii_lowercase())
    })
}

/// What `run-single` needs.
#[derive(Debug, Clone)]
pub struct RunSingle {
    /// The work directory holding `gitlab-runner`.
    pub dir: PathBuf,
    /// The instance URL (`https://gitlab.com`, or with its sub-path).
    pub url: String,
    /// The runner's authentication token.
    pub token: Secret,
    pub name: String,
    pub executor: Executor,
    /// `--wait-timeout`: exit after this long without a job; `None` = never.
    pub wait_timeout: Option<Duration>,
    /// `--max-builds 1`.
    pub single: bool,
    /// `--docker-volumes`, each passed on.
    pub docker_volumes: Vec<String>,
    pub builds_dir: PathBuf,
}

/// The runner's configuration file in the work directory (mode 0600 while it exists).
pub const CONFIG_FILE: &str = "gitlab-runner.toml";

/// The `config.toml` of this one runner: url, token, executor and its settings. The token is
/// only here, in a file only its owner can read.
pub fn config_toml(a: &RunSingle) -> String {
    let mut t = String::from("concurrent = 1\n\n[[runners]]\n");
    let kv = |t: &mut String, indent: &str, k: &str, v: &str| {
        t.push_str(&format!("{indent}{k} = {}\n", toml_str(v)));
    };
    kv(&mut t, "  ", "name", &a.name);
    kv(&mut t, "  ", "url", &a.url);
    kv(&mut t, "  ", "token", a.token.expose());
    kv(&mut t, "  ", "builds_dir", &a.builds_dir.to_string_lossy());
    kv(
        &mut t,
        "  ",
        "cache_dir",
        &a.dir.join("cache").to_string_lossy(),
    );
    match &a.executor {
        Executor::Shell => kv(&mut t, "  ", "executor", "shell"),
        Executor::Docker { image, gpu } => {
            kv(&mut t, "  ", "executor", "docker");
            t.push_str("  [runners.docker]\n");
            kv(&mut t, "    ", "image", image);
            if *gpu {
                kv(&mut t, "    ", "runtime", "nvidia");
                kv(&mut t, "    ", "gpus", "all");
            }
            let volumes: Vec<String> = a.docker_volumes.iter().map(|v| toml_str(v)).collect();
            t.push_str(&format!("    volumes = [{}]\n", volumes.join(", ")));
        }
    }
    t
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes [`config_toml`] to `<dir>/gitlab-runner.toml`, created with mode 0600 (never
/// readable by others, not even for an instant).
pub fn write_config(a: &RunSingle) -> Result<PathBuf, AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = a.dir.join(CONFIG_FILE);
    let _ = std::fs::remove_file(&path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(config_toml(a).as_bytes())?;
        f.flush()
    };
    write().map_err(|cause| AgentError::Workdir {
        path: path.clone(),
        cause,
    })?;
    Ok(path)
}

/// Removes the configuration file (and with it the runner token) from `dir`.
pub fn remove_config(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(CONFIG_FILE));
}

/// The arguments after `gitlab-runner` (no secret among them): everything else is in the
/// configuration file `config`.
pub fn run_single_args(a: &RunSingle, config: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--log-format=json".into(),
        "run-single".into(),
        "--config".into(),
        config.to_string_lossy().into_owned(),
        "--runner".into(),
        a.name.clone(),
    ];
    if let Some(d) = a.wait_timeout {
        args.push("--wait-timeout".into());
        args.push(d.as_secs().max(1).to_string());
    }
    if a.single {
        args.push("--max-builds".into());
        args.push("1".into());
    }
    args
}

/// Writes the configuration file and returns `gitlab-runner run-single --config ...` with
/// `env` and nothing else. The caller removes the file ([`remove_config`]) once the runner
/// has ended.
pub fn run_single_command(a: &RunSingle, env: &[(String, String)]) -> Result<Command, AgentError> {
    let config = write_config(a)?;
    let mut cmd = Command::new(a.dir.join("gitlab-runner"));
    cmd.current_dir(&a.dir)
        .args(run_single_args(a, &config))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)));
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_single(executor: Executor, single: bool, wait: Option<u64>) -> RunSingle {
        RunSingle {
            dir: "/w".into(),
            url: "https://gitlab.example.com/gitlab".into(),
            token: Secret::new("glrt-secretsecret"),
            name: "r1".into(),
            executor,
            wait_timeout: wait.map(Duration::from_secs),
            single,
            docker_volumes: vec!["/data:/data".into(), "/q\"x".into()],
            builds_dir: "/w/builds".into(),
        }
    }

    #[test]
    fn run_single_arguments_and_configuration() {
        let a = run_single(executor_for(false, true), true, Some(300));
        let s = run_single_args(&a, Path::new("/w/gitlab-runner.toml")).join(" ");
        assert_eq!(
            s,
            "--log-format=json run-single --config /w/gitlab-runner.toml --runner r1 --wait-timeout 300 --max-builds 1"
        );
        let c = config_toml(&a);
        for line in [
            "  url = \"https://gitlab.example.com/gitlab\"",
            "  token = \"glrt-secretsecret\"",
            "  executor = \"docker\"",
            "    image = \"iterativeai/cml:latest-gpu\"",
            "    runtime = \"nvidia\"",
            "    volumes = [\"/data:/data\", \"/q\\\"x\"]",
        ] {
            assert!(c.contains(line), "{line} missing from:\n{c}");
        }

        let a = run_single(executor_for(true, true), false, None);
        let s = run_single_args(&a, Path::new("/c")).join(" ");
        assert!(
            !s.contains("--wait-timeout") && !s.contains("--max-builds"),
            "{s}"
        );
        let c = config_toml(&a);
        assert!(
            c.contains("executor = \"shell\"") && !c.contains("docker"),
            "{c}"
        );
        assert_eq!(
            executor_for(false, false),
            Executor::Docker {
                image: DEFAULT_IMAGE.into(),
                gpu: false
            }
        );
    }

    #[test]
    fn the_configuration_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut a = run_single(Executor::Shell, false, None);
        a.dir = dir.path().to_path_buf();
        let path = write_config(&a).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        remove_config(dir.path());
        assert!(!path.exists());
    }

    #[test]
    fn reads_release_sha256() {
        let sha = "b".repeat(64);
        let sums = format!(
            "{sha} *binaries/gitlab-runner-linux-amd64\n{} ./binaries/gitlab-runner-linux-arm64\n",
            "c".repeat(64)
        );
        assert_eq!(
            published_sha256(&sums, "binaries/gitlab-runner-linux-amd64"),
            Some(sha)
        );
        assert_eq!(
            published_sha256(&sums, "binaries/gitlab-runner-linux-arm64"),
            Some("c".repeat(64))
        );
        assert_eq!(
            published_sha256(&sums, "binaries/gitlab-runner-linux-386"),
            None
        );
    }
}
