//! The history scenarios against the Postgres state store
//! (`[state] url = "postgres://…"` in `dg.toml`).
//!
//! They need a server: `DG_TEST_POSTGRES_URL` (`. .ci/postgres.sh` starts a
//! throwaway one and exports it). Without it a test prints "skipped: set
//! DG_TEST_POSTGRES_URL" and passes, except under CI (`CI=true`), where it
//! fails. Each test works in its own freshly named schema (`?schema=…`), so
//! the tests are independent of each other and of earlier runs; the schema is
//! dropped at the end.

use serde_json::Value;
use tempfile::TempDir;

use crate::history::{self, NOW, Store, counts, ids, set};
use crate::support::{assert_no_panic, numbers_doubled, service, unique_name};

// The server ---------------------------------------------------------------------

/// The test server's URL, or `None` (after saying so) when there is none.
/// Under CI a missing server is a failure, not a skip.
fn server() -> Option<String> {
    service(
        "DG_TEST_POSTGRES_URL",
        "Postgres state store",
        "postgres.sh",
    )
    .map(|u| u.trim().to_string())
}

/// A schema of its own on the test server, dropped at the end.
pub(crate) struct Schema {
    pub(crate) server: String,
    pub(crate) name: String,
}

impl Schema {
    pub(crate) fn new() -> Option<Schema> {
        let server = server()?;
        Some(Schema {
            server,
            name: unique_name(),
        })
    }

    /// The state URL: the server with `schema=…`.
    pub(crate) fn url(&self) -> String {
        crate::backend::with_schema(&self.server, &self.name)
    }

    pub(crate) fn client(&self) -> postgres::Client {
        let mut c = postgres::Client::connect(&self.server, postgres::NoTls)
            .expect("connect to the test server");
        c.batch_execute(&format!("SET search_path TO \"{}\"", self.name))
            .unwrap();
        c
    }

    fn count(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).unwrap().get(0)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
        }
    }
}

/// The password of the test server's URL, if it has one.
pub(crate) fn password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let info = rest.split(['/', '?']).next()?.rsplit_once('@')?.0;
    Some(info.split_once(':')?.1.to_string()).filter(|p| !p.is_empty())
}

// The store itself -----------------------------------------------------------------

#[test]
fn migrations_run_once_and_a_second_open_is_a_no_op() {
    use dg::__internal::{MIGRATIONS, PostgresStore, StateStore};
    let Some(s) = Schema::new() else { return };
    // Four openers race on a schema that does not exist yet: the advisory
    // lock serialises them.
    let url = s.url();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                PostgresStore::open(&url)
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}"))
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let store = PostgresStore::open(&url).unwrap();
    assert_eq!(store.schema(), s.name);
    assert_eq!(store.version().unwrap() as usize, MIGRATIONS.len());
    assert_eq!(s.count("SELECT COUNT(*) FROM dg_schema_version"), 1);
    store
        .add_dynamic_keys("c", &["b".into(), "a".into(), "b".into()])
        .unwrap();
    drop(store);
    // A second open changes nothing.
    let again = PostgresStore::open(&url).unwrap();
    assert_eq!(again.version().unwrap() as usize, MIGRATIONS.len());
    assert_eq!(s.count("SELECT COUNT(*) FROM dg_schema_version"), 1);
    assert_eq!(again.dynamic_keys("c").unwrap(), ["b", "a"]);
    // Every table is there, in the URL's schema.
    let tables = s.count(&format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{}'
         AND table_name IN ('runs', 'step_attempts', 'materializations', 'partition_state',
                            'dynamic_partitions', 'leases', 'dg_schema_version')",
        s.name
    ));
    assert_eq!(tables, 7);
    // A database from a newer dg is refused.
    s.client()
        .execute("UPDATE dg_schema_version SET version = 999", &[])
        .unwrap();
    let err = PostgresStore::open(&url).err().expect("refused");
    assert!(format!("{err:#}").contains("upgrade dg"), "{err:#}");
}

#[test]
fn leases_exclude_live_owners_and_reclaim_dead_ones() {
    use dg::__internal::{Lease, PostgresStore, StateStore};
    let Some(s) = Schema::new() else { return };
    let st = PostgresStore::open(&s.url()).unwrap();
    let host = dg::__internal::hostname();
    let me = Lease {
        run_id: "r1".into(),
        pid: std::process::id(),
        host: host.clone(),
    };
    let other = Lease {
        run_id: "r2".into(),
        pid: std::process::id(),
        host: host.clone(),
    };
    assert_eq!(st.try_lease("a", "1", &me).unwrap(), None);
    assert_eq!(st.try_lease("a", "1", &me).unwrap(), None, "re-entrant");
    assert_eq!(st.try_lease("a", "1", &other).unwrap(), Some(me.clone()));
    st.release("a", "1", "r1").unwrap();
    assert_eq!(st.try_lease("a", "1", &other).unwrap(), None);
    // A dead owner on this host is taken over; one on another host is not.
    s.client()
        .execute("UPDATE leases SET run_id = 'r3', pid = 1073741808", &[])
        .unwrap();
    assert_eq!(st.try_lease("a", "1", &me).unwrap(), None);
    s.client()
        .execute("UPDATE leases SET run_id = 'r4', host = 'elsewhere'", &[])
        .unwrap();
    assert_eq!(
        st.try_lease("a", "1", &me).unwrap().map(|l| l.run_id),
        Some("r4".to_string())
    );
}

#[test]
fn a_bad_url_does_not_show_the_password() {
    // Needs no server: nothing listens on port 1.
    let tmp = TempDir::new().unwrap();
    std::fs::create_dir_all(tmp.path().join("defs")).unwrap();
    std::fs::write(
        tmp.path().join("defs/defs.toml"),
        "[assets.a]\nshell = \"true\"\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("dg.toml"),
        "[state]\nurl = \"postgresql://dg:hunter2@127.0.0.1:1/nowhere?schema=x\"\n",
    )
    .unwrap();
    for args in [
        &["runs"][..],
        &["materialize"][..],
        &["status", "--json"][..],
    ] {
        let run = crate::support::dg(tmp.path(), args);
        assert_no_panic(&run);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(
            !run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"),
            "{run:?}"
        );
        assert!(
            run.stderr
                .contains("postgresql://dg:***@127.0.0.1:1/nowhere"),
            "{run:?}"
        );
    }
}

// The history scenarios (`history.rs`), on Postgres -------------------------------------

/// One test a scenario of `history.rs`: `TEST => SCENARIO` runs
/// `history::SCENARIO` on a fresh schema of its own (skipped when there is
/// no server).
macro_rules! on_postgres {
    ($($test:ident => $scenario:ident,)*) => {$(
        #[test]
        fn $test() {
            let Some(s) = Store::postgres() else { return };
            history::$scenario(&s);
        }
    )*};
}

on_postgres! {
    missing_runs_nothing_after_a_success => missing_after_a_success,
    a_code_version_change_makes_that_asset_and_its_readers_stale => code_version_change,
    rematerializing_one_hour_makes_exactly_its_readers_stale => rematerialized_hour,
    concurrent_runs_over_overlapping_partitions_materialize_each_once => concurrent_runs,
    a_killed_run_is_interrupted_and_a_rerun_completes_it => killed_run,
}

// Postgres only ---------------------------------------------------------------------------

#[test]
fn dynamic_partitions_and_run_history_live_in_postgres() {
    let Some(s) = Store::postgres() else { return };
    let defs = r#"
[partitions.customers]
type = "dynamic"

[assets.per_customer]
partitions = "customers"
shell = '''
echo "per_customer[$DG_PARTITION_KEY]" >> ran.log
echo "hello from $DG_PARTITION_KEY"
if [ "$DG_PARTITION_KEY" = initech ]; then echo "initech is broken" >&2; exit 7; fi
printf 'customer\n%s\n' "$DG_PARTITION_KEY" > "$DG_OUTPUT"
echo '{"metadata": {"source": "unit"}}' >> "$DG_MESSAGES"
'''
"#;
    let dir = s.project(&[("defs/defs.toml", defs)]);
    let d = dir.path();
    history::add_customers(&s, d);
    assert_eq!(
        s.count(
            dir.path(),
            "SELECT COUNT(*) FROM dynamic_partitions WHERE name = 'customers'"
        ),
        3
    );

    let v = s.ok_json(d, NOW, &["materialize", "--partition", "acme", "--json"]);
    let acme_run = v["run_id"].as_str().unwrap().to_string();
    assert_eq!(ids(&v), set(&["per_customer[acme]"]));
    let failed = s.dg_at(d, NOW, &["materialize", "--partition", "initech", "--json"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    let st = s.ok_json(d, NOW, &["status", "--json"]);
    assert_eq!(counts(&st, "per_customer"), (1, 1, 1, 0), "{st:#}");

    s.ok(d, NOW, &["partitions", "remove", "customers", "globex"]);
    assert_eq!(s.partition_keys(d, "customers"), ["acme", "initech"]);

    let runs = s.ok_json(d, NOW, &["runs", "--json"]);
    let list = runs["runs"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{runs:#}");
    assert_eq!(list[0]["status"], "failure", "newest first: {runs:#}");
    assert_eq!(list[1]["id"], acme_run.as_str());
    assert_eq!(list[1]["status"], "success");
    let show = s.ok_json(d, NOW, &["runs", "show", &acme_run, "--json"]);
    assert_eq!(show["run"]["status"], "success");
    let m = &show["materializations"][0];
    assert_eq!(m["partition"], "acme", "{show:#}");
    assert_eq!(m["metadata"]["source"], "unit", "{show:#}");
    let logs = s.ok(d, NOW, &["logs", &acme_run]);
    assert!(logs.stdout.contains("hello from acme"), "{logs:?}");
}

#[test]
fn check_results_are_recorded_in_the_postgres_store() {
    let Some(s) = Store::postgres() else { return };
    let defs = numbers_doubled(
        r#"
[assets.numbers.checks.no_twos]
sql = "SELECT n FROM numbers WHERE n = 2"
blocking = true

[assets.numbers.checks.small]
shell = 'echo "{\"metadata\": {\"ok\": true}}" >> "$DG_MESSAGES"'
"#,
    );
    let dir = s.project(&[("defs/defs.toml", &defs)]);
    let run = s.dg_at(dir.path(), NOW, &["materialize", "--json"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["checks"].as_array().unwrap().len(), 2, "{v:#}");
    assert_eq!(
        s.count(
            dir.path(),
            "SELECT count(*) FROM check_results WHERE NOT passed"
        ),
        1
    );
    let c = s.ok_json(dir.path(), NOW, &["checks", "--json"]);
    let checks = c["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2, "{c:#}");
    assert_eq!(checks[0]["check"], "no_twos");
    assert_eq!(checks[0]["passed"], false);
    assert_eq!(checks[0]["message"], "the query returned 1 row; first: n=2");
    assert_eq!(checks[1]["check"], "small");
    assert_eq!(checks[1]["metadata"]["ok"], true);
    let st = s.ok_json(
        dir.path(),
        NOW,
        &["status", "--json", "--select", "numbers"],
    );
    assert_eq!(st["assets"][0]["checks"]["failed"], 1, "{st:#}");
    // The newest result is the one shown.
    let run = s.dg_at(
        dir.path(),
        NOW,
        &["materialize", "--json", "--select", "numbers"],
    );
    assert_eq!(run.code, 1);
    assert_eq!(s.count(dir.path(), "SELECT count(*) FROM check_results"), 4);
    let c = s.ok_json(dir.path(), NOW, &["checks", "--json"]);
    assert_eq!(c["checks"].as_array().unwrap().len(), 2, "{c:#}");
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(c["checks"][0]["run_id"], v["run_id"]);
}
