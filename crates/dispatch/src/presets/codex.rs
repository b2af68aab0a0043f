//! Codex: `codex exec --json --skip-git-repo-check … -- PROMPT`, and on a retry
//! `codex exec resume --json … -- SESSION PROMPT`, stdin on `/dev/null` (Codex otherwise reads
//! it for more prompt).
//!
//! The output is JSONL: `thread.started` (the session id), `item.started` / `item.completed`
//! (agent messages, commands, file changes), then `turn.completed` with token usage, or
//! `turn.failed` with the error. A top-level `error` event alone is not a failure: Codex prints
//! one for every stream reconnect and may still complete the turn. Success is exit code 0 and no
//! `turn.failed`; the summary is the last agent message. Codex prints no cost, and on a resumed
//! session its token counts are the whole thread's.
//!
//! `exec resume` takes neither `-C` nor `--sandbox`: the run starts in the workspace anyway, and
//! the sandbox goes in as `-c sandbox_mode=…`.

use bg_run_core::redact::redact;
use bg_run_core::{async_trait, DispatchContext, Dispatcher, FailureKind, Outcome, ProgressSink, Result, Task, Tokens};
use serde_json::Value;

use super::json::{parse_object, str_field, u64_field};
use super::options::{Opt, PermissionSwitches, PresetOptions};
use super::run::{no_result_reason, one_line, Common, OutputParser};
use crate::capture::Stream;
use crate::process::ProcessResult;

pub(crate) const NAME: &str = "codex";

const TAKES: &[Opt] =
    &[Opt::Model, Opt::Sandbox, Opt::SystemPrompt, Opt::ConfigOverrides, Opt::ExtraArgs, Opt::BypassPermissions];

const SANDBOXES: &[&str] = &["read-only", "workspace-write", "danger-full-access"];
const DEFAULT_SANDBOX: &str = "workspace-write";
const OPEN_SANDBOX: &str = "danger-full-access";
const BYPASS_FLAGS: &[&str] = &["--dangerously-bypass-approvals-and-sandbox", "--yolo"];
const PERMISSIONS: PermissionSwitches<'static> = PermissionSwitches {
    option: "sandbox",
    modes: SANDBOXES,
    open_mode: OPEN_SANDBOX,
    mode_flags: &["--sandbox", "-s"],
    open_flags: BYPASS_FLAGS,
};

/// Runs Codex headless on a task. See the module documentation for how a run is judged.
#[derive(Debug)]
pub struct CodexDispatcher {
    common: Common,
    model: Option<String>,
    /// `None` with `bypass_permissions` and no explicit sandbox: the bypass flag instead.
    sandbox: Option<String>,
    /// `-c` pairs: the system prompt, then the configured overrides.
    config: Vec<String>,
    extra_args: Vec<String>,
}

impl CodexDispatcher {
    pub fn new(options: PresetOptions) -> Result<Self> {
        options.check(NAME, TAKES)?;
        options.guard_permissions(NAME, options.sandbox.as_deref(), &PERMISSIONS)?;
        for entry in &options.config_overrides {
            let Some((key, value)) = entry.split_once('=') else {
                return Err(bg_run_core::Error::config(format!(
                    "codex preset: config override {entry:?} is not key=value (e.g. model_reasoning_effort=\"high\")"
                )));
            };
            if key.trim() == "sandbox_mode" && value.contains(OPEN_SANDBOX) {
                options.require_bypass(NAME, "config override sandbox_mode = \"danger-full-access\"")?;
            }
        }

        let mut config = Vec::new();
        if let Some(text) = &options.system_prompt {
            config.push(format!("developer_instructions={}", toml_string(text)));
        }
        config.extend(options.config_overrides.iter().cloned());
        let sandbox = match (&options.sandbox, options.bypass_permissions) {
            (Some(sandbox), _) => Some(sandbox.clone()),
            (None, true) => None,
            (None, false) => Some(DEFAULT_SANDBOX.to_owned()),
        };
        Ok(CodexDispatcher {
            common: Common::new(NAME, &options)?,
            model: options.model.clone(),
            sandbox,
            config,
            extra_args: options.extra_args,
        })
    }

    fn argv(&self, prompt: &str, workdir: &std::path::Path, resume: Option<&str>) -> Vec<String> {
        let mut argv = vec!["exec".to_owned()];
        if resume.is_some() {
            argv.push("resume".to_owned());
        }
        argv.extend(["--json".to_owned(), "--skip-git-repo-check".to_owned()]);
        if let Some(model) = &self.model {
            argv.extend(["-m".to_owned(), model.clone()]);
        }
        if resume.is_none() {
            // Relative to bg-run's directory, like the working directory the run starts in.
            let workdir = std::path::absolute(workdir).unwrap_or_else(|_| workdir.to_path_buf());
            argv.extend(["-C".to_owned(), workdir.display().to_string()]);
        }
        match (&self.sandbox, resume) {
            (Some(sandbox), None) => argv.extend(["--sandbox".to_owned(), sandbox.clone()]),
            (Some(sandbox), Some(_)) => {
                argv.extend(["-c".to_owned(), format!("sandbox_mode={}", toml_string(sandbox))])
            }
            (None, _) => argv.push(BYPASS_FLAGS[0].to_owned()),
        }
        for pair in &self.config {
            argv.extend(["-c".to_owned(), pair.clone()]);
        }
        argv.extend(self.extra_args.iter().cloned());
        argv.push("--".to_owned());
        if let Some(session) = resume {
            argv.push(session.to_owned());
        }
        argv.push(prompt.to_owned());
        argv
    }
}

#[async_trait]
impl Dispatcher for CodexDispatcher {
    fn name(&self) -> &str {
        NAME
    }

    async fn dispatch(&self, task: &Task, ctx: DispatchContext) -> Outcome {
        let prompt = self.common.prompt(task, &ctx);
        let workdir = ctx.workdir.clone();
        self.common.dispatch(task, &ctx, |resume| self.argv(&prompt, &workdir, resume), CodexStream::default).await
    }
}

/// `text` as a TOML basic string, which is how `-c` values are read.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads `--json` JSONL line by line.
#[derive(Debug, Default)]
pub(crate) struct CodexStream {
    pub thread_id: Option<String>,
    pub last_message: Option<String>,
    pub turn_failed: Option<String>,
    /// The last top-level `error` event: a reconnect notice, or the error before `turn.failed`.
    pub last_error: Option<String>,
    pub tokens: Option<Tokens>,
    pub turns: u32,
    pub last_activity: Option<String>,
    pub ignored_lines: usize,
}

impl CodexStream {
    fn report(&mut self, progress: &ProgressSink, kind: &str, message: String) {
        if message.is_empty() {
            return;
        }
        progress.emit(kind, message.clone());
        self.last_activity = Some(message);
    }

    fn item_started(&mut self, item: &Value, progress: &ProgressSink) {
        if str_field(item, "type") == Some("command_execution") {
            self.report(progress, "tool", one_line(&format!("$ {}", str_field(item, "command").unwrap_or_default())));
        }
    }

    fn item_completed(&mut self, item: &Value, progress: &ProgressSink) {
        match str_field(item, "type") {
            Some("agent_message") => {
                let text = str_field(item, "text").unwrap_or_default();
                self.last_message = Some(text.to_owned());
                self.report(progress, "message", one_line(text));
            }
            Some("command_execution") => {
                let code = item.get("exit_code").and_then(Value::as_i64);
                if code.is_some_and(|c| c != 0) || str_field(item, "status") == Some("failed") {
                    let command = str_field(item, "command").unwrap_or_default();
                    let code = code.map_or_else(|| "failed".to_owned(), |c| format!("exit {c}"));
                    self.report(progress, "tool_error", one_line(&format!("{code}: {command}")));
                }
            }
            Some("file_change") => {
                let paths: Vec<&str> = item
                    .get("changes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| str_field(c, "path"))
                    .collect();
                self.report(progress, "tool", one_line(&format!("edit {}", paths.join(", "))));
            }
            Some("mcp_tool_call") => {
                let server = str_field(item, "server").unwrap_or("mcp");
                let tool = str_field(item, "tool").unwrap_or("tool");
                self.report(progress, "tool", one_line(&format!("{server}.{tool}")));
            }
            Some("web_search") => {
                self.report(
                    progress,
                    "tool",
                    one_line(&format!("web search: {}", str_field(item, "query").unwrap_or_default())),
                );
            }
            Some("error") => self.report(progress, "error", one_line(str_field(item, "message").unwrap_or_default())),
            _ => {}
        }
    }

    fn add_usage(&mut self, usage: &Value) {
        let tokens = self.tokens.get_or_insert_with(Tokens::default);
        tokens.input += u64_field(usage, "input_tokens").unwrap_or(0);
        tokens.output += u64_field(usage, "output_tokens").unwrap_or(0);
        tokens.cache_read += u64_field(usage, "cached_input_tokens").unwrap_or(0);
        tokens.cache_write += u64_field(usage, "cache_write_input_tokens").unwrap_or(0);
    }
}

impl OutputParser for CodexStream {
    fn line(&mut self, stream: Stream, line: &str, progress: &ProgressSink) {
        if stream != Stream::Stdout {
            return;
        }
        let Some(event) = parse_object(line) else {
            if !line.trim().is_empty() {
                self.ignored_lines += 1;
            }
            return;
        };
        match str_field(&event, "type") {
            Some("thread.started") => {
                self.thread_id = str_field(&event, "thread_id").map(str::to_owned);
                let thread = self.thread_id.as_deref().unwrap_or("without an id");
                progress.emit("session", one_line(&format!("thread {thread}")));
            }
            Some("item.started") => self.item_started(event.get("item").unwrap_or(&Value::Null), progress),
            Some("item.completed") => self.item_completed(event.get("item").unwrap_or(&Value::Null), progress),
            Some("turn.completed") => {
                self.turns += 1;
                if let Some(usage) = event.get("usage").filter(|u| u.is_object()) {
                    self.add_usage(usage);
                }
            }
            Some("turn.failed") => {
                let message = event.get("error").and_then(|e| str_field(e, "message")).unwrap_or("the turn failed");
                self.turn_failed = Some(message.to_owned());
            }
            Some("error") => {
                let message = str_field(&event, "message").unwrap_or_default();
                self.last_error = Some(message.to_owned());
                self.report(progress, "error", one_line(message));
            }
            _ => {}
        }
    }

    fn session_started(&self) -> bool {
        self.thread_id.is_some()
    }

    fn finish(self, process: &ProcessResult) -> Outcome {
        let mut outcome = process.to_outcome("");
        outcome.usage.session_id = self.thread_id.clone();
        outcome.usage.tokens = self.tokens;
        outcome.usage.turns = (self.turns > 0).then_some(self.turns);
        if process.stopped.is_some() {
            if let Some(last) = &self.last_activity {
                outcome.summary = format!("{}; the last thing it did: {last}", outcome.summary);
            }
            return outcome;
        }
        if let Some(message) = &self.turn_failed {
            outcome.failure = Some(FailureKind::Transient);
            outcome.summary = redact(message);
            return outcome;
        }
        if process.exit_code() != Some(0) {
            outcome.failure = Some(FailureKind::Transient);
            outcome.summary = match &self.last_error {
                Some(error) if !error.is_empty() => format!("{} ({})", redact(error), process.describe()),
                _ => no_result_reason(NAME, "completed turn", process),
            };
            return outcome;
        }
        if self.turns == 0 {
            outcome.failure = Some(FailureKind::Transient);
            outcome.summary = no_result_reason(NAME, "completed turn", process);
            return outcome;
        }
        outcome.failure = None;
        outcome.summary = match self.last_message.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
            Some(message) => redact(message),
            None => "codex finished without a final message".to_owned(),
        };
        outcome
    }
}

#[cfg(test)]
mod tests;
