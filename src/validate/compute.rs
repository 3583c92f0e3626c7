//! What computes an asset: `command`, `shell`, `sql` (and its `engine`) or
//! `source = true`.

use crate::diag::{Diagnostic, Diagnostics, Kind, suggest};
use crate::interp::Template;
use crate::load::Reader;
use crate::model::Compute;

use super::{Entry, Validator};

impl Validator<'_> {
    /// What computes the asset: exactly one of `command`, `shell`, `sql`
    /// and `source = true`; `None` after reporting none, two, or a bad one.
    /// `command` arguments may use `${env:…}`.
    pub(super) fn compute(
        &mut self,
        e: &Entry<'_, '_>,
        r: &Reader<'_, '_>,
        what: &str,
    ) -> Option<Compute> {
        let d = &mut *self.diags;
        let computes: Vec<&str> = ["command", "shell", "sql", "source"]
            .into_iter()
            .filter(|k| r.get(k).is_some())
            .collect();
        let mut compute = None;
        match computes.len() {
            0 => d.push(
                Diagnostic::error(Kind::Compute, format!("{what} has no compute"))
                    .at(&e.span, "needs one of `command`, `shell`, `sql` or `source = true`")
                    .help("add e.g. `shell = \"echo hi > \\\"$DG_OUTPUT\\\"\"`, or `source = true` for an asset produced outside dg"),
            ),
            1 => {}
            _ => d.push(
                Diagnostic::error(Kind::Compute, format!("{what} has more than one compute: {}", computes.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" and ")))
                    .at(&r.key_span(computes[1]).unwrap_or(e.span.clone()), "second compute")
                    .also(&r.key_span(computes[0]).unwrap_or(e.span.clone()), "first compute")
                    .help("keep exactly one of `command`, `shell`, `sql`, `source`"),
            ),
        }
        if computes.len() == 1 {
            compute = match computes[0] {
                "command" => r.str_array("command", d).and_then(|argv| {
                    if argv.is_empty() {
                        d.push(Diagnostic::error(Kind::Compute, format!("`command` of {what} is empty")).at(&r.span_of(r.get("command").unwrap()), "empty argv").help("give the program and its arguments, e.g. `[\"python3\", \"job.py\"]`"));
                        None
                    } else {
                        Some(argv)
                    }
                }).map(|argv| {
                    argv.iter().map(|a| Template::parse(&a.value).unwrap_or_else(|_| Template::literal(a.value.clone()))).collect()
                }).map(Compute::Command),
                "shell" => r.str("shell", d).map(|s| Compute::Shell(s.value)),
                "sql" => r.str("sql", d).map(|s| Compute::Sql(s.value)),
                _ => match r.bool("source", d) {
                    Some(true) => Some(Compute::Source),
                    Some(false) => {
                        d.push(Diagnostic::error(Kind::Compute, format!("{what} has `source = false` and no compute")).at(&r.span_of(r.get("source").unwrap()), "false").help("remove `source` and add `command`, `shell` or `sql`"));
                        None
                    }
                    None => None,
                },
            };
        }
        // command args may use ${env:...}
        if let Some(argv) = r.str_array("command", &mut Diagnostics::default()) {
            for a in &argv {
                self.template(a, what);
            }
        }
        compute
    }
}

/// `engine = "duckdb" | "sqlite"`: the engine of a `sql` asset's query.
pub(super) fn sql_engine(
    r: &Reader<'_, '_>,
    what: &str,
    is_sql: bool,
    d: &mut Diagnostics,
) -> Option<crate::model::SqlEngine> {
    use crate::model::SqlEngine;
    let s = r.str("engine", d)?;
    let Some(engine) = SqlEngine::parse(&s.value) else {
        d.push(
            Diagnostic::error(
                Kind::InvalidValue,
                format!("unknown SQL engine `{}` in {what}", s.value),
            )
            .at(&s.span, "not an engine")
            .help(suggest(&s.value, SqlEngine::NAMES, "SQL engines")),
        );
        return None;
    };
    let (why, label, help) = if !is_sql {
        (
            format!("{what} has `engine` but no `sql` query"),
            "only a `sql` asset runs in an engine",
            "remove `engine`, or compute the asset with `sql = \"SELECT …\"`",
        )
    } else if engine == SqlEngine::Duckdb && !cfg!(feature = "duckdb") {
        (
            format!("{what} runs in DuckDB, but this dg was built without it"),
            "needs the `duckdb` cargo feature",
            "rebuild dg with its default features, or use `engine = \"sqlite\"`",
        )
    } else {
        return Some(engine);
    };
    d.push(
        Diagnostic::error(Kind::InvalidValue, why)
            .at(&s.span, label)
            .help(help),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn compute_errors() {
        let src =
            "[assets.two]\nshell = \"true\"\nsql = \"SELECT 1\"\n\n[assets.none]\ngroup = \"g\"\n";
        let c = check(&[("a.toml", src)]);
        assert_eq!(c.kinds(), [Kind::Compute, Kind::Compute]);
        let two = &c.diags.items[0];
        assert_eq!(c.primary(two), c.at("a.toml", "sql", 0));
        assert_eq!(c.secondary(two, 0), c.at("a.toml", "shell", 0));
        let none = &c.diags.items[1];
        assert_eq!(none.message, "asset `none` has no compute");
        assert_eq!(c.primary(none), c.at("a.toml", "none", 0));
    }
}
