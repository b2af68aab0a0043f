//! The `TaskQueue` contract: what a tracker or a database must do to feed the worker.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::outcome::{FailureKind, Usage};
use crate::task::{NewTask, Task, TaskId};
use crate::Result;

/// What a queue can do beyond the essentials, so the worker and the CLI can adapt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// A claim is atomic: two workers can never both win the same task.
    pub atomic_claim: bool,
    /// Claims carry a lease that `heartbeat` extends and that expires if the worker dies.
    pub leases: bool,
    /// `enqueue` adds tasks.
    pub enqueue: bool,
    /// `wait_for_work` wakes early when work arrives (instead of just sleeping).
    pub wakeup: bool,
    /// `claim_batch` claims many tasks in one round trip.
    pub batch_claim: bool,
}

impl Capabilities {
    pub fn none() -> Self {
        Self::default()
    }
    pub fn with_atomic_claim(mut self) -> Self {
        self.atomic_claim = true;
        self
    }
    pub fn with_leases(mut self) -> Self {
        self.leases = true;
        self
    }
    pub fn with_enqueue(mut self) -> Self {
        self.enqueue = true;
        self
    }
    pub fn with_wakeup(mut self) -> Self {
        self.wakeup = true;
        self
    }
    pub fn with_batch_claim(mut self) -> Self {
        self.batch_claim = true;
        self
    }
}

/// Who is claiming: shown in the tracker ("working on it — worker X") and stored with the lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimant {
    /// Unique per worker process and agent, e.g. `triage@host:pid`.
    pub worker_id: String,
    /// The named agent ("employee") doing the work.
    pub agent: String,
    /// How long a claim stays valid without a heartbeat.
    pub lease: Duration,
    /// The attempt limit the worker will apply, so the tracker can show "attempt 2/3".
    pub max_attempts: u32,
}

/// A won claim. Pass it back to `heartbeat`, `complete`, `fail` or `release`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    pub task: Task,
    /// This attempt's number, 1-based; already counted in the queue.
    pub attempt: u32,
    pub claimant: Claimant,
    /// Opaque token the queue uses to check that the claim is still ours (lease id, comment id).
    pub token: String,
    pub lease_until: Option<DateTime<Utc>>,
}

/// Result of trying to claim one task.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimOutcome {
    Claimed(Box<Claim>),
    /// Someone else got there first, or the task is no longer eligible.
    Taken,
}

/// What the agent did, as reported to the tracker when it succeeds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub summary: String,
    pub duration: Duration,
    pub usage: Usage,
    pub exit_code: Option<i32>,
}

/// Whether a failed attempt will be tried again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryDecision {
    /// Make the task eligible again at this time.
    RetryAt(DateTime<Utc>),
    /// Mark the task failed for good (`agent-failed`).
    GiveUp,
}

/// A failed attempt, as reported to the tracker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// One paragraph a human can act on; secrets already redacted.
    pub reason: String,
    pub exit_code: Option<i32>,
    /// Tail of the agent's stderr (redacted), for the failure comment.
    pub stderr_tail: String,
    pub duration: Duration,
    pub usage: Usage,
    pub decision: RetryDecision,
}

impl Failure {
    pub fn gives_up(&self) -> bool {
        self.decision == RetryDecision::GiveUp
    }
}

/// A task queue: a tracker, a database table, an embedded file.
///
/// Implement the required methods; the worker drives the lifecycle. Every method must be safe to
/// call concurrently from many tasks of one worker.
#[async_trait]
pub trait TaskQueue: Send + Sync {
    /// Short name used in logs and errors ("sqlite", "github").
    fn name(&self) -> &str;

    fn capabilities(&self) -> Capabilities;

    /// Eligible tasks only (open, matching the filter, unclaimed or with an expired lease, not
    /// done, not given up, past their backoff), oldest or highest priority first, at most `max`.
    async fn poll(&self, max: usize) -> Result<Vec<Task>>;

    /// Claim one task and show it as "working". Returns `Taken` when another worker won.
    async fn claim(&self, task: &Task, claimant: &Claimant) -> Result<ClaimOutcome>;

    /// Find and claim up to `max` tasks. Queues that can claim in one round trip override this.
    async fn claim_batch(&self, max: usize, claimant: &Claimant) -> Result<Vec<Claim>> {
        let mut claims = Vec::new();
        for task in self.poll(max).await? {
            if let ClaimOutcome::Claimed(claim) = self.claim(&task, claimant).await? {
                claims.push(*claim);
            }
        }
        Ok(claims)
    }

    /// Extend the claim's lease. `Err(Conflict)` means the claim was lost (expired and taken, or
    /// cancelled by a human) and the agent should stop. Queues without leases do nothing.
    async fn heartbeat(&self, claim: &Claim) -> Result<()>;

    /// The agent finished: post the report, mark the task done (for review). The task stays open.
    async fn complete(&self, claim: &Claim, report: &Report) -> Result<()>;

    /// The attempt failed: post the reason, then schedule a retry or give up as `failure` says.
    async fn fail(&self, claim: &Claim, failure: &Failure) -> Result<()>;

    /// Give the task back untouched (shutdown). The attempt is not counted against it.
    async fn release(&self, claim: &Claim) -> Result<()>;

    /// Add a task. Trackers where this makes no sense return `Error::Unsupported`.
    async fn enqueue(&self, task: NewTask) -> Result<TaskId> {
        let _ = task;
        Err(crate::Error::unsupported("enqueue", self.name()))
    }

    /// Wait until work may be available or `timeout` passes. The default just sleeps; queues
    /// with a wake-up signal (LISTEN/NOTIFY, file change) return early.
    async fn wait_for_work(&self, timeout: Duration) {
        tokio::time::sleep(timeout).await;
    }
}

/// Convenience methods every queue gets for free.
#[async_trait]
pub trait TaskQueueExt: TaskQueue {
    /// Poll and claim the first eligible task, if any.
    async fn claim_one(&self, claimant: &Claimant) -> Result<Option<Claim>> {
        Ok(self.claim_batch(1, claimant).await?.into_iter().next())
    }
}

impl<Q: TaskQueue + ?Sized> TaskQueueExt for Q {}

#[async_trait]
impl<Q: TaskQueue + ?Sized> TaskQueue for std::sync::Arc<Q> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn poll(&self, max: usize) -> Result<Vec<Task>> {
        (**self).poll(max).await
    }
    async fn claim(&self, task: &Task, claimant: &Claimant) -> Result<ClaimOutcome> {
        (**self).claim(task, claimant).await
    }
    async fn claim_batch(&self, max: usize, claimant: &Claimant) -> Result<Vec<Claim>> {
        (**self).claim_batch(max, claimant).await
    }
    async fn heartbeat(&self, claim: &Claim) -> Result<()> {
        (**self).heartbeat(claim).await
    }
    async fn complete(&self, claim: &Claim, report: &Report) -> Result<()> {
        (**self).complete(claim, report).await
    }
    async fn fail(&self, claim: &Claim, failure: &Failure) -> Result<()> {
        (**self).fail(claim, failure).await
    }
    async fn release(&self, claim: &Claim) -> Result<()> {
        (**self).release(claim).await
    }
    async fn enqueue(&self, task: NewTask) -> Result<TaskId> {
        (**self).enqueue(task).await
    }
    async fn wait_for_work(&self, timeout: Duration) {
        (**self).wait_for_work(timeout).await
    }
}
