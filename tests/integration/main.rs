//! Integration tests: the real `dg` binary on fixture projects.
//!
//! Each test copies a fixture into its own temporary folder, runs `dg` there
//! with `--project` pointing at it and `NO_COLOR=1`, and looks at the exit
//! code, stdout and stderr. Rendered diagnostics are insta snapshots
//! (`tests/integration/snapshots/`); review changes with `cargo insta review`
//! or accept them with `INSTA_UPDATE=always cargo test` after reading them.
//!
//! All integration tests live in this one binary so the build stays fast.

mod adversarial;
pub mod backend;
mod check_defs;
mod checks;
mod ci;
mod concurrency;
mod dagster_repros;
mod docs;
mod docs_console;
#[cfg(feature = "duckdb")]
mod duckdb_manager;
mod example;
mod examples;
mod faults;
mod fixes;
mod hardening;
mod history;
mod history_postgres;
mod integrity;
mod jobs;
mod materialize;
pub mod object_store;
mod onboarding;
mod plan;
mod plugins;
mod pools;
pub mod postgres_manager;
mod range_steps;
mod report;
mod report_browser;
mod resources;
mod roundtrip;
mod schema;
mod slurm;
mod sql_compute;
mod sql_in_db;
mod sql_in_pg;
mod sqlite_manager;
mod storage;
pub mod support;
mod table_scenarios;

// The helpers under their old paths (`crate::dg`, …), for test files that
// predate `support`.
#[allow(unused_imports)]
pub use support::{
    Run, assert_no_panic, copy_dir, dg, dg_with_env, example_project, malformed, redact, repo,
};
