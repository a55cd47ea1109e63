//! Reading the agent-log fixtures (`fixtures/agent-logs/`) through a line parser.

use cml_core::{AgentEvent, JobResult};

/// The events `parse` finds in fixture `file`, with their 1-based line numbers.
pub fn events(file: &str, parse: fn(&str) -> Option<AgentEvent>) -> Vec<(usize, AgentEvent)> {
    let path = format!(
        "{}/../../fixtures/agent-logs/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| parse(l).map(|e| (i + 1, e)))
        .collect()
}

#[allow(dead_code)]
pub fn started(line: usize, job: &str) -> (usize, AgentEvent) {
    (line, AgentEvent::JobStarted { job: job.into() })
}

#[allow(dead_code)]
pub fn finished(line: usize, job: &str, result: JobResult) -> (usize, AgentEvent) {
    (
        line,
        AgentEvent::JobFinished {
            job: job.into(),
            result,
        },
    )
}
