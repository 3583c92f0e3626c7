//! A run as a library: from a [`Target`] (selection and partition
//! targeting) to a resolved plan, without printing.
//!
//! `dg plan`, `dg materialize`, `dg tick`, `dg step` and tests call these;
//! the command line only parses arguments and renders what comes back
//! (notes, errors, the plan). Errors are [`crate::error::Error`]s.

use crate::error::Error;
use crate::model::{AssetId, Defs};
use crate::partitions::{KeyCtx, PartitionsDef};
use crate::plan::{Plan, Targeting};
use crate::project::Project;

/// Which assets and partitions a plan covers: `--select` and the partition
/// flags, as given.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// A selection (`*` for every asset).
    pub select: String,
    /// `--partition KEY` (`DEF:KEY`, `latest`, `DEF:latest`).
    pub partition: Option<String>,
    /// `--partition-range A...B` (`DEF:A...B`).
    pub partition_range: Option<String>,
    /// `--all-partitions`.
    pub all_partitions: bool,
    /// `--last N`.
    pub last: Option<u32>,
}

impl Target {
    /// The [`Targeting`] these flags mean for `defs`.
    pub fn targeting(&self, defs: &Defs) -> Result<Targeting, Error> {
        Ok(if self.all_partitions {
            Targeting::All
        } else if let Some(n) = self.last {
            Targeting::Last(i64::from(n), None)
        } else if self.partition.as_deref() == Some("latest") {
            Targeting::Last(1, None)
        } else if let Some(def) = self
            .partition
            .as_deref()
            .and_then(|k| k.strip_suffix(":latest"))
            .filter(|d| defs.partitions.contains_key(*d))
        {
            Targeting::Last(1, Some(def.to_string()))
        } else if let Some(k) = &self.partition {
            Targeting::Partition(k.clone())
        } else if let Some(r) = &self.partition_range {
            Targeting::range(r).map_err(Error::plan)?
        } else {
            Targeting::None
        })
    }
}

/// A resolved plan with what is needed to run or print it. Notes about it
/// (a dynamic definition with no keys yet) are in `plan.notes`.
pub struct Resolved {
    pub project: Project,
    pub defs: Defs,
    pub plan: Plan,
    pub cx: KeyCtx,
    pub selected: Vec<AssetId>,
}

/// Resolves the selection and the plan of loaded definitions as of `now`
/// (Unix seconds).
pub fn resolve(project: Project, defs: Defs, target: &Target, now: i64) -> Result<Resolved, Error> {
    let cx = key_ctx(&defs, &project, now)?;
    let selected = select(&defs, &target.select)?;
    let targeting = target.targeting(&defs)?;
    let plan = crate::plan::build(&defs, &selected, &targeting, &cx)
        .map_err(|e| Error::plan_errors(&e))?;
    Ok(Resolved {
        project,
        defs,
        plan,
        cx,
        selected,
    })
}

/// *Now* (Unix seconds) and the keys of dynamic partitions, read from the
/// state store only when some definition is dynamic.
pub fn key_ctx(defs: &Defs, project: &Project, now: i64) -> Result<KeyCtx, Error> {
    let mut cx = KeyCtx::new(now);
    let dynamic = |d: &PartitionsDef| match d {
        PartitionsDef::Dynamic { .. } => true,
        PartitionsDef::Multi(m) => m
            .dims
            .iter()
            .any(|(_, x)| matches!(**x, PartitionsDef::Dynamic { .. })),
        _ => false,
    };
    let has_dynamic = defs.partitions.values().any(|p| dynamic(&p.def))
        || defs
            .assets
            .iter()
            .any(|a| a.partitions.as_ref().is_some_and(|p| dynamic(&p.def)));
    if has_dynamic {
        crate::state::open(project)
            .and_then(|store| crate::state::dynamic_keys(defs, &*store, &mut cx))
            .map_err(|e| Error::store(format!("cannot read dynamic partitions: {e:#}")))?;
    }
    Ok(cx)
}

/// The assets that selection `text` selects.
pub fn select(defs: &Defs, text: &str) -> Result<Vec<AssetId>, Error> {
    crate::select::parse(text)
        .and_then(|sel| sel.resolve(defs))
        .map_err(|error| Error::Select {
            text: text.to_string(),
            error,
        })
}
