//! What every preset shares: the resolved program and environment, the prompt, one supervised
//! run with its output parsed line by line, and the retry without `--resume` when the session to
//! resume is gone.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bg_run_core::redact::redact;
use bg_run_core::{DispatchContext, Error, FailureKind, Outcome, ProgressSink, Result, Task};

use crate::capture::{clip_line, Stream};
use crate::env::ResolvedEnv;
use crate::process::{find_program, run_process, ProcessResult, ProcessSpec};
use crate::prompt::{render_prompt, Placeholder, TaskVars, Template};

use super::options::PresetOptions;

/// Longest progress message.
pub(crate) const PROGRESS_MAX: usize = 300;
/// Longest excerpt of stderr quoted in a failure summary.
const STDERR_GIST_MAX: usize = 1000;

/// Placeholders a preset's prompt template may use: a preset has no summary file, and the
/// template is what `{prompt}` would stand for.
const PRESET_TEMPLATE_PLACEHOLDERS: &[Placeholder] = &[
    Placeholder::Title,
    Placeholder::Body,
    Placeholder::FencedBody,
    Placeholder::Url,
    Placeholder::Id,
    Placeholder::Attempt,
    Placeholder::Labels,
    Placeholder::Workdir,
];

/// Reads an agent's output as it arrives and judges the run when it is over.
pub(crate) trait OutputParser: Send {
    /// One line of output (without its line terminator), in arrival order per stream.
    fn line(&mut self, stream: Stream, line: &str, progress: &ProgressSink);

    /// Whether the agent got as far as opening a session. A run asked to resume a session that
    /// fails before this is retried as a fresh session.
    fn session_started(&self) -> bool;

    /// The outcome of the finished run.
    fn finish(self, result: &ProcessResult) -> Outcome;
}

/// The resolved parts of [`PresetOptions`] that every preset uses the same way.
#[derive(Debug)]
pub(crate) struct Common {
    pub name: &'static str,
    program: PathBuf,
    env: ResolvedEnv,
    template: Option<Template>,
    resume: bool,
    kill_grace: Duration,
    output_cap: usize,
}

impl Common {
    pub fn new(name: &'static str, options: &PresetOptions) -> Result<Self> {
        let program = program_path(name, options)?;
        let template = options
            .prompt_template
            .as_deref()
            .map(|t| Template::parse(t, PRESET_TEMPLATE_PLACEHOLDERS, "the prompt template"))
            .transpose()?;
        let env = options.env.resolve()?;
        let mut common = Common {
            name,
            program,
            env,
            template,
            resume: options.resume,
            kill_grace: options.kill_grace,
            output_cap: options.output_cap,
        };
        // Found once here so each run skips the PATH search; a binary installed later is still
        // looked up at run time.
        if let Some(found) = find_program(&common.program, common.env.get("PATH")).filter(|p| p.is_file()) {
            common.program = found;
        }
        Ok(common)
    }

    /// For an agent that has no sessions to resume.
    pub fn without_resume(mut self) -> Self {
        self.resume = false;
        self
    }

    /// The session to resume in this run, if resuming is on and the context names one.
    pub fn resume_session<'c>(&self, ctx: &'c DispatchContext) -> Option<&'c str> {
        ctx.resume_session.as_deref().filter(|s| self.resume && !s.trim().is_empty())
    }

    /// The task's prompt (the template or the default prompt, task text sanitised and fenced).
    pub fn prompt(&self, task: &Task, ctx: &DispatchContext) -> String {
        render_prompt(self.template.as_ref(), &TaskVars::new(task, ctx, None))
    }

    /// Runs the agent with `args(resume)`; when a resumed run fails before its session started
    /// (the session is gone: another machine, a cleared config directory), runs once more
    /// without resuming.
    pub async fn dispatch<P: OutputParser>(
        &self,
        task: &Task,
        ctx: &DispatchContext,
        args: impl Fn(Option<&str>) -> Vec<String>,
        parser: impl Fn() -> P,
    ) -> Outcome {
        if ctx.cancel.is_cancelled() {
            return Outcome::failure(FailureKind::Cancelled, "cancelled before the agent started");
        }
        let resume = self.resume_session(ctx);
        let began = Instant::now();
        let (outcome, started) = self.run_once(task, ctx, args(resume), parser()).await;
        match resume {
            Some(session) if !started && outcome.failure == Some(FailureKind::Transient) => {
                tracing::info!(dispatcher = self.name, task = %task.id, session, "session could not be resumed; starting a new one");
                ctx.progress.emit("session", format!("could not resume session {session}; starting a new session"));
                // The failed attempt counts against the task's time.
                let fresh = DispatchContext { timeout: ctx.timeout.saturating_sub(began.elapsed()), ..ctx.clone() };
                let (outcome, _) = self.run_once(task, &fresh, args(None), parser()).await;
                outcome
            }
            _ => outcome,
        }
    }

    async fn run_once<P: OutputParser>(
        &self,
        task: &Task,
        ctx: &DispatchContext,
        args: Vec<String>,
        mut parser: P,
    ) -> (Outcome, bool) {
        let mut env = self.env.clone();
        env.set("BG_RUN_TASK_ID", task.id.as_str());
        env.set("BG_RUN_TASK_URL", task.url.as_deref().unwrap_or_default());
        env.set("BG_RUN_ATTEMPT", ctx.attempt.to_string());
        let mut spec = ProcessSpec::new(&self.program, args, env);
        spec.kill_grace = self.kill_grace;
        spec.output_cap = self.output_cap;

        let progress = &ctx.progress;
        let result = run_process(spec, ctx, |stream, line| parser.line(stream, line, progress)).await;
        match result {
            Ok(result) => {
                let started = parser.session_started();
                (parser.finish(&result), started)
            }
            Err(e) => {
                tracing::warn!(dispatcher = self.name, task = %task.id, error = %e, "agent could not be started");
                (e.into(), false)
            }
        }
    }
}

/// The program to run: the `program` option (a relative path made absolute now, since each run
/// starts in another directory) or the preset's name.
pub(crate) fn program_path(name: &str, options: &PresetOptions) -> Result<PathBuf> {
    let program = options.program.as_deref().map(str::trim).unwrap_or(name);
    if program.contains('/') {
        std::path::absolute(program)
            .map_err(|e| Error::config(format!("cannot make the {name} program path '{program}' absolute: {e}")))
    } else {
        Ok(PathBuf::from(program))
    }
}

/// `text` on one line (whitespace runs become one space), clipped and with secrets masked: fit
/// for a progress event.
pub(crate) fn one_line(text: &str) -> String {
    let mut flat = String::with_capacity(text.len().min(PROGRESS_MAX * 2));
    for word in text.split_whitespace() {
        if flat.len() > PROGRESS_MAX * 2 {
            break;
        }
        if !flat.is_empty() {
            flat.push(' ');
        }
        flat.push_str(word);
    }
    clip_line(&redact(&flat), PROGRESS_MAX).into_owned()
}

/// A tool call as a short line: its name and the one input field that says the most about it
/// (the command, the file, the pattern, …), or its compact JSON input.
pub(crate) fn tool_line(name: &str, input: &serde_json::Value) -> String {
    const TELLING: &[&str] =
        &["command", "cmd", "file_path", "path", "pattern", "url", "query", "description", "prompt"];
    let detail = TELLING
        .iter()
        .find_map(|key| input.get(*key).and_then(serde_json::Value::as_str))
        .map(str::to_owned)
        .unwrap_or_else(|| match input {
            serde_json::Value::Null => String::new(),
            serde_json::Value::Object(map) if map.is_empty() => String::new(),
            other => other.to_string(),
        });
    if detail.is_empty() {
        one_line(name)
    } else {
        one_line(&format!("{name}: {detail}"))
    }
}

/// The part of stderr worth quoting when a run failed without saying why in its structured
/// output: the last line that mentions an error, else the last non-empty line; secrets masked.
pub(crate) fn stderr_gist(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.to_ascii_lowercase().contains("error"))
        .or_else(|| lines.last())
        .copied()
        .unwrap_or_default();
    clip_line(&redact(line), STDERR_GIST_MAX).into_owned()
}

/// How a run ended, and the gist of its stderr if there is one.
pub(crate) fn failed_run_reason(result: &ProcessResult) -> String {
    let gist = stderr_gist(&result.stderr.to_string_lossy());
    let how = result.describe();
    if gist.is_empty() {
        how
    } else {
        format!("{how}: {gist}")
    }
}

/// Why a run that did not print its final structured output failed.
pub(crate) fn no_result_reason(agent: &str, what: &str, result: &ProcessResult) -> String {
    format!("{agent} printed no {what}; {}", failed_run_reason(result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_lines_pick_the_telling_field() {
        assert_eq!(
            tool_line("Bash", &json!({"command": "cargo test\n  --all", "timeout": 5})),
            "Bash: cargo test --all"
        );
        assert_eq!(tool_line("Write", &json!({"file_path": "/w/a.txt", "content": "x"})), "Write: /w/a.txt");
        assert_eq!(tool_line("Odd", &json!({"n": 1})), r#"Odd: {"n":1}"#);
        assert_eq!(tool_line("Nothing", &json!({})), "Nothing");
        let long = tool_line("Bash", &json!({"command": "x".repeat(2000)}));
        assert!(long.len() <= PROGRESS_MAX + "…".len(), "{}", long.len());
    }

    #[test]
    fn stderr_gist_prefers_the_error_line() {
        let stderr = "WARNING: proceeding anyway\nError: thread/resume failed: no rollout found\n\n";
        assert_eq!(stderr_gist(stderr), "Error: thread/resume failed: no rollout found");
        assert_eq!(stderr_gist("first\nlast words\n"), "last words");
        assert_eq!(stderr_gist(""), "");
    }

    #[test]
    fn one_line_masks_secrets() {
        let line = one_line("token ghp_abcdefghijklmnopqrstuvwxyz0123 here");
        assert!(!line.contains("ghp_abc"), "{line}");
    }
}
