//! The task stores bg-run owns (the embedded SQLite file, PostgreSQL): queues that also keep each
//! task's full state, so a human can add, list, show, close, retry and cancel tasks through them.
//! Trackers (GitHub issues) are not stores: people manage those tasks in the tracker itself.
//!
//! One model for every store: [`Status`], [`TaskRecord`] with its [`AttemptRecord`] history and
//! their [`AttemptOutcome`], and the [`TaskStore`] contract. The CLI speaks to any store through
//! `Arc<dyn TaskStore>` and prints these records as they serialise.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::outcome::Tokens;
use crate::queue::TaskQueue;
use crate::task::{NewTask, TaskId};
use crate::{Error, Result};

/// Where a task is in its life. The worker moves `pending → running → review | failed`; a human
/// moves tasks to `closed` or `cancelled`, or back to `pending` with a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a worker (possibly until its retry time).
    Pending,
    /// Claimed by a worker whose agent is working on it.
    Running,
    /// The agent finished; a human reviews the result.
    Review,
    /// Given up after its attempts ran out.
    Failed,
    /// Closed by a human.
    Closed,
    /// Cancelled by a human before or while it ran.
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 6] =
        [Status::Pending, Status::Running, Status::Review, Status::Failed, Status::Closed, Status::Cancelled];

    /// The name stores keep in their status column and the CLI prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Review => "review",
            Status::Failed => "failed",
            Status::Closed => "closed",
            Status::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses what a human types (`Review`, ` pending `); an unknown name is a `Config` error that
/// lists the valid statuses.
impl FromStr for Status {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        Status::ALL.into_iter().find(|status| status.as_str() == wanted).ok_or_else(|| {
            let valid: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            Error::config(format!("unknown task status '{s}'; valid statuses: {}", valid.join(", ")))
        })
    }
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The agent finished; the task went to review.
    Done,
    /// The agent failed; the task will be retried.
    Failed,
    /// The agent failed and the task was given up.
    GaveUp,
    /// The worker shut down and gave the task back; the attempt does not count.
    Released,
    /// The worker stopped heartbeating and another worker took the task over.
    Expired,
    /// A human cancelled or closed the task while it ran.
    Cancelled,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 6] = [
        AttemptOutcome::Done,
        AttemptOutcome::Failed,
        AttemptOutcome::GaveUp,
        AttemptOutcome::Released,
        AttemptOutcome::Expired,
        AttemptOutcome::Cancelled,
    ];

    /// The name stores keep in their outcome column; the same as the serialised form.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Done => "done",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::GaveUp => "gave_up",
            AttemptOutcome::Released => "released",
            AttemptOutcome::Expired => "expired",
            AttemptOutcome::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses the stored name exactly as [`AttemptOutcome::as_str`] writes it.
impl FromStr for AttemptOutcome {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        AttemptOutcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == s)
            .ok_or_else(|| Error::config(format!("unknown attempt outcome '{s}'")))
    }
}

/// A task with everything its store knows about it, as `bg-run tasks` and `bg-run show` print it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskRecord {
    /// The store's row id; serialised as a JSON number. The task's [`TaskId`] is its decimal
    /// form ([`TaskRecord::task_id`]).
    pub id: i64,
    pub title: String,
    pub body: String,
    pub status: Status,
    /// Attempts started, including one running now.
    pub attempts: u32,
    /// The task's own attempt limit, or else the limit of the worker that last claimed it;
    /// `None` while neither is known.
    pub max_attempts: Option<u32>,
    pub queue: String,
    pub labels: Vec<String>,
    pub priority: i32,
    pub unique_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Not eligible before this time (a retry's backoff, or a scheduled task).
    pub run_at: DateTime<Utc>,
    /// The worker that holds (or last held) the task.
    pub claimed_by: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    /// The agent's final message from the attempt that finished it.
    pub summary: Option<String>,
    /// Reason (and, where the store keeps it, stderr tail) of the last failed attempt.
    pub last_error: Option<String>,
    pub exit_code: Option<i32>,
    pub cost_usd: Option<f64>,
    pub turns: Option<u32>,
    pub tokens: Option<Tokens>,
    pub duration_ms: Option<u64>,
    /// The agent session of the last attempt that reported one.
    pub session_id: Option<String>,
    /// Finished attempts, oldest first. [`TaskStore::get`] and the changes fill it;
    /// [`TaskStore::list`] leaves it empty.
    pub history: Vec<AttemptRecord>,
}

impl TaskRecord {
    /// The id the [`TaskQueue`] and [`TaskStore`] methods take for this task.
    pub fn task_id(&self) -> TaskId {
        TaskId(self.id.to_string())
    }
}

/// One finished attempt. The usage fields are `None` where the store does not keep them per
/// attempt (SQLite keeps them only for the task's last attempt, in [`TaskRecord`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttemptRecord {
    /// The attempt's number at the time (a released attempt's number is used again).
    pub number: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    pub outcome: AttemptOutcome,
    /// The summary on success, the reason otherwise.
    pub message: Option<String>,
    /// The worker that ran it.
    pub worker: Option<String>,
    pub exit_code: Option<i32>,
    pub cost_usd: Option<f64>,
    pub turns: Option<u32>,
    pub duration_ms: Option<u64>,
    pub session_id: Option<String>,
}

/// A human's change to one task: what [`TaskStore::close`], [`TaskStore::retry`] and
/// [`TaskStore::cancel`] do, as one table every store follows ([`Change::effect`]), with the
/// conflict every store answers for a change the task's status does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    Close,
    Retry,
    Cancel,
}

/// What a [`Change`] does to a task in one status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The task moves to this status; a running task is taken from its worker first.
    To(Status),
    /// The task already is where the change puts it: nothing changes, the task is answered.
    Unchanged,
    /// The status does not allow the change: a [`Error::Conflict`] and nothing changes.
    Refused,
}

impl Change {
    pub const ALL: [Change; 3] = [Change::Close, Change::Retry, Change::Cancel];

    /// The CLI command that makes this change.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Close => "close",
            Change::Retry => "retry",
            Change::Cancel => "cancel",
        }
    }

    /// The contract's table. `close`: every status but closed goes to closed (closed is
    /// unchanged). `retry`: every status but running goes to pending (running is refused).
    /// `cancel`: pending and running go to cancelled, cancelled is unchanged, review, failed and
    /// closed are refused.
    pub fn effect(self, from: Status) -> Effect {
        match (self, from) {
            (Change::Close, Status::Closed) | (Change::Cancel, Status::Cancelled) => Effect::Unchanged,
            (Change::Close, _) => Effect::To(Status::Closed),
            (Change::Retry, Status::Running) => Effect::Refused,
            (Change::Retry, _) => Effect::To(Status::Pending),
            (Change::Cancel, Status::Pending | Status::Running) => Effect::To(Status::Cancelled),
            (Change::Cancel, Status::Review | Status::Failed | Status::Closed) => Effect::Refused,
        }
    }

    /// The statuses this change moves a task out of (for stores that decide in one statement).
    pub fn changes_from(self) -> impl Iterator<Item = Status> {
        Status::ALL.into_iter().filter(move |&status| matches!(self.effect(status), Effect::To(_)))
    }

    /// The effect on task `id` in status `from`, or the conflict that says the status and what to
    /// do instead when the change is refused.
    pub fn decide(self, id: impl fmt::Display, from: Status) -> Result<Effect> {
        let instead = match (self.effect(from), self) {
            (Effect::Refused, Change::Retry) => "cancel it first, or wait until it finishes",
            (Effect::Refused, _) => "only pending or running tasks can be cancelled; close it instead",
            (effect, _) => return Ok(effect),
        };
        Err(Error::conflict(format!("task {id} is {from}: {instead}")))
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A queue bg-run owns, which keeps every task's state and history and lets a human manage its
/// tasks: the operations behind `bg-run add | tasks | show | close | retry | cancel`.
///
/// The contract every store keeps, checked for each of them by testkit's store conformance
/// suite:
///
/// - Ids are the store's own (numeric, as [`TaskRecord::id`] prints them). An id the store cannot
///   read is an [`Error::Config`] that names it; a well-formed id of no task is
///   [`Error::NotFound`] ("task 42 not found"), for every method that takes an id.
/// - A handle works on one queue: tasks added without a queue go to it and [`TaskStore::list`]
///   shows only its tasks, while [`TaskStore::get`] and the changes find a task of any queue in
///   the store by its id.
/// - `close`, `retry` and `cancel` follow one table, [`Change::effect`]. A change the task's
///   status does not allow is an [`Error::Conflict`] that says the status and what to do
///   instead, and nothing is changed; a change to where the task already is changes nothing
///   (not even `updated_at`) and answers the task.
/// - Every change answers the task as it is afterwards, history included, and takes effect at
///   once for workers: a running task that is closed or cancelled is taken from its worker, whose
///   next heartbeat or report fails with a conflict (which stops the agent), and the
///   interrupted attempt is recorded as [`AttemptOutcome::Cancelled`].
/// - A store that cannot manage its tasks in some configuration (PostgreSQL on a user's own
///   mapped table) answers [`Error::Unsupported`] for every method here.
#[async_trait]
pub trait TaskStore: TaskQueue {
    /// Adds all tasks at once, or none of them if any is invalid ([`Error::Config`]), and returns
    /// their ids in input order. Tasks without a queue go to the handle's queue. A task whose
    /// unique key already exists in its queue (or earlier in the same batch) is not added again:
    /// the existing task's id is returned for it.
    async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<TaskId>>;

    /// The handle's queue's tasks, oldest first, only those in `status` if given. The records
    /// come without their history (it is empty); [`TaskStore::get`] has it.
    async fn list(&self, status: Option<Status>) -> Result<Vec<TaskRecord>>;

    /// One task, of any queue in the store, with its history.
    async fn get(&self, id: &TaskId) -> Result<TaskRecord>;

    /// Closes a task: a human is done with it and it is never eligible again (until retried).
    /// Any task can be closed; a running one is taken from its worker, as by
    /// [`TaskStore::cancel`]. Closing a closed task changes nothing and answers it.
    async fn close(&self, id: &TaskId) -> Result<TaskRecord>;

    /// Puts a task that is not running (in review, failed, closed, cancelled, or pending until a
    /// retry time) back to pending, eligible at once with its attempt count reset; its history
    /// is kept. [`Error::Conflict`] while it runs: cancel it first or wait for it to finish.
    async fn retry(&self, id: &TaskId) -> Result<TaskRecord>;

    /// Cancels a pending or running task; a running task is taken from its worker. A task that
    /// already finished (review, failed, closed) is a conflict: close it instead. Cancelling a
    /// cancelled task changes nothing and answers it.
    async fn cancel(&self, id: &TaskId) -> Result<TaskRecord>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_status_and_outcome_it_prints() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>().ok(), Some(status));
            assert_eq!(serde_json::to_string(&status).ok(), Some(format!("\"{status}\"")));
        }
        assert_eq!(" Review ".parse::<Status>().ok(), Some(Status::Review));
        for outcome in AttemptOutcome::ALL {
            assert_eq!(outcome.as_str().parse::<AttemptOutcome>().ok(), Some(outcome));
            assert_eq!(serde_json::to_string(&outcome).ok(), Some(format!("\"{outcome}\"")));
        }
        assert!("Done".parse::<AttemptOutcome>().is_err(), "stored names are exact");
    }

    #[test]
    fn unknown_status_lists_the_valid_ones() {
        let message = "done".parse::<Status>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("'done'"), "{message}");
        assert!(message.contains("valid statuses: pending, running, review, failed, closed, cancelled"), "{message}");
    }

    #[test]
    fn refused_changes_say_the_status_and_what_to_do_instead() {
        let refusal = |change: Change, from| change.decide(7, from).err().map(|e| e.to_string()).unwrap_or_default();
        let busy = refusal(Change::Retry, Status::Running);
        assert!(busy.contains("task 7 is running") && busy.contains("cancel it first"), "{busy}");
        let finished = refusal(Change::Cancel, Status::Review);
        assert!(finished.contains("task 7 is review") && finished.contains("close it instead"), "{finished}");
        assert_eq!(Change::Cancel.decide(7, Status::Cancelled).ok(), Some(Effect::Unchanged));
        let from: Vec<Status> = Change::Cancel.changes_from().collect();
        assert_eq!(from, [Status::Pending, Status::Running]);
    }

    #[test]
    fn a_record_serialises_its_id_as_a_number() {
        let at = DateTime::from_timestamp_millis(1_764_000_000_000).unwrap_or_default();
        let record = TaskRecord {
            id: 42,
            title: "t".into(),
            body: String::new(),
            status: Status::Review,
            attempts: 1,
            max_attempts: None,
            queue: "default".into(),
            labels: vec![],
            priority: 0,
            unique_key: None,
            created_at: at,
            updated_at: at,
            run_at: at,
            claimed_by: None,
            lease_until: None,
            summary: None,
            last_error: None,
            exit_code: None,
            cost_usd: None,
            turns: None,
            tokens: None,
            duration_ms: None,
            session_id: None,
            history: vec![],
        };
        let json = serde_json::to_value(&record).unwrap_or_default();
        assert_eq!(json["id"], serde_json::json!(42));
        assert_eq!(json["status"], "review");
        assert!(json["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{json}");
        assert_eq!(record.task_id(), TaskId::new("42"));
    }
}
