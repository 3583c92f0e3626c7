//! dg: a fast, single-binary asset orchestrator with Dagster's model.
//!
//! The library's API is what a program that embeds dg needs: the plug-in
//! API for I/O managers in [`io`] (an [`io::Registry`] of resource types,
//! the [`io::IoManager`] trait and the types dg hands it), and [`run_with`],
//! which runs the whole `dg` command line with such a registry ([`main`]
//! runs it with the built-in types). `docs/io-managers.md` and the
//! repository's `examples/` walk through it. Everything else is internal.
//!
//! Inside, one module per pipeline stage: `load` (TOML definitions into
//! raw, spanned values), `validate` (into a model that cannot be invalid),
//! `partitions`, `select` and `plan` (what a command targets, as steps),
//! `run` (a target to a plan, then a recorded run, without printing),
//! `exec` (the scheduler and one step; `sql` for `sql` assets), `io` (the
//! registry and the built-in managers), `state` (run history) and `cli`
//! (the command line). The modules form layers, each using only those below
//! it (the order is in `src/layers.rs` and CONTRIBUTING.md, and a test
//! holds the code to it). Every stage's errors are one `error::Error`,
//! which knows its exit code.

pub(crate) mod cli;
pub(crate) mod diag;
pub(crate) mod error;
pub(crate) mod exec;
pub(crate) mod formats;
pub(crate) mod interp;
pub mod io;
pub(crate) mod load;
pub(crate) mod model;
pub(crate) mod names;
pub(crate) mod partitions;
pub(crate) mod pg;
pub(crate) mod plan;
pub(crate) mod project;
pub(crate) mod run;
pub(crate) mod secrets;
pub(crate) mod select;
pub(crate) mod sql;
pub(crate) mod state;
pub(crate) mod validate;

pub use cli::{main, run_with};

/// Not part of dg's API: what the repository's own tests and benches reach
/// into (the history stores, URL masking, a built-in manager from its TOML
/// fields). It may change or go in any release, minor or patch.
#[doc(hidden)]
pub mod __internal {
    use std::path::Path;
    use std::sync::Arc;

    pub use crate::secrets::mask_url;
    pub use crate::state::postgres::{MIGRATIONS, PostgresStore};
    pub use crate::state::sqlite::SqliteStore;
    pub use crate::state::{
        AttemptRecord, InputRead, Lease, Materialization, Record, StateStore, hostname,
    };

    use crate::io::{Config, Data, Format, IoManager, Registry, ResourceCx};

    /// Writes `items` (the partitions of one input, in order) as one file
    /// in `format` at `dest`, as dg hands an input to a step.
    pub fn combine_to_file(items: &[Data], format: Format, dest: &Path) -> anyhow::Result<()> {
        crate::io::table::combine_to_file(items, format, dest)
    }

    /// The manager that resource type `type_name` of `registry` creates
    /// for the TOML fields `config` (a `[resources.…]` table without
    /// `type`; `${env:…}` is not resolved).
    pub fn create_manager(
        registry: &Registry,
        type_name: &str,
        config: &str,
        cx: &ResourceCx,
    ) -> anyhow::Result<Arc<dyn IoManager>> {
        let ty = registry
            .get(type_name)
            .ok_or_else(|| anyhow::anyhow!("no resource type `{type_name}`"))?;
        let table: toml::Table = config.parse()?;
        ty.create(&Config::resolved(&table), cx)
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod layers;
