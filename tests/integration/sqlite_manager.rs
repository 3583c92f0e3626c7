//! The `sqlite` I/O manager end to end: the real binary on small projects,
//! the database checked with rusqlite.

use std::path::Path;

use rusqlite::Connection;

use crate::backend::{
    Backend, Db, SQLITE, bulk_store_rate, scenario_tests, sqlite_db, sqlite_rows,
};
use crate::support::{Run, dg, project};
use crate::table_scenarios;

fn materialize(dir: &Path, args: &[&str]) -> Run {
    Db::Sqlite.materialize(dir, args)
}

fn db(dir: &Path) -> Connection {
    sqlite_db(dir)
}

fn table_exists(conn: &Connection, name: &str) -> bool {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .unwrap()
        == 1
}

// Scenarios shared with the other table backend (`table_scenarios.rs`).

scenario_tests! {
    Backend::Sqlite;
    seed_example_through_sqlite_gives_24_ordered_rows => seed_example_gives_24_ordered_rows,
    text_is_not_retyped_through_sqlite => text_is_not_retyped,
    checks_run_inside_the_database_through_sqlite => checks_run_inside_the_database,
    rematerializing_one_partition_replaces_only_its_rows => rematerializing_one_partition_replaces_only_its_rows,
    a_failing_step_leaves_the_table_unchanged => a_failing_step_leaves_the_table_unchanged,
    sql_text_in_a_partition_key_does_no_harm => sql_text_in_a_partition_key_does_no_harm,
    a_changed_schema_is_an_error_unless_replacing_is_allowed => a_changed_schema_is_an_error_unless_replacing_is_allowed,
    a_zero_row_partition_is_stored => a_zero_row_partition_is_stored,
    range_steps_store_each_partition_as_its_rows => range_steps_store_each_partition_as_its_rows,
}

#[test]
fn unpartitioned_round_trip_keeps_types_and_nulls() {
    let dir = project(&[
        ("defs/resources.toml", SQLITE),
        (
            "defs/assets.toml",
            &table_scenarios::raw_src_and_copy(
                "",
                r#"n,x,s,b\\n1,1.5,hello,true\\n2,,\"a,b\",false\\n"#,
            ),
        ),
    ]);
    let run = materialize(dir.path(), &[]);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("seen.csv")).unwrap(),
        "n,x,s,b\n1,1.5,hello,true\n2,,\"a,b\",false\n"
    );
    let conn = db(dir.path());
    assert!(table_exists(&conn, "raw__src"));
    assert_eq!(
        sqlite_rows(
            &conn,
            "SELECT typeof(n), typeof(x), typeof(s), typeof(b) FROM raw__src ORDER BY rowid"
        ),
        vec![
            vec!["integer", "real", "text", "integer"],
            vec!["integer", "null", "text", "integer"],
        ]
    );
    let types = sqlite_rows(
        &conn,
        "SELECT name, type FROM pragma_table_info('raw__src')",
    );
    assert_eq!(
        types,
        vec![
            vec!["n", "INTEGER"],
            vec!["x", "REAL"],
            vec!["s", "TEXT"],
            vec!["b", "BOOLEAN"],
        ]
    );
    // Materializing again replaces the whole table.
    let run = materialize(dir.path(), &["--select", "raw/src"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(
        sqlite_rows(&conn, "SELECT count(*) FROM raw__src"),
        vec![vec!["2".to_string()]]
    );
}

/// Issue 13: a header-only first partition does not fix the table's
/// column types: a later partition with values gives them.
#[test]
fn an_empty_first_partition_does_not_fix_the_schema() {
    let dir = project(&[
        ("defs/resources.toml", SQLITE),
        (
            "defs/assets.toml",
            &table_scenarios::events_empty_on_the_first_day("2024-01-01"),
        ),
    ]);
    let now = ["--now", "2024-01-04T00:00:00Z"];
    let first = dg(
        dir.path(),
        &[now[0], now[1], "materialize", "--partition", "2024-01-01"],
    );
    assert_eq!(first.code, 0, "stderr:\n{}", first.stderr);
    let rest = dg(
        dir.path(),
        &[
            now[0],
            now[1],
            "materialize",
            "--partition-range",
            "2024-01-02...2024-01-03",
        ],
    );
    assert_eq!(rest.code, 0, "stderr:\n{}", rest.stderr);
    let conn = db(dir.path());
    assert_eq!(
        sqlite_rows(&conn, "SELECT name, type FROM pragma_table_info('events')"),
        vec![
            vec!["dg_partition", "TEXT"],
            vec!["id", "INTEGER"],
            vec!["amount", "REAL"],
        ]
    );
    // A header-only partition afterwards does not narrow it either.
    let again = dg(
        dir.path(),
        &[now[0], now[1], "materialize", "--partition", "2024-01-01"],
    );
    assert_eq!(again.code, 0, "stderr:\n{}", again.stderr);
    assert_eq!(
        sqlite_rows(
            &conn,
            "SELECT dg_partition, id FROM events ORDER BY dg_partition"
        ),
        vec![vec!["2024-01-02", "1"], vec!["2024-01-03", "1"]]
    );
}

/// Storing 1,000,000 CSV rows of 5 columns, in-process (run with
/// `cargo test --release --test integration sqlite_bulk -- --ignored --nocapture`).
#[test]
#[ignore]
fn sqlite_bulk_store_rate() {
    bulk_store_rate("sqlite", "", |cx| {
        dg::__internal::create_manager(
            &dg::io::Registry::builtin(),
            "sqlite",
            r#"path = "bench.db""#,
            cx,
        )
        .unwrap()
    });
}
