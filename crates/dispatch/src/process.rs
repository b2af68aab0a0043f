//! Spawning and supervising one agent process.
//!
//! The process runs in a process group of its own, with a clean environment, stdin on
//! `/dev/null` (or fed a prompt and closed), and stdout and stderr captured with caps. On timeout
//! or cancellation the whole group gets `SIGTERM`, then `SIGKILL` after a grace period. When the
//! leader exits on its own, whatever it left running in its group is killed too, so an agent can
//! neither leave orphans behind nor hold the worker up through a background process that keeps a
//! pipe open. If the run is abandoned (its future dropped), the group is killed as well.
//!
//! The program is always exec'd directly: arguments are never seen by a shell.

use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use bg_run_core::redact::redact;
use bg_run_core::{DispatchContext, FailureKind, Outcome};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::capture::{read_lines, Stream, TailBuffer};
use crate::env::ResolvedEnv;
use crate::signal::{signal_group, signal_name, SIGKILL, SIGTERM};

/// Default time between `SIGTERM` and `SIGKILL`.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);
/// Default cap on the kept tail of stdout and of stderr, each.
pub const DEFAULT_OUTPUT_CAP: usize = 64 * 1024;
/// Default cap on one line handed to the line callback.
pub const DEFAULT_MAX_LINE: usize = 1024 * 1024;
/// Default time to finish reading output after the process group is gone.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// What to run. The working directory, the timeout and the cancellation token come from the
/// [`DispatchContext`] given to [`run_process`].
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    /// A path (absolute, or relative to the working directory), or a bare name looked up on the
    /// `PATH` in `env`.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The complete environment of the child; nothing is inherited.
    pub env: ResolvedEnv,
    /// Written to the child's stdin, which is then closed. `None` connects stdin to `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// Time between `SIGTERM` and `SIGKILL` when the run is stopped.
    pub kill_grace: Duration,
    /// Bytes of stdout and of stderr kept (the tail).
    pub output_cap: usize,
    /// Longest line handed to the line callback; longer lines are cut.
    pub max_line: usize,
    /// How long to keep reading output once the process group is gone. Only a process that left
    /// the group (`setsid`) while holding the agent's stdout or stderr makes this wait matter.
    pub drain_timeout: Duration,
}

impl ProcessSpec {
    /// `program` with `args` in `env`, with default limits and stdin on `/dev/null`.
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>, env: ResolvedEnv) -> Self {
        ProcessSpec {
            program: program.into(),
            args,
            env,
            stdin: None,
            kill_grace: DEFAULT_KILL_GRACE,
            output_cap: DEFAULT_OUTPUT_CAP,
            max_line: DEFAULT_MAX_LINE,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// How the process ended, as far as its exit status tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// Why the run was stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The context's timeout passed; carries the timeout.
    Timeout(Duration),
    /// The context's cancellation token fired.
    Cancelled,
}

/// What a finished run left behind.
#[derive(Clone, Debug)]
pub struct ProcessResult {
    pub exit: Exit,
    /// Set when the run was stopped by timeout or cancellation rather than ending by itself.
    pub stopped: Option<Stop>,
    /// Whether `SIGKILL` was needed because `SIGTERM` did not end the process within the grace.
    pub escalated: bool,
    pub stdout: TailBuffer,
    pub stderr: TailBuffer,
    /// False when reading stopped after [`ProcessSpec::drain_timeout`] because something outside
    /// the group still held a pipe open.
    pub output_complete: bool,
    pub duration: Duration,
}

impl ProcessResult {
    /// Exit code 0 and not stopped.
    pub fn success(&self) -> bool {
        self.stopped.is_none() && self.exit == Exit::Code(0)
    }

    /// `None` on success; otherwise how the worker should treat the failure.
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self.stopped {
            Some(Stop::Timeout(_)) => Some(FailureKind::Timeout),
            Some(Stop::Cancelled) => Some(FailureKind::Cancelled),
            None if self.exit == Exit::Code(0) => None,
            None => Some(FailureKind::Transient),
        }
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self.exit {
            Exit::Code(code) => Some(code),
            Exit::Signal(_) => None,
        }
    }

    /// One sentence on how the run ended, e.g. "agent exited with code 1" or "timed out after
    /// 5s; process group killed (SIGTERM)".
    pub fn describe(&self) -> String {
        let how_killed = || {
            if self.escalated {
                "SIGTERM, then SIGKILL after the grace period"
            } else {
                "SIGTERM"
            }
        };
        match (self.stopped, self.exit) {
            (Some(Stop::Timeout(limit)), _) => {
                format!("timed out after {}; process group killed ({})", short_duration(limit), how_killed())
            }
            (Some(Stop::Cancelled), _) => {
                format!("cancelled after {}; process group killed ({})", short_duration(self.duration), how_killed())
            }
            (None, Exit::Code(code)) => format!("agent exited with code {code}"),
            (None, Exit::Signal(sig)) => format!("agent was killed by {} (signal {sig})", signal_name(sig)),
        }
    }

    /// The stdout tail with secrets redacted.
    pub fn stdout_tail(&self) -> String {
        redact(&self.stdout.to_string_lossy())
    }

    /// The stderr tail with secrets redacted.
    pub fn stderr_tail(&self) -> String {
        redact(&self.stderr.to_string_lossy())
    }

    /// The generic outcome: on success `summary`, on failure [`describe`](Self::describe); exit
    /// code, duration and tails filled; secrets redacted. Presets adjust it from the agent's
    /// structured output.
    pub fn to_outcome(&self, summary: &str) -> Outcome {
        let failure = self.failure_kind();
        let summary = match failure {
            None => redact(summary),
            Some(_) => self.describe(),
        };
        Outcome {
            failure,
            summary,
            usage: Default::default(),
            exit_code: self.exit_code(),
            duration: self.duration,
            stdout_tail: self.stdout_tail(),
            stderr_tail: self.stderr_tail(),
        }
    }
}

/// `5s` for whole seconds under a minute, otherwise [`bg_run_core::text::human_duration`].
fn short_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 && d.as_secs() < 60 {
        format!("{}s", d.as_secs())
    } else {
        bg_run_core::text::human_duration(d)
    }
}

/// Why a process could not be started (or, rarely, supervised).
#[derive(Debug)]
pub enum ProcessError {
    /// The program does not exist (on `PATH` for a bare name).
    NotFound { program: String, path: Option<String> },
    /// The program exists but cannot be executed.
    NotExecutable { program: String, source: io::Error },
    /// The working directory does not exist or is not a directory.
    WorkdirMissing { workdir: PathBuf },
    /// The arguments and environment exceed what the kernel accepts in one exec.
    ArgumentsTooLong { bytes: usize },
    /// An argument or environment value contains a NUL byte.
    NulByte,
    /// Anything else: out of processes or file descriptors, a failed wait.
    Io { program: String, source: io::Error },
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::NotFound { program, path: Some(path) } => {
                write!(f, "agent command '{program}' not found on PATH ({path}); install it or give its full path")
            }
            ProcessError::NotFound { program, path: None } => {
                write!(f, "agent command '{program}' not found; install it or fix the path")
            }
            ProcessError::NotExecutable { program, source } => {
                write!(f, "agent command '{program}' cannot be executed ({source}); check its permissions and #! line")
            }
            ProcessError::WorkdirMissing { workdir } => {
                write!(f, "working directory {} does not exist or is not a directory; create it or fix the workdir setting", workdir.display())
            }
            ProcessError::ArgumentsTooLong { bytes } => write!(
                f,
                "the agent's arguments are too long for one exec ({bytes} bytes in arguments; Linux allows 128 KiB per argument); \
                 send the prompt on stdin instead"
            ),
            ProcessError::NulByte => f.write_str("an argument or environment value contains a NUL byte"),
            ProcessError::Io { program, source } => write!(f, "could not run agent command '{program}': {source}"),
        }
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProcessError::NotExecutable { source, .. } | ProcessError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl ProcessError {
    /// Configuration problems are permanent; running out of resources may pass.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            ProcessError::Io { .. } => FailureKind::Transient,
            _ => FailureKind::Permanent,
        }
    }
}

impl From<ProcessError> for Outcome {
    fn from(err: ProcessError) -> Self {
        Outcome::failure(err.failure_kind(), redact(&err.to_string()))
    }
}

/// `name` when it contains a `/`; otherwise the first executable file called `name` in the
/// directories of `path`. Entries that are not absolute (including empty ones, which mean the
/// current directory) are skipped: they would be looked up here but exec'd relative to the
/// agent's working directory, which is the task's checkout.
pub fn find_program(name: &Path, path: Option<&str>) -> Option<PathBuf> {
    if name.as_os_str().is_empty() {
        return None;
    }
    if name.as_os_str().as_encoded_bytes().contains(&b'/') {
        return Some(name.to_path_buf());
    }
    path?
        .split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Kills the group if the run is abandoned before the leader was reaped and the group cleaned up.
struct GroupGuard {
    pgid: u32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = signal_group(self.pgid, SIGKILL);
        }
    }
}

/// Runs `spec` in `ctx.workdir` until it exits, `ctx.timeout` passes, or `ctx.cancel` fires.
/// `on_line` sees every line of stdout and stderr as it arrives (cut at `spec.max_line`); it runs
/// on the dispatching task, so it should be quick.
///
/// A process that starts and then fails is an `Ok` with a failing [`ProcessResult`]; `Err` means
/// it could not be started.
pub async fn run_process(
    spec: ProcessSpec,
    ctx: &DispatchContext,
    on_line: impl FnMut(Stream, &str) + Send,
) -> Result<ProcessResult, ProcessError> {
    let display_name = spec.program.display().to_string();
    let path_var = spec.env.get("PATH");
    // Resolving the name here, rather than letting std search the child's PATH, keeps std on its
    // posix_spawn fast path (it falls back to fork+exec when it must search a changed PATH).
    let program = find_program(&spec.program, path_var)
        .ok_or_else(|| ProcessError::NotFound { program: display_name.clone(), path: path_var.map(str::to_owned) })?;

    let mut cmd = Command::new(&program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter())
        .current_dir(&ctx.workdir)
        .stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);

    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| spawn_error(e, &display_name, path_var, &spec, ctx))?;
    let Some(pgid) = child.id() else {
        return Err(ProcessError::Io {
            program: display_name,
            source: io::Error::other("child exited before it could be supervised"),
        });
    };
    let mut guard = GroupGuard { pgid, armed: true };
    tracing::debug!(program = %display_name, pid = pgid, "agent process started");

    let mut stdout_tail = TailBuffer::new(spec.output_cap);
    let mut stderr_tail = TailBuffer::new(spec.output_cap);
    let (ended, output_complete) = {
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        // Both readers call back from the same task; the mutex is never contended and only makes
        // the shared callback usable from two futures that must stay `Send`.
        let on_line = Mutex::new(on_line);
        let call = |stream: Stream, line: &str| {
            let mut f = on_line.lock().unwrap_or_else(|e| e.into_inner());
            f(stream, line);
        };
        let feed_stdin = async {
            if let (Some(mut pipe), Some(data)) = (stdin, spec.stdin.as_deref()) {
                // A child that exits without reading its stdin closes the pipe: not our error.
                let _ = pipe.write_all(data).await;
            }
        };
        let read_stdout = async {
            if let Some(pipe) = stdout {
                read_lines(pipe, &mut stdout_tail, spec.max_line, |l| call(Stream::Stdout, l)).await;
            }
        };
        let read_stderr = async {
            if let Some(pipe) = stderr {
                read_lines(pipe, &mut stderr_tail, spec.max_line, |l| call(Stream::Stderr, l)).await;
            }
        };
        let mut io = std::pin::pin!(async { tokio::join!(feed_stdin, read_stdout, read_stderr) });
        let mut io_done = false;
        let mut supervise = std::pin::pin!(supervise(&mut child, pgid, ctx, spec.kill_grace));
        let ended = loop {
            tokio::select! {
                ended = &mut supervise => break ended,
                _ = &mut io, if !io_done => io_done = true,
            }
        };
        // The leader is gone; nothing it started may outlive it, and killing the rest of the
        // group is also what closes pipes that a background process inherited.
        let _ = signal_group(pgid, SIGKILL);
        guard.armed = false;
        let complete = io_done || tokio::time::timeout(spec.drain_timeout, &mut io).await.is_ok();
        (ended, complete)
    };
    let duration = started.elapsed();

    let (status, stopped, escalated) =
        ended.map_err(|source| ProcessError::Io { program: display_name.clone(), source })?;
    let exit = match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(sig)) => Exit::Signal(sig),
        (None, None) => Exit::Code(-1),
    };
    if !output_complete {
        tracing::warn!(
            program = %display_name,
            "a process outside the agent's process group kept its output open; stopped reading after {:?}",
            spec.drain_timeout
        );
    }
    if let Some(stop) = stopped {
        tracing::info!(program = %display_name, pid = pgid, ?stop, escalated, "agent process group stopped");
    }
    Ok(ProcessResult { exit, stopped, escalated, stdout: stdout_tail, stderr: stderr_tail, output_complete, duration })
}

/// Waits for the leader, stopping the group on timeout or cancellation.
async fn supervise(
    child: &mut Child,
    pgid: u32,
    ctx: &DispatchContext,
    kill_grace: Duration,
) -> io::Result<(ExitStatus, Option<Stop>, bool)> {
    let deadline = Instant::now().checked_add(ctx.timeout);
    let timer = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let stop = tokio::select! {
        // An agent that has already exited is not "timed out" just because the timer is also due.
        biased;
        status = child.wait() => return Ok((status?, None, false)),
        _ = timer => Stop::Timeout(ctx.timeout),
        _ = ctx.cancel.cancelled() => Stop::Cancelled,
    };
    let _ = signal_group(pgid, SIGTERM);
    match tokio::time::timeout(kill_grace, child.wait()).await {
        Ok(status) => Ok((status?, Some(stop), false)),
        Err(_) => {
            let _ = signal_group(pgid, SIGKILL);
            Ok((child.wait().await?, Some(stop), true))
        }
    }
}

fn spawn_error(
    err: io::Error,
    program: &str,
    path: Option<&str>,
    spec: &ProcessSpec,
    ctx: &DispatchContext,
) -> ProcessError {
    // posix_spawn reports a missing working directory as ENOENT too, so look before blaming the
    // program.
    if matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) && !ctx.workdir.is_dir() {
        return ProcessError::WorkdirMissing { workdir: ctx.workdir.clone() };
    }
    let bare = !program.contains('/');
    match err.raw_os_error() {
        Some(libc::ENOENT) => {
            ProcessError::NotFound { program: program.to_owned(), path: bare.then(|| path.unwrap_or("").to_owned()) }
        }
        Some(libc::EACCES) | Some(libc::ENOEXEC) | Some(libc::EISDIR) => {
            ProcessError::NotExecutable { program: program.to_owned(), source: err }
        }
        Some(libc::E2BIG) => ProcessError::ArgumentsTooLong { bytes: spec.args.iter().map(String::len).sum() },
        _ if err.kind() == io::ErrorKind::InvalidInput => ProcessError::NulByte,
        _ => ProcessError::Io { program: program.to_owned(), source: err },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_program_searches_only_absolute_path_entries() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        std::fs::write(&agent, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
        let not_exec = dir.path().join("data");
        std::fs::write(&not_exec, "").unwrap();

        let path = format!("relative/dir::{}", dir.path().display());
        assert_eq!(find_program(Path::new("agent"), Some(&path)), Some(agent.clone()));
        assert_eq!(find_program(Path::new("data"), Some(&path)), None, "not executable");
        assert_eq!(find_program(Path::new("agent"), Some("relative/dir:")), None);
        assert_eq!(find_program(Path::new("agent"), None), None);
        assert_eq!(find_program(Path::new("./x/agent"), None), Some(PathBuf::from("./x/agent")));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(short_duration(Duration::from_secs(5)), "5s");
        assert_eq!(short_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(short_duration(Duration::from_secs(3700)), "1h 1m 40s");
    }
}
