//! The generic dispatcher: run any command on a task.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

use bg_run_core::{async_trait, DispatchContext, Dispatcher, Error, FailureKind, Outcome, Result, Task};

use crate::capture::{clip_line, last_lines, Stream};
use crate::env::{EnvPolicy, ResolvedEnv};
use crate::process::{find_program, run_process, ProcessSpec, DEFAULT_KILL_GRACE, DEFAULT_OUTPUT_CAP};
use crate::prompt::{render_prompt, Placeholder, TaskVars, Template, ARG_PLACEHOLDERS, TEMPLATE_PLACEHOLDERS};

/// Longest progress message one output line becomes.
pub const PROGRESS_LINE_MAX: usize = 500;
/// Longest summary taken from the end of stdout when the agent wrote no summary file.
pub const STDOUT_SUMMARY_MAX: usize = 4 * 1024;

/// How to run an agent command. Build one with [`CommandSpec::new`] and adjust the fields.
///
/// Placeholders (see [`crate::prompt`] for the syntax) may appear in `args` and
/// `prompt_template`: `{prompt}` (args only), `{title}`, `{body}`, `{fenced_body}`, `{url}`,
/// `{id}`, `{attempt}`, `{labels}`, `{summary_file}`, `{workdir}`. Each argument stays one argv
/// element whatever is substituted into it, and no shell is involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// Dispatcher name for logs and events. Default `"command"`.
    pub name: String,
    /// A bare name looked up on the agent's `PATH`, or a path. A relative path with a `/` is
    /// taken relative to this process's current directory when the dispatcher is built.
    /// Placeholders are not expanded here.
    pub program: String,
    pub args: Vec<String>,
    /// Replaces the built-in prompt ([`crate::prompt::default_prompt`]). Reading a template
    /// file is the caller's job.
    pub prompt_template: Option<String>,
    pub env: EnvPolicy,
    /// Offer the agent a per-run summary file even when no argument or template names
    /// `{summary_file}`; its path is in `BG_RUN_SUMMARY_FILE`. Naming `{summary_file}` anywhere
    /// turns this on by itself.
    pub summary_file: bool,
    /// Write the prompt to the agent's stdin (then close it) instead of leaving stdin on
    /// `/dev/null`.
    pub stdin_prompt: bool,
    /// Time between `SIGTERM` and `SIGKILL` when a run times out or is cancelled. Default 10s.
    pub kill_grace: Duration,
    /// Bytes of stdout and of stderr kept, each (the tail). Default 64 KiB.
    pub output_cap: usize,
}

impl CommandSpec {
    /// `program` with no arguments and the defaults above.
    pub fn new(program: impl Into<String>) -> Self {
        CommandSpec {
            name: "command".to_owned(),
            program: program.into(),
            args: Vec::new(),
            prompt_template: None,
            env: EnvPolicy::default(),
            summary_file: false,
            stdin_prompt: false,
            kill_grace: DEFAULT_KILL_GRACE,
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }

    /// Replaces the arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }
}

/// Runs [`CommandSpec`] for each task: builds the prompt and arguments, runs the process with
/// [`run_process`], and turns the result into an [`Outcome`].
///
/// On success the summary is the content of the summary file if the agent wrote one, else the
/// last lines of stdout (up to [`STDOUT_SUMMARY_MAX`]). A non-zero exit or a signal is a
/// `Transient` failure; a missing program or working directory is `Permanent`. Every stdout line
/// is reported to the context's progress sink as kind `"output"`, cut to
/// [`PROGRESS_LINE_MAX`] bytes. The agent also gets `BG_RUN_TASK_ID`, `BG_RUN_TASK_URL` and
/// `BG_RUN_ATTEMPT` (and `BG_RUN_SUMMARY_FILE` when there is a summary file).
#[derive(Debug)]
pub struct CommandDispatcher {
    name: String,
    program: PathBuf,
    args: Vec<Template>,
    template: Option<Template>,
    env: ResolvedEnv,
    needs_prompt: bool,
    summary_files: Option<SummaryFiles>,
    stdin_prompt: bool,
    kill_grace: Duration,
    output_cap: usize,
}

impl CommandDispatcher {
    /// Checks `spec` and resolves the agent's environment (from `spec.env.parent`, or from this
    /// process's environment now). Every problem is an [`Error::Config`] that says what to fix.
    /// A program that is not installed is not an error here: each dispatch then fails
    /// permanently saying so, and [`resolved_program`](Self::resolved_program) lets a caller
    /// check up front.
    pub fn new(spec: CommandSpec) -> Result<Self> {
        let program = spec.program.trim();
        if program.is_empty() {
            return Err(Error::config(
                "the agent command is empty; give the program to run, e.g. `-- my-agent --flag`",
            ));
        }
        if program.contains('\0') {
            return Err(Error::config("the agent command contains a NUL byte"));
        }
        if spec.output_cap == 0 {
            return Err(Error::config("output_cap must be at least 1 byte"));
        }
        let program = if program.contains('/') {
            std::path::absolute(program)
                .map_err(|e| Error::config(format!("cannot make the agent command path '{program}' absolute: {e}")))?
        } else {
            PathBuf::from(program)
        };

        let args = spec
            .args
            .iter()
            .enumerate()
            .map(|(i, arg)| Template::parse(arg, ARG_PLACEHOLDERS, &format!("argument {}", i + 1)))
            .collect::<Result<Vec<_>>>()?;
        let template = spec
            .prompt_template
            .as_deref()
            .map(|t| Template::parse(t, TEMPLATE_PLACEHOLDERS, "the prompt template"))
            .transpose()?;

        let needs_prompt = spec.stdin_prompt || args.iter().any(|a| a.uses(Placeholder::Prompt));
        if template.is_some() && !needs_prompt {
            return Err(Error::config(
                "a prompt template is set but the agent never receives the prompt; add {prompt} to its arguments or send it on stdin",
            ));
        }
        let summary_file = spec.summary_file
            || args.iter().any(|a| a.uses(Placeholder::SummaryFile))
            || template.as_ref().is_some_and(|t| t.uses(Placeholder::SummaryFile));

        let summary_files = summary_file.then(SummaryFiles::new).transpose().map_err(|e| {
            Error::config(format!(
                "cannot create a private directory for summary files in {}: {e}; set TMPDIR to a writable directory",
                std::env::temp_dir().display()
            ))
        })?;
        let env = spec.env.resolve()?;
        let name = if spec.name.trim().is_empty() { "command".to_owned() } else { spec.name };
        let mut dispatcher = CommandDispatcher {
            name,
            program,
            args,
            template,
            env,
            needs_prompt,
            summary_files,
            stdin_prompt: spec.stdin_prompt,
            kill_grace: spec.kill_grace,
            output_cap: spec.output_cap,
        };
        // Found once here so each dispatch skips the PATH search; a program installed later is
        // still looked up at dispatch time.
        if let Some(found) = dispatcher.resolved_program() {
            dispatcher.program = found;
        }
        Ok(dispatcher)
    }

    /// The program a dispatch would run right now, or `None` when it cannot be found.
    pub fn resolved_program(&self) -> Option<PathBuf> {
        find_program(&self.program, self.env.get("PATH")).filter(|p| p.is_file())
    }

    /// The environment every run starts from, before the per-task `BG_RUN_*` variables.
    pub fn env(&self) -> &ResolvedEnv {
        &self.env
    }

    async fn run(&self, task: &Task, ctx: &DispatchContext) -> Outcome {
        if ctx.cancel.is_cancelled() {
            return Outcome::failure(FailureKind::Cancelled, "cancelled before the agent started");
        }
        let summary_file = match self.summary_files.as_ref().map(SummaryFiles::next).transpose() {
            Ok(file) => file,
            Err(e) => {
                return Outcome::failure(
                    FailureKind::Transient,
                    format!("could not create a temporary directory for the agent's summary file: {e}"),
                )
            }
        };
        let summary_path = summary_file.as_ref().map(|f| f.path.as_path());

        let mut vars = TaskVars::new(task, ctx, summary_path);
        if self.needs_prompt {
            vars.prompt = render_prompt(self.template.as_ref(), &vars);
        }
        let args = self.args.iter().map(|a| a.render(|p| vars.get(p))).collect();

        let mut env = self.env.clone();
        env.set("BG_RUN_TASK_ID", task.id.as_str());
        env.set("BG_RUN_TASK_URL", vars.url.as_str());
        env.set("BG_RUN_ATTEMPT", vars.attempt.as_str());
        if let Some(path) = summary_path {
            env.set("BG_RUN_SUMMARY_FILE", path.display().to_string());
        }

        let mut spec = ProcessSpec::new(&self.program, args, env);
        spec.kill_grace = self.kill_grace;
        spec.output_cap = self.output_cap;
        if self.stdin_prompt {
            spec.stdin = Some(std::mem::take(&mut vars.prompt).into_bytes());
        }

        let progress = &ctx.progress;
        let result = run_process(spec, ctx, |stream, line| {
            if stream == Stream::Stdout && !line.trim().is_empty() {
                progress.emit("output", clip_line(line, PROGRESS_LINE_MAX));
            }
        })
        .await;
        let result = match result {
            Ok(result) => result,
            Err(e) => {
                tracing::warn!(dispatcher = %self.name, task = %task.id, error = %e, "agent could not be started");
                return e.into();
            }
        };

        let summary = if result.success() {
            let from_file = summary_path.and_then(|p| read_summary(p, self.output_cap));
            from_file.unwrap_or_else(|| {
                let stdout = result.stdout.to_string_lossy();
                let tail = last_lines(&stdout, STDOUT_SUMMARY_MAX);
                if tail.is_empty() {
                    "the agent exited with code 0 and printed nothing".to_owned()
                } else {
                    tail.to_owned()
                }
            })
        } else {
            String::new()
        };
        result.to_outcome(&summary)
    }
}

/// Per-run summary file paths inside one private directory per dispatcher. A directory made and
/// removed for every run would cost more than running a small agent; a fresh file name is free.
#[derive(Debug)]
struct SummaryFiles {
    dir: Mutex<Arc<TempDir>>,
    runs: AtomicU64,
}

/// One run's summary file; removed when the run is over.
struct SummaryFile {
    path: PathBuf,
    _dir: Arc<TempDir>,
}

impl Drop for SummaryFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl SummaryFiles {
    fn new() -> io::Result<Self> {
        Ok(SummaryFiles { dir: Mutex::new(Arc::new(Self::make_dir()?)), runs: AtomicU64::new(0) })
    }

    fn make_dir() -> io::Result<TempDir> {
        tempfile::Builder::new().prefix("bg-run-summaries-").tempdir()
    }

    fn next(&self) -> io::Result<SummaryFile> {
        let dir = {
            let mut dir = self.dir.lock().unwrap_or_else(|e| e.into_inner());
            // Temp cleaners remove directories a long-idle worker has not touched.
            if !dir.path().is_dir() {
                *dir = Arc::new(Self::make_dir()?);
            }
            Arc::clone(&dir)
        };
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        Ok(SummaryFile { path: dir.path().join(format!("summary-{run}.md")), _dir: dir })
    }
}

/// The trimmed summary the agent wrote, if it wrote a non-empty one. Reads at most `cap` bytes.
fn read_summary(path: &Path, cap: usize) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(cap as u64).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[async_trait]
impl Dispatcher for CommandDispatcher {
    fn name(&self) -> &str {
        &self.name
    }

    async fn dispatch(&self, task: &Task, ctx: DispatchContext) -> Outcome {
        self.run(task, &ctx).await
    }
}
