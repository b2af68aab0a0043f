//! What the CLI does to tasks besides running them: add, list, show, close, retry, cancel (the
//! [`TaskStore`] impl).

use async_trait::async_trait;
use bg_run_core::{AttemptOutcome, Change, Effect, Error, NewTask, Result, Status, TaskId, TaskRecord, TaskStore};
use rusqlite::{Connection, OptionalExtension};

use crate::db::Shared;
use crate::error::Context;
use crate::queue::SqliteQueue;
use crate::record::{self, labels_json, now_ms, to_ms, Named, ATTEMPT_COLUMNS, RECORD_COLUMNS};

const INSERT: &str = "INSERT INTO tasks \
     (queue, title, body, labels, priority, max_attempts, unique_key, created_at, updated_at, run_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9) \
     ON CONFLICT (queue, unique_key) WHERE unique_key IS NOT NULL DO NOTHING";

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

/// A human's change to one task, inside the write transaction every operation runs in: reads
/// the status, lets core's table ([`Change::decide`]) refuse or allow it, records the
/// interrupted attempt of a running task taken from its worker, and answers the updated record.
fn change_sync(conn: &Connection, id: i64, change: Change) -> Result<TaskRecord> {
    let doing = match change {
        Change::Close => "closing a task",
        Change::Retry => "retrying a task",
        Change::Cancel => "cancelling a task",
    };
    let Named(status) = conn
        .query_row("SELECT status FROM tasks WHERE id = ?1", [id], |row| row.get::<_, Named<Status>>(0))
        .optional()
        .ctx(doing)?
        .ok_or_else(|| Error::not_found(format!("task {id}")))?;
    let Effect::To(to) = change.decide(id, status)? else {
        return get_sync(conn, id);
    };
    let now = now_ms();
    if status == Status::Running {
        let message = match change {
            Change::Close => "closed by a human while the agent ran",
            _ => "cancelled by a human while the agent ran",
        };
        conn.execute(
            "INSERT INTO attempts (task_id, number, started_at, finished_at, outcome, message, worker) \
             SELECT id, attempts, claimed_at, ?2, ?3, ?4, claimed_by FROM tasks WHERE id = ?1",
            rusqlite::params![id, now, Named(AttemptOutcome::Cancelled), message],
        )
        .ctx(doing)?;
    }
    let sql = match to {
        // A retried task starts over with fresh attempts and is eligible at once.
        Status::Pending => {
            "UPDATE tasks SET status = ?3, attempts = 0, run_at = ?2, lease_token = NULL, \
             lease_until = NULL, updated_at = ?2 WHERE id = ?1"
        }
        _ => "UPDATE tasks SET status = ?3, lease_token = NULL, lease_until = NULL, updated_at = ?2 WHERE id = ?1",
    };
    conn.execute(sql, rusqlite::params![id, now, Named(to)]).ctx(doing)?;
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
            task.validate()?;
        }
        self.db
            .call(move |db, conn| {
                let now = now_ms();
                tasks.iter().map(|task| insert(db, conn, task, now)).collect::<Result<Vec<_>>>()
            })
            .await
    }

    /// This handle's queue's tasks, oldest first, optionally only those in `status`, without
    /// their history ([`TaskStore::get`] has it).
    async fn list(&self, status: Option<Status>) -> Result<Vec<TaskRecord>> {
        self.db
            .call(move |db, conn| {
                let sql = format!(
                    "SELECT {RECORD_COLUMNS} FROM tasks WHERE queue = ?1 AND (?2 IS NULL OR status = ?2) ORDER BY id"
                );
                let mut stmt = conn.prepare_cached(&sql).ctx("listing tasks")?;
                let rows = stmt.query_map(rusqlite::params![db.queue, status.map(Named)], record::task_record);
                rows.and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>()).ctx("listing tasks")
            })
            .await
    }

    /// One task with its history. `Error::NotFound` ("task 42 not found") when there is none.
    async fn get(&self, id: &TaskId) -> Result<TaskRecord> {
        let id = id.row_number()?;
        self.db.call(move |_, conn| get_sync(conn, id)).await
    }

    /// Closes a task (a human is done with it); a running task is taken from its worker.
    async fn close(&self, id: &TaskId) -> Result<TaskRecord> {
        let id = id.row_number()?;
        self.db.call(move |_, conn| change_sync(conn, id, Change::Close)).await
    }

    /// Makes a task that is not running eligible now, with its attempt count reset. Its history
    /// is kept.
    async fn retry(&self, id: &TaskId) -> Result<TaskRecord> {
        let id = id.row_number()?;
        self.db.call(move |_, conn| change_sync(conn, id, Change::Retry)).await
    }

    /// Cancels a pending or running task. A running task's worker learns of it at its next
    /// heartbeat (which then fails with a conflict) and stops the agent.
    async fn cancel(&self, id: &TaskId) -> Result<TaskRecord> {
        let id = id.row_number()?;
        self.db.call(move |_, conn| change_sync(conn, id, Change::Cancel)).await
    }
}
