//! An I/O manager factory: config apart from a stateful manager with a cache.
//!
//! The Dagster guide's "Using an I/O manager factory":
//!
//! ```python
//! class ExternalIOManager(dg.IOManager):
//!     def __init__(self, api_token):
//!         self._api_token = api_token
//!         # setup stateful cache
//!         self._cache = {}
//!
//!     def handle_output(self, context: dg.OutputContext, obj): ...
//!
//!     def load_input(self, context: dg.InputContext):
//!         if context.asset_key in self._cache:
//!             return self._cache[context.asset_key]
//!         ...
//!
//! class ConfigurableExternalIOManager(dg.ConfigurableIOManagerFactory):
//!     api_token: str
//!
//!     def create_io_manager(self, context) -> ExternalIOManager:
//!         return ExternalIOManager(self.api_token)
//! ```
//!
//! | Dagster | here |
//! |---|---|
//! | `ConfigurableExternalIOManager` (the config) | [`ConfigurableExternalIoManager`], a `Deserialize` struct registered with [`Registry::register_factory`] |
//! | `create_io_manager(self, context)` | [`IoManagerFactory::create_io_manager`], called once per run with `${env:…}` resolved |
//! | `ExternalIOManager` (the state) | [`ExternalIoManager`]: a client and a `Mutex<HashMap<…>>` cache that every step of the run shares |
//! | `context.log` | `ctx.log.info(…)`: a line in the step's log (`dg logs RUN_ID`) |
//!
//! The "external API" is simulated by CSV files under `external_api/` in
//! the project. The token comes from the environment:
//!
//! ```sh
//! API_TOKEN=secret cargo run --example external_factory -- --project examples/external_factory materialize
//! ```
//!
//! Each load says in the step's log whether it was a cache hit or a fetch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dg::io::{
    Data, Format, InputContext, IoManager, IoManagerFactory, Loaded, OutputContext, Registry,
    ResourceCx, Stored, Table, table,
};
use serde::Deserialize;

/// `type = "external"`: the config only (the guide's
/// `ConfigurableExternalIOManager`). Write `api_token = "${env:API_TOKEN}"`
/// to keep the secret out of the files: it is resolved when a run starts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigurableExternalIoManager {
    api_token: String,
}

impl IoManagerFactory for ConfigurableExternalIoManager {
    /// Once per run, before any step: the place for connections, pools and
    /// caches. An error here stops the run before anything runs.
    fn create_io_manager(self, cx: &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>> {
        let api = ExternalApi::connect(&cx.project_root.join("external_api"), &self.api_token)?;
        Ok(Arc::new(ExternalIoManager {
            api,
            cache: Mutex::new(HashMap::new()),
            hits: AtomicUsize::new(0),
        }))
    }
}

/// The manager: one per run, shared by every step of it (hence `Sync`:
/// steps run in parallel, so the cache is behind a mutex).
pub struct ExternalIoManager {
    api: ExternalApi,
    /// Object key → rows, for this run.
    cache: Mutex<HashMap<String, Arc<Table>>>,
    hits: AtomicUsize,
}

impl ExternalIoManager {
    /// The object an output (partition) is stored as.
    fn object_key(ctx: &OutputContext) -> String {
        match &ctx.partition {
            Some(p) => format!("{}/{}", ctx.asset_key, p.file_name()),
            None => ctx.asset_key.clone(),
        }
    }
}

impl IoManager for ExternalIoManager {
    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        // The step wrote a file; the API takes rows.
        let rows = match table::into_memory(data)? {
            Data::Table(t) => t,
            _ => anyhow::bail!("`{}`: the external API stores tables only", ctx.asset_key),
        };
        let key = Self::object_key(ctx);
        let bytes = self.api.put(&key, &rows)?;
        ctx.log.info(format_args!(
            "external: stored `{key}`: {} rows",
            rows.num_rows()
        ));
        let stored = Stored::at(format!("external://{key}"))
            .with_rows(rows.num_rows() as u64)
            .with_bytes(bytes);
        // Write-through: a step later in this run reads it without a fetch.
        self.cache.lock().unwrap().insert(key, rows);
        Ok(stored)
    }

    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        ctx.load_each(|out| {
            let key = Self::object_key(out);
            // `if context.asset_key in self._cache: return self._cache[…]`
            if let Some(rows) = self.cache.lock().unwrap().get(&key) {
                let n = self.hits.fetch_add(1, Ordering::Relaxed) + 1;
                ctx.log.info(format_args!(
                    "external: cache hit for `{key}` ({n} in this run)"
                ));
                return Ok(Data::Table(rows.clone()));
            }
            let rows = Arc::new(self.api.get(&key)?);
            ctx.log.info(format_args!(
                "external: cache miss for `{key}`: fetched from the external API"
            ));
            self.cache.lock().unwrap().insert(key, rows.clone());
            Ok(Data::Table(rows))
        })
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        let key = Self::object_key(ctx);
        Ok(self.cache.lock().unwrap().contains_key(&key) || self.api.has(&key))
    }
}

/// Stands in for a remote service: every object is a CSV file under a
/// folder, and nothing works without a token.
struct ExternalApi {
    dir: PathBuf,
}

impl ExternalApi {
    fn connect(dir: &Path, token: &str) -> anyhow::Result<ExternalApi> {
        if token.trim().is_empty() {
            anyhow::bail!("the external API refuses an empty `api_token`: set API_TOKEN");
        }
        Ok(ExternalApi {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        let mut p = self.dir.join(key).into_os_string();
        p.push(".csv");
        p.into()
    }

    fn put(&self, key: &str, rows: &Arc<Table>) -> anyhow::Result<u64> {
        Data::Table(rows.clone()).write_atomically(&self.path(key), Format::Csv)
    }

    fn get(&self, key: &str) -> anyhow::Result<Table> {
        let path = self.path(key);
        if !path.is_file() {
            anyhow::bail!("the external API has no object `{key}`: materialize it first");
        }
        table::read(&path, Format::Csv)
    }

    fn has(&self, key: &str) -> bool {
        self.path(key).is_file()
    }
}

fn main() {
    let mut registry = Registry::builtin();
    registry.register_factory::<ConfigurableExternalIoManager>("external");
    std::process::exit(dg::run_with(registry));
}
