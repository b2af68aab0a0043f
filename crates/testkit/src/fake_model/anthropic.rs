//! The Anthropic Messages API (`POST /v1/messages`), as Claude Code calls it.
//!
//! Streaming follows the documented event order: `message_start`, `ping`, then per content
//! block `content_block_start` / `content_block_delta`* / `content_block_stop`, then
//! `message_delta` (stop reason, cumulative usage) and `message_stop`. Errors are
//! `{"type":"error","error":{"type":..,"message":..},"request_id":..}` with a `request-id`
//! header, mid-stream as an `error` event.

use axum::response::Response;
use serde_json::{json, Value};

use super::script::{Block, Outcome, Turn, Usage};
use super::server::{json_response, split_in_two, sse, State};

pub(crate) const MESSAGES: &str = "/v1/messages";
pub(crate) const COUNT_TOKENS: &str = "/v1/messages/count_tokens";

pub(crate) fn messages(state: &State, request: &Value, turn: &Turn) -> Response {
    let model = request.get("model").and_then(Value::as_str).unwrap_or("claude-fake");
    let streaming = request.get("stream").and_then(Value::as_bool) == Some(true);
    match &turn.outcome {
        Outcome::Reply(blocks) => {
            let id = state.id("msg_");
            let content: Vec<Value> = blocks.iter().map(|b| content_block(state, b)).collect();
            let stop_reason =
                if blocks.iter().any(|b| matches!(b, Block::ToolCall { .. })) { "tool_use" } else { "end_turn" };
            if streaming {
                sse(stream_events(&id, model, &content, stop_reason, &turn.usage))
            } else {
                let message = json!({
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop_reason,
                    "stop_sequence": null,
                    "usage": usage_json(&turn.usage, turn.usage.output_tokens),
                });
                json_response(200, &[], &message)
            }
        }
        Outcome::HttpError { status, error_type, message } => error_response(state, *status, error_type, message),
        // A request that did not ask for a stream cannot fail mid-stream; it gets the error as
        // the API would send it up front.
        Outcome::StreamError { error_type, message } if !streaming => {
            error_response(state, status_for(error_type), error_type, message)
        }
        Outcome::StreamError { error_type, message } => {
            let id = state.id("msg_");
            sse(vec![
                message_start(&id, model, &turn.usage),
                event("ping", json!({"type": "ping"})),
                event("error", error_body(error_type, message, None)),
            ])
        }
        Outcome::Hang => unreachable!("the server never renders a hanging turn"),
    }
}

fn content_block(state: &State, block: &Block) -> Value {
    match block {
        Block::Text(text) => json!({"type": "text", "text": text}),
        Block::ToolCall { name, input } => json!({
            "type": "tool_use",
            "id": state.id("toolu_"),
            "name": name,
            "input": input,
        }),
    }
}

fn stream_events(id: &str, model: &str, content: &[Value], stop_reason: &str, usage: &Usage) -> Vec<(String, Value)> {
    let mut events = vec![message_start(id, model, usage), event("ping", json!({"type": "ping"}))];
    for (index, block) in content.iter().enumerate() {
        let (start, deltas) = if block["type"] == "text" {
            let text = block["text"].as_str().unwrap_or_default();
            let deltas: Vec<Value> =
                split_in_two(text).into_iter().map(|part| json!({"type": "text_delta", "text": part})).collect();
            (json!({"type": "text", "text": ""}), deltas)
        } else {
            let input = block["input"].to_string();
            let deltas: Vec<Value> = split_in_two(&input)
                .into_iter()
                .map(|part| json!({"type": "input_json_delta", "partial_json": part}))
                .collect();
            let mut start = block.clone();
            start["input"] = json!({});
            (start, deltas)
        };
        events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for delta in deltas {
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": index})));
    }
    events.push(event(
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": usage_json(usage, usage.output_tokens),
        }),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    events
}

fn message_start(id: &str, model: &str, usage: &Usage) -> (String, Value) {
    event(
        "message_start",
        json!({
            "type": "message_start",
            "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                // The API reports a token of output at the start; the final count comes with
                // message_delta.
                "usage": usage_json(usage, 1),
            },
        }),
    )
}

fn usage_json(usage: &Usage, output_tokens: u64) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": output_tokens,
    })
}

fn event(name: &str, data: Value) -> (String, Value) {
    (name.to_owned(), data)
}

/// The HTTP status the API documents for an error type.
fn status_for(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

fn error_body(error_type: &str, message: &str, request_id: Option<&str>) -> Value {
    let mut body = json!({"type": "error", "error": {"type": error_type, "message": message}});
    if let Some(request_id) = request_id {
        body["request_id"] = json!(request_id);
    }
    body
}

pub(crate) fn error_response(state: &State, status: u16, error_type: &str, message: &str) -> Response {
    let request_id = state.id("req_");
    let mut headers = vec![("request-id", request_id.clone())];
    if status == 429 {
        headers.push(("retry-after", "1".to_owned()));
    }
    json_response(status, &headers, &error_body(error_type, message, Some(&request_id)))
}

/// `POST /v1/messages/count_tokens`: a rough count (four bytes a token) of what was sent.
pub(crate) fn count_tokens(request: &Value) -> Response {
    let sent = ["system", "messages", "tools"]
        .iter()
        .filter_map(|k| request.get(*k))
        .map(|v| v.to_string().len())
        .sum::<usize>();
    json_response(200, &[], &json!({"input_tokens": sent.div_ceil(4).max(1)}))
}

/// `GET /v1/models` for an Anthropic client: one model, in the documented list shape.
pub(crate) fn models() -> Response {
    let id = "claude-fake";
    json_response(
        200,
        &[],
        &json!({
            "data": [{
                "type": "model",
                "id": id,
                "display_name": "Claude (fake)",
                "created_at": "2025-01-01T00:00:00Z",
            }],
            "has_more": false,
            "first_id": id,
            "last_id": id,
        }),
    )
}
