//! `wait_for_work`: wakes a waiting worker when another connection commits, or when the
//! earliest retry time or lease expiry comes due.
//!
//! A commit by another connection changes `PRAGMA data_version`. On Linux the database's folder
//! is watched with inotify (one reader per open database, counting writes to its files), so the
//! version is checked only when the database or its WAL file is written: an idle worker costs
//! nothing, and a new task is seen as soon as it is committed. Every `SLOW_CHECK_EVERY` the
//! version is checked anyway, for file systems that send no events (network mounts). Elsewhere,
//! or when inotify is unavailable, the version is checked every `CHECK_EVERY`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::ToSql;
use rusqlite::Connection;

use crate::db::{lock, Db, Shared};
use crate::error::Context;
use crate::record::now_ms;

/// How often the file is checked for commits without file events: a task added by another
/// process is seen within ~10 ms. A check costs a few microseconds; the wake-up itself dominates.
const CHECK_EVERY: Duration = Duration::from_millis(10);

/// How often the file is checked for commits while file events are watched, in case they never
/// come.
#[cfg(target_os = "linux")]
const SLOW_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A commit's last write to the WAL file comes just before it becomes visible (SQLite then marks
/// it in the shared-memory index, which sends no event), so a check right after the event can
/// miss it: a few quick checks follow every event.
#[cfg(target_os = "linux")]
const FOLLOW_UP_AFTER: Duration = Duration::from_millis(2);
#[cfg(target_os = "linux")]
const FOLLOW_UPS: u32 = 3;

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

/// The data version to compare against, and when to wake up even without a commit (`None` when
/// a task is due already). The version is read before looking for due work, so a task committed
/// in between is either seen by the query or changes the version afterwards: no wake-up is lost.
fn first_look(db: &Shared, conn: &Mutex<Connection>, deadline: Instant) -> bg_run_core::Result<Option<(i64, Instant)>> {
    let (baseline, due) = {
        let conn = lock(conn);
        (data_version(&conn)?, next_due(db, &conn)?)
    };
    let mut wake_at = deadline;
    if let Some(due) = due {
        let wait = due.saturating_sub(now_ms());
        if wait < 0 {
            return Ok(None);
        }
        // One millisecond past due, so the task's time has passed when the worker claims.
        if let Some(at) = Instant::now().checked_add(Duration::from_millis(wait.unsigned_abs() + 1)) {
            wake_at = wake_at.min(at);
        }
    }
    Ok(Some((baseline, wake_at)))
}

pub(crate) async fn wait_for_work(db: &Arc<Db>, timeout: Duration) {
    let deadline = Instant::now().checked_add(timeout).unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
    #[cfg(target_os = "linux")]
    if let Some(writes) = db.file_writes.get_or_init(|| FileWrites::start(&db.shared.path)) {
        return wait_for_writes(db, deadline, writes.subscribe()).await;
    }
    wait_polling(db, deadline).await;
}

/// A count of writes to one database's files, kept by a task reading inotify events for the
/// folder they are in. One per open database, for as long as it is open: closing an inotify
/// instance waits for the kernel to retire it (milliseconds), which would land on every wake-up
/// if each wait had its own.
#[cfg(target_os = "linux")]
pub(crate) struct FileWrites {
    count: tokio::sync::watch::Receiver<u64>,
    reader: tokio::task::AbortHandle,
}

#[cfg(target_os = "linux")]
impl Drop for FileWrites {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[cfg(target_os = "linux")]
impl FileWrites {
    /// `None` when inotify is unavailable (no instances left, an unsupported file system); the
    /// waiters then poll.
    fn start(database: &std::path::Path) -> Option<FileWrites> {
        let events = file_events::watch(database)?;
        let (tx, count) = tokio::sync::watch::channel(0u64);
        let reader = tokio::spawn(async move {
            let mut events = events;
            while events.written().await {
                tx.send_modify(|n| *n += 1);
            }
            tracing::debug!("sqlite: file events stopped; waiting workers check on a timer");
        });
        Some(FileWrites { count, reader: reader.abort_handle() })
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        let mut count = self.count.clone();
        count.mark_unchanged();
        count
    }
}

/// Waits for writes to the database's files, checking the data version after each.
#[cfg(target_os = "linux")]
async fn wait_for_writes(db: &Arc<Db>, deadline: Instant, mut writes: tokio::sync::watch::Receiver<u64>) {
    // Subscribed before this look: a commit after it shows up as a change.
    let (baseline, wake_at) = match db.watch(move |shared, conn| first_look(shared, conn, deadline)).await {
        Ok(Some(look)) => look,
        Ok(None) => return,
        Err(error) => {
            tracing::debug!(%error, "sqlite: cannot watch for new tasks; sleeping instead");
            return tokio::time::sleep_until(deadline.into()).await;
        }
    };
    let mut events_alive = true;
    let mut follow_ups = 0;
    loop {
        let now = Instant::now();
        if now >= wake_at {
            return;
        }
        // Without events (the reader stopped), the fast timer finds every commit.
        let next = match (events_alive, follow_ups) {
            (false, _) => CHECK_EVERY,
            (true, 0) => SLOW_CHECK_EVERY,
            (true, _) => FOLLOW_UP_AFTER,
        };
        tokio::select! {
            changed = writes.changed(), if events_alive => {
                events_alive = changed.is_ok();
                follow_ups = FOLLOW_UPS;
            }
            _ = tokio::time::sleep_until(wake_at.min(now + next).into()) => follow_ups = follow_ups.saturating_sub(1),
        }
        match db.watch(|_, conn| data_version(&lock(conn))).await {
            Ok(version) if version == baseline => {}
            Ok(_) => return,
            Err(error) => {
                tracing::debug!(%error, "sqlite: cannot watch for new tasks; sleeping instead");
                return tokio::time::sleep_until(wake_at.into()).await;
            }
        }
    }
}

/// Tells the blocking watch loop to stop when the waiting future is dropped (the worker woke for
/// another reason, such as a finished agent).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn wait_polling(db: &Arc<Db>, deadline: Instant) {
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
    // The whole wait runs on one blocking thread: a plain sleep between checks costs far less
    // than a timer and a thread hand-off per check.
    let watched = db.watch(move |shared, conn| poll_until(shared, conn, deadline, &stop)).await;
    if let Err(error) = watched {
        tracing::debug!(%error, "sqlite: cannot watch for new tasks; sleeping instead");
        tokio::time::sleep_until(deadline.into()).await;
    }
}

fn poll_until(db: &Shared, conn: &Mutex<Connection>, deadline: Instant, stop: &AtomicBool) -> bg_run_core::Result<()> {
    let Some((baseline, wake_at)) = first_look(db, conn, deadline)? else { return Ok(()) };
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

#[cfg(target_os = "linux")]
mod file_events {
    use std::ffi::OsString;
    use std::path::Path;

    use futures::{FutureExt, StreamExt};
    use inotify::{EventStream, Inotify, WatchMask};

    /// Writes to one database's files (the database and its WAL and journal files), as inotify
    /// reports them for the folder they are in.
    pub(super) struct Events {
        stream: EventStream<Vec<u8>>,
        names: [OsString; 3],
    }

    /// Starts watching the database's folder; `None` when inotify is unavailable (no instances
    /// left, an unsupported file system), and the caller polls instead.
    pub(super) fn watch(database: &Path) -> Option<Events> {
        let name = database.file_name()?.to_owned();
        let folder = match database.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let inotify = Inotify::init().ok()?;
        let mask = WatchMask::MODIFY | WatchMask::CLOSE_WRITE | WatchMask::CREATE | WatchMask::MOVED_TO;
        if let Err(error) = inotify.watches().add(folder, mask) {
            tracing::debug!(%error, folder = %folder.display(), "sqlite: cannot watch the database's folder; polling");
            return None;
        }
        let with_suffix = |suffix: &str| {
            let mut file = name.clone();
            file.push(suffix);
            file
        };
        let names = [with_suffix("-wal"), name.clone(), with_suffix("-journal")];
        let stream = inotify.into_event_stream(vec![0; 4096]).ok()?;
        Some(Events { stream, names })
    }

    impl Events {
        /// Waits until one of the database's files is written, then takes every event already
        /// queued with it, so a burst of writes costs one check. False when the stream failed.
        pub(super) async fn written(&mut self) -> bool {
            loop {
                let Some(Ok(event)) = self.stream.next().await else { return false };
                if event.name.as_ref().is_some_and(|n| self.names.contains(n)) {
                    while let Some(Some(Ok(_))) = self.stream.next().now_or_never() {}
                    return true;
                }
            }
        }
    }
}
