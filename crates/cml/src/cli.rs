//! Every command-line argument of `cml`, in one place.
//!
//! Declaring an option here is all it takes: [`crate::options::parse`] gives it CML's forms
//! and its environment variables by rule. Conventions:
//! - an option is an `Option` (or a `Vec`), so that "given" and "not given" differ;
//! - a boolean is `Option<bool>` with a plain `#[arg(long)]`: it then takes `--x`,
//!   `--x=true|false`, `--x true|false` and `--no-x`, and its variables' `true` / other;
//! - a `Vec` with `num_args = 1..` takes several values after one flag and repeated flags
//!   (CML's array options); a plain `Vec` takes one value per flag, repeatable;
//! - positional arguments come from the command line only;
//! - help texts name no variable: `[env: ...]` is added from the same table the values are
//!   read through ([`crate::options::variables`]).
//!
//! Values given on the command line win over the variables, which win over the defaults
//! [`crate::settings`] applies.

use crate::options::Sources;
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cml",
    version,
    about = "Self-hosted CI runners on this machine or in the cloud, drop-in compatible with CML",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// Log level: error, warn, info or debug [default: info]
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log: Option<String>,
    /// Forge: github, gitlab or bitbucket [default: inferred from --repo or the CI environment]
    #[arg(long, global = true, value_name = "DRIVER")]
    pub driver: Option<String>,
    /// Repository URL, or an organization URL for an organization runner [default: report commands: the CI's repository, then the `origin` remote; runner: the `origin` remote]
    #[arg(long, global = true, value_name = "URL")]
    pub repo: Option<String>,
    /// Forge token; when neither it nor its variables are set: a GitHub App (CML_GITHUB_APP_ID and CML_GITHUB_APP_PEM), then REPO_TOKEN, repo_token, GITHUB_TOKEN, GITLAB_TOKEN, BITBUCKET_TOKEN
    #[arg(
        long = "driver-token",
        visible_alias = "token",
        global = true,
        value_name = "TOKEN"
    )]
    pub driver_token: Option<String>,
    /// Which variable each option not given on the command line came from (filled by
    /// [`crate::options::parse`]), to name it in messages.
    #[arg(skip)]
    pub sources: Sources,
}

// Parsed once per process: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch and supervise a self-hosted runner (`cml runner` = `cml runner launch`)
    #[command(args_conflicts_with_subcommands = true)]
    Runner {
        #[command(subcommand)]
        sub: Option<RunnerCommand>,
        #[command(flatten)]
        args: Box<RunnerArgs>,
    },
    /// Post a Markdown report as a comment on a pull request, commit or issue
    Comment {
        #[command(subcommand)]
        sub: CommentCommand,
    },
    /// Old name of `cml comment create`
    SendComment(CommentArgs),
    /// Report on a commit as a GitHub check run
    Check {
        #[command(subcommand)]
        sub: CheckCommand,
    },
    /// Old name of `cml check create`
    SendGithubCheck(CheckArgs),
    /// Publish files for reports
    Asset {
        #[command(subcommand)]
        sub: AssetCommand,
    },
    /// Old name of `cml asset publish`
    Publish(PublishArgs),
    /// Open a pull request with changed files (`cml pr GLOBS` = `cml pr create GLOBS`)
    #[command(args_conflicts_with_subcommands = true)]
    Pr {
        #[command(subcommand)]
        sub: Option<PrCommand>,
        #[command(flatten)]
        args: PrArgs,
    },
    /// Prepare the Git checkout: identity, token-authenticated remote, full history
    Ci(CiArgs),
    /// Repository commands (`cml repo prepare` is `cml ci`)
    Repo {
        #[command(subcommand)]
        sub: RepoCommand,
    },
    /// Workflow runs and pipelines
    Workflow {
        #[command(subcommand)]
        sub: WorkflowCommand,
    },
    /// Old name of `cml workflow rerun`
    #[command(hide = true)]
    RerunWorkflow(WorkflowRerunArgs),
    /// TensorBoard.dev links (the service was shut down on 1 January 2024)
    Tensorboard {
        #[command(subcommand)]
        sub: TensorboardCommand,
    },
    /// Old name of `cml tensorboard connect`
    #[command(hide = true)]
    TensorboardDev(TensorboardArgs),
    /// Any other `cml NAME ARGS...` runs the program `cml-NAME` found on PATH with ARGS
    #[command(external_subcommand)]
    External(Vec<String>),
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Prepare the Git checkout (the same as `cml ci`)
    Prepare(CiArgs),
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Re-run a workflow run (GitHub: cancelled first if it has not completed), or a pipeline (GitLab: cancelled first if active, then retried; Bitbucket: a new pipeline on the same target)
    Rerun(WorkflowRerunArgs),
}

/// `cml workflow rerun` options.
#[derive(Debug, Args, Clone, Default)]
pub struct WorkflowRerunArgs {
    /// Run to re-run: a GitHub workflow run id, a GitLab pipeline id, a Bitbucket pipeline {uuid} [default: this CI run: GITHUB_RUN_ID, CI_PIPELINE_ID, BITBUCKET_PIPELINE_UUID]
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TensorboardCommand {
    /// Upload logs to TensorBoard.dev and print a link (the service no longer exists: exits 1)
    Connect(TensorboardArgs),
}

/// `cml tensorboard connect` options, accepted as CML accepts them; the command only says that
/// the service is gone.
#[derive(Debug, Args, Clone, Default)]
pub struct TensorboardArgs {
    /// CML's options (--credentials, --logdir, --name, --description, --md, --title, --file)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "OPTIONS"
    )]
    pub options: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum CommentCommand {
    /// Post a Markdown file as a comment
    Create(CommentArgs),
    /// Update our last comment (`create --update`), or post one if there is none
    Update(CommentArgs),
}

/// `cml comment create|update` options.
#[derive(Debug, Args, Clone, Default)]
pub struct CommentArgs {
    /// Markdown file to post
    #[arg(value_name = "MARKDOWN_FILE")]
    pub markdown_file: String,
    /// Where: auto, pr, commit, commit/SHA, pr/N or issue/N; auto is the current pull request, else the open pull request containing the commit, else the commit [default: auto]
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Same as --target=pr (CML's older option)
    #[arg(long, hide = true)]
    pub pr: Option<bool>,
    /// Commit to comment on or look pull requests up by [default: the CI's commit (GITHUB_SHA, CI_COMMIT_SHA, BITBUCKET_COMMIT), else `git rev-parse HEAD`]
    #[arg(long, visible_alias = "head-sha", value_name = "SHA")]
    pub commit_sha: Option<String>,
    /// Edit our last comment on the target (found by its watermark) instead of adding one
    #[arg(long)]
    pub update: Option<bool>,
    /// Text in the hidden watermark, so several reports on one target update separately; {workflow} and {run} are replaced
    #[arg(long, value_name = "TITLE")]
    pub watermark_title: Option<String>,
    /// Do not add the hidden watermark (the comment can then not be updated)
    #[arg(long)]
    pub rm_watermark: Option<bool>,
    /// Upload local images and files the report links to, and link to the uploads; --no-publish leaves local links as they are [default: true]
    #[arg(long)]
    pub publish: Option<bool>,
    /// Upload linked files to this asset server (POST, answering the URL) instead of the forge
    #[arg(long, value_name = "URL")]
    pub publish_url: Option<String>,
    /// Upload linked files to the forge, even when --publish-url is given (the default when it is not)
    #[arg(long, visible_alias = "native")]
    pub publish_native: Option<bool>,
    /// Keep running and update the comment each time the file changes (until interrupted)
    #[arg(long)]
    pub watch: Option<bool>,
    /// With --watch: post (then update) the comment each time this file appears or changes, and delete it, instead of watching the report
    #[arg(long, value_name = "FILE")]
    pub trigger_file: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Create a check run on the head commit with the Markdown file as its summary (GitHub)
    Create(CheckArgs),
}

/// `cml check create` options.
#[derive(Debug, Args, Clone, Default)]
pub struct CheckArgs {
    /// Markdown file to use as the check's summary
    #[arg(value_name = "MARKDOWN_FILE")]
    pub markdown_file: String,
    /// Commit to report on [default: the CI's commit, else `git rev-parse HEAD`]
    #[arg(long, visible_alias = "head-sha", value_name = "SHA")]
    pub commit_sha: Option<String>,
    /// success, failure, neutral, cancelled, skipped, timed_out or action_required [default: success]
    #[arg(long)]
    pub conclusion: Option<String>,
    /// queued, in_progress or completed [default: completed]
    #[arg(long)]
    pub status: Option<String>,
    /// The check's name and title [default: CML Report]
    #[arg(long)]
    pub title: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AssetCommand {
    /// Upload a file and print its URL, or a Markdown image or link with --md
    Publish(PublishArgs),
}

/// `cml asset publish` options.
#[derive(Debug, Args, Clone, Default)]
pub struct PublishArgs {
    /// File to publish
    #[arg(value_name = "FILE")]
    pub asset: String,
    /// Print Markdown: `![](URL "TITLE")` for images and videos, `[TITLE](URL)` otherwise
    #[arg(long)]
    pub md: Option<bool>,
    /// Title of the Markdown image or link
    #[arg(long, short = 't')]
    pub title: Option<String>,
    /// Upload to this asset server (POST of the file, answering its URL) instead of the forge
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Upload to the forge: GitLab project uploads, Bitbucket downloads, GitHub: a commit on the `cml-assets` branch (the default when --url is not given; with --url, --url is ignored, as in CML)
    #[arg(long, alias = "gitlab-uploads")]
    pub native: Option<bool>,
    /// MIME type [default: from the file's contents or name]
    #[arg(long, value_name = "TYPE")]
    pub mime_type: Option<String>,
    /// Append the output to this file instead of printing it
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<String>,
    /// Accepted for compatibility; published URLs carry no watermark
    #[arg(long, hide = true)]
    pub rm_watermark: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum PrCommand {
    /// Commit the changed files matching GLOBS on a new branch and open a pull request
    Create(PrArgs),
}

/// `cml pr create` options.
#[derive(Debug, Args, Clone, Default)]
pub struct PrArgs {
    /// Files to include, as paths or globs (`*`, `**`, `?`) [default: dvc.lock .gitignore]
    #[arg(value_name = "GLOBS")]
    pub globs: Vec<String>,
    /// Print a Markdown link to the pull request instead of its URL
    #[arg(long)]
    pub md: Option<bool>,
    /// Ask the forge to merge it (merge commit) once its checks pass; at most one of --merge, --squash, --rebase
    #[arg(long, visible_alias = "auto-merge")]
    pub merge: Option<bool>,
    /// Ask the forge to squash-merge it once its checks pass
    #[arg(long)]
    pub squash: Option<bool>,
    /// Ask the forge to rebase-merge it once its checks pass
    #[arg(long)]
    pub rebase: Option<bool>,
    /// Add `[skip ci]` to the commit message [default: unless merging]
    #[arg(long)]
    pub skip_ci: Option<bool>,
    /// Branch to create [default: TARGET-cml-pr-SHORTSHA]
    #[arg(long)]
    pub branch: Option<String>,
    /// Branch the pull request goes into [default: the CI's branch, else the current branch]
    #[arg(long)]
    pub target_branch: Option<String>,
    /// Commit message [default: CML PR for SHORTSHA]
    #[arg(long)]
    pub message: Option<String>,
    /// Pull request title [default: CML PR for TARGET SHORTSHA]
    #[arg(long)]
    pub title: Option<String>,
    /// Pull request description [default: Automated commits for REPO/commit/SHA created by CML.]
    #[arg(long)]
    pub body: Option<String>,
    /// Git remote to push to [default: origin]
    #[arg(long)]
    pub remote: Option<String>,
    /// Commit author email when Git has none configured [default: olivaw@iterative.ai]
    #[arg(long)]
    pub user_email: Option<String>,
    /// Commit author name when Git has none configured [default: Olivaw[bot]]
    #[arg(long)]
    pub user_name: Option<String>,
}

/// `cml ci` options.
#[derive(Debug, Args, Clone, Default)]
pub struct CiArgs {
    /// Commits of history to fetch (with the tags) from the remote; 0 or less: the full history when the checkout is shallow
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub fetch_depth: Option<String>,
    /// Fetch the full history when the checkout is shallow (the same as --fetch-depth=0)
    #[arg(long)]
    pub unshallow: Option<bool>,
    /// Git author email [default: olivaw@iterative.ai]
    #[arg(long)]
    pub user_email: Option<String>,
    /// Git author name [default: Olivaw[bot]]
    #[arg(long)]
    pub user_name: Option<String>,
    /// Git remote to authenticate [default: origin]
    #[arg(long)]
    pub remote: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RunnerCommand {
    /// Launch and supervise a self-hosted runner
    Launch(Box<RunnerArgs>),
    /// List cloud resources and runners left behind by cml, and delete them with --delete
    Cleanup(CleanupArgs),
    /// Keep a pool of single-use runners sized to the forge's queue, with a warm floor
    Pool(Box<PoolArgs>),
}

/// `cml runner pool` options: a runner's, and the pool's own.
#[derive(Debug, Args, Clone, Default)]
pub struct PoolArgs {
    #[command(flatten)]
    pub runner: RunnerArgs,
    /// Idle runners kept warm (outside --min-idle-schedule's windows) [default: 0]
    #[arg(long, value_name = "N")]
    pub min_idle: Option<String>,
    /// Most runners at once [default: 10]
    #[arg(long, value_name = "N")]
    pub max: Option<String>,
    /// Warm floor by time of week, UTC: `DAYS HH:MM-HH:MM=N` windows separated by `;` (e.g. "Mon-Fri 08:00-19:00=4")
    #[arg(long, value_name = "SCHEDULE")]
    pub min_idle_schedule: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// How long a runner may take to come online before it is replaced (once) [default: --cloud-timeout with --cloud, else 5 minutes]
    #[arg(long, value_name = "DURATION")]
    pub boot_window: Option<String>,
    /// Take part in leader election on this Kubernetes Lease (in the kubeconfig's or --cloud-kubernetes-namespace's namespace): only its holder runs the pool, the others stand by
    #[arg(long, value_name = "NAME")]
    pub lease: Option<String>,
}

/// `cml runner cleanup` options.
#[derive(Debug, Args, Clone, Default)]
pub struct CleanupArgs {
    /// Cloud provider to search: aws, gcp, azure or kubernetes
    #[arg(long)]
    pub cloud: Option<String>,
    /// Generic or native region to search [default: us-west]
    #[arg(long)]
    pub cloud_region: Option<String>,
    /// Kubernetes namespace to search [default: the kubeconfig context's]
    #[arg(long, value_name = "NAMESPACE")]
    pub cloud_kubernetes_namespace: Option<String>,
    /// Delete what is orphaned (without it, only the table is shown)
    #[arg(long)]
    pub delete: Option<bool>,
    /// A running machine without an online runner counts as orphaned only when older than this [default: 20 minutes]
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,
}

/// `cml runner launch` options.
#[derive(Debug, Args, Clone, Default)]
pub struct RunnerArgs {
    /// Comma-separated runner labels; given several times, they are joined [default: cml]
    #[arg(long)]
    pub labels: Vec<String>,
    /// Seconds (or `5 minutes`, `1h30m`) to wait for jobs before stopping; `never` or ≤ 0 waits forever [default: 5 minutes]
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub idle_timeout: Option<String>,
    /// Runner name [default: cml-<10 random base36 characters>]
    #[arg(long)]
    pub name: Option<String>,
    /// Do not re-run workflows interrupted by spot loss or job time limits
    #[arg(long)]
    pub no_retry: Option<bool>,
    /// Stop after one job
    #[arg(long)]
    pub single: Option<bool>,
    /// Exit without launching if a runner with this name exists, or an online runner has all the labels
    #[arg(long)]
    pub reuse: Option<bool>,
    /// Exit without launching if an online, idle runner has all the labels
    #[arg(long)]
    pub reuse_idle: Option<bool>,
    /// Agent install and work directory [default: ~/.cml/<name>]
    #[arg(long, visible_alias = "path", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Docker volumes for GitLab's docker executor (several after one flag, or repeated; variables: comma-separated)
    #[arg(long, value_name = "VOLUME", num_args = 1..)]
    pub docker_volumes: Vec<String>,
    /// Cloud provider: aws, azure, gcp or kubernetes [default: this machine]
    #[arg(long)]
    pub cloud: Option<String>,
    /// Generic (us-east, us-west, eu-north, eu-west) or native region [default: us-west]
    #[arg(long)]
    pub cloud_region: Option<String>,
    /// Generic (s, m, l, xl, with +k80/+v100/+t4) or native machine type [default: m]
    #[arg(long)]
    pub cloud_type: Option<String>,
    /// GPU: nogpu, k80, v100, t4 (tesla = v100) or a native accelerator
    #[arg(long)]
    pub cloud_gpu: Option<String>,
    /// Disk size in GB [default: 35]
    #[arg(long, allow_hyphen_values = true)]
    pub cloud_hdd_size: Option<String>,
    /// Request a spot (preemptible) instance
    #[arg(long)]
    pub cloud_spot: Option<bool>,
    /// With --cloud-spot: when no zone of the region has spot capacity at the price, launch an on-demand machine instead of failing
    #[arg(long)]
    pub cloud_spot_fallback: Option<bool>,
    /// Maximum spot price in USD per hour; -1 = market price [default: -1]
    #[arg(long, allow_hyphen_values = true)]
    pub cloud_spot_price: Option<String>,
    /// AWS instance profile ARN, GCP `email,scopes=a,b`, Azure identity ids, Kubernetes service account
    #[arg(long)]
    pub cloud_permission_set: Option<String>,
    /// Tags or labels `key=value` for the cloud resources (several after one flag, or repeated; a later key wins; variables: comma-separated)
    #[arg(long, value_name = "KEY=VALUE", num_args = 1..)]
    pub cloud_metadata: Vec<String>,
    /// Base64-encoded shell script run on the machine before the runner starts
    #[arg(long)]
    pub cloud_startup_script: Option<String>,
    /// PEM private key for SSH access to the machine [default: generated]
    #[arg(long)]
    pub cloud_ssh_private: Option<String>,
    /// Machine image: AMI id or name, `project/family`, `publisher:offer:sku:version`, container image
    #[arg(long)]
    pub cloud_image: Option<String>,
    /// AWS security group
    #[arg(long)]
    pub cloud_aws_security_group: Option<String>,
    /// AWS subnet
    #[arg(long, visible_alias = "cloud-aws-subnet-id")]
    pub cloud_aws_subnet: Option<String>,
    /// Kubernetes node selector `key=value` pairs (several after one flag, repeated, or comma-separated; a later key wins) [default: accelerator=infer]
    #[arg(long, value_name = "KEY=VALUE", num_args = 1..)]
    pub cloud_kubernetes_node_selector: Vec<String>,
    /// Kubernetes namespace of the runner's Job [default: the kubeconfig context's]
    #[arg(long, value_name = "NAMESPACE")]
    pub cloud_kubernetes_namespace: Option<String>,
    /// Seconds to wait before a cloud machine destroys itself, so logs can be collected [default: 10]
    #[arg(long, allow_hyphen_values = true)]
    pub destroy_delay: Option<String>,
    /// How long to wait for a cloud runner to be online in the forge before destroying the machine [default: 20 minutes]
    #[arg(long, value_name = "DURATION")]
    pub cloud_timeout: Option<String>,
    /// Hard limit on a cloud machine's life, enforced by the machine itself (a systemd timer set at boot powers it off, which terminates it), even if cml hangs or dies; `never` disables it [default: 121h, GitHub's 5-day job limit plus an hour]
    #[arg(long, value_name = "DURATION")]
    pub cloud_max_lifetime: Option<String>,
    /// Where cloud machines download cml from; {version} and {arch} (x86_64, aarch64) are substituted [default: the project's release for this version]
    #[arg(long, value_name = "URL")]
    pub cloud_cml_url: Option<String>,
    /// SHA-256 the machine checks the downloaded cml against
    #[arg(long, value_name = "HEX")]
    pub cloud_cml_sha256: Option<String>,
    /// On a cloud machine: remove the machine when the runner ends (set by the launcher)
    #[arg(long, hide = true)]
    pub self_terminate: Option<bool>,
    /// actions/runner version to install when the workdir has none [default: latest]
    #[arg(long, value_name = "VERSION")]
    pub github_runner_version: Option<String>,
    /// GitHub: stop a job this long before GitHub's job time limit (5 days for self-hosted runners; CML_JOB_TIME_LIMIT changes it) and re-run it unless --no-retry; `never` disables it [default: 10 minutes]
    #[arg(long, value_name = "DURATION")]
    pub job_time_limit_margin: Option<String>,
    /// Seconds the agent gets to stop after SIGINT before it is killed [default: 30]
    #[arg(long, value_name = "SECONDS")]
    pub stop_grace: Option<String>,
    /// Run the agent and its jobs as this unprivileged user (no sudo, no Docker) instead of root: a job can then read no forge credential. Cloud machines create the user if missing and keep the metadata service (and so user-data) for root only; on this machine cml must run as root [env: CML_RUNNER_CLOUD_JOB_USER] [default: root]
    #[arg(long, value_name = "USER")]
    pub cloud_job_user: Option<String>,
    /// Azure: give the machine the launcher's service principal (AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID, AZURE_SUBSCRIPTION_ID) in a root-only file, so that it deletes its resource group with it, for a principal that may not assign roles. A job running as root can read the secret; see the README [default: off: the machine uses its own managed identity]
    #[arg(long)]
    pub cloud_azure_credentials_on_machine: Option<bool>,
    /// On a cloud machine: read the forge credential from this root-only file instead of the environment (set by the launcher)
    #[arg(long, hide = true, value_name = "PATH")]
    pub credentials_file: Option<String>,
    /// CML's Terraform provider version for its cloud machines: no Terraform here (ignored, with a warning)
    #[arg(long, hide = true, value_name = "VERSION")]
    pub tpi_version: Option<String>,
    /// CML's version for its cloud machines: they run this cml's version here, see --cloud-cml-url (ignored, with a warning)
    #[arg(long, hide = true, value_name = "VERSION")]
    pub cml_version: Option<String>,
    /// Passed by CML's cloud machines to their runner so it destroys the machine at the end: means --self-terminate here
    #[arg(long, hide = true, alias = "tf_resource", value_name = "BASE64")]
    pub tf_resource: Option<String>,
    /// Passed by CML's GCP machines: no GCP here (ignored, with a warning)
    #[arg(long, hide = true, value_name = "TOKEN")]
    pub gcp_access_token: Option<String>,
    /// Declared by CML and never used (ignored, with a warning)
    #[arg(long, hide = true, value_name = "PATH")]
    pub runner_path: Option<String>,
}
