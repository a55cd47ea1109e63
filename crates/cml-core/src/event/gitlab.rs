//! gitlab-runner's console lines, in its JSON log format (`--log-format=json`, what `cml`
//! runs) and its default text format (what users often paste or pipe).
//!
//! Recognised (gitlab-runner `commands/single.go`, `network/gitlab.go`, `common/build.go`):
//! - ready: `Starting runner for <url> with token <short> ...` (run-single only);
//! - job started: `Checking for jobs... received` with the job id in `job`;
//! - job finished: `Job succeeded` (success), `Job failed: ...` or
//!   `Job failed (system failure): ...` (failure; `canceled` in the reason: cancelled), with
//!   the job id in `job`.
//!
//! The job is identified by its numeric id (`"job":123` in JSON, `job=123` in text).

use super::{AgentEvent, JobResult};

/// Parses one line of gitlab-runner output (JSON or text format).
pub fn parse_gitlab_line(line: &str) -> Option<AgentEvent> {
    let line = line.trim_end_matches(|c: char| c.is_whitespace() || c == ',');
    let (msg, job) = match json_part(line) {
        Some(v) => (
            v.get("msg")?.as_str()?.to_string(),
            v.get("job").and_then(|j| {
                j.as_u64()
                    .map(|n| n.to_string())
                    .or_else(|| j.as_str().map(str::to_string))
            }),
        ),
        None => (line.to_string(), text_field(line, "job")),
    };
    if msg.contains("Starting runner for ") {
        return Some(AgentEvent::Ready);
    }
    let job = job?;
    if msg.contains("Checking for jobs... received") {
        return Some(AgentEvent::JobStarted { job });
    }
    if msg.contains("Job succeeded") {
        return Some(AgentEvent::JobFinished {
            job,
            result: JobResult::Succeeded,
        });
    }
    if let Some(i) = msg.find("Job failed") {
        let reason = &msg[i..];
        let result = if reason.contains("canceled") || reason.contains("cancelled") {
            JobResult::Canceled
        } else {
            JobResult::Failed
        };
        return Some(AgentEvent::JobFinished { job, result });
    }
    None
}

/// The JSON object in `line`, which may carry a foreign prefix (`runner_1  | {...}`).
fn json_part(line: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let start = line.find('{')?;
    match serde_json::from_str::<serde_json::Value>(&line[start..]) {
        Ok(serde_json::Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// The value of ` key=value` in a text-format line.
fn text_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=");
    let mut rest = line;
    while let Some(i) = rest.find(&pat) {
        let before_ok = i == 0 || rest[..i].ends_with(char::is_whitespace);
        let value: String = rest[i + pat.len()..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != ',')
            .collect();
        if before_ok && !value.is_empty() {
            return Some(value);
        }
        rest = &rest[i + pat.len()..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text_lines() {
        assert_eq!(
            parse_gitlab_line(
                r#"{"level":"info","msg":"Starting runner for https://gitlab.com with token 2SGFrnGt ...","time":"2021-07-02T16:45:05Z"}"#
            ),
            Some(AgentEvent::Ready)
        );
        assert_eq!(
            parse_gitlab_line(
                r#"runner_1  | {"job":7,"level":"info","msg":"Checking for jobs... received"}"#
            ),
            Some(AgentEvent::JobStarted { job: "7".into() })
        );
        assert_eq!(
            parse_gitlab_line(
                "ERROR: Job failed (system failure): canceled   duration_s=1 job=9 project=3"
            ),
            Some(AgentEvent::JobFinished {
                job: "9".into(),
                result: JobResult::Canceled
            })
        );
        // A job id is needed for job events; a debug line mentioning jobs is nothing.
        assert_eq!(parse_gitlab_line("Job succeeded"), None);
        assert_eq!(
            parse_gitlab_line(r#"{"msg":"Checking for jobs... nothing","level":"debug"}"#),
            None
        );
        assert_eq!(parse_gitlab_line("{not json"), None);
    }
}
