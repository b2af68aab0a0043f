//! Where an agent works on a task: the configured directory as it is, or a git worktree of its
//! own on a branch of its own.
//!
//! [`WorkspaceDispatcher`] wraps any [`Dispatcher`]. In [`WorkspaceMode::Worktree`] it runs
//! `git worktree add -b bg-run/<task> <repo>/.bg-run/worktrees/<task> <base>` in the repository
//! that holds the configured directory, runs the agent there, and afterwards removes the worktree
//! or keeps it as [`Keep`] says. The branch always stays, so a human can review it; the outcome's
//! summary names it. A retry of the same task reuses the branch and, if it was kept, the
//! worktree, so a resumed agent session finds its files where it left them.
//!
//! A worktree with uncommitted changes is never removed, whatever [`Keep`] says: the branch
//! would not hold that work, and removing it would lose it. The summary says where it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bg_run_core::{async_trait, DispatchContext, Dispatcher, FailureKind, Outcome, Task};
use tokio::sync::Mutex;

/// Prefix of every branch bg-run creates.
pub const BRANCH_PREFIX: &str = "bg-run/";
/// Where worktrees go, relative to the repository's top level. Added to the repository's
/// `info/exclude`, so the main checkout does not show them as untracked.
pub const WORKTREES_DIR: &str = ".bg-run/worktrees";
/// Longest a single git command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// When to keep a task's worktree after the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// Always keep it, for inspection.
    Always,
    /// Keep it when the run failed (for the retry and for a human to look at); remove it after a
    /// success. The default.
    #[default]
    OnFailure,
    /// Remove it after every run (unless it holds uncommitted changes).
    Never,
}

/// Where the agent runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum WorkspaceMode {
    /// In the context's working directory, as it is.
    #[default]
    Fixed,
    /// In a git worktree per task, on branch `bg-run/<task>`, created from `base_ref` (default
    /// `HEAD`) of the repository holding the context's working directory.
    Worktree { keep: Keep, base_ref: Option<String> },
}

/// Runs `inner` in the workspace `mode` describes. See the module documentation.
pub struct WorkspaceDispatcher {
    inner: Arc<dyn Dispatcher>,
    mode: WorkspaceMode,
    /// Worktree bookkeeping in one repository from concurrent tasks is serialised; the agents
    /// themselves run in parallel.
    git_lock: Mutex<()>,
}

impl std::fmt::Debug for WorkspaceDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceDispatcher").field("inner", &self.inner.name()).field("mode", &self.mode).finish()
    }
}

impl WorkspaceDispatcher {
    pub fn new(inner: Arc<dyn Dispatcher>, mode: WorkspaceMode) -> Self {
        WorkspaceDispatcher { inner, mode, git_lock: Mutex::new(()) }
    }

    /// `inner` itself for [`WorkspaceMode::Fixed`], else `inner` wrapped.
    pub fn wrap(inner: Arc<dyn Dispatcher>, mode: WorkspaceMode) -> Arc<dyn Dispatcher> {
        match mode {
            WorkspaceMode::Fixed => inner,
            mode => Arc::new(WorkspaceDispatcher::new(inner, mode)),
        }
    }

    async fn in_worktree(&self, task: &Task, ctx: DispatchContext, keep: Keep, base: Option<&str>) -> Outcome {
        let slug = task_slug(task.id.as_str());
        let branch = format!("{BRANCH_PREFIX}{slug}");
        let worktree = {
            let _guard = self.git_lock.lock().await;
            match prepare(&ctx.workdir, &slug, &branch, base).await {
                Ok(worktree) => worktree,
                Err(e) => return e.into_outcome(),
            }
        };
        let agent_ctx = DispatchContext { workdir: worktree.agent_dir.clone(), ..ctx };
        let mut outcome = self.inner.dispatch(task, agent_ctx).await;

        let remove = match (keep, outcome.failure) {
            // A released task comes back; its worktree is where it left off.
            (_, Some(FailureKind::Cancelled)) | (Keep::Always, _) => false,
            (Keep::OnFailure, failure) => failure.is_none(),
            (Keep::Never, _) => true,
        };
        let note = {
            let _guard = self.git_lock.lock().await;
            finish(&worktree, remove).await
        };
        let place = format!("Branch: {branch} ({note})");
        outcome.summary =
            if outcome.summary.trim().is_empty() { place } else { format!("{}\n\n{place}", outcome.summary) };
        outcome
    }
}

#[async_trait]
impl Dispatcher for WorkspaceDispatcher {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn dispatch(&self, task: &Task, ctx: DispatchContext) -> Outcome {
        match &self.mode {
            WorkspaceMode::Fixed => self.inner.dispatch(task, ctx).await,
            WorkspaceMode::Worktree { keep, base_ref } => {
                if ctx.cancel.is_cancelled() {
                    return Outcome::failure(FailureKind::Cancelled, "cancelled before the agent started");
                }
                self.in_worktree(task, ctx, *keep, base_ref.as_deref()).await
            }
        }
    }
}

/// The top level of the git repository holding `dir`, or a message saying it is not in one.
/// For `bg-run doctor` and config checks; a dispatch checks again.
pub async fn check_repository(dir: &Path) -> Result<PathBuf, String> {
    git(dir, &["rev-parse", "--show-toplevel"])
        .await
        .map(|top| PathBuf::from(top.trim()))
        .map_err(|e| not_a_repository(dir, &e))
}

fn not_a_repository(dir: &Path, error: &GitError) -> String {
    format!(
        "{} is not inside a git repository ({}); worktree workspaces need one: run `git init` and commit, or use a fixed workspace",
        dir.display(),
        error.message()
    )
}

/// A task's worktree, ready for the agent.
#[derive(Debug)]
struct Worktree {
    path: PathBuf,
    /// The worktree's counterpart of the configured directory (which may be below the top level).
    agent_dir: PathBuf,
}

/// Why a worktree could not be set up.
#[derive(Debug)]
struct SetupError {
    permanent: bool,
    message: String,
}

impl SetupError {
    fn into_outcome(self) -> Outcome {
        let kind = if self.permanent { FailureKind::Permanent } else { FailureKind::Transient };
        Outcome::failure(kind, self.message)
    }
}

async fn prepare(workdir: &Path, slug: &str, branch: &str, base: Option<&str>) -> Result<Worktree, SetupError> {
    if !workdir.is_dir() {
        return Err(SetupError {
            permanent: true,
            message: format!("working directory {} does not exist or is not a directory", workdir.display()),
        });
    }
    let top = check_repository(workdir).await.map_err(|message| SetupError { permanent: true, message })?;
    let prefix = git(workdir, &["rev-parse", "--show-prefix"]).await.map_err(transient)?;
    let common_dir =
        git(workdir, &["rev-parse", "--path-format=absolute", "--git-common-dir"]).await.map_err(transient)?;
    exclude_worktrees(Path::new(common_dir.trim())).map_err(|e| SetupError {
        permanent: false,
        message: format!("cannot add {WORKTREES_DIR} to {}/info/exclude: {e}", common_dir.trim()),
    })?;

    let path = top.join(WORKTREES_DIR).join(slug);
    let prefix = prefix.trim();
    let agent_dir = if prefix.is_empty() { path.clone() } else { path.join(prefix) };
    let reusable = path.is_dir()
        && git(&path, &["rev-parse", "--show-toplevel"]).await.is_ok_and(|t| Path::new(t.trim()) == path.as_path());
    if reusable {
        return Ok(Worktree { path, agent_dir });
    }
    // A worktree directory deleted by hand leaves a registration behind that blocks a new one.
    git(&top, &["worktree", "prune"]).await.map_err(transient)?;
    if path.exists() {
        return Err(SetupError {
            permanent: true,
            message: format!(
                "{} exists but is not a git worktree; remove it so the task can get a fresh one",
                path.display()
            ),
        });
    }
    let path_arg = path.display().to_string();
    let branch_ref = format!("refs/heads/{branch}");
    if git(&top, &["rev-parse", "--verify", "--quiet", &branch_ref]).await.is_ok() {
        git(&top, &["worktree", "add", &path_arg, branch]).await.map_err(transient)?;
    } else {
        let base = base.unwrap_or("HEAD");
        let commit = format!("{base}^{{commit}}");
        if git(&top, &["rev-parse", "--verify", "--quiet", &commit]).await.is_err() {
            return Err(SetupError {
                permanent: true,
                message: format!(
                    "base ref '{base}' does not name a commit in {} (a repository without commits has no HEAD yet); commit first or set base_ref",
                    top.display()
                ),
            });
        }
        git(&top, &["worktree", "add", "-b", branch, &path_arg, &commit]).await.map_err(transient)?;
    }
    Ok(Worktree { path, agent_dir })
}

/// Removes the worktree if asked and it holds no uncommitted work; says what became of it.
async fn finish(worktree: &Worktree, remove: bool) -> String {
    let shown = worktree.path.display();
    if !remove {
        return format!("worktree kept at {shown}");
    }
    match git(&worktree.path, &["status", "--porcelain"]).await {
        Ok(status) if !status.trim().is_empty() => {
            return format!("worktree kept at {shown}: it has uncommitted changes");
        }
        Ok(_) => {}
        Err(e) => return format!("worktree kept at {shown}: could not check it for changes: {}", e.message()),
    }
    let path_arg = worktree.path.display().to_string();
    match git(&worktree.path, &["worktree", "remove", &path_arg]).await {
        Ok(_) => "worktree removed".to_owned(),
        Err(e) => {
            tracing::warn!(worktree = %shown, error = %e.message(), "could not remove a task's worktree");
            format!("worktree kept at {shown}: removing it failed: {}", e.message())
        }
    }
}

fn transient(error: GitError) -> SetupError {
    SetupError { permanent: false, message: format!("preparing the task's worktree failed: {}", error.message()) }
}

/// Adds `/.bg-run/` to the repository's `info/exclude` unless a line already says so.
fn exclude_worktrees(common_dir: &Path) -> std::io::Result<()> {
    const LINE: &str = "/.bg-run/";
    let info = common_dir.join("info");
    let exclude = info.join("exclude");
    let current = match std::fs::read_to_string(&exclude) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    if current.lines().any(|l| l.trim() == LINE) {
        return Ok(());
    }
    std::fs::create_dir_all(&info)?;
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(LINE);
    text.push('\n');
    std::fs::write(&exclude, text)
}

/// A task id as a branch and directory name: letters, digits, `-`, `_` and `.` kept, anything
/// else a `-`; when that changed the id, a short hash of the original is appended, so ids that
/// differ only in such characters (`a/b`, `a-b`) still get branches of their own.
pub fn task_slug(id: &str) -> String {
    let mut slug = String::with_capacity(id.len());
    for c in id.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' };
        // No `..`, `--` runs or `.`/`-` pairs: git refuses `..` and the rest reads badly.
        if matches!(c, '-' | '.') && slug.ends_with(['-', '.']) {
            continue;
        }
        slug.push(c);
    }
    let mut slug = slug.trim_matches(['-', '.']).to_owned();
    if let Some(stem) = slug.strip_suffix(".lock") {
        slug = stem.to_owned();
    }
    slug.truncate(60);
    let slug = slug.trim_end_matches(['-', '.']).to_owned();
    if slug == id && !slug.is_empty() {
        return slug;
    }
    let hash = fnv1a(id.as_bytes());
    if slug.is_empty() {
        format!("task-{hash:08x}")
    } else {
        format!("{slug}-{hash:08x}")
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// A git command that failed or could not run.
#[derive(Debug)]
pub(crate) struct GitError(String);

impl GitError {
    pub(crate) fn message(&self) -> &str {
        &self.0
    }
}

/// Runs `git -C dir args…` with stdin on `/dev/null`; its stdout on success. Variables that
/// would point git at another repository are removed first.
pub(crate) async fn git(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(GIT_TIMEOUT, cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(GitError("git is not installed or not on PATH".to_owned()))
        }
        Ok(Err(e)) => return Err(GitError(format!("could not run git: {e}"))),
        Err(_) => {
            return Err(GitError(format!("`git {}` took longer than {}s", args.join(" "), GIT_TIMEOUT.as_secs())))
        }
    };
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no message").to_owned();
    Err(GitError(format!("`git {}` failed: {reason}", args.join(" "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_safe_branch_names_and_keep_ids_apart() {
        assert_eq!(task_slug("42"), "42");
        assert_eq!(task_slug("ENG-123"), "ENG-123");
        let a = task_slug("owner/repo#42");
        assert!(a.starts_with("owner-repo-42-"), "{a}");
        assert_ne!(task_slug("a/b"), task_slug("a-b"));
        assert_eq!(task_slug("a-b"), "a-b");
        for id in ["..", "", "x.lock", "../../etc", "-lead", "é", &"y".repeat(200)] {
            let slug = task_slug(id);
            assert!(!slug.is_empty() && slug.len() <= 70, "{id:?} → {slug:?}");
            assert!(
                !slug.contains("..") && !slug.starts_with(['-', '.']) && !slug.ends_with(".lock"),
                "{id:?} → {slug:?}"
            );
            assert!(slug.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')), "{slug:?}");
        }
    }

    #[test]
    fn exclude_line_is_added_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("info")).unwrap();
        std::fs::write(dir.path().join("info/exclude"), "# comment").unwrap();
        exclude_worktrees(dir.path()).unwrap();
        exclude_worktrees(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("info/exclude")).unwrap(), "# comment\n/.bg-run/\n");
        let fresh = tempfile::tempdir().unwrap();
        exclude_worktrees(fresh.path()).unwrap();
        assert_eq!(std::fs::read_to_string(fresh.path().join("info/exclude")).unwrap(), "/.bg-run/\n");
    }
}
