//! Partitions definitions: named (`[partitions.NAME]`) or inline, time
//! (hourly … cron), static, dynamic and multi. Plain definitions are
//! validated before multi ones, so a multi dimension may name them.

use std::collections::HashMap;
use std::sync::Arc;

use toml::de::DeValue;

use crate::diag::{Diagnostic, Diagnostics, FileId, Kind, Span, suggest};
use crate::load::{Reader, Str, Value};
use crate::model::{AssetPartitions, NamedPartitions};
use crate::partitions::time::{self, Schedule, TimeDefError, TimePartitions};
use crate::partitions::{MultiPartitions, PartitionsDef, StaticPartitions, check_key};

use super::entries::FileDefaults;
use super::fields::{required, same_variable, table_of};
use super::{Entry, Validator};

pub(crate) const PARTITION_TYPES: &[&str] = &[
    "hourly", "daily", "weekly", "monthly", "cron", "static", "dynamic", "multi",
];

/// How far `end_offset` (of a time partitions definition) and a
/// `time_window` mapping's offsets may move, in windows, either way.
/// Far more than any schedule needs (27 years of days, a year of hours), and
/// small enough that arithmetic on window numbers never overflows.
pub const MAX_WINDOW_OFFSET: i64 = 10_000;

/// Reads an offset counted in windows, bounded by [`MAX_WINDOW_OFFSET`].
/// `Err(())` after reporting one out of range.
pub(super) fn window_offset(
    r: &Reader<'_, '_>,
    key: &str,
    what: &str,
    d: &mut Diagnostics,
) -> Result<i64, ()> {
    match r.int(key, d) {
        Some((n, s)) if !(-MAX_WINDOW_OFFSET..=MAX_WINDOW_OFFSET).contains(&n) => {
            d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!(
                        "`{key}` of {what} must be between -{MAX_WINDOW_OFFSET} and {MAX_WINDOW_OFFSET} windows, found {n}"
                    ),
                )
                .at(&s, "out of range")
                .help(format!(
                    "an offset moves by whole partitions; {MAX_WINDOW_OFFSET} is far more than any schedule needs (27 years of days, over a year of hours) and keeps the arithmetic on window numbers from overflowing"
                )),
            );
            Err(())
        }
        Some((n, _)) => Ok(n),
        None => Ok(0),
    }
}

/// The fields a partitions definition of type `ty` accepts (`None`: no such type).
pub(crate) fn partition_fields(ty: &str) -> Option<&'static [&'static str]> {
    // Each schedule adds an offset to the one before: hourly's fields are
    // the first seven, daily's the first eight.
    const TIME: &[&str] = &[
        "type",
        "start",
        "end",
        "timezone",
        "fmt",
        "end_offset",
        "minute_offset",
        "hour_offset",
        "day_offset",
    ];
    Some(match ty {
        "hourly" => &TIME[..7],
        "daily" => &TIME[..8],
        "weekly" | "monthly" => TIME,
        "cron" => &[
            "type",
            "cron",
            "start",
            "end",
            "timezone",
            "fmt",
            "end_offset",
        ],
        "static" => &["type", "keys"],
        "dynamic" => &["type"],
        "multi" => &["type", "dimensions"],
        _ => return None,
    })
}

/// Cron schedule `c` of `what`, or a located error; the help shows
/// `example` when the number of fields is wrong.
pub(super) fn cron_schedule(
    c: &Str,
    what: &str,
    example: &str,
    d: &mut Diagnostics,
) -> Option<croner::Cron> {
    match time::parse_cron(&c.value) {
        Ok(cron) => Some(cron),
        Err(e) => {
            d.push(
                Diagnostic::error(
                    Kind::BadCron,
                    format!("invalid cron schedule `{}` in {what}", c.value),
                )
                .at(&c.span, e)
                .help(if c.value.split_whitespace().count() == 5 {
                    "field ranges: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-6 or SUN-SAT".to_string()
                } else {
                    format!("use five fields: minute hour day-of-month month day-of-week, e.g. {example}")
                }),
            );
            None
        }
    }
}

/// An IANA time zone name of `what`, or a located error with a suggestion.
pub(super) fn time_zone(s: &Str, what: &str, d: &mut Diagnostics) -> Option<chrono_tz::Tz> {
    if let Ok(tz) = s.value.parse::<chrono_tz::Tz>() {
        return Some(tz);
    }
    let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect();
    d.push(
        Diagnostic::error(
            Kind::BadTimezone,
            format!("unknown time zone `{}` in {what}", s.value),
        )
        .at(&s.span, "not an IANA time zone")
        .help(
            match crate::diag::did_you_mean(&s.value, names.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => {
                    "use an IANA name such as `UTC`, `Europe/Berlin` or `America/New_York`".into()
                }
            },
        ),
    );
    None
}

impl Validator<'_> {
    /// A partitions definition, named (`name`) or inline.
    pub(super) fn partitions_def(
        &mut self,
        file: FileId,
        value: &Value<'_>,
        name: Option<&str>,
        what: &str,
        allow_multi: bool,
    ) -> Option<Arc<PartitionsDef>> {
        let span = Span::new(file, value.span());
        let t = table_of(
            file,
            value,
            what,
            "expected a table with `type`",
            self.diags,
        )?;
        let type_str = match t.get("type") {
            Some(v) => match v.get_ref().as_str() {
                Some(s) => Some((s.to_string(), Span::new(file, v.span()))),
                None => {
                    self.diags.push(
                        Diagnostic::error(
                            Kind::WrongType,
                            format!("`type` of {what} must be a string"),
                        )
                        .at(&Span::new(file, v.span()), "expected a string"),
                    );
                    return None;
                }
            },
            None => None,
        };
        let Some((ty, ty_span)) = type_str else {
            self.diags.push(
                Diagnostic::error(Kind::MissingField, format!("{what} has no `type`"))
                    .at(&span, "missing `type`")
                    .help(format!(
                        "add `type = ` one of {}",
                        crate::diag::list_names(PARTITION_TYPES)
                    )),
            );
            return None;
        };
        let fields: &[&str] = match partition_fields(&ty) {
            Some(f) => f,
            None => {
                self.diags.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!("unknown partitions type `{ty}` in {what}"),
                    )
                    .at(&ty_span, "unknown type")
                    .help(suggest(&ty, PARTITION_TYPES, "valid types")),
                );
                return None;
            }
        };
        let r = Reader::new(file, t, what).known_fields(fields, self.diags);
        match ty.as_str() {
            "static" => {
                let keys = r.str_array("keys", self.diags);
                let help = Some("add `keys = [\"a\", \"b\"]`");
                let keys = required(keys, &r, "keys", what, &span, help, self.diags)?;
                let mut seen: HashMap<&str, &Span> = HashMap::new();
                let mut ok = true;
                for k in &keys {
                    if let Some(problem) = check_key(&k.value, false) {
                        self.diags.push(
                            Diagnostic::error(Kind::InvalidKey, problem).at(&k.span, "invalid key"),
                        );
                        ok = false;
                    } else if let Some(first) = seen.insert(&k.value, &k.span) {
                        self.diags.push(
                            Diagnostic::error(
                                Kind::Duplicate,
                                format!("partition key `{}` is listed twice in {what}", k.value),
                            )
                            .at(&k.span, "listed again here")
                            .also(first, "first listed here"),
                        );
                        ok = false;
                    }
                }
                if keys.is_empty() {
                    self.diags.push(
                        Diagnostic::error(Kind::InvalidValue, format!("{what} has no keys"))
                            .at(&r.span_of(r.get("keys").unwrap()), "empty list"),
                    );
                    ok = false;
                }
                ok.then(|| {
                    Arc::new(PartitionsDef::Static(StaticPartitions::new(
                        keys.into_iter().map(|k| k.value).collect(),
                    )))
                })
            }
            "dynamic" => match name {
                Some(n) => Some(Arc::new(PartitionsDef::Dynamic {
                    name: n.to_string(),
                })),
                None => {
                    self.diags.push(
                        Diagnostic::error(Kind::InvalidValue, format!("dynamic partitions in {what} must be named"))
                            .at(&span, "inline dynamic definition")
                            .help("define it as `[partitions.NAME] type = \"dynamic\"` and refer to it by name; its keys are managed with `dg partitions add NAME KEY…`"),
                    );
                    None
                }
            },
            "multi" => self.multi_def(&r, what, allow_multi, &span),
            _ => self.time_def(&r, &ty, what, &span),
        }
    }

    fn multi_def(
        &mut self,
        r: &Reader<'_, '_>,
        what: &str,
        allow_multi: bool,
        span: &Span,
    ) -> Option<Arc<PartitionsDef>> {
        if !allow_multi {
            self.diags.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("{what} cannot be multi-partitioned"),
                )
                .at(span, "multi inside multi")
                .help(
                    "a multi definition has exactly two dimensions, each a time, static or dynamic definition",
                ),
            );
            return None;
        }
        let dims = r.table("dimensions", self.diags);
        let help = Some("add `dimensions = { date = \"daily\", region = \"region\" }`");
        let (dims, dims_value) = required(dims, r, "dimensions", what, span, help, self.diags)?;
        if dims.len() != 2 {
            self.diags.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!(
                        "{what} must have exactly two dimensions, found {}",
                        dims.len()
                    ),
                )
                .at(&r.span_of(dims_value), {
                    let names: Vec<&str> = dims.iter().map(|(k, _)| k.get_ref().as_ref()).collect();
                    format!("dimensions {}", crate::diag::list_names(&names))
                })
                .help("a multi definition has exactly two dimensions, each a time, static or dynamic definition"),
            );
            return None;
        }
        // Each dimension becomes `DG_PARTITION_<DIM>`: the two must differ.
        let mut keys: Vec<(String, Span)> = dims
            .iter()
            .map(|(k, _)| (k.get_ref().to_string(), Span::new(r.file, k.span())))
            .collect();
        keys.sort_by_key(|(_, s)| s.range.start);
        if let [(a, a_span), (b, b_span)] = keys.as_slice() {
            let var = crate::names::env_name(a);
            if var == crate::names::env_name(b) {
                self.diags.push(same_variable(
                    "dimensions",
                    what,
                    (a, a_span),
                    (b, b_span),
                    &format!("DG_PARTITION_{var}"),
                    "a step sees each dimension as `DG_PARTITION_<DIM>`, upper-cased with other characters written `_`; rename one of them".into(),
                ));
            }
        }
        let mut out: Vec<(String, Arc<PartitionsDef>)> = Vec::new();
        for (k, v) in dims.iter() {
            let dim_name = k.get_ref().to_string();
            let dim_what = format!("dimension `{dim_name}` of {what}");
            let def = match v.get_ref() {
                DeValue::String(s) => self.named_ref(s, &r.span_of(v), &dim_what),
                _ => self.partitions_def(r.file, v, None, &dim_what, false),
            };
            if let Some(d) = def {
                if matches!(*d, PartitionsDef::Multi(_)) {
                    self.diags.push(
                        Diagnostic::error(
                            Kind::InvalidValue,
                            format!("{dim_what} cannot be multi-partitioned"),
                        )
                        .at(&r.span_of(v), "a multi definition"),
                    );
                    continue;
                }
                if let PartitionsDef::Static(s) = &*d {
                    for key in s.keys() {
                        if let Some(problem) = check_key(key, true) {
                            self.diags.push(
                                Diagnostic::error(Kind::InvalidKey, problem)
                                    .at(&r.span_of(v), "in this dimension"),
                            );
                        }
                    }
                }
                out.push((dim_name, d));
            }
        }
        if out.len() != 2 {
            return None;
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let b = out.pop()?;
        let a = out.pop()?;
        Some(Arc::new(PartitionsDef::Multi(MultiPartitions {
            dims: [a, b],
        })))
    }

    /// The asset's `partitions` (or its file's default): a name or a
    /// definition inline. The flag says one was given but is invalid.
    pub(super) fn asset_partitions(
        &mut self,
        e: &Entry<'_, '_>,
        r: &Reader<'_, '_>,
        what: &str,
        defaults: Option<&FileDefaults<'_, '_>>,
    ) -> (Option<AssetPartitions>, bool) {
        let partitions_value = r
            .get("partitions")
            .or_else(|| defaults.and_then(|fd| fd.partitions));
        let partitions = match partitions_value {
            None => None,
            Some(v) => match v.get_ref() {
                DeValue::String(name) => {
                    let name = name.to_string();
                    self.named_ref(&name, &r.span_of(v), what)
                        .map(|def| AssetPartitions {
                            def,
                            name: Some(name),
                        })
                }
                _ => self
                    .partitions_def(e.file, v, None, &format!("partitions of {what}"), true)
                    .map(|def| AssetPartitions { def, name: None }),
            },
        };
        let partitions_failed = partitions_value.is_some() && partitions.is_none();
        (partitions, partitions_failed)
    }

    pub(super) fn named_ref(
        &mut self,
        name: &str,
        span: &Span,
        what: &str,
    ) -> Option<Arc<PartitionsDef>> {
        if let Some(n) = self.named_partitions.get(name) {
            return Some(n.def.clone());
        }
        if self.failed_partitions.contains(name) {
            return None; // defined, but invalid: that error is already reported
        }
        if self.declared_partitions.iter().any(|n| n == name) {
            // Defined and not validated yet: only multi definitions come
            // later, and only a multi dimension can name one this early.
            self.diags.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("{what} cannot be multi-partitioned"),
                )
                .at(span, format!("`{name}` is a multi definition"))
                .help("a multi definition has exactly two dimensions, each a time, static or dynamic definition"),
            );
            return None;
        }
        let names: Vec<&str> = self
            .declared_partitions
            .iter()
            .map(String::as_str)
            .collect();
        self.diags.push(
            Diagnostic::error(
                Kind::UnknownReference,
                format!("{what} refers to unknown partitions `{name}`"),
            )
            .at(span, "not defined")
            .help(suggest(name, &names, "defined partitions")),
        );
        None
    }

    fn time_def(
        &mut self,
        r: &Reader<'_, '_>,
        ty: &str,
        what: &str,
        span: &Span,
    ) -> Option<Arc<PartitionsDef>> {
        let d = &mut *self.diags;
        // Whether every field read so far is valid; a bad one is reported
        // and replaced by its default, so that later fields are checked too.
        let mut ok = true;
        let schedule = time_schedule(r, ty, what, span, &mut ok, d)?;
        let tz = match r.str("timezone", d) {
            Some(s) => time_zone(&s, what, d).unwrap_or_else(|| {
                ok = false;
                chrono_tz::UTC
            }),
            None => chrono_tz::UTC,
        };
        let fmt = r.str("fmt", d);
        let end_offset = window_offset(r, "end_offset", what, d).unwrap_or_else(|()| {
            ok = false;
            0
        });
        let start = r.str("start", d);
        let help = format!("add `start = \"{}\"`", example_start(&schedule));
        let start = required(start, r, "start", what, span, Some(&help), d)?;
        let end = r.str("end", d);
        let fmt_used = fmt
            .as_ref()
            .map(|f| f.value.clone())
            .unwrap_or_else(|| schedule.default_fmt().to_string());
        let fields = TimeFields { fmt, start, end };
        match TimePartitions::new(
            schedule,
            tz,
            fields.fmt.as_ref().map(|f| f.value.clone()),
            &fields.start.value,
            fields.end.as_ref().map(|e| e.value.as_str()),
            end_offset,
        ) {
            Ok(t) => ok.then(|| Arc::new(PartitionsDef::Time(t))),
            Err(e) => {
                d.push(time_def_error(e, &fields, &fmt_used, r, what, span));
                None
            }
        }
    }
}

/// The schedule of a time partitions definition of type `ty`: its offsets
/// (one out of range is reported, clears `ok` and counts as its default) or
/// its `cron` (`None` when missing or invalid).
fn time_schedule(
    r: &Reader<'_, '_>,
    ty: &str,
    what: &str,
    span: &Span,
    ok: &mut bool,
    d: &mut Diagnostics,
) -> Option<Schedule> {
    let mut offset =
        |key: &str, lo: i64, hi: i64, default: i64, d: &mut Diagnostics| -> u32 {
            match r.int(key, d) {
                Some((n, s)) if n < lo || n > hi => {
                    d.push(
                        Diagnostic::error(
                            Kind::InvalidValue,
                            format!("`{key}` of {what} must be between {lo} and {hi}, found {n}"),
                        )
                        .at(&s, "out of range")
                        .help_opt((key == "day_offset" && ty == "monthly" && n > 28).then(|| {
                            "not every month has that day; use `type = \"cron\"` for such schedules"
                                .to_string()
                        })),
                    );
                    *ok = false;
                    default as u32
                }
                Some((n, _)) => n as u32,
                None => default as u32,
            }
        };
    let minute = offset("minute_offset", 0, 59, 0, d);
    let hour = offset("hour_offset", 0, 23, 0, d);
    Some(match ty {
        "hourly" => Schedule::Hourly { minute },
        "daily" => Schedule::Daily { hour, minute },
        "weekly" => Schedule::Weekly {
            weekday: offset("day_offset", 0, 6, 0, d),
            hour,
            minute,
        },
        "monthly" => Schedule::Monthly {
            day: offset("day_offset", 1, 28, 1, d),
            hour,
            minute,
        },
        _ => {
            let c = r.str("cron", d);
            let help = Some("add a five-field schedule, e.g. `cron = \"0 */6 * * *\"`");
            let c = required(c, r, "cron", what, span, help, d)?;
            Schedule::Cron {
                cron: Box::new(cron_schedule(&c, what, "`0 */6 * * *`", d)?),
                expr: c.value,
            }
        }
    })
}

/// The fields of a time partitions definition that its errors point at.
struct TimeFields {
    fmt: Option<Str>,
    start: Str,
    end: Option<Str>,
}

/// Why [`TimePartitions::new`] refused definition `what` (read by `r`, at
/// `span`; its keys written with `fmt_used`), at the field to blame.
fn time_def_error(
    e: TimeDefError,
    f: &TimeFields,
    fmt_used: &str,
    r: &Reader<'_, '_>,
    what: &str,
    span: &Span,
) -> Diagnostic {
    let write_like = || example_in(fmt_used).map(|ex| format!("write it like `{ex}`"));
    // Where `field` is written, else the definition.
    let field_or_def = |field: &Option<Str>| field.as_ref().map_or(span, |s| &s.span).clone();
    match e {
        TimeDefError::Fmt(m) => {
            let at = field_or_def(&f.fmt);
            Diagnostic::error(Kind::BadFormat, format!("invalid `fmt` in {what}: {m}")).at(&at, "this format").help(
                "use strftime codes that name the window down to its schedule, e.g. `%Y-%m-%d-%H:%M` for hourly",
            )
        }
        TimeDefError::Start(m) => {
            Diagnostic::error(Kind::BadDate, format!("invalid `start` in {what}: {m}"))
                .at(&f.start.span, "cannot be read with the format")
                .help_opt(write_like())
        }
        TimeDefError::Schedule(m) => {
            let at = r
                .get("cron")
                .map(|c| Span::new(span.file, c.span()))
                .unwrap_or_else(|| span.clone());
            Diagnostic::error(Kind::BadCron, format!("{what} has no partitions: {m}"))
                .at(&at, "never fires")
                .help("check the day-of-month and month fields: a date such as 30 February never comes")
        }
        TimeDefError::End(m) => {
            let at = field_or_def(&f.end);
            Diagnostic::error(Kind::BadDate, format!("invalid `end` in {what}: {m}"))
                .at(&at, "invalid end")
                .help_opt(
                    m.contains("does not match the format")
                        .then(write_like)
                        .flatten(),
                )
        }
    }
}

fn example_start(s: &Schedule) -> &'static str {
    match s {
        Schedule::Hourly { .. } | Schedule::Cron { .. } => "2024-01-01-00:00",
        _ => "2024-01-01",
    }
}

/// 2024-01-01 00:00 written with `fmt`, or `None` when `fmt` cannot write it.
fn example_in(fmt: &str) -> Option<String> {
    use std::fmt::Write;
    let t = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)?.and_hms_opt(0, 0, 0)?;
    let mut out = String::new();
    write!(out, "{}", t.format(fmt)).ok()?;
    Some(out)
}

impl Validator<'_> {
    /// Pass 2: the named definitions, plain ones first so that multi
    /// dimensions can name them, then kept in the order written.
    pub(super) fn partitions(&mut self, parts: &[Entry<'_, '_>]) {
        self.declared_partitions = parts.iter().map(|e| e.name.clone()).collect();

        let is_multi = |e: &Entry<'_, '_>| {
            matches!(e.value.get_ref(), DeValue::Table(t)
                if t.get("type").and_then(|v| v.get_ref().as_str()) == Some("multi"))
        };
        for e in parts
            .iter()
            .filter(|e| !is_multi(e))
            .chain(parts.iter().filter(|e| is_multi(e)))
        {
            let what = format!("partitions `{}`", e.name);
            match self.partitions_def(e.file, e.value, Some(&e.name), &what, true) {
                Some(def) => {
                    self.named_partitions
                        .insert(e.name.clone(), NamedPartitions { def });
                }
                None => {
                    self.failed_partitions.insert(e.name.clone());
                }
            }
        }
        // Keep definition order as written.
        let order: HashMap<&str, usize> = parts
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.as_str(), i))
            .collect();
        self.named_partitions
            .sort_by(|a, _, b, _| order.get(a.as_str()).cmp(&order.get(b.as_str())));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn nothing_defined_reads_well() {
        let src = "[assets.orders]\npartitions = \"daily\"\nshell = \"true\"\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::UnknownReference);
        assert_eq!(d.help.as_deref(), Some("defined partitions: none"));
    }

    #[test]
    fn time_definition_errors_point_at_their_field() {
        let src = "[partitions.tz]\ntype = \"daily\"\nstart = \"2024-01-01\"\ntimezone = \"Europe/Berln\"\n\n\
                   [partitions.date]\ntype = \"hourly\"\nstart = \"2024-01-01\"\n\n\
                   [partitions.cron]\ntype = \"cron\"\ncron = \"0 */6 * *\"\nstart = \"2024-01-01-00:00\"\n\n\
                   [partitions.fmt]\ntype = \"hourly\"\nstart = \"2024-01-01\"\nfmt = \"%Y-%m-%d\"\n";
        let c = check(&[("p.toml", src)]);
        assert_eq!(
            c.kinds(),
            [
                Kind::BadTimezone,
                Kind::BadDate,
                Kind::BadCron,
                Kind::BadFormat
            ]
        );
        let tz = c.located(Kind::BadTimezone, ("p.toml", "\"Europe/Berln\"", 0));
        assert_eq!(tz.help.as_deref(), Some("did you mean `Europe/Berlin`?"));
        let date = c.located(Kind::BadDate, ("p.toml", "\"2024-01-01\"", 1));
        assert_eq!(
            date.help.as_deref(),
            Some("write it like `2024-01-01-00:00`")
        );
        c.located(Kind::BadCron, ("p.toml", "\"0 */6 * *\"", 0));
        let fmt = c.located(Kind::BadFormat, ("p.toml", "\"%Y-%m-%d\"", 0));
        assert!(fmt.message.contains("too coarse"), "{}", fmt.message);
    }

    #[test]
    fn a_reference_to_an_invalid_definition_is_not_reported_again() {
        let src = "[partitions.broken]\ntype = \"daily\"\nstart = \"nope\"\n\n\
                   [partitions.m]\ntype = \"multi\"\n\
                   dimensions = { a = \"broken\", b = { type = \"static\", keys = [\"x\"] } }\n\n\
                   [assets.a]\npartitions = \"broken\"\nshell = \"true\"\n\n\
                   [assets.b]\npartitions = \"m\"\ndeps = [\"a\"]\nshell = \"true\"\n";
        let c = check(&[("a.toml", src)]);
        assert_eq!(c.kinds(), [Kind::BadDate]);
        assert_eq!(c.primary(&c.diags.items[0]), c.at("a.toml", "\"nope\"", 0));
        assert!(c.defs.is_none());
    }

    #[test]
    fn a_dimension_naming_a_multi_definition() {
        // `outer` is validated before `inner` (both multi, in file order).
        let src = "[partitions.outer]\ntype = \"multi\"\n\
                   dimensions = { a = \"inner\", b = \"region\" }\n\n\
                   [partitions.inner]\ntype = \"multi\"\n\
                   dimensions = { x = \"region\", y = { type = \"static\", keys = [\"y\"] } }\n\n\
                   [partitions.region]\ntype = \"static\"\nkeys = [\"us\"]\n";
        let c = check(&[("a.toml", src)]);
        let message = "dimension `a` of partitions `outer` cannot be multi-partitioned";
        c.expect(Kind::InvalidValue, message, ("a.toml", "\"inner\"", 0));
    }

    #[test]
    fn out_of_range_numbers_name_their_owner() {
        let src = "[partitions.mo]\ntype = \"monthly\"\nstart = \"2024-01-01\"\nday_offset = 31\n\n\
                   [assets.a]\nshell = \"true\"\nretries = -1\n";
        let c = check(&[("a.toml", src)]);
        let messages: Vec<&str> = c.diags.items.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`day_offset` of partitions `mo` must be between 1 and 28, found 31",
                "`retries` of asset `a` must be between 0 and 100, found -1",
            ]
        );
        assert_eq!(c.primary(&c.diags.items[0]), c.at("a.toml", "31", 0));
        assert_eq!(c.primary(&c.diags.items[1]), c.at("a.toml", "-1", 0));
    }

    #[test]
    fn bad_partitions_type_and_static_duplicates() {
        let src = "[partitions.a]\ntype = \"dayly\"\nstart = \"2024-01-01\"\n\n\
                   [partitions.region]\ntype = \"static\"\nkeys = [\"us\", \"eu\", \"eu\"]\n";
        let c = check(&[("p.toml", src)]);
        let ty = c.located(Kind::InvalidValue, ("p.toml", "\"dayly\"", 0));
        assert_eq!(ty.help.as_deref(), Some("did you mean `daily`?"));
        let dup = c.located(Kind::Duplicate, ("p.toml", "\"eu\"", 1));
        assert_eq!(c.secondary(dup, 0), c.at("p.toml", "\"eu\"", 0));
    }

    #[test]
    fn multi_with_three_dimensions() {
        let src = "[partitions.m]\ntype = \"multi\"\n\
                   dimensions = { a = { type = \"static\", keys = [\"x\"] }, b = { type = \"static\", keys = [\"y\"] }, c = { type = \"static\", keys = [\"z\"] } }\n";
        let c = check(&[("p.toml", src)]);
        let d = c.only(Kind::InvalidValue);
        assert_eq!(
            d.message,
            "partitions `m` must have exactly two dimensions, found 3"
        );
        let (file, range) = c.primary(d);
        assert_eq!(file, "defs/p.toml");
        assert!(src[range].starts_with("{ a = "));
    }

    #[test]
    fn dimensions_that_share_an_environment_variable_are_an_error() {
        let src = "[partitions.m]\ntype = \"multi\"\n\
                   dimensions = { \"a-b\" = { type = \"static\", keys = [\"x\"] }, a_b = { type = \"static\", keys = [\"y\"] } }\n";
        let c = check(&[("a.toml", src)]);
        let message = "dimensions `a-b` and `a_b` of partitions `m` both become `DG_PARTITION_A_B`";
        let d = c.expect(Kind::Duplicate, message, ("a.toml", "a_b", 0));
        assert_eq!(c.secondary(d, 0), c.at("a.toml", "\"a-b\"", 0));
        assert!(c.defs.is_none());
        // Inline on an asset too.
        let src = "[assets.x]\nshell = \"true\"\n\
                   partitions = { type = \"multi\", dimensions = { Region = { type = \"static\", keys = [\"x\"] }, region = { type = \"static\", keys = [\"y\"] } } }\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::Duplicate);
        assert!(d.message.contains("`DG_PARTITION_REGION`"), "{}", d.message);
    }
}
