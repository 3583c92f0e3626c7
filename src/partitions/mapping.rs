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

/// Why a mapping cannot apply between two partitions definitions (or which
/// dimension of a multi definition is meant cannot be told).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MappingError(pub String);

fn refuse<T>(msg: impl Into<String>) -> Result<T, MappingError> {
    Err(MappingError(msg.into()))
}

/// The dimension of `multi` that `single` maps to by default: the one that
/// is the same definition, else the only time dimension when `single` is time.
pub fn matching_dimension<'m>(
    multi: &'m super::MultiPartitions,
    single: &PartitionsDef,
) -> Result<&'m str, MappingError> {
    let same: Vec<&str> = multi
        .dims
        .iter()
        .filter(|(_, d)| same_def(d, single))
        .map(|(n, _)| n.as_str())
        .collect();
    match same.len() {
        1 => return Ok(same[0]),
        2 => {
            return refuse("both dimensions match; name one with `dimension = \"…\"`".to_string());
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
            return refuse(
                "both dimensions are time-based; name one with `dimension = \"…\"`".to_string(),
            );
        }
    }
    refuse(format!(
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

/// The definition's `type` as written in TOML (`daily`, `static`, …), the
/// way the help text and `dg list defs` name it.
fn kind(p: Option<&PartitionsDef>) -> &'static str {
    p.map_or("unpartitioned", PartitionsDef::type_name)
}

/// How many keys a message shows before `…`.
const SHOWN_KEYS: usize = 5;

/// "its keys: `a`, `b`, …" for a static definition: the first few, in order.
fn static_keys(s: &super::StaticPartitions) -> String {
    let keys = s.keys();
    if keys.is_empty() {
        return "it has no keys".into();
    }
    let mut shown: Vec<String> = keys
        .iter()
        .take(SHOWN_KEYS)
        .map(|k| format!("`{k}`"))
        .collect();
    if keys.len() > SHOWN_KEYS {
        shown.push(format!("… ({} keys)", keys.len()));
    }
    format!("its keys: {}", shown.join(", "))
}

/// "its first keys: `a`, `b`, …" for a time definition (its last key
/// depends on *now*, which validation does not know).
fn time_keys(t: &super::TimePartitions) -> String {
    let shown: Vec<String> = (0..3)
        .filter_map(|i| t.key(i))
        .map(|k| format!("`{k}`"))
        .collect();
    if shown.is_empty() {
        return "it has no keys".into();
    }
    format!("its first keys: {}, …", shown.join(", "))
}

/// Checks that `spec` can map `up` partitions to `down` partitions. The
/// error says why not.
pub fn check_applicable(
    spec: &MappingSpec,
    up: Option<&PartitionsDef>,
    down: Option<&PartitionsDef>,
) -> Result<(), MappingError> {
    let (ku, kd) = (kind(up), kind(down));
    match spec {
        MappingSpec::All => Ok(()),
        MappingSpec::Last => match up {
            Some(_) => Ok(()),
            None => refuse("`last` needs a partitioned upstream"),
        },
        MappingSpec::Specific { keys } => match up {
            None => refuse("`specific` needs a partitioned upstream"),
            Some(PartitionsDef::Static(s)) => match keys.iter().find(|k| s.index_of(k).is_none()) {
                Some(k) => refuse(format!(
                    "upstream has no partition `{k}` ({})",
                    static_keys(s)
                )),
                None => Ok(()),
            },
            Some(PartitionsDef::Time(t)) => match keys.iter().find(|k| t.index_of_key(k).is_none())
            {
                Some(k) => refuse(format!(
                    "`{k}` is not a key of the upstream {} partitions ({})",
                    t.schedule.type_name(),
                    time_keys(t)
                )),
                None => Ok(()),
            },
            Some(_) => Ok(()),
        },
        MappingSpec::Identity => match (up, down) {
            (Some(PartitionsDef::Time(a)), Some(PartitionsDef::Time(b)))
                if a.schedule.type_name() != b.schedule.type_name() =>
            {
                refuse(format!(
                    "identity maps each key to the same key, so both sides need the same type of partitions (upstream is {ku}, downstream is {kd}); to read the upstream windows that overlap each downstream window, use `mapping = {{ type = \"time_window\" }}`"
                ))
            }
            (Some(PartitionsDef::Time(_)), Some(PartitionsDef::Time(_)))
            | (Some(PartitionsDef::Static(_)), Some(PartitionsDef::Static(_)))
            | (Some(PartitionsDef::Dynamic { .. }), Some(PartitionsDef::Dynamic { .. }))
            | (Some(PartitionsDef::Multi(_)), Some(PartitionsDef::Multi(_))) => Ok(()),
            _ => refuse(format!(
                "identity maps each key to the same key, so both sides need the same kind of partitions (upstream is {ku}, downstream is {kd})"
            )),
        },
        MappingSpec::TimeWindow {
            start_offset,
            end_offset,
            ..
        } => match (up, down) {
            (Some(PartitionsDef::Time(_)), Some(PartitionsDef::Time(_)))
                if *start_offset > end_offset.saturating_add(1) =>
            {
                refuse(format!(
                    "the window is empty: it starts {start_offset} and ends {} downstream windows from each partition, so no partition would read anything; make `start_offset` at most `end_offset` + 1",
                    end_offset.saturating_add(1)
                ))
            }
            (Some(PartitionsDef::Time(a)), Some(PartitionsDef::Time(b))) => {
                if a.tz != b.tz {
                    refuse(format!(
                        "time windows in different time zones (upstream {}, downstream {})",
                        a.tz.name(),
                        b.tz.name()
                    ))
                } else {
                    Ok(())
                }
            }
            _ => refuse(format!(
                "`time_window` needs time partitions on both sides (upstream is {ku}, downstream is {kd})"
            )),
        },
        MappingSpec::Static { map } => match (up, down) {
            (Some(PartitionsDef::Static(a)), Some(PartitionsDef::Static(b))) => {
                for (from, to) in map {
                    if a.index_of(from).is_none() {
                        return refuse(format!(
                            "upstream has no partition `{from}` ({})",
                            static_keys(a)
                        ));
                    }
                    if let Some(t) = to.iter().find(|t| b.index_of(t).is_none()) {
                        return refuse(format!(
                            "downstream has no partition `{t}` ({})",
                            static_keys(b)
                        ));
                    }
                }
                Ok(())
            }
            _ => refuse(format!(
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
                    return refuse(format!(
                        "`multi_to_single` needs a multi definition on exactly one side and a partitioned other side (upstream is {ku}, downstream is {kd})"
                    ));
                }
            };
            let used = match dimension {
                Some(d) => m.dim(d),
                None => matching_dimension(m, other).ok().and_then(|n| m.dim(n)),
            };
            if let (Some((_, dd)), PartitionsDef::Time(b)) = (used, other)
                && let PartitionsDef::Time(a) = &**dd
                && a.tz != b.tz
            {
                return refuse(format!(
                    "time windows in different time zones (the dimension is in {}, the other side in {})",
                    a.tz.name(),
                    b.tz.name()
                ));
            }
            match dimension {
                Some(d) => match m.dim(d) {
                    // Dagster maps through the dimension it infers, whatever
                    // the name says; dg refuses a name that disagrees.
                    Some((_, dd)) => match matching_dimension(m, other) {
                        Ok(inferred) if inferred == d => Ok(()),
                        Ok(inferred) => refuse(format!(
                            "dimension `{d}` ({}) does not match the {} definition on the other side; dimension `{inferred}` does, so name it or leave `dimension` out",
                            dd.type_name(),
                            other.type_name()
                        )),
                        // Both dimensions match: the name picks one.
                        Err(_)
                            if same_def(dd, other)
                                || matches!(
                                    (&**dd, other),
                                    (PartitionsDef::Time(_), PartitionsDef::Time(_))
                                ) =>
                        {
                            Ok(())
                        }
                        Err(_) => refuse(format!(
                            "dimension `{d}` is {} but the other side is {}: a dimension maps only onto the same definition, or a time dimension onto time partitions",
                            dd.type_name(),
                            other.type_name()
                        )),
                    },
                    None => refuse(format!(
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
                        return refuse(format!("upstream has no dimension `{up_dim}`"));
                    };
                    let Some((_, dd)) = b.dim(down_dim) else {
                        return refuse(format!("downstream has no dimension `{down_dim}`"));
                    };
                    check_applicable(inner, Some(ud), Some(dd)).map_err(|e| {
                        MappingError(format!("dimension `{up_dim}` → `{down_dim}`: {e}"))
                    })?;
                }
                Ok(())
            }
            _ => refuse(format!(
                "`multi` needs multi definitions on both sides (upstream is {ku}, downstream is {kd})"
            )),
        },
    }
}

/// Upstream partition indices, in partition order, without duplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Indices {
    /// `lo..hi`
    Range(i64, i64),
    List(Vec<i64>),
}

impl Default for Indices {
    fn default() -> Self {
        Indices::Range(0, 0)
    }
}

impl Indices {
    pub fn len(&self) -> usize {
        match self {
            Indices::Range(lo, hi) => (hi - lo).max(0) as usize,
            Indices::List(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> Box<dyn Iterator<Item = i64> + '_> {
        match self {
            Indices::Range(lo, hi) => Box::new(*lo..*hi),
            Indices::List(v) => Box::new(v.iter().copied()),
        }
    }

    pub fn from_sorted(mut v: Vec<i64>) -> Indices {
        v.sort_unstable();
        v.dedup();
        match (v.first(), v.last()) {
            (Some(&a), Some(&b)) if (b - a + 1) as usize == v.len() => Indices::Range(a, b + 1),
            (None, _) => Indices::default(),
            _ => Indices::List(v),
        }
    }
}

/// What a mapping resolved to for one downstream partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapped {
    /// Upstream partitions that exist.
    pub indices: Indices,
    /// Upstream keys the mapping needs that do not exist (before the start,
    /// a window not yet closed, a key the definition lacks). Empty when the
    /// mapping allows nonexistent partitions. A `multi` mapping names the
    /// keys of single dimensions, as Dagster does.
    pub nonexistent: Vec<String>,
    /// Nonexistent keys left out because the mapping allows it
    /// (`allow_nonexistent = true`), so that a plan can show them.
    pub dropped: Vec<String>,
}

/// Resolves which partitions of the partitioned upstream `up` are read by
/// downstream partition `down` (`None`: an unpartitioned downstream).
/// The mapping must have passed [`check_applicable`].
pub fn map_upstream(
    spec: &MappingSpec,
    up: &PartitionsDef,
    down: Option<(&PartitionsDef, i64)>,
    cx: &super::KeyCtx,
) -> Mapped {
    let n_up = up.len(cx);
    let mut nonexistent = Vec::new();
    let indices = match (spec, down) {
        (MappingSpec::All, _) => Indices::Range(0, n_up),
        (MappingSpec::Last, _) => Indices::Range((n_up - 1).max(0), n_up),
        (MappingSpec::Specific { keys }, _) => {
            let mut v = Vec::new();
            for k in keys {
                match up.index_of(k, cx) {
                    Some(i) => v.push(i),
                    None => nonexistent.push(k.clone()),
                }
            }
            Indices::from_sorted(v)
        }
        (_, None) => Indices::default(),
        (MappingSpec::Identity, Some((d, i))) => match d.key(i, cx) {
            Some(k) => match up.index_of(&k, cx) {
                Some(j) => Indices::Range(j, j + 1),
                None => {
                    nonexistent.push(k);
                    Indices::default()
                }
            },
            None => Indices::default(),
        },
        (
            MappingSpec::TimeWindow {
                start_offset,
                end_offset,
                allow_nonexistent,
            },
            Some((d, i)),
        ) => {
            let (Some(u), Some(dt)) = (up.as_time(), d.as_time()) else {
                return Mapped::default();
            };
            let m = time_window(u, n_up, dt, i, *start_offset, *end_offset);
            if *allow_nonexistent {
                return Mapped {
                    indices: m.indices,
                    nonexistent: Vec::new(),
                    dropped: m.nonexistent,
                };
            }
            return m;
        }
        (MappingSpec::Static { map }, Some((d, i))) => {
            let Some(dk) = d.key(i, cx) else {
                return Mapped::default();
            };
            let v: Vec<i64> = map
                .iter()
                .filter(|(_, to)| to.contains(&dk))
                .filter_map(|(from, _)| up.index_of(from, cx))
                .collect();
            Indices::from_sorted(v)
        }
        (MappingSpec::MultiToSingle { dimension }, Some((d, i))) => {
            return multi_to_single(dimension.as_deref(), up, d, i, cx);
        }
        (MappingSpec::Multi { dimensions }, Some((d, i))) => {
            return multi(dimensions, up, d, i, cx);
        }
    };
    Mapped {
        indices,
        nonexistent,
        dropped: Vec::new(),
    }
}

/// The upstream windows that overlap downstream window `i` moved by the
/// offsets (in downstream windows), as Dagster 1.13 resolves them. Offsets
/// are not clamped: windows that fall outside the upstream's partitions are
/// nonexistent.
fn time_window(
    up: &super::TimePartitions,
    n_up: i64,
    down: &super::TimePartitions,
    i: i64,
    start_offset: i64,
    end_offset: i64,
) -> Mapped {
    let (Some(ws), Some(we)) = (down.tick(i + start_offset), down.tick(i + 1 + end_offset)) else {
        return Mapped::default();
    };
    if we < ws {
        // An empty window: rejected by `check_applicable`.
        return Mapped::default();
    }
    let keys = |lo: i64, hi: i64| -> Vec<String> { (lo..=hi).filter_map(|j| up.key(j)).collect() };
    // A window that ends before the upstream starts: Dagster names the
    // upstream windows that start inside it. When none does, it names
    // nothing and reads nothing; dg names the window that covers it (below).
    if start_offset == 0 && end_offset == 0 && we <= up.start_instant() {
        let lo = up.floor_index(ws - 1) + 1;
        let hi = up.floor_index(we - 1);
        if lo <= hi {
            return Mapped {
                indices: Indices::default(),
                nonexistent: keys(lo, hi),
                dropped: Vec::new(),
            };
        }
    }
    // The upstream windows from the one holding the window's start to the
    // one holding its end. A zero-width window (`start_offset` one more than
    // `end_offset`) reads the window that holds it, or nothing when it falls
    // on an upstream window boundary.
    let lo = up.floor_index(ws);
    let hi = up.floor_index(we - 1);
    let mut nonexistent = keys(lo, hi.min(-1));
    nonexistent.extend(keys(lo.max(n_up), hi));
    Mapped {
        indices: Indices::Range(lo.max(0), (hi + 1).min(n_up).max(lo.max(0))),
        nonexistent,
        dropped: Vec::new(),
    }
}

/// Maps a key of `from` (index `i`) onto `to`'s indices: by key when the
/// definitions are the same or not time-based, else by time window.
fn single_dim(to: &PartitionsDef, from: &PartitionsDef, i: i64, cx: &super::KeyCtx) -> Mapped {
    match (to, from) {
        (PartitionsDef::Time(u), PartitionsDef::Time(d)) if !same_def(to, from) => {
            time_window(u, to.len(cx), d, i, 0, 0)
        }
        _ => map_upstream(&MappingSpec::Identity, to, Some((from, i)), cx),
    }
}

fn multi_to_single(
    dimension: Option<&str>,
    up: &PartitionsDef,
    down: &PartitionsDef,
    i: i64,
    cx: &super::KeyCtx,
) -> Mapped {
    match (up, down) {
        (PartitionsDef::Multi(m), single) => {
            let Some(name) = dimension.or_else(|| matching_dimension(m, single).ok()) else {
                return Mapped::default();
            };
            let Some((pos, dim)) = m.dim(name) else {
                return Mapped::default();
            };
            let mapped = single_dim(dim, single, i, cx);
            let other = &m.dims[1 - pos].1;
            let n_other = other.len(cx);
            let mut v = Vec::new();
            for a in mapped.indices.iter() {
                for b in 0..n_other {
                    v.push(if pos == 0 {
                        a * n_other + b
                    } else {
                        b * dim.len(cx) + a
                    });
                }
            }
            Mapped {
                indices: Indices::from_sorted(v),
                nonexistent: mapped.nonexistent,
                dropped: mapped.dropped,
            }
        }
        (single, PartitionsDef::Multi(m)) => {
            let Some(name) = dimension.or_else(|| matching_dimension(m, single).ok()) else {
                return Mapped::default();
            };
            let (Some((pos, dim)), Some(key)) = (m.dim(name), down.key(i, cx)) else {
                return Mapped::default();
            };
            let Some(parts) = super::MultiPartitions::split(&key) else {
                return Mapped::default();
            };
            let dk = if pos == 0 { parts.0 } else { parts.1 };
            match dim.index_of(dk, cx) {
                Some(di) => single_dim(single, dim, di, cx),
                None => Mapped::default(),
            }
        }
        _ => Mapped::default(),
    }
}

fn multi(
    dimensions: &BTreeMap<String, (String, Box<MappingSpec>)>,
    up: &PartitionsDef,
    down: &PartitionsDef,
    i: i64,
    cx: &super::KeyCtx,
) -> Mapped {
    let (PartitionsDef::Multi(um), PartitionsDef::Multi(dm)) = (up, down) else {
        return Mapped::default();
    };
    let Some(key) = down.key(i, cx) else {
        return Mapped::default();
    };
    let Some((k0, k1)) = super::MultiPartitions::split(&key) else {
        return Mapped::default();
    };
    let mut per_dim: Vec<Mapped> = Vec::new();
    for (name, def) in &um.dims {
        match dimensions.get(name) {
            Some((down_dim, inner)) => {
                let Some((dpos, ddef)) = dm.dim(down_dim) else {
                    return Mapped::default();
                };
                let dk = if dpos == 0 { k0 } else { k1 };
                let Some(di) = ddef.index_of(dk, cx) else {
                    return Mapped::default();
                };
                per_dim.push(map_upstream(inner, def, Some((ddef, di)), cx));
            }
            None => per_dim.push(Mapped {
                indices: Indices::Range(0, def.len(cx)),
                ..Mapped::default()
            }),
        }
    }
    let n1 = um.dims[1].1.len(cx);
    let mut v = Vec::new();
    for a in per_dim[0].indices.iter() {
        for b in per_dim[1].indices.iter() {
            v.push(a * n1 + b);
        }
    }
    // Like Dagster, the keys of the dimensions that do not exist, each on
    // its own: `c` and `2023-12-26`, not `c|2023-12-26`.
    let mut nonexistent: Vec<String> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    for m in per_dim {
        for k in m.nonexistent {
            if !nonexistent.contains(&k) {
                nonexistent.push(k);
            }
        }
        dropped.extend(m.dropped);
    }
    Mapped {
        indices: Indices::from_sorted(v),
        nonexistent,
        dropped,
    }
}
