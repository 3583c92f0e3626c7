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

/// Partition states read ahead on another thread, in the order they will be asked for.
type Ahead = std::sync::mpsc::Receiver<(AssetId, anyhow::Result<super::PartitionStates>)>;

/// How many partitions asset `a` has (what its states map may hold).
fn expected(defs: &Defs, a: AssetId, cx: &KeyCtx) -> usize {
    match &defs.assets[a].partitions {
        Some(p) => p.def.len(cx).max(0) as usize,
        None => 1,
    }
}

/// Latest partition states, loaded once per asset.
pub struct History<'a> {
    store: &'a dyn StateStore,
    cx: &'a KeyCtx,
    states: HashMap<AssetId, super::PartitionStates>,
    /// Assets the read-ahead thread has yet to hand over, and its channel.
    pending: std::collections::HashSet<AssetId>,
    ahead: Option<Ahead>,
    /// How many more of the caller's assets read each asset's states
    /// (see [`History::done_with`]).
    readers: HashMap<AssetId, usize>,
}

impl<'a> History<'a> {
    pub fn new(store: &'a dyn StateStore, cx: &'a KeyCtx) -> Self {
        History {
            store,
            cx,
            states: HashMap::new(),
            pending: Default::default(),
            ahead: None,
            readers: HashMap::new(),
        }
    }

    /// Reads the states of `order` on a second thread, one asset ahead of
    /// the caller, so that reading the store (a third to a half of `dg status`
    /// over a large history) overlaps the work on what was read already.
    /// An asset asked for out of order waits for the ones before it; the
    /// thread stops when this history is dropped.
    pub fn read_ahead(
        &mut self,
        store: std::sync::Arc<dyn StateStore>,
        defs: &Defs,
        order: &[AssetId],
    ) {
        let cx = self.cx;
        for &a in order {
            *self.readers.entry(a).or_default() += 1;
        }
        let mut seen = std::collections::HashSet::new();
        let order: Vec<(AssetId, String, usize)> = order
            .iter()
            .filter(|a| !self.states.contains_key(a) && seen.insert(**a))
            .map(|&a| (a, defs.assets[a].key.clone(), expected(defs, a, cx)))
            .collect();
        if order.len() < 2 {
            return;
        }
        self.pending = seen;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("dg-history".into())
            .spawn(move || {
                for (a, key, n) in order {
                    if tx.send((a, store.partitions(&key, n))).is_err() {
                        break;
                    }
                }
            });
        if spawned.is_ok() {
            self.ahead = Some(rx);
        } else {
            self.pending.clear();
        }
    }

    /// The caller is done with asset `a` and what it reads, as listed in
    /// [`History::read_ahead`]'s order: states no later asset reads are
    /// dropped, so their memory serves the next ones (a million partitions'
    /// states are some 100 MB).
    pub fn done_with(&mut self, defs: &Defs, a: AssetId) {
        let reads = std::iter::once(a).chain(defs.assets[a].inputs.iter().map(|i| i.upstream));
        for b in reads {
            if let Some(n) = self.readers.get_mut(&b) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.readers.remove(&b);
                    self.states.remove(&b);
                }
            }
        }
    }

    pub fn states(&mut self, defs: &Defs, a: AssetId) -> anyhow::Result<&super::PartitionStates> {
        if !self.states.contains_key(&a) {
            let mut got = None;
            if self.pending.contains(&a)
                && let Some(rx) = &self.ahead
            {
                while let Ok((b, r)) = rx.recv() {
                    self.pending.remove(&b);
                    if b == a {
                        got = Some(r);
                        break;
                    }
                    // An error for another asset is read again when asked for.
                    if let Ok(s) = r {
                        self.states.insert(b, s);
                    }
                }
            }
            let s = match got {
                Some(r) => r?,
                None => self
                    .store
                    .partitions(&defs.assets[a].key, expected(defs, a, self.cx))?,
            };
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
        let recorded_fp = {
            let key = match (&asset.partitions, step.partition) {
                (Some(p), Some(i)) => keys.key(&p.def, i),
                _ => "",
            };
            let Some(state) = self.states(defs, step.asset)?.get(key) else {
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
            let mut h = History::new(store, cx);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sqlite::SqliteStore;
    use crate::state::{Materialization, Record};

    fn mat(asset: &str, p: &str, run: &str) -> Record {
        Record::Materialization(Materialization {
            asset: asset.into(),
            partition: Some(p.into()),
            run_id: run.into(),
            created_at: "2024-01-01T00:00:00Z".into(),
            code_version: None,
            data_version: "abc".into(),
            inputs: vec![],
            input_fp: "0".into(),
            metadata: serde_json::json!({}),
        })
    }

    /// A SQLite state store in a fresh folder (kept while the `TempDir` lives).
    fn sqlite_store() -> (tempfile::TempDir, std::sync::Arc<dyn StateStore>) {
        let d = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&d.path().join("state.db")).unwrap();
        (d, std::sync::Arc::new(store))
    }

    fn id(defs: &Defs, key: &str) -> AssetId {
        defs.assets.iter().position(|a| a.key == key).unwrap()
    }

    /// Assets `a`, `b` (reads `a`) and `c` (reads `b`), partitioned by
    /// the static keys `x`, `y`, `z` when `partitioned`.
    fn chain(partitioned: bool) -> Defs {
        let (header, line) = if partitioned {
            (
                "[partitions.d]\ntype = \"static\"\nkeys = [\"x\", \"y\", \"z\"]\n",
                "partitions = \"d\"\n",
            )
        } else {
            ("", "")
        };
        crate::validate::defs_for_test(&format!(
            "{header}
[assets.a]
{line}shell = \"true\"

[assets.b]
{line}deps = [\"a\"]
shell = \"true\"

[assets.c]
{line}deps = [\"b\"]
shell = \"true\"
"
        ))
    }

    /// The run of partition `key` of `asset`, as `h` gives its states.
    fn run_of(h: &mut History<'_>, defs: &Defs, asset: AssetId, key: &str) -> Option<String> {
        h.states(defs, asset).unwrap()[key]
            .run_id
            .as_deref()
            .map(String::from)
    }

    #[test]
    fn read_ahead_gives_what_the_store_gives_in_any_order() {
        let defs = chain(true);
        let (_d, store) = sqlite_store();
        store
            .record(&[
                mat("a", "x", "r1"),
                mat("b", "y", "r2"),
                mat("c", "z", "r3"),
            ])
            .unwrap();
        let cx = KeyCtx::default();
        let (a, b, c) = (id(&defs, "a"), id(&defs, "b"), id(&defs, "c"));
        let mut h = History::new(&*store, &cx);
        h.read_ahead(store.clone(), &defs, &[a, b, a, c, b]);
        // Out of the read-ahead order: c waits for a and b, which are kept.
        let got = h.states(&defs, c).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got["z"].run_id.as_deref(), Some("r3"));
        assert_eq!(run_of(&mut h, &defs, a, "x").as_deref(), Some("r1"));
        assert_eq!(run_of(&mut h, &defs, b, "y").as_deref(), Some("r2"));
        // Not in the order at all: read straight from the store.
        let mut h2 = History::new(&*store, &cx);
        h2.read_ahead(store.clone(), &defs, &[a, b]);
        assert_eq!(run_of(&mut h2, &defs, c, "z").as_deref(), Some("r3"));
        assert_eq!(run_of(&mut h2, &defs, b, "y").as_deref(), Some("r2"));
    }

    #[test]
    fn done_with_drops_states_no_later_asset_reads() {
        let defs = chain(false);
        let (_d, store) = sqlite_store();
        let cx = KeyCtx::default();
        let (a, b, c) = (id(&defs, "a"), id(&defs, "b"), id(&defs, "c"));
        let mut h = History::new(&*store, &cx);
        // The order `dg status` reads them in: each asset, then its inputs.
        h.read_ahead(store.clone(), &defs, &[a, b, a, c, b]);
        for x in [a, b] {
            h.states(&defs, x).unwrap();
        }
        h.done_with(&defs, a);
        assert!(h.states.contains_key(&a), "b still reads a");
        h.done_with(&defs, b);
        assert!(!h.states.contains_key(&a), "nothing left reads a");
        assert!(h.states.contains_key(&b), "c still reads b");
        h.states(&defs, c).unwrap();
        h.done_with(&defs, c);
        assert!(h.states.is_empty());
    }
}
