//! Onboarding: `dg init`, `dg scaffold defs` and `dg completions`, run as the
//! real binary in temporary folders.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use tempfile::TempDir;

use crate::support::{
    Run, assert_contains, assert_fails_with, assert_no_panic, dg, dg_with_env, redact, repo,
};

/// Runs `dg ARGS…` in `cwd` without `--project`, like a person would.
fn dg_in(cwd: &Path, args: &[&str]) -> Run {
    let out = Command::cargo_bin("dg")
        .expect("the dg binary is built")
        .current_dir(cwd)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("DG_NOW")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("dg runs");
    Run {
        code: out.status.code().expect("dg exited normally"),
        stdout: redact(&String::from_utf8_lossy(&out.stdout), cwd),
        stderr: redact(&String::from_utf8_lossy(&out.stderr), cwd),
    }
}

/// Every file and folder under `dir`, with the content of files: what a
/// command that must change nothing must leave as it was.
fn tree(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            if entry.file_type().expect("file type").is_dir() {
                out.insert(format!("{rel}/"), None);
                walk(root, &path, out);
            } else {
                out.insert(rel, Some(std::fs::read(&path).expect("read file")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn names(t: &BTreeMap<String, Option<Vec<u8>>>) -> Vec<&str> {
    t.keys().map(String::as_str).collect()
}

/// A fresh project made by `dg init`, in `<tmp>/proj`.
fn new_project() -> (std::path::PathBuf, TempDir) {
    let tmp = TempDir::new().expect("temp dir");
    let run = dg_in(tmp.path(), &["init", "proj"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    (tmp.path().canonicalize().unwrap().join("proj"), tmp)
}

fn check_passes(dir: &Path) {
    let run = dg(dir, &["check", "defs"]);
    assert_eq!(run.code, 0, "dg check defs:\n{}{}", run.stdout, run.stderr);
    assert_no_panic(&run);
    assert_contains(&run.stdout, &["all valid"]);
}

#[test]
fn init_then_check_then_materialize_every_partition() {
    let tmp = TempDir::new().expect("temp dir");
    let run = dg_in(tmp.path(), &["init", "proj"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_no_panic(&run);
    assert_eq!(run.stderr, "");
    assert_contains(
        &run.stdout,
        &["Next steps", "cd proj", "dg materialize --all-partitions"],
    );
    let proj = tmp.path().join("proj");
    assert_eq!(
        names(&tree(&proj)),
        [
            ".dg/",
            ".dg/schema/",
            ".dg/schema/config.json",
            ".dg/schema/defs.json",
            ".gitignore",
            "defs/",
            "defs/example.toml",
            "dg.toml"
        ]
    );
    // Editors find the schemas through the first lines of the files.
    for (file, schema) in [
        ("dg.toml", ".dg/schema/config.json"),
        ("defs/example.toml", ".dg/schema/defs.json"),
    ] {
        let text = std::fs::read_to_string(proj.join(file)).unwrap();
        let first = text.lines().next().unwrap();
        let rel = first.strip_prefix("#:schema ").expect("a #:schema line");
        let target = proj.join(file).parent().unwrap().join(rel);
        assert_eq!(
            std::fs::canonicalize(&target).unwrap(),
            std::fs::canonicalize(proj.join(schema)).unwrap()
        );
    }
    let gitignore = std::fs::read_to_string(proj.join(".gitignore")).unwrap();
    assert!(gitignore.lines().any(|l| l == ".dg/"), "{gitignore}");

    check_passes(&proj);
    let started = Instant::now();
    let run = dg(&proj, &["materialize", "--all-partitions"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_no_panic(&run);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the example should run in seconds, took {:?}",
        started.elapsed()
    );
    assert_contains(&run.stdout, &["14 succeeded"]);
    for day in 1..=7 {
        let key = format!("2024-01-0{day}");
        let events = proj.join(format!(".dg/storage/events/{key}.csv"));
        let counts = proj.join(format!(".dg/storage/daily_counts/{key}.csv"));
        assert!(events.is_file(), "{} is missing", events.display());
        assert_eq!(
            std::fs::read_to_string(&counts).unwrap(),
            format!("day,events\n{key},3\n")
        );
    }

    // The walk of docs/getting-started.md: a backfill, then the rest.
    let run = dg(&proj, &["materialize", "--missing", "--all-partitions"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("nothing to do"),
        "{}{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn init_without_dir_uses_the_current_folder_and_backfill_then_missing_works() {
    let tmp = TempDir::new().expect("temp dir");
    let dir = tmp.path();
    let run = dg(dir, &["init"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("cd "), "{}", run.stdout);
    assert!(dir.join("dg.toml").is_file());
    let run = dg(
        dir,
        &[
            "materialize",
            "--partition-range",
            "2024-01-02...2024-01-04",
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_contains(&run.stdout, &["6 succeeded"]);
    let run = dg(dir, &["status"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_contains(&run.stdout, &["4 missing"]);
    let run = dg(dir, &["materialize", "--missing", "--all-partitions"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_contains(&run.stdout, &["8 succeeded"]);
}

#[test]
fn init_creates_missing_folders_and_keeps_an_existing_gitignore() {
    let tmp = TempDir::new().expect("temp dir");
    let run = dg_in(tmp.path(), &["init", "a/b/c"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(tmp.path().join("a/b/c/defs/example.toml").is_file());

    // An empty defs/ and a .gitignore of its own are fine.
    let dir = tmp.path().join("existing");
    std::fs::create_dir_all(dir.join("defs")).unwrap();
    std::fs::write(dir.join(".gitignore"), "target").unwrap();
    let run = dg_in(tmp.path(), &["init", "existing"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join(".gitignore")).unwrap(),
        "target\n\n# dg's state folder\n.dg/\n"
    );
    check_passes(&dir);
}

#[test]
fn init_refuses_a_folder_that_holds_a_project() {
    let (proj, _tmp) = new_project();
    let before = tree(&proj);
    let run = dg(&proj, &["init"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_no_panic(&run);
    assert_contains(
        &run.stderr,
        &["already holds a dg project", "nothing was changed"],
    );
    assert_eq!(tree(&proj), before);

    // No dg.toml, but definitions.
    let tmp = TempDir::new().expect("temp dir");
    std::fs::create_dir(tmp.path().join("defs")).unwrap();
    std::fs::write(
        tmp.path().join("defs/mine.toml"),
        "[assets.a]\nshell = \"true\"\n",
    )
    .unwrap();
    let before = tree(tmp.path());
    let run = dg_in(tmp.path(), &["init", "."]);
    assert_fails_with(&run, 1, &["already holds definitions"]);
    assert_eq!(tree(tmp.path()), before);
}

#[test]
fn scaffold_every_type_then_check_passes() {
    let (proj, _tmp) = new_project();
    let cases: &[&[&str]] = &[
        // asset
        &["asset", "plain"],
        &[
            "dagster.asset",
            "raw/events_copy",
            "--name",
            "raw/events_copy",
        ],
        &["asset", "cmd", "--command", "python3 'my job.py' --full"],
        &["asset", "query", "--sql", "select 1"],
        &[
            "asset",
            "scripted",
            "--shell",
            "echo \"x\" > \"$DG_OUTPUT\"",
        ],
        // resources, before the asset that uses one
        &["resources", "store"],
        &["dagster.resources", "mem", "--type", "memory"],
        &["resource", "lite", "--type", "sqlite"],
        &["resources", "pg", "--type", "postgres"],
        #[cfg(feature = "duckdb")]
        &["resources", "duck", "--type", "duckdb"],
        &["resources", "plugin", "--type", "command"],
        &["resources", "files", "--type", "fs"],
        &["resources", "lake", "--type", "object_store"],
        &[
            "asset",
            "reports/summary",
            "--partitions",
            "daily",
            "--deps",
            "events,plain",
            "--io-manager",
            "store",
            "--group",
            "reports",
        ],
        // partitions
        &["partitions", "p_default"],
        &["partitions", "p_hourly", "--type", "hourly"],
        &[
            "partitions",
            "p_daily",
            "--type",
            "daily",
            "--start",
            "2024-01-01",
            "--end",
            "2024-02-01",
            "--timezone",
            "Europe/Berlin",
        ],
        &["partitions", "p_weekly", "--type", "weekly"],
        &[
            "partitions",
            "p_monthly",
            "--type",
            "monthly",
            "--start",
            "2023-06-01",
        ],
        &[
            "partitions",
            "p_cron",
            "--type",
            "cron",
            "--cron",
            "0 */6 * * *",
        ],
        &["partitions", "p_cron_daily", "--cron", "30 9 * * 1-5"],
        &[
            "partitions",
            "p_static",
            "--type",
            "static",
            "--keys",
            "us,eu,apac",
        ],
        &["partitions", "p_static2", "--keys", "a,b"],
        &["partitions", "p_dynamic", "--type", "dynamic"],
    ];
    for args in cases {
        let mut full = vec!["scaffold", "defs"];
        full.extend_from_slice(args);
        let run = dg_with_env(&proj, &full, &[("DG_NOW", "2025-06-01T00:00:00Z")]);
        assert_eq!(run.code, 0, "{full:?}:\n{}", run.stderr);
        assert_no_panic(&run);
        assert!(
            run.stdout.contains("created defs/"),
            "{full:?}: {}",
            run.stdout
        );
        check_passes(&proj);
    }
    for file in [
        "plain.toml",
        "raw/events_copy.toml",
        "reports/summary.toml",
        "p_cron.toml",
    ] {
        assert!(proj.join("defs").join(file).is_file(), "{file}");
    }
    let summary = std::fs::read_to_string(proj.join("defs/reports/summary.toml")).unwrap();
    for line in [
        "[assets.summary]",
        "partitions = \"daily\"",
        "deps = [\"events\", \"plain\"]",
        "io_manager = \"store\"",
        "group = \"reports\"",
    ] {
        assert!(summary.lines().any(|l| l == line), "{line}:\n{summary}");
    }
    let copy = std::fs::read_to_string(proj.join("defs/raw/events_copy.toml")).unwrap();
    assert!(copy.contains("[assets.\"raw/events_copy\"]"), "{copy}");
    let cmd = std::fs::read_to_string(proj.join("defs/cmd.toml")).unwrap();
    assert!(
        cmd.contains("command = [\"python3\", \"my job.py\", \"--full\"]"),
        "{cmd}"
    );
    let pg = std::fs::read_to_string(proj.join("defs/pg.toml")).unwrap();
    assert!(pg.contains("url = \"${env:DATABASE_URL}\""), "{pg}");
    #[cfg(feature = "duckdb")]
    {
        let duck = std::fs::read_to_string(proj.join("defs/duck.toml")).unwrap();
        assert!(
            duck.contains("type = \"duckdb\"") && duck.contains("path = \"data/duck.duckdb\""),
            "{duck}"
        );
    }
    let hourly = std::fs::read_to_string(proj.join("defs/p_hourly.toml")).unwrap();
    assert!(hourly.contains("start = \"2025-01-01-00:00\""), "{hourly}");
    // Every field a template writes has a comment just above it.
    for file in ["plain.toml", "pg.toml", "p_daily.toml", "p_static.toml"] {
        let text = std::fs::read_to_string(proj.join("defs").join(file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.contains(" = ") && !l.starts_with('#') && !l.starts_with("type") {
                assert!(
                    i > 0 && lines[i - 1].starts_with('#'),
                    "{file}: `{l}` has no comment"
                );
            }
        }
    }

    // The default templates run.
    let run = dg(&proj, &["materialize", "--select", "plain or scripted"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        std::fs::read_to_string(proj.join(".dg/storage/plain.csv")).unwrap(),
        "id,value\n1,hello\n"
    );
    let run = dg(
        &proj,
        &[
            "materialize",
            "--select",
            "+summary",
            "--partition",
            "2024-01-02",
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn scaffold_never_overwrites() {
    let (proj, _tmp) = new_project();
    for path in ["example", "example.toml"] {
        let before = tree(&proj);
        let run = dg(&proj, &["scaffold", "defs", "asset", path]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_no_panic(&run);
        assert_contains(&run.stderr, &["`defs/example.toml` already exists"]);
        assert_eq!(tree(&proj), before);
    }
}

#[test]
fn scaffold_an_unknown_type_suggests_and_lists_the_known_ones() {
    let (proj, _tmp) = new_project();
    let before = tree(&proj);
    let run = dg(&proj, &["scaffold", "defs", "assett", "x"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_no_panic(&run);
    assert_contains(
        &run.stderr,
        &["unknown definition type `assett`", "did you mean `asset`?"],
    );
    assert_contains(
        &run.stderr,
        &[
            "`resources`",
            "`partitions`",
            "`dagster.asset`",
            "`resource`",
        ],
    );
    assert_eq!(tree(&proj), before);

    let run = dg(
        &proj,
        &["scaffold", "defs", "partitions", "p", "--type", "dayly"],
    );
    assert_fails_with(&run, 2, &["did you mean `daily`?"]);
    let run = dg(
        &proj,
        &["scaffold", "defs", "resources", "r", "--type", "sqlit"],
    );
    assert_fails_with(&run, 2, &["did you mean `sqlite`?"]);
    assert_eq!(tree(&proj), before);
}

#[test]
fn scaffold_refuses_invalid_paths_and_creates_nothing() {
    let tmp = TempDir::new().expect("temp dir");
    let outer = tmp.path().canonicalize().unwrap();
    let proj = outer.join("proj");
    std::fs::create_dir(&proj).unwrap();
    assert_eq!(dg(&proj, &["init"]).code, 0);
    let before = tree(&outer);
    for (path, says) in [
        ("../outside", "leaves the definitions folder"),
        ("raw/../../outside", "leaves the definitions folder"),
        ("/abs", "is absolute"),
        ("raw/", "names a folder"),
        (".hidden", "hidden file"),
        ("defs/raw/events", "starts with the definitions folder"),
    ] {
        let run = dg(&proj, &["scaffold", "defs", "asset", path]);
        assert_eq!(run.code, 2, "{path}: {}", run.stderr);
        assert_no_panic(&run);
        assert!(run.stderr.contains(says), "{path}: {}", run.stderr);
        assert!(run.stderr.contains("help:"), "{path}: {}", run.stderr);
        assert_eq!(tree(&outer), before, "{path}");
    }
    assert!(!Path::new("/abs.toml").exists());

    // A symbolic link out of the definitions folder.
    #[cfg(unix)]
    {
        let away = outer.join("away");
        std::fs::create_dir(&away).unwrap();
        std::os::unix::fs::symlink(&away, proj.join("defs/link")).unwrap();
        let run = dg(&proj, &["scaffold", "defs", "asset", "link/x"]);
        assert_fails_with(&run, 2, &["symbolic link"]);
        assert_eq!(std::fs::read_dir(&away).unwrap().count(), 0);
    }
}

#[test]
fn scaffold_refuses_unknown_references_and_writes_nothing() {
    let (proj, _tmp) = new_project();
    let before = tree(&proj);
    let run = dg(
        &proj,
        &["scaffold", "defs", "asset", "raw/x", "--partitions", "nope"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_no_panic(&run);
    assert_contains(
        &run.stderr,
        &[
            "error: asset `x` refers to unknown partitions `nope`",
            " --> defs/raw/x.toml:",
            "nothing was written",
        ],
    );
    assert_eq!(tree(&proj), before, "not even the folder `defs/raw/`");

    for (flag, value, says) in [
        ("--deps", "events,evnts", "evnts"),
        ("--io-manager", "warehouse", "warehouse"),
        ("--partitions", "dayly", "did you mean `daily`?"),
    ] {
        let run = dg(&proj, &["scaffold", "defs", "asset", "y", flag, value]);
        assert_eq!(run.code, 2, "{flag}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{flag}: {}", run.stderr);
        assert_eq!(tree(&proj), before, "{flag}");
    }

    // A duplicate name, and a start the key format cannot read.
    let run = dg(&proj, &["scaffold", "defs", "partitions", "more/daily"]);
    assert_fails_with(&run, 2, &["defined twice"]);
    let run = dg(
        &proj,
        &[
            "scaffold",
            "defs",
            "partitions",
            "h",
            "--type",
            "hourly",
            "--start",
            "2024-01-01",
        ],
    );
    assert_fails_with(&run, 2, &["2024-01-01-00:00"]);
    assert_eq!(tree(&proj), before);
}

#[test]
fn scaffold_usage_errors_exit_2() {
    let (proj, _tmp) = new_project();
    let before = tree(&proj);
    for args in [
        &[
            "scaffold",
            "defs",
            "resources",
            "r",
            "--partitions",
            "daily",
        ][..],
        &["scaffold", "defs", "asset", "a", "--type", "fs"],
        &[
            "scaffold", "defs", "asset", "a", "--shell", "true", "--sql", "x",
        ],
        &["scaffold", "defs", "partitions", "p", "--type", "cron"],
        &["scaffold", "defs", "partitions", "p", "--type", "static"],
        &[
            "scaffold",
            "defs",
            "partitions",
            "p",
            "--type",
            "daily",
            "--keys",
            "a",
        ],
        &[
            "scaffold",
            "defs",
            "partitions",
            "p",
            "--type",
            "static",
            "--keys",
            "a",
            "--start",
            "2024-01-01",
        ],
        &[
            "scaffold",
            "defs",
            "asset",
            "a",
            "--command",
            "python3 'unterminated",
        ],
        &["scaffold", "defs", "asset"],
    ] {
        let run = dg(&proj, args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert_no_panic(&run);
        assert!(run.stderr.contains("error"), "{args:?}: {}", run.stderr);
        assert_eq!(tree(&proj), before, "{args:?}");
    }
}

#[test]
fn scaffold_outside_a_project_says_to_run_init() {
    let tmp = TempDir::new().expect("temp dir");
    let run = dg_in(tmp.path(), &["scaffold", "defs", "asset", "x"]);
    assert_fails_with(&run, 2, &["dg init"]);
    assert!(tree(tmp.path()).is_empty());
}

#[test]
fn completions_for_each_shell() {
    let tmp = TempDir::new().expect("temp dir");
    for shell in ["bash", "zsh", "fish"] {
        let run = dg_in(tmp.path(), &["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert_no_panic(&run);
        assert!(run.stdout.contains("materialize"), "{shell}");
        assert!(run.stdout.contains("scaffold"), "{shell}");
    }
    let run = dg_in(tmp.path(), &["completions", "tcsh"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn getting_started_shows_what_init_writes() {
    let (proj, _tmp) = new_project();
    let doc = std::fs::read_to_string(repo().join("docs/getting-started.md")).unwrap();
    for file in ["dg.toml", "defs/example.toml"] {
        let text = std::fs::read_to_string(proj.join(file)).unwrap();
        assert!(
            doc.contains(&text),
            "docs/getting-started.md does not show `{file}` as `dg init` writes it:\n{text}"
        );
    }
}
