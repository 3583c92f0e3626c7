//! `[assets.KEY]`: keys, and every field of an asset read into an
//! [`Asset`] (its inputs resolved by name; mappings are inferred and
//! checked later, once every asset's partitions are known).

use std::collections::{BTreeMap, HashMap};

use toml::de::DeValue;

use crate::diag::{Diagnostic, Diagnostics, Kind, Span, suggest};
use crate::formats::{ColumnType, Format};
use crate::interp::Template;
use crate::load::{self, Reader};
use crate::model::{Asset, AssetPartitions, Compute, Input, Resource};
use crate::partitions::mapping::MappingSpec;

use super::compute::sql_engine;
use super::entries::FileDefaults;
use super::mappings::mapping_spec;
use super::policies::{backfill_policy, retry_policy};
use super::templates::{check_template, check_template_values};
use super::{Entry, Validator, checks};

pub use crate::load::MAX_TIMEOUT;

pub(crate) const ASSET_FIELDS: &[&str] = &[
    "partitions",
    "deps",
    "ins",
    "command",
    "shell",
    "sql",
    "source",
    "io_manager",
    "format",
    "group",
    "tags",
    "description",
    "metadata",
    "env",
    "code_version",
    "retries",
    "retry",
    "pool",
    "timeout",
    "output",
    "output_required",
    "columns",
    "resources",
    "config",
    "config_affects_staleness",
    "checks",
    "freshness",
    "backfill",
    "executor",
    "engine",
];
pub(crate) const INPUT_FIELDS: &[&str] = &[
    "asset",
    "mapping",
    "input_manager",
    "allow_missing_partitions",
    "load",
];

impl Validator<'_> {
    pub(super) fn asset(
        &mut self,
        e: &Entry<'_, '_>,
        keys: &HashMap<String, usize>,
        key_list: &[&str],
        resources: &indexmap::IndexMap<String, Resource>,
        resource_names: &[&str],
        defaults: Option<&FileDefaults<'_, '_>>,
    ) -> Option<Asset> {
        let what = format!("asset `{}`", e.name);
        let r = Reader::of_value(e.file, e.value, &what, ASSET_FIELDS, self.diags)?;
        let d = &mut *self.diags;

        // Compute: exactly one.
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
                self.template(a, &what);
            }
        }

        // Partitions.
        let partitions_value = r
            .get("partitions")
            .or_else(|| defaults.and_then(|fd| fd.partitions));
        let partitions = match partitions_value {
            None => None,
            Some(v) => match v.get_ref() {
                DeValue::String(name) => {
                    let name = name.to_string();
                    self.named_ref(&name, &r.span_of(v), &what)
                        .map(|def| AssetPartitions {
                            def,
                            name: Some(name),
                        })
                }
                _ => self
                    .partitions_def(e.file, v, None, &format!("partitions of {what}"), true)
                    .map(|def| AssetPartitions { def, name: None }),
            },
        };
        let partitions_failed = partitions_value.is_some() && partitions.is_none();
        let d = &mut *self.diags;

        // Manager and format.
        let io_manager = match r
            .str("io_manager", d)
            .or_else(|| defaults.and_then(|fd| fd.io_manager.clone()))
        {
            Some(s) if !resources.contains_key(&s.value) => {
                if !resource_names.contains(&s.value.as_str()) {
                    d.push(
                        Diagnostic::error(
                            Kind::UnknownReference,
                            format!("{what} uses unknown I/O manager `{}`", s.value),
                        )
                        .at(&s.span, "no such resource")
                        .help(suggest(
                            &s.value,
                            resource_names,
                            "defined resources",
                        )),
                    );
                }
                s.value
            }
            Some(s) => {
                if resources.get(&s.value).is_some_and(|x| x.is_settings()) {
                    d.push(
                        Diagnostic::error(
                            Kind::InvalidValue,
                            format!(
                                "{what} uses settings resource `{}` as its I/O manager",
                                s.value
                            ),
                        )
                        .at(&s.span, "a settings resource stores nothing")
                        .help(format!(
                            "give the step its values with `resources = [\"{}\"]`, and name an I/O manager (`fs`, `sqlite`, …) in `io_manager`",
                            s.value
                        )),
                    );
                }
                s.value
            }
            None => "io_manager".to_string(),
        };
        // `resources = [...]`: settings resources only, each once.
        let mut step_resources: Vec<String> = Vec::new();
        for name in r.str_array("resources", d).unwrap_or_default() {
            match resources.get(&name.value) {
                Some(x) if x.is_settings() => {
                    if !step_resources.contains(&name.value) {
                        step_resources.push(name.value);
                    }
                }
                Some(x) => d.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!(
                            "{what} lists `{}` in `resources`, but it is an I/O manager (type `{}`)",
                            name.value, x.type_name
                        ),
                    )
                    .at(&name.span, "not a settings resource")
                    .help("`resources` gives a step the fields of `type = \"settings\"` resources; an I/O manager is named by `io_manager` or an input's `input_manager`"),
                ),
                None if resource_names.contains(&name.value.as_str()) => {}
                None => {
                    let settings: Vec<&str> = resources
                        .values()
                        .filter(|x| x.is_settings())
                        .map(|x| x.key.as_str())
                        .collect();
                    d.push(
                        Diagnostic::error(
                            Kind::UnknownReference,
                            format!("{what} uses unknown resource `{}`", name.value),
                        )
                        .at(&name.span, "no such resource")
                        .help(suggest(&name.value, &settings, "settings resources")),
                    );
                }
            }
        }
        // Run config defaults: `DG_CONFIG`, overridden with `--config`.
        let config = match r.table("config", d) {
            Some((t, v)) => {
                for (k, _) in t.iter() {
                    let name: &str = k.get_ref();
                    if name.is_empty() || name.contains(['.', '=']) {
                        d.push(
                            Diagnostic::error(
                                Kind::InvalidKey,
                                format!("invalid config field `{name}` in {what}"),
                            )
                            .at(&Span::new(e.file, k.span()), "no `.` or `=` in a field name")
                            .help("`--config ASSET.FIELD=VALUE` names a field after the last `.`; use letters, digits, `_` and `-`"),
                        );
                    }
                }
                match load::to_json(v.get_ref()) {
                    serde_json::Value::Object(m) => m,
                    _ => Default::default(),
                }
            }
            None => Default::default(),
        };
        let config_affects_staleness = r.bool("config_affects_staleness", d).unwrap_or(false);
        let sql_engine = sql_engine(&r, &what, matches!(compute, Some(Compute::Sql(_))), d);
        let format = match r.str("format", d) {
            Some(s) => match Format::parse(&s.value) {
                Some(f) => Some(f),
                None => {
                    d.push(
                        Diagnostic::error(
                            Kind::InvalidValue,
                            format!("unknown format `{}` in {what}", s.value),
                        )
                        .at(&s.span, "unknown format")
                        .help(suggest(
                            &s.value,
                            Format::NAMES,
                            "valid formats",
                        )),
                    );
                    None
                }
            },
            None => None,
        };
        let format = format
            .or_else(|| resources.get(&io_manager).and_then(|r| r.format))
            .unwrap_or(Format::Csv);

        let group = r
            .str("group", d)
            .or_else(|| defaults.and_then(|fd| fd.group.clone()))
            .map(|s| s.value)
            .unwrap_or_else(|| "default".into());
        let own_tags = r.str_map("tags", d).unwrap_or_default();
        let tags: BTreeMap<String, String> = defaults
            .map(|fd| fd.tags.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !own_tags.iter().any(|(o, _)| o.value == k.value))
            .collect::<Vec<_>>()
            .into_iter()
            .chain(own_tags)
            .map(|(k, v)| {
                // `${env:…}` works in tag values too (resolved when a run starts).
                check_template(&v, &format!("tag `{}` of {what}", k.value), self.env, d);
                (k.value, v.value)
            })
            .collect();
        let description = r.str("description", d).map(|s| s.value);
        let metadata = match r.table("metadata", d) {
            Some((_, v)) => {
                // `${env:…}` works in metadata strings too (resolved when a run starts).
                check_template_values(e.file, v, &format!("metadata of {what}"), self.env, d);
                match load::to_json(v.get_ref()) {
                    serde_json::Value::Object(m) => m,
                    _ => Default::default(),
                }
            }
            None => Default::default(),
        };
        let code_version = r.str("code_version", d).map(|s| s.value);
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
        let retry = retry_policy(&r, retries, &what, d);
        let executor = r.get("executor").and_then(|v| {
            let x = Reader::of_value(
                e.file,
                v,
                format!("`executor` of {what}"),
                crate::project::ASSET_EXECUTOR_FIELDS,
                d,
            )?;
            Some(crate::project::read_slurm_options(&x, d))
        });
        let pool = r.str("pool", d).map(|p| {
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
        });
        let timeout = match r.str("timeout", d) {
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
        };
        let output = r.bool("output", d).unwrap_or(true);
        let output_required = r.bool("output_required", d).unwrap_or(true);
        let asset_checks = checks::read_checks(&r, &what, self.env, d);
        checks::check_fits(&asset_checks, &what, compute.as_ref(), output, d);
        let freshness = checks::read_freshness(&r, &what, d);
        let mut columns = Vec::new();
        for (name, ty) in r.str_map("columns", d).unwrap_or_default() {
            match ColumnType::parse(&ty.value) {
                Some(t) => columns.push((name.value, t)),
                None => {
                    let valid = ColumnType::NAMES
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let help = match crate::diag::did_you_mean(
                        &ty.value,
                        ColumnType::NAMES.iter().copied(),
                    ) {
                        Some(c) => format!("did you mean `{c}`? Valid types: {valid}"),
                        None => format!("valid types: {valid}"),
                    };
                    d.push(
                        Diagnostic::error(
                            Kind::InvalidValue,
                            format!(
                                "unknown column type `{}` for column `{}` in {what}",
                                ty.value, name.value
                            ),
                        )
                        .at(&ty.span, "unknown column type")
                        .help(help),
                    );
                }
            }
        }
        if !columns.is_empty()
            && format == Format::File
            && let Some(span) = r.key_span("columns")
        {
            d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("{what} declares `columns` but its format is `file` (opaque bytes)"),
                )
                .at(&span, "columns of a non-table")
                .help("remove `columns`, or give the asset a csv, jsonl or parquet format"),
            );
        }
        let backfill = backfill_policy(&r, partitions.as_ref(), format, &what, d);
        let env_pairs = r.str_map("env", d).unwrap_or_default();
        let mut env = Vec::new();
        for (k, v) in env_pairs {
            if let Some(t) = self.template(&v, &what) {
                env.push((k.value, t));
            }
        }
        let d = &mut *self.diags;

        // Inputs: `deps` shorthand, then `ins`.
        let mut inputs: Vec<Input> = Vec::new();
        let mut input_spans: HashMap<String, Span> = HashMap::new();
        let resolve = |name: &str, span: &Span, d: &mut Diagnostics| -> Option<usize> {
            match keys.get(name) {
                Some(&i) => Some(i),
                None => {
                    d.push(
                        Diagnostic::error(
                            Kind::UnknownReference,
                            format!("{what} depends on unknown asset `{name}`"),
                        )
                        .at(span, "no such asset")
                        .help(suggest(name, key_list, "defined assets")),
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
                    Some(s) if !resource_names.contains(&s.value.as_str()) => {
                        d.push(
                            Diagnostic::error(
                                Kind::UnknownReference,
                                format!("{in_what} uses unknown input manager `{}`", s.value),
                            )
                            .at(&s.span, "no such resource")
                            .help(suggest(
                                &s.value,
                                resource_names,
                                "defined resources",
                            )),
                        );
                        None
                    }
                    Some(s) if resources.get(&s.value).is_some_and(|x| x.is_settings()) => {
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
                d.push(
                    Diagnostic::error(
                        Kind::Duplicate,
                        format!(
                            "inputs `{}` and `{}` of {what} both become `DG_INPUT_{var}`",
                            first.name, later.name
                        ),
                    )
                    .at(&later.span, format!("`{}` → `DG_INPUT_{var}`", later.name))
                    .also(&first.span, format!("`{}` → `DG_INPUT_{var}`", first.name))
                    .help(format!(
                        "a step sees each input as `DG_INPUT_<NAME>`, upper-cased with other characters written `_`; rename one of them with `[assets.\"{}\".ins.OTHER_NAME] asset = \"…\"`",
                        e.name
                    )),
                );
            }
        }
        // Self-dependency is a cycle of one.
        let my_id = keys.get(&e.name).copied();
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
        if partitions_failed {
            return None;
        }
        let at = ["sql", "command", "shell"]
            .into_iter()
            .find_map(|k| r.key_span(k))
            .unwrap_or_else(|| e.span.clone());
        let (line, col) = self.sources.line_col(at.file, at.range.start);
        let defined_at = format!("{}:{line}:{col}", self.sources.get(at.file).display);
        Some(Asset {
            key: e.name.clone(),
            span: e.span.clone(),
            defined_at,
            partitions,
            compute: compute?,
            io_manager,
            format,
            group,
            tags,
            description,
            metadata,
            env,
            code_version,
            resources: step_resources,
            config,
            config_affects_staleness,
            backfill,
            sql_engine,
            retry,
            pool,
            timeout,
            output,
            output_required,
            columns,
            inputs,
            checks: asset_checks,
            freshness,
            executor,
        })
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

/// The longest segment of an asset key (ASCII characters).
pub const MAX_KEY_SEGMENT: usize = 200;

/// Why an asset key is invalid, or `None`.
pub fn check_asset_key(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("the key is empty".into());
    }
    for seg in key.split('/') {
        if seg.is_empty() {
            return Some("empty segment (leading, trailing or doubled `/`)".into());
        }
        if seg == "." || seg == ".." {
            return Some(format!("segment `{seg}` is not allowed"));
        }
        if seg.len() > MAX_KEY_SEGMENT {
            return Some(format!(
                "segment of {} characters: at most {MAX_KEY_SEGMENT} (each segment names a folder, and file names have at most 255 bytes)",
                seg.len()
            ));
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Some(format!("character `{c}` is not allowed"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn asset_keys() {
        assert!(check_asset_key("raw/events").is_none());
        assert!(check_asset_key("my-asset.v2").is_none());
        assert!(check_asset_key("a//b").is_some());
        assert!(check_asset_key("../x").is_some());
        assert!(check_asset_key("a b").is_some());
    }

    #[test]
    fn unknown_field_points_at_the_misspelled_key() {
        let src = "[assets.orders]\npartitons = \"daily\"\nshell = \"true\"\n";
        let c = check(&[("a.toml", DAILY), ("b.toml", src)]);
        let d = c.only(Kind::UnknownField);
        assert_eq!(c.primary(d), c.at("b.toml", "partitons", 0));
        assert_eq!(d.message, "unknown field `partitons` in asset `orders`");
        assert_eq!(d.help.as_deref(), Some("did you mean `partitions`?"));
        assert!(c.defs.is_none());
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let src = "[assets.orders]\nshell = \"true\"\nretries = \"two\"\ndeps = \"x\"\n";
        let c = check(&[("a.toml", src)]);
        assert_eq!(c.kinds(), [Kind::WrongType, Kind::WrongType]);
        assert_eq!(c.primary(&c.diags.items[0]), c.at("a.toml", "\"two\"", 0));
        assert_eq!(c.primary(&c.diags.items[1]), c.at("a.toml", "\"x\"", 0));
    }

    #[test]
    fn unknown_references_point_at_the_name() {
        let res = "[resources.warehouse]\ntype = \"fs\"\n";
        let src = "[assets.orders]\nshell = \"true\"\n\n\
                   [assets.revenue]\npartitions = \"dayly\"\ndeps = [\"ordrs\"]\n\
                   io_manager = \"warehose\"\nshell = \"true\"\n\n\
                   [assets.revenue.ins.o]\nasset = \"orders\"\ninput_manager = \"loader\"\n";
        let c = check(&[("a.toml", DAILY), ("b.toml", res), ("c.toml", src)]);
        assert_eq!(c.kinds(), [Kind::UnknownReference; 4]);
        let spans: Vec<_> = c.diags.items.iter().map(|d| c.primary(d)).collect();
        assert_eq!(
            spans,
            [
                c.at("c.toml", "\"dayly\"", 0),
                c.at("c.toml", "\"ordrs\"", 0),
                c.at("c.toml", "\"warehose\"", 0),
                c.at("c.toml", "\"loader\"", 0),
            ]
        );
        let helps: Vec<_> = c.diags.items.iter().map(|d| d.help.clone()).collect();
        assert_eq!(helps[0].as_deref(), Some("did you mean `daily`?"));
        assert_eq!(helps[1].as_deref(), Some("did you mean `orders`?"));
        assert_eq!(helps[2].as_deref(), Some("did you mean `warehouse`?"));
        assert_eq!(
            helps[3].as_deref(),
            Some("defined resources: `warehouse`, `io_manager`")
        );
    }

    #[test]
    fn inputs_that_share_an_environment_variable_are_an_error() {
        let src = "[assets.\"a-b\"]\nshell = \"true\"\n\n[assets.a_b]\nshell = \"true\"\n\n\
                   [assets.x]\ndeps = [\"a-b\"]\nshell = \"true\"\n\n\
                   [assets.x.ins.a_b]\nasset = \"a_b\"\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::Duplicate);
        assert_eq!(
            d.message,
            "inputs `a-b` and `a_b` of asset `x` both become `DG_INPUT_A_B`"
        );
        assert_eq!(c.primary(d), c.at("a.toml", "a_b", 1));
        assert_eq!(c.secondary(d, 0), c.at("a.toml", "\"a-b\"", 1));
        assert!(c.defs.is_none());
        // Upper and lower case give the same variable too.
        let src = "[assets.up]\nshell = \"true\"\n\n[assets.x]\nshell = \"true\"\n\n\
                   [assets.x.ins.Events]\nasset = \"up\"\n\n[assets.x.ins.events]\nasset = \"up\"\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::Duplicate);
        assert!(d.message.contains("`DG_INPUT_EVENTS`"), "{}", d.message);
        assert_eq!(c.primary(d), c.at("a.toml", "events", 0));
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
