//! Embedding bg-run in your own program: the embedded queue, the subprocess dispatcher with a
//! real command, the worker in watch mode, and a clean shutdown on Ctrl-C.
//!
//! Run: cargo run -p bg-run-examples --example embed_worker
//! (it adds two tasks, processes them with `echo`, and stops after a few seconds or on Ctrl-C)

use std::sync::Arc;
use std::time::Duration;

use bg_run_core::{CancellationToken, EventKind, NewTask, RunMode, TaskQueue, Worker, WorkerConfig};
use bg_run_dispatch::{CommandDispatcher, CommandSpec};
use bg_run_sqlite::{SqliteOptions, SqliteQueue};

#[tokio::main]
async fn main() -> bg_run_core::Result<()> {
    let dir = std::env::temp_dir().join(format!("bg-run-embed-{}", std::process::id()));
    let queue = Arc::new(SqliteQueue::open(SqliteOptions::new(dir.join("tasks.db"))).await?);
    queue.enqueue(NewTask::new("say hello").body("to the reviewers")).await?;
    queue.enqueue(NewTask::new("say goodbye").body("to the old queue")).await?;

    // The program is executed directly; `{title}` and `{body}` are each one argument.
    let agent = CommandDispatcher::new(CommandSpec::new("echo").args(["agent did:", "{title}", "{body}"]))?;

    let mut config = WorkerConfig::new("embedded");
    config.mode = RunMode::Watch;
    config.concurrency = 2;
    config.poll_interval = Duration::from_millis(500);
    let worker = Worker::new(queue.clone(), Arc::new(agent), config);
    let mut events = worker.events().subscribe();

    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
        }
        stop.cancel();
    });
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if let EventKind::Completed { summary, .. } = &event.kind {
                println!("task {} done: {summary}", event.task.map(|t| t.to_string()).unwrap_or_default());
            }
        }
    });

    let summary = worker.run(shutdown).await?;
    println!("worker stopped: {summary:?}");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
