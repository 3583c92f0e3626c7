//! `${env:NAME}` interpolation in definition strings.
//!
//! Templates are parsed when definitions are validated (so a malformed one is
//! a located error at `dg check defs`) and resolved when a run starts, against
//! the environment of that run. An unset variable without a default is an
//! error that names it, never an empty string.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    Env {
        name: String,
        default: Option<String>,
    },
}

/// A string that may reference environment variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A template that could not be parsed: where (byte offset in the string) and why.
#[derive(Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

/// An environment variable that a template needs and that is not set.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("environment variable `{0}` is not set")]
pub struct UnsetVar(pub String);

impl Template {
    /// Parses `text`: `${env:NAME}`, `${env:NAME:-default}`, and `$${` for a literal `${`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(tail) = after.strip_prefix("$${") {
                lit.push_str("${");
                rest = tail;
                offset += i + 3;
            } else if let Some(body) = after.strip_prefix("${") {
                let Some(close) = body.find('}') else {
                    return Err(TemplateError {
                        offset: offset + i,
                        message: "`${` is not closed by `}`".into(),
                    });
                };
                let inner = &body[..close];
                let Some(spec) = inner.strip_prefix("env:") else {
                    return Err(TemplateError {
                        offset: offset + i,
                        message: format!(
                            "unsupported interpolation `${{{inner}}}`: use `${{env:NAME}}`, or `$${{` for a literal `${{`"
                        ),
                    });
                };
                let (name, default) = match spec.split_once(":-") {
                    Some((n, d)) => (n, Some(d.to_string())),
                    None => (spec, None),
                };
                if !valid_name(name) {
                    return Err(TemplateError {
                        offset: offset + i,
                        message: format!(
                            "`{name}` is not a valid environment variable name (letters, digits and `_`, not starting with a digit)"
                        ),
                    });
                }
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Env {
                    name: name.to_string(),
                    default,
                });
                rest = &body[close + 1..];
                offset += i + 2 + close + 1;
            } else {
                lit.push('$');
                rest = &after[1..];
                offset += i + 1;
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() || parts.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// A template with no variables.
    pub fn literal(text: impl Into<String>) -> Template {
        Template {
            parts: vec![Part::Lit(text.into())],
        }
    }

    /// Variables without a default that are not set according to `lookup`.
    pub fn unset_vars(&self, lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Env {
                    name,
                    default: None,
                } if lookup(name).is_none() => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Resolves against `lookup` (usually the process environment).
    pub fn resolve(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<String, UnsetVar> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Env { name, default } => match (lookup(name), default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => return Err(UnsetVar(name.clone())),
                },
            }
        }
        Ok(out)
    }

    /// Resolves against the environment of the command ([`env_var`]).
    pub fn resolve_env(&self) -> Result<String, UnsetVar> {
        self.resolve(env_var)
    }
}

static OVERLAY: std::sync::RwLock<Vec<(String, String)>> = std::sync::RwLock::new(Vec::new());

/// Sets variables that win over the process environment for `${env:…}`
/// and for steps (a profile's `[profiles.NAME.env]`). Steps get them with
/// [`overlay`].
pub fn set_overlay(vars: Vec<(String, String)>) {
    *OVERLAY.write().unwrap_or_else(|e| e.into_inner()) = vars;
}

/// The variables set with [`set_overlay`].
pub fn overlay() -> Vec<(String, String)> {
    OVERLAY.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A variable of the command's environment: the profile's, else the
/// process's.
pub fn env_var(name: &str) -> Option<String> {
    let o = OVERLAY.read().unwrap_or_else(|e| e.into_inner());
    if let Some((_, v)) = o.iter().find(|(k, _)| k == name) {
        return Some(v.clone());
    }
    drop(o);
    std::env::var(name).ok()
}

/// Resolves `${env:…}` in every string of a JSON value (asset `metadata`).
/// Strings were checked at validation; one that is not a valid template is
/// kept as written.
pub fn resolve_json(
    v: &serde_json::Value,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<serde_json::Value, UnsetVar> {
    use serde_json::Value;
    Ok(match v {
        Value::String(s) => match Template::parse(s) {
            Ok(t) => Value::String(t.resolve(lookup)?),
            Err(_) => v.clone(),
        },
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| resolve_json(x, lookup))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), resolve_json(x, lookup)?)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

impl fmt::Display for Template {
    /// The template as written (with `${…}` references kept).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                Part::Lit(s) => f.write_str(&s.replace("${", "$${"))?,
                Part::Env {
                    name,
                    default: None,
                } => write!(f, "${{env:{name}}}")?,
                Part::Env {
                    name,
                    default: Some(d),
                } => write!(f, "${{env:{name}:-{d}}}")?,
            }
        }
        Ok(())
    }
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(n: &str) -> Option<String> {
        (n == "HOME_DIR").then(|| "/h".to_string())
    }

    #[test]
    fn resolves_json_strings_at_any_depth() {
        let v = serde_json::json!({"a": "${env:HOME_DIR}/x", "b": [1, "${env:NOPE:-d}"], "c": {"d": "$${env:X}"}});
        let got = resolve_json(&v, &env).unwrap();
        assert_eq!(
            got,
            serde_json::json!({"a": "/h/x", "b": [1, "d"], "c": {"d": "${env:X}"}})
        );
        let unset = serde_json::json!({"a": ["${env:NOPE}"]});
        assert_eq!(resolve_json(&unset, &env).unwrap_err().0, "NOPE");
    }

    #[test]
    fn resolves_vars_defaults_and_escapes() {
        let t = Template::parse("a ${env:HOME_DIR}/x ${env:NOPE:-d} $${env:LIT} $5").unwrap();
        assert_eq!(t.resolve(env).unwrap(), "a /h/x d ${env:LIT} $5");
    }

    #[test]
    fn unset_is_an_error_naming_it() {
        let t = Template::parse("${env:MISSING_ONE}").unwrap();
        assert_eq!(t.resolve(env), Err(UnsetVar("MISSING_ONE".into())));
        assert_eq!(t.unset_vars(env), vec!["MISSING_ONE".to_string()]);
    }

    #[test]
    fn bad_syntax_is_located() {
        let e = Template::parse("ab ${env:X").unwrap_err();
        assert_eq!(e.offset, 3);
        let e = Template::parse("x${foo}").unwrap_err();
        assert_eq!(e.offset, 1);
        assert!(Template::parse("${env:1X}").is_err());
    }

    #[test]
    fn display_round_trips() {
        let s = "p ${env:A:-b} $${q";
        assert_eq!(Template::parse(s).unwrap().to_string(), s);
    }
}
