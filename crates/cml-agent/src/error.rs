//! Errors of agent installation, configuration and supervision.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "cannot create the runner work directory {path}: {cause}\nhint: pass a writable --workdir"
    )]
    Workdir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("looking up the actions/runner release {version} at {url} failed: {reason}\nhint: pin a version with --github-runner-version, or install the agent into the workdir yourself (config.sh and run.sh)")]
    Release {
        version: String,
        url: String,
        reason: String,
    },
    #[error("reading the gitlab-runner {version} checksums at {url} failed: {reason}\nhint: set CML_GITLAB_RUNNER_VERSION to an existing version (v17.5.0), or put a gitlab-runner executable into the workdir yourself")]
    GitlabRelease {
        version: String,
        url: String,
        reason: String,
    },
    #[error("the Bitbucket Linux Shell runner is not installed ({path} is missing) and no Docker engine answers\nhint: unpack the Linux Shell runner from Bitbucket (Repository settings > Runners > Add runner > Linux Shell) into the workdir, set CML_BITBUCKET_RUNNER_URL (and CML_BITBUCKET_RUNNER_SHA256) to its tarball (Atlassian publishes https://product-downloads.atlassian.com/software/bitbucket/pipelines/atlassian-bitbucket-pipelines-runner-VERSION.tar.gz, versions in CHANGELOG.md there), or start Docker")]
    NoShellRunner { path: PathBuf },
    #[error("the actions/runner release {version} has no package {asset}\nhint: this OS/architecture may not be supported by GitHub's runner")]
    NoAsset { version: String, asset: String },
    #[error("the actions/runner release {version} publishes no SHA-256 checksum for {platform}; refusing to install an unverified agent")]
    NoChecksum { version: String, platform: String },
    #[error("downloading {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error("downloading {url} stalled: nothing was received for {secs} s; the partial download was discarded\nhint: retry; if it persists, check the network and any proxy, or install the agent into the workdir yourself")]
    Stalled { url: String, secs: f64 },
    #[error("checksum mismatch for {asset}: expected {expected}, got {actual}; the download was discarded\nhint: retry; if it persists, the mirror or proxy is serving a different file")]
    Checksum {
        asset: String,
        expected: String,
        actual: String,
    },
    #[error("unpacking {asset} into {path} failed: {cause}")]
    Unpack {
        asset: String,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("refusing to run an agent from {workdir}: {path} {problem}, so another user could have changed what would run\nhint: if you trust its contents, run `chmod go-w {path}` (and `chown` it to this user if it is someone else's); otherwise pass a new --workdir to have the agent installed afresh")]
    UnsafeInstall {
        workdir: PathBuf,
        path: PathBuf,
        problem: String,
    },
    #[error("the agent in {path} is incomplete: {missing} is missing\nhint: remove the directory to have it installed again")]
    Incomplete { path: PathBuf, missing: String },
    #[error("cannot start {program}: {cause}")]
    Spawn {
        program: String,
        cause: std::io::Error,
    },
    #[error("the just-in-time runner configuration cannot be used: {reason}\nhint: it comes from the runner pool that launched this runner (CML_GITHUB_JIT_CONFIG); a new launch gets a new one")]
    JitConfig { reason: String },
    #[error("writing the just-in-time runner configuration into {path} failed: {cause}\nhint: pass a writable --workdir")]
    JitConfigWrite {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("configuring the runner failed (config.sh exited with {code}):\n{tail}")]
    Configure { code: String, tail: String },
    #[error("cannot run jobs as user {user}: {reason}\nhint: pass --cloud-job-user an existing user that is not root and is in none of the groups root, sudo, admin, wheel, docker (cloud machines create a missing user themselves), or leave it unset to run jobs as root")]
    JobUser { user: String, reason: String },
    #[error("cannot give the work directory {path} to user {user}: {cause}\nhint: cml must run as root to run jobs as another user")]
    JobUserWorkdir {
        path: PathBuf,
        user: String,
        cause: std::io::Error,
    },
}
