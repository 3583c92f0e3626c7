//! Pools (`[pools]`, `pool = …`) and retry policies (`retry = {…}`, exit
//! code 75, `{"retry": false}`), through the binary.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{
    assert_fails_with, assert_no_panic, assert_step_error, dg, dg_with_env, json, one_file,
    project, read, spawn_dg, step,
};

/// A project whose `fetch` steps (static partitions `p0`…`p{n-1}`) are in
/// pool `api` and write `start`/`end` lines with nanosecond times to
/// `spans.log`, sleeping in between.
fn pooled(limit: u32, partitions: usize, extra_dg_toml: &str) -> tempfile::TempDir {
    let keys: Vec<String> = (0..partitions).map(|i| format!("\"p{i}\"")).collect();
    let defs = format!(
        r#"[partitions.p]
type = "static"
keys = [{}]

[assets.fetch]
partitions = "p"
pool = "api"
shell = '''
echo "start $(date +%s%N)" >> spans.log
sleep 0.25
echo "end $(date +%s%N)" >> spans.log
echo x > "$DG_OUTPUT"
'''

[assets.free]
partitions = "p"
shell = 'echo x > "$DG_OUTPUT"'
"#,
        keys.join(", ")
    );
    let dg_toml = format!("[pools]\napi = {limit}\n{extra_dg_toml}");
    project(&[("dg.toml", &dg_toml), ("defs/a.toml", &defs)])
}

/// The most `fetch` steps that ran at once, from `spans.log`.
fn max_at_once(dir: &Path) -> (usize, usize) {
    let mut events: Vec<(u128, i32)> = read(dir.join("spans.log"))
        .lines()
        .map(|l| {
            let (what, t) = l.split_once(' ').unwrap();
            let t: u128 = t.trim().parse().unwrap();
            // An end sorts before a start at the same instant.
            (t, if what == "start" { 1 } else { -1 })
        })
        .collect();
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in &events {
        now += d;
        max = max.max(now);
    }
    (max as usize, events.len() / 2)
}

/// Starts `dg materialize` with each argument list at the same time.
fn concurrently(dir: &Path, runs: &[Vec<&str>], env: &[(&str, &str)]) -> Vec<std::process::Output> {
    let children: Vec<_> = runs
        .iter()
        .map(|args| spawn_dg(dir, &[&["materialize"], &args[..]].concat(), env))
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("dg ends"))
        .collect()
}

#[test]
fn a_pool_bounds_the_steps_of_one_run() {
    let dir = pooled(2, 6, "");
    let r = dg(dir.path(), &["materialize", "--all-partitions", "-j", "6"]);
    assert_eq!(r.code, 0, "{r:?}");
    let (max, n) = max_at_once(dir.path());
    assert_eq!(n, 6, "every fetch step ran");
    assert!(max <= 2, "{max} fetch steps ran at once with `api = 2`");
    // With 6 workers the pool is what held them back: they waited, and it
    // said so (one line per pool, not one per step).
    assert_eq!(max, 2, "two at a time");
    assert_eq!(
        r.stderr
            .matches("waits: pool `api` has all 2 of its slots in use")
            .count()
            + r.stdout
                .matches("waits: pool `api` has all 2 of its slots in use")
                .count(),
        1,
        "{r:?}"
    );
    // Steps outside the pool are not held back.
    assert!(r.stdout.contains("12 succeeded"), "{r:?}");
}

fn three_runs_share_a_pool(env: &[(&str, &str)], extra_dg_toml: &str) {
    let dir = pooled(2, 12, extra_dg_toml);
    // Three runs of four partitions each.
    let runs: Vec<Vec<&str>> = ["p0...p3", "p4...p7", "p8...p11"]
        .into_iter()
        .map(|range| vec!["--select", "fetch", "--partition-range", range, "-j", "4"])
        .collect();
    let outs = concurrently(dir.path(), &runs, env);
    for o in &outs {
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (max, n) = max_at_once(dir.path());
    assert_eq!(n, 12, "every fetch step ran once");
    assert!(
        max <= 2,
        "{max} steps of pool `api` (limit 2) ran at once across 3 runs"
    );
    // Every slot was given back: a new run is not held up.
    let r = dg_with_env(
        dir.path(),
        &[
            "materialize",
            "--select",
            "fetch",
            "--partition",
            "p0",
            "--json",
        ],
        env,
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("waits: pool"), "{r:?}");
}

#[test]
fn three_concurrent_runs_never_exceed_the_pool() {
    three_runs_share_a_pool(&[], "");
}

#[test]
fn three_concurrent_runs_never_exceed_the_pool_with_postgres_state() {
    let Some(state_url) = crate::backend::pg_state_url() else {
        return;
    };
    three_runs_share_a_pool(
        &[("DG_STATE_URL", &state_url)],
        "[state]\nurl = \"${env:DG_STATE_URL}\"\n",
    );
}

#[test]
fn a_killed_run_gives_its_pool_slots_back() {
    // A run killed while its steps hold every slot: the next run reclaims
    // them (their holder is gone) instead of waiting forever.
    let dir = pooled(1, 2, "");
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("dg"));
    let mut child = c
        .current_dir(dir.path())
        .args(["materialize", "--select", "fetch", "--partition", "p0"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the step to start, then kill dg (and so its step).
    let log = dir.path().join("spans.log");
    let t0 = std::time::Instant::now();
    while !log.exists() && t0.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let r = dg(
        dir.path(),
        &["materialize", "--select", "fetch", "--partition", "p1"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("✓ fetch[p1]"), "{r:?}");
}

#[test]
fn pool_definition_errors_are_located() {
    let defs = "[assets.a]\npool = \"apj\"\nshell = \"true\"\noutput = false\n\n[assets.b]\npool = \"ok\"\nshell = \"true\"\noutput = false\n";
    let dir = project(&[
        ("dg.toml", "[pools]\napi = 0\ndb = \"two\"\nok = 3\n"),
        ("defs/a.toml", defs),
    ]);
    let r = dg(dir.path(), &["check", "defs"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_no_panic(&r);
    let e = &r.stderr;
    assert!(
        e.contains("pool `api` must allow between 1 and 10000 steps at once"),
        "{e}"
    );
    assert!(e.contains("dg.toml:2:7"), "{e}");
    assert!(
        e.contains("pool `db` in `[pools]` must be an integer"),
        "{e}"
    );
    assert!(e.contains("dg.toml:3:6"), "{e}");
    // With dg.toml valid, the pools the assets name are checked.
    std::fs::write(dir.path().join("dg.toml"), "[pools]\napi = 1\nok = 3\n").unwrap();
    let r = dg(dir.path(), &["check", "defs"]);
    assert_eq!(r.code, 2, "{r:?}");
    let e = &r.stderr;
    assert!(
        e.contains("asset `a` names pool `apj`, which `[pools]` in dg.toml does not declare"),
        "{e}"
    );
    assert!(e.contains("defs/a.toml:2:8"), "{e}");
    assert!(e.contains("did you mean `api`"), "{e}");
    // Without dg.toml there are no pools: the help says how to declare one.
    let dir = one_file("[assets.a]\npool = \"api\"\nshell = \"true\"\noutput = false\n");
    let r = dg(dir.path(), &["check", "defs"]);
    assert_fails_with(&r, 2, &["[pools]\n      api = 2"]);
}

/// A step that fails until its `n`th attempt, exiting with `code`.
fn flaky(policy: &str, code: i32, succeed_on: u32) -> tempfile::TempDir {
    let defs = format!(
        r#"[assets.flaky]
{policy}
shell = '''
echo "$DG_ATTEMPT" >> attempts.log
if [ "$DG_ATTEMPT" -lt {succeed_on} ]; then exit {code}; fi
echo x > "$DG_OUTPUT"
'''
"#
    );
    one_file(&defs)
}

fn attempts(dir: &Path) -> Vec<String> {
    read(dir.join("attempts.log"))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn exit_75_is_retried_once_without_a_policy() {
    let dir = flaky("", 75, 2);
    let r = dg(dir.path(), &["materialize", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(attempts(dir.path()), ["1", "2"]);
    assert_eq!(step(&json(&r), "flaky")["attempts"], 2);
    // Any other failure is final without a policy.
    let dir = flaky("", 3, 2);
    let r = dg(dir.path(), &["materialize"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(attempts(dir.path()), ["1"]);
    // And 75 again on the retry is final too.
    let dir = flaky("", 75, 9);
    let r = dg(dir.path(), &["materialize"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(attempts(dir.path()), ["1", "2"]);
}

#[test]
fn a_retry_policy_retries_with_its_backoff() {
    let dir = flaky(
        r#"retry = { max = 3, delay = "20ms", backoff = "exponential" }"#,
        3,
        4,
    );
    let r = dg(dir.path(), &["materialize", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(attempts(dir.path()), ["1", "2", "3", "4"]);
    assert_eq!(step(&json(&r), "flaky")["attempts"], 4);
    // Dagster's exponential backoff: delay × (2ⁿ − 1) before retry n.
    for (n, wait) in [(1, "20ms"), (2, "60ms"), (3, "140ms")] {
        let line = format!("flaky attempt {n} failed (exited with code 3); retrying in {wait}");
        assert!(r.stderr.contains(&line), "{line}\n{}", r.stderr);
    }
    // Linear: delay × n.
    let dir = flaky(
        r#"retry = { max = 2, delay = "30ms", backoff = "linear" }"#,
        3,
        9,
    );
    let r = dg(dir.path(), &["materialize"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(attempts(dir.path()), ["1", "2", "3"]);
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(out.contains("retrying in 30ms"), "{out}");
    assert!(out.contains("retrying in 60ms"), "{out}");
    assert!(out.contains("flaky failed after 3 attempts"), "{out}");
}

#[test]
fn a_step_that_asks_for_no_retry_is_not_retried() {
    let dir = one_file(
        r#"[assets.bad_request]
retry = { max = 5, delay = "10ms" }
shell = '''
echo "$DG_ATTEMPT" >> attempts.log
echo '{"retry": false}' >> "$DG_MESSAGES"
exit 75
'''
"#,
    );
    let r = dg(dir.path(), &["materialize", "--json"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(attempts(dir.path()), ["1"]);
    let v = json(&r);
    let s = step(&v, "bad_request");
    assert_eq!(s["attempts"], 1);
    assert_step_error(
        s,
        "failed",
        "not retried: the step wrote {\"retry\": false}",
    );
    // The line is not reported as a malformed message.
    let logs = crate::support::files_under(&dir.path().join(".dg/logs"));
    let log = read(dir.path().join(".dg/logs").join(&logs[0]));
    assert!(!log.contains("ignored"), "{log}");
}

#[test]
fn retry_definition_errors_are_located() {
    let dir = one_file(
        r#"[assets.a]
retries = 2
retry = { max = 101, delay = "soon", backoff = "exponentail", jitter = "some" }
shell = "true"
output = false

[assets.b]
retry = { tries = 2 }
shell = "true"
output = false

[assets.c]
retry = 3
shell = "true"
output = false
"#,
    );
    let r = dg(dir.path(), &["check", "defs"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_no_panic(&r);
    let e = &r.stderr;
    for (msg, at) in [
        ("asset `a` has both `retries` and `retry`", "a.toml:3:1"),
        (
            "`max` of `retry` of asset `a` must be between 0 and 100, found 101",
            "a.toml:3:17",
        ),
        (
            "invalid `delay` `soon` in `retry` of asset `a`",
            "a.toml:3:30",
        ),
        (
            "unknown `backoff` `exponentail` in `retry` of asset `a`",
            "a.toml:3:48",
        ),
        (
            "unknown `jitter` `some` in `retry` of asset `a`",
            "a.toml:3:72",
        ),
        (
            "unknown field `tries` in `retry` of asset `b`",
            "a.toml:8:11",
        ),
        ("`retry` of asset `c` must be a table", "a.toml:13:9"),
    ] {
        assert!(e.contains(msg), "{msg}\n{e}");
        assert!(e.contains(at), "{at} for {msg}\n{e}");
    }
    assert!(e.contains("did you mean `exponential`"), "{e}");
}
