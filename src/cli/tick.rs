//! `dg tick` and `dg list jobs`: scheduled jobs without a daemon.
//!
//! `dg tick` is meant to run often (a crontab line, a CI schedule). For each
//! job with a `cron`, it finds the ticks since the job's last recorded tick
//! (the first tick of a new job is the latest one at `--now`), claims each
//! tick it will run in the state store — one transaction that inserts the
//! tick under a primary key, so of two `dg tick` racing only one gets it —
//! then runs the job through the same code as `dg materialize --job`, as of
//! the tick's time, and records how it ended. `catchup = "latest"` claims
//! only the newest missed tick; `"all"` claims and runs each, oldest first.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone, Utc};
use serde_json::json;

use super::Session;
use super::plan::TargetArgs;
use super::run::{RunArgs, job_args, run_resolved};
use crate::error::{Error, Outcome};
use crate::model::{Catchup, Job, JobSchedule, JobTargeting};
use crate::state::{StateStore, TickClaim};

/// At most this many missed ticks are considered per job and `dg tick`
/// (a minutely job left alone for a week has ten thousand).
const MAX_MISSED: usize = 10_000;

fn rfc3339(t: i64) -> String {
    Utc.timestamp_opt(t, 0)
        .single()
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

/// The latest tick at or before `now`, Unix seconds.
fn latest_tick(s: &JobSchedule, now: i64) -> Option<i64> {
    let at = s.tz.timestamp_opt(now, 0).single()?;
    s.cron
        .find_previous_occurrence(&at, true)
        .ok()
        .map(|t| t.timestamp())
}

/// The first tick after `now`, Unix seconds.
fn next_tick(s: &JobSchedule, now: i64) -> Option<i64> {
    let at = s.tz.timestamp_opt(now, 0).single()?;
    s.cron
        .find_next_occurrence(&at, false)
        .ok()
        .map(|t| t.timestamp())
}

/// Ticks in `(after, now]`, oldest first, at most [`MAX_MISSED`] (the newest ones).
fn ticks_between(s: &JobSchedule, after: i64, now: i64) -> Vec<i64> {
    let mut out = std::collections::VecDeque::new();
    let Some(mut at) = s.tz.timestamp_opt(after, 0).single() else {
        return Vec::new();
    };
    while let Ok(n) = s.cron.find_next_occurrence(&at, false) {
        if n.timestamp() > now {
            break;
        }
        out.push_back(n.timestamp());
        if out.len() > MAX_MISSED {
            out.pop_front();
        }
        at = n;
    }
    out.into()
}

/// One tick to run, and why.
struct Due {
    job: String,
    tick: i64,
    reason: String,
}

/// The ticks of `job` due at `now`, given its last recorded tick.
fn due_ticks(job: &Job, s: &JobSchedule, last: Option<i64>, now: i64) -> Vec<Due> {
    let due = |tick: i64, reason: String| Due {
        job: job.name.clone(),
        tick,
        reason,
    };
    let Some(latest) = latest_tick(s, now) else {
        return Vec::new();
    };
    let Some(last) = last else {
        return vec![due(
            latest,
            format!(
                "first tick of a new job: the latest tick of `{}` at --now",
                s.expr
            ),
        )];
    };
    if latest <= last {
        return Vec::new();
    }
    let missed = ticks_between(s, last, now);
    let n = missed.len();
    match s.catchup {
        Catchup::Latest if n > 1 => vec![due(
            latest,
            format!(
                "`{}` ticked {n} times since the last recorded tick {}; catchup = \"latest\" runs the newest",
                s.expr,
                rfc3339(last)
            ),
        )],
        Catchup::Latest => vec![due(
            latest,
            format!(
                "`{}` ticked since the last recorded tick {}",
                s.expr,
                rfc3339(last)
            ),
        )],
        Catchup::All => missed
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                due(
                    t,
                    if n > 1 {
                        format!(
                            "missed tick {} of {n} of `{}` since {}; catchup = \"all\" runs each",
                            i + 1,
                            s.expr,
                            rfc3339(last)
                        )
                    } else {
                        format!(
                            "`{}` ticked since the last recorded tick {}",
                            s.expr,
                            rfc3339(last)
                        )
                    },
                )
            })
            .collect(),
    }
}

fn targeting_text(t: &JobTargeting) -> Option<String> {
    match t {
        JobTargeting::None => None,
        JobTargeting::Partition(k) => Some(format!("partition = {k}")),
        JobTargeting::PartitionRange(r) => Some(format!("partition_range = {r}")),
        JobTargeting::Last(n) => Some(format!("last = {n}")),
        JobTargeting::AllPartitions => Some("all_partitions".into()),
    }
}

/// `dg list jobs [--json]`.
pub fn list_jobs(s: &Session, json: bool) -> Result<Outcome, Error> {
    let (_project, defs) = s.load_defs()?;
    let now = s.now.timestamp();
    if json {
        let jobs: Vec<serde_json::Value> = defs
            .jobs
            .values()
            .map(|j| {
                json!({
                    "name": j.name,
                    "select": j.select,
                    "targeting": targeting_text(&j.targeting),
                    "missing": j.missing,
                    "stale": j.stale,
                    "cron": j.schedule.as_ref().map(|c| c.expr.clone()),
                    "timezone": j.schedule.as_ref().map(|c| c.tz.name()),
                    "catchup": j.schedule.as_ref().map(|c| c.catchup.as_str()),
                    "next_tick": j.schedule.as_ref().and_then(|c| next_tick(c, now)).map(rfc3339),
                })
            })
            .collect();
        s.out
            .json(&json!({"now": s.now.to_rfc3339(), "jobs": jobs}));
        return Ok(Outcome::Ok);
    }
    if defs.jobs.is_empty() {
        s.out
            .info("no jobs defined (add a `[jobs.NAME]` table: `dg scaffold defs job NAME`)");
        return Ok(Outcome::Ok);
    }
    for j in defs.jobs.values() {
        let mut parts = vec![format!("select {}", j.select)];
        parts.extend(targeting_text(&j.targeting));
        if j.stale {
            parts.push("stale".into());
        } else if j.missing {
            parts.push("missing".into());
        }
        s.out
            .line(&format!("{}  {}", s.out.green(&j.name), parts.join(", ")));
        match &j.schedule {
            Some(c) => s.out.line(&format!(
                "    cron `{}` ({}, catchup {}), next tick {}",
                c.expr,
                c.tz.name(),
                c.catchup.as_str(),
                next_tick(c, now).map_or_else(|| "never".into(), rfc3339)
            )),
            None => s
                .out
                .line(&s.out.dim("    no cron: run it with `dg materialize --job`")),
        }
    }
    Ok(Outcome::Ok)
}

/// `dg tick [--dry-run] [--json]`.
pub fn tick(s: &Session, dry_run: bool, json: bool) -> Result<Outcome, Error> {
    let (project, defs) = s.load_defs()?;
    let now = s.now.timestamp();
    let scheduled: Vec<(&Job, &JobSchedule)> = defs
        .jobs
        .values()
        .filter_map(|j| j.schedule.as_ref().map(|c| (j, c)))
        .collect();
    if scheduled.is_empty() {
        if json {
            s.out
                .json(&json!({"now": s.now.to_rfc3339(), "dry_run": dry_run, "ticks": []}));
        } else {
            s.out.info("no job has a `cron`: nothing to tick");
        }
        return Ok(Outcome::Ok);
    }
    let store: Arc<dyn StateStore> = crate::state::open(&project)
        .map(Arc::from)
        .map_err(|e| Error::store(format!("{e:#}")))?;
    let last: HashMap<String, i64> = store
        .last_ticks()
        .map_err(|e| Error::store(format!("cannot read the recorded ticks: {e:#}")))?;
    let due: Vec<Due> = scheduled
        .iter()
        .flat_map(|(j, c)| due_ticks(j, c, last.get(&j.name).copied(), now))
        .collect();

    // While running, a `--json` tick prints only its own document on stdout.
    let run_session = Session {
        cwd: s.cwd.clone(),
        now: s.now,
        registry: s.registry.clone(),
        out: super::Out {
            quiet: s.out.quiet || json,
            ..s.out
        },
        global: s.global.clone(),
    };
    let host = crate::state::hostname();
    let mut results = Vec::new();
    // Each due job is a run of its own: what goes wrong with one is
    // printed as it happens, and the others still run.
    let mut all_ok = true;
    for d in &due {
        let tick_time = rfc3339(d.tick);
        let mut entry = json!({"job": d.job, "tick": tick_time, "reason": d.reason});
        if dry_run {
            entry["status"] = json!("due");
            if !json {
                s.out
                    .line(&format!("due: {} at {tick_time}: {}", d.job, d.reason));
            }
            results.push(entry);
            continue;
        }
        let claim = TickClaim {
            job: d.job.clone(),
            tick: d.tick,
            tick_time: tick_time.clone(),
            pid: std::process::id(),
            host: host.clone(),
        };
        match store.claim_tick(&claim) {
            Ok(true) => {}
            Ok(false) => {
                entry["status"] = json!("claimed");
                if !json {
                    s.out.info(&format!(
                        "skip: {} at {tick_time}: already claimed by another `dg tick`",
                        d.job
                    ));
                }
                results.push(entry);
                continue;
            }
            Err(e) => {
                s.print_error(&Error::store(format!(
                    "cannot claim tick {tick_time} of job `{}`: {e:#}",
                    d.job
                )));
                entry["status"] = json!("error");
                results.push(entry);
                all_ok = false;
                continue;
            }
        }
        if !json {
            s.out
                .info(&format!("run: {} at {tick_time}: {}", d.job, d.reason));
        }
        let (status, run_id) = match run_job_at(&run_session, &defs, &project, &d.job, d.tick) {
            Ok((Outcome::Ok, id)) => ("success", id),
            Ok((Outcome::Failed, id)) => ("failure", id),
            Ok((_, id)) => ("error", id),
            Err(e) => {
                run_session.print_error(&e);
                let status = if e.exit_code() == crate::error::EXIT_FAILED {
                    "failure"
                } else {
                    "error"
                };
                (status, None)
            }
        };
        if status != "success" {
            all_ok = false;
        }
        if let Err(e) = store.finish_tick(&d.job, d.tick, status, run_id.as_deref()) {
            s.print_error(&Error::store(format!(
                "cannot record tick {tick_time} of job `{}`: {e:#}",
                d.job
            )));
            all_ok = false;
        }
        entry["status"] = json!(status);
        entry["run_id"] = json!(run_id);
        results.push(entry);
    }
    if json {
        let next: Vec<serde_json::Value> = scheduled
            .iter()
            .map(|(j, c)| {
                json!({
                    "job": j.name,
                    "last_tick": last.get(&j.name).copied().map(rfc3339),
                    "next_tick": next_tick(c, now).map(rfc3339),
                })
            })
            .collect();
        s.out.json(&json!({
            "now": s.now.to_rfc3339(),
            "dry_run": dry_run,
            "ticks": results,
            "jobs": next,
        }));
    } else if due.is_empty() {
        let soonest = scheduled
            .iter()
            .filter_map(|(j, c)| next_tick(c, now).map(|t| (t, &j.name)))
            .min();
        s.out.info(&match soonest {
            Some((t, name)) => format!(
                "nothing due at {} ({} scheduled job{}; next: {name} at {})",
                s.now.to_rfc3339(),
                scheduled.len(),
                if scheduled.len() == 1 { "" } else { "s" },
                rfc3339(t)
            ),
            None => format!("nothing due at {}", s.now.to_rfc3339()),
        });
    }
    Ok(Outcome::ok_if(all_ok))
}

/// Runs a job as of its tick, as `dg materialize --job NAME` would.
fn run_job_at(
    s: &Session,
    defs: &crate::model::Defs,
    project: &crate::project::Project,
    name: &str,
    tick: i64,
) -> Result<(Outcome, Option<String>), Error> {
    let Some(j) = defs.jobs.get(name) else {
        return Err(Error::usage(format!("unknown job `{name}`")));
    };
    let none = TargetArgs {
        select: None,
        partition: None,
        partition_range: None,
        all_partitions: false,
        last: None,
    };
    let no_flags = RunArgs {
        jobs: None,
        fail_fast: false,
        dry_run: false,
        json: false,
        missing: false,
        stale: false,
        config: Vec::new(),
        // `dg tick --json` keeps stdout for its own document.
        format: Some(super::ci::Format::Human),
        junit: None,
        executor: None,
    };
    let (t, args) = job_args(j, &none, &no_flags);
    let at: DateTime<FixedOffset> = Utc
        .timestamp_opt(tick, 0)
        .single()
        .ok_or_else(|| Error::usage(format!("tick {tick} of job `{name}` is out of range")))?
        .fixed_offset();
    let r = super::plan::resolve_with(s, project.clone(), defs.clone(), &t, tick)?;
    run_resolved(s, r, &t, &args, Some(name), at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{FileId, Span};

    fn job(cron: &str, tz: &str, catchup: Catchup) -> Job {
        let span = Span::new(FileId(0), 0..0);
        Job {
            name: "j".into(),
            select: "*".into(),
            select_span: span,
            targeting: JobTargeting::None,
            missing: false,
            stale: false,
            schedule: Some(JobSchedule {
                expr: cron.into(),
                cron: crate::partitions::time::parse_cron(cron).expect("valid cron"),
                tz: tz.parse().expect("valid zone"),
                catchup,
            }),
        }
    }

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .timestamp()
    }

    fn due(j: &Job, last: Option<&str>, now: &str) -> Vec<String> {
        let s = j.schedule.as_ref().expect("scheduled");
        due_ticks(j, s, last.map(at), at(now))
            .into_iter()
            .map(|d| rfc3339(d.tick))
            .collect()
    }

    #[test]
    fn a_new_job_is_due_once_at_its_latest_tick() {
        let j = job("0 * * * *", "UTC", Catchup::All);
        assert_eq!(
            due(&j, None, "2024-01-02T05:59:59Z"),
            ["2024-01-02T05:00:00Z"]
        );
        assert_eq!(
            due(&j, None, "2024-01-02T05:00:00Z"),
            ["2024-01-02T05:00:00Z"]
        );
        assert!(due(&j, Some("2024-01-02T05:00:00Z"), "2024-01-02T05:59:00Z").is_empty());
    }

    #[test]
    fn catchup_latest_runs_the_newest_and_all_runs_each() {
        let latest = job("0 * * * *", "UTC", Catchup::Latest);
        let all = job("0 * * * *", "UTC", Catchup::All);
        let last = Some("2024-01-02T01:00:00Z");
        assert_eq!(
            due(&latest, last, "2024-01-02T04:10:00Z"),
            ["2024-01-02T04:00:00Z"]
        );
        assert_eq!(
            due(&all, last, "2024-01-02T04:10:00Z"),
            [
                "2024-01-02T02:00:00Z",
                "2024-01-02T03:00:00Z",
                "2024-01-02T04:00:00Z"
            ]
        );
    }

    #[test]
    fn daylight_saving_time_skips_no_day_and_repeats_none() {
        let j = job("30 2 * * *", "Europe/Amsterdam", Catchup::All);
        // 02:30 does not exist on 2024-03-31: the tick is at 03:00 (01:00Z).
        assert_eq!(
            due(&j, Some("2024-03-30T01:30:00Z"), "2024-04-01T12:00:00Z"),
            ["2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"]
        );
        // 02:30 happens twice on 2024-10-27: one tick, the first.
        assert_eq!(
            due(&j, Some("2024-10-26T00:30:00Z"), "2024-10-28T12:00:00Z"),
            ["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"]
        );
    }
}
