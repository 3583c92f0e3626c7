//! Issue 13, data integrity in the I/O managers: what a step writes is
//! what the next step reads, through every manager; empty partitions are
//! stored; a step that writes the wrong format is told which one it wrote.

use std::path::Path;

use serde_json::Value;
use tempfile::TempDir;

use crate::{Run, assert_no_panic, dg};

const NOW: &str = "2024-01-04T00:00:00Z";

fn project(files: &[(&str, &str)]) -> TempDir {
    let tmp = TempDir::new().expect("temp dir");
    for (path, text) in files {
        let p = tmp.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
    }
    tmp
}

fn run(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--now", NOW];
    all.extend(args);
    let run = dg(dir, &all);
    assert_no_panic(&run);
    run
}

fn ok(run: &Run) {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout, run.stderr))
}

/// A step that writes CSV to an asset stored as Parquet is told that it
/// wrote CSV and which `format` to set, not just "Corrupt footer".
#[test]
fn a_step_that_writes_the_wrong_format_is_told_which_it_wrote() {
    let dir = project(&[(
        "defs/defs.toml",
        r#"
[resources.io_manager]
type = "fs"
format = "parquet"

[assets.events]
shell = "printf 'id,name\\n1,x\\n' > \"$DG_OUTPUT\""
"#,
    )]);
    let r = run(dir.path(), &["materialize", "--json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    let error = v["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("looks like CSV") && error.contains("set `format = \"csv\"` on the asset"),
        "{error}"
    );
    // Following the hint works.
    std::fs::write(
        dir.path().join("defs/defs.toml"),
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
    ok(&run(dir.path(), &["materialize"]));
}

/// An empty partition in the `fs` manager is stored: readers run, with
/// `--missing` too.
#[test]
fn a_zero_row_partition_is_stored_in_every_file_format() {
    for format in ["csv", "jsonl", "parquet"] {
        let dir = project(&[(
            "defs/defs.toml",
            &format!(
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
            ),
        )]);
        ok(&run(
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
        ok(&r);
    }
}
