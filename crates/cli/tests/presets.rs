//! `bg-run --dispatch claude|codex` end to end: the real CLIs (pinned in tools/agent-clis) run
//! offline against the fake model endpoints, and the task ends with what they reported.

mod common;

use bg_run_testkit::fake_model::{agent_cli, FakeModel, Turn};
use common::{status, stderr, Sandbox};

const CLAUDE_MODEL: &str = "claude-sonnet-5-5";
const CODEX_MODEL: &str = "gpt-5.5";

/// Runs `bg-run ARGS` with `env` in a blocking thread, so the fake model keeps serving.
async fn bg_run(sb: Sandbox, args: Vec<String>, env: Vec<(String, String)>) -> (Sandbox, std::process::Output) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sb.cmd(&args).envs(env).output().unwrap();
        (sb, out)
    })
    .await
    .unwrap()
}

/// `bg-run --dispatch claude --once` against `model`, with the CLI's own switches for offline use
/// let through to the agent's clean environment.
fn claude_args(claude: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--dispatch",
        "claude",
        "--agent-bin",
        claude.to_str().unwrap(),
        "--model",
        CLAUDE_MODEL,
        "--once",
        "--env-allow",
        "DISABLE_*",
        "--env-allow",
        "CLAUDE_CODE_*",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn home_in(sb: &Sandbox) -> std::path::PathBuf {
    let home = sb.file("home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_reports_its_summary_cost_and_turns_to_the_task() {
    let Some(claude) = agent_cli("claude") else { return };
    let model = FakeModel::start().await;
    model.push(Turn::text("Fixed the typo in README.md.").usage(1200, 80));
    let sb = Sandbox::new();
    let id = sb.add("Fix the typo", &["--body", "README says 'teh'"]);
    let env = model.claude_env(&home_in(&sb));
    let (sb, out) = bg_run(sb, claude_args(&claude, &[]), env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let task = sb.task(id);
    assert_eq!(status(&task), "review", "{task}");
    assert_eq!(task["summary"], "Fixed the typo in README.md.");
    assert_eq!(task["turns"], 1);
    assert!(task["cost_usd"].as_f64().is_some_and(|c| c > 0.0), "{task}");
    assert!(task["session_id"].as_str().is_some_and(|s| !s.is_empty()), "{task}");
    // The prompt carried the task, fenced as data.
    let request = model.model_requests().into_iter().next().expect("claude asked the model");
    assert!(request.user_text().contains("README says 'teh'"), "{}", request.user_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_api_error_fails_the_attempt_with_the_cli_s_message() {
    let Some(claude) = agent_cli("claude") else { return };
    let model = FakeModel::start().await;
    model.push(Turn::error(400, "invalid_request_error", "bg-run test: this model is switched off").times(10));
    let sb = Sandbox::new();
    let id = sb.add("Too much", &[]);
    let mut env = model.claude_env(&home_in(&sb));
    env.push(("CLAUDE_CODE_MAX_RETRIES".into(), "0".into()));
    let (sb, out) = bg_run(sb, claude_args(&claude, &["--max-attempts", "1"]), env).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let task = sb.task(id);
    assert_eq!(status(&task), "failed", "{task}");
    let error = task["last_error"].as_str().unwrap();
    assert!(error.contains("this model is switched off"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_reports_its_final_message_and_tokens_to_the_task() {
    let Some(codex) = agent_cli("codex") else { return };
    let model = FakeModel::start().await;
    model.push(Turn::text("Renamed the function and updated callers.").usage(900, 45));
    let sb = Sandbox::new();
    let id = sb.add("Rename foo to bar", &[]);
    let env = model.codex_env(&home_in(&sb));
    let mut args: Vec<String> = ["--dispatch", "codex", "--agent-bin", codex.to_str().unwrap(), "--model", CODEX_MODEL]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--once".into(), "--sandbox".into(), "read-only".into()]);
    for arg in model.codex_config_args("request_max_retries=0,stream_max_retries=0") {
        if arg != "-c" {
            args.push("--agent-arg=-c".into());
            args.push(format!("--agent-arg={arg}"));
        }
    }
    let (sb, out) = bg_run(sb, args, env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let task = sb.task(id);
    assert_eq!(status(&task), "review", "{task}");
    assert_eq!(task["summary"], "Renamed the function and updated callers.");
    assert_eq!(task["tokens"]["output"], 45, "{task}");
}
