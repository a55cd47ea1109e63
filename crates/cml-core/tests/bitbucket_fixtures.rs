//! The Bitbucket line parser against the runner's console output
//! (`fixtures/agent-logs/`, with their sources and expected events in its README).

use cml_core::event::parse_bitbucket_line;
use cml_core::{AgentEvent, JobResult};

mod common;

use common::events;

fn events_of(file: &str) -> Vec<(usize, cml_core::AgentEvent)> {
    events(file, parse_bitbucket_line)
}

#[test]
fn cml_fixtures() {
    assert_eq!(
        events_of("cml-fixture-bitbucket.log"),
        vec![
            (1, AgentEvent::Ready),
            (
                2,
                AgentEvent::JobStarted {
                    job: "{XXXXX-XXX-XXX-XXXXXXXX}".into()
                }
            ),
            (
                3,
                AgentEvent::JobFinished {
                    job: "step".into(),
                    result: JobResult::Failed
                }
            ),
        ]
    );
    assert_eq!(
        events_of("cml-fixture-bitbucket-success.log"),
        vec![(
            1,
            AgentEvent::JobFinished {
                job: "step".into(),
                result: JobResult::Succeeded
            }
        )]
    );
}
