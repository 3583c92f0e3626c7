//! Asset checks, freshness and run hooks (CONTRACT §11): checks run after
//! each partition is stored, against what was stored; results are recorded
//! and shown by `dg checks`, `dg status` and the `--json` summary; a failed
//! blocking error-check skips the steps downstream and fails the run.

use std::path::Path;

use serde_json::Value;

use crate::support::{
    Run, assert_contains, assert_fails_with, assert_ok, assert_step_error, dg_now, items, json,
    numbers_doubled, one_file, project, read, step,
};

const NOW: &str = "2022-01-02T00:00:00Z";

/// `orders` writes a row with a NULL id while the file `bad` exists; its
/// blocking check finds it. `report` reads `orders`.
const ORDERS: &str = r#"
[partitions.days]
type = "static"
keys = ["a", "b"]

[assets.orders]
partitions = "days"
shell = '''
if [ -e bad ] && [ "$DG_PARTITION_KEY" = a ]; then
  printf 'id,amount\n1,5\n,7\n' > "$DG_OUTPUT"
else
  printf 'id,amount\n1,5\n2,7\n' > "$DG_OUTPUT"
fi
'''

[assets.orders.checks.no_null_ids]
sql = "SELECT * FROM orders WHERE id IS NULL"
blocking = true

[assets.orders.checks.has_rows]
shell = '''
n=$(wc -l < "$DG_INPUT_ORDERS")
echo "{\"metadata\": {\"lines\": $n, \"partition\": \"$DG_PARTITION_KEY\"}}" >> "$DG_MESSAGES"
test "$n" -gt 1
'''
severity = "warn"

[assets.report]
partitions = "days"
deps = ["orders"]
shell = 'cat "$DG_INPUT_ORDERS" > "$DG_OUTPUT"'
"#;

fn materialize(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["materialize", "--json"];
    all.extend(args);
    dg_now(dir, NOW, &all)
}

/// The result of check `name` on `partition` (`""`: unpartitioned).
fn check<'a>(v: &'a Value, partition: &str, name: &str) -> &'a Value {
    let p = if partition.is_empty() {
        Value::Null
    } else {
        Value::from(partition)
    };
    items(&v["checks"])
        .iter()
        .find(|c| c["partition"] == p && c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} on {partition} in {v:#}"))
}

#[test]
fn a_failed_blocking_check_skips_downstream_and_fails_the_run() {
    let p = project(&[("defs/a.toml", ORDERS), ("bad", "")]);
    let run = materialize(p.path(), &["--all-partitions"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let v = json(&run);
    assert_eq!(v["status"], "failure");
    // Both partitions were stored: checks run on what was stored.
    assert_eq!(step(&v, "orders[a]")["status"], "success");
    assert_eq!(step(&v, "orders[b]")["status"], "success");
    // Only the partition whose check failed blocks its reader.
    assert_step_error(
        step(&v, "report[a]"),
        "skipped",
        "blocking check `no_null_ids` of upstream step `orders[a]` failed",
    );
    assert_eq!(step(&v, "report[b]")["status"], "success");
    let bad = check(&v, "a", "no_null_ids");
    assert_eq!(bad["passed"], false);
    assert_eq!(bad["severity"], "error");
    assert_eq!(bad["asset"], "orders");
    assert_eq!(
        bad["message"],
        "the query returned 1 row; first: id=NULL, amount=7"
    );
    assert_eq!(check(&v, "b", "no_null_ids")["passed"], true);
    assert_eq!(check(&v, "a", "has_rows")["passed"], true);
    assert_eq!(check(&v, "a", "has_rows")["severity"], "warn");
    assert_contains(
        &run.stderr,
        &[
            "✗ check orders[a] `no_null_ids` failed (error, blocking)",
            "checks: 3 passed, 1 failed",
        ],
    );

    // `dg checks`: the latest results, with the metadata a shell check wrote.
    let c = dg_now(p.path(), NOW, &["checks", "--json"]);
    assert_ok(&c);
    let c = json(&c);
    assert_eq!(c["checks"].as_array().unwrap().len(), 4, "{c:#}");
    let rows = check(&c, "a", "has_rows");
    assert_eq!(rows["metadata"]["lines"], 3, "{rows}");
    assert_eq!(rows["metadata"]["partition"], "a");
    assert_eq!(check(&c, "a", "no_null_ids")["metadata"]["rows"], 1);
    let human = dg_now(p.path(), NOW, &["checks", "--select", "orders"]);
    assert_ok(&human);
    assert!(
        human
            .stdout
            .contains("✗ orders[a] `no_null_ids` (error): the query returned 1 row"),
        "{}",
        human.stdout
    );
    assert_contains(&human.stdout, &["3 passed, 1 failed"]);

    // `dg status` counts the failed check; `--fail-on-stale` exits 1 on it.
    let st = json(&dg_now(
        p.path(),
        NOW,
        &["status", "--json", "--select", "orders"],
    ));
    assert_eq!(st["assets"][0]["checks"]["failed"], 1, "{st:#}");
    assert_eq!(st["assets"][0]["checks"]["passed"], 3);
    let gate = dg_now(
        p.path(),
        NOW,
        &["status", "--fail-on-stale", "--select", "orders"],
    );
    assert_fails_with(&gate, 1, &["orders (1 failed check)"]);
    assert_contains(&gate.stdout, &[", 1 failed check  (of 2)"]);

    // Fixed data: the next run's results replace the latest ones.
    std::fs::remove_file(p.path().join("bad")).unwrap();
    let again = materialize(p.path(), &["--partition", "a"]);
    assert_ok(&again);
    let again = json(&again);
    assert_eq!(check(&again, "a", "no_null_ids")["passed"], true);
    assert_eq!(step(&again, "report[a]")["status"], "success");
    let c = json(&dg_now(p.path(), NOW, &["checks", "--json"]));
    assert!(
        items(&c["checks"]).iter().all(|r| r["passed"] == true),
        "{c:#}"
    );
    assert_ok(&dg_now(
        p.path(),
        NOW,
        &["status", "--fail-on-stale", "--select", "orders"],
    ));
}

#[test]
fn warn_and_non_blocking_checks_are_recorded_but_do_not_fail_the_run() {
    let defs = numbers_doubled(
        r#"
[assets.numbers.checks.too_few]
command = ["sh", "-c", "echo only two rows >&2; exit 3"]
severity = "warn"
blocking = true

[assets.numbers.checks.no_twos]
sql = "SELECT n FROM numbers WHERE n = 2"
"#,
    );
    let p = one_file(&defs);
    let run = materialize(p.path(), &[]);
    assert_ok(&run);
    let v = json(&run);
    assert_eq!(v["status"], "success");
    assert_eq!(step(&v, "doubled")["status"], "success");
    let warn = check(&v, "", "too_few");
    assert_eq!(warn["passed"], false);
    assert_eq!(warn["partition"], Value::Null);
    assert_eq!(warn["message"], "exited with code 3: only two rows");
    let err = check(&v, "", "no_twos");
    assert_eq!(err["passed"], false);
    assert_eq!(err["message"], "the query returned 1 row; first: n=2");
    assert_contains(&run.stderr, &["! check numbers `too_few` failed (warn)"]);
    // The check's output went to the step's log.
    let logs = dg_now(
        p.path(),
        NOW,
        &["logs", v["run_id"].as_str().unwrap(), "numbers"],
    );
    assert_contains(
        &logs.stdout,
        &["only two rows", "[dg] check `too_few`: FAILED"],
    );
}

#[test]
fn check_definitions_are_validated_all_at_once_with_locations() {
    let p = one_file(
        r#"[assets.orders]
shell = "true"
freshness = "soon"

[assets.orders.checks.none]
severity = "warn"

[assets.orders.checks.two]
sql = "SELECT 1"
shell = "true"

[assets.orders.checks.sev]
sql = "SELECT 1"
severity = "fatal"
blockin = true

[assets.orders.checks."bad name"]
sql = "SELECT 1"

[assets.outside]
source = true

[assets.outside.checks.never]
shell = "true"

[assets.notify]
shell = "true"
output = false

[assets.notify.checks.q]
sql = "SELECT 1"
"#,
    );
    let run = dg_now(p.path(), NOW, &["check", "defs"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    for (needle, at) in [
        (
            "`freshness` of asset `orders` is not a duration",
            "defs/a.toml:3:13",
        ),
        (
            "check `none` of asset `orders` has nothing to run",
            "defs/a.toml:5:23",
        ),
        (
            "check `two` of asset `orders` has more than one of `sql` and `shell`",
            "defs/a.toml:10:1",
        ),
        (
            "`severity` of check `sev` of asset `orders` must be \"error\" or \"warn\", found `fatal`",
            "defs/a.toml:14:12",
        ),
        ("unknown field `blockin` in check `sev`", "defs/a.toml:15:1"),
        ("invalid check name `bad name`", "defs/a.toml:17:23"),
        (
            "check `never` of asset `outside` would never run: dg never materializes a source asset",
            "defs/a.toml:23:24",
        ),
        (
            "`sql` check `q` of asset `notify` has no data to query",
            "defs/a.toml:30:23",
        ),
    ] {
        let i = run
            .stderr
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in\n{}", run.stderr));
        assert!(
            run.stderr[i..].lines().nth(1).unwrap().contains(at),
            "{needle:?} is not at {at}:\n{}",
            run.stderr
        );
    }
    assert_contains(&run.stderr, &["did you mean `blocking`?", "8 errors"]);
}

/// The wall clock plus `secs`, RFC 3339: materializations are stamped
/// with the wall clock, so freshness is judged against it.
fn wall_clock_plus(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339()
}

#[test]
fn freshness_makes_status_fail_on_stale_once_it_is_exceeded() {
    let p = one_file(
        r#"
[assets.daily_export]
freshness = "1h"
shell = "printf 'x\n1\n' > \"$DG_OUTPUT\""

[assets.other]
shell = "printf 'x\n1\n' > \"$DG_OUTPUT\""
"#,
    );
    // Never materialized: missing, and overdue.
    let before = dg_now(
        p.path(),
        NOW,
        &["status", "--fail-on-stale", "--select", "daily_export"],
    );
    assert_eq!(before.code, 1, "{}", before.stderr);
    assert!(
        before
            .stderr
            .contains("daily_export (1 missing, overdue (freshness))"),
        "{}",
        before.stderr
    );
    assert_ok(&materialize(p.path(), &[]));
    let soon = wall_clock_plus(600);
    let fresh = dg_now(p.path(), &soon, &["status", "--fail-on-stale", "--json"]);
    assert_ok(&fresh);
    let v = json(&fresh);
    let f = &v["assets"][0]["freshness"];
    assert_eq!(f["max_age_s"], 3600, "{v:#}");
    assert_eq!(f["overdue"], false);
    assert!(f["age_s"].as_i64().unwrap() >= 590, "{f}");
    assert_eq!(v["assets"][1]["freshness"], Value::Null);

    let later = wall_clock_plus(2 * 3600);
    let stale = dg_now(p.path(), &later, &["status", "--fail-on-stale"]);
    assert_eq!(stale.code, 1, "{}\n{}", stale.stdout, stale.stderr);
    assert_contains(
        &stale.stdout,
        &[
            "daily_export  1 materialized, 0 failed, 0 missing, 0 stale, overdue: last materialized 2h",
        ],
    );
    assert!(
        stale
            .stderr
            .contains("1 selected asset is not up to date: daily_export (overdue (freshness))"),
        "{}",
        stale.stderr
    );
    // Without the flag, status only reports.
    assert_ok(&dg_now(p.path(), &later, &["status"]));
    // Selecting only what is fresh passes.
    assert_ok(&dg_now(
        p.path(),
        &later,
        &["status", "--fail-on-stale", "--select", "other"],
    ));
}

#[test]
fn hooks_run_after_the_run_with_its_summary_and_never_change_its_status() {
    let defs = r#"
[assets.ok]
shell = "printf 'x\n1\n' > \"$DG_OUTPUT\""

[assets.broken]
shell = "exit 4"
"#;
    let p = project(&[
        ("defs/a.toml", defs),
        (
            "dg.toml",
            r#"[hooks]
on_success = 'cp "$DG_RUN_SUMMARY" success.json; echo "hook saw $DG_RUN_STATUS"; exit 9'
on_failure = 'cp "$DG_RUN_SUMMARY" failure.json; echo "$DG_RUN_ID" > failure.id'
"#,
        ),
    ]);
    // A successful run whose hook fails: still a success.
    let run = materialize(p.path(), &["--select", "ok"]);
    assert_ok(&run);
    let v = json(&run);
    assert_eq!(v["status"], "success");
    assert_contains(&run.stderr, &["hook saw success"]);
    assert!(
        run.stderr.contains(
            "warning: hook `on_success` failed (exited with code 9); the run's status is unchanged"
        ),
        "{}",
        run.stderr
    );
    let summary: Value = serde_json::from_str(&read(p.path().join("success.json"))).unwrap();
    assert_eq!(summary, v, "the hook gets the same summary as --json");
    assert!(!p.path().join("failure.json").exists());

    // A failed run: on_failure runs, and the exit code stays 1.
    let run = materialize(p.path(), &["--select", "broken"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let v = json(&run);
    let summary: Value = serde_json::from_str(&read(p.path().join("failure.json"))).unwrap();
    assert_eq!(summary["status"], "failure");
    assert_eq!(summary["run_id"], v["run_id"]);
    assert_eq!(step(&summary, "broken")["status"], "failed");
    assert_eq!(
        read(p.path().join("failure.id")).trim(),
        v["run_id"].as_str().unwrap()
    );
    // The --json output on stdout stays one JSON object: hook output went to stderr.
    assert!(run.stdout.trim_start().starts_with('{'));

    // A malformed [hooks] table is a located error.
    let bad = project(&[
        ("defs/a.toml", defs),
        ("dg.toml", "[hooks]\non_succes = \"true\"\n"),
    ]);
    let run = dg_now(bad.path(), NOW, &["check", "defs"]);
    assert_fails_with(
        &run,
        2,
        &["unknown field `on_succes` in `[hooks]`", "dg.toml:2:1"],
    );
}

#[test]
fn scaffolded_checks_pass_check_defs_and_run() {
    let tmp = tempfile::TempDir::new().unwrap();
    let proj = tmp.path().join("p");
    let init = crate::support::dg(tmp.path(), &["init", proj.to_str().unwrap()]);
    assert_ok(&init);
    let lite = dg_now(
        &proj,
        NOW,
        &["scaffold", "defs", "resources", "lite", "--type", "sqlite"],
    );
    assert_ok(&lite);
    for args in [
        &["check", "checked"][..],
        &[
            "dagster.asset_check",
            "raw/daily_checked",
            "--partitions",
            "daily",
            "--io-manager",
            "lite",
        ][..],
    ] {
        let mut full = vec!["scaffold", "defs"];
        full.extend_from_slice(args);
        let run = dg_now(&proj, NOW, &full);
        assert_ok(&run);
        assert_contains(&run.stdout, &["asset with checks"]);
        assert_ok(&dg_now(&proj, NOW, &["check", "defs"]));
    }
    let text = read(proj.join("defs/checked.toml"));
    for line in [
        "[assets.checked.checks.not_empty]",
        "[assets.checked.checks.has_data]",
        "shell = \"test -s \\\"$DG_INPUT_CHECKED\\\"\"",
        "freshness = \"26h\"",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}:\n{text}");
    }
    // Both templates run, and their checks pass: in the embedded engine
    // and inside the sqlite database.
    let run = dg_now(
        &proj,
        "2024-01-03T00:00:00Z",
        &[
            "materialize",
            "--json",
            "--select",
            "checked or daily_checked",
            "--partition",
            "2024-01-01",
        ],
    );
    assert_ok(&run);
    let v = json(&run);
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 4, "{v:#}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{v:#}");
}
