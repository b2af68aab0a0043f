//! Worktree workspaces against real git repositories in temporary directories: a branch and a
//! worktree per task, reuse on retry, removal per `Keep`, uncommitted work never thrown away.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bg_run_core::{DispatchContext, Dispatcher, FailureKind, Task};
use bg_run_dispatch::{CommandDispatcher, CommandSpec, EnvPolicy, Keep, WorkspaceDispatcher, WorkspaceMode};

const LONG: Duration = Duration::from_secs(30);

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.invalid"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository with one commit.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/README.md"), "hello\n").unwrap();
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-qm", "start"]);
    dir
}

/// An agent that runs `script` with `sh -c`, prints where it ran, and can commit.
fn agent(script: &str) -> Arc<dyn Dispatcher> {
    let mut spec = CommandSpec::new("sh").args(["-c", &format!("pwd; git branch --show-current; {script}")]);
    let mut parent: std::collections::BTreeMap<String, String> =
        [("PATH".to_owned(), std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))].into();
    for (k, v) in [
        ("GIT_AUTHOR_NAME", "Agent"),
        ("GIT_AUTHOR_EMAIL", "agent@example.invalid"),
        ("GIT_COMMITTER_NAME", "Agent"),
        ("GIT_COMMITTER_EMAIL", "agent@example.invalid"),
    ] {
        parent.insert(k.to_owned(), v.to_owned());
    }
    spec.env = EnvPolicy { allow: vec!["GIT_*".into()], parent: Some(parent), ..Default::default() };
    Arc::new(CommandDispatcher::new(spec).unwrap())
}

fn worktree(keep: Keep) -> WorkspaceMode {
    WorkspaceMode::Worktree { keep, base_ref: None }
}

async fn run(dispatcher: &dyn Dispatcher, id: &str, workdir: &Path, attempt: u32) -> bg_run_core::Outcome {
    let mut ctx = DispatchContext::new(workdir, LONG);
    ctx.attempt = attempt;
    dispatcher.dispatch(&Task::new(id, "task"), ctx).await
}

#[tokio::test]
async fn a_task_works_on_its_own_branch_and_a_clean_worktree_is_removed_after_success() {
    let repo = repo();
    let top = std::fs::canonicalize(repo.path()).unwrap();
    let dispatcher = WorkspaceDispatcher::new(
        agent("echo change >> README.md && git commit -qam 'agent: change' && echo committed"),
        worktree(Keep::OnFailure),
    );

    let outcome = run(&dispatcher, "owner/repo#42", &repo.path().join("sub"), 1).await;

    assert_eq!(outcome.failure, None, "{outcome:#?}");
    let mut lines = outcome.stdout_tail.lines();
    let ran_in = lines.next().unwrap();
    let branch = lines.next().unwrap();
    assert!(branch.starts_with("bg-run/owner-repo-42-"), "{branch}");
    let expected = top.join(".bg-run/worktrees").join(branch.trim_start_matches("bg-run/")).join("sub");
    assert_eq!(Path::new(ran_in), expected, "the agent ran in the worktree's counterpart of the workdir");
    assert!(
        outcome.summary.ends_with(&format!("committed\n\nBranch: {branch} (worktree removed)")),
        "{}",
        outcome.summary
    );
    assert!(!expected.exists(), "the clean worktree was removed");
    assert_eq!(git(repo.path(), &["log", "-1", "--format=%s", branch]), "agent: change", "the branch keeps the work");
    assert_eq!(git(repo.path(), &["branch", "--show-current"]), "main", "the main checkout is untouched");
    assert_eq!(git(repo.path(), &["status", "--porcelain"]), "", "worktrees do not show as untracked files");
}

#[tokio::test]
async fn a_failed_attempt_keeps_its_worktree_and_the_retry_continues_there() {
    let repo = repo();
    let dispatcher = WorkspaceDispatcher::new(
        agent(
            r#"if [ -f progress.txt ]; then echo "resumed: $(cat progress.txt)"; else echo step1 > progress.txt; exit 3; fi"#,
        ),
        worktree(Keep::OnFailure),
    );

    let first = run(&dispatcher, "7", repo.path(), 1).await;
    assert_eq!(first.failure, Some(FailureKind::Transient), "{first:#?}");
    let path = std::fs::canonicalize(repo.path()).unwrap().join(".bg-run/worktrees/7");
    assert!(
        first.summary.ends_with(&format!("Branch: bg-run/7 (worktree kept at {})", path.display())),
        "{}",
        first.summary
    );
    assert!(path.join("progress.txt").exists());

    let second = run(&dispatcher, "7", repo.path(), 2).await;
    assert_eq!(second.failure, None, "{second:#?}");
    assert!(second.stdout_tail.contains("resumed: step1"), "{}", second.stdout_tail);
    assert!(
        second
            .summary
            .ends_with(&format!("Branch: bg-run/7 (worktree kept at {}: it has uncommitted changes)", path.display())),
        "uncommitted work is never removed: {}",
        second.summary
    );
    assert!(path.join("progress.txt").exists());
}

#[tokio::test]
async fn a_removed_worktree_is_recreated_from_the_kept_branch() {
    let repo = repo();
    let dispatcher = WorkspaceDispatcher::new(
        agent("n=$(ls marks 2>/dev/null | wc -l); mkdir -p marks; touch marks/$n; git add marks; git commit -qm mark$n; echo marks=$n"),
        worktree(Keep::Never),
    );

    let first = run(&dispatcher, "9", repo.path(), 1).await;
    let second = run(&dispatcher, "9", repo.path(), 2).await;

    assert_eq!((first.failure, second.failure), (None, None), "{first:#?} {second:#?}");
    assert!(first.stdout_tail.contains("marks=0") && second.stdout_tail.contains("marks=1"), "{}", second.stdout_tail);
    assert!(second.summary.ends_with("Branch: bg-run/9 (worktree removed)"), "{}", second.summary);
    assert_eq!(
        git(repo.path(), &["log", "--format=%s", "bg-run/9"]).lines().collect::<Vec<_>>(),
        ["mark1", "mark0", "start"]
    );
}

#[tokio::test]
async fn keep_always_keeps_a_successful_worktree() {
    let repo = repo();
    let dispatcher = WorkspaceDispatcher::new(agent("true"), worktree(Keep::Always));
    let outcome = run(&dispatcher, "1", repo.path(), 1).await;
    assert_eq!(outcome.failure, None, "{outcome:#?}");
    assert!(outcome.summary.contains("(worktree kept at "), "{}", outcome.summary);
    assert!(repo.path().join(".bg-run/worktrees/1").is_dir());
}

#[tokio::test]
async fn a_workdir_outside_git_is_a_permanent_failure_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = WorkspaceDispatcher::new(agent("true"), worktree(Keep::OnFailure));
    let outcome = run(&dispatcher, "1", dir.path(), 1).await;
    assert_eq!(outcome.failure, Some(FailureKind::Permanent));
    assert!(outcome.summary.contains("is not inside a git repository"), "{}", outcome.summary);
    assert!(outcome.summary.contains("run `git init`"), "{}", outcome.summary);
    assert!(bg_run_dispatch::workspace::check_repository(dir.path()).await.is_err());
}

#[tokio::test]
async fn a_bad_base_ref_and_an_empty_repository_are_permanent_failures() {
    let repo = repo();
    let dispatcher = WorkspaceDispatcher::new(
        agent("true"),
        WorkspaceMode::Worktree { keep: Keep::OnFailure, base_ref: Some("no-such-branch".into()) },
    );
    let outcome = run(&dispatcher, "1", repo.path(), 1).await;
    assert_eq!(outcome.failure, Some(FailureKind::Permanent));
    assert!(outcome.summary.contains("base ref 'no-such-branch' does not name a commit"), "{}", outcome.summary);

    let empty = tempfile::tempdir().unwrap();
    git(empty.path(), &["init", "-q"]);
    let dispatcher = WorkspaceDispatcher::new(agent("true"), worktree(Keep::OnFailure));
    let outcome = run(&dispatcher, "1", empty.path(), 1).await;
    assert_eq!(outcome.failure, Some(FailureKind::Permanent));
    assert!(outcome.summary.contains("base ref 'HEAD' does not name a commit"), "{}", outcome.summary);
}

#[tokio::test]
async fn the_base_ref_is_where_the_branch_starts() {
    let repo = repo();
    git(repo.path(), &["checkout", "-qb", "release"]);
    std::fs::write(repo.path().join("release.txt"), "r\n").unwrap();
    git(repo.path(), &["add", "release.txt"]);
    git(repo.path(), &["commit", "-qm", "release"]);
    git(repo.path(), &["checkout", "-q", "main"]);
    let dispatcher = WorkspaceDispatcher::new(
        agent("ls"),
        WorkspaceMode::Worktree { keep: Keep::Never, base_ref: Some("release".into()) },
    );
    let outcome = run(&dispatcher, "5", repo.path(), 1).await;
    assert_eq!(outcome.failure, None, "{outcome:#?}");
    assert!(outcome.stdout_tail.contains("release.txt"), "{}", outcome.stdout_tail);
}

#[tokio::test]
async fn fixed_mode_runs_in_the_workdir_as_it_is() {
    let repo = repo();
    let inner = agent("true");
    let wrapped = WorkspaceDispatcher::wrap(inner.clone(), WorkspaceMode::Fixed);
    assert!(Arc::ptr_eq(&wrapped, &inner), "nothing to wrap");
    let dispatcher = WorkspaceDispatcher::new(inner, WorkspaceMode::Fixed);
    let outcome = run(&dispatcher, "1", repo.path(), 1).await;
    assert_eq!(outcome.failure, None, "{outcome:#?}");
    assert_eq!(Path::new(outcome.stdout_tail.lines().next().unwrap()), std::fs::canonicalize(repo.path()).unwrap());
    assert!(!repo.path().join(".bg-run").exists());
}
