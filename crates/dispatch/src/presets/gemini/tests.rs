//! The JSON parser on documents written from Gemini CLI's documentation (headless mode, JSON
//! output: `session_id`, `response`, `stats`, `error`; errors printed to stderr), and the
//! argument list. There is no Gemini binary here to record real output from.

use super::*;
use crate::presets::testing::judge;

/// Pretty-printed, as the CLI prints it (`JSON.stringify(output, null, 2)`).
const SUCCESS: &str = r#"{
  "session_id": "b2b90938-611f-4bd0-adf6-829e14549653",
  "response": "Fixed the typo in README.md.\nAll tests pass.",
  "stats": {
    "models": {
      "gemini-2.5-pro": {
        "api": { "totalRequests": 2, "totalErrors": 0, "totalLatencyMs": 5672 },
        "tokens": { "input": 13745, "prompt": 24401, "candidates": 215, "total": 24719, "cached": 10656, "thoughts": 103, "tool": 0 }
      },
      "gemini-2.5-flash": {
        "api": { "totalRequests": 1, "totalErrors": 0, "totalLatencyMs": 914 },
        "tokens": { "prompt": 803, "candidates": 16, "total": 819, "cached": 0, "thoughts": 0, "tool": 0 }
      }
    },
    "tools": { "totalCalls": 1, "totalSuccess": 1, "totalFail": 0, "byName": {} },
    "files": { "totalLinesAdded": 1, "totalLinesRemoved": 1 }
  }
}
"#;

const AUTH_ERROR: &str = r#"{
  "session_id": "b2b90938-611f-4bd0-adf6-829e14549653",
  "error": {
    "type": "Error",
    "message": "Please set an Auth method in your settings.json or specify GEMINI_API_KEY",
    "code": 41
  }
}
"#;

#[test]
fn a_response_is_a_success_with_tokens_summed_over_models() {
    let outcome = judge(GeminiOutput::default(), 0, SUCCESS, "Loaded cached credentials.\n");
    assert_eq!(outcome.failure, None, "{outcome:?}");
    assert_eq!(outcome.summary, "Fixed the typo in README.md.\nAll tests pass.");
    assert_eq!(outcome.usage.session_id.as_deref(), Some("b2b90938-611f-4bd0-adf6-829e14549653"));
    assert_eq!(
        outcome.usage.tokens,
        Some(Tokens { input: 24401 + 803, output: 215 + 103 + 16, cache_read: 10656, cache_write: 0 })
    );
    assert_eq!(outcome.usage.turns, Some(3));
    assert_eq!(outcome.usage.cost_usd, None);
}

#[test]
fn an_error_document_on_stderr_fails_the_run_by_its_exit_code() {
    let stderr = format!("Warning: something harmless\n{AUTH_ERROR}");
    let outcome = judge(GeminiOutput::default(), 41, "", &stderr);
    assert_eq!(outcome.failure, Some(FailureKind::Transient));
    assert_eq!(outcome.summary, "Please set an Auth method in your settings.json or specify GEMINI_API_KEY");
    assert_eq!(outcome.usage.session_id.as_deref(), Some("b2b90938-611f-4bd0-adf6-829e14549653"));

    let turn_limit = r#"{"error": {"type": "FatalTurnLimitedError", "message": "Reached max session turns for this session.", "code": 53}}"#;
    let outcome = judge(GeminiOutput::default(), 53, "", turn_limit);
    assert_eq!(outcome.failure, Some(FailureKind::Permanent));
    assert_eq!(outcome.summary, "FatalTurnLimitedError: Reached max session turns for this session.");
}

#[test]
fn an_error_beside_a_response_is_a_failure() {
    let doc = r#"{"response": "Partial response", "error": {"type": "ApiError", "message": "Rate limit exceeded", "code": 429}}"#;
    let outcome = judge(GeminiOutput::default(), 0, doc, "");
    assert_eq!(outcome.failure, Some(FailureKind::Transient));
    assert_eq!(outcome.summary, "ApiError: Rate limit exceeded");

    let outcome = judge(GeminiOutput::default(), 1, SUCCESS, "");
    assert_eq!(outcome.failure, Some(FailureKind::Transient), "a non-zero exit fails even with a response");
    assert_eq!(outcome.summary, "agent exited with code 1");
}

#[test]
fn no_document_is_a_failure_quoting_stderr() {
    let outcome = judge(GeminiOutput::default(), 42, "", "Error: Unknown argument: approval-mod\n");
    assert_eq!(outcome.failure, Some(FailureKind::Permanent));
    assert!(
        outcome.summary.starts_with("gemini printed no JSON result; agent exited with code 42"),
        "{}",
        outcome.summary
    );
    assert!(outcome.summary.contains("Unknown argument: approval-mod"), "{}", outcome.summary);
}

#[test]
fn garbage_and_odd_shapes_never_panic() {
    for stdout in [
        "{\n  \"response\": \"cut off",
        "[\"a list\"]",
        "{\"unrelated\": true}",
        "\u{0}\u{7f}{{{{",
        "{\"response\": 5, \"stats\": {\"models\": {\"m\": {\"tokens\": \"many\", \"api\": []}}}}",
        "{\"error\": \"a string\"}",
    ] {
        let outcome = judge(GeminiOutput::default(), 0, stdout, "");
        assert_ne!(outcome.summary, "", "{stdout:?}");
    }
    let odd = judge(
        GeminiOutput::default(),
        0,
        "{\"response\": 5, \"stats\": {\"models\": {\"m\": {\"tokens\": \"many\"}}}}",
        "",
    );
    assert_eq!(odd.failure, None);
    assert_eq!(odd.summary, "gemini finished without a response");
    assert_eq!(odd.usage.tokens, Some(Tokens::default()));
    let string_error = judge(GeminiOutput::default(), 0, "{\"error\": \"a string\"}", "");
    assert_eq!(string_error.failure, Some(FailureKind::Transient));
    assert_eq!(string_error.summary, "\"a string\"");
    let unrelated = judge(GeminiOutput::default(), 0, "{\"unrelated\": true}", "");
    assert_eq!(unrelated.failure, Some(FailureKind::Transient));
}

fn argv(options: PresetOptions, resume: Option<&str>) -> Vec<String> {
    GeminiDispatcher::new(options).unwrap().argv("-p is not a flag here", resume)
}

#[test]
fn arguments_pin_the_approval_mode_and_keep_the_prompt_one_value() {
    assert_eq!(
        argv(PresetOptions::default(), None),
        ["--output-format", "json", "--approval-mode", "default", "--prompt=-p is not a flag here"]
    );
    let options = PresetOptions {
        model: Some("gemini-2.5-flash".into()),
        approval_mode: Some("auto_edit".into()),
        extra_args: vec!["--sandbox".into()],
        ..Default::default()
    };
    assert_eq!(
        argv(options, Some("b2b9")),
        [
            "--output-format",
            "json",
            "--approval-mode",
            "auto_edit",
            "-m",
            "gemini-2.5-flash",
            "--resume",
            "b2b9",
            "--sandbox",
            "--prompt=-p is not a flag here",
        ]
    );
}

#[test]
fn yolo_only_when_asked() {
    for options in [
        PresetOptions { approval_mode: Some("yolo".into()), ..Default::default() },
        PresetOptions { extra_args: vec!["-y".into()], ..Default::default() },
        PresetOptions { extra_args: vec!["--approval-mode=yolo".into()], ..Default::default() },
    ] {
        let err = GeminiDispatcher::new(options.clone()).unwrap_err().to_string();
        assert!(err.contains("bypass_permissions = true"), "{options:?}: {err}");
    }
    let bypass = argv(PresetOptions { bypass_permissions: true, ..Default::default() }, None);
    assert_eq!(bypass[2..4], ["--approval-mode", "yolo"]);
    let err = GeminiDispatcher::new(PresetOptions { system_prompt: Some("x".into()), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not take `system_prompt`"), "{err}");
}
