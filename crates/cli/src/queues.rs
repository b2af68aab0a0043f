//! The queue registry: the one place that knows every adapter. Adding a tracker is a new crate
//! plus one arm in [`open`].

use std::path::PathBuf;
use std::sync::Arc;

use bg_run_core::TaskQueue;
use bg_run_sqlite::{SqliteOptions, SqliteQueue};

use crate::args::QueueOpts;
use crate::config::SqliteSection;
use crate::error::CliError;
use crate::plan::AgentPlan;

pub const KNOWN_QUEUES: &[&str] = &["sqlite"];

pub fn unknown_queue(kind: &str) -> CliError {
    CliError::config(format!("unknown queue '{kind}' (known queues: {})", KNOWN_QUEUES.join(", ")))
}

/// Opens the queue an agent takes its tasks from.
pub async fn open(plan: &AgentPlan) -> Result<Arc<dyn TaskQueue>, CliError> {
    let s = &plan.settings;
    match plan.queue_kind() {
        "sqlite" => Ok(Arc::new(open_sqlite(&s.sqlite.clone().unwrap_or_default(), true).await?)),
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
