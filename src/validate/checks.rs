//! `[assets.KEY.checks.NAME]` and `freshness`: read and checked here, kept
//! apart from the rest of an asset's fields.

use crate::diag::{Diagnostic, Diagnostics, Kind};
use crate::interp::Template;
use crate::load::{Reader, Str};
use crate::model::{Check, CheckKind, CheckSeverity, Compute};

use super::EnvLookup;

pub(crate) const CHECK_FIELDS: &[&str] = &[
    "sql",
    "shell",
    "command",
    "severity",
    "blocking",
    "description",
];

/// The checks of an asset, in definition order. Every problem is reported;
/// a check with one is left out.
pub fn read_checks(
    r: &Reader<'_, '_>,
    what: &str,
    env: EnvLookup<'_>,
    d: &mut Diagnostics,
) -> Vec<Check> {
    let mut out = Vec::new();
    let Some((table, _)) = r.table("checks", d) else {
        return out;
    };
    for (k, v) in table.iter() {
        let name: &str = k.get_ref();
        let name_span = crate::diag::Span::new(r.file, k.span());
        let cwhat = format!("check `{name}` of {what}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            d.push(
                Diagnostic::error(
                    Kind::InvalidKey,
                    format!("invalid check name `{name}` in {what}"),
                )
                .at(&name_span, "invalid name")
                .help("check names use letters, digits, `_`, `-` and `.`, e.g. `no_null_ids`"),
            );
            continue;
        }
        let Some(c) = Reader::of_value(r.file, v, &cwhat, CHECK_FIELDS, d) else {
            continue;
        };
        let kinds: Vec<&str> = ["sql", "shell", "command"]
            .into_iter()
            .filter(|f| c.get(f).is_some())
            .collect();
        let kind = match kinds.as_slice() {
            [] => {
                d.push(
                    Diagnostic::error(Kind::Compute, format!("{cwhat} has nothing to run"))
                        .at(&name_span, "needs one of `sql`, `shell` or `command`")
                        .help("e.g. `sql = \"SELECT * FROM orders WHERE id IS NULL\"` (passes when it returns no rows), or `shell = \"test -s \\\"$DG_INPUT_ORDERS\\\"\"` (passes on exit 0)"),
                );
                None
            }
            [one] => match *one {
                "sql" => c.str("sql", d).map(|s| CheckKind::Sql(s.value)),
                "shell" => c.str("shell", d).map(|s| CheckKind::Shell(s.value)),
                _ => c.str_array("command", d).and_then(|argv| {
                    if argv.is_empty() {
                        d.push(
                            Diagnostic::error(Kind::Compute, format!("`command` of {cwhat} is empty"))
                                .at(&c.span_of(c.get("command").unwrap()), "empty argv")
                                .help("give the program and its arguments, e.g. `[\"python3\", \"checks/orders.py\"]`"),
                        );
                        return None;
                    }
                    let mut ok = true;
                    let argv: Vec<Template> = argv
                        .iter()
                        .map(|a: &Str| {
                            super::templates::check_template(a, &cwhat, env, d).unwrap_or_else(|| {
                                ok = false;
                                Template::literal(a.value.clone())
                            })
                        })
                        .collect();
                    ok.then_some(CheckKind::Command(argv))
                }),
            },
            [first, second, ..] => {
                d.push(
                    Diagnostic::error(
                        Kind::Compute,
                        format!("{cwhat} has more than one of `{first}` and `{second}`"),
                    )
                    .at(&c.key_span(second).unwrap_or(name_span.clone()), "second")
                    .also(&c.key_span(first).unwrap_or(name_span.clone()), "first")
                    .help("keep exactly one of `sql`, `shell`, `command`"),
                );
                None
            }
        };
        let severity = match c.str("severity", d) {
            None => Some(CheckSeverity::Error),
            Some(s) => match s.value.as_str() {
                "error" => Some(CheckSeverity::Error),
                "warn" => Some(CheckSeverity::Warn),
                other => {
                    d.push(
                        Diagnostic::error(
                            Kind::InvalidValue,
                            format!("`severity` of {cwhat} must be \"error\" or \"warn\", found `{other}`"),
                        )
                        .at(&s.span, "unknown severity")
                        .help(crate::diag::suggest(other, &["error", "warn"], "severities")),
                    );
                    None
                }
            },
        };
        let blocking = c.bool("blocking", d).unwrap_or(false);
        // Checked, not kept: nothing shows a check's description yet.
        c.str("description", d);
        if let (Some(kind), Some(severity)) = (kind, severity) {
            out.push(Check {
                name: name.to_string(),
                span: name_span,
                kind,
                severity,
                blocking,
            });
        }
    }
    out
}

/// `freshness = "26h"`: more than zero, at most ten years.
pub fn read_freshness(
    r: &Reader<'_, '_>,
    what: &str,
    d: &mut Diagnostics,
) -> Option<std::time::Duration> {
    let s = r.str("freshness", d)?;
    match humantime::parse_duration(&s.value) {
        Ok(t) if !t.is_zero() && t <= std::time::Duration::from_secs(3650 * 24 * 3600) => Some(t),
        Ok(_) => {
            d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("`freshness` of {what} must be more than zero and at most 10 years, found `{}`", s.value),
                )
                .at(&s.span, "out of range"),
            );
            None
        }
        Err(e) => {
            d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("`freshness` of {what} is not a duration: {e}"),
                )
                .at(&s.span, "not a duration")
                .help("write e.g. \"26h\", \"30m\" or \"7days\""),
            );
            None
        }
    }
}

/// Checks that can never run or never see data: on a source asset (never
/// materialized by dg), and `sql` checks of an asset that stores nothing.
pub fn check_fits(
    checks: &[Check],
    what: &str,
    compute: Option<&Compute>,
    output: bool,
    d: &mut Diagnostics,
) {
    for c in checks {
        let (why, label, help) = if matches!(compute, Some(Compute::Source)) {
            (
                format!(
                    "check `{}` of {what} would never run: dg never materializes a source asset",
                    c.name
                ),
                "never runs",
                "checks run after dg stores a partition; check the data in the asset that reads it instead",
            )
        } else if !output && matches!(c.kind, CheckKind::Sql(_)) {
            (
                format!(
                    "`sql` check `{}` of {what} has no data to query: the asset stores nothing (`output = false`)",
                    c.name
                ),
                "no table to query",
                "use a `shell` or `command` check, or let the asset store its output",
            )
        } else {
            continue;
        };
        d.push(
            Diagnostic::error(Kind::Compute, why)
                .at(&c.span, label)
                .help(help),
        );
    }
}
