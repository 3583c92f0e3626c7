//! The `postgres` I/O manager end to end: the real binary on small
//! projects, the database checked with the `postgres` crate. Each test works
//! in its own randomly named schema, dropped at the end.
//!
//! The tests need a server: `DG_TEST_POSTGRES_URL` (`. .ci/postgres.sh`
//! starts one). Without it they are skipped, except under `CI=true`, where
//! they fail ([`pg_url`]).

use std::path::Path;

use crate::backend::{Backend, NOW, Pg, bulk_store_rate, scenario_tests};
use crate::support::{Run, assert_no_panic, assert_ok, dg_with_env, project};
use crate::table_scenarios;

pub use crate::backend::{pg_url, random_schema};

// Scenarios shared with the other table backend (`table_scenarios.rs`).

scenario_tests! {
    Backend::Postgres;
    seed_example_through_postgres_gives_24_ordered_rows => seed_example_gives_24_ordered_rows,
    text_is_not_retyped_through_postgres => text_is_not_retyped,
    checks_run_inside_the_database_through_postgres => checks_run_inside_the_database,
    rematerializing_one_partition_replaces_only_its_rows => rematerializing_one_partition_replaces_only_its_rows,
    a_failing_step_leaves_the_table_unchanged => a_failing_step_leaves_the_table_unchanged,
    sql_text_in_a_partition_key_does_no_harm => sql_text_in_a_partition_key_does_no_harm,
    a_changed_schema_is_an_error_unless_replacing_is_allowed => a_changed_schema_is_an_error_unless_replacing_is_allowed,
    a_zero_row_partition_is_stored_in_postgres => a_zero_row_partition_is_stored,
    range_steps_store_each_partition_as_its_rows => range_steps_store_each_partition_as_its_rows,
}

#[test]
fn unpartitioned_round_trip_keeps_types_and_nulls() {
    let Some(mut pg) = Pg::open() else { return };
    let dir = pg.project(&[(
        "defs/assets.toml",
        &table_scenarios::raw_src_and_copy(
            "",
            r#"n,x,s,b\\n1,1.5,hello,true\\n2,,\"a,b\",false\\n3,2.0,,\\n"#,
        ),
    )]);
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
    let dir = pg.project(&[(
        "defs/assets.toml",
        "[assets.up]\nshell = \"printf 'a\\\\n1\\\\n' > \\\"$DG_OUTPUT\\\"\"\n",
    )]);
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
    let Some(url) = pg_url() else { return };
    let pg = Pg::new(url.clone());
    let config = format!("url = {url:?}\nschema = {:?}", pg.schema);
    bulk_store_rate("postgres", ", COPY", |cx| {
        dg::__internal::create_manager(&dg::io::Registry::builtin(), "postgres", &config, cx)
            .unwrap()
    });
}

/// Issue 13: a header-only first partition does not fix the column types.
#[test]
fn an_empty_first_partition_does_not_fix_the_postgres_schema() {
    let Some(mut pg) = Pg::open() else { return };
    let dir = pg.project(&[(
        "defs/assets.toml",
        &table_scenarios::events_empty_on_the_first_day("2021-12-30"),
    )]);
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
