//! A partition-aware I/O manager: one file per partition, in folders by
//! year and month of the partition's time window.
//!
//! The Dagster guide's "Handling partitioned assets":
//!
//! ```python
//! class MyPartitionedIOManager(dg.IOManager):
//!     def _get_path(self, context) -> str:
//!         if context.has_partition_key:
//!             return "/".join(context.asset_key.path + [context.asset_partition_key])
//!         else:
//!             return "/".join(context.asset_key.path)
//!
//!     def handle_output(self, context: dg.OutputContext, obj):
//!         write_csv(self._get_path(context), obj)
//!
//!     def load_input(self, context: dg.InputContext):
//!         return read_csv(self._get_path(context))
//! ```
//!
//! | Dagster | here |
//! |---|---|
//! | `context.has_partition_key` | `ctx.partition.is_some()` |
//! | `context.asset_partition_key` | `ctx.partition.as_ref().unwrap().key` ([`PartitionRef::key`]) |
//! | `context.asset_partitions_time_window` | [`PartitionRef::window`]: `(start, end)` of a time partition (of the time dimension of a multi partition) |
//! | `context.asset_partition_keys` in `load_input` | [`InputContext::partitions`], loaded in order with [`InputContext::load_each`] |
//! | `context.add_output_metadata(…)` | the [`Stored`] returned by `handle_output` (path, rows, bytes), recorded with the materialization |
//! | `write_csv` / `read_csv` | [`Data::write_atomically`] / [`InputContext::load_files`], which hands the stored files back as [`Data::File`] |
//!
//! Layout, below `root` (default `data`):
//!
//! | asset | stored at |
//! |---|---|
//! | unpartitioned `orders` | `orders.csv` |
//! | time-partitioned `events`, key `2024-01-31` | `events/2024/01/2024-01-31.csv` (year and month of the window's start) |
//! | other partitions, key `eu` | `regions/eu.csv` |
//!
//! ```sh
//! cargo run --example partitioned -- --project examples/partitioned \
//!     --now 2024-02-02T00:00:00Z materialize --partition-range '2024-01-31...2024-02-01'
//! ```

use std::path::PathBuf;

use dg::io::{
    Data, Format, InputContext, IoManager, Loaded, OutputContext, Registry, ResourceCx, Stored,
    table,
};
use serde::Deserialize;

fn default_root() -> String {
    "data".into()
}

/// `type = "partitioned_csv"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MyPartitionedIoManager {
    /// Relative to the project root.
    #[serde(default = "default_root")]
    root: String,
    #[serde(skip)]
    project_root: PathBuf,
}

impl MyPartitionedIoManager {
    /// The guide's `_get_path`, with the time window's year and month as
    /// folders.
    fn path(&self, ctx: &OutputContext) -> PathBuf {
        let mut path = self.project_root.join(&self.root);
        path.extend(ctx.key_segments());
        if let Some(p) = &ctx.partition {
            if let Some((start, _end)) = &p.window {
                path.push(start.format("%Y").to_string());
                path.push(start.format("%m").to_string());
            }
            // A key may hold `/` or start with `.`: `file_name` encodes it
            // as the fs manager does, so that it is always one plain name.
            path.push(p.file_name());
        }
        // Not `with_extension`: a key or segment may hold a `.`.
        let mut file = path.into_os_string();
        file.push(".csv");
        file.into()
    }
}

impl IoManager for MyPartitionedIoManager {
    fn setup_for_execution(&mut self, cx: &ResourceCx) -> anyhow::Result<()> {
        self.project_root = cx.project_root.clone();
        Ok(())
    }

    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        // One call stores one partition: the step materialized exactly one.
        let path = self.path(ctx);
        let bytes = data.write_atomically(&path, Format::Csv)?;
        let rows = table::read(&path, Format::Csv)?.num_rows() as u64;
        if let Some(p) = &ctx.partition {
            let window = match &p.window {
                Some((start, end)) => {
                    format!(" (window {} to {})", start.to_rfc3339(), end.to_rfc3339())
                }
                None => String::new(),
            };
            ctx.log.info(format_args!(
                "partitioned_csv: stored `{}` partition `{}`{window} at {} (rows: {rows})",
                ctx.asset_key,
                p.key,
                path.display(),
            ));
        }
        // Recorded with the materialization as `dg/path`, `dg/rows`, `dg/bytes`.
        Ok(Stored::at(path.display().to_string())
            .with_rows(rows)
            .with_bytes(bytes))
    }

    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        // Every partition the input's mapping selects (one for the same
        // partition of a same-partitioned upstream), in order, as the
        // stored files.
        ctx.load_files(Format::Csv, |out| self.path(out))
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        Ok(self.path(ctx).is_file())
    }
}

fn main() {
    let mut registry = Registry::builtin();
    registry.register_manager::<MyPartitionedIoManager>("partitioned_csv");
    std::process::exit(dg::run_with(registry));
}
