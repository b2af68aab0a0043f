//! The shared conformance suites, run against the embedded queue: the queue suite, and the store
//! suite (the `TaskStore` contract) in `store`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bg_run_core::{NewTask, TaskId, TaskQueue};
use bg_run_sqlite::{SqliteOptions, SqliteQueue, Status, TaskStore};
use bg_run_testkit::conformance::{Fault, Harness, Observed, ObservedState};
use bg_run_testkit::store_conformance::StoreHarness;
use tempfile::TempDir;

struct SqliteHarness {
    _dir: TempDir,
    path: PathBuf,
    queue: Arc<SqliteQueue>,
}

/// Short, so an injected lock makes calls fail fast with a retryable busy error.
const BUSY_TIMEOUT: Duration = Duration::from_millis(100);

fn options(path: &std::path::Path) -> SqliteOptions {
    SqliteOptions::new(path).busy_timeout(BUSY_TIMEOUT)
}

async fn harness() -> SqliteHarness {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("bg-run.db");
    let queue = SqliteQueue::open(options(&path)).await.expect("open the task database");
    SqliteHarness { _dir: dir, path, queue: Arc::new(queue) }
}

#[async_trait::async_trait]
impl Harness for SqliteHarness {
    fn queue(&self) -> Arc<dyn TaskQueue> {
        self.queue.clone()
    }

    async fn reopen(&self) -> Arc<dyn TaskQueue> {
        Arc::new(SqliteQueue::open(options(&self.path)).await.expect("reopen the task database"))
    }

    async fn add_task(&self, title: &str, body: &str) -> TaskId {
        self.queue.enqueue(NewTask::new(title).body(body)).await.expect("enqueue")
    }

    async fn observe(&self, id: &TaskId) -> Observed {
        let task = self.queue.get(id).await.expect("get");
        let state = match task.status {
            Status::Pending => ObservedState::Pending,
            Status::Running => ObservedState::Working,
            Status::Review | Status::Closed => ObservedState::Done,
            Status::Failed | Status::Cancelled => ObservedState::Failed,
        };
        Observed {
            state,
            attempts: task.attempts,
            title: task.title,
            body: task.body,
            messages: task.history.into_iter().filter_map(|a| a.message).collect(),
            open: !matches!(task.status, Status::Closed | Status::Cancelled),
        }
    }

    /// A "server error" for a database is another process holding the write lock longer than
    /// the busy timeout: writes then fail with a retryable error until it lets go.
    async fn inject(&self, fault: Fault) -> bool {
        let Fault::ServerError { count } = fault else {
            return false;
        };
        let path = self.path.clone();
        let hold = (BUSY_TIMEOUT + Duration::from_millis(200)) * count.max(1);
        tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(&path).expect("open a second connection");
            conn.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");
            std::thread::spawn(move || {
                std::thread::sleep(hold);
                conn.execute_batch("COMMIT").expect("let go of the write lock");
            });
        })
        .await
        .expect("lock the database");
        true
    }
}

impl StoreHarness for SqliteHarness {
    fn store(&self) -> Arc<dyn TaskStore> {
        self.queue.clone()
    }
}

bg_run_testkit::conformance_tests!(harness());

mod store {
    bg_run_testkit::store_conformance_tests!(crate::harness());
}
