//! Issue 18: `path` templates of the `fs` manager (and what `dg check defs`
//! says about them), through the real binary.

use crate::support::{assert_fails_with, assert_ok, dg_now, files_under, one_file, read};

const NOW: &str = "2024-04-02T00:00:00Z";

#[test]
fn a_monthly_layout_of_a_real_pipeline() {
    let dir = one_file(
        r#"
[resources.io_manager]
type = "fs"
base_dir = "data"
format = "parquet"
path = "{start:%Y}/{start:%m}/{start:%Y%m}_30min.{ext}"

[partitions.monthly]
type = "monthly"
start = "2024-01-01"

[assets.wind]
partitions = "monthly"
shell = "printf 'month,speed\n%s,3\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""
format = "csv"

[assets.wind_stats]
partitions = "monthly"
deps = ["wind"]
shell = "cp \"$DG_INPUT_WIND\" \"$DG_OUTPUT\""
io_manager = "plain"
format = "csv"

[resources.plain]
type = "fs"
base_dir = "plain"
"#,
    );
    assert_ok(&dg_now(dir.path(), NOW, &["check", "defs"]));
    let run = dg_now(
        dir.path(),
        NOW,
        &[
            "materialize",
            "--partition-range",
            "2024-01-01...2024-03-01",
        ],
    );
    assert_ok(&run);
    let files: Vec<String> = files_under(&dir.path().join("data"))
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        [
            "2024/01/202401_30min.parquet",
            "2024/02/202402_30min.parquet",
            "2024/03/202403_30min.parquet"
        ]
    );
    // Read back through the template by the downstream step.
    assert_eq!(
        read(dir.path().join("plain/wind_stats/2024-02-01.csv")),
        "month,speed\n2024-02-01,3\n"
    );
}

#[test]
fn a_flat_multi_layout() {
    let dir = one_file(
        r#"
[resources.io_manager]
type = "fs"
base_dir = "lake"
format = "parquet"
path = "{partition}.{ext}"

[partitions.station]
type = "static"
keys = ["NL01485", "NL01491"]

[partitions.day_station]
type = "multi"
dimensions = { date = "daily", station = "station" }

[partitions.daily]
type = "daily"
start = "2024-01-23"

[assets.air]
partitions = "day_station"
shell = "printf 'v\n1\n' > \"$DG_OUTPUT\""
format = "csv"
"#,
    );
    let run = dg_now(
        dir.path(),
        "2024-01-25T00:00:00Z",
        &["materialize", "--partition", "2024-01-24|NL01485"],
    );
    assert_ok(&run);
    let files: Vec<String> = files_under(&dir.path().join("lake"))
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["2024-01-24|NL01485.parquet"]);
}

#[test]
fn a_template_two_partitions_share_is_a_located_error() {
    let dir = one_file(
        r#"[resources.io_manager]
type = "fs"
path = "{key}/{start:%Y}/{start:%m}.{ext}"

[partitions.daily]
type = "daily"
start = "2024-01-01"

[assets.events]
partitions = "daily"
shell = "true"
"#,
    );
    let run = dg_now(dir.path(), NOW, &["check", "defs"]);
    assert_fails_with(
        &run,
        2,
        &[
            "the `path` of resource `io_manager` cannot store asset `events`: two partitions \
             would share a path: the partitions are daily",
            "does not name the day (`%d`)",
            "defs/a.toml:3:8",
            "help: name the partition",
        ],
    );
}

#[test]
fn template_mistakes_are_located() {
    let dir = one_file(
        r#"[resources.io_manager]
type = "fs"
path = "{key}/{partiton}.{ext}"

[resources.other]
type = "fs"
path = "{key}/{start:%Q}.{ext}"

[resources.flat]
type = "fs"
path = "{partition}.{ext}"

[partitions.region]
type = "static"
keys = ["us", "eu"]

[assets.a]
partitions = "region"
io_manager = "flat"
shell = "true"

[assets.b]
partitions = "region"
io_manager = "flat"
shell = "true"
"#,
    );
    let run = dg_now(dir.path(), NOW, &["check", "defs"]);
    assert_fails_with(
        &run,
        2,
        &[
            // Inside the string, at the placeholder.
            "`path` has an unknown placeholder `{partiton}`",
            "defs/a.toml:3:15",
            "did you mean `{partition}`?",
            "invalid strftime format `%Q`",
            "defs/a.toml:7:15",
            "has no `{key}`, but assets `a` and `b` are both stored with it",
        ],
    );
}

/// Hostile partition keys stay below the base folder, whatever the template.
#[test]
fn hostile_keys_never_leave_the_base() {
    let dir = one_file(
        r#"[resources.io_manager]
type = "fs"
base_dir = "data/base"
path = "{key}/{partition}/x.{ext}"

[partitions.evil]
type = "static"
keys = ["..", "../../outside", "a/../../b", ".hidden", "%2E%2E"]

[assets.t]
partitions = "evil"
shell = "printf 'k\n%s\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""
"#,
    );
    let run = dg_now(dir.path(), NOW, &["materialize", "--all-partitions"]);
    assert_ok(&run);
    let all = files_under(dir.path());
    let stored: Vec<_> = all
        .iter()
        .filter(|p| !p.starts_with(".dg") && !p.starts_with("defs"))
        .collect();
    assert_eq!(stored.len(), 5, "{all:?}");
    for p in &stored {
        assert!(p.starts_with("data/base/t"), "{p:?} escaped the base");
    }
    // Each key is its own file, holding its own key.
    assert_eq!(read(dir.path().join("data/base/t/%2E./x.csv")), "k\n..\n");
}
