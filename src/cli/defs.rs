//! `dg check defs` and `dg list defs`.

use serde_json::json;

use super::Session;
use super::ci::{self, Finding, Format};
use crate::diag::{JsonDiagnostic, Kind, Severity};
use crate::error::{Error, Outcome};
use crate::model::Defs;
use crate::partitions::PartitionsDef;

pub fn check(s: &Session, format: Format, strict: bool) -> Result<Outcome, Error> {
    let mut loaded = s.load();
    if strict {
        for d in &mut loaded.diags.items {
            if d.kind == Kind::EnvVar {
                d.severity = Severity::Error;
            }
        }
        if loaded.diags.has_errors() {
            loaded.defs = None;
        }
    }
    let ok = loaded.defs.is_some() && !loaded.diags.has_errors();
    match format {
        Format::Github => {
            let findings = Finding::from_diagnostics(&loaded.diags, &loaded.sources);
            s.out.raw(&ci::github(&findings));
        }
        Format::Gitlab => {
            let findings = Finding::from_diagnostics(&loaded.diags, &loaded.sources);
            s.out.json(&ci::gitlab(&findings, &config_path(s, &loaded)));
        }
        Format::Human | Format::Json => {}
    }
    if format == Format::Json {
        let (errors, warnings): (Vec<_>, Vec<_>) =
            loaded.diags.items.iter().partition(|d| d.is_error());
        let conv = |v: Vec<&crate::diag::Diagnostic>| -> Vec<JsonDiagnostic> {
            v.into_iter()
                .map(|d| JsonDiagnostic::new(d, &loaded.sources))
                .collect()
        };
        let counts = loaded.defs.as_ref().map(|d| {
            json!({"assets": d.assets.len(), "resources": d.resources.len(), "partitions": d.partitions.len()})
        });
        s.out.json(&json!({
            "ok": ok,
            "counts": counts,
            "errors": conv(errors),
            "warnings": conv(warnings),
        }));
        return Ok(if ok { Outcome::Ok } else { Outcome::Invalid });
    }
    let d = match loaded.defs.take() {
        Some(d) if ok => d,
        _ => {
            let then = format!("definitions are invalid: {}", loaded.diags);
            return Err(Error::invalid(loaded.sources, loaded.diags, Some(then)));
        }
    };
    s.report(&loaded.sources, &loaded.diags);
    // With a report on stdout, stdout holds nothing else.
    if format == Format::Gitlab {
        return Ok(Outcome::Ok);
    }
    let w = loaded.diags.warning_count();
    let warn = if w > 0 {
        format!(", {w} warning{}", plural(w))
    } else {
        String::new()
    };
    s.out.info(&format!(
        "{} {} asset{}, {} resource{}, {} partitions definition{}: all valid{warn}",
        s.out.green("✓"),
        d.assets.len(),
        plural(d.assets.len()),
        d.resources.len(),
        plural(d.resources.len()),
        d.partitions.len(),
        plural(d.partitions.len()),
    ));
    Ok(Outcome::Ok)
}

/// Where a finding without a file points: the project's `dg.toml`, as shown
/// to the user.
pub(super) fn config_path(s: &Session, loaded: &super::Loaded) -> String {
    match &loaded.project {
        Some(p) => crate::project::display_path(&p.root.join("dg.toml"), &s.cwd),
        None => "dg.toml".into(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A partitions definition in one line.
pub fn describe_partitions(p: &PartitionsDef) -> String {
    match p {
        PartitionsDef::Time(t) => {
            let mut s = format!("{} from {}", t.schedule.type_name(), t.start.format(&t.fmt));
            if let crate::partitions::Schedule::Cron { expr, .. } = &t.schedule {
                s = format!("cron `{expr}` from {}", t.start.format(&t.fmt));
            }
            if let Some(e) = t.end {
                s.push_str(&format!(" to {}", e.format(&t.fmt)));
            }
            if t.tz != chrono_tz::UTC {
                s.push_str(&format!(" ({})", t.tz.name()));
            }
            s
        }
        PartitionsDef::Static(st) => {
            let keys = st.keys();
            let shown: Vec<&str> = keys.iter().take(5).map(String::as_str).collect();
            let more = if keys.len() > 5 { ", …" } else { "" };
            format!("static [{}{more}] ({})", shown.join(", "), keys.len())
        }
        PartitionsDef::Dynamic { .. } => "dynamic".into(),
        PartitionsDef::Multi(m) => format!("multi {} × {}", m.dims[0].0, m.dims[1].0),
    }
}

fn partitions_json(p: &PartitionsDef) -> serde_json::Value {
    match p {
        PartitionsDef::Time(t) => json!({
            "type": t.schedule.type_name(),
            "cron": t.schedule.cron_expr(),
            "start": t.start.format(&t.fmt).to_string(),
            "end": t.end.map(|e| e.format(&t.fmt).to_string()),
            "timezone": t.tz.name(),
            "fmt": t.fmt,
            "end_offset": t.end_offset,
        }),
        PartitionsDef::Static(st) => json!({"type": "static", "keys": st.keys()}),
        PartitionsDef::Dynamic { name } => json!({"type": "dynamic", "name": name}),
        PartitionsDef::Multi(m) => json!({
            "type": "multi",
            "dimensions": {
                m.dims[0].0.clone(): partitions_json(&m.dims[0].1),
                m.dims[1].0.clone(): partitions_json(&m.dims[1].1),
            }
        }),
    }
}

pub fn list(s: &Session, json: bool) -> Result<Outcome, Error> {
    let (_project, defs) = s.load_defs()?;
    if json {
        s.out.json(&defs_json(&defs));
        return Ok(Outcome::Ok);
    }
    let mut assets: Vec<_> = defs.assets.iter().collect();
    assets.sort_by(|a, b| a.key.cmp(&b.key));
    s.out.line(&format!("Assets ({})", assets.len()));
    let w = assets.iter().map(|a| a.key.len()).max().unwrap_or(0);
    for a in &assets {
        let parts = match &a.partitions {
            Some(p) => p
                .name
                .clone()
                .unwrap_or_else(|| describe_partitions(&p.def)),
            None => "-".into(),
        };
        let deps = deps(&defs, a);
        let deps = if deps.is_empty() {
            String::new()
        } else {
            format!("  ← {}", deps.join(", "))
        };
        s.out.line(&format!(
            "  {:w$}  {:7}  group={}  partitions={}  io_manager={}{}",
            a.key,
            a.compute.kind(),
            a.group,
            parts,
            a.io_manager,
            s.out.dim(&deps),
        ));
    }
    s.out.line(&format!("Resources ({})", defs.resources.len()));
    let w = defs.resources.keys().map(String::len).max().unwrap_or(0);
    for (k, r) in &defs.resources {
        let note = if r.span.is_none() {
            "  (default)".to_string()
        } else if r.is_settings() {
            let fields: Vec<String> = settings_fields(r)
                .iter()
                .map(|(f, v)| format!("{f}={v}"))
                .collect();
            format!("  {}", fields.join(" "))
        } else {
            String::new()
        };
        s.out
            .line(&format!("  {k:w$}  {}{}", r.type_name, s.out.dim(&note)));
    }
    s.out
        .line(&format!("Partitions ({})", defs.partitions.len()));
    let w = defs.partitions.keys().map(String::len).max().unwrap_or(0);
    for (k, p) in &defs.partitions {
        s.out
            .line(&format!("  {k:w$}  {}", describe_partitions(&p.def)));
    }
    Ok(Outcome::Ok)
}

/// A settings resource's fields as written (`${env:…}` kept), secrets as `***`.
fn settings_fields(r: &crate::model::Resource) -> Vec<(String, String)> {
    r.config
        .iter()
        .map(|(f, v)| {
            let shown = if r.secrets.contains(f) {
                "***".to_string()
            } else {
                match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                }
            };
            (f.clone(), shown)
        })
        .collect()
}

/// The upstream keys an asset reads, each once, in input order (two inputs
/// may read the same asset).
fn deps<'a>(defs: &'a Defs, a: &crate::model::Asset) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for i in &a.inputs {
        let k = defs.assets[i.upstream].key.as_str();
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

fn defs_json(defs: &Defs) -> serde_json::Value {
    let mut assets: Vec<_> = defs.assets.iter().collect();
    assets.sort_by(|a, b| a.key.cmp(&b.key));
    json!({
        "assets": assets.iter().map(|a| json!({
            "key": a.key,
            "group": a.group,
            "deps": deps(defs, a),
            "inputs": a.inputs.iter().map(|i| json!({
                "name": i.name,
                "asset": defs.assets[i.upstream].key,
                "mapping": i.mapping.type_name(),
                "mapping_inferred": i.mapping_inferred,
                "input_manager": i.input_manager,
                "load": i.load,
                "allow_missing_partitions": i.allow_missing_partitions,
            })).collect::<Vec<_>>(),
            "partitions": a.partitions.as_ref().map(|p| match &p.name {
                Some(n) => json!(n),
                None => partitions_json(&p.def),
            }),
            "io_manager": a.io_manager,
            "format": a.format.name(),
            "kind": a.compute.kind(),
            "tags": a.tags,
            "description": a.description,
            "code_version": a.code_version,
            "resources": a.resources,
            "config": a.config,
        })).collect::<Vec<_>>(),
        "resources": defs.resources.iter().map(|(k, r)| {
            let mut v = json!({
                "key": k,
                "type": r.type_name,
                "default": r.span.is_none(),
            });
            if r.is_settings() {
                v["fields"] = settings_fields(r)
                    .into_iter()
                    .map(|(f, x)| (f, json!(x)))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
                v["secrets"] = json!(r.secrets);
            }
            v
        }).collect::<Vec<_>>(),
        "partitions": defs.partitions.iter().map(|(k, p)| {
            let mut v = partitions_json(&p.def);
            v["name"] = json!(k);
            v
        }).collect::<Vec<_>>(),
    })
}
