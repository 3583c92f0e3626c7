//! The custom I/O manager examples (`examples/*.rs`): each binary is `dg`
//! with one or two more resource types, run on a copy of its project
//! (`examples/<name>/`). `check defs` passes, `materialize` succeeds, and
//! what the manager stored or loaded is checked on disk and in the step logs.
//!
//! The binaries are built by `cargo test`. When this test runs alone
//! (`cargo test --test integration examples`) and a binary is missing or
//! older than its sources, it is built here with `cargo build --example`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    Run, assert_contains, assert_fails_with, assert_no_panic, fixture, repo, run_binary,
};

// Helpers ---------------------------------------------------------------

/// The newest modification time of the files that make up example `name`.
fn sources_mtime(name: &str) -> SystemTime {
    let root = repo();
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut see = |p: &Path| {
        if let Ok(t) = std::fs::metadata(p).and_then(|m| m.modified()) {
            newest = newest.max(t);
        }
    };
    see(&root.join("Cargo.toml"));
    see(&root.join("Cargo.lock"));
    see(&root.join("examples").join(format!("{name}.rs")));
    for e in walkdir::WalkDir::new(root.join("src"))
        .into_iter()
        .flatten()
    {
        if e.file_type().is_file() {
            see(e.path());
        }
    }
    newest
}

/// The path of the example binary `name`, built if it is missing or stale.
fn example_bin(name: &str) -> PathBuf {
    // Builds run one at a time (cargo would serialise them anyway).
    static BUILD: Mutex<()> = Mutex::new(());
    // This test binary is `<target>/<profile>/deps/integration-…`.
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let bin = profile_dir.join("examples").join(name);
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if built.is_some_and(|t| t >= sources_mtime(name)) {
        return bin;
    }
    let target_dir = profile_dir.parent().expect("<target>");
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.current_dir(repo())
        .args(["build", "--quiet", "--example", name])
        .env("CARGO_TARGET_DIR", target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => {}
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "cargo build --example {name} failed");
    assert!(bin.is_file(), "no {} after building it", bin.display());
    bin
}

fn project(name: &str) -> TempDir {
    let tmp = fixture(&format!("examples/{name}"));
    assert!(tmp.path().join("defs").is_dir(), "no examples/{name}/defs");
    tmp
}

/// Runs the example binary `name` as `dg --project <dir> ARGS…` from inside
/// `dir`, like [`crate::support::dg_with_env`] runs `dg`.
fn run(name: &str, dir: &Path, args: &[&str], env: &[(&str, Option<&str>)]) -> Run {
    let run = run_binary(&example_bin(name), dir, args, env);
    assert_no_panic(&run);
    run
}

/// `check defs` passes without warnings.
fn check_defs_passes(name: &str, dir: &Path, env: &[(&str, Option<&str>)]) {
    let r = run(name, dir, &["check", "defs"], env);
    assert_eq!(r.code, 0, "{name}: check defs\n{}{}", r.stdout, r.stderr);
    assert_eq!(r.stderr, "", "{name}: check defs warns");
    assert_contains(&r.stdout, &["all valid"]);
}

/// `materialize ARGS… --json` succeeds; the run id.
fn materialize(name: &str, dir: &Path, args: &[&str], env: &[(&str, Option<&str>)]) -> String {
    let mut all = vec!["materialize"];
    all.extend(args);
    all.push("--json");
    let r = run(name, dir, &all, env);
    assert_eq!(r.code, 0, "{name}: materialize {args:?}\n{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).expect("a JSON summary");
    assert_eq!(v["status"], "success", "{v:#}");
    v["run_id"].as_str().expect("run_id").to_string()
}

/// The log of one step of a run (`.dg/logs/<run>/<step id>.log`).
fn step_log(dir: &Path, run_id: &str, step_id: &str) -> String {
    let path = dir
        .join(".dg/logs")
        .join(run_id)
        .join(format!("{step_id}.log"));
    read(&path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file below `root`, relative to it, as `/`-joined strings, sorted.
fn files_under(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.expect("dir entry"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    out.sort();
    out
}

/// The `metadata` recorded with the latest materialization of a partition
/// (`""` when unpartitioned), from the project's state database.
fn recorded_metadata(dir: &Path, asset: &str, partition: &str) -> Value {
    let db = rusqlite::Connection::open(dir.join(".dg/state.db")).expect("state.db");
    let text: String = db
        .query_row(
            "SELECT metadata FROM materializations WHERE asset = ?1 AND partition = ?2
             ORDER BY id DESC LIMIT 1",
            [asset, partition],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("no materialization of {asset} [{partition}]: {e}"));
    serde_json::from_str(&text).expect("metadata is JSON")
}

// 1. path_prefix: ConfigurableIOManager with `path_prefix` --------------

#[test]
fn path_prefix_stores_under_root_and_prefix() {
    let dir = project("path_prefix");
    let d = dir.path();
    check_defs_passes("path_prefix", d, &[]);
    let run_id = materialize("path_prefix", d, &[], &[]);

    assert_eq!(
        files_under(&d.join("lake")),
        ["team_a/v1/order_count.csv", "team_a/v1/raw/orders.csv"]
    );
    assert_eq!(
        read(&d.join("lake/team_a/v1/raw/orders.csv")),
        "id,amount\n1,9.5\n2,3\n3,4.5\n"
    );
    // `order_count` read `raw/orders` back through the manager's load_input.
    assert_eq!(
        read(&d.join("lake/team_a/v1/order_count.csv")),
        "orders\n3\n"
    );
    // Nothing went to the default storage.
    assert!(!d.join(".dg/storage").exists());
    let log = step_log(d, &run_id, "raw%2Forders");
    assert!(
        log.contains("prefixed_csv: stored `raw/orders` at ") && log.contains("lake/team_a/v1/"),
        "{log}"
    );
}

#[test]
fn custom_manager_config_is_validated_like_a_builtin() {
    let dir = project("path_prefix");
    let d = dir.path();
    let resources = d.join("defs/resources.toml");
    let text = read(&resources);
    std::fs::write(
        &resources,
        text.replace("path_prefix = [", "path_prefx = ["),
    )
    .unwrap();
    let r = run("path_prefix", d, &["check", "defs"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "error: unknown field `path_prefx` in resource `io_manager` (type `prefixed_csv`)\n \
             --> defs/resources.toml:6:1\n"
        ),
        "{}",
        r.stderr
    );
    assert_contains(&r.stderr, &["help: did you mean `path_prefix`?"]);

    // A wrong type points at the value.
    std::fs::write(
        &resources,
        text.replace(
            "path_prefix = [\"team_a\", \"v1\"]",
            "path_prefix = \"team_a\"",
        ),
    )
    .unwrap();
    let r = run("path_prefix", d, &["check", "defs"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "error: invalid `path_prefix` in resource `io_manager` (type `prefixed_csv`)"
        ) && r.stderr.contains("--> defs/resources.toml:6:15"),
        "{}",
        r.stderr
    );

    // A missing required field of a factory's config.
    let dir = project("input_loader");
    let resources = dir.path().join("defs/resources.toml");
    let text = read(&resources);
    std::fs::write(&resources, text.replace("column = \"amount\"\n", "")).unwrap();
    let r = run("input_loader", dir.path(), &["check", "defs"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "error: missing field `column` in resource `amounts` (type `column_loader`)\n \
             --> defs/resources.toml:"
        ),
        "{}",
        r.stderr
    );

    // The plain `dg` binary does not know the type.
    let dir = project("path_prefix");
    let r = crate::support::dg(dir.path(), &["check", "defs"]);
    assert_fails_with(
        &r,
        2,
        &["unknown resource type `prefixed_csv` in resource `io_manager`"],
    );
}

// 2. external_factory: ConfigurableIOManagerFactory with a cache ---------

const TOKEN: &[(&str, Option<&str>)] = &[("API_TOKEN", Some("secret"))];

#[test]
fn external_factory_caches_within_a_run() {
    let dir = project("external_factory");
    let d = dir.path();
    check_defs_passes("external_factory", d, TOKEN);

    // The run that stores `orders` caches it (write-through): both readers hit.
    let run_id = materialize("external_factory", d, &[], TOKEN);
    assert_eq!(
        files_under(&d.join("external_api")),
        ["ada_orders.csv", "order_count.csv", "orders.csv"]
    );
    assert_eq!(read(&d.join("external_api/order_count.csv")), "orders\n3\n");
    assert_eq!(
        read(&d.join("external_api/ada_orders.csv")),
        "id,customer,amount\n1,ada,9.5\n3,ada,4.5\n"
    );
    for step in ["order_count", "ada_orders"] {
        let log = step_log(d, &run_id, step);
        assert!(log.contains("external: cache hit for `orders`"), "{log}");
        assert!(!log.contains("cache miss"), "{log}");
    }
    assert!(step_log(d, &run_id, "orders").contains("external: stored `orders`: 3 rows"));

    // A new run has a new manager and an empty cache: the first reader
    // fetches from the external API, the second one hits the cache.
    let run_id = materialize(
        "external_factory",
        d,
        &["--select", "order_count or ada_orders", "--jobs", "1"],
        TOKEN,
    );
    let logs = [
        step_log(d, &run_id, "order_count"),
        step_log(d, &run_id, "ada_orders"),
    ]
    .concat();
    assert_eq!(
        logs.matches("external: cache miss for `orders`: fetched from the external API")
            .count(),
        1,
        "{logs}"
    );
    assert_eq!(
        logs.matches("external: cache hit for `orders` (1 in this run)")
            .count(),
        1,
        "{logs}"
    );
}

#[test]
fn external_factory_token_comes_from_the_environment() {
    let dir = project("external_factory");
    let d = dir.path();
    // Unset: a warning for `check defs`, an error before anything runs.
    let r = run(
        "external_factory",
        d,
        &["check", "defs"],
        &[("API_TOKEN", None)],
    );
    assert_fails_with(
        &r,
        0,
        &["warning: environment variable `API_TOKEN` is not set"],
    );
    let r = run(
        "external_factory",
        d,
        &["materialize"],
        &[("API_TOKEN", None)],
    );
    assert_fails_with(&r, 2, &["`API_TOKEN` is not set"]);
    // Empty: the factory refuses it, and nothing runs either.
    let r = run(
        "external_factory",
        d,
        &["materialize"],
        &[("API_TOKEN", Some(""))],
    );
    assert_fails_with(&r, 2, &["the external API refuses an empty `api_token`"]);
    assert!(!d.join("external_api").exists());
}

// 3. partitioned: partition keys and time windows in paths ---------------

#[test]
fn partitioned_stores_by_window_year_and_month() {
    let dir = project("partitioned");
    let d = dir.path();
    check_defs_passes("partitioned", d, &[]);
    let now = ["--now", "2024-02-02T00:00:00Z"];
    let mut args = vec!["--select", "events or daily_summary"];
    args.extend(["--partition-range", "2024-01-31...2024-02-01"]);
    let run_id = materialize("partitioned", d, &[&now[..], &args].concat(), &[]);
    materialize(
        "partitioned",
        d,
        &[&now[..], &["--select", "regions", "--all-partitions"]].concat(),
        &[],
    );

    assert_eq!(
        files_under(&d.join("data")),
        [
            "daily_summary/2024/01/2024-01-31.csv",
            "daily_summary/2024/02/2024-02-01.csv",
            "events/2024/01/2024-01-31.csv",
            "events/2024/02/2024-02-01.csv",
            "regions/eu.csv",
            "regions/us.csv",
        ]
    );
    assert_eq!(
        read(&d.join("data/events/2024/02/2024-02-01.csv")),
        "day,start\n2024-02-01,2024-02-01T00:00:00+00:00\n"
    );
    // `daily_summary` loaded the same day of `events` through load_input.
    assert_eq!(
        read(&d.join("data/daily_summary/2024/01/2024-01-31.csv")),
        "day,events\n2024-01-31,1\n"
    );
    assert_eq!(read(&d.join("data/regions/eu.csv")), "region\neu\n");

    // What handle_output returned is recorded with the materialization.
    let md = recorded_metadata(d, "events", "2024-01-31");
    assert_eq!(md["dg/rows"], 1, "{md}");
    assert!(
        md["dg/path"]
            .as_str()
            .is_some_and(|p| p.ends_with("data/events/2024/01/2024-01-31.csv")),
        "{md}"
    );
    assert!(md["dg/bytes"].as_u64().is_some_and(|b| b > 0), "{md}");
    let log = step_log(d, &run_id, "events[2024-01-31]");
    assert!(
        log.contains(
            "partitioned_csv: stored `events` partition `2024-01-31` \
             (window 2024-01-31T00:00:00+00:00 to 2024-02-01T00:00:00+00:00)"
        ),
        "{log}"
    );
}

// 4. input_loader: a per-input manager on another manager's paths --------

#[test]
fn input_loader_hands_the_step_one_column() {
    let dir = project("input_loader");
    let d = dir.path();
    check_defs_passes("input_loader", d, &[]);
    let run_id = materialize("input_loader", d, &[], &[]);

    // Team A's manager stored `orders` at its path…
    assert_eq!(files_under(&d.join("team_a")), ["storage/orders.csv"]);
    let full = "id,customer,amount\n1,ada,9.5\n2,bob,3.25\n3,ada,4.5\n";
    assert_eq!(read(&d.join("team_a/storage/orders.csv")), full);
    // …its own load_input hands over the whole table…
    assert_eq!(read(&d.join(".dg/storage/orders_copy.csv")), full);
    // …and the input manager found it through the same path logic and
    // handed over one column.
    assert_eq!(
        read(&d.join(".dg/storage/order_amounts.csv")),
        "amount\n9.5\n3.25\n4.5\n"
    );
    let log = step_log(d, &run_id, "order_amounts");
    assert!(
        log.contains("column_loader: input `orders` gets column `amount` of ")
            && log.contains("team_a/storage/orders.csv (3 rows)"),
        "{log}"
    );

    // The plan says which manager loads the input.
    let r = run("input_loader", d, &["plan", "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_contains(&r.stdout, &["\"amounts\""]);
}

// 5. many_partitions: a daily asset loads 24 hourly partitions -----------

#[test]
fn many_partitions_loads_24_hours_in_order() {
    let dir = project("many_partitions");
    let d = dir.path();
    check_defs_passes("many_partitions", d, &[]);
    let now = ["--now", "2022-01-02T00:00:00Z"];
    let hours: Vec<String> = (0..24).map(|h| format!("2022-01-01-{h:02}:00")).collect();

    // The upstream first, in a run of its own (the guide's source asset)…
    let range = format!("{}...{}", hours[0], hours[23]);
    materialize(
        "many_partitions",
        d,
        &[
            &now[..],
            &["--select", "upstream_asset", "--partition-range", &range],
        ]
        .concat(),
        &[],
    );
    let mut names: Vec<String> = hours.iter().map(|h| format!("{h}.jsonl")).collect();
    names.sort();
    assert_eq!(files_under(&d.join("lake/upstream_asset")), names);
    assert_eq!(
        read(&d.join("lake/upstream_asset/2022-01-01-07:00.jsonl")),
        "{\"date\":\"2022-01-01-07:00\"}\n"
    );

    // …then the day, which loads the 24 stored hours through load_input.
    let run_id = materialize(
        "many_partitions",
        d,
        &[
            &now[..],
            &["--select", "downstream_asset", "--partition", "2022-01-01"],
        ]
        .concat(),
        &[],
    );
    let expected: String = hours
        .iter()
        .map(|h| format!("{{\"date\":\"{h}\"}}\n"))
        .collect();
    assert_eq!(
        read(&d.join("lake/downstream_asset/2022-01-01.jsonl")),
        expected
    );
    let log = step_log(d, &run_id, "downstream_asset[2022-01-01]");
    assert!(
        log.contains(
            "jsonl_partitions: input `upstream_asset` loads 24 partitions of `upstream_asset`: \
             2022-01-01-00:00 to 2022-01-01-23:00"
        ),
        "{log}"
    );
}

// The guide in docs/io-managers.md quotes the examples ---------------------

/// The fenced blocks of a Markdown text: (language, body).
fn fences(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => open = Some((lang.trim().to_string(), String::new())),
            (Some(_), Some("")) => out.extend(open.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// A ```` ```toml ```` block whose first line is
/// `# fragment: examples/<name>/defs/<file>.toml` is that file, whole; a
/// ```` ```rust ```` block whose first line is `// examples/<name>.rs` is
/// made of pieces of that file, in which `// …` lines stand for what is
/// left out. So the guide shows the code that the tests above run.
#[test]
fn io_managers_guide_quotes_the_examples() {
    let doc = read(&repo().join("docs/io-managers.md"));
    let (mut files, mut excerpts) = (0, 0);
    for (lang, body) in fences(&doc) {
        let (first, rest) = body.split_once('\n').unwrap_or((&body, ""));
        if lang == "toml"
            && let Some(path) = first.strip_prefix("# fragment: examples/")
        {
            let file = read(&repo().join("examples").join(path));
            assert_eq!(rest, file, "docs/io-managers.md quotes examples/{path}");
            files += 1;
        } else if lang == "rust"
            && let Some(path) = first.strip_prefix("// examples/")
        {
            let file = read(&repo().join("examples").join(path));
            let mut piece = String::new();
            let check = |piece: &mut String| {
                let text = piece.trim_matches('\n');
                assert!(
                    text.is_empty() || file.contains(text),
                    "docs/io-managers.md quotes examples/{path}, but this is not in it:\n{text}"
                );
                piece.clear();
            };
            for line in rest.lines() {
                if line.trim_start().starts_with("// …") {
                    check(&mut piece);
                } else {
                    piece.push_str(line);
                    piece.push('\n');
                }
            }
            check(&mut piece);
            excerpts += 1;
        }
    }
    assert!(
        files >= 5 && excerpts >= 8,
        "{files} files, {excerpts} excerpts"
    );
}
