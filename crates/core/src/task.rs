//! The task model every queue produces and every dispatcher consumes.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A queue-specific task identifier: a row id, an issue number, a Linear key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub String);

impl TaskId {
    pub fn new(id: impl Into<String>) -> Self {
        TaskId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The row number behind the id of a task in a store bg-run owns, read as people type it:
    /// `42`, ` 42 ` or `#42`. Anything else (zero and negative numbers too) is a `Config` error
    /// that names the id.
    pub fn row_number(&self) -> crate::Result<i64> {
        self.0.trim().trim_start_matches('#').parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            crate::Error::config(format!(
                "'{}' is not a task id: ids are positive numbers such as 42, as `bg-run tasks` lists them",
                self.0
            ))
        })
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for TaskId {
    fn from(s: &str) -> Self {
        TaskId(s.to_owned())
    }
}

impl From<String> for TaskId {
    fn from(s: String) -> Self {
        TaskId(s)
    }
}

/// Who wrote the task, and whether the queue trusts them to direct an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub login: String,
    /// Queues decide trust (GitHub: author association plus allow/block lists). Untrusted tasks
    /// are never handed to an agent.
    pub trusted: bool,
}

/// A unit of work as the worker sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub title: String,
    pub body: String,
    pub url: Option<String>,
    pub labels: Vec<String>,
    pub author: Option<Author>,
    pub created_at: Option<DateTime<Utc>>,
    /// Attempts already started for this task (0 for a fresh task). A claim makes it one more.
    pub attempts: u32,
    /// Per-task limit; the worker's configured limit applies when `None`.
    pub max_attempts: Option<u32>,
    /// Session id of the previous attempt's agent run, so a retry can resume it.
    pub last_session_id: Option<String>,
    /// Queue-specific extras (project, priority, queue name ...), shown in prompts and listings.
    pub meta: BTreeMap<String, String>,
}

impl Task {
    /// A task with just an id and a title; the rest empty. Handy for tests and adapters.
    pub fn new(id: impl Into<TaskId>, title: impl Into<String>) -> Self {
        Task {
            id: id.into(),
            title: title.into(),
            body: String::new(),
            url: None,
            labels: Vec::new(),
            author: None,
            created_at: None,
            attempts: 0,
            max_attempts: None,
            last_session_id: None,
            meta: BTreeMap::new(),
        }
    }

    /// Whether the queue vouches for the author. Tasks without an author (the embedded queue,
    /// where only the local user can add tasks) are trusted.
    pub fn is_trusted(&self) -> bool {
        self.author.as_ref().is_none_or(|a| a.trusted)
    }
}

/// What `enqueue` takes: a task that does not exist yet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    /// Named queue inside one store (sqlite, postgres); `None` means the default queue.
    pub queue: Option<String>,
    pub priority: i32,
    pub max_attempts: Option<u32>,
    /// Do not run before this time.
    pub run_at: Option<DateTime<Utc>>,
    /// Idempotency key: enqueueing the same key twice returns the first task's id.
    pub unique_key: Option<String>,
}

impl NewTask {
    pub fn new(title: impl Into<String>) -> Self {
        NewTask { title: title.into(), ..Default::default() }
    }

    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.labels.push(label.into());
        self
    }

    /// Checks what every queue requires of a new task.
    pub fn validate(&self) -> crate::Result<()> {
        if self.title.trim().is_empty() {
            return Err(crate::Error::config("a task needs a non-empty title"));
        }
        if self.max_attempts == Some(0) {
            return Err(crate::Error::config("max_attempts must be at least 1"));
        }
        if self.queue.as_deref().is_some_and(|q| q.trim().is_empty()) {
            return Err(crate::Error::config("a task's queue name must not be empty"));
        }
        if self.labels.iter().any(|l| l.trim().is_empty()) {
            return Err(crate::Error::config("a task's labels must not be empty"));
        }
        if self.unique_key.as_deref().is_some_and(|k| k.is_empty()) {
            return Err(crate::Error::config("a task's unique key must not be empty"));
        }
        Ok(())
    }
}
