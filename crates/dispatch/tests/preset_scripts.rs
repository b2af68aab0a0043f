//! Process wiring of the presets that have no binary here (gemini, aider), with small scripts in
//! their place; `probe` against the real pinned CLIs and against missing or broken ones.

mod preset_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bg_run_core::{Dispatcher, FailureKind, ProgressSink, Task};
use bg_run_dispatch::{build_preset, probe, EnvPolicy, PresetOptions};
use bg_run_testkit::fake_model::agent_cli;
use preset_support::{ctx, recorder, Dirs, DATABASE_URL};

const LONG: Duration = Duration::from_secs(30);

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn path_var() -> (String, String) {
    ("PATH".to_owned(), std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned()))
}

/// The NUL-separated argument list a script saved.
fn saved_argv(path: &Path) -> Vec<String> {
    let raw = std::fs::read_to_string(path).expect("the script saved its arguments");
    raw.split('\0').filter(|a| !a.is_empty()).map(str::to_owned).collect()
}

fn tricky_task() -> Task {
    let mut task = Task::new("gh-9", "-rf \"quotes\" $(whoami)");
    task.body = "Fix it.\n<!-- secret instruction -->\n`rm -rf /`".into();
    task
}

const GEMINI_OK: &str = r#"printf '%s\0' "$@" > "$ARGV_OUT"
env > "$ENV_OUT"
echo "Loaded cached credentials." >&2
cat <<'JSON'
{
  "session_id": "gem-session-1",
  "response": "Done: fixed it.",
  "stats": {
    "models": {
      "gemini-2.5-pro": {
        "api": { "totalRequests": 2, "totalErrors": 0, "totalLatencyMs": 900 },
        "tokens": { "prompt": 900, "candidates": 40, "total": 950, "cached": 100, "thoughts": 10, "tool": 0 }
      }
    }
  }
}
JSON
"#;

#[tokio::test]
async fn gemini_gets_its_arguments_and_a_clean_environment_and_is_judged_by_its_document() {
    let dirs = Dirs::new();
    let bin = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let program = script(bin.path(), "gemini", GEMINI_OK);
    let mut env =
        dirs.env(vec![path_var(), ("GEMINI_API_KEY".into(), "gem-key-for-the-test".into())], &["DATABASE_URL"]);
    env.set.insert("ARGV_OUT".into(), out.path().join("argv").display().to_string());
    env.set.insert("ENV_OUT".into(), out.path().join("env").display().to_string());
    let options = PresetOptions {
        program: Some(program.display().to_string()),
        model: Some("gemini-2.5-pro".into()),
        env,
        ..Default::default()
    };

    let dispatcher = build_preset("gemini", options).unwrap();
    let outcome = dispatcher.dispatch(&tricky_task(), ctx(dirs.ws(), LONG, ProgressSink::ignore())).await;

    assert_eq!(outcome.failure, None, "{outcome:#?}");
    assert_eq!(outcome.summary, "Done: fixed it.");
    assert_eq!(outcome.usage.session_id.as_deref(), Some("gem-session-1"));
    assert_eq!(outcome.usage.turns, Some(2));
    assert_eq!(outcome.usage.tokens.map(|t| (t.input, t.output, t.cache_read)), Some((900, 50, 100)));

    let argv = saved_argv(&out.path().join("argv"));
    assert_eq!(argv[..6], ["--output-format", "json", "--approval-mode", "default", "-m", "gemini-2.5-pro"]);
    assert_eq!(argv.len(), 7, "{argv:?}");
    let prompt = argv[6].strip_prefix("--prompt=").expect("the prompt is one --prompt= argument");
    assert!(prompt.contains("Title: -rf \"quotes\" $(whoami)") && prompt.contains("`rm -rf /`"), "{prompt}");
    assert!(!prompt.contains("secret instruction"), "{prompt}");

    let env = std::fs::read_to_string(out.path().join("env")).unwrap();
    assert!(!env.contains("GITHUB_TOKEN"), "{env}");
    assert!(env.contains(&format!("DATABASE_URL={DATABASE_URL}")), "{env}");
    assert!(env.contains("GEMINI_API_KEY=gem-key-for-the-test"), "the agent's own key passes");
    assert!(env.contains("BG_RUN_TASK_ID=gh-9") && env.contains("BG_RUN_ATTEMPT=1"), "{env}");
}

#[tokio::test]
async fn a_gemini_error_document_on_stderr_is_the_failure() {
    let dirs = Dirs::new();
    let bin = tempfile::tempdir().unwrap();
    let body = r#"cat >&2 <<'JSON'
{
  "error": {
    "type": "Error",
    "message": "Please set an Auth method or specify GEMINI_API_KEY",
    "code": 41
  }
}
JSON
exit 41
"#;
    let program = script(bin.path(), "gemini", body);
    let options = PresetOptions {
        program: Some(program.display().to_string()),
        env: dirs.env(vec![path_var()], &[]),
        ..Default::default()
    };

    let outcome = build_preset("gemini", options)
        .unwrap()
        .dispatch(&Task::new("1", "t"), ctx(dirs.ws(), LONG, ProgressSink::ignore()))
        .await;

    assert_eq!(outcome.failure, Some(FailureKind::Transient), "{outcome:#?}");
    assert_eq!(outcome.exit_code, Some(41));
    assert_eq!(outcome.summary, "Please set an Auth method or specify GEMINI_API_KEY");
}

fn git(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.invalid"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

fn identity() -> [(String, String); 4] {
    [
        ("GIT_AUTHOR_NAME", "Aider"),
        ("GIT_AUTHOR_EMAIL", "aider@example.invalid"),
        ("GIT_COMMITTER_NAME", "Aider"),
        ("GIT_COMMITTER_EMAIL", "aider@example.invalid"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
}

#[tokio::test]
async fn aider_success_summarises_its_output_and_the_diff_since_it_started() {
    let dirs = Dirs::new();
    git(dirs.ws(), &["init", "-q"]);
    std::fs::write(dirs.ws().join("README.md"), "hello\n").unwrap();
    git(dirs.ws(), &["add", "README.md"]);
    git(dirs.ws(), &["commit", "-qm", "start"]);
    let bin = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // Like aider: edit, auto-commit, and leave one change uncommitted.
    let body = r#"printf '%s\0' "$@" > "$ARGV_OUT"
echo "Aider v0.86.1"
echo "notes" > notes.md && git add notes.md && git commit -qm "aider: add notes"
echo "more" >> README.md
echo "Applied edit to notes.md"
echo "Commit 1234567 aider: add notes"
"#;
    let program = script(bin.path(), "aider", body);
    let mut env = dirs.env(vec![path_var()], &[]);
    env.set.extend(identity());
    env.set.insert("ARGV_OUT".into(), out.path().join("argv").display().to_string());
    let options = PresetOptions {
        program: Some(program.display().to_string()),
        model: Some("sonnet".into()),
        files: vec!["README.md".into(), "notes.md".into()],
        env,
        ..Default::default()
    };
    let (sink, seen) = recorder(|| ());

    let outcome = build_preset("aider", options).unwrap().dispatch(&tricky_task(), ctx(dirs.ws(), LONG, sink)).await;

    assert_eq!(outcome.failure, None, "{outcome:#?}");
    let (output, changes) = outcome.summary.split_once("\n\nChanges since ").expect(&outcome.summary);
    assert_eq!(output, "Aider v0.86.1\nApplied edit to notes.md\nCommit 1234567 aider: add notes");
    assert!(changes.contains("README.md | 1 +") && changes.contains("notes.md  | 1 +"), "{changes}");
    assert!(changes.contains("2 files changed, 2 insertions(+)"), "{changes}");
    let seen: Vec<String> = seen.lock().unwrap().iter().map(|(p, _)| format!("{}: {}", p.kind, p.message)).collect();
    assert_eq!(seen[0], "output: Aider v0.86.1", "{seen:?}");

    let argv = saved_argv(&out.path().join("argv"));
    assert!(argv[0].starts_with("--message=You have been given a task"), "{argv:?}");
    assert_eq!(
        argv[1..],
        [
            "--yes-always",
            "--no-pretty",
            "--no-check-update",
            "--no-show-release-notes",
            "--no-analytics",
            "--model=sonnet",
            "--",
            "README.md",
            "notes.md"
        ]
    );
}

#[tokio::test]
async fn aider_failure_is_its_exit_code_with_stderr() {
    let dirs = Dirs::new();
    let bin = tempfile::tempdir().unwrap();
    let program = script(bin.path(), "aider", "echo 'litellm.AuthenticationError: bad key' >&2\nexit 1\n");
    let options = PresetOptions {
        program: Some(program.display().to_string()),
        env: dirs.env(vec![path_var()], &[]),
        ..Default::default()
    };

    let outcome = build_preset("aider", options)
        .unwrap()
        .dispatch(&Task::new("1", "t"), ctx(dirs.ws(), LONG, ProgressSink::ignore()))
        .await;

    assert_eq!(outcome.failure, Some(FailureKind::Transient));
    assert_eq!(outcome.summary, "agent exited with code 1: litellm.AuthenticationError: bad key");
}

#[tokio::test]
async fn a_missing_binary_fails_each_run_permanently_saying_so() {
    let dirs = Dirs::new();
    let options = PresetOptions {
        env: EnvPolicy {
            parent: Some([("PATH".to_owned(), "/nonexistent-bin".to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let outcome = build_preset("codex", options)
        .unwrap()
        .dispatch(&Task::new("1", "t"), ctx(dirs.ws(), LONG, ProgressSink::ignore()))
        .await;
    assert_eq!(outcome.failure, Some(FailureKind::Permanent));
    assert!(outcome.summary.contains("agent command 'codex' not found on PATH"), "{}", outcome.summary);
}

fn probe_env() -> EnvPolicy {
    let parent = [path_var(), ("HOME".to_owned(), std::env::temp_dir().display().to_string())].into();
    EnvPolicy {
        set: [
            ("DISABLE_AUTOUPDATER".to_owned(), "1".to_owned()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_owned(), "1".to_owned()),
        ]
        .into(),
        parent: Some(parent),
        ..Default::default()
    }
}

#[tokio::test]
async fn probe_reports_the_pinned_versions() {
    for (name, version) in [("claude", "2.1.332"), ("codex", "0.169.0")] {
        let Some(bin) = agent_cli(name) else { return };
        let options =
            PresetOptions { program: Some(bin.display().to_string()), env: probe_env(), ..Default::default() };
        let line = probe(name, &options).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(line.contains(version), "{name}: {line}");
        assert!(!line.contains('\n'));
    }
}

#[tokio::test]
async fn probe_says_how_to_install_a_missing_cli() {
    let options = PresetOptions {
        env: EnvPolicy {
            parent: Some([("PATH".to_owned(), "/nonexistent-bin".to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = probe("claude", &options).await.unwrap_err().to_string();
    assert_eq!(err, "claude not found on PATH; install it with npm i -g @anthropic-ai/claude-code");
    let err = probe("gemini", &PresetOptions { program: Some("/nonexistent/gemini".into()), ..options.clone() })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/gemini not found") && err.contains("npm i -g @google/gemini-cli"), "{err}");
    let err = probe("cursor", &options).await.unwrap_err().to_string();
    assert!(err.contains("unknown agent preset 'cursor'"), "{err}");
}

#[tokio::test]
async fn probe_reports_a_broken_cli() {
    let bin = tempfile::tempdir().unwrap();
    let broken = script(bin.path(), "aider", "echo 'ModuleNotFoundError: No module named aider' >&2\nexit 1\n");
    let options = PresetOptions { program: Some(broken.display().to_string()), env: probe_env(), ..Default::default() };
    let err = probe("aider", &options).await.unwrap_err().to_string();
    assert!(err.contains("--version` failed: agent exited with code 1: ModuleNotFoundError"), "{err}");
}
