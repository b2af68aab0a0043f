//! What the admin API returns, and the mapping between rows and the core task model.

use std::collections::BTreeMap;

use bg_run_core::{Task, TaskId, Tokens};
use chrono::{DateTime, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::Row;
use serde::{Deserialize, Serialize};

use crate::status::Status;

/// A task with everything the queue knows about it, as `bg-run list` and `bg-run show` print it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskRecord {
    pub id: i64,
    pub title: String,
    pub body: String,
    pub status: Status,
    /// Attempts started, including one running now.
    pub attempts: u32,
    /// The task's own attempt limit, or else the limit of the worker that last claimed it;
    /// `None` while neither is known.
    pub max_attempts: Option<u32>,
    pub queue: String,
    pub labels: Vec<String>,
    pub priority: i32,
    pub unique_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Not eligible before this time (a retry's backoff, or a scheduled task).
    pub run_at: DateTime<Utc>,
    /// The worker that holds (or last held) the task.
    pub claimed_by: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    /// The agent's final message from the attempt that finished it.
    pub summary: Option<String>,
    /// Reason (and stderr tail) of the last failed attempt.
    pub last_error: Option<String>,
    pub exit_code: Option<i32>,
    pub cost_usd: Option<f64>,
    pub turns: Option<u32>,
    pub tokens: Option<Tokens>,
    pub duration_ms: Option<u64>,
    /// The agent session of the last attempt that reported one.
    pub session_id: Option<String>,
    /// Every finished attempt, oldest first.
    pub history: Vec<AttemptRecord>,
}

/// One finished attempt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttemptRecord {
    /// The attempt's number at the time (a released attempt's number is used again).
    pub number: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    pub outcome: AttemptOutcome,
    /// The summary on success, the reason otherwise.
    pub message: Option<String>,
    /// The worker that ran it.
    pub worker: Option<String>,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The agent finished; the task went to review.
    Done,
    /// The agent failed; the task will be retried.
    Failed,
    /// The agent failed and the task was given up.
    GaveUp,
    /// The worker shut down and gave the task back; the attempt does not count.
    Released,
    /// The worker stopped heartbeating and another worker took the task over.
    Expired,
    /// A human cancelled the task while it ran.
    Cancelled,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Done => "done",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::GaveUp => "gave_up",
            AttemptOutcome::Released => "released",
            AttemptOutcome::Expired => "expired",
            AttemptOutcome::Cancelled => "cancelled",
        }
    }

    const ALL: [AttemptOutcome; 6] = [
        AttemptOutcome::Done,
        AttemptOutcome::Failed,
        AttemptOutcome::GaveUp,
        AttemptOutcome::Released,
        AttemptOutcome::Expired,
        AttemptOutcome::Cancelled,
    ];
}

impl ToSql for Status {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Status {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

impl ToSql for AttemptOutcome {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for AttemptOutcome {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        AttemptOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == text)
            .ok_or_else(|| FromSqlError::Other(format!("unknown attempt outcome '{text}'").into()))
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
        status: row.get("status")?,
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
            outcome: row.get("outcome")?,
            message: row.get("message")?,
            worker: row.get("worker")?,
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

/// Parses a task id as users type it (`42` or `#42`).
pub(crate) fn parse_id(id: &str) -> bg_run_core::Result<i64> {
    let digits = id.trim().trim_start_matches('#');
    digits
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| bg_run_core::Error::config(format!("task id must be a positive number like 42, got '{id}'")))
}
