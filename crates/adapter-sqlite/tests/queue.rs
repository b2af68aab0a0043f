//! The embedded queue's own promises beyond the conformance suite: concurrency across handles,
//! lease take-over records, what a report stores, filters, ordering and wake-ups.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bg_run_core::{
    ClaimOutcome, Error, Failure, FailureKind, NewTask, Report, RetryDecision, TaskQueue, Tokens, Usage,
};
use bg_run_sqlite::{AttemptOutcome, SqliteQueue, Status, TaskStore};
use common::{add, claim_one, claimant, TempDb};

const LONG: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handles_claiming_concurrently_never_share_a_task() {
    let db = TempDb::new();
    let first = Arc::new(db.open().await);
    let second = Arc::new(db.open().await);
    let ids = first.enqueue_many((0..500).map(|n| NewTask::new(format!("task {n}"))).collect()).await.expect("enqueue");

    let mut claimers = tokio::task::JoinSet::new();
    for n in 0..8 {
        let queue = if n % 2 == 0 { first.clone() } else { second.clone() };
        claimers.spawn(async move {
            let me = claimant(&format!("claimer-{n}"), LONG);
            let mut mine = Vec::new();
            loop {
                let claims = queue.claim_batch(1 + n % 4, &me).await.expect("claim_batch");
                if claims.is_empty() {
                    return mine;
                }
                for claim in claims {
                    queue.complete(&claim, &Report::default()).await.expect("complete");
                    mine.push(claim.task.id.0);
                }
            }
        });
    }
    let mut times: HashMap<String, usize> = HashMap::new();
    while let Some(claimed) = claimers.join_next().await {
        for id in claimed.expect("claimer") {
            *times.entry(id).or_default() += 1;
        }
    }
    assert_eq!(times.len(), 500, "every task was claimed");
    for id in &ids {
        assert_eq!(times.get(&id.0), Some(&1), "task {id} claimed {:?} times", times.get(&id.0));
    }
    let done = first.list(Some(Status::Review)).await.expect("list");
    assert_eq!(done.len(), 500);
    assert!(done.iter().all(|t| t.attempts == 1));
    for id in &ids {
        assert_eq!(first.get(id).await.expect("get").history.len(), 1, "task {id} has one finished attempt");
    }
}

#[tokio::test]
async fn a_stale_lease_is_taken_over_with_the_attempt_counted_and_recorded() {
    let db = TempDb::new();
    let queue = db.open().await;
    let id = add(&queue, "stale").await;
    let dead = claim_one(&queue, &claimant("dead-worker", Duration::from_millis(100))).await;
    assert!(queue.claim_batch(10, &claimant("early", LONG)).await.expect("claim").is_empty(), "lease still valid");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let other = db.open().await;
    let taken = claim_one(&other, &claimant("survivor", LONG)).await;
    assert_eq!(taken.task.id, id);
    assert_eq!(taken.attempt, 2, "the dead worker's attempt counts");

    let record = queue.get(&id).await.expect("get");
    assert_eq!(record.status, Status::Running);
    assert_eq!(record.attempts, 2);
    assert_eq!(record.claimed_by.as_deref(), Some("survivor"));
    assert_eq!(record.history.len(), 1);
    let expired = &record.history[0];
    assert_eq!(expired.outcome, AttemptOutcome::Expired);
    assert_eq!(expired.number, 1);
    assert_eq!(expired.worker.as_deref(), Some("dead-worker"));

    match queue.heartbeat(&dead).await {
        Err(Error::Conflict { message }) => assert!(message.contains("taken over by survivor"), "{message}"),
        other => panic!("heartbeat of a taken-over claim: {other:?}"),
    }
    other.heartbeat(&taken).await.expect("the new owner's heartbeat");
}

#[tokio::test]
async fn a_heartbeat_moves_the_lease_forward() {
    let db = TempDb::new();
    let queue = db.open().await;
    let id = add(&queue, "long job").await;
    let claim = claim_one(&queue, &claimant("w", Duration::from_secs(60))).await;
    let before = queue.get(&id).await.expect("get").lease_until.expect("a running task has a lease");
    tokio::time::sleep(Duration::from_millis(20)).await;
    queue.heartbeat(&claim).await.expect("heartbeat");
    let after = queue.get(&id).await.expect("get").lease_until.expect("lease");
    assert!(after > before, "heartbeat did not extend the lease: {before} -> {after}");
}

#[tokio::test]
async fn complete_and_fail_store_what_the_agent_reported() {
    let db = TempDb::new();
    let queue = db.open().await;
    let id = add(&queue, "reported").await;
    let me = claimant("w", LONG);

    let first = claim_one(&queue, &me).await;
    assert_eq!(first.task.last_session_id, None);
    let failure = Failure {
        kind: FailureKind::Transient,
        reason: "exit code 2: tests failed".to_owned(),
        exit_code: Some(2),
        stderr_tail: "assertion failed: left == right\n".to_owned(),
        duration: Duration::from_millis(1234),
        usage: Usage { cost_usd: Some(0.5), session_id: Some("session-1".to_owned()), ..Usage::default() },
        decision: RetryDecision::RetryAt(chrono::Utc::now()),
    };
    queue.fail(&first, &failure).await.expect("fail");
    let record = queue.get(&id).await.expect("get");
    assert_eq!(record.status, Status::Pending);
    let error = record.last_error.as_deref().unwrap_or_default();
    assert!(error.starts_with("exit code 2: tests failed"), "{error}");
    assert!(error.contains("assertion failed: left == right"), "the stderr tail is kept: {error}");
    assert_eq!(record.exit_code, Some(2));
    assert_eq!(record.claimed_by.as_deref(), Some("w"), "the worker that last held it");

    let second = claim_one(&queue, &me).await;
    assert_eq!(second.task.last_session_id.as_deref(), Some("session-1"), "the retry can resume the session");
    let tokens = Tokens { input: 1000, output: 200, cache_read: 50, cache_write: 0 };
    let report = Report {
        summary: "Fixed the flaky assertion".to_owned(),
        duration: Duration::from_millis(4321),
        usage: Usage {
            cost_usd: Some(0.25),
            tokens: Some(tokens),
            turns: Some(7),
            session_id: Some("session-2".to_owned()),
            permission_denials: Vec::new(),
        },
        exit_code: Some(0),
    };
    queue.complete(&second, &report).await.expect("complete");

    let record = queue.get(&id).await.expect("get");
    assert_eq!(record.status, Status::Review);
    assert_eq!(record.attempts, 2);
    assert_eq!(record.summary.as_deref(), Some("Fixed the flaky assertion"));
    assert_eq!(record.duration_ms, Some(4321));
    assert_eq!(record.turns, Some(7));
    assert_eq!(record.tokens, Some(tokens));
    assert_eq!(record.session_id.as_deref(), Some("session-2"));
    assert_eq!(record.exit_code, Some(0));
    assert_eq!(record.cost_usd, Some(0.75), "cost adds up over attempts");
    assert_eq!(record.lease_until, None);
    assert_eq!(record.claimed_by.as_deref(), Some("w"), "the record says who did the work");
    let outcomes: Vec<(u32, AttemptOutcome)> = record.history.iter().map(|a| (a.number, a.outcome)).collect();
    assert_eq!(outcomes, [(1, AttemptOutcome::Failed), (2, AttemptOutcome::Done)]);
    assert!(record.history.iter().all(|a| a.started_at.is_some_and(|s| s <= a.finished_at)));
}

#[tokio::test]
async fn giving_up_and_releasing_are_recorded() {
    let db = TempDb::new();
    let queue = db.open().await;
    let id = add(&queue, "short-lived").await;
    let me = claimant("w", LONG);
    let claim = claim_one(&queue, &me).await;
    queue.release(&claim).await.expect("release");
    let claim = claim_one(&queue, &me).await;
    assert_eq!(claim.attempt, 1);
    let give_up = Failure {
        kind: FailureKind::Permanent,
        reason: "the repository does not exist".to_owned(),
        exit_code: Some(1),
        stderr_tail: String::new(),
        duration: Duration::ZERO,
        usage: Usage::default(),
        decision: RetryDecision::GiveUp,
    };
    queue.fail(&claim, &give_up).await.expect("fail");
    let record = queue.get(&id).await.expect("get");
    assert_eq!(record.status, Status::Failed);
    assert_eq!(record.last_error.as_deref(), Some("the repository does not exist"));
    let outcomes: Vec<(u32, AttemptOutcome)> = record.history.iter().map(|a| (a.number, a.outcome)).collect();
    assert_eq!(outcomes, [(1, AttemptOutcome::Released), (1, AttemptOutcome::GaveUp)]);
    assert!(matches!(queue.release(&claim).await, Err(Error::Conflict { .. })), "a finished claim cannot be released");
}

#[tokio::test]
async fn claims_take_the_highest_priority_first_then_the_oldest() {
    let db = TempDb::new();
    let queue = db.open().await;
    let mut tasks = Vec::new();
    for (title, priority) in [("low", -1), ("normal a", 0), ("urgent", 5), ("normal b", 0), ("high", 2)] {
        tasks.push(NewTask { priority, ..NewTask::new(title) });
    }
    queue.enqueue_many(tasks).await.expect("enqueue");
    let polled: Vec<String> = queue.poll(10).await.expect("poll").into_iter().map(|t| t.title).collect();
    assert_eq!(polled, ["urgent", "high", "normal a", "normal b", "low"]);
    let claimed: Vec<String> =
        queue.claim_batch(3, &claimant("w", LONG)).await.expect("claim").into_iter().map(|c| c.task.title).collect();
    assert_eq!(claimed, ["urgent", "high", "normal a"]);
    let next = queue.claim_batch(10, &claimant("w", LONG)).await.expect("claim");
    let next: Vec<(&str, Option<&String>)> =
        next.iter().map(|c| (c.task.title.as_str(), c.task.meta.get("priority"))).collect();
    assert_eq!(next, [("normal b", Some(&"0".to_owned())), ("low", Some(&"-1".to_owned()))]);
}

#[tokio::test]
async fn queue_names_and_label_filters_select_tasks() {
    let db = TempDb::new();
    let triage = SqliteQueue::open(db.options().queue("triage").labels(["agent", "backend"])).await.expect("open");
    let default = db.open().await;
    let ids = triage
        .enqueue_many(vec![
            NewTask::new("both labels").label("backend").label("agent").label("extra"),
            NewTask::new("one label").label("agent"),
            NewTask::new("no labels"),
            NewTask {
                queue: Some("default".to_owned()),
                ..NewTask::new("other queue").label("agent").label("backend")
            },
        ])
        .await
        .expect("enqueue");

    let seen: Vec<String> = triage.poll(10).await.expect("poll").into_iter().map(|t| t.title).collect();
    assert_eq!(seen, ["both labels"]);
    let claim = claim_one(&triage, &claimant("w", LONG)).await;
    assert_eq!(claim.task.labels, ["backend", "agent", "extra"]);
    assert_eq!(claim.task.meta.get("queue").map(String::as_str), Some("triage"));
    assert!(triage.claim_batch(10, &claimant("w", LONG)).await.expect("claim").is_empty());

    let one_label = default.poll(10).await.expect("poll");
    assert_eq!(one_label.len(), 1, "the default queue sees only its own task");
    assert_eq!(one_label[0].id, ids[3]);
    let stolen = triage.claim(&one_label[0], &claimant("w", LONG)).await.expect("claim");
    assert_eq!(stolen, ClaimOutcome::Taken, "a handle never claims another queue's task");

    let own: Vec<_> = default.list(None).await.expect("list").into_iter().map(|t| t.task_id()).collect();
    assert_eq!(own, [ids[3].clone()], "list shows the handle's queue only");
    let triaged = triage.list(None).await.expect("list");
    assert_eq!(triaged.iter().map(|t| t.task_id()).collect::<Vec<_>>(), ids[..3]);
    assert!(triaged.iter().all(|t| t.queue == "triage"));
}

#[tokio::test]
async fn a_task_scheduled_for_later_waits_for_its_time() {
    let db = TempDb::new();
    let queue = db.open().await;
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    queue.enqueue(NewTask { run_at: Some(at), ..NewTask::new("later") }).await.expect("enqueue");
    assert!(queue.poll(10).await.expect("poll").is_empty(), "not before its time");

    let started = Instant::now();
    queue.wait_for_work(Duration::from_secs(30)).await;
    assert!(started.elapsed() < Duration::from_secs(20), "the wait ended when the task came due, not at the timeout");
    assert!(chrono::Utc::now() >= at, "the wait ended before the task came due");
    assert_eq!(queue.poll(10).await.expect("poll").len(), 1);
}

#[tokio::test]
async fn a_waiting_worker_wakes_when_another_process_adds_a_task() {
    let db = TempDb::new();
    let watcher = Arc::new(db.open().await);
    let waiting = {
        let watcher = watcher.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            watcher.wait_for_work(Duration::from_secs(30)).await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let other_process = db.open().await;
    add(&other_process, "new work").await;
    let waited = tokio::time::timeout(Duration::from_secs(25), waiting).await.expect("woke").expect("join");
    assert!(waited < Duration::from_secs(20), "slept {waited:?} through a new task");
    assert_eq!(watcher.poll(10).await.expect("poll").len(), 1);
}

/// On Linux the wake-up comes from the write to the database's files, not from the once-a-second
/// check kept for file systems without events: a worker waiting through a second of quiet sees a
/// new task well before its next check. (Where no file events can be had at all, the version is
/// checked every 10 ms, which passes too.)
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_waiting_worker_sees_a_commit_at_once() {
    let db = TempDb::new();
    let watcher = Arc::new(db.open().await);
    let other_process = db.open().await;
    for round in 0..3 {
        let waiting = {
            let watcher = watcher.clone();
            tokio::spawn(async move { watcher.wait_for_work(Duration::from_secs(30)).await })
        };
        // Past at least one once-a-second check, so the next one is a full second away or near.
        tokio::time::sleep(Duration::from_millis(1100 + round * 150)).await;
        let added = Instant::now();
        add(&other_process, &format!("new work {round}")).await;
        tokio::time::timeout(Duration::from_secs(25), waiting).await.expect("woke").expect("join");
        let waited = added.elapsed();
        assert!(waited < Duration::from_millis(500), "round {round}: woke {waited:?} after the commit");
        claim_one(&watcher, &claimant("w", LONG)).await;
    }
}

#[tokio::test]
async fn an_idle_wait_lasts_until_its_timeout() {
    let db = TempDb::new();
    let queue = db.open().await;
    add(&queue, "already running").await;
    claim_one(&queue, &claimant("w", LONG)).await;
    let started = Instant::now();
    queue.wait_for_work(Duration::from_millis(200)).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(190), "returned after {waited:?} with nothing to do");
}

#[tokio::test]
async fn claims_of_foreign_ids_are_rejected_clearly() {
    let db = TempDb::new();
    let queue = db.open().await;
    let task = bg_run_core::Task::new("ENG-42", "not ours");
    match queue.claim(&task, &claimant("w", LONG)).await {
        Err(Error::Config(message)) => assert!(message.contains("'ENG-42'"), "{message}"),
        other => panic!("claim of a non-numeric id: {other:?}"),
    }
    let missing = bg_run_core::Task::new("4242", "gone");
    assert_eq!(queue.claim(&missing, &claimant("w", LONG)).await.expect("claim"), ClaimOutcome::Taken);
}

#[tokio::test]
async fn a_locked_database_gives_a_retryable_error() {
    let db = TempDb::new();
    let queue = SqliteQueue::open(db.options().busy_timeout(Duration::from_millis(50))).await.expect("open");
    add(&queue, "contended").await;
    let locker = rusqlite::Connection::open(&db.path).expect("open a second connection");
    locker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let error = queue.claim_batch(1, &claimant("w", LONG)).await.expect_err("claim while locked");
    assert!(error.is_retryable(), "a busy database is worth retrying: {error}");
    assert!(matches!(&error, Error::Backend { adapter, .. } if adapter == "sqlite"), "{error:?}");
    locker.execute_batch("COMMIT").expect("unlock");
    assert_eq!(queue.claim_batch(1, &claimant("w", LONG)).await.expect("claim after unlock").len(), 1);
}
