//! Tabular data: reading, writing and converting CSV, JSON lines and
//! Parquet through Arrow record batches.
//!
//! Types are inferred when reading text formats: from the first
//! 1,000 records (`INFER_RECORDS`), then from the whole file if a later value does
//! not fit, and as a last resort a column that still cannot be parsed is
//! read as text. Columns that are empty everywhere are text. Timestamps are
//! kept as text: Arrow would convert an offset like `+02:00` to UTC and lose
//! it. An empty (0-byte) file is a table with no columns, in every format,
//! and a table with no columns is written as an empty file.
//!
//! Combining and handing over files avoid Arrow whenever the bytes can be
//! used as they are: a file already in the wanted format is handed over
//! without a copy, and CSV files with the same header (or JSON lines files)
//! are concatenated byte for byte.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::{Data, Format, Table};

pub(crate) use crate::formats::ColumnType;

impl ColumnType {
    /// The Arrow type a column of this type has.
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(
                arrow::datatypes::TimeUnit::Microsecond,
                Some("+00:00".into()),
            ),
        }
    }
}

/// Gives the declared columns of `t` their types. A declared column the
/// table lacks, and a value that does not fit its type, are errors that
/// name the column (and the row, 1-based, not counting a header). A table
/// with no columns (an empty file) is left as it is.
pub(crate) fn apply_columns(t: Table, columns: &[(String, ColumnType)]) -> anyhow::Result<Table> {
    if columns.is_empty() || t.schema.fields().is_empty() {
        return Ok(t);
    }
    let mut fields: Vec<Field> = t
        .schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for (name, ty) in columns {
        let Some(i) = fields.iter().position(|f| f.name() == name) else {
            bail!(
                "column `{name}` is declared in `columns` ({}) but the output has no such column \
                 (its columns: {})",
                ty.name(),
                quoted_list(&fields.iter().map(|f| f.name().as_str()).collect::<Vec<_>>())
            );
        };
        fields[i] = Field::new(name, ty.arrow(), true);
    }
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        t.schema.metadata().clone(),
    ));
    let mut batches = Vec::with_capacity(t.batches.len());
    let mut first_row = 0;
    for b in &t.batches {
        let mut cols = Vec::with_capacity(b.num_columns());
        for (c, f) in b.columns().iter().zip(schema.fields()) {
            if c.data_type() == f.data_type() {
                cols.push(c.clone());
                continue;
            }
            let ty = columns
                .iter()
                .find(|(n, _)| n == f.name())
                .map(|(_, t)| *t)
                .expect("only declared columns change type");
            let cast = arrow::compute::cast(c, f.data_type()).ok();
            let bad =
                (0..c.len()).find(|&r| c.is_valid(r) && cast.as_ref().is_none_or(|a| a.is_null(r)));
            if let Some(r) = bad {
                let value = arrow::util::display::array_value_to_string(c, r)
                    .unwrap_or_else(|_| "?".into());
                bail!(
                    "row {}, column `{}`: `{value}` is not a valid {} (declared in `columns`)",
                    first_row + r + 1,
                    f.name(),
                    ty.name()
                );
            }
            cols.push(cast.expect("checked above"));
        }
        first_row += b.num_rows();
        batches.push(RecordBatch::try_new(schema.clone(), cols)?);
    }
    Ok(Table { schema, batches })
}

/// Records read to infer the column types of a text file before reading it.
pub(crate) const INFER_RECORDS: usize = 1000;

/// Rows per record batch when reading.
const BATCH_ROWS: usize = 8192;

const BUF_SIZE: usize = 1 << 20;

/// A table with no columns and no rows (what an empty file holds).
pub(crate) fn empty_table() -> Table {
    Table {
        schema: Arc::new(Schema::empty()),
        batches: Vec::new(),
    }
}

/// Reads a tabular file into memory.
pub fn read(path: &Path, format: Format) -> anyhow::Result<Table> {
    if format == Format::File {
        bail!(
            "`{}` is in `file` format (opaque bytes), not a table",
            path.display()
        );
    }
    let file = File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot read `{}`", path.display()))?
        .len();
    if len == 0 {
        return Ok(empty_table());
    }
    let result = match format {
        Format::Csv => read_csv(file),
        Format::Jsonl => read_jsonl(file),
        Format::Parquet => read_parquet(file),
        Format::File => unreachable!(),
    };
    result.map_err(|detail| {
        anyhow!(
            "cannot read `{}` as {}: {detail}{}",
            path.display(),
            format.name(),
            mismatch_hint(path, format)
        )
    })
}

/// What a file's first bytes say it holds: Parquet (`PAR1`), JSON lines
/// (text whose first non-blank character is `{`), CSV (other text), or
/// `None` (empty, or bytes that are not UTF-8 text).
pub(crate) fn sniff(path: &Path) -> Option<Format> {
    let mut head = Vec::with_capacity(4096);
    File::open(path)
        .ok()?
        .take(4096)
        .read_to_end(&mut head)
        .ok()?;
    if head.starts_with(b"PAR1") {
        return Some(Format::Parquet);
    }
    let text = match std::str::from_utf8(&head) {
        Ok(t) => t,
        // A multi-byte character cut at the end of the sample.
        Err(e) if e.valid_up_to() + 4 > head.len() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    match text.trim_start().chars().next()? {
        '{' => Some(Format::Jsonl),
        _ => Some(Format::Csv),
    }
}

/// When `path` does not read as `expected` and looks like another format,
/// a sentence that says which and how to fix it (with a leading `. `); else
/// an empty string.
pub(crate) fn mismatch_hint(path: &Path, expected: Format) -> String {
    match sniff(path) {
        Some(found) if found != expected => format!(
            ". The file looks like {} ({}), not {}: make the step write {} to `$DG_OUTPUT`, \
             or set `format = \"{}\"` on the asset so that dg converts what it writes",
            match found {
                Format::Parquet => "Parquet",
                Format::Jsonl => "JSON lines",
                _ => "CSV",
            },
            match found {
                Format::Parquet => "it starts with the Parquet magic bytes `PAR1`",
                Format::Jsonl => "its first character is `{`",
                _ => "it is text",
            },
            expected.name(),
            expected.name(),
            found.name()
        ),
        _ => String::new(),
    }
}

/// Writes a table as `format` at `path` (not atomically: callers write to a
/// temporary path and rename). Returns the bytes written.
pub fn write(table: &Table, path: &Path, format: Format) -> anyhow::Result<u64> {
    if format == Format::File {
        bail!("cannot write a table in `file` format (opaque bytes): use csv, jsonl or parquet");
    }
    let file = File::create(path).with_context(|| format!("cannot create `{}`", path.display()))?;
    if !table.schema.fields().is_empty() {
        let result = match format {
            Format::Csv => write_csv(table, file).map_err(anyhow::Error::from),
            Format::Jsonl => write_jsonl(table, file).map_err(anyhow::Error::from),
            Format::Parquet => write_parquet(table, file),
            Format::File => unreachable!(),
        };
        result
            .with_context(|| format!("cannot write `{}` as {}", path.display(), format.name()))?;
    }
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?
        .len())
}

/// Turns `data` into an in-memory value (Table for tabular formats, Bytes for `file`).
pub fn into_memory(data: Data) -> anyhow::Result<Data> {
    match data {
        Data::File {
            path,
            format: Format::File,
        } => {
            let bytes = std::fs::read(&path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            Ok(Data::Bytes(Arc::new(bytes)))
        }
        Data::File { path, format } => Ok(Data::Table(Arc::new(read(&path, format)?))),
        other => Ok(other),
    }
}

/// A file holding `data` in `format`: the data's own file when it already is
/// one in that format (no copy), else a new file written at `dest`.
pub fn to_file(data: &Data, format: Format, dest: &Path) -> anyhow::Result<PathBuf> {
    match (data, format) {
        // Opaque: any file is its own bytes.
        (Data::File { path, .. }, Format::File) => Ok(path.clone()),
        (Data::Bytes(bytes), Format::File) => {
            std::fs::write(dest, bytes.as_slice())
                .with_context(|| format!("cannot write `{}`", dest.display()))?;
            Ok(dest.to_path_buf())
        }
        (Data::Table(_), Format::File) => {
            bail!("a table cannot be handed over in `file` format: use csv, jsonl or parquet")
        }
        (Data::File { path, format: have }, want) if *have == want => Ok(path.clone()),
        (
            Data::File {
                path,
                format: Format::File,
            },
            want,
        ) => bail!(
            "`{}` is in `file` format (opaque bytes) and cannot be converted to {}",
            path.display(),
            want.name()
        ),
        (Data::File { path, format: have }, want) => {
            write(&read(path, *have)?, dest, want)?;
            Ok(dest.to_path_buf())
        }
        (Data::Table(t), want) => {
            write(t, dest, want)?;
            Ok(dest.to_path_buf())
        }
        (Data::Bytes(_), want) => bail!(
            "opaque bytes (`file` format) cannot be converted to {}",
            want.name()
        ),
    }
}

/// Writes the rows of every item, in order, as one file in `format` at `dest`.
pub(crate) fn combine_to_file(items: &[Data], format: Format, dest: &Path) -> anyhow::Result<()> {
    if format == Format::File {
        bail!("`file` data cannot be combined into one file: it is handed over as a folder");
    }
    // Empty files hold nothing, not even columns.
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        if let Data::File { path, .. } = item {
            let len = std::fs::metadata(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?
                .len();
            if len == 0 {
                continue;
            }
        }
        kept.push(item);
    }
    let files: Option<Vec<&Path>> = kept
        .iter()
        .map(|d| match d {
            Data::File { path, format: f } if *f == format => Some(path.as_path()),
            _ => None,
        })
        .collect();
    if let Some(files) = files {
        match format {
            Format::Csv if same_csv_headers(&files)? => return concat_csv(&files, dest),
            Format::Jsonl => return concat_jsonl(&files, dest),
            _ => {}
        }
    }
    let mut tables = Vec::with_capacity(kept.len());
    for item in &kept {
        let (table, name) = match item {
            Data::File { path, format: f } => {
                (Arc::new(read(path, *f)?), format!("`{}`", path.display()))
            }
            Data::Table(t) => (t.clone(), format!("item {}", tables.len() + 1)),
            Data::Bytes(_) => bail!(
                "opaque bytes (`file` format) cannot be combined into {}",
                format.name()
            ),
        };
        if !table.schema.fields().is_empty() {
            tables.push((table, name));
        }
    }
    let combined = concat_tables(&tables)?;
    write(&combined, dest, format)?;
    Ok(())
}

/// The rows of several tables as one table: columns are matched by name
/// (in the first table's order) and must be the same in every table; a
/// column whose type differs between tables becomes text, each value
/// printed as it was (widening `1` to the float `1.0` would change it).
pub(crate) fn concat_tables(tables: &[(Arc<Table>, String)]) -> anyhow::Result<Table> {
    let Some((first, first_name)) = tables.first() else {
        return Ok(empty_table());
    };
    let names: Vec<&String> = first.schema.fields().iter().map(|f| f.name()).collect();
    for (t, name) in &tables[1..] {
        let theirs: Vec<&String> = t.schema.fields().iter().map(|f| f.name()).collect();
        let missing: Vec<&str> = names
            .iter()
            .filter(|n| !theirs.contains(n))
            .map(|n| n.as_str())
            .collect();
        let extra: Vec<&str> = theirs
            .iter()
            .filter(|n| !names.contains(n))
            .map(|n| n.as_str())
            .collect();
        if !missing.is_empty() || !extra.is_empty() || theirs.len() != names.len() {
            let mut what = Vec::new();
            if !missing.is_empty() {
                what.push(format!("missing {}", quoted_list(&missing)));
            }
            if !extra.is_empty() {
                what.push(format!("extra {}", quoted_list(&extra)));
            }
            if what.is_empty() {
                what.push("duplicate column names".to_string());
            }
            bail!(
                "cannot combine {name} with {first_name}: the columns differ ({})",
                what.join(", ")
            );
        }
    }
    let fields: Fields = names
        .iter()
        .map(|n| {
            let ty = tables.iter().fold(DataType::Null, |acc, (t, _)| {
                let f = t.schema.field_with_name(n).expect("checked above");
                unify_types(acc, f.data_type())
            });
            Field::new(n.as_str(), ty, true)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let mut batches = Vec::new();
    for (t, name) in tables {
        for b in &t.batches {
            let columns = schema
                .fields()
                .iter()
                .map(|f| {
                    let i = b.schema().index_of(f.name()).expect("checked above");
                    let col = b.column(i);
                    if col.data_type() == f.data_type() {
                        Ok(col.clone())
                    } else {
                        arrow::compute::cast(col, f.data_type()).map_err(|e| {
                            anyhow!(
                                "cannot combine {name}: column `{}` ({}) cannot be converted to {}: {e}",
                                f.name(),
                                col.data_type(),
                                f.data_type()
                            )
                        })
                    }
                })
                .collect::<anyhow::Result<Vec<ArrayRef>>>()?;
            batches.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
    }
    Ok(Table { schema, batches })
}

fn unify_types(a: DataType, b: &DataType) -> DataType {
    match (a, b) {
        (DataType::Null, b) => b.clone(),
        (a, DataType::Null) => a,
        (a, b) if a == *b => a,
        _ => DataType::Utf8,
    }
}

/// Why a file could not be read as a table, as `cannot read `…` as csv: …`
/// goes on to say.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Its values do not convert.
    #[error("{0}")]
    Arrow(#[from] ArrowError),
    /// It is not well-formed, and where (`line 3: expected 2 fields, found 3`).
    #[error("{0}")]
    Malformed(String),
}

/// Why a range step's output could not be split into its partitions
/// ([`split_by_partition`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SplitError {
    /// The output has no `dg_partition` column; `keys` are the step's partitions, as shown.
    #[error(
        "the output has no `dg_partition` column: a range step writes the rows of all its partitions ({keys}) in one table, each row naming its partition in `dg_partition`"
    )]
    NoColumn { keys: String },
    /// The column's values are not text.
    #[error("cannot read `dg_partition` as text: {0}")]
    NotText(ArrowError),
    /// Rows name partitions (`found`) that are not the step's (`keys`).
    #[error(
        "rows of the output name partitions that are not this step's in `dg_partition`: {found}; the step's partitions are {keys}"
    )]
    OtherKeys { found: String, keys: String },
    /// The rows could not be taken apart.
    #[error("{0}")]
    Arrow(#[from] ArrowError),
}

fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------- CSV

fn read_csv(file: File) -> Result<Table, Unreadable> {
    use arrow::csv::reader::Format as CsvFormat;
    let mut reader = BufReader::with_capacity(BUF_SIZE, file);
    // The header only: every column is read as text, then narrowed.
    let (header, _) = CsvFormat::default()
        .with_header(true)
        .infer_schema(&mut reader, Some(0))
        .map_err(|e| Unreadable::Malformed(csv_detail(&e)))?;
    if header.fields().is_empty() {
        // Only blank lines.
        return Ok(empty_table());
    }
    let schema: SchemaRef = Arc::new(Schema::new(
        header
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    reader.rewind()?;
    let len = reader.get_ref().metadata().map_or(0, |m| m.len());
    let threads = rayon::current_num_threads();
    let t = if threads > 1 && len >= PARALLEL_CSV_BYTES {
        let mut bytes = Vec::with_capacity(len as usize);
        reader.read_to_end(&mut bytes)?;
        match decode_csv_pieces(&bytes, schema.clone(), threads) {
            Ok(t) => t,
            // Parsed again in one piece, for the error's line number.
            Err(_) => {
                decode_csv(&bytes[..], schema).map_err(|e| Unreadable::Malformed(csv_detail(&e)))?
            }
        }
    } else {
        decode_csv(&mut reader, schema).map_err(|e| Unreadable::Malformed(csv_detail(&e)))?
    };
    let all = vec![true; t.schema.fields().len()];
    Ok(narrow(t, &all)?)
}

/// CSV files from this size on are parsed in pieces on several threads.
const PARALLEL_CSV_BYTES: u64 = 4 << 20;

/// Parses CSV `bytes` (with its header) as `pieces` pieces in parallel,
/// cut at line ends outside quoted fields, in order.
fn decode_csv_pieces(bytes: &[u8], schema: SchemaRef, pieces: usize) -> Result<Table, ArrowError> {
    use rayon::prelude::*;
    let cuts = csv_cuts(bytes, pieces);
    let parts = cuts
        .par_windows(2)
        .enumerate()
        .map(|(i, w)| {
            let csv = arrow::csv::ReaderBuilder::new(schema.clone())
                .with_header(i == 0)
                .with_batch_size(BATCH_ROWS)
                .build_buffered(&bytes[w[0]..w[1]])?;
            csv.collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Table {
        schema,
        batches: parts.into_iter().flatten().collect(),
    })
}

/// Where CSV text may be cut into about `pieces` pieces that parse on
/// their own: just after a line feed with an even number of `"` before it.
/// Quotes inside a quoted field are doubled (RFC 4180), so an even count
/// means the line feed ends a record rather than sitting inside a field.
/// The first cut is 0 and the last is the length.
fn csv_cuts(bytes: &[u8], pieces: usize) -> Vec<usize> {
    let mut cuts = vec![0];
    let (mut pos, mut quotes) = (0usize, 0usize);
    for k in 1..pieces {
        let target = bytes.len() / pieces * k;
        if target > pos {
            quotes += bytes[pos..target].iter().filter(|&&b| b == b'"').count();
            pos = target;
        }
        while let Some(j) = bytes[pos..].iter().position(|&b| b == b'\n' || b == b'"') {
            let b = bytes[pos + j];
            pos += j + 1;
            if b == b'"' {
                quotes += 1;
            } else if quotes % 2 == 0 {
                if pos < bytes.len() {
                    cuts.push(pos);
                }
                break;
            }
        }
    }
    cuts.push(bytes.len());
    cuts.dedup();
    cuts
}

/// The types text may be narrowed to, in the order they are tried.
const NARROW_TO: [DataType; 3] = [DataType::Int64, DataType::Float64, DataType::Boolean];

/// The typing rule for text formats: a text column (of those `which` marks)
/// becomes Int64, Float64 or Boolean only when every value, parsed as that
/// type and printed again, is exactly the text it was read from. `02134`,
/// `+5`, `1e3`, `True` and a column mixing `1` and `1.5` stay text, so
/// that no value changes on its way through another format or a database.
/// Columns with no values stay text.
pub(crate) fn narrow(t: Table, which: &[bool]) -> Result<Table, ArrowError> {
    use rayon::prelude::*;
    // Parsing every value and printing it again is most of reading a text
    // file: the columns are narrowed in parallel, and the parsed arrays kept.
    let narrowed: Vec<Option<(DataType, Vec<ArrayRef>)>> = (0..t.schema.fields().len())
        .into_par_iter()
        .map(|i| {
            let f = t.schema.field(i);
            if !which.get(i).copied().unwrap_or(false) || f.data_type() != &DataType::Utf8 {
                return None;
            }
            let columns: Vec<&ArrayRef> = t.batches.iter().map(|b| b.column(i)).collect();
            NARROW_TO
                .iter()
                .find_map(|ty| prints_back(&columns, ty).map(|parsed| (ty.clone(), parsed)))
        })
        .collect();
    if narrowed.iter().all(Option::is_none) {
        return Ok(t);
    }
    let fields: Vec<Field> = t
        .schema
        .fields()
        .iter()
        .zip(&narrowed)
        .map(|(f, n)| match n {
            Some((ty, _)) => Field::new(f.name(), ty.clone(), true),
            None => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        t.schema.metadata().clone(),
    ));
    let batches = t
        .batches
        .iter()
        .enumerate()
        .map(|(bi, b)| {
            let columns = b
                .columns()
                .iter()
                .zip(&narrowed)
                .map(|(c, n)| match n {
                    Some((_, parsed)) => parsed[bi].clone(),
                    None => c.clone(),
                })
                .collect::<Vec<_>>();
            RecordBatch::try_new(schema.clone(), columns)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Table { schema, batches })
}

/// The text `columns` parsed as `ty`, one array per column, when every
/// value parses and prints back as the same text; `None` when one does not,
/// or when there are no values at all.
fn prints_back(columns: &[&ArrayRef], ty: &DataType) -> Option<Vec<ArrayRef>> {
    let mut values = 0;
    let mut out = Vec::with_capacity(columns.len());
    for c in columns {
        let parsed = arrow::compute::cast(c, ty).ok()?;
        let valid = c.len() - c.null_count();
        if valid > 0 {
            values += valid;
            if parsed.null_count() != c.null_count() {
                return None;
            }
            let printed = arrow::compute::cast(&parsed, &DataType::Utf8).ok()?;
            match arrow::compute::kernels::cmp::eq(c, &printed) {
                Ok(same) if same.true_count() == valid => {}
                _ => return None,
            }
        }
        out.push(parsed);
    }
    (values > 0).then_some(out)
}

fn decode_csv(reader: impl BufRead, schema: SchemaRef) -> Result<Table, ArrowError> {
    let csv = arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_batch_size(BATCH_ROWS)
        .build_buffered(reader)?;
    let batches = csv.collect::<Result<Vec<_>, _>>()?;
    Ok(Table { schema, batches })
}

/// Arrow's CSV errors, said the way dg says them.
fn csv_detail(e: &ArrowError) -> String {
    let msg = match e {
        ArrowError::CsvError(m) | ArrowError::ParseError(m) => m.clone(),
        other => other.to_string(),
    };
    // "incorrect number of fields for line 3, expected 2 got 3"
    if let Some(rest) = msg.strip_prefix("incorrect number of fields for line ")
        && let Some((line, rest)) = rest.split_once(", expected ")
        && let Some((expected, got)) = rest.split_once(" got ")
    {
        return format!("line {line}: expected {expected} fields, found {got}");
    }
    // "Encountered unequal lengths between records on CSV file. Expected 2 records, found 3 records at line 3"
    if msg.starts_with("Encountered unequal lengths")
        && let Some((_, rest)) = msg.split_once("Expected ")
        && let Some((expected, rest)) = rest.split_once(" records, found ")
        && let Some((got, rest)) = rest.split_once(" records")
    {
        let line = rest.trim().strip_prefix("at line ").unwrap_or("?");
        return format!("line {line}: expected {expected} fields, found {got}");
    }
    // "Encountered invalid UTF-8 data for line 3 and field 2"
    if let Some(rest) = msg.strip_prefix("Encountered invalid UTF-8 data for line ")
        && let Some((line, field)) = rest.split_once(" and field ")
    {
        return format!("line {line}, field {field}: invalid UTF-8");
    }
    msg
}

/// Batches formatted per worker thread at a time when writing CSV.
const CSV_BATCHES_PER_TASK: usize = 4;

/// Writes CSV: the header, then the batches formatted into text on a few
/// threads (formatting is what costs) and written in order.
fn write_csv(table: &Table, file: File) -> Result<(), ArrowError> {
    let mut out = BufWriter::with_capacity(BUF_SIZE, file);
    let mut header = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(&mut out);
    header.write(&RecordBatch::new_empty(table.schema.clone()))?;
    drop(header);
    let encode = |batches: &[RecordBatch]| -> Result<Vec<u8>, ArrowError> {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(false)
            .build(Vec::with_capacity(BUF_SIZE));
        for b in batches {
            w.write(&text_nulls(b)?)?;
        }
        Ok(w.into_inner())
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if threads == 1 || table.batches.len() <= CSV_BATCHES_PER_TASK {
        out.write_all(&encode(&table.batches)?)?;
    } else {
        for group in table.batches.chunks(threads * CSV_BATCHES_PER_TASK) {
            let texts = std::thread::scope(|s| {
                let tasks: Vec<_> = group
                    .chunks(CSV_BATCHES_PER_TASK)
                    .map(|chunk| s.spawn(move || encode(chunk)))
                    .collect();
                tasks
                    .into_iter()
                    .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect::<Vec<_>>()
            });
            for text in texts {
                out.write_all(&text?)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Null-typed columns (all values null, e.g. from Parquet) as text, which
/// the text writers know how to write.
fn text_nulls(b: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    if !b.columns().iter().any(|c| c.data_type() == &DataType::Null) {
        return Ok(b.clone());
    }
    let schema = Arc::new(text_types(b.schema().as_ref().clone(), false));
    let columns = b
        .columns()
        .iter()
        .map(|c| {
            if c.data_type() == &DataType::Null {
                arrow::compute::cast(c, &DataType::Utf8)
            } else {
                Ok(c.clone())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
}

/// Null-typed (never seen a value) columns as Utf8; and with `timestamps`,
/// inferred timestamp columns as Utf8 too.
fn text_types(schema: Schema, timestamps: bool) -> Schema {
    let fields: Fields = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Null => Arc::new(Field::new(f.name(), DataType::Utf8, true)),
            DataType::Timestamp(_, None) if timestamps => {
                Arc::new(Field::new(f.name(), DataType::Utf8, true))
            }
            DataType::Struct(children) => Arc::new(Field::new(
                f.name(),
                DataType::Struct(text_types(Schema::new(children.clone()), false).fields),
                true,
            )),
            _ => f.clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata)
}

/// The bytes of a CSV file's first record (without its line terminator) and
/// its length including the terminator.
fn csv_header(path: &Path) -> anyhow::Result<(Vec<u8>, usize)> {
    let file = File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut header = Vec::new();
    let mut in_quotes = false;
    loop {
        let buf = reader
            .fill_buf()
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        if buf.is_empty() {
            let len = header.len();
            return Ok((header, len));
        }
        for (i, &c) in buf.iter().enumerate() {
            match c {
                b'"' => in_quotes = !in_quotes,
                b'\n' if !in_quotes => {
                    header.extend_from_slice(&buf[..i]);
                    let len = header.len() + 1;
                    if header.last() == Some(&b'\r') {
                        header.pop();
                    }
                    return Ok((header, len));
                }
                _ => {}
            }
        }
        let n = buf.len();
        header.extend_from_slice(buf);
        reader.consume(n);
    }
}

fn same_csv_headers(files: &[&Path]) -> anyhow::Result<bool> {
    let mut first: Option<Vec<u8>> = None;
    for path in files {
        let (header, _) = csv_header(path)?;
        match &first {
            None => first = Some(header),
            Some(h) if *h == header => {}
            Some(_) => return Ok(false),
        }
    }
    Ok(true)
}

/// CSV files with the same header as one file: the header once, then every
/// file's records.
fn concat_csv(files: &[&Path], dest: &Path) -> anyhow::Result<()> {
    let mut out =
        File::create(dest).with_context(|| format!("cannot create `{}`", dest.display()))?;
    let mut wrote_header = false;
    for path in files {
        let (header, header_len) = csv_header(path)?;
        if !wrote_header {
            out.write_all(&header)?;
            out.write_all(b"\n")?;
            wrote_header = true;
        }
        append_from(path, header_len as u64, &mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// JSON lines files as one file.
fn concat_jsonl(files: &[&Path], dest: &Path) -> anyhow::Result<()> {
    let mut out =
        File::create(dest).with_context(|| format!("cannot create `{}`", dest.display()))?;
    for path in files {
        append_from(path, 0, &mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// Appends `path` from byte `start` to `out`, ending with a newline.
fn append_from(path: &Path, start: u64, out: &mut File) -> anyhow::Result<()> {
    let ctx = || format!("cannot read `{}`", path.display());
    let mut f = File::open(path).with_context(ctx)?;
    let len = f.metadata().with_context(ctx)?.len();
    if len <= start {
        return Ok(());
    }
    f.seek(SeekFrom::Start(len - 1)).with_context(ctx)?;
    let mut last = [0u8];
    f.read_exact(&mut last).with_context(ctx)?;
    f.seek(SeekFrom::Start(start)).with_context(ctx)?;
    // File to file: the kernel copies (copy_file_range) where it can.
    std::io::copy(&mut f, out).with_context(ctx)?;
    if last[0] != b'\n' {
        out.write_all(b"\n")?;
    }
    Ok(())
}

// ---------------------------------------------------------------- JSON lines

fn read_jsonl(file: File) -> Result<Table, Unreadable> {
    let mut reader = BufReader::with_capacity(BUF_SIZE, file);
    let infer = |reader: &mut BufReader<File>, max: Option<usize>| {
        reader.rewind()?;
        let (schema, _) = arrow::json::reader::infer_json_schema(&mut *reader, max)
            .map_err(|e| json_message(&e))?;
        Ok::<_, Unreadable>(Arc::new(text_types(schema, false)))
    };
    // The first bad line, when there is one, says more than the decoder.
    let detail = |reader: &mut BufReader<File>, e: Unreadable| {
        reader
            .rewind()
            .ok()
            .and_then(|_| first_bad_json_line(reader))
            .map_or(e, Unreadable::Malformed)
    };
    let schema = match infer(&mut reader, Some(INFER_RECORDS)) {
        Ok(s) => s,
        Err(e) => return Err(detail(&mut reader, e)),
    };
    reader.rewind()?;
    if let Ok(t) = decode_jsonl(&mut reader, schema) {
        return Ok(t);
    }
    // A record after the sample has a new field or a value of another type.
    let schema = match infer(&mut reader, None) {
        Ok(s) => s,
        Err(e) => return Err(detail(&mut reader, e)),
    };
    reader.rewind()?;
    match decode_jsonl(&mut reader, schema) {
        Ok(t) => Ok(t),
        Err(e) => Err(detail(&mut reader, json_message(&e))),
    }
}

fn decode_jsonl(reader: &mut BufReader<File>, schema: SchemaRef) -> Result<Table, ArrowError> {
    let json = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(BATCH_ROWS)
        .with_coerce_primitive(true)
        .with_strict_mode(true)
        .build(reader)?;
    let batches = json.collect::<Result<Vec<_>, _>>()?;
    Ok(Table { schema, batches })
}

fn json_message(e: &ArrowError) -> Unreadable {
    Unreadable::Malformed(match e {
        ArrowError::JsonError(m) | ArrowError::ParseError(m) => m.clone(),
        other => other.to_string(),
    })
}

/// The first line that is not a JSON object, said with its line number.
fn first_bad_json_line(reader: &mut BufReader<File>) -> Option<String> {
    let mut line = String::new();
    let mut n = 0;
    loop {
        line.clear();
        n += 1;
        match reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(_) => return Some(format!("line {n}: invalid UTF-8")),
        }
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => return Some(format!("line {n}: expected a JSON object")),
            Err(e) => {
                // serde_json says "… at line 1 column 6": the line is ours.
                let msg = e.to_string();
                let msg = msg.rfind(" at line ").map_or(msg.as_str(), |i| &msg[..i]);
                return Some(format!("line {n}, column {}: {msg}", e.column()));
            }
        }
    }
}

fn write_jsonl(table: &Table, file: File) -> Result<(), ArrowError> {
    let mut w = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(BufWriter::with_capacity(
        BUF_SIZE, file,
    ));
    for b in &table.batches {
        w.write(&text_nulls(b)?)?;
    }
    w.finish()?;
    w.into_inner().flush()?;
    Ok(())
}

// ---------------------------------------------------------------- Parquet

fn read_parquet(mut file: File) -> Result<Table, Unreadable> {
    use parquet::arrow::arrow_reader::{
        ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
    };
    use rayon::prelude::*;
    let msg = |e: parquet::errors::ParquetError| {
        let m = e.to_string();
        Unreadable::Malformed(
            m.strip_prefix("Parquet error: ")
                .map(str::to_string)
                .unwrap_or(m),
        )
    };
    // In memory, so that row groups decode in parallel from one buffer
    // (a parquet file is a fraction of the table it holds).
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let bytes = bytes::Bytes::from(bytes);
    let meta = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::default()).map_err(msg)?;
    let schema = meta.schema().clone();
    let groups = meta.metadata().num_row_groups();
    let read = |which: Option<usize>| -> Result<Vec<RecordBatch>, Unreadable> {
        let mut b = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), meta.clone())
            .with_batch_size(BATCH_ROWS);
        if let Some(g) = which {
            b = b.with_row_groups(vec![g]);
        }
        Ok(b.build().map_err(msg)?.collect::<Result<Vec<_>, _>>()?)
    };
    let batches = if groups > 1 {
        (0..groups)
            .into_par_iter()
            .map(|g| read(Some(g)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect()
    } else {
        read(None)?
    };
    Ok(Table { schema, batches })
}

/// The number of rows of a Parquet file, from its footer.
pub(crate) fn parquet_rows(path: &Path) -> anyhow::Result<u64> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let reader = SerializedFileReader::new(file).map_err(|e| {
        anyhow!(
            "`{}` is not a valid parquet file: {e}{}",
            path.display(),
            mismatch_hint(path, Format::Parquet)
        )
    })?;
    Ok(reader.metadata().file_metadata().num_rows().max(0) as u64)
}

/// Rows per Parquet row group: small enough that a million-row table is
/// encoded (and read back) on every core, large enough to compress well.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Writes Parquet with Snappy compression, encoding the columns of every
/// row group in parallel (encoding is what costs), then writing the row
/// groups in order.
fn write_parquet(table: &Table, file: File) -> anyhow::Result<()> {
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_writer::{ArrowColumnChunk, compute_leaves};
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;
    use rayon::prelude::*;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let w = ArrowWriter::try_new(
        BufWriter::with_capacity(BUF_SIZE, file),
        table.schema.clone(),
        Some(props),
    )?;
    // Row groups: runs of whole batches of about ROW_GROUP_ROWS rows.
    let mut groups: Vec<&[RecordBatch]> = Vec::new();
    let (mut start, mut rows) = (0, 0);
    for (i, b) in table.batches.iter().enumerate() {
        rows += b.num_rows();
        if rows >= ROW_GROUP_ROWS || i + 1 == table.batches.len() {
            groups.push(&table.batches[start..=i]);
            (start, rows) = (i + 1, 0);
        }
    }
    let (mut file_writer, factory) = w.into_serialized_writer()?;
    // How many leaf columns (writers) each field has: one unless nested.
    let fields = table.schema.fields();
    let leaves_per_field: Vec<usize> = match table.batches.first() {
        Some(b) => fields
            .iter()
            .zip(b.columns())
            .map(|(f, c)| compute_leaves(f, c).map(|l| l.len()))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    // One task per row group and field, encoded in parallel.
    let tasks: Vec<(usize, usize)> = (0..groups.len())
        .flat_map(|g| (0..fields.len()).map(move |f| (g, f)))
        .collect();
    let writers = groups
        .iter()
        .enumerate()
        .map(|(g, _)| factory.create_column_writers(g))
        .collect::<Result<Vec<_>, _>>()?;
    // The writers of each (row group, field), in task order.
    let mut slots: Vec<Vec<_>> = Vec::with_capacity(tasks.len());
    for ws in writers {
        let mut ws = ws.into_iter();
        for &n in &leaves_per_field {
            slots.push(ws.by_ref().take(n).collect::<Vec<_>>());
        }
    }
    let chunks: Vec<Vec<ArrowColumnChunk>> = tasks
        .par_iter()
        .zip(slots.into_par_iter())
        .map(
            |(&(g, f), mut ws)| -> parquet::errors::Result<Vec<ArrowColumnChunk>> {
                for b in groups[g] {
                    let leaves = compute_leaves(&fields[f], b.column(f))?;
                    for (w, leaf) in ws.iter_mut().zip(&leaves) {
                        w.write(leaf)?;
                    }
                }
                ws.into_iter().map(|w| w.close()).collect()
            },
        )
        .collect::<Result<_, _>>()?;
    let mut chunks = chunks.into_iter();
    for _ in &groups {
        let mut rg = file_writer.next_row_group()?;
        for field_chunks in chunks.by_ref().take(fields.len()) {
            for c in field_chunks {
                c.append_to_row_group(&mut rg)?;
            }
        }
        rg.close()?;
    }
    file_writer.into_inner()?.flush()?;
    Ok(())
}

/// The rows of `t` split by its `dg_partition` column (what a range step
/// writes): one table per key of `keys`, in that order, each without the
/// column and with its rows in their order. A key with no rows gets an
/// empty table. An error, and no tables, when the column is missing, or
/// when a row's value is NULL or not one of `keys`.
pub(crate) fn split_by_partition(t: &Table, keys: &[String]) -> Result<Vec<Table>, SplitError> {
    use arrow::array::{Array, AsArray, UInt32Array};
    use std::collections::{BTreeMap, HashMap};
    const COLUMN: &str = super::db::PARTITION_COLUMN;
    let shown = |keys: &[String]| match keys {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [a, b] => format!("`{a}`, `{b}`"),
        [a, .., b] => format!("`{a}` … `{b}` ({})", keys.len()),
    };
    let Ok(col) = t.schema.index_of(COLUMN) else {
        return Err(SplitError::NoColumn { keys: shown(keys) });
    };
    let index: HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let fields: Vec<usize> = (0..t.schema.fields().len()).filter(|&i| i != col).collect();
    let schema = Arc::new(t.schema.project(&fields)?);
    let mut per: Vec<Vec<RecordBatch>> = vec![Vec::new(); keys.len()];
    let mut bad: BTreeMap<String, usize> = BTreeMap::new();
    let mut nulls = 0usize;
    for batch in &t.batches {
        let c = arrow::compute::cast(batch.column(col), &DataType::Utf8)
            .map_err(SplitError::NotText)?;
        let c = c.as_string::<i32>();
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); keys.len()];
        for r in 0..c.len() {
            if c.is_null(r) {
                nulls += 1;
                continue;
            }
            match index.get(c.value(r)) {
                Some(&k) => rows[k].push(r as u32),
                None => *bad.entry(c.value(r).to_string()).or_default() += 1,
            }
        }
        if nulls > 0 || !bad.is_empty() {
            continue;
        }
        let projected = batch.project(&fields)?;
        for (k, rows) in rows.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            if rows.len() == projected.num_rows() {
                per[k].push(projected.clone());
                continue;
            }
            let taken = arrow::compute::take_record_batch(&projected, &UInt32Array::from(rows))?;
            per[k].push(taken);
        }
    }
    if nulls > 0 || !bad.is_empty() {
        let mut what: Vec<String> = bad
            .iter()
            .take(5)
            .map(|(v, n)| match n {
                1 => format!("`{v}`"),
                _ => format!("`{v}` ({n} rows)"),
            })
            .collect();
        if bad.len() > 5 {
            what.push(format!("and {} more values", bad.len() - 5));
        }
        if nulls > 0 {
            what.push(match nulls {
                1 => "NULL (1 row)".to_string(),
                n => format!("NULL ({n} rows)"),
            });
        }
        return Err(SplitError::OtherKeys {
            found: what.join(", "),
            keys: shown(keys),
        });
    }
    Ok(per
        .into_iter()
        .map(|batches| Table {
            schema: schema.clone(),
            batches,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Float64Type, Int64Type};

    #[test]
    fn csv_cuts_fall_on_record_ends_outside_quotes() {
        let text = b"h1,h2\n\"a\nb\",1\n\"x\"\"\ny\",2\nplain,3\n";
        for pieces in 1..8 {
            let cuts = csv_cuts(text, pieces);
            assert_eq!(cuts.first(), Some(&0));
            assert_eq!(cuts.last(), Some(&text.len()));
            for &c in &cuts[1..cuts.len() - 1] {
                let before = &text[..c];
                assert_eq!(before.last(), Some(&b'\n'));
                assert_eq!(
                    before.iter().filter(|&&b| b == b'"').count() % 2,
                    0,
                    "cut {c}"
                );
            }
        }
        // A quoted field running past every midpoint leaves one piece.
        let text = b"h\n\"1\n2\n3\n4\n5\n6\"\n";
        assert_eq!(csv_cuts(text, 4), vec![0, text.len()]);
    }

    #[test]
    fn a_large_csv_reads_the_same_in_pieces_as_in_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("id,note,flag,amount\n");
        let mut i = 0;
        while text.len() < PARALLEL_CSV_BYTES as usize + 100_000 {
            // Quoted newlines and doubled quotes across every would-be cut.
            text.push_str(&format!(
                "{i},\"line {i}\nnext \"\"q\"\", end\",{},{}.5\n",
                i % 2 == 0,
                i % 1000
            ));
            i += 1;
        }
        let path = write_text(dir.path(), "big.csv", &text);
        let t = read(&path, Format::Csv).unwrap();
        let one = {
            let schema = Arc::new(Schema::new(
                ["id", "note", "flag", "amount"]
                    .map(|n| Field::new(n, DataType::Utf8, true))
                    .to_vec(),
            ));
            let t = decode_csv(text.as_bytes(), schema).unwrap();
            narrow(t, &[true; 4]).unwrap()
        };
        assert_eq!(t.schema, one.schema);
        assert_eq!(t.schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(t.schema.field(2).data_type(), &DataType::Boolean);
        let all = |t: &Table| arrow::compute::concat_batches(&t.schema, &t.batches).unwrap();
        assert_eq!(all(&t), all(&one));
        assert_eq!(all(&t).num_rows(), i);
        let notes = all(&t);
        assert_eq!(
            notes.column(1).as_string::<i32>().value(7),
            "line 7\nnext \"q\", end"
        );
    }

    #[test]
    fn a_bad_record_late_in_a_large_csv_is_reported_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("a,b\n");
        let mut line = 1;
        while text.len() < PARALLEL_CSV_BYTES as usize * 2 {
            text.push_str("1,x\n");
            line += 1;
        }
        text.push_str("2,y,extra\n");
        line += 1;
        let path = write_text(dir.path(), "bad.csv", &text);
        let err = format!("{:#}", read(&path, Format::Csv).unwrap_err());
        assert!(err.contains(&format!("line {line}")), "{err}");
    }

    #[test]
    fn parquet_of_many_row_groups_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let n = ROW_GROUP_ROWS * 2 + 1234;
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batches: Vec<RecordBatch> = (0..n)
            .step_by(BATCH_ROWS)
            .map(|start| {
                let end = (start + BATCH_ROWS).min(n);
                let ids: Int64Array = (start as i64..end as i64).map(Some).collect();
                let texts: StringArray = (start..end).map(|i| Some(format!("v{i}"))).collect();
                RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(texts)]).unwrap()
            })
            .collect();
        let t = Table {
            schema: schema.clone(),
            batches,
        };
        let path = dir.path().join("t.parquet");
        write(&t, &path, Format::Parquet).unwrap();
        let file = File::open(&path).unwrap();
        let meta = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        use parquet::file::reader::FileReader;
        assert_eq!(meta.metadata().num_row_groups(), 3);
        let back = read(&path, Format::Parquet).unwrap();
        let all = arrow::compute::concat_batches(&back.schema, &back.batches).unwrap();
        assert_eq!(all.num_rows(), n);
        let ids = all.column(0).as_primitive::<Int64Type>();
        assert!((0..n).all(|i| ids.value(i) == i as i64));
        assert_eq!(
            all.column(1).as_string::<i32>().value(n - 1),
            format!("v{}", n - 1)
        );
    }

    fn write_text(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Every value of a table as text (None for null), row by row.
    fn rows(t: &Table) -> Vec<Vec<Option<String>>> {
        let mut out = Vec::new();
        for b in &t.batches {
            let cols: Vec<ArrayRef> = b
                .columns()
                .iter()
                .map(|c| arrow::compute::cast(c, &DataType::Utf8).unwrap())
                .collect();
            for r in 0..b.num_rows() {
                out.push(
                    cols.iter()
                        .map(|c| {
                            let s = c.as_string::<i32>();
                            (!s.is_null(r)).then(|| s.value(r).to_string())
                        })
                        .collect(),
                );
            }
        }
        out
    }

    fn names(t: &Table) -> Vec<String> {
        t.schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    #[test]
    fn split_by_partition_keeps_row_order_and_reads_numeric_keys_as_text() {
        let dir = tempfile::tempdir().unwrap();
        // Static keys `1`, `2`, `3` are read as integers from CSV.
        let p = write_text(dir.path(), "o.csv", "v,dg_partition\na,2\nb,1\nc,2\n");
        let t = read(&p, Format::Csv).unwrap();
        let keys: Vec<String> = ["1", "2", "3"].iter().map(|k| k.to_string()).collect();
        let parts = split_by_partition(&t, &keys).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(names(&parts[1]), ["v"]);
        assert_eq!(rows(&parts[0]), [[Some("b".to_string())]]);
        assert_eq!(
            rows(&parts[1]),
            [[Some("a".to_string())], [Some("c".to_string())]]
        );
        assert_eq!(parts[2].num_rows(), 0);
        assert_eq!(names(&parts[2]), ["v"]);
        let bad = write_text(dir.path(), "b.csv", "v,dg_partition\na,1\nb,\nc,7\n");
        let err = split_by_partition(&read(&bad, Format::Csv).unwrap(), &keys)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`7`") && err.contains("NULL (1 row)"), "{err}");
    }

    fn types(t: &Table) -> Vec<DataType> {
        t.schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect()
    }

    /// A table with ints, floats, awkward strings, nulls and unicode.
    fn sample() -> Table {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("score", DataType::Float64, true),
            Field::new("text", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![
                    Some(1),
                    Some(-2),
                    None,
                    Some(9_007_199_254_740_993),
                ])),
                Arc::new(Float64Array::from(vec![
                    Some(1.5),
                    None,
                    Some(-0.25),
                    Some(1e-7),
                ])),
                Arc::new(StringArray::from(vec![
                    Some("plain"),
                    Some("comma, \"quote\"\nnew line"),
                    None,
                    Some("ünïcødé 🦀 日本"),
                ])),
            ],
        )
        .unwrap();
        Table {
            schema,
            batches: vec![batch],
        }
    }

    #[test]
    fn round_trip_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let t = sample();
        for f in [Format::Csv, Format::Jsonl, Format::Parquet] {
            let p = dir.path().join(format!("t{}", f.extension()));
            let bytes = write(&t, &p, f).unwrap();
            assert_eq!(bytes, std::fs::metadata(&p).unwrap().len());
            let back = read(&p, f).unwrap();
            assert_eq!(names(&back), ["id", "score", "text"], "{f:?}");
            assert_eq!(
                types(&back),
                [DataType::Int64, DataType::Float64, DataType::Utf8],
                "{f:?}"
            );
            assert_eq!(rows(&back), rows(&t), "{f:?}");
            let ids = back.batches[0].column(0).as_primitive::<Int64Type>();
            assert_eq!(ids.value(3), 9_007_199_254_740_993);
            let scores = back.batches[0].column(1).as_primitive::<Float64Type>();
            assert_eq!(scores.value(3), 1e-7);
        }
    }

    #[test]
    fn many_batches_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("i", DataType::Int64, true)]));
        let batches = (0..37)
            .map(|b| {
                let values: Vec<i64> = (0..3).map(|r| b * 3 + r).collect();
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])
                    .unwrap()
            })
            .collect();
        let t = Table { schema, batches };
        for f in [Format::Csv, Format::Jsonl, Format::Parquet] {
            let p = dir.path().join(format!("m{}", f.extension()));
            write(&t, &p, f).unwrap();
            assert_eq!(rows(&read(&p, f).unwrap()), rows(&t), "{f:?}");
        }
        let text = std::fs::read_to_string(dir.path().join("m.csv")).unwrap();
        assert!(text.starts_with("i\n0\n1\n2\n3\n"), "{text}");
        assert_eq!(text.lines().count(), 1 + 37 * 3);
    }

    #[test]
    fn conversions_between_formats() {
        let dir = tempfile::tempdir().unwrap();
        let src = write_text(
            dir.path(),
            "a.csv",
            "id,name,ok\n1,\"Smith, J\",true\n2,\"say \"\"hi\"\"\",false\n3,,\n",
        );
        let csv = Data::File {
            path: src.clone(),
            format: Format::Csv,
        };
        let expected = rows(&read(&src, Format::Csv).unwrap());
        assert_eq!(
            expected,
            vec![
                vec![
                    Some("1".into()),
                    Some("Smith, J".into()),
                    Some("true".into())
                ],
                vec![
                    Some("2".into()),
                    Some("say \"hi\"".into()),
                    Some("false".into())
                ],
                vec![Some("3".into()), None, None],
            ]
        );
        let pq = to_file(&csv, Format::Parquet, &dir.path().join("a.parquet")).unwrap();
        let js = to_file(
            &Data::File {
                path: pq.clone(),
                format: Format::Parquet,
            },
            Format::Jsonl,
            &dir.path().join("a.jsonl"),
        )
        .unwrap();
        let back = to_file(
            &Data::File {
                path: js.clone(),
                format: Format::Jsonl,
            },
            Format::Csv,
            &dir.path().join("b.csv"),
        )
        .unwrap();
        assert_eq!(rows(&read(&pq, Format::Parquet).unwrap()), expected);
        assert_eq!(rows(&read(&js, Format::Jsonl).unwrap()), expected);
        assert_eq!(
            std::fs::read_to_string(&back).unwrap(),
            std::fs::read_to_string(&src).unwrap()
        );
        assert_eq!(
            std::fs::read_to_string(&js)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
            r#"{"id":1,"name":"Smith, J","ok":true}"#
        );
    }

    #[test]
    fn csv_inference() {
        let dir = tempfile::tempdir().unwrap();
        // All-null column, a late float in an int column (after the sample:
        // `0` would print as `0.0`, so the column stays text), an integer
        // too large for Int64, timestamps with offsets.
        let mut text = String::from("n,empty,big,ts\n");
        for i in 0..INFER_RECORDS + 10 {
            text.push_str(&format!("{i},,1,2024-01-01T00:00:00+02:00\n"));
        }
        text.push_str("1.5,,99999999999999999999,2024-01-02T00:00:00+02:00\n");
        let p = write_text(dir.path(), "a.csv", &text);
        let t = read(&p, Format::Csv).unwrap();
        assert_eq!(
            types(&t),
            [
                DataType::Utf8,
                DataType::Utf8,
                DataType::Utf8,
                DataType::Utf8
            ]
        );
        assert_eq!(t.num_rows(), INFER_RECORDS + 11);
        let last = rows(&t).pop().unwrap();
        assert_eq!(
            last,
            [
                Some("1.5".into()),
                None,
                Some("99999999999999999999".into()),
                Some("2024-01-02T00:00:00+02:00".into())
            ]
        );
    }

    /// Issue 13: inference keeps a type only when every value prints back
    /// as the text it was read from.
    #[test]
    fn csv_text_is_never_retyped_lossily() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_text(
            dir.path(),
            "a.csv",
            "zip,flag,lower,n,x,mixed,plus,exp,neg0,f\n\
             02134,True,true,1,1.5,1,+5,1e3,-0,0.25\n\
             10001,False,false,-2,2.0,1.5,6,2e3,1,-1.5\n",
        );
        let t = read(&p, Format::Csv).unwrap();
        use DataType::*;
        assert_eq!(
            types(&t),
            [
                Utf8, Utf8, Boolean, Int64, Float64, Utf8, Utf8, Utf8, Utf8, Float64
            ]
        );
        // Through every format, the same text comes back.
        for f in [Format::Csv, Format::Jsonl, Format::Parquet] {
            let out = dir.path().join(format!("o{}", f.extension()));
            write(&t, &out, f).unwrap();
            let csv = dir.path().join("back.csv");
            write(&read(&out, f).unwrap(), &csv, Format::Csv).unwrap();
            assert_eq!(
                std::fs::read_to_string(&csv).unwrap(),
                std::fs::read_to_string(&p).unwrap(),
                "{f:?}"
            );
        }
    }

    /// What each declared type accepts (as documented in
    /// docs/io-managers.md), and the row and column of a value that does
    /// not fit.
    #[test]
    fn declared_columns_accept_the_documented_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_text(
            dir.path(),
            "a.csv",
            "s,i,f,b,d,t\n\
             02134,007,3,yes,2024-01-31,2024-01-31T13:00:00+02:00\n\
             x,-42,2.50,T,2024-02-29,2024-01-31T13:00:00\n\
             y,1,1e3,0,2024-03-01,2024-01-31T13:00:00Z\n",
        );
        let decl = |names: &[(&str, ColumnType)]| -> Vec<(std::string::String, ColumnType)> {
            names.iter().map(|(n, t)| (n.to_string(), *t)).collect()
        };
        use ColumnType::*;
        let all = decl(&[
            ("s", String),
            ("i", Int64),
            ("f", Float64),
            ("b", Bool),
            ("d", Date),
            ("t", Timestamp),
        ]);
        let t = apply_columns(read(&p, Format::Csv).unwrap(), &all).unwrap();
        let out = dir.path().join("o.csv");
        write(&t, &out, Format::Csv).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "s,i,f,b,d,t\n\
             02134,7,3.0,true,2024-01-31,2024-01-31T11:00:00Z\n\
             x,-42,2.5,true,2024-02-29,2024-01-31T13:00:00Z\n\
             y,1,1000.0,false,2024-03-01,2024-01-31T13:00:00Z\n"
        );
        let e = apply_columns(read(&p, Format::Csv).unwrap(), &decl(&[("s", Int64)]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "row 2, column `s`: `x` is not a valid int64 (declared in `columns`)"
        );
        let e = apply_columns(read(&p, Format::Csv).unwrap(), &decl(&[("zip", String)]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("column `zip` is declared in `columns`"),
            "{e}"
        );
    }

    #[test]
    fn header_only_csv_keeps_its_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_text(dir.path(), "a.csv", "a,b\n");
        let t = read(&p, Format::Csv).unwrap();
        assert_eq!(names(&t), ["a", "b"]);
        assert_eq!(t.num_rows(), 0);
        let out = dir.path().join("b.csv");
        write(&t, &out, Format::Csv).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a,b\n");
        let pq = dir.path().join("b.parquet");
        write(&t, &pq, Format::Parquet).unwrap();
        assert_eq!(names(&read(&pq, Format::Parquet).unwrap()), ["a", "b"]);
    }

    #[test]
    fn jsonl_inference_and_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..INFER_RECORDS {
            text.push_str(&format!("{{\"a\":{i},\"n\":null}}\n"));
        }
        // A new field and a string after the sample.
        text.push_str("{\"a\":\"x\",\"late\":true,\"n\":null}\n");
        let p = write_text(dir.path(), "a.jsonl", &text);
        let t = read(&p, Format::Jsonl).unwrap();
        assert_eq!(names(&t), ["a", "n", "late"]);
        assert_eq!(
            types(&t),
            [DataType::Utf8, DataType::Utf8, DataType::Boolean]
        );
        assert_eq!(
            rows(&t).pop().unwrap(),
            [Some("x".into()), None, Some("true".into())]
        );
        // Null columns survive a round trip through every format.
        for f in [Format::Csv, Format::Jsonl, Format::Parquet] {
            let out = dir.path().join(format!("n{}", f.extension()));
            write(&t, &out, f).unwrap();
            assert_eq!(names(&read(&out, f).unwrap()), ["a", "n", "late"], "{f:?}");
        }
    }

    #[test]
    fn empty_files_are_empty_tables() {
        let dir = tempfile::tempdir().unwrap();
        for f in [Format::Csv, Format::Jsonl, Format::Parquet] {
            let p = write_text(dir.path(), &format!("e{}", f.extension()), "");
            let t = read(&p, f).unwrap();
            if f != Format::Parquet {
                let blank = write_text(dir.path(), &format!("b{}", f.extension()), "\n\r\n\n");
                assert!(read(&blank, f).unwrap().schema.fields().is_empty());
            }
            assert!(t.schema.fields().is_empty());
            assert_eq!(t.num_rows(), 0);
            let out = dir.path().join(format!("o{}", f.extension()));
            assert_eq!(write(&t, &out, f).unwrap(), 0);
        }
    }

    #[test]
    fn read_errors_name_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_text(dir.path(), "bad.csv", "a,b\n1,2\n3,4,5\n");
        let e = read(&p, Format::Csv).unwrap_err().to_string();
        assert!(e.contains("bad.csv"), "{e}");
        assert!(
            e.ends_with("as csv: line 3: expected 2 fields, found 3"),
            "{e}"
        );
        // Beyond the inference sample.
        let mut text = String::from("a,b\n");
        for i in 0..INFER_RECORDS + 5 {
            text.push_str(&format!("{i},x\n"));
        }
        text.push_str("1\n");
        let p = write_text(dir.path(), "late.csv", &text);
        let e = read(&p, Format::Csv).unwrap_err().to_string();
        assert!(
            e.ends_with(&format!(
                "line {}: expected 2 fields, found 1",
                INFER_RECORDS + 7
            )),
            "{e}"
        );

        let p = write_text(dir.path(), "bad.jsonl", "{\"a\":1}\n{\"a\":2\n");
        let e = read(&p, Format::Jsonl).unwrap_err().to_string();
        assert!(
            e.contains("bad.jsonl")
                && e.ends_with("as jsonl: line 2, column 6: EOF while parsing an object"),
            "{e}"
        );
        let p = write_text(dir.path(), "arr.jsonl", "{\"a\":1}\n[1]\n");
        let e = read(&p, Format::Jsonl).unwrap_err().to_string();
        assert!(e.ends_with("line 2: expected a JSON object"), "{e}");

        let p = write_text(dir.path(), "bad.parquet", "not parquet at all");
        let e = read(&p, Format::Parquet).unwrap_err().to_string();
        assert!(
            e.contains("bad.parquet")
                && e.contains("as parquet: Invalid Parquet file. Corrupt footer. ")
                && e.contains("looks like CSV")
                && e.ends_with(
                    "set `format = \"csv\"` on the asset so that dg converts what it writes"
                ),
            "{e}"
        );

        let e = read(&dir.path().join("missing.csv"), Format::Csv).unwrap_err();
        assert!(e.to_string().contains("missing.csv"), "{e}");
        let e = write(&sample(), &dir.path().join("x"), Format::File).unwrap_err();
        assert!(e.to_string().contains("`file` format"), "{e}");
    }

    /// Issue 13: a file in another format than expected says which one
    /// it looks like and which `format` to set.
    #[test]
    fn format_mismatches_name_the_format_found() {
        let dir = tempfile::tempdir().unwrap();
        let csv = write_text(dir.path(), "a.parquet", "id,name\n1,x\n");
        assert_eq!(sniff(&csv), Some(Format::Csv));
        let e = parquet_rows(&csv).unwrap_err().to_string();
        assert!(
            e.contains("looks like CSV") && e.contains("`format = \"csv\"`"),
            "{e}"
        );
        let js = write_text(dir.path(), "a.csv", " {\"a\":1}\n");
        assert_eq!(sniff(&js), Some(Format::Jsonl));
        let pq = dir.path().join("t.parquet");
        write(&sample(), &pq, Format::Parquet).unwrap();
        assert_eq!(sniff(&pq), Some(Format::Parquet));
        let e = read(&pq, Format::Jsonl).unwrap_err().to_string();
        assert!(
            e.contains("looks like Parquet") && e.contains("`format = \"parquet\"`"),
            "{e}"
        );
        // The right format: no hint.
        assert_eq!(mismatch_hint(&csv, Format::Csv), "");
    }

    #[test]
    fn to_file_hands_over_matching_files_without_copying() {
        let dir = tempfile::tempdir().unwrap();
        let src = write_text(dir.path(), "a.csv", "a\n1\n");
        let dest = dir.path().join("copy.csv");
        let data = Data::File {
            path: src.clone(),
            format: Format::Csv,
        };
        assert_eq!(to_file(&data, Format::Csv, &dest).unwrap(), src);
        assert!(!dest.exists());
        let opaque = Data::File {
            path: src.clone(),
            format: Format::File,
        };
        assert_eq!(to_file(&opaque, Format::File, &dest).unwrap(), src);
        assert!(!dest.exists());
        // Bytes and tables are written.
        let bytes = Data::Bytes(Arc::new(b"\x00\x01raw".to_vec()));
        assert_eq!(to_file(&bytes, Format::File, &dest).unwrap(), dest);
        assert_eq!(std::fs::read(&dest).unwrap(), b"\x00\x01raw");
        let t = Data::Table(Arc::new(sample()));
        let out = to_file(&t, Format::Parquet, &dir.path().join("t.parquet")).unwrap();
        assert_eq!(read(&out, Format::Parquet).unwrap().num_rows(), 4);
        // Mismatches are errors.
        assert!(to_file(&t, Format::File, &dest).is_err());
        assert!(to_file(&bytes, Format::Csv, &dest).is_err());
        assert!(to_file(&opaque, Format::Csv, &dest).is_err());
    }

    #[test]
    fn into_memory_reads_files() {
        let dir = tempfile::tempdir().unwrap();
        let src = write_text(dir.path(), "a.csv", "a\n1\n2\n");
        let Data::Table(t) = into_memory(Data::File {
            path: src.clone(),
            format: Format::Csv,
        })
        .unwrap() else {
            panic!("not a table")
        };
        assert_eq!(t.num_rows(), 2);
        let Data::Bytes(b) = into_memory(Data::File {
            path: src,
            format: Format::File,
        })
        .unwrap() else {
            panic!("not bytes")
        };
        assert_eq!(b.as_slice(), b"a\n1\n2\n");
        assert!(matches!(
            into_memory(Data::Bytes(Arc::new(vec![1]))).unwrap(),
            Data::Bytes(_)
        ));
    }

    fn item(dir: &Path, name: &str, text: &str, format: Format) -> Data {
        Data::File {
            path: write_text(dir, name, text),
            format,
        }
    }

    fn csv_item(dir: &Path, name: &str, text: &str) -> Data {
        item(dir, name, text, Format::Csv)
    }

    /// Each CSV text, written as a Parquet file.
    fn parquet_items(dir: &Path, texts: &[&str]) -> Vec<Data> {
        let mut parts = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let csv = write_text(dir, &format!("{i}.csv"), text);
            let pq = dir.join(format!("{i}.parquet"));
            write(&read(&csv, Format::Csv).unwrap(), &pq, Format::Parquet).unwrap();
            parts.push(Data::File {
                path: pq,
                format: Format::Parquet,
            });
        }
        parts
    }

    /// `items` combined into `dir/name` in `format`, and the file's text.
    fn combined(dir: &Path, name: &str, items: &[Data], format: Format) -> String {
        let dest = dir.join(name);
        combine_to_file(items, format, &dest).unwrap();
        std::fs::read_to_string(&dest).unwrap()
    }

    #[test]
    fn combine_csv_with_matching_headers_concatenates_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let items = vec![
            csv_item(dir.path(), "1.csv", "a,\"b\nc\"\n1,x\n"),
            csv_item(dir.path(), "2.csv", ""),
            csv_item(dir.path(), "3.csv", "a,\"b\nc\"\r\n2,y"),
            csv_item(dir.path(), "4.csv", "a,\"b\nc\"\n"),
            csv_item(dir.path(), "5.csv", "a,\"b\nc\"\n3,\"z\nz\"\n"),
        ];
        assert_eq!(
            combined(dir.path(), "all.csv", &items, Format::Csv),
            "a,\"b\nc\"\n1,x\n2,y\n3,\"z\nz\"\n"
        );
    }

    #[test]
    fn combine_csv_with_other_headers_goes_through_arrow() {
        let dir = tempfile::tempdir().unwrap();
        // Same columns in another order, and a column that is text in one part.
        let items = vec![
            csv_item(dir.path(), "1.csv", "a,b\n1,x\n"),
            csv_item(dir.path(), "2.csv", "b,a\ny,2.5\n"),
            csv_item(dir.path(), "3.csv", "a,b\nn/a,z\n"),
        ];
        assert_eq!(
            combined(dir.path(), "all.csv", &items, Format::Csv),
            "a,b\n1,x\n2.5,y\nn/a,z\n"
        );
        let dest = dir.path().join("all.csv");
        let t = read(&dest, Format::Csv).unwrap();
        assert_eq!(t.num_rows(), 3);

        let items = vec![
            csv_item(dir.path(), "1.csv", "a,b\n1,x\n"),
            csv_item(dir.path(), "x.csv", "a,c\n1,x\n"),
        ];
        let e = combine_to_file(&items, Format::Csv, &dest)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.csv") && e.contains("missing `b`, extra `c`"),
            "{e}"
        );
    }

    #[test]
    fn combine_jsonl_and_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let items = vec![
            item(dir.path(), "1.jsonl", "{\"a\":1}\n{\"a\":2}", Format::Jsonl),
            item(dir.path(), "2.jsonl", "{\"a\":3}\n", Format::Jsonl),
        ];
        assert_eq!(
            combined(dir.path(), "all.jsonl", &items, Format::Jsonl),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );

        let mut parts = parquet_items(dir.path(), &["a,b\n1,x\n2,y\n", "a,b\n3,\n"]);
        // The second part's `b` is all null: its type is unified with Utf8.
        parts.push(Data::Table(Arc::new(
            read(&write_text(dir.path(), "t.csv", "b,a\nz,4\n"), Format::Csv).unwrap(),
        )));
        let dest = dir.path().join("all.parquet");
        combine_to_file(&parts, Format::Parquet, &dest).unwrap();
        let t = read(&dest, Format::Parquet).unwrap();
        assert_eq!(names(&t), ["a", "b"]);
        assert_eq!(
            rows(&t),
            vec![
                vec![Some("1".into()), Some("x".into())],
                vec![Some("2".into()), Some("y".into())],
                vec![Some("3".into()), None],
                vec![Some("4".into()), Some("z".into())],
            ]
        );
        assert_eq!(parquet_rows(&dest).unwrap(), 4);
    }

    /// Issue 13: partitions whose column types differ (integers in one,
    /// floats in another) combine as text, so `1` is not turned into `1.0`.
    #[test]
    fn combining_integers_and_floats_keeps_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let parts = parquet_items(dir.path(), &["a\n1\n2\n", "a\n1.5\n"]);
        assert_eq!(
            combined(dir.path(), "all.csv", &parts, Format::Csv),
            "a\n1\n2\n1.5\n"
        );
    }

    #[test]
    fn combine_nothing_is_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        for f in [Format::Csv, Format::Jsonl, Format::Parquet] {
            let dest = dir.path().join(format!("none{}", f.extension()));
            combine_to_file(&[], f, &dest).unwrap();
            assert_eq!(std::fs::metadata(&dest).unwrap().len(), 0);
            let items = vec![item(dir.path(), &format!("e{}", f.extension()), "", f)];
            let dest = dir.path().join(format!("empties{}", f.extension()));
            combine_to_file(&items, f, &dest).unwrap();
            assert_eq!(std::fs::metadata(&dest).unwrap().len(), 0);
        }
        let e = combine_to_file(&[], Format::File, &dir.path().join("x")).unwrap_err();
        assert!(e.to_string().contains("folder"), "{e}");
    }
}
