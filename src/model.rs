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
use crate::formats::{ColumnType, Format};
use crate::interp::Template;
use crate::partitions::{MappingSpec, PartitionsDef};
use crate::secrets::Masker;

/// Index of an asset in [`Defs::assets`].
pub type AssetId = usize;

/// A named partitions definition.
#[derive(Debug, Clone)]
pub struct NamedPartitions {
    pub def: Arc<PartitionsDef>,
}

/// The `type` of a resource that holds values for steps, not an I/O manager.
pub const SETTINGS: &str = "settings";

/// A resource as defined: an I/O manager, or (`type = "settings"`) values
/// for the steps that declare it.
#[derive(Debug, Clone)]
pub struct Resource {
    pub key: String,
    pub type_name: String,
    /// The table without `type`; strings may hold `${env:…}`, resolved at run start.
    pub config: toml::Table,
    /// The format it stores data in, when its type has one.
    pub format: Option<Format>,
    /// Its `path` template (`fs`, `object_store`), checked against each asset it stores.
    pub path: Option<Arc<crate::io::path_template::PathTemplate>>,
    /// `None` for the implicit default `io_manager`.
    pub span: Option<Span>,
    /// `secrets = [...]`: fields whose values are masked everywhere.
    pub secrets: Vec<String>,
}

impl Resource {
    /// A `type = "settings"` resource.
    pub fn is_settings(&self) -> bool {
        self.type_name == SETTINGS
    }
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

/// How the wait before a retry grows (Dagster's `Backoff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// `delay` before every retry.
    Constant,
    /// `delay × n` before retry n.
    Linear,
    /// `delay × (2ⁿ − 1)` before retry n.
    Exponential,
}

/// Random spread of the wait before a retry (Dagster's `Jitter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    None,
    /// `jitter = true` or `"full"`: anywhere between 0 and the computed wait.
    Full,
    /// `"plus_minus"`: the computed wait ± `delay`, never below 0.
    PlusMinus,
}

/// An asset's retry policy: `retry = { max, delay, backoff, jitter }`, or
/// `retries = N` (N retries, exponential from 200 ms, capped at 10 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max + 1` attempts at most).
    pub max: u32,
    pub delay: Duration,
    pub backoff: Backoff,
    pub jitter: Jitter,
    /// The longest wait between two attempts.
    pub cap: Duration,
    /// Whether the asset declares a policy at all (`retry` or `retries`).
    pub declared: bool,
}

impl RetryPolicy {
    /// The longest wait between two attempts of a `retry` table.
    pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

    /// No policy: a failed attempt is final, except that a step exiting 75
    /// (EX_TEMPFAIL) gets one more attempt, like Dagster's `RetryRequested`
    /// (whose default is `max_retries=1`).
    pub const NONE: RetryPolicy = RetryPolicy {
        max: 0,
        delay: Duration::from_millis(200),
        backoff: Backoff::Constant,
        jitter: Jitter::None,
        cap: Duration::from_secs(10),
        declared: false,
    };

    /// `retries = N`.
    pub fn retries(n: u32) -> RetryPolicy {
        RetryPolicy {
            max: n,
            delay: Duration::from_millis(200),
            backoff: Backoff::Exponential,
            jitter: Jitter::None,
            cap: Duration::from_secs(10),
            declared: true,
        }
    }

    /// How many retries a failed attempt may have: the policy's, and at
    /// least one for exit code 75 (EX_TEMPFAIL).
    pub fn max_for(&self, exit_code: Option<i32>) -> u32 {
        if exit_code == Some(EX_TEMPFAIL) {
            self.max.max(1)
        } else {
            self.max
        }
    }

    /// The wait before retry `n` (1-based) without jitter, as Dagster
    /// computes it, capped at [`RetryPolicy::cap`].
    pub fn base_wait(&self, n: u32) -> Duration {
        let factor: u64 = match self.backoff {
            Backoff::Constant => 1,
            Backoff::Linear => u64::from(n),
            Backoff::Exponential => 1u64.checked_shl(n.min(63)).map_or(u64::MAX, |p| p - 1),
        };
        let nanos = self.delay.as_nanos().saturating_mul(u128::from(factor));
        let capped = nanos.min(self.cap.as_nanos());
        Duration::from_nanos(capped as u64)
    }

    /// The wait before retry `n`, with jitter from `unit` (uniform in [0, 1)).
    pub fn wait(&self, n: u32, unit: f64) -> Duration {
        let base = self.base_wait(n);
        let w = match self.jitter {
            Jitter::None => base,
            Jitter::Full => base.mul_f64(unit.clamp(0.0, 1.0)),
            Jitter::PlusMinus => {
                let d = self.delay.as_secs_f64();
                let s = base.as_secs_f64() + (2.0 * unit.clamp(0.0, 1.0) - 1.0) * d;
                Duration::from_secs_f64(s.max(0.0))
            }
        };
        w.min(self.cap)
    }
}

/// The exit code that asks for another attempt (sysexits' EX_TEMPFAIL).
pub const EX_TEMPFAIL: i32 = 75;

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
    /// When a failed attempt is tried again (`retry`, or `retries = N`).
    pub retry: RetryPolicy,
    /// `pool = "NAME"`: the pool (`[pools]` in dg.toml) that bounds how many
    /// of its steps run at once, and where it is written.
    pub pool: Option<(String, Span)>,
    pub timeout: Option<Duration>,
    pub output: bool,
    /// `output_required = false`: the step may leave `$DG_OUTPUT` unwritten.
    pub output_required: bool,
    /// Declared column types (`columns`), applied before the output is stored.
    pub columns: Vec<(String, ColumnType)>,
    pub inputs: Vec<Input>,
    /// `resources = [...]`: settings resources the step gets as `DG_RESOURCE_*`.
    pub resources: Vec<String>,
    /// `config = {…}`: run config defaults (`DG_CONFIG`), overridable with `--config`.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// `config_affects_staleness = true`: a changed config makes `--stale` rerun it.
    pub config_affects_staleness: bool,
    /// `[assets.KEY.checks.NAME]`, in definition order.
    pub checks: Vec<Check>,
    /// `freshness`: the newest materialization must be younger than this.
    pub freshness: Option<Duration>,
    /// `backfill`: a run over several partitions groups consecutive ones
    /// into range steps.
    pub backfill: Option<Backfill>,
    /// `[assets.KEY.executor]`: Slurm options for this asset's steps.
    pub executor: Option<SlurmOptions>,
    /// `engine = "duckdb" | "sqlite"` of a `sql` asset, when it says one.
    pub sql_engine: Option<SqlEngine>,
}

/// The engine a `sql` asset's query runs in (its dialect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlEngine {
    /// The embedded SQLite engine, or a `sqlite` database.
    Sqlite,
    /// The embedded DuckDB engine, or a `duckdb` database.
    Duckdb,
}

impl SqlEngine {
    /// What `engine = "…"` may say.
    pub const NAMES: &'static [&'static str] = &["duckdb", "sqlite"];

    pub fn parse(s: &str) -> Option<SqlEngine> {
        match s {
            "sqlite" => Some(SqlEngine::Sqlite),
            "duckdb" => Some(SqlEngine::Duckdb),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SqlEngine::Sqlite => "sqlite",
            SqlEngine::Duckdb => "duckdb",
        }
    }
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
}

/// `backfill = { max_partitions_per_step = N }` or `backfill = "single_step"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backfill {
    /// At most this many partitions per step; `None` for `"single_step"`.
    pub max_per_step: Option<u32>,
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

/// One `--config` override: `ASSET.FIELD=VALUE`, or `FIELD=VALUE` for every
/// selected asset that has the field.
#[derive(Debug, Clone)]
pub struct ConfigOverride {
    /// As given, for messages.
    pub given: String,
    pub asset: Option<String>,
    pub field: String,
    pub value: serde_json::Value,
}

impl Defs {
    /// Applies `--config` overrides to the run config of the `selected`
    /// assets. Every problem is returned: an unknown asset or field, an
    /// asset that is not selected, a value of another type than the default.
    pub fn apply_config(
        &mut self,
        selected: &[AssetId],
        overrides: &[ConfigOverride],
    ) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        for o in overrides {
            let targets: Vec<AssetId> = match &o.asset {
                Some(key) => match self.by_key.get(key) {
                    Some(&id) if selected.contains(&id) => vec![id],
                    Some(_) => {
                        errors.push(format!(
                            "`--config {}`: asset `{key}` is not selected",
                            o.given
                        ));
                        continue;
                    }
                    None => {
                        errors.push(format!("`--config {}`: unknown asset `{key}`", o.given));
                        continue;
                    }
                },
                None => selected
                    .iter()
                    .copied()
                    .filter(|&i| self.assets[i].config.contains_key(&o.field))
                    .collect(),
            };
            if targets.is_empty() {
                let mut with: Vec<String> = selected
                    .iter()
                    .flat_map(|&i| {
                        let a = &self.assets[i];
                        a.config.keys().map(move |f| format!("`{}.{f}`", a.key))
                    })
                    .collect();
                with.truncate(12);
                errors.push(format!(
                    "`--config {}`: no selected asset has a config field `{}` ({})",
                    o.given,
                    o.field,
                    fields_or(&with, "fields", "no selected asset has a `config` table")
                ));
                continue;
            }
            for id in targets {
                let a = &mut self.assets[id];
                let Some(default) = a.config.get(&o.field) else {
                    let fields: Vec<String> = a.config.keys().map(|f| format!("`{f}`")).collect();
                    errors.push(format!(
                        "`--config {}`: asset `{}` has no config field `{}` ({})",
                        o.given,
                        a.key,
                        o.field,
                        fields_or(&fields, "its fields", "it has no `config` table")
                    ));
                    continue;
                };
                let value = match (default, &o.value) {
                    (serde_json::Value::Number(d), serde_json::Value::Number(v))
                        if d.is_f64() && !v.is_f64() =>
                    {
                        serde_json::json!(v.as_f64().unwrap_or_default())
                    }
                    (d, v) if json_kind(d) == json_kind(v) => v.clone(),
                    (d, v) => {
                        errors.push(format!(
                            "`--config {}`: config field `{}` of asset `{}` is {}, not {}",
                            o.given,
                            o.field,
                            a.key,
                            json_kind(d),
                            json_kind(v)
                        ));
                        continue;
                    }
                };
                a.config.insert(o.field.clone(), value);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// How a `--config` error lists the config `fields` there are: `label: …`,
/// or `none` when there are none.
fn fields_or(fields: &[String], label: &str, none: &str) -> String {
    if fields.is_empty() {
        none.to_string()
    } else {
        format!("{label}: {}", fields.join(", "))
    }
}

/// What kind of value a config field holds, for messages.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "empty",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(n) if n.is_f64() => "a float",
        serde_json::Value::Number(_) => "an integer",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "a table",
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
    /// Selection syntax; it parses (it may still name unknown assets).
    pub select: String,
    /// Where `select` is written (the string value, quotes included).
    pub select_span: Span,
    pub targeting: JobTargeting,
    pub missing: bool,
    pub stale: bool,
    pub schedule: Option<JobSchedule>,
}

/// What a project's definitions hide, with `${env:…}` resolved by
/// `lookup`: the values of every declared secret, and every URL with a
/// password in any resource's fields. Values that do not resolve (unset
/// variables) are left out: they cannot appear anywhere.
pub fn masker_for(defs: &Defs, lookup: &dyn Fn(&str) -> Option<String>) -> Masker {
    let mut m = Masker::default();
    fn walk(v: &toml::Value, m: &mut Masker, lookup: &dyn Fn(&str) -> Option<String>) {
        match v {
            toml::Value::String(s) => {
                if let Ok(t) = crate::interp::Template::parse(s)
                    && let Ok(r) = t.resolve(lookup)
                {
                    m.add_url(&r);
                }
            }
            toml::Value::Array(a) => a.iter().for_each(|x| walk(x, m, lookup)),
            toml::Value::Table(t) => t.values().for_each(|x| walk(x, m, lookup)),
            _ => {}
        }
    }
    for r in defs.resources.values() {
        for (k, v) in &r.config {
            if r.secrets.iter().any(|s| s == k) {
                let raw = match v {
                    toml::Value::String(s) => crate::interp::Template::parse(s)
                        .ok()
                        .and_then(|t| t.resolve(lookup).ok()),
                    other => Some(other.to_string()),
                };
                if let Some(val) = raw {
                    m.add_secret(&val);
                    m.add_url(&val);
                }
            } else {
                walk(v, &mut m, lookup);
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(delay_ms: u64, backoff: Backoff, jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            max: 5,
            delay: Duration::from_millis(delay_ms),
            backoff,
            jitter,
            cap: RetryPolicy::MAX_WAIT,
            declared: true,
        }
    }

    #[test]
    fn waits_follow_dagsters_calculate_delay() {
        // dagster._core.definitions.policy.calculate_delay, attempt_num = n.
        let ms = |p: RetryPolicy, n| p.base_wait(n).as_millis();
        let c = policy(100, Backoff::Constant, Jitter::None);
        assert_eq!([ms(c, 1), ms(c, 2), ms(c, 5)], [100, 100, 100]);
        let l = policy(100, Backoff::Linear, Jitter::None);
        assert_eq!([ms(l, 1), ms(l, 2), ms(l, 5)], [100, 200, 500]);
        let e = policy(100, Backoff::Exponential, Jitter::None);
        assert_eq!(
            [ms(e, 1), ms(e, 2), ms(e, 3), ms(e, 4)],
            [100, 300, 700, 1500]
        );
        // Huge exponents saturate at the cap instead of overflowing.
        assert_eq!(e.base_wait(100), RetryPolicy::MAX_WAIT);
        assert_eq!(e.wait(u32::MAX, 0.5), RetryPolicy::MAX_WAIT);
    }

    #[test]
    fn jitter_stays_in_its_range() {
        let f = policy(100, Backoff::Linear, Jitter::Full);
        assert_eq!(f.wait(3, 0.0), Duration::ZERO);
        assert_eq!(f.wait(3, 0.5), Duration::from_millis(150));
        let pm = policy(100, Backoff::Linear, Jitter::PlusMinus);
        // 300 ms ± 100 ms.
        assert_eq!(pm.wait(3, 0.0), Duration::from_millis(200));
        assert_eq!(pm.wait(3, 1.0), Duration::from_millis(400));
        // Never below zero.
        assert_eq!(
            policy(100, Backoff::Constant, Jitter::PlusMinus).wait(1, 0.0),
            Duration::ZERO
        );
    }

    #[test]
    fn retries_n_and_exit_75() {
        let r = RetryPolicy::retries(3);
        assert_eq!(r.max_for(Some(1)), 3);
        assert_eq!(r.max_for(Some(EX_TEMPFAIL)), 3);
        // 200 ms, 600 ms, 1.4 s, … capped at 10 s.
        assert_eq!(r.base_wait(1), Duration::from_millis(200));
        assert_eq!(r.base_wait(3), Duration::from_millis(1400));
        assert_eq!(r.base_wait(10), Duration::from_secs(10));
        // No policy: only exit 75 gets (one) retry.
        assert_eq!(RetryPolicy::NONE.max_for(Some(1)), 0);
        assert_eq!(RetryPolicy::NONE.max_for(None), 0);
        assert_eq!(RetryPolicy::NONE.max_for(Some(EX_TEMPFAIL)), 1);
        // A policy of 0 retries still lets exit 75 retry once.
        assert_eq!(RetryPolicy::retries(0).max_for(Some(EX_TEMPFAIL)), 1);
    }
}

/// Which executor runs a run's steps (`[executor] type`, `--executor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExecutorKind {
    /// Worker threads of the `dg` process.
    #[default]
    Local,
    /// `sbatch` jobs running `dg step`.
    Slurm,
}

/// Options of the Slurm executor (`[executor]` in dg.toml, overridden per
/// asset by `[assets.KEY.executor]`). Each is passed to `sbatch` only when
/// set, so the cluster's defaults apply otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlurmOptions {
    /// `--partition`
    pub partition: Option<String>,
    /// `--account`
    pub account: Option<String>,
    /// `--qos`
    pub qos: Option<String>,
    /// `--time` (Slurm's syntax: `MM`, `HH:MM:SS`, `D-HH:MM`, …)
    pub time: Option<String>,
    /// `--mem` (`4G`, `500M`, …)
    pub mem: Option<String>,
    /// `--cpus-per-task`
    pub cpus_per_task: Option<u32>,
    /// At most this many tasks of one job array run at once (`--array=0-N%M`).
    pub max_array: Option<u32>,
    /// More `sbatch` arguments, as given.
    pub extra_args: Option<Vec<String>>,
}

impl SlurmOptions {
    /// These options, with every field that `over` sets taken from it.
    pub fn merged(&self, over: &SlurmOptions) -> SlurmOptions {
        SlurmOptions {
            partition: over.partition.clone().or_else(|| self.partition.clone()),
            account: over.account.clone().or_else(|| self.account.clone()),
            qos: over.qos.clone().or_else(|| self.qos.clone()),
            time: over.time.clone().or_else(|| self.time.clone()),
            mem: over.mem.clone().or_else(|| self.mem.clone()),
            cpus_per_task: over.cpus_per_task.or(self.cpus_per_task),
            max_array: over.max_array.or(self.max_array),
            extra_args: over.extra_args.clone().or_else(|| self.extra_args.clone()),
        }
    }
}
