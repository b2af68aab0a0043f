//! The conformance suite: behaviour every queue adapter must show, written against
//! `&dyn TaskQueue` plus a small [`Harness`] that adds tasks and observes them as a human would.
//!
//! An adapter runs the whole suite with one macro call in its tests:
//!
//! ```ignore
//! bg_run_testkit::conformance_tests!(my_adapter_harness());
//! ```
//! where the expression is an `async` block or future that yields a fresh `impl Harness` (its own
//! file, schema or fake server), so every case runs isolated and in parallel.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bg_run_core::{TaskId, TaskQueue};

/// What a human looking at the tracker would see for one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObservedState {
    /// Waiting to be picked up (possibly after a retry backoff).
    Pending,
    /// Claimed: "working on it".
    Working,
    /// The agent finished; waiting for human review (`agent-done`). Still open.
    Done,
    /// Given up after max attempts (`agent-failed`).
    Failed,
}

/// A task as the tracker shows it.
#[derive(Clone, Debug)]
pub struct Observed {
    pub state: ObservedState,
    /// Attempts started so far, as the tracker records them.
    pub attempts: u32,
    pub title: String,
    pub body: String,
    /// Every comment, report or stored message (done summary, failure reason), oldest first.
    pub messages: Vec<String>,
    /// Whether the task is still open (trackers) — the worker never closes a task.
    pub open: bool,
}

/// A fault the harness can make its backend produce for the next calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The next `count` requests answer a 5xx server error.
    ServerError { count: u32 },
    /// The next request answers 429 with `retry-after` seconds.
    RateLimited { retry_after_secs: u64 },
}

/// Adapter-specific glue for the conformance suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The queue under test. Claims made through it use `lease()` as their lease.
    fn queue(&self) -> Arc<dyn TaskQueue>;

    /// A second, independent queue instance over the same store, as another worker process (or
    /// the same worker after a restart) would open it.
    async fn reopen(&self) -> Arc<dyn TaskQueue>;

    /// Adds an eligible task as a human would (insert a row, open an issue with the trigger
    /// label, ...). Returns the id the queue will report for it.
    async fn add_task(&self, title: &str, body: &str) -> TaskId;

    /// What the tracker shows for the task now.
    async fn observe(&self, id: &TaskId) -> Observed;

    /// A lease short enough for tests to wait out, after which a claim that was not
    /// heartbeated is stale and its task eligible again (trackers without leases: the
    /// configured stale-claim timeout).
    fn lease(&self) -> Duration {
        Duration::from_millis(500)
    }

    /// Makes the backend misbehave. Returns false if this backend has no fault injection
    /// (embedded databases); the fault cases then check nothing for it and say so.
    async fn inject(&self, fault: Fault) -> bool {
        let _ = fault;
        false
    }
}
