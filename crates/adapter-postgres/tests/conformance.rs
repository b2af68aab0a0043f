//! The shared conformance suites against the real PostgreSQL: the queue suite three ways (one
//! task per statement, batched claims with group commit, and a user's own table by column
//! mapping), and the store suite (the `TaskStore` contract) on bg-run's own table both ways.

mod common;

mod one_by_one {
    bg_run_testkit::conformance_tests!(crate::common::PgHarness::new(1));

    mod store {
        bg_run_testkit::store_conformance_tests!(crate::common::PgHarness::new(1));
    }
}

mod batched {
    bg_run_testkit::conformance_tests!(crate::common::PgHarness::new(16));

    mod store {
        bg_run_testkit::store_conformance_tests!(crate::common::PgHarness::new(16));
    }
}

mod mapped_table {
    bg_run_testkit::conformance_tests!(crate::common::MappedHarness::new());
}
