//! In-database SQL on a `postgres` resource: a `sql` asset's query (and an
//! asset check's) runs inside the manager's database and schema, over TEMP
//! views of its inputs' tables; no row passes through dg.

use std::io::Write;

use postgres::types::{Format as PgFormat, IsNull, ToSql, Type};

use super::{
    CheckError, CheckQuery, CheckRows, Dialect, InDbError, QueryError, RunQuery, impl_in_database,
    input_columns, log_view, view_columns, view_select,
};
use super::{param_value, statement_text, to_positional};
use crate::io::Stored;
use crate::io::db::{self, Column, PARTITION_COLUMN, TableTx, quote_ident, table_name};
use crate::io::postgres::*;
use crate::pg::error_text;

// ---------------------------------------------------------------------------
// In-database execution of a `sql` asset.

/// A parameter sent in text format, so that Postgres parses it as whatever
/// type the query gives it, as it would a literal; `None` is NULL.
#[derive(Debug)]
struct TextParam<'a>(Option<&'a str>);

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.to_sql(ty, out)
    }

    fn encode_format(&self, _ty: &Type) -> PgFormat {
        PgFormat::Text
    }
}

/// One line for an error of the user's query: the server's message, and the
/// line of the query it points at (`text` keeps the query's lines).
fn describe_pg(e: &postgres::Error, text: &str) -> String {
    let Some(db) = e.as_db_error() else {
        return error_text(e);
    };
    let mut msg = db.message().to_string();
    if let Some(postgres::error::ErrorPosition::Original(pos)) = db.position() {
        let before: String = text
            .chars()
            .take((*pos as usize).saturating_sub(1))
            .collect();
        if text.contains('\n') {
            let line = before.matches('\n').count() + 1;
            msg.push_str(&format!(" (line {line} of the query)"));
        }
    }
    msg
}

impl_in_database!(
    PostgresManager,
    Dialect {
        engine: None,
        kind: "postgres",
        has_schemas: true,
    }
);

impl PostgresManager {
    /// [`InDatabase::run`](super::InDatabase::run) on Postgres, in one
    /// transaction on one pooled connection: the input views' keys are
    /// bound into temporary tables, and unqualified names in the query
    /// resolve to the manager's schema first. Messages are redacted.
    fn run_inside(&self, q: &RunQuery<'_>, log: &mut std::fs::File) -> Result<Stored, InDbError> {
        use InDbError::{Failed, Fallback};
        let asset_key = q.asset_key();
        let fail = |what: String| q.failed(what).redacted(&self.secrets);
        let where_ = self.where_();
        let pgerr = |e: postgres::Error| fail(format!("{where_}: {}", error_text(&e)));
        let sql_error = |e: QueryError| q.sql_error(e).redacted(&self.secrets);
        let started = std::time::Instant::now();

        // Nothing is touched before the query's text is checked.
        let (text, names) =
            to_positional(statement_text(q.query)).map_err(|e| sql_error(e.into()))?;
        let target = table_name(asset_key);
        if target.len() > MAX_IDENT {
            return Err(fail(format!(
                "the table name `{target}` is longer than Postgres allows ({MAX_IDENT} bytes): \
                 shorten the asset key"
            )));
        }
        let values: Vec<TextParam> = names
            .iter()
            .map(|n| TextParam(param_value(q.params, n)))
            .collect();

        let mut conn = self.conn().map_err(|e| fail(format!("{e:#}")))?;
        self.ensure_schema(&mut conn)
            .map_err(|e| fail(format!("{where_}: {e:#}")))?;
        let mut tx = conn.transaction().map_err(pgerr)?;
        let qualified = self.qualified(&target);
        lock_table(&mut tx, &qualified).map_err(pgerr)?;
        // Unqualified names: TEMP views first (always), then the schema.
        tx.execute(
            "SELECT set_config('search_path', quote_ident($1) || ', ' || current_setting('search_path'), true)",
            &[&self.schema],
        )
        .map_err(pgerr)?;

        // Inputs: TEMP views.
        let mut temps: Vec<String> = Vec::new();
        for (i, input) in q.inputs.iter().enumerate() {
            let table = table_name(&input.asset_key);
            let place = self.place(&table);
            let columns = table_columns(&mut tx, &self.schema, &table)
                .map_err(|e| fail(format!("{where_}: {e:#}")))?;
            let cols = input_columns(input, &place, columns).map_err(|e| fail(e.to_string()))?;
            let source = self.qualified(&table);
            let keys = match &input.partitions {
                Some(keys) => {
                    let kt = quote_ident(&format!("dg_keys_{i}"));
                    tx.batch_execute(&format!("CREATE TEMP TABLE {kt} (i bigint, k text)"))
                        .map_err(pgerr)?;
                    tx.execute(
                        &format!(
                            "INSERT INTO pg_temp.{kt} (i, k) \
                             SELECT i, k FROM unnest($1::text[]) WITH ORDINALITY AS u(k, i)"
                        ),
                        &[keys],
                    )
                    .map_err(pgerr)?;
                    temps.push(format!("TABLE pg_temp.{kt}"));
                    Some(format!("pg_temp.{kt}"))
                }
                None => None,
            };
            let select = view_select(&cols, &source, keys.as_deref(), "ctid");
            let view = quote_ident(&input.name);
            tx.batch_execute(&format!("CREATE TEMP VIEW {view} AS {select}"))
                .map_err(|e| {
                    fail(format!(
                        "input `{}`: cannot create its view: {}",
                        input.name,
                        error_text(&e)
                    ))
                })?;
            // Views first: they depend on the key tables.
            temps.insert(0, format!("VIEW pg_temp.{view}"));
            log_view(log, input, &source);
        }

        // The query, prepared on its own first so that errors point into it.
        // A parameter whose type Postgres cannot infer is text.
        let _ = writeln!(
            log,
            "[dg] sql: running inside {}\n{}",
            self.secrets.redact(&where_),
            q.query
        );
        let mut types = vec![Type::UNKNOWN; names.len()];
        let prepare = |tx: &mut postgres::Transaction<'_>,
                       sql: &str,
                       types: &mut Vec<Type>|
         -> Result<Result<postgres::Statement, postgres::Error>, InDbError> {
            loop {
                tx.batch_execute("SAVEPOINT dg_prepare").map_err(pgerr)?;
                match tx.prepare_typed(sql, types) {
                    Ok(s) => {
                        tx.batch_execute("RELEASE SAVEPOINT dg_prepare")
                            .map_err(pgerr)?;
                        return Ok(Ok(s));
                    }
                    Err(e) => {
                        tx.batch_execute("ROLLBACK TO SAVEPOINT dg_prepare")
                            .map_err(pgerr)?;
                        let n = e
                            .as_db_error()
                            .filter(|d| {
                                *d.code() == postgres::error::SqlState::INDETERMINATE_DATATYPE
                            })
                            .and_then(|d| {
                                d.message().rsplit('$').next()?.trim().parse::<usize>().ok()
                            })
                            .filter(|&n| {
                                n >= 1 && n <= types.len() && types[n - 1] == Type::UNKNOWN
                            });
                        match n {
                            Some(n) => types[n - 1] = Type::TEXT,
                            None => return Ok(Err(e)),
                        }
                    }
                }
            }
        };
        let stmt = match prepare(&mut tx, &text, &mut types)? {
            Ok(s) => s,
            Err(e) => return Err(sql_error(QueryError::Engine(describe_pg(&e, &text)))),
        };
        let columns: Vec<(String, Type)> = stmt
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), c.type_().clone()))
            .collect();
        if columns.is_empty() {
            return Err(sql_error(QueryError::NoColumns));
        }
        let partition = q.octx.partition.as_ref().map(|p| p.key.as_str());
        let mut wanted: Vec<Column> = Vec::with_capacity(columns.len());
        for (i, c) in columns.iter().enumerate() {
            let n = c.0.as_str();
            if columns[..i].iter().any(|d| d.0 == n) {
                return Err(sql_error(QueryError::DuplicateColumn(n.to_string())));
            }
            if partition.is_some() && n == PARTITION_COLUMN {
                return Err(fail(format!(
                    "the result has a column named `{PARTITION_COLUMN}`, which the postgres manager uses for the partition key: rename it"
                )));
            }
            if n.len() > MAX_IDENT {
                return Err(fail(format!(
                    "column `{n}` has a name longer than Postgres allows ({MAX_IDENT} bytes)"
                )));
            }
            let ty: String = tx
                .query_one("SELECT format_type($1, NULL)", &[&c.1.oid()])
                .map_err(pgerr)?
                .get(0);
            wanted.push(Column {
                name: n.to_string(),
                ty: if ty == "unknown" { "text".into() } else { ty },
            });
        }
        let wrapped = format!("SELECT * FROM (\n{text}\n) AS dg_query");
        if let Err(e) = prepare(&mut tx, &wrapped, &mut types.clone())? {
            return Err(Fallback(format!(
                "the query cannot be used as a subquery in Postgres ({})",
                self.secrets.redact(&describe_pg(&e, &wrapped))
            )));
        }

        // The target table: created, checked, or replaced.
        let store_err = |what: String| {
            Failed(self.secrets.redact(&format!(
                "cannot store `{asset_key}` in {}: {what}",
                self.place(&target)
            )))
        };
        let all_null = vec![false; wanted.len()];
        let on_change = |place: &str, diff: &[String]| {
            if !self.replace_on_schema_change {
                let extra = if partition.is_some() {
                    " (this deletes the table's other partitions)"
                } else {
                    ""
                };
                anyhow::bail!(
                    "the query's columns differ from the table's: {}. Change the query back, \
                     drop the table, or set `replace_on_schema_change = true` on resource `{}` \
                     to replace the table{extra}",
                    diff.join("; "),
                    self.resource_key
                );
            }
            let _ = writeln!(
                log,
                "[dg] sql: {place}: the columns changed ({}); replacing the table",
                diff.join("; ")
            );
            Ok(())
        };
        let create = db::prepare_target(
            &mut self.tx(&mut tx),
            &target,
            partition,
            &wanted,
            &all_null,
            on_change,
        )
        .map_err(|e| store_err(format!("{e:#}")))?;

        // The rows: INSERT … SELECT, inside the server.
        let t0 = std::time::Instant::now();
        let cols: Vec<String> = wanted.iter().map(|c| quote_ident(&c.name)).collect();
        let mut bound: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let insert = match &partition {
            Some(key) => {
                types.push(Type::TEXT);
                bound.push(key);
                format!(
                    "INSERT INTO {qualified} ({}, {}) SELECT ${}, * FROM (\n{text}\n) AS dg_query",
                    quote_ident(PARTITION_COLUMN),
                    cols.join(", "),
                    types.len()
                )
            }
            None => format!(
                "INSERT INTO {qualified} ({}) SELECT * FROM (\n{text}\n) AS dg_query",
                cols.join(", ")
            ),
        };
        let stmt = tx
            .prepare_typed(&insert, &types)
            .map_err(|e| store_err(describe_pg(&e, &insert)))?;
        let inserted = tx
            .execute(&stmt, &bound)
            .map_err(|e| sql_error(QueryError::Engine(describe_pg(&e, &insert))))?;
        let _ = writeln!(
            log,
            "[dg] sql: {inserted} rows, {} columns in {} ms (inside the database)",
            wanted.len(),
            t0.elapsed().as_millis()
        );
        if create && partition.is_some() {
            tx.batch_execute(&format!(
                "CREATE INDEX ON {qualified} ({})",
                quote_ident(PARTITION_COLUMN)
            ))
            .map_err(|e| store_err(error_text(&e)))?;
        }
        for t in &temps {
            tx.batch_execute(&format!("DROP {t}")).map_err(pgerr)?;
        }
        self.tx(&mut tx)
            .record_stored(&target, partition, inserted)
            .map_err(|e| store_err(format!("{e:#}")))?;
        tx.commit()
            .map_err(|e| store_err(format!("cannot commit: {}", error_text(&e))))?;
        let _ = writeln!(
            log,
            "[dg] sql: ran inside {}; stored {inserted} rows in {qualified}; 0 rows moved through dg ({} ms)",
            self.secrets.redact(&where_),
            started.elapsed().as_millis()
        );
        Ok(Stored {
            path: Some(format!("{}#{}.{}", self.masked_url(), self.schema, target)),
            rows: Some(inserted),
            bytes: None,
        })
    }

    /// Runs an asset check's query inside this manager's database:
    /// `q.view` is a TEMP view over the asset's table filtered to
    /// `q.partition` (the key bound, never spliced). One transaction,
    /// rolled back: nothing is written. Passes when the query returns no
    /// rows.
    fn check_inside(&self, q: &CheckQuery<'_>) -> Result<CheckRows, CheckError> {
        let CheckQuery {
            asset_key,
            view,
            partition,
            query,
            params,
        } = *q;
        let redact = |m: String| self.secrets.redact(&m);
        let pgerr = |e: postgres::Error| CheckError::Database(redact(error_text(&e)));
        let (text, names) = to_positional(statement_text(query)).map_err(QueryError::from)?;
        let values: Vec<TextParam> = names
            .iter()
            .map(|n| TextParam(param_value(params, n)))
            .collect();
        let table = table_name(asset_key);
        let mut conn = self
            .conn()
            .map_err(|e| CheckError::Database(redact(format!("{e:#}"))))?;
        let mut tx = conn.transaction().map_err(pgerr)?;
        tx.execute(
            "SELECT set_config('search_path', quote_ident($1) || ', ' || current_setting('search_path'), true)",
            &[&self.schema],
        )
        .map_err(pgerr)?;
        let columns = table_columns(&mut tx, &self.schema, &table)
            .map_err(|e| CheckError::Database(redact(format!("{e:#}"))))?
            .ok_or_else(|| CheckError::Missing(self.place(&table)))?;
        let cols: Vec<String> = view_columns(columns, partition.is_some())
            .iter()
            .map(|c| format!("t.{}", quote_ident(&c.name)))
            .collect();
        let source = self.qualified(&table);
        let filter = match partition {
            Some(key) => {
                tx.batch_execute("CREATE TEMP TABLE dg_check_key (k text)")
                    .map_err(pgerr)?;
                tx.execute("INSERT INTO pg_temp.dg_check_key (k) VALUES ($1)", &[&key])
                    .map_err(pgerr)?;
                format!(
                    " WHERE t.{} = (SELECT k FROM pg_temp.dg_check_key)",
                    quote_ident(PARTITION_COLUMN)
                )
            }
            None => String::new(),
        };
        tx.batch_execute(&format!(
            "CREATE TEMP VIEW {} AS SELECT {} FROM {source} AS t{filter}",
            quote_ident(view),
            cols.join(", ")
        ))
        .map_err(|e| CheckError::View {
            view: view.to_string(),
            message: redact(error_text(&e)),
        })?;
        // Parameter types: what Postgres infers, else text.
        let mut types = vec![Type::UNKNOWN; names.len()];
        loop {
            tx.batch_execute("SAVEPOINT dg_prepare").map_err(pgerr)?;
            match tx.prepare_typed(&text, &types) {
                Ok(s) => {
                    types = s.params().to_vec();
                    tx.batch_execute("RELEASE SAVEPOINT dg_prepare")
                        .map_err(pgerr)?;
                    break;
                }
                Err(e) => {
                    tx.batch_execute("ROLLBACK TO SAVEPOINT dg_prepare")
                        .map_err(pgerr)?;
                    let n = e
                        .as_db_error()
                        .filter(|d| *d.code() == postgres::error::SqlState::INDETERMINATE_DATATYPE)
                        .and_then(|d| d.message().rsplit('$').next()?.trim().parse::<usize>().ok())
                        .filter(|&n| n >= 1 && n <= types.len() && types[n - 1] == Type::UNKNOWN);
                    match n {
                        Some(n) => types[n - 1] = Type::TEXT,
                        None => {
                            return Err(QueryError::Engine(redact(describe_pg(&e, &text))).into());
                        }
                    }
                }
            }
        }
        let wrapped = format!(
            "SELECT count(*) OVER (), row_to_json(dg_q)::text FROM (\n{text}\n) AS dg_q LIMIT 1"
        );
        let bound: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let engine = |e: postgres::Error| QueryError::Engine(redact(describe_pg(&e, &text)));
        let stmt = tx.prepare_typed(&wrapped, &types).map_err(engine)?;
        let row = tx.query_opt(&stmt, &bound).map_err(engine)?;
        let _ = tx.rollback();
        Ok(match row {
            None => CheckRows::default(),
            Some(r) => CheckRows {
                rows: r.get::<_, i64>(0) as u64,
                first: r
                    .get::<_, Option<String>>(1)
                    .map(|s| crate::sql::cut_text(s, 300)),
            },
        })
    }
}
