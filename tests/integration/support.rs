//! What the integration tests share: building a project in a temporary
//! folder, running the real `dg` binary on it, and reading what it did.
//!
//! A project is built one of three ways: [`project`] from `(path, text)`
//! pairs, [`fixture`] from a folder under `tests/fixtures/` (or
//! [`malformed`] for `tests/fixtures/malformed/`), [`example_project`] from
//! the repository's example `defs/`. [`dg`] / [`dg_with_env`] run the binary,
//! [`dg_now`] pins *now* and checks for panics, [`assert_ok`] / [`json`] read
//! the outcome. The backend-parameterized helpers (sqlite or postgres) are in
//! [`crate::backend`] (the scenarios themselves in `table_scenarios.rs`).

use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// The seed example's partitions: hourly from 2022-01-01-00:00 and daily
/// from 2022-01-01. A string literal, so that `concat!(hourly_daily!(), …)`
/// can build a fixture constant on it; [`HOURLY_DAILY`] is the same text.
macro_rules! hourly_daily {
    () => {
        r#"
[partitions.hourly]
type = "hourly"
start = "2022-01-01-00:00"

[partitions.daily]
type = "daily"
start = "2022-01-01"
"#
    };
}
pub(crate) use hourly_daily;

/// The seed example's partitions ([`hourly_daily!`]).
pub const HOURLY_DAILY: &str = hourly_daily!();

/// `numbers`, a table of the rows 1 and 2, with `checks` (its
/// `[assets.numbers.checks.…]` tables), and `doubled`, a SQL asset that
/// reads it: the project of the tests of checks on a table.
pub fn numbers_doubled(checks: &str) -> String {
    format!(
        r#"
[assets.numbers]
shell = "printf 'n\n1\n2\n' > \"$DG_OUTPUT\""
{checks}
[assets.doubled]
deps = ["numbers"]
sql = "SELECT n * 2 AS n FROM numbers"
"#
    )
}

/// The repository root (where `Cargo.toml` is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The environment variable `var` that points the tests at a service (a
/// server, a browser), or `None` when it is not set: the test is then
/// skipped, saying so. Under CI (`CI=true`) a missing variable fails the
/// test instead; `tests` names the tests and `script` the `.ci/` script that
/// sets it.
pub fn service(var: &str, tests: &str, script: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but {var} is not set: the {tests} tests must run under CI \
                 (.ci/run sources .ci/{script})"
            );
            eprintln!("skipped: set {var} (see CONTRIBUTING.md)");
            None
        }
    }
}

/// A name no other test uses, now or in an earlier run (for a database
/// schema, a bucket prefix): `dg_test_<pid>_<nanos>_<n>`.
pub fn unique_name() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "dg_test_{}_{nanos}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A copy of `tests/fixtures/malformed/<case>` in a fresh temporary folder.
pub fn malformed(case: &str) -> TempDir {
    fixture(&format!("tests/fixtures/malformed/{case}"))
}

/// A project holding a copy of the repository's example `defs/`.
pub fn example_project() -> TempDir {
    let tmp = TempDir::new().expect("temp dir");
    copy_dir(&repo().join("defs"), &tmp.path().join("defs"));
    tmp
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

/// What one run of `dg` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `dg --project <dir> ARGS…` from inside `dir`, without colour and
/// with the temporary path redacted from the output.
pub fn dg(dir: &Path, args: &[&str]) -> Run {
    dg_with_env(dir, args, &[])
}

pub fn dg_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let env: Vec<(&str, Option<&str>)> = env.iter().map(|&(k, v)| (k, Some(v))).collect();
    run_binary(Path::new(env!("CARGO_BIN_EXE_dg")), dir, args, &env)
}

/// Runs the binary `bin` (dg, or an example built on the library) as
/// `bin --project <dir> ARGS…` from inside `dir`, without colour and with
/// the temporary path redacted from the output. `env` sets a variable
/// (`Some`) or removes it (`None`).
pub fn run_binary(bin: &Path, dir: &Path, args: &[&str], env: &[(&str, Option<&str>)]) -> Run {
    let mut cmd = command(bin, dir, args);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", bin.display()));
    Run {
        code: out
            .status
            .code()
            .expect("it exited normally, not by a signal"),
        stdout: redact(&String::from_utf8_lossy(&out.stdout), dir),
        stderr: redact(&String::from_utf8_lossy(&out.stderr), dir),
    }
}

/// `dg --project <dir> ARGS…` started in the background from inside `dir`,
/// without colour, with `env` added, its stdin empty and its stdout and
/// stderr piped (read them with `wait_with_output`).
pub fn spawn_dg(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    use std::process::Stdio;
    command(Path::new(env!("CARGO_BIN_EXE_dg")), dir, args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dg starts")
}

/// `bin --project <dir> ARGS…`, to run from inside `dir`, without colour
/// and without the variables of the test's own environment that would
/// change what dg prints.
fn command(bin: &Path, dir: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.current_dir(dir)
        .arg("--project")
        .arg(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("DG_NOW")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("GITHUB_ACTIONS");
    cmd
}

/// Replaces the temporary folder (as given and canonicalised) with `[TMP]`.
pub fn redact(s: &str, dir: &Path) -> String {
    replace_path(s, dir, "[TMP]")
}

/// Replaces the folder `dir` in `s`, as given and canonicalised, with `with`.
pub fn replace_path(s: &str, dir: &Path, with: &str) -> String {
    let mut out = s.to_string();
    let mut paths = vec![dir.to_string_lossy().into_owned()];
    if let Ok(c) = dir.canonicalize() {
        paths.push(c.to_string_lossy().into_owned());
    }
    // Longest first, so a path is not half-replaced by a prefix of it.
    paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in paths {
        out = out.replace(&p, with);
    }
    out
}

/// No input may make dg panic or print a Rust backtrace.
pub fn assert_no_panic(run: &Run) {
    for needle in [
        "panicked",
        "RUST_BACKTRACE",
        "internal error",
        "stack backtrace",
    ] {
        assert!(
            !run.stderr.contains(needle),
            "stderr contains {needle:?}:\n{}",
            run.stderr
        );
    }
}

/// A project in a fresh temporary folder holding `files` (paths relative to
/// the project root; folders are created as needed).
pub fn project(files: &[(&str, &str)]) -> TempDir {
    let tmp = TempDir::new().expect("temp dir");
    write_files(tmp.path(), files);
    tmp
}

/// Writes `files` (paths relative to `root`), creating folders as needed.
pub fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
    }
}

/// A project whose only definitions file is `defs/a.toml`, holding `toml`.
pub fn one_file(toml: &str) -> TempDir {
    project(&[("defs/a.toml", toml)])
}

/// A copy of the folder `rel` (relative to the repository root, e.g.
/// `tests/fixtures/plan/simple` or `examples/sqlite`) in a fresh temporary
/// folder. `rel` must be a folder.
pub fn fixture(rel: &str) -> TempDir {
    let src = repo().join(rel);
    assert!(src.is_dir(), "no fixture {}", src.display());
    let tmp = TempDir::new().expect("temp dir");
    copy_dir(&src, tmp.path());
    tmp
}

/// `dg --now NOW ARGS…`, checked not to have panicked.
pub fn dg_now(dir: &Path, now: &str, args: &[&str]) -> Run {
    dg_now_with_env(dir, now, args, &[])
}

/// `dg --now NOW ARGS…` with extra environment variables, checked not to
/// have panicked.
pub fn dg_now_with_env(dir: &Path, now: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = vec!["--now", now];
    all.extend(args);
    let run = dg_with_env(dir, &all, env);
    assert_no_panic(&run);
    run
}

/// `dg --now NOW materialize --json ARGS…`, checked not to have panicked.
pub fn materialize_json(dir: &Path, now: &str, args: &[&str]) -> Run {
    let mut all = vec!["materialize", "--json"];
    all.extend(args);
    dg_now(dir, now, &all)
}

/// Asserts that `run` exited 0, showing its output when it did not.
pub fn assert_ok(run: &Run) {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

/// Asserts that `text` contains each of `needles`; a failure names the
/// missing one and shows `text`.
#[track_caller]
pub fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

/// Asserts that `run` exited with `code` and that its stderr contains each
/// of `needles`.
#[track_caller]
pub fn assert_fails_with(run: &Run, code: i32, needles: &[&str]) {
    assert_eq!(
        run.code, code,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert_contains(&run.stderr, needles);
}

/// `run`'s stdout as one JSON value.
pub fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\n{}", run.stdout, run.stderr))
}

/// The step of a `--json` run summary (or a plan) with this id.
pub fn step<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    find(&v["steps"], "id", id)
}

/// Asserts that `step` (a step of a `--json` run summary) ended with
/// `status` and an `error` that contains `needle`, showing the step when not.
#[track_caller]
pub fn assert_step_error(step: &serde_json::Value, status: &str, needle: &str) {
    assert_eq!(step["status"], status, "{step:#}");
    let error = step["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {step:#}"));
    assert!(
        error.contains(needle),
        "no {needle:?} in the error of {step:#}"
    );
}

/// The elements of the JSON array `list`; panics, showing it, when it is
/// not an array.
#[track_caller]
pub fn items(list: &serde_json::Value) -> &[serde_json::Value] {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list:#}"))
}

/// The element of the JSON array `list` whose `field` is `value`.
#[track_caller]
pub fn find<'a>(list: &'a serde_json::Value, field: &str, value: &str) -> &'a serde_json::Value {
    items(list)
        .iter()
        .find(|e| e[field] == value)
        .unwrap_or_else(|| panic!("no element with {field} = {value:?} in {list:#}"))
}

/// `field` of every element of the JSON array `list`, as text.
#[track_caller]
pub fn texts<'a>(list: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    items(list)
        .iter()
        .map(|e| {
            e[field]
                .as_str()
                .unwrap_or_else(|| panic!("{field} is not text in {e:#}"))
        })
        .collect()
}

/// `fields` of every element of the JSON array `list`, as text: one row an
/// element.
#[track_caller]
pub fn text_rows<'a>(list: &'a serde_json::Value, fields: &[&str]) -> Vec<Vec<&'a str>> {
    items(list)
        .iter()
        .map(|e| {
            fields
                .iter()
                .map(|f| {
                    e[f].as_str()
                        .unwrap_or_else(|| panic!("{f} is not text in {e:#}"))
                })
                .collect()
        })
        .collect()
}

/// The materialization metadata of `asset` in `show`, the output of
/// `dg runs show ID --json` (which must have succeeded).
pub fn metadata_in(show: &Run, asset: &str) -> serde_json::Value {
    assert_ok(show);
    let show = json(show);
    show["materializations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["asset"] == asset)
        .unwrap_or_else(|| panic!("no materialization of `{asset}` in {show:#}"))["metadata"]
        .clone()
}

/// Every step log of `asset` in the project `dir`, concatenated.
pub fn step_logs(dir: &Path, asset: &str) -> String {
    let mut out = String::new();
    for e in walkdir::WalkDir::new(dir.join(".dg/logs")) {
        let e = e.unwrap();
        if e.file_type().is_file() && e.file_name().to_string_lossy().starts_with(asset) {
            out.push_str(&std::fs::read_to_string(e.path()).unwrap());
        }
    }
    out
}

/// A file's text; panics naming the file when it cannot be read.
pub fn read(path: impl AsRef<Path>) -> String {
    let p = path.as_ref();
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Every file below `root`, relative to it, sorted (empty when `root` does
/// not exist).
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if root.exists() {
        for e in walkdir::WalkDir::new(root) {
            let e = e.unwrap();
            if !e.file_type().is_dir() {
                out.push(e.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Whether a process is gone (no /proc entry, or a zombie nobody reaped).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // `pid (comm) S …`: the state follows the last `)`.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            state.starts_with('Z') || state.starts_with('X')
        }
    }
}
