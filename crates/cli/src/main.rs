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

use clap::Parser;

use crate::args::{Cli, Command};
use crate::error::CliError;

fn main() {
    let cli = Cli::parse();
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
    }
}
