//! `type = "postgres"`: one table per asset in a Postgres schema, with the
//! semantics of the `sqlite` manager ([`crate::io::sqlite`]).
//!
//! - The table is `"<schema>"."<asset key segments joined by __>"`, always
//!   quoted. The schema (default `public`) is created when it is missing.
//! - A partitioned asset's table has a `dg_partition TEXT NOT NULL` column
//!   (indexed). [`handle_output`](IoManager::handle_output) replaces that
//!   partition's rows in one transaction (`DELETE … WHERE dg_partition = $1`,
//!   then a `COPY … FROM STDIN (FORMAT csv)` of the new rows); an
//!   unpartitioned asset replaces its whole table. The partition key is a
//!   bound parameter or CSV data, never SQL text.
//! - Writers of one table take a transaction-level advisory lock on it, so
//!   that parallel steps (and other processes) creating or checking the
//!   same table queue instead of racing.
//! - A changed output schema is an error naming the differences, unless
//!   `replace_on_schema_change = true`.
//! - [`load_input`](IoManager::load_input) reads the mapped partitions in
//!   partition order from one `REPEATABLE READ` snapshot, each in physical
//!   (`ctid`) order, as Arrow ([`arrow_type`]).
//!
//! Connections are opened lazily and kept in a pool that lives as long as
//! the manager, i.e. one run. The URL's password is never shown: every
//! message leaving the manager goes through [`Secrets::redact`], and the
//! URL is shown masked ([`crate::secrets::mask_url`]).

use std::io::Write;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Float64Array,
    Float64Builder, Int32Builder, Int64Array, Int64Builder, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, TimeUnit, TimestampMicrosecondType};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, IsolationLevel, NoTls};

use super::db::{
    self, Batcher, Column, ColumnBuilder, PARTITION_COLUMN, STORED_TABLE, TableManager, TableTx,
    downcast, quote_ident, table_name,
};
use crate::io::{
    Data, InputContext, IoManager, IoManagerFactory, Loaded, OutputContext, PostgresConfig,
    ResourceCx, Stored, Table,
};

/// Postgres truncates longer identifiers (NAMEDATALEN - 1).
pub(crate) const MAX_IDENT: usize = 63;

/// How long connecting may take, unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of CSV buffered before they are sent to `COPY`.
const COPY_CHUNK: usize = 1 << 20;

impl IoManagerFactory for PostgresConfig {
    fn create_io_manager(self, cx: &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>> {
        Ok(Arc::new(PostgresManager::new(self, cx)?))
    }
}

use crate::pg::error_text;
pub use crate::secrets::Secrets;

/// The Postgres column type an Arrow type is stored as (as
/// `format_type` spells it), if it can be.
pub fn pg_type(t: &DataType) -> Option<&'static str> {
    use DataType::*;
    Some(match t {
        Int8 | Int16 | Int32 | UInt8 | UInt16 => "integer",
        Int64 | UInt32 | UInt64 => "bigint",
        Float16 | Float32 | Float64 | Decimal128(..) | Decimal256(..) => "double precision",
        Utf8 | LargeUtf8 | Utf8View | Null => "text",
        Boolean => "boolean",
        Date32 | Date64 => "date",
        Timestamp(_, Some(_)) => "timestamp with time zone",
        Timestamp(_, None) => "timestamp without time zone",
        Time32(_) | Time64(_) => "time without time zone",
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => "bytea",
        _ => return None,
    })
}

/// The Arrow type a Postgres column type (as `format_type` spells it) is
/// loaded as, and the expression that selects it (`{}` is the quoted column).
pub fn arrow_type(pg: &str) -> (DataType, &'static str) {
    match pg {
        "smallint" | "integer" => (DataType::Int32, "{}::int4"),
        "bigint" => (DataType::Int64, "{}"),
        "real" | "double precision" => (DataType::Float64, "{}::float8"),
        "boolean" => (DataType::Boolean, "{}"),
        "date" => (DataType::Date32, "({} - DATE '1970-01-01')"),
        "timestamp with time zone" => (
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            "(EXTRACT(EPOCH FROM {}) * 1000000)::int8",
        ),
        "timestamp without time zone" => (
            DataType::Timestamp(TimeUnit::Microsecond, None),
            "(EXTRACT(EPOCH FROM {}) * 1000000)::int8",
        ),
        "bytea" => (DataType::Binary, "{}"),
        _ => (DataType::Utf8, "{}::text"),
    }
}

/// One column of an output, converted to what is written in the CSV.
enum Col {
    Int(Int64Array),
    Float(Float64Array),
    Bool(BooleanArray),
    Text(StringArray),
    Bytes(BinaryArray),
}

impl Col {
    fn from_array(a: &ArrayRef, name: &str) -> anyhow::Result<Col> {
        let cast = |a: &ArrayRef, to: &DataType| db::cast_strict(a, to, name);
        Ok(match pg_type(a.data_type()) {
            Some("boolean") => Col::Bool(downcast::<BooleanArray>(a)),
            Some("integer" | "bigint") => Col::Int(downcast(&cast(a, &DataType::Int64)?)),
            Some("double precision") => Col::Float(downcast(&cast(a, &DataType::Float64)?)),
            Some("bytea") => Col::Bytes(downcast(&cast(a, &DataType::Binary)?)),
            Some("date") if a.data_type() == &DataType::Date64 => Col::Text(downcast(&cast(
                &cast(a, &DataType::Date32)?,
                &DataType::Utf8,
            )?)),
            Some(_) => Col::Text(downcast(&cast(a, &DataType::Utf8)?)),
            None => {
                return Err(db::cannot_store(
                    "postgres",
                    name,
                    a.data_type(),
                    Some("integers, floats, text, booleans, dates, times, timestamps and binary"),
                ));
            }
        })
    }

    /// Appends row `row` as one CSV field (nothing for NULL).
    fn write(&self, buf: &mut Vec<u8>, row: usize) {
        match self {
            Col::Int(a) if a.is_valid(row) => {
                let _ = write!(buf, "{}", a.value(row));
            }
            Col::Float(a) if a.is_valid(row) => {
                let v = a.value(row);
                if v.is_nan() {
                    buf.extend_from_slice(b"NaN");
                } else if v.is_infinite() {
                    buf.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
                } else {
                    let _ = write!(buf, "{v:?}");
                }
            }
            Col::Bool(a) if a.is_valid(row) => buf.push(if a.value(row) { b't' } else { b'f' }),
            Col::Text(a) if a.is_valid(row) => quote_csv(buf, a.value(row)),
            Col::Bytes(a) if a.is_valid(row) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\x");
                for &b in a.value(row) {
                    buf.push(HEX[(b >> 4) as usize]);
                    buf.push(HEX[(b & 15) as usize]);
                }
            }
            _ => {}
        }
    }
}

/// `s` as a quoted CSV field: a quoted empty string is `''`, not NULL.
fn quote_csv(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    if s.contains('"') {
        buf.extend_from_slice(s.replace('"', "\"\"").as_bytes());
    } else {
        buf.extend_from_slice(s.as_bytes());
    }
    buf.push(b'"');
}

/// The `postgres` I/O manager of one run.
pub struct PostgresManager {
    config: postgres::Config,
    pub(crate) secrets: Secrets,
    pub(crate) schema: String,
    pub(crate) replace_on_schema_change: bool,
    pub(crate) resource_key: String,
    /// Idle connections, opened lazily.
    pool: Mutex<Vec<Client>>,
    /// Whether the schema is known to exist.
    schema_ready: Mutex<bool>,
}

/// A pooled connection, returned to the pool when dropped (unless closed).
pub(crate) struct Conn<'a> {
    manager: &'a PostgresManager,
    client: Option<Client>,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("a client")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("a client")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
        {
            let mut pool = self.manager.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.push(c);
        }
    }
}

impl PostgresManager {
    /// The manager for `config`; nothing is connected yet.
    pub fn new(config: PostgresConfig, cx: &ResourceCx) -> anyhow::Result<Self> {
        let key = &cx.resource_key;
        if config.url.trim().is_empty() {
            bail!("resource `{key}`: `url` is empty");
        }
        if config.schema.is_empty() || config.schema.len() > MAX_IDENT {
            bail!(
                "resource `{key}`: `schema` must be 1 to {MAX_IDENT} bytes long, not {:?}",
                config.schema
            );
        }
        let unparsed = Secrets::new(&config.url, None);
        let mut pg = postgres::Config::from_str(&config.url).map_err(|e| {
            anyhow!(
                "resource `{key}`: invalid `url` {}: {}",
                unparsed.masked_url(),
                unparsed.redact(&e.to_string())
            )
        })?;
        let secrets = Secrets::new(&config.url, pg.get_password());
        crate::pg::set_defaults(&mut pg, CONNECT_TIMEOUT);
        Ok(PostgresManager {
            config: pg,
            secrets,
            schema: config.schema,
            replace_on_schema_change: config.replace_on_schema_change,
            resource_key: key.clone(),
            pool: Mutex::new(Vec::new()),
            schema_ready: Mutex::new(false),
        })
    }

    /// Whether `other` stores its tables in the same place: the same URL
    /// (as written) and the same schema.
    pub fn same_place(&self, other: &PostgresManager) -> bool {
        self.secrets.url() == other.secrets.url() && self.schema == other.schema
    }

    /// The resource's key.
    pub fn resource_key(&self) -> &str {
        &self.resource_key
    }

    /// Where the tables are, as it may be shown: the masked URL and the schema.
    pub fn where_(&self) -> String {
        format!("{} (schema `{}`)", self.masked_url(), self.schema)
    }

    /// The URL with its password masked.
    pub fn masked_url(&self) -> &str {
        self.secrets.masked_url()
    }

    pub(crate) fn conn(&self) -> anyhow::Result<Conn<'_>> {
        let pooled = {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            let mut found = None;
            while let Some(c) = pool.pop() {
                if !c.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let client = match pooled {
            Some(c) => c,
            None => self.config.connect(NoTls).map_err(|e| {
                anyhow!(
                    "cannot connect to {} (resource `{}`): {}",
                    self.masked_url(),
                    self.resource_key,
                    error_text(&e)
                )
            })?,
        };
        Ok(Conn {
            manager: self,
            client: Some(client),
        })
    }

    pub(crate) fn qualified(&self, table: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(table))
    }

    pub(crate) fn place(&self, table: &str) -> String {
        format!(
            "table `{}.{table}` in {}",
            self.schema,
            self.secrets.masked_url()
        )
    }

    pub(crate) fn ensure_schema(&self, client: &mut Client) -> anyhow::Result<()> {
        let mut ready = self.schema_ready.lock().unwrap_or_else(|e| e.into_inner());
        if *ready {
            return Ok(());
        }
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) \
                 AND to_regclass($2) IS NOT NULL",
                &[&self.schema, &self.qualified(STORED_TABLE)],
            )?
            .get(0);
        if !exists {
            let mut tx = client.transaction()?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('dg schema ' || $1))",
                &[&self.schema],
            )?;
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(&self.schema)
            ))
            .with_context(|| format!("cannot create the schema `{}`", self.schema))?;
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {} (\"table\" TEXT NOT NULL, \
                 \"partition\" TEXT NOT NULL, \"rows\" BIGINT NOT NULL, \
                 PRIMARY KEY (\"table\", \"partition\"))",
                self.qualified(STORED_TABLE)
            ))
            .with_context(|| format!("cannot create {}", self.place(STORED_TABLE)))?;
            tx.commit()?;
        }
        *ready = true;
        Ok(())
    }

    /// The manager's database on `client`, as the shared core drives it.
    pub(crate) fn tx<'a, C>(&'a self, client: &'a mut C) -> PgTx<'a, C> {
        PgTx {
            client,
            manager: self,
        }
    }

    /// Runs `f` in one transaction on a pooled connection (the schema
    /// created first when missing), holding the table's advisory lock, so
    /// that writers of one table queue; committed when `f` succeeds.
    pub(crate) fn write<T>(
        &self,
        table: &str,
        f: impl FnOnce(&mut PgTx<'_, postgres::Transaction<'_>>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut conn = self.conn()?;
        self.ensure_schema(&mut conn)?;
        let mut tx = conn.transaction()?;
        lock_table(&mut tx, &self.qualified(table))?;
        let out = f(&mut self.tx(&mut tx))?;
        tx.commit()
            .with_context(|| format!("cannot commit to {}", self.place(table)))?;
        Ok(out)
    }

    /// The rows of one partition (or of the whole table), without
    /// `dg_partition`, typed by [`arrow_type`], in physical (`ctid`) order.
    fn read(
        &self,
        client: &mut impl GenericClient,
        asset_key: &str,
        partition: Option<&str>,
    ) -> anyhow::Result<Table> {
        db::read(
            &mut self.tx(client),
            asset_key,
            partition,
            |tx, columns, name| {
                let mut fields = Vec::with_capacity(columns.len());
                let mut exprs = Vec::with_capacity(columns.len());
                for c in &columns {
                    let (t, expr) = arrow_type(&c.ty);
                    fields.push(Field::new(&c.name, t, true));
                    exprs.push(expr.replace("{}", &quote_ident(&c.name)));
                }
                let select = if exprs.is_empty() {
                    "NULL".to_string()
                } else {
                    exprs.join(", ")
                };
                let sql = db::select_rows(&select, &self.qualified(name), partition, "$1", "ctid");
                let params: Vec<&(dyn ToSql + Sync)> =
                    partition.iter().map(|k| k as &(dyn ToSql + Sync)).collect();
                let mut rows = tx.client.query_raw(sql.as_str(), params)?;
                let schema = Arc::new(Schema::new(fields));
                let mut out = Batcher::<Builder>::new(schema, self.place(name));
                while let Some(row) = rows.next()? {
                    out.push_row(|i, b| Ok(b.push(&row, i)?))?;
                }
                out.finish()
            },
        )
    }

    fn exists_inner(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        let mut conn = self.conn()?;
        db::exists(
            &mut self.tx(&mut *conn),
            &ctx.asset_key,
            db::partition_key(ctx),
        )
    }

    fn load_inner(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        let mut conn = self.conn()?;
        // One snapshot for every partition.
        let mut tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let loaded = ctx.load_each(|out| {
            let key = db::partition_key(out);
            Ok(Data::Table(Arc::new(self.read(
                &mut tx,
                &out.asset_key,
                key,
            )?)))
        })?;
        tx.commit()?;
        Ok(loaded)
    }
}

impl TableManager for PostgresManager {
    const KIND: &'static str = "postgres";

    fn place(&self, table: &str) -> String {
        PostgresManager::place(self, table)
    }

    fn stored_path(&self, table: &str) -> String {
        format!("{}#{}.{table}", self.masked_url(), self.schema)
    }

    fn check_name(&self, table: &str) -> anyhow::Result<()> {
        if table.len() > MAX_IDENT {
            bail!(
                "the table name `{table}` is longer than Postgres allows ({MAX_IDENT} bytes): \
                 shorten the asset key"
            );
        }
        Ok(())
    }

    fn column_type(&self, f: &Field) -> anyhow::Result<String> {
        if f.name().len() > MAX_IDENT {
            bail!(
                "column `{}` has a name longer than Postgres allows ({MAX_IDENT} bytes)",
                f.name()
            );
        }
        pg_type(f.data_type())
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
            let created = db::prepare_output(
                tx,
                ctx,
                &self.resource_key,
                self.replace_on_schema_change,
                cols,
                &all_null,
            )?;
            let qualified = self.qualified(&name);
            let rows = copy_rows(tx.client, &qualified, cols, partition, &batches)
                .with_context(|| format!("cannot copy rows into {}", self.place(&name)))?;
            // Indexing a filled table is cheaper than maintaining the index row by row.
            if created && partition.is_some() {
                tx.batch(&format!(
                    "CREATE INDEX ON {qualified} ({})",
                    quote_ident(PARTITION_COLUMN)
                ))?;
            }
            tx.record_stored(&name, partition, rows)?;
            Ok(rows)
        })
    }

    fn clean(&self, e: anyhow::Error) -> anyhow::Error {
        anyhow!("{}", self.secrets.redact(&format!("{e:#}")))
    }
}

/// Takes the transaction-level advisory lock of a table's writers.
pub(crate) fn lock_table(
    client: &mut impl GenericClient,
    qualified: &str,
) -> Result<(), postgres::Error> {
    client.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("dg table {qualified}")],
    )?;
    Ok(())
}

/// The manager's database on one connection or inside its open
/// transaction, as the shared core ([`db`]) drives it. Driver errors are
/// one line ([`error_text`]).
pub(crate) struct PgTx<'a, C> {
    pub(crate) client: &'a mut C,
    pub(crate) manager: &'a PostgresManager,
}

/// A driver error as one line.
fn pg(e: postgres::Error) -> anyhow::Error {
    anyhow!("{}", error_text(&e))
}

/// Text parameters as the driver binds them.
fn text_params<'p>(params: &'p [&'p str]) -> Vec<&'p (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl<C: GenericClient> TableTx for PgTx<'_, C> {
    const PARAMS: [&'static str; 3] = ["$1", "$2", "$3"];
    const PARTITION_TYPE: &'static str = "TEXT";

    fn qualified(&self, table: &str) -> String {
        self.manager.qualified(table)
    }

    fn place(&self, table: &str) -> String {
        self.manager.place(table)
    }

    fn columns(&mut self, table: &str) -> anyhow::Result<Option<Vec<Column>>> {
        table_columns(self.client, &self.manager.schema, table)
    }

    fn batch(&mut self, sql: &str) -> anyhow::Result<()> {
        self.client.batch_execute(sql).map_err(pg)
    }

    fn execute(&mut self, sql: &str, params: &[&str]) -> anyhow::Result<u64> {
        self.client.execute(sql, &text_params(params)).map_err(pg)
    }

    fn query_int(&mut self, sql: &str, params: &[&str]) -> anyhow::Result<Option<i64>> {
        let row = self
            .client
            .query_opt(sql, &text_params(params))
            .map_err(pg)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn query_flag(&mut self, sql: &str, params: &[&str]) -> anyhow::Result<bool> {
        let row = self
            .client
            .query_one(sql, &text_params(params))
            .map_err(pg)?;
        Ok(row.get(0))
    }

    fn record_stored(&mut self, table: &str, key: Option<&str>, rows: u64) -> anyhow::Result<()> {
        self.client
            .execute(
                &format!(
                    "INSERT INTO {} (\"table\", \"partition\", \"rows\") VALUES ($1, $2, $3) \
                     ON CONFLICT (\"table\", \"partition\") DO UPDATE SET \"rows\" = EXCLUDED.\"rows\"",
                    self.manager.qualified(STORED_TABLE)
                ),
                &[&table, &key.unwrap_or(""), &(rows as i64)],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn emptied_as(ty: &str) -> String {
        format!("{} USING NULL", ty.to_ascii_uppercase())
    }
}

/// Builds one loaded column from Postgres values.
enum Builder {
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Date(Int32Builder),
    Micros(Int64Builder, DataType),
    Text(StringBuilder),
    Bytes(BinaryBuilder),
}

impl ColumnBuilder for Builder {
    fn new(t: &DataType) -> Self {
        match t {
            DataType::Int32 => Builder::Int32(Int32Builder::new()),
            DataType::Int64 => Builder::Int64(Int64Builder::new()),
            DataType::Float64 => Builder::Float(Float64Builder::new()),
            DataType::Boolean => Builder::Bool(BooleanBuilder::new()),
            DataType::Date32 => Builder::Date(Int32Builder::new()),
            DataType::Timestamp(..) => Builder::Micros(Int64Builder::new(), t.clone()),
            DataType::Binary => Builder::Bytes(BinaryBuilder::new()),
            _ => Builder::Text(StringBuilder::new()),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish().reinterpret_cast::<Date32Type>()),
            Builder::Micros(b, t) => {
                let tz = match t {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                Arc::new(
                    b.finish()
                        .reinterpret_cast::<TimestampMicrosecondType>()
                        .with_timezone_opt(tz),
                )
            }
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Bytes(b) => Arc::new(b.finish()),
        }
    }
}

impl Builder {
    fn push(&mut self, row: &postgres::Row, i: usize) -> Result<(), postgres::Error> {
        match self {
            Builder::Int32(b) | Builder::Date(b) => {
                b.append_option(row.try_get::<_, Option<i32>>(i)?)
            }
            Builder::Int64(b) | Builder::Micros(b, _) => {
                b.append_option(row.try_get::<_, Option<i64>>(i)?)
            }
            Builder::Float(b) => b.append_option(row.try_get::<_, Option<f64>>(i)?),
            Builder::Bool(b) => b.append_option(row.try_get::<_, Option<bool>>(i)?),
            Builder::Text(b) => b.append_option(row.try_get::<_, Option<&str>>(i)?),
            Builder::Bytes(b) => b.append_option(row.try_get::<_, Option<&[u8]>>(i)?),
        }
        Ok(())
    }
}

/// The columns of `schema.table` (with `format_type` types), or `None`
/// when it does not exist.
pub(crate) fn table_columns(
    client: &mut impl GenericClient,
    schema: &str,
    table: &str,
) -> anyhow::Result<Option<Vec<Column>>> {
    let found = client.query_opt(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
        &[&schema, &table],
    )?;
    let Some(found) = found else {
        return Ok(None);
    };
    let oid: postgres::types::Oid = found.get(0);
    let rows = client.query(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        &[&oid],
    )?;
    Ok(Some(
        rows.iter()
            .map(|r| Column {
                name: r.get(0),
                ty: r.get(1),
            })
            .collect(),
    ))
}

/// Streams every row through `COPY … FROM STDIN (FORMAT csv)`; the
/// partition key, when there is one, is the first field of each row.
fn copy_rows(
    tx: &mut postgres::Transaction<'_>,
    qualified: &str,
    columns: &[Column],
    partition: Option<&str>,
    batches: &[(usize, Vec<Col>)],
) -> anyhow::Result<u64> {
    let mut names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
    if partition.is_some() {
        names.insert(0, quote_ident(PARTITION_COLUMN));
    }
    let mut key_field = Vec::new();
    if let Some(key) = partition {
        quote_csv(&mut key_field, key);
        key_field.push(b',');
    }
    let mut writer = tx.copy_in(&format!(
        "COPY {qualified} ({}) FROM STDIN WITH (FORMAT csv)",
        names.join(", ")
    ))?;
    let mut buf = Vec::with_capacity(COPY_CHUNK + 4096);
    for (nrows, cols) in batches {
        for row in 0..*nrows {
            buf.extend_from_slice(&key_field);
            for (i, c) in cols.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                c.write(&mut buf, row);
            }
            buf.push(b'\n');
            if buf.len() >= COPY_CHUNK {
                writer.write_all(&buf)?;
                buf.clear();
            }
        }
    }
    if !buf.is_empty() {
        writer.write_all(&buf)?;
    }
    Ok(writer.finish()?)
}

impl IoManager for PostgresManager {
    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        db::handle_output(self, ctx, data)
    }

    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        self.load_inner(ctx).map_err(|e| self.clean(e))
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        self.exists_inner(ctx).map_err(|e| self.clean(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> ResourceCx {
        ResourceCx {
            resource_key: "warehouse".into(),
            project_root: ".".into(),
            state_dir: ".dg".into(),
            run_id: "r".into(),
        }
    }

    /// A connection that fails (nothing listens on port 1) names the masked
    /// URL and never the password, in every error the manager returns.
    #[test]
    fn connection_errors_never_show_the_password() {
        let url = "postgres://dg:Sup3rS3cretPw@127.0.0.1:1/db?connect_timeout=5";
        let m = PostgresManager::new(
            PostgresConfig {
                url: url.into(),
                schema: "public".into(),
                replace_on_schema_change: false,
            },
            &cx(),
        )
        .unwrap();
        let ctx = OutputContext {
            asset_key: "t".into(),
            partition: None,
            format: crate::io::Format::Csv,
            resource_key: "warehouse".into(),
            metadata: Default::default(),
            run_id: "r".into(),
            step_id: "s".into(),
            log: Default::default(),
        };
        let e = m.exists(&ctx).unwrap_err();
        for text in [format!("{e}"), format!("{e:#}"), format!("{e:?}")] {
            assert!(!text.contains("Sup3rS3cretPw"), "{text}");
            assert!(text.contains("postgres://dg:***@127.0.0.1:1/db"), "{text}");
        }
        // A malformed URL too.
        let e = PostgresManager::new(
            PostgresConfig {
                url: "postgres://dg:Sup3rS3cretPw@host:notaport/db".into(),
                schema: "public".into(),
                replace_on_schema_change: false,
            },
            &cx(),
        )
        .err()
        .unwrap();
        let text = format!("{e:?}");
        assert!(!text.contains("Sup3rS3cretPw"), "{text}");
    }

    #[test]
    fn type_mapping() {
        assert_eq!(pg_type(&DataType::Int64), Some("bigint"));
        assert_eq!(pg_type(&DataType::Int32), Some("integer"));
        assert_eq!(pg_type(&DataType::Float64), Some("double precision"));
        assert_eq!(pg_type(&DataType::Utf8), Some("text"));
        assert_eq!(pg_type(&DataType::Boolean), Some("boolean"));
        assert_eq!(pg_type(&DataType::Date32), Some("date"));
        assert_eq!(pg_type(&DataType::Binary), Some("bytea"));
        for t in [
            DataType::Int64,
            DataType::Int32,
            DataType::Float64,
            DataType::Utf8,
            DataType::Boolean,
            DataType::Date32,
            DataType::Binary,
        ] {
            assert_eq!(arrow_type(pg_type(&t).unwrap()).0, t);
        }
    }

    #[test]
    fn csv_fields() {
        let mut buf = Vec::new();
        quote_csv(&mut buf, "a \"b\",\nc");
        assert_eq!(buf, b"\"a \"\"b\"\",\nc\"");
        let col = Col::Bytes(BinaryArray::from(vec![Some(&[0u8, 0xff][..]), None]));
        let mut buf = Vec::new();
        col.write(&mut buf, 0);
        buf.push(b',');
        col.write(&mut buf, 1);
        assert_eq!(buf, b"\\x00ff,");
    }
}
