//! Fuzzing of every parser a user or a program can feed dg, as `proptest`
//! harnesses that run with `cargo test` (and longer in CI):
//!
//! - definitions: the TOML loader and the validator, on mutations of a seed
//!   corpus (`tests/fixtures/fuzz/defs/`, the bundled `defs/` and every
//!   malformed fixture);
//! - the selection language;
//! - partition keys, for every kind of partitions definition;
//! - a plug-in's reply lines;
//! - the lines a step appends to `DG_MESSAGES`.
//!
//! The property is the same everywhere: whatever the input, no panic, and a
//! rejection is a message that says where (a located diagnostic, a span
//! inside the selection). `DG_FUZZ_CASES` sets the number of cases per
//! target (256 by default; `.ci/run` uses more). A failure prints the
//! smallest input proptest found; add it to the corpus once fixed.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::diag::Render;

fn cases() -> u32 {
    std::env::var("DG_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.toml` below `dir`.
fn tomls(dir: &Path, out: &mut Vec<String>) {
    for e in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "toml")
            && let Ok(t) = std::fs::read_to_string(e.path())
        {
            out.push(t);
        }
    }
}

/// The seed corpus of definitions files.
fn defs_corpus() -> Vec<String> {
    let mut out = Vec::new();
    for d in [
        "tests/fixtures/fuzz/defs",
        "defs",
        "tests/fixtures/malformed",
    ] {
        tomls(&repo().join(d), &mut out);
    }
    assert!(
        out.len() >= 20,
        "the corpus is missing: {} files",
        out.len()
    );
    out
}

/// Values that have broken parsers before, or could.
const NASTY: &[&str] = &[
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    "1e309",
    "nan",
    "-0",
    "\"\"",
    "[]",
    "{}",
    "\"300000000000 years\"",
    "\"../../etc\"",
    "\"a\\u0000b\"",
    "\"\u{202e}evil\"",
    "\"\u{200b}\"",
    "\"${env:}\"",
    "\"${env:X:-${env:Y}}\"",
    "\"2024-02-30\"",
    "\"9999-12-31-23:59\"",
    "\"0 0 30 2 *\"",
    "\"* * * * * *\"",
    "\"%Y%Q\"",
    "true",
    "\"Mars/Olympus\"",
    "{ type = \"time_window\", start_offset = 5, end_offset = -5 }",
    "{ type = \"multi\", dimensions = {} }",
];

/// One edit of a text.
#[derive(Clone, Debug)]
enum Edit {
    /// Insert a character at a position (a fraction of the length).
    Insert(f64, char),
    /// Delete `n` bytes at a position.
    Delete(f64, usize),
    /// Replace what follows `= ` on a line with a nasty value.
    Value(f64, usize),
    /// Duplicate a line.
    DupLine(f64),
    /// Swap two lines.
    Swap(f64, f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let ch = prop_oneof![
        prop::sample::select(vec![
            '[', ']', '{', '}', '=', '"', '\'', '.', ',', '#', '\n', ' ', '-', ':', '$', '\\', '/',
            '0', '9', 'é', '日', '\u{0}', '\u{feff}'
        ]),
        any::<char>(),
    ];
    prop_oneof![
        (0.0..1.0f64, ch).prop_map(|(p, c)| Edit::Insert(p, c)),
        (0.0..1.0f64, 1..12usize).prop_map(|(p, n)| Edit::Delete(p, n)),
        (0.0..1.0f64, 0..NASTY.len()).prop_map(|(p, i)| Edit::Value(p, i)),
        (0.0..1.0f64).prop_map(Edit::DupLine),
        (0.0..1.0f64, 0.0..1.0f64).prop_map(|(a, b)| Edit::Swap(a, b)),
    ]
}

fn at(text: &str, p: f64) -> usize {
    let mut i = ((text.len() as f64) * p) as usize;
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i.min(text.len())
}

fn apply(text: &str, e: &Edit) -> String {
    let mut t = text.to_string();
    match e {
        Edit::Insert(p, c) => t.insert(at(&t, *p), *c),
        Edit::Delete(p, n) => {
            let a = at(&t, *p);
            let mut b = (a + n).min(t.len());
            while !t.is_char_boundary(b) {
                b += 1;
            }
            t.replace_range(a..b, "");
        }
        Edit::Value(p, i) => {
            let lines: Vec<&str> = t.lines().collect();
            if lines.is_empty() {
                return t;
            }
            let n = ((lines.len() as f64) * p) as usize % lines.len();
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            if let Some((k, _)) = lines[n].split_once('=') {
                out[n] = format!("{k}= {}", NASTY[*i]);
            }
            t = out.join("\n");
        }
        Edit::DupLine(p) => {
            let mut lines: Vec<&str> = t.lines().collect();
            if !lines.is_empty() {
                let n = ((lines.len() as f64) * p) as usize % lines.len();
                lines.insert(n, lines[n]);
            }
            t = lines.join("\n");
        }
        Edit::Swap(a, b) => {
            let mut lines: Vec<&str> = t.lines().collect();
            if !lines.is_empty() {
                let i = ((lines.len() as f64) * a) as usize % lines.len();
                let j = ((lines.len() as f64) * b) as usize % lines.len();
                lines.swap(i, j);
            }
            t = lines.join("\n");
        }
    }
    t
}

/// Validates `text` as one definitions file; checks that every error is
/// located and that rendering never panics.
fn check_defs_text(text: &str) -> Result<(), TestCaseError> {
    let env = |n: &str| (n == "SET").then(|| "v".to_string());
    let (sources, defs, diags) =
        crate::validate::validate_text("defs/a.toml", text.to_string(), &env);
    let shown = Render {
        sources: &sources,
        color: false,
    }
    .all(&diags);
    for d in diags.items.iter().filter(|d| d.is_error()) {
        prop_assert!(
            d.primary.is_some(),
            "an error without a location: {}\n--- input:\n{text}",
            d.message
        );
    }
    prop_assert_eq!(defs.is_some(), !diags.has_errors(), "{}", shown);
    // What validates also plans: every asset's partitions can be listed.
    if let Some(defs) = defs {
        let cx = crate::partitions::KeyCtx::new(1_700_000_000);
        for a in &defs.assets {
            if let Some(p) = &a.partitions {
                let n = p.def.len(&cx).min(50);
                for i in 0..n {
                    let _ = p.def.key(i, &cx);
                }
            }
        }
        let _ = crate::select::select(&defs, Some("*"));
    }
    Ok(())
}

#[test]
fn fuzz_definitions() {
    let corpus = defs_corpus();
    let n = corpus.len();
    runner()
        .run(
            &(0..n, prop::collection::vec(edit(), 1..6)),
            |(seed, edits)| {
                let mut t = corpus[seed].clone();
                for e in &edits {
                    t = apply(&t, e);
                }
                check_defs_text(&t)
            },
        )
        .unwrap();
}

#[test]
fn the_corpus_itself_is_handled() {
    for t in defs_corpus() {
        check_defs_text(&t).unwrap();
    }
}

/// Definitions for the selection and key targets: every kind of partitions.
const TARGET_DEFS: &str = r#"
[partitions.hourly]
type = "hourly"
start = "2024-01-01-00:00"
timezone = "Europe/Amsterdam"

[partitions.daily]
type = "daily"
start = "20240101"
fmt = "%Y%m%d"

[partitions.weekly]
type = "weekly"
start = "2024-01-07"

[partitions.monthly]
type = "monthly"
start = "2020-01-01"
end = "2030-01-01"

[partitions.cron]
type = "cron"
cron = "*/30 9-17 * * 1-5"
start = "2024-01-01-00:00"
timezone = "America/Santiago"

[partitions.region]
type = "static"
keys = ["us", "eu", "日本", "a b", "x.y"]

[partitions.files]
type = "dynamic"

[partitions.grid]
type = "multi"
dimensions = { date = "daily", region = "region" }

[assets."raw/events"]
partitions = "hourly"
shell = "true"
group = "raw"
tags = { team = "data" }

[assets.daily]
partitions = "daily"
deps = ["raw/events"]
ins = { events = { asset = "raw/events", mapping = { type = "all" } } }
shell = "true"

[assets.grid]
partitions = "grid"
shell = "true"

[assets.files]
partitions = "files"
sql = "SELECT 1"

[assets."with.dot"]
shell = "true"
"#;

fn target_defs() -> crate::model::Defs {
    crate::validate::defs_for_test(TARGET_DEFS)
}

#[test]
fn fuzz_selection() {
    let defs = target_defs();
    let token = prop_oneof![
        prop::sample::select(vec![
            "*",
            "+",
            "2+",
            "+1",
            "(",
            ")",
            ",",
            " and ",
            " or ",
            "not ",
            "key:",
            "group:",
            "tag:",
            "kind:",
            "raw/*",
            "raw/events",
            "daily",
            "grid",
            "\"with.dot\"",
            "'",
            "\"",
            "team=data",
            "sql",
            "=",
            ":",
            " ",
            "**",
            "[",
            "\\",
        ])
        .prop_map(str::to_string),
        "\\PC{0,6}",
    ];
    runner()
        .run(&prop::collection::vec(token, 0..10), |tokens| {
            let text = tokens.concat();
            match crate::select::select(&defs, Some(&text)) {
                Ok(ids) => prop_assert!(ids.iter().all(|&i| i < defs.assets.len())),
                Err(e) => {
                    prop_assert!(
                        e.span.start <= e.span.end && e.span.end <= text.len(),
                        "span {:?} outside `{text}`",
                        e.span
                    );
                    prop_assert!(!e.message.is_empty());
                    let _ = e.render(&text, false);
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn fuzz_partition_keys() {
    let defs = target_defs();
    let mut cx = crate::partitions::KeyCtx::new(1_750_000_000);
    cx.dynamic.insert(
        "files".into(),
        crate::partitions::StaticPartitions::new(vec!["a.csv".into(), "b c".into()]),
    );
    let partitioned: Vec<_> = defs
        .assets
        .iter()
        .filter_map(|a| a.partitions.as_ref().map(|p| p.def.clone()))
        .collect();
    // Valid keys of each definition, to mutate.
    let mut valid: Vec<String> = Vec::new();
    for d in &partitioned {
        let n = d.len(&cx);
        for i in [0, 1, n / 2, n - 1] {
            if let Some(k) = d.key(i, &cx) {
                valid.push(k);
            }
        }
    }
    let key = prop_oneof![
        "\\PC{0,24}",
        (0..valid.len(), edit()).prop_map({
            let valid = valid.clone();
            move |(i, e)| apply(&valid[i], &e)
        }),
        prop::sample::select(valid.clone()),
    ];
    runner()
        .run(&key, |key| {
            for d in &partitioned {
                if let Some(i) = d.index_of(&key, &cx) {
                    // A key is found only as itself: no silent aliases
                    // (`2024-1-5` is not `2024-01-05`).
                    prop_assert_eq!(d.key(i, &cx), Some(key.clone()), "{}", d.type_name());
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn fuzz_plugin_replies() {
    let line = prop_oneof![
        "\\PC{0,40}",
        prop::sample::select(vec![
            r#"{"ok": true}"#,
            r#"{"ok": false, "error": "no"}"#,
            r#"{"ok": "yes"}"#,
            r#"{"id": 7, "ok": true}"#,
            r#"{"id": 1, "ok": true, "path": 5}"#,
            r#"[1, 2]"#,
            r#"{"ok": true, "rows": -1}"#,
            "null",
        ])
        .prop_map(str::to_string),
    ];
    let id = serde_json::json!(1);
    runner()
        .run(&(line, edit()), |(l, e)| {
            let l = apply(&l, &e);
            match crate::io::plugin::check_reply(&l, Some(&id)) {
                Ok(v) => prop_assert_eq!(v.get("ok"), Some(&serde_json::json!(true))),
                Err(f) => prop_assert!(!f.to_string().is_empty()),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn fuzz_step_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messages.jsonl");
    let log_path = dir.path().join("log");
    let line = prop_oneof![
        "\\PC{0,40}",
        prop::sample::select(vec![
            r#"{"metadata": {"rows": 3}}"#,
            r#"{"metadata": 3}"#,
            r#"{"retry": false}"#,
            r#"{"metadata": {"a": {"b": [1, {"c": null}]}}}"#,
            "[]",
        ])
        .prop_map(str::to_string),
    ];
    runner()
        .run(&prop::collection::vec(line, 0..6), |lines| {
            std::fs::write(&path, lines.join("\n")).unwrap();
            let mut log = std::fs::File::create(&log_path).unwrap();
            let md = crate::exec::step::read_messages(&path, &mut log);
            // Only what the step put under "metadata" is kept.
            for k in md.keys() {
                prop_assert!(lines.iter().any(|l| l.contains(k.as_str())));
            }
            Ok(())
        })
        .unwrap();
}
