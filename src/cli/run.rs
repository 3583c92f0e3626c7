//! `dg materialize`: run the plan, show progress, summarise.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::Session;
use super::plan::{TargetArgs, resolve};
use crate::error::{EXIT_HANGUP, EXIT_INTERRUPTED, Error, Outcome};
use crate::exec::{self, Event, Reporter, RunCtx, RunOptions, StepStatus};
use crate::model::{Job, JobTargeting};
use crate::state::{RunRecord, RunStatus};

/// The partition flags as given, for the run record.
fn partition_args(t: &TargetArgs) -> String {
    if t.all_partitions {
        "--all-partitions".into()
    } else if let Some(n) = t.last {
        format!("--last {n}")
    } else if let Some(p) = &t.partition {
        format!("--partition {p}")
    } else if let Some(r) = &t.partition_range {
        format!("--partition-range {r}")
    } else {
        String::new()
    }
}

/// Options of `dg materialize` besides the targeting.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// How many steps run at once (default: `[run] jobs`, else the number of CPUs)
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Stop starting new steps after the first failure
    #[arg(long)]
    pub fail_fast: bool,
    /// Print the plan and run nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print a JSON summary at the end (progress goes to stderr)
    #[arg(long)]
    pub json: bool,
    /// Only steps with no successful materialization
    #[arg(long, conflicts_with = "stale")]
    pub missing: bool,
    /// Steps that are missing or stale (code_version changed, or an input was
    /// materialized again since), and everything downstream of them
    #[arg(long)]
    pub stale: bool,
    /// Run config: `ASSET.FIELD=VALUE`, or `FIELD=VALUE` for every selected
    /// asset with that field (VALUE is a TOML scalar; other text is a string)
    #[arg(long, value_name = "[ASSET.]FIELD=VALUE")]
    pub config: Vec<String>,
    /// How failed steps and checks are reported besides the summary: `github`
    /// (workflow commands at each asset's definition; the default under
    /// GitHub Actions when stderr is not a terminal), `gitlab` (a Code Quality
    /// report on stdout), `json` (as `--json`) or `human`
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<super::ci::Format>,
    /// Write a JUnit XML report to FILE: one test case per step and per check
    #[arg(long, value_name = "FILE")]
    pub junit: Option<std::path::PathBuf>,
    /// Where steps run: `local` (this machine) or `slurm` (`sbatch` jobs running
    /// `dg step`) [default: `[executor] type` in dg.toml, else local]
    #[arg(long, value_enum, value_name = "EXECUTOR")]
    pub executor: Option<ExecutorArg>,
}

/// `--executor`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutorArg {
    Local,
    Slurm,
}

/// A run id: UTC time plus a few random hex digits.
fn new_run_id() -> String {
    let now = chrono::Utc::now();
    let nanos = now.timestamp_subsec_nanos() as u64;
    let salt =
        nanos ^ ((std::process::id() as u64) << 20) ^ (now.timestamp() as u64).rotate_left(17);
    format!("{}-{:06x}", now.format("%Y%m%dT%H%M%S"), salt & 0xff_ffff)
}

/// `dg materialize [--job NAME]`.
pub fn materialize(
    s: &Session,
    t: &TargetArgs,
    args: &RunArgs,
    job: Option<&str>,
) -> Result<Outcome, Error> {
    let Some(name) = job else {
        let r = resolve(s, t)?;
        return Ok(run_resolved(s, r, t, args, None, s.now)?.0);
    };
    let (project, defs) = s.load_defs()?;
    let Some(j) = defs.jobs.get(name) else {
        let names: Vec<&str> = defs.jobs.keys().map(String::as_str).collect();
        let help = if names.is_empty() {
            "no job is defined; add a `[jobs.NAME]` table (`dg scaffold defs job NAME`)".into()
        } else {
            let known = crate::diag::list_names(&names);
            match crate::diag::did_you_mean(name, names.iter().copied()) {
                Some(c) => format!("did you mean `{c}`? defined jobs: {known}"),
                None => format!("defined jobs: {known}"),
            }
        };
        return Err(Error::usage(format!("unknown job `{name}`")).help(help));
    };
    let (t, args) = job_args(j, t, args);
    let r = super::plan::resolve_with(s, project, defs, &t, s.now.timestamp())?;
    Ok(run_resolved(s, r, &t, &args, Some(name), s.now)?.0)
}

/// A job's selection, targeting and `missing`/`stale`, with what the
/// command line gives instead: `--select` replaces `select`, any partition
/// flag replaces the job's targeting, `--missing`/`--stale` replace its own.
pub fn job_args(j: &Job, t: &TargetArgs, args: &RunArgs) -> (TargetArgs, RunArgs) {
    let mut t = t.clone();
    if t.select.is_none() {
        t.select = Some(j.select.clone());
    }
    if !t.targets() {
        match &j.targeting {
            JobTargeting::None => {}
            JobTargeting::Partition(k) => t.partition = Some(k.clone()),
            JobTargeting::PartitionRange(r) => t.partition_range = Some(r.clone()),
            JobTargeting::Last(n) => t.last = Some(*n),
            JobTargeting::AllPartitions => t.all_partitions = true,
        }
    }
    let mut args = args.clone();
    if !args.missing && !args.stale {
        args.stale = j.stale;
        args.missing = j.missing && !j.stale;
    }
    (t, args)
}

/// Runs a resolved plan as of `now`. Returns what the run found and its
/// id when a run was recorded.
pub fn run_resolved(
    s: &Session,
    r: super::plan::Resolved,
    t: &TargetArgs,
    args: &RunArgs,
    job: Option<&str>,
    now: chrono::DateTime<chrono::FixedOffset>,
) -> Result<(Outcome, Option<String>), Error> {
    let opts = crate::run::Options {
        config: args.config.clone(),
        missing: args.missing,
        stale: args.stale,
    };
    let planned = crate::run::plan(r, &opts)?;
    if args.dry_run {
        super::plan::print(s, &planned.into_resolved(), args.json);
        return Ok((Outcome::Ok, None));
    }
    if planned.plan.steps.is_empty() {
        // CI uploads the report: an empty one says that nothing was to do.
        if let Some(path) = &args.junit {
            super::junit::write(path, "dg materialize", &exec::timestamp(), &[]).map_err(|e| {
                Error::io(format!(
                    "cannot write the JUnit report {}: {e:#}",
                    path.display()
                ))
            })?;
        }
        if args.format == Some(super::ci::Format::Gitlab) {
            s.out.json(&json!([]));
        } else if args.json || args.format == Some(super::ci::Format::Json) {
            s.out
                .json(&json!({"run_id": null, "status": "success", "steps": [], "checks": []}));
        } else {
            s.out.info("nothing to do");
        }
        return Ok((Outcome::Ok, None));
    }
    let cancel = Arc::new(AtomicBool::new(false));
    watch_signals(cancel.clone(), s.out.quiet);
    let run_id = new_run_id();
    let executor = match args.executor {
        Some(ExecutorArg::Local) => crate::model::ExecutorKind::Local,
        Some(ExecutorArg::Slurm) => crate::model::ExecutorKind::Slurm,
        None => planned.project.executor,
    };
    let run = planned.prepare(run_id.clone(), now, &s.registry, cancel, executor)?;
    for w in &run.warnings {
        s.out.warn(w);
    }
    let (rc, project) = (&run.rc, &run.project);
    let jobs = args
        .jobs
        .map(|j| j as usize)
        .or(project.jobs)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let tty = std::io::stderr().is_terminal() && !s.out.quiet;
    let format = super::ci::Format::resolve(args.format, args.json);
    // With a document on stdout, progress goes to stderr.
    let to_stderr = matches!(format, super::ci::Format::Json | super::ci::Format::Gitlab);
    let display = Display::new(s, rc.plan.steps.len(), tty, to_stderr);
    let record = RunRecord {
        id: run_id.clone(),
        started_at: exec::timestamp(),
        ended_at: None,
        status: RunStatus::Running,
        selection: t.select().to_string(),
        partitions: {
            let mut a = match job {
                Some(j) => {
                    let p = partition_args(t);
                    if p.is_empty() {
                        format!("--job {j}")
                    } else {
                        format!("--job {j} {p}")
                    }
                }
                None => partition_args(t),
            };
            for (on, flag) in [(args.missing, "--missing"), (args.stale, "--stale")] {
                if on {
                    if !a.is_empty() {
                        a.push(' ');
                    }
                    a.push_str(flag);
                }
            }
            a
        },
        dg_version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        host: crate::state::hostname(),
        steps: Some(rc.plan.steps.len() as i64),
        profile: project.selected_profile.clone(),
        config: {
            let mut c = serde_json::Map::new();
            for b in &rc.plan.blocks {
                let a = &rc.defs.assets[b.asset];
                if !a.config.is_empty() {
                    c.insert(a.key.clone(), json!(a.config));
                }
            }
            (!c.is_empty()).then_some(serde_json::Value::Object(c))
        },
    };
    let opts = RunOptions {
        jobs,
        fail_fast: args.fail_fast,
        pools: project.pools.clone(),
    };
    let executed = run.execute(&record, &opts, &display)?;
    display.finish();
    // The run goes on to its summary: these errors are shown before it.
    for e in [&executed.history, &executed.end].into_iter().flatten() {
        s.print_error(e);
    }
    let history_lost = executed.history.is_some();
    let mut success = executed.success();
    let summary = &executed.summary;

    let failed: Vec<&exec::StepReport> = summary
        .reports
        .iter()
        .filter(|r| r.status == StepStatus::Failed)
        .collect();
    // Tails of the failed steps' logs.
    for f in failed.iter().take(10) {
        if let Some(log) = &f.log {
            show_log_tail(s, &rc.step_id(f.step), f.error.as_deref(), log);
        }
    }
    let count = |st: StepStatus| summary.reports.iter().filter(|r| r.status == st).count();
    let (ok, bad, skip) = (
        count(StepStatus::Success),
        count(StepStatus::Failed),
        count(StepStatus::Skipped),
    );
    let checks: Vec<&crate::state::CheckRecord> =
        summary.reports.iter().flat_map(|r| &r.checks).collect();
    let checks_note = if checks.is_empty() {
        String::new()
    } else {
        let failed = checks.iter().filter(|c| !c.passed).count();
        format!(
            "; checks: {} passed, {failed} failed",
            checks.len() - failed
        )
    };
    let line = format!(
        "{} {ok} succeeded, {bad} failed, {skip} skipped{checks_note} in {:.2}s (run {run_id}){}",
        if success { "✓" } else { "✗" },
        summary.elapsed.as_secs_f64(),
        if summary.interrupted {
            " — interrupted"
        } else if history_lost {
            " — the run history could not be written"
        } else {
            ""
        }
    );
    let summary_json = run_summary_json(rc, summary, &run_id, success);
    match format {
        super::ci::Format::Github => s.out.raw(&super::ci::github(&run_findings(rc, summary))),
        super::ci::Format::Gitlab => s.out.json(&super::ci::gitlab(
            &run_findings(rc, summary),
            &crate::project::display_path(&project.root.join("dg.toml"), &s.cwd),
        )),
        _ => {}
    }
    if let Some(path) = &args.junit
        && let Err(e) = super::junit::write(
            path,
            &format!("dg materialize (run {run_id})"),
            &record.started_at,
            &junit_cases(rc, summary),
        )
    {
        s.print_error(&Error::io(format!(
            "cannot write the JUnit report {}: {e:#}",
            path.display()
        )));
        success = false;
    }
    if format == super::ci::Format::Json {
        s.out.err(&line);
        s.out.json(&summary_json);
    } else if success && format != super::ci::Format::Gitlab {
        s.out.info(&line);
    } else {
        s.out.err(&line);
    }
    run_hooks(s, project, &run_id, success, &summary_json);
    let outcome = match forced_exit() {
        Some(code) => Outcome::Interrupted(code),
        None => Outcome::ok_if(success),
    };
    Ok((outcome, Some(run_id)))
}

/// One JUnit test case per step and per check.
fn junit_cases(rc: &RunCtx, summary: &exec::RunSummary) -> Vec<super::junit::Case> {
    use super::junit::{Case, Outcome};
    let mut out = Vec::new();
    for r in &summary.reports {
        let a = &rc.defs.assets[rc.plan.steps[r.step].asset];
        let key = rc.partition_key(r.step);
        let name = if key.is_empty() { a.key.clone() } else { key };
        let outcome = match r.status {
            StepStatus::Success => Outcome::Passed,
            StepStatus::Skipped => Outcome::Skipped {
                message: r.error.clone().unwrap_or_else(|| "skipped".into()),
            },
            _ => {
                let error = r.error.clone().unwrap_or_else(|| "failed".into());
                let mut details = format!("{error}\ndefined at {}", a.defined_at);
                if let Some(log) = &r.log {
                    let tail = log_tail(log, TAIL_LINES, TAIL_LINE_BYTES, TAIL_BYTES);
                    details.push_str(&format!(
                        "\n--- last {} lines of {}:\n",
                        tail.lines.len(),
                        log.display()
                    ));
                    details.push_str(&tail.lines.join("\n"));
                }
                Outcome::Failed {
                    message: error,
                    details,
                }
            }
        };
        out.push(Case {
            classname: a.key.clone(),
            name,
            seconds: r.duration.as_secs_f64(),
            outcome,
            output: None,
        });
        for c in &r.checks {
            let name = match &c.partition {
                Some(p) => format!("check {} [{p}]", c.check),
                None => format!("check {}", c.check),
            };
            let message = c
                .message
                .clone()
                .unwrap_or_else(|| "the check failed".into());
            let (outcome, output) = match (c.passed, c.severity.as_str()) {
                (true, _) => (Outcome::Passed, c.message.clone()),
                (false, "warn") => (Outcome::Passed, Some(format!("warning: {message}"))),
                (false, _) => (
                    Outcome::Failed {
                        details: format!("{message}\ndefined at {}", a.defined_at),
                        message,
                    },
                    None,
                ),
            };
            out.push(Case {
                classname: c.asset.clone(),
                name,
                seconds: c.duration_ms as f64 / 1000.0,
                outcome,
                output,
            });
        }
    }
    out
}

/// Failed steps and failed checks, located at their asset's definition.
fn run_findings(rc: &RunCtx, summary: &exec::RunSummary) -> Vec<super::ci::Finding> {
    use super::ci::Finding;
    use crate::diag::Severity;
    let mut out = Vec::new();
    for r in &summary.reports {
        let a = &rc.defs.assets[rc.plan.steps[r.step].asset];
        if r.status == StepStatus::Failed {
            let mut message = r.error.clone().unwrap_or_else(|| "failed".into());
            if let Some(log) = &r.log {
                let tail = log_tail(log, TAIL_LINES, TAIL_LINE_BYTES, TAIL_BYTES);
                if !tail.lines.is_empty() {
                    message.push_str(&format!(
                        "\n--- last {} lines of {}:",
                        tail.lines.len(),
                        log.display()
                    ));
                    for l in &tail.lines {
                        message.push('\n');
                        message.push_str(l);
                    }
                }
            }
            out.push(
                Finding {
                    severity: Severity::Error,
                    check: "step_failed".into(),
                    title: format!("dg: step {} failed", rc.step_id(r.step)),
                    message,
                    file: None,
                    line: None,
                    col: None,
                }
                .locate(&a.defined_at),
            );
        }
        for c in r.checks.iter().filter(|c| !c.passed) {
            let on = match &c.partition {
                Some(p) => format!("{}[{p}]", c.asset),
                None => c.asset.clone(),
            };
            out.push(
                Finding {
                    severity: if c.severity == "warn" {
                        Severity::Warning
                    } else {
                        Severity::Error
                    },
                    check: "check_failed".into(),
                    title: format!("dg: check {} on {on} failed", c.check),
                    message: c
                        .message
                        .clone()
                        .unwrap_or_else(|| "the check failed".into()),
                    file: None,
                    line: None,
                    col: None,
                }
                .locate(&a.defined_at),
            );
        }
    }
    out
}

/// Runs `[hooks] on_success` or `on_failure` with `DG_RUN_SUMMARY` (written
/// to `<state>/logs/RUN_ID/summary.json`). A hook's failure is reported and
/// changes nothing else.
fn run_hooks(
    s: &Session,
    project: &crate::project::Project,
    run_id: &str,
    success: bool,
    summary: &serde_json::Value,
) {
    let (name, script) = if success {
        ("on_success", &project.hooks.on_success)
    } else {
        ("on_failure", &project.hooks.on_failure)
    };
    let Some(script) = script else { return };
    let dir = project.state_dir.join("logs").join(run_id);
    let path = dir.join("summary.json");
    let written = std::fs::create_dir_all(&dir).and_then(|_| {
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(summary).unwrap_or_default(),
        )
    });
    if let Err(e) = written {
        s.out.warn(&format!(
            "hook `{name}` not run: cannot write {}: {e}",
            path.display()
        ));
        return;
    }
    let status = if success { "success" } else { "failure" };
    if let Err(e) = exec::hooks::run_hook(&project.root, script, &path, run_id, status) {
        s.out.warn(&format!(
            "hook `{name}` failed ({e}); the run's status is unchanged"
        ));
    }
}

/// The run's JSON summary (`--json`, and `DG_RUN_SUMMARY` for hooks).
fn run_summary_json(
    rc: &RunCtx,
    summary: &exec::RunSummary,
    run_id: &str,
    success: bool,
) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = summary
        .reports
        .iter()
        .map(|r| {
            let st = &rc.plan.steps[r.step];
            let a = &rc.defs.assets[st.asset];
            let mut step = json!({
                "id": rc.step_id(r.step),
                "asset": a.key,
                "partition": match (&a.partitions, st.partition) {
                    (Some(p), Some(i)) => json!(p.def.key(i, &rc.cx)),
                    _ => json!(null),
                },
                "status": r.status,
                "attempts": r.attempts,
                "duration_ms": r.duration.as_millis() as u64,
                "error": r.error,
            });
            if !st.range.is_empty() {
                step["partitions"] = json!(rc.partition_keys(r.step));
            }
            step
        })
        .collect();
    let checks: Vec<serde_json::Value> = summary
        .reports
        .iter()
        .flat_map(|r| &r.checks)
        .map(|c| {
            json!({
                "asset": c.asset,
                "partition": c.partition,
                "check": c.check,
                "passed": c.passed,
                "severity": c.severity,
                "message": c.message,
            })
        })
        .collect();
    json!({
        "run_id": run_id,
        "status": if success { "success" } else { "failure" },
        "steps": steps,
        "checks": checks,
    })
}

/// How much of a failed step's log is shown: lines, bytes per line, bytes in all.
pub(super) const TAIL_LINES: usize = 20;
pub(super) const TAIL_LINE_BYTES: usize = 4096;
pub(super) const TAIL_BYTES: usize = 16384;

/// The end of a log, bounded in lines and bytes.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Tail {
    pub(super) lines: Vec<String>,
    /// Whether a line or the whole was cut to fit the bounds.
    cut: bool,
}

/// Reads the last `max_lines` lines of a log without reading the whole
/// file: at most `max_total` bytes, each line at most `max_line` bytes (its
/// end is kept). A `\r` starts the line again, as on a terminal, so a
/// progress bar shows as its last state.
pub(super) fn log_tail(
    path: &std::path::Path,
    max_lines: usize,
    max_line: usize,
    max_total: usize,
) -> Tail {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Tail::default();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // Enough to hold `max_lines` lines at `max_line` bytes, and a bit to
    // find where a line starts.
    let window = (max_lines * (max_line + 1) + 1) as u64;
    let start = len.saturating_sub(window);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.take(window).read_to_end(&mut buf).is_err() {
        return Tail::default();
    }
    if buf.is_empty() {
        return Tail::default();
    }
    let mut cut = false;
    let mut raw: Vec<&[u8]> = buf.split(|&b| b == b'\n').collect();
    if buf.last() == Some(&b'\n') {
        raw.pop();
    }
    // The first piece may be the end of a longer line.
    let first_partial = start > 0;
    let mut lines: Vec<String> = Vec::new();
    for (n, l) in raw.iter().enumerate() {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        let l = match l.iter().rposition(|&b| b == b'\r') {
            Some(i) => &l[i + 1..],
            None => l,
        };
        let partial = n == 0 && first_partial;
        let text = if l.len() > max_line || partial {
            cut = true;
            let keep = &l[l.len().saturating_sub(max_line.saturating_sub(4))..];
            format!(
                "…{}",
                String::from_utf8_lossy(keep).trim_start_matches('\u{fffd}')
            )
        } else {
            String::from_utf8_lossy(l).into_owned()
        };
        lines.push(text);
    }
    let skip = lines.len().saturating_sub(max_lines);
    let mut lines: Vec<String> = lines.split_off(skip);
    let mut total: usize = lines.iter().map(|l| l.len() + 1).sum();
    while total > max_total && lines.len() > 1 {
        total -= lines.remove(0).len() + 1;
        cut = true;
    }
    Tail { lines, cut }
}

/// The tail of a failed step's log, on stderr.
pub(super) fn show_log_tail(
    s: &Session,
    step_id: &str,
    error: Option<&str>,
    log: &std::path::Path,
) {
    let tail = log_tail(log, TAIL_LINES, TAIL_LINE_BYTES, TAIL_BYTES);
    s.out.err(&format!(
        "--- {step_id} failed: {} (last {} lines of {})",
        error.unwrap_or("failed"),
        tail.lines.len(),
        log.display()
    ));
    for l in &tail.lines {
        s.out.err(&format!("  | {l}"));
    }
    if tail.cut {
        s.out.err(&format!(
            "  (cut: at most {} KiB per line and {} KiB in all are shown; the whole log is in the file)",
            TAIL_LINE_BYTES / 1024,
            TAIL_BYTES / 1024
        ));
    }
}

/// SIGINT / SIGTERM: the first one cancels the run (running steps get
/// SIGTERM, then SIGKILL after a grace period; nothing new starts); a second
/// one kills every running step's process group at once and exits with 130.
/// SIGHUP (the terminal or ssh session is gone): every running step's
/// process group is killed at once and dg exits with 129.
///
/// The handlers only count deliveries; a thread acts on the counts. (A
/// signal iterator merges two signals that arrive before it wakes, which
/// lost the second Ctrl-C.)
pub(super) fn watch_signals(cancel: Arc<AtomicBool>, quiet: bool) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use std::sync::atomic::{AtomicUsize, Ordering};
    static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
    static HANGUPS: AtomicUsize = AtomicUsize::new(0);
    for (sig, count) in [
        (SIGINT, &INTERRUPTS),
        (SIGTERM, &INTERRUPTS),
        (SIGHUP, &HANGUPS),
    ] {
        // SAFETY: the handler only increments an atomic, which is
        // async-signal-safe.
        let registered = unsafe {
            signal_hook::low_level::register(sig, move || {
                count.fetch_add(1, Ordering::SeqCst);
            })
        };
        if let Err(e) = registered {
            tracing::warn!("cannot watch for signal {sig}: {e}");
        }
    }
    let spawned = std::thread::Builder::new()
        .name("dg-signals".into())
        .spawn(move || {
            let mut seen = 0;
            loop {
                std::thread::sleep(Duration::from_millis(20));
                if HANGUPS.load(Ordering::SeqCst) > 0 {
                    force_exit(
                        &cancel,
                        EXIT_HANGUP,
                        "dg: hangup: running steps killed",
                    );
                }
                let n = INTERRUPTS.load(Ordering::SeqCst);
                if n == seen {
                    continue;
                }
                seen = n;
                if n == 1 {
                    cancel.store(true, Ordering::SeqCst);
                    if !quiet {
                        let _ = writeln!(
                            std::io::stderr(),
                            "dg: interrupted: stopping the running steps (interrupt again to kill them at once)"
                        );
                    }
                    continue;
                }
                force_exit(
                    &cancel,
                    EXIT_INTERRUPTED,
                    "dg: interrupted twice: running steps killed",
                );
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch for Ctrl-C: {e}");
    }
}

/// The exit code a second interrupt or a hangup decided (0: none).
static FORCED_EXIT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The exit code a second interrupt or a hangup decided, if one did.
fn forced_exit() -> Option<i32> {
    match FORCED_EXIT.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        c => Some(c),
    }
}

/// Kills every running step at once and makes dg exit with `code`: the run
/// ends (recorded as canceled) and `materialize` returns `code`; should it
/// not within a few seconds (something that does not listen), dg exits here.
fn force_exit(cancel: &AtomicBool, code: i32, msg: &str) -> ! {
    use std::sync::atomic::Ordering;
    cancel.store(true, Ordering::SeqCst);
    // The terminal may be gone (a hangup): a failed write is ignored.
    let _ = writeln!(std::io::stderr(), "{msg}");
    FORCED_EXIT.store(code, Ordering::SeqCst);
    kill_steps_now();
    std::thread::sleep(Duration::from_secs(5));
    std::process::exit(code);
}

/// SIGKILL to every running step's process group, and to any that
/// registers in the next moment.
fn kill_steps_now() {
    exec::process::kill_everything();
    // A step spawned in this instant is killed as it registers.
    std::thread::sleep(Duration::from_millis(100));
    exec::process::kill_everything();
}

/// Terminal progress bar, or one plain line per finished step.
struct Display<'a> {
    s: &'a Session,
    bar: Option<ProgressBar>,
    running: Mutex<BTreeSet<usize>>,
    failures: Mutex<usize>,
    /// Steps waiting for a slot of their pool, and the pool.
    pool_waits: Mutex<std::collections::HashMap<usize, String>>,
    /// Plain lines go to stderr when stdout is reserved for JSON.
    to_stderr: bool,
}

impl<'a> Display<'a> {
    fn new(s: &'a Session, total: usize, tty: bool, json: bool) -> Self {
        let bar = tty.then(|| {
            let b = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise:.dim} {bar:30.cyan/blue} {pos}/{len} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("█▉▊▋▌▍▎▏ "),
            );
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Display {
            s,
            bar,
            running: Mutex::new(BTreeSet::new()),
            failures: Mutex::new(0),
            pool_waits: Mutex::new(Default::default()),
            to_stderr: json,
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn print(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None if self.to_stderr => self.s.out.err(line),
            None => self.s.out.info(line),
        }
    }

    fn refresh(&self, rc: &RunCtx) {
        let Some(b) = &self.bar else { return };
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = running.iter().take(3).map(|&s| rc.step_id(s)).collect();
        if running.len() > 3 {
            names.push(format!("+{}", running.len() - 3));
        }
        let failures = *self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let f = if failures > 0 {
            format!("  {failures} failed")
        } else {
            String::new()
        };
        let waits = self
            .pool_waits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        let w = if waits > 0 {
            format!("  {waits} waiting for a pool")
        } else {
            String::new()
        };
        b.set_message(format!("running: {}{f}{w}", names.join(", ")));
    }
}

impl Reporter for Display<'_> {
    fn event(&self, rc: &RunCtx, e: &Event<'_>) {
        match e {
            Event::Started => {}
            Event::Waiting { step, run_id } => {
                self.print(&format!(
                    "… {} waits: run {run_id} is materializing this partition",
                    rc.step_id(*step)
                ));
            }
            Event::StepStarted { step, .. } => {
                self.pool_waits
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(step);
                self.running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(*step);
                self.refresh(rc);
            }
            Event::StepRetrying {
                step,
                attempt,
                error,
                wait,
            } => {
                let when = if wait.is_zero() {
                    String::new()
                } else {
                    // Whole milliseconds: `1s 234ms`, not nanoseconds.
                    let ms = Duration::from_millis(wait.as_millis() as u64);
                    format!(" in {}", humantime::format_duration(ms))
                };
                self.print(&format!(
                    "↻ {} attempt {attempt} failed ({error}); retrying{when}",
                    rc.step_id(*step)
                ));
            }
            Event::PoolWaiting { step, pool, limit } => {
                // One line per pool while its steps wait, not one per step.
                let mut w = self.pool_waits.lock().unwrap_or_else(|e| e.into_inner());
                let first = !w.values().any(|p| p == pool);
                w.insert(*step, pool.to_string());
                drop(w);
                if first {
                    self.print(&format!(
                        "… {} waits: pool `{pool}` has all {limit} of its slots in use",
                        rc.step_id(*step)
                    ));
                }
                self.refresh(rc);
            }
            Event::StepFinished(r) => {
                self.running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&r.step);
                let id = rc.step_id(r.step);
                let ms = r.duration.as_millis();
                match r.status {
                    StepStatus::Success => {
                        if self.bar.is_none() {
                            let tries = if r.attempts > 1 {
                                format!(" after {} attempts", r.attempts)
                            } else {
                                String::new()
                            };
                            self.print(&format!("✓ {id} ({ms} ms){tries}"));
                        }
                    }
                    StepStatus::Failed => {
                        *self.failures.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                        self.print(&format!(
                            "✗ {id} failed after {} attempt{} ({ms} ms): {}",
                            r.attempts,
                            if r.attempts == 1 { "" } else { "s" },
                            r.error.as_deref().unwrap_or("")
                        ));
                    }
                    StepStatus::Skipped => {
                        self.print(&format!(
                            "- {id} {}",
                            r.error.as_deref().unwrap_or("skipped")
                        ));
                    }
                }
                for c in r.checks.iter().filter(|c| !c.passed) {
                    // A range step checks each of its partitions: name the one.
                    let id = match &c.partition {
                        Some(p) if !rc.plan.steps[r.step].range.is_empty() => {
                            format!("{}[{p}]", c.asset)
                        }
                        _ => id.clone(),
                    };
                    let blocking = if r.blocked_by.as_deref() == Some(c.check.as_str()) {
                        ", blocking"
                    } else {
                        ""
                    };
                    self.print(&format!(
                        "{} check {id} `{}` failed ({}{blocking}): {}",
                        if c.severity == "warn" { "!" } else { "✗" },
                        c.check,
                        c.severity,
                        c.message.as_deref().unwrap_or("")
                    ));
                }
                if let Some(b) = &self.bar {
                    b.inc(1);
                }
                self.refresh(rc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(bytes: &[u8]) -> Tail {
        let dir = tempfile::TempDir::new().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, bytes).unwrap();
        log_tail(&p, 3, 10, 25)
    }

    #[test]
    fn log_tail_is_bounded_in_lines_and_bytes() {
        assert_eq!(
            tail_of(b"a\nb\nc\nd\n"),
            Tail {
                lines: vec!["b".into(), "c".into(), "d".into()],
                cut: false
            }
        );
        // A long line keeps its end, with a mark.
        let t = tail_of(b"x\n0123456789abcdef\n");
        assert!(t.cut);
        assert_eq!(t.lines.last().unwrap(), "…abcdef");
        // A progress bar shows as its last state.
        let t = tail_of(b"10%\r50%\r100%\n");
        assert_eq!(t.lines, vec!["100%".to_string()]);
        // At most 25 bytes in all.
        let t = tail_of(b"aaaaaaaaa\nbbbbbbbbb\nccccccccc\n");
        assert_eq!(
            t.lines,
            vec!["bbbbbbbbb".to_string(), "ccccccccc".to_string()]
        );
        assert!(t.cut);
        // One huge line without a newline: only its end is read.
        let mut big = vec![b'y'; 1 << 20];
        big.extend_from_slice(b"END");
        let t = tail_of(&big);
        assert_eq!(t.lines.len(), 1);
        assert!(
            t.lines[0].ends_with("END") && t.lines[0].len() <= 10,
            "{:?}",
            t.lines
        );
        assert!(tail_of(b"").lines.is_empty());
    }
}
