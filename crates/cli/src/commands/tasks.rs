//! `bg-run add | tasks | show | close | retry | cancel`: a human managing the embedded queue.

use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::pin::Pin;

use bg_run_core::{NewTask, TaskId, TaskQueue, TaskRecord, TaskStore};
use serde::Serialize;
use serde_json::Value;

use crate::args::{AddArgs, IdArgs, TasksArgs};
use crate::config;
use crate::error::CliError;
use crate::{queues, store};

pub async fn add(args: AddArgs, config_path: Option<&Path>) -> Result<i32, CliError> {
    let (file, _) = config::load(config_path)?;
    let body = match (&args.body, &args.body_file) {
        (Some(body), _) => body.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut body = String::new();
            std::io::stdin()
                .read_to_string(&mut body)
                .map_err(|e| CliError::config(format!("cannot read the body from stdin: {e}")))?;
            body
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| CliError::config(format!("cannot read --body-file {}: {e}", path.display())))?,
        (None, None) => String::new(),
    };
    if args.labels.iter().any(|l| l.trim().is_empty()) {
        return Err(CliError::config("--label cannot be empty"));
    }
    let task = NewTask {
        title: args.title.trim().to_owned(),
        body,
        labels: args.labels.clone(),
        // Without --queue-name the store's own queue applies, from its section of the config.
        queue: args.store.opts.queue_name.clone(),
        priority: args.priority,
        max_attempts: args.max_attempts,
        run_at: args.delay.map(|d| chrono::Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)),
        unique_key: args.unique_key.clone(),
    };
    task.validate()?;
    if args.store.queue == "github" {
        return add_issue(&args, &file, task).await;
    }
    let store = store::open(&args.store, &file, true).await?;
    let id = store.enqueue(task).await?;
    if args.json {
        print_json(&store.get(&id).await?)?;
    } else {
        println!("added task {id}: {}", args.title.trim());
    }
    Ok(0)
}

/// `bg-run add --queue github`: opens an issue that a worker on the same repository and trigger
/// label picks up. GitHub keeps the task from then on; there is no local record to print.
async fn add_issue(args: &AddArgs, file: &config::FileConfig, task: NewTask) -> Result<i32, CliError> {
    let section = queues::github_section_from_opts(&args.store.opts).over(&file.github);
    let queue = queues::open_github(Path::new("."), &section).await?;
    let number = queue.enqueue(task).await?;
    let repo = queue.repo().to_string();
    if args.json {
        print_json(
            &serde_json::json!({ "id": number.as_str().parse::<u64>().ok(), "queue": "github", "repo": repo, "title": args.title.trim() }),
        )?;
    } else {
        println!("opened issue #{number} in {repo}: {}", args.title.trim());
    }
    Ok(0)
}

pub async fn list(args: TasksArgs, config_path: Option<&Path>) -> Result<i32, CliError> {
    let (file, _) = config::load(config_path)?;
    let store = store::open(&args.store, &file, false).await?;
    let status = args.status.as_deref().map(store::parse_status).transpose()?;
    let tasks = store.list(status).await?;
    if args.json {
        print_json(&tasks)?;
        return Ok(0);
    }
    if tasks.is_empty() {
        println!("no tasks{}", args.status.map(|s| format!(" with status {s}")).unwrap_or_default());
        return Ok(0);
    }
    println!("{:>6}  {:<9}  {:>8}  TITLE", "ID", "STATUS", "ATTEMPTS");
    for task in &tasks {
        let attempts = match task.max_attempts {
            Some(max) => format!("{}/{max}", task.attempts),
            None => task.attempts.to_string(),
        };
        println!("{:>6}  {:<9}  {:>8}  {}", task.id, task.status.as_str(), attempts, one_line(&task.title, 70));
    }
    Ok(0)
}

pub async fn show(args: IdArgs, config_path: Option<&Path>) -> Result<i32, CliError> {
    let (file, _) = config::load(config_path)?;
    let store = store::open(&args.store, &file, false).await?;
    let task = store.get(&TaskId::new(args.id)).await?;
    if args.json {
        print_json(&task)?;
    } else {
        print_task(&json_value(&task)?);
    }
    Ok(0)
}

pub async fn close(args: IdArgs, config_path: Option<&Path>) -> Result<i32, CliError> {
    change(args, config_path, "closed", None, |store, id| store.close(id)).await
}

pub async fn retry(args: IdArgs, config_path: Option<&Path>) -> Result<i32, CliError> {
    change(args, config_path, "queued again", Some("cancel"), |store, id| store.retry(id)).await
}

pub async fn cancel(args: IdArgs, config_path: Option<&Path>) -> Result<i32, CliError> {
    change(args, config_path, "cancelled", Some("close"), |store, id| store.cancel(id)).await
}

/// A [`TaskStore`] change as its `async_trait` method returns it.
type Change<'a> = Pin<Box<dyn Future<Output = bg_run_core::Result<TaskRecord>> + Send + 'a>>;

/// Runs one change. When the task's status refuses it, the store says what to do instead; the
/// error then ends with that command, for the same store (`instead`).
async fn change(
    args: IdArgs,
    config_path: Option<&Path>,
    done: &str,
    instead: Option<&str>,
    op: for<'a> fn(&'a dyn TaskStore, &'a TaskId) -> Change<'a>,
) -> Result<i32, CliError> {
    let (file, _) = config::load(config_path)?;
    let store = store::open(&args.store, &file, false).await?;
    let task = match (op(&*store, &TaskId::new(args.id.trim())).await, instead) {
        (Ok(task), _) => task,
        (Err(refused @ bg_run_core::Error::Conflict { .. }), Some(command)) => {
            let mut error = CliError::from(refused);
            error.message.push_str(&format!(
                " (`bg-run {command} {}{}`)",
                args.id.trim(),
                store::location_flags(&args.store)
            ));
            return Err(error);
        }
        (Err(error), _) => return Err(error.into()),
    };
    if args.json {
        print_json(&task)?;
    } else {
        println!("task {} {done}: {}", task.id, task.title);
    }
    Ok(0)
}

fn print_task(task: &Value) {
    println!("task {}: {}", field(task, "id"), field(task, "title"));
    for key in [
        "status",
        "queue",
        "labels",
        "priority",
        "attempts",
        "max_attempts",
        "created_at",
        "updated_at",
        "run_at",
        "claimed_by",
        "lease_until",
        "duration_ms",
        "cost_usd",
        "turns",
        "session_id",
    ] {
        let value = &task[key];
        let empty = value.is_null() || value.as_array().is_some_and(|a| a.is_empty()) || value.as_str() == Some("");
        if !empty {
            println!("  {key:<13} {}", render(value));
        }
    }
    for (key, title) in [("body", "body"), ("summary", "summary"), ("last_error", "last error")] {
        if let Some(text) = task[key].as_str().filter(|t| !t.trim().is_empty()) {
            println!("\n{title}:");
            for line in text.lines() {
                println!("  {line}");
            }
        }
    }
    if let Some(history) = task["history"].as_array().filter(|h| !h.is_empty()) {
        println!("\nhistory:");
        for entry in history {
            let parts: Vec<String> = entry
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| format!("{k}={}", one_line(&render(v), 120)))
                        .collect()
                })
                .unwrap_or_default();
            println!("  - {}", parts.join("  "));
        }
    }
}

fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(render).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn field(task: &Value, key: &str) -> String {
    render(&task[key])
}

fn one_line(text: &str, max_chars: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > max_chars {
        format!("{}…", line.chars().take(max_chars - 1).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// A record as JSON. It goes through [`Value`] (whose objects keep their keys sorted), so every
/// store prints its records alike, and `show` renders the same fields it prints as JSON.
fn json_value(record: &impl Serialize) -> Result<Value, CliError> {
    serde_json::to_value(record).map_err(|e| CliError::failed(format!("cannot encode task: {e}")))
}

fn print_json(record: &impl Serialize) -> Result<(), CliError> {
    let value = json_value(record)?;
    println!("{}", serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string()));
    Ok(())
}
