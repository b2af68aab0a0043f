//! `bg-run bench`: throughput from claim to report, and pickup latency from insert to dispatch,
//! through the real worker engine. The numbers quoted in the README come from here.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bg_run_core::{
    async_trait, CancellationToken, DispatchContext, Dispatcher, EventBus, EventKind, NewTask, Outcome, RunMode, Task,
    TaskQueue, Worker, WorkerConfig,
};
use serde_json::json;

use crate::args::{BenchArgs, StoreArgs};
use crate::config::{self, AgentSection};
use crate::dispatchers;
use crate::error::CliError;
use crate::plan::AgentPlan;
use crate::store;

/// An agent that does nothing, so the benchmark measures the queue and the engine.
struct NoopDispatcher;

#[async_trait]
impl Dispatcher for NoopDispatcher {
    fn name(&self) -> &str {
        "noop"
    }
    async fn dispatch(&self, _task: &Task, _ctx: DispatchContext) -> Outcome {
        Outcome::success("ok")
    }
}

pub async fn run(args: BenchArgs, config_path: Option<&Path>) -> Result<i32, CliError> {
    if args.tasks == 0 || args.concurrency == 0 || args.batch == 0 {
        return Err(CliError::config("--tasks, --concurrency and --batch must be at least 1"));
    }
    let (file, _) = config::load(config_path)?;
    let dispatcher = bench_dispatcher(&args)?;
    let scratch =
        tempfile::tempdir().map_err(|e| CliError::failed(format!("cannot create a scratch directory: {e}")))?;
    let mut store_args = StoreArgs { queue: args.queue.clone(), opts: args.opts.clone() };
    if store_args.opts.db.is_none() {
        store_args.opts.db = Some(scratch.path().join("bench.db"));
    }
    // Benchmark rows go to a schema of their own unless told otherwise, away from real tasks.
    if store_args.opts.pg_schema.is_none() {
        store_args.opts.pg_schema = Some("bg_run_bench".to_owned());
    }
    // A queue name of its own, so a benchmark never touches real tasks in a shared store.
    let queue_name = format!("bench-{}-{}", std::process::id(), chrono::Utc::now().timestamp_millis());
    store_args.opts.queue_name = Some(queue_name.clone());
    let store = store::open_for_work(&store_args, &file, Some(args.batch)).await?;

    let tasks: Vec<NewTask> = (0..args.tasks)
        .map(|i| NewTask { queue: Some(queue_name.clone()), ..NewTask::new(format!("bench task {i}")) })
        .collect();
    store.enqueue_many(tasks).await?;

    let mut config = WorkerConfig::new("bench");
    config.mode = RunMode::Once;
    config.concurrency = args.concurrency;
    config.max_attempts = 1;
    config.workdir = scratch.path().to_path_buf();
    let started = Instant::now();
    let summary = Worker::new(store.clone(), dispatcher.clone(), config.clone()).run(CancellationToken::new()).await?;
    let elapsed = started.elapsed();
    if summary.completed != args.tasks as u64 {
        return Err(CliError::failed(format!(
            "benchmark incomplete: {} of {} tasks completed ({} failed attempts)",
            summary.completed, args.tasks, summary.failed_attempts
        )));
    }

    let pickup = if args.pickup_samples > 0 {
        Some(measure_pickup(&store_args, &file, &queue_name, dispatcher.clone(), config, &args).await?)
    } else {
        None
    };

    let mut line = json!({
        "queue": args.queue,
        "dispatch": dispatcher.name(),
        "tasks": args.tasks,
        "concurrency": args.concurrency,
        "batch": args.batch,
        "seconds": round3(elapsed.as_secs_f64()),
        "tasks_per_sec": round3(args.tasks as f64 / elapsed.as_secs_f64()),
    });
    if let Some(p) = pickup {
        line["pickup_samples"] = json!(p.len());
        line["pickup_p50_ms"] = json!(round3(percentile(&p, 0.50)));
        line["pickup_p95_ms"] = json!(round3(percentile(&p, 0.95)));
    }
    println!("{line}");
    Ok(0)
}

fn bench_dispatcher(args: &BenchArgs) -> Result<Arc<dyn Dispatcher>, CliError> {
    match args.dispatch.as_str() {
        "noop" if args.command.is_empty() => Ok(Arc::new(NoopDispatcher)),
        "noop" => Err(CliError::config("--dispatch noop takes no program; use --dispatch command -- PROGRAM")),
        "command" => {
            let plan = AgentPlan {
                name: "bench".into(),
                settings: AgentSection {
                    dispatch: Some("command".into()),
                    command: Some(args.command.clone()).filter(|c| !c.is_empty()),
                    ..Default::default()
                },
            };
            dispatchers::build(&plan)
        }
        other => Err(CliError::config(format!("unknown bench dispatcher '{other}' (use noop or command)"))),
    }
}

/// Adds tasks one at a time, from a separate connection, to an idle watching worker and records
/// how long each took from just before its insert to the start of its dispatch.
async fn measure_pickup(
    store_args: &StoreArgs,
    file: &config::FileConfig,
    queue_name: &str,
    dispatcher: Arc<dyn Dispatcher>,
    mut config: WorkerConfig,
    args: &BenchArgs,
) -> Result<Vec<f64>, CliError> {
    let samples = args.pickup_samples;
    let events = EventBus::default();
    let mut started_rx = events.subscribe();
    let consumer = store::open_for_work(store_args, file, Some(args.batch)).await?;
    config.mode = RunMode::Watch;
    // Pickup must come from the queue's wake-up, not from a lucky poll.
    config.poll_interval = Duration::from_secs(5);
    let shutdown = CancellationToken::new();
    let worker = Worker::with_events(consumer, dispatcher, config, events);
    let handle = tokio::spawn(worker.run(shutdown.clone()));

    let producer = store::open(store_args, file, true).await?;
    let mut latencies = Vec::with_capacity(samples);
    // Let the worker reach its idle wait before the first sample.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..samples {
        let before = Instant::now();
        let task = NewTask { queue: Some(queue_name.to_owned()), ..NewTask::new(format!("pickup sample {i}")) };
        let id = producer.enqueue(task).await?;
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = started_rx.recv() => match event {
                    Ok(event) if matches!(event.kind, EventKind::Started { .. }) && event.task.as_ref() == Some(&id) => {
                        latencies.push(before.elapsed().as_secs_f64() * 1000.0);
                        break;
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => return Err(CliError::failed(format!("pickup measurement stopped: {e}"))),
                },
                _ = &mut deadline => return Err(CliError::failed(format!("pickup sample {i} was not picked up within 10s"))),
            }
        }
        // Wait for the worker to finish and go idle again, so every sample starts from idle.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    handle.await.map_err(|e| CliError::failed(format!("bench worker crashed: {e}")))??;
    Ok(latencies)
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
