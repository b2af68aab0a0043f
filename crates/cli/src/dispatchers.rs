//! The dispatcher registry: the one place that knows every agent preset.

use std::sync::Arc;

use bg_run_core::Dispatcher;
use bg_run_dispatch::{
    build_preset, CommandDispatcher, CommandSpec, EnvPolicy, Keep, PresetOptions, WorkspaceDispatcher, WorkspaceMode,
    PRESETS,
};

use crate::error::CliError;
use crate::plan::AgentPlan;

pub fn unknown_dispatcher(kind: &str) -> CliError {
    CliError::config(format!("unknown dispatcher '{kind}' (known: command, {})", PRESETS.join(", ")))
}

/// Builds the dispatcher an agent runs its tasks with, in the workspace it is configured for.
pub fn build(plan: &AgentPlan) -> Result<Arc<dyn Dispatcher>, CliError> {
    let kind = plan.dispatch_kind();
    let dispatcher: Arc<dyn Dispatcher> = match kind {
        "command" => Arc::new(command(plan)?),
        preset if PRESETS.contains(&preset) => {
            if plan.settings.command.is_some() {
                return Err(CliError::config(format!(
                    "agent '{}': `--dispatch {preset}` runs the {preset} CLI itself; drop the program after `--` (or use extra_args)",
                    plan.name
                )));
            }
            build_preset(preset, preset_options(plan)?).map_err(|e| in_agent(plan, e))?
        }
        other => return Err(unknown_dispatcher(other)),
    };
    Ok(WorkspaceDispatcher::wrap(dispatcher, workspace_mode(plan)?))
}

fn in_agent(plan: &AgentPlan, error: bg_run_core::Error) -> CliError {
    CliError::config(format!("agent '{}': {error}", plan.name))
}

/// The options of a preset dispatcher, from the agent's settings.
pub fn preset_options(plan: &AgentPlan) -> Result<PresetOptions, CliError> {
    let s = &plan.settings;
    let mut options = PresetOptions {
        program: s.program.clone(),
        model: s.model.clone(),
        allowed_tools: s.allowed_tools.clone().unwrap_or_default(),
        disallowed_tools: s.disallowed_tools.clone().unwrap_or_default(),
        permission_mode: s.permission_mode.clone(),
        max_turns: s.max_turns,
        sandbox: s.sandbox.clone(),
        approval_mode: s.approval_mode.clone(),
        system_prompt: system_prompt(plan)?,
        config_overrides: s.config_overrides.clone().unwrap_or_default(),
        files: s.files.clone().unwrap_or_default(),
        extra_args: s.extra_args.clone().unwrap_or_default(),
        bypass_permissions: s.bypass_permissions.unwrap_or(false),
        resume: s.resume_sessions.unwrap_or(true),
        prompt_template: prompt_template(plan)?,
        env: env_policy(plan),
        ..PresetOptions::default()
    };
    if let Some(grace) = s.kill_grace {
        options.kill_grace = grace.0;
    }
    Ok(options)
}

fn system_prompt(plan: &AgentPlan) -> Result<Option<String>, CliError> {
    let s = &plan.settings;
    match (&s.system_prompt, &s.system_prompt_file) {
        (Some(_), Some(_)) => {
            Err(CliError::config(format!("agent '{}': set system_prompt or system_prompt_file, not both", plan.name)))
        }
        (Some(text), None) => Ok(Some(text.clone())),
        (None, Some(path)) => std::fs::read_to_string(path).map(Some).map_err(|e| {
            CliError::config(format!("agent '{}': cannot read system prompt {}: {e}", plan.name, path.display()))
        }),
        (None, None) => Ok(None),
    }
}

pub fn workspace_mode(plan: &AgentPlan) -> Result<WorkspaceMode, CliError> {
    let s = &plan.settings;
    let keep = match s.worktree_keep.as_deref() {
        None | Some("on_failure") => Keep::OnFailure,
        Some("always") => Keep::Always,
        Some("never") => Keep::Never,
        Some(other) => {
            return Err(CliError::config(format!(
                "agent '{}': worktree_keep '{other}' is not one of always, on_failure, never",
                plan.name
            )))
        }
    };
    match s.workspace.as_deref() {
        None | Some("fixed") if s.worktree_keep.is_none() && s.worktree_base.is_none() => Ok(WorkspaceMode::Fixed),
        None | Some("fixed") => Err(CliError::config(format!(
            "agent '{}': worktree_keep and worktree_base need workspace = \"worktree\"",
            plan.name
        ))),
        Some("worktree") => Ok(WorkspaceMode::Worktree { keep, base_ref: s.worktree_base.clone() }),
        Some(other) => {
            Err(CliError::config(format!("agent '{}': workspace '{other}' is not one of fixed, worktree", plan.name)))
        }
    }
}

fn command(plan: &AgentPlan) -> Result<CommandDispatcher, CliError> {
    let s = &plan.settings;
    let preset_only = [
        ("program", s.program.is_some()),
        ("model", s.model.is_some()),
        ("allowed_tools", s.allowed_tools.is_some()),
        ("disallowed_tools", s.disallowed_tools.is_some()),
        ("permission_mode", s.permission_mode.is_some()),
        ("max_turns", s.max_turns.is_some()),
        ("sandbox", s.sandbox.is_some()),
        ("approval_mode", s.approval_mode.is_some()),
        ("system_prompt", s.system_prompt.is_some() || s.system_prompt_file.is_some()),
        ("config_overrides", s.config_overrides.is_some()),
        ("files", s.files.is_some()),
        ("extra_args", s.extra_args.is_some()),
        ("bypass_permissions", s.bypass_permissions.is_some()),
    ];
    if let Some((key, _)) = preset_only.iter().find(|(_, set)| *set) {
        return Err(CliError::config(format!(
            "agent '{}': {key} applies to the agent presets ({}), not to dispatch = \"command\"",
            plan.name,
            PRESETS.join(", ")
        )));
    }
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
