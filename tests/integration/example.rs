//! The bundled example (`defs/` at the repository root) is valid.

use serde_json::{Value, json};

use crate::support::{assert_no_panic, dg, example_project};

#[test]
fn check_defs_passes_with_one_line() {
    let dir = example_project();
    let run = dg(dir.path(), &["check", "defs"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_no_panic(&run);
    assert_eq!(run.stderr, "");
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert_eq!(
        run.stdout,
        "✓ 3 assets, 3 resources, 2 partitions definitions: all valid\n"
    );
}

#[test]
fn check_defs_json_is_ok() {
    let dir = example_project();
    let run = dg(dir.path(), &["check", "defs", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(
        v["counts"],
        json!({"assets": 3, "resources": 3, "partitions": 2})
    );
    assert_eq!(v["errors"], json!([]));
    assert_eq!(v["warnings"], json!([]));
}

#[test]
fn list_defs_json_has_the_three_assets() {
    let dir = example_project();
    let run = dg(dir.path(), &["list", "defs", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_no_panic(&run);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let assets = v["assets"].as_array().expect("assets");
    let summary: Vec<Value> = assets
        .iter()
        .map(|a| {
            json!({
                "key": a["key"],
                "deps": a["deps"],
                "partitions": a["partitions"],
                "io_manager": a["io_manager"],
            })
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            json!({"key": "daily_report", "deps": ["downstream_asset"],
                   "partitions": "daily", "io_manager": "archive"}),
            json!({"key": "downstream_asset", "deps": ["upstream_asset"],
                   "partitions": "daily", "io_manager": "io_manager"}),
            json!({"key": "upstream_asset", "deps": [],
                   "partitions": "hourly", "io_manager": "io_manager"}),
        ]
    );
    // The explicit inputs of `daily_report` keep their names and mappings.
    let report = &assets[0];
    assert_eq!(report["inputs"][0]["name"], "today");
    assert_eq!(report["inputs"][0]["mapping"], "time_window");
    assert_eq!(report["inputs"][0]["mapping_inferred"], true);
    assert_eq!(report["inputs"][1]["name"], "yesterday");
    assert_eq!(report["inputs"][1]["mapping"], "time_window");
    assert_eq!(report["inputs"][1]["mapping_inferred"], false);
    // `downstream_asset` reads the hours of its day: an inferred time window.
    assert_eq!(assets[1]["inputs"][0]["mapping"], "time_window");
    assert_eq!(assets[1]["inputs"][0]["mapping_inferred"], true);
}
