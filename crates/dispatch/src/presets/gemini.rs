//! Gemini CLI: `gemini --output-format json --approval-mode MODE [-m M] --prompt=PROMPT`.
//!
//! With `--output-format json` the CLI prints one pretty-printed document when it is done:
//! `{session_id, response, stats, error}`. A fatal error is printed as `{error: {type, message,
//! code}}` on stderr instead, and the exit code is the error's code (41 authentication, 42 bad
//! input, 52 configuration, 53 turn limit, 54 fatal tool error, 1 anything else). Nothing streams
//! in this format, so a Gemini run reports no progress until it ends.
//!
//! `error` present, or a non-zero exit, is a failure: `Permanent` for 42, 52 and 53 (the same
//! arguments and limits would fail the same way), otherwise `Transient`. Tokens are summed over
//! `stats.models` (input = `prompt`, output = `candidates` + `thoughts`, cache read = `cached`);
//! turns are the model requests (`api.totalRequests`). Gemini prints no cost.

use bg_run_core::redact::redact;
use bg_run_core::{async_trait, DispatchContext, Dispatcher, FailureKind, Outcome, ProgressSink, Result, Task, Tokens};
use serde_json::Value;

use super::json::{last_document, str_field, u32_field, u64_field};
use super::options::{Opt, PermissionSwitches, PresetOptions};
use super::run::{no_result_reason, Common, OutputParser};
use crate::capture::Stream;
use crate::process::ProcessResult;

pub(crate) const NAME: &str = "gemini";

const TAKES: &[Opt] = &[Opt::Model, Opt::ApprovalMode, Opt::ExtraArgs, Opt::BypassPermissions];

const APPROVAL_MODES: &[&str] = &["default", "auto_edit", "yolo", "plan"];
const DEFAULT_APPROVAL: &str = "default";
const BYPASS_APPROVAL: &str = "yolo";
const BYPASS_FLAGS: &[&str] = &["--yolo", "-y"];
const PERMISSIONS: PermissionSwitches<'static> = PermissionSwitches {
    option: "approval_mode",
    modes: APPROVAL_MODES,
    open_mode: BYPASS_APPROVAL,
    mode_flags: &["--approval-mode"],
    open_flags: BYPASS_FLAGS,
};
/// Exit codes of failures that the same invocation would hit again.
const PERMANENT_EXIT_CODES: &[i32] = &[42, 52, 53];
/// Most stdout kept for the final document; a response beyond it is reported as unreadable.
const MAX_DOCUMENT: usize = 16 * 1024 * 1024;

/// Runs Gemini CLI headless on a task. See the module documentation for how a run is judged.
#[derive(Debug)]
pub struct GeminiDispatcher {
    common: Common,
    args: Vec<String>,
    extra_args: Vec<String>,
}

impl GeminiDispatcher {
    pub fn new(options: PresetOptions) -> Result<Self> {
        options.check(NAME, TAKES)?;
        options.guard_permissions(NAME, options.approval_mode.as_deref(), &PERMISSIONS)?;
        // Passed even when it is the default, so a `defaultApprovalMode` in the user's settings
        // cannot loosen it.
        let approval = match (&options.approval_mode, options.bypass_permissions) {
            (Some(mode), _) => mode.clone(),
            (None, true) => BYPASS_APPROVAL.to_owned(),
            (None, false) => DEFAULT_APPROVAL.to_owned(),
        };
        let mut args: Vec<String> = ["--output-format", "json", "--approval-mode"].map(String::from).into();
        args.push(approval);
        if let Some(model) = &options.model {
            args.extend(["-m".to_owned(), model.clone()]);
        }
        Ok(GeminiDispatcher { common: Common::new(NAME, &options)?, args, extra_args: options.extra_args })
    }

    fn argv(&self, prompt: &str, resume: Option<&str>) -> Vec<String> {
        let mut argv = self.args.clone();
        if let Some(session) = resume {
            argv.extend(["--resume".to_owned(), session.to_owned()]);
        }
        argv.extend(self.extra_args.iter().cloned());
        // The `=` form keeps a prompt that starts with a dash a value.
        argv.push(format!("--prompt={prompt}"));
        argv
    }
}

#[async_trait]
impl Dispatcher for GeminiDispatcher {
    fn name(&self) -> &str {
        NAME
    }

    async fn dispatch(&self, task: &Task, ctx: DispatchContext) -> Outcome {
        let prompt = self.common.prompt(task, &ctx);
        self.common.dispatch(task, &ctx, |resume| self.argv(&prompt, resume), GeminiOutput::default).await
    }
}

/// Collects stdout to read the document at the end.
#[derive(Debug, Default)]
pub(crate) struct GeminiOutput {
    stdout: String,
    truncated: bool,
}

/// What the final document said.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct GeminiReport {
    pub session_id: Option<String>,
    pub response: Option<String>,
    pub error: Option<String>,
    pub tokens: Option<Tokens>,
    pub turns: Option<u32>,
}

impl GeminiReport {
    pub(crate) fn from_document(doc: &Value) -> Self {
        let error = doc.get("error").filter(|e| !e.is_null()).map(|e| {
            let message = str_field(e, "message").map(str::to_owned).unwrap_or_else(|| e.to_string());
            match str_field(e, "type") {
                Some(kind) if kind != "Error" && !kind.is_empty() => format!("{kind}: {message}"),
                _ => message,
            }
        });
        let models = doc.get("stats").and_then(|s| s.get("models")).and_then(Value::as_object);
        let (tokens, turns) = match models {
            Some(models) if !models.is_empty() => {
                let mut tokens = Tokens::default();
                let mut turns = 0u32;
                for model in models.values() {
                    if let Some(t) = model.get("tokens") {
                        let cached = u64_field(t, "cached").unwrap_or(0);
                        tokens.input +=
                            u64_field(t, "prompt").or_else(|| Some(u64_field(t, "input")? + cached)).unwrap_or(0);
                        tokens.output +=
                            u64_field(t, "candidates").unwrap_or(0) + u64_field(t, "thoughts").unwrap_or(0);
                        tokens.cache_read += cached;
                    }
                    turns =
                        turns.saturating_add(model.get("api").and_then(|a| u32_field(a, "totalRequests")).unwrap_or(0));
                }
                (Some(tokens), Some(turns))
            }
            _ => (None, None),
        };
        GeminiReport {
            session_id: str_field(doc, "session_id").map(str::to_owned),
            response: str_field(doc, "response").map(str::to_owned),
            error,
            tokens,
            turns,
        }
    }
}

impl GeminiOutput {
    /// The document on stdout, or else the error document on stderr.
    fn report(&self, stderr: &str) -> Option<GeminiReport> {
        let is_report =
            |doc: &Value| ["response", "error", "stats", "session_id"].iter().any(|k| doc.get(*k).is_some());
        let from_stdout = (!self.truncated).then(|| last_document(&self.stdout)).flatten().filter(is_report);
        from_stdout.or_else(|| last_document(stderr).filter(is_report)).map(|doc| GeminiReport::from_document(&doc))
    }
}

impl OutputParser for GeminiOutput {
    fn line(&mut self, stream: Stream, line: &str, _progress: &ProgressSink) {
        if stream != Stream::Stdout || self.truncated {
            return;
        }
        if self.stdout.len() + line.len() + 1 > MAX_DOCUMENT {
            self.truncated = true;
            self.stdout = String::new();
            return;
        }
        self.stdout.push_str(line);
        self.stdout.push('\n');
    }

    fn session_started(&self) -> bool {
        self.report("").is_some_and(|r| r.response.is_some())
    }

    fn finish(self, process: &ProcessResult) -> Outcome {
        let mut outcome = process.to_outcome("");
        let report = self.report(&process.stderr.to_string_lossy());
        if let Some(report) = &report {
            outcome.usage.session_id = report.session_id.clone();
            outcome.usage.tokens = report.tokens;
            outcome.usage.turns = report.turns;
        }
        if process.stopped.is_some() {
            return outcome;
        }
        let kind = match process.exit_code() {
            Some(code) if PERMANENT_EXIT_CODES.contains(&code) => FailureKind::Permanent,
            _ => FailureKind::Transient,
        };
        match report {
            None => {
                outcome.failure = Some(kind);
                outcome.summary = no_result_reason(NAME, "JSON result", process);
            }
            Some(GeminiReport { error: Some(error), .. }) => {
                outcome.failure = Some(kind);
                outcome.summary = redact(&error);
            }
            Some(_) if process.exit_code() != Some(0) => {
                outcome.failure = Some(kind);
                outcome.summary = process.describe();
            }
            Some(report) => {
                outcome.failure = None;
                outcome.summary = match report.response.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
                    Some(response) => redact(response),
                    None => "gemini finished without a response".to_owned(),
                };
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests;
