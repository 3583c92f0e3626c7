//! The Slurm executor: ready steps become `sbatch` jobs running `dg step
//! RUN_ID STEP_ID` on the cluster's nodes.
//!
//! - Steps handed over together ([`Executor::submit`] until the next
//!   [`Executor::wait`]) are grouped by asset and attempt; each group is one
//!   job array (`--array=0-N%max_array`) whose task `i` runs the step on
//!   line `i + 1` of a steps file, so 1,000 ready partitions are one
//!   `sbatch` call.
//! - Jobs are followed with `squeue -r -t all` (no accounting database is
//!   needed). When a task has ended, its outcome is what `dg step` recorded
//!   in the state store (`step_results`); a task that ended without
//!   recording one (the node died, `dg step` was killed, Slurm stopped it)
//!   is recorded here as a failed attempt and submitted again while the
//!   asset's retry policy allows.
//! - On interrupt every job of the run is cancelled with `scancel`.
//! - A task's own output (`dg step`'s messages) goes to
//!   `<state>/logs/<run>/slurm/<job>_<task>.out`; the step's log is where the
//!   local executor writes it.
//!
//! Everything the nodes touch (the project, the state store, storage) must be
//! shared with them: see the pre-flight checks in [`preflight`].

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::executor::{Executor, Wait};
use super::{Event, Reporter, RunCtx, StepError, StepReport, StepStatus};
use crate::model::SlurmOptions;
use crate::state::{AttemptRecord, Record};

/// A task of a job array: (array job id, task index).
type Task = (String, usize);

struct InFlight {
    step: usize,
    attempt: u32,
    submitted: Instant,
    /// Its Slurm output file.
    out: PathBuf,
}

/// Runs steps as Slurm jobs.
pub struct Slurm<'a> {
    reporter: &'a dyn Reporter,
    /// Run-level options (`[executor]`).
    options: SlurmOptions,
    /// The `dg` binary the jobs run.
    dg: PathBuf,
    /// Steps handed over and not submitted yet: (step, attempt).
    queued: Vec<(usize, u32)>,
    /// Submitted tasks that have not ended.
    running: HashMap<Task, InFlight>,
    /// Finished steps not reported yet.
    done: VecDeque<StepReport>,
    /// The current attempt of each step.
    attempt: HashMap<usize, u32>,
    /// Steps waiting to be submitted again after their job died: when.
    retry_at: Vec<(Instant, usize, u32)>,
    /// Every array job submitted (for `scancel`).
    jobs: Vec<String>,
    batches: usize,
    cancelled: bool,
    poll: Duration,
    last_poll: Option<Instant>,
}

/// How often jobs are polled: `DG_SLURM_POLL` (e.g. `500ms`), else 250 ms.
fn poll_interval() -> Duration {
    std::env::var("DG_SLURM_POLL")
        .ok()
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
        .unwrap_or(Duration::from_millis(250))
}

/// `s` quoted for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl<'a> Slurm<'a> {
    pub fn new(reporter: &'a dyn Reporter, options: SlurmOptions) -> Result<Slurm<'a>, StepError> {
        let dg = std::env::var_os("DG_SLURM_DG")
            .map(PathBuf::from)
            .map_or_else(std::env::current_exe, Ok)
            .map_err(StepError::DgBinary)?;
        Ok(Slurm {
            reporter,
            options,
            dg,
            queued: Vec::new(),
            running: HashMap::new(),
            done: VecDeque::new(),
            attempt: HashMap::new(),
            retry_at: Vec::new(),
            jobs: Vec::new(),
            batches: 0,
            cancelled: false,
            poll: poll_interval(),
            last_poll: None,
        })
    }

    fn dir(rc: &RunCtx) -> PathBuf {
        rc.state_dir.join("logs").join(&rc.run_id).join("slurm")
    }

    /// Submits what was handed over: one job array per asset and attempt.
    fn flush(&mut self, rc: &RunCtx) {
        let now = Instant::now();
        let due: Vec<(usize, u32)> = {
            let (due, later): (Vec<_>, Vec<_>) =
                self.retry_at.drain(..).partition(|(at, _, _)| *at <= now);
            self.retry_at = later;
            due.into_iter().map(|(_, s, a)| (s, a)).collect()
        };
        self.queued.extend(due);
        if self.queued.is_empty() || self.cancelled {
            return;
        }
        let mut groups: Vec<((usize, u32), Vec<usize>)> = Vec::new();
        for (si, attempt) in std::mem::take(&mut self.queued) {
            let key = (rc.plan.steps[si].asset, attempt);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(si),
                None => groups.push((key, vec![si])),
            }
        }
        for ((asset, attempt), steps) in groups {
            if let Err(e) = self.submit_array(rc, asset, attempt, &steps) {
                let e = e.to_string();
                for si in steps {
                    let mut r = super::skipped(si, &e);
                    r.status = StepStatus::Failed;
                    self.done.push_back(r);
                }
            }
        }
    }

    fn submit_array(
        &mut self,
        rc: &RunCtx,
        asset: usize,
        attempt: u32,
        steps: &[usize],
    ) -> Result<(), StepError> {
        let a = &rc.defs.assets[asset];
        let opts = match &a.executor {
            Some(o) => self.options.merged(o),
            None => self.options.clone(),
        };
        let dir = Self::dir(rc);
        std::fs::create_dir_all(&dir).map_err(|error| StepError::Create {
            path: dir.clone(),
            error,
        })?;
        self.batches += 1;
        let list = dir.join(format!("batch-{}.steps", self.batches));
        let mut text = String::new();
        for &si in steps {
            text.push_str(&rc.step_id(si));
            text.push('\n');
        }
        std::fs::write(&list, text).map_err(|error| StepError::Write {
            path: list.clone(),
            error,
        })?;
        let n = steps.len();
        let mut array = format!("0-{}", n - 1);
        if let Some(m) = opts.max_array {
            array.push_str(&format!("%{m}"));
        }
        let mut cmd = Command::new("sbatch");
        cmd.arg("--parsable")
            .arg(format!("--array={array}"))
            .arg(format!("--job-name=dg-{}", rc.run_id))
            .arg(format!("--chdir={}", rc.project_root.display()))
            .arg(format!("--output={}/%A_%a.out", dir.display()))
            .arg("--kill-on-invalid-dep=yes");
        for (flag, v) in [
            ("partition", &opts.partition),
            ("account", &opts.account),
            ("qos", &opts.qos),
            ("time", &opts.time),
            ("mem", &opts.mem),
        ] {
            if let Some(v) = v {
                cmd.arg(format!("--{flag}={v}"));
            }
        }
        if let Some(c) = opts.cpus_per_task {
            cmd.arg(format!("--cpus-per-task={c}"));
        }
        cmd.args(opts.extra_args.iter().flatten());
        let mut script = format!(
            "exec {} --project {} step --attempt {attempt} {} \"$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {})\"",
            sh_quote(&self.dg.to_string_lossy()),
            sh_quote(&rc.project_root.to_string_lossy()),
            sh_quote(&rc.run_id),
            sh_quote(&list.to_string_lossy()),
        );
        if let Some(p) = &rc.profile {
            script = script.replacen(" step ", &format!(" --profile {} step ", sh_quote(p)), 1);
        }
        cmd.arg("--wrap").arg(script);
        let t0 = Instant::now();
        let out = cmd.output().map_err(|error| StepError::Spawn {
            program: "sbatch".into(),
            error,
        })?;
        if !out.status.success() {
            return Err(StepError::Sbatch(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        if id.is_empty() {
            return Err(StepError::NoJobId);
        }
        tracing::debug!(
            "sbatch: {n} steps of `{}` (attempt {attempt}) as job array {id} in {:.1} ms",
            a.key,
            t0.elapsed().as_secs_f64() * 1000.0
        );
        let now = Instant::now();
        for (i, &si) in steps.iter().enumerate() {
            self.attempt.insert(si, attempt);
            self.running.insert(
                (id.clone(), i),
                InFlight {
                    step: si,
                    attempt,
                    submitted: now,
                    out: dir.join(format!("{id}_{i}.out")),
                },
            );
            self.reporter.event(rc, &Event::StepStarted { step: si });
        }
        self.jobs.push(id);
        Ok(())
    }

    /// Asks Slurm which tasks ended, and learns their outcome from the store.
    fn poll(&mut self, rc: &RunCtx) {
        self.last_poll = Some(Instant::now());
        if self.running.is_empty() {
            return;
        }
        let mut ids: Vec<&str> = self.running.keys().map(|(j, _)| j.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let states = match squeue(&ids) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        };
        let ended: Vec<(Task, String)> = self
            .running
            .keys()
            .filter_map(|t| match states.get(t) {
                Some(state) if !is_terminal(state) => None,
                Some(state) => Some((t.clone(), state.clone())),
                // Purged, or a pending task cancelled on its own.
                None => Some((t.clone(), "GONE".to_string())),
            })
            .collect();
        if ended.is_empty() {
            return;
        }
        let results: HashMap<String, crate::state::StepResult> = match &rc.store {
            Some(store) => match store.step_results(&rc.run_id) {
                Ok(v) => v.into_iter().map(|r| (r.step_id.clone(), r)).collect(),
                Err(e) => {
                    tracing::warn!("reading the steps' results: {e:#}");
                    return;
                }
            },
            None => HashMap::new(),
        };
        for (task, state) in ended {
            let Some(f) = self.running.remove(&task) else {
                continue;
            };
            let id = rc.step_id(f.step);
            match results.get(&id).filter(|r| r.attempt == f.attempt) {
                Some(r) => self.done.push_back(report_of(rc, &f, r)),
                None => self.died(rc, f, &task, &state),
            }
        }
    }

    /// A task ended without recording its step: the attempt failed.
    fn died(&mut self, rc: &RunCtx, f: InFlight, task: &Task, state: &str) {
        let si = f.step;
        let step = &rc.plan.steps[si];
        let asset = &rc.defs.assets[step.asset];
        let why = if self.cancelled || rc.cancelled() {
            "interrupted: the Slurm job was cancelled".to_string()
        } else {
            format!(
                "Slurm job {}_{} ended ({state}) without recording the step: the node, or `dg step` on it, died",
                task.0, task.1
            )
        };
        let mut records = vec![Record::Attempt(AttemptRecord {
            run_id: rc.run_id.clone(),
            step_id: rc.step_id(si),
            asset: asset.key.clone(),
            partition: {
                let keys = rc.partition_keys(si);
                match &keys[..] {
                    [one] if one.is_empty() => None,
                    [one] => Some(one.clone()),
                    [first, .., last] => Some(format!("{first}...{last}")),
                    [] => None,
                }
            },
            attempt: f.attempt,
            status: "failed".into(),
            started_at: super::timestamp(),
            duration_ms: f.submitted.elapsed().as_millis() as i64,
            exit_code: None,
            error: Some(why.clone()),
            log_path: Some(f.out.to_string_lossy().into_owned()),
        })];
        for key in rc.partition_keys(si) {
            // The dead process's leases go with this run's records.
            records.push(Record::Release {
                asset: asset.key.clone(),
                partition: key,
                run_id: rc.run_id.clone(),
            });
        }
        let retry = !self.cancelled && !rc.cancelled() && f.attempt <= asset.retry.max_for(None);
        if retry {
            if let Some(store) = &rc.store
                && let Err(e) = store.record(&records)
            {
                tracing::warn!("recording a dead job: {e:#}");
            }
            let wait = asset.retry.wait(f.attempt, fastrand::f64());
            self.reporter.event(
                rc,
                &Event::StepRetrying {
                    step: si,
                    attempt: f.attempt,
                    error: &why,
                    wait,
                },
            );
            self.retry_at
                .push((Instant::now() + wait, si, f.attempt + 1));
            return;
        }
        for key in rc.partition_keys(si) {
            records.push(Record::Failed {
                asset: asset.key.clone(),
                partition: (!key.is_empty()).then_some(key),
                run_id: rc.run_id.clone(),
            });
        }
        self.done.push_back(StepReport {
            attempts: f.attempt,
            duration: f.submitted.elapsed(),
            error: Some(why),
            log: Some(f.out),
            records,
            ..StepReport::new(si, StepStatus::Failed)
        });
    }
}

/// The report of a step whose `dg step` recorded its outcome (the records
/// themselves are in the store already).
fn report_of(rc: &RunCtx, f: &InFlight, r: &crate::state::StepResult) -> StepReport {
    let status = match r.status.as_str() {
        "success" => StepStatus::Success,
        "skipped" => StepStatus::Skipped,
        _ => StepStatus::Failed,
    };
    let checks = match &rc.store {
        Some(store)
            if !rc.defs.assets[rc.plan.steps[f.step].asset]
                .checks
                .is_empty() =>
        {
            let asset = &rc.defs.assets[rc.plan.steps[f.step].asset].key;
            let keys = rc.partition_keys(f.step);
            store
                .run_checks(&rc.run_id)
                .unwrap_or_default()
                .into_iter()
                .filter(|c| {
                    c.asset == *asset && keys.contains(&c.partition.clone().unwrap_or_default())
                })
                .collect()
        }
        _ => Vec::new(),
    };
    StepReport {
        attempts: r.attempts,
        duration: f.submitted.elapsed(),
        error: r.error.clone(),
        log: r
            .log_path
            .as_ref()
            .map(PathBuf::from)
            .or(Some(f.out.clone())),
        checks,
        blocked_by: r.blocked_by.clone(),
        ..StepReport::new(f.step, status)
    }
}

/// Whether a Slurm job state is final.
fn is_terminal(state: &str) -> bool {
    !matches!(
        state,
        "PENDING"
            | "RUNNING"
            | "CONFIGURING"
            | "COMPLETING"
            | "SUSPENDED"
            | "REQUEUED"
            | "REQUEUE_HOLD"
            | "REQUEUE_FED"
            | "RESIZING"
            | "SIGNALING"
            | "STAGE_OUT"
            | "STOPPED"
            | "RESV_DEL_HOLD"
    )
}

/// The state of every task of `jobs`: `squeue -h -r -t all -j …`.
fn squeue(jobs: &[&str]) -> Result<HashMap<Task, String>, StepError> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-t", "all", "-O", "JobArrayID:|,State:|"])
        .arg("-j")
        .arg(jobs.join(","))
        .output()
        .map_err(|error| StepError::Spawn {
            program: "squeue".into(),
            error,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // Every job was purged: they all ended.
        if err.contains("Invalid job id") {
            return Ok(HashMap::new());
        }
        return Err(StepError::Squeue(err.trim().to_string()));
    }
    Ok(parse_squeue(&text))
}

/// Lines `ARRAYID_INDEX|STATE|`; a job that is not an array is `ID|…`.
fn parse_squeue(text: &str) -> HashMap<Task, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut f = line.split('|');
        let (Some(id), Some(state)) = (f.next(), f.next()) else {
            continue;
        };
        let Some((job, task)) = id.trim().split_once('_') else {
            continue;
        };
        let Ok(task) = task.parse::<usize>() else {
            // A folded range (`12_[3-9]`): pending, not expanded.
            continue;
        };
        // `CANCELLED by 0` is `CANCELLED`.
        let state = state.split_whitespace().next().unwrap_or_default();
        out.insert((job.to_string(), task), state.to_string());
    }
    out
}

impl Executor for Slurm<'_> {
    fn capacity(&self) -> usize {
        // Slurm queues and throttles (`max_array`); everything ready goes.
        1_000_000
    }

    fn submit(&mut self, rc: &RunCtx, si: usize) -> Result<(), StepError> {
        let attempt = rc.first_attempt.max(1);
        self.queued.push((si, attempt));
        Ok(())
    }

    fn wait(&mut self, rc: &RunCtx, timeout: Option<Duration>) -> Wait {
        let start = Instant::now();
        self.flush(rc);
        loop {
            if let Some(r) = self.done.pop_front() {
                return Wait::Done(r);
            }
            if self.running.is_empty() && self.retry_at.is_empty() && self.queued.is_empty() {
                return Wait::Gone;
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Wait::Timeout;
            }
            if rc.cancelled() && !self.cancelled {
                self.cancel(rc);
            }
            let since = self.last_poll.map_or(self.poll, |t| t.elapsed());
            if since < self.poll {
                let mut nap = self.poll - since;
                if let Some(t) = timeout {
                    nap = nap.min(t.saturating_sub(start.elapsed()));
                }
                std::thread::sleep(nap.min(Duration::from_millis(50)));
                continue;
            }
            self.flush(rc);
            self.poll(rc);
            // Retries the cancellation stopped are given up.
            if self.cancelled {
                for (_, si, attempt) in std::mem::take(&mut self.retry_at) {
                    let mut r = super::skipped(si, "interrupted before its retry was submitted");
                    r.attempts = attempt - 1;
                    self.done.push_back(r);
                }
            }
        }
    }

    fn cancel(&mut self, _rc: &RunCtx) {
        self.cancelled = true;
        if self.jobs.is_empty() {
            return;
        }
        let out = Command::new("scancel").args(&self.jobs).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => tracing::warn!(
                "`scancel` failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => tracing::warn!("cannot run `scancel`: {e}"),
        }
    }

    fn finish(&mut self, rc: &RunCtx) {
        // Nothing is left behind, whatever ended the run.
        if !self.running.is_empty() {
            self.cancel(rc);
        }
    }
}

/// What makes a run unfit for Slurm, checked before anything is submitted:
/// errors (nothing may run) and warnings.
pub struct Preflight {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks that the nodes can do the run's steps: `sbatch` is on the PATH;
/// no step uses a `memory` manager (private to a process); the state store
/// and the managers' folders are not memory-backed file systems private to
/// this machine; SQLite on a local disk is a warning (Postgres is the
/// shared store; SQLite works only over a shared file system that locks).
pub fn preflight(rc: &RunCtx, project: &crate::project::Project) -> Preflight {
    let mut p = Preflight {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    if which("sbatch").is_none() {
        p.errors.push(
            "the Slurm executor needs `sbatch`, which is not on the PATH (is this a Slurm login node?)"
                .into(),
        );
    }
    let mut used: Vec<&str> = Vec::new();
    for st in &rc.plan.steps {
        let a = &rc.defs.assets[st.asset];
        used.push(&a.io_manager);
        for inp in &st.inputs {
            used.push(
                a.inputs[inp.input]
                    .input_manager
                    .as_deref()
                    .unwrap_or(&rc.defs.assets[inp.upstream].io_manager),
            );
        }
    }
    used.sort_unstable();
    used.dedup();
    for key in used {
        let Some(res) = rc.defs.resources.get(key) else {
            continue;
        };
        if res.type_name == "memory" {
            p.errors.push(format!(
                "resource `{key}` is a `memory` manager: what a step stores in it lives in that step's process, so no other step (on another node) can read it; use `fs`, `object_store` or a database"
            ));
            continue;
        }
        let dir = match (res.type_name.as_str(), res.config.get("base_dir")) {
            ("fs", Some(toml::Value::String(d))) => Some(project.root.join(d)),
            ("fs", None) => Some(project.state_dir.join("storage")),
            ("sqlite" | "duckdb", _) => match res.config.get("path") {
                Some(toml::Value::String(d)) => Some(project.root.join(d)),
                _ => None,
            },
            _ => None,
        };
        if let Some(dir) = dir
            && let Some(kind) = private_fs(&dir)
        {
            p.errors.push(format!(
                "resource `{key}` stores under {}, on a {kind} file system private to this machine: the nodes cannot reach it",
                dir.display()
            ));
        }
    }
    let sqlite = match project
        .state_url
        .as_ref()
        .and_then(|t| t.resolve_env().ok())
    {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => None,
        Some(u) => Some(
            project
                .root
                .join(u.trim_start_matches("sqlite:").trim_start_matches("//")),
        ),
        None => Some(project.state_dir.join("state.db")),
    };
    if let Some(db) = sqlite {
        if let Some(kind) = private_fs(&db) {
            p.errors.push(format!(
                "the state store {} is on a {kind} file system private to this machine: the nodes cannot record their steps",
                db.display()
            ));
        } else if !shared_fs(&db) {
            p.warnings.push(format!(
                "the state store {} is SQLite on a local disk: the nodes must reach it through a shared file system; use a Postgres state store (`[state] url = \"postgres://…\"`) for a cluster",
                db.display()
            ));
        }
    }
    if let Some(kind) = private_fs(&rc.state_dir) {
        p.errors.push(format!(
            "the state folder {} (the steps' logs) is on a {kind} file system private to this machine",
            rc.state_dir.display()
        ));
    }
    p
}

/// The nearest existing folder at or above `path`.
fn existing(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

/// `Some(name)` when `path` is on a memory-backed file system (tmpfs, ramfs).
// `FsType`'s number is a `c_long`: `i64` here, not everywhere.
#[allow(clippy::unnecessary_cast)]
fn private_fs(path: &Path) -> Option<&'static str> {
    use nix::sys::statfs::{TMPFS_MAGIC, statfs};
    let st = statfs(existing(path)?).ok()?;
    let t = st.filesystem_type();
    if t == TMPFS_MAGIC {
        Some("tmpfs")
    } else if t.0 as i64 == 0x8584_58f6 {
        Some("ramfs")
    } else {
        None
    }
}

/// Whether `path` is on a network or cluster file system.
#[allow(clippy::unnecessary_cast)]
fn shared_fs(path: &Path) -> bool {
    use nix::sys::statfs::{NFS_SUPER_MAGIC, SMB_SUPER_MAGIC, statfs};
    let Some(st) = existing(path).and_then(|p| statfs(p).ok()) else {
        return false;
    };
    let t = st.filesystem_type();
    // Lustre, GPFS, BeeGFS, CephFS, CIFS/SMB2, 9p and FUSE (sshfs, …).
    const OTHERS: [i64; 8] = [
        0x0BD0_0BD0,
        0x4750_4653,
        0x1983_0326,
        0x00C3_6400,
        0xFE53_4D42u32 as i64,
        0xFF53_4D42u32 as i64,
        0x0102_1997,
        0x6573_5546,
    ];
    t == NFS_SUPER_MAGIC || t == SMB_SUPER_MAGIC || OTHERS.contains(&(t.0 as i64))
}

/// The path of `prog` on the PATH, if any.
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_are_tasks_and_states() {
        let m = parse_squeue(
            "12_0|COMPLETED|\n12_1|CANCELLED by 0|\n12_[2-9%3]|PENDING|\n7|RUNNING|\n",
        );
        assert_eq!(
            m.get(&("12".into(), 0)).map(String::as_str),
            Some("COMPLETED")
        );
        assert_eq!(
            m.get(&("12".into(), 1)).map(String::as_str),
            Some("CANCELLED")
        );
        assert_eq!(m.len(), 2);
        assert!(is_terminal("FAILED") && is_terminal("NODE_FAIL") && !is_terminal("PENDING"));
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh_quote("a'b c"), r"'a'\''b c'");
    }
}
