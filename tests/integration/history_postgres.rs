//! The history scenarios against the Postgres state store
//! (`[state] url = "postgres://…"` in `dg.toml`).
//!
//! They need a server: `DG_TEST_POSTGRES_URL` (`. .ci/postgres.sh` starts a
//! throwaway one and exports it). Without it a test prints "skipped: set
//! DG_TEST_POSTGRES_URL" and passes, except under CI (`CI=true`), where it
//! fails. Each test works in its own freshly named schema (`?schema=…`), so
//! the tests are independent of each other and of earlier runs; the schema is
//! dropped at the end.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{Run, assert_no_panic, dg_with_env};

const NOW: &str = "2022-01-03T00:00:00Z";

/// The project of `history.rs`: the seed example plus a sibling of
/// `downstream_asset`, a report reading today and yesterday, and an
/// unrelated unpartitioned asset.
const CHAIN: &str = r#"
[partitions.hourly]
type = "hourly"
start = "2022-01-01-00:00"

[partitions.daily]
type = "daily"
start = "2022-01-01"

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
"#;

fn chain(down_cv: &str) -> String {
    CHAIN.replace("@DOWN_CV@", down_cv)
}

// The server ---------------------------------------------------------------------

/// The test server's URL, or `None` (after saying so) when there is none.
/// Under CI a missing server is a failure, not a skip.
fn server() -> Option<String> {
    match std::env::var("DG_TEST_POSTGRES_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().to_string()),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but DG_TEST_POSTGRES_URL is not set: the Postgres state store tests must run under CI (source .ci/postgres.sh)"
            );
            println!("skipped: set DG_TEST_POSTGRES_URL (`. .ci/postgres.sh` starts a server)");
            None
        }
    }
}

/// A schema of its own on the test server, dropped at the end.
struct Schema {
    server: String,
    name: String,
}

impl Schema {
    fn new() -> Option<Schema> {
        static N: AtomicU32 = AtomicU32::new(0);
        let server = server()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "dg_test_{}_{:08x}_{}",
            std::process::id(),
            nanos,
            N.fetch_add(1, Ordering::Relaxed)
        );
        Some(Schema { server, name })
    }

    /// The state URL: the server with `schema=…`.
    fn url(&self) -> String {
        let sep = if self.server.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.server, self.name)
    }

    fn client(&self) -> postgres::Client {
        let mut c = postgres::Client::connect(&self.server, postgres::NoTls)
            .expect("connect to the test server");
        c.batch_execute(&format!("SET search_path TO \"{}\"", self.name))
            .unwrap();
        c
    }

    fn count(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).unwrap().get(0)
    }

    /// Rows of `materializations` per (asset, partition).
    fn materialization_counts(&self) -> Vec<(String, String, i64)> {
        self.client()
            .query(
                "SELECT asset, partition, COUNT(*) FROM materializations
                 GROUP BY asset, partition ORDER BY asset, partition",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    /// A project holding `defs`, whose `dg.toml` takes the state URL from
    /// `${env:DG_STATE_URL}` (set by the helpers below to this schema).
    fn project(&self, defs: &str) -> TempDir {
        crate::support::project(&[
            ("defs/defs.toml", defs),
            ("dg.toml", "[state]\nurl = \"${env:DG_STATE_URL}\"\n"),
        ])
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
        }
    }
}

/// The password of the test server's URL, if it has one.
fn password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let info = rest.split(['/', '?']).next()?.rsplit_once('@')?.0;
    Some(info.split_once(':')?.1.to_string()).filter(|p| !p.is_empty())
}

// Helpers ------------------------------------------------------------------------

fn dg_at(s: &Schema, dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--now", NOW];
    all.extend(args);
    let url = s.url();
    let run = dg_with_env(dir, &all, &[("DG_STATE_URL", &url)]);
    assert_no_panic(&run);
    if let Some(p) = password(&s.server) {
        assert!(
            !run.stdout.contains(&p) && !run.stderr.contains(&p),
            "the password is shown: {run:?}"
        );
    }
    run
}

fn ok(s: &Schema, dir: &Path, args: &[&str]) -> Run {
    let run = dg_at(s, dir, args);
    assert_eq!(
        run.code, 0,
        "dg {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run
}

fn ok_json(s: &Schema, dir: &Path, args: &[&str]) -> Value {
    let run = ok(s, dir, args);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", run.stdout))
}

fn ids(v: &Value) -> BTreeSet<String> {
    v["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps array: {v:#}"))
        .iter()
        .map(|s| s["id"].as_str().expect("a step id").to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

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

fn day_steps(day: &str) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = (0..24)
        .map(|h| format!("upstream_asset[{day}-{h:02}:00]"))
        .collect();
    for a in ["downstream_asset", "sibling", "daily_report"] {
        s.insert(format!("{a}[{day}]"));
    }
    s
}

fn status_of<'a>(v: &'a Value, asset: &str) -> &'a Value {
    v["assets"]
        .as_array()
        .expect("assets array")
        .iter()
        .find(|a| a["asset"] == asset)
        .unwrap_or_else(|| panic!("no asset `{asset}` in {v:#}"))
}

/// (materialized, failed, missing, stale) of one asset in `dg status --json`.
fn counts(v: &Value, asset: &str) -> (u64, u64, u64, u64) {
    let a = status_of(v, asset);
    let n = |k: &str| a[k].as_u64().unwrap_or_else(|| panic!("`{k}`: {a}"));
    (n("materialized"), n("failed"), n("missing"), n("stale"))
}

fn ranges(v: &Value, asset: &str, which: &str) -> Vec<String> {
    status_of(v, asset)["ranges"][which]
        .as_array()
        .unwrap_or_else(|| panic!("no ranges.{which} for `{asset}` in {v:#}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

fn spawn_dg(s: &Schema, dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dg"))
        .current_dir(dir)
        .arg("--project")
        .arg(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env("DG_STATE_URL", s.url())
        .env_remove("DG_NOW")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dg starts")
}

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

fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            state.starts_with('Z') || state.starts_with('X')
        }
    }
}

// The store itself -----------------------------------------------------------------

#[test]
fn migrations_run_once_and_a_second_open_is_a_no_op() {
    use dg::state::StateStore;
    use dg::state::postgres::{MIGRATIONS, PostgresStore};
    let Some(s) = Schema::new() else { return };
    // Four openers race on a schema that does not exist yet: the advisory
    // lock serialises them.
    let url = s.url();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                PostgresStore::open(&url)
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}"))
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let store = PostgresStore::open(&url).unwrap();
    assert_eq!(store.schema(), s.name);
    assert_eq!(store.version().unwrap() as usize, MIGRATIONS.len());
    assert_eq!(s.count("SELECT COUNT(*) FROM dg_schema_version"), 1);
    store
        .add_dynamic_keys("c", &["b".into(), "a".into(), "b".into()])
        .unwrap();
    drop(store);
    // A second open changes nothing.
    let again = PostgresStore::open(&url).unwrap();
    assert_eq!(again.version().unwrap() as usize, MIGRATIONS.len());
    assert_eq!(s.count("SELECT COUNT(*) FROM dg_schema_version"), 1);
    assert_eq!(again.dynamic_keys("c").unwrap(), ["b", "a"]);
    // Every table is there, in the URL's schema.
    let tables = s.count(&format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{}'
         AND table_name IN ('runs', 'step_attempts', 'materializations', 'partition_state',
                            'dynamic_partitions', 'leases', 'dg_schema_version')",
        s.name
    ));
    assert_eq!(tables, 7);
    // A database from a newer dg is refused.
    s.client()
        .execute("UPDATE dg_schema_version SET version = 999", &[])
        .unwrap();
    let err = PostgresStore::open(&url).err().expect("refused");
    assert!(format!("{err:#}").contains("upgrade dg"), "{err:#}");
}

#[test]
fn leases_exclude_live_owners_and_reclaim_dead_ones() {
    use dg::state::postgres::PostgresStore;
    use dg::state::{Lease, StateStore};
    let Some(s) = Schema::new() else { return };
    let st = PostgresStore::open(&s.url()).unwrap();
    let host = dg::state::hostname();
    let me = Lease {
        run_id: "r1".into(),
        pid: std::process::id(),
        host: host.clone(),
    };
    let other = Lease {
        run_id: "r2".into(),
        pid: std::process::id(),
        host: host.clone(),
    };
    assert_eq!(st.try_lease("a", "1", &me).unwrap(), None);
    assert_eq!(st.try_lease("a", "1", &me).unwrap(), None, "re-entrant");
    assert_eq!(st.try_lease("a", "1", &other).unwrap(), Some(me.clone()));
    st.release("a", "1", "r1").unwrap();
    assert_eq!(st.try_lease("a", "1", &other).unwrap(), None);
    // A dead owner on this host is taken over; one on another host is not.
    s.client()
        .execute("UPDATE leases SET run_id = 'r3', pid = 1073741808", &[])
        .unwrap();
    assert_eq!(st.try_lease("a", "1", &me).unwrap(), None);
    s.client()
        .execute("UPDATE leases SET run_id = 'r4', host = 'elsewhere'", &[])
        .unwrap();
    assert_eq!(
        st.try_lease("a", "1", &me).unwrap().map(|l| l.run_id),
        Some("r4".to_string())
    );
}

#[test]
fn a_bad_url_does_not_show_the_password() {
    // Needs no server: nothing listens on port 1.
    let tmp = TempDir::new().unwrap();
    std::fs::create_dir_all(tmp.path().join("defs")).unwrap();
    std::fs::write(
        tmp.path().join("defs/defs.toml"),
        "[assets.a]\nshell = \"true\"\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("dg.toml"),
        "[state]\nurl = \"postgresql://dg:hunter2@127.0.0.1:1/nowhere?schema=x\"\n",
    )
    .unwrap();
    for args in [
        &["runs"][..],
        &["materialize"][..],
        &["status", "--json"][..],
    ] {
        let run = crate::support::dg(tmp.path(), args);
        assert_no_panic(&run);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(
            !run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"),
            "{run:?}"
        );
        assert!(
            run.stderr
                .contains("postgresql://dg:***@127.0.0.1:1/nowhere"),
            "{run:?}"
        );
    }
}

// The history scenarios ---------------------------------------------------------------

#[test]
fn missing_runs_nothing_after_a_success() {
    let Some(s) = Schema::new() else { return };
    let dir = s.project(&chain("1"));
    let d = dir.path();
    let v = ok_json(
        &s,
        d,
        &["materialize", "--partition", "2022-01-01", "--json"],
    );
    let mut first = day_steps("2022-01-01");
    first.insert("other".into());
    assert_eq!(ids(&v), first);
    assert_eq!(take_ran(d), sorted(&first));

    let run = ok(
        &s,
        d,
        &["materialize", "--partition", "2022-01-01", "--missing"],
    );
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("nothing to do"),
        "{run:?}"
    );
    let v = ok_json(
        &s,
        d,
        &[
            "materialize",
            "--partition",
            "2022-01-01",
            "--missing",
            "--json",
        ],
    );
    assert_eq!(v["steps"], Value::Array(vec![]), "{v:#}");
    assert_eq!(take_ran(d), Vec::<String>::new(), "--missing ran steps");
    let counts = s.materialization_counts();
    assert_eq!(counts.len(), first.len(), "{counts:?}");
    assert!(counts.iter().all(|(_, _, n)| *n == 1), "{counts:?}");
    // Nothing went to a local SQLite database.
    assert!(!d.join(".dg/state.db").exists());
}

#[test]
fn a_code_version_change_makes_that_asset_and_its_readers_stale() {
    let Some(s) = Schema::new() else { return };
    let dir = s.project(&chain("1"));
    let d = dir.path();
    ok(&s, d, &["materialize", "--all-partitions"]);
    assert_eq!(take_ran(d).len(), 48 + 3 * 2 + 1);
    let stale = [
        "materialize",
        "--all-partitions",
        "--stale",
        "--dry-run",
        "--json",
    ];
    assert_eq!(ids(&ok_json(&s, d, &stale)), BTreeSet::new());

    std::fs::write(d.join("defs/defs.toml"), chain("2")).unwrap();
    let expected = set(&[
        "downstream_asset[2022-01-01]",
        "downstream_asset[2022-01-02]",
        "daily_report[2022-01-01]",
        "daily_report[2022-01-02]",
    ]);
    assert_eq!(ids(&ok_json(&s, d, &stale)), expected);
    let st = ok_json(&s, d, &["status", "--json"]);
    assert_eq!(counts(&st, "upstream_asset"), (48, 0, 0, 0));
    assert_eq!(counts(&st, "downstream_asset"), (2, 0, 0, 2));
    assert_eq!(counts(&st, "daily_report"), (2, 0, 0, 2));
    assert_eq!(counts(&st, "sibling"), (2, 0, 0, 0));

    let v = ok_json(
        &s,
        d,
        &["materialize", "--all-partitions", "--stale", "--json"],
    );
    assert_eq!(v["status"], "success", "{v:#}");
    assert_eq!(ids(&v), expected);
    assert_eq!(take_ran(d), sorted(&expected));
    assert_eq!(ids(&ok_json(&s, d, &stale)), BTreeSet::new());
    let cv: Vec<String> = s
        .client()
        .query(
            "SELECT code_version FROM materializations WHERE asset = 'downstream_asset' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cv, ["1", "1", "2", "2"]);
}

#[test]
fn rematerializing_one_hour_makes_exactly_its_readers_stale() {
    let Some(s) = Schema::new() else { return };
    let dir = s.project(&chain("1"));
    let d = dir.path();
    ok(&s, d, &["materialize", "--all-partitions"]);
    take_ran(d);
    ok(
        &s,
        d,
        &[
            "materialize",
            "--select",
            "upstream_asset",
            "--partition",
            "2022-01-01-05:00",
        ],
    );
    assert_eq!(take_ran(d), ["upstream_asset[2022-01-01-05:00]"]);

    let st = ok_json(&s, d, &["status", "--json"]);
    assert_eq!(counts(&st, "upstream_asset"), (48, 0, 0, 0));
    assert_eq!(counts(&st, "downstream_asset"), (2, 0, 0, 1));
    assert_eq!(ranges(&st, "downstream_asset", "stale"), ["2022-01-01"]);
    assert_eq!(counts(&st, "sibling"), (2, 0, 0, 1));
    assert_eq!(counts(&st, "daily_report"), (2, 0, 0, 2));
    assert_eq!(
        ranges(&st, "daily_report", "stale"),
        ["2022-01-01...2022-01-02"]
    );
    assert_eq!(counts(&st, "other"), (1, 0, 0, 0));

    let expected = set(&[
        "downstream_asset[2022-01-01]",
        "sibling[2022-01-01]",
        "daily_report[2022-01-01]",
        "daily_report[2022-01-02]",
    ]);
    let v = ok_json(
        &s,
        d,
        &["materialize", "--all-partitions", "--stale", "--json"],
    );
    assert_eq!(ids(&v), expected);
    assert_eq!(take_ran(d), sorted(&expected));
    let st = ok_json(&s, d, &["status", "--json"]);
    for a in ["downstream_asset", "daily_report", "sibling"] {
        assert_eq!(counts(&st, a), (2, 0, 0, 0), "`{a}`: {st:#}");
    }
}

#[test]
fn concurrent_runs_over_overlapping_partitions_materialize_each_once() {
    let Some(s) = Schema::new() else { return };
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
    let dir = s.project(defs);
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
    // Started together, on a schema that does not exist yet.
    let p1 = spawn_dg(&s, d, &args("a...d"));
    let p2 = spawn_dg(&s, d, &args("c...f"));
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
        for step in v["steps"].as_array().unwrap() {
            assert_eq!(step["status"], "success", "{ctx}");
        }
    }
    assert!(
        !err1.contains("database") && !err2.contains("database"),
        "{ctx}"
    );
    let ran: Vec<String> = take_ran(d)
        .into_iter()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(ran, ["a", "b", "c", "d", "e", "f"], "{ctx}");
    let expected: Vec<(String, String, i64)> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|k| ("slow".to_string(), k.to_string(), 1))
        .collect();
    assert_eq!(s.materialization_counts(), expected, "{ctx}");
    assert_eq!(s.count("SELECT COUNT(*) FROM leases"), 0, "{ctx}");
    let runs = ok_json(&s, d, &["runs", "--json"]);
    let list = runs["runs"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{runs:#}");
    assert!(list.iter().all(|r| r["status"] == "success"), "{runs:#}");
}

#[test]
fn a_killed_run_is_interrupted_and_a_rerun_completes_it() {
    let Some(s) = Schema::new() else { return };
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
    let dir = s.project(defs);
    let d = dir.path();
    std::fs::create_dir_all(d.join("pids")).unwrap();
    std::fs::write(d.join("slow.flag"), "").unwrap();
    let mut child = spawn_dg(
        &s,
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
    let run_id: String = loop {
        let running = pids.join("p2").exists() && pids.join("p3").exists();
        let mut c = s.client();
        let recorded: i64 = c
            .query_one(
                "SELECT COUNT(*) FROM materializations WHERE partition = 'p1'",
                &[],
            )
            .map(|r| r.get(0))
            .unwrap_or(0);
        if running && recorded == 1 {
            break c.query_one("SELECT id FROM runs", &[]).unwrap().get(0);
        }
        if Instant::now() > until || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the steps did not start");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap(); // SIGKILL
    assert_eq!(child.wait().unwrap().code(), None, "killed by a signal");
    // Stop the step shells left behind (their process groups).
    for k in ["p2", "p3", "p4"] {
        if let Ok(text) = std::fs::read_to_string(pids.join(k))
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
        }
    }
    let status: String = s
        .client()
        .query_one("SELECT status FROM runs WHERE id = $1", &[&run_id])
        .unwrap()
        .get(0);
    assert_eq!(status, "running", "nobody has looked yet");
    assert!(
        s.count("SELECT COUNT(*) FROM leases") > 0,
        "the dead run holds leases"
    );

    // The next command finds the dead process and marks the run.
    let runs = ok_json(&s, d, &["runs", "--json"]);
    let list = runs["runs"].as_array().expect("runs array");
    assert_eq!(list.len(), 1, "{runs:#}");
    assert_eq!(list[0]["id"], run_id.as_str());
    assert_eq!(list[0]["status"], "interrupted", "{runs:#}");
    let show = ok_json(&s, d, &["runs", "show", &run_id, "--json"]);
    assert_eq!(show["run"]["status"], "interrupted");
    assert!(show["run"]["ended_at"].is_string(), "{show:#}");
    let mats: Vec<&str> = show["materializations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["partition"].as_str().unwrap())
        .collect();
    assert_eq!(mats, ["p1"]);
    let human = ok(&s, d, &["runs"]);
    assert!(
        human.stdout.contains(&run_id) && human.stdout.contains("interrupted"),
        "{}",
        human.stdout
    );
    let human = ok(&s, d, &["runs", "show", &run_id]);
    assert!(human.stdout.contains("interrupted"), "{}", human.stdout);
    let st = ok_json(&s, d, &["status", "--json"]);
    assert_eq!(counts(&st, "sleepy"), (1, 0, 3, 0), "{st:#}");
    assert_eq!(ranges(&st, "sleepy", "missing"), ["p2...p4"]);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM leases"),
        0,
        "the dead run's leases are dropped"
    );

    // The rerun completes what is missing, without waiting for the dead run.
    std::fs::remove_file(d.join("slow.flag")).unwrap();
    take_ran(d);
    let started = Instant::now();
    let v = ok_json(
        &s,
        d,
        &["materialize", "--all-partitions", "--missing", "--json"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the rerun waited"
    );
    assert_eq!(v["status"], "success");
    assert_eq!(ids(&v), set(&["sleepy[p2]", "sleepy[p3]", "sleepy[p4]"]));
    assert_eq!(take_ran(d), ["sleepy[p2]", "sleepy[p3]", "sleepy[p4]"]);
    let st = ok_json(&s, d, &["status", "--json"]);
    assert_eq!(counts(&st, "sleepy"), (4, 0, 0, 0), "{st:#}");
}

#[test]
fn dynamic_partitions_and_run_history_live_in_postgres() {
    let Some(s) = Schema::new() else { return };
    let defs = r#"
[partitions.customers]
type = "dynamic"

[assets.per_customer]
partitions = "customers"
shell = '''
echo "per_customer[$DG_PARTITION_KEY]" >> ran.log
echo "hello from $DG_PARTITION_KEY"
if [ "$DG_PARTITION_KEY" = initech ]; then echo "initech is broken" >&2; exit 7; fi
printf 'customer\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"
echo '{"metadata": {"source": "unit"}}' >> "$DG_MESSAGES"
'''
"#;
    let dir = s.project(defs);
    let d = dir.path();
    let keys = |name: &str| -> Vec<String> {
        let v = ok_json(&s, d, &["list", "partitions", name, "--json"]);
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(keys("customers"), Vec::<String>::new());
    // Insertion order, not sorted; an existing key is not added twice.
    ok(&s, d, &["partitions", "add", "customers", "globex", "acme"]);
    ok(
        &s,
        d,
        &["partitions", "add", "customers", "initech", "acme"],
    );
    assert_eq!(keys("customers"), ["globex", "acme", "initech"]);
    assert_eq!(
        s.count("SELECT COUNT(*) FROM dynamic_partitions WHERE name = 'customers'"),
        3
    );

    let v = ok_json(&s, d, &["materialize", "--partition", "acme", "--json"]);
    let acme_run = v["run_id"].as_str().unwrap().to_string();
    assert_eq!(ids(&v), set(&["per_customer[acme]"]));
    let failed = dg_at(&s, d, &["materialize", "--partition", "initech", "--json"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    let st = ok_json(&s, d, &["status", "--json"]);
    assert_eq!(counts(&st, "per_customer"), (1, 1, 1, 0), "{st:#}");

    ok(&s, d, &["partitions", "remove", "customers", "globex"]);
    assert_eq!(keys("customers"), ["acme", "initech"]);

    let runs = ok_json(&s, d, &["runs", "--json"]);
    let list = runs["runs"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{runs:#}");
    assert_eq!(list[0]["status"], "failure", "newest first: {runs:#}");
    assert_eq!(list[1]["id"], acme_run.as_str());
    assert_eq!(list[1]["status"], "success");
    let show = ok_json(&s, d, &["runs", "show", &acme_run, "--json"]);
    assert_eq!(show["run"]["status"], "success");
    let m = &show["materializations"][0];
    assert_eq!(m["partition"], "acme", "{show:#}");
    assert_eq!(m["metadata"]["source"], "unit", "{show:#}");
    let logs = ok(&s, d, &["logs", &acme_run]);
    assert!(logs.stdout.contains("hello from acme"), "{logs:?}");
}

#[test]
fn check_results_are_recorded_in_the_postgres_store() {
    let Some(s) = Schema::new() else { return };
    let dir = s.project(
        r#"
[assets.numbers]
shell = "printf 'n\n1\n2\n' > \"$DG_OUTPUT\""

[assets.numbers.checks.no_twos]
sql = "SELECT n FROM numbers WHERE n = 2"
blocking = true

[assets.numbers.checks.small]
shell = 'echo "{\"metadata\": {\"ok\": true}}" >> "$DG_MESSAGES"'

[assets.doubled]
deps = ["numbers"]
sql = "SELECT n * 2 AS n FROM numbers"
"#,
    );
    let run = dg_at(&s, dir.path(), &["materialize", "--json"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["checks"].as_array().unwrap().len(), 2, "{v:#}");
    assert_eq!(
        s.count("SELECT count(*) FROM check_results WHERE NOT passed"),
        1
    );
    let c = ok_json(&s, dir.path(), &["checks", "--json"]);
    let checks = c["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2, "{c:#}");
    assert_eq!(checks[0]["check"], "no_twos");
    assert_eq!(checks[0]["passed"], false);
    assert_eq!(checks[0]["message"], "the query returned 1 row; first: n=2");
    assert_eq!(checks[1]["check"], "small");
    assert_eq!(checks[1]["metadata"]["ok"], true);
    let st = ok_json(&s, dir.path(), &["status", "--json", "--select", "numbers"]);
    assert_eq!(st["assets"][0]["checks"]["failed"], 1, "{st:#}");
    // The newest result is the one shown.
    let run = dg_at(
        &s,
        dir.path(),
        &["materialize", "--json", "--select", "numbers"],
    );
    assert_eq!(run.code, 1);
    assert_eq!(s.count("SELECT count(*) FROM check_results"), 4);
    let c = ok_json(&s, dir.path(), &["checks", "--json"]);
    assert_eq!(c["checks"].as_array().unwrap().len(), 2, "{c:#}");
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(c["checks"][0]["run_id"], v["run_id"]);
}
