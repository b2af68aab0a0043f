//! What the fake model answers: a queue of scripted turns, shared by both wire protocols.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

/// Token counts the fake reports for one turn. The CLIs turn these into their own usage and cost
/// figures, so a test can check that bg-run relays exactly what the CLI printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Reported as `cache_read_input_tokens` (Anthropic) and
    /// `input_tokens_details.cached_tokens` (OpenAI).
    pub cached_input_tokens: u64,
}

impl Default for Usage {
    fn default() -> Self {
        Usage { input_tokens: 10, output_tokens: 5, cached_input_tokens: 0 }
    }
}

/// One piece of an assistant reply, in the order the model "said" it.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    Text(String),
    /// A tool call: `tool_use` for Anthropic, a `function_call` item for OpenAI (`input` becomes
    /// its JSON-encoded `arguments`). `name` must be a tool the CLI advertised in its request.
    ToolCall {
        name: String,
        input: Value,
    },
}

/// How a turn ends when it is not a normal reply.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    Reply(Vec<Block>),
    /// An HTTP error with the provider's error body.
    HttpError {
        status: u16,
        error_type: String,
        message: String,
    },
    /// HTTP 200 and a stream that starts, then fails: Anthropic's `error` event, OpenAI's
    /// `response.failed`.
    StreamError {
        error_type: String,
        message: String,
    },
    /// Never answers; the request stays open until the server is dropped.
    Hang,
}

/// One scripted model response. Build with [`Turn::text`], [`Turn::tool_call`],
/// [`Turn::error`], [`Turn::stream_error`] or [`Turn::hang`].
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    pub(crate) outcome: Outcome,
    pub(crate) usage: Usage,
    pub(crate) delay: Duration,
    pub(crate) times: usize,
}

impl Turn {
    fn new(outcome: Outcome) -> Self {
        Turn { outcome, usage: Usage::default(), delay: Duration::ZERO, times: 1 }
    }

    /// A plain assistant message; `end_turn` / a completed response.
    pub fn text(text: impl Into<String>) -> Self {
        Turn::new(Outcome::Reply(vec![Block::Text(text.into())]))
    }

    /// A single tool call; `stop_reason: tool_use` for Anthropic.
    pub fn tool_call(name: impl Into<String>, input: Value) -> Self {
        Turn::new(Outcome::Reply(vec![Block::ToolCall { name: name.into(), input }]))
    }

    /// An arbitrary sequence of text and tool calls in one reply.
    pub fn blocks(blocks: Vec<Block>) -> Self {
        Turn::new(Outcome::Reply(blocks))
    }

    /// An HTTP error response. `error_type` is the provider's error type, e.g.
    /// `invalid_request_error` (400), `authentication_error` (401), `rate_limit_error` (429),
    /// `api_error` (500), `overloaded_error` (529).
    pub fn error(status: u16, error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Turn::new(Outcome::HttpError { status, error_type: error_type.into(), message: message.into() })
    }

    /// A stream that opens with HTTP 200 and then reports an error event.
    pub fn stream_error(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Turn::new(Outcome::StreamError { error_type: error_type.into(), message: message.into() })
    }

    /// A request that is never answered, for timeout and cancellation tests.
    pub fn hang() -> Self {
        Turn::new(Outcome::Hang)
    }

    /// Token counts to report for this turn.
    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        self.usage.input_tokens = input_tokens;
        self.usage.output_tokens = output_tokens;
        self
    }

    /// Cached input tokens to report for this turn.
    pub fn cached(mut self, cached_input_tokens: u64) -> Self {
        self.usage.cached_input_tokens = cached_input_tokens;
        self
    }

    /// Wait this long before answering, so a test can watch a CLI that is busy.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Serve this turn for the next `n` requests: the CLIs retry 429/5xx on their own, so one
    /// scripted error would otherwise be hidden by the retry.
    pub fn times(mut self, n: usize) -> Self {
        assert!(n > 0, "a turn must be served at least once");
        self.times = n;
        self
    }

    pub(crate) fn default_reply() -> Self {
        Turn::text(DEFAULT_REPLY)
    }
}

/// What the fake says once the script has run out.
pub const DEFAULT_REPLY: &str = "done";

/// The queue of turns. Every model request (a `POST /v1/messages` or `POST /v1/responses`) takes
/// the next one.
#[derive(Debug, Default)]
pub(crate) struct Script {
    turns: Mutex<VecDeque<Turn>>,
}

impl Script {
    pub(crate) fn push(&self, turn: Turn) {
        self.turns.lock().expect("script lock").push_back(turn);
    }

    pub(crate) fn next(&self) -> Turn {
        let mut turns = self.turns.lock().expect("script lock");
        match turns.front_mut() {
            None => Turn::default_reply(),
            Some(front) if front.times > 1 => {
                front.times -= 1;
                front.clone()
            }
            Some(_) => turns.pop_front().expect("front exists"),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.turns.lock().expect("script lock").iter().fold(0usize, |sum, t| sum.saturating_add(t.times))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_turn_is_served_n_times_then_the_next_one_then_the_default() {
        let script = Script::default();
        script.push(Turn::error(529, "overloaded_error", "Overloaded").times(2));
        script.push(Turn::text("after"));
        assert_eq!(script.remaining(), 3);
        assert!(matches!(script.next().outcome, Outcome::HttpError { status: 529, .. }));
        assert!(matches!(script.next().outcome, Outcome::HttpError { status: 529, .. }));
        assert_eq!(script.next().outcome, Outcome::Reply(vec![Block::Text("after".into())]));
        assert_eq!(script.next().outcome, Outcome::Reply(vec![Block::Text(DEFAULT_REPLY.into())]));
        assert_eq!(script.remaining(), 0);
    }
}
