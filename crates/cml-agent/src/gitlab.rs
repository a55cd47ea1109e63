//! gitlab-runner: install and `run-single` (filled in by the GitLab work).
