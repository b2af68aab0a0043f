//! The task stores a human manages from the CLI (`add`, `tasks`, `show`, `close`, `retry`,
//! `cancel`): the queues bg-run owns, as opposed to trackers, where people use the tracker itself.
//! Every store is one [`TaskStore`] trait object, so each command is written once for all of them.

use std::sync::Arc;

use bg_run_core::{Status, TaskStore};

use crate::args::StoreArgs;
use crate::config::FileConfig;
use crate::error::CliError;
use crate::queues;

/// A store opened from the command line; it is a queue too (`Arc<dyn TaskQueue>` by upcasting).
pub type Store = Arc<dyn TaskStore>;

/// Opens the store named by `--queue` to manage tasks. `create` is false for read-only commands,
/// so looking at tasks never creates a database as a side effect.
pub async fn open(args: &StoreArgs, file: &FileConfig, create: bool) -> Result<Store, CliError> {
    open_store(args, file, create, None, false).await
}

/// Opens the store for a worker to claim from (the benchmark): with PostgreSQL's wake-up
/// connection, and its claim/report batch size set.
pub async fn open_for_work(args: &StoreArgs, file: &FileConfig, batch: Option<usize>) -> Result<Store, CliError> {
    open_store(args, file, true, batch, true).await
}

async fn open_store(
    args: &StoreArgs,
    file: &FileConfig,
    create: bool,
    batch: Option<usize>,
    listen: bool,
) -> Result<Store, CliError> {
    match args.queue.as_str() {
        "sqlite" => {
            let section = queues::sqlite_section_from_opts(&args.opts).over(&file.sqlite);
            Ok(Arc::new(queues::open_sqlite(&section, create).await?))
        }
        "postgres" => {
            let section = queues::postgres_section_from_opts(&args.opts).over(&file.postgres);
            Ok(Arc::new(queues::open_postgres(&section, batch, listen).await?))
        }
        "github" => Err(CliError::config(
            "GitHub issues are listed, shown, closed and reopened on GitHub itself (`bg-run add --queue github` opens one)",
        )),
        other => Err(queues::unknown_queue(other)),
    }
}

/// The flags that name this store on a command line (empty for the default SQLite file), for
/// messages that suggest a command.
pub fn location_flags(args: &StoreArgs) -> String {
    let mut flags = String::new();
    let mut add = |flag: &str, value: &str| {
        let plain = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c));
        flags.push_str(&if plain {
            format!(" {flag} {value}")
        } else {
            format!(" {flag} '{}'", value.replace('\'', "'\\''"))
        });
    };
    if args.queue != "sqlite" {
        add("--queue", &args.queue);
    }
    if let Some(db) = &args.opts.db {
        add("--db", &db.to_string_lossy());
    }
    if let Some(name) = &args.opts.queue_name {
        add("--queue-name", name);
    }
    if let Some(schema) = &args.opts.pg_schema {
        add("--pg-schema", schema);
    }
    flags
}

/// The `--status` filter of `bg-run tasks`.
pub fn parse_status(text: &str) -> Result<Status, CliError> {
    text.parse::<Status>().map_err(|e| CliError::config(format!("--status: {e}")))
}
