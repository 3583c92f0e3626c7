//! A per-input manager that reuses another manager's path logic and loads
//! the data differently.
//!
//! The Dagster guide's "Writing a per-input I/O manager":
//!
//! ```python
//! # this IO Manager is owned by a different team
//! class BetterPandasIOManager(dg.ConfigurableIOManager):
//!     def _get_path(self, output_context):
//!         return os.path.join(self.base_dir, "storage",
//!                             f"{output_context.step_key}_{output_context.name}.csv")
//!
//!     def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame): ...
//!
//!     def load_input(self, context: dg.InputContext) -> pd.DataFrame:
//!         return pd.read_csv(self._get_path(context.upstream_output))
//!
//! # write a subclass that uses _get_path for your custom loading logic
//! class MyBetterNumpyLoader(BetterPandasIOManager):
//!     def load_input(self, context: dg.InputContext) -> np.ndarray:
//!         file_path = self._get_path(context.upstream_output)
//!         array = np.genfromtxt(file_path, delimiter=",", dtype=None)
//!         return array
//!
//! @dg.op(ins={"np_array_input": dg.In(input_manager_key="better_numpy_manager")})
//! def better_analyze_as_numpy(np_array_input: np.ndarray): ...
//! ```
//!
//! | Dagster | here |
//! |---|---|
//! | `BetterPandasIOManager` with `_get_path` | [`BetterCsvManager`] with the public [`BetterCsvManager::path`], used by its own `handle_output` and `load_input` |
//! | `class MyBetterNumpyLoader(BetterPandasIOManager)` | [`ColumnLoader`]: holds a `BetterCsvManager` and delegates to it (composition in place of a subclass), replacing only `load_input` |
//! | loading "as a NumPy array" | loading only the column `column`: the step gets a one-column CSV |
//! | `dg.In(input_manager_key="better_numpy_manager")` | `[assets.KEY.ins.NAME]` with `input_manager = "amounts"` |
//!
//! ```sh
//! cargo run --example input_loader -- --project examples/input_loader materialize
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use dg::io::{
    Data, Format, InputContext, IoManager, IoManagerFactory, Loaded, OutputContext, Registry,
    ResourceCx, Stored, Table, table,
};
use serde::Deserialize;

/// `type = "better_csv"`: Team A's manager. CSV files at
/// `<base_dir>/storage/<asset key>[/<partition key>].csv`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BetterCsvManager {
    /// Relative to the project root.
    base_dir: String,
    #[serde(skip)]
    project_root: PathBuf,
}

impl BetterCsvManager {
    /// Where an output (partition) is stored: the one place that knows the
    /// layout, for this manager and for loaders built on it (the guide's
    /// `_get_path`).
    pub fn path(&self, ctx: &OutputContext) -> PathBuf {
        let storage = self.project_root.join(&self.base_dir).join("storage");
        ctx.path_in(&storage, Format::Csv)
    }

    /// The stored file of one upstream output, or why it is not there.
    fn stored(&self, ctx: &OutputContext) -> anyhow::Result<PathBuf> {
        let path = self.path(ctx);
        if !path.is_file() {
            anyhow::bail!("`{}` is not stored: no `{}`", ctx.asset_key, path.display());
        }
        Ok(path)
    }
}

impl IoManager for BetterCsvManager {
    fn setup_for_execution(&mut self, cx: &ResourceCx) -> anyhow::Result<()> {
        self.project_root = cx.project_root.clone();
        Ok(())
    }

    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        let path = self.path(ctx);
        data.write_atomically(&path, Format::Csv)?;
        Ok(Stored::at(path.display().to_string()))
    }

    /// The whole table, as stored.
    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        ctx.load_files(Format::Csv, |out| self.path(out))
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        Ok(self.path(ctx).is_file())
    }
}

/// `type = "column_loader"`: the config of [`ColumnLoader`]. `base_dir` is
/// the one of the `better_csv` resource whose outputs it reads.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnLoaderConfig {
    base_dir: String,
    /// The one column the reading step gets.
    column: String,
}

impl IoManagerFactory for ColumnLoaderConfig {
    fn create_io_manager(self, cx: &ResourceCx) -> anyhow::Result<Arc<dyn IoManager>> {
        let mut team_a = BetterCsvManager {
            base_dir: self.base_dir,
            project_root: PathBuf::new(),
        };
        team_a.setup_for_execution(cx)?;
        Ok(Arc::new(ColumnLoader {
            team_a,
            column: self.column,
        }))
    }
}

/// Team A's manager with another `load_input` (the guide's
/// `MyBetterNumpyLoader`): it finds the data through
/// [`BetterCsvManager::path`], so it keeps working if Team A changes
/// their layout, and hands the step one column.
pub struct ColumnLoader {
    team_a: BetterCsvManager,
    column: String,
}

impl ColumnLoader {
    /// The rows of `path` with only the column `self.column`.
    fn one_column(&self, path: &std::path::Path) -> anyhow::Result<Table> {
        let all = table::read(path, Format::Csv)?;
        let Ok(i) = all.schema.index_of(&self.column) else {
            let names: Vec<&str> = all
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            anyhow::bail!(
                "`{}` has no column `{}`; its columns are {}",
                path.display(),
                self.column,
                names.join(", ")
            );
        };
        Ok(Table::new(
            Arc::new(all.schema.project(&[i])?),
            all.batches
                .iter()
                .map(|b| b.project(&[i]))
                .collect::<Result<_, _>>()?,
        ))
    }
}

impl IoManager for ColumnLoader {
    /// As Team A stores it (a subclass would inherit this).
    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        self.team_a.handle_output(ctx, data)
    }

    /// The only override: one column instead of the whole table.
    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        ctx.load_each(|out| {
            let path = self.team_a.stored(out)?;
            let rows = self.one_column(&path)?;
            ctx.log.info(format_args!(
                "column_loader: input `{}` gets column `{}` of {} ({} rows)",
                ctx.input_name,
                self.column,
                path.display(),
                rows.num_rows()
            ));
            // In memory: dg writes it in the reading step's format.
            Ok(Data::Table(Arc::new(rows)))
        })
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        self.team_a.exists(ctx)
    }
}

fn main() {
    let mut registry = Registry::builtin();
    registry.register_manager::<BetterCsvManager>("better_csv");
    registry.register_factory::<ColumnLoaderConfig>("column_loader");
    std::process::exit(dg::run_with(registry));
}
