//! The GitHub line parser against real console output of actions/runner
//! (`fixtures/agent-logs/`, with their sources and expected events in its README).

use cml_core::event::parse_github_line;
use cml_core::{AgentEvent, JobResult};

mod common;

use common::{events, finished, started};

fn events_of(file: &str) -> Vec<(usize, cml_core::AgentEvent)> {
    events(file, parse_github_line)
}

#[test]
fn github_1_service_mode_in_docker_compose() {
    let job = "github-access-related-job (output_1)";
    assert_eq!(
        events_of("github-1.log"),
        vec![
            (10, AgentEvent::Ready),
            started(11, job),
            finished(12, job, JobResult::Succeeded)
        ]
    );
}

#[test]
fn github_2_job_start_elided() {
    assert_eq!(
        events_of("github-2.log"),
        vec![
            (10, AgentEvent::Ready),
            finished(12, "web", JobResult::Failed)
        ]
    );
}

#[test]
fn github_3_trailing_spaces() {
    assert_eq!(
        events_of("github-3.log"),
        vec![
            (1, AgentEvent::Ready),
            started(2, "version-bump"),
            finished(3, "version-bump", JobResult::Succeeded)
        ]
    );
}

#[test]
fn github_4_same_job_name_reused() {
    let got = events_of("github-4.log");
    let results: Vec<_> = got
        .iter()
        .map(|(l, e)| match e {
            AgentEvent::JobStarted { job } => format!("{l}:start:{job}"),
            AgentEvent::JobFinished { job, result } => format!("{l}:end:{job}:{}", result.as_str()),
            AgentEvent::Ready => format!("{l}:ready"),
        })
        .collect();
    assert_eq!(
        results,
        [
            "1:start:Build",
            "2:end:Build:Succeeded",
            "3:start:Build",
            "4:end:Build:Failed",
            "5:start:Build",
            "6:end:Build:Succeeded",
            "7:start:Build",
            "8:end:Build:Succeeded"
        ]
    );
}

#[test]
fn cml_fixtures() {
    assert_eq!(
        events_of("cml-fixture-github.log"),
        vec![
            (1, AgentEvent::Ready),
            started(2, "train"),
            finished(3, "train", JobResult::Failed)
        ]
    );
    assert_eq!(
        events_of("cml-fixture-github-success.log"),
        vec![finished(1, "train", JobResult::Succeeded)]
    );
}
