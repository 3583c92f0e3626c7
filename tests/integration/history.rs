//! Run history and what is built on it: `--missing` / `--stale`, `dg status`,
//! `dg runs`, `dg logs`, dynamic partitions, crash recovery and two
//! concurrent `dg materialize` processes on one project.
//!
//! Every command pins *now* with `--now`. Steps are `sh` scripts that append
//! their step id to `ran.log` in the project, so what actually ran is checked
//! independently of what dg reports; the state database (`.dg/state.db`) is
//! read directly with rusqlite where the CLI does not show enough.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use tempfile::TempDir;

use crate::backend::{pg_rows, try_sqlite_rows};
use crate::history_postgres::{Schema, password};
use crate::support::{
    Run, assert_contains, assert_fails_with, assert_no_panic, dg_with_env, files_under,
    hourly_daily, items, json, process_gone, project, spawn_dg, texts,
};

/// Two days of hours are over: 48 hourly and 2 daily partitions.
pub(crate) const NOW: &str = "2022-01-03T00:00:00Z";
/// Only the first day is over.
const DAY1: &str = "2022-01-02T00:00:00Z";

/// The seed example plus a sibling of `downstream_asset` (reads the same
/// hours, but not `downstream_asset`) and an unrelated unpartitioned asset.
/// Every step appends its step id to `ran.log`. `@DOWN_CV@` is
/// `downstream_asset`'s code_version.
const CHAIN: &str = concat!(
    hourly_daily!(),
    r#"
[assets.upstream_asset]
partitions = "hourly"
code_version = "1"
shell = '''
echo "upstream_asset[$DG_PARTITION_KEY]" >> ran.log
printf 'date\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"
'''

[assets.downstream_asset]
partitions = "daily"
deps = ["upstream_asset"]
code_version = "@DOWN_CV@"
shell = '''
echo "downstream_asset[$DG_PARTITION_KEY]" >> ran.log
cat "$DG_INPUT_UPSTREAM_ASSET" > "$DG_OUTPUT"
'''

[assets.sibling]
partitions = "daily"
deps = ["upstream_asset"]
code_version = "1"
shell = '''
echo "sibling[$DG_PARTITION_KEY]" >> ran.log
cat "$DG_INPUT_UPSTREAM_ASSET" > "$DG_OUTPUT"
'''

[assets.daily_report]
partitions = "daily"
code_version = "1"
shell = '''
echo "daily_report[$DG_PARTITION_KEY]" >> ran.log
today=$(wc -l < "$DG_INPUT_TODAY")
yesterday=0
[ -s "$DG_INPUT_YESTERDAY" ] && yesterday=$(wc -l < "$DG_INPUT_YESTERDAY")
printf 'day,rows,rows_yesterday\n%s,%d,%d\n' "$DG_PARTITION_KEY" "$today" "$yesterday" > "$DG_OUTPUT"
'''

[assets.daily_report.ins.today]
asset = "downstream_asset"

[assets.daily_report.ins.yesterday]
asset = "downstream_asset"
mapping = { type = "time_window", start_offset = -1, end_offset = -1, allow_nonexistent = true }

[assets.other]
code_version = "1"
shell = '''
echo "other" >> ran.log
printf 'x\n1\n' > "$DG_OUTPUT"
'''
"#
);

fn chain(down_cv: &str) -> String {
    CHAIN.replace("@DOWN_CV@", down_cv)
}

// The store --------------------------------------------------------------------

/// Where the run history is kept: the project's SQLite file
/// (`.dg/state.db`), or a schema of its own on the Postgres test server
/// (`history_postgres.rs`, whose `dg.toml` says `[state] url = …`). The
/// scenarios below take a `Store` and run on both.
pub(crate) enum Store {
    Sqlite,
    Postgres(Schema),
}

impl Store {
    /// A fresh Postgres schema, or `None` when there is no test server (the
    /// test is skipped; under `CI=true` it fails instead).
    pub(crate) fn postgres() -> Option<Store> {
        Schema::new().map(Store::Postgres)
    }

    /// A project holding `files`; on Postgres its `dg.toml` takes the state
    /// URL from `${env:DG_STATE_URL}` (set by [`Store::dg_at`] to the schema).
    pub(crate) fn project(&self, files: &[(&str, &str)]) -> TempDir {
        let mut all = files.to_vec();
        if let Store::Postgres(_) = self {
            all.push(("dg.toml", "[state]\nurl = \"${env:DG_STATE_URL}\"\n"));
        }
        project(&all)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Store::Sqlite => vec![],
            Store::Postgres(s) => vec![("DG_STATE_URL", s.url())],
        }
    }

    /// `dg --now NOW ARGS…`, checked for panics (and, on Postgres, for the
    /// server's password in the output).
    pub(crate) fn dg_at(&self, dir: &Path, now: &str, args: &[&str]) -> Run {
        let mut all = vec!["--now", now];
        all.extend(args);
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = dg_with_env(dir, &all, &env);
        assert_no_panic(&run);
        if let Store::Postgres(s) = self
            && let Some(p) = password(&s.server)
        {
            assert!(
                !run.stdout.contains(&p) && !run.stderr.contains(&p),
                "the password is shown: {run:?}"
            );
        }
        run
    }

    /// `dg --now NOW ARGS…` that must exit 0.
    pub(crate) fn ok(&self, dir: &Path, now: &str, args: &[&str]) -> Run {
        let run = self.dg_at(dir, now, args);
        assert_eq!(
            run.code, 0,
            "dg {args:?} failed\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        );
        run
    }

    /// The plan of `dg materialize --all-partitions FLAG --dry-run --json`
    /// at [`NOW`] (`FLAG`: `--missing` or `--stale`), which must succeed.
    pub(crate) fn dry_run_all(&self, dir: &Path, flag: &str) -> Value {
        self.ok_json(
            dir,
            NOW,
            &[
                "materialize",
                "--all-partitions",
                flag,
                "--dry-run",
                "--json",
            ],
        )
    }

    /// `dg --now NOW ARGS…` that must exit 0 and print one JSON object.
    pub(crate) fn ok_json(&self, dir: &Path, now: &str, args: &[&str]) -> Value {
        json(&self.ok(dir, now, args))
    }

    /// `dg … ARGS` as a background process.
    pub(crate) fn spawn(&self, dir: &Path, args: &[&str]) -> Child {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        spawn_dg(dir, args, &env)
    }

    /// The rows of `sql` as text (NULL as `NULL`); `None` when the query
    /// fails (no database or no table yet).
    pub(crate) fn try_rows(&self, dir: &Path, sql: &str) -> Option<Vec<Vec<String>>> {
        match self {
            Store::Sqlite => {
                if !dir.join(".dg/state.db").exists() {
                    return None;
                }
                try_sqlite_rows(&db(dir), sql).ok()
            }
            Store::Postgres(s) => pg_rows(&mut s.client(), sql).ok(),
        }
    }

    /// The first column of `sql`'s rows, as text.
    pub(crate) fn texts(&self, dir: &Path, sql: &str) -> Vec<String> {
        self.try_rows(dir, sql)
            .unwrap_or_else(|| panic!("the query fails: {sql}"))
            .into_iter()
            .map(|mut r| r.swap_remove(0))
            .collect()
    }

    /// The one number `sql` returns.
    pub(crate) fn count(&self, dir: &Path, sql: &str) -> i64 {
        let t = self.texts(dir, sql);
        assert_eq!(t.len(), 1, "{sql}: {t:?}");
        t[0].parse().unwrap()
    }

    /// The keys of the partitions definition (or partitioned asset) `name`,
    /// as `dg list partitions NAME --json` lists them.
    pub(crate) fn partition_keys(&self, dir: &Path, name: &str) -> Vec<String> {
        let v = self.ok_json(dir, NOW, &["list", "partitions", name, "--json"]);
        assert_eq!(v["name"], name, "{v:#}");
        v["keys"]
            .as_array()
            .unwrap_or_else(|| panic!("no keys: {v:#}"))
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    }

    /// Rows of `materializations` per (asset, partition).
    pub(crate) fn materialization_counts(&self, dir: &Path) -> Vec<(String, String, i64)> {
        self.try_rows(
            dir,
            "SELECT asset, partition, COUNT(*) FROM materializations
             GROUP BY asset, partition ORDER BY asset, partition",
        )
        .expect("the materializations")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].parse().unwrap()))
        .collect()
    }
}

/// The state database, read-only.
fn db(dir: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_with_flags(
        dir.join(".dg/state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the state database exists");
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// The step ids of a plan or run summary.
pub(crate) fn ids(v: &Value) -> BTreeSet<String> {
    let steps = v["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps array: {v:#}"));
    let set: BTreeSet<String> = steps
        .iter()
        .map(|s| s["id"].as_str().expect("a step id").to_string())
        .collect();
    assert_eq!(set.len(), steps.len(), "a step appears twice: {v:#}");
    set
}

pub(crate) fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// What the steps appended to `ran.log` (as a list: repeats matter), and
/// empties it.
fn take_ran(dir: &Path) -> Vec<String> {
    let p = dir.join("ran.log");
    let text = std::fs::read_to_string(&p).unwrap_or_default();
    let _ = std::fs::remove_file(&p);
    let mut v: Vec<String> = text.lines().map(str::to_string).collect();
    v.sort();
    v
}

fn sorted(s: &BTreeSet<String>) -> Vec<String> {
    s.iter().cloned().collect()
}

fn hours(day: &str) -> Vec<String> {
    (0..24).map(|h| format!("{day}-{h:02}:00")).collect()
}

/// Every step of one day of the `CHAIN` project.
fn day_steps(day: &str) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = hours(day)
        .into_iter()
        .map(|h| format!("upstream_asset[{h}]"))
        .collect();
    for a in ["downstream_asset", "sibling", "daily_report"] {
        s.insert(format!("{a}[{day}]"));
    }
    s
}

/// The `dg status --json` entry of one asset.
fn status_of<'a>(v: &'a Value, asset: &str) -> &'a Value {
    items(&v["assets"])
        .iter()
        .find(|a| a["asset"] == asset)
        .unwrap_or_else(|| panic!("no asset `{asset}` in {v:#}"))
}

/// (materialized, failed, missing, stale) of one asset in `dg status --json`.
pub(crate) fn counts(v: &Value, asset: &str) -> (u64, u64, u64, u64) {
    let a = status_of(v, asset);
    let n = |k: &str| {
        a[k].as_u64()
            .unwrap_or_else(|| panic!("`{k}` is not a count: {a}"))
    };
    (n("materialized"), n("failed"), n("missing"), n("stale"))
}

pub(crate) fn ranges(v: &Value, asset: &str, which: &str) -> Vec<String> {
    status_of(v, asset)["ranges"][which]
        .as_array()
        .unwrap_or_else(|| panic!("no ranges.{which} for `{asset}` in {v:#}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

/// Waits for a background dg, killing it after `within`.
fn finish(mut child: Child, within: Duration) -> (Option<i32>, String, String) {
    let until = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "dg did not finish within {within:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// 1. --missing ------------------------------------------------------------------

#[test]
fn missing_runs_nothing_after_a_success_and_only_a_new_day_later() {
    missing_after_a_success(&Store::Sqlite);
}

/// Also run on Postgres by `history_postgres.rs`.
pub(crate) fn missing_after_a_success(s: &Store) {
    let dir = s.project(&[("defs/defs.toml", &chain("1"))]);
    let d = dir.path();

    let v = s.ok_json(
        d,
        NOW,
        &["materialize", "--partition", "2022-01-01", "--json"],
    );
    let mut first = day_steps("2022-01-01");
    first.insert("other".into());
    assert_eq!(ids(&v), first);
    assert_eq!(take_ran(d), sorted(&first));

    // The same partition again with --missing: nothing runs.
    let run = s.ok(
        d,
        NOW,
        &["materialize", "--partition", "2022-01-01", "--missing"],
    );
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("nothing to do"),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let v = s.ok_json(
        d,
        NOW,
        &[
            "materialize",
            "--partition",
            "2022-01-01",
            "--missing",
            "--json",
        ],
    );
    assert_eq!(v["status"], "success", "{v:#}");
    assert_eq!(v["steps"], Value::Array(vec![]), "{v:#}");
    let v = s.ok_json(
        d,
        NOW,
        &[
            "materialize",
            "--partition",
            "2022-01-01",
            "--missing",
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(v["steps"], Value::Array(vec![]), "{v:#}");
    assert_eq!(take_ran(d), Vec::<String>::new(), "--missing ran steps");
    // Still one materialization per partition.
    let counts = s.materialization_counts(d);
    assert_eq!(counts.len(), first.len(), "{counts:?}");
    assert!(counts.iter().all(|(_, _, n)| *n == 1), "{counts:?}");
    // The history is in the store chosen: no local SQLite database on Postgres.
    assert_eq!(d.join(".dg/state.db").exists(), matches!(s, Store::Sqlite));
}

#[test]
fn missing_over_all_partitions_runs_only_a_new_day() {
    let s = &Store::Sqlite;
    let dir = s.project(&[("defs/defs.toml", &chain("1"))]);
    let d = dir.path();
    // Only the first day exists yet.
    s.ok(d, DAY1, &["materialize", "--all-partitions"]);
    let mut first = day_steps("2022-01-01");
    first.insert("other".into());
    assert_eq!(take_ran(d), sorted(&first));

    // A day later, a second day exists: --missing plans and runs only it.
    let second = day_steps("2022-01-02");
    let plan = s.dry_run_all(d, "--missing");
    assert_eq!(ids(&plan), second);
    assert_eq!(take_ran(d), Vec::<String>::new(), "--dry-run ran steps");
    let v = s.ok_json(
        d,
        NOW,
        &["materialize", "--all-partitions", "--missing", "--json"],
    );
    assert_eq!(v["status"], "success", "{v:#}");
    assert_eq!(ids(&v), second);
    assert_eq!(take_ran(d), sorted(&second));
    // The second report read the first day as its `yesterday`.
    assert_eq!(
        std::fs::read_to_string(d.join(".dg/storage/daily_report/2022-01-02.csv")).unwrap(),
        "day,rows,rows_yesterday\n2022-01-02,25,25\n"
    );

    let run = s.ok(d, NOW, &["materialize", "--all-partitions", "--missing"]);
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("nothing to do"),
        "{run:?}"
    );
    assert_eq!(take_ran(d), Vec::<String>::new());
}

// 2. --stale after a code_version change -------------------------------------------

#[test]
fn a_code_version_change_makes_that_asset_and_its_readers_stale() {
    code_version_change(&Store::Sqlite);
}

/// Also run on Postgres by `history_postgres.rs`.
pub(crate) fn code_version_change(s: &Store) {
    let dir = s.project(&[("defs/defs.toml", &chain("1"))]);
    let d = dir.path();
    s.ok(d, NOW, &["materialize", "--all-partitions"]);
    assert_eq!(take_ran(d).len(), 48 + 3 * 2 + 1);
    let fresh = s.dry_run_all(d, "--stale");
    assert_eq!(ids(&fresh), BTreeSet::new(), "everything is up to date");

    std::fs::write(d.join("defs/defs.toml"), chain("2")).unwrap();
    let expected = set(&[
        "downstream_asset[2022-01-01]",
        "downstream_asset[2022-01-02]",
        "daily_report[2022-01-01]",
        "daily_report[2022-01-02]",
    ]);
    let plan = s.dry_run_all(d, "--stale");
    assert_eq!(ids(&plan), expected, "{plan:#}");
    // `--missing` does not care about code versions.
    let missing = s.dry_run_all(d, "--missing");
    assert_eq!(ids(&missing), BTreeSet::new());

    let st = s.ok_json(d, NOW, &["status", "--json"]);
    assert_eq!(counts(&st, "upstream_asset"), (48, 0, 0, 0));
    assert_eq!(counts(&st, "downstream_asset"), (2, 0, 0, 2));
    assert_eq!(counts(&st, "daily_report"), (2, 0, 0, 2));
    assert_eq!(counts(&st, "sibling"), (2, 0, 0, 0));
    assert_eq!(counts(&st, "other"), (1, 0, 0, 0));

    assert_eq!(take_ran(d), Vec::<String>::new(), "--dry-run ran steps");
    let v = s.ok_json(
        d,
        NOW,
        &["materialize", "--all-partitions", "--stale", "--json"],
    );
    assert_eq!(v["status"], "success", "{v:#}");
    assert_eq!(ids(&v), expected);
    assert_eq!(take_ran(d), sorted(&expected));

    // The new code_version is recorded: nothing is stale any more.
    let again = s.dry_run_all(d, "--stale");
    assert_eq!(ids(&again), BTreeSet::new(), "{again:#}");
    let st = s.ok_json(d, NOW, &["status", "--json"]);
    for a in [
        "upstream_asset",
        "downstream_asset",
        "daily_report",
        "sibling",
        "other",
    ] {
        assert_eq!(counts(&st, a).3, 0, "`{a}` is still stale: {st:#}");
    }
    let cv = s.texts(
        d,
        "SELECT code_version FROM materializations WHERE asset = 'downstream_asset' ORDER BY id",
    );
    assert_eq!(cv, ["1", "1", "2", "2"]);
}

// 3. --stale after an upstream partition is materialized again ----------------------

#[test]
fn rematerializing_one_hour_makes_exactly_its_readers_stale() {
    rematerialized_hour(&Store::Sqlite);
}

/// Also run on Postgres by `history_postgres.rs`.
pub(crate) fn rematerialized_hour(s: &Store) {
    let dir = s.project(&[("defs/defs.toml", &chain("1"))]);
    let d = dir.path();
    s.ok(d, NOW, &["materialize", "--all-partitions"]);
    take_ran(d);

    s.ok(
        d,
        NOW,
        &[
            "materialize",
            "--select",
            "upstream_asset",
            "--partition",
            "2022-01-01-05:00",
        ],
    );
    assert_eq!(take_ran(d), ["upstream_asset[2022-01-01-05:00]"]);

    let st = s.ok_json(d, NOW, &["status", "--json"]);
    assert_eq!(counts(&st, "upstream_asset"), (48, 0, 0, 0));
    assert_eq!(counts(&st, "downstream_asset"), (2, 0, 0, 1));
    assert_eq!(
        ranges(&st, "downstream_asset", "stale"),
        ["2022-01-01"],
        "{st:#}"
    );
    assert_eq!(counts(&st, "sibling"), (2, 0, 0, 1));
    assert_eq!(ranges(&st, "sibling", "stale"), ["2022-01-01"]);
    // Through `today` (2022-01-01) and through `yesterday` (2022-01-02).
    assert_eq!(counts(&st, "daily_report"), (2, 0, 0, 2));
    assert_eq!(
        ranges(&st, "daily_report", "stale"),
        ["2022-01-01...2022-01-02"]
    );
    assert_eq!(counts(&st, "other"), (1, 0, 0, 0));
    // `--select` narrows the status.
    let only = s.ok_json(d, NOW, &["status", "--select", "sibling", "--json"]);
    assert_eq!(only["assets"].as_array().unwrap().len(), 1, "{only:#}");
    assert_eq!(counts(&only, "sibling"), (2, 0, 0, 1));

    let expected = set(&[
        "downstream_asset[2022-01-01]",
        "sibling[2022-01-01]",
        "daily_report[2022-01-01]",
        "daily_report[2022-01-02]",
    ]);
    let plan = s.dry_run_all(d, "--stale");
    assert_eq!(ids(&plan), expected, "{plan:#}");
    // One asset only: its stale partition, nothing downstream.
    let plan = s.ok_json(
        d,
        NOW,
        &[
            "materialize",
            "--select",
            "downstream_asset",
            "--all-partitions",
            "--stale",
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(ids(&plan), set(&["downstream_asset[2022-01-01]"]));

    let v = s.ok_json(
        d,
        NOW,
        &["materialize", "--all-partitions", "--stale", "--json"],
    );
    assert_eq!(ids(&v), expected);
    assert_eq!(take_ran(d), sorted(&expected));
    let st = s.ok_json(d, NOW, &["status", "--json"]);
    for a in ["downstream_asset", "daily_report", "sibling"] {
        assert_eq!(counts(&st, a), (2, 0, 0, 0), "`{a}`: {st:#}");
    }
}

// 4. kill -9 in the middle of a run ---------------------------------------------------

#[test]
fn a_killed_run_is_interrupted_and_a_rerun_completes_it() {
    killed_run(&Store::Sqlite);
}

/// Also run on Postgres by `history_postgres.rs`.
pub(crate) fn killed_run(s: &Store) {
    let defs = r#"
[partitions.four]
type = "static"
keys = ["p1", "p2", "p3", "p4"]

[assets.sleepy]
partitions = "four"
shell = '''
echo $$ > "pids/$DG_PARTITION_KEY"
printf 'k\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"
if [ "$DG_PARTITION_KEY" != p1 ] && [ -e slow.flag ]; then sleep 5; fi
printf '%s\n' "$DG_PARTITION_KEY" >> "$DG_OUTPUT"
echo "sleepy[$DG_PARTITION_KEY]" >> ran.log
'''
"#;
    let dir = s.project(&[
        ("defs/defs.toml", defs),
        ("pids/.keep", ""),
        ("slow.flag", ""),
    ]);
    let d = dir.path();
    let mut child = s.spawn(
        d,
        &[
            "--now",
            NOW,
            "materialize",
            "--all-partitions",
            "--jobs",
            "2",
        ],
    );

    // Wait until p1 is recorded and p2, p3 are running.
    let pids = d.join("pids");
    let until = Instant::now() + Duration::from_secs(15);
    let run_id = loop {
        let running = pids.join("p2").exists() && pids.join("p3").exists();
        // Nothing to read before the store is created.
        let recorded = s
            .try_rows(
                d,
                "SELECT COUNT(*) FROM materializations WHERE partition = 'p1'",
            )
            .is_some_and(|r| r == [["1"]]);
        if running && recorded {
            break s.texts(d, "SELECT id FROM runs").remove(0);
        }
        if Instant::now() > until || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the steps did not start");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    // Let the pidfiles be written out entirely.
    std::thread::sleep(Duration::from_millis(100));

    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "dg was killed by a signal");
    // The steps' shells were left behind: stop them (their process groups).
    for k in ["p2", "p3", "p4"] {
        let f = pids.join(k);
        if let Ok(text) = std::fs::read_to_string(&f)
            && let Ok(pid) = text.trim().parse::<i32>()
        {
            if !process_gone(pid) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let until = Instant::now() + Duration::from_secs(3);
            while !process_gone(pid) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(process_gone(pid), "step shell {pid} of {k} survives");
        }
    }

    // Nobody has looked yet: the database still says running.
    let status = s.texts(d, &format!("SELECT status FROM runs WHERE id = '{run_id}'"));
    assert_eq!(status, ["running"]);
    assert!(
        s.count(d, "SELECT COUNT(*) FROM leases") > 0,
        "the dead run holds leases"
    );

    // The next command finds the dead process and marks the run.
    let runs = s.ok_json(d, NOW, &["runs", "--json"]);
    let list = runs["runs"].as_array().expect("runs array");
    assert_eq!(list.len(), 1, "{runs:#}");
    assert_eq!(list[0]["id"], run_id.as_str());
    assert_eq!(list[0]["status"], "interrupted", "{runs:#}");
    let show = s.ok_json(d, NOW, &["runs", "show", &run_id, "--json"]);
    assert_eq!(show["run"]["status"], "interrupted");
    assert!(show["run"]["ended_at"].is_string(), "{show:#}");
    let mats: Vec<&str> = texts(&show["materializations"], "partition");
    assert_eq!(mats, ["p1"]);
    let human = s.ok(d, NOW, &["runs"]);
    assert!(
        human.stdout.contains(&run_id) && human.stdout.contains("interrupted"),
        "{}",
        human.stdout
    );
    let human = s.ok(d, NOW, &["runs", "show", &run_id]);
    assert_contains(&human.stdout, &["interrupted"]);

    // Only p1 is materialized; the unfinished ones are missing.
    let st = s.ok_json(d, NOW, &["status", "--json"]);
    assert_eq!(counts(&st, "sleepy"), (1, 0, 3, 0), "{st:#}");
    assert_eq!(ranges(&st, "sleepy", "materialized"), ["p1"]);
    assert_eq!(ranges(&st, "sleepy", "missing"), ["p2...p4"]);
    // The human status collapses the range too.
    let human = s.ok(d, NOW, &["status"]);
    assert!(
        human.stdout.lines().any(|l| l.starts_with("sleepy")
            && l.contains("1 materialized")
            && l.contains("3 missing")),
        "{}",
        human.stdout
    );
    let missing = human
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("missing"))
        .unwrap_or_else(|| panic!("{}", human.stdout));
    assert!(
        missing.contains("p2") && missing.contains("p4") && !missing.contains("p3"),
        "{missing}"
    );
    // Storage holds the complete partition and nothing else: no partial
    // output, no temporary file.
    let storage = d.join(".dg/storage");
    assert_eq!(files_under(&storage), [PathBuf::from("sleepy/p1.csv")]);
    assert_eq!(
        std::fs::read_to_string(storage.join("sleepy/p1.csv")).unwrap(),
        "k\np1\np1\n"
    );
    // No lease outlives the reaping.
    assert_eq!(
        s.count(d, "SELECT COUNT(*) FROM leases"),
        0,
        "the dead run's leases are dropped"
    );

    // The rerun completes what is missing, without waiting for the dead run.
    std::fs::remove_file(d.join("slow.flag")).unwrap();
    take_ran(d);
    let started = Instant::now();
    let v = s.ok_json(
        d,
        NOW,
        &["materialize", "--all-partitions", "--missing", "--json"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the rerun waited"
    );
    assert_eq!(v["status"], "success");
    assert_eq!(ids(&v), set(&["sleepy[p2]", "sleepy[p3]", "sleepy[p4]"]));
    assert_eq!(take_ran(d), ["sleepy[p2]", "sleepy[p3]", "sleepy[p4]"]);
    let st = s.ok_json(d, NOW, &["status", "--json"]);
    assert_eq!(counts(&st, "sleepy"), (4, 0, 0, 0), "{st:#}");
    let mut expected: Vec<PathBuf> = ["p1", "p2", "p3", "p4"]
        .iter()
        .map(|k| PathBuf::from(format!("sleepy/{k}.csv")))
        .collect();
    expected.sort();
    assert_eq!(files_under(&storage), expected);
    for k in ["p2", "p3", "p4"] {
        assert_eq!(
            std::fs::read_to_string(storage.join(format!("sleepy/{k}.csv"))).unwrap(),
            format!("k\n{k}\n{k}\n")
        );
    }
}

// 5. Two concurrent processes ------------------------------------------------------------

#[test]
fn concurrent_runs_over_overlapping_partitions_materialize_each_once() {
    concurrent_runs(&Store::Sqlite);
}

/// Also run on Postgres by `history_postgres.rs`.
pub(crate) fn concurrent_runs(s: &Store) {
    let defs = r#"
[partitions.letters]
type = "static"
keys = ["a", "b", "c", "d", "e", "f"]

[assets.slow]
partitions = "letters"
shell = '''
echo "$DG_PARTITION_KEY $DG_RUN_ID" >> ran.log
sleep 1
printf 'k\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"
'''
"#;
    let dir = s.project(&[("defs/defs.toml", defs)]);
    let d = dir.path();
    let args = |range: &'static str| {
        [
            "--now",
            NOW,
            "materialize",
            "--partition-range",
            range,
            "--jobs",
            "2",
            "--json",
        ]
    };
    // Started together, on a project with no state database yet.
    let p1 = s.spawn(d, &args("a...d"));
    let p2 = s.spawn(d, &args("c...f"));
    let (c1, out1, err1) = finish(p1, Duration::from_secs(30));
    let (c2, out2, err2) = finish(p2, Duration::from_secs(30));
    let ctx = format!(
        "process 1 ({c1:?}):\n{out1}\n{err1}\nprocess 2 ({c2:?}):\n{out2}\n{err2}\nran.log:\n{}",
        std::fs::read_to_string(d.join("ran.log")).unwrap_or_default()
    );
    assert_eq!(c1, Some(0), "{ctx}");
    assert_eq!(c2, Some(0), "{ctx}");
    for out in [&out1, &out2] {
        let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {ctx}"));
        assert_eq!(v["status"], "success", "{ctx}");
        for s in v["steps"].as_array().unwrap() {
            assert_eq!(s["status"], "success", "{ctx}");
        }
    }
    assert!(
        !err1.contains("database") && !err2.contains("database"),
        "{ctx}"
    );

    // Each partition ran once, and has one materialization.
    let ran: Vec<String> = take_ran(d)
        .into_iter()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(ran, ["a", "b", "c", "d", "e", "f"], "{ctx}");
    let counts = s.materialization_counts(d);
    let expected: Vec<(String, String, i64)> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|k| ("slow".to_string(), k.to_string(), 1))
        .collect();
    assert_eq!(counts, expected, "{ctx}");
    assert_eq!(s.count(d, "SELECT COUNT(*) FROM leases"), 0, "{ctx}");
    let st = s.ok_json(d, NOW, &["status", "--json"]);
    assert_eq!(counts_of(&st), (6, 0, 0, 0));
    let runs = s.ok_json(d, NOW, &["runs", "--json"]);
    let list = runs["runs"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{runs:#}");
    assert!(list.iter().all(|r| r["status"] == "success"), "{runs:#}");
}

fn counts_of(st: &Value) -> (u64, u64, u64, u64) {
    counts(st, "slow")
}

// 6. status, runs, runs show, logs -----------------------------------------------------------

const SHOWN: &str = r#"
[partitions.letters]
type = "static"
keys = ["a", "b", "c", "d", "e", "f"]

[assets.lettered]
partitions = "letters"
shell = '''
echo "lettered $DG_PARTITION_KEY says hi"
if [ "$DG_PARTITION_KEY" = f ]; then echo "f is broken" >&2; exit 7; fi
printf 'k\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"
'''

[assets.flaky]
retries = 1
shell = '''
echo "flaky attempt $DG_ATTEMPT"
if [ "$DG_ATTEMPT" = 1 ]; then echo "first attempt fails"; exit 3; fi
printf 'n\n1\n2\n3\n' > "$DG_OUTPUT"
echo '{"metadata": {"rows_seen": 3, "source": "unit"}}' >> "$DG_MESSAGES"
'''
"#;

#[test]
fn status_runs_show_and_logs_report_the_history() {
    let s = &Store::Sqlite;
    let dir = s.project(&[("defs/defs.toml", SHOWN)]);
    let d = dir.path();
    // No history yet.
    let st = s.ok_json(d, NOW, &["status", "--json"]);
    assert_eq!(counts(&st, "lettered"), (0, 0, 6, 0));
    assert_eq!(ranges(&st, "lettered", "missing"), ["a...f"]);
    assert_eq!(counts(&st, "flaky"), (0, 0, 1, 0));
    let runs = s.ok_json(d, NOW, &["runs", "--json"]);
    assert_eq!(runs["runs"], Value::Array(vec![]));

    s.ok(
        d,
        NOW,
        &[
            "materialize",
            "--select",
            "lettered",
            "--partition-range",
            "a...c",
        ],
    );
    s.ok(
        d,
        NOW,
        &["materialize", "--select", "lettered", "--partition", "e"],
    );
    let failed = s.dg_at(
        d,
        NOW,
        &[
            "materialize",
            "--select",
            "lettered",
            "--partition",
            "f",
            "--json",
        ],
    );
    assert_eq!(failed.code, 1, "{failed:?}");
    let failed_run = json(&failed)["run_id"].as_str().unwrap().to_string();
    let v = s.ok_json(d, NOW, &["materialize", "--select", "flaky", "--json"]);
    let flaky_run = v["run_id"].as_str().unwrap().to_string();
    assert_eq!(v["steps"][0]["attempts"], 2, "{v:#}");

    // Status: counts and collapsed ranges, JSON and human.
    let st = s.ok_json(d, NOW, &["status", "--json"]);
    assert_eq!(st["now"], "2022-01-03T00:00:00+00:00");
    let l = status_of(&st, "lettered");
    assert_eq!(l["partitioned"], true);
    assert_eq!(l["partitions"], 6);
    assert_eq!(counts(&st, "lettered"), (4, 1, 1, 0));
    assert_eq!(ranges(&st, "lettered", "materialized"), ["a...c", "e"]);
    assert_eq!(ranges(&st, "lettered", "failed"), ["f"]);
    assert_eq!(ranges(&st, "lettered", "missing"), ["d"]);
    assert_eq!(ranges(&st, "lettered", "stale"), Vec::<String>::new());
    assert_eq!(status_of(&st, "flaky")["partitioned"], false);
    assert_eq!(counts(&st, "flaky"), (1, 0, 0, 0));
    let human = s.ok(d, NOW, &["status"]);
    let line = human
        .stdout
        .lines()
        .find(|l| l.starts_with("lettered"))
        .unwrap_or_else(|| panic!("{}", human.stdout));
    assert!(
        line.contains("4 materialized")
            && line.contains("1 failed")
            && line.contains("1 missing")
            && line.contains("0 stale")
            && line.contains("6"),
        "{line}"
    );
    let failed_line = human
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("failed"))
        .unwrap_or_else(|| panic!("{}", human.stdout));
    assert!(failed_line.contains("[f]"), "{}", human.stdout);
    let missing_line = human
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("missing"))
        .unwrap_or_else(|| panic!("{}", human.stdout));
    assert!(missing_line.contains("[d]"), "{}", human.stdout);
    let flaky_line = human
        .stdout
        .lines()
        .find(|l| l.starts_with("flaky"))
        .unwrap_or_else(|| panic!("{}", human.stdout));
    assert!(flaky_line.contains("1 materialized"), "{flaky_line}");

    // Runs: newest first, with their status.
    let runs = s.ok_json(d, NOW, &["runs", "--json"]);
    let list = runs["runs"].as_array().unwrap();
    assert_eq!(list.len(), 4, "{runs:#}");
    assert_eq!(list[0]["id"], flaky_run.as_str());
    assert_eq!(list[0]["status"], "success");
    assert_eq!(list[1]["id"], failed_run.as_str());
    assert_eq!(list[1]["status"], "failure");
    assert_eq!(list[3]["partitions"], "--partition-range a...c");
    assert_eq!(list[3]["selection"], "lettered");
    let human = s.ok(d, NOW, &["runs"]);
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", human.stdout);
    assert!(lines[0].contains(&flaky_run), "{}", human.stdout);
    assert!(
        lines[1].contains(&failed_run) && lines[1].contains("failure"),
        "{}",
        human.stdout
    );

    // One run: every attempt, and the materialization with its metadata.
    let show = s.ok_json(d, NOW, &["runs", "show", &flaky_run, "--json"]);
    assert_eq!(show["run"]["id"], flaky_run.as_str());
    assert_eq!(show["run"]["status"], "success");
    let attempts: Vec<(String, u64, String)> = items(&show["attempts"])
        .iter()
        .map(|a| {
            (
                a["step_id"].as_str().unwrap().to_string(),
                a["attempt"].as_u64().unwrap(),
                a["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("flaky".to_string(), 1, "failed".to_string()),
            ("flaky".to_string(), 2, "success".to_string())
        ],
        "{show:#}"
    );
    assert_eq!(show["attempts"][0]["exit_code"], 3, "{show:#}");
    let mats = show["materializations"].as_array().unwrap();
    assert_eq!(mats.len(), 1, "{show:#}");
    let m = &mats[0];
    assert_eq!(m["asset"], "flaky");
    assert_eq!(m["partition"], Value::Null);
    assert_eq!(m["run_id"], flaky_run.as_str());
    assert_eq!(m["metadata"]["rows_seen"], 3, "{m:#}");
    assert_eq!(m["metadata"]["source"], "unit", "{m:#}");
    let path = m["metadata"]["dg/path"].as_str().expect("dg/path");
    assert!(
        Path::new(path).ends_with(".dg/storage/flaky.csv"),
        "dg/path {path}"
    );
    let size = std::fs::metadata(d.join(".dg/storage/flaky.csv"))
        .unwrap()
        .len();
    assert_eq!(m["metadata"]["dg/bytes"], size, "{m:#}");
    assert!(m["data_version"].is_string(), "{m:#}");

    let show = s.ok_json(d, NOW, &["runs", "show", &failed_run, "--json"]);
    assert_eq!(show["run"]["status"], "failure");
    assert_eq!(show["attempts"][0]["step_id"], "lettered[f]");
    assert_eq!(show["attempts"][0]["status"], "failed");
    assert_eq!(show["attempts"][0]["exit_code"], 7);
    assert_eq!(show["materializations"], Value::Array(vec![]));
    let human = s.ok(d, NOW, &["runs", "show", &failed_run]);
    assert_contains(&human.stdout, &["lettered[f]", "failed"]);

    // Logs of one step: both attempts, nothing of other runs.
    let logs = s.ok(d, NOW, &["logs", &flaky_run, "flaky"]);
    assert!(
        logs.stdout.contains("flaky attempt 1")
            && logs.stdout.contains("first attempt fails")
            && logs.stdout.contains("flaky attempt 2"),
        "{}",
        logs.stdout
    );
    assert!(!logs.stdout.contains("lettered"), "{}", logs.stdout);
    let logs = s.ok(d, NOW, &["logs", &failed_run, "lettered[f]"]);
    assert_contains(&logs.stdout, &["lettered f says hi", "f is broken"]);
    // All of a run's logs.
    let logs = s.ok(d, NOW, &["logs", &failed_run]);
    assert_contains(&logs.stdout, &["f is broken"]);

    // Unknown run or step: exit 2 with a hint.
    for args in [
        vec!["runs", "show", "19990101T000000-abcdef"],
        vec!["runs", "show", "19990101T000000-abcdef", "--json"],
        vec!["logs", "19990101T000000-abcdef"],
        vec!["logs", "19990101T000000-abcdef", "flaky"],
    ] {
        let run = s.dg_at(d, NOW, &args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("19990101T000000-abcdef"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("dg runs"), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
    let run = s.dg_at(d, NOW, &["logs", &flaky_run, "flakey"]);
    assert_fails_with(&run, 2, &["flakey"]);
    assert!(run.stderr.contains("flaky"), "a suggestion: {}", run.stderr);
}

// 7. Dynamic partitions ----------------------------------------------------------------------

/// Adds the dynamic partitions `customers` (empty at first) in two
/// commands: they keep their insertion order, and a key already there is
/// not added twice.
pub(crate) fn add_customers(s: &Store, d: &Path) {
    assert_eq!(s.partition_keys(d, "customers"), Vec::<String>::new());
    s.ok(
        d,
        NOW,
        &["partitions", "add", "customers", "globex", "acme"],
    );
    s.ok(
        d,
        NOW,
        &["partitions", "add", "customers", "initech", "acme"],
    );
    assert_eq!(
        s.partition_keys(d, "customers"),
        ["globex", "acme", "initech"]
    );
}

#[test]
fn dynamic_partitions_are_added_listed_planned_and_removed() {
    let s = &Store::Sqlite;
    let defs = r#"
[partitions.customers]
type = "dynamic"

[partitions.regions]
type = "static"
keys = ["us", "eu"]

[assets.per_customer]
partitions = "customers"
shell = '''
echo "per_customer[$DG_PARTITION_KEY]" >> ran.log
printf 'customer\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"
'''
"#;
    let dir = s.project(&[("defs/defs.toml", defs)]);
    let d = dir.path();
    add_customers(s, d);
    assert_eq!(
        s.partition_keys(d, "per_customer"),
        ["globex", "acme", "initech"]
    );

    let plan = s.ok_json(d, NOW, &["plan", "--all-partitions", "--json"]);
    let planned: Vec<&str> = texts(&plan["steps"], "partition");
    assert_eq!(planned, ["globex", "acme", "initech"], "{plan:#}");
    let v = s.ok_json(d, NOW, &["materialize", "--partition", "acme", "--json"]);
    assert_eq!(ids(&v), set(&["per_customer[acme]"]));
    assert_eq!(take_ran(d), ["per_customer[acme]"]);
    let st = s.ok_json(d, NOW, &["status", "--json"]);
    assert_eq!(counts(&st, "per_customer"), (1, 0, 2, 0));

    s.ok(d, NOW, &["partitions", "remove", "customers", "globex"]);
    assert_eq!(s.partition_keys(d, "customers"), ["acme", "initech"]);
    let plan = s.ok_json(d, NOW, &["plan", "--all-partitions", "--json"]);
    assert_eq!(
        ids(&plan),
        set(&["per_customer[acme]", "per_customer[initech]"])
    );
    let plan = s.dry_run_all(d, "--missing");
    assert_eq!(ids(&plan), set(&["per_customer[initech]"]));
    // A removed key is no longer a partition.
    let run = s.dg_at(d, NOW, &["plan", "--partition", "globex"]);
    assert_eq!(run.code, 2, "{run:?}");

    // Keys that would be ambiguous on the command line are rejected, and
    // nothing of the command is added.
    for bad in ["a|b", "a...b", ""] {
        let run = s.dg_at(d, NOW, &["partitions", "add", "customers", "ok_key", bad]);
        assert_fails_with(&run, 2, &["error"]);
    }
    assert_eq!(s.partition_keys(d, "customers"), ["acme", "initech"]);

    // Only dynamic definitions take keys.
    let run = s.dg_at(d, NOW, &["partitions", "add", "regions", "ap"]);
    assert_fails_with(&run, 2, &["regions", "dynamic"]);
    assert_eq!(s.partition_keys(d, "regions"), ["us", "eu"]);
    let run = s.dg_at(d, NOW, &["partitions", "remove", "regions", "us"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(s.partition_keys(d, "regions"), ["us", "eu"]);
    let run = s.dg_at(d, NOW, &["partitions", "add", "customer", "x"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("customers"),
        "a suggestion: {}",
        run.stderr
    );
}

// 8. A failure, then a success ---------------------------------------------------------------

#[test]
fn a_failed_partition_shows_as_failed_until_a_success() {
    let s = &Store::Sqlite;
    let defs = r#"
[partitions.xy]
type = "static"
keys = ["x", "y"]

[assets.fragile]
partitions = "xy"
shell = '''
echo "fragile[$DG_PARTITION_KEY]" >> ran.log
if [ "$DG_PARTITION_KEY" = y ] && [ -e fail.flag ]; then exit 1; fi
printf 'k\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"
'''
"#;
    let dir = s.project(&[("defs/defs.toml", defs), ("fail.flag", "")]);
    let d = dir.path();
    let run = s.dg_at(d, NOW, &["materialize", "--all-partitions"]);
    assert_eq!(run.code, 1, "{run:?}");
    take_ran(d);
    let st = s.ok_json(d, NOW, &["status", "--json"]);
    assert_eq!(counts(&st, "fragile"), (1, 1, 0, 0), "{st:#}");
    assert_eq!(ranges(&st, "fragile", "failed"), ["y"]);
    let human = s.ok(d, NOW, &["status"]);
    assert_contains(&human.stdout, &["1 failed"]);
    // Never materialized: --missing retries it.
    let plan = s.dry_run_all(d, "--missing");
    assert_eq!(ids(&plan), set(&["fragile[y]"]));

    std::fs::remove_file(d.join("fail.flag")).unwrap();
    let v = s.ok_json(
        d,
        NOW,
        &["materialize", "--all-partitions", "--missing", "--json"],
    );
    assert_eq!(ids(&v), set(&["fragile[y]"]));
    assert_eq!(take_ran(d), ["fragile[y]"]);
    let st = s.ok_json(d, NOW, &["status", "--json"]);
    assert_eq!(counts(&st, "fragile"), (2, 0, 0, 0), "{st:#}");
    assert_eq!(ranges(&st, "fragile", "failed"), Vec::<String>::new());

    // A failure after a success is shown as failed again, though the
    // earlier materialization is kept (so --missing leaves it alone)…
    std::fs::write(d.join("fail.flag"), "").unwrap();
    let run = s.dg_at(d, NOW, &["materialize", "--partition", "y"]);
    assert_eq!(run.code, 1, "{run:?}");
    let st = s.ok_json(d, NOW, &["status", "--json"]);
    assert_eq!(counts(&st, "fragile"), (1, 1, 0, 0), "{st:#}");
    assert_eq!(
        std::fs::read_to_string(d.join(".dg/storage/fragile/y.csv")).unwrap(),
        "k\ny\n",
        "the failed attempt did not touch the stored partition"
    );
    let plan = s.dry_run_all(d, "--missing");
    assert_eq!(ids(&plan), BTreeSet::new());
    // …and the next success clears it.
    std::fs::remove_file(d.join("fail.flag")).unwrap();
    s.ok(d, NOW, &["materialize", "--partition", "y"]);
    let st = s.ok_json(d, NOW, &["status", "--json"]);
    assert_eq!(counts(&st, "fragile"), (2, 0, 0, 0), "{st:#}");
    let states = s
        .try_rows(
            d,
            "SELECT partition, status FROM partition_state ORDER BY partition",
        )
        .unwrap();
    assert_eq!(states, [["x", "materialized"], ["y", "materialized"]]);
}
