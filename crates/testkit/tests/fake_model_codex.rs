//! The real `codex` CLI (pinned in tools/agent-clis) against the fake Responses endpoint, fully
//! offline. What these tests pin down is written up in src/fake_model/CLI_NOTES.md.

use std::path::Path;
use std::time::Duration;

use bg_run_testkit::fake_model::{agent_cli, run_cli, CliRun, FakeModel, Turn, FAKE_API_KEY};
use serde_json::{json, Value};
use tempfile::TempDir;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// A model in Codex's built-in catalog; an unknown name works too but adds an `error` item
/// ("Model metadata ... not found") to the output.
const MODEL: &str = "gpt-5.5";

struct Codex {
    bin: std::path::PathBuf,
    model: FakeModel,
    home: TempDir,
    workspace: TempDir,
}

impl Codex {
    async fn start() -> Option<Codex> {
        let bin = agent_cli("codex")?;
        Some(Codex {
            bin,
            model: FakeModel::start().await,
            home: TempDir::new().expect("temp home"),
            workspace: TempDir::new().expect("temp workspace"),
        })
    }

    fn ws(&self) -> &Path {
        self.workspace.path()
    }

    /// `codex exec --json --skip-git-repo-check -C WS -m MODEL <provider> <extra...> -- <prompt>`
    /// with a cleared environment. `provider_extra` goes into the provider table.
    async fn run(&self, extra: &[&str], provider_extra: &str, prompt: &str) -> CliRun {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.env_clear()
            .envs(self.model.codex_env(self.home.path()))
            .current_dir(self.ws())
            .args(["exec", "--json", "--skip-git-repo-check", "-m", MODEL])
            .arg("-C")
            .arg(self.ws())
            .args(self.model.codex_config_args(provider_extra))
            .args(extra)
            .arg("--")
            .arg(prompt);
        run_cli(cmd, RUN_TIMEOUT).await
    }
}

/// Retries off, so that one scripted error is the error the CLI reports.
const NO_RETRIES: &str = "request_max_retries=0,stream_max_retries=0";

fn completed_items(run: &CliRun, item_type: &str) -> Vec<Value> {
    run.events_of("item.completed")
        .into_iter()
        .map(|e| e["item"].clone())
        .filter(|item| item["type"] == item_type)
        .collect()
}

/// The `function_call_output` items Codex sent back in a request.
fn call_outputs(body: &Value) -> Vec<Value> {
    body["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "function_call_output")
        .cloned()
        .collect()
}

#[tokio::test]
async fn plain_reply_is_the_agent_message_with_the_scripted_usage() {
    let Some(codex) = Codex::start().await else {
        return;
    };
    codex.model.push(Turn::text("Hello from the fake model").usage(1234, 56).cached(200));

    let run = codex.run(&["-c", "developer_instructions=\"BG-RUN-SYSTEM-MARKER\""], "", "say hello").await;

    assert_eq!(run.exit_code, Some(0), "{run}");
    let started = run.last_event("thread.started");
    assert!(started["thread_id"].as_str().is_some_and(|id| !id.is_empty()), "{started}");
    let messages = completed_items(&run, "agent_message");
    assert_eq!(messages.len(), 1, "{run}");
    assert_eq!(messages[0]["text"], "Hello from the fake model");
    let usage = &run.last_event("turn.completed")["usage"];
    assert_eq!(usage["input_tokens"], 1234, "{run}");
    assert_eq!(usage["output_tokens"], 56);
    assert_eq!(usage["cached_input_tokens"], 200);
    assert!(run.events_of("turn.failed").is_empty(), "{run}");
    assert!(run.events_of("error").is_empty(), "{run}");
    assert!(completed_items(&run, "error").is_empty(), "a catalog model gets no metadata warning: {run}");

    let requests = codex.model.model_requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let req = &requests[0];
    assert_eq!(req.path, "/v1/responses");
    assert_eq!(req.model(), Some(MODEL));
    assert_eq!(req.body["stream"], true);
    let bearer = format!("Bearer {FAKE_API_KEY}");
    assert_eq!(req.header("authorization"), Some(bearer.as_str()));
    assert!(req.user_text().contains("say hello"), "{}", req.user_text());
    assert!(req.system_text().contains("BG-RUN-SYSTEM-MARKER"), "developer_instructions reach the model");
    assert!(req.tool_names().iter().any(|t| t == "exec_command"), "{:?}", req.tool_names());
}

#[tokio::test]
async fn shell_tool_in_workspace_write_sandbox_creates_the_file() {
    let Some(codex) = Codex::start().await else {
        return;
    };
    codex.model.push(
        Turn::tool_call("exec_command", json!({"cmd": "printf 'written by the fake model' > hello.txt"}))
            .usage(100, 20),
    );
    codex.model.push(Turn::text("Wrote hello.txt").usage(150, 10));

    let run = codex.run(&["--sandbox", "workspace-write"], "", "write hello.txt").await;

    assert_eq!(run.exit_code, Some(0), "{run}");
    assert_eq!(
        std::fs::read_to_string(codex.ws().join("hello.txt")).ok().as_deref(),
        Some("written by the fake model"),
        "{run}"
    );
    let commands = completed_items(&run, "command_execution");
    assert_eq!(commands.len(), 1, "{run}");
    assert_eq!(commands[0]["exit_code"], 0);
    assert_eq!(commands[0]["status"], "completed");
    assert!(commands[0]["command"].as_str().unwrap_or_default().contains("hello.txt"));
    let messages = completed_items(&run, "agent_message");
    assert_eq!(messages.last().map(|m| m["text"].clone()), Some(json!("Wrote hello.txt")), "{run}");
    // Usage is summed over the turn's model requests.
    let usage = &run.last_event("turn.completed")["usage"];
    assert_eq!(usage["input_tokens"], 250);
    assert_eq!(usage["output_tokens"], 30);

    let requests = codex.model.model_requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let outputs = call_outputs(&requests[1].body);
    assert_eq!(outputs.len(), 1, "{outputs:#?}");
    // The call travels back in the history, paired with its output by call_id.
    let call = requests[1].body["input"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|item| item["type"] == "function_call")
        .cloned()
        .unwrap_or_default();
    assert_eq!(call["name"], "exec_command", "{:#}", requests[1].body["input"]);
    assert_eq!(outputs[0]["call_id"], call["call_id"]);
    assert!(outputs[0]["output"].as_str().unwrap_or_default().contains("exited with code 0"), "{outputs:#?}");
}

#[tokio::test]
async fn write_in_read_only_sandbox_fails_and_only_the_model_sees_why() {
    let Some(codex) = Codex::start().await else {
        return;
    };
    codex.model.push(Turn::tool_call("exec_command", json!({"cmd": "printf 'must not be written' > denied.txt"})));
    codex.model.push(Turn::text("I could not write"));

    let run = codex.run(&["--sandbox", "read-only"], "", "write denied.txt").await;

    assert_eq!(run.exit_code, Some(0), "{run}");
    assert!(!codex.ws().join("denied.txt").exists(), "{run}");
    let messages = completed_items(&run, "agent_message");
    assert_eq!(messages.last().map(|m| m["text"].clone()), Some(json!("I could not write")), "{run}");
    // Codex 0.169 either prints no command_execution item for a command the sandbox stopped, or
    // one that failed (which one depends on how its sandbox met the command); never a success.
    for item in completed_items(&run, "command_execution") {
        assert_eq!(item["status"], "failed", "{run}");
        assert_ne!(item["exit_code"], json!(0), "{run}");
    }

    let requests = codex.model.model_requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let outputs = call_outputs(&requests[1].body);
    assert_eq!(outputs.len(), 1, "{outputs:#?}");
    let output = outputs[0]["output"].as_str().unwrap_or_default();
    assert!(output.contains("Read-only file system"), "{output}");
    assert!(output.contains("exited with code 1"), "{output}");
}

#[tokio::test]
async fn invalid_request_error_fails_the_turn_with_the_api_message() {
    let Some(codex) = Codex::start().await else {
        return;
    };
    codex.model.push(Turn::error(400, "invalid_request_error", "fake: the request was rejected").times(10));

    // Default retry settings: a 400 is not retried.
    let run = codex.run(&[], "", "anything").await;

    assert_eq!(run.exit_code, Some(1), "{run}");
    let failed = run.last_event("turn.failed");
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    // The message is the response body as sent, JSON included.
    assert!(message.contains("fake: the request was rejected"), "{failed}");
    assert!(message.contains("invalid_request_error"), "{failed}");
    assert_eq!(run.last_event("error")["message"], failed["error"]["message"]);
    assert!(run.events_of("turn.completed").is_empty(), "{run}");
    assert_eq!(codex.model.model_requests().len(), 1);
}

#[tokio::test]
async fn server_error_without_retries_fails_the_turn() {
    let Some(codex) = Codex::start().await else {
        return;
    };
    codex.model.push(Turn::error(503, "api_error", "fake: unavailable").times(10));

    let run = codex.run(&[], NO_RETRIES, "anything").await;

    assert_eq!(run.exit_code, Some(1), "{run}");
    let failed = run.last_event("turn.failed");
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("503") && message.contains("fake: unavailable"), "{failed}");
    assert_eq!(codex.model.model_requests().len(), 1, "request_max_retries=0 is honoured");
}

#[tokio::test]
async fn server_error_is_retried_then_succeeds() {
    let Some(codex) = Codex::start().await else {
        return;
    };
    codex.model.push(Turn::error(500, "server_error", "fake: internal failure"));
    codex.model.push(Turn::text("second time lucky"));

    let run = codex.run(&[], "", "anything").await;

    assert_eq!(run.exit_code, Some(0), "{run}");
    assert_eq!(completed_items(&run, "agent_message")[0]["text"], "second time lucky");
    assert!(run.events_of("error").is_empty(), "a retried request is silent: {run}");
    assert_eq!(codex.model.model_requests().len(), 2);
}

#[tokio::test]
async fn response_failed_without_retries_fails_the_turn() {
    let Some(codex) = Codex::start().await else {
        return;
    };
    codex.model.push(Turn::stream_error("server_error", "fake: failed mid-stream").times(10));

    let run = codex.run(&[], NO_RETRIES, "anything").await;

    assert_eq!(run.exit_code, Some(1), "{run}");
    let failed = run.last_event("turn.failed");
    assert_eq!(failed["error"]["message"], "stream disconnected before completion: fake: failed mid-stream");
    assert_eq!(codex.model.model_requests().len(), 1);
}

#[tokio::test]
async fn response_failed_once_prints_an_error_event_yet_the_turn_completes() {
    let Some(codex) = Codex::start().await else {
        return;
    };
    codex.model.push(Turn::stream_error("server_error", "fake: failed mid-stream"));
    codex.model.push(Turn::text("recovered"));

    let run = codex.run(&[], "", "anything").await;

    // An `error` event alone is not a failure: Codex reports its reconnects with it.
    assert_eq!(run.exit_code, Some(0), "{run}");
    let errors = run.events_of("error");
    assert_eq!(errors.len(), 1, "{run}");
    let message = errors[0]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("Reconnecting... 1/"), "{message}");
    assert!(run.events_of("turn.failed").is_empty(), "{run}");
    run.last_event("turn.completed");
    assert_eq!(completed_items(&run, "agent_message")[0]["text"], "recovered");
    assert_eq!(codex.model.model_requests().len(), 2);
}

#[tokio::test]
async fn hanging_model_keeps_the_cli_waiting_until_killed() {
    let Some(codex) = Codex::start().await else {
        return;
    };
    codex.model.push(Turn::hang());

    let mut cmd = tokio::process::Command::new(&codex.bin);
    cmd.env_clear()
        .envs(codex.model.codex_env(codex.home.path()))
        .current_dir(codex.ws())
        .args(["exec", "--json", "--skip-git-repo-check", "-m", MODEL])
        .args(codex.model.codex_config_args(""))
        .args(["--", "anything"]);
    // Long enough for the CLI to start and send its request on a loaded machine.
    let run = run_cli(cmd, Duration::from_secs(8)).await;

    assert!(run.timed_out, "{run}");
    assert_eq!(run.exit_code, None);
    assert_eq!(codex.model.model_requests().len(), 1);
    assert!(run.events_of("turn.completed").is_empty(), "{run}");
    assert!(run.events_of("turn.failed").is_empty(), "{run}");
}
