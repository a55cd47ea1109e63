//! A forge's view of one registered runner, the same for every forge.

/// What the forge says about a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerInfo {
    /// The forge's id: GitHub and GitLab numeric ids in decimal, Bitbucket's `{uuid}`.
    pub id: String,
    pub name: String,
    /// Connected to the forge right now.
    pub online: bool,
    /// Running a job right now.
    pub busy: bool,
    pub labels: Vec<String>,
}
