//! The `sqlite` I/O manager end to end: the real binary on small projects,
//! the database checked with rusqlite.

use std::path::Path;

use rusqlite::Connection;
use tempfile::TempDir;

use crate::support::{Run, assert_no_panic, dg, project};

/// Every hour of 2022-01-01 is over, and the day too.
const NOW: &str = "2022-01-02T00:00:00Z";

const SQLITE: &str = r#"
[resources.io_manager]
type = "sqlite"
path = "data/warehouse.db"
"#;

fn materialize(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--now", NOW, "materialize"];
    all.extend(args);
    let run = dg(dir, &all);
    assert_no_panic(&run);
    run
}

fn db(dir: &Path) -> Connection {
    Connection::open(dir.join("data/warehouse.db")).expect("the database exists")
}

/// Rows of `sql` as strings (NULL as `NULL`).
fn rows(conn: &Connection, sql: &str) -> Vec<Vec<String>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => "NULL".to_string(),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    rusqlite::types::ValueRef::Real(v) => v.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
                })
            })
            .collect()
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
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

#[test]
fn seed_example_through_sqlite_gives_24_ordered_rows() {
    let dir = project(&[
        ("defs/resources.toml", SQLITE),
        (
            "defs/assets.toml",
            r#"
[partitions.hourly]
type = "hourly"
start = "2022-01-01-00:00"

[partitions.daily]
type = "daily"
start = "2022-01-01"

[assets.upstream_asset]
partitions = "hourly"
shell = "printf 'date\\n%s\\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""

[assets.downstream_asset]
partitions = "daily"
deps = ["upstream_asset"]
shell = "cp \"$DG_INPUT_UPSTREAM_ASSET\" seen.csv && cat \"$DG_INPUT_UPSTREAM_ASSET\" > \"$DG_OUTPUT\""
"#,
        ),
    ]);
    let run = materialize(dir.path(), &["--partition", "2022-01-01"]);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );

    let hours: Vec<String> = (0..24).map(|h| format!("2022-01-01-{h:02}:00")).collect();
    let mut expected = String::from("date\n");
    for h in &hours {
        expected.push_str(h);
        expected.push('\n');
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("seen.csv")).unwrap(),
        expected
    );

    let conn = db(dir.path());
    let up = rows(
        &conn,
        "SELECT dg_partition, date FROM upstream_asset ORDER BY dg_partition",
    );
    assert_eq!(up.len(), 24);
    for (row, h) in up.iter().zip(&hours) {
        assert_eq!(row, &vec![h.clone(), h.clone()]);
    }
    let down = rows(
        &conn,
        "SELECT dg_partition, date FROM downstream_asset ORDER BY rowid",
    );
    assert_eq!(down.len(), 24);
    for (row, h) in down.iter().zip(&hours) {
        assert_eq!(row, &vec!["2022-01-01".to_string(), h.clone()]);
    }
    // The partition column is indexed.
    let idx = rows(
        &conn,
        "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'upstream_asset'",
    );
    assert_eq!(idx, vec![vec!["1".to_string()]]);

    // A second run finds the upstream stored (exists) and loads it again.
    let run = materialize(
        dir.path(),
        &["--select", "downstream_asset", "--partition", "2022-01-01"],
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(
        rows(&conn, "SELECT count(*) FROM downstream_asset"),
        vec![vec!["24".to_string()]]
    );
}

#[test]
fn unpartitioned_round_trip_keeps_types_and_nulls() {
    let dir = project(&[
        ("defs/resources.toml", SQLITE),
        (
            "defs/assets.toml",
            r#"
[assets."raw/src"]
shell = "printf 'n,x,s,b\\n1,1.5,hello,true\\n2,,\"a,b\",false\\n' > \"$DG_OUTPUT\""

[assets.copy]
deps = ["raw/src"]
shell = "cp \"$DG_INPUT_SRC\" seen.csv && cp \"$DG_INPUT_SRC\" \"$DG_OUTPUT\""
"#,
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
        rows(
            &conn,
            "SELECT typeof(n), typeof(x), typeof(s), typeof(b) FROM raw__src ORDER BY rowid"
        ),
        vec![
            vec!["integer", "real", "text", "integer"],
            vec!["integer", "null", "text", "integer"],
        ]
    );
    let types = rows(
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
        rows(&conn, "SELECT count(*) FROM raw__src"),
        vec![vec!["2".to_string()]]
    );
}

/// Issue 13: text that only looks like a number or a boolean comes back
/// exactly as written; real booleans come back as booleans, not `1`/`0`.
#[test]
fn text_is_not_retyped_through_sqlite() {
    let dir = project(&[
        ("defs/resources.toml", SQLITE),
        (
            "defs/assets.toml",
            r#"
[assets.src]
shell = "printf 'zip,classification,ok\\n02134,True,true\\n10001,False,false\\n' > \"$DG_OUTPUT\""

[assets.copy]
deps = ["src"]
shell = "cp \"$DG_INPUT_SRC\" seen.csv && cp \"$DG_INPUT_SRC\" \"$DG_OUTPUT\""
"#,
        ),
    ]);
    let run = materialize(dir.path(), &[]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("seen.csv")).unwrap(),
        "zip,classification,ok\n02134,True,true\n10001,False,false\n"
    );
    let conn = db(dir.path());
    assert_eq!(
        rows(
            &conn,
            "SELECT count(*) FROM src WHERE classification = 'True'"
        ),
        vec![vec!["1".to_string()]]
    );
}

const DAYS: &str = r#"
[partitions.daily]
type = "daily"
start = "2024-01-01"
"#;

/// Issue 13: a header-only first partition does not fix the table's
/// column types: a later partition with values gives them.
#[test]
fn an_empty_first_partition_does_not_fix_the_schema() {
    let dir = project(&[
        ("defs/resources.toml", SQLITE),
        (
            "defs/assets.toml",
            &format!(
                r#"{DAYS}
[assets.events]
partitions = "daily"
shell = "if [ \"$DG_PARTITION_KEY\" = 2024-01-01 ]; then printf 'id,amount\\n'; else printf 'id,amount\\n1,2.5\\n'; fi > \"$DG_OUTPUT\""
"#
            ),
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
        rows(&conn, "SELECT name, type FROM pragma_table_info('events')"),
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
        rows(
            &conn,
            "SELECT dg_partition, id FROM events ORDER BY dg_partition"
        ),
        vec![vec!["2024-01-02", "1"], vec!["2024-01-03", "1"]]
    );
}

/// Issue 13: a partition stored with 0 rows is stored: a later `--missing`
/// run that reads it runs instead of failing "not materialized" forever.
#[test]
fn a_zero_row_partition_is_stored() {
    let dir = project(&[
        ("defs/resources.toml", SQLITE),
        (
            "defs/assets.toml",
            &format!(
                r#"{DAYS}
[assets.events]
partitions = "daily"
shell = "printf 'id\\n' > \"$DG_OUTPUT\""

[assets.total]
partitions = "daily"
deps = ["events"]
shell = "wc -l < \"$DG_INPUT_EVENTS\" > \"$DG_OUTPUT.n\" && printf 'lines\\n%s\\n' \"$(cat \"$DG_OUTPUT.n\")\" > \"$DG_OUTPUT\""
"#
            ),
        ),
    ]);
    let now = ["--now", "2024-01-02T00:00:00Z"];
    let run = dg(
        dir.path(),
        &[
            now[0],
            now[1],
            "materialize",
            "--select",
            "events",
            "--partition",
            "2024-01-01",
        ],
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let run = dg(
        dir.path(),
        &[
            now[0],
            now[1],
            "materialize",
            "--partition",
            "2024-01-01",
            "--missing",
        ],
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let conn = db(dir.path());
    assert_eq!(
        rows(&conn, "SELECT lines FROM total"),
        vec![vec!["1".to_string()]]
    );
}

const STATIC_AB: &str = r#"
[partitions.letters]
type = "static"
keys = ["a", "b"]

[assets.parts]
partitions = "letters"
shell = "if [ -f bad ]; then printf 'k,v\\n1,2\\n3\\n'; else printf 'k,v\\n%s,%s\\n%s,%s\\n' \"$DG_PARTITION_KEY\" \"$(cat version)\" \"$DG_PARTITION_KEY\" \"$(cat version)\"; fi > \"$DG_OUTPUT\""
"#;

#[test]
fn rematerializing_one_partition_replaces_only_its_rows() {
    let dir = project(&[
        ("defs/resources.toml", SQLITE),
        ("defs/assets.toml", STATIC_AB),
        ("version", "1"),
    ]);
    let run = materialize(dir.path(), &["--all-partitions"]);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    std::fs::write(dir.path().join("version"), "2").unwrap();
    let run = materialize(dir.path(), &["--partition", "a"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let conn = db(dir.path());
    assert_eq!(
        rows(
            &conn,
            "SELECT dg_partition, k, v FROM parts ORDER BY dg_partition, rowid"
        ),
        vec![
            vec!["a", "a", "2"],
            vec!["a", "a", "2"],
            vec!["b", "b", "1"],
            vec!["b", "b", "1"],
        ]
    );
}

#[test]
fn a_failing_step_leaves_the_table_unchanged() {
    let dir = project(&[
        ("defs/resources.toml", SQLITE),
        ("defs/assets.toml", STATIC_AB),
        ("version", "1"),
    ]);
    let run = materialize(dir.path(), &["--all-partitions"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let conn = db(dir.path());
    let before = rows(
        &conn,
        "SELECT rowid, dg_partition, k, v FROM parts ORDER BY rowid",
    );
    assert_eq!(before.len(), 4);
    // The step writes ragged CSV, which cannot be stored.
    std::fs::write(dir.path().join("bad"), "").unwrap();
    let run = materialize(dir.path(), &["--partition", "a"]);
    assert_ne!(run.code, 0, "stdout:\n{}", run.stdout);
    assert_eq!(
        rows(
            &conn,
            "SELECT rowid, dg_partition, k, v FROM parts ORDER BY rowid"
        ),
        before
    );
}

#[test]
fn sql_text_in_a_partition_key_does_no_harm() {
    let key = "x'); DROP TABLE t; --";
    let dir = project(&[
        ("defs/resources.toml", SQLITE),
        (
            "defs/assets.toml",
            r#"
[partitions.evil]
type = "static"
keys = ["x'); DROP TABLE t; --", "ok"]

[assets.t]
shell = "printf 'a\\n1\\n' > \"$DG_OUTPUT\""

[assets.evil_asset]
partitions = "evil"
shell = "printf 'k\\n%s\\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""

[assets.reader]
partitions = "evil"
deps = ["evil_asset"]
shell = "cp \"$DG_INPUT_EVIL_ASSET\" \"$DG_OUTPUT\""
"#,
        ),
    ]);
    let run = materialize(dir.path(), &["--select", "t"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let run = materialize(dir.path(), &["--select", "evil_asset+", "--all-partitions"]);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let conn = db(dir.path());
    assert!(table_exists(&conn, "t"));
    assert_eq!(rows(&conn, "SELECT a FROM t"), vec![vec!["1"]]);
    assert_eq!(
        rows(
            &conn,
            "SELECT dg_partition, k FROM evil_asset ORDER BY dg_partition"
        ),
        vec![vec!["ok", "ok"], vec![key, key]]
    );
    assert_eq!(
        rows(
            &conn,
            "SELECT dg_partition, k FROM reader ORDER BY dg_partition"
        ),
        vec![vec!["ok", "ok"], vec![key, key]]
    );
}

#[test]
fn a_changed_schema_is_an_error_unless_replacing_is_allowed() {
    let assets = r#"
[assets."sales/daily"]
shell = "if [ -f v2 ]; then printf 'a,c\\nx,3\\n'; else printf 'a,b\\nx,1\\n'; fi > \"$DG_OUTPUT\""
"#;
    let dir = project(&[
        ("defs/resources.toml", SQLITE),
        ("defs/assets.toml", assets),
    ]);
    let run = materialize(dir.path(), &[]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    std::fs::write(dir.path().join("v2"), "").unwrap();
    let run = materialize(dir.path(), &["--json"]);
    assert_ne!(run.code, 0);
    let all = format!("{}\n{}", run.stdout, run.stderr);
    for needle in [
        "sales/daily",
        "sales__daily",
        "new column `c`",
        "column `b`",
        "replace_on_schema_change",
    ] {
        assert!(all.contains(needle), "no {needle:?} in:\n{all}");
    }
    let conn = db(dir.path());
    assert_eq!(
        rows(&conn, "SELECT a, b FROM sales__daily"),
        vec![vec!["x", "1"]]
    );

    std::fs::write(
        dir.path().join("defs/resources.toml"),
        format!("{SQLITE}replace_on_schema_change = true\n"),
    )
    .unwrap();
    let run = materialize(dir.path(), &[]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(
        rows(&conn, "SELECT a, c FROM sales__daily"),
        vec![vec!["x", "3"]]
    );
}

/// Storing 1,000,000 CSV rows of 5 columns, in-process (run with
/// `cargo test --release --test integration sqlite_bulk -- --ignored --nocapture`).
#[test]
#[ignore]
fn sqlite_bulk_store_rate() {
    use dg::io::{Data, Format, IoManagerFactory, OutputContext, ResourceCx};
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
    let cx = ResourceCx {
        resource_key: "io_manager".into(),
        project_root: dir.path().to_path_buf(),
        state_dir: dir.path().join(".dg"),
        run_id: "bench".into(),
    };
    let m = dg::io::SqliteConfig {
        path: "bench.db".into(),
        replace_on_schema_change: false,
    }
    .create_io_manager(&cx)
    .unwrap();
    let ctx = OutputContext {
        asset_key: "bench".into(),
        partition: Some(dg::io::PartitionRef {
            key: "p".into(),
            dims: Vec::new(),
            window: None,
        }),
        format: Format::Csv,
        resource_key: "io_manager".into(),
        metadata: Default::default(),
        run_id: "bench".into(),
        step_id: "bench".into(),
        log: Default::default(),
    };
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
        "CSV → sqlite: 1,000,000 rows in {secs:.3}s: {:.0} rows/s",
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
        "read CSV {read:.3}s; store Arrow (replacing 1,000,000 rows) {store:.3}s: {:.0} rows/s",
        1e6 / store
    );
}
