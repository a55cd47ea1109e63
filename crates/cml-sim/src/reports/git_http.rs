//! Repositories served over Git's smart HTTP protocol by `git http-backend`, with the forges'
//! token authentication: `https://host/<path>.git` as `git clone`/`git push` use it.
//!
//! A repository is served when `<SimConfig::git_root>/<path>.git` exists. Callers authenticate
//! with HTTP Basic: the password is a GitHub or GitLab token of the simulator, or the
//! user name and password are a Bitbucket credential. Read-only tokens may fetch, not push.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;

use crate::github::{Req, Resp, Shared};

/// Serves `req` if its path names a repository (`…/<name>.git/…`); `None` otherwise.
pub(crate) fn handle(sh: &Shared, req: &Req, segs: &[&str]) -> Option<Resp> {
    let at = segs.iter().position(|s| s.ends_with(".git"))?;
    let rest = &segs[at + 1..];
    let git_route = matches!(
        rest,
        ["info", "refs"] | ["git-upload-pack"] | ["git-receive-pack"] | ["HEAD"]
    );
    if !git_route {
        return None;
    }
    let root = sh.cfg.git_root.as_ref()?;
    let repo = segs[..=at].join("/");
    if !root.join(&repo).is_dir() {
        return Some(Resp::error(404, "Repository not found"));
    }
    let push = rest == ["git-receive-pack"] || req.param("service") == Some("git-receive-pack");
    let user = match authenticate(sh, req) {
        Some((user, writer)) if writer || !push => user,
        Some(_) => return Some(Resp::error(403, "Write access to repository not granted.")),
        None => {
            return Some(
                Resp::error(401, "Authentication required")
                    .header("www-authenticate", "Basic realm=\"cml-sim\""),
            )
        }
    };
    if rest == ["git-receive-pack"] {
        sh.reports().pushes.push((repo.clone(), user.clone()));
    }
    Some(backend(root, req, &format!("/{}", segs.join("/")), &user))
}

/// `(user, may write)` for a known credential.
fn authenticate(sh: &Shared, req: &Req) -> Option<(String, bool)> {
    let basic = req
        .headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?
        .trim()
        .to_string();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&basic)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())?;
    let (user, password) = decoded.split_once(':')?;
    let cfg = &sh.cfg;
    let known = cfg
        .pats
        .iter()
        .chain(cfg.gitlab.tokens.iter())
        .find(|p| p.token == password)
        .map(|p| p.admin)
        .or_else(|| {
            let minted = sh.lock().installation_tokens.contains_key(password);
            minted.then_some(true)
        })
        .or_else(|| {
            cfg.bitbucket
                .credentials
                .iter()
                .find(|c| c.token == basic)
                .map(|c| c.admin)
        })?;
    Some((user.to_string(), known))
}

/// Runs `git http-backend` as a CGI program for one request.
fn backend(root: &std::path::Path, req: &Req, path_info: &str, user: &str) -> Resp {
    let header = |k: &str| {
        req.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let child = Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path_info)
        .env("REQUEST_METHOD", req.method.as_str())
        .env("QUERY_STRING", &req.query)
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", req.body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Resp::error(500, &format!("git http-backend: {e}")),
    };
    // The body is written from another thread so a large answer cannot block the request.
    let body = req.body.to_vec();
    let stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(mut s) = stdin {
            let _ = s.write_all(&body);
        }
    });
    let out = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => return Resp::error(500, &format!("git http-backend: {e}")),
    };
    let _ = writer.join();
    cgi_response(&out.stdout)
}

/// A CGI answer (`Status:` and other headers, a blank line, the body) as a response.
fn cgi_response(out: &[u8]) -> Resp {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            out.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        });
    let Some((head_end, body_start)) = split else {
        return Resp::error(500, "git http-backend gave no headers");
    };
    let mut resp = Resp::bytes(out[body_start..].to_vec());
    for line in String::from_utf8_lossy(&out[..head_end]).lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            resp.status = v
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(500);
        } else {
            resp = resp.header(k.trim(), v);
        }
    }
    resp
}

/// The commit `refs/heads/<branch>` of the bare repository at `git_dir` points at.
pub(crate) fn branch_sha(git_dir: &std::path::Path, branch: &str) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["rev-parse", "--verify", "-q"])
        .arg(format!("refs/heads/{branch}^{{commit}}"))
        .output()
        .ok()?;
    let sha = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !sha.is_empty()).then_some(sha)
}
