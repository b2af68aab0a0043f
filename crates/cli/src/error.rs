//! Every failure the CLI reports: one line, naming what is wrong, and an exit code.

use bg_run_core::redact::redact;

/// Exit code for bad input (config, arguments): nothing was done.
pub const EXIT_USAGE: i32 = 2;
/// Exit code for a run in which some task failed.
pub const EXIT_TASK_FAILED: i32 = 1;

#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl CliError {
    pub fn config(message: impl Into<String>) -> Self {
        CliError { message: message.into(), code: EXIT_USAGE }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        CliError { message: message.into(), code: EXIT_TASK_FAILED }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets can reach error text through URLs and backend messages: mask them at the edge.
        f.write_str(&redact(&self.message))
    }
}

impl From<bg_run_core::Error> for CliError {
    fn from(error: bg_run_core::Error) -> Self {
        let code = match error {
            bg_run_core::Error::Config(_) | bg_run_core::Error::Unsupported { .. } => EXIT_USAGE,
            _ => EXIT_TASK_FAILED,
        };
        CliError { message: error.to_string(), code }
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        CliError::failed(error.to_string())
    }
}
