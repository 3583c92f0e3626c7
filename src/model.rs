//! The validated model: definitions that cannot be invalid.
//!
//! Built only by [`crate::validate`]. Every reference is resolved (assets
//! point at assets by index, partitions definitions are shared `Arc`s), the
//! graph is acyclic, and spans are kept so later stages can point back at
//! the TOML that caused a problem.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use crate::diag::Span;
use crate::interp::Template;
use crate::io::Format;
use crate::io::table::ColumnType;
use crate::partitions::{MappingSpec, PartitionsDef};

/// Index of an asset in [`Defs::assets`].
pub type AssetId = usize;

/// A named partitions definition.
#[derive(Debug, Clone)]
pub struct NamedPartitions {
    pub def: Arc<PartitionsDef>,
    pub span: Span,
}

/// A resource (I/O manager) as defined.
#[derive(Debug, Clone)]
pub struct Resource {
    pub key: String,
    pub type_name: String,
    /// The table without `type`; strings may hold `${env:…}`, resolved at run start.
    pub config: toml::Table,
    /// The format it stores data in, when its type has one.
    pub format: Option<Format>,
    /// `None` for the implicit default `io_manager`.
    pub span: Option<Span>,
}

/// How an asset is computed.
#[derive(Debug, Clone)]
pub enum Compute {
    Command(Vec<Template>),
    Shell(String),
    Sql(String),
    /// An external asset: loaded through its manager, never materialized by dg.
    Source,
}

impl Compute {
    /// The compute kind, as `kind:` selects it.
    pub fn kind(&self) -> &'static str {
        match self {
            Compute::Command(_) => "command",
            Compute::Shell(_) => "shell",
            Compute::Sql(_) => "sql",
            Compute::Source => "source",
        }
    }
}

/// An asset's partitioning.
#[derive(Debug, Clone)]
pub struct AssetPartitions {
    pub def: Arc<PartitionsDef>,
    /// The named definition, or `None` when written inline.
    pub name: Option<String>,
}

/// One input of an asset.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub span: Span,
    pub upstream: AssetId,
    /// The mapping in force: as written, or inferred.
    pub mapping: MappingSpec,
    pub mapping_inferred: bool,
    /// Per-input manager; `None` means the upstream's `io_manager`.
    pub input_manager: Option<String>,
    pub allow_missing_partitions: bool,
    pub load: bool,
}

/// A validated asset.
#[derive(Debug, Clone)]
pub struct Asset {
    /// Segments joined by `/`, e.g. `raw/events`.
    pub key: String,
    pub span: Span,
    /// Where its compute is defined, `file:line:column`, for run-time errors.
    pub defined_at: String,
    pub partitions: Option<AssetPartitions>,
    pub compute: Compute,
    pub io_manager: String,
    /// What the compute writes and reads: the asset's `format`, else its manager's, else csv.
    pub format: Format,
    pub group: String,
    pub tags: BTreeMap<String, String>,
    pub description: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub env: Vec<(String, Template)>,
    pub code_version: Option<String>,
    pub retries: u32,
    pub timeout: Option<Duration>,
    pub output: bool,
    /// `output_required = false`: the step may leave `$DG_OUTPUT` unwritten.
    pub output_required: bool,
    /// Declared column types (`columns`), applied before the output is stored.
    pub columns: Vec<(String, ColumnType)>,
    pub inputs: Vec<Input>,
    /// `[assets.KEY.checks.NAME]`, in definition order.
    pub checks: Vec<Check>,
    /// `freshness`: the newest materialization must be younger than this.
    pub freshness: Option<Duration>,
}

/// How bad a failed check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckSeverity {
    Error,
    Warn,
}

impl CheckSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckSeverity::Error => "error",
            CheckSeverity::Warn => "warn",
        }
    }
}

/// What a check runs.
#[derive(Debug, Clone)]
pub enum CheckKind {
    /// Passes when the query returns no rows.
    Sql(String),
    /// `sh -c`; exit 0 passes.
    Shell(String),
    /// argv; exit 0 passes.
    Command(Vec<Template>),
}

/// An asset check (`[assets.KEY.checks.NAME]`), run after each partition is stored.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub span: Span,
    pub kind: CheckKind,
    pub severity: CheckSeverity,
    /// A failed error-check skips the steps downstream.
    pub blocking: bool,
    pub description: Option<String>,
}

impl Asset {
    /// Key segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.key.split('/')
    }
}

/// All definitions of a project, validated.
#[derive(Debug, Default, Clone)]
pub struct Defs {
    pub partitions: IndexMap<String, NamedPartitions>,
    pub resources: IndexMap<String, Resource>,
    /// In topological order: every asset comes after its upstream assets.
    pub assets: Vec<Asset>,
    pub by_key: HashMap<String, AssetId>,
    /// `[jobs.NAME]`, in definition order.
    pub jobs: IndexMap<String, Job>,
}

impl Defs {
    pub fn asset(&self, key: &str) -> Option<&Asset> {
        self.by_key.get(key).map(|&i| &self.assets[i])
    }

    /// Downstream adjacency: for each asset, the assets that read it.
    pub fn downstream(&self) -> Vec<Vec<AssetId>> {
        let mut out = vec![Vec::new(); self.assets.len()];
        for (i, a) in self.assets.iter().enumerate() {
            for inp in &a.inputs {
                out[inp.upstream].push(i);
            }
        }
        for v in &mut out {
            v.dedup(); // pushed in ascending order, so duplicates are adjacent
        }
        out
    }
}

/// Which partitions a job targets (at most one of its targeting fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobTargeting {
    /// No targeting field: like a command without partition flags.
    None,
    /// `partition = "KEY"` (also `"latest"` and `"DEF:KEY"`).
    Partition(String),
    /// `partition_range = "A...B"` (also `"DEF:A...B"`).
    PartitionRange(String),
    /// `last = N`.
    Last(u32),
    /// `all_partitions = true`.
    AllPartitions,
}

/// When a job runs again after missed ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catchup {
    /// One run, for the newest missed tick.
    Latest,
    /// One run per missed tick, oldest first.
    All,
}

impl Catchup {
    pub fn as_str(self) -> &'static str {
        match self {
            Catchup::Latest => "latest",
            Catchup::All => "all",
        }
    }
}

/// A job's cron schedule.
#[derive(Debug, Clone)]
pub struct JobSchedule {
    /// As written.
    pub expr: String,
    pub cron: croner::Cron,
    pub tz: chrono_tz::Tz,
    pub catchup: Catchup,
}

/// A validated `[jobs.NAME]`: a named selection and targeting, and
/// optionally a schedule that `dg tick` follows.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub span: Span,
    /// Selection syntax; it parses (it may still name unknown assets).
    pub select: String,
    /// Where `select` is written (the string value, quotes included).
    pub select_span: Span,
    pub targeting: JobTargeting,
    pub missing: bool,
    pub stale: bool,
    pub schedule: Option<JobSchedule>,
}
