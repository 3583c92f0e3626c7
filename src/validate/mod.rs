//! Stage 2: validate raw TOML into the model.
//!
//! Validation never stops at the first problem: it walks every definition,
//! collects every diagnostic, and only builds a [`Defs`] when there are no
//! errors. Passes: collect names (duplicates across files), partitions,
//! resources, assets (references resolved by name), then the graph (cycles,
//! topological order) and partition mappings (inferred, then checked).
//!
//! One file per concern, each pass a method there, in the order `run`
//! calls them: `entries` (pass 1: names, `[defaults]`, profiles),
//! `partitions`, `resources`, `assets` (with `compute`, `policies`,
//! `checks` and `inputs`), `graph` (cycles, order), `mappings`, `jobs`;
//! `templates` checks `${env:…}` and `fields` holds what several passes
//! report alike. `schema` derives `dg schema` from the same field lists.

use std::path::Path;

use crate::diag::{Diagnostic, Diagnostics, FileId, Kind, Sources, Span};
use crate::io::Registry;
use crate::load::{self, RawFile};
use crate::model::{Defs, NamedPartitions};
use crate::project::{Project, display_path};

mod assets;
mod checks;
mod compute;
mod entries;
mod fields;
mod graph;
mod inputs;
mod jobs;
mod mappings;
mod partitions;
mod policies;
mod resources;
pub mod schema;
mod templates;
#[cfg(test)]
mod testing;

use entries::Entry;

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
    /// Every pass in order, each in its file; the model is complete only
    /// when no pass reported an error.
    fn run(
        &mut self,
        files: &[RawFile<'_>],
        config: Option<&RawFile<'_>>,
        selected: Option<&str>,
    ) -> Defs {
        let ([parts, resources, assets, job_entries], defaults) = self.entries(files);
        self.partitions(&parts);
        let (res, resource_names) = self.resources(&resources, config, selected);
        let resource_names: Vec<&str> = resource_names.iter().map(String::as_str).collect();
        let mut built = self.assets(&assets, &res, &resource_names, &defaults);
        // Pass 5: the graph (cycles, order).
        let names: Vec<&str> = assets.iter().map(|e| e.name.as_str()).collect();
        let order = self.topo_order(&names);
        self.check_mappings(&mut built, &assets);
        self.check_storage_paths(&built, &res, &resources);
        let jobs = self.jobs(&job_entries);
        let mut defs = Defs {
            partitions: std::mem::take(&mut self.named_partitions),
            resources: res,
            jobs,
            ..Defs::default()
        };
        if self.diags.has_errors() {
            return defs;
        }
        graph::renumber(built, &order, &mut defs);
        defs
    }
}

/// Validates `text` as the one definitions file `name`, for tests and
/// fuzzing elsewhere in the crate: its sources, the definitions when they
/// are valid, and every diagnostic.
#[cfg(test)]
pub(crate) fn validate_text(
    name: &str,
    text: String,
    env: EnvLookup<'_>,
) -> (Sources, Option<Defs>, Diagnostics) {
    let mut sources = Sources::default();
    let id = sources.add(name.into(), text);
    let mut diags = Diagnostics::default();
    let registry = crate::io::Registry::builtin();
    let defs = validate_files(&sources, &[id], true, &registry, env, &mut diags);
    (sources, defs, diags)
}

/// Definitions from one TOML text (`a.toml`), for tests elsewhere in the
/// crate; panics with the diagnostics when they are not valid.
#[cfg(test)]
pub(crate) fn defs_for_test(text: &str) -> Defs {
    let (_, defs, diags) = validate_text("a.toml", text.to_string(), &|_: &str| None);
    defs.unwrap_or_else(|| panic!("test definitions are valid: {diags:?}"))
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
