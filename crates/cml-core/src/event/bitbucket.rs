//! The Bitbucket Pipelines runner's console lines (filled in by the Bitbucket work).

use super::AgentEvent;

/// Parses one line of the Bitbucket Pipelines runner's output.
pub fn parse_bitbucket_line(_line: &str) -> Option<AgentEvent> {
    None
}
