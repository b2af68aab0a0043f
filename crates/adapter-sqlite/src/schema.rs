//! Opening the database file: connection settings and the embedded schema migrations.

use std::path::Path;

use bg_run_core::{Error, Result};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error;
use crate::options::SqliteOptions;

/// Marks the file as bg-run's (`PRAGMA application_id`), so another program's database is never
/// mistaken for an empty queue and migrated.
const APPLICATION_ID: i32 = 0x6267_7275;

/// The schema, one step per released change. `PRAGMA user_version` records how many steps a file
/// has had; a step is never edited once released, only followed by a new one.
const MIGRATIONS: &[&str] = &[
    // Times are milliseconds since the Unix epoch (UTC), so eligibility is an integer compare.
    // `labels` and `tokens` are JSON. `attempts` counts started attempts, including one that is
    // running now.
    r#"
    CREATE TABLE tasks (
        id                 INTEGER PRIMARY KEY AUTOINCREMENT,
        queue              TEXT    NOT NULL,
        title              TEXT    NOT NULL,
        body               TEXT    NOT NULL DEFAULT '',
        labels             TEXT    NOT NULL DEFAULT '[]',
        priority           INTEGER NOT NULL DEFAULT 0,
        status             TEXT    NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'running', 'review', 'failed', 'closed', 'cancelled')),
        attempts           INTEGER NOT NULL DEFAULT 0,
        max_attempts       INTEGER,
        claim_max_attempts INTEGER,
        unique_key         TEXT,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL,
        run_at             INTEGER NOT NULL,
        claimed_by         TEXT,
        claimed_at         INTEGER,
        lease_token        TEXT,
        lease_until        INTEGER,
        summary            TEXT,
        last_error         TEXT,
        exit_code          INTEGER,
        duration_ms        INTEGER,
        cost_usd           REAL,
        turns              INTEGER,
        tokens             TEXT,
        session_id         TEXT
    );

    -- Claims walk this in priority order and stop after LIMIT rows (rowid breaks ties). Only
    -- live tasks are in it, so finished ones cost no index writes and the index stays small.
    CREATE INDEX tasks_claim ON tasks (queue, status, priority DESC)
        WHERE status = 'pending' OR status = 'running';
    CREATE UNIQUE INDEX tasks_unique_key ON tasks (queue, unique_key) WHERE unique_key IS NOT NULL;

    CREATE TABLE attempts (
        id          INTEGER PRIMARY KEY,
        task_id     INTEGER NOT NULL REFERENCES tasks (id),
        number      INTEGER NOT NULL,
        started_at  INTEGER,
        finished_at INTEGER NOT NULL,
        outcome     TEXT    NOT NULL,
        message     TEXT,
        worker      TEXT
    );
    CREATE INDEX attempts_task ON attempts (task_id, id);

    -- A claim that takes over an expired lease happens inside the claim's UPDATE, where only a
    -- trigger still sees the abandoned attempt's worker and start time.
    CREATE TRIGGER tasks_lease_taken_over AFTER UPDATE OF lease_token ON tasks
    WHEN OLD.status = 'running' AND NEW.status = 'running'
    BEGIN
        INSERT INTO attempts (task_id, number, started_at, finished_at, outcome, message, worker)
        VALUES (OLD.id, OLD.attempts, OLD.claimed_at, NEW.claimed_at, 'expired',
                'the lease expired without a heartbeat (the worker stopped or lost contact); the attempt counts',
                OLD.claimed_by);
    END;
    "#,
];

/// The schema version (`PRAGMA user_version`) this build migrates files to.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens (and if allowed creates) the database and brings its schema up to date.
pub(crate) fn open(options: &SqliteOptions) -> Result<Connection> {
    let path = options.path.as_path();
    let exists = path.try_exists().map_err(|e| {
        Error::config(format!("task database {}: cannot check whether it exists ({e})", path.display()))
    })?;
    if exists && path.is_dir() {
        return Err(Error::config(format!("task database {}: is a directory, not a database file", path.display())));
    }
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if !exists {
        if !options.create {
            return Err(Error::config(format!(
                "no task database at {}; add a task first with `bg-run add`",
                path.display()
            )));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::config(format!(
                    "task database {}: cannot create directory {} ({e})",
                    path.display(),
                    dir.display()
                ))
            })?;
        }
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let mut conn = Connection::open_with_flags(path, flags).map_err(|e| error::open(path, e))?;
    configure(&conn, options).map_err(|e| error::open(path, e))?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// A second connection for watching the file for commits: same settings, no migrations.
pub(crate) fn open_watcher(options: &SqliteOptions) -> Result<Connection> {
    let path = options.path.as_path();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| error::open(path, e))?;
    configure(&conn, options).map_err(|e| error::open(path, e))?;
    Ok(conn)
}

fn configure(conn: &Connection, options: &SqliteOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    // Reading the header first makes a non-database file fail here, with a clear message.
    let _: i32 = conn.query_row("PRAGMA application_id", [], |row| row.get(0))?;
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // WAL lets workers read while another process writes; the setting sticks to the file.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %options.path.display(), mode, "SQLite could not switch the task database to WAL mode");
        }
    }
    // In WAL mode NORMAL stays consistent after a crash; only the last commits before a power
    // loss can be lost, which a lease expiry then recovers.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // After a burst the WAL shrinks back once checkpointed, instead of keeping its peak size.
    conn.pragma_update_and_check(None, "journal_size_limit", 32 * 1024 * 1024, |row| row.get::<_, i64>(0))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let latest = SCHEMA_VERSION;
    let at_latest = |conn: &Connection| -> Result<bool> {
        let (version, app_id) = header(conn).map_err(|e| error::open(path, e))?;
        check_header(conn, path, version, app_id)?;
        Ok(version == latest)
    };
    if at_latest(conn)? {
        return Ok(());
    }
    // Another process may be migrating the same fresh file: take the write lock, then look again.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| error::open(path, e))?;
    if !at_latest(&tx)? {
        let (version, _) = header(&tx).map_err(|e| error::open(path, e))?;
        for (step, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(|e| {
                Error::config(format!("task database {}: schema migration {} failed: {e}", path.display(), step + 1))
            })?;
        }
        tx.pragma_update(None, "user_version", latest).map_err(|e| error::open(path, e))?;
        tx.pragma_update(None, "application_id", APPLICATION_ID).map_err(|e| error::open(path, e))?;
    }
    tx.commit().map_err(|e| error::open(path, e))
}

fn header(conn: &Connection) -> rusqlite::Result<(i64, i32)> {
    let version = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let app_id = conn.query_row("PRAGMA application_id", [], |row| row.get(0))?;
    Ok((version, app_id))
}

fn check_header(conn: &Connection, path: &Path, version: i64, app_id: i32) -> Result<()> {
    let latest = SCHEMA_VERSION;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(Error::config(format!(
            "task database {}: is a SQLite database of another application; choose another path",
            path.display()
        )));
    }
    if version > latest {
        return Err(Error::config(format!(
            "task database {}: was written by a newer bg-run (schema {version}, this build knows {latest}); upgrade bg-run",
            path.display()
        )));
    }
    if app_id == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(|e| error::open(path, e))?;
        if tables > 0 {
            return Err(Error::config(format!(
                "task database {}: is a SQLite database that bg-run did not create; choose another path",
                path.display()
            )));
        }
    }
    Ok(())
}
