//! `type = "sqlite"`: one table per asset in a SQLite database file.
//!
//! - The table is named from the asset key, segments joined by `__`
//!   (`raw/events` → `raw__events`), and is always quoted as an identifier.
//! - A partitioned asset's table has a `dg_partition TEXT NOT NULL` column
//!   (indexed). [`handle_output`](IoManager::handle_output) replaces that
//!   partition's rows in one transaction (`DELETE … WHERE dg_partition = ?`,
//!   then the inserts); an unpartitioned asset replaces its whole table. The
//!   partition key is always a bound parameter, never SQL text.
//! - The table is created on the first write, with the column types of
//!   [`sqlite_type`]. A later output whose columns differ is an error naming
//!   the differences, unless `replace_on_schema_change = true`, which drops
//!   and recreates the table (and so every other partition of it).
//! - [`load_input`](IoManager::load_input) reads each mapped partition in
//!   rowid order (the order it was written in), without `dg_partition`, as
//!   Arrow ([`arrow_type`] from the declared column types); dg writes it in
//!   the reading step's format.
//!
//! Connections are opened per operation, in WAL mode with a busy timeout,
//! so parallel steps (and other processes) read while one writes; writes
//! of one run are serialised by a lock in the manager.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Float64Array,
    Float64Builder, Int64Array, Int64Builder, StringArray, StringBuilder,
};
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::io::{
    Data, InputContext, IoManager, IoManagerFactory, Loaded, OutputContext, ResourceCx,
    SqliteConfig, Stored, Table, table,
};

pub(crate) use super::db::Column;
use super::db::schema_diff;
pub use super::db::{PARTITION_COLUMN, STORED_TABLE, quote_ident, table_name};

/// How long a connection waits for another writer (another process) to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(300);

/// Rows per record batch when loading.
const LOAD_BATCH_ROWS: usize = 8192;

/// Bound parameters per multi-row INSERT (SQLite allows 32766).
const MAX_PARAMS: usize = 30_000;

/// Rows per multi-row INSERT at most.
const MAX_ROWS_PER_INSERT: usize = 256;

impl IoManagerFactory for SqliteConfig {
    fn create_io_manager(self, cx: &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>> {
        Ok(Arc::new(SqliteManager::new(self, cx)?))
    }
}

/// The `sqlite` I/O manager of one run.
pub struct SqliteManager {
    /// The database file (absolute, or relative to the working directory
    /// when the project root is).
    path: PathBuf,
    replace_on_schema_change: bool,
    resource_key: String,
    /// Serialises this run's writers, so that they queue here rather than
    /// poll SQLite's busy handler.
    write_lock: Mutex<()>,
}

/// The SQLite column type an Arrow type is stored as, if it can be.
pub fn sqlite_type(t: &DataType) -> Option<&'static str> {
    use DataType::*;
    Some(match t {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => "INTEGER",
        Boolean => "BOOLEAN",
        Float16 | Float32 | Float64 | Decimal128(..) | Decimal256(..) => "REAL",
        Utf8 | LargeUtf8 | Utf8View | Null => "TEXT",
        Date32 | Date64 | Timestamp(..) | Time32(..) | Time64(..) => "TEXT",
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => "BLOB",
        _ => return None,
    })
}

/// The Arrow type a declared SQLite column type is loaded as (by SQLite's
/// affinity rules, after `BOOL…` → Boolean: `INT…` → Int64, `REAL`/`FLOA`/`DOUB` → Float64, `BLOB` or
/// none → Binary, anything else → Utf8).
pub fn arrow_type(declared: &str) -> DataType {
    let d = declared.to_ascii_uppercase();
    if d.contains("BOOL") {
        DataType::Boolean
    } else if d.contains("INT") {
        DataType::Int64
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        DataType::Utf8
    } else if d.contains("BLOB") || d.is_empty() {
        DataType::Binary
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        DataType::Float64
    } else {
        DataType::Utf8
    }
}

/// One column of an output, converted to what SQLite stores.
enum Col {
    Int(Int64Array),
    Real(Float64Array),
    Text(StringArray),
    Bool(BooleanArray),
    Blob(BinaryArray),
}

impl Col {
    fn from_array(a: &ArrayRef, name: &str) -> anyhow::Result<Col> {
        let strict = CastOptions {
            safe: false,
            ..Default::default()
        };
        let cast = |to: &DataType| {
            arrow::compute::cast_with_options(a, to, &strict).map_err(|e| {
                anyhow!(
                    "column `{name}` ({}) cannot be stored as {to}: {e}",
                    a.data_type()
                )
            })
        };
        let col = match sqlite_type(a.data_type()) {
            _ if a.data_type() == &DataType::Boolean => Col::Bool(
                a.as_any()
                    .downcast_ref::<BooleanArray>()
                    .expect("boolean")
                    .clone(),
            ),
            Some("INTEGER") => Col::Int(downcast::<Int64Array>(&cast(&DataType::Int64)?)),
            Some("REAL") => Col::Real(downcast::<Float64Array>(&cast(&DataType::Float64)?)),
            Some("TEXT") => Col::Text(downcast::<StringArray>(&cast(&DataType::Utf8)?)),
            Some("BLOB") => Col::Blob(downcast::<BinaryArray>(&cast(&DataType::Binary)?)),
            _ => bail!(
                "column `{name}` has type {}, which the sqlite manager cannot store \
                 (integers, floats, text, booleans, dates, timestamps and binary can be)",
                a.data_type()
            ),
        };
        Ok(col)
    }

    fn bind(
        &self,
        stmt: &mut rusqlite::Statement<'_>,
        idx: usize,
        row: usize,
    ) -> rusqlite::Result<()> {
        match self {
            Col::Int(a) if a.is_valid(row) => stmt.raw_bind_parameter(idx, a.value(row)),
            Col::Real(a) if a.is_valid(row) => stmt.raw_bind_parameter(idx, a.value(row)),
            Col::Text(a) if a.is_valid(row) => stmt.raw_bind_parameter(idx, a.value(row)),
            Col::Bool(a) if a.is_valid(row) => stmt.raw_bind_parameter(idx, a.value(row) as i64),
            Col::Blob(a) if a.is_valid(row) => stmt.raw_bind_parameter(idx, a.value(row)),
            _ => stmt.raw_bind_parameter(idx, rusqlite::types::Null),
        }
    }
}

fn downcast<A: Clone + 'static>(a: &ArrayRef) -> A {
    a.as_any()
        .downcast_ref::<A>()
        .expect("cast to the matching type")
        .clone()
}

impl SqliteManager {
    /// The manager for `config`, its `path` resolved against the project root.
    pub fn new(config: SqliteConfig, cx: &ResourceCx) -> anyhow::Result<Self> {
        if config.path.trim().is_empty() {
            bail!("resource `{}`: `path` is empty", cx.resource_key);
        }
        Ok(SqliteManager {
            path: cx.project_root.join(&config.path),
            replace_on_schema_change: config.replace_on_schema_change,
            resource_key: cx.resource_key.clone(),
            write_lock: Mutex::new(()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The resource key the manager was created for.
    pub fn resource_key(&self) -> &str {
        &self.resource_key
    }

    /// Serialises this run's writers to the database.
    pub(crate) fn lock_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn open(&self, write: bool) -> anyhow::Result<Connection> {
        if write && let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        let flags = if write {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)
            .with_context(|| format!("cannot open the database `{}`", self.path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if write {
            conn.pragma_update(None, "journal_mode", "WAL")
                .with_context(|| format!("cannot use WAL mode in `{}`", self.path.display()))?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        Ok(conn)
    }

    pub(crate) fn place(&self, table: &str) -> String {
        format!("table `{table}` in `{}`", self.path.display())
    }

    /// Stores `t` as the asset's table or partition. Runs in one
    /// transaction: on any error nothing changes.
    fn store(&self, ctx: &OutputContext, t: &Table) -> anyhow::Result<u64> {
        let name = table_name(&ctx.asset_key);
        let partition = ctx.partition.as_ref().map(|p| p.key.as_str());
        let fields = t.schema.fields();
        if fields.is_empty() {
            return self.store_nothing(ctx);
        }
        let mut wanted = Vec::with_capacity(fields.len());
        for f in fields {
            if partition.is_some() && f.name() == PARTITION_COLUMN {
                bail!(
                    "the output has a column named `{PARTITION_COLUMN}`, which the sqlite manager \
                     uses for the partition key of a partitioned asset: rename it"
                );
            }
            let ty = sqlite_type(f.data_type()).ok_or_else(|| {
                anyhow!(
                    "column `{}` has type {}, which the sqlite manager cannot store",
                    f.name(),
                    f.data_type()
                )
            })?;
            wanted.push(Column {
                name: f.name().clone(),
                ty: ty.to_string(),
            });
        }
        // Convert every column before touching the database.
        let mut batches = Vec::with_capacity(t.batches.len());
        for b in &t.batches {
            let cols = b
                .columns()
                .iter()
                .zip(fields)
                .map(|(a, f)| Col::from_array(a, f.name()))
                .collect::<anyhow::Result<Vec<Col>>>()?;
            batches.push((b.num_rows(), cols));
        }
        let all_null = super::db::all_null(t);

        let _guard = self.lock_writes();
        let mut conn = self.open(true)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(|| format!("cannot start a transaction on `{}`", self.path.display()))?;
        let quoted = quote_ident(&name);
        self.prepare_target(&tx, ctx, &wanted, &all_null)?;
        let rows = insert_rows(&tx, &quoted, &wanted, partition, &batches)
            .with_context(|| format!("cannot insert into {}", self.place(&name)))?;
        record_stored(&tx, ctx, rows)?;
        tx.commit()
            .with_context(|| format!("cannot commit to {}", self.place(&name)))?;
        Ok(rows)
    }

    /// Stores an output with no columns (an empty file): the partition (or
    /// the whole table) is emptied, and recorded as stored with 0 rows. A
    /// table that does not exist yet is not created: no columns, no types.
    fn store_nothing(&self, ctx: &OutputContext) -> anyhow::Result<u64> {
        let name = table_name(&ctx.asset_key);
        let _guard = self.lock_writes();
        let mut conn = self.open(true)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(|| format!("cannot start a transaction on `{}`", self.path.display()))?;
        if table_columns(&tx, &name)?.is_some() {
            let quoted = quote_ident(&name);
            match &ctx.partition {
                Some(p) => tx.execute(
                    &format!(
                        "DELETE FROM {quoted} WHERE {} = ?1",
                        quote_ident(PARTITION_COLUMN)
                    ),
                    params![p.key],
                )?,
                None => tx.execute(&format!("DELETE FROM {quoted}"), [])?,
            };
        }
        record_stored(&tx, ctx, 0)?;
        tx.commit()
            .with_context(|| format!("cannot commit to {}", self.place(&name)))?;
        Ok(0)
    }

    /// Gives the table's columns that hold no value yet (created from a
    /// header-only or all-empty output, which carries no types) the type
    /// `wanted` has for them, when it has one. Returns whether it did.
    fn retype_empty_columns(
        &self,
        tx: &rusqlite::Transaction<'_>,
        name: &str,
        existing: &[Column],
        wanted: &[Column],
        all_null: &[bool],
    ) -> anyhow::Result<bool> {
        let quoted = quote_ident(name);
        let mut new_types = Vec::new();
        for (i, w) in wanted.iter().enumerate() {
            let Some(c) = existing.iter().find(|c| c.name == w.name) else {
                continue;
            };
            if c.ty == w.ty || all_null[i] {
                continue;
            }
            let has_value: bool = tx.query_row(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {quoted} WHERE {} IS NOT NULL)",
                    quote_ident(&c.name)
                ),
                [],
                |r| r.get(0),
            )?;
            if !has_value {
                new_types.push((c.name.clone(), w.ty.clone()));
            }
        }
        if new_types.is_empty() {
            return Ok(false);
        }
        // SQLite cannot change a column's type: copy into a new table, in
        // rowid order, and put it in the old one's place.
        let defs: Vec<String> = existing
            .iter()
            .map(|c| {
                let ty = new_types
                    .iter()
                    .find(|(n, _)| *n == c.name)
                    .map_or(c.ty.as_str(), |(_, t)| t.as_str());
                let not_null = if c.name == PARTITION_COLUMN {
                    " NOT NULL"
                } else {
                    ""
                };
                format!("{} {ty}{not_null}", quote_ident(&c.name))
            })
            .collect();
        let cols: Vec<String> = existing.iter().map(|c| quote_ident(&c.name)).collect();
        let tmp = quote_ident(&format!("{name}/retype"));
        tx.execute_batch(&format!(
            "CREATE TABLE {tmp} ({defs});
             INSERT INTO {tmp} ({cols}) SELECT {cols} FROM {quoted} ORDER BY rowid;
             DROP TABLE {quoted};
             ALTER TABLE {tmp} RENAME TO {quoted};",
            defs = defs.join(", "),
            cols = cols.join(", "),
        ))?;
        if existing.iter().any(|c| c.name == PARTITION_COLUMN) {
            tx.execute_batch(&format!(
                "CREATE INDEX {} ON {quoted} ({})",
                quote_ident(&format!("{name}__{PARTITION_COLUMN}")),
                quote_ident(PARTITION_COLUMN)
            ))?;
        }
        Ok(true)
    }

    /// Makes the asset's table ready to receive `wanted` rows for
    /// `ctx.partition` inside `tx`: creates it on the first write, applies the
    /// schema-change rule (an error naming the differences, or drop and
    /// recreate with `replace_on_schema_change`), and deletes the rows being
    /// replaced (the partition's, or the whole table's). `all_null[i]` says
    /// that column `i` holds only nulls (it then matches any type).
    pub(crate) fn prepare_target(
        &self,
        tx: &rusqlite::Transaction<'_>,
        ctx: &OutputContext,
        wanted: &[Column],
        all_null: &[bool],
    ) -> anyhow::Result<()> {
        let name = table_name(&ctx.asset_key);
        let partition = ctx.partition.as_ref().map(|p| p.key.as_str());
        let quoted = quote_ident(&name);
        let mut existing = table_columns(tx, &name)?;
        if let Some(cols) = &existing
            && self.retype_empty_columns(tx, &name, cols, wanted, all_null)?
        {
            existing = table_columns(tx, &name)?;
        }
        let mut create = existing.is_none();
        if let Some(existing) = existing {
            let diff = schema_diff(&existing, wanted, partition.is_some(), all_null);
            if !diff.is_empty() {
                crate::io::schema_changed(
                    ctx,
                    &self.place(&name),
                    &diff,
                    &self.resource_key,
                    self.replace_on_schema_change,
                    partition.is_some(),
                )?;
                tx.execute_batch(&format!("DROP TABLE {quoted}"))?;
                create = true;
            }
        }
        if create {
            let mut defs = Vec::with_capacity(wanted.len() + 1);
            if partition.is_some() {
                defs.push(format!("{} TEXT NOT NULL", quote_ident(PARTITION_COLUMN)));
            }
            for c in wanted {
                defs.push(format!("{} {}", quote_ident(&c.name), c.ty));
            }
            tx.execute_batch(&format!("CREATE TABLE {quoted} ({})", defs.join(", ")))
                .with_context(|| format!("cannot create {}", self.place(&name)))?;
            if partition.is_some() {
                tx.execute_batch(&format!(
                    "CREATE INDEX {} ON {quoted} ({})",
                    quote_ident(&format!("{name}__{PARTITION_COLUMN}")),
                    quote_ident(PARTITION_COLUMN)
                ))?;
            }
        } else {
            match partition {
                Some(key) => tx.execute(
                    &format!(
                        "DELETE FROM {quoted} WHERE {} = ?1",
                        quote_ident(PARTITION_COLUMN)
                    ),
                    params![key],
                )?,
                None => tx.execute(&format!("DELETE FROM {quoted}"), [])?,
            };
        }
        Ok(())
    }

    /// The rows of one partition (or of the whole table), without `dg_partition`.
    fn read(
        &self,
        conn: &Connection,
        asset_key: &str,
        partition: Option<&str>,
    ) -> anyhow::Result<Table> {
        let name = table_name(asset_key);
        let Some(columns) = table_columns(conn, &name)? else {
            if stored_rows(conn, &name, partition)? == Some(0) {
                // Stored empty before the table had any columns.
                return Ok(table::empty_table());
            }
            bail!(
                "{} does not exist: materialize `{asset_key}` first",
                self.place(&name)
            );
        };
        let has_partition = columns.iter().any(|c| c.name == PARTITION_COLUMN);
        if partition.is_some() && !has_partition {
            bail!(
                "{} has no `{PARTITION_COLUMN}` column: it was not written for a partitioned asset",
                self.place(&name)
            );
        }
        let columns: Vec<Column> = columns
            .into_iter()
            .filter(|c| !(partition.is_some() && c.name == PARTITION_COLUMN))
            .collect();
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(&c.ty), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let select = columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let quoted = quote_ident(&name);
        let mut stmt = match partition {
            Some(_) => conn.prepare(&format!(
                "SELECT {select} FROM {quoted} WHERE {} = ?1 ORDER BY rowid",
                quote_ident(PARTITION_COLUMN)
            ))?,
            None => conn.prepare(&format!("SELECT {select} FROM {quoted} ORDER BY rowid"))?,
        };
        let mut rows = match partition {
            Some(key) => stmt.query(params![key])?,
            None => stmt.query([])?,
        };
        let mut builders: Vec<Builder> = schema
            .fields()
            .iter()
            .map(|f| Builder::new(f.data_type()))
            .collect();
        let mut batches = Vec::new();
        let mut n = 0;
        while let Some(row) = rows.next()? {
            for (i, b) in builders.iter_mut().enumerate() {
                b.push(row.get_ref(i)?).map_err(|e| {
                    anyhow!(
                        "{}: column `{}`: {e}",
                        self.place(&name),
                        schema.field(i).name()
                    )
                })?;
            }
            n += 1;
            if n == LOAD_BATCH_ROWS {
                batches.push(finish(&schema, &mut builders)?);
                n = 0;
            }
        }
        if n > 0 || batches.is_empty() {
            batches.push(finish(&schema, &mut builders)?);
        }
        Ok(Table { schema, batches })
    }
}

fn finish(schema: &Arc<Schema>, builders: &mut [Builder]) -> anyhow::Result<RecordBatch> {
    let cols: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Builds one loaded column from SQLite values.
enum Builder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Real(Float64Builder),
    Text(StringBuilder),
    Blob(BinaryBuilder),
}

impl Builder {
    fn new(t: &DataType) -> Self {
        match t {
            DataType::Boolean => Builder::Bool(BooleanBuilder::new()),
            DataType::Int64 => Builder::Int(Int64Builder::new()),
            DataType::Float64 => Builder::Real(Float64Builder::new()),
            DataType::Binary => Builder::Blob(BinaryBuilder::new()),
            _ => Builder::Text(StringBuilder::new()),
        }
    }

    fn push(&mut self, v: ValueRef<'_>) -> Result<(), String> {
        match (self, v) {
            (Builder::Bool(b), ValueRef::Null) => b.append_null(),
            (Builder::Bool(b), ValueRef::Integer(i @ (0 | 1))) => b.append_value(i == 1),
            (Builder::Bool(_), v) => {
                return Err(format!("{v:?} in a BOOLEAN column is not 0 or 1"));
            }
            (Builder::Int(b), ValueRef::Null) => b.append_null(),
            (Builder::Real(b), ValueRef::Null) => b.append_null(),
            (Builder::Text(b), ValueRef::Null) => b.append_null(),
            (Builder::Blob(b), ValueRef::Null) => b.append_null(),
            (Builder::Int(b), ValueRef::Integer(i)) => b.append_value(i),
            (Builder::Int(b), ValueRef::Real(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
                b.append_value(f as i64)
            }
            (Builder::Int(_), v) => {
                return Err(format!("{v:?} in an INTEGER column is not an integer"));
            }
            (Builder::Real(b), ValueRef::Real(f)) => b.append_value(f),
            (Builder::Real(b), ValueRef::Integer(i)) => b.append_value(i as f64),
            (Builder::Real(_), v) => return Err(format!("{v:?} in a REAL column is not a number")),
            (Builder::Text(b), ValueRef::Text(t)) => b.append_value(String::from_utf8_lossy(t)),
            (Builder::Text(b), ValueRef::Integer(i)) => b.append_value(i.to_string()),
            (Builder::Text(b), ValueRef::Real(f)) => b.append_value(f.to_string()),
            (Builder::Text(b), ValueRef::Blob(x)) => b.append_value(String::from_utf8_lossy(x)),
            (Builder::Blob(b), ValueRef::Blob(x)) | (Builder::Blob(b), ValueRef::Text(x)) => {
                b.append_value(x)
            }
            (Builder::Blob(b), ValueRef::Integer(i)) => b.append_value(i.to_string()),
            (Builder::Blob(b), ValueRef::Real(f)) => b.append_value(f.to_string()),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Real(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Blob(b) => Arc::new(b.finish()),
        }
    }
}

/// Records in [`STORED_TABLE`] that `ctx`'s partition (or its whole
/// unpartitioned table, as the key `''`) is stored with `rows` rows, inside
/// the transaction that stores it.
pub(crate) fn record_stored(
    tx: &rusqlite::Transaction<'_>,
    ctx: &OutputContext,
    rows: u64,
) -> anyhow::Result<()> {
    let stored = quote_ident(STORED_TABLE);
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {stored} (\
         \"table\" TEXT NOT NULL, \"partition\" TEXT NOT NULL, \"rows\" INTEGER NOT NULL, \
         PRIMARY KEY (\"table\", \"partition\"))"
    ))?;
    let key = ctx.partition.as_ref().map_or("", |p| p.key.as_str());
    tx.execute(
        &format!("INSERT OR REPLACE INTO {stored} (\"table\", \"partition\", \"rows\") VALUES (?1, ?2, ?3)"),
        params![table_name(&ctx.asset_key), key, rows as i64],
    )?;
    Ok(())
}

/// The rows recorded for a stored partition (key `''`: the whole table),
/// or `None` when nothing is recorded.
fn stored_rows(
    conn: &Connection,
    table: &str,
    partition: Option<&str>,
) -> anyhow::Result<Option<i64>> {
    let found: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1",
            params![STORED_TABLE],
            |r| r.get(0),
        )
        .optional()?;
    if found.is_none() {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            &format!(
                "SELECT \"rows\" FROM {} WHERE \"table\" = ?1 AND \"partition\" = ?2",
                quote_ident(STORED_TABLE)
            ),
            params![table, partition.unwrap_or("")],
            |r| r.get(0),
        )
        .optional()?)
}

/// The declared columns of `table`, or `None` when it does not exist.
pub(crate) fn table_columns(conn: &Connection, table: &str) -> anyhow::Result<Option<Vec<Column>>> {
    let found: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1",
            params![table],
            |r| r.get(0),
        )
        .optional()?;
    if found.is_none() {
        return Ok(None);
    }
    let mut stmt = conn.prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")?;
    let cols = stmt
        .query_map(params![table], |r| {
            Ok(Column {
                name: r.get(0)?,
                ty: r.get::<_, String>(1)?.to_ascii_uppercase(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(cols))
}

/// Inserts every row with prepared multi-row INSERTs; the partition key is
/// parameter 1 of each statement when there is one. Returns the rows inserted.
fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    quoted: &str,
    columns: &[Column],
    partition: Option<&str>,
    batches: &[(usize, Vec<Col>)],
) -> anyhow::Result<u64> {
    let ncols = columns.len();
    let first = usize::from(partition.is_some()) + 1;
    let per_stmt = (MAX_PARAMS / ncols).clamp(1, MAX_ROWS_PER_INSERT);
    let mut names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
    if partition.is_some() {
        names.insert(0, quote_ident(PARTITION_COLUMN));
    }
    let sql = |rows: usize| {
        let mut s = format!("INSERT INTO {quoted} ({}) VALUES ", names.join(", "));
        let mut p = first;
        for r in 0..rows {
            if r > 0 {
                s.push_str(", ");
            }
            s.push('(');
            if partition.is_some() {
                s.push_str("?1, ");
            }
            for c in 0..ncols {
                if c > 0 {
                    s.push_str(", ");
                }
                s.push('?');
                s.push_str(&p.to_string());
                p += 1;
            }
            s.push(')');
        }
        s
    };
    let mut full = tx.prepare(&sql(per_stmt))?;
    if let Some(key) = partition {
        full.raw_bind_parameter(1, key)?;
    }
    let mut total = 0u64;
    for (nrows, cols) in batches {
        let nrows = *nrows;
        let mut row = 0;
        while row + per_stmt <= nrows {
            let mut p = first;
            for r in row..row + per_stmt {
                for c in cols {
                    c.bind(&mut full, p, r)?;
                    p += 1;
                }
            }
            full.raw_execute()?;
            row += per_stmt;
        }
        if row < nrows {
            let rest = nrows - row;
            let mut stmt = tx.prepare_cached(&sql(rest))?;
            if let Some(key) = partition {
                stmt.raw_bind_parameter(1, key)?;
            }
            let mut p = first;
            for r in row..nrows {
                for c in cols {
                    c.bind(&mut stmt, p, r)?;
                    p += 1;
                }
            }
            stmt.raw_execute()?;
        }
        total += nrows as u64;
    }
    Ok(total)
}

impl IoManager for SqliteManager {
    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        let t = match data {
            Data::Table(t) => t,
            Data::File { path, format } => Arc::new(table::read(&path, format)?),
            Data::Bytes(_) => bail!(
                "the sqlite manager stores tables: opaque bytes (`file` format) cannot be stored"
            ),
        };
        let name = table_name(&ctx.asset_key);
        let started = std::time::Instant::now();
        let rows = self.store(ctx, &t).with_context(|| {
            format!("cannot store `{}` in {}", ctx.asset_key, self.place(&name))
        })?;
        ctx.log.info(format!(
            "stored {rows} rows in {} ({:.3}s)",
            self.place(&name),
            started.elapsed().as_secs_f64()
        ));
        Ok(Stored {
            path: Some(format!("sqlite:{}#{}", self.path.display(), name)),
            rows: Some(rows),
            bytes: None,
        })
    }

    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        if !self.path.is_file() {
            bail!(
                "the database `{}` does not exist: materialize `{}` first",
                self.path.display(),
                ctx.upstream_output.asset_key
            );
        }
        let conn = self.open(false)?;
        // One read transaction: every partition from the same snapshot.
        conn.execute_batch("BEGIN")?;
        let loaded = ctx.load_each(|out| {
            let key = out.partition.as_ref().map(|p| p.key.as_str());
            Ok(Data::Table(Arc::new(self.read(
                &conn,
                &out.asset_key,
                key,
            )?)))
        });
        let _ = conn.execute_batch("COMMIT");
        loaded
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        if !self.path.is_file() {
            return Ok(false);
        }
        let conn = self.open(false)?;
        let name = table_name(&ctx.asset_key);
        let key = ctx.partition.as_ref().map(|p| p.key.as_str());
        // An empty partition is stored: its existence is recorded, since no
        // row says so. One with rows must still have them.
        if stored_rows(&conn, &name, key)? == Some(0) {
            return Ok(true);
        }
        let Some(columns) = table_columns(&conn, &name)? else {
            return Ok(false);
        };
        let Some(p) = &ctx.partition else {
            return Ok(true);
        };
        if !columns.iter().any(|c| c.name == PARTITION_COLUMN) {
            return Ok(false);
        }
        let found: bool = conn.query_row(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE {} = ?1)",
                quote_ident(&name),
                quote_ident(PARTITION_COLUMN)
            ),
            params![p.key],
            |r| r.get(0),
        )?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_quoting() {
        assert_eq!(table_name("raw/events"), "raw__events");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    fn manager(dir: &Path) -> SqliteManager {
        let cx = ResourceCx {
            resource_key: "io_manager".into(),
            project_root: dir.to_path_buf(),
            state_dir: dir.join(".dg"),
            run_id: "r".into(),
        };
        let config = SqliteConfig {
            path: "w.db".into(),
            replace_on_schema_change: false,
        };
        SqliteManager::new(config, &cx).unwrap()
    }

    fn output(key: &str) -> OutputContext {
        OutputContext {
            asset_key: "t".into(),
            partition: Some(crate::io::PartitionRef {
                key: key.into(),
                dims: Vec::new(),
                window: None,
            }),
            format: crate::io::Format::Csv,
            resource_key: "io_manager".into(),
            metadata: Default::default(),
            run_id: "r".into(),
            step_id: "s".into(),
            log: Default::default(),
        }
    }

    fn ints(values: &[i64]) -> Data {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let col: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
        let batch = RecordBatch::try_new(schema.clone(), vec![col]).unwrap();
        Data::Table(Arc::new(Table {
            schema,
            batches: vec![batch],
        }))
    }

    /// An insert that fails after the partition's rows were deleted rolls
    /// the delete back too.
    #[test]
    fn a_failure_inside_the_transaction_changes_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        let m = manager(dir.path());
        let conn = Connection::open(m.path()).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (dg_partition TEXT NOT NULL, v INTEGER CHECK (v < 100))",
        )
        .unwrap();
        m.handle_output(&output("a"), ints(&[1, 2])).unwrap();
        let err = m.handle_output(&output("a"), ints(&[3, 500])).unwrap_err();
        assert!(format!("{err:#}").contains("CHECK"), "{err:#}");
        let v: Vec<i64> = conn
            .prepare("SELECT v FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(v, vec![1, 2]);
        assert!(m.exists(&output("a")).unwrap());
        assert!(!m.exists(&output("b")).unwrap());
    }

    #[test]
    fn affinity() {
        assert_eq!(arrow_type("INTEGER"), DataType::Int64);
        assert_eq!(arrow_type("bigint"), DataType::Int64);
        assert_eq!(arrow_type("REAL"), DataType::Float64);
        assert_eq!(arrow_type("TEXT"), DataType::Utf8);
        assert_eq!(arrow_type("VARCHAR(10)"), DataType::Utf8);
        assert_eq!(arrow_type("BLOB"), DataType::Binary);
    }
}
