//! The worker engine's policy, observed through an in-memory queue that records every call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bg_run_core::{
    async_trait, Author, CancellationToken, Capabilities, Claim, ClaimOutcome, Claimant, DispatchContext, Dispatcher,
    Error, Failure, FailureKind, Outcome, Report, Result, RetryDecision, RunMode, Task, TaskQueue, Usage, Worker,
    WorkerConfig,
};

#[derive(Clone, Debug, PartialEq)]
enum Call {
    Complete(String),
    Fail { id: String, kind: FailureKind, give_up: bool, reason: String },
    Release(String),
}

#[derive(Default)]
struct MemoryQueue {
    open: Mutex<BTreeMap<String, Task>>,
    calls: Mutex<Vec<Call>>,
    /// Number of claim_batch calls that fail before the queue recovers.
    failing_claims: AtomicUsize,
    /// Every claim_batch call: how many tasks it asked for and how many it got.
    claim_batches: Mutex<Vec<(usize, usize)>>,
}

impl MemoryQueue {
    fn with(tasks: Vec<Task>) -> Arc<Self> {
        let queue = MemoryQueue::default();
        for task in tasks {
            queue.open.lock().unwrap().insert(task.id.to_string(), task);
        }
        Arc::new(queue)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl TaskQueue for MemoryQueue {
    fn name(&self) -> &str {
        "memory"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::none().with_atomic_claim()
    }
    async fn poll(&self, max: usize) -> Result<Vec<Task>> {
        Ok(self.open.lock().unwrap().values().take(max).cloned().collect())
    }
    async fn claim_batch(&self, max: usize, claimant: &Claimant) -> Result<Vec<Claim>> {
        let mut claims = Vec::new();
        for task in self.poll(max).await? {
            if let ClaimOutcome::Claimed(claim) = self.claim(&task, claimant).await? {
                claims.push(*claim);
            }
        }
        self.claim_batches.lock().unwrap().push((max, claims.len()));
        Ok(claims)
    }
    async fn claim(&self, task: &Task, claimant: &Claimant) -> Result<ClaimOutcome> {
        if self.failing_claims.load(Ordering::SeqCst) > 0 {
            self.failing_claims.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::backend("memory", "connection reset", true));
        }
        let Some(mut task) = self.open.lock().unwrap().remove(task.id.as_str()) else {
            return Ok(ClaimOutcome::Taken);
        };
        task.attempts += 1;
        Ok(ClaimOutcome::Claimed(Box::new(Claim {
            attempt: task.attempts,
            task,
            claimant: claimant.clone(),
            token: String::new(),
            lease_until: None,
        })))
    }
    async fn heartbeat(&self, _claim: &Claim) -> Result<()> {
        Ok(())
    }
    async fn complete(&self, claim: &Claim, _report: &Report) -> Result<()> {
        self.calls.lock().unwrap().push(Call::Complete(claim.task.id.to_string()));
        Ok(())
    }
    async fn fail(&self, claim: &Claim, failure: &Failure) -> Result<()> {
        self.calls.lock().unwrap().push(Call::Fail {
            id: claim.task.id.to_string(),
            kind: failure.kind,
            give_up: failure.gives_up(),
            reason: failure.reason.clone(),
        });
        if let RetryDecision::RetryAt(_) = failure.decision {
            let mut task = claim.task.clone();
            task.attempts = claim.attempt;
            self.open.lock().unwrap().insert(task.id.to_string(), task);
        }
        Ok(())
    }
    async fn release(&self, claim: &Claim) -> Result<()> {
        self.calls.lock().unwrap().push(Call::Release(claim.task.id.to_string()));
        Ok(())
    }
}

/// Runs a closure as the agent and counts dispatches.
struct FnAgent<F> {
    f: F,
    dispatched: AtomicUsize,
}

#[async_trait]
impl<F> Dispatcher for FnAgent<F>
where
    F: Fn(&Task, &DispatchContext) -> Outcome + Send + Sync,
{
    fn name(&self) -> &str {
        "fn"
    }
    async fn dispatch(&self, task: &Task, ctx: DispatchContext) -> Outcome {
        self.dispatched.fetch_add(1, Ordering::SeqCst);
        (self.f)(task, &ctx)
    }
}

fn agent<F: Fn(&Task, &DispatchContext) -> Outcome + Send + Sync>(f: F) -> Arc<FnAgent<F>> {
    Arc::new(FnAgent { f, dispatched: AtomicUsize::new(0) })
}

fn config(mode: RunMode) -> WorkerConfig {
    let mut config = WorkerConfig::new("test");
    config.mode = mode;
    config.concurrency = 4;
    config.backoff_base = Duration::ZERO;
    config.poll_interval = Duration::from_millis(20);
    config
}

fn tasks(n: usize) -> Vec<Task> {
    (0..n).map(|i| Task::new(format!("t{i}"), format!("task {i}"))).collect()
}

#[tokio::test]
async fn once_mode_completes_every_eligible_task() {
    let queue = MemoryQueue::with(tasks(25));
    let agent = agent(|t, _| Outcome::success(format!("did {}", t.title)));
    let summary = Worker::new(queue.clone(), agent.clone(), config(RunMode::Once)).run(CancellationToken::new()).await;
    let summary = summary.unwrap();
    assert_eq!(summary.completed, 25);
    assert!(summary.all_succeeded());
    assert_eq!(queue.calls().iter().filter(|c| matches!(c, Call::Complete(_))).count(), 25);
}

#[tokio::test]
async fn a_woken_worker_claims_one_task_first_then_fills_its_slots() {
    let queue = MemoryQueue::with(Vec::new());
    let agent = agent(|_, _| Outcome::success("ok"));
    let shutdown = CancellationToken::new();
    let worker = Worker::new(queue.clone(), agent.clone(), config(RunMode::Watch));
    let run = tokio::spawn(worker.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    queue.open.lock().unwrap().extend(tasks(3).into_iter().map(|t| (t.id.to_string(), t)));
    while queue.calls().len() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.cancel();
    assert_eq!(run.await.unwrap().unwrap().completed, 3);
    let batches = queue.claim_batches.lock().unwrap().clone();
    let first_hit = batches.iter().position(|&(_, got)| got > 0).expect("a claim found the tasks");
    assert_eq!(batches[first_hit], (1, 1), "the claim after the wake-up asks for one task: {batches:?}");
    assert_eq!(batches[first_hit + 1], (3, 2), "the next one asks for the free slots: {batches:?}");
}

#[tokio::test]
async fn transient_failures_are_retried_until_max_attempts_then_given_up() {
    let queue = MemoryQueue::with(tasks(1));
    let agent = agent(|_, _| Outcome::failure(FailureKind::Transient, "agent exited with code 1"));
    let mut config = config(RunMode::Once);
    config.max_attempts = 3;
    let summary = Worker::new(queue.clone(), agent.clone(), config).run(CancellationToken::new()).await.unwrap();
    assert_eq!(agent.dispatched.load(Ordering::SeqCst), 3);
    assert_eq!(summary.gave_up, 1);
    assert!(!summary.all_succeeded());
    let gives_up: Vec<bool> = queue
        .calls()
        .iter()
        .filter_map(|c| if let Call::Fail { give_up, .. } = c { Some(*give_up) } else { None })
        .collect();
    assert_eq!(gives_up, vec![false, false, true]);
}

#[tokio::test]
async fn permanent_failures_give_up_at_once() {
    let queue = MemoryQueue::with(tasks(1));
    let agent = agent(|_, _| Outcome::failure(FailureKind::Permanent, "agent command 'nope' not found"));
    let summary = Worker::new(queue.clone(), agent.clone(), config(RunMode::Once)).run(CancellationToken::new()).await;
    assert_eq!(summary.unwrap().gave_up, 1);
    assert_eq!(agent.dispatched.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn untrusted_authors_are_never_dispatched() {
    let mut task = Task::new("x", "do something");
    task.author = Some(Author { login: "stranger".into(), trusted: false });
    let queue = MemoryQueue::with(vec![task]);
    let agent = agent(|_, _| Outcome::success("should not run"));
    Worker::new(queue.clone(), agent.clone(), config(RunMode::Once)).run(CancellationToken::new()).await.unwrap();
    assert_eq!(agent.dispatched.load(Ordering::SeqCst), 0);
    match &queue.calls()[..] {
        [Call::Fail { give_up: true, reason, .. }] => assert!(reason.contains("stranger"), "{reason}"),
        other => panic!("expected one give-up, got {other:?}"),
    }
}

#[tokio::test]
async fn a_claim_past_max_attempts_is_given_up_without_running() {
    // The previous worker died during the last allowed attempt; its lease expired.
    let mut task = Task::new("x", "t");
    task.attempts = 3;
    let queue = MemoryQueue::with(vec![task]);
    let agent = agent(|_, _| Outcome::success("no"));
    let mut config = config(RunMode::Once);
    config.max_attempts = 3;
    Worker::new(queue.clone(), agent.clone(), config).run(CancellationToken::new()).await.unwrap();
    assert_eq!(agent.dispatched.load(Ordering::SeqCst), 0);
    assert!(matches!(&queue.calls()[..], [Call::Fail { give_up: true, .. }]));
}

#[tokio::test]
async fn queue_errors_are_retried_not_fatal() {
    let queue = MemoryQueue::with(tasks(2));
    queue.failing_claims.store(2, Ordering::SeqCst);
    let agent = agent(|_, _| Outcome::success("ok"));
    let worker = Worker::new(queue.clone(), agent.clone(), config(RunMode::Once));
    let mut events = worker.events().subscribe();
    let summary = worker.run(CancellationToken::new()).await.unwrap();
    assert_eq!(summary.completed, 2);
    let mut saw_queue_error = false;
    while let Ok(event) = events.try_recv() {
        saw_queue_error |= matches!(event.kind, bg_run_core::EventKind::QueueError { .. });
    }
    assert!(saw_queue_error, "a failed claim should be reported as a QueueError event");
}

/// An agent that runs until cancelled (or until `finish_after`), like a long CLI run.
struct SlowAgent {
    finish_after: Duration,
}

#[async_trait]
impl Dispatcher for SlowAgent {
    fn name(&self) -> &str {
        "slow"
    }
    async fn dispatch(&self, _task: &Task, ctx: DispatchContext) -> Outcome {
        tokio::select! {
            _ = tokio::time::sleep(self.finish_after) => Outcome::success("finished"),
            _ = ctx.cancel.cancelled() => Outcome::failure(FailureKind::Cancelled, "stopped"),
        }
    }
}

#[tokio::test]
async fn shutdown_lets_short_tasks_finish_within_the_grace_period() {
    let queue = MemoryQueue::with(tasks(1));
    let mut config = config(RunMode::Watch);
    config.shutdown_grace = Duration::from_secs(5);
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(
        Worker::new(queue.clone(), Arc::new(SlowAgent { finish_after: Duration::from_millis(300) }), config)
            .run(shutdown.clone()),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.cancel();
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary.completed, 1);
    assert_eq!(queue.calls(), vec![Call::Complete("t0".into())]);
}

#[tokio::test]
async fn shutdown_releases_tasks_still_running_after_the_grace_period() {
    let queue = MemoryQueue::with(tasks(2));
    let mut config = config(RunMode::Watch);
    config.shutdown_grace = Duration::from_millis(200);
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(
        Worker::new(queue.clone(), Arc::new(SlowAgent { finish_after: Duration::from_secs(600) }), config)
            .run(shutdown.clone()),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(10), run).await.expect("worker stops").unwrap().unwrap();
    assert_eq!(summary.released, 2);
    let mut calls = queue.calls();
    calls.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(calls, vec![Call::Release("t0".into()), Call::Release("t1".into())]);
}

#[tokio::test]
async fn a_spent_daily_budget_stops_claiming() {
    let queue = MemoryQueue::with(tasks(5));
    let agent = agent(|_, _| {
        let mut outcome = Outcome::success("ok");
        outcome.usage = Usage { cost_usd: Some(0.6), ..Default::default() };
        outcome
    });
    let mut config = config(RunMode::Once);
    config.concurrency = 1;
    config.daily_budget_usd = Some(1.0);
    let summary = Worker::new(queue.clone(), agent.clone(), config).run(CancellationToken::new()).await.unwrap();
    // 0.6 + 0.6 crosses $1.00; the third task must not be claimed.
    assert_eq!(summary.completed, 2);
    assert_eq!(queue.open.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn invalid_config_is_rejected_before_anything_is_claimed() {
    let queue = MemoryQueue::with(tasks(1));
    let mut config = config(RunMode::Once);
    config.concurrency = 0;
    let error = Worker::new(queue.clone(), agent(|_, _| Outcome::success("")), config)
        .run(CancellationToken::new())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("concurrency"), "{error}");
    assert_eq!(queue.open.lock().unwrap().len(), 1);
}
