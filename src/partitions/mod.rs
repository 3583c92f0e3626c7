//! Stage 3: partitions definitions and partition mappings.
//!
//! A [`PartitionsDef`] is a validated definition: time windows on a schedule,
//! a static list, dynamic keys kept in the state store, or the product of two
//! of those. Time definitions do key arithmetic (key ↔ index ↔ window)
//! instead of holding key lists, so a ten-year hourly range costs nothing
//! until someone asks to list it.

pub mod mapping;
pub mod time;

use std::collections::HashMap;
use std::sync::Arc;

pub use mapping::MappingSpec;
pub use time::{Schedule, TimePartitions};

/// A validated partitions definition.
// Definitions live behind `Arc`s, so the size of the time variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum PartitionsDef {
    Time(TimePartitions),
    Static(StaticPartitions),
    /// Keys live in the state store, under the definition's name.
    Dynamic {
        name: String,
    },
    Multi(MultiPartitions),
}

impl PartitionsDef {
    /// The `type` as written in TOML.
    pub fn type_name(&self) -> &'static str {
        match self {
            PartitionsDef::Time(t) => t.schedule.type_name(),
            PartitionsDef::Static(_) => "static",
            PartitionsDef::Dynamic { .. } => "dynamic",
            PartitionsDef::Multi(_) => "multi",
        }
    }

    pub fn as_time(&self) -> Option<&TimePartitions> {
        match self {
            PartitionsDef::Time(t) => Some(t),
            _ => None,
        }
    }

    /// Number of partitions.
    pub fn len(&self, cx: &KeyCtx) -> i64 {
        match self {
            PartitionsDef::Time(t) => t.count(cx.now),
            PartitionsDef::Static(s) => s.keys().len() as i64,
            PartitionsDef::Dynamic { name } => {
                cx.dynamic(name).map_or(0, |d| d.keys().len() as i64)
            }
            PartitionsDef::Multi(m) => m.dims[0].1.len(cx) * m.dims[1].1.len(cx),
        }
    }

    /// Whether there are no partitions.
    pub fn is_empty(&self, cx: &KeyCtx) -> bool {
        self.len(cx) == 0
    }

    /// The key of partition `i` (in partition order), if `0 <= i < len`.
    pub fn key(&self, i: i64, cx: &KeyCtx) -> Option<String> {
        if i < 0 || i >= self.len(cx) {
            return None;
        }
        self.key_unchecked(i, cx)
    }

    fn key_unchecked(&self, i: i64, cx: &KeyCtx) -> Option<String> {
        match self {
            PartitionsDef::Time(t) => t.key(i),
            PartitionsDef::Static(s) => s.keys().get(i as usize).cloned(),
            PartitionsDef::Dynamic { name } => cx.dynamic(name)?.keys().get(i as usize).cloned(),
            PartitionsDef::Multi(m) => {
                let n1 = m.dims[1].1.len(cx);
                let a = m.dims[0].1.key(i / n1, cx)?;
                let b = m.dims[1].1.key(i % n1, cx)?;
                Some(MultiPartitions::join(&a, &b))
            }
        }
    }

    /// The index of `key`, if it is one of the current partitions.
    pub fn index_of(&self, key: &str, cx: &KeyCtx) -> Option<i64> {
        let i = match self {
            PartitionsDef::Time(t) => t.index_of_key(key)?,
            PartitionsDef::Static(s) => s.index_of(key)? as i64,
            PartitionsDef::Dynamic { name } => cx.dynamic(name)?.index_of(key)? as i64,
            PartitionsDef::Multi(m) => {
                let (a, b) = MultiPartitions::split(key)?;
                let ia = m.dims[0].1.index_of(a, cx)?;
                let ib = m.dims[1].1.index_of(b, cx)?;
                ia * m.dims[1].1.len(cx) + ib
            }
        };
        (i < self.len(cx)).then_some(i)
    }
}

/// Formats partition keys, caching per definition (keys are shared by
/// every asset on the same definition).
pub struct KeyCache<'a> {
    cx: &'a KeyCtx,
    /// Keys by definition, indexed by partition (dense: indices are small and contiguous).
    dense: rustc_hash::FxHashMap<*const PartitionsDef, Vec<Option<Box<str>>>>,
    sparse: rustc_hash::FxHashMap<(*const PartitionsDef, i64), String>,
}

impl<'a> KeyCache<'a> {
    pub fn new(cx: &'a KeyCtx) -> Self {
        KeyCache {
            cx,
            dense: Default::default(),
            sparse: Default::default(),
        }
    }

    pub fn key(&mut self, def: &PartitionsDef, i: i64) -> &str {
        let cx = self.cx;
        if (0..1 << 24).contains(&i) {
            let v = self.dense.entry(def as *const _).or_default();
            let i = i as usize;
            if v.len() <= i {
                v.resize(i + 1, None);
            }
            return v[i]
                .get_or_insert_with(|| def.key(i as i64, cx).unwrap_or_default().into_boxed_str());
        }
        self.sparse
            .entry((def as *const _, i))
            .or_insert_with(|| def.key(i, cx).unwrap_or_default())
            .as_str()
    }
}

/// What key arithmetic needs besides the definitions: *now*, and the keys
/// of dynamic partitions (from the state store).
#[derive(Debug, Default)]
pub struct KeyCtx {
    /// Unix seconds.
    pub now: i64,
    pub dynamic: HashMap<String, StaticPartitions>,
}

impl KeyCtx {
    pub fn new(now: i64) -> Self {
        KeyCtx {
            now,
            dynamic: HashMap::new(),
        }
    }

    pub fn dynamic(&self, name: &str) -> Option<&StaticPartitions> {
        self.dynamic.get(name)
    }
}

/// A fixed list of keys, in the order written.
#[derive(Debug)]
pub struct StaticPartitions {
    keys: Vec<String>,
    index: HashMap<String, usize>,
}

impl StaticPartitions {
    /// Builds from keys already checked with [`check_key`] and for duplicates.
    pub fn new(keys: Vec<String>) -> Self {
        let index = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        StaticPartitions { keys, index }
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    pub fn index_of(&self, key: &str) -> Option<usize> {
        self.index.get(key).copied()
    }
}

/// Two dimensions, stored in dimension-name order.
#[derive(Debug)]
pub struct MultiPartitions {
    pub dims: [(String, Arc<PartitionsDef>); 2],
}

impl MultiPartitions {
    /// Joins dimension keys (in dimension-name order) into a multi key.
    pub fn join(a: &str, b: &str) -> String {
        format!("{a}|{b}")
    }

    /// Splits a multi key into its two dimension keys.
    pub fn split(key: &str) -> Option<(&str, &str)> {
        key.split_once('|')
    }

    pub fn dim(&self, name: &str) -> Option<(usize, &Arc<PartitionsDef>)> {
        self.dims
            .iter()
            .enumerate()
            .find(|(_, (n, _))| n == name)
            .map(|(i, (_, d))| (i, d))
    }
}

/// Why a partition key is not acceptable, or `None` when it is.
/// `in_multi` forbids `|`, which joins the dimensions of multi keys.
pub fn check_key(key: &str, in_multi: bool) -> Option<String> {
    if key.is_empty() {
        return Some("a partition key cannot be empty".into());
    }
    if key.contains("...") {
        return Some(format!(
            "partition key `{key}` contains `...`, which separates the ends of a range"
        ));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Some(format!(
            "partition key `{}` contains the control character {:?}",
            key.escape_default(),
            c
        ));
    }
    if in_multi && key.contains('|') {
        return Some(format!(
            "partition key `{key}` contains `|`, which joins the dimensions of multi-partition keys"
        ));
    }
    let n = crate::names::encode_key(key).len();
    if n > MAX_KEY_BYTES {
        return Some(format!(
            "partition key `{key}` is too long: {n} bytes as a file name, at most {MAX_KEY_BYTES} (a key names the file that stores it, with its extension, and file names have at most 255 bytes)"
        ));
    }
    None
}

/// The longest partition key, in bytes of its file name
/// ([`crate::names::encode_key`]): with an extension (`.parquet`) it fits
/// in the 255 bytes of a file name. Each key of a multi key is its own name.
pub const MAX_KEY_BYTES: usize = 240;

#[cfg(test)]
mod dagster_corpus;
#[cfg(test)]
mod dagster_fixtures;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        assert!(check_key("us-east", false).is_none());
        assert!(check_key("a...b", false).is_some());
        assert!(check_key("", false).is_some());
        assert!(check_key("a|b", true).is_some());
        assert!(check_key("a|b", false).is_none());
        assert!(check_key("a\nb", false).is_some());
        assert!(check_key(&"k".repeat(240), false).is_none());
        assert!(check_key(&"k".repeat(241), false).is_some());
        assert!(check_key(&"数".repeat(80), false).is_none());
        assert!(check_key(&"数".repeat(81), false).is_some());
        assert!(check_key(&"/".repeat(81), false).is_some());
    }
}
