//! A step as data: what one step of a run needs besides the definitions,
//! so that it can run in another process or on another machine
//! (`dg step`). The plan stage's steps are indices into the in-memory plan;
//! [`StepSpec::of`] writes one down with keys instead of indices, and
//! [`StepSpec::one_step_plan`] turns it back into a plan of that one step
//! against the definitions loaded where it runs.
//!
//! The definitions (the asset's compute, environment, checks) are read from
//! the project where the step runs, which a shared file system makes the
//! same; the spec carries what the run fixed when it started: *now*, the
//! profile, the asset's run config, the exact upstream partitions of every
//! input and the configuration of every I/O manager the step uses. A
//! manager whose configuration differs where the step runs is an error
//! rather than a silent write to another place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{AssetId, Defs};
use crate::partitions::KeyCtx;
use crate::partitions::mapping::Indices;
use crate::plan::{AssetSteps, Plan, Step, StepInput};

/// Why a spec cannot be read, or does not fit the definitions where the
/// step is to run.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("not a valid step spec: {0}")]
    Invalid(serde_json::Error),
    #[error(
        "step spec version {0} is not supported by this dg (it reads version {SPEC_VERSION}): run the same dg version everywhere"
    )]
    Version(u32),
    #[error("asset `{0}` is not defined here")]
    UnknownAsset(String),
    #[error(
        "resource `{resource}` is configured differently here than when run {run_id} started: the step would read or write another place"
    )]
    ResourceChanged { resource: String, run_id: String },
    #[error("resource `{0}` is not defined here")]
    UnknownResource(String),
    #[error("asset `{0}` is not partitioned here")]
    NotPartitioned(String),
    #[error("asset `{0}` is partitioned here")]
    Partitioned(String),
    #[error("partition `{key}` of `{asset}` does not exist at {now}")]
    NoPartition {
        key: String,
        asset: String,
        now: String,
    },
    #[error("asset `{asset}` has no input `{input}` here")]
    NoInput { asset: String, input: String },
    #[error("input `{input}` of `{asset}` reads `{here}` here, not `{spec}`")]
    InputMoved {
        input: String,
        asset: String,
        here: String,
        spec: String,
    },
}

/// The current layout of [`StepSpec`]; a spec of another version is refused.
pub const SPEC_VERSION: u32 = 1;

/// One step of one run, serializable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub version: u32,
    pub run_id: String,
    pub step_id: String,
    /// The asset key.
    pub asset: String,
    /// The partition key; `None` when unpartitioned. A range step's first.
    pub partition: Option<String>,
    /// A range step's partition keys, in order; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub range: Vec<String>,
    /// Every input of the step, loaded or not.
    pub inputs: Vec<InputSpec>,
    /// The I/O managers the step uses (its own and its inputs'), by resource key.
    pub managers: BTreeMap<String, ManagerSpec>,
    /// The first attempt to run (1-based).
    pub attempt: u32,
    /// The run's *now*, RFC 3339.
    pub now: String,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// The profile in force for the run.
    pub profile: Option<String>,
    /// The asset's run config (its defaults with `--config` applied).
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
}

/// One input of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The input's name.
    pub name: String,
    /// The upstream asset key.
    pub asset: String,
    /// The upstream partition keys read, in partition order; `None` when
    /// the upstream is unpartitioned.
    pub partitions: Option<Vec<String>>,
    /// The resource key of the manager that loads it.
    pub manager: String,
}

/// An I/O manager's resource as the run saw it (`${env:…}` unresolved).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerSpec {
    #[serde(rename = "type")]
    pub type_name: String,
    pub config: serde_json::Value,
}

/// What the run fixed when it started, shared by the specs of its steps.
pub struct RunInfo<'a> {
    pub run_id: &'a str,
    pub now: &'a str,
    pub started_at: &'a str,
    pub profile: Option<&'a str>,
}

fn manager_spec(defs: &Defs, key: &str) -> Option<ManagerSpec> {
    defs.resources.get(key).map(|r| ManagerSpec {
        type_name: r.type_name.clone(),
        config: serde_json::to_value(&r.config).unwrap_or(serde_json::Value::Null),
    })
}

impl StepSpec {
    /// The spec of step `step` (whose id is `step_id`) of a plan.
    pub fn of(
        defs: &Defs,
        cx: &KeyCtx,
        step: &Step,
        step_id: &str,
        run: &RunInfo<'_>,
        attempt: u32,
    ) -> StepSpec {
        let asset = &defs.assets[step.asset];
        let key_of = |a: AssetId, i: i64| {
            defs.assets[a]
                .partitions
                .as_ref()
                .and_then(|p| p.def.key(i, cx))
                .unwrap_or_default()
        };
        let mut managers = BTreeMap::new();
        let mut add = |key: &str| {
            if !managers.contains_key(key)
                && let Some(m) = manager_spec(defs, key)
            {
                managers.insert(key.to_string(), m);
            }
        };
        add(&asset.io_manager);
        let inputs = step
            .inputs
            .iter()
            .map(|inp| {
                let spec = &asset.inputs[inp.input];
                let up = &defs.assets[inp.upstream];
                let manager = spec
                    .input_manager
                    .clone()
                    .unwrap_or_else(|| up.io_manager.clone());
                add(&manager);
                InputSpec {
                    name: spec.name.clone(),
                    asset: up.key.clone(),
                    partitions: inp
                        .partitions
                        .as_ref()
                        .map(|ix| ix.iter().map(|i| key_of(inp.upstream, i)).collect()),
                    manager,
                }
            })
            .collect();
        StepSpec {
            version: SPEC_VERSION,
            run_id: run.run_id.to_string(),
            step_id: step_id.to_string(),
            asset: asset.key.clone(),
            partition: step.partition.map(|i| key_of(step.asset, i)),
            range: step.range.iter().map(|&i| key_of(step.asset, i)).collect(),
            inputs,
            managers,
            attempt,
            now: run.now.to_string(),
            started_at: run.started_at.to_string(),
            profile: run.profile.map(str::to_string),
            config: asset.config.clone(),
        }
    }

    /// Reads a spec from JSON.
    pub fn parse(text: &str) -> Result<StepSpec, SpecError> {
        let spec: StepSpec = serde_json::from_str(text).map_err(SpecError::Invalid)?;
        if spec.version != SPEC_VERSION {
            return Err(SpecError::Version(spec.version));
        }
        Ok(spec)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Makes the definitions loaded where the step runs agree with the
    /// spec: the asset's run config is the spec's, and every manager the
    /// step uses must be configured as it was when the run started.
    pub fn apply_to(&self, defs: &mut Defs) -> Result<AssetId, SpecError> {
        let id = defs
            .assets
            .iter()
            .position(|a| a.key == self.asset)
            .ok_or_else(|| SpecError::UnknownAsset(self.asset.clone()))?;
        for (key, m) in &self.managers {
            match manager_spec(defs, key) {
                Some(here) if here == *m => {}
                Some(_) => {
                    return Err(SpecError::ResourceChanged {
                        resource: key.clone(),
                        run_id: self.run_id.clone(),
                    });
                }
                None => return Err(SpecError::UnknownResource(key.clone())),
            }
        }
        defs.assets[id].config = self.config.clone();
        Ok(id)
    }

    /// The plan of this one step, against definitions that [`apply_to`]
    /// accepted and partition keys as of the spec's *now* (`cx`).
    ///
    /// [`apply_to`]: StepSpec::apply_to
    pub fn one_step_plan(&self, defs: &Defs, id: AssetId, cx: &KeyCtx) -> Result<Plan, SpecError> {
        let asset = &defs.assets[id];
        let index = |a: AssetId, key: &str| -> Result<i64, SpecError> {
            let def = &defs.assets[a]
                .partitions
                .as_ref()
                .ok_or_else(|| SpecError::NotPartitioned(defs.assets[a].key.clone()))?
                .def;
            def.index_of(key, cx).ok_or_else(|| SpecError::NoPartition {
                key: key.to_string(),
                asset: defs.assets[a].key.clone(),
                now: self.now.clone(),
            })
        };
        let partition = match &self.partition {
            Some(k) => Some(index(id, k)?),
            None if asset.partitions.is_some() => {
                return Err(SpecError::Partitioned(asset.key.clone()));
            }
            None => None,
        };
        let range = self
            .range
            .iter()
            .map(|k| index(id, k))
            .collect::<Result<Vec<_>, _>>()?;
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for inp in &self.inputs {
            let ii = asset
                .inputs
                .iter()
                .position(|i| i.name == inp.name)
                .ok_or_else(|| SpecError::NoInput {
                    asset: asset.key.clone(),
                    input: inp.name.clone(),
                })?;
            let upstream = asset.inputs[ii].upstream;
            if defs.assets[upstream].key != inp.asset {
                return Err(SpecError::InputMoved {
                    input: inp.name.clone(),
                    asset: asset.key.clone(),
                    here: defs.assets[upstream].key.clone(),
                    spec: inp.asset.clone(),
                });
            }
            let partitions = match &inp.partitions {
                Some(keys) => Some(Indices::List(
                    keys.iter()
                        .map(|k| index(upstream, k))
                        .collect::<Result<_, _>>()?,
                )),
                None => None,
            };
            inputs.push(StepInput {
                input: ii,
                upstream,
                partitions,
                in_plan: false,
                dropped: Vec::new(),
            });
        }
        let step = Step {
            asset: id,
            partition,
            range,
            inputs,
        };
        let mut block_of = vec![None; defs.assets.len()];
        block_of[id] = Some(0);
        let partitions = step.partitions();
        let offsets = if step.range.is_empty() {
            Vec::new()
        } else {
            vec![0; partitions.len()]
        };
        Ok(Plan {
            steps: vec![step],
            blocks: vec![AssetSteps {
                asset: id,
                base: 0,
                partitions,
                offsets,
            }],
            block_of,
            notes: Vec::new(),
        })
    }
}
