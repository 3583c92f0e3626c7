//! How an asset's steps run, beside what they compute: `retry`/`retries`,
//! `backfill` (range steps), `executor`, `pool` and `timeout`.

use toml::de::DeValue;

use crate::diag::{Diagnostic, Diagnostics, Kind, suggest};
use crate::formats::Format;
use crate::load::{self, MAX_TIMEOUT, Reader};
use crate::model::{RetryPolicy, SlurmOptions};

use super::Validator;

impl Validator<'_> {
    /// `pool = "NAME"`: one of dg.toml's `[pools]`, when they are known.
    pub(super) fn pool(
        &mut self,
        r: &Reader<'_, '_>,
        what: &str,
    ) -> Option<(String, crate::diag::Span)> {
        let d = &mut *self.diags;
        r.str("pool", d).map(|p| {
            if let Some(known) = self.pools
                && !known.contains_key(&p.value)
            {
                let names: Vec<&str> = known.keys().map(String::as_str).collect();
                d.push(
                    Diagnostic::error(
                        Kind::UnknownReference,
                        format!("{what} names pool `{}`, which `[pools]` in dg.toml does not declare", p.value),
                    )
                    .at(&p.span, "unknown pool")
                    .help(if names.is_empty() {
                        format!(
                            "declare it in dg.toml with how many of its steps may run at once:\n[pools]\n{} = 2",
                            if p.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                                p.value.clone()
                            } else {
                                format!("{:?}", p.value)
                            }
                        )
                    } else {
                        suggest(&p.value, &names, "declared pools")
                    }),
                );
            }
            (p.value, p.span)
        })
    }
}

/// `retries = N` and `retry = { … }` of an asset.
pub(super) fn retry(r: &Reader<'_, '_>, what: &str, d: &mut Diagnostics) -> RetryPolicy {
    let retries = match r.int("retries", d) {
        Some((n, s)) if !(0..=100).contains(&n) => {
            d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("`retries` of {what} must be between 0 and 100, found {n}"),
                )
                .at(&s, "out of range"),
            );
            0
        }
        Some((n, _)) => n as u32,
        None => 0,
    };
    retry_policy(r, retries, what, d)
}

/// `executor = { … }` of an asset: Slurm options for its steps.
pub(super) fn executor(
    r: &Reader<'_, '_>,
    what: &str,
    d: &mut Diagnostics,
) -> Option<SlurmOptions> {
    r.get("executor").and_then(|v| {
        let x = Reader::of_value(
            r.file,
            v,
            format!("`executor` of {what}"),
            crate::project::ASSET_EXECUTOR_FIELDS,
            d,
        )?;
        Some(crate::project::read_slurm_options(&x, d))
    })
}

/// `timeout = "DURATION"` of an asset: more than zero, at most a year.
pub(super) fn timeout(
    r: &Reader<'_, '_>,
    what: &str,
    d: &mut Diagnostics,
) -> Option<std::time::Duration> {
    match r.str("timeout", d) {
        Some(s) => match humantime::parse_duration(&s.value) {
            Ok(t) if !t.is_zero() && t <= MAX_TIMEOUT => Some(t),
            Ok(t) if t.is_zero() => {
                d.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!("`timeout` of {what} must be more than zero"),
                    )
                    .at(&s.span, "zero"),
                );
                None
            }
            Ok(_) => {
                d.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!(
                            "`timeout` of {what} must be more than zero and at most 365 days, found `{}`",
                            s.value
                        ),
                    )
                    .at(&s.span, "out of range")
                    .help("a step that may run longer than that needs no `timeout`"),
                );
                None
            }
            Err(err) => {
                d.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!("invalid `timeout` `{}` in {what}: {err}", s.value),
                    )
                    .at(&s.span, "not a duration")
                    .help("write a duration such as `90s`, `15m` or `2h 30m`"),
                );
                None
            }
        },
        None => None,
    }
}

pub(crate) const RETRY_FIELDS: &[&str] = &["max", "delay", "backoff", "jitter"];

/// `backfill = { max_partitions_per_step = N }` or `backfill = "single_step"`:
/// range steps, for time, static and dynamic partitions of a table format.
pub(super) fn backfill_policy(
    r: &Reader<'_, '_>,
    partitions: Option<&crate::model::AssetPartitions>,
    format: Format,
    what: &str,
    d: &mut Diagnostics,
) -> Option<crate::model::Backfill> {
    use crate::model::Backfill;
    let v = r.get("backfill")?;
    let span = r.span_of(v);
    // A value that is neither shape, with how to write them.
    let wrong_shape = |message: String, label: &str, d: &mut Diagnostics| {
        d.push(
            Diagnostic::error(Kind::InvalidValue, message)
                .at(&span, label)
                .help("write `backfill = { max_partitions_per_step = 100 }`, or `backfill = \"single_step\"` for one step per run of consecutive partitions"),
        );
    };
    let policy = match v.get_ref() {
        DeValue::String(s) if s.as_ref() == "single_step" => Backfill { max_per_step: None },
        DeValue::String(s) => {
            let message = format!("unknown `backfill` `{s}` in {what}");
            wrong_shape(message, "not a backfill policy", d);
            return None;
        }
        _ => {
            let t = Reader::of_value(
                r.file,
                v,
                format!("`backfill` of {what}"),
                &["max_partitions_per_step"],
                d,
            )?;
            match t.int("max_partitions_per_step", d) {
                Some((n, _)) if (1..=1_000_000).contains(&n) => Backfill {
                    max_per_step: Some(n as u32),
                },
                Some((n, s)) => {
                    d.push(
                        Diagnostic::error(
                            Kind::InvalidValue,
                            format!(
                                "`max_partitions_per_step` of {what} must be between 1 and 1000000, found {n}"
                            ),
                        )
                        .at(&s, "out of range")
                        .help("it is how many consecutive partitions one step materializes"),
                    );
                    return None;
                }
                None => {
                    if t.get("max_partitions_per_step").is_none() {
                        let message =
                            format!("`backfill` of {what} has no `max_partitions_per_step`");
                        wrong_shape(message, "missing `max_partitions_per_step`", d);
                    }
                    return None;
                }
            }
        }
    };
    let unsupported = |why: String, help: &str, d: &mut Diagnostics| {
        d.push(
            Diagnostic::error(
                Kind::InvalidValue,
                format!("{what} has `backfill` but {why}"),
            )
            .at(&span, "range steps")
            .help(help.to_string()),
        );
    };
    match partitions.map(|p| &*p.def) {
        // Already reported.
        None if r.get("partitions").is_some() => return None,
        None => {
            unsupported(
                "is not partitioned".into(),
                "`backfill` groups partitions into steps; remove it, or give the asset `partitions`",
                d,
            );
            return None;
        }
        Some(crate::partitions::PartitionsDef::Multi(_)) => {
            unsupported(
                "its partitions are multi-dimensional, which range steps do not support yet".into(),
                "remove `backfill` (one step per partition), or partition the asset by time, a static or a dynamic definition",
                d,
            );
            return None;
        }
        Some(_) => {}
    }
    if format == Format::File {
        unsupported(
            "its format is `file` (opaque bytes), which dg cannot split by `dg_partition`".into(),
            "range steps write one table with a `dg_partition` column: use csv, jsonl or parquet",
            d,
        );
        return None;
    }
    if r.get("source").is_some() {
        unsupported(
            "it is a source asset, which dg never materializes".into(),
            "remove `backfill`",
            d,
        );
        return None;
    }
    Some(policy)
}

/// `retry = { max, delay, backoff, jitter }` of an asset, or its
/// `retries = N` (`retries`, already read); both at once is an error.
fn retry_policy(
    r: &Reader<'_, '_>,
    retries: u32,
    what: &str,
    d: &mut Diagnostics,
) -> crate::model::RetryPolicy {
    use crate::model::{Backoff, Jitter, RetryPolicy};
    let Some(v) = r.get("retry") else {
        return if r.get("retries").is_some() {
            RetryPolicy::retries(retries)
        } else {
            RetryPolicy::NONE
        };
    };
    if let (Some(a), Some(b)) = (r.key_span("retries"), r.key_span("retry")) {
        d.push(
            Diagnostic::error(
                Kind::InvalidValue,
                format!("{what} has both `retries` and `retry`"),
            )
            .at(&b, "a retry policy")
            .also(&a, "and a retry count")
            .help("keep one: `retry = { max = N, … }` says everything `retries = N` does"),
        );
    }
    let what = format!("`retry` of {what}");
    let Some(t) = Reader::of_value(r.file, v, what.clone(), RETRY_FIELDS, d) else {
        return RetryPolicy::retries(retries);
    };
    let mut p = RetryPolicy {
        max: 1,
        delay: std::time::Duration::ZERO,
        backoff: Backoff::Constant,
        jitter: Jitter::None,
        cap: RetryPolicy::MAX_WAIT,
        declared: true,
    };
    match t.int("max", d) {
        Some((n, s)) if !(0..=100).contains(&n) => d.push(
            Diagnostic::error(
                Kind::InvalidValue,
                format!("`max` of {what} must be between 0 and 100, found {n}"),
            )
            .at(&s, "out of range")
            .help("`max` is how many times a failed attempt is tried again"),
        ),
        Some((n, _)) => p.max = n as u32,
        None => {}
    }
    if let Some(s) = t.str("delay", d) {
        match humantime::parse_duration(&s.value) {
            Ok(x) if x <= RetryPolicy::MAX_WAIT => p.delay = x,
            Ok(_) => d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!(
                        "`delay` of {what} must be at most 24 hours, found `{}`",
                        s.value
                    ),
                )
                .at(&s.span, "out of range"),
            ),
            Err(err) => d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("invalid `delay` `{}` in {what}: {err}", s.value),
                )
                .at(&s.span, "not a duration")
                .help("write a duration such as `500ms`, `10s` or `2m`"),
            ),
        }
    }
    if let Some(s) = t.str("backoff", d) {
        const BACKOFFS: &[&str] = &["constant", "linear", "exponential"];
        match s.value.as_str() {
            "constant" => p.backoff = Backoff::Constant,
            "linear" => p.backoff = Backoff::Linear,
            "exponential" => p.backoff = Backoff::Exponential,
            other => d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("unknown `backoff` `{other}` in {what}"),
                )
                .at(&s.span, "unknown backoff")
                .help(suggest(other, BACKOFFS, "backoffs")),
            ),
        }
    }
    if let Some(v) = t.get("jitter") {
        const JITTERS: &[&str] = &["full", "plus_minus"];
        match v.get_ref() {
            DeValue::Boolean(b) => p.jitter = if *b { Jitter::Full } else { Jitter::None },
            DeValue::String(j) if j == "full" => p.jitter = Jitter::Full,
            DeValue::String(j) if j == "plus_minus" => p.jitter = Jitter::PlusMinus,
            DeValue::String(j) => d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("unknown `jitter` `{j}` in {what}"),
                )
                .at(&t.span_of(v), "unknown jitter")
                .help(suggest(j, JITTERS, "jitters (or true / false)")),
            ),
            other => d.push(
                Diagnostic::error(
                    Kind::WrongType,
                    format!(
                        "`jitter` in {what} must be true, false, \"full\" or \"plus_minus\", found {}",
                        load::type_name(other)
                    ),
                )
                .at(&t.span_of(v), "expected a boolean or a string"),
            ),
        }
    }
    p
}
