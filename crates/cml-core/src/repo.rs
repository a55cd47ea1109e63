//! Repository URLs, the forge driver they imply, and GitHub's scopes and API bases.

use std::fmt;

/// Which forge a repository lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Github,
    Gitlab,
    Bitbucket,
}

impl Driver {
    pub fn parse(s: &str) -> Result<Driver, RepoError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "github" => Ok(Driver::Github),
            "gitlab" => Ok(Driver::Gitlab),
            "bitbucket" => Ok(Driver::Bitbucket),
            other => Err(RepoError::UnknownDriver(other.to_string())),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Driver::Github => "github",
            Driver::Gitlab => "gitlab",
            Driver::Bitbucket => "bitbucket",
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    #[error("unknown driver {0:?}\nhint: use --driver github, gitlab or bitbucket")]
    UnknownDriver(String),
    #[error("cannot read repository URL {0:?}\nhint: give --repo as https://HOST/OWNER/REPO (or https://HOST/ORG for an organization runner)")]
    Malformed(String),
    #[error("repository URL {0:?} names no owner or organization\nhint: give --repo as https://HOST/OWNER/REPO (or https://HOST/ORG for an organization runner)")]
    NoPath(String),
    #[error("cannot tell the forge of {url:?}\nhint: pass --driver github|gitlab|bitbucket (or set CML_DRIVER)")]
    UnknownForge { url: String },
    #[error("a GitHub URL has at most an owner and a repository, got {0:?}")]
    GithubPathTooDeep(String),
}

/// A repository (or organization) web URL with credentials and `.git` removed.
///
/// Guarantees: `Display` never contains a user name, password or token, even when the input
/// (a `git remote` URL such as `https://x-access-token:TOKEN@github.com/o/r.git`) had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    /// `https` or `http`; ssh remotes become `https`.
    pub scheme: String,
    /// Host, with `:port` when one was given in an http(s) URL.
    pub host: String,
    /// Path segments: `[owner, repo]`, `[org]`, or deeper (GitLab groups).
    pub path: Vec<String>,
}

impl RepoUrl {
    /// Parses `https://[cred@]host[:port]/a/b[.git]`, `ssh://git@host[:port]/a/b.git` and
    /// scp-like `git@host:a/b.git`.
    pub fn parse(input: &str) -> Result<RepoUrl, RepoError> {
        let raw = input.trim();
        let malformed = || RepoError::Malformed(redact_credentials(raw));
        let (scheme, rest) = if let Some(r) = raw.strip_prefix("https://") {
            ("https", r)
        } else if let Some(r) = raw.strip_prefix("http://") {
            ("http", r)
        } else if let Some(r) = raw.strip_prefix("ssh://") {
            ("ssh", r)
        } else if let Some(r) = raw.strip_prefix("git+ssh://") {
            ("ssh", r)
        } else if raw.contains(':') && !raw.contains("://") {
            // scp-like: [user@]host:path
            let (hostpart, path) = raw.split_once(':').ok_or_else(malformed)?;
            let host = hostpart.rsplit('@').next().unwrap_or(hostpart);
            return RepoUrl::build("https", host, path, raw);
        } else {
            return Err(malformed());
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let hostport = authority.rsplit('@').next().unwrap_or(authority);
        let host = if scheme == "ssh" {
            // the ssh port says nothing about the web URL
            hostport.split(':').next().unwrap_or(hostport)
        } else {
            hostport
        };
        let scheme = if scheme == "ssh" { "https" } else { scheme };
        RepoUrl::build(scheme, host, path, raw)
    }

    fn build(scheme: &str, host: &str, path: &str, raw: &str) -> Result<RepoUrl, RepoError> {
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(RepoError::Malformed(redact_credentials(raw)));
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let mut segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(last) = segs.last_mut() {
            if let Some(stripped) = last.strip_suffix(".git") {
                *last = stripped.to_string();
            }
        }
        segs.retain(|s| !s.is_empty());
        if segs.is_empty() {
            return Err(RepoError::NoPath(redact_credentials(raw)));
        }
        Ok(RepoUrl {
            scheme: scheme.to_string(),
            host: host.to_ascii_lowercase(),
            path: segs,
        })
    }

    /// Host without a port.
    pub fn hostname(&self) -> &str {
        self.host.split(':').next().unwrap_or(&self.host)
    }

    /// The forge implied by the host name alone (`github.com`, `gitlab.com`, `bitbucket.org`,
    /// or a host whose name contains one of `github`, `gitlab`, `bitbucket`), as CML does.
    pub fn driver_from_host(&self) -> Option<Driver> {
        let h = self.hostname();
        if h.contains("github") {
            Some(Driver::Github)
        } else if h.contains("gitlab") {
            Some(Driver::Gitlab)
        } else if h.contains("bitbucket") {
            Some(Driver::Bitbucket)
        } else {
            None
        }
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/{}", self.scheme, self.host, self.path.join("/"))
    }
}

/// Removes `user:pass@` from a URL-ish string, for error messages.
pub fn redact_credentials(s: &str) -> String {
    match (s.find("://"), s.find('@')) {
        (Some(i), Some(at)) if at > i => format!("{}://{}", &s[..i], &s[at + 1..]),
        _ => s.to_string(),
    }
}

/// Chooses the driver: `--driver` if given, else the repo host, else the CI environment
/// (`GITHUB_REPOSITORY` → GitHub, `CI_PROJECT_URL` → GitLab, `BITBUCKET_REPO_UUID` →
/// Bitbucket), in CML's order. `env` looks a variable up.
pub fn infer_driver(
    explicit: Option<Driver>,
    repo: &RepoUrl,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Driver, RepoError> {
    if let Some(d) = explicit {
        return Ok(d);
    }
    if let Some(d) = repo.driver_from_host() {
        return Ok(d);
    }
    let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    if set("GITHUB_REPOSITORY") {
        Ok(Driver::Github)
    } else if set("CI_PROJECT_URL") {
        Ok(Driver::Gitlab)
    } else if set("BITBUCKET_REPO_UUID") {
        Ok(Driver::Bitbucket)
    } else {
        Err(RepoError::UnknownForge {
            url: repo.to_string(),
        })
    }
}

/// Where a GitHub runner is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GithubScope {
    Repo { owner: String, repo: String },
    Org { org: String },
}

impl GithubScope {
    /// `https://github.com/o/r` → repository scope; `https://github.com/o` → organization.
    pub fn from_url(url: &RepoUrl) -> Result<GithubScope, RepoError> {
        match url.path.as_slice() {
            [org] => Ok(GithubScope::Org { org: org.clone() }),
            [owner, repo] => Ok(GithubScope::Repo {
                owner: owner.clone(),
                repo: repo.clone(),
            }),
            _ => Err(RepoError::GithubPathTooDeep(url.to_string())),
        }
    }

    /// The REST path prefix: `/repos/{o}/{r}` or `/orgs/{org}`.
    pub fn api_prefix(&self) -> String {
        match self {
            GithubScope::Repo { owner, repo } => format!("/repos/{owner}/{repo}"),
            GithubScope::Org { org } => format!("/orgs/{org}"),
        }
    }
}

impl fmt::Display for GithubScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GithubScope::Repo { owner, repo } => write!(f, "repository {owner}/{repo}"),
            GithubScope::Org { org } => write!(f, "organization {org}"),
        }
    }
}

/// GitHub's REST base for a web URL: `github.com` → `https://api.github.com`; any other host
/// is GitHub Enterprise Server at `{scheme}://{host}/api/v3` (plain http allowed).
pub fn github_api_base(url: &RepoUrl) -> String {
    if url.hostname() == "github.com" || url.hostname() == "www.github.com" {
        "https://api.github.com".to_string()
    } else {
        format!("{}://{}/api/v3", url.scheme, url.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_remote_forms_and_strips_credentials() {
        for (input, want) in [
            (
                "https://github.com/iterative/cml",
                "https://github.com/iterative/cml",
            ),
            (
                "https://github.com/iterative/cml.git",
                "https://github.com/iterative/cml",
            ),
            (
                "https://x-access-token:ghs_SECRET@github.com/o/r.git",
                "https://github.com/o/r",
            ),
            ("git@github.com:o/r.git", "https://github.com/o/r"),
            ("ssh://git@github.com:22/o/r.git", "https://github.com/o/r"),
            ("http://127.0.0.1:8080/o/r/", "http://127.0.0.1:8080/o/r"),
            ("https://GitHub.com/myorg", "https://github.com/myorg"),
        ] {
            let u = RepoUrl::parse(input).unwrap();
            assert_eq!(u.to_string(), want, "{input}");
        }
    }

    #[test]
    fn malformed_urls_never_echo_credentials() {
        let e = RepoUrl::parse("https://user:ghp_SECRET@github.com").unwrap_err();
        assert!(!e.to_string().contains("ghp_SECRET"), "{e}");
        assert!(RepoUrl::parse("not a url").is_err());
    }

    #[test]
    fn driver_from_host_then_env() {
        let gh = RepoUrl::parse("https://github.com/o/r").unwrap();
        assert_eq!(infer_driver(None, &gh, |_| None).unwrap(), Driver::Github);
        let local = RepoUrl::parse("http://127.0.0.1:1/o/r").unwrap();
        assert!(infer_driver(None, &local, |_| None).is_err());
        let env = |k: &str| (k == "CI_PROJECT_URL").then(|| "x".to_string());
        assert_eq!(infer_driver(None, &local, env).unwrap(), Driver::Gitlab);
        assert_eq!(
            infer_driver(Some(Driver::Bitbucket), &gh, |_| None).unwrap(),
            Driver::Bitbucket
        );
        assert!(Driver::parse("svn")
            .unwrap_err()
            .to_string()
            .contains("hint:"));
    }

    #[test]
    fn github_scopes_and_api_bases() {
        let repo = RepoUrl::parse("https://github.com/o/r").unwrap();
        assert_eq!(github_api_base(&repo), "https://api.github.com");
        assert_eq!(
            GithubScope::from_url(&repo).unwrap().api_prefix(),
            "/repos/o/r"
        );
        let org = RepoUrl::parse("https://ghe.example.com/acme").unwrap();
        assert_eq!(github_api_base(&org), "https://ghe.example.com/api/v3");
        assert_eq!(
            GithubScope::from_url(&org).unwrap().api_prefix(),
            "/orgs/acme"
        );
        let local = RepoUrl::parse("http://127.0.0.1:9000/o/r").unwrap();
        assert_eq!(github_api_base(&local), "http://127.0.0.1:9000/api/v3");
        let deep = RepoUrl::parse("https://github.com/a/b/c").unwrap();
        assert!(GithubScope::from_url(&deep).is_err());
    }
}
