//! The shared conformance suite against the real PostgreSQL, three ways: one task per statement,
//! batched claims with group commit, and a user's own table by column mapping.

mod common;

mod one_by_one {
    bg_run_testkit::conformance_tests!(crate::common::PgHarness::new(1));
}

mod batched {
    bg_run_testkit::conformance_tests!(crate::common::PgHarness::new(16));
}

mod mapped_table {
    bg_run_testkit::conformance_tests!(crate::common::MappedHarness::new());
}
