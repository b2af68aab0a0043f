//! A fleet of workers over one schema, one of them killed mid-run (its future dropped, as a
//! SIGKILL would: no release, no report): the others finish everything once its leases expire.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bg_run_core::{CancellationToken, NewTask, RunMode, TaskId, Worker, WorkerConfig};
use bg_run_postgres::{PostgresQueue, TaskStore};
use common::{SleepyAgent, TestDb};
use sqlx::Row;

async fn scalar(db: &TestDb, sql: &str) -> i64 {
    sqlx::query(&sql.replace("{s}", &format!("\"{}\"", db.schema)))
        .fetch_one(&db.pool)
        .await
        .expect("query")
        .get::<i64, _>(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_one_killed_every_task_reviewed_once() {
    let Some(db) = TestDb::new().await else { return };
    let setup = db.connect(1).await;
    setup.enqueue_many((0..2000).map(|i| NewTask::new(format!("task {i}"))).collect()).await.expect("enqueue");

    const VICTIM: usize = 2;
    let batches = [1, 4, 8, 16];
    let mut agents = Vec::new();
    let mut handles = Vec::new();
    let stop = CancellationToken::new();
    for (n, batch) in batches.into_iter().enumerate() {
        let queue = Arc::new(PostgresQueue::connect(db.options().batch(batch).pool_size(4)).await.expect("connect"));
        let mut config = WorkerConfig::new("fleet");
        config.worker_id = format!("fleet-{n}");
        config.mode = RunMode::Watch;
        config.concurrency = 8;
        config.lease = Duration::from_secs(1);
        config.poll_interval = Duration::from_millis(100);
        config.backoff_base = Duration::from_millis(10);
        let agent = Arc::new(SleepyAgent::new(Duration::from_millis(20)));
        agents.push(agent.clone());
        handles.push(tokio::spawn(Worker::new(queue, agent, config).run(stop.clone())));
    }

    let until = Instant::now() + Duration::from_secs(180);
    while scalar(&db, "SELECT count(*) FROM {s}.tasks WHERE status = 'review'").await < 400 {
        assert!(Instant::now() < until, "the fleet did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Kill the victim while it has agents running, as a crash mid-task would.
    while agents[VICTIM].in_progress().is_empty() {
        assert!(Instant::now() < until, "the victim never ran an agent");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let victim = handles.remove(VICTIM);
    victim.abort();
    assert!(victim.await.expect_err("aborted").is_cancelled());
    let abandoned: HashSet<TaskId> = agents[VICTIM].in_progress();
    assert!(!abandoned.is_empty(), "the killed worker had agents running");

    loop {
        let reviewed = scalar(&db, "SELECT count(*) FROM {s}.tasks WHERE status = 'review'").await;
        if reviewed == 2000 {
            break;
        }
        assert!(Instant::now() < until, "only {reviewed} of 2000 tasks reviewed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    for handle in handles {
        handle.await.expect("worker task").expect("worker run");
    }

    assert_eq!(scalar(&db, "SELECT count(*) FROM {s}.tasks WHERE status <> 'review'").await, 0);
    // A task in review holds its successful attempt in its own row; the attempts table has every
    // earlier one.
    assert_eq!(scalar(&db, "SELECT count(*) FROM {s}.attempts WHERE outcome = 'done'").await, 0);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM {s}.tasks t WHERE attempts <> 1 + (SELECT count(*) FROM {s}.attempts a WHERE a.task_id = t.id)").await,
        0,
        "every attempt, finished or expired, is counted and recorded"
    );
    for id in &abandoned {
        let task = setup.get(id).await.expect("get");
        assert!(task.attempts >= 2, "task {id} was re-run after the kill: {task:?}");
        let expired = task.history.iter().find(|a| a.outcome == bg_run_postgres::AttemptOutcome::Expired);
        assert_eq!(expired.and_then(|a| a.worker.as_deref()), Some(format!("fleet-{VICTIM}").as_str()), "{task:?}");
        let done = task.history.iter().find(|a| a.outcome == bg_run_postgres::AttemptOutcome::Done);
        assert_ne!(done.and_then(|a| a.worker.as_deref()), Some(format!("fleet-{VICTIM}").as_str()));
    }
}
