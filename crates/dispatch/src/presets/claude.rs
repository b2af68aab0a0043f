//! Claude Code: `claude -p --output-format stream-json --verbose … -- PROMPT`.
//!
//! The stream is one JSON event per line: `system` (subtype `init`, with the session id), then
//! `assistant` / `user` messages, and last a `result` event carrying the final text, `is_error`,
//! `subtype`, cost, turns, token usage and permission denials. An API error is a `result` with
//! `is_error: true` and often `subtype: "success"`, so `is_error` decides, together with the
//! exit code and an `error_*` subtype.
//!
//! Failure kinds: `error_max_turns` is `Permanent` (the configured turn limit would stop a retry
//! the same way, and resuming to get more turns would quietly multiply the limit);
//! `error_max_budget_usd` is `Budget`; everything else, API errors included, is `Transient`.

use bg_run_core::redact::redact;
use bg_run_core::{async_trait, DispatchContext, Dispatcher, FailureKind, Outcome, ProgressSink, Result, Task, Tokens};
use serde_json::Value;

use super::json::{parse_object, str_field, u32_field, u64_field};
use super::options::{Opt, PermissionSwitches, PresetOptions};
use super::run::{no_result_reason, one_line, tool_line, Common, OutputParser};
use crate::capture::Stream;
use crate::process::ProcessResult;

pub(crate) const NAME: &str = "claude";

const TAKES: &[Opt] = &[
    Opt::Model,
    Opt::AllowedTools,
    Opt::DisallowedTools,
    Opt::PermissionMode,
    Opt::MaxTurns,
    Opt::SystemPrompt,
    Opt::ExtraArgs,
    Opt::BypassPermissions,
];

/// `--permission-mode` values of Claude Code 2.1.
const PERMISSION_MODES: &[&str] = &["acceptEdits", "auto", "bypassPermissions", "dontAsk", "manual", "plan"];
const BYPASS_MODE: &str = "bypassPermissions";
const BYPASS_FLAGS: &[&str] = &["--dangerously-skip-permissions", "--allow-dangerously-skip-permissions"];
const PERMISSIONS: PermissionSwitches<'static> = PermissionSwitches {
    option: "permission_mode",
    modes: PERMISSION_MODES,
    open_mode: BYPASS_MODE,
    mode_flags: &["--permission-mode"],
    open_flags: BYPASS_FLAGS,
};

/// Runs Claude Code headless on a task. See the module documentation for how a run is judged.
#[derive(Debug)]
pub struct ClaudeDispatcher {
    common: Common,
    /// Everything between `-p` and the resume flag.
    args: Vec<String>,
    extra_args: Vec<String>,
}

impl ClaudeDispatcher {
    pub fn new(options: PresetOptions) -> Result<Self> {
        options.check(NAME, TAKES)?;
        options.guard_permissions(NAME, options.permission_mode.as_deref(), &PERMISSIONS)?;

        let mut args: Vec<String> = ["-p", "--output-format", "stream-json", "--verbose"].map(String::from).into();
        if let Some(model) = &options.model {
            args.extend(["--model".to_owned(), model.clone()]);
        }
        match &options.permission_mode {
            Some(mode) => args.extend(["--permission-mode".to_owned(), mode.clone()]),
            None if options.bypass_permissions => args.push(BYPASS_FLAGS[0].to_owned()),
            None => {}
        }
        if let Some(turns) = options.max_turns {
            args.extend(["--max-turns".to_owned(), turns.to_string()]);
        }
        if let Some(text) = &options.system_prompt {
            // The `=` form keeps a prompt that starts with a dash (a Markdown list) a value.
            args.push(format!("--append-system-prompt={text}"));
        }
        // Both flags take any number of values; the `--` before the prompt ends the list.
        if !options.allowed_tools.is_empty() {
            args.push("--allowedTools".to_owned());
            args.extend(options.allowed_tools.iter().cloned());
        }
        if !options.disallowed_tools.is_empty() {
            args.push("--disallowedTools".to_owned());
            args.extend(options.disallowed_tools.iter().cloned());
        }
        Ok(ClaudeDispatcher { common: Common::new(NAME, &options)?, args, extra_args: options.extra_args })
    }

    fn argv(&self, prompt: &str, resume: Option<&str>) -> Vec<String> {
        let mut argv = self.args.clone();
        if let Some(session) = resume {
            argv.extend(["--resume".to_owned(), session.to_owned()]);
        }
        argv.extend(self.extra_args.iter().cloned());
        argv.push("--".to_owned());
        argv.push(prompt.to_owned());
        argv
    }
}

#[async_trait]
impl Dispatcher for ClaudeDispatcher {
    fn name(&self) -> &str {
        NAME
    }

    async fn dispatch(&self, task: &Task, ctx: DispatchContext) -> Outcome {
        let prompt = self.common.prompt(task, &ctx);
        self.common.dispatch(task, &ctx, |resume| self.argv(&prompt, resume), ClaudeStream::default).await
    }
}

/// The fields of the final `result` event.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ClaudeResult {
    pub subtype: String,
    pub is_error: bool,
    pub result: Option<String>,
    pub errors: Vec<String>,
    /// This run's cost: Claude's `total_cost_usd` is the session's running total, which on a
    /// resumed session includes the earlier attempts, so the per-run figure
    /// (`model_usage_since_last_result`) is preferred where it is printed.
    pub cost_usd: Option<f64>,
    pub turns: Option<u32>,
    pub session_id: Option<String>,
    pub tokens: Option<Tokens>,
    pub permission_denials: Vec<String>,
}

impl ClaudeResult {
    fn from_event(event: &Value) -> Self {
        let run_cost = event.get("model_usage_since_last_result").and_then(Value::as_object).and_then(|models| {
            let costs: Vec<f64> = models.values().filter_map(|m| m.get("costUSD").and_then(Value::as_f64)).collect();
            (!costs.is_empty()).then(|| costs.iter().sum())
        });
        ClaudeResult {
            subtype: str_field(event, "subtype").unwrap_or_default().to_owned(),
            is_error: event.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            result: str_field(event, "result").map(str::to_owned),
            errors: event
                .get("errors")
                .and_then(Value::as_array)
                .map(|errors| errors.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
            cost_usd: run_cost.or_else(|| event.get("total_cost_usd").and_then(Value::as_f64)),
            turns: u32_field(event, "num_turns"),
            session_id: str_field(event, "session_id").map(str::to_owned),
            tokens: event.get("usage").filter(|u| u.is_object()).map(|usage| Tokens {
                input: u64_field(usage, "input_tokens").unwrap_or(0),
                output: u64_field(usage, "output_tokens").unwrap_or(0),
                cache_read: u64_field(usage, "cache_read_input_tokens").unwrap_or(0),
                cache_write: u64_field(usage, "cache_creation_input_tokens").unwrap_or(0),
            }),
            permission_denials: event
                .get("permission_denials")
                .and_then(Value::as_array)
                .map(|denials| denials.iter().filter_map(|d| str_field(d, "tool_name")).map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    }

    fn failure_kind(&self) -> FailureKind {
        match self.subtype.as_str() {
            "error_max_turns" => FailureKind::Permanent,
            "error_max_budget_usd" => FailureKind::Budget,
            _ => FailureKind::Transient,
        }
    }

    /// The CLI's own words for what went wrong.
    fn error_message(&self) -> String {
        match self.result.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            Some(result) => result.to_owned(),
            None if !self.errors.is_empty() => self.errors.join("; "),
            None => format!("claude reported {}", if self.subtype.is_empty() { "an error" } else { &self.subtype }),
        }
    }
}

/// Reads `--output-format stream-json` line by line.
#[derive(Debug, Default)]
pub(crate) struct ClaudeStream {
    pub init_session: Option<String>,
    pub result: Option<ClaudeResult>,
    pub last_activity: Option<String>,
    /// Lines that were not JSON objects (a warning, a line cut at the line cap).
    pub ignored_lines: usize,
}

impl ClaudeStream {
    fn report(&mut self, progress: &ProgressSink, kind: &str, message: String) {
        if message.is_empty() {
            return;
        }
        progress.emit(kind, message.clone());
        self.last_activity = Some(message);
    }

    fn assistant(&mut self, event: &Value, progress: &ProgressSink) {
        for block in content_blocks(event) {
            match str_field(block, "type") {
                Some("text") => {
                    self.report(progress, "message", one_line(str_field(block, "text").unwrap_or_default()))
                }
                Some("tool_use") => {
                    let name = str_field(block, "name").unwrap_or("tool");
                    self.report(progress, "tool", tool_line(name, block.get("input").unwrap_or(&Value::Null)));
                }
                _ => {}
            }
        }
    }

    fn tool_results(&mut self, event: &Value, progress: &ProgressSink) {
        for block in content_blocks(event) {
            if str_field(block, "type") == Some("tool_result") && block.get("is_error") == Some(&Value::Bool(true)) {
                self.report(progress, "tool_error", one_line(&block_text(block.get("content"))));
            }
        }
    }

    fn usage(&self) -> bg_run_core::Usage {
        let result = self.result.clone().unwrap_or_default();
        bg_run_core::Usage {
            cost_usd: result.cost_usd,
            tokens: result.tokens,
            turns: result.turns,
            session_id: result.session_id.or_else(|| self.init_session.clone()),
            permission_denials: result.permission_denials,
        }
    }
}

impl OutputParser for ClaudeStream {
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
            Some("system") if str_field(&event, "subtype") == Some("init") => {
                self.init_session = str_field(&event, "session_id").map(str::to_owned);
                let model = str_field(&event, "model").unwrap_or("default model");
                let session = self.init_session.as_deref().unwrap_or("without an id");
                progress.emit("session", one_line(&format!("session {session} ({model})")));
            }
            Some("assistant") => self.assistant(&event, progress),
            Some("user") => self.tool_results(&event, progress),
            Some("result") => self.result = Some(ClaudeResult::from_event(&event)),
            _ => {}
        }
    }

    fn session_started(&self) -> bool {
        self.init_session.is_some()
    }

    fn finish(self, process: &ProcessResult) -> Outcome {
        let mut outcome = process.to_outcome("");
        outcome.usage = self.usage();
        if process.stopped.is_some() {
            if let Some(last) = &self.last_activity {
                outcome.summary = format!("{}; the last thing it did: {last}", outcome.summary);
            }
            return outcome;
        }
        let Some(result) = &self.result else {
            outcome.failure = Some(FailureKind::Transient);
            outcome.summary = no_result_reason(NAME, "result event", process);
            return outcome;
        };
        let exit_ok = process.exit_code() == Some(0);
        if exit_ok && !result.is_error && !result.subtype.starts_with("error") {
            outcome.failure = None;
            outcome.summary = match result.result.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
                Some(text) => redact(text),
                None => "claude finished without a final message".to_owned(),
            };
        } else if !result.is_error && !result.subtype.starts_with("error") {
            outcome.failure = Some(FailureKind::Transient);
            outcome.summary = format!("{} after its result reported success", process.describe());
        } else {
            outcome.failure = Some(result.failure_kind());
            outcome.summary = redact(&result.error_message());
        }
        outcome
    }
}

/// The content blocks of an `assistant` or `user` event's message.
fn content_blocks(event: &Value) -> impl Iterator<Item = &Value> {
    event.get("message").and_then(|m| m.get("content")).and_then(Value::as_array).into_iter().flatten()
}

/// A tool result's content, which is a string or a list of text blocks.
fn block_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| str_field(p, "text")).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
