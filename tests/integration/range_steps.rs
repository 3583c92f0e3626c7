//! Range steps (`backfill`): one step materializes several consecutive
//! partitions, and each is stored and recorded on its own. The table
//! managers' scenarios are in `table_scenarios.rs`.

use std::path::Path;

use crate::support::{
    assert_contains, assert_fails_with, assert_ok, dg_now, files_under, items, json, one_file,
    read, step, unique_name,
};

const NOW: &str = "2024-01-09T00:00:00Z";

/// Daily partitions `days` from 2024-01-01, which the projects here use
/// (the text starts with a newline, so that `{DAYS}` stands on a line of its
/// own in a `format!` string).
const DAYS: &str = r#"
[partitions.days]
type = "daily"
start = "2024-01-01"
"#;

/// A daily asset with range steps of at most `max` partitions whose step
/// writes one row per key (and notes its environment in `env.txt`), and a
/// daily asset that reads it one partition at a time.
fn daily(backfill: &str) -> String {
    format!(
        r#"{DAYS}
[assets.events]
partitions = "days"
backfill = {backfill}
shell = '''
printf '%s|%s|%s|%s\n' "$DG_PARTITION_KEYS" "$DG_PARTITION_START" "$DG_PARTITION_END" "${{DG_PARTITION_KEY-unset}}" >> env.txt
tr -d ' \n' < "$DG_CONTEXT" | grep -o '"partition_keys":\[[^]]*\]' >> context.txt
{{ echo 'dg_partition,n'; echo "$DG_PARTITION_KEYS" | tr -d '[]"' | tr ',' '\n' | sed 's/$/,1/'; }} > "$DG_OUTPUT"
'''

[assets.daily]
partitions = "days"
deps = ["events"]
shell = 'cp "$DG_INPUT_EVENTS" "$DG_OUTPUT"'
"#
    )
}

/// `dg --now NOW ARGS…` in the project `d`, which must succeed, and its
/// JSON output.
fn ok_json(d: &Path, args: &[&str]) -> serde_json::Value {
    let run = dg_now(d, NOW, args);
    assert_ok(&run);
    json(&run)
}

fn ids(v: &serde_json::Value) -> Vec<String> {
    items(&v["steps"])
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn consecutive_partitions_run_as_range_steps_and_are_stored_one_by_one() {
    let dir = one_file(&daily("{ max_partitions_per_step = 3 }"));
    let d = dir.path();
    let range = ["--partition-range", "2024-01-01...2024-01-07"];

    // The plan: 3 range steps for 7 days, each with its partitions.
    let mut args = vec!["plan", "--json"];
    args.extend(range);
    let plan = ok_json(d, &args);
    let events: Vec<String> = ids(&plan)
        .into_iter()
        .filter(|i| i.starts_with("events"))
        .collect();
    assert_eq!(
        events,
        [
            "events[2024-01-01...2024-01-03]",
            "events[2024-01-04...2024-01-06]",
            "events[2024-01-07]"
        ]
    );
    let first = step(&plan, "events[2024-01-01...2024-01-03]");
    assert_eq!(first["partition"], "2024-01-01");
    assert_eq!(
        first["partitions"],
        serde_json::json!(["2024-01-01", "2024-01-02", "2024-01-03"])
    );
    assert_eq!(
        step(&plan, "events[2024-01-07]")["partitions"],
        serde_json::json!(["2024-01-07"])
    );
    // A reader of one partition waits for the range step that makes it.
    assert_eq!(
        step(&plan, "daily[2024-01-05]")["after"],
        serde_json::json!(["events[2024-01-04...2024-01-06]"])
    );
    assert!(step(&plan, "daily[2024-01-05]").get("partitions").is_none());
    let mut args = vec!["plan"];
    args.extend(range);
    let human = dg_now(d, NOW, &args);
    assert!(
        human
            .stdout
            .contains("3 range steps (backfill): events[2024-01-01...2024-01-03]"),
        "{}",
        human.stdout
    );

    // The run: 3 processes for `events`, each partition stored on its own.
    let mut args = vec!["materialize", "--json"];
    args.extend(range);
    let summary = ok_json(d, &args);
    assert_eq!(summary["steps"].as_array().unwrap().len(), 10);
    assert_eq!(
        step(&summary, "events[2024-01-04...2024-01-06]")["partitions"],
        serde_json::json!(["2024-01-04", "2024-01-05", "2024-01-06"])
    );
    let env = read(d.join("env.txt"));
    let mut lines: Vec<&str> = env.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"["2024-01-01","2024-01-02","2024-01-03"]|2024-01-01T00:00:00+00:00|2024-01-04T00:00:00+00:00|unset"#,
            r#"["2024-01-04","2024-01-05","2024-01-06"]|2024-01-04T00:00:00+00:00|2024-01-07T00:00:00+00:00|unset"#,
            r#"["2024-01-07"]|2024-01-07T00:00:00+00:00|2024-01-08T00:00:00+00:00|unset"#,
        ]
    );
    assert!(
        read(d.join("context.txt"))
            .contains(r#""partition_keys":["2024-01-04","2024-01-05","2024-01-06"]"#),
        "{}",
        read(d.join("context.txt"))
    );
    let stored = d.join(".dg/storage/events");
    assert_eq!(files_under(&stored).len(), 7);
    // Each partition holds its own rows, without `dg_partition`.
    assert_eq!(read(stored.join("2024-01-05.csv")), "n\n1\n");
    assert_eq!(read(d.join(".dg/storage/daily/2024-01-05.csv")), "n\n1\n");

    // History has every partition.
    let status = json(&dg_now(d, NOW, &["status", "--select", "events", "--json"]));
    assert_eq!(status["assets"][0]["materialized"], 7);
    assert_eq!(
        status["assets"][0]["ranges"]["materialized"],
        serde_json::json!(["2024-01-01...2024-01-07"])
    );
    // Nothing is stale: each partition recorded what it read.
    let mut args = vec!["materialize", "--stale", "--json"];
    args.extend(range);
    let again = json(&dg_now(d, NOW, &args));
    assert_eq!(again["steps"], serde_json::json!([]));
}

#[test]
fn missing_regroups_only_what_is_missing() {
    let dir = one_file(&daily("{ max_partitions_per_step = 3 }"));
    let d = dir.path();
    let run = dg_now(
        d,
        NOW,
        &[
            "materialize",
            "--select",
            "events",
            "--partition-range",
            "2024-01-03...2024-01-04",
        ],
    );
    assert_ok(&run);
    let plan = |args: &[&str]| {
        let mut all = vec![
            "materialize",
            "--dry-run",
            "--json",
            "--select",
            "events",
            "--partition-range",
            "2024-01-01...2024-01-08",
        ];
        all.extend(args);
        let run = dg_now(d, NOW, &all);
        assert_ok(&run);
        ids(&json(&run))
    };
    assert_eq!(
        plan(&["--missing"]),
        [
            "events[2024-01-01...2024-01-02]",
            "events[2024-01-05...2024-01-07]",
            "events[2024-01-08]"
        ]
    );
    // Without `--missing`, everything in steps of 3.
    assert_eq!(
        plan(&[]),
        [
            "events[2024-01-01...2024-01-03]",
            "events[2024-01-04...2024-01-06]",
            "events[2024-01-07...2024-01-08]"
        ]
    );
    // `single_step`: one step per run of consecutive missing partitions.
    std::fs::write(d.join("defs/a.toml"), daily("\"single_step\"")).unwrap();
    assert_eq!(
        plan(&["--missing"]),
        [
            "events[2024-01-01...2024-01-02]",
            "events[2024-01-05...2024-01-08]"
        ]
    );
    let run = dg_now(
        d,
        NOW,
        &[
            "materialize",
            "--missing",
            "--json",
            "--select",
            "events",
            "--partition-range",
            "2024-01-01...2024-01-08",
        ],
    );
    assert_ok(&run);
    assert_eq!(files_under(&d.join(".dg/storage/events")).len(), 8);
}

/// An asset whose range step writes `body` as its output.
fn writes(body: &str) -> String {
    format!(
        r#"{DAYS}
[assets.events]
partitions = "days"
backfill = "single_step"
shell = "printf '{body}' > \"$DG_OUTPUT\""
"#
    )
}

#[test]
fn a_row_of_another_partition_fails_the_step_and_stores_nothing() {
    let range = ["--partition-range", "2024-01-01...2024-01-03"];
    for (body, expected) in [
        (
            "dg_partition,n\\n2024-01-01,1\\n2024-01-09,2\\n2024-01-09,3\\nnope,4\\n",
            "rows of the output name partitions that are not this step's in `dg_partition`: `2024-01-09` (2 rows), `nope`; the step's partitions are `2024-01-01` … `2024-01-03` (3) (nothing was stored)",
        ),
        (
            "n\\n1\\n",
            "the output has no `dg_partition` column: a range step writes the rows of all its partitions (`2024-01-01` … `2024-01-03` (3)) in one table, each row naming its partition in `dg_partition` (nothing was stored)",
        ),
    ] {
        let dir = one_file(&writes(body));
        let d = dir.path();
        let mut args = vec!["materialize", "--json"];
        args.extend(range);
        let run = dg_now(d, NOW, &args);
        assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
        let summary = json(&run);
        let s = step(&summary, "events[2024-01-01...2024-01-03]");
        assert_eq!(s["status"], "failed");
        assert_eq!(s["error"], expected);
        assert!(files_under(&d.join(".dg/storage")).is_empty());
        let status = json(&dg_now(d, NOW, &["status", "--json"]));
        assert_eq!(status["assets"][0]["materialized"], 0);
        assert_eq!(status["assets"][0]["failed"], 3);
    }
    // A partition with no rows is stored, empty.
    let dir = one_file(&writes("dg_partition,n\\n2024-01-01,1\\n2024-01-03,3\\n"));
    let d = dir.path();
    let mut args = vec!["materialize"];
    args.extend(range);
    assert_ok(&dg_now(d, NOW, &args));
    let stored = d.join(".dg/storage/events");
    assert_eq!(read(stored.join("2024-01-01.csv")), "n\n1\n");
    assert_eq!(read(stored.join("2024-01-02.csv")), "n\n");
    assert_eq!(read(stored.join("2024-01-03.csv")), "n\n3\n");
}

/// Days 2024-01-02...2024-01-04 of a `sql` asset in one step, whose query
/// (run by the engine `engine`, the default when empty) reads the range's
/// parameters: the day 2024-01-03 stores its total, the range's start and
/// end, how many keys it has, and `:partition_key IS NULL` as
/// `no_single_key`.
fn a_range_step_binds(engine: &str, query: &str, no_single_key: &str) {
    let dir = one_file(&format!(
        r#"{DAYS}
[assets.events]
partitions = "days"
shell = "printf 'day,amount\n%s,1\n%s,2\n' \"$DG_PARTITION_KEY\" \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""

[assets.totals]
partitions = "days"
backfill = {{ max_partitions_per_step = 10 }}
deps = ["events"]
{engine}
sql = """
{query}
"""
"#
    ));
    let d = dir.path();
    let summary = ok_json(
        d,
        &[
            "materialize",
            "--json",
            "--partition-range",
            "2024-01-02...2024-01-04",
        ],
    );
    step(&summary, "totals[2024-01-02...2024-01-04]");
    assert_eq!(
        read(d.join(".dg/storage/totals/2024-01-03.csv")),
        format!(
            "total,range_start,range_end,keys,no_single_key\n\
             3,2024-01-02T00:00:00+00:00,2024-01-05T00:00:00+00:00,3,{no_single_key}\n"
        )
    );
}

#[test]
fn a_sql_asset_gets_the_range_as_parameters() {
    a_range_step_binds(
        "",
        "SELECT day AS dg_partition, SUM(amount) AS total,
       :partition_start AS range_start, :partition_end AS range_end,
       (SELECT COUNT(*) FROM json_each(:partition_keys)) AS keys,
       :partition_key IS NULL AS no_single_key
FROM events GROUP BY day ORDER BY day",
        "1",
    );
}

/// The same in the embedded DuckDB engine: the range's keys, start and end
/// are bound alike (the keys as a JSON list, which DuckDB casts to a list).
#[cfg(feature = "duckdb")]
#[test]
fn a_duckdb_sql_asset_gets_the_range_as_parameters() {
    a_range_step_binds(
        "engine = \"duckdb\"",
        "SELECT CAST(day AS VARCHAR) AS dg_partition, SUM(amount) AS total,
       :partition_start AS range_start, :partition_end AS range_end,
       len(CAST(:partition_keys AS VARCHAR[])) AS keys,
       :partition_key IS NULL AS no_single_key
FROM events GROUP BY ALL ORDER BY ALL",
        "true",
    );
}

#[test]
fn backfill_where_range_steps_do_not_apply_is_a_located_error() {
    let defs = [
        DAYS,
        r#"
[partitions.grid]
type = "multi"
dimensions = { day = "days", region = { type = "static", keys = ["a", "b"] } }

[assets.plain]
backfill = "single_step"
shell = "true"

[assets.multi]
partitions = "grid"
backfill = "single_step"
shell = "true"

[assets.blob]
partitions = "days"
format = "file"
backfill = "single_step"
shell = "true"

[assets.typo]
partitions = "days"
backfill = "single_run"
shell = "true"

[assets.zero]
partitions = "days"
backfill = { max_partitions_per_step = 0 }
shell = "true"

[assets.fine]
partitions = { type = "static", keys = ["x", "y"] }
backfill = { max_partitions_per_step = 2 }
shell = "true"
"#,
    ]
    .concat();
    let dir = one_file(&defs);
    let run = dg_now(dir.path(), NOW, &["check", "defs"]);
    assert_fails_with(
        &run,
        2,
        &[
            "asset `plain` has `backfill` but is not partitioned",
            "asset `multi` has `backfill` but its partitions are multi-dimensional",
            "asset `blob` has `backfill` but its format is `file`",
            "unknown `backfill` `single_run` in asset `typo`",
            "`max_partitions_per_step` of asset `zero` must be between 1 and 1000000, found 0",
            "defs/a.toml:",
        ],
    );
    assert!(!run.stderr.contains("`fine`"), "{}", run.stderr);
    assert_contains(&run.stderr, &["5 errors"]);
}

#[test]
fn range_steps_store_each_partition_as_an_object() {
    let Some((endpoint, bucket)) = crate::object_store::s3() else {
        return;
    };
    let store = crate::object_store::resource(
        "io_manager",
        &endpoint,
        &bucket,
        &unique_name(),
        "format = \"jsonl\"",
    );
    let dir = one_file(&format!(
        r#"
{store}{DAYS}
[assets.events]
partitions = "days"
backfill = {{ max_partitions_per_step = 2 }}
shell = "echo \"$DG_PARTITION_KEYS\" | tr -d '[]\"' | tr ',' '\\n' | sed 's/.*/{{\"dg_partition\": \"&\", \"day\": \"&\"}}/' > \"$DG_OUTPUT\""

[assets.copy]
partitions = "days"
deps = ["events"]
shell = 'cp "$DG_INPUT_EVENTS" "seen-$DG_PARTITION_KEY.jsonl" && cp "$DG_INPUT_EVENTS" "$DG_OUTPUT"'
"#
    ));
    let d = dir.path();
    let summary = ok_json(
        d,
        &[
            "materialize",
            "--json",
            "--partition-range",
            "2024-01-01...2024-01-03",
        ],
    );
    step(&summary, "events[2024-01-01...2024-01-02]");
    step(&summary, "events[2024-01-03]");
    // Each partition is its own object, read back alone by the next step.
    for day in ["2024-01-01", "2024-01-02", "2024-01-03"] {
        assert_eq!(
            read(d.join(format!("seen-{day}.jsonl"))),
            format!("{{\"day\":\"{day}\"}}\n")
        );
    }
    let status = json(&dg_now(d, NOW, &["status", "--select", "events", "--json"]));
    assert_eq!(status["assets"][0]["materialized"], 3);
}

/// A range step's checks run on each of its partitions, with that
/// partition's key and rows, whichever manager stores it (files are loaded
/// back one partition at a time; a SQLite table is queried where
/// `dg_partition` is the partition). A failed blocking check on one of them
/// fails the run.
#[test]
fn checks_run_on_each_partition_of_a_range_step() {
    for manager in ["", "[resources.db]\ntype = \"sqlite\"\npath = \"w.db\"\n"] {
        let io = if manager.is_empty() {
            ""
        } else {
            "io_manager = \"db\"\n"
        };
        let dir = one_file(&format!(
            r#"{manager}{DAYS}
[assets.t]
partitions = "days"
{io}backfill = "single_step"
shell = "printf 'dg_partition,n\n2024-01-01,1\n2024-01-02,2\n2024-01-03,3\n' > \"$DG_OUTPUT\""

[assets.t.checks.no_two]
sql = "SELECT * FROM t WHERE n = 2"
blocking = true

[assets.t.checks.key]
shell = 'test "$DG_PARTITION_KEY" != 2024-01-03'
"#
        ));
        let d = dir.path();
        let run = dg_now(
            d,
            NOW,
            &[
                "materialize",
                "--json",
                "--partition-range",
                "2024-01-01...2024-01-03",
            ],
        );
        assert_eq!(run.code, 1, "{manager}\n{}\n{}", run.stdout, run.stderr);
        let v = json(&run);
        let mut got: Vec<(String, String, bool)> = items(&v["checks"])
            .iter()
            .map(|c| {
                (
                    c["partition"].as_str().unwrap().to_string(),
                    c["check"].as_str().unwrap().to_string(),
                    c["passed"].as_bool().unwrap(),
                )
            })
            .collect();
        got.sort();
        let want: Vec<(String, String, bool)> = [
            ("2024-01-01", "key", true),
            ("2024-01-01", "no_two", true),
            ("2024-01-02", "key", true),
            ("2024-01-02", "no_two", false),
            ("2024-01-03", "key", false),
            ("2024-01-03", "no_two", true),
        ]
        .iter()
        .map(|(p, c, ok)| (p.to_string(), c.to_string(), *ok))
        .collect();
        assert_eq!(got, want, "{manager}\n{v:#}");
        // The human output names the partition, not the whole range.
        let again = dg_now(
            d,
            NOW,
            &[
                "materialize",
                "--partition-range",
                "2024-01-01...2024-01-03",
            ],
        );
        assert!(
            again.stdout.contains("check t[2024-01-02] `no_two` failed")
                || again.stderr.contains("check t[2024-01-02] `no_two` failed"),
            "{}\n{}",
            again.stdout,
            again.stderr
        );
    }
}
