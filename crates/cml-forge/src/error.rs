//! Errors of forge calls: one variant per operation, each naming the resource it was about.

/// Why one API call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 401: the token is wrong, expired or revoked.
    #[error("{forge} rejected the token from {token_source} ({status} {message})\nhint: {hint}")]
    Unauthorized {
        forge: &'static str,
        status: u16,
        message: String,
        token_source: String,
        hint: &'static str,
    },
    /// 403 that is not a rate limit, or 404 on a scope: the token cannot do this.
    #[error("{forge} refused the token from {token_source} ({status} {message})\nhint: {hint}")]
    Forbidden {
        forge: &'static str,
        status: u16,
        message: String,
        token_source: String,
        hint: &'static str,
    },
    /// Still rate limited (or failing with 5xx) after the retry budget.
    #[error("gave up after {attempts} attempts: {last}\nhint: the forge is failing or rate limiting this token; try again later")]
    Exhausted { attempts: u32, last: String },
    /// Rate limited for longer than we are willing to wait.
    #[error("rate limited for {wait_secs} s more (longer than the {max_wait_secs} s we wait)\nhint: wait for the limit to reset, or use a token with its own quota")]
    RateLimited { wait_secs: u64, max_wait_secs: u64 },
    /// Any other unexpected status.
    #[error("unexpected answer {status}: {message}")]
    Status { status: u16, message: String },
    /// The request did not get an answer.
    #[error("no answer from {url}: {message}\nhint: check the URL and the network")]
    Transport { url: String, message: String },
    /// The answer was not the JSON we expected.
    #[error("unreadable answer: {0}")]
    Decode(String),
    /// A list's next page is on another server, or outside the API's path: not followed,
    /// since the token goes with every page.
    #[error("the next page of the list is at {next}, outside the API {api}; it was not followed, so the token was not sent there\nhint: something between this machine and the forge (a proxy) rewrites the API's Link headers, or the API URL is wrong; check --repo")]
    ForeignPage { next: String, api: String },
}

impl ApiError {
    /// True when a request that failed this way may still have been carried out by the forge:
    /// no answer came, the forge failed (5xx: possibly after doing the work), or the answer
    /// was unreadable. A request that must not be done twice is then looked up, not resent.
    pub fn may_have_taken_effect(&self) -> bool {
        match self {
            ApiError::Transport { .. } | ApiError::Decode(_) => true,
            ApiError::Status { status, .. } => (500..600).contains(status),
            _ => false,
        }
    }

    /// The error for an answer the forge refused: 401 is [`ApiError::Unauthorized`], 403 (and
    /// the statuses in `forbidden`) [`ApiError::Forbidden`], both naming the token's source
    /// and the hint; anything else [`ApiError::Status`].
    pub(crate) fn refused(
        forge: &'static str,
        status: u16,
        message: String,
        token_source: &str,
        hint: &'static str,
        forbidden: &[u16],
    ) -> ApiError {
        match status {
            401 => ApiError::Unauthorized {
                forge,
                status,
                message,
                token_source: token_source.to_string(),
                hint,
            },
            s if s == 403 || forbidden.contains(&s) => ApiError::Forbidden {
                forge,
                status,
                message,
                token_source: token_source.to_string(),
                hint,
            },
            status => ApiError::Status { status, message },
        }
    }
}

/// A failed forge operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForgeError {
    #[error("listing the runners of {scope} failed: {cause}")]
    ListRunners { scope: String, cause: ApiError },
    #[error("reading runner {id} of {scope} failed: {cause}")]
    GetRunner {
        scope: String,
        id: String,
        cause: ApiError,
    },
    #[error("deleting runner {name} (id {id}) from {scope} failed: {cause}")]
    DeleteRunner {
        scope: String,
        id: String,
        name: String,
        cause: ApiError,
    },
    #[error("creating a runner registration token for {scope} failed: {cause}")]
    RegistrationToken { scope: String, cause: ApiError },
    #[error("creating a runner remove token for {scope} failed: {cause}")]
    RemoveToken { scope: String, cause: ApiError },
    #[error("creating a just-in-time runner configuration for {name} in {scope} failed: {cause}")]
    JitConfig {
        scope: String,
        name: String,
        cause: ApiError,
    },
    #[error("reading job {id} of {scope} failed: {cause}")]
    GetJob {
        scope: String,
        id: u64,
        cause: ApiError,
    },
    #[error("listing the jobs waiting for a runner in {scope} failed: {cause}")]
    QueuedJobs { scope: String, cause: ApiError },
    #[error("runner {runner} holds only its just-in-time configuration, which cannot {operation}\nhint: the pool that made the runner removes it (with its own credential); `cml runner cleanup` removes one a pool left")]
    JitOnly {
        runner: String,
        operation: &'static str,
    },
    #[error("{scope} cannot list the jobs waiting for a runner\nhint: a runner pool needs a repository (GitHub, GitLab or Bitbucket); an organization's pool needs the runner scale-set protocol")]
    QueueUnsupported { scope: String },
    #[error("re-running the work of runner {runner} in {scope} failed: {cause}")]
    Rerun {
        scope: String,
        runner: String,
        cause: ApiError,
    },
    #[error("finding the GitHub App installation for {scope} failed: {cause}")]
    AppInstallation { scope: String, cause: ApiError },
    #[error("creating an installation token for GitHub App {app_id} failed: {cause}")]
    AppToken { app_id: String, cause: ApiError },
    #[error("CML_GITHUB_APP_PEM does not hold a usable RSA private key: {reason}\nhint: set CML_GITHUB_APP_PEM to the contents of the .pem file GitHub generated for the app")]
    AppKey { reason: String },
    #[error("signing the GitHub App JWT failed: {reason}")]
    AppJwt { reason: String },
    #[error("the forge client for {url} could not be created: {reason}")]
    Client { url: String, reason: String },
    // Shared by the GitLab and Bitbucket clients.
    #[error("registering runner {name} in {scope} failed: {cause}")]
    CreateRunner {
        scope: String,
        name: String,
        cause: ApiError,
    },
    #[error("registering runner {name} in {scope} got no usable answer ({first}), and finding out whether the runner was created failed: {cause}\nhint: if {scope} lists a runner named {name}, remove it in its runner settings")]
    UnconfirmedRunner {
        scope: String,
        name: String,
        first: ApiError,
        cause: ApiError,
    },
    #[error("stopping runner {name} (id {id}) of {scope} from taking new jobs failed: {cause}")]
    PauseRunner {
        scope: String,
        id: String,
        name: String,
        cause: ApiError,
    },
    #[error("letting runner {name} (id {id}) of {scope} take jobs again failed: {cause}\nhint: it takes no new job until it is deleted; resume it in the runner settings of {scope} if it is to stay")]
    ResumeRunner {
        scope: String,
        id: String,
        name: String,
        cause: ApiError,
    },
    #[error("reading {scope} failed: {cause}")]
    ReadProject { scope: String, cause: ApiError },
    #[error("checking {scope} with its own token failed: {cause}")]
    VerifyRunner { scope: String, cause: ApiError },
    #[error("reading the running jobs of runner {id} of {scope} failed: {cause}")]
    RunnerJobs {
        scope: String,
        id: String,
        cause: ApiError,
    },
    // Report commands (comments, pull requests, uploads, checks), every forge.
    #[error("reading the comments of {target} in {scope} failed: {cause}")]
    ListComments {
        scope: String,
        target: String,
        cause: ApiError,
    },
    #[error("posting a comment on {target} in {scope} failed: {cause}")]
    PostComment {
        scope: String,
        target: String,
        cause: ApiError,
    },
    #[error("updating comment {id} on {target} in {scope} failed: {cause}")]
    UpdateComment {
        scope: String,
        target: String,
        id: String,
        cause: ApiError,
    },
    #[error("finding the pull requests of {what} in {scope} failed: {cause}")]
    FindPullRequests {
        scope: String,
        what: String,
        cause: ApiError,
    },
    #[error("opening a pull request from {source_branch} into {target_branch} in {scope} failed: {cause}")]
    CreatePullRequest {
        scope: String,
        source_branch: String,
        target_branch: String,
        cause: ApiError,
    },
    #[error("asking {scope} to merge pull request #{number} ({method}) failed: {cause}")]
    AutoMerge {
        scope: String,
        number: u64,
        method: &'static str,
        cause: ApiError,
    },
    #[error("uploading {file} to {place} failed: {cause}")]
    Upload {
        file: String,
        place: String,
        cause: ApiError,
    },
    #[error("creating check run \"{name}\" on commit {sha} in {scope} failed: {cause}")]
    CreateCheck {
        scope: String,
        name: String,
        sha: String,
        cause: ApiError,
    },
    #[error("{id:?} is not a run of {scope}: expected {expected}\nhint: pass --id, or run inside the CI job whose run you mean")]
    BadWorkflowId {
        scope: String,
        id: String,
        expected: &'static str,
    },
    #[error("reading run {id} of {scope} failed: {cause}")]
    ReadWorkflow {
        scope: String,
        id: String,
        cause: ApiError,
    },
    #[error("cancelling run {id} of {scope} failed: {cause}")]
    CancelWorkflow {
        scope: String,
        id: String,
        cause: ApiError,
    },
    #[error("run {id} of {scope} was still running {waited_secs} s after it was cancelled\nhint: re-run it once it has stopped")]
    WorkflowStillRunning {
        scope: String,
        id: String,
        waited_secs: u64,
    },
    #[error("re-running run {id} of {scope} failed: {cause}")]
    RerunWorkflow {
        scope: String,
        id: String,
        cause: ApiError,
    },
    #[error("{scope} has no {what}\nhint: {hint}")]
    Unsupported {
        scope: String,
        what: &'static str,
        hint: &'static str,
    },
    // --- GitLab-only variants below this line ---
    #[error("found no GitLab API for {url} (tried {tried}): {cause}\nhint: check --repo; for a self-managed GitLab under a sub-path, the URL must include it (https://host/gitlab/group/project)")]
    ApiDiscovery {
        url: String,
        tried: String,
        cause: String,
    },
    // --- Bitbucket-only variants below this line ---
    #[error("the Bitbucket token from {token_source} is not base64 of `user:app_password`\nhint: pass $(printf '%s' \"$USER:$APP_PASSWORD\" | base64 -w0), as CML expects")]
    BitbucketToken { token_source: String },
}

impl ForgeError {
    /// The underlying API error, when there is one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            ForgeError::ListRunners { cause, .. }
            | ForgeError::GetRunner { cause, .. }
            | ForgeError::DeleteRunner { cause, .. }
            | ForgeError::RegistrationToken { cause, .. }
            | ForgeError::RemoveToken { cause, .. }
            | ForgeError::JitConfig { cause, .. }
            | ForgeError::GetJob { cause, .. }
            | ForgeError::Rerun { cause, .. }
            | ForgeError::QueuedJobs { cause, .. }
            | ForgeError::AppInstallation { cause, .. }
            | ForgeError::AppToken { cause, .. }
            | ForgeError::CreateRunner { cause, .. }
            | ForgeError::UnconfirmedRunner { cause, .. }
            | ForgeError::PauseRunner { cause, .. }
            | ForgeError::ResumeRunner { cause, .. }
            | ForgeError::ReadProject { cause, .. }
            | ForgeError::VerifyRunner { cause, .. }
            | ForgeError::RunnerJobs { cause, .. }
            | ForgeError::ListComments { cause, .. }
            | ForgeError::PostComment { cause, .. }
            | ForgeError::UpdateComment { cause, .. }
            | ForgeError::FindPullRequests { cause, .. }
            | ForgeError::CreatePullRequest { cause, .. }
            | ForgeError::AutoMerge { cause, .. }
            | ForgeError::Upload { cause, .. }
            | ForgeError::CreateCheck { cause, .. }
            | ForgeError::ReadWorkflow { cause, .. }
            | ForgeError::CancelWorkflow { cause, .. }
            | ForgeError::RerunWorkflow { cause, .. } => Some(cause),
            _ => None,
        }
    }

    /// True when the token itself is the problem (retrying cannot help).
    pub fn is_auth(&self) -> bool {
        matches!(
            self.api(),
            Some(ApiError::Unauthorized { .. } | ApiError::Forbidden { .. })
        )
    }
}
