//! Configuration of the simulated GitHub server and injectable faults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Admin personal access token accepted by a server built with [`SimConfig::new`].
pub const DEFAULT_PAT: &str = "ghp_simulatoradmintoken";

/// Everything a [`crate::SimServer`] needs to know at start.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Accepted personal access tokens.
    pub pats: Vec<Pat>,
    /// GitHub App accepted for JWT authentication, if any.
    pub app: Option<AppConfig>,
    /// The `cml-sim` executable the agent tarball's scripts `exec`.
    pub agent_exe: PathBuf,
    /// Lifetime of installation access tokens (GitHub: 1 hour).
    pub installation_token_ttl: Duration,
    /// A runner whose agent did not poll within this long is `offline`.
    pub offline_after: Duration,
    /// Serve agent tarballs whose sha256 differs from the one in the release notes.
    pub tamper_download: bool,
    /// The simulated GitLab.
    pub gitlab: crate::gitlab::Config,
    /// The simulated Bitbucket Cloud.
    pub bitbucket: crate::bitbucket::Config,
    /// Bare repositories served over Git's HTTP protocol (`<git_root>/<path>.git`), on
    /// every forge's host.
    pub git_root: Option<PathBuf>,
    /// GitHub branches with required checks: auto-merge can be scheduled for pull requests
    /// into them; into any other branch GitHub answers that the pull request is in clean
    /// status (mergeable now).
    pub protected_branches: Vec<String>,
    /// How long the Actions service holds a message-queue `GET` open when it has nothing to
    /// deliver before answering 202 (the real service: about 50 s).
    pub actions_message_wait: Duration,
    /// Lifetime of the Actions service admin tokens the runner-registration exchange mints
    /// (the `exp` claim of the JWT; the real service: about 1 h).
    pub actions_admin_token_ttl: Duration,
    /// A message session no listener used for this long is dropped (its listener died).
    pub actions_session_expiry: Duration,
    /// Whether the runner scale-set protocol is offered; when not, the runner-registration
    /// exchange answers 404, as GitHub Enterprise Server versions without it do.
    pub actions_scale_sets: bool,
}

impl SimConfig {
    /// Defaults: one admin PAT ([`DEFAULT_PAT`]), no App, 1 h installation tokens,
    /// runners offline after 2 s without a poll, genuine downloads; the Actions service
    /// long-polls 10 s, mints 1 h admin tokens and drops sessions unused for 2 min.
    pub fn new(agent_exe: impl Into<PathBuf>) -> Self {
        SimConfig {
            pats: vec![Pat {
                token: DEFAULT_PAT.to_string(),
                admin: true,
            }],
            app: None,
            agent_exe: agent_exe.into(),
            installation_token_ttl: Duration::from_secs(3600),
            offline_after: Duration::from_secs(2),
            tamper_download: false,
            gitlab: Default::default(),
            bitbucket: Default::default(),
            git_root: None,
            protected_branches: Vec::new(),
            actions_message_wait: Duration::from_secs(10),
            actions_admin_token_ttl: Duration::from_secs(3600),
            actions_session_expiry: Duration::from_secs(120),
            actions_scale_sets: true,
        }
    }
}

/// A personal access token; `admin: false` makes runner routes, and every write of the report
/// routes (comments, pull requests, checks, uploads, pushes), answer 403.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pat {
    pub token: String,
    pub admin: bool,
}

/// A GitHub App: JWTs must be RS256-signed by the key matching `public_key_pem`, `iss` = `app_id`.
#[derive(Clone, Debug)]
pub struct AppConfig {
    pub app_id: u64,
    pub public_key_pem: String,
    pub installation_id: u64,
}

/// A queued fault: the next `times` requests matching `method` (if set) and whose path contains
/// `path_contains` (if set) get `status` with a GitHub-like JSON message instead of an answer.
/// With `after_serving`, the request is carried out first (it takes effect) and only its
/// answer is replaced — a lost answer; `status` 0 then keeps the real answer, and `delay_ms`
/// holds any answer back (the server keeps serving other requests meanwhile).
/// Agent-internal and admin routes (`/_sim/agent/…`, `/_sim/jobs`, `/_sim/state`) are never faulted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path_contains: Option<String>,
    pub status: u16,
    /// Seconds, sent as `retry-after`.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Sends `x-ratelimit-remaining: 0` and `x-ratelimit-reset: now + N` (unix seconds).
    #[serde(default)]
    pub ratelimit_reset_in: Option<u64>,
    #[serde(default = "one")]
    pub times: u32,
    /// Carry the request out, then answer `status` (0: the real answer).
    #[serde(default)]
    pub after_serving: bool,
    /// Milliseconds to wait before answering.
    #[serde(default)]
    pub delay_ms: u64,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// A fault answering `status` once to any request.
    pub fn status(status: u16) -> Self {
        Fault {
            status,
            times: 1,
            ..Fault::default()
        }
    }
    /// Only requests with this HTTP method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_string());
        self
    }
    /// Only requests whose path contains `s`.
    pub fn path_contains(mut self, s: &str) -> Self {
        self.path_contains = Some(s.to_string());
        self
    }
    /// Send `retry-after: secs`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    /// Send exhausted primary rate-limit headers resetting in `secs`.
    pub fn ratelimit_reset_in(mut self, secs: u64) -> Self {
        self.ratelimit_reset_in = Some(secs);
        self
    }
    /// Apply to `n` requests.
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }
    /// Carry the request out first, then answer `status`: the work is done, the answer lost.
    pub fn after_serving(mut self) -> Self {
        self.after_serving = true;
        self
    }
    /// Carry the request out and answer it normally, `ms` milliseconds late.
    pub fn delayed_answer(ms: u64) -> Self {
        Fault {
            status: 0,
            times: 1,
            after_serving: true,
            delay_ms: ms,
            ..Fault::default()
        }
    }
}
