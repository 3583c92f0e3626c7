//! `path` templates of the `fs` and `object_store` managers: where, below
//! the base, an output (partition) is stored.
//!
//! Placeholders: `{key}` (the asset key's segments joined by `/`),
//! `{partition}` (the partition key), `{dim.NAME}` (one dimension's key of
//! a multi partition), `{start:FMT}` / `{end:FMT}` (strftime of the time
//! window, in the partitions' time zone) and `{ext}` (the format's
//! extension without the dot; for `file` it is empty and the `.` before it
//! goes too). `{{` and `}}` are literal braces.
//!
//! Keys are percent-encoded ([`super::fs::encode_key`]), so no key can add
//! a folder level or climb out of the base; the rendered path is checked
//! again (no empty, `.` or `..` component, no `\`, no NUL).
//!
//! [`PathTemplate::check_asset`] is what `dg check defs` runs for each asset
//! stored with a template: the template must name the partition in a way no
//! two partitions share.

use std::collections::HashMap;
use std::ops::Range;

use chrono::format::{Fixed, Item, Numeric, StrftimeItems};
use chrono::{Datelike, Offset, TimeZone};

use super::{Format, PartitionRef};
use crate::names::encode_key;
use crate::partitions::time::Schedule;
use crate::partitions::{PartitionsDef, TimePartitions};

/// A parsed `path` template.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Key,
    Partition,
    Dim(String),
    Time {
        end: bool,
        items: Vec<Item<'static>>,
    },
    Ext,
}

/// A template that does not parse: what is wrong and where (byte offsets
/// into the template).
#[derive(Debug, Clone)]
pub struct TemplateError {
    pub message: String,
    pub range: Range<usize>,
    pub help: Option<String>,
}

/// How finely a time placeholder names a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Year,
    Month,
    Day,
    Hour,
    Minute,
}

const PLACEHOLDERS: &str =
    "`{key}`, `{partition}`, `{dim.NAME}`, `{start:FMT}`, `{end:FMT}`, `{ext}`";

impl PathTemplate {
    /// Parses a template, or says where it is wrong.
    pub fn parse(source: &str) -> Result<PathTemplate, TemplateError> {
        let err = |message: String, range: Range<usize>, help: Option<&str>| TemplateError {
            message,
            range,
            help: help.map(str::to_string),
        };
        let mut parts = Vec::new();
        let mut lit = String::new();
        let bytes = source.as_bytes();
        let mut i = 0;
        while i < source.len() {
            let c = source[i..].chars().next().expect("in bounds");
            match c {
                '{' if bytes.get(i + 1) == Some(&b'{') => {
                    lit.push('{');
                    i += 2;
                }
                '}' if bytes.get(i + 1) == Some(&b'}') => {
                    lit.push('}');
                    i += 2;
                }
                '}' => {
                    return Err(err(
                        "`path` has an unmatched `}`".into(),
                        i..i + 1,
                        Some("write `}}` for a literal brace"),
                    ));
                }
                '{' => {
                    let Some(len) = source[i + 1..].find('}') else {
                        return Err(err(
                            "`path` has an unclosed `{`".into(),
                            i..source.len(),
                            Some(
                                "close the placeholder with `}`, or write `{{` for a literal brace",
                            ),
                        ));
                    };
                    let inner = &source[i + 1..i + 1 + len];
                    let range = i..i + len + 2;
                    let part = match inner {
                        "key" => Part::Key,
                        "partition" => Part::Partition,
                        "ext" => Part::Ext,
                        _ if inner.starts_with("dim.") && inner.len() > 4 => {
                            Part::Dim(inner[4..].to_string())
                        }
                        _ if inner.starts_with("start:") || inner.starts_with("end:") => {
                            let (which, fmt) = inner.split_once(':').expect("has a colon");
                            let items = StrftimeItems::new(fmt).parse_to_owned();
                            match items {
                                Ok(items) if !fmt.is_empty() => Part::Time {
                                    end: which == "end",
                                    items,
                                },
                                _ => {
                                    return Err(err(
                                        format!(
                                            "`path` has an invalid strftime format `{fmt}` in `{{{inner}}}`"
                                        ),
                                        range,
                                        Some("e.g. `{start:%Y}`, `{start:%Y-%m-%d}`, `{end:%H}`"),
                                    ));
                                }
                            }
                        }
                        _ => {
                            let mut help = format!("placeholders are {PLACEHOLDERS}");
                            let (name, rest) = match inner.split_once(':') {
                                Some((n, r)) => (n, format!(":{r}")),
                                None => (inner, String::new()),
                            };
                            if let Some(s) = ["key", "partition", "ext", "start", "end"]
                                .into_iter()
                                .find(|s| strsim::levenshtein(s, name) <= 2)
                            {
                                help = format!("did you mean `{{{s}{rest}}}`? {help}");
                            }
                            return Err(TemplateError {
                                message: format!("`path` has an unknown placeholder `{{{inner}}}`"),
                                range,
                                help: Some(help),
                            });
                        }
                    };
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(part);
                    i = range.end;
                }
                _ => {
                    lit.push(c);
                    i += c.len_utf8();
                }
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        let t = PathTemplate {
            source: source.to_string(),
            parts,
        };
        // The literal text must not make a component empty, `.` or `..`, or absolute.
        let whole = 0..source.len();
        if source.starts_with('/') {
            return Err(err(
                "`path` is absolute".into(),
                0..1,
                Some("paths are relative to the manager's base: remove the leading `/`"),
            ));
        }
        if source.contains('\\') || source.contains('\0') {
            return Err(err(
                "`path` holds `\\` or a NUL character".into(),
                whole,
                Some("separate folders with `/`"),
            ));
        }
        for comp in t.shape().split('/') {
            if comp.is_empty() || comp == "." || comp == ".." {
                return Err(err(
                    format!("`path` has an empty, `.` or `..` folder: `{source}`"),
                    whole,
                    Some("every folder level must be a name; keys never climb out of the base"),
                ));
            }
        }
        if !t.parts.iter().any(|p| !matches!(p, Part::Lit(_))) {
            return Err(err(
                "`path` has no placeholder: every output would share one path".into(),
                whole,
                Some("use `{key}` and, for partitioned assets, `{partition}`"),
            ));
        }
        Ok(t)
    }

    /// The template with each placeholder as `x` (to check its literal structure).
    fn shape(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Lit(s) => s.as_str(),
                _ => "x",
            })
            .collect()
    }

    /// Whether `{key}` occurs: without it, assets sharing the manager share paths.
    pub fn uses_key(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Key))
    }

    /// The first placeholder that needs a partition, as written.
    fn partition_placeholder(&self) -> Option<String> {
        self.parts.iter().find_map(|p| match p {
            Part::Partition => Some("{partition}".to_string()),
            Part::Dim(d) => Some(format!("{{dim.{d}}}")),
            Part::Time { end, .. } => Some(if *end { "{end:…}" } else { "{start:…}" }.into()),
            _ => None,
        })
    }

    /// The path of an output below the base, `/`-separated. An error when
    /// the partition lacks what the template needs, or a component would
    /// not be a plain name.
    pub fn render(
        &self,
        asset_key: &str,
        partition: Option<&PartitionRef>,
        format: Format,
    ) -> anyhow::Result<String> {
        let mut out = String::new();
        let need = |what: &str| {
            anyhow::anyhow!(
                "`{asset_key}`: the path template `{}` uses {what}, which {}",
                self.source,
                match partition {
                    None => "an unpartitioned asset does not have".to_string(),
                    Some(p) => format!("partition `{}` does not have", p.key),
                }
            )
        };
        for (i, p) in self.parts.iter().enumerate() {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Key => out.push_str(asset_key),
                Part::Partition => {
                    let p = partition.ok_or_else(|| need("`{partition}`"))?;
                    if p.key.is_empty() {
                        anyhow::bail!(
                            "`{asset_key}`: an empty partition key cannot be stored as a path"
                        );
                    }
                    out.push_str(&encode_key(&p.key))
                }
                Part::Dim(name) => {
                    let k = partition
                        .and_then(|p| p.dims.iter().find(|(n, _)| n == name))
                        .map(|(_, k)| k)
                        .ok_or_else(|| need(&format!("`{{dim.{name}}}`")))?;
                    if k.is_empty() {
                        anyhow::bail!(
                            "`{asset_key}`: an empty partition key cannot be stored as a path"
                        );
                    }
                    out.push_str(&encode_key(k))
                }
                Part::Time { end, items } => {
                    let (s, e) = partition
                        .and_then(|p| p.window)
                        .ok_or_else(|| need("a time window"))?;
                    let t = if *end { e } else { s };
                    let _ = std::fmt::Write::write_fmt(
                        &mut out,
                        format_args!("{}", t.format_with_items(items.iter())),
                    );
                }
                Part::Ext => {
                    let ext = format.extension().trim_start_matches('.');
                    if ext.is_empty() && out.ends_with('.') && i > 0 {
                        out.pop();
                    }
                    out.push_str(ext);
                }
            }
        }
        for comp in out.split('/') {
            if comp.is_empty()
                || comp == "."
                || comp == ".."
                || comp.contains('\\')
                || comp.chars().any(char::is_control)
            {
                anyhow::bail!(
                    "`{asset_key}`: the path template `{}` gives `{out}`, whose part `{comp}` is not a plain name",
                    self.source
                );
            }
        }
        Ok(out)
    }

    /// Checks that the template suits an asset with partitions `def`
    /// (`None`: unpartitioned): every placeholder it uses exists, and no two
    /// partitions share a path. The error is one sentence; the caller adds
    /// where.
    pub fn check_asset(&self, def: Option<&PartitionsDef>) -> Result<(), Mismatch> {
        let Some(def) = def else {
            if let Some(p) = self.partition_placeholder() {
                return Err(Mismatch::NotPartitioned(p));
            }
            return Ok(());
        };
        // Every placeholder must exist in this definition.
        let time = time_of(def);
        for p in &self.parts {
            match p {
                Part::Dim(name) => {
                    let PartitionsDef::Multi(m) = def else {
                        return Err(Mismatch::NotMulti {
                            dim: name.clone(),
                            partitions: def.type_name(),
                        });
                    };
                    if m.dim(name).is_none() {
                        return Err(Mismatch::UnknownDim {
                            dim: name.clone(),
                            dims: m
                                .dims
                                .iter()
                                .map(|(n, _)| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(" and "),
                        });
                    }
                }
                Part::Time { end, .. } if time.is_none() => {
                    return Err(Mismatch::NoWindow {
                        placeholder: if *end { "end" } else { "start" },
                        partitions: def.type_name(),
                    });
                }
                _ => {}
            }
        }
        if self.parts.iter().any(|p| matches!(p, Part::Partition)) {
            return Ok(());
        }
        // Each dimension (or the one definition) must be named.
        let dims: Vec<(Option<&str>, &PartitionsDef)> = match def {
            PartitionsDef::Multi(m) => m
                .dims
                .iter()
                .map(|(n, d)| (Some(n.as_str()), &**d))
                .collect(),
            d => vec![(None, d)],
        };
        for (name, d) in dims {
            if let Some(n) = name
                && self
                    .parts
                    .iter()
                    .any(|p| matches!(p, Part::Dim(x) if x == n))
            {
                continue;
            }
            let what = name.map_or(String::new(), |n| format!(" of dimension `{n}`"));
            match d {
                PartitionsDef::Time(t) => self
                    .time_names_window(t)
                    .map_err(|why| Mismatch::WindowsShare { what, why })?,
                _ => return Err(Mismatch::Unnamed { what }),
            }
        }
        self.check_ambiguity(def)
    }

    /// Whether the time placeholders tell the windows of `t` apart.
    fn time_names_window(&self, t: &TimePartitions) -> Result<(), WindowsUnnamed> {
        let need = required_level(&t.schedule);
        let mut best: Option<WindowsUnnamed> = None;
        for end in [false, true] {
            let items: Vec<&Item<'static>> = self
                .parts
                .iter()
                .filter_map(|p| match p {
                    Part::Time { end: e, items } if *e == end => Some(items.iter()),
                    _ => None,
                })
                .flatten()
                .collect();
            if items.is_empty() {
                continue;
            }
            let (level, exact) = coverage(&items);
            if exact {
                return Ok(());
            }
            match level {
                Some(l) if l >= need => {
                    // A repeated wall-clock hour (daylight saving ends) gives
                    // two windows the same local time.
                    if need >= Level::Hour && has_dst(t) {
                        best = Some(WindowsUnnamed::RepeatedHour(t.tz.to_string()));
                        continue;
                    }
                    return Ok(());
                }
                _ => {
                    best.get_or_insert(WindowsUnnamed::Missing {
                        partitions: t.schedule.type_name(),
                        template: self.source.clone(),
                        missing: missing_fields(level, need),
                    });
                }
            }
        }
        Err(best.unwrap_or(WindowsUnnamed::Nothing(t.schedule.type_name())))
    }

    /// Two placeholders in one path component (`{dim.a}_{dim.b}`) can run
    /// together; renders the known keys and reports a shared path.
    fn check_ambiguity(&self, def: &PartitionsDef) -> Result<(), Mismatch> {
        let mut comp_placeholders = 0;
        let mut ambiguous = false;
        for p in &self.parts {
            match p {
                Part::Lit(s) if s.contains('/') => comp_placeholders = 0,
                Part::Lit(_) => {}
                _ => {
                    comp_placeholders += 1;
                    ambiguous |= comp_placeholders > 1;
                }
            }
        }
        if !ambiguous {
            return Ok(());
        }
        let refs = sample_refs(def, 50_000);
        let mut seen: HashMap<String, &str> = HashMap::with_capacity(refs.len());
        for r in &refs {
            let Ok(path) = self.render("a", Some(r), Format::Csv) else {
                continue;
            };
            if let Some(other) = seen.insert(path.clone(), &r.key) {
                return Err(Mismatch::SharedPath {
                    a: other.to_string(),
                    b: r.key.to_string(),
                    path,
                });
            }
        }
        Ok(())
    }
}

/// Why a path template cannot store an asset's partitions
/// ([`PathTemplate::check_asset`]): one sentence; the caller says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The asset is unpartitioned; the template names a partition.
    #[error("the asset is not partitioned, but the path template uses `{0}`")]
    NotPartitioned(String),
    /// `{dim.…}` for partitions that are not multi-dimensional.
    #[error(
        "the path template uses `{{dim.{dim}}}`, but the asset's partitions are {partitions}, not multi"
    )]
    NotMulti {
        dim: String,
        partitions: &'static str,
    },
    /// `{dim.…}` names no dimension of the asset.
    #[error("the path template uses `{{dim.{dim}}}`, but the asset's dimensions are {dims}")]
    UnknownDim { dim: String, dims: String },
    /// `{start:…}`/`{end:…}` for partitions without time windows.
    #[error(
        "the path template uses `{{{placeholder}:…}}`, but the asset's {partitions} partitions have no time window"
    )]
    NoWindow {
        placeholder: &'static str,
        partitions: &'static str,
    },
    /// The time placeholders do not tell the windows (of a dimension) apart.
    #[error("two partitions{what} would share a path: {why}")]
    WindowsShare { what: String, why: WindowsUnnamed },
    /// Nothing names the partition (of a dimension).
    #[error(
        "the path template does not name the partition{what}: every partition would share a path"
    )]
    Unnamed { what: String },
    /// Two sample partitions render to one path.
    #[error("partitions `{a}` and `{b}` would share the path `{path}`")]
    SharedPath { a: String, b: String, path: String },
}

/// Why a template's time placeholders do not tell time windows apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowsUnnamed {
    /// The local hour repeats when daylight saving time ends.
    #[error(
        "time zone `{0}` repeats an hour when daylight saving time ends; add the UTC offset (`%z`) or use `{{partition}}`"
    )]
    RepeatedHour(String),
    /// The placeholders are too coarse for the schedule.
    #[error("the partitions are {partitions}, and `{template}` does not name the {missing}")]
    Missing {
        partitions: &'static str,
        template: String,
        missing: String,
    },
    /// No time placeholder at all.
    #[error("the path template names no part of the {0} time window")]
    Nothing(&'static str),
}

fn time_of(def: &PartitionsDef) -> Option<&TimePartitions> {
    match def {
        PartitionsDef::Time(t) => Some(t),
        PartitionsDef::Multi(m) => m.dims.iter().find_map(|(_, d)| d.as_time()),
        _ => None,
    }
}

/// The finest unit two windows of `s` can differ in.
fn required_level(s: &Schedule) -> Level {
    match s {
        Schedule::Hourly { .. } => Level::Hour,
        Schedule::Daily { .. } | Schedule::Weekly { .. } => Level::Day,
        Schedule::Monthly { .. } => Level::Month,
        Schedule::Cron { cron, .. } => {
            let mut fields = cron.as_str().split_whitespace();
            let single = |f: Option<&str>| f.is_some_and(|f| f.chars().all(|c| c.is_ascii_digit()));
            let (min, hour, dom, month, dow) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            );
            if !single(min) {
                Level::Minute
            } else if !single(hour) {
                Level::Hour
            } else if !single(dom) || dow.is_some_and(|d| d != "*") {
                Level::Day
            } else if !single(month) {
                Level::Month
            } else {
                Level::Year
            }
        }
    }
}

/// The finest level the items name without a gap from the year down, and
/// whether they name the instant exactly (a timestamp, RFC 3339, an offset
/// with minutes).
fn coverage(items: &[&Item<'_>]) -> (Option<Level>, bool) {
    let (mut y, mut mo, mut d, mut ord, mut h, mut h12, mut ampm, mut mi, mut off) = (
        false, false, false, false, false, false, false, false, false,
    );
    for it in items {
        match it {
            Item::Numeric(n, _) => match n {
                Numeric::Year | Numeric::YearMod100 => y = true,
                Numeric::Month => mo = true,
                Numeric::Day => d = true,
                Numeric::Ordinal => ord = true,
                Numeric::Hour => h = true,
                Numeric::Hour12 => h12 = true,
                Numeric::Minute => mi = true,
                Numeric::Timestamp => return (Some(Level::Minute), true),
                _ => {}
            },
            Item::Fixed(f) => match f {
                Fixed::ShortMonthName | Fixed::LongMonthName => mo = true,
                Fixed::UpperAmPm | Fixed::LowerAmPm => ampm = true,
                Fixed::RFC3339 | Fixed::RFC2822 => return (Some(Level::Minute), true),
                Fixed::TimezoneOffset
                | Fixed::TimezoneOffsetColon
                | Fixed::TimezoneOffsetColonZ
                | Fixed::TimezoneOffsetZ
                | Fixed::TimezoneOffsetDoubleColon
                | Fixed::TimezoneOffsetTripleColon => off = true,
                _ => {}
            },
            _ => {}
        }
    }
    let hour = h || (h12 && ampm);
    let level = if !y {
        None
    } else if !(ord || mo && d) {
        Some(if mo { Level::Month } else { Level::Year })
    } else if !hour {
        Some(Level::Day)
    } else if !mi {
        Some(Level::Hour)
    } else {
        Some(Level::Minute)
    };
    let exact = off && level >= Some(Level::Minute);
    (level, exact)
}

fn missing_fields(have: Option<Level>, need: Level) -> String {
    let names = [
        (Level::Year, "year (`%Y`)"),
        (Level::Month, "month (`%m`)"),
        (Level::Day, "day (`%d`)"),
        (Level::Hour, "hour (`%H`)"),
        (Level::Minute, "minute (`%M`)"),
    ];
    let missing: Vec<&str> = names
        .iter()
        .filter(|(l, _)| have.is_none_or(|h| *l > h) && *l <= need)
        .map(|(_, n)| *n)
        .collect();
    missing.join(", ")
}

/// Whether the definition's zone changes its UTC offset during a year.
fn has_dst(t: &TimePartitions) -> bool {
    let year = t.start.year();
    let at = |m: u32| {
        t.tz.with_ymd_and_hms(year, m, 1, 12, 0, 0)
            .single()
            .map(|d| d.offset().fix().local_minus_utc())
    };
    at(1) != at(7)
}

/// Up to `cap` partitions of `def`, for collision checks: every static
/// key, the first windows of a time definition, products for multi.
fn sample_refs(def: &PartitionsDef, cap: usize) -> Vec<PartitionRef> {
    fn one(def: &PartitionsDef, cap: usize) -> Vec<PartitionRef> {
        match def {
            PartitionsDef::Static(s) => s
                .keys()
                .iter()
                .take(cap)
                .map(|k| PartitionRef {
                    key: k.clone(),
                    dims: vec![],
                    window: None,
                })
                .collect(),
            PartitionsDef::Time(t) => (0..cap as i64)
                .map_while(|i| {
                    let key = t.key(i)?;
                    let (s, e) = t.window(i)?;
                    Some(PartitionRef {
                        key,
                        dims: vec![],
                        window: Some((s.fixed_offset(), e.fixed_offset())),
                    })
                })
                .collect(),
            _ => vec![],
        }
    }
    match def {
        PartitionsDef::Multi(m) => {
            let per = (cap as f64).sqrt() as usize;
            let a = one(&m.dims[0].1, per);
            let b = one(&m.dims[1].1, per);
            let mut out = Vec::with_capacity(a.len() * b.len());
            for x in &a {
                for y in &b {
                    out.push(PartitionRef {
                        key: crate::partitions::MultiPartitions::join(&x.key, &y.key),
                        dims: vec![
                            (m.dims[0].0.clone(), x.key.clone()),
                            (m.dims[1].0.clone(), y.key.clone()),
                        ],
                        window: x.window.or(y.window),
                    });
                }
            }
            out
        }
        d => one(d, cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, FixedOffset};
    use std::sync::Arc;

    fn t(s: &str) -> PathTemplate {
        PathTemplate::parse(s).unwrap()
    }

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn time_def(schedule: Schedule, start: &str) -> PartitionsDef {
        PartitionsDef::Time(
            TimePartitions::new(schedule, chrono_tz::UTC, None, start, None, 0).unwrap(),
        )
    }

    fn daily() -> PartitionsDef {
        time_def(Schedule::Daily { hour: 0, minute: 0 }, "2024-01-01")
    }

    fn monthly() -> PartitionsDef {
        time_def(
            Schedule::Monthly {
                day: 1,
                hour: 0,
                minute: 0,
            },
            "2024-01-01",
        )
    }

    fn statics(keys: &[&str]) -> PartitionsDef {
        PartitionsDef::Static(crate::partitions::StaticPartitions::new(
            keys.iter().map(|k| k.to_string()).collect(),
        ))
    }

    fn multi(a: PartitionsDef, b: PartitionsDef) -> PartitionsDef {
        PartitionsDef::Multi(crate::partitions::MultiPartitions {
            dims: [
                ("date".into(), Arc::new(a)),
                ("station".into(), Arc::new(b)),
            ],
        })
    }

    #[test]
    fn monthly_layout_of_a_real_pipeline() {
        let tpl = t("{start:%Y}/{start:%m}/{start:%Y%m}_30min.{ext}");
        let p = PartitionRef {
            key: "2024-03-01".into(),
            dims: vec![],
            window: Some((
                at("2024-03-01T00:00:00+00:00"),
                at("2024-04-01T00:00:00+00:00"),
            )),
        };
        assert_eq!(
            tpl.render("knmi/wind", Some(&p), Format::Parquet).unwrap(),
            "2024/03/202403_30min.parquet"
        );
        assert_eq!(tpl.check_asset(Some(&monthly())), Ok(()));
        // Monthly names are not enough for daily partitions.
        let e = tpl.check_asset(Some(&daily())).unwrap_err().to_string();
        assert!(e.contains("does not name the day (`%d`)"), "{e}");
    }

    #[test]
    fn flat_multi_layout() {
        let tpl = t("{partition}.{ext}");
        let p = PartitionRef {
            key: "2024-01-24|NL01485".into(),
            dims: vec![
                ("date".into(), "2024-01-24".into()),
                ("station".into(), "NL01485".into()),
            ],
            window: None,
        };
        assert_eq!(
            tpl.render("x", Some(&p), Format::Parquet).unwrap(),
            "2024-01-24|NL01485.parquet"
        );
        let def = multi(daily(), statics(&["NL01485", "NL01491"]));
        assert_eq!(tpl.check_asset(Some(&def)), Ok(()));
        // Naming both dimensions apart is fine; naming one is not.
        assert_eq!(
            t("{key}/{dim.station}/{start:%Y-%m-%d}.{ext}").check_asset(Some(&def)),
            Ok(())
        );
        let e = t("{key}/{dim.station}.{ext}")
            .check_asset(Some(&def))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dimension `date`"), "{e}");
        let e = t("{dim.region}.{ext}")
            .check_asset(Some(&def))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`date` and `station`"), "{e}");
    }

    #[test]
    fn keys_that_run_together_are_found() {
        let def = multi(statics(&["a", "a_b"]), statics(&["b_c", "c"]));
        let e = t("{dim.date}_{dim.station}")
            .check_asset(Some(&def))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`a|b_c` and `a_b|c`"), "{e}");
        assert_eq!(
            t("{dim.date}/{dim.station}").check_asset(Some(&def)),
            Ok(())
        );
    }

    #[test]
    fn placeholders_that_cannot_apply() {
        let e = t("{key}/{partition}.{ext}")
            .check_asset(None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not partitioned"), "{e}");
        assert_eq!(t("{key}.{ext}").check_asset(None), Ok(()));
        let e = t("{key}.{ext}")
            .check_asset(Some(&daily()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("names no part of the daily time window"), "{e}");
        let e = t("{key}/{start:%Y}.{ext}")
            .check_asset(Some(&statics(&["a"])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no time window"), "{e}");
        let e = t("{key}.{ext}")
            .check_asset(Some(&statics(&["a"])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("every partition would share"), "{e}");
    }

    #[test]
    fn time_coverage() {
        let hourly = time_def(Schedule::Hourly { minute: 0 }, "2024-01-01-00:00");
        assert_eq!(t("{start:%Y/%m/%d/%H}").check_asset(Some(&hourly)), Ok(()));
        assert_eq!(t("{start:%Y-%j-%H}").check_asset(Some(&hourly)), Ok(()));
        assert_eq!(t("{start:%s}").check_asset(Some(&hourly)), Ok(()));
        let e = t("{start:%m/%d/%H}")
            .check_asset(Some(&hourly))
            .unwrap_err()
            .to_string();
        assert!(e.contains("year (`%Y`)"), "{e}");
        assert_eq!(t("{end:%Y%m%d}").check_asset(Some(&daily())), Ok(()));
        // A repeated hour at the end of daylight saving time.
        let ams = PartitionsDef::Time(
            TimePartitions::new(
                Schedule::Hourly { minute: 0 },
                chrono_tz::Europe::Amsterdam,
                None,
                "2024-01-01-00:00",
                None,
                0,
            )
            .unwrap(),
        );
        let e = t("{start:%Y%m%d%H}")
            .check_asset(Some(&ams))
            .unwrap_err()
            .to_string();
        assert!(e.contains("daylight saving"), "{e}");
        assert_eq!(t("{start:%Y%m%d%H%M%z}").check_asset(Some(&ams)), Ok(()));
        assert_eq!(t("{partition}").check_asset(Some(&ams)), Ok(()));
    }

    #[test]
    fn parse_errors_are_located() {
        let e = PathTemplate::parse("{key}/{partiton}.{ext}").unwrap_err();
        assert_eq!(e.range, 6..16);
        assert!(e.help.unwrap().contains("did you mean `{partition}`"));
        let e = PathTemplate::parse("{strat:%Y}").unwrap_err();
        assert!(e.help.unwrap().contains("did you mean `{start:%Y}`"));
        let e = PathTemplate::parse("{key}/{start:%Q}").unwrap_err();
        assert_eq!(e.range, 6..16);
        assert!(
            e.message.contains("invalid strftime format `%Q`"),
            "{}",
            e.message
        );
        assert!(PathTemplate::parse("{key").is_err());
        assert!(PathTemplate::parse("a}").is_err());
        assert!(PathTemplate::parse("/{key}").is_err());
        assert!(PathTemplate::parse("../{key}").is_err());
        assert!(PathTemplate::parse("{key}//{partition}").is_err());
        assert!(PathTemplate::parse("data.csv").is_err());
        assert_eq!(
            t("{{x}}/{key}").render("a", None, Format::Csv).unwrap(),
            "{x}/a"
        );
    }

    #[test]
    fn file_format_drops_the_dot() {
        assert_eq!(
            t("{key}.{ext}").render("a/b", None, Format::File).unwrap(),
            "a/b"
        );
        assert_eq!(
            t("{key}.{ext}").render("a/b", None, Format::Jsonl).unwrap(),
            "a/b.jsonl"
        );
    }

    proptest::proptest! {
        #[test]
        fn hostile_keys_never_escape(key in proptest::arbitrary::any::<String>(), dim in "[./\\\\%a]{1,6}") {
            let p = PartitionRef {
                key: format!("{key}|{dim}"),
                dims: vec![("date".into(), key.clone()), ("station".into(), dim.clone())],
                window: None,
            };
            for tpl in ["{partition}.{ext}", "{key}/{dim.date}/{dim.station}", "x{dim.date}{dim.station}"] {
                if let Ok(path) = t(tpl).render("a/b", Some(&p), Format::Csv) {
                    let full = std::path::Path::new("/base").join(&path);
                    proptest::prop_assert!(full.starts_with("/base"));
                    proptest::prop_assert!(std::path::Path::new(&path)
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_))));
                    proptest::prop_assert!(!path.split('/').any(|c| c == ".." || c == "."));
                }
            }
        }
    }
}
