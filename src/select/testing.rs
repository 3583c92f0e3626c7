//! The fixtures of the selection tests: a small graph and helpers to
//! select from it.

pub(super) use std::collections::BTreeSet;

pub(super) use super::error::SelectError;
pub(super) use super::{all, parse, select};
pub(super) use crate::model::Defs;

/// raw/events ─► staging/events ─┐
///                               ├─► report ─► my-asset
/// raw/users  ─► staging/users  ─┘
/// lonely
pub(super) const DEFS: &str = r#"
[assets."raw/events"]
source = true
group = "raw"
tags = { team = "data" }

[assets."raw/users"]
shell = "true"
group = "raw"
tags = { team = "data", pii = "" }

[assets."staging/events"]
sql = "SELECT * FROM events"
deps = ["raw/events"]
group = "staging"

[assets."staging/users"]
sql = "SELECT * FROM users"
deps = ["raw/users"]
group = "staging"
tags = { pii = "yes" }

[assets.report]
command = ["true"]
deps = ["staging/events", "staging/users"]
group = "marts"
tags = { team = "analytics" }

[assets.my-asset]
shell = "true"
deps = ["report"]
group = "marts"

[assets.lonely]
shell = "true"
"#;

pub(super) fn defs_from(text: &str) -> Defs {
    crate::validate::defs_for_test(text)
}

pub(super) fn defs() -> Defs {
    defs_from(DEFS)
}

/// The keys a selection resolves to.
pub(super) fn sel(d: &Defs, text: &str) -> BTreeSet<String> {
    let ids = parse(text)
        .unwrap_or_else(|e| panic!("{}", e.render(text, false)))
        .resolve(d)
        .unwrap_or_else(|e| panic!("{}", e.render(text, false)));
    ids.iter().map(|&i| d.assets[i].key.clone()).collect()
}

pub(super) fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

pub(super) fn parse_err(text: &str) -> SelectError {
    match parse(text) {
        Ok(s) => panic!("`{text}` parsed: {s:?}"),
        Err(e) => e,
    }
}

pub(super) fn resolve_err(d: &Defs, text: &str) -> SelectError {
    match parse(text).map(|s| s.resolve(d)) {
        Ok(Ok(ids)) => panic!("`{text}` resolved to {ids:?}"),
        Ok(Err(e)) | Err(e) => e,
    }
}

/// The text an error's span covers.
pub(super) fn spanned<'t>(e: &SelectError, text: &'t str) -> &'t str {
    &text[e.span.clone()]
}

pub(super) const ALL: [&str; 7] = [
    "raw/events",
    "raw/users",
    "staging/events",
    "staging/users",
    "report",
    "my-asset",
    "lonely",
];
