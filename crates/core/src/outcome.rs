//! What an agent run produced: success or a classified failure, plus usage numbers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why an attempt failed. The worker retries `Transient` and `Timeout` failures, gives up at once
/// on `Permanent` and `Budget`, and releases `Cancelled` ones without counting them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Worth another try (non-zero exit, model error, network).
    Transient,
    /// Will fail again the same way (bad command, untrusted task, invalid prompt).
    Permanent,
    /// The agent ran past its deadline and was killed.
    Timeout,
    /// Shutdown or a human cancelled the task.
    Cancelled,
    /// The agent's spending limit was reached.
    Budget,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
            FailureKind::Timeout => "timeout",
            FailureKind::Cancelled => "cancelled",
            FailureKind::Budget => "budget",
        }
    }

    /// Whether another attempt could help.
    pub fn is_retryable(self) -> bool {
        matches!(self, FailureKind::Transient | FailureKind::Timeout)
    }
}

/// Token counts as the agent reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// What an agent run cost, where the agent said.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub cost_usd: Option<f64>,
    pub tokens: Option<Tokens>,
    pub turns: Option<u32>,
    pub session_id: Option<String>,
    /// Tools the agent wanted but was not allowed to use.
    pub permission_denials: Vec<String>,
}

/// The result of one dispatch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// `None` on success.
    pub failure: Option<FailureKind>,
    /// The agent's final message on success; the error on failure.
    pub summary: String,
    pub usage: Usage,
    pub exit_code: Option<i32>,
    pub duration: Duration,
    pub stdout_tail: String,
    pub stderr_tail: String,
}

impl Outcome {
    pub fn success(summary: impl Into<String>) -> Self {
        Outcome {
            failure: None,
            summary: summary.into(),
            usage: Usage::default(),
            exit_code: Some(0),
            duration: Duration::ZERO,
            stdout_tail: String::new(),
            stderr_tail: String::new(),
        }
    }

    pub fn failure(kind: FailureKind, reason: impl Into<String>) -> Self {
        Outcome { failure: Some(kind), exit_code: None, ..Outcome::success(reason) }
    }

    pub fn is_success(&self) -> bool {
        self.failure.is_none()
    }
}
