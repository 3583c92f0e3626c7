//! Stage 4b: the plan — which steps run, what each reads, what each waits for.
//!
//! A plan is plain data: steps in topological order, each an (asset,
//! partition) pair with its inputs' upstream partitions as index ranges.
//! Nothing here formats a key until output asks for it; a plan of 880,000
//! hourly steps is a few vectors of integers.
//!
//! Targeting follows the contract: `--partition K` / `--partition-range A...B`
//! apply to every selected asset whose partitions definition has those keys;
//! every other selected partitioned asset gets exactly the partitions that
//! the selected assets downstream of it need, through the mappings.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::model::{AssetId, Defs};
use crate::partitions::mapping::{Indices, map_upstream};
use crate::partitions::{KeyCtx, PartitionsDef};

/// Which partitions the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targeting {
    /// No flag: only unpartitioned assets can be planned directly.
    None,
    /// `KEY`, or `DEF:KEY` for the assets of the named definition `DEF` only.
    Partition(String),
    /// Inclusive range `A...B` (or `DEF:A...B`).
    Range(String, String),
    All,
    /// The last `n` partitions of each definition at *now* (`--last N`;
    /// `--partition latest` is `Last(1)`). For a multi definition with a
    /// time dimension: its last `n` windows crossed with every key of the
    /// other dimension. With a definition name, only its assets
    /// (`--partition DEF:latest`).
    Last(i64, Option<String>),
}

impl Targeting {
    /// Parses `A...B`.
    pub fn range(text: &str) -> Result<Targeting, PlanError> {
        match text.split_once("...") {
            Some((a, b)) if !a.is_empty() && !b.is_empty() => {
                Ok(Targeting::Range(a.to_string(), b.to_string()))
            }
            _ => Err(PlanError::new(format!(
                "invalid partition range `{text}`: expected `START...END`"
            ))
            .help("e.g. `--partition-range 2024-01-01...2024-01-07` (both ends included)")),
        }
    }
}

/// A plan error: nothing runs (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    pub message: String,
    pub help: Option<String>,
}

impl PlanError {
    pub fn new(message: impl Into<String>) -> Self {
        PlanError {
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, h: impl Into<String>) -> Self {
        self.help = Some(h.into());
        self
    }
}

/// One input of one step.
#[derive(Debug, Clone)]
pub struct StepInput {
    /// Index into the asset's `inputs`.
    pub input: usize,
    pub upstream: AssetId,
    /// Upstream partitions read; `None` when the upstream is unpartitioned.
    pub partitions: Option<Indices>,
    /// Whether the plan produces everything this input reads.
    pub in_plan: bool,
    /// Upstream keys that do not exist and that the mapping left out
    /// (`allow_nonexistent = true`), shown by `dg plan`.
    pub dropped: Vec<String>,
}

/// One step: materialize one partition of one asset (or the whole of an
/// unpartitioned asset), or a range of consecutive partitions of an asset
/// with a `backfill` policy.
#[derive(Debug, Clone)]
pub struct Step {
    pub asset: AssetId,
    /// Index into the asset's partitions; `None` when unpartitioned. The
    /// first partition of a range step.
    pub partition: Option<i64>,
    /// A range step's partitions, consecutive and in order (one or more);
    /// empty for a step of one partition without `backfill`.
    pub range: Vec<i64>,
    pub inputs: Vec<StepInput>,
}

impl Step {
    /// The partitions this step materializes: the range, or its one
    /// partition (none when unpartitioned).
    pub fn partitions(&self) -> Vec<i64> {
        if self.range.is_empty() {
            self.partition.into_iter().collect()
        } else {
            self.range.clone()
        }
    }
}

/// The steps of one asset: a contiguous block of the plan.
#[derive(Debug, Clone)]
pub struct AssetSteps {
    pub asset: AssetId,
    /// First step of the block.
    pub base: usize,
    /// The planned partitions, sorted (empty for an unpartitioned asset).
    pub partitions: Vec<i64>,
    /// With range steps: for each of `partitions`, its step's offset from
    /// `base`. Empty when each partition is its own step.
    pub offsets: Vec<usize>,
}

impl AssetSteps {
    /// How many steps the block holds.
    pub fn len(&self) -> usize {
        match self.offsets.last() {
            Some(&o) => o + 1,
            None => self.partitions.len().max(1),
        }
    }
}

/// A resolved plan.
#[derive(Debug)]
pub struct Plan {
    /// Steps in topological order; each asset's steps are contiguous and in
    /// partition order.
    pub steps: Vec<Step>,
    pub blocks: Vec<AssetSteps>,
    /// For each asset, its block in `blocks`, when planned.
    pub block_of: Vec<Option<usize>>,
    /// Things worth saying that are not errors (an asset left out because
    /// its dynamic definition has no keys yet).
    pub notes: Vec<String>,
}

impl Plan {
    /// The step that materializes `partition` of `asset`, if planned.
    pub fn step_of(&self, asset: AssetId, partition: Option<i64>) -> Option<usize> {
        let b = &self.blocks[self.block_of[asset]?];
        match partition {
            None if b.partitions.is_empty() => Some(b.base),
            None => None,
            Some(p) => b.partitions.binary_search(&p).ok().map(|i| {
                b.base
                    + match b.offsets.get(i) {
                        Some(&o) => o,
                        None => i,
                    }
            }),
        }
    }

    /// Groups the planned partitions of every asset with a `backfill`
    /// policy into range steps: runs of consecutive partitions, at most
    /// `max_partitions_per_step` each. A gap (a partition not planned, as
    /// `--missing` leaves) starts a new step. Call it last, on the plan
    /// that runs: each range step reads the union of its partitions' inputs.
    pub fn group_ranges(self, defs: &Defs) -> Plan {
        if !self
            .blocks
            .iter()
            .any(|b| defs.assets[b.asset].backfill.is_some() && b.offsets.is_empty())
        {
            return self;
        }
        let mut out = Plan {
            steps: Vec::with_capacity(self.steps.len()),
            blocks: Vec::with_capacity(self.blocks.len()),
            block_of: self.block_of.clone(),
            notes: self.notes.clone(),
        };
        for b in &self.blocks {
            let base = out.steps.len();
            let policy = defs.assets[b.asset].backfill;
            let (Some(policy), true) = (policy, b.offsets.is_empty() && !b.partitions.is_empty())
            else {
                out.steps
                    .extend_from_slice(&self.steps[b.base..b.base + b.len()]);
                out.blocks.push(AssetSteps { base, ..b.clone() });
                continue;
            };
            let max = policy.max_per_step.map_or(usize::MAX, |n| n as usize);
            let n = b.partitions.len();
            let mut offsets = Vec::with_capacity(n);
            let mut i = 0;
            while i < n {
                let mut j = i + 1;
                while j < n && j - i < max && b.partitions[j] == b.partitions[j - 1] + 1 {
                    j += 1;
                }
                let group = &self.steps[b.base + i..b.base + j];
                offsets.extend(std::iter::repeat_n(out.steps.len() - base, j - i));
                out.steps.push(merge_steps(group));
                i = j;
            }
            out.blocks.push(AssetSteps {
                asset: b.asset,
                base,
                partitions: b.partitions.clone(),
                offsets,
            });
        }
        out
    }

    /// Keeps the steps where `keep` is true. Inputs whose producers are
    /// dropped are no longer `in_plan`: they must already exist.
    pub fn retain(self, keep: &[bool]) -> Plan {
        let mut out = Plan {
            steps: Vec::new(),
            blocks: Vec::new(),
            block_of: vec![None; self.block_of.len()],
            notes: self.notes.clone(),
        };
        for b in &self.blocks {
            let kept: Vec<usize> = (b.base..b.base + b.len()).filter(|&s| keep[s]).collect();
            if kept.is_empty() {
                continue;
            }
            out.block_of[b.asset] = Some(out.blocks.len());
            let mut offsets = Vec::new();
            if !b.offsets.is_empty() {
                for (o, &s) in kept.iter().enumerate() {
                    offsets.extend(std::iter::repeat_n(o, self.steps[s].range.len()));
                }
            }
            out.blocks.push(AssetSteps {
                asset: b.asset,
                base: out.steps.len(),
                partitions: kept
                    .iter()
                    .flat_map(|&s| self.steps[s].partitions())
                    .collect(),
                offsets,
            });
            out.steps
                .extend(kept.iter().map(|&s| self.steps[s].clone()));
        }
        for si in 0..out.steps.len() {
            let inputs = std::mem::take(&mut out.steps[si].inputs);
            let inputs = inputs
                .into_iter()
                .map(|mut inp| {
                    inp.in_plan = match &inp.partitions {
                        None => out.step_of(inp.upstream, None).is_some(),
                        Some(ix) => ix
                            .iter()
                            .all(|p| out.step_of(inp.upstream, Some(p)).is_some()),
                    };
                    inp
                })
                .collect();
            out.steps[si].inputs = inputs;
        }
        out
    }

    /// The steps that `step` waits for: planned producers of its inputs.
    pub fn after(&self, step: usize) -> Vec<usize> {
        let mut out = Vec::new();
        for inp in &self.steps[step].inputs {
            match &inp.partitions {
                None => out.extend(self.step_of(inp.upstream, None)),
                Some(ix) => out.extend(
                    ix.iter()
                        .filter_map(|p| self.step_of(inp.upstream, Some(p))),
                ),
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Builds the plan for `selected` assets (ids in topological order).
pub fn build(
    defs: &Defs,
    selected: &[AssetId],
    targeting: &Targeting,
    cx: &KeyCtx,
) -> Result<Plan, Vec<PlanError>> {
    let n = defs.assets.len();
    // Source assets are only ever loaded, never materialized.
    let selected: Vec<AssetId> = selected
        .iter()
        .copied()
        .filter(|&a| !matches!(defs.assets[a].compute, crate::model::Compute::Source))
        .collect();
    let selected = &selected[..];
    let mut is_selected = vec![false; n];
    for &a in selected {
        is_selected[a] = true;
    }
    let def_of = |a: AssetId| -> Option<&Arc<PartitionsDef>> {
        defs.assets[a].partitions.as_ref().map(|p| &p.def)
    };

    // 1. Direct targeting.
    let mut parts: Vec<Option<BTreeSetOrRange>> = vec![None; n];
    let mut targeted = vec![false; n];
    let mut errors = Vec::new();
    match targeting {
        Targeting::None => {}
        Targeting::All => {
            for &a in selected {
                if let Some(d) = def_of(a) {
                    parts[a] = Some(BTreeSetOrRange::Range(0, d.len(cx)));
                    targeted[a] = true;
                }
            }
        }
        Targeting::Last(count, only) => {
            for &a in selected {
                if !on_def(defs, a, only.as_deref()) {
                    continue;
                }
                if let Some(d) = def_of(a) {
                    let last = last_partitions(d, *count, cx);
                    if !last.is_empty() {
                        parts[a] = Some(BTreeSetOrRange::Set(last));
                        targeted[a] = true;
                    }
                }
            }
        }
        Targeting::Partition(k) => {
            let (only, k) = split_def(defs, k);
            for &a in selected {
                if !on_def(defs, a, only) {
                    continue;
                }
                if let Some(i) = def_of(a).and_then(|d| d.index_of(k, cx)) {
                    parts[a] = Some(BTreeSetOrRange::Range(i, i + 1));
                    targeted[a] = true;
                }
            }
            if !targeted.iter().any(|&t| t) {
                errors.push(no_such_key(defs, selected, &[k], cx));
            }
        }
        Targeting::Range(from, to) => {
            let (only, from) = split_def(defs, from);
            let (from, to) = (from.to_string(), to.to_string());
            for &a in selected {
                if !on_def(defs, a, only) {
                    continue;
                }
                let Some(d) = def_of(a) else { continue };
                if let (Some(i), Some(j)) = (d.index_of(&from, cx), d.index_of(&to, cx)) {
                    if i > j {
                        errors.push(
                            PlanError::new(format!(
                                "partition range `{from}...{to}` is backwards: `{from}` comes after `{to}`"
                            ))
                            .help(format!("write it as `{to}...{from}`")),
                        );
                        return Err(errors);
                    }
                    parts[a] = Some(BTreeSetOrRange::Range(i, j + 1));
                    targeted[a] = true;
                }
            }
            if !targeted.iter().any(|&t| t) {
                errors.push(no_such_key(
                    defs,
                    selected,
                    &[from.as_str(), to.as_str()],
                    cx,
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // 2. Needs flow upstream, in reverse topological order.
    for &a in selected.iter().rev() {
        let asset = &defs.assets[a];
        let my_def = def_of(a);
        if my_def.is_some() && parts[a].is_none() {
            continue; // reported below
        }
        for inp in &asset.inputs {
            let u = inp.upstream;
            if !is_selected[u] || targeted[u] {
                continue;
            }
            let Some(up_def) = def_of(u) else { continue };
            let mut need = BTreeSet::new();
            let mut add = |m: crate::partitions::mapping::Mapped| need.extend(m.indices.iter());
            match (my_def, &parts[a]) {
                (Some(d), Some(p)) => {
                    for i in p.iter() {
                        add(map_upstream(&inp.mapping, up_def, Some((d, i)), cx));
                    }
                }
                _ => add(map_upstream(&inp.mapping, up_def, None, cx)),
            }
            let entry = parts[u].get_or_insert_with(|| BTreeSetOrRange::Set(BTreeSet::new()));
            entry.extend(need);
        }
    }

    // 2b. Targeted partitions flow downstream, as in Dagster's asset
    // backfills: a selected asset gets every partition that reads a targeted
    // partition (or one reached this way) upstream of it. This never turns
    // back upstream, and directly targeted assets keep exactly their keys.
    let mut down: Vec<Option<BTreeSet<i64>>> = vec![None; n];
    for &a in selected {
        if targeted[a] {
            down[a] = parts[a].as_ref().map(|p| p.iter().collect());
            continue;
        }
        let Some(my_def) = def_of(a) else { continue };
        let mut reached = BTreeSet::new();
        for inp in &defs.assets[a].inputs {
            let (Some(from), Some(up_def)) = (&down[inp.upstream], def_of(inp.upstream)) else {
                continue;
            };
            if from.is_empty() {
                continue;
            }
            reached.extend(readers(&inp.mapping, up_def, from, my_def, cx));
        }
        if !reached.is_empty() {
            parts[a]
                .get_or_insert_with(|| BTreeSetOrRange::Set(BTreeSet::new()))
                .extend(reached.clone());
            down[a] = Some(reached);
        }
    }

    // 3. Every selected partitioned asset must have partitions; one whose
    // dynamic definition has no keys yet is left out with a note.
    let mut notes = Vec::new();
    let mut left_out = vec![false; n];
    for &a in selected {
        if def_of(a).is_some_and(|d| is_dynamic(d) && d.is_empty(cx))
            && parts[a].as_ref().is_none_or(|p| p.is_empty())
            && !matches!(targeting, Targeting::None)
        {
            notes.push(format!(
                "`{}` is left out: its dynamic partitions have no keys yet (add some with `dg partitions add`)",
                defs.assets[a].key
            ));
            left_out[a] = true;
            continue;
        }
        if def_of(a).is_some() && parts[a].as_ref().is_none_or(|p| p.is_empty()) {
            let asset = &defs.assets[a];
            let hint = match targeting {
                Targeting::None => {
                    "pass `--partition KEY`, `--partition-range A...B` or `--all-partitions`"
                        .to_string()
                }
                _ if def_of(a).is_some_and(|d| d.is_empty(cx)) => format!(
                    "it has no partitions yet at --now; leave `{}` out of `--select`",
                    asset.key
                ),
                _ => format!(
                    "its partitions at --now: {}; target some of them, or leave `{}` out of `--select`",
                    sample(def_of(a).unwrap(), cx),
                    asset.key
                ),
            };
            errors.push(
                PlanError::new(format!(
                    "asset `{}` is partitioned but gets no partitions from this command",
                    asset.key
                ))
                .help(hint),
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // 4. Steps, asset by asset.
    let selected: Vec<AssetId> = selected.iter().copied().filter(|&a| !left_out[a]).collect();
    let selected = &selected[..];
    let mut plan = Plan {
        notes,
        steps: Vec::new(),
        blocks: Vec::new(),
        block_of: vec![None; n],
    };
    let mut base = 0;
    for &a in selected {
        let partitions: Vec<i64> = match &parts[a] {
            Some(p) => p.iter().collect(),
            None => Vec::new(),
        };
        plan.block_of[a] = Some(plan.blocks.len());
        let size = if def_of(a).is_some() {
            partitions.len()
        } else {
            1
        };
        plan.blocks.push(AssetSteps {
            asset: a,
            base,
            partitions,
            offsets: Vec::new(),
        });
        base += size;
    }
    let mut nonexistent_errors = 0usize;
    for bi in 0..plan.blocks.len() {
        let a = plan.blocks[bi].asset;
        let asset = &defs.assets[a];
        let my_def = def_of(a);
        let partitions: Vec<Option<i64>> = if my_def.is_some() {
            plan.blocks[bi]
                .partitions
                .iter()
                .map(|&p| Some(p))
                .collect()
        } else {
            vec![None]
        };
        for p in partitions {
            let mut inputs = Vec::with_capacity(asset.inputs.len());
            for (ii, inp) in asset.inputs.iter().enumerate() {
                let u = inp.upstream;
                let mut dropped = Vec::new();
                let (partitions, in_plan) = match def_of(u) {
                    None => (None, plan.step_of(u, None).is_some()),
                    Some(up_def) => {
                        let m = map_upstream(
                            &inp.mapping,
                            up_def,
                            my_def.zip(p).map(|(d, i)| (&**d, i)),
                            cx,
                        );
                        if !m.nonexistent.is_empty() {
                            nonexistent_errors += 1;
                            if nonexistent_errors <= 10 {
                                errors.push(nonexistent_error(defs, a, p, ii, &m.nonexistent, cx));
                            }
                        } else if m.indices.is_empty()
                            && m.dropped.is_empty()
                            && !inp.allow_missing_partitions
                        {
                            // Never a silent empty input: a mapping that reads
                            // nothing is as wrong as one that reads too little.
                            nonexistent_errors += 1;
                            if nonexistent_errors <= 10 {
                                errors.push(empty_input_error(defs, a, p, ii, cx));
                            }
                        }
                        dropped = m.dropped;
                        let in_plan = match plan.block_of[u] {
                            Some(ub) => {
                                let have = &plan.blocks[ub].partitions;
                                m.indices.iter().all(|i| have.binary_search(&i).is_ok())
                            }
                            None => m.indices.is_empty(),
                        };
                        (Some(m.indices), in_plan)
                    }
                };
                inputs.push(StepInput {
                    input: ii,
                    upstream: u,
                    partitions,
                    in_plan,
                    dropped,
                });
            }
            plan.steps.push(Step {
                asset: a,
                partition: p,
                range: Vec::new(),
                inputs,
            });
        }
    }
    if nonexistent_errors > 10 {
        errors.push(PlanError::new(format!(
            "… and {} more steps whose inputs resolve to nonexistent or no upstream partitions",
            nonexistent_errors - 10
        )));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(plan)
}

/// The id of a step: `asset[partition]`, `asset[first...last]` for a range
/// step of several partitions, or `asset` when unpartitioned.
pub fn step_id_of(defs: &Defs, keys: &mut crate::partitions::KeyCache<'_>, step: &Step) -> String {
    let a = &defs.assets[step.asset];
    match (&a.partitions, &step.range[..]) {
        (Some(p), [first, .., last]) => {
            let first = keys.key(&p.def, *first).to_string();
            format!("{}[{first}...{}]", a.key, keys.key(&p.def, *last))
        }
        _ => step_id(defs, keys, step.asset, step.partition),
    }
}

/// The id of a step: `asset[partition]`, or `asset` when unpartitioned.
pub fn step_id(
    defs: &Defs,
    keys: &mut crate::partitions::KeyCache<'_>,
    asset: AssetId,
    partition: Option<i64>,
) -> String {
    let a = &defs.assets[asset];
    match (&a.partitions, partition) {
        (Some(p), Some(i)) => format!("{}[{}]", a.key, keys.key(&p.def, i)),
        _ => a.key.clone(),
    }
}

/// The step that would materialize `partition` of `asset`, with its inputs
/// resolved through the mappings (none of them marked `in_plan`).
pub fn step_for(defs: &Defs, asset: AssetId, partition: Option<i64>, cx: &KeyCtx) -> Step {
    let a = &defs.assets[asset];
    let my_def = a.partitions.as_ref().map(|p| &p.def);
    let inputs = a
        .inputs
        .iter()
        .enumerate()
        .map(|(ii, inp)| StepInput {
            input: ii,
            upstream: inp.upstream,
            partitions: defs.assets[inp.upstream].partitions.as_ref().map(|up| {
                map_upstream(
                    &inp.mapping,
                    &up.def,
                    my_def.zip(partition).map(|(d, i)| (&**d, i)),
                    cx,
                )
                .indices
            }),
            in_plan: false,
            dropped: Vec::new(),
        })
        .collect();
    Step {
        asset,
        partition,
        range: Vec::new(),
        inputs,
    }
}

/// One range step from the steps of consecutive partitions of one asset:
/// each input reads the union of what they read.
fn merge_steps(group: &[Step]) -> Step {
    let first = &group[0];
    let inputs = first
        .inputs
        .iter()
        .enumerate()
        .map(|(k, inp)| {
            let partitions = inp.partitions.as_ref().map(|_| {
                let mut all: Vec<i64> = group
                    .iter()
                    .filter_map(|st| st.inputs[k].partitions.as_ref())
                    .flat_map(|ix| ix.iter())
                    .collect();
                all.sort_unstable();
                all.dedup();
                Indices::from_sorted(all)
            });
            let mut dropped: Vec<String> = group
                .iter()
                .flat_map(|st| st.inputs[k].dropped.iter().cloned())
                .collect();
            dropped.dedup();
            StepInput {
                input: inp.input,
                upstream: inp.upstream,
                partitions,
                in_plan: group.iter().all(|st| st.inputs[k].in_plan),
                dropped,
            }
        })
        .collect();
    Step {
        asset: first.asset,
        partition: first.partition,
        range: group.iter().filter_map(|st| st.partition).collect(),
        inputs,
    }
}

/// `DEF:KEY` → (`Some(DEF)`, `KEY`) when `DEF` names a partitions
/// definition; anything else is a plain key (keys may hold `:`).
fn split_def<'k>(defs: &Defs, k: &'k str) -> (Option<&'k str>, &'k str) {
    match k.split_once(':') {
        Some((d, rest)) if defs.partitions.contains_key(d) => (Some(d), rest),
        _ => (None, k),
    }
}

/// Whether asset `a` is on the named definition `only` (always, without a name).
fn on_def(defs: &Defs, a: AssetId, only: Option<&str>) -> bool {
    match only {
        None => true,
        Some(name) => defs.assets[a]
            .partitions
            .as_ref()
            .is_some_and(|p| p.name.as_deref() == Some(name)),
    }
}

fn is_dynamic(d: &PartitionsDef) -> bool {
    match d {
        PartitionsDef::Dynamic { .. } => true,
        PartitionsDef::Multi(m) => m.dims.iter().any(|(_, d)| is_dynamic(d)),
        _ => false,
    }
}

/// The last `count` partitions of `def` at *now*: for a multi definition
/// with one time dimension, its last `count` windows crossed with every key
/// of the other dimension.
pub fn last_partitions(def: &PartitionsDef, count: i64, cx: &KeyCtx) -> BTreeSet<i64> {
    let count = count.max(0);
    if let PartitionsDef::Multi(m) = def {
        let times: Vec<usize> = (0..2)
            .filter(|&p| matches!(*m.dims[p].1, PartitionsDef::Time(_)))
            .collect();
        if let [pos] = times[..] {
            let (n0, n1) = (m.dims[0].1.len(cx), m.dims[1].1.len(cx));
            let mut out = BTreeSet::new();
            let nt = if pos == 0 { n0 } else { n1 };
            for t in (nt - count).max(0)..nt {
                if pos == 0 {
                    out.extend((0..n1).map(|b| t * n1 + b));
                } else {
                    out.extend((0..n0).map(|a| a * n1 + t));
                }
            }
            return out;
        }
    }
    let n = def.len(cx);
    ((n - count).max(0)..n).collect()
}

/// The partitions of `down` whose input (through `mapping`) reads one of
/// `from` of `up`. Time definitions only look at the windows near `from`.
fn readers(
    mapping: &crate::partitions::MappingSpec,
    up: &PartitionsDef,
    from: &BTreeSet<i64>,
    down: &PartitionsDef,
    cx: &KeyCtx,
) -> BTreeSet<i64> {
    let n = down.len(cx);
    let candidates: Box<dyn Iterator<Item = i64>> = match (up.as_time(), down.as_time(), mapping) {
        (
            Some(u),
            Some(d),
            crate::partitions::MappingSpec::TimeWindow {
                start_offset,
                end_offset,
                ..
            },
        ) => {
            let (Some(&lo), Some(&hi)) = (from.first(), from.last()) else {
                return BTreeSet::new();
            };
            let (Some(start), Some(end)) = (u.tick(lo), u.tick(hi + 1)) else {
                return BTreeSet::new();
            };
            let margin = start_offset.abs() + end_offset.abs() + 1;
            let a = (d.floor_index(start) - margin).max(0);
            let b = (d.floor_index(end - 1) + margin).min(n - 1);
            Box::new(a..=b)
        }
        _ => Box::new(0..n),
    };
    candidates
        .filter(|&i| {
            map_upstream(mapping, up, Some((down, i)), cx)
                .indices
                .iter()
                .any(|j| from.contains(&j))
        })
        .collect()
}

fn sample(def: &PartitionsDef, cx: &KeyCtx) -> String {
    let n = def.len(cx);
    if n == 0 {
        return "no partitions yet".into();
    }
    let q = |i: i64| format!("`{}`", def.key(i, cx).unwrap_or_default());
    if n <= 4 {
        return (0..n).map(q).collect::<Vec<_>>().join(", ");
    }
    format!("{}, {}, {}, … {} ({n} keys)", q(0), q(1), q(2), q(n - 1))
}

/// Why `key` is not one of the partitions of `asset` (on `def`) at *now*,
/// when it looks like one of its keys (a time key before the start, after
/// the end, or of a window not over yet).
fn why_not(def: &PartitionsDef, asset: &str, key: &str, cx: &KeyCtx) -> Option<String> {
    let PartitionsDef::Time(t) = def else {
        return None;
    };
    let n = def.len(cx);
    if let Some(i) = t.index_of_key(key) {
        return (i >= n).then(|| {
            let now = chrono::DateTime::from_timestamp(cx.now, 0)
                .map(|d| d.to_rfc3339())
                .unwrap_or_default();
            match t.window(i) {
                Some((_, end)) if end.timestamp() > cx.now => format!(
                    "`{key}` of `{asset}` is not over yet at --now ({now}): its window ends at {}",
                    end.to_rfc3339()
                ),
                _ => format!(
                    "`{key}` of `{asset}` is past its last partition at --now ({now}), moved by `end_offset`"
                ),
            }
        });
    }
    let naive = crate::partitions::time::parse_time(key, &t.fmt).ok()?;
    if naive < t.start {
        Some(format!(
            "`{key}` is before the first partition of `{asset}`, `{}`",
            def.key(0, cx).unwrap_or_else(|| t.start.to_string())
        ))
    } else if t.end.is_some_and(|e| naive >= e) {
        Some(format!(
            "`{key}` is at or after the `end` of the partitions of `{asset}`"
        ))
    } else {
        None
    }
}

fn no_such_key(defs: &Defs, selected: &[AssetId], keys: &[&str], cx: &KeyCtx) -> PlanError {
    let shown = keys
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(" and ");
    // One line per partitions definition, naming the selected assets on it.
    let mut groups: Vec<(&Arc<PartitionsDef>, Vec<&str>)> = Vec::new();
    for &a in selected {
        if let Some(p) = &defs.assets[a].partitions {
            let key = defs.assets[a].key.as_str();
            match groups.iter_mut().find(|(d, _)| Arc::ptr_eq(d, &p.def)) {
                Some((_, names)) => names.push(key),
                None => groups.push((&p.def, vec![key])),
            }
        }
    }
    let msg = if keys.len() == 1 {
        format!("no selected asset has the partition {shown}")
    } else {
        format!("no selected asset has both partitions {shown}")
    };
    let e = PlanError::new(msg);
    if groups.is_empty() {
        return e.help("no selected asset is partitioned; drop the partition flag");
    }
    let mut help: Vec<String> = Vec::new();
    for (def, names) in &groups {
        for k in keys {
            if def.index_of(k, cx).is_none()
                && let Some(why) = why_not(def, names[0], k, cx)
                && !help.contains(&why)
            {
                help.push(why);
            }
        }
    }
    help.push("the selected assets' partitions at --now:".into());
    for (def, names) in &groups {
        let shown_names: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
        let more = if names.len() > 3 {
            format!(" and {} more", names.len() - 3)
        } else {
            String::new()
        };
        help.push(format!(
            "  {}{more}: {}",
            shown_names.join(", "),
            sample(def, cx)
        ));
    }
    e.help(help.join("\n"))
}

/// Input `input` of the step of asset `a` for partition `p`, as the
/// errors about it describe it.
struct InputOfStep<'d> {
    asset: &'d crate::model::Asset,
    inp: &'d crate::model::Input,
    /// The asset it reads.
    up: &'d crate::model::Asset,
    /// The step as messages name it: `KEY[PARTITION]`.
    me: String,
    /// "`UP` has … at --now", or nothing when `up` is unpartitioned.
    has: String,
}

impl<'d> InputOfStep<'d> {
    fn new(defs: &'d Defs, a: AssetId, p: Option<i64>, input: usize, cx: &KeyCtx) -> Self {
        let asset = &defs.assets[a];
        let inp = &asset.inputs[input];
        let up = &defs.assets[inp.upstream];
        let me = match (p, &asset.partitions) {
            (Some(i), Some(d)) => {
                format!("{}[{}]", asset.key, d.def.key(i, cx).unwrap_or_default())
            }
            _ => asset.key.clone(),
        };
        let has = match &up.partitions {
            Some(d) => format!("`{}` has {} at --now", up.key, sample(&d.def, cx)),
            None => String::new(),
        };
        InputOfStep {
            asset,
            inp,
            up,
            me,
            has,
        }
    }
}

fn nonexistent_error(
    defs: &Defs,
    a: AssetId,
    p: Option<i64>,
    input: usize,
    keys: &[String],
    cx: &KeyCtx,
) -> PlanError {
    let InputOfStep {
        asset,
        inp,
        up,
        me,
        has,
    } = InputOfStep::new(defs, a, p, input, cx);
    let listed = match &up.partitions {
        Some(d) => describe_keys(&d.def, keys, cx),
        None => describe_keys_plain(keys),
    };
    let has = if has.is_empty() {
        has
    } else {
        format!("{has}; ")
    };
    let fix = match &inp.mapping {
        crate::partitions::MappingSpec::TimeWindow { .. } => format!(
            "to skip partitions that do not exist, set `allow_nonexistent = true` in the mapping of input `{}`",
            inp.name
        ),
        _ => format!(
            "target partitions of `{}` whose upstream partitions exist",
            asset.key
        ),
    };
    let what = if matches!(inp.mapping, crate::partitions::MappingSpec::Multi { .. }) {
        "partitions of `{}` whose dimension keys do not exist"
    } else {
        "partitions of `{}` that do not exist"
    };
    PlanError::new(format!(
        "step `{me}` needs {}: {listed}",
        what.replace("{}", &up.key)
    ))
    .help(format!("{has}{fix}"))
}

/// An input whose mapping reads no upstream partition at all.
fn empty_input_error(
    defs: &Defs,
    a: AssetId,
    p: Option<i64>,
    input: usize,
    cx: &KeyCtx,
) -> PlanError {
    let InputOfStep {
        inp, up, me, has, ..
    } = InputOfStep::new(defs, a, p, input, cx);
    PlanError::new(format!(
        "input `{}` of step `{me}` resolves to no partitions of `{}`: the step would read nothing",
        inp.name, up.key
    ))
    .help(format!(
        "{has}; check the mapping of input `{}` (mapping `{}`), or set `allow_missing_partitions = true` on it if an empty input is expected",
        inp.name,
        inp.mapping.type_name()
    ))
}

/// How many runs of keys an error lists before `…`.
const SHOWN_RUNS: usize = 6;

/// Keys for a message, in order, consecutive time windows written as
/// ranges: `2020-01-01` … `2025-02-28` (1,885), `2025-03-08` … `2025-03-10` (3).
pub fn describe_keys(def: &PartitionsDef, keys: &[String], cx: &KeyCtx) -> String {
    let _ = cx;
    let Some(t) = def.as_time() else {
        return describe_keys_plain(keys);
    };
    let mut idx: Vec<(i64, &String)> = Vec::with_capacity(keys.len());
    for k in keys {
        match t.tick_index_of_key(k) {
            Some(i) => idx.push((i, k)),
            None => return describe_keys_plain(keys),
        }
    }
    idx.sort_by_key(|&(i, _)| i);
    idx.dedup_by_key(|&mut (i, _)| i);
    let mut runs: Vec<(&String, &String, usize)> = Vec::new();
    let mut prev: Option<i64> = None;
    for &(i, k) in &idx {
        match (prev, runs.last_mut()) {
            (Some(p), Some(run)) if i == p + 1 => {
                run.1 = k;
                run.2 += 1;
            }
            _ => runs.push((k, k, 1)),
        }
        prev = Some(i);
    }
    let mut parts: Vec<String> = runs
        .iter()
        .take(SHOWN_RUNS)
        .map(|&(a, b, n)| match n {
            1 => format!("`{a}`"),
            2 => format!("`{a}`, `{b}`"),
            _ => format!("`{a}` … `{b}` ({})", thousands(n)),
        })
        .collect();
    if runs.len() > SHOWN_RUNS {
        let rest: usize = runs[SHOWN_RUNS..].iter().map(|r| r.2).sum();
        parts.push(format!(
            "and {} more in {} ranges",
            thousands(rest),
            runs.len() - SHOWN_RUNS
        ));
    }
    parts.join(", ")
}

/// Keys in the order given: the first few, then how many more.
pub fn describe_keys_plain(keys: &[String]) -> String {
    let mut shown: Vec<String> = keys.iter().take(5).map(|k| format!("`{k}`")).collect();
    if keys.len() > 5 {
        shown.push(format!("and {} more", thousands(keys.len() - 5)));
    }
    shown.join(", ")
}

/// `1885` → `1,885`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A partition set that starts as a range and becomes a set when needs are added.
#[derive(Clone, Debug)]
enum BTreeSetOrRange {
    Range(i64, i64),
    Set(BTreeSet<i64>),
}

impl BTreeSetOrRange {
    fn iter(&self) -> Box<dyn Iterator<Item = i64> + '_> {
        match self {
            BTreeSetOrRange::Range(a, b) => Box::new(*a..*b),
            BTreeSetOrRange::Set(s) => Box::new(s.iter().copied()),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            BTreeSetOrRange::Range(a, b) => a >= b,
            BTreeSetOrRange::Set(s) => s.is_empty(),
        }
    }

    fn extend(&mut self, more: BTreeSet<i64>) {
        match self {
            BTreeSetOrRange::Range(a, b) => {
                let mut s: BTreeSet<i64> = (*a..*b).collect();
                s.extend(more);
                *self = BTreeSetOrRange::Set(s);
            }
            BTreeSetOrRange::Set(s) => s.extend(more),
        }
    }
}
