//! The real `claude` CLI (pinned in tools/agent-clis) against the fake Anthropic endpoint,
//! fully offline. What these tests pin down is written up in src/fake_model/CLI_NOTES.md.

use std::path::Path;
use std::time::Duration;

use bg_run_testkit::fake_model::{agent_cli, run_cli, CliRun, FakeModel, Turn, FAKE_API_KEY};
use serde_json::{json, Value};
use tempfile::TempDir;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// A current model: an id near retirement draws a stderr warning, and a retired one may be remapped.
const MODEL: &str = "claude-sonnet-5-5";

struct Claude {
    bin: std::path::PathBuf,
    model: FakeModel,
    home: TempDir,
    workspace: TempDir,
}

impl Claude {
    async fn start() -> Option<Claude> {
        let bin = agent_cli("claude")?;
        Some(Claude {
            bin,
            model: FakeModel::start().await,
            home: TempDir::new().expect("temp home"),
            workspace: TempDir::new().expect("temp workspace"),
        })
    }

    fn ws(&self) -> &Path {
        self.workspace.path()
    }

    /// `claude -p --output-format stream-json --verbose --model MODEL <extra...> <prompt>` in the
    /// workspace, with a cleared environment plus `env`.
    async fn run(&self, extra: &[&str], env: &[(&str, &str)], prompt: &str) -> CliRun {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.env_clear()
            .envs(self.model.claude_env(self.home.path()))
            .envs(env.iter().copied())
            .current_dir(self.ws())
            .args(["-p", "--output-format", "stream-json", "--verbose", "--model", MODEL])
            .args(extra)
            // --allowedTools and --disallowedTools take any number of values and would swallow
            // the prompt; `--` ends them (and protects a prompt that starts with a dash).
            .arg("--")
            .arg(prompt);
        run_cli(cmd, RUN_TIMEOUT).await
    }
}

/// The `tool_result` blocks Claude Code sent back in a request.
fn tool_results(body: &Value) -> Vec<Value> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|block| block["type"] == "tool_result")
        .cloned()
        .collect()
}

fn tool_result_text(block: &Value) -> String {
    match &block["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

#[tokio::test]
async fn plain_reply_is_the_result_with_the_scripted_usage() {
    let Some(claude) = Claude::start().await else {
        return;
    };
    claude.model.push(Turn::text("Hello from the fake model").usage(1234, 56));

    let run = claude.run(&["--append-system-prompt", "BG-RUN-SYSTEM-MARKER follow the task"], &[], "say hello").await;

    assert_eq!(run.exit_code, Some(0), "{run}");
    let init = run.last_event("system");
    assert_eq!(init["subtype"], "init", "{run}");
    let result = run.last_event("result");
    assert_eq!(result["result"], "Hello from the fake model", "{run}");
    assert_eq!(result["is_error"], false);
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["num_turns"], 1);
    assert_eq!(result["session_id"], init["session_id"]);
    assert_eq!(result["usage"]["input_tokens"], 1234);
    assert_eq!(result["usage"]["output_tokens"], 56);
    assert!(
        result["total_cost_usd"].as_f64().is_some_and(|c| c > 0.0),
        "cost is computed from the scripted usage: {result}"
    );
    assert_eq!(result["permission_denials"], json!([]));

    let requests = claude.model.model_requests();
    assert_eq!(requests.len(), 1, "one model request for one turn: {requests:#?}");
    let req = &requests[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.model(), Some(MODEL));
    assert_eq!(req.body["stream"], true);
    assert_eq!(req.header("x-api-key"), Some(FAKE_API_KEY));
    assert!(req.header("anthropic-version").is_some());
    assert!(req.system_text().contains("BG-RUN-SYSTEM-MARKER follow the task"));
    assert!(req.user_text().contains("say hello"));
    assert!(req.tool_names().iter().any(|t| t == "Write"), "{:?}", req.tool_names());
}

#[tokio::test]
async fn allowed_write_tool_creates_the_file() {
    let Some(claude) = Claude::start().await else {
        return;
    };
    let target = claude.ws().join("hello.txt");
    claude.model.push(
        Turn::tool_call("Write", json!({"file_path": target, "content": "written by the fake model\n"})).usage(100, 20),
    );
    claude.model.push(Turn::text("Wrote hello.txt").usage(150, 10));

    let run = claude.run(&["--allowedTools", "Write"], &[], "write hello.txt").await;

    assert_eq!(run.exit_code, Some(0), "{run}");
    assert_eq!(std::fs::read_to_string(&target).ok().as_deref(), Some("written by the fake model\n"), "{run}");
    let result = run.last_event("result");
    assert_eq!(result["is_error"], false, "{run}");
    assert_eq!(result["result"], "Wrote hello.txt");
    assert_eq!(result["num_turns"], 2);
    assert_eq!(result["permission_denials"], json!([]));
    assert_eq!(result["usage"]["input_tokens"], 250);
    assert_eq!(result["usage"]["output_tokens"], 30);

    let tool_use = run
        .events_of("assistant")
        .iter()
        .flat_map(|e| e["message"]["content"].as_array().cloned().unwrap_or_default())
        .find(|block| block["type"] == "tool_use")
        .unwrap_or_else(|| panic!("the tool call shows in the stream\n{run}"));
    assert_eq!(tool_use["name"], "Write");

    let requests = claude.model.model_requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let results = tool_results(&requests[1].body);
    assert_eq!(results.len(), 1, "{results:#?}");
    assert_eq!(results[0]["tool_use_id"], tool_use["id"]);
    assert_ne!(results[0]["is_error"], true, "{results:#?}");
}

#[tokio::test]
async fn accept_edits_mode_permits_write_with_a_relative_path() {
    let Some(claude) = Claude::start().await else {
        return;
    };
    claude.model.push(Turn::tool_call("Write", json!({"file_path": "notes/relative.txt", "content": "relative"})));
    claude.model.push(Turn::text("Wrote it"));

    let run = claude.run(&["--permission-mode", "acceptEdits"], &[], "write notes/relative.txt").await;

    assert_eq!(run.exit_code, Some(0), "{run}");
    assert_eq!(std::fs::read_to_string(claude.ws().join("notes/relative.txt")).ok().as_deref(), Some("relative"));
    let result = run.last_event("result");
    assert_eq!(result["is_error"], false, "{run}");
    assert_eq!(result["permission_denials"], json!([]));
}

#[tokio::test]
async fn max_turns_ends_the_run_as_an_error() {
    let Some(claude) = Claude::start().await else {
        return;
    };
    claude.model.push(Turn::tool_call("Bash", json!({"command": "echo one >> turns.txt"})).times(3));

    let run = claude.run(&["--max-turns", "1", "--allowedTools", "Bash"], &[], "loop").await;

    assert_eq!(run.exit_code, Some(1), "{run}");
    let result = run.last_event("result");
    assert_eq!(result["is_error"], true, "{run}");
    assert_eq!(result["subtype"], "error_max_turns");
    assert_eq!(result["terminal_reason"], "max_turns");
    assert_eq!(result["errors"], json!(["Reached maximum number of turns (1)"]));
    assert!(result.get("result").is_none(), "no final message: {result}");
    // The one allowed turn's tool call did run.
    assert_eq!(std::fs::read_to_string(claude.ws().join("turns.txt")).ok().as_deref(), Some("one\n"));
    assert_eq!(claude.model.model_requests().len(), 1);
}

#[tokio::test]
async fn tool_without_permission_is_denied_and_reported() {
    let Some(claude) = Claude::start().await else {
        return;
    };
    let target = claude.ws().join("denied.txt");
    claude.model.push(Turn::tool_call("Write", json!({"file_path": target, "content": "must not be written"})));
    claude.model.push(Turn::text("I was not allowed to write"));

    let run = claude.run(&[], &[], "write denied.txt").await;

    assert_eq!(run.exit_code, Some(0), "{run}");
    assert!(!target.exists(), "the denied write did not happen\n{run}");
    let result = run.last_event("result");
    assert_eq!(result["is_error"], false, "{run}");
    assert_eq!(result["result"], "I was not allowed to write");
    let denials = result["permission_denials"].as_array().cloned().unwrap_or_default();
    assert_eq!(denials.len(), 1, "{result}");
    assert_eq!(denials[0]["tool_name"], "Write");
    assert_eq!(denials[0]["tool_input"]["file_path"], json!(target));

    let requests = claude.model.model_requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let results = tool_results(&requests[1].body);
    assert_eq!(results.len(), 1, "{results:#?}");
    assert_eq!(results[0]["is_error"], true, "{results:#?}");
}

#[tokio::test]
async fn disallowed_tool_is_not_offered_and_a_call_to_it_fails() {
    let Some(claude) = Claude::start().await else {
        return;
    };
    let target = claude.ws().join("disallowed.txt");
    claude.model.push(Turn::tool_call("Write", json!({"file_path": target, "content": "must not be written"})));
    claude.model.push(Turn::text("Write is not available"));

    let run = claude.run(&["--disallowedTools", "Write"], &[], "write disallowed.txt").await;

    assert_eq!(run.exit_code, Some(0), "{run}");
    assert!(!target.exists(), "{run}");
    let requests = claude.model.model_requests();
    assert!(!requests[0].tool_names().iter().any(|t| t == "Write"), "{:?}", requests[0].tool_names());
    let result = run.last_event("result");
    assert_eq!(result["is_error"], false, "{run}");
    assert_eq!(result["result"], "Write is not available");
    let results = tool_results(&requests[1].body);
    assert_eq!(results.len(), 1, "{results:#?}");
    assert_eq!(results[0]["is_error"], true, "{results:#?}");
    // Not a permission denial: the tool does not exist for this session.
    assert_eq!(result["permission_denials"], json!([]));
    assert!(tool_result_text(&results[0]).contains("No such tool available: Write"), "{results:#?}");
}

#[tokio::test]
async fn invalid_request_error_makes_the_result_an_error() {
    let Some(claude) = Claude::start().await else {
        return;
    };
    // Served more than once: Claude Code re-sends a request that got a 400 without some of its
    // optional `anthropic-beta` values, in case a gateway rejected those.
    claude.model.push(Turn::error(400, "invalid_request_error", "fake: the request was rejected").times(20));

    let run = claude.run(&[], &[], "anything").await;

    assert_eq!(run.exit_code, Some(1), "{run}");
    let result = run.last_event("result");
    assert_eq!(result["is_error"], true, "{run}");
    // Not an error_* subtype: is_error is the field that tells.
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["api_error_status"], 400);
    assert_eq!(result["api_error_type"], "invalid_request_error");
    assert_eq!(result["terminal_reason"], "api_error");
    assert!(
        result["result"].as_str().unwrap_or_default().contains("fake: the request was rejected"),
        "the result carries the API's message: {result}"
    );
    // Each resend drops optional betas (6 requests for this model with 2.1.332); the error
    // surfaces once none is left to drop.
    let requests = claude.model.model_requests();
    assert!((2..=10).contains(&requests.len()), "{} requests", requests.len());
    let betas = |i: usize| requests[i].header("anthropic-beta").unwrap_or_default().len();
    assert!(betas(requests.len() - 1) < betas(0), "resent with fewer betas");
}

#[tokio::test]
async fn overloaded_is_retried_then_succeeds() {
    let Some(claude) = Claude::start().await else {
        return;
    };
    claude.model.push(Turn::error(529, "overloaded_error", "fake: overloaded"));
    claude.model.push(Turn::text("second time lucky"));

    let run = claude.run(&[], &[], "anything").await;

    assert_eq!(run.exit_code, Some(0), "{run}");
    let result = run.last_event("result");
    assert_eq!(result["result"], "second time lucky", "{run}");
    assert_eq!(result["is_error"], false);
    assert_eq!(claude.model.model_requests().len(), 2);
}

#[tokio::test]
async fn overloaded_without_retries_is_an_error() {
    let Some(claude) = Claude::start().await else {
        return;
    };
    claude.model.push(Turn::error(529, "overloaded_error", "fake: overloaded").times(5));

    let run = claude.run(&[], &[("CLAUDE_CODE_MAX_RETRIES", "0")], "anything").await;

    assert_eq!(run.exit_code, Some(1), "{run}");
    let result = run.last_event("result");
    assert_eq!(result["is_error"], true, "{run}");
    assert_eq!(result["api_error_status"], 529);
    assert_eq!(result["api_error_type"], "overloaded_error");
    assert!(result["result"].as_str().unwrap_or_default().contains("529"), "{result}");
    assert_eq!(claude.model.model_requests().len(), 1, "CLAUDE_CODE_MAX_RETRIES=0 is honoured");
}

#[tokio::test]
async fn stream_error_event_makes_the_result_an_error() {
    let Some(claude) = Claude::start().await else {
        return;
    };
    claude.model.push(Turn::stream_error("api_error", "fake: internal failure mid-stream").times(5));

    let run = claude.run(&[], &[("CLAUDE_CODE_MAX_RETRIES", "0")], "anything").await;

    assert_eq!(run.exit_code, Some(1), "{run}");
    let result = run.last_event("result");
    assert_eq!(result["is_error"], true, "{run}");
    assert!(result["result"].as_str().unwrap_or_default().contains("fake: internal failure mid-stream"), "{result}");
    // After a failed stream Claude Code retries once without streaming; the fake answers that
    // with the error's documented HTTP status.
    let requests = claude.model.model_requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(requests[0].body["stream"], true);
    assert_ne!(requests[1].body["stream"], true);
    assert_eq!(result["api_error_status"], 500);
}

#[tokio::test]
async fn hanging_model_keeps_the_cli_waiting_until_killed() {
    let Some(claude) = Claude::start().await else {
        return;
    };
    claude.model.push(Turn::hang());

    let mut cmd = tokio::process::Command::new(&claude.bin);
    cmd.env_clear().envs(claude.model.claude_env(claude.home.path())).current_dir(claude.ws()).args([
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "anything",
    ]);
    // Long enough for the CLI to start and send its request on a loaded machine.
    let run = run_cli(cmd, Duration::from_secs(8)).await;

    assert!(run.timed_out, "{run}");
    assert_eq!(run.exit_code, None);
    assert_eq!(claude.model.model_requests().len(), 1);
    assert!(run.events_of("result").is_empty(), "{run}");
}
