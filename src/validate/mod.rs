//! Stage 2: validate raw TOML into the model.
//!
//! Validation never stops at the first problem: it walks every definition,
//! collects every diagnostic, and only builds a [`Defs`] when there are no
//! errors. Passes: collect names (duplicates across files), partitions,
//! resources, assets (references resolved by name), then the graph (cycles,
//! topological order) and partition mappings (inferred, then checked).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use toml::de::DeValue;

use crate::diag::{Diagnostic, Diagnostics, FileId, Kind, Sources, Span, suggest};
use crate::formats::{ColumnType, Format};
use crate::interp::Template;
use crate::io::Registry;
use crate::load::{self, RawFile, Reader, Str, Value};
use crate::model::{
    Asset, AssetPartitions, Catchup, Compute, Defs, Input, Job, JobSchedule, JobTargeting,
    NamedPartitions, Resource,
};
use crate::partitions::mapping::{self, MappingSpec};
use crate::partitions::time::{self, Schedule, TimeDefError, TimePartitions};
use crate::partitions::{MultiPartitions, PartitionsDef, StaticPartitions, check_key};
use crate::project::{Project, display_path};

mod checks;
pub mod schema;

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

/// `[defaults]` of one definitions file: applied to that file's assets; an
/// asset's own field wins (tags are merged, the asset's own winning).
struct FileDefaults<'f, 'i> {
    key_prefix: Option<String>,
    group: Option<Str>,
    io_manager: Option<Str>,
    partitions: Option<&'f Value<'i>>,
    tags: Vec<(Str, Str)>,
}

pub(crate) const RETRY_FIELDS: &[&str] = &["max", "delay", "backoff", "jitter"];
pub(crate) const DEFAULTS_FIELDS: &[&str] =
    &["key_prefix", "group", "io_manager", "partitions", "tags"];

impl Validator<'_> {
    fn file_defaults<'f, 'i>(&mut self, f: &'f RawFile<'i>) -> FileDefaults<'f, 'i> {
        let mut fd = FileDefaults {
            key_prefix: None,
            group: None,
            io_manager: None,
            partitions: None,
            tags: Vec::new(),
        };
        let Some(v) = f.root.get("defaults") else {
            return fd;
        };
        let d = &mut *self.diags;
        let Some(r) = Reader::of_value(f.file, v, "`[defaults]`", DEFAULTS_FIELDS, d) else {
            return fd;
        };
        if let Some(p) = r.str("key_prefix", d) {
            let prefix = p.value.trim_matches('/').to_string();
            match check_asset_key(&prefix) {
                Some(problem) => d.push(
                    Diagnostic::error(
                        Kind::InvalidKey,
                        format!("invalid `key_prefix` `{}` in `[defaults]`", p.value),
                    )
                    .at(&p.span, problem)
                    .help("a key prefix is `/`-separated segments of letters, digits, `_`, `-` and `.`, e.g. `raw` or `warehouse/raw`"),
                ),
                None => fd.key_prefix = Some(prefix),
            }
        }
        fd.group = r.str("group", d);
        fd.io_manager = r.str("io_manager", d);
        fd.partitions = r.get("partitions");
        fd.tags = r.str_map("tags", d).unwrap_or_default();
        fd
    }
}

/// `[profiles.NAME.resources.KEY]` of `dg.toml`, per profile.
fn profile_entries<'f, 'i>(config: Option<&'f RawFile<'i>>) -> Vec<(String, Vec<Entry<'f, 'i>>)> {
    let mut out = Vec::new();
    let Some(f) = config else { return out };
    let Some(DeValue::Table(profiles)) = f.root.get("profiles").map(|v| v.get_ref()) else {
        return out;
    };
    for (pk, pv) in profiles.iter() {
        let DeValue::Table(p) = pv.get_ref() else {
            continue;
        };
        let Some(DeValue::Table(rs)) = p.get("resources").map(|v| v.get_ref()) else {
            continue;
        };
        let entries = rs
            .iter()
            .map(|(k, v)| Entry {
                name: k.get_ref().to_string(),
                span: Span::new(f.file, k.span()),
                file: f.file,
                value: v,
            })
            .collect();
        out.push((pk.get_ref().to_string(), entries));
    }
    out
}

/// One `[group.name]` entry found in some file.
struct Entry<'f, 'i> {
    name: String,
    span: Span,
    file: FileId,
    value: &'f Value<'i>,
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

pub use crate::load::MAX_TIMEOUT;

/// How far `end_offset` (of a time partitions definition) and a
/// `time_window` mapping's offsets may move, in windows, either way.
/// Far more than any schedule needs (27 years of days, a year of hours), and
/// small enough that arithmetic on window numbers never overflows.
pub const MAX_WINDOW_OFFSET: i64 = 10_000;

/// Reads an offset counted in windows, bounded by [`MAX_WINDOW_OFFSET`].
/// `Err(())` after reporting one out of range.
fn window_offset(
    r: &Reader<'_, '_>,
    key: &str,
    what: &str,
    d: &mut Diagnostics,
) -> Result<i64, ()> {
    match r.int(key, d) {
        Some((n, s)) if !(-MAX_WINDOW_OFFSET..=MAX_WINDOW_OFFSET).contains(&n) => {
            d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!(
                        "`{key}` of {what} must be between -{MAX_WINDOW_OFFSET} and {MAX_WINDOW_OFFSET} windows, found {n}"
                    ),
                )
                .at(&s, "out of range")
                .help(format!(
                    "an offset moves by whole partitions; {MAX_WINDOW_OFFSET} is far more than any schedule needs (27 years of days, over a year of hours) and keeps the arithmetic on window numbers from overflowing"
                )),
            );
            Err(())
        }
        Some((n, _)) => Ok(n),
        None => Ok(0),
    }
}

/// `engine = "duckdb" | "sqlite"`: the engine of a `sql` asset's query.
fn sql_engine(
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

/// `retry = { max, delay, backoff, jitter }` of an asset, or its
/// `retries = N` (`retries`, already read); both at once is an error.
/// `backfill = { max_partitions_per_step = N }` or `backfill = "single_step"`:
/// range steps, for time, static and dynamic partitions of a table format.
fn backfill_policy(
    r: &Reader<'_, '_>,
    partitions: Option<&crate::model::AssetPartitions>,
    format: Format,
    what: &str,
    d: &mut Diagnostics,
) -> Option<crate::model::Backfill> {
    use crate::model::Backfill;
    let v = r.get("backfill")?;
    let span = r.span_of(v);
    let shape_help = "write `backfill = { max_partitions_per_step = 100 }`, or `backfill = \"single_step\"` for one step per run of consecutive partitions";
    let policy = match v.get_ref() {
        DeValue::String(s) if s.as_ref() == "single_step" => Backfill { max_per_step: None },
        DeValue::String(s) => {
            d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("unknown `backfill` `{s}` in {what}"),
                )
                .at(&span, "not a backfill policy")
                .help(shape_help),
            );
            return None;
        }
        _ => {
            let t = Reader::of_value(
                r.file,
                v,
                format!("`backfill` of {what}"),
                &["max_partitions_per_step"],
                d,
            )?;
            match t.int("max_partitions_per_step", d) {
                Some((n, _)) if (1..=1_000_000).contains(&n) => Backfill {
                    max_per_step: Some(n as u32),
                },
                Some((n, s)) => {
                    d.push(
                        Diagnostic::error(
                            Kind::InvalidValue,
                            format!(
                                "`max_partitions_per_step` of {what} must be between 1 and 1000000, found {n}"
                            ),
                        )
                        .at(&s, "out of range")
                        .help("it is how many consecutive partitions one step materializes"),
                    );
                    return None;
                }
                None => {
                    if t.get("max_partitions_per_step").is_none() {
                        d.push(
                            Diagnostic::error(
                                Kind::InvalidValue,
                                format!("`backfill` of {what} has no `max_partitions_per_step`"),
                            )
                            .at(&span, "missing `max_partitions_per_step`")
                            .help(shape_help),
                        );
                    }
                    return None;
                }
            }
        }
    };
    let unsupported = |why: String, help: &str, d: &mut Diagnostics| {
        d.push(
            Diagnostic::error(
                Kind::InvalidValue,
                format!("{what} has `backfill` but {why}"),
            )
            .at(&span, "range steps")
            .help(help.to_string()),
        );
    };
    match partitions.map(|p| &*p.def) {
        // Already reported.
        None if r.get("partitions").is_some() => return None,
        None => {
            unsupported(
                "is not partitioned".into(),
                "`backfill` groups partitions into steps; remove it, or give the asset `partitions`",
                d,
            );
            return None;
        }
        Some(crate::partitions::PartitionsDef::Multi(_)) => {
            unsupported(
                "its partitions are multi-dimensional, which range steps do not support yet".into(),
                "remove `backfill` (one step per partition), or partition the asset by time, a static or a dynamic definition",
                d,
            );
            return None;
        }
        Some(_) => {}
    }
    if format == Format::File {
        unsupported(
            "its format is `file` (opaque bytes), which dg cannot split by `dg_partition`".into(),
            "range steps write one table with a `dg_partition` column: use csv, jsonl or parquet",
            d,
        );
        return None;
    }
    if r.get("source").is_some() {
        unsupported(
            "it is a source asset, which dg never materializes".into(),
            "remove `backfill`",
            d,
        );
        return None;
    }
    Some(policy)
}

fn retry_policy(
    r: &Reader<'_, '_>,
    retries: u32,
    what: &str,
    d: &mut Diagnostics,
) -> crate::model::RetryPolicy {
    use crate::model::{Backoff, Jitter, RetryPolicy};
    let Some(v) = r.get("retry") else {
        return if r.get("retries").is_some() {
            RetryPolicy::retries(retries)
        } else {
            RetryPolicy::NONE
        };
    };
    if let (Some(a), Some(b)) = (r.key_span("retries"), r.key_span("retry")) {
        d.push(
            Diagnostic::error(
                Kind::InvalidValue,
                format!("{what} has both `retries` and `retry`"),
            )
            .at(&b, "a retry policy")
            .also(&a, "and a retry count")
            .help("keep one: `retry = { max = N, … }` says everything `retries = N` does"),
        );
    }
    let what = format!("`retry` of {what}");
    let Some(t) = Reader::of_value(r.file, v, what.clone(), RETRY_FIELDS, d) else {
        return RetryPolicy::retries(retries);
    };
    let mut p = RetryPolicy {
        max: 1,
        delay: std::time::Duration::ZERO,
        backoff: Backoff::Constant,
        jitter: Jitter::None,
        cap: RetryPolicy::MAX_WAIT,
        declared: true,
    };
    match t.int("max", d) {
        Some((n, s)) if !(0..=100).contains(&n) => d.push(
            Diagnostic::error(
                Kind::InvalidValue,
                format!("`max` of {what} must be between 0 and 100, found {n}"),
            )
            .at(&s, "out of range")
            .help("`max` is how many times a failed attempt is tried again"),
        ),
        Some((n, _)) => p.max = n as u32,
        None => {}
    }
    if let Some(s) = t.str("delay", d) {
        match humantime::parse_duration(&s.value) {
            Ok(x) if x <= RetryPolicy::MAX_WAIT => p.delay = x,
            Ok(_) => d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!(
                        "`delay` of {what} must be at most 24 hours, found `{}`",
                        s.value
                    ),
                )
                .at(&s.span, "out of range"),
            ),
            Err(err) => d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("invalid `delay` `{}` in {what}: {err}", s.value),
                )
                .at(&s.span, "not a duration")
                .help("write a duration such as `500ms`, `10s` or `2m`"),
            ),
        }
    }
    if let Some(s) = t.str("backoff", d) {
        const BACKOFFS: &[&str] = &["constant", "linear", "exponential"];
        match s.value.as_str() {
            "constant" => p.backoff = Backoff::Constant,
            "linear" => p.backoff = Backoff::Linear,
            "exponential" => p.backoff = Backoff::Exponential,
            other => d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("unknown `backoff` `{other}` in {what}"),
                )
                .at(&s.span, "unknown backoff")
                .help(suggest(other, BACKOFFS, "backoffs")),
            ),
        }
    }
    if let Some(v) = t.get("jitter") {
        const JITTERS: &[&str] = &["full", "plus_minus"];
        match v.get_ref() {
            DeValue::Boolean(b) => p.jitter = if *b { Jitter::Full } else { Jitter::None },
            DeValue::String(j) if j == "full" => p.jitter = Jitter::Full,
            DeValue::String(j) if j == "plus_minus" => p.jitter = Jitter::PlusMinus,
            DeValue::String(j) => d.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("unknown `jitter` `{j}` in {what}"),
                )
                .at(&t.span_of(v), "unknown jitter")
                .help(suggest(j, JITTERS, "jitters (or true / false)")),
            ),
            other => d.push(
                Diagnostic::error(
                    Kind::WrongType,
                    format!(
                        "`jitter` in {what} must be true, false, \"full\" or \"plus_minus\", found {}",
                        load::type_name(other)
                    ),
                )
                .at(&t.span_of(v), "expected a boolean or a string"),
            ),
        }
    }
    p
}

/// The fields a partitions definition of type `ty` accepts (`None`: no such type).
pub(crate) fn partition_fields(ty: &str) -> Option<&'static [&'static str]> {
    Some(match ty {
        "hourly" => &[
            "type",
            "start",
            "end",
            "timezone",
            "fmt",
            "end_offset",
            "minute_offset",
        ],
        "daily" => &[
            "type",
            "start",
            "end",
            "timezone",
            "fmt",
            "end_offset",
            "minute_offset",
            "hour_offset",
        ],
        "weekly" | "monthly" => &[
            "type",
            "start",
            "end",
            "timezone",
            "fmt",
            "end_offset",
            "minute_offset",
            "hour_offset",
            "day_offset",
        ],
        "cron" => &[
            "type",
            "cron",
            "start",
            "end",
            "timezone",
            "fmt",
            "end_offset",
        ],
        "static" => &["type", "keys"],
        "dynamic" => &["type"],
        "multi" => &["type", "dimensions"],
        _ => return None,
    })
}

/// An IANA time zone name of `what`, or a located error with a suggestion.
fn time_zone(s: &Str, what: &str, d: &mut Diagnostics) -> Option<chrono_tz::Tz> {
    if let Ok(tz) = s.value.parse::<chrono_tz::Tz>() {
        return Some(tz);
    }
    let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect();
    d.push(
        Diagnostic::error(
            Kind::BadTimezone,
            format!("unknown time zone `{}` in {what}", s.value),
        )
        .at(&s.span, "not an IANA time zone")
        .help(
            match crate::diag::did_you_mean(&s.value, names.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => {
                    "use an IANA name such as `UTC`, `Europe/Berlin` or `America/New_York`".into()
                }
            },
        ),
    );
    None
}

pub(crate) const TOP: &[&str] = &["partitions", "resources", "assets", "jobs"];
pub(crate) const JOB_FIELDS: &[&str] = &[
    "select",
    "partition",
    "partition_range",
    "last",
    "all_partitions",
    "missing",
    "stale",
    "cron",
    "timezone",
    "catchup",
    "description",
];
const JOB_TARGETING: &[&str] = &["partition", "partition_range", "last", "all_partitions"];
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
pub(crate) const PARTITION_TYPES: &[&str] = &[
    "hourly", "daily", "weekly", "monthly", "cron", "static", "dynamic", "multi",
];

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

    /// A partitions definition, named (`name`) or inline.
    fn partitions_def(
        &mut self,
        file: FileId,
        value: &Value<'_>,
        name: Option<&str>,
        what: &str,
        allow_multi: bool,
    ) -> Option<Arc<PartitionsDef>> {
        let span = Span::new(file, value.span());
        let DeValue::Table(t) = value.get_ref() else {
            self.diags.push(
                Diagnostic::error(
                    Kind::WrongType,
                    format!(
                        "{what} must be a table, found {}",
                        load::type_name(value.get_ref())
                    ),
                )
                .at(&span, "expected a table with `type`"),
            );
            return None;
        };
        let type_str = match t.get("type") {
            Some(v) => match v.get_ref().as_str() {
                Some(s) => Some((s.to_string(), Span::new(file, v.span()))),
                None => {
                    self.diags.push(
                        Diagnostic::error(
                            Kind::WrongType,
                            format!("`type` of {what} must be a string"),
                        )
                        .at(&Span::new(file, v.span()), "expected a string"),
                    );
                    return None;
                }
            },
            None => None,
        };
        let Some((ty, ty_span)) = type_str else {
            self.diags.push(
                Diagnostic::error(Kind::MissingField, format!("{what} has no `type`"))
                    .at(&span, "missing `type`")
                    .help(format!(
                        "add `type = ` one of {}",
                        crate::diag::list_names(PARTITION_TYPES)
                    )),
            );
            return None;
        };
        let fields: &[&str] = match partition_fields(&ty) {
            Some(f) => f,
            None => {
                self.diags.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!("unknown partitions type `{ty}` in {what}"),
                    )
                    .at(&ty_span, "unknown type")
                    .help(suggest(&ty, PARTITION_TYPES, "valid types")),
                );
                return None;
            }
        };
        let r = Reader::new(file, t, value.span(), what, fields, self.diags);
        match ty.as_str() {
            "static" => {
                let Some(keys) = r.str_array("keys", self.diags) else {
                    if r.get("keys").is_none() {
                        self.diags.push(
                            Diagnostic::error(Kind::MissingField, format!("{what} has no `keys`"))
                                .at(&span, "missing `keys`")
                                .help("add `keys = [\"a\", \"b\"]`"),
                        );
                    }
                    return None;
                };
                let mut seen: HashMap<&str, &Span> = HashMap::new();
                let mut ok = true;
                for k in &keys {
                    if let Some(problem) = check_key(&k.value, false) {
                        self.diags.push(
                            Diagnostic::error(Kind::InvalidKey, problem).at(&k.span, "invalid key"),
                        );
                        ok = false;
                    } else if let Some(first) = seen.insert(&k.value, &k.span) {
                        self.diags.push(
                            Diagnostic::error(
                                Kind::Duplicate,
                                format!("partition key `{}` is listed twice in {what}", k.value),
                            )
                            .at(&k.span, "listed again here")
                            .also(first, "first listed here"),
                        );
                        ok = false;
                    }
                }
                if keys.is_empty() {
                    self.diags.push(
                        Diagnostic::error(Kind::InvalidValue, format!("{what} has no keys"))
                            .at(&r.span_of(r.get("keys").unwrap()), "empty list"),
                    );
                    ok = false;
                }
                ok.then(|| {
                    Arc::new(PartitionsDef::Static(StaticPartitions::new(
                        keys.into_iter().map(|k| k.value).collect(),
                    )))
                })
            }
            "dynamic" => match name {
                Some(n) => Some(Arc::new(PartitionsDef::Dynamic {
                    name: n.to_string(),
                })),
                None => {
                    self.diags.push(
                        Diagnostic::error(Kind::InvalidValue, format!("dynamic partitions in {what} must be named"))
                            .at(&span, "inline dynamic definition")
                            .help("define it as `[partitions.NAME] type = \"dynamic\"` and refer to it by name; its keys are managed with `dg partitions add NAME KEY…`"),
                    );
                    None
                }
            },
            "multi" => self.multi_def(&r, what, allow_multi, &span),
            _ => self.time_def(&r, &ty, what, &span),
        }
    }

    fn multi_def(
        &mut self,
        r: &Reader<'_, '_>,
        what: &str,
        allow_multi: bool,
        span: &Span,
    ) -> Option<Arc<PartitionsDef>> {
        if !allow_multi {
            self.diags.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("{what} cannot be multi-partitioned"),
                )
                .at(span, "multi inside multi")
                .help(
                    "a multi definition has exactly two dimensions, each a time, static or dynamic definition",
                ),
            );
            return None;
        }
        let Some((dims, dims_value)) = r.table("dimensions", self.diags) else {
            if r.get("dimensions").is_none() {
                self.diags.push(
                    Diagnostic::error(Kind::MissingField, format!("{what} has no `dimensions`"))
                        .at(span, "missing `dimensions`")
                        .help("add `dimensions = { date = \"daily\", region = \"region\" }`"),
                );
            }
            return None;
        };
        if dims.len() != 2 {
            self.diags.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!(
                        "{what} must have exactly two dimensions, found {}",
                        dims.len()
                    ),
                )
                .at(&r.span_of(dims_value), {
                    let names: Vec<&str> = dims.iter().map(|(k, _)| k.get_ref().as_ref()).collect();
                    format!("dimensions {}", crate::diag::list_names(&names))
                })
                .help("a multi definition has exactly two dimensions, each a time, static or dynamic definition"),
            );
            return None;
        }
        // Each dimension becomes `DG_PARTITION_<DIM>`: the two must differ.
        let mut keys: Vec<(String, Span)> = dims
            .iter()
            .map(|(k, _)| (k.get_ref().to_string(), Span::new(r.file, k.span())))
            .collect();
        keys.sort_by_key(|(_, s)| s.range.start);
        if let [(a, a_span), (b, b_span)] = keys.as_slice() {
            let var = crate::names::env_name(a);
            if var == crate::names::env_name(b) {
                self.diags.push(
                    Diagnostic::error(
                        Kind::Duplicate,
                        format!(
                            "dimensions `{a}` and `{b}` of {what} both become `DG_PARTITION_{var}`"
                        ),
                    )
                    .at(b_span, format!("`{b}` → `DG_PARTITION_{var}`"))
                    .also(a_span, format!("`{a}` → `DG_PARTITION_{var}`"))
                    .help("a step sees each dimension as `DG_PARTITION_<DIM>`, upper-cased with other characters written `_`; rename one of them"),
                );
            }
        }
        let mut out: Vec<(String, Arc<PartitionsDef>)> = Vec::new();
        for (k, v) in dims.iter() {
            let dim_name = k.get_ref().to_string();
            let dim_what = format!("dimension `{dim_name}` of {what}");
            let def = match v.get_ref() {
                DeValue::String(s) => self.named_ref(s, &r.span_of(v), &dim_what),
                _ => self.partitions_def(r.file, v, None, &dim_what, false),
            };
            if let Some(d) = def {
                if matches!(*d, PartitionsDef::Multi(_)) {
                    self.diags.push(
                        Diagnostic::error(
                            Kind::InvalidValue,
                            format!("{dim_what} cannot be multi-partitioned"),
                        )
                        .at(&r.span_of(v), "a multi definition"),
                    );
                    continue;
                }
                if let PartitionsDef::Static(s) = &*d {
                    for key in s.keys() {
                        if let Some(problem) = check_key(key, true) {
                            self.diags.push(
                                Diagnostic::error(Kind::InvalidKey, problem)
                                    .at(&r.span_of(v), "in this dimension"),
                            );
                        }
                    }
                }
                out.push((dim_name, d));
            }
        }
        if out.len() != 2 {
            return None;
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let b = out.pop()?;
        let a = out.pop()?;
        Some(Arc::new(PartitionsDef::Multi(MultiPartitions {
            dims: [a, b],
        })))
    }

    fn named_ref(&mut self, name: &str, span: &Span, what: &str) -> Option<Arc<PartitionsDef>> {
        if let Some(n) = self.named_partitions.get(name) {
            return Some(n.def.clone());
        }
        if self.failed_partitions.contains(name) {
            return None; // defined, but invalid: that error is already reported
        }
        if self.declared_partitions.iter().any(|n| n == name) {
            // Defined and not validated yet: only multi definitions come
            // later, and only a multi dimension can name one this early.
            self.diags.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("{what} cannot be multi-partitioned"),
                )
                .at(span, format!("`{name}` is a multi definition"))
                .help("a multi definition has exactly two dimensions, each a time, static or dynamic definition"),
            );
            return None;
        }
        let names: Vec<&str> = self
            .declared_partitions
            .iter()
            .map(String::as_str)
            .collect();
        self.diags.push(
            Diagnostic::error(
                Kind::UnknownReference,
                format!("{what} refers to unknown partitions `{name}`"),
            )
            .at(span, "not defined")
            .help(suggest(name, &names, "defined partitions")),
        );
        None
    }

    fn time_def(
        &mut self,
        r: &Reader<'_, '_>,
        ty: &str,
        what: &str,
        span: &Span,
    ) -> Option<Arc<PartitionsDef>> {
        let d = &mut *self.diags;
        let mut ok = true;
        let mut offset = |key: &str, lo: i64, hi: i64, default: i64, d: &mut Diagnostics| -> u32 {
            match r.int(key, d) {
                Some((n, s)) if n < lo || n > hi => {
                    d.push(
                        Diagnostic::error(Kind::InvalidValue, format!("`{key}` of {what} must be between {lo} and {hi}, found {n}"))
                            .at(&s, "out of range")
                            .help_opt((key == "day_offset" && ty == "monthly" && n > 28).then(|| {
                                "not every month has that day; use `type = \"cron\"` for such schedules".to_string()
                            })),
                    );
                    ok = false;
                    default as u32
                }
                Some((n, _)) => n as u32,
                None => default as u32,
            }
        };
        let minute = offset("minute_offset", 0, 59, 0, d);
        let hour = offset("hour_offset", 0, 23, 0, d);
        let schedule = match ty {
            "hourly" => Schedule::Hourly { minute },
            "daily" => Schedule::Daily { hour, minute },
            "weekly" => Schedule::Weekly {
                weekday: offset("day_offset", 0, 6, 0, d),
                hour,
                minute,
            },
            "monthly" => Schedule::Monthly {
                day: offset("day_offset", 1, 28, 1, d),
                hour,
                minute,
            },
            _ => {
                let Some(c) = r.str("cron", d) else {
                    if r.get("cron").is_none() {
                        d.push(
                            Diagnostic::error(Kind::MissingField, format!("{what} has no `cron`"))
                                .at(span, "missing `cron`")
                                .help("add a five-field schedule, e.g. `cron = \"0 */6 * * *\"`"),
                        );
                    }
                    return None;
                };
                match time::parse_cron(&c.value) {
                    Ok(cron) => Schedule::Cron {
                        expr: c.value.clone(),
                        cron: Box::new(cron),
                    },
                    Err(e) => {
                        d.push(
                            Diagnostic::error(Kind::BadCron, format!("invalid cron schedule `{}` in {what}", c.value))
                                .at(&c.span, e)
                                .help(if c.value.split_whitespace().count() == 5 {
                                    "field ranges: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-6 or SUN-SAT"
                                } else {
                                    "use five fields: minute hour day-of-month month day-of-week, e.g. `0 */6 * * *`"
                                }),
                        );
                        return None;
                    }
                }
            }
        };
        let tz = match r.str("timezone", d) {
            Some(s) => time_zone(&s, what, d).unwrap_or_else(|| {
                ok = false;
                chrono_tz::UTC
            }),
            None => chrono_tz::UTC,
        };
        let fmt = r.str("fmt", d);
        let end_offset = window_offset(r, "end_offset", what, d).unwrap_or_else(|()| {
            ok = false;
            0
        });
        let Some(start) = r.str("start", d) else {
            if r.get("start").is_none() {
                d.push(
                    Diagnostic::error(Kind::MissingField, format!("{what} has no `start`"))
                        .at(span, "missing `start`")
                        .help(format!("add `start = \"{}\"`", example_start(&schedule))),
                );
            }
            return None;
        };
        let end = r.str("end", d);
        let fmt_used = fmt
            .as_ref()
            .map(|f| f.value.clone())
            .unwrap_or_else(|| schedule.default_fmt().to_string());
        let write_like = || example_in(&fmt_used).map(|ex| format!("write it like `{ex}`"));
        match TimePartitions::new(
            schedule,
            tz,
            fmt.as_ref().map(|f| f.value.clone()),
            &start.value,
            end.as_ref().map(|e| e.value.as_str()),
            end_offset,
        ) {
            Ok(t) => ok.then(|| Arc::new(PartitionsDef::Time(t))),
            Err(TimeDefError::Fmt(m)) => {
                let at = fmt
                    .as_ref()
                    .map(|f| f.span.clone())
                    .unwrap_or_else(|| span.clone());
                d.push(Diagnostic::error(Kind::BadFormat, format!("invalid `fmt` in {what}: {m}")).at(&at, "this format").help(
                    "use strftime codes that name the window down to its schedule, e.g. `%Y-%m-%d-%H:%M` for hourly",
                ));
                None
            }
            Err(TimeDefError::Start(m)) => {
                d.push(
                    Diagnostic::error(Kind::BadDate, format!("invalid `start` in {what}: {m}"))
                        .at(&start.span, "cannot be read with the format")
                        .help_opt(write_like()),
                );
                None
            }
            Err(TimeDefError::Schedule(m)) => {
                let at = r
                    .get("cron")
                    .map(|c| Span::new(span.file, c.span()))
                    .unwrap_or_else(|| span.clone());
                d.push(
                    Diagnostic::error(Kind::BadCron, format!("{what} has no partitions: {m}"))
                        .at(&at, "never fires")
                        .help("check the day-of-month and month fields: a date such as 30 February never comes"),
                );
                None
            }
            Err(TimeDefError::End(m)) => {
                let at = end
                    .as_ref()
                    .map(|e| e.span.clone())
                    .unwrap_or_else(|| span.clone());
                d.push(
                    Diagnostic::error(Kind::BadDate, format!("invalid `end` in {what}: {m}"))
                        .at(&at, "invalid end")
                        .help_opt(
                            m.contains("does not match the format")
                                .then(write_like)
                                .flatten(),
                        ),
                );
                None
            }
        }
    }

    /// A `[jobs.NAME]` table.
    fn job(&mut self, e: &Entry<'_, '_>) -> Option<Job> {
        let what = format!("job `{}`", e.name);
        let d = &mut *self.diags;
        let before = d.error_count();
        let r = Reader::of_value(e.file, e.value, what.clone(), JOB_FIELDS, d)?;
        let select = match r.str("select", d) {
            Some(s) if s.value.trim().is_empty() => {
                d.push(
                    Diagnostic::error(Kind::InvalidValue, format!("`select` in {what} is empty"))
                        .at(&s.span, "empty selection")
                        .help("select assets as `--select` does, e.g. `select = \"*\"` or `select = \"+daily_report\"`"),
                );
                None
            }
            Some(s) => Some(s),
            None => {
                if r.get("select").is_none() {
                    d.push(
                        Diagnostic::error(Kind::MissingField, format!("{what} has no `select`"))
                            .at(&e.span, "missing `select`")
                            .help("add `select = \"*\"` (every asset) or a selection such as `select = \"+daily_report\"`"),
                    );
                }
                None
            }
        };
        // At most one targeting field.
        let mut given: Vec<(&str, Span)> = JOB_TARGETING
            .iter()
            .filter_map(|&f| r.key_span(f).map(|s| (f, s)))
            .collect();
        given.sort_by_key(|(_, s)| s.range.start);
        if given.len() > 1 {
            let mut diag = Diagnostic::error(
                Kind::InvalidValue,
                format!(
                    "{what} has {} targeting fields: `{}` and `{}`",
                    given.len(),
                    given[0].0,
                    given[1].0
                ),
            )
            .at(&given[1].1, "second targeting field");
            diag = diag.also(&given[0].1, "first targeting field");
            d.push(
                diag.help(
                    "keep one of `partition`, `partition_range`, `last` and `all_partitions`",
                ),
            );
        }
        let mut targeting = JobTargeting::None;
        if let Some(p) = r.str("partition", d) {
            if p.value.trim().is_empty() {
                d.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!("`partition` in {what} is empty"),
                    )
                    .at(&p.span, "empty partition key")
                    .help("give a key, `\"latest\"`, or `\"DEF:KEY\"`"),
                );
            }
            targeting = JobTargeting::Partition(p.value);
        }
        if let Some(p) = r.str("partition_range", d) {
            match p.value.split_once("...") {
                Some((a, b)) if !a.is_empty() && !b.is_empty() => {}
                _ => d.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!("invalid `partition_range` `{}` in {what}", p.value),
                    )
                    .at(&p.span, "expected `START...END`")
                    .help(
                        "e.g. `partition_range = \"2024-01-01...2024-01-07\"` (both ends included)",
                    ),
                ),
            }
            targeting = JobTargeting::PartitionRange(p.value);
        }
        if let Some((n, span)) = r.int("last", d) {
            match u32::try_from(n) {
                Ok(n) if n >= 1 => targeting = JobTargeting::Last(n),
                _ => d.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!("`last` in {what} must be at least 1, found {n}"),
                    )
                    .at(&span, "expected a positive count")
                    .help("`last = N` targets the last N partitions of each definition"),
                ),
            }
        }
        if let Some(all) = r.bool("all_partitions", d)
            && all
        {
            targeting = JobTargeting::AllPartitions;
        }
        let missing = r.bool("missing", d).unwrap_or(false);
        let stale = r.bool("stale", d).unwrap_or(false);
        let _ = r.str("description", d);
        let tz = match r.str("timezone", d) {
            Some(s) => time_zone(&s, &what, d),
            None => Some(chrono_tz::UTC),
        };
        let catchup = match r.str("catchup", d) {
            None => Catchup::Latest,
            Some(c) => match c.value.as_str() {
                "latest" => Catchup::Latest,
                "all" => Catchup::All,
                other => {
                    d.push(
                        Diagnostic::error(
                            Kind::InvalidValue,
                            format!("invalid `catchup` `{other}` in {what}"),
                        )
                        .at(&c.span, "expected `latest` or `all`")
                        .help(match crate::diag::did_you_mean(other, ["latest", "all"]) {
                            Some(s) => format!("did you mean `{s}`? `latest` runs once for the newest missed tick, `all` once per missed tick"),
                            None => "`latest` runs once for the newest missed tick, `all` once per missed tick".into(),
                        }),
                    );
                    Catchup::Latest
                }
            },
        };
        let cron = match r.str("cron", d) {
            None => None,
            Some(c) => match time::parse_cron(&c.value) {
                Ok(cron) => Some((c.value.clone(), cron)),
                Err(msg) => {
                    d.push(
                        Diagnostic::error(
                            Kind::BadCron,
                            format!("invalid cron schedule `{}` in {what}", c.value),
                        )
                        .at(&c.span, msg)
                        .help(if c.value.split_whitespace().count() == 5 {
                            "field ranges: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-6 or SUN-SAT"
                        } else {
                            "use five fields: minute hour day-of-month month day-of-week, e.g. `0 * * * *` (hourly)"
                        }),
                    );
                    None
                }
            },
        };
        if cron.is_none() && r.get("cron").is_none() {
            for f in ["timezone", "catchup"] {
                if let Some(span) = r.key_span(f) {
                    d.push(
                        Diagnostic::warning(
                            Kind::InvalidValue,
                            format!("`{f}` in {what} has no effect without `cron`"),
                        )
                        .at(&span, "ignored")
                        .help(
                            "add `cron = \"…\"` for `dg tick` to run the job, or remove this field",
                        ),
                    );
                }
            }
        }
        if d.error_count() > before {
            return None;
        }
        let select = select?;
        Some(Job {
            name: e.name.clone(),
            span: e.span.clone(),
            select: select.value,
            select_span: select.span,
            targeting,
            missing,
            stale,
            schedule: cron.map(|(expr, cron)| JobSchedule {
                expr,
                cron,
                tz: tz.unwrap_or(chrono_tz::UTC),
                catchup,
            }),
        })
    }

    /// Each asset stored with a `path` template: the template suits its
    /// partitions, and no two partitions (or assets) share a path.
    fn check_storage_paths(
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

    fn resource(&mut self, e: &Entry<'_, '_>) -> Option<Resource> {
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
        match kind.validate(value) {
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
                self.diags.push(
                    Diagnostic::error(
                        Kind::Duplicate,
                        format!("fields `{first}` and `{field}` of {what} both become `{var}`"),
                    )
                    .at(&key_span, format!("`{field}` → `{var}`"))
                    .also(first_span, format!("`{first}` → `{var}`"))
                    .help("a step sees each field upper-cased with other characters written `_`; rename one of them"),
                );
                ok = false;
            }
            vars.push((field.clone(), var, key_span));
            config.insert(field, value);
        }
        let mut secrets = Vec::new();
        if let Some(v) = t.get("secrets") {
            let r = Reader::new(
                e.file,
                t,
                e.value.span(),
                what.to_string(),
                &[],
                &mut Diagnostics::default(),
            );
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

    /// Parses every string under `table` as a template, and warns about unset variables.
    fn check_templates(&mut self, file: FileId, table: &load::Table<'_>, what: &str) {
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

    fn template(&mut self, s: &Str, what: &str) -> Option<Template> {
        check_template(s, what, self.env, self.diags)
    }

    fn asset(
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

    /// Finds cycles (reporting each with its full path) and returns a
    /// topological order of all assets.
    fn topo_order(&mut self, names: &[&str]) -> Vec<usize> {
        let n = names.len();
        let ups = |edges: &Vec<Vec<(usize, Span)>>, i: usize| -> Vec<usize> {
            edges[i]
                .iter()
                .map(|(u, _)| *u)
                .filter(|&u| u != i)
                .collect()
        };
        // 0 = new, 1 = on stack, 2 = done
        let mut state = vec![0u8; n];
        let mut order = Vec::with_capacity(n);
        let mut reported: Vec<Vec<usize>> = Vec::new();
        for root in 0..n {
            if state[root] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, Vec<usize>, usize)> =
                vec![(root, ups(&self.edges, root), 0)];
            state[root] = 1;
            while let Some((node, children, idx)) = stack.last_mut() {
                if *idx < children.len() {
                    let c = children[*idx];
                    *idx += 1;
                    match state[c] {
                        0 => {
                            state[c] = 1;
                            let cu = ups(&self.edges, c);
                            stack.push((c, cu, 0));
                        }
                        1 => {
                            // Cycle: from c up the stack to the current node.
                            let pos = stack.iter().position(|(x, _, _)| *x == c).unwrap_or(0);
                            let mut cycle: Vec<usize> =
                                stack[pos..].iter().map(|(x, _, _)| *x).collect();
                            let mut canon = cycle.clone();
                            canon.sort_unstable();
                            if !reported.contains(&canon) {
                                reported.push(canon);
                                self.report_cycle(names, &mut cycle);
                            }
                        }
                        _ => {}
                    }
                } else {
                    let done = *node;
                    state[done] = 2;
                    order.push(done);
                    stack.pop();
                }
            }
        }
        order
    }

    fn report_cycle(&mut self, names: &[&str], cycle: &mut [usize]) {
        // `cycle` lists nodes where each reads the next (downstream → upstream).
        // Show it in data-flow order: upstream → … → downstream → upstream.
        cycle.reverse();
        // Start at the asset defined first, so the message reads like the files.
        if let Some(first) = (0..cycle.len()).min_by_key(|&k| cycle[k]) {
            cycle.rotate_left(first);
        }
        let path: Vec<&str> = cycle.iter().map(|&i| names[i]).collect();
        let mut text = path.join(" → ");
        text.push_str(" → ");
        text.push_str(path[0]);
        let mut diag = Diagnostic::error(Kind::Cycle, format!("dependency cycle: {text}"));
        for (k, &i) in cycle.iter().enumerate() {
            let upstream = cycle[(k + cycle.len() - 1) % cycle.len()];
            if let Some((_, span)) = self.edges[i].iter().find(|(u, _)| *u == upstream) {
                let label = format!("`{}` reads `{}`", names[i], names[upstream]);
                diag = if diag.primary.is_none() {
                    diag.at(span, label)
                } else {
                    diag.also(span, label)
                };
            }
        }
        self.diags
            .push(diag.help("remove one of these dependencies to break the cycle"));
    }
}

/// Where `[assets.KEY.ins.INPUT] mapping = …` is written, if it is.
fn raw_mapping_span(e: &Entry<'_, '_>, input: &str) -> Option<Span> {
    let DeValue::Table(asset) = e.value.get_ref() else {
        return None;
    };
    let DeValue::Table(ins) = asset.get("ins")?.get_ref() else {
        return None;
    };
    let DeValue::Table(inp) = ins.get(input)?.get_ref() else {
        return None;
    };
    inp.get("mapping").map(|m| Span::new(e.file, m.span()))
}

/// What to do about a mapping that cannot apply to its two definitions.
fn mapping_help(
    spec: &MappingSpec,
    inferred: bool,
    up: Option<&PartitionsDef>,
    down: Option<&PartitionsDef>,
) -> String {
    if let (
        MappingSpec::TimeWindow { .. },
        Some(PartitionsDef::Time(a)),
        Some(PartitionsDef::Time(b)),
    ) = (spec, up, down)
        && a.tz != b.tz
    {
        return "give both partitions definitions the same `timezone`, or map with `type = \"all\"`".into();
    }
    // Each mapping type in its simplest form: those that fit these two definitions.
    let candidates = [
        MappingSpec::Identity,
        MappingSpec::TimeWindow {
            start_offset: 0,
            end_offset: 0,
            allow_nonexistent: false,
        },
        MappingSpec::All,
        MappingSpec::Last,
        MappingSpec::Static {
            map: BTreeMap::new(),
        },
        MappingSpec::Specific { keys: Vec::new() },
        MappingSpec::MultiToSingle { dimension: None },
        MappingSpec::Multi {
            dimensions: BTreeMap::new(),
        },
    ];
    let fits: Vec<&str> = candidates
        .iter()
        .filter(|c| mapping::check_applicable(c, up, down).is_ok())
        .map(MappingSpec::type_name)
        .collect();
    if fits.contains(&spec.type_name()) {
        // The type fits; what it names does not.
        let keys = |p: Option<&PartitionsDef>| match p {
            Some(PartitionsDef::Static(s)) => {
                let k: Vec<&str> = s.keys().iter().map(String::as_str).collect();
                Some(crate::diag::list_names(&k))
            }
            _ => None,
        };
        return match (keys(up), keys(down)) {
            (Some(u), Some(d)) => format!("upstream keys: {u}; downstream keys: {d}"),
            (Some(u), None) => format!("upstream keys: {u}"),
            _ => {
                "check the keys and dimensions it names against both partitions definitions".into()
            }
        };
    }
    let fits_text = crate::diag::list_names(&fits);
    if inferred {
        format!(
            "write a mapping for this input under `[assets.KEY.ins.NAME]`; these fit `{}` → `{}`: {fits_text}",
            describe(up),
            describe(down)
        )
    } else {
        format!(
            "mappings that fit `{}` → `{}`: {fits_text}",
            describe(up),
            describe(down)
        )
    }
}

fn describe(p: Option<&PartitionsDef>) -> String {
    match p {
        None => "unpartitioned".into(),
        Some(d) => d.type_name().into(),
    }
}

fn example_start(s: &Schedule) -> &'static str {
    match s {
        Schedule::Hourly { .. } | Schedule::Cron { .. } => "2024-01-01-00:00",
        _ => "2024-01-01",
    }
}

/// 2024-01-01 00:00 written with `fmt`, or `None` when `fmt` cannot write it.
fn example_in(fmt: &str) -> Option<String> {
    use std::fmt::Write;
    let t = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)?.and_hms_opt(0, 0, 0)?;
    let mut out = String::new();
    write!(out, "{}", t.format(fmt)).ok()?;
    Some(out)
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

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into a
/// message and a "did you mean" hint.
fn describe_serde_error(msg: &str) -> (String, Option<String>) {
    let first = msg.lines().next().unwrap_or(msg).to_string();
    // A resource type's own check may add `help: …` on a second line.
    if let Some((_, help)) = msg.split_once("\nhelp: ") {
        return (first, Some(help.to_string()));
    }
    if let Some(rest) = first.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once("`, expected ")
    {
        let valid = expected_names(expected);
        return (
            format!("unknown field `{field}`"),
            Some(suggest(field, &valid, "valid fields")),
        );
    }
    if let Some(rest) = first.strip_prefix("unknown variant `")
        && let Some((v, expected)) = rest.split_once("`, expected ")
    {
        let valid = expected_names(expected);
        return (
            format!("unknown value `{v}`"),
            Some(suggest(v, &valid, "valid values")),
        );
    }
    (first, None)
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

/// Parses a mapping table into a [`MappingSpec`], checking its shape.
fn mapping_spec(
    file: FileId,
    v: &Value<'_>,
    what: &str,
    d: &mut Diagnostics,
) -> Option<MappingSpec> {
    let span = Span::new(file, v.span());
    let DeValue::Table(t) = v.get_ref() else {
        d.push(
            Diagnostic::error(
                Kind::WrongType,
                format!(
                    "{what} must be a table, found {}",
                    load::type_name(v.get_ref())
                ),
            )
            .at(&span, "expected `{ type = … }`"),
        );
        return None;
    };
    let Some(ty) = t.get("type").and_then(|x| x.get_ref().as_str()) else {
        d.push(
            Diagnostic::error(Kind::MissingField, format!("{what} has no `type`"))
                .at(&span, "missing `type`")
                .help(format!(
                    "add `type = ` one of {}",
                    crate::diag::list_names(MappingSpec::TYPES)
                )),
        );
        return None;
    };
    if !MappingSpec::TYPES.contains(&ty) {
        let ty_span = Span::new(file, t.get("type").map(|x| x.span()).unwrap_or(v.span()));
        d.push(
            Diagnostic::error(
                Kind::Mapping,
                format!("unknown mapping type `{ty}` in {what}"),
            )
            .at(&ty_span, "unknown type")
            .help(suggest(ty, MappingSpec::TYPES, "valid types")),
        );
        return None;
    }
    let r = Reader::new(file, t, v.span(), what, MappingSpec::fields(ty), d);
    Some(match ty {
        "identity" => MappingSpec::Identity,
        "all" => MappingSpec::All,
        "last" => MappingSpec::Last,
        "time_window" => MappingSpec::TimeWindow {
            start_offset: window_offset(&r, "start_offset", what, d).unwrap_or(0),
            end_offset: window_offset(&r, "end_offset", what, d).unwrap_or(0),
            allow_nonexistent: r.bool("allow_nonexistent", d).unwrap_or(false),
        },
        "static" => {
            let Some((m, _)) = r.table("map", d) else {
                if r.get("map").is_none() {
                    d.push(
                        Diagnostic::error(Kind::MissingField, format!("{what} has no `map`"))
                            .at(&span, "missing `map`")
                            .help("add `map = { upstream_key = \"downstream_key\" }`"),
                    );
                }
                return None;
            };
            let mut map = BTreeMap::new();
            for (k, val) in m.iter() {
                let targets = match val.get_ref() {
                    DeValue::String(s) => vec![s.to_string()],
                    DeValue::Array(a) if a.iter().all(|x| x.get_ref().is_str()) => a
                        .iter()
                        .filter_map(|x| x.get_ref().as_str().map(String::from))
                        .collect(),
                    other => {
                        d.push(
                            Diagnostic::error(
                                Kind::WrongType,
                                format!(
                                    "`map.{}` in {what} must be a key or a list of keys, found {}",
                                    k.get_ref(),
                                    load::type_name(other)
                                ),
                            )
                            .at(
                                &Span::new(file, val.span()),
                                "expected a string or array of strings",
                            ),
                        );
                        continue;
                    }
                };
                map.insert(k.get_ref().to_string(), targets);
            }
            MappingSpec::Static { map }
        }
        "specific" => match r.str_array("keys", d) {
            Some(keys) => MappingSpec::Specific {
                keys: keys.into_iter().map(|k| k.value).collect(),
            },
            None => {
                if r.get("keys").is_none() {
                    d.push(
                        Diagnostic::error(Kind::MissingField, format!("{what} has no `keys`"))
                            .at(&span, "missing `keys`"),
                    );
                }
                return None;
            }
        },
        "multi_to_single" => MappingSpec::MultiToSingle {
            dimension: r.str("dimension", d).map(|s| s.value),
        },
        _ => {
            let Some((dims, _)) = r.table("dimensions", d) else {
                if r.get("dimensions").is_none() {
                    d.push(
                        Diagnostic::error(Kind::MissingField, format!("{what} has no `dimensions`"))
                            .at(&span, "missing `dimensions`")
                            .help("add `dimensions = { up_dim = { dimension = \"down_dim\", mapping = { type = \"identity\" } } }`"),
                    );
                }
                return None;
            };
            let mut out = BTreeMap::new();
            for (k, val) in dims.iter() {
                let dim_what = format!("dimension `{}` of {what}", k.get_ref());
                let Some(dr) = Reader::of_value(file, val, &dim_what, &["dimension", "mapping"], d)
                else {
                    continue;
                };
                let Some(down) = dr.str("dimension", d) else {
                    if dr.get("dimension").is_none() {
                        d.push(
                            Diagnostic::error(
                                Kind::MissingField,
                                format!("{dim_what} has no `dimension`"),
                            )
                            .at(&Span::new(file, val.span()), "missing `dimension`"),
                        );
                    }
                    continue;
                };
                let inner = match dr.get("mapping") {
                    Some(m) => match mapping_spec(file, m, &format!("mapping of {dim_what}"), d) {
                        Some(s) => s,
                        None => continue,
                    },
                    None => MappingSpec::Identity,
                };
                out.insert(k.get_ref().to_string(), (down.value, Box::new(inner)));
            }
            MappingSpec::Multi { dimensions: out }
        }
    })
}

fn check_template(
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
fn check_template_values(
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
    fn serde_unknown_field_gets_suggestion() {
        let (m, h) =
            describe_serde_error("unknown field `base_dri`, expected `base_dir` or `format`");
        assert_eq!(expected_names("one of `a`, `b`"), vec!["a", "b"]);
        assert_eq!(m, "unknown field `base_dri`");
        assert_eq!(h.unwrap(), "did you mean `base_dir`?");
    }

    // --- validation of whole definition folders ------------------------------
    //
    // Each test writes files into a temporary `defs/`, runs `load_defs`, and
    // asserts a diagnostic's kind together with the exact bytes it points at.

    use crate::diag::{Diagnostic, Severity};
    use std::ops::Range;

    struct Checked {
        sources: Sources,
        diags: Diagnostics,
        defs: Option<Defs>,
        texts: Vec<(String, String)>,
    }

    fn check(files: &[(&str, &str)]) -> Checked {
        check_env(files, &[])
    }

    fn check_env(files: &[(&str, &str)], env: &[(&str, &str)]) -> Checked {
        let dir = tempfile::tempdir().unwrap();
        let defs_dir = dir.path().join("defs");
        for (name, text) in files {
            let path = defs_dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let project = Project {
            root: dir.path().to_path_buf(),
            config_file: None,
            defs_dir,
            state_dir: dir.path().join(".dg"),
            state_url: None,
            jobs: None,
            executor: Default::default(),
            slurm: Default::default(),
            pools: Default::default(),
            config_id: None,
            profiles: Vec::new(),
            selected_profile: None,
            hooks: Default::default(),
        };
        let lookup = |n: &str| {
            env.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        };
        let mut sources = Sources::default();
        let mut diags = Diagnostics::default();
        let defs = load_defs(
            &project,
            dir.path(),
            &Registry::builtin(),
            &lookup,
            &mut sources,
            &mut diags,
        );
        Checked {
            sources,
            diags,
            defs,
            texts: files
                .iter()
                .map(|(n, t)| (format!("defs/{n}"), t.to_string()))
                .collect(),
        }
    }

    impl Checked {
        /// The one diagnostic of `kind`; fails when there are none or several.
        fn only(&self, kind: Kind) -> &Diagnostic {
            let found: Vec<&Diagnostic> =
                self.diags.items.iter().filter(|d| d.kind == kind).collect();
            assert_eq!(found.len(), 1, "one {kind:?} in {:#?}", self.diags.items);
            found[0]
        }

        fn kinds(&self) -> Vec<Kind> {
            self.diags.items.iter().map(|d| d.kind).collect()
        }

        /// (file as displayed, byte range) of the primary label.
        fn primary(&self, d: &Diagnostic) -> (String, Range<usize>) {
            let p = d.primary.as_ref().expect("a located diagnostic");
            (
                self.sources.get(p.span.file).display.clone(),
                p.span.range.clone(),
            )
        }

        fn secondary(&self, d: &Diagnostic, i: usize) -> (String, Range<usize>) {
            let s = &d.secondary[i];
            (
                self.sources.get(s.span.file).display.clone(),
                s.span.range.clone(),
            )
        }

        /// (file, range) of the `nth` occurrence (0-based) of `needle` in `file`.
        fn at(&self, file: &str, needle: &str, nth: usize) -> (String, Range<usize>) {
            let path = format!("defs/{file}");
            let text = &self
                .texts
                .iter()
                .find(|(n, _)| *n == path)
                .expect("a written file")
                .1;
            let start = text
                .match_indices(needle)
                .nth(nth)
                .unwrap_or_else(|| panic!("{needle:?} #{nth} in {file}"))
                .0;
            (path, start..start + needle.len())
        }
    }

    const DAILY: &str = "[partitions.daily]\ntype = \"daily\"\nstart = \"2024-01-01\"\n";

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
    fn duplicate_names_show_both_places() {
        let a = "[assets.orders]\nshell = \"true\"\n";
        let b = "[assets.other]\nshell = \"true\"\n\n[assets.orders]\nsql = \"SELECT 1\"\n";
        let c = check(&[("a.toml", a), ("b.toml", b)]);
        let d = c.only(Kind::Duplicate);
        assert_eq!(c.primary(d), c.at("b.toml", "orders", 0));
        assert_eq!(c.secondary(d, 0), c.at("a.toml", "orders", 0));
        assert_eq!(d.message, "asset `orders` is defined twice");
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
    fn nothing_defined_reads_well() {
        let src = "[assets.orders]\npartitions = \"daily\"\nshell = \"true\"\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::UnknownReference);
        assert_eq!(d.help.as_deref(), Some("defined partitions: none"));
    }

    #[test]
    fn a_cycle_of_three_is_reported_once_with_its_path() {
        let src = "[assets.extract]\ndeps = [\"load\"]\nshell = \"true\"\n\n\
                   [assets.transform]\ndeps = [\"extract\"]\nshell = \"true\"\n\n\
                   [assets.load]\ndeps = [\"transform\"]\nshell = \"true\"\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::Cycle);
        assert_eq!(
            d.message,
            "dependency cycle: extract → transform → load → extract"
        );
        assert_eq!(c.primary(d), c.at("a.toml", "\"load\"", 0));
        assert_eq!(d.secondary.len(), 2);
        assert_eq!(c.secondary(d, 0), c.at("a.toml", "\"extract\"", 0));
        assert_eq!(c.secondary(d, 1), c.at("a.toml", "\"transform\"", 0));
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let src = "[assets.a]\ndeps = [\"a\"]\nshell = \"true\"\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::Cycle);
        assert_eq!(d.message, "asset `a` depends on itself");
        assert_eq!(c.primary(d), c.at("a.toml", "\"a\"", 0));
    }

    #[test]
    fn time_definition_errors_point_at_their_field() {
        let src = "[partitions.tz]\ntype = \"daily\"\nstart = \"2024-01-01\"\ntimezone = \"Europe/Berln\"\n\n\
                   [partitions.date]\ntype = \"hourly\"\nstart = \"2024-01-01\"\n\n\
                   [partitions.cron]\ntype = \"cron\"\ncron = \"0 */6 * *\"\nstart = \"2024-01-01-00:00\"\n\n\
                   [partitions.fmt]\ntype = \"hourly\"\nstart = \"2024-01-01\"\nfmt = \"%Y-%m-%d\"\n";
        let c = check(&[("p.toml", src)]);
        assert_eq!(
            c.kinds(),
            [
                Kind::BadTimezone,
                Kind::BadDate,
                Kind::BadCron,
                Kind::BadFormat
            ]
        );
        let tz = c.only(Kind::BadTimezone);
        assert_eq!(c.primary(tz), c.at("p.toml", "\"Europe/Berln\"", 0));
        assert_eq!(tz.help.as_deref(), Some("did you mean `Europe/Berlin`?"));
        let date = c.only(Kind::BadDate);
        assert_eq!(c.primary(date), c.at("p.toml", "\"2024-01-01\"", 1));
        assert_eq!(
            date.help.as_deref(),
            Some("write it like `2024-01-01-00:00`")
        );
        let cron = c.only(Kind::BadCron);
        assert_eq!(c.primary(cron), c.at("p.toml", "\"0 */6 * *\"", 0));
        let fmt = c.only(Kind::BadFormat);
        assert_eq!(c.primary(fmt), c.at("p.toml", "\"%Y-%m-%d\"", 0));
        assert!(fmt.message.contains("too coarse"), "{}", fmt.message);
    }

    #[test]
    fn a_reference_to_an_invalid_definition_is_not_reported_again() {
        let src = "[partitions.broken]\ntype = \"daily\"\nstart = \"nope\"\n\n\
                   [partitions.m]\ntype = \"multi\"\n\
                   dimensions = { a = \"broken\", b = { type = \"static\", keys = [\"x\"] } }\n\n\
                   [assets.a]\npartitions = \"broken\"\nshell = \"true\"\n\n\
                   [assets.b]\npartitions = \"m\"\ndeps = [\"a\"]\nshell = \"true\"\n";
        let c = check(&[("a.toml", src)]);
        assert_eq!(c.kinds(), [Kind::BadDate]);
        assert_eq!(c.primary(&c.diags.items[0]), c.at("a.toml", "\"nope\"", 0));
        assert!(c.defs.is_none());
    }

    #[test]
    fn a_dimension_naming_a_multi_definition() {
        // `outer` is validated before `inner` (both multi, in file order).
        let src = "[partitions.outer]\ntype = \"multi\"\n\
                   dimensions = { a = \"inner\", b = \"region\" }\n\n\
                   [partitions.inner]\ntype = \"multi\"\n\
                   dimensions = { x = \"region\", y = { type = \"static\", keys = [\"y\"] } }\n\n\
                   [partitions.region]\ntype = \"static\"\nkeys = [\"us\"]\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::InvalidValue);
        assert_eq!(
            d.message,
            "dimension `a` of partitions `outer` cannot be multi-partitioned"
        );
        assert_eq!(c.primary(d), c.at("a.toml", "\"inner\"", 0));
    }

    #[test]
    fn out_of_range_numbers_name_their_owner() {
        let src = "[partitions.mo]\ntype = \"monthly\"\nstart = \"2024-01-01\"\nday_offset = 31\n\n\
                   [assets.a]\nshell = \"true\"\nretries = -1\n";
        let c = check(&[("a.toml", src)]);
        let messages: Vec<&str> = c.diags.items.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`day_offset` of partitions `mo` must be between 1 and 28, found 31",
                "`retries` of asset `a` must be between 0 and 100, found -1",
            ]
        );
        assert_eq!(c.primary(&c.diags.items[0]), c.at("a.toml", "31", 0));
        assert_eq!(c.primary(&c.diags.items[1]), c.at("a.toml", "-1", 0));
    }

    #[test]
    fn bad_partitions_type_and_static_duplicates() {
        let src = "[partitions.a]\ntype = \"dayly\"\nstart = \"2024-01-01\"\n\n\
                   [partitions.region]\ntype = \"static\"\nkeys = [\"us\", \"eu\", \"eu\"]\n";
        let c = check(&[("p.toml", src)]);
        let ty = c.only(Kind::InvalidValue);
        assert_eq!(c.primary(ty), c.at("p.toml", "\"dayly\"", 0));
        assert_eq!(ty.help.as_deref(), Some("did you mean `daily`?"));
        let dup = c.only(Kind::Duplicate);
        assert_eq!(c.primary(dup), c.at("p.toml", "\"eu\"", 1));
        assert_eq!(c.secondary(dup, 0), c.at("p.toml", "\"eu\"", 0));
    }

    #[test]
    fn multi_with_three_dimensions() {
        let src = "[partitions.m]\ntype = \"multi\"\n\
                   dimensions = { a = { type = \"static\", keys = [\"x\"] }, b = { type = \"static\", keys = [\"y\"] }, c = { type = \"static\", keys = [\"z\"] } }\n";
        let c = check(&[("p.toml", src)]);
        let d = c.only(Kind::InvalidValue);
        assert_eq!(
            d.message,
            "partitions `m` must have exactly two dimensions, found 3"
        );
        let (file, range) = c.primary(d);
        assert_eq!(file, "defs/p.toml");
        assert!(src[range].starts_with("{ a = "));
    }

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

    const STATIC_AND_DAILY: &str = "[partitions.region]\ntype = \"static\"\nkeys = [\"us\", \"eu\"]\n\n\
        [partitions.daily]\ntype = \"daily\"\nstart = \"2024-01-01\"\n\n\
        [assets.sales]\npartitions = \"region\"\nshell = \"true\"\n";

    #[test]
    fn a_written_mapping_that_cannot_apply_points_at_the_mapping() {
        let src = "[assets.daily_sales]\npartitions = \"daily\"\nshell = \"true\"\n\n\
                   [assets.daily_sales.ins.sales]\nmapping = { type = \"identity\" }\n";
        let c = check(&[("a.toml", STATIC_AND_DAILY), ("b.toml", src)]);
        let d = c.only(Kind::Mapping);
        assert_eq!(c.primary(d), c.at("b.toml", "{ type = \"identity\" }", 0));
        // `sales` in `[assets.daily_sales.ins.sales]`
        assert_eq!(c.secondary(d, 0), c.at("b.toml", "sales", 2));
        assert!(d.message.starts_with(
            "the `identity` mapping cannot apply to input `sales` of asset `daily_sales`"
        ));
        assert_eq!(
            d.help.as_deref(),
            Some("mappings that fit `static` → `daily`: `all`, `last`, `specific`")
        );
    }

    #[test]
    fn an_inferred_mapping_that_cannot_apply_points_at_the_dep() {
        let src =
            "[assets.daily_sales]\npartitions = \"daily\"\ndeps = [\"sales\"]\nshell = \"true\"\n";
        let c = check(&[("a.toml", STATIC_AND_DAILY), ("b.toml", src)]);
        let d = c.only(Kind::Mapping);
        assert_eq!(c.primary(d), c.at("b.toml", "\"sales\"", 0));
        assert!(d.secondary.is_empty());
        assert!(d.message.starts_with("the inferred `identity` mapping"));
    }

    #[test]
    fn static_mapping_with_an_unknown_key_lists_the_keys() {
        let src = "[partitions.market]\ntype = \"static\"\nkeys = [\"americas\"]\n\n\
                   [assets.m]\npartitions = \"market\"\nshell = \"true\"\n\n\
                   [assets.m.ins.sales]\nmapping = { type = \"static\", map = { apac = \"americas\" } }\n";
        let c = check(&[("a.toml", STATIC_AND_DAILY), ("b.toml", src)]);
        let d = c.only(Kind::Mapping);
        assert!(
            d.message
                .ends_with("upstream has no partition `apac` (its keys: `us`, `eu`)")
        );
        assert_eq!(
            d.help.as_deref(),
            Some("upstream keys: `us`, `eu`; downstream keys: `americas`")
        );
    }

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
    fn unset_env_is_a_warning_and_set_env_is_fine() {
        let src = "[assets.a]\nshell = \"true\"\nenv = { X = \"${env:DG_UNIT_UNSET}\" }\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::EnvVar);
        assert_eq!(d.severity, Severity::Warning);
        assert_eq!(c.primary(d), c.at("a.toml", "\"${env:DG_UNIT_UNSET}\"", 0));
        assert!(c.defs.is_some(), "warnings do not stop the load");

        let c = check_env(&[("a.toml", src)], &[("DG_UNIT_UNSET", "1")]);
        assert!(c.diags.items.is_empty(), "{:#?}", c.diags.items);
        assert!(c.defs.is_some());
    }

    #[test]
    fn bad_env_syntax_names_the_asset() {
        let src = "[assets.a]\nshell = \"true\"\nenv = { X = \"${env:X\" }\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::EnvVar);
        assert_eq!(d.severity, Severity::Error);
        assert_eq!(d.message, "invalid environment reference in asset `a`");
        assert_eq!(c.primary(d), c.at("a.toml", "\"${env:X\"", 0));
    }

    #[test]
    fn unknown_top_level_table() {
        let src = "[asset.a]\nshell = \"true\"\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::UnknownField);
        assert_eq!(d.message, "unknown top-level table `asset`");
        assert_eq!(c.primary(d), c.at("a.toml", "asset", 0));
        assert_eq!(d.help.as_deref(), Some("did you mean `assets`?"));
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
        let unknown = c.only(Kind::UnknownField);
        assert_eq!(c.primary(unknown), c.at("r.toml", "base_dri", 0));
        assert_eq!(unknown.help.as_deref(), Some("did you mean `base_dir`?"));
        let missing = c.only(Kind::MissingField);
        assert!(missing.message.starts_with("missing field `path`"));
        let wrong = c.only(Kind::WrongType);
        assert!(
            wrong
                .message
                .starts_with("invalid `format` in resource `other` (type `fs`)"),
            "{}",
            wrong.message
        );
        assert_eq!(c.primary(wrong), c.at("r.toml", "3", 0));
        let ty = c.only(Kind::InvalidValue);
        assert_eq!(c.primary(ty), c.at("r.toml", "\"s3\"", 0));
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

    #[test]
    fn dimensions_that_share_an_environment_variable_are_an_error() {
        let src = "[partitions.m]\ntype = \"multi\"\n\
                   dimensions = { \"a-b\" = { type = \"static\", keys = [\"x\"] }, a_b = { type = \"static\", keys = [\"y\"] } }\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::Duplicate);
        assert_eq!(
            d.message,
            "dimensions `a-b` and `a_b` of partitions `m` both become `DG_PARTITION_A_B`"
        );
        assert_eq!(c.primary(d), c.at("a.toml", "a_b", 0));
        assert_eq!(c.secondary(d, 0), c.at("a.toml", "\"a-b\"", 0));
        assert!(c.defs.is_none());
        // Inline on an asset too.
        let src = "[assets.x]\nshell = \"true\"\n\
                   partitions = { type = \"multi\", dimensions = { Region = { type = \"static\", keys = [\"x\"] }, region = { type = \"static\", keys = [\"y\"] } } }\n";
        let c = check(&[("a.toml", src)]);
        let d = c.only(Kind::Duplicate);
        assert!(d.message.contains("`DG_PARTITION_REGION`"), "{}", d.message);
    }
}
