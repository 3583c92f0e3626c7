//! `dg report`: one self-contained HTML file (inline CSS and JS, no network)
//! that shows the asset graph with its mappings, each asset's partitions by
//! status over time, a run's timeline, its failures with their log tails,
//! and check results.
//!
//! Everything the page shows is one JSON document embedded in it
//! (`<script id="dg-data" type="application/json">`), built here; the page's
//! script only draws it. Partitions are aggregated into at most
//! [`MAX_CELLS`] cells per asset (each with its first and last key and a
//! count per status), so the file stays small and the page fast at 100,000
//! partitions per asset: the grid is drawn on a canvas, not one element per
//! partition.

use std::collections::HashMap;
use std::path::Path;

use chrono::DateTime;
use serde_json::{Value, json};

use super::Session;
use super::history::{AssetParts, asset_parts, dynamic_keys, read_order};
use super::plan::Keys;
use crate::error::{Error, Outcome};
use crate::model::{Compute, Defs};
use crate::partitions::{KeyCtx, MappingSpec};
use crate::state::incremental::History;
use crate::state::{AttemptRecord, StateStore};

/// The most cells an asset's partition grid has.
pub const MAX_CELLS: usize = 1000;

/// Partition statuses, in the order of a cell's counts.
pub const STATUSES: [&str; 5] = ["materialized", "stale", "check_failed", "failed", "missing"];
const MATERIALIZED: u8 = 0;
const STALE: u8 = 1;
const CHECK_FAILED: u8 = 2;
const FAILED: u8 = 3;
const MISSING: u8 = 4;

/// How many log lines a failed step shows.
const TAIL: usize = 30;

const TEMPLATE: &str = include_str!("report.html");

/// `dg report [--select SEL] [--run RUN_ID] [--out FILE]`.
pub fn report(s: &Session, select: &str, run: Option<&str>, out: &Path) -> Result<Outcome, Error> {
    let (defs, project, store) = super::history::store(s)?;
    let mut cx = KeyCtx::new(s.now.timestamp());
    dynamic_keys(&defs, &*store, &mut cx)
        .map_err(|e| Error::store(format!("cannot read dynamic partitions: {e:#}")))?;
    let selected = crate::run::select(&defs, select)?;
    let data = build(s, &defs, &project, &store, &cx, &selected, run)
        .map_err(|e| Error::store(format!("{e:#}")))?;
    let html = render(&data, false);
    let path = if out.is_absolute() {
        out.to_path_buf()
    } else {
        s.cwd.join(out)
    };
    // A `--out` that cannot be written is a usage error (exit 2): nothing was made.
    std::fs::write(&path, html.as_bytes())
        .map_err(|e| Error::usage(format!("cannot write `{}`: {e}", path.display())))?;
    let run_note = match data["run"]["id"].as_str() {
        Some(id) => format!(", run {id}"),
        None => ", no run recorded yet".to_string(),
    };
    s.out.info(&format!(
        "{} wrote {} ({} assets{run_note}, {} KiB)",
        s.out.green("✓"),
        crate::project::display_path(&path, &s.cwd),
        data["assets"].as_array().map_or(0, Vec::len),
        html.len().div_ceil(1024)
    ));
    Ok(Outcome::Ok)
}

/// The page: the template with the data in it. `<` is escaped in the
/// JSON so that no string can end the script element. `live` (for
/// `dg ui`) makes the browser reload it every few seconds.
pub fn render(data: &Value, live: bool) -> String {
    let json = data.to_string().replace('<', "\\u003c");
    let page = TEMPLATE.replace("\"__DG_DATA__\"", &json);
    if live {
        page.replacen(
            "<meta charset=\"utf-8\">",
            &format!(
                "<meta charset=\"utf-8\">\n<meta http-equiv=\"refresh\" content=\"{UI_REFRESH_S}\">"
            ),
            1,
        )
    } else {
        page
    }
}

/// How often the `dg ui` page reloads itself, in seconds.
const UI_REFRESH_S: u32 = 10;

/// `dg ui [--select SEL] [--port N]`: serves the report on 127.0.0.1,
/// built again from the state store for every request (`/` the page,
/// `/data.json` its data). Definitions are read once, at start.
pub fn ui(s: &Session, select: &str, port: u16) -> Result<Outcome, Error> {
    use std::io::{BufRead, BufReader, Write};
    let (defs, project, store) = super::history::store(s)?;
    let selected = crate::run::select(&defs, select)?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| Error::usage(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    s.out
        .line(&format!("serving http://{addr}/ (Ctrl-C to stop)"));
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let mut reader = BufReader::new(match conn.try_clone() {
            Ok(c) => c,
            Err(_) => continue,
        });
        let mut request = String::new();
        if reader.read_line(&mut request).is_err() {
            continue;
        }
        // The headers are read and ignored (at most 100 lines).
        for _ in 0..100 {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(n) if n > 2 => {}
                _ => break,
            }
        }
        let mut parts = request.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = path.split('?').next().unwrap_or("");
        let (status, kind, body) = if method != "GET" {
            (
                "405 Method Not Allowed",
                "text/plain",
                "only GET\n".to_string(),
            )
        } else if path == "/" || path == "/index.html" || path == "/data.json" {
            // *now* moves on while the page is served, unless `--now` pins it.
            let now = match s.global.now {
                Some(_) => s.now.timestamp(),
                None => chrono::Utc::now().timestamp(),
            };
            let mut cx = KeyCtx::new(now);
            let built = dynamic_keys(&defs, &*store, &mut cx)
                .and_then(|_| build(s, &defs, &project, &store, &cx, &selected, None));
            match built {
                Ok(d) if path == "/data.json" => ("200 OK", "application/json", d.to_string()),
                Ok(d) => ("200 OK", "text/html; charset=utf-8", render(&d, true)),
                Err(e) => (
                    "500 Internal Server Error",
                    "text/plain",
                    format!("cannot read the run history: {e:#}\n"),
                ),
            }
        } else {
            ("404 Not Found", "text/plain", "not found\n".to_string())
        };
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    Ok(Outcome::Ok)
}

/// A mapping as the graph labels it: `identity`, `time_window -1`, …
fn mapping_label(m: &MappingSpec) -> String {
    match m {
        MappingSpec::TimeWindow {
            start_offset,
            end_offset,
            ..
        } => match (start_offset, end_offset) {
            (0, 0) => "time_window".into(),
            (a, b) if a == b => format!("time_window {a:+}"),
            (a, b) => format!("time_window {a:+}..{b:+}"),
        },
        MappingSpec::MultiToSingle { dimension: Some(d) } => format!("multi_to_single {d}"),
        other => other.type_name().into(),
    }
}

/// The report's data.
fn build(
    s: &Session,
    defs: &Defs,
    project: &crate::project::Project,
    store: &std::sync::Arc<dyn StateStore>,
    cx: &KeyCtx,
    selected: &[usize],
    run: Option<&str>,
) -> anyhow::Result<Value> {
    let mut history = History::new(&**store, cx);
    history.read_ahead(store.clone(), defs, &read_order(defs, selected));
    let mut keys = Keys::new(cx);
    let mut stale_flags: Vec<Vec<bool>> = vec![Vec::new(); defs.assets.len()];
    let is_selected: Vec<bool> = {
        let mut v = vec![false; defs.assets.len()];
        for &a in selected {
            v[a] = true;
        }
        v
    };
    // Layers: the longest path from a selected asset with no selected upstream.
    let mut layer = vec![0usize; defs.assets.len()];
    for &a in selected {
        for inp in &defs.assets[a].inputs {
            if is_selected[inp.upstream] {
                layer[a] = layer[a].max(layer[inp.upstream] + 1);
            }
        }
    }
    let mut assets = Vec::new();
    let mut edges = Vec::new();
    for &a in selected {
        let asset = &defs.assets[a];
        for inp in &asset.inputs {
            if is_selected[inp.upstream] {
                edges.push(json!({
                    "from": defs.assets[inp.upstream].key,
                    "to": asset.key,
                    "input": inp.name,
                    "label": mapping_label(&inp.mapping),
                    "inferred": inp.mapping_inferred,
                }));
            }
        }
        let source = matches!(asset.compute, Compute::Source);
        let mut counts = [0usize; 5];
        let mut cells: Vec<Value> = Vec::new();
        let mut check_failures: Vec<Value> = Vec::new();
        if !source {
            let AssetParts {
                mat,
                failed,
                missing: _,
                stale,
                no_output: _,
            } = asset_parts(defs, a, cx, &mut history, &mut keys, &mut stale_flags)?;
            let n = match &asset.partitions {
                Some(p) => p.def.len(cx).max(0) as usize,
                None => 1,
            };
            let per = n.div_ceil(MAX_CELLS).max(1);
            let mut status = vec![MISSING; n];
            for &i in &mat {
                status[i as usize] = MATERIALIZED;
            }
            for &i in &stale {
                status[i as usize] = STALE;
            }
            for &i in &failed {
                status[i as usize] = FAILED;
            }
            // The latest result of each check that is still defined.
            if !asset.checks.is_empty() {
                for r in store.latest_checks(&asset.key)? {
                    if r.passed || !asset.checks.iter().any(|c| c.name == r.check) {
                        continue;
                    }
                    let idx = match (&asset.partitions, &r.partition) {
                        (Some(p), Some(k)) => p.def.index_of(k, cx),
                        (None, None) => Some(0),
                        _ => None,
                    };
                    if r.severity == "error"
                        && let Some(i) = idx
                        && let Some(st) = status.get_mut(i as usize)
                        && (*st == MATERIALIZED || *st == STALE)
                    {
                        *st = CHECK_FAILED;
                    }
                    check_failures.push(json!({
                        "partition": r.partition, "check": r.check, "severity": r.severity,
                        "message": r.message, "run_id": r.run_id,
                        // The grid cell that holds the partition.
                        "cell": idx.map(|i| i as usize / per),
                    }));
                }
            }
            for &st in &status {
                counts[st as usize] += 1;
            }
            let mut i = 0;
            while i < n {
                let end = (i + per).min(n);
                let mut c = [0usize; 5];
                for &st in &status[i..end] {
                    c[st as usize] += 1;
                }
                let (first, last) = match &asset.partitions {
                    Some(p) => (
                        keys.key(&p.def, i as i64).to_string(),
                        keys.key(&p.def, end as i64 - 1).to_string(),
                    ),
                    None => (String::new(), String::new()),
                };
                cells.push(json!([first, last, c[0], c[1], c[2], c[3], c[4]]));
                i = end;
            }
        }
        assets.push(json!({
            "key": asset.key,
            "group": asset.group,
            "kind": asset.compute.kind(),
            "partitions": asset.partitions.as_ref().map(|p| p.name.clone().unwrap_or_else(|| "inline".into())),
            "partitioned": asset.partitions.is_some(),
            "layer": layer[a],
            "checks": asset.checks.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
            "counts": STATUSES.iter().zip(counts).map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "per_cell": match &asset.partitions { Some(p) => p.def.len(cx).max(0) as usize, None => 1 }.div_ceil(MAX_CELLS).max(1),
            "cells": cells,
            "check_failures": check_failures,
        }));
    }

    let run_record = match run {
        Some(id) => Some(
            store
                .run(id)?
                .ok_or_else(|| anyhow::anyhow!("no run `{id}` in the history (see `dg runs`)"))?,
        ),
        None => store.runs(1)?.into_iter().next(),
    };
    let mut run_json = Value::Null;
    let mut checks_json = Vec::new();
    if let Some(r) = run_record {
        let attempts = store.attempts(&r.id)?;
        let t0 = DateTime::parse_from_rfc3339(&r.started_at).ok();
        let offset = |t: &str| -> i64 {
            match (t0, DateTime::parse_from_rfc3339(t).ok()) {
                (Some(a), Some(b)) => (b - a).num_milliseconds().max(0),
                _ => 0,
            }
        };
        // Steps in the order they first started.
        let mut order: Vec<String> = Vec::new();
        let mut by_step: HashMap<String, Vec<&AttemptRecord>> = HashMap::new();
        for a in &attempts {
            if !by_step.contains_key(&a.step_id) {
                order.push(a.step_id.clone());
            }
            by_step.entry(a.step_id.clone()).or_default().push(a);
        }
        order.sort_by_key(|id| {
            by_step[id]
                .iter()
                .map(|a| offset(&a.started_at))
                .min()
                .unwrap_or(0)
        });
        let mut steps = Vec::new();
        let mut failures = Vec::new();
        for id in &order {
            let mut tries = by_step[id].clone();
            tries.sort_by_key(|a| a.attempt);
            let last = tries[tries.len() - 1];
            let status = last.status.clone();
            steps.push(json!({
                "id": id,
                "asset": last.asset,
                "partition": last.partition,
                "status": status,
                "attempts": tries.iter().map(|a| json!({
                    "attempt": a.attempt,
                    "status": a.status,
                    "offset_ms": offset(&a.started_at),
                    "duration_ms": a.duration_ms,
                    "error": a.error,
                })).collect::<Vec<_>>(),
            }));
            if status == "failed" {
                let tail = last
                    .log_path
                    .as_deref()
                    .map(|p| {
                        super::run::log_tail(
                            Path::new(p),
                            TAIL,
                            super::run::TAIL_LINE_BYTES,
                            super::run::TAIL_BYTES,
                        )
                        .lines
                    })
                    .unwrap_or_default();
                failures.push(json!({
                    "step": id,
                    "error": last.error,
                    "attempts": tries.len(),
                    "log": last.log_path.as_deref().map(|p| crate::project::display_path(Path::new(p), &project.root)),
                    "log_tail": tail,
                }));
            }
        }
        let end_ms = t0
            .zip(
                r.ended_at
                    .as_deref()
                    .and_then(|e| DateTime::parse_from_rfc3339(e).ok()),
            )
            .map(|(a, b)| (b - a).num_milliseconds().max(0));
        for c in store.run_checks(&r.id)? {
            checks_json.push(json!({
                "asset": c.asset, "partition": c.partition, "check": c.check,
                "passed": c.passed, "severity": c.severity, "message": c.message,
                "duration_ms": c.duration_ms,
            }));
        }
        run_json = json!({
            "id": r.id,
            "status": r.status,
            "started_at": r.started_at,
            "ended_at": r.ended_at,
            "duration_ms": end_ms,
            "selection": r.selection,
            "partitions": r.partitions,
            "steps": steps,
            "failures": failures,
        });
    }
    Ok(json!({
        "version": 1,
        "dg_version": env!("CARGO_PKG_VERSION"),
        "now": s.now.to_rfc3339(),
        "generated_at": crate::exec::timestamp(),
        "project": project.root.file_name().map(|n| n.to_string_lossy().into_owned()),
        "statuses": STATUSES,
        "max_cells": MAX_CELLS,
        "assets": assets,
        "edges": edges,
        "run": run_json,
        "checks": checks_json,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_labels_show_offsets() {
        let tw = |a, b| MappingSpec::TimeWindow {
            start_offset: a,
            end_offset: b,
            allow_nonexistent: false,
        };
        assert_eq!(mapping_label(&tw(-1, -1)), "time_window -1");
        assert_eq!(mapping_label(&tw(0, 0)), "time_window");
        assert_eq!(mapping_label(&tw(-2, 0)), "time_window -2..+0");
        assert_eq!(mapping_label(&MappingSpec::All), "all");
    }

    #[test]
    fn rendered_data_cannot_end_the_script() {
        let html = render(&json!({"assets": [{"key": "</script><b>x"}]}), false);
        assert!(!html.contains("</script><b>"));
        let start = html.find("id=\"dg-data\"").unwrap();
        let body = &html[start..];
        let open = body.find('>').unwrap() + 1;
        let close = body.find("</script>").unwrap();
        let v: Value = serde_json::from_str(&body[open..close]).unwrap();
        assert_eq!(v["assets"][0]["key"], "</script><b>x");
    }
}
