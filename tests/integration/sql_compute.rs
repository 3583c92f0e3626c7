//! The `sql` compute: queries run in an embedded SQLite engine over the
//! asset's loaded inputs, with the partition bound as parameters, and the
//! result stored by the asset's manager like any step's output.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::support::{Run, example_project, json, materialize_json, project, read, step};

const NOW: &str = "2022-01-02T00:00:00Z";

/// `dg --now NOW materialize --json ARGS…` in `dir`, which must exit with
/// `code`.
fn materialize(dir: &Path, args: &[&str], code: i32) -> Run {
    let run = materialize_json(dir, NOW, args);
    assert_eq!(
        run.code, code,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run
}

/// A project whose `defs/assets.toml` is `defs`, all of it materialized:
/// the project and the run, which must exit with `code`.
fn materialized(defs: &str, code: i32) -> (TempDir, Run) {
    let dir = project(&[("defs/assets.toml", defs)]);
    let run = materialize(dir.path(), &[], code);
    (dir, run)
}

/// The files stored for `asset` by the default `fs` manager.
fn stored(dir: &Path, asset: &str) -> Vec<PathBuf> {
    let d = dir.join(".dg/storage").join(asset);
    let mut out: Vec<PathBuf> = match std::fs::read_dir(&d) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Every step log's text, concatenated.
fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for e in walkdir::WalkDir::new(dir.join(".dg/logs")) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            out.push_str(&read(e.path()));
        }
    }
    out
}

#[test]
fn the_seed_example_with_a_sql_downstream_gives_24_rows_in_order() {
    let dir = example_project();
    let assets = dir.path().join("defs/assets.toml");
    let text = read(&assets).replace(
        r#"shell = "cat \"$DG_INPUT_UPSTREAM_ASSET\" > \"$DG_OUTPUT\"""#,
        r#"sql = "SELECT * FROM upstream_asset""#,
    );
    assert!(text.contains("sql = \"SELECT * FROM upstream_asset\""));
    std::fs::write(&assets, text).unwrap();

    let run = materialize(dir.path(), &["--partition", "2022-01-01"], 0);
    let mut expected = String::from("date\n");
    for h in 0..24 {
        expected.push_str(&format!("2022-01-01-{h:02}:00\n"));
    }
    assert_eq!(
        read(
            dir.path()
                .join(".dg/storage/downstream_asset/2022-01-01.csv")
        ),
        expected
    );
    assert_eq!(
        read(dir.path().join(".dg/archive/daily_report/2022-01-01.jsonl")),
        "{\"day\":\"2022-01-01\",\"rows\":24,\"rows_yesterday\":0}\n"
    );
    let v = json(&run);
    assert_eq!(
        step(&v, "downstream_asset[2022-01-01]")["status"],
        "success"
    );
    // The step log holds the query and what it did.
    let log = logs(dir.path());
    assert!(log.contains("SELECT * FROM upstream_asset"), "{log}");
    assert!(log.contains("24 rows"), "{log}");
}

#[test]
fn parameters_are_bound_never_spliced() {
    let defs = r#"
[partitions.keys]
type = "static"
keys = ["x'); DROP TABLE t; --", "plain"]

[partitions.hourly]
type = "hourly"
start = "2022-01-01-00:00"

[assets.t]
partitions = "keys"
shell = '''printf 'v\n1\n' > "$DG_OUTPUT"'''

[assets.p]
partitions = "keys"
deps = ["t"]
sql = "SELECT :partition_key AS k, :partition_start AS s, (SELECT count(*) FROM t) AS n, :run_id = :run_id AS same"

[assets.h]
partitions = "hourly"
sql = """
SELECT :partition_key AS k,
       :partition_start AS s,
       :partition_end AS e,
       length(:run_id) > 0 AS has_run
"""

[assets.u]
sql = "SELECT :partition_key IS NULL AS no_key, :partition_start IS NULL AS no_start"
"#;
    let dir = project(&[("defs/assets.toml", defs)]);
    materialize(
        dir.path(),
        &["--partition", "x'); DROP TABLE t; --", "-s", "+p"],
        0,
    );
    let files = stored(dir.path(), "p");
    assert_eq!(files.len(), 1, "{files:?}");
    // The literal key; the input table still exists (count 1); no window: NULL.
    assert_eq!(read(&files[0]), "k,s,n,same\nx'); DROP TABLE t; --,,1,1\n");

    materialize(
        dir.path(),
        &["--partition", "2022-01-01-05:00", "-s", "h"],
        0,
    );
    assert_eq!(
        read(dir.path().join(".dg/storage/h/2022-01-01-05:00.csv")),
        "k,s,e,has_run\n2022-01-01-05:00,2022-01-01T05:00:00+00:00,2022-01-01T06:00:00+00:00,1\n"
    );

    materialize(dir.path(), &["-s", "u"], 0);
    assert_eq!(
        read(dir.path().join(".dg/storage/u.csv")),
        "no_key,no_start\n1,1\n"
    );
}

#[test]
fn an_aggregate_over_two_inputs() {
    let defs = r#"
[assets.sales]
shell = '''printf 'region,amount\nus,10\neu,5\nus,2.5\napac,1\neu,\n' > "$DG_OUTPUT"'''

[assets.regions]
shell = '''printf 'region,name\nus,United States\neu,Europe\napac,"Asia, Pacific"\n' > "$DG_OUTPUT"'''

[assets.totals]
deps = ["sales", "regions"]
sql = """
SELECT r.name, count(s.amount) AS sales, sum(s.amount) AS total
FROM sales AS s JOIN regions AS r ON r.region = s.region
GROUP BY r.name
ORDER BY total DESC
"""
"#;
    let (dir, _) = materialized(defs, 0);
    assert_eq!(
        read(dir.path().join(".dg/storage/totals.csv")),
        "name,sales,total\nUnited States,2,12.5\nEurope,1,5.0\n\"Asia, Pacific\",1,1.0\n"
    );
}

#[test]
fn an_unpartitioned_sql_asset_reads_an_unpartitioned_input_and_keeps_types() {
    let defs = r#"
[resources.io_manager]
type = "fs"
format = "jsonl"

[assets.src]
format = "csv"
shell = '''printf 'a,name\n1,x\n2,\n3,z\n' > "$DG_OUTPUT"'''

[assets.out]
deps = ["src"]
sql = "SELECT a, a * 1.5 AS b, NULL AS c, name FROM src ORDER BY a DESC"
"#;
    let (dir, _) = materialized(defs, 0);
    assert_eq!(
        read(dir.path().join(".dg/storage/out.jsonl")),
        "{\"a\":3,\"b\":4.5,\"c\":null,\"name\":\"z\"}\n\
         {\"a\":2,\"b\":3.0,\"c\":null,\"name\":null}\n\
         {\"a\":1,\"b\":1.5,\"c\":null,\"name\":\"x\"}\n"
    );
}

#[test]
fn a_syntax_error_fails_the_step_naming_the_asset_and_stores_nothing() {
    let defs = r#"
[assets.src]
shell = '''printf 'a\n1\n' > "$DG_OUTPUT"'''

[assets.bad]
deps = ["src"]
sql = "SELEC * FROM src"
"#;
    let (dir, run) = materialized(defs, 1);
    let v = json(&run);
    let s = step(&v, "bad");
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(
        s["error"],
        "SQL error in asset `bad`: near \"SELEC\": syntax error (query defined at defs/assets.toml:7:1)",
        "{s}"
    );
    assert!(stored(dir.path(), "bad").is_empty());
    assert!(!dir.path().join(".dg/storage/bad.csv").exists());
    let log = logs(dir.path());
    assert!(log.contains("SELEC * FROM src"), "{log}");
    assert!(log.contains("near \"SELEC\": syntax error"), "{log}");

    // Unknown parameters and a missing table are errors too.
    let defs = r#"
[assets.p]
sql = "SELECT :nope AS x"

[assets.q]
sql = "SELECT * FROM missing"
"#;
    let (_dir, run) = materialized(defs, 1);
    let v = json(&run);
    let e = step(&v, "p")["error"].as_str().unwrap().to_string();
    assert!(
        e.starts_with("SQL error in asset `p`: unknown parameter `:nope`"),
        "{e}"
    );
    assert_eq!(
        step(&v, "q")["error"],
        "SQL error in asset `q`: no such table: missing (query defined at defs/assets.toml:6:1)"
    );
}

#[test]
fn a_query_over_an_empty_input_says_so() {
    let defs = r#"
[assets.src]
shell = ': > "$DG_OUTPUT"'

[assets.down]
deps = ["src"]
sql = "SELECT count(*) AS n FROM src"
"#;
    let (_dir, run) = materialized(defs, 1);
    let v = json(&run);
    let e = step(&v, "down")["error"].as_str().unwrap().to_string();
    assert!(
        e.starts_with("SQL error in asset `down`: no such table: src (input `src` is empty"),
        "{e}"
    );
}
