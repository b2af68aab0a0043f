//! The queue registry: the one place that knows every adapter. Adding a tracker is a new crate
//! plus one arm in [`open`].

use std::path::PathBuf;
use std::sync::Arc;

use bg_run_core::TaskQueue;
use bg_run_postgres::{PostgresOptions, PostgresQueue, TableMapping};
use bg_run_sqlite::{SqliteOptions, SqliteQueue};

use crate::args::QueueOpts;
use crate::config::{PostgresSection, SqliteSection, TableSection};
use crate::error::CliError;
use crate::plan::AgentPlan;

pub const KNOWN_QUEUES: &[&str] = &["sqlite", "postgres"];

pub fn unknown_queue(kind: &str) -> CliError {
    CliError::config(format!("unknown queue '{kind}' (known queues: {})", KNOWN_QUEUES.join(", ")))
}

/// Opens the queue an agent takes its tasks from.
pub async fn open(plan: &AgentPlan) -> Result<Arc<dyn TaskQueue>, CliError> {
    let s = &plan.settings;
    match plan.queue_kind() {
        "sqlite" => Ok(Arc::new(open_sqlite(&s.sqlite.clone().unwrap_or_default(), true).await?)),
        "postgres" => Ok(Arc::new(open_postgres(&s.postgres.clone().unwrap_or_default(), None).await?)),
        other => Err(unknown_queue(other)),
    }
}

pub async fn open_sqlite(section: &SqliteSection, create: bool) -> Result<SqliteQueue, CliError> {
    let options =
        SqliteOptions::new(section.path.clone().unwrap_or_else(|| PathBuf::from(SqliteOptions::DEFAULT_PATH)))
            .queue(section.queue_name.clone().unwrap_or_else(|| SqliteOptions::DEFAULT_QUEUE.to_owned()))
            .labels(section.labels.clone().unwrap_or_default())
            .create(create);
    Ok(SqliteQueue::open(options).await?)
}

pub fn sqlite_section_from_opts(opts: &QueueOpts) -> SqliteSection {
    SqliteSection {
        path: opts.db.clone(),
        queue_name: opts.queue_name.clone(),
        labels: (!opts.label_filter.is_empty()).then(|| opts.label_filter.clone()),
    }
}

/// Connects to PostgreSQL. The URL comes from `DATABASE_URL`, else the config (a secret in a
/// file is allowed but discouraged). `batch` overrides the configured batch size (bench).
pub async fn open_postgres(section: &PostgresSection, batch: Option<usize>) -> Result<PostgresQueue, CliError> {
    let url = std::env::var("DATABASE_URL").ok().filter(|u| !u.trim().is_empty()).or_else(|| section.url.clone());
    let Some(url) = url else {
        return Err(CliError::config(
            "postgres: no database URL; set DATABASE_URL (or `url` in the [postgres] section of bg-run.toml)",
        ));
    };
    bg_run_core::redact::register_secret(&url);
    let mut options = PostgresOptions::new(url)
        .schema(section.schema.clone().unwrap_or_else(|| PostgresOptions::DEFAULT_SCHEMA.to_owned()))
        .queue(section.queue_name.clone().unwrap_or_else(|| PostgresOptions::DEFAULT_QUEUE.to_owned()))
        .labels(section.labels.clone().unwrap_or_default());
    if let Some(batch) = batch.or(section.batch) {
        options = options.batch(batch);
    }
    if let Some(pool_size) = section.pool_size {
        options = options.pool_size(pool_size);
    }
    if let Some(table) = &section.table {
        options = options.mapping(table_mapping(table));
    }
    Ok(PostgresQueue::connect(options).await?)
}

fn table_mapping(table: &TableSection) -> TableMapping {
    let mut mapping = TableMapping::new(table.name.clone());
    let set = |target: &mut String, value: &Option<String>| {
        if let Some(value) = value {
            target.clone_from(value);
        }
    };
    set(&mut mapping.id_column, &table.id_column);
    set(&mut mapping.title_column, &table.title_column);
    set(&mut mapping.status_column, &table.status_column);
    set(&mut mapping.pending_value, &table.pending_value);
    set(&mut mapping.running_value, &table.running_value);
    set(&mut mapping.done_value, &table.done_value);
    set(&mut mapping.failed_value, &table.failed_value);
    if let Some(body) = &table.body_column {
        mapping.body_column = Some(body.clone()).filter(|b| !b.is_empty());
    }
    mapping
}

pub fn postgres_section_from_opts(opts: &QueueOpts) -> PostgresSection {
    PostgresSection {
        schema: opts.pg_schema.clone(),
        queue_name: opts.queue_name.clone(),
        labels: (!opts.label_filter.is_empty()).then(|| opts.label_filter.clone()),
        ..Default::default()
    }
}
