//! The mapping between rows and the core task model and records.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use bg_run_core::{AttemptRecord, Status, Task, TaskId, TaskRecord};
use chrono::{DateTime, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::Row;

/// A core [`Status`] or [`bg_run_core::AttemptOutcome`] as it crosses the SQL boundary: stored as its name
/// (`Display`), read back through `FromStr`. The core types cannot implement rusqlite's traits in
/// this crate, so every status and outcome column is written and read through this wrapper.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Named<T>(pub T);

impl<T: fmt::Display> ToSql for Named<T> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.to_string()))
    }
}

impl<T: FromStr<Err = bg_run_core::Error>> FromSql for Named<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map(Named).map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// Milliseconds since the Unix epoch, the unit every time column uses.
pub(crate) fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn now_ms() -> i64 {
    to_ms(Utc::now())
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn json<T: serde::de::DeserializeOwned>(row: &Row<'_>, column: &str) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("column {column}: {e}").into(),
        )
    })
}

fn json_opt<T: serde::de::DeserializeOwned>(row: &Row<'_>, column: &str) -> rusqlite::Result<Option<T>> {
    match row.get::<_, Option<String>>(column)? {
        None => Ok(None),
        Some(_) => json(row, column).map(Some),
    }
}

pub(crate) fn labels_json(labels: &[String]) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "[]".to_owned())
}

/// Columns a [`TaskRecord`] is read from.
pub(crate) const RECORD_COLUMNS: &str = "id, queue, title, body, labels, priority, status, attempts, \
     coalesce(max_attempts, claim_max_attempts) AS max_attempts, unique_key, created_at, updated_at, run_at, \
     claimed_by, lease_until, summary, last_error, exit_code, duration_ms, cost_usd, turns, tokens, session_id";

pub(crate) fn task_record(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    Ok(TaskRecord {
        id: row.get("id")?,
        title: row.get("title")?,
        body: row.get("body")?,
        status: row.get::<_, Named<Status>>("status")?.0,
        attempts: row.get("attempts")?,
        max_attempts: row.get("max_attempts")?,
        queue: row.get("queue")?,
        labels: json(row, "labels")?,
        priority: row.get("priority")?,
        unique_key: row.get("unique_key")?,
        created_at: from_ms(row.get("created_at")?),
        updated_at: from_ms(row.get("updated_at")?),
        run_at: from_ms(row.get("run_at")?),
        claimed_by: row.get("claimed_by")?,
        lease_until: row.get::<_, Option<i64>>("lease_until")?.map(from_ms),
        summary: row.get("summary")?,
        last_error: row.get("last_error")?,
        exit_code: row.get("exit_code")?,
        cost_usd: row.get("cost_usd")?,
        turns: row.get("turns")?,
        tokens: json_opt(row, "tokens")?,
        duration_ms: row.get("duration_ms")?,
        session_id: row.get("session_id")?,
        history: Vec::new(),
    })
}

/// Columns an [`AttemptRecord`] is read from (plus its task id first).
pub(crate) const ATTEMPT_COLUMNS: &str = "task_id, number, started_at, finished_at, outcome, message, worker";

pub(crate) fn attempt_record(row: &Row<'_>) -> rusqlite::Result<(i64, AttemptRecord)> {
    Ok((
        row.get("task_id")?,
        AttemptRecord {
            number: row.get("number")?,
            started_at: row.get::<_, Option<i64>>("started_at")?.map(from_ms),
            finished_at: from_ms(row.get("finished_at")?),
            outcome: row.get::<_, Named<_>>("outcome")?.0,
            message: row.get("message")?,
            worker: row.get("worker")?,
            // Usage is kept per task (the last attempt's), not per attempt.
            exit_code: None,
            cost_usd: None,
            turns: None,
            duration_ms: None,
            session_id: None,
        },
    ))
}

/// Columns a core [`Task`] is read from, in the order [`task`] expects; claims append the lease.
pub(crate) const TASK_COLUMNS: &str =
    "id, title, body, labels, created_at, attempts, max_attempts, session_id, queue, priority";

pub(crate) fn task(row: &Row<'_>) -> rusqlite::Result<Task> {
    let id: i64 = row.get(0)?;
    let labels: String = row.get(3)?;
    let labels = serde_json::from_str(&labels).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Text,
            format!("task {id} labels: {e}").into(),
        )
    })?;
    let queue: String = row.get(8)?;
    let priority: i64 = row.get(9)?;
    let mut meta = BTreeMap::new();
    meta.insert("queue".to_owned(), queue);
    meta.insert("priority".to_owned(), priority.to_string());
    Ok(Task {
        id: TaskId(id.to_string()),
        title: row.get(1)?,
        body: row.get(2)?,
        url: None,
        labels,
        author: None,
        created_at: Some(from_ms(row.get(4)?)),
        attempts: row.get(5)?,
        max_attempts: row.get(6)?,
        last_session_id: row.get(7)?,
        meta,
    })
}
