//! `dg plan` and `dg list partitions`: the bundled example and the projects
//! under `tests/fixtures/plan/`. Every run pins *now* (`--now` or `DG_NOW`)
//! so plans and key lists are reproducible.

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{
    Run, assert_contains, assert_fails_with, assert_no_panic, dg, dg_with_env, example_project,
    find, fixture, hourly_daily, items, one_file,
};

/// *now* for the bundled example: every partition of January 2022 is over.
const NOW: &str = "2022-02-01T00:00:00Z";
/// *now* for the fixtures that start on 2024-01-01: three days are over.
const NOW_2024: &str = "2024-01-04T00:00:00Z";

fn project(case: &str) -> TempDir {
    fixture(&format!("tests/fixtures/plan/{case}"))
}

/// `dg ARGS… --now NOW` must succeed with nothing on stderr.
fn ok(dir: &TempDir, args: &[&str], now: &str) -> Run {
    let mut all = args.to_vec();
    all.extend(["--now", now]);
    let run = dg(dir.path(), &all);
    assert_no_panic(&run);
    assert_eq!(run.code, 0, "dg {all:?} failed:\n{}", run.stderr);
    assert_eq!(run.stderr, "", "dg {all:?} wrote to stderr");
    run
}

/// `dg ARGS… --now NOW` must fail with exit 2, nothing on stdout, and
/// stderr holding each of `expect`.
fn usage_error(dir: &TempDir, args: &[&str], now: &str, expect: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--now", now]);
    let run = dg(dir.path(), &all);
    assert_no_panic(&run);
    assert_eq!(
        run.code, 2,
        "exit code of dg {all:?}; stderr:\n{}",
        run.stderr
    );
    assert_eq!(run.stdout, "", "nothing on stdout for dg {all:?}");
    assert_contains(&run.stderr, expect);
    run
}

/// `dg plan ARGS… --json` on the example at [`NOW`], parsed.
fn plan_json(dir: &TempDir, args: &[&str]) -> Value {
    let mut all = vec!["plan", "--json"];
    all.extend(args);
    let run = ok(dir, &all, NOW);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", run.stdout))
}

fn steps(plan: &Value) -> &Vec<Value> {
    plan["steps"].as_array().expect("steps is an array")
}

fn ids(plan: &Value) -> Vec<&str> {
    steps(plan)
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect()
}

/// The assets of a plan, in the order their first steps appear.
fn assets(plan: &Value) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for s in steps(plan) {
        let a = s["asset"].as_str().expect("asset");
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

fn step<'a>(plan: &'a Value, id: &str) -> &'a Value {
    steps(plan)
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {:?}", ids(plan)))
}

/// Every step comes after every step in its `after`, and `after` only
/// names steps of the plan.
fn assert_topological(plan: &Value) {
    let ids = ids(plan);
    for (i, s) in steps(plan).iter().enumerate() {
        for a in s["after"].as_array().expect("after") {
            let a = a.as_str().expect("after holds step ids");
            let j = ids
                .iter()
                .position(|x| *x == a)
                .unwrap_or_else(|| panic!("{} waits for {a}, which is not a step", ids[i]));
            assert!(j < i, "{} comes before {a}, which it waits for", ids[i]);
        }
    }
}

/// `2022-01-DD-HH:00` for the 24 hours of a day.
fn hours(day: &str) -> Vec<String> {
    (0..24).map(|h| format!("{day}-{h:02}:00")).collect()
}

// ---------------------------------------------------------------------------
// The bundled example

#[test]
fn one_day_human() {
    let dir = example_project();
    let run = ok(&dir, &["plan", "--partition", "2022-01-01"], NOW);
    assert!(
        run.stdout
            .starts_with("Plan at 2022-02-01T00:00:00+00:00: 26 steps for 3 assets\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("[2022-01-01-00:00 … 2022-01-01-23:00] (24)")
    );
    assert!(!run.stdout.contains("Must already exist"), "{}", run.stdout);
    insta::assert_snapshot!("one_day_human", run.stdout);
}

#[test]
fn one_day_json() {
    let dir = example_project();
    let plan = plan_json(&dir, &["--partition", "2022-01-01"]);
    assert_eq!(plan["now"], "2022-02-01T00:00:00+00:00");
    let ids = ids(&plan);
    assert_eq!(ids.len(), 26, "{ids:?}");

    // The 24 hours first, in key order.
    let hour_ids: Vec<String> = hours("2022-01-01")
        .iter()
        .map(|h| format!("upstream_asset[{h}]"))
        .collect();
    assert_eq!(ids[..24], hour_ids);
    for (s, h) in steps(&plan)[..24].iter().zip(hours("2022-01-01")) {
        assert_eq!(s["asset"], "upstream_asset");
        assert_eq!(s["partition"], h.as_str());
        assert_eq!(s["io_manager"], "io_manager");
        assert_eq!(s["inputs"], json!([]));
        assert_eq!(s["after"], json!([]));
    }

    // The day reads its 24 hours, all produced by the plan.
    assert_eq!(ids[24], "downstream_asset[2022-01-01]");
    let day = step(&plan, "downstream_asset[2022-01-01]");
    assert_eq!(day["asset"], "downstream_asset");
    assert_eq!(day["partition"], "2022-01-01");
    assert_eq!(day["io_manager"], "io_manager");
    let inputs = day["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0]["name"], "upstream_asset");
    assert_eq!(inputs[0]["asset"], "upstream_asset");
    assert_eq!(inputs[0]["partitions"], json!(hours("2022-01-01")));
    assert_eq!(inputs[0]["manager"], "io_manager");
    assert_eq!(inputs[0]["in_plan"], true);
    assert_eq!(day["after"], json!(hour_ids));

    // The report reads today; yesterday does not exist and is allowed not to.
    assert_eq!(ids[25], "daily_report[2022-01-01]");
    let report = step(&plan, "daily_report[2022-01-01]");
    assert_eq!(report["io_manager"], "archive");
    let inputs = report["inputs"].as_array().unwrap();
    let names: Vec<&Value> = inputs.iter().map(|i| &i["name"]).collect();
    assert_eq!(names, [&json!("today"), &json!("yesterday")]);
    assert_eq!(inputs[0]["asset"], "downstream_asset");
    assert_eq!(inputs[0]["partitions"], json!(["2022-01-01"]));
    assert_eq!(inputs[0]["in_plan"], true);
    assert_eq!(inputs[1]["asset"], "downstream_asset");
    assert_eq!(inputs[1]["partitions"], json!([]));
    assert_eq!(inputs[1]["in_plan"], true);
    assert_eq!(report["after"], json!(["downstream_asset[2022-01-01]"]));

    assert_topological(&plan);
}

#[test]
fn now_from_the_environment() {
    let dir = example_project();
    let run = dg_with_env(
        dir.path(),
        &["plan", "--partition", "2022-01-01", "--json"],
        &[("DG_NOW", "2022-01-15T12:30:00+01:00")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(plan["now"], "2022-01-15T12:30:00+01:00");
    assert_eq!(steps(&plan).len(), 26);
    // --now wins over DG_NOW.
    let run = dg_with_env(
        dir.path(),
        &["plan", "--partition", "2022-01-01", "--json", "--now", NOW],
        &[("DG_NOW", "2022-01-15T12:30:00+01:00")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(plan["now"], "2022-02-01T00:00:00+00:00");
}

#[test]
fn a_day_not_over_at_now_is_not_a_partition() {
    let dir = example_project();
    let run = usage_error(
        &dir,
        &["plan", "--partition", "2022-01-01"],
        "2022-01-01T12:00:00Z",
        &[
            "no selected asset has the partition `2022-01-01`",
            "not over yet at --now",
        ],
    );
    insta::assert_snapshot!("day_not_over", run.stderr);
}

#[test]
fn three_day_range() {
    let dir = example_project();
    let plan = plan_json(&dir, &["--partition-range", "2022-01-01...2022-01-03"]);
    let ids = ids(&plan);
    assert_eq!(ids.len(), 72 + 3 + 3, "{ids:?}");
    let expected_hours: Vec<String> = ["2022-01-01", "2022-01-02", "2022-01-03"]
        .iter()
        .flat_map(|d| hours(d))
        .map(|h| format!("upstream_asset[{h}]"))
        .collect();
    assert_eq!(ids[..72], expected_hours);
    assert_eq!(
        ids[72..],
        [
            "downstream_asset[2022-01-01]",
            "downstream_asset[2022-01-02]",
            "downstream_asset[2022-01-03]",
            "daily_report[2022-01-01]",
            "daily_report[2022-01-02]",
            "daily_report[2022-01-03]",
        ]
    );
    for day in ["2022-01-01", "2022-01-02", "2022-01-03"] {
        let s = step(&plan, &format!("downstream_asset[{day}]"));
        assert_eq!(s["inputs"][0]["partitions"], json!(hours(day)));
    }
    // Inside the range, yesterday is produced by the plan.
    let report = step(&plan, "daily_report[2022-01-02]");
    assert_eq!(report["inputs"][1]["name"], "yesterday");
    assert_eq!(report["inputs"][1]["partitions"], json!(["2022-01-01"]));
    assert_eq!(report["inputs"][1]["in_plan"], true);
    assert_eq!(
        report["after"],
        json!([
            "downstream_asset[2022-01-01]",
            "downstream_asset[2022-01-02]"
        ])
    );
    assert_topological(&plan);

    let run = ok(
        &dir,
        &["plan", "--partition-range", "2022-01-01...2022-01-03"],
        NOW,
    );
    assert_contains(&run.stdout, &["78 steps for 3 assets"]);
    assert!(!run.stdout.contains("Must already exist"), "{}", run.stdout);
}

#[test]
fn second_day_needs_the_first_to_exist() {
    let dir = example_project();
    let run = ok(&dir, &["plan", "--partition", "2022-01-02"], NOW);
    assert_contains(
        &run.stdout,
        &[
            "Must already exist (not produced by this plan):\n  `downstream_asset` [2022-01-01]  (read by `daily_report`)",
        ],
    );
    insta::assert_snapshot!("second_day_human", run.stdout);

    let plan = plan_json(&dir, &["--partition", "2022-01-02"]);
    assert_eq!(steps(&plan).len(), 26);
    let report = step(&plan, "daily_report[2022-01-02]");
    assert_eq!(report["inputs"][1]["name"], "yesterday");
    assert_eq!(report["inputs"][1]["partitions"], json!(["2022-01-01"]));
    assert_eq!(report["inputs"][1]["in_plan"], false);
    // It waits only for what the plan produces.
    assert_eq!(report["after"], json!(["downstream_asset[2022-01-02]"]));
}

#[test]
fn all_partitions() {
    let dir = example_project();
    let run = ok(
        &dir,
        &["plan", "--all-partitions", "--json"],
        "2022-01-03T00:00:00Z",
    );
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(steps(&plan).len(), 48 + 2 + 2);
    assert_eq!(plan["now"], "2022-01-03T00:00:00+00:00");
    assert_topological(&plan);
}

// ---------------------------------------------------------------------------
// Plan errors: exit 2, a clear message, nothing on stdout

#[test]
fn key_no_selected_asset_has() {
    let dir = example_project();
    let run = usage_error(
        &dir,
        &["plan", "--partition", "2021-01-01"],
        NOW,
        &[
            "error: no selected asset has the partition `2021-01-01`",
            "`2021-01-01` is before the first partition of `downstream_asset`, `2022-01-01`",
            // A few valid keys of each definition, and the last one.
            "`2022-01-01`, `2022-01-02`, `2022-01-03`, … `2022-01-31` (31 keys)",
            "`2022-01-01-00:00`, `2022-01-01-01:00`, `2022-01-01-02:00`, … `2022-01-31-23:00` (744 keys)",
        ],
    );
    insta::assert_snapshot!("key_no_selected_asset_has", run.stderr);
}

#[test]
fn partition_and_range_conflict() {
    let dir = example_project();
    let run = usage_error(
        &dir,
        &[
            "plan",
            "--partition",
            "2022-01-01",
            "--partition-range",
            "2022-01-01...2022-01-02",
        ],
        NOW,
        &["'--partition <KEY>' cannot be used with '--partition-range <A...B>'"],
    );
    insta::assert_snapshot!("partition_and_range_conflict", run.stderr);
}

#[test]
fn backwards_range() {
    let dir = example_project();
    let run = usage_error(
        &dir,
        &["plan", "--partition-range", "2022-01-03...2022-01-01"],
        NOW,
        &[
            "partition range `2022-01-03...2022-01-01` is backwards",
            "write it as `2022-01-01...2022-01-03`",
        ],
    );
    insta::assert_snapshot!("backwards_range", run.stderr);
}

#[test]
fn malformed_range() {
    let dir = example_project();
    let run = usage_error(
        &dir,
        &["plan", "--partition-range", "2022-01-01..2022-01-03"],
        NOW,
        &["invalid partition range `2022-01-01..2022-01-03`: expected `START...END`"],
    );
    insta::assert_snapshot!("malformed_range", run.stderr);
}

#[test]
fn range_end_not_over_yet() {
    let dir = example_project();
    usage_error(
        &dir,
        &["plan", "--partition-range", "2022-01-30...2022-02-02"],
        NOW,
        &[
            "no selected asset has both partitions `2022-01-30` and `2022-02-02`",
            "`2022-02-02` of `downstream_asset` is not over yet at --now",
        ],
    );
}

#[test]
fn partitioned_assets_without_targeting() {
    let dir = example_project();
    let run = usage_error(
        &dir,
        &["plan"],
        NOW,
        &[
            "asset `upstream_asset` is partitioned but gets no partitions from this command",
            "asset `downstream_asset` is partitioned but gets no partitions from this command",
            "asset `daily_report` is partitioned but gets no partitions from this command",
            "help: pass `--partition KEY`, `--partition-range A...B` or `--all-partitions`",
        ],
    );
    // The shared fix is shown once.
    assert_eq!(run.stderr.matches("help:").count(), 1, "{}", run.stderr);
    insta::assert_snapshot!("partitioned_assets_without_targeting", run.stderr);
}

#[test]
fn an_asset_the_key_does_not_reach() {
    // An hour reaches the days that read it, downstream (contract §8): its
    // day, and the reports of that day and the next (which reads yesterday).
    let dir = example_project();
    let plan = plan_json(&dir, &["--partition", "2022-01-01-05:00"]);
    let mut got = ids(&plan);
    got.sort();
    assert_eq!(
        got,
        [
            "daily_report[2022-01-01]",
            "daily_report[2022-01-02]",
            "downstream_asset[2022-01-01]",
            "upstream_asset[2022-01-01-05:00]"
        ]
    );
    // Not through an asset left out of the selection: `daily_report` reads
    // the hours only through `downstream_asset`.
    let run = usage_error(
        &dir,
        &[
            "plan",
            "--select",
            "upstream_asset or daily_report",
            "--partition",
            "2022-01-01-05:00",
        ],
        NOW,
        &[
            "asset `daily_report` is partitioned but gets no partitions from this command",
            "leave `daily_report` out of `--select`",
        ],
    );
    assert!(!run.stderr.contains("`upstream_asset` is partitioned"));
    // Selected on its own, the hour plans.
    let plan = plan_json(
        &dir,
        &[
            "--select",
            "upstream_asset",
            "--partition",
            "2022-01-01-05:00",
        ],
    );
    assert_eq!(ids(&plan), ["upstream_asset[2022-01-01-05:00]"]);
}

#[test]
fn selection_syntax_error_points_at_the_column() {
    let dir = example_project();
    let sel = "downstream_asset and (group:reports";
    let run = usage_error(
        &dir,
        &["plan", "--select", sel, "--partition", "2022-01-01"],
        NOW,
        &[
            "unclosed `(` in selection",
            "--> --select:1:22",
            &format!("1 | {sel}"),
        ],
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.ends_with(&format!("| {sel}")))
        .expect("the selection is shown");
    let paren = lines[at].find('(').expect("the `(`");
    let caret = lines[at + 1].find('^').expect("a caret under it");
    assert_eq!(caret, paren, "caret under the `(`:\n{}", run.stderr);
    insta::assert_snapshot!("selection_syntax_error", run.stderr);
}

#[test]
fn selection_matching_nothing() {
    let dir = example_project();
    let run = usage_error(
        &dir,
        &[
            "plan",
            "--select",
            "tag:team=data",
            "--partition",
            "2022-01-01",
        ],
        NOW,
        &["the selection matches no assets", "no asset has tag `team`"],
    );
    insta::assert_snapshot!("selection_matching_nothing", run.stderr);

    let run = usage_error(
        &dir,
        &["plan", "--select", "upstream", "--partition", "2022-01-01"],
        NOW,
        &["unknown asset `upstream` in selection"],
    );
    insta::assert_snapshot!("selection_unknown_asset", run.stderr);
}

#[test]
fn mapping_needs_a_partition_before_the_start() {
    let dir = project("offset_first_day");
    let run = usage_error(
        &dir,
        &["plan", "--partition", "2024-01-01"],
        NOW_2024,
        &[
            "step `rolling[2024-01-01]` needs partitions of `events` that do not exist: `2023-12-31`",
            "`events` has `2024-01-01`, `2024-01-02`, `2024-01-03` at --now",
            "set `allow_nonexistent = true` in the mapping of input `events`",
        ],
    );
    insta::assert_snapshot!("mapping_needs_a_partition_before_the_start", run.stderr);

    // From the second day on, the day before exists.
    let run = ok(
        &dir,
        &["plan", "--partition", "2024-01-02", "--json"],
        NOW_2024,
    );
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(ids(&plan), ["events[2024-01-02]", "rolling[2024-01-02]"]);
    let rolling = step(&plan, "rolling[2024-01-02]");
    assert_eq!(
        rolling["inputs"][0]["partitions"],
        json!(["2024-01-01", "2024-01-02"])
    );
    // 2024-01-01 is read but not produced.
    assert_eq!(rolling["inputs"][0]["in_plan"], false);
    assert_eq!(rolling["after"], json!(["events[2024-01-02]"]));

    // Over a range, each day waits for the day before too.
    let run = ok(
        &dir,
        &[
            "plan",
            "--partition-range",
            "2024-01-02...2024-01-03",
            "--json",
        ],
        NOW_2024,
    );
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        step(&plan, "rolling[2024-01-03]")["after"],
        json!(["events[2024-01-02]", "events[2024-01-03]"])
    );
    assert_topological(&plan);

    // With `allow_nonexistent = true` the first day plans, reading one day.
    let toml = dir.path().join("defs/assets.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replace(
        "start_offset = -1 }",
        "start_offset = -1, allow_nonexistent = true }",
    );
    std::fs::write(&toml, text).unwrap();
    let run = ok(
        &dir,
        &["plan", "--partition", "2024-01-01", "--json"],
        NOW_2024,
    );
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        step(&plan, "rolling[2024-01-01]")["inputs"][0]["partitions"],
        json!(["2024-01-01"])
    );
}

// ---------------------------------------------------------------------------
// Selection through the CLI

#[test]
fn select_upstream_of() {
    let dir = example_project();
    let plan = plan_json(
        &dir,
        &["--select", "+downstream_asset", "--partition", "2022-01-01"],
    );
    assert_eq!(assets(&plan), ["upstream_asset", "downstream_asset"]);
    assert_eq!(steps(&plan).len(), 25);
    assert_topological(&plan);
}

#[test]
fn select_downstream_of() {
    let dir = example_project();
    let plan = plan_json(
        &dir,
        &["--select", "downstream_asset+", "--partition", "2022-01-01"],
    );
    assert_eq!(assets(&plan), ["downstream_asset", "daily_report"]);
    assert_eq!(
        ids(&plan),
        ["downstream_asset[2022-01-01]", "daily_report[2022-01-01]"]
    );
    // The hours are read, not produced.
    let day = step(&plan, "downstream_asset[2022-01-01]");
    assert_eq!(day["inputs"][0]["in_plan"], false);
    assert_eq!(day["inputs"][0]["partitions"], json!(hours("2022-01-01")));
    assert_eq!(day["after"], json!([]));

    let run = ok(
        &dir,
        &[
            "plan",
            "--select",
            "downstream_asset+",
            "--partition",
            "2022-01-01",
        ],
        NOW,
    );
    assert!(
        run.stdout.contains(
            "`upstream_asset` [2022-01-01-00:00 … 2022-01-01-23:00] (24)  (read by `downstream_asset`)"
        ),
        "{}",
        run.stdout
    );
    assert_contains(&run.stdout, &["--select '+downstream_asset'"]);
}

#[test]
fn select_group() {
    let dir = example_project();
    let plan = plan_json(
        &dir,
        &["--select", "group:reports", "--partition", "2022-01-02"],
    );
    assert_eq!(ids(&plan), ["daily_report[2022-01-02]"]);
    let run = ok(
        &dir,
        &[
            "plan",
            "--select",
            "group:reports",
            "--partition",
            "2022-01-02",
        ],
        NOW,
    );
    // Both inputs read `downstream_asset`: one line for both days.
    assert_contains(
        &run.stdout,
        &["`downstream_asset` [2022-01-01, 2022-01-02] (2)  (read by `daily_report`)"],
    );
}

#[test]
fn select_kind_and_not() {
    let dir = example_project();
    let plan = plan_json(
        &dir,
        &[
            "--select",
            "kind:shell and not upstream_asset",
            "--partition",
            "2022-01-01",
        ],
    );
    assert_eq!(assets(&plan), ["downstream_asset", "daily_report"]);
}

#[test]
fn select_depth_and_comma() {
    let dir = example_project();
    let plan = plan_json(
        &dir,
        &["--select", "1+daily_report", "--partition", "2022-01-01"],
    );
    assert_eq!(assets(&plan), ["downstream_asset", "daily_report"]);
    let plan = plan_json(
        &dir,
        &[
            "--select",
            "daily_report, downstream_asset",
            "--partition",
            "2022-01-01",
        ],
    );
    assert_eq!(assets(&plan), ["downstream_asset", "daily_report"]);
}

// ---------------------------------------------------------------------------
// Graphs

#[test]
fn graph_dot() {
    let dir = example_project();
    // No partition flag: the graph needs none.
    let run = ok(&dir, &["plan", "--graph", "dot"], NOW);
    assert!(run.stdout.starts_with("digraph dg {"), "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "\"downstream_asset\" -> \"daily_report\" [label=\"yesterday: time_window\"];"
        )
    );
    insta::assert_snapshot!("graph_dot", run.stdout);
}

#[test]
fn graph_mermaid() {
    let dir = example_project();
    let run = ok(&dir, &["plan", "--graph", "mermaid"], NOW);
    assert!(run.stdout.starts_with("flowchart LR\n"), "{}", run.stdout);
    insta::assert_snapshot!("graph_mermaid", run.stdout);

    let run = ok(
        &dir,
        &[
            "plan",
            "--graph",
            "mermaid",
            "--select",
            "downstream_asset+",
        ],
        NOW,
    );
    assert!(!run.stdout.contains("upstream_asset"), "{}", run.stdout);
    // Partition flags given with a graph are still checked.
    usage_error(
        &dir,
        &["plan", "--graph", "dot", "--partition", "2021-01-01"],
        NOW,
        &["no selected asset has the partition `2021-01-01`"],
    );
}

// ---------------------------------------------------------------------------
// Fixes around what must already exist

#[test]
fn only_partitions_the_plan_does_not_produce_must_exist() {
    let dir = project("mixed");
    // `by_region` is targeted with `us`; `summary` reads all three regions.
    let run = ok(
        &dir,
        &["plan", "--select", "+summary", "--partition", "us"],
        NOW_2024,
    );
    assert_contains(
        &run.stdout,
        &["`by_region` [eu, apac] (2)  (read by `summary`)"],
    );
    insta::assert_snapshot!("only_unproduced_partitions_must_exist", run.stdout);
}

#[test]
fn an_input_allowing_missing_partitions_needs_nothing() {
    let dir = project("mixed");
    let run = ok(
        &dir,
        &["plan", "--select", "lenient", "--partition", "2024-01-02"],
        NOW_2024,
    );
    assert!(!run.stdout.contains("Must already exist"), "{}", run.stdout);
}

#[test]
fn source_assets_are_never_planned() {
    let dir = project("mixed");
    let run = ok(&dir, &["plan", "--select", "raw/src"], NOW_2024);
    assert_contains(&run.stdout, &["nothing to do"]);
    let run = ok(&dir, &["plan", "--select", "raw/src", "--json"], NOW_2024);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(plan["steps"], json!([]));

    let run = ok(&dir, &["plan", "--select", "+reads_src"], NOW_2024);
    assert_contains(
        &run.stdout,
        &["`raw/src`  (a source asset, read by `reads_src`)"],
    );
    let run = ok(
        &dir,
        &["plan", "--select", "+reads_src", "--json"],
        NOW_2024,
    );
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(ids(&plan), ["reads_src"]);
    let s = step(&plan, "reads_src");
    assert_eq!(s["partition"], Value::Null);
    assert_eq!(s["inputs"][0]["asset"], "raw/src");
    assert_eq!(s["inputs"][0]["partitions"], Value::Null);
    assert_eq!(s["inputs"][0]["in_plan"], false);
}

#[test]
fn an_unpartitioned_asset_reads_every_partition() {
    let dir = project("mixed");
    let run = ok(&dir, &["plan", "--select", "+summary", "--json"], NOW_2024);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        ids(&plan),
        [
            "events[2024-01-01]",
            "events[2024-01-02]",
            "events[2024-01-03]",
            "by_region[us]",
            "by_region[eu]",
            "by_region[apac]",
            "summary"
        ]
    );
    let s = step(&plan, "summary");
    assert_eq!(s["partition"], Value::Null);
    assert_eq!(s["inputs"][1]["partitions"], json!(["us", "eu", "apac"]));
    assert_eq!(s["after"].as_array().unwrap().len(), 6);
    assert_topological(&plan);
}

#[test]
fn multi_partitions_plan() {
    let dir = project("multi");
    let run = ok(
        &dir,
        &[
            "plan",
            "--select",
            "+grid",
            "--partition-range",
            "2024-01-01|eu...2024-01-02|eu",
            "--json",
        ],
        NOW_2024,
    );
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        ids(&plan),
        [
            "events[2024-01-01]",
            "events[2024-01-02]",
            "grid[2024-01-01|eu]",
            "grid[2024-01-02|us]",
            "grid[2024-01-02|eu]",
        ]
    );
    assert_eq!(
        step(&plan, "grid[2024-01-02|us]")["inputs"][0]["partitions"],
        json!(["2024-01-02"])
    );
    assert_topological(&plan);
}

// ---------------------------------------------------------------------------
// dg list partitions

#[test]
fn list_partitions_by_name_json() {
    let dir = example_project();
    let run = ok(
        &dir,
        &["list", "partitions", "hourly", "--json"],
        "2022-01-02T00:00:00Z",
    );
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v, json!({"name": "hourly", "keys": hours("2022-01-01")}));
}

#[test]
fn list_partitions_by_asset_key() {
    let dir = example_project();
    let run = ok(
        &dir,
        &["list", "partitions", "upstream_asset", "--json"],
        "2022-01-02T00:00:00Z",
    );
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        v,
        json!({"name": "upstream_asset", "keys": hours("2022-01-01")})
    );
    // Human output: one key a line.
    let run = ok(
        &dir,
        &["list", "partitions", "upstream_asset"],
        "2022-01-01T03:00:00Z",
    );
    assert_eq!(
        run.stdout,
        "2022-01-01-00:00\n2022-01-01-01:00\n2022-01-01-02:00\n"
    );
}

#[test]
fn list_partitions_unknown_name() {
    let dir = example_project();
    let run = usage_error(
        &dir,
        &["list", "partitions", "hourlyy"],
        NOW,
        &[
            "no partitions definition or asset named `hourlyy`",
            "did you mean `hourly`?",
        ],
    );
    insta::assert_snapshot!("list_partitions_unknown_name", run.stderr);
    usage_error(
        &dir,
        &["list", "partitions", "upstream_assets"],
        NOW,
        &["did you mean `upstream_asset`?"],
    );
}

#[test]
fn list_partitions_of_an_unpartitioned_asset() {
    let dir = project("mixed");
    usage_error(
        &dir,
        &["list", "partitions", "summary"],
        NOW_2024,
        &[
            "asset `summary` is not partitioned",
            "definitions: `daily`, `region`",
        ],
    );
}

#[test]
fn list_partitions_dst_fall_back() {
    let dir = project("new_york");
    // Midnight in New York (EST) on 2023-11-06: the 25 hours of the 5th are over.
    let run = ok(
        &dir,
        &["list", "partitions", "ny_hourly", "--json"],
        "2023-11-06T05:00:00Z",
    );
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["name"], "ny_hourly");
    let keys: Vec<&str> = items(&v["keys"])
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 25, "{keys:?}");
    assert_eq!(
        keys[..4],
        [
            "2023-11-05-00:00",
            "2023-11-05-01:00",
            "2023-11-05-01:00-0500",
            "2023-11-05-02:00"
        ]
    );
    assert_eq!(keys[24], "2023-11-05-23:00");
    // The asset lists the same keys.
    let run = ok(
        &dir,
        &["list", "partitions", "ny_events", "--json"],
        "2023-11-06T05:00:00Z",
    );
    let w: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(w["keys"], v["keys"]);
    // And the repeated hour can be planned by its key.
    let run = ok(
        &dir,
        &["plan", "--partition", "2023-11-05-01:00-0500", "--json"],
        "2023-11-06T05:00:00Z",
    );
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(ids(&plan), ["ny_events[2023-11-05-01:00-0500]"]);
}

#[test]
fn list_partitions_multi_in_dimension_name_order() {
    let dir = project("multi");
    let run = ok(
        &dir,
        &["list", "partitions", "date_region", "--json"],
        NOW_2024,
    );
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        v,
        json!({"name": "date_region", "keys": [
            "2024-01-01|us", "2024-01-01|eu",
            "2024-01-02|us", "2024-01-02|eu",
            "2024-01-03|us", "2024-01-03|eu",
        ]})
    );
}

#[test]
fn an_input_that_reads_nothing_is_an_error_not_an_empty_input() {
    let defs = r#"
[partitions.up]
type = "static"
keys = ["a", "b"]

[partitions.down]
type = "static"
keys = ["a", "b", "c"]

[assets.up]
partitions = "up"
source = true

[assets.down]
partitions = "down"
shell = "true"

[assets.down.ins.up]
mapping = { type = "static", map = { a = "a", b = "b" } }
"#;
    let dir = one_file(defs);
    usage_error(
        &dir,
        &["plan", "--select", "down", "--partition", "c"],
        NOW_2024,
        &[
            "input `up` of step `down[c]` resolves to no partitions of `up`",
            "allow_missing_partitions = true",
        ],
    );
    // Keys the mapping covers plan as before.
    ok(
        &dir,
        &["plan", "--select", "down", "--partition", "a"],
        NOW_2024,
    );
    // An empty input the user asked for is allowed.
    let dir = one_file(&format!("{defs}allow_missing_partitions = true\n"));
    ok(
        &dir,
        &["plan", "--select", "down", "--partition", "c"],
        NOW_2024,
    );
}

#[test]
fn partitions_dropped_by_allow_nonexistent_are_shown() {
    // The example's `daily_report` reads yesterday with allow_nonexistent:
    // on its first day, yesterday does not exist and is left out, visibly.
    let dir = example_project();
    let plan = plan_json(&dir, &["--partition", "2022-01-01"]);
    let report = step(&plan, "daily_report[2022-01-01]");
    let yesterday = find(&report["inputs"], "name", "yesterday");
    assert_eq!(yesterday["partitions"], json!([]));
    assert_eq!(yesterday["dropped"], json!(["2021-12-31"]));
    let next = plan_json(&dir, &["--partition", "2022-01-02"]);
    let report = step(&next, "daily_report[2022-01-02]");
    assert!(
        items(&report["inputs"])
            .iter()
            .all(|i| i["dropped"] == json!([])),
        "{report}"
    );
    let human = ok(&dir, &["plan", "--partition", "2022-01-01"], NOW);
    assert!(
        human
            .stdout
            .contains("input `yesterday` leaves out 1 nonexistent partition of `downstream_asset` (allow_nonexistent): `2021-12-31`"),
        "{}",
        human.stdout
    );
}

#[test]
fn yearly_cron_with_a_year_format_reads_thirteen_months() {
    // A real pipeline's yearly definition: `fmt = "%Y"` reads `start` the way
    // Python's strptime does (January 1st, midnight). Its key `2024` is the
    // window 2024-01-02 12:00 … 2025-01-02 12:00, which overlaps 13 months.
    let dir = one_file(
        r#"
[partitions.yearly]
type = "cron"
cron = "0 12 2 1 *"
fmt = "%Y"
start = "2010"

[partitions.monthly]
type = "monthly"
start = "2010-01-01"

[assets.months]
partitions = "monthly"
source = true

[assets.year]
partitions = "yearly"
deps = ["months"]
shell = "true"
"#,
    );
    let run = ok(
        &dir,
        &["list", "partitions", "yearly", "--json"],
        "2026-01-03T00:00:00Z",
    );
    let listed: Value = serde_json::from_str(&run.stdout).unwrap();
    let keys: Vec<String> = serde_json::from_value(listed["keys"].clone()).unwrap();
    assert_eq!(keys.first().map(String::as_str), Some("2010"));
    assert_eq!(keys.last().map(String::as_str), Some("2025"));
    assert_eq!(keys.len(), 16);
    let run = ok(
        &dir,
        &["plan", "--select", "year", "--partition", "2024", "--json"],
        "2026-01-03T00:00:00Z",
    );
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    let months = &step(&plan, "year[2024]")["inputs"][0]["partitions"];
    let months: Vec<&str> = months
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(months.len(), 13, "{months:?}");
    assert_eq!(months[0], "2024-01-01");
    assert_eq!(months[12], "2025-01-01");
}

/// Step ids of `dg plan --json` for an inline project.
fn plan_ids(dir: &TempDir, args: &[&str], now: &str) -> Vec<String> {
    let mut all = vec!["plan", "--json"];
    all.extend(args);
    let run = ok(dir, &all, now);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    let mut ids: Vec<String> = ids(&plan).into_iter().map(String::from).collect();
    ids.sort();
    ids
}

const DAY_WEEK_MONTH: &str = r#"
[partitions.daily]
type = "daily"
start = "2023-01-01"

[partitions.weekly]
type = "weekly"
start = "2023-01-01"

[partitions.monthly]
type = "monthly"
start = "2023-01-01"

[assets.d]
partitions = "daily"
shell = "true"

[assets.w]
partitions = "weekly"
deps = ["d"]
shell = "true"

[assets.m]
partitions = "monthly"
deps = ["w"]
shell = "true"
"#;

// The expected targets below are Dagster 1.13.27's asset backfill targets
// for the same graphs (tests/fixtures/dagster/backfill.py).

#[test]
fn a_monday_targets_its_week_and_month_as_dagster_backfills_do() {
    let dir = one_file(DAY_WEEK_MONTH);
    // Every week of June has ended (the last one on 2023-07-02).
    let now = "2023-07-10T00:00:00Z";
    // Dagster: d 2023-06-05, w 2023-06-04, m 2023-06-01.
    assert_eq!(
        plan_ids(&dir, &["--partition", "2023-06-05"], now),
        ["d[2023-06-05]", "m[2023-06-01]", "w[2023-06-04]"]
    );
    // Dagster: d 2023-06-04, w 2023-06-04, m 2023-06-01 (a Sunday is also a
    // weekly key: targeted directly, not by accident).
    assert_eq!(
        plan_ids(&dir, &["--partition", "2023-06-04"], now),
        ["d[2023-06-04]", "m[2023-06-01]", "w[2023-06-04]"]
    );
}

#[test]
fn an_hour_targets_the_days_that_read_it() {
    let dir = one_file(concat!(
        hourly_daily!(),
        r#"
[assets.upstream_asset]
partitions = "hourly"
shell = "true"

[assets.downstream_asset]
partitions = "daily"
deps = ["upstream_asset"]
shell = "true"

[assets.daily_report]
partitions = "daily"
shell = "true"

[assets.daily_report.ins.downstream_asset]
mapping = { type = "time_window", start_offset = -1, allow_nonexistent = true }
"#
    ));
    // Dagster: upstream_asset 2022-01-01-05:00, downstream_asset 2022-01-01,
    // daily_report 2022-01-01 and 2022-01-02 (both read that day).
    assert_eq!(
        plan_ids(&dir, &["--partition", "2022-01-01-05:00"], NOW),
        [
            "daily_report[2022-01-01]",
            "daily_report[2022-01-02]",
            "downstream_asset[2022-01-01]",
            "upstream_asset[2022-01-01-05:00]"
        ]
    );
}

#[test]
fn a_definition_prefix_targets_only_that_definition() {
    let dir = one_file(DAY_WEEK_MONTH);
    let now = "2023-07-10T00:00:00Z";
    // Only `w` is targeted; `d` gets the week's seven days (upstream), `m`
    // the month that reads the week (downstream).
    let ids = plan_ids(&dir, &["--partition", "weekly:2023-06-04"], now);
    let days: Vec<String> = (4..=10).map(|d| format!("d[2023-06-{d:02}]")).collect();
    let mut want: Vec<String> = days;
    want.extend(["m[2023-06-01]".to_string(), "w[2023-06-04]".to_string()]);
    want.sort();
    assert_eq!(ids, want);
    // A range with a prefix.
    let ids = plan_ids(
        &dir,
        &["--partition-range", "monthly:2023-05-01...2023-06-01"],
        now,
    );
    assert_eq!(
        ids.iter().filter(|i| i.starts_with("m[")).count(),
        2,
        "{ids:?}"
    );
    assert!(ids.iter().all(|i| !i.starts_with("w[2023-07")), "{ids:?}");
    // Keys may hold `:`; a prefix that is no definition is part of the key.
    usage_error(
        &dir,
        &["plan", "--partition", "nodef:2023-06-04"],
        now,
        &["no selected asset has the partition `nodef:2023-06-04`"],
    );
}

#[test]
fn latest_and_last_n_are_per_definition() {
    let dir = one_file(DAY_WEEK_MONTH);
    // At 2023-06-07T12:00Z: the last day is 06-06, the last week 05-28 (the
    // week of 06-04 is not over), the last month 05-01.
    let now = "2023-06-07T12:00:00Z";
    assert_eq!(
        plan_ids(&dir, &["--partition", "latest"], now),
        ["d[2023-06-06]", "m[2023-05-01]", "w[2023-05-28]"]
    );
    let ids = plan_ids(&dir, &["--last", "2"], now);
    assert_eq!(
        ids,
        [
            "d[2023-06-05]",
            "d[2023-06-06]",
            "m[2023-04-01]",
            "m[2023-05-01]",
            "w[2023-05-21]",
            "w[2023-05-28]"
        ]
    );
    // Multi: the time dimension's last window crossed with every region.
    let dir = one_file(
        r#"
[partitions.date_region]
type = "multi"
dimensions = { date = { type = "daily", start = "2024-01-01" }, region = { type = "static", keys = ["us", "eu"] } }

[assets.sales]
partitions = "date_region"
shell = "true"
"#,
    );
    assert_eq!(
        plan_ids(&dir, &["--partition", "latest"], NOW_2024),
        ["sales[2024-01-03|eu]", "sales[2024-01-03|us]"]
    );
}

#[test]
fn a_dynamic_definition_without_keys_is_left_out_with_a_note() {
    let dir = one_file(
        r#"
[partitions.customers]
type = "dynamic"

[assets.per_customer]
partitions = "customers"
shell = "true"

[assets.other]
shell = "true"
"#,
    );
    let run = dg(
        dir.path(),
        &["plan", "--all-partitions", "--json", "--now", NOW_2024],
    );
    assert_no_panic(&run);
    assert_fails_with(
        &run,
        0,
        &["note: `per_customer` is left out: its dynamic partitions have no keys yet"],
    );
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(ids(&plan), ["other"]);
}

#[test]
fn latest_of_one_definition_pulls_its_upstream() {
    // The bundled example's cron line: the newest day of the daily assets,
    // with the 24 hours it reads (upstream propagation), not the newest hour.
    let dir = example_project();
    let plan = plan_json(&dir, &["--partition", "daily:latest"]);
    let got = ids(&plan);
    assert_eq!(got.len(), 26, "{got:?}");
    assert!(got.contains(&"downstream_asset[2022-01-31]"), "{got:?}");
    assert!(got.contains(&"daily_report[2022-01-31]"), "{got:?}");
    assert!(got.contains(&"upstream_asset[2022-01-31-23:00]"), "{got:?}");
    assert!(got.contains(&"upstream_asset[2022-01-31-00:00]"), "{got:?}");
}

#[test]
fn an_empty_partition_list_says_why() {
    // `end_offset = 3` counts from *now*: long before `start` there is
    // nothing yet, and the human listing says so instead of printing nothing.
    let dir = one_file(
        r#"
[partitions.q]
type = "daily"
start = "2024-01-10"
end_offset = 3
"#,
    );
    let run = dg(
        dir.path(),
        &["list", "partitions", "q", "--now", "2024-01-01T00:00:00Z"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert_contains(
        &run.stderr,
        &[
            "note: `q` has no partitions at --now (2024-01-01T00:00:00+00:00): its first window starts at 2024-01-10T00:00:00+00:00",
        ],
    );
    let run = dg(
        dir.path(),
        &["list", "partitions", "q", "--now", "2024-01-09T12:00:00Z"],
    );
    assert_eq!(run.stdout, "2024-01-10\n2024-01-11\n");
    assert_eq!(run.stderr, "");
}
