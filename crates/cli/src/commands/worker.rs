//! `bg-run [--once] -- PROGRAM…` (one ad-hoc worker) and `bg-run run` (the named agents).

use std::path::Path;

use bg_run_core::{EventBus, RunMode, RunSummary, Worker};

use crate::args::{RunArgs, WorkerArgs};
use crate::config;
use crate::error::{CliError, EXIT_TASK_FAILED};
use crate::plan::{unknown_agent, AgentPlan};
use crate::{dispatchers, logging, queues, signals};

pub async fn run_adhoc(args: WorkerArgs, config_path: Option<&Path>) -> Result<i32, CliError> {
    let (file, _) = config::load(config_path)?;
    let mode = if args.once { RunMode::Once } else { RunMode::Watch };
    let plan = AgentPlan::adhoc(&file, &args)?;
    run_agents(vec![plan], mode).await
}

pub async fn run_named(args: RunArgs, config_path: Option<&Path>) -> Result<i32, CliError> {
    let (file, path) = config::load(config_path)?;
    if file.agents.is_empty() {
        let source = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| config::DEFAULT_CONFIG_FILE.to_owned() + " (not found)");
        return Err(CliError::config(format!(
            "no agents configured in {source}: add an [agents.NAME] table, or run one worker with `bg-run -- PROGRAM`"
        )));
    }
    let names: Vec<String> =
        if args.agents.is_empty() { file.agents.keys().cloned().collect() } else { args.agents.clone() };
    let mut plans = Vec::with_capacity(names.len());
    for name in &names {
        if !file.agents.contains_key(name) {
            return Err(unknown_agent(&file, name));
        }
        plans.push(AgentPlan::named(&file, name)?);
    }
    let mode = if args.once { RunMode::Once } else { RunMode::Watch };
    run_agents(plans, mode).await
}

/// Builds every worker first, so a bad setting in any agent stops the run before anything is
/// claimed; then runs them side by side until they drain (once) or a signal arrives.
async fn run_agents(plans: Vec<AgentPlan>, mode: RunMode) -> Result<i32, CliError> {
    let events = EventBus::default();
    let mut workers = Vec::with_capacity(plans.len());
    for plan in &plans {
        let config = plan.worker_config(mode)?;
        let dispatcher = dispatchers::build(plan)?;
        let queue = queues::open(plan).await?;
        tracing::info!(
            agent = plan.name.as_str(),
            queue = queue.name(),
            dispatch = dispatcher.name(),
            concurrency = config.concurrency,
            mode = if mode == RunMode::Once { "once" } else { "watch" },
            "agent ready"
        );
        workers.push(Worker::with_events(queue, dispatcher, config, events.clone()));
    }
    let log = logging::log_events(&events);
    let shutdown = signals::shutdown_token();
    let mut handles = Vec::with_capacity(workers.len());
    for worker in workers {
        handles.push(tokio::spawn(worker.run(shutdown.clone())));
    }
    let mut total = RunSummary::default();
    let mut first_error = None;
    for handle in handles {
        match handle.await {
            Ok(Ok(summary)) => total.merge(&summary),
            Ok(Err(error)) => first_error = first_error.or(Some(CliError::from(error))),
            Err(join) => first_error = first_error.or(Some(CliError::failed(format!("a worker crashed: {join}")))),
        }
    }
    // Workers are gone, so dropping the last sender lets the logger drain and stop.
    drop(events);
    let _ = log.await;
    if let Some(error) = first_error {
        return Err(error);
    }
    tracing::info!(
        claimed = total.claimed,
        completed = total.completed,
        failed_attempts = total.failed_attempts,
        gave_up = total.gave_up,
        released = total.released,
        "finished"
    );
    Ok(if mode == RunMode::Once && !total.all_succeeded() { EXIT_TASK_FAILED } else { 0 })
}
