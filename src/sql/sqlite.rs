//! In-database SQL on a `sqlite` resource: a `sql` asset's query (and an
//! asset check's) runs inside the database file the asset is stored in,
//! over TEMP views of its inputs' tables; no row passes through dg.

use std::fs::File;
use std::io::Write;
use std::time::Instant;

use arrow::datatypes::DataType;
use rusqlite::Connection;

use super::embedded::{affinity, bind_params, count_rows, describe, prepare};
use super::text::statement_text;
use super::{
    CheckError, CheckQuery, CheckRows, Dialect, InDbError, QueryError, RunQuery, SqlEngine,
    check_result_columns, impl_in_database, input_columns, log_view, quote_ident, same_file,
    view_columns, view_select,
};
use crate::io::Stored;
use crate::io::db::{Column, TableTx, partition_key};
use crate::io::sqlite::SqliteManager;

impl_in_database!(
    SqliteManager,
    Dialect {
        engine: Some(SqlEngine::Sqlite),
        kind: "sqlite",
        has_schemas: false,
    }
);

impl SqliteManager {
    /// Where the database is, as messages name it: its path.
    pub(crate) fn where_(&self) -> String {
        self.path().display().to_string()
    }

    /// Whether `other` stores in the same file (by its canonical path when
    /// the paths differ).
    pub(crate) fn same_place(&self, other: &SqliteManager) -> bool {
        same_file(self.path(), other.path())
    }

    fn run_inside(&self, q: &RunQuery<'_>, log: &mut File) -> Result<Stored, InDbError> {
        run_in_db(self, q, log)
    }

    fn check_inside(&self, q: &CheckQuery<'_>) -> Result<CheckRows, CheckError> {
        check_in_sqlite(self, q)
    }
}

/// The temp table that holds the result until it replaces the partition.
const RESULT_TABLE: &str = "dg_result";

/// [`InDatabase::run`](super::InDatabase::run) on SQLite: the input views'
/// keys are bound into temporary tables.
fn run_in_db(db: &SqliteManager, q: &RunQuery<'_>, log: &mut File) -> Result<Stored, InDbError> {
    use crate::io::sqlite::{PARTITION_COLUMN, table_name};
    use InDbError::{Failed, Fallback};

    let asset_key = q.asset_key();
    let where_ = format!("sqlite:{}", db.path().display());
    let started = Instant::now();
    let _guard = db.lock_writes();
    let mut conn = db.open(true).map_err(|e| q.failed(format!("{e:#}")))?;
    let _ = conn.execute_batch("PRAGMA temp_store = MEMORY;");
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| q.failed(format!("cannot start a transaction on {where_}: {e}")))?;
    let sqlerr = |e: rusqlite::Error| q.failed(format!("{where_}: {e}"));

    // Inputs: TEMP views (temp objects shadow main's tables of the same name).
    for (i, input) in q.inputs.iter().enumerate() {
        let table = table_name(&input.asset_key);
        let place = db.place(&table);
        let columns =
            Some(columns_in(&tx, "main", &table).map_err(sqlerr)?).filter(|c| !c.is_empty());
        let cols = input_columns(input, &place, columns).map_err(|e| q.failed(e))?;
        let view = quote_ident(&input.name);
        let source = format!("main.{}", quote_ident(&table));
        let keys = match &input.partitions {
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
                Some(format!("temp.{kt}"))
            }
            None => None,
        };
        let select = view_select(&cols, &source, keys.as_deref(), "rowid");
        let names: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
        tx.execute_batch(&format!(
            "CREATE TEMP VIEW {view} ({}) AS {select}",
            names.join(", ")
        ))
        .map_err(|e| {
            q.failed(format!(
                "input `{}`: cannot create its view: {e}",
                input.name
            ))
        })?;
        log_view(log, input, &source);
    }

    // The query, checked on its own first so errors point into it.
    let _ = writeln!(log, "[dg] sql: running inside {where_}\n{}", q.query);
    let (names, decls) = {
        let stmt = prepare(&tx, q.query).map_err(|e| q.sql_error(e))?;
        let names: Vec<String> = stmt.column_names().map(String::from).collect();
        let decls: Vec<Option<String>> = stmt
            .columns()
            .map(|c| c.decl_type().map(|s| s.to_ascii_uppercase()))
            .collect();
        (names, decls)
    };
    check_result_columns(&names).map_err(|e| q.sql_error(e))?;
    let partitioned = q.octx.partition.is_some();
    if partitioned && names.iter().any(|n| n == PARTITION_COLUMN) {
        return Err(q.failed(format!(
            "the result has a column named `{PARTITION_COLUMN}`, which the sqlite manager uses for the partition key: rename it"
        )));
    }
    let result = format!("temp.{}", quote_ident(RESULT_TABLE));
    let body = statement_text(q.query);
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
        bind_params(&mut stmt, q.params).map_err(sqlerr)?;
        stmt.raw_execute()
            .map_err(|e| q.sql_error(QueryError::Engine(describe(&e, q.query))))?;
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
        wanted.push(Column {
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
    for input in q.inputs {
        tx.execute_batch(&format!("DROP VIEW temp.{}", quote_ident(&input.name)))
            .map_err(sqlerr)?;
    }
    let target = table_name(asset_key);
    db.prepare_target(&tx, q.octx, &wanted, &all_null)
        .map_err(|e| {
            Failed(format!(
                "cannot store `{asset_key}` in {}: {e:#}",
                db.place(&target)
            ))
        })?;
    let cols: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
    let (into, select) = match &q.octx.partition {
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
    let inserted = match &q.octx.partition {
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
    db.tx(&tx)
        .record_stored(&target, partition_key(q.octx), inserted as u64)
        .map_err(|e| {
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
    Ok(Stored {
        path: Some(format!("sqlite:{}#{target}", db.path().display())),
        rows: Some(inserted as u64),
        bytes: None,
    })
}

// ---------------------------------------------------------------------------
// Asset checks: a query that passes when it returns no rows.

/// Runs a check's query inside the asset's `sqlite` database: `view` is a
/// TEMP view over the asset's table, filtered to `partition`. Nothing is
/// written to the database.
fn check_in_sqlite(db: &SqliteManager, q: &CheckQuery<'_>) -> Result<CheckRows, CheckError> {
    use crate::io::sqlite::{PARTITION_COLUMN, table_name};
    let table = table_name(q.asset_key);
    let conn = db
        .open(false)
        .map_err(|e| CheckError::Database(format!("{e:#}")))?;
    let _ = conn.execute_batch("PRAGMA temp_store = MEMORY;");
    let columns =
        columns_in(&conn, "main", &table).map_err(|e| CheckError::Database(e.to_string()))?;
    if columns.is_empty() {
        return Err(CheckError::Missing(db.place(&table)));
    }
    let cols: Vec<String> = view_columns(columns, q.partition.is_some())
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect();
    let filter = match q.partition {
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
        quote_ident(q.view),
        cols.join(", "),
        quote_ident(&table)
    ))
    .map_err(|e| CheckError::View {
        view: q.view.to_string(),
        message: e.to_string(),
    })?;
    let engine = |e: rusqlite::Error| QueryError::Engine(describe(&e, q.query));
    let mut stmt = prepare(&conn, q.query)?;
    bind_params(&mut stmt, q.params).map_err(engine)?;
    Ok(count_rows(&mut stmt).map_err(engine)?)
}

/// The columns of table `table` in `schema` (`main` or `temp`); empty when
/// there is no such table.
fn columns_in(conn: &Connection, schema: &str, table: &str) -> rusqlite::Result<Vec<Column>> {
    let mut stmt = conn.prepare("SELECT name, type FROM pragma_table_info(?1, ?2) ORDER BY cid")?;
    stmt.query_map([table, schema], |r| {
        Ok(Column {
            name: r.get(0)?,
            ty: r.get::<_, String>(1)?.to_ascii_uppercase(),
        })
    })?
    .collect()
}
