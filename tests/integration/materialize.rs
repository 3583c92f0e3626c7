//! `dg materialize`: the engine end to end on small projects written inline
//! (and on the bundled example). Every run pins *now* with `--now`, so the
//! partitions are reproducible; steps are `sh` scripts, so what a step saw is
//! checked through what it stored, through files it left in the project, or
//! through the JSON summary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    HOURLY_DAILY, Run, assert_contains, assert_fails_with, assert_step_error, dg_now,
    example_project, files_under, one_file, process_gone, project, read, spawn_dg, step, texts,
};

/// Every hour of 2022-01-01 is over, and the day too.
const NOW: &str = "2022-01-02T00:00:00Z";

/// `dg --now NOW materialize ARGS…`.
fn materialize(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["materialize"];
    all.extend(args);
    dg_now(dir, NOW, &all)
}

/// The `--json` summary on stdout, with the contract's fields checked.
fn summary(run: &Run) -> Value {
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", run.stdout));
    assert!(v["run_id"].is_string(), "run_id: {v}");
    assert!(
        v["status"] == "success" || v["status"] == "failure",
        "status: {v}"
    );
    for s in v["steps"].as_array().expect("steps is an array") {
        for field in [
            "id",
            "asset",
            "partition",
            "status",
            "attempts",
            "duration_ms",
            "error",
        ] {
            assert!(s.get(field).is_some(), "step lacks `{field}`: {s}");
        }
        assert!(s["id"].is_string() && s["asset"].is_string(), "{s}");
        assert!(s["attempts"].is_u64() && s["duration_ms"].is_u64(), "{s}");
        assert!(
            ["success", "failed", "skipped"].contains(&s["status"].as_str().unwrap_or("")),
            "{s}"
        );
    }
    v
}

/// File names in one folder, sorted (empty when the folder does not exist).
fn names_in(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn hours_of_2022_01_01() -> Vec<String> {
    (0..24).map(|h| format!("2022-01-01-{h:02}:00")).collect()
}

/// Waits up to `within` for `pid` to be gone.
fn wait_gone(pid: i32, within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        if process_gone(pid) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_pid(path: &Path) -> i32 {
    read(path)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// 1. The seed example ----------------------------------------------------

#[test]
fn example_day_materializes_24_hours_into_one_day() {
    let dir = example_project();
    let run = materialize(dir.path(), &["--partition", "2022-01-01", "--json"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);

    let hours = hours_of_2022_01_01();
    let mut expected = String::from("date\n");
    for h in &hours {
        expected.push_str(h);
        expected.push('\n');
    }
    let storage = dir.path().join(".dg/storage");
    assert_eq!(
        read(storage.join("downstream_asset/2022-01-01.csv")),
        expected
    );
    let mut stored: Vec<String> = hours.iter().map(|h| format!("{h}.csv")).collect();
    stored.sort();
    assert_eq!(names_in(&storage.join("upstream_asset")), stored);
    assert_eq!(
        read(storage.join("upstream_asset/2022-01-01-07:00.csv")),
        "date\n2022-01-01-07:00\n"
    );
    // The report, through the second manager (jsonl under .dg/archive).
    assert_eq!(
        read(dir.path().join(".dg/archive/daily_report/2022-01-01.jsonl")),
        "{\"day\":\"2022-01-01\",\"rows\":24,\"rows_yesterday\":0}\n"
    );

    let v = summary(&run);
    assert_eq!(v["status"], "success");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 26, "{v:#}");
    for s in steps {
        assert_eq!(s["status"], "success", "{s}");
        assert_eq!(s["attempts"], 1, "{s}");
        assert_eq!(s["error"], Value::Null, "{s}");
    }
    for h in &hours {
        let s = step(&v, &format!("upstream_asset[{h}]"));
        assert_eq!(s["asset"], "upstream_asset");
        assert_eq!(s["partition"], h.as_str());
    }
    let d = step(&v, "downstream_asset[2022-01-01]");
    assert_eq!(d["asset"], "downstream_asset");
    assert_eq!(d["partition"], "2022-01-01");
    step(&v, "daily_report[2022-01-01]");
    // A step comes after the steps it reads.
    let pos = |id: &str| steps.iter().position(|s| s["id"] == id).unwrap();
    let down = pos("downstream_asset[2022-01-01]");
    for h in &hours {
        assert!(pos(&format!("upstream_asset[{h}]")) < down);
    }
    assert!(down < pos("daily_report[2022-01-01]"));
    // The run's scratch folders are gone.
    assert!(files_under(&dir.path().join(".dg/runs")).is_empty());
}

#[test]
fn example_human_output_summarises_the_run() {
    let dir = example_project();
    let run = materialize(
        dir.path(),
        &["--select", "+downstream_asset", "--partition", "2022-01-01"],
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("25 succeeded, 0 failed, 0 skipped"), "{all}");
    assert!(all.contains("downstream_asset[2022-01-01]"), "{all}");
    assert!(
        !dir.path().join(".dg/archive").exists(),
        "daily_report was not selected"
    );
}

// 2. Failure isolation -----------------------------------------------------

#[test]
fn a_failed_partition_stores_nothing_and_skips_its_dependents_only() {
    let assets = r#"
[assets.upstream_asset]
partitions = "hourly"
shell = '''
case "$DG_PARTITION_KEY" in
  *05:00)
    printf 'date\n' > "$DG_OUTPUT"
    echo "half written for $DG_PARTITION_KEY, giving up"
    exit 1 ;;
esac
printf 'date\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"
'''

[assets.downstream_asset]
partitions = "daily"
deps = ["upstream_asset"]
shell = 'cat "$DG_INPUT_UPSTREAM_ASSET" > "$DG_OUTPUT"'

[assets.independent]
shell = '''printf 'x\n1\n' > "$DG_OUTPUT"'''
"#;
    let dir = project(&[
        ("defs/partitions.toml", HOURLY_DAILY),
        ("defs/assets.toml", assets),
    ]);
    let run = materialize(
        dir.path(),
        &["--partition", "2022-01-01", "--json", "--jobs", "2"],
    );
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    let v = summary(&run);
    assert_eq!(v["status"], "failure");
    assert_eq!(v["steps"].as_array().unwrap().len(), 24 + 1 + 1);

    let failed = step(&v, "upstream_asset[2022-01-01-05:00]");
    assert_step_error(failed, "failed", "exited with code 1");
    assert_eq!(failed["attempts"], 1);
    let down = step(&v, "downstream_asset[2022-01-01]");
    assert_eq!(down["status"], "skipped", "{down}");
    assert_eq!(down["attempts"], 0, "{down}");
    assert!(down["error"].as_str().unwrap().contains("05:00"), "{down}");
    assert_eq!(step(&v, "independent")["status"], "success");
    for h in hours_of_2022_01_01() {
        if !h.ends_with("05:00") {
            assert_eq!(
                step(&v, &format!("upstream_asset[{h}]"))["status"],
                "success"
            );
        }
    }

    // Storage: the 23 good hours, no trace of the failed one (not even a
    // temporary file), no daily partition.
    let storage = dir.path().join(".dg/storage");
    let mut expected: Vec<String> = hours_of_2022_01_01()
        .into_iter()
        .filter(|h| !h.ends_with("05:00"))
        .map(|h| format!("{h}.csv"))
        .collect();
    expected.sort();
    assert_eq!(names_in(&storage.join("upstream_asset")), expected);
    assert!(!storage.join("upstream_asset/2022-01-01-05:00.csv").exists());
    assert!(!storage.join("downstream_asset").exists());
    for f in files_under(&storage) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.starts_with('.') && !name.contains("tmp"),
            "leftover {f:?}"
        );
    }
    assert_eq!(read(storage.join("independent.csv")), "x\n1\n");
    assert!(files_under(&dir.path().join(".dg/runs")).is_empty());

    // The failed step's log tail is on stderr.
    assert!(
        run.stderr
            .contains("half written for 2022-01-01-05:00, giving up"),
        "stderr:\n{}",
        run.stderr
    );
}

// 3. Retries -------------------------------------------------------------

#[test]
fn a_step_that_fails_once_succeeds_on_its_retry() {
    let assets = r#"
[assets.flaky]
retries = 1
shell = '''
echo "attempt $DG_ATTEMPT" >> attempts.txt
if [ "$DG_ATTEMPT" = 1 ]; then echo "first attempt fails"; exit 3; fi
printf 'attempt\n%s\n' "$DG_ATTEMPT" > "$DG_OUTPUT"
'''

[assets.hopeless]
retries = 2
shell = '''echo "hopeless $DG_ATTEMPT" >> hopeless.txt; exit 4'''
"#;
    let dir = project(&[("defs/assets.toml", assets)]);
    let run = materialize(dir.path(), &["--select", "flaky", "--json"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v = summary(&run);
    assert_eq!(v["status"], "success");
    let s = step(&v, "flaky");
    assert_eq!(s["status"], "success");
    assert_eq!(s["attempts"], 2);
    assert_eq!(s["partition"], Value::Null);
    assert_eq!(s["error"], Value::Null);
    assert_eq!(
        read(dir.path().join("attempts.txt")),
        "attempt 1\nattempt 2\n"
    );
    assert_eq!(
        read(dir.path().join(".dg/storage/flaky.csv")),
        "attempt\n2\n"
    );

    // Retries run out: attempts = retries + 1, then the step fails.
    let run = materialize(dir.path(), &["--select", "hopeless", "--json"]);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    let v = summary(&run);
    let s = step(&v, "hopeless");
    assert_eq!(s["status"], "failed");
    assert_eq!(s["attempts"], 3);
    assert!(
        s["error"].as_str().unwrap().contains("exited with code 4"),
        "{s}"
    );
    assert_eq!(
        read(dir.path().join("hopeless.txt")),
        "hopeless 1\nhopeless 2\nhopeless 3\n"
    );
}

// 4. Timeout ---------------------------------------------------------------

#[test]
fn a_timed_out_step_is_stopped_with_everything_it_started() {
    let assets = r#"
[assets.slow]
timeout = "1s"
shell = '''
printf 'a\n' > "$DG_OUTPUT"
sleep 30 &
echo $! > grandchild.pid
wait
printf '1\n' >> "$DG_OUTPUT"
'''
"#;
    let dir = project(&[("defs/assets.toml", assets)]);
    let started = Instant::now();
    let run = materialize(dir.path(), &["--json"]);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    assert!(took < Duration::from_secs(10), "the run took {took:?}");
    let v = summary(&run);
    let s = step(&v, "slow");
    assert_eq!(s["status"], "failed");
    assert!(s["error"].as_str().unwrap().contains("timed out"), "{s}");
    let pid = read_pid(&dir.path().join("grandchild.pid"));
    assert!(
        wait_gone(pid, Duration::from_secs(3)),
        "the step's grandchild `sleep 30` (pid {pid}) survived the timeout"
    );
    assert!(!dir.path().join(".dg/storage/slow.csv").exists());
    assert!(files_under(&dir.path().join(".dg/storage")).is_empty());
}

// 5. SIGINT ------------------------------------------------------------------

#[test]
fn sigint_stops_the_run_and_its_steps() {
    let defs = r#"
[partitions.six]
type = "static"
keys = ["p1", "p2", "p3", "p4", "p5", "p6"]

[assets.sleepy]
partitions = "six"
shell = '''
printf 'k\n' > "$DG_OUTPUT"
sleep 5 &
echo $! > "pids/$DG_PARTITION_KEY"
wait
printf '%s\n' "$DG_PARTITION_KEY" >> "$DG_OUTPUT"
'''
"#;
    let dir = project(&[("defs/assets.toml", defs), ("pids/.keep", "")]);
    let args = [
        "--now",
        NOW,
        "materialize",
        "--all-partitions",
        "--jobs",
        "2",
    ];
    let mut child = spawn_dg(dir.path(), &args, &[]);

    // Wait until two steps run (their logs exist and their sleeps started).
    let pids_dir = dir.path().join("pids");
    let logs = dir.path().join(".dg/logs");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let pidfiles: Vec<String> = names_in(&pids_dir)
            .into_iter()
            .filter(|n| n != ".keep")
            .collect();
        let logfiles = files_under(&logs).len();
        if pidfiles.len() >= 2 && logfiles >= 2 {
            break;
        }
        if Instant::now() > until || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the steps did not start (pidfiles {pidfiles:?}, {logfiles} logs)");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // Let the pidfiles be written out entirely.
    std::thread::sleep(Duration::from_millis(100));

    let sent = Instant::now();
    send_sigint(&child);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if sent.elapsed() > Duration::from_secs(8) {
            let _ = child.kill();
            panic!("dg did not exit within 8 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        sent.elapsed()
    );
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("interrupted"), "{all}");
    assert!(!all.contains("panicked"), "{all}");

    // No step finished, none stored anything, nothing half-written is left.
    let storage = dir.path().join(".dg/storage");
    assert!(
        files_under(&storage).is_empty(),
        "storage holds {:?}",
        files_under(&storage)
    );
    assert!(files_under(&dir.path().join(".dg/runs")).is_empty());
    // The sleeps the steps started are gone.
    let pidfiles: Vec<String> = names_in(&pids_dir)
        .into_iter()
        .filter(|n| n != ".keep")
        .collect();
    assert!(pidfiles.len() >= 2 && pidfiles.len() <= 6, "{pidfiles:?}");
    for f in pidfiles {
        let pid = read_pid(&pids_dir.join(&f));
        assert!(
            wait_gone(pid, Duration::from_secs(3)),
            "`sleep` of step {f} (pid {pid}) survived the interrupt"
        );
    }
}

fn send_sigint(child: &std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
}

#[test]
fn a_second_sigint_kills_steps_that_ignore_sigterm() {
    let defs = r#"
[assets.stubborn]
shell = '''
trap '' TERM
echo $$ > shell.pid
sleep 20 &
echo $! > sleep.pid
while :; do sleep 0.1; done
'''
"#;
    let dir = project(&[("defs/assets.toml", defs)]);
    let mut child = spawn_dg(dir.path(), &["--now", NOW, "materialize"], &[]);
    let until = Instant::now() + Duration::from_secs(10);
    while !dir.path().join("sleep.pid").exists() || read(dir.path().join("sleep.pid")).is_empty() {
        if Instant::now() > until || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the step did not start");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let shell = read_pid(&dir.path().join("shell.pid"));
    let sleep = read_pid(&dir.path().join("sleep.pid"));

    send_sigint(&child);
    std::thread::sleep(Duration::from_millis(300));
    send_sigint(&child);
    let sent = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if sent.elapsed() > Duration::from_secs(8) {
            let _ = child.kill();
            panic!("dg did not exit after a second SIGINT");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.code() == Some(130), "{status:?}\n{stderr}");
    assert!(stderr.contains("interrupted twice"), "{stderr}");
    // Nothing of the step outlives dg, although it ignores SIGTERM.
    for (what, pid) in [("sh", shell), ("sleep", sleep)] {
        let gone = wait_gone(pid, Duration::from_secs(1));
        if !gone {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(shell),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        assert!(gone, "the step's `{what}` (pid {pid}) outlived dg");
    }
    assert!(files_under(&dir.path().join(".dg/storage")).is_empty());
}

// 6. Per-input manager -------------------------------------------------------

#[test]
fn an_input_manager_loads_what_its_resource_holds() {
    let defs = r#"
[resources.io_manager]
type = "fs"
format = "csv"

[resources.mirror]
type = "fs"
base_dir = "mirror"
format = "csv"

[partitions.region]
type = "static"
keys = ["us", "eu"]

[assets.upstream]
partitions = "region"
shell = '''printf 'source,region\nupstream,%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"'''

[assets.from_mirror]
partitions = "region"
shell = 'cat "$DG_INPUT_UPSTREAM" > "$DG_OUTPUT"'

[assets.from_mirror.ins.upstream]
input_manager = "mirror"

[assets.from_store]
partitions = "region"
deps = ["upstream"]
shell = 'cat "$DG_INPUT_UPSTREAM" > "$DG_OUTPUT"'
"#;
    let dir = project(&[
        ("defs/defs.toml", defs),
        ("mirror/upstream/us.csv", "source,region\nmirror,us\n"),
        ("mirror/upstream/eu.csv", "source,region\nmirror,eu\n"),
    ]);
    let run = materialize(dir.path(), &["--all-partitions", "--json"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let storage = dir.path().join(".dg/storage");
    for r in ["us", "eu"] {
        assert_eq!(
            read(storage.join(format!("upstream/{r}.csv"))),
            format!("source,region\nupstream,{r}\n")
        );
        assert_eq!(
            read(storage.join(format!("from_mirror/{r}.csv"))),
            format!("source,region\nmirror,{r}\n"),
            "the input with `input_manager = \"mirror\"` must load the mirror's file"
        );
        assert_eq!(
            read(storage.join(format!("from_store/{r}.csv"))),
            format!("source,region\nupstream,{r}\n")
        );
    }
    // The mirror was read, not written.
    assert_eq!(
        files_under(&dir.path().join("mirror")),
        [
            PathBuf::from("upstream/eu.csv"),
            PathBuf::from("upstream/us.csv")
        ]
    );

    // The pre-run check asks the input's manager: without the mirror's
    // file, nothing runs.
    std::fs::remove_file(dir.path().join("mirror/upstream/eu.csv")).unwrap();
    let run = materialize(
        dir.path(),
        &["--select", "from_mirror", "--partition", "eu"],
    );
    assert_fails_with(&run, 2, &["upstream", "eu"]);
}

// 7. Multi-partition load ------------------------------------------------------

#[test]
fn a_day_reads_its_24_hours_with_a_partitions_list() {
    let assets = r#"
[assets.upstream_asset]
partitions = "hourly"
shell = '''printf 'hour\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"'''

[assets.downstream_asset]
partitions = "daily"
deps = ["upstream_asset"]
shell = '''
cp "$DG_INPUT_UPSTREAM_ASSET_PARTITIONS" partitions.json
cp "$DG_INPUT_UPSTREAM_ASSET" combined.csv
printf 'key,last_row,lines\n' > "$DG_OUTPUT"
grep -o '"key":"[^"]*","path":"[^"]*"' "$DG_INPUT_UPSTREAM_ASSET_PARTITIONS" |
while IFS= read -r kv; do
  key=$(printf '%s' "$kv" | sed 's/^"key":"\([^"]*\)".*$/\1/')
  path=$(printf '%s' "$kv" | sed 's/^.*"path":"\([^"]*\)"$/\1/')
  printf '%s,%s,%s\n' "$key" "$(tail -n 1 "$path")" "$(wc -l < "$path" | tr -d ' ')" >> "$DG_OUTPUT"
done
'''
"#;
    let dir = project(&[
        ("defs/partitions.toml", HOURLY_DAILY),
        ("defs/assets.toml", assets),
    ]);
    let run = materialize(dir.path(), &["--partition", "2022-01-01"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);

    let hours = hours_of_2022_01_01();
    let list: Value = serde_json::from_str(&read(dir.path().join("partitions.json"))).unwrap();
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 24);
    for (item, h) in list.iter().zip(&hours) {
        let obj = item.as_object().unwrap();
        assert_eq!(obj.len(), 2, "{item}");
        assert_eq!(item["key"], h.as_str());
        assert!(item["path"].as_str().unwrap().ends_with(".csv"), "{item}");
    }
    // Each listed file held that hour's row (checked by the step while the
    // files existed).
    let mut expected = String::from("key,last_row,lines\n");
    for h in &hours {
        expected.push_str(&format!("{h},{h},2\n"));
    }
    assert_eq!(
        read(
            dir.path()
                .join(".dg/storage/downstream_asset/2022-01-01.csv")
        ),
        expected
    );
    // The combined input: one header, the rows in partition order.
    let mut combined = String::from("hour\n");
    for h in &hours {
        combined.push_str(&format!("{h}\n"));
    }
    assert_eq!(read(dir.path().join("combined.csv")), combined);
}

// 8. allow_missing_partitions ----------------------------------------------------

#[test]
fn allow_missing_partitions_loads_only_what_exists() {
    let assets = r#"
[assets.upstream_asset]
partitions = "hourly"
shell = '''printf 'hour\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"'''

[assets.lenient]
partitions = "daily"
shell = '''cat "$DG_INPUT_UP" > "$DG_OUTPUT"; echo ran >> lenient.txt'''

[assets.lenient.ins.up]
asset = "upstream_asset"
allow_missing_partitions = true

[assets.strict]
partitions = "daily"
deps = ["upstream_asset"]
shell = '''cat "$DG_INPUT_UPSTREAM_ASSET" > "$DG_OUTPUT"; echo ran >> strict.txt'''
"#;
    let dir = project(&[
        ("defs/partitions.toml", HOURLY_DAILY),
        ("defs/assets.toml", assets),
    ]);
    let run = materialize(
        dir.path(),
        &[
            "--select",
            "upstream_asset",
            "--partition-range",
            "2022-01-01-03:00...2022-01-01-05:00",
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(summary(&run)["steps"].as_array().unwrap().len(), 3);

    let run = materialize(
        dir.path(),
        &["--select", "lenient", "--partition", "2022-01-01", "--json"],
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v = summary(&run);
    assert_eq!(v["steps"].as_array().unwrap().len(), 1);
    assert_eq!(step(&v, "lenient[2022-01-01]")["status"], "success");
    assert_eq!(
        read(dir.path().join(".dg/storage/lenient/2022-01-01.csv")),
        "hour\n2022-01-01-03:00\n2022-01-01-04:00\n2022-01-01-05:00\n"
    );

    // Without allow_missing_partitions: exit 2 before anything runs.
    let logs_before = names_in(&dir.path().join(".dg/logs"));
    let run = materialize(
        dir.path(),
        &["--select", "strict", "--partition", "2022-01-01"],
    );
    assert_fails_with(&run, 2, &["upstream_asset", "2022-01-01-00:00"]);
    assert!(
        run.stderr.contains("(21)"),
        "21 hours are missing:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("2022-01-01-03:00"),
        "03:00 is stored:\n{}",
        run.stderr
    );
    assert_contains(&run.stderr, &["--select '+strict'"]);
    assert!(!dir.path().join("strict.txt").exists());
    assert!(!dir.path().join(".dg/storage/strict").exists());
    assert_eq!(names_in(&dir.path().join(".dg/logs")), logs_before);
}

#[test]
fn allow_missing_partitions_runs_with_an_empty_input_when_none_exist() {
    let assets = r#"
[assets.upstream_asset]
partitions = "hourly"
shell = '''printf 'hour\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"'''

[assets.lenient]
partitions = "daily"
shell = '''
test -e "$DG_INPUT_UP" || { echo "no input file"; exit 9; }
lines=$(wc -l < "$DG_INPUT_UP" | tr -d ' ')
cp "$DG_INPUT_UP_PARTITIONS" parts.json
printf 'lines\n%s\n' "$lines" > "$DG_OUTPUT"
'''

[assets.lenient.ins.up]
asset = "upstream_asset"
allow_missing_partitions = true
"#;
    let dir = project(&[
        ("defs/partitions.toml", HOURLY_DAILY),
        ("defs/assets.toml", assets),
    ]);
    let run = materialize(
        dir.path(),
        &["--select", "lenient", "--partition", "2022-01-01"],
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(
        read(dir.path().join(".dg/storage/lenient/2022-01-01.csv")),
        "lines\n0\n"
    );
    assert_eq!(read(dir.path().join("parts.json")).trim(), "[]");
}

#[test]
fn allow_missing_partitions_runs_after_an_upstream_failure_in_the_same_run() {
    let assets = r#"
[assets.upstream_asset]
partitions = "hourly"
shell = '''
case "$DG_PARTITION_KEY" in *1?:00) exit 1 ;; esac
printf 'hour\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"
'''

[assets.lenient]
partitions = "daily"
shell = '''wc -l < "$DG_INPUT_UP" | tr -d ' ' > n.txt; printf 'n\n1\n' > "$DG_OUTPUT"'''

[assets.lenient.ins.up]
asset = "upstream_asset"
allow_missing_partitions = true
"#;
    let dir = project(&[
        ("defs/partitions.toml", HOURLY_DAILY),
        ("defs/assets.toml", assets),
    ]);
    let run = materialize(dir.path(), &["--partition", "2022-01-01", "--json"]);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    let v = summary(&run);
    assert_eq!(step(&v, "lenient[2022-01-01]")["status"], "success");
    assert_eq!(
        step(&v, "upstream_asset[2022-01-01-13:00]")["status"],
        "failed"
    );
    // 14 hours succeeded (00-09, 20-23): a header and 14 rows.
    assert_eq!(read(dir.path().join("n.txt")).trim(), "15");
}

// 9. Parquet round trip -----------------------------------------------------------

#[test]
fn parquet_storage_round_trips_to_csv_and_jsonl() {
    let defs = r#"
[resources.io_manager]
type = "fs"
format = "parquet"

[resources.csv_out]
type = "fs"
base_dir = "out"
format = "csv"

[resources.jsonl_out]
type = "fs"
base_dir = "out"
format = "jsonl"

[assets.table]
format = "csv"
shell = '''printf 'id,name,score\n1,ann,2.5\n2,bob,3\n3,cy,\n' > "$DG_OUTPUT"'''

[assets.as_csv]
deps = ["table"]
io_manager = "csv_out"
shell = 'cat "$DG_INPUT_TABLE" > "$DG_OUTPUT"'

[assets.as_jsonl]
deps = ["table"]
io_manager = "jsonl_out"
shell = 'cat "$DG_INPUT_TABLE" > "$DG_OUTPUT"'
"#;
    let dir = project(&[("defs/defs.toml", defs)]);
    let run = materialize(dir.path(), &["--json"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);

    let stored = dir.path().join(".dg/storage/table.parquet");
    let bytes = std::fs::read(&stored).unwrap_or_else(|e| panic!("{}: {e}", stored.display()));
    assert!(bytes.len() > 8);
    assert_eq!(&bytes[..4], b"PAR1", "Parquet magic at the start");
    assert_eq!(
        &bytes[bytes.len() - 4..],
        b"PAR1",
        "Parquet magic at the end"
    );
    assert_eq!(names_in(&dir.path().join(".dg/storage")), ["table.parquet"]);

    let csv = read(dir.path().join("out/as_csv.csv"));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert_eq!(lines[0], "id,name,score");
    assert!(lines[1].starts_with("1,ann,2.5"), "{csv}");
    assert!(lines[2].starts_with("2,bob,3"), "{csv}");
    assert!(lines[3].starts_with("3,cy,"), "{csv}");

    let jsonl = read(dir.path().join("out/as_jsonl.jsonl"));
    let rows: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(rows.len(), 3, "{jsonl}");
    assert_eq!(rows[0]["id"], 1);
    assert_eq!(rows[0]["name"], "ann");
    // `3` would print as `3.0` as a float, so `score` stays text: the
    // values come back exactly as the step wrote them.
    assert_eq!(rows[0]["score"], "2.5");
    assert_eq!(rows[1]["name"], "bob");
    assert_eq!(rows[1]["score"], "3");
    assert_eq!(rows[2]["id"], 3);
    assert!(rows[2]["score"].is_null(), "{jsonl}");
}

// 10. Path safety ------------------------------------------------------------------

#[test]
fn hostile_partition_keys_stay_under_the_storage_folder_and_round_trip() {
    let defs = r#"
[partitions.weird]
type = "static"
keys = ["../../x", "a/b", "..", ".", ".hidden", "%41", "A", "back\\slash", "sp ace"]

[assets.up]
partitions = "weird"
shell = '''printf 'key\n"%s"\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"'''

[assets.down]
partitions = "weird"
deps = ["up"]
shell = 'cat "$DG_INPUT_UP" > "$DG_OUTPUT"'
"#;
    let keys = [
        "../../x",
        "a/b",
        "..",
        ".",
        ".hidden",
        "%41",
        "A",
        "back\\slash",
        "sp ace",
    ];
    let outer = TempDir::new().unwrap();
    let root = outer.path().join("p");
    std::fs::create_dir_all(root.join("defs")).unwrap();
    std::fs::write(root.join("defs/defs.toml"), defs).unwrap();
    let run = materialize(&root, &["--all-partitions", "--json"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v = summary(&run);
    assert_eq!(v["steps"].as_array().unwrap().len(), 2 * keys.len());

    // Nothing was written outside the project, and in the project only the
    // definitions, the logs and one file per partition directly under
    // `.dg/storage/<asset>/`.
    assert_eq!(names_in(outer.path()), ["p"]);
    let mut stored = Vec::new();
    for f in files_under(&root) {
        let parts: Vec<String> = f
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        match parts.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["defs", "defs.toml"] => {}
            [".dg", "logs", _run, _log] => {}
            [".dg", "storage", asset, name] if asset == "up" || asset == "down" => {
                assert!(name.ends_with(".csv"), "{f:?}");
                assert!(!name.starts_with('.'), "{f:?}");
                stored.push(f.clone());
            }
            // The state database and the like, but no storage elsewhere.
            [".dg", top, ..] if top != "storage" && top != "runs" => {}
            _ => panic!("unexpected file {f:?}"),
        }
    }
    assert_eq!(stored.len(), 2 * keys.len(), "{stored:?}");
    // Distinct keys got distinct files (`%41` and `A` included).
    assert_eq!(names_in(&root.join(".dg/storage/up")).len(), keys.len());

    // Each downstream partition read its own upstream partition.
    for k in keys {
        let id = format!("down[{k}]");
        assert_eq!(step(&v, &id)["status"], "success");
    }
    let mut contents: Vec<String> = names_in(&root.join(".dg/storage/down"))
        .iter()
        .map(|n| read(root.join(".dg/storage/down").join(n)))
        .collect();
    contents.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| format!("key\n\"{k}\"\n")).collect();
    expected.sort();
    assert_eq!(contents, expected);
    for n in names_in(&root.join(".dg/storage/up")) {
        assert_eq!(
            read(root.join(".dg/storage/up").join(&n)),
            read(root.join(".dg/storage/down").join(&n)),
            "{n}"
        );
    }
}

// 11. Missing upstream partition -------------------------------------------------------

#[test]
fn missing_upstream_partitions_stop_the_run_before_anything_runs() {
    let dir = example_project();
    let run = materialize(
        dir.path(),
        &["--select", "downstream_asset", "--partition", "2022-01-01"],
    );
    assert_eq!(run.code, 2, "stderr:\n{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert_contains(
        &run.stderr,
        &[
            "nothing ran",
            "upstream_asset",
            "2022-01-01-00:00",
            "(24)",
            "--select '+downstream_asset'",
        ],
    );
    assert!(!dir.path().join(".dg/logs").exists());
    assert!(files_under(&dir.path().join(".dg/storage")).is_empty());

    // The same with --json: nothing on stdout but the error on stderr.
    let run = materialize(
        dir.path(),
        &[
            "--select",
            "downstream_asset",
            "--partition",
            "2022-01-01",
            "--json",
        ],
    );
    assert_fails_with(&run, 2, &["upstream_asset"]);
    assert!(!dir.path().join(".dg/logs").exists());

    // The hint names the asset that reads the missing partitions, not
    // whichever selected asset comes last.
    let run = materialize(
        dir.path(),
        &[
            "--select",
            "downstream_asset or daily_report",
            "--partition",
            "2022-01-01",
        ],
    );
    assert_fails_with(&run, 2, &["--select '+downstream_asset'"]);
    assert!(!dir.path().join(".dg/logs").exists());

    // With the hint followed, the run succeeds.
    let run = materialize(
        dir.path(),
        &["--select", "+downstream_asset", "--partition", "2022-01-01"],
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
}

// 12. The compute contract -----------------------------------------------------------

#[test]
fn output_false_steps_store_nothing_and_missing_outputs_fail() {
    let assets = r#"
[assets.side_effect]
output = false
shell = '''test -z "$DG_OUTPUT" || echo "DG_OUTPUT=$DG_OUTPUT" > output_var.txt; echo done > side.txt'''

[assets.forgetful]
shell = 'echo "I forgot to write my output"'

[assets.after_forgetful]
deps = ["forgetful"]
shell = 'cat "$DG_INPUT_FORGETFUL" > "$DG_OUTPUT"'
"#;
    let dir = project(&[("defs/assets.toml", assets)]);
    let run = materialize(dir.path(), &["--select", "side_effect", "--json"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v = summary(&run);
    assert_eq!(step(&v, "side_effect")["status"], "success");
    assert_eq!(read(dir.path().join("side.txt")), "done\n");
    assert!(files_under(&dir.path().join(".dg/storage")).is_empty());

    let run = materialize(
        dir.path(),
        &["--select", "forgetful or after_forgetful", "--json"],
    );
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    let v = summary(&run);
    let s = step(&v, "forgetful");
    assert_eq!(s["status"], "failed");
    let e = s["error"].as_str().unwrap();
    assert!(
        e.contains("DG_OUTPUT") && e.contains("output = false"),
        "{e}"
    );
    assert_eq!(step(&v, "after_forgetful")["status"], "skipped");
    assert_contains(&run.stderr, &["I forgot to write my output"]);
    assert!(files_under(&dir.path().join(".dg/storage")).is_empty());
}

#[test]
fn dg_messages_metadata_and_junk_do_not_break_the_step() {
    let assets = r#"
[assets.chatty]
shell = '''
printf '{"metadata": {"rows": 2, "source": "test"}}\n' >> "$DG_MESSAGES"
printf 'this is not json\n' >> "$DG_MESSAGES"
printf '["an", "array"]\n' >> "$DG_MESSAGES"
printf '{"other": 1}\n' >> "$DG_MESSAGES"
printf '\n' >> "$DG_MESSAGES"
printf 'a\n1\n2\n' > "$DG_OUTPUT"
'''
"#;
    let dir = project(&[("defs/assets.toml", assets)]);
    let run = materialize(dir.path(), &["--json"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v = summary(&run);
    assert_eq!(step(&v, "chatty")["status"], "success");
    assert_eq!(read(dir.path().join(".dg/storage/chatty.csv")), "a\n1\n2\n");
    // The bad lines are reported in the step's log, not fatal.
    let log = read(
        dir.path()
            .join(".dg/logs")
            .join(v["run_id"].as_str().unwrap())
            .join("chatty.log"),
    );
    assert!(log.contains("DG_MESSAGES line 2"), "{log}");
    assert!(log.contains("DG_MESSAGES line 3"), "{log}");
    assert!(log.contains("DG_MESSAGES line 4"), "{log}");
    assert!(!log.contains("DG_MESSAGES line 1:"), "{log}");
}

#[test]
fn commands_run_from_the_project_root_and_load_false_loads_nothing() {
    let defs = r#"
[assets.via_command]
command = ["scripts/emit.sh", "hello world"]

[assets.ordering_only]
shell = '''env | grep '^DG_INPUT' > inputs.txt; printf 'a\n1\n' > "$DG_OUTPUT"'''

[assets.ordering_only.ins.via_command]
load = false
"#;
    let dir = project(&[
        ("defs/defs.toml", defs),
        (
            "scripts/emit.sh",
            "#!/bin/sh\nprintf 'arg,cwd\\n%s,%s\\n' \"$1\" \"$(pwd -P)\" > \"$DG_OUTPUT\"\n",
        ),
    ]);
    use std::os::unix::fs::PermissionsExt;
    let script = dir.path().join("scripts/emit.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Started from another folder, with --project.
    let elsewhere = TempDir::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dg"))
        .current_dir(elsewhere.path())
        .arg("--project")
        .arg(dir.path())
        .args(["--now", NOW, "materialize", "--json"])
        .env("NO_COLOR", "1")
        .env_remove("DG_NOW")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let root = dir.path().canonicalize().unwrap();
    assert_eq!(
        read(dir.path().join(".dg/storage/via_command.csv")),
        format!("arg,cwd\nhello world,{}\n", root.display())
    );
    // `load = false`: ordered after its upstream, but no DG_INPUT_*.
    assert_eq!(read(dir.path().join("inputs.txt")), "");
    assert!(names_in(elsewhere.path()).is_empty());
    let v: Value = serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let ids: Vec<&str> = texts(&v["steps"], "id");
    assert_eq!(ids, ["via_command", "ordering_only"]);
}

#[test]
fn dry_run_runs_nothing() {
    let dir = example_project();
    let run = materialize(dir.path(), &["--partition", "2022-01-01", "--dry-run"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_contains(&run.stdout, &["downstream_asset"]);
    assert_ran_nothing(dir.path());

    let run = materialize(
        dir.path(),
        &["--partition", "2022-01-01", "--dry-run", "--json"],
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["steps"].as_array().unwrap().len(), 26);
    assert_ran_nothing(dir.path());
}

/// No step ran: no logs, no stored data, no scratch folders; at most the
/// state database exists.
fn assert_ran_nothing(root: &Path) {
    for f in files_under(&root.join(".dg")) {
        let name = f.to_string_lossy();
        assert!(name.starts_with("state.db"), "a dry run created .dg/{name}");
    }
}

#[test]
fn an_empty_plan_is_nothing_to_do() {
    let assets = r#"
[assets.external]
source = true

[assets.user]
deps = ["external"]
shell = 'cat "$DG_INPUT_EXTERNAL" > "$DG_OUTPUT"'
"#;
    let dir = project(&[("defs/assets.toml", assets)]);
    let run = materialize(dir.path(), &["--select", "external"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("nothing to do"),
        "{run:?}"
    );
    let run = materialize(dir.path(), &["--select", "external", "--json"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["steps"], serde_json::json!([]));
    assert!(!dir.path().join(".dg/logs").exists());

    // A source asset's data must already be there; `+user` would not help.
    let run = materialize(dir.path(), &["--select", "user"]);
    assert_fails_with(&run, 2, &["`external`", "source asset"]);
    assert!(!run.stderr.contains("'+user'"), "{}", run.stderr);
    assert!(!dir.path().join(".dg/logs").exists());
    std::fs::create_dir_all(dir.path().join(".dg/storage")).unwrap();
    std::fs::write(dir.path().join(".dg/storage/external.csv"), "e\n1\n").unwrap();
    let run = materialize(dir.path(), &["--select", "user"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(read(dir.path().join(".dg/storage/user.csv")), "e\n1\n");
}

#[test]
fn the_step_environment_and_context_follow_the_contract() {
    let defs = r#"
[partitions.daily]
type = "daily"
start = "2022-01-01"

[partitions.ny]
type = "daily"
start = "2022-01-01"
timezone = "America/New_York"

[assets.up]
partitions = "daily"
shell = '''printf 'v\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"'''

[assets.probe]
partitions = "daily"
deps = ["up"]
metadata = { owner = "data-eng", sla_hours = 6 }
env = { EXTRA = "extra value" }
shell = '''
cp "$DG_CONTEXT" context.json
{
  echo "DG_RUN_ID=$DG_RUN_ID"
  echo "DG_ASSET_KEY=$DG_ASSET_KEY"
  echo "DG_ATTEMPT=$DG_ATTEMPT"
  echo "DG_NOW=$DG_NOW"
  echo "DG_PARTITION_KEY=$DG_PARTITION_KEY"
  echo "DG_PARTITION_START=$DG_PARTITION_START"
  echo "DG_PARTITION_END=$DG_PARTITION_END"
  echo "EXTRA=$EXTRA"
  echo "PWD=$(pwd -P)"
} > env.txt
cat "$DG_INPUT_UP" > "$DG_OUTPUT"
'''

[assets."ny/probe"]
partitions = "ny"
shell = '''
printf 'start,end\n%s,%s\n' "$DG_PARTITION_START" "$DG_PARTITION_END" > "$DG_OUTPUT"
'''
"#;
    let dir = project(&[("defs/defs.toml", defs)]);
    // New York's 2022-01-01 ends at 05:00 UTC on the 2nd.
    let run = dg_now(
        dir.path(),
        "2022-01-03T00:00:00Z",
        &["materialize", "--partition", "2022-01-01", "--json"],
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v = summary(&run);
    let run_id = v["run_id"].as_str().unwrap().to_string();

    let env: Vec<String> = read(dir.path().join("env.txt"))
        .lines()
        .map(str::to_string)
        .collect();
    let root = dir.path().canonicalize().unwrap();
    assert_eq!(
        env,
        [
            format!("DG_RUN_ID={run_id}"),
            "DG_ASSET_KEY=probe".to_string(),
            "DG_ATTEMPT=1".to_string(),
            "DG_NOW=2022-01-03T00:00:00+00:00".to_string(),
            "DG_PARTITION_KEY=2022-01-01".to_string(),
            "DG_PARTITION_START=2022-01-01T00:00:00+00:00".to_string(),
            "DG_PARTITION_END=2022-01-02T00:00:00+00:00".to_string(),
            "EXTRA=extra value".to_string(),
            format!("PWD={}", root.display()),
        ]
    );

    let ctx: Value = serde_json::from_str(&read(dir.path().join("context.json"))).unwrap();
    assert_eq!(ctx["partition_key"], "2022-01-01");
    assert_eq!(ctx["asset_key"], "probe");
    assert_eq!(ctx["run_id"], run_id.as_str());
    assert_eq!(ctx["metadata"]["owner"], "data-eng");
    assert_eq!(ctx["metadata"]["sla_hours"], 6);
    assert_eq!(ctx["partition_start"], "2022-01-01T00:00:00+00:00");
    assert_eq!(ctx["partition_end"], "2022-01-02T00:00:00+00:00");
    let up = &ctx["inputs"]["up"];
    assert!(up.is_object(), "{ctx:#}");
    assert!(up["path"].is_string(), "{ctx:#}");
    assert_eq!(up["partitions"][0]["key"], "2022-01-01", "{ctx:#}");
    assert_eq!(up["partitions"].as_array().unwrap().len(), 1, "{ctx:#}");

    // A time zone with an offset: the window's ends carry it.
    assert_eq!(
        read(dir.path().join(".dg/storage/ny/probe/2022-01-01.csv")),
        "start,end\n2022-01-01T00:00:00-05:00,2022-01-02T00:00:00-05:00\n"
    );
}

#[test]
fn multi_partitions_get_a_variable_per_dimension_and_a_folder_per_first_key() {
    let defs = r#"
[partitions.daily]
type = "daily"
start = "2022-01-01"

[partitions.date_region]
type = "multi"
dimensions = { region = { type = "static", keys = ["us", "eu"] }, date = "daily" }

[assets.grid]
partitions = "date_region"
shell = '''
printf 'key,date,region,start\n%s,%s,%s,%s\n' "$DG_PARTITION_KEY" "$DG_PARTITION_DATE" "$DG_PARTITION_REGION" "$DG_PARTITION_START" > "$DG_OUTPUT"
'''
"#;
    let dir = project(&[("defs/defs.toml", defs)]);
    let run = materialize(dir.path(), &["--all-partitions", "--json"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v = summary(&run);
    assert_eq!(v["steps"].as_array().unwrap().len(), 2);
    assert_eq!(
        step(&v, "grid[2022-01-01|us]")["partition"],
        "2022-01-01|us"
    );
    let storage = dir.path().join(".dg/storage");
    assert_eq!(
        files_under(&storage),
        [
            PathBuf::from("grid/2022-01-01/eu.csv"),
            PathBuf::from("grid/2022-01-01/us.csv"),
        ]
    );
    for r in ["us", "eu"] {
        assert_eq!(
            read(storage.join(format!("grid/2022-01-01/{r}.csv"))),
            format!(
                "key,date,region,start\n2022-01-01|{r},2022-01-01,{r},2022-01-01T00:00:00+00:00\n"
            )
        );
    }
}

#[test]
fn metadata_strings_resolve_the_environment_before_reaching_the_step() {
    let dir = one_file(
        r#"
[resources.io_manager]
type = "fs"
format = "file"

[assets.meta]
tags = { team = "${env:DG_TEST_OWNER}" }
metadata = { owner = "${env:DG_TEST_OWNER}", nested = { url = "${env:DG_TEST_UNSET_URL:-https://example.org}" }, n = 6, literal = "$${env:KEEP}" }
shell = "cp \"$DG_CONTEXT\" \"$DG_OUTPUT\""
"#,
    );
    // Unset without a default: nothing runs, and the error names the variable.
    let run = materialize(dir.path(), &[]);
    assert_fails_with(&run, 2, &["DG_TEST_OWNER", "`metadata`"]);

    let mut cmd = assert_cmd::Command::cargo_bin("dg").unwrap();
    let out = cmd
        .current_dir(dir.path())
        .args([
            "--project",
            dir.path().to_str().unwrap(),
            "--now",
            NOW,
            "materialize",
        ])
        .env("NO_COLOR", "1")
        .env("DG_TEST_OWNER", "data-eng")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = std::fs::read_dir(dir.path().join(".dg/storage"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("meta"))
        })
        .expect("the stored context");
    let ctx: Value = serde_json::from_str(&read(stored)).unwrap();
    assert_eq!(ctx["metadata"]["owner"], "data-eng");
    assert_eq!(ctx["metadata"]["nested"]["url"], "https://example.org");
    assert_eq!(ctx["metadata"]["n"], 6);
    assert_eq!(ctx["metadata"]["literal"], "${env:KEEP}");
    assert_eq!(ctx["tags"]["team"], "data-eng");
}
