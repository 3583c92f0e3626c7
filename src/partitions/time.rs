//! Time-window partitions: windows between consecutive ticks of a schedule.
//!
//! Semantics follow Dagster 1.13: a key is its window's start formatted with
//! `fmt` in the definition's time zone; the first window starts at the first
//! tick at or after `start`; `end` is exclusive; the last window is the last
//! one that has ended by *now*, moved by `end_offset`.

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
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

/// Parses a five-field cron expression.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    if expr.split_whitespace().count() != 5 {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
            expr.split_whitespace().count()
        ));
    }
    croner::parser::CronParser::new()
        .parse(expr)
        .map_err(|e| e.to_string())
}

/// What is wrong with a time definition, by field, so the validator can point at it.
#[derive(Debug, PartialEq, Eq)]
pub enum TimeDefError {
    Fmt(String),
    Start(String),
    End(String),
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
        let def = TimePartitions {
            schedule,
            tz,
            fmt,
            start: start_at,
            end: end_at,
            end_offset,
        };
        def.check_fmt_resolution()?;
        Ok(def)
    }

    fn cron(&self) -> croner::Cron {
        match &self.schedule {
            Schedule::Cron { cron, .. } => (**cron).clone(),
            other => parse_cron(&other.cron_expr()).expect("built-in schedules are valid cron"),
        }
    }

    /// Index of the window whose key is `key`, if it is a key of this definition
    /// (ignoring whether the window has ended yet).
    pub fn index_of_key(&self, key: &str) -> Option<i64> {
        let t = parse_time(key, &self.fmt).ok()?;
        let at = self.localize(t);
        let cron = self.cron();
        (at >= self.localize(self.start) && cron.is_time_matching(&at).unwrap_or(false))
            .then_some(0)
    }

    /// Localises a naive time in the definition's zone (a skipped time moves
    /// forward past the gap; a repeated one takes its first occurrence).
    pub fn localize(&self, t: NaiveDateTime) -> DateTime<Tz> {
        localize(&self.tz, t)
    }

    /// Rejects a `fmt` that cannot tell consecutive windows apart or cannot
    /// be read back, by formatting and re-parsing a sample of ticks.
    fn check_fmt_resolution(&self) -> Result<(), TimeDefError> {
        let cron = self.cron();
        let from = self.localize(self.start);
        let mut prev: Option<String> = None;
        for (n, tick) in cron
            .iter_from(from, croner::Direction::Forward)
            .take(64)
            .enumerate()
        {
            let key = tick.format(&self.fmt).to_string();
            if prev.as_deref() == Some(key.as_str()) {
                return Err(TimeDefError::Fmt(format!(
                    "the format `{}` is too coarse for a {} schedule: two windows would share the key `{key}`",
                    self.fmt,
                    self.schedule.type_name()
                )));
            }
            match parse_time(&key, &self.fmt) {
                Ok(back) if back == tick.naive_local() => {}
                _ if n > 0 => {
                    return Err(TimeDefError::Fmt(format!(
                        "the format `{}` cannot be read back: key `{key}` does not identify its window",
                        self.fmt
                    )));
                }
                _ => {}
            }
            prev = Some(key);
        }
        Ok(())
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
    Ok(date.and_time(time))
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
}
