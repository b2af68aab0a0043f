//! The JSONL parser on output shaped like Codex 0.169.0's (see testkit's CLI_NOTES.md), and the
//! argument list.

use super::*;
use crate::presets::testing::{exited, feed, judge, kinds, recorder, timed_out};

const STARTED: &str = r#"{"type":"thread.started","thread_id":"01a212a1-7420-7231-9a6a-61c53ae83f8a"}"#;
const TURN: &str = r#"{"type":"turn.started"}"#;
const COMPLETED: &str = r#"{"type":"turn.completed","usage":{"input_tokens":250,"cached_input_tokens":200,"cache_write_input_tokens":7,"output_tokens":30,"reasoning_output_tokens":4}}"#;

fn message(text: &str) -> String {
    serde_json::json!({"type": "item.completed", "item": {"id": "item_9", "type": "agent_message", "text": text}})
        .to_string()
}

fn lines(parts: &[&str]) -> String {
    parts.iter().map(|p| format!("{p}\n")).collect()
}

#[test]
fn a_plain_reply_is_a_success_with_the_last_message_and_usage() {
    let stdout = lines(&[STARTED, TURN, &message("looking"), &message("Wrote hello.txt"), COMPLETED]);
    let (sink, seen) = recorder();
    let mut parser = CodexStream::default();
    feed(&mut parser, &stdout, "WARNING: proceeding, even though we could not create PATH aliases\n", &sink);
    assert!(parser.session_started());
    let outcome = parser.finish(&exited(0, &stdout, ""));

    assert_eq!(outcome.failure, None, "{outcome:?}");
    assert_eq!(outcome.summary, "Wrote hello.txt");
    assert_eq!(outcome.usage.session_id.as_deref(), Some("01a212a1-7420-7231-9a6a-61c53ae83f8a"));
    assert_eq!(outcome.usage.tokens, Some(Tokens { input: 250, output: 30, cache_read: 200, cache_write: 7 }));
    assert_eq!(outcome.usage.turns, Some(1));
    assert_eq!(outcome.usage.cost_usd, None, "codex prints no cost");
    assert_eq!(
        kinds(&seen),
        ["session: thread 01a212a1-7420-7231-9a6a-61c53ae83f8a", "message: looking", "message: Wrote hello.txt"]
    );
}

#[test]
fn commands_file_changes_and_reconnects_are_progress() {
    let started = r#"{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc \"printf x > hello.txt\"","status":"in_progress"}}"#;
    let done = r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc \"printf x > hello.txt\"","aggregated_output":"","exit_code":0,"status":"completed"}}"#;
    let failed = r#"{"type":"item.completed","item":{"id":"item_2","type":"command_execution","command":"cargo test","exit_code":101,"status":"failed"}}"#;
    let change = r#"{"type":"item.completed","item":{"id":"item_3","type":"file_change","changes":[{"path":"src/a.rs","kind":"update"},{"path":"b.md","kind":"add"}],"status":"completed"}}"#;
    let reconnect = r#"{"type":"error","message":"Reconnecting... 1/5 (stream disconnected before completion)"}"#;
    let stdout = lines(&[STARTED, TURN, started, done, failed, change, reconnect, &message("done"), COMPLETED]);
    let (sink, seen) = recorder();
    let mut parser = CodexStream::default();
    feed(&mut parser, &stdout, "", &sink);
    let outcome = parser.finish(&exited(0, &stdout, ""));

    assert_eq!(outcome.failure, None, "a reconnect notice is not a failure: {outcome:?}");
    assert_eq!(outcome.summary, "done");
    assert_eq!(
        kinds(&seen)[1..],
        [
            r#"tool: $ /bin/bash -lc "printf x > hello.txt""#,
            "tool_error: exit 101: cargo test",
            "tool: edit src/a.rs, b.md",
            "error: Reconnecting... 1/5 (stream disconnected before completion)",
            "message: done",
        ]
    );
}

#[test]
fn a_failed_turn_is_a_failure_with_its_message() {
    let error = r#"{"type":"error","message":"unexpected status 503 Service Unavailable: fake: unavailable"}"#;
    let failed =
        r#"{"type":"turn.failed","error":{"message":"unexpected status 503 Service Unavailable: fake: unavailable"}}"#;
    let outcome = judge(CodexStream::default(), 1, &lines(&[STARTED, TURN, error, failed]), "");
    assert_eq!(outcome.failure, Some(FailureKind::Transient));
    assert_eq!(outcome.summary, "unexpected status 503 Service Unavailable: fake: unavailable");
    assert_eq!(outcome.usage.session_id.as_deref(), Some("01a212a1-7420-7231-9a6a-61c53ae83f8a"));

    let outcome = judge(CodexStream::default(), 0, &lines(&[STARTED, TURN, failed]), "");
    assert_eq!(outcome.failure, Some(FailureKind::Transient), "turn.failed fails the run even with exit 0");
}

#[test]
fn an_exit_before_the_thread_started_quotes_stderr() {
    let stderr = "WARNING: proceeding, even though we could not create PATH aliases\nError: thread/resume: thread/resume failed: no rollout found for thread id 0000 (code -32600)\n";
    let (sink, _) = recorder();
    let mut parser = CodexStream::default();
    feed(&mut parser, "", stderr, &sink);
    assert!(!parser.session_started(), "nothing on stdout: the session never opened");
    let outcome = parser.finish(&exited(1, "", stderr));
    assert_eq!(outcome.failure, Some(FailureKind::Transient));
    assert!(outcome.summary.contains("no rollout found for thread id 0000"), "{}", outcome.summary);
    assert!(!outcome.summary.contains("WARNING"), "{}", outcome.summary);
}

#[test]
fn exit_zero_without_a_completed_turn_is_a_failure() {
    let outcome = judge(CodexStream::default(), 0, &lines(&[STARTED, TURN]), "");
    assert_eq!(outcome.failure, Some(FailureKind::Transient));
    assert!(outcome.summary.starts_with("codex printed no completed turn"), "{}", outcome.summary);

    let outcome = judge(CodexStream::default(), 0, &lines(&[STARTED, TURN, COMPLETED]), "");
    assert_eq!(outcome.failure, None);
    assert_eq!(outcome.summary, "codex finished without a final message");
}

#[test]
fn a_timeout_keeps_the_thread_id() {
    let stdout = lines(&[STARTED, TURN]);
    let (sink, _) = recorder();
    let mut parser = CodexStream::default();
    feed(&mut parser, &stdout, "", &sink);
    let outcome = parser.finish(&timed_out(&stdout));
    assert_eq!(outcome.failure, Some(FailureKind::Timeout));
    assert_eq!(outcome.usage.session_id.as_deref(), Some("01a212a1-7420-7231-9a6a-61c53ae83f8a"));
}

#[test]
fn garbage_lines_are_skipped_and_odd_fields_read_as_absent() {
    let stdout = [
        "Reading additional input from stdin...",
        r#"{"type":"item.completed","item":"#,
        r#"{"type":"item.completed"}"#,
        r#"{"type":"item.completed","item":{"type":"agent_message","text":5}}"#,
        r#"{"type":"item.started","item":[]}"#,
        r#"{"type":"turn.completed","usage":"lots"}"#,
        r#"{"type":"turn.failed","error":"just a string"}"#,
        "]]]",
    ]
    .join("\n");
    let (sink, _) = recorder();
    let mut parser = CodexStream::default();
    feed(&mut parser, &stdout, "", &sink);
    assert_eq!(parser.ignored_lines, 3);
    let outcome = parser.finish(&exited(1, &stdout, ""));
    assert_eq!(outcome.failure, Some(FailureKind::Transient));
    assert_eq!(outcome.summary, "the turn failed");
    assert_eq!(outcome.usage.tokens, None);
    assert_eq!(outcome.usage.turns, Some(1));
}

fn argv(options: PresetOptions, resume: Option<&str>) -> Vec<String> {
    CodexDispatcher::new(options).unwrap().argv("-fix it", std::path::Path::new("/w"), resume)
}

#[test]
fn arguments_for_a_fresh_and_a_resumed_run() {
    assert_eq!(
        argv(PresetOptions::default(), None),
        ["exec", "--json", "--skip-git-repo-check", "-C", "/w", "--sandbox", "workspace-write", "--", "-fix it"]
    );
    let options = PresetOptions {
        model: Some("gpt-5.5".into()),
        sandbox: Some("read-only".into()),
        system_prompt: Some("Say \"hi\"\n\tthen\\stop".into()),
        config_overrides: vec!["model_reasoning_effort=\"high\"".into()],
        extra_args: vec!["--ephemeral".into()],
        ..Default::default()
    };
    assert_eq!(
        argv(options.clone(), Some("01a2")),
        [
            "exec",
            "resume",
            "--json",
            "--skip-git-repo-check",
            "-m",
            "gpt-5.5",
            "-c",
            "sandbox_mode=\"read-only\"",
            "-c",
            r#"developer_instructions="Say \"hi\"\n\tthen\\stop""#,
            "-c",
            "model_reasoning_effort=\"high\"",
            "--ephemeral",
            "--",
            "01a2",
            "-fix it",
        ]
    );
}

#[test]
fn the_sandbox_is_opened_only_when_asked() {
    let refused = [
        PresetOptions { sandbox: Some("danger-full-access".into()), ..Default::default() },
        PresetOptions { extra_args: vec!["--dangerously-bypass-approvals-and-sandbox".into()], ..Default::default() },
        PresetOptions { extra_args: vec!["-s".into(), "danger-full-access".into()], ..Default::default() },
        PresetOptions { config_overrides: vec!["sandbox_mode=\"danger-full-access\"".into()], ..Default::default() },
    ];
    for options in refused {
        let err = CodexDispatcher::new(options.clone()).unwrap_err().to_string();
        assert!(err.contains("bypass_permissions = true"), "{options:?}: {err}");
        assert!(CodexDispatcher::new(PresetOptions { bypass_permissions: true, ..options }).is_ok());
    }
    let bypass = argv(PresetOptions { bypass_permissions: true, ..Default::default() }, Some("s"));
    assert!(bypass.contains(&"--dangerously-bypass-approvals-and-sandbox".to_owned()), "{bypass:?}");
    assert!(!bypass.iter().any(|a| a.contains("sandbox_mode")), "{bypass:?}");

    for (options, wanted) in [
        (PresetOptions { sandbox: Some("sandboxed".into()), ..Default::default() }, "read-only, workspace-write"),
        (PresetOptions { config_overrides: vec!["no-equals".into()], ..Default::default() }, "not key=value"),
        (PresetOptions { max_turns: Some(3), ..Default::default() }, "does not take `max_turns`"),
    ] {
        let err = CodexDispatcher::new(options).unwrap_err().to_string();
        assert!(err.contains(wanted), "{err}");
    }
}
