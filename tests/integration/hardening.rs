//! Hardening (issue 20): each test is a defect found by trying dg as a
//! hostile user and a flaky machine would, checked through the real binary.

use std::path::Path;

use tempfile::TempDir;

use crate::support::{assert_contains, one_file, texts};
use crate::{Run, assert_no_panic, dg};

/// `dg check defs`, which must fail with exit 2, located, without panicking.
fn check_fails(dir: &Path) -> Run {
    let run = dg(dir, &["check", "defs"]);
    assert_no_panic(&run);
    assert_eq!(run.code, 2, "stderr:\n{}", run.stderr);
    run
}

fn assert_has(run: &Run, needles: &[&str]) {
    for n in needles {
        assert!(run.stderr.contains(n), "{n:?} in:\n{}", run.stderr);
    }
}

#[test]
fn huge_timeouts_are_located_errors_not_panics() {
    for t in ["300000000000 years", "9223372036854775807s", "366days"] {
        let dir = one_file(&format!(
            "[assets.a]\nshell = \"echo x > \\\"$DG_OUTPUT\\\"\"\ntimeout = \"{t}\"\n"
        ));
        let run = check_fails(dir.path());
        assert_has(
            &run,
            &[
                "must be more than zero and at most 365 days",
                "--> defs/a.toml:3:11",
            ],
        );
        let run = dg(dir.path(), &["materialize"]);
        assert_no_panic(&run);
        assert_eq!(run.code, 2, "stderr:\n{}", run.stderr);
    }
    // The bound itself is valid, and runs.
    let dir =
        one_file("[assets.a]\nshell = \"echo x > \\\"$DG_OUTPUT\\\"\"\ntimeout = \"365 days\"\n");
    let run = dg(dir.path(), &["materialize"]);
    assert_no_panic(&run);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
}

#[test]
fn offsets_beyond_the_bounds_are_located_errors() {
    let dir = one_file(
        r#"[partitions.d]
type = "daily"
start = "2024-01-01"
end_offset = 9223372036854775807

[partitions.h]
type = "hourly"
start = "2024-01-01-00:00"
end_offset = -10001

[partitions.ok]
type = "daily"
start = "2024-01-01"
end_offset = 10000

[assets.a]
partitions = "ok"
shell = "true"

[assets.b]
partitions = "ok"
deps = ["a"]
ins.a.mapping = { type = "time_window", start_offset = -9223372036854775808, end_offset = 0 }
shell = "true"
"#,
    );
    let run = check_fails(dir.path());
    assert_has(
        &run,
        &[
            "`end_offset` of partitions `d` must be between -10000 and 10000 windows, found 9223372036854775807",
            "--> defs/a.toml:4:14",
            "`end_offset` of partitions `h` must be between -10000 and 10000 windows, found -10001",
            "--> defs/a.toml:9:14",
            "`start_offset` of",
            "found -9223372036854775808",
            "--> defs/a.toml:23:56",
            "keeps the arithmetic on window numbers from overflowing",
            "definitions are invalid: 3 errors",
        ],
    );
}

#[test]
fn offsets_at_the_bounds_work() {
    let dir = one_file(
        r#"[partitions.ok]
type = "daily"
start = "2024-01-01"
end_offset = 10000

[partitions.back]
type = "daily"
start = "2024-01-01"
end_offset = -10000

[assets.a]
partitions = "ok"
shell = "true"

[assets.b]
partitions = "ok"
deps = ["a"]
ins.a.mapping = { type = "time_window", start_offset = -10000, end_offset = 10000, allow_nonexistent = true }
shell = "true"
"#,
    );
    let now = ["--now", "2024-01-02T00:00:00Z"];
    let run = dg(
        dir.path(),
        &[&["list", "partitions", "ok", "--json"][..], &now].concat(),
    );
    assert_no_panic(&run);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["keys"].as_array().unwrap().len(), 10_001);
    let run = dg(
        dir.path(),
        &[&["list", "partitions", "back", "--json"][..], &now].concat(),
    );
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["keys"], serde_json::json!([]));
    let run = dg(
        dir.path(),
        &[
            &["plan", "--select", "b", "--partition", "2024-01-01"][..],
            &now,
        ]
        .concat(),
    );
    assert_no_panic(&run);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
}

/// Overwrites the root page of `table` in a SQLite file with garbage.
fn corrupt_table(db: &Path, table: &str) {
    let root: i64 = {
        let c = rusqlite::Connection::open(db).unwrap();
        c.query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = ?1",
            [table],
            |r| r.get(0),
        )
        .unwrap()
    };
    let page: i64 = 4096;
    let mut bytes = std::fs::read(db).unwrap();
    assert_eq!(i64::from(u16::from_be_bytes([bytes[16], bytes[17]])), page);
    let at = ((root - 1) * page) as usize;
    bytes[at..at + page as usize].fill(0xa5);
    std::fs::write(db, bytes).unwrap();
}

#[test]
fn a_run_whose_history_cannot_be_written_fails() {
    let dir = one_file(
        r#"[partitions.s]
type = "static"
keys = ["a", "b", "c", "d"]

[assets.x]
partitions = "s"
shell = "printf 'v\n1\n' > \"$DG_OUTPUT\""
"#,
    );
    let run = dg(dir.path(), &["materialize", "--all-partitions"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let db = dir.path().join(".dg/state.db");
    assert!(!dir.path().join(".dg/state.db-wal").exists());
    corrupt_table(&db, "step_attempts");

    let run = dg(dir.path(), &["materialize", "--all-partitions", "--json"]);
    assert_no_panic(&run);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    assert_has(
        &run,
        &[
            "recording the run history failed",
            "database disk image is malformed",
            "the run history could not be written",
            "so the run is a failure",
        ],
    );
    assert_contains(&run.stderr, &["✗ 4 succeeded"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["status"], "failure");
    let id = v["run_id"].as_str().unwrap();

    let runs = dg(dir.path(), &["runs"]);
    assert_no_panic(&runs);
    let line = runs.stdout.lines().find(|l| l.starts_with(id)).unwrap();
    assert!(!line.contains("success"), "{}", runs.stdout);
    assert!(line.contains("failure"), "{}", runs.stdout);
}

/// A step that ignores SIGTERM, leaves a background `sleep` and writes
/// both pids.
const STUBBORN: &str = r#"[assets.a]
shell = "trap '' TERM; sleep 60 & echo $! > sleeper.pid; echo $$ > step.pid; wait; wait"
"#;

/// Starts `dg materialize` in `dir` and waits until the step wrote its pids.
/// The caller waits for the child.
#[allow(clippy::zombie_processes)]
fn start_stubborn(dir: &Path) -> (std::process::Child, Vec<i32>) {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("dg"))
        .current_dir(dir)
        .args(["--project", ".", "materialize"])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
        };
        if let (Some(a), Some(b)) = (read("step.pid"), read("sleeper.pid")) {
            return (child, vec![a, b]);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the step never started");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether a process runs (a zombie does not).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits up to `secs` seconds for every process in `pids` to be gone;
/// kills the survivors (so a failing test leaves nothing behind).
fn all_gone_within(pids: &[i32], secs: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if !pids.iter().any(|&p| running(p)) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for &p in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    false
}

#[test]
fn steps_die_when_dg_is_killed() {
    let dir = one_file(STUBBORN);
    let (mut child, pids) = start_stubborn(dir.path());
    assert!(pids.iter().all(|&p| running(p)));
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    assert!(
        all_gone_within(&pids, 5),
        "step processes {pids:?} outlived dg's kill -9"
    );
}

/// Sends `signals` to dg (20 ms apart) once its step runs; returns dg's
/// exit code and stderr, and whether the step's processes were gone.
fn signal_dg(signals: &[nix::sys::signal::Signal]) -> (Option<i32>, String, bool) {
    use std::io::Read;
    let dir = one_file(STUBBORN);
    let (mut child, pids) = start_stubborn(dir.path());
    for &s in signals {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), s).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    let gone = all_gone_within(&pids, 5);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err, gone)
}

#[test]
fn a_hangup_kills_the_steps_and_exits_129() {
    let (code, err, gone) = signal_dg(&[nix::sys::signal::Signal::SIGHUP]);
    assert_eq!(code, Some(129), "stderr:\n{err}");
    assert!(err.contains("dg: hangup: running steps killed"), "{err}");
    assert!(gone, "steps outlived SIGHUP");
}

#[test]
fn a_second_interrupt_kills_the_steps_and_exits_130() {
    use nix::sys::signal::Signal::SIGINT;
    let (code, err, gone) = signal_dg(&[SIGINT, SIGINT]);
    assert_eq!(code, Some(130), "stderr:\n{err}");
    assert!(
        err.contains("dg: interrupted twice: running steps killed"),
        "{err}"
    );
    assert!(gone, "steps outlived a second Ctrl-C");
}

/// Runs `dg materialize` in `dir`, failing the test if it takes more than `secs`.
fn materialize_within(dir: &Path, secs: u64) -> (Run, std::time::Duration) {
    let t0 = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let d = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(dg(&d, &["materialize"]));
    });
    let run = rx
        .recv_timeout(std::time::Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("dg materialize did not end within {secs} s"));
    (run, t0.elapsed())
}

#[test]
fn a_fifo_at_dg_output_is_refused_not_waited_for() {
    let dir = one_file("[assets.a]\nshell = 'mkfifo \"$DG_OUTPUT\"'\ntimeout = \"5s\"\n");
    let (run, took) = materialize_within(dir.path(), 30);
    assert_no_panic(&run);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    assert_has(
        &run,
        &[
            "$DG_OUTPUT is a FIFO (named pipe), not a regular file: the step must write its output to a file",
        ],
    );
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_fifo_at_dg_messages_is_ignored() {
    let dir = one_file(
        "[assets.a]\nshell = 'rm \"$DG_MESSAGES\" && mkfifo \"$DG_MESSAGES\" && echo x > \"$DG_OUTPUT\"'\ntimeout = \"5s\"\n",
    );
    let (run, _) = materialize_within(dir.path(), 30);
    assert_no_panic(&run);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let logs = dir.path().join(".dg/logs");
    let run_dir = std::fs::read_dir(&logs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(run_dir.join("a.log")).unwrap();
    assert!(
        text.contains("[dg] DG_MESSAGES is a FIFO (named pipe), not a regular file: ignored"),
        "{text}"
    );
}

#[test]
fn the_timeout_covers_storing() {
    let dir = one_file(
        r#"[resources.io_manager]
type = "command"
command = ["sh", "plugin.sh"]
timeout = "10m"

[assets.a]
shell = 'echo x > "$DG_OUTPUT"'
timeout = "1s"
"#,
    );
    // Answers the handshake, then never replies.
    std::fs::write(
        dir.path().join("plugin.sh"),
        "read -r hello\necho '{\"ok\": true, \"protocol\": 1}'\nwhile read -r line; do sleep 600; done\n",
    )
    .unwrap();
    let (run, took) = materialize_within(dir.path(), 60);
    assert_no_panic(&run);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    assert_has(
        &run,
        &["timed out after 1s while `io_manager` stored the output"],
    );
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}

#[test]
fn failure_output_is_bounded_in_bytes() {
    // 5 MB on one line, then a progress bar drawn with `\r`, then a failure.
    let dir = one_file(
        r#"[assets.a]
shell = '''
head -c 5000000 /dev/zero | tr '\0' x
echo
i=0; while [ $i -lt 3000 ]; do printf '%d%%\r' $i; i=$((i+1)); done
echo 'last words'
exit 3
'''
"#,
    );
    let run = dg(dir.path(), &["materialize"]);
    assert_no_panic(&run);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.len() < 20_000,
        "{} bytes of stderr",
        run.stderr.len()
    );
    assert_has(
        &run,
        &[
            "  | last words\n",
            "(cut: at most 4 KiB per line and 16 KiB in all are shown; the whole log is in the file)",
        ],
    );
    assert!(!run.stderr.contains("2999%"), "the progress bar was dumped");

    // `dg logs` prints the whole log.
    let id = run
        .stderr
        .rsplit_once("(run ")
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(id, _)| id.to_string())
        .unwrap();
    let logs = dg(dir.path(), &["logs", &id, "a"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    let file = std::fs::read_to_string(dir.path().join(format!(".dg/logs/{id}/a.log"))).unwrap();
    assert_eq!(logs.stdout, file);
}

#[test]
fn every_accepted_key_runs() {
    let long_asset = "a".repeat(200);
    let keys = [
        "p".repeat(240),
        "数".repeat(80),
        "é".repeat(90),
        "数".repeat(27),
    ];
    let dir = one_file(&format!(
        r#"[partitions.p]
type = "static"
keys = [{}]

[assets."{long_asset}"]
shell = 'printf "v\n%s\n" "$DG_PARTITION_KEY" > "$DG_OUTPUT"'
partitions = "p"

[assets.down]
shell = 'cat "$DG_INPUT_{}" > "$DG_OUTPUT"'
partitions = "p"
deps = ["{long_asset}"]
"#,
        keys.iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", "),
        long_asset.to_uppercase()
    ));
    let run = dg(dir.path(), &["materialize", "--all-partitions", "--json"]);
    assert_no_panic(&run);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["steps"].as_array().unwrap().len(), 8);
    // Each log's first line holds the full step id.
    let id = v["run_id"].as_str().unwrap();
    let mut firsts: Vec<String> = std::fs::read_dir(dir.path().join(".dg/logs").join(id))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            assert!(p.file_name().unwrap().len() <= 255);
            let text = std::fs::read_to_string(p).unwrap();
            text.lines().next().unwrap().to_string()
        })
        .collect();
    firsts.sort();
    for k in &keys {
        for asset in [long_asset.as_str(), "down"] {
            let line = format!("[dg] {asset}[{k}] attempt 1");
            assert!(firsts.contains(&line), "{line} in {firsts:#?}");
        }
    }
    let logs = dg(dir.path(), &["logs", id, &format!("down[{}]", keys[1])]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
}

#[test]
fn keys_too_long_for_a_file_name_are_located_errors() {
    let dir = one_file(&format!(
        "[partitions.p]\ntype = \"static\"\nkeys = [\"{}\"]\n\n[assets.\"{}\"]\nshell = \"true\"\n",
        "é".repeat(121),
        "a".repeat(201)
    ));
    let run = check_fails(dir.path());
    assert_has(
        &run,
        &[
            "is too long: 242 bytes as a file name, at most 240",
            "--> defs/a.toml:3:9",
            "segment of 201 characters: at most 200",
            "--> defs/a.toml:5:9",
        ],
    );
    let dir = one_file("[partitions.d]\ntype = \"dynamic\"\n");
    let run = dg(dir.path(), &["partitions", "add", "d", &"x".repeat(241)]);
    assert_no_panic(&run);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_has(&run, &["is too long: 241 bytes as a file name"]);
}

#[test]
fn symlinked_definitions_are_read_once_and_loops_skipped() {
    let tmp = TempDir::new().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("defs")).unwrap();
    std::fs::create_dir_all(root.join("shared/sub")).unwrap();
    std::fs::write(
        root.join("shared/a.toml"),
        "[assets.a]\nshell = \"true\"\noutput = false\n",
    )
    .unwrap();
    std::fs::write(
        root.join("shared/sub/b.toml"),
        "[assets.b]\nshell = \"true\"\noutput = false\n",
    )
    .unwrap();
    let link = |to: &str, at: &str| std::os::unix::fs::symlink(to, root.join(at)).unwrap();
    link("../shared/a.toml", "defs/a.toml"); // a file
    link("../shared/sub", "defs/sub"); // a folder
    link("..", "shared/sub/up"); // reaches `a.toml` a second time
    link(".", "shared/sub/loop"); // a loop
    let run = dg(root, &["list", "defs", "--json"]);
    assert_no_panic(&run);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let keys: Vec<&str> = texts(&v["assets"], "key");
    assert_eq!(keys, ["a", "b"]);

    link("../nowhere.toml", "defs/dangling.toml");
    let run = dg(root, &["check", "defs"]);
    assert_no_panic(&run);
    assert_eq!(run.code, 2);
    assert_has(&run, &["dangling.toml"]);
}

#[test]
fn an_unset_state_url_variable_is_a_warning_of_check_defs() {
    let dir = one_file("[assets.a]\nshell = \"true\"\noutput = false\n");
    std::fs::write(
        dir.path().join("dg.toml"),
        "[state]\nurl = \"${env:DG_TEST_SURELY_UNSET_20}\"\n",
    )
    .unwrap();
    let run = dg(dir.path(), &["check", "defs"]);
    assert_no_panic(&run);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_has(
        &run,
        &[
            "warning: environment variable `DG_TEST_SURELY_UNSET_20` is not set (used by `[state] url`)",
            "--> dg.toml:2:7",
        ],
    );
}

#[test]
fn logs_that_are_gone_and_runs_limit_0_are_errors() {
    let dir = one_file("[assets.a]\nshell = \"echo hi\"\noutput = false\n");
    let run = dg(dir.path(), &["materialize", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let id = v["run_id"].as_str().unwrap();
    std::fs::remove_dir_all(dir.path().join(".dg/logs")).unwrap();
    let logs = dg(dir.path(), &["logs", id]);
    assert_no_panic(&logs);
    assert_eq!(logs.code, 1, "{}", logs.stderr);
    assert_has(&logs, &["cannot read", "1 of 1 logs could not be read"]);

    let runs = dg(dir.path(), &["runs", "--limit", "0"]);
    assert_eq!(runs.code, 2, "{}", runs.stderr);
    assert!(!runs.stdout.contains("no runs yet"));
    let runs = dg(dir.path(), &["runs", "--limit", "1"]);
    assert_eq!(runs.code, 0);
    assert!(runs.stdout.starts_with(id), "{}", runs.stdout);
}
