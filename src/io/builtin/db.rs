//! What the table-per-asset database managers (`sqlite`, `postgres`) share:
//! table and column naming, and the rule for comparing an output's columns
//! with its table's.

use crate::io::Table;

/// The column that holds the partition key in a partitioned asset's table.
pub const PARTITION_COLUMN: &str = "dg_partition";

/// The table that records which partitions are stored (and how many rows
/// each had), so that an empty partition is a stored one. Its name holds a
/// `/`, which no asset's table name can.
pub const STORED_TABLE: &str = "dg/stored";

/// The table of an asset: `raw/events` → `raw__events`.
pub fn table_name(asset_key: &str) -> String {
    asset_key.split('/').collect::<Vec<_>>().join("__")
}

/// `name` as a quoted SQL identifier: `"name"`, with `"` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A column as it is (or would be) declared: name and database type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) ty: String,
}

/// For each column of `t`, whether every value is null.
pub(crate) fn all_null(t: &Table) -> Vec<bool> {
    (0..t.schema.fields().len())
        .map(|i| {
            t.batches
                .iter()
                .all(|b| b.column(i).null_count() == b.num_rows())
        })
        .collect()
}

/// How `wanted` (plus `dg_partition` when partitioned) differs from the
/// table's columns, as readable phrases; empty when they match. Column
/// order does not matter; a column whose values are all null matches any
/// type. Types are shown upper-cased.
pub(crate) fn schema_diff(
    existing: &[Column],
    wanted: &[Column],
    partitioned: bool,
    all_null: &[bool],
) -> Vec<String> {
    let up = |t: &str| t.to_ascii_uppercase();
    let mut diff = Vec::new();
    let has_partition = existing.iter().any(|c| c.name == PARTITION_COLUMN);
    if partitioned && !has_partition {
        diff.push(format!(
            "the table has no `{PARTITION_COLUMN}` column (it was written for an unpartitioned asset)"
        ));
    }
    if !partitioned && has_partition {
        diff.push(format!(
            "the table has a `{PARTITION_COLUMN}` column (it was written for a partitioned asset)"
        ));
    }
    let existing: Vec<&Column> = existing
        .iter()
        .filter(|c| !(has_partition && c.name == PARTITION_COLUMN))
        .collect();
    for (i, w) in wanted.iter().enumerate() {
        match existing.iter().find(|c| c.name == w.name) {
            None => diff.push(format!("new column `{}` ({})", w.name, up(&w.ty))),
            Some(c) if c.ty != w.ty && !all_null[i] => diff.push(format!(
                "column `{}` is {} in the table but {} in the output",
                w.name,
                up(&c.ty),
                up(&w.ty)
            )),
            Some(_) => {}
        }
    }
    for c in &existing {
        if !wanted.iter().any(|w| w.name == c.name) {
            diff.push(format!(
                "column `{}` ({}) is missing from the output",
                c.name,
                up(&c.ty)
            ));
        }
    }
    diff
}
