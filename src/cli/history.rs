//! `dg status`, `dg runs`, `dg logs` and `dg partitions add/remove`.

use std::sync::Arc;

use serde_json::json;

use super::Session;
use super::plan::{Keys, collapse};
use crate::error::{Error, Outcome};
use crate::model::{Compute, Defs};
use crate::partitions::{KeyCtx, PartitionsDef, check_key};
use crate::state::StateStore;
use crate::state::incremental::{History, Staleness};

/// Loads the definitions and opens the project's store.
pub(super) fn store(
    s: &Session,
) -> Result<(Defs, crate::project::Project, Arc<dyn StateStore>), Error> {
    let (project, defs) = s.load_defs()?;
    let store = crate::state::open(&project).map_err(|e| Error::store(format!("{e:#}")))?;
    let _ = store.reap_dead_runs();
    Ok((defs, project, store.into()))
}

pub use crate::state::dynamic_keys;

pub fn status(
    s: &Session,
    select: &str,
    json: bool,
    fail_on_stale: bool,
) -> Result<Outcome, Error> {
    let (defs, _project, store) = store(s)?;
    let mut cx = KeyCtx::new(s.now.timestamp());
    dynamic_keys(&defs, &*store, &mut cx)
        .map_err(|e| Error::store(format!("cannot read dynamic partitions: {e:#}")))?;
    let selected = crate::run::select(&defs, select)?;
    let mut history = History::new(&*store, &cx);
    history.read_ahead(store.clone(), &defs, &read_order(&defs, &selected));
    let mut keys = Keys::new(&cx);
    // Stale (asset, partition) pairs, to carry staleness downstream.
    // Stale partitions by asset, indexed by partition (0 when unpartitioned).
    let mut stale_flags: Vec<Vec<bool>> = vec![Vec::new(); defs.assets.len()];
    let mut out_json = Vec::new();
    let mut lines = Vec::new();
    // `--fail-on-stale`: each asset that is not up to date, and why.
    let mut not_ok: Vec<String> = Vec::new();
    for &a in &selected {
        let asset = &defs.assets[a];
        if matches!(asset.compute, Compute::Source) {
            continue;
        }
        let AssetParts {
            mat,
            failed,
            missing,
            stale,
            no_output,
        } = asset_parts(&defs, a, &cx, &mut history, &mut keys, &mut stale_flags)
            .map_err(|e| Error::store(format!("cannot read the history: {e:#}")))?;
        let ranges = |v: &[i64], keys: &mut Keys<'_>| -> Vec<String> {
            let Some(p) = &asset.partitions else {
                return Vec::new();
            };
            let mut out = Vec::new();
            let mut i = 0;
            while i < v.len() {
                let mut j = i;
                while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
                    j += 1;
                }
                let a = keys.key(&p.def, v[i]).to_string();
                if i == j {
                    out.push(a);
                } else {
                    out.push(format!("{a}...{}", keys.key(&p.def, v[j])));
                }
                i = j + 1;
            }
            out
        };
        let health = super::checks::health(&*store, asset, s.now).map_err(|e| {
            Error::store(format!("cannot read the history of `{}`: {e:#}", asset.key))
        })?;
        let mut why: Vec<String> = Vec::new();
        for (n, what) in [
            (missing.len(), "missing"),
            (failed.len(), "failed"),
            (stale.len(), "stale"),
            (health.checks_failed, "failed check"),
        ] {
            if n > 0 {
                let s = if n > 1 && what == "failed check" {
                    "s"
                } else {
                    ""
                };
                why.push(format!("{n} {what}{s}"));
            }
        }
        if health.overdue {
            why.push("overdue (freshness)".into());
        }
        if !why.is_empty() {
            not_ok.push(format!("{} ({})", asset.key, why.join(", ")));
        }
        if json {
            out_json.push(json!({
                "asset": asset.key,
                "checks": {
                    "passed": health.checks_passed,
                    "failed": health.checks_failed,
                    "warned": health.checks_warned,
                },
                "freshness": health.freshness_json(),
                "partitioned": asset.partitions.is_some(),
                "partitions": mat.len() + failed.len() + missing.len(),
                "materialized": mat.len(),
                "failed": failed.len(),
                "missing": missing.len(),
                "stale": stale.len(),
                "no_output": no_output.len(),
                "ranges": {
                    "materialized": ranges(&mat, &mut keys),
                    "failed": ranges(&failed, &mut keys),
                    "missing": ranges(&missing, &mut keys),
                    "stale": ranges(&stale, &mut keys),
                    "no_output": ranges(&no_output, &mut keys),
                },
            }));
        } else {
            let total = mat.len() + failed.len() + missing.len();
            let mut line = format!(
                "{}  {} materialized, {} failed, {} missing, {} stale",
                asset.key,
                mat.len(),
                failed.len(),
                missing.len(),
                stale.len()
            );
            if !no_output.is_empty() {
                line.push_str(&format!(" ({} with no output)", no_output.len()));
            }
            line.push_str(&health.note());
            if asset.partitions.is_some() {
                line.push_str(&format!("  (of {total})"));
            }
            lines.push(line);
            if let Some(p) = &asset.partitions {
                for (label, v) in [
                    ("failed", &failed),
                    ("missing", &missing),
                    ("stale", &stale),
                    ("no output", &no_output),
                ] {
                    if !v.is_empty() {
                        lines.push(format!("    {label:7} {}", collapse(&p.def, v, &mut keys)));
                    }
                }
            }
        }
    }
    if json {
        s.out
            .json(&json!({"now": s.now.to_rfc3339(), "assets": out_json}));
    } else {
        for l in lines {
            s.out.line(&l);
        }
    }
    if fail_on_stale && !not_ok.is_empty() {
        // What `--fail-on-stale` found, not an error of the command: exit 1.
        s.out.error(&format!(
            "{} selected asset{} not up to date: {}",
            not_ok.len(),
            if not_ok.len() == 1 { " is" } else { "s are" },
            not_ok.join("; ")
        ));
        return Ok(Outcome::Failed);
    }
    Ok(Outcome::Ok)
}

/// Partition indexes of one asset by status (0 when unpartitioned).
/// `stale` holds materialized partitions that are stale.
pub(super) struct AssetParts {
    pub mat: Vec<i64>,
    pub failed: Vec<i64>,
    pub missing: Vec<i64>,
    pub stale: Vec<i64>,
    /// Materialized with no output (`output_required = false`).
    pub no_output: Vec<i64>,
}

/// The status of every partition of asset `a` at *now*. `stale_flags`
/// carries staleness downstream: assets must come in dependency order.
/// The assets whose states [`asset_parts`] reads, in the order it reads
/// them over `selected`: each asset, then what it reads.
pub(super) fn read_order(
    defs: &Defs,
    selected: &[crate::model::AssetId],
) -> Vec<crate::model::AssetId> {
    let mut out = Vec::new();
    for &a in selected {
        let asset = &defs.assets[a];
        if matches!(asset.compute, Compute::Source) {
            continue;
        }
        out.push(a);
        out.extend(asset.inputs.iter().map(|i| i.upstream));
    }
    out
}

pub(super) fn asset_parts(
    defs: &Defs,
    a: crate::model::AssetId,
    cx: &KeyCtx,
    history: &mut History<'_>,
    keys: &mut Keys<'_>,
    stale_flags: &mut [Vec<bool>],
) -> anyhow::Result<AssetParts> {
    let asset = &defs.assets[a];
    let parts: Vec<Option<i64>> = match &asset.partitions {
        Some(p) => (0..p.def.len(cx)).map(Some).collect(),
        None => vec![None],
    };
    let (mut mat, mut failed, mut missing, mut stale) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Materialized with no output (`output_required = false`).
    let mut no_output = Vec::new();
    let mut candidates = Vec::new();
    {
        let states = history
            .states(defs, a)
            .map_err(|e| e.context(format!("the history of `{}`", asset.key)))?;
        for &p in &parts {
            let key: &str = match (&asset.partitions, p) {
                (Some(d), Some(i)) => keys.key(&d.def, i),
                _ => "",
            };
            let idx = p.unwrap_or(0);
            match states.get(key) {
                None => missing.push(idx),
                Some(st) if st.failed => failed.push(idx),
                Some(st) if !st.materialized() => missing.push(idx),
                Some(st) => {
                    if st.data_version == Some(crate::state::NO_OUTPUT) {
                        no_output.push(idx);
                    }
                    mat.push(idx);
                    candidates.push(p);
                }
            }
        }
    }
    for p in candidates {
        let idx = p.unwrap_or(0);
        let step = crate::plan::step_for(defs, a, p, cx);
        let upstream_stale = step.inputs.iter().any(|inp| match &inp.partitions {
            None => stale_flags[inp.upstream].first().copied().unwrap_or(false),
            Some(ix) => ix.iter().any(|i| {
                stale_flags[inp.upstream]
                    .get(i as usize)
                    .copied()
                    .unwrap_or(false)
            }),
        });
        let st = if upstream_stale {
            Ok(Staleness::Inputs)
        } else {
            history.staleness(defs, &step, keys)
        };
        match st {
            Ok(Staleness::Fresh) => {}
            Ok(_) => {
                stale.push(idx);
                let f = &mut stale_flags[a];
                if f.len() <= idx as usize {
                    f.resize(idx as usize + 1, false);
                }
                f[idx as usize] = true;
            }
            Err(e) => return Err(e),
        }
    }
    history.done_with(defs, a);
    Ok(AssetParts {
        mat,
        failed,
        missing,
        stale,
        no_output,
    })
}

pub fn runs(s: &Session, json: bool, limit: usize) -> Result<Outcome, Error> {
    let (_defs, _p, store) = store(s)?;
    let runs = store
        .runs(limit)
        .map_err(|e| Error::store(format!("cannot read runs: {e:#}")))?;
    if json {
        s.out.json(&json!({"runs": runs}));
        return Ok(Outcome::Ok);
    }
    if runs.is_empty() {
        s.out.info("no runs yet");
    }
    for r in runs {
        s.out.line(&format!(
            "{}  {:11}  {}  steps={}  --select {} {}{}",
            r.id,
            r.status.as_str(),
            r.started_at,
            r.steps.unwrap_or(0),
            r.selection,
            r.partitions,
            r.profile
                .as_deref()
                .map(|p| format!("  profile={p}"))
                .unwrap_or_default()
        ));
    }
    Ok(Outcome::Ok)
}

pub fn run_show(s: &Session, id: &str, json: bool) -> Result<Outcome, Error> {
    let (_defs, _p, store) = store(s)?;
    let run = match store.run(id) {
        Ok(Some(r)) => r,
        Ok(None) => return Err(no_run(id)),
        Err(e) => return Err(Error::store(format!("cannot read runs: {e:#}"))),
    };
    let attempts = store.attempts(id).unwrap_or_default();
    let mats = store.materializations(id).unwrap_or_default();
    if json {
        s.out
            .json(&json!({"run": run, "attempts": attempts, "materializations": mats}));
        return Ok(Outcome::Ok);
    }
    s.out.line(&format!(
        "run {}  {}  started {}  ended {}",
        run.id,
        run.status.as_str(),
        run.started_at,
        run.ended_at.as_deref().unwrap_or("-")
    ));
    s.out
        .line(&format!("  --select {} {}", run.selection, run.partitions));
    if let Some(p) = &run.profile {
        s.out.line(&format!("  profile {p}"));
    }
    if let Some(c) = &run.config {
        s.out.line(&format!("  config {c}"));
    }
    for a in &attempts {
        let err = a
            .error
            .as_deref()
            .map(|e| format!("  {e}"))
            .unwrap_or_default();
        s.out.line(&format!(
            "  {:8} {} (attempt {}, {} ms){err}",
            a.status, a.step_id, a.attempt, a.duration_ms
        ));
    }
    s.out.line(&format!("  {} materializations", mats.len()));
    Ok(Outcome::Ok)
}

/// `no run ID`, with where to find the recorded ones.
fn no_run(id: &str) -> Error {
    Error::usage(format!("no run `{id}`")).help("`dg runs` lists the recorded runs")
}

pub fn logs(s: &Session, id: &str, step: Option<&str>) -> Result<Outcome, Error> {
    let (_defs, _p, store) = store(s)?;
    let attempts = store
        .attempts(id)
        .map_err(|e| Error::store(format!("cannot read runs: {e:#}")))?;
    if attempts.is_empty() && store.run(id).ok().flatten().is_none() {
        return Err(no_run(id));
    }
    let mut paths: Vec<(String, String)> = Vec::new();
    for a in &attempts {
        if let Some(p) = &a.log_path
            && step.is_none_or(|st| st == a.step_id)
            && !paths.iter().any(|(_, q)| q == p)
        {
            paths.push((a.step_id.clone(), p.clone()));
        }
    }
    if paths.is_empty() {
        match step {
            Some(st) => {
                let ids: Vec<&str> = attempts.iter().map(|a| a.step_id.as_str()).collect();
                return Err(
                    Error::usage(format!("run `{id}` has no log for step `{st}`"))
                        .help(crate::diag::suggest(st, &ids, "steps of this run")),
                );
            }
            None => {
                s.out.info("this run has no logs");
                return Ok(Outcome::Ok);
            }
        }
    }
    // The logs that can be read are printed; those that cannot, after them.
    let mut unreadable = Vec::new();
    for (st, p) in &paths {
        if step.is_none() {
            s.out.line(&format!("=== {st}"));
        }
        if let Err(e) = print_file(std::path::Path::new(p)) {
            unreadable.push(format!("cannot read {p}: {e}"));
        }
    }
    if !unreadable.is_empty() {
        let help = format!(
            "{} of {} logs could not be read (deleted with the state folder's `logs/`?)",
            unreadable.len(),
            paths.len()
        );
        return Err(Error::Io(
            crate::error::Message::errors(unreadable).help(help),
        ));
    }
    Ok(Outcome::Ok)
}

/// Copies a log to stdout as it is read, never the whole file in memory,
/// ending with a newline. A closed pipe (`dg logs … | head`) is not an error.
fn print_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::{BufRead, Write};
    let mut r = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(path)?);
    let mut out = std::io::stdout().lock();
    let mut last = b'\n';
    if crate::secrets::active() {
        // Line by line through the masker (a log written before the
        // secret was declared, or while its step still runs).
        let mut line = Vec::new();
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            last = line[line.len() - 1];
            let text = String::from_utf8_lossy(&line);
            if out
                .write_all(crate::secrets::mask(&text).as_bytes())
                .is_err()
            {
                return Ok(());
            }
        }
    }
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        last = buf[n - 1];
        if out.write_all(buf).is_err() {
            return Ok(());
        }
        r.consume(n);
    }
    if last != b'\n' {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
    Ok(())
}

pub fn partitions_edit(
    s: &Session,
    name: &str,
    keys: &[String],
    add: bool,
) -> Result<Outcome, Error> {
    let (defs, _p, store) = store(s)?;
    match defs.partitions.get(name).map(|p| &*p.def) {
        Some(PartitionsDef::Dynamic { .. }) => {}
        Some(other) => {
            return Err(Error::usage(format!(
                "partitions `{name}` are {}, not dynamic: only dynamic partitions take keys from `dg partitions add`",
                other.type_name()
            )));
        }
        None => {
            let dynamic: Vec<&str> = defs
                .partitions
                .iter()
                .filter(|(_, p)| matches!(*p.def, PartitionsDef::Dynamic { .. }))
                .map(|(k, _)| k.as_str())
                .collect();
            return Err(
                Error::usage(format!("no partitions definition named `{name}`"))
                    .help(crate::diag::suggest(name, &dynamic, "dynamic partitions")),
            );
        }
    }
    let problems: Vec<String> = keys.iter().filter_map(|k| check_key(k, true)).collect();
    if !problems.is_empty() {
        return Err(Error::Usage(crate::error::Message::errors(problems)));
    }
    let r = if add {
        store.add_dynamic_keys(name, keys)
    } else {
        store.remove_dynamic_keys(name, keys)
    };
    let n = r.map_err(|e| Error::store(format!("{e:#}")))?;
    let total = store.dynamic_keys(name).map(|k| k.len()).unwrap_or(0);
    s.out.info(&format!(
        "{} {n} key{} {} `{name}` ({total} in all)",
        if add { "added" } else { "removed" },
        if n == 1 { "" } else { "s" },
        if add { "to" } else { "from" },
    ));
    Ok(Outcome::Ok)
}
