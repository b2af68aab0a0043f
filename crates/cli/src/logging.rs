//! Logs: human-readable by default, JSON lines with `--log-format json`. Lifecycle events from
//! the workers are turned into log lines here, so the engine itself stays quiet.

use std::io::IsTerminal;

use bg_run_core::{EventBus, EventKind};
use tracing_subscriber::EnvFilter;

use crate::args::{GlobalArgs, LogFormat};

pub fn init(args: &GlobalArgs) {
    let level = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (_, 0) => "info",
        (_, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("BG_RUN_LOG").unwrap_or_else(|_| {
        // Our crates at the chosen level, the libraries below us only when they warn.
        EnvFilter::new(format!("warn,bg_run={level},bg_run_core={level},bg_run_dispatch={level},bg_run_sqlite={level},bg_run_postgres={level},bg_run_github={level}"))
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.with_target(false).with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}

/// Logs every event on the bus until the bus closes.
pub fn log_events(events: &EventBus) -> tokio::task::JoinHandle<()> {
    let mut rx = events.subscribe();
    // On a terminal, show what the agent is doing; in a log file that is debug noise.
    let show_progress = std::io::stderr().is_terminal();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(event) => log_event(&event, show_progress),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "event log fell behind")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

fn log_event(event: &bg_run_core::Event, show_progress: bool) {
    let agent = event.agent.as_str();
    let task = event.task.as_ref().map(|t| t.as_str()).unwrap_or("-");
    match &event.kind {
        EventKind::Claimed { attempt, title } => tracing::info!(agent, task, attempt, "claimed: {title}"),
        EventKind::Started { attempt } => tracing::debug!(agent, task, attempt, "agent started"),
        EventKind::Progress { kind, message } => {
            if show_progress {
                tracing::info!(agent, task, kind = kind.as_str(), "{message}")
            } else {
                tracing::debug!(agent, task, kind = kind.as_str(), "{message}")
            }
        }
        EventKind::Completed { duration_ms, summary, usage } => {
            let first_line = summary.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            tracing::info!(
                agent,
                task,
                duration_ms,
                cost_usd = usage.cost_usd,
                turns = usage.turns,
                "done, ready for review: {first_line}"
            )
        }
        EventKind::Failed { attempt, kind, reason } => {
            tracing::warn!(agent, task, attempt, kind = kind.as_str(), "attempt failed: {reason}")
        }
        EventKind::Retrying { attempt, at } => tracing::info!(agent, task, attempt, at = %at, "will retry"),
        EventKind::GaveUp { attempts, reason } => tracing::error!(agent, task, attempts, "gave up: {reason}"),
        EventKind::Released => tracing::info!(agent, task, "released back to the queue"),
        EventKind::QueueError { operation, error, retry_in_ms } => {
            tracing::warn!(agent, operation = operation.as_str(), retry_in_ms, "queue error: {error}")
        }
        EventKind::Paused { reason } => tracing::warn!(agent, "not claiming: {reason}"),
        _ => tracing::debug!(agent, task, event = ?event.kind, "event"),
    }
}
