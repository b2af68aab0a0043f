//! What the admin API returns, and the mapping between rows and the core task model.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use bg_run_core::{Error, Task, TaskId, Tokens};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::error::corrupt;

/// Where a task is in its life. The worker moves `pending → running → review | failed`; a human
/// moves tasks to `closed` or `cancelled`, or back to `pending` with a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a worker (possibly until its retry time).
    Pending,
    /// Claimed by a worker whose agent is working on it.
    Running,
    /// The agent finished; a human reviews the result.
    Review,
    /// Given up after its attempts ran out.
    Failed,
    /// Closed by a human.
    Closed,
    /// Cancelled by a human before or while it ran.
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 6] =
        [Status::Pending, Status::Running, Status::Review, Status::Failed, Status::Closed, Status::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Review => "review",
            Status::Failed => "failed",
            Status::Closed => "closed",
            Status::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Status::ALL.into_iter().find(|status| status.as_str() == wanted).ok_or_else(|| {
            let valid: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            Error::config(format!("unknown task status '{s}'; valid statuses: {}", valid.join(", ")))
        })
    }
}

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
    /// Reason of the last failed attempt.
    pub last_error: Option<String>,
    pub exit_code: Option<i32>,
    pub cost_usd: Option<f64>,
    pub turns: Option<u32>,
    pub tokens: Option<Tokens>,
    pub duration_ms: Option<u64>,
    /// The agent session of the last attempt that reported one.
    pub session_id: Option<String>,
    /// Every finished attempt, oldest first. Filled by `get`; `list` leaves it empty.
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
    pub exit_code: Option<i32>,
    pub cost_usd: Option<f64>,
    pub turns: Option<u32>,
    pub duration_ms: Option<u64>,
    pub session_id: Option<String>,
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
    /// A human cancelled or closed the task while it ran.
    Cancelled,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 6] = [
        AttemptOutcome::Done,
        AttemptOutcome::Failed,
        AttemptOutcome::GaveUp,
        AttemptOutcome::Released,
        AttemptOutcome::Expired,
        AttemptOutcome::Cancelled,
    ];

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
}

impl FromStr for AttemptOutcome {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AttemptOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| corrupt(format!("attempt outcome '{s}'")))
    }
}

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
        outcome: outcome.parse()?,
        message: get(row, "message")?,
        worker: get(row, "worker")?,
        exit_code: get(row, "exit_code")?,
        cost_usd: get(row, "cost_usd")?,
        turns: small(get(row, "turns")?),
        duration_ms: unsigned(get(row, "duration_ms")?),
        session_id: get(row, "session_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_status_and_outcome_it_prints() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>().ok(), Some(status));
            assert_eq!(serde_json::to_string(&status).ok(), Some(format!("\"{status}\"")));
        }
        assert_eq!(" Review ".parse::<Status>().ok(), Some(Status::Review));
        let message = "done".parse::<Status>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("valid statuses: pending, running, review, failed, closed, cancelled"), "{message}");
        for outcome in AttemptOutcome::ALL {
            assert_eq!(outcome.as_str().parse::<AttemptOutcome>().ok(), Some(outcome));
            assert_eq!(serde_json::to_string(&outcome).ok(), Some(format!("\"{}\"", outcome.as_str())));
        }
    }
}
