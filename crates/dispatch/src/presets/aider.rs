//! Aider: `aider --message=PROMPT --yes-always --no-pretty … -- FILES…`.
//!
//! Aider has no structured output and no sessions, so success is exit code 0 and the summary is
//! the tail of its output, followed by `git diff --stat` of the working directory against the
//! commit it started from (covering Aider's own auto-commits and anything left uncommitted)
//! when the directory is a git repository. `--yes-always` confirms file edits only: Aider never
//! runs a suggested shell command on it, so there is no permission check to bypass.

use bg_run_core::redact::redact;
use bg_run_core::{async_trait, DispatchContext, Dispatcher, FailureKind, Outcome, ProgressSink, Result, Task};

use super::options::{Opt, PresetOptions};
use super::run::{failed_run_reason, one_line, Common, OutputParser};
use crate::capture::{last_lines, Stream};
use crate::command::STDOUT_SUMMARY_MAX;
use crate::process::ProcessResult;
use crate::workspace::git;

pub(crate) const NAME: &str = "aider";

const TAKES: &[Opt] = &[Opt::Model, Opt::Files, Opt::ExtraArgs];

/// Longest `git diff --stat` appended to the summary.
const DIFF_STAT_MAX: usize = 4 * 1024;

/// Runs Aider headless on a task. See the module documentation for how a run is judged.
#[derive(Debug)]
pub struct AiderDispatcher {
    common: Common,
    args: Vec<String>,
    extra_args: Vec<String>,
    files: Vec<String>,
}

impl AiderDispatcher {
    pub fn new(options: PresetOptions) -> Result<Self> {
        options.check(NAME, TAKES)?;
        // Headless: answer confirmations, plain output, and nothing that waits on the network
        // or asks the user about analytics.
        let mut args: Vec<String> =
            ["--yes-always", "--no-pretty", "--no-check-update", "--no-show-release-notes", "--no-analytics"]
                .map(String::from)
                .into();
        if let Some(model) = &options.model {
            args.push(format!("--model={model}"));
        }
        Ok(AiderDispatcher {
            common: Common::new(NAME, &options)?.without_resume(),
            args,
            extra_args: options.extra_args,
            files: options.files,
        })
    }

    fn argv(&self, prompt: &str) -> Vec<String> {
        // The `=` form keeps a prompt that starts with a dash a value.
        let mut argv = vec![format!("--message={prompt}")];
        argv.extend(self.args.iter().cloned());
        argv.extend(self.extra_args.iter().cloned());
        argv.push("--".to_owned());
        argv.extend(self.files.iter().cloned());
        argv
    }
}

#[async_trait]
impl Dispatcher for AiderDispatcher {
    fn name(&self) -> &str {
        NAME
    }

    async fn dispatch(&self, task: &Task, ctx: DispatchContext) -> Outcome {
        let prompt = self.common.prompt(task, &ctx);
        let start = git(&ctx.workdir, &["rev-parse", "--verify", "--quiet", "HEAD"]).await.ok();
        let mut outcome = self.common.dispatch(task, &ctx, |_| self.argv(&prompt), AiderOutput::default).await;
        if let Some(start) = start {
            if let Ok(stat) = git(&ctx.workdir, &["diff", "--stat", start.trim()]).await {
                let stat = last_lines(&stat, DIFF_STAT_MAX);
                if !stat.is_empty() {
                    outcome.summary = format!("{}\n\nChanges since {}:\n{stat}", outcome.summary, short(start.trim()));
                }
            }
        }
        outcome
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Passes Aider's output lines on as progress.
#[derive(Debug, Default)]
pub(crate) struct AiderOutput;

impl OutputParser for AiderOutput {
    fn line(&mut self, stream: Stream, line: &str, progress: &ProgressSink) {
        if stream == Stream::Stdout && !line.trim().is_empty() {
            progress.emit("output", one_line(line));
        }
    }

    fn session_started(&self) -> bool {
        true
    }

    fn finish(self, process: &ProcessResult) -> Outcome {
        let mut outcome = process.to_outcome("");
        if process.stopped.is_some() {
            return outcome;
        }
        if process.exit_code() != Some(0) {
            outcome.failure = Some(FailureKind::Transient);
            outcome.summary = failed_run_reason(process);
            return outcome;
        }
        let stdout = process.stdout.to_string_lossy();
        let tail = last_lines(&stdout, STDOUT_SUMMARY_MAX);
        outcome.summary =
            if tail.is_empty() { "aider exited with code 0 and printed nothing".to_owned() } else { redact(tail) };
        outcome
    }
}
