//! Issue 13's property: what a step writes is what the next step reads,
//! through every manager and in every format. Random CSV tables (empty,
//! nulls, unicode, leading zeros, big integers, floats, booleans in several
//! spellings, dates, timestamps with zones) are stored through each
//! manager (`fs` in csv, jsonl and parquet, `memory`, `sqlite`, `duckdb`, `postgres`
//! when `DG_TEST_POSTGRES_URL` is set, and the example `command` plug-in),
//! loaded back, handed over as csv, jsonl and parquet like a step's input,
//! and read as text again: every value must be the text that was written.
//!
//! The one documented exception: JSON lines has no header, so a table with
//! no rows is an empty file there and its columns are gone (when it is
//! stored, or handed over, as JSON lines).

use std::path::Path;
use std::sync::Arc;

use dg::io::{
    Data, Format, InputContext, IoManager, Loaded, OutputContext, PartitionRef, Registry,
    ResourceCx, table,
};
use proptest::prelude::*;

use crate::support::repo;

/// A table as text: the header, then rows of values (`None`: empty).
#[derive(Clone, Debug, PartialEq)]
struct TextTable {
    header: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

impl TextTable {
    fn to_csv(&self) -> String {
        let field = |s: &str| {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let mut out = self
            .header
            .iter()
            .map(|h| field(h))
            .collect::<Vec<_>>()
            .join(",");
        out.push('\n');
        for r in &self.rows {
            let line: Vec<String> = r
                .iter()
                .map(|v| v.as_deref().map_or(String::new(), field))
                .collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        out
    }
}

/// Reads a CSV file with every column as text (no inference at all).
fn read_as_text(path: &Path) -> TextTable {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Field, Schema};
    if std::fs::metadata(path).unwrap().len() == 0 {
        return TextTable {
            header: Vec::new(),
            rows: Vec::new(),
        };
    }
    let mut f = std::fs::File::open(path).unwrap();
    let (schema, _) = arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(&mut f, Some(0))
        .unwrap();
    let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let text = Arc::new(Schema::new(
        header
            .iter()
            .map(|h| Field::new(h, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = arrow::csv::ReaderBuilder::new(text)
        .with_header(true)
        .build(std::fs::File::open(path).unwrap())
        .unwrap();
    let mut rows = Vec::new();
    for b in reader {
        let b = b.unwrap();
        for r in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| {
                        let s = c.as_string::<i32>();
                        (!s.is_null(r)).then(|| s.value(r).to_string())
                    })
                    .collect(),
            );
        }
    }
    TextTable { header, rows }
}

/// One value of a column of the given kind.
fn value(kind: u8) -> BoxedStrategy<String> {
    match kind {
        // Text: unicode, quotes, commas, new lines, spaces.
        0 => prop_oneof![
            "[a-zA-Z0-9 ]{1,8}",
            "[ü日本🦀é\"', \n]{1,5}",
            Just("NULL".to_string()),
            Just("  padded ".to_string()),
        ]
        .boxed(),
        // Integers, with leading zeros and beyond 64 bits.
        1 => prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            (0u32..100000).prop_map(|i| format!("{i:05}")),
            Just("99999999999999999999".to_string()),
            Just("-0".to_string()),
            Just("+5".to_string()),
        ]
        .boxed(),
        // Floats that print exactly, and some that do not.
        2 => prop_oneof![
            (
                -1000i32..1000,
                prop::sample::select(vec![".0", ".5", ".25", ".125", ".75"])
            )
                .prop_map(|(i, f)| format!("{i}{f}")),
            prop::sample::select(vec![
                "1e-7",
                "1e20",
                "0.1",
                "123456.789",
                "1.50",
                "1e3",
                "3"
            ])
            .prop_map(str::to_string),
        ]
        .boxed(),
        // Booleans in several spellings.
        3 => prop::sample::select(vec![
            "true", "false", "True", "FALSE", "yes", "no", "t", "f", "1", "0",
        ])
        .prop_map(str::to_string)
        .boxed(),
        // Dates.
        4 => (2000i32..2030, 1u32..13, 1u32..29)
            .prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}"))
            .boxed(),
        // Timestamps with zones (and without).
        _ => (
            0u32..24,
            0u32..60,
            prop::sample::select(vec!["Z", "+02:00", "-05:30", ""]),
        )
            .prop_map(|(h, m, z)| format!("2024-03-31T{h:02}:{m:02}:00{z}"))
            .boxed(),
    }
}

/// A column: a kind, and values of it (or of a few kinds, mixed), some empty.
fn column(rows: usize) -> impl Strategy<Value = Vec<Option<String>>> {
    (0u8..7).prop_flat_map(move |kind| {
        let one = if kind == 6 {
            prop_oneof![value(0), value(1), value(2), value(3)].boxed()
        } else {
            value(kind)
        };
        prop::collection::vec(prop::option::weighted(0.8, one), rows)
    })
}

fn tables() -> impl Strategy<Value = TextTable> {
    (1usize..5, 0usize..6).prop_flat_map(|(ncols, nrows)| {
        prop::collection::vec(column(nrows), ncols).prop_map(move |cols| {
            let header = (0..ncols).map(|i| format!("c{i}")).collect();
            let rows = (0..nrows)
                .map(|r| {
                    cols.iter()
                        .enumerate()
                        .map(|(i, c)| {
                            // A row of one empty field would be a blank line,
                            // which CSV cannot tell from no row at all.
                            if i == 0 && ncols == 1 {
                                Some(c[r].clone().unwrap_or_else(|| "x".into()))
                            } else {
                                c[r].clone()
                            }
                        })
                        .collect()
                })
                .collect();
            TextTable { header, rows }
        })
    })
}

/// Every manager under test, by name.
fn managers(dir: &Path, pg_schema: Option<(&str, &str)>) -> Vec<(String, Arc<dyn IoManager>)> {
    let registry = Registry::builtin();
    let cx = ResourceCx::new(dir).with_run_id("roundtrip");
    let plugin = repo().join("examples/plugins/fs_plugin.py");
    let mut configs: Vec<(String, &str, String)> = vec![
        (
            "fs csv".into(),
            "fs",
            "base_dir = \"fs_csv\"\nformat = \"csv\"".into(),
        ),
        (
            "fs jsonl".into(),
            "fs",
            "base_dir = \"fs_jsonl\"\nformat = \"jsonl\"".into(),
        ),
        (
            "fs parquet".into(),
            "fs",
            "base_dir = \"fs_pq\"\nformat = \"parquet\"".into(),
        ),
        ("memory".into(), "memory", String::new()),
        ("sqlite".into(), "sqlite", "path = \"w.db\"".into()),
        #[cfg(feature = "duckdb")]
        ("duckdb".into(), "duckdb", "path = \"w.duckdb\"".into()),
        (
            "command".into(),
            "command",
            format!(
                "command = [\"python3\", {:?}]\nformat = \"csv\"\nconfig = {{ root = \"plugin\" }}",
                plugin.display().to_string()
            ),
        ),
    ];
    if let Some((url, schema)) = pg_schema {
        configs.push((
            "postgres".into(),
            "postgres",
            format!("url = {url:?}\nschema = {schema:?}"),
        ));
    }
    configs
        .into_iter()
        .map(|(name, ty, text)| {
            let m = dg::__internal::create_manager(&registry, ty, &text, &cx)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            (name, m)
        })
        .collect()
}

fn partition(key: &str) -> PartitionRef {
    PartitionRef::new(key)
}

/// Partition `key` of asset `key` (one asset per case: a database table's
/// columns are fixed by its first partition).
fn output(key: &str) -> OutputContext {
    OutputContext::new(key, Format::Csv)
        .with_partition(partition(key))
        .with_run("roundtrip", "t")
}

/// Stores `t` (as the CSV a step wrote) through `m` as partition `key`,
/// loads it back, hands it over in every format, and checks the values.
fn round_trip(name: &str, m: &dyn IoManager, t: &TextTable, key: &str, dir: &Path) {
    let src = dir.join(format!("{key}-{}.csv", name.replace(' ', "_")));
    std::fs::write(&src, t.to_csv()).unwrap();
    m.handle_output(
        &output(key),
        Data::File {
            path: src,
            format: Format::Csv,
        },
    )
    .unwrap_or_else(|e| panic!("{name}: storing {t:?}: {e:#}"));
    assert!(m.exists(&output(key)).unwrap(), "{name}: {key} is stored");
    let ictx = InputContext::new("t", "reader", output(key))
        .with_partitions(vec![partition(key)])
        .with_step_id("reader");
    let loaded = m
        .load_input(&ictx)
        .unwrap_or_else(|e| panic!("{name}: loading {t:?}: {e:#}"));
    let Loaded::Partitions(parts) = loaded else {
        panic!("{name}: a partitioned upstream loads as partitions")
    };
    let data = parts.get(key).expect("the partition");
    for f in [Format::Csv, Format::Jsonl, Format::Parquet] {
        let handed = dir.join(format!(
            "{key}-{}-in{}",
            name.replace(' ', "_"),
            f.extension()
        ));
        dg::__internal::combine_to_file(std::slice::from_ref(data), f, &handed)
            .unwrap_or_else(|e| panic!("{name} as {f:?}: {e:#}"));
        let back = dir.join(format!("{key}-{}-back.csv", name.replace(' ', "_")));
        let read = table::read(&handed, f).unwrap_or_else(|e| panic!("{name} as {f:?}: {e:#}"));
        table::write(&read, &back, Format::Csv).unwrap();
        let got = read_as_text(&back);
        // JSON lines has no header: stored or handed over as JSON lines, a
        // table with no rows has no columns either.
        let through_jsonl = f == Format::Jsonl || name == "fs jsonl";
        let want = if t.rows.is_empty() && through_jsonl {
            TextTable {
                header: Vec::new(),
                rows: Vec::new(),
            }
        } else {
            t.clone()
        };
        assert_eq!(got, want, "{name}, handed over as {f:?}");
    }
}

#[test]
fn every_manager_and_format_gives_back_what_was_written() {
    let url = crate::postgres_manager::pg_url();
    let schema = crate::postgres_manager::random_schema();
    let dir = tempfile::TempDir::new().unwrap();
    let managers = managers(dir.path(), url.as_deref().map(|u| (u, schema.as_str())));
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(t in tables())| {
        let key = format!("p{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        for (name, m) in &managers {
            round_trip(name, m.as_ref(), &t, &key, &scratch);
        }
    });
    if let Some(url) = url {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
    }
}
