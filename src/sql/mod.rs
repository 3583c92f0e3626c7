//! SQL compute: the `sql` asset's query and SQL asset checks.
//!
//! - [`embedded`]: a query run in an embedded, in-memory SQLite (or, with
//!   `engine = "duckdb"`, DuckDB) engine. Each loaded input becomes a table
//!   named after the input, holding the rows of every loaded partition in
//!   partition order; the result rows are the output table, which the
//!   caller writes in the asset's format and hands to the asset's manager
//!   like any step's output.
//! - In-database SQL, behind one trait, [`InDatabase`]: the query runs
//!   inside the database of the asset's `sqlite` ([`sqlite`]), `postgres`
//!   ([`postgres`]) or `duckdb` resource, over views of its inputs' tables,
//!   and no row passes through dg. [`in_database`] finds the engine of a
//!   built-in manager; the public [`crate::io::IoManager`] trait knows
//!   nothing of it.
//! - [`text`]: helpers on SQL text shared by the engines.
//!
//! The parameters `:partition_key`, `:partition_keys`, `:partition_start`,
//! `:partition_end` and `:run_id` are bound (NULL when the asset is
//! unpartitioned, or has no time window; a range step binds
//! `:partition_keys`, a JSON list, and the range's start and end, and
//! `:partition_key` is NULL), never spliced into the text.
//!
//! This layer sits above `io` (it runs inside the built-in managers'
//! databases and reads [`crate::io::Loaded`] inputs) and below `exec`.

#[cfg(feature = "duckdb")]
pub mod duckdb;
pub mod embedded;
pub mod postgres;
pub mod sqlite;
pub mod text;

use std::any::Any;
use std::fs::File;

pub use crate::io::db::quote_ident;
use crate::io::{IoManager, Loaded, OutputContext, Stored};
pub use crate::model::SqlEngine;
pub use embedded::{check_embedded, run};
pub use text::{cut_text, param_value, statement_text, to_positional};

/// What the query's parameters are bound to.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pub partition_key: Option<String>,
    /// A range step's keys as a JSON list (`["2024-01-01", …]`).
    pub partition_keys: Option<String>,
    pub partition_start: Option<String>,
    pub partition_end: Option<String>,
    pub run_id: String,
}

/// The parameters dg binds, by name (without the `:` prefix).
pub const PARAMS: &[&str] = &[
    "partition_key",
    "partition_keys",
    "partition_start",
    "partition_end",
    "run_id",
];

/// One loaded input: its name (the table's) and what its manager returned.
pub struct SqlInput {
    pub name: String,
    pub loaded: Loaded,
}

// ---------------------------------------------------------------------------
// In-database execution.

/// One input of a query run inside a `sqlite` database: a TEMP view named
/// after the input over the upstream's table.
#[derive(Debug, Clone)]
pub struct DbInput {
    /// The input's name: the view's.
    pub name: String,
    /// The upstream asset, whose table the view reads.
    pub asset_key: String,
    /// The mapped partitions, in order; `None` for an unpartitioned
    /// upstream (the whole table).
    pub partitions: Option<Vec<String>>,
}

/// Why [`InDatabase::run`] did not store anything.
#[derive(Debug)]
pub enum InDbError {
    /// The query cannot run inside the database; the embedded engine can
    /// still run it (nothing was changed).
    Fallback(String),
    /// The step fails: one line naming the asset.
    Failed(String),
}

/// What a check's query returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRows {
    pub rows: u64,
    /// The first row, as `col=value, …` (cut to a few hundred bytes).
    pub first: Option<String>,
}

impl CheckRows {
    /// The one-line message of a failed check.
    pub fn message(&self) -> String {
        let n = self.rows;
        let mut m = format!(
            "the query returned {n} row{}",
            if n == 1 { "" } else { "s" }
        );
        if let Some(f) = &self.first {
            m.push_str(&format!("; first: {f}"));
        }
        m
    }
}

/// The database of a built-in `sqlite`, `postgres` or `duckdb` resource,
/// which runs `sql` assets and checks where their data is.
pub trait InDatabase: Any {
    /// The engine its queries are written for; `None` for Postgres, whose
    /// dialect has no `engine` name. A query runs inside when its asset
    /// names no `engine`, or names this one.
    fn engine(&self) -> Option<SqlEngine>;
    /// The resource type, as messages name it: `sqlite`, `postgres`, `duckdb`.
    fn kind(&self) -> &'static str;
    /// Whether it has schemas besides files, as messages say ("another
    /// database or schema").
    fn has_schemas(&self) -> bool;
    /// The resource key it was built for.
    fn resource_key(&self) -> &str;
    /// Whether `other` is the same database (and schema): a query may read
    /// the tables of both.
    fn same_place(&self, other: &dyn InDatabase) -> bool;
    /// Where it is, as messages name it (a path, or a masked URL and schema).
    fn where_(&self) -> String;
    /// Runs `query` for asset `octx.asset_key` inside the database and
    /// replaces the asset's partition (or table) with its rows, in one
    /// transaction: on any error the database is as it was. Each input is
    /// a TEMP view over the upstream's table, filtered to the mapped
    /// partitions (bound keys, never SQL text); no row passes through dg.
    fn run(
        &self,
        query: &str,
        inputs: &[DbInput],
        params: &Params,
        octx: &OutputContext,
        log: &mut File,
    ) -> Result<Stored, InDbError>;
    /// Runs a check's query inside the database: `view` is a TEMP view over
    /// the asset's table, filtered to `partition`. Nothing is written.
    fn check(
        &self,
        asset_key: &str,
        view: &str,
        partition: Option<&str>,
        query: &str,
        params: &Params,
    ) -> Result<CheckRows, String>;
}

/// The in-database engine of `manager` when it is a built-in database
/// manager (`sqlite`, `postgres`, `duckdb`); `None` for any other.
pub fn in_database(manager: &dyn IoManager) -> Option<&dyn InDatabase> {
    let any = manager as &dyn Any;
    if let Some(db) = any.downcast_ref::<crate::io::sqlite::SqliteManager>() {
        return Some(db);
    }
    if let Some(db) = any.downcast_ref::<crate::io::postgres::PostgresManager>() {
        return Some(db);
    }
    #[cfg(feature = "duckdb")]
    if let Some(db) = any.downcast_ref::<crate::io::duckdb::DuckdbManager>() {
        return Some(db);
    }
    None
}
