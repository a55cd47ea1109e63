//! The GitLab line parser against real console output of gitlab-runner
//! (`fixtures/agent-logs/`, with their sources and expected events in its README).

use cml_core::event::parse_gitlab_line;
use cml_core::{AgentEvent, JobResult};

fn events(file: &str) -> Vec<(usize, AgentEvent)> {
    let path = format!(
        "{}/../../fixtures/agent-logs/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| parse_gitlab_line(l).map(|e| (i + 1, e)))
        .collect()
}

fn started(line: usize, job: &str) -> (usize, AgentEvent) {
    (line, AgentEvent::JobStarted { job: job.into() })
}
fn finished(line: usize, job: &str, result: JobResult) -> (usize, AgentEvent) {
    (
        line,
        AgentEvent::JobFinished {
            job: job.into(),
            result,
        },
    )
}

#[test]
fn gitlab_1_text_format_with_trailing_commas() {
    assert_eq!(
        events("gitlab-1.log"),
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
        events("gitlab-2.log"),
        vec![
            started(1, "10815"),
            finished(4, "10815", JobResult::Succeeded)
        ]
    );
}

#[test]
fn cml_json_fixtures() {
    assert_eq!(
        events("cml-fixture-gitlab.log"),
        vec![
            (1, AgentEvent::Ready),
            started(2, "1396213069"),
            finished(3, "1396213069", JobResult::Failed),
        ]
    );
    assert_eq!(
        events("cml-fixture-gitlab-success.log"),
        vec![finished(1, "2177867438", JobResult::Succeeded)]
    );
}
