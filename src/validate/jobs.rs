//! `[jobs.NAME]`: a selection, its targeting and an optional schedule.
//! The selection is parsed and resolved later, by `select::check_jobs`,
//! which needs the whole model.

use crate::diag::{Diagnostic, Kind, Span};
use crate::load::Reader;
use crate::model::{Catchup, Job, JobSchedule, JobTargeting};

use super::fields::required;
use super::partitions::{cron_schedule, time_zone};
use super::{Entry, Validator};

pub(crate) const JOB_FIELDS: &[&str] = &[
    "select",
    "partition",
    "partition_range",
    "last",
    "all_partitions",
    "missing",
    "stale",
    "cron",
    "timezone",
    "catchup",
    "description",
];
const JOB_TARGETING: &[&str] = &["partition", "partition_range", "last", "all_partitions"];

impl Validator<'_> {
    /// A `[jobs.NAME]` table.
    fn job(&mut self, e: &Entry<'_, '_>) -> Option<Job> {
        let what = format!("job `{}`", e.name);
        let d = &mut *self.diags;
        let before = d.error_count();
        let r = Reader::of_value(e.file, e.value, what.clone(), JOB_FIELDS, d)?;
        let select = r.str("select", d);
        let help = Some(
            "add `select = \"*\"` (every asset) or a selection such as `select = \"+daily_report\"`",
        );
        let select = match required(select, &r, "select", &what, &e.span, help, d) {
            Some(s) if s.value.trim().is_empty() => {
                d.push(
                    Diagnostic::error(Kind::InvalidValue, format!("`select` in {what} is empty"))
                        .at(&s.span, "empty selection")
                        .help("select assets as `--select` does, e.g. `select = \"*\"` or `select = \"+daily_report\"`"),
                );
                None
            }
            s => s,
        };
        // At most one targeting field.
        let mut given: Vec<(&str, Span)> = JOB_TARGETING
            .iter()
            .filter_map(|&f| r.key_span(f).map(|s| (f, s)))
            .collect();
        given.sort_by_key(|(_, s)| s.range.start);
        if given.len() > 1 {
            let mut diag = Diagnostic::error(
                Kind::InvalidValue,
                format!(
                    "{what} has {} targeting fields: `{}` and `{}`",
                    given.len(),
                    given[0].0,
                    given[1].0
                ),
            )
            .at(&given[1].1, "second targeting field");
            diag = diag.also(&given[0].1, "first targeting field");
            d.push(
                diag.help(
                    "keep one of `partition`, `partition_range`, `last` and `all_partitions`",
                ),
            );
        }
        let mut targeting = JobTargeting::None;
        if let Some(p) = r.str("partition", d) {
            if p.value.trim().is_empty() {
                d.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!("`partition` in {what} is empty"),
                    )
                    .at(&p.span, "empty partition key")
                    .help("give a key, `\"latest\"`, or `\"DEF:KEY\"`"),
                );
            }
            targeting = JobTargeting::Partition(p.value);
        }
        if let Some(p) = r.str("partition_range", d) {
            match p.value.split_once("...") {
                Some((a, b)) if !a.is_empty() && !b.is_empty() => {}
                _ => d.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!("invalid `partition_range` `{}` in {what}", p.value),
                    )
                    .at(&p.span, "expected `START...END`")
                    .help(
                        "e.g. `partition_range = \"2024-01-01...2024-01-07\"` (both ends included)",
                    ),
                ),
            }
            targeting = JobTargeting::PartitionRange(p.value);
        }
        if let Some((n, span)) = r.int("last", d) {
            match u32::try_from(n) {
                Ok(n) if n >= 1 => targeting = JobTargeting::Last(n),
                _ => d.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!("`last` in {what} must be at least 1, found {n}"),
                    )
                    .at(&span, "expected a positive count")
                    .help("`last = N` targets the last N partitions of each definition"),
                ),
            }
        }
        if let Some(all) = r.bool("all_partitions", d)
            && all
        {
            targeting = JobTargeting::AllPartitions;
        }
        let missing = r.bool("missing", d).unwrap_or(false);
        let stale = r.bool("stale", d).unwrap_or(false);
        let _ = r.str("description", d);
        let tz = match r.str("timezone", d) {
            Some(s) => time_zone(&s, &what, d),
            None => Some(chrono_tz::UTC),
        };
        let catchup = match r.str("catchup", d) {
            None => Catchup::Latest,
            Some(c) => match c.value.as_str() {
                "latest" => Catchup::Latest,
                "all" => Catchup::All,
                other => {
                    d.push(
                        Diagnostic::error(
                            Kind::InvalidValue,
                            format!("invalid `catchup` `{other}` in {what}"),
                        )
                        .at(&c.span, "expected `latest` or `all`")
                        .help(match crate::diag::did_you_mean(other, ["latest", "all"]) {
                            Some(s) => format!("did you mean `{s}`? `latest` runs once for the newest missed tick, `all` once per missed tick"),
                            None => "`latest` runs once for the newest missed tick, `all` once per missed tick".into(),
                        }),
                    );
                    Catchup::Latest
                }
            },
        };
        let cron = r.str("cron", d).and_then(|c| {
            let cron = cron_schedule(&c, &what, "`0 * * * *` (hourly)", d)?;
            Some((c.value, cron))
        });
        if cron.is_none() && r.get("cron").is_none() {
            for f in ["timezone", "catchup"] {
                if let Some(span) = r.key_span(f) {
                    d.push(
                        Diagnostic::warning(
                            Kind::InvalidValue,
                            format!("`{f}` in {what} has no effect without `cron`"),
                        )
                        .at(&span, "ignored")
                        .help(
                            "add `cron = \"…\"` for `dg tick` to run the job, or remove this field",
                        ),
                    );
                }
            }
        }
        if d.error_count() > before {
            return None;
        }
        let select = select?;
        Some(Job {
            name: e.name.clone(),
            select: select.value,
            select_span: select.span,
            targeting,
            missing,
            stale,
            schedule: cron.map(|(expr, cron)| JobSchedule {
                expr,
                cron,
                tz: tz.unwrap_or(chrono_tz::UTC),
                catchup,
            }),
        })
    }
}

impl Validator<'_> {
    /// Pass 7: the jobs. Their selections are resolved by the caller,
    /// which may use the later stages.
    pub(super) fn jobs(&mut self, entries: &[Entry<'_, '_>]) -> indexmap::IndexMap<String, Job> {
        let mut jobs = indexmap::IndexMap::new();
        for e in entries {
            if let Some(j) = self.job(e) {
                jobs.insert(e.name.clone(), j);
            }
        }
        jobs
    }
}
