//! `SqliteQueue` and its `TaskQueue` implementation: claims, leases and reports.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bg_run_core::{
    AttemptOutcome, Capabilities, Claim, ClaimOutcome, Claimant, Error, Failure, NewTask, Report, Result,
    RetryDecision, Status, Task, TaskId, TaskQueue, TaskStore, Usage,
};
use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension};

use crate::db::{run_blocking, Db, Shared};
use crate::error::Context;
use crate::options::SqliteOptions;
use crate::record::{self, from_ms, now_ms, to_ms, Named};

/// The embedded task queue: one SQLite file, shared safely by any number of worker processes.
///
/// Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SqliteQueue {
    pub(crate) db: Arc<Db>,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("path", &self.db.shared.path)
            .field("queue", &self.db.shared.queue)
            .field("labels", &self.db.shared.labels)
            .finish()
    }
}

impl SqliteQueue {
    /// Opens the database (creating it when `options.create` allows) and migrates its schema.
    pub async fn open(options: SqliteOptions) -> Result<SqliteQueue> {
        run_blocking(move || SqliteQueue::open_blocking(options)).await
    }

    /// [`SqliteQueue::open`] for callers outside an async runtime.
    pub fn open_blocking(options: SqliteOptions) -> Result<SqliteQueue> {
        Ok(SqliteQueue { db: Arc::new(Db::open(options)?) })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.db.shared.path
    }

    /// The named queue this handle claims from.
    pub fn queue_name(&self) -> &str {
        &self.db.shared.queue
    }

    /// The label filter this handle claims with.
    pub fn labels(&self) -> &[String] {
        &self.db.shared.labels
    }
}

type Params<'a> = Vec<(&'a str, &'a dyn ToSql)>;

fn with_labels<'a>(db: &'a Shared, mut params: Params<'a>) -> Params<'a> {
    if let Some(labels) = &db.labels_json {
        params.push((":labels", labels));
    }
    params
}

fn lease_ms(claimant: &Claimant) -> i64 {
    i64::try_from(claimant.lease.as_millis()).unwrap_or(i64::MAX / 4)
}

/// A fresh lease token: 96 random bits, so a claim that was taken over can never match again.
fn new_token() -> String {
    format!("{:024x}", rand::random::<u128>() >> 32)
}

fn into_claim(task: Task, token: String, claimant: &Claimant, lease_until: i64) -> Claim {
    Claim { attempt: task.attempts, task, claimant: claimant.clone(), token, lease_until: Some(from_ms(lease_until)) }
}

fn priority_then_id(task: &Task) -> (std::cmp::Reverse<i64>, i64) {
    let priority = task.meta.get("priority").and_then(|p| p.parse().ok()).unwrap_or(0);
    (std::cmp::Reverse(priority), task.id.as_str().parse().unwrap_or(i64::MAX))
}

fn candidates(db: &Shared, conn: &Connection, sql: &str, now: i64, limit: i64) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(sql).ctx("claiming tasks")?;
    let params = with_labels(db, vec![(":queue", &db.queue), (":now", &now), (":limit", &limit)]);
    let rows = stmt.query_map(params.as_slice(), record::task).ctx("claiming tasks")?;
    rows.collect::<rusqlite::Result<Vec<_>>>().ctx("claiming tasks")
}

/// Runs inside the writer's `BEGIN IMMEDIATE` transaction, so no other connection can change
/// the candidates between choosing and claiming them.
fn claim_batch_sync(db: &Shared, conn: &Connection, max: usize, claimant: &Claimant) -> Result<Vec<Claim>> {
    let now = now_ms();
    let until = now.saturating_add(lease_ms(claimant));
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let mut chosen = candidates(db, conn, &db.sql.pending_candidates, now, limit)?;
    chosen.extend(candidates(db, conn, &db.sql.stale_candidates, now, limit)?);
    chosen.sort_by_key(priority_then_id);
    chosen.truncate(max);

    let mut stmt = conn.prepare_cached(&db.sql.claim_row).ctx("claiming tasks")?;
    let mut claims = Vec::with_capacity(chosen.len());
    for mut task in chosen {
        let id = task.id.row_number()?;
        let token = new_token();
        stmt.execute(
            &[
                (":id", &id as &dyn ToSql),
                (":now", &now),
                (":worker", &claimant.worker_id),
                (":token", &token),
                (":until", &until),
                (":max_attempts", &claimant.max_attempts),
            ][..],
        )
        .ctx("claiming tasks")?;
        task.attempts += 1;
        claims.push(into_claim(task, token, claimant, until));
    }
    Ok(claims)
}

fn claim_one_sync(db: &Shared, conn: &Connection, id: i64, claimant: &Claimant) -> Result<ClaimOutcome> {
    let now = now_ms();
    let until = now.saturating_add(lease_ms(claimant));
    let token = new_token();
    let mut stmt = conn.prepare_cached(&db.sql.claim_one).ctx("claiming a task")?;
    let params = with_labels(
        db,
        vec![
            (":id", &id),
            (":queue", &db.queue),
            (":now", &now),
            (":worker", &claimant.worker_id),
            (":token", &token),
            (":until", &until),
            (":max_attempts", &claimant.max_attempts),
        ],
    );
    let task = stmt.query_row(params.as_slice(), record::task).optional().ctx("claiming a task")?;
    Ok(match task {
        Some(task) => ClaimOutcome::Claimed(Box::new(into_claim(task, token, claimant, until))),
        None => ClaimOutcome::Taken,
    })
}

fn poll_sync(db: &Shared, conn: &Connection, max: usize) -> Result<Vec<Task>> {
    let now = now_ms();
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(&db.sql.poll).ctx("polling tasks")?;
    let params = with_labels(db, vec![(":queue", &db.queue), (":now", &now), (":limit", &limit)]);
    let rows = stmt.query_map(params.as_slice(), record::task).ctx("polling tasks")?;
    rows.collect::<rusqlite::Result<Vec<_>>>().ctx("polling tasks")
}

/// Explains why a claim's token no longer matches, for the worker's log.
fn lost_claim(conn: &Connection, id: i64, token: &str) -> Error {
    let row = conn
        .query_row("SELECT status, claimed_by, lease_token FROM tasks WHERE id = ?1", [id], |row| {
            Ok((row.get::<_, Named<Status>>(0)?.0, row.get::<_, Option<String>>(1)?, row.get::<_, Option<String>>(2)?))
        })
        .optional();
    match row {
        Ok(None) => Error::not_found(format!("task {id}")),
        Ok(Some((Status::Running, by, current))) if current.as_deref() != Some(token) => Error::conflict(format!(
            "task {id} was taken over by {} after this claim's lease expired",
            by.as_deref().unwrap_or("another worker")
        )),
        Ok(Some((Status::Cancelled, _, _))) => Error::conflict(format!("task {id} was cancelled")),
        Ok(Some((status, _, _))) => Error::conflict(format!("task {id} is {status}; this worker's claim is gone")),
        Err(e) => Error::conflict(format!("task {id}: this worker's claim is gone ({e})")),
    }
}

/// What reporting needs of a claim, taken before the hand-off to the writer thread so the task
/// (whose body may be large) is not copied.
struct Held {
    id: i64,
    token: String,
    attempt: u32,
    worker: String,
}

impl Held {
    fn of(claim: &Claim) -> Result<Held> {
        Ok(Held {
            id: claim.task.id.row_number()?,
            token: claim.token.clone(),
            attempt: claim.attempt,
            worker: claim.claimant.worker_id.clone(),
        })
    }
}

/// The end of an attempt that still holds its lease: `update` must be an UPDATE guarded by
/// `id = :id AND lease_token = :token AND status = 'running'`.
struct Ending<'a> {
    doing: &'static str,
    update: &'static str,
    params: Params<'a>,
    outcome: AttemptOutcome,
    message: Option<&'a str>,
}

fn end_attempt(conn: &Connection, held: &Held, ending: Ending<'_>) -> Result<()> {
    let now = now_ms();
    let mut params = ending.params;
    params.extend([(":id", &held.id as &dyn ToSql), (":token", &held.token), (":now", &now)]);
    let changed =
        conn.prepare_cached(ending.update).and_then(|mut stmt| stmt.execute(params.as_slice())).ctx(ending.doing)?;
    if changed == 0 {
        return Err(lost_claim(conn, held.id, &held.token));
    }
    conn.prepare_cached(
        "INSERT INTO attempts (task_id, number, started_at, finished_at, outcome, message, worker) \
         SELECT id, ?2, claimed_at, ?3, ?4, ?5, ?6 FROM tasks WHERE id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.execute(rusqlite::params![held.id, held.attempt, now, Named(ending.outcome), ending.message, held.worker])
    })
    .ctx(ending.doing)?;
    Ok(())
}

const COMPLETE: &str = "UPDATE tasks SET status = 'review', summary = :summary, exit_code = :exit_code, \
     duration_ms = :duration_ms, turns = :turns, tokens = :tokens, session_id = coalesce(:session_id, session_id), \
     cost_usd = CASE WHEN :cost_usd IS NULL THEN cost_usd ELSE coalesce(cost_usd, 0) + :cost_usd END, \
     lease_token = NULL, lease_until = NULL, updated_at = :now \
     WHERE id = :id AND lease_token = :token AND status = 'running'";

const FAIL: &str = "UPDATE tasks SET status = :status, run_at = coalesce(:run_at, run_at), last_error = :error, \
     exit_code = :exit_code, duration_ms = :duration_ms, turns = :turns, tokens = :tokens, \
     session_id = coalesce(:session_id, session_id), \
     cost_usd = CASE WHEN :cost_usd IS NULL THEN cost_usd ELSE coalesce(cost_usd, 0) + :cost_usd END, \
     lease_token = NULL, lease_until = NULL, updated_at = :now \
     WHERE id = :id AND lease_token = :token AND status = 'running'";

const RELEASE: &str = "UPDATE tasks SET status = 'pending', attempts = max(attempts - 1, 0), \
     lease_token = NULL, lease_until = NULL, updated_at = :now \
     WHERE id = :id AND lease_token = :token AND status = 'running'";

const HEARTBEAT: &str = "UPDATE tasks SET lease_until = :until, updated_at = :now \
     WHERE id = :id AND lease_token = :token AND status = 'running'";

/// Usage columns shared by complete and fail, kept alive for binding.
struct UsageColumns {
    duration_ms: i64,
    cost_usd: Option<f64>,
    turns: Option<u32>,
    tokens: Option<String>,
    session_id: Option<String>,
}

impl UsageColumns {
    fn new(duration: Duration, usage: &Usage) -> Self {
        UsageColumns {
            duration_ms: i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
            cost_usd: usage.cost_usd.filter(|c| c.is_finite()),
            turns: usage.turns,
            tokens: usage.tokens.as_ref().and_then(|t| serde_json::to_string(t).ok()),
            session_id: usage.session_id.clone(),
        }
    }

    fn params(&self) -> Params<'_> {
        vec![
            (":duration_ms", &self.duration_ms),
            (":cost_usd", &self.cost_usd),
            (":turns", &self.turns),
            (":tokens", &self.tokens),
            (":session_id", &self.session_id),
        ]
    }
}

/// The stored failure text: the reason, then the tail of the agent's stderr.
fn failure_text(failure: &Failure) -> String {
    let reason = failure.reason.trim();
    let reason =
        if reason.is_empty() { format!("the agent failed ({})", failure.kind.as_str()) } else { reason.to_owned() };
    let tail = failure.stderr_tail.trim_end();
    if tail.is_empty() {
        reason
    } else {
        format!("{reason}\n\nstderr (tail):\n{tail}")
    }
}

#[async_trait]
impl TaskQueue for SqliteQueue {
    fn name(&self) -> &str {
        "sqlite"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none().with_atomic_claim().with_leases().with_enqueue().with_wakeup().with_batch_claim()
    }

    async fn poll(&self, max: usize) -> Result<Vec<Task>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.db.call(move |db, conn| poll_sync(db, conn, max)).await
    }

    async fn claim(&self, task: &Task, claimant: &Claimant) -> Result<ClaimOutcome> {
        let id = task.id.row_number()?;
        let claimant = claimant.clone();
        self.db.call(move |db, conn| claim_one_sync(db, conn, id, &claimant)).await
    }

    async fn claim_batch(&self, max: usize, claimant: &Claimant) -> Result<Vec<Claim>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let claimant = claimant.clone();
        self.db.call(move |db, conn| claim_batch_sync(db, conn, max, &claimant)).await
    }

    async fn heartbeat(&self, claim: &Claim) -> Result<()> {
        let Held { id, token, .. } = Held::of(claim)?;
        let lease = lease_ms(&claim.claimant);
        self.db
            .call(move |_, conn| {
                let now = now_ms();
                let until = now.saturating_add(lease);
                let changed = conn
                    .prepare_cached(HEARTBEAT)
                    .and_then(|mut stmt| {
                        stmt.execute(&[
                            (":until", &until as &dyn ToSql),
                            (":now", &now),
                            (":id", &id),
                            (":token", &token),
                        ])
                    })
                    .ctx("extending a lease")?;
                if changed == 0 {
                    return Err(lost_claim(conn, id, &token));
                }
                Ok(())
            })
            .await
    }

    async fn complete(&self, claim: &Claim, report: &Report) -> Result<()> {
        let held = Held::of(claim)?;
        let usage = UsageColumns::new(report.duration, &report.usage);
        let summary = report.summary.clone();
        let exit_code = report.exit_code;
        self.db
            .call(move |_, conn| {
                let mut params = usage.params();
                params.extend([(":summary", &summary as &dyn ToSql), (":exit_code", &exit_code)]);
                let ending = Ending {
                    doing: "completing a task",
                    update: COMPLETE,
                    params,
                    outcome: AttemptOutcome::Done,
                    message: Some(&summary),
                };
                end_attempt(conn, &held, ending)
            })
            .await
    }

    async fn fail(&self, claim: &Claim, failure: &Failure) -> Result<()> {
        let held = Held::of(claim)?;
        let usage = UsageColumns::new(failure.duration, &failure.usage);
        let text = failure_text(failure);
        let exit_code = failure.exit_code;
        let (status, run_at, outcome) = match &failure.decision {
            RetryDecision::RetryAt(at) => (Status::Pending, Some(to_ms(*at)), AttemptOutcome::Failed),
            RetryDecision::GiveUp => (Status::Failed, None, AttemptOutcome::GaveUp),
        };
        let status = Named(status);
        self.db
            .call(move |_, conn| {
                let mut params = usage.params();
                params.extend([
                    (":status", &status as &dyn ToSql),
                    (":run_at", &run_at),
                    (":error", &text),
                    (":exit_code", &exit_code),
                ]);
                let ending =
                    Ending { doing: "recording a failure", update: FAIL, params, outcome, message: Some(&text) };
                end_attempt(conn, &held, ending)
            })
            .await
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let held = Held::of(claim)?;
        self.db
            .call(move |_, conn| {
                let ending = Ending {
                    doing: "releasing a task",
                    update: RELEASE,
                    params: Vec::new(),
                    outcome: AttemptOutcome::Released,
                    message: Some("the worker stopped before the agent finished and gave the task back; the attempt does not count"),
                };
                end_attempt(conn, &held, ending)
            })
            .await
    }

    async fn enqueue(&self, task: NewTask) -> Result<TaskId> {
        let mut ids = self.enqueue_many(vec![task]).await?;
        ids.pop().ok_or_else(|| crate::error::corrupt("an insert returned no task id"))
    }

    async fn wait_for_work(&self, timeout: Duration) {
        crate::watch::wait_for_work(&self.db, timeout).await
    }
}
