//! What a human does to tasks, where the embedded queue has more to say than the shared store
//! suite (testkit's `store_conformance`, run in `conformance.rs`) checks for every store.

mod common;

use std::time::Duration;

use bg_run_core::{Error, NewTask, TaskQueue};
use bg_run_sqlite::TaskStore;
use common::{add, claim_one, claimant, TempDb};

const LONG: Duration = Duration::from_secs(600);

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

/// Why a worker lost its claim, in the words its log shows.
#[tokio::test]
async fn a_claim_taken_by_a_human_says_why() {
    let db = TempDb::new();
    let queue = db.open().await;
    for (title, expected) in [("cancelled", "was cancelled"), ("closed", "is closed")] {
        let id = add(&queue, title).await;
        let claim = claim_one(&queue, &claimant("w", LONG)).await;
        match title {
            "cancelled" => queue.cancel(&id).await.expect("cancel"),
            _ => queue.close(&id).await.expect("close"),
        };
        match queue.heartbeat(&claim).await {
            Err(Error::Conflict { message }) => assert!(message.contains(expected), "{message}"),
            other => panic!("heartbeat after a human {title} the task: {other:?}"),
        }
    }
}
