//! The conformance suite: behaviour every queue adapter must show, written against
//! `&dyn TaskQueue` plus a small [`Harness`] that adds tasks and observes them as a human would.
//!
//! An adapter runs the whole suite with one macro call in its tests:
//!
//! ```ignore
//! bg_run_testkit::conformance_tests!(my_adapter_harness());
//! ```
//! where the expression is an `async` block or future that yields a fresh `impl Harness` (its own
//! file, schema or fake server), so every case runs isolated and in parallel. The macro expands to
//! one `#[tokio::test]` per case, so the calling crate needs `tokio` (with the `macros` and
//! `rt-multi-thread` features) among its dev-dependencies. Each case is also a public function
//! taking `&dyn Harness`, for adapters that want to run a case by hand.
//!
//! Cases assert what a human would see in the tracker ([`Harness::observe`]) and what `poll` and
//! `claim` answer. Behaviour that only some queues have (atomic claims, leases, wake-ups, fault
//! injection) is checked where `capabilities()` or [`Harness::inject`] says it exists; elsewhere the
//! case checks the weaker promise that still holds and says so on stderr.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bg_run_core::{
    CancellationToken, Claim, ClaimOutcome, Claimant, DispatchContext, Dispatcher, Error, Failure, FailureKind,
    Outcome, Report, RetryDecision, RunMode, RunSummary, Task, TaskId, TaskQueue, Usage, Worker, WorkerConfig,
};
use chrono::Utc;

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

/// More than any one case adds, so one poll sees every task of the case.
const POLL_MAX: usize = 100;

/// A claimant for the cases; `worker` tells competing claimants apart.
fn claimant(h: &dyn Harness, worker: &str) -> Claimant {
    Claimant {
        worker_id: format!("conformance-{worker}"),
        agent: "conformance".to_owned(),
        lease: h.lease(),
        max_attempts: 3,
    }
}

fn must<T>(result: bg_run_core::Result<T>, doing: &str) -> T {
    result.unwrap_or_else(|e| panic!("{doing} failed: {e}"))
}

async fn polled(queue: &dyn TaskQueue, id: &TaskId) -> Option<Task> {
    must(queue.poll(POLL_MAX).await, "poll").into_iter().find(|t| &t.id == id)
}

/// Polls until the task shows up (a tracker may reflect a change a moment late) or `within` passes.
async fn eventually_polled(queue: &dyn TaskQueue, id: &TaskId, within: Duration) -> Option<Task> {
    let until = Instant::now() + within;
    loop {
        if let Some(task) = polled(queue, id).await {
            return Some(task);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn claim_polled(queue: &dyn TaskQueue, id: &TaskId, claimant: &Claimant) -> Claim {
    let task =
        polled(queue, id).await.unwrap_or_else(|| panic!("task {id} should be eligible but poll did not return it"));
    match must(queue.claim(&task, claimant).await, "claim") {
        ClaimOutcome::Claimed(claim) => *claim,
        ClaimOutcome::Taken => panic!("task {id} should be eligible but claim answered Taken"),
    }
}

/// Long enough past the lease that a claim without heartbeats is stale.
fn past_lease(h: &dyn Harness) -> Duration {
    h.lease() + h.lease() / 5 + Duration::from_millis(50)
}

/// How long a tracker may take to show a stale task as eligible again after its lease.
fn stale_grace(h: &dyn Harness) -> Duration {
    h.lease() * 2 + Duration::from_secs(2)
}

/// A successful attempt's report (the store suite's too).
pub(crate) fn report(summary: &str) -> Report {
    Report {
        summary: summary.to_owned(),
        duration: Duration::from_millis(1500),
        usage: Usage {
            cost_usd: Some(0.25),
            turns: Some(4),
            session_id: Some("conformance-session".to_owned()),
            ..Usage::default()
        },
        exit_code: Some(0),
    }
}

/// A failed attempt (the store suite's too).
pub(crate) fn failure(reason: &str, decision: RetryDecision) -> Failure {
    Failure {
        kind: FailureKind::Transient,
        reason: reason.to_owned(),
        exit_code: Some(1),
        stderr_tail: String::new(),
        duration: Duration::from_millis(700),
        usage: Usage::default(),
        decision,
    }
}

fn mentions(seen: &Observed, text: &str) -> bool {
    seen.messages.iter().any(|m| m.contains(text))
}

fn is_conflict<T: std::fmt::Debug>(result: &bg_run_core::Result<T>) -> bool {
    matches!(result, Err(Error::Conflict { .. }))
}

/// Calls `op` until it succeeds, tolerating only retryable errors, as a worker would.
async fn through_faults<T, F, Fut>(doing: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bg_run_core::Result<T>>,
{
    let mut errors = 0u32;
    loop {
        match op().await {
            Ok(value) => return value,
            Err(e) if e.is_retryable() && errors < 40 => {
                errors += 1;
                let wait = e.retry_after().unwrap_or(Duration::from_millis(100)).min(Duration::from_secs(3));
                tokio::time::sleep(wait).await;
            }
            Err(e) => panic!("{doing}: {e} (retryable: {}; after {errors} retryable errors)", e.is_retryable()),
        }
    }
}

/// 1. A fresh task is eligible, and claiming it shows "working" with one attempt counted.
pub async fn fresh_task_is_polled_and_claimable(h: &dyn Harness) {
    let id = h.add_task("Fix the flaky login test", "It fails one run in ten on CI.").await;
    let seen = h.observe(&id).await;
    assert_eq!(seen.state, ObservedState::Pending, "a new task shows as pending");
    assert_eq!(seen.attempts, 0, "a new task has no attempts");
    assert!(seen.open);

    let queue = h.queue();
    let task = polled(&*queue, &id).await.unwrap_or_else(|| panic!("a new task {id} is not polled"));
    assert_eq!(task.title, "Fix the flaky login test");
    assert_eq!(task.body, "It fails one run in ten on CI.");
    assert_eq!(task.attempts, 0);

    let claim = match must(queue.claim(&task, &claimant(h, "a")).await, "claim") {
        ClaimOutcome::Claimed(claim) => *claim,
        ClaimOutcome::Taken => panic!("an unclaimed task answered Taken"),
    };
    assert_eq!(claim.task.id, id);
    assert_eq!(claim.attempt, 1, "the first claim is attempt 1");
    let seen = h.observe(&id).await;
    assert_eq!(seen.state, ObservedState::Working, "a claimed task shows as working");
    assert_eq!(seen.attempts, 1);
    assert!(polled(&*queue, &id).await.is_none(), "a claimed task is not polled while its claim holds");
}

/// 2. Two workers racing for the same tasks never both win one (on atomic-claim queues).
pub async fn claim_is_exclusive(h: &dyn Harness) {
    let (a, b) = (h.queue(), h.reopen().await);
    let atomic = a.capabilities().atomic_claim;
    if !atomic {
        eprintln!("{}: claims are not atomic; checking only that a race loses no task", a.name());
    }
    let (ca, cb) = (claimant(h, "a"), claimant(h, "b"));
    for round in 0..5 {
        let id = h.add_task(&format!("race {round}"), "two workers want this").await;
        let task = polled(&*a, &id).await.unwrap_or_else(|| panic!("task {id} is not polled"));
        let (ra, rb) = tokio::join!(a.claim(&task, &ca), b.claim(&task, &cb));
        let wins = [must(ra, "claim through queue()"), must(rb, "claim through reopen()")]
            .iter()
            .filter(|o| matches!(o, ClaimOutcome::Claimed(_)))
            .count();
        if atomic {
            assert_eq!(wins, 1, "round {round}: exactly one of two racing claims wins");
            assert_eq!(h.observe(&id).await.attempts, 1, "round {round}: the lost race counts no attempt");
        } else {
            assert!(wins >= 1, "round {round}: a race must not lose the task");
        }
        assert_eq!(h.observe(&id).await.state, ObservedState::Working);
    }

    let mut batch = HashSet::new();
    for n in 0..20 {
        batch.insert(h.add_task(&format!("batch {n}"), "").await);
    }
    let (ra, rb) = tokio::join!(a.claim_batch(POLL_MAX, &ca), b.claim_batch(POLL_MAX, &cb));
    let mut claimed: Vec<TaskId> = must(ra, "claim_batch through queue()").into_iter().map(|c| c.task.id).collect();
    claimed.extend(must(rb, "claim_batch through reopen()").into_iter().map(|c| c.task.id));
    for id in &batch {
        let times = claimed.iter().filter(|c| *c == id).count();
        if atomic {
            assert_eq!(times, 1, "task {id} was claimed {times} times by two racing batch claims");
        } else {
            assert!(times >= 1, "task {id} was lost by two racing batch claims");
        }
    }
    if atomic {
        let distinct: HashSet<&TaskId> = claimed.iter().collect();
        assert_eq!(distinct.len(), claimed.len(), "racing batch claims handed out a task twice: {claimed:?}");
    }
}

/// 3. Completing shows the task done (and still open) with the summary, and it is never polled again.
pub async fn complete_marks_done_and_never_polls_again(h: &dyn Harness) {
    let id = h.add_task("Write the release notes", "for 1.4").await;
    let queue = h.queue();
    let claim = claim_polled(&*queue, &id, &claimant(h, "a")).await;
    let summary = "Release notes written: 12 fixes, 3 features.";
    must(queue.complete(&claim, &report(summary)).await, "complete");

    let seen = h.observe(&id).await;
    assert_eq!(seen.state, ObservedState::Done, "a completed task shows as done");
    assert!(seen.open, "the worker never closes a task; a human reviews it");
    assert_eq!(seen.attempts, 1);
    assert!(mentions(&seen, summary), "the summary is shown with the task: {:?}", seen.messages);

    assert!(polled(&*queue, &id).await.is_none(), "a done task is never polled again");
    let other = h.reopen().await;
    assert!(polled(&*other, &id).await.is_none(), "a done task is not polled by another worker either");
    let again = must(other.claim(&claim.task, &claimant(h, "b")).await, "claim of a done task");
    assert_eq!(again, ClaimOutcome::Taken, "a done task cannot be claimed again");
    assert_eq!(h.observe(&id).await.state, ObservedState::Done);
}

/// 4a. A failure retried now leaves the task pending and eligible, with the attempt counted.
pub async fn failure_with_retry_now_is_polled_again(h: &dyn Harness) {
    let id = h.add_task("Bump the dependencies", "").await;
    let queue = h.queue();
    let c = claimant(h, "a");
    let claim = claim_polled(&*queue, &id, &c).await;
    let reason = "cargo update failed: network unreachable";
    must(queue.fail(&claim, &failure(reason, RetryDecision::RetryAt(Utc::now()))).await, "fail");

    let seen = h.observe(&id).await;
    assert_eq!(seen.state, ObservedState::Pending, "a failure that will be retried shows as pending");
    assert_eq!(seen.attempts, 1, "the failed attempt counts");
    assert!(seen.open);
    assert!(mentions(&seen, reason), "the failure reason is shown: {:?}", seen.messages);

    let task = eventually_polled(&*queue, &id, Duration::from_secs(2))
        .await
        .unwrap_or_else(|| panic!("task {id} is due for a retry but is not polled"));
    assert_eq!(task.attempts, 1, "poll shows the counted attempt");
    let second = claim_polled(&*queue, &id, &c).await;
    assert_eq!(second.attempt, 2, "the retry is attempt 2");
    let seen = h.observe(&id).await;
    assert_eq!(seen.state, ObservedState::Working);
    assert_eq!(seen.attempts, 2);
}

/// 4b. A failure retried later is not polled before its time.
pub async fn failure_with_retry_later_is_not_polled(h: &dyn Harness) {
    let id = h.add_task("Rebuild the docs", "").await;
    let queue = h.queue();
    let claim = claim_polled(&*queue, &id, &claimant(h, "a")).await;
    let later = Utc::now() + chrono::Duration::hours(1);
    must(queue.fail(&claim, &failure("docs build timed out", RetryDecision::RetryAt(later))).await, "fail");

    let seen = h.observe(&id).await;
    assert_eq!(seen.state, ObservedState::Pending);
    assert_eq!(seen.attempts, 1);
    assert!(polled(&*queue, &id).await.is_none(), "a task in retry backoff is not polled");
    let other = h.reopen().await;
    assert!(polled(&*other, &id).await.is_none(), "the backoff survives a restart");
    let stolen = must(other.claim(&claim.task, &claimant(h, "b")).await, "claim during backoff");
    assert_eq!(stolen, ClaimOutcome::Taken, "a task in retry backoff cannot be claimed");
}

/// 4c. Giving up shows the task failed (and still open) with the reason, and it is never polled again.
pub async fn give_up_is_final(h: &dyn Harness) {
    let id = h.add_task("Migrate the billing tables", "").await;
    let queue = h.queue();
    let claim = claim_polled(&*queue, &id, &claimant(h, "a")).await;
    let reason = "the migration needs credentials the agent does not have";
    let mut gave_up = failure(reason, RetryDecision::GiveUp);
    gave_up.kind = FailureKind::Permanent;
    must(queue.fail(&claim, &gave_up).await, "fail with GiveUp");

    let seen = h.observe(&id).await;
    assert_eq!(seen.state, ObservedState::Failed, "a given-up task shows as failed");
    assert!(seen.open, "the worker never closes a task");
    assert_eq!(seen.attempts, 1);
    assert!(mentions(&seen, reason), "the reason is shown: {:?}", seen.messages);
    assert!(polled(&*queue, &id).await.is_none(), "a failed task is never polled again");
    let other = h.reopen().await;
    assert!(polled(&*other, &id).await.is_none(), "a failed task is not polled after a restart either");
    let again = must(other.claim(&claim.task, &claimant(h, "b")).await, "claim of a failed task");
    assert_eq!(again, ClaimOutcome::Taken, "a failed task cannot be claimed again");
}

/// 5. Attempt counts live in the queue, not in the worker: a restarted worker continues them.
pub async fn restart_keeps_attempt_counts(h: &dyn Harness) {
    let id = h.add_task("Tidy the changelog", "").await;
    let first = h.queue();
    let claim = claim_polled(&*first, &id, &claimant(h, "before-restart")).await;
    must(first.fail(&claim, &failure("agent crashed", RetryDecision::RetryAt(Utc::now()))).await, "fail");

    let restarted = h.reopen().await;
    let task = eventually_polled(&*restarted, &id, Duration::from_secs(2))
        .await
        .unwrap_or_else(|| panic!("task {id} is due for a retry but the restarted worker does not poll it"));
    assert_eq!(task.attempts, 1, "the restarted worker sees the earlier attempt");
    let claim = claim_polled(&*restarted, &id, &claimant(h, "after-restart")).await;
    assert_eq!(claim.attempt, 2, "the restarted worker's claim is attempt 2");
    assert_eq!(h.observe(&id).await.attempts, 2);
}

/// 6. Releasing (shutdown) gives the task back without counting the attempt.
pub async fn release_does_not_count_the_attempt(h: &dyn Harness) {
    let id = h.add_task("Profile the importer", "").await;
    let queue = h.queue();
    let c = claimant(h, "a");
    let claim = claim_polled(&*queue, &id, &c).await;
    assert_eq!(claim.attempt, 1);
    must(queue.release(&claim).await, "release");

    let seen = h.observe(&id).await;
    assert_eq!(seen.state, ObservedState::Pending, "a released task shows as pending");
    assert_eq!(seen.attempts, 0, "a released attempt does not count");
    let again = claim_polled(&*queue, &id, &c).await;
    assert_eq!(again.attempt, 1, "the claim after a release is attempt 1 again");
    assert_eq!(h.observe(&id).await.state, ObservedState::Working);
}

/// 7a. A claim whose worker died (no heartbeat) comes back after the lease, its attempt counted.
pub async fn stale_claim_is_taken_back_and_counted(h: &dyn Harness) {
    let id = h.add_task("Resize the thumbnails", "").await;
    let queue = h.queue();
    let dead = claim_polled(&*queue, &id, &claimant(h, "dies")).await;
    assert_eq!(dead.attempt, 1);
    assert!(polled(&*queue, &id).await.is_none(), "a fresh claim is not stale");

    tokio::time::sleep(past_lease(h)).await;
    let other = h.reopen().await;
    let task = eventually_polled(&*other, &id, stale_grace(h))
        .await
        .unwrap_or_else(|| panic!("task {id} is still held by a dead worker after its lease"));
    let taken = match must(other.claim(&task, &claimant(h, "survivor")).await, "claim of a stale task") {
        ClaimOutcome::Claimed(claim) => *claim,
        ClaimOutcome::Taken => panic!("a stale claim could not be taken over"),
    };
    assert_eq!(taken.attempt, 2, "the dead worker's attempt counts");
    let seen = h.observe(&id).await;
    assert_eq!(seen.state, ObservedState::Working);
    assert_eq!(seen.attempts, 2);
}

/// 7b. Heartbeats keep a claim alive past its original lease.
pub async fn heartbeat_keeps_the_claim(h: &dyn Harness) {
    let id = h.add_task("Index the archive", "").await;
    let queue = h.queue();
    let claim = claim_polled(&*queue, &id, &claimant(h, "alive")).await;
    if !queue.capabilities().leases {
        eprintln!("{}: no leases; checking only that a heartbeat succeeds", queue.name());
        must(queue.heartbeat(&claim).await, "heartbeat");
        return;
    }
    // Four heartbeats a third of a lease apart outlast the original lease by a third.
    for _ in 0..4 {
        tokio::time::sleep(h.lease() / 3).await;
        must(queue.heartbeat(&claim).await, "heartbeat of a live claim");
    }
    let other = h.reopen().await;
    assert!(polled(&*other, &id).await.is_none(), "a heartbeated claim is not stale");
    let stolen = must(other.claim(&claim.task, &claimant(h, "thief")).await, "claim of a heartbeated task");
    assert_eq!(stolen, ClaimOutcome::Taken, "a heartbeated claim cannot be taken over");
    must(queue.complete(&claim, &report("indexed")).await, "complete after heartbeats");
    assert_eq!(h.observe(&id).await.state, ObservedState::Done);
}

/// 8. A worker whose expired claim was taken over can no longer report on it.
pub async fn taken_over_claim_conflicts(h: &dyn Harness) {
    let queue = h.queue();
    if !queue.capabilities().leases {
        eprintln!("{}: no leases, so no claim is ever taken over; nothing to check", queue.name());
        return;
    }
    let id = h.add_task("Rotate the logs", "").await;
    let slow = claim_polled(&*queue, &id, &claimant(h, "slow")).await;
    tokio::time::sleep(past_lease(h)).await;
    let other = h.reopen().await;
    let task = eventually_polled(&*other, &id, stale_grace(h))
        .await
        .unwrap_or_else(|| panic!("task {id} did not come back after its lease"));
    let fast = match must(other.claim(&task, &claimant(h, "fast")).await, "take-over claim") {
        ClaimOutcome::Claimed(claim) => *claim,
        ClaimOutcome::Taken => panic!("an expired claim could not be taken over"),
    };

    let heartbeat = queue.heartbeat(&slow).await;
    assert!(is_conflict(&heartbeat), "heartbeat of a taken-over claim: {heartbeat:?}");
    let complete = queue.complete(&slow, &report("the slow worker's late result")).await;
    assert!(is_conflict(&complete), "complete of a taken-over claim: {complete:?}");
    let fail = queue.fail(&slow, &failure("late failure", RetryDecision::GiveUp)).await;
    assert!(is_conflict(&fail), "fail of a taken-over claim: {fail:?}");
    let release = queue.release(&slow).await;
    assert!(is_conflict(&release), "release of a taken-over claim: {release:?}");

    let seen = h.observe(&id).await;
    assert_eq!(seen.state, ObservedState::Working, "the new owner still holds the task");
    assert_eq!(seen.attempts, 2);
    must(other.complete(&fast, &report("the new owner's result")).await, "complete by the new owner");
    let seen = h.observe(&id).await;
    assert_eq!(seen.state, ObservedState::Done);
    assert!(mentions(&seen, "the new owner's result"));
    assert!(!mentions(&seen, "the slow worker's late result"), "a lost claim's report was stored: {:?}", seen.messages);
}

/// 9. Titles and bodies come back byte for byte: any script, emoji, control characters, 200 KB.
pub async fn unicode_and_large_bodies_round_trip(h: &dyn Harness) {
    let title = "Fix ✨ login 🐛 — عربي עברית 中文 日本語 한국어 👩‍💻 é";
    let mut body = String::from(
        "Steps:\n\t1. run `make` — then $(rm -rf ~) and 'quotes' \"double\" \\ backslash\r\n\
         2. ANSI \u{1b}[31mred\u{1b}[0m, bell \u{7}, DEL \u{7f}, zero-width [\u{200b}], RTL mark \u{200f}\n\
         3. emoji 🧑🏽‍🚀🇺🇦, CJK 漢字, combining e\u{301}, astral 𝄞\n",
    );
    let line = "0123456789 Lorem ipsum dolor sit amet — ünïcödé ✓ 中文\n";
    while body.len() < 200 * 1024 {
        body.push_str(line);
    }
    let id = h.add_task(title, &body).await;
    let queue = h.queue();
    let task = polled(&*queue, &id).await.unwrap_or_else(|| panic!("task {id} is not polled"));
    assert_eq!(task.title, title, "the title changed on its way through the queue");
    assert!(
        task.body == body,
        "the {} byte body changed on its way through the queue (got {} bytes)",
        body.len(),
        task.body.len()
    );
    let claim = claim_polled(&*queue, &id, &claimant(h, "a")).await;
    assert!(claim.task.body == body, "the claimed task's body changed");
    let seen = h.observe(&id).await;
    assert_eq!(seen.title, title);
    assert!(seen.body == body, "the tracker shows a different body");
}

async fn fault_loses_nothing(h: &dyn Harness, fault: Fault) {
    let queue = h.queue();
    let id = h.add_task("Survive a flaky backend", "").await;
    if !h.inject(fault.clone()).await {
        eprintln!("{}: the harness cannot inject {fault:?}; nothing to check", queue.name());
        return;
    }
    let c = claimant(h, "faulty");
    let task = through_faults("poll", || queue.poll(POLL_MAX))
        .await
        .into_iter()
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("after {fault:?} task {id} is no longer polled"));
    let claim = match through_faults("claim", || queue.claim(&task, &c)).await {
        ClaimOutcome::Claimed(claim) => *claim,
        ClaimOutcome::Taken => panic!("after {fault:?} the task looks taken although nobody holds it"),
    };
    if queue.capabilities().atomic_claim {
        let other = h.reopen().await;
        let second = claimant(h, "second");
        let stolen = through_faults("second claim", || other.claim(&task, &second)).await;
        assert_eq!(stolen, ClaimOutcome::Taken, "after {fault:?} the task could be claimed twice");
    }

    assert!(h.inject(fault.clone()).await, "the harness injected {fault:?} once but not twice");
    let summary = "done despite the faults";
    let done = report(summary);
    through_faults("complete", || queue.complete(&claim, &done)).await;
    let seen = h.observe(&id).await;
    assert_eq!(seen.state, ObservedState::Done, "after {fault:?} the task is not done");
    assert_eq!(seen.attempts, claim.attempt, "a fault made the tracker count a different attempt");
    assert!(mentions(&seen, summary));
    assert!(polled(&*queue, &id).await.is_none());
}

/// 10a. Server errors (5xx, or a locked database) lose no task and never double-claim one.
pub async fn server_errors_lose_nothing(h: &dyn Harness) {
    fault_loses_nothing(h, Fault::ServerError { count: 2 }).await
}

/// 10b. Rate limiting (429 with retry-after) loses no task and never double-claims one.
pub async fn rate_limits_lose_nothing(h: &dyn Harness) {
    fault_loses_nothing(h, Fault::RateLimited { retry_after_secs: 1 }).await
}

/// Titles the in-process agent of the worker cases reacts to.
const FLAKY: &str = "flaky";
const FLAKY_REASON: &str = "first attempt fails on purpose";
const DOOMED: &str = "doomed";
const DOOMED_REASON: &str = "the agent exited with code 3: always fails";

/// An in-process agent: a `flaky` task fails its first attempt, a `doomed` one every attempt,
/// everything else succeeds at once.
struct ScriptedAgent;

#[async_trait]
impl Dispatcher for ScriptedAgent {
    fn name(&self) -> &str {
        "conformance"
    }

    async fn dispatch(&self, task: &Task, ctx: DispatchContext) -> Outcome {
        if task.title.starts_with(FLAKY) && ctx.attempt == 1 {
            Outcome::failure(FailureKind::Transient, FLAKY_REASON)
        } else if task.title.starts_with(DOOMED) {
            Outcome { exit_code: Some(3), ..Outcome::failure(FailureKind::Transient, DOOMED_REASON) }
        } else {
            Outcome::success(format!("finished: {}", task.title))
        }
    }
}

fn worker_config(h: &dyn Harness, mode: RunMode) -> WorkerConfig {
    let mut config = WorkerConfig::new("conformance");
    config.mode = mode;
    config.concurrency = 4;
    config.max_attempts = 2;
    // Zero backoff makes a retry due at once, so one `Once` run normally finishes everything.
    config.backoff_base = Duration::ZERO;
    config.backoff_max = Duration::from_millis(10);
    config.lease = h.lease().max(Duration::from_millis(100));
    config.poll_interval = Duration::from_millis(50);
    config.timeout = Duration::from_secs(60);
    config.shutdown_grace = Duration::from_millis(50);
    config.workdir = std::env::temp_dir();
    config
}

/// Runs `Once` workers until no task of `ids` is pending or working (a tracker may show a retry
/// as due a moment late, so one run may not see it).
async fn run_until_settled(h: &dyn Harness, ids: &[TaskId]) -> RunSummary {
    let mut total = RunSummary::default();
    for _ in 0..20 {
        let worker = Worker::new(h.queue(), Arc::new(ScriptedAgent), worker_config(h, RunMode::Once));
        total.merge(&must(worker.run(CancellationToken::new()).await, "worker run"));
        let mut settled = true;
        for id in ids {
            if matches!(h.observe(id).await.state, ObservedState::Pending | ObservedState::Working) {
                settled = false;
                break;
            }
        }
        if settled {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("tasks are still pending or working after 20 worker runs")
}

/// The real worker over this queue: 20 tasks, one failing its first attempt, all end done.
pub async fn worker_retries_then_completes_all(h: &dyn Harness) {
    let mut ids = Vec::new();
    for n in 0..20 {
        let title = if n == 7 { format!("{FLAKY} task {n}") } else { format!("task {n}") };
        ids.push(h.add_task(&title, "in-process agent").await);
    }
    let summary = run_until_settled(h, &ids).await;
    for (n, id) in ids.iter().enumerate() {
        let seen = h.observe(id).await;
        assert_eq!(seen.state, ObservedState::Done, "task {n} ({id}) is not done");
        assert!(seen.open);
        assert!(mentions(&seen, &format!("finished: {}", seen.title)), "task {n}: no summary in {:?}", seen.messages);
        if n == 7 {
            assert_eq!(seen.attempts, 2, "the flaky task took two attempts");
            assert!(mentions(&seen, FLAKY_REASON), "the first failure is shown: {:?}", seen.messages);
        } else {
            assert_eq!(seen.attempts, 1, "task {n} took one attempt");
        }
    }
    assert_eq!(summary.completed, 20);
    assert_eq!(summary.failed_attempts, 1);
    assert_eq!(summary.gave_up, 0);
}

/// The real worker over this queue: a task that always fails is given up after max_attempts.
pub async fn worker_gives_up_after_max_attempts(h: &dyn Harness) {
    let doomed = h.add_task(&format!("{DOOMED} task"), "never works").await;
    let fine = h.add_task("fine task", "works").await;
    let summary = run_until_settled(h, &[doomed.clone(), fine.clone()]).await;

    let seen = h.observe(&doomed).await;
    assert_eq!(seen.state, ObservedState::Failed, "an always-failing task ends failed");
    assert_eq!(seen.attempts, 2, "it was tried max_attempts (2) times");
    assert!(seen.open, "the worker never closes a task");
    assert!(mentions(&seen, DOOMED_REASON), "the reason is shown: {:?}", seen.messages);
    assert_eq!(h.observe(&fine).await.state, ObservedState::Done);
    assert!(polled(&*h.queue(), &doomed).await.is_none(), "a given-up task is not polled again");
    assert_eq!(summary.gave_up, 1);
    assert_eq!(summary.failed_attempts, 2);
    assert_eq!(summary.completed, 1);
}

/// An agent that runs until the worker stops it, reporting each start.
struct BlockingAgent {
    started: tokio::sync::mpsc::UnboundedSender<TaskId>,
}

#[async_trait]
impl Dispatcher for BlockingAgent {
    fn name(&self) -> &str {
        "blocking"
    }

    async fn dispatch(&self, task: &Task, ctx: DispatchContext) -> Outcome {
        let _ = self.started.send(task.id.clone());
        ctx.cancel.cancelled().await;
        Outcome::failure(FailureKind::Cancelled, "stopped by shutdown")
    }
}

/// Shutdown stops running agents after the grace period and gives their tasks back, uncounted.
pub async fn worker_shutdown_releases_running_tasks(h: &dyn Harness) {
    let ids = [h.add_task("long task 1", "").await, h.add_task("long task 2", "").await];
    let (started, mut starts) = tokio::sync::mpsc::unbounded_channel();
    let worker = Worker::new(h.queue(), Arc::new(BlockingAgent { started }), worker_config(h, RunMode::Watch));
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    let mut running = HashSet::new();
    while running.len() < ids.len() {
        match tokio::time::timeout(Duration::from_secs(30), starts.recv()).await {
            Ok(Some(id)) => running.insert(id),
            _ => panic!("the worker did not start both tasks (started: {running:?})"),
        };
    }
    for id in &ids {
        assert_eq!(h.observe(id).await.state, ObservedState::Working);
    }
    shutdown.cancel();
    let summary = match tokio::time::timeout(Duration::from_secs(30), run).await {
        Ok(Ok(result)) => must(result, "worker run"),
        other => panic!("the worker did not stop after shutdown: {other:?}"),
    };
    assert_eq!(summary.released, 2, "both running tasks were released: {summary:?}");
    let queue = h.queue();
    for id in &ids {
        let seen = h.observe(id).await;
        assert_eq!(seen.state, ObservedState::Pending, "task {id} is left {:?} after shutdown", seen.state);
        assert_eq!(seen.attempts, 0, "a released attempt does not count");
        assert!(polled(&*queue, id).await.is_some(), "a released task is eligible again");
    }
}

/// A waiting worker wakes when a task is added (queues with wake-ups only).
pub async fn wakeup_returns_when_work_arrives(h: &dyn Harness) {
    let queue = h.queue();
    if !queue.capabilities().wakeup {
        eprintln!("{}: no wake-ups, workers poll on a timer; nothing to check", queue.name());
        return;
    }
    let waiter = {
        let queue = Arc::clone(&queue);
        tokio::spawn(async move {
            let started = Instant::now();
            queue.wait_for_work(Duration::from_secs(60)).await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let id = h.add_task("wake up", "").await;
    let waited = match tokio::time::timeout(Duration::from_secs(30), waiter).await {
        Ok(Ok(waited)) => waited,
        other => panic!("wait_for_work did not return within 30 s of a task being added: {other:?}"),
    };
    assert!(waited < Duration::from_secs(30), "wait_for_work slept {waited:?} although a task arrived");
    assert!(polled(&*queue, &id).await.is_some());
}

/// Expands to one `#[tokio::test]` per conformance case, each on a fresh harness from `$make`
/// (an expression evaluating to a future that yields an `impl Harness`). The calling crate needs
/// `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases conformance ($make)
            fresh_task_is_polled_and_claimable,
            claim_is_exclusive,
            complete_marks_done_and_never_polls_again,
            failure_with_retry_now_is_polled_again,
            failure_with_retry_later_is_not_polled,
            give_up_is_final,
            restart_keeps_attempt_counts,
            release_does_not_count_the_attempt,
            stale_claim_is_taken_back_and_counted,
            heartbeat_keeps_the_claim,
            taken_over_claim_conflicts,
            unicode_and_large_bodies_round_trip,
            server_errors_lose_nothing,
            rate_limits_lose_nothing,
            worker_retries_then_completes_all,
            worker_gives_up_after_max_attempts,
            worker_shutdown_releases_running_tasks,
            wakeup_returns_when_work_arrives,
        );
    };
    // One test per case of `$module` (this suite, or the store suite's macro).
    (@cases $module:ident ($make:expr) $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $make.await;
                $crate::$module::$case(&harness).await;
            }
        )+
    };
}
