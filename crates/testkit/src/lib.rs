//! Test support for bg-run adapters: the conformance suite every [`TaskQueue`] must pass, the one
//! every [`TaskStore`] must pass, and fake servers that behave as the real trackers' and model
//! providers' documentation says.
//!
//! [`TaskQueue`]: bg_run_core::TaskQueue
//! [`TaskStore`]: bg_run_core::TaskStore

pub mod conformance;
pub mod fake_github;
pub mod fake_model;
pub mod store_conformance;
