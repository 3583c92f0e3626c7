//! Time-window partitions: windows between consecutive ticks of a schedule.
//!
//! Semantics follow Dagster 1.13: a key is its window's start formatted with
//! `fmt` in the definition's time zone; the first window starts at the first
//! tick at or after `start`; `end` is exclusive; the last window is the last
//! one that has ended by *now*, moved by `end_offset`.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Timelike, Utc,
};
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

/// Why a cron expression is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), found {0}")]
    FieldCount(usize),
    /// The field croner rejected, and its valid values.
    #[error("{0}")]
    Field(String),
}

/// A diagnostic's label is a string.
impl From<CronError> for String {
    fn from(e: CronError) -> String {
        e.to_string()
    }
}

/// Parses a five-field cron expression.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, CronError> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(CronError::FieldCount(fields.len()));
    }
    croner_parse(expr).map_err(|e| CronError::Field(explain_cron_error(&fields, &e)))
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
    /// The schedule has no tick at or after `start`.
    Schedule(String),
}

/// How Dagster turns a local tick time into instants around daylight-saving
/// changes. Its schedules go through one of three engines (see
/// `cron_string_iterator` in Dagster 1.13), which differ exactly here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Daily, weekly and monthly schedules (one local time on some days): a
    /// repeated time in the hours 1–3 takes its later occurrence, elsewhere
    /// its earlier one; a skipped time in the hours 1–3 moves to the end of
    /// the gap; a skipped time at other hours keeps its local time and the
    /// UTC offset from before the change.
    Calendar,
    /// Other schedules that do not tick every hour: like `Calendar`, except
    /// that a repeated time always takes its later occurrence.
    Cron,
    /// Schedules whose hour field is `*`: both occurrences of a repeated
    /// time are ticks (the second one's key carries its UTC offset) and a
    /// skipped time is no tick.
    EveryHour,
}

/// A tick: its instant (Unix seconds) and the local time its key shows.
/// They disagree only for a skipped time that keeps its local time.
type Tick = (i64, NaiveDateTime);

fn is_dst_hour(n: &NaiveDateTime) -> bool {
    (1..=3).contains(&n.hour())
}

/// The instants of local time `n` under `rule`: none, one, or two (in time
/// order), without allocating.
fn resolve(tz: &Tz, n: NaiveDateTime, rule: Rule) -> [Option<Tick>; 2] {
    match tz.from_local_datetime(&n) {
        LocalResult::Single(d) => [Some((d.timestamp(), n)), None],
        LocalResult::Ambiguous(a, b) => match rule {
            Rule::EveryHour => [Some((a.timestamp(), n)), Some((b.timestamp(), n))],
            Rule::Cron => [Some((b.timestamp(), n)), None],
            Rule::Calendar => {
                let d = if is_dst_hour(&n) { b } else { a };
                [Some((d.timestamp(), n)), None]
            }
        },
        LocalResult::None => match rule {
            Rule::EveryHour => [None, None],
            _ if is_dst_hour(&n) => {
                // The end of the gap: the hour's start moved by the gap's length.
                let (before, after) = offsets_around(tz, n);
                let w = n.with_minute(0).unwrap_or(n) + Duration::seconds(after - before);
                let t = match tz.from_local_datetime(&w) {
                    LocalResult::Single(d) => d.timestamp(),
                    LocalResult::Ambiguous(a, b) => {
                        if rule == Rule::Calendar && is_dst_hour(&w) {
                            b.timestamp()
                        } else {
                            a.timestamp()
                        }
                    }
                    LocalResult::None => pre_transition(tz, w),
                };
                [Some((t, w)), None]
            }
            _ => [Some((pre_transition(tz, n), n)), None],
        },
    }
}

/// The UTC offsets (seconds) a day before and a day after local time `n`.
fn offsets_around(tz: &Tz, n: NaiveDateTime) -> (i64, i64) {
    let t = n.and_utc().timestamp();
    (local_offset(tz, t - 86_400), local_offset(tz, t + 86_400))
}

/// The instant of a skipped local time read with the UTC offset from before
/// the change (Python's `fold=0`, which Dagster relies on).
fn pre_transition(tz: &Tz, n: NaiveDateTime) -> i64 {
    n.and_utc().timestamp() - offsets_around(tz, n).0
}

/// Which engine Dagster's `cron_string_iterator` uses for a cron schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Engine {
    /// Minutes listed, every other field `*`: the instants whose local minute is listed.
    Hourly(Vec<u32>),
    /// A single local time on days of the month or week.
    Calendar,
    /// Anything else, enumerated from local times.
    Cron { every_hour: bool },
}

fn engine_of(expr: &str) -> Engine {
    let f: Vec<&str> = expr.split_whitespace().collect();
    let every_hour = f.get(1) == Some(&"*");
    if f.len() != 5 {
        return Engine::Cron { every_hour };
    }
    let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let star = |s: &str| s == "*";
    let (mi, h, dom, mon, dow) = (f[0], f[1], f[2], f[3], f[4]);
    // `5#3`, `L`, `15W` and `5L` are nth-weekday or last-day forms.
    let special = dow.contains('#')
        || dom.contains(['L', 'W', 'l', 'w'])
        || dow.len() > 1 && dow.ends_with(['L', 'l']) && dow.as_bytes()[0].is_ascii_digit();
    if special {
        return Engine::Cron { every_hour };
    }
    if num(mi)
        && num(h)
        && num(dom)
        && star(mon)
        && star(dow)
        && dom.parse::<u32>().is_ok_and(|d| d <= 28)
    {
        return Engine::Calendar;
    }
    if num(mi) && num(h) && star(dom) && star(mon) {
        return Engine::Calendar;
    }
    if !star(mi)
        && star(h)
        && star(dom)
        && star(mon)
        && star(dow)
        && let Some(m) = expand_minutes(mi)
    {
        return Engine::Hourly(m);
    }
    Engine::Cron { every_hour }
}

/// The minutes a cron minute field lists (`0,15`, `*/20`, `5-50/15`, …).
fn expand_minutes(field: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|&s| s > 0)?),
            None => (item, 1),
        };
        let (lo, hi) = match range {
            "*" => (0, 59),
            r => match r.split_once('-') {
                Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                None => {
                    let a: u32 = r.parse().ok()?;
                    (a, if item.contains('/') { 59 } else { a })
                }
            },
        };
        if lo > hi || hi > 59 {
            return None;
        }
        out.extend((lo..=hi).step_by(step as usize));
    }
    out.sort_unstable();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

/// How tick `i` is found. Built-in schedules and minute-list crons get O(1)
/// arithmetic; other cron schedules are enumerated on demand and cached.
#[derive(Debug)]
enum Mode {
    /// Instants whose local minute is listed, in a zone whose UTC offset
    /// keeps the same minutes: `secs` are the listed minutes as seconds
    /// after a UTC hour, `base` a UTC hour, `skip` the ticks in that hour
    /// before the first one.
    Hourly {
        secs: Vec<i64>,
        base: i64,
        skip: i64,
    },
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

/// Enumerated ticks of a cron schedule, grown forwards and backwards in
/// chunks of local time that start and end at noon (daylight-saving changes
/// happen at night, so a repeated hour is never split across two chunks).
#[derive(Debug)]
struct TickTable {
    cron: croner::Cron,
    rule: Rule,
    ticks: VecDeque<Tick>,
    /// Position in `ticks` of tick 0.
    zero: i64,
    /// Local times enumerated so far: `[lo, hi)`.
    lo: NaiveDateTime,
    hi: NaiveDateTime,
    lo_done: bool,
    hi_done: bool,
    /// Days of local time the next chunk covers, each way.
    span_fwd: i64,
    span_back: i64,
}

/// The earliest local time enumerated backwards.
fn min_naive() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(1, 1, 1)
        .unwrap_or_default()
        .and_time(NaiveTime::MIN)
}

fn noon_floor(t: NaiveDateTime) -> NaiveDateTime {
    let noon = NaiveTime::from_hms_opt(12, 0, 0).unwrap_or_default();
    if t.time() >= noon {
        t.date().and_time(noon)
    } else {
        (t.date() - Duration::days(1)).and_time(noon)
    }
}

impl TickTable {
    fn new(
        tz: &Tz,
        cron: croner::Cron,
        rule: Rule,
        start: NaiveDateTime,
        start_instant: i64,
    ) -> Self {
        let at = noon_floor(start - Duration::days(1));
        let mut table = TickTable {
            cron,
            rule,
            ticks: VecDeque::new(),
            zero: 0,
            lo: at,
            hi: at,
            lo_done: false,
            hi_done: false,
            span_fwd: 2,
            span_back: 2,
        };
        while table.ticks.back().is_none_or(|&(t, _)| t < start_instant) && table.extend_fwd(tz) {}
        table.zero = table.ticks.partition_point(|&(t, _)| t < start_instant) as i64;
        table
    }

    /// The ticks of local times in `[a, b)`, in time order, without repeats.
    /// `None` when the schedule has no tick at or after `a`.
    fn chunk(&self, tz: &Tz, a: NaiveDateTime, b: NaiveDateTime) -> Option<Vec<Tick>> {
        let mut out = Vec::new();
        let mut cursor = a;
        let mut inclusive = true;
        loop {
            let Ok(n) = self.cron.find_next_occurrence(&cursor, inclusive) else {
                return if out.is_empty() { None } else { Some(out) };
            };
            if n >= b {
                break;
            }
            out.extend(resolve(tz, n, self.rule).into_iter().flatten());
            cursor = n;
            inclusive = false;
        }
        out.sort_by_key(|&(t, _)| t);
        out.dedup_by_key(|&mut (t, _)| t);
        Some(out)
    }

    fn extend_fwd(&mut self, tz: &Tz) -> bool {
        if self.hi_done {
            return false;
        }
        let b = noon_floor(self.hi + Duration::days(self.span_fwd));
        let b = if b <= self.hi {
            self.hi + Duration::days(1)
        } else {
            b
        };
        match self.chunk(tz, self.hi, b) {
            None => self.hi_done = true,
            Some(ticks) => {
                if ticks.len() < 64 {
                    self.span_fwd = (self.span_fwd * 4).min(146_000);
                }
                for tick in ticks {
                    if self.ticks.back().is_none_or(|&(l, _)| tick.0 > l) {
                        self.ticks.push_back(tick);
                    }
                }
            }
        }
        self.hi = b;
        if b.year() > 9000 {
            self.hi_done = true;
        }
        true
    }

    fn extend_back(&mut self, tz: &Tz) -> bool {
        if self.lo_done {
            return false;
        }
        let a = self
            .lo
            .checked_sub_signed(Duration::days(self.span_back))
            .filter(|a| *a > min_naive())
            .unwrap_or_else(min_naive);
        if a <= min_naive() {
            self.lo_done = true;
        }
        let ticks = self.chunk(tz, a, self.lo).unwrap_or_default();
        if ticks.len() < 64 {
            self.span_back = (self.span_back * 4).min(146_000);
        }
        let first = self.ticks.front().map(|&(t, _)| t);
        let mut added = 0;
        for tick in ticks.into_iter().rev() {
            if first.is_none_or(|f| tick.0 < f)
                && self.ticks.front().is_none_or(|&(f, _)| tick.0 < f)
            {
                self.ticks.push_front(tick);
                added += 1;
            }
        }
        self.zero += added;
        self.lo = a;
        true
    }

    fn get(&mut self, tz: &Tz, i: i64) -> Option<Tick> {
        while i + self.zero < 0 && self.extend_back(tz) {}
        while i + self.zero >= self.ticks.len() as i64 && self.extend_fwd(tz) {}
        let pos = usize::try_from(i + self.zero).ok()?;
        self.ticks.get(pos).copied()
    }

    fn floor(&mut self, tz: &Tz, t: i64) -> i64 {
        while self.ticks.front().is_none_or(|&(f, _)| f > t) && self.extend_back(tz) {}
        while self.ticks.back().is_none_or(|&(l, _)| l <= t) && self.extend_fwd(tz) {}
        self.ticks.partition_point(|&(x, _)| x <= t) as i64 - 1 - self.zero
    }
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
    /// `start` as an instant (Unix seconds).
    start_instant: i64,
    /// `end` as an instant.
    end_instant: Option<i64>,
    /// The last index `end` allows (a window that `end` cuts is still the
    /// first partition, as in Dagster).
    end_last: Option<i64>,
    /// `floor_index(end)`, computed once.
    end_floor: Option<i64>,
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
        check_fmt(&fmt).map_err(|e| TimeDefError::Fmt(e.to_string()))?;
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
        let expr = schedule.cron_expr();
        let cron = match &schedule {
            Schedule::Cron { cron, .. } => (**cron).clone(),
            _ => parse_cron(&expr).expect("built-in schedules are valid cron"),
        };
        let all_hours = expr.split_whitespace().nth(1) == Some("*");
        let engine = engine_of(&expr);
        let rule = match engine {
            Engine::Calendar => Rule::Calendar,
            Engine::Hourly(_) | Engine::Cron { every_hour: true } => Rule::EveryHour,
            Engine::Cron { every_hour: false } => Rule::Cron,
        };
        let start_instant = localize(&tz, start_at).timestamp();
        let mode = build_mode(&schedule, &engine, rule, &tz, cron, start_at, start_instant);
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
            start_instant,
            end_instant: None,
            end_last: None,
            end_floor: None,
        };
        if def.tick(0).is_none() {
            return Err(TimeDefError::Schedule(format!(
                "the schedule `{expr}` never fires at or after `start` ({start})"
            )));
        }
        if let Some(e) = end_at {
            let e = localize(&def.tz, e).timestamp();
            def.end_instant = Some(e);
            let floor = def.floor_index(e);
            def.end_floor = Some(floor);
            def.end_last = Some((floor - 1).max(0));
        }
        def.check_fmt_resolution()?;
        Ok(def)
    }

    /// The instant and key time of tick `i`; tick 0 is the first window's start.
    fn tick_full(&self, i: i64) -> Option<Tick> {
        match &self.mode {
            Mode::Hourly { secs, base, skip } => {
                let k = secs.len() as i64;
                let j = i.checked_add(*skip)?;
                let t = base
                    .checked_add(j.div_euclid(k).checked_mul(3600)?)?
                    .checked_add(secs[j.rem_euclid(k) as usize])?;
                Some((t, self.at(t).naive_local()))
            }
            Mode::Days { first, step, time } => {
                let date = first.checked_add_signed(Duration::try_days(i.checked_mul(*step)?)?)?;
                Some(self.resolve_one(date.and_time(*time)))
            }
            Mode::Months { first, day, time } => {
                let ym = first.checked_add(i)?;
                let date = NaiveDate::from_ymd_opt(
                    i32::try_from(ym.div_euclid(12)).ok()?,
                    ym.rem_euclid(12) as u32 + 1,
                    *day,
                )?;
                Some(self.resolve_one(date.and_time(*time)))
            }
            Mode::Table(t) => {
                let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                t.get(&self.tz, i)
            }
        }
    }

    /// A calendar schedule's local time as one tick.
    fn resolve_one(&self, n: NaiveDateTime) -> Tick {
        resolve(&self.tz, n, Rule::Calendar)[0].unwrap_or((n.and_utc().timestamp(), n))
    }

    /// The instant of tick `i` (Unix seconds); tick 0 is the first window's start.
    pub fn tick(&self, i: i64) -> Option<i64> {
        match &self.mode {
            // Arithmetic only: the local time is needed for keys, not here.
            Mode::Hourly { secs, base, skip } => {
                let k = secs.len() as i64;
                let j = i.checked_add(*skip)?;
                base.checked_add(j.div_euclid(k).checked_mul(3600)?)?
                    .checked_add(secs[j.rem_euclid(k) as usize])
            }
            _ => self.tick_full(i).map(|(t, _)| t),
        }
    }

    /// The largest `i` with `tick(i) <= t`; negative when `t` is before the first tick.
    pub fn floor_index(&self, t: i64) -> i64 {
        let mut k = match &self.mode {
            Mode::Hourly { secs, base, skip } => {
                let k = secs.len() as i64;
                let h = (t - base).div_euclid(3600);
                let r = (t - base) - h * 3600;
                let c = secs.partition_point(|&s| s <= r) as i64;
                return h * k + c - 1 - skip;
            }
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
                return tab.floor(&self.tz, t);
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

    /// `floor_index(t)`, or any value below `lo` when it is below `lo`:
    /// spares enumerating far into the past for a *now* long before `start`.
    fn floor_at_least(&self, t: i64, lo: i64) -> i64 {
        match self.tick(lo) {
            Some(x) if t < x => lo - 1,
            _ => self.floor_index(t),
        }
    }

    /// Number of partitions at `now`, as Dagster 1.13 counts them: windows
    /// ended by `now`, moved by `end_offset`, never past `end`; once the
    /// first window exists it stays a partition even when `end` cuts it.
    pub fn count(&self, now: i64) -> i64 {
        let off = self.end_offset;
        let f = self.floor_at_least(now, -(off.abs() + 2));
        let first_exists = match off.cmp(&0) {
            std::cmp::Ordering::Equal => f >= 1,
            std::cmp::Ordering::Less => f + off >= 1,
            std::cmp::Ordering::Greater => {
                let ceil = if self.tick(f) == Some(now) { f } else { f + 1 };
                ceil + off >= 1
            }
        };
        if !first_exists {
            return 0;
        }
        let end = self.end_floor.map(|f| f - 1);
        let last = if off == 0 {
            match (self.end_instant, end) {
                (Some(e), Some(last)) if e < now => last,
                _ => f - 1,
            }
        } else {
            let cur = f + off - 1;
            match end {
                Some(e) if e <= cur => e,
                _ => cur,
            }
        };
        last.max(0) + 1
    }

    /// The window `[start, end)` of partition `i`.
    pub fn window(&self, i: i64) -> Option<(DateTime<Tz>, DateTime<Tz>)> {
        Some((self.at(self.tick(i)?), self.at(self.tick(i + 1)?)))
    }

    /// The key of partition `i` (or of any tick, before the first included).
    pub fn key(&self, i: i64) -> Option<String> {
        let tick = self.tick_full(i)?;
        Some(self.key_of(tick))
    }

    fn key_of(&self, (t, wall): Tick) -> String {
        let mut s = wall.format_with_items(self.items.iter()).to_string();
        if self.all_hours {
            let dt = self.at(t);
            if self.is_second_occurrence(&dt) {
                s.push_str(&dt.format("%z").to_string());
            }
        }
        s
    }

    fn is_second_occurrence(&self, dt: &DateTime<Tz>) -> bool {
        match self.tz.from_local_datetime(&dt.naive_local()) {
            LocalResult::Ambiguous(_, later) => later == *dt,
            _ => false,
        }
    }

    /// The time a key names: its text read with `fmt` (missing fields
    /// default to the start of the period), or, for the second occurrence
    /// of a repeated hour, with its UTC offset (`<key><offset>`).
    fn key_instant(&self, key: &str) -> Option<i64> {
        match parse_time(key, &self.fmt) {
            Ok(naive) => Some(localize(&self.tz, naive).timestamp()),
            Err(_) if self.all_hours => {
                let mut fmt = self.fmt.clone();
                fmt.push_str("%z");
                let (naive, offset) = parse_time_offset(key, &fmt).ok()?;
                Some(naive.and_utc().timestamp() - offset? as i64)
            }
            Err(_) => None,
        }
    }

    /// The tick whose key is `key`: the first tick at or after the time the
    /// key names, if it formats back to the same key.
    fn tick_of_key(&self, key: &str, instant: i64) -> Option<i64> {
        let i = self.floor_index(instant - 1) + 1;
        let tick = self.tick_full(i)?;
        (self.key_of(tick) == key).then_some(i)
    }

    /// Index of the window whose key is `key`, if it is a key of this
    /// definition (whether or not its window has ended yet).
    pub fn index_of_key(&self, key: &str) -> Option<i64> {
        let instant = self.key_instant(key)?;
        // Keys before the first window are not keys (and spare enumerating
        // far into the past).
        if self.tick(-1).is_some_and(|p| instant <= p) {
            return None;
        }
        let i = self.tick_of_key(key, instant)?;
        (i >= 0 && self.end_last.is_none_or(|e| i <= e)).then_some(i)
    }

    /// The tick index of `key`, even outside the current partitions (before
    /// the first window, after *now* or `end`): for messages about keys that
    /// do not exist.
    pub fn tick_index_of_key(&self, key: &str) -> Option<i64> {
        self.tick_of_key(key, self.key_instant(key)?)
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

    /// `start` as an instant.
    pub fn start_instant(&self) -> i64 {
        self.start_instant
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
            if self.end_last.is_some_and(|e| i > e) {
                break;
            }
            if self.index_of_key(&key) != Some(i) {
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
    engine: &Engine,
    rule: Rule,
    tz: &Tz,
    cron: croner::Cron,
    start: NaiveDateTime,
    start_instant: i64,
) -> Mode {
    let hm = |h: u32, m: u32| NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default();
    let calendar =
        |n: NaiveDateTime| resolve(tz, n, Rule::Calendar)[0].map_or(i64::MIN, |(t, _)| t);
    // Every `step` days at `time`, from the first such day at or after the start.
    let days = |mut first: NaiveDate, step: i64, time: NaiveTime| {
        while calendar(first.and_time(time)) < start_instant {
            first += Duration::days(step);
        }
        Mode::Days { first, step, time }
    };
    let table = move || {
        Mode::Table(Box::new(Mutex::new(TickTable::new(
            tz,
            cron,
            rule,
            start,
            start_instant,
        ))))
    };
    match (schedule, engine) {
        (_, Engine::Hourly(minutes)) => match minute_offset(tz, start_instant) {
            Some(offset) => {
                // Local minute m is UTC second (60 m - offset) mod 3600 of every hour.
                let mut secs: Vec<i64> = minutes
                    .iter()
                    .map(|&m| (m as i64 * 60 - offset).rem_euclid(3600))
                    .collect();
                secs.sort_unstable();
                let base = start_instant.div_euclid(3600) * 3600;
                let skip = secs.iter().filter(|&&s| base + s < start_instant).count() as i64;
                Mode::Hourly { secs, base, skip }
            }
            None => table(),
        },
        (Schedule::Daily { hour, minute }, _) => {
            days(start.date() - Duration::days(1), 1, hm(*hour, *minute))
        }
        (
            Schedule::Weekly {
                weekday,
                hour,
                minute,
            },
            _,
        ) => {
            let mut d = start.date() - Duration::days(7);
            let wd = d.weekday().num_days_from_sunday();
            d += Duration::days(((weekday + 7 - wd) % 7) as i64);
            days(d, 7, hm(*hour, *minute))
        }
        (Schedule::Monthly { day, hour, minute }, _) => {
            let time = hm(*hour, *minute);
            let mut ym = start.year() as i64 * 12 + start.month0() as i64 - 1;
            let tick = |ym: i64| {
                NaiveDate::from_ymd_opt(
                    ym.div_euclid(12) as i32,
                    ym.rem_euclid(12) as u32 + 1,
                    *day,
                )
                .map(|d| calendar(d.and_time(time)))
                .unwrap_or(i64::MAX)
            };
            while tick(ym) < start_instant {
                ym += 1;
            }
            Mode::Months {
                first: ym,
                day: *day,
                time,
            }
        }
        _ => table(),
    }
}

/// The zone's UTC offset modulo one hour, when it is the same over a
/// century around `from` (so minute-list ticks are evenly spaced).
fn minute_offset(tz: &Tz, from: i64) -> Option<i64> {
    let base = local_offset(tz, from).rem_euclid(3600);
    (-1200..1200)
        .all(|m| local_offset(tz, from + m * 30 * 86_400).rem_euclid(3600) == base)
        .then_some(base)
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

/// Localises a naive time as Dagster reads `start`, `end` and keys (Python's
/// `fold=0`): a repeated time takes its first occurrence; a skipped time
/// keeps the UTC offset from before the change.
pub fn localize(tz: &Tz, t: NaiveDateTime) -> DateTime<Tz> {
    match tz.from_local_datetime(&t) {
        LocalResult::Single(d) => d,
        LocalResult::Ambiguous(a, _) => a,
        LocalResult::None => Utc
            .timestamp_opt(pre_transition(tz, t), 0)
            .single()
            .unwrap_or_default()
            .with_timezone(tz),
    }
}

/// Why a strftime format is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FmtError {
    #[error("the format is empty")]
    Empty,
    #[error("`{0}` is not a valid strftime format")]
    Invalid(String),
}

/// Checks that a strftime format is well formed and has no offset or zone
/// name that keys could not carry.
pub fn check_fmt(fmt: &str) -> Result<(), FmtError> {
    if fmt.trim().is_empty() {
        return Err(FmtError::Empty);
    }
    for item in StrftimeItems::new(fmt) {
        if let Item::Error = item {
            return Err(FmtError::Invalid(fmt.to_string()));
        }
    }
    Ok(())
}

/// Why a time does not read in a format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeParseError {
    #[error("{0}")]
    Parse(#[from] chrono::format::ParseError),
    #[error("time out of range")]
    OutOfRange,
}

/// Parses a time written in `fmt`. Missing parts default to the start of
/// the period (day 1, midnight), so `%Y-%m` reads as the first of the month.
pub fn parse_time(s: &str, fmt: &str) -> Result<NaiveDateTime, TimeParseError> {
    parse_time_offset(s, fmt).map(|(t, _)| t)
}

/// Like [`parse_time`], also returning the UTC offset (seconds) when `fmt` has one.
pub fn parse_time_offset(
    s: &str,
    fmt: &str,
) -> Result<(NaiveDateTime, Option<i32>), TimeParseError> {
    let mut p = Parsed::new();
    chrono::format::parse(&mut p, s, StrftimeItems::new(fmt))?;
    // Like Python's `strptime`, which Dagster uses: a missing year is 1900,
    // a missing month January, a missing day the first.
    let by_week = p.isoweek().is_some()
        || p.week_from_sun().is_some()
        || p.week_from_mon().is_some()
        || p.ordinal().is_some();
    if p.year().is_none() && p.isoyear().is_none() && p.year_div_100().is_none() {
        let _ = p.set_year(1900);
    }
    if p.month().is_none() && !by_week {
        let _ = p.set_month(1);
    }
    if p.day().is_none()
        && p.isoweek().is_none()
        && p.week_from_sun().is_none()
        && p.week_from_mon().is_none()
        && p.ordinal().is_none()
    {
        let _ = p.set_day(1);
    }
    let date: NaiveDate = p.to_naive_date()?;
    let hour = match (p.hour_div_12(), p.hour_mod_12()) {
        (Some(d), Some(m)) => d * 12 + m,
        (None, Some(m)) => m,
        _ => 0,
    };
    let time = NaiveTime::from_hms_opt(hour, p.minute().unwrap_or(0), p.second().unwrap_or(0))
        .ok_or(TimeParseError::OutOfRange)?;
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
        let e = |expr: &str| parse_cron(expr).unwrap_err().to_string();
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
                prop_assert!(kind % 4 == 0 || matches!(table.mode, Mode::Table(_)));
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
