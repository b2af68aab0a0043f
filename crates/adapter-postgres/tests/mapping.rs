//! Table-mapping mode end to end: a user's own `tickets` table (uuid ids, varchar status, extra
//! columns bg-run knows nothing about) worked by the real worker, plus the mapping's guarantees.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bg_run_core::{
    CancellationToken, Claimant, Error, NewTask, Report, RunMode, TaskQueue, TaskQueueExt, Worker, WorkerConfig,
};
use bg_run_postgres::{PostgresQueue, TableMapping, TaskStore};
use common::{SleepyAgent, TestDb};
use sqlx::Row;

async fn user_table(db: &TestDb) -> (String, TableMapping) {
    let table = format!("\"{}\".tickets", db.schema);
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA \"{s}\";
         CREATE TABLE {table} (
             ticket uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             subject varchar(200) NOT NULL,
             description text,
             state varchar(20) NOT NULL DEFAULT 'open',
             reporter text NOT NULL DEFAULT 'customer',
             created timestamptz NOT NULL DEFAULT now()
         );",
        s = db.schema
    ))
    .execute(&db.pool)
    .await
    .expect("create the user's table");
    let mapping = TableMapping::new(format!("{}.tickets", db.schema))
        .columns("ticket", "subject", Some("description"), "state")
        .values("open", "in_progress", "resolved", "wontfix");
    (table, mapping)
}

async fn states(db: &TestDb, table: &str) -> Vec<(String, i64)> {
    sqlx::query(&format!("SELECT state::text, count(*) FROM {table} GROUP BY state ORDER BY state"))
        .fetch_all(&db.pool)
        .await
        .expect("count states")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn claimant(lease: Duration) -> Claimant {
    Claimant { worker_id: "mapper".to_owned(), agent: "test".to_owned(), lease, max_attempts: 3 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_resolves_the_rows_of_a_user_table() {
    let Some(db) = TestDb::new().await else { return };
    let (table, mapping) = user_table(&db).await;
    sqlx::query(&format!(
        "INSERT INTO {table} (subject, description) SELECT 'ticket ' || g, 'details ' || g FROM generate_series(1, 50) g"
    ))
    .execute(&db.pool)
    .await
    .expect("insert tickets");
    // Someone else's work in progress: no lease of bg-run's, so it is not ours to take.
    sqlx::query(&format!("INSERT INTO {table} (subject, state) VALUES ('handled by a human', 'in_progress')"))
        .execute(&db.pool)
        .await
        .expect("insert");

    let queue = Arc::new(PostgresQueue::connect(db.options().mapping(mapping).batch(4)).await.expect("connect"));
    let mut config = WorkerConfig::new("mapper");
    config.mode = RunMode::Once;
    config.concurrency = 4;
    config.lease = Duration::from_millis(500);
    let summary = Worker::new(queue.clone(), Arc::new(SleepyAgent::new(Duration::from_millis(5))), config)
        .run(CancellationToken::new())
        .await
        .expect("worker run");
    assert_eq!(summary.completed, 50);
    assert_eq!(states(&db, &table).await, [("in_progress".to_owned(), 1), ("resolved".to_owned(), 50)]);
    let summaries: i64 = sqlx::query(&format!(
        "SELECT count(*) FROM \"{}\".mapped_tasks m JOIN {table} t ON m.task_id = t.ticket::text
         WHERE m.summary = 'finished ' || t.subject AND m.attempts = 1 AND m.lease_token IS NULL",
        db.schema
    ))
    .fetch_one(&db.pool)
    .await
    .expect("count")
    .get(0);
    assert_eq!(summaries, 50, "each row's result is kept in the side table");
    let untouched: String = sqlx::query(&format!("SELECT state FROM {table} WHERE subject = 'handled by a human'"))
        .fetch_one(&db.pool)
        .await
        .expect("row")
        .get(0);
    assert_eq!(untouched, "in_progress");
}

#[tokio::test]
async fn the_user_table_stays_in_charge() {
    let Some(db) = TestDb::new().await else { return };
    let (table, mapping) = user_table(&db).await;
    let queue = PostgresQueue::connect(db.options().mapping(mapping.clone())).await.expect("connect");
    let who = claimant(Duration::from_secs(60));
    sqlx::query(&format!("INSERT INTO {table} (subject) VALUES ('first'), ('second')"))
        .execute(&db.pool)
        .await
        .expect("insert");

    // Both rows claimed at once (uuid ids, so no order to rely on).
    let mut claims = queue.claim_batch(2, &who).await.expect("claim");
    claims.sort_by(|a, b| a.task.title.cmp(&b.task.title));
    let [first, second] = <[_; 2]>::try_from(claims).expect("both rows");
    assert_eq!((first.task.title.as_str(), second.task.title.as_str()), ("first", "second"));

    // A human moving a running row elsewhere cancels it: the worker's claim is gone.
    queue.heartbeat(&first).await.expect("heartbeat while running");
    sqlx::query(&format!("UPDATE {table} SET state = 'on_hold' WHERE subject = 'first'"))
        .execute(&db.pool)
        .await
        .expect("put on hold");
    assert!(matches!(queue.heartbeat(&first).await, Err(Error::Conflict { .. })));
    assert!(matches!(queue.complete(&first, &Report::default()).await, Err(Error::Conflict { .. })));

    // A resolved row that a human reopens starts over with fresh attempts.
    queue.complete(&second, &Report { summary: "fixed".to_owned(), ..Report::default() }).await.expect("complete");
    sqlx::query(&format!("UPDATE {table} SET state = 'open' WHERE subject = 'second'"))
        .execute(&db.pool)
        .await
        .expect("reopen");
    let reopened = queue.claim_one(&who).await.expect("claim").expect("the reopened row");
    assert_eq!((reopened.task.title.as_str(), reopened.attempt), ("second", 1));
    assert_eq!(
        states(&db, &table).await,
        [("in_progress".to_owned(), 1), ("on_hold".to_owned(), 1)],
        "nothing else changed"
    );

    // What bg-run's own table offers is refused, with directions.
    let enqueue = queue.enqueue(NewTask::new("x")).await;
    assert!(matches!(enqueue, Err(Error::Unsupported { .. })), "{enqueue:?}");
    assert!(!queue.capabilities().enqueue && !queue.capabilities().wakeup);
    let list = queue.list(None).await.expect_err("list is for bg-run's own table");
    assert!(list.to_string().contains("table-mapping mode"), "{list}");

    // A mapping that does not match the table is refused at connect, naming the column.
    let wrong = mapping.columns("ticket", "title", Some("description"), "state");
    let error = PostgresQueue::connect(db.options().mapping(wrong)).await.expect_err("no column title");
    let text = error.to_string();
    assert!(text.contains("title_column 'title' is not a column"), "{text}");
    assert!(text.contains("subject"), "the message lists the real columns: {text}");
}
