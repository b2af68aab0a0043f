//! The `Dispatcher` contract: how a task becomes an agent run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::outcome::Outcome;
use crate::task::Task;

/// Something the agent did while running, for watchers and the terminal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// "tool", "message", "output", ...
    pub kind: String,
    pub message: String,
}

/// Where a dispatcher reports progress. Cheap to clone; never blocks the agent.
#[derive(Clone)]
pub struct ProgressSink(Arc<dyn Fn(Progress) + Send + Sync>);

impl ProgressSink {
    pub fn new(f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        ProgressSink(Arc::new(f))
    }

    /// A sink that drops everything.
    pub fn ignore() -> Self {
        ProgressSink::new(|_| {})
    }

    pub fn emit(&self, kind: &str, message: impl Into<String>) {
        (self.0)(Progress { kind: kind.to_owned(), message: message.into() })
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

/// Everything a dispatcher needs besides the task.
#[derive(Clone, Debug)]
pub struct DispatchContext {
    /// Directory the agent runs in.
    pub workdir: PathBuf,
    /// The agent must be stopped after this long.
    pub timeout: Duration,
    /// Fires on shutdown (after the grace period) or when the claim is lost.
    pub cancel: CancellationToken,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Session of the previous attempt, where the agent can resume it.
    pub resume_session: Option<String>,
    pub progress: ProgressSink,
}

impl DispatchContext {
    pub fn new(workdir: impl Into<PathBuf>, timeout: Duration) -> Self {
        DispatchContext {
            workdir: workdir.into(),
            timeout,
            cancel: CancellationToken::new(),
            attempt: 1,
            resume_session: None,
            progress: ProgressSink::ignore(),
        }
    }
}

/// Runs an agent on a task. Failures are reported in the `Outcome`, never as a panic; an `Err`
/// is reserved for "could not even start" and counts as a transient failure.
#[async_trait]
pub trait Dispatcher: Send + Sync {
    /// Short name for logs ("command", "claude").
    fn name(&self) -> &str;

    async fn dispatch(&self, task: &Task, ctx: DispatchContext) -> Outcome;
}

#[async_trait]
impl<D: Dispatcher + ?Sized> Dispatcher for Arc<D> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn dispatch(&self, task: &Task, ctx: DispatchContext) -> Outcome {
        (**self).dispatch(task, ctx).await
    }
}
