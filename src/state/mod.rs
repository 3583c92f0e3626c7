//! Stage 7: state — run history, materializations, dynamic partitions and
//! partition leases.
//!
//! The store sits behind [`StateStore`], so a Postgres store can stand in for
//! the embedded SQLite one. Writes from a run are batched by a
//! [`Recorder`] thread, so recording costs a channel send per step.
//!
//! Staleness is provenance-based: each materialization records its asset's
//! `code_version` and a fingerprint of exactly which upstream materializations
//! it read (upstream asset, partition and the run that produced it). A
//! partition is stale when its code_version changed, or when the upstream
//! materializations it would read now differ from the ones it read — because
//! one was materialized again since, or because its dependencies changed.
//! The data version of a materialization is a content hash of the output as
//! the step wrote it; it is recorded for inspection and lineage.

pub mod incremental;
pub mod postgres;
mod schema;
pub mod sqlite;

use std::collections::HashSet;
use std::sync::mpsc;

use serde::Serialize;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Success,
    Failure,
    Canceled,
    /// The process died without finishing the run (found later).
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failure => "failure",
            RunStatus::Canceled => "canceled",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> RunStatus {
        match s {
            "success" => RunStatus::Success,
            "failure" => RunStatus::Failure,
            "canceled" => RunStatus::Canceled,
            "interrupted" => RunStatus::Interrupted,
            _ => RunStatus::Running,
        }
    }
}

/// One run.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub status: RunStatus,
    /// The command's `--select`.
    pub selection: String,
    /// The partition arguments, as given.
    pub partitions: String,
    pub dg_version: String,
    pub pid: u32,
    pub host: String,
    pub steps: Option<i64>,
    /// `--profile` / `DG_PROFILE`, when one was in force.
    pub profile: Option<String>,
    /// The run config of the planned assets that have one
    /// (`{"asset": {"field": value}}`), when any has.
    pub config: Option<serde_json::Value>,
}

/// One attempt of one step.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRecord {
    pub run_id: String,
    pub step_id: String,
    pub asset: String,
    pub partition: Option<String>,
    pub attempt: u32,
    /// `success`, `failed` or `skipped`.
    pub status: String,
    pub started_at: String,
    pub duration_ms: i64,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub log_path: Option<String>,
}

/// The latest materialization of a partition: (run id, data version).
pub type Version = (String, Option<String>);

/// A [`Version`] and when it was materialized (RFC 3339, UTC).
pub type Stamped = (String, Option<String>, String);

/// One upstream materialization read by a step.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq, Hash)]
pub struct InputRead {
    pub input: String,
    pub asset: String,
    pub partition: Option<String>,
    /// The run that produced what was read (`None`: not recorded by dg).
    pub run_id: Option<String>,
    pub data_version: Option<String>,
}

/// A successful materialization.
#[derive(Clone, Debug, Serialize)]
pub struct Materialization {
    pub asset: String,
    pub partition: Option<String>,
    pub run_id: String,
    pub created_at: String,
    pub code_version: Option<String>,
    pub data_version: String,
    pub inputs: Vec<InputRead>,
    /// Fingerprint of `inputs` (see `input_fingerprint`).
    pub input_fp: String,
    pub metadata: serde_json::Value,
}

/// Now, as the stores record times: RFC 3339, UTC, milliseconds.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The columns of `runs` a [`RunRecord`] is read from ([`run_from_row`]),
/// in order.
pub(crate) const RUN_COLUMNS: &str = schema::run_columns!();

/// The columns of `step_attempts` an [`AttemptRecord`] is read from
/// ([`attempt_from_row`]), in order.
pub(crate) const ATTEMPT_COLUMNS: &str = "run_id, step_id, asset, partition, attempt, status, started_at, duration_ms, exit_code, error, log_path";

/// The columns of `check_results` a [`CheckRecord`] is read from
/// ([`check_from_row`]), in order.
pub(crate) const CHECK_COLUMNS: &str = schema::check_columns!();

/// A row of a store's query (SQLite's or Postgres's), read by column.
pub(crate) trait StoredRow {
    fn text(&self, i: usize) -> anyhow::Result<String>;
    fn opt_text(&self, i: usize) -> anyhow::Result<Option<String>>;
    fn int(&self, i: usize) -> anyhow::Result<i64>;
    fn opt_int(&self, i: usize) -> anyhow::Result<Option<i64>>;
    /// A 32-bit integer column (`exit_code`), which Postgres reads only as one.
    fn opt_int32(&self, i: usize) -> anyhow::Result<Option<i32>>;
    fn flag(&self, i: usize) -> anyhow::Result<bool>;
    /// A `u32` that dg stored as an integer (a process id, an attempt
    /// number), checked ([`narrow`]); `column` names it in the error.
    fn u32(&self, i: usize, column: &str) -> anyhow::Result<u32> {
        narrow(self.int(i)?, column)
    }
}

/// [`StoredRow`] for a driver's row type, whose method `$get` reads a
/// column as any type the driver converts to.
macro_rules! stored_row {
    ($row:ty, $get:ident) => {
        impl $crate::state::StoredRow for $row {
            fn text(&self, i: usize) -> anyhow::Result<String> {
                Ok(self.$get(i)?)
            }
            fn opt_text(&self, i: usize) -> anyhow::Result<Option<String>> {
                Ok(self.$get(i)?)
            }
            fn int(&self, i: usize) -> anyhow::Result<i64> {
                Ok(self.$get(i)?)
            }
            fn opt_int(&self, i: usize) -> anyhow::Result<Option<i64>> {
                Ok(self.$get(i)?)
            }
            fn opt_int32(&self, i: usize) -> anyhow::Result<Option<i32>> {
                Ok(self.$get(i)?)
            }
            fn flag(&self, i: usize) -> anyhow::Result<bool> {
                Ok(self.$get(i)?)
            }
        }
    };
}
use stored_row;

/// A stored integer that dg wrote from a `u32` (a process id, an attempt
/// number, a pool slot), given back as one. A value out of range is a
/// corrupt row: an error naming `column` (`runs.pid`) and the value, never
/// a number that wraps.
pub(crate) fn narrow(value: i64, column: &str) -> anyhow::Result<u32> {
    u32::try_from(value).map_err(|_| {
        anyhow::anyhow!(
            "the history's `{column}` holds {value}, which is not a valid value \
             (0 to {}): the row is corrupt",
            u32::MAX
        )
    })
}

/// A run from a row of [`RUN_COLUMNS`].
pub(crate) fn run_from_row(r: &impl StoredRow) -> anyhow::Result<RunRecord> {
    Ok(RunRecord {
        id: r.text(0)?,
        started_at: r.text(1)?,
        ended_at: r.opt_text(2)?,
        status: RunStatus::parse(&r.text(3)?),
        selection: r.text(4)?,
        partitions: r.text(5)?,
        dg_version: r.text(6)?,
        pid: r.u32(7, "runs.pid")?,
        host: r.text(8)?,
        steps: r.opt_int(9)?,
        profile: r.opt_text(10)?,
        config: r
            .opt_text(11)?
            .map(|c| serde_json::from_str(&c))
            .transpose()
            .map_err(|e| {
                anyhow::anyhow!("the history's `runs.config` is not JSON ({e}): the row is corrupt")
            })?,
    })
}

/// An attempt from a row of [`ATTEMPT_COLUMNS`].
pub(crate) fn attempt_from_row(r: &impl StoredRow) -> anyhow::Result<AttemptRecord> {
    Ok(AttemptRecord {
        run_id: r.text(0)?,
        step_id: r.text(1)?,
        asset: r.text(2)?,
        partition: r.opt_text(3)?,
        attempt: r.u32(4, "step_attempts.attempt")?,
        status: r.text(5)?,
        started_at: r.text(6)?,
        duration_ms: r.int(7)?,
        exit_code: r.opt_int32(8)?,
        error: r.opt_text(9)?,
        log_path: r.opt_text(10)?,
    })
}

/// A check's result from a row of [`CHECK_COLUMNS`].
pub(crate) fn check_from_row(r: &impl StoredRow) -> anyhow::Result<CheckRecord> {
    let partition = r.text(2)?;
    Ok(CheckRecord {
        run_id: r.text(0)?,
        asset: r.text(1)?,
        partition: (!partition.is_empty()).then_some(partition),
        check: r.text(3)?,
        passed: r.flag(4)?,
        severity: r.text(5)?,
        message: r.opt_text(6)?,
        metadata: serde_json::from_str(&r.text(7)?).unwrap_or(serde_json::Value::Null),
        created_at: r.text(8)?,
        duration_ms: r.int(9)?,
    })
}

/// A materialization from a row of [`schema::MATERIALIZATIONS`].
pub(crate) fn materialization_from_row(r: &impl StoredRow) -> anyhow::Result<Materialization> {
    let partition = r.text(1)?;
    Ok(Materialization {
        asset: r.text(0)?,
        partition: (!partition.is_empty()).then_some(partition),
        run_id: r.text(2)?,
        created_at: r.text(3)?,
        code_version: r.opt_text(4)?,
        data_version: r.text(5)?,
        inputs: serde_json::from_str::<Vec<InputRead>>(&r.text(6)?).unwrap_or_default(),
        input_fp: r.text(7)?,
        metadata: serde_json::from_str(&r.text(8)?).unwrap_or_default(),
    })
}

/// What `dg step` recorded, from a row of [`schema::STEP_RESULTS`].
pub(crate) fn step_result_from_row(r: &impl StoredRow) -> anyhow::Result<StepResult> {
    Ok(StepResult {
        run_id: r.text(0)?,
        step_id: r.text(1)?,
        attempt: r.u32(2, "step_results.attempt")?,
        status: r.text(3)?,
        attempts: r.u32(4, "step_results.attempts")?,
        error: r.opt_text(5)?,
        blocked_by: r.opt_text(6)?,
        log_path: r.opt_text(7)?,
        host: r.text(8)?,
        finished_at: r.text(9)?,
    })
}

/// The result of one asset check on one partition in one run.
#[derive(Clone, Debug, Serialize)]
pub struct CheckRecord {
    pub run_id: String,
    pub asset: String,
    /// `None` when the asset is unpartitioned.
    pub partition: Option<String>,
    pub check: String,
    pub passed: bool,
    /// `error` or `warn`.
    pub severity: String,
    pub message: Option<String>,
    /// What the check appended to `DG_MESSAGES`.
    pub metadata: serde_json::Value,
    /// When it ended (RFC 3339, UTC).
    pub created_at: String,
    pub duration_ms: i64,
}

/// What is recorded from a run, in order.
#[derive(Clone, Debug)]
pub enum Record {
    Attempt(AttemptRecord),
    Materialization(Materialization),
    /// A step that ended without a materialization (failed).
    Failed {
        asset: String,
        partition: Option<String>,
        run_id: String,
    },
    /// The result of an asset check.
    Check(CheckRecord),
    /// How a step run by `dg step` ended, so that the executor that
    /// submitted it learns its outcome from the store.
    StepResult(StepResult),
    /// The run gives up its lease on a partition. Written in the same
    /// transaction as the step's outcome, so a waiting run never sees the
    /// lease free before the outcome is recorded.
    Release {
        asset: String,
        partition: String,
        run_id: String,
    },
}

/// How a step run by `dg step` ended (one row per run and step; a later
/// attempt replaces it).
#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub run_id: String,
    pub step_id: String,
    /// The first attempt this `dg step` ran.
    pub attempt: u32,
    /// `success`, `failed` or `skipped`.
    pub status: String,
    /// The number of the last attempt it ran.
    pub attempts: u32,
    pub error: Option<String>,
    /// A blocking error-check that failed.
    pub blocked_by: Option<String>,
    pub log_path: Option<String>,
    /// Where it ran.
    pub host: String,
    pub finished_at: String,
}

/// The latest state of one partition. Strings repeated across partitions
/// (run ids, code versions) are shared; hashes are kept as numbers.
#[derive(Clone, Debug)]
pub struct PartitionState {
    /// Whether the last attempt failed.
    pub failed: bool,
    /// The run of the latest successful materialization, if any.
    pub run_id: Option<std::sync::Arc<str>>,
    pub code_version: Option<std::sync::Arc<str>>,
    /// See [`file_version`]; `None` when not recorded as a 64-bit hash.
    pub data_version: Option<u64>,
    /// See [`input_fingerprint`].
    pub input_fp: Option<u64>,
}

/// The data version recorded for a partition whose step wrote no output
/// (`output_required = false`): it is materialized, but nothing is stored,
/// and the steps that read it are skipped. (A content hash of 0 does not
/// occur in practice.)
pub const NO_OUTPUT: u64 = 0;

/// A 64-bit hash written as 16 hex digits, back to a number.
pub fn parse_hash(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

/// A 64-bit hash as 16 hex digits.
pub fn show_hash(h: u64) -> String {
    format!("{h:016x}")
}

/// Partition states by partition key (`""` when unpartitioned).
/// Keyed by partition key; keys up to 24 bytes (every time key) live inline,
/// so reading a million partitions allocates no million strings.
pub type PartitionStates = rustc_hash::FxHashMap<compact_str::CompactString, PartitionState>;

impl PartitionState {
    /// Whether there is a successful materialization (even if a later attempt failed).
    pub fn materialized(&self) -> bool {
        self.run_id.is_some()
    }
}

/// Who holds a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub run_id: String,
    pub pid: u32,
    pub host: String,
}

/// The history and coordination store.
pub trait StateStore: Send + Sync {
    fn begin_run(&self, run: &RunRecord) -> anyhow::Result<()>;
    fn end_run(
        &self,
        id: &str,
        status: RunStatus,
        ended_at: &str,
        steps: i64,
    ) -> anyhow::Result<()>;
    /// Writes a batch in one transaction.
    fn record(&self, batch: &[Record]) -> anyhow::Result<()>;
    /// Latest state of every recorded partition of `asset` (key `""` when
    /// unpartitioned). `expected`, how many there may be (0 when unknown),
    /// sizes the map up front: growing a map of 100,000 partitions rehashes
    /// it many times over.
    fn partitions(&self, asset: &str, expected: usize) -> anyhow::Result<PartitionStates>;
    /// The latest successful materialization of each of `keys` of `asset`:
    /// (run id, data version, when it was materialized, RFC 3339 UTC).
    fn latest_of(&self, asset: &str, keys: &[String]) -> anyhow::Result<Vec<Option<Stamped>>>;
    /// Partitions of `asset` with a successful materialization.
    fn materialized(&self, asset: &str) -> anyhow::Result<HashSet<String>>;
    fn runs(&self, limit: usize) -> anyhow::Result<Vec<RunRecord>>;
    fn run(&self, id: &str) -> anyhow::Result<Option<RunRecord>>;
    fn attempts(&self, run_id: &str) -> anyhow::Result<Vec<AttemptRecord>>;
    fn materializations(&self, run_id: &str) -> anyhow::Result<Vec<Materialization>>;
    fn dynamic_keys(&self, name: &str) -> anyhow::Result<Vec<String>>;
    /// Adds keys (in order, skipping ones already there); returns how many were new.
    fn add_dynamic_keys(&self, name: &str, keys: &[String]) -> anyhow::Result<usize>;
    /// Removes keys; returns how many were there.
    fn remove_dynamic_keys(&self, name: &str, keys: &[String]) -> anyhow::Result<usize>;
    /// Takes the lease on a partition, or says who holds it. A lease whose
    /// owner process is gone (on this host) or whose expiry passed without a
    /// heartbeat (any host) is reclaimed. A lease taken expires after
    /// `lease_ttl_ms` unless [`StateStore::heartbeat`] extends it.
    fn try_lease(&self, asset: &str, partition: &str, me: &Lease) -> anyhow::Result<Option<Lease>>;
    /// Extends the expiry of every lease `me` holds; returns how many.
    fn heartbeat(&self, me: &Lease) -> anyhow::Result<usize>;
    /// Records the specs of a run's steps (`(step id, spec JSON)`), so that
    /// `dg step RUN_ID STEP_ID` can run one on any machine sharing the store.
    fn save_step_specs(&self, run_id: &str, specs: &[(String, String)]) -> anyhow::Result<()>;
    /// The spec JSON of one step of a run.
    fn step_spec(&self, run_id: &str, step_id: &str) -> anyhow::Result<Option<String>>;
    /// What `dg step` recorded for the steps of a run.
    fn step_results(&self, run_id: &str) -> anyhow::Result<Vec<StepResult>>;
    fn release(&self, asset: &str, partition: &str, run_id: &str) -> anyhow::Result<()>;
    /// The run and time (RFC 3339, UTC) of a partition's latest successful
    /// materialization.
    fn latest_materialization(
        &self,
        asset: &str,
        partition: &str,
    ) -> anyhow::Result<Option<(String, String)>>;
    /// Takes a free slot (`0..limit`) of `pool` for one step, or `None` when
    /// `limit` live holders, from any run, have one. Slots held by a process
    /// of this host that no longer exists are reclaimed.
    fn try_pool_slot(
        &self,
        pool: &str,
        limit: u32,
        me: &Lease,
        step_id: &str,
    ) -> anyhow::Result<Option<u32>>;
    fn release_pool_slot(&self, pool: &str, slot: u32, run_id: &str) -> anyhow::Result<()>;
    /// Gives back every pool slot a run holds.
    fn release_pool_slots(&self, run_id: &str) -> anyhow::Result<()>;
    /// The latest result of every check of `asset`, per partition and
    /// check (partition key order is not kept).
    fn latest_checks(&self, asset: &str) -> anyhow::Result<Vec<CheckRecord>>;
    /// The check results of one run, in the order they were recorded.
    fn run_checks(&self, run_id: &str) -> anyhow::Result<Vec<CheckRecord>>;
    /// When `asset` was last materialized (RFC 3339, UTC), any partition.
    fn last_materialized_at(&self, asset: &str) -> anyhow::Result<Option<String>>;
    /// Marks runs whose process died as interrupted and drops their leases.
    fn reap_dead_runs(&self) -> anyhow::Result<Vec<String>>;
    /// The newest recorded tick (Unix seconds) of every job that has one.
    fn last_ticks(&self) -> anyhow::Result<std::collections::HashMap<String, i64>>;
    /// Claims one tick of a job, in its own transaction, before the job runs:
    /// `true` when this process got it, `false` when it was already recorded
    /// (by another `dg tick`, maybe running at the same time).
    fn claim_tick(&self, claim: &TickClaim) -> anyhow::Result<bool>;
    /// Records how a claimed tick ended (`success`, `failure`, `error`) and its run.
    fn finish_tick(
        &self,
        job: &str,
        tick: i64,
        status: &str,
        run_id: Option<&str>,
    ) -> anyhow::Result<()>;
}

/// One tick of a job, as `dg tick` claims it.
#[derive(Clone, Debug)]
pub struct TickClaim {
    pub job: String,
    /// The tick's instant, Unix seconds.
    pub tick: i64,
    /// The same instant, RFC 3339 (for people reading the table).
    pub tick_time: String,
    pub pid: u32,
    pub host: String,
}

/// The slot a new holder of a pool takes, given the live holders' slots:
/// the lowest free one below `limit`, or `None` when `limit` are held (slots
/// at or above `limit`, from a time the limit was higher, count too).
pub fn free_slot(held: &[u32], limit: u32) -> Option<u32> {
    if held.len() >= limit as usize {
        return None;
    }
    (0..limit).find(|s| !held.contains(s))
}

/// Whether `holder`'s lease (expiring at `expires_at`, Unix ms; `None`:
/// never) still keeps `me` out at `now_ms`. A run never waits for itself;
/// a holder on this host whose process is gone loses it at once; any other
/// holder keeps it until it expires.
pub fn lease_holds(holder: &Lease, expires_at: Option<i64>, me: &Lease, now_ms: i64) -> bool {
    if holder.run_id == me.run_id {
        return false;
    }
    if holder.host == me.host && !pid_alive(holder.pid) {
        return false;
    }
    expires_at.is_none_or(|e| e > now_ms)
}

/// How long a lease lasts without a heartbeat, in milliseconds:
/// `DG_LEASE_TTL` (a duration such as `30s`), else 60 s. A run beats every
/// third of it, so a holder that stops (a dead node) is reclaimed after at
/// most this long.
pub fn lease_ttl_ms() -> i64 {
    static TTL: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *TTL.get_or_init(|| {
        std::env::var("DG_LEASE_TTL")
            .ok()
            .and_then(|v| humantime::parse_duration(v.trim()).ok())
            .map_or(60_000, |d| (d.as_millis() as i64).max(100))
    })
}

/// The wall clock in Unix milliseconds.
pub fn unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Whether process `pid` on this host is alive.
pub fn pid_alive(pid: u32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) => true,
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// This machine's name, for leases: `DG_HOST` when set (machines whose
/// host names are not unique, such as containers), else the host name.
pub fn hostname() -> String {
    if let Ok(h) = std::env::var("DG_HOST")
        && !h.trim().is_empty()
    {
        return h.trim().to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Fingerprint of the upstream materializations a step read, in input and
/// partition order, hashed as they stream in (no allocation per entry).
pub struct Fingerprint(twox_hash::XxHash3_64);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(twox_hash::XxHash3_64::with_seed(0))
    }
}

impl Fingerprint {
    pub fn add(&mut self, input: &str, asset: &str, partition: &str, run_id: &str) {
        use std::hash::Hasher;
        for (i, part) in [input, asset, partition, run_id].into_iter().enumerate() {
            if i > 0 {
                self.0.write(&[0x1f]);
            }
            self.0.write(part.as_bytes());
        }
        self.0.write(&[0x1e]);
    }

    pub fn finish_u64(&self) -> u64 {
        use std::hash::Hasher;
        self.0.finish()
    }

    pub fn finish(&self) -> String {
        show_hash(self.finish_u64())
    }
}

/// Fingerprint of the upstream materializations a step read.
pub fn input_fingerprint(inputs: &[InputRead]) -> String {
    input_fingerprint_with(inputs, None)
}

/// [`input_fingerprint`], with the run config of an asset whose config
/// affects staleness (`config_affects_staleness = true`): a changed config
/// then changes the fingerprint, so `--stale` runs the partition again.
pub fn input_fingerprint_with(inputs: &[InputRead], config: Option<&str>) -> String {
    let mut f = Fingerprint::default();
    for i in inputs {
        f.add(
            &i.input,
            &i.asset,
            i.partition.as_deref().unwrap_or(""),
            i.run_id.as_deref().unwrap_or(""),
        );
    }
    if let Some(c) = config {
        f.add(CONFIG_INPUT, c, "", "");
    }
    f.finish()
}

/// The pseudo-input a run config is fingerprinted as (no input name holds `/`).
pub const CONFIG_INPUT: &str = "dg/config";

/// A run config as `DG_CONFIG` holds it and as it is fingerprinted.
pub fn config_text(config: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::to_string(config).unwrap_or_else(|_| "{}".into())
}

/// Content hash of a file, as the data version of an output.
pub fn file_version(path: &std::path::Path) -> std::io::Result<String> {
    use std::hash::Hasher;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = twox_hash::XxHash3_64::with_seed(0);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
    }
    Ok(format!("{:016x}", h.finish()))
}

/// Opens the project's store: `[state] url` (`sqlite:PATH`, or
/// `postgres://…` / `postgresql://…`, see [`postgres`]), else `<state>/state.db`.
pub fn open(project: &crate::project::Project) -> anyhow::Result<Box<dyn StateStore>> {
    let url = match &project.state_url {
        Some(t) => Some(
            t.resolve_env()
                .map_err(|e| anyhow::anyhow!("[state] url: {e}"))?,
        ),
        None => None,
    };
    let path = match url.as_deref() {
        None => project.state_dir.join("state.db"),
        Some(u) if u.starts_with("sqlite:") => project
            .root
            .join(u.trim_start_matches("sqlite:").trim_start_matches("//")),
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            return Ok(Box::new(postgres::PostgresStore::open(u)?));
        }
        Some(u) => anyhow::bail!(
            "unsupported `[state] url` `{}`: use `sqlite:PATH` or `postgres://…`",
            postgres::mask_url(u)
        ),
    };
    Ok(Box::new(sqlite::SqliteStore::open(&path)?))
}

/// Dynamic partition keys from the store, for every dynamic definition.
pub fn dynamic_keys(
    defs: &crate::model::Defs,
    store: &dyn StateStore,
    cx: &mut crate::partitions::KeyCtx,
) -> anyhow::Result<()> {
    let mut names: HashSet<String> = HashSet::new();
    let mut visit = |d: &crate::partitions::PartitionsDef| match d {
        crate::partitions::PartitionsDef::Dynamic { name } => {
            names.insert(name.clone());
        }
        crate::partitions::PartitionsDef::Multi(m) => {
            for (_, dd) in &m.dims {
                if let crate::partitions::PartitionsDef::Dynamic { name } = &**dd {
                    names.insert(name.clone());
                }
            }
        }
        _ => {}
    };
    for p in defs.partitions.values() {
        visit(&p.def);
    }
    for a in &defs.assets {
        if let Some(p) = &a.partitions {
            visit(&p.def);
        }
    }
    for n in names {
        let keys = store.dynamic_keys(&n)?;
        cx.dynamic
            .insert(n, crate::partitions::StaticPartitions::new(keys));
    }
    Ok(())
}

/// Writes records on a background thread, a transaction per batch.
pub struct Recorder {
    tx: Option<mpsc::Sender<Vec<Record>>>,
    handle: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Recorder {
    pub fn start(store: std::sync::Arc<dyn StateStore>) -> Recorder {
        let (tx, rx) = mpsc::channel::<Vec<Record>>();
        let handle = std::thread::Builder::new()
            .name("dg-recorder".into())
            .spawn(move || {
                let mut errors = Vec::new();
                while let Ok(first) = rx.recv() {
                    let mut batch = first;
                    while let Ok(more) = rx.try_recv() {
                        batch.extend(more);
                    }
                    // Once more after a failure: a dropped database
                    // connection is replaced by the next call. A batch is
                    // one transaction, so a failed one wrote nothing.
                    if let Err(e) = store.record(&batch) {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        if store.record(&batch).is_err() {
                            errors.push(format!("{e:#}"));
                        }
                    }
                }
                errors
            })
            .expect("spawn recorder thread");
        Recorder {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// Queues one step's records; they are written in one transaction.
    pub fn send(&self, records: Vec<Record>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(records);
        }
    }

    /// Flushes everything and returns write errors, if any.
    pub fn finish(mut self) -> Vec<String> {
        self.tx.take();
        self.handle
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

/// What the stores' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Lease, StateStore};

    /// A lease of run `run_id` held by this process on `host`.
    pub(crate) fn lease(run_id: &str, host: &str) -> Lease {
        Lease {
            run_id: run_id.into(),
            pid: std::process::id(),
            host: host.into(),
        }
    }

    /// Rows whose `u32` columns (process ids, attempt numbers, a pool
    /// slot) hold values out of range, and a run whose config is not JSON,
    /// as a corrupt database would; the running run is on this machine, so
    /// that the reaper reads it.
    pub(crate) fn corrupt_rows() -> String {
        let host = super::hostname();
        format!(
            "INSERT INTO runs (id, started_at, status, selection, partitions, dg_version, pid, host)
               VALUES ('r', 't', 'running', '*', '', '0', 4294967296, '{host}');
             INSERT INTO runs (id, started_at, status, selection, partitions, dg_version, pid, host, config)
               VALUES ('r2', 'a', 'succeeded', '*', '', '0', 1, '{host}', '{{not json');
             INSERT INTO step_attempts (run_id, step_id, asset, attempt, status, started_at, duration_ms)
               VALUES ('r', 's', 'a', -1, 'failed', 't', 0);
             INSERT INTO step_results (run_id, step_id, attempt, status, attempts, host, finished_at)
               VALUES ('r', 's', 1, 'failed', 4294967297, 'h', 't');
             INSERT INTO leases (asset, partition, run_id, pid, host, acquired_at)
               VALUES ('a', '1', 'r', -2, 'h', 't');
             INSERT INTO pool_slots (pool, slot, run_id, pid, host, step_id, acquired_at)
               VALUES ('p', 4294967298, 'r', 1, 'h', 's', 't');"
        )
    }

    /// What each reader of [`corrupt_rows`] answers (its error, `None`
    /// when it read them), and what its error must say.
    pub(crate) fn read_corrupt_rows(s: &dyn StateStore) -> Vec<(Option<String>, &'static str)> {
        let me = lease("me", "h");
        let error = |r: anyhow::Result<()>| r.err().map(|e| format!("{e:#}"));
        vec![
            (error(s.runs(10).map(drop)), "`runs.pid` holds 4294967296"),
            (error(s.run("r").map(drop)), "`runs.pid` holds 4294967296"),
            (error(s.run("r2").map(drop)), "`runs.config` is not JSON"),
            (
                error(s.attempts("r").map(drop)),
                "`step_attempts.attempt` holds -1",
            ),
            (
                error(s.step_results("r").map(drop)),
                "`step_results.attempts` holds 4294967297",
            ),
            (
                error(s.try_lease("a", "1", &me).map(drop)),
                "`leases.pid` holds -2",
            ),
            (
                error(s.try_pool_slot("p", 1, &me, "s").map(drop)),
                "`pool_slots.slot` holds 4294967298",
            ),
            (
                error(s.reap_dead_runs().map(drop)),
                "`runs.pid` holds 4294967296",
            ),
        ]
    }

    /// Asserts that each reader failed, saying what it must.
    pub(crate) fn assert_errors(read: Vec<(Option<String>, &'static str)>) {
        for (error, says) in read {
            let text = error.unwrap_or_else(|| panic!("no error, expected one saying {says}"));
            assert!(text.contains(says), "{text}");
        }
    }
}
