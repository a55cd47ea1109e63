//! `cml ci`: prepare the checkout for the report commands and the user's own `git push`.
//!
//! It sets `user.name`/`user.email`, removes the token actions/checkout persists for
//! `https://github.com/` (it would be sent instead of ours), and stores our token as an
//! `http.<SCHEME://HOST[:PORT]/ of the forge>.extraHeader` in `.git/config`, which it makes
//! readable by the owner only. It does not touch the remote URL. With `--fetch-depth=N`, the
//! last N commits of history (and the tags) are fetched from the remote; with
//! `--fetch-depth=0` (or less) or `--unshallow`, a shallow checkout gets its full history.
//!
//! Guarantees: the token is stored for the forge's host only, and only when the remote is on
//! it (refused otherwise, before anything is written); no URL credential is printed.

use super::Git;
use crate::cli::CiArgs;
use crate::exit::Failure;
use crate::settings::ReportSettings;
use anyhow::anyhow;

/// What `cml ci` fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    Nothing,
    /// The full history, when the checkout is shallow.
    Unshallow,
    /// The last N commits.
    Depth(u64),
}

impl Fetch {
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Fetch::Nothing => serde_json::Value::Null,
            Fetch::Unshallow => "unshallow".into(),
            Fetch::Depth(n) => n.into(),
        }
    }
}

/// `--fetch-depth` (a number: 0 or less is the full history, as in CML), else `--unshallow`.
pub fn fetch(args: &CiArgs) -> Result<Fetch, Failure> {
    match args.fetch_depth.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => match d.parse::<i64>() {
            Ok(n) if n <= 0 => Ok(Fetch::Unshallow),
            Ok(n) => Ok(Fetch::Depth(n as u64)),
            Err(_) => Err(Failure::usage(anyhow!(
                "invalid --fetch-depth {d:?}: expected a number of commits\nhint: give a whole number, or 0 for the full history"
            ))),
        },
        None if args.unshallow == Some(true) => Ok(Fetch::Unshallow),
        None => Ok(Fetch::Nothing),
    }
}

/// Runs `cml ci`, fetching as `fetch` says.
pub async fn run(s: ReportSettings, args: CiArgs, fetch: Fetch) -> Result<i32, Failure> {
    let git = Git::new();
    let remote = args.remote.clone().unwrap_or_else(|| "origin".into());
    let checked = super::check_remote(&s, &remote)?;
    let git_dir = git
        .run(&["rev-parse", "--absolute-git-dir"])
        .map_err(Failure::error)?;
    let forge = super::connect(&s).await?;
    let authed = super::remote_git(forge.as_ref(), &checked).await?;
    let name = args
        .user_name
        .clone()
        .unwrap_or_else(|| super::pr::DEFAULT_USER_NAME.into());
    let email = args
        .user_email
        .clone()
        .unwrap_or_else(|| super::pr::DEFAULT_USER_EMAIL.into());
    // The config file holds the token from here on: owner-only before it is written.
    let config = std::path::Path::new(&git_dir).join("config");
    restrict(&config).map_err(Failure::error)?;
    git.run(&["config", "user.name", &name])
        .map_err(Failure::error)?;
    git.run(&["config", "user.email", &email])
        .map_err(Failure::error)?;
    let _ = git.try_run(&[
        "config",
        "--unset-all",
        "http.https://github.com/.extraheader",
    ]);
    match (&checked.scope, authed.secret()) {
        (Some(scope), Some(secret)) => {
            let key = format!("http.{scope}.extraheader");
            let _ = git.try_run(&["config", "--unset-all", &key]);
            let header = format!("Authorization: Basic {secret}");
            // The header goes in through the config file's own writer, not the command line.
            add_config_value(&config, scope, &header).map_err(Failure::error)?;
        }
        _ => tracing::warn!(
            remote = remote.as_str(),
            "the remote is not an http(s) URL: no token stored; git uses its own credentials (an ssh key) for it"
        ),
    }
    match fetch {
        Fetch::Nothing => {}
        Fetch::Unshallow => {
            if git
                .try_run(&["rev-parse", "--is-shallow-repository"])
                .as_deref()
                == Some("true")
            {
                authed
                    .run(&["fetch", "--tags", "--unshallow", &remote])
                    .map_err(|e| {
                        Failure::error(
                            e.context(format!("fetching the full history from {remote}")),
                        )
                    })?;
                tracing::info!("fetched the full history");
            }
        }
        Fetch::Depth(n) => {
            let depth = n.to_string();
            authed
                .run(&["fetch", "--tags", "--depth", &depth, &remote])
                .map_err(|e| {
                    Failure::error(e.context(format!("fetching {n} commits from {remote}")))
                })?;
            tracing::info!("fetched the last {n} commits");
        }
    }
    tracing::info!(
        remote = remote.as_str(),
        "git is set up: identity {name} <{email}>, token for {}",
        checked.scope.as_deref().unwrap_or("none")
    );
    Ok(0)
}

fn restrict(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| anyhow!("cannot make {} private: {e}", path.display()))
}

/// Appends `[http "URL"] extraheader = HEADER` to the config file.
fn add_config_value(config: &std::path::Path, url: &str, header: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(config)
        .map_err(|e| anyhow!("cannot write {}: {e}", config.display()))?;
    let quoted = url.replace('\\', "\\\\").replace('"', "\\\"");
    writeln!(f, "[http \"{quoted}\"]\n\textraheader = {header}")
        .map_err(|e| anyhow!("cannot write {}: {e}", config.display()))
}
