//! What computes an asset: `command`, `shell`, `sql` (and its `engine`) or
//! `source = true`.

use crate::diag::{Diagnostic, Diagnostics, Kind, suggest};
use crate::load::Reader;

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
    if !is_sql {
        d.push(
            Diagnostic::error(
                Kind::InvalidValue,
                format!("{what} has `engine` but no `sql` query"),
            )
            .at(&s.span, "only a `sql` asset runs in an engine")
            .help("remove `engine`, or compute the asset with `sql = \"SELECT …\"`"),
        );
        return None;
    }
    if engine == SqlEngine::Duckdb && !cfg!(feature = "duckdb") {
        d.push(
            Diagnostic::error(
                Kind::InvalidValue,
                format!("{what} runs in DuckDB, but this dg was built without it"),
            )
            .at(&s.span, "needs the `duckdb` cargo feature")
            .help("rebuild dg with its default features, or use `engine = \"sqlite\"`"),
        );
        return None;
    }
    Some(engine)
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
