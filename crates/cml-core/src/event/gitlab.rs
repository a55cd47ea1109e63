//! gitlab-runner's console lines (filled in by the GitLab work).

use super::AgentEvent;

/// Parses one line of `gitlab-runner run-single --log-format=json` output (text format too).
pub fn parse_gitlab_line(_line: &str) -> Option<AgentEvent> {
    None
}
