//! What the table-per-asset database managers (`sqlite`, `postgres`,
//! `duckdb`) share: table and column naming, the rule for comparing an
//! output's columns with its table's, and the core of a manager, written
//! once over [`TableTx`] (a manager's driver inside one open transaction):
//!
//! - [`wanted_columns`]: the columns an output asks for, checked;
//! - [`prepare_target`]: the asset's table made ready for a partition's
//!   rows (columns that hold no value yet re-typed, the schema-change rule,
//!   the table created, or the rows being replaced deleted);
//! - [`store_nothing`]: an output with no columns stored as an empty
//!   partition; [`read`] and [`exists`]: what is stored;
//! - [`handle_output`]: a [`TableManager`]'s `handle_output`, and
//!   [`Batcher`], rows read back into record batches.
//!
//! Each manager keeps what differs: its types, its connections and
//! transactions, how it writes rows (multi-row INSERTs, `COPY`, DuckDB's
//! appender) and reads them.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use arrow::array::ArrayRef;
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use crate::io::{Data, OutputContext, Stored, Table, table};

/// The column that holds the partition key in a partitioned asset's table.
pub const PARTITION_COLUMN: &str = "dg_partition";

/// The table that records which partitions are stored (and how many rows
/// each had), so that an empty partition is a stored one. Its name holds a
/// `/`, which no asset's table name can.
pub const STORED_TABLE: &str = "dg/stored";

/// The table of an asset: `raw/events` → `raw__events`.
pub fn table_name(asset_key: &str) -> String {
    asset_key.split('/').collect::<Vec<_>>().join("__")
}

/// `name` as a quoted SQL identifier: `"name"`, with `"` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A column as it is (or would be) declared: name and database type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) ty: String,
}

/// For each column of `t`, whether every value is null.
pub(crate) fn all_null(t: &Table) -> Vec<bool> {
    (0..t.schema.fields().len())
        .map(|i| {
            t.batches
                .iter()
                .all(|b| b.column(i).null_count() == b.num_rows())
        })
        .collect()
}

/// How `wanted` (plus `dg_partition` when partitioned) differs from the
/// table's columns, as readable phrases; empty when they match. Column
/// order does not matter; a column whose values are all null matches any
/// type. Types are shown upper-cased.
pub(crate) fn schema_diff(
    existing: &[Column],
    wanted: &[Column],
    partitioned: bool,
    all_null: &[bool],
) -> Vec<String> {
    let up = |t: &str| t.to_ascii_uppercase();
    let mut diff = Vec::new();
    let has_partition = existing.iter().any(|c| c.name == PARTITION_COLUMN);
    if partitioned && !has_partition {
        diff.push(format!(
            "the table has no `{PARTITION_COLUMN}` column (it was written for an unpartitioned asset)"
        ));
    }
    if !partitioned && has_partition {
        diff.push(format!(
            "the table has a `{PARTITION_COLUMN}` column (it was written for a partitioned asset)"
        ));
    }
    let existing: Vec<&Column> = existing
        .iter()
        .filter(|c| !(has_partition && c.name == PARTITION_COLUMN))
        .collect();
    for (i, w) in wanted.iter().enumerate() {
        match existing.iter().find(|c| c.name == w.name) {
            None => diff.push(format!("new column `{}` ({})", w.name, up(&w.ty))),
            Some(c) if c.ty != w.ty && !all_null[i] => diff.push(format!(
                "column `{}` is {} in the table but {} in the output",
                w.name,
                up(&c.ty),
                up(&w.ty)
            )),
            Some(_) => {}
        }
    }
    for c in &existing {
        if !wanted.iter().any(|w| w.name == c.name) {
            diff.push(format!(
                "column `{}` ({}) is missing from the output",
                c.name,
                up(&c.ty)
            ));
        }
    }
    diff
}

/// Rows per record batch when loading.
pub(crate) const LOAD_BATCH_ROWS: usize = 8192;

/// A manager's database inside one open transaction (or, for reads, one
/// connection): what the shared core needs of a driver.
pub(crate) trait TableTx {
    /// The driver's first, second and third bound parameters (`?1`, `$1`).
    const PARAMS: [&'static str; 3];
    /// The declared type of the [`PARTITION_COLUMN`].
    const PARTITION_TYPE: &'static str;
    /// The table as SQL names it (`"t"`, `"schema"."t"`).
    fn qualified(&self, table: &str) -> String;
    /// The table as messages name it.
    fn place(&self, table: &str) -> String;
    /// The declared columns of a table, or `None` when it does not exist.
    fn columns(&mut self, table: &str) -> anyhow::Result<Option<Vec<Column>>>;
    /// Runs statements that take no parameters.
    fn batch(&mut self, sql: &str) -> anyhow::Result<()>;
    /// Runs one statement with text parameters; returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[&str]) -> anyhow::Result<u64>;
    /// The integer in the first column of the first row; `None` without rows.
    fn query_int(&mut self, sql: &str, params: &[&str]) -> anyhow::Result<Option<i64>>;
    /// The boolean that a `SELECT EXISTS (…)` returns.
    fn query_flag(&mut self, sql: &str, params: &[&str]) -> anyhow::Result<bool>;
    /// Records in [`STORED_TABLE`] that a partition (or, as the key `''`,
    /// an unpartitioned table) is stored with `rows` rows.
    fn record_stored(&mut self, table: &str, key: Option<&str>, rows: u64) -> anyhow::Result<()>;
    /// Gives the named columns of `table` (whose columns are `existing`)
    /// new types; they hold no value. By default one `ALTER TABLE … ALTER
    /// COLUMN … TYPE` each, with [`TableTx::emptied_as`]'s clause.
    fn retype(
        &mut self,
        table: &str,
        _existing: &[Column],
        new_types: &[(String, String)],
    ) -> anyhow::Result<()> {
        let qualified = self.qualified(table);
        for (name, ty) in new_types {
            self.batch(&format!(
                "ALTER TABLE {qualified} ALTER COLUMN {} TYPE {}",
                quote_ident(name),
                Self::emptied_as(ty)
            ))?;
        }
        Ok(())
    }
    /// What follows `TYPE` to give an empty column type `ty`.
    fn emptied_as(ty: &str) -> String {
        format!("{ty} USING CAST(NULL AS {ty})")
    }
}

/// A table manager as [`handle_output`] drives it: what it stores and how.
pub(crate) trait TableManager {
    /// The resource type, as messages name it: `sqlite`, `postgres`, `duckdb`.
    const KIND: &'static str;
    /// The table as messages name it.
    fn place(&self, table: &str) -> String;
    /// The `path` of what was stored in `table`, as history records it.
    fn stored_path(&self, table: &str) -> String;
    /// Checks an asset's table name (Postgres limits its length).
    fn check_name(&self, _table: &str) -> anyhow::Result<()> {
        Ok(())
    }
    /// The column type an output's field is stored as, or why it cannot be.
    fn column_type(&self, f: &Field) -> anyhow::Result<String>;
    /// Stores an output with no columns ([`store_nothing`]), in one
    /// transaction.
    fn store_nothing(&self, table: &str, partition: Option<&str>) -> anyhow::Result<u64>;
    /// Stores the rows of `t`, whose columns are `cols`, as the asset's
    /// table or partition, in one transaction. Returns the rows stored.
    fn store_rows(&self, ctx: &OutputContext, t: &Table, cols: &[Column]) -> anyhow::Result<u64>;
    /// An error as it may leave the manager (Postgres redacts the URL's
    /// password).
    fn clean(&self, e: anyhow::Error) -> anyhow::Error {
        e
    }
}

/// Stores `t` as the asset's table or partition: its columns checked, an
/// output without columns stored as an empty partition.
fn store<M: TableManager>(m: &M, ctx: &OutputContext, t: &Table) -> anyhow::Result<u64> {
    let name = table_name(&ctx.asset_key);
    m.check_name(&name)?;
    let partition = partition_key(ctx);
    if t.schema.fields().is_empty() {
        return m.store_nothing(&name, partition);
    }
    let wanted = wanted_columns(M::KIND, t, partition.is_some(), |f| m.column_type(f))?;
    m.store_rows(ctx, t, &wanted)
}

/// [`crate::io::IoManager::handle_output`] of a table manager: the output
/// as a table (read from its file when it is one), stored, logged with its
/// timing.
pub(crate) fn handle_output<M: TableManager>(
    m: &M,
    ctx: &OutputContext,
    data: Data,
) -> anyhow::Result<Stored> {
    let t = match data {
        Data::Table(t) => t,
        Data::File { path, format } => Arc::new(table::read(&path, format)?),
        Data::Bytes(_) => bail!(
            "the {} manager stores tables: opaque bytes (`file` format) cannot be stored",
            M::KIND
        ),
    };
    let name = table_name(&ctx.asset_key);
    let started = Instant::now();
    let rows = store(m, ctx, &t)
        .with_context(|| format!("cannot store `{}` in {}", ctx.asset_key, m.place(&name)))
        .map_err(|e| m.clean(e))?;
    ctx.log.info(format!(
        "stored {rows} rows in {} ({:.3}s)",
        m.place(&name),
        started.elapsed().as_secs_f64()
    ));
    Ok(Stored {
        path: Some(m.stored_path(&name)),
        rows: Some(rows),
        bytes: None,
    })
}

/// Every batch of `t` converted, column by column, with `convert` (given
/// the array and the column's name) before the database is touched: each
/// batch's rows and columns.
pub(crate) fn convert_batches<C>(
    t: &Table,
    convert: impl Fn(&ArrayRef, &str) -> anyhow::Result<C>,
) -> anyhow::Result<Vec<(usize, Vec<C>)>> {
    let fields = t.schema.fields();
    t.batches
        .iter()
        .map(|b| {
            let cols = b
                .columns()
                .iter()
                .zip(fields)
                .map(|(a, f)| convert(a, f.name()))
                .collect::<anyhow::Result<Vec<C>>>()?;
            Ok((b.num_rows(), cols))
        })
        .collect()
}

/// The error for column `name` of type `ty`, which a manager cannot
/// store; `can` lists what it can, when the message says so.
pub(crate) fn cannot_store(
    kind: &str,
    name: &str,
    ty: &DataType,
    can: Option<&str>,
) -> anyhow::Error {
    let can = can.map_or(String::new(), |c| format!(" ({c} can be)"));
    anyhow!("column `{name}` has type {ty}, which the {kind} manager cannot store{can}")
}

/// `a` cast to `to` strictly: a value that does not fit is an error
/// naming column `name`.
pub(crate) fn cast_strict(a: &ArrayRef, to: &DataType, name: &str) -> anyhow::Result<ArrayRef> {
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow::compute::cast_with_options(a, to, &strict).map_err(|e| {
        anyhow!(
            "column `{name}` ({}) cannot be stored as {to}: {e}",
            a.data_type()
        )
    })
}

/// `a` as the concrete array type it was cast to.
pub(crate) fn downcast<A: Clone + 'static>(a: &ArrayRef) -> A {
    a.as_any()
        .downcast_ref::<A>()
        .expect("cast to the matching type")
        .clone()
}

/// The columns an output asks for, with the types `type_of` gives (or its
/// error). A partitioned asset's output may not have a [`PARTITION_COLUMN`].
pub(crate) fn wanted_columns(
    kind: &str,
    t: &Table,
    partitioned: bool,
    type_of: impl Fn(&Field) -> anyhow::Result<String>,
) -> anyhow::Result<Vec<Column>> {
    let fields = t.schema.fields();
    let mut wanted = Vec::with_capacity(fields.len());
    for f in fields {
        if partitioned && f.name() == PARTITION_COLUMN {
            bail!(
                "the output has a column named `{PARTITION_COLUMN}`, which the {kind} manager \
                 uses for the partition key of a partitioned asset: rename it"
            );
        }
        wanted.push(Column {
            name: f.name().clone(),
            ty: type_of(f)?,
        });
    }
    Ok(wanted)
}

/// The partition key of an output, if it is partitioned.
pub(crate) fn partition_key(ctx: &OutputContext) -> Option<&str> {
    ctx.partition.as_ref().map(|p| p.key.as_str())
}

/// [`prepare_target`]'s `on_change` for a manager's output: an error naming
/// the differences, unless the resource sets `replace_on_schema_change`
/// ([`crate::io::schema_changed`]).
fn on_change<'a>(
    ctx: &'a OutputContext,
    resource_key: &'a str,
    replace: bool,
) -> impl FnOnce(&str, &[String]) -> anyhow::Result<()> + 'a {
    move |place, diff| {
        crate::io::schema_changed(
            ctx,
            place,
            diff,
            resource_key,
            replace,
            ctx.partition.is_some(),
        )
    }
}

/// [`prepare_target`] for a manager's output: the asset's table, the
/// partition of `ctx`, and the resource's schema-change rule
/// ([`on_change`]). Returns whether it created the table.
pub(crate) fn prepare_output<T: TableTx>(
    tx: &mut T,
    ctx: &OutputContext,
    resource_key: &str,
    replace_on_schema_change: bool,
    wanted: &[Column],
    all_null: &[bool],
) -> anyhow::Result<bool> {
    prepare_target(
        tx,
        &table_name(&ctx.asset_key),
        partition_key(ctx),
        wanted,
        all_null,
        on_change(ctx, resource_key, replace_on_schema_change),
    )
}

/// Makes the asset's `table` ready to receive `wanted` rows for
/// `partition` inside the open transaction: gives columns that hold no
/// value yet the type `wanted` has for them, applies the schema-change rule
/// (`on_change` gets the table's place and the differences, and returns
/// the error, or `Ok` to drop and recreate the table), creates the table
/// when there is none, else deletes the rows being replaced (the
/// partition's, or the whole table's). `all_null[i]` says that column `i`
/// holds only nulls (it then matches any type). Returns whether it created
/// the table.
pub(crate) fn prepare_target<T: TableTx>(
    tx: &mut T,
    table: &str,
    partition: Option<&str>,
    wanted: &[Column],
    all_null: &[bool],
    on_change: impl FnOnce(&str, &[String]) -> anyhow::Result<()>,
) -> anyhow::Result<bool> {
    let qualified = tx.qualified(table);
    let mut existing = tx.columns(table)?;
    if let Some(cols) = &existing
        && retype_empty_columns(tx, table, cols, wanted, all_null)?
    {
        existing = tx.columns(table)?;
    }
    if let Some(existing) = existing {
        let diff = schema_diff(&existing, wanted, partition.is_some(), all_null);
        if diff.is_empty() {
            clear_partition(tx, table, partition)?;
            return Ok(false);
        }
        on_change(&tx.place(table), &diff)?;
        tx.batch(&format!("DROP TABLE {qualified}"))?;
    }
    let mut defs = Vec::with_capacity(wanted.len() + 1);
    if partition.is_some() {
        defs.push(format!(
            "{} {} NOT NULL",
            quote_ident(PARTITION_COLUMN),
            T::PARTITION_TYPE
        ));
    }
    for c in wanted {
        defs.push(format!("{} {}", quote_ident(&c.name), c.ty));
    }
    tx.batch(&format!("CREATE TABLE {qualified} ({})", defs.join(", ")))
        .with_context(|| format!("cannot create {}", tx.place(table)))?;
    Ok(true)
}

/// Gives the table's columns that hold no value yet (created from a
/// header-only or all-empty output, which carries no types) the type
/// `wanted` has for them, when it has one. Returns whether it did.
fn retype_empty_columns<T: TableTx>(
    tx: &mut T,
    table: &str,
    existing: &[Column],
    wanted: &[Column],
    all_null: &[bool],
) -> anyhow::Result<bool> {
    let qualified = tx.qualified(table);
    let mut new_types = Vec::new();
    for (i, w) in wanted.iter().enumerate() {
        let Some(c) = existing.iter().find(|c| c.name == w.name) else {
            continue;
        };
        if c.ty.eq_ignore_ascii_case(&w.ty) || all_null[i] {
            continue;
        }
        let has_value = tx.query_flag(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {qualified} WHERE {} IS NOT NULL)",
                quote_ident(&c.name)
            ),
            &[],
        )?;
        if !has_value {
            new_types.push((c.name.clone(), w.ty.clone()));
        }
    }
    if new_types.is_empty() {
        return Ok(false);
    }
    tx.retype(table, existing, &new_types)?;
    Ok(true)
}

/// Deletes the stored rows of `partition` (all rows when unpartitioned).
pub(crate) fn clear_partition<T: TableTx>(
    tx: &mut T,
    table: &str,
    partition: Option<&str>,
) -> anyhow::Result<u64> {
    let qualified = tx.qualified(table);
    match partition {
        Some(key) => tx.execute(
            &format!(
                "DELETE FROM {qualified} WHERE {} = {}",
                quote_ident(PARTITION_COLUMN),
                T::PARAMS[0]
            ),
            &[key],
        ),
        None => tx.execute(&format!("DELETE FROM {qualified}"), &[]),
    }
}

/// Stores an output with no columns (an empty file): the partition (or
/// the whole table) is emptied, and recorded as stored with 0 rows. A
/// table that does not exist yet is not created: no columns, no types.
pub(crate) fn store_nothing<T: TableTx>(
    tx: &mut T,
    table: &str,
    partition: Option<&str>,
) -> anyhow::Result<u64> {
    if tx.columns(table)?.is_some() {
        clear_partition(tx, table, partition)?;
    }
    tx.record_stored(table, partition, 0)?;
    Ok(0)
}

/// The rows recorded for a stored partition (key `''`: the whole table),
/// or `None` when nothing is recorded.
fn stored_rows<T: TableTx>(
    tx: &mut T,
    table: &str,
    partition: Option<&str>,
) -> anyhow::Result<Option<i64>> {
    if tx.columns(STORED_TABLE)?.is_none() {
        return Ok(None);
    }
    let [p1, p2, _] = T::PARAMS;
    tx.query_int(
        &format!(
            "SELECT \"rows\" FROM {} WHERE \"table\" = {p1} AND \"partition\" = {p2}",
            tx.qualified(STORED_TABLE)
        ),
        &[table, partition.unwrap_or("")],
    )
}

/// Whether the asset's table holds `partition` (or, unpartitioned, exists).
/// An empty partition is stored: its existence is recorded, since no row
/// says so. One with rows must still have them.
pub(crate) fn exists<T: TableTx>(
    tx: &mut T,
    asset_key: &str,
    partition: Option<&str>,
) -> anyhow::Result<bool> {
    let table = table_name(asset_key);
    if stored_rows(tx, &table, partition)? == Some(0) {
        return Ok(true);
    }
    let Some(columns) = tx.columns(&table)? else {
        return Ok(false);
    };
    let Some(key) = partition else {
        return Ok(true);
    };
    if !columns.iter().any(|c| c.name == PARTITION_COLUMN) {
        return Ok(false);
    }
    tx.query_flag(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE {} = {})",
            tx.qualified(&table),
            quote_ident(PARTITION_COLUMN),
            T::PARAMS[0]
        ),
        &[key],
    )
}

/// Reads a stored asset's table (or one partition of it) with `rows`,
/// given the columns to read (without [`PARTITION_COLUMN`] when reading a
/// partition) and the table's name. An output stored empty before the
/// table had any columns reads as an empty table.
pub(crate) fn read<T: TableTx>(
    tx: &mut T,
    asset_key: &str,
    partition: Option<&str>,
    rows: impl FnOnce(&mut T, Vec<Column>, &str) -> anyhow::Result<Table>,
) -> anyhow::Result<Table> {
    let table = table_name(asset_key);
    let Some(columns) = tx.columns(&table)? else {
        if stored_rows(tx, &table, partition)? == Some(0) {
            return Ok(table::empty_table());
        }
        bail!(
            "{} does not exist: materialize `{asset_key}` first",
            tx.place(&table)
        );
    };
    if partition.is_some() && !columns.iter().any(|c| c.name == PARTITION_COLUMN) {
        bail!(
            "{} has no `{PARTITION_COLUMN}` column: it was not written for a partitioned asset",
            tx.place(&table)
        );
    }
    let columns = columns
        .into_iter()
        .filter(|c| !(partition.is_some() && c.name == PARTITION_COLUMN))
        .collect();
    rows(tx, columns, &table)
}

/// The `SELECT` of one partition's rows (or all rows) of `qualified`, in
/// the order `order` (`rowid`, `ctid`) gives; the key is parameter `p1`.
pub(crate) fn select_rows(
    select: &str,
    qualified: &str,
    partition: Option<&str>,
    p1: &str,
    order: &str,
) -> String {
    match partition {
        Some(_) => format!(
            "SELECT {select} FROM {qualified} WHERE {} = {p1} ORDER BY {order}",
            quote_ident(PARTITION_COLUMN)
        ),
        None => format!("SELECT {select} FROM {qualified} ORDER BY {order}"),
    }
}

/// One loaded column being built from a driver's values.
pub(crate) trait ColumnBuilder {
    /// A builder for a column of Arrow type `t`.
    fn new(t: &DataType) -> Self;
    /// The column built so far; the builder starts again empty.
    fn finish(&mut self) -> ArrayRef;
}

/// Rows read back into record batches of [`LOAD_BATCH_ROWS`] rows.
pub(crate) struct Batcher<B> {
    schema: Arc<Schema>,
    place: String,
    builders: Vec<B>,
    batches: Vec<RecordBatch>,
    rows: usize,
}

impl<B: ColumnBuilder> Batcher<B> {
    /// For the columns of `schema`, read from `place` (for messages).
    pub(crate) fn new(schema: Arc<Schema>, place: String) -> Self {
        let builders = schema
            .fields()
            .iter()
            .map(|f| B::new(f.data_type()))
            .collect();
        Batcher {
            schema,
            place,
            builders,
            batches: Vec::new(),
            rows: 0,
        }
    }

    /// Adds one row: `push(i, builder)` appends column `i`'s value.
    pub(crate) fn push_row(
        &mut self,
        mut push: impl FnMut(usize, &mut B) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        for (i, b) in self.builders.iter_mut().enumerate() {
            push(i, b).map_err(|e| {
                anyhow!(
                    "{}: column `{}`: {e}",
                    self.place,
                    self.schema.field(i).name()
                )
            })?;
        }
        self.rows += 1;
        if self.rows == LOAD_BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        let cols: Vec<ArrayRef> = self.builders.iter_mut().map(B::finish).collect();
        self.batches
            .push(RecordBatch::try_new(self.schema.clone(), cols)?);
        self.rows = 0;
        Ok(())
    }

    /// The table read (one empty batch when there were no rows).
    pub(crate) fn finish(mut self) -> anyhow::Result<Table> {
        if self.rows > 0 || self.batches.is_empty() {
            self.flush()?;
        }
        Ok(Table {
            schema: self.schema,
            batches: self.batches,
        })
    }
}

/// What the managers' tests share: a resource context, an output of a
/// partitioned asset `t`, a table of integers, and the atomicity test.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    use crate::io::{Data, IoManager, OutputContext, PartitionRef, ResourceCx, Table};

    /// The context of resource `io_manager` of a project in `dir`.
    pub(crate) fn cx(dir: &Path) -> ResourceCx {
        ResourceCx {
            resource_key: "io_manager".into(),
            project_root: dir.to_path_buf(),
            state_dir: dir.join(".dg"),
            run_id: "r".into(),
        }
    }

    /// The output of partition `key` of asset `t`.
    pub(crate) fn output(key: &str) -> OutputContext {
        OutputContext {
            asset_key: "t".into(),
            partition: Some(PartitionRef {
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

    /// A table of one Int64 column `v`.
    pub(crate) fn ints(values: &[i64]) -> Data {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let col: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
        let batch = RecordBatch::try_new(schema.clone(), vec![col]).unwrap();
        Data::Table(Arc::new(Table {
            schema,
            batches: vec![batch],
        }))
    }

    /// A store that fails inside the transaction (table `t` has
    /// `CHECK (v < 100)`), after the partition's rows were deleted and the
    /// new ones written, rolls both back: `values` (`t`'s `v`, in order)
    /// are the first store's.
    pub(crate) fn a_failure_changes_nothing(m: &dyn IoManager, values: impl Fn() -> Vec<i64>) {
        m.handle_output(&output("a"), ints(&[1, 2])).unwrap();
        let err = m.handle_output(&output("a"), ints(&[3, 500])).unwrap_err();
        assert!(format!("{err:#}").contains("CHECK"), "{err:#}");
        assert_eq!(values(), vec![1, 2]);
        assert!(m.exists(&output("a")).unwrap());
        assert!(!m.exists(&output("b")).unwrap());
    }
}
