//! An I/O manager that loads many upstream partitions at once: a daily
//! asset reads the 24 partitions of an hourly one.
//!
//! The Dagster guide's "Handling partition mappings":
//!
//! ```python
//! hourly_partitions = dg.HourlyPartitionsDefinition(start_date="2022-01-01-00:00")
//! daily_partitions = dg.DailyPartitionsDefinition(start_date="2022-01-01")
//!
//! @dg.asset(partitions_def=hourly_partitions)
//! def upstream_asset(context) -> pd.DataFrame:
//!     return pd.DataFrame({"date": [context.partition_key]})
//!
//! @dg.asset(partitions_def=daily_partitions)
//! def downstream_asset(upstream_asset: dict[str, pd.DataFrame]) -> pd.DataFrame:
//!     return pd.concat(list(upstream_asset.values()))
//!
//! assert len(downstream_asset_data) == 24
//! ```
//!
//! "When writing a custom I/O manager for loading multiple upstream
//! partitions, the mapped keys can be accessed using
//! `InputContext.asset_partition_keys`":
//!
//! | Dagster | here |
//! |---|---|
//! | `context.asset_partition_keys` | [`InputContext::partitions`]: the keys (and time windows) the input's mapping selects, in partition order |
//! | `context.asset_partition_key_range` | the first and last of `ctx.partitions` |
//! | `dict[str, pd.DataFrame]` returned by `load_input` | [`Loaded::Partitions`]: partition key → [`Data`], in order |
//! | `pd.concat(list(upstream_asset.values()))` | done by dg: the step gets one file with every partition's rows in order (`$DG_INPUT_UPSTREAM_ASSET`), and the list of partitions (`$DG_INPUT_UPSTREAM_ASSET_PARTITIONS`) |
//!
//! This manager stores every partition as JSON lines, converting from the
//! step's CSV with [`Data::write_atomically`]; dg converts back to CSV for
//! the reading step.
//!
//! ```sh
//! cargo run --example many_partitions -- --project examples/many_partitions \
//!     --now 2022-01-02T00:00:00Z materialize --partition 2022-01-01
//! ```

use std::path::PathBuf;

use dg::io::{
    Data, Format, InputContext, IoManager, Loaded, OutputContext, Registry, ResourceCx, Stored,
};
use serde::Deserialize;

/// `type = "jsonl_partitions"`: `<base_dir>/<asset>/<partition key>.jsonl`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlPartitions {
    /// Relative to the project root.
    base_dir: String,
    #[serde(skip)]
    project_root: PathBuf,
}

impl JsonlPartitions {
    fn path(&self, ctx: &OutputContext) -> PathBuf {
        ctx.path_in(&self.project_root.join(&self.base_dir), Format::Jsonl)
    }
}

impl IoManager for JsonlPartitions {
    fn setup_for_execution(&mut self, cx: &ResourceCx) -> anyhow::Result<()> {
        self.project_root = cx.project_root.clone();
        Ok(())
    }

    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        let path = self.path(ctx);
        // The step wrote CSV: it is read into Arrow and written as JSON
        // lines (a file already in JSON lines would be copied as is).
        let bytes = data.write_atomically(&path, Format::Jsonl)?;
        Ok(Stored::at(path.display().to_string()).with_bytes(bytes))
    }

    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        if let (Some(first), Some(last)) = (ctx.partitions.first(), ctx.partitions.last()) {
            // The guide's `asset_partition_key_range`.
            ctx.log.info(format_args!(
                "jsonl_partitions: input `{}` loads {} partitions of `{}`: {} to {}",
                ctx.input_name,
                ctx.partitions.len(),
                ctx.upstream_output.asset_key,
                first.key,
                last.key
            ));
        }
        // One entry per partition, in `ctx.partitions` order: for the
        // daily partition 2022-01-01, the hours 00:00 to 23:00. Each is
        // the stored file as it is; dg converts it to the step's format
        // and concatenates the partitions in this order. (`load_each`
        // returning `Data::Table(Arc::new(table::read(&path,
        // Format::Jsonl)?))` would hand over the rows in memory.)
        ctx.load_files(Format::Jsonl, |out| self.path(out))
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        Ok(self.path(ctx).is_file())
    }
}

fn main() {
    let mut registry = Registry::builtin();
    registry.register_manager::<JsonlPartitions>("jsonl_partitions");
    std::process::exit(dg::run_with(registry));
}
