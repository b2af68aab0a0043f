//! bg-run's embedded task queue: one SQLite file that any number of worker processes share.
//!
//! Tasks move `pending → running → review` (the agent finished; a human reviews) or `failed`
//! (attempts used up), and a human can `close`, `cancel` or `retry` them ([`TaskStore`]). Claims are atomic
//! (`BEGIN IMMEDIATE`), carry a lease that heartbeats extend, and a task whose worker died comes
//! back after its lease expires with that attempt counted.
//!
//! ```no_run
//! # async fn demo() -> bg_run_core::Result<()> {
//! use bg_run_core::{NewTask, TaskQueue, TaskStore};
//! use bg_run_sqlite::{SqliteOptions, SqliteQueue};
//!
//! let queue = SqliteQueue::open(SqliteOptions::new("tasks.db")).await?;
//! let id = queue.enqueue(NewTask::new("Fix the login bug").body("Users see a 500 after SSO")).await?;
//! println!("added task {id}: {}", queue.get(&id).await?.status);
//! # Ok(())
//! # }
//! ```

mod admin;
mod db;
mod error;
mod options;
mod queue;
mod record;
mod schema;
mod sql;
mod watch;

pub use options::SqliteOptions;
pub use queue::SqliteQueue;
pub use schema::SCHEMA_VERSION;

/// The store model lives in core; re-exported so users of this crate need not name core for it.
pub use bg_run_core::{AttemptOutcome, AttemptRecord, Status, TaskRecord, TaskStore};
