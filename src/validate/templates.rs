//! `${env:NAME}` references in definitions: they must parse when the
//! definitions are read; an unset variable is a warning until a run needs it.

use toml::de::DeValue;

use crate::diag::{Diagnostic, Diagnostics, FileId, Kind, Span};
use crate::interp::Template;
use crate::load::{self, Str, Value};

use super::{EnvLookup, Validator};

impl Validator<'_> {
    /// Parses every string under `table` as a template, and warns about unset variables.
    pub(super) fn check_templates(&mut self, file: FileId, table: &load::Table<'_>, what: &str) {
        for (_, v) in table.iter() {
            self.check_template_value(file, v, what);
        }
    }

    fn check_template_value(&mut self, file: FileId, v: &Value<'_>, what: &str) {
        match v.get_ref() {
            DeValue::String(s) => {
                self.template(
                    &Str {
                        value: s.to_string(),
                        span: Span::new(file, v.span()),
                    },
                    what,
                );
            }
            DeValue::Array(a) => a
                .iter()
                .for_each(|x| self.check_template_value(file, x, what)),
            DeValue::Table(t) => self.check_templates(file, t, what),
            _ => {}
        }
    }

    pub(super) fn template(&mut self, s: &Str, what: &str) -> Option<Template> {
        check_template(s, what, self.env, self.diags)
    }
}

pub(super) fn check_template(
    s: &Str,
    what: &str,
    env: EnvLookup<'_>,
    diags: &mut Diagnostics,
) -> Option<Template> {
    match Template::parse(&s.value) {
        Ok(t) => {
            for name in t.unset_vars(env) {
                diags.push(
                    Diagnostic::warning(
                        Kind::EnvVar,
                        format!("environment variable `{name}` is not set (used by {what})"),
                    )
                    .at(&s.span, format!("needs `{name}`"))
                    .help(format!(
                        "set `{name}` before running, or give a default: `${{env:{name}:-value}}`"
                    )),
                );
            }
            Some(t)
        }
        Err(e) => {
            diags.push(
                Diagnostic::error(
                    Kind::EnvVar,
                    format!("invalid environment reference in {what}"),
                )
                .help_opt((!e.message.contains("${env:NAME}")).then(|| {
                    "write `${env:NAME}` or `${env:NAME:-default}`; `$${` is a literal `${`"
                        .to_string()
                }))
                .at(&s.span, e.message),
            );
            None
        }
    }
}

/// Checks every string in a TOML value (metadata) as a template.
pub(super) fn check_template_values(
    file: FileId,
    v: &Value<'_>,
    what: &str,
    env: EnvLookup<'_>,
    diags: &mut Diagnostics,
) {
    match v.get_ref() {
        DeValue::String(text) => {
            let s = Str {
                value: text.to_string(),
                span: Span::new(file, v.span()),
            };
            check_template(&s, what, env, diags);
        }
        DeValue::Array(a) => a
            .iter()
            .for_each(|x| check_template_values(file, x, what, env, diags)),
        DeValue::Table(t) => t
            .iter()
            .for_each(|(_, x)| check_template_values(file, x, what, env, diags)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn unset_env_is_a_warning_and_set_env_is_fine() {
        let src = "[assets.a]\nshell = \"true\"\nenv = { X = \"${env:DG_UNIT_UNSET}\" }\n";
        let c = check(&[("a.toml", src)]);
        let d = c.located(Kind::EnvVar, ("a.toml", "\"${env:DG_UNIT_UNSET}\"", 0));
        assert_eq!(d.severity, Severity::Warning);
        assert!(c.defs.is_some(), "warnings do not stop the load");

        let c = check_env(&[("a.toml", src)], &[("DG_UNIT_UNSET", "1")]);
        assert!(c.diags.items.is_empty(), "{:#?}", c.diags.items);
        assert!(c.defs.is_some());
    }

    #[test]
    fn bad_env_syntax_names_the_asset() {
        let src = "[assets.a]\nshell = \"true\"\nenv = { X = \"${env:X\" }\n";
        let c = check(&[("a.toml", src)]);
        let message = "invalid environment reference in asset `a`";
        let d = c.expect(Kind::EnvVar, message, ("a.toml", "\"${env:X\"", 0));
        assert_eq!(d.severity, Severity::Error);
    }
}
