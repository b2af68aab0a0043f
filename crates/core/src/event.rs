//! Lifecycle events: the logs use them now, the control API subscribes to them later.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::outcome::{FailureKind, Usage};
use crate::task::TaskId;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    Claimed {
        attempt: u32,
        title: String,
    },
    Started {
        attempt: u32,
    },
    Progress {
        kind: String,
        message: String,
    },
    Completed {
        duration_ms: u64,
        summary: String,
        usage: Usage,
    },
    Failed {
        attempt: u32,
        kind: FailureKind,
        reason: String,
    },
    Retrying {
        attempt: u32,
        at: DateTime<Utc>,
    },
    GaveUp {
        attempts: u32,
        reason: String,
    },
    Released,
    /// A queue call failed; the worker backs off and keeps going.
    QueueError {
        operation: String,
        error: String,
        retry_in_ms: u64,
    },
    /// The agent refused to claim, and why (budget spent, ...).
    Paused {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub at: DateTime<Utc>,
    pub agent: String,
    pub task: Option<TaskId>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A broadcast channel of events. Slow subscribers miss old events rather than slowing the worker.
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        EventBus { tx: broadcast::channel(capacity).0 }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    pub fn emit(&self, agent: &str, task: Option<&TaskId>, kind: EventKind) {
        // Nobody listening is fine: events are a view, not a log of record.
        let _ = self.tx.send(Event { at: Utc::now(), agent: agent.to_owned(), task: task.cloned(), kind });
    }
}
