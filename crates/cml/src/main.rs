//! `cml`: self-hosted CI runners, drop-in compatible with CML.

mod cli;
mod exit;
mod logging;
mod progress;
mod runner;
mod settings;

use clap::Parser;
use cli::{Cli, Command, RunnerCommand};
use exit::Failure;
use settings::ProcessEnv;
use std::io::IsTerminal;

fn main() {
    let cli = Cli::parse();
    let json = !std::io::stdout().is_terminal();
    let level = match settings::log_level(&cli.global, &ProcessEnv) {
        Ok(l) => l,
        Err(e) => {
            logging::init(settings::LogLevel::Info, json);
            report(&Failure::usage(e.into()));
            std::process::exit(exit::USAGE);
        }
    };
    logging::init(level, json);
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
    match cli.command {
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
                _ => args,
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
