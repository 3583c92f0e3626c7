//! DuckDB: the embedded engine of `engine = "duckdb"` (an in-memory
//! database per query) and in-database SQL on a `duckdb` resource (the
//! query runs inside the manager's database file and schema, over TEMP
//! views of its inputs' tables; no row passes through dg).

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail};
use arrow::datatypes::{Field, Schema};
use duckdb::Connection;

use super::{
    CheckError, CheckQuery, CheckRows, Dialect, InDbError, Params, QueryError, RunError, RunQuery,
    SqlEngine, check_result_columns, impl_in_database, input_columns, log_view, view_columns,
    view_select,
};
use super::{cut_text, param_value, statement_text, to_positional};
use crate::io::db::{PARTITION_COLUMN, TableTx, quote_ident, table_name};
use crate::io::duckdb::*;
use crate::io::{Stored, Table};

// ---------------------------------------------------------------------------
// The embedded engine: an in-memory DuckDB.

/// An in-memory DuckDB database for one query.
///
/// Inputs go in through DuckDB's own Arrow scan (the Arrow C stream
/// interface): DuckDB reads the batches in parallel, with no conversion in
/// dg. That scan is registered on a connection of the C API, which the
/// `duckdb` crate does not expose, so the database is opened through the C
/// API and shared with the crate's [`Connection`] for the query.
pub struct Embedded {
    /// Dropped first (see `Drop`).
    conn: Option<Connection>,
    raw_con: duckdb::ffi::duckdb_connection,
    raw_db: duckdb::ffi::duckdb_database,
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.conn.take();
        // SAFETY: both handles were opened in `open` and are closed once,
        // here, after every other connection to the database is gone.
        unsafe {
            duckdb::ffi::duckdb_disconnect(&mut self.raw_con);
            duckdb::ffi::duckdb_close(&mut self.raw_db);
        }
    }
}

impl Embedded {
    /// A new, empty in-memory database.
    pub fn open() -> Result<Embedded, RunError> {
        use duckdb::ffi;
        let fail = || "cannot open the embedded DuckDB engine".to_string();
        let mut e = Embedded {
            conn: None,
            raw_con: std::ptr::null_mut(),
            raw_db: std::ptr::null_mut(),
        };
        // SAFETY: out-pointers to fields of `e`; a null path is an in-memory
        // database. On failure `Drop` closes what was opened (null handles
        // are ignored by DuckDB).
        unsafe {
            if ffi::duckdb_open(std::ptr::null(), &mut e.raw_db) != ffi::DuckDBSuccess {
                return Err(RunError::Engine(fail()));
            }
            if ffi::duckdb_connect(e.raw_db, &mut e.raw_con) != ffi::DuckDBSuccess {
                return Err(RunError::Engine(fail()));
            }
            e.conn = Some(
                Connection::open_from_raw(e.raw_db)
                    .map_err(|err| RunError::Engine(format!("{}: {err}", fail())))?,
            );
        }
        Ok(e)
    }

    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("open")
    }

    /// Runs `sql` on the C API connection.
    fn raw_query(&self, sql: &str) -> anyhow::Result<()> {
        use duckdb::ffi;
        let c = std::ffi::CString::new(sql)?;
        // SAFETY: a live connection, a NUL-terminated query, and a result
        // that is destroyed on every path.
        unsafe {
            let mut res: ffi::duckdb_result = std::mem::zeroed();
            let rc = ffi::duckdb_query(self.raw_con, c.as_ptr(), &mut res);
            let out = if rc == ffi::DuckDBSuccess {
                Ok(())
            } else {
                let msg = ffi::duckdb_result_error(&mut res);
                let msg = if msg.is_null() {
                    "unknown error".to_string()
                } else {
                    std::ffi::CStr::from_ptr(msg).to_string_lossy().into_owned()
                };
                Err(anyhow!("{}", first_line(&msg)))
            };
            ffi::duckdb_destroy_result(&mut res);
            out
        }
    }

    /// Creates table `name` with `t`'s columns and rows. Returns the rows.
    pub fn load(&self, name: &str, t: &Table) -> anyhow::Result<u64> {
        use arrow::ffi_stream::FFI_ArrowArrayStream;
        use arrow::record_batch::RecordBatchIterator;
        use duckdb::ffi;
        let mut fields = Vec::with_capacity(t.schema.fields().len());
        for f in t.schema.fields() {
            let ty = duck_type(f.data_type()).ok_or_else(|| {
                anyhow!(
                    "column `{}` has type {}, which DuckDB cannot hold",
                    f.name(),
                    f.data_type()
                )
            })?;
            fields.push(Field::new(f.name(), append_type(&ty), true));
        }
        let schema = Arc::new(Schema::new(fields));
        let batches = t
            .batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| cast_batch(b, &schema))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), schema.clone());
        let mut stream = FFI_ArrowArrayStream::new(Box::new(reader));
        let view = format!("dg_arrow/{name}");
        let cview = std::ffi::CString::new(view.clone())?;
        // SAFETY: `stream` is a valid Arrow C stream that outlives the view:
        // the view is dropped below, before `stream` is.
        let rc = unsafe {
            ffi::duckdb_arrow_scan(
                self.raw_con,
                cview.as_ptr(),
                &mut stream as *mut FFI_ArrowArrayStream as ffi::duckdb_arrow_stream,
            )
        };
        if rc != ffi::DuckDBSuccess {
            bail!("DuckDB cannot scan the Arrow data");
        }
        let made = self.raw_query(&format!(
            "CREATE TABLE {} AS SELECT * FROM {}",
            quote_ident(name),
            quote_ident(&view)
        ));
        self.raw_query(&format!("DROP VIEW {}", quote_ident(&view)))?;
        drop(stream);
        made?;
        Ok(rows)
    }

    /// Runs `query` with dg's parameters and returns its rows.
    pub fn query(&self, query: &str, params: &Params) -> Result<Table, QueryError> {
        let (text, names) = to_positional(statement_text(query))?;
        let values: Vec<Option<String>> = names
            .iter()
            .map(|n| param_value(params, n).map(str::to_string))
            .collect();
        let engine = |e: duckdb::Error| QueryError::Engine(describe(&e, &text));
        let mut stmt = self.conn().prepare(&text).map_err(engine)?;
        let t = query_table(&mut stmt, &values).map_err(engine)?;
        let names: Vec<&String> = t.schema.fields().iter().map(|f| f.name()).collect();
        check_result_columns(&names)?;
        Ok(t)
    }
}

/// Runs a check's query on `conn` and counts its rows, keeping the first.
fn check_query(conn: &Connection, query: &str, params: &Params) -> Result<CheckRows, CheckError> {
    let (text, names) = to_positional(statement_text(query)).map_err(QueryError::from)?;
    let values: Vec<Option<String>> = names
        .iter()
        .map(|n| param_value(params, n).map(str::to_string))
        .collect();
    let engine = |e: duckdb::Error| QueryError::Engine(describe(&e, &text));
    let mut stmt = conn.prepare(&text).map_err(engine)?;
    let t = query_table(&mut stmt, &values).map_err(engine)?;
    let mut out = CheckRows {
        rows: t.num_rows() as u64,
        first: None,
    };
    if let Some(b) = t.batches.iter().find(|b| b.num_rows() > 0) {
        let mut parts = Vec::with_capacity(b.num_columns());
        for (f, c) in t.schema.fields().iter().zip(b.columns()) {
            let v = if c.is_null(0) {
                "NULL".to_string()
            } else {
                arrow::util::display::array_value_to_string(c, 0).unwrap_or_default()
            };
            parts.push(format!("{}={v}", f.name()));
        }
        out.first = Some(cut_text(parts.join(", "), 300));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// In-database execution of `sql` assets and checks.

impl_in_database!(
    DuckdbManager,
    Dialect {
        engine: Some(SqlEngine::Duckdb),
        kind: "duckdb",
        has_schemas: true,
    }
);

impl DuckdbManager {
    /// [`InDatabase::run`](super::InDatabase::run) on DuckDB: the input
    /// views' keys are bound into temporary tables.
    fn run_inside(&self, q: &RunQuery<'_>, log: &mut std::fs::File) -> Result<Stored, InDbError> {
        use InDbError::Failed;
        let asset_key = q.asset_key();
        let where_ = self.where_();
        let dberr =
            |e: duckdb::Error| q.failed(format!("{where_}: {}", first_line(&e.to_string())));
        let started = Instant::now();

        // Nothing is touched before the query's text is checked.
        let (text, names) =
            to_positional(statement_text(q.query)).map_err(|e| q.sql_error(e.into()))?;
        let values: Vec<Option<String>> = names
            .iter()
            .map(|n| param_value(q.params, n).map(str::to_string))
            .collect();

        let mut conn = self
            .conn(true)
            .map_err(|e| q.failed(format!("{e:#}")))?
            .expect("created");
        let db = conn.db.clone();
        let _guard = lock(&db.write);
        let tx = conn.transaction().map_err(dberr)?;
        self.ensure_schema(&tx)
            .map_err(|e| q.failed(format!("{where_}: {e:#}")))?;
        // Sources are named with their catalog: a view named like its
        // source (`upstream` over `main.upstream`) must not find itself.
        let catalog = quote_ident(&current_database(&tx).map_err(dberr)?);

        for (i, input) in q.inputs.iter().enumerate() {
            let table = table_name(&input.asset_key);
            let place = self.place(&table);
            let columns = self
                .table_columns(&tx, &table)
                .map_err(|e| q.failed(format!("{where_}: {e:#}")))?;
            let cols = input_columns(input, &place, columns).map_err(|e| q.failed(e))?;
            let source = format!("{catalog}.{}", self.qualified(&table));
            let keys = match &input.partitions {
                Some(keys) => {
                    let name = quote_ident(&format!("dg_keys_{i}"));
                    tx.execute_batch(&format!("CREATE TEMP TABLE {name} (i BIGINT, k VARCHAR)"))
                        .map_err(dberr)?;
                    let kt = format!("temp.main.{name}");
                    let mut ins = tx
                        .prepare(&format!("INSERT INTO {kt} VALUES ($1, $2)"))
                        .map_err(dberr)?;
                    for (n, k) in keys.iter().enumerate() {
                        ins.execute(duckdb::params![n as i64, k]).map_err(dberr)?;
                    }
                    Some(kt)
                }
                None => None,
            };
            let select = view_select(&cols, &source, keys.as_deref(), "rowid");
            tx.execute_batch(&format!(
                "CREATE TEMP VIEW {} AS {select}",
                quote_ident(&input.name)
            ))
            .map_err(|e| {
                q.failed(format!(
                    "input `{}`: cannot create its view: {}",
                    input.name,
                    first_line(&e.to_string())
                ))
            })?;
            log_view(log, input, &source);
        }

        // The query, checked on its own first so that errors point into it,
        // then run into a temporary table. Unqualified names: the TEMP views
        // first, then the resource's schema.
        let _ = writeln!(log, "[dg] sql: running inside {where_}\n{}", q.query);
        tx.execute_batch(&format!(
            "SET search_path = {}",
            sql_string(&format!(
                "temp.main,{catalog}.{}",
                quote_ident(&self.schema)
            ))
        ))
        .map_err(dberr)?;
        let t0 = Instant::now();
        let result = format!("temp.main.{}", quote_ident(RESULT_TABLE));
        let engine = |e: duckdb::Error| q.sql_error(QueryError::Engine(describe(&e, &text)));
        tx.prepare(&text).map_err(engine)?;
        {
            let wrapped = format!(
                "CREATE TEMP TABLE {} AS SELECT * FROM (\n{text}\n)",
                quote_ident(RESULT_TABLE)
            );
            let mut stmt = tx.prepare(&wrapped).map_err(engine)?;
            stmt.execute(duckdb::params_from_iter(values.iter()))
                .map_err(engine)?;
        }
        for input in q.inputs {
            tx.execute_batch(&format!("DROP VIEW temp.main.{}", quote_ident(&input.name)))
                .map_err(dberr)?;
        }
        tx.execute_batch("RESET search_path").map_err(dberr)?;
        let made = columns_of(&tx, Some("temp"), "main", RESULT_TABLE)
            .map_err(|e| q.failed(format!("{e:#}")))?
            .unwrap_or_default();
        if made.is_empty() {
            return Err(q.sql_error(QueryError::NoColumns));
        }
        let partition = q.octx.partition.as_ref().map(|p| p.key.as_str());
        if partition.is_some() && made.iter().any(|c| c.name == PARTITION_COLUMN) {
            return Err(q.failed(format!(
                "the result has a column named `{PARTITION_COLUMN}`, which the duckdb manager uses for the partition key: rename it"
            )));
        }
        let count: i64 = tx
            .query_row(&format!("SELECT count(*) FROM {result}"), [], |r| r.get(0))
            .map_err(dberr)?;
        let _ = writeln!(
            log,
            "[dg] sql: {count} rows, {} columns in {} ms (inside the database)",
            made.len(),
            t0.elapsed().as_millis()
        );

        // Replace the partition (or table) with the result.
        let target = table_name(asset_key);
        let store_err = |e: anyhow::Error| {
            Failed(format!(
                "cannot store `{asset_key}` in {}: {e:#}",
                self.place(&target)
            ))
        };
        let all_null = vec![false; made.len()];
        self.prepare_target(&tx, q.octx, &made, &all_null)
            .map_err(store_err)?;
        let qualified = self.qualified(&target);
        let inserted = insert_from(&tx, &qualified, &made, &result, partition)
            .map_err(|e| store_err(anyhow!("{}", first_line(&e.to_string()))))?;
        self.tx(&tx)
            .record_stored(&target, partition, inserted as u64)
            .map_err(store_err)?;
        tx.commit()
            .map_err(|e| store_err(anyhow!("cannot commit: {}", first_line(&e.to_string()))))?;
        let _ = writeln!(
            log,
            "[dg] sql: ran inside {where_}; stored {inserted} rows in {qualified}; 0 rows moved through dg ({} ms)",
            started.elapsed().as_millis()
        );
        Ok(Stored {
            path: Some(format!(
                "duckdb:{}#{}.{target}",
                self.path.display(),
                self.schema
            )),
            rows: Some(inserted as u64),
            bytes: None,
        })
    }

    /// Runs a check's query inside the database: `view` is a TEMP view over
    /// the asset's table, filtered to `partition` (bound through a
    /// temporary table, never SQL text). Nothing is written to the
    /// database.
    fn check_inside(&self, q: &CheckQuery<'_>) -> Result<CheckRows, CheckError> {
        let table = table_name(q.asset_key);
        let database = |e: duckdb::Error| CheckError::Database(e.to_string());
        let Some(mut conn) = self
            .conn(false)
            .map_err(|e| CheckError::Database(format!("{e:#}")))?
        else {
            return Err(CheckError::Missing(self.place(&table)));
        };
        let tx = conn.transaction().map_err(database)?;
        let columns = self
            .table_columns(&tx, &table)
            .map_err(|e| CheckError::Database(format!("{e:#}")))?
            .ok_or_else(|| CheckError::Missing(self.place(&table)))?;
        let cols: Vec<String> = view_columns(columns, q.partition.is_some())
            .iter()
            .map(|c| format!("t.{}", quote_ident(&c.name)))
            .collect();
        let catalog = current_database(&tx).map_err(database)?;
        // With its catalog: the view may be named like the table.
        let source = format!("{}.{}", quote_ident(&catalog), self.qualified(&table));
        let filter = match q.partition {
            Some(k) => {
                tx.execute_batch("CREATE TEMP TABLE dg_check_key (k VARCHAR)")
                    .map_err(database)?;
                tx.execute("INSERT INTO temp.main.dg_check_key VALUES ($1)", [k])
                    .map_err(database)?;
                format!(
                    " WHERE t.{} IN (SELECT k FROM temp.main.dg_check_key)",
                    quote_ident(PARTITION_COLUMN)
                )
            }
            None => String::new(),
        };
        tx.execute_batch(&format!(
            "CREATE TEMP VIEW {} AS SELECT {} FROM {source} AS t{filter} ORDER BY t.rowid; SET search_path = {}",
            quote_ident(q.view),
            cols.join(", "),
            sql_string(&format!(
                "temp.main,{}.{}",
                quote_ident(&catalog),
                quote_ident(&self.schema)
            ))
        ))
        .map_err(|e| CheckError::View {
            view: q.view.to_string(),
            message: first_line(&e.to_string()).to_string(),
        })?;
        let out = check_query(&tx, q.query, q.params);
        let _ = tx.rollback();
        out
    }
}

fn current_database(conn: &Connection) -> Result<String, duckdb::Error> {
    conn.query_row("SELECT current_database()", [], |r| r.get(0))
}

/// `s` as a SQL string literal.
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_line_with_the_query_line() {
        let e = Embedded::open().unwrap();
        let err = e
            .query("SELECT 1 AS a,\n  FROMM x", &Params::default())
            .unwrap_err();
        let err = err.to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("line 2 of the query"), "{err}");
    }
}
