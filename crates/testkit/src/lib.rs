//! bg-run-testkit
