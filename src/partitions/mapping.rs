//! Partition mappings: which upstream partitions a downstream partition reads.

use std::collections::BTreeMap;

/// A mapping as written in TOML (`mapping = { type = … }`), shape-checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MappingSpec {
    Identity,
    TimeWindow {
        start_offset: i64,
        end_offset: i64,
        allow_nonexistent: bool,
    },
    All,
    Last,
    /// upstream key → downstream keys
    Static {
        map: BTreeMap<String, Vec<String>>,
    },
    Specific {
        keys: Vec<String>,
    },
    MultiToSingle {
        dimension: Option<String>,
    },
    /// upstream dimension → (downstream dimension, mapping)
    Multi {
        dimensions: BTreeMap<String, (String, Box<MappingSpec>)>,
    },
}

impl MappingSpec {
    pub const TYPES: &'static [&'static str] = &[
        "identity",
        "time_window",
        "all",
        "last",
        "static",
        "specific",
        "multi_to_single",
        "multi",
    ];

    pub fn type_name(&self) -> &'static str {
        match self {
            MappingSpec::Identity => "identity",
            MappingSpec::TimeWindow { .. } => "time_window",
            MappingSpec::All => "all",
            MappingSpec::Last => "last",
            MappingSpec::Static { .. } => "static",
            MappingSpec::Specific { .. } => "specific",
            MappingSpec::MultiToSingle { .. } => "multi_to_single",
            MappingSpec::Multi { .. } => "multi",
        }
    }

    /// The fields each type accepts besides `type`.
    pub fn fields(type_name: &str) -> &'static [&'static str] {
        match type_name {
            "time_window" => &["type", "start_offset", "end_offset", "allow_nonexistent"],
            "static" => &["type", "map"],
            "specific" => &["type", "keys"],
            "multi_to_single" => &["type", "dimension"],
            "multi" => &["type", "dimensions"],
            _ => &["type"],
        }
    }
}

use super::PartitionsDef;

/// Whether two definitions define the same partitions.
pub fn same_def(a: &PartitionsDef, b: &PartitionsDef) -> bool {
    if std::ptr::eq(a, b) {
        return true;
    }
    match (a, b) {
        (PartitionsDef::Time(x), PartitionsDef::Time(y)) => {
            x.schedule.cron_expr() == y.schedule.cron_expr()
                && x.tz == y.tz
                && x.fmt == y.fmt
                && x.start == y.start
                && x.end == y.end
                && x.end_offset == y.end_offset
        }
        (PartitionsDef::Static(x), PartitionsDef::Static(y)) => x.keys() == y.keys(),
        (PartitionsDef::Dynamic { name: x }, PartitionsDef::Dynamic { name: y }) => x == y,
        (PartitionsDef::Multi(x), PartitionsDef::Multi(y)) => {
            x.dims[0].0 == y.dims[0].0
                && x.dims[1].0 == y.dims[1].0
                && same_def(&x.dims[0].1, &y.dims[0].1)
                && same_def(&x.dims[1].1, &y.dims[1].1)
        }
        _ => false,
    }
}

/// The dimension of `multi` that `single` maps to by default: the one that
/// is the same definition, else the only time dimension when `single` is time.
pub fn matching_dimension<'m>(
    multi: &'m super::MultiPartitions,
    single: &PartitionsDef,
) -> Result<&'m str, String> {
    let same: Vec<&str> = multi
        .dims
        .iter()
        .filter(|(_, d)| same_def(d, single))
        .map(|(n, _)| n.as_str())
        .collect();
    match same.len() {
        1 => return Ok(same[0]),
        2 => {
            return Err("both dimensions match; name one with `dimension = \"…\"`".to_string());
        }
        _ => {}
    }
    if matches!(single, PartitionsDef::Time(_)) {
        let times: Vec<&str> = multi
            .dims
            .iter()
            .filter(|(_, d)| matches!(**d, PartitionsDef::Time(_)))
            .map(|(n, _)| n.as_str())
            .collect();
        if times.len() == 1 {
            return Ok(times[0]);
        }
        if times.len() == 2 {
            return Err(
                "both dimensions are time-based; name one with `dimension = \"…\"`".to_string(),
            );
        }
    }
    Err(format!(
        "neither dimension ({}) matches the {} definition on the other side",
        multi
            .dims
            .iter()
            .map(|(n, _)| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", "),
        single.type_name()
    ))
}

/// Dagster's default inference: either side unpartitioned → all; one side
/// multi and the other one of its dimensions (or both time-based) →
/// multi_to_single; both time windows → time_window; else identity.
pub fn infer(up: Option<&PartitionsDef>, down: Option<&PartitionsDef>) -> MappingSpec {
    let (Some(up), Some(down)) = (up, down) else {
        return MappingSpec::All;
    };
    match (up, down) {
        (PartitionsDef::Multi(m), other) | (other, PartitionsDef::Multi(m))
            if !matches!(other, PartitionsDef::Multi(_))
                && matching_dimension(m, other).is_ok() =>
        {
            MappingSpec::MultiToSingle { dimension: None }
        }
        (PartitionsDef::Time(_), PartitionsDef::Time(_)) => MappingSpec::TimeWindow {
            start_offset: 0,
            end_offset: 0,
            allow_nonexistent: false,
        },
        _ => MappingSpec::Identity,
    }
}

fn kind(p: Option<&PartitionsDef>) -> &'static str {
    match p {
        None => "unpartitioned",
        Some(PartitionsDef::Time(_)) => "time",
        Some(PartitionsDef::Static(_)) => "static",
        Some(PartitionsDef::Dynamic { .. }) => "dynamic",
        Some(PartitionsDef::Multi(_)) => "multi",
    }
}

/// Checks that `spec` can map `up` partitions to `down` partitions. The
/// error says why not.
pub fn check_applicable(
    spec: &MappingSpec,
    up: Option<&PartitionsDef>,
    down: Option<&PartitionsDef>,
) -> Result<(), String> {
    let (ku, kd) = (kind(up), kind(down));
    match spec {
        MappingSpec::All => Ok(()),
        MappingSpec::Last => match up {
            Some(_) => Ok(()),
            None => Err("`last` needs a partitioned upstream".into()),
        },
        MappingSpec::Specific { keys } => match up {
            None => Err("`specific` needs a partitioned upstream".into()),
            Some(PartitionsDef::Static(s)) => match keys.iter().find(|k| s.index_of(k).is_none()) {
                Some(k) => Err(format!("upstream has no partition `{k}`")),
                None => Ok(()),
            },
            Some(PartitionsDef::Time(t)) => match keys.iter().find(|k| t.index_of_key(k).is_none())
            {
                Some(k) => Err(format!(
                    "`{k}` is not a key of the upstream time partitions"
                )),
                None => Ok(()),
            },
            Some(_) => Ok(()),
        },
        MappingSpec::Identity => match (up, down) {
            (Some(PartitionsDef::Time(_)), Some(PartitionsDef::Time(_)))
            | (Some(PartitionsDef::Static(_)), Some(PartitionsDef::Static(_)))
            | (Some(PartitionsDef::Dynamic { .. }), Some(PartitionsDef::Dynamic { .. }))
            | (Some(PartitionsDef::Multi(_)), Some(PartitionsDef::Multi(_))) => Ok(()),
            _ => Err(format!(
                "identity maps each key to the same key, so both sides need the same kind of partitions (upstream is {ku}, downstream is {kd})"
            )),
        },
        MappingSpec::TimeWindow { .. } => match (up, down) {
            (Some(PartitionsDef::Time(a)), Some(PartitionsDef::Time(b))) => {
                if a.tz != b.tz {
                    Err(format!(
                        "time windows in different time zones (upstream {}, downstream {})",
                        a.tz.name(),
                        b.tz.name()
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Err(format!(
                "`time_window` needs time partitions on both sides (upstream is {ku}, downstream is {kd})"
            )),
        },
        MappingSpec::Static { map } => match (up, down) {
            (Some(PartitionsDef::Static(a)), Some(PartitionsDef::Static(b))) => {
                for (from, to) in map {
                    if a.index_of(from).is_none() {
                        return Err(format!("upstream has no partition `{from}`"));
                    }
                    if let Some(t) = to.iter().find(|t| b.index_of(t).is_none()) {
                        return Err(format!("downstream has no partition `{t}`"));
                    }
                }
                Ok(())
            }
            _ => Err(format!(
                "`static` needs static partitions on both sides (upstream is {ku}, downstream is {kd})"
            )),
        },
        MappingSpec::MultiToSingle { dimension } => {
            let (m, other) = match (up, down) {
                (Some(PartitionsDef::Multi(m)), Some(o))
                    if !matches!(o, PartitionsDef::Multi(_)) =>
                {
                    (m, o)
                }
                (Some(o), Some(PartitionsDef::Multi(m)))
                    if !matches!(o, PartitionsDef::Multi(_)) =>
                {
                    (m, o)
                }
                _ => {
                    return Err(format!(
                        "`multi_to_single` needs a multi definition on exactly one side and a partitioned other side (upstream is {ku}, downstream is {kd})"
                    ));
                }
            };
            match dimension {
                Some(d) => match m.dim(d) {
                    Some((_, dd)) => {
                        let compatible = same_def(dd, other)
                            || matches!(
                                (&**dd, other),
                                (PartitionsDef::Time(_), PartitionsDef::Time(_))
                            )
                            || std::mem::discriminant(&**dd) == std::mem::discriminant(other);
                        if compatible {
                            Ok(())
                        } else {
                            Err(format!(
                                "dimension `{d}` is {} but the other side is {}",
                                dd.type_name(),
                                other.type_name()
                            ))
                        }
                    }
                    None => Err(format!(
                        "the multi definition has no dimension `{d}` (it has `{}` and `{}`)",
                        m.dims[0].0, m.dims[1].0
                    )),
                },
                None => matching_dimension(m, other).map(|_| ()),
            }
        }
        MappingSpec::Multi { dimensions } => match (up, down) {
            (Some(PartitionsDef::Multi(a)), Some(PartitionsDef::Multi(b))) => {
                for (up_dim, (down_dim, inner)) in dimensions {
                    let Some((_, ud)) = a.dim(up_dim) else {
                        return Err(format!("upstream has no dimension `{up_dim}`"));
                    };
                    let Some((_, dd)) = b.dim(down_dim) else {
                        return Err(format!("downstream has no dimension `{down_dim}`"));
                    };
                    check_applicable(inner, Some(ud), Some(dd))
                        .map_err(|e| format!("dimension `{up_dim}` → `{down_dim}`: {e}"))?;
                }
                Ok(())
            }
            _ => Err(format!(
                "`multi` needs multi definitions on both sides (upstream is {ku}, downstream is {kd})"
            )),
        },
    }
}
