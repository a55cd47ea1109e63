//! The Bitbucket Cloud client (filled in by the Bitbucket work).
