//! Stage 6: I/O managers, which store a step's output and load it back as
//! another step's input, and the [`Registry`] of resource types
//! (`type = "…"` in TOML) they are created from.
//!
//! This is the API for writing your own manager in Rust, the counterpart of
//! Dagster's `IOManager`. The repository's `examples/` folder holds one
//! small program per section of Dagster's guide to custom I/O managers
//! (`path_prefix.rs`, `external_factory.rs`, `partitioned.rs`,
//! `input_loader.rs`, `many_partitions.rs`), each with a project to run it
//! on, and `docs/io-managers.md` walks through them.
//!
//! # The trait
//!
//! A manager implements [`IoManager`]:
//!
//! - [`handle_output`](IoManager::handle_output) stores one output. dg calls
//!   it after a step exits 0, with the file the step wrote as [`Data::File`]
//!   in the asset's [`Format`]. A call stores one partition. It replaces
//!   what was there, atomically, and returns what it knows in [`Stored`]
//!   (recorded with the materialization). A range step (`backfill`) hands
//!   its partitions over together to
//!   [`handle_outputs`](IoManager::handle_outputs), which by default calls
//!   `handle_output` for each.
//! - [`load_input`](IoManager::load_input) loads one input before a step
//!   starts: [`Loaded::Single`] for an unpartitioned upstream, else
//!   [`Loaded::Partitions`], one entry per partition of
//!   [`InputContext::partitions`] in order. [`InputContext::load_each`] keeps
//!   that shape for you.
//! - [`exists`](IoManager::exists) says whether an output (partition) is
//!   stored. dg asks before a run for what the run reads but does not produce.
//!
//! A run creates each manager it uses once, before any step starts, and
//! shares it between its steps, which run in parallel: a manager is
//! `Send + Sync`, and state such as a cache sits behind a `Mutex`.
//!
//! # The contexts
//!
//! [`OutputContext`] is one output: its `asset_key` (`raw/events`, split by
//! [`key_segments`](OutputContext::key_segments)), its `partition`
//! ([`PartitionRef`]: the `key`, the `dims` of a multi partition and the
//! time `window`), the asset's `metadata`, the `format`, `run_id`, `step_id`
//! and `log` ([`Log::info`] writes a line to the step's log).
//!
//! [`InputContext`] is one input: `upstream_output` (the upstream's
//! `OutputContext`, from which a manager computes the place `handle_output`
//! wrote), the `partitions` to load, the `input_name`, the reading
//! `asset_key`, the `format` the step wants and `log`.
//!
//! # Data
//!
//! [`Data`] is a file in a [`Format`] (`Data::File`: what steps write), a
//! [`Table`] of Arrow record batches in memory (`Data::Table`), or opaque
//! bytes (`Data::Bytes`). `load_input` may return any of them: dg writes
//! each in the reading step's format and concatenates partitions in order.
//! [`table`] converts: [`table::to_file`], [`table::read`], [`table::write`],
//! [`table::into_memory`].
//!
//! # Registering a type
//!
//! A type's config is a serde struct with `#[serde(deny_unknown_fields)]`:
//! its fields are the resource's TOML fields besides `type`.
//! `dg check defs` deserialises every resource into it, so an unknown
//! field, a missing one or a wrong type is a located error with a "did you
//! mean", as for the built-in types. `${env:…}` in strings is resolved when
//! a run starts. There are two forms:
//!
//! - [`Registry::register_manager`]: the struct is the manager, like
//!   Dagster's `ConfigurableIOManager`. [`IoManager::setup_for_execution`]
//!   gets a [`ResourceCx`] (project root, state folder, run id) once per run.
//! - [`Registry::register_factory`]: the struct is the config and implements
//!   [`IoManagerFactory`], whose `create_io_manager` builds the manager, like
//!   Dagster's `ConfigurableIOManagerFactory`: the place for a client, a
//!   pool or a cache.
//!
//! [`Registry::register`] takes any [`ResourceType`], e.g. a [`Configured`]
//! (a config struct and a function) that declares the format it stores in
//! [`ResourceInfo`]. A `ResourceType` gets the resource's fields as a
//! [`Config`], which deserialises into a struct and, at validation, knows
//! where each field is in the definitions file.
//!
//! # Running
//!
//! [`crate::run_with`] runs the whole `dg` command line with a
//! registry. A complete program with a manager that keeps one CSV file per
//! output in a folder:
//!
//! ```no_run
//! use std::path::PathBuf;
//!
//! use dg::io::{Data, Format, InputContext, IoManager, Loaded, OutputContext, Registry};
//! use dg::io::{ResourceCx, Stored, table};
//!
//! /// `type = "csv_dir"`, with one field: `dir = "…"`.
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct CsvDir {
//!     dir: PathBuf,
//! }
//!
//! impl CsvDir {
//!     /// `<dir>/<asset key with / as __>[@<partition key>].csv`
//!     fn path(&self, ctx: &OutputContext) -> PathBuf {
//!         let mut name = ctx.asset_key.replace('/', "__");
//!         if let Some(p) = &ctx.partition {
//!             name = format!("{name}@{}", p.file_name());
//!         }
//!         self.dir.join(format!("{name}.csv"))
//!     }
//! }
//!
//! impl IoManager for CsvDir {
//!     fn setup_for_execution(&mut self, cx: &ResourceCx) -> anyhow::Result<()> {
//!         self.dir = cx.project_root.join(&self.dir); // relative to the project
//!         Ok(())
//!     }
//!
//!     fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
//!         let path = self.path(ctx);
//!         std::fs::create_dir_all(&self.dir)?;
//!         let tmp = self.dir.join(format!(".tmp-{}", ctx.run_id));
//!         // The step's own file when it is CSV already, else a conversion at `tmp`.
//!         let csv = table::to_file(&data, Format::Csv, &tmp)?;
//!         if csv != tmp {
//!             std::fs::copy(&csv, &tmp)?;
//!         }
//!         std::fs::rename(&tmp, &path)?; // atomic
//!         Ok(Stored::at(path.display().to_string()))
//!     }
//!
//!     fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
//!         ctx.load_each(|out| Ok(Data::File { path: self.path(out), format: Format::Csv }))
//!     }
//!
//!     fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
//!         Ok(self.path(ctx).is_file())
//!     }
//! }
//!
//! fn main() {
//!     let mut registry = Registry::builtin();
//!     registry.register_manager::<CsvDir>("csv_dir");
//!     std::process::exit(dg::run_with(registry));
//! }
//! ```

pub(crate) mod builtin;
pub(crate) mod path_template;
pub mod table;

#[cfg(feature = "duckdb")]
pub(crate) use builtin::duckdb;
pub(crate) use builtin::{db, fs, memory, objstore, plugin, postgres, sqlite};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset};
use indexmap::IndexMap;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IntoDeserializer};

use crate::load::Value;

pub use crate::formats::Format;
/// The Arrow crate a [`Table`] is made of: use this one, so that a
/// plug-in's record batches are dg's version.
pub use arrow;

/// A config error: message and byte span in the definitions file.
#[derive(Debug)]
#[non_exhaustive]
pub struct ConfigError {
    /// What is wrong, e.g. serde's "unknown field `x`, expected `y`".
    pub message: String,
    /// Byte offsets of the offending key or value, when known.
    pub span: Option<std::ops::Range<usize>>,
}

impl ConfigError {
    /// An error with no place: `dg check defs` points at the resource.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            span: None,
        }
    }

    /// Points the error at bytes `span` of the definitions file (the
    /// `span()` of the config value or of one of its fields).
    pub fn at(mut self, span: std::ops::Range<usize>) -> Self {
        self.span = Some(span);
        self
    }
}

/// What a resource type gets when a run creates its manager (Dagster's
/// `InitResourceContext`): passed to [`IoManagerFactory::create_io_manager`]
/// and [`IoManager::setup_for_execution`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ResourceCx {
    /// The resource key (`io_manager`, `warehouse`, …).
    pub resource_key: String,
    /// The project root. Relative paths in a resource's config are meant
    /// relative to it (dg itself does not change the working directory).
    pub project_root: PathBuf,
    /// The state folder (`.dg` by default): logs, scratch space, default storage.
    pub state_dir: PathBuf,
    /// The id of the run the manager is created for.
    pub run_id: String,
}

impl ResourceCx {
    /// Resource `io_manager` of the project at `project_root`, with the
    /// state folder `<project_root>/.dg` and no run id: what a test of a
    /// manager starts from. The `with_` methods set the rest.
    pub fn new(project_root: impl Into<PathBuf>) -> Self {
        let project_root = project_root.into();
        ResourceCx {
            resource_key: "io_manager".into(),
            state_dir: project_root.join(".dg"),
            project_root,
            run_id: String::new(),
        }
    }

    /// Sets [`resource_key`](Self::resource_key).
    pub fn with_resource_key(mut self, key: impl Into<String>) -> Self {
        self.resource_key = key.into();
        self
    }

    /// Sets [`state_dir`](Self::state_dir).
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = dir.into();
        self
    }

    /// Sets [`run_id`](Self::run_id).
    pub fn with_run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = run_id.into();
        self
    }
}

/// A resource's config table: its TOML fields besides `type`, as a
/// [`ResourceType`] gets it.
///
/// At validation ([`ResourceType::validate`]) it is the table as written,
/// with the place of every field in the definitions file, and `${env:…}`
/// not resolved yet; when a run creates the manager
/// ([`ResourceType::create`]) it is the table with `${env:…}` resolved, and
/// no places.
#[derive(Debug)]
pub struct Config<'a>(Repr<'a>);

#[derive(Debug)]
enum Repr<'a> {
    Spanned(Value<'a>),
    Resolved(&'a toml::Table),
}

impl<'a> Config<'a> {
    /// The spanned table of the definitions file, at validation.
    pub(crate) fn spanned(value: Value<'a>) -> Self {
        Config(Repr::Spanned(value))
    }

    /// The table with `${env:…}` resolved, when a run creates a manager.
    pub(crate) fn resolved(table: &'a toml::Table) -> Self {
        Config(Repr::Resolved(table))
    }

    /// Deserialises the table into `C` (a serde struct, best with
    /// `#[serde(deny_unknown_fields)]`). At validation the error points at
    /// the offending field, or else at the whole table.
    pub fn deserialize<C: DeserializeOwned>(&self) -> Result<C, ConfigError> {
        match &self.0 {
            Repr::Spanned(v) => {
                C::deserialize(v.clone().into_deserializer()).map_err(|e| ConfigError {
                    message: e.message().trim().to_string(),
                    span: e.span().or(Some(v.span())),
                })
            }
            Repr::Resolved(t) => C::deserialize(toml::Value::Table((*t).clone()))
                .map_err(|e| ConfigError::new(e.message().trim())),
        }
    }

    /// Byte offsets of the table in the definitions file, at validation
    /// (for [`ConfigError::at`]); `None` when a run creates the manager.
    pub fn span(&self) -> Option<std::ops::Range<usize>> {
        match &self.0 {
            Repr::Spanned(v) => Some(v.span()),
            Repr::Resolved(_) => None,
        }
    }

    /// Byte offsets of the value of field `name`, at validation, when the
    /// table has it.
    pub fn field_span(&self, name: &str) -> Option<std::ops::Range<usize>> {
        self.spanned_field(name).map(|(_, v)| v.span())
    }

    /// Field `name` of the spanned table: its key and value.
    fn spanned_field(
        &self,
        name: &str,
    ) -> Option<(&toml::Spanned<std::borrow::Cow<'a, str>>, &Value<'a>)> {
        match &self.0 {
            Repr::Spanned(v) => match v.get_ref() {
                toml::de::DeValue::Table(t) => t.get_key_value(name),
                _ => None,
            },
            Repr::Resolved(_) => None,
        }
    }

    /// Byte offsets of the key of field `name`, at validation.
    pub(crate) fn key_span(&self, name: &str) -> Option<std::ops::Range<usize>> {
        self.spanned_field(name).map(|(k, _)| k.span())
    }

    /// Field `name` as written when it is a string, with the span of the
    /// value (quotes included), at validation.
    pub(crate) fn str_field(&self, name: &str) -> Option<(&str, std::ops::Range<usize>)> {
        let (_, v) = self.spanned_field(name)?;
        Some((v.get_ref().as_str()?, v.span()))
    }
}

/// A kind of resource that can appear as `type = "…"`: it checks its config
/// when definitions are validated and builds a manager once per run.
///
/// [`Registry::register_manager`] and [`Registry::register_factory`]
/// implement it for a config struct; implement it yourself only to control
/// validation or to declare a [`ResourceInfo::format`].
pub trait ResourceType: Send + Sync {
    /// Checks a resource's config (without its `type` key). It is spanned,
    /// so that an error can point at the offending field
    /// ([`Config::deserialize`] does, [`ConfigError::at`] with
    /// [`Config::field_span`] too). `${env:…}` templates are not resolved yet.
    fn validate(&self, config: &Config<'_>) -> Result<ResourceInfo, ConfigError>;
    /// Builds the manager for one run from the config with `${env:…}` resolved.
    fn create(&self, config: &Config<'_>, cx: &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>>;
}

/// What validation learned about a resource that the rest of dg needs.
/// `ResourceInfo::default()` knows nothing.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ResourceInfo {
    /// The format its data is stored in, when the type has one.
    pub format: Option<Format>,
    /// Its `path` template, when it has one: `dg check defs` checks it
    /// against each asset stored with the resource.
    pub(crate) path: Option<Arc<path_template::PathTemplate>>,
}

impl ResourceInfo {
    /// Data is stored in `format`: assets stored by the resource default
    /// to it, and `dg check defs` reports one that sets another.
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }
}

/// Creates a manager from its deserialised config (a factory: it may build
/// state such as a cache or a connection pool once per run).
pub type CreateFn<C> = fn(C, &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>>;

/// A resource type defined by its config struct `C` and a factory
/// function: validation deserialises the TOML table into `C` (so
/// `#[serde(deny_unknown_fields)]` makes unknown fields located errors), and
/// each run deserialises it again, with `${env:…}` resolved, and calls the
/// factory.
pub struct Configured<C> {
    info: fn(&C) -> ResourceInfo,
    create: CreateFn<C>,
}

impl<C: DeserializeOwned> Configured<C> {
    /// `info` says what validation learned (e.g. the stored format);
    /// `create` builds the manager once per run.
    pub fn new(info: fn(&C) -> ResourceInfo, create: CreateFn<C>) -> Self {
        Configured { info, create }
    }
}

impl<C: DeserializeOwned + Send + Sync> ResourceType for Configured<C> {
    fn validate(&self, config: &Config<'_>) -> Result<ResourceInfo, ConfigError> {
        config.deserialize().map(|c| (self.info)(&c))
    }

    fn create(&self, config: &Config<'_>, cx: &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>> {
        let c = config
            .deserialize()
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        (self.create)(c, cx)
    }
}

/// A resource type with a `path` template field: validation also parses
/// the template, and an error points into it.
struct WithPath<T>(T);

impl<T: ResourceType> ResourceType for WithPath<T> {
    fn validate(&self, config: &Config<'_>) -> Result<ResourceInfo, ConfigError> {
        let path = path_template_of(config)?;
        let mut info = self.0.validate(config)?;
        info.path = path.map(Arc::new);
        Ok(info)
    }

    fn create(&self, config: &Config<'_>, cx: &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>> {
        self.0.create(config, cx)
    }
}

/// The `path` template of a resource's config table, parsed; an error
/// points into the string when it is written without escapes.
pub(crate) fn path_template_of(
    config: &Config<'_>,
) -> Result<Option<path_template::PathTemplate>, ConfigError> {
    let Some((s, span)) = config.str_field("path") else {
        return Ok(None); // none, or the config struct reports the wrong type
    };
    path_template::PathTemplate::parse(s)
        .map(Some)
        .map_err(|e| {
            let inner = (span.len() == s.len() + 2)
                .then(|| span.start + 1 + e.range.start..span.start + 1 + e.range.end);
            ConfigError {
                message: match &e.help {
                    Some(h) => format!("{}\nhelp: {h}", e.message),
                    None => e.message.clone(),
                },
                span: inner.or(Some(span.clone())),
            }
        })
}

/// Resource types by name: what `type = "…"` may say. Build one with
/// [`Registry::builtin`], add types, and pass it to
/// [`crate::run_with`].
#[derive(Clone)]
pub struct Registry {
    types: BTreeMap<String, Arc<dyn ResourceType>>,
}

impl Registry {
    /// A registry with no types.
    pub fn empty() -> Self {
        Registry {
            types: BTreeMap::new(),
        }
    }

    /// The built-in types: `fs`, `object_store`, `memory`, `sqlite`, `postgres`, `duckdb`, `command`.
    pub fn builtin() -> Self {
        let mut r = Registry::empty();
        r.register(
            "fs",
            WithPath(Configured::<FsConfig>::new(
                |c| ResourceInfo {
                    format: Some(c.format),
                    ..ResourceInfo::default()
                },
                |c, cx| Ok(Arc::new(fs::FsManager::new(c, cx)?)),
            )),
        );
        r.register("object_store", objstore::ObjectStoreType);
        r.register(
            "memory",
            Configured::<MemoryConfig>::new(
                |_| ResourceInfo::default(),
                |_, _| Ok(Arc::new(memory::MemoryManager::default())),
            ),
        );
        r.register(
            "sqlite",
            Configured::<SqliteConfig>::new(
                |_| ResourceInfo::default(),
                |c, cx| c.create_io_manager(cx),
            ),
        );
        r.register(
            "postgres",
            Configured::<PostgresConfig>::new(
                |_| ResourceInfo::default(),
                |c, cx| c.create_io_manager(cx),
            ),
        );
        #[cfg(feature = "duckdb")]
        r.register(
            "duckdb",
            Configured::<DuckdbConfig>::new(
                |_| ResourceInfo::default(),
                |c, cx| c.create_io_manager(cx),
            ),
        );
        #[cfg(not(feature = "duckdb"))]
        r.register("duckdb", WithoutDuckdb);
        r.register(
            "command",
            Configured::<CommandConfig>::new(
                |c| ResourceInfo {
                    format: c.format,
                    ..ResourceInfo::default()
                },
                |c, cx| Ok(Arc::new(plugin::PluginManager::new(c, cx)?)),
            ),
        );
        r
    }

    /// Registers a manager that is its own config, like Dagster's
    /// `ConfigurableIOManager`: the resource's TOML table (minus `type`) is
    /// deserialised into `M` once per run, then
    /// [`IoManager::setup_for_execution`] is called on it.
    ///
    /// `M` should use `#[serde(deny_unknown_fields)]`, so that
    /// `dg check defs` reports a misspelt field. Fields that are not config
    /// (state set up per run) are `#[serde(skip)]`. The type declares no
    /// stored format: assets stored by it default to `csv` unless they set
    /// `format` (use [`Registry::register`] with [`Configured`] to declare one).
    pub fn register_manager<M>(&mut self, name: &str)
    where
        M: IoManager + DeserializeOwned + 'static,
    {
        self.register(
            name,
            Configured::<M>::new(
                |_| ResourceInfo::default(),
                |mut m: M, cx| {
                    m.setup_for_execution(cx)?;
                    Ok(Arc::new(m))
                },
            ),
        );
    }

    /// Registers a factory, like Dagster's `ConfigurableIOManagerFactory`:
    /// the config is deserialised into `F`, which builds the (possibly
    /// stateful) manager once per run with
    /// [`IoManagerFactory::create_io_manager`]. Validation is as for
    /// [`Registry::register_manager`].
    pub fn register_factory<F>(&mut self, name: &str)
    where
        F: IoManagerFactory + DeserializeOwned + Send + Sync + 'static,
    {
        self.register(
            name,
            Configured::<F>::new(|_| ResourceInfo::default(), |f, cx| f.create_io_manager(cx)),
        );
    }

    /// Registers any [`ResourceType`] under `name` (`type = "name"` in TOML).
    /// A type registered under the name of another replaces it.
    pub fn register(&mut self, name: &str, t: impl ResourceType + 'static) {
        self.types.insert(name.to_string(), Arc::new(t));
    }

    /// The type registered as `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn ResourceType>> {
        self.types.get(name)
    }

    /// Every registered name, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }
}

/// The built-in types ([`Registry::builtin`]).
impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

/// A partition as I/O managers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionRef {
    /// The partition key (Dagster's `asset_partition_key`), e.g.
    /// `2024-01-01`, `2024-01-01-13:00`, `eu`, or `2024-01-01|eu` for a
    /// multi partition. It may hold `/`, `.` and other characters that mean
    /// something in a path: [`file_name`](Self::file_name) makes it one
    /// plain file name.
    pub key: String,
    /// For multi partitions: (dimension, key) in dimension-name order.
    pub dims: Vec<(String, String)>,
    /// For time partitions: the window `[start, end)` (Dagster's
    /// `asset_partitions_time_window`). For a multi partition with a time
    /// dimension, that dimension's window. `None` for other partitions.
    pub window: Option<(DateTime<FixedOffset>, DateTime<FixedOffset>)>,
}

impl PartitionRef {
    /// Partition `key`, with no dimensions and no time window.
    pub fn new(key: impl Into<String>) -> Self {
        PartitionRef {
            key: key.into(),
            dims: Vec::new(),
            window: None,
        }
    }

    /// Sets the (dimension, key) pairs of a multi partition.
    pub fn with_dims(mut self, dims: Vec<(String, String)>) -> Self {
        self.dims = dims;
        self
    }

    /// Sets the time window `[start, end)`.
    pub fn with_window(mut self, start: DateTime<FixedOffset>, end: DateTime<FixedOffset>) -> Self {
        self.window = Some((start, end));
        self
    }

    /// The key as one plain file name, as the `fs` manager names partition
    /// files: `/`, `\`, `%`, control characters and a leading `.` are
    /// percent-encoded (`us/east` is `us%2Feast`, `2024-01-01` stays as it
    /// is), so that no key can name a folder, a hidden file or `..`, and
    /// two keys never share a name.
    pub fn file_name(&self) -> String {
        crate::names::encode_key(&self.key)
    }
}

/// Where a manager's messages go: the step's log file (`dg logs RUN_ID`),
/// Dagster's `context.log`. The default writes nowhere (but to the debug
/// trace), e.g. in the pre-run `exists` checks.
#[derive(Clone, Default)]
pub struct Log {
    sink: Option<Arc<Mutex<std::fs::File>>>,
}

impl Log {
    /// A log that appends to `file`.
    pub fn to_file(file: std::fs::File) -> Self {
        Log {
            sink: Some(Arc::new(Mutex::new(file))),
        }
    }

    /// Writes one line to the step's log, prefixed with `[dg] `.
    pub fn info(&self, msg: impl std::fmt::Display) {
        use std::io::Write;
        if let Some(f) = &self.sink {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(f, "[dg] {msg}");
        }
        tracing::debug!("{msg}");
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Log")
    }
}

/// The identity of one output (Dagster's `OutputContext`): which asset and
/// partition [`IoManager::handle_output`] stores, or [`IoManager::exists`]
/// looks for. Derive the storage location from it, and nothing else, so
/// that `load_input` finds the same place from
/// [`InputContext::upstream_output`].
///
/// dg builds it; a test of a manager builds one with
/// [`OutputContext::new`] and the `with_` methods.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OutputContext {
    /// `/`-separated key, e.g. `raw/events` (Dagster's `asset_key.path`
    /// joined with `/`). Segments are ASCII letters, digits, `_`, `-` and
    /// `.`, never empty, `.` or `..`.
    pub asset_key: String,
    /// The one partition stored, for a partitioned asset; `None` otherwise
    /// (Dagster's `has_partition_key` / `asset_partition_key`).
    pub partition: Option<PartitionRef>,
    /// The format the data is in as the step produced it.
    pub format: Format,
    /// The key of the manager's resource: the asset's `io_manager` (in the
    /// pre-run `exists` check of an input with an `input_manager`, that one).
    pub resource_key: String,
    /// The asset's `metadata` table (Dagster's `definition_metadata`).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The id of the run.
    pub run_id: String,
    /// The step that stores the output; in an
    /// [`upstream_output`](InputContext::upstream_output), the step that
    /// reads it; empty in the pre-run `exists` checks.
    pub step_id: String,
    /// The step's log.
    pub log: Log,
}

impl OutputContext {
    /// The output of asset `asset_key` in `format`: unpartitioned, for
    /// resource `io_manager`, with no metadata, an empty run and step id,
    /// and a log that writes nowhere.
    pub fn new(asset_key: impl Into<String>, format: Format) -> Self {
        OutputContext {
            asset_key: asset_key.into(),
            partition: None,
            format,
            resource_key: "io_manager".into(),
            metadata: serde_json::Map::new(),
            run_id: String::new(),
            step_id: String::new(),
            log: Log::default(),
        }
    }

    /// Sets the one [`partition`](Self::partition) stored.
    pub fn with_partition(mut self, partition: PartitionRef) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets [`resource_key`](Self::resource_key).
    pub fn with_resource_key(mut self, key: impl Into<String>) -> Self {
        self.resource_key = key.into();
        self
    }

    /// Sets the asset's [`metadata`](Self::metadata).
    pub fn with_metadata(mut self, metadata: serde_json::Map<String, serde_json::Value>) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets [`run_id`](Self::run_id) and [`step_id`](Self::step_id).
    pub fn with_run(mut self, run_id: impl Into<String>, step_id: impl Into<String>) -> Self {
        self.run_id = run_id.into();
        self.step_id = step_id.into();
        self
    }

    /// Sets the [`log`](Self::log).
    pub fn with_log(mut self, log: Log) -> Self {
        self.log = log;
        self
    }

    /// The asset key's segments: `raw/events` gives `raw`, `events`
    /// (Dagster's `asset_key.path`).
    pub fn key_segments(&self) -> impl Iterator<Item = &str> {
        self.asset_key.split('/')
    }

    /// Where the output goes below `dir` in the layout of the `fs`
    /// manager's `path = "{key}/{partition}.{ext}"`: a folder per asset key
    /// segment, the partition's [`file_name`](PartitionRef::file_name), and
    /// `format`'s extension. Partition `2024-01-01` of `raw/events` in CSV
    /// is `dir/raw/events/2024-01-01.csv`; unpartitioned, it is
    /// `dir/raw/events.csv`.
    pub fn path_in(&self, dir: &Path, format: Format) -> PathBuf {
        let mut path = dir.to_path_buf();
        path.extend(self.key_segments());
        if let Some(p) = &self.partition {
            path.push(p.file_name());
        }
        // Not `with_extension`: a key or segment may hold a `.`.
        let mut file = path.into_os_string();
        file.push(format.extension());
        file.into()
    }
}

/// What to load for one input (Dagster's `InputContext`), passed to
/// [`IoManager::load_input`].
///
/// dg builds it; a test of a manager builds one with
/// [`InputContext::new`] and the `with_` methods.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct InputContext {
    /// The input's name (`ins.NAME`, or the last key segment of a `deps`
    /// entry); the step gets it as `DG_INPUT_<NAME>`.
    pub input_name: String,
    /// The asset that reads the input.
    pub asset_key: String,
    /// The upstream output being loaded, as it was stored: its asset key,
    /// format, `resource_key` (the upstream's `io_manager`, even when this
    /// input is loaded by an `input_manager`) and metadata. Its `partition`
    /// is `None`: see [`partitions`](Self::partitions) and
    /// [`upstream_partition`](Self::upstream_partition).
    pub upstream_output: OutputContext,
    /// Whether the upstream asset is partitioned.
    pub upstream_partitioned: bool,
    /// The upstream partitions to load, in partition order (Dagster's
    /// `asset_partition_keys`): those the input's mapping selects, e.g. the
    /// 24 hours of a day. Empty when the upstream is unpartitioned.
    pub partitions: Vec<PartitionRef>,
    /// The format the reading step wants. dg converts what `load_input`
    /// returns to it, so a manager may ignore it.
    pub format: Format,
    /// The key of the loading manager's resource (the `input_manager` when
    /// the input names one).
    pub resource_key: String,
    /// The id of the run.
    pub run_id: String,
    /// The step that reads the input.
    pub step_id: String,
    /// The reading step's log.
    pub log: Log,
}

impl InputContext {
    /// Input `input_name` of asset `asset_key`, loading the whole of the
    /// unpartitioned upstream `upstream_output` (its partition is cleared).
    /// The format, resource key, run id, step id and log are the
    /// upstream's until set with the `with_` methods;
    /// [`with_partitions`](Self::with_partitions) makes the upstream
    /// partitioned.
    pub fn new(
        input_name: impl Into<String>,
        asset_key: impl Into<String>,
        upstream_output: OutputContext,
    ) -> Self {
        let upstream_output = OutputContext {
            partition: None,
            ..upstream_output
        };
        InputContext {
            input_name: input_name.into(),
            asset_key: asset_key.into(),
            format: upstream_output.format,
            resource_key: upstream_output.resource_key.clone(),
            run_id: upstream_output.run_id.clone(),
            step_id: upstream_output.step_id.clone(),
            log: upstream_output.log.clone(),
            upstream_output,
            upstream_partitioned: false,
            partitions: Vec::new(),
        }
    }

    /// The upstream is partitioned, and these of its partitions are
    /// loaded, in order.
    pub fn with_partitions(mut self, partitions: Vec<PartitionRef>) -> Self {
        self.upstream_partitioned = true;
        self.partitions = partitions;
        self
    }

    /// Sets the [`format`](Self::format) the reading step wants.
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Sets [`resource_key`](Self::resource_key) (an `input_manager`).
    pub fn with_resource_key(mut self, key: impl Into<String>) -> Self {
        self.resource_key = key.into();
        self
    }

    /// Sets the reading step's [`step_id`](Self::step_id).
    pub fn with_step_id(mut self, step_id: impl Into<String>) -> Self {
        self.step_id = step_id.into();
        self
    }

    /// Sets the [`log`](Self::log).
    pub fn with_log(mut self, log: Log) -> Self {
        self.log = log;
        self
    }

    /// The output context of one upstream partition (or of the whole
    /// upstream when it is unpartitioned).
    pub fn upstream_partition(&self, p: Option<&PartitionRef>) -> OutputContext {
        OutputContext {
            partition: p.cloned(),
            ..self.upstream_output.clone()
        }
    }

    /// Loads the input one stored output at a time, keeping the shape
    /// `load_input` must return: `load` gets the context of each partition
    /// in [`partitions`](Self::partitions), in order, and the results are
    /// [`Loaded::Partitions`] (even for one partition); for an unpartitioned
    /// upstream it is called once with [`upstream_output`](Self::upstream_output)
    /// and the result is [`Loaded::Single`].
    pub fn load_each(
        &self,
        mut load: impl FnMut(&OutputContext) -> anyhow::Result<Data>,
    ) -> anyhow::Result<Loaded> {
        if !self.upstream_partitioned {
            return Ok(Loaded::Single(load(&self.upstream_output)?));
        }
        let mut out = IndexMap::with_capacity(self.partitions.len());
        for p in &self.partitions {
            out.insert(p.key.clone(), load(&self.upstream_partition(Some(p)))?);
        }
        Ok(Loaded::Partitions(out))
    }

    /// Loads the input from files, keeping the shape `load_input` must
    /// return (as [`load_each`](Self::load_each)): `path` gives the file
    /// of each stored output, which is handed over in `format` as
    /// [`Data::File`]. A file that is not there is an error naming the
    /// asset and the file.
    pub fn load_files(
        &self,
        format: Format,
        path: impl Fn(&OutputContext) -> PathBuf,
    ) -> anyhow::Result<Loaded> {
        self.load_each(|out| {
            let path = path(out);
            if !path.is_file() {
                anyhow::bail!("`{}` is not stored: no `{}`", out.asset_key, path.display());
            }
            Ok(Data::File { path, format })
        })
    }
}

/// A table in memory: Arrow record batches with their schema (Dagster's
/// DataFrame). [`table::read`] and [`table::write`] convert to and from
/// files. Arrow is dg's own (re-exported as [`arrow`]), so a plug-in
/// uses the same version.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Table {
    /// The columns.
    pub schema: arrow::datatypes::SchemaRef,
    /// The rows, in order; every batch has `schema`.
    pub batches: Vec<arrow::record_batch::RecordBatch>,
}

impl Table {
    /// A table of `batches`, each of which has `schema`.
    pub fn new(
        schema: arrow::datatypes::SchemaRef,
        batches: Vec<arrow::record_batch::RecordBatch>,
    ) -> Self {
        Table { schema, batches }
    }

    /// The number of rows of all batches.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Data handed to or returned by an I/O manager. More forms may come:
/// match with a `_` arm (or convert with [`table::into_memory`] or
/// [`table::to_file`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Data {
    /// A file in a named format. Steps write their outputs as files; a
    /// manager whose stored format matches hands its file over as is.
    File {
        /// The file. A step's output file is in a scratch folder that is
        /// removed after the step: move or copy it, do not keep the path.
        path: PathBuf,
        /// What the file holds.
        format: Format,
    },
    /// Tabular data in memory.
    Table(Arc<Table>),
    /// Opaque bytes (`file` format).
    Bytes(Arc<Vec<u8>>),
}

impl Data {
    /// Writes the data to the file `path` in `format`, atomically, as
    /// [`IoManager::handle_output`] must: into a temporary file beside
    /// `path`, then renamed over it, so that a reader finds the old file or
    /// the new one and never part of one. Creates the missing folders. A
    /// file already in `format` is copied, not converted. Returns the size
    /// of the file written.
    pub fn write_atomically(&self, path: &Path, format: Format) -> anyhow::Result<u64> {
        use anyhow::Context as _;
        static TMP: AtomicU64 = AtomicU64::new(0);
        let name = path
            .file_name()
            .with_context(|| format!("`{}` names no file", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new(""));
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            TMP.fetch_add(1, Ordering::Relaxed)
        ));
        let written = table::to_file(self, format, &tmp).and_then(|file| {
            if file != tmp {
                std::fs::copy(&file, &tmp)
                    .with_context(|| format!("cannot copy `{}`", file.display()))?;
            }
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot write `{}`", path.display()))
        });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        Ok(std::fs::metadata(path)?.len())
    }
}

/// What a manager reports about a stored output. It is recorded with the
/// materialization as metadata (`dg/path`, `dg/rows`, `dg/bytes`, leaving
/// out what is `None`), like Dagster's `context.add_output_metadata`.
/// `Stored::default()` knows nothing; [`Stored::at`] and the `with_`
/// methods say what is known.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[non_exhaustive]
pub struct Stored {
    /// Where it is: a path, or any URI-like string (`s3://…`, a table name).
    pub path: Option<String>,
    /// The number of rows, when known.
    pub rows: Option<u64>,
    /// The size in bytes, when known.
    pub bytes: Option<u64>,
}

impl Stored {
    /// Stored at `path` (a path, or a URI-like string).
    pub fn at(path: impl Into<String>) -> Self {
        Stored {
            path: Some(path.into()),
            ..Stored::default()
        }
    }

    /// Sets the number of [`rows`](Self::rows).
    pub fn with_rows(mut self, rows: u64) -> Self {
        self.rows = Some(rows);
        self
    }

    /// Sets the size in [`bytes`](Self::bytes).
    pub fn with_bytes(mut self, bytes: u64) -> Self {
        self.bytes = Some(bytes);
        self
    }
}

/// What `load_input` returns: one value, or for a partitioned upstream an
/// ordered map from partition key to value (always a map, even for one key).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Loaded {
    /// The whole of an unpartitioned upstream.
    Single(Data),
    /// Partition key → data, in the order of [`InputContext::partitions`]
    /// (Dagster's `dict[str, …]` of partitions). The step gets one file
    /// with the rows of all of them in this order, plus the list.
    Partitions(IndexMap<String, Data>),
}

/// The database managers' rule for an output whose columns differ from its
/// table's: an error that says what to do, unless the resource allows
/// replacing the table (then a note in the step log, and `Ok`).
pub(crate) fn schema_changed(
    ctx: &OutputContext,
    place: &str,
    diff: &[String],
    resource_key: &str,
    replace: bool,
    partitioned: bool,
) -> anyhow::Result<()> {
    if !replace {
        let extra = if partitioned {
            " (this deletes the table's other partitions)"
        } else {
            ""
        };
        anyhow::bail!(
            "asset `{}`: the output's columns differ from {place}: {}. Change the step back, \
             drop the table, or set `replace_on_schema_change = true` on resource `{resource_key}` \
             to replace the table{extra}",
            ctx.asset_key,
            diff.join("; "),
        );
    }
    ctx.log.info(format!(
        "{place}: the columns changed ({}); replacing the table",
        diff.join("; ")
    ));
    Ok(())
}

/// Builds a manager from its config once per run (Dagster's
/// `ConfigurableIOManagerFactory.create_io_manager`). Implement it on the
/// config struct and register that with [`Registry::register_factory`].
pub trait IoManagerFactory {
    /// Builds the manager for one run from the config (with `${env:…}`
    /// resolved). This is the place to open connections or set up caches;
    /// an error stops the run before any step starts.
    fn create_io_manager(self, cx: &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>>;
}

/// Stores outputs and loads them back as inputs (Dagster's `IOManager`).
///
/// One instance serves every step of a run, and steps run in parallel:
/// methods take `&self`, and mutable state (a cache) sits behind a lock.
pub trait IoManager: std::any::Any + Send + Sync {
    /// Stores one output (one partition, or the whole of an unpartitioned
    /// asset), replacing what was there, atomically: write beside the final
    /// place, then rename, so that readers never see a partial output.
    ///
    /// dg calls it after the step exited 0, with the step's output file as
    /// [`Data::File`] in the asset's format (`ctx.format`). An error fails
    /// the step (and it may be retried).
    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored>;
    /// Stores the partitions of one range step (`backfill`), in order, each
    /// atomically as [`handle_output`](IoManager::handle_output) stores one.
    /// An error names the partition; partitions stored before it stay
    /// stored. The default stores them one by one; a manager may make them
    /// durable together (the `fs` manager flushes them in parallel and each
    /// folder once).
    fn handle_outputs(&self, items: Vec<(OutputContext, Data)>) -> anyhow::Result<Vec<Stored>> {
        use anyhow::Context as _;
        let mut out = Vec::with_capacity(items.len());
        for (ctx, data) in items {
            let key = ctx
                .partition
                .as_ref()
                .map(|p| p.key.clone())
                .unwrap_or_default();
            out.push(
                self.handle_output(&ctx, data)
                    .with_context(|| format!("partition `{key}`"))?,
            );
        }
        Ok(out)
    }
    /// Loads an input before the reading step starts: [`Loaded::Single`]
    /// for an unpartitioned upstream, else every partition in
    /// `ctx.partitions`, in order, as [`Loaded::Partitions`]
    /// ([`InputContext::load_each`] keeps that shape). The data may be in
    /// any form and format: dg writes it in the step's format.
    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded>;
    /// Whether an output (partition) is stored. dg calls it before a run
    /// for every upstream partition the run reads and does not produce,
    /// so keep it cheap.
    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool>;
    /// Called once per run on a manager registered with
    /// [`Registry::register_manager`], after its config is deserialised and
    /// before any step uses it (Dagster's `setup_for_execution`). Use it to
    /// resolve relative paths against [`ResourceCx::project_root`], open a
    /// connection, or check the config. The default does nothing.
    fn setup_for_execution(&mut self, cx: &ResourceCx) -> anyhow::Result<()>
    where
        Self: Sized,
    {
        let _ = cx;
        Ok(())
    }
}

fn default_format() -> Format {
    Format::Csv
}

/// `type = "fs"`: files under `base_dir`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FsConfig {
    /// Relative to the project root; default `<state>/storage`.
    pub base_dir: Option<String>,
    /// The format files are stored in; default `csv`.
    #[serde(default = "default_format")]
    pub format: Format,
    /// Where below `base_dir` an output goes ([`path_template`]); default
    /// `{key}/{partition}.{ext}` (with one folder per dimension of a multi partition).
    pub path: Option<String>,
}

/// `type = "memory"`: values that live for one run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemoryConfig {}

/// `type = "sqlite"`: one table per asset in a SQLite database file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqliteConfig {
    /// The database file, relative to the project root.
    pub path: String,
    /// Whether a table whose columns changed is replaced (else an error).
    #[serde(default)]
    pub replace_on_schema_change: bool,
}

/// `type = "postgres"`: one table per asset in a Postgres schema.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostgresConfig {
    /// The connection URL (`postgres://…`).
    pub url: String,
    /// The schema the tables are in; default `public`.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Whether a table whose columns changed is replaced (else an error).
    #[serde(default)]
    pub replace_on_schema_change: bool,
}

fn default_schema() -> String {
    "public".into()
}

/// `type = "duckdb"`: one table per asset in a DuckDB database file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
// Without the feature only validation reads it (to report unknown fields).
#[cfg_attr(not(feature = "duckdb"), allow(dead_code))]
pub(crate) struct DuckdbConfig {
    /// The database file, relative to the project root.
    pub path: String,
    /// The schema the tables are in; default `main`.
    #[serde(default = "default_duckdb_schema")]
    pub schema: String,
    /// Whether a table whose columns changed is replaced (else an error).
    #[serde(default)]
    pub replace_on_schema_change: bool,
}

fn default_duckdb_schema() -> String {
    "main".into()
}

/// `type = "duckdb"` in a dg built without the `duckdb` feature: every
/// such resource is a located error at `dg check defs`.
#[cfg(not(feature = "duckdb"))]
struct WithoutDuckdb;

#[cfg(not(feature = "duckdb"))]
impl ResourceType for WithoutDuckdb {
    fn validate(&self, config: &Config<'_>) -> Result<ResourceInfo, ConfigError> {
        // Unknown fields first, as with the feature.
        config.deserialize::<DuckdbConfig>()?;
        Err(ConfigError {
            message: "this dg was built without DuckDB (the `duckdb` cargo feature): \
                      rebuild it with default features to use `type = \"duckdb\"`"
                .into(),
            span: config.span(),
        })
    }

    fn create(&self, _: &Config<'_>, _: &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>> {
        anyhow::bail!("this dg was built without DuckDB (the `duckdb` cargo feature)")
    }
}

/// `type = "command"`: an external plug-in program.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandConfig {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The format the program stores, when it declares one.
    pub format: Option<Format>,
    /// How long dg waits for each reply (`"30s"`, `"2m"`); default 60 s.
    pub timeout: Option<String>,
    /// Anything: sent to the program in the handshake, as JSON.
    #[serde(default)]
    pub config: toml::Table,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_context_takes_the_upstreams_defaults() {
        let up = OutputContext::new("raw/events", Format::Parquet)
            .with_partition(PartitionRef::new("2024-01-01"))
            .with_resource_key("lake")
            .with_run("r1", "raw/events[2024-01-01]");
        let ctx = InputContext::new("events", "report", up);
        assert_eq!(ctx.upstream_output.partition, None);
        assert_eq!(ctx.format, Format::Parquet);
        assert_eq!(ctx.resource_key, "lake");
        assert_eq!(
            (ctx.run_id.as_str(), ctx.step_id.as_str()),
            ("r1", "raw/events[2024-01-01]")
        );
        assert!(!ctx.upstream_partitioned);
        let ctx = ctx
            .with_partitions(vec![PartitionRef::new("2024-01-01")])
            .with_format(Format::Csv)
            .with_step_id("report");
        assert!(ctx.upstream_partitioned);
        assert_eq!(ctx.partitions.len(), 1);
        assert_eq!(ctx.format, Format::Csv);
    }

    #[test]
    fn a_config_is_located_at_validation_and_resolved_at_creation() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct C {
            dir: String,
        }
        let text = "dir = \"a\"\nmax = 2\n";
        let root = toml::de::DeTable::parse(text).unwrap();
        let value = toml::Spanned::new(root.span(), toml::de::DeValue::Table(root.into_inner()));
        let spanned = Config::spanned(value);
        assert!(spanned.span().is_some());
        assert_eq!(spanned.field_span("dir"), Some(6..9));
        assert_eq!(spanned.key_span("max"), Some(10..13));
        let e = spanned.deserialize::<C>().unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.span),
            ("unknown field `max`, expected `dir`", Some(10..13))
        );

        let table: toml::Table = text.parse().unwrap();
        let resolved = Config::resolved(&table);
        assert_eq!((resolved.span(), resolved.field_span("dir")), (None, None));
        let e = resolved.deserialize::<C>().unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.span),
            ("unknown field `max`, expected `dir`", None)
        );
        let table: toml::Table = "dir = \"a\"".parse().unwrap();
        assert_eq!(
            Config::resolved(&table).deserialize::<C>().unwrap().dir,
            "a"
        );
    }

    #[test]
    fn an_output_is_placed_as_the_fs_manager_places_it() {
        let dir = Path::new("store");
        let out = OutputContext::new("raw/events", Format::Csv);
        assert_eq!(
            out.path_in(dir, Format::Jsonl),
            dir.join("raw/events.jsonl")
        );
        let out = out.with_partition(PartitionRef::new(".us/east"));
        assert_eq!(
            out.path_in(dir, Format::Csv),
            dir.join("raw/events/%2Eus%2Feast.csv")
        );
    }

    #[test]
    fn data_is_written_atomically_and_loaded_back_as_files() {
        let dir = tempfile::TempDir::new().unwrap();
        let src = dir.path().join("step-output.csv");
        std::fs::write(&src, "a,b\n1,2\n").unwrap();
        let data = Data::File {
            path: src,
            format: Format::Csv,
        };
        let dest = dir.path().join("store/x/y.jsonl");
        let bytes = data.write_atomically(&dest, Format::Jsonl).unwrap();
        assert_eq!(bytes, std::fs::metadata(&dest).unwrap().len());
        assert_eq!(
            std::fs::read_to_string(&dest).unwrap(),
            "{\"a\":1,\"b\":2}\n"
        );
        // Nothing but the file is left beside it.
        let left: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["y.jsonl"]);

        let ctx = InputContext::new("y", "reader", OutputContext::new("x/y", Format::Jsonl));
        let store = dir.path().join("store");
        let path = |out: &OutputContext| store.join(format!("{}.jsonl", out.asset_key));
        match ctx.load_files(Format::Jsonl, path).unwrap() {
            Loaded::Single(Data::File { path, format }) => {
                assert_eq!((path, format), (dest, Format::Jsonl));
            }
            other => panic!("{other:?}"),
        }
        let missing = ctx
            .load_files(Format::Jsonl, |_| dir.path().join("nope.jsonl"))
            .unwrap_err();
        assert!(
            missing.to_string().starts_with("`x/y` is not stored: no `"),
            "{missing}"
        );
    }
}
