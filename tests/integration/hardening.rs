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

#[test]
fn offsets_beyond_the_bounds_are_located_errors() {
    let dir = project(
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
    let dir = project(
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
