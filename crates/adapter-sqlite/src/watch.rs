//! `wait_for_work`: wakes a waiting worker when another connection commits, or when the
//! earliest retry time or lease expiry comes due.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::ToSql;
use rusqlite::Connection;

use crate::db::{lock, Db, Shared};
use crate::error::Context;
use crate::record::now_ms;

/// How often the file is checked for commits: a task added by another process is seen within
/// ~10 ms. A check costs a few microseconds; the wake-up itself dominates, so checking more
/// often would mostly spend an idle worker's CPU.
const CHECK_EVERY: Duration = Duration::from_millis(10);

fn data_version(conn: &Connection) -> bg_run_core::Result<i64> {
    conn.prepare_cached("PRAGMA data_version")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .ctx("watching for new tasks")
}

/// Earliest time (ms) at which a task of this queue becomes eligible: a pending task's run_at or
/// a running task's lease expiry.
fn next_due(db: &Shared, conn: &Connection) -> bg_run_core::Result<Option<i64>> {
    let mut params: Vec<(&str, &dyn ToSql)> = vec![(":queue", &db.queue)];
    if let Some(labels) = &db.labels_json {
        params.push((":labels", labels));
    }
    conn.prepare_cached(&db.sql.next_due)
        .and_then(|mut stmt| stmt.query_row(params.as_slice(), |row| row.get(0)))
        .ctx("watching for new tasks")
}

/// Tells the blocking watch loop to stop when the waiting future is dropped (the worker woke for
/// another reason, such as a finished agent).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

pub(crate) async fn wait_for_work(db: &Arc<Db>, timeout: Duration) {
    let deadline = Instant::now().checked_add(timeout).unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
    // The whole wait runs on one blocking thread: a plain sleep between checks costs far less
    // than a timer and a thread hand-off per check.
    let watched = db.watch(move |shared, conn| watch_until(shared, conn, deadline, &stop)).await;
    if let Err(error) = watched {
        tracing::debug!(%error, "sqlite: cannot watch for new tasks; sleeping instead");
        tokio::time::sleep_until(deadline.into()).await;
    }
}

fn watch_until(db: &Shared, conn: &Mutex<Connection>, deadline: Instant, stop: &AtomicBool) -> bg_run_core::Result<()> {
    // The version is read before looking for due work, so a task committed in between is either
    // seen by the query or changes the version afterwards: no wake-up is lost.
    let (baseline, due) = {
        let conn = lock(conn);
        (data_version(&conn)?, next_due(db, &conn)?)
    };
    let mut wake_at = deadline;
    if let Some(due) = due {
        let wait = due.saturating_sub(now_ms());
        if wait < 0 {
            return Ok(());
        }
        // One millisecond past due, so the task's time has passed when the worker claims.
        if let Some(at) = Instant::now().checked_add(Duration::from_millis(wait.unsigned_abs() + 1)) {
            wake_at = wake_at.min(at);
        }
    }
    loop {
        let now = Instant::now();
        if now >= wake_at || stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        std::thread::sleep(CHECK_EVERY.min(wake_at - now));
        if data_version(&lock(conn))? != baseline {
            return Ok(());
        }
    }
}
