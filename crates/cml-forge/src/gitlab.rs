//! The GitLab client (filled in by the GitLab work).
