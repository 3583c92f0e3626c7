//! An asset's inputs: `deps` (the shorthand) and `ins.NAME` tables,
//! resolved to the assets they read. Each input becomes an environment
//! variable, so two names must not give the same one; an asset reading
//! itself is a cycle of one. The edges are kept even when the asset is
//! invalid, so the graph pass still finds cycles through it.

use std::collections::HashMap;

use crate::diag::{Diagnostic, Diagnostics, Kind, Span, suggest};
use crate::load::Reader;
use crate::model::Input;
use crate::partitions::mapping::MappingSpec;

use super::assets::Known;
use super::fields::same_variable;
use super::mappings::mapping_spec;
use super::{Entry, Validator};

pub(crate) const INPUT_FIELDS: &[&str] = &[
    "asset",
    "mapping",
    "input_manager",
    "allow_missing_partitions",
    "load",
];

impl Validator<'_> {
    /// The inputs of asset entry `e` (read by `r`).
    pub(super) fn inputs(
        &mut self,
        e: &Entry<'_, '_>,
        r: &Reader<'_, '_>,
        what: &str,
        known: &Known<'_>,
    ) -> Vec<Input> {
        let d = &mut *self.diags;
        // Inputs: `deps` shorthand, then `ins`.
        let mut inputs: Vec<Input> = Vec::new();
        let mut input_spans: HashMap<String, Span> = HashMap::new();
        let resolve = |name: &str, span: &Span, d: &mut Diagnostics| -> Option<usize> {
            match known.keys.get(name) {
                Some(&i) => Some(i),
                None => {
                    d.push(
                        Diagnostic::error(
                            Kind::UnknownReference,
                            format!("{what} depends on unknown asset `{name}`"),
                        )
                        .at(span, "no such asset")
                        .help(suggest(
                            name,
                            known.key_list,
                            "defined assets",
                        )),
                    );
                    None
                }
            }
        };
        let ins_table = r.table("ins", d).map(|(t, _)| t);
        for dep in r.str_array("deps", d).unwrap_or_default() {
            let Some(up) = resolve(&dep.value, &dep.span, d) else {
                continue;
            };
            let name = dep
                .value
                .rsplit('/')
                .next()
                .unwrap_or(&dep.value)
                .to_string();
            if ins_table.is_some_and(|t| t.contains_key(name.as_str())) {
                continue; // `ins.NAME` says more about this input
            }
            if let Some(first) = input_spans.get(&name) {
                d.push(
                    Diagnostic::error(
                        Kind::Duplicate,
                        format!("{what} has two inputs named `{name}`"),
                    )
                    .at(&dep.span, "second input with this name")
                    .also(first, "first input")
                    .help(format!(
                        "name them explicitly: `[assets.\"{}\".ins.OTHER_NAME] asset = \"{}\"`",
                        e.name, dep.value
                    )),
                );
                continue;
            }
            input_spans.insert(name.clone(), dep.span.clone());
            inputs.push(Input {
                name,
                span: dep.span.clone(),
                upstream: up,
                mapping: MappingSpec::Identity,
                mapping_inferred: true,
                input_manager: None,
                allow_missing_partitions: false,
                load: true,
            });
        }
        if let Some(t) = ins_table {
            for (k, v) in t.iter() {
                let name = k.get_ref().to_string();
                let k_span = Span::new(e.file, k.span());
                let in_what = format!("input `{name}` of {what}");
                let Some(ir) = Reader::of_value(e.file, v, &in_what, INPUT_FIELDS, d) else {
                    continue;
                };
                if !valid_input_name(&name) {
                    d.push(
                        Diagnostic::error(
                            Kind::InvalidKey,
                            format!("invalid input name `{name}` in {what}"),
                        )
                        .at(&k_span, "letters, digits, `_`, `-` and `.` only")
                        .help("an input name is like one segment of an asset key: not empty, not `.` or `..`"),
                    );
                }
                let (up_name, up_span) = match ir.str("asset", d) {
                    Some(s) => (s.value, s.span),
                    None => (name.clone(), k_span.clone()),
                };
                let Some(up) = resolve(&up_name, &up_span, d) else {
                    continue;
                };
                let mapping = match ir.get("mapping") {
                    Some(m) => match mapping_spec(e.file, m, &format!("mapping of {in_what}"), d) {
                        Some(spec) => Some(spec),
                        None => continue,
                    },
                    None => None,
                };
                let input_manager = match ir.str("input_manager", d) {
                    Some(s) if !known.names_a_resource(&s, &in_what, "input manager", d) => None,
                    Some(s) if known.is_settings(&s.value) => {
                        d.push(
                            Diagnostic::error(
                                Kind::InvalidValue,
                                format!(
                                    "{in_what} uses settings resource `{}` as its input manager",
                                    s.value
                                ),
                            )
                            .at(&s.span, "a settings resource loads nothing")
                            .help("name an I/O manager here; give the step settings with `resources = [...]` on the asset"),
                        );
                        None
                    }
                    Some(s) => Some(s.value),
                    None => None,
                };
                inputs.push(Input {
                    name: name.clone(),
                    span: k_span.clone(),
                    upstream: up,
                    mapping_inferred: mapping.is_none(),
                    mapping: mapping.unwrap_or(MappingSpec::Identity),
                    input_manager,
                    allow_missing_partitions: ir
                        .bool("allow_missing_partitions", d)
                        .unwrap_or(false),
                    load: ir.bool("load", d).unwrap_or(true),
                });
            }
        }
        // Each input becomes `DG_INPUT_<NAME>`: two names must not give the same variable.
        let mut by_place: Vec<&Input> = inputs.iter().collect();
        by_place.sort_by_key(|i| i.span.range.start);
        for (j, later) in by_place.iter().enumerate() {
            let var = crate::names::env_name(&later.name);
            if let Some(first) = by_place[..j]
                .iter()
                .find(|x| crate::names::env_name(&x.name) == var)
            {
                d.push(same_variable(
                    "inputs",
                    what,
                    (&first.name, &first.span),
                    (&later.name, &later.span),
                    &format!("DG_INPUT_{var}"),
                    format!(
                        "a step sees each input as `DG_INPUT_<NAME>`, upper-cased with other characters written `_`; rename one of them with `[assets.\"{}\".ins.OTHER_NAME] asset = \"…\"`",
                        e.name
                    ),
                ));
            }
        }
        // Self-dependency is a cycle of one.
        let my_id = known.keys.get(&e.name).copied();
        for inp in &inputs {
            if Some(inp.upstream) == my_id {
                d.push(
                    Diagnostic::error(Kind::Cycle, format!("{what} depends on itself"))
                        .at(&inp.span, "reads its own output")
                        .help("for a previous partition of the same asset, Dagster-style self-dependencies are not supported yet; split the asset in two"),
                );
            }
        }

        if let Some(i) = my_id {
            self.edges[i] = inputs
                .iter()
                .map(|x| (x.upstream, x.span.clone()))
                .collect();
        }
        inputs
    }
}

/// An input name follows the rule of one asset key segment, since the name
/// of an input from `deps` is its upstream key's last segment.
fn valid_input_name(n: &str) -> bool {
    !n.is_empty()
        && n != "."
        && n != ".."
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn inputs_that_share_an_environment_variable_are_an_error() {
        let src = "[assets.\"a-b\"]\nshell = \"true\"\n\n[assets.a_b]\nshell = \"true\"\n\n\
                   [assets.x]\ndeps = [\"a-b\"]\nshell = \"true\"\n\n\
                   [assets.x.ins.a_b]\nasset = \"a_b\"\n";
        let c = check(&[("a.toml", src)]);
        let message = "inputs `a-b` and `a_b` of asset `x` both become `DG_INPUT_A_B`";
        let d = c.expect(Kind::Duplicate, message, ("a.toml", "a_b", 1));
        assert_eq!(c.secondary(d, 0), c.at("a.toml", "\"a-b\"", 1));
        assert!(c.defs.is_none());
        // Upper and lower case give the same variable too.
        let src = "[assets.up]\nshell = \"true\"\n\n[assets.x]\nshell = \"true\"\n\n\
                   [assets.x.ins.Events]\nasset = \"up\"\n\n[assets.x.ins.events]\nasset = \"up\"\n";
        let c = check(&[("a.toml", src)]);
        let d = c.located(Kind::Duplicate, ("a.toml", "events", 0));
        assert!(d.message.contains("`DG_INPUT_EVENTS`"), "{}", d.message);
        assert_eq!(c.secondary(d, 0), c.at("a.toml", "Events", 0));
    }

    #[test]
    fn input_names_follow_the_key_segment_rule() {
        // `deps` names an input after the key's last segment, which may hold `.`.
        let src = "[assets.\"raw/v1.2\"]\nshell = \"true\"\n\n\
                   [assets.x]\ndeps = [\"raw/v1.2\"]\nshell = \"true\"\n\n\
                   [assets.y]\nshell = \"true\"\n\n[assets.y.ins.\"v1.2\"]\nasset = \"raw/v1.2\"\n";
        let c = check(&[("a.toml", src)]);
        assert!(c.diags.items.is_empty(), "{:#?}", c.diags.items);
        let defs = c.defs.expect("valid");
        let names: Vec<&str> = defs
            .assets
            .iter()
            .flat_map(|a| a.inputs.iter().map(|i| i.name.as_str()))
            .collect();
        assert_eq!(names, ["v1.2", "v1.2"]);
        for bad in [".", "..", "a b", "a/b", ""] {
            let src = format!(
                "[assets.up]\nshell = \"true\"\n\n[assets.x]\nshell = \"true\"\n\n\
                 [assets.x.ins.\"{bad}\"]\nasset = \"up\"\n"
            );
            let c = check(&[("a.toml", &src)]);
            let d = c.only(Kind::InvalidKey);
            assert_eq!(
                d.message,
                format!("invalid input name `{bad}` in asset `x`")
            );
        }
    }
}
