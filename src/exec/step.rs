//! Running one step: a function of (plan step, run context).
//!
//! It loads the step's inputs through their managers into files in the
//! step's format, runs the compute as a child process with the environment
//! of the step contract (docs/step-environment.md), and hands the output file to the asset's manager, which
//! stores it atomically. Nothing here depends on the scheduler: `dg step`
//! runs the same code for a single step (see `exec::spec`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::RunCtx;
use super::error::StepError;
use super::process::{Watchdog, as_step};
use crate::io::{self, Data, Format, InputContext, Loaded, OutputContext, PartitionRef, Stored};
use crate::model::{Asset, Compute, SqlEngine};
use crate::partitions::PartitionsDef;
use crate::plan::Step;
use crate::sql;

/// The result of one attempt of one step.
#[derive(Debug, Default)]
pub struct Attempt {
    pub ok: bool,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    pub stored: Option<Stored>,
    /// Content hash of the output as the step wrote it.
    pub data_version: Option<String>,
    /// Metadata the step appended to `DG_MESSAGES`.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The step wrote `{"retry": false}` to `DG_MESSAGES`: a failure is final.
    pub no_retry: bool,
    /// A range step: what was stored for each of its partitions, in order.
    pub parts: Vec<PartOutcome>,
}

/// One partition of a range step, once stored.
#[derive(Debug, Default)]
pub struct PartOutcome {
    pub key: String,
    pub stored: Option<Stored>,
    /// Content hash of the partition's rows, as dg wrote them.
    pub data_version: Option<String>,
}

impl Attempt {
    fn fail(error: impl std::fmt::Display) -> Attempt {
        Attempt {
            ok: false,
            error: Some(error.to_string()),
            ..Attempt::default()
        }
    }
}

pub use crate::names::env_name;

/// The partition of a step as managers and the environment see it.
pub fn partition_ref(def: &PartitionsDef, i: i64, cx: &crate::partitions::KeyCtx) -> PartitionRef {
    let key = def.key(i, cx).unwrap_or_default();
    let mut dims = Vec::new();
    let mut window = None;
    match def {
        PartitionsDef::Time(t) => {
            window = t
                .window(i)
                .map(|(s, e)| (s.fixed_offset(), e.fixed_offset()));
        }
        PartitionsDef::Multi(m) => {
            if let Some((a, b)) = crate::partitions::MultiPartitions::split(&key) {
                for ((name, d), k) in m.dims.iter().zip([a, b]) {
                    dims.push((name.clone(), k.to_string()));
                    if let (PartitionsDef::Time(t), Some(j)) = (&**d, d.index_of(k, cx)) {
                        window = t
                            .window(j)
                            .map(|(s, e)| (s.fixed_offset(), e.fixed_offset()));
                    }
                }
            }
        }
        _ => {}
    }
    PartitionRef { key, dims, window }
}

/// The context of `asset`'s output (`partition` of it) in this run, for
/// step `step_id`.
pub(super) fn output_of(
    rc: &RunCtx,
    asset: &Asset,
    partition: Option<PartitionRef>,
    step_id: String,
    log: io::Log,
) -> OutputContext {
    OutputContext {
        asset_key: asset.key.clone(),
        partition,
        format: asset.format,
        resource_key: asset.io_manager.clone(),
        metadata: asset.metadata.clone(),
        run_id: rc.run_id.clone(),
        step_id,
        log,
    }
}

/// Runs attempt `attempt` (1-based) of step `si`.
pub fn run_attempt(
    rc: &RunCtx,
    si: usize,
    attempt: u32,
    dog: &Watchdog,
    log: &mut File,
) -> Attempt {
    let step = &rc.plan.steps[si];
    let asset = &rc.defs.assets[step.asset];
    let work = rc.work_dir(si, attempt);
    let result = (|| -> Result<Attempt, StepError> {
        let recycled = rc
            .take_scratch(&work)
            .map_err(|error| StepError::WorkFolder {
                path: work.clone(),
                error,
            })?;
        if recycled {
            clear_work(&work);
        }
        let out = prepare_and_run(rc, si, step, asset, attempt, &work, dog, log, true)?;
        Ok(out)
    })();
    let mut a = match result {
        Ok(a) => a,
        Err(e) => Attempt::fail(e),
    };
    if !a.ok {
        a.no_retry = asks_no_retry(&work.join("messages.jsonl"));
    }
    clear_work(&work);
    rc.park_scratch(&work);
    a
}

/// Whether the step wrote `{"retry": false}` to `DG_MESSAGES`.
fn asks_no_retry(path: &Path) -> bool {
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(f) = File::open(path) else {
        return false;
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .any(|v| v.get("retry") == Some(&serde_json::Value::Bool(false)))
}

/// Removes what an attempt left in its scratch folder: its inputs and an
/// output that was not stored. `context.json` and `messages.jsonl` are
/// truncated and rewritten by the next attempt that takes the folder over.
fn clear_work(work: &Path) {
    let _ = std::fs::remove_dir_all(work.join("inputs"));
    if let Ok(entries) = std::fs::read_dir(work) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("output") {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn prepare_and_run(
    rc: &RunCtx,
    si: usize,
    step: &Step,
    asset: &Asset,
    attempt: u32,
    work: &Path,
    dog: &Watchdog,
    log: &mut File,
    allow_in_db: bool,
) -> Result<Attempt, StepError> {
    let step_id = rc.step_id(si);
    let mlog = io::Log::to_file(log.try_clone().map_err(StepError::Log)?);
    // A range step: its partitions; it has no single partition.
    let range: Option<Vec<PartitionRef>> = match &asset.partitions {
        Some(p) if !step.range.is_empty() => Some(
            step.range
                .iter()
                .map(|&i| partition_ref(&p.def, i, &rc.cx))
                .collect(),
        ),
        _ => None,
    };
    let partition = match (&asset.partitions, step.partition) {
        (Some(p), Some(i)) if range.is_none() => Some(partition_ref(&p.def, i, &rc.cx)),
        _ => None,
    };
    // The time span of the step: its partition's window, or from the first
    // window's start to the last window's end.
    let span: Option<(String, String)> = match &range {
        Some(parts) => match (
            parts.first().and_then(|p| p.window),
            parts.last().and_then(|p| p.window),
        ) {
            (Some(a), Some(b)) => Some((a.0.to_rfc3339(), b.1.to_rfc3339())),
            _ => None,
        },
        None => partition
            .as_ref()
            .and_then(|p| p.window)
            .map(|w| (w.0.to_rfc3339(), w.1.to_rfc3339())),
    };
    let range_keys: Option<Vec<String>> = range
        .as_ref()
        .map(|parts| parts.iter().map(|p| p.key.clone()).collect());
    let ext = asset.format.extension();
    let output = work.join(format!("output{ext}"));
    let messages = create_messages(work)?;

    let mut env: Vec<(String, String)> = vec![
        ("DG_RUN_ID".into(), rc.run_id.clone()),
        ("DG_ASSET_KEY".into(), asset.key.clone()),
        ("DG_ATTEMPT".into(), attempt.to_string()),
        ("DG_NOW".into(), rc.now.to_rfc3339()),
        ("DG_OUTPUT".into(), output.to_string_lossy().into_owned()),
        (
            "DG_MESSAGES".into(),
            messages.to_string_lossy().into_owned(),
        ),
    ];
    let lookup = crate::interp::env_var;
    let metadata = crate::interp::resolve_json(&json!(asset.metadata), &lookup)
        .map_err(|e| StepError::unset("metadata", e))?;
    let tags = crate::interp::resolve_json(&json!(asset.tags), &lookup)
        .map_err(|e| StepError::unset("tags", e))?;
    let mut ctx_json = json!({
        "run_id": rc.run_id,
        "step_id": step_id,
        "asset_key": asset.key,
        "attempt": attempt,
        "now": rc.now.to_rfc3339(),
        "partition_key": partition.as_ref().map(|p| &p.key),
        "partition_keys": range_keys,
        "partition_start": span.as_ref().map(|w| &w.0),
        "partition_end": span.as_ref().map(|w| &w.1),
        "partition_dimensions": null,
        "output": if asset.output { json!(output.to_string_lossy()) } else { json!(null) },
        "format": asset.format.name(),
        "messages": messages.to_string_lossy(),
        "metadata": metadata,
        "tags": tags,
        "code_version": asset.code_version,
        "inputs": {},
    });
    if let Some(keys) = &range_keys {
        env.push((
            "DG_PARTITION_KEYS".into(),
            serde_json::to_string(keys).unwrap_or_default(),
        ));
    }
    if let Some((s, e)) = &span {
        env.push(("DG_PARTITION_START".into(), s.clone()));
        env.push(("DG_PARTITION_END".into(), e.clone()));
    }
    if let Some(p) = &partition {
        env.push(("DG_PARTITION_KEY".into(), p.key.clone()));
        for (dim, k) in &p.dims {
            env.push((format!("DG_PARTITION_{}", env_name(dim)), k.clone()));
        }
    }
    if let Some(dims) = ctx_json.get_mut("partition_dimensions")
        && let Some(p) = &partition
    {
        *dims = json!(
            p.dims
                .iter()
                .map(|(d, k)| (d.clone(), json!(k)))
                .collect::<serde_json::Map<_, _>>()
        );
    }

    // A `sql` asset whose inputs all live in its own database (sqlite or
    // postgres) runs there.
    let in_db = match &asset.compute {
        Compute::Sql(_) if allow_in_db && range.is_some() => {
            let _ = writeln!(
                log,
                "[dg] sql: runs in the embedded engine: a range step's rows are split by `dg_partition` in dg"
            );
            None
        }
        Compute::Sql(_) if allow_in_db => match in_db_target(rc, step, asset) {
            Ok(db) => Some(db),
            Err(why) => {
                let _ = writeln!(log, "[dg] sql: runs in the embedded engine: {why}");
                None
            }
        },
        _ => None,
    };
    let mut db_inputs: Vec<super::sql::DbInput> = Vec::new();

    // Inputs.
    let mut sql_inputs: Vec<super::sql::SqlInput> = Vec::new();
    for (n, inp) in step.inputs.iter().enumerate() {
        let spec = &asset.inputs[inp.input];
        if !spec.load {
            continue;
        }
        let up = &rc.defs.assets[inp.upstream];
        let manager_key = spec.input_manager.as_deref().unwrap_or(&up.io_manager);
        let manager = rc.manager(manager_key)?;
        let mut parts: Vec<PartitionRef> = Vec::new();
        if let (Some(ix), Some(p)) = (&inp.partitions, &up.partitions) {
            for i in ix.iter() {
                parts.push(partition_ref(&p.def, i, &rc.cx));
            }
        }
        let ictx = InputContext {
            input_name: spec.name.clone(),
            asset_key: asset.key.clone(),
            upstream_output: output_of(rc, up, None, step_id.clone(), mlog.clone()),
            upstream_partitioned: up.partitions.is_some(),
            partitions: parts,
            format: asset.format,
            resource_key: manager_key.to_string(),
            run_id: rc.run_id.clone(),
            step_id: step_id.clone(),
            log: mlog.clone(),
        };
        let mut ictx = ictx;
        if spec.allow_missing_partitions {
            // Leave out what is not stored (never materialized, or failed in this run).
            let mut kept = Vec::new();
            for p in std::mem::take(&mut ictx.partitions) {
                let exists =
                    manager
                        .exists(&ictx.upstream_partition(Some(&p)))
                        .map_err(|error| StepError::Input {
                            input: spec.name.clone(),
                            error,
                        })?;
                if exists {
                    kept.push(p);
                } else {
                    mlog.info(format!(
                        "input `{}`: partition `{}` of `{}` is missing and left out",
                        spec.name, p.key, up.key
                    ));
                }
            }
            ictx.partitions = kept;
        }
        if in_db.is_some() {
            // Read where it is, by a view: nothing is loaded.
            db_inputs.push(super::sql::DbInput {
                name: spec.name.clone(),
                asset_key: up.key.clone(),
                partitions: ictx
                    .upstream_partitioned
                    .then(|| ictx.partitions.iter().map(|p| p.key.clone()).collect()),
            });
            continue;
        }
        let loaded = if !ictx.upstream_partitioned || !ictx.partitions.is_empty() {
            manager.load_input(&ictx).map_err(|error| StepError::Load {
                input: spec.name.clone(),
                upstream: up.key.clone(),
                manager: manager_key.to_string(),
                error,
            })?
        } else {
            Loaded::Partitions(Default::default())
        };
        if let Compute::Sql(_) = asset.compute {
            // A table in the embedded engine, not a file.
            sql_inputs.push(super::sql::SqlInput {
                name: spec.name.clone(),
                loaded,
            });
            continue;
        }
        let var = format!("DG_INPUT_{}", env_name(&spec.name));
        let files = materialize_input(&loaded, asset.format, &work.join("inputs"), n, &spec.name)
            .map_err(|error| StepError::Input {
            input: spec.name.clone(),
            error,
        })?;
        env.push((var.clone(), files.path.to_string_lossy().into_owned()));
        let mut ij = json!({ "path": files.path.to_string_lossy(), "asset": up.key });
        if let Some(pf) = &files.partitions_file {
            env.push((
                format!("{var}_PARTITIONS"),
                pf.to_string_lossy().into_owned(),
            ));
            ij["partitions_file"] = json!(pf.to_string_lossy());
            ij["partitions"] = json!(
                files
                    .partitions
                    .iter()
                    .map(|(k, p)| json!({"key": k, "path": p.to_string_lossy()}))
                    .collect::<Vec<_>>()
            );
        }
        ctx_json["inputs"][&spec.name] = ij;
    }
    // Settings resources the asset declares: every field in the
    // environment, the non-secret ones in DG_CONTEXT.
    let mut resources = serde_json::Map::new();
    for name in &asset.resources {
        let mut fields = serde_json::Map::new();
        for (field, value, secret) in rc.settings.get(name).into_iter().flatten() {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            env.push((
                format!("DG_RESOURCE_{}_{}", env_name(name), env_name(field)),
                text,
            ));
            if !secret {
                fields.insert(field.clone(), json!(value));
            }
        }
        resources.insert(name.clone(), serde_json::Value::Object(fields));
    }
    ctx_json["resources"] = serde_json::Value::Object(resources);
    // Run config: the asset's defaults with `--config` applied.
    if !asset.config.is_empty() {
        env.push(("DG_CONFIG".into(), crate::state::config_text(&asset.config)));
        ctx_json["config"] = json!(asset.config);
    }
    for (k, t) in &asset.env {
        let v = t
            .resolve_env()
            .map_err(|e| StepError::unset(format!("env.{k}"), e))?;
        env.push((k.clone(), v));
    }
    let context_path = work.join("context.json");
    std::fs::write(
        &context_path,
        serde_json::to_vec_pretty(&ctx_json).unwrap_or_default(),
    )
    .map_err(|error| StepError::Write {
        path: context_path.clone(),
        error,
    })?;
    env.push((
        "DG_CONTEXT".into(),
        context_path.to_string_lossy().into_owned(),
    ));

    // The compute.
    let mut cmd = match &asset.compute {
        Compute::Command(argv) => argv_command(argv)?,
        Compute::Shell(script) => shell_command(script),
        Compute::Sql(query) => {
            let _ = writeln!(log, "[dg] {step_id} attempt {attempt}");
            let params = super::sql::Params {
                partition_key: partition.as_ref().map(|p| p.key.clone()),
                partition_keys: range_keys
                    .as_ref()
                    .map(|k| serde_json::to_string(k).unwrap_or_default()),
                partition_start: span.as_ref().map(|w| w.0.clone()),
                partition_end: span.as_ref().map(|w| w.1.clone()),
                run_id: rc.run_id.clone(),
            };
            if let Some(db) = in_db {
                let octx = output_of(rc, asset, partition.clone(), step_id.clone(), mlog.clone());
                let q = super::sql::RunQuery {
                    query,
                    inputs: &db_inputs,
                    params: &params,
                    octx: &octx,
                };
                let ran = db.run(&q, log);
                match ran {
                    Ok(stored) => {
                        let mut metadata = serde_json::Map::new();
                        metadata.insert("dg/in_database".into(), json!(true));
                        // Counted like the embedded path counts what it loads: nothing was.
                        metadata.insert("dg/rows_moved".into(), json!(0));
                        return Ok(Attempt {
                            ok: true,
                            exit_code: Some(0),
                            stored: Some(stored),
                            metadata,
                            ..Attempt::default()
                        });
                    }
                    Err(super::sql::InDbError::Failed(e)) => {
                        return Ok(Attempt::fail(at_definition(e, asset)));
                    }
                    Err(super::sql::InDbError::Fallback(why)) => {
                        // Nothing changed; load the inputs and run it here.
                        let _ = writeln!(log, "[dg] sql: runs in the embedded engine: {why}");
                        return prepare_and_run(
                            rc, si, step, asset, attempt, work, dog, log, false,
                        );
                    }
                }
            }
            let ran = match super::sql::run(
                sql_engine(rc, asset)?,
                &asset.key,
                query,
                &sql_inputs,
                &params,
                asset.format,
                &output,
                log,
            ) {
                Ok(r) => r,
                Err(e) => return Ok(Attempt::fail(at_definition(e.to_string(), asset))),
            };
            let mut a = store_output(
                rc, asset, partition, range, step_id, mlog, output, &messages, log, None,
            )?;
            a.metadata.insert("dg/in_database".into(), json!(false));
            a.metadata
                .insert("dg/rows_moved".into(), json!(ran.rows_loaded));
            return Ok(a);
        }
        Compute::Source => return Err(StepError::Source),
    };
    let _ = writeln!(log, "[dg] {step_id} attempt {attempt}");
    cmd.envs(crate::interp::overlay()).envs(env);
    as_step(&mut cmd, &rc.project_root, log).map_err(StepError::Log)?;
    let mut child = cmd.spawn().map_err(|error| StepError::Spawn {
        program: match &asset.compute {
            Compute::Command(argv) => argv[0].to_string(),
            _ => "sh".to_string(),
        },
        error,
    })?;
    // The timeout covers storing too: what is left of it when the step ends.
    let deadline = asset
        .timeout
        .and_then(|t| std::time::Instant::now().checked_add(t));
    let (status, timed_out) = dog.wait(&mut child, asset.timeout, "step")?;
    if timed_out {
        return Ok(Attempt {
            ok: false,
            error: Some(format!(
                "timed out after {}; the step's processes were stopped",
                humantime::format_duration(asset.timeout.unwrap_or_default())
            )),
            exit_code: status.code(),
            ..Attempt::default()
        });
    }
    if rc.cancelled() {
        return Ok(Attempt::fail("interrupted"));
    }
    if !status.success() {
        return Ok(Attempt {
            exit_code: status.code(),
            ..Attempt::fail(StepError::Exited(status))
        });
    }
    store_output(
        rc, asset, partition, range, step_id, mlog, output, &messages, log, deadline,
    )
}

/// The engine a `sql` asset's query is written for: its `engine`, else
/// DuckDB when the asset is stored by a `duckdb` resource, else SQLite.
fn sql_engine(rc: &RunCtx, asset: &Asset) -> Result<SqlEngine, StepError> {
    if let Some(e) = asset.sql_engine {
        return Ok(e);
    }
    #[cfg(feature = "duckdb")]
    if sql::in_database(rc.manager(&asset.io_manager)?.as_ref()).and_then(|d| d.engine())
        == Some(SqlEngine::Duckdb)
    {
        return Ok(SqlEngine::Duckdb);
    }
    let _ = rc;
    Ok(SqlEngine::Sqlite)
}

/// The database a `sql` asset runs inside, when it can: the asset stores
/// its output through a `sqlite` (or `postgres`) resource and every loaded
/// input is stored by a resource of the same type on the same database
/// (the same resource, or the same file; for Postgres the same URL and
/// schema), read by its own manager (no `input_manager`), and the asset
/// declares no `columns`. Otherwise, why not.
fn in_db_target<'a>(
    rc: &'a RunCtx,
    step: &Step,
    asset: &Asset,
) -> Result<&'a dyn sql::InDatabase, Embedded> {
    if !asset.output {
        return Err(Embedded::NoOutput);
    }
    if !asset.columns.is_empty() {
        // Declared types are applied by dg to the rows it stores.
        return Err(Embedded::Columns);
    }
    let manager = rc.manager(&asset.io_manager)?;
    let engine = sql_engine(rc, asset)?;
    let target = match sql::in_database(manager.as_ref()) {
        // A query that names no engine runs in the database's own dialect.
        Some(db) if asset.sql_engine.is_none() || asset.sql_engine == db.engine() => db,
        None => return Err(Embedded::NotADatabase(asset.io_manager.clone())),
        Some(_) => {
            return Err(Embedded::OtherEngine {
                engine: engine.name(),
                manager: asset.io_manager.clone(),
            });
        }
    };
    for inp in &step.inputs {
        let spec = &asset.inputs[inp.input];
        if !spec.load {
            continue;
        }
        let up = &rc.defs.assets[inp.upstream];
        if let Some(m) = &spec.input_manager {
            return Err(Embedded::InputManager {
                input: spec.name.clone(),
                manager: m.clone(),
            });
        }
        let manager = rc.manager(&up.io_manager)?;
        let db = sql::in_database(manager.as_ref())
            .filter(|db| db.kind() == target.kind())
            .ok_or_else(|| Embedded::InputElsewhere {
                input: spec.name.clone(),
                manager: up.io_manager.clone(),
                kind: target.kind(),
            })?;
        if db.resource_key() != target.resource_key() && !db.same_place(target) {
            return Err(Embedded::OtherPlace {
                input: spec.name.clone(),
                place: if target.has_schemas() {
                    "database or schema"
                } else {
                    "database"
                },
                found: db.where_(),
                target: target.where_(),
            });
        }
    }
    Ok(target)
}

/// Why a `sql` asset runs in the embedded engine rather than inside its
/// database (a line of the step's log).
#[derive(Debug, thiserror::Error)]
enum Embedded {
    #[error("the asset stores no output (`output = false`)")]
    NoOutput,
    #[error("the asset declares `columns`, which dg applies to the rows it stores")]
    Columns,
    #[error("its I/O manager `{0}` is not a sqlite database (nor a postgres or duckdb one)")]
    NotADatabase(String),
    #[error(
        "the query is written for the {engine} engine (`engine = \"{engine}\"`), not for the database of its I/O manager `{manager}`"
    )]
    OtherEngine {
        engine: &'static str,
        manager: String,
    },
    #[error("input `{input}` is loaded by input manager `{manager}`")]
    InputManager { input: String, manager: String },
    #[error("input `{input}` is stored by `{manager}`, which is not a {kind} database")]
    InputElsewhere {
        input: String,
        manager: String,
        kind: &'static str,
    },
    #[error("input `{input}` is stored in another {place} ({found}, not {target})")]
    OtherPlace {
        input: String,
        place: &'static str,
        found: String,
        target: String,
    },
    #[error(transparent)]
    Step(#[from] StepError),
}

/// After the compute succeeded: hands the output file to the asset's
/// manager (or stores nothing for `output = false`). Only a regular file
/// (or a folder, for the `file` format) is taken: anything else, such as a
/// FIFO, could block dg forever. Storing runs on its own thread, so that
/// neither `deadline` (the step's timeout) nor an interrupt waits for a
/// manager that does not return.
#[allow(clippy::too_many_arguments)]
fn store_output(
    rc: &RunCtx,
    asset: &Asset,
    partition: Option<PartitionRef>,
    range: Option<Vec<PartitionRef>>,
    step_id: String,
    mlog: io::Log,
    output: PathBuf,
    messages: &Path,
    log: &mut File,
    deadline: Option<std::time::Instant>,
) -> Result<Attempt, StepError> {
    let metadata = read_messages(messages, log);
    let no_parts = |dv: Option<String>| -> Vec<PartOutcome> {
        range
            .iter()
            .flatten()
            .map(|p| PartOutcome {
                key: p.key.clone(),
                stored: None,
                data_version: dv.clone(),
            })
            .collect()
    };
    if !asset.output {
        return Ok(Attempt {
            ok: true,
            exit_code: Some(0),
            metadata,
            parts: no_parts(None),
            ..Attempt::default()
        });
    }
    if !output.exists() && !asset.output_required {
        // `output_required = false`: a partition with no output. Nothing is
        // stored; the history records it, and its readers are skipped.
        let _ = writeln!(
            log,
            "[dg] no output written (`output_required = false`): recorded as \"no output\""
        );
        let mut metadata = metadata;
        metadata.insert("dg/no_output".into(), json!(true));
        let dv = Some(crate::state::show_hash(crate::state::NO_OUTPUT));
        return Ok(Attempt {
            ok: true,
            exit_code: Some(0),
            data_version: dv.clone(),
            metadata,
            parts: no_parts(dv),
            ..Attempt::default()
        });
    }
    match std::fs::metadata(&output) {
        Err(_) => {
            return store_failed("the step exited 0 but did not write its output to $DG_OUTPUT (set `output = false` for steps that store nothing, or `output_required = false` for steps that may produce nothing)".into(), metadata);
        }
        Ok(m) if !m.is_file() && !m.is_dir() => {
            return store_failed(
                format!(
                    "$DG_OUTPUT is {}, not a regular file: the step must write its output to a file",
                    file_kind(&m)
                ),
                metadata,
            );
        }
        Ok(_) => {}
    }
    let manager = rc.manager(&asset.io_manager)?.clone();
    if let Some(parts) = range {
        return store_range(
            rc, asset, parts, step_id, mlog, output, metadata, log, deadline, manager,
        );
    }
    let octx = output_of(rc, asset, partition, step_id, mlog);
    let mut data = Data::File {
        path: output.clone(),
        format: asset.format,
    };
    if !asset.columns.is_empty()
        && let Data::File { path, format } = &data
    {
        // Declared types: the output is read and typed before it is stored.
        match io::table::read(path, *format)
            .and_then(|t| io::table::apply_columns(t, &asset.columns))
        {
            Ok(t) => data = Data::Table(Arc::new(t)),
            Err(e) => {
                return store_failed(
                    format!("the output does not fit its `columns`: {e:#}"),
                    metadata,
                );
            }
        }
    }
    let waited = store_on_thread(rc, asset, &asset.io_manager, deadline, move || {
        let data_version = crate::state::file_version(&output).ok();
        (data_version, manager.handle_output(&octx, data))
    })?;
    let (data_version, stored) = match waited {
        Ok(r) => r,
        Err(why) => return store_failed(why, metadata),
    };
    match stored {
        Ok(stored) => Ok(Attempt {
            ok: true,
            exit_code: Some(0),
            stored: Some(stored),
            data_version,
            metadata,
            ..Attempt::default()
        }),
        Err(e) => store_failed(
            format!(
                "storing the output through `{}` failed: {e:#}",
                asset.io_manager
            ),
            metadata,
        ),
    }
}

/// Stores the output of a range step: its rows are split by their
/// `dg_partition` column, and each partition (without that column) is
/// stored separately, atomically, in the order of the step's keys. Nothing
/// is stored unless every row belongs to one of the step's partitions; a
/// partition with no rows is stored empty.
#[allow(clippy::too_many_arguments)]
fn store_range(
    rc: &RunCtx,
    asset: &Asset,
    parts: Vec<PartitionRef>,
    step_id: String,
    mlog: io::Log,
    output: PathBuf,
    metadata: serde_json::Map<String, serde_json::Value>,
    log: &mut File,
    deadline: Option<std::time::Instant>,
    manager: Arc<dyn io::IoManager>,
) -> Result<Attempt, StepError> {
    let keys: Vec<String> = parts.iter().map(|p| p.key.clone()).collect();
    let dir = output.with_file_name("output-parts");
    let split = match io::table::read(&output, asset.format)
        .map_err(|e| format!("{e:#}"))
        .and_then(|t| {
            if asset.columns.is_empty() {
                Ok(t)
            } else {
                io::table::apply_columns(t, &asset.columns)
                    .map_err(|e| format!("the output does not fit its `columns`: {e:#}"))
            }
        })
        .and_then(|t| io::table::split_by_partition(&t, &keys).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => return store_failed(format!("{e} (nothing was stored)"), metadata),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return store_failed(format!("cannot create {}: {e}", dir.display()), metadata);
    }
    let _ = writeln!(
        log,
        "[dg] range step: {} rows split into {} partitions",
        split.iter().map(|t| t.num_rows()).sum::<usize>(),
        keys.len()
    );
    let format = asset.format;
    let typed = !asset.columns.is_empty();
    let resource = asset.io_manager.clone();
    let base = output_of(rc, asset, None, step_id, mlog);
    let waited = store_on_thread(rc, asset, &resource, deadline, move || {
        // Each partition as a file in the asset's format (its data
        // version is the file's hash), then all handed to the manager.
        let mut items = Vec::with_capacity(parts.len());
        let mut versions = Vec::with_capacity(parts.len());
        for (n, (p, t)) in parts.into_iter().zip(split).enumerate() {
            let path = dir.join(format!("{n}{}", format.extension()));
            let written = io::table::write(&t, &path, format)
                .and_then(|_| Ok(crate::state::file_version(&path)?));
            match written {
                Ok(dv) => versions.push((p.key.clone(), dv)),
                Err(e) => {
                    return Err(format!("partition `{}`: {e:#}", p.key));
                }
            }
            let data = if typed {
                Data::Table(Arc::new(t))
            } else {
                Data::File { path, format }
            };
            let octx = OutputContext {
                partition: Some(p),
                ..base.clone()
            };
            items.push((octx, data));
        }
        let result = manager.handle_outputs(items).map(|stored| {
            versions
                .into_iter()
                .zip(stored)
                .map(|((key, dv), stored)| PartOutcome {
                    key,
                    stored: Some(stored),
                    data_version: Some(dv),
                })
                .collect::<Vec<_>>()
        });
        let _ = std::fs::remove_dir_all(&dir);
        result.map_err(|e| format!("{e:#}"))
    })?;
    let stored = match waited {
        Ok(r) => r,
        Err(why) => return store_failed(why, metadata),
    };
    match stored {
        Ok(parts) => Ok(Attempt {
            ok: true,
            exit_code: Some(0),
            metadata,
            parts,
            ..Attempt::default()
        }),
        Err(e) => store_failed(
            format!(
                "storing the output through `{resource}` failed: {e} (partitions stored before it stay stored but are not recorded)"
            ),
            metadata,
        ),
    }
}

/// What a file that is neither a regular file nor a folder is, for errors.
fn file_kind(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

/// Files handed to the step for one input.
pub(super) struct InputFiles {
    pub(super) path: PathBuf,
    partitions_file: Option<PathBuf>,
    partitions: Vec<(String, PathBuf)>,
}

pub(super) fn materialize_input(
    loaded: &Loaded,
    format: Format,
    dir: &Path,
    n: usize,
    name: &str,
) -> anyhow::Result<InputFiles> {
    let ext = format.extension();
    std::fs::create_dir_all(dir)?;
    let base = dir.join(format!("{n}-{}", crate::exec::slug(name)));
    match loaded {
        Loaded::Single(d) => Ok(InputFiles {
            path: hand_over(d, format, &base.with_extension(ext.trim_start_matches('.')))?,
            partitions_file: None,
            partitions: Vec::new(),
        }),
        Loaded::Partitions(map) => {
            std::fs::create_dir_all(&base)?;
            let mut files = Vec::with_capacity(map.len());
            for (k, d) in map {
                let dest = base.join(format!("{}{ext}", crate::exec::slug(k)));
                let p = hand_over(d, format, &dest)?;
                files.push((k.clone(), p));
            }
            let path = if format == Format::File {
                base.clone()
            } else if files.len() == 1 {
                files[0].1.clone()
            } else {
                let combined = dir.join(format!("{n}-{}.all{ext}", crate::exec::slug(name)));
                let items: Vec<Data> = files
                    .iter()
                    .map(|(_, p)| Data::File {
                        path: p.clone(),
                        format,
                    })
                    .collect();
                io::table::combine_to_file(&items, format, &combined)?;
                combined
            };
            let pf = dir.join(format!("{n}-{}.partitions.json", crate::exec::slug(name)));
            let list: Vec<serde_json::Value> = files
                .iter()
                .map(|(k, p)| json!({"key": k, "path": p.to_string_lossy()}))
                .collect();
            std::fs::write(&pf, serde_json::to_vec(&list)?)?;
            Ok(InputFiles {
                path,
                partitions_file: Some(pf),
                partitions: files,
            })
        }
    }
}

/// A step whose process succeeded but whose output could not be stored.
fn store_failed(
    error: String,
    metadata: serde_json::Map<String, serde_json::Value>,
) -> Result<Attempt, StepError> {
    Ok(Attempt {
        ok: false,
        error: Some(error),
        exit_code: Some(0),
        metadata,
        ..Attempt::default()
    })
}

/// Creates the empty `messages.jsonl` a step's or a check's process appends
/// its messages to, in `work`.
pub(super) fn create_messages(work: &std::path::Path) -> Result<std::path::PathBuf, StepError> {
    let messages = work.join("messages.jsonl");
    File::create(&messages).map_err(|error| StepError::Create {
        path: messages.clone(),
        error,
    })?;
    Ok(messages)
}

/// Runs `store` (a manager storing a step's output) on a thread of its own
/// and waits for it, polling so that the step's deadline and an interrupt
/// still stop the wait: `Err(why)` then, with the reason the step fails.
fn store_on_thread<T: Send + 'static>(
    rc: &RunCtx,
    asset: &Asset,
    resource: &str,
    deadline: Option<std::time::Instant>,
    store: impl FnOnce() -> T + Send + 'static,
) -> Result<Result<T, String>, StepError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("dg-store".into())
        .spawn(move || {
            let _ = tx.send(store());
        })
        .map_err(StepError::StoreThread)?;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(r) => return Ok(Ok(r)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Ok(Err("storing the output stopped unexpectedly".into()));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Ok(Err(format!(
                "timed out after {} while `{resource}` stored the output",
                humantime::format_duration(asset.timeout.unwrap_or_default()),
            )));
        }
        if rc.cancelled() {
            return Ok(Err(format!(
                "interrupted while `{resource}` stored the output"
            )));
        }
    }
}

/// The process of a `command = [...]` (a step's or a check's): its
/// `${env:…}` references resolved.
pub(super) fn argv_command(argv: &[crate::interp::Template]) -> Result<Command, StepError> {
    let mut args = Vec::with_capacity(argv.len());
    for a in argv {
        args.push(
            a.resolve_env()
                .map_err(|e| StepError::unset("command", e))?,
        );
    }
    let mut c = Command::new(&args[0]);
    c.args(&args[1..]);
    Ok(c)
}

/// The process of a `shell = "..."` (a step's or a check's).
pub(super) fn shell_command(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    c
}

/// Points an SQL error at the query's definition (`defs/x.toml:12:1`).
fn at_definition(e: impl std::fmt::Display, asset: &Asset) -> String {
    let e = e.to_string();
    if e.starts_with("SQL error") && !asset.defined_at.is_empty() {
        format!("{e} (query defined at {})", asset.defined_at)
    } else {
        e
    }
}

/// A file holding `data` in `format` for a step. A stored file already in
/// that format is hard-linked into the step's folder rather than copied, so
/// a step that replaces its input file (as `sed -i` does) cannot touch
/// storage; stored files are read-only against in-place writes.
fn hand_over(d: &Data, format: Format, dest: &Path) -> anyhow::Result<PathBuf> {
    let p = io::table::to_file(d, format, dest)?;
    if p != dest && std::fs::hard_link(&p, dest).is_ok() {
        return Ok(dest.to_path_buf());
    }
    Ok(p)
}

/// Reads `{"metadata": {…}}` lines the step appended to `DG_MESSAGES`.
pub(crate) fn read_messages(
    path: &Path,
    log: &mut File,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(m) => {
            // A FIFO would block dg: only a regular file is read.
            let _ = writeln!(
                log,
                "[dg] DG_MESSAGES is {}, not a regular file: ignored",
                file_kind(&m)
            );
            return out;
        }
        Err(_) => return out,
    }
    let Ok(f) = File::open(path) else { return out };
    for (n, line) in std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .enumerate()
    {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(mut m)) => match m.remove("metadata") {
                Some(serde_json::Value::Object(md)) => out.extend(md),
                // `{"retry": false}` (read when an attempt fails).
                None if m.contains_key("retry") => {}
                _ => {
                    let _ = writeln!(
                        log,
                        "[dg] DG_MESSAGES line {}: expected {{\"metadata\": {{…}}}}, ignored",
                        n + 1
                    );
                }
            },
            _ => {
                let _ = writeln!(
                    log,
                    "[dg] DG_MESSAGES line {}: not a JSON object, ignored",
                    n + 1
                );
            }
        }
    }
    out
}

/// Keeps manager instances for one run.
pub type Managers = HashMap<String, Arc<dyn io::IoManager>>;
