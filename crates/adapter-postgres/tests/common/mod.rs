//! Shared test support: a throwaway schema in the real PostgreSQL at `DATABASE_URL`, and the
//! conformance harnesses for bg-run's own table and for a mapped user table.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bg_run_core::{NewTask, TaskId, TaskQueue};
use bg_run_postgres::{PostgresOptions, PostgresQueue, Status, TableMapping, TaskStore};
use bg_run_testkit::conformance::{Fault, Harness, Observed, ObservedState};
use bg_run_testkit::store_conformance::StoreHarness;
use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool, Row};

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// A schema of its own for one test, dropped (with everything in it) when this is dropped, even
/// when the test panics.
pub struct TestDb {
    pub url: String,
    pub schema: String,
    /// Raw access for setting up and checking what the queue cannot show.
    pub pool: PgPool,
}

impl TestDb {
    /// `None` (after a notice) when PostgreSQL cannot be reached and `CI` is not set; under CI an
    /// unreachable database fails the test.
    pub async fn new() -> Option<TestDb> {
        let url = database_url();
        let reachable = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&url)).await;
        match reachable {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            failure => {
                let why = match failure {
                    Ok(Err(e)) => bg_run_core::redact::redact(&e.to_string()),
                    _ => "timed out after 10s".to_owned(),
                };
                if std::env::var_os("CI").is_some() {
                    panic!(
                        "PostgreSQL at DATABASE_URL is not reachable ({why}); CI needs it: run scripts/ensure-postgres"
                    );
                }
                eprintln!("SKIPPED: PostgreSQL at DATABASE_URL is not reachable ({why}); set DATABASE_URL or start it");
                return None;
            }
        }
        let schema = format!("bgt_{:016x}", rand::random::<u64>());
        let pool = PgPoolOptions::new().max_connections(3).connect(&url).await.expect("test pool");
        Some(TestDb { url, schema, pool })
    }

    /// Like `new`, for harnesses that cannot skip: the conformance macro needs a harness.
    pub async fn required() -> TestDb {
        match TestDb::new().await {
            Some(db) => db,
            None => panic!("PostgreSQL at DATABASE_URL is not reachable; the conformance suite needs it"),
        }
    }

    pub fn options(&self) -> PostgresOptions {
        PostgresOptions::new(&self.url).schema(&self.schema).pool_size(4)
    }

    pub async fn connect(&self, batch: usize) -> PostgresQueue {
        PostgresQueue::connect(self.options().batch(batch)).await.expect("connect the queue")
    }

    /// The schema-qualified name of one of bg-run's tables.
    pub fn table(&self, name: &str) -> String {
        format!("\"{}\".{name}", self.schema)
    }

    /// Ends every server connection that last ran a statement in this test's schema, as a
    /// PostgreSQL restart would (other tests' connections are left alone). Returns how many.
    pub async fn kill_connections(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE pid <> pg_backend_pid() AND (query LIKE '%' || $1 || '%' OR query LIKE 'LISTEN%' || $1 || '%')",
        )
        .bind(&self.schema)
        .fetch_one(&self.pool)
        .await
        .expect("terminate connections")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        // Drop is not async; a thread with its own runtime does the clean-up even mid-panic.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&url).await.ok()?;
                sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).execute(&mut conn).await.ok()?;
                conn.close().await.ok()
            })
        });
        let _ = done.join();
    }
}

fn observed_state(status: Status) -> ObservedState {
    match status {
        Status::Pending => ObservedState::Pending,
        Status::Running => ObservedState::Working,
        Status::Review | Status::Closed => ObservedState::Done,
        Status::Failed | Status::Cancelled => ObservedState::Failed,
    }
}

/// The conformance harness for bg-run's own table, with `batch` rows per claim and group commit.
pub struct PgHarness {
    pub db: TestDb,
    pub queue: Arc<PostgresQueue>,
    batch: usize,
}

impl PgHarness {
    pub async fn new(batch: usize) -> PgHarness {
        let db = TestDb::required().await;
        let queue = Arc::new(db.connect(batch).await);
        PgHarness { db, queue, batch }
    }
}

impl StoreHarness for PgHarness {
    fn store(&self) -> Arc<dyn TaskStore> {
        self.queue.clone()
    }
}

#[async_trait]
impl Harness for PgHarness {
    fn queue(&self) -> Arc<dyn TaskQueue> {
        self.queue.clone()
    }

    async fn reopen(&self) -> Arc<dyn TaskQueue> {
        Arc::new(self.db.connect(self.batch).await)
    }

    async fn add_task(&self, title: &str, body: &str) -> TaskId {
        self.queue.enqueue(NewTask::new(title).body(body)).await.expect("enqueue")
    }

    async fn observe(&self, id: &TaskId) -> Observed {
        let record = self.queue.get(id).await.expect("get");
        let mut messages: Vec<String> = record.history.iter().filter_map(|a| a.message.clone()).collect();
        messages.extend(record.summary.clone());
        messages.extend(record.last_error.clone());
        Observed {
            state: observed_state(record.status),
            attempts: record.attempts,
            title: record.title,
            body: record.body,
            messages,
            open: record.status != Status::Closed,
        }
    }

    /// A server error here is what a PostgreSQL restart looks like to the queue: every
    /// connection it holds dies under it.
    async fn inject(&self, fault: Fault) -> bool {
        match fault {
            Fault::ServerError { .. } => {
                self.db.kill_connections().await;
                true
            }
            Fault::RateLimited { .. } => false,
        }
    }
}

/// The conformance harness for a user's own table: an enum status column and an integer id, so
/// the mapping's casts are exercised.
pub struct MappedHarness {
    pub db: TestDb,
    pub queue: Arc<PostgresQueue>,
    pub table: String,
}

impl MappedHarness {
    pub fn mapping(db: &TestDb) -> TableMapping {
        TableMapping::new(format!("{}.jobs", db.schema))
            .columns("job_id", "headline", Some("details"), "state")
            .values("todo", "doing", "done", "broken")
    }

    pub async fn new() -> MappedHarness {
        let db = TestDb::required().await;
        let s = format!("\"{}\"", db.schema);
        sqlx::raw_sql(&format!(
            "CREATE SCHEMA {s};
             CREATE TYPE {s}.job_state AS ENUM ('todo', 'doing', 'done', 'broken', 'parked');
             CREATE TABLE {s}.jobs (
                 job_id serial PRIMARY KEY,
                 headline text NOT NULL,
                 details text,
                 state {s}.job_state NOT NULL DEFAULT 'todo',
                 owner text NOT NULL DEFAULT 'someone'
             );"
        ))
        .execute(&db.pool)
        .await
        .expect("create the user's table");
        let queue = Arc::new(
            PostgresQueue::connect(db.options().mapping(Self::mapping(&db))).await.expect("connect in mapping mode"),
        );
        MappedHarness { table: format!("{s}.jobs"), db, queue }
    }
}

#[async_trait]
impl Harness for MappedHarness {
    fn queue(&self) -> Arc<dyn TaskQueue> {
        self.queue.clone()
    }

    async fn reopen(&self) -> Arc<dyn TaskQueue> {
        let options = self.db.options().mapping(Self::mapping(&self.db));
        Arc::new(PostgresQueue::connect(options).await.expect("reconnect in mapping mode"))
    }

    async fn add_task(&self, title: &str, body: &str) -> TaskId {
        let id: i32 = sqlx::query_scalar(&format!(
            "INSERT INTO {} (headline, details) VALUES ($1, $2) RETURNING job_id",
            self.table
        ))
        .bind(title)
        .bind(body)
        .fetch_one(&self.db.pool)
        .await
        .expect("insert a row into the user's table");
        TaskId(id.to_string())
    }

    async fn observe(&self, id: &TaskId) -> Observed {
        let row = sqlx::query(&format!(
            "SELECT j.headline, j.details, j.state::text AS state, m.attempts, m.summary, m.last_error
             FROM {} j LEFT JOIN {}.mapped_tasks m ON m.source = $2 AND m.task_id = j.job_id::text
             WHERE j.job_id = $1",
            self.table,
            format_args!("\"{}\"", self.db.schema)
        ))
        .bind(id.as_str().parse::<i32>().expect("integer id"))
        .bind(format!("{}.jobs", self.db.schema))
        .fetch_one(&self.db.pool)
        .await
        .expect("read the user's row");
        let state: String = row.get("state");
        let attempts: Option<i32> = row.get("attempts");
        let mut messages = Vec::new();
        messages.extend(row.get::<Option<String>, _>("summary"));
        messages.extend(row.get::<Option<String>, _>("last_error"));
        Observed {
            state: match state.as_str() {
                "todo" => ObservedState::Pending,
                "doing" => ObservedState::Working,
                "done" => ObservedState::Done,
                _ => ObservedState::Failed,
            },
            attempts: attempts.unwrap_or(0) as u32,
            title: row.get("headline"),
            body: row.get::<Option<String>, _>("details").unwrap_or_default(),
            messages,
            open: true,
        }
    }

    async fn inject(&self, fault: Fault) -> bool {
        match fault {
            Fault::ServerError { .. } => {
                self.db.kill_connections().await;
                true
            }
            Fault::RateLimited { .. } => false,
        }
    }
}

/// An in-process agent that works for `pause` and succeeds, counting finished runs per task and
/// remembering which runs are in progress (a run whose future is dropped stays "in progress").
pub struct SleepyAgent {
    pause: Duration,
    pub finished: std::sync::Mutex<std::collections::HashMap<TaskId, u32>>,
    pub in_progress: std::sync::Mutex<std::collections::HashSet<TaskId>>,
}

impl SleepyAgent {
    pub fn new(pause: Duration) -> SleepyAgent {
        SleepyAgent { pause, finished: Default::default(), in_progress: Default::default() }
    }

    pub fn in_progress(&self) -> std::collections::HashSet<TaskId> {
        self.in_progress.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl bg_run_core::Dispatcher for SleepyAgent {
    fn name(&self) -> &str {
        "sleepy"
    }

    async fn dispatch(&self, task: &bg_run_core::Task, ctx: bg_run_core::DispatchContext) -> bg_run_core::Outcome {
        self.in_progress.lock().unwrap_or_else(|e| e.into_inner()).insert(task.id.clone());
        tokio::select! {
            _ = tokio::time::sleep(self.pause) => {}
            _ = ctx.cancel.cancelled() => {
                self.in_progress.lock().unwrap_or_else(|e| e.into_inner()).remove(&task.id);
                return bg_run_core::Outcome::failure(bg_run_core::FailureKind::Cancelled, "stopped");
            }
        }
        self.in_progress.lock().unwrap_or_else(|e| e.into_inner()).remove(&task.id);
        *self.finished.lock().unwrap_or_else(|e| e.into_inner()).entry(task.id.clone()).or_default() += 1;
        bg_run_core::Outcome::success(format!("finished {}", task.title))
    }
}
