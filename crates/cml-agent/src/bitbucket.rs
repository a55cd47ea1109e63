//! The Bitbucket Pipelines runner (filled in by the Bitbucket work).
