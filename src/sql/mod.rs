//! The `sql` compute: a query run in an embedded, in-memory SQLite (or,
//! with `engine = "duckdb"`, DuckDB) engine.
//!
//! Each loaded input becomes a table named after the input, holding the
//! rows of every loaded partition in partition order. The parameters
//! `:partition_key`, `:partition_keys`, `:partition_start`, `:partition_end`
//! and `:run_id` are bound (NULL when the asset is unpartitioned, or has no
//! time window; a range step binds `:partition_keys`, a JSON list, and the
//! range's start and end, and `:partition_key` is NULL),
//! never spliced into the text. The result rows are the output table, which
//! the caller writes in the asset's format and hands to the asset's manager
//! like any step's output.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array, Int64Array, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};

use crate::io::{Data, Format, Loaded, Table, table};
pub use crate::model::SqlEngine;

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

pub use crate::io::db::quote_ident;

/// Runs `query` for asset `asset_key` in the embedded `engine` and writes
/// its result at `output` in `format`. Returns the number of rows written
/// and of input rows dg loaded into the engine. Errors are one line, naming
/// the asset; the query and the error also go to the step's log.
#[allow(clippy::too_many_arguments)]
pub fn run(
    engine: SqlEngine,
    asset_key: &str,
    query: &str,
    inputs: &[SqlInput],
    params: &Params,
    format: Format,
    output: &Path,
    log: &mut File,
) -> Result<Ran, String> {
    if format == Format::File {
        return Err(format!(
            "asset `{asset_key}`: a `sql` asset produces a table; its format cannot be `file` (use csv, jsonl or parquet)"
        ));
    }
    match engine {
        SqlEngine::Sqlite => run_sqlite(asset_key, query, inputs, params, format, output, log),
        #[cfg(feature = "duckdb")]
        SqlEngine::Duckdb => run_duckdb(asset_key, query, inputs, params, format, output, log),
        #[cfg(not(feature = "duckdb"))]
        SqlEngine::Duckdb => Err(format!(
            "asset `{asset_key}`: this dg was built without DuckDB (the `duckdb` cargo feature)"
        )),
    }
}

/// [`run`] in an in-memory DuckDB database.
#[cfg(feature = "duckdb")]
fn run_duckdb(
    asset_key: &str,
    query: &str,
    inputs: &[SqlInput],
    params: &Params,
    format: Format,
    output: &Path,
    log: &mut File,
) -> Result<Ran, String> {
    let engine = crate::io::duckdb::Embedded::open()?;
    let mut empty: Vec<&str> = Vec::new();
    let mut rows_loaded = 0u64;
    for input in inputs {
        let t0 = Instant::now();
        let table =
            input_table(&input.loaded).map_err(|e| format!("input `{}`: {e:#}", input.name))?;
        if table.schema.fields().is_empty() {
            empty.push(&input.name);
            let _ = writeln!(
                log,
                "[dg] sql: input `{}` is empty (no columns): no table is created",
                input.name
            );
            continue;
        }
        let rows = engine
            .load(&input.name, &table)
            .map_err(|e| format!("input `{}`: cannot load it into DuckDB: {e:#}", input.name))?;
        rows_loaded += rows;
        let _ = writeln!(
            log,
            "[dg] sql: loaded input `{}` as table {} (DuckDB): {rows} rows in {} ms",
            input.name,
            quote_ident(&input.name),
            t0.elapsed().as_millis()
        );
    }
    let _ = writeln!(
        log,
        "[dg] sql: running in the embedded DuckDB engine\n{query}"
    );
    let t0 = Instant::now();
    let table = match engine.query(query, params) {
        Ok(t) => t,
        Err(msg) => {
            let mut out = format!("SQL error in asset `{asset_key}`: {msg}");
            for name in &empty {
                if msg.contains(&format!("Table with name {name} does not exist")) {
                    out.push_str(&format!(
                        " (input `{name}` is empty: it has no rows and no columns, so no table was created)"
                    ));
                }
            }
            let _ = writeln!(log, "[dg] {out}");
            return Err(out);
        }
    };
    let rows = table.num_rows();
    let _ = writeln!(
        log,
        "[dg] sql: {rows} rows, {} columns in {} ms (DuckDB)",
        table.schema.fields().len(),
        t0.elapsed().as_millis()
    );
    let t0 = Instant::now();
    table::write(&table, output, format).map_err(|e| format!("cannot write the result: {e:#}"))?;
    let _ = writeln!(
        log,
        "[dg] sql: wrote the result as {} in {} ms",
        format.name(),
        t0.elapsed().as_millis()
    );
    Ok(Ran { rows, rows_loaded })
}

/// [`run`] in an in-memory SQLite database.
fn run_sqlite(
    asset_key: &str,
    query: &str,
    inputs: &[SqlInput],
    params: &Params,
    format: Format,
    output: &Path,
    log: &mut File,
) -> Result<Ran, String> {
    let conn = Connection::open_in_memory()
        .map_err(|e| format!("cannot open the embedded SQLite engine: {e}"))?;
    let _ = conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY;",
    );

    // Inputs.
    let mut empty: Vec<&str> = Vec::new();
    let mut rows_loaded = 0u64;
    for input in inputs {
        let t0 = Instant::now();
        let table =
            input_table(&input.loaded).map_err(|e| format!("input `{}`: {e:#}", input.name))?;
        if table.schema.fields().is_empty() {
            empty.push(&input.name);
            let _ = writeln!(
                log,
                "[dg] sql: input `{}` is empty (no columns): no table is created",
                input.name
            );
            continue;
        }
        let rows = load_table(&conn, &input.name, &table)
            .map_err(|e| format!("input `{}`: cannot load it into SQLite: {e}", input.name))?;
        rows_loaded += rows as u64;
        let _ = writeln!(
            log,
            "[dg] sql: loaded input `{}` as table {}: {rows} rows in {} ms",
            input.name,
            quote_ident(&input.name),
            t0.elapsed().as_millis()
        );
    }

    // The query.
    let _ = writeln!(log, "[dg] sql: running\n{query}");
    let t0 = Instant::now();
    let table = match query_table(&conn, query, params) {
        Ok(t) => t,
        Err(e) => {
            let msg = match e {
                QueryError::Sql(e) => describe(&e, query),
                QueryError::Other(msg) => msg,
            };
            let mut out = format!("SQL error in asset `{asset_key}`: {msg}");
            for name in &empty {
                if msg == format!("no such table: {name}") {
                    out.push_str(&format!(
                        " (input `{name}` is empty: it has no rows and no columns, so no table was created)"
                    ));
                }
            }
            let _ = writeln!(log, "[dg] {out}");
            return Err(out);
        }
    };
    let rows = table.num_rows();
    let _ = writeln!(
        log,
        "[dg] sql: {rows} rows, {} columns in {} ms",
        table.schema.fields().len(),
        t0.elapsed().as_millis()
    );
    let t0 = Instant::now();
    table::write(&table, output, format).map_err(|e| format!("cannot write the result: {e:#}"))?;
    let _ = writeln!(
        log,
        "[dg] sql: wrote the result as {} in {} ms",
        format.name(),
        t0.elapsed().as_millis()
    );
    Ok(Ran { rows, rows_loaded })
}

/// What [`run`] did.
#[derive(Debug, Clone, Copy)]
pub struct Ran {
    /// Rows of the result.
    pub rows: usize,
    /// Input rows dg read from the inputs' managers into the engine.
    pub rows_loaded: u64,
}

/// The rows of every partition of an input as one table.
fn input_table(loaded: &Loaded) -> anyhow::Result<Table> {
    let one = |d: &Data| -> anyhow::Result<Arc<Table>> {
        match d {
            Data::Table(t) => Ok(t.clone()),
            Data::File { path, format } => Ok(Arc::new(table::read(path, *format)?)),
            Data::Bytes(_) => anyhow::bail!(
                "opaque bytes (`file` format) cannot be a SQL table: store the upstream as csv, jsonl or parquet"
            ),
        }
    };
    match loaded {
        Loaded::Single(d) => Ok(Arc::unwrap_or_clone(one(d)?)),
        Loaded::Partitions(map) => {
            let mut tables = Vec::with_capacity(map.len());
            for (k, d) in map {
                let t = one(d).map_err(|e| e.context(format!("partition `{k}`")))?;
                if !t.schema.fields().is_empty() {
                    tables.push((t, format!("partition `{k}`")));
                }
            }
            if tables.len() == 1 {
                return Ok(Arc::unwrap_or_clone(tables.pop().unwrap().0));
            }
            table::concat_tables(&tables)
        }
    }
}

/// SQLite's declared type for an Arrow column.
fn sqlite_type(t: &DataType) -> &'static str {
    match t {
        DataType::Boolean => "BOOLEAN",
        t if t.is_integer() => "INTEGER",
        t if t.is_floating() => "REAL",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BLOB",
        _ => "TEXT",
    }
}

/// A column as SQLite values.
enum Col<'a> {
    Bool(&'a BooleanArray),
    Int(&'a Int64Array),
    Real(&'a Float64Array),
    Text(&'a StringArray),
    Blob(&'a BinaryArray),
}

/// Arrow types dg binds directly; others are cast first.
fn direct_type(t: &DataType) -> DataType {
    match t {
        DataType::Boolean => DataType::Boolean,
        t if t.is_integer() => DataType::Int64,
        t if t.is_floating() => DataType::Float64,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        _ => DataType::Utf8,
    }
}

/// Creates table `name` and inserts `table`'s rows. Returns the row count.
fn load_table(conn: &Connection, name: &str, table: &Table) -> anyhow::Result<usize> {
    let fields = table.schema.fields();
    let cols: Vec<String> = fields
        .iter()
        .map(|f| format!("{} {}", quote_ident(f.name()), sqlite_type(f.data_type())))
        .collect();
    conn.execute_batch(&format!(
        "CREATE TABLE {} ({})",
        quote_ident(name),
        cols.join(", ")
    ))?;
    let marks = vec!["?"; fields.len()].join(", ");
    let tx = conn.unchecked_transaction()?;
    let mut rows = 0;
    {
        let mut stmt = tx.prepare(&format!(
            "INSERT INTO {} VALUES ({marks})",
            quote_ident(name)
        ))?;
        for batch in &table.batches {
            let mut arrays: Vec<ArrayRef> = Vec::with_capacity(fields.len());
            for c in batch.columns() {
                let want = direct_type(c.data_type());
                arrays.push(if *c.data_type() == want {
                    c.clone()
                } else {
                    arrow::compute::cast(c, &want)?
                });
            }
            let cols: Vec<Col> = arrays
                .iter()
                .map(|a| match a.data_type() {
                    DataType::Boolean => Col::Bool(a.as_boolean()),
                    DataType::Int64 => Col::Int(a.as_primitive()),
                    DataType::Float64 => Col::Real(a.as_primitive()),
                    DataType::Binary => Col::Blob(a.as_binary()),
                    _ => Col::Text(a.as_string()),
                })
                .collect();
            for r in 0..batch.num_rows() {
                for (i, c) in cols.iter().enumerate() {
                    let v: Option<ValueRef> = match c {
                        Col::Bool(a) => a.is_valid(r).then(|| ValueRef::Integer(a.value(r) as i64)),
                        Col::Int(a) => a.is_valid(r).then(|| ValueRef::Integer(a.value(r))),
                        Col::Real(a) => a.is_valid(r).then(|| ValueRef::Real(a.value(r))),
                        Col::Text(a) => {
                            a.is_valid(r).then(|| ValueRef::Text(a.value(r).as_bytes()))
                        }
                        Col::Blob(a) => a.is_valid(r).then(|| ValueRef::Blob(a.value(r))),
                    };
                    stmt.raw_bind_parameter(
                        i + 1,
                        ToSqlOutput::Borrowed(v.unwrap_or(ValueRef::Null)),
                    )?;
                }
                stmt.raw_execute()?;
                rows += 1;
            }
        }
    }
    tx.commit()?;
    Ok(rows)
}

enum QueryError {
    Sql(rusqlite::Error),
    Other(String),
}

impl From<rusqlite::Error> for QueryError {
    fn from(e: rusqlite::Error) -> Self {
        QueryError::Sql(e)
    }
}

/// One line for a SQLite error: SQLite's message, and where in the query.
fn describe(e: &rusqlite::Error, query: &str) -> String {
    match e {
        rusqlite::Error::SqlInputError { msg, offset, .. } => {
            match usize::try_from(*offset)
                .ok()
                .filter(|&o| o <= query.len() && query.is_char_boundary(o))
            {
                Some(o) if query.contains('\n') => {
                    let before = &query[..o];
                    let line = before.matches('\n').count() + 1;
                    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                    format!("{msg} (line {line}, column {col} of the query)")
                }
                _ => msg.clone(),
            }
        }
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        rusqlite::Error::MultipleStatement => {
            "the query holds more than one statement; a `sql` asset runs exactly one SELECT".into()
        }
        rusqlite::Error::ExecuteReturnedResults => {
            "the query returned rows where none were expected".into()
        }
        other => other.to_string(),
    }
}

/// Checks a query: prepares it (against whatever tables `conn` holds) and
/// checks its parameters. Used by the step and by `dg check defs`.
pub fn prepare<'c>(conn: &'c Connection, query: &str) -> Result<rusqlite::Statement<'c>, String> {
    let stmt = conn.prepare(query).map_err(|e| describe(&e, query))?;
    check_params(&stmt)?;
    if stmt.column_count() == 0 {
        return Err("the query returns no columns: a `sql` asset's query must be a SELECT (or another statement that returns rows)".into());
    }
    Ok(stmt)
}

fn check_params(stmt: &rusqlite::Statement) -> Result<(), String> {
    for i in 1..=stmt.parameter_count() {
        match stmt.parameter_name(i) {
            None => {
                return Err("positional parameters (`?`) are not supported: use :partition_key, :partition_keys, :partition_start, :partition_end or :run_id".into());
            }
            Some(n) if !PARAMS.contains(&&n[1..]) => {
                return Err(format!(
                    "unknown parameter `{n}`: dg binds :partition_key, :partition_keys, :partition_start, :partition_end and :run_id"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Binds dg's parameters, by name, to a statement that [`prepare`] accepted.
fn bind_params(stmt: &mut rusqlite::Statement<'_>, params: &Params) -> rusqlite::Result<()> {
    for i in 1..=stmt.parameter_count() {
        let name = stmt.parameter_name(i).unwrap_or(":")[1..].to_string();
        let v: &dyn ToSql = match name.as_str() {
            "partition_key" => &params.partition_key,
            "partition_keys" => &params.partition_keys,
            "partition_start" => &params.partition_start,
            "partition_end" => &params.partition_end,
            _ => &params.run_id,
        };
        stmt.raw_bind_parameter(i, v)?;
    }
    Ok(())
}

/// Runs the query and collects its rows.
fn query_table(conn: &Connection, query: &str, params: &Params) -> Result<Table, QueryError> {
    let mut stmt = prepare(conn, query).map_err(QueryError::Other)?;
    bind_params(&mut stmt, params)?;
    let names: Vec<String> = stmt.column_names().map(String::from).collect();
    let decls: Vec<Option<String>> = stmt
        .columns()
        .map(|c| c.decl_type().map(|s| s.to_ascii_uppercase()))
        .collect();
    let mut cols: Vec<Buf> = names.iter().map(|_| Buf::Null(0)).collect();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        for (i, c) in cols.iter_mut().enumerate() {
            c.push(row.get_ref(i)?);
        }
    }
    let mut fields = Vec::with_capacity(cols.len());
    let mut arrays = Vec::with_capacity(cols.len());
    for ((name, decl), col) in names.iter().zip(&decls).zip(cols) {
        let a = col.finish(decl.as_deref());
        fields.push(Field::new(name, a.data_type().clone(), true));
        arrays.push(a);
    }
    let schema = Arc::new(Schema::new(fields));
    let n = arrays.first().map_or(0, |a| a.len());
    let batches = if n == 0 {
        Vec::new()
    } else {
        vec![
            RecordBatch::try_new(schema.clone(), arrays)
                .map_err(|e| QueryError::Other(e.to_string()))?,
        ]
    };
    Ok(Table { schema, batches })
}

/// A result column being collected; its type widens as values arrive:
/// integers and reals → reals, anything and text → text.
enum Buf {
    Null(usize),
    Int(Vec<Option<i64>>),
    Real(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Blob(Vec<Option<Vec<u8>>>),
}

fn real_text(f: f64) -> String {
    format!("{f:?}")
}

impl Buf {
    fn push(&mut self, v: ValueRef) {
        match (&mut *self, v) {
            (Buf::Null(n), ValueRef::Null) => *n += 1,
            (Buf::Int(c), ValueRef::Null) => c.push(None),
            (Buf::Real(c), ValueRef::Null) => c.push(None),
            (Buf::Text(c), ValueRef::Null) => c.push(None),
            (Buf::Blob(c), ValueRef::Null) => c.push(None),
            (Buf::Null(n), v) => {
                let n = *n;
                *self = match v {
                    ValueRef::Integer(_) => Buf::Int(vec![None; n]),
                    ValueRef::Real(_) => Buf::Real(vec![None; n]),
                    ValueRef::Blob(_) => Buf::Blob(vec![None; n]),
                    _ => Buf::Text(vec![None; n]),
                };
                self.push(v);
            }
            (Buf::Int(c), ValueRef::Integer(i)) => c.push(Some(i)),
            (Buf::Real(c), ValueRef::Real(f)) => c.push(Some(f)),
            (Buf::Real(c), ValueRef::Integer(i)) => c.push(Some(i as f64)),
            (Buf::Int(c), ValueRef::Real(f)) => {
                let mut r: Vec<Option<f64>> = c.iter().map(|v| v.map(|i| i as f64)).collect();
                r.push(Some(f));
                *self = Buf::Real(r);
            }
            (Buf::Blob(c), ValueRef::Blob(b)) => c.push(Some(b.to_vec())),
            (Buf::Text(c), v) => c.push(Some(value_text(v))),
            (other, v) => {
                let mut t: Vec<Option<String>> = match other {
                    Buf::Int(c) => c.iter().map(|v| v.map(|i| i.to_string())).collect(),
                    Buf::Real(c) => c.iter().map(|v| v.map(real_text)).collect(),
                    Buf::Blob(c) => c
                        .iter()
                        .map(|v| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
                        .collect(),
                    _ => unreachable!("handled above"),
                };
                t.push(Some(value_text(v)));
                *self = Buf::Text(t);
            }
        }
    }

    /// The Arrow array; an all-NULL column takes its type from the declared
    /// type (INTEGER → Int64, REAL → Float64, BLOB → Binary, else Utf8).
    fn finish(self, decl: Option<&str>) -> ArrayRef {
        match self {
            Buf::Null(n) => match decl.map(affinity) {
                Some(DataType::Int64) => Arc::new(Int64Array::new_null(n)),
                Some(DataType::Float64) => Arc::new(Float64Array::new_null(n)),
                Some(DataType::Binary) => Arc::new(BinaryArray::new_null(n)),
                Some(DataType::Boolean) => Arc::new(BooleanArray::new_null(n)),
                _ => Arc::new(StringArray::new_null(n)),
            },
            Buf::Int(c) => {
                if decl == Some("BOOLEAN") && c.iter().flatten().all(|&i| i == 0 || i == 1) {
                    Arc::new(
                        c.into_iter()
                            .map(|v| v.map(|i| i == 1))
                            .collect::<BooleanArray>(),
                    )
                } else {
                    Arc::new(Int64Array::from(c))
                }
            }
            Buf::Real(c) => Arc::new(Float64Array::from(c)),
            Buf::Text(c) => Arc::new(StringArray::from(c)),
            Buf::Blob(c) => Arc::new(c.iter().map(|v| v.as_deref()).collect::<BinaryArray>()),
        }
    }
}

fn value_text(v: ValueRef) -> String {
    match v {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => real_text(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    }
}

/// The Arrow type for a declared SQLite type, after SQLite's affinity rules.
fn affinity(decl: &str) -> DataType {
    if decl == "BOOLEAN" {
        DataType::Boolean
    } else if decl.contains("INT") {
        DataType::Int64
    } else if decl.contains("CHAR") || decl.contains("CLOB") || decl.contains("TEXT") {
        DataType::Utf8
    } else if decl.contains("BLOB") {
        DataType::Binary
    } else if decl.contains("REAL") || decl.contains("FLOA") || decl.contains("DOUB") {
        DataType::Float64
    } else {
        DataType::Utf8
    }
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

/// Why [`run_in_db`] did not store anything.
#[derive(Debug)]
pub enum InDbError {
    /// The query cannot run inside the database; the embedded engine can
    /// still run it (nothing was changed).
    Fallback(String),
    /// The step fails: one line naming the asset.
    Failed(String),
}

/// The temp table that holds the result until it replaces the partition.
const RESULT_TABLE: &str = "dg_result";

/// Runs `query` for asset `octx.asset_key` inside `db`'s database and
/// replaces the asset's partition (or table) with its rows, all in one
/// transaction: on any error the database is as it was. Each input is a
/// TEMP view over the upstream's table filtered to the mapped partitions
/// (bound keys, never SQL text); no row passes through dg.
pub fn run_in_db(
    query: &str,
    inputs: &[DbInput],
    params: &Params,
    db: &crate::io::sqlite::SqliteManager,
    octx: &crate::io::OutputContext,
    log: &mut File,
) -> Result<crate::io::Stored, InDbError> {
    use crate::io::sqlite::{PARTITION_COLUMN, table_name};
    use InDbError::{Failed, Fallback};

    let asset_key = octx.asset_key.as_str();
    let fail = |what: String| Failed(format!("asset `{asset_key}`: {what}"));
    let where_ = format!("sqlite:{}", db.path().display());
    let started = Instant::now();
    let _guard = db.lock_writes();
    let mut conn = db.open(true).map_err(|e| fail(format!("{e:#}")))?;
    let _ = conn.execute_batch("PRAGMA temp_store = MEMORY;");
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| fail(format!("cannot start a transaction on {where_}: {e}")))?;
    let sqlerr = |e: rusqlite::Error| fail(format!("{where_}: {e}"));

    // Inputs: TEMP views (temp objects shadow main's tables of the same name).
    for (i, input) in inputs.iter().enumerate() {
        let table = table_name(&input.asset_key);
        let place = db.place(&table);
        let columns = Some(columns_in(&tx, "main", &table).map_err(sqlerr)?)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                fail(format!(
                    "input `{}`: {place} does not exist: materialize `{}` first",
                    input.name, input.asset_key
                ))
            })?;
        let has_partition = columns.iter().any(|c| c.name == PARTITION_COLUMN);
        if input.partitions.is_some() && !has_partition {
            return Err(fail(format!(
                "input `{}`: {place} has no `{PARTITION_COLUMN}` column: it was not written for a partitioned asset",
                input.name
            )));
        }
        let cols: Vec<String> = columns
            .iter()
            .filter(|c| !(input.partitions.is_some() && c.name == PARTITION_COLUMN))
            .map(|c| quote_ident(&c.name))
            .collect();
        let view = quote_ident(&input.name);
        let source = format!("main.{}", quote_ident(&table));
        let select = match &input.partitions {
            Some(keys) => {
                let kt = quote_ident(&format!("dg_keys_{i}"));
                tx.execute_batch(&format!(
                    "CREATE TEMP TABLE {kt} (i INTEGER PRIMARY KEY, k TEXT NOT NULL)"
                ))
                .map_err(sqlerr)?;
                let mut ins = tx
                    .prepare(&format!("INSERT INTO temp.{kt} (k) VALUES (?1)"))
                    .map_err(sqlerr)?;
                for k in keys {
                    ins.execute([k]).map_err(sqlerr)?;
                }
                let tcols: Vec<String> = cols.iter().map(|c| format!("t.{c}")).collect();
                format!(
                    "SELECT {} FROM {source} AS t JOIN temp.{kt} AS k ON t.{} = k.k ORDER BY k.i, t.rowid",
                    tcols.join(", "),
                    quote_ident(PARTITION_COLUMN)
                )
            }
            None => format!("SELECT {} FROM {source} ORDER BY rowid", cols.join(", ")),
        };
        tx.execute_batch(&format!(
            "CREATE TEMP VIEW {view} ({}) AS {select}",
            cols.join(", ")
        ))
        .map_err(|e| {
            fail(format!(
                "input `{}`: cannot create its view: {e}",
                input.name
            ))
        })?;
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

    // The query, checked on its own first so errors point into it.
    let _ = writeln!(log, "[dg] sql: running inside {where_}\n{query}");
    let sql_error = |msg: String| {
        let out = format!("SQL error in asset `{asset_key}`: {msg}");
        Failed(out)
    };
    let (names, decls) = {
        let stmt = prepare(&tx, query).map_err(sql_error)?;
        let names: Vec<String> = stmt.column_names().map(String::from).collect();
        let decls: Vec<Option<String>> = stmt
            .columns()
            .map(|c| c.decl_type().map(|s| s.to_ascii_uppercase()))
            .collect();
        (names, decls)
    };
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(sql_error(format!(
                "the query returns two columns named `{n}`: give them different names"
            )));
        }
    }
    let partitioned = octx.partition.is_some();
    if partitioned && names.iter().any(|n| n == PARTITION_COLUMN) {
        return Err(fail(format!(
            "the result has a column named `{PARTITION_COLUMN}`, which the sqlite manager uses for the partition key: rename it"
        )));
    }
    let result = format!("temp.{}", quote_ident(RESULT_TABLE));
    let body = statement_text(query);
    let t0 = Instant::now();
    {
        let wrapped = format!(
            "CREATE TEMP TABLE {} AS SELECT * FROM (\n{body}\n)",
            quote_ident(RESULT_TABLE)
        );
        let mut stmt = match tx.prepare(&wrapped) {
            Ok(s) => s,
            Err(e) => {
                return Err(Fallback(format!(
                    "the query cannot be used as a subquery ({})",
                    describe(&e, &wrapped)
                )));
            }
        };
        bind_params(&mut stmt, params).map_err(sqlerr)?;
        stmt.raw_execute()
            .map_err(|e| sql_error(describe(&e, query)))?;
    }
    let made: Vec<String> = columns_in(&tx, "temp", RESULT_TABLE)
        .map_err(sqlerr)?
        .into_iter()
        .map(|c| c.name)
        .collect();
    if made != names {
        return Err(Fallback(format!(
            "SQLite named the result's columns {made:?}, not {names:?}"
        )));
    }

    // Column types, as the embedded engine would infer them from the values.
    let mut probes = vec!["count(*)".to_string()];
    for n in &names {
        let c = quote_ident(n);
        for t in ["integer", "real", "text", "blob"] {
            probes.push(format!("max(typeof({c}) = '{t}')"));
        }
    }
    let (count, seen): (i64, Vec<Option<i64>>) = tx
        .query_row(
            &format!("SELECT {} FROM {result}", probes.join(", ")),
            [],
            |r| {
                let mut v = Vec::with_capacity(names.len() * 4);
                for i in 0..names.len() * 4 {
                    v.push(r.get::<_, Option<i64>>(i + 1)?);
                }
                Ok((r.get(0)?, v))
            },
        )
        .map_err(sqlerr)?;
    let mut wanted = Vec::with_capacity(names.len());
    let mut all_null = Vec::with_capacity(names.len());
    for (i, (n, decl)) in names.iter().zip(&decls).enumerate() {
        let has = |k: usize| seen[i * 4 + k] == Some(1);
        let (int, real, text, blob) = (has(0), has(1), has(2), has(3));
        let ty = if text || (blob && (int || real)) {
            "TEXT"
        } else if blob {
            "BLOB"
        } else if real {
            "REAL"
        } else if int {
            "INTEGER"
        } else {
            match decl.as_deref().map(affinity) {
                Some(DataType::Boolean) => "BOOLEAN",
                Some(DataType::Int64) => "INTEGER",
                Some(DataType::Float64) => "REAL",
                Some(DataType::Binary) => "BLOB",
                _ => "TEXT",
            }
        };
        all_null.push(!(int || real || text || blob));
        wanted.push(crate::io::sqlite::Column {
            name: n.clone(),
            ty: ty.to_string(),
        });
    }
    let _ = writeln!(
        log,
        "[dg] sql: {count} rows, {} columns in {} ms (inside the database)",
        names.len(),
        t0.elapsed().as_millis()
    );

    // Replace the partition (or table) with the result.
    for input in inputs {
        tx.execute_batch(&format!("DROP VIEW temp.{}", quote_ident(&input.name)))
            .map_err(sqlerr)?;
    }
    let target = table_name(asset_key);
    db.prepare_target(&tx, octx, &wanted, &all_null)
        .map_err(|e| {
            Failed(format!(
                "cannot store `{asset_key}` in {}: {e:#}",
                db.place(&target)
            ))
        })?;
    let cols: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
    let (into, select) = match &octx.partition {
        Some(_) => (
            format!("{}, {}", quote_ident(PARTITION_COLUMN), cols.join(", ")),
            format!("?1, {}", cols.join(", ")),
        ),
        None => (cols.join(", "), cols.join(", ")),
    };
    let sql = format!(
        "INSERT INTO main.{} ({into}) SELECT {select} FROM {result} ORDER BY rowid",
        quote_ident(&target)
    );
    let inserted = match &octx.partition {
        Some(p) => tx.execute(&sql, [&p.key]),
        None => tx.execute(&sql, []),
    }
    .map_err(|e| {
        Failed(format!(
            "cannot store `{asset_key}` in {}: {e}",
            db.place(&target)
        ))
    })?;
    tx.execute_batch(&format!("DROP TABLE {result}"))
        .map_err(sqlerr)?;
    crate::io::sqlite::record_stored(&tx, octx, inserted as u64).map_err(|e| {
        Failed(format!(
            "cannot store `{asset_key}` in {}: {e:#}",
            db.place(&target)
        ))
    })?;
    tx.commit()
        .map_err(|e| Failed(format!("cannot commit to {}: {e}", db.place(&target))))?;
    let _ = writeln!(
        log,
        "[dg] sql: ran inside {where_}; stored {inserted} rows in {}; 0 rows moved through dg ({} ms)",
        quote_ident(&target),
        started.elapsed().as_millis()
    );
    Ok(crate::io::Stored {
        path: Some(format!("sqlite:{}#{target}", db.path().display())),
        rows: Some(inserted as u64),
        bytes: None,
    })
}

// ---------------------------------------------------------------------------
// Asset checks: a query that passes when it returns no rows.

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

/// The longest first row shown in a check's message, in bytes.
const FIRST_ROW_MAX: usize = 300;

/// Cuts `s` to at most `max` bytes, at a character boundary, with a mark.
pub fn cut_text(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Counts the rows of a prepared, bound statement, keeping the first.
fn count_rows(stmt: &mut rusqlite::Statement<'_>) -> rusqlite::Result<CheckRows> {
    let names: Vec<String> = stmt.column_names().map(String::from).collect();
    let mut out = CheckRows::default();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        if out.rows == 0 {
            let mut parts = Vec::with_capacity(names.len());
            for (i, n) in names.iter().enumerate() {
                let v = match row.get_ref(i)? {
                    ValueRef::Null => "NULL".to_string(),
                    v => value_text(v),
                };
                parts.push(format!("{n}={v}"));
            }
            out.first = Some(cut_text(parts.join(", "), FIRST_ROW_MAX));
        }
        out.rows += 1;
    }
    Ok(out)
}

/// Runs a check's query in the embedded engine, over the stored partition
/// loaded as table `table`.
pub fn check_embedded(
    table: &str,
    loaded: &Loaded,
    query: &str,
    params: &Params,
) -> Result<CheckRows, String> {
    let conn = Connection::open_in_memory()
        .map_err(|e| format!("cannot open the embedded SQLite engine: {e}"))?;
    let t = input_table(loaded).map_err(|e| format!("cannot read the stored data: {e:#}"))?;
    if !t.schema.fields().is_empty() {
        load_table(&conn, table, &t)
            .map_err(|e| format!("cannot load the stored data into SQLite: {e}"))?;
    }
    let mut stmt = prepare(&conn, query).map_err(|e| format!("SQL error: {e}"))?;
    bind_params(&mut stmt, params).map_err(|e| format!("SQL error: {}", describe(&e, query)))?;
    count_rows(&mut stmt).map_err(|e| format!("SQL error: {}", describe(&e, query)))
}

/// Runs a check's query inside the asset's `sqlite` database: `view` is a
/// TEMP view over the asset's table, filtered to `partition`. Nothing is
/// written to the database.
pub fn check_in_sqlite(
    db: &crate::io::sqlite::SqliteManager,
    asset_key: &str,
    view: &str,
    partition: Option<&str>,
    query: &str,
    params: &Params,
) -> Result<CheckRows, String> {
    use crate::io::sqlite::{PARTITION_COLUMN, table_name};
    let table = table_name(asset_key);
    let conn = db.open(false).map_err(|e| format!("{e:#}"))?;
    let _ = conn.execute_batch("PRAGMA temp_store = MEMORY;");
    let columns = columns_in(&conn, "main", &table).map_err(|e| e.to_string())?;
    if columns.is_empty() {
        return Err(format!("{} does not exist", db.place(&table)));
    }
    let cols: Vec<String> = columns
        .iter()
        .filter(|c| !(partition.is_some() && c.name == PARTITION_COLUMN))
        .map(|c| quote_ident(&c.name))
        .collect();
    let filter = match partition {
        // A literal: a view cannot hold a bound parameter. SQLite strings
        // escape only `'`.
        Some(k) => format!(
            " WHERE {} = '{}'",
            quote_ident(PARTITION_COLUMN),
            k.replace('\'', "''")
        ),
        None => String::new(),
    };
    conn.execute_batch(&format!(
        "CREATE TEMP VIEW {} AS SELECT {} FROM main.{}{filter}",
        quote_ident(view),
        cols.join(", "),
        quote_ident(&table)
    ))
    .map_err(|e| format!("cannot create the view `{view}`: {e}"))?;
    let mut stmt = prepare(&conn, query).map_err(|e| format!("SQL error: {e}"))?;
    bind_params(&mut stmt, params).map_err(|e| format!("SQL error: {}", describe(&e, query)))?;
    count_rows(&mut stmt).map_err(|e| format!("SQL error: {}", describe(&e, query)))
}

/// The columns of table `table` in `schema` (`main` or `temp`); empty when
/// there is no such table.
fn columns_in(
    conn: &Connection,
    schema: &str,
    table: &str,
) -> rusqlite::Result<Vec<crate::io::sqlite::Column>> {
    let mut stmt = conn.prepare("SELECT name, type FROM pragma_table_info(?1, ?2) ORDER BY cid")?;
    stmt.query_map([table, schema], |r| {
        Ok(crate::io::sqlite::Column {
            name: r.get(0)?,
            ty: r.get::<_, String>(1)?.to_ascii_uppercase(),
        })
    })?
    .collect()
}

/// The query without what follows its last token: trailing `;`, comments
/// and whitespace, so that it can be wrapped in a subquery.
pub(crate) fn statement_text(query: &str) -> &str {
    let b = query.as_bytes();
    let mut end = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            q @ (b'\'' | b'"' | b'`' | b'[') => {
                let close = if q == b'[' { b']' } else { q };
                i += 1;
                while i < b.len() && b[i] != close {
                    i += 1;
                }
                i += 1;
                end = i.min(b.len());
            }
            b';' => i += 1,
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                i += 1;
                end = i;
            }
        }
    }
    &query[..end.min(query.len())]
}

/// `query` with dg's named parameters (`:partition_key`, …) replaced by
/// Postgres placeholders (`$1`, `$2`, … one per distinct name, in order of
/// first use), and the names in placeholder order. Only placeholders in
/// SQL text are replaced: string literals (`'…'`, `E'…'`, `$tag$…$tag$`),
/// quoted identifiers and comments are copied unchanged, as is a `::` cast.
/// A positional `$n` in the query is an error (dg binds names only).
pub fn to_positional(query: &str) -> Result<(String, Vec<&'static str>), String> {
    let b = query.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut out = String::with_capacity(query.len() + 8);
    let mut names: Vec<&'static str> = Vec::new();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // Postgres block comments nest.
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            q @ (b'\'' | b'"') => {
                // `E'…'` allows backslash escapes.
                let escapes = q == b'\''
                    && i > 0
                    && matches!(b[i - 1], b'e' | b'E')
                    && (i < 2 || !ident(b[i - 2]));
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                    } else if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                        } else {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                i += 1;
            }
            b'$' if i == 0 || !ident(b[i - 1]) => {
                let mut j = i + 1;
                if b.get(j).is_some_and(|c| c.is_ascii_digit()) {
                    return Err(
                        "positional parameters (`$1`) are not supported: use :partition_key, :partition_keys, :partition_start, :partition_end or :run_id".into(),
                    );
                }
                while j < b.len() && ident(b[j]) {
                    j += 1;
                }
                if b.get(j) == Some(&b'$') {
                    // A dollar-quoted string: up to the same tag.
                    let tag = &query[i..=j];
                    match query[j + 1..].find(tag) {
                        Some(end) => i = j + 1 + end + tag.len(),
                        None => i = b.len(),
                    }
                } else {
                    i = j;
                }
            }
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' if i == 0 || b[i - 1] != b':' => {
                let mut j = i + 1;
                while j < b.len() && ident(b[j]) {
                    j += 1;
                }
                if let Some(name) = PARAMS.iter().find(|p| **p == &query[i + 1..j]) {
                    let n = match names.iter().position(|x| x == name) {
                        Some(n) => n,
                        None => {
                            names.push(name);
                            names.len() - 1
                        }
                    };
                    out.push_str(&query[copied..i]);
                    out.push_str(&format!("${}", n + 1));
                    copied = j;
                }
                i = j.max(i + 1);
            }
            c if ident(c) => {
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&query[copied.min(query.len())..]);
    Ok((out, names))
}

/// The value dg binds for parameter `name`.
pub fn param_value<'p>(params: &'p Params, name: &str) -> Option<&'p str> {
    match name {
        "partition_key" => params.partition_key.as_deref(),
        "partition_keys" => params.partition_keys.as_deref(),
        "partition_start" => params.partition_start.as_deref(),
        "partition_end" => params.partition_end.as_deref(),
        _ => Some(params.run_id.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::statement_text;

    #[test]
    fn named_parameters_become_positional_outside_literals() {
        use super::to_positional;
        let (q, n) = to_positional(
            "SELECT :partition_key, ':run_id', \":run_id\", x::text, E'\\':run_id', $t$:run_id$t$ -- :run_id\n, :run_id, :partition_key /* :x /* :y */ */",
        )
        .unwrap();
        assert_eq!(
            q,
            "SELECT $1, ':run_id', \":run_id\", x::text, E'\\':run_id', $t$:run_id$t$ -- :run_id\n, $2, $1 /* :x /* :y */ */"
        );
        assert_eq!(n, vec!["partition_key", "run_id"]);
        assert_eq!(to_positional("SELECT a[1:2], :other").unwrap().1.len(), 0);
        assert!(to_positional("SELECT $1").is_err());
        assert_eq!(
            to_positional("SELECT :partition_keyx, :run_id").unwrap().0,
            "SELECT :partition_keyx, $1"
        );
    }

    #[test]
    fn trailing_semicolons_and_comments_are_cut() {
        assert_eq!(statement_text("SELECT 1"), "SELECT 1");
        assert_eq!(statement_text("SELECT 1 ;  -- done\n"), "SELECT 1");
        assert_eq!(statement_text("SELECT 1; /* a; b */ ;"), "SELECT 1");
        assert_eq!(statement_text("SELECT ';--' AS x;"), "SELECT ';--' AS x");
        assert_eq!(
            statement_text("SELECT \"a;\" FROM t -- c"),
            "SELECT \"a;\" FROM t"
        );
        assert_eq!(statement_text("SELECT 'é';"), "SELECT 'é'");
    }
}
