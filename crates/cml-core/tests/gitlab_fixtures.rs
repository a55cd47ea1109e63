//! The GitLab line parser against real console output of gitlab-runner
//! (`fixtures/agent-logs/`, with their sources and expected events in its README).

use cml_core::event::parse_gitlab_line;
use cml_core::{AgentEvent, JobResult};

mod common;

use common::{events, finished, started};

fn events_of(file: &str) -> Vec<(usize, cml_core::AgentEvent)> {
    events(file, parse_gitlab_line)
}

#[test]
fn gitlab_1_text_format_with_trailing_commas() {
    assert_eq!(
        events_of("gitlab-1.log"),
        vec![
            started(8, "14796"),
            finished(9, "14796", JobResult::Failed),
            started(10, "14797"),
            finished(11, "14797", JobResult::Failed),
            started(12, "14802"),
            finished(13, "14802", JobResult::Failed),
        ]
    );
}

#[test]
fn gitlab_2_text_format_success() {
    assert_eq!(
        events_of("gitlab-2.log"),
        vec![
            started(1, "10815"),
            finished(4, "10815", JobResult::Succeeded)
        ]
    );
}

#[test]
fn cml_json_fixtures() {
    assert_eq!(
        events_of("cml-fixture-gitlab.log"),
        vec![
            (1, AgentEvent::Ready),
            started(2, "1396213069"),
            finished(3, "1396213069", JobResult::Failed),
        ]
    );
    assert_eq!(
        events_of("cml-fixture-gitlab-success.log"),
        vec![finished(1, "2177867438", JobResult::Succeeded)]
    );
}
