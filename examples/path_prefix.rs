//! A configurable I/O manager: CSV files under a root and a `path_prefix`.
//!
//! The Dagster guide's first two managers, `MyIOManager` with
//! `path_prefix: list[str] = []` and the Pythonic one with `root_path: str`,
//! in one:
//!
//! ```python
//! class MyIOManager(dg.ConfigurableIOManager):
//!     root_path: str
//!     path_prefix: list[str] = []
//!
//!     def _get_path(self, context) -> str:
//!         return "/".join([self.root_path] + self.path_prefix + context.asset_key.path)
//!
//!     def handle_output(self, context: dg.OutputContext, obj):
//!         write_csv(self._get_path(context), obj)
//!
//!     def load_input(self, context: dg.InputContext):
//!         return read_csv(self._get_path(context.upstream_output))
//! ```
//!
//! | Dagster | here |
//! |---|---|
//! | `class MyIOManager(dg.ConfigurableIOManager)` with typed attributes | a `Deserialize` struct with `deny_unknown_fields` that implements [`IoManager`], registered with [`Registry::register_manager`] |
//! | `resources={"io_manager": MyIOManager(root_path="/tmp/")}` | `[resources.io_manager]` with `type = "prefixed_csv"` and `root = "lake"` |
//! | `context.asset_key.path` | [`OutputContext::key_segments`] |
//! | `write_csv` / `read_csv` | [`Data::write_atomically`] / handing the stored file back as [`Data::File`] |
//!
//! The project `examples/path_prefix/` uses it; run it with
//!
//! ```sh
//! cargo run --example path_prefix -- --project examples/path_prefix materialize
//! ```
//!
//! and `raw/orders` is stored at `lake/team_a/v1/raw/orders.csv`.

use std::path::PathBuf;

use dg::io::{
    Data, Format, InputContext, IoManager, Loaded, OutputContext, Registry, ResourceCx, Stored,
};
use serde::Deserialize;

/// `type = "prefixed_csv"`. The struct is both the config (every field is
/// a TOML field of the resource; an unknown one is an error of
/// `dg check defs`) and the manager.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MyIoManager {
    /// Where the files go, relative to the project root.
    root: String,
    /// Folders between `root` and the asset key, e.g. `["team_a", "v1"]`.
    #[serde(default)]
    path_prefix: Vec<String>,
    /// Not config: set once per run by `setup_for_execution`.
    #[serde(skip)]
    project_root: PathBuf,
}

impl MyIoManager {
    /// `<root>/<path_prefix…>/<asset key segments>.csv` (the guide's `_get_path`).
    fn path(&self, ctx: &OutputContext) -> anyhow::Result<PathBuf> {
        if let Some(p) = &ctx.partition {
            anyhow::bail!(
                "`{}` partition `{}`: `prefixed_csv` stores unpartitioned assets only \
                 (examples/partitioned.rs shows a partitioned manager)",
                ctx.asset_key,
                p.key
            );
        }
        let mut path = self.project_root.join(&self.root);
        path.extend(&self.path_prefix);
        path.extend(ctx.key_segments());
        // Not `with_extension`: a segment may hold a `.` (`orders.v2`).
        let mut file = path.into_os_string();
        file.push(".csv");
        Ok(file.into())
    }
}

impl IoManager for MyIoManager {
    fn setup_for_execution(&mut self, cx: &ResourceCx) -> anyhow::Result<()> {
        // Relative paths in resources are relative to the project root, as
        // for the built-in `fs` manager's `base_dir`.
        self.project_root = cx.project_root.clone();
        Ok(())
    }

    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        let path = self.path(ctx)?;
        // The guide's `write_csv`: a temporary file beside `path`, then a
        // rename, so that no reader sees half a file.
        let bytes = data.write_atomically(&path, Format::Csv)?;
        ctx.log.info(format_args!(
            "prefixed_csv: stored `{}` at {}",
            ctx.asset_key,
            path.display()
        ));
        Ok(Stored::at(path.display().to_string()).with_bytes(bytes))
    }

    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        // `upstream_output` is the context the upstream was stored with, so
        // the path is the one `handle_output` wrote.
        let path = self.path(&ctx.upstream_output)?;
        if !path.is_file() {
            anyhow::bail!(
                "`{}` has not been materialized: `{}` does not exist",
                ctx.upstream_output.asset_key,
                path.display()
            );
        }
        // The stored file as it is: dg converts it to the reading step's
        // format. (`Data::Table(Arc::new(table::read(&path, Format::Csv)?))`
        // would hand over the rows in memory instead.)
        Ok(Loaded::Single(Data::File {
            path,
            format: Format::Csv,
        }))
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        Ok(self.path(ctx)?.is_file())
    }
}

fn main() {
    let mut registry = Registry::builtin();
    registry.register_manager::<MyIoManager>("prefixed_csv");
    std::process::exit(dg::run_with(registry));
}
