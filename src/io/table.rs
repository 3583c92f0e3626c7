//! Tabular data: reading, writing and converting CSV, JSON lines and
//! Parquet through Arrow record batches.

use std::path::{Path, PathBuf};

use super::{Data, Format, Table};

/// Reads a tabular file into memory.
pub fn read(path: &Path, format: Format) -> anyhow::Result<Table> {
    let _ = (path, format);
    anyhow::bail!("table::read is not implemented yet")
}

/// Writes a table as `format` at `path` (not atomically: callers write to a
/// temporary path and rename). Returns the bytes written.
pub fn write(table: &Table, path: &Path, format: Format) -> anyhow::Result<u64> {
    let _ = (table, path, format);
    anyhow::bail!("table::write is not implemented yet")
}

/// Turns `data` into an in-memory value (Table for tabular formats, Bytes for `file`).
pub fn into_memory(data: Data) -> anyhow::Result<Data> {
    let _ = data;
    anyhow::bail!("table::into_memory is not implemented yet")
}

/// A file holding `data` in `format`: the data's own file when it already is
/// one in that format (no copy), else a new file written at `dest`.
pub fn to_file(data: &Data, format: Format, dest: &Path) -> anyhow::Result<PathBuf> {
    let _ = (data, format, dest);
    anyhow::bail!("table::to_file is not implemented yet")
}

/// Writes the rows of every item, in order, as one file in `format` at `dest`.
pub fn combine_to_file(items: &[Data], format: Format, dest: &Path) -> anyhow::Result<()> {
    let _ = (items, format, dest);
    anyhow::bail!("table::combine_to_file is not implemented yet")
}
