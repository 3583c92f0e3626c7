//! `dg check defs` on malformed definitions: exit 2, no panic, every error
//! located (`file:line:col`) and naming its culprit, the whole report
//! snapshotted.

use serde_json::Value;

use crate::support::{Run, assert_contains, assert_no_panic, dg, dg_with_env, items, malformed};

/// Every case under `tests/fixtures/malformed/`; each must have a test below.
const CASES: &[&str] = &[
    "bad_asset_executor",
    "bad_cron",
    "bad_date",
    "bad_env_syntax",
    "bad_executor",
    "bad_timezone",
    "cycle",
    "dg_toml",
    "duckdb_fields",
    "duplicate_asset",
    "fmt_too_coarse",
    "invalid_partitions_type",
    "mapping_identity_static_daily",
    "mapping_static_unknown_key",
    "mapping_time_window_tz",
    "multi_three_dims",
    "no_compute",
    "static_duplicate_keys",
    "toml_syntax",
    "two_computes",
    "unknown_field",
    "unknown_reference",
    "unknown_resource_field",
    "unknown_resource_type",
    "unknown_top_level",
    "unset_env",
    "wrong_type",
];

/// Runs `dg check defs` on a fixture, checks what every failing check must
/// show, then that stderr holds each of `expect`, and snapshots stderr.
fn fails(case: &str, expect: &[&str]) -> Run {
    let dir = malformed(case);
    let run = dg(dir.path(), &["check", "defs"]);
    assert_eq!(
        run.code, 2,
        "exit code of `{case}`; stderr:\n{}",
        run.stderr
    );
    assert_no_panic(&run);
    assert_eq!(run.stdout, "", "nothing on stdout for `{case}`");
    assert_contains(&run.stderr, expect);
    assert!(
        run.stderr
            .trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("error: definitions are invalid: ")),
        "stderr of `{case}` ends with the summary:\n{}",
        run.stderr
    );
    insta::assert_snapshot!(case, run.stderr);
    run
}

/// The number of `error:` diagnostics (without the final summary line).
fn error_count(run: &Run) -> usize {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("error: ") && !l.starts_with("error: definitions are invalid"))
        .count()
}

#[test]
fn every_fixture_has_a_test() {
    let dir = crate::support::repo().join("tests/fixtures/malformed");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, CASES);
}

/// One test per fixture: `NAME: ERRORS [SHOWN] not [ABSENT]` runs `fails` on
/// the fixture NAME with SHOWN, then checks that stderr reports ERRORS errors
/// and holds none of ABSENT.
macro_rules! malformed {
    ($($(#[$attr:meta])* $case:ident: $errors:literal [$($shown:expr),+ $(,)?] $(not [$($absent:expr),+ $(,)?])?;)+) => {$(
        $(#[$attr])*
        #[test]
        fn $case() {
            let run = fails(stringify!($case), &[$($shown),+]);
            assert_eq!(error_count(&run), $errors, "{}", run.stderr);
            $($(assert!(!run.stderr.contains($absent), "{}", run.stderr);)+)?
        }
    )+};
}

malformed! {
    /// `[executor]` of dg.toml and an asset's `executor`: every bad field is
    /// located, an unknown type and field get a suggestion, and the asset's
    /// table takes no `type`.
    bad_executor: 5 [
        "dg.toml:2:8",
        "unknown executor type `slurmm` in `[executor]`",
        "did you mean `slurm`?",
        "dg.toml:3:8",
        "is not a Slurm time limit",
        "dg.toml:4:7",
        "is not an amount of memory",
        "dg.toml:5:13",
        "`max_array` in `[executor]` must be between 1 and",
        "dg.toml:6:1",
        "unknown field `partiton` in `[executor]`",
        "did you mean `partition`?",
    ];

    /// An asset's `executor` table: the Slurm options without `type`.
    bad_asset_executor: 3 [
        "defs/a.toml:4:",
        "`cpus_per_task` in `executor` of asset `train` must be between 1 and",
        "unknown field `type` in `executor` of asset `train`",
        "`account` in `executor` of asset `train` is empty",
    ];

    toml_syntax: 3 [
        "invalid TOML",
        "defs/assets.toml:3:11",
        "retries =",
        "defs/assets.toml:5:15",
        "[assets.report",
        "defs/partitions.toml:3:9",
        "start = 2024-01-01\"",
        "3 errors",
    ] not [
        // `reports.toml` refers to names from the files that do not parse:
        // those references must not be reported as unknown.
        "unknown",
        "reports.toml",
    ];

    unknown_field: 2 [
        "defs/assets.toml:6:1",
        "unknown field `partitons` in asset `orders`",
        "did you mean `partitions`?",
        "defs/assets.toml:8:1",
        "unknown field `descripton` in asset `orders`",
        "did you mean `description`?",
    ];

    wrong_type: 4 [
        "defs/assets.toml:3:11",
        "`retries` in asset `orders` must be an integer, found a string",
        "defs/assets.toml:4:8",
        "`deps` in asset `orders` must be an array of strings, found a string",
        "defs/assets.toml:5:17",
        "`tags.team` in asset `orders` must be a string, found an integer",
        "defs/assets.toml:8:9",
        "`shell` in asset `customers` must be a string, found an array",
    ];

    unknown_reference: 4 [
        "defs/assets.toml:6:14",
        "asset `revenue` refers to unknown partitions `dayly`",
        "did you mean `daily`?",
        "defs/assets.toml:7:9",
        "asset `revenue` depends on unknown asset `ordrs`",
        "did you mean `orders`?",
        "defs/assets.toml:8:14",
        "asset `revenue` uses unknown I/O manager `warehose`",
        "did you mean `warehouse`?",
        "defs/assets.toml:13:17",
        "input `orders_in` of asset `revenue` uses unknown input manager `loader`",
        "`warehouse`, `io_manager`",
    ];

    // One cycle, reported once.
    cycle: 1 [
        "defs/assets.toml:2:9",
        "dependency cycle: extract → transform → load → extract",
        "`extract` reads `load`",
        "`transform` reads `extract`",
        "`load` reads `transform`",
    ];

    duplicate_asset: 1 [
        "asset `orders` is defined twice",
        "defs/b_marketing.toml:4:9",
        "defined again here",
        "defs/a_sales.toml:1:9",
        "first defined here",
    ];

    bad_date: 1 [
        "defs/partitions.toml:3:9",
        "invalid `start` in partitions `hourly`",
        "`2024-01-01` does not match the format `%Y-%m-%d-%H:%M`",
        "write it like `2024-01-01-00:00`",
    ] not [
        // `events` uses the invalid definition; it is not "unknown".
        "unknown",
    ];

    bad_timezone: 1 [
        "defs/partitions.toml:4:12",
        "unknown time zone `Europe/Berln` in partitions `daily_berlin`",
        "did you mean `Europe/Berlin`?",
    ];

    bad_cron: 2 [
        "defs/partitions.toml:3:8",
        "invalid cron schedule `0 */6 * *` in partitions `six_hourly`",
        "found 4",
        "defs/partitions.toml:9:8",
        "invalid cron schedule `61 * * * *` in partitions `bad_minute`",
        "minute 0-59",
    ];

    two_computes: 1 [
        "defs/assets.toml:3:1",
        "asset `orders` has more than one compute: `shell` and `sql`",
        "first compute",
        "second compute",
    ];

    no_compute: 1 [
        "defs/assets.toml:1:9",
        "asset `orders` has no compute",
        "`source = true`",
    ];

    invalid_partitions_type: 1 [
        "defs/partitions.toml:2:8",
        "unknown partitions type `dayly` in partitions `daily`",
        "did you mean `daily`?",
    ];

    static_duplicate_keys: 1 [
        "defs/partitions.toml:3:29",
        "partition key `eu` is listed twice in partitions `region`",
        "first listed here",
    ];

    multi_three_dims: 1 [
        "defs/partitions.toml:7:14",
        "partitions `date_region_channel` must have exactly two dimensions, found 3",
        "`date`, `region`, `channel`",
    ];

    mapping_identity_static_daily: 1 [
        "defs/assets.toml:18:11",
        "the `identity` mapping cannot apply to input `sales` of asset `daily_sales`",
        "upstream is static",
        "`all`",
    ];

    mapping_time_window_tz: 1 [
        "defs/assets.toml:19:11",
        "the `time_window` mapping cannot apply to input `events` of asset `tokyo_events`",
        "upstream UTC, downstream Asia/Tokyo",
        "same `timezone`",
    ];

    mapping_static_unknown_key: 1 [
        "defs/assets.toml:18:11",
        "the `static` mapping cannot apply to input `sales` of asset `market_sales`",
        "upstream has no partition `apac`",
        "upstream keys: `us`, `eu`",
    ];

    unknown_resource_type: 1 [
        "defs/resources.toml:2:8",
        "unknown resource type `s3` in resource `io_manager`",
        "object storage is `type = \"object_store\"` with `url = \"s3://bucket/prefix\"`",
        "`command`, `duckdb`, `fs`, `memory`, `object_store`, `postgres`, `settings`, `sqlite`",
    ];

    unknown_resource_field: 1 [
        "defs/resources.toml:3:1",
        "unknown field `base_dri` in resource `io_manager` (type `fs`)",
        "did you mean `base_dir`?",
    ];

    /// Issue 18: a misspelt or mistyped field of a `duckdb` resource, an
    /// unknown `engine` and an `engine` on an asset that has no query, each
    /// located.
    #[cfg(feature = "duckdb")]
    duckdb_fields: 4 [
        "defs/warehouse.toml:4:1",
        "unknown field `shema` in resource `warehouse` (type `duckdb`)",
        "did you mean `schema`?",
        "defs/warehouse.toml:8:8",
        "defs/warehouse.toml:13:10",
        "unknown SQL engine `duckbd` in asset `daily`",
        "did you mean `duckdb`?",
        "defs/warehouse.toml:17:10",
        "asset `script` has `engine` but no `sql` query",
    ];

    bad_env_syntax: 2 [
        "invalid environment reference in asset `orders`",
        "defs/assets.toml:3:20",
        "`${` is not closed by `}`",
        "defs/assets.toml:3:46",
        "unsupported interpolation `${API_TOKEN}`",
    ];

    fmt_too_coarse: 1 [
        "defs/partitions.toml:4:7",
        "invalid `fmt` in partitions `hourly`",
        "the format `%Y-%m-%d` is too coarse",
    ];

    unknown_top_level: 2 [
        "defs/assets.toml:1:2",
        "unknown top-level table `asset`",
        "did you mean `assets`?",
        "defs/assets.toml:4:2",
        "unknown top-level table `resource`",
        "did you mean `resources`?",
    ];

    dg_toml: 2 [
        "dg.toml:1:2",
        "unknown field `projekt` in `dg.toml`",
        "did you mean `project`?",
        "dg.toml:5:8",
        "`jobs` must be at least 1",
    ];
}

#[test]
fn unset_env_is_a_warning_without_strict() {
    let dir = malformed("unset_env");
    let run = dg(dir.path(), &["check", "defs"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_no_panic(&run);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert_contains(&run.stdout, &["all valid, 1 warning"]);
    assert_contains(
        &run.stderr,
        &[
            "warning: environment variable `DG_FIXTURE_UNSET_API_BASE` is not set (used by asset `orders`)",
            "defs/assets.toml:3:20",
        ],
    );
    assert!(!run.stderr.contains("error"), "{}", run.stderr);
    insta::assert_snapshot!("unset_env_warning", run.stderr);
}

#[test]
fn unset_env_is_an_error_with_strict() {
    let dir = malformed("unset_env");
    let run = dg(dir.path(), &["check", "defs", "--strict"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_no_panic(&run);
    assert_eq!(run.stdout, "");
    assert_contains(
        &run.stderr,
        &[
            "error: environment variable `DG_FIXTURE_UNSET_API_BASE` is not set (used by asset `orders`)",
            "defs/assets.toml:3:20",
            "error: definitions are invalid: 1 error",
        ],
    );
    insta::assert_snapshot!("unset_env_strict", run.stderr);
}

#[test]
fn set_env_passes_strict() {
    let dir = malformed("unset_env");
    let run = dg_with_env(
        dir.path(),
        &["check", "defs", "--strict"],
        &[("DG_FIXTURE_UNSET_API_BASE", "https://example.org")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "");
}

#[test]
fn non_utf8() {
    // Written here rather than committed: a file with a stray Latin-1 byte.
    let dir = tempfile::TempDir::new().unwrap();
    let defs = dir.path().join("defs");
    std::fs::create_dir_all(&defs).unwrap();
    std::fs::write(
        defs.join("a_partitions.toml"),
        b"[partitions.daily]\ntype = \"daily\"\nstart = \"2024-01-01\"\n# caf\xe9\n",
    )
    .unwrap();
    // Valid UTF-8, with its own mistake, and a reference into the unreadable file.
    std::fs::write(
        defs.join("b_assets.toml"),
        "[assets.orders]\npartitions = \"daily\"\ndescripton = \"typo\"\nshell = \"true\"\n",
    )
    .unwrap();
    let run = dg(dir.path(), &["check", "defs"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_no_panic(&run);
    assert_contains(
        &run.stderr,
        &[
            "`defs/a_partitions.toml` is not valid UTF-8",
            "defs/a_partitions.toml:4:6",
            "invalid byte here",
            // the other file is still checked…
            "defs/b_assets.toml:3:1",
            "unknown field `descripton` in asset `orders`",
        ],
    );
    // …but `daily` is not called unknown: it is defined in the unreadable file.
    assert!(!run.stderr.contains("unknown partitions"), "{}", run.stderr);
    assert_eq!(error_count(&run), 2);
    insta::assert_snapshot!("non_utf8", run.stderr);
}

// --- `--json` ---------------------------------------------------------------

/// Runs `dg check defs --json ARGS…` on a fixture, checks that its errors
/// are `located` (`kind file:line:column` each, in order), and returns the
/// parsed stdout.
fn check_json(case: &str, extra: &[&str], located: &[&str]) -> Value {
    let dir = malformed(case);
    let mut args = vec!["check", "defs", "--json"];
    args.extend_from_slice(extra);
    let run = dg(dir.path(), &args);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert_no_panic(&run);
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout of `{case}` is not JSON ({e}):\n{}", run.stdout));
    assert_eq!(v["ok"], Value::Bool(false));
    assert_eq!(v["counts"], Value::Null);
    let found: Vec<String> = items(&v["errors"])
        .iter()
        .map(|e| {
            assert_eq!(e["severity"], "error");
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
            format!(
                "{} {}:{}:{}",
                e["kind"].as_str().expect("kind"),
                e["file"].as_str().expect("file"),
                e["line"].as_u64().expect("line"),
                e["column"].as_u64().expect("column"),
            )
        })
        .collect();
    assert_eq!(found, located, "errors of `{case}`");
    v
}

#[test]
fn json_unknown_reference() {
    let v = check_json(
        "unknown_reference",
        &[],
        &[
            "unknown_reference defs/assets.toml:6:14",
            "unknown_reference defs/assets.toml:7:9",
            "unknown_reference defs/assets.toml:8:14",
            "unknown_reference defs/assets.toml:13:17",
        ],
    );
    assert_eq!(v["errors"][1]["help"], "did you mean `orders`?");
    assert_eq!(v["warnings"], serde_json::json!([]));
}

#[test]
fn json_duplicate_asset() {
    let v = check_json(
        "duplicate_asset",
        &[],
        &["duplicate defs/b_marketing.toml:4:9"],
    );
    assert_eq!(v["errors"][0]["message"], "asset `orders` is defined twice");
    assert_eq!(v["errors"][0]["label"], "defined again here");
}

#[test]
fn json_toml_syntax() {
    check_json(
        "toml_syntax",
        &[],
        &[
            "syntax defs/assets.toml:3:11",
            "syntax defs/assets.toml:5:15",
            "syntax defs/partitions.toml:3:9",
        ],
    );
}

#[test]
fn json_cycle() {
    let v = check_json("cycle", &[], &["cycle defs/assets.toml:2:9"]);
    assert_eq!(
        v["errors"][0]["message"],
        "dependency cycle: extract → transform → load → extract"
    );
}

#[test]
fn json_mapping_and_types() {
    check_json(
        "mapping_static_unknown_key",
        &[],
        &["mapping defs/assets.toml:18:11"],
    );
    check_json(
        "wrong_type",
        &[],
        &[
            "wrong_type defs/assets.toml:3:11",
            "wrong_type defs/assets.toml:4:8",
            "wrong_type defs/assets.toml:5:17",
            "wrong_type defs/assets.toml:8:9",
        ],
    );
}

#[test]
fn json_unset_env_strict() {
    check_json(
        "unset_env",
        &["--strict"],
        &["env_var defs/assets.toml:3:20"],
    );
}

#[test]
fn json_unset_env_without_strict_is_ok_with_a_warning() {
    let dir = malformed("unset_env");
    let run = dg(dir.path(), &["check", "defs", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["errors"], serde_json::json!([]));
    let w = &v["warnings"][0];
    assert_eq!(w["severity"], "warning");
    assert_eq!(w["kind"], "env_var");
    assert_eq!(
        (w["file"].as_str(), w["line"].as_u64(), w["column"].as_u64()),
        (Some("defs/assets.toml"), Some(3), Some(20))
    );
}
