//! The formats a step writes and reads, and the column types an asset may
//! declare: named in definitions (stage 2), used by I/O managers (stage 6),
//! so they live below both.

use serde::Deserialize;

/// Storage formats for tabular and opaque data. More may come: a match
/// outside dg needs a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[non_exhaustive]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A table as CSV with a header row (`.csv`).
    Csv,
    /// A table as one JSON object per line (`.jsonl`).
    Jsonl,
    /// A table as Parquet (`.parquet`).
    Parquet,
    /// Opaque bytes, never converted (no extension).
    File,
}

impl Format {
    /// Every format's name, as written in TOML.
    pub const NAMES: &'static [&'static str] = &["csv", "jsonl", "parquet", "file"];

    /// The format named `s` (`"csv"`, …), if any.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "jsonl" => Some(Format::Jsonl),
            "parquet" => Some(Format::Parquet),
            "file" => Some(Format::File),
            _ => None,
        }
    }

    /// The name as written in TOML: `csv`, `jsonl`, `parquet` or `file`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
            Format::File => "file",
        }
    }

    /// File extension including the dot; empty for `file`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => ".csv",
            Format::Jsonl => ".jsonl",
            Format::Parquet => ".parquet",
            Format::File => "",
        }
    }
}

/// A column type declared on an asset (`columns = { zip = "string" }`):
/// applied to the step's output before it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// Text, exactly as written (Utf8).
    String,
    /// A 64-bit integer.
    Int64,
    /// A 64-bit float.
    Float64,
    /// A boolean: `true`/`false`, `t`/`f`, `yes`/`no`, `1`/`0`, any case.
    Bool,
    /// A calendar date, `2024-01-31` (Date32).
    Date,
    /// An instant: RFC 3339 with an offset (`2024-01-31T13:00:00+02:00`),
    /// or without one, read as UTC; stored in UTC (µs).
    Timestamp,
}

impl ColumnType {
    /// Every type's name, as written in TOML.
    pub const NAMES: &'static [&'static str] =
        &["string", "int64", "float64", "bool", "date", "timestamp"];

    /// The type named `s`, if any.
    pub fn parse(s: &str) -> Option<ColumnType> {
        Some(match s {
            "string" => ColumnType::String,
            "int64" => ColumnType::Int64,
            "float64" => ColumnType::Float64,
            "bool" => ColumnType::Bool,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            _ => return None,
        })
    }

    /// The name as written in TOML.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Bool => "bool",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
        }
    }
}
