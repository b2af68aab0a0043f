//! The shared conformance suite, against the fake GitHub.

mod common;

bg_run_testkit::conformance_tests!(common::harness());
