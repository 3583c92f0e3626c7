//! `[assets.KEY]`: keys, and an asset's fields read into an [`Asset`].
//! [`Validator::asset`] reads them in named steps; compute, partitions,
//! run policies, checks and inputs have their own files. References to
//! other assets and resources are resolved by name ([`Known`]); mappings
//! are inferred and checked later, once every asset's partitions are known.

use std::collections::{BTreeMap, HashMap};

use crate::diag::{Diagnostic, Diagnostics, FileId, Kind, Span, suggest};
use crate::formats::{ColumnType, Format};
use crate::interp::Template;
use crate::load::{self, Reader, Str};
use crate::model::{Asset, Compute, Resource};

use super::entries::FileDefaults;
use super::templates::{check_template, check_template_values};
use super::{Entry, Validator, checks, compute, policies};

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

/// What the references of every asset are resolved against.
pub(super) struct Known<'k> {
    /// Asset keys, to their entry's index.
    pub(super) keys: &'k HashMap<String, usize>,
    /// Asset keys in entry order, for suggestions.
    pub(super) key_list: &'k [&'k str],
    /// The valid resources.
    pub(super) resources: &'k indexmap::IndexMap<String, Resource>,
    /// Every resource defined, valid or not: a reference to an invalid one
    /// is not reported again.
    pub(super) resource_names: &'k [&'k str],
}

impl Known<'_> {
    /// Whether `s` names a resource; reports it (as `what`'s `role`, e.g.
    /// "I/O manager") when it does not.
    pub(super) fn names_a_resource(
        &self,
        s: &Str,
        what: &str,
        role: &str,
        d: &mut Diagnostics,
    ) -> bool {
        if self.resource_names.contains(&s.value.as_str()) {
            return true;
        }
        d.push(
            Diagnostic::error(
                Kind::UnknownReference,
                format!("{what} uses unknown {role} `{}`", s.value),
            )
            .at(&s.span, "no such resource")
            .help(suggest(&s.value, self.resource_names, "defined resources")),
        );
        false
    }

    /// Whether `name` is a valid `type = "settings"` resource.
    pub(super) fn is_settings(&self, name: &str) -> bool {
        self.resources.get(name).is_some_and(|x| x.is_settings())
    }
}

impl Validator<'_> {
    /// Asset entry `e`, or `None` after reporting why it is invalid.
    pub(super) fn asset(
        &mut self,
        e: &Entry<'_, '_>,
        known: &Known<'_>,
        defaults: Option<&FileDefaults<'_, '_>>,
    ) -> Option<Asset> {
        let what = format!("asset `{}`", e.name);
        let r = Reader::of_value(e.file, e.value, &what, ASSET_FIELDS, self.diags)?;
        let compute = self.compute(e, &r, &what);
        let (partitions, partitions_failed) = self.asset_partitions(e, &r, &what, defaults);
        let io_manager = self.io_manager(&r, &what, known, defaults);
        let step_resources = self.step_resources(&r, &what, known);
        let d = &mut *self.diags;
        let config = run_config(&r, &what, d);
        let config_affects_staleness = r.bool("config_affects_staleness", d).unwrap_or(false);
        let sql_engine =
            compute::sql_engine(&r, &what, matches!(compute, Some(Compute::Sql(_))), d);
        let format = format(&r, &what, known.resources.get(&io_manager), d);
        let group = r
            .str("group", d)
            .or_else(|| defaults.and_then(|fd| fd.group.clone()))
            .map(|s| s.value)
            .unwrap_or_else(|| "default".into());
        let tags = tags(&r, &what, defaults, self.env, d);
        let description = r.str("description", d).map(|s| s.value);
        let metadata = metadata(&r, &what, self.env, d);
        let code_version = r.str("code_version", d).map(|s| s.value);
        let retry = policies::retry(&r, &what, d);
        let executor = policies::executor(&r, &what, d);
        let pool = self.pool(&r, &what);
        let d = &mut *self.diags;
        let timeout = policies::timeout(&r, &what, d);
        let output = r.bool("output", d).unwrap_or(true);
        let output_required = r.bool("output_required", d).unwrap_or(true);
        let asset_checks = checks::read_checks(&r, &what, self.env, d);
        checks::check_fits(&asset_checks, &what, compute.as_ref(), output, d);
        let freshness = checks::read_freshness(&r, &what, d);
        let columns = columns(&r, &what, format, d);
        let backfill = policies::backfill_policy(&r, partitions.as_ref(), format, &what, d);
        let env = self.step_env(&r, &what);
        let inputs = self.inputs(e, &r, &what, known);
        if partitions_failed {
            return None;
        }
        Some(Asset {
            key: e.name.clone(),
            span: e.span.clone(),
            defined_at: self.defined_at(e, &r),
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

    /// `io_manager = "NAME"` (or the file's default, else `io_manager`): a
    /// resource, and not a settings one.
    fn io_manager(
        &mut self,
        r: &Reader<'_, '_>,
        what: &str,
        known: &Known<'_>,
        defaults: Option<&FileDefaults<'_, '_>>,
    ) -> String {
        let d = &mut *self.diags;
        match r
            .str("io_manager", d)
            .or_else(|| defaults.and_then(|fd| fd.io_manager.clone()))
        {
            Some(s) => {
                if known.names_a_resource(&s, what, "I/O manager", d) && known.is_settings(&s.value)
                {
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
        }
    }

    /// `resources = [...]`: settings resources only, each once.
    fn step_resources(&mut self, r: &Reader<'_, '_>, what: &str, known: &Known<'_>) -> Vec<String> {
        let d = &mut *self.diags;
        let mut step_resources: Vec<String> = Vec::new();
        for name in r.str_array("resources", d).unwrap_or_default() {
            match known.resources.get(&name.value) {
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
                None if known.resource_names.contains(&name.value.as_str()) => {}
                None => {
                    let settings: Vec<&str> = known
                        .resources
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
        step_resources
    }

    /// `env = { NAME = "…" }`: templates, resolved when a step starts.
    fn step_env(&mut self, r: &Reader<'_, '_>, what: &str) -> Vec<(String, Template)> {
        let env_pairs = r.str_map("env", self.diags).unwrap_or_default();
        let mut env = Vec::new();
        for (k, v) in env_pairs {
            if let Some(t) = self.template(&v, what) {
                env.push((k.value, t));
            }
        }
        env
    }

    /// `file:line:col` of the asset's compute (else its key), for messages
    /// about a step.
    fn defined_at(&self, e: &Entry<'_, '_>, r: &Reader<'_, '_>) -> String {
        let at = ["sql", "command", "shell"]
            .into_iter()
            .find_map(|k| r.key_span(k))
            .unwrap_or_else(|| e.span.clone());
        let (line, col) = self.sources.line_col(at.file, at.range.start);
        format!("{}:{line}:{col}", self.sources.get(at.file).display)
    }
}

/// `config = { … }`: the run config's defaults (`DG_CONFIG`, overridden with
/// `--config`).
fn run_config(
    r: &Reader<'_, '_>,
    what: &str,
    d: &mut Diagnostics,
) -> serde_json::Map<String, serde_json::Value> {
    let Some((t, v)) = r.table("config", d) else {
        return Default::default();
    };
    for (k, _) in t.iter() {
        let name: &str = k.get_ref();
        if name.is_empty() || name.contains(['.', '=']) {
            d.push(
                Diagnostic::error(
                    Kind::InvalidKey,
                    format!("invalid config field `{name}` in {what}"),
                )
                .at(&Span::new(r.file, k.span()), "no `.` or `=` in a field name")
                .help("`--config ASSET.FIELD=VALUE` names a field after the last `.`; use letters, digits, `_` and `-`"),
            );
        }
    }
    json_object(v)
}

/// A TOML table (as [`Reader::table`] gives it) as a JSON object.
fn json_object(table: &load::Value<'_>) -> serde_json::Map<String, serde_json::Value> {
    match load::to_json(table.get_ref()) {
        serde_json::Value::Object(m) => m,
        _ => Default::default(),
    }
}

/// `format = "…"`, else the I/O manager's, else csv.
fn format(
    r: &Reader<'_, '_>,
    what: &str,
    manager: Option<&Resource>,
    d: &mut Diagnostics,
) -> Format {
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
                    .help(suggest(&s.value, Format::NAMES, "valid formats")),
                );
                None
            }
        },
        None => None,
    };
    format
        .or_else(|| manager.and_then(|m| m.format))
        .unwrap_or(Format::Csv)
}

/// `tags = { K = "V" }`, over the file's default tags; values may use
/// `${env:…}` (resolved when a run starts).
fn tags(
    r: &Reader<'_, '_>,
    what: &str,
    defaults: Option<&FileDefaults<'_, '_>>,
    env: super::EnvLookup<'_>,
    d: &mut Diagnostics,
) -> BTreeMap<String, String> {
    let own_tags = r.str_map("tags", d).unwrap_or_default();
    defaults
        .map(|fd| fd.tags.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !own_tags.iter().any(|(o, _)| o.value == k.value))
        .collect::<Vec<_>>()
        .into_iter()
        .chain(own_tags)
        .map(|(k, v)| {
            // `${env:…}` works in tag values too (resolved when a run starts).
            check_template(&v, &format!("tag `{}` of {what}", k.value), env, d);
            (k.value, v.value)
        })
        .collect()
}

/// `metadata = { … }`: any TOML, whose strings may use `${env:…}`
/// (resolved when a run starts).
fn metadata(
    r: &Reader<'_, '_>,
    what: &str,
    env: super::EnvLookup<'_>,
    d: &mut Diagnostics,
) -> serde_json::Map<String, serde_json::Value> {
    let Some((_, v)) = r.table("metadata", d) else {
        return Default::default();
    };
    // `${env:…}` works in metadata strings too (resolved when a run starts).
    check_template_values(r.file, v, &format!("metadata of {what}"), env, d);
    json_object(v)
}

/// `columns = { NAME = "TYPE" }`: declared column types, for table formats.
fn columns(
    r: &Reader<'_, '_>,
    what: &str,
    format: Format,
    d: &mut Diagnostics,
) -> Vec<(String, ColumnType)> {
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
                let help =
                    match crate::diag::did_you_mean(&ty.value, ColumnType::NAMES.iter().copied()) {
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
    columns
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

impl Validator<'_> {
    /// Pass 4: every asset entry, its key checked, and its edges kept for
    /// the graph; `None` for an invalid one.
    pub(super) fn assets(
        &mut self,
        assets: &[Entry<'_, '_>],
        resources: &indexmap::IndexMap<String, Resource>,
        resource_names: &[&str],
        defaults: &HashMap<FileId, FileDefaults<'_, '_>>,
    ) -> Vec<Option<Asset>> {
        let mut keys: HashMap<String, usize> = HashMap::new();
        for (i, e) in assets.iter().enumerate() {
            if let Some(problem) = check_asset_key(&e.name) {
                self.diags.push(
                    Diagnostic::error(Kind::InvalidKey, format!("invalid asset key `{}`", e.name))
                        .at(&e.span, problem)
                        .help("asset keys are `/`-separated segments of letters, digits, `_`, `-` and `.`"),
                );
            }
            keys.insert(e.name.clone(), i);
        }
        let key_list: Vec<&str> = assets.iter().map(|e| e.name.as_str()).collect();
        self.edges = vec![Vec::new(); assets.len()];
        let known = Known {
            keys: &keys,
            key_list: &key_list,
            resources,
            resource_names,
        };
        assets
            .iter()
            .map(|e| self.asset(e, &known, defaults.get(&e.file)))
            .collect()
    }
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
        let message = "unknown field `partitons` in asset `orders`";
        let d = c.expect(Kind::UnknownField, message, ("b.toml", "partitons", 0));
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
}
