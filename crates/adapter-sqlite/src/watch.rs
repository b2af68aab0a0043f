//! `wait_for_work`: wakes a waiting worker when another connection commits, or when the
//! earliest retry time or lease expiry comes due.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::ToSql;
use rusqlite::Connection;
use tokio::time::Instant;

use crate::db::{Db, Shared};
use crate::error::Context;
use crate::record::now_ms;

/// How often the file is checked for commits. `PRAGMA data_version` only reads shared memory,
/// so this is cheap, and it keeps pickup of a task added by another process within ~10 ms.
const CHECK_EVERY: Duration = Duration::from_millis(5);

fn data_version(conn: &Connection) -> bg_run_core::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |row| row.get(0)).ctx("watching for new tasks")
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

pub(crate) async fn wait_for_work(db: &Arc<Db>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    // The version is read before looking for due work, so a task committed in between is either
    // seen by the query or changes the version afterwards: no wake-up is lost.
    let start = db.watch(|db, conn| Ok((data_version(conn)?, next_due(db, conn)?))).await;
    let (baseline, due) = match start {
        Ok(found) => found,
        Err(error) => {
            tracing::debug!(%error, "sqlite: cannot watch for new tasks; sleeping instead");
            tokio::time::sleep_until(deadline).await;
            return;
        }
    };
    let mut wake_at = deadline;
    if let Some(due) = due {
        let wait = due.saturating_sub(now_ms());
        if wait < 0 {
            return;
        }
        // One millisecond past due, so the task's time has passed when the worker claims.
        wake_at = wake_at.min(Instant::now() + Duration::from_millis(wait.unsigned_abs() + 1));
    }
    loop {
        let now = Instant::now();
        if now >= wake_at {
            return;
        }
        tokio::time::sleep(CHECK_EVERY.min(wake_at - now)).await;
        match db.watch(|_, conn| data_version(conn)).await {
            Ok(version) if version != baseline => return,
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "sqlite: cannot watch for new tasks; sleeping instead");
                tokio::time::sleep_until(wake_at).await;
                return;
            }
        }
    }
}
