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

use anyhow::{Context, bail};
use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Float64Array,
    Float64Builder, Int64Array, Int64Builder, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::io::{
    Data, InputContext, IoManager, IoManagerFactory, Loaded, OutputContext, ResourceCx,
    SqliteConfig, Stored, Table,
};

pub(crate) use super::db::Column;
use super::db::{self, Batcher, ColumnBuilder, TableManager, TableTx, downcast};
pub use super::db::{PARTITION_COLUMN, STORED_TABLE, quote_ident, table_name};

/// How long a connection waits for another writer (another process) to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(300);

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
        let cast = |to: &DataType| db::cast_strict(a, to, name);
        Ok(match sqlite_type(a.data_type()) {
            _ if a.data_type() == &DataType::Boolean => Col::Bool(downcast(a)),
            Some("INTEGER") => Col::Int(downcast(&cast(&DataType::Int64)?)),
            Some("REAL") => Col::Real(downcast(&cast(&DataType::Float64)?)),
            Some("TEXT") => Col::Text(downcast(&cast(&DataType::Utf8)?)),
            Some("BLOB") => Col::Blob(downcast(&cast(&DataType::Binary)?)),
            _ => {
                return Err(db::cannot_store(
                    "sqlite",
                    name,
                    a.data_type(),
                    Some("integers, floats, text, booleans, dates, timestamps and binary"),
                ));
            }
        })
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

    /// The manager's database on `conn`, as the shared core drives it.
    pub(crate) fn tx<'a>(&'a self, conn: &'a Connection) -> SqliteTx<'a> {
        SqliteTx {
            conn,
            manager: self,
        }
    }

    /// Runs `f` in one write transaction (this run's writers queued first),
    /// committed when `f` succeeds: on any error nothing changes.
    fn write<T>(
        &self,
        table: &str,
        f: impl FnOnce(&mut SqliteTx<'_>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let _guard = self.lock_writes();
        let mut conn = self.open(true)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(|| format!("cannot start a transaction on `{}`", self.path.display()))?;
        let out = f(&mut self.tx(&tx))?;
        tx.commit()
            .with_context(|| format!("cannot commit to {}", self.place(table)))?;
        Ok(out)
    }

    /// Makes the asset's table ready to receive `wanted` rows for
    /// `ctx.partition` inside the transaction on `conn`
    /// ([`db::prepare_target`]); a table it creates for a partitioned
    /// asset gets an index on `dg_partition`.
    pub(crate) fn prepare_target(
        &self,
        conn: &Connection,
        ctx: &OutputContext,
        wanted: &[Column],
        all_null: &[bool],
    ) -> anyhow::Result<()> {
        let created = db::prepare_output(
            &mut self.tx(conn),
            ctx,
            &self.resource_key,
            self.replace_on_schema_change,
            wanted,
            all_null,
        )?;
        if created && ctx.partition.is_some() {
            index_partition(conn, &table_name(&ctx.asset_key))?;
        }
        Ok(())
    }

    /// The rows of one partition (or of the whole table), without
    /// `dg_partition`, typed by [`arrow_type`], in rowid (write) order.
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
                let fields: Vec<Field> = columns
                    .iter()
                    .map(|c| Field::new(&c.name, arrow_type(&c.ty), true))
                    .collect();
                let select = columns
                    .iter()
                    .map(|c| quote_ident(&c.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = db::select_rows(&select, &quote_ident(name), partition, "?1", "rowid");
                let mut stmt = conn.prepare(&sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(partition))?;
                let schema = Arc::new(Schema::new(fields));
                let mut out = Batcher::<Builder>::new(schema, self.place(name));
                while let Some(row) = rows.next()? {
                    out.push_row(|i, b| Ok(b.push(row.get_ref(i)?)?))?;
                }
                out.finish()
            },
        )
    }
}

impl TableManager for SqliteManager {
    const KIND: &'static str = "sqlite";

    fn place(&self, table: &str) -> String {
        SqliteManager::place(self, table)
    }

    fn stored_path(&self, table: &str) -> String {
        format!("sqlite:{}#{table}", self.path.display())
    }

    fn column_type(&self, f: &Field) -> anyhow::Result<String> {
        sqlite_type(f.data_type())
            .map(str::to_string)
            .ok_or_else(|| db::cannot_store(Self::KIND, f.name(), f.data_type(), None))
    }

    fn store_nothing(&self, table: &str, partition: Option<&str>) -> anyhow::Result<u64> {
        self.write(table, |tx| db::store_nothing(tx, table, partition))
    }

    fn store_rows(&self, ctx: &OutputContext, t: &Table, cols: &[Column]) -> anyhow::Result<u64> {
        let name = table_name(&ctx.asset_key);
        let partition = db::partition_key(ctx);
        let batches = db::convert_batches(t, Col::from_array)?;
        let all_null = db::all_null(t);
        self.write(&name, |tx| {
            self.prepare_target(tx.conn, ctx, cols, &all_null)?;
            let rows = insert_rows(tx.conn, &quote_ident(&name), cols, partition, &batches)
                .with_context(|| format!("cannot insert into {}", self.place(&name)))?;
            tx.record_stored(&name, partition, rows)?;
            Ok(rows)
        })
    }
}

/// The manager's database on one connection (or inside its open
/// transaction), as the shared core ([`db`]) drives it.
pub(crate) struct SqliteTx<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) manager: &'a SqliteManager,
}

impl TableTx for SqliteTx<'_> {
    const PARAMS: [&'static str; 3] = ["?1", "?2", "?3"];
    const PARTITION_TYPE: &'static str = "TEXT";

    fn qualified(&self, table: &str) -> String {
        quote_ident(table)
    }

    fn place(&self, table: &str) -> String {
        self.manager.place(table)
    }

    fn columns(&mut self, table: &str) -> anyhow::Result<Option<Vec<Column>>> {
        table_columns(self.conn, table)
    }

    fn batch(&mut self, sql: &str) -> anyhow::Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }

    fn execute(&mut self, sql: &str, params: &[&str]) -> anyhow::Result<u64> {
        Ok(self.conn.execute(sql, rusqlite::params_from_iter(params))? as u64)
    }

    fn query_int(&mut self, sql: &str, params: &[&str]) -> anyhow::Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(sql, rusqlite::params_from_iter(params), |r| r.get(0))
            .optional()?)
    }

    fn query_flag(&mut self, sql: &str, params: &[&str]) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .query_row(sql, rusqlite::params_from_iter(params), |r| r.get(0))?)
    }

    /// Creates [`STORED_TABLE`] on the first record.
    fn record_stored(&mut self, table: &str, key: Option<&str>, rows: u64) -> anyhow::Result<()> {
        let stored = quote_ident(STORED_TABLE);
        self.conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {stored} (\
             \"table\" TEXT NOT NULL, \"partition\" TEXT NOT NULL, \"rows\" INTEGER NOT NULL, \
             PRIMARY KEY (\"table\", \"partition\"))"
        ))?;
        self.conn.execute(
            &format!("INSERT OR REPLACE INTO {stored} (\"table\", \"partition\", \"rows\") VALUES (?1, ?2, ?3)"),
            params![table, key.unwrap_or(""), rows as i64],
        )?;
        Ok(())
    }

    /// SQLite cannot change a column's type: copies the table into a new
    /// one, in rowid order, and puts it in the old one's place.
    fn retype(
        &mut self,
        table: &str,
        existing: &[Column],
        new_types: &[(String, String)],
    ) -> anyhow::Result<()> {
        let quoted = quote_ident(table);
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
        let tmp = quote_ident(&format!("{table}/retype"));
        self.conn.execute_batch(&format!(
            "CREATE TABLE {tmp} ({defs});
             INSERT INTO {tmp} ({cols}) SELECT {cols} FROM {quoted} ORDER BY rowid;
             DROP TABLE {quoted};
             ALTER TABLE {tmp} RENAME TO {quoted};",
            defs = defs.join(", "),
            cols = cols.join(", "),
        ))?;
        if existing.iter().any(|c| c.name == PARTITION_COLUMN) {
            index_partition(self.conn, table)?;
        }
        Ok(())
    }
}

/// Indexes a partitioned asset's table on `dg_partition`.
fn index_partition(conn: &Connection, table: &str) -> anyhow::Result<()> {
    conn.execute_batch(&format!(
        "CREATE INDEX {} ON {} ({})",
        quote_ident(&format!("{table}__{PARTITION_COLUMN}")),
        quote_ident(table),
        quote_ident(PARTITION_COLUMN)
    ))?;
    Ok(())
}

/// Builds one loaded column from SQLite values.
enum Builder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Real(Float64Builder),
    Text(StringBuilder),
    Blob(BinaryBuilder),
}

impl ColumnBuilder for Builder {
    fn new(t: &DataType) -> Self {
        match t {
            DataType::Boolean => Builder::Bool(BooleanBuilder::new()),
            DataType::Int64 => Builder::Int(Int64Builder::new()),
            DataType::Float64 => Builder::Real(Float64Builder::new()),
            DataType::Binary => Builder::Blob(BinaryBuilder::new()),
            _ => Builder::Text(StringBuilder::new()),
        }
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

impl Builder {
    /// Appends one value, or says why it does not fit the column.
    fn push(&mut self, v: ValueRef<'_>) -> Result<(), BadValue> {
        match (self, v) {
            (Builder::Bool(b), ValueRef::Null) => b.append_null(),
            (Builder::Bool(b), ValueRef::Integer(i @ (0 | 1))) => b.append_value(i == 1),
            (Builder::Bool(_), v) => return Err(BadValue::new(v, "a BOOLEAN", "0 or 1")),
            (Builder::Int(b), ValueRef::Null) => b.append_null(),
            (Builder::Real(b), ValueRef::Null) => b.append_null(),
            (Builder::Text(b), ValueRef::Null) => b.append_null(),
            (Builder::Blob(b), ValueRef::Null) => b.append_null(),
            (Builder::Int(b), ValueRef::Integer(i)) => b.append_value(i),
            (Builder::Int(b), ValueRef::Real(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
                b.append_value(f as i64)
            }
            (Builder::Int(_), v) => return Err(BadValue::new(v, "an INTEGER", "an integer")),
            (Builder::Real(b), ValueRef::Real(f)) => b.append_value(f),
            (Builder::Real(b), ValueRef::Integer(i)) => b.append_value(i as f64),
            (Builder::Real(_), v) => return Err(BadValue::new(v, "a REAL", "a number")),
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
}

/// A stored value that does not fit its column's declared type.
#[derive(Debug, thiserror::Error)]
#[error("{value} in {column} column is not {wanted}")]
pub(crate) struct BadValue {
    /// The value as SQLite holds it (`Text([…])`, `Real(0.5)`).
    value: String,
    /// The column's type, with its article: `an INTEGER`.
    column: &'static str,
    /// What a value of that type must be.
    wanted: &'static str,
}

impl BadValue {
    fn new(v: ValueRef<'_>, column: &'static str, wanted: &'static str) -> Self {
        BadValue {
            value: format!("{v:?}"),
            column,
            wanted,
        }
    }
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
    tx: &Connection,
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
        db::handle_output(self, ctx, data)
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
            let key = db::partition_key(out);
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
        db::exists(&mut self.tx(&conn), &ctx.asset_key, db::partition_key(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::db::testing;
    use super::*;

    #[test]
    fn names_and_quoting() {
        assert_eq!(table_name("raw/events"), "raw__events");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    fn manager(dir: &Path) -> SqliteManager {
        let config = SqliteConfig {
            path: "w.db".into(),
            replace_on_schema_change: false,
        };
        SqliteManager::new(config, &testing::cx(dir)).unwrap()
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
        testing::a_failure_changes_nothing(&m, || {
            conn.prepare("SELECT v FROM t ORDER BY rowid")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        });
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
