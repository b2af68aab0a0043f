//! The stream-json parser on output shaped like Claude Code 2.1.332's (see testkit's
//! CLI_NOTES.md), and the argument list.

use super::*;
use crate::presets::testing::{exited, feed, judge, kinds, recorder, timed_out};

const INIT: &str = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"4dd7bfb2-b34d-4cc9-9824-d6ebe2548df0","tools":["Bash","Write"],"model":"claude-sonnet-5-5","permissionMode":"default"}"#;

fn assistant_text(text: &str) -> String {
    serde_json::json!({"type": "assistant", "message": {"content": [{"type": "text", "text": text}]}, "session_id": "4dd7bfb2-b34d-4cc9-9824-d6ebe2548df0"}).to_string()
}

fn result(fields: serde_json::Value) -> String {
    let mut event = serde_json::json!({
        "type": "result", "subtype": "success", "is_error": false, "num_turns": 1,
        "session_id": "4dd7bfb2-b34d-4cc9-9824-d6ebe2548df0", "total_cost_usd": 0.00007,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 2},
        "permission_denials": [], "result": "first answer"
    });
    for (k, v) in fields.as_object().unwrap() {
        if v.is_null() {
            event.as_object_mut().unwrap().remove(k);
        } else {
            event[k] = v.clone();
        }
    }
    event.to_string()
}

fn lines(parts: &[&str]) -> String {
    parts.iter().map(|p| format!("{p}\n")).collect()
}

#[test]
fn a_plain_reply_is_a_success_with_the_reported_usage() {
    let stdout = lines(&[INIT, &assistant_text("first answer"), &result(serde_json::json!({}))]);
    let (sink, seen) = recorder();
    let mut parser = ClaudeStream::default();
    feed(&mut parser, &stdout, "", &sink);
    let outcome = parser.finish(&exited(0, &stdout, ""));

    assert_eq!(outcome.failure, None, "{outcome:?}");
    assert_eq!(outcome.summary, "first answer");
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.usage.cost_usd, Some(0.00007));
    assert_eq!(outcome.usage.turns, Some(1));
    assert_eq!(outcome.usage.session_id.as_deref(), Some("4dd7bfb2-b34d-4cc9-9824-d6ebe2548df0"));
    assert_eq!(outcome.usage.tokens, Some(Tokens { input: 10, output: 5, cache_read: 3, cache_write: 2 }));
    assert!(outcome.usage.permission_denials.is_empty());
    assert_eq!(
        kinds(&seen),
        ["session: session 4dd7bfb2-b34d-4cc9-9824-d6ebe2548df0 (claude-sonnet-5-5)", "message: first answer"]
    );
}

#[test]
fn tool_calls_denials_and_tool_errors_are_reported() {
    let tool_use = serde_json::json!({"type": "assistant", "message": {"content": [
        {"type": "text", "text": "Let me write\nthe file."},
        {"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {"file_path": "/w/denied.txt", "content": "x"}}
    ]}})
    .to_string();
    let tool_result = serde_json::json!({"type": "user", "message": {"content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true,
         "content": [{"type": "text", "text": "Claude requested permissions to write to /w/denied.txt, but you haven't granted it yet."}]}
    ]}})
    .to_string();
    let denials = serde_json::json!({"permission_denials": [
        {"tool_name": "Write", "tool_use_id": "toolu_1", "tool_input": {"file_path": "/w/denied.txt"}},
        {"tool_name": "Bash", "tool_use_id": "toolu_2", "tool_input": {"command": "rm -rf /"}},
        {"tool_use_id": "no name"}
    ], "num_turns": 2, "result": "I was not allowed to write"});
    let stdout = lines(&[INIT, &tool_use, &tool_result, &result(denials)]);
    let (sink, seen) = recorder();
    let mut parser = ClaudeStream::default();
    feed(&mut parser, &stdout, "", &sink);
    let outcome = parser.finish(&exited(0, &stdout, ""));

    assert_eq!(outcome.failure, None, "a denial alone does not fail the run: {outcome:?}");
    assert_eq!(outcome.summary, "I was not allowed to write");
    assert_eq!(outcome.usage.permission_denials, ["Write", "Bash"]);
    let seen = kinds(&seen);
    assert_eq!(seen[1], "message: Let me write the file.");
    assert_eq!(seen[2], "tool: Write: /w/denied.txt");
    assert!(seen[3].starts_with("tool_error: Claude requested permissions to write"), "{seen:?}");
}

#[test]
fn an_api_error_is_a_transient_failure_in_the_cli_s_words() {
    let error = result(serde_json::json!({
        "is_error": true, "api_error_status": 400, "terminal_reason": "api_error",
        "result": "API Error: 400 fake: the request was rejected", "num_turns": 1, "total_cost_usd": 0
    }));
    let outcome = judge(ClaudeStream::default(), 1, &lines(&[INIT, &error]), "");
    assert_eq!(outcome.failure, Some(FailureKind::Transient));
    assert_eq!(outcome.summary, "API Error: 400 fake: the request was rejected");
    assert_eq!(outcome.exit_code, Some(1));
    assert_eq!(outcome.usage.cost_usd, Some(0.0));
}

#[test]
fn is_error_fails_the_run_even_with_exit_code_zero() {
    let error =
        result(serde_json::json!({"is_error": true, "result": "API Error: Request rejected (429) · slow down"}));
    let outcome = judge(ClaudeStream::default(), 0, &lines(&[INIT, &error]), "");
    assert_eq!(outcome.failure, Some(FailureKind::Transient));
    assert!(outcome.summary.contains("429"), "{}", outcome.summary);

    let subtype_only = result(serde_json::json!({"subtype": "error_during_execution", "result": null, "errors": []}));
    let outcome = judge(ClaudeStream::default(), 0, &lines(&[INIT, &subtype_only]), "");
    assert_eq!(outcome.failure, Some(FailureKind::Transient));
    assert_eq!(outcome.summary, "claude reported error_during_execution");
}

#[test]
fn max_turns_is_permanent_and_a_spent_budget_is_budget() {
    let max_turns = result(serde_json::json!({
        "subtype": "error_max_turns", "is_error": true, "result": null,
        "errors": ["Reached maximum number of turns (1)"], "terminal_reason": "max_turns"
    }));
    let outcome = judge(ClaudeStream::default(), 1, &lines(&[INIT, &max_turns]), "");
    assert_eq!(outcome.failure, Some(FailureKind::Permanent));
    assert_eq!(outcome.summary, "Reached maximum number of turns (1)");

    let budget = result(serde_json::json!({"subtype": "error_max_budget_usd", "is_error": true, "result": null}));
    let outcome = judge(ClaudeStream::default(), 1, &lines(&[INIT, &budget]), "");
    assert_eq!(outcome.failure, Some(FailureKind::Budget));
}

#[test]
fn no_result_event_is_a_failure_quoting_stderr() {
    let stderr = "\"write it\" was read as a value of --allowedTools, not as a prompt\n";
    let outcome = judge(ClaudeStream::default(), 1, "", stderr);
    assert_eq!(outcome.failure, Some(FailureKind::Transient));
    assert!(
        outcome.summary.starts_with("claude printed no result event; agent exited with code 1"),
        "{}",
        outcome.summary
    );
    assert!(outcome.summary.contains("was read as a value of --allowedTools"), "{}", outcome.summary);

    let outcome = judge(ClaudeStream::default(), 0, &lines(&[INIT, &assistant_text("hi")]), "");
    assert_eq!(outcome.failure, Some(FailureKind::Transient), "exit 0 without a result is not a success");
    assert_eq!(outcome.usage.session_id.as_deref(), Some("4dd7bfb2-b34d-4cc9-9824-d6ebe2548df0"));
}

#[test]
fn success_reported_with_a_failing_exit_code_is_a_failure() {
    let outcome = judge(ClaudeStream::default(), 2, &lines(&[INIT, &result(serde_json::json!({}))]), "");
    assert_eq!(outcome.failure, Some(FailureKind::Transient));
    assert_eq!(outcome.summary, "agent exited with code 2 after its result reported success");
}

#[test]
fn a_resumed_run_costs_what_this_run_spent() {
    let resumed = result(serde_json::json!({
        "total_cost_usd": 0.00014,
        "model_usage_since_last_result": {"claude-sonnet-5-5": {"costUSD": 0.00007}, "claude-haiku-5": {"costUSD": 0.00001}}
    }));
    let outcome = judge(ClaudeStream::default(), 0, &lines(&[INIT, &resumed]), "");
    let cost = outcome.usage.cost_usd.unwrap();
    assert!((cost - 0.00008).abs() < 1e-12, "{cost}");
}

#[test]
fn a_timeout_keeps_the_session_and_says_what_it_was_doing() {
    let stdout = lines(&[INIT, &assistant_text("running the tests")]);
    let (sink, _) = recorder();
    let mut parser = ClaudeStream::default();
    feed(&mut parser, &stdout, "", &sink);
    let outcome = parser.finish(&timed_out(&stdout));
    assert_eq!(outcome.failure, Some(FailureKind::Timeout));
    assert!(outcome.summary.starts_with("timed out after 5s"), "{}", outcome.summary);
    assert!(outcome.summary.ends_with("the last thing it did: running the tests"), "{}", outcome.summary);
    assert_eq!(outcome.usage.session_id.as_deref(), Some("4dd7bfb2-b34d-4cc9-9824-d6ebe2548df0"));
}

#[test]
fn garbage_lines_are_skipped_and_odd_fields_read_as_absent() {
    let odd = r#"{"type":"result","subtype":7,"is_error":"no","num_turns":"two","usage":5,"permission_denials":{"a":1},"result":["x"],"total_cost_usd":"free"}"#;
    let stdout = [
        "not json at all",
        "{\"type\":\"assistant\",\"message\":",
        "[1,2,3]",
        "{\"type\":\"assistant\",\"message\":{\"content\":\"not a list\"}}",
        "{\"type\":\"user\",\"message\":{\"content\":[{\"type\":\"tool_result\",\"is_error\":true}]}}",
        "{\"type\":42}",
        "\u{0}\u{1}binary",
        "",
        odd,
    ]
    .join("\n");
    let (sink, _) = recorder();
    let mut parser = ClaudeStream::default();
    feed(&mut parser, &stdout, "", &sink);
    assert_eq!(parser.ignored_lines, 4);
    let outcome = parser.finish(&exited(0, &stdout, ""));
    assert_eq!(outcome.failure, None, "an odd but present result with is_error not true: {outcome:?}");
    assert_eq!(outcome.summary, "claude finished without a final message");
    assert_eq!(outcome.usage.turns, None);
    assert_eq!(outcome.usage.cost_usd, None);
    assert_eq!(outcome.usage.tokens, None);
    assert!(outcome.usage.permission_denials.is_empty());
}

fn argv(options: PresetOptions, resume: Option<&str>) -> Vec<String> {
    ClaudeDispatcher::new(options).unwrap().argv("- do the task", resume)
}

#[test]
fn arguments_keep_the_prompt_last_after_a_double_dash() {
    assert_eq!(
        argv(PresetOptions::default(), None),
        ["-p", "--output-format", "stream-json", "--verbose", "--", "- do the task"]
    );
    let options = PresetOptions {
        model: Some("claude-sonnet-5-5".into()),
        allowed_tools: vec!["Write".into(), "Bash(cargo test:*)".into()],
        disallowed_tools: vec!["WebFetch".into()],
        permission_mode: Some("acceptEdits".into()),
        max_turns: Some(7),
        system_prompt: Some("- be brief".into()),
        extra_args: vec!["--effort".into(), "low".into()],
        ..Default::default()
    };
    assert_eq!(
        argv(options, Some("s-1")),
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            "claude-sonnet-5-5",
            "--permission-mode",
            "acceptEdits",
            "--max-turns",
            "7",
            "--append-system-prompt=- be brief",
            "--allowedTools",
            "Write",
            "Bash(cargo test:*)",
            "--disallowedTools",
            "WebFetch",
            "--resume",
            "s-1",
            "--effort",
            "low",
            "--",
            "- do the task",
        ]
    );
}

#[test]
fn permissions_are_bypassed_only_when_asked() {
    let refused = [
        PresetOptions { permission_mode: Some("bypassPermissions".into()), ..Default::default() },
        PresetOptions { extra_args: vec!["--dangerously-skip-permissions".into()], ..Default::default() },
        PresetOptions {
            extra_args: vec!["--permission-mode".into(), "bypassPermissions".into()],
            ..Default::default()
        },
    ];
    for options in refused {
        let err = ClaudeDispatcher::new(options.clone()).unwrap_err().to_string();
        assert!(err.contains("bypass_permissions = true"), "{options:?}: {err}");
        assert!(ClaudeDispatcher::new(PresetOptions { bypass_permissions: true, ..options }).is_ok());
    }
    let bypass = argv(PresetOptions { bypass_permissions: true, ..Default::default() }, None);
    assert!(bypass.contains(&"--dangerously-skip-permissions".to_owned()), "{bypass:?}");
    assert!(!argv(PresetOptions::default(), None).iter().any(|a| a.contains("dangerously")));

    let err = ClaudeDispatcher::new(PresetOptions { permission_mode: Some("yolo".into()), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("acceptEdits"), "{err}");
    let err = ClaudeDispatcher::new(PresetOptions { files: vec!["a.rs".into()], ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not take `files`"), "{err}");
}
