//! What a human does to tasks: add, list, show, close, retry, cancel.

mod common;

use std::time::Duration;

use bg_run_core::{Error, NewTask, Report, TaskId, TaskQueue};
use bg_run_sqlite::{AttemptOutcome, Status, TaskStore};
use common::{add, claim_one, claimant, TempDb};

const LONG: Duration = Duration::from_secs(600);

#[tokio::test]
async fn the_same_unique_key_gives_the_same_task() {
    let db = TempDb::new();
    let queue = db.open().await;
    let keyed = |title: &str, key: &str| NewTask { unique_key: Some(key.to_owned()), ..NewTask::new(title) };
    let first = queue.enqueue(keyed("nightly report", "report-2026-11-25")).await.expect("enqueue");
    let again = queue.enqueue(keyed("nightly report (again)", "report-2026-11-25")).await.expect("enqueue");
    assert_eq!(first, again);
    let batch = queue
        .enqueue_many(vec![keyed("a", "k1"), keyed("b", "k1"), keyed("c", "report-2026-11-25"), NewTask::new("d")])
        .await
        .expect("enqueue_many");
    assert_eq!(batch[0], batch[1], "a key repeated inside one batch");
    assert_eq!(batch[2], first, "a key from an earlier call");
    assert_ne!(batch[3], first);
    let elsewhere = NewTask { queue: Some("other".to_owned()), ..keyed("x", "report-2026-11-25") };
    assert_ne!(queue.enqueue(elsewhere).await.expect("enqueue"), first, "keys are per queue");

    let all = queue.list(None).await.expect("list");
    assert_eq!(all.len(), 4);
    let record = queue.get(&first).await.expect("get");
    assert_eq!(record.title, "nightly report", "the first task is kept as it was");
    assert_eq!(record.unique_key.as_deref(), Some("report-2026-11-25"));
}

#[tokio::test]
async fn invalid_tasks_are_refused_and_nothing_of_the_batch_is_added() {
    let db = TempDb::new();
    let queue = db.open().await;
    let refused = [
        NewTask::new("  "),
        NewTask { max_attempts: Some(0), ..NewTask::new("no attempts") },
        NewTask::new("empty label").label(""),
        NewTask { queue: Some(" ".to_owned()), ..NewTask::new("no queue") },
    ];
    for task in refused {
        let title = task.title.clone();
        let error = queue.enqueue_many(vec![NewTask::new("fine"), task]).await.expect_err("refused");
        assert!(matches!(error, Error::Config(_)), "{title:?}: {error:?}");
    }
    assert!(queue.list(None).await.expect("list").is_empty(), "a refused batch adds nothing");
}

#[tokio::test]
async fn list_shows_every_task_oldest_first_with_its_history() {
    let db = TempDb::new();
    let queue = db.open().await;
    let ids = queue
        .enqueue_many(vec![
            NewTask { max_attempts: Some(5), priority: 3, ..NewTask::new("first").body("body one").label("x") },
            NewTask::new("second"),
            NewTask::new("third"),
        ])
        .await
        .expect("enqueue");
    let claim = claim_one(&queue, &claimant("w", LONG)).await;
    assert_eq!(claim.task.id, ids[0], "the highest priority goes first");
    queue.complete(&claim, &Report { summary: "done!".to_owned(), ..Report::default() }).await.expect("complete");
    claim_one(&queue, &claimant("w2", LONG)).await;

    let all = queue.list(None).await.expect("list");
    let titles: Vec<&str> = all.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles, ["first", "second", "third"]);
    let first = &all[0];
    assert_eq!(first.id.to_string(), ids[0].0);
    assert_eq!((first.status, first.attempts, first.max_attempts), (Status::Review, 1, Some(5)));
    assert_eq!((first.body.as_str(), first.labels.as_slice(), first.priority), ("body one", &["x".to_owned()][..], 3));
    assert_eq!(first.history.len(), 1);
    assert_eq!(first.history[0].message.as_deref(), Some("done!"));
    assert!(first.created_at <= first.updated_at);
    assert_eq!(all[1].status, Status::Running);
    assert_eq!(all[1].max_attempts, Some(3), "the claiming worker's limit when the task has none");
    assert_eq!(all[1].claimed_by.as_deref(), Some("w2"));
    assert!(all[1].lease_until.is_some());
    assert_eq!((all[2].status, all[2].max_attempts), (Status::Pending, None));

    let running = queue.list(Some(Status::Running)).await.expect("list running");
    assert_eq!(running.iter().map(|t| t.title.as_str()).collect::<Vec<_>>(), ["second"]);
    let review = queue.list(Some(Status::Review)).await.expect("list review");
    assert_eq!(review.len(), 1);
    assert_eq!(review[0].history.len(), 1, "filtered lists carry history too");
}

#[tokio::test]
async fn get_explains_missing_and_malformed_ids() {
    let db = TempDb::new();
    let queue = db.open().await;
    let id = add(&queue, "exists").await;
    assert_eq!(queue.get(&TaskId::new(format!("#{id}"))).await.expect("get with #").title, "exists");
    match queue.get(&TaskId::new("42")).await {
        Err(error @ Error::NotFound { .. }) => assert_eq!(error.to_string(), "task 42 not found"),
        other => panic!("get of a missing task: {other:?}"),
    }
    for bad in ["abc", "", "-3", "1.5"] {
        match queue.get(&TaskId::new(bad)).await {
            Err(Error::Config(message)) => assert!(message.contains("must be a positive number"), "{message}"),
            other => panic!("get({bad:?}): {other:?}"),
        }
    }
}

#[tokio::test]
async fn close_takes_any_task_that_is_not_running() {
    let db = TempDb::new();
    let queue = db.open().await;
    let pending = add(&queue, "pending").await;
    let running = add(&queue, "running").await;
    let closed = queue.close(&pending).await.expect("close pending");
    assert_eq!(closed.status, Status::Closed);
    assert_eq!(queue.close(&pending).await.expect("close again").status, Status::Closed);

    let claim = claim_one(&queue, &claimant("w", LONG)).await;
    assert_eq!(claim.task.id, running);
    match queue.close(&running).await {
        Err(Error::Conflict { message }) => {
            assert!(message.contains("is running") && message.contains("bg-run cancel"), "{message}")
        }
        other => panic!("close of a running task: {other:?}"),
    }
    queue.complete(&claim, &Report::default()).await.expect("complete");
    assert_eq!(queue.close(&running).await.expect("close after review").status, Status::Closed);
    assert!(queue.poll(10).await.expect("poll").is_empty(), "closed tasks are never eligible");
    assert!(matches!(queue.close(&TaskId::new("999")).await, Err(Error::NotFound { .. })));
}

#[tokio::test]
async fn retry_makes_a_finished_task_eligible_again_and_keeps_its_history() {
    let db = TempDb::new();
    let queue = db.open().await;
    let id = add(&queue, "again").await;
    let claim = claim_one(&queue, &claimant("w", LONG)).await;
    match queue.retry(&id).await {
        Err(Error::Conflict { message }) => assert!(message.contains("is running"), "{message}"),
        other => panic!("retry of a running task: {other:?}"),
    }
    queue
        .complete(&claim, &Report { summary: "first result".to_owned(), ..Report::default() })
        .await
        .expect("complete");

    let retried = queue.retry(&id).await.expect("retry");
    assert_eq!((retried.status, retried.attempts), (Status::Pending, 0));
    assert_eq!(retried.history.len(), 1, "history is kept");
    let claim = claim_one(&queue, &claimant("w", LONG)).await;
    assert_eq!(claim.attempt, 1, "attempts start over");

    queue.complete(&claim, &Report::default()).await.expect("complete");
    queue.close(&id).await.expect("close");
    assert_eq!(queue.retry(&id).await.expect("retry closed").status, Status::Pending);
    queue.cancel(&id).await.expect("cancel");
    assert_eq!(queue.retry(&id).await.expect("retry cancelled").status, Status::Pending);
}

#[tokio::test]
async fn cancel_stops_pending_and_running_tasks() {
    let db = TempDb::new();
    let queue = db.open().await;
    let pending = add(&queue, "pending").await;
    assert_eq!(queue.cancel(&pending).await.expect("cancel pending").status, Status::Cancelled);
    assert_eq!(queue.cancel(&pending).await.expect("cancel twice").status, Status::Cancelled);

    let running = add(&queue, "running").await;
    let claim = claim_one(&queue, &claimant("w", LONG)).await;
    let cancelled = queue.cancel(&running).await.expect("cancel running");
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(cancelled.history.last().map(|a| a.outcome), Some(AttemptOutcome::Cancelled));
    match queue.heartbeat(&claim).await {
        Err(Error::Conflict { message }) => assert!(message.contains("cancelled"), "{message}"),
        other => panic!("heartbeat after cancel: {other:?}"),
    }
    assert!(matches!(queue.complete(&claim, &Report::default()).await, Err(Error::Conflict { .. })));
    assert_eq!(queue.get(&running).await.expect("get").status, Status::Cancelled, "a late report changes nothing");

    let reviewed = add(&queue, "reviewed").await;
    let claim = claim_one(&queue, &claimant("w", LONG)).await;
    queue.complete(&claim, &Report::default()).await.expect("complete");
    match queue.cancel(&reviewed).await {
        Err(Error::Conflict { message }) => {
            assert!(message.contains("is review") && message.contains("close"), "{message}")
        }
        other => panic!("cancel of a reviewed task: {other:?}"),
    }
}

#[tokio::test]
async fn records_serialize_for_json_output() {
    let db = TempDb::new();
    let queue = db.open().await;
    let id = add(&queue, "json").await;
    let claim = claim_one(&queue, &claimant("w", LONG)).await;
    queue.complete(&claim, &Report { summary: "ok".to_owned(), ..Report::default() }).await.expect("complete");
    let json = serde_json::to_value(queue.get(&id).await.expect("get")).expect("serialize");
    assert_eq!(json["id"], serde_json::json!(id.as_str().parse::<i64>().expect("numeric id")));
    assert_eq!(json["status"], "review");
    assert_eq!(json["history"][0]["outcome"], "done");
    assert_eq!(json["history"][0]["number"], 1);
    assert!(json["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{}", json["created_at"]);
    assert!(json["lease_until"].is_null());
}
