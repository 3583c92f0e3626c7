//! `type = "command"`: plug-in I/O managers (docs/plugins.md) driven by the
//! real binary. The normal path uses the example plug-in,
//! `examples/plugins/fs_plugin.py`; the failure paths use
//! `tests/fixtures/plugins/faulty.py`, which stores outputs the same way and
//! misbehaves once as its resource `config` says. It logs every request it
//! gets to `requests.log` and its pid to `plugin.pids` in the project, so the
//! tests can see restarts and leftover processes. Both need `python3`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    HOURLY_DAILY, Run, assert_contains, assert_fails_with, assert_no_panic, items, json,
    materialize_json, process_gone, read, repo, step,
};

/// Every hour of 2022-01-01 is over, and the day too.
const NOW: &str = "2022-01-02T00:00:00Z";

const LETTERS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

fn python3() {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "python3 is needed to run the plug-in tests");
}

/// A TOML string holding `p`.
fn toml_str(p: &Path) -> String {
    toml::Value::String(p.to_string_lossy().into_owned()).to_string()
}

fn project(defs: &str) -> TempDir {
    python3();
    crate::support::project(&[("defs/assets.toml", defs)])
}

/// A project whose `io_manager` is `faulty.py` with `config` (an inline
/// table), `timeout` when given: six static partitions of `up`, and `total`,
/// which reads whichever of them are stored.
fn faulty_project(config: &str, timeout: Option<&str>, up_prefix: &str) -> TempDir {
    let faulty = repo().join("tests/fixtures/plugins/faulty.py");
    let timeout = timeout
        .map(|t| format!("timeout = \"{t}\"\n"))
        .unwrap_or_default();
    project(&format!(
        r#"
[resources.io_manager]
type = "command"
command = ["python3", {faulty}]
{timeout}config = {config}

[partitions.letters]
type = "static"
keys = ["a", "b", "c", "d", "e", "f"]

[assets.up]
partitions = "letters"
shell = "{up_prefix}printf 'k\\n%s\\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""

[assets.total]
deps = ["up"]
shell = "cat \"$DG_INPUT_UP\" > \"$DG_OUTPUT\""

[assets.total.ins.up]
allow_missing_partitions = true
"#,
        faulty = toml_str(&faulty),
    ))
}

/// `dg --now NOW materialize --json ARGS…`.
fn materialize(dir: &Path, args: &[&str]) -> Run {
    materialize_json(dir, NOW, args)
}

/// Ids of the steps with this status.
fn with_status(v: &Value, status: &str) -> Vec<String> {
    items(&v["steps"])
        .iter()
        .filter(|s| s["status"] == status)
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// What `faulty.py` logged: one object per request (`pid`, `type`, `key`,
/// `fault`), plus `hello` and `shutdown`.
fn requests(dir: &Path) -> Vec<Value> {
    read(dir.join("requests.log"))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The pids of every `faulty.py` that started, in order.
fn pids(dir: &Path) -> Vec<i32> {
    read(dir.join("plugin.pids"))
        .lines()
        .map(|l| l.trim().parse().expect("a pid"))
        .collect()
}

/// The request that `faulty.py` misbehaved on (exactly one).
fn faulted(reqs: &[Value]) -> (usize, &Value) {
    let hits: Vec<(usize, &Value)> = reqs
        .iter()
        .enumerate()
        .filter(|(_, r)| r["fault"].is_string())
        .collect();
    assert_eq!(hits.len(), 1, "one faulty request expected: {reqs:#?}");
    hits[0]
}

/// Every plug-in process that started is gone once dg has exited.
fn assert_no_plugin_left(dir: &Path) {
    let until = Instant::now() + Duration::from_secs(3);
    for pid in pids(dir) {
        while !process_gone(pid) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            process_gone(pid),
            "plug-in process {pid} is still running after dg exited"
        );
    }
}

fn run_logs(dir: &Path, run_id: &str) -> PathBuf {
    dir.join(".dg/logs").join(run_id)
}

/// What a run of a project whose plug-in misbehaves once did.
struct OneFault {
    run: Run,
    /// How long the run took.
    took: Duration,
    /// The run's `--json` summary.
    v: Value,
    /// What `faulty.py` logged ([`requests`]).
    reqs: Vec<Value>,
    /// Where the faulted request is in `reqs`.
    at: usize,
    /// The partition of the faulted request.
    key: String,
    /// The id of the step that failed, `up[KEY]`.
    failed: String,
    /// That step's error.
    error: String,
}

/// A [`faulty_project`] with `config` and `timeout`, run with
/// [`run_with_one_fault`].
fn one_fault(config: &str, timeout: Option<&str>) -> (TempDir, OneFault) {
    let dir = faulty_project(config, timeout, "");
    let f = run_with_one_fault(dir.path());
    (dir, f)
}

/// Materializes every partition of `d`, one step at a time, and checks
/// that the run failed and that the only failed step is the one whose
/// request `faulty.py` misbehaved on.
fn run_with_one_fault(d: &Path) -> OneFault {
    let started = Instant::now();
    let run = materialize(d, &["--all-partitions", "--jobs", "1"]);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{run:#?}");
    let v = json(&run);
    let reqs = requests(d);
    let (at, fault) = faulted(&reqs);
    let key = fault["key"].as_str().unwrap().to_string();
    let failed = format!("up[{key}]");
    assert_eq!(with_status(&v, "failed"), [failed.as_str()], "{v:#}");
    let error = step(&v, &failed)["error"].as_str().unwrap().to_string();
    OneFault {
        run,
        took,
        v,
        reqs,
        at,
        key,
        failed,
        error,
    }
}

/// The lines of `total.csv`'s rows: the partitions it read.
fn total_rows(dir: &Path) -> Vec<String> {
    read(dir.join("plugin-data/total.csv"))
        .lines()
        .skip(1)
        .map(String::from)
        .collect()
}

#[test]
fn the_example_plugin_stores_and_loads_partitions() {
    let plugin = repo().join("examples/plugins/fs_plugin.py");
    let dir = project(&format!(
        r#"
[resources.io_manager]
type = "command"
command = ["python3", {plugin}]
format = "csv"
config = {{ root = "plugin-data" }}
{HOURLY_DAILY}
[assets.up]
partitions = "hourly"
shell = "printf 'date\\n%s\\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""

[assets.down]
partitions = "daily"
deps = ["up"]
shell = "cat \"$DG_INPUT_UP\" > \"$DG_OUTPUT\""
"#,
        plugin = toml_str(&plugin),
    ));
    let d = dir.path();
    let run = materialize(d, &["--all-partitions"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let v = json(&run);
    assert_eq!(with_status(&v, "success").len(), 25, "{v:#}");

    // Stored by the plug-in, one file per partition, as the steps wrote them.
    let hours: Vec<String> = (0..24).map(|h| format!("2022-01-01-{h:02}:00")).collect();
    for h in &hours {
        assert_eq!(
            read(d.join(format!("plugin-data/up/{h}.csv"))),
            format!("date\n{h}\n")
        );
    }
    let day = read(d.join("plugin-data/down/2022-01-01.csv"));
    assert_eq!(day, format!("date\n{}\n", hours.join("\n")));
    let names: Vec<String> = std::fs::read_dir(d.join("plugin-data/up"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        24,
        "only the partitions, no temporary files: {names:?}"
    );

    // Its stderr has its own log; dg's scratch folder for the run is gone.
    let run_id = v["run_id"].as_str().unwrap();
    assert!(run_logs(d, run_id).join("plugin-io_manager.log").is_file());
    assert!(!d.join(".dg/runs").join(run_id).exists());

    // Only the daily: the pre-run check asks the plug-in (`exists`), the
    // step loads its 24 hours through it (`load_input`).
    std::fs::remove_file(d.join("plugin-data/down/2022-01-01.csv")).unwrap();
    let run = materialize(d, &["--select", "down", "--all-partitions"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let v2 = json(&run);
    assert_eq!(with_status(&v2, "success"), ["down[2022-01-01]"]);
    assert_eq!(read(d.join("plugin-data/down/2022-01-01.csv")), day);
    assert!(
        run_logs(d, v2["run_id"].as_str().unwrap())
            .join("plugin-io_manager.log")
            .is_file()
    );

    // When the plug-in says an hour is not stored, nothing runs.
    std::fs::remove_file(d.join("plugin-data/up/2022-01-01-05:00.csv")).unwrap();
    let run = materialize(d, &["--select", "down", "--all-partitions"]);
    assert_fails_with(&run, 2, &["`up` [2022-01-01-05:00]"]);
}

#[test]
fn a_plugin_that_exits_fails_only_that_step_and_is_restarted() {
    let (dir, f) = one_fault(r#"{ exit_on = "handle_output", after = 3 }"#, None);
    let d = dir.path();
    assert_eq!(f.reqs[f.at]["type"], "handle_output");
    assert!(
        f.error.contains("plug-in `faulty` (resource `io_manager`) handle_output: it exited (exit status: 3) without replying"),
        "{}", f.error
    );
    assert_contains(&f.run.stderr, &[&format!("✗ {}", f.failed)]);

    // Nothing stored for that partition (only the plug-in's own leftover
    // temporary file); every other step went on.
    assert!(!d.join(format!("plugin-data/up/{}.csv", f.key)).exists());
    assert_eq!(with_status(&f.v, "success").len(), 6, "{:#}", f.v);
    let others: Vec<&str> = LETTERS.iter().copied().filter(|k| *k != f.key).collect();
    assert_eq!(total_rows(d), others);

    // It was started again: later requests went to a second process, which
    // was greeted and shut down properly.
    let ps = pids(d);
    assert_eq!(ps.len(), 2, "{:#?}", f.reqs);
    assert!(
        f.reqs[..=f.at].iter().all(|r| r["pid"] == ps[0]),
        "{:#?}",
        f.reqs
    );
    assert!(
        f.reqs[f.at + 1..].iter().all(|r| r["pid"] == ps[1]),
        "{:#?}",
        f.reqs
    );
    assert_eq!(f.reqs[f.at + 1]["type"], "hello");
    assert!(
        f.reqs[f.at + 1..]
            .iter()
            .any(|r| r["type"] == "handle_output"),
        "{:#?}",
        f.reqs
    );
    assert_eq!(f.reqs.last().unwrap()["type"], "shutdown");
    assert_no_plugin_left(d);

    // dg recorded no materialization for it: `--missing` runs just that one.
    let run = materialize(d, &["--all-partitions", "--missing"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(with_status(&json(&run), "success"), [f.failed]);
    assert_eq!(
        read(d.join(format!("plugin-data/up/{}.csv", f.key))),
        format!("k\n{}\n", f.key)
    );
}

#[test]
fn a_malformed_reply_fails_only_that_step() {
    let (dir, f) = one_fault(r#"{ garbage_on = "handle_output", after = 2 }"#, None);
    let d = dir.path();
    assert!(
        f.error
            .contains("plug-in `faulty` (resource `io_manager`) handle_output: malformed reply")
            && f.error.contains("`this is not JSON`"),
        "{}",
        f.error
    );
    assert_eq!(with_status(&f.v, "success").len(), 6, "{:#}", f.v);
    assert!(!d.join(format!("plugin-data/up/{}.csv", f.key)).exists());
    assert_eq!(total_rows(d).len(), 5);
    // The plug-in was stopped and a fresh one served the rest.
    assert_eq!(pids(d).len(), 2);
    assert_no_plugin_left(d);
}

#[test]
fn a_plugin_that_does_not_reply_in_time_is_killed() {
    let (dir, f) = one_fault(r#"{ hang_on = "handle_output", after = 2 }"#, Some("1s"));
    let d = dir.path();
    assert!(f.took < Duration::from_secs(10), "took {:?}", f.took);
    assert!(
        f.error
            .contains("plug-in `faulty` (resource `io_manager`) handle_output: no reply within 1s"),
        "{}",
        f.error
    );
    let ms = step(&f.v, &f.failed)["duration_ms"].as_u64().unwrap();
    assert!((1000..5000).contains(&ms), "{ms} ms");

    // Later steps succeeded through a second process.
    assert_eq!(with_status(&f.v, "success").len(), 6, "{:#}", f.v);
    assert_eq!(total_rows(d).len(), 5);
    let ps = pids(d);
    assert_eq!(ps.len(), 2);
    // The hung one was killed, not left behind (it would sleep for an hour).
    assert!(
        process_gone(ps[0]),
        "the hung plug-in {} is still running",
        ps[0]
    );
    assert_no_plugin_left(d);
    // Its stderr went to the plug-in log; the step's log says where that is.
    let logs = run_logs(d, f.v["run_id"].as_str().unwrap());
    let plugin_log = read(logs.join("plugin-io_manager.log"));
    assert!(plugin_log.contains("fault=hang"), "{plugin_log}");
    let step_log = read(logs.join(format!("{}.log", f.failed)));
    assert!(step_log.contains("plugin-io_manager.log"), "{step_log}");
}

#[test]
fn a_refusal_fails_the_step_and_the_plugin_keeps_running() {
    let (dir, f) = one_fault(r#"{ refuse_on = "handle_output", after = 2 }"#, None);
    let d = dir.path();
    assert!(
        f.error.contains(&format!(
            "plug-in `faulty` (resource `io_manager`) handle_output: refused by faulty.py: handle_output {}", f.key
        )),
        "{}", f.error
    );
    assert_eq!(with_status(&f.v, "success").len(), 6, "{:#}", f.v);
    assert_eq!(total_rows(d).len(), 5);

    // One process saw everything: 6 + 1 outputs, 6 `exists` for `total`'s
    // partitions (it allows missing ones), 1 load, and the shutdown.
    let ps = pids(d);
    assert_eq!(ps.len(), 1, "{:#?}", f.reqs);
    assert!(f.reqs.iter().all(|r| r["pid"] == ps[0]));
    let count = |t: &str| f.reqs.iter().filter(|r| r["type"] == t).count();
    assert_eq!(count("hello"), 1);
    assert_eq!(count("handle_output"), 7);
    assert_eq!(count("exists"), 6);
    assert_eq!(count("load_input"), 1);
    assert_eq!(count("shutdown"), 1);
    assert!(f.reqs.len() > f.at + 1);
    // Requests are numbered from 1 in the order they are sent.
    let ids: Vec<u64> = f.reqs.iter().filter_map(|r| r["id"].as_u64()).collect();
    assert_eq!(ids, (1..=14).collect::<Vec<u64>>());
    assert_no_plugin_left(d);
}

#[test]
fn a_protocol_mismatch_is_a_clear_error() {
    // `linger`: it would stay up after its input closes; dg must kill it.
    let dir = faulty_project(r#"{ protocol = 2, linger = 60 }"#, None, "");
    let d = dir.path();
    let run = materialize(d, &["--all-partitions", "--jobs", "1"]);
    assert_eq!(run.code, 1, "{run:#?}");
    let v = json(&run);
    assert_eq!(with_status(&v, "failed").len(), 7, "{v:#}");
    for s in v["steps"].as_array().unwrap() {
        let error = s["error"].as_str().unwrap();
        assert!(
            error.contains(
                "plug-in `faulty` (resource `io_manager`) failed to start: protocol version mismatch: it speaks protocol 2, this dg speaks protocol 1"
            ),
            "{error}"
        );
    }
    // Started once, not once per step, and not left running.
    assert_eq!(pids(d).len(), 1);
    assert_eq!(requests(d).len(), 1, "only the handshake");
    assert_no_plugin_left(d);
}

#[test]
fn a_plugin_that_exited_between_requests_is_started_again() {
    // It replies, then exits; the steps take a moment, so it is gone by the
    // next request, which goes to a fresh process: nothing fails.
    let dir = faulty_project(
        r#"{ vanish_on = "handle_output", after = 2 }"#,
        None,
        "sleep 0.1; ",
    );
    let d = dir.path();
    let run = materialize(d, &["--all-partitions", "--jobs", "1"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let v = json(&run);
    assert_eq!(with_status(&v, "success").len(), 7, "{v:#}");
    assert_eq!(total_rows(d), LETTERS);
    assert_eq!(pids(d).len(), 2);
    let logs = run_logs(d, v["run_id"].as_str().unwrap());
    let noted = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| read(e.unwrap().path()))
        .any(|t| t.contains("had exited (exit status: 0); starting it again"));
    assert!(noted, "no step log says the plug-in was started again");
    assert_no_plugin_left(d);
}

#[test]
fn relative_paths_are_relative_to_the_project_root() {
    // The program is `plugins/faulty.py` in the project, and it returns the
    // files it loads as paths relative to its working folder; dg itself runs
    // from elsewhere.
    let dir = project(
        r#"
[resources.io_manager]
type = "command"
command = ["plugins/faulty.py"]

[assets.one]
shell = "printf 'n\\n1\\n' > \"$DG_OUTPUT\""

[assets.two]
deps = ["one"]
shell = "cat \"$DG_INPUT_ONE\" > \"$DG_OUTPUT\""
"#,
    );
    let d = dir.path();
    std::fs::create_dir_all(d.join("plugins")).unwrap();
    let script = d.join("plugins/faulty.py");
    std::fs::copy(repo().join("tests/fixtures/plugins/faulty.py"), &script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let elsewhere = TempDir::new().expect("temp dir");
    let out = assert_cmd::Command::cargo_bin("dg")
        .expect("the dg binary is built")
        .current_dir(elsewhere.path())
        .arg("--project")
        .arg(d)
        .args(["--now", NOW, "materialize", "--json"])
        .env("NO_COLOR", "1")
        .output()
        .expect("dg runs");
    let run = Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_no_panic(&run);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(with_status(&json(&run), "success"), ["one", "two"]);
    assert_eq!(read(d.join("plugin-data/two.csv")), "n\n1\n");
    assert_no_plugin_left(d);
}
