//! bg-run-postgres: a PostgreSQL task queue for fleets of bg-run workers.
//!
//! Many workers on many machines share one database; PostgreSQL does the coordination:
//!
//! - **Claims** lock and lease up to `batch` tasks in one statement with `FOR UPDATE SKIP LOCKED`,
//!   so workers never block each other and never win the same task.
//! - **Leases** are extended by heartbeats and checked by a random token on every report. A worker
//!   that dies stops heartbeating; once its lease runs out the task is claimed again, and that
//!   counts as an attempt (at the limit, the task is given up instead). Cancelling or closing a
//!   running task clears its token, so the worker's next heartbeat fails and it stops the agent.
//! - **Reports** (`complete`, `fail`) with `batch > 1` are group-committed: calls arriving
//!   together are written in one statement, and each call returns only after its row committed.
//! - **Wake-ups**: a trigger NOTIFYs the schema's channel when tasks are inserted and a dedicated
//!   LISTEN connection wakes idle workers at once; polling remains the fallback.
//! - **Reconnects**: connection errors are retryable; the pool opens new connections as the
//!   server comes back and the listener reconnects by itself. A report lost to a dropped
//!   connection is retried by the worker, and if it never arrives the lease brings the task back.
//!
//! Tables live in a schema of their own (`bg_run` by default), created by embedded migrations
//! that are safe to run from many workers at once. Several named queues share one table. A
//! user's existing table can be used instead, by column mapping: see [`TableMapping`].
//!
//! ```no_run
//! # async fn example() -> bg_run_core::Result<()> {
//! use bg_run_core::{NewTask, TaskQueue, TaskStore};
//! use bg_run_postgres::{PostgresOptions, PostgresQueue, Status};
//!
//! let queue = PostgresQueue::connect(PostgresOptions::new("postgres://localhost/app").queue("docs")).await?;
//! let id = queue.enqueue(NewTask::new("Fix the broken links in README").label("docs")).await?;
//! let pending = queue.list(Some(Status::Pending)).await?;
//! # let _ = (id, pending);
//! # Ok(())
//! # }
//! ```

mod admin;
mod claim;
mod db;
mod error;
mod group;
mod listen;
mod mapping;
mod options;
mod record;
mod report;
mod schema;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bg_run_core::redact::{redact, register_secret};
use bg_run_core::{
    CancellationToken, Capabilities, Change, Claim, ClaimOutcome, Claimant, Error, Failure, NewTask, Report, Result,
    Task, TaskId, TaskQueue,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use crate::admin::AdminSql;
use crate::claim::{ClaimSql, Scope};
use crate::db::Db;
use crate::error::{backend, claim_lost, ADAPTER};
use crate::group::{GroupCommit, Write};
use crate::listen::Wakeup;
use crate::mapping::MappedTable;
use crate::report::{Completion, FailureRow, ReportSql};

pub use crate::options::{PostgresOptions, TableMapping};
/// The store model lives in core; re-exported so users of this crate need not name core for it.
pub use bg_run_core::{AttemptOutcome, AttemptRecord, Status, TaskRecord, TaskStore};

/// The PostgreSQL task queue. Cheap to clone; clones share the pool, the listener and the
/// group-commit writer, which stop when the last clone is dropped.
#[derive(Clone)]
pub struct PostgresQueue {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Db>,
    schema: String,
    queue: String,
    labels: Vec<String>,
    batch: usize,
    /// Claim statements run at once by one `claim_batch` call; half the pool leaves room for
    /// reports.
    parallel_claims: usize,
    claims: ClaimSql,
    reports: Arc<ReportSql>,
    admin: AdminSql,
    mapped: Option<MappedTable>,
    group: Option<GroupCommit>,
    wakeup: Arc<Wakeup>,
    listening: bool,
    stop: CancellationToken,
    /// When this handle last looked for expired leases, in milliseconds since `started`.
    last_rescue_ms: AtomicU64,
    started: Instant,
    claimed_since_vacuum: AtomicU64,
    statements_since_vacuum: AtomicU64,
    vacuuming: Arc<AtomicBool>,
    vacuum_sql: Arc<str>,
}

/// How often a handle whose claims keep finding pending tasks also looks for expired leases (a
/// claim that finds too few always looks). So on a busy queue a dead worker's task waits at most
/// this long past its lease, and most claims skip that part of the work.
const RESCUE_EVERY: Duration = Duration::from_secs(1);

/// When a handle vacuums the tasks table: after this many claim statements, or this many claimed
/// rows, since its last vacuum. Each claimed row leaves a dead entry at the front of the pending
/// index, and every later claim statement walks past all of them until a vacuum removes them;
/// autovacuum comes too late for a queue working thousands of tasks a second (it wakes once a
/// minute), and claims slow down steadily. A vacuum takes a fraction of a second and blocks no
/// one. One-row claims pay the walk on every row, so they want frequent vacuums; batched claims
/// pay it once per batch, so rows rather than statements decide there.
const VACUUM_AFTER_STATEMENTS: u64 = 3_000;
const VACUUM_AFTER_ROWS: u64 = 100_000;

impl Inner {
    fn count_claims(&self, rows: usize) {
        if rows == 0 {
            return;
        }
        let statements = self.statements_since_vacuum.fetch_add(1, Ordering::AcqRel) + 1;
        let rows = self.claimed_since_vacuum.fetch_add(rows as u64, Ordering::AcqRel) + rows as u64;
        let due = statements >= VACUUM_AFTER_STATEMENTS || rows >= VACUUM_AFTER_ROWS;
        if !due || self.vacuuming.swap(true, Ordering::AcqRel) {
            return;
        }
        self.statements_since_vacuum.store(0, Ordering::Release);
        self.claimed_since_vacuum.store(0, Ordering::Release);
        let (db, sql, vacuuming) = (self.db.clone(), self.vacuum_sql.clone(), self.vacuuming.clone());
        tokio::spawn(async move {
            // Without ownership of the table PostgreSQL only warns and skips it; autovacuum
            // (tuned for this table by the migrations) still runs.
            if let Err(error) = db.fetch_optional(sqlx::query(&sql).persistent(false)).await {
                tracing::debug!(error = %redact(&error.to_string()), "postgres: vacuuming the tasks table failed");
            }
            vacuuming.store(false, Ordering::Release);
        });
    }

    /// Whether this claim should also take expired leases; at most one claim per interval does.
    fn rescue_due(&self) -> bool {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_rescue_ms.load(Ordering::Acquire);
        let every = u64::try_from(RESCUE_EVERY.as_millis()).unwrap_or(1000);
        (last == 0 || now.saturating_sub(last) >= every)
            && self.last_rescue_ms.compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for PostgresQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresQueue")
            .field("schema", &self.inner.schema)
            .field("queue", &self.inner.queue)
            .field("labels", &self.inner.labels)
            .field("batch", &self.inner.batch)
            .field("mapped", &self.inner.mapped.is_some())
            .finish()
    }
}

/// Makes the URL's password a secret the core redaction masks everywhere in this process, even
/// where it shows up outside URL form.
fn register_url_password(url: &str) {
    let Some((_, rest)) = url.split_once("://") else { return };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        if let Some((_, password)) = userinfo.split_once(':') {
            register_secret(password);
        }
    }
}

/// Traffic to a server on this machine never leaves it, so TLS there only costs CPU (a large
/// share of it at thousands of statements per second). Unless the URL or `PGSSLMODE` asks for
/// a mode, loopback and Unix-socket connections go without it; remote ones keep sqlx's `prefer`.
fn loopback_without_tls(connect: PgConnectOptions, url: &str) -> PgConnectOptions {
    let chosen = url.contains("sslmode=") || std::env::var_os("PGSSLMODE").is_some();
    let host = connect.get_host();
    let local = connect.get_socket().is_some()
        || host.starts_with('/')
        || matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]");
    if local && !chosen {
        connect.ssl_mode(PgSslMode::Disable)
    } else {
        connect
    }
}

impl PostgresQueue {
    /// Connects, creates or upgrades the schema, and starts the LISTEN connection and the
    /// group-commit writer as the options ask. Needs a Tokio runtime.
    pub async fn connect(options: PostgresOptions) -> Result<PostgresQueue> {
        options.validate()?;
        register_url_password(&options.url);
        let connect = PgConnectOptions::from_str(options.url.trim())
            .map_err(|e| Error::config(redact(&format!("{ADAPTER}: invalid database URL: {e}"))))?;
        let connect = loopback_without_tls(connect, &options.url)
            .application_name("bg-run")
            // Every statement is a fixed, parameterised OLTP statement whose generic plan is the
            // right one; re-planning each execution would cost more than running it.
            // Statistics on a queue's table are always stale: taken while the queue was empty,
            // they make a bitmap scan look cheap for a claim, and that scan then reads and sorts
            // every pending task (to disk, with a large backlog) instead of walking the pending
            // index in order and stopping after the batch. bg-run's statements have no use for
            // bitmap scans, so its connections turn them off.
            .options([("plan_cache_mode", "force_generic_plan"), ("enable_bitmapscan", "off")]);
        // No ping before each use: sqlx already checks a connection when it is given back, and
        // one that died idle (a server restart) fails its next statement with a retryable error.
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size)
            .min_connections(0)
            .acquire_timeout(options.connect_timeout)
            .test_before_acquire(false)
            .connect_with(connect.clone())
            .await
            .map_err(|e| backend("connecting to the database", e))?;
        let channel = options.channel();
        schema::migrate(&pool, &options.schema, &channel).await?;

        let s = options::quote_ident(&options.schema);
        let mapped = match options.mapping.clone() {
            Some(mapping) => Some(MappedTable::new(&pool, &options.schema, mapping).await?),
            None => None,
        };
        let reports = Arc::new(ReportSql::new(&s, &channel));
        // Group commit only pays off with several rows per statement, and the mapped table
        // writes two tables per report, so it writes row by row.
        let db = Arc::new(Db::new(pool, options.pool_size, options.connect_timeout));
        let group = (options.batch > 1 && mapped.is_none()).then(|| {
            let in_flight = usize::try_from(options.pool_size / 4).unwrap_or(1).clamp(1, 4);
            GroupCommit::start(db.clone(), reports.clone(), options.batch, in_flight)
        });
        let wakeup = Arc::new(Wakeup::default());
        let stop = CancellationToken::new();
        let listening = options.listen && mapped.is_none();
        if listening {
            listen::spawn(
                connect,
                options.connect_timeout,
                channel.clone(),
                options.queue.clone(),
                wakeup.clone(),
                stop.clone(),
            );
        }
        Ok(PostgresQueue {
            inner: Arc::new(Inner {
                claims: ClaimSql::new(&s),
                admin: AdminSql::new(&s, &channel),
                reports,
                db,
                schema: options.schema,
                queue: options.queue,
                labels: options.labels,
                batch: options.batch,
                parallel_claims: usize::try_from(options.pool_size / 2).unwrap_or(1).max(1),
                mapped,
                group,
                wakeup,
                listening,
                stop,
                last_rescue_ms: AtomicU64::new(0),
                started: Instant::now(),
                claimed_since_vacuum: AtomicU64::new(0),
                statements_since_vacuum: AtomicU64::new(0),
                vacuuming: Arc::new(AtomicBool::new(false)),
                vacuum_sql: format!("VACUUM (SKIP_LOCKED) {s}.tasks").into(),
            }),
        })
    }

    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The named queue this handle claims from.
    pub fn queue_name(&self) -> &str {
        &self.inner.queue
    }

    /// The label filter this handle claims with.
    pub fn labels(&self) -> &[String] {
        &self.inner.labels
    }

    /// Tasks per claim statement and rows per group-commit statement.
    pub fn batch(&self) -> usize {
        self.inner.batch
    }

    fn scope(&self) -> Scope<'_> {
        Scope { queue: &self.inner.queue, labels: &self.inner.labels }
    }

    /// Admin operations work on bg-run's own table only.
    fn own_table(&self, operation: &str) -> Result<()> {
        match &self.inner.mapped {
            Some(_) => Err(Error::unsupported(
                format!("{operation} in table-mapping mode (read and change the mapped table directly)"),
                ADAPTER,
            )),
            None => Ok(()),
        }
    }

    /// Closes the connections once operations in progress finish. Clones stop working.
    pub async fn disconnect(&self) {
        self.inner.stop.cancel();
        self.inner.db.close().await;
    }

    async fn claim_rows(&self, n: usize, claimant: &Claimant) -> Result<Vec<Claim>> {
        match &self.inner.mapped {
            Some(mapped) => mapped.claim_batch(&self.inner.db, n, claimant).await,
            None => {
                let (db, sql, scope) = (&self.inner.db, &self.inner.claims, self.scope());
                let rescue = self.inner.rescue_due();
                let mut claims = claim::claim_batch(db, sql, &scope, n, rescue, claimant).await?;
                if !rescue && claims.len() < n {
                    // Running dry: whatever is left may be an expired lease.
                    claims.extend(claim::claim_batch(db, sql, &scope, n - claims.len(), true, claimant).await?);
                }
                self.inner.count_claims(claims.len());
                Ok(claims)
            }
        }
    }

    async fn write(&self, id: i64, write: Write, claim: &Claim) -> Result<()> {
        let written = match &self.inner.group {
            Some(group) => group.write(write).await?,
            None => {
                let (db, sql) = (&*self.inner.db, &*self.inner.reports);
                let ids = match write {
                    Write::Complete(row) => report::write_completions(db, sql, vec![row]).await?,
                    Write::Fail(row) => report::write_failures(db, sql, vec![row]).await?,
                };
                ids.contains(&id)
            }
        };
        if written {
            Ok(())
        } else {
            Err(claim_lost(claim.task.id.as_str()))
        }
    }
}

/// Admin operations work on bg-run's own table only: in table-mapping mode each one is
/// `Unsupported`. Ids are the row numbers `bg-run tasks` prints; anything else is a `Config` error
/// that names it.
#[async_trait]
impl TaskStore for PostgresQueue {
    /// Adds all tasks with one multi-row insert and returns their ids in order. Tasks without a
    /// queue go to this handle's queue. A task whose unique key already exists in its queue is
    /// not added again; the existing task's id is returned for it.
    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<TaskId>> {
        self.own_table("enqueue")?;
        admin::enqueue_many(&self.inner.db, &self.inner.admin, &self.inner.queue, tasks).await
    }

    /// This handle's queue's tasks, optionally only those in `status`, oldest first. Records come
    /// without their attempt history; [`TaskStore::get`] has it.
    async fn list(&self, status: Option<Status>) -> Result<Vec<TaskRecord>> {
        self.own_table("list")?;
        admin::list(&self.inner.db, &self.inner.admin, &self.inner.queue, status).await
    }

    /// One task (of any queue in the schema) with its attempt history. `NotFound` if none has
    /// this id.
    async fn get(&self, id: &TaskId) -> Result<TaskRecord> {
        self.own_table("show")?;
        admin::get(&self.inner.db, &self.inner.admin, id.row_number()?).await
    }

    /// Closes the task (a human is done with it). A running task's agent is stopped: its
    /// worker's next heartbeat finds the claim gone. Closing a closed task changes nothing.
    async fn close(&self, id: &TaskId) -> Result<TaskRecord> {
        self.own_table("close")?;
        admin::change(&self.inner.db, &self.inner.admin, id.row_number()?, Change::Close).await
    }

    /// Puts a finished, failed, closed or cancelled task back to pending with fresh attempts,
    /// eligible at once. `Conflict` while it is running.
    async fn retry(&self, id: &TaskId) -> Result<TaskRecord> {
        self.own_table("retry")?;
        admin::change(&self.inner.db, &self.inner.admin, id.row_number()?, Change::Retry).await
    }

    /// Cancels a pending or running task; a running task's agent is stopped at its worker's next
    /// heartbeat. Cancelling a cancelled task changes nothing; a finished one is a `Conflict`.
    async fn cancel(&self, id: &TaskId) -> Result<TaskRecord> {
        self.own_table("cancel")?;
        admin::change(&self.inner.db, &self.inner.admin, id.row_number()?, Change::Cancel).await
    }
}

#[async_trait]
impl TaskQueue for PostgresQueue {
    fn name(&self) -> &str {
        ADAPTER
    }

    fn capabilities(&self) -> Capabilities {
        let caps = Capabilities::none().with_atomic_claim().with_leases().with_batch_claim();
        let caps = if self.inner.mapped.is_none() { caps.with_enqueue() } else { caps };
        if self.inner.listening {
            caps.with_wakeup()
        } else {
            caps
        }
    }

    async fn poll(&self, max: usize) -> Result<Vec<Task>> {
        match &self.inner.mapped {
            Some(mapped) => mapped.poll(&self.inner.db, max).await,
            None => claim::poll(&self.inner.db, &self.inner.claims, &self.scope(), max).await,
        }
    }

    async fn claim(&self, task: &Task, claimant: &Claimant) -> Result<ClaimOutcome> {
        self.inner.wakeup.looking();
        match &self.inner.mapped {
            Some(mapped) => mapped.claim_one(&self.inner.db, task, claimant).await,
            None => claim::claim_one(&self.inner.db, &self.inner.claims, &self.scope(), task, claimant).await,
        }
    }

    /// Claims up to `max` tasks, at most `batch` per statement (so batch size 1 is one task per
    /// transaction). Several statements run at once when `max` needs more than one: each commit
    /// waits for the server, and concurrent ones share its work.
    async fn claim_batch(&self, max: usize, claimant: &Claimant) -> Result<Vec<Claim>> {
        self.inner.wakeup.looking();
        let batch = self.inner.batch;
        let mut claims = Vec::new();
        while claims.len() < max {
            let remaining = max - claims.len();
            let statements = remaining.div_ceil(batch).min(self.inner.parallel_claims);
            let sizes: Vec<usize> = (0..statements).map(|i| batch.min(remaining - i * batch)).collect();
            let rounds = futures::future::join_all(sizes.iter().map(|&n| self.claim_rows(n, claimant))).await;
            let mut dry = false;
            let mut failure = None;
            for (size, round) in sizes.iter().zip(rounds) {
                match round {
                    Ok(got) => {
                        dry |= got.len() < *size;
                        claims.extend(got);
                    }
                    Err(error) => failure = Some(error),
                }
            }
            match failure {
                // Tasks already claimed are held and must reach the worker; the error will show
                // again on the next call if it persists.
                Some(error) if claims.is_empty() => return Err(error),
                Some(_) => break,
                None if dry => break,
                None => {}
            }
        }
        Ok(claims)
    }

    async fn heartbeat(&self, claim: &Claim) -> Result<()> {
        match &self.inner.mapped {
            Some(mapped) => mapped.heartbeat(&self.inner.db, claim).await,
            None => claim::heartbeat(&self.inner.db, &self.inner.claims, claim).await,
        }
    }

    async fn complete(&self, claim: &Claim, report: &Report) -> Result<()> {
        if let Some(mapped) = &self.inner.mapped {
            return mapped.complete(&self.inner.db, claim, report).await;
        }
        let row = Completion::new(claim, report)?;
        self.write(row.id, Write::Complete(row), claim).await
    }

    async fn fail(&self, claim: &Claim, failure: &Failure) -> Result<()> {
        if let Some(mapped) = &self.inner.mapped {
            return mapped.fail(&self.inner.db, claim, failure).await;
        }
        let row = FailureRow::new(claim, failure)?;
        self.write(row.id, Write::Fail(row), claim).await
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        match &self.inner.mapped {
            Some(mapped) => mapped.release(&self.inner.db, claim).await,
            None => report::release(&self.inner.db, &self.inner.reports, claim).await,
        }
    }

    async fn enqueue(&self, task: NewTask) -> Result<TaskId> {
        if self.inner.mapped.is_some() {
            return Err(Error::unsupported("enqueue in table-mapping mode (insert rows into your table)", ADAPTER));
        }
        let mut ids = self.enqueue_many(vec![task]).await?;
        ids.pop().ok_or_else(|| Error::backend(ADAPTER, "adding a task returned no id", true))
    }

    async fn wait_for_work(&self, timeout: Duration) {
        if self.inner.listening {
            self.inner.wakeup.wait(timeout).await;
        } else {
            tokio::time::sleep(timeout).await;
        }
    }
}

/// Compile-time check that the public inherent futures are `Send`, so they work under
/// `tokio::spawn` (some sqlx calls on a borrowed transaction are not, for every lifetime). The
/// trait methods need no check: `async_trait` makes their futures `Send` or fails to compile.
#[allow(dead_code)]
fn public_futures_are_send(queue: PostgresQueue, options: PostgresOptions) {
    fn send<T: Send>(_: T) {}
    send(PostgresQueue::connect(options));
    send(async move {
        queue.disconnect().await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_skipped_only_for_loopback_servers_without_an_explicit_mode() {
        let mode = |url: &str| loopback_without_tls(PgConnectOptions::from_str(url).expect("url"), url).get_ssl_mode();
        assert!(matches!(mode("postgres://u@127.0.0.1:5432/db"), PgSslMode::Disable));
        assert!(matches!(mode("postgres://u@localhost/db"), PgSslMode::Disable));
        assert!(matches!(mode("postgres://u@localhost/db?host=/var/run/postgresql"), PgSslMode::Disable));
        assert!(matches!(mode("postgres://u@127.0.0.1/db?sslmode=require"), PgSslMode::Require));
        if std::env::var_os("PGSSLMODE").is_none() {
            assert!(matches!(mode("postgres://u@db.example.com/db"), PgSslMode::Prefer));
        }
    }

    #[test]
    fn url_passwords_become_secrets() {
        register_url_password("postgres://app:s3cr3t-pass-77@db.internal:5432/app?sslmode=require");
        let text = redact("login failed with s3cr3t-pass-77 for app");
        assert!(!text.contains("s3cr3t-pass-77"), "{text}");
    }
}
