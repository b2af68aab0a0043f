//! The fake model's wire format, checked without the CLIs (so it is covered on machines without
//! Node.js too): event order and shapes, errors, side endpoints, recording.

use std::time::Duration;

use bg_run_testkit::fake_model::{Block, FakeModel, Turn};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// `(event, data)` pairs of an SSE body; checks that each `event:` name matches the data's
    /// `type`, as both APIs promise.
    fn sse(&self) -> Vec<(String, Value)> {
        self.body
            .split("\n\n")
            .filter(|chunk| !chunk.trim().is_empty())
            .map(|chunk| {
                let mut name = None;
                let mut data = None;
                for line in chunk.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str::<Value>(d).expect("data is JSON"));
                    }
                }
                let (name, data) = (name.expect("event line"), data.expect("data line"));
                assert_eq!(data["type"], name.as_str(), "event name and type agree");
                (name, data)
            })
            .collect()
    }
}

/// A minimal HTTP/1.1 client, so the test depends on nothing the crate does not already use.
async fn send(model: &FakeModel, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(model.addr()).await.expect("connect");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: fake\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8(raw).expect("utf-8");
    let (head, rest) = raw.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Reply { status, headers, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

fn anthropic_request(stream: bool) -> Value {
    json!({
        "model": "claude-test",
        "max_tokens": 100,
        "stream": stream,
        "system": [{"type": "text", "text": "SYSTEM-MARK"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "USER-MARK"}]}],
        "tools": [{"name": "Write", "input_schema": {"type": "object"}}],
    })
}

const ANTHROPIC_HEADERS: &[(&str, &str)] = &[("anthropic-version", "2023-06-01"), ("x-api-key", "k")];

fn openai_request() -> Value {
    json!({
        "model": "gpt-test",
        "stream": true,
        "instructions": "SYSTEM-MARK",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "USER-MARK"}]}],
        "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}],
    })
}

#[tokio::test]
async fn anthropic_stream_has_the_documented_event_order_and_joins_to_the_script() {
    let model = FakeModel::start().await;
    model.push(
        Turn::blocks(vec![
            Block::Text("Writing the file now".into()),
            Block::ToolCall { name: "Write".into(), input: json!({"file_path": "/w/a.txt", "content": "héllo"}) },
        ])
        .usage(321, 45)
        .cached(7),
    );

    let reply = send(&model, "POST", "/v1/messages?beta=true", ANTHROPIC_HEADERS, Some(&anthropic_request(true))).await;

    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").unwrap_or_default().starts_with("text/event-stream"));
    let events = reply.sse();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let start = &events[0].1["message"];
    assert_eq!(start["model"], "claude-test");
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["usage"]["input_tokens"], 321);
    assert_eq!(start["usage"]["cache_read_input_tokens"], 7);
    assert!(start["id"].as_str().is_some_and(|id| id.starts_with("msg_")));

    let text: String = events
        .iter()
        .filter(|(_, d)| d["index"] == 0 && d["delta"]["type"] == "text_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(text, "Writing the file now");

    let tool_start = &events[6].1["content_block"];
    assert_eq!(tool_start["type"], "tool_use");
    assert_eq!(tool_start["name"], "Write");
    assert_eq!(tool_start["input"], json!({}));
    assert!(tool_start["id"].as_str().is_some_and(|id| id.starts_with("toolu_")));
    let partial: String = events
        .iter()
        .filter(|(_, d)| d["index"] == 1 && d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).expect("joined JSON"),
        json!({"file_path": "/w/a.txt", "content": "héllo"})
    );

    let delta = &events[10].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], 45);

    let recorded = model.model_requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].path, "/v1/messages");
    assert_eq!(recorded[0].query.as_deref(), Some("beta=true"));
    assert_eq!(recorded[0].header("X-Api-Key"), Some("k"));
    assert_eq!(recorded[0].system_text(), "SYSTEM-MARK");
    assert_eq!(recorded[0].user_text(), "USER-MARK");
    assert_eq!(recorded[0].tool_names(), ["Write"]);
}

#[tokio::test]
async fn anthropic_without_stream_gets_a_message_and_the_script_default_when_empty() {
    let model = FakeModel::start().await;
    model.push(Turn::text("first").usage(3, 2));

    let first = send(&model, "POST", "/v1/messages", ANTHROPIC_HEADERS, Some(&anthropic_request(false))).await.json();
    let second = send(&model, "POST", "/v1/messages", ANTHROPIC_HEADERS, Some(&anthropic_request(false))).await.json();

    assert_eq!(first["type"], "message");
    assert_eq!(first["content"], json!([{"type": "text", "text": "first"}]));
    assert_eq!(first["stop_reason"], "end_turn");
    assert_eq!(first["usage"]["output_tokens"], 2);
    assert_eq!(second["content"][0]["text"], bg_run_testkit::fake_model::DEFAULT_REPLY);
    assert_eq!(model.remaining_turns(), 0);
}

#[tokio::test]
async fn anthropic_errors_use_the_documented_body_status_and_stream_event() {
    let model = FakeModel::start().await;
    model.push(Turn::error(529, "overloaded_error", "busy"));
    model.push(Turn::error(429, "rate_limit_error", "slow down"));
    model.push(Turn::stream_error("overloaded_error", "busy mid-stream").times(2));

    let overloaded = send(&model, "POST", "/v1/messages", ANTHROPIC_HEADERS, Some(&anthropic_request(true))).await;
    let limited = send(&model, "POST", "/v1/messages", ANTHROPIC_HEADERS, Some(&anthropic_request(true))).await;
    let streamed = send(&model, "POST", "/v1/messages", ANTHROPIC_HEADERS, Some(&anthropic_request(true))).await;
    let unstreamed = send(&model, "POST", "/v1/messages", ANTHROPIC_HEADERS, Some(&anthropic_request(false))).await;

    assert_eq!(overloaded.status, 529);
    let body = overloaded.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"], json!({"type": "overloaded_error", "message": "busy"}));
    assert_eq!(body["request_id"].as_str(), overloaded.header("request-id"));
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("1"));

    assert_eq!(streamed.status, 200);
    let events = streamed.sse();
    let (name, data) = events.last().expect("events");
    assert_eq!(name, "error");
    assert_eq!(data["error"], json!({"type": "overloaded_error", "message": "busy mid-stream"}));
    assert_eq!(events[0].0, "message_start");

    assert_eq!(unstreamed.status, 529, "a non-streaming request gets the error's own status");
    assert_eq!(unstreamed.json()["error"]["message"], "busy mid-stream");
}

#[tokio::test]
async fn openai_stream_has_the_documented_events_and_sequence_numbers() {
    let model = FakeModel::start().await;
    model.push(
        Turn::blocks(vec![
            Block::Text("Running it".into()),
            Block::ToolCall { name: "exec_command".into(), input: json!({"cmd": "touch a"}) },
        ])
        .usage(500, 60)
        .cached(100),
    );

    let reply = send(&model, "POST", "/v1/responses", &[("authorization", "Bearer k")], Some(&openai_request())).await;

    assert_eq!(reply.status, 200);
    let events = reply.sse();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], i);
    }
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(text, "Running it");

    let call = &events[13].1["item"];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "exec_command");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap_or_default()).ok(),
        Some(json!({"cmd": "touch a"}))
    );
    assert!(call["call_id"].as_str().is_some_and(|id| id.starts_with("call_")));
    assert_eq!(events[10].1["item_id"], call["id"]);

    let done = &events[14].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["model"], "gpt-test");
    assert_eq!(done["output"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        done["usage"],
        json!({
            "input_tokens": 500,
            "input_tokens_details": {"cached_tokens": 100},
            "output_tokens": 60,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 560,
        })
    );
    assert_eq!(model.model_requests()[0].system_text(), "SYSTEM-MARK");
    assert_eq!(model.model_requests()[0].user_text(), "USER-MARK");
    assert_eq!(model.model_requests()[0].tool_names(), ["exec_command"]);
}

#[tokio::test]
async fn openai_errors_use_the_documented_body_and_response_failed() {
    let model = FakeModel::start().await;
    model.push(Turn::error(400, "invalid_request_error", "bad input"));
    model.push(Turn::stream_error("server_error", "broke"));

    let http = send(&model, "POST", "/v1/responses", &[], Some(&openai_request())).await;
    let stream = send(&model, "POST", "/v1/responses", &[], Some(&openai_request())).await;

    assert_eq!(http.status, 400);
    assert_eq!(
        http.json(),
        json!({"error": {"message": "bad input", "type": "invalid_request_error", "param": null, "code": "invalid_request_error"}})
    );
    let events = stream.sse();
    assert_eq!(events.len(), 2);
    let failed = &events[1].1;
    assert_eq!(events[1].0, "response.failed");
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(failed["response"]["error"], json!({"code": "server_error", "message": "broke"}));
}

#[tokio::test]
async fn side_requests_are_answered_and_recorded_without_taking_a_turn() {
    let model = FakeModel::start().await;
    model.push(Turn::text("kept for the model"));

    let count =
        send(&model, "POST", "/v1/messages/count_tokens", ANTHROPIC_HEADERS, Some(&anthropic_request(false))).await;
    let anthropic_models = send(&model, "GET", "/v1/models", ANTHROPIC_HEADERS, None).await;
    let openai_models = send(&model, "GET", "/v1/models", &[], None).await;
    let hello = send(&model, "GET", "/api/hello", &[], None).await;
    let unknown = send(&model, "POST", "/v1/complete", ANTHROPIC_HEADERS, Some(&json!({}))).await;

    assert_eq!(count.status, 200);
    assert!(count.json()["input_tokens"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(anthropic_models.json()["data"][0]["type"], "model");
    assert_eq!(openai_models.json()["object"], "list");
    assert_eq!(hello.status, 200);
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["type"], "not_found_error");

    assert_eq!(model.requests().len(), 5);
    assert!(model.model_requests().is_empty());
    assert_eq!(model.remaining_turns(), 1);
}

#[tokio::test]
async fn hang_holds_the_request_until_the_server_is_dropped() {
    let model = FakeModel::start().await;
    model.push(Turn::hang());
    let addr = model.addr();

    let pending = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let body = openai_request().to_string();
        let request = format!(
            "POST /v1/responses HTTP/1.1\r\nhost: fake\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        raw
    });

    assert!(model.wait_for_model_requests(1, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished(), "no answer while the model hangs");
    assert!(!model.wait_for_model_requests(2, Duration::from_millis(50)).await);

    drop(model);
    let raw = tokio::time::timeout(Duration::from_secs(10), pending).await.expect("released on drop").expect("join");
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 503"), "{}", String::from_utf8_lossy(&raw));
}

#[tokio::test]
async fn delay_postpones_the_answer() {
    let model = FakeModel::start().await;
    model.push(Turn::text("late").delay(Duration::from_millis(400)));

    let started = std::time::Instant::now();
    let reply = send(&model, "POST", "/v1/messages", ANTHROPIC_HEADERS, Some(&anthropic_request(false))).await;

    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(reply.json()["content"][0]["text"], "late");
}
