//! A run as a library, without printing: a [`Target`] (selection and
//! partition targeting) is [`resolve`]d into a plan; [`plan`] opens the
//! state store and keeps the steps that will run ([`Planned`]);
//! [`Planned::prepare`] makes the [`Run`] (resources, inputs checked);
//! [`Run::execute`] records and runs it.
//!
//! `dg plan`, `dg materialize`, `dg tick`, `dg step` and tests call these;
//! the command line only parses arguments and renders what comes back
//! (notes, errors, progress, the summary). Errors are [`crate::error::Error`]s.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, FixedOffset};

use crate::error::{Error, Message};
use crate::exec::spec::StepSpec;
use crate::exec::{self, Event, Reporter, RunCtx, RunOptions, RunSummary, StepReport, StepStatus};
use crate::io::Registry;
use crate::model::{AssetId, ConfigOverride, Defs, ExecutorKind};
use crate::partitions::{KeyCtx, PartitionsDef};
use crate::plan::{Plan, Targeting};
use crate::project::Project;
use crate::state::incremental::Mode;
use crate::state::{RunRecord, RunStatus, StateStore};

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

/// How a run goes besides its target: what `dg materialize` and `dg tick`
/// pass to [`plan`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--config [ASSET.]FIELD=VALUE`, as given.
    pub config: Vec<String>,
    /// Only steps with no successful materialization.
    pub missing: bool,
    /// Only steps that are missing or stale, and what is downstream of them.
    pub stale: bool,
}

/// A plan as it will run: the state store open, run config applied,
/// `--missing`/`--stale` applied, consecutive partitions of `backfill`
/// assets grouped into range steps. Nothing ran yet.
pub struct Planned {
    pub project: Project,
    pub defs: Defs,
    pub plan: Plan,
    pub cx: KeyCtx,
    pub selected: Vec<AssetId>,
    pub store: Arc<dyn StateStore>,
}

/// Opens the state store and turns a resolved plan into the steps that will
/// run.
pub fn plan(mut r: Resolved, opts: &Options) -> Result<Planned, Error> {
    let project = r.project;
    let store: Arc<dyn StateStore> = crate::state::open(&project)
        .map(Arc::from)
        .map_err(|e| Error::store(format!("{e:#}")))?;
    store
        .reap_dead_runs()
        .map_err(|e| Error::store(format!("cannot read the run history: {e:#}")))?;
    exec::remove_stale_scratch(&project.state_dir, &*store);
    if !opts.config.is_empty() {
        let mut planned: Vec<AssetId> = r.plan.steps.iter().map(|st| st.asset).collect();
        planned.extend(r.selected.iter().copied());
        planned.sort_unstable();
        planned.dedup();
        let parsed: Vec<_> = opts.config.iter().map(|c| parse_config(c)).collect();
        let mut errors: Vec<String> = parsed
            .iter()
            .filter_map(|p| p.as_ref().err().map(ToString::to_string))
            .collect();
        let overrides: Vec<_> = parsed.into_iter().filter_map(Result::ok).collect();
        if let Err(e) = r.defs.apply_config(&planned, &overrides) {
            errors.extend(e);
        }
        if !errors.is_empty() {
            return Err(Error::Usage(Message::errors(errors)));
        }
    }
    let mut plan = r.plan;
    if opts.missing || opts.stale {
        let mode = if opts.stale {
            Mode::Stale
        } else {
            Mode::Missing
        };
        plan = crate::state::incremental::filter(plan, &r.defs, &r.cx, &*store, mode)
            .map_err(|e| Error::store(format!("cannot read the run history: {e:#}")))?;
    }
    // Consecutive partitions of assets with `backfill` become range steps,
    // after `--missing`/`--stale` kept what needs to run.
    let plan = plan.group_ranges(&r.defs);
    Ok(Planned {
        project,
        defs: r.defs,
        plan,
        cx: r.cx,
        selected: r.selected,
        store,
    })
}

impl Planned {
    /// The plan to show (`--dry-run`), the store closed.
    pub fn into_resolved(self) -> Resolved {
        Resolved {
            project: self.project,
            defs: self.defs,
            plan: self.plan,
            cx: self.cx,
            selected: self.selected,
        }
    }

    /// Makes the run: its resources opened, its inputs checked (every
    /// upstream partition it reads and does not make must exist), and for
    /// Slurm the cluster's preflight. `cancel` stops it once it runs.
    pub fn prepare(
        self,
        run_id: String,
        now: DateTime<FixedOffset>,
        registry: &Registry,
        cancel: Arc<AtomicBool>,
        executor: ExecutorKind,
    ) -> Result<Run, Error> {
        let project = self.project;
        let store = self.store;
        let mut rc = RunCtx::new(
            run_id,
            now,
            project.root.clone(),
            project.state_dir.clone(),
            self.defs,
            self.plan,
            self.cx,
            registry,
            cancel,
            Some(store.clone()),
        )
        .map_err(|errors| Error::Plan(Message::errors(errors.iter().map(ToString::to_string))))?;
        rc.profile = project.selected_profile.clone();
        check_inputs(&rc)?;
        let mut warnings = Vec::new();
        if executor == ExecutorKind::Slurm {
            let pre = exec::slurm::preflight(&rc, &project);
            warnings = pre.warnings;
            if !pre.errors.is_empty() {
                return Err(Error::Usage(Message::errors(pre.errors).help(
                    "nothing was submitted; `--executor local` runs the plan on this machine",
                )));
            }
        }
        Ok(Run {
            rc,
            project,
            store,
            executor,
            warnings,
        })
    }
}

/// A prepared run: [`Run::execute`] runs it.
pub struct Run {
    pub rc: RunCtx,
    pub project: Project,
    pub store: Arc<dyn StateStore>,
    pub executor: ExecutorKind,
    /// What the Slurm preflight warns about, to show before the run.
    pub warnings: Vec<String>,
}

/// What [`Run::execute`] did.
pub struct Executed {
    pub summary: RunSummary,
    /// Why the run history could not be written ([`Error::Run`]): the run
    /// is then a failure whatever its steps did.
    pub history: Option<Error>,
    /// Why the end of the run could not be recorded.
    pub end: Option<Error>,
}

impl Executed {
    /// Whether every step succeeded and the history knows it.
    pub fn success(&self) -> bool {
        self.summary.success() && self.history.is_none() && self.end.is_none()
    }
}

impl Run {
    /// The steps as specs, so `dg step RUN_ID STEP_ID` can run any of them.
    fn step_specs(&self) -> Vec<(String, String)> {
        (0..self.rc.plan.steps.len())
            .map(|si| (self.rc.step_id(si), self.rc.spec(si, 1).to_json()))
            .collect()
    }

    /// Records the run as `record`, runs it with `reporter` seeing every
    /// event (the history writer sees them too), and records its end.
    pub fn execute(
        &self,
        record: &RunRecord,
        opts: &RunOptions,
        reporter: &dyn Reporter,
    ) -> Result<Executed, Error> {
        let (rc, store, run_id) = (&self.rc, &self.store, &record.id);
        store
            .begin_run(record)
            .map_err(|e| Error::store(format!("cannot record the run: {e:#}")))?;
        if let Err(e) = store.save_step_specs(run_id, &self.step_specs()) {
            let _ = store.end_run(run_id, RunStatus::Failure, &exec::timestamp(), 0);
            return Err(Error::store(format!(
                "cannot record the run's steps: {e:#}"
            )));
        }
        let history = exec::history::History::start(store.clone());
        let fanout = exec::history::Fanout(vec![&history, reporter]);
        let summary = match self.executor {
            ExecutorKind::Local => exec::execute(rc, opts, &fanout),
            ExecutorKind::Slurm => {
                match exec::slurm::Slurm::new(&fanout, self.project.slurm.clone()) {
                    Ok(mut ex) => exec::schedule(rc, opts, &fanout, &mut ex),
                    Err(e) => {
                        let _ = history.finish();
                        let _ = store.end_run(run_id, RunStatus::Failure, &exec::timestamp(), 0);
                        return Err(Error::usage(e.to_string()));
                    }
                }
            }
        };
        // A run whose history could not be written is not a success: what it
        // materialized is not known to `status`, `--missing` or `--stale`.
        let errors = history.finish();
        let history = (!errors.is_empty()).then(|| record_errors(&errors));
        let status = if summary.interrupted {
            RunStatus::Canceled
        } else if summary.success() && history.is_none() {
            RunStatus::Success
        } else {
            RunStatus::Failure
        };
        let end = store
            .end_run(
                run_id,
                status,
                &exec::timestamp(),
                rc.plan.steps.len() as i64,
            )
            .err()
            .map(|e| Error::run(format!("recording the end of the run failed: {e:#}")));
        Ok(Executed {
            summary,
            history,
            end,
        })
    }
}

/// The run context of one step of a recorded run, from its spec (what
/// `dg step` runs): the spec's run, *now*, config and attempt, over the
/// definitions here.
pub fn step_ctx(
    spec: &StepSpec,
    project: &Project,
    mut defs: Defs,
    registry: &Registry,
    store: &Arc<dyn StateStore>,
    cancel: Arc<AtomicBool>,
    attempt: u32,
) -> Result<RunCtx, Error> {
    let now = DateTime::parse_from_rfc3339(&spec.now).map_err(|e| {
        Error::usage(format!(
            "the step spec's `now` `{}` is invalid: {e}",
            spec.now
        ))
    })?;
    let cx = key_ctx(&defs, project, now.timestamp())?;
    let in_step = |e: exec::spec::SpecError| Error::usage(format!("step `{}`: {e}", spec.step_id));
    let id = spec.apply_to(&mut defs).map_err(in_step)?;
    let plan = spec.one_step_plan(&defs, id, &cx).map_err(in_step)?;
    let mut rc = RunCtx::new(
        spec.run_id.clone(),
        now,
        project.root.clone(),
        project.state_dir.clone(),
        defs,
        plan,
        cx,
        registry,
        cancel,
        Some(store.clone()),
    )
    .map_err(|errors| Error::Plan(Message::errors(errors.iter().map(ToString::to_string))))?;
    if rc.step_id(0) != spec.step_id {
        return Err(Error::usage(format!(
            "the step spec names step `{}`, but the definitions here make it `{}`",
            spec.step_id,
            rc.step_id(0)
        )));
    }
    rc.started_at = spec.started_at.clone();
    rc.first_attempt = attempt;
    rc.profile = spec.profile.clone();
    Ok(rc)
}

/// Runs the one step of `rc` (from [`step_ctx`]) and records it in the
/// run's store, as the run's own scheduler would: its lease kept alive,
/// `cancel` watched, its result written. `reporter` sees every event.
/// `Err` ([`Error::Run`]) when the history could not be written.
pub fn execute_step(
    rc: &RunCtx,
    store: Arc<dyn StateStore>,
    cancel: Arc<AtomicBool>,
    reporter: &dyn Reporter,
) -> Result<StepReport, Error> {
    let history = exec::history::History::start(store.clone());
    let reporter = exec::history::Fanout(vec![&history, reporter]);
    let mut report = {
        let _beat = exec::Heartbeat::start(store, rc.lease.clone());
        let finished = Arc::new(AtomicBool::new(false));
        let dog = exec::process::Watchdog::start(cancel, finished.clone());
        let r = exec::run_step(rc, 0, &dog, &reporter);
        finished.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    };
    report
        .records
        .push(crate::state::Record::StepResult(crate::state::StepResult {
            run_id: rc.run_id.clone(),
            step_id: rc.step_id(0),
            attempt: rc.first_attempt,
            status: match report.status {
                StepStatus::Success => "success",
                StepStatus::Failed => "failed",
                StepStatus::Skipped => "skipped",
            }
            .into(),
            attempts: report.attempts,
            error: report.error.clone(),
            blocked_by: report.blocked_by.clone(),
            log_path: report
                .log
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            host: crate::state::hostname(),
            finished_at: exec::timestamp(),
        }));
    reporter.event(rc, &Event::StepFinished(&report));
    let errors = history.finish();
    // The run's own folder stays: other steps of the run may be using it
    // (the run removes it when it ends).
    rc.drop_scratch();
    if !errors.is_empty() {
        return Err(record_errors(&errors));
    }
    Ok(report)
}

/// Write errors of the history, once each with how often they happened: a
/// run error (exit 1).
pub fn record_errors(errors: &[String]) -> Error {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for e in errors {
        match seen.iter_mut().find(|(x, _)| *x == e.as_str()) {
            Some((_, n)) => *n += 1,
            None => seen.push((e, 1)),
        }
    }
    let lines = seen.into_iter().map(|(e, n)| {
        let times = if n > 1 {
            format!(" ({n} batches of records)")
        } else {
            String::new()
        };
        format!("recording the run history failed{times}: {e}")
    });
    Error::Run(Message::errors(lines).help(
        "the steps' outputs may be stored, but the run history does not know them, so the run is a failure; check the state database (for SQLite, `PRAGMA integrity_check`) and restore it from a backup",
    ))
}

/// Every upstream partition a step reads and the plan does not make must
/// exist; otherwise nothing runs, and the error says what is missing and
/// how to include it.
fn check_inputs(rc: &RunCtx) -> Result<(), Error> {
    match exec::missing_inputs(rc) {
        Ok(mut missing) if !missing.is_empty() => {
            // Keys come in the order the steps found them: show them in partition order.
            for (asset, keys) in &mut missing {
                let def = rc
                    .defs
                    .assets
                    .iter()
                    .find(|a| a.key == *asset)
                    .and_then(|a| a.partitions.as_ref());
                if let Some(p) = def {
                    keys.sort_by_cached_key(|k| {
                        (p.def.index_of(k, &rc.cx).unwrap_or(i64::MAX), k.clone())
                    });
                }
            }
            let mut msg = Message::new(
                "upstream partitions that this run reads are not materialized, so nothing ran",
            );
            for (asset, keys) in &missing {
                let shown = if keys.len() == 1 && keys[0].is_empty() {
                    String::new()
                } else {
                    let mut v: Vec<&str> = keys.iter().map(String::as_str).take(8).collect();
                    if keys.len() > 8 {
                        v.push("…");
                    }
                    format!(" [{}] ({})", v.join(", "), keys.len())
                };
                msg = msg.text(format!("  missing: `{asset}`{shown}"));
            }
            // Source assets are never materialized by dg: `+` cannot help.
            let is_source = |key: &str| {
                rc.defs
                    .assets
                    .iter()
                    .any(|a| a.key == key && matches!(a.compute, crate::model::Compute::Source))
            };
            // The planned assets that read what is missing: `+` on them
            // brings the missing partitions into the run.
            let mut readers: Vec<&str> = Vec::new();
            for st in &rc.plan.steps {
                let a = &rc.defs.assets[st.asset];
                let reads_missing = st.inputs.iter().any(|inp| {
                    let up = &rc.defs.assets[inp.upstream].key;
                    !inp.in_plan
                        && !a.inputs[inp.input].allow_missing_partitions
                        && !is_source(up)
                        && missing.iter().any(|(k, _)| k == up)
                });
                if reads_missing && !readers.contains(&a.key.as_str()) {
                    readers.push(&a.key);
                }
            }
            if !readers.is_empty() {
                let sel = readers
                    .iter()
                    .map(|k| format!("+{k}"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                msg = msg.help(format!(
                    "materialize them first, or include them in this run with `--select '{sel}'` (`+X` selects X and everything upstream of it)",
                ));
            }
            for (asset, _) in missing.iter().filter(|(k, _)| is_source(k)) {
                msg = msg.help(format!(
                    "`{asset}` is a source asset (`source = true`): dg never materializes it, so its data must already be where its I/O manager reads it"
                ));
            }
            Err(Error::Plan(msg))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(Error::plan(crate::plan::PlanError::new(format!(
            "pre-run check failed: {e}"
        )))),
    }
}

/// A malformed `--config`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigArgError {
    #[error("`--config {0}` has no `=`: write `ASSET.FIELD=VALUE` or `FIELD=VALUE`")]
    NoEquals(String),
    #[error("`--config {0}`: write `ASSET.FIELD=VALUE` or `FIELD=VALUE`")]
    Malformed(String),
}

/// Parses `--config [ASSET.]FIELD=VALUE`. The asset is what comes before
/// the last `.` (asset keys may hold dots; field names may not).
pub fn parse_config(given: &str) -> Result<ConfigOverride, ConfigArgError> {
    let Some((lhs, raw)) = given.split_once('=') else {
        return Err(ConfigArgError::NoEquals(given.to_string()));
    };
    let (asset, field) = match lhs.rsplit_once('.') {
        Some((a, f)) => (Some(a.to_string()), f.to_string()),
        None => (None, lhs.to_string()),
    };
    if field.is_empty() || asset.as_deref() == Some("") {
        return Err(ConfigArgError::Malformed(given.to_string()));
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => match t.remove("v") {
            Some(toml::Value::Datetime(d)) => serde_json::Value::String(d.to_string()),
            Some(v) => serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
            None => serde_json::Value::String(raw.to_string()),
        },
        Err(_) => serde_json::Value::String(raw.to_string()),
    };
    Ok(ConfigOverride {
        given: given.to_string(),
        asset,
        field,
        value,
    })
}
