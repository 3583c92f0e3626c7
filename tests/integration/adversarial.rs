//! Hostile partition keys through every kind of manager: dynamic keys added
//! with `dg partitions add` that look like shell, SQL, paths and unicode.
//! Storage never escapes its base, shell steps see keys only through the
//! environment (nothing is executed), SQL gets them only as bound
//! parameters, and every key round-trips as itself.

use std::path::Path;

use crate::support::{dg_with_env, files_under, json, project, read, repo};

/// Keys a hostile (or unlucky) user may add.
const KEYS: &[&str] = &[
    "$(touch pwned1)",
    "`touch pwned2`",
    "'; touch pwned3; '",
    "\"double\"",
    "x'); DROP TABLE events; --",
    "../../escape",
    "a/b/../../c",
    "..",
    "-rf",
    "%2e%2e",
    "日本語/キー",
    "emoji 🎉 key",
    "back\\slash",
    "tab?star*",
];

/// A long key (a file name can still hold it).
fn long_key() -> String {
    "k".repeat(100)
}

fn keys() -> Vec<String> {
    let mut k: Vec<String> = KEYS.iter().map(|s| s.to_string()).collect();
    k.push(long_key());
    k
}

/// `events` (dynamic, stored by `io_manager`) → `copy`, which reads it.
fn hostile_project(resources: &str) -> tempfile::TempDir {
    project(&[
        ("defs/resources.toml", resources),
        (
            "defs/a.toml",
            r#"[partitions.files]
type = "dynamic"

[assets.events]
partitions = "files"
format = "jsonl"
shell = '''python3 -c 'import json, os; print(json.dumps({"key": os.environ["DG_PARTITION_KEY"]}))' > "$DG_OUTPUT"'''

[assets.copy]
partitions = "files"
format = "jsonl"
deps = ["events"]
shell = 'cat "$DG_INPUT_EVENTS" > "$DG_OUTPUT"'
"#,
        ),
    ])
}

/// Adds the keys, materializes everything, and checks what every manager
/// must hold: no key executed, every key back as itself, nothing outside
/// the project.
fn run_hostile(dir: &Path, env: &[(&str, &str)]) {
    let ks = keys();
    let mut add = vec!["partitions", "add", "files", "--"];
    add.extend(ks.iter().map(String::as_str));
    let r = dg_with_env(dir, &add, env);
    assert_eq!(r.code, 0, "{r:?}");
    let r = dg_with_env(dir, &["materialize", "--all-partitions", "--json"], env);
    assert_eq!(r.code, 0, "{r:?}");
    let v = json(&r);
    assert_eq!(v["steps"].as_array().unwrap().len(), 2 * ks.len(), "{v}");
    // Nothing was executed: `touch pwnedN` would have made the file (in the
    // project, where steps run, or wherever a broken quoting sent it).
    let made = |f: &Path| {
        f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("pwned"))
    };
    for f in files_under(dir) {
        assert!(!made(&f), "a key was executed: {f:?}");
    }
    for e in std::fs::read_dir(dir.parent().unwrap()).unwrap().flatten() {
        assert!(!made(&e.path()), "a key was executed: {:?}", e.path());
    }
    // Each key is listed as itself, in order, and every partition of both
    // assets is materialized.
    let r = dg_with_env(dir, &["list", "partitions", "files", "--json"], env);
    assert_eq!(json(&r)["keys"], serde_json::json!(ks));
    let r = dg_with_env(dir, &["status", "--json"], env);
    let st = json(&r);
    for a in st["assets"].as_array().unwrap() {
        assert_eq!(a["materialized"], ks.len(), "{a}");
    }
}

#[test]
fn hostile_keys_through_fs() {
    let outer = tempfile::tempdir().unwrap();
    let dir = hostile_project(
        "[resources.io_manager]\ntype = \"fs\"\nbase_dir = \"data\"\nformat = \"jsonl\"\n",
    );
    // The project inside a folder of its own, to see that nothing leaves it.
    let root = outer.path().join("p");
    crate::support::copy_dir(dir.path(), &root);
    run_hostile(&root, &[]);
    assert_eq!(
        std::fs::read_dir(outer.path()).unwrap().count(),
        1,
        "nothing written next to the project"
    );
    for f in files_under(&root.join("data")) {
        let parts: Vec<_> = f.components().collect();
        assert_eq!(
            parts.len(),
            2,
            "one file per partition under data/<asset>/: {f:?}"
        );
    }
    // `copy` read exactly what `events` wrote, for every key.
    let stored = files_under(&root.join("data/copy"));
    assert_eq!(stored.len(), keys().len());
    let mut seen: Vec<String> = stored
        .iter()
        .map(|f| read(root.join("data/copy").join(f)))
        .map(|t| {
            let v: serde_json::Value = serde_json::from_str(t.trim()).unwrap();
            v["key"].as_str().unwrap().to_string()
        })
        .collect();
    seen.sort();
    let mut want = keys();
    want.sort();
    assert_eq!(seen, want);
}

#[test]
fn hostile_keys_through_sqlite() {
    let dir =
        hostile_project("[resources.io_manager]\ntype = \"sqlite\"\npath = \"warehouse.db\"\n");
    let root = dir.path();
    run_hostile(root, &[]);
    let conn = rusqlite::Connection::open(root.join("warehouse.db")).unwrap();
    for table in ["events", "copy"] {
        let mut st = conn
            .prepare(&format!(
                "SELECT dg_partition, key FROM {table} ORDER BY dg_partition"
            ))
            .unwrap();
        let rows: Vec<(String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), keys().len(), "{table}");
        assert!(rows.iter().all(|(p, k)| p == k), "{table}: {rows:?}");
    }
}

#[test]
fn hostile_keys_through_postgres() {
    let Some(url) = crate::backend::pg_url() else {
        return;
    };
    let schema = crate::backend::random_schema();
    let dir = hostile_project(&format!(
        "[resources.io_manager]\ntype = \"postgres\"\nurl = \"${{env:DG_TEST_PG}}\"\nschema = \"{schema}\"\n"
    ));
    run_hostile(dir.path(), &[("DG_TEST_PG", &url)]);
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    for table in ["events", "copy"] {
        let rows = c
            .query(
                &format!("SELECT dg_partition, key FROM \"{schema}\".\"{table}\""),
                &[],
            )
            .unwrap();
        assert_eq!(rows.len(), keys().len(), "{table}");
        assert!(
            rows.iter()
                .all(|r| r.get::<_, String>(0) == r.get::<_, String>(1)),
            "{table}"
        );
    }
}

#[test]
fn hostile_keys_through_a_plugin() {
    let plugin = repo().join("examples/plugins/fs_plugin.py");
    let dir = hostile_project(&format!(
        "[resources.io_manager]\ntype = \"command\"\ncommand = [\"python3\", {:?}]\nformat = \"csv\"\nconfig = {{ root = \"plugin-data\" }}\n",
        plugin.to_string_lossy()
    ));
    run_hostile(dir.path(), &[]);
    // The plug-in kept everything under its root.
    for f in files_under(dir.path()) {
        let s = f.to_string_lossy();
        assert!(
            s.starts_with("plugin-data/") || s.starts_with(".dg/") || s.starts_with("defs/"),
            "{s}"
        );
    }
}

#[test]
fn hostile_keys_through_object_store() {
    let Some((endpoint, bucket)) = crate::object_store::s3() else {
        return;
    };
    let prefix = format!("adv-{}", std::process::id());
    let dir = hostile_project(&crate::object_store::resource(
        "io_manager",
        &endpoint,
        &bucket,
        &prefix,
        "",
    ));
    run_hostile(dir.path(), &[]);
}
