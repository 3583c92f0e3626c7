//! Partition keys and windows checked against values derived from Dagster
//! 1.13.27 (`tests/fixtures/dagster/keys.json`, made by `gen.py` there).

use serde_json::Value as Json;

use super::{KeyCtx, PartitionsDef};
use crate::diag::Diagnostics;

/// Cases where dg deliberately differs from Dagster, and how.
const DIFFERENCES: &[(&str, &str)] = &[
    // dg rejects offsets Dagster silently accepts or ignores.
    ("weekly_day_offset_7_edge", "rejected: day_offset is 0..=6"),
    (
        "monthly_day_offset_0_edge",
        "rejected: day_offset is 1..=28",
    ),
    (
        "monthly_day_offset_29_edge",
        "rejected: day_offset is 1..=28",
    ),
    (
        "monthly_day_offset_31_edge",
        "rejected: day_offset is 1..=28",
    ),
    (
        "hourly_with_hour_offset_ignored",
        "rejected: hourly has no hour_offset",
    ),
    ("static_empty", "rejected: a static definition needs keys"),
    (
        "daily_end_equals_start",
        "rejected: end must be after start",
    ),
    (
        "daily_end_before_start",
        "rejected: end must be after start",
    ),
];

/// Keys Dagster reads leniently (a date that is not on the schedule maps to
/// the next window) and dg refuses, because they are not partition keys.
const REFUSED_KEYS: &[(&str, &str)] = &[("weekly_window_for_misaligned_key_edge", "2024-01-03")];

/// Builds the named partitions definition `p` from a fixture's JSON.
pub(crate) fn build(def: &Json) -> Result<std::sync::Arc<PartitionsDef>, Diagnostics> {
    let doc = serde_json::json!({ "partitions": { "p": def } });
    let text = toml::to_string(&doc).expect("fixture definitions serialize as TOML");
    match crate::validate::validate_text("p.toml", text, &|_: &str| None) {
        (_, Some(defs), _) => Ok(defs.partitions["p"].def.clone()),
        (_, None, diags) => Err(diags),
    }
}

pub(crate) fn now_of(case: &Json) -> i64 {
    chrono::DateTime::parse_from_rfc3339(case["now"].as_str().unwrap())
        .unwrap()
        .timestamp()
}

pub(crate) fn strings(v: &Json) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Compares dg with Dagster over every case of a fixture made by `gen.py`
/// (30 or more). `compare` adds what differs to `failures` and says whether
/// it compared the case (not one where dg deliberately differs). Fails
/// listing every difference, or when fewer than 30 cases were compared.
fn compare_with_dagster(
    json: &str,
    mut compare: impl FnMut(&str, &Json, &mut Vec<String>) -> bool,
) {
    let cases: Vec<Json> = serde_json::from_str(json).unwrap();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        if compare(case["name"].as_str().unwrap(), case, &mut failures) {
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(checked >= 30, "only {checked} cases checked");
}

/// Whether Dagster rejects `case` (it has an `error`); a difference when dg
/// `accepted` it.
fn dagster_errors(name: &str, case: &Json, accepted: bool, failures: &mut Vec<String>) -> bool {
    let Some(error) = case.get("error") else {
        return false;
    };
    if accepted {
        failures.push(format!("{name}: Dagster errors ({error}), dg accepted it"));
    }
    true
}

/// The difference when dg rejects what Dagster accepts: dg's messages.
fn dg_rejected(name: &str, diags: &Diagnostics) -> String {
    let messages: Vec<&String> = diags.items.iter().map(|d| &d.message).collect();
    format!("{name}: dg rejected it: {messages:?}")
}

#[test]
fn keys_match_dagster() {
    compare_with_dagster(
        include_str!("../../tests/fixtures/dagster/keys.json"),
        |name, case, failures| {
            let built = build(&case["partitions"]);
            if let Some((_, why)) = DIFFERENCES.iter().find(|(n, _)| *n == name) {
                assert!(built.is_err(), "{name}: expected dg to differ ({why})");
                return false;
            }
            if dagster_errors(name, case, built.is_ok(), failures) {
                return false;
            }
            let def = match built {
                Ok(d) => d,
                Err(e) => {
                    failures.push(dg_rejected(name, &e));
                    return false;
                }
            };
            let cx = KeyCtx::new(now_of(case));
            let count = def.len(&cx);
            let want_count = case["count"].as_i64().unwrap();
            if count != want_count {
                failures.push(format!("{name}: count {count}, Dagster {want_count}"));
                return false;
            }
            let keys: Vec<String> = (0..count.min(5)).filter_map(|i| def.key(i, &cx)).collect();
            if keys != strings(&case["first"]) {
                failures.push(format!(
                    "{name}: first {keys:?}, Dagster {:?}",
                    case["first"]
                ));
            }
            let last: Vec<String> = ((count - 5).max(0)..count)
                .filter_map(|i| def.key(i, &cx))
                .collect();
            if last != strings(&case["last"]) {
                failures.push(format!("{name}: last {last:?}, Dagster {:?}", case["last"]));
            }
            if case.get("keys").is_some() {
                let all: Vec<String> = (0..count).filter_map(|i| def.key(i, &cx)).collect();
                if all != strings(&case["keys"]) {
                    failures.push(format!("{name}: keys differ"));
                }
                for (i, k) in all.iter().enumerate() {
                    if def.index_of(k, &cx) != Some(i as i64) {
                        failures.push(format!("{name}: index_of({k}) != {i}"));
                    }
                }
            }
            if let (Some(ws), PartitionsDef::Time(t)) =
                (case.get("windows").and_then(Json::as_array), &*def)
            {
                for w in ws {
                    let key = w["key"].as_str().unwrap();
                    let idx = t.index_of_key(key);
                    match (idx, w.get("start")) {
                        (Some(i), Some(start)) => {
                            let (s, e) = t.window(i).unwrap();
                            if s.to_rfc3339() != start.as_str().unwrap()
                                || e.to_rfc3339() != w["end"].as_str().unwrap()
                            {
                                failures.push(format!(
                                    "{name}: window of {key} is {} .. {}, Dagster {} .. {}",
                                    s.to_rfc3339(),
                                    e.to_rfc3339(),
                                    start,
                                    w["end"]
                                ));
                            }
                        }
                        (None, None) => {}
                        (None, Some(_)) if REFUSED_KEYS.contains(&(name, key)) => {}
                        (None, Some(_)) => {
                            failures.push(format!("{name}: {key} is not a key in dg"))
                        }
                        // Dagster answers for keys that are not on the schedule; dg refuses them.
                        (Some(_), None) => {
                            failures.push(format!("{name}: {key} accepted, Dagster errors"))
                        }
                    }
                }
            }
            true
        },
    );
}

/// Mapping cases where dg deliberately differs from Dagster, and how.
const MAPPING_DIFFERENCES: &[(&str, &str)] = &[
    // Contract §4: offsets are not clamped to the upstream's bounds; what
    // falls outside is nonexistent (an error unless allow_nonexistent).
    (
        "offset_before_upstream_start_first_partition_disallowed",
        "not clamped: 2023-12-31 is nonexistent",
    ),
    (
        "offset_start_minus_1_on_first_partition",
        "not clamped: 2023-12-31 is nonexistent",
    ),
    (
        "offset_past_upstream_end_disallowed",
        "not clamped: 2024-01-10 is nonexistent",
    ),
    (
        "end_offset_plus_1_past_now",
        "not clamped: 2024-01-10 is nonexistent",
    ),
    (
        "multi_mapping_offset_before_start",
        "not clamped: 2023-12-31|us is nonexistent",
    ),
    // dg refuses what is not a partition key instead of passing it through.
    (
        "identity_static_downstream_key_not_in_downstream_def",
        "`zz` is not a downstream key",
    ),
    // dg rejects at `dg check defs` what Dagster accepts and maps to nothing.
    (
        "last_empty_static_upstream",
        "rejected: a static definition needs keys",
    ),
    (
        "specific_key_not_in_upstream",
        "rejected: `zz` is not an upstream key",
    ),
    (
        "multi_to_single_unknown_dimension_name",
        "rejected: no dimension `nope`",
    ),
    // Dagster fails even though the dimension is named; dg uses the named one.
    (
        "multi_to_single_ambiguous_static_dims_dim_given",
        "accepted: the dimension is named",
    ),
];

/// Builds assets `up` and `down` (reading `up` through the case's
/// `mapping`, or the default one when it is null) from a mapping case's
/// JSON (`upstream`, `downstream`, `mapping`: null means unpartitioned or
/// inferred). `None` when dg rejects the definitions; `diags` says why.
pub(crate) fn build_pair(case: &Json) -> (Option<crate::model::Defs>, Diagnostics) {
    let mut up = serde_json::json!({ "shell": "true" });
    if !case["upstream"].is_null() {
        up["partitions"] = case["upstream"].clone();
    }
    let mut down = serde_json::json!({ "shell": "true", "deps": ["up"] });
    if !case["downstream"].is_null() {
        down["partitions"] = case["downstream"].clone();
    }
    if !case["mapping"].is_null() {
        down.as_object_mut().unwrap().remove("deps");
        down["ins"] = serde_json::json!({ "up": { "mapping": case["mapping"].clone() } });
    }
    let doc = serde_json::json!({ "assets": { "up": up, "down": down } });
    let text = toml::to_string(&doc).unwrap();
    let (_, defs, diags) = crate::validate::validate_text("m.toml", text, &|_: &str| None);
    (defs, diags)
}

pub(crate) fn dagster_class(spec: &super::MappingSpec) -> &'static str {
    match spec {
        super::MappingSpec::Identity => "IdentityPartitionMapping",
        super::MappingSpec::TimeWindow { .. } => "TimeWindowPartitionMapping",
        super::MappingSpec::All => "AllPartitionMapping",
        super::MappingSpec::Last => "LastPartitionMapping",
        super::MappingSpec::Static { .. } => "StaticPartitionMapping",
        super::MappingSpec::Specific { .. } => "SpecificPartitionsPartitionMapping",
        super::MappingSpec::MultiToSingle { .. } => "MultiToSingleDimensionPartitionMapping",
        super::MappingSpec::Multi { .. } => "MultiPartitionMapping",
    }
}

#[test]
fn mappings_match_dagster() {
    compare_with_dagster(
        include_str!("../../tests/fixtures/dagster/mappings.json"),
        |name, case, failures| {
            let (defs, diags) = build_pair(case);
            let dagster_rejects =
                case.get("error").is_some() || case.get("validation_error").is_some();
            let differs = MAPPING_DIFFERENCES.iter().find(|(n, _)| *n == name);
            let Some(defs) = defs else {
                if !dagster_rejects && differs.is_none() {
                    failures.push(dg_rejected(name, &diags));
                }
                return false;
            };
            if dagster_errors(name, case, differs.is_none(), failures) {
                return false;
            }
            let down_asset = defs.asset("down").unwrap();
            let input = &down_asset.inputs[0];
            if case["mapping"].is_null()
                && dagster_class(&input.mapping) != case["inferred"].as_str().unwrap()
            {
                failures.push(format!(
                    "{name}: inferred {:?}, Dagster {}",
                    input.mapping, case["inferred"]
                ));
                return false;
            }
            let Some(up_def) = defs
                .asset("up")
                .unwrap()
                .partitions
                .as_ref()
                .map(|p| p.def.clone())
            else {
                return true; // unpartitioned upstream: the whole asset, nothing to map
            };
            let cx = KeyCtx::new(now_of(case));
            let down_def = down_asset.partitions.as_ref().map(|p| p.def.clone());
            let wanted: Vec<String> = match case.get("effective_downstream_keys") {
                Some(k) => strings(k),
                None => strings(&case["downstream_keys"]),
            };
            let mut idx: Vec<i64> = Vec::new();
            let mut nonexistent: Vec<String> = Vec::new();
            let downs: Vec<Option<(&PartitionsDef, i64)>> = match &down_def {
                None => vec![None],
                Some(d) => wanted
                    .iter()
                    .map(|k| d.index_of(k, &cx).map(|i| (&**d, i)))
                    .collect(),
            };
            if downs.iter().any(|d| d.is_none() && down_def.is_some()) {
                if differs.is_some() {
                    return false;
                }
                failures.push(format!(
                    "{name}: a downstream key is not a key in dg: {wanted:?}"
                ));
                return false;
            }
            for d in downs {
                let m = super::mapping::map_upstream(&input.mapping, &up_def, d, &cx);
                idx.extend(m.indices.iter());
                nonexistent.extend(m.nonexistent);
            }
            idx.sort_unstable();
            idx.dedup();
            let keys: Vec<String> = idx.iter().filter_map(|&i| up_def.key(i, &cx)).collect();
            let mut nonexistent: Vec<String> = nonexistent
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let mut want_nonexistent = strings(&case["nonexistent"]);
            want_nonexistent.sort();
            nonexistent.sort();
            if let Some((_, why)) = differs {
                if keys == strings(&case["upstream_keys"]) && nonexistent == want_nonexistent {
                    failures.push(format!(
                        "{name}: listed as a difference ({why}) but dg agrees with Dagster"
                    ));
                }
                return false;
            }
            if keys != strings(&case["upstream_keys"]) {
                failures.push(format!(
                    "{name}: upstream {keys:?}, Dagster {:?}",
                    case["upstream_keys"]
                ));
            }
            if nonexistent != want_nonexistent {
                failures.push(format!(
                    "{name}: nonexistent {nonexistent:?}, Dagster {want_nonexistent:?}"
                ));
            }
            true
        },
    );
}
