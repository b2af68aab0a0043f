//! bg-run-dispatch: runs agent CLIs as supervised subprocesses.
//!
//! [`CommandDispatcher`] runs any command on a task. The pieces it is built from are public so
//! agent presets can reuse them:
//!
//! - [`process`]: spawn and supervise one process (own process group, timeout, cancellation,
//!   `SIGTERM` → grace → `SIGKILL`, no orphans, capped capture).
//! - [`env`](mod@env): the agent's clean environment ([`EnvPolicy`]).
//! - [`prompt`]: placeholders, the default prompt, and sanitising untrusted task text.
//! - [`capture`]: capped tail buffers and line streaming.
//! - [`signal`]: signalling a whole process group (the crate's only `unsafe`).
//!
//! On those pieces: [`presets`] (`claude`, `codex`, `gemini`, `aider`, judged by their
//! structured output) and [`workspace`] (a git worktree and branch per task around any
//! dispatcher).
//!
//! This crate depends on `bg-run-core` only and knows no tracker.

pub mod capture;
pub mod command;
pub mod env;
pub mod presets;
pub mod process;
pub mod prompt;
pub mod signal;
pub mod workspace;

pub use capture::Stream;
pub use command::{CommandDispatcher, CommandSpec};
pub use env::{EnvPolicy, ResolvedEnv};
pub use presets::{build_preset, probe, PresetOptions, PRESETS};
pub use process::{run_process, Exit, ProcessError, ProcessResult, ProcessSpec, Stop};
pub use prompt::{render_prompt, sanitize, Placeholder, TaskVars, Template};
pub use workspace::{Keep, WorkspaceDispatcher, WorkspaceMode};
