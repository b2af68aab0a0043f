//! Adding tasks and the human side of the lifecycle: list, show, close, retry, cancel.

use bg_run_core::{Change, Effect, Error, NewTask, Result, Status, TaskId, TaskRecord};
use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::db::Db;

use crate::error::{backend, corrupt};
use crate::record::{
    attempt_from_row, record_from_row, ATTEMPT_COLUMNS, DONE_ATTEMPT_COLUMNS, DONE_ATTEMPT_FROM_TASK, RECORD_COLUMNS,
};

pub(crate) struct AdminSql {
    enqueue: String,
    existing_keys: String,
    list: String,
    get: String,
    history: String,
    close: String,
    cancel: String,
    retry: String,
}

impl AdminSql {
    pub(crate) fn new(s: &str, channel: &str) -> Self {
        // A task leaving review takes its successful attempt out of its row into the history.
        let archive_done = format!(
            "archived AS (
                INSERT INTO {s}.attempts ({DONE_ATTEMPT_COLUMNS})
                SELECT {DONE_ATTEMPT_FROM_TASK} FROM target WHERE status = 'review'
            )"
        );
        // Each change updates the task only from the statuses core's table lets it change.
        let from = |change: Change| {
            let names: Vec<String> = change.changes_from().map(|status| format!("'{status}'")).collect();
            names.join(", ")
        };
        let (close_from, cancel_from, retry_from) = (from(Change::Close), from(Change::Cancel), from(Change::Retry));
        AdminSql {
            // Ids are drawn first so every input row has one in input order, inserted or not;
            // rows that hit an existing unique key keep theirs unused and are looked up after.
            enqueue: format!(
                "WITH input AS (
                    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::int4[],
                                         $7::timestamptz[], $8::text[])
                        WITH ORDINALITY AS i(queue, title, body, labels, priority, max_attempts, run_at, unique_key, ord)
                ), numbered AS (
                    SELECT nextval('{s}.tasks_id_seq') AS id, i.* FROM input i
                ), inserted AS (
                    INSERT INTO {s}.tasks (id, queue, title, body, labels, priority, max_attempts, run_at, unique_key)
                    SELECT id, queue, title, body, ARRAY(SELECT jsonb_array_elements_text(labels::jsonb)),
                           priority, max_attempts, COALESCE(run_at, now()), unique_key
                    FROM numbered ORDER BY ord
                    ON CONFLICT (queue, unique_key) WHERE unique_key IS NOT NULL DO NOTHING
                    RETURNING id
                )
                SELECT n.id, x.id IS NOT NULL AS inserted
                FROM numbered n LEFT JOIN inserted x ON x.id = n.id
                ORDER BY n.ord"
            ),
            existing_keys: format!(
                "SELECT k.ord, t.id
                 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(queue, unique_key, ord)
                 JOIN {s}.tasks t ON t.queue = k.queue AND t.unique_key = k.unique_key"
            ),
            list: format!(
                "SELECT {RECORD_COLUMNS} FROM {s}.tasks
                 WHERE queue = $1 AND ($2::text IS NULL OR status = $2)
                 ORDER BY id"
            ),
            get: format!("SELECT {RECORD_COLUMNS} FROM {s}.tasks WHERE id = $1"),
            history: format!(
                "SELECT {ATTEMPT_COLUMNS} FROM (
                    SELECT {DONE_ATTEMPT_COLUMNS} FROM {s}.attempts WHERE task_id = $1
                    UNION ALL
                    SELECT {DONE_ATTEMPT_FROM_TASK} FROM {s}.tasks WHERE id = $1 AND status = 'review'
                 ) AS a(task_id, attempt, worker, started_at, finished_at, outcome, message, cost_usd, turns,
                        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, duration_ms,
                        session_id, exit_code)
                 ORDER BY finished_at, attempt"
            ),
            close: format!(
                "WITH target AS (
                    SELECT * FROM {s}.tasks WHERE id = $1 FOR UPDATE
                ), changed AS (
                    UPDATE {s}.tasks t SET status = 'closed', lease_token = NULL, lease_until = NULL, updated_at = now()
                    FROM target WHERE t.id = target.id AND target.status IN ({close_from})
                    RETURNING t.id
                ), history AS (
                    INSERT INTO {s}.attempts (task_id, attempt, worker, started_at, outcome, message)
                    SELECT id, attempts, claimed_by, claimed_at, 'cancelled', 'closed by a human while it ran'
                    FROM target WHERE status = 'running'
                ), {archive_done}
                SELECT target.status, changed.id IS NOT NULL AS changed FROM target LEFT JOIN changed ON true"
            ),
            cancel: format!(
                "WITH target AS (
                    SELECT id, status, attempts, claimed_by, claimed_at FROM {s}.tasks WHERE id = $1 FOR UPDATE
                ), changed AS (
                    UPDATE {s}.tasks t SET status = 'cancelled', lease_token = NULL, lease_until = NULL,
                        updated_at = now()
                    FROM target WHERE t.id = target.id AND target.status IN ({cancel_from})
                    RETURNING t.id
                ), history AS (
                    INSERT INTO {s}.attempts (task_id, attempt, worker, started_at, outcome, message)
                    SELECT id, attempts, claimed_by, claimed_at, 'cancelled', 'cancelled by a human while it ran'
                    FROM target WHERE status = 'running'
                )
                SELECT target.status, changed.id IS NOT NULL AS changed FROM target LEFT JOIN changed ON true"
            ),
            // A retried task starts over with fresh attempts and is eligible at once.
            retry: format!(
                "WITH target AS (
                    SELECT * FROM {s}.tasks WHERE id = $1 FOR UPDATE
                ), changed AS (
                    UPDATE {s}.tasks t SET status = 'pending', attempts = 0, run_at = now(), lease_token = NULL,
                        lease_until = NULL, updated_at = now()
                    FROM target WHERE t.id = target.id AND target.status IN ({retry_from})
                    RETURNING t.id, t.queue
                ), {archive_done}
                SELECT target.status, changed.id IS NOT NULL AS changed,
                       CASE WHEN changed.id IS NOT NULL THEN pg_notify('{channel}', changed.queue)::text END AS woke
                FROM target LEFT JOIN changed ON true"
            ),
        }
    }
}

fn check_text(what: &str, text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(Error::config(format!(
            "the task's {what} contains a NUL character, which PostgreSQL cannot store"
        )));
    }
    Ok(())
}

/// Inserts all tasks in one statement; returns their ids in input order. A task whose unique key
/// already exists in its queue is not inserted again: the existing task's id is returned.
pub(crate) async fn enqueue_many(
    db: &Db,
    sql: &AdminSql,
    default_queue: &str,
    tasks: Vec<NewTask>,
) -> Result<Vec<TaskId>> {
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    for task in &tasks {
        task.validate()?;
        check_text("title", &task.title)?;
        check_text("body", &task.body)?;
        for label in &task.labels {
            check_text("label", label)?;
        }
        if let Some(key) = &task.unique_key {
            check_text("unique key", key)?;
        }
    }
    let n = tasks.len();
    let mut queues = Vec::with_capacity(n);
    let mut titles = Vec::with_capacity(n);
    let mut bodies = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    let mut priorities = Vec::with_capacity(n);
    let mut max_attempts: Vec<Option<i32>> = Vec::with_capacity(n);
    let mut run_at: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
    let mut keys: Vec<Option<String>> = Vec::with_capacity(n);
    for task in tasks {
        let queue = task.queue.unwrap_or_else(|| default_queue.to_owned());
        queues.push(queue);
        titles.push(task.title);
        bodies.push(task.body);
        labels.push(serde_json::to_string(&task.labels).map_err(|e| corrupt(format!("labels: {e}")))?);
        priorities.push(task.priority);
        max_attempts.push(task.max_attempts.map(|m| i32::try_from(m).unwrap_or(i32::MAX)));
        run_at.push(task.run_at);
        keys.push(task.unique_key);
    }
    let rows = db
        .fetch_all(
            sqlx::query(&sql.enqueue)
                .bind(&queues)
                .bind(titles)
                .bind(bodies)
                .bind(labels)
                .bind(priorities)
                .bind(max_attempts)
                .bind(run_at)
                .bind(&keys),
        )
        .await
        .map_err(|e| backend("adding tasks", e))?;
    let mut ids = Vec::with_capacity(n);
    let mut missing = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let id: i64 = row.try_get("id").map_err(|e| corrupt(format!("id: {e}")))?;
        let inserted: bool = row.try_get("inserted").map_err(|e| corrupt(format!("inserted: {e}")))?;
        ids.push(id);
        if !inserted {
            missing.push(index);
        }
    }
    if !missing.is_empty() {
        let key_queues: Vec<&str> = missing.iter().map(|&i| queues[i].as_str()).collect();
        let key_values: Vec<Option<&str>> = missing.iter().map(|&i| keys[i].as_deref()).collect();
        let found = db
            .fetch_all(sqlx::query(&sql.existing_keys).bind(key_queues).bind(key_values))
            .await
            .map_err(|e| backend("looking up existing unique keys", e))?;
        let mut resolved = 0;
        for row in found {
            let ord: i64 = row.try_get("ord").map_err(|e| corrupt(format!("ord: {e}")))?;
            let id: i64 = row.try_get("id").map_err(|e| corrupt(format!("id: {e}")))?;
            if let Some(&index) = usize::try_from(ord - 1).ok().and_then(|o| missing.get(o)) {
                ids[index] = id;
                resolved += 1;
            }
        }
        if resolved != missing.len() {
            return Err(Error::backend(
                crate::error::ADAPTER,
                "a task with the same unique key was removed while adding tasks; add them again",
                true,
            ));
        }
    }
    Ok(ids.into_iter().map(|id| TaskId(id.to_string())).collect())
}

pub(crate) async fn list(db: &Db, sql: &AdminSql, queue: &str, status: Option<Status>) -> Result<Vec<TaskRecord>> {
    let rows = db
        .fetch_all(sqlx::query(&sql.list).bind(queue).bind(status.map(Status::as_str)))
        .await
        .map_err(|e| backend("listing tasks", e))?;
    rows.iter().map(record_from_row).collect()
}

pub(crate) async fn get(db: &Db, sql: &AdminSql, id: i64) -> Result<TaskRecord> {
    let row = db
        .fetch_optional(sqlx::query(&sql.get).bind(id))
        .await
        .map_err(|e| backend("reading a task", e))?
        .ok_or_else(|| Error::not_found(format!("task {id}")))?;
    let mut record = record_from_row(&row)?;
    let history =
        db.fetch_all(sqlx::query(&sql.history).bind(id)).await.map_err(|e| backend("reading a task's attempts", e))?;
    record.history = history.iter().map(attempt_from_row).collect::<Result<_>>()?;
    Ok(record)
}

/// Applies a human's change in one statement that changes the task only from the statuses
/// core's table allows; when it changed nothing, the table says whether that was a no-op or the
/// conflict to answer.
pub(crate) async fn change(db: &Db, sql: &AdminSql, id: i64, change: Change) -> Result<TaskRecord> {
    let (statement, doing) = match change {
        Change::Close => (&sql.close, "closing"),
        Change::Cancel => (&sql.cancel, "cancelling"),
        Change::Retry => (&sql.retry, "retrying"),
    };
    let row = db
        .fetch_optional(sqlx::query(statement).bind(id))
        .await
        .map_err(|e| backend(&format!("{doing} task {id}"), e))?
        .ok_or_else(|| Error::not_found(format!("task {id}")))?;
    let before: String = row.try_get("status").map_err(|e| corrupt(format!("status: {e}")))?;
    let changed: bool = row.try_get("changed").map_err(|e| corrupt(format!("changed: {e}")))?;
    if !changed && change.decide(id, before.parse()?)? != Effect::Unchanged {
        return Err(corrupt(format!("{doing} task {id} changed nothing although its status ({before}) allows it")));
    }
    get(db, sql, id).await
}
