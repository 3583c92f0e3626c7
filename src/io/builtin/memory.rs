//! `type = "memory"`: outputs kept in memory for the length of one run.
//!
//! Useful for intermediate assets that nothing outside the run reads, and
//! in tests. A value stored in one run is gone in the next, so an input
//! whose upstream is not in the plan fails the pre-run check.

use std::collections::HashMap;
use std::sync::Mutex;

use indexmap::IndexMap;

use crate::io::{Data, InputContext, IoManager, Loaded, OutputContext, Stored, table};

/// Values by (asset key, partition key).
#[derive(Default)]
pub struct MemoryManager {
    values: Mutex<HashMap<(String, Option<String>), Data>>,
}

fn id(ctx: &OutputContext) -> (String, Option<String>) {
    (
        ctx.asset_key.clone(),
        ctx.partition.as_ref().map(|p| p.key.clone()),
    )
}

impl IoManager for MemoryManager {
    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        // The step's file goes away with its work folder: keep the contents.
        let data = table::into_memory(data)?;
        let rows = match &data {
            Data::Table(t) => Some(t.num_rows() as u64),
            _ => None,
        };
        self.values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id(ctx), data);
        Ok(Stored {
            path: None,
            rows,
            bytes: None,
        })
    }

    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        let get = |p: Option<&crate::io::PartitionRef>| -> anyhow::Result<Data> {
            let key = id(&ctx.upstream_partition(p));
            values.get(&key).cloned().ok_or_else(|| {
                anyhow::anyhow!(
                    "`{}`{} is not in memory: the `memory` manager only keeps values produced earlier in the same run",
                    key.0,
                    key.1.map(|k| format!(" partition `{k}`")).unwrap_or_default()
                )
            })
        };
        if !ctx.upstream_partitioned {
            return Ok(Loaded::Single(get(None)?));
        }
        let mut out = IndexMap::new();
        for p in &ctx.partitions {
            out.insert(p.key.clone(), get(Some(p))?);
        }
        Ok(Loaded::Partitions(out))
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        Ok(self
            .values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id(ctx)))
    }
}
