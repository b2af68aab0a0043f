//! The `bg-run` binary: parses arguments, loads config, wires a queue to a dispatcher and runs.

mod args;
mod commands;
mod config;
mod dispatchers;
mod duration;
mod error;
mod logging;
mod plan;
mod queues;
mod signals;
mod store;

use clap::Parser as _;

use crate::args::{Cli, Command};
use crate::error::CliError;

fn main() {
    let cli = parse_args();
    logging::init(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => exit_with(CliError::failed(format!("cannot start the async runtime: {e}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => std::process::exit(code),
        Err(error) => exit_with(error),
    }
}

/// Clap's own errors span several lines; bg-run's rule is one line per error.
fn parse_args() -> Cli {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            exit_with(CliError::config(format!("{first} (see bg-run --help)")))
        }
    };
    if cli.command.is_some() && cli.worker != args::WorkerArgs::default() {
        exit_with(CliError::config(
            "worker options (--once, --queue, -- PROGRAM, ...) go without a subcommand; `bg-run run` takes its settings from bg-run.toml",
        ));
    }
    cli
}

fn exit_with(error: CliError) -> ! {
    eprintln!("error: {error}");
    std::process::exit(error.code)
}

async fn run(cli: Cli) -> Result<i32, CliError> {
    let config_path = cli.global.config.as_deref();
    match cli.command {
        None => commands::worker::run_adhoc(cli.worker, config_path).await,
        Some(Command::Run(args)) => commands::worker::run_named(args, config_path).await,
        Some(Command::Add(args)) => commands::tasks::add(args, config_path).await,
        Some(Command::Tasks(args)) => commands::tasks::list(args, config_path).await,
        Some(Command::Show(args)) => commands::tasks::show(args, config_path).await,
        Some(Command::Close(args)) => commands::tasks::close(args, config_path).await,
        Some(Command::Retry(args)) => commands::tasks::retry(args, config_path).await,
        Some(Command::Cancel(args)) => commands::tasks::cancel(args, config_path).await,
        Some(Command::Bench(args)) => commands::bench::run(args, config_path).await,
        Some(Command::Doctor(args)) => commands::doctor::run(args, config_path).await,
    }
}
