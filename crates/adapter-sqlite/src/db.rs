//! The open database: one connection for everything that writes or reads tasks, one for
//! watching the file for other processes' commits, and the hand-off to blocking threads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bg_run_core::{Error, Result};
use rusqlite::Connection;

use crate::error::ADAPTER;
use crate::options::SqliteOptions;
use crate::schema;
use crate::sql::Sql;

pub(crate) struct Db {
    pub(crate) path: PathBuf,
    pub(crate) queue: String,
    pub(crate) labels: Vec<String>,
    /// The label filter as a JSON array, bound as `:labels`; `None` when there is no filter, so
    /// the common case runs without the label sub-query.
    pub(crate) labels_json: Option<String>,
    pub(crate) sql: Sql,
    /// SQLite serialises writers anyway; one connection behind a mutex keeps statements cached
    /// and avoids lock contention between this process's own tasks.
    conn: Mutex<Connection>,
    /// Only runs `PRAGMA data_version` and the next-due query, so a waiting worker never queues
    /// behind writes.
    watcher: Mutex<Connection>,
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
        let watcher = schema::open_watcher(&options)?;
        let labels_json = (!options.labels.is_empty()).then(|| crate::record::labels_json(&options.labels));
        Ok(Db {
            sql: Sql::new(labels_json.is_some()),
            path: options.path,
            queue,
            labels: options.labels,
            labels_json,
            conn: Mutex::new(conn),
            watcher: Mutex::new(watcher),
        })
    }

    /// Runs `f` with the main connection on a blocking thread.
    pub(crate) async fn call<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db, &mut Connection) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(self);
        run_blocking(move || {
            let mut conn = db.conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&db, &mut conn)
        })
        .await
    }

    /// Runs `f` with the watcher connection on a blocking thread.
    pub(crate) async fn watch<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db, &Connection) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(self);
        run_blocking(move || {
            let conn = db.watcher.lock().unwrap_or_else(PoisonError::into_inner);
            f(&db, &conn)
        })
        .await
    }
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
