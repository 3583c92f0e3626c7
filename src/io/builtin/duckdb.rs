//! `type = "duckdb"`: one table per asset in a DuckDB database file, with
//! the semantics of the `sqlite` manager ([`crate::io::sqlite`]).
//!
//! - The table is `"<schema>"."<asset key segments joined by __>"`, always
//!   quoted; the schema (default `main`) is created when it is missing.
//! - A partitioned asset's table has a `dg_partition VARCHAR NOT NULL`
//!   column. [`handle_output`](IoManager::handle_output) replaces that
//!   partition's rows in one transaction (`DELETE … WHERE dg_partition = $1`,
//!   then the new rows); an unpartitioned asset replaces its whole table.
//!   The partition key is always a bound parameter, never SQL text.
//! - Columns get DuckDB's own types ([`duck_type`]): `BIGINT`, `DOUBLE`,
//!   `VARCHAR`, `BOOLEAN`, `DATE`, `TIMESTAMP WITH TIME ZONE`, … Text is
//!   stored as `VARCHAR` as it is (`02134` and `True` stay text). A changed
//!   output schema is an error naming the differences, unless
//!   `replace_on_schema_change = true`.
//! - Rows go in through DuckDB's appender (Arrow batches, no SQL text per
//!   row) into a temporary table, then `INSERT … SELECT` into the asset's
//!   table, inside the transaction.
//! - [`load_input`](IoManager::load_input) reads the mapped partitions in
//!   partition order from one snapshot, each in `rowid` (write) order, as
//!   Arrow straight from DuckDB.
//!
//! DuckDB lets one process at a time open a database file for writing. A
//! run opens each file once (one DuckDB instance per file, shared by every
//! resource that names it) while a step uses it and closes it when no step
//! does; another process that holds the file is waited for, up to
//! [`BUSY_TIMEOUT`]. Writes of one process are serialised by a lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use arrow::array::Array;
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use duckdb::Connection;

use super::db::{
    self, Column, PARTITION_COLUMN, STORED_TABLE, TableManager, TableTx, quote_ident, table_name,
};
use crate::io::{
    Data, DuckdbConfig, InputContext, IoManager, IoManagerFactory, Loaded, OutputContext,
    ResourceCx, Stored, Table,
};

/// How long opening a database waits for another process that holds it.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(300);

/// The temporary table rows are appended to before they go into the
/// asset's table.
const STAGE: &str = "dg_stage";

/// The temporary table of an in-database query's result.
pub(crate) const RESULT_TABLE: &str = "dg_result";

impl IoManagerFactory for DuckdbConfig {
    fn create_io_manager(self, cx: &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>> {
        Ok(Arc::new(DuckdbManager::new(self, cx)?))
    }
}

/// The DuckDB column type an Arrow type is stored as (as DuckDB spells it
/// in `duckdb_columns()`), if it can be.
pub fn duck_type(t: &DataType) -> Option<String> {
    use DataType::*;
    Some(
        match t {
            Boolean => "BOOLEAN",
            Int8 | Int16 | Int32 | UInt8 | UInt16 => "INTEGER",
            Int64 | UInt32 => "BIGINT",
            UInt64 => "UBIGINT",
            Float16 | Float32 | Float64 | Decimal256(..) => "DOUBLE",
            Decimal128(p, s) if *p <= 38 && *s >= 0 => return Some(format!("DECIMAL({p},{s})")),
            Decimal128(..) => "DOUBLE",
            Utf8 | LargeUtf8 | Utf8View | Null => "VARCHAR",
            Date32 | Date64 => "DATE",
            Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE",
            Timestamp(_, None) => "TIMESTAMP",
            Time32(_) | Time64(_) => "TIME",
            Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => "BLOB",
            _ => return None,
        }
        .to_string(),
    )
}

/// The Arrow type that DuckDB's appender takes for a column declared
/// `duck` (one of [`duck_type`]'s answers).
pub(crate) fn append_type(duck: &str) -> DataType {
    match duck {
        "BOOLEAN" => DataType::Boolean,
        "INTEGER" => DataType::Int32,
        "BIGINT" => DataType::Int64,
        "UBIGINT" => DataType::UInt64,
        "DOUBLE" => DataType::Float64,
        "DATE" => DataType::Date32,
        "TIMESTAMP WITH TIME ZONE" => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
        }
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "TIME" => DataType::Time64(TimeUnit::Microsecond),
        "BLOB" => DataType::Binary,
        d if d.starts_with("DECIMAL(") => {
            let inner = &d["DECIMAL(".len()..d.len() - 1];
            let (p, s) = inner.split_once(',').unwrap_or(("38", "0"));
            DataType::Decimal128(
                p.trim().parse().unwrap_or(38),
                s.trim().parse().unwrap_or(0),
            )
        }
        _ => DataType::Utf8,
    }
}

/// `t`'s columns as the types DuckDB reads them back in everywhere else in
/// dg: a time zone's instant as `+00:00`, a `HUGEINT` (a `DECIMAL(38,0)` in
/// Arrow, what `sum` of integers gives) as Int64 when every value fits.
pub(crate) fn normalize(batch: RecordBatch) -> anyhow::Result<RecordBatch> {
    let mut changed = false;
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut cols = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let want = match c.data_type() {
            DataType::Timestamp(u, Some(tz)) if tz.as_ref() != "+00:00" => {
                Some(DataType::Timestamp(*u, Some("+00:00".into())))
            }
            DataType::Decimal128(_, 0) => {
                let strict = CastOptions {
                    safe: false,
                    ..Default::default()
                };
                match arrow::compute::cast_with_options(c, &DataType::Int64, &strict) {
                    Ok(a) => {
                        changed = true;
                        fields.push(Field::new(f.name(), DataType::Int64, true));
                        cols.push(a);
                        continue;
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        match want {
            Some(t) => {
                changed = true;
                cols.push(arrow::compute::cast(c, &t)?);
                fields.push(Field::new(f.name(), t, true));
            }
            None => {
                cols.push(c.clone());
                fields.push(Field::new(f.name(), c.data_type().clone(), true));
            }
        }
    }
    if !changed {
        return Ok(batch);
    }
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        cols,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

/// A database file open in this process: one DuckDB instance (opening the
/// same file twice in one process would make two), shared by every manager
/// that names the file, and the lock its writers take.
pub(crate) struct OpenDb {
    root: Mutex<Connection>,
    pub(crate) write: Mutex<()>,
}

/// The files open in this process, by canonical path.
fn open_files() -> &'static Mutex<HashMap<PathBuf, Weak<OpenDb>>> {
    static OPEN: std::sync::OnceLock<Mutex<HashMap<PathBuf, Weak<OpenDb>>>> =
        std::sync::OnceLock::new();
    OPEN.get_or_init(|| Mutex::new(HashMap::new()))
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether DuckDB refused the file because another process holds it.
fn is_lock_conflict(e: &duckdb::Error) -> bool {
    let s = e.to_string();
    s.contains("Could not set lock") || s.contains("Conflicting lock")
}

/// A connection of its own to an open database; the database stays open
/// while one exists.
pub(crate) struct Conn {
    // Declared first, dropped first: the connection before the database.
    pub(crate) conn: Connection,
    pub(crate) db: Arc<OpenDb>,
}

impl std::ops::Deref for Conn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// The `duckdb` I/O manager of one run.
pub struct DuckdbManager {
    pub(crate) path: PathBuf,
    pub(crate) schema: String,
    pub(crate) replace_on_schema_change: bool,
    pub(crate) resource_key: String,
}

impl DuckdbManager {
    /// The manager for `config`, its `path` resolved against the project
    /// root. Nothing is opened yet.
    pub fn new(config: DuckdbConfig, cx: &ResourceCx) -> anyhow::Result<Self> {
        let key = &cx.resource_key;
        if config.path.trim().is_empty() {
            bail!("resource `{key}`: `path` is empty");
        }
        if config.schema.is_empty() {
            bail!("resource `{key}`: `schema` is empty");
        }
        Ok(DuckdbManager {
            path: cx.project_root.join(&config.path),
            schema: config.schema,
            replace_on_schema_change: config.replace_on_schema_change,
            resource_key: key.clone(),
        })
    }

    /// The resource key the manager was created for.
    pub fn resource_key(&self) -> &str {
        &self.resource_key
    }

    /// Whether `other` stores its tables in the same place: the same file
    /// and schema.
    pub fn same_place(&self, other: &DuckdbManager) -> bool {
        self.schema == other.schema
            && (self.path == other.path
                || matches!(
                    (std::fs::canonicalize(&self.path), std::fs::canonicalize(&other.path)),
                    (Ok(a), Ok(b)) if a == b
                ))
    }

    /// Where the tables are, as it may be shown.
    pub fn where_(&self) -> String {
        if self.schema == "main" {
            format!("duckdb:{}", self.path.display())
        } else {
            format!("duckdb:{} (schema `{}`)", self.path.display(), self.schema)
        }
    }

    pub(crate) fn place(&self, table: &str) -> String {
        if self.schema == "main" {
            format!("table `{table}` in `{}`", self.path.display())
        } else {
            format!(
                "table `{}.{table}` in `{}`",
                self.schema,
                self.path.display()
            )
        }
    }

    pub(crate) fn qualified(&self, table: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(table))
    }

    /// A connection to the database; `None` when the file does not exist
    /// and `create` is false.
    pub(crate) fn conn(&self, create: bool) -> anyhow::Result<Option<Conn>> {
        if !create && !self.path.is_file() {
            return Ok(None);
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        let key = match (self.path.parent(), self.path.file_name()) {
            (Some(dir), Some(name)) => std::fs::canonicalize(dir)
                .map(|d| d.join(name))
                .unwrap_or_else(|_| self.path.clone()),
            _ => self.path.clone(),
        };
        let mut open = lock(open_files());
        open.retain(|_, w| w.strong_count() > 0);
        let db = match open.get(&key).and_then(Weak::upgrade) {
            Some(db) => db,
            None => {
                let conn = open_file(&self.path)?;
                let db = Arc::new(OpenDb {
                    root: Mutex::new(conn),
                    write: Mutex::new(()),
                });
                open.insert(key, Arc::downgrade(&db));
                db
            }
        };
        drop(open);
        let conn = lock(&db.root)
            .try_clone()
            .with_context(|| format!("cannot connect to `{}`", self.path.display()))?;
        Ok(Some(Conn { db, conn }))
    }

    pub(crate) fn ensure_schema(&self, conn: &Connection) -> anyhow::Result<()> {
        conn.execute_batch(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE IF NOT EXISTS {} (\"table\" VARCHAR NOT NULL, \
             \"partition\" VARCHAR NOT NULL, \"rows\" BIGINT NOT NULL, PRIMARY KEY (\"table\", \"partition\"))",
            quote_ident(&self.schema),
            self.qualified(STORED_TABLE)
        ))
        .with_context(|| format!("cannot create the schema `{}`", self.schema))
    }

    /// The declared columns of a table (or view) of the manager's schema,
    /// or `None` when there is none.
    pub(crate) fn table_columns(
        &self,
        conn: &Connection,
        table: &str,
    ) -> anyhow::Result<Option<Vec<Column>>> {
        columns_of(conn, None, &self.schema, table)
    }

    /// The manager's database on `conn`, as the shared core drives it.
    pub(crate) fn tx<'a>(&'a self, conn: &'a Connection) -> DuckTx<'a> {
        DuckTx {
            conn,
            manager: self,
        }
    }

    /// Runs `f` in one transaction (the schema created first when
    /// missing), this process's writers queued first; committed when `f`
    /// succeeds: on any error nothing changes.
    fn write<T>(
        &self,
        table: &str,
        f: impl FnOnce(&mut DuckTx<'_>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut conn = self.conn(true)?.expect("created");
        let db = conn.db.clone();
        let _guard = lock(&db.write);
        let tx = conn
            .transaction()
            .with_context(|| format!("cannot start a transaction on `{}`", self.path.display()))?;
        self.ensure_schema(&tx)?;
        let out = f(&mut self.tx(&tx))?;
        tx.commit()
            .with_context(|| format!("cannot commit to {}", self.place(table)))?;
        Ok(out)
    }

    /// Makes the asset's table ready to receive rows of `wanted` columns
    /// for `ctx.partition` inside the open transaction on `conn`
    /// ([`db::prepare_target`]).
    pub(crate) fn prepare_target(
        &self,
        conn: &Connection,
        ctx: &OutputContext,
        wanted: &[Column],
        all_null: &[bool],
    ) -> anyhow::Result<()> {
        db::prepare_output(
            &mut self.tx(conn),
            ctx,
            &self.resource_key,
            self.replace_on_schema_change,
            wanted,
            all_null,
        )?;
        Ok(())
    }

    /// The rows of one partition (or of the whole table), without
    /// `dg_partition`, as DuckDB gives them, in `rowid` (write) order.
    fn read(
        &self,
        conn: &Connection,
        asset_key: &str,
        partition: Option<&str>,
    ) -> anyhow::Result<Table> {
        db::read(
            &mut self.tx(conn),
            asset_key,
            partition,
            |_, columns, name| {
                let select = columns
                    .iter()
                    .map(|c| quote_ident(&c.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = db::select_rows(&select, &self.qualified(name), partition, "$1", "rowid");
                let mut stmt = conn.prepare(&sql)?;
                let values: Vec<Option<String>> =
                    partition.map(|k| Some(k.to_string())).into_iter().collect();
                query_table(&mut stmt, &values)
                    .map_err(|e| anyhow!("{}: {}", self.place(name), describe(&e, &sql)))
            },
        )
    }
}

impl TableManager for DuckdbManager {
    const KIND: &'static str = "duckdb";

    fn place(&self, table: &str) -> String {
        DuckdbManager::place(self, table)
    }

    fn stored_path(&self, table: &str) -> String {
        format!("duckdb:{}#{}.{table}", self.path.display(), self.schema)
    }

    fn column_type(&self, f: &Field) -> anyhow::Result<String> {
        duck_type(f.data_type()).ok_or_else(|| {
            db::cannot_store(
                Self::KIND,
                f.name(),
                f.data_type(),
                Some("integers, floats, decimals, text, booleans, dates, times, timestamps and binary"),
            )
        })
    }

    fn store_nothing(&self, table: &str, partition: Option<&str>) -> anyhow::Result<u64> {
        self.write(table, |tx| db::store_nothing(tx, table, partition))
    }

    fn store_rows(&self, ctx: &OutputContext, t: &Table, cols: &[Column]) -> anyhow::Result<u64> {
        let name = table_name(&ctx.asset_key);
        let partition = db::partition_key(ctx);
        // Convert every column before touching the database.
        let stage_schema = Arc::new(Schema::new(
            cols.iter()
                .map(|c| Field::new(&c.name, append_type(&c.ty), true))
                .collect::<Vec<_>>(),
        ));
        let mut batches = Vec::with_capacity(t.batches.len());
        for b in &t.batches {
            batches.push(cast_batch(b, &stage_schema)?);
        }
        let all_null = db::all_null(t);
        self.write(&name, |tx| {
            self.prepare_target(tx.conn, ctx, cols, &all_null)?;
            let rows = append_rows(tx.conn, &stage_schema, &batches)
                .with_context(|| format!("cannot append rows for {}", self.place(&name)))?;
            let stage = format!("temp.main.{}", quote_ident(STAGE));
            let inserted = insert_from(tx.conn, &self.qualified(&name), cols, &stage, partition)
                .with_context(|| format!("cannot insert into {}", self.place(&name)))?;
            debug_assert_eq!(inserted as u64, rows);
            tx.batch(&format!("DROP TABLE {stage}"))?;
            tx.record_stored(&name, partition, rows)?;
            Ok(rows)
        })
    }
}

/// Inserts the rows of `from` (the table's `columns`, no `dg_partition`)
/// into `qualified`, in `rowid` order, with the partition key (a bound
/// parameter) when there is one. Returns the rows inserted.
pub(crate) fn insert_from(
    conn: &Connection,
    qualified: &str,
    columns: &[Column],
    from: &str,
    partition: Option<&str>,
) -> Result<usize, duckdb::Error> {
    let cols = columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    match partition {
        Some(key) => conn.execute(
            &format!(
                "INSERT INTO {qualified} ({}, {cols}) SELECT $1, {cols} FROM {from} ORDER BY rowid",
                quote_ident(PARTITION_COLUMN),
            ),
            [key],
        ),
        None => conn.execute(
            &format!("INSERT INTO {qualified} ({cols}) SELECT {cols} FROM {from} ORDER BY rowid"),
            [],
        ),
    }
}

/// The manager's database on one connection (or inside its open
/// transaction), as the shared core ([`db`]) drives it.
pub(crate) struct DuckTx<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) manager: &'a DuckdbManager,
}

impl TableTx for DuckTx<'_> {
    const PARAMS: [&'static str; 3] = ["$1", "$2", "$3"];
    const PARTITION_TYPE: &'static str = "VARCHAR";

    fn qualified(&self, table: &str) -> String {
        self.manager.qualified(table)
    }

    fn place(&self, table: &str) -> String {
        self.manager.place(table)
    }

    fn columns(&mut self, table: &str) -> anyhow::Result<Option<Vec<Column>>> {
        self.manager.table_columns(self.conn, table)
    }

    fn batch(&mut self, sql: &str) -> anyhow::Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }

    fn execute(&mut self, sql: &str, params: &[&str]) -> anyhow::Result<u64> {
        Ok(self.conn.execute(sql, duckdb::params_from_iter(params))? as u64)
    }

    fn query_int(&mut self, sql: &str, params: &[&str]) -> anyhow::Result<Option<i64>> {
        let mut stmt = self.conn.prepare(sql)?;
        let mut rows = stmt.query(duckdb::params_from_iter(params))?;
        Ok(match rows.next()? {
            Some(r) => Some(r.get(0)?),
            None => None,
        })
    }

    fn query_flag(&mut self, sql: &str, params: &[&str]) -> anyhow::Result<bool> {
        let mut stmt = self.conn.prepare(sql)?;
        Ok(stmt.query_row(duckdb::params_from_iter(params), |r| r.get(0))?)
    }

    fn record_stored(&mut self, table: &str, key: Option<&str>, rows: u64) -> anyhow::Result<()> {
        self.conn.execute(
            &format!(
                "INSERT OR REPLACE INTO {} (\"table\", \"partition\", \"rows\") VALUES ($1, $2, $3)",
                self.manager.qualified(STORED_TABLE)
            ),
            duckdb::params![table, key.unwrap_or(""), rows as i64],
        )?;
        Ok(())
    }
}

/// Opens a database file, waiting while another process holds it.
fn open_file(path: &Path) -> anyhow::Result<Connection> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut wait = Duration::from_millis(5);
    loop {
        match Connection::open(path) {
            Ok(c) => return Ok(c),
            Err(e) if is_lock_conflict(&e) && Instant::now() < deadline => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(200));
            }
            Err(e) => {
                return Err(anyhow!(
                    "cannot open the database `{}`: {}",
                    path.display(),
                    first_line(&e.to_string())
                ));
            }
        }
    }
}

pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}

/// The columns of `schema.table` (in catalog `catalog`, or the current
/// database), or `None` when there is no such table or view.
pub(crate) fn columns_of(
    conn: &Connection,
    catalog: Option<&str>,
    schema: &str,
    table: &str,
) -> anyhow::Result<Option<Vec<Column>>> {
    let mut stmt = conn.prepare(
        "SELECT column_name, data_type FROM duckdb_columns() \
         WHERE database_name = coalesce(CAST($1 AS VARCHAR), current_database()) AND schema_name = $2 AND table_name = $3 \
         ORDER BY column_index",
    )?;
    let cols = stmt
        .query_map(duckdb::params![catalog, schema, table], |r| {
            Ok(Column {
                name: r.get(0)?,
                ty: r.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((!cols.is_empty()).then_some(cols))
}

/// `b`'s columns cast (strictly: a value that does not fit is an error) to
/// `schema`'s types.
pub(crate) fn cast_batch(b: &RecordBatch, schema: &Arc<Schema>) -> anyhow::Result<RecordBatch> {
    let mut cols = Vec::with_capacity(b.num_columns());
    for (a, f) in b.columns().iter().zip(schema.fields()) {
        let to = f.data_type();
        cols.push(if a.data_type() == to {
            a.clone()
        } else {
            let a = match a.data_type() {
                // Arrow casts Date64 and Time32 to the other units, not straight across.
                DataType::Date64 => arrow::compute::cast(a, &DataType::Date32)?,
                _ => a.clone(),
            };
            db::cast_strict(&a, to, f.name())?
        });
    }
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        cols,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
    )?)
}

/// Creates the temporary table [`STAGE`] with `schema`'s columns and appends
/// `batches` to it (inside the connection's transaction). Returns the rows.
fn append_rows(
    conn: &Connection,
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
) -> anyhow::Result<u64> {
    create_table_for(conn, &format!("TEMP TABLE {}", quote_ident(STAGE)), schema)?;
    append_to(conn, "temp", STAGE, batches)
}

/// `CREATE what (…)` (`TABLE "t"`, `TEMP TABLE "t"`) with the DuckDB types
/// of `schema`'s columns.
fn create_table_for(conn: &Connection, what: &str, schema: &Schema) -> anyhow::Result<()> {
    let defs = schema
        .fields()
        .iter()
        .map(|f| {
            let ty = duck_type(f.data_type()).ok_or_else(|| {
                anyhow!(
                    "column `{}` has type {}, which DuckDB cannot hold here",
                    f.name(),
                    f.data_type()
                )
            })?;
            Ok(format!("{} {ty}", quote_ident(f.name())))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    conn.execute_batch(&format!("CREATE {what} ({})", defs.join(", ")))?;
    Ok(())
}

/// Appends `batches` (whose types are [`append_type`]s of the table's) to
/// `catalog.main.table`.
fn append_to(
    conn: &Connection,
    catalog: &str,
    table: &str,
    batches: &[RecordBatch],
) -> anyhow::Result<u64> {
    let mut app = conn.appender_to_catalog_and_db(table, catalog, "main")?;
    let mut rows = 0u64;
    for b in batches {
        if b.num_rows() == 0 {
            continue;
        }
        rows += b.num_rows() as u64;
        app.append_record_batch(b.clone())?;
    }
    app.flush()?;
    Ok(rows)
}

/// Runs a prepared statement with text parameters (`None`: NULL) and
/// collects its rows as a table.
pub(crate) fn query_table(
    stmt: &mut duckdb::Statement<'_>,
    values: &[Option<String>],
) -> Result<Table, duckdb::Error> {
    stmt.execute(duckdb::params_from_iter(values.iter()))?;
    let mut batches = Vec::new();
    while let Some(s) = stmt.step()? {
        let b = RecordBatch::from(&s);
        batches.push(
            normalize(b).map_err(|e| {
                duckdb::Error::ArrowTypeToDuckdbType(format!("{e:#}"), DataType::Null)
            })?,
        );
    }
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => {
            let raw = stmt.schema();
            let empty = RecordBatch::new_empty(raw);
            normalize(empty)
                .map_err(|e| {
                    duckdb::Error::ArrowTypeToDuckdbType(format!("{e:#}"), DataType::Null)
                })?
                .schema()
        }
    };
    Ok(Table { schema, batches })
}

/// One line for a DuckDB error: its message, and the line of the query it
/// points at (DuckDB's `LINE n:`), when the query has several.
pub(crate) fn describe(e: &duckdb::Error, query: &str) -> String {
    let s = match e {
        duckdb::Error::DuckDBFailure(_, Some(msg)) => msg.clone(),
        other => other.to_string(),
    };
    let mut out = first_line(&s).to_string();
    if query.contains('\n')
        && let Some(rest) = s.split("LINE ").nth(1)
        && let Some((n, _)) = rest.split_once(':')
        && n.trim().parse::<usize>().is_ok()
    {
        out.push_str(&format!(" (line {} of the query)", n.trim()));
    }
    out
}

impl IoManager for DuckdbManager {
    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        db::handle_output(self, ctx, data)
    }

    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        let Some(mut conn) = self.conn(false)? else {
            bail!(
                "the database `{}` does not exist: materialize `{}` first",
                self.path.display(),
                ctx.upstream_output.asset_key
            );
        };
        // One transaction: every partition from the same snapshot.
        let tx = conn.transaction()?;
        let loaded = ctx.load_each(|out| {
            let key = db::partition_key(out);
            Ok(Data::Table(Arc::new(self.read(
                &tx,
                &out.asset_key,
                key,
            )?)))
        });
        let _ = tx.commit();
        loaded
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        let Some(conn) = self.conn(false)? else {
            return Ok(false);
        };
        db::exists(&mut self.tx(&conn), &ctx.asset_key, db::partition_key(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::db::testing;
    use super::*;

    fn manager(dir: &Path) -> DuckdbManager {
        let config = DuckdbConfig {
            path: "w.duckdb".into(),
            schema: "main".into(),
            replace_on_schema_change: false,
        };
        DuckdbManager::new(config, &testing::cx(dir)).unwrap()
    }

    /// A failure inside the transaction, after the partition's rows were
    /// deleted and the new ones appended, rolls both back.
    #[test]
    fn a_failure_inside_the_transaction_changes_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        let m = manager(dir.path());
        {
            let conn = m.conn(true).unwrap().unwrap();
            conn.execute_batch(
                "CREATE TABLE t (dg_partition VARCHAR NOT NULL, v BIGINT CHECK (v < 100))",
            )
            .unwrap();
        }
        testing::a_failure_changes_nothing(&m, || {
            let conn = m.conn(false).unwrap().unwrap();
            let mut stmt = conn.prepare("SELECT v FROM t ORDER BY rowid").unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        });
    }

    /// Two managers of the same file share one DuckDB instance, and it is
    /// closed (the file free for another process) when neither uses it.
    #[test]
    fn one_instance_per_file_while_in_use() {
        let dir = tempfile::TempDir::new().unwrap();
        let a = manager(dir.path());
        let b = manager(dir.path());
        let ca = a.conn(true).unwrap().unwrap();
        let cb = b.conn(true).unwrap().unwrap();
        assert!(Arc::ptr_eq(&ca.db, &cb.db));
        let weak = Arc::downgrade(&ca.db);
        drop((ca, cb));
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn types_round_trip_through_the_appender() {
        for t in [
            DataType::Int32,
            DataType::Int64,
            DataType::UInt64,
            DataType::Float64,
            DataType::Utf8,
            DataType::Boolean,
            DataType::Date32,
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            DataType::Time64(TimeUnit::Microsecond),
            DataType::Binary,
            DataType::Decimal128(10, 2),
        ] {
            let duck = duck_type(&t).unwrap();
            assert_eq!(append_type(&duck), t, "{duck}");
        }
    }
}
