//! The `postgres` I/O manager end to end: the real binary on small
//! projects, the database checked with the `postgres` crate. Each test works
//! in its own randomly named schema, dropped at the end.
//!
//! The tests need a server: `DG_TEST_POSTGRES_URL` (`. .ci/postgres.sh`
//! starts one). Without it they are skipped, except under `CI=true`, where
//! they fail ([`pg_url`]).

use std::path::Path;

use postgres::{Client, NoTls};
use tempfile::TempDir;

use crate::support::{Run, assert_no_panic, assert_ok, dg_with_env, project};

/// The URL of the test server, or `None` (the test is skipped) when
/// `DG_TEST_POSTGRES_URL` is not set. Under CI (`CI=true`) a missing
/// variable fails the test instead. Reuse it in any test that needs
/// Postgres: `let Some(url) = pg_url() else { return };`.
pub fn pg_url() -> Option<String> {
    match std::env::var("DG_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but DG_TEST_POSTGRES_URL is not set: the Postgres tests must run \
                     under CI (.ci/run sources .ci/postgres.sh)"
                );
            }
            eprintln!("skipped: set DG_TEST_POSTGRES_URL (see CONTRIBUTING.md)");
            None
        }
    }
}

/// A fresh schema name: `dg_test_<pid>_<nanos>_<n>`.
pub fn random_schema() -> String {
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

/// A test's schema: dropped (with its tables) when the test ends.
struct Pg {
    url: String,
    schema: String,
    client: Client,
}

impl Pg {
    fn new(url: String) -> Pg {
        let client = Client::connect(&url, NoTls).expect("connect to DG_TEST_POSTGRES_URL");
        Pg {
            url,
            schema: random_schema(),
            client,
        }
    }

    /// Rows of `sql` (with `{s}` the quoted schema) as text, NULL as `NULL`.
    fn rows(&mut self, sql: &str) -> Vec<Vec<String>> {
        let sql = sql.replace("{s}", &format!("\"{}\"", self.schema));
        let msgs = self.client.simple_query(&sql).unwrap();
        msgs.iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL").to_string())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    fn resources(&self, extra: &str) -> String {
        format!(
            "[resources.io_manager]\ntype = \"postgres\"\nurl = \"${{env:DG_PG_URL}}\"\nschema = \"{}\"\n{extra}",
            self.schema
        )
    }

    fn materialize(&self, dir: &Path, args: &[&str]) -> Run {
        let mut all = vec!["--now", NOW, "materialize"];
        all.extend(args);
        let run = dg_with_env(dir, &all, &[("DG_PG_URL", &self.url)]);
        assert_no_panic(&run);
        run
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self.client.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ));
    }
}

const NOW: &str = "2022-01-02T00:00:00Z";

#[test]
fn seed_example_through_postgres_gives_24_ordered_rows() {
    let Some(url) = pg_url() else { return };
    let mut pg = Pg::new(url);
    let dir = project(&[
        ("defs/resources.toml", &pg.resources("")),
        (
            "defs/assets.toml",
            r#"
[partitions.hourly]
type = "hourly"
start = "2022-01-01-00:00"

[partitions.daily]
type = "daily"
start = "2022-01-01"

[assets.upstream_asset]
partitions = "hourly"
shell = "printf 'date\\n%s\\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""

[assets.downstream_asset]
partitions = "daily"
deps = ["upstream_asset"]
shell = "cp \"$DG_INPUT_UPSTREAM_ASSET\" seen.csv && cat \"$DG_INPUT_UPSTREAM_ASSET\" > \"$DG_OUTPUT\""
"#,
        ),
    ]);
    assert_ok(&pg.materialize(dir.path(), &["--partition", "2022-01-01"]));
    let hours: Vec<String> = (0..24).map(|h| format!("2022-01-01-{h:02}:00")).collect();
    let expected: String = std::iter::once("date".to_string())
        .chain(hours.iter().cloned())
        .map(|l| l + "\n")
        .collect();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("seen.csv")).unwrap(),
        expected
    );
    let up = pg.rows("SELECT dg_partition, date FROM {s}.upstream_asset ORDER BY dg_partition");
    assert_eq!(up.len(), 24);
    for (row, h) in up.iter().zip(&hours) {
        assert_eq!(row, &vec![h.clone(), h.clone()]);
    }
    let down = pg.rows("SELECT dg_partition, date FROM {s}.downstream_asset ORDER BY ctid");
    assert_eq!(down.len(), 24);
    for (row, h) in down.iter().zip(&hours) {
        assert_eq!(row, &vec!["2022-01-01".to_string(), h.clone()]);
    }
    // The partition column is indexed.
    let idx = pg.rows(&format!(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = '{}' AND tablename = 'upstream_asset'",
        pg.schema
    ));
    assert!(
        idx.len() == 1 && idx[0][0].contains("(dg_partition)"),
        "{idx:?}"
    );
    // A second run finds the upstream stored (exists) and loads it again.
    assert_ok(&pg.materialize(
        dir.path(),
        &["--select", "downstream_asset", "--partition", "2022-01-01"],
    ));
    assert_eq!(
        pg.rows("SELECT count(*) FROM {s}.downstream_asset"),
        vec![vec!["24"]]
    );
}

#[test]
fn unpartitioned_round_trip_keeps_types_and_nulls() {
    let Some(url) = pg_url() else { return };
    let mut pg = Pg::new(url);
    let dir = project(&[
        ("defs/resources.toml", &pg.resources("")),
        (
            "defs/assets.toml",
            r#"
[assets."raw/src"]
shell = "printf 'n,x,s,b\\n1,1.5,hello,true\\n2,,\"a,b\",false\\n3,2.0,,\\n' > \"$DG_OUTPUT\""

[assets.copy]
deps = ["raw/src"]
shell = "cp \"$DG_INPUT_SRC\" seen.csv && cp \"$DG_INPUT_SRC\" \"$DG_OUTPUT\""
"#,
        ),
    ]);
    assert_ok(&pg.materialize(dir.path(), &[]));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("seen.csv")).unwrap(),
        "n,x,s,b\n1,1.5,hello,true\n2,,\"a,b\",false\n3,2.0,,\n"
    );
    assert_eq!(
        pg.rows(&format!(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = '{}' AND table_name = 'raw__src' ORDER BY ordinal_position",
            pg.schema
        )),
        vec![
            vec!["n", "bigint"],
            vec!["x", "double precision"],
            vec!["s", "text"],
            vec!["b", "boolean"],
        ]
    );
    assert_eq!(
        pg.rows("SELECT n, x, s, b FROM {s}.raw__src ORDER BY n"),
        vec![
            vec!["1", "1.5", "hello", "t"],
            vec!["2", "NULL", "a,b", "f"],
            vec!["3", "2", "NULL", "NULL"],
        ]
    );
    // Materializing again replaces the whole table.
    assert_ok(&pg.materialize(dir.path(), &["--select", "raw/src"]));
    assert_eq!(
        pg.rows("SELECT count(*) FROM {s}.raw__src"),
        vec![vec!["3"]]
    );
}

const STATIC_AB: &str = r#"
[partitions.letters]
type = "static"
keys = ["a", "b"]

[assets.parts]
partitions = "letters"
shell = "if [ -f bad ]; then printf 'k,v\\n1,2\\n3\\n'; else printf 'k,v\\n%s,%s\\n%s,%s\\n' \"$DG_PARTITION_KEY\" \"$(cat version)\" \"$DG_PARTITION_KEY\" \"$(cat version)\"; fi > \"$DG_OUTPUT\""
"#;

#[test]
fn rematerializing_one_partition_replaces_only_its_rows() {
    let Some(url) = pg_url() else { return };
    let mut pg = Pg::new(url);
    let dir = project(&[
        ("defs/resources.toml", &pg.resources("")),
        ("defs/assets.toml", STATIC_AB),
        ("version", "1"),
    ]);
    assert_ok(&pg.materialize(dir.path(), &["--all-partitions"]));
    std::fs::write(dir.path().join("version"), "2").unwrap();
    assert_ok(&pg.materialize(dir.path(), &["--partition", "a"]));
    assert_eq!(
        pg.rows("SELECT dg_partition, k, v FROM {s}.parts ORDER BY dg_partition, ctid"),
        vec![
            vec!["a", "a", "2"],
            vec!["a", "a", "2"],
            vec!["b", "b", "1"],
            vec!["b", "b", "1"],
        ]
    );
}

#[test]
fn a_failing_step_leaves_the_table_unchanged() {
    let Some(url) = pg_url() else { return };
    let mut pg = Pg::new(url);
    let dir = project(&[
        ("defs/resources.toml", &pg.resources("")),
        ("defs/assets.toml", STATIC_AB),
        ("version", "1"),
    ]);
    assert_ok(&pg.materialize(dir.path(), &["--all-partitions"]));
    let q = "SELECT ctid, dg_partition, k, v FROM {s}.parts ORDER BY ctid";
    let before = pg.rows(q);
    assert_eq!(before.len(), 4);
    // The step writes ragged CSV, which cannot be stored.
    std::fs::write(dir.path().join("bad"), "").unwrap();
    let run = pg.materialize(dir.path(), &["--partition", "a"]);
    assert_ne!(run.code, 0, "stdout:\n{}", run.stdout);
    assert_eq!(pg.rows(q), before);
    // A failure inside the transaction (after the DELETE): the rows stay.
    std::fs::remove_file(dir.path().join("bad")).unwrap();
    pg.rows("ALTER TABLE {s}.parts ADD CONSTRAINT small CHECK (v < 2)");
    std::fs::write(dir.path().join("version"), "7").unwrap();
    let run = pg.materialize(dir.path(), &["--partition", "a"]);
    assert_ne!(run.code, 0, "stdout:\n{}", run.stdout);
    assert!(
        run.stderr.contains("small") || run.stdout.contains("small"),
        "{}",
        run.stderr
    );
    assert_eq!(pg.rows(q), before);
}

#[test]
fn sql_text_in_a_partition_key_does_no_harm() {
    let Some(url) = pg_url() else { return };
    let mut pg = Pg::new(url);
    let key = "x'); DROP TABLE t; --";
    let dir = project(&[
        ("defs/resources.toml", &pg.resources("")),
        (
            "defs/assets.toml",
            r#"
[partitions.evil]
type = "static"
keys = ["x'); DROP TABLE t; --", "ok"]

[assets.t]
shell = "printf 'a\\n1\\n' > \"$DG_OUTPUT\""

[assets.evil_asset]
partitions = "evil"
shell = "printf 'k\\n%s\\n' \"$DG_PARTITION_KEY\" > \"$DG_OUTPUT\""

[assets.reader]
partitions = "evil"
deps = ["evil_asset"]
shell = "cp \"$DG_INPUT_EVIL_ASSET\" \"$DG_OUTPUT\""
"#,
        ),
    ]);
    assert_ok(&pg.materialize(dir.path(), &["--select", "t"]));
    assert_ok(&pg.materialize(dir.path(), &["--select", "evil_asset+", "--all-partitions"]));
    assert_eq!(pg.rows("SELECT a FROM {s}.t"), vec![vec!["1"]]);
    let expected = vec![vec!["ok", "ok"], vec![key, key]];
    assert_eq!(
        pg.rows("SELECT dg_partition, k FROM {s}.evil_asset ORDER BY dg_partition"),
        expected
    );
    assert_eq!(
        pg.rows("SELECT dg_partition, k FROM {s}.reader ORDER BY dg_partition"),
        expected
    );
}

#[test]
fn a_changed_schema_is_an_error_unless_replacing_is_allowed() {
    let Some(url) = pg_url() else { return };
    let mut pg = Pg::new(url);
    let assets = r#"
[assets."sales/daily"]
shell = "if [ -f v2 ]; then printf 'a,c\\nx,3\\n'; else printf 'a,b\\nx,1\\n'; fi > \"$DG_OUTPUT\""
"#;
    let dir = project(&[
        ("defs/resources.toml", &pg.resources("")),
        ("defs/assets.toml", assets),
    ]);
    assert_ok(&pg.materialize(dir.path(), &[]));
    std::fs::write(dir.path().join("v2"), "").unwrap();
    let run = pg.materialize(dir.path(), &["--json"]);
    assert_ne!(run.code, 0);
    let all = format!("{}\n{}", run.stdout, run.stderr);
    for needle in [
        "sales/daily",
        "sales__daily",
        "new column `c`",
        "column `b`",
        "replace_on_schema_change",
    ] {
        assert!(all.contains(needle), "no {needle:?} in:\n{all}");
    }
    assert_eq!(
        pg.rows("SELECT a, b FROM {s}.sales__daily"),
        vec![vec!["x", "1"]]
    );
    std::fs::write(
        dir.path().join("defs/resources.toml"),
        pg.resources("replace_on_schema_change = true\n"),
    )
    .unwrap();
    assert_ok(&pg.materialize(dir.path(), &[]));
    assert_eq!(
        pg.rows("SELECT a, c FROM {s}.sales__daily"),
        vec![vec!["x", "3"]]
    );
}

/// Every file under `dir`, as (path, lossy text).
fn all_files(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out);
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((
                p.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
}

fn assert_hidden(password: &str, dir: &Path, runs: &[&Run]) {
    for run in runs {
        for (what, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            assert!(!text.contains(password), "password in {what}:\n{text}");
        }
    }
    let mut files = Vec::new();
    all_files(dir, &mut files);
    for (path, text) in files {
        if path.contains("/defs/") {
            continue;
        }
        assert!(!text.contains(password), "password in {path}:\n{text}");
    }
}

/// The password is never shown when the connection fails (nothing listens
/// on the port), in text or JSON output, logs or the state folder. Needs no
/// server, so it runs everywhere.
#[test]
fn the_password_never_appears_when_the_connection_fails() {
    let password = "Pw-9f3kQz-never-shown";
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://dg:{password}@127.0.0.1:{port}/dg_test");
    let dir = project(&[
        (
            "defs/resources.toml",
            "[resources.io_manager]\ntype = \"postgres\"\nurl = \"${env:DG_PG_URL}\"\n",
        ),
        (
            "defs/assets.toml",
            r#"
[assets.up]
shell = "printf 'a\\n1\\n' > \"$DG_OUTPUT\""

[assets.down]
deps = ["up"]
shell = "cp \"$DG_INPUT_UP\" \"$DG_OUTPUT\""
"#,
        ),
    ]);
    let env = [("DG_PG_URL", url.as_str())];
    let mut runs = Vec::new();
    for args in [
        &["--now", NOW, "materialize"][..],
        &["--now", NOW, "materialize", "--json"],
        &["--now", NOW, "materialize", "--select", "down"],
        &["--now", NOW, "materialize", "--select", "down", "--json"],
    ] {
        let run = dg_with_env(dir.path(), args, &env);
        assert_no_panic(&run);
        assert_ne!(run.code, 0, "{args:?}: {}", run.stdout);
        runs.push(run);
    }
    let all: String = runs
        .iter()
        .map(|r| format!("{}{}", r.stdout, r.stderr))
        .collect();
    assert!(
        all.contains(&format!("postgres://dg:***@127.0.0.1:{port}/dg_test")),
        "the masked URL is named:\n{all}"
    );
    assert_hidden(password, dir.path(), &runs.iter().collect::<Vec<_>>());
}

/// The same with a working server: the password of DG_TEST_POSTGRES_URL
/// does not appear in what a successful run prints or records.
#[test]
fn the_password_never_appears_in_a_successful_run() {
    let Some(url) = pg_url() else { return };
    let pg = Pg::new(url.clone());
    let Ok(parsed) = url.parse::<postgres::Config>() else {
        return;
    };
    let Some(password) = parsed
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
    else {
        eprintln!("DG_TEST_POSTGRES_URL has no password: nothing to hide");
        return;
    };
    let dir = project(&[
        ("defs/resources.toml", &pg.resources("")),
        (
            "defs/assets.toml",
            "[assets.up]\nshell = \"printf 'a\\\\n1\\\\n' > \\\"$DG_OUTPUT\\\"\"\n",
        ),
    ]);
    let a = pg.materialize(dir.path(), &[]);
    assert_ok(&a);
    let b = pg.materialize(dir.path(), &["--json"]);
    assert_ok(&b);
    // The materialization records the masked URL (`dg/path`) in the state.
    let mut files = Vec::new();
    all_files(&dir.path().join(".dg"), &mut files);
    assert!(
        files.iter().any(|(_, text)| text.contains(":***@")),
        "no masked URL recorded under .dg"
    );
    assert_hidden(&password, dir.path(), &[&a, &b]);
}

/// Storing 1,000,000 CSV rows of 5 columns through COPY, in-process (run
/// with `cargo test --release --test integration postgres_bulk -- --ignored --nocapture`).
#[test]
#[ignore]
fn postgres_bulk_store_rate() {
    use dg::io::{Data, Format, IoManagerFactory, OutputContext, ResourceCx};
    let Some(url) = pg_url() else { return };
    let pg = Pg::new(url.clone());
    let dir = TempDir::new().unwrap();
    let csv = dir.path().join("in.csv");
    let mut text = String::from("id,amount,name,flag,day\n");
    for i in 0..1_000_000u64 {
        text.push_str(&format!(
            "{i},{}.25,name-{},{},2024-01-{:02}\n",
            i % 1000,
            i % 97,
            i % 2 == 0,
            i % 28 + 1
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let cx = ResourceCx {
        resource_key: "io_manager".into(),
        project_root: dir.path().to_path_buf(),
        state_dir: dir.path().join(".dg"),
        run_id: "bench".into(),
    };
    let m = dg::io::PostgresConfig {
        url,
        schema: pg.schema.clone(),
        replace_on_schema_change: false,
    }
    .create_io_manager(&cx)
    .unwrap();
    let ctx = OutputContext {
        asset_key: "bench".into(),
        partition: Some(dg::io::PartitionRef {
            key: "p".into(),
            dims: Vec::new(),
            window: None,
        }),
        format: Format::Csv,
        resource_key: "io_manager".into(),
        metadata: Default::default(),
        run_id: "bench".into(),
        step_id: "bench".into(),
        log: Default::default(),
    };
    let started = std::time::Instant::now();
    let stored = m
        .handle_output(
            &ctx,
            Data::File {
                path: csv.clone(),
                format: Format::Csv,
            },
        )
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(stored.rows, Some(1_000_000));
    eprintln!(
        "CSV → postgres: 1,000,000 rows in {secs:.3}s: {:.0} rows/s",
        1e6 / secs
    );
    let started = std::time::Instant::now();
    let table = dg::io::table::read(&csv, Format::Csv).unwrap();
    let read = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    m.handle_output(&ctx, Data::Table(std::sync::Arc::new(table)))
        .unwrap();
    let store = started.elapsed().as_secs_f64();
    eprintln!(
        "read CSV {read:.3}s; store Arrow (replacing 1,000,000 rows, COPY) {store:.3}s: {:.0} rows/s",
        1e6 / store
    );
}

const DAYS: &str = r#"
[partitions.daily]
type = "daily"
start = "2021-12-30"
"#;

/// Issue 13: text that only looks like a number or a boolean comes back
/// exactly as written.
#[test]
fn text_is_not_retyped_through_postgres() {
    let Some(url) = pg_url() else { return };
    let mut pg = Pg::new(url);
    let dir = project(&[
        ("defs/resources.toml", &pg.resources("")),
        (
            "defs/assets.toml",
            r#"
[assets.src]
shell = "printf 'zip,classification,ok\\n02134,True,true\\n10001,False,false\\n' > \"$DG_OUTPUT\""

[assets.copy]
deps = ["src"]
shell = "cp \"$DG_INPUT_SRC\" seen.csv && cp \"$DG_INPUT_SRC\" \"$DG_OUTPUT\""
"#,
        ),
    ]);
    assert_ok(&pg.materialize(dir.path(), &[]));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("seen.csv")).unwrap(),
        "zip,classification,ok\n02134,True,true\n10001,False,false\n"
    );
    assert_eq!(
        pg.rows("SELECT count(*) FROM {s}.src WHERE classification = 'True'"),
        vec![vec!["1".to_string()]]
    );
}

/// Issue 13: a header-only first partition does not fix the column types.
#[test]
fn an_empty_first_partition_does_not_fix_the_postgres_schema() {
    let Some(url) = pg_url() else { return };
    let mut pg = Pg::new(url);
    let dir = project(&[
        ("defs/resources.toml", &pg.resources("")),
        (
            "defs/assets.toml",
            &format!(
                r#"{DAYS}
[assets.events]
partitions = "daily"
shell = "if [ \"$DG_PARTITION_KEY\" = 2021-12-30 ]; then printf 'id,amount\\n'; else printf 'id,amount\\n1,2.5\\n'; fi > \"$DG_OUTPUT\""
"#
            ),
        ),
    ]);
    assert_ok(&pg.materialize(dir.path(), &["--partition", "2021-12-30"]));
    assert_ok(&pg.materialize(
        dir.path(),
        &["--partition-range", "2021-12-31...2022-01-01"],
    ));
    assert_eq!(
        pg.rows(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = '{s}.events'::regclass AND attnum > 0 ORDER BY attnum"
        ),
        vec![
            vec!["dg_partition", "text"],
            vec!["id", "bigint"],
            vec!["amount", "double precision"],
        ]
    );
    assert_ok(&pg.materialize(dir.path(), &["--partition", "2021-12-30"]));
    assert_eq!(
        pg.rows("SELECT count(*) FROM {s}.events"),
        vec![vec!["2".to_string()]]
    );
}

/// Issue 13: a partition stored with 0 rows is stored: a later `--missing`
/// run that reads it runs.
#[test]
fn a_zero_row_partition_is_stored_in_postgres() {
    let Some(url) = pg_url() else { return };
    let mut pg = Pg::new(url);
    let dir = project(&[
        ("defs/resources.toml", &pg.resources("")),
        (
            "defs/assets.toml",
            &format!(
                r#"{DAYS}
[assets.events]
partitions = "daily"
shell = "printf 'id\\n' > \"$DG_OUTPUT\""

[assets.total]
partitions = "daily"
deps = ["events"]
shell = "printf 'lines\\n%s\\n' \"$(wc -l < \"$DG_INPUT_EVENTS\")\" > \"$DG_OUTPUT\""
"#
            ),
        ),
    ]);
    assert_ok(&pg.materialize(
        dir.path(),
        &["--select", "events", "--partition", "2022-01-01"],
    ));
    assert_ok(&pg.materialize(dir.path(), &["--partition", "2022-01-01", "--missing"]));
    assert_eq!(
        pg.rows("SELECT lines FROM {s}.total"),
        vec![vec!["1".to_string()]]
    );
}
