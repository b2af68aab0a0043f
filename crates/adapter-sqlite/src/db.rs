//! The open database: a writer thread that runs every task operation with group commit, and a
//! second connection for watching the file for other processes' commits.
//!
//! Each commit costs far more than the statements in it (WAL page writes, file-lock system
//! calls), and a worker running eight agents reports and claims in bursts. So operations are
//! queued to one thread, which runs everything queued so far in a single `BEGIN IMMEDIATE`
//! transaction, each operation in its own savepoint so that one failing operation does not
//! undo the others, and answers each caller only after the commit.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use bg_run_core::{Error, Result};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::{self, ADAPTER};
use crate::options::SqliteOptions;
use crate::schema;
use crate::sql::Sql;

/// Bounds how long the first operation of a burst waits for the others.
const MAX_BATCH: usize = 64;

/// What every operation needs besides the connection.
pub(crate) struct Shared {
    pub(crate) path: PathBuf,
    pub(crate) queue: String,
    pub(crate) labels: Vec<String>,
    /// The label filter as a JSON array, bound as `:labels`; `None` when there is no filter, so
    /// the common case runs without the label sub-query.
    pub(crate) labels_json: Option<String>,
    pub(crate) sql: Sql,
}

pub(crate) struct Db {
    pub(crate) shared: Arc<Shared>,
    jobs: mpsc::Sender<Box<dyn Job>>,
    /// Only runs `PRAGMA data_version` and the next-due query, so a waiting worker never queues
    /// behind writes.
    watcher: Arc<Mutex<Connection>>,
    /// Writes to the database's files, watched from the first wait on (see `watch.rs`).
    #[cfg(target_os = "linux")]
    pub(crate) file_writes: std::sync::OnceLock<Option<crate::watch::FileWrites>>,
}

impl Db {
    pub(crate) fn open(options: SqliteOptions) -> Result<Db> {
        let queue = options.queue.trim().to_owned();
        if queue.is_empty() {
            return Err(Error::config("the sqlite queue name must not be empty"));
        }
        if options.labels.iter().any(|l| l.trim().is_empty()) {
            return Err(Error::config("the sqlite queue's label filter contains an empty label"));
        }
        let conn = schema::open(&options)?;
        // Checkpoints (copying the WAL back into the database, with two fsyncs) run on their own
        // thread, so a commit never waits for the disk.
        conn.pragma_update_and_check(None, "wal_autocheckpoint", 0, |row| row.get::<_, i64>(0))
            .map_err(|e| error::open(&options.path, e))?;
        let watcher = schema::open_watcher(&options)?;
        let checkpoints = start_checkpointer(options.clone())?;
        let labels_json = (!options.labels.is_empty()).then(|| crate::record::labels_json(&options.labels));
        let shared = Arc::new(Shared {
            sql: Sql::new(labels_json.is_some()),
            path: options.path,
            queue,
            labels: options.labels,
            labels_json,
        });
        let (jobs, queued) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("bg-run-sqlite".to_owned())
            .spawn(move || write_loop(&writer_shared, &conn, &queued, &checkpoints))
            .map_err(|e| Error::backend(ADAPTER, format!("cannot start the database thread: {e}"), false))?;
        Ok(Db {
            shared,
            jobs,
            watcher: Arc::new(Mutex::new(watcher)),
            #[cfg(target_os = "linux")]
            file_writes: std::sync::OnceLock::new(),
        })
    }

    /// Runs `f` on the writer thread inside a write transaction (shared with other queued
    /// operations) and answers once that transaction has committed. If `f` fails, its changes
    /// are undone and the others' kept.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared, &Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Box::new(Call { f, reply })).map_err(|_| thread_gone())?;
        answer.await.map_err(|_| thread_gone())?
    }

    /// Runs `f` on a blocking thread with the watcher connection, which `f` locks only for each
    /// query so that several waiters can share it.
    pub(crate) async fn watch<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared, &Mutex<Connection>) -> Result<T> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let watcher = Arc::clone(&self.watcher);
        run_blocking(move || f(&shared, &watcher)).await
    }
}

/// Locks a connection, ignoring poisoning: a panic elsewhere leaves SQLite's state consistent.
pub(crate) fn lock(conn: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

fn thread_gone() -> Error {
    Error::backend(ADAPTER, "the database thread stopped unexpectedly", false)
}

pub(crate) async fn run_blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend(ADAPTER, format!("the database thread stopped unexpectedly: {e}"), false))?
}

/// One queued operation, type-erased so different result types share the queue.
trait Job: Send {
    /// Runs the operation; the answer is held back until the transaction's fate is known.
    fn run(self: Box<Self>, shared: &Shared, conn: &Connection) -> Box<dyn Answer>;
    /// The transaction could not even start.
    fn abort(self: Box<Self>, error: Error);
}

trait Answer: Send {
    fn succeeded(&self) -> bool;
    /// `commit` is the commit's error, if it failed.
    fn send(self: Box<Self>, commit: Option<Error>);
}

struct Call<T, F> {
    f: F,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Shared, &Connection) -> Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, shared: &Shared, conn: &Connection) -> Box<dyn Answer> {
        // A caller that stopped waiting (a worker shutting down mid-claim) must not get tasks
        // claimed in its name that nobody would ever work on.
        if self.reply.is_closed() {
            let result = Err(Error::backend(ADAPTER, "the caller stopped waiting", false));
            return Box::new(Reply { result, reply: self.reply });
        }
        let result = (self.f)(shared, conn);
        Box::new(Reply { result, reply: self.reply })
    }

    fn abort(self: Box<Self>, error: Error) {
        let _ = self.reply.send(Err(error));
    }
}

struct Reply<T> {
    result: Result<T>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send> Answer for Reply<T> {
    fn succeeded(&self) -> bool {
        self.result.is_ok()
    }

    fn send(self: Box<Self>, commit: Option<Error>) {
        // A caller that gave up waiting (its future was dropped) needs no answer.
        let _ = self.reply.send(match commit {
            None => self.result,
            Some(error) => Err(error),
        });
    }
}

/// Commits between two checkpoint requests: at a handful of pages per commit, this keeps the WAL
/// around a few megabytes.
const CHECKPOINT_EVERY: u32 = 64;

fn write_loop(
    shared: &Shared,
    conn: &Connection,
    queued: &mpsc::Receiver<Box<dyn Job>>,
    checkpoints: &mpsc::SyncSender<()>,
) {
    let mut commits = 0u32;
    // Ends when every handle to the queue is gone and the queue is drained.
    while let Ok(first) = queued.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queued.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(shared, conn, batch);
        commits += 1;
        if commits % CHECKPOINT_EVERY == 0 {
            // Full means a request is already pending; one is enough.
            let _ = checkpoints.try_send(());
        }
    }
}

fn run_batch(shared: &Shared, conn: &Connection, batch: Vec<Box<dyn Job>>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        for job in batch {
            job.abort(error::backend("starting a transaction", &e));
        }
        return;
    }
    let single = batch.len() == 1;
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch {
        // A lone operation needs no savepoint: on failure the whole transaction rolls back.
        if single {
            answers.push(job.run(shared, conn));
            continue;
        }
        if let Err(e) = savepoint(conn, "SAVEPOINT job") {
            job.abort(error::backend("starting a savepoint", &e));
            continue;
        }
        let answer = job.run(shared, conn);
        let closed = if answer.succeeded() {
            savepoint(conn, "RELEASE job")
        } else {
            savepoint(conn, "ROLLBACK TO job").and_then(|()| savepoint(conn, "RELEASE job"))
        };
        if let Err(e) = closed {
            // The transaction is in an unknown state: give up on all of it.
            let _ = conn.execute_batch("ROLLBACK");
            answer.send(Some(error::backend("ending a savepoint", &e)));
            for answer in answers {
                answer.send(Some(error::backend("ending a savepoint", &e)));
            }
            return;
        }
        answers.push(answer);
    }
    let finish = if single && !answers.iter().all(|a| a.succeeded()) { "ROLLBACK" } else { "COMMIT" };
    match conn.execute_batch(finish) {
        Ok(()) => answers.into_iter().for_each(|a| a.send(None)),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            for answer in answers {
                answer.send(Some(error::backend("committing", &e)));
            }
        }
    }
}

fn savepoint(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs a passive checkpoint each time the writer asks. Passive checkpoints never block the
/// writer; the thread ends with the writer (when its sender is dropped).
fn start_checkpointer(options: SqliteOptions) -> Result<mpsc::SyncSender<()>> {
    let (request, requests) = mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("bg-run-sqlite-checkpoint".to_owned())
        .spawn(move || {
            let mut conn = None;
            while requests.recv().is_ok() {
                if conn.is_none() {
                    conn = schema::open_watcher(&options)
                        .map_err(|error| tracing::warn!(%error, "sqlite: cannot open a connection for checkpoints"))
                        .ok();
                }
                if let Some(conn) = &conn {
                    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(0));
                    if let Err(error) = done {
                        tracing::debug!(%error, "sqlite: checkpoint failed; the next one catches up");
                    }
                }
            }
        })
        .map_err(|e| Error::backend(ADAPTER, format!("cannot start the checkpoint thread: {e}"), false))?;
    Ok(request)
}
