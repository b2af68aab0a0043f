//! Adding tasks to the PostgreSQL queue from Rust: one task, a batch with unique keys (safe to run
//! again), a scheduled high-priority task, then a look at what is pending.
//!
//! Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!      cargo run -p bg-run-examples --example postgres_enqueue
//! Then work the queue with `bg-run --queue postgres --queue-name docs -- AGENT ...` (as many as you like, on any machine).

use bg_run_core::{NewTask, TaskQueue, TaskStore};
use bg_run_postgres::{PostgresOptions, PostgresQueue, Status};
use chrono::{Duration, Utc};

#[tokio::main]
async fn main() -> bg_run_core::Result<()> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    // Tables go in the `bg_run` schema, created on first connect; "docs" is a named queue in it.
    let queue = PostgresQueue::connect(PostgresOptions::new(url).queue("docs")).await?;

    let id =
        queue.enqueue(NewTask::new("Fix the broken links in README").body("Check every link; fix or remove.")).await?;
    println!("added task {id}");

    // One statement for the whole batch. The unique keys make it idempotent: running this example
    // again returns the same ids instead of adding the tasks twice.
    let pages = ["install", "configure", "deploy"];
    let batch = pages
        .iter()
        .map(|page| NewTask {
            unique_key: Some(format!("proofread-{page}")),
            labels: vec!["docs".to_owned()],
            ..NewTask::new(format!("Proofread docs/{page}.md")).body("Fix typos and unclear sentences.")
        })
        .collect();
    let ids = queue.enqueue_many(batch).await?;
    println!("proofreading tasks: {ids:?}");

    // Jumps the queue, but not before an hour from now; one attempt only.
    let scheduled = NewTask {
        priority: 10,
        max_attempts: Some(1),
        run_at: Some(Utc::now() + Duration::hours(1)),
        ..NewTask::new("Regenerate the API reference")
    };
    println!("scheduled task {}", queue.enqueue(scheduled).await?);

    for task in queue.list(Some(Status::Pending)).await? {
        println!("#{:<5} {:<40} priority {:>2}, runs from {}", task.id, task.title, task.priority, task.run_at);
    }
    queue.disconnect().await;
    Ok(())
}
