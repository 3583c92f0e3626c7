//! Overlapping runs on one project (SQLite and Postgres state stores): each
//! partition is computed once, what a run takes from another matches the
//! inputs it produced, and every run ends with the right status.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{dg_with_env, find, json, one_file, project, read, spawn_dg};

/// `up` (fast) → `down` (slow, identity), over three static partitions;
/// every step appends `ASSET KEY UP-CONTENT` to `computed.log`.
fn two_stage(dg_toml: &str) -> tempfile::TempDir {
    let defs = r#"[partitions.p]
type = "static"
keys = ["k1", "k2", "k3"]

[assets.up]
partitions = "p"
shell = '''
sleep "${UP_SLEEP:-0}"
echo "up $DG_PARTITION_KEY $DG_RUN_ID" >> computed.log
echo "v,$DG_RUN_ID" > "$DG_OUTPUT"
'''

[assets.down]
partitions = "p"
deps = ["up"]
shell = '''
sleep "${DOWN_SLEEP:-0}"
echo "down $DG_PARTITION_KEY $(tail -n 1 "$DG_INPUT_UP")" >> computed.log
cp "$DG_INPUT_UP" "$DG_OUTPUT"
'''
"#;
    project(&[("dg.toml", dg_toml), ("defs/a.toml", defs)])
}

fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    spawn_dg(dir, args, env)
}

fn finish(c: Child) -> (i32, Value, String) {
    let o = c.wait_with_output().expect("dg ends");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let v = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("not JSON ({e}):\n{stdout}\n{stderr}");
    });
    (o.status.code().unwrap_or(-1), v, stderr)
}

/// Waits until `computed.log` has `n` lines starting with `prefix`.
fn wait_for_lines(dir: &Path, prefix: &str, n: usize) {
    let t0 = Instant::now();
    loop {
        let have = std::fs::read_to_string(dir.join("computed.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .count();
        if have >= n {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "only {have} `{prefix}` lines"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (materialized, stale) of an asset in `dg status --json`.
fn status(dir: &Path, env: &[(&str, &str)], asset: &str) -> (u64, u64) {
    let r = dg_with_env(dir, &["status", "--json"], env);
    assert_eq!(r.code, 0, "{r:?}");
    let v = json(&r);
    let a = find(&v["assets"], "asset", asset).clone();
    (
        a["materialized"].as_u64().unwrap(),
        a["stale"].as_u64().unwrap(),
    )
}

/// Run B starts after run A computed `up` and while A computes `down`. B
/// computes `up` again (it was done before B started), so the `down` that
/// A produces from the older `up` is not B's answer: B computes `down`
/// again instead of taking it, and nothing is stale when both are done.
fn overlapping_runs_leave_nothing_stale(env: &[(&str, &str)], dg_toml: &str) {
    let dir = two_stage(dg_toml);
    let d = dir.path();
    let mut env_a: Vec<(&str, &str)> = env.to_vec();
    env_a.push(("DOWN_SLEEP", "1"));
    let a = spawn(d, &["materialize", "--all-partitions", "--json"], &env_a);
    wait_for_lines(d, "up ", 3);
    std::thread::sleep(Duration::from_millis(300));
    let b = spawn(d, &["materialize", "--all-partitions", "--json"], env);
    let (code_a, va, ea) = finish(a);
    let (code_b, vb, eb) = finish(b);
    assert_eq!(code_a, 0, "{va}\n{ea}");
    assert_eq!(code_b, 0, "{vb}\n{eb}");
    let run_b = vb["run_id"].as_str().unwrap();
    // Every `down` B ended with read B's `up`.
    let log = read(d.join("computed.log"));
    for k in ["k1", "k2", "k3"] {
        let last_down = log
            .lines()
            .rfind(|l| l.starts_with(&format!("down {k} ")))
            .unwrap();
        assert!(last_down.ends_with(&format!("v,{run_b}")), "{log}");
    }
    assert_eq!(status(d, env, "up"), (3, 0));
    assert_eq!(status(d, env, "down"), (3, 0), "{log}");
}

#[test]
fn overlapping_runs_leave_nothing_stale_sqlite() {
    overlapping_runs_leave_nothing_stale(&[], "");
}

#[test]
fn overlapping_runs_leave_nothing_stale_postgres() {
    on_postgres_state(overlapping_runs_leave_nothing_stale);
}

/// Runs `scenario` with a state store in a fresh Postgres schema (skipped
/// without a test server): the environment and `dg.toml` it needs.
fn on_postgres_state(scenario: fn(&[(&str, &str)], &str)) {
    let Some(url) = crate::backend::pg_state_url() else {
        return;
    };
    scenario(
        &[("DG_STATE_URL", url.as_str())],
        "[state]\nurl = \"${env:DG_STATE_URL}\"\n",
    );
}

/// Three runs of the same plan started together: each partition is computed
/// exactly once, and all three succeed (two take what the third computed).
fn three_runs_compute_each_partition_once(env: &[(&str, &str)], dg_toml: &str) {
    let dir = two_stage(dg_toml);
    let d = dir.path();
    let args = ["materialize", "--all-partitions", "--json", "-j", "2"];
    // Slow enough that the three runs overlap however their start-up goes.
    let mut env = env.to_vec();
    env.push(("UP_SLEEP", "0.5"));
    let runs: Vec<Child> = (0..3).map(|_| spawn(d, &args, &env)).collect();
    for r in runs {
        let (code, v, e) = finish(r);
        assert_eq!(code, 0, "{v}\n{e}");
        assert_eq!(v["status"], "success", "{v}");
        assert_eq!(v["steps"].as_array().unwrap().len(), 6, "{v}");
    }
    let log = read(d.join("computed.log"));
    let mut lines: Vec<String> = log
        .lines()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        ["down k1", "down k2", "down k3", "up k1", "up k2", "up k3"],
        "{log}"
    );
    assert_eq!(status(d, &env, "down"), (3, 0));
}

#[test]
fn three_runs_compute_each_partition_once_sqlite() {
    three_runs_compute_each_partition_once(&[], "");
}

#[test]
fn three_runs_compute_each_partition_once_postgres() {
    on_postgres_state(three_runs_compute_each_partition_once);
}

/// `dg partitions add/remove` while a run over the same dynamic definition
/// goes on: the run does what it planned, the keys end as the last command
/// left them, and the history stays readable.
#[test]
fn partitions_add_and_remove_race_a_run() {
    let dir = one_file(
        r#"[partitions.files]
type = "dynamic"

[assets.ingest]
partitions = "files"
shell = 'sleep 0.2; echo "$DG_PARTITION_KEY" > "$DG_OUTPUT"'
"#,
    );
    let d = dir.path();
    let keys: Vec<String> = (0..8).map(|i| format!("f{i}")).collect();
    let mut add = vec!["partitions", "add", "files"];
    add.extend(keys.iter().map(String::as_str));
    let r = dg_with_env(d, &add, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let run = spawn(
        d,
        &["materialize", "--all-partitions", "--json", "-j", "2"],
        &[],
    );
    // Keys come and go while the run goes on.
    for i in 8..20 {
        let k = format!("f{i}");
        let r = dg_with_env(d, &["partitions", "add", "files", &k], &[]);
        assert_eq!(r.code, 0, "{r:?}");
        let old = format!("f{}", i - 8);
        let r = dg_with_env(d, &["partitions", "remove", "files", &old], &[]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let (code, v, e) = finish(run);
    assert_eq!(code, 0, "{v}\n{e}");
    // The run did every step it planned (the keys when it planned, removed
    // ones included), all successfully.
    let steps = v["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{v}");
    assert!(steps.iter().all(|s| s["status"] == "success"), "{v}");
    let r = dg_with_env(d, &["list", "partitions", "files", "--json"], &[]);
    let expected: Vec<String> = (12..20).map(|i| format!("f{i}")).collect();
    assert_eq!(json(&r)["keys"], serde_json::json!(expected));
    let r = dg_with_env(d, &["status", "--json"], &[]);
    assert_eq!(r.code, 0, "{r:?}");
}

/// Waits until a run in project `d` has started a step (its run folder
/// exists under `.dg/runs`): from then on it holds the step's lease.
fn wait_for_a_step(d: &std::path::Path) {
    let t0 = Instant::now();
    while !d
        .join(".dg/runs")
        .read_dir()
        .is_ok_and(|mut r| r.next().is_some())
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "run A never started its step"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Computes `up[k1]`.
const UP_K1: &[&str] = &[
    "materialize",
    "--select",
    "up",
    "--partition",
    "k1",
    "--json",
];

/// `env`, with `DG_HOST=host`, `DG_LEASE_TTL=ttl` and `more`.
fn on_host<'a>(
    env: &[(&'a str, &'a str)],
    host: &'a str,
    ttl: &'a str,
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut all = env.to_vec();
    all.extend([("DG_HOST", host), ("DG_LEASE_TTL", ttl)]);
    all.extend(more);
    all
}

/// Run A, on "node-a", takes the lease on `up[k1]` and is killed with
/// `kill -9` while its step runs. Run B, on "node-b", cannot tell whether
/// A's process lives (another host), so the lease keeps B waiting until
/// it expires (`DG_LEASE_TTL`), then B reclaims it and computes `up[k1]`.
fn a_dead_nodes_lease_is_reclaimed_after_it_expires(env: &[(&str, &str)], dg_toml: &str) {
    let dir = two_stage(dg_toml);
    let d = dir.path();
    let env_a = on_host(env, "node-a", "3s", &[("UP_SLEEP", "60")]);
    let mut a = spawn(d, UP_K1, &env_a);
    wait_for_a_step(d);
    std::thread::sleep(Duration::from_millis(200));
    a.kill().unwrap();
    let _ = a.wait();
    let killed_at = Instant::now();
    let env_b = on_host(env, "node-b", "3s", &[]);
    let (code, v, err) = finish(spawn(d, UP_K1, &env_b));
    let waited = killed_at.elapsed();
    assert_eq!(code, 0, "{v}\n{err}");
    assert!(err.contains("waits: run"), "B never waited for A:\n{err}");
    assert!(
        waited >= Duration::from_millis(2500),
        "B took the lease after {waited:?}, before it expired"
    );
    let log = read(d.join("computed.log"));
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.starts_with("up k1 "), "{log}");
}

#[test]
fn a_dead_nodes_lease_is_reclaimed_after_it_expires_sqlite() {
    a_dead_nodes_lease_is_reclaimed_after_it_expires(&[], "");
}

#[test]
fn a_dead_nodes_lease_is_reclaimed_after_it_expires_postgres() {
    on_postgres_state(a_dead_nodes_lease_is_reclaimed_after_it_expires);
}

/// A live holder on another host outlasts its lease's lifetime: its
/// heartbeat keeps the lease, so run B waits for run A and takes its result
/// instead of computing the partition a second time.
fn a_live_holders_heartbeat_keeps_its_lease(env: &[(&str, &str)], dg_toml: &str) {
    let dir = two_stage(dg_toml);
    let d = dir.path();
    let env_a = on_host(env, "node-a", "1s", &[("UP_SLEEP", "4")]);
    let a = spawn(d, UP_K1, &env_a);
    wait_for_a_step(d);
    let env_b = on_host(env, "node-b", "1s", &[]);
    let b = spawn(d, UP_K1, &env_b);
    let (code_a, va, ea) = finish(a);
    let (code_b, vb, eb) = finish(b);
    assert_eq!(code_a, 0, "{va}\n{ea}");
    assert_eq!(code_b, 0, "{vb}\n{eb}");
    let log = read(d.join("computed.log"));
    assert_eq!(log.lines().count(), 1, "computed twice:\n{log}\n{eb}");
}

#[test]
fn a_live_holders_heartbeat_keeps_its_lease_sqlite() {
    a_live_holders_heartbeat_keeps_its_lease(&[], "");
}

#[test]
fn a_live_holders_heartbeat_keeps_its_lease_postgres() {
    on_postgres_state(a_live_holders_heartbeat_keeps_its_lease);
}
