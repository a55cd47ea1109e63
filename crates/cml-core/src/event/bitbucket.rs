//! The Bitbucket Pipelines runner's console lines (`[YYYY-MM-DD HH:MM:SS,mmm] message`).
//!
//! Recognised (the runner is closed source; the strings are those of its console output as
//! published in CML's tests):
//! - ready: `Updating runner status to "ONLINE"`;
//! - job started: `Getting step StepId{... stepUuid={UUID}}.` → the job is `{UUID}`;
//! - job finished: `Completing step with result Result{status=PASSED, ...}` (success),
//!   `FAILED` (failure), `STOPPED` (cancelled), anything else (other, a failure).
//!
//! The finish line names no step; the parser is stateless and reports the job as `step`,
//! the supervisor knowing which step is running.

use super::{AgentEvent, JobResult};

/// Parses one line of the Bitbucket Pipelines runner's output.
pub fn parse_bitbucket_line(line: &str) -> Option<AgentEvent> {
    let line = line.trim_end();
    // Newer runners say "state" where older ones say "status".
    if line.contains("Updating runner status to \"ONLINE\"")
        || line.contains("Updating runner state to \"ONLINE\"")
    {
        return Some(AgentEvent::Ready);
    }
    if let Some(i) = line.find("Getting step StepId{") {
        let rest = &line[i..];
        let job = field(rest, "stepUuid=").unwrap_or_else(|| "step".into());
        return Some(AgentEvent::JobStarted { job });
    }
    const DONE: &str = "Completing step with result Result{status=";
    if let Some(i) = line.find(DONE) {
        let word: String = line[i + DONE.len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic() || *c == '_')
            .collect();
        let result = match word.as_str() {
            "PASSED" => JobResult::Succeeded,
            "FAILED" | "ERROR" => JobResult::Failed,
            "STOPPED" => JobResult::Canceled,
            "" => return None,
            other => JobResult::Other(other.to_string()),
        };
        return Some(AgentEvent::JobFinished {
            job: "step".into(),
            result,
        });
    }
    None
}

/// The pipeline of a `Getting step StepId{... pipelineUuid={UUID} ...}` line: `{UUID}`.
pub fn bitbucket_pipeline(line: &str) -> Option<String> {
    let i = line.find("Getting step StepId{")?;
    field(&line[i..], "pipelineUuid=")
}

/// The `{...}` value after `key` (`stepUuid={abc}` → `{abc}`).
fn field(s: &str, key: &str) -> Option<String> {
    let start = s.find(key)? + key.len();
    let rest = &s[start..];
    if !rest.starts_with('{') {
        return None;
    }
    let end = rest.find('}')?;
    Some(rest[..=end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_results_and_noise() {
        assert_eq!(
            parse_bitbucket_line("runner_1  | [2022-06-05 17:23:41,945] Updating runner status to \"ONLINE\" and checking for new steps"),
            Some(AgentEvent::Ready)
        );
        assert_eq!(
            parse_bitbucket_line("[2022-06-05 17:24:12,246] Getting step StepId{accountUuid={a}, repositoryUuid={r}, pipelineUuid={p}, stepUuid={s-1}}."),
            Some(AgentEvent::JobStarted { job: "{s-1}".into() })
        );
        assert_eq!(
            parse_bitbucket_line(
                "[x] Completing step with result Result{status=STOPPED, error=None}.  "
            ),
            Some(AgentEvent::JobFinished {
                job: "step".into(),
                result: JobResult::Canceled
            })
        );
        assert_eq!(
            bitbucket_pipeline("[2022-06-05 17:24:12,246] Getting step StepId{accountUuid={a}, repositoryUuid={r}, pipelineUuid={p-9}, stepUuid={s-1}}."),
            Some("{p-9}".into())
        );
        assert_eq!(bitbucket_pipeline("pipelineUuid={p-9}"), None);
        assert_eq!(
            parse_bitbucket_line("[x] Updating runner status to \"OFFLINE\""),
            None
        );
        assert_eq!(
            parse_bitbucket_line("Completing step with result Result{status="),
            None
        );
    }
}
