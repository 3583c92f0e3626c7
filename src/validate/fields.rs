//! What several passes report alike: a value that must be a table, a
//! required field that is absent, and two names that a step would see as one
//! environment variable.

use toml::de::DeValue;

use crate::diag::{Diagnostic, Diagnostics, FileId, Kind, Span};
use crate::load::{self, Reader, Value};

/// The table that `v`, `what` in file `file`, must be. Otherwise reports
/// what it is instead, at `v` with `label`.
pub(super) fn table_of<'t, 'i>(
    file: FileId,
    v: &'t Value<'i>,
    what: &str,
    label: &str,
    d: &mut Diagnostics,
) -> Option<&'t load::Table<'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t),
        other => {
            d.push(
                Diagnostic::error(
                    Kind::WrongType,
                    format!("{what} must be a table, found {}", load::type_name(other)),
                )
                .at(&Span::new(file, v.span()), label),
            );
            None
        }
    }
}

/// `got`, field `field` of `what` as read by `r`. When the field is absent
/// (not merely invalid: that is reported already), reports it missing at
/// `at`, with `help`.
pub(super) fn required<T>(
    got: Option<T>,
    r: &Reader<'_, '_>,
    field: &str,
    what: &str,
    at: &Span,
    help: Option<&str>,
    d: &mut Diagnostics,
) -> Option<T> {
    if got.is_none() && r.get(field).is_none() {
        d.push(
            Diagnostic::error(Kind::MissingField, format!("{what} has no `{field}`"))
                .at(at, format!("missing `{field}`"))
                .help_opt(help.map(str::to_string)),
        );
    }
    got
}

/// Two of `what`'s `things` (inputs, dimensions, fields), `first` and
/// `later` (name and where), that a step would see as one variable `var`.
pub(super) fn same_variable(
    things: &str,
    what: &str,
    first: (&str, &Span),
    later: (&str, &Span),
    var: &str,
    help: String,
) -> Diagnostic {
    let (a, a_span) = first;
    let (b, b_span) = later;
    Diagnostic::error(
        Kind::Duplicate,
        format!("{things} `{a}` and `{b}` of {what} both become `{var}`"),
    )
    .at(b_span, format!("`{b}` → `{var}`"))
    .also(a_span, format!("`{a}` → `{var}`"))
    .help(help)
}
