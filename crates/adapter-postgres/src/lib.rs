//! bg-run-postgres
