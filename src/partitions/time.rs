//! Time-window partitions: windows between consecutive ticks of a schedule.
//!
//! Semantics follow Dagster 1.13: a key is its window's start formatted with
//! `fmt` in the definition's time zone; the first window starts at the first
//! tick at or after `start`; `end` is exclusive; the last window is the last
//! one that has ended by *now*, moved by `end_offset`.

use chrono::format::{Item, Parsed, StrftimeItems};
use std::sync::Mutex;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// When windows start.
#[derive(Debug, Clone)]
pub enum Schedule {
    Hourly {
        minute: u32,
    },
    Daily {
        hour: u32,
        minute: u32,
    },
    /// `weekday` 0 = Sunday.
    Weekly {
        weekday: u32,
        hour: u32,
        minute: u32,
    },
    Monthly {
        day: u32,
        hour: u32,
        minute: u32,
    },
    Cron {
        expr: String,
        cron: Box<croner::Cron>,
    },
}

impl Schedule {
    pub fn type_name(&self) -> &'static str {
        match self {
            Schedule::Hourly { .. } => "hourly",
            Schedule::Daily { .. } => "daily",
            Schedule::Weekly { .. } => "weekly",
            Schedule::Monthly { .. } => "monthly",
            Schedule::Cron { .. } => "cron",
        }
    }

    /// The schedule as a five-field cron expression.
    pub fn cron_expr(&self) -> String {
        match self {
            Schedule::Hourly { minute } => format!("{minute} * * * *"),
            Schedule::Daily { hour, minute } => format!("{minute} {hour} * * *"),
            Schedule::Weekly {
                weekday,
                hour,
                minute,
            } => format!("{minute} {hour} * * {weekday}"),
            Schedule::Monthly { day, hour, minute } => format!("{minute} {hour} {day} * *"),
            Schedule::Cron { expr, .. } => expr.clone(),
        }
    }

    /// The default key format: minutes for sub-daily schedules, else dates.
    pub fn default_fmt(&self) -> &'static str {
        match self {
            Schedule::Hourly { .. } => "%Y-%m-%d-%H:%M",
            Schedule::Cron { cron, .. } if sub_daily(cron) => "%Y-%m-%d-%H:%M",
            _ => "%Y-%m-%d",
        }
    }
}

fn sub_daily(cron: &croner::Cron) -> bool {
    let pattern = cron.as_str();
    let mut fields = pattern.split_whitespace();
    let minute = fields.next().unwrap_or("0");
    let hour = fields.next().unwrap_or("0");
    let single = |f: &str| f.chars().all(|c| c.is_ascii_digit());
    !(single(minute) && single(hour))
}

/// "a" or "an" before a schedule name ("an hourly", "a daily").
fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ if word == "hourly" => "an",
        _ => "a",
    }
}

/// The five cron fields: name and the values croner accepts.
const CRON_FIELDS: [(&str, u32, u32, &str); 5] = [
    ("minute", 0, 59, "0-59"),
    ("hour", 0, 23, "0-23"),
    ("day-of-month", 1, 31, "1-31"),
    ("month", 1, 12, "1-12 or JAN-DEC"),
    ("day-of-week", 0, 7, "0-6 or SUN-SAT (7 is also Sunday)"),
];

fn croner_parse(expr: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::new().parse(expr)
}

/// Parses a five-field cron expression.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
            fields.len()
        ));
    }
    croner_parse(expr).map_err(|e| explain_cron_error(&fields, &e))
}

/// Names the field croner rejected and its valid values. croner reports
/// what is wrong ("Number out of bounds.") but not where, so each field is
/// tried alone, the others set to `*`.
fn explain_cron_error(fields: &[&str], err: &croner::errors::CronError) -> String {
    let culprit = (0..fields.len()).find(|&i| {
        let probe: Vec<&str> = (0..fields.len())
            .map(|j| if j == i { fields[j] } else { "*" })
            .collect();
        croner_parse(&probe.join(" ")).is_err()
    });
    let Some(i) = culprit else {
        // Only the combination fails (or croner changed): say what it said.
        return format!("croner rejects it: {}", croner_message(err, ""));
    };
    let (name, lo, hi, valid) = CRON_FIELDS[i];
    let text = fields[i];
    // A number outside the field's range, not counting steps (`*/90`) and
    // nth-weekday specifiers (`5#3`), which croner checks on their own.
    let out_of_range = text.split(',').find_map(|item| {
        let values = item.split(['/', '#']).next().unwrap_or("");
        values
            .split('-')
            .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()))
            .find(|v| {
                v.parse::<u64>()
                    .is_ok_and(|n| n < lo as u64 || n > hi as u64)
            })
            .map(str::to_string)
    });
    // `5-1`: croner says "Range out of bounds"; it runs backwards.
    let backwards = text.split(',').find_map(|item| {
        let range = item.split(['/', '#']).next().unwrap_or("");
        let (a, b) = range.split_once('-')?;
        (a.parse::<u32>().ok()? > b.parse::<u32>().ok()?).then(|| range.to_string())
    });
    match (out_of_range, backwards) {
        (Some(v), _) => format!("{name} `{v}` is out of range: the {name} field takes {valid}"),
        (None, Some(r)) => {
            format!("the {name} range `{r}` runs backwards; write the smaller value first")
        }
        (None, None) => format!(
            "invalid {name} field `{text}`: {}; the {name} field takes {valid}",
            croner_message(err, text)
        ),
    }
}

/// croner's message without its prefix and final period, lower-cased:
/// "Component error: Invalid range syntax." → "invalid range syntax".
/// `text` is the field as written (croner upper-cases it).
fn croner_message(err: &croner::errors::CronError, text: &str) -> String {
    use croner::errors::CronError as E;
    let raw = match err {
        E::ComponentError(m) | E::InvalidPattern(m) | E::IllegalCharacters(m) => m.clone(),
        other => other.to_string(),
    };
    let raw = raw.trim().trim_end_matches('.');
    // "CronPattern contains illegal character 'F' in part 'FOO'"
    if let Some(rest) = raw.split("illegal character '").nth(1)
        && let Some(c) = rest.chars().next()
    {
        let c = text
            .chars()
            .find(|t| t.to_ascii_uppercase() == c)
            .unwrap_or(c);
        return format!("illegal character `{c}`");
    }
    let mut chars = raw.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "invalid".into(),
    }
}

/// What is wrong with a time definition, by field, so the validator can point at it.
#[derive(Debug, PartialEq, Eq)]
pub enum TimeDefError {
    Fmt(String),
    Start(String),
    End(String),
}

/// How tick `i` is found. Every built-in schedule gets O(1) arithmetic;
/// other cron schedules are enumerated once and cached.
#[derive(Debug)]
enum Mode {
    /// Every `step` seconds from the first tick: hourly schedules in zones
    /// whose UTC offsets differ by whole hours (nearly all of them).
    Fixed { step: i64 },
    /// One tick every `step` days (1: daily, 7: weekly) at a local time.
    Days {
        first: NaiveDate,
        step: i64,
        time: NaiveTime,
    },
    /// One tick a month on `day` at a local time; `first` = year * 12 + month0.
    Months {
        first: i64,
        day: u32,
        time: NaiveTime,
    },
    /// Any other schedule: ticks enumerated on demand.
    Table(Box<Mutex<TickTable>>),
}

#[derive(Debug)]
struct TickTable {
    cron: croner::Cron,
    ticks: Vec<i64>,
    /// The naive time to continue enumerating from.
    next: Option<NaiveDateTime>,
}

/// A validated time-window partitions definition.
#[derive(Debug)]
pub struct TimePartitions {
    pub schedule: Schedule,
    pub tz: Tz,
    pub fmt: String,
    /// `start` as written, in `tz`.
    pub start: NaiveDateTime,
    /// `end` as written (exclusive), in `tz`.
    pub end: Option<NaiveDateTime>,
    pub end_offset: i64,
    items: Vec<Item<'static>>,
    /// Whether the schedule ticks every hour of the day (hour field `*`):
    /// then both occurrences of a repeated fall-back hour are ticks and the
    /// second one's key carries its UTC offset.
    all_hours: bool,
    mode: Mode,
    /// The first tick (Unix seconds).
    first: i64,
    /// Number of windows that end at or before `end`.
    end_count: Option<i64>,
}

impl TimePartitions {
    pub fn new(
        schedule: Schedule,
        tz: Tz,
        fmt: Option<String>,
        start: &str,
        end: Option<&str>,
        end_offset: i64,
    ) -> Result<Self, TimeDefError> {
        let fmt = fmt.unwrap_or_else(|| schedule.default_fmt().to_string());
        check_fmt(&fmt).map_err(TimeDefError::Fmt)?;
        let items = StrftimeItems::new(&fmt)
            .parse_to_owned()
            .map_err(|e| TimeDefError::Fmt(e.to_string()))?;
        let start_at = parse_time(start, &fmt).map_err(|e| {
            TimeDefError::Start(format!("`{start}` does not match the format `{fmt}`: {e}"))
        })?;
        let end_at = match end {
            Some(e) => Some(parse_time(e, &fmt).map_err(|err| {
                TimeDefError::End(format!("`{e}` does not match the format `{fmt}`: {err}"))
            })?),
            None => None,
        };
        if let Some(e) = end_at
            && e <= start_at
        {
            return Err(TimeDefError::End(format!(
                "`end` must be after `start` ({start})"
            )));
        }
        let cron = match &schedule {
            Schedule::Cron { cron, .. } => (**cron).clone(),
            other => parse_cron(&other.cron_expr()).expect("built-in schedules are valid cron"),
        };
        let all_hours = cron.as_str().split_whitespace().nth(1) == Some("*");
        let start_instant = localize(&tz, start_at).timestamp();
        let (mode, first) = build_mode(&schedule, &tz, cron, all_hours, start_at, start_instant);
        let mut def = TimePartitions {
            schedule,
            tz,
            fmt,
            start: start_at,
            end: end_at,
            end_offset,
            items,
            all_hours,
            mode,
            first,
            end_count: None,
        };
        if let Some(e) = end_at {
            let e = localize(&def.tz, e).timestamp();
            def.end_count = Some(def.floor_index(e).max(0));
        }
        def.check_fmt_resolution()?;
        Ok(def)
    }

    /// The instant of tick `i` (Unix seconds); tick 0 is the first window's start.
    pub fn tick(&self, i: i64) -> Option<i64> {
        match &self.mode {
            Mode::Fixed { step } => i.checked_mul(*step)?.checked_add(self.first),
            Mode::Days { first, step, time } => {
                let date =
                    first.checked_add_signed(chrono::Duration::try_days(i.checked_mul(*step)?)?)?;
                Some(resolve_one(&self.tz, date.and_time(*time)).timestamp())
            }
            Mode::Months { first, day, time } => {
                let ym = first.checked_add(i)?;
                let date = NaiveDate::from_ymd_opt(
                    i32::try_from(ym.div_euclid(12)).ok()?,
                    ym.rem_euclid(12) as u32 + 1,
                    *day,
                )?;
                Some(resolve_one(&self.tz, date.and_time(*time)).timestamp())
            }
            Mode::Table(t) => {
                let i = usize::try_from(i).ok()?;
                let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                t.extend_to_len(&self.tz, self.all_hours, i + 1);
                t.ticks.get(i).copied()
            }
        }
    }

    /// The largest `i` with `tick(i) <= t`; negative when `t` is before the first tick.
    pub fn floor_index(&self, t: i64) -> i64 {
        let mut k = match &self.mode {
            Mode::Fixed { step } => return (t - self.first).div_euclid(*step),
            Mode::Days { first, step, .. } => {
                let local = self.local(t).date_naive();
                (local - *first).num_days().div_euclid(*step)
            }
            Mode::Months { first, .. } => {
                let local = self.local(t);
                local.year() as i64 * 12 + local.month0() as i64 - first
            }
            Mode::Table(tab) => {
                let mut tab = tab.lock().unwrap_or_else(|e| e.into_inner());
                tab.extend_past(&self.tz, self.all_hours, t);
                return tab.ticks.partition_point(|&x| x <= t) as i64 - 1;
            }
        };
        // Local-time arithmetic can be one off around DST changes: settle it.
        while self.tick(k).is_some_and(|x| x > t) {
            k -= 1;
        }
        while self.tick(k + 1).is_some_and(|x| x <= t) {
            k += 1;
        }
        k
    }

    /// Number of partitions at `now`: windows ended by `now`, moved by
    /// `end_offset`, never past `end`.
    pub fn count(&self, now: i64) -> i64 {
        let closed = self.floor_index(now).max(0);
        let n = (closed + self.end_offset).max(0);
        match self.end_count {
            Some(e) => n.min(e),
            None => n,
        }
    }

    /// The window `[start, end)` of partition `i`.
    pub fn window(&self, i: i64) -> Option<(DateTime<Tz>, DateTime<Tz>)> {
        Some((self.at(self.tick(i)?), self.at(self.tick(i + 1)?)))
    }

    /// The key of partition `i`.
    pub fn key(&self, i: i64) -> Option<String> {
        let t = self.tick(i)?;
        Some(self.key_at(t))
    }

    fn key_at(&self, t: i64) -> String {
        let dt = self.at(t);
        let mut s = dt.format_with_items(self.items.iter()).to_string();
        if self.all_hours && self.is_second_occurrence(&dt) {
            s.push_str(&dt.format("%z").to_string());
        }
        s
    }

    fn is_second_occurrence(&self, dt: &DateTime<Tz>) -> bool {
        match self.tz.from_local_datetime(&dt.naive_local()) {
            chrono::LocalResult::Ambiguous(_, later) => later == *dt,
            _ => false,
        }
    }

    /// Index of the window whose key is `key`, if it is a key of this
    /// definition (whether or not its window has ended yet).
    pub fn index_of_key(&self, key: &str) -> Option<i64> {
        // A key is its window's start formatted with `fmt`, so read it back
        // (missing fields default to the start of the period) and take the
        // first tick at or after that time; it must format to the same key.
        let instant = match parse_time(key, &self.fmt) {
            Ok(naive) => match self.tz.from_local_datetime(&naive) {
                chrono::LocalResult::Single(a) | chrono::LocalResult::Ambiguous(a, _) => {
                    a.timestamp()
                }
                chrono::LocalResult::None => localize(&self.tz, naive).timestamp(),
            },
            Err(_) if self.all_hours => {
                // The second occurrence of a repeated hour: `<key><offset>`.
                let mut fmt = self.fmt.clone();
                fmt.push_str("%z");
                let (naive, offset) = parse_time_offset(key, &fmt).ok()?;
                naive.and_utc().timestamp() - offset? as i64
            }
            Err(_) => return None,
        };
        let i = self.floor_index(instant - 1) + 1;
        if i < 0 || self.end_count.is_some_and(|e| i >= e) {
            return None;
        }
        let t = self.tick(i)?;
        (self.key_at(t) == key).then_some(i)
    }

    /// Unix seconds as a time in the definition's zone.
    pub fn at(&self, t: i64) -> DateTime<Tz> {
        Utc.timestamp_opt(t, 0)
            .single()
            .unwrap_or_default()
            .with_timezone(&self.tz)
    }

    fn local(&self, t: i64) -> DateTime<Tz> {
        self.at(t)
    }

    /// Localises a naive time in the definition's zone (a skipped time moves
    /// forward past the gap; a repeated one takes its first occurrence).
    pub fn localize(&self, t: NaiveDateTime) -> DateTime<Tz> {
        localize(&self.tz, t)
    }

    /// Rejects a `fmt` that cannot tell consecutive windows apart or cannot
    /// be read back, by formatting and re-reading a sample of windows.
    fn check_fmt_resolution(&self) -> Result<(), TimeDefError> {
        let mut prev: Option<String> = None;
        for i in 0..64 {
            let Some(key) = self.key(i) else { break };
            if prev.as_deref() == Some(key.as_str()) {
                let kind = self.schedule.type_name();
                return Err(TimeDefError::Fmt(format!(
                    "the format `{}` is too coarse for {} {kind} schedule: two windows would share the key `{key}`",
                    self.fmt,
                    article(kind)
                )));
            }
            if self.index_of_key(&key) != Some(i) && self.end_count.is_none_or(|e| i < e) {
                return Err(TimeDefError::Fmt(format!(
                    "the format `{}` cannot be read back: key `{key}` does not identify its window",
                    self.fmt
                )));
            }
            prev = Some(key);
        }
        Ok(())
    }
}

fn build_mode(
    schedule: &Schedule,
    tz: &Tz,
    cron: croner::Cron,
    all_hours: bool,
    start: NaiveDateTime,
    start_instant: i64,
) -> (Mode, i64) {
    let hm = |h: u32, m: u32| NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default();
    match *schedule {
        Schedule::Hourly { minute } if whole_hour_zone(tz, start_instant) => {
            // Ticks are the instants whose local minute is `minute`; with
            // whole-hour offset changes they are exactly 3600 s apart.
            let offset = local_offset(tz, start_instant);
            let target = (minute as i64 * 60 - offset).rem_euclid(3600);
            let first = start_instant + (target - start_instant).rem_euclid(3600);
            (Mode::Fixed { step: 3600 }, first)
        }
        Schedule::Daily { hour, minute } => {
            let time = hm(hour, minute);
            let mut d = start.date();
            if resolve_one(tz, d.and_time(time)).timestamp() < start_instant {
                d = d.succ_opt().unwrap_or(d);
            }
            let first = resolve_one(tz, d.and_time(time)).timestamp();
            (
                Mode::Days {
                    first: d,
                    step: 1,
                    time,
                },
                first,
            )
        }
        Schedule::Weekly {
            weekday,
            hour,
            minute,
        } => {
            let time = hm(hour, minute);
            let mut d = start.date();
            let wd = d.weekday().num_days_from_sunday();
            d += chrono::Duration::days(((weekday + 7 - wd) % 7) as i64);
            if resolve_one(tz, d.and_time(time)).timestamp() < start_instant {
                d += chrono::Duration::days(7);
            }
            let first = resolve_one(tz, d.and_time(time)).timestamp();
            (
                Mode::Days {
                    first: d,
                    step: 7,
                    time,
                },
                first,
            )
        }
        Schedule::Monthly { day, hour, minute } => {
            let time = hm(hour, minute);
            let mut ym = start.year() as i64 * 12 + start.month0() as i64;
            let tick = |ym: i64| {
                NaiveDate::from_ymd_opt(ym.div_euclid(12) as i32, ym.rem_euclid(12) as u32 + 1, day)
                    .map(|d| resolve_one(tz, d.and_time(time)).timestamp())
                    .unwrap_or(i64::MAX)
            };
            if tick(ym) < start_instant {
                ym += 1;
            }
            (
                Mode::Months {
                    first: ym,
                    day,
                    time,
                },
                tick(ym),
            )
        }
        _ => {
            let mut table = TickTable {
                cron,
                ticks: Vec::new(),
                // Start a day early so ticks at the start instant are found
                // whatever the zone does that day.
                next: Some(start - chrono::Duration::days(1)),
            };
            table.extend_past(tz, all_hours, start_instant - 1);
            table.ticks.retain(|&t| t >= start_instant);
            let first = table.ticks.first().copied().unwrap_or(i64::MAX);
            (Mode::Table(Box::new(Mutex::new(table))), first)
        }
    }
}

impl TickTable {
    /// Enumerates more ticks: naive local ticks from the cron, resolved in
    /// the zone. Repeated times give two ticks when every hour ticks,
    /// else their later occurrence; skipped times give none when every
    /// hour ticks, else the moment the gap ends.
    fn extend_once(&mut self, tz: &Tz, all_hours: bool) -> bool {
        let Some(from) = self.next else { return false };
        let mut added = 0;
        let mut cursor = from;
        while added < 256 {
            let Ok(n) = self.cron.find_next_occurrence(&cursor, false) else {
                self.next = None;
                return added > 0;
            };
            cursor = n;
            let instants: Vec<i64> = if all_hours {
                match tz.from_local_datetime(&n) {
                    chrono::LocalResult::Single(a) => vec![a.timestamp()],
                    chrono::LocalResult::Ambiguous(a, b) => vec![a.timestamp(), b.timestamp()],
                    chrono::LocalResult::None => vec![],
                }
            } else {
                vec![resolve_one(tz, n).timestamp()]
            };
            for t in instants {
                if self.ticks.last().is_none_or(|&l| t > l) {
                    self.ticks.push(t);
                    added += 1;
                }
            }
        }
        self.next = Some(cursor);
        true
    }

    fn extend_to_len(&mut self, tz: &Tz, all_hours: bool, len: usize) {
        while self.ticks.len() < len && self.extend_once(tz, all_hours) {}
    }

    fn extend_past(&mut self, tz: &Tz, all_hours: bool, t: i64) {
        while self.ticks.last().is_none_or(|&l| l <= t) && self.extend_once(tz, all_hours) {}
    }
}

/// Whether the zone's UTC offset is the same modulo one hour over the next
/// century from `from` (so hourly ticks are evenly spaced).
fn whole_hour_zone(tz: &Tz, from: i64) -> bool {
    let base = local_offset(tz, from).rem_euclid(3600);
    (0..1200).all(|m| local_offset(tz, from + m * 30 * 86_400).rem_euclid(3600) == base)
}

fn local_offset(tz: &Tz, t: i64) -> i64 {
    use chrono::Offset;
    tz.offset_from_utc_datetime(
        &Utc.timestamp_opt(t, 0)
            .single()
            .unwrap_or_default()
            .naive_utc(),
    )
    .fix()
    .local_minus_utc() as i64
}

/// Resolves a local tick time the way Dagster does for schedules that do
/// not tick every hour: a repeated time takes its later occurrence; a
/// skipped time becomes the moment the gap ends.
fn resolve_one(tz: &Tz, t: NaiveDateTime) -> DateTime<Tz> {
    match tz.from_local_datetime(&t) {
        chrono::LocalResult::Single(d) => d,
        chrono::LocalResult::Ambiguous(_, later) => later,
        chrono::LocalResult::None => localize(tz, t),
    }
}

/// Localises a naive time: a time in a DST gap moves forward past it; a
/// repeated time takes its first occurrence.
pub fn localize(tz: &Tz, t: NaiveDateTime) -> DateTime<Tz> {
    match tz.from_local_datetime(&t) {
        chrono::LocalResult::Single(d) => d,
        chrono::LocalResult::Ambiguous(a, _) => a,
        chrono::LocalResult::None => {
            // Move forward minute by minute (gaps are at most a few hours).
            let mut probe = t;
            for _ in 0..(24 * 60) {
                probe += chrono::Duration::minutes(1);
                if let Some(d) = tz.from_local_datetime(&probe).earliest() {
                    return d;
                }
            }
            Utc.from_utc_datetime(&t).with_timezone(tz)
        }
    }
}

/// Checks that a strftime format is well formed and has no offset or zone
/// name that keys could not carry.
pub fn check_fmt(fmt: &str) -> Result<(), String> {
    if fmt.trim().is_empty() {
        return Err("the format is empty".into());
    }
    for item in StrftimeItems::new(fmt) {
        if let Item::Error = item {
            return Err(format!("`{fmt}` is not a valid strftime format"));
        }
    }
    Ok(())
}

/// Parses a time written in `fmt`. Missing parts default to the start of
/// the period (day 1, midnight), so `%Y-%m` reads as the first of the month.
pub fn parse_time(s: &str, fmt: &str) -> Result<NaiveDateTime, String> {
    parse_time_offset(s, fmt).map(|(t, _)| t)
}

/// Like [`parse_time`], also returning the UTC offset (seconds) when `fmt` has one.
pub fn parse_time_offset(s: &str, fmt: &str) -> Result<(NaiveDateTime, Option<i32>), String> {
    let mut p = Parsed::new();
    chrono::format::parse(&mut p, s, StrftimeItems::new(fmt)).map_err(|e| e.to_string())?;
    if p.day().is_none()
        && p.isoweek().is_none()
        && p.week_from_sun().is_none()
        && p.week_from_mon().is_none()
        && p.ordinal().is_none()
    {
        let _ = p.set_day(1);
    }
    let date: NaiveDate = p.to_naive_date().map_err(|e| e.to_string())?;
    let hour = match (p.hour_div_12(), p.hour_mod_12()) {
        (Some(d), Some(m)) => d * 12 + m,
        (None, Some(m)) => m,
        _ => 0,
    };
    let time = NaiveTime::from_hms_opt(hour, p.minute().unwrap_or(0), p.second().unwrap_or(0))
        .ok_or_else(|| "time out of range".to_string())?;
    Ok((date.and_time(time), p.offset()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(fmt: Option<&str>, start: &str) -> Result<TimePartitions, TimeDefError> {
        TimePartitions::new(
            Schedule::Daily { hour: 0, minute: 0 },
            chrono_tz::UTC,
            fmt.map(String::from),
            start,
            None,
            0,
        )
    }

    #[test]
    fn parses_partial_formats() {
        let t = parse_time("2024-03", "%Y-%m").unwrap();
        assert_eq!(t.to_string(), "2024-03-01 00:00:00");
        let t = parse_time("2024-03-05-07:30", "%Y-%m-%d-%H:%M").unwrap();
        assert_eq!(t.to_string(), "2024-03-05 07:30:00");
    }

    #[test]
    fn rejects_bad_start_and_formats() {
        assert!(matches!(
            daily(None, "2024-13-01"),
            Err(TimeDefError::Start(_))
        ));
        assert!(matches!(
            daily(Some("%Q"), "2024-01-01"),
            Err(TimeDefError::Fmt(_))
        ));
        assert!(daily(Some("%Y%m%d"), "20240101").is_ok());
    }

    #[test]
    fn rejects_coarse_format() {
        let e = TimePartitions::new(
            Schedule::Hourly { minute: 0 },
            chrono_tz::UTC,
            Some("%Y-%m-%d".into()),
            "2024-01-01",
            None,
            0,
        )
        .unwrap_err();
        assert!(matches!(e, TimeDefError::Fmt(m) if m.contains("too coarse")));
    }

    #[test]
    fn cron_needs_five_fields() {
        assert!(parse_cron("0 */6 * * *").is_ok());
        assert!(parse_cron("0 0 */6 * * *").is_err());
        assert!(parse_cron("61 * * * *").is_err());
    }

    #[test]
    fn cron_errors_name_the_field_and_its_range() {
        let e = |expr: &str| parse_cron(expr).unwrap_err();
        assert_eq!(
            e("61 * * * *"),
            "minute `61` is out of range: the minute field takes 0-59"
        );
        assert_eq!(
            e("0 24 * * *"),
            "hour `24` is out of range: the hour field takes 0-23"
        );
        assert_eq!(
            e("0 0 0 * *"),
            "day-of-month `0` is out of range: the day-of-month field takes 1-31"
        );
        assert_eq!(
            e("0 0 1 1-13 *"),
            "month `13` is out of range: the month field takes 1-12 or JAN-DEC"
        );
        assert_eq!(
            e("0 0 * * 1,8"),
            "day-of-week `8` is out of range: the day-of-week field takes 0-6 or SUN-SAT (7 is also Sunday)"
        );
        let m = e("0 1- * * *");
        assert!(m.starts_with("invalid hour field `1-`: "), "{m}");
        assert!(m.ends_with("; the hour field takes 0-23"), "{m}");
        assert!(!m.contains("Component error"), "{m}");
        assert_eq!(
            e("x * * * *"),
            "invalid minute field `x`: illegal character `x`; the minute field takes 0-59"
        );
        assert_eq!(
            e("0 5-1 * * *"),
            "the hour range `5-1` runs backwards; write the smaller value first"
        );
        assert!(parse_cron("0 0 * * 7").is_ok());
        assert!(parse_cron("0 0 * JAN-MAR MON-FRI").is_ok());
    }

    #[test]
    fn too_coarse_uses_the_right_article() {
        let err = |schedule: Schedule, fmt: &str, start: &str| match TimePartitions::new(
            schedule,
            chrono_tz::UTC,
            Some(fmt.into()),
            start,
            None,
            0,
        ) {
            Err(TimeDefError::Fmt(m)) => m,
            other => panic!("expected a format error, got {other:?}"),
        };
        let m = err(Schedule::Hourly { minute: 0 }, "%Y-%m-%d", "2024-01-01");
        assert!(m.contains("too coarse for an hourly schedule"), "{m}");
        let m = err(Schedule::Daily { hour: 0, minute: 0 }, "%Y-%m", "2024-01");
        assert!(m.contains("too coarse for a daily schedule"), "{m}");
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        const ZONES: &[&str] = &[
            "UTC",
            "America/New_York",
            "Europe/Berlin",
            "Australia/Sydney",
            "Asia/Kolkata",
            "America/Sao_Paulo",
        ];

        fn schedule(kind: u8, minute: u32, hour: u32, day: u32) -> Schedule {
            match kind % 4 {
                0 => Schedule::Hourly { minute },
                1 => Schedule::Daily { hour, minute },
                2 => Schedule::Weekly {
                    weekday: day % 7,
                    hour,
                    minute,
                },
                _ => Schedule::Monthly {
                    day: day % 28 + 1,
                    hour,
                    minute,
                },
            }
        }

        fn build(s: Schedule, tz: &str, start: &str) -> TimePartitions {
            TimePartitions::new(
                s,
                tz.parse().unwrap(),
                Some("%Y-%m-%d-%H:%M".into()),
                start,
                None,
                0,
            )
            .unwrap()
        }

        fn start_strategy() -> impl Strategy<Value = String> {
            (2000i32..2030, 1u32..=12, 1u32..=28, 0u32..24)
                .prop_map(|(y, m, d, h)| format!("{y}-{m:02}-{d:02}-{h:02}:00"))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            /// key → index → window → key round trip; windows contiguous and ordered.
            #[test]
            fn round_trip_and_contiguous(kind in 0u8..4, minute in 0u32..60, hour in 0u32..24, day in 0u32..28,
                                         zone in 0usize..6, start in start_strategy(), i in 0i64..3000) {
                let def = build(schedule(kind, minute, hour, day), ZONES[zone], &start);
                let key = def.key(i).unwrap();
                prop_assert_eq!(def.index_of_key(&key), Some(i), "key {}", key);
                let (s0, e0) = def.window(i).unwrap();
                let (s1, _) = def.window(i + 1).unwrap();
                prop_assert!(s0 < e0);
                prop_assert_eq!(e0, s1);
                prop_assert_eq!(def.floor_index(s0.timestamp()), i);
                prop_assert_eq!(def.floor_index(s0.timestamp() - 1), i - 1);
                prop_assert_eq!(def.floor_index(e0.timestamp() - 1), i);
            }

            /// Index arithmetic agrees with enumerating the equivalent cron schedule.
            #[test]
            fn arithmetic_matches_enumeration(kind in 0u8..4, minute in 0u32..60, hour in 0u32..24, day in 0u32..28,
                                              zone in 0usize..6, start in start_strategy()) {
                let s = schedule(kind, minute, hour, day);
                let expr = s.cron_expr();
                let arith = build(s, ZONES[zone], &start);
                let cron = Schedule::Cron { expr: expr.clone(), cron: Box::new(parse_cron(&expr).unwrap()) };
                let table = build(cron, ZONES[zone], &start);
                prop_assert!(matches!(table.mode, Mode::Table(_)));
                for i in 0..120 {
                    prop_assert_eq!(arith.tick(i), table.tick(i), "tick {} of {}", i, expr);
                    prop_assert_eq!(arith.key(i), table.key(i));
                }
                let now = table.tick(100).unwrap() + 1;
                prop_assert_eq!(arith.count(now), table.count(now));
                prop_assert_eq!(arith.count(now), 100);
            }
        }
    }
}
