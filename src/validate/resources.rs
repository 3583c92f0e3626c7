//! `[resources.NAME]`: I/O managers, checked by their registered type, and
//! `type = "settings"` resources; then whether each asset's manager can
//! store it (`path` templates).

use std::collections::HashMap;

use toml::de::DeValue;

use crate::diag::{Diagnostic, Kind, Span, suggest};
use crate::formats::Format;
use crate::io::Config;
use crate::load::{self, RawFile, Reader, Str};
use crate::model::{Asset, Resource};

use super::entries::profile_entries;
use super::fields::same_variable;
use super::{Entry, Validator};

impl Validator<'_> {
    /// Each asset stored with a `path` template: the template suits its
    /// partitions, and no two partitions (or assets) share a path.
    pub(super) fn check_storage_paths(
        &mut self,
        built: &[Option<Asset>],
        res: &indexmap::IndexMap<String, Resource>,
        entries: &[Entry<'_, '_>],
    ) {
        let path_span = |key: &str| -> Option<Span> {
            let e = entries.iter().find(|e| e.name == key)?;
            let DeValue::Table(t) = e.value.get_ref() else {
                return None;
            };
            Some(Span::new(e.file, t.get("path")?.span()))
        };
        let mut keyless: HashMap<&str, &Asset> = HashMap::new();
        for a in built.iter().flatten() {
            let Some(r) = res.get(&a.io_manager) else {
                continue;
            };
            let Some(t) = &r.path else { continue };
            let Some(span) = path_span(&r.key) else {
                continue;
            };
            let def = a.partitions.as_ref().map(|p| &*p.def);
            if let Err(msg) = t.check_asset(def) {
                self.diags.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!(
                            "the `path` of resource `{}` cannot store asset `{}`: {msg}",
                            r.key, a.key
                        ),
                    )
                    .at(&span, "this template")
                    .also(&a.span, format!("`{}` is stored with `{}`", a.key, r.key))
                    .help(
                        "name the partition in the template (`{partition}`, `{dim.NAME}`, or a \
                         `{start:…}` format as fine as the partitions), or give the asset \
                         another `io_manager`",
                    ),
                );
            }
            if !t.uses_key()
                && let Some(first) = keyless.insert(r.key.as_str(), a)
            {
                self.diags.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!(
                            "the `path` of resource `{}` has no `{{key}}`, but assets `{}` and `{}` \
                             are both stored with it: they would share paths",
                            r.key, first.key, a.key
                        ),
                    )
                    .at(&span, "this template")
                    .also(&first.span, format!("`{}` is stored with `{}`", first.key, r.key))
                    .also(&a.span, format!("so is `{}`", a.key))
                    .help("add `{key}` to the template, or give each asset its own resource"),
                );
            }
        }
    }

    pub(super) fn resource(&mut self, e: &Entry<'_, '_>) -> Option<Resource> {
        let what = format!("resource `{}`", e.name);
        let DeValue::Table(t) = e.value.get_ref() else {
            self.diags.push(
                Diagnostic::error(Kind::WrongType, format!("{what} must be a table")).at(
                    &Span::new(e.file, e.value.span()),
                    "expected a table with `type`",
                ),
            );
            return None;
        };
        let mut names = self.registry.names();
        names.push(crate::model::SETTINGS);
        names.sort_unstable();
        let Some(ty) = t.get("type") else {
            self.diags.push(
                Diagnostic::error(Kind::MissingField, format!("{what} has no `type`"))
                    .at(&e.span, "missing `type`")
                    .help(format!(
                        "add `type = ` one of {}",
                        crate::diag::list_names(&names)
                    )),
            );
            return None;
        };
        let ty_span = Span::new(e.file, ty.span());
        let Some(ty_name) = ty.get_ref().as_str() else {
            self.diags.push(
                Diagnostic::error(
                    Kind::WrongType,
                    format!("`type` of {what} must be a string"),
                )
                .at(&ty_span, "expected a string"),
            );
            return None;
        };
        if ty_name == crate::model::SETTINGS && self.registry.get(ty_name).is_none() {
            return self.settings(e, t, &what);
        }
        let Some(kind) = self.registry.get(ty_name) else {
            self.diags.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("unknown resource type `{ty_name}` in {what}"),
                )
                .at(&ty_span, "unknown type")
                .help(
                    match ty_name.to_ascii_lowercase().as_str() {
                        "s3" | "gcs" | "gs" | "azure" | "adls" | "adls2" | "minio" | "r2" => {
                            "object storage is `type = \"object_store\"` with \
                             `url = \"s3://bucket/prefix\"` (or gs://, az://); "
                        }
                        _ => "",
                    }
                    .to_string()
                        + &suggest(ty_name, &names, "valid types"),
                ),
            );
            return None;
        };
        let mut config = t.clone();
        config.remove("type");
        // Env references must parse now; unset ones are warnings until a run needs them.
        self.check_templates(e.file, &config, &what);
        let value = toml::Spanned::new(e.value.span(), DeValue::Table(config.clone()));
        match kind.validate(&Config::spanned(value)) {
            Ok(info) => {
                let owned: toml::Table = serde::Deserialize::deserialize(
                    serde::de::IntoDeserializer::into_deserializer(toml::Spanned::new(
                        e.value.span(),
                        DeValue::Table(config),
                    )),
                )
                .unwrap_or_default();
                Some(Resource {
                    key: e.name.clone(),
                    type_name: ty_name.to_string(),
                    config: owned,
                    format: info.format,
                    path: info.path,
                    span: Some(e.span.clone()),
                    secrets: Vec::new(),
                })
            }
            Err(err) => {
                let span = err
                    .span
                    .clone()
                    .map(|s| Span::new(e.file, s))
                    .unwrap_or_else(|| e.span.clone());
                let (mut msg, help) = describe_serde_error(&err.message);
                if msg == "wanted string or table" {
                    // toml's words for a non-string where a named value belongs
                    msg = "invalid type: expected a string".into();
                }
                let (kind, label) = if msg.starts_with("unknown field") {
                    (Kind::UnknownField, "unknown field")
                } else if msg.starts_with("missing field") {
                    (Kind::MissingField, "required field missing")
                } else if msg.starts_with("invalid type") {
                    (Kind::WrongType, "wrong type")
                } else {
                    (Kind::InvalidValue, "invalid value")
                };
                // Name the field whose value is at fault, when the span says which.
                let field = t
                    .iter()
                    .find(|(_, v)| Some(v.span()) == err.span)
                    .map(|(k, _)| k.get_ref().to_string());
                let message = match field {
                    Some(f) if matches!(kind, Kind::WrongType | Kind::InvalidValue) => {
                        format!("invalid `{f}` in {what} (type `{ty_name}`): {msg}")
                    }
                    _ => format!("{msg} in {what} (type `{ty_name}`)"),
                };
                self.diags.push(
                    Diagnostic::error(kind, message)
                        .at(&span, label)
                        .help_opt(help),
                );
                None
            }
        }
    }

    /// A `type = "settings"` resource: scalar fields (strings may use
    /// `${env:…}`) and `secrets`, the fields to mask.
    fn settings(&mut self, e: &Entry<'_, '_>, t: &load::Table<'_>, what: &str) -> Option<Resource> {
        let mut config = toml::Table::new();
        let mut ok = true;
        let mut vars: Vec<(String, String, Span)> = Vec::new();
        for (k, v) in t.iter() {
            let field = k.get_ref().to_string();
            if field == "type" || field == "secrets" {
                continue;
            }
            let span = Span::new(e.file, v.span());
            let value = match v.get_ref() {
                DeValue::String(x) => {
                    self.template(
                        &Str {
                            value: x.to_string(),
                            span: span.clone(),
                        },
                        what,
                    );
                    toml::Value::String(x.to_string())
                }
                DeValue::Integer(_)
                | DeValue::Float(_)
                | DeValue::Boolean(_)
                | DeValue::Datetime(_) => match load::to_json(v.get_ref()) {
                    serde_json::Value::Bool(b) => toml::Value::Boolean(b),
                    serde_json::Value::Number(n) if n.is_i64() => {
                        toml::Value::Integer(n.as_i64().unwrap_or_default())
                    }
                    serde_json::Value::Number(n) => {
                        toml::Value::Float(n.as_f64().unwrap_or_default())
                    }
                    other => toml::Value::String(
                        other
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| other.to_string()),
                    ),
                },
                other => {
                    self.diags.push(
                        Diagnostic::error(
                            Kind::WrongType,
                            format!(
                                "field `{field}` of {what} must be a string, number or boolean, found {}",
                                load::type_name(other)
                            ),
                        )
                        .at(&span, "not a scalar")
                        .help("a step gets each field as one environment variable, `DG_RESOURCE_<NAME>_<FIELD>`; write structured values as a JSON string"),
                    );
                    ok = false;
                    continue;
                }
            };
            let var = format!(
                "DG_RESOURCE_{}_{}",
                crate::names::env_name(&e.name),
                crate::names::env_name(&field)
            );
            let key_span = Span::new(e.file, k.span());
            if let Some((first, _, first_span)) = vars.iter().find(|(_, x, _)| *x == var) {
                self.diags.push(same_variable(
                    "fields",
                    what,
                    (first, first_span),
                    (&field, &key_span),
                    &var,
                    "a step sees each field upper-cased with other characters written `_`; rename one of them".into(),
                ));
                ok = false;
            }
            vars.push((field.clone(), var, key_span));
            config.insert(field, value);
        }
        let mut secrets = Vec::new();
        if let Some(v) = t.get("secrets") {
            let r = Reader::new(e.file, t, what.to_string());
            let fields: Vec<&str> = config.keys().map(String::as_str).collect();
            for sname in r.str_array("secrets", self.diags).unwrap_or_default() {
                if config.contains_key(&sname.value) {
                    secrets.push(sname.value);
                } else {
                    self.diags.push(
                        Diagnostic::error(
                            Kind::UnknownReference,
                            format!(
                                "`secrets` of {what} names `{}`, which is not one of its fields",
                                sname.value
                            ),
                        )
                        .at(&sname.span, "no such field")
                        .help(suggest(&sname.value, &fields, "its fields")),
                    );
                    ok = false;
                }
            }
            if !matches!(v.get_ref(), DeValue::Array(_)) {
                ok = false;
            }
        }
        ok.then(|| Resource {
            key: e.name.clone(),
            type_name: crate::model::SETTINGS.to_string(),
            config,
            format: None,
            span: Some(e.span.clone()),
            secrets,
            path: None,
        })
    }
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into a
/// message and a "did you mean" hint.
fn describe_serde_error(msg: &str) -> (String, Option<String>) {
    let first = msg.lines().next().unwrap_or(msg).to_string();
    // A resource type's own check may add `help: …` on a second line.
    if let Some((_, help)) = msg.split_once("\nhelp: ") {
        return (first, Some(help.to_string()));
    }
    // serde's "unknown field `x`, expected …" or "unknown variant `x`, …".
    let Some((serde_noun, rest)) = first
        .strip_prefix("unknown ")
        .and_then(|rest| rest.split_once(" `"))
    else {
        return (first, None);
    };
    let noun = match serde_noun {
        "field" => "field",
        "variant" => "value",
        _ => return (first, None),
    };
    let Some((name, expected)) = rest.split_once("`, expected ") else {
        return (first, None);
    };
    let valid = expected_names(expected);
    (
        format!("unknown {noun} `{name}`"),
        Some(suggest(name, &valid, &format!("valid {noun}s"))),
    )
}

/// The names in serde's "`a`, `b` or `c`" / "one of `a`, `b`" lists.
fn expected_names(s: &str) -> Vec<&str> {
    s.trim_start_matches("one of ")
        .split(", ")
        .flat_map(|p| p.split(" or "))
        .map(|p| p.trim().trim_matches('`'))
        .filter(|p| !p.is_empty())
        .collect()
}

impl Validator<'_> {
    /// Pass 3: the resources (with the default `io_manager` when none is
    /// defined), every profile of dg.toml checked and the selected one's
    /// replacing or adding resources; and the name of every resource
    /// defined, valid or not.
    pub(super) fn resources(
        &mut self,
        resources: &[Entry<'_, '_>],
        config: Option<&RawFile<'_>>,
        selected: Option<&str>,
    ) -> (indexmap::IndexMap<String, Resource>, Vec<String>) {
        let mut res = indexmap::IndexMap::new();
        for e in resources {
            if let Some(r) = self.resource(e) {
                res.insert(e.name.clone(), r);
            }
        }
        if !res.contains_key("io_manager") && !resources.iter().any(|e| e.name == "io_manager") {
            res.insert(
                "io_manager".to_string(),
                Resource {
                    key: "io_manager".into(),
                    type_name: "fs".into(),
                    config: toml::Table::new(),
                    format: Some(Format::Csv),
                    path: None,
                    span: None,
                    secrets: Vec::new(),
                },
            );
        }
        // Profiles in dg.toml: every one is checked, the selected one replaces
        // resources whole (or adds them).
        let mut profile_names: Vec<String> = Vec::new();
        for (pname, entries) in profile_entries(config) {
            let this = Some(pname.as_str()) == selected;
            for e in &entries {
                // Another profile's variables are not set: only its errors count.
                let saved = (!this).then(|| std::mem::take(&mut *self.diags));
                let r = self.resource(e);
                if let Some(saved) = saved {
                    let mine = std::mem::replace(&mut *self.diags, saved);
                    for d in mine.items.into_iter().filter(|d| d.is_error()) {
                        self.diags.push(d);
                    }
                }
                if this {
                    profile_names.push(e.name.clone());
                    match r {
                        Some(r) => {
                            res.insert(e.name.clone(), r);
                        }
                        None => {
                            res.shift_remove(&e.name);
                        }
                    }
                }
            }
        }
        let resource_names: Vec<String> = resources
            .iter()
            .map(|e| e.name.as_str())
            .chain((!resources.iter().any(|e| e.name == "io_manager")).then_some("io_manager"))
            .chain(profile_names.iter().map(String::as_str))
            .map(String::from)
            .collect();
        (res, resource_names)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn serde_unknown_field_gets_suggestion() {
        let (m, h) =
            describe_serde_error("unknown field `base_dri`, expected `base_dir` or `format`");
        assert_eq!(expected_names("one of `a`, `b`"), vec!["a", "b"]);
        assert_eq!(m, "unknown field `base_dri`");
        assert_eq!(h.unwrap(), "did you mean `base_dir`?");
    }

    #[test]
    fn resource_errors_have_kinds_and_spans() {
        let src = "[resources.io_manager]\ntype = \"fs\"\nbase_dri = \"data\"\n\n\
                   [resources.db]\ntype = \"sqlite\"\n\n\
                   [resources.other]\ntype = \"fs\"\nformat = 3\n\n\
                   [resources.s3]\ntype = \"s3\"\n";
        let c = check(&[("r.toml", src)]);
        assert_eq!(
            c.kinds(),
            [
                Kind::UnknownField,
                Kind::MissingField,
                Kind::WrongType,
                Kind::InvalidValue
            ]
        );
        let unknown = c.located(Kind::UnknownField, ("r.toml", "base_dri", 0));
        assert_eq!(unknown.help.as_deref(), Some("did you mean `base_dir`?"));
        let missing = c.only(Kind::MissingField);
        assert!(missing.message.starts_with("missing field `path`"));
        let wrong = c.located(Kind::WrongType, ("r.toml", "3", 0));
        assert!(
            wrong
                .message
                .starts_with("invalid `format` in resource `other` (type `fs`)"),
            "{}",
            wrong.message
        );
        c.located(Kind::InvalidValue, ("r.toml", "\"s3\"", 0));
    }
}
