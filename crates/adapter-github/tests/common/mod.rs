//! Shared setup for the GitHub adapter's tests: a fake GitHub, options pointing at it, and the
//! conformance harness.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bg_run_core::{
    async_trait, DispatchContext, Dispatcher, FailureKind, Outcome, RunMode, Task, TaskId, TaskQueue, WorkerConfig,
};
use bg_run_github::{GithubOptions, GithubQueue, RepoRef};
use bg_run_testkit::conformance::{Fault, Harness, Observed, ObservedState};
use bg_run_testkit::fake_github::{FakeFault, FakeGithub, IssueSpec, IssueView};

pub const TRIGGER: &str = "agent";

pub fn options(fake: &FakeGithub) -> GithubOptions {
    let mut options = GithubOptions::new(RepoRef::new(fake.owner(), fake.repo()).unwrap(), fake.token());
    options.api_url = fake.api_url();
    options.min_write_interval = Duration::from_millis(2);
    // Long enough that a busy test run never sees its own claims go stale.
    options.stale_after = Duration::from_secs(60);
    options.max_rate_limit_wait = Duration::from_secs(30);
    options
}

pub async fn connect(options: GithubOptions) -> Arc<GithubQueue> {
    Arc::new(GithubQueue::connect(options).await.expect("connect to the fake GitHub"))
}

pub fn open(fake: &FakeGithub, title: &str) -> u64 {
    fake.open_issue(IssueSpec::new(title).body("do it").label(TRIGGER))
}

/// `(state, attempt)` of the bot's markers on an issue, oldest first, read as text.
pub fn markers(issue: &IssueView, bot: &str) -> Vec<(String, u32)> {
    issue
        .comments
        .iter()
        .filter(|c| c.author == bot)
        .filter_map(|c| {
            let start = c.body.rfind("<!-- bg-run:v1 ")?;
            let inner = &c.body[start..];
            let field = |key: &str| {
                inner.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
            };
            Some((field("state")?, field("attempt")?.parse().ok()?))
        })
        .collect()
}

/// Attempts the tracker shows: the latest lifecycle marker's count.
pub fn attempts(issue: &IssueView, bot: &str) -> u32 {
    markers(issue, bot)
        .into_iter()
        .rfind(|(state, _)| state != "superseded" && state != "untrusted")
        .map(|(_, n)| n)
        .unwrap_or(0)
}

pub struct GithubHarness {
    pub fake: Arc<FakeGithub>,
    pub queue: Arc<GithubQueue>,
    pub options: GithubOptions,
}

pub async fn harness() -> GithubHarness {
    let fake = Arc::new(FakeGithub::start().await);
    let mut options = options(&fake);
    options.stale_after = Duration::from_millis(500);
    let queue = connect(options.clone()).await;
    GithubHarness { fake, queue, options }
}

#[async_trait]
impl Harness for GithubHarness {
    fn queue(&self) -> Arc<dyn TaskQueue> {
        self.queue.clone()
    }

    async fn reopen(&self) -> Arc<dyn TaskQueue> {
        connect(self.options.clone()).await
    }

    async fn add_task(&self, title: &str, body: &str) -> TaskId {
        // Opened directly in the fake: the conformance case with a 200 KB body goes past GitHub's
        // 65,536-character limit, which the fake enforces only on its API.
        let n = self.fake.open_issue(IssueSpec::new(title).body(body).label(TRIGGER));
        TaskId::new(n.to_string())
    }

    async fn observe(&self, id: &TaskId) -> Observed {
        let issue = self.fake.issue(id.as_str().parse().unwrap()).expect("issue exists");
        let labels = &self.options.labels;
        let state = if issue.has_label(&labels.failed) {
            ObservedState::Failed
        } else if issue.has_label(&labels.done) {
            ObservedState::Done
        } else if issue.has_label(&labels.working) {
            ObservedState::Working
        } else {
            ObservedState::Pending
        };
        Observed {
            state,
            attempts: attempts(&issue, self.fake.bot_login()),
            title: issue.title.clone(),
            body: issue.body.clone().unwrap_or_default(),
            messages: issue.comments.iter().map(|c| c.body.clone()).collect(),
            open: issue.open,
        }
    }

    fn lease(&self) -> Duration {
        self.options.stale_after
    }

    async fn inject(&self, fault: Fault) -> bool {
        self.fake.inject(match fault {
            Fault::ServerError { count } => FakeFault::ServerError { status: 502, count },
            Fault::RateLimited { retry_after_secs } => FakeFault::SecondaryRateLimit { retry_after_secs, status: 429 },
        });
        true
    }
}

/// An in-process agent that records every task it is handed and succeeds at once.
#[derive(Default)]
pub struct Recorder {
    pub seen: Mutex<HashMap<String, u32>>,
    pub bodies: Mutex<HashMap<String, String>>,
}

impl Recorder {
    pub fn count(&self, id: u64) -> u32 {
        self.seen.lock().unwrap().get(&id.to_string()).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u32 {
        self.seen.lock().unwrap().values().sum()
    }
}

#[async_trait]
impl Dispatcher for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn dispatch(&self, task: &Task, _ctx: DispatchContext) -> Outcome {
        *self.seen.lock().unwrap().entry(task.id.to_string()).or_default() += 1;
        self.bodies.lock().unwrap().insert(task.id.to_string(), task.body.clone());
        if task.title.starts_with("doomed") {
            return Outcome::failure(FailureKind::Transient, "doomed to fail");
        }
        Outcome::success(format!("handled {}", task.title))
    }
}

pub fn worker_config(concurrency: usize) -> WorkerConfig {
    let mut config = WorkerConfig::new("tester");
    config.mode = RunMode::Once;
    config.concurrency = concurrency;
    config.max_attempts = 2;
    config.backoff_base = Duration::ZERO;
    config.backoff_max = Duration::from_millis(10);
    config.lease = Duration::from_millis(500);
    config.poll_interval = Duration::from_millis(50);
    config.workdir = std::env::temp_dir();
    config
}
