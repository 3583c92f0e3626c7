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

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, Session};
use crate::exec::spec::StepSpec;
use crate::exec::{self, Event, Reporter, RunCtx, StepStatus};
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
) -> i32 {
    // The project, with the command line's profile, finds the store.
    let mut sources = crate::diag::Sources::default();
    let mut diags = crate::diag::Diagnostics::default();
    let Some(mut project) = crate::project::Project::discover(
        &s.cwd,
        s.global.project.as_deref(),
        &mut sources,
        &mut diags,
    ) else {
        s.report(&sources, &diags);
        return EXIT_USAGE;
    };
    if let Some(p) = s.global.profile.as_deref().filter(|p| !p.is_empty()) {
        project.select_profile(p, &mut diags);
    }
    if diags.has_errors() {
        s.report(&sources, &diags);
        return EXIT_USAGE;
    }
    let store: Arc<dyn StateStore> = match crate::state::open(&project) {
        Ok(st) => Arc::from(st),
        Err(e) => {
            s.out.error(&format!("{e:#}"));
            return EXIT_USAGE;
        }
    };
    let text = match (ids, spec_file) {
        (_, Some(f)) if f == Path::new("-") => {
            let mut t = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut t) {
                s.out
                    .error(&format!("cannot read the step spec from stdin: {e}"));
                return EXIT_USAGE;
            }
            t
        }
        (_, Some(f)) => match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                s.out
                    .error(&format!("cannot read the step spec {}: {e}", f.display()));
                return EXIT_USAGE;
            }
        },
        (Some((run, step)), None) => match store.step_spec(run, step) {
            Ok(Some(t)) => t,
            Ok(None) => {
                let known = store.run(run).ok().flatten().is_some();
                if known {
                    s.out.error(&format!("run {run} has no step `{step}`"));
                    s.out.err(&format!(
                        "help: `dg runs show {run}` lists its steps (runs recorded before dg recorded step specs cannot be run this way)"
                    ));
                } else {
                    s.out.error(&format!("no run {run} in the state store"));
                    s.out.err("help: `dg runs` lists the recorded runs; the state store must be the one the run used (`[state] url`)");
                }
                return EXIT_USAGE;
            }
            Err(e) => {
                s.out.error(&format!("cannot read the run history: {e:#}"));
                return EXIT_USAGE;
            }
        },
        (None, None) => {
            s.out.error("give RUN_ID and STEP_ID, or `--spec FILE`");
            return EXIT_USAGE;
        }
    };
    let spec = match StepSpec::parse(&text) {
        Ok(x) => x,
        Err(e) => {
            s.out.error(&e);
            return EXIT_USAGE;
        }
    };
    run_spec(s, store, &spec, attempt.unwrap_or(spec.attempt))
}

/// Loads the definitions with the spec's profile and runs the step.
fn run_spec(s: &Session, store: Arc<dyn StateStore>, spec: &StepSpec, attempt: u32) -> i32 {
    let profile = spec.profile.as_deref().or(s.global.profile.as_deref());
    let mut loaded = s.load_profile(profile);
    s.report(&loaded.sources, &loaded.diags);
    let (Some(project), Some(mut defs)) = (loaded.project.take(), loaded.defs.take()) else {
        s.out
            .error(&format!("could not load definitions: {}", loaded.diags));
        return EXIT_USAGE;
    };
    let now = match chrono::DateTime::parse_from_rfc3339(&spec.now) {
        Ok(t) => t,
        Err(e) => {
            s.out.error(&format!(
                "the step spec's `now` `{}` is invalid: {e}",
                spec.now
            ));
            return EXIT_USAGE;
        }
    };
    let cx = match super::plan::key_ctx_at(s, &defs, &project, now.timestamp()) {
        Ok(cx) => cx,
        Err(code) => return code,
    };
    let id = match spec.apply_to(&mut defs) {
        Ok(id) => id,
        Err(e) => {
            s.out.error(&format!("step `{}`: {e}", spec.step_id));
            return EXIT_USAGE;
        }
    };
    let plan = match spec.one_step_plan(&defs, id, &cx) {
        Ok(p) => p,
        Err(e) => {
            s.out.error(&format!("step `{}`: {e}", spec.step_id));
            return EXIT_USAGE;
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    super::run::watch_signals(cancel.clone(), s.out.quiet);
    let mut rc = match RunCtx::new(
        spec.run_id.clone(),
        now,
        project.root.clone(),
        project.state_dir.clone(),
        defs,
        plan,
        cx,
        &s.registry,
        cancel.clone(),
        Some(store.clone()),
    ) {
        Ok(rc) => rc,
        Err(errors) => {
            for e in errors {
                s.out.error(&e);
            }
            return EXIT_USAGE;
        }
    };
    if rc.step_id(0) != spec.step_id {
        s.out.error(&format!(
            "the step spec names step `{}`, but the definitions here make it `{}`",
            spec.step_id,
            rc.step_id(0)
        ));
        return EXIT_USAGE;
    }
    rc.started_at = spec.started_at.clone();
    rc.first_attempt = attempt;
    rc.profile = spec.profile.clone();

    let history = exec::history::History::start(store.clone());
    let lines = Lines(s);
    let reporter = exec::history::Fanout(vec![&history, &lines]);
    let report = {
        let _beat = exec::Heartbeat::start(store, rc.lease.clone());
        let finished = Arc::new(AtomicBool::new(false));
        let dog = exec::process::Watchdog::start(cancel, finished.clone());
        let r = exec::run_step(&rc, 0, &dog, &reporter);
        finished.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    };
    let mut report = report;
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
    reporter.event(&rc, &Event::StepFinished(&report));
    let errors = history.finish();
    // The run's own folder stays: other steps of the run may be using it
    // (the run removes it when it ends).
    rc.drop_scratch();
    if !errors.is_empty() {
        super::run::report_record_errors(s, &errors);
        return EXIT_FAILED;
    }
    let id = rc.step_id(0);
    match report.status {
        StepStatus::Success if report.blocked_by.is_none() => {
            s.out.info(&format!(
                "✓ {id} succeeded in {:.2}s (run {}, attempt {})",
                report.duration.as_secs_f64(),
                rc.run_id,
                report.attempts
            ));
            EXIT_OK
        }
        StepStatus::Success => {
            s.out.err(&format!(
                "✗ {id}: blocking check `{}` failed (run {})",
                report.blocked_by.as_deref().unwrap_or_default(),
                rc.run_id
            ));
            EXIT_FAILED
        }
        StepStatus::Skipped => {
            s.out.err(&format!(
                "✗ {id} {} (run {})",
                report.error.as_deref().unwrap_or("skipped"),
                rc.run_id
            ));
            EXIT_FAILED
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
            EXIT_FAILED
        }
    }
}
