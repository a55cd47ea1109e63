//! What the report commands write, on every simulated forge: comments on commits, pull
//! requests and issues; pull (merge) requests; uploaded files; GitHub check runs and the
//! commits of GitHub's Git data API; and repositories served over Git's smart HTTP protocol.
//!
//! One store holds it all, keyed by forge and repository, so tests read it the same way for
//! each forge. Each forge's routes ([`github`], [`gitlab`], [`bitbucket`]) speak that forge's
//! JSON over it.
//!
//! Tokens: a token configured with `admin: false` is read-only here: it may read, and every
//! write answers 403 the way its forge does.

pub(crate) mod bitbucket;
pub(crate) mod git_http;
pub(crate) mod github;
pub(crate) mod gitlab;
pub(crate) mod multipart;

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::github::Shared;
use crate::SimServer;

/// Which simulated forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ForgeKind {
    Github,
    Gitlab,
    Bitbucket,
}

/// What a comment is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentOn {
    Commit(String),
    Pull(u64),
    Issue(u64),
}

/// A comment, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimComment {
    pub id: u64,
    /// The GitLab discussion holding a commit note (0 elsewhere).
    pub discussion: u64,
    pub on: CommentOn,
    pub body: String,
    /// How many times it was edited.
    pub edits: u32,
}

/// A pull (merge) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPull {
    pub number: u64,
    pub source: String,
    pub target: String,
    pub title: String,
    pub body: String,
    /// The source branch's commit when it was opened.
    pub head_sha: String,
    /// `open`, `merged` or `closed`.
    pub state: String,
    /// Auto-merge asked for: `merge`, `squash`, `rebase` (GitHub, GitLab), or the strategy a
    /// Bitbucket merge used.
    pub auto_merge: Option<String>,
}

impl SimPull {
    /// A pull request to open.
    pub fn new(source: &str, target: &str, title: &str, body: &str, head_sha: &str) -> SimPull {
        SimPull {
            number: 0,
            source: source.into(),
            target: target.into(),
            title: title.into(),
            body: body.into(),
            head_sha: head_sha.into(),
            state: "open".into(),
            auto_merge: None,
        }
    }
}

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUpload {
    pub name: String,
    pub bytes: Vec<u8>,
    pub mime: String,
    /// The URL the forge answered, where the simulator serves the bytes back.
    pub url: String,
}

/// A GitHub check run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCheck {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub title: String,
    pub summary: String,
}

/// One repository's report objects.
#[derive(Debug, Default, Clone)]
pub struct RepoReports {
    pub comments: Vec<SimComment>,
    pub pulls: Vec<SimPull>,
    pub issues: Vec<u64>,
    pub uploads: Vec<SimUpload>,
    pub checks: Vec<SimCheck>,
    /// Git data objects (GitHub): blobs, trees (path → blob sha) and commits, by sha.
    pub blobs: BTreeMap<String, Vec<u8>>,
    pub trees: BTreeMap<String, BTreeMap<String, String>>,
    pub commits: BTreeMap<String, (String, Vec<String>)>,
    pub refs: BTreeMap<String, String>,
}

/// Every repository's report objects.
#[derive(Debug, Default)]
pub struct Store {
    pub repos: BTreeMap<(ForgeKind, String), RepoReports>,
    next_id: u64,
    /// Pushes received over Git's HTTP protocol: (repository, user name).
    pub pushes: Vec<(String, String)>,
}

impl Store {
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn repo(&mut self, forge: ForgeKind, repo: &str) -> &mut RepoReports {
        self.repos.entry((forge, repo.to_string())).or_default()
    }

    /// The next pull request or issue number of a repository (they share a sequence, as on
    /// GitHub).
    pub fn next_number(&mut self, forge: ForgeKind, repo: &str) -> u64 {
        let r = self.repo(forge, repo);
        r.pulls
            .iter()
            .map(|p| p.number)
            .chain(r.issues.iter().copied())
            .max()
            .unwrap_or(0)
            + 1
    }

    pub fn add_comment(
        &mut self,
        forge: ForgeKind,
        repo: &str,
        on: CommentOn,
        body: String,
    ) -> SimComment {
        let id = self.next_id();
        let discussion = if forge == ForgeKind::Gitlab && matches!(on, CommentOn::Commit(_)) {
            self.next_id()
        } else {
            0
        };
        let c = SimComment {
            id,
            discussion,
            on,
            body,
            edits: 0,
        };
        self.repo(forge, repo).comments.push(c.clone());
        c
    }

    /// Edits comment `id` on `on`; `None` when there is no such comment there.
    pub fn edit_comment(
        &mut self,
        forge: ForgeKind,
        repo: &str,
        on: Option<&CommentOn>,
        id: u64,
        body: String,
    ) -> Option<SimComment> {
        let c = self
            .repo(forge, repo)
            .comments
            .iter_mut()
            .find(|c| c.id == id && on.is_none_or(|o| &c.on == o))?;
        c.body = body;
        c.edits += 1;
        Some(c.clone())
    }

    pub fn comments_on(&mut self, forge: ForgeKind, repo: &str, on: &CommentOn) -> Vec<SimComment> {
        self.repo(forge, repo)
            .comments
            .iter()
            .filter(|c| &c.on == on)
            .cloned()
            .collect()
    }

    /// Whether the pull request or issue a comment is on exists (commits always do).
    pub fn exists(&mut self, forge: ForgeKind, repo: &str, on: &CommentOn) -> bool {
        let r = self.repo(forge, repo);
        match on {
            CommentOn::Commit(_) => true,
            CommentOn::Pull(n) => r.pulls.iter().any(|p| p.number == *n),
            CommentOn::Issue(n) => r.issues.contains(n),
        }
    }

    /// Opens `pull` (its number is assigned, its state is `open`); `None` when one is open
    /// for the same branches already.
    pub fn open_pull(
        &mut self,
        forge: ForgeKind,
        repo: &str,
        mut pull: SimPull,
    ) -> Option<SimPull> {
        if self
            .repo(forge, repo)
            .pulls
            .iter()
            .any(|p| p.state == "open" && p.source == pull.source && p.target == pull.target)
        {
            return None;
        }
        pull.number = self.next_number(forge, repo);
        pull.state = "open".into();
        pull.auto_merge = None;
        self.repo(forge, repo).pulls.push(pull.clone());
        Some(pull)
    }

    pub fn pull_mut(&mut self, forge: ForgeKind, repo: &str, number: u64) -> Option<&mut SimPull> {
        self.repo(forge, repo)
            .pulls
            .iter_mut()
            .find(|p| p.number == number)
    }

    /// Stores an upload served at `url`.
    pub fn add_upload(&mut self, forge: ForgeKind, repo: &str, upload: SimUpload) {
        let r = self.repo(forge, repo);
        r.uploads.retain(|u| u.url != upload.url);
        r.uploads.push(upload);
    }

    /// The stored file at `url`, on any forge.
    pub fn upload_at(&self, url: &str) -> Option<&SimUpload> {
        self.repos
            .values()
            .flat_map(|r| r.uploads.iter())
            .find(|u| u.url == url)
    }
}

/// One page of `items` for a request's `page` and `per_page` (or Bitbucket's `pagelen`)
/// parameters (defaults: page 1, `default_size` items, at most 100): the page's items and the
/// next page's number, if any.
pub(crate) fn paginate<T: Clone>(
    items: &[T],
    req: &crate::github::Req,
    default_size: usize,
) -> (Vec<T>, Option<usize>) {
    let size = req
        .param("per_page")
        .or_else(|| req.param("pagelen"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_size)
        .clamp(1, 100);
    let page: usize = req
        .param("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let out: Vec<T> = items
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .cloned()
        .collect();
    let next = (page * size < items.len()).then_some(page + 1);
    (out, next)
}

/// `url` (absolute, with its query) with `page=N` set.
pub(crate) fn with_page(url: &str, page: usize) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("page="))
        .map(str::to_string)
        .collect();
    params.push(format!("page={page}"));
    format!("{path}?{}", params.join("&"))
}

/// A content hash standing in for Git object ids (40 hex digits).
pub fn object_id(kind: &str, data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(data);
    hex::encode(h.finalize())[..40].to_string()
}

impl Shared {
    pub(crate) fn reports(&self) -> std::sync::MutexGuard<'_, Store> {
        self.reports.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What tests read and seed.
impl SimServer {
    /// Comments of a repository (`owner/repo`, `group/project`, `workspace/slug`), oldest first.
    pub fn comments(&self, forge: ForgeKind, repo: &str) -> Vec<SimComment> {
        self.shared.reports().repo(forge, repo).comments.clone()
    }

    /// Pull (merge) requests of a repository.
    pub fn pulls(&self, forge: ForgeKind, repo: &str) -> Vec<SimPull> {
        self.shared.reports().repo(forge, repo).pulls.clone()
    }

    /// Files uploaded to a repository (GitLab uploads, Bitbucket downloads, GitHub asset
    /// commits).
    ///
    /// On GitHub these are the files of the `cml-assets` branch, at its head commit.
    pub fn uploads(&self, forge: ForgeKind, repo: &str) -> Vec<SimUpload> {
        let base = self.url();
        let mut st = self.shared.reports();
        let r = st.repo(forge, repo);
        if forge != ForgeKind::Github {
            return r.uploads.clone();
        }
        let Some(head) = r.refs.get("heads/cml-assets") else {
            return Vec::new();
        };
        let tree = r.commits.get(head).and_then(|(t, _)| r.trees.get(t));
        tree.into_iter()
            .flatten()
            .map(|(path, blob)| SimUpload {
                name: path.rsplit('/').next().unwrap_or(path).to_string(),
                bytes: r.blobs.get(blob).cloned().unwrap_or_default(),
                mime: String::new(),
                url: format!("{base}/{repo}/raw/{head}/{path}"),
            })
            .collect()
    }

    /// Check runs of a GitHub repository.
    pub fn checks(&self, repo: &str) -> Vec<SimCheck> {
        self.shared
            .reports()
            .repo(ForgeKind::Github, repo)
            .checks
            .clone()
    }

    /// Opens a pull request from `source` (at commit `head_sha`) into `target`; its number.
    pub fn open_pull(
        &self,
        forge: ForgeKind,
        repo: &str,
        source: &str,
        target: &str,
        head_sha: &str,
    ) -> u64 {
        let mut st = self.shared.reports();
        let pull = SimPull::new(source, target, "Seeded", "", head_sha);
        st.open_pull(forge, repo, pull)
            .map(|p| p.number)
            .unwrap_or(0)
    }

    /// Opens an issue; its number.
    pub fn open_issue(&self, forge: ForgeKind, repo: &str) -> u64 {
        let mut st = self.shared.reports();
        let n = st.next_number(forge, repo);
        st.repo(forge, repo).issues.push(n);
        n
    }

    /// Pushes received over Git's HTTP protocol: (repository path, user name).
    pub fn git_pushes(&self) -> Vec<(String, String)> {
        self.shared.reports().pushes.clone()
    }

    /// Where repositories served over HTTP live (`<root>/<path>.git`), if configured.
    pub fn git_root(&self) -> Option<PathBuf> {
        self.shared.cfg.git_root.clone()
    }
}

/// Serves the files the forges' upload routes answered URLs for: GitHub `raw` URLs of asset
/// commits, GitLab project uploads, Bitbucket downloads. `None` for any other request.
pub(crate) fn web(
    sh: &Shared,
    req: &crate::github::Req,
    segs: &[&str],
) -> Option<crate::github::Resp> {
    use crate::github::Resp;
    let stored_file = match (req.method.as_str(), segs) {
        ("POST", ["_sim", "assets"]) => return Some(asset_server(sh, req)),
        ("GET", ["_sim", "assets", ..]) => true,
        ("GET", [first, ..]) if matches!(*first, "api" | "2.0" | "_sim") => false,
        ("GET", [owner, repo, "raw", commit, path @ ..]) if !path.is_empty() => {
            return Some(github::raw(sh, owner, repo, commit, path))
        }
        ("GET", _) => segs.iter().any(|s| matches!(*s, "uploads" | "downloads")),
        _ => false,
    };
    if !stored_file {
        return None;
    }
    let url = format!(
        "{}{}",
        sh.base_url,
        crate::util::percent_decode(&req.raw_path)
    );
    Some(match sh.reports().upload_at(&url) {
        Some(u) => Resp::bytes(u.bytes.clone()).header("content-type", u.mime.clone()),
        None => Resp::not_found(),
    })
}

/// A stand-in for CML's asset server: `POST /_sim/assets` with the file as the body answers
/// the URL (text) where [`web`] serves it back with its `Content-Type`.
fn asset_server(sh: &Shared, req: &crate::github::Req) -> crate::github::Resp {
    let header = |k: &str| {
        req.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let name = header("content-disposition")
        .split("filename=")
        .nth(1)
        .map(|n| n.trim_matches('"').to_string())
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .unwrap_or_else(|| "file".into());
    let id = object_id("asset", &req.body);
    let url = format!("{}/_sim/assets/{id}/{name}", sh.base_url);
    sh.reports().add_upload(
        ForgeKind::Github,
        "_assets",
        SimUpload {
            name,
            bytes: req.body.to_vec(),
            mime: header("content-type"),
            url: url.clone(),
        },
    );
    let mut r = crate::github::Resp::bytes(url.into_bytes());
    r.content_type = "text/plain";
    r.status = 201;
    r
}
