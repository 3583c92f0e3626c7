//! Stage 6: I/O managers — the registry of resource types.
//!
//! Each resource `type` is registered under its name with a config struct
//! that derives `Deserialize` with `deny_unknown_fields`. Validation of a
//! resource is deserialising its table (minus `type`) into that struct, so a
//! plug-in type registered by an embedding program is checked exactly like a
//! built-in one, with located errors.

use std::collections::BTreeMap;
use std::sync::Arc;

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

/// A kind of resource that can appear as `type = "…"`.
pub trait ResourceType: Send + Sync {
    /// Checks a resource's config table (without its `type` key).
    fn validate(&self, config: Value<'_>) -> Result<ResourceInfo, ConfigError>;
}

/// What validation learned about a resource that the rest of dg needs.
#[derive(Clone, Debug, Default)]
pub struct ResourceInfo {
    /// The format its data is stored in, when the type has one.
    pub format: Option<Format>,
}

/// A resource type defined only by its config struct.
pub struct Configured<C> {
    info: fn(&C) -> ResourceInfo,
    _c: std::marker::PhantomData<fn() -> C>,
}

impl<C: DeserializeOwned> Configured<C> {
    pub fn new(info: fn(&C) -> ResourceInfo) -> Self {
        Configured {
            info,
            _c: std::marker::PhantomData,
        }
    }
}

impl<C: DeserializeOwned> ResourceType for Configured<C> {
    fn validate(&self, config: Value<'_>) -> Result<ResourceInfo, ConfigError> {
        let outer = config.span();
        C::deserialize(config.into_deserializer())
            .map(|c| (self.info)(&c))
            .map_err(|e| ConfigError {
                message: e.message().trim().to_string(),
                span: e.span().or(Some(outer)),
            })
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
            Configured::<FsConfig>::new(|c| ResourceInfo {
                format: Some(c.format),
            }),
        );
        r.register(
            "memory",
            Configured::<MemoryConfig>::new(|_| ResourceInfo::default()),
        );
        r.register(
            "sqlite",
            Configured::<SqliteConfig>::new(|_| ResourceInfo::default()),
        );
        r.register(
            "postgres",
            Configured::<PostgresConfig>::new(|_| ResourceInfo::default()),
        );
        r.register(
            "command",
            Configured::<CommandConfig>::new(|c| ResourceInfo { format: c.format }),
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
