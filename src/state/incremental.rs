//! Incremental runs: `--missing` and `--stale` narrow a plan using history.

use std::collections::HashMap;

use super::{InputRead, StateStore};
use crate::model::{AssetId, Defs};
use crate::partitions::KeyCache;
use crate::partitions::KeyCtx;
use crate::plan::{Plan, Step};

/// The upstream materializations step `step` reads: one entry per input
/// and upstream partition, with the run that produced it (per `latest`).
pub fn inputs_read(
    defs: &Defs,
    step: &Step,
    cx: &KeyCtx,
    latest: &mut dyn FnMut(AssetId, &str) -> Option<super::Version>,
) -> Vec<InputRead> {
    let asset = &defs.assets[step.asset];
    let mut out = Vec::new();
    for inp in &step.inputs {
        let spec = &asset.inputs[inp.input];
        let up = &defs.assets[inp.upstream];
        let keys: Vec<Option<String>> = match (&inp.partitions, &up.partitions) {
            (Some(ix), Some(p)) => ix.iter().map(|i| p.def.key(i, cx)).collect(),
            _ => vec![None],
        };
        for k in keys {
            let (run_id, data_version) = match latest(inp.upstream, k.as_deref().unwrap_or("")) {
                Some((r, d)) => (Some(r), d),
                None => (None, None),
            };
            out.push(InputRead {
                input: spec.name.clone(),
                asset: up.key.clone(),
                partition: k,
                run_id,
                data_version,
            });
        }
    }
    out
}

/// Which steps `--missing` / `--stale` keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Steps with no successful materialization.
    Missing,
    /// Missing steps, stale ones, and everything downstream of a kept step.
    Stale,
}

/// Why a partition is stale, for `dg status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staleness {
    Fresh,
    Missing,
    CodeVersion,
    Inputs,
}

/// Latest partition states, loaded once per asset.
pub struct History<'a> {
    store: &'a dyn StateStore,
    states: HashMap<AssetId, super::PartitionStates>,
}

impl<'a> History<'a> {
    pub fn new(store: &'a dyn StateStore) -> Self {
        History {
            store,
            states: HashMap::new(),
        }
    }

    pub fn states(&mut self, defs: &Defs, a: AssetId) -> anyhow::Result<&super::PartitionStates> {
        if !self.states.contains_key(&a) {
            let s = self.store.partitions(&defs.assets[a].key)?;
            self.states.insert(a, s);
        }
        Ok(&self.states[&a])
    }

    /// Whether a step's partition is up to date, and if not why.
    pub fn staleness(
        &mut self,
        defs: &Defs,
        step: &Step,
        keys: &mut KeyCache<'_>,
    ) -> anyhow::Result<Staleness> {
        let asset = &defs.assets[step.asset];
        let key = match (&asset.partitions, step.partition) {
            (Some(p), Some(i)) => keys.key(&p.def, i).to_string(),
            _ => String::new(),
        };
        let recorded_fp = {
            let Some(state) = self.states(defs, step.asset)?.get(&key) else {
                return Ok(Staleness::Missing);
            };
            if !state.materialized() {
                return Ok(Staleness::Missing);
            }
            if state.code_version.as_deref() != asset.code_version.as_deref() {
                return Ok(Staleness::CodeVersion);
            }
            state.input_fp
        };
        // What it would read now: the latest materialization of each input partition.
        for inp in &step.inputs {
            self.states(defs, inp.upstream)?;
        }
        let mut fp = super::Fingerprint::default();
        for inp in &step.inputs {
            let spec = &asset.inputs[inp.input];
            let up = &defs.assets[inp.upstream];
            let states = &self.states[&inp.upstream];
            match (&inp.partitions, &up.partitions) {
                (Some(ix), Some(p)) => {
                    for i in ix.iter() {
                        let k = keys.key(&p.def, i);
                        let run = states
                            .get(k)
                            .and_then(|s| s.run_id.as_deref())
                            .unwrap_or("");
                        fp.add(&spec.name, &up.key, k, run);
                    }
                }
                _ => {
                    let run = states
                        .get("")
                        .and_then(|s| s.run_id.as_deref())
                        .unwrap_or("");
                    fp.add(&spec.name, &up.key, "", run);
                }
            }
        }
        if asset.config_affects_staleness {
            fp.add(
                super::CONFIG_INPUT,
                &super::config_text(&asset.config),
                "",
                "",
            );
        }
        if recorded_fp != Some(fp.finish_u64()) {
            return Ok(Staleness::Inputs);
        }
        Ok(Staleness::Fresh)
    }
}

/// Keeps the steps that `mode` selects.
pub fn filter(
    plan: Plan,
    defs: &Defs,
    cx: &KeyCtx,
    store: &dyn StateStore,
    mode: Mode,
) -> anyhow::Result<Plan> {
    let n = plan.steps.len();
    let mut keep = vec![false; n];
    match mode {
        Mode::Missing => {
            let mut done: HashMap<AssetId, std::collections::HashSet<String>> = HashMap::new();
            for (s, step) in plan.steps.iter().enumerate() {
                let asset = &defs.assets[step.asset];
                if let std::collections::hash_map::Entry::Vacant(e) = done.entry(step.asset) {
                    e.insert(store.materialized(&asset.key)?);
                }
                let key = match (&asset.partitions, step.partition) {
                    (Some(p), Some(i)) => p.def.key(i, cx).unwrap_or_default(),
                    _ => String::new(),
                };
                keep[s] = !done[&step.asset].contains(&key);
            }
        }
        Mode::Stale => {
            let mut h = History::new(store);
            let mut keys = KeyCache::new(cx);
            // Steps come in topological order, so upstream decisions are known.
            for s in 0..n {
                keep[s] = plan.after(s).into_iter().any(|a| keep[a])
                    || h.staleness(defs, &plan.steps[s], &mut keys)? != Staleness::Fresh;
            }
        }
    }
    Ok(plan.retain(&keep))
}
