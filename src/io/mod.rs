//! Stage 6: I/O managers — the registry of resource types.
//!
//! Each resource `type` is registered under its name with a config struct
//! that derives `Deserialize` with `deny_unknown_fields`. Validation of a
//! resource is deserialising its table (minus `type`) into that struct, so a
//! plug-in type registered by an embedding program is checked exactly like a
//! built-in one, with located errors.

pub mod fs;
pub mod memory;
pub mod plugin;
pub mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset};
use indexmap::IndexMap;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IntoDeserializer};

use crate::load::Value;

/// Storage formats for tabular and opaque data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Jsonl,
    Parquet,
    File,
}

impl Format {
    pub const NAMES: &'static [&'static str] = &["csv", "jsonl", "parquet", "file"];

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "jsonl" => Some(Format::Jsonl),
            "parquet" => Some(Format::Parquet),
            "file" => Some(Format::File),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
            Format::File => "file",
        }
    }

    /// File extension including the dot; empty for `file`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => ".csv",
            Format::Jsonl => ".jsonl",
            Format::Parquet => ".parquet",
            Format::File => "",
        }
    }
}

/// A config error: message and byte span in the definitions file.
#[derive(Debug)]
pub struct ConfigError {
    pub message: String,
    pub span: Option<std::ops::Range<usize>>,
}

/// What a resource type gets when a run creates its manager.
#[derive(Clone, Debug)]
pub struct ResourceCx {
    /// The resource key (`io_manager`, `warehouse`, …).
    pub resource_key: String,
    pub project_root: PathBuf,
    pub state_dir: PathBuf,
    pub run_id: String,
}

/// A kind of resource that can appear as `type = "…"`: it checks its config
/// when definitions are validated and builds a manager once per run.
pub trait ResourceType: Send + Sync {
    /// Checks a resource's config table (without its `type` key).
    fn validate(&self, config: Value<'_>) -> Result<ResourceInfo, ConfigError>;
    /// Builds the manager for one run from the config with `${env:…}` resolved.
    fn create(&self, config: &toml::Table, cx: &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>>;
}

/// What validation learned about a resource that the rest of dg needs.
#[derive(Clone, Debug, Default)]
pub struct ResourceInfo {
    /// The format its data is stored in, when the type has one.
    pub format: Option<Format>,
}

/// Creates a manager from its deserialised config (a factory: it may build
/// state such as a cache or a connection pool once per run).
pub type CreateFn<C> = fn(C, &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>>;

/// A resource type defined by its config struct and a factory function.
pub struct Configured<C> {
    info: fn(&C) -> ResourceInfo,
    create: CreateFn<C>,
}

impl<C: DeserializeOwned> Configured<C> {
    pub fn new(info: fn(&C) -> ResourceInfo, create: CreateFn<C>) -> Self {
        Configured { info, create }
    }
}

impl<C: DeserializeOwned + Send + Sync> ResourceType for Configured<C> {
    fn validate(&self, config: Value<'_>) -> Result<ResourceInfo, ConfigError> {
        let outer = config.span();
        C::deserialize(config.into_deserializer())
            .map(|c| (self.info)(&c))
            .map_err(|e| ConfigError {
                message: e.message().trim().to_string(),
                span: e.span().or(Some(outer)),
            })
    }

    fn create(&self, config: &toml::Table, cx: &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>> {
        let c: C = toml::Value::Table(config.clone())
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.message().trim()))?;
        (self.create)(c, cx)
    }
}

/// A type that is not available in this build.
fn unsupported<C>(name: &'static str) -> CreateFn<C> {
    let _ = name;
    |_, cx| {
        anyhow::bail!(
            "resource `{}`: this type of I/O manager is not implemented yet in this version of dg",
            cx.resource_key
        )
    }
}

/// Resource types by name.
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

    /// The built-in types: `fs`, `memory`, `sqlite`, `postgres`, `command`.
    pub fn builtin() -> Self {
        let mut r = Registry::empty();
        r.register(
            "fs",
            Configured::<FsConfig>::new(
                |c| ResourceInfo {
                    format: Some(c.format),
                },
                |c, cx| Ok(Arc::new(fs::FsManager::new(c, cx)?)),
            ),
        );
        r.register(
            "memory",
            Configured::<MemoryConfig>::new(
                |_| ResourceInfo::default(),
                |_, _| Ok(Arc::new(memory::MemoryManager::default())),
            ),
        );
        r.register(
            "sqlite",
            Configured::<SqliteConfig>::new(|_| ResourceInfo::default(), unsupported("sqlite")),
        );
        r.register(
            "postgres",
            Configured::<PostgresConfig>::new(|_| ResourceInfo::default(), unsupported("postgres")),
        );
        r.register(
            "command",
            Configured::<CommandConfig>::new(
                |c| ResourceInfo { format: c.format },
                |c, cx| Ok(Arc::new(plugin::PluginManager::new(c, cx)?)),
            ),
        );
        r
    }

    pub fn register(&mut self, name: &str, t: impl ResourceType + 'static) {
        self.types.insert(name.to_string(), Arc::new(t));
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn ResourceType>> {
        self.types.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

/// A partition as I/O managers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRef {
    pub key: String,
    /// For multi partitions: (dimension, key) in dimension-name order.
    pub dims: Vec<(String, String)>,
    /// For time partitions: the window `[start, end)`.
    pub window: Option<(DateTime<FixedOffset>, DateTime<FixedOffset>)>,
}

/// Where a manager's messages go: the step's log file.
#[derive(Clone, Default)]
pub struct Log {
    sink: Option<Arc<Mutex<std::fs::File>>>,
}

impl Log {
    pub fn to_file(file: std::fs::File) -> Self {
        Log {
            sink: Some(Arc::new(Mutex::new(file))),
        }
    }

    /// Writes one line to the step's log.
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

/// The identity of one output (Dagster's OutputContext).
#[derive(Clone, Debug)]
pub struct OutputContext {
    /// `/`-separated key, e.g. `raw/events`.
    pub asset_key: String,
    pub partition: Option<PartitionRef>,
    /// The format the data is in as the step produced it.
    pub format: Format,
    /// The key of the manager's resource.
    pub resource_key: String,
    /// The asset's `metadata`.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub run_id: String,
    pub step_id: String,
    pub log: Log,
}

impl OutputContext {
    pub fn key_segments(&self) -> impl Iterator<Item = &str> {
        self.asset_key.split('/')
    }
}

/// What to load for one input (Dagster's InputContext).
#[derive(Clone, Debug)]
pub struct InputContext {
    pub input_name: String,
    /// The asset that reads the input.
    pub asset_key: String,
    /// The upstream output being loaded (its `partition` is `None`; see `partitions`).
    pub upstream_output: OutputContext,
    /// Whether the upstream asset is partitioned.
    pub upstream_partitioned: bool,
    /// The upstream partitions to load, in partition order.
    pub partitions: Vec<PartitionRef>,
    /// The format the reading step wants.
    pub format: Format,
    /// The key of the loading manager's resource.
    pub resource_key: String,
    pub run_id: String,
    pub step_id: String,
    pub log: Log,
}

impl InputContext {
    /// The output context of one upstream partition (or of the whole
    /// upstream when it is unpartitioned).
    pub fn upstream_partition(&self, p: Option<&PartitionRef>) -> OutputContext {
        OutputContext {
            partition: p.cloned(),
            ..self.upstream_output.clone()
        }
    }
}

/// Arrow record batches with their schema.
#[derive(Clone, Debug)]
pub struct Table {
    pub schema: arrow::datatypes::SchemaRef,
    pub batches: Vec<arrow::record_batch::RecordBatch>,
}

impl Table {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Data handed to or returned by an I/O manager.
#[derive(Clone, Debug)]
pub enum Data {
    /// A file in a named format. Steps write their outputs as files; a
    /// manager whose stored format matches hands its file over as is.
    File { path: PathBuf, format: Format },
    /// Tabular data in memory.
    Table(Arc<Table>),
    /// Opaque bytes (`file` format).
    Bytes(Arc<Vec<u8>>),
}

/// What a manager reports about a stored output (recorded with the materialization).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stored {
    pub path: Option<String>,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
}

/// What `load_input` returns: one value, or for a partitioned upstream an
/// ordered map from partition key to value (always a map, even for one key).
#[derive(Clone, Debug)]
pub enum Loaded {
    Single(Data),
    Partitions(IndexMap<String, Data>),
}

/// Stores outputs and loads them back as inputs.
pub trait IoManager: Send + Sync {
    /// Stores one output (one partition, or the whole of an unpartitioned
    /// asset), replacing what was there, atomically.
    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored>;
    /// Loads an input: every partition in `ctx.partitions`, in order.
    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded>;
    /// Whether an output (partition) is stored; used before a run starts.
    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool>;
}

fn default_format() -> Format {
    Format::Csv
}

/// `type = "fs"`: files under `base_dir`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// Relative to the project root; default `<state>/storage`.
    pub base_dir: Option<String>,
    #[serde(default = "default_format")]
    pub format: Format,
}

/// `type = "memory"`: values that live for one run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {}

/// `type = "sqlite"`: one table per asset in a SQLite database file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    pub path: String,
    #[serde(default)]
    pub replace_on_schema_change: bool,
}

/// `type = "postgres"`: one table per asset in a Postgres schema.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    pub url: String,
    #[serde(default = "default_schema")]
    pub schema: String,
    #[serde(default)]
    pub replace_on_schema_change: bool,
}

fn default_schema() -> String {
    "public".into()
}

/// `type = "command"`: an external plug-in program.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    pub command: Vec<String>,
    pub format: Option<Format>,
    pub timeout: Option<String>,
    #[serde(default)]
    pub config: toml::Table,
}
