//! The PostgreSQL queue against the real server: claims under concurrency, leases, group
//! commit, priorities and schedules, wake-ups, reconnects and error hygiene. The `TaskStore`
//! contract is checked by testkit's store suite, run in `conformance.rs`.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bg_run_core::{
    Claimant, Error, Failure, FailureKind, NewTask, Report, RetryDecision, TaskId, TaskQueue, TaskQueueExt, Usage,
};
use bg_run_postgres::{AttemptOutcome, PostgresOptions, PostgresQueue, Status, TaskStore};
use chrono::Utc;
use common::TestDb;
use sqlx::Row;

fn claimant(worker: &str, lease: Duration, max_attempts: u32) -> Claimant {
    Claimant { worker_id: worker.to_owned(), agent: "test".to_owned(), lease, max_attempts }
}

fn report(summary: &str) -> Report {
    Report {
        summary: summary.to_owned(),
        duration: Duration::from_millis(1234),
        usage: Usage { cost_usd: Some(0.5), turns: Some(3), session_id: Some("sess-1".to_owned()), ..Usage::default() },
        exit_code: Some(0),
    }
}

fn failure(reason: &str, decision: RetryDecision) -> Failure {
    Failure {
        kind: FailureKind::Transient,
        reason: reason.to_owned(),
        exit_code: Some(2),
        stderr_tail: "boom".to_owned(),
        duration: Duration::from_millis(10),
        usage: Usage::default(),
        decision,
    }
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query(&sql.replace("{s}", &format!("\"{}\"", db.schema)))
        .fetch_one(&db.pool)
        .await
        .expect("count query")
        .get::<i64, _>(0)
}

/// 1,000 tasks in three named queues, eight claimers per queue racing with mixed batch sizes:
/// every task is claimed exactly once, only by a claimer of its own queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_over_named_queues_claim_each_task_once() {
    let Some(db) = TestDb::new().await else { return };
    let queues = ["alpha", "beta", "gamma"];
    let setup = db.connect(1).await;
    let mut owner = HashMap::new();
    for (n, queue) in queues.iter().enumerate() {
        let count = if n == 0 { 334 } else { 333 };
        let tasks =
            (0..count).map(|i| NewTask { queue: Some(queue.to_string()), ..NewTask::new(format!("{queue} {i}")) });
        for id in setup.enqueue_many(tasks.collect()).await.expect("enqueue") {
            owner.insert(id, queue.to_string());
        }
    }
    assert_eq!(owner.len(), 1000);

    let mut claimers = tokio::task::JoinSet::new();
    for (n, queue) in queues.iter().enumerate() {
        let handle = Arc::new(
            PostgresQueue::connect(db.options().queue(*queue).batch([1, 3, 7][n]).pool_size(6)).await.expect("connect"),
        );
        for c in 0..8 {
            let handle = handle.clone();
            let queue = queue.to_string();
            claimers.spawn(async move {
                let who = claimant(&format!("{queue}-{c}"), Duration::from_secs(60), 3);
                let mut mine = Vec::new();
                loop {
                    let claims = handle.claim_batch(1 + c % 4, &who).await.expect("claim_batch");
                    if claims.is_empty() {
                        break;
                    }
                    for claim in claims {
                        handle.complete(&claim, &report("ok")).await.expect("complete");
                        mine.push((queue.clone(), claim.task.id));
                    }
                }
                mine
            });
        }
    }
    let mut seen: HashMap<TaskId, usize> = HashMap::new();
    while let Some(done) = claimers.join_next().await {
        for (queue, id) in done.expect("claimer task") {
            assert_eq!(owner.get(&id), Some(&queue), "task {id} was claimed through queue {queue}");
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 1000, "every task was claimed");
    assert!(seen.values().all(|&n| n == 1), "a task was claimed twice");
    assert_eq!(count(&db, "SELECT count(*) FROM {s}.tasks WHERE status = 'review' AND attempts = 1").await, 1000);
    assert_eq!(count(&db, "SELECT count(*) FROM {s}.attempts").await, 0, "no attempt failed, expired or was archived");
}

/// A claim whose worker stops heartbeating comes back after its lease, the lost attempt counted
/// and recorded; at the attempt limit the task is given up instead of being handed out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_leases_are_rescued_counted_and_given_up_at_the_limit() {
    let Some(db) = TestDb::new().await else { return };
    let queue = db.connect(1).await;
    let lease = Duration::from_millis(200);
    let id = queue.enqueue(NewTask { max_attempts: Some(2), ..NewTask::new("flaky host") }).await.expect("enqueue");

    let first = queue.claim_one(&claimant("dies-1", lease, 5)).await.expect("claim").expect("a task");
    assert_eq!(first.attempt, 1);
    assert!(queue.claim_one(&claimant("other", lease, 5)).await.expect("claim").is_none(), "the lease still holds");
    tokio::time::sleep(lease * 2).await;

    let second = queue.claim_one(&claimant("dies-2", lease, 5)).await.expect("claim").expect("the stale task");
    assert_eq!(second.task.id, id);
    assert_eq!(second.attempt, 2, "the expired attempt counts");
    let lost = queue.heartbeat(&first).await;
    assert!(matches!(lost, Err(Error::Conflict { .. })), "the first worker's claim is gone: {lost:?}");
    tokio::time::sleep(lease * 2).await;

    // The task allows 2 attempts (more than the claimant's default would say) and both ran out.
    assert!(queue.claim_one(&claimant("late", lease, 5)).await.expect("claim").is_none());
    let record = queue.get(&id).await.expect("get");
    assert_eq!(record.status, Status::Failed);
    assert_eq!(record.attempts, 2);
    assert!(record.last_error.as_deref().unwrap_or_default().contains("never reported back"), "{record:?}");
    let outcomes: Vec<AttemptOutcome> = record.history.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [AttemptOutcome::Expired, AttemptOutcome::Expired]);
    assert_eq!(record.history[0].worker.as_deref(), Some("dies-1"));
    assert_eq!(record.history[1].number, 2);

    // Without a limit of its own, the claimant's limit applies.
    let id = queue.enqueue(NewTask::new("no limit of its own")).await.expect("enqueue");
    queue.claim_one(&claimant("dies", lease, 1)).await.expect("claim").expect("a task");
    tokio::time::sleep(lease * 2).await;
    assert!(queue.claim_one(&claimant("late", lease, 1)).await.expect("claim").is_none());
    assert_eq!(queue.get(&id).await.expect("get").status, Status::Failed);
}

/// With group commit, thousands of concurrent reports are all written, exactly once, with their
/// own outcome; a second report on the same claim conflicts, even when both arrive together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_writes_every_report_exactly_once() {
    let Some(db) = TestDb::new().await else { return };
    let queue = Arc::new(db.connect(64).await);
    let ids =
        queue.enqueue_many((0..2000).map(|i| NewTask::new(format!("task {i}"))).collect()).await.expect("enqueue_many");
    let who = claimant("grouped", Duration::from_secs(60), 3);
    let mut claims = Vec::new();
    loop {
        let got = queue.claim_batch(500, &who).await.expect("claim_batch");
        if got.is_empty() {
            break;
        }
        assert!(got.len() <= 500);
        claims.extend(got);
    }
    assert_eq!(claims.len(), 2000);

    let later = Utc::now() + chrono::Duration::hours(1);
    let index: HashMap<TaskId, usize> = ids.iter().cloned().enumerate().map(|(n, id)| (id, n)).collect();
    let mut reports = tokio::task::JoinSet::new();
    for claim in claims.iter().cloned() {
        let n = index[&claim.task.id];
        let queue = queue.clone();
        reports.spawn(async move {
            let result = match n % 10 {
                3 => queue.fail(&claim, &failure(&format!("retry {n}"), RetryDecision::RetryAt(later))).await,
                7 => queue.fail(&claim, &failure(&format!("give up {n}"), RetryDecision::GiveUp)).await,
                _ => queue.complete(&claim, &report(&format!("done {n}"))).await,
            };
            (n, result)
        });
    }
    while let Some(joined) = reports.join_next().await {
        let (n, result) = joined.expect("report task");
        assert!(result.is_ok(), "report {n}: {result:?}");
    }
    for (n, id) in ids.iter().enumerate() {
        let record = queue.get(id).await.expect("get");
        let (status, outcome) = match n % 10 {
            3 => (Status::Pending, AttemptOutcome::Failed),
            7 => (Status::Failed, AttemptOutcome::GaveUp),
            _ => (Status::Review, AttemptOutcome::Done),
        };
        assert_eq!(record.status, status, "task {n}");
        assert_eq!(record.history.len(), 1, "task {n} has one finished attempt: {:?}", record.history);
        assert_eq!(record.history[0].outcome, outcome, "task {n}");
        if status == Status::Review {
            assert_eq!(record.summary.as_deref(), Some(format!("done {n}").as_str()));
            assert_eq!(record.cost_usd, Some(0.5));
            assert_eq!(record.turns, Some(3));
            assert_eq!(record.duration_ms, Some(1234));
            assert_eq!(record.session_id.as_deref(), Some("sess-1"));
        } else {
            let reason = if n % 10 == 3 { format!("retry {n}") } else { format!("give up {n}") };
            assert_eq!(record.last_error.as_deref(), Some(reason.as_str()));
            assert_eq!(record.exit_code, Some(2));
        }
    }

    let again = queue.complete(&claims[0], &report("twice")).await;
    assert!(matches!(again, Err(Error::Conflict { .. })), "{again:?}");

    // Two reports on one claim in the same moment: one is written, the other conflicts.
    let id = queue.enqueue(NewTask::new("reported twice")).await.expect("enqueue");
    let claim = queue.claim_one(&who).await.expect("claim").expect("the task");
    assert_eq!(claim.task.id, id);
    let (first, second) = (report("first"), report("second"));
    let (a, b) = tokio::join!(queue.complete(&claim, &first), queue.complete(&claim, &second));
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1, "{a:?} {b:?}");
    assert!(matches!(a, Err(Error::Conflict { .. })) || matches!(b, Err(Error::Conflict { .. })));
    assert_eq!(queue.get(&id).await.expect("get").history.len(), 1);
}

/// Priorities, schedules and label filters decide what is eligible and in which order.
#[tokio::test]
async fn priority_run_at_and_labels_decide_eligibility() {
    let Some(db) = TestDb::new().await else { return };
    let queue = db.connect(10).await;
    let ids = queue
        .enqueue_many(vec![
            NewTask::new("low"),
            NewTask { priority: 10, ..NewTask::new("urgent") },
            NewTask { run_at: Some(Utc::now() + chrono::Duration::hours(1)), ..NewTask::new("later") },
            NewTask { priority: 5, ..NewTask::new("soon").label("docs") },
        ])
        .await
        .expect("enqueue");
    let docs_only = PostgresQueue::connect(db.options().labels(["docs"])).await.expect("connect");
    let who = claimant("w", Duration::from_secs(60), 3);
    let polled: Vec<String> = docs_only.poll(10).await.expect("poll").into_iter().map(|t| t.title).collect();
    assert_eq!(polled, ["soon"], "the label filter applies");

    let titles: Vec<String> =
        queue.claim_batch(10, &who).await.expect("claim").into_iter().map(|c| c.task.title).collect();
    assert_eq!(titles, ["urgent", "soon", "low"], "by priority; the scheduled task waits");
    let later = queue.get(&ids[2]).await.expect("get");
    assert_eq!(later.status, Status::Pending);
    assert!(later.run_at > Utc::now());
}

/// A task added from anywhere (even plain SQL) wakes a waiting worker through LISTEN/NOTIFY, well
/// before its poll interval; tasks of other queues do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_a_waiting_worker_early() {
    let Some(db) = TestDb::new().await else { return };
    let queue = Arc::new(db.connect(1).await);
    assert!(queue.capabilities().wakeup);
    let who = claimant("w", Duration::from_secs(60), 3);
    // Let the listener connect; its first wake-up (after any reconnect) is spent here.
    let quiet = Duration::from_millis(300);
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(queue.claim_batch(10, &who).await.expect("claim").is_empty());
        let started = Instant::now();
        queue.wait_for_work(quiet).await;
        if started.elapsed() >= quiet {
            break;
        }
        assert!(Instant::now() < until, "wait_for_work never settled");
    }

    for round in 0..3 {
        assert!(queue.claim_batch(10, &who).await.expect("claim").is_empty());
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                queue.wait_for_work(Duration::from_secs(60)).await;
                started.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        sqlx::query(&format!("INSERT INTO {} (title) VALUES ($1)", db.table("tasks")))
            .bind(format!("inserted by hand {round}"))
            .execute(&db.pool)
            .await
            .expect("insert by hand");
        let waited = tokio::time::timeout(Duration::from_secs(30), waiter).await.expect("woken").expect("waiter");
        assert!(waited < Duration::from_secs(10), "round {round}: woke after {waited:?}");
        let claimed = queue.claim_batch(10, &who).await.expect("claim");
        assert_eq!(claimed.len(), 1, "round {round}: the new task is there");
    }

    // Another queue's task is not this worker's business.
    assert!(queue.claim_batch(10, &who).await.expect("claim").is_empty());
    let waiter = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            queue.wait_for_work(Duration::from_millis(800)).await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    queue.enqueue(NewTask { queue: Some("elsewhere".to_owned()), ..NewTask::new("not ours") }).await.expect("enqueue");
    let waited = waiter.await.expect("waiter");
    assert!(waited >= Duration::from_millis(750), "woken by another queue's task after {waited:?}");

    // Without LISTEN the queue says so and only sleeps.
    let polling = PostgresQueue::connect(db.options().listen(false)).await.expect("connect");
    assert!(!polling.capabilities().wakeup);
}

/// Text PostgreSQL cannot store (a NUL character) is a `Config` error that says so, and nothing
/// is added.
#[tokio::test]
async fn text_postgres_cannot_take_is_a_config_error() {
    let Some(db) = TestDb::new().await else { return };
    let queue = db.connect(1).await;
    let nul = queue.enqueue(NewTask::new("title").body("a\0b")).await;
    assert!(matches!(nul, Err(Error::Config(_))), "{nul:?}");
    assert!(queue.list(None).await.expect("list").is_empty());
}

/// Connections killed under a running worker (as a server restart does) lose no task: every
/// task ends reviewed, once, and the worker makes progress again after each kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_connections_lose_no_task() {
    use bg_run_core::{CancellationToken, RunMode, Worker, WorkerConfig};
    const TASKS: i64 = 1000;
    let Some(db) = TestDb::new().await else { return };
    let queue = Arc::new(db.connect(8).await);
    queue.enqueue_many((0..TASKS).map(|i| NewTask::new(format!("task {i}"))).collect()).await.expect("enqueue");

    let mut config = WorkerConfig::new("restart");
    config.mode = RunMode::Watch;
    config.concurrency = 8;
    config.poll_interval = Duration::from_millis(100);
    config.lease = Duration::from_secs(1);
    config.backoff_base = Duration::from_millis(10);
    let agent = Arc::new(common::SleepyAgent::new(Duration::from_millis(20)));
    let stop = CancellationToken::new();
    let run = tokio::spawn(Worker::new(queue.clone(), agent.clone(), config).run(stop.clone()));

    let mut kills = 0;
    let mut reviewed_at_kill = 0;
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let reviewed = count(&db, "SELECT count(*) FROM {s}.tasks WHERE status = 'review'").await;
        if reviewed == TASKS {
            break;
        }
        assert!(Instant::now() < until, "only {reviewed} of {TASKS} tasks reviewed after {kills} kills");
        // Kill again only once the worker has made progress since the last kill.
        if kills < 4 && reviewed > reviewed_at_kill + 20 {
            db.kill_connections().await;
            kills += 1;
            reviewed_at_kill = reviewed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kills, 4, "the run finished before all kills were made; make it longer");
    stop.cancel();
    run.await.expect("worker task").expect("worker run");
    // Each task's successful attempt is in its row (it is in review); every earlier one (a claim
    // lost with its connection, then expired) is in the history.
    assert_eq!(count(&db, "SELECT count(*) FROM {s}.attempts WHERE outcome = 'done'").await, 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM {s}.tasks t WHERE attempts <> 1 + (SELECT count(*) FROM {s}.attempts a WHERE a.task_id = t.id)").await,
        0,
        "every attempt is counted and recorded"
    );
}

/// Several workers starting at once against a new schema: the migration runs once, all connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_connects_migrate_once() {
    let Some(db) = TestDb::new().await else { return };
    let mut starting = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let options = db.options().pool_size(2);
        starting.spawn(PostgresQueue::connect(options));
    }
    while let Some(started) = starting.join_next().await {
        started.expect("connect task").expect("connect");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM {s}.migrations").await, 4, "each migration applied once");
    let options = count(&db, "SELECT count(*) FROM pg_class WHERE oid = '{s}.tasks'::regclass AND 'autovacuum_vacuum_threshold=5000' = ANY(reloptions)").await;
    assert_eq!(options, 1, "the tasks table is tuned for early vacuums");
}

/// A handle that has claimed many tasks vacuums the tasks table itself, so claims do not slow down
/// walking past the dead index entries that earlier claims left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_handle_vacuums_its_table() {
    let Some(db) = TestDb::new().await else { return };
    let queue = db.connect(1).await;
    queue.enqueue_many((0..3_050).map(|i| NewTask::new(format!("task {i}"))).collect()).await.expect("enqueue");
    let vacuumed = || {
        count(
            &db,
            "SELECT count(*) FROM pg_stat_user_tables WHERE relid = '{s}.tasks'::regclass AND last_vacuum IS NOT NULL",
        )
    };
    assert_eq!(vacuumed().await, 0);
    let who = claimant("busy", Duration::from_secs(60), 3);
    let mut claimed = 0;
    while claimed < 3_050 {
        let got = queue.claim_batch(50, &who).await.expect("claim").len();
        assert!(got > 0, "tasks ran out after {claimed}");
        claimed += got;
    }
    let until = Instant::now() + Duration::from_secs(60);
    while vacuumed().await == 0 {
        assert!(Instant::now() < until, "no vacuum after {claimed} one-row claims");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Bad URLs and unreachable servers give one clear error, without the password.
#[tokio::test]
async fn connection_errors_are_clear_and_never_show_the_password() {
    let refused = PostgresOptions::new("postgres://bob:Sup3rSecretPw99@127.0.0.1:1/app")
        .connect_timeout(Duration::from_secs(3))
        .listen(false);
    let error = PostgresQueue::connect(refused).await.expect_err("nothing listens on port 1");
    let text = error.to_string();
    assert!(error.is_retryable(), "a refused connection is worth retrying: {text}");
    assert!(text.starts_with("postgres:"), "{text}");
    assert!(!text.contains("Sup3rSecretPw99"), "{text}");

    let garbled = PostgresQueue::connect(PostgresOptions::new("postgres://bob:Sup3rSecretPw99@host:notaport/db")).await;
    let text = garbled.expect_err("bad port").to_string();
    assert!(!text.contains("Sup3rSecretPw99"), "{text}");

    let Some(db) = TestDb::new().await else { return };
    let missing = PostgresOptions::new(db.url.clone())
        .schema(db.schema.clone())
        .mapping(bg_run_postgres::TableMapping::new(format!("{}.no_such_table", db.schema)));
    let text = PostgresQueue::connect(missing).await.expect_err("no such table").to_string();
    assert!(text.contains("does not exist"), "{text}");
}
