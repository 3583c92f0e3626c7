//! Fault injection through the binary: dg killed mid-run, a full disk for
//! storage and for the state folder, a read-only state folder, a damaged
//! `state.db`. Each checks that nothing partial is counted, the previous
//! data stays intact, and the error says what happened and what to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    assert_contains, assert_fails_with, assert_no_panic, assert_step_error, dg, files_under, find,
    json, one_file, project, read, texts,
};

/// Four partitions stored by `fs` under `warehouse/`; the step of `k2`
/// writes half its output, then sleeps while `slow.flag` exists.
fn four_partitions(dg_toml: &str) -> tempfile::TempDir {
    project(&[
        ("dg.toml", dg_toml),
        (
            "defs/a.toml",
            r#"[partitions.p]
type = "static"
keys = ["k0", "k1", "k2", "k3"]

[resources.io_manager]
type = "fs"
base_dir = "warehouse"

[assets.events]
partitions = "p"
shell = '''
echo "n" > "$DG_OUTPUT"
echo "half of $DG_PARTITION_KEY" >> "$DG_OUTPUT"
if [ "$DG_PARTITION_KEY" = k2 ] && [ -e slow.flag ]; then
  sleep 60 & echo $! > sleep.pid
  touch started.flag
  wait
fi
echo "rest" >> "$DG_OUTPUT"
'''
"#,
        ),
    ])
}

fn wait_for(path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_counts(dir: &Path, asset: &str) -> (u64, u64) {
    let r = dg(dir, &["status", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = json(&r);
    let a: &Value = find(&v["assets"], "asset", asset);
    (
        a["materialized"].as_u64().unwrap(),
        a["missing"].as_u64().unwrap(),
    )
}

#[test]
fn kill_9_mid_run_counts_nothing_partial_and_missing_completes_it() {
    let dir = four_partitions("");
    let d = dir.path();
    std::fs::write(d.join("slow.flag"), "").unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("dg"))
        .current_dir(d)
        .args(["materialize", "--all-partitions", "-j", "1"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&d.join("started.flag"));
    child.kill().unwrap(); // SIGKILL: no cleanup at all
    child.wait().unwrap();
    std::fs::remove_file(d.join("slow.flag")).unwrap();

    // The run is recorded as interrupted (found when the history is read).
    let r = dg(d, &["runs", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let runs = json(&r);
    assert_eq!(runs["runs"][0]["status"], "interrupted", "{runs}");
    let run_id = runs["runs"][0]["id"].as_str().unwrap().to_string();
    // Two partitions were done; the half-written one is neither stored nor counted.
    assert_eq!(status_counts(d, "events"), (2, 2));
    let stored: Vec<PathBuf> = files_under(&d.join("warehouse"));
    assert_eq!(
        stored,
        [
            PathBuf::from("events/k0.csv"),
            PathBuf::from("events/k1.csv")
        ],
        "no partial or temporary file is left in storage"
    );
    // `--missing` completes exactly the rest, and the dead run's scratch
    // folder goes.
    assert!(d.join(".dg/runs").join(&run_id).exists());
    let r = dg(
        d,
        &["materialize", "--all-partitions", "--missing", "--json"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let v = json(&r);
    let ids: Vec<&str> = texts(&v["steps"], "id");
    assert_eq!(ids, ["events[k2]", "events[k3]"]);
    assert!(!d.join(".dg/runs").join(&run_id).exists());
    assert_eq!(status_counts(d, "events"), (4, 0));
    assert_eq!(
        read(d.join("warehouse/events/k2.csv")),
        "n\nhalf of k2\nrest\n"
    );
}

/// A tmpfs of `size` mounted at `at`, unmounted on drop. `None` where this
/// process may not mount (outside CI, as a user); under `CI=true` that fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").is_err(),
                "cannot mount a tmpfs (needed under CI)"
            );
            eprintln!("skipped: cannot mount a tmpfs here");
            return None;
        }
        Some(Tmpfs(at.to_path_buf()))
    }

    fn read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount read-only");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_storage_disk_fails_the_step_and_keeps_the_previous_partition() {
    let dir = one_file(
        r#"[resources.io_manager]
type = "fs"
base_dir = "warehouse"
format = "file"

[assets.big]
shell = 'head -c "${SIZE:-100}" /dev/zero | tr "\0" "x" > "$DG_OUTPUT"'
format = "file"
"#,
    );
    let d = dir.path();
    let Some(_fs) = Tmpfs::mount(&d.join("warehouse"), "1m") else {
        return;
    };
    let r = dg(d, &["materialize"]);
    assert_eq!(r.code, 0, "{r:?}");
    let before = std::fs::read(d.join("warehouse/big")).unwrap();
    assert_eq!(before.len(), 100);
    // 3 MB do not fit: the step fails, with the system's reason.
    let r = crate::support::dg_with_env(d, &["materialize", "--json"], &[("SIZE", "3000000")]);
    assert_no_panic(&r);
    assert_eq!(r.code, 1, "{r:?}");
    let v = json(&r);
    let err = v["steps"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("No space left on device") && err.contains("io_manager"),
        "{err}"
    );
    // The previous partition is intact, no temporary file is left, and the
    // history still counts the first materialization only.
    assert_eq!(std::fs::read(d.join("warehouse/big")).unwrap(), before);
    assert_eq!(files_under(&d.join("warehouse")), [PathBuf::from("big")]);
    let r = dg(d, &["runs", "--json"]);
    let runs = json(&r);
    assert_eq!(runs["runs"][0]["status"], "failure");
    assert_eq!(runs["runs"][1]["status"], "success");
}

#[test]
fn a_full_state_disk_fails_the_run_without_corrupting_the_history() {
    let dir = one_file(
        r#"[partitions.p]
type = "static"
keys = ["k0", "k1"]

[assets.a]
partitions = "p"
shell = 'echo "$DG_PARTITION_KEY" > "$DG_OUTPUT"'
metadata = { note = "${env:NOTE:-x}" }

[resources.io_manager]
type = "fs"
base_dir = "warehouse"
"#,
    );
    let d = dir.path();
    let Some(_fs) = Tmpfs::mount(&d.join(".dg"), "600k") else {
        return;
    };
    let r = dg(d, &["materialize", "--partition", "k0"]);
    assert_eq!(r.code, 0, "{r:?}");
    // Fill the state disk, then run again: recording fails.
    let filler = d.join(".dg/filler");
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("cat /dev/zero > '{}'", filler.display()))
        .status();
    let r = dg(d, &["materialize", "--partition", "k1"]);
    assert_no_panic(&r);
    assert_ne!(
        r.code, 0,
        "a run that cannot record its history is not a success: {r:?}"
    );
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(
        out.contains("is full") || out.contains("No space left on device"),
        "{out}"
    );
    // With room again, the history is intact and readable: the first run's
    // partition is there, the second's is missing, nothing is corrupt.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(status_counts(d, "a"), (1, 1));
    let r = dg(d, &["materialize", "--partition", "k1"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(status_counts(d, "a"), (2, 0));
}

#[test]
fn a_read_only_state_folder_can_still_be_read() {
    let dir = four_partitions("");
    let d = dir.path();
    let Some(fs) = Tmpfs::mount(&d.join(".dg"), "20m") else {
        return;
    };
    let r = dg(d, &["materialize", "--partition", "k0"]);
    assert_eq!(r.code, 0, "{r:?}");
    fs.read_only();
    for args in [
        &["status", "--json"][..],
        &["runs", "--json"][..],
        &["list", "defs"][..],
    ] {
        let r = dg(d, args);
        assert_eq!(r.code, 0, "dg {args:?} on a read-only state folder: {r:?}");
    }
    assert_eq!(status_counts(d, "events"), (1, 3));
    // Writing says why it cannot.
    let r = dg(d, &["materialize", "--partition", "k1"]);
    assert_no_panic(&r);
    assert_fails_with(&r, 2, &["read-only"]);
}

#[test]
fn a_damaged_state_db_is_a_clear_error_never_a_fresh_start() {
    for (what, damage) in [
        (
            "garbage",
            b"this is not a database at all, just text\n".repeat(200),
        ),
        ("truncated", Vec::new()),
    ] {
        let dir = four_partitions("");
        let d = dir.path();
        let r = dg(d, &["materialize", "--all-partitions"]);
        assert_eq!(r.code, 0, "{r:?}");
        let db = d.join(".dg/state.db");
        let bytes = if damage.is_empty() {
            let full = std::fs::read(&db).unwrap();
            full[..full.len() / 3].to_vec()
        } else {
            damage.clone()
        };
        std::fs::write(&db, &bytes).unwrap();
        let _ = std::fs::remove_file(d.join(".dg/state.db-wal"));
        let _ = std::fs::remove_file(d.join(".dg/state.db-shm"));
        for args in [&["status"][..], &["materialize", "--all-partitions"][..]] {
            let r = dg(d, args);
            assert_no_panic(&r);
            assert_eq!(r.code, 2, "{what}, dg {args:?}: {r:?}");
            assert!(
                r.stderr.contains("state.db") && r.stderr.contains("move it away"),
                "{what}, dg {args:?}: {}",
                r.stderr
            );
            assert!(r.stderr.len() < 1500, "short: {}", r.stderr);
        }
        // Never silently started over: the file is as it was.
        assert_eq!(std::fs::read(&db).unwrap(), bytes, "{what}");
    }
}

/// The Postgres state store's connections are cut mid-run (as a database
/// restart or a network drop would): the run does not claim success for
/// what it could not record, says why, and the history stays consistent.
#[test]
fn a_postgres_store_that_drops_mid_run() {
    let Some(url) = crate::backend::pg_url() else {
        return;
    };
    // Its own application name, so only this dg's connections are cut
    // (other tests use the server at the same time).
    let app = format!("dgfault{}", std::process::id());
    let state_url = format!(
        "{}&application_name={app}",
        crate::backend::with_schema(&url, &crate::backend::random_schema())
    );
    let dir = four_partitions("[state]\nurl = \"${env:DG_STATE_URL}\"\n");
    let d = dir.path();
    std::fs::write(d.join("slow.flag"), "").unwrap();
    let child = Command::new(assert_cmd::cargo::cargo_bin("dg"))
        .current_dir(d)
        .args(["materialize", "--all-partitions", "-j", "1", "--json"])
        .env("NO_COLOR", "1")
        .env("DG_STATE_URL", &state_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&d.join("started.flag"));
    // Cut every connection of dg's (the test's own is kept).
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let cut: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1) t",
            &[&app],
        )
        .unwrap()
        .get(0);
    assert!(cut >= 1, "dg had a connection");
    std::fs::remove_file(d.join("slow.flag")).unwrap();
    // The step of k2 is sleeping: end it so the run goes on.
    let pid: i32 = read(d.join("sleep.pid")).trim().parse().unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let code = o.status.code().unwrap();
    eprintln!("dg exited {code} after its connections were cut:\n{stderr}");
    // Either dg got through on a new connection (then everything is
    // recorded), or it says the history could not be written and fails.
    let env = [("DG_STATE_URL", state_url.as_str())];
    let r = crate::support::dg_with_env(d, &["status", "--json"], &env);
    assert_eq!(r.code, 0, "{r:?}");
    let v = json(&r);
    let materialized = v["assets"][0]["materialized"].as_u64().unwrap();
    if code == 0 {
        assert_eq!(materialized, 4, "{stdout}{stderr}");
    } else {
        assert_eq!(code, 1, "{stdout}\n{stderr}");
        assert!(stderr.contains("connection"), "says why: {stderr}");
        // What is recorded was stored; a rerun completes the rest.
        let r =
            crate::support::dg_with_env(d, &["materialize", "--all-partitions", "--missing"], &env);
        assert_eq!(r.code, 0, "{r:?}");
        let r = crate::support::dg_with_env(d, &["status", "--json"], &env);
        assert_eq!(json(&r)["assets"][0]["materialized"], 4);
    }
}

#[test]
fn small_mistakes_get_short_clear_messages() {
    let dir = four_partitions("");
    let d = dir.path();
    // Another program's SQLite file where the history should be.
    std::fs::create_dir_all(d.join(".dg")).unwrap();
    let c = rusqlite::Connection::open(d.join(".dg/state.db")).unwrap();
    c.execute_batch("CREATE TABLE runs (x INTEGER); CREATE TABLE notes (y TEXT);")
        .unwrap();
    drop(c);
    let r = dg(d, &["status"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("not a dg state database")
            && r.stderr.contains("(notes, runs)")
            && !r.stderr.contains("CREATE TABLE"),
        "{}",
        r.stderr
    );
    std::fs::remove_file(d.join(".dg/state.db")).unwrap();
    // An unlocated error has no empty source gutter.
    let r = dg(d, &["--now", "garbage", "status"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(!r.stderr.lines().any(|l| l.trim() == "|"), "{}", r.stderr);
    assert_contains(&r.stderr, &["help: use RFC 3339"]);
    // `--project` given a file says so.
    let o = Command::new(assert_cmd::cargo::cargo_bin("dg"))
        .current_dir(d)
        .args(["--project", "defs/a.toml", "status"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("takes a folder"), "{stderr}");
}

#[test]
fn keys_with_invisible_characters_are_shown_escaped() {
    let dir = one_file(
        "[partitions.p]\ntype = \"static\"\nkeys = [\"ab\\u202Ecd\", \"zero\\u200Bwidth\"]\n\n[assets.a]\npartitions = \"p\"\nshell = \"true\"\noutput = false\n",
    );
    let d = dir.path();
    let r = dg(d, &["materialize", "--all-partitions"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_contains(&r.stdout, &["a[ab\\u202Ecd]"]);
    assert!(!r.stdout.contains('\u{202E}'), "{}", r.stdout);
    // JSON keeps the key: the escape decodes to the character.
    let r = dg(d, &["list", "partitions", "p", "--json"]);
    assert!(!r.stdout.contains('\u{202E}'));
    assert_eq!(json(&r)["keys"][0], "ab\u{202E}cd");
}

#[test]
fn a_password_on_a_line_with_an_error_is_not_shown() {
    let dir = one_file(
        "[resources.db]\ntype = \"postgres\"\nurl = \"postgres://dg:hunter2@db.example/x\" oops\n",
    );
    for args in [&["check", "defs"][..], &["check", "defs", "--json"][..]] {
        let r = dg(dir.path(), args);
        assert_eq!(r.code, 2, "{r:?}");
        let out = format!("{}{}", r.stdout, r.stderr);
        assert!(!out.contains("hunter2"), "{out}");
    }
    let r = dg(dir.path(), &["check", "defs"]);
    assert_contains(&r.stderr, &["postgres://dg:*******@db.example/x"]);
}

/// `${env:…}` in a plug-in's argv (a token) never reaches a message, a
/// log written by dg, or the history.
#[test]
fn an_env_value_in_a_plugin_argv_is_not_shown() {
    let dir = one_file(
        r#"[resources.io_manager]
type = "command"
command = ["sh", "-c", "exit 3", "x", "${env:PLUGIN_TOKEN}"]

[assets.a]
shell = "printf 'a\n1\n' > $DG_OUTPUT"
"#,
    );
    let d = dir.path();
    let env = [("PLUGIN_TOKEN", "tok-5ecret-value")];
    for args in [&["materialize"][..], &["materialize", "--json"][..]] {
        let r = crate::support::dg_with_env(d, args, &env);
        assert_eq!(r.code, 1, "{r:?}");
        let out = format!("{}{}", r.stdout, r.stderr);
        assert!(out.contains("plug-in `sh`"), "{out}");
        assert!(!out.contains("tok-5ecret"), "{out}");
    }
    for f in files_under(&d.join(".dg")) {
        let bytes = std::fs::read(d.join(".dg").join(&f)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("tok-5ecret"), "in {f:?}");
    }
}

#[test]
fn a_read_only_storage_folder_fails_the_step_clearly() {
    let dir = four_partitions("");
    let d = dir.path();
    let Some(fs) = Tmpfs::mount(&d.join("warehouse"), "5m") else {
        return;
    };
    let r = dg(d, &["materialize", "--partition", "k0"]);
    assert_eq!(r.code, 0, "{r:?}");
    let before = read(d.join("warehouse/events/k0.csv"));
    fs.read_only();
    let r = dg(
        d,
        &["materialize", "--partition-range", "k0...k1", "--json"],
    );
    assert_no_panic(&r);
    assert_eq!(r.code, 1, "{r:?}");
    let v = json(&r);
    for s in v["steps"].as_array().unwrap() {
        assert_step_error(s, "failed", "Read-only file system");
    }
    // k0's stored data is intact; its latest attempt failed, so status
    // shows it failed (not materialized) until a run succeeds again.
    assert_eq!(read(d.join("warehouse/events/k0.csv")), before);
    assert_eq!(status_counts(d, "events"), (0, 2));
}

/// A Postgres state store that cannot be reached says why, not "db error".
#[test]
fn postgres_state_connection_errors_say_why() {
    let dir = four_partitions("[state]\nurl = \"postgres://dg:pw@127.0.0.1:1/nope\"\n");
    let r = dg(dir.path(), &["status"]);
    assert_fails_with(&r, 2, &["Connection refused"]);
    assert!(!r.stderr.contains(":pw@"), "{}", r.stderr);
    let Some(url) = crate::backend::pg_url() else {
        return;
    };
    let (base, _) = url.rsplit_once('/').unwrap();
    let dir = four_partitions(&format!("[state]\nurl = \"{base}/no_such_db\"\n"));
    let r = dg(dir.path(), &["status"]);
    assert_fails_with(&r, 2, &["database \"no_such_db\" does not exist"]);
}
