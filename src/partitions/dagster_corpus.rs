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

/// Zones whose UTC offset moves between whole and half hours (Lord Howe:
/// +10:30 in winter, +11 in summer).
fn half_hour_dst(zone: &str) -> bool {
    use chrono::{Offset, TimeZone};
    let Ok(tz) = zone.parse::<chrono_tz::Tz>() else {
        return false;
    };
    let minutes: std::collections::BTreeSet<i32> = [(2020, 1), (2020, 7)]
        .iter()
        .filter_map(|&(y, m)| tz.with_ymd_and_hms(y, m, 15, 12, 0, 0).single())
        .map(|d| d.offset().fix().local_minus_utc().rem_euclid(3600))
        .collect();
    minutes.len() > 1
}

/// Dagster's hourly engine in such a zone: it works out minutes in UTC or
/// in local time depending on the offset on the day Dagster runs (not the
/// day of the partition), so its keys and windows drift by half an hour.
/// dg keeps the local minute. (docs/partitions.md, Lord Howe.)
fn rule_lord_howe_hourly(spec: &Json) -> bool {
    match spec["type"].as_str() {
        Some("multi") => spec["dimensions"]
            .as_object()
            .is_some_and(|d| d.values().any(rule_lord_howe_hourly)),
        Some(t) => {
            let hourly = t == "hourly"
                || spec["cron"].as_str().is_some_and(|c| {
                    let f: Vec<&str> = c.split_whitespace().collect();
                    f.len() == 5 && f[0] != "*" && f[1..].iter().all(|x| *x == "*")
                });
            hourly && spec["timezone"].as_str().is_some_and(half_hour_dst)
        }
        None => false,
    }
}

const LORD_HOWE: &str = "Dagster steps hourly minutes in UTC in a half-hour DST zone (Lord Howe)";

/// Whether `key` is a key of `def` at some *now* (a partition that does not
/// exist yet): dg refuses to target those, Dagster maps them.
fn future_key(def: &PartitionsDef, key: &str, cx: &KeyCtx) -> bool {
    match def {
        PartitionsDef::Time(t) => t.index_of_key(key).is_some_and(|i| i >= t.count(cx.now)),
        PartitionsDef::Multi(m) => {
            let Some((a, b)) = super::MultiPartitions::split(key) else {
                return false;
            };
            let (da, db) = (&m.dims[0].1, &m.dims[1].1);
            let known =
                |d: &PartitionsDef, k: &str| d.index_of(k, cx).is_some() || future_key(d, k, cx);
            known(da, a) && known(db, b) && (future_key(da, a, cx) || future_key(db, b, cx))
        }
        _ => false,
    }
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
        if rule_lord_howe_hourly(spec) {
            return Rule(LORD_HOWE);
        }
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
            // Compared as instants: for a local time a daylight-saving gap
            // skips, Dagster writes the skipped time with the old offset
            // (`00:00-04:00`), dg the same instant after the gap (`01:00-03:00`).
            let instant = |t: &str| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|d| d.timestamp())
                    .ok()
            };
            if Some(s.timestamp()) != instant(start) || Some(e.timestamp()) != instant(end) {
                if rule_lord_howe_hourly(spec) {
                    return Rule(LORD_HOWE);
                }
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
        PartitionsDef::Time(t) => t
            .tick_index_of_key(key)
            .is_some_and(|j| j < 0 || j >= t.count(cx.now)),
        PartitionsDef::Multi(m) => {
            let (da, db) = (&m.dims[0].1, &m.dims[1].1);
            match super::MultiPartitions::split(key) {
                Some((a, b)) => {
                    (outside_bounds(da, a, cx) && db.index_of(b, cx).is_some())
                        || (outside_bounds(db, b, cx) && da.index_of(a, cx).is_some())
                }
                // A `multi` mapping names the keys of single dimensions.
                None => outside_bounds(da, key, cx) || outside_bounds(db, key, cx),
            }
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

/// Whether `sorted` holds `k`: a binary search, as the nonexistent-key lists
/// of a long window have thousands of keys (a linear `contains` inside a loop
/// over them took most of the lib tests' time).
fn has(sorted: &[String], k: &str) -> bool {
    sorted.binary_search_by(|x| x.as_str().cmp(k)).is_ok()
}

/// Contract §4, "not clamped": Dagster clamps an offset window at the
/// upstream's bounds and drops what falls outside; dg keeps the same
/// existing keys and reports the rest as nonexistent.
/// `dg_nonexistent` and `dagster_nonexistent` are sorted.
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
        && dagster_nonexistent.iter().all(|k| has(dg_nonexistent, k))
        && dg_nonexistent
            .iter()
            .filter(|k| !has(dagster_nonexistent, k))
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
        // R8: Dagster ignores the named dimension and maps the one it infers.
        Some("multi_to_single") if dg_error.contains("leave `dimension` out") => {
            Some("rejected: multi_to_single names a dimension Dagster would ignore")
        }
        _ if dg_error.contains("the window is empty") => {
            Some("rejected: an empty offset window (start_offset > end_offset + 1)")
        }
        _ if dg_error.contains("time windows in different time zones") => {
            Some("rejected: time windows in different time zones")
        }
        _ => None,
    }
}

/// Whether `end` falls inside the first window. Dagster lists that window
/// as a key, but its subsets (what `all` and `last` read, and the subset a
/// downstream key is looked up in) end at the last window before `end`, so
/// they leave it out. dg counts that window everywhere.
fn end_cuts_first_window(t: &super::TimePartitions) -> bool {
    match (t.end, t.window(0)) {
        (Some(end), Some((_, first_end))) => {
            first_end.timestamp() > super::time::localize(&t.tz, end).timestamp()
        }
        _ => false,
    }
}

const SPECIFIC_LATER: &str =
    "specific: keys that are not partitions at now are nonexistent (Dagster drops them)";

/// Whether `key` (of `def`, or of one of its time dimensions) is a window
/// whose start is a local time that occurs twice (a fall-back hour).
fn starts_at_repeated_time(def: &PartitionsDef, key: &str) -> bool {
    use chrono::TimeZone;
    match def {
        PartitionsDef::Time(t) => t
            .tick_index_of_key(key)
            .and_then(|j| t.tick(j))
            .is_some_and(|x| {
                let local = t.at(x).naive_local();
                matches!(
                    t.tz.from_local_datetime(&local),
                    chrono::LocalResult::Ambiguous(..)
                )
            }),
        PartitionsDef::Multi(m) => m.dims.iter().any(|(_, d)| starts_at_repeated_time(d, key)),
        _ => false,
    }
}

const END_CUT: &str = "`end` cuts the only window: a key in Dagster's key list, not in its subsets";

fn end_cut_only_window(up: &PartitionsDef, got: &[String], pk: &Json) -> bool {
    let PartitionsDef::Time(t) = up else {
        return false;
    };
    got.len() == 1 && pk["up_count"].as_i64() == Some(0) && end_cuts_first_window(t)
}

fn mapping_case(case: &Json) -> Outcome {
    let (defs, diags) = build_pair(case);
    let dagster_rejects = case.get("error").is_some() || case.get("validation_error").is_some();
    let per_key = case["per_key"].as_array().cloned().unwrap_or_default();
    let dagster_errors_every_key =
        !per_key.is_empty() && per_key.iter().all(|pk| pk.get("error").is_some());
    let Some(defs) = defs else {
        // Dagster rejects the pair when asked, or fails on every key.
        if dagster_rejects || dagster_errors_every_key {
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
        let named = case["mapping"]["type"] == "multi_to_single"
            && case["mapping"]["dimension"].is_string();
        if named
            && e.as_str().is_some_and(|e| {
                e.contains("can only be used when") || e.contains("must be specified")
            })
        {
            // Dagster's inference ignores the name and finds two candidate
            // dimensions; dg maps through the one named.
            return Rule("accepted: multi_to_single names one of two candidate dimensions");
        }
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
                None if future_key(d, k, &cx) => {
                    outcome = Rule("dg refuses downstream partitions that do not exist yet at now");
                    continue;
                }
                None if rule_lord_howe_hourly(&case["downstream"]) => {
                    outcome = Rule(LORD_HOWE);
                    continue;
                }
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
            if let (Some(PartitionsDef::Time(t)), Some(k)) = (down_def.as_deref(), key)
                && end_cuts_first_window(t)
                && t.key(0).as_deref() == Some(k)
            {
                outcome = Rule(END_CUT);
                continue;
            }
            if rule_lord_howe_hourly(&case["downstream"]) {
                outcome = Rule(LORD_HOWE);
                continue;
            }
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
            if case["mapping"]["type"] == "specific"
                && got.is_empty()
                && !nonexistent.is_empty()
                && e.as_str().is_some_and(|e| e.contains("No partitions"))
            {
                outcome = Rule(SPECIFIC_LATER);
                continue;
            }
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
        // Dagster names every key of a window that overhangs both ends of
        // the upstream's partitions, the existing ones included; dg names
        // only those that do not exist.
        if keys_diff.is_none()
            && !dg_ne.is_empty()
            && dg_ne.iter().all(|k| has(&dagster_ne, k))
            && dagster_ne
                .iter()
                .filter(|k| !has(&dg_ne, k))
                .all(|k| got.iter().any(|g| g == k || g.split('|').any(|d| d == k)))
        {
            outcome = Rule("Dagster names existing keys when a window overhangs both ends");
            continue;
        }
        // `specific` keys that are not partitions at *now*: Dagster drops
        // them silently (or fails when none is left), dg names them.
        if case["mapping"]["type"] == "specific"
            && keys_diff.is_none()
            && dagster_ne.iter().all(|k| has(&dg_ne, k))
            && dg_ne.iter().all(|k| {
                strings(&case["mapping"]["keys"]).contains(k) && up_def.index_of(k, &cx).is_none()
            })
        {
            outcome = Rule(SPECIFIC_LATER);
            continue;
        }
        // A window that ends at a repeated midnight: Dagster's forward
        // iteration starts the next day at the first occurrence, its reverse
        // iteration at the second, so it maps the overlapping hour to the
        // day before. dg uses the first occurrence throughout and names the
        // day that overlap belongs to.
        if keys_diff.is_none()
            && dagster_ne.iter().all(|k| has(&dg_ne, k))
            && dg_ne
                .iter()
                .filter(|k| !has(&dagster_ne, k))
                .all(|k| starts_at_repeated_time(&up_def, k))
        {
            outcome = Rule(
                "a window starting at a repeated midnight: Dagster's reverse iteration takes its second occurrence",
            );
            continue;
        }
        // Never silently empty: where Dagster reads nothing and names
        // nothing, dg names the upstream partitions the window would need.
        if keys_diff.is_none() && got.is_empty() && dagster_ne.is_empty() && !dg_ne.is_empty() {
            outcome = Rule("never silently empty: dg names what Dagster silently reads nothing of");
            continue;
        }
        if rule_lord_howe_hourly(&case["upstream"]) || rule_lord_howe_hourly(&case["downstream"]) {
            outcome = Rule(LORD_HOWE);
            continue;
        }
        if end_cut_only_window(&up_def, &got, pk) {
            outcome = Rule(END_CUT);
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
fn corpus_matches_dagster() {
    let text = match std::env::var_os("DG_CORPUS") {
        Some(p) => std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("DG_CORPUS={}: {e}", p.to_string_lossy())),
        None => include_str!("../../tests/fixtures/dagster/corpus.json").to_string(),
    };
    let corpus: Json = serde_json::from_str(&text).expect("the corpus is JSON");
    // The cases are independent: replayed on every core (the slowest lib
    // test otherwise), tallied in corpus order.
    use rayon::prelude::*;
    let keys = corpus["keys"].as_array().expect("`keys` cases");
    let mappings = corpus["mappings"].as_array().expect("`mappings` cases");
    let outcomes: Vec<Outcome> = keys
        .par_iter()
        .map(key_case)
        .chain(mappings.par_iter().map(mapping_case))
        .collect();
    let mut tally = Tally::default();
    for (case, outcome) in keys.iter().chain(mappings).zip(outcomes) {
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
