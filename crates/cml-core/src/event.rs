//! Events read from a runner agent's console output, and the GitHub agent's line grammar.
//!
//! Parsers take one whole line at a time (the supervisor assembles lines from the byte
//! stream, so a line split across two reads is still one line). They search within the line
//! rather than anchoring at its start, because agent output often carries foreign prefixes
//! (`runner_1  | `, syslog stamps) and suffixes (trailing blanks, a `,`).

mod bitbucket;
mod gitlab;

pub use bitbucket::{bitbucket_pipeline, parse_bitbucket_line};
pub use gitlab::parse_gitlab_line;

use crate::Driver;

/// Parses one whole line of `driver`'s agent.
pub fn parse_line(driver: Driver, line: &str) -> Option<AgentEvent> {
    match driver {
        Driver::Github => parse_github_line(line),
        Driver::Gitlab => parse_gitlab_line(line),
        Driver::Bitbucket => parse_bitbucket_line(line),
    }
}

/// Something the agent reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// The agent is connected and waiting for jobs.
    Ready,
    /// A job was taken. GitHub prints only the job's display name, GitLab the job id,
    /// Bitbucket the step's `{uuid}`.
    JobStarted { job: String },
    /// A job ended.
    JobFinished { job: String, result: JobResult },
}

/// A job's outcome as the agent prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    Succeeded,
    SucceededWithIssues,
    Failed,
    Canceled,
    Skipped,
    Abandoned,
    /// A word we do not know; counted as a failure.
    Other(String),
}

impl JobResult {
    pub fn parse(word: &str) -> JobResult {
        match word {
            "Succeeded" => JobResult::Succeeded,
            "SucceededWithIssues" => JobResult::SucceededWithIssues,
            "Failed" => JobResult::Failed,
            "Canceled" | "Cancelled" => JobResult::Canceled,
            "Skipped" => JobResult::Skipped,
            "Abandoned" => JobResult::Abandoned,
            other => JobResult::Other(other.to_string()),
        }
    }

    /// Succeeded and SucceededWithIssues are successes; everything else is not.
    pub fn success(&self) -> bool {
        matches!(self, JobResult::Succeeded | JobResult::SucceededWithIssues)
    }

    pub fn as_str(&self) -> &str {
        match self {
            JobResult::Succeeded => "Succeeded",
            JobResult::SucceededWithIssues => "SucceededWithIssues",
            JobResult::Failed => "Failed",
            JobResult::Canceled => "Canceled",
            JobResult::Skipped => "Skipped",
            JobResult::Abandoned => "Abandoned",
            JobResult::Other(s) => s,
        }
    }
}

/// Parses one line of GitHub's `actions/runner` listener output.
///
/// Recognised (see `Runner.cs` / `JobDispatcher.cs` of actions/runner):
/// `<ts>: Listening for Jobs`, `<ts>: Running job: <name>`,
/// `<ts>: Job <name> completed with result: <Result>`. Anything else is `None`.
pub fn parse_github_line(line: &str) -> Option<AgentEvent> {
    let line = line.trim_end_matches(|c: char| c.is_whitespace() || c == ',');
    if line.contains("Listening for Jobs") {
        return Some(AgentEvent::Ready);
    }
    const STARTED: &str = "Running job: ";
    if let Some(i) = line.find(STARTED) {
        let job = line[i + STARTED.len()..].trim();
        if !job.is_empty() {
            return Some(AgentEvent::JobStarted {
                job: job.to_string(),
            });
        }
    }
    const RESULT: &str = " completed with result: ";
    if let Some(r) = line.rfind(RESULT) {
        let head = &line[..r];
        // The name starts after "<ts>: Job " when there is a timestamp, else after the first "Job ".
        let start = after_github_timestamp(head)
            .and_then(|rest| rest.strip_prefix("Job "))
            .map(|name| head.len() - name.len())
            .or_else(|| head.find("Job ").map(|i| i + 4))?;
        let job = head[start..].trim();
        let word: String = line[r + RESULT.len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        if job.is_empty() || word.is_empty() {
            return None;
        }
        return Some(AgentEvent::JobFinished {
            job: job.to_string(),
            result: JobResult::parse(&word),
        });
    }
    None
}

/// Returns the text after the first `yyyy-MM-dd HH:mm:ssZ: ` in `s`, if any.
fn after_github_timestamp(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    const LEN: usize = "2024-01-01 12:00:00Z: ".len();
    (0..b.len().saturating_sub(LEN - 1)).find_map(|i| {
        let w = &b[i..i + LEN];
        let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
        let ok = digits.iter().all(|&k| w[k].is_ascii_digit())
            && w[4] == b'-'
            && w[7] == b'-'
            && w[10] == b' '
            && w[13] == b':'
            && w[16] == b':'
            && w[19] == b'Z'
            && w[20] == b':'
            && w[21] == b' ';
        ok.then(|| &s[i + LEN..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(j: &str) -> Option<AgentEvent> {
        Some(AgentEvent::JobStarted { job: j.into() })
    }
    fn finished(j: &str, r: JobResult) -> Option<AgentEvent> {
        Some(AgentEvent::JobFinished {
            job: j.into(),
            result: r,
        })
    }

    #[test]
    fn recognises_the_three_lines() {
        assert_eq!(
            parse_github_line("2022-06-05 16:25:56Z: Listening for Jobs"),
            Some(AgentEvent::Ready)
        );
        assert_eq!(
            parse_github_line("2022-06-05 16:26:35Z: Running job: train"),
            started("train")
        );
        assert_eq!(
            parse_github_line("2022-06-05 16:28:03Z: Job train completed with result: Failed"),
            finished("train", JobResult::Failed)
        );
    }

    #[test]
    fn copes_with_prefixes_suffixes_and_odd_names() {
        assert_eq!(
            parse_github_line(
                "runner_1  | 2022-11-22 10:50:59Z: Running job: build (ubuntu, 3.9)  "
            ),
            started("build (ubuntu, 3.9)")
        );
        assert_eq!(
            parse_github_line(
                "runner_1  | 2022-11-22 10:51:18Z: Job Job runner completed with result: Succeeded ,"
            ),
            finished("Job runner", JobResult::Succeeded)
        );
        assert_eq!(
            parse_github_line("Job web completed with result: Canceled"),
            finished("web", JobResult::Canceled)
        );
        assert_eq!(parse_github_line("√ Connected to GitHub"), None);
        assert_eq!(parse_github_line("Current runner version: '2.299.1'"), None);
        assert_eq!(parse_github_line(""), None);
    }

    #[test]
    fn results_map_to_success() {
        assert!(JobResult::parse("Succeeded").success());
        assert!(JobResult::parse("SucceededWithIssues").success());
        for w in ["Failed", "Canceled", "Skipped", "Abandoned", "Weird"] {
            assert!(!JobResult::parse(w).success(), "{w}");
        }
    }
}
