//! The simulated Bitbucket API and agent (filled in by the Bitbucket work).

use crate::github::{Req, Resp, Shared};

/// Bitbucket simulator settings, part of [`crate::SimConfig`].
#[derive(Clone, Debug, Default)]
pub struct Config {}

/// Bitbucket simulator state.
#[derive(Debug, Default)]
pub struct State {}

/// Serves `req` if it is a Bitbucket route; `None` otherwise.
pub(crate) fn handle(_sh: &Shared, _req: &Req, _segs: &[&str]) -> Option<Resp> {
    None
}

/// `cml-sim bitbucket ARGS`; returns the exit code.
pub fn cli_main(_args: Vec<String>) -> i32 {
    eprintln!("cml-sim bitbucket: not available");
    2
}
