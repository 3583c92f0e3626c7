//! Issue 13, data integrity in the I/O managers: what a step writes is
//! what the next step reads, through every manager; empty partitions are
//! stored; a step that writes the wrong format is told which one it wrote.

use std::path::Path;

use serde_json::Value;

use crate::support::{
    Run, assert_contains, assert_fails_with, assert_no_panic, assert_ok, assert_step_error, dg,
    find, json, materialize_json, one_file,
};

const NOW: &str = "2024-01-04T00:00:00Z";

fn run(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--now", NOW];
    all.extend(args);
    let run = dg(dir, &all);
    assert_no_panic(&run);
    run
}

/// `dg materialize --json ARGS…` in `dir`, which must exit with 1 (a step
/// failed or was skipped): its summary.
fn failed_run(dir: &Path, args: &[&str]) -> Value {
    let r = materialize_json(dir, NOW, args);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    json(&r)
}

/// `dg materialize --json ARGS…` in `dir`, whose only step must fail:
/// that step's error.
fn the_only_step_fails(dir: &Path, args: &[&str]) -> String {
    failed_run(dir, args)["steps"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A step that writes CSV to an asset stored as Parquet is told that it
/// wrote CSV and which `format` to set, not just "Corrupt footer".
#[test]
fn a_step_that_writes_the_wrong_format_is_told_which_it_wrote() {
    let dir = one_file(
        r#"
[resources.io_manager]
type = "fs"
format = "parquet"

[assets.events]
shell = "printf 'id,name\\n1,x\\n' > \"$DG_OUTPUT\""
"#,
    );
    let error = the_only_step_fails(dir.path(), &[]);
    assert!(
        error.contains("looks like CSV") && error.contains("set `format = \"csv\"` on the asset"),
        "{error}"
    );
    // Following the hint works.
    std::fs::write(
        dir.path().join("defs/a.toml"),
        r#"
[resources.io_manager]
type = "fs"
format = "parquet"

[assets.events]
format = "csv"
shell = "printf 'id,name\\n1,x\\n' > \"$DG_OUTPUT\""
"#,
    )
    .unwrap();
    assert_ok(&run(dir.path(), &["materialize"]));
}

/// An empty partition in the `fs` manager is stored: readers run, with
/// `--missing` too.
#[test]
fn a_zero_row_partition_is_stored_in_every_file_format() {
    for format in ["csv", "jsonl", "parquet"] {
        let dir = one_file(&format!(
            r#"
[resources.io_manager]
type = "fs"
format = "{format}"

[partitions.daily]
type = "daily"
start = "2024-01-01"

[assets.events]
partitions = "daily"
format = "csv"
shell = "printf 'id\\n' > \"$DG_OUTPUT\""

[assets.total]
partitions = "daily"
deps = ["events"]
format = "csv"
shell = "printf 'n\\n%s\\n' \"$(wc -l < \"$DG_INPUT_EVENTS\")\" > \"$DG_OUTPUT\""
"#
        ));
        assert_ok(&run(
            dir.path(),
            &[
                "materialize",
                "--select",
                "events",
                "--partition",
                "2024-01-01",
            ],
        ));
        let r = run(
            dir.path(),
            &["materialize", "--partition", "2024-01-01", "--missing"],
        );
        assert_ok(&r);
    }
}

/// `columns` declares types: applied when storing, through any manager.
#[test]
fn declared_columns_type_the_stored_output() {
    let dir = one_file(
        r#"
[resources.io_manager]
type = "sqlite"
path = "w.db"

[resources.pq]
type = "fs"
format = "parquet"

[assets.orders]
columns = { zip = "string", amount = "float64", day = "date", at = "timestamp", ok = "bool" }
shell = "printf 'zip,amount,day,at,ok\\n02134,3,2024-01-31,2024-01-31T13:00:00+02:00,True\\n10001,2.5,2024-02-01,2024-02-01T00:00:00Z,no\\n' > \"$DG_OUTPUT\""

[assets.copy]
deps = ["orders"]
io_manager = "pq"
format = "csv"
shell = "cp \"$DG_INPUT_ORDERS\" seen.csv && cp \"$DG_INPUT_ORDERS\" \"$DG_OUTPUT\""
"#,
    );
    assert_ok(&run(dir.path(), &["materialize"]));
    let conn = rusqlite::Connection::open(dir.path().join("w.db")).unwrap();
    let types: Vec<(String, String)> = conn
        .prepare("SELECT name, type FROM pragma_table_info('orders')")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let types: Vec<(&str, &str)> = types
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("zip", "TEXT"),
            ("amount", "REAL"),
            ("day", "TEXT"),
            ("at", "TEXT"),
            ("ok", "BOOLEAN")
        ]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("seen.csv")).unwrap(),
        "zip,amount,day,at,ok\n\
         02134,3.0,2024-01-31,2024-01-31T11:00:00Z,true\n\
         10001,2.5,2024-02-01,2024-02-01T00:00:00Z,false\n"
    );
}

/// A value that does not fit its declared type fails the step, naming the
/// row and the column; nothing is stored.
#[test]
fn a_value_that_does_not_fit_its_column_type_fails_the_step() {
    let dir = one_file(
        r#"
[assets.orders]
columns = { amount = "float64" }
shell = "printf 'id,amount\\n1,2.5\\n2,abc\\n' > \"$DG_OUTPUT\""
"#,
    );
    let error = the_only_step_fails(dir.path(), &[]);
    assert!(
        error.contains("row 2, column `amount`: `abc` is not a valid float64"),
        "{error}"
    );
    assert!(!dir.path().join(".dg/storage/orders.csv").exists());
}

/// `columns` is checked by `dg check defs`: a located error listing the
/// valid type names.
#[test]
fn unknown_column_types_are_located_errors() {
    let dir = one_file(
        r#"
[assets.orders]
columns = { zip = "text", amount = "float" }
shell = "true"
"#,
    );
    let r = run(dir.path(), &["check", "defs"]);
    assert_fails_with(
        &r,
        2,
        &[
            "unknown column type `text` for column `zip` in asset `orders`",
            "defs/a.toml:3:19",
            "did you mean `float64`?",
            "valid types: `string`, `int64`, `float64`, `bool`, `date`, `timestamp`",
        ],
    );
}

/// `output_required = false`: a step may write nothing; that partition is
/// recorded as "no output", its readers are skipped (not failed, in this
/// run and later ones), and `dg status` shows it.
#[test]
fn output_required_false_records_no_output_and_skips_readers() {
    let dir = one_file(
        r#"
[partitions.daily]
type = "daily"
start = "2024-01-01"

[assets.events]
partitions = "daily"
output_required = false
shell = "if [ \"$DG_PARTITION_KEY\" != 2024-01-01 ]; then printf 'id\\n1\\n' > \"$DG_OUTPUT\"; fi"

[assets.total]
partitions = "daily"
deps = ["events"]
shell = "cp \"$DG_INPUT_EVENTS\" \"$DG_OUTPUT\""
"#,
    );
    let v = failed_run(
        dir.path(),
        &["--partition-range", "2024-01-01...2024-01-02"],
    );
    let status = |id: &str| find(&v["steps"], "id", id).clone();
    assert_eq!(status("events[2024-01-01]")["status"], "success");
    assert_eq!(status("total[2024-01-02]")["status"], "success");
    assert_step_error(
        &status("total[2024-01-01]"),
        "skipped",
        "upstream `events[2024-01-01]` has no output",
    );
    // Later runs that read it skip too, instead of failing the pre-run check.
    let v = failed_run(
        dir.path(),
        &["--select", "total", "--partition", "2024-01-01"],
    );
    assert_eq!(v["steps"][0]["status"], "skipped");
    // `dg status` shows it.
    let r = run(dir.path(), &["status", "--select", "events", "--json"]);
    assert_ok(&r);
    let st = &json(&r)["assets"][0];
    assert_eq!(st["no_output"], 1, "{st}");
    assert_eq!(st["ranges"]["no_output"][0], "2024-01-01", "{st}");
    let r = run(dir.path(), &["status", "--select", "events"]);
    assert_contains(&r.stdout, &["(1 with no output)", "no output [2024-01-01]"]);
    // Without the setting, writing nothing is a failure that names it.
    let defs = std::fs::read_to_string(dir.path().join("defs/a.toml")).unwrap();
    std::fs::write(
        dir.path().join("defs/a.toml"),
        defs.replace("output_required = false\n", ""),
    )
    .unwrap();
    let error = the_only_step_fails(
        dir.path(),
        &["--select", "events", "--partition", "2024-01-01"],
    );
    assert!(error.contains("output_required = false"), "{error}");
}
