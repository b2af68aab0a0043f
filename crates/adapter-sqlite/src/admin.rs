//! What the CLI does to tasks besides running them: add, list, show, close, retry, cancel (the
//! [`TaskStore`] impl).

use std::collections::HashMap;

use async_trait::async_trait;
use bg_run_core::{AttemptOutcome, AttemptRecord, Error, NewTask, Result, Status, TaskId, TaskRecord, TaskStore};
use rusqlite::{Connection, OptionalExtension};

use crate::db::Shared;
use crate::error::Context;
use crate::queue::SqliteQueue;
use crate::record::{self, labels_json, now_ms, parse_id, to_ms, Named, ATTEMPT_COLUMNS, RECORD_COLUMNS};

const INSERT: &str = "INSERT INTO tasks \
     (queue, title, body, labels, priority, max_attempts, unique_key, created_at, updated_at, run_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9) \
     ON CONFLICT (queue, unique_key) WHERE unique_key IS NOT NULL DO NOTHING";

fn check_new(task: &NewTask) -> Result<()> {
    task.validate()?;
    if task.queue.as_deref().is_some_and(|q| q.trim().is_empty()) {
        return Err(Error::config("a task's queue name must not be empty"));
    }
    if task.labels.iter().any(|l| l.trim().is_empty()) {
        return Err(Error::config("a task's labels must not be empty"));
    }
    if task.unique_key.as_deref().is_some_and(|k| k.is_empty()) {
        return Err(Error::config("a task's unique key must not be empty"));
    }
    Ok(())
}

fn insert(db: &Shared, conn: &Connection, task: &NewTask, now: i64) -> Result<TaskId> {
    let queue = task.queue.as_deref().map(str::trim).unwrap_or(&db.queue);
    let run_at = task.run_at.map(to_ms).unwrap_or(now);
    let labels = labels_json(&task.labels);
    let mut stmt = conn.prepare_cached(INSERT).ctx("adding a task")?;
    let params = rusqlite::params![
        queue,
        task.title,
        task.body,
        labels,
        task.priority,
        task.max_attempts,
        task.unique_key,
        now,
        run_at
    ];
    let inserted = stmt.execute(params).ctx("adding a task")?;
    let id = match inserted {
        1 => conn.last_insert_rowid(),
        // The unique key is already taken: enqueueing is idempotent, so answer the first task.
        _ => conn
            .prepare_cached("SELECT id FROM tasks WHERE queue = ?1 AND unique_key = ?2")
            .and_then(|mut s| s.query_row(rusqlite::params![queue, task.unique_key], |row| row.get::<_, i64>(0)))
            .ctx("adding a task")?,
    };
    Ok(TaskId(id.to_string()))
}

fn history(conn: &Connection, status: Option<Status>) -> Result<HashMap<i64, Vec<AttemptRecord>>> {
    let sql = match status {
        None => format!("SELECT {ATTEMPT_COLUMNS} FROM attempts ORDER BY task_id, id"),
        Some(_) => format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id IN (SELECT id FROM tasks WHERE status = ?1) \
             ORDER BY task_id, id"
        ),
    };
    let mut stmt = conn.prepare_cached(&sql).ctx("reading task history")?;
    let rows = match status {
        None => stmt.query_map([], record::attempt_record),
        Some(status) => stmt.query_map([Named(status)], record::attempt_record),
    }
    .ctx("reading task history")?;
    let mut by_task: HashMap<i64, Vec<AttemptRecord>> = HashMap::new();
    for row in rows {
        let (task_id, attempt) = row.ctx("reading task history")?;
        by_task.entry(task_id).or_default().push(attempt);
    }
    Ok(by_task)
}

fn get_sync(conn: &Connection, id: i64) -> Result<TaskRecord> {
    let mut task = conn
        .prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM tasks WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id], record::task_record).optional())
        .ctx("reading a task")?
        .ok_or_else(|| Error::not_found(format!("task {id}")))?;
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id = ?1 ORDER BY id"))
        .ctx("reading task history")?;
    let rows = stmt.query_map([id], record::attempt_record).ctx("reading task history")?;
    for row in rows {
        task.history.push(row.ctx("reading task history")?.1);
    }
    Ok(task)
}

/// A human's change to one task: looks at the current status (inside the write transaction every
/// operation runs in), lets `change` refuse or apply it, and answers the updated record.
fn change_status(
    conn: &Connection,
    id: i64,
    doing: &'static str,
    change: impl FnOnce(Status, &Connection, i64) -> Result<()>,
) -> Result<TaskRecord> {
    let Named(status) = conn
        .query_row("SELECT status FROM tasks WHERE id = ?1", [id], |row| row.get::<_, Named<Status>>(0))
        .optional()
        .ctx(doing)?
        .ok_or_else(|| Error::not_found(format!("task {id}")))?;
    change(status, conn, now_ms())?;
    get_sync(conn, id)
}

/// Ids are the row numbers `bg-run tasks` prints, also accepted as `#42`; anything else is a
/// `Config` error that names it.
#[async_trait]
impl TaskStore for SqliteQueue {
    /// Adds many tasks in one transaction; answers their ids in the same order. A task whose
    /// unique key already exists answers the existing id. Nothing is added if any task is invalid.
    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<TaskId>> {
        for task in &tasks {
            check_new(task)?;
        }
        self.db
            .call(move |db, conn| {
                let now = now_ms();
                tasks.iter().map(|task| insert(db, conn, task, now)).collect::<Result<Vec<_>>>()
            })
            .await
    }

    /// Every task in the file (all queues), oldest first, optionally only those in `status`,
    /// each with its history.
    async fn list(&self, status: Option<Status>) -> Result<Vec<TaskRecord>> {
        self.db
            .call(move |_, conn| {
                let sql = match status {
                    None => format!("SELECT {RECORD_COLUMNS} FROM tasks ORDER BY id"),
                    Some(_) => format!("SELECT {RECORD_COLUMNS} FROM tasks WHERE status = ?1 ORDER BY id"),
                };
                let mut tasks = {
                    let mut stmt = conn.prepare_cached(&sql).ctx("listing tasks")?;
                    let rows = match status {
                        None => stmt.query_map([], record::task_record),
                        Some(status) => stmt.query_map([Named(status)], record::task_record),
                    }
                    .ctx("listing tasks")?;
                    rows.collect::<rusqlite::Result<Vec<_>>>().ctx("listing tasks")?
                };
                let mut history = history(conn, status)?;
                for task in &mut tasks {
                    task.history = history.remove(&task.id).unwrap_or_default();
                }
                Ok(tasks)
            })
            .await
    }

    /// One task with its history. `Error::NotFound` ("task 42 not found") when there is none.
    async fn get(&self, id: &TaskId) -> Result<TaskRecord> {
        let id = parse_id(id.as_str())?;
        self.db.call(move |_, conn| get_sync(conn, id)).await
    }

    /// Closes a task that is not running (a human is done with it); a running task is a
    /// `Conflict` that says to cancel it first.
    async fn close(&self, id: &TaskId) -> Result<TaskRecord> {
        let id = parse_id(id.as_str())?;
        self.db
            .call(move |_, conn| {
                change_status(conn, id, "closing a task", |status, tx, now| {
                    if status == Status::Running {
                        return Err(Error::conflict(format!(
                            "task {id} is running; cancel it first with `bg-run cancel {id}`, or wait until it finishes"
                        )));
                    }
                    tx.execute(
                        "UPDATE tasks SET status = 'closed', lease_token = NULL, lease_until = NULL, updated_at = ?2 \
                         WHERE id = ?1",
                        [id, now],
                    )
                    .ctx("closing a task")?;
                    Ok(())
                })
            })
            .await
    }

    /// Makes a finished, failed, closed or cancelled task (or one waiting for a retry) eligible
    /// now, with its attempt count reset. Its history is kept.
    async fn retry(&self, id: &TaskId) -> Result<TaskRecord> {
        let id = parse_id(id.as_str())?;
        self.db
            .call(move |_, conn| {
                change_status(conn, id, "retrying a task", |status, tx, now| {
                    if status == Status::Running {
                        return Err(Error::conflict(format!(
                            "task {id} is running; cancel it first with `bg-run cancel {id}`, or wait until it finishes"
                        )));
                    }
                    tx.execute(
                        "UPDATE tasks SET status = 'pending', attempts = 0, run_at = ?2, claimed_by = NULL, \
                         lease_token = NULL, lease_until = NULL, updated_at = ?2 WHERE id = ?1",
                        [id, now],
                    )
                    .ctx("retrying a task")?;
                    Ok(())
                })
            })
            .await
    }

    /// Cancels a pending or running task. A running task's worker learns of it at its next
    /// heartbeat (which then fails with a conflict) and stops the agent. Cancelling a cancelled
    /// task changes nothing and answers it.
    async fn cancel(&self, id: &TaskId) -> Result<TaskRecord> {
        let id = parse_id(id.as_str())?;
        self.db
            .call(move |_, conn| {
                change_status(conn, id, "cancelling a task", |status, tx, now| {
                    match status {
                        Status::Cancelled => return Ok(()),
                        Status::Pending => {}
                        Status::Running => {
                            tx.execute(
                                "INSERT INTO attempts (task_id, number, started_at, finished_at, outcome, message, worker) \
                                 SELECT id, attempts, claimed_at, ?2, ?3, ?4, claimed_by FROM tasks WHERE id = ?1",
                                rusqlite::params![
                                    id,
                                    now,
                                    Named(AttemptOutcome::Cancelled),
                                    "cancelled by a human while the agent ran"
                                ],
                            )
                            .ctx("cancelling a task")?;
                        }
                        other => {
                            return Err(Error::conflict(format!(
                                "task {id} is {other}; only pending or running tasks can be cancelled (close it with `bg-run close {id}`)"
                            )))
                        }
                    }
                    tx.execute(
                        "UPDATE tasks SET status = 'cancelled', lease_token = NULL, lease_until = NULL, updated_at = ?2 \
                         WHERE id = ?1",
                        [id, now],
                    )
                    .ctx("cancelling a task")?;
                    Ok(())
                })
            })
            .await
    }
}
