//! A user's own table as the queue (see [`TableMapping`] for the guarantees).
//!
//! Every statement locks or checks the user's row and bg-run's side row together, so the two
//! never disagree about who holds a task: the user's status column says what a human sees, the
//! side table holds the lease that decides whose report counts.

use std::collections::BTreeMap;

use bg_run_core::{Claim, ClaimOutcome, Claimant, Error, Failure, Report, Result, RetryDecision, Task, TaskId};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::db::Db;

use crate::claim::{lease_secs, new_token};
use crate::error::{backend, claim_lost, corrupt};
use crate::options::{quote_ident, TableMapping};
use crate::report::{bind_usage, clean_text, UsageColumns};

/// The mapping plus the statements built for it.
pub(crate) struct MappedTable {
    mapping: TableMapping,
    sql: MappedSql,
}

struct MappedSql {
    claim: String,
    claim_by_id: String,
    poll: String,
    heartbeat: String,
    complete: String,
    fail: String,
    release: String,
}

/// Column types the statements cast parameters to, so text, varchar, enum and integer columns
/// all compare with their own operators and indexes.
struct ColumnTypes {
    id: String,
    status: String,
}

/// Checks that the table and columns exist and reads the id and status types.
async fn inspect(pool: &PgPool, mapping: &TableMapping) -> Result<ColumnTypes> {
    let table = mapping.quoted_table();
    let found: Option<String> = sqlx::query("SELECT to_regclass($1)::text")
        .bind(&table)
        .fetch_one(pool)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| backend("looking up the mapped table", e))?;
    if found.is_none() {
        return Err(Error::config(format!(
            "postgres table mapping: table '{}' does not exist (or this user cannot see it)",
            mapping.table
        )));
    }
    let rows = sqlx::query(
        "SELECT attname::text AS name, format_type(atttypid, atttypmod) AS type
         FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
    )
    .bind(&table)
    .fetch_all(pool)
    .await
    .map_err(|e| backend("reading the mapped table's columns", e))?;
    let mut columns = BTreeMap::new();
    for row in rows {
        let name: String = row.try_get("name").map_err(|e| corrupt(e.to_string()))?;
        let ty: String = row.try_get("type").map_err(|e| corrupt(e.to_string()))?;
        columns.insert(name, ty);
    }
    let column = |what: &str, name: &str| {
        columns.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = columns.keys().map(String::as_str).collect();
            Error::config(format!(
                "postgres table mapping: {what} '{name}' is not a column of '{}' (its columns: {})",
                mapping.table,
                known.join(", ")
            ))
        })
    };
    let id = column("id_column", &mapping.id_column)?;
    column("title_column", &mapping.title_column)?;
    if let Some(body) = &mapping.body_column {
        column("body_column", body)?;
    }
    let status = column("status_column", &mapping.status_column)?;
    Ok(ColumnTypes { id, status })
}

impl MappedSql {
    fn new(s: &str, m: &TableMapping, types: &ColumnTypes) -> Self {
        let t = m.quoted_table();
        let id = quote_ident(&m.id_column);
        let title = quote_ident(&m.title_column);
        let status = quote_ident(&m.status_column);
        // User tables may allow NULL titles and bodies; a task gets empty text instead.
        let body = m
            .body_column
            .as_deref()
            .map_or_else(|| "''::text".to_owned(), |b| format!("COALESCE(u.{}::text, '')", quote_ident(b)));
        let (itype, stype) = (&types.id, &types.status);
        // Claim parameters: $1 source, $2 limit, $3 worker, $4 token, $5 lease seconds, $6 attempt
        // limit, $7 running, $8 pending, $9 failed value, and $10 the id when claiming one row.
        let claim = |by_id: bool| {
            let only = if by_id { format!("AND u.{id} = $10::{itype}") } else { String::new() };
            format!(
                "WITH stale AS (
                    SELECT u.{id} AS id, m.attempts >= $6 AS exhausted
                    FROM {t} u JOIN {s}.mapped_tasks m ON m.source = $1 AND m.task_id = u.{id}::text
                    WHERE u.{status} = $7::{stype} AND m.lease_token IS NOT NULL AND m.lease_until < now() {only}
                    ORDER BY m.lease_until
                    LIMIT $2
                    FOR UPDATE OF u SKIP LOCKED
                ), fresh AS (
                    SELECT u.{id} AS id, false AS exhausted
                    FROM {t} u LEFT JOIN {s}.mapped_tasks m ON m.source = $1 AND m.task_id = u.{id}::text
                    WHERE u.{status} = $8::{stype} AND (m.task_id IS NULL OR m.finished OR m.run_at <= now()) {only}
                    ORDER BY u.{id}
                    LIMIT $2
                    FOR UPDATE OF u SKIP LOCKED
                ), picked AS (
                    SELECT id, exhausted FROM stale UNION ALL SELECT id, exhausted FROM fresh LIMIT $2
                ), leased AS (
                    INSERT INTO {s}.mapped_tasks AS m
                        (source, task_id, attempts, claimed_by, claimed_at, lease_token, lease_until)
                    SELECT $1, p.id::text, 1, $3, now(), $4, now() + make_interval(secs => $5)
                    FROM picked p WHERE NOT p.exhausted
                    ON CONFLICT (source, task_id) DO UPDATE SET
                        attempts = CASE WHEN m.finished THEN 1 ELSE m.attempts + 1 END,
                        finished = false, claimed_by = excluded.claimed_by, claimed_at = excluded.claimed_at,
                        lease_token = excluded.lease_token, lease_until = excluded.lease_until, updated_at = now()
                    RETURNING m.task_id, m.attempts, m.lease_until, m.session_id
                ), gave_up AS (
                    UPDATE {s}.mapped_tasks m SET lease_token = NULL, lease_until = NULL, finished = true,
                        failure_kind = 'permanent', updated_at = now(),
                        last_error = format('attempt %s of %s never reported back (its worker stopped or lost its lease); gave up', m.attempts, $6)
                    FROM picked p WHERE p.exhausted AND m.source = $1 AND m.task_id = p.id::text
                ), marked AS (
                    UPDATE {t} u SET {status} = CASE WHEN p.exhausted THEN $9::{stype} ELSE $7::{stype} END
                    FROM picked p WHERE u.{id} = p.id
                    RETURNING u.{id}::text AS id, COALESCE(u.{title}::text, '') AS title, {body} AS body
                )
                SELECT k.id, k.title, k.body, l.attempts, l.lease_until, l.session_id,
                       set_config('synchronous_commit', 'off', true) AS async_commit
                FROM marked k JOIN leased l ON l.task_id = k.id
                ORDER BY k.id"
            )
        };
        // Every write checks the lease token and that the user's row is still running: a human
        // who changed the status has taken the row back.
        let still_ours = |running: &str| {
            format!(
                "m.source = $1 AND m.task_id = $2 AND m.lease_token = $3
                 AND EXISTS (SELECT 1 FROM {t} u WHERE u.{id} = $2::{itype} AND u.{status} = {running}::{stype})"
            )
        };
        let usage_from = |first: usize| {
            let p = |i: usize| format!("${}", first + i);
            format!(
                "cost_usd = {}, turns = {}, input_tokens = {}, output_tokens = {}, cache_read_tokens = {},
                 cache_write_tokens = {}, duration_ms = {}, session_id = COALESCE({}, m.session_id), exit_code = {}",
                p(0),
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7),
                p(8)
            )
        };
        MappedSql {
            claim: claim(false),
            claim_by_id: claim(true),
            poll: format!(
                "SELECT u.{id}::text AS id, COALESCE(u.{title}::text, '') AS title, {body} AS body,
                        COALESCE(m.attempts, 0) AS attempts, m.session_id
                 FROM {t} u LEFT JOIN {s}.mapped_tasks m ON m.source = $1 AND m.task_id = u.{id}::text
                 WHERE (u.{status} = $4::{stype} AND (m.task_id IS NULL OR m.finished OR m.run_at <= now()))
                    OR (u.{status} = $3::{stype} AND m.lease_token IS NOT NULL AND m.lease_until < now())
                 ORDER BY u.{id}
                 LIMIT $2"
            ),
            heartbeat: format!(
                "UPDATE {s}.mapped_tasks m SET lease_until = now() + make_interval(secs => $4)
                 WHERE {}
                 RETURNING m.lease_until, set_config('synchronous_commit', 'off', true) AS async_commit",
                still_ours("$5")
            ),
            complete: format!(
                "WITH side AS (
                    UPDATE {s}.mapped_tasks m SET lease_token = NULL, lease_until = NULL, finished = true,
                        summary = $4, {}, updated_at = now()
                    WHERE {}
                    RETURNING m.task_id
                )
                UPDATE {t} u SET {status} = $15::{stype} FROM side WHERE u.{id} = $2::{itype} RETURNING 1",
                usage_from(5),
                still_ours("$14")
            ),
            fail: format!(
                "WITH side AS (
                    UPDATE {s}.mapped_tasks m SET lease_token = NULL, lease_until = NULL,
                        finished = $6::timestamptz IS NULL, last_error = $4, failure_kind = $5,
                        run_at = COALESCE($6, m.run_at), {}, updated_at = now()
                    WHERE {}
                    RETURNING m.task_id
                )
                UPDATE {t} u SET {status} = CASE WHEN $6::timestamptz IS NULL THEN $18::{stype} ELSE $17::{stype} END
                FROM side WHERE u.{id} = $2::{itype} RETURNING 1",
                usage_from(7),
                still_ours("$16")
            ),
            release: format!(
                "WITH side AS (
                    UPDATE {s}.mapped_tasks m SET lease_token = NULL, lease_until = NULL,
                        attempts = GREATEST(m.attempts - 1, 0), updated_at = now()
                    WHERE {}
                    RETURNING m.task_id
                )
                UPDATE {t} u SET {status} = $5::{stype} FROM side WHERE u.{id} = $2::{itype} RETURNING 1",
                still_ours("$4")
            ),
        }
    }
}

fn task_from_row(row: &PgRow, table: &str) -> Result<Task> {
    let get_text = |c: &str| row.try_get::<String, _>(c).map_err(|e| corrupt(format!("{c}: {e}")));
    let attempts: i32 = row.try_get("attempts").map_err(|e| corrupt(format!("attempts: {e}")))?;
    let mut task = Task::new(TaskId(get_text("id")?), get_text("title")?);
    task.body = get_text("body")?;
    task.attempts = u32::try_from(attempts).unwrap_or(0);
    task.last_session_id = row.try_get("session_id").map_err(|e| corrupt(format!("session_id: {e}")))?;
    task.meta.insert("table".to_owned(), table.to_owned());
    Ok(task)
}

impl MappedTable {
    pub(crate) async fn new(pool: &PgPool, schema: &str, mapping: TableMapping) -> Result<Self> {
        let types = inspect(pool, &mapping).await?;
        let sql = MappedSql::new(&quote_ident(schema), &mapping, &types);
        Ok(MappedTable { mapping, sql })
    }

    fn source(&self) -> &str {
        &self.mapping.table
    }

    pub(crate) async fn claim_batch(&self, db: &Db, max: usize, claimant: &Claimant) -> Result<Vec<Claim>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.claim(db, &self.sql.claim, max, None, claimant).await
    }

    pub(crate) async fn claim_one(&self, db: &Db, task: &Task, claimant: &Claimant) -> Result<ClaimOutcome> {
        let mut claims = self.claim(db, &self.sql.claim_by_id, 1, Some(task.id.as_str()), claimant).await?;
        Ok(claims.pop().map_or(ClaimOutcome::Taken, |c| ClaimOutcome::Claimed(Box::new(c))))
    }

    async fn claim(
        &self,
        db: &Db,
        statement: &str,
        max: usize,
        id: Option<&str>,
        claimant: &Claimant,
    ) -> Result<Vec<Claim>> {
        let token = new_token();
        let m = &self.mapping;
        let mut query = sqlx::query(statement)
            .bind(self.source())
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .bind(&claimant.worker_id)
            .bind(token)
            .bind(lease_secs(claimant.lease))
            .bind(i32::try_from(claimant.max_attempts).unwrap_or(i32::MAX))
            .bind(&m.running_value)
            .bind(&m.pending_value)
            .bind(&m.failed_value);
        if let Some(id) = id {
            query = query.bind(id);
        }
        let rows = db.fetch_all(query).await.map_err(|e| backend("claiming rows of the mapped table", e))?;
        rows.iter()
            .map(|row| {
                let task = task_from_row(row, &m.table)?;
                let lease_until: DateTime<Utc> =
                    row.try_get("lease_until").map_err(|e| corrupt(format!("lease_until: {e}")))?;
                Ok(Claim {
                    attempt: task.attempts,
                    task,
                    claimant: claimant.clone(),
                    token: token.to_string(),
                    lease_until: Some(lease_until),
                })
            })
            .collect()
    }

    pub(crate) async fn poll(&self, db: &Db, max: usize) -> Result<Vec<Task>> {
        let rows = db
            .fetch_all(
                sqlx::query(&self.sql.poll)
                    .bind(self.source())
                    .bind(i64::try_from(max).unwrap_or(i64::MAX))
                    .bind(&self.mapping.running_value)
                    .bind(&self.mapping.pending_value),
            )
            .await
            .map_err(|e| backend("polling the mapped table", e))?;
        rows.iter().map(|row| task_from_row(row, &self.mapping.table)).collect()
    }

    fn token(claim: &Claim) -> Result<i64> {
        claim.token.parse().map_err(|_| claim_lost(claim.task.id.as_str()))
    }

    pub(crate) async fn heartbeat(&self, db: &Db, claim: &Claim) -> Result<()> {
        let row = db
            .fetch_optional(
                sqlx::query(&self.sql.heartbeat)
                    .bind(self.source())
                    .bind(claim.task.id.as_str())
                    .bind(Self::token(claim)?)
                    .bind(lease_secs(claim.claimant.lease))
                    .bind(&self.mapping.running_value),
            )
            .await
            .map_err(|e| backend("extending a lease", e))?;
        row.map(|_| ()).ok_or_else(|| claim_lost(claim.task.id.as_str()))
    }

    pub(crate) async fn complete(&self, db: &Db, claim: &Claim, report: &Report) -> Result<()> {
        let usage = UsageColumns::new(&report.usage, report.duration, report.exit_code);
        let row = db
            .fetch_optional(
                bind_usage(
                    sqlx::query(&self.sql.complete)
                        .bind(self.source())
                        .bind(claim.task.id.as_str())
                        .bind(Self::token(claim)?)
                        .bind(clean_text(&report.summary)),
                    usage,
                )
                .bind(&self.mapping.running_value)
                .bind(&self.mapping.done_value),
            )
            .await
            .map_err(|e| backend("reporting a completed row", e))?;
        row.map(|_| ()).ok_or_else(|| claim_lost(claim.task.id.as_str()))
    }

    pub(crate) async fn fail(&self, db: &Db, claim: &Claim, failure: &Failure) -> Result<()> {
        let usage = UsageColumns::new(&failure.usage, failure.duration, failure.exit_code);
        let retry_at = match failure.decision {
            RetryDecision::RetryAt(at) => Some(at),
            RetryDecision::GiveUp => None,
        };
        let row = db
            .fetch_optional(
                bind_usage(
                    sqlx::query(&self.sql.fail)
                        .bind(self.source())
                        .bind(claim.task.id.as_str())
                        .bind(Self::token(claim)?)
                        .bind(clean_text(&failure.reason))
                        .bind(failure.kind.as_str())
                        .bind(retry_at),
                    usage,
                )
                .bind(&self.mapping.running_value)
                .bind(&self.mapping.pending_value)
                .bind(&self.mapping.failed_value),
            )
            .await
            .map_err(|e| backend("reporting a failed row", e))?;
        row.map(|_| ()).ok_or_else(|| claim_lost(claim.task.id.as_str()))
    }

    pub(crate) async fn release(&self, db: &Db, claim: &Claim) -> Result<()> {
        let row = db
            .fetch_optional(
                sqlx::query(&self.sql.release)
                    .bind(self.source())
                    .bind(claim.task.id.as_str())
                    .bind(Self::token(claim)?)
                    .bind(&self.mapping.running_value)
                    .bind(&self.mapping.pending_value),
            )
            .await
            .map_err(|e| backend("releasing a row", e))?;
        row.map(|_| ()).ok_or_else(|| claim_lost(claim.task.id.as_str()))
    }
}
