//! `dg schema defs|config` (CONTRACT §14): the schema accepts what the
//! validator accepts and rejects what it rejects.

use serde_json::Value;

use crate::support::{dg, items, one_file, project, repo};

fn schema(of: &str) -> Value {
    let dir = project(&[]);
    let run = dg(dir.path(), &["schema", of]);
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(&run.stdout).expect("the schema is JSON")
}

/// The kinds of the errors `dg check defs --json` reports.
fn error_kinds(toml: &str) -> Vec<(String, String)> {
    let dir = one_file(toml);
    let run = dg(dir.path(), &["check", "defs", "--json"]);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    items(&v["errors"])
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every field the schema lists for an asset, a job, a check and each
/// resource type is one the validator knows (it may find the dummy value
/// wrong, never the field unknown); a misspelt one is unknown to both.
#[test]
fn schema_fields_are_the_validators_fields() {
    let s = schema("defs");
    let props = |def: &Value| -> Vec<String> {
        def["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let asset = props(&s["$defs"]["asset"]);
    assert!(asset.len() > 20 && asset.contains(&"partitions".to_string()));
    let mut toml = String::from("[assets.a]\n");
    for f in &asset {
        toml.push_str(&format!("\"{f}\" = 0\n"));
    }
    toml.push_str("[jobs.j]\n");
    for f in props(&s["$defs"]["job"]) {
        toml.push_str(&format!("\"{f}\" = 0\n"));
    }
    let mut n = 0;
    for b in s["$defs"]["resource"]["oneOf"].as_array().unwrap() {
        let Some(ty) = b["properties"]["type"]["const"].as_str() else {
            continue;
        };
        n += 1;
        toml.push_str(&format!("[resources.r_{ty}]\ntype = \"{ty}\"\n"));
        for f in props(b).iter().filter(|f| *f != "type") {
            toml.push_str(&format!("\"{f}\" = 0\n"));
        }
    }
    assert!(n >= 7, "every built-in resource type and settings");
    let unknown: Vec<_> = error_kinds(&toml)
        .into_iter()
        .filter(|(k, _)| k == "unknown_field" || k == "syntax")
        .collect();
    assert!(unknown.is_empty(), "{unknown:?}\n{toml}");
    // A field missing from the schema is one the validator rejects.
    let kinds = error_kinds("[assets.a]\nshell = \"true\"\npartitons = \"p\"\n");
    assert_eq!(kinds[0].0, "unknown_field");
    assert!(!asset.contains(&"partitons".to_string()));
    assert_eq!(s["$defs"]["asset"]["additionalProperties"], false);
}

/// Runs Python's `jsonschema` on TOML files: the names of those that do
/// not validate. `None` when Python, `tomllib` or `jsonschema` is missing.
fn python_invalid(schema: &Value, files: &[std::path::PathBuf]) -> Option<String> {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("schema.json");
    std::fs::write(&path, schema.to_string()).unwrap();
    let script = r#"
import json, sys
try:
    import tomllib, jsonschema
except ImportError as e:
    print("SKIP", e); sys.exit(0)
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
def conv(x):
    if isinstance(x, dict): return {k: conv(y) for k, y in x.items()}
    if isinstance(x, list): return [conv(y) for y in x]
    if hasattr(x, "isoformat"): return x.isoformat()
    return x
for p in sys.argv[2:]:
    for e in v.iter_errors(conv(tomllib.load(open(p, "rb")))):
        print(f"{p}: {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}")
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .args(files)
        .output()
        .ok()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if stdout.starts_with("SKIP") {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but Python's jsonschema is missing (.ci/run installs it): {stdout}"
        );
        eprintln!("skipped: {stdout}");
        return None;
    }
    Some(stdout)
}

#[test]
fn bundled_defs_and_docs_examples_validate_and_a_typo_does_not() {
    let s = schema("defs");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(repo().join("defs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    // Every complete definitions file among the docs' examples.
    let tmp = tempfile::TempDir::new().unwrap();
    let mut docs: Vec<_> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    docs.push(repo().join("README.md"));
    for (i, md) in docs.iter().enumerate() {
        let text = std::fs::read_to_string(md).unwrap_or_default();
        for (j, block) in text.split("```toml\n").skip(1).enumerate() {
            let block = block.split("\n```").next().unwrap();
            let first = block
                .lines()
                .find(|l| !l.starts_with("#:schema"))
                .unwrap_or("");
            if ["# fragment", "# invalid", "# dg.toml"]
                .iter()
                .any(|p| first.starts_with(p))
            {
                continue;
            }
            let p = tmp.path().join(format!("{i}-{j}.toml"));
            std::fs::write(&p, block).unwrap();
            files.push(p);
        }
    }
    assert!(files.len() > 20, "{files:?}");
    let Some(invalid) = python_invalid(&s, &files) else {
        return;
    };
    assert!(invalid.is_empty(), "{invalid}");
    let typo = tmp.path().join("typo.toml");
    std::fs::write(&typo, "[assets.a]\nshell = \"true\"\npartitons = \"p\"\n").unwrap();
    let out = python_invalid(&s, &[typo]).unwrap();
    assert!(out.contains("partitons"), "{out}");
}

/// Every file `dg scaffold defs` writes starts with a `#:schema` line that
/// points at the schema it wrote, and validates against that schema.
#[test]
fn scaffolded_files_point_at_the_schema_and_validate() {
    let dir = project(&[("defs/.keep", "")]);
    let d = dir.path();
    let cases: &[&[&str]] = &[
        &["asset", "a.toml"],
        &["partitions", "parts/daily.toml", "--name", "days"],
        &["asset", "raw/deep/b.toml", "--partitions", "days"],
        &["job", "jobs.toml"],
        &["check", "checked.toml"],
        &["resources", "r_fs.toml", "--type", "fs"],
        &["resources", "r_sqlite.toml", "--type", "sqlite"],
        &["resources", "r_pg.toml", "--type", "postgres"],
        &["resources", "r_cmd.toml", "--type", "command"],
        &["resources", "r_settings.toml", "--type", "settings"],
        &["resources", "r_obj.toml", "--type", "object_store"],
        &["resources", "r_mem.toml", "--type", "memory"],
    ];
    let mut files = Vec::new();
    for args in cases {
        let mut a = vec!["scaffold", "defs"];
        a.extend_from_slice(args);
        let r = dg(d, &a);
        assert_eq!(r.code, 0, "dg {a:?}: {r:?}");
        let path = d.join("defs").join(args[1]);
        let text = std::fs::read_to_string(&path).unwrap();
        let rel = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("#:schema "))
            .unwrap_or_else(|| panic!("no #:schema line in {path:?}:\n{text}"));
        let schema = path.parent().unwrap().join(rel);
        assert_eq!(
            std::fs::canonicalize(&schema).unwrap(),
            std::fs::canonicalize(d.join(".dg/schema/defs.json")).unwrap(),
            "{path:?}"
        );
        files.push(path);
    }
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join(".dg/schema/defs.json")).unwrap())
            .unwrap();
    assert_eq!(s, schema("defs"), "the written schema is the printed one");
    if let Some(invalid) = python_invalid(&s, &files) {
        assert!(invalid.is_empty(), "{invalid}");
    }
    // `dg schema --write` writes both, where they are expected.
    let r = dg(d, &["schema", "--write"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(".dg/schema/defs.json") && r.stdout.contains(".dg/schema/config.json")
    );
}
