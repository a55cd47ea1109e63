//! `cml`: self-hosted CI runners, drop-in compatible with CML.

mod cli;
mod environ;
mod exit;
mod forge;
mod logging;
mod options;
mod pool;
mod progress;
mod report;
mod runner;
mod settings;
mod workflow;

use cli::{
    AssetCommand, CheckCommand, Cli, Command, CommentCommand, PrCommand, RepoCommand,
    RunnerCommand, TensorboardCommand, WorkflowCommand,
};
use exit::Failure;
use settings::{Env, ProcessEnv};
use std::io::IsTerminal;

/// Set to `1`, `cml runner` (launch, cleanup), the report commands and `workflow rerun` print
/// their resolved options and settings as JSON on standard output (credentials as `***`) and
/// exit 0 without doing anything: a debugging aid.
const PRINT_SETTINGS_VAR: &str = "CML_PRINT_SETTINGS";

fn main() {
    // First, while this is the only thread: the credentials leave the environment (and
    // secret options' values the visible command line); the settings read them from memory.
    let args = environ::take_secrets();
    let parsed = match options::parse(args, &ProcessEnv) {
        Ok(p) => p,
        // Help and --version on standard output (exit 0), errors on standard error (exit 2).
        Err(e) => e.exit(),
    };
    // Every command logs on standard error, as CML does, so standard output holds only a
    // command's result; JSON lines when standard output is not a terminal (CML's rule).
    let json = !std::io::stdout().is_terminal();
    let level = match settings::log_level(&parsed.cli.global) {
        Ok(l) => l,
        Err(e) => {
            logging::init(settings::LogLevel::Info, json);
            report(&Failure::usage(e.into()));
            std::process::exit(exit::USAGE);
        }
    };
    logging::init(level, json);
    for warning in &parsed.warnings {
        tracing::warn!("{warning}");
    }
    let print = ProcessEnv
        .get(PRINT_SETTINGS_VAR)
        .is_some_and(|v| v.trim() == "1");
    let shown = Shown {
        print,
        path: parsed.path.join(" "),
        options: parsed.options,
    };
    let code = match run(parsed.cli, &shown) {
        Ok(code) => code,
        Err(failure) => {
            report(&failure);
            failure.code
        }
    };
    std::process::exit(code);
}

/// What `CML_PRINT_SETTINGS=1` prints, besides each command's settings.
struct Shown {
    print: bool,
    /// The command run: `comment create`.
    path: String,
    options: serde_json::Value,
}

impl Shown {
    /// With `CML_PRINT_SETTINGS=1`: prints the command, its options and `settings` as one JSON
    /// line on standard output, with every registered secret masked, and answers `true`.
    fn printed(&self, settings: serde_json::Value) -> bool {
        if !self.print {
            return false;
        }
        let mut out = self.options.clone();
        out["command"] = serde_json::Value::String(self.path.clone());
        out["settings"] = settings;
        println!("{}", logging::redact(&out.to_string()));
        true
    }
}

fn run(cli: Cli, shown: &Shown) -> Result<i32, Failure> {
    let report_settings = || {
        let event =
            std::env::var_os("GITHUB_EVENT_PATH").and_then(|p| std::fs::read_to_string(p).ok());
        settings::resolve_report(
            &cli.global,
            &ProcessEnv,
            settings::git_origin,
            event.as_deref(),
        )
        .map_err(|e| Failure::usage(e.into()))
    };
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::error(e.into()))
    };
    match cli.command {
        Command::Comment { sub } => {
            let (args, update) = match sub {
                CommentCommand::Create(a) => (a, false),
                CommentCommand::Update(a) => (a, true),
            };
            comment(report_settings()?, args, update, shown, runtime)
        }
        Command::SendComment(args) => comment(report_settings()?, args, false, shown, runtime),
        Command::Check {
            sub: CheckCommand::Create(args),
        }
        | Command::SendGithubCheck(args) => {
            let s = report_settings()?;
            let plan = report::check::plan(&args)?;
            if shown.printed(serde_json::json!({"forge": s.to_json(), "check": plan.to_json()})) {
                return Ok(0);
            }
            runtime()?.block_on(report::check::run(s, args, plan))
        }
        Command::Asset {
            sub: AssetCommand::Publish(args),
        }
        | Command::Publish(args) => {
            let s = report_settings()?;
            let server = report::asset::server(&args);
            let settings = serde_json::json!({"forge": s.to_json(), "asset_server": server});
            if shown.printed(settings) {
                return Ok(0);
            }
            runtime()?.block_on(report::asset::run(s, args))
        }
        Command::Pr { sub, args } => {
            let args = match sub {
                Some(PrCommand::Create(a)) => a,
                None => args,
            };
            let s = report_settings()?;
            let method = report::pr::merge_method(&args)?;
            let settings = serde_json::json!({
                "forge": s.to_json(),
                "merge": method.map(|m| format!("{m:?}").to_ascii_lowercase()),
            });
            if shown.printed(settings) {
                return Ok(0);
            }
            runtime()?.block_on(report::pr::run(s, args, method))
        }
        Command::Ci(args)
        | Command::Repo {
            sub: RepoCommand::Prepare(args),
        } => {
            let s = report_settings()?;
            let fetch = report::ci::fetch(&args)?;
            let settings = serde_json::json!({"forge": s.to_json(), "fetch": fetch.to_json()});
            if shown.printed(settings) {
                return Ok(0);
            }
            runtime()?.block_on(report::ci::run(s, args, fetch))
        }
        Command::Workflow {
            sub: WorkflowCommand::Rerun(args),
        }
        | Command::RerunWorkflow(args) => {
            let s = report_settings()?;
            let id = workflow::run_id(&args, s.driver, &ProcessEnv)?;
            if shown.printed(serde_json::json!({"forge": s.to_json(), "id": id})) {
                return Ok(0);
            }
            runtime()?.block_on(workflow::run(s, id))
        }
        Command::Tensorboard {
            sub: TensorboardCommand::Connect(_),
        }
        | Command::TensorboardDev(_) => workflow::tensorboard(),
        Command::External(argv) => Err(workflow::external(&argv)),
        Command::Runner {
            sub: Some(RunnerCommand::Cleanup(args)),
            ..
        } => {
            let s =
                settings::resolve_cleanup(&cli.global, &args, &ProcessEnv, settings::git_origin)
                    .map_err(|e| Failure::usage(e.into()))?;
            if shown.printed(s.to_json()) {
                return Ok(0);
            }
            runtime()?
                .block_on(runner::cleanup::run(s))
                .map(|c| c.code())
        }
        Command::Runner {
            sub: Some(RunnerCommand::Pool(args)),
            ..
        } => {
            let mut s = settings::resolve_runner(
                &cli.global,
                &args.runner,
                &ProcessEnv,
                settings::git_origin,
            )
            .map_err(|e| Failure::usage(e.into()))?;
            if args
                .runner
                .name
                .as_deref()
                .is_none_or(|n| n.trim().is_empty())
            {
                // A pool's name outlives it (its scale set, its runners' names): stable.
                s.name = pool::DEFAULT_NAME.to_string();
            }
            if let settings::Credential::Token { token, .. } = &s.credential {
                logging::add_secrets([token.expose().to_string()]);
            }
            let p = pool::resolve(&args, &s, &ProcessEnv).map_err(Failure::usage)?;
            if shown.printed(s.to_json()) {
                return Ok(0);
            }
            logging::set_repo(&s.repo.to_string());
            runtime()?.block_on(pool::run(s, p)).map(|c| c.code())
        }
        Command::Runner { sub, args } => {
            let args = match sub {
                Some(RunnerCommand::Launch(a)) => *a,
                _ => *args,
            };
            let s = settings::resolve_runner(&cli.global, &args, &ProcessEnv, settings::git_origin)
                .map_err(|e| Failure::usage(e.into()))?;
            if let settings::Credential::Token { token, .. } = &s.credential {
                logging::add_secrets([token.expose().to_string()]);
            }
            // What CML's own machines pass and means nothing here is said, never its value.
            logging::add_secrets(args.gcp_access_token.iter().cloned());
            logging::add_secrets(args.tf_resource.iter().cloned());
            for note in settings::ignored_options(&args) {
                tracing::warn!("{note}");
            }
            if shown.printed(s.to_json()) {
                return Ok(0);
            }
            logging::set_repo(&s.repo.to_string());
            // One thread is enough: the supervisor waits on a pipe, a timer and signals.
            let rt = runtime()?;
            let self_terminate = s.self_terminate.then_some(s.destroy_delay);
            let machine_credentials = s.azure_machine_credentials.clone().unwrap_or_default();
            let result = rt.block_on(runner::launch(s)).map(|c| c.code());
            if let Some(delay) = self_terminate {
                if let Err(f) = &result {
                    report(f);
                }
                rt.block_on(runner::terminate_this_machine(delay, &machine_credentials));
            }
            result
        }
    }
}

/// `cml comment create|update`, `cml send-comment`.
fn comment(
    s: settings::ReportSettings,
    args: cli::CommentArgs,
    update: bool,
    shown: &Shown,
    runtime: impl FnOnce() -> Result<tokio::runtime::Runtime, Failure>,
) -> Result<i32, Failure> {
    let plan = report::comment::plan(&args, update)?;
    if shown.printed(serde_json::json!({"forge": s.to_json(), "comment": plan.to_json()})) {
        return Ok(0);
    }
    runtime()?.block_on(report::comment::run(s, args, plan))
}

fn report(f: &Failure) {
    tracing::error!("{:#}", f.error);
}
