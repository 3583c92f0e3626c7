//! dg: a fast, single-binary asset orchestrator with Dagster's model.
//!
//! The pipeline, one module per stage:
//! 1. [`load`]: read TOML definitions into raw, spanned values;
//! 2. [`validate`]: turn them into a [`model::Defs`] that cannot be invalid;
//! 3. [`partitions`]: partition keys, windows and mappings;
//! 4. selection and plan ([`run`]: a target to a resolved plan, without printing);
//! 5. execution;
//! 6. [`io`]: the I/O manager registry;
//! 7. state (run history);
//! 8. [`cli`]: the command line.
//!
//! Every stage's errors are an [`error::Error`], which knows its exit code.
//!
//! Embedding programs register their own resource types in an
//! [`io::Registry`] and call [`cli::run_with`] to keep the whole CLI.

pub mod cli;
pub mod diag;
pub mod error;
pub mod exec;
pub mod formats;
pub mod interp;
pub mod io;
pub mod load;
pub mod model;
pub mod names;
pub mod partitions;
pub mod plan;
pub mod project;
pub mod run;
pub mod secrets;
pub mod select;
pub mod state;
pub mod validate;

#[cfg(test)]
mod fuzz;
