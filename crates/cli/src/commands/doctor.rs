//! `bg-run doctor`: one line per check — the config, each agent's binary and version, its
//! workspace, and its queue — and a non-zero exit if any check fails.

use std::path::Path;

use bg_run_dispatch::{probe, WorkspaceMode, PRESETS};

use crate::args::DoctorArgs;
use crate::config::{self, FileConfig};
use crate::error::{CliError, EXIT_TASK_FAILED};
use crate::plan::{unknown_agent, AgentPlan};
use crate::{dispatchers, queues};

struct Report {
    failed: usize,
}

impl Report {
    fn line(&mut self, name: &str, result: Result<String, String>) {
        match result {
            Ok(detail) => println!("ok    {name}: {detail}"),
            Err(problem) => {
                self.failed += 1;
                println!("FAIL  {name}: {}", bg_run_core::redact::redact(&problem));
            }
        }
    }
}

pub async fn run(args: DoctorArgs, config_path: Option<&Path>) -> Result<i32, CliError> {
    let mut report = Report { failed: 0 };
    let file = match config::load(config_path) {
        Ok((file, path)) => {
            let source = path.map(|p| p.display().to_string()).unwrap_or_else(|| "no bg-run.toml; defaults".into());
            report.line("config", Ok(format!("{source}, {} agent(s)", file.agents.len())));
            file
        }
        Err(error) => {
            report.line("config", Err(error.to_string()));
            return Ok(EXIT_TASK_FAILED);
        }
    };
    let names: Vec<String> = if args.agents.is_empty() { file.agents.keys().cloned().collect() } else { args.agents };
    if names.is_empty() {
        report.line("agents", Err("none configured: add an [agents.NAME] table to bg-run.toml".into()));
    }
    for name in &names {
        if !file.agents.contains_key(name) {
            report.line(&format!("agent {name}"), Err(unknown_agent(&file, name).to_string()));
            continue;
        }
        check_agent(&mut report, &file, name).await;
    }
    Ok(if report.failed > 0 { EXIT_TASK_FAILED } else { 0 })
}

async fn check_agent(report: &mut Report, file: &FileConfig, name: &str) {
    let plan = match AgentPlan::named(file, name) {
        Ok(plan) => plan,
        Err(error) => return report.line(&format!("agent {name}"), Err(error.to_string())),
    };
    let settings = plan.worker_config(bg_run_core::RunMode::Watch).map(|c| {
        format!(
            "concurrency {}, timeout {}, max attempts {}",
            c.concurrency,
            humantime::format_duration(c.timeout),
            c.max_attempts
        )
    });
    report.line(&format!("agent {name} settings"), settings.map_err(|e| e.to_string()));
    report.line(&format!("agent {name} dispatch"), check_dispatch(&plan).await);
    if let Ok(WorkspaceMode::Worktree { .. }) = dispatchers::workspace_mode(&plan) {
        let workdir = plan.settings.workdir.clone().unwrap_or_else(|| ".".into());
        let repo = bg_run_dispatch::workspace::check_repository(&workdir).await;
        report.line(&format!("agent {name} worktree"), repo.map(|top| format!("git repository at {}", top.display())));
    }
    report.line(&format!("agent {name} queue"), check_queue(&plan).await);
}

/// Opens the agent's queue as a worker would, except that a missing SQLite file is reported
/// rather than created: a check changes nothing.
async fn check_queue(plan: &AgentPlan) -> Result<String, String> {
    if plan.queue_kind() == "sqlite" {
        let section = plan.settings.sqlite.clone().unwrap_or_default();
        let path = section.path.clone().unwrap_or_else(|| bg_run_sqlite::SqliteOptions::DEFAULT_PATH.into());
        if !path.exists() {
            return Ok(format!("sqlite database {} will be created on first use", path.display()));
        }
        return queues::open_sqlite(&section, false)
            .await
            .map(|_| format!("sqlite database {}", path.display()))
            .map_err(|e| e.to_string());
    }
    queues::open(plan).await.map(|q| format!("{} reachable", q.name())).map_err(|e| e.to_string())
}

async fn check_dispatch(plan: &AgentPlan) -> Result<String, String> {
    let kind = plan.dispatch_kind();
    dispatchers::build(plan).map_err(|e| e.to_string())?;
    if PRESETS.contains(&kind) {
        let options = dispatchers::preset_options(plan).map_err(|e| e.to_string())?;
        return probe(kind, &options).await.map(|version| format!("{kind} {version}")).map_err(|e| e.to_string());
    }
    let program = plan.settings.command.as_ref().and_then(|c| c.first()).cloned().unwrap_or_default();
    match bg_run_dispatch::process::find_program(Path::new(&program), std::env::var("PATH").ok().as_deref()) {
        Some(path) => Ok(format!("command {}", path.display())),
        None => Err(format!("agent command '{program}' not found on PATH")),
    }
}
