//! The Slurm executor against a real cluster, and `dg step` on its own.
//!
//! The Slurm tests need a cluster: `DG_TEST_SLURM=1` and `SLURM_CONF` (`. .ci/slurm.sh`
//! starts a one-node one and exports them; `DG_TEST_SLURM_PARTITION` names the
//! partition). Without it a test prints "skipped: set DG_TEST_SLURM" and passes,
//! except under CI (`CI=true`), where it fails. The bundled example runs with a
//! Postgres state store (`DG_TEST_POSTGRES_URL`, likewise).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    Run, assert_contains, assert_fails_with, assert_ok, assert_step_error, dg_now, dg_now_with_env,
    example_project, files_under, items, json, one_file, project, read, spawn_dg, step,
};

const NOW: &str = "2022-02-01T00:00:00Z";

/// `Some(partition)` when a Slurm cluster is there to submit to; `None`
/// (skipped) outside CI; a failure under CI.
fn slurm() -> Option<String> {
    match std::env::var("DG_TEST_SLURM") {
        Ok(v) if !v.trim().is_empty() && v != "0" => {
            Some(std::env::var("DG_TEST_SLURM_PARTITION").unwrap_or_else(|_| "debug".into()))
        }
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but DG_TEST_SLURM is not set: the Slurm tests must run under CI \
                     (.ci/run sources .ci/slurm.sh)"
                );
            }
            eprintln!("skipped: set DG_TEST_SLURM (see CONTRIBUTING.md)");
            None
        }
    }
}

/// `dg.toml` submitting to the test partition, polling often.
fn slurm_toml(partition: &str, extra: &str) -> String {
    format!("[executor]\ntype = \"slurm\"\npartition = \"{partition}\"\n{extra}")
}

const POLL: (&str, &str) = ("DG_SLURM_POLL", "100ms");

/// The jobs named `dg-RUN_ID` that Slurm still holds (pending or running).
fn jobs_of(run_id: &str) -> Vec<String> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-n", &format!("dg-{run_id}"), "-o", "%i %T"])
        .output()
        .expect("squeue runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn run_id(r: &Run) -> String {
    json(r)["run_id"].as_str().unwrap().to_string()
}

/// A step's attempts in `dg runs show RUN --json`: (attempt, status, error).
fn attempts(dir: &Path, run: &str, step_id: &str) -> Vec<(u64, String, String)> {
    let r = dg_now(dir, NOW, &["runs", "show", run, "--json"]);
    assert_ok(&r);
    let mut v: Vec<(u64, String, String)> = items(&json(&r)["attempts"])
        .iter()
        .filter(|a| a["step_id"] == step_id)
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["status"].as_str().unwrap().to_string(),
                a["error"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// What a run leaves that must be the same whichever executor ran it: the
/// stored files with their contents, per step its status and attempts, and
/// `dg status`.
type Outcome = (Vec<(String, String)>, Vec<(String, String, u64)>, Value);

fn outcome(dir: &Path, r: &Run, env: &[(&str, &str)]) -> Outcome {
    let files = [".dg/storage", ".dg/archive"]
        .iter()
        .flat_map(|base| {
            files_under(&dir.join(base)).into_iter().map(move |f| {
                let p = dir.join(base).join(&f);
                (format!("{base}/{}", f.display()), read(p))
            })
        })
        .collect();
    let mut steps: Vec<(String, String, u64)> = items(&json(r)["steps"])
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
                s["attempts"].as_u64().unwrap(),
            )
        })
        .collect();
    steps.sort();
    let mut status = json(&dg_now_with_env(dir, NOW, &["status", "--json"], env));
    status.as_object_mut().unwrap().remove("now");
    (files, steps, status)
}

#[test]
fn the_bundled_example_through_slurm_matches_the_local_executor() {
    let Some(partition) = slurm() else { return };
    let Some(url) = crate::backend::pg_url() else {
        return;
    };
    let mut outcomes = Vec::new();
    for executor in ["local", "slurm"] {
        let dir = example_project();
        let d = dir.path();
        // A fresh schema, dropped with `pg`.
        let pg = crate::backend::Pg::new(url.clone());
        let state = pg.state_url();
        std::fs::write(
            d.join("dg.toml"),
            format!(
                "[state]\nurl = \"${{env:DG_STATE_URL}}\"\n{}",
                slurm_toml(&partition, "")
            ),
        )
        .unwrap();
        let env = [("DG_STATE_URL", state.as_str()), POLL];
        let r = dg_now_with_env(
            d,
            NOW,
            &[
                "materialize",
                "--partition",
                "2022-01-01",
                "--executor",
                executor,
                "--json",
            ],
            &env,
        );
        assert_ok(&r);
        assert_eq!(json(&r)["steps"].as_array().unwrap().len(), 26);
        if executor == "slurm" {
            // Every step was a `dg step` on the node: its output file is there.
            let run = run_id(&r);
            let outs = files_under(&d.join(".dg/logs").join(&run).join("slurm"));
            assert_eq!(
                outs.iter()
                    .filter(|f| f.extension().is_some_and(|e| e == "out"))
                    .count(),
                26,
                "{outs:?}"
            );
            assert!(jobs_of(&run).is_empty());
        }
        // The history is in Postgres, not in a local file.
        assert!(!d.join(".dg/state.db").exists());
        outcomes.push(outcome(d, &r, &env));
        drop(pg);
    }
    let (local, slurm) = (&outcomes[0], &outcomes[1]);
    assert_eq!(local.0.len(), 26, "{:?}", local.0);
    assert_eq!(local.0, slurm.0, "stored files differ");
    assert_eq!(local.1, slurm.1, "steps differ");
    assert_eq!(local.2, slurm.2, "status differs");
}

#[test]
fn a_failing_array_task_fails_only_its_partition() {
    let Some(partition) = slurm() else { return };
    let dir = project(&[
        ("dg.toml", &slurm_toml(&partition, "max_array = 2\n")),
        (
            "defs/a.toml",
            r#"[partitions.p]
type = "static"
keys = ["k1", "k2", "k3", "k4"]

[assets.a]
partitions = "p"
shell = '''
echo "working on $DG_PARTITION_KEY"
if [ "$DG_PARTITION_KEY" = k3 ]; then echo "k3 is broken" >&2; exit 3; fi
echo "v,$DG_PARTITION_KEY" > "$DG_OUTPUT"
'''

[assets.b]
partitions = "p"
deps = ["a"]
shell = 'cp "$DG_INPUT_A" "$DG_OUTPUT"'
"#,
        ),
    ]);
    let d = dir.path();
    let r = dg_now_with_env(
        d,
        NOW,
        &["materialize", "--all-partitions", "--json"],
        &[POLL],
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    for k in ["k1", "k2", "k4"] {
        assert_eq!(step(&v, &format!("a[{k}]"))["status"], "success", "{v:#}");
        assert_eq!(step(&v, &format!("b[{k}]"))["status"], "success", "{v:#}");
    }
    assert_step_error(step(&v, "a[k3]"), "failed", "exited with code 3");
    assert_eq!(step(&v, "b[k3]")["status"], "skipped");
    // The failed step's log tail, as the local executor shows it.
    assert_contains(&r.stderr, &["--- a[k3] failed", "k3 is broken"]);
    // The run throttled the array (`max_array = 2`) and left nothing queued.
    assert!(jobs_of(&run_id(&r)).is_empty());
    assert_eq!(read(d.join(".dg/storage/b/k4.csv")), "v,k4\n");
}

#[test]
fn a_cancelled_run_leaves_no_job_behind() {
    let Some(partition) = slurm() else { return };
    let dir = project(&[
        ("dg.toml", &slurm_toml(&partition, "")),
        (
            "defs/a.toml",
            r#"[partitions.p]
type = "static"
keys = ["k1", "k2", "k3", "k4"]

[assets.slow]
partitions = "p"
output = false
shell = 'echo started >> started.log; sleep 120'
"#,
        ),
    ]);
    let d = dir.path();
    let child = spawn_dg(
        d,
        &["--now", NOW, "materialize", "--all-partitions", "--json"],
        &[("DG_SLURM_POLL", "100ms")],
    );
    // Wait until the steps run on the node.
    let t0 = Instant::now();
    while read_lines(&d.join("started.log")) < 4 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the steps never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = std::fs::read_dir(d.join(".dg/logs")).unwrap();
    let run = logs
        .flatten()
        .next()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    assert_eq!(jobs_of(&run).len(), 4, "{:?}", jobs_of(&run));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // dg returns once every job has ended: nothing is left in the queue.
    assert!(jobs_of(&run).is_empty(), "{:?}", jobs_of(&run));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "failure");
    for s in v["steps"].as_array().unwrap() {
        assert_ne!(s["status"], "success", "{v:#}");
    }
    let runs = json(&dg_now(d, NOW, &["runs", "--json"]));
    assert_eq!(runs["runs"][0]["status"], "canceled", "{runs:#}");
}

fn read_lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
}

#[test]
fn a_killed_dg_step_is_recorded_as_failed_and_retried() {
    let Some(partition) = slurm() else { return };
    let dir = project(&[
        ("dg.toml", &slurm_toml(&partition, "")),
        (
            "defs/a.toml",
            r#"[assets.fragile]
retries = 1
shell = '''
echo "attempt $DG_ATTEMPT" >> attempts.log
# The first attempt takes `dg step` (its parent) down with it: a node-side crash.
if [ "$DG_ATTEMPT" = 1 ]; then kill -9 $PPID; sleep 5; fi
echo "v" > "$DG_OUTPUT"
'''
"#,
        ),
    ]);
    let d = dir.path();
    let r = dg_now_with_env(d, NOW, &["materialize", "--json"], &[POLL]);
    assert_ok(&r);
    let v = json(&r);
    assert_eq!(step(&v, "fragile")["status"], "success");
    assert_eq!(step(&v, "fragile")["attempts"], 2, "{v:#}");
    assert_eq!(read(d.join("attempts.log")), "attempt 1\nattempt 2\n");
    let a = attempts(d, &run_id(&r), "fragile");
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!((a[0].0, a[0].1.as_str()), (1, "failed"), "{a:?}");
    assert!(a[0].2.contains("without recording the step"), "{a:?}");
    assert_eq!((a[1].0, a[1].1.as_str()), (2, "success"), "{a:?}");
    assert!(d.join(".dg/storage/fragile.csv").exists());
}

#[test]
fn without_retries_a_killed_dg_step_fails_its_step() {
    let Some(partition) = slurm() else { return };
    let dir = project(&[
        ("dg.toml", &slurm_toml(&partition, "")),
        (
            "defs/a.toml",
            "[assets.fragile]\nshell = 'kill -9 $PPID; sleep 5'\n",
        ),
    ]);
    let d = dir.path();
    let r = dg_now_with_env(d, NOW, &["materialize", "--json"], &[POLL]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    assert_eq!(step(&v, "fragile")["status"], "failed");
    assert_eq!(step(&v, "fragile")["attempts"], 1);
    let st = json(&dg_now(d, NOW, &["status", "--json"]));
    assert_eq!(st["assets"][0]["failed"], 1, "{st:#}");
}

// Pre-flight: nothing is submitted --------------------------------------

#[test]
fn a_memory_manager_cannot_run_on_slurm() {
    let dir = project(&[
        ("dg.toml", "[executor]\ntype = \"slurm\"\n"),
        (
            "defs/a.toml",
            "[resources.io_manager]\ntype = \"memory\"\n\n[assets.a]\nshell = 'echo x > \"$DG_OUTPUT\"'\n",
        ),
    ]);
    let d = dir.path();
    // With an `sbatch` that would record being called.
    let bin = d.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("sbatch");
    std::fs::write(&fake, "#!/bin/sh\necho called >> \"$0.calls\"\necho 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let r = dg_now_with_env(d, NOW, &["materialize"], &[("PATH", &path)]);
    assert_fails_with(&r, 2, &["`memory` manager", "nothing was submitted"]);
    assert!(!bin.join("sbatch.calls").exists());
    // The same project runs locally.
    let r = dg_now_with_env(
        d,
        NOW,
        &["materialize", "--executor", "local"],
        &[("PATH", &path)],
    );
    assert_ok(&r);
}

#[test]
fn no_sbatch_on_the_path_is_a_usage_error() {
    let dir = one_file("[assets.a]\nshell = 'echo x > \"$DG_OUTPUT\"'\n");
    let d = dir.path();
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let r = dg_now_with_env(
        d,
        NOW,
        &["materialize", "--executor", "slurm"],
        &[("PATH", empty.to_str().unwrap())],
    );
    assert_fails_with(&r, 2, &["`sbatch`, which is not on the PATH"]);
    // Nothing ran or was stored.
    assert!(!d.join(".dg/storage").exists());
}

// `dg step` --------------------------------------------------------------

const TWO: &str = r#"[partitions.p]
type = "static"
keys = ["k1", "k2"]

[assets.up]
partitions = "p"
shell = '''
echo "up $DG_PARTITION_KEY attempt $DG_ATTEMPT" >> ran.log
echo "v,$DG_PARTITION_KEY" > "$DG_OUTPUT"
'''

[assets.down]
partitions = "p"
deps = ["up"]
shell = '''
echo "down $DG_PARTITION_KEY attempt $DG_ATTEMPT" >> ran.log
cp "$DG_INPUT_UP" "$DG_OUTPUT"
'''
"#;

#[test]
fn dg_step_runs_a_recorded_step_and_records_it_in_the_run() {
    let dir = one_file(TWO);
    let d = dir.path();
    let r = dg_now(d, NOW, &["materialize", "--all-partitions", "--json"]);
    assert_ok(&r);
    let run = run_id(&r);
    std::fs::remove_file(d.join(".dg/storage/down/k2.csv")).unwrap();
    let r = dg_now(d, NOW, &["step", &run, "down[k2]", "--attempt", "2"]);
    assert_ok(&r);
    assert_contains(&r.stdout, &["✓ down[k2] succeeded"]);
    assert_eq!(read(d.join(".dg/storage/down/k2.csv")), "v,k2\n");
    let ran = read(d.join("ran.log"));
    assert!(ran.ends_with("down k2 attempt 2\n"), "{ran}");
    let a = attempts(d, &run, "down[k2]");
    assert_eq!(
        a.iter().map(|x| (x.0, x.1.as_str())).collect::<Vec<_>>(),
        [(1, "success"), (2, "success")]
    );
    // The materialization belongs to the run.
    let show = json(&dg_now(d, NOW, &["runs", "show", &run, "--json"]));
    assert_eq!(show["materializations"].as_array().unwrap().len(), 5);
    // Nothing of its scratch folder is left.
    assert!(files_under(&d.join(".dg/runs")).is_empty());
}

#[test]
fn dg_step_reads_a_spec_from_a_file_or_stdin_and_refuses_a_changed_manager() {
    let dir = one_file(TWO);
    let d = dir.path();
    let r = dg_now(d, NOW, &["materialize", "--all-partitions", "--json"]);
    assert_ok(&r);
    let run = run_id(&r);
    let db = rusqlite::Connection::open(d.join(".dg/state.db")).unwrap();
    let spec: String = db
        .query_row(
            "SELECT spec FROM step_specs WHERE run_id = ?1 AND step_id = 'down[k1]'",
            [&run],
            |r| r.get(0),
        )
        .unwrap();
    let v: Value = serde_json::from_str(&spec).unwrap();
    assert_eq!(v["inputs"][0]["partitions"], serde_json::json!(["k1"]));
    assert_eq!(v["partition"], "k1");
    std::fs::write(d.join("spec.json"), &spec).unwrap();
    let r = dg_now(d, NOW, &["step", "--spec", "spec.json"]);
    assert_ok(&r);
    // From stdin.
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("dg"))
        .current_dir(d)
        .arg("--project")
        .arg(d)
        .args(["step", "--spec", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(spec.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        read(d.join("ran.log"))
            .lines()
            .filter(|l| l.starts_with("down k1"))
            .count(),
        3
    );
    // A manager configured differently here than when the run started.
    std::fs::write(
        d.join("defs/b.toml"),
        "[resources.io_manager]\ntype = \"fs\"\nbase_dir = \"elsewhere\"\n",
    )
    .unwrap();
    let r = dg_now(d, NOW, &["step", "--spec", "spec.json"]);
    assert_fails_with(&r, 2, &["configured differently"]);
    assert!(!d.join("elsewhere").exists());
    // Unknown runs and steps.
    let r = dg_now(d, NOW, &["step", "no-such-run", "down[k1]"]);
    assert_eq!(r.code, 2);
    assert_contains(&r.stderr, &["no run no-such-run"]);
    let r = dg_now(d, NOW, &["step", &run, "down[k9]"]);
    assert_eq!(r.code, 2);
    assert_contains(&r.stderr, &["has no step `down[k9]`"]);
}

#[test]
fn a_failing_dg_step_exits_1_and_shows_its_log() {
    let dir = one_file("[assets.bad]\nshell = 'echo \"it broke\"; exit 4'\n");
    let d = dir.path();
    let r = dg_now(d, NOW, &["materialize", "--json"]);
    assert_eq!(r.code, 1);
    let run = run_id(&r);
    let r = dg_now(d, NOW, &["step", &run, "bad", "--attempt", "2"]);
    assert_fails_with(&r, 1, &["exited with code 4", "it broke"]);
}
