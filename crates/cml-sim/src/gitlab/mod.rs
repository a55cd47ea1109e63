//! The simulated GitLab API and agent (filled in by the GitLab work).

use crate::github::{Req, Resp, Shared};

/// GitLab simulator settings, part of [`crate::SimConfig`].
#[derive(Clone, Debug, Default)]
pub struct Config {}

/// GitLab simulator state.
#[derive(Debug, Default)]
pub struct State {}

/// Serves `req` if it is a GitLab route; `None` otherwise.
pub(crate) fn handle(_sh: &Shared, _req: &Req, _segs: &[&str]) -> Option<Resp> {
    None
}

/// `cml-sim gitlab ARGS`; returns the exit code.
pub fn cli_main(_args: Vec<String>) -> i32 {
    eprintln!("cml-sim gitlab: not available");
    2
}
