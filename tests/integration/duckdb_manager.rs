//! Issue 18: the `duckdb` I/O manager and `engine = "duckdb"` end to end:
//! the real binary on small projects, the database checked with the
//! `duckdb` crate once dg has exited (DuckDB lets one process hold a file).
//! The scenarios every table backend shares are in `table_scenarios.rs`.

use std::path::Path;

use serde_json::Value;

use crate::backend::{Backend, DUCKDB, NOW, duckdb_db, duckdb_rows, scenario_tests};
use crate::support::{
    HOURLY_DAILY, Run, assert_contains, assert_fails_with, dg, items, json, materialize_json,
    metadata_in, project, read, step_logs,
};
use crate::table_scenarios;

fn materialize(dir: &Path, args: &[&str]) -> Run {
    materialize_json(dir, NOW, args)
}

fn rows(dir: &Path, sql: &str) -> Vec<Vec<String>> {
    duckdb_rows(&duckdb_db(dir), sql)
}

/// The declared columns of `table`: name and DuckDB type.
fn columns(dir: &Path, table: &str) -> Vec<Vec<String>> {
    rows(
        dir,
        &format!(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = '{table}' ORDER BY column_index"
        ),
    )
}

/// The materialization metadata of `asset` in the run `run` printed.
fn metadata(dir: &Path, run: &Run, asset: &str) -> Value {
    let run_id = json(run)["run_id"].as_str().unwrap().to_string();
    metadata_in(
        &dg(dir, &["--now", NOW, "runs", "show", &run_id, "--json"]),
        asset,
    )
}

// Scenarios shared with the other table backends (`table_scenarios.rs`).

scenario_tests! {
    Backend::Duckdb;
    seed_example_through_duckdb_gives_24_ordered_rows => seed_example_gives_24_ordered_rows,
    text_is_not_retyped_through_duckdb => text_is_not_retyped,
    checks_run_inside_the_database_through_duckdb => checks_run_inside_the_database,
    rematerializing_one_partition_replaces_only_its_rows_in_duckdb => rematerializing_one_partition_replaces_only_its_rows,
    a_failing_step_leaves_the_duckdb_table_unchanged => a_failing_step_leaves_the_table_unchanged,
    sql_text_in_a_partition_key_does_no_harm_in_duckdb => sql_text_in_a_partition_key_does_no_harm,
    a_changed_duckdb_schema_is_an_error_unless_replacing_is_allowed => a_changed_schema_is_an_error_unless_replacing_is_allowed,
    range_steps_store_each_partition_as_its_rows_in_duckdb => range_steps_store_each_partition_as_its_rows,
    a_zero_row_partition_is_stored_in_duckdb => a_zero_row_partition_is_stored,
}

// What only DuckDB does.

/// Every kind of column gets DuckDB's own type, NULLs stay NULL, declared
/// `columns` give their types, and the next step reads back exactly what
/// was written.
#[test]
fn column_types_and_nulls_round_trip_through_duckdb() {
    let dir = project(&[
        ("defs/resources.toml", DUCKDB),
        (
            "defs/assets.toml",
            &table_scenarios::raw_src_and_copy(
                r#"columns = { zip = "string", amount = "float64", day = "date" }"#,
                r#"n,x,s,b,zip,amount,day\\n1,1.5,hello,true,02134,3,2024-02-29\\n2,,\"a,b\",false,10001,,\\n"#,
            ),
        ),
    ]);
    let d = dir.path();
    let run = materialize(d, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        read(d.join("seen.csv")),
        "n,x,s,b,zip,amount,day\n1,1.5,hello,true,02134,3.0,2024-02-29\n2,,\"a,b\",false,10001,,\n"
    );
    assert_eq!(
        columns(d, "raw__src"),
        vec![
            vec!["n", "BIGINT"],
            vec!["x", "DOUBLE"],
            vec!["s", "VARCHAR"],
            vec!["b", "BOOLEAN"],
            vec!["zip", "VARCHAR"],
            vec!["amount", "DOUBLE"],
            vec!["day", "DATE"],
        ]
    );
    assert_eq!(
        rows(
            d,
            "SELECT n, x, s, b, zip, CAST(day AS VARCHAR) FROM raw__src ORDER BY rowid"
        ),
        vec![
            vec!["1", "1.5", "hello", "1", "02134", "2024-02-29"],
            vec!["2", "NULL", "a,b", "0", "10001", "NULL"],
        ]
    );
    // The copy (a CSV file read back without `columns`) has the same types,
    // but for the date, which a CSV file gives as text.
    let mut want = columns(d, "raw__src");
    want[6][1] = "VARCHAR".into();
    assert_eq!(columns(d, "copy"), want);
    // Materializing again replaces the whole table.
    assert_eq!(materialize(d, &["--select", "raw/src"]).code, 0);
    assert_eq!(
        rows(d, "SELECT count(*) FROM raw__src"),
        vec![vec!["2".to_string()]]
    );
}

/// A header-only first partition does not fix the table's column types: a
/// later partition with values gives them.
#[test]
fn an_empty_first_partition_does_not_fix_the_duckdb_schema() {
    let dir = project(&[
        ("defs/resources.toml", DUCKDB),
        (
            "defs/assets.toml",
            &table_scenarios::events_empty_on_the_first_day("2021-12-30"),
        ),
    ]);
    let d = dir.path();
    assert_eq!(materialize(d, &["--partition", "2021-12-30"]).code, 0);
    assert_eq!(
        columns(d, "events"),
        vec![
            vec!["dg_partition", "VARCHAR"],
            vec!["id", "VARCHAR"],
            vec!["amount", "VARCHAR"],
        ]
    );
    let run = materialize(d, &["--partition-range", "2021-12-31...2022-01-01"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        columns(d, "events"),
        vec![
            vec!["dg_partition", "VARCHAR"],
            vec!["id", "BIGINT"],
            vec!["amount", "DOUBLE"],
        ]
    );
    assert_eq!(
        rows(d, "SELECT dg_partition, id, amount FROM events ORDER BY 1"),
        vec![
            vec!["2021-12-31", "1", "2.5"],
            vec!["2022-01-01", "1", "2.5"]
        ]
    );
}

/// Another schema than `main`: created on the first write, and the
/// tables are in it.
#[test]
fn tables_go_in_the_resource_schema() {
    let dir = project(&[
        (
            "defs/resources.toml",
            &format!("{DUCKDB}schema = \"analytics\"\n"),
        ),
        (
            "defs/assets.toml",
            r#"
[assets.src]
shell = "printf 'a\\n1\\n' > \"$DG_OUTPUT\""

[assets.total]
deps = ["src"]
sql = "SELECT sum(a) AS total FROM src"
"#,
        ),
    ]);
    let d = dir.path();
    let run = materialize(d, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(rows(d, "SELECT a FROM analytics.src"), vec![vec!["1"]]);
    assert_eq!(
        rows(d, "SELECT total FROM analytics.total"),
        vec![vec!["1"]]
    );
    assert_eq!(metadata(d, &run, "total")["dg/in_database"], true);
}

/// An hourly `upstream` writing `date,n` CSV (after [`HOURLY_DAILY`]).
const UPSTREAM: &str = r#"
[assets.upstream]
partitions = "hourly"
shell = "printf 'date,n\\n%s,1\\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""
"#;

/// A `sql` asset whose input is in the same DuckDB database runs inside
/// it: `GROUP BY ALL` and `list(…)` are DuckDB's (SQLite rejects both), no
/// row passes through dg, and the result keeps DuckDB's types.
#[test]
fn a_sql_asset_over_the_same_duckdb_database_runs_inside_it() {
    let dir = project(&[
        ("defs/resources.toml", DUCKDB),
        (
            "defs/assets.toml",
            &format!(
                r#"{HOURLY_DAILY}{UPSTREAM}
[assets.daily]
partitions = "daily"
deps = ["upstream"]
sql = """
SELECT :partition_key AS day, count(*) AS hours, sum(n) AS total,
       list(date ORDER BY date)[1] AS first
FROM upstream
GROUP BY ALL
"""
"#
            ),
        ),
    ]);
    let d = dir.path();
    let run = materialize(d, &["--partition", "2022-01-01"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let md = metadata(d, &run, "daily");
    assert_eq!(md["dg/in_database"], true, "{md:#}");
    assert_eq!(md["dg/rows_moved"], 0, "{md:#}");
    assert_eq!(md["dg/rows"], 1, "{md:#}");
    let log = step_logs(d, "daily");
    assert!(log.contains("ran inside duckdb:"), "{log}");
    assert!(log.contains("0 rows moved through dg"), "{log}");
    assert_eq!(
        rows(
            d,
            "SELECT dg_partition, day, hours, total, first FROM daily"
        ),
        vec![vec![
            "2022-01-01",
            "2022-01-01",
            "24",
            "24",
            "2022-01-01-00:00"
        ]]
    );
    assert_eq!(
        columns(d, "daily"),
        vec![
            vec!["dg_partition", "VARCHAR"],
            vec!["day", "VARCHAR"],
            vec!["hours", "BIGINT"],
            vec!["total", "HUGEINT"],
            vec!["first", "VARCHAR"],
        ]
    );
    // Again: the partition is replaced, not appended to.
    let run = materialize(d, &["--select", "daily", "--partition", "2022-01-01"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(rows(d, "SELECT count(*) FROM daily"), vec![vec!["1"]]);
    // A failing query changes nothing and says where.
    std::fs::write(
        d.join("defs/assets.toml"),
        std::fs::read_to_string(d.join("defs/assets.toml"))
            .unwrap()
            .replace("FROM upstream", "FROM upstream WHERE nope > 1"),
    )
    .unwrap();
    let run = materialize(d, &["--select", "daily", "--partition", "2022-01-01"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_contains(&run.stderr, &["SQL error in asset `daily`", "nope"]);
    assert_eq!(rows(d, "SELECT count(*) FROM daily"), vec![vec!["1"]]);
}

/// `engine = "duckdb"` on an asset stored elsewhere: the inputs are loaded
/// into an in-memory DuckDB, the query (DuckDB's dialect) runs there, and
/// the result goes through the asset's manager. The same query fails in
/// the default SQLite engine.
#[test]
fn engine_duckdb_runs_the_query_in_an_embedded_duckdb() {
    let assets = |engine: &str| {
        format!(
            r#"{HOURLY_DAILY}{UPSTREAM}
[assets.daily]
partitions = "daily"
deps = ["upstream"]
{engine}
sql = "SELECT count(*) AS hours, max(date) AS last FROM upstream GROUP BY ALL"
"#
        )
    };
    let dir = project(&[("defs/assets.toml", &assets("engine = \"duckdb\""))]);
    let d = dir.path();
    let run = materialize(d, &["--partition", "2022-01-01"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let md = metadata(d, &run, "daily");
    assert_eq!(md["dg/in_database"], false, "{md:#}");
    assert_eq!(md["dg/rows_moved"], 24, "{md:#}");
    assert_eq!(
        read(d.join(".dg/storage/daily/2022-01-01.csv")),
        "hours,last\n24,2022-01-01-23:00\n"
    );
    assert!(
        step_logs(d, "daily").contains("running in the embedded DuckDB engine"),
        "{}",
        step_logs(d, "daily")
    );
    // Without `engine`, the same query is SQLite's to run, which rejects it.
    std::fs::write(d.join("defs/assets.toml"), assets("")).unwrap();
    let run = materialize(d, &["--select", "daily", "--partition", "2022-01-01"]);
    assert_fails_with(&run, 1, &["SQL error in asset `daily`"]);
}

/// A query written for DuckDB on an asset stored in SQLite runs in the
/// embedded DuckDB, not inside the SQLite file, and the log says why.
#[test]
fn a_duckdb_query_on_a_sqlite_asset_runs_embedded() {
    let dir = project(&[
        ("defs/resources.toml", crate::backend::SQLITE),
        (
            "defs/assets.toml",
            &format!(
                r#"{HOURLY_DAILY}{UPSTREAM}
[assets.daily]
partitions = "daily"
deps = ["upstream"]
engine = "duckdb"
sql = "SELECT * EXCLUDE (n) FROM upstream"
"#
            ),
        ),
    ]);
    let d = dir.path();
    let run = materialize(d, &["--partition", "2022-01-01"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(metadata(d, &run, "daily")["dg/in_database"], false);
    let log = step_logs(d, "daily");
    assert!(
        log.contains("the query is written for the duckdb engine"),
        "{log}"
    );
    let conn = crate::backend::sqlite_db(d);
    assert_eq!(
        crate::backend::sqlite_rows(&conn, "SELECT count(*), min(date) FROM daily"),
        vec![vec!["24", "2022-01-01-00:00"]]
    );
}

/// A `sql` asset with range steps (`backfill`) gets the range as
/// parameters in DuckDB too, and each partition of its result is stored
/// as its own rows.
#[test]
fn a_duckdb_sql_range_step_stores_each_partition() {
    let dir = project(&[
        ("defs/resources.toml", DUCKDB),
        (
            "defs/assets.toml",
            r#"
[partitions.days]
type = "daily"
start = "2021-12-28"

[assets.days]
partitions = "days"
backfill = { max_partitions_per_step = 10 }
sql = """
SELECT k AS dg_partition, CAST(:partition_start AS VARCHAR) AS range_start, :run_id IS NOT NULL AS has_run
FROM (SELECT unnest(CAST(:partition_keys AS VARCHAR[])) AS k)
"""
"#,
        ),
    ]);
    let d = dir.path();
    let run = materialize(d, &["--partition-range", "2021-12-29...2021-12-31"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stdout, &["days[2021-12-29...2021-12-31]"]);
    let got = rows(
        d,
        "SELECT dg_partition, range_start, has_run FROM days ORDER BY 1",
    );
    assert_eq!(got.len(), 3, "{got:?}");
    for (row, k) in got.iter().zip(["2021-12-29", "2021-12-30", "2021-12-31"]) {
        assert_eq!(row[0], k);
        assert!(row[1].starts_with("2021-12-29T00:00:00"), "{row:?}");
        assert_eq!(row[2], "1");
    }
    // History records each partition of the range step.
    let status = json(&dg(d, &["--now", NOW, "status", "--json"]));
    let days = &status["assets"][0];
    assert_eq!(days["materialized"], 3, "{status:#}");
    assert_eq!(
        days["ranges"]["materialized"][0], "2021-12-29...2021-12-31",
        "{status:#}"
    );
}

/// A `sql` check on an asset stored in DuckDB runs inside the database, in
/// DuckDB's dialect (`list` and `len` are DuckDB's).
#[test]
fn a_sql_check_on_a_duckdb_asset_runs_in_duckdb() {
    let dir = project(&[
        ("defs/resources.toml", DUCKDB),
        (
            "defs/assets.toml",
            r#"
[assets.orders]
shell = "printf 'id\n1\n2\n2\n' > \"$DG_OUTPUT\""

[assets.orders.checks.unique_ids]
sql = "SELECT id, len(list(id)) AS n FROM orders GROUP BY ALL HAVING count(*) > 1"
"#,
        ),
    ]);
    let d = dir.path();
    let run = materialize(d, &[]);
    let v = json(&run);
    let check = &v["checks"][0];
    assert_eq!(check["check"], "unique_ids", "{v:#}");
    assert_eq!(check["passed"], false, "{v:#}");
    assert_eq!(
        check["message"], "the query returned 1 row; first: id=2, n=2",
        "{v:#}"
    );
}

/// dg keeps `0.50` as text (it would not print back as a number), and
/// DuckDB, unlike SQLite, does not sum text: the error names the input's
/// text columns and the fix, and the fix works.
#[test]
fn a_duckdb_type_error_over_text_names_the_columns_and_the_fix() {
    let assets = |columns: &str| {
        format!(
            r#"
[assets.big]
{columns}shell = "printf 'id,amount\n1,0.50\n2,0.25\n' > \"$DG_OUTPUT\""

[assets.total]
deps = ["big"]
engine = "duckdb"
sql = "SELECT sum(amount) AS s FROM big"
"#
        )
    };
    let dir = project(&[("defs/assets.toml", &assets(""))]);
    let d = dir.path();
    let run = materialize(d, &[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let v = json(&run);
    let error = items(&v["steps"])
        .iter()
        .find(|s| s["id"] == "total")
        .and_then(|s| s["error"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("sum(VARCHAR)"), "{error}");
    assert!(
        error.contains("these input columns are text (VARCHAR): `big.amount`;"),
        "{error}"
    );
    assert!(
        error.contains("`columns = { amount = \"float64\" }`"),
        "{error}"
    );
    std::fs::write(
        d.join("defs/assets.toml"),
        assets("columns = { amount = \"float64\" }\n"),
    )
    .unwrap();
    let run = materialize(d, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(read(d.join(".dg/storage/total.csv")), "s\n0.75\n");
}
