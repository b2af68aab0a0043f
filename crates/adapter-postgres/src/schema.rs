//! bg-run's tables, created and upgraded by embedded migrations in a schema of their own.
//!
//! Migrations run in one transaction under an advisory lock keyed by the schema name, so a fleet
//! of workers starting at once applies each migration exactly once and none of them sees a
//! half-built schema.

use sqlx::postgres::PgRow;
use sqlx::{Executor, PgPool, Row};

use crate::error::{backend, ADAPTER};
use crate::options::quote_ident;
use bg_run_core::{Error, Result};

/// First key of the advisory lock; the second is `hashtext(schema)`.
const LOCK_CLASS: i32 = 0x6267_7275;

struct Migration {
    version: i32,
    description: &'static str,
    /// `{s}` is the quoted schema, `{channel}` the NOTIFY channel.
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "tasks, attempt history, mapped-table side table, insert notifications",
        sql: r#"
CREATE TABLE {s}.tasks (
    id bigserial PRIMARY KEY,
    queue text NOT NULL DEFAULT 'default',
    title text NOT NULL,
    body text NOT NULL DEFAULT '',
    labels text[] NOT NULL DEFAULT '{}',
    priority integer NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'review', 'failed', 'cancelled', 'closed')),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer CHECK (max_attempts >= 1),
    -- The limit of the worker that last claimed the task, shown while the task has none itself.
    claimant_max_attempts integer,
    run_at timestamptz NOT NULL DEFAULT now(),
    unique_key text,
    claimed_by text,
    claimed_at timestamptz,
    lease_token bigint,
    lease_until timestamptz,
    summary text,
    last_error text,
    failure_kind text,
    cost_usd double precision,
    turns integer,
    input_tokens bigint,
    output_tokens bigint,
    cache_read_tokens bigint,
    cache_write_tokens bigint,
    duration_ms bigint,
    session_id text,
    exit_code integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tasks_unique_key ON {s}.tasks (queue, unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX tasks_pending ON {s}.tasks (queue, priority DESC, run_at, id) WHERE status = 'pending';
CREATE INDEX tasks_leases ON {s}.tasks (queue, lease_until) WHERE status = 'running';

-- One row per finished attempt. No foreign key: the check would lock the task row once more on
-- every completion, and tasks are never deleted by bg-run.
CREATE TABLE {s}.attempts (
    task_id bigint NOT NULL,
    attempt integer NOT NULL,
    worker text,
    started_at timestamptz,
    finished_at timestamptz NOT NULL DEFAULT now(),
    outcome text NOT NULL
        CHECK (outcome IN ('done', 'failed', 'gave_up', 'released', 'expired', 'cancelled')),
    -- The summary on success, the reason otherwise.
    message text,
    failure_kind text,
    stderr_tail text,
    cost_usd double precision,
    turns integer,
    input_tokens bigint,
    output_tokens bigint,
    cache_read_tokens bigint,
    cache_write_tokens bigint,
    duration_ms bigint,
    session_id text,
    exit_code integer
);
CREATE INDEX attempts_task ON {s}.attempts (task_id);

-- Leases and results for rows of a user's own table (TableMapping), keyed by table and row id.
CREATE TABLE {s}.mapped_tasks (
    source text NOT NULL,
    task_id text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    -- Set when the row reached done or failed: if the user puts it back to pending, it starts
    -- over with fresh attempts.
    finished boolean NOT NULL DEFAULT false,
    run_at timestamptz NOT NULL DEFAULT now(),
    claimed_by text,
    claimed_at timestamptz,
    lease_token bigint,
    lease_until timestamptz,
    summary text,
    last_error text,
    failure_kind text,
    cost_usd double precision,
    turns integer,
    input_tokens bigint,
    output_tokens bigint,
    cache_read_tokens bigint,
    cache_write_tokens bigint,
    duration_ms bigint,
    session_id text,
    exit_code integer,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, task_id)
);

-- A statement-level trigger sends one notification per queue per insert statement, however many
-- rows it adds, and also covers rows inserted by hand or by other programs.
CREATE FUNCTION {s}.notify_new_tasks() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_notify('{channel}', queue) FROM (SELECT DISTINCT queue FROM new_tasks) AS added;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER tasks_notify AFTER INSERT ON {s}.tasks
    REFERENCING NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.notify_new_tasks();
"#,
    },
    Migration {
        version: 2,
        description: "vacuum the tasks table early and at full speed",
        // Every claim leaves a dead entry at the front of the pending index, which every later
        // claim walks past until a vacuum removes it; the default (a fifth of the table dead,
        // throttled) lets claims slow down by an order of magnitude on a busy queue.
        sql: r#"
ALTER TABLE {s}.tasks SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);
"#,
    },
    Migration {
        version: 3,
        description: "drop CHECK constraints from the hot tables",
        // PostgreSQL rebuilds CHECK expressions from their stored text for every statement that
        // writes the table: a sixteenth of the server's work per task. bg-run writes these
        // columns only with values it validated; `Status` and `AttemptOutcome` reject anything
        // else on reading.
        sql: r#"
ALTER TABLE {s}.tasks DROP CONSTRAINT IF EXISTS tasks_status_check,
    DROP CONSTRAINT IF EXISTS tasks_max_attempts_check;
ALTER TABLE {s}.attempts DROP CONSTRAINT IF EXISTS attempts_outcome_check;
"#,
    },
    Migration {
        version: 4,
        description: "a task in review keeps its successful attempt in its own row",
        // Written from now on only when the task leaves review; the rows written before for
        // tasks still in review would show twice.
        sql: r#"
DELETE FROM {s}.attempts a USING {s}.tasks t
WHERE a.task_id = t.id AND t.status = 'review' AND a.outcome = 'done' AND a.attempt = t.attempts;
"#,
    },
];

/// Brings `schema` up to the latest version. Cheap when it already is: no lock is taken.
pub(crate) async fn migrate(pool: &PgPool, schema: &str, channel: &str) -> Result<()> {
    let s = quote_ident(schema);
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    if current_version(pool, schema, &s).await? == Some(latest) {
        return Ok(());
    }

    let mut tx = pool.begin().await.map_err(|e| backend("starting the migration", e))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(LOCK_CLASS)
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(|e| backend("waiting for the migration lock", e))?;
    let setup = format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.migrations (
             version integer PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    );
    // A query without parameters goes out as a simple query, which may hold several statements.
    (&mut *tx).execute(setup.as_str()).await.map_err(|e| backend("creating the schema", e))?;
    let applied = versions(
        sqlx::query(&format!("SELECT version FROM {s}.migrations"))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| backend("reading applied migrations", e))?,
    )?;
    check_not_newer(schema, &applied, latest)?;
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let sql = migration.sql.replace("{s}", &s).replace("{channel}", channel);
        (&mut *tx)
            .execute(sql.as_str())
            .await
            .map_err(|e| backend(&format!("applying migration {}", migration.version), e))?;
        sqlx::query(&format!("INSERT INTO {s}.migrations (version, description) VALUES ($1, $2)"))
            .bind(migration.version)
            .bind(migration.description)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("recording a migration", e))?;
        tracing::info!(schema, version = migration.version, "applied migration");
    }
    tx.commit().await.map_err(|e| backend("committing the migration", e))
}

/// The schema's version, or `None` when bg-run's tables are not there yet.
async fn current_version(pool: &PgPool, schema: &str, s: &str) -> Result<Option<i32>> {
    let exists: Option<String> = sqlx::query("SELECT to_regclass($1)::text")
        .bind(format!("{s}.migrations"))
        .fetch_one(pool)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| backend("checking the schema", e))?;
    if exists.is_none() {
        return Ok(None);
    }
    let applied = versions(
        sqlx::query(&format!("SELECT version FROM {s}.migrations"))
            .fetch_all(pool)
            .await
            .map_err(|e| backend("reading applied migrations", e))?,
    )?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    check_not_newer(schema, &applied, latest)?;
    Ok(applied.into_iter().max())
}

fn versions(rows: Vec<PgRow>) -> Result<Vec<i32>> {
    rows.iter().map(|row| row.try_get(0).map_err(|e| backend("reading applied migrations", e))).collect()
}

fn check_not_newer(schema: &str, applied: &[i32], latest: i32) -> Result<()> {
    match applied.iter().max() {
        Some(&newest) if newest > latest => Err(Error::config(format!(
            "{ADAPTER}: schema '{schema}' is at version {newest}, newer than this bg-run knows ({latest}); upgrade bg-run or use another schema"
        ))),
        _ => Ok(()),
    }
}
