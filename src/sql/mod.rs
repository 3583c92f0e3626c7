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
pub use text::{ParamError, cut_text, param_value, statement_text, to_positional};

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

/// What the engine said of the user's query, in one line (with where in
/// the query, when the engine says), or why dg will not run it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The engine rejected the query, or it failed while it ran.
    #[error("{0}")]
    Engine(String),
    /// The query uses parameters dg does not bind.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// The query returns no columns (it is not a SELECT).
    #[error(
        "the query returns no columns: a `sql` asset's query must be a SELECT (or another statement that returns rows)"
    )]
    NoColumns,
    /// Two of the result's columns have one name.
    #[error("the query returns two columns named `{0}`: give them different names")]
    DuplicateColumn(String),
}

/// Why a check's query gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The query is wrong, or failed.
    #[error("SQL error: {0}")]
    Query(#[from] QueryError),
    /// The asset's table (named by its place) does not exist.
    #[error("{0} does not exist")]
    Missing(String),
    /// The view over the asset's table could not be created.
    #[error("cannot create the view `{view}`: {message}")]
    View { view: String, message: String },
    /// The database, or the stored data, could not be read.
    #[error("{0}")]
    Database(String),
}

/// Why the embedded engine wrote no result. One line, naming the asset or
/// the input.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The query is wrong, or failed; `note` explains a likely cause.
    #[error("SQL error in asset `{asset}`: {error}{note}")]
    Query {
        asset: String,
        error: QueryError,
        note: String,
    },
    /// The asset cannot be computed by this engine.
    #[error("asset `{asset}`: {message}")]
    Asset { asset: String, message: String },
    /// An input could not be read or loaded into the engine.
    #[error("input `{input}`: {message}")]
    Input { input: String, message: String },
    /// The engine could not be opened.
    #[error("{0}")]
    Engine(String),
    /// The result could not be written to the step's output.
    #[error("cannot write the result: {0}")]
    Write(String),
}

/// A `sql` asset's query, to run inside the database of its output.
pub struct RunQuery<'a> {
    pub query: &'a str,
    pub inputs: &'a [DbInput],
    pub params: &'a Params,
    /// The output: the asset and its partition.
    pub octx: &'a OutputContext,
}

impl RunQuery<'_> {
    /// The asset the query computes.
    pub(crate) fn asset_key(&self) -> &str {
        &self.octx.asset_key
    }

    /// The step fails with `what`, said of the asset.
    pub(crate) fn failed(&self, what: impl std::fmt::Display) -> InDbError {
        InDbError::Failed(format!("asset `{}`: {what}", self.asset_key()))
    }

    /// The step fails: the query is wrong, or failed.
    pub(crate) fn sql_error(&self, e: QueryError) -> InDbError {
        InDbError::Failed(format!("SQL error in asset `{}`: {e}", self.asset_key()))
    }
}

impl InDbError {
    /// The error with `secrets` masked in its message.
    pub(crate) fn redacted(self, secrets: &crate::secrets::Secrets) -> InDbError {
        match self {
            InDbError::Fallback(m) => InDbError::Fallback(secrets.redact(&m)),
            InDbError::Failed(m) => InDbError::Failed(secrets.redact(&m)),
        }
    }
}

/// A check's query, to run inside the database of its asset.
pub struct CheckQuery<'a> {
    pub asset_key: &'a str,
    /// The name of the TEMP view over the asset's table.
    pub view: &'a str,
    /// The partition the view is filtered to.
    pub partition: Option<&'a str>,
    pub query: &'a str,
    pub params: &'a Params,
}

/// What an in-database engine is, as messages and the choice of engine
/// name it.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// The engine its queries are written for; `None` for Postgres, whose
    /// dialect has no `engine` name.
    pub engine: Option<SqlEngine>,
    /// The resource type: `sqlite`, `postgres`, `duckdb`.
    pub kind: &'static str,
    /// Whether it has schemas besides files ("another database or schema").
    pub has_schemas: bool,
}

/// The database of a built-in `sqlite`, `postgres` or `duckdb` resource,
/// which runs `sql` assets and checks where their data is.
pub trait InDatabase: Any {
    /// What engine it is.
    fn dialect(&self) -> Dialect;
    /// The engine its queries are written for ([`Dialect::engine`]). A
    /// query runs inside when its asset names no `engine`, or names this one.
    fn engine(&self) -> Option<SqlEngine> {
        self.dialect().engine
    }
    /// The resource type, as messages name it ([`Dialect::kind`]).
    fn kind(&self) -> &'static str {
        self.dialect().kind
    }
    /// Whether it has schemas besides files ([`Dialect::has_schemas`]).
    fn has_schemas(&self) -> bool {
        self.dialect().has_schemas
    }
    /// The resource key it was built for.
    fn resource_key(&self) -> &str;
    /// Whether `other` is the same database (and schema): a query may read
    /// the tables of both.
    fn same_place(&self, other: &dyn InDatabase) -> bool;
    /// Where it is, as messages name it (a path, or a masked URL and schema).
    fn where_(&self) -> String;
    /// Runs the query for asset `q.octx.asset_key` inside the database and
    /// replaces the asset's partition (or table) with its rows, in one
    /// transaction: on any error the database is as it was. Each input is
    /// a TEMP view over the upstream's table, filtered to the mapped
    /// partitions (bound keys, never SQL text); no row passes through dg.
    fn run(&self, q: &RunQuery<'_>, log: &mut File) -> Result<Stored, InDbError>;
    /// Runs a check's query inside the database: `q.view` is a TEMP view
    /// over the asset's table, filtered to `q.partition`. Nothing is written.
    fn check(&self, q: &CheckQuery<'_>) -> Result<CheckRows, CheckError>;
}

/// Implements [`InDatabase`] for the built-in manager `$ty`, whose
/// dialect is `$dialect`, with its inherent `resource_key`, `where_`,
/// `same_place`, `run_inside` and `check_inside`.
macro_rules! impl_in_database {
    ($ty:ty, $dialect:expr) => {
        impl $crate::sql::InDatabase for $ty {
            fn dialect(&self) -> $crate::sql::Dialect {
                $dialect
            }

            fn resource_key(&self) -> &str {
                <$ty>::resource_key(self)
            }

            fn same_place(&self, other: &dyn $crate::sql::InDatabase) -> bool {
                $crate::sql::same_kind::<$ty>(other).is_some_and(|o| <$ty>::same_place(self, o))
            }

            fn where_(&self) -> String {
                <$ty>::where_(self)
            }

            fn run(
                &self,
                q: &$crate::sql::RunQuery<'_>,
                log: &mut std::fs::File,
            ) -> Result<$crate::io::Stored, $crate::sql::InDbError> {
                self.run_inside(q, log)
            }

            fn check(
                &self,
                q: &$crate::sql::CheckQuery<'_>,
            ) -> Result<$crate::sql::CheckRows, $crate::sql::CheckError> {
                self.check_inside(q)
            }
        }
    };
}
pub(crate) use impl_in_database;

/// `other` as the engine type `M`, when it is one.
pub(crate) fn same_kind<M: InDatabase>(other: &dyn InDatabase) -> Option<&M> {
    (other as &dyn Any).downcast_ref::<M>()
}

/// Whether two paths name the same file (by their canonical paths when
/// they differ).
pub(crate) fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Why an input's table cannot be read by a query inside the database.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InputTable {
    #[error("input `{input}`: {place} does not exist: materialize `{asset}` first")]
    Missing {
        input: String,
        place: String,
        asset: String,
    },
    #[error(
        "input `{input}`: {place} has no `dg_partition` column: it was not written for a partitioned asset"
    )]
    Unpartitioned { input: String, place: String },
}

/// The columns of an input's table (`None`: there is none; `place`: where,
/// as messages say) that its view selects.
pub(crate) fn input_columns(
    input: &DbInput,
    place: &str,
    columns: Option<Vec<crate::io::db::Column>>,
) -> Result<Vec<crate::io::db::Column>, InputTable> {
    use crate::io::db::PARTITION_COLUMN;
    let columns = columns.ok_or_else(|| InputTable::Missing {
        input: input.name.clone(),
        place: place.to_string(),
        asset: input.asset_key.clone(),
    })?;
    let partitioned = input.partitions.is_some();
    if partitioned && !columns.iter().any(|c| c.name == PARTITION_COLUMN) {
        return Err(InputTable::Unpartitioned {
            input: input.name.clone(),
            place: place.to_string(),
        });
    }
    Ok(view_columns(columns, partitioned))
}

/// The `SELECT` of an input's view: `columns` of `source` (as `t`) in
/// write order (`order`: `rowid`, `ctid`); with `keys`, a table of the
/// mapped partitions' keys (`k`) and their positions (`i`), only those
/// partitions' rows, in the keys' order.
pub(crate) fn view_select(
    columns: &[crate::io::db::Column],
    source: &str,
    keys: Option<&str>,
    order: &str,
) -> String {
    let cols = columns
        .iter()
        .map(|c| format!("t.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    match keys {
        Some(kt) => format!(
            "SELECT {cols} FROM {source} AS t JOIN {kt} AS k ON t.{} = k.k ORDER BY k.i, t.{order}",
            quote_ident(crate::io::db::PARTITION_COLUMN)
        ),
        None => format!("SELECT {cols} FROM {source} AS t ORDER BY t.{order}"),
    }
}

/// A table's columns as a view of it shows them: without `dg_partition`
/// when it is filtered to partitions.
pub(crate) fn view_columns(
    columns: Vec<crate::io::db::Column>,
    partitioned: bool,
) -> Vec<crate::io::db::Column> {
    use crate::io::db::PARTITION_COLUMN;
    columns
        .into_iter()
        .filter(|c| !(partitioned && c.name == PARTITION_COLUMN))
        .collect()
}

/// Logs that input `input` is a view over `source`.
pub(crate) fn log_view(log: &mut File, input: &DbInput, source: &str) {
    use std::io::Write as _;
    let _ = writeln!(
        log,
        "[dg] sql: input `{}` is a view over {source}{} (no rows loaded)",
        input.name,
        match &input.partitions {
            Some(k) => format!(", filtered to {} partition(s)", k.len()),
            None => String::new(),
        }
    );
}

/// A result's column names must be unique (they become a table's or a
/// file's header).
pub(crate) fn check_result_columns<S: AsRef<str>>(names: &[S]) -> Result<(), QueryError> {
    if names.is_empty() {
        return Err(QueryError::NoColumns);
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].iter().any(|m| m.as_ref() == n.as_ref()) {
            return Err(QueryError::DuplicateColumn(n.as_ref().to_string()));
        }
    }
    Ok(())
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
