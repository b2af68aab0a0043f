//! Claims on bg-run's own table: one statement finds, locks and leases up to N tasks.
//!
//! Claims and heartbeats commit asynchronously (`synchronous_commit = off` for their own
//! transaction only): they return without waiting for the WAL flush, which on ordinary disks
//! takes milliseconds. A clean server restart loses nothing; a server crash may forget the last
//! fraction of a second of claims, and those tasks are simply claimed and run again (the earlier
//! run's report then conflicts and is dropped). Reports and enqueues always commit durably.
//!
//! Expired leases come first (their tasks have waited longest), then pending tasks by priority,
//! run time and id. `FOR UPDATE SKIP LOCKED` lets any number of workers claim at once without
//! blocking each other or ever winning the same row. A task whose lease expired was claimed
//! before, so that attempt was already counted; if it was the last allowed one the task is given
//! up right there instead of being handed out again.

use std::time::Duration;

use bg_run_core::{Claim, ClaimOutcome, Claimant, Result, Task};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::db::Db;

use crate::error::{backend, claim_lost, corrupt};
use crate::record::{task_from_row, TASK_COLUMNS};

pub(crate) struct ClaimSql {
    batch: String,
    fresh: String,
    by_id: String,
    poll: String,
    heartbeat: String,
}

/// The claim statement. Parameters: $1 queue, $2 limit, $3 worker, $4 lease token, $5 lease
/// seconds, $6 the claimant's attempt limit, $7 required labels, and $8 the id when `by_id`.
fn claim_statement(s: &str, by_id: bool) -> String {
    let only = if by_id { "AND id = $8" } else { "" };
    format!(
        "WITH stale AS (
            SELECT id, attempts, claimed_by, claimed_at,
                   attempts >= COALESCE(max_attempts, $6) AS exhausted
            FROM {s}.tasks
            WHERE queue = $1 AND status = 'running' AND lease_until < now() AND labels @> $7 {only}
            ORDER BY lease_until
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ), fresh AS (
            SELECT id FROM {s}.tasks
            WHERE queue = $1 AND status = 'pending' AND run_at <= now() AND labels @> $7 {only}
            ORDER BY priority DESC, run_at, id
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ), picked AS (
            SELECT id, true AS stale, attempts, claimed_by, claimed_at, exhausted FROM stale
            UNION ALL
            SELECT id, false, NULL, NULL, NULL, false FROM fresh
            LIMIT $2
        ), claimed AS (
            UPDATE {s}.tasks t SET
                status = CASE WHEN p.exhausted THEN 'failed' ELSE 'running' END,
                attempts = t.attempts + CASE WHEN p.exhausted THEN 0 ELSE 1 END,
                claimed_by = CASE WHEN p.exhausted THEN t.claimed_by ELSE $3 END,
                claimed_at = CASE WHEN p.exhausted THEN t.claimed_at ELSE now() END,
                claimant_max_attempts = $6,
                lease_token = CASE WHEN p.exhausted THEN NULL ELSE $4 END,
                lease_until = CASE WHEN p.exhausted THEN NULL ELSE now() + make_interval(secs => $5) END,
                last_error = CASE WHEN p.exhausted THEN format(
                    'attempt %s of %s never reported back (its worker stopped or lost its lease); gave up',
                    t.attempts, COALESCE(t.max_attempts, $6)) ELSE t.last_error END,
                failure_kind = CASE WHEN p.exhausted THEN 'permanent' ELSE t.failure_kind END,
                updated_at = now()
            FROM picked p
            WHERE t.id = p.id
            RETURNING t.id, t.queue, t.title, t.body, t.labels, t.priority, t.attempts, t.max_attempts,
                      t.session_id, t.created_at, t.status, t.lease_until
        ), expired AS (
            INSERT INTO {s}.attempts (task_id, attempt, worker, started_at, outcome, message, failure_kind)
            SELECT id, attempts, claimed_by, claimed_at, 'expired',
                   'the lease expired before the worker reported back', 'transient'
            FROM picked WHERE stale
        )
        SELECT *, set_config('synchronous_commit', 'off', true) AS async_commit
        FROM claimed WHERE status = 'running' ORDER BY priority DESC, id"
    )
}

impl ClaimSql {
    pub(crate) fn new(s: &str) -> Self {
        ClaimSql {
            batch: claim_statement(s, false),
            // The common case on a busy queue, without the expired-lease branch: less work for
            // the server on every claim (same parameters as the full statement).
            fresh: format!(
                "WITH picked AS (
                    SELECT id FROM {s}.tasks
                    WHERE queue = $1 AND status = 'pending' AND run_at <= now() AND labels @> $7
                    ORDER BY priority DESC, run_at, id
                    LIMIT $2
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE {s}.tasks t SET status = 'running', attempts = t.attempts + 1, claimed_by = $3,
                    claimed_at = now(), claimant_max_attempts = $6, lease_token = $4,
                    lease_until = now() + make_interval(secs => $5), updated_at = now()
                FROM picked p
                WHERE t.id = p.id
                RETURNING t.id, t.queue, t.title, t.body, t.labels, t.priority, t.attempts, t.max_attempts,
                          t.session_id, t.created_at, t.lease_until,
                          set_config('synchronous_commit', 'off', true) AS async_commit"
            ),
            by_id: claim_statement(s, true),
            poll: format!(
                "SELECT {TASK_COLUMNS} FROM {s}.tasks
                 WHERE queue = $1 AND labels @> $3
                   AND ((status = 'pending' AND run_at <= now()) OR (status = 'running' AND lease_until < now()))
                 ORDER BY status = 'running' DESC, priority DESC, run_at, id
                 LIMIT $2"
            ),
            heartbeat: format!(
                "UPDATE {s}.tasks SET lease_until = now() + make_interval(secs => $3)
                 WHERE id = $1 AND lease_token = $2 AND status = 'running'
                 RETURNING lease_until, set_config('synchronous_commit', 'off', true) AS async_commit"
            ),
        }
    }
}

/// The filter every claim and poll applies: this handle's queue and labels.
pub(crate) struct Scope<'a> {
    pub queue: &'a str,
    pub labels: &'a [String],
}

pub(crate) fn lease_secs(lease: Duration) -> f64 {
    lease.as_secs_f64()
}

/// A fresh lease token. Random, so a token from an earlier claim of the same task never matches.
pub(crate) fn new_token() -> i64 {
    rand::random::<i64>()
}

pub(crate) fn parse_claim(claim: &Claim) -> Result<(i64, i64)> {
    let id = claim.task.id.as_str().parse().map_err(|_| claim_lost(claim.task.id.as_str()))?;
    let token = claim.token.parse().map_err(|_| claim_lost(claim.task.id.as_str()))?;
    Ok((id, token))
}

fn into_claim(row: &PgRow, token: i64, claimant: &Claimant) -> Result<Claim> {
    let task: Task = task_from_row(row)?;
    let lease_until: DateTime<Utc> = row.try_get("lease_until").map_err(|e| corrupt(format!("lease_until: {e}")))?;
    Ok(Claim {
        attempt: task.attempts,
        task,
        claimant: claimant.clone(),
        token: token.to_string(),
        lease_until: Some(lease_until),
    })
}

/// Claims up to `max` tasks in one statement; with `rescue` expired leases are taken too.
pub(crate) async fn claim_batch(
    db: &Db,
    sql: &ClaimSql,
    scope: &Scope<'_>,
    max: usize,
    rescue: bool,
    claimant: &Claimant,
) -> Result<Vec<Claim>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let token = new_token();
    let statement = if rescue { &sql.batch } else { &sql.fresh };
    let mut claims = db
        .fetch_all(
            sqlx::query(statement)
                .bind(scope.queue)
                .bind(i64::try_from(max).unwrap_or(i64::MAX))
                .bind(&claimant.worker_id)
                .bind(token)
                .bind(lease_secs(claimant.lease))
                .bind(i32::try_from(claimant.max_attempts).unwrap_or(i32::MAX))
                .bind(scope.labels),
        )
        .await
        .map_err(|e| backend("claiming tasks", e))?
        .iter()
        .map(|row| into_claim(row, token, claimant))
        .collect::<Result<Vec<_>>>()?;
    if !rescue {
        // RETURNING has no order; hand tasks out in the order they were chosen.
        claims.sort_by_key(|c| {
            let priority: i32 = c.task.meta.get("priority").and_then(|p| p.parse().ok()).unwrap_or(0);
            (std::cmp::Reverse(priority), c.task.id.as_str().parse::<i64>().unwrap_or(i64::MAX))
        });
    }
    Ok(claims)
}

pub(crate) async fn claim_one(
    db: &Db,
    sql: &ClaimSql,
    scope: &Scope<'_>,
    task: &Task,
    claimant: &Claimant,
) -> Result<ClaimOutcome> {
    let Ok(id) = task.id.as_str().parse::<i64>() else {
        return Ok(ClaimOutcome::Taken);
    };
    let token = new_token();
    let row = db
        .fetch_optional(
            sqlx::query(&sql.by_id)
                .bind(scope.queue)
                .bind(1_i64)
                .bind(&claimant.worker_id)
                .bind(token)
                .bind(lease_secs(claimant.lease))
                .bind(i32::try_from(claimant.max_attempts).unwrap_or(i32::MAX))
                .bind(scope.labels)
                .bind(id),
        )
        .await
        .map_err(|e| backend("claiming a task", e))?;
    match row {
        Some(row) => Ok(ClaimOutcome::Claimed(Box::new(into_claim(&row, token, claimant)?))),
        None => Ok(ClaimOutcome::Taken),
    }
}

pub(crate) async fn poll(db: &Db, sql: &ClaimSql, scope: &Scope<'_>, max: usize) -> Result<Vec<Task>> {
    let rows = db
        .fetch_all(
            sqlx::query(&sql.poll).bind(scope.queue).bind(i64::try_from(max).unwrap_or(i64::MAX)).bind(scope.labels),
        )
        .await
        .map_err(|e| backend("polling tasks", e))?;
    rows.iter().map(task_from_row).collect()
}

pub(crate) async fn heartbeat(db: &Db, sql: &ClaimSql, claim: &Claim) -> Result<()> {
    let (id, token) = parse_claim(claim)?;
    let extended = db
        .fetch_optional(sqlx::query(&sql.heartbeat).bind(id).bind(token).bind(lease_secs(claim.claimant.lease)))
        .await
        .map_err(|e| backend("extending a lease", e))?;
    match extended {
        Some(_) => Ok(()),
        None => Err(claim_lost(claim.task.id.as_str())),
    }
}
