//! The Bitbucket line parser against the runner's console output
//! (`fixtures/agent-logs/`, with their sources and expected events in its README).

use cml_core::event::parse_bitbucket_line;
use cml_core::{AgentEvent, JobResult};

fn events(file: &str) -> Vec<(usize, AgentEvent)> {
    let path = format!(
        "{}/../../fixtures/agent-logs/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| parse_bitbucket_line(l).map(|e| (i + 1, e)))
        .collect()
}

#[test]
fn cml_fixtures() {
    assert_eq!(
        events("cml-fixture-bitbucket.log"),
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
        events("cml-fixture-bitbucket-success.log"),
        vec![(
            1,
            AgentEvent::JobFinished {
                job: "step".into(),
                result: JobResult::Succeeded
            }
        )]
    );
}
