//! The one configuration type every preset is built from, and the checks that keep a preset from
//! silently ignoring an option or weakening an agent's permission system by accident.

use std::time::Duration;

use bg_run_core::{Error, Result};

use crate::env::EnvPolicy;
use crate::process::{DEFAULT_KILL_GRACE, DEFAULT_OUTPUT_CAP};

/// How to run one agent preset. The CLI fills it from `bg-run.toml` and flags; every field has a
/// safe default ([`PresetOptions::default`]).
///
/// Not every preset takes every option: building a preset with an option it does not take is an
/// [`Error::Config`] naming the option, rather than a setting that quietly does nothing.
///
/// | option | claude | codex | gemini | aider |
/// | --- | --- | --- | --- | --- |
/// | `model` | `--model` | `-m` | `-m` | `--model` |
/// | `allowed_tools` / `disallowed_tools` | `--allowedTools` / `--disallowedTools` | | | |
/// | `permission_mode` | `--permission-mode` | | | |
/// | `max_turns` | `--max-turns` | | | |
/// | `sandbox` | | `--sandbox` (default `workspace-write`) | | |
/// | `approval_mode` | | | `--approval-mode` (default `default`) | |
/// | `system_prompt` | `--append-system-prompt` | `-c developer_instructions=…` | | |
/// | `config_overrides` | | `-c key=value` | | |
/// | `files` | | | | files aider may edit |
/// | `bypass_permissions` | `--dangerously-skip-permissions` | `--dangerously-bypass-approvals-and-sandbox` | `--approval-mode yolo` | |
/// | `extra_args` | ✓ | ✓ | ✓ | ✓ |
///
/// `program`, `prompt_template`, `env`, `resume`, `kill_grace` and `output_cap` apply to all.
#[derive(Clone, Debug, PartialEq)]
pub struct PresetOptions {
    /// The agent binary: a bare name looked up on the agent's `PATH`, or a path. Default: the
    /// preset's name (`claude`, `codex`, `gemini`, `aider`).
    pub program: Option<String>,
    pub model: Option<String>,
    /// Claude tool rules the agent may use without asking, e.g. `Edit`, `Bash(cargo test:*)`.
    pub allowed_tools: Vec<String>,
    /// Claude tools removed from the session altogether.
    pub disallowed_tools: Vec<String>,
    /// Claude permission mode, e.g. `acceptEdits` or `plan`. `bypassPermissions` needs
    /// `bypass_permissions`.
    pub permission_mode: Option<String>,
    /// Claude's limit on model turns per run.
    pub max_turns: Option<u32>,
    /// Codex sandbox: `read-only` or `workspace-write` (the default). `danger-full-access`
    /// needs `bypass_permissions`.
    pub sandbox: Option<String>,
    /// Gemini approval mode: `default` (the default), `auto_edit` or `plan`. `yolo` needs
    /// `bypass_permissions`.
    pub approval_mode: Option<String>,
    /// Text added to the agent's system prompt (a skill file's content; reading the file is the
    /// caller's job).
    pub system_prompt: Option<String>,
    /// More arguments, placed after the preset's own and before the prompt. Permission-bypass
    /// flags here need `bypass_permissions` too.
    pub extra_args: Vec<String>,
    /// Codex `-c key=value` configuration overrides (the value is TOML), in order.
    pub config_overrides: Vec<String>,
    /// Files aider may edit.
    pub files: Vec<String>,
    /// Turn the agent's own permission checks off. Without it no preset bypasses them, and
    /// options or extra arguments that would are refused.
    pub bypass_permissions: bool,
    /// On a retry, resume the previous attempt's agent session where the CLI can (claude
    /// `--resume`, codex `exec resume`, gemini `--resume`). Default true.
    pub resume: bool,
    /// Replaces the built-in prompt ([`crate::prompt::default_prompt`]); placeholders as in
    /// [`crate::prompt`], except `{prompt}` and `{summary_file}`.
    pub prompt_template: Option<String>,
    pub env: EnvPolicy,
    /// Time between `SIGTERM` and `SIGKILL` when a run times out or is cancelled. Default 10s.
    pub kill_grace: Duration,
    /// Bytes of stdout and of stderr kept, each (the tail). Default 64 KiB.
    pub output_cap: usize,
}

impl Default for PresetOptions {
    fn default() -> Self {
        PresetOptions {
            program: None,
            model: None,
            allowed_tools: Vec::new(),
            disallowed_tools: Vec::new(),
            permission_mode: None,
            max_turns: None,
            sandbox: None,
            approval_mode: None,
            system_prompt: None,
            extra_args: Vec::new(),
            config_overrides: Vec::new(),
            files: Vec::new(),
            bypass_permissions: false,
            resume: true,
            prompt_template: None,
            env: EnvPolicy::default(),
            kill_grace: DEFAULT_KILL_GRACE,
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }
}

/// An option that only some presets take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opt {
    Model,
    AllowedTools,
    DisallowedTools,
    PermissionMode,
    MaxTurns,
    Sandbox,
    ApprovalMode,
    SystemPrompt,
    ExtraArgs,
    ConfigOverrides,
    Files,
    BypassPermissions,
}

impl Opt {
    const ALL: [Opt; 12] = [
        Opt::Model,
        Opt::AllowedTools,
        Opt::DisallowedTools,
        Opt::PermissionMode,
        Opt::MaxTurns,
        Opt::Sandbox,
        Opt::ApprovalMode,
        Opt::SystemPrompt,
        Opt::ExtraArgs,
        Opt::ConfigOverrides,
        Opt::Files,
        Opt::BypassPermissions,
    ];

    fn name(self) -> &'static str {
        match self {
            Opt::Model => "model",
            Opt::AllowedTools => "allowed_tools",
            Opt::DisallowedTools => "disallowed_tools",
            Opt::PermissionMode => "permission_mode",
            Opt::MaxTurns => "max_turns",
            Opt::Sandbox => "sandbox",
            Opt::ApprovalMode => "approval_mode",
            Opt::SystemPrompt => "system_prompt",
            Opt::ExtraArgs => "extra_args",
            Opt::ConfigOverrides => "config_overrides",
            Opt::Files => "files",
            Opt::BypassPermissions => "bypass_permissions",
        }
    }

    fn is_set(self, o: &PresetOptions) -> bool {
        match self {
            Opt::Model => o.model.is_some(),
            Opt::AllowedTools => !o.allowed_tools.is_empty(),
            Opt::DisallowedTools => !o.disallowed_tools.is_empty(),
            Opt::PermissionMode => o.permission_mode.is_some(),
            Opt::MaxTurns => o.max_turns.is_some(),
            Opt::Sandbox => o.sandbox.is_some(),
            Opt::ApprovalMode => o.approval_mode.is_some(),
            Opt::SystemPrompt => o.system_prompt.is_some(),
            Opt::ExtraArgs => !o.extra_args.is_empty(),
            Opt::ConfigOverrides => !o.config_overrides.is_empty(),
            Opt::Files => !o.files.is_empty(),
            Opt::BypassPermissions => o.bypass_permissions,
        }
    }
}

impl PresetOptions {
    /// Refuses options `preset` does not take, empty values, NUL bytes and zero limits.
    pub(crate) fn check(&self, preset: &str, takes: &[Opt]) -> Result<()> {
        if let Some(opt) = Opt::ALL.into_iter().find(|o| !takes.contains(o) && o.is_set(self)) {
            let taken: Vec<&str> = takes.iter().map(|o| o.name()).collect();
            return Err(Error::config(format!(
                "the {preset} preset does not take `{}`; it takes {} (and program, prompt_template, env, resume, kill_grace, output_cap)",
                opt.name(),
                taken.join(", ")
            )));
        }
        let single = [
            ("program", &self.program),
            ("model", &self.model),
            ("permission_mode", &self.permission_mode),
            ("sandbox", &self.sandbox),
            ("approval_mode", &self.approval_mode),
        ];
        for (name, value) in single {
            if let Some(value) = value {
                if value.trim().is_empty() {
                    return Err(Error::config(format!(
                        "{preset} preset: `{name}` is empty; remove it or give a value"
                    )));
                }
            }
        }
        let lists = [
            ("allowed_tools", &self.allowed_tools),
            ("disallowed_tools", &self.disallowed_tools),
            ("config_overrides", &self.config_overrides),
            ("files", &self.files),
        ];
        for (name, values) in lists {
            if values.iter().any(|v| v.trim().is_empty()) {
                return Err(Error::config(format!("{preset} preset: `{name}` has an empty entry; remove it")));
            }
        }
        let all_text = single
            .iter()
            .filter_map(|(_, v)| v.as_deref())
            .chain(lists.iter().flat_map(|(_, v)| v.iter().map(String::as_str)))
            .chain(self.extra_args.iter().map(String::as_str))
            .chain(self.system_prompt.as_deref());
        for text in all_text {
            if text.contains('\0') {
                return Err(Error::config(format!(
                    "{preset} preset: an option contains a NUL byte, which no argument can hold"
                )));
            }
        }
        if self.max_turns == Some(0) {
            return Err(Error::config(format!("{preset} preset: `max_turns` must be at least 1")));
        }
        if self.output_cap == 0 {
            return Err(Error::config(format!("{preset} preset: `output_cap` must be at least 1 byte")));
        }
        Ok(())
    }

    /// Checks the agent CLI's permission mode (`mode`, the preset's own option) against
    /// `switches`, and refuses every way of turning the permission checks off, as an option or as
    /// an extra argument, unless `bypass_permissions` is set.
    pub(crate) fn guard_permissions(
        &self,
        preset: &str,
        mode: Option<&str>,
        switches: &PermissionSwitches<'_>,
    ) -> Result<()> {
        let PermissionSwitches { option, modes, open_mode, mode_flags, open_flags } = *switches;
        if let Some(mode) = mode {
            Self::one_of(preset, option, mode, modes)?;
            if mode == open_mode {
                self.require_bypass(preset, &format!("{option} = \"{open_mode}\""))?;
            }
        }
        if let Some(flag) = self.extra_flag(open_flags) {
            self.require_bypass(preset, &format!("extra argument {flag}"))?;
        }
        if mode_flags.iter().any(|flag| self.extra_value(flag) == Some(open_mode)) {
            let flag = mode_flags.first().copied().unwrap_or_default();
            self.require_bypass(preset, &format!("extra argument {flag} {open_mode}"))?;
        }
        Ok(())
    }

    /// Refuses `value` for `option` unless it is one of `known`.
    pub(crate) fn one_of(preset: &str, option: &str, value: &str, known: &[&str]) -> Result<()> {
        if known.contains(&value) {
            return Ok(());
        }
        Err(Error::config(format!("{preset} preset: `{option}` is {value:?}; it must be one of {}", known.join(", "))))
    }

    /// Refuses a setting that turns the agent's permission checks off unless
    /// `bypass_permissions` is set. `what` says which setting did it.
    pub(crate) fn require_bypass(&self, preset: &str, what: &str) -> Result<()> {
        if self.bypass_permissions {
            return Ok(());
        }
        Err(Error::config(format!(
            "{preset} preset: {what} turns the agent's permission checks off; set `bypass_permissions = true` if that is really meant"
        )))
    }

    /// The first of `flags` among `extra_args`, either alone or as `--flag=value`.
    pub(crate) fn extra_flag<'f>(&self, flags: &[&'f str]) -> Option<&'f str> {
        self.extra_args.iter().find_map(|arg| {
            let name = arg.split_once('=').map_or(arg.as_str(), |(name, _)| name);
            flags.iter().find(|f| **f == name).copied()
        })
    }

    /// The value following `flag` in `extra_args` (`--flag value` or `--flag=value`).
    pub(crate) fn extra_value(&self, flag: &str) -> Option<&str> {
        let mut args = self.extra_args.iter();
        while let Some(arg) = args.next() {
            if arg == flag {
                return args.next().map(String::as_str);
            }
            if let Some(value) = arg.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')) {
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_option_the_preset_does_not_take_is_named() {
        let options = PresetOptions { sandbox: Some("read-only".into()), ..Default::default() };
        let err = options.check("claude", &[Opt::Model, Opt::MaxTurns]).unwrap_err().to_string();
        assert!(err.contains("does not take `sandbox`"), "{err}");
        assert!(err.contains("model, max_turns"), "{err}");
    }

    #[test]
    fn empty_values_nul_bytes_and_zero_limits_are_refused() {
        let cases = [
            PresetOptions { model: Some(" ".into()), ..Default::default() },
            PresetOptions { files: vec![String::new()], ..Default::default() },
            PresetOptions { extra_args: vec!["a\0b".into()], ..Default::default() },
            PresetOptions { max_turns: Some(0), ..Default::default() },
            PresetOptions { output_cap: 0, ..Default::default() },
        ];
        for options in cases {
            assert!(options.check("x", &Opt::ALL).is_err(), "{options:?}");
        }
        assert!(PresetOptions::default().check("x", &[]).is_ok());
    }

    #[test]
    fn extra_args_are_searched_in_both_spellings() {
        let options = PresetOptions {
            extra_args: vec!["--permission-mode=plan".into(), "--sandbox".into(), "read-only".into()],
            ..Default::default()
        };
        assert_eq!(options.extra_value("--permission-mode"), Some("plan"));
        assert_eq!(options.extra_value("--sandbox"), Some("read-only"));
        assert_eq!(options.extra_value("--model"), None);
        assert_eq!(options.extra_flag(&["--yolo", "--sandbox"]), Some("--sandbox"));
        assert_eq!(options.extra_flag(&["--permission-mode"]), Some("--permission-mode"));
        assert_eq!(options.extra_flag(&["--yolo"]), None);
    }
}

/// How an agent CLI turns its permission checks off: a mode option (`option` in bg-run's config,
/// `mode_flags` on the CLI's command line, the first being its name in messages) whose value
/// `open_mode` does it, and switches (`open_flags`) that do it outright.
#[derive(Clone, Copy)]
pub(crate) struct PermissionSwitches<'a> {
    pub option: &'a str,
    pub modes: &'a [&'a str],
    pub open_mode: &'a str,
    pub mode_flags: &'a [&'a str],
    pub open_flags: &'a [&'a str],
}
