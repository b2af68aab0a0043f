//! The codex preset driving the real `codex` CLI (pinned in tools/agent-clis) against the fake
//! Responses endpoint, offline, through `Dispatcher::dispatch`.

mod preset_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bg_run_core::{DispatchContext, Dispatcher, FailureKind, Outcome, ProgressSink, Task};
use bg_run_dispatch::{build_preset, PresetOptions};
use bg_run_testkit::fake_model::{agent_cli, FakeModel, Turn};
use preset_support::{ctx, last_event, recorder, Dirs};
use serde_json::json;

/// A model in Codex's catalog (another name adds a metadata warning to the output).
const MODEL: &str = "gpt-5.5";
const LONG: Duration = Duration::from_secs(90);

struct Rig {
    bin: PathBuf,
    model: Arc<FakeModel>,
    dirs: Dirs,
}

impl Rig {
    async fn start() -> Option<Rig> {
        let bin = agent_cli("codex")?;
        Some(Rig { bin, model: Arc::new(FakeModel::start().await), dirs: Dirs::new() })
    }

    /// The pinned binary pointed at the fake through `-c` overrides; `provider_extra` goes into
    /// the provider table (e.g. retries off).
    fn options(&self, provider_extra: &str) -> PresetOptions {
        let config_overrides = self.model.codex_config_args(provider_extra).into_iter().filter(|a| a != "-c").collect();
        PresetOptions {
            program: Some(self.bin.display().to_string()),
            model: Some(MODEL.into()),
            config_overrides,
            env: self.dirs.env(self.model.codex_env(self.dirs.home.path()), &[]),
            kill_grace: Duration::from_secs(2),
            ..Default::default()
        }
    }

    async fn dispatch(&self, options: PresetOptions, ctx: DispatchContext) -> Outcome {
        build_preset("codex", options).expect("valid options").dispatch(&Task::new("12", "fix the bug"), ctx).await
    }

    fn ctx(&self, progress: ProgressSink) -> DispatchContext {
        ctx(self.dirs.ws(), LONG, progress)
    }
}

fn completed_items(stdout: &str, item_type: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == item_type)
        .map(|e| e["item"].clone())
        .collect()
}

#[tokio::test]
async fn a_plain_reply_reports_what_the_cli_printed() {
    let Some(rig) = Rig::start().await else { return };
    rig.model.push(Turn::text("Hello from the fake model").usage(1234, 56).cached(200));
    let (sink, seen) = recorder(|| ());
    let options = PresetOptions { system_prompt: Some("BG-RUN-SKILL \"MARKER\"\nline two".into()), ..rig.options("") };

    let outcome = rig.dispatch(options, rig.ctx(sink)).await;

    assert_eq!(outcome.failure, None, "{outcome:#?}");
    assert_eq!(outcome.summary, "Hello from the fake model");
    let usage = &last_event(&outcome.stdout_tail, "turn.completed")["usage"];
    let tokens = outcome.usage.tokens.expect("tokens");
    assert_eq!(
        json!([tokens.input, tokens.output, tokens.cache_read]),
        json!([usage["input_tokens"], usage["output_tokens"], usage["cached_input_tokens"]])
    );
    assert_eq!((tokens.input, tokens.output, tokens.cache_read), (1234, 56, 200));
    let thread = last_event(&outcome.stdout_tail, "thread.started");
    assert_eq!(outcome.usage.session_id.as_deref(), thread["thread_id"].as_str());
    assert_eq!(outcome.usage.cost_usd, None);

    let seen: Vec<String> = seen.lock().unwrap().iter().map(|(p, _)| format!("{}: {}", p.kind, p.message)).collect();
    assert!(seen.contains(&"message: Hello from the fake model".to_owned()), "{seen:?}");
    let requests = rig.model.model_requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].system_text().contains("BG-RUN-SKILL \"MARKER\"\nline two"), "the skill arrives verbatim");
    assert!(requests[0].user_text().contains("Title: fix the bug"));
}

#[tokio::test]
async fn a_command_in_the_default_sandbox_writes_the_file_and_shows_as_progress() {
    let Some(rig) = Rig::start().await else { return };
    rig.model.push(Turn::tool_call("exec_command", json!({"cmd": "printf 'written by the agent' > hello.txt"})));
    rig.model.push(Turn::text("Wrote hello.txt"));
    let model = rig.model.clone();
    let (sink, seen) = recorder(move || model.model_requests().len());

    let outcome = rig.dispatch(rig.options(""), rig.ctx(sink)).await;

    assert_eq!(outcome.failure, None, "{outcome:#?}");
    assert_eq!(std::fs::read_to_string(rig.dirs.ws().join("hello.txt")).ok().as_deref(), Some("written by the agent"));
    assert_eq!(outcome.summary, "Wrote hello.txt");
    let seen = seen.lock().unwrap();
    let tool = seen.iter().find(|(p, _)| p.kind == "tool").unwrap_or_else(|| panic!("no tool progress: {seen:?}"));
    assert!(tool.0.message.starts_with("$ ") && tool.0.message.contains("hello.txt"), "{:?}", tool.0);
    assert_eq!(tool.1, 1, "reported while the agent ran, before it asked the model again");
}

#[tokio::test]
async fn a_read_only_sandbox_stops_the_write() {
    let Some(rig) = Rig::start().await else { return };
    rig.model.push(Turn::tool_call("exec_command", json!({"cmd": "printf 'must not be written' > denied.txt"})));
    rig.model.push(Turn::text("I could not write"));
    let options = PresetOptions { sandbox: Some("read-only".into()), ..rig.options("") };

    let outcome = rig.dispatch(options, rig.ctx(ProgressSink::ignore())).await;

    assert_eq!(outcome.failure, None, "{outcome:#?}");
    assert!(!rig.dirs.ws().join("denied.txt").exists());
    assert_eq!(outcome.summary, "I could not write");
    // Codex prints no denial of its own; only the model's output says why.
    assert!(completed_items(&outcome.stdout_tail, "command_execution").is_empty());
    let output = rig.model.model_requests()[1].body["input"].to_string();
    assert!(output.contains("Read-only file system"), "{output}");
}

#[tokio::test]
async fn a_model_error_is_a_failure_in_the_cli_s_own_words() {
    let Some(rig) = Rig::start().await else { return };
    rig.model.push(Turn::error(400, "invalid_request_error", "fake: the request was rejected").times(5));

    let outcome = rig.dispatch(rig.options(""), rig.ctx(ProgressSink::ignore())).await;

    assert_eq!(outcome.failure, Some(FailureKind::Transient), "{outcome:#?}");
    assert_eq!(outcome.exit_code, Some(1));
    let failed = last_event(&outcome.stdout_tail, "turn.failed");
    assert_eq!(outcome.summary, failed["error"]["message"].as_str().unwrap());
    assert!(outcome.summary.contains("fake: the request was rejected"), "{}", outcome.summary);
}

#[tokio::test]
async fn a_reconnect_notice_does_not_fail_the_run() {
    let Some(rig) = Rig::start().await else { return };
    rig.model.push(Turn::stream_error("server_error", "fake: failed mid-stream"));
    rig.model.push(Turn::text("recovered"));

    let outcome = rig.dispatch(rig.options(""), rig.ctx(ProgressSink::ignore())).await;

    assert_eq!(outcome.failure, None, "{outcome:#?}");
    assert_eq!(outcome.summary, "recovered");
    let error = last_event(&outcome.stdout_tail, "error");
    assert!(error["message"].as_str().unwrap().starts_with("Reconnecting..."), "{error}");
}

#[tokio::test]
async fn a_hanging_model_is_killed_at_the_timeout_and_nothing_is_left() {
    let Some(rig) = Rig::start().await else { return };
    rig.model.push(Turn::hang());
    // Long enough for the CLI to start and ask the model on a loaded machine.
    let timeout = Duration::from_secs(8);

    let outcome = rig.dispatch(rig.options(""), ctx(rig.dirs.ws(), timeout, ProgressSink::ignore())).await;

    assert_eq!(outcome.failure, Some(FailureKind::Timeout), "{outcome:#?}");
    assert!(outcome.summary.starts_with("timed out after 8s; process group killed"), "{}", outcome.summary);
    assert_eq!(rig.model.model_requests().len(), 1, "it was waiting for the model when it was stopped");
    assert!(outcome.usage.session_id.is_some(), "the thread is known, so a retry can resume it");
    assert_eq!(rig.dirs.leftover_processes(Duration::from_secs(5)), Vec::<u32>::new(), "no agent process survives");
}

#[tokio::test]
async fn a_retry_resumes_the_previous_thread_in_the_configured_sandbox() {
    let Some(rig) = Rig::start().await else { return };
    rig.model.push(Turn::text("first answer"));
    rig.model.push(Turn::tool_call("exec_command", json!({"cmd": "printf 'must not be written' > denied.txt"})));
    rig.model.push(Turn::text("second answer"));
    let first = rig.dispatch(rig.options(""), rig.ctx(ProgressSink::ignore())).await;
    assert_eq!(first.failure, None, "{first:#?}");
    let thread = first.usage.session_id.clone().expect("a thread id");

    let mut retry = rig.ctx(ProgressSink::ignore());
    retry.attempt = 2;
    retry.resume_session = Some(thread.clone());
    let options = PresetOptions { sandbox: Some("read-only".into()), ..rig.options("") };
    let second = rig.dispatch(options, retry).await;

    assert_eq!(second.failure, None, "{second:#?}");
    assert_eq!(second.summary, "second answer");
    assert_eq!(second.usage.session_id.as_deref(), Some(thread.as_str()));
    let requests = rig.model.model_requests();
    assert_eq!(requests.len(), 3);
    let input = requests[1].body["input"].to_string();
    assert!(input.contains("first answer"), "the resumed request carries the first attempt's conversation");
    assert!(input.contains("`sandbox_mode` is `read-only`"), "the resumed run is told its sandbox: {input}");
    assert!(!rig.dirs.ws().join("denied.txt").exists(), "exec resume runs in the configured sandbox");
}

#[tokio::test]
async fn a_thread_that_cannot_be_resumed_is_started_afresh() {
    let Some(rig) = Rig::start().await else { return };
    rig.model.push(Turn::text("fresh start"));
    let (sink, seen) = recorder(|| ());
    let mut retry = rig.ctx(sink);
    retry.attempt = 2;
    retry.resume_session = Some("00000000-0000-4000-8000-000000000000".into());

    let outcome = rig.dispatch(rig.options(""), retry).await;

    assert_eq!(outcome.failure, None, "{outcome:#?}");
    assert_eq!(outcome.summary, "fresh start");
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().any(|(p, _)| p.kind == "session" && p.message.starts_with("could not resume session 0000")),
        "{seen:?}"
    );
}
