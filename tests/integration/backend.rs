//! Tests that run one scenario on each table backend: the `sqlite`, the
//! `postgres` and the `duckdb` I/O managers. A scenario is a function taking a [`Backend`];
//! each backend's test file has a `#[test]` that calls it with its backend,
//! so the tests keep their names (`sqlite_manager::…`, `postgres_manager::…`)
//! and can be selected per backend.
//!
//! [`Db::open`] returns `None` for Postgres when `DG_TEST_POSTGRES_URL` is
//! not set (the test is skipped; under `CI=true` it fails instead, see
//! [`pg_url`]), so a scenario starts with
//! `let Some(mut db) = Db::open(backend) else { return };`.

use std::path::Path;

use postgres::{Client, NoTls};
use tempfile::TempDir;

use crate::support::{Run, dg_now_with_env, project, service, unique_name};

/// Every hour of 2022-01-01 is over, and the day too.
pub const NOW: &str = "2022-01-02T00:00:00Z";

/// Where an asset's table is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    #[cfg(feature = "duckdb")]
    Duckdb,
}

/// The URL of the test server, or `None` (the test is skipped) when
/// `DG_TEST_POSTGRES_URL` is not set. Under CI (`CI=true`) a missing
/// variable fails the test instead. Reuse it in any test that needs
/// Postgres: `let Some(url) = pg_url() else { return };`.
pub fn pg_url() -> Option<String> {
    service("DG_TEST_POSTGRES_URL", "Postgres", "postgres.sh")
}

/// A state store URL on the test server, in a fresh schema of its own
/// (never dropped: the state store creates it); `None` as for [`pg_url`].
pub fn pg_state_url() -> Option<String> {
    Some(with_schema(&pg_url()?, &random_schema()))
}

/// `url` with `schema=<schema>` added to its query.
pub fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}schema={schema}")
}

/// A fresh schema name ([`unique_name`]).
pub fn random_schema() -> String {
    unique_name()
}

/// A test's schema: dropped (with its tables) when the test ends.
pub struct Pg {
    pub url: String,
    pub schema: String,
    pub client: Client,
}

impl Pg {
    /// A fresh schema on the test server, or `None` when there is none
    /// (the test is then skipped; see [`pg_url`]).
    pub fn open() -> Option<Pg> {
        pg_url().map(Pg::new)
    }

    pub fn new(url: String) -> Pg {
        let client = Client::connect(&url, NoTls).expect("connect to DG_TEST_POSTGRES_URL");
        Pg {
            url,
            schema: random_schema(),
            client,
        }
    }

    /// A state store URL on this schema (`[state] url = …`).
    pub fn state_url(&self) -> String {
        with_schema(&self.url, &self.schema)
    }

    /// Rows of `sql` (with `{s}` the quoted schema) as text, NULL as `NULL`.
    pub fn rows(&mut self, sql: &str) -> Vec<Vec<String>> {
        let sql = sql.replace("{s}", &format!("\"{}\"", self.schema));
        pg_rows(&mut self.client, &sql).unwrap()
    }

    pub fn resources(&self, extra: &str) -> String {
        self.resource("io_manager", extra)
    }

    /// A project that stores its assets in this schema (its
    /// `defs/resources.toml` is [`Pg::resources`]) and holds `files`.
    pub fn project(&self, files: &[(&str, &str)]) -> TempDir {
        project_with_resources(&self.resources(""), files)
    }

    /// A `postgres` resource called `name` on this schema (its URL from
    /// `DG_PG_URL`), with `extra` lines added to it.
    pub fn resource(&self, name: &str, extra: &str) -> String {
        format!(
            "[resources.{name}]\ntype = \"postgres\"\nurl = \"${{env:DG_PG_URL}}\"\nschema = \"{}\"\n{extra}",
            self.schema
        )
    }

    /// `dg --now NOW materialize ARGS…` with `DG_PG_URL` set.
    pub fn materialize(&self, dir: &Path, args: &[&str]) -> Run {
        let mut all = vec!["materialize"];
        all.extend(args);
        dg_now_with_env(dir, NOW, &all, &[("DG_PG_URL", &self.url)])
    }
}

/// A project holding `files` and `resources` as its `defs/resources.toml`.
fn project_with_resources(resources: &str, files: &[(&str, &str)]) -> TempDir {
    let mut all = vec![("defs/resources.toml", resources)];
    all.extend_from_slice(files);
    project(&all)
}

/// Rows of `sql` (simple query protocol) as text, NULL as `NULL`.
pub fn pg_rows(client: &mut Client, sql: &str) -> Result<Vec<Vec<String>>, postgres::Error> {
    Ok(client
        .simple_query(sql)?
        .iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self.client.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ));
    }
}

/// The `sqlite` manager's resource, storing in `data/warehouse.db`.
pub const SQLITE: &str = r#"
[resources.io_manager]
type = "sqlite"
path = "data/warehouse.db"
"#;

/// The SQLite database of a project using [`SQLITE`].
pub fn sqlite_db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("data/warehouse.db")).expect("the database exists")
}

/// Rows of `sql` as strings (NULL as `NULL`).
pub fn sqlite_rows(conn: &rusqlite::Connection, sql: &str) -> Vec<Vec<String>> {
    try_sqlite_rows(conn, sql).unwrap()
}

/// [`sqlite_rows`], or the error when the query fails.
pub fn try_sqlite_rows(
    conn: &rusqlite::Connection,
    sql: &str,
) -> rusqlite::Result<Vec<Vec<String>>> {
    use rusqlite::types::ValueRef;
    let mut stmt = conn.prepare(sql)?;
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    ValueRef::Null => "NULL".to_string(),
                    ValueRef::Integer(v) => v.to_string(),
                    ValueRef::Real(v) => v.to_string(),
                    ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    ValueRef::Blob(b) => format!("{b:?}"),
                })
            })
            .collect()
    })?
    .collect()
}

/// The `duckdb` manager's resource, storing in `data/warehouse.duckdb`.
#[cfg(feature = "duckdb")]
pub const DUCKDB: &str = r#"
[resources.io_manager]
type = "duckdb"
path = "data/warehouse.duckdb"
"#;

/// The DuckDB database of a project using [`DUCKDB`] (open it only while
/// no `dg` runs on the project: DuckDB lets one process hold the file).
#[cfg(feature = "duckdb")]
pub fn duckdb_db(dir: &Path) -> duckdb::Connection {
    duckdb::Connection::open(dir.join("data/warehouse.duckdb")).expect("the database exists")
}

/// Rows of `sql` as strings (NULL as `NULL`, booleans as `1`/`0` as on SQLite).
#[cfg(feature = "duckdb")]
pub fn duckdb_rows(conn: &duckdb::Connection, sql: &str) -> Vec<Vec<String>> {
    use duckdb::types::Value;
    let mut stmt = conn.prepare(sql).unwrap();
    let mut rows = stmt.query([]).unwrap();
    let n = rows.as_ref().unwrap().column_count();
    let mut out = Vec::new();
    while let Some(r) = rows.next().unwrap() {
        out.push(
            (0..n)
                .map(|i| match r.get::<_, Value>(i).unwrap() {
                    Value::Null => "NULL".to_string(),
                    Value::Boolean(b) => (b as i32).to_string(),
                    Value::TinyInt(v) => v.to_string(),
                    Value::SmallInt(v) => v.to_string(),
                    Value::Int(v) => v.to_string(),
                    Value::BigInt(v) => v.to_string(),
                    Value::HugeInt(v) => v.to_string(),
                    Value::UBigInt(v) => v.to_string(),
                    Value::Double(v) => v.to_string(),
                    Value::Text(t) => t,
                    other => format!("{other:?}"),
                })
                .collect(),
        );
    }
    out
}

/// One `#[test]` per scenario of `table_scenarios.rs`, on one backend:
/// `scenario_tests! { Backend::X; TEST => SCENARIO, … }` makes the test
/// `TEST`, which runs `table_scenarios::SCENARIO(Backend::X)`.
macro_rules! scenario_tests {
    ($backend:expr; $($test:ident => $scenario:ident,)*) => {$(
        #[test]
        fn $test() {
            crate::table_scenarios::$scenario($backend);
        }
    )*};
}
pub(crate) use scenario_tests;

/// One test's table store: a SQLite or DuckDB file in the project, or a
/// fresh Postgres schema (dropped at the end).
pub enum Db {
    Sqlite,
    Postgres(Box<Pg>),
    #[cfg(feature = "duckdb")]
    Duckdb,
}

impl Db {
    /// The store for `backend`; `None` when Postgres is not available
    /// locally (the test is then skipped).
    pub fn open(backend: Backend) -> Option<Db> {
        match backend {
            Backend::Sqlite => Some(Db::Sqlite),
            Backend::Postgres => Some(Db::Postgres(Box::new(Pg::new(pg_url()?)))),
            #[cfg(feature = "duckdb")]
            Backend::Duckdb => Some(Db::Duckdb),
        }
    }

    /// The `[resources.io_manager]` table, with `extra` lines added to it.
    pub fn resources(&self, extra: &str) -> String {
        match self {
            Db::Sqlite => format!("{SQLITE}{extra}"),
            Db::Postgres(pg) => pg.resources(extra),
            #[cfg(feature = "duckdb")]
            Db::Duckdb => format!("{DUCKDB}{extra}"),
        }
    }

    /// A project that stores its assets through this store (its
    /// `defs/resources.toml` is [`Db::resources`]) and holds `files`.
    pub fn project(&self, files: &[(&str, &str)]) -> TempDir {
        project_with_resources(&self.resources(""), files)
    }

    /// `dg --now NOW materialize ARGS…` in `dir`.
    pub fn materialize(&self, dir: &Path, args: &[&str]) -> Run {
        match self {
            #[cfg(feature = "duckdb")]
            Db::Duckdb => {
                let mut all = vec!["materialize"];
                all.extend(args);
                dg_now_with_env(dir, NOW, &all, &[])
            }
            Db::Sqlite => {
                let mut all = vec!["materialize"];
                all.extend(args);
                dg_now_with_env(dir, NOW, &all, &[])
            }
            Db::Postgres(pg) => pg.materialize(dir, args),
        }
    }

    /// Rows of `sql` as text (NULL as `NULL`). In `sql`, `{s}.` stands
    /// before a table name (the schema on Postgres, nothing on SQLite and DuckDB) and
    /// `{rowid}` for the column that orders rows as they were inserted.
    pub fn rows(&mut self, dir: &Path, sql: &str) -> Vec<Vec<String>> {
        match self {
            Db::Sqlite => sqlite_rows(
                &sqlite_db(dir),
                &sql.replace("{s}.", "").replace("{rowid}", "rowid"),
            ),
            Db::Postgres(pg) => pg.rows(&sql.replace("{rowid}", "ctid")),
            #[cfg(feature = "duckdb")]
            Db::Duckdb => duckdb_rows(
                &duckdb_db(dir),
                &sql.replace("{s}.", "").replace("{rowid}", "rowid"),
            ),
        }
    }
}

/// Stores 1,000,000 CSV rows of 5 columns into the manager `make` creates
/// (in-process, in a fresh temporary folder) and prints the rates: end to
/// end from the CSV file, then the two halves: reading the CSV into Arrow,
/// and storing the Arrow table (replacing the partition). `name` and `how`
/// label the lines. The `*_bulk_store_rate` tests (ignored) call it.
pub fn bulk_store_rate(
    name: &str,
    how: &str,
    make: impl FnOnce(&dg::io::ResourceCx) -> std::sync::Arc<dyn dg::io::IoManager>,
) {
    use dg::io::{Data, Format, OutputContext, ResourceCx};
    let dir = TempDir::new().unwrap();
    let csv = dir.path().join("in.csv");
    let mut text = String::from("id,amount,name,flag,day\n");
    for i in 0..1_000_000u64 {
        text.push_str(&format!(
            "{i},{}.25,name-{},{},2024-01-{:02}\n",
            i % 1000,
            i % 97,
            i % 2 == 0,
            i % 28 + 1
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let cx = ResourceCx::new(dir.path()).with_run_id("bench");
    let m = make(&cx);
    let ctx = OutputContext::new("bench", Format::Csv)
        .with_partition(dg::io::PartitionRef::new("p"))
        .with_run("bench", "bench");
    // End to end from the CSV file, then the two halves: reading the CSV
    // into Arrow, and storing the Arrow table (replacing the partition).
    let started = std::time::Instant::now();
    let stored = m
        .handle_output(
            &ctx,
            Data::File {
                path: csv.clone(),
                format: Format::Csv,
            },
        )
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(stored.rows, Some(1_000_000));
    eprintln!(
        "CSV → {name}: 1,000,000 rows in {secs:.3}s: {:.0} rows/s",
        1e6 / secs
    );
    let started = std::time::Instant::now();
    let table = dg::io::table::read(&csv, Format::Csv).unwrap();
    let read = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    m.handle_output(&ctx, Data::Table(std::sync::Arc::new(table)))
        .unwrap();
    let store = started.elapsed().as_secs_f64();
    eprintln!(
        "read CSV {read:.3}s; store Arrow (replacing 1,000,000 rows{how}) {store:.3}s: {:.0} rows/s",
        1e6 / store
    );
}
