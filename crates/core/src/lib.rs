//! bg-run core: the task model, the [`TaskQueue`] and [`Dispatcher`] contracts, and the
//! [`Worker`] engine that drives a task from "eligible" to "waiting for review".
//!
//! This crate knows no tracker, no database and no agent CLI. Adapters implement [`TaskQueue`]
//! (and, for the queues bg-run owns, [`TaskStore`]); `bg-run-dispatch` implements
//! [`Dispatcher`]; the `bg-run` binary wires them together.

pub mod backoff;
pub mod dispatcher;
pub mod error;
pub mod event;
pub mod outcome;
pub mod queue;
pub mod redact;
pub mod store;
pub mod task;
pub mod text;
pub mod worker;

pub use dispatcher::{DispatchContext, Dispatcher, Progress, ProgressSink};
pub use error::{BoxError, Error, Result};
pub use event::{Event, EventBus, EventKind};
pub use outcome::{FailureKind, Outcome, Tokens, Usage};
pub use queue::{Capabilities, Claim, ClaimOutcome, Claimant, Failure, Report, RetryDecision, TaskQueue, TaskQueueExt};
pub use store::{AttemptOutcome, AttemptRecord, Change, Effect, Status, TaskRecord, TaskStore};
pub use task::{Author, NewTask, Task, TaskId};
pub use worker::{RunMode, RunSummary, Worker, WorkerConfig};

/// Re-exported so adapters and dispatchers share one version.
pub use async_trait::async_trait;
pub use tokio_util::sync::CancellationToken;
