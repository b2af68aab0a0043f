//! The one error type every queue and dispatcher speaks at the crate boundary.
//!
//! Adapters keep their own private error types and convert into this one, tagging their name, so
//! the worker can decide what to do (retry, back off, give up) without knowing any backend.

use std::time::Duration;

/// A boxed error from a backend library, kept as the `source` of [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used throughout bg-run.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a queue or running an agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task (or other object) does not exist.
    #[error("{what} not found")]
    NotFound { what: String },

    /// The operation lost a race: the task is claimed by someone else, the lease expired, or the
    /// task changed state underneath us.
    #[error("conflict: {message}")]
    Conflict { message: String },

    /// The backend asked us to slow down.
    #[error("{adapter}: rate limited{}", retry_after.map(|d| format!(", retry after {}s", d.as_secs_f64().ceil())).unwrap_or_default())]
    RateLimited { adapter: String, retry_after: Option<Duration> },

    /// Credentials are missing or rejected. The message never contains the secret itself.
    #[error("{adapter}: unauthorized: {message}")]
    Unauthorized { adapter: String, message: String },

    /// The adapter does not support this operation (for example `enqueue` on a tracker).
    #[error("{adapter} does not support {operation}")]
    Unsupported { operation: String, adapter: String },

    /// Any other failure inside a backend. `retryable` says whether trying again may help.
    #[error("{adapter}: {source}")]
    Backend { adapter: String, source: BoxError, retryable: bool },

    /// Bad configuration or bad input, with a message that says how to fix it.
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// A backend error from anything that converts into a boxed error.
    pub fn backend(adapter: impl Into<String>, source: impl Into<BoxError>, retryable: bool) -> Self {
        Error::Backend { adapter: adapter.into(), source: source.into(), retryable }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict { message: message.into() }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    pub fn unsupported(operation: impl Into<String>, adapter: impl Into<String>) -> Self {
        Error::Unsupported { operation: operation.into(), adapter: adapter.into() }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }

    /// Whether the same call may succeed if it is simply tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::RateLimited { .. } => true,
            Error::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// How long the backend asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
