//! Small fixes, each checked through the real binary: names that would share
//! a step's environment variable, `dg list defs` listing each dependency
//! once, and the pre-run "missing" list in partition order.

use std::path::Path;

use serde_json::Value;

use crate::support::{
    Run, assert_contains, assert_fails_with, assert_no_panic, dg, example_project, find, one_file,
    text_rows,
};

/// `dg check defs`, which must fail with exit 2 and nothing on stdout.
fn check_fails(dir: &Path) -> Run {
    let run = dg(dir, &["check", "defs"]);
    assert_no_panic(&run);
    assert_eq!(run.code, 2, "stderr:\n{}", run.stderr);
    assert_eq!(run.stdout, "");
    run
}

#[test]
fn two_inputs_with_one_environment_variable_are_a_located_error() {
    let dir = one_file(
        r#"[assets."a-b"]
shell = "true"

[assets.a_b]
shell = "true"

[assets.x]
deps = ["a-b"]
shell = "cat \"$DG_INPUT_A_B\" > \"$DG_OUTPUT\""

[assets.x.ins.a_b]
asset = "a_b"
"#,
    );
    let run = check_fails(dir.path());
    assert_contains(
        &run.stderr,
        &[
            "inputs `a-b` and `a_b` of asset `x` both become `DG_INPUT_A_B`",
            "--> defs/a.toml:11:15",
            " 8 | deps = [\"a-b\"]\n   |         ----- `a-b` → `DG_INPUT_A_B`",
        ],
    );
    insta::assert_snapshot!(run.stderr);

    let json = dg(dir.path(), &["check", "defs", "--json"]);
    assert_eq!(json.code, 2);
    let v: Value = serde_json::from_str(&json.stdout).expect("JSON");
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v:#}");
    assert_eq!(errors[0]["kind"], "duplicate");
    assert_eq!(errors[0]["file"], "defs/a.toml");
    assert_eq!(errors[0]["line"], 11);
}

#[test]
fn two_dimensions_with_one_environment_variable_are_a_located_error() {
    let dir = one_file(
        r#"[partitions.m]
type = "multi"

[partitions.m.dimensions]
"a-b" = { type = "static", keys = ["x"] }
a_b = { type = "static", keys = ["y"] }

[assets.x]
partitions = "m"
shell = "true"
"#,
    );
    let run = check_fails(dir.path());
    assert_contains(
        &run.stderr,
        &[
            "dimensions `a-b` and `a_b` of partitions `m` both become `DG_PARTITION_A_B`",
            "--> defs/a.toml:6:1",
            "5 | \"a-b\" = { type = \"static\", keys = [\"x\"] }\n  | ----- `a-b` → `DG_PARTITION_A_B`",
        ],
    );
    insta::assert_snapshot!(run.stderr);
}

#[test]
fn an_input_name_may_hold_a_dot_like_a_key_segment() {
    let dir = one_file(
        r#"[assets."raw/v1.2"]
shell = "printf 'a\n1\n' > \"$DG_OUTPUT\""

[assets.from_deps]
deps = ["raw/v1.2"]
shell = "cat \"$DG_INPUT_V1_2\" > \"$DG_OUTPUT\""

[assets.from_ins]
shell = "cat \"$DG_INPUT_V1_2\" > \"$DG_OUTPUT\""

[assets.from_ins.ins."v1.2"]
asset = "raw/v1.2"
"#,
    );
    let run = dg(dir.path(), &["check", "defs"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let run = dg(dir.path(), &["materialize"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
}

#[test]
fn list_defs_names_an_upstream_read_twice_once() {
    let dir = example_project();
    let run = dg(dir.path(), &["list", "defs"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let line = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("daily_report"))
        .expect("a daily_report line");
    assert!(line.ends_with("← downstream_asset"), "{line}");

    let run = dg(dir.path(), &["list", "defs", "--json"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let report = find(&v["assets"], "key", "daily_report");
    assert_eq!(report["deps"], serde_json::json!(["downstream_asset"]));
    assert_eq!(
        text_rows(&report["inputs"], &["name", "asset"]),
        [
            ["today", "downstream_asset"],
            ["yesterday", "downstream_asset"]
        ]
    );
}

#[test]
fn missing_upstream_partitions_are_listed_in_partition_order() {
    let dir = example_project();
    // `daily_report[D]` reads D (`today`) before D-1 (`yesterday`).
    let daily_report = |partitions: &[&str]| {
        let mut args = vec!["materialize", "--now", "2022-01-10T00:00:00Z"];
        args.extend(["--select", "daily_report"]);
        args.extend(partitions);
        let run = dg(dir.path(), &args);
        assert_no_panic(&run);
        run
    };
    let run = daily_report(&["--partition-range", "2022-01-02...2022-01-05"]);
    assert_fails_with(
        &run,
        2,
        &[
            "  missing: `downstream_asset` [2022-01-01, 2022-01-02, 2022-01-03, 2022-01-04, 2022-01-05] (5)\n",
        ],
    );
    let run = daily_report(&["--partition", "2022-01-03"]);
    assert_fails_with(
        &run,
        2,
        &["  missing: `downstream_asset` [2022-01-02, 2022-01-03] (2)\n"],
    );
    assert!(!dir.path().join(".dg/storage").exists(), "nothing ran");
}

/// A step that rewrites its input file (as `sed -i` does: write a new file,
/// rename it over the input) changes its own copy, never the stored
/// partition; stored partitions are read-only.
#[test]
fn a_step_rewriting_its_input_cannot_change_storage() {
    let dir = one_file(
        r#"[assets.up]
shell = "printf 'v\n1\n' > \"$DG_OUTPUT\""

[assets.down]
deps = ["up"]
shell = "sed -i 's/1/2/' \"$DG_INPUT_UP\" && cp \"$DG_INPUT_UP\" \"$DG_OUTPUT\""
"#,
    );
    let run = dg(dir.path(), &["materialize"]);
    assert_no_panic(&run);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let storage = dir.path().join(".dg/storage");
    assert_eq!(
        std::fs::read_to_string(storage.join("down.csv")).unwrap(),
        "v\n2\n"
    );
    assert_eq!(
        std::fs::read_to_string(storage.join("up.csv")).unwrap(),
        "v\n1\n",
        "the stored upstream partition was changed through the step's input"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(storage.join("up.csv"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o222,
        0,
        "stored partitions are read-only, mode {mode:o}"
    );
}

/// A run's record says whether it was narrowed with `--missing` or `--stale`.
#[test]
fn run_records_note_missing_and_stale() {
    let dir = one_file(
        r#"[assets.a]
shell = "printf 'v\n1\n' > \"$DG_OUTPUT\""
"#,
    );
    for args in [
        &["materialize", "--missing"][..],
        &["materialize", "--stale"][..],
    ] {
        let run = dg(dir.path(), args);
        assert_no_panic(&run);
        assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    }
    let run = dg(dir.path(), &["runs", "--json"]);
    let v: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "the --stale run had nothing to do: {v}");
    assert_eq!(runs[0]["partitions"], "--missing", "{v}");
}
