//! The task stores a human manages from the CLI (`add`, `tasks`, `show`, `close`, `retry`,
//! `cancel`): the queues bg-run owns, as opposed to trackers, where people use the tracker itself.

use std::sync::Arc;

use bg_run_core::{NewTask, TaskId, TaskQueue};
use bg_run_sqlite::{SqliteQueue, Status as SqliteStatus};
use serde_json::Value;

use crate::args::StoreArgs;
use crate::config::FileConfig;
use crate::error::CliError;
use crate::queues;

pub enum Store {
    Sqlite(Arc<SqliteQueue>),
}

impl Store {
    /// Opens the store named by `--queue`. `create` is false for read-only commands, so looking
    /// at tasks never creates a database as a side effect.
    pub async fn open(args: &StoreArgs, file: &FileConfig, create: bool) -> Result<Store, CliError> {
        match args.queue.as_str() {
            "sqlite" => {
                let section = queues::sqlite_section_from_opts(&args.opts).over(&file.sqlite);
                Ok(Store::Sqlite(Arc::new(queues::open_sqlite(&section, create).await?)))
            }
            "github" => Err(CliError::config(
                "GitHub issues are managed on GitHub itself: open an issue with the trigger label instead of `bg-run add`",
            )),
            other => Err(queues::unknown_queue(other)),
        }
    }

    pub fn queue(&self) -> Arc<dyn TaskQueue> {
        match self {
            Store::Sqlite(q) => q.clone(),
        }
    }

    pub async fn enqueue(&self, task: NewTask) -> Result<TaskId, CliError> {
        Ok(self.queue().enqueue(task).await?)
    }

    pub async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<TaskId>, CliError> {
        match self {
            Store::Sqlite(q) => Ok(q.enqueue_many(tasks).await?),
        }
    }

    pub async fn list(&self, status: Option<&str>) -> Result<Vec<Value>, CliError> {
        match self {
            Store::Sqlite(q) => {
                let status = status.map(parse_status::<SqliteStatus>).transpose()?;
                to_values(q.list(status).await?)
            }
        }
    }

    pub async fn get(&self, id: &str) -> Result<Value, CliError> {
        match self {
            Store::Sqlite(q) => to_value(q.get(id).await?),
        }
    }

    pub async fn close(&self, id: &str) -> Result<Value, CliError> {
        match self {
            Store::Sqlite(q) => to_value(q.close(id).await?),
        }
    }

    pub async fn retry(&self, id: &str) -> Result<Value, CliError> {
        match self {
            Store::Sqlite(q) => to_value(q.retry(id).await?),
        }
    }

    pub async fn cancel(&self, id: &str) -> Result<Value, CliError> {
        match self {
            Store::Sqlite(q) => to_value(q.cancel(id).await?),
        }
    }
}

fn parse_status<S: std::str::FromStr>(text: &str) -> Result<S, CliError>
where
    S::Err: std::fmt::Display,
{
    text.parse::<S>().map_err(|e| CliError::config(format!("--status: {e}")))
}

fn to_value(record: impl serde::Serialize) -> Result<Value, CliError> {
    serde_json::to_value(record).map_err(|e| CliError::failed(format!("cannot encode task: {e}")))
}

fn to_values<T: serde::Serialize>(records: Vec<T>) -> Result<Vec<Value>, CliError> {
    records.into_iter().map(to_value).collect()
}
