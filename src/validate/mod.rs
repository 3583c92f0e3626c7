//! Stage 2: validate raw TOML into the model.
//!
//! Validation never stops at the first problem: it walks every definition,
//! collects every diagnostic, and only builds a [`Defs`] when there are no
//! errors. Passes: collect names (duplicates across files), partitions,
//! resources, assets (references resolved by name), then the graph (cycles,
//! topological order) and partition mappings (inferred, then checked).
//!
//! One file per concern: `entries` (pass 1: names, `[defaults]`, profiles),
//! `partitions`, `resources`, `assets` (with `compute`, `policies`,
//! `checks`), `mappings`, `graph` (cycles, order), `jobs`, `templates`
//! (`${env:…}`); `schema` derives `dg schema` from the same field lists.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use toml::de::DeValue;

use crate::diag::{Diagnostic, Diagnostics, FileId, Kind, Sources, Span};
use crate::formats::Format;
use crate::io::Registry;
use crate::load::{self, RawFile, Reader};
use crate::model::{Asset, Defs, NamedPartitions, Resource};
use crate::partitions::PartitionsDef;
use crate::partitions::mapping;
use crate::project::{Project, display_path};

mod assets;
mod checks;
mod compute;
mod entries;
mod graph;
mod jobs;
mod mappings;
mod partitions;
mod policies;
mod resources;
pub mod schema;
mod templates;
#[cfg(test)]
mod testing;

use assets::check_asset_key;
use entries::{Entry, FileDefaults, TOP, profile_entries};
use mappings::{mapping_help, raw_mapping_span};

/// Looks up environment variables (the process environment, or a test's map).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Loads and validates a project's definitions. Errors and warnings go to
/// `diags`; the model is returned only when there are no errors.
pub fn load_defs(
    project: &Project,
    cwd: &Path,
    registry: &Registry,
    env: EnvLookup<'_>,
    sources: &mut Sources,
    diags: &mut Diagnostics,
) -> Option<Defs> {
    if !project.defs_dir.is_dir() {
        diags.push(
            Diagnostic::error(
                Kind::Io,
                format!(
                    "definitions folder `{}` not found",
                    display_path(&project.defs_dir, cwd)
                ),
            )
            .help("run `dg init` to create a project, or pass `--project DIR`"),
        );
        return None;
    }
    let paths = match load::definition_files(&project.defs_dir) {
        Ok(p) => p,
        Err(e) => {
            diags.push(Diagnostic::error(
                Kind::Io,
                format!("cannot list `{}`: {e}", project.defs_dir.display()),
            ));
            return None;
        }
    };
    let ids: Vec<FileId> = paths
        .iter()
        .filter_map(|p| load::read_file(p, display_path(p, cwd), sources, diags))
        .collect();
    let all_read = ids.len() == paths.len();
    let from_config = FromConfig {
        pools: Some(&project.pools),
        profile: project
            .config_id
            .map(|id| (id, project.selected_profile.clone())),
    };
    validate_files_with(sources, &ids, all_read, registry, env, from_config, diags)
}

/// Validates files already read into `sources`. Errors and warnings go to
/// `diags`; the model is returned only when there are no errors.
/// `all_read` says whether every definitions file could be read.
pub fn validate_files(
    sources: &Sources,
    ids: &[FileId],
    all_read: bool,
    registry: &Registry,
    env: EnvLookup<'_>,
    diags: &mut Diagnostics,
) -> Option<Defs> {
    let none = FromConfig {
        pools: None,
        profile: None,
    };
    validate_files_with(sources, ids, all_read, registry, env, none, diags)
}

/// What `dg.toml` adds to the validation of the definitions.
pub struct FromConfig<'a> {
    /// `[pools]`: `pool = …` must name one of them (not checked when `None`).
    pub pools: Option<&'a std::collections::BTreeMap<String, u32>>,
    /// `dg.toml` (already read into the sources) and the selected profile:
    /// the resources of every `[profiles.NAME]` are validated, and those of
    /// the selected profile replace the definitions' own.
    pub profile: Option<(FileId, Option<String>)>,
}

/// [`validate_files`] with what the project's `dg.toml` adds ([`FromConfig`]).
pub fn validate_files_with(
    sources: &Sources,
    ids: &[FileId],
    all_read: bool,
    registry: &Registry,
    env: EnvLookup<'_>,
    from_config: FromConfig<'_>,
    diags: &mut Diagnostics,
) -> Option<Defs> {
    let FromConfig { pools, profile } = from_config;
    let files: Vec<RawFile<'_>> = ids
        .iter()
        .filter_map(|&id| load::parse(sources, id, diags))
        .collect();
    // dg.toml's own errors were reported when the project was read.
    let config = profile
        .as_ref()
        .and_then(|(id, _)| load::parse(sources, *id, &mut Diagnostics::default()));
    let selected = profile.and_then(|(_, p)| p);
    let mut v = Validator {
        sources,
        registry,
        env,
        diags,
        named_partitions: Default::default(),
        declared_partitions: Vec::new(),
        failed_partitions: Default::default(),
        edges: Vec::new(),
        pools,
    };
    let defs = v.run(&files, config.as_ref(), selected.as_deref());
    if !all_read || files.len() < ids.len() {
        // A file that could not be read or parsed may define the names that
        // other files refer to: reporting those references as unknown would
        // only send the user after errors that are not there.
        diags.items.retain(|d| d.kind != Kind::UnknownReference);
    }
    diags.sort();
    if diags.has_errors() { None } else { Some(defs) }
}

struct Validator<'a> {
    sources: &'a Sources,
    registry: &'a Registry,
    env: EnvLookup<'a>,
    diags: &'a mut Diagnostics,
    named_partitions: indexmap::IndexMap<String, NamedPartitions>,
    /// Every `[partitions.NAME]`, valid or not, in definition order.
    declared_partitions: Vec<String>,
    /// Named definitions that failed to validate (their errors are reported):
    /// references to them are not reported again.
    failed_partitions: std::collections::HashSet<String>,
    /// For each asset entry, the assets it reads and where, even when the
    /// asset itself failed to validate, so cycles are still found.
    edges: Vec<Vec<(usize, Span)>>,
    /// `[pools]` of dg.toml, when known: `pool = …` must name one of them.
    pools: Option<&'a std::collections::BTreeMap<String, u32>>,
}

impl<'a> Validator<'a> {
    fn run(
        &mut self,
        files: &[RawFile<'_>],
        config: Option<&RawFile<'_>>,
        selected: Option<&str>,
    ) -> Defs {
        // Pass 1: names in each group, duplicates across files.
        let mut groups: [Vec<Entry<'_, '_>>; 4] = Default::default();
        let mut defaults: HashMap<FileId, FileDefaults<'_, '_>> = HashMap::new();
        for f in files {
            let fd = self.file_defaults(f);
            let prefix = fd.key_prefix.clone();
            defaults.insert(f.file, fd);
            for (k, _) in f.root.iter() {
                let key: &str = k.get_ref();
                if !TOP.contains(&key) && key != "defaults" {
                    self.diags.push(
                        Diagnostic::error(
                            Kind::UnknownField,
                            format!("unknown top-level table `{key}`"),
                        )
                        .at(&Span::new(f.file, k.span()), "unknown table")
                        .help(match crate::diag::did_you_mean(key, TOP.iter().copied()) {
                            Some(c) => format!("did you mean `{c}`?"),
                            None => "a definitions file holds only `[partitions.NAME]`, `[resources.NAME]`, `[assets.NAME]` and `[jobs.NAME]` tables".into(),
                        }),
                    );
                }
            }
            // Unknown tables were reported just above.
            let top = Reader::new(
                f.file,
                &f.root,
                0..0,
                "a definitions file",
                TOP,
                &mut Diagnostics::default(),
            );
            for (gi, group) in TOP.iter().enumerate() {
                let Some((table, _)) = top.table(group, self.diags) else {
                    continue;
                };
                for (k, v) in table.iter() {
                    let name: &str = k.get_ref();
                    groups[gi].push(Entry {
                        name: match &prefix {
                            Some(p) if *group == "assets" => format!("{p}/{name}"),
                            _ => name.to_string(),
                        },
                        span: Span::new(f.file, k.span()),
                        file: f.file,
                        value: v,
                    });
                }
            }
        }
        for (gi, group) in groups.iter_mut().enumerate() {
            let mut seen: HashMap<String, Span> = HashMap::new();
            let singular = ["partitions definition", "resource", "asset", "job"][gi];
            group.retain(|e| match seen.get(&e.name) {
                Some(first) => {
                    self.diags.push(
                        Diagnostic::error(
                            Kind::Duplicate,
                            format!("{singular} `{}` is defined twice", e.name),
                        )
                        .at(&e.span, "defined again here")
                        .also(first, "first defined here")
                        .help(format!("rename one of them; {singular} names are shared by every file in the definitions folder")),
                    );
                    false
                }
                None => {
                    seen.insert(e.name.clone(), e.span.clone());
                    true
                }
            });
        }
        let [parts, resources, assets, job_entries] = groups;
        self.declared_partitions = parts.iter().map(|e| e.name.clone()).collect();

        // Pass 2: partitions. Plain definitions first, so multi dimensions can name them.
        let is_multi = |e: &Entry<'_, '_>| {
            matches!(e.value.get_ref(), DeValue::Table(t)
                if t.get("type").and_then(|v| v.get_ref().as_str()) == Some("multi"))
        };
        for e in parts
            .iter()
            .filter(|e| !is_multi(e))
            .chain(parts.iter().filter(|e| is_multi(e)))
        {
            let what = format!("partitions `{}`", e.name);
            match self.partitions_def(e.file, e.value, Some(&e.name), &what, true) {
                Some(def) => {
                    self.named_partitions.insert(
                        e.name.clone(),
                        NamedPartitions {
                            def,
                            span: e.span.clone(),
                        },
                    );
                }
                None => {
                    self.failed_partitions.insert(e.name.clone());
                }
            }
        }
        // Keep definition order as written.
        let order: HashMap<&str, usize> = parts
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.as_str(), i))
            .collect();
        self.named_partitions
            .sort_by(|a, _, b, _| order.get(a.as_str()).cmp(&order.get(b.as_str())));

        // Pass 3: resources.
        let mut res = indexmap::IndexMap::new();
        for e in &resources {
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
        let resource_names: Vec<&str> = resources
            .iter()
            .map(|e| e.name.as_str())
            .chain((!resources.iter().any(|e| e.name == "io_manager")).then_some("io_manager"))
            .chain(profile_names.iter().map(String::as_str))
            .collect();

        // Pass 4: assets.
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
        let mut built: Vec<Option<Asset>> = assets
            .iter()
            .map(|e| {
                let fd = defaults.get(&e.file);
                self.asset(e, &keys, &key_list, &res, &resource_names, fd)
            })
            .collect();

        // Pass 5: graph.
        let names: Vec<&str> = assets.iter().map(|e| e.name.as_str()).collect();
        let order = self.topo_order(&names);
        // Pass 6: mappings, inferred where not written, then checked.
        let ups: Vec<Option<Arc<PartitionsDef>>> = built
            .iter()
            .map(|a| {
                a.as_ref()
                    .and_then(|a| a.partitions.as_ref().map(|p| p.def.clone()))
            })
            .collect();
        for (ai, a) in built.iter_mut().enumerate() {
            let Some(a) = a else { continue };
            let down = a.partitions.as_ref().map(|p| p.def.clone());
            for inp in &mut a.inputs {
                let up = ups[inp.upstream].clone();
                if inp.mapping_inferred {
                    inp.mapping = mapping::infer(up.as_deref(), down.as_deref());
                }
                if let Err(msg) =
                    mapping::check_applicable(&inp.mapping, up.as_deref(), down.as_deref())
                {
                    let upstream_key = &assets[inp.upstream].name;
                    let written = (!inp.mapping_inferred)
                        .then(|| raw_mapping_span(&assets[ai], &inp.name))
                        .flatten();
                    let mut diag = Diagnostic::error(
                        Kind::Mapping,
                        format!(
                            "the {}`{}` mapping cannot apply to input `{}` of asset `{}`: {msg}",
                            if inp.mapping_inferred {
                                "inferred "
                            } else {
                                ""
                            },
                            inp.mapping.type_name(),
                            inp.name,
                            a.key
                        ),
                    );
                    diag = match &written {
                        Some(m) => diag
                            .at(m, "this mapping")
                            .also(&inp.span, format!("input reading `{upstream_key}`")),
                        None => diag.at(&inp.span, format!("reads `{upstream_key}`")),
                    };
                    self.diags.push(diag.help(mapping_help(
                        &inp.mapping,
                        inp.mapping_inferred,
                        up.as_deref(),
                        down.as_deref(),
                    )));
                }
            }
        }

        self.check_storage_paths(&built, &res, &resources);

        // Pass 7: jobs (their selections are resolved by the caller, which
        // may use the later stages).
        let mut jobs = indexmap::IndexMap::new();
        for e in &job_entries {
            if let Some(j) = self.job(e) {
                jobs.insert(e.name.clone(), j);
            }
        }

        let mut defs = Defs {
            partitions: std::mem::take(&mut self.named_partitions),
            resources: res,
            jobs,
            ..Defs::default()
        };
        if self.diags.has_errors() {
            return defs;
        }
        // Renumber assets into topological order.
        let mut new_id = vec![0usize; built.len()];
        for (new, &old) in order.iter().enumerate() {
            new_id[old] = new;
        }
        for &old in &order {
            let mut a = built[old]
                .take()
                .expect("no errors, so every asset was built");
            for inp in &mut a.inputs {
                inp.upstream = new_id[inp.upstream];
            }
            defs.by_key.insert(a.key.clone(), defs.assets.len());
            defs.assets.push(a);
        }
        defs
    }
}

/// Definitions from one TOML text (`a.toml`), for tests elsewhere in the
/// crate; panics with the diagnostics when they are not valid.
#[cfg(test)]
pub(crate) fn defs_for_test(text: &str) -> Defs {
    let mut sources = Sources::default();
    let id = sources.add(
        std::path::Path::new("a.toml"),
        "a.toml".into(),
        text.to_string(),
    );
    let mut diags = Diagnostics::default();
    validate_files(
        &sources,
        &[id],
        true,
        &crate::io::Registry::builtin(),
        &|_: &str| None,
        &mut diags,
    )
    .unwrap_or_else(|| panic!("test definitions are valid: {diags:?}"))
}

#[cfg(test)]
mod tests {
    use super::testing::*;

    #[test]
    fn an_unparsable_file_hides_references_into_it() {
        let broken = "[partitions.daily]\ntype = \"daily\"\nstart = 2024-01-01\"\n";
        let src = "[assets.orders]\npartitions = \"daily\"\ndescripton = \"x\"\nshell = \"true\"\n";
        let c = check(&[("a.toml", broken), ("b.toml", src)]);
        // The syntax error and the other file's own mistake; no unknown `daily`.
        assert_eq!(c.kinds(), [Kind::Syntax, Kind::UnknownField]);
        assert_eq!(
            c.primary(&c.diags.items[1]),
            c.at("b.toml", "descripton", 0)
        );
    }

    #[test]
    fn syntax_error_at_the_end_of_a_line_stays_on_that_line() {
        let src = "[assets.a]\nretries = \nshell = \"true\"\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::Syntax);
        let (file, range) = c.primary(d);
        assert_eq!(file, "defs/a.toml");
        let nl = src.find("= \n").unwrap() + 2;
        assert_eq!(range, nl..nl, "a caret at the end of `retries = `");
    }

    #[test]
    fn the_bundled_example_is_valid() {
        let c = check(&[
            ("assets.toml", include_str!("../../defs/assets.toml")),
            (
                "partitions.toml",
                include_str!("../../defs/partitions.toml"),
            ),
            ("resources.toml", include_str!("../../defs/resources.toml")),
        ]);
        assert!(c.diags.items.is_empty(), "{:#?}", c.diags.items);
        let defs = c.defs.expect("valid");
        let keys: Vec<&str> = defs.assets.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["upstream_asset", "downstream_asset", "daily_report"]);
    }

    #[test]
    fn every_error_is_reported_in_file_order() {
        let a = "[assets.x]\nretries = \"1\"\nshell = \"true\"\n";
        let b = "[assets.y]\nshell = \"true\"\ntypo = 1\n[assets.z]\n";
        let c = check(&[("b.toml", b), ("a.toml", a)]);
        let places: Vec<_> = c.diags.items.iter().map(|d| c.primary(d).0).collect();
        assert_eq!(places, ["defs/a.toml", "defs/b.toml", "defs/b.toml"]);
        assert_eq!(
            c.kinds(),
            [Kind::WrongType, Kind::UnknownField, Kind::Compute]
        );
    }
}
