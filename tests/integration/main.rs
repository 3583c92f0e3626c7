//! Integration tests: the real `dg` binary on fixture projects.
//!
//! Each test copies a fixture into its own temporary folder, runs `dg` there
//! with `--project` pointing at it and `NO_COLOR=1`, and looks at the exit
//! code, stdout and stderr. Rendered diagnostics are insta snapshots
//! (`tests/integration/snapshots/`); review changes with `cargo insta review`
//! or accept them with `INSTA_UPDATE=always cargo test` after reading them.
//!
//! All integration tests live in this one binary so the build stays fast.

mod check_defs;
mod dagster_repros;
mod docs;
mod example;
mod examples;
mod fixes;
mod history;
mod history_postgres;
mod integrity;
mod jobs;
mod materialize;
mod onboarding;
mod plan;
mod plugins;
mod postgres_manager;
mod roundtrip;
mod sql_compute;
mod sql_in_db;
mod sql_in_pg;
mod sqlite_manager;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

/// The repository root (where `Cargo.toml` is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of `tests/fixtures/malformed/<case>` in a fresh temporary folder.
pub fn malformed(case: &str) -> TempDir {
    let src = repo().join("tests/fixtures/malformed").join(case);
    assert!(src.is_dir(), "no fixture {}", src.display());
    let tmp = TempDir::new().expect("temp dir");
    copy_dir(&src, tmp.path());
    tmp
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
        .env_remove("CLICOLOR_FORCE");
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
