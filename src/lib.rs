//! dg: a fast, single-binary asset orchestrator with Dagster's model.
//!
//! The pipeline, one module per stage:
//! 1. [`load`]: read TOML definitions into raw, spanned values;
//! 2. [`validate`]: turn them into a [`model::Defs`] that cannot be invalid;
//! 3. [`partitions`]: partition keys, windows and mappings;
//! 4. [`select`] and [`plan`]: what a command targets, as steps, and
//!    [`run`]: a target to a resolved plan, then a recorded run, without
//!    printing;
//! 5. [`exec`]: the scheduler and one step ([`sql`] for `sql` assets);
//! 6. [`io`]: the I/O manager registry and the built-in managers;
//! 7. [`state`]: run history;
//! 8. [`cli`]: the command line.
//!
//! The modules form layers, each using only those below it (the order is
//! in `src/layers.rs` and CONTRIBUTING.md, and a test holds the code to it).
//! Every stage's errors are an [`error::Error`], which knows its exit code.
//!
//! Embedding programs register their own resource types in an
//! [`io::Registry`] and call [`cli::run_with`] to keep the whole CLI.

pub mod cli;
pub mod diag;
pub mod error;
pub mod exec;
pub(crate) mod formats;
pub(crate) mod interp;
pub mod io;
pub mod load;
pub(crate) mod model;
pub(crate) mod names;
pub(crate) mod partitions;
pub(crate) mod pg;
pub(crate) mod plan;
pub(crate) mod project;
pub mod run;
pub(crate) mod secrets;
pub(crate) mod select;
pub(crate) mod sql;
pub mod state;
pub(crate) mod validate;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod layers;
