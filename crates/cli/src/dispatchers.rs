//! The dispatcher registry: the one place that knows every agent preset.

use std::sync::Arc;

use bg_run_core::Dispatcher;
use bg_run_dispatch::{CommandDispatcher, CommandSpec, EnvPolicy};

use crate::error::CliError;
use crate::plan::AgentPlan;

pub const KNOWN_DISPATCHERS: &[&str] = &["command"];

pub fn unknown_dispatcher(kind: &str) -> CliError {
    CliError::config(format!("unknown dispatcher '{kind}' (known: {})", KNOWN_DISPATCHERS.join(", ")))
}

/// Builds the dispatcher an agent runs its tasks with.
pub fn build(plan: &AgentPlan) -> Result<Arc<dyn Dispatcher>, CliError> {
    match plan.dispatch_kind() {
        "command" => Ok(Arc::new(command(plan)?)),
        other => Err(unknown_dispatcher(other)),
    }
}

fn command(plan: &AgentPlan) -> Result<CommandDispatcher, CliError> {
    let s = &plan.settings;
    let Some((program, args)) = s.command.as_deref().and_then(|c| c.split_first()) else {
        return Err(CliError::config(format!(
            "agent '{}': no command to run; give it after `--` (bg-run -- my-agent {{prompt}}) or as `command = [...]` in bg-run.toml",
            plan.name
        )));
    };
    let mut spec = CommandSpec::new(program.clone()).args(args.iter().cloned());
    spec.prompt_template = prompt_template(plan)?;
    spec.env = env_policy(plan);
    spec.stdin_prompt = s.stdin_prompt.unwrap_or(false);
    if let Some(grace) = s.kill_grace {
        spec.kill_grace = grace.0;
    }
    let dispatcher =
        CommandDispatcher::new(spec).map_err(|e| CliError::config(format!("agent '{}': {e}", plan.name)))?;
    Ok(dispatcher)
}

/// The template text from `prompt_template` or `prompt_template_file`; `None` means the built-in
/// prompt.
pub fn prompt_template(plan: &AgentPlan) -> Result<Option<String>, CliError> {
    let s = &plan.settings;
    match (&s.prompt_template, &s.prompt_template_file) {
        (Some(_), Some(_)) => Err(CliError::config(format!(
            "agent '{}': set prompt_template or prompt_template_file, not both",
            plan.name
        ))),
        (Some(text), None) => Ok(Some(text.clone())),
        (None, Some(path)) => std::fs::read_to_string(path).map(Some).map_err(|e| {
            CliError::config(format!("agent '{}': cannot read prompt template {}: {e}", plan.name, path.display()))
        }),
        (None, None) => Ok(None),
    }
}

pub fn env_policy(plan: &AgentPlan) -> EnvPolicy {
    let s = &plan.settings;
    EnvPolicy { allow: s.env_allow.clone().unwrap_or_default(), set: s.env.clone().unwrap_or_default(), parent: None }
}
