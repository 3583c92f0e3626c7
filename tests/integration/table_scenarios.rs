//! Scenarios of the table I/O managers that hold for SQLite, Postgres and
//! DuckDB alike. Each is called by one `#[test]` in `sqlite_manager.rs`,
//! one in `postgres_manager.rs` and one in `duckdb_manager.rs`; what only
//! one backend does stays in its own file.

use tempfile::TempDir;

use crate::backend::{Backend, Db};
use crate::support::{assert_contains, assert_fails_with, assert_ok, hourly_daily, items, read};

/// The bundled example's shape through the manager: 24 hours, one day.
pub fn seed_example_gives_24_ordered_rows(backend: Backend) {
    let Some(mut db) = Db::open(backend) else {
        return;
    };
    let dir = db.project(&[
        (
            "defs/assets.toml",
            concat!(
                hourly_daily!(),
                r#"
[assets.upstream_asset]
partitions = "hourly"
shell = "printf 'date\\n%s\\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""

[assets.downstream_asset]
partitions = "daily"
deps = ["upstream_asset"]
shell = "cp \"$DG_INPUT_UPSTREAM_ASSET\" seen.csv && cat \"$DG_INPUT_UPSTREAM_ASSET\" > \"$DG_OUTPUT\""
"#
            ),
        ),
    ]);
    let d = dir.path();
    assert_ok(&db.materialize(d, &["--partition", "2022-01-01"]));
    let hours: Vec<String> = (0..24).map(|h| format!("2022-01-01-{h:02}:00")).collect();
    let expected: String = std::iter::once("date".to_string())
        .chain(hours.iter().cloned())
        .map(|l| l + "\n")
        .collect();
    assert_eq!(read(d.join("seen.csv")), expected);
    let up = db.rows(
        d,
        "SELECT dg_partition, date FROM {s}.upstream_asset ORDER BY dg_partition",
    );
    assert_eq!(up.len(), 24);
    for (row, h) in up.iter().zip(&hours) {
        assert_eq!(row, &vec![h.clone(), h.clone()]);
    }
    let down = db.rows(
        d,
        "SELECT dg_partition, date FROM {s}.downstream_asset ORDER BY {rowid}",
    );
    assert_eq!(down.len(), 24);
    for (row, h) in down.iter().zip(&hours) {
        assert_eq!(row, &vec!["2022-01-01".to_string(), h.clone()]);
    }
    // The partition column is indexed.
    match &mut db {
        Db::Sqlite => {
            let idx = crate::backend::sqlite_rows(
                &crate::backend::sqlite_db(d),
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'upstream_asset'",
            );
            assert_eq!(idx, vec![vec!["1".to_string()]]);
        }
        Db::Postgres(pg) => {
            let idx = pg.rows(&format!(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = '{}' AND tablename = 'upstream_asset'",
                pg.schema
            ));
            assert!(
                idx.len() == 1 && idx[0][0].contains("(dg_partition)"),
                "{idx:?}"
            );
        }
        // DuckDB filters by the min/max of each row group; an ART index
        // would only slow the bulk inserts down.
        #[cfg(feature = "duckdb")]
        Db::Duckdb => {}
    }
    // A second run finds the upstream stored (exists) and loads it again.
    assert_ok(&db.materialize(
        d,
        &["--select", "downstream_asset", "--partition", "2022-01-01"],
    ));
    assert_eq!(
        db.rows(d, "SELECT count(*) FROM {s}.downstream_asset"),
        vec![vec!["24"]]
    );
}

/// Issue 13: text that only looks like a number or a boolean comes back
/// exactly as written.
pub fn text_is_not_retyped(backend: Backend) {
    let Some(mut db) = Db::open(backend) else {
        return;
    };
    let dir = db.project(&[(
        "defs/assets.toml",
        r#"
[assets.src]
shell = "printf 'zip,classification,ok\\n02134,True,true\\n10001,False,false\\n' > \"$DG_OUTPUT\""

[assets.copy]
deps = ["src"]
shell = "cp \"$DG_INPUT_SRC\" seen.csv && cp \"$DG_INPUT_SRC\" \"$DG_OUTPUT\""
"#,
    )]);
    let d = dir.path();
    assert_ok(&db.materialize(d, &[]));
    assert_eq!(
        read(d.join("seen.csv")),
        "zip,classification,ok\n02134,True,true\n10001,False,false\n"
    );
    assert_eq!(
        db.rows(
            d,
            "SELECT count(*) FROM {s}.src WHERE classification = 'True'"
        ),
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

/// A project holding [`STATIC_AB`] with `version` 1, both partitions
/// materialized (two rows each).
fn both_letters_at_version_1(db: &Db) -> TempDir {
    let dir = db.project(&[("defs/assets.toml", STATIC_AB), ("version", "1")]);
    assert_ok(&db.materialize(dir.path(), &["--all-partitions"]));
    dir
}

pub fn rematerializing_one_partition_replaces_only_its_rows(backend: Backend) {
    let Some(mut db) = Db::open(backend) else {
        return;
    };
    let dir = both_letters_at_version_1(&db);
    let d = dir.path();
    std::fs::write(d.join("version"), "2").unwrap();
    assert_ok(&db.materialize(d, &["--partition", "a"]));
    assert_eq!(
        db.rows(
            d,
            "SELECT dg_partition, k, v FROM {s}.parts ORDER BY dg_partition, {rowid}"
        ),
        vec![
            vec!["a", "a", "2"],
            vec!["a", "a", "2"],
            vec!["b", "b", "1"],
            vec!["b", "b", "1"],
        ]
    );
}

pub fn a_failing_step_leaves_the_table_unchanged(backend: Backend) {
    let Some(mut db) = Db::open(backend) else {
        return;
    };
    let dir = both_letters_at_version_1(&db);
    let d = dir.path();
    let q = "SELECT {rowid}, dg_partition, k, v FROM {s}.parts ORDER BY {rowid}";
    let before = db.rows(d, q);
    assert_eq!(before.len(), 4);
    // The step writes ragged CSV, which cannot be stored.
    std::fs::write(d.join("bad"), "").unwrap();
    let run = db.materialize(d, &["--partition", "a"]);
    assert_ne!(run.code, 0, "stdout:\n{}", run.stdout);
    assert_eq!(db.rows(d, q), before);
    if backend == Backend::Postgres {
        // A failure inside the transaction (after the DELETE): the rows stay.
        std::fs::remove_file(d.join("bad")).unwrap();
        db.rows(
            d,
            "ALTER TABLE {s}.parts ADD CONSTRAINT small CHECK (v < 2)",
        );
        std::fs::write(d.join("version"), "7").unwrap();
        let run = db.materialize(d, &["--partition", "a"]);
        assert_ne!(run.code, 0, "stdout:\n{}", run.stdout);
        assert!(
            run.stderr.contains("small") || run.stdout.contains("small"),
            "{}",
            run.stderr
        );
        assert_eq!(db.rows(d, q), before);
    }
}

pub fn sql_text_in_a_partition_key_does_no_harm(backend: Backend) {
    let Some(mut db) = Db::open(backend) else {
        return;
    };
    let key = "x'); DROP TABLE t; --";
    let dir = db.project(&[(
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
    )]);
    let d = dir.path();
    assert_ok(&db.materialize(d, &["--select", "t"]));
    assert_ok(&db.materialize(d, &["--select", "evil_asset+", "--all-partitions"]));
    assert_eq!(db.rows(d, "SELECT a FROM {s}.t"), vec![vec!["1"]]);
    let expected = vec![vec!["ok", "ok"], vec![key, key]];
    assert_eq!(
        db.rows(
            d,
            "SELECT dg_partition, k FROM {s}.evil_asset ORDER BY dg_partition"
        ),
        expected
    );
    assert_eq!(
        db.rows(
            d,
            "SELECT dg_partition, k FROM {s}.reader ORDER BY dg_partition"
        ),
        expected
    );
}

pub fn a_changed_schema_is_an_error_unless_replacing_is_allowed(backend: Backend) {
    let Some(mut db) = Db::open(backend) else {
        return;
    };
    let assets = r#"
[assets."sales/daily"]
shell = "if [ -f v2 ]; then printf 'a,c\\nx,3\\n'; else printf 'a,b\\nx,1\\n'; fi > \"$DG_OUTPUT\""
"#;
    let dir = db.project(&[("defs/assets.toml", assets)]);
    let d = dir.path();
    assert_ok(&db.materialize(d, &[]));
    std::fs::write(d.join("v2"), "").unwrap();
    let run = db.materialize(d, &["--json"]);
    assert_ne!(run.code, 0);
    let all = format!("{}\n{}", run.stdout, run.stderr);
    assert_contains(
        &all,
        &[
            "sales/daily",
            "sales__daily",
            "new column `c`",
            "column `b`",
            "replace_on_schema_change",
        ],
    );
    assert_eq!(
        db.rows(d, "SELECT a, b FROM {s}.sales__daily"),
        vec![vec!["x", "1"]]
    );
    std::fs::write(
        d.join("defs/resources.toml"),
        db.resources("replace_on_schema_change = true\n"),
    )
    .unwrap();
    assert_ok(&db.materialize(d, &[]));
    assert_eq!(
        db.rows(d, "SELECT a, c FROM {s}.sales__daily"),
        vec![vec!["x", "3"]]
    );
}

/// Asset checks on a table backend run inside the database: the query may
/// join other tables of the same database (here a referential check), and
/// sees only the checked partition.
pub fn checks_run_inside_the_database(backend: Backend) {
    let Some(db) = Db::open(backend) else { return };
    let defs = format!(
        r#"{}
[partitions.batches]
type = "static"
keys = ["a", "b"]

[assets.customers]
shell = "printf 'id,name\n1,ann\n2,bob\n' > \"$DG_OUTPUT\""

[assets.orders]
partitions = "batches"
deps = ["customers"]
shell = '''
if [ "$DG_PARTITION_KEY" = a ]; then
  printf 'id,customer_id\n10,1\n11,3\n' > "$DG_OUTPUT"
else
  printf 'id,customer_id\n20,2\n' > "$DG_OUTPUT"
fi
'''

[assets.orders.checks.known_customers]
sql = "SELECT o.id, o.customer_id FROM orders AS o WHERE o.customer_id NOT IN (SELECT id FROM customers)"

[assets.orders.checks.one_partition]
sql = "SELECT count(*) AS n FROM orders HAVING count(*) > 2 OR :partition_key NOT IN ('a', 'b')"
"#,
        db.resources("")
    );
    let p = crate::support::project(&[("defs/a.toml", &defs)]);
    let run = db.materialize(
        p.path(),
        &["--json", "--select", "+orders", "--all-partitions"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let v = crate::support::json(&run);
    let find = |part: &str, name: &str| {
        items(&v["checks"])
            .iter()
            .find(|c| c["partition"] == part && c["check"] == name)
            .unwrap_or_else(|| panic!("no {name} on {part}: {v:#}"))
            .clone()
    };
    let bad = find("a", "known_customers");
    assert_eq!(bad["passed"], false, "{bad}");
    let msg = bad["message"].as_str().unwrap();
    assert!(
        msg.starts_with("the query returned 1 row; first: "),
        "{msg}"
    );
    assert!(msg.contains("11") && msg.contains('3'), "{msg}");
    assert_eq!(find("b", "known_customers")["passed"], true);
    // Each partition's view holds only its own rows (2 and 1, never 3).
    assert_eq!(find("a", "one_partition")["passed"], true, "{v:#}");
    assert_eq!(find("b", "one_partition")["passed"], true);
}

/// Range steps (`backfill`): each partition of a step's output becomes its
/// own row range; a step over one partition again replaces only its rows;
/// a row naming another partition stores nothing.
pub fn range_steps_store_each_partition_as_its_rows(backend: Backend) {
    let Some(mut db) = Db::open(backend) else {
        return;
    };
    let asset = |extra: &str| {
        format!(
            r#"
[partitions.days]
type = "daily"
start = "2021-12-28"

[assets.events]
partitions = "days"
backfill = {{ max_partitions_per_step = 2 }}
shell = '''
{{ echo 'dg_partition,n,tag'; for k in $(echo "$DG_PARTITION_KEYS" | tr -d '[]"' | tr ',' ' '); do echo "$k,1,{extra}"; echo "$k,2,{extra}"; done; }} > "$DG_OUTPUT"
'''
"#
        )
    };
    let dir = db.project(&[("defs/assets.toml", &asset("a"))]);
    let d = dir.path();
    let run = db.materialize(
        d,
        &["--json", "--partition-range", "2021-12-29...2021-12-31"],
    );
    assert_ok(&run);
    assert_contains(&run.stdout, &["events[2021-12-29...2021-12-30]"]);
    let rows = |db: &mut Db| {
        db.rows(
            d,
            "SELECT dg_partition, n, tag FROM {s}.events ORDER BY dg_partition, n",
        )
    };
    let all = |tags: [&str; 3]| -> Vec<Vec<String>> {
        ["2021-12-29", "2021-12-30", "2021-12-31"]
            .iter()
            .zip(tags)
            .flat_map(|(k, t)| {
                (1..=2).map(move |n| vec![k.to_string(), n.to_string(), t.to_string()])
            })
            .collect()
    };
    assert_eq!(rows(&mut db), all(["a", "a", "a"]));
    // One partition again, as a range step of one: only its rows change.
    std::fs::write(d.join("defs/assets.toml"), asset("b")).unwrap();
    assert_ok(&db.materialize(d, &["--partition", "2021-12-30"]));
    assert_eq!(rows(&mut db), all(["a", "b", "a"]));
    // A row of a partition outside the step: the step fails, nothing changes.
    std::fs::write(
        d.join("defs/assets.toml"),
        asset("c").replace(
            "> \"$DG_OUTPUT\"",
            "> \"$DG_OUTPUT\"; echo '2022-01-01,9,c' >> \"$DG_OUTPUT\"",
        ),
    )
    .unwrap();
    let run = db.materialize(d, &["--partition-range", "2021-12-29...2021-12-31"]);
    assert_fails_with(&run, 1, &["`2022-01-01`"]);
    assert_eq!(rows(&mut db), all(["a", "b", "a"]));
}

/// Issue 13: a partition stored with 0 rows is stored: a later `--missing`
/// run that reads it runs instead of failing "not materialized" forever.
pub fn a_zero_row_partition_is_stored(backend: Backend) {
    let Some(mut db) = Db::open(backend) else {
        return;
    };
    let dir = db.project(&[
        (
            "defs/assets.toml",
            r#"
[partitions.daily]
type = "daily"
start = "2022-01-01"

[assets.events]
partitions = "daily"
shell = "printf 'id\\n' > \"$DG_OUTPUT\""

[assets.total]
partitions = "daily"
deps = ["events"]
shell = "wc -l < \"$DG_INPUT_EVENTS\" > \"$DG_OUTPUT.n\" && printf 'lines\\n%s\\n' \"$(cat \"$DG_OUTPUT.n\")\" > \"$DG_OUTPUT\""
"#,
        ),
    ]);
    let d = dir.path();
    assert_ok(&db.materialize(d, &["--select", "events", "--partition", "2022-01-01"]));
    assert_eq!(
        db.rows(d, "SELECT count(*) FROM {s}.events"),
        vec![vec!["0"]]
    );
    assert_ok(&db.materialize(d, &["--partition", "2022-01-01", "--missing"]));
    assert_eq!(
        db.rows(d, "SELECT lines FROM {s}.total"),
        vec![vec!["1".to_string()]]
    );
}

/// An unpartitioned `raw/src` writing the CSV text `csv` (as it stands in
/// the TOML string), with the line `columns` (may be empty), and `copy`,
/// which reads it and leaves what it read in `seen.csv`.
pub fn raw_src_and_copy(columns: &str, csv: &str) -> String {
    format!(
        r#"
[assets."raw/src"]
{columns}
shell = "printf '{csv}' > \"$DG_OUTPUT\""

[assets.copy]
deps = ["raw/src"]
shell = "cp \"$DG_INPUT_SRC\" seen.csv && cp \"$DG_INPUT_SRC\" \"$DG_OUTPUT\""
"#
    )
}

/// Daily `events` from `first_day`, whose first partition is a header with
/// no rows and every later one the row `1,2.5` (issue 13: an empty first
/// partition must not fix the table's column types).
pub fn events_empty_on_the_first_day(first_day: &str) -> String {
    format!(
        r#"
[partitions.daily]
type = "daily"
start = "{first_day}"

[assets.events]
partitions = "daily"
shell = "if [ \"$DG_PARTITION_KEY\" = {first_day} ]; then printf 'id,amount\\n'; else printf 'id,amount\\n1,2.5\\n'; fi > \"$DG_OUTPUT\""
"#
    )
}
