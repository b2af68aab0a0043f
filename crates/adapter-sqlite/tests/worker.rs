//! The real worker engine over the embedded queue, at benchmark shape: thousands of tasks, eight
//! agents at once, an in-process agent that does nothing. The test checks that every task ran
//! exactly once; it prints the rate but asserts nothing about it (`bg-run bench` measures).
//! `BG_RUN_SQLITE_BENCH_TASKS=20000 cargo test --release -p bg-run-sqlite --test worker -- --nocapture`
//! reproduces a benchmark-sized run.

mod common;

use std::sync::Arc;
use std::time::Instant;

use bg_run_core::{
    async_trait, CancellationToken, DispatchContext, Dispatcher, NewTask, Outcome, RunMode, Task, Worker, WorkerConfig,
};
use bg_run_sqlite::{Status, TaskStore};
use common::TempDb;

struct NoOp;

#[async_trait]
impl Dispatcher for NoOp {
    fn name(&self) -> &str {
        "no-op"
    }

    async fn dispatch(&self, task: &Task, _ctx: DispatchContext) -> Outcome {
        Outcome::success(format!("did {}", task.title))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_agents_drain_thousands_of_tasks_each_exactly_once() {
    let db = TempDb::new();
    let queue = Arc::new(db.open().await);
    let tasks: usize = std::env::var("BG_RUN_SQLITE_BENCH_TASKS").ok().and_then(|n| n.parse().ok()).unwrap_or(3000);
    let ids =
        queue.enqueue_many((0..tasks).map(|n| NewTask::new(format!("task {n}"))).collect()).await.expect("enqueue");
    assert_eq!(ids.len(), tasks);

    let mut config = WorkerConfig::new("bench");
    config.mode = RunMode::Once;
    config.concurrency = 8;
    let started = Instant::now();
    let summary = Worker::new(queue.clone(), Arc::new(NoOp), config).run(CancellationToken::new()).await.expect("run");
    let elapsed = started.elapsed();
    eprintln!("{tasks} tasks in {elapsed:?}: {:.0} tasks/s", tasks as f64 / elapsed.as_secs_f64());

    assert_eq!(summary.claimed, tasks as u64);
    assert_eq!(summary.completed, tasks as u64);
    assert!(summary.all_succeeded());
    let done = queue.list(None).await.expect("list");
    assert_eq!(done.len(), tasks);
    for task in &done {
        assert_eq!(task.status, Status::Review, "task {} is {}", task.id, task.status);
        assert_eq!(task.attempts, 1, "task {} took {} attempts", task.id, task.attempts);
        assert_eq!(task.summary.as_deref(), Some(format!("did {}", task.title).as_str()));
        assert_eq!(queue.get(&task.task_id()).await.expect("get").history.len(), 1, "task {}", task.id);
    }
}
