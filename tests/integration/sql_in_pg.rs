//! In-database SQL on Postgres: a `sql` asset stored by a `postgres`
//! resource whose inputs all live in the same database and schema runs
//! there (`dg/rows_moved = 0`), in one transaction. Each test works in its
//! own randomly named schema, dropped at the end; without
//! `DG_TEST_POSTGRES_URL` the tests are skipped (they fail under `CI=true`).

use std::path::Path;

use serde_json::Value;
use tempfile::TempDir;

use crate::backend::{NOW, Pg};
use crate::sql_in_db::{DAY_AGAIN, SQL_TEXT_KEYS, assets, hours, write_query};
use crate::support::{
    Run, assert_contains, assert_no_panic, dg_with_env, json, metadata_in, project, step_logs,
};

/// Resource `warehouse` on the test's schema.
fn resources(pg: &Pg) -> String {
    pg.resource("warehouse", "")
}

/// `dg --now NOW ARGS…` with `DG_PG_URL` set; the URL is never shown unmasked.
fn dg(pg: &Pg, dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--now", NOW];
    all.extend(args);
    let run = dg_with_env(dir, &all, &[("DG_PG_URL", &pg.url)]);
    assert_no_panic(&run);
    let shown = |s: &str| dg::__internal::mask_url(&pg.url) != pg.url && s.contains(&pg.url);
    assert!(
        !shown(&run.stdout) && !shown(&run.stderr),
        "the URL is shown unmasked:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    run
}

fn materialize(pg: &Pg, dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["materialize", "--json"];
    all.extend(args);
    dg(pg, dir, &all)
}

/// A project whose `daily` is stored by `daily_manager` (`warehouse` is on
/// the test's schema) and runs `query`.
fn warehouse_project(pg: &Pg, daily_manager: &str, query: &str) -> TempDir {
    project(&[
        ("defs/resources.toml", &resources(pg)),
        ("defs/assets.toml", &assets(daily_manager, query)),
    ])
}

/// `dg materialize ARGS…`, which must succeed; the run's id.
fn materialize_ok(pg: &Pg, dir: &Path, args: &[&str]) -> String {
    let run = materialize(pg, dir, args);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    json(&run)["run_id"].as_str().unwrap().to_string()
}

/// The materialization metadata of `asset` in run `run_id`.
fn metadata(pg: &Pg, dir: &Path, run_id: &str, asset: &str) -> Value {
    metadata_in(&dg(pg, dir, &["runs", "show", run_id, "--json"]), asset)
}

const DAILY: &str = "SELECT dg_partition, date, n FROM {s}.daily ORDER BY ctid";

#[test]
fn a_query_over_the_same_schema_runs_inside_postgres_and_moves_no_rows() {
    let Some(mut pg) = Pg::open() else { return };
    // `::` casts, a string that looks like a parameter, and a bound time window.
    let query = "SELECT date, n::bigint AS n, ':run_id' AS lit, :partition_key AS day \
                 FROM upstream WHERE :partition_start::timestamptz < :partition_end::timestamptz";
    let dir = warehouse_project(&pg, "warehouse", query);
    let run_id = materialize_ok(&pg, dir.path(), &["--partition", "2022-01-01"]);

    assert_eq!(pg.rows(DAILY), hours("1"));
    assert_eq!(
        pg.rows("SELECT DISTINCT lit, day FROM {s}.daily"),
        vec![vec![":run_id", "2022-01-01"]]
    );
    let md = metadata(&pg, dir.path(), &run_id, "daily");
    assert_eq!(md["dg/in_database"], true, "{md:#}");
    assert_eq!(md["dg/rows_moved"], 0, "{md:#}");
    assert_eq!(md["dg/rows"], 24, "{md:#}");
    let log = step_logs(dir.path(), "daily");
    assert!(log.contains("0 rows moved through dg"), "{log}");
    assert!(log.contains("ran inside postgres"), "{log}");
    assert!(!log.contains("loaded input"), "{log}");
    assert!(log.contains(&dg::__internal::mask_url(&pg.url)), "{log}");
    if dg::__internal::mask_url(&pg.url) != pg.url {
        assert!(!log.contains(&pg.url), "{log}");
    }

    // Again, narrowed: the partition is replaced, not appended to.
    std::fs::write(
        dir.path().join("defs/assets.toml"),
        assets(
            "warehouse",
            "SELECT date, n + 1 AS n, 'x' AS lit, 'y' AS day FROM upstream \
             WHERE date < :partition_key || '-02'",
        ),
    )
    .unwrap();
    let run = materialize(&pg, dir.path(), DAY_AGAIN);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        pg.rows(DAILY),
        vec![
            vec!["2022-01-01", "2022-01-01-00:00", "2"],
            vec!["2022-01-01", "2022-01-01-01:00", "2"],
        ]
    );
    // No temporary objects are left in the schema (`dg/stored` records
    // which partitions are stored).
    assert_eq!(
        pg.rows(&format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = '{}' ORDER BY 1",
            pg.schema
        )),
        vec![vec!["daily"], vec!["dg/stored"], vec!["upstream"]]
    );
}

#[test]
fn on_another_manager_the_query_runs_in_the_embedded_engine() {
    let Some(pg) = Pg::open() else { return };
    let dir = warehouse_project(&pg, "io_manager", "SELECT * FROM upstream");
    let run_id = materialize_ok(&pg, dir.path(), &["--partition", "2022-01-01"]);
    let md = metadata(&pg, dir.path(), &run_id, "daily");
    assert_eq!(md["dg/in_database"], false, "{md:#}");
    assert_eq!(md["dg/rows_moved"], 24, "{md:#}");
    let log = step_logs(dir.path(), "daily");
    assert!(
        log.contains("runs in the embedded engine: its I/O manager `io_manager` is not"),
        "{log}"
    );
}

#[test]
fn a_failing_query_leaves_the_table_as_it_was() {
    let Some(mut pg) = Pg::open() else { return };
    let dir = warehouse_project(&pg, "warehouse", "SELECT * FROM upstream");
    materialize_ok(&pg, dir.path(), &["--partition", "2022-01-01"]);
    let before = pg.rows(DAILY);
    assert_eq!(before, hours("1"));

    // An error while the rows are computed, after the old rows were deleted.
    write_query(dir.path(), "SELECT date, n / (n - 1) AS n FROM upstream");
    let run = materialize(&pg, dir.path(), DAY_AGAIN);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_contains(
        &run.stdout,
        &["SQL error in asset `daily`: division by zero"],
    );
    assert_eq!(pg.rows(DAILY), before);

    // A syntax error.
    write_query(dir.path(), "SELECT date,\n n FROM upstream WHERE");
    let run = materialize(&pg, dir.path(), DAY_AGAIN);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stdout, &["SQL error in asset `daily`"]);
    assert_eq!(pg.rows(DAILY), before);

    // A changed schema is the manager's error, and changes nothing.
    write_query(dir.path(), "SELECT date, 'x' AS extra FROM upstream");
    let run = materialize(&pg, dir.path(), DAY_AGAIN);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_contains(
        &run.stdout,
        &["new column `extra`", "replace_on_schema_change"],
    );
    assert_eq!(pg.rows(DAILY), before);
}

#[test]
fn partition_keys_made_of_sql_text_are_harmless() {
    let Some(mut pg) = Pg::open() else { return };
    let key = "x'); DROP TABLE t; --";
    let dir = project(&[
        ("defs/resources.toml", &resources(&pg)),
        ("defs/assets.toml", SQL_TEXT_KEYS),
    ]);
    pg.rows(&format!(
        "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".t (a integer); INSERT INTO \"{0}\".t VALUES (1)",
        pg.schema
    ));
    for k in [key, "ok"] {
        let run_id = materialize_ok(&pg, dir.path(), &["--partition", k]);
        assert_eq!(
            metadata(&pg, dir.path(), &run_id, "down")["dg/in_database"],
            true
        );
    }
    assert_eq!(pg.rows("SELECT a FROM {s}.t"), vec![vec!["1"]]);
    assert_eq!(
        pg.rows("SELECT dg_partition, k, v, bound, n FROM {s}.down ORDER BY ctid"),
        vec![
            vec![key, key, "1", key, "1"],
            vec!["ok", "ok", "1", "ok", "1"],
        ]
    );
}
