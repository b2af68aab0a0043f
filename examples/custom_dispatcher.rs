//! A dispatcher that is not a CLI: any Rust code can be the "agent". This one counts the words
//! of each task on the embedded SQLite queue and reports progress while it works.
//!
//! Run: cargo run -p bg-run-examples --example custom_dispatcher

use std::sync::Arc;

use bg_run_core::{
    async_trait, CancellationToken, DispatchContext, Dispatcher, FailureKind, NewTask, Outcome, RunMode, Task,
    TaskQueue, TaskStore, Worker, WorkerConfig,
};
use bg_run_sqlite::{SqliteOptions, SqliteQueue};

struct WordCounter;

#[async_trait]
impl Dispatcher for WordCounter {
    fn name(&self) -> &str {
        "word-counter"
    }

    async fn dispatch(&self, task: &Task, ctx: DispatchContext) -> Outcome {
        if task.body.trim().is_empty() {
            // Permanent: retrying an empty task cannot help, so the worker gives up at once.
            return Outcome::failure(FailureKind::Permanent, "the task has no body to count");
        }
        ctx.progress.emit("message", format!("counting {} bytes", task.body.len()));
        let words = task.body.split_whitespace().count();
        Outcome::success(format!("'{}' has {words} words", task.title))
    }
}

#[tokio::main]
async fn main() -> bg_run_core::Result<()> {
    let dir = std::env::temp_dir().join(format!("bg-run-example-{}", std::process::id()));
    let queue = Arc::new(SqliteQueue::open(SqliteOptions::new(dir.join("tasks.db"))).await?);
    queue.enqueue(NewTask::new("release notes").body("Faster claims, fewer surprises.")).await?;
    queue.enqueue(NewTask::new("empty")).await?;

    let mut config = WorkerConfig::new("counter");
    config.mode = RunMode::Once;
    let worker = Worker::new(queue.clone(), Arc::new(WordCounter), config);
    let mut events = worker.events().subscribe();
    let printer = tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            println!("event: {:?}", event.kind);
        }
    });
    let summary = worker.run(CancellationToken::new()).await?;
    printer.abort();

    for task in queue.list(None).await? {
        println!("#{} {:<8} {}", task.id, task.status.as_str(), task.summary.or(task.last_error).unwrap_or_default());
    }
    println!("completed {}, gave up {}", summary.completed, summary.gave_up);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
