//! Agent presets: the real agent CLIs run headless, judged by their structured output.
//!
//! | preset | command | judged by |
//! | --- | --- | --- |
//! | `claude` | `claude -p --output-format stream-json --verbose … -- PROMPT` | the `result` event (`is_error`, `subtype`) and the exit code |
//! | `codex` | `codex exec --json --skip-git-repo-check … -- PROMPT` | `turn.failed` and the exit code |
//! | `gemini` | `gemini --output-format json --approval-mode … --prompt=PROMPT` | the document's `error` and the exit code |
//! | `aider` | `aider --message=PROMPT --yes-always … -- FILES` | the exit code |
//!
//! Every preset builds on the same pieces as [`crate::CommandDispatcher`]: the prompt from
//! [`crate::prompt`] (task text sanitised and fenced), the clean environment of
//! [`crate::EnvPolicy`], and [`crate::run_process`] for supervision (process group, timeout,
//! `SIGTERM` → grace → `SIGKILL`, capped output). Output is parsed line by line as it arrives
//! and reported to the context's progress sink (`session`, `message`, `tool`, `tool_error`,
//! `error`, `output`).
//!
//! No preset turns an agent's permission system off unless [`PresetOptions::bypass_permissions`]
//! says so; see [`PresetOptions`] for which option applies to which preset. On a retry the
//! previous attempt's session is resumed where the CLI can (claude, codex, gemini); if that
//! session is gone, the run starts a new one.

mod aider;
mod claude;
mod codex;
mod gemini;
mod json;
mod options;
mod run;
#[cfg(test)]
mod testing;

use std::sync::Arc;
use std::time::Duration;

use bg_run_core::{DispatchContext, Dispatcher, Error, Result};

pub use aider::AiderDispatcher;
pub use claude::ClaudeDispatcher;
pub use codex::CodexDispatcher;
pub use gemini::GeminiDispatcher;
pub use options::PresetOptions;

use crate::process::{find_program, run_process, ProcessError, ProcessSpec};

/// The names [`build_preset`] knows.
pub const PRESETS: &[&str] = &[claude::NAME, codex::NAME, gemini::NAME, aider::NAME];

/// How long [`probe`] waits for `--version`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// The dispatcher for preset `name` with `options`. An unknown name, an option the preset does
/// not take, a bad value or a setting that would bypass the agent's permissions without
/// `bypass_permissions` is an [`Error::Config`] that says what to change. A binary that is not
/// installed is not an error here (each run then fails saying so); [`probe`] checks for it.
pub fn build_preset(name: &str, options: PresetOptions) -> Result<Arc<dyn Dispatcher>> {
    Ok(match name {
        claude::NAME => Arc::new(ClaudeDispatcher::new(options)?),
        codex::NAME => Arc::new(CodexDispatcher::new(options)?),
        gemini::NAME => Arc::new(GeminiDispatcher::new(options)?),
        aider::NAME => Arc::new(AiderDispatcher::new(options)?),
        other => return Err(unknown_preset(other)),
    })
}

/// How to install the CLI behind preset `name`.
pub fn install_hint(name: &str) -> Option<&'static str> {
    match name {
        claude::NAME => Some("npm i -g @anthropic-ai/claude-code"),
        codex::NAME => Some("npm i -g @openai/codex"),
        gemini::NAME => Some("npm i -g @google/gemini-cli"),
        aider::NAME => Some("python -m pip install aider-install && aider-install"),
        _ => None,
    }
}

fn unknown_preset(name: &str) -> Error {
    Error::config(format!("unknown agent preset '{name}' (known: {})", PRESETS.join(", ")))
}

/// Runs `<program> --version` for preset `name` (with the preset's environment, for at most
/// [`PROBE_TIMEOUT`]) and returns the first line it printed, e.g. `2.1.332 (Claude Code)`. For
/// `bg-run doctor`. Every failure is an [`Error::Config`] that says how to fix it.
pub async fn probe(name: &str, options: &PresetOptions) -> Result<String> {
    let hint = install_hint(name).ok_or_else(|| unknown_preset(name))?;
    let program = run::program_path(name, options)?;
    let env = options.env.resolve()?;
    let shown = program.display().to_string();
    let missing = || {
        if shown.contains('/') {
            Error::config(format!("{name} program {shown} not found; install it with {hint} or fix `program`"))
        } else {
            Error::config(format!("{shown} not found on PATH; install it with {hint}"))
        }
    };
    if find_program(&program, env.get("PATH")).is_none_or(|p| !p.is_file()) {
        return Err(missing());
    }
    let mut spec = ProcessSpec::new(&program, vec!["--version".to_owned()], env);
    spec.kill_grace = Duration::from_secs(1);
    let ctx = DispatchContext::new(std::env::temp_dir(), PROBE_TIMEOUT);
    let result = match run_process(spec, &ctx, |_, _| {}).await {
        Ok(result) => result,
        Err(ProcessError::NotFound { .. }) => return Err(missing()),
        Err(e) => return Err(Error::config(format!("{name}: {e}"))),
    };
    if !result.success() {
        return Err(Error::config(format!("`{shown} --version` failed: {}", run::failed_run_reason(&result))));
    }
    let stdout = result.stdout_tail();
    let stderr = result.stderr_tail();
    let first = |text: &str| text.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned);
    first(&stdout)
        .or_else(|| first(&stderr))
        .ok_or_else(|| Error::config(format!("`{shown} --version` printed nothing; is it really {name}?")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_presets_list_the_known_ones() {
        let err = build_preset("cursor", PresetOptions::default()).err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert_eq!(err, "unknown agent preset 'cursor' (known: claude, codex, gemini, aider)");
    }

    #[test]
    fn every_preset_builds_with_defaults_and_has_an_install_hint() {
        for name in PRESETS {
            let dispatcher = build_preset(name, PresetOptions::default()).unwrap();
            assert_eq!(dispatcher.name(), *name);
            assert!(install_hint(name).is_some());
        }
    }
}
