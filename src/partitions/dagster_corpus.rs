//! Replays the random differential corpus (`tests/fixtures/dagster/corpus.json`,
//! made by `corpus.py` there from Dagster 1.13.27) against dg's partition
//! library, with no Python. `DG_CORPUS=/path/to/other.json` replays another
//! corpus instead (`corpus.py --seed N --out …`).
//!
//! Every case must agree with Dagster, or be recognised by one of the named
//! deliberate-difference rules below. A rule is a narrow predicate on the case
//! and both answers; anything else fails the test and is listed.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::dagster_fixtures::{build, build_pair, dagster_class, now_of, strings};
use super::mapping::{Mapped, map_upstream};
use super::{KeyCtx, PartitionsDef};
use crate::diag::Diagnostics;

/// How one case came out.
enum Outcome {
    Agree,
    /// A deliberate difference, by rule name.
    Rule(&'static str),
    /// An unexplained difference: its class (for the summary) and details.
    Differ(&'static str, String),
}

use Outcome::{Agree, Differ, Rule};

fn fnv1a(keys: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            h = (h ^ u64::from(b'\n')).wrapping_mul(0x0100_0000_01b3);
        }
        for b in k.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn diag_text(d: &Diagnostics) -> String {
    d.items
        .iter()
        .map(|d| {
            let label = d.primary.as_ref().map_or("", |l| l.text.as_str());
            format!("{} [{label}]", d.message)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Compares keys against a corpus key list recorded under `prefix` (full
/// `keys`, or `count` + `first`/`last` + `hash`). `None` when they agree.
fn compare_keys(got: &[String], want: &Json, prefix: &str) -> Option<String> {
    let count = want[format!("{prefix}count")].as_i64();
    if let Some(c) = count
        && c != got.len() as i64
    {
        return Some(format!(
            "count {}, Dagster {c}; dg {}, Dagster {}",
            got.len(),
            brief(got),
            brief_json(want, prefix)
        ));
    }
    if let Some(keys) = want.get(format!("{prefix}keys")) {
        let keys = strings(keys);
        return (keys != got).then(|| format!("keys {}, Dagster {}", brief(got), brief(&keys)));
    }
    let first = strings(&want[format!("{prefix}first")]);
    let last = strings(&want[format!("{prefix}last")]);
    if got.len() < 5 || got[..5] != first[..] || got[got.len() - 5..] != last[..] {
        return Some(format!(
            "keys {}, Dagster {}",
            brief(got),
            brief_json(want, prefix)
        ));
    }
    let hash = want[format!("{prefix}hash")].as_str().unwrap_or_default();
    (fnv1a(got) != hash).then(|| format!("keys {} differ inside (hash)", brief(got)))
}

fn brief(keys: &[String]) -> String {
    if keys.len() <= 6 {
        format!("{keys:?}")
    } else {
        format!(
            "[{} keys: {:?} … {:?}]",
            keys.len(),
            &keys[..3],
            &keys[keys.len() - 3..]
        )
    }
}

fn brief_json(want: &Json, prefix: &str) -> String {
    match want.get(format!("{prefix}keys")) {
        Some(k) => brief(&strings(k)),
        None => format!(
            "[{} keys: {:?} … {:?}]",
            want[format!("{prefix}count")],
            strings(&want[format!("{prefix}first")]),
            strings(&want[format!("{prefix}last")])
        ),
    }
}

// ---------------------------------------------------------------------------
// Deliberate differences: definitions
// ---------------------------------------------------------------------------

/// dg rejects offsets outside their calendar range (weekly `day_offset`
/// 0..=6, monthly 1..=28, `hour_offset` on hourly) that Dagster accepts,
/// wraps or ignores.
fn rule_offset_out_of_range(spec: &Json, dg_error: &str) -> bool {
    let n = |k: &str| spec.get(k).and_then(Json::as_i64);
    let bad = match spec["type"].as_str() {
        Some("weekly") => n("day_offset").is_some_and(|d| !(0..=6).contains(&d)),
        Some("monthly") => n("day_offset").is_some_and(|d| !(1..=28).contains(&d)),
        Some("hourly") => n("hour_offset").is_some(),
        _ => false,
    };
    bad && dg_error.contains("_offset")
}

/// dg rejects `end` at or before `start`, where Dagster has no partitions.
/// (Every `fmt` the corpus draws orders its strings like the times.)
fn rule_end_not_after_start(spec: &Json, dg_error: &str, dagster_count: Option<i64>) -> bool {
    let (Some(start), Some(end)) = (spec["start"].as_str(), spec["end"].as_str()) else {
        return false;
    };
    end <= start && dg_error.contains("must be after") && dagster_count.is_none_or(|n| n == 0)
}

/// dg rejects a `fmt` too coarse for the schedule (consecutive windows
/// would share a key); Dagster makes duplicate keys.
fn rule_fmt_too_coarse(spec: &Json, dg_error: &str) -> bool {
    let Some(fmt) = spec.get("fmt").and_then(Json::as_str) else {
        return false;
    };
    let need: &[&str] = match (spec["type"].as_str(), spec["cron"].as_str()) {
        (Some("hourly"), _) => &["%H", "%M"],
        (Some("daily" | "weekly"), _) => &["%d"],
        (Some("monthly"), _) => &["%m"],
        (Some("cron"), Some("*/30 * * * *" | "0 */6 * * *")) => &["%H", "%M"],
        (Some("cron"), Some("30 2 * * 1-5" | "0 0 * * *")) => &["%d"],
        (Some("cron"), Some("0 0 1 */3 *")) => &["%m"],
        _ => &[],
    };
    need.iter().any(|f| !fmt.contains(f)) && dg_error.contains("fmt")
}

/// A definition-level rule for one partitions spec (recursing into multi
/// dimensions), given dg's rejection.
fn definition_rule(
    spec: &Json,
    dg_error: &str,
    dagster_count: Option<i64>,
) -> Option<&'static str> {
    if spec["type"] == "multi" {
        return spec["dimensions"]
            .as_object()?
            .values()
            .find_map(|d| definition_rule(d, dg_error, None));
    }
    if rule_offset_out_of_range(spec, dg_error) {
        return Some("rejected: offset out of its calendar range");
    }
    if rule_end_not_after_start(spec, dg_error, dagster_count) {
        return Some("rejected: end not after start");
    }
    if rule_fmt_too_coarse(spec, dg_error) {
        return Some("rejected: fmt too coarse for the schedule");
    }
    None
}

// ---------------------------------------------------------------------------
// Key cases
// ---------------------------------------------------------------------------

fn key_case(case: &Json) -> Outcome {
    let spec = &case["partitions"];
    let dagster_error = case.get("error").and_then(Json::as_str);
    let def = match build(spec) {
        Err(d) => {
            let text = diag_text(&d);
            if dagster_error.is_some() {
                return Agree;
            }
            if let Some(rule) = definition_rule(spec, &text, case["count"].as_i64()) {
                return Rule(rule);
            }
            return Differ("dg rejects a definition Dagster accepts", text);
        }
        Ok(d) => d,
    };
    if let Some(e) = dagster_error {
        return Differ(
            "dg accepts a definition Dagster rejects",
            format!("Dagster: {e}"),
        );
    }
    let cx = KeyCtx::new(now_of(case));
    let count = def.len(&cx);
    let keys: Vec<String> = (0..count).filter_map(|i| def.key(i, &cx)).collect();
    if let Some(why) = compare_keys(&keys, case, "") {
        let class = if count != case["count"].as_i64().unwrap_or(-1) {
            "key count"
        } else {
            "key strings"
        };
        return Differ(class, why);
    }
    for (i, k) in keys.iter().enumerate().take(2000) {
        if def.index_of(k, &cx) != Some(i as i64) {
            return Differ("index_of(key) round trip", format!("index_of({k}) != {i}"));
        }
    }
    if let (Some(ws), PartitionsDef::Time(t)) =
        (case.get("windows").and_then(Json::as_array), &*def)
    {
        for w in ws {
            let (Some(key), Some(start)) = (w["key"].as_str(), w["start"].as_str()) else {
                continue;
            };
            let Some((s, e)) = t.index_of_key(key).and_then(|i| t.window(i)) else {
                return Differ("window", format!("{key} has no window in dg"));
            };
            let end = w["end"].as_str().unwrap_or_default();
            if s.to_rfc3339() != start || e.to_rfc3339() != end {
                return Differ(
                    "window",
                    format!(
                        "window of {key}: {} .. {}, Dagster {start} .. {end}",
                        s.to_rfc3339(),
                        e.to_rfc3339()
                    ),
                );
            }
        }
    }
    Agree
}

// ---------------------------------------------------------------------------
// Deliberate differences: mappings
// ---------------------------------------------------------------------------

/// Whether `key` lies outside the upstream's current partitions in time:
/// before its first window or at/after the end of its last one (not a gap,
/// not a key the definition lacks).
fn outside_bounds(up: &PartitionsDef, key: &str, cx: &KeyCtx) -> bool {
    match up {
        PartitionsDef::Time(t) => {
            if key.ends_with("(before the first partition)") {
                return true;
            }
            if let Some(i) = t.index_of_key(key) {
                return i >= t.count(cx.now);
            }
            match super::time::parse_time(key, &t.fmt) {
                Ok(naive) => t
                    .tick(0)
                    .is_some_and(|first| t.localize(naive).timestamp() < first),
                Err(_) => false,
            }
        }
        PartitionsDef::Multi(m) => {
            let Some((a, b)) = super::MultiPartitions::split(key) else {
                return false;
            };
            let (da, db) = (&m.dims[0].1, &m.dims[1].1);
            (outside_bounds(da, a, cx) && db.index_of(b, cx).is_some())
                || (outside_bounds(db, b, cx) && da.index_of(a, cx).is_some())
        }
        _ => false,
    }
}

/// Whether the mapping moves time windows by an offset (itself, or in one
/// dimension of a multi mapping).
fn has_offsets(mapping: &Json) -> bool {
    match mapping["type"].as_str() {
        Some("time_window") => {
            mapping["start_offset"].as_i64().unwrap_or(0) != 0
                || mapping["end_offset"].as_i64().unwrap_or(0) != 0
        }
        Some("multi") => mapping["dimensions"]
            .as_object()
            .is_some_and(|d| d.values().any(|d| has_offsets(&d["mapping"]))),
        _ => false,
    }
}

/// Contract §4, "not clamped": Dagster clamps an offset window at the
/// upstream's bounds and drops what falls outside; dg keeps the same
/// existing keys and reports the rest as nonexistent.
fn rule_not_clamped(
    mapping: &Json,
    up: &PartitionsDef,
    cx: &KeyCtx,
    keys_agree: bool,
    dg_nonexistent: &[String],
    dagster_nonexistent: &[String],
) -> bool {
    keys_agree
        && has_offsets(mapping)
        && dagster_nonexistent
            .iter()
            .all(|k| dg_nonexistent.contains(k))
        && dg_nonexistent
            .iter()
            .filter(|k| !dagster_nonexistent.contains(k))
            .all(|k| outside_bounds(up, k, cx))
}

/// A mapping-level rule for dg's rejection of a pair Dagster accepts.
fn mapping_rejection_rule(case: &Json, dg_error: &str) -> Option<&'static str> {
    for side in ["upstream", "downstream"] {
        if let Some(r) = definition_rule(&case[side], dg_error, None) {
            return Some(r);
        }
    }
    let m = &case["mapping"];
    match m["type"].as_str() {
        // dg refuses keys the upstream does not have (Dagster maps them to nothing).
        Some("specific") if dg_error.contains("not a key") || dg_error.contains("no partition") => {
            Some("rejected: specific key not in the upstream")
        }
        // dg refuses a dimension the multi definition does not have.
        Some("multi_to_single") if dg_error.contains("no dimension") => {
            Some("rejected: multi_to_single names no dimension of the multi side")
        }
        _ => None,
    }
}

fn mapping_case(case: &Json) -> Outcome {
    let (defs, diags) = build_pair(case);
    let dagster_rejects = case.get("error").is_some() || case.get("validation_error").is_some();
    let Some(defs) = defs else {
        if dagster_rejects {
            return Agree;
        }
        let text = diag_text(&diags);
        if let Some(r) = mapping_rejection_rule(case, &text) {
            return Rule(r);
        }
        return Differ("dg rejects a mapping Dagster accepts", text);
    };
    if let Some(e) = case.get("error") {
        return Differ(
            "dg accepts a mapping Dagster rejects",
            format!("Dagster: {e}"),
        );
    }
    if let Some(e) = case.get("validation_error") {
        return Differ(
            "dg accepts a mapping Dagster's validation rejects",
            format!("Dagster: {e}"),
        );
    }
    let down_asset = defs.asset("down").unwrap();
    let input = &down_asset.inputs[0];
    if case["mapping"].is_null() && dagster_class(&input.mapping) != case["inferred"] {
        return Differ(
            "inferred mapping",
            format!("dg {:?}, Dagster {}", input.mapping, case["inferred"]),
        );
    }
    let Some(up_def) = defs.asset("up").unwrap().partitions.as_ref() else {
        return Agree; // unpartitioned upstream: the whole asset, nothing to map
    };
    let up_def = up_def.def.clone();
    let down_def = down_asset.partitions.as_ref().map(|p| p.def.clone());
    let cx = KeyCtx::new(now_of(case));
    let mut outcome = Agree;
    for pk in case["per_key"].as_array().into_iter().flatten() {
        let key = pk["key"].as_str();
        let down = match (&down_def, key) {
            (Some(d), Some(k)) => match d.index_of(k, &cx) {
                Some(i) => Some((&**d, i)),
                None if pk.get("dropped").is_some() => continue,
                None => {
                    return Differ(
                        "downstream key unknown to dg",
                        format!("{k} is not a downstream key in dg"),
                    );
                }
            },
            (None, None) => None,
            _ => return Differ("harness", format!("key {key:?} vs downstream {down_def:?}")),
        };
        if pk.get("dropped").is_some() {
            return Differ(
                "downstream key Dagster does not have",
                format!("{key:?} is a downstream key in dg, Dagster drops it"),
            );
        }
        let Mapped {
            indices,
            nonexistent,
            ..
        } = map_upstream(&input.mapping, &up_def, down, &cx);
        let got: Vec<String> = indices.iter().filter_map(|i| up_def.key(i, &cx)).collect();
        if let Some(e) = pk.get("error") {
            return Differ(
                "Dagster errors mapping a key",
                format!(
                    "for {key:?}: dg {} (nonexistent {nonexistent:?}), Dagster {e}",
                    brief(&got)
                ),
            );
        }
        let keys_diff = compare_keys(&got, pk, "up_");
        let mut dg_ne = nonexistent.clone();
        dg_ne.sort();
        dg_ne.dedup();
        let mut dagster_ne = strings(&pk["nonexistent"]);
        dagster_ne.sort();
        if keys_diff.is_none() && dg_ne == dagster_ne {
            continue;
        }
        if rule_not_clamped(
            &case["mapping"],
            &up_def,
            &cx,
            keys_diff.is_none(),
            &dg_ne,
            &dagster_ne,
        ) {
            outcome = Rule("not clamped: offsets past the upstream's bounds are nonexistent");
            continue;
        }
        let class = if keys_diff.is_some() {
            "mapped upstream keys"
        } else {
            "nonexistent keys"
        };
        return Differ(
            class,
            format!(
                "for {key:?}: {}; nonexistent dg {dg_ne:?}, Dagster {dagster_ne:?}",
                keys_diff.unwrap_or_else(|| format!("keys agree ({})", brief(&got)))
            ),
        );
    }
    outcome
}

// ---------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    cases: usize,
    agree: usize,
    rules: BTreeMap<&'static str, usize>,
    classes: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, case: &Json, outcome: Outcome) {
        self.cases += 1;
        match outcome {
            Agree => self.agree += 1,
            Rule(r) => *self.rules.entry(r).or_default() += 1,
            Differ(class, why) => {
                *self.classes.entry(class).or_default() += 1;
                let spec = |k: &str| serde_json::to_string(&case[k]).unwrap_or_default();
                let what = if case.get("partitions").is_some() {
                    spec("partitions")
                } else {
                    format!(
                        "up {} down {} mapping {}",
                        spec("upstream"),
                        spec("downstream"),
                        spec("mapping")
                    )
                };
                self.failures.push(format!(
                    "{} [{class}] now {}: {why}\n    {what}",
                    case["name"].as_str().unwrap_or("?"),
                    case["now"].as_str().unwrap_or("?"),
                ));
            }
        }
    }
}

#[test]
#[ignore = "enabled when issue 12 fixes land"]
fn corpus_matches_dagster() {
    let text = match std::env::var_os("DG_CORPUS") {
        Some(p) => std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("DG_CORPUS={}: {e}", p.to_string_lossy())),
        None => include_str!("../../tests/fixtures/dagster/corpus.json").to_string(),
    };
    let corpus: Json = serde_json::from_str(&text).expect("the corpus is JSON");
    let mut tally = Tally::default();
    for case in corpus["keys"].as_array().expect("`keys` cases") {
        let outcome = key_case(case);
        tally.add(case, outcome);
    }
    for case in corpus["mappings"].as_array().expect("`mappings` cases") {
        let outcome = mapping_case(case);
        tally.add(case, outcome);
    }
    println!(
        "Dagster {} corpus, seed {}: {} cases, {} agree",
        corpus["dagster"], corpus["seed"], tally.cases, tally.agree
    );
    for (rule, n) in &tally.rules {
        println!("  deliberate difference: {rule}: {n}");
    }
    for (class, n) in &tally.classes {
        println!("  UNCLASSIFIED: {class}: {n}");
    }
    // Two lines each; `DG_CORPUS_SHOW=N` shows more.
    let shown_max: usize = std::env::var("DG_CORPUS_SHOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let shown: Vec<&String> = tally.failures.iter().take(shown_max).collect();
    assert!(
        tally.failures.is_empty(),
        "{} cases differ from Dagster without a rule:\n{}{}",
        tally.failures.len(),
        shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        if tally.failures.len() > shown_max {
            format!("\n… and {} more", tally.failures.len() - shown_max)
        } else {
            String::new()
        }
    );
    assert!(tally.cases > 0, "empty corpus");
}
