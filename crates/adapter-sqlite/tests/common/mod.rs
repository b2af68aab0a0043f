//! Helpers shared by the integration tests; each test binary uses a different subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bg_run_core::{Claim, Claimant, NewTask, TaskId, TaskQueue};
use bg_run_sqlite::{SqliteOptions, SqliteQueue};
use tempfile::TempDir;

/// A fresh database file in its own temporary directory (removed when dropped).
pub struct TempDb {
    pub dir: TempDir,
    pub path: PathBuf,
}

impl TempDb {
    pub fn new() -> TempDb {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("state").join("bg-run.db");
        TempDb { dir, path }
    }

    pub fn options(&self) -> SqliteOptions {
        options(&self.path)
    }

    pub async fn open(&self) -> SqliteQueue {
        SqliteQueue::open(self.options()).await.expect("open the task database")
    }
}

pub fn options(path: &Path) -> SqliteOptions {
    SqliteOptions::new(path)
}

pub fn claimant(worker: &str, lease: Duration) -> Claimant {
    Claimant { worker_id: worker.to_owned(), agent: "test".to_owned(), lease, max_attempts: 3 }
}

pub async fn add(queue: &SqliteQueue, title: &str) -> TaskId {
    queue.enqueue(NewTask::new(title)).await.expect("enqueue")
}

pub async fn claim_one(queue: &SqliteQueue, claimant: &Claimant) -> Claim {
    let mut claims = queue.claim_batch(1, claimant).await.expect("claim_batch");
    assert_eq!(claims.len(), 1, "expected one eligible task");
    claims.remove(0)
}
