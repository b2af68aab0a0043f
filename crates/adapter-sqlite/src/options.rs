//! How to open the embedded queue.

use std::path::PathBuf;
use std::time::Duration;

/// Where the queue lives and which of its tasks this handle works on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// The database file. Default: `.bg-run/bg-run.db` (relative to the working directory).
    pub path: PathBuf,
    /// Named queue inside the file. Claims, polls and wake-ups only see this queue's tasks, and
    /// `enqueue` puts tasks without a queue of their own here. Default: `default`.
    pub queue: String,
    /// A task is eligible only if it carries all of these labels; empty means any task.
    pub labels: Vec<String>,
    /// Create the file (and its directory) when it does not exist. When false, a missing file is
    /// a configuration error telling the user to add a task first. Default: true.
    pub create: bool,
    /// How long a write waits for another process's write lock before failing with a retryable
    /// error. Default: 5 s.
    pub busy_timeout: Duration,
}

impl SqliteOptions {
    pub const DEFAULT_PATH: &'static str = ".bg-run/bg-run.db";
    pub const DEFAULT_QUEUE: &'static str = "default";

    /// Default options for the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions { path: path.into(), ..Default::default() }
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    pub fn labels<I, S>(mut self, labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.labels = labels.into_iter().map(Into::into).collect();
        self
    }

    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            path: PathBuf::from(Self::DEFAULT_PATH),
            queue: Self::DEFAULT_QUEUE.to_owned(),
            labels: Vec::new(),
            create: true,
            busy_timeout: Duration::from_secs(5),
        }
    }
}
