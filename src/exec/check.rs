//! Asset checks: run after a step's partition is stored, against what was
//! stored (not the step's output file).
//!
//! A `sql` check sees the partition as a table named after the asset (its
//! last key segment, as a `deps` input would be named); when the asset
//! lives in a `sqlite` or `postgres` database the query runs there, over a
//! TEMP view, and no row passes through dg. Otherwise the partition is
//! loaded by the asset's manager into the embedded engine. A `shell` or
//! `command` check gets the partition as the file `$DG_INPUT_<ASSET>` and
//! passes on exit 0; `{"metadata": {…}}` lines it appends to `$DG_MESSAGES`
//! are recorded with the result. Output goes to the step's log.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use super::RunCtx;
use super::error::StepError;
use super::process::Watchdog;
use super::process::as_step;
use super::sql::{self, Params};
use super::step::{
    argv_command, create_messages, env_name, materialize_input, output_of, partition_ref,
    read_messages, shell_command,
};
use crate::io::{self, InputContext, Loaded, PartitionRef};
use crate::model::{Asset, Check, CheckKind, CheckSeverity};
use crate::state::CheckRecord;

/// The checks of one step.
#[derive(Debug, Default)]
pub struct Outcome {
    pub records: Vec<CheckRecord>,
    /// The first failed blocking error-check, when one failed: the steps
    /// downstream are skipped.
    pub blocked_by: Option<String>,
}

/// What the table (and `DG_INPUT_…`) of the checked asset is called: its
/// last key segment, as an input reading it through `deps` would be.
pub fn table_name(asset: &Asset) -> &str {
    asset.segments().last().unwrap_or(&asset.key)
}

/// Runs every check of step `si`'s asset on each partition it just stored:
/// the one partition of a step, or every partition of a range step, each
/// checked on its own (its own `DG_PARTITION_KEY`, its own rows).
pub fn run_checks(rc: &RunCtx, si: usize, attempt: u32, dog: &Watchdog, log: &mut File) -> Outcome {
    let step = &rc.plan.steps[si];
    let asset = &rc.defs.assets[step.asset];
    let partitions: Vec<Option<PartitionRef>> = match (&asset.partitions, step.partition) {
        (Some(p), Some(_)) => step
            .partitions()
            .into_iter()
            .map(|i| Some(partition_ref(&p.def, i, &rc.cx)))
            .collect(),
        _ => vec![None],
    };
    let work = rc.work_dir(si, attempt).join("check");
    let mut out = Outcome::default();
    for partition in partitions {
        if rc.cancelled() {
            break;
        }
        let mut cx = CheckCx {
            rc,
            si,
            asset,
            partition,
            loaded: None,
            work: work.clone(),
        };
        cx.run_all(dog, log, &mut out);
    }
    let _ = std::fs::remove_dir_all(&work);
    out
}

type Result3 = (
    bool,
    Option<String>,
    serde_json::Map<String, serde_json::Value>,
);

struct CheckCx<'a> {
    rc: &'a RunCtx,
    si: usize,
    asset: &'a Asset,
    partition: Option<PartitionRef>,
    /// The stored partition, loaded once for every check that needs it.
    loaded: Option<Result<Loaded, Arc<StepError>>>,
    work: std::path::PathBuf,
}

impl CheckCx<'_> {
    /// Runs every check of the asset on this partition, adding to `out`.
    fn run_all(&mut self, dog: &Watchdog, log: &mut File, out: &mut Outcome) {
        let asset = self.asset;
        // A range step's log names the partition each check ran on.
        let on = match &self.partition {
            Some(p) if !self.rc.plan.steps[self.si].range.is_empty() => format!(" on `{}`", p.key),
            _ => String::new(),
        };
        for check in &asset.checks {
            if self.rc.cancelled() {
                break;
            }
            let t0 = Instant::now();
            let _ = writeln!(log, "[dg] check `{}`{on}", check.name);
            let r = self.run(check, dog, log);
            let (passed, message, metadata) = match r {
                Ok(x) => x,
                Err(e) => (false, Some(e.to_string()), serde_json::Map::new()),
            };
            let _ = writeln!(
                log,
                "[dg] check `{}`{on}: {}{}",
                check.name,
                if passed { "passed" } else { "FAILED" },
                message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            if !passed
                && check.blocking
                && check.severity == CheckSeverity::Error
                && out.blocked_by.is_none()
            {
                out.blocked_by = Some(check.name.clone());
            }
            out.records.push(CheckRecord {
                run_id: self.rc.run_id.clone(),
                asset: asset.key.clone(),
                partition: self.partition.as_ref().map(|p| p.key.clone()),
                check: check.name.clone(),
                passed,
                severity: check.severity.as_str().to_string(),
                message,
                metadata: serde_json::Value::Object(metadata),
                created_at: super::timestamp(),
                duration_ms: t0.elapsed().as_millis() as i64,
            });
        }
    }

    fn run(&mut self, check: &Check, dog: &Watchdog, log: &mut File) -> Result<Result3, StepError> {
        match &check.kind {
            CheckKind::Sql(q) => self.sql(q).map(|rows| {
                let passed = rows.rows == 0;
                let mut md = serde_json::Map::new();
                md.insert("rows".into(), serde_json::json!(rows.rows));
                (passed, (!passed).then(|| rows.message()), md)
            }),
            CheckKind::Shell(script) => self.process(check, shell_command(script), dog, log),
            CheckKind::Command(argv) => self.process(check, argv_command(argv)?, dog, log),
        }
    }

    fn params(&self) -> Params {
        let window = self.partition.as_ref().and_then(|p| p.window);
        Params {
            partition_key: self.partition.as_ref().map(|p| p.key.clone()),
            partition_keys: None,
            partition_start: window.map(|w| w.0.to_rfc3339()),
            partition_end: window.map(|w| w.1.to_rfc3339()),
            run_id: self.rc.run_id.clone(),
        }
    }

    fn sql(&mut self, query: &str) -> Result<sql::CheckRows, StepError> {
        let asset = self.asset;
        let manager = self.rc.manager(&asset.io_manager)?;
        let key = self.partition.as_ref().map(|p| p.key.as_str());
        let params = self.params();
        if let Some(db) = sql::in_database(manager.as_ref()) {
            let q = sql::CheckQuery {
                asset_key: &asset.key,
                view: table_name(asset),
                partition: key,
                query,
                params: &params,
            };
            return db.check(&q).map_err(StepError::sql);
        }
        let loaded = self.load()?;
        sql::check_embedded(table_name(asset), loaded, query, &params).map_err(StepError::sql)
    }

    /// The stored partition, through the asset's manager.
    fn load(&mut self) -> Result<&Loaded, StepError> {
        if self.loaded.is_none() {
            let rc = self.rc;
            let asset = self.asset;
            let step_id = rc.step_id(self.si);
            let mlog = io::Log::default();
            let name = table_name(asset).to_string();
            let r = (|| {
                if !asset.output {
                    return Err(StepError::NothingStored);
                }
                let manager = rc.manager(&asset.io_manager)?;
                let ictx = InputContext {
                    input_name: name,
                    asset_key: asset.key.clone(),
                    upstream_output: output_of(rc, asset, None, step_id.clone(), mlog.clone()),
                    upstream_partitioned: asset.partitions.is_some(),
                    partitions: self.partition.iter().cloned().collect(),
                    format: asset.format,
                    resource_key: asset.io_manager.clone(),
                    run_id: rc.run_id.clone(),
                    step_id,
                    log: mlog,
                };
                manager
                    .load_input(&ictx)
                    .map_err(|error| StepError::LoadStored {
                        manager: asset.io_manager.clone(),
                        error,
                    })
            })();
            self.loaded = Some(r.map_err(Arc::new));
        }
        match self.loaded.as_ref() {
            Some(Ok(l)) => Ok(l),
            Some(Err(e)) => Err(StepError::Again(e.clone())),
            None => unreachable!("loaded above"),
        }
    }

    fn process(
        &mut self,
        check: &Check,
        mut cmd: Command,
        dog: &Watchdog,
        log: &mut File,
    ) -> Result<Result3, StepError> {
        let rc = self.rc;
        let asset = self.asset;
        let work = self.work.clone();
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(|error| StepError::Create {
            path: work.clone(),
            error,
        })?;
        let messages = create_messages(&work)?;
        let mut env: Vec<(String, String)> = vec![
            ("DG_RUN_ID".into(), rc.run_id.clone()),
            ("DG_ASSET_KEY".into(), asset.key.clone()),
            ("DG_CHECK_NAME".into(), check.name.clone()),
            ("DG_NOW".into(), rc.now.to_rfc3339()),
            (
                "DG_MESSAGES".into(),
                messages.to_string_lossy().into_owned(),
            ),
        ];
        if let Some(p) = &self.partition {
            env.push(("DG_PARTITION_KEY".into(), p.key.clone()));
            if let Some((s, e)) = p.window {
                env.push(("DG_PARTITION_START".into(), s.to_rfc3339()));
                env.push(("DG_PARTITION_END".into(), e.to_rfc3339()));
            }
            for (dim, k) in &p.dims {
                env.push((format!("DG_PARTITION_{}", env_name(dim)), k.clone()));
            }
        }
        if asset.output {
            let name = table_name(asset).to_string();
            let format = asset.format;
            let loaded = self.load()?;
            let files = materialize_input(loaded, format, &work.join("inputs"), 0, &name)
                .map_err(StepError::HandOver)?;
            env.push((
                format!("DG_INPUT_{}", env_name(&name)),
                files.path.to_string_lossy().into_owned(),
            ));
        }
        for (k, t) in &asset.env {
            env.push((
                k.clone(),
                t.resolve_env()
                    .map_err(|e| StepError::unset(format!("env.{k}"), e))?,
            ));
        }
        let start = log.seek(SeekFrom::End(0)).unwrap_or(0);
        as_step(cmd.envs(env), &rc.project_root, log).map_err(StepError::Log)?;
        let mut child = cmd.spawn().map_err(StepError::CheckSpawn)?;
        let (status, timed_out) = dog.wait(&mut child, asset.timeout, "check")?;
        let metadata = read_messages(&messages, log);
        if timed_out {
            return Ok((false, Some("timed out".into()), metadata));
        }
        if status.success() {
            return Ok((true, None, metadata));
        }
        let mut why = StepError::Exited(status).to_string();
        if let Some(line) = last_line(&rc.log_path(self.si), log, start) {
            why.push_str(&format!(": {line}"));
        }
        Ok((false, Some(why), metadata))
    }
}

/// The last non-empty line written to the log (`path`, open for appending
/// as `log`) after `start` (at most 4 KiB are read), cut to 300 bytes.
fn last_line(path: &std::path::Path, log: &mut File, start: u64) -> Option<String> {
    let end = log.seek(SeekFrom::End(0)).ok()?;
    let from = start.max(end.saturating_sub(4096));
    let mut f = File::open(path).ok()?;
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut buf = Vec::new();
    f.take(end - from).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| sql::cut_text(l.to_string(), 300))
}
