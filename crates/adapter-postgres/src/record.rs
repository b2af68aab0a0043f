//! The mapping between rows and the core task model and records.

use std::collections::BTreeMap;

use bg_run_core::{AttemptRecord, Error, Task, TaskId, TaskRecord, Tokens};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::error::corrupt;

/// Columns a claim or poll returns to build a [`Task`].
pub(crate) const TASK_COLUMNS: &str =
    "id, queue, title, body, labels, priority, attempts, max_attempts, session_id, created_at";

/// Columns of [`TaskRecord`], in the order `record_from_row` reads them by name.
pub(crate) const RECORD_COLUMNS: &str = "id, title, body, status, attempts, \
    COALESCE(max_attempts, claimant_max_attempts) AS max_attempts, queue, labels, priority, unique_key, \
    created_at, updated_at, run_at, claimed_by, lease_until, summary, last_error, exit_code, cost_usd, turns, \
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, duration_ms, session_id";

pub(crate) const ATTEMPT_COLUMNS: &str =
    "task_id, attempt, started_at, finished_at, outcome, message, worker, exit_code, cost_usd, turns, duration_ms, session_id";

/// A task in `review` holds its successful last attempt in its own row: writing a history row
/// for every completion would cost the server a fifth more work per task. The attempt moves to
/// the attempts table when the task leaves `review` (closed or retried), so no other status
/// holds one. These are the attempts table's columns, and the task row's values for them.
pub(crate) const DONE_ATTEMPT_COLUMNS: &str = "task_id, attempt, worker, started_at, finished_at, outcome, message, \
    cost_usd, turns, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, duration_ms, session_id, exit_code";
pub(crate) const DONE_ATTEMPT_FROM_TASK: &str = "id, attempts, claimed_by, claimed_at, updated_at, 'done', summary, \
    cost_usd, turns, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, duration_ms, session_id, exit_code";

fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    row: &'r PgRow,
    column: &str,
) -> Result<T, Error> {
    row.try_get(column).map_err(|e| corrupt(format!("column {column}: {e}")))
}

fn unsigned(value: Option<i64>) -> Option<u64> {
    value.and_then(|v| u64::try_from(v).ok())
}

fn small(value: Option<i32>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}

/// A task as the worker sees it; `attempts` counts the claim that returned it, if any.
pub(crate) fn task_from_row(row: &PgRow) -> Result<Task, Error> {
    let id: i64 = get(row, "id")?;
    let queue: String = get(row, "queue")?;
    let priority: i32 = get(row, "priority")?;
    let mut meta = BTreeMap::new();
    meta.insert("queue".to_owned(), queue);
    meta.insert("priority".to_owned(), priority.to_string());
    Ok(Task {
        id: TaskId(id.to_string()),
        title: get(row, "title")?,
        body: get(row, "body")?,
        url: None,
        labels: get(row, "labels")?,
        author: None,
        created_at: Some(get(row, "created_at")?),
        attempts: small(get(row, "attempts")?).unwrap_or(0),
        max_attempts: small(get(row, "max_attempts")?),
        last_session_id: get(row, "session_id")?,
        meta,
    })
}

pub(crate) fn record_from_row(row: &PgRow) -> Result<TaskRecord, Error> {
    let status: String = get(row, "status")?;
    let input: Option<i64> = get(row, "input_tokens")?;
    let output: Option<i64> = get(row, "output_tokens")?;
    let cache_read: Option<i64> = get(row, "cache_read_tokens")?;
    let cache_write: Option<i64> = get(row, "cache_write_tokens")?;
    let tokens =
        (input.is_some() || output.is_some() || cache_read.is_some() || cache_write.is_some()).then(|| Tokens {
            input: unsigned(input).unwrap_or(0),
            output: unsigned(output).unwrap_or(0),
            cache_read: unsigned(cache_read).unwrap_or(0),
            cache_write: unsigned(cache_write).unwrap_or(0),
        });
    Ok(TaskRecord {
        id: get(row, "id")?,
        title: get(row, "title")?,
        body: get(row, "body")?,
        status: status.parse().map_err(|_| corrupt(format!("status '{status}'")))?,
        attempts: small(get(row, "attempts")?).unwrap_or(0),
        max_attempts: small(get(row, "max_attempts")?),
        queue: get(row, "queue")?,
        labels: get(row, "labels")?,
        priority: get(row, "priority")?,
        unique_key: get(row, "unique_key")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        run_at: get(row, "run_at")?,
        claimed_by: get(row, "claimed_by")?,
        lease_until: get(row, "lease_until")?,
        summary: get(row, "summary")?,
        last_error: get(row, "last_error")?,
        exit_code: get(row, "exit_code")?,
        cost_usd: get(row, "cost_usd")?,
        turns: small(get(row, "turns")?),
        tokens,
        duration_ms: unsigned(get(row, "duration_ms")?),
        session_id: get(row, "session_id")?,
        history: Vec::new(),
    })
}

pub(crate) fn attempt_from_row(row: &PgRow) -> Result<AttemptRecord, Error> {
    let outcome: String = get(row, "outcome")?;
    Ok(AttemptRecord {
        number: small(get(row, "attempt")?).unwrap_or(0),
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        outcome: outcome.parse().map_err(|_| corrupt(format!("attempt outcome '{outcome}'")))?,
        message: get(row, "message")?,
        worker: get(row, "worker")?,
        exit_code: get(row, "exit_code")?,
        cost_usd: get(row, "cost_usd")?,
        turns: small(get(row, "turns")?),
        duration_ms: unsigned(get(row, "duration_ms")?),
        session_id: get(row, "session_id")?,
    })
}
