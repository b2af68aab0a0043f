//! The task stores a human manages from the CLI (`add`, `tasks`, `show`, `close`, `retry`,
//! `cancel`): the queues bg-run owns, as opposed to trackers, where people use the tracker itself.

use std::sync::Arc;

use bg_run_core::{NewTask, TaskId, TaskQueue};
use bg_run_postgres::{PostgresQueue, Status as PostgresStatus};
use bg_run_sqlite::{SqliteQueue, Status as SqliteStatus};
use serde_json::Value;

use crate::args::StoreArgs;
use crate::config::FileConfig;
use crate::error::CliError;
use crate::queues;

pub enum Store {
    Sqlite(Arc<SqliteQueue>),
    Postgres(Arc<PostgresQueue>),
}

impl Store {
    /// Opens the store named by `--queue`. `create` is false for read-only commands, so looking
    /// at tasks never creates a database as a side effect.
    pub async fn open(args: &StoreArgs, file: &FileConfig, create: bool) -> Result<Store, CliError> {
        Self::open_with_batch(args, file, create, None).await
    }

    /// As [`Store::open`], with the PostgreSQL claim/report batch size set (the benchmark).
    pub async fn open_with_batch(
        args: &StoreArgs,
        file: &FileConfig,
        create: bool,
        batch: Option<usize>,
    ) -> Result<Store, CliError> {
        match args.queue.as_str() {
            "sqlite" => {
                let section = queues::sqlite_section_from_opts(&args.opts).over(&file.sqlite);
                Ok(Store::Sqlite(Arc::new(queues::open_sqlite(&section, create).await?)))
            }
            "postgres" => {
                let section = queues::postgres_section_from_opts(&args.opts).over(&file.postgres);
                Ok(Store::Postgres(Arc::new(queues::open_postgres(&section, batch).await?)))
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
            Store::Postgres(q) => q.clone(),
        }
    }

    pub async fn enqueue(&self, task: NewTask) -> Result<TaskId, CliError> {
        Ok(self.queue().enqueue(task).await?)
    }

    pub async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<TaskId>, CliError> {
        match self {
            Store::Sqlite(q) => Ok(q.enqueue_many(tasks).await?),
            Store::Postgres(q) => Ok(q.enqueue_many(tasks).await?),
        }
    }

    pub async fn list(&self, status: Option<&str>) -> Result<Vec<Value>, CliError> {
        match self {
            Store::Sqlite(q) => {
                let status = status.map(parse_status::<SqliteStatus>).transpose()?;
                to_values(q.list(status).await?)
            }
            Store::Postgres(q) => {
                let status = status.map(parse_status::<PostgresStatus>).transpose()?;
                to_values(q.list(status).await?)
            }
        }
    }

    pub async fn get(&self, id: &str) -> Result<Value, CliError> {
        match self {
            Store::Sqlite(q) => to_value(q.get(id).await?),
            Store::Postgres(q) => to_value(q.get(numeric_id(id)?).await?),
        }
    }

    pub async fn close(&self, id: &str) -> Result<Value, CliError> {
        match self {
            Store::Sqlite(q) => to_value(q.close(id).await?),
            Store::Postgres(q) => to_value(q.close(numeric_id(id)?).await?),
        }
    }

    pub async fn retry(&self, id: &str) -> Result<Value, CliError> {
        match self {
            Store::Sqlite(q) => to_value(q.retry(id).await?),
            Store::Postgres(q) => to_value(q.retry(numeric_id(id)?).await?),
        }
    }

    pub async fn cancel(&self, id: &str) -> Result<Value, CliError> {
        match self {
            Store::Sqlite(q) => to_value(q.cancel(id).await?),
            Store::Postgres(q) => to_value(q.cancel(numeric_id(id)?).await?),
        }
    }
}

fn numeric_id(id: &str) -> Result<i64, CliError> {
    id.trim().parse().map_err(|_| {
        CliError::config(format!("'{id}' is not a task id: ids are numbers, as `bg-run tasks` lists them"))
    })
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
