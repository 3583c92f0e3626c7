//! Hardening (issue 20): each test is a defect found by trying dg as a
//! hostile user and a flaky machine would, checked through the real binary.

use std::path::Path;

use tempfile::TempDir;

use crate::{Run, assert_no_panic, dg};

/// A project whose `defs/a.toml` is `text`.
fn project(text: &str) -> TempDir {
    let tmp = TempDir::new().expect("temp dir");
    std::fs::create_dir_all(tmp.path().join("defs")).unwrap();
    std::fs::write(tmp.path().join("defs/a.toml"), text).unwrap();
    tmp
}

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
        let dir = project(&format!(
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
        project("[assets.a]\nshell = \"echo x > \\\"$DG_OUTPUT\\\"\"\ntimeout = \"365 days\"\n");
    let run = dg(dir.path(), &["materialize"]);
    assert_no_panic(&run);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
}
