//! Conversion of SQLite errors into the core error type, tagged with this adapter's name.

use std::path::Path;

use bg_run_core::Error;
use rusqlite::ErrorCode;

pub(crate) const ADAPTER: &str = "sqlite";

/// A SQLite error that occurred while doing `context`, e.g. "claiming tasks".
///
/// Busy and locked databases are retryable: another process holds the write lock longer than the
/// busy timeout, and the same call will normally succeed a moment later.
pub(crate) fn backend(context: &str, error: &rusqlite::Error) -> Error {
    let retryable = matches!(error.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked));
    Error::backend(ADAPTER, format!("{context}: {error}"), retryable)
}

/// Errors while opening the file are configuration problems the user has to fix (wrong path,
/// not a database, no permission), so they become one line naming the file.
pub(crate) fn open(path: &Path, error: rusqlite::Error) -> Error {
    let problem = match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => "the file is not a SQLite database".to_owned(),
        Some(ErrorCode::DatabaseCorrupt) => "the database file is corrupt".to_owned(),
        Some(ErrorCode::CannotOpen) => format!("cannot open it ({error})"),
        Some(ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            format!("no permission to read and write it ({error})")
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            return Error::backend(ADAPTER, format!("task database {}: {error}", path.display()), true)
        }
        _ => error.to_string(),
    };
    Error::config(format!("task database {}: {problem}", path.display()))
}

/// A value stored in the database that this build cannot make sense of.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::backend(ADAPTER, format!("unexpected data in the task database: {what}"), false)
}

/// Attaches what was being done to a SQLite error while converting it.
pub(crate) trait Context<T> {
    fn ctx(self, doing: &str) -> bg_run_core::Result<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, doing: &str) -> bg_run_core::Result<T> {
        self.map_err(|e| backend(doing, &e))
    }
}
