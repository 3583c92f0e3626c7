//! In-database SQL: a `sql` asset stored by a `sqlite` resource whose
//! inputs all live in the same database runs there, with no row passing
//! through dg (`dg/rows_moved = 0`, counted), and falls back to the embedded
//! engine otherwise (`dg/rows_moved = N`).

use std::path::Path;

use serde_json::Value;
use tempfile::TempDir;

use crate::backend::{NOW, sqlite_db, sqlite_rows};
use crate::support::{
    HOURLY_DAILY, Run, assert_contains, dg, json, materialize_json, metadata_in, project, step_logs,
};

const RESOURCES: &str = r#"
[resources.warehouse]
type = "sqlite"
path = "data/warehouse.db"
"#;

/// Hourly upstream (a shell step writing CSV) and a daily `sql` downstream
/// stored by `daily_manager`, running `query`.
pub(crate) fn assets(daily_manager: &str, query: &str) -> String {
    format!(
        r#"{HOURLY_DAILY}
[assets.upstream]
partitions = "hourly"
io_manager = "warehouse"
shell = "printf 'date,n\\n%s,1\\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""

[assets.daily]
partitions = "daily"
io_manager = "{daily_manager}"
deps = ["upstream"]
sql = """{query}"""
"#
    )
}

fn materialize(dir: &Path, args: &[&str]) -> Run {
    materialize_json(dir, NOW, args)
}

/// Rewrites the project's assets with `daily` (stored by `warehouse`)
/// running `query`.
pub(crate) fn write_query(dir: &Path, query: &str) {
    std::fs::write(dir.join("defs/assets.toml"), assets("warehouse", query)).unwrap();
}

/// The arguments that materialize `daily` for 2022-01-01 again.
pub(crate) const DAY_AGAIN: &[&str] = &["--partition", "2022-01-01", "-s", "daily"];

/// The partition keys `x'); DROP TABLE t; --` and `ok`: `up` (a shell
/// step) and `down` (a `sql` asset reading `up` and the table `t`), both
/// stored by `warehouse`.
pub(crate) const SQL_TEXT_KEYS: &str = r#"
[partitions.p]
type = "static"
keys = ["x'); DROP TABLE t; --", "ok"]

[assets.up]
partitions = "p"
io_manager = "warehouse"
shell = "printf 'k,v\\n%s,1\\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""

[assets.down]
partitions = "p"
io_manager = "warehouse"
deps = ["up"]
sql = "SELECT k, v, :partition_key AS bound, (SELECT count(*) FROM t) AS n FROM up"
"#;

/// A project whose `daily` is stored by `daily_manager` and runs `query`.
fn warehouse_project(daily_manager: &str, query: &str) -> TempDir {
    project(&[
        ("defs/resources.toml", RESOURCES),
        ("defs/assets.toml", &assets(daily_manager, query)),
    ])
}

/// `dg materialize ARGS…`, which must succeed; the run's id.
fn materialize_ok(dir: &Path, args: &[&str]) -> String {
    let run = materialize(dir, args);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    json(&run)["run_id"].as_str().unwrap().to_string()
}

/// The materialization metadata of `asset` in run `run_id`.
fn metadata(dir: &Path, run_id: &str, asset: &str) -> Value {
    metadata_in(
        &dg(dir, &["--now", NOW, "runs", "show", run_id, "--json"]),
        asset,
    )
}

/// The 24 rows of `daily` for 2022-01-01, with `n` as given.
pub(crate) fn hours(n: &str) -> Vec<Vec<String>> {
    (0..24)
        .map(|h| {
            vec![
                "2022-01-01".to_string(),
                format!("2022-01-01-{h:02}:00"),
                n.to_string(),
            ]
        })
        .collect()
}

#[test]
fn a_query_over_the_same_database_runs_there_and_moves_no_rows() {
    let dir = warehouse_project("warehouse", "SELECT * FROM upstream; -- every hour");
    let run_id = materialize_ok(dir.path(), &["--partition", "2022-01-01"]);

    let conn = sqlite_db(dir.path());
    assert_eq!(
        sqlite_rows(
            &conn,
            "SELECT dg_partition, date, n FROM daily ORDER BY rowid"
        ),
        hours("1")
    );
    assert_eq!(
        sqlite_rows(
            &conn,
            "SELECT type FROM pragma_table_info('daily') ORDER BY cid"
        ),
        vec![vec!["TEXT"], vec!["TEXT"], vec!["INTEGER"]]
    );

    let md = metadata(dir.path(), &run_id, "daily");
    assert_eq!(md["dg/in_database"], true, "{md:#}");
    assert_eq!(md["dg/rows_moved"], 0, "{md:#}");
    assert_eq!(md["dg/rows"], 24, "{md:#}");
    assert!(
        md["dg/path"]
            .as_str()
            .unwrap()
            .ends_with("warehouse.db#daily"),
        "{md:#}"
    );
    let log = step_logs(dir.path(), "daily");
    assert!(log.contains("0 rows moved through dg"), "{log}");
    assert!(!log.contains("loaded input"), "{log}");

    // Again, with the query narrowed: the partition is replaced, not appended to.
    write_query(
        dir.path(),
        "SELECT date, n + 1 AS n FROM upstream WHERE date < :partition_key || '-02'",
    );
    let run = materialize(dir.path(), DAY_AGAIN);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        sqlite_rows(
            &conn,
            "SELECT dg_partition, date, n FROM daily ORDER BY rowid"
        ),
        vec![
            vec!["2022-01-01", "2022-01-01-00:00", "2"],
            vec!["2022-01-01", "2022-01-01-01:00", "2"],
        ]
    );
}

#[test]
fn on_another_manager_the_query_runs_in_the_embedded_engine_and_counts_the_rows() {
    let dir = warehouse_project("io_manager", "SELECT * FROM upstream");
    let run_id = materialize_ok(dir.path(), &["--partition", "2022-01-01"]);
    let md = metadata(dir.path(), &run_id, "daily");
    assert_eq!(md["dg/in_database"], false, "{md:#}");
    assert_eq!(md["dg/rows_moved"], 24, "{md:#}");
    let log = step_logs(dir.path(), "daily");
    assert!(
        log.contains(
            "runs in the embedded engine: its I/O manager `io_manager` is not a sqlite database"
        ),
        "{log}"
    );
    let stored = std::fs::read_to_string(dir.path().join(".dg/storage/daily/2022-01-01.csv"))
        .unwrap_or_else(|_| {
            // Whatever the file is called, it holds the 24 hours.
            let d = dir.path().join(".dg/storage/daily");
            let f = std::fs::read_dir(&d).unwrap().next().unwrap().unwrap();
            std::fs::read_to_string(f.path()).unwrap()
        });
    assert_eq!(stored.lines().count(), 25, "{stored}");
}

#[test]
fn a_failing_query_or_store_leaves_the_table_as_it_was() {
    let dir = warehouse_project("warehouse", "SELECT * FROM upstream");
    materialize_ok(dir.path(), &["--partition", "2022-01-01"]);
    let conn = sqlite_db(dir.path());
    let before = sqlite_rows(
        &conn,
        "SELECT dg_partition, date, n FROM daily ORDER BY rowid",
    );
    assert_eq!(before, hours("1"));

    // An error while the query runs (not when it is prepared).
    write_query(
        dir.path(),
        "SELECT date, abs(-9223372036854775807 - n) AS n FROM upstream",
    );
    let run = materialize(dir.path(), DAY_AGAIN);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_contains(
        &run.stdout,
        &["SQL error in asset `daily`: integer overflow"],
    );
    assert_eq!(
        sqlite_rows(
            &conn,
            "SELECT dg_partition, date, n FROM daily ORDER BY rowid"
        ),
        before
    );

    // An error while the rows are inserted, after the partition's old rows
    // were deleted: the delete is rolled back too.
    conn.execute_batch(
        "CREATE TRIGGER boom BEFORE INSERT ON daily WHEN NEW.date LIKE '%-05:00'
         BEGIN SELECT RAISE(ABORT, 'boom'); END",
    )
    .unwrap();
    write_query(dir.path(), "SELECT date, n + 10 AS n FROM upstream");
    let run = materialize(dir.path(), DAY_AGAIN);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stdout, &["boom"]);
    assert_eq!(
        sqlite_rows(
            &conn,
            "SELECT dg_partition, date, n FROM daily ORDER BY rowid"
        ),
        before
    );
    conn.execute_batch("DROP TRIGGER boom").unwrap();

    // A changed schema is the manager's clear error, and changes nothing.
    write_query(dir.path(), "SELECT date, 'x' AS extra FROM upstream");
    let run = materialize(dir.path(), DAY_AGAIN);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_contains(
        &run.stdout,
        &["new column `extra`", "replace_on_schema_change"],
    );
    assert_eq!(
        sqlite_rows(
            &conn,
            "SELECT dg_partition, date, n FROM daily ORDER BY rowid"
        ),
        before
    );
    // No temporary objects are left behind in the database (`dg/stored`
    // records which partitions are stored).
    assert_eq!(
        sqlite_rows(
            &conn,
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
        ),
        vec![vec!["daily"], vec!["dg/stored"], vec!["upstream"]]
    );
}

#[test]
fn partition_keys_made_of_sql_text_are_harmless() {
    let key = "x'); DROP TABLE t; --";
    let dir = project(&[
        ("defs/resources.toml", RESOURCES),
        ("defs/assets.toml", SQL_TEXT_KEYS),
    ]);
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    sqlite_db(dir.path())
        .execute_batch("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1);")
        .unwrap();
    let run = materialize(dir.path(), &["--partition", key]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let run_id = materialize_ok(dir.path(), &["--partition", "ok"]);
    assert_eq!(
        metadata(dir.path(), &run_id, "down")["dg/in_database"],
        true
    );

    let conn = sqlite_db(dir.path());
    assert_eq!(sqlite_rows(&conn, "SELECT a FROM t"), vec![vec!["1"]]);
    assert_eq!(
        sqlite_rows(
            &conn,
            "SELECT dg_partition, k, v, bound, n FROM down ORDER BY rowid"
        ),
        vec![
            vec![key, key, "1", key, "1"],
            vec!["ok", "ok", "1", "ok", "1"],
        ]
    );
}

/// A `sql` asset that declares `columns` runs in the embedded engine, so
/// that dg can apply the declared types to the rows it stores (issue 13).
#[test]
fn declared_columns_keep_the_query_out_of_the_database() {
    let defs = assets("warehouse", "SELECT date, n FROM upstream").replace(
        "sql = \"\"\"",
        "columns = { n = \"float64\" }\nsql = \"\"\"",
    );
    let dir = project(&[
        ("defs/resources.toml", RESOURCES),
        ("defs/assets.toml", &defs),
    ]);
    let run_id = materialize_ok(dir.path(), &["--partition", "2022-01-01"]);
    let md = metadata(dir.path(), &run_id, "daily");
    assert_eq!(md["dg/in_database"], false, "{md:#}");
    let log = step_logs(dir.path(), "daily");
    assert!(log.contains("the asset declares `columns`"), "{log}");
    let conn = sqlite_db(dir.path());
    let ty: String = conn
        .query_row(
            "SELECT type FROM pragma_table_info('daily') WHERE name = 'n'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ty, "REAL");
}
