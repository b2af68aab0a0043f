//! The store conformance suite: the [`TaskStore`] contract every store bg-run owns must keep,
//! written against the public trait only, so switching stores never changes what a human sees.
//!
//! A store runs the whole suite with one macro call in its tests:
//!
//! ```ignore
//! bg_run_testkit::store_conformance_tests!(my_store_harness());
//! ```
//! where the expression is a future that yields a fresh `impl StoreHarness` (its own file or
//! schema). As with [`conformance_tests!`](crate::conformance_tests), each case becomes one
//! `#[tokio::test]` and is also a public function taking `&dyn StoreHarness`.
//!
//! The expected effect of `close`, `retry` and `cancel` on each status is spelled out here, not
//! taken from core's table, so the suite checks that table as well as the stores.

use std::sync::Arc;
use std::time::Duration;

use bg_run_core::{
    AttemptOutcome, Claim, ClaimOutcome, Claimant, Error, NewTask, RetryDecision, Status, TaskId, TaskRecord, TaskStore,
};
use chrono::Utc;

use crate::conformance::{failure, report};

/// Store-specific glue for the suite: a fresh, empty store.
pub trait StoreHarness: Send + Sync {
    /// The store under test, opened on one queue (its default unless the harness chose one).
    fn store(&self) -> Arc<dyn TaskStore>;
}

/// More than any one case adds, so one poll sees every task of the case.
const POLL_MAX: usize = 100;

/// The claimant of the cases. Its lease outlasts every case, so only a human's change can take
/// a claim away.
fn claimant(worker: &str) -> Claimant {
    Claimant {
        worker_id: worker.to_owned(),
        agent: "store-conformance".to_owned(),
        lease: Duration::from_secs(600),
        max_attempts: 3,
    }
}

const WORKER: &str = "store-worker";

fn must<T>(result: bg_run_core::Result<T>, doing: &str) -> T {
    result.unwrap_or_else(|e| panic!("{doing} failed: {e}"))
}

async fn add(store: &dyn TaskStore, task: NewTask) -> TaskId {
    must(store.enqueue(task).await, "enqueue")
}

async fn get(store: &dyn TaskStore, id: &TaskId) -> TaskRecord {
    must(store.get(id).await, &format!("get {id}"))
}

/// Claims exactly this task, as a worker that polled it would.
async fn claim(store: &dyn TaskStore, id: &TaskId) -> Claim {
    let polled = must(store.poll(POLL_MAX).await, "poll");
    let task = polled.into_iter().find(|t| &t.id == id).unwrap_or_else(|| panic!("task {id} is not eligible"));
    match must(store.claim(&task, &claimant(WORKER)).await, "claim") {
        ClaimOutcome::Claimed(claim) => *claim,
        ClaimOutcome::Taken => panic!("task {id} is eligible but claim answered Taken"),
    }
}

async fn eligible(store: &dyn TaskStore, id: &TaskId) -> bool {
    must(store.poll(POLL_MAX).await, "poll").iter().any(|t| &t.id == id)
}

/// A fresh task brought to `status` through the public trait; the claim is kept for `running`.
async fn task_in(store: &dyn TaskStore, status: Status) -> (TaskId, Option<Claim>) {
    let id = add(store, NewTask::new(format!("a task in {status}")).body("made by the store suite")).await;
    let mut held = None;
    match status {
        Status::Pending => {}
        Status::Running => held = Some(claim(store, &id).await),
        Status::Review => must(store.complete(&claim(store, &id).await, &report("reviewed")).await, "complete"),
        Status::Failed => {
            let failed = failure("gave up", RetryDecision::GiveUp);
            must(store.fail(&claim(store, &id).await, &failed).await, "fail");
        }
        Status::Closed => drop(must(store.close(&id).await, "close")),
        Status::Cancelled => drop(must(store.cancel(&id).await, "cancel")),
    }
    assert_eq!(get(store, &id).await.status, status, "setting up a task in {status}");
    (id, held)
}

/// The three changes a human makes, called through the trait; in [`CONTRACT`]'s column order.
#[derive(Clone, Copy, Debug)]
enum Op {
    Close,
    Retry,
    Cancel,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Close => "close",
            Op::Retry => "retry",
            Op::Cancel => "cancel",
        }
    }

    async fn apply(self, store: &dyn TaskStore, id: &TaskId) -> bg_run_core::Result<TaskRecord> {
        match self {
            Op::Close => store.close(id).await,
            Op::Retry => store.retry(id).await,
            Op::Cancel => store.cancel(id).await,
        }
    }
}

/// What the contract says a change does to a task in one status.
#[derive(Clone, Copy, Debug)]
enum Expect {
    To(Status),
    Unchanged,
    Conflict,
}

/// The contract, written out here rather than taken from core: for a task in each status, what
/// close, retry and cancel (in that order) do to it.
const CONTRACT: [(Status, [Expect; 3]); 6] = {
    use Expect::{Conflict, To, Unchanged};
    use Status::{Cancelled, Closed, Failed, Pending, Review, Running};
    [
        (Pending, [To(Closed), To(Pending), To(Cancelled)]),
        (Running, [To(Closed), Conflict, To(Cancelled)]),
        (Review, [To(Closed), To(Pending), Conflict]),
        (Failed, [To(Closed), To(Pending), Conflict]),
        (Closed, [Unchanged, To(Pending), Conflict]),
        (Cancelled, [To(Closed), To(Pending), Unchanged]),
    ]
};

/// Applies `op` to a fresh task in every status and checks the contract's answer for each.
async fn op_from_every_status(h: &dyn StoreHarness, op: Op) {
    let store = h.store();
    let store = &*store;
    for (status, expects) in CONTRACT {
        let expect = expects[op as usize];
        let (id, held) = task_in(store, status).await;
        let before = get(store, &id).await;
        let result = op.apply(store, &id).await;
        let after = get(store, &id).await;
        match expect {
            Expect::To(to) => {
                let answered = result.unwrap_or_else(|e| panic!("{op:?} of a task in {status}: {e}"));
                assert_eq!(answered.status, to, "{op:?} of a task in {status}");
                assert_eq!(answered, after, "{op:?} of a task in {status} answers the task as it is now");
                assert!(after.updated_at >= before.updated_at);
                assert_eq!(after.lease_until, None, "{op:?} of a task in {status} leaves no lease");
                assert!(
                    after.history.starts_with(&before.history),
                    "{op:?} of a task in {status} keeps its history: {:?} then {:?}",
                    before.history,
                    after.history
                );
                let running_attempt = usize::from(status == Status::Running);
                assert_eq!(after.history.len(), before.history.len() + running_attempt);
                assert_eq!(eligible(store, &id).await, to == Status::Pending, "{op:?} of a task in {status}");
            }
            Expect::Unchanged => {
                let answered = result.unwrap_or_else(|e| panic!("{op:?} of a task in {status}: {e}"));
                assert_eq!(answered, before, "{op:?} of a task in {status} is a no-op that answers the task");
                assert_eq!(after, before, "{op:?} of a task in {status} changes nothing");
            }
            Expect::Conflict => {
                match &result {
                    Err(Error::Conflict { message }) => assert!(
                        message.contains(&format!("task {id} is {status}")),
                        "{op:?} of a task in {status}: the conflict says the status: {message}"
                    ),
                    other => panic!("{op:?} of a task in {status} should conflict: {other:?}"),
                }
                assert_eq!(after, before, "a refused {op:?} of a task in {status} changes nothing");
            }
        }
        if let Some(claim) = held {
            let heartbeat = store.heartbeat(&claim).await;
            let kept = matches!(expect, Expect::Conflict);
            assert_eq!(heartbeat.is_ok(), kept, "heartbeat after {op:?} of a running task: {heartbeat:?}");
        }
    }
}

/// `enqueue_many` answers ids in input order; `list` shows the tasks oldest first.
pub async fn enqueue_many_keeps_input_order(h: &dyn StoreHarness) {
    let store = h.store();
    assert!(must(store.enqueue_many(Vec::new()).await, "enqueue_many of nothing").is_empty());
    let titles = ["first", "second", "third", "fourth"];
    let ids = must(
        store.enqueue_many(titles.iter().map(|t| NewTask::new(*t).body(format!("body of {t}"))).collect()).await,
        "enqueue_many",
    );
    assert_eq!(ids.len(), titles.len());
    for (id, title) in ids.iter().zip(titles) {
        let record = get(&*store, id).await;
        assert_eq!((record.title.as_str(), record.body.as_str()), (title, format!("body of {title}").as_str()));
        assert_eq!(record.task_id(), *id);
        assert_eq!((record.status, record.attempts), (Status::Pending, 0));
    }
    let listed: Vec<TaskId> = must(store.list(None).await, "list").iter().map(TaskRecord::task_id).collect();
    assert_eq!(listed, ids, "list shows the tasks oldest first");
}

/// A unique key already in the queue, or earlier in the same batch, answers the existing task's
/// id and adds nothing; keys are per queue.
pub async fn unique_keys_answer_the_existing_task(h: &dyn StoreHarness) {
    let store = h.store();
    let keyed = |title: &str, key: &str| NewTask { unique_key: Some(key.to_owned()), ..NewTask::new(title) };
    let first = add(&*store, keyed("nightly report", "report-2026-11-25")).await;
    let again = add(&*store, keyed("nightly report (again)", "report-2026-11-25")).await;
    assert_eq!(again, first, "the same key answers the existing task");

    let ids = must(
        store
            .enqueue_many(vec![
                keyed("new a", "a"),
                NewTask::new("no key"),
                keyed("existing", "report-2026-11-25"),
                keyed("new a twice", "a"),
                NewTask::new("no key either"),
            ])
            .await,
        "enqueue_many",
    );
    assert_eq!(ids.len(), 5, "one id per input task");
    assert_eq!(ids[2], first, "a key from an earlier call answers the existing id");
    assert_eq!(ids[3], ids[0], "a key repeated in one batch is added once");
    assert_ne!(ids[1], ids[4]);
    let titles: Vec<String> = must(store.list(None).await, "list").into_iter().map(|t| t.title).collect();
    assert_eq!(titles, ["nightly report", "new a", "no key", "no key either"], "each task is kept as first added");
    let record = get(&*store, &first).await;
    assert_eq!(record.unique_key.as_deref(), Some("report-2026-11-25"));

    let other = add(&*store, NewTask { queue: Some("elsewhere".to_owned()), ..keyed("x", "report-2026-11-25") }).await;
    assert_ne!(other, first, "keys are per queue");
    let record = get(&*store, &other).await;
    assert_eq!((record.queue.as_str(), record.unique_key.as_deref()), ("elsewhere", Some("report-2026-11-25")));
}

/// An invalid task refuses the whole batch with a `Config` error.
pub async fn an_invalid_task_adds_nothing_of_its_batch(h: &dyn StoreHarness) {
    let store = h.store();
    for invalid in [
        NewTask::new("  "),
        NewTask { max_attempts: Some(0), ..NewTask::new("no attempts") },
        NewTask { queue: Some(" ".into()), ..NewTask::new("blank queue") },
        NewTask::new("blank label").label(" "),
        NewTask { unique_key: Some(String::new()), ..NewTask::new("blank key") },
    ] {
        let title = invalid.title.clone();
        let result = store.enqueue_many(vec![NewTask::new("fine"), invalid]).await;
        assert!(matches!(result, Err(Error::Config(_))), "{title:?}: {result:?}");
    }
    assert!(must(store.list(None).await, "list").is_empty(), "a refused batch adds nothing");
}

/// `list` shows the handle's queue only, oldest first (not by priority), filtered by status,
/// without history; `get` finds a task of any queue.
pub async fn list_shows_its_queue_by_status_oldest_first(h: &dyn StoreHarness) {
    let store = h.store();
    let store = &*store;
    let ids = must(
        store
            .enqueue_many(vec![
                NewTask::new("reviewed"),
                NewTask::new("running"),
                NewTask { priority: 9, ..NewTask::new("pending") },
                NewTask::new("cancelled"),
            ])
            .await,
        "enqueue_many",
    );
    let elsewhere = add(store, NewTask { queue: Some("elsewhere".to_owned()), ..NewTask::new("elsewhere") }).await;
    must(store.complete(&claim(store, &ids[0]).await, &report("done")).await, "complete");
    claim(store, &ids[1]).await;
    must(store.cancel(&ids[3]).await, "cancel");

    let all = must(store.list(None).await, "list");
    let titles: Vec<&str> = all.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles, ["reviewed", "running", "pending", "cancelled"], "oldest first, the handle's queue only");
    let queue = &all[0].queue;
    assert!(all.iter().all(|t| &t.queue == queue && t.history.is_empty()), "no history in a list: {all:?}");
    for (status, expected) in [
        (Status::Review, vec!["reviewed"]),
        (Status::Running, vec!["running"]),
        (Status::Pending, vec!["pending"]),
        (Status::Cancelled, vec!["cancelled"]),
        (Status::Failed, vec![]),
        (Status::Closed, vec![]),
    ] {
        let listed = must(store.list(Some(status)).await, "list by status");
        let titles: Vec<&str> = listed.iter().map(|t| t.title.as_str()).collect();
        assert_eq!(titles, expected, "list of {status}");
        assert!(listed.iter().all(|t| t.history.is_empty()), "no history in a list of {status}");
    }
    let other = get(store, &elsewhere).await;
    assert_eq!((other.title.as_str(), other.queue.as_str()), ("elsewhere", "elsewhere"), "get finds any queue");
}

/// A record shows what was added and who claimed it: labels, body, priority, the task's own
/// attempt limit or else the claiming worker's, the claim and its lease.
pub async fn records_show_the_task_and_its_claim(h: &dyn StoreHarness) {
    let store = h.store();
    let store = &*store;
    let own_limit = NewTask { max_attempts: Some(5), priority: 3, ..NewTask::new("a").body("details") };
    let ids = must(
        store.enqueue_many(vec![own_limit.label("bug").label("ui"), NewTask::new("b"), NewTask::new("c")]).await,
        "enqueue_many",
    );
    let first = get(store, &ids[0]).await;
    assert_eq!((first.body.as_str(), first.priority, first.max_attempts), ("details", 3, Some(5)));
    assert_eq!(first.labels, ["bug", "ui"]);
    claim(store, &ids[1]).await;
    let running = get(store, &ids[1]).await;
    assert_eq!(running.max_attempts, Some(3), "the claiming worker's limit when the task has none");
    assert_eq!(running.claimed_by.as_deref(), Some(WORKER));
    assert!(running.lease_until.is_some_and(|until| until > Utc::now()), "{running:?}");
    let pending = get(store, &ids[2]).await;
    assert_eq!((pending.max_attempts, pending.claimed_by, pending.lease_until), (None, None, None));
    assert!(pending.created_at <= pending.updated_at);
}

/// `get` shows every finished attempt, oldest first: a failed one and a done one.
pub async fn get_shows_the_history(h: &dyn StoreHarness) {
    let store = h.store();
    let store = &*store;
    let id = add(store, NewTask::new("twice")).await;
    let first = claim(store, &id).await;
    must(store.fail(&first, &failure("first try broke", RetryDecision::RetryAt(Utc::now()))).await, "fail");
    let second = claim(store, &id).await;
    assert_eq!(second.attempt, 2);
    must(store.complete(&second, &report("second try worked")).await, "complete");

    let record = get(store, &id).await;
    assert_eq!((record.status, record.attempts), (Status::Review, 2));
    assert_eq!(record.summary.as_deref(), Some("second try worked"));
    assert_eq!((record.cost_usd, record.turns, record.duration_ms), (Some(0.25), Some(4), Some(1500)));
    assert_eq!(record.last_error.as_deref(), Some("first try broke"));
    let history: Vec<(u32, AttemptOutcome, Option<&str>)> =
        record.history.iter().map(|a| (a.number, a.outcome, a.message.as_deref())).collect();
    assert_eq!(
        history,
        [(1, AttemptOutcome::Failed, Some("first try broke")), (2, AttemptOutcome::Done, Some("second try worked"))]
    );
    assert!(record.history.iter().all(|a| a.worker.as_deref() == Some(WORKER) && a.started_at.is_some()), "{record:?}");

    let json = serde_json::to_value(&record).unwrap_or_else(|e| panic!("a record serialises: {e}"));
    assert_eq!(json["id"], serde_json::json!(record.id), "the id is a JSON number");
    assert_eq!((json["status"].as_str(), json["history"][1]["outcome"].as_str()), (Some("review"), Some("done")));
    assert!(json["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{json}");
    assert!(json["lease_until"].is_null());
}

/// A well-formed id of no task is `NotFound` for every method that takes an id.
pub async fn an_unknown_id_is_not_found(h: &dyn StoreHarness) {
    let store = h.store();
    add(&*store, NewTask::new("exists")).await;
    let missing = TaskId::new("987654");
    match store.get(&missing).await {
        Err(error @ Error::NotFound { .. }) => assert_eq!(error.to_string(), "task 987654 not found"),
        other => panic!("get of a missing task: {other:?}"),
    }
    for op in [Op::Close, Op::Retry, Op::Cancel] {
        let result = op.apply(&*store, &missing).await;
        assert!(matches!(result, Err(Error::NotFound { .. })), "{op:?} of a missing task: {result:?}");
    }
}

/// An id the store cannot read is a `Config` error that names it, for every method; `#42` and
/// ` 42 ` are read as 42.
pub async fn a_malformed_id_is_a_config_error_naming_it(h: &dyn StoreHarness) {
    let store = h.store();
    let id = add(&*store, NewTask::new("exists")).await;
    for bad in ["abc", "1.5", "", "twelve", "0", "-3", "#"] {
        let bad_id = TaskId::new(bad);
        let mut results = vec![("get", store.get(&bad_id).await)];
        for op in [Op::Close, Op::Retry, Op::Cancel] {
            results.push((op.name(), op.apply(&*store, &bad_id).await));
        }
        for (doing, result) in results {
            match result {
                Err(Error::Config(message)) => assert!(message.contains(&format!("'{bad}'")), "{doing}: {message}"),
                other => panic!("{doing}({bad:?}) should be a Config error: {other:?}"),
            }
        }
    }
    assert_eq!(get(&*store, &id).await.status, Status::Pending, "nothing changed");
    let typed = TaskId::new(format!(" #{id} "));
    assert_eq!(store.get(&typed).await.map(|t| t.title).ok().as_deref(), Some("exists"), "ids as people type them");
}

/// `close` takes a task of any status to closed (a running one from its worker); closing a
/// closed task is a no-op.
pub async fn close_from_every_status(h: &dyn StoreHarness) {
    op_from_every_status(h, Op::Close).await
}

/// `retry` puts any task that is not running back to pending; a running one is a conflict.
pub async fn retry_from_every_status(h: &dyn StoreHarness) {
    op_from_every_status(h, Op::Retry).await
}

/// `cancel` takes pending and running tasks to cancelled; cancelling a cancelled task is a no-op;
/// a finished task (review, failed, closed) is a conflict.
pub async fn cancel_from_every_status(h: &dyn StoreHarness) {
    op_from_every_status(h, Op::Cancel).await
}

/// Closing or cancelling a running task takes it from its worker: heartbeat and every report
/// conflict, the interrupted attempt is recorded as cancelled, and a late report changes nothing.
async fn taken_from_its_worker(h: &dyn StoreHarness, op: Op, status: Status) {
    let store = h.store();
    let store = &*store;
    let (id, held) = task_in(store, Status::Running).await;
    let claim = held.unwrap_or_else(|| panic!("a running task has a claim"));
    must(store.heartbeat(&claim).await, "heartbeat while claimed");
    let answered = must(op.apply(store, &id).await, &format!("{op:?} of a running task"));
    assert_eq!((answered.status, answered.lease_until), (status, None));
    let interrupted = answered.history.last().map(|a| (a.number, a.outcome, a.worker.as_deref()));
    assert_eq!(interrupted, Some((1, AttemptOutcome::Cancelled, Some(WORKER))), "{answered:?}");

    let heartbeat = store.heartbeat(&claim).await;
    assert!(matches!(heartbeat, Err(Error::Conflict { .. })), "heartbeat after {op:?}: {heartbeat:?}");
    let complete = store.complete(&claim, &report("too late")).await;
    assert!(matches!(complete, Err(Error::Conflict { .. })), "complete after {op:?}: {complete:?}");
    let fail = store.fail(&claim, &failure("too late", RetryDecision::RetryAt(Utc::now()))).await;
    assert!(matches!(fail, Err(Error::Conflict { .. })), "fail after {op:?}: {fail:?}");
    let release = store.release(&claim).await;
    assert!(matches!(release, Err(Error::Conflict { .. })), "release after {op:?}: {release:?}");
    assert_eq!(get(store, &id).await, answered, "a late report changes nothing");
    assert!(answered.summary.is_none());
    assert!(!eligible(store, &id).await, "a task taken from its worker is not eligible");
}

pub async fn closing_a_running_task_takes_it_from_its_worker(h: &dyn StoreHarness) {
    taken_from_its_worker(h, Op::Close, Status::Closed).await
}

pub async fn cancelling_a_running_task_takes_it_from_its_worker(h: &dyn StoreHarness) {
    taken_from_its_worker(h, Op::Cancel, Status::Cancelled).await
}

/// Retry resets the attempt count and keeps every finished attempt, through failures, done
/// attempts and a close.
pub async fn retry_resets_attempts_and_keeps_history(h: &dyn StoreHarness) {
    let store = h.store();
    let store = &*store;
    let id = add(store, NewTask { max_attempts: Some(2), ..NewTask::new("stubborn") }).await;
    let first = claim(store, &id).await;
    must(store.fail(&first, &failure("broke once", RetryDecision::RetryAt(Utc::now()))).await, "fail");
    let waiting = get(store, &id).await;
    assert_eq!(waiting.claimed_by.as_deref(), Some(WORKER), "the record names the worker that last held it");
    let second = claim(store, &id).await;
    must(store.fail(&second, &failure("broke twice", RetryDecision::GiveUp)).await, "give up");
    let failed = get(store, &id).await;
    assert_eq!((failed.status, failed.attempts, failed.history.len()), (Status::Failed, 2, 2));

    let retried = must(store.retry(&id).await, "retry");
    assert_eq!((retried.status, retried.attempts), (Status::Pending, 0));
    assert_eq!(retried.claimed_by.as_deref(), Some(WORKER), "a retry keeps who last held it");
    assert!(retried.run_at <= Utc::now(), "a retried task is eligible at once");
    assert_eq!(retried.history, failed.history, "retry keeps the history");
    let again = claim(store, &id).await;
    assert_eq!(again.attempt, 1, "attempts start over");
    must(store.complete(&again, &report("third time lucky")).await, "complete");
    must(store.retry(&id).await, "retry after review");
    must(store.complete(&claim(store, &id).await, &report("and once more")).await, "complete again");
    must(store.close(&id).await, "close");

    let record = get(store, &id).await;
    let history: Vec<(u32, AttemptOutcome, Option<&str>)> =
        record.history.iter().map(|a| (a.number, a.outcome, a.message.as_deref())).collect();
    assert_eq!(
        history,
        [
            (1, AttemptOutcome::Failed, Some("broke once")),
            (2, AttemptOutcome::GaveUp, Some("broke twice")),
            (1, AttemptOutcome::Done, Some("third time lucky")),
            (1, AttemptOutcome::Done, Some("and once more")),
        ]
    );
    assert!(record.history.iter().all(|a| a.worker.as_deref() == Some(WORKER) && a.started_at.is_some()), "{record:?}");
    assert_eq!((record.status, record.attempts), (Status::Closed, 1));
    assert_eq!(record.summary.as_deref(), Some("and once more"));
}

/// Expands to one `#[tokio::test]` per store conformance case, each on a fresh harness from
/// `$make` (an expression evaluating to a future that yields an `impl StoreHarness`). The
/// calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases store_conformance ($make)
            enqueue_many_keeps_input_order,
            unique_keys_answer_the_existing_task,
            an_invalid_task_adds_nothing_of_its_batch,
            list_shows_its_queue_by_status_oldest_first,
            records_show_the_task_and_its_claim,
            get_shows_the_history,
            an_unknown_id_is_not_found,
            a_malformed_id_is_a_config_error_naming_it,
            close_from_every_status,
            retry_from_every_status,
            cancel_from_every_status,
            closing_a_running_task_takes_it_from_its_worker,
            cancelling_a_running_task_takes_it_from_its_worker,
            retry_resets_attempts_and_keeps_history,
        );
    };
}
