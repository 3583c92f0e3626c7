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

use assert_cmd::Command;
use tempfile::TempDir;

/// The repository root (where `Cargo.toml` is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
    let mut cmd = Command::cargo_bin("dg").expect("the dg binary is built");
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
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("dg runs");
    Run {
        code: out
            .status
            .code()
            .expect("dg exited normally, not by a signal"),
        stdout: redact(&String::from_utf8_lossy(&out.stdout), dir),
        stderr: redact(&String::from_utf8_lossy(&out.stderr), dir),
    }
}

/// Replaces the temporary folder (as given and canonicalised) with `[TMP]`.
pub fn redact(s: &str, dir: &Path) -> String {
    let mut out = s.to_string();
    let mut paths = vec![dir.to_string_lossy().into_owned()];
    if let Ok(c) = dir.canonicalize() {
        paths.push(c.to_string_lossy().into_owned());
    }
    // Longest first, so a path is not half-replaced by a prefix of it.
    paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in paths {
        out = out.replace(&p, "[TMP]");
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

/// Asserts that `run` exited 0, showing its output when it did not.
pub fn assert_ok(run: &Run) {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

/// `run`'s stdout as one JSON value.
pub fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\n{}", run.stdout, run.stderr))
}

/// The step of a `--json` run summary (or a plan) with this id.
pub fn step<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step `{id}` in {v:#}"))
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
