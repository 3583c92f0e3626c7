//! The embedded engines: an in-memory SQLite (or DuckDB) database per
//! query, loaded with the inputs' rows. Also the conversions between Arrow
//! and SQLite values that the SQLite in-database engine shares.

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

use super::text::cut_text;
use super::{
    CheckError, CheckRows, PARAMS, ParamError, Params, QueryError, RunError, SqlEngine, SqlInput,
    quote_ident,
};
use crate::io::{Data, Format, Loaded, Table, table};

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
) -> Result<Ran, RunError> {
    let refuse = |message: &str| RunError::Asset {
        asset: asset_key.to_string(),
        message: message.to_string(),
    };
    if format == Format::File {
        return Err(refuse(
            "a `sql` asset produces a table; its format cannot be `file` (use csv, jsonl or parquet)",
        ));
    }
    let job = Job {
        asset_key,
        query,
        inputs,
        params,
        format,
        output,
    };
    match engine {
        SqlEngine::Sqlite => run_sqlite(&job, log),
        #[cfg(feature = "duckdb")]
        SqlEngine::Duckdb => run_duckdb(&job, log),
        #[cfg(not(feature = "duckdb"))]
        SqlEngine::Duckdb => Err(refuse(
            "this dg was built without DuckDB (the `duckdb` cargo feature)",
        )),
    }
}

/// What [`run`] was asked.
struct Job<'a> {
    asset_key: &'a str,
    query: &'a str,
    inputs: &'a [SqlInput],
    params: &'a Params,
    format: Format,
    output: &'a Path,
}

/// [`run`] in an in-memory DuckDB database.
#[cfg(feature = "duckdb")]
fn run_duckdb(job: &Job<'_>, log: &mut File) -> Result<Ran, RunError> {
    let (asset_key, query) = (job.asset_key, job.query);
    let engine = super::duckdb::Embedded::open()?;
    // `input.column` of every text column, for the hint below.
    let mut text_columns: Vec<String> = Vec::new();
    let (rows_loaded, empty) = load_inputs(job.inputs, log, "DuckDB", |input, table| {
        text_columns.extend(
            table
                .schema
                .fields()
                .iter()
                .filter(|f| {
                    matches!(
                        f.data_type(),
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    )
                })
                .map(|f| format!("{}.{}", input.name, f.name())),
        );
        engine.load(&input.name, table)
    })?;
    let _ = writeln!(
        log,
        "[dg] sql: running in the embedded DuckDB engine\n{query}"
    );
    let t0 = Instant::now();
    let table = engine.query(query, job.params).map_err(|error| {
        let msg = error.to_string();
        let mut note = String::new();
        for name in &empty {
            if msg.contains(&format!("Table with name {name} does not exist")) {
                note.push_str(&empty_note(name));
            }
        }
        if msg.contains("VARCHAR") && !text_columns.is_empty() {
            note.push_str(&text_hint(&text_columns));
        }
        query_failed(asset_key, error, note, log)
    })?;
    write_result(&table, t0, " (DuckDB)", job, log)?;
    Ok(Ran { rows_loaded })
}

/// Why a DuckDB type error may name text: dg keeps a column as text unless
/// every value prints back as itself (`0.50` does not as a number), and
/// DuckDB, unlike SQLite, does not turn text into numbers by itself.
#[cfg(feature = "duckdb")]
fn text_hint(text_columns: &[String]) -> String {
    let shown: Vec<String> = text_columns
        .iter()
        .take(6)
        .map(|c| format!("`{c}`"))
        .collect();
    let more = text_columns.len().saturating_sub(shown.len());
    let example = text_columns[0]
        .split_once('.')
        .map_or(text_columns[0].as_str(), |(_, c)| c);
    format!(
        " (help: these input columns are text (VARCHAR): {}{}; dg keeps a column as text unless every value prints back as itself, as `0.50` would not as a number, and DuckDB does not convert text to numbers by itself: declare the type on the upstream asset, e.g. `columns = {{ {example} = \"float64\" }}`, or CAST in the query)",
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

/// [`run`] in an in-memory SQLite database.
fn run_sqlite(job: &Job<'_>, log: &mut File) -> Result<Ran, RunError> {
    let (asset_key, query) = (job.asset_key, job.query);
    let conn = Connection::open_in_memory()
        .map_err(|e| RunError::Engine(format!("cannot open the embedded SQLite engine: {e}")))?;
    let _ = conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY;",
    );

    let (rows_loaded, empty) = load_inputs(job.inputs, log, "SQLite", |input, table| {
        load_table(&conn, &input.name, table).map(|rows| rows as u64)
    })?;

    // The query.
    let _ = writeln!(log, "[dg] sql: running\n{query}");
    let t0 = Instant::now();
    let table = query_table(&conn, query, job.params).map_err(|error| {
        let mut note = String::new();
        for name in &empty {
            if error.to_string() == format!("no such table: {name}") {
                note.push_str(&empty_note(name));
            }
        }
        query_failed(asset_key, error, note, log)
    })?;
    write_result(&table, t0, "", job, log)?;
    Ok(Ran { rows_loaded })
}

/// Logs the query's result (`t0`: when the query started; `engine`: a note
/// after the timing) and writes it to the step's output.
fn write_result(
    table: &Table,
    t0: Instant,
    engine: &str,
    job: &Job<'_>,
    log: &mut File,
) -> Result<(), RunError> {
    let _ = writeln!(
        log,
        "[dg] sql: {} rows, {} columns in {} ms{engine}",
        table.num_rows(),
        table.schema.fields().len(),
        t0.elapsed().as_millis()
    );
    let t0 = Instant::now();
    table::write(table, job.output, job.format).map_err(|e| RunError::Write(format!("{e:#}")))?;
    let _ = writeln!(
        log,
        "[dg] sql: wrote the result as {} in {} ms",
        job.format.name(),
        t0.elapsed().as_millis()
    );
    Ok(())
}

/// Loads every input into `engine` (`SQLite`, `DuckDB`) with `load`
/// (which returns the rows loaded), logging each. An input with no columns
/// gets no table. Returns the rows loaded and the names of the inputs
/// without a table.
fn load_inputs<'i>(
    inputs: &'i [SqlInput],
    log: &mut File,
    engine: &str,
    mut load: impl FnMut(&SqlInput, &Table) -> anyhow::Result<u64>,
) -> Result<(u64, Vec<&'i str>), RunError> {
    // The embedded SQLite engine is the default: its log lines name no engine.
    let note = if engine == "SQLite" {
        String::new()
    } else {
        format!(" ({engine})")
    };
    let mut empty = Vec::new();
    let mut rows_loaded = 0u64;
    for input in inputs {
        let t0 = Instant::now();
        let failed = |message: String| RunError::Input {
            input: input.name.clone(),
            message,
        };
        let table = input_table(&input.loaded).map_err(|e| failed(format!("{e:#}")))?;
        if table.schema.fields().is_empty() {
            empty.push(input.name.as_str());
            let _ = writeln!(
                log,
                "[dg] sql: input `{}` is empty (no columns): no table is created",
                input.name
            );
            continue;
        }
        let rows = load(input, &table)
            .map_err(|e| failed(format!("cannot load it into {engine}: {e:#}")))?;
        rows_loaded += rows;
        let _ = writeln!(
            log,
            "[dg] sql: loaded input `{}` as table {}{note}: {rows} rows in {} ms",
            input.name,
            quote_ident(&input.name),
            t0.elapsed().as_millis()
        );
    }
    Ok((rows_loaded, empty))
}

/// Why a query may not find input `name`'s table.
fn empty_note(name: &str) -> String {
    format!(" (input `{name}` is empty: it has no rows and no columns, so no table was created)")
}

/// The error of a failed query, also written to the step's log.
fn query_failed(asset: &str, error: QueryError, note: String, log: &mut File) -> RunError {
    let e = RunError::Query {
        asset: asset.to_string(),
        error,
        note,
    };
    let _ = writeln!(log, "[dg] {e}");
    e
}

/// What [`run`] did.
#[derive(Debug, Clone, Copy)]
pub struct Ran {
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

/// One line for a SQLite error: SQLite's message, and where in the query.
pub(super) fn describe(e: &rusqlite::Error, query: &str) -> String {
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
pub fn prepare<'c>(
    conn: &'c Connection,
    query: &str,
) -> Result<rusqlite::Statement<'c>, QueryError> {
    let stmt = conn
        .prepare(query)
        .map_err(|e| QueryError::Engine(describe(&e, query)))?;
    check_params(&stmt)?;
    if stmt.column_count() == 0 {
        return Err(QueryError::NoColumns);
    }
    Ok(stmt)
}

fn check_params(stmt: &rusqlite::Statement) -> Result<(), ParamError> {
    for i in 1..=stmt.parameter_count() {
        match stmt.parameter_name(i) {
            None => return Err(ParamError::Positional("?")),
            Some(n) if !PARAMS.contains(&&n[1..]) => {
                return Err(ParamError::Unknown(n.to_string()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Binds dg's parameters, by name, to a statement that [`prepare`] accepted.
pub(super) fn bind_params(
    stmt: &mut rusqlite::Statement<'_>,
    params: &Params,
) -> rusqlite::Result<()> {
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
    let mut stmt = prepare(conn, query)?;
    let engine = |e: rusqlite::Error| QueryError::Engine(describe(&e, query));
    bind_params(&mut stmt, params).map_err(engine)?;
    let names: Vec<String> = stmt.column_names().map(String::from).collect();
    let decls: Vec<Option<String>> = stmt
        .columns()
        .map(|c| c.decl_type().map(|s| s.to_ascii_uppercase()))
        .collect();
    let mut cols: Vec<Buf> = names.iter().map(|_| Buf::Null(0)).collect();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next().map_err(engine)? {
        for (i, c) in cols.iter_mut().enumerate() {
            c.push(row.get_ref(i).map_err(engine)?);
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
                .map_err(|e| QueryError::Engine(e.to_string()))?,
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

pub(super) fn value_text(v: ValueRef) -> String {
    match v {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => real_text(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    }
}

/// The Arrow type for a declared SQLite type, after SQLite's affinity rules.
pub(super) fn affinity(decl: &str) -> DataType {
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

/// The longest first row shown in a check's message, in bytes.
const FIRST_ROW_MAX: usize = 300;

/// Counts the rows of a prepared, bound statement, keeping the first.
pub(super) fn count_rows(stmt: &mut rusqlite::Statement<'_>) -> rusqlite::Result<CheckRows> {
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
) -> Result<CheckRows, CheckError> {
    let conn = Connection::open_in_memory().map_err(|e| {
        CheckError::Database(format!("cannot open the embedded SQLite engine: {e}"))
    })?;
    let t = input_table(loaded)
        .map_err(|e| CheckError::Database(format!("cannot read the stored data: {e:#}")))?;
    if !t.schema.fields().is_empty() {
        load_table(&conn, table, &t).map_err(|e| {
            CheckError::Database(format!("cannot load the stored data into SQLite: {e}"))
        })?;
    }
    let engine = |e: rusqlite::Error| QueryError::Engine(describe(&e, query));
    let mut stmt = prepare(&conn, query)?;
    bind_params(&mut stmt, params).map_err(engine)?;
    Ok(count_rows(&mut stmt).map_err(engine)?)
}
