//! `cml`: self-hosted CI runners, drop-in compatible with CML.

mod cli;
mod environ;
mod exit;
mod forge;
mod logging;
mod progress;
mod report;
mod runner;
mod settings;
mod workflow;

use clap::Parser;
use cli::{
    AssetCommand, CheckCommand, Cli, Command, CommentCommand, PrCommand, RepoCommand,
    RunnerCommand, TensorboardCommand, WorkflowCommand,
};
use exit::Failure;
use settings::ProcessEnv;
use std::io::IsTerminal;

fn main() {
    // First, while this is the only thread: the credentials leave the environment (and
    // `--token`'s value the visible command line); the settings read them from memory.
    let args = environ::take_secrets();
    let cli = Cli::parse_from(args);
    // `cml runner` logs on standard output, like CML; the report commands print their result
    // there, so they log on standard error.
    let (sink, json) = match cli.command {
        Command::Runner { .. } => (logging::Sink::Stdout, !std::io::stdout().is_terminal()),
        _ => (logging::Sink::Stderr, !std::io::stderr().is_terminal()),
    };
    let level = match settings::log_level(&cli.global, &ProcessEnv) {
        Ok(l) => l,
        Err(e) => {
            logging::init(settings::LogLevel::Info, json, sink);
            report(&Failure::usage(e.into()));
            std::process::exit(exit::USAGE);
        }
    };
    logging::init(level, json, sink);
    let code = match run(cli) {
        Ok(code) => code,
        Err(failure) => {
            report(&failure);
            failure.code
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<i32, Failure> {
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
            let s = report_settings()?;
            runtime()?.block_on(report::comment::run(s, args, update, &ProcessEnv))
        }
        Command::SendComment(args) => {
            let s = report_settings()?;
            runtime()?.block_on(report::comment::run(s, args, false, &ProcessEnv))
        }
        Command::Check {
            sub: CheckCommand::Create(args),
        }
        | Command::SendGithubCheck(args) => {
            let s = report_settings()?;
            runtime()?.block_on(report::check::run(s, args))
        }
        Command::Asset {
            sub: AssetCommand::Publish(args),
        }
        | Command::Publish(args) => {
            let s = report_settings()?;
            runtime()?.block_on(report::asset::run(s, args, &ProcessEnv))
        }
        Command::Pr { sub, args } => {
            let args = match sub {
                Some(PrCommand::Create(a)) => a,
                None => args,
            };
            let s = report_settings()?;
            runtime()?.block_on(report::pr::run(s, args))
        }
        Command::Ci(args)
        | Command::Repo {
            sub: RepoCommand::Prepare(args),
        } => {
            let s = report_settings()?;
            runtime()?.block_on(report::ci::run(s, args))
        }
        Command::Workflow {
            sub: WorkflowCommand::Rerun(args),
        }
        | Command::RerunWorkflow(args) => {
            let s = report_settings()?;
            runtime()?.block_on(workflow::run(s, args, &ProcessEnv))
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
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::error(e.into()))?;
            rt.block_on(runner::cleanup::run(s)).map(|c| c.code())
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
            // One thread is enough: the supervisor waits on a pipe, a timer and signals.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::error(e.into()))?;
            let self_terminate = s.self_terminate.then_some(s.destroy_delay);
            let result = rt.block_on(runner::launch(s)).map(|c| c.code());
            if let Some(delay) = self_terminate {
                if let Err(f) = &result {
                    report(f);
                }
                rt.block_on(runner::terminate_this_machine(delay));
            }
            result
        }
    }
}

fn report(f: &Failure) {
    tracing::error!("{:#}", f.error);
}
