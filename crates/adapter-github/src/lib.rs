//! bg-run-github
