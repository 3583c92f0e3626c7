//! Partition mappings of inputs: a written `mapping` table read into a
//! [`MappingSpec`], and what to suggest when a mapping (written or
//! inferred) cannot apply to its two partitions definitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::de::DeValue;

use crate::diag::{Diagnostic, Diagnostics, FileId, Kind, Span, suggest};
use crate::load::{self, Reader, Value};
use crate::model::Asset;
use crate::partitions::PartitionsDef;
use crate::partitions::mapping::{self, MappingSpec};

use super::fields::{required, table_of};
use super::partitions::window_offset;
use super::{Entry, Validator};

/// Where `[assets.KEY.ins.INPUT] mapping = …` is written, if it is.
fn raw_mapping_span(e: &Entry<'_, '_>, input: &str) -> Option<Span> {
    let DeValue::Table(asset) = e.value.get_ref() else {
        return None;
    };
    let DeValue::Table(ins) = asset.get("ins")?.get_ref() else {
        return None;
    };
    let DeValue::Table(inp) = ins.get(input)?.get_ref() else {
        return None;
    };
    inp.get("mapping").map(|m| Span::new(e.file, m.span()))
}

/// What to do about a mapping that cannot apply to its two definitions.
fn mapping_help(
    spec: &MappingSpec,
    inferred: bool,
    up: Option<&PartitionsDef>,
    down: Option<&PartitionsDef>,
) -> String {
    if let (
        MappingSpec::TimeWindow { .. },
        Some(PartitionsDef::Time(a)),
        Some(PartitionsDef::Time(b)),
    ) = (spec, up, down)
        && a.tz != b.tz
    {
        return "give both partitions definitions the same `timezone`, or map with `type = \"all\"`".into();
    }
    // Each mapping type in its simplest form: those that fit these two definitions.
    let candidates = [
        MappingSpec::Identity,
        MappingSpec::TimeWindow {
            start_offset: 0,
            end_offset: 0,
            allow_nonexistent: false,
        },
        MappingSpec::All,
        MappingSpec::Last,
        MappingSpec::Static {
            map: BTreeMap::new(),
        },
        MappingSpec::Specific { keys: Vec::new() },
        MappingSpec::MultiToSingle { dimension: None },
        MappingSpec::Multi {
            dimensions: BTreeMap::new(),
        },
    ];
    let fits: Vec<&str> = candidates
        .iter()
        .filter(|c| mapping::check_applicable(c, up, down).is_ok())
        .map(MappingSpec::type_name)
        .collect();
    if fits.contains(&spec.type_name()) {
        // The type fits; what it names does not.
        let keys = |p: Option<&PartitionsDef>| match p {
            Some(PartitionsDef::Static(s)) => {
                let k: Vec<&str> = s.keys().iter().map(String::as_str).collect();
                Some(crate::diag::list_names(&k))
            }
            _ => None,
        };
        return match (keys(up), keys(down)) {
            (Some(u), Some(d)) => format!("upstream keys: {u}; downstream keys: {d}"),
            (Some(u), None) => format!("upstream keys: {u}"),
            _ => {
                "check the keys and dimensions it names against both partitions definitions".into()
            }
        };
    }
    let fits_text = crate::diag::list_names(&fits);
    if inferred {
        format!(
            "write a mapping for this input under `[assets.KEY.ins.NAME]`; these fit `{}` → `{}`: {fits_text}",
            describe(up),
            describe(down)
        )
    } else {
        format!(
            "mappings that fit `{}` → `{}`: {fits_text}",
            describe(up),
            describe(down)
        )
    }
}

fn describe(p: Option<&PartitionsDef>) -> String {
    match p {
        None => "unpartitioned".into(),
        Some(d) => d.type_name().into(),
    }
}

/// Parses a mapping table into a [`MappingSpec`], checking its shape.
pub(super) fn mapping_spec(
    file: FileId,
    v: &Value<'_>,
    what: &str,
    d: &mut Diagnostics,
) -> Option<MappingSpec> {
    let span = Span::new(file, v.span());
    let t = table_of(file, v, what, "expected `{ type = … }`", d)?;
    let Some(ty) = t.get("type").and_then(|x| x.get_ref().as_str()) else {
        d.push(
            Diagnostic::error(Kind::MissingField, format!("{what} has no `type`"))
                .at(&span, "missing `type`")
                .help(format!(
                    "add `type = ` one of {}",
                    crate::diag::list_names(MappingSpec::TYPES)
                )),
        );
        return None;
    };
    if !MappingSpec::TYPES.contains(&ty) {
        let ty_span = Span::new(file, t.get("type").map(|x| x.span()).unwrap_or(v.span()));
        d.push(
            Diagnostic::error(
                Kind::Mapping,
                format!("unknown mapping type `{ty}` in {what}"),
            )
            .at(&ty_span, "unknown type")
            .help(suggest(ty, MappingSpec::TYPES, "valid types")),
        );
        return None;
    }
    let r = Reader::new(file, t, what).known_fields(MappingSpec::fields(ty), d);
    Some(match ty {
        "identity" => MappingSpec::Identity,
        "all" => MappingSpec::All,
        "last" => MappingSpec::Last,
        "time_window" => MappingSpec::TimeWindow {
            start_offset: window_offset(&r, "start_offset", what, d).unwrap_or(0),
            end_offset: window_offset(&r, "end_offset", what, d).unwrap_or(0),
            allow_nonexistent: r.bool("allow_nonexistent", d).unwrap_or(false),
        },
        "static" => {
            let m = r.table("map", d);
            let help = Some("add `map = { upstream_key = \"downstream_key\" }`");
            let (m, _) = required(m, &r, "map", what, &span, help, d)?;
            let mut map = BTreeMap::new();
            for (k, val) in m.iter() {
                let targets = match val.get_ref() {
                    DeValue::String(s) => vec![s.to_string()],
                    DeValue::Array(a) if a.iter().all(|x| x.get_ref().is_str()) => a
                        .iter()
                        .filter_map(|x| x.get_ref().as_str().map(String::from))
                        .collect(),
                    other => {
                        d.push(
                            Diagnostic::error(
                                Kind::WrongType,
                                format!(
                                    "`map.{}` in {what} must be a key or a list of keys, found {}",
                                    k.get_ref(),
                                    load::type_name(other)
                                ),
                            )
                            .at(
                                &Span::new(file, val.span()),
                                "expected a string or array of strings",
                            ),
                        );
                        continue;
                    }
                };
                map.insert(k.get_ref().to_string(), targets);
            }
            MappingSpec::Static { map }
        }
        "specific" => {
            let keys = r.str_array("keys", d);
            let keys = required(keys, &r, "keys", what, &span, None, d)?;
            MappingSpec::Specific {
                keys: keys.into_iter().map(|k| k.value).collect(),
            }
        }
        "multi_to_single" => MappingSpec::MultiToSingle {
            dimension: r.str("dimension", d).map(|s| s.value),
        },
        _ => {
            let dims = r.table("dimensions", d);
            let help = Some(
                "add `dimensions = { up_dim = { dimension = \"down_dim\", mapping = { type = \"identity\" } } }`",
            );
            let (dims, _) = required(dims, &r, "dimensions", what, &span, help, d)?;
            let mut out = BTreeMap::new();
            for (k, val) in dims.iter() {
                let dim_what = format!("dimension `{}` of {what}", k.get_ref());
                let Some(dr) = Reader::of_value(file, val, &dim_what, &["dimension", "mapping"], d)
                else {
                    continue;
                };
                let down = dr.str("dimension", d);
                let at = Span::new(file, val.span());
                let Some(down) = required(down, &dr, "dimension", &dim_what, &at, None, d) else {
                    continue;
                };
                let inner = match dr.get("mapping") {
                    Some(m) => match mapping_spec(file, m, &format!("mapping of {dim_what}"), d) {
                        Some(s) => s,
                        None => continue,
                    },
                    None => MappingSpec::Identity,
                };
                out.insert(k.get_ref().to_string(), (down.value, Box::new(inner)));
            }
            MappingSpec::Multi { dimensions: out }
        }
    })
}

impl Validator<'_> {
    /// Pass 6: each input's mapping, inferred where not written, then
    /// checked against its two partitions definitions.
    pub(super) fn check_mappings(&mut self, built: &mut [Option<Asset>], assets: &[Entry<'_, '_>]) {
        let ups: Vec<Option<Arc<PartitionsDef>>> = built
            .iter()
            .map(|a| {
                a.as_ref()
                    .and_then(|a| a.partitions.as_ref().map(|p| p.def.clone()))
            })
            .collect();
        for (ai, a) in built.iter_mut().enumerate() {
            let Some(a) = a else { continue };
            let down = a.partitions.as_ref().map(|p| p.def.clone());
            for inp in &mut a.inputs {
                let up = ups[inp.upstream].clone();
                if inp.mapping_inferred {
                    inp.mapping = mapping::infer(up.as_deref(), down.as_deref());
                }
                if let Err(msg) =
                    mapping::check_applicable(&inp.mapping, up.as_deref(), down.as_deref())
                {
                    let upstream_key = &assets[inp.upstream].name;
                    let written = (!inp.mapping_inferred)
                        .then(|| raw_mapping_span(&assets[ai], &inp.name))
                        .flatten();
                    let mut diag = Diagnostic::error(
                        Kind::Mapping,
                        format!(
                            "the {}`{}` mapping cannot apply to input `{}` of asset `{}`: {msg}",
                            if inp.mapping_inferred {
                                "inferred "
                            } else {
                                ""
                            },
                            inp.mapping.type_name(),
                            inp.name,
                            a.key
                        ),
                    );
                    diag = match &written {
                        Some(m) => diag
                            .at(m, "this mapping")
                            .also(&inp.span, format!("input reading `{upstream_key}`")),
                        None => diag.at(&inp.span, format!("reads `{upstream_key}`")),
                    };
                    self.diags.push(diag.help(mapping_help(
                        &inp.mapping,
                        inp.mapping_inferred,
                        up.as_deref(),
                        down.as_deref(),
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    const STATIC_AND_DAILY: &str = "[partitions.region]\ntype = \"static\"\nkeys = [\"us\", \"eu\"]\n\n\
        [partitions.daily]\ntype = \"daily\"\nstart = \"2024-01-01\"\n\n\
        [assets.sales]\npartitions = \"region\"\nshell = \"true\"\n";

    #[test]
    fn a_written_mapping_that_cannot_apply_points_at_the_mapping() {
        let src = "[assets.daily_sales]\npartitions = \"daily\"\nshell = \"true\"\n\n\
                   [assets.daily_sales.ins.sales]\nmapping = { type = \"identity\" }\n";
        let c = check(&[("a.toml", STATIC_AND_DAILY), ("b.toml", src)]);
        let d = c.located(Kind::Mapping, ("b.toml", "{ type = \"identity\" }", 0));
        // `sales` in `[assets.daily_sales.ins.sales]`
        assert_eq!(c.secondary(d, 0), c.at("b.toml", "sales", 2));
        assert!(d.message.starts_with(
            "the `identity` mapping cannot apply to input `sales` of asset `daily_sales`"
        ));
        assert_eq!(
            d.help.as_deref(),
            Some("mappings that fit `static` → `daily`: `all`, `last`, `specific`")
        );
    }

    #[test]
    fn an_inferred_mapping_that_cannot_apply_points_at_the_dep() {
        let src =
            "[assets.daily_sales]\npartitions = \"daily\"\ndeps = [\"sales\"]\nshell = \"true\"\n";
        let c = check(&[("a.toml", STATIC_AND_DAILY), ("b.toml", src)]);
        let d = c.located(Kind::Mapping, ("b.toml", "\"sales\"", 0));
        assert!(d.secondary.is_empty());
        assert!(d.message.starts_with("the inferred `identity` mapping"));
    }

    #[test]
    fn static_mapping_with_an_unknown_key_lists_the_keys() {
        let src = "[partitions.market]\ntype = \"static\"\nkeys = [\"americas\"]\n\n\
                   [assets.m]\npartitions = \"market\"\nshell = \"true\"\n\n\
                   [assets.m.ins.sales]\nmapping = { type = \"static\", map = { apac = \"americas\" } }\n";
        let c = check(&[("a.toml", STATIC_AND_DAILY), ("b.toml", src)]);
        let d = c.only(Kind::Mapping);
        assert!(
            d.message
                .ends_with("upstream has no partition `apac` (its keys: `us`, `eu`)")
        );
        assert_eq!(
            d.help.as_deref(),
            Some("upstream keys: `us`, `eu`; downstream keys: `americas`")
        );
    }
}
