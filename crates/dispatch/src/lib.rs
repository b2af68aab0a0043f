//! bg-run-dispatch
