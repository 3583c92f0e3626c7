//! `dg step`: run one planned step of a run here, from its spec, and record
//! it in the run's state store, as if the run's own scheduler had run it.
//! This is what an executor's job runs on a cluster node (`sbatch … dg step
//! RUN_ID STEP_ID`). Exit codes: 0 the step succeeded, 1 it failed or was
//! skipped, 2 the spec, the definitions or the store could not be used
//! (nothing ran).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::Session;
use crate::error::{Error, Outcome};
use crate::exec::spec::StepSpec;
use crate::exec::{Event, Reporter, RunCtx, StepStatus};
use crate::state::StateStore;

/// Says on stderr when an attempt fails and is retried.
struct Lines<'a>(&'a Session);

impl Reporter for Lines<'_> {
    fn event(&self, rc: &RunCtx, e: &Event<'_>) {
        match e {
            Event::StepRetrying {
                step,
                attempt,
                error,
                wait,
            } => self.0.out.err(&format!(
                "{} attempt {attempt} failed: {error}; retrying in {}",
                rc.step_id(*step),
                humantime::format_duration(*wait)
            )),
            Event::Waiting { step, run_id } => self.0.out.err(&format!(
                "{} waits for run {run_id}, which holds its partition",
                rc.step_id(*step)
            )),
            _ => {}
        }
    }
}

/// `dg step RUN_ID STEP_ID` (`ids`) or `dg step --spec FILE`.
pub fn step(
    s: &Session,
    ids: Option<(&str, &str)>,
    spec_file: Option<&Path>,
    attempt: Option<u32>,
) -> Result<Outcome, Error> {
    // The project, with the command line's profile, finds the store.
    let (mut project, sources, mut diags) = s.project()?;
    if let Some(p) = s.global.profile.as_deref().filter(|p| !p.is_empty()) {
        project.select_profile(p, &mut diags);
    }
    if diags.has_errors() {
        return Err(Error::project(sources, diags));
    }
    let store: Arc<dyn StateStore> = crate::state::open(&project)
        .map(Arc::from)
        .map_err(|e| Error::store(format!("{e:#}")))?;
    let text = match (ids, spec_file) {
        (_, Some(f)) if f == Path::new("-") => {
            let mut t = String::new();
            std::io::stdin()
                .read_to_string(&mut t)
                .map_err(|e| Error::usage(format!("cannot read the step spec from stdin: {e}")))?;
            t
        }
        (_, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| Error::usage(format!("cannot read the step spec {}: {e}", f.display())))?,
        (Some((run, step)), None) => match store.step_spec(run, step) {
            Ok(Some(t)) => t,
            Ok(None) => {
                let known = store.run(run).ok().flatten().is_some();
                return Err(if known {
                    Error::usage(format!("run {run} has no step `{step}`")).help(format!(
                        "`dg runs show {run}` lists its steps (runs recorded before dg recorded step specs cannot be run this way)"
                    ))
                } else {
                    Error::usage(format!("no run {run} in the state store")).help(
                        "`dg runs` lists the recorded runs; the state store must be the one the run used (`[state] url`)",
                    )
                });
            }
            Err(e) => {
                return Err(Error::store(format!("cannot read the run history: {e:#}")));
            }
        },
        (None, None) => return Err(Error::usage("give RUN_ID and STEP_ID, or `--spec FILE`")),
    };
    let spec = StepSpec::parse(&text).map_err(|e| Error::usage(e.to_string()))?;
    run_spec(s, store, &spec, attempt.unwrap_or(spec.attempt))
}

/// Loads the definitions with the spec's profile and runs the step.
fn run_spec(
    s: &Session,
    store: Arc<dyn StateStore>,
    spec: &StepSpec,
    attempt: u32,
) -> Result<Outcome, Error> {
    let profile = spec.profile.as_deref().or(s.global.profile.as_deref());
    let (project, defs) = s.load_defs_profile(profile)?;
    let cancel = Arc::new(AtomicBool::new(false));
    super::run::watch_signals(cancel.clone(), s.out.quiet);
    let rc = crate::run::step_ctx(
        spec,
        &project,
        defs,
        &s.registry,
        &store,
        cancel.clone(),
        attempt,
    )?;
    let report = crate::run::execute_step(&rc, store, cancel, &Lines(s))?;
    let id = rc.step_id(0);
    match report.status {
        StepStatus::Success if report.blocked_by.is_none() => {
            s.out.info(&format!(
                "✓ {id} succeeded in {:.2}s (run {}, attempt {})",
                report.duration.as_secs_f64(),
                rc.run_id,
                report.attempts
            ));
            Ok(Outcome::Ok)
        }
        StepStatus::Success => {
            s.out.err(&format!(
                "✗ {id}: blocking check `{}` failed (run {})",
                report.blocked_by.as_deref().unwrap_or_default(),
                rc.run_id
            ));
            Ok(Outcome::Failed)
        }
        StepStatus::Skipped => {
            s.out.err(&format!(
                "✗ {id} {} (run {})",
                report.error.as_deref().unwrap_or("skipped"),
                rc.run_id
            ));
            Ok(Outcome::Failed)
        }
        StepStatus::Failed => {
            match &report.log {
                Some(log) => super::run::show_log_tail(s, &id, report.error.as_deref(), log),
                None => s.out.err(&format!(
                    "--- {id} failed: {}",
                    report.error.as_deref().unwrap_or("failed")
                )),
            }
            s.out.err(&format!("✗ {id} failed (run {})", rc.run_id));
            Ok(Outcome::Failed)
        }
    }
}
