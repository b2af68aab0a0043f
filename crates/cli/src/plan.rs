//! Turns config sections and flags into what a worker needs: one `AgentSection` with every
//! setting resolved, then a `WorkerConfig`. Named agents and the ad-hoc mode share this path.

use std::path::PathBuf;
use std::time::Duration;

use bg_run_core::{RunMode, WorkerConfig};

use crate::args::WorkerArgs;
use crate::config::{AgentSection, FileConfig, SqliteSection};
use crate::duration::ConfigDuration;
use crate::error::CliError;

/// An agent ready to be wired: its name and fully merged settings.
#[derive(Clone, Debug)]
pub struct AgentPlan {
    pub name: String,
    pub settings: AgentSection,
}

impl AgentPlan {
    /// A named agent from the config: its section over `[defaults]`, queue sections over the
    /// top-level ones.
    pub fn named(file: &FileConfig, name: &str) -> Result<AgentPlan, CliError> {
        let section = file.agents.get(name).ok_or_else(|| unknown_agent(file, name))?;
        Ok(AgentPlan { name: name.to_owned(), settings: with_queue_sections(section.over(&file.defaults), file) })
    }

    /// The ad-hoc worker: flags over `[defaults]`.
    pub fn adhoc(file: &FileConfig, args: &WorkerArgs) -> Result<AgentPlan, CliError> {
        let flags = section_from_flags(args)?;
        let settings = with_queue_sections(flags.over(&file.defaults), file);
        let name = args.name.clone().unwrap_or_else(|| settings.dispatch.clone().unwrap_or_else(|| "command".into()));
        crate::config::validate_agent_name(&name)?;
        Ok(AgentPlan { name, settings })
    }

    pub fn queue_kind(&self) -> &str {
        self.settings.queue.as_deref().unwrap_or("sqlite")
    }

    pub fn dispatch_kind(&self) -> &str {
        self.settings.dispatch.as_deref().unwrap_or("command")
    }

    pub fn worker_config(&self, mode: RunMode) -> Result<WorkerConfig, CliError> {
        let s = &self.settings;
        let d = |v: Option<ConfigDuration>, default: Duration| v.map(|c| c.0).unwrap_or(default);
        let mut config = WorkerConfig::new(&self.name);
        config.mode = mode;
        config.concurrency = s.concurrency.unwrap_or(1);
        config.timeout = d(s.timeout, Duration::from_secs(30 * 60));
        config.max_attempts = s.max_attempts.unwrap_or(3);
        config.backoff_base = d(s.backoff, Duration::from_secs(30));
        config.backoff_max = d(s.backoff_max, Duration::from_secs(6 * 3600));
        config.poll_interval = d(s.poll_interval, default_poll_interval(self.queue_kind()));
        config.lease = d(s.lease, Duration::from_secs(120));
        config.shutdown_grace = d(s.shutdown_grace, Duration::from_secs(30));
        config.workdir = s.workdir.clone().unwrap_or_else(|| PathBuf::from("."));
        config.daily_budget_usd = s.daily_budget_usd;
        config.resume_sessions = s.resume_sessions.unwrap_or(true);
        if !config.workdir.is_dir() {
            return Err(CliError::config(format!(
                "agent '{}': workdir {} does not exist or is not a directory",
                self.name,
                config.workdir.display()
            )));
        }
        config.validate()?;
        Ok(config)
    }
}

/// Trackers cost rate limit per poll (even if conditional requests make idle polls free);
/// local queues wake up on new work anyway, so their poll is only a fallback.
fn default_poll_interval(queue: &str) -> Duration {
    match queue {
        "github" => Duration::from_secs(60),
        _ => Duration::from_secs(5),
    }
}

fn with_queue_sections(mut settings: AgentSection, file: &FileConfig) -> AgentSection {
    settings.sqlite =
        Some(settings.sqlite.as_ref().map(|s| s.over(&file.sqlite)).unwrap_or_else(|| file.sqlite.clone()));
    settings.postgres =
        Some(settings.postgres.as_ref().map(|s| s.over(&file.postgres)).unwrap_or_else(|| file.postgres.clone()));
    settings.github =
        Some(settings.github.as_ref().map(|s| s.over(&file.github)).unwrap_or_else(|| file.github.clone()));
    settings
}

pub fn unknown_agent(file: &FileConfig, name: &str) -> CliError {
    let known: Vec<&str> = file.agents.keys().map(String::as_str).collect();
    if known.is_empty() {
        CliError::config(format!(
            "unknown agent '{name}': the config defines no agents (add an [agents.NAME] table to bg-run.toml)"
        ))
    } else {
        CliError::config(format!("unknown agent '{name}' (known agents: {})", known.join(", ")))
    }
}

fn section_from_flags(args: &WorkerArgs) -> Result<AgentSection, CliError> {
    let dur = |d: Option<Duration>| d.map(ConfigDuration);
    let q = &args.queue_opts;
    let sel = &args.selection;
    let sqlite = (q.db.is_some() || q.queue_name.is_some() || !sel.label_filter.is_empty()).then(|| SqliteSection {
        path: q.db.clone(),
        queue_name: q.queue_name.clone(),
        labels: (!sel.label_filter.is_empty()).then(|| sel.label_filter.clone()),
    });
    let postgres = (q.pg_schema.is_some() || q.queue_name.is_some() || !sel.label_filter.is_empty()).then(|| {
        crate::config::PostgresSection {
            schema: q.pg_schema.clone(),
            queue_name: q.queue_name.clone(),
            labels: (!sel.label_filter.is_empty()).then(|| sel.label_filter.clone()),
            ..Default::default()
        }
    });
    let github = (q.repo.is_some() || q.api_url.is_some()).then(|| crate::queues::github_section_from_opts(q));
    let command = (!args.command.is_empty()).then(|| args.command.clone());
    let a = &args.agent;
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    // `-- PROGRAM` with no --dispatch means the command dispatcher.
    let dispatch = args.dispatch.clone();
    Ok(AgentSection {
        queue: args.queue.clone(),
        dispatch,
        command,
        prompt_template: args.prompt.clone(),
        prompt_template_file: args.prompt_file.clone(),
        stdin_prompt: args.stdin_prompt.then_some(true),
        concurrency: args.concurrency,
        timeout: dur(args.timeout),
        max_attempts: args.max_attempts,
        backoff: dur(args.backoff),
        poll_interval: dur(args.poll_interval),
        lease: dur(args.lease),
        shutdown_grace: dur(args.grace),
        workdir: args.workdir.clone(),
        env_allow: (!args.env_allow.is_empty()).then(|| args.env_allow.clone()),
        daily_budget_usd: args.budget_usd,
        program: a.program.clone(),
        model: a.model.clone(),
        allowed_tools: list(&a.allowed_tools),
        disallowed_tools: list(&a.disallowed_tools),
        permission_mode: a.permission_mode.clone(),
        max_turns: a.max_turns,
        sandbox: a.sandbox.clone(),
        approval_mode: a.approval_mode.clone(),
        system_prompt_file: a.system_prompt_file.clone(),
        extra_args: list(&a.extra_args),
        bypass_permissions: a.bypass_permissions.then_some(true),
        workspace: a.worktree.then(|| "worktree".to_owned()),
        sqlite,
        postgres,
        github,
        ..Default::default()
    })
}
