//! The OpenAI Responses API (`POST /v1/responses`), as Codex calls it with
//! `wire_api = "responses"`.
//!
//! Streaming follows the documented semantic events, each with a `sequence_number`:
//! `response.created`, `response.in_progress`, per output item `response.output_item.added`,
//! its deltas (`response.content_part.added`, `response.output_text.delta`/`.done`,
//! `response.content_part.done` for a message; `response.function_call_arguments.delta`/`.done`
//! for a function call), `response.output_item.done`, and finally `response.completed` with
//! usage, or `response.failed` with an error. HTTP errors are
//! `{"error":{"message":..,"type":..,"param":null,"code":..}}`.

use axum::response::Response;
use serde_json::{json, Value};

use super::script::{Block, Outcome, Turn, Usage};
use super::server::{json_response, split_in_two, sse, unix_now, State};

pub(crate) const RESPONSES: &str = "/v1/responses";

pub(crate) fn responses(state: &State, request: &Value, turn: &Turn) -> Response {
    let model = request.get("model").and_then(Value::as_str).unwrap_or("gpt-fake");
    let streaming = request.get("stream").and_then(Value::as_bool) == Some(true);
    let response = ResponseObject { id: state.id("resp_"), model: model.to_owned(), created_at: unix_now() };
    match &turn.outcome {
        Outcome::Reply(blocks) => {
            let items: Vec<Value> = blocks.iter().map(|b| output_item(state, b)).collect();
            if streaming {
                sse(Events::reply(&response, &items, &turn.usage))
            } else {
                json_response(200, &[], &response.with("completed", &items, Some(&turn.usage), None))
            }
        }
        Outcome::HttpError { status, error_type, message } => error_response(*status, error_type, message),
        Outcome::StreamError { error_type, message } => {
            let mut events = Events::default();
            events.push("response.created", json!({"response": response.with("in_progress", &[], None, None)}));
            let error = json!({"code": error_type, "message": message});
            events.push("response.failed", json!({"response": response.with("failed", &[], None, Some(error))}));
            sse(events.0)
        }
        Outcome::Hang => unreachable!("the server never renders a hanging turn"),
    }
}

struct ResponseObject {
    id: String,
    model: String,
    created_at: u64,
}

impl ResponseObject {
    fn with(&self, status: &str, output: &[Value], usage: Option<&Usage>, error: Option<Value>) -> Value {
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": output,
            "error": error,
            "incomplete_details": null,
            "usage": usage.map(usage_json),
        })
    }
}

/// A completed output item: an assistant `message` or a `function_call`.
fn output_item(state: &State, block: &Block) -> Value {
    match block {
        Block::Text(text) => json!({
            "type": "message",
            "id": state.id("msg_"),
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }),
        Block::ToolCall { name, input } => json!({
            "type": "function_call",
            "id": state.id("fc_"),
            "call_id": state.id("call_"),
            "name": name,
            "arguments": input.to_string(),
            "status": "completed",
        }),
    }
}

#[derive(Default)]
struct Events(Vec<(String, Value)>);

impl Events {
    fn push(&mut self, name: &str, mut data: Value) {
        data["type"] = json!(name);
        data["sequence_number"] = json!(self.0.len());
        self.0.push((name.to_owned(), data));
    }

    fn reply(response: &ResponseObject, items: &[Value], usage: &Usage) -> Vec<(String, Value)> {
        let mut ev = Events::default();
        let in_progress = response.with("in_progress", &[], None, None);
        ev.push("response.created", json!({"response": in_progress}));
        ev.push("response.in_progress", json!({"response": in_progress}));
        for (output_index, item) in items.iter().enumerate() {
            let item_id = item["id"].clone();
            let mut added = item.clone();
            added["status"] = json!("in_progress");
            if item["type"] == "message" {
                added["content"] = json!([]);
                ev.push("response.output_item.added", json!({"output_index": output_index, "item": added}));
                let text = item["content"][0]["text"].as_str().unwrap_or_default();
                let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
                let at = json!({"item_id": item_id, "output_index": output_index, "content_index": 0});
                ev.push("response.content_part.added", merge(&at, json!({"part": part("")})));
                for delta in split_in_two(text) {
                    ev.push("response.output_text.delta", merge(&at, json!({"delta": delta, "logprobs": []})));
                }
                ev.push("response.output_text.done", merge(&at, json!({"text": text, "logprobs": []})));
                ev.push("response.content_part.done", merge(&at, json!({"part": part(text)})));
            } else {
                added["arguments"] = json!("");
                ev.push("response.output_item.added", json!({"output_index": output_index, "item": added}));
                let arguments = item["arguments"].as_str().unwrap_or_default();
                let at = json!({"item_id": item_id, "output_index": output_index});
                for delta in split_in_two(arguments) {
                    ev.push("response.function_call_arguments.delta", merge(&at, json!({"delta": delta})));
                }
                ev.push("response.function_call_arguments.done", merge(&at, json!({"arguments": arguments})));
            }
            ev.push("response.output_item.done", json!({"output_index": output_index, "item": item}));
        }
        ev.push("response.completed", json!({"response": response.with("completed", items, Some(usage), None)}));
        ev.0
    }
}

fn merge(base: &Value, extra: Value) -> Value {
    let mut out = base.clone();
    if let (Some(out), Value::Object(extra)) = (out.as_object_mut(), extra) {
        out.extend(extra);
    }
    out
}

fn usage_json(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    })
}

pub(crate) fn error_response(status: u16, error_type: &str, message: &str) -> Response {
    let body = json!({
        "error": {"message": message, "type": error_type, "param": null, "code": error_type},
    });
    let headers = if status == 429 { vec![("retry-after", "1".to_owned())] } else { Vec::new() };
    json_response(status, &headers, &body)
}

/// `GET /v1/models` for an OpenAI client.
pub(crate) fn models() -> Response {
    json_response(
        200,
        &[],
        &json!({
            "object": "list",
            "data": [{"id": "gpt-fake", "object": "model", "created": 0, "owned_by": "bg-run-testkit"}],
        }),
    )
}
