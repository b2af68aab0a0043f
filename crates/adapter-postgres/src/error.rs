//! Conversion of sqlx errors into the core error type, tagged with this adapter's name.
//!
//! The message is redacted and kept as text rather than as the sqlx error itself, so no URL or
//! password can reach a log through an error's source chain.

use bg_run_core::{redact::redact, Error};

pub(crate) const ADAPTER: &str = "postgres";

/// SQLSTATEs after which the same call may succeed once the server or the network recovers.
fn retryable_sqlstate(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources, too many connections
        || matches!(
            code,
            "57P01" // admin_shutdown: the server is restarting
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now: still starting up
                | "40001" // serialization_failure
                | "40P01" // deadlock_detected
                | "55P03" // lock_not_available
        )
}

/// A sqlx error that happened while doing `context`, e.g. "claiming tasks".
pub(crate) fn backend(context: &str, error: sqlx::Error) -> Error {
    use sqlx::Error as E;
    let message = redact(&format!("{context}: {error}"));
    match &error {
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if code.starts_with("28") {
                return Error::Unauthorized { adapter: ADAPTER.to_owned(), message };
            }
            Error::backend(ADAPTER, message, retryable_sqlstate(&code))
        }
        E::Io(_) | E::Tls(_) | E::Protocol(_) | E::PoolTimedOut | E::WorkerCrashed => {
            Error::backend(ADAPTER, message, true)
        }
        E::Configuration(_) => Error::config(message),
        _ => Error::backend(ADAPTER, message, false),
    }
}

/// Data in the database that this build cannot make sense of.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::backend(ADAPTER, format!("unexpected data in the task table: {what}"), false)
}

/// A claim whose token no longer matches: the lease expired and another worker took the task, or
/// a human cancelled or closed it.
pub(crate) fn claim_lost(id: &str) -> Error {
    Error::conflict(format!(
        "task {id} is no longer claimed by this worker (its lease expired and it was taken over, or it was cancelled)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_retryable_and_redacted() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "postgres://u:pw123456789@h/db refused");
        let error = backend("claiming tasks", sqlx::Error::Io(io));
        assert!(error.is_retryable());
        let text = error.to_string();
        assert!(text.starts_with("postgres: claiming tasks"), "{text}");
        assert!(!text.contains("pw123456789"), "{text}");
        assert!(!backend("x", sqlx::Error::RowNotFound).is_retryable());
        assert!(retryable_sqlstate("57P01") && retryable_sqlstate("08006") && !retryable_sqlstate("23505"));
    }
}
