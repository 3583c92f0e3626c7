//! Jobs (`[jobs.NAME]`), `dg materialize --job`, `dg list jobs` and
//! `dg tick` (CONTRACT §8).
//!
//! Every command pins *now* with `--now`. Steps append their step id to
//! `ran.log` in the project, so what actually ran is checked independently
//! of what dg reports. The racing tests start two `dg tick` processes at
//! once on the same project and check that every tick ran exactly once.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{assert_contains, assert_fails_with, spawn_dg, text_rows};
use crate::{Run, assert_no_panic, dg, dg_with_env};

/// Hourly partitions from 2024-01-01; `events` logs its step, `totals`
/// (unpartitioned) reads every hour.
const DEFS: &str = r#"
[partitions.hourly]
type = "hourly"
start = "2024-01-01-00:00"

[assets.events]
partitions = "hourly"
shell = '''
echo "events[$DG_PARTITION_KEY]" >> ran.log
echo x > "$DG_OUTPUT"
'''

[assets.totals]
deps = ["events"]
shell = '''
echo "totals" >> ran.log
echo y > "$DG_OUTPUT"
'''
"#;

fn project(jobs: &str) -> TempDir {
    let tmp = TempDir::new().expect("temp dir");
    std::fs::create_dir_all(tmp.path().join("defs")).unwrap();
    std::fs::write(tmp.path().join("defs/assets.toml"), DEFS).unwrap();
    std::fs::write(tmp.path().join("defs/jobs.toml"), jobs).unwrap();
    tmp
}

fn run(dir: &Path, args: &[&str]) -> Run {
    let r = dg(dir, args);
    assert_no_panic(&r);
    r
}

fn ok(dir: &Path, args: &[&str]) -> Run {
    let r = run(dir, args);
    assert_eq!(r.code, 0, "dg {args:?} failed: {r:?}");
    r
}

/// Lines of `ran.log`, counted.
fn ran(dir: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(dir.join("ran.log")).unwrap_or_default();
    let mut out = BTreeMap::new();
    for l in text.lines() {
        *out.entry(l.to_string()).or_insert(0) += 1;
    }
    out
}

fn clear_log(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("ran.log"));
}

#[test]
fn job_definition_errors_are_located() {
    let dir = project(
        r#"[jobs.bad]
selct = "events"
partition = "latest"
last = 0
cron = "0 25 * * *"
timezone = "Europe/Amsterdm"
catchup = "every"

[jobs.twice]
select = "events"

[jobs.typed]
select = "events"
missing = "yes"
"#,
    );
    std::fs::write(
        dir.path().join("defs/more.toml"),
        "[jobs.twice]\nselect = \"totals\"\n",
    )
    .unwrap();
    let r = run(dir.path(), &["check", "defs"]);
    assert_eq!(r.code, 2, "{r:?}");
    let e = &r.stderr;
    assert_contains(
        e,
        &[
            "error: job `bad` has no `select`\n --> defs/jobs.toml:1:7",
            "error: unknown field `selct` in job `bad`\n --> defs/jobs.toml:2:1",
            "help: did you mean `select`?",
            "error: job `bad` has 2 targeting fields: `partition` and `last`\n --> defs/jobs.toml:4:1",
            "first targeting field",
            "error: `last` in job `bad` must be at least 1, found 0\n --> defs/jobs.toml:4:8",
            "error: invalid cron schedule `0 25 * * *` in job `bad`\n --> defs/jobs.toml:5:8",
            "hour `25` is out of range",
            "error: unknown time zone `Europe/Amsterdm` in job `bad`\n --> defs/jobs.toml:6:12",
            "help: did you mean `Europe/Amsterdam`?",
            "error: invalid `catchup` `every` in job `bad`\n --> defs/jobs.toml:7:11",
            "error: job `twice` is defined twice",
            "defs/more.toml:1:7",
            "defs/jobs.toml:9:7",
            "first defined here",
            "error: `missing` in job `typed` must be a boolean (true or false), found a string\n  --> defs/jobs.toml:14:11",
        ],
    );
}

#[test]
fn a_job_selection_is_checked_against_the_assets() {
    let dir = project("[jobs.j]\nselect = \"evnts or (totals\"\n");
    let r = run(dir.path(), &["check", "defs"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains(
            "error: in `select` of job `j`: unclosed `(` in selection\n --> defs/jobs.toml:2:20"
        ),
        "{}",
        r.stderr
    );
    std::fs::write(
        dir.path().join("defs/jobs.toml"),
        "[jobs.j]\nselect = \"evnts\"\n",
    )
    .unwrap();
    let r = run(dir.path(), &["check", "defs"]);
    assert_fails_with(&r, 2, &["defs/jobs.toml:2:11", "did you mean `events`?"]);
}

#[test]
fn timezone_without_cron_is_a_warning() {
    let dir = project("[jobs.j]\nselect = \"events\"\ntimezone = \"UTC\"\n");
    let r = ok(dir.path(), &["check", "defs"]);
    assert!(
        r.stderr
            .contains("warning: `timezone` in job `j` has no effect without `cron`"),
        "{r:?}"
    );
}

#[test]
fn materialize_job_uses_its_targeting_and_flags_override_it() {
    let dir = project(
        "[jobs.recent]\nselect = \"events\"\nlast = 2\nmissing = true\n\n\
         [jobs.all_hours]\nselect = \"+totals\"\nall_partitions = true\n",
    );
    let d = dir.path();
    let now = ["--now", "2024-01-01T05:30:00Z"];
    ok(d, &[&now[..], &["materialize", "--job", "recent"]].concat());
    let want: BTreeMap<String, usize> = [
        ("events[2024-01-01-03:00]".to_string(), 1),
        ("events[2024-01-01-04:00]".to_string(), 1),
    ]
    .into();
    assert_eq!(ran(d), want);

    // `missing = true`: nothing left to do.
    clear_log(d);
    let r = ok(d, &[&now[..], &["materialize", "--job", "recent"]].concat());
    assert!(r.stdout.contains("nothing to do"), "{r:?}");
    assert!(ran(d).is_empty());

    // A partition flag replaces the job's targeting; `missing` still applies.
    let r = ok(
        d,
        &[
            &now[..],
            &[
                "materialize",
                "--job",
                "recent",
                "--partition",
                "2024-01-01-04:00",
            ],
        ]
        .concat(),
    );
    assert!(r.stdout.contains("nothing to do"), "{r:?}");
    ok(
        d,
        &[
            &now[..],
            &[
                "materialize",
                "--job",
                "recent",
                "--partition",
                "2024-01-01-00:00",
            ],
        ]
        .concat(),
    );
    assert_eq!(ran(d), [("events[2024-01-01-00:00]".to_string(), 1)].into());

    // `--select` replaces the job's selection, the job's targeting stays.
    clear_log(d);
    ok(
        d,
        &[
            &now[..],
            &["materialize", "--job", "all_hours", "--select", "events"],
        ]
        .concat(),
    );
    assert_eq!(ran(d).len(), 5, "{:?}", ran(d));
    clear_log(d);
    ok(
        d,
        &[
            &now[..],
            &["materialize", "--job", "all_hours", "--select", "totals"],
        ]
        .concat(),
    );
    assert_eq!(ran(d), [("totals".to_string(), 1)].into());

    // The run records the job.
    let r = ok(d, &["runs", "--json"]);
    assert_contains(&r.stdout, &["--job all_hours --all-partitions"]);

    // Dry run: the job's plan.
    let r = ok(
        d,
        &[
            &now[..],
            &["materialize", "--job", "all_hours", "--dry-run", "--json"],
        ]
        .concat(),
    );
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["steps"].as_array().unwrap().len(),
        6,
        "5 hours and totals"
    );
}

#[test]
fn an_unknown_job_is_a_usage_error_listing_the_jobs() {
    let dir = project("[jobs.hourly]\nselect = \"events\"\n\n[jobs.nightly]\nselect = \"*\"\n");
    let r = run(dir.path(), &["materialize", "--job", "hourli"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("error: unknown job `hourli`"), "{r:?}");
    assert!(
        r.stderr
            .contains("help: did you mean `hourly`? defined jobs: `hourly`, `nightly`"),
        "{r:?}"
    );
}

#[test]
fn list_jobs_shows_schedule_and_next_tick() {
    let dir = project(
        "[jobs.hourly]\nselect = \"events\"\npartition = \"latest\"\ncron = \"45 * * * *\"\n\n\
         [jobs.nightly]\nselect = \"*\"\ncron = \"0 2 * * *\"\ntimezone = \"Europe/Amsterdam\"\ncatchup = \"all\"\n\n\
         [jobs.manual]\nselect = \"totals\"\nstale = true\n",
    );
    let r = ok(
        dir.path(),
        &["--now", "2024-01-01T05:50:00Z", "list", "jobs", "--json"],
    );
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!(jobs[0]["name"], "hourly");
    assert_eq!(jobs[0]["targeting"], "partition = latest");
    assert_eq!(jobs[0]["next_tick"], "2024-01-01T06:45:00Z");
    assert_eq!(jobs[1]["timezone"], "Europe/Amsterdam");
    assert_eq!(jobs[1]["catchup"], "all");
    // 02:00 in Amsterdam (UTC+1 in winter).
    assert_eq!(jobs[1]["next_tick"], "2024-01-02T01:00:00Z");
    assert_eq!(jobs[2]["cron"], Value::Null);
    assert_eq!(jobs[2]["stale"], true);
    let r = ok(
        dir.path(),
        &["--now", "2024-01-01T05:50:00Z", "list", "jobs"],
    );
    assert_contains(
        &r.stdout,
        &[
            "hourly  select events, partition = latest",
            "next tick 2024-01-01T06:45:00Z",
        ],
    );
}

/// Starts `dg tick --now NOW` twice at the same time and waits for both.
fn race(dir: &Path, now: &str, env: &[(&str, &str)]) -> Vec<std::process::Output> {
    let children: Vec<_> = (0..2)
        .map(|_| spawn_dg(dir, &["--now", now, "tick", "--json"], env))
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("dg ends"))
        .collect()
}

/// An hourly job across a simulated day: at each hour two `dg tick` race;
/// the job runs 24 times, once per tick. (No `missing`: a second run of a
/// tick would run the step again and show in `ran.log`.)
fn hourly_day(dir: &Path, env: &[(&str, &str)]) {
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for h in 0..24 {
        let now = format!("2024-01-02T{h:02}:00:00Z");
        for out in race(dir, &now, env) {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert_eq!(out.status.code(), Some(0), "tick at {now}: {stderr}");
            let v: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("tick --json at {now}: {e}: {stderr}"));
            for t in v["ticks"].as_array().unwrap() {
                assert_eq!(t["tick"], now.as_str(), "{v}");
                *statuses
                    .entry(t["status"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
    }
    let log = ran(dir);
    assert_eq!(log.len(), 24, "{log:?}");
    assert!(log.values().all(|&n| n == 1), "a tick ran twice: {log:?}");
    // The tick at H targets the latest hour over, H-1 (the day before at 00:00).
    assert!(log.contains_key("events[2024-01-01-23:00]"), "{log:?}");
    assert!(log.contains_key("events[2024-01-02-22:00]"), "{log:?}");
    assert_eq!(statuses.get("success"), Some(&24), "{statuses:?}");
    // Each race: the loser either saw the claim or came after the winner recorded it.
    assert!(statuses.get("claimed").copied().unwrap_or(0) <= 24);
}

#[test]
fn an_hourly_job_fires_24_times_a_day_once_each_with_two_ticks_racing() {
    let dir = project(
        "[jobs.hourly]\nselect = \"events\"\npartition = \"latest\"\ncron = \"0 * * * *\"\n",
    );
    hourly_day(dir.path(), &[]);
    let conn = rusqlite::Connection::open(dir.path().join(".dg/state.db")).unwrap();
    let (n, ok): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), SUM(status = 'success') FROM job_ticks WHERE job = 'hourly'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((n, ok), (24, 24));
    // Nothing more is due within the hour.
    let r = ok_tick(dir.path(), "2024-01-02T23:59:00Z");
    assert!(r.stdout.contains("nothing due at"), "{r:?}");
}

fn ok_tick(dir: &Path, now: &str) -> Run {
    ok(dir, &["--now", now, "tick"])
}

fn tick_json(dir: &Path, now: &str, extra: &[&str]) -> Value {
    let r = ok(
        dir,
        &[&["--now", now, "tick", "--json"][..], extra].concat(),
    );
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"))
}

#[test]
fn catchup_latest_runs_once_and_all_runs_every_missed_tick() {
    let dir = project(
        "[jobs.newest]\nselect = \"events\"\npartition = \"latest\"\ncron = \"0 * * * *\"\n\n\
         [jobs.every]\nselect = \"events\"\npartition = \"latest\"\ncron = \"30 * * * *\"\ncatchup = \"all\"\n",
    );
    let d = dir.path();
    // First tick of new jobs: the latest tick at --now, one run each.
    let v = tick_json(d, "2024-01-02T00:45:00Z", &[]);
    assert_eq!(
        text_rows(&v["ticks"], &["job", "tick"]),
        [
            ["newest", "2024-01-02T00:00:00Z"],
            ["every", "2024-01-02T00:30:00Z"]
        ]
    );
    assert!(
        v["ticks"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("first tick of a new job"),
        "{v}"
    );
    clear_log(d);

    // Four hours later: the dry run says what is due and why, and records nothing.
    for _ in 0..2 {
        let v = tick_json(d, "2024-01-02T04:45:00Z", &["--dry-run"]);
        let due = v["ticks"].as_array().unwrap();
        assert_eq!(due.len(), 1 + 4, "{v}");
        assert!(due.iter().all(|t| t["status"] == "due"), "{v}");
        assert!(
            due[0]["reason"]
                .as_str()
                .unwrap()
                .contains("ticked 4 times since the last recorded tick 2024-01-02T00:00:00Z; catchup = \"latest\""),
            "{v}"
        );
        assert!(
            due[1]["reason"]
                .as_str()
                .unwrap()
                .contains("missed tick 1 of 4"),
            "{v}"
        );
    }
    assert!(ran(d).is_empty());
    let r = ok(d, &["--now", "2024-01-02T04:45:00Z", "tick", "--dry-run"]);
    assert!(
        r.stdout
            .contains("due: newest at 2024-01-02T04:00:00Z: `0 * * * *` ticked 4 times"),
        "{r:?}"
    );

    let v = tick_json(d, "2024-01-02T04:45:00Z", &[]);
    assert_eq!(
        text_rows(&v["ticks"], &["job", "tick", "status"]),
        [
            ["newest", "2024-01-02T04:00:00Z", "success"],
            ["every", "2024-01-02T01:30:00Z", "success"],
            ["every", "2024-01-02T02:30:00Z", "success"],
            ["every", "2024-01-02T03:30:00Z", "success"],
            ["every", "2024-01-02T04:30:00Z", "success"],
        ]
    );
    // Each of `every`'s runs targets the latest partition as of its own tick.
    let want: BTreeMap<String, usize> = [
        "events[2024-01-02-00:00]",
        "events[2024-01-02-01:00]",
        "events[2024-01-02-02:00]",
        "events[2024-01-02-03:00]",
    ]
    .iter()
    .map(|k| {
        (
            k.to_string(),
            if *k == "events[2024-01-02-03:00]" {
                2
            } else {
                1
            },
        )
    })
    .collect();
    assert_eq!(
        ran(d),
        want,
        "newest ran 03:00 once, every ran 00:00..03:00"
    );
    // Everything recorded: nothing due.
    let v = tick_json(d, "2024-01-02T04:50:00Z", &[]);
    assert_eq!(v["ticks"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["jobs"][0]["last_tick"], "2024-01-02T04:00:00Z");
    assert_eq!(v["jobs"][0]["next_tick"], "2024-01-02T05:00:00Z");
}

#[test]
fn a_failed_tick_is_recorded_and_not_retried() {
    let dir =
        project("[jobs.j]\nselect = \"events\"\npartition = \"latest\"\ncron = \"0 * * * *\"\n");
    std::fs::write(
        dir.path().join("defs/assets.toml"),
        DEFS.replace("echo x > \"$DG_OUTPUT\"", "exit 3"),
    )
    .unwrap();
    let r = run(dir.path(), &["--now", "2024-01-02T00:10:00Z", "tick"]);
    assert_eq!(r.code, 1, "{r:?}");
    let r = ok(dir.path(), &["--now", "2024-01-02T00:20:00Z", "tick"]);
    assert!(r.stdout.contains("nothing due"), "{r:?}");
}

#[test]
fn tick_with_no_scheduled_job_says_so() {
    let dir = project("[jobs.j]\nselect = \"events\"\n");
    let r = ok(dir.path(), &["--now", "2024-01-02T00:10:00Z", "tick"]);
    assert!(r.stdout.contains("no job has a `cron`"), "{r:?}");
}

#[test]
fn scaffold_job_writes_a_valid_job() {
    let dir = project("");
    let r = ok(
        dir.path(),
        &["scaffold", "defs", "job", "nightly", "--cron", "0 3 * * *"],
    );
    assert!(
        r.stdout
            .contains("created defs/nightly.toml: job `nightly`"),
        "{r:?}"
    );
    let text = std::fs::read_to_string(dir.path().join("defs/nightly.toml")).unwrap();
    assert!(text.contains("[jobs.nightly]\n") && text.contains("cron = \"0 3 * * *\""));
    let r = ok(
        dir.path(),
        &["--now", "2024-01-02T00:00:00Z", "list", "jobs", "--json"],
    );
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["jobs"][0]["next_tick"], "2024-01-02T03:00:00Z");
    let r = run(
        dir.path(),
        &["scaffold", "defs", "job", "bad", "--cron", "0 99 * * *"],
    );
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn postgres_tick_claims_are_exclusive() {
    // A fresh schema for the state store, dropped with `pg`.
    let Some(mut pg) = crate::backend::Pg::open() else {
        return;
    };
    let state_url = pg.state_url();
    let dir = project(
        "[jobs.hourly]\nselect = \"events\"\npartition = \"latest\"\ncron = \"0 * * * *\"\n",
    );
    std::fs::write(
        dir.path().join("dg.toml"),
        "[state]\nurl = \"${env:DG_STATE_URL}\"\n",
    )
    .unwrap();
    let env = [("DG_STATE_URL", state_url.as_str())];
    hourly_day(dir.path(), &env);
    let r = dg_with_env(dir.path(), &["--now", "2024-01-02T23:30:00Z", "tick"], &env);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("nothing due"), "{r:?}");
    assert_eq!(
        pg.rows("SELECT COUNT(*) FROM {s}.job_ticks WHERE status = 'success'"),
        [["24"]]
    );
}
