//! `cml check create` (old name `cml send-github-check`): a GitHub check run on the head
//! commit with the report as its summary.

use super::{head_commit, read_text};
use crate::cli::CheckArgs;
use crate::exit::Failure;
use crate::settings::ReportSettings;
use anyhow::anyhow;
use cml_forge::CheckRun;

const STATUSES: &[&str] = &["queued", "in_progress", "completed"];
const CONCLUSIONS: &[&str] = &[
    "success",
    "failure",
    "neutral",
    "cancelled",
    "skipped",
    "timed_out",
    "action_required",
];
/// GitHub's limit on a check run's summary, in characters.
const SUMMARY_LIMIT: usize = 65_535;

/// A check run's status and conclusion, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub status: String,
    pub conclusion: Option<String>,
}

impl Plan {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"status": self.status, "conclusion": self.conclusion})
    }
}

/// Checks `--status` and `--conclusion`.
pub fn plan(args: &CheckArgs) -> Result<Plan, Failure> {
    let status = args
        .status
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "completed".into());
    if !STATUSES.contains(&status.as_str()) {
        return Err(Failure::usage(anyhow!(
            "invalid --status {status:?}\nhint: use {}",
            STATUSES.join(", ")
        )));
    }
    let conclusion = match (
        &args.conclusion.clone().filter(|c| !c.is_empty()),
        status.as_str(),
    ) {
        (Some(c), _) if !CONCLUSIONS.contains(&c.as_str()) => {
            return Err(Failure::usage(anyhow!(
                "invalid --conclusion {c:?}\nhint: use {}",
                CONCLUSIONS.join(", ")
            )))
        }
        (Some(c), "completed") => Some(c.clone()),
        (None, "completed") => Some("success".into()),
        (Some(_), _) => {
            return Err(Failure::usage(anyhow!(
                "--conclusion needs --status=completed (the default)"
            )))
        }
        (None, _) => None,
    };
    Ok(Plan { status, conclusion })
}

/// Runs `cml check create` as `plan` says.
pub async fn run(s: ReportSettings, args: CheckArgs, plan: Plan) -> Result<i32, Failure> {
    let Plan { status, conclusion } = plan;
    let summary = read_text(&args.markdown_file)?;
    if summary.chars().count() > SUMMARY_LIMIT {
        return Err(Failure::usage(anyhow!(
            "the report {:?} is longer than the {SUMMARY_LIMIT} characters GitHub accepts in a check's summary\nhint: shorten it, or link to the long parts",
            args.markdown_file
        )));
    }
    if s.driver != cml_core::Driver::Github {
        return Err(Failure::usage(anyhow!(
            "check runs are a GitHub feature; {} is a {} repository\nhint: post the report with `cml comment create` instead",
            s.repo,
            s.driver
        )));
    }
    let head_sha = head_commit(args.commit_sha.as_deref(), &s)?;
    let title = args.title.clone().unwrap_or_else(|| "CML Report".into());
    let forge = super::connect(&s).await?;
    let check = CheckRun {
        name: title.clone(),
        head_sha,
        status,
        conclusion,
        title,
        summary,
    };
    let url = forge
        .create_check(&check)
        .await
        .map_err(|e| Failure::error(e.into()))?;
    tracing::info!(
        url = url.as_str(),
        "created check run \"{}\" on {}",
        check.name,
        check.head_sha
    );
    println!("{url}");
    Ok(0)
}
