//! bg-run-sqlite
