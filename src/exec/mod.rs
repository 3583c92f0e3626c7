//! Stage 5: execution — the scheduler, the executors and the step runner.
//!
//! The scheduler only decides *when* steps run: a step becomes ready once
//! every step in its `after` list has succeeded; a failure marks its
//! dependents skipped while independent steps carry on. *Where* a ready
//! step runs is an [`executor::Executor`]'s business: the local one runs it
//! on a worker thread of this process, the Slurm one as a `dg step` job on
//! a cluster. Running a step is [`run_step`]: lease, attempts
//! ([`step::run_attempt`], a function of (plan step, run context)), checks,
//! and the records of its outcome. A step can also be written down as a
//! [`spec::StepSpec`] and run from it in another process (`dg step`).
//! Progress is reported as [`Event`]s to [`Reporter`]s: the terminal
//! display, the JSON summary and the history writer ([`history::History`])
//! are separate subscribers.

pub mod check;
pub mod error;
pub mod executor;
pub mod history;
pub mod hooks;
pub mod process;
pub mod slurm;
pub mod spec;
pub(crate) use crate::sql;
pub mod step;

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use std::collections::HashMap;
use std::sync::Mutex;

pub use error::{PrepareError, StepError};

use crate::io::{IoManager, OutputContext, Registry, ResourceCx, Stored};
use crate::model::{AssetId, Defs};
use crate::partitions::KeyCtx;
use crate::plan::Plan;
use crate::state::{AttemptRecord, Lease, Materialization, Record, StateStore};

/// Everything a step needs, shared by the workers of one run.
pub struct RunCtx {
    pub run_id: String,
    pub now: DateTime<FixedOffset>,
    pub project_root: PathBuf,
    pub state_dir: PathBuf,
    pub defs: Defs,
    pub plan: Plan,
    pub cx: KeyCtx,
    pub managers: step::Managers,
    pub cancel: Arc<AtomicBool>,
    /// Run history; `None` runs without recording (library use).
    pub store: Option<Arc<dyn StateStore>>,
    /// This run as a lease holder.
    pub lease: Lease,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    step_ids: Vec<String>,
    /// Resolved fields of the settings resources the plan's steps declare:
    /// (field, value, secret).
    pub settings: HashMap<String, Vec<(String, toml::Value, bool)>>,
    /// What this run hides: declared secrets and URL passwords. Step logs,
    /// errors and recorded metadata are masked with it.
    pub masker: crate::secrets::Masker,
    /// Latest materialization (run id, data version) per upstream (asset, partition):
    /// from history, updated as this run materializes.
    versions: Mutex<HashMap<AssetId, HashMap<String, crate::state::Version>>>,
    /// When each entry of `versions` that this process set was materialized
    /// (RFC 3339, UTC), to tell it from what the store holds.
    stamps: Mutex<HashMap<(AssetId, String), String>>,
    /// Another run was seen working on this run's partitions: the upstream
    /// versions are read from the store again before each step.
    concurrent: AtomicBool,
    /// The first attempt number of every step (1; more when `dg step` runs
    /// a step again after its job died).
    pub first_attempt: u32,
    /// The profile in force (`--profile`), written into step specs.
    pub profile: Option<String>,
    /// Emptied scratch folders, for the next attempts to take over.
    spares: Mutex<Vec<PathBuf>>,
    spare_count: std::sync::atomic::AtomicUsize,
}

impl RunCtx {
    /// Builds the context and creates every manager the plan uses, once.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run_id: String,
        now: DateTime<FixedOffset>,
        project_root: PathBuf,
        state_dir: PathBuf,
        defs: Defs,
        plan: Plan,
        cx: KeyCtx,
        registry: &Registry,
        cancel: Arc<AtomicBool>,
        store: Option<Arc<dyn StateStore>>,
    ) -> Result<RunCtx, Vec<PrepareError>> {
        let mut used: Vec<&str> = Vec::new();
        for st in &plan.steps {
            let a = &defs.assets[st.asset];
            used.push(&a.io_manager);
            for inp in &st.inputs {
                let spec = &a.inputs[inp.input];
                used.push(
                    spec.input_manager
                        .as_deref()
                        .unwrap_or(&defs.assets[inp.upstream].io_manager),
                );
            }
        }
        used.sort_unstable();
        used.dedup();
        let mut managers = step::Managers::new();
        let mut errors: Vec<PrepareError> = Vec::new();
        let mut settings = HashMap::new();
        for st in &plan.steps {
            for key in &defs.assets[st.asset].resources {
                if settings.contains_key(key) {
                    continue;
                }
                let Some(res) = defs.resources.get(key) else {
                    errors.push(PrepareError::UndefinedResource(key.clone()));
                    continue;
                };
                match resolve_config(&res.config) {
                    Ok(c) => {
                        let fields = c
                            .into_iter()
                            .map(|(k, v)| {
                                let secret = res.secrets.contains(&k);
                                (k, v, secret)
                            })
                            .collect();
                        settings.insert(key.clone(), fields);
                    }
                    Err(error) => errors.push(PrepareError::Config {
                        resource: key.clone(),
                        error,
                    }),
                }
            }
        }
        let masker = crate::model::masker_for(&defs, &crate::interp::env_var);
        crate::secrets::register(&masker);
        for key in used {
            let Some(res) = defs.resources.get(key) else {
                errors.push(PrepareError::UndefinedResource(key.to_string()));
                continue;
            };
            let config = match resolve_config(&res.config) {
                Ok(c) => c,
                Err(error) => {
                    errors.push(PrepareError::Config {
                        resource: key.to_string(),
                        error,
                    });
                    continue;
                }
            };
            let Some(ty) = registry.get(&res.type_name) else {
                errors.push(PrepareError::UnknownType {
                    resource: key.to_string(),
                    type_name: res.type_name.clone(),
                });
                continue;
            };
            let rcx = ResourceCx {
                resource_key: key.to_string(),
                project_root: project_root.clone(),
                state_dir: state_dir.clone(),
                run_id: run_id.clone(),
            };
            match ty.create(&crate::io::Config::resolved(&config), &rcx) {
                Ok(m) => {
                    managers.insert(key.to_string(), m);
                }
                Err(error) => errors.push(PrepareError::Create {
                    resource: key.to_string(),
                    type_name: res.type_name.clone(),
                    error,
                }),
            }
        }
        // Variables the steps need must be set before anything runs.
        for b in &plan.blocks {
            let a = &defs.assets[b.asset];
            let unset = |field: String, error| PrepareError::Unset {
                asset: a.key.clone(),
                field,
                error,
            };
            for (k, t) in &a.env {
                if let Err(e) = t.resolve_env() {
                    errors.push(unset(format!("env.{k}"), e));
                }
            }
            if let crate::model::Compute::Command(argv) = &a.compute {
                for t in argv {
                    if let Err(e) = t.resolve_env() {
                        errors.push(unset("command".into(), e));
                    }
                }
            }
            let env = crate::interp::env_var;
            if let Err(e) =
                crate::interp::resolve_json(&serde_json::Value::Object(a.metadata.clone()), &env)
            {
                errors.push(unset("metadata".into(), e));
            }
            if let Err(e) = crate::interp::resolve_json(&serde_json::json!(a.tags), &env) {
                errors.push(unset("tags".into(), e));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut keys = crate::partitions::KeyCache::new(&cx);
        let step_ids = plan
            .steps
            .iter()
            .map(|s| crate::plan::step_id_of(&defs, &mut keys, s))
            .collect();
        Ok(RunCtx {
            started_at: timestamp(),
            lease: Lease {
                run_id: run_id.clone(),
                pid: std::process::id(),
                host: crate::state::hostname(),
            },
            run_id,
            now,
            project_root,
            state_dir,
            defs,
            plan,
            cx,
            managers,
            cancel,
            store,
            step_ids,
            settings,
            masker,
            versions: Mutex::new(HashMap::new()),
            stamps: Mutex::new(HashMap::new()),
            concurrent: AtomicBool::new(false),
            first_attempt: 1,
            profile: None,
            spares: Mutex::new(Vec::new()),
            spare_count: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The latest materialization of an upstream partition: (run id, data version).
    pub fn latest(&self, asset: AssetId, partition: &str) -> Option<(String, Option<String>)> {
        let mut v = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        if let std::collections::hash_map::Entry::Vacant(e) = v.entry(asset) {
            let loaded = match &self.store {
                Some(store) => store
                    .partitions(&self.defs.assets[asset].key, 0)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, s)| {
                        s.run_id.map(|r| {
                            (
                                k.into_string(),
                                (r.to_string(), s.data_version.map(crate::state::show_hash)),
                            )
                        })
                    })
                    .collect(),
                None => HashMap::new(),
            };
            e.insert(loaded);
        }
        v[&asset].get(partition).cloned()
    }

    fn set_latest(
        &self,
        asset: AssetId,
        partition: &str,
        run_id: &str,
        data_version: Option<String>,
        at: String,
    ) {
        let _ = self.latest(asset, partition);
        let mut v = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        v.entry(asset)
            .or_default()
            .insert(partition.to_string(), (run_id.to_string(), data_version));
        drop(v);
        self.stamps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((asset, partition.to_string()), at);
    }

    /// Reads the latest materializations of the upstream partitions step
    /// `si` loads from the store again, keeping what this process set
    /// unless the store's is newer (the recorder may not have written this
    /// run's yet; another run may have materialized one since).
    fn refresh_inputs(&self, si: usize) -> Result<(), StepError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let step = &self.plan.steps[si];
        for inp in &step.inputs {
            let up = &self.defs.assets[inp.upstream];
            let keys = input_keys(inp, up, &self.cx);
            let found = store
                .latest_of(&up.key, &keys)
                .map_err(|error| StepError::History {
                    asset: up.key.clone(),
                    error,
                })?;
            let _ = self.latest(inp.upstream, "");
            let stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
            let mut v = self.versions.lock().unwrap_or_else(|e| e.into_inner());
            let cached = v.entry(inp.upstream).or_default();
            for (k, f) in keys.into_iter().zip(found) {
                let Some((run, dv, at)) = f else { continue };
                let newer = match stamps.get(&(inp.upstream, k.clone())) {
                    Some(mine) => at > *mine,
                    None => true,
                };
                if newer {
                    cached.insert(k, (run, dv));
                }
            }
        }
        Ok(())
    }

    /// The partition key of a step (`""` when unpartitioned).
    pub fn partition_key(&self, step: usize) -> String {
        let st = &self.plan.steps[step];
        match (&self.defs.assets[st.asset].partitions, st.partition) {
            (Some(p), Some(i)) => p.def.key(i, &self.cx).unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// The partition keys a step materializes: a range step's, else its
    /// one key (`""` when unpartitioned).
    pub fn partition_keys(&self, step: usize) -> Vec<String> {
        let st = &self.plan.steps[step];
        match &self.defs.assets[st.asset].partitions {
            Some(p) if !st.range.is_empty() => st
                .range
                .iter()
                .map(|&i| p.def.key(i, &self.cx).unwrap_or_default())
                .collect(),
            _ => vec![self.partition_key(step)],
        }
    }

    pub fn step_id(&self, step: usize) -> String {
        self.step_ids[step].clone()
    }

    pub fn manager(&self, key: &str) -> Result<&Arc<dyn IoManager>, StepError> {
        self.managers
            .get(key)
            .ok_or_else(|| StepError::NoManager(key.to_string()))
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// `<state>/logs/<run_id>/<step>.log`
    pub fn log_path(&self, step: usize) -> PathBuf {
        self.state_dir
            .join("logs")
            .join(&self.run_id)
            .join(format!("{}.log", crate::exec::slug(&self.step_ids[step])))
    }

    /// The scratch folder of one attempt of step `si`:
    /// `<state>/runs/<run id>/<step>.<attempt>`. Keyed by what it belongs
    /// to, not by who runs it, so that the same step run by `dg step` on
    /// another machine, or again after its job died, never shares a folder
    /// with another attempt. See [`RunCtx::take_scratch`].
    pub fn work_dir(&self, si: usize, attempt: u32) -> PathBuf {
        self.state_dir
            .join("runs")
            .join(&self.run_id)
            .join(format!("{}.{attempt}", slug(&self.step_ids[si])))
    }

    /// Makes `work` (a [`RunCtx::work_dir`]) exist, by renaming a folder an
    /// earlier attempt of this run left (see [`RunCtx::park_scratch`]) when
    /// there is one: file systems such as ext4 pay dearly for creating
    /// inodes right after deleting others, so a run recycles its scratch
    /// folders and their files (truncated) rather than creating and
    /// deleting them by the thousand. Returns whether it was recycled.
    pub fn take_scratch(&self, work: &std::path::Path) -> std::io::Result<bool> {
        let spare = self.spares.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(spare) = spare {
            if std::fs::rename(&spare, work).is_ok() {
                return Ok(true);
            }
            let _ = std::fs::remove_dir_all(&spare);
        }
        match std::fs::create_dir(work) {
            Ok(()) => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(true),
            Err(_) => std::fs::create_dir_all(work).map(|()| false),
        }
        .or_else(|e| match e.kind() {
            // The run's folder was removed meanwhile (a stale-scratch sweep).
            std::io::ErrorKind::NotFound => std::fs::create_dir_all(work).map(|()| false),
            _ => Err(e),
        })
    }

    /// Keeps an attempt's emptied scratch folder for the next attempt to
    /// take over (`<state>/runs/<run id>/.spare-N`).
    pub fn park_scratch(&self, work: &std::path::Path) {
        let n = self.spare_count.fetch_add(1, Ordering::Relaxed);
        let spare = work.with_file_name(format!(".spare-{n}"));
        if std::fs::rename(work, &spare).is_ok() {
            self.spares
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(spare);
        } else {
            let _ = std::fs::remove_dir_all(work);
        }
    }

    /// Removes the parked scratch folders.
    pub fn drop_scratch(&self) {
        for spare in self
            .spares
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = std::fs::remove_dir_all(spare);
        }
    }

    /// The spec of step `si`, to run it elsewhere from attempt `attempt`.
    pub fn spec(&self, si: usize, attempt: u32) -> spec::StepSpec {
        spec::StepSpec::of(
            &self.defs,
            &self.cx,
            &self.plan.steps[si],
            &self.step_ids[si],
            &spec::RunInfo {
                run_id: &self.run_id,
                now: &self.now.to_rfc3339(),
                started_at: &self.started_at,
                profile: self.profile.as_deref(),
            },
            attempt,
        )
    }
}

/// Removes the scratch folders (`<state>/runs/<run id>/`) of runs that are
/// no longer running: a run killed with `kill -9`, or one whose process
/// died, leaves its folder behind. Runs still running (here or on another
/// machine sharing the store) keep theirs. Returns how many were removed.
pub fn remove_stale_scratch(state_dir: &std::path::Path, store: &dyn StateStore) -> usize {
    let Ok(entries) = std::fs::read_dir(state_dir.join("runs")) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let running = matches!(
            store.run(&id),
            Ok(Some(r)) if r.status == crate::state::RunStatus::Running
        );
        // An unreadable history keeps everything.
        if running || store.run(&id).is_err() {
            continue;
        }
        if std::fs::remove_dir_all(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

pub use crate::names::slug;

/// Resolves `${env:…}` in every string of a resource config.
fn resolve_config(t: &toml::Table) -> Result<toml::Table, error::ConfigValueError> {
    fn value(v: &toml::Value) -> Result<toml::Value, error::ConfigValueError> {
        use error::ConfigValueError;
        Ok(match v {
            toml::Value::String(s) => toml::Value::String(
                crate::interp::Template::parse(s)
                    .map_err(ConfigValueError::Template)?
                    .resolve_env()
                    .map_err(ConfigValueError::Unset)?,
            ),
            toml::Value::Array(a) => {
                toml::Value::Array(a.iter().map(value).collect::<Result<_, _>>()?)
            }
            toml::Value::Table(t) => toml::Value::Table(resolve_config(t)?),
            other => other.clone(),
        })
    }
    t.iter().map(|(k, v)| Ok((k.clone(), value(v)?))).collect()
}

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Success,
    Failed,
    Skipped,
}

/// The outcome of one step.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub step: usize,
    pub status: StepStatus,
    pub attempts: u32,
    pub duration: Duration,
    pub error: Option<String>,
    pub stored: Option<Stored>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub log: Option<PathBuf>,
    /// What to record in the history for this step.
    pub records: Vec<Record>,
    /// Results of the asset's checks on the stored partition.
    pub checks: Vec<crate::state::CheckRecord>,
    /// A blocking error-check that failed: the steps downstream are skipped.
    pub blocked_by: Option<String>,
}

impl StepReport {
    /// The report of step `step` with `status`, before anything ran:
    /// no attempts, no error, nothing stored or recorded.
    pub(crate) fn new(step: usize, status: StepStatus) -> StepReport {
        StepReport {
            step,
            status,
            attempts: 0,
            duration: Duration::ZERO,
            error: None,
            stored: None,
            metadata: Default::default(),
            log: None,
            records: Vec::new(),
            checks: Vec::new(),
            blocked_by: None,
        }
    }
}

/// What happens during a run, in order.
pub enum Event<'a> {
    Started,
    StepStarted {
        step: usize,
    },
    /// Attempt `attempt` failed; the next one starts after `wait`.
    StepRetrying {
        step: usize,
        attempt: u32,
        error: &'a str,
        wait: Duration,
    },
    /// The step waits for a free slot of its pool.
    PoolWaiting {
        step: usize,
        pool: &'a str,
        limit: u32,
    },
    /// The step waits for another run that holds its partition.
    Waiting {
        step: usize,
        run_id: &'a str,
    },
    StepFinished(&'a StepReport),
}

/// Receives run events (terminal display, JSON summary, history).
pub trait Reporter: Sync {
    fn event(&self, rc: &RunCtx, e: &Event<'_>);
}

/// The result of a run.
pub struct RunSummary {
    pub reports: Vec<StepReport>,
    pub interrupted: bool,
    pub elapsed: Duration,
}

impl RunSummary {
    pub fn success(&self) -> bool {
        !self.interrupted
            && self
                .reports
                .iter()
                .all(|r| r.status == StepStatus::Success && r.blocked_by.is_none())
    }
}

/// Options of the scheduler.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub jobs: usize,
    pub fail_fast: bool,
    /// `[pools]`: at most N steps of a pool at once, across every run that
    /// shares the state store (within this run when there is none).
    pub pools: std::collections::BTreeMap<String, u32>,
}

/// A pool slot held by a running step: the pool, and the slot number in the
/// state store (`None` when the run records nothing).
type Held = Option<(String, Option<u32>)>;

/// The outcome of asking for a step's pool slot.
enum Slot {
    /// The step is in no pool, or got a slot.
    Go(Held),
    /// Every slot is taken; the step waits.
    Busy {
        pool: String,
        limit: u32,
    },
    Error(StepError),
}

/// The pool slots this run holds: counted per pool, and the ones a
/// finished step left *idle*, which the next ready step of the same pool
/// takes over without asking the state store again. A slot nobody takes
/// by the end of a scheduling pass is given back, so other runs get it.
#[derive(Default)]
struct Slots {
    /// Slots held per pool, idle ones included.
    in_use: HashMap<String, u32>,
    /// Idle slots per pool (their number in the state store, if any).
    idle: HashMap<String, Vec<Option<u32>>>,
}

impl Slots {
    /// Takes a slot of step `s`'s pool, if it has one: an idle one, else a
    /// new one within this run's count and then in the state store, which
    /// counts every run's holders.
    fn take(&mut self, rc: &RunCtx, opts: &RunOptions, s: usize, busy: &HashSet<String>) -> Slot {
        let asset = &rc.defs.assets[rc.plan.steps[s].asset];
        let Some((pool, _)) = &asset.pool else {
            return Slot::Go(None);
        };
        let Some(&limit) = opts.pools.get(pool) else {
            // Validation makes every `pool` name a declared one.
            return Slot::Error(StepError::UndeclaredPool(pool.clone()));
        };
        if let Some(slot) = self.idle.get_mut(pool).and_then(Vec::pop) {
            return Slot::Go(Some((pool.clone(), slot)));
        }
        let used = self.in_use.get(pool).copied().unwrap_or(0);
        if used >= limit || busy.contains(pool) {
            return Slot::Busy {
                pool: pool.clone(),
                limit,
            };
        }
        let slot = match &rc.store {
            Some(store) => match store.try_pool_slot(pool, limit, &rc.lease, &rc.step_id(s)) {
                Ok(Some(slot)) => Some(slot),
                Ok(None) => {
                    return Slot::Busy {
                        pool: pool.clone(),
                        limit,
                    };
                }
                Err(error) => {
                    return Slot::Error(StepError::PoolSlot {
                        pool: pool.clone(),
                        error,
                    });
                }
            },
            None => None,
        };
        *self.in_use.entry(pool.clone()).or_default() += 1;
        Slot::Go(Some((pool.clone(), slot)))
    }

    /// A finished step's slot becomes idle (see [`Slots::release_idle`]).
    fn finish(&mut self, held: Held) {
        if let Some((pool, slot)) = held {
            self.idle.entry(pool).or_default().push(slot);
        }
    }

    /// Gives back every idle slot.
    fn release_idle(&mut self, rc: &RunCtx) {
        for (pool, slots) in &mut self.idle {
            for slot in slots.drain(..) {
                if let Some(n) = self.in_use.get_mut(pool) {
                    *n = n.saturating_sub(1);
                }
                if let (Some(store), Some(slot)) = (&rc.store, slot)
                    && let Err(e) = store.release_pool_slot(pool, slot, &rc.run_id)
                {
                    tracing::warn!("releasing slot {slot} of pool `{pool}`: {e:#}");
                }
            }
        }
    }
}

/// Upstream partitions that the plan does not produce and that are not
/// stored: (upstream asset key, partition keys). Checked before anything runs.
pub fn missing_inputs(rc: &RunCtx) -> Result<Vec<(String, Vec<String>)>, StepError> {
    let mut checked: HashSet<(usize, Option<i64>, String)> = HashSet::new();
    let mut missing: Vec<(String, Vec<String>)> = Vec::new();
    for st in &rc.plan.steps {
        let a = &rc.defs.assets[st.asset];
        for inp in &st.inputs {
            let spec = &a.inputs[inp.input];
            if inp.in_plan || spec.allow_missing_partitions {
                continue;
            }
            let up = &rc.defs.assets[inp.upstream];
            let manager_key = spec.input_manager.as_deref().unwrap_or(&up.io_manager);
            let manager = rc.manager(manager_key)?;
            let parts: Vec<Option<i64>> = match &inp.partitions {
                Some(ix) => ix.iter().map(Some).collect(),
                None => vec![None],
            };
            for p in parts {
                if rc.plan.step_of(inp.upstream, p).is_some() {
                    continue;
                }
                if !checked.insert((inp.upstream, p, manager_key.to_string())) {
                    continue;
                }
                let partition = match (p, &up.partitions) {
                    (Some(i), Some(d)) => Some(step::partition_ref(&d.def, i, &rc.cx)),
                    _ => None,
                };
                let ctx = OutputContext {
                    asset_key: up.key.clone(),
                    partition: partition.clone(),
                    format: up.format,
                    resource_key: manager_key.to_string(),
                    metadata: up.metadata.clone(),
                    run_id: rc.run_id.clone(),
                    step_id: String::new(),
                    log: Default::default(),
                };
                let exists = manager.exists(&ctx).map_err(|error| StepError::Exists {
                    asset: up.key.clone(),
                    manager: manager_key.to_string(),
                    error,
                })?;
                // A partition materialized with no output is not stored, but
                // not missing either: the steps that read it are skipped.
                let no_output = || {
                    let key = partition.as_ref().map_or("", |p| p.key.as_str());
                    rc.latest(inp.upstream, key)
                        .and_then(|(_, v)| v)
                        .and_then(|v| crate::state::parse_hash(&v))
                        == Some(crate::state::NO_OUTPUT)
                };
                if !exists && !no_output() {
                    let key = partition.map(|p| p.key).unwrap_or_default();
                    match missing.iter_mut().find(|(k, _)| *k == up.key) {
                        Some((_, v)) => v.push(key),
                        None => missing.push((up.key.clone(), vec![key])),
                    }
                }
            }
        }
    }
    Ok(missing)
}

/// Runs the plan on this machine ([`executor::Local`], `opts.jobs` steps
/// at once). Returns when every step has finished, been skipped, or (after
/// cancellation) been stopped.
pub fn execute(rc: &RunCtx, opts: &RunOptions, reporter: &dyn Reporter) -> RunSummary {
    std::thread::scope(|scope| {
        let n = rc.plan.steps.len();
        let mut local = executor::Local::start(scope, rc, opts.jobs.max(1).min(n.max(1)), reporter);
        schedule(rc, opts, reporter, &mut local)
    })
}

/// Runs the plan through an executor: hands it the ready steps, at most
/// [`executor::Executor::capacity`] at once, and takes their reports back.
pub fn schedule(
    rc: &RunCtx,
    opts: &RunOptions,
    reporter: &dyn Reporter,
    ex: &mut dyn executor::Executor,
) -> RunSummary {
    let started = Instant::now();
    let n = rc.plan.steps.len();
    reporter.event(rc, &Event::Started);
    let mut pending = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (s, p) in pending.iter_mut().enumerate() {
        let after = rc.plan.after(s);
        *p = after.len();
        for a in after {
            dependents[a].push(s);
        }
    }
    let mut ready: VecDeque<usize> = (0..n).filter(|&s| pending[s] == 0).collect();
    let mut reports: Vec<Option<StepReport>> = vec![None; n];
    let mut done = 0usize;
    let mut running = 0usize;
    let mut stop = false;
    // Pools: slots held per step, slots in use per pool, steps told to wait.
    let mut held: Vec<Held> = vec![None; n];
    let mut slots = Slots::default();
    let mut waiting: HashSet<usize> = HashSet::new();
    // Steps that ended before a worker took them (a pool error).
    let mut local: Vec<StepReport> = Vec::new();

    let jobs = ex.capacity().max(1);
    // This run's leases stay valid while it lives.
    let _heartbeat = rc
        .store
        .as_ref()
        .map(|store| Heartbeat::start(store.clone(), rc.lease.clone()));
    let mut cancelled = false;
    {
        while done < n {
            if rc.cancelled() && !cancelled {
                cancelled = true;
                ex.cancel(rc);
            }
            if rc.cancelled() || stop {
                // Nothing new starts; what is queued is skipped below.
                while let Some(s) = ready.pop_front() {
                    let why = if rc.cancelled() {
                        "interrupted before it started"
                    } else {
                        "not started: --fail-fast after a failure"
                    };
                    let r = skipped(s, why);
                    reporter.event(rc, &Event::StepFinished(&r));
                    reports[s] = Some(r);
                    done += 1;
                }
                if running == 0 {
                    break;
                }
            }
            // Steps whose pool is full wait in `blocked`, in order, and go
            // back to the front of the queue after this pass; a pool found
            // full is not asked again in the same pass.
            let mut blocked: Vec<usize> = Vec::new();
            let mut busy: HashSet<String> = HashSet::new();
            while running < jobs && !stop && !rc.cancelled() {
                let Some(s) = ready.pop_front() else { break };
                match slots.take(rc, opts, s, &busy) {
                    Slot::Go(h) => {
                        held[s] = h;
                        waiting.remove(&s);
                    }
                    Slot::Busy { pool, limit } => {
                        if waiting.insert(s) {
                            reporter.event(
                                rc,
                                &Event::PoolWaiting {
                                    step: s,
                                    pool: &pool,
                                    limit,
                                },
                            );
                        }
                        busy.insert(pool);
                        blocked.push(s);
                        continue;
                    }
                    Slot::Error(e) => {
                        let mut r = skipped(s, &e.to_string());
                        r.status = StepStatus::Failed;
                        local.push(r);
                        continue;
                    }
                }
                if let Err(e) = ex.submit(rc, s) {
                    slots.finish(held[s].take());
                    let mut r = skipped(s, &e.to_string());
                    r.status = StepStatus::Failed;
                    local.push(r);
                    continue;
                }
                running += 1;
            }
            for s in blocked.into_iter().rev() {
                ready.push_front(s);
            }
            // A slot no ready step took over goes back to the pool.
            slots.release_idle(rc);
            let r = if let Some(r) = local.pop() {
                r
            } else if running == 0 {
                if ready.is_empty() {
                    break;
                }
                // Everything ready waits for a pool held by other runs.
                std::thread::sleep(POOL_POLL);
                continue;
            } else if !ready.is_empty() && !waiting.is_empty() {
                // Some step waits for a pool: look again now and then.
                match ex.wait(rc, Some(POOL_POLL)) {
                    Wait::Done(r) => {
                        running -= 1;
                        r
                    }
                    Wait::Timeout => continue,
                    Wait::Gone => break,
                }
            } else {
                let r = match ex.wait(rc, None) {
                    Wait::Done(r) => r,
                    Wait::Timeout => continue,
                    Wait::Gone => break,
                };
                running -= 1;
                r
            };
            slots.finish(held[r.step].take());
            reporter.event(rc, &Event::StepFinished(&r));
            done += 1;
            let s = r.step;
            let ok = r.status == StepStatus::Success && r.blocked_by.is_none();
            reports[s] = Some(r);
            if ok {
                for &d in &dependents[s] {
                    pending[d] -= 1;
                    if pending[d] == 0 && reports[d].is_none() {
                        ready.push_back(d);
                    }
                }
            } else {
                if opts.fail_fast {
                    stop = true;
                }
                // Dependents that cannot do without this step are skipped,
                // transitively; those that allow missing partitions go on.
                let mut queue = vec![s];
                while let Some(f) = queue.pop() {
                    for &d in &dependents[f] {
                        if reports[d].is_some() {
                            continue;
                        }
                        pending[d] -= 1;
                        let blocked = reports[f].as_ref().and_then(|r| r.blocked_by.clone());
                        if blocked.is_none() && tolerates(rc, d, f) {
                            if pending[d] == 0 {
                                ready.push_back(d);
                            }
                            continue;
                        }
                        let why = match blocked {
                            Some(c) => format!(
                                "skipped: blocking check `{c}` of upstream step `{}` failed",
                                rc.step_id(f)
                            ),
                            None => format!(
                                "skipped: upstream step `{}` did not succeed",
                                rc.step_id(f)
                            ),
                        };
                        let r = skipped(d, &why);
                        reporter.event(rc, &Event::StepFinished(&r));
                        reports[d] = Some(r);
                        done += 1;
                        queue.push(d);
                    }
                }
            }
        }
    }
    ex.finish(rc);
    // Slots left by a break above are given back with the run.
    if let Some(store) = &rc.store
        && rc
            .plan
            .steps
            .iter()
            .any(|st| rc.defs.assets[st.asset].pool.is_some())
    {
        let _ = store.release_pool_slots(&rc.run_id);
    }

    let _ = std::fs::remove_dir_all(rc.state_dir.join("runs").join(&rc.run_id));
    // Whatever never ran (cancellation, or a break above) is skipped.
    let reports: Vec<StepReport> = reports
        .into_iter()
        .enumerate()
        .map(|(s, r)| {
            r.unwrap_or_else(|| {
                skipped(
                    s,
                    if rc.cancelled() {
                        "interrupted before it started"
                    } else {
                        "not started"
                    },
                )
            })
        })
        .collect();
    RunSummary {
        reports,
        interrupted: rc.cancelled(),
        elapsed: started.elapsed(),
    }
}

pub use executor::Wait;

/// Extends the leases of one holder every third of their lifetime, on its
/// own thread, until dropped.
pub struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(store: Arc<dyn StateStore>, me: Lease) -> Heartbeat {
        let (stop, rx) = mpsc::channel::<()>();
        let every = Duration::from_millis((crate::state::lease_ttl_ms() / 3).max(30) as u64);
        let handle = std::thread::Builder::new()
            .name("dg-heartbeat".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    if let Err(e) = store.heartbeat(&me) {
                        tracing::warn!("extending this run's leases: {e:#}");
                    }
                }
            })
            .ok();
        Heartbeat {
            stop: Some(stop),
            handle,
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// How often a step waiting for a pool slot held by another run looks again.
const POOL_POLL: Duration = Duration::from_millis(50);

fn skipped(step: usize, why: &str) -> StepReport {
    StepReport {
        error: Some(why.to_string()),
        ..StepReport::new(step, StepStatus::Skipped)
    }
}

/// An RFC 3339 wall-clock time.
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Whether step `d` can run although its upstream step `f` did not succeed:
/// every input of `d` that reads `f`'s asset allows missing partitions.
fn tolerates(rc: &RunCtx, d: usize, f: usize) -> bool {
    let up = rc.plan.steps[f].asset;
    let st = &rc.plan.steps[d];
    let a = &rc.defs.assets[st.asset];
    st.inputs
        .iter()
        .filter(|i| i.upstream == up)
        .all(|i| a.inputs[i.input].allow_missing_partitions)
}

/// Takes the lease on a step's partition, waiting while another live run
/// holds it. `Ok(Some(run))` when another run materialized the partition
/// after this run started (while this one waited, or just before it got
/// there): the work is done and is not repeated.
fn lease(rc: &RunCtx, si: usize, reporter: &dyn Reporter) -> Result<Option<String>, StepError> {
    let Some(store) = &rc.store else {
        return Ok(None);
    };
    if !rc.plan.steps[si].range.is_empty() {
        return lease_range(rc, si, reporter).map(|()| None);
    }
    let asset = &rc.defs.assets[rc.plan.steps[si].asset];
    let key = rc.partition_key(si);
    wait_lease(
        rc,
        si,
        &**store,
        &key,
        "this partition",
        &mut None,
        reporter,
    )?;
    match store.latest_materialization(&asset.key, &key) {
        Ok(Some((other, at))) if other != rc.run_id && at >= rc.started_at => {
            rc.concurrent.store(true, Ordering::Relaxed);
            if let Err(e) = rc.refresh_inputs(si) {
                let _ = store.release(&asset.key, &key, &rc.run_id);
                return Err(e);
            }
            // The other run's result is this run's answer only if it read
            // the upstream materializations this step would read now: this
            // run may have computed an upstream partition again after the
            // other run read it.
            let state = store
                .partitions(&asset.key, 0)
                .ok()
                .and_then(|mut m| m.remove(key.as_str()));
            let step = &rc.plan.steps[si];
            let mut latest = |u: AssetId, k: &str| rc.latest(u, k);
            let inputs =
                crate::state::incremental::inputs_read(&rc.defs, step, &rc.cx, &mut latest);
            let expected = crate::state::parse_hash(&crate::state::input_fingerprint(&inputs));
            let same_inputs = state.as_ref().and_then(|s| s.input_fp).is_some()
                && state.as_ref().and_then(|s| s.input_fp) == expected;
            if !same_inputs {
                return Ok(None);
            }
            let _ = store.release(&asset.key, &key, &rc.run_id);
            let dv = state
                .and_then(|s| s.data_version)
                .map(crate::state::show_hash);
            rc.set_latest(step.asset, &key, &other, dv, at);
            Ok(Some(other))
        }
        Ok(_) => Ok(None),
        Err(e) => {
            let _ = store.release(&asset.key, &key, &rc.run_id);
            Err(StepError::PartitionHistory(e))
        }
    }
}

/// Takes the leases on every partition of range step `si`, in partition
/// order, waiting while another live run holds one. Unlike a step of one
/// partition, a range step runs even when another run materialized some of
/// its partitions meanwhile: it writes them all at once.
fn lease_range(rc: &RunCtx, si: usize, reporter: &dyn Reporter) -> Result<(), StepError> {
    let Some(store) = &rc.store else {
        return Ok(());
    };
    let asset = &rc.defs.assets[rc.plan.steps[si].asset];
    let keys = rc.partition_keys(si);
    let give_back = |taken: &[String]| {
        for k in taken {
            let _ = store.release(&asset.key, k, &rc.run_id);
        }
    };
    let mut waited_for: Option<String> = None;
    for (n, key) in keys.iter().enumerate() {
        let what = format!("partition `{key}`");
        if let Err(e) = wait_lease(rc, si, &**store, key, &what, &mut waited_for, reporter) {
            give_back(&keys[..n]);
            return Err(e);
        }
    }
    Ok(())
}

/// Waits until this run holds the lease on partition `key` of step `si`'s
/// asset, saying once per holder that the step waits (`waited_for`).
/// `Err` when interrupted or the store fails (`what` names the partition).
fn wait_lease(
    rc: &RunCtx,
    si: usize,
    store: &dyn StateStore,
    key: &str,
    what: &str,
    waited_for: &mut Option<String>,
    reporter: &dyn Reporter,
) -> Result<(), StepError> {
    let asset = &rc.defs.assets[rc.plan.steps[si].asset];
    loop {
        match store.try_lease(&asset.key, key, &rc.lease) {
            Ok(None) => return Ok(()),
            Ok(Some(holder)) => {
                rc.concurrent.store(true, Ordering::Relaxed);
                if waited_for.as_deref() != Some(&holder.run_id) {
                    reporter.event(
                        rc,
                        &Event::Waiting {
                            step: si,
                            run_id: &holder.run_id,
                        },
                    );
                    *waited_for = Some(holder.run_id.clone());
                }
                if rc.cancelled() {
                    return Err(StepError::InterruptedWaiting);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => {
                return Err(StepError::Lease {
                    what: what.to_string(),
                    error,
                });
            }
        }
    }
}

/// Why step `si` is skipped when an upstream partition it loads was
/// materialized with no output (`output_required = false`), else `None`.
fn reads_no_output(rc: &RunCtx, si: usize) -> Option<String> {
    let step = &rc.plan.steps[si];
    let asset = &rc.defs.assets[step.asset];
    for inp in &step.inputs {
        if !asset.inputs[inp.input].load {
            continue;
        }
        let up = &rc.defs.assets[inp.upstream];
        let keys = input_keys(inp, up, &rc.cx);
        for key in keys {
            let no_output = rc
                .latest(inp.upstream, &key)
                .and_then(|(_, v)| v)
                .and_then(|v| crate::state::parse_hash(&v))
                == Some(crate::state::NO_OUTPUT);
            if no_output {
                let id = if key.is_empty() {
                    up.key.clone()
                } else {
                    format!("{}[{key}]", up.key)
                };
                return Some(format!(
                    "skipped: upstream `{id}` has no output (`output_required = false`)"
                ));
            }
        }
    }
    None
}

/// Runs a step with its retries, and prepares what to record: the lease on
/// its partitions, its attempts, its checks, and the records of its
/// outcome (written by the history writer, which releases the lease with
/// them). What every executor runs, in this process or in `dg step`.
pub fn run_step(
    rc: &RunCtx,
    si: usize,
    dog: &process::Watchdog,
    reporter: &dyn Reporter,
) -> StepReport {
    let started = Instant::now();
    let mut report = run_step_inner(rc, si, dog, reporter);
    report.duration = started.elapsed();
    if let Some(store) = &rc.store {
        let asset = &rc.defs.assets[rc.plan.steps[si].asset];
        for key in rc.partition_keys(si) {
            if report.records.is_empty() {
                let _ = store.release(&asset.key, &key, &rc.run_id);
            } else {
                // Released together with the outcome, by the recorder.
                report.records.push(Record::Release {
                    asset: asset.key.clone(),
                    partition: key,
                    run_id: rc.run_id.clone(),
                });
            }
        }
    }
    report
}

fn run_step_inner(
    rc: &RunCtx,
    si: usize,
    dog: &process::Watchdog,
    reporter: &dyn Reporter,
) -> StepReport {
    let step = &rc.plan.steps[si];
    let asset = &rc.defs.assets[step.asset];
    let key = rc.partition_key(si);
    let mut report = StepReport::new(si, StepStatus::Failed);
    match lease(rc, si, reporter) {
        Ok(None) => {}
        Ok(Some(other)) => {
            report.status = StepStatus::Success;
            report.error = Some(format!("materialized by concurrent run {other}"));
            return report;
        }
        Err(e) => {
            report.status = StepStatus::Skipped;
            report.error = Some(e.to_string());
            return report;
        }
    }
    if rc.concurrent.load(Ordering::Relaxed)
        && let Err(e) = rc.refresh_inputs(si)
    {
        report.error = Some(e.to_string());
        return report;
    }
    if let Some(why) = reads_no_output(rc, si) {
        report.status = StepStatus::Skipped;
        report.error = Some(why);
        return report;
    }
    let log_path = rc.log_path(si);
    let mut log = match log_path
        .parent()
        .map(std::fs::create_dir_all)
        .unwrap_or(Ok(()))
        .and_then(|_| File::options().create(true).append(true).open(&log_path))
    {
        Ok(f) => f,
        Err(e) => {
            report.error = Some(format!(
                "cannot open the log file {}: {e}",
                log_path.display()
            ));
            return report;
        }
    };
    report.log = Some(log_path.clone());
    let step_id = rc.step_id(si);
    let partition = (!key.is_empty()).then(|| key.clone());
    let range_keys = (!step.range.is_empty()).then(|| rc.partition_keys(si));
    // A range step's attempts are recorded under `FIRST...LAST`.
    let attempt_partition = match &range_keys {
        Some(keys) if keys.len() > 1 => Some(format!("{}...{}", keys[0], keys[keys.len() - 1])),
        _ => partition.clone(),
    };
    let policy = asset.retry;
    let mut attempt = rc.first_attempt.max(1);
    loop {
        reporter.event(rc, &Event::StepStarted { step: si });
        let t0 = Instant::now();
        let started_at = timestamp();
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut a = step::run_attempt(rc, si, attempt, dog, &mut log);
        // A secret the step printed is `***` in its log, its error and
        // what is recorded.
        if !rc.masker.is_empty() {
            if let Err(e) = rc.masker.mask_file_from(&log_path, log_start) {
                a.ok = false;
                a.error = Some(format!(
                    "cannot mask secrets in the log {}: {e}",
                    log_path.display()
                ));
            }
            a.error = a.error.map(|e| rc.masker.mask(&e).into_owned());
            if let serde_json::Value::Object(m) =
                rc.masker.mask_json(&serde_json::Value::Object(a.metadata))
            {
                a.metadata = m;
            } else {
                a.metadata = Default::default();
            }
        }
        report.records.push(Record::Attempt(AttemptRecord {
            run_id: rc.run_id.clone(),
            step_id: step_id.clone(),
            asset: asset.key.clone(),
            partition: attempt_partition.clone(),
            attempt,
            status: if a.ok { "success" } else { "failed" }.into(),
            started_at,
            duration_ms: t0.elapsed().as_millis() as i64,
            exit_code: a.exit_code,
            error: a.error.clone(),
            log_path: Some(log_path.to_string_lossy().into_owned()),
        }));
        report.attempts = attempt;
        let retry = !a.ok && !a.no_retry && attempt <= policy.max_for(a.exit_code);
        if !retry || rc.cancelled() {
            report.error = a.error;
            if a.no_retry
                && let Some(e) = &mut report.error
            {
                e.push_str(" (not retried: the step wrote {\"retry\": false})");
            }
            let checks_run =
                a.ok && !asset.checks.is_empty() && !a.metadata.contains_key("dg/no_output");
            if a.ok && range_keys.is_some() {
                report.status = StepStatus::Success;
                record_range(rc, si, &a.parts, &a.metadata, &mut report.records);
            } else if a.ok {
                report.status = StepStatus::Success;
                let data_version = a
                    .data_version
                    .clone()
                    .unwrap_or_else(|| run_version(&format!("{}/{step_id}", rc.run_id)));
                let mut latest = |u: AssetId, k: &str| rc.latest(u, k);
                let inputs =
                    crate::state::incremental::inputs_read(&rc.defs, step, &rc.cx, &mut latest);
                let mut metadata = a.metadata.clone();
                add_stored_metadata(&mut metadata, a.stored.as_ref());
                let created_at = timestamp();
                report
                    .records
                    .push(Record::Materialization(Materialization {
                        asset: asset.key.clone(),
                        partition: partition.clone(),
                        run_id: rc.run_id.clone(),
                        created_at: created_at.clone(),
                        code_version: asset.code_version.clone(),
                        data_version: data_version.clone(),
                        input_fp: crate::state::input_fingerprint_with(
                            &inputs,
                            asset
                                .config_affects_staleness
                                .then(|| crate::state::config_text(&asset.config))
                                .as_deref(),
                        ),
                        inputs,
                        metadata: serde_json::Value::Object(metadata),
                    }));
                rc.set_latest(step.asset, &key, &rc.run_id, Some(data_version), created_at);
            } else if let Some(keys) = &range_keys {
                for k in keys {
                    report.records.push(Record::Failed {
                        asset: asset.key.clone(),
                        partition: Some(k.clone()),
                        run_id: rc.run_id.clone(),
                    });
                }
            } else {
                report.records.push(Record::Failed {
                    asset: asset.key.clone(),
                    partition: partition.clone(),
                    run_id: rc.run_id.clone(),
                });
            }
            // After what was stored is recorded: checks see the partitions
            // (each of a range step's) through the asset's manager.
            if checks_run {
                let out = check::run_checks(rc, si, attempt, dog, &mut log);
                let _ = std::fs::remove_dir_all(rc.work_dir(si, attempt));
                report
                    .records
                    .extend(out.records.iter().cloned().map(Record::Check));
                report.checks = out.records;
                report.blocked_by = out.blocked_by;
            }
            report.stored = a.stored;
            report.metadata = a.metadata;
            return report;
        }
        let err = a.error.unwrap_or_default();
        let wait = policy.wait(attempt, fastrand::f64());
        reporter.event(
            rc,
            &Event::StepRetrying {
                step: si,
                attempt,
                error: &err,
                wait,
            },
        );
        attempt += 1;
        let until = Instant::now() + wait;
        while Instant::now() < until && !rc.cancelled() {
            std::thread::sleep(Duration::from_millis(10).min(until - Instant::now()));
        }
    }
}

/// Records each partition of a successful range step as materialized, with
/// the inputs that partition reads (its own, not the step's union), so that
/// `--stale` and `dg status` work per partition.
fn record_range(
    rc: &RunCtx,
    si: usize,
    parts: &[step::PartOutcome],
    step_metadata: &serde_json::Map<String, serde_json::Value>,
    records: &mut Vec<Record>,
) {
    let step = &rc.plan.steps[si];
    let asset = &rc.defs.assets[step.asset];
    let step_id = rc.step_id(si);
    let config = asset
        .config_affects_staleness
        .then(|| crate::state::config_text(&asset.config));
    for (&i, part) in step.range.iter().zip(parts) {
        let one = crate::plan::step_for(&rc.defs, step.asset, Some(i), &rc.cx);
        let mut latest = |u: AssetId, k: &str| rc.latest(u, k);
        let inputs = crate::state::incremental::inputs_read(&rc.defs, &one, &rc.cx, &mut latest);
        let data_version = part
            .data_version
            .clone()
            .unwrap_or_else(|| run_version(&format!("{}/{step_id}/{}", rc.run_id, part.key)));
        let mut metadata = step_metadata.clone();
        metadata.insert("dg/range_step".into(), serde_json::json!(step_id));
        add_stored_metadata(&mut metadata, part.stored.as_ref());
        let created_at = timestamp();
        records.push(Record::Materialization(Materialization {
            asset: asset.key.clone(),
            partition: Some(part.key.clone()),
            run_id: rc.run_id.clone(),
            created_at: created_at.clone(),
            code_version: asset.code_version.clone(),
            data_version: data_version.clone(),
            input_fp: crate::state::input_fingerprint_with(&inputs, config.as_deref()),
            inputs,
            metadata: serde_json::Value::Object(metadata),
        }));
        rc.set_latest(
            step.asset,
            &part.key,
            &rc.run_id,
            Some(data_version),
            created_at,
        );
    }
}

/// The upstream partition keys a step's input reads (`""` for an
/// unpartitioned upstream).
fn input_keys(inp: &crate::plan::StepInput, up: &crate::model::Asset, cx: &KeyCtx) -> Vec<String> {
    match (&inp.partitions, &up.partitions) {
        (Some(ix), Some(d)) => ix
            .iter()
            .map(|i| d.def.key(i, cx).unwrap_or_default())
            .collect(),
        _ => vec![String::new()],
    }
}

/// The data version of an output that has none of its own (nothing was
/// stored, or the manager gave none): a hash of where it was made, so it
/// differs per run.
fn run_version(made_at: &str) -> String {
    format!(
        "{:016x}",
        twox_hash::XxHash3_64::oneshot(made_at.as_bytes())
    )
}

/// What the manager said it stored (`Stored`'s fields but the empty ones),
/// into a materialization's metadata under `dg/`.
fn add_stored_metadata(
    metadata: &mut serde_json::Map<String, serde_json::Value>,
    stored: Option<&crate::io::Stored>,
) {
    if let Some(s) = stored
        && let Ok(serde_json::Value::Object(m)) = serde_json::to_value(s)
    {
        for (k, v) in m {
            if !v.is_null() {
                metadata.insert(format!("dg/{k}"), v);
            }
        }
    }
}
