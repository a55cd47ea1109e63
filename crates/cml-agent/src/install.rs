//! Installing GitHub's `actions/runner` into a work directory, checksum verified.
//!
//! Contract: a directory that already holds `config.sh` and `run.sh` is used as is, without
//! any network access, once [`check_install`] found that no other user could have changed it.
//! Otherwise the release (pinned or latest) is looked up, its package for this
//! OS/architecture downloaded to a temporary file while hashing, compared with the SHA-256 the
//! release notes publish, and only then unpacked, with nothing writable by group or others.
//! A mismatch leaves nothing.
//!
//! Every download is bounded in time without limiting the size of what it fetches: connecting
//! may take [`CONNECT_TIMEOUT`], and a download that receives nothing for [`STALL_TIMEOUT`] is
//! abandoned (its partial file removed); the small lookups (release, checksums) take at most
//! [`METADATA_TIMEOUT`] in all.

use crate::AgentError;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// GitHub's releases API for actions/runner.
pub const DEFAULT_RELEASES_API: &str = "https://api.github.com/repos/actions/runner/releases";

/// How long connecting to a download server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a download may go without receiving a byte (headers included) before it is
/// abandoned as stalled. Agents are large, so the total time of a download is not limited.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The total time of a small lookup: a release description or a checksum file.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the agent comes from.
#[derive(Debug, Clone)]
pub struct ReleaseSource {
    /// Releases API base (`.../repos/actions/runner/releases`).
    pub api: String,
    /// A version such as `2.330.0`; `None` = latest.
    pub version: Option<String>,
}

/// What [`ensure_github_agent`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// `config.sh` and `run.sh` were already there.
    Existing,
    /// This version was downloaded, verified and unpacked.
    Downloaded { version: String },
}

/// The release platform name of this machine (`linux-x64`, `osx-arm64`, ...).
pub fn platform() -> Option<String> {
    let os = match std::env::consts::OS {
        "linux" => "linux",
        "macos" => "osx",
        _ => return None,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        "arm" => "arm",
        _ => return None,
    };
    Some(format!("{os}-{arch}"))
}

/// True when `dir` holds an agent we can use as is.
pub fn is_installed(dir: &Path) -> bool {
    dir.join("config.sh").is_file() && dir.join("run.sh").is_file()
}

/// What of an actions/runner install is executed (relative to the work directory; directories
/// with everything in them): the scripts `config.sh` and `run.sh` run and source, the runner's
/// programs, and the tools (node) jobs run with.
pub const GITHUB_EXECUTED: &[&str] = &[
    "config.sh",
    "run.sh",
    "run-helper.sh.template",
    "run-helper.sh",
    "env.sh",
    "safe_sleep.sh",
    "bin",
    "externals",
];

/// Refuses an agent install that a user other than this one (or root) could have changed,
/// since running it would run their code with our credentials. Checked: `workdir` itself,
/// each of `executed` (paths relative to `workdir`; a directory with everything in it, without
/// following symbolic links into other directories), and every directory between them and
/// `workdir`. Each must be owned by this process's effective user, by root, or by `agent_user`
/// (the user the agent will run as, when another: whatever that user can change only ever runs
/// as that user), and not be writable by group or others; a symbolic link is judged by its target (the link itself can
/// only be replaced through its directory, which is checked). Entries of `executed` that do
/// not exist are skipped: completeness is checked elsewhere. Directories above `workdir` are
/// not checked.
pub fn check_install(
    workdir: &Path,
    executed: &[&str],
    agent_user: Option<u32>,
) -> Result<(), AgentError> {
    // SAFETY: geteuid(2) has no preconditions, takes no pointer and cannot fail.
    let me = unsafe { libc::geteuid() };
    let trusted = |uid: u32| uid == me || uid == 0 || Some(uid) == agent_user;
    check_entry(workdir, workdir, me, &trusted)?;
    for rel in executed {
        let path = workdir.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        // The directories between `workdir` and the entry.
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| d.starts_with(workdir) && *d != workdir) {
            check_entry(workdir, d, me, &trusted)?;
            dir = d.parent();
        }
        check_entry(workdir, &path, me, &trusted)?;
        if meta.is_dir() {
            let mut pending = vec![path];
            while let Some(d) = pending.pop() {
                let entries = std::fs::read_dir(&d).map_err(|cause| AgentError::Workdir {
                    path: d.clone(),
                    cause,
                })?;
                for entry in entries.flatten() {
                    let p = entry.path();
                    check_entry(workdir, &p, me, &trusted)?;
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        pending.push(p);
                    }
                }
            }
        }
    }
    Ok(())
}

/// One path of [`check_install`], its symbolic link followed.
fn check_entry(
    workdir: &Path,
    path: &Path,
    me: u32,
    trusted: &dyn Fn(u32) -> bool,
) -> Result<(), AgentError> {
    use std::os::unix::fs::MetadataExt;
    let unsafe_install = |problem: String| AgentError::UnsafeInstall {
        workdir: workdir.to_path_buf(),
        path: path.to_path_buf(),
        problem,
    };
    let meta =
        std::fs::metadata(path).map_err(|e| unsafe_install(format!("cannot be examined ({e})")))?;
    if !trusted(meta.uid()) {
        return Err(unsafe_install(format!(
            "belongs to user id {}, not to this user (id {me}) or root",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_install(format!(
            "is writable by {} (mode {:o})",
            match meta.mode() & 0o022 {
                0o020 => "its group",
                0o002 => "every user",
                _ => "its group and every user",
            },
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Creates `dir` (and its parents) for a fresh install, with mode 0755 where created, and
/// refuses a directory that exists already but that other users could change (see
/// [`check_install`]).
pub fn prepare_workdir(dir: &Path, agent_user: Option<u32>) -> Result<(), AgentError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|cause| AgentError::Workdir {
            path: dir.to_path_buf(),
            cause,
        })?;
    check_install(dir, &[], agent_user)
}

/// Removes the group and others write permissions from `root` and everything in it (symbolic
/// links are not followed), so a freshly unpacked archive cannot be changed by other users
/// whatever modes it carried.
pub(crate) fn remove_group_other_write(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut pending = vec![root.to_path_buf()];
    while let Some(p) = pending.pop() {
        let meta = std::fs::symlink_metadata(&p)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & !0o022))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&p)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Release {
    tag_name: String,
    #[serde(default)]
    body: Option<String>,
    assets: Vec<Asset>,
}

#[derive(Deserialize)]
struct Asset {
    name: String,
    browser_download_url: String,
}

/// Makes sure `dir` holds the agent (see the module contract).
pub async fn ensure_github_agent(
    dir: &Path,
    source: &ReleaseSource,
    agent_user: Option<u32>,
) -> Result<Installed, AgentError> {
    if is_installed(dir) {
        check_install(dir, GITHUB_EXECUTED, agent_user)?;
        return Ok(Installed::Existing);
    }
    prepare_workdir(dir, agent_user)?;
    let version_label = source.version.clone().unwrap_or_else(|| "latest".into());
    let url = match &source.version {
        Some(v) => format!("{}/tags/v{}", source.api, v.trim_start_matches('v')),
        None => format!("{}/latest", source.api),
    };
    let release_err = |reason: String| AgentError::Release {
        version: version_label.clone(),
        url: url.clone(),
        reason,
    };
    let client = http_client().map_err(release_err)?;
    let resp = client
        .get(&url)
        .header("accept", "application/vnd.github+json")
        .timeout(METADATA_TIMEOUT)
        .send()
        .await
        .map_err(|e| release_err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(release_err(format!("HTTP {}", resp.status())));
    }
    let release: Release = resp.json().await.map_err(|e| release_err(e.to_string()))?;
    let version = release.tag_name.trim_start_matches('v').to_string();
    let platform = platform().ok_or_else(|| AgentError::NoAsset {
        version: version.clone(),
        asset: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
    })?;
    let asset_name = format!("actions-runner-{platform}-{version}.tar.gz");
    let asset = release
        .assets
        .iter()
        .find(|a| a.name == asset_name)
        .ok_or_else(|| AgentError::NoAsset {
            version: version.clone(),
            asset: asset_name.clone(),
        })?;
    let expected = release
        .body
        .as_deref()
        .and_then(|b| published_sha256(b, &platform))
        .ok_or_else(|| AgentError::NoChecksum {
            version: version.clone(),
            platform: platform.clone(),
        })?;
    tracing::info!("downloading actions/runner {version} ({asset_name})");
    let partial = dir.join(format!(".{asset_name}.partial"));
    let actual = download(&client, &asset.browser_download_url, &partial).await;
    let actual = match actual {
        Ok(sha) => sha,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if !actual.eq_ignore_ascii_case(&expected) {
        let _ = std::fs::remove_file(&partial);
        return Err(AgentError::Checksum {
            asset: asset_name,
            expected,
            actual,
        });
    }
    let target = dir.to_path_buf();
    let archive = partial.clone();
    let unpacked = tokio::task::spawn_blocking(move || {
        unpack(&archive, &target).and_then(|()| remove_group_other_write(&target))
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r);
    let _ = std::fs::remove_file(&partial);
    unpacked.map_err(|cause| AgentError::Unpack {
        asset: asset_name.clone(),
        path: dir.to_path_buf(),
        cause,
    })?;
    for f in ["config.sh", "run.sh"] {
        if !dir.join(f).is_file() {
            return Err(AgentError::Incomplete {
                path: dir.to_path_buf(),
                missing: f.into(),
            });
        }
    }
    Ok(Installed::Downloaded { version })
}

/// The SHA-256 that actions/runner release notes publish for `platform` as
/// `<!-- BEGIN SHA linux-x64 -->HEX<!-- END SHA linux-x64 -->`.
pub fn published_sha256(body: &str, platform: &str) -> Option<String> {
    let begin = format!("<!-- BEGIN SHA {platform} -->");
    let end = format!("<!-- END SHA {platform} -->");
    let start = body.find(&begin)? + begin.len();
    let stop = start + body[start..].find(&end)?;
    let sha = body[start..stop].trim();
    (sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| sha.to_ascii_lowercase())
}

/// The HTTP client agent downloads use: [`CONNECT_TIMEOUT`], and [`STALL_TIMEOUT`] for each
/// read.
pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("cml/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(STALL_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())
}

/// Streams `url` into `path` (created readable and writable by its owner only), returning the
/// hex SHA-256 of what was written. Fails with [`AgentError::Stalled`] when the answer or
/// the next part of it does not come within [`STALL_TIMEOUT`]; the caller removes `path`.
pub(crate) async fn download(
    client: &reqwest::Client,
    url: &str,
    path: &PathBuf,
) -> Result<String, AgentError> {
    download_within(client, url, path, CONNECT_TIMEOUT, STALL_TIMEOUT).await
}

/// [`download`] with its timeouts given. They do not rely on the client's own: the answer's
/// headers must come within `connect + stall`, and each later part within `stall`, whatever
/// client is passed.
async fn download_within(
    client: &reqwest::Client,
    url: &str,
    path: &PathBuf,
    connect: Duration,
    stall: Duration,
) -> Result<String, AgentError> {
    let err = |reason: String| AgentError::Download {
        url: url.to_string(),
        reason,
    };
    let stalled = || AgentError::Stalled {
        url: url.to_string(),
        secs: stall.as_secs_f64(),
    };
    let mut resp = tokio::time::timeout(connect + stall, client.get(url).send())
        .await
        .map_err(|_| stalled())?
        .map_err(|e| {
            if e.is_timeout() {
                stalled()
            } else {
                err(e.to_string())
            }
        })?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(e.to_string()))?
    };
    let mut hasher = Sha256::new();
    loop {
        let chunk = tokio::time::timeout(stall, resp.chunk())
            .await
            .map_err(|_| stalled())?
            .map_err(|e| {
                if e.is_timeout() {
                    stalled()
                } else {
                    err(e.to_string())
                }
            })?;
        let Some(chunk) = chunk else { break };
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(|e| err(e.to_string()))?;
    }
    file.flush().map_err(|e| err(e.to_string()))?;
    Ok(hex::encode(hasher.finalize()))
}

pub(crate) fn unpack(archive: &Path, into: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    tar.set_preserve_permissions(true);
    tar.unpack(into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_published_checksum() {
        let sha = "a".repeat(64);
        let body = format!("notes\n- Linux x64 <!-- BEGIN SHA linux-x64 -->{sha}<!-- END SHA linux-x64 -->\n<!-- BEGIN SHA linux-arm64 -->zz<!-- END SHA linux-arm64 -->");
        assert_eq!(published_sha256(&body, "linux-x64"), Some(sha));
        assert_eq!(published_sha256(&body, "linux-arm64"), None, "not a sha");
        assert_eq!(published_sha256(&body, "osx-x64"), None);
    }

    /// A server that answers every connection with `head` and then sends nothing more,
    /// holding the connection open for `hold`.
    fn stalling_server(head: &'static str, hold: Duration) -> String {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/agent.tar.gz", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            if let Some(Ok(mut stream)) = listener.incoming().next() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.flush();
                std::thread::sleep(hold);
            }
        });
        url
    }

    #[test]
    fn a_download_that_stalls_after_its_headers_fails_within_the_bound() {
        let url = stalling_server(
            "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\nsome bytes",
            Duration::from_secs(30),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A client without any timeout of its own: the bound is the download's.
        let client = reqwest::Client::new();
        let started = std::time::Instant::now();
        let e = rt
            .block_on(download_within(
                &client,
                &url,
                &path,
                Duration::from_secs(1),
                Duration::from_secs(1),
            ))
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(e, AgentError::Stalled { .. }), "{e:?}");
        let shown = e.to_string();
        assert!(
            shown.contains("nothing was received for 1 s") && shown.contains("hint:"),
            "{shown}"
        );
        // What was received was written where only its owner can read it.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_server_that_never_answers_is_a_stall_too() {
        let url = stalling_server("", Duration::from_secs(30));
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let e = rt
            .block_on(download_within(
                &reqwest::Client::new(),
                &url,
                &dir.path().join("part"),
                Duration::from_secs(1),
                Duration::from_secs(1),
            ))
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(e, AgentError::Stalled { .. }), "{e:?}");
    }

    fn chmod(p: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A work directory with an actions/runner-like install, all owner-only writable.
    fn install_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path();
        chmod(w, 0o755);
        for f in ["config.sh", "run.sh", "env.sh"] {
            std::fs::write(w.join(f), "#!/bin/sh\n").unwrap();
            chmod(&w.join(f), 0o755);
        }
        std::fs::create_dir_all(w.join("bin/sub")).unwrap();
        std::fs::write(w.join("bin/Runner.Listener"), "").unwrap();
        std::fs::write(w.join("bin/sub/lib.so"), "").unwrap();
        std::fs::create_dir_all(w.join("_work/job")).unwrap();
        dir
    }

    fn refused(w: &Path) -> String {
        match check_install(w, GITHUB_EXECUTED, None) {
            Err(e @ AgentError::UnsafeInstall { .. }) => e.to_string(),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn an_install_others_can_change_is_refused_naming_the_path_and_the_fix() {
        let dir = install_tree();
        let w = dir.path();
        check_install(w, GITHUB_EXECUTED, None).unwrap();
        // The job workspace is not part of the agent: anything may be in it.
        chmod(&w.join("_work/job"), 0o777);
        check_install(w, GITHUB_EXECUTED, None).unwrap();
        for (path, mode, problem) in [
            ("run.sh", 0o757, "is writable by every user (mode 757)"),
            ("config.sh", 0o775, "is writable by its group (mode 775)"),
            ("bin", 0o777, "is writable by its group and every user"),
            ("bin/sub/lib.so", 0o666, "is writable by"),
            ("", 0o1777, "is writable by"),
        ] {
            let p = if path.is_empty() {
                w.to_path_buf()
            } else {
                w.join(path)
            };
            let before = std::fs::metadata(&p).unwrap();
            chmod(&p, mode);
            let e = refused(w);
            assert!(
                e.contains(&format!("{}: {} {problem}", w.display(), p.display())),
                "{path}: {e}"
            );
            assert!(
                e.contains(&format!(
                    "hint: if you trust its contents, run `chmod go-w {}`",
                    p.display()
                )),
                "{e}"
            );
            std::fs::set_permissions(&p, before.permissions()).unwrap();
            check_install(w, GITHUB_EXECUTED, None).unwrap();
        }
    }

    #[test]
    fn links_are_judged_by_their_targets_and_owners_must_be_this_user_root_or_the_agent_s_user() {
        let dir = install_tree();
        let w = dir.path();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("node");
        std::fs::write(&target, "").unwrap();
        chmod(&target, 0o755);
        std::os::unix::fs::symlink(&target, w.join("bin/node")).unwrap();
        check_install(w, GITHUB_EXECUTED, None).unwrap();
        chmod(&target, 0o757);
        let e = refused(w);
        assert!(e.contains("bin/node is writable by every user"), "{e}");
        chmod(&target, 0o755);

        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Root may hand a file to someone else: then it is refused.
            let p = std::ffi::CString::new(w.join("run.sh").to_str().unwrap()).unwrap();
            // SAFETY: `p` is a valid NUL-terminated path for the duration of the call.
            assert_eq!(unsafe { libc::chown(p.as_ptr(), 12345, 12345) }, 0);
            let e = refused(w);
            assert!(
                e.contains("run.sh belongs to user id 12345, not to this user (id 0) or root"),
                "{e}"
            );
            // Unless that someone is the user the agent runs as (a job user's own workdir):
            // whatever it changes only ever runs as itself. Anyone else is still refused.
            check_install(w, GITHUB_EXECUTED, Some(12345)).unwrap();
            assert!(check_install(w, GITHUB_EXECUTED, Some(54321)).is_err());
        }
    }

    #[test]
    fn a_fresh_install_is_made_owner_writable_only() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("new/workdir");
        prepare_workdir(&w, None).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&w).unwrap().permissions().mode() & 0o022,
            0
        );
        std::fs::create_dir_all(w.join("bin")).unwrap();
        std::fs::write(w.join("bin/x"), "").unwrap();
        chmod(&w.join("bin/x"), 0o777);
        chmod(&w.join("bin"), 0o777);
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        chmod(&outside, 0o777);
        std::os::unix::fs::symlink(&outside, w.join("bin/outside")).unwrap();
        remove_group_other_write(&w).unwrap();
        assert_eq!(
            std::fs::metadata(w.join("bin/x"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::metadata(w.join("bin"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        // The link's target was left alone.
        assert_eq!(
            std::fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
            0o777
        );
        // An existing directory others can write to is not installed into.
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        assert!(matches!(
            prepare_workdir(&open, None),
            Err(AgentError::UnsafeInstall { .. })
        ));
    }

    #[test]
    fn an_existing_install_is_used_without_network() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.sh"), "").unwrap();
        std::fs::write(dir.path().join("run.sh"), "").unwrap();
        let source = ReleaseSource {
            api: "http://127.0.0.1:9/unreachable".into(),
            version: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(
            rt.block_on(ensure_github_agent(dir.path(), &source, None))
                .unwrap(),
            Installed::Existing
        );
    }
}
