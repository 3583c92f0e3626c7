//! `dg plan` and `dg list partitions`: resolving and printing plans.

use std::io::{BufWriter, Write};

use clap::{Args, ValueEnum};

use super::Session;
use crate::error::{Error, Outcome};
use crate::model::{AssetId, Defs};
use crate::partitions::PartitionsDef;

impl TargetArgs {
    /// `--select`, `*` when not given.
    pub fn select(&self) -> &str {
        self.select.as_deref().unwrap_or("*")
    }

    /// Whether any partition targeting flag was given.
    pub fn targets(&self) -> bool {
        self.partition.is_some()
            || self.partition_range.is_some()
            || self.all_partitions
            || self.last.is_some()
    }
}

/// Which assets and partitions a command works on.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Assets to include (selection syntax: keys, key:glob, +X, X+, group:, tag:, kind:, and/or/not)
    /// [default: *]
    #[arg(long, short = 's', value_name = "SEL")]
    pub select: Option<String>,
    /// One partition key, for every selected asset that has it (`DEF:KEY`: only the assets of
    /// partitions definition DEF; `latest`: the last partition of each definition at --now; `DEF:latest`: of DEF only)
    #[arg(long, value_name = "KEY", conflicts_with_all = ["partition_range", "all_partitions", "last"])]
    pub partition: Option<String>,
    /// An inclusive range of partition keys, `START...END` (`DEF:START...END` for one definition)
    #[arg(long, value_name = "A...B", conflicts_with_all = ["all_partitions", "last"])]
    pub partition_range: Option<String>,
    /// Every partition of every selected asset
    #[arg(long, conflicts_with = "last")]
    pub all_partitions: bool,
    /// The last N partitions of each definition at --now (a multi definition: its time
    /// dimension's last N, crossed with every key of the other dimension)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub last: Option<u32>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

pub use crate::run::Resolved;

impl TargetArgs {
    /// The library's [`crate::run::Target`] for these flags.
    pub fn target(&self) -> crate::run::Target {
        crate::run::Target {
            select: self.select().to_string(),
            partition: self.partition.clone(),
            partition_range: self.partition_range.clone(),
            all_partitions: self.all_partitions,
            last: self.last,
        }
    }
}

/// Loads the definitions and resolves the selection and the plan, printing
/// its notes.
pub fn resolve(s: &Session, t: &TargetArgs) -> Result<Resolved, Error> {
    let (project, defs) = s.load_defs()?;
    resolve_with(s, project, defs, t, s.now.timestamp())
}

/// Resolves the selection and the plan of loaded definitions as of `now`
/// (Unix seconds), printing its notes.
pub fn resolve_with(
    s: &Session,
    project: crate::project::Project,
    defs: Defs,
    t: &TargetArgs,
    now: i64,
) -> Result<Resolved, Error> {
    let r = crate::run::resolve(project, defs, &t.target(), now)?;
    for n in &r.plan.notes {
        s.out.err(&format!("note: {n}"));
    }
    Ok(r)
}

pub fn plan(
    s: &Session,
    t: &TargetArgs,
    json: bool,
    graph: Option<GraphFormat>,
) -> Result<Outcome, Error> {
    if let Some(g) = graph {
        return graph_of_selection(s, t, g);
    }
    let r = resolve(s, t)?;
    let plan = r.plan.group_ranges(&r.defs);
    print(s, &Resolved { plan, ..r }, json);
    Ok(Outcome::Ok)
}

/// Prints a resolved plan for humans or as JSON.
pub fn print(s: &Session, r: &Resolved, json: bool) {
    if json {
        let stdout = std::io::stdout();
        let mut w = BufWriter::with_capacity(1 << 20, stdout.lock());
        let _ = write_plan_json(&mut w, r, &s.now.to_rfc3339()).and_then(|_| w.flush());
        return;
    }
    print_plan(s, r);
}

pub use crate::partitions::KeyCache as Keys;

fn write_plan_json(w: &mut impl Write, r: &Resolved, now: &str) -> std::io::Result<()> {
    let defs = &r.defs;
    let mut keys = Keys::new(&r.cx);
    let js = |w: &mut dyn Write, s: &str| super::output::write_json_str(w, s);
    write!(w, "{{\"now\": ")?;
    js(w, now)?;
    write!(w, ", \"steps\": [")?;
    for (si, step) in r.plan.steps.iter().enumerate() {
        let asset = &defs.assets[step.asset];
        if si > 0 {
            write!(w, ",")?;
        }
        write!(w, "\n  {{\"id\": ")?;
        js(w, &crate::plan::step_id_of(defs, &mut keys, step))?;
        write!(w, ", \"asset\": ")?;
        js(w, &asset.key)?;
        write!(w, ", \"partition\": ")?;
        match (&asset.partitions, step.partition) {
            (Some(p), Some(i)) => js(w, keys.key(&p.def, i))?,
            _ => write!(w, "null")?,
        }
        if let (Some(p), false) = (&asset.partitions, step.range.is_empty()) {
            // A range step: every partition it materializes.
            write!(w, ", \"partitions\": [")?;
            for (k, &i) in step.range.iter().enumerate() {
                if k > 0 {
                    write!(w, ", ")?;
                }
                js(w, keys.key(&p.def, i))?;
            }
            write!(w, "]")?;
        }
        write!(w, ", \"io_manager\": ")?;
        js(w, &asset.io_manager)?;
        write!(w, ", \"inputs\": [")?;
        for (n, inp) in step.inputs.iter().enumerate() {
            let spec = &asset.inputs[inp.input];
            let up = &defs.assets[inp.upstream];
            if n > 0 {
                write!(w, ", ")?;
            }
            write!(w, "{{\"name\": ")?;
            js(w, &spec.name)?;
            write!(w, ", \"asset\": ")?;
            js(w, &up.key)?;
            write!(w, ", \"partitions\": ")?;
            match (&inp.partitions, &up.partitions) {
                (Some(ix), Some(p)) => {
                    write!(w, "[")?;
                    for (k, i) in ix.iter().enumerate() {
                        if k > 0 {
                            write!(w, ", ")?;
                        }
                        js(w, keys.key(&p.def, i))?;
                    }
                    write!(w, "]")?;
                }
                _ => write!(w, "null")?,
            }
            write!(w, ", \"manager\": ")?;
            js(w, spec.input_manager.as_deref().unwrap_or(&up.io_manager))?;
            write!(w, ", \"load\": {}", spec.load)?;
            write!(w, ", \"in_plan\": {}", inp.in_plan)?;
            write!(w, ", \"dropped\": [")?;
            for (k, key) in inp.dropped.iter().enumerate() {
                if k > 0 {
                    write!(w, ", ")?;
                }
                js(w, key)?;
            }
            write!(w, "]}}")?;
        }
        write!(w, "], \"after\": [")?;
        for (k, a) in r.plan.after(si).into_iter().enumerate() {
            if k > 0 {
                write!(w, ", ")?;
            }
            js(
                w,
                &crate::plan::step_id_of(defs, &mut keys, &r.plan.steps[a]),
            )?;
        }
        write!(w, "]}}")?;
    }
    writeln!(w, "\n]}}")
}

/// `[a … b] (n)` for a run of keys; several runs are separated by commas.
pub fn collapse(def: &PartitionsDef, idx: &[i64], keys: &mut Keys<'_>) -> String {
    if idx.is_empty() {
        return "[] (0)".into();
    }
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &i in idx {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => runs.push((i, i)),
        }
    }
    let mut parts: Vec<String> = Vec::new();
    for &(a, b) in runs.iter().take(4) {
        if a == b {
            parts.push(keys.key(def, a).to_string());
        } else if a + 1 == b {
            let first = keys.key(def, a).to_string();
            parts.push(format!("{first}, {}", keys.key(def, b)));
        } else {
            let first = keys.key(def, a).to_string();
            parts.push(format!("{first} … {}", keys.key(def, b)));
        }
    }
    if runs.len() > 4 {
        parts.push(format!("… {} more runs", runs.len() - 4));
    }
    let s = format!("[{}]", parts.join(", "));
    if idx.len() > 1 {
        format!("{s} ({})", idx.len())
    } else {
        s
    }
}

fn print_plan(s: &Session, r: &Resolved) {
    let defs = &r.defs;
    let mut keys = Keys::new(&r.cx);
    let n = r.plan.steps.len();
    if n == 0 {
        s.out
            .line(&format!("Plan at {}: nothing to do", s.now.to_rfc3339()));
        let sources: Vec<String> = r
            .selected
            .iter()
            .filter(|&&a| matches!(defs.assets[a].compute, crate::model::Compute::Source))
            .map(|&a| format!("`{}`", defs.assets[a].key))
            .collect();
        if !sources.is_empty() {
            s.out.line(&format!(
                "  (source assets are never materialized by dg: {})",
                sources.join(", ")
            ));
        }
        return;
    }
    s.out.line(&format!(
        "Plan at {}: {n} step{} for {} asset{}",
        s.now.to_rfc3339(),
        if n == 1 { "" } else { "s" },
        r.plan.blocks.len(),
        if r.plan.blocks.len() == 1 { "" } else { "s" },
    ));
    let w = r
        .plan
        .blocks
        .iter()
        .map(|b| defs.assets[b.asset].key.chars().count())
        .max()
        .unwrap_or(0);
    // What must already exist: per (upstream, reader), the upstream
    // partitions read and not produced by the plan (`None`: the whole
    // unpartitioned upstream).
    let mut missing: Vec<(AssetId, AssetId, Option<Vec<i64>>)> = Vec::new();
    for b in &r.plan.blocks {
        let a = &defs.assets[b.asset];
        let parts = match &a.partitions {
            Some(p) => collapse(&p.def, &b.partitions, &mut keys),
            None => String::new(),
        };
        let ins: Vec<String> = a
            .inputs
            .iter()
            .map(|i| defs.assets[i.upstream].key.clone())
            .collect();
        let ins = if ins.is_empty() {
            String::new()
        } else {
            s.out.dim(&format!("  ← {}", dedup(ins).join(", ")))
        };
        s.out.line(&format!("  {:w$}  {parts}{ins}", a.key));
        if !b.offsets.is_empty() {
            // Range steps (`backfill`): how the partitions are grouped.
            let steps = &r.plan.steps[b.base..b.base + b.len()];
            let mut shown: Vec<String> = steps
                .iter()
                .take(3)
                .map(|st| crate::plan::step_id_of(defs, &mut keys, st))
                .collect();
            if steps.len() > 3 {
                shown.push(format!("… {} more", steps.len() - 3));
            }
            s.out.line(&s.out.dim(&format!(
                "    {} range step{} (backfill): {}",
                steps.len(),
                if steps.len() == 1 { "" } else { "s" },
                shown.join(", ")
            )));
        }
        // Nonexistent upstream partitions a mapping left out are shown, never
        // dropped silently.
        for (ii, spec) in a.inputs.iter().enumerate() {
            let mut dropped: Vec<String> = Vec::new();
            for st in &r.plan.steps[b.base..b.base + b.len()] {
                for k in &st.inputs[ii].dropped {
                    if !dropped.contains(k) {
                        dropped.push(k.clone());
                    }
                }
            }
            if dropped.is_empty() {
                continue;
            }
            let up = &defs.assets[spec.upstream];
            let listed = match &up.partitions {
                Some(p) => crate::plan::describe_keys(&p.def, &dropped, &r.cx),
                None => crate::plan::describe_keys_plain(&dropped),
            };
            s.out.line(&s.out.dim(&format!(
                "    input `{}` leaves out {} nonexistent partition{} of `{}` (allow_nonexistent): {listed}",
                spec.name,
                dropped.len(),
                if dropped.len() == 1 { "" } else { "s" },
                up.key
            )));
        }
        for (ii, spec) in a.inputs.iter().enumerate() {
            // Missing upstream partitions are left out of such an input
            // instead of stopping the run: nothing needs to exist.
            if spec.allow_missing_partitions {
                continue;
            }
            let u = spec.upstream;
            let mut need: Vec<i64> = Vec::new();
            let mut whole = false;
            for st in &r.plan.steps[b.base..b.base + b.len()] {
                let inp = &st.inputs[ii];
                if inp.in_plan {
                    continue;
                }
                match &inp.partitions {
                    // Only the partitions the plan does not produce.
                    Some(ix) => {
                        need.extend(ix.iter().filter(|&p| r.plan.step_of(u, Some(p)).is_none()))
                    }
                    None => whole = true,
                }
            }
            if !whole && need.is_empty() {
                continue;
            }
            let entry = match missing.iter().position(|m| m.0 == u && m.1 == b.asset) {
                Some(i) => &mut missing[i],
                None => {
                    missing.push((u, b.asset, (!whole).then(Vec::new)));
                    missing.last_mut().expect("just pushed")
                }
            };
            if let Some(v) = &mut entry.2 {
                v.extend(need);
            }
        }
    }
    if missing.is_empty() {
        return;
    }
    s.out
        .line("Must already exist (not produced by this plan):");
    for (u, reader, need) in &mut missing {
        let up = &defs.assets[*u];
        let source = if matches!(up.compute, crate::model::Compute::Source) {
            "a source asset, "
        } else {
            ""
        };
        let reader = &defs.assets[*reader].key;
        match (need, &up.partitions) {
            (Some(v), Some(p)) => {
                v.sort_unstable();
                v.dedup();
                s.out.line(&format!(
                    "  `{}` {}  ({source}read by `{reader}`)",
                    up.key,
                    collapse(&p.def, v, &mut keys)
                ));
            }
            _ => s
                .out
                .line(&format!("  `{}`  ({source}read by `{reader}`)", up.key)),
        }
    }
    // Upstream assets left out of the selection can be added to it.
    let chosen: std::collections::HashSet<AssetId> = r.selected.iter().copied().collect();
    let simple = |k: &str| {
        k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | '.'))
    };
    if let Some((_, reader, _)) = missing.iter().find(|(u, _, _)| {
        !chosen.contains(u) && !matches!(defs.assets[*u].compute, crate::model::Compute::Source)
    }) {
        let key = &defs.assets[*reader].key;
        if simple(key) {
            s.out.line(&s.out.dim(&format!(
                "  (to plan upstream assets too, select them, e.g. `--select '+{key}'`)"
            )));
        }
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
    v
}

/// `dg plan --graph`: the selected assets and the edges between them. The
/// graph needs no partitions; partition flags, when given, are still
/// resolved so that a mistake in them is reported.
fn graph_of_selection(s: &Session, t: &TargetArgs, g: GraphFormat) -> Result<Outcome, Error> {
    if t.partition.is_some() || t.partition_range.is_some() || t.all_partitions {
        let r = resolve(s, t)?;
        print_graph(s, &r.defs, &r.selected, g);
        return Ok(Outcome::Ok);
    }
    let (_project, defs) = s.load_defs()?;
    let selected = crate::run::select(&defs, t.select())?;
    print_graph(s, &defs, &selected, g);
    Ok(Outcome::Ok)
}

/// An edge's label: the mapping, after the input's name when that is not
/// the upstream's last key segment (two inputs may read one asset).
fn edge_label(defs: &Defs, i: &crate::model::Input) -> String {
    let up = &defs.assets[i.upstream];
    let mapping = i.mapping.type_name();
    if up.segments().last() == Some(i.name.as_str()) {
        mapping.to_string()
    } else {
        format!("{}: {mapping}", i.name)
    }
}

fn print_graph(s: &Session, defs: &Defs, selected: &[AssetId], g: GraphFormat) {
    let chosen: std::collections::HashSet<AssetId> = selected.iter().copied().collect();
    let mut out = String::new();
    match g {
        GraphFormat::Dot => {
            out.push_str("digraph dg {\n  rankdir=LR;\n  node [shape=box];\n");
            for &a in selected {
                let asset = &defs.assets[a];
                out.push_str(&format!(
                    "  {} [label={}];\n",
                    serde_json::to_string(&asset.key).unwrap_or_default(),
                    serde_json::to_string(&format!("{}\n{}", asset.key, asset.compute.kind()))
                        .unwrap_or_default()
                ));
                for i in asset.inputs.iter().filter(|i| chosen.contains(&i.upstream)) {
                    out.push_str(&format!(
                        "  {} -> {} [label={}];\n",
                        serde_json::to_string(&defs.assets[i.upstream].key).unwrap_or_default(),
                        serde_json::to_string(&asset.key).unwrap_or_default(),
                        serde_json::to_string(&edge_label(defs, i)).unwrap_or_default()
                    ));
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            let text = |t: &str| t.replace('"', "#quot;");
            for &a in selected {
                let asset = &defs.assets[a];
                out.push_str(&format!("  n{a}[\"{}\"]\n", text(&asset.key)));
                for i in asset.inputs.iter().filter(|i| chosen.contains(&i.upstream)) {
                    out.push_str(&format!(
                        "  n{} -->|\"{}\"| n{a}\n",
                        i.upstream,
                        text(&edge_label(defs, i))
                    ));
                }
            }
        }
    }
    s.out.line(out.trim_end());
}

/// `dg list partitions NAME`: keys of a partitions definition or an asset's.
pub fn list_partitions(s: &Session, name: &str, json: bool) -> Result<Outcome, Error> {
    let (project, defs) = s.load_defs()?;
    let cx = crate::run::key_ctx(&defs, &project, s.now.timestamp())?;
    let def = match (defs.partitions.get(name), defs.asset(name)) {
        (Some(p), _) => p.def.clone(),
        (None, Some(a)) => match &a.partitions {
            Some(p) => p.def.clone(),
            None => {
                let names: Vec<&str> = defs.partitions.keys().map(String::as_str).collect();
                return Err(
                    Error::usage(format!("asset `{name}` is not partitioned")).help(format!(
                        "name a partitions definition or a partitioned asset; definitions: {}",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            crate::diag::list_names(&names)
                        }
                    )),
                );
            }
        },
        (None, None) => {
            let mut names: Vec<&str> = defs.partitions.keys().map(String::as_str).collect();
            names.extend(defs.assets.iter().map(|a| a.key.as_str()));
            return Err(
                Error::usage(format!("no partitions definition or asset named `{name}`"))
                    .help(crate::diag::suggest(name, &names, "names")),
            );
        }
    };
    let n = def.len(&cx);
    if n == 0 && !json {
        // An empty list is an answer, but never a silent one.
        let why = match def.as_time().and_then(|t| t.window(0)) {
            Some((start, end)) => format!(
                ": its first window starts at {} and ends at {}",
                start.to_rfc3339(),
                end.to_rfc3339()
            ),
            None => String::new(),
        };
        s.out.err(&format!(
            "note: `{name}` has no partitions at --now ({}){why}",
            s.now.to_rfc3339()
        ));
    }
    let stdout = std::io::stdout();
    let mut w = BufWriter::new(stdout.lock());
    let js = |w: &mut dyn Write, v: &str| super::output::write_json_str(w, v);
    let res: std::io::Result<()> = (|| {
        if json {
            write!(w, "{{\"name\": ")?;
            js(&mut w, name)?;
            write!(w, ", \"keys\": [")?;
            for i in 0..n {
                if i > 0 {
                    write!(w, ", ")?;
                }
                js(&mut w, &def.key(i, &cx).unwrap_or_default())?;
            }
            writeln!(w, "]}}")?;
        } else {
            for i in 0..n {
                let k = def.key(i, &cx).unwrap_or_default();
                writeln!(w, "{}", super::output::visible(&k))?;
            }
        }
        w.flush()
    })();
    let _ = res; // a closed pipe is not an error
    Ok(Outcome::Ok)
}
