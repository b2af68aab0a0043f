//! The HTTP server: routing, request recording, and the lifetime of a [`FakeModel`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use tokio::sync::{watch, Notify};

use super::script::{Outcome, Script, Turn};
use super::{anthropic, openai};

/// One request the fake received, as the CLI sent it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The path without the query string, e.g. `/v1/messages` (Claude Code adds `?beta=true`).
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; a body that is not JSON is kept as a string, an empty one is null.
    pub body: Value,
}

impl RecordedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Whether this request asked the model for a turn (and so took one from the script).
    pub fn is_model_turn(&self) -> bool {
        self.method == "POST" && (self.path == anthropic::MESSAGES || self.path == openai::RESPONSES)
    }

    /// The `model` the request named.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Names of the tools the request offered the model (both wire formats; Codex namespaces
    /// and built-in tools without a name are skipped).
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools.iter().filter_map(|t| t.get("name").and_then(Value::as_str)).map(str::to_owned).collect()
            })
            .unwrap_or_default()
    }

    /// All text of the system prompt (Anthropic `system`, OpenAI `instructions` plus developer
    /// and system messages), joined with newlines, for "was my prompt appended" assertions.
    pub fn system_text(&self) -> String {
        let mut out = Vec::new();
        collect_text(self.body.get("system"), &mut out);
        collect_text(self.body.get("instructions"), &mut out);
        for key in ["messages", "input"] {
            for msg in self.body.get(key).and_then(Value::as_array).into_iter().flatten() {
                let role = msg.get("role").and_then(Value::as_str);
                if matches!(role, Some("system" | "developer")) {
                    collect_text(msg.get("content"), &mut out);
                }
            }
        }
        out.join("\n")
    }

    /// All text the user role sent, joined with newlines (the prompt, plus tool results for
    /// Anthropic, whose tool results travel in user messages).
    pub fn user_text(&self) -> String {
        let mut out = Vec::new();
        for key in ["messages", "input"] {
            for msg in self.body.get(key).and_then(Value::as_array).into_iter().flatten() {
                if msg.get("role").and_then(Value::as_str) == Some("user") {
                    collect_text(msg.get("content"), &mut out);
                }
            }
        }
        out.join("\n")
    }
}

fn collect_text(value: Option<&Value>, out: &mut Vec<String>) {
    match value {
        Some(Value::String(s)) => out.push(s.clone()),
        Some(Value::Array(parts)) => {
            for part in parts {
                match part {
                    Value::String(s) => out.push(s.clone()),
                    Value::Object(_) => {
                        if let Some(text) = part.get("text").and_then(Value::as_str) {
                            out.push(text.to_owned());
                        }
                        collect_text(part.get("content"), out);
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

#[derive(Debug)]
pub(crate) struct State {
    script: Script,
    requests: Mutex<Vec<RecordedRequest>>,
    arrived: Notify,
    ids: AtomicU64,
    closed: watch::Receiver<bool>,
}

impl State {
    /// A unique id with the provider's prefix (`msg_`, `toolu_`, `resp_`, `call_`, ...).
    pub(crate) fn id(&self, prefix: &str) -> String {
        format!("{prefix}{:024x}", self.ids.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// A local model endpoint speaking the Anthropic Messages API and the OpenAI Responses API.
///
/// Every model request takes the next scripted [`Turn`]; once the script is empty the model
/// answers [`DEFAULT_REPLY`](super::DEFAULT_REPLY). Dropping it stops the server and ends any
/// request left hanging.
#[derive(Debug)]
pub struct FakeModel {
    addr: SocketAddr,
    state: Arc<State>,
    close: watch::Sender<bool>,
}

impl FakeModel {
    /// Binds 127.0.0.1 on a free port and serves in the background on the current runtime.
    pub async fn start() -> FakeModel {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("fake model: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake model: local address");
        let (close, closed) = watch::channel(false);
        let state = Arc::new(State {
            script: Script::default(),
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            ids: AtomicU64::new(0),
            closed: closed.clone(),
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let mut stop = closed;
        tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|closed| *closed).await;
            });
            if let Err(e) = served.await {
                tracing::warn!(error = %e, "fake model server stopped with an error");
            }
        });
        FakeModel { addr, state, close }
    }

    /// `http://127.0.0.1:PORT`: the value for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`: the `base_url` of a Codex model provider.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bound address (127.0.0.1 and the port the OS chose).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends a turn to the script.
    pub fn push(&self, turn: Turn) -> &Self {
        self.state.script.push(turn);
        self
    }

    /// Scripted turns not yet served (a turn with `times(n)` counts n times).
    pub fn remaining_turns(&self) -> usize {
        self.state.script.remaining()
    }

    /// Every request received so far, side requests included.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().expect("requests lock").clone()
    }

    /// The requests that asked the model for a turn, in order.
    pub fn model_requests(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(RecordedRequest::is_model_turn).collect()
    }

    /// Waits until at least `n` model requests have arrived; false if `timeout` passed first.
    pub async fn wait_for_model_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so an arrival between check and wait is not missed.
            let arrived = self.state.arrived.notified();
            if self.model_requests().len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.model_requests().len() >= n;
            }
        }
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        let _ = self.close.send(true);
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = record(&method, &uri, &headers, &body);
    let path = recorded.path.clone();
    let anthropic_client = headers.contains_key("anthropic-version") || headers.contains_key("x-api-key");
    let request_body = recorded.body.clone();
    let is_turn = recorded.is_model_turn();
    // Taken under the same lock as the recording, so turn order always matches request order.
    let turn = {
        let mut requests = state.requests.lock().expect("requests lock");
        requests.push(recorded);
        is_turn.then(|| state.script.next())
    };
    state.arrived.notify_waiters();

    if let Some(turn) = turn {
        return serve_turn(&state, &path, &request_body, turn).await;
    }
    match (method, path.as_str()) {
        (Method::POST, anthropic::COUNT_TOKENS) => anthropic::count_tokens(&request_body),
        (Method::GET, "/v1/models") if anthropic_client => anthropic::models(),
        (Method::GET, "/v1/models") => openai::models(),
        // Claude Code's connectivity check before the first turn.
        (Method::GET | Method::HEAD, "/api/hello") => StatusCode::OK.into_response(),
        (_, path) if path.starts_with(openai::RESPONSES) => {
            openai::error_response(404, "not_found_error", &format!("no route for {path}"))
        }
        (_, path) => anthropic::error_response(&state, 404, "not_found_error", &format!("no route for {path}")),
    }
}

async fn serve_turn(state: &State, path: &str, body: &Value, turn: Turn) -> Response {
    if !turn.delay.is_zero() {
        tokio::time::sleep(turn.delay).await;
    }
    if turn.outcome == Outcome::Hang {
        let mut closed = state.closed.clone();
        let _ = closed.wait_for(|closed| *closed).await;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if path == anthropic::MESSAGES {
        anthropic::messages(state, body, &turn)
    } else {
        openai::responses(state, body, &turn)
    }
}

fn record(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> RecordedRequest {
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
    };
    RecordedRequest {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body,
    }
}

/// A `text/event-stream` response sent as one chunk per event, like the real APIs (chunked, no
/// content length). Each item is `(event name, data)`.
pub(crate) fn sse(events: Vec<(String, Value)>) -> Response {
    let chunks = events
        .into_iter()
        .map(|(name, data)| Ok::<_, std::convert::Infallible>(Bytes::from(format!("event: {name}\ndata: {data}\n\n"))));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .expect("static SSE response parts are valid")
}

/// A JSON response with the given status and extra headers.
pub(crate) fn json_response(status: u16, headers: &[(&str, String)], body: &Value) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(Body::from(body.to_string())).expect("JSON response parts are valid")
}

/// `text` cut in two at a char boundary, sent as two deltas so that clients must join them.
pub(crate) fn split_in_two(text: &str) -> Vec<&str> {
    if text.chars().count() < 2 {
        return vec![text];
    }
    let mid = text.char_indices().map(|(i, _)| i).nth(text.chars().count() / 2).unwrap_or(text.len());
    vec![&text[..mid], &text[mid..]]
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
