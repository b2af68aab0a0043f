//! Reports on bg-run's own table: completions and failures written many rows per statement,
//! each row only if its lease token still matches. A failed or released attempt gets a row in the
//! attempts table; a successful one stays in the task row while the task is in review (see
//! [`crate::record::DONE_ATTEMPT_FROM_TASK`]).
//!
//! The same statements serve one task (batch size 1) and a group commit of many: the rows travel
//! as parallel arrays and `unnest` turns them back into a table, so a statement's text never
//! depends on how many rows it carries and stays prepared.

use std::collections::HashSet;

use bg_run_core::{Claim, Failure, Report, Result, RetryDecision, Usage};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::claim::parse_claim;
use crate::db::Db;
use crate::error::{backend, claim_lost, corrupt};

pub(crate) struct ReportSql {
    complete: String,
    complete_one: String,
    fail: String,
    fail_one: String,
    release: String,
}

impl ReportSql {
    pub(crate) fn new(s: &str, channel: &str) -> Self {
        ReportSql {
            complete: format!(
                "WITH input AS (
                    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::float8[], $5::int4[],
                                         $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[],
                                         $11::text[], $12::int4[])
                        AS i(id, token, summary, cost_usd, turns, input_tokens, output_tokens,
                             cache_read_tokens, cache_write_tokens, duration_ms, session_id, exit_code)
                ), done AS (
                    UPDATE {s}.tasks t SET
                        status = 'review', summary = i.summary, cost_usd = i.cost_usd, turns = i.turns,
                        input_tokens = i.input_tokens, output_tokens = i.output_tokens,
                        cache_read_tokens = i.cache_read_tokens, cache_write_tokens = i.cache_write_tokens,
                        duration_ms = i.duration_ms, session_id = COALESCE(i.session_id, t.session_id),
                        exit_code = i.exit_code, lease_token = NULL, lease_until = NULL, updated_at = now()
                    FROM input i
                    WHERE t.id = i.id AND t.lease_token = i.token AND t.status = 'running'
                    RETURNING t.id
                )
                SELECT id FROM done"
            ),
            fail: format!(
                "WITH input AS (
                    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                                         $6::timestamptz[], $7::float8[], $8::int4[], $9::int8[], $10::int8[],
                                         $11::int8[], $12::int8[], $13::int8[], $14::text[], $15::int4[])
                        AS i(id, token, reason, kind, stderr_tail, retry_at, cost_usd, turns, input_tokens,
                             output_tokens, cache_read_tokens, cache_write_tokens, duration_ms, session_id,
                             exit_code)
                ), failed AS (
                    UPDATE {s}.tasks t SET
                        status = CASE WHEN i.retry_at IS NULL THEN 'failed' ELSE 'pending' END,
                        run_at = COALESCE(i.retry_at, t.run_at),
                        last_error = i.reason, failure_kind = i.kind, cost_usd = i.cost_usd, turns = i.turns,
                        input_tokens = i.input_tokens, output_tokens = i.output_tokens,
                        cache_read_tokens = i.cache_read_tokens, cache_write_tokens = i.cache_write_tokens,
                        duration_ms = i.duration_ms, session_id = COALESCE(i.session_id, t.session_id),
                        exit_code = i.exit_code, lease_token = NULL, lease_until = NULL, updated_at = now()
                    FROM input i
                    WHERE t.id = i.id AND t.lease_token = i.token AND t.status = 'running'
                    RETURNING t.id, t.attempts, t.claimed_by, t.claimed_at
                ), history AS (
                    INSERT INTO {s}.attempts (task_id, attempt, worker, started_at, outcome, message,
                        failure_kind, stderr_tail, cost_usd, turns, input_tokens, output_tokens,
                        cache_read_tokens, cache_write_tokens, duration_ms, session_id, exit_code)
                    SELECT f.id, f.attempts, f.claimed_by, f.claimed_at,
                           CASE WHEN i.retry_at IS NULL THEN 'gave_up' ELSE 'failed' END,
                           i.reason, i.kind, i.stderr_tail, i.cost_usd, i.turns, i.input_tokens, i.output_tokens,
                           i.cache_read_tokens, i.cache_write_tokens, i.duration_ms, i.session_id, i.exit_code
                    FROM failed f JOIN input i ON i.id = f.id
                )
                SELECT id FROM failed"
            ),
            // One row with plain parameters: a sixth less work for the server than the same row
            // through arrays, which is what batch size 1 (one statement per task) runs on.
            complete_one: format!(
                "WITH done AS (
                    UPDATE {s}.tasks t SET
                        status = 'review', summary = $3, cost_usd = $4, turns = $5, input_tokens = $6,
                        output_tokens = $7, cache_read_tokens = $8, cache_write_tokens = $9, duration_ms = $10,
                        session_id = COALESCE($11, t.session_id), exit_code = $12, lease_token = NULL,
                        lease_until = NULL, updated_at = now()
                    WHERE t.id = $1 AND t.lease_token = $2 AND t.status = 'running'
                    RETURNING t.id
                )
                SELECT id FROM done"
            ),
            fail_one: format!(
                "WITH failed AS (
                    UPDATE {s}.tasks t SET
                        status = CASE WHEN $6::timestamptz IS NULL THEN 'failed' ELSE 'pending' END,
                        run_at = COALESCE($6, t.run_at), last_error = $3, failure_kind = $4, cost_usd = $7,
                        turns = $8, input_tokens = $9, output_tokens = $10, cache_read_tokens = $11,
                        cache_write_tokens = $12, duration_ms = $13, session_id = COALESCE($14, t.session_id),
                        exit_code = $15, lease_token = NULL, lease_until = NULL, updated_at = now()
                    WHERE t.id = $1 AND t.lease_token = $2 AND t.status = 'running'
                    RETURNING t.id, t.attempts, t.claimed_by, t.claimed_at
                ), history AS (
                    INSERT INTO {s}.attempts (task_id, attempt, worker, started_at, outcome, message,
                        failure_kind, stderr_tail, cost_usd, turns, input_tokens, output_tokens,
                        cache_read_tokens, cache_write_tokens, duration_ms, session_id, exit_code)
                    SELECT id, attempts, claimed_by, claimed_at,
                           CASE WHEN $6::timestamptz IS NULL THEN 'gave_up' ELSE 'failed' END,
                           $3, $4, $5, $7, $8, $9, $10, $11, $12, $13, $14, $15
                    FROM failed
                )
                SELECT id FROM failed"
            ),
            // A released task is eligible at once, so other workers are woken for it.
            release: format!(
                "WITH released AS (
                    UPDATE {s}.tasks SET status = 'pending', attempts = GREATEST(attempts - 1, 0),
                        lease_token = NULL, lease_until = NULL, updated_at = now()
                    WHERE id = $1 AND lease_token = $2 AND status = 'running'
                    RETURNING id, queue, attempts + 1 AS attempt, claimed_by, claimed_at
                ), history AS (
                    INSERT INTO {s}.attempts (task_id, attempt, worker, started_at, outcome, message)
                    SELECT id, attempt, claimed_by, claimed_at, 'released', 'the worker shut down and gave the task back'
                    FROM released
                )
                SELECT pg_notify('{channel}', queue)::text FROM released"
            ),
        }
    }
}

/// What the agent used, as stored columns.
#[derive(Clone, Debug, Default)]
pub(crate) struct UsageColumns {
    pub cost_usd: Option<f64>,
    pub turns: Option<i32>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
    pub duration_ms: i64,
    pub session_id: Option<String>,
    pub exit_code: Option<i32>,
}

impl UsageColumns {
    pub(crate) fn new(usage: &Usage, duration: std::time::Duration, exit_code: Option<i32>) -> Self {
        let tokens = usage.tokens.as_ref();
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        UsageColumns {
            cost_usd: usage.cost_usd.filter(|c| c.is_finite()),
            turns: usage.turns.map(|t| i32::try_from(t).unwrap_or(i32::MAX)),
            input_tokens: tokens.map(|t| count(t.input)),
            output_tokens: tokens.map(|t| count(t.output)),
            cache_read_tokens: tokens.map(|t| count(t.cache_read)),
            cache_write_tokens: tokens.map(|t| count(t.cache_write)),
            duration_ms: i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
            session_id: usage.session_id.as_deref().map(clean_text),
            exit_code,
        }
    }
}

/// PostgreSQL text cannot hold NUL; an agent's output can. One bad byte must not fail a whole
/// group commit, so it is replaced.
pub(crate) fn clean_text(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Completion {
    pub id: i64,
    pub token: i64,
    pub summary: String,
    pub usage: UsageColumns,
}

impl Completion {
    pub(crate) fn new(claim: &Claim, report: &Report) -> Result<Self> {
        let (id, token) = parse_claim(claim)?;
        Ok(Completion {
            id,
            token,
            summary: clean_text(&report.summary),
            usage: UsageColumns::new(&report.usage, report.duration, report.exit_code),
        })
    }
}

#[derive(Clone, Debug)]
pub(crate) struct FailureRow {
    pub id: i64,
    pub token: i64,
    pub reason: String,
    pub kind: &'static str,
    pub stderr_tail: String,
    /// `None` gives up.
    pub retry_at: Option<DateTime<Utc>>,
    pub usage: UsageColumns,
}

impl FailureRow {
    pub(crate) fn new(claim: &Claim, failure: &Failure) -> Result<Self> {
        let (id, token) = parse_claim(claim)?;
        Ok(FailureRow {
            id,
            token,
            reason: clean_text(&failure.reason),
            kind: failure.kind.as_str(),
            stderr_tail: clean_text(&failure.stderr_tail),
            retry_at: match failure.decision {
                RetryDecision::RetryAt(at) => Some(at),
                RetryDecision::GiveUp => None,
            },
            usage: UsageColumns::new(&failure.usage, failure.duration, failure.exit_code),
        })
    }
}

/// Parallel arrays of the usage columns, in statement order.
#[derive(Default)]
struct UsageArrays {
    cost_usd: Vec<Option<f64>>,
    turns: Vec<Option<i32>>,
    input_tokens: Vec<Option<i64>>,
    output_tokens: Vec<Option<i64>>,
    cache_read_tokens: Vec<Option<i64>>,
    cache_write_tokens: Vec<Option<i64>>,
    duration_ms: Vec<i64>,
    session_id: Vec<Option<String>>,
    exit_code: Vec<Option<i32>>,
}

impl UsageArrays {
    fn push(&mut self, u: UsageColumns) {
        self.cost_usd.push(u.cost_usd);
        self.turns.push(u.turns);
        self.input_tokens.push(u.input_tokens);
        self.output_tokens.push(u.output_tokens);
        self.cache_read_tokens.push(u.cache_read_tokens);
        self.cache_write_tokens.push(u.cache_write_tokens);
        self.duration_ms.push(u.duration_ms);
        self.session_id.push(u.session_id);
        self.exit_code.push(u.exit_code);
    }

    /// Binds the arrays in the order of the usage columns in the statements, after the ones
    /// specific to the report.
    fn bind(self, query: PgQuery<'_>) -> PgQuery<'_> {
        query
            .bind(self.cost_usd)
            .bind(self.turns)
            .bind(self.input_tokens)
            .bind(self.output_tokens)
            .bind(self.cache_read_tokens)
            .bind(self.cache_write_tokens)
            .bind(self.duration_ms)
            .bind(self.session_id)
            .bind(self.exit_code)
    }
}

fn written_ids(rows: &[PgRow]) -> Result<HashSet<i64>> {
    rows.iter().map(|row| row.try_get::<i64, _>("id").map_err(|e| corrupt(format!("id: {e}")))).collect()
}

/// Marks the rows done and returns the ids whose token still matched; the others lost their claim.
pub(crate) async fn write_completions(db: &Db, sql: &ReportSql, mut rows: Vec<Completion>) -> Result<HashSet<i64>> {
    if rows.len() == 1 {
        if let Some(row) = rows.pop() {
            return write_completion(db, sql, row).await;
        }
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut tokens = Vec::with_capacity(rows.len());
    let mut summaries = Vec::with_capacity(rows.len());
    let mut usage = UsageArrays::default();
    for row in rows {
        ids.push(row.id);
        tokens.push(row.token);
        summaries.push(row.summary);
        usage.push(row.usage);
    }
    let query = sqlx::query(&sql.complete).bind(ids).bind(tokens).bind(summaries);
    let rows = db.fetch_all(usage.bind(query)).await.map_err(|e| backend("reporting completed tasks", e))?;
    written_ids(&rows)
}

/// Records the failed attempts (retry or give up) and returns the ids whose token still matched.
pub(crate) async fn write_failures(db: &Db, sql: &ReportSql, mut rows: Vec<FailureRow>) -> Result<HashSet<i64>> {
    if rows.len() == 1 {
        if let Some(row) = rows.pop() {
            return write_failure(db, sql, row).await;
        }
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut tokens = Vec::with_capacity(rows.len());
    let mut reasons = Vec::with_capacity(rows.len());
    let mut kinds = Vec::with_capacity(rows.len());
    let mut tails = Vec::with_capacity(rows.len());
    let mut retry_at = Vec::with_capacity(rows.len());
    let mut usage = UsageArrays::default();
    for row in rows {
        ids.push(row.id);
        tokens.push(row.token);
        reasons.push(row.reason);
        kinds.push(row.kind);
        tails.push(row.stderr_tail);
        retry_at.push(row.retry_at);
        usage.push(row.usage);
    }
    let query = sqlx::query(&sql.fail).bind(ids).bind(tokens).bind(reasons).bind(kinds).bind(tails).bind(retry_at);
    let rows = db.fetch_all(usage.bind(query)).await.map_err(|e| backend("reporting failed tasks", e))?;
    written_ids(&rows)
}

pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

pub(crate) fn bind_usage(query: PgQuery<'_>, usage: UsageColumns) -> PgQuery<'_> {
    query
        .bind(usage.cost_usd)
        .bind(usage.turns)
        .bind(usage.input_tokens)
        .bind(usage.output_tokens)
        .bind(usage.cache_read_tokens)
        .bind(usage.cache_write_tokens)
        .bind(usage.duration_ms)
        .bind(usage.session_id)
        .bind(usage.exit_code)
}

async fn write_completion(db: &Db, sql: &ReportSql, row: Completion) -> Result<HashSet<i64>> {
    let query = sqlx::query(&sql.complete_one).bind(row.id).bind(row.token).bind(row.summary);
    let rows =
        db.fetch_all(bind_usage(query, row.usage)).await.map_err(|e| backend("reporting a completed task", e))?;
    written_ids(&rows)
}

async fn write_failure(db: &Db, sql: &ReportSql, row: FailureRow) -> Result<HashSet<i64>> {
    let query = sqlx::query(&sql.fail_one)
        .bind(row.id)
        .bind(row.token)
        .bind(row.reason)
        .bind(row.kind)
        .bind(row.stderr_tail)
        .bind(row.retry_at);
    let rows = db.fetch_all(bind_usage(query, row.usage)).await.map_err(|e| backend("reporting a failed task", e))?;
    written_ids(&rows)
}

pub(crate) async fn release(db: &Db, sql: &ReportSql, claim: &Claim) -> Result<()> {
    let (id, token) = parse_claim(claim)?;
    let released = db
        .fetch_optional(sqlx::query(&sql.release).bind(id).bind(token))
        .await
        .map_err(|e| backend("releasing a task", e))?;
    match released {
        Some(_) => Ok(()),
        None => Err(claim_lost(claim.task.id.as_str())),
    }
}
