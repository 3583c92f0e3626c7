//! Stage 1: read definition files into raw, spanned TOML.
//!
//! Nothing here knows what an asset is. The loader finds every `*.toml`
//! under the definitions folder (recursively, in path order), checks that it
//! is UTF-8, and parses it with error recovery so that all syntax errors of
//! all files are reported together. [`Reader`] then gives the validator typed,
//! located access to a table and reports wrong types and unknown fields.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, Diagnostics, FileId, Kind, Sources, Span, suggest};

/// The longest `timeout` definitions may give (a step's, a plug-in
/// manager's): 365 days. Longer is no limit at all in practice, and far
/// longer ones overflow the clock arithmetic.
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// A parsed TOML value, borrowing from its source text.
pub type Value<'i> = Spanned<DeValue<'i>>;
/// A parsed TOML table, borrowing from its source text.
pub type Table<'i> = DeTable<'i>;

/// One parsed definitions file.
pub struct RawFile<'i> {
    pub file: FileId,
    pub root: Table<'i>,
}

/// Lists `*.toml` files under `dir`, recursively, in path order. Symbolic
/// links to files and folders are followed; a link back to a folder being
/// read (a loop) is skipped, and a file reached twice is listed once.
pub fn definition_files(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.loop_ancestor().is_some() => continue,
            Err(e) => return Err(std::io::Error::other(e)),
        };
        let name = entry.file_name().to_string_lossy();
        if entry.file_type().is_file() && name.ends_with(".toml") && !name.starts_with('.') {
            let real = std::fs::canonicalize(entry.path()).unwrap_or_else(|_| entry.path().into());
            if seen.insert(real) {
                out.push(entry.into_path());
            }
        }
    }
    Ok(out)
}

/// Reads one file into `sources`. Returns `None` when it cannot be parsed
/// (unreadable, or not UTF-8); the reason is in `diags`.
pub fn read_file(
    path: &Path,
    display: String,
    sources: &mut Sources,
    diags: &mut Diagnostics,
) -> Option<FileId> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            diags.push(Diagnostic::error(
                Kind::Io,
                format!("cannot read `{display}`: {e}"),
            ));
            return None;
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => Some(sources.add(display, text)),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let file = sources.add(display.clone(), lossy);
            diags.push(
                Diagnostic::error(Kind::Encoding, format!("`{display}` is not valid UTF-8"))
                    .at(&Span::new(file, at..at + 1), "invalid byte here")
                    .help("definition files must be UTF-8 encoded; re-save the file as UTF-8"),
            );
            None
        }
    }
}

/// Parses a file held by `sources`, reporting every syntax error in it.
/// Returns `None` when the file has syntax errors.
pub fn parse<'s>(
    sources: &'s Sources,
    file: FileId,
    diags: &mut Diagnostics,
) -> Option<RawFile<'s>> {
    let text = &sources.get(file).text;
    let (root, errors) = DeTable::parse_recoverable(text);
    let ok = errors.is_empty();
    for e in errors {
        let msg = first_line(e.message());
        let span = one_line(text, e.span().unwrap_or(0..0));
        // One character wide so a caret shows, but never the newline itself.
        let span = if matches!(text.as_bytes().get(span.start), None | Some(b'\n' | b'\r')) {
            span.start..span.start
        } else {
            widen(span)
        };
        diags.push(
            Diagnostic::error(Kind::Syntax, format!("invalid TOML: {msg}"))
                .at(&Span::new(file, span), msg),
        );
    }
    ok.then(|| RawFile {
        file,
        root: root.into_inner(),
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// Cuts a span at the end of its first line: the parser's spans may run
/// over the newline (a value missing at the end of a line), and a caret on
/// the line where the problem is reads better than a multi-line bracket.
fn one_line(text: &str, r: Range<usize>) -> Range<usize> {
    let start = r.start.min(text.len());
    let end = r.end.clamp(start, text.len());
    match text.get(start..end).and_then(|s| s.find('\n')) {
        Some(nl) => start..start + nl,
        None => start..end,
    }
}

/// A zero-width span becomes one character wide so a caret shows.
fn widen(r: Range<usize>) -> Range<usize> {
    if r.start == r.end {
        r.start..r.start + 1
    } else {
        r
    }
}

/// Human name of a TOML value's type, for "expected X, found Y".
pub fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Converts a raw value to JSON (for metadata and plug-in config).
pub fn to_json(v: &DeValue<'_>) -> serde_json::Value {
    match v {
        DeValue::String(s) => serde_json::Value::String(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map(serde_json::Value::from)
            .unwrap_or(serde_json::Value::Null),
        DeValue::Float(f) => f
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        DeValue::Boolean(b) => serde_json::Value::Bool(*b),
        DeValue::Datetime(d) => serde_json::Value::String(d.to_string()),
        DeValue::Array(a) => {
            serde_json::Value::Array(a.iter().map(|x| to_json(x.get_ref())).collect())
        }
        DeValue::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| (k.get_ref().to_string(), to_json(v.get_ref())))
                .collect(),
        ),
    }
}

/// A string with where it came from.
#[derive(Clone, Debug)]
pub struct Str {
    pub value: String,
    pub span: Span,
}

/// Typed, located access to one table. [`Reader::known_fields`] reports
/// unknown keys; every accessor reports a wrong type at the value.
pub struct Reader<'t, 'i> {
    pub file: FileId,
    pub table: &'t Table<'i>,
    what: String,
}

impl<'t, 'i> Reader<'t, 'i> {
    /// `what` names the table in messages, e.g. "asset `raw/events`".
    pub fn new(file: FileId, table: &'t Table<'i>, what: impl Into<String>) -> Self {
        Reader {
            file,
            table,
            what: what.into(),
        }
    }

    /// Reports each key of the table that is not one of `fields`, with a
    /// "did you mean".
    pub fn known_fields(self, fields: &[&str], diags: &mut Diagnostics) -> Self {
        for (k, _) in self.table.iter() {
            let key: &str = k.get_ref();
            if !fields.contains(&key) {
                diags.push(
                    Diagnostic::error(
                        Kind::UnknownField,
                        format!("unknown field `{key}` in {}", self.what),
                    )
                    .at(&Span::new(self.file, k.span()), "unknown field")
                    .help(suggest(key, fields, "valid fields")),
                );
            }
        }
        self
    }

    /// Makes a reader over a value that must be a table.
    pub fn of_value(
        file: FileId,
        value: &'t Value<'i>,
        what: impl Into<String>,
        fields: &[&str],
        diags: &mut Diagnostics,
    ) -> Option<Self> {
        let what = what.into();
        match value.get_ref() {
            DeValue::Table(t) => Some(Reader::new(file, t, what).known_fields(fields, diags)),
            other => {
                diags.push(
                    Diagnostic::error(
                        Kind::WrongType,
                        format!("{what} must be a table, found {}", type_name(other)),
                    )
                    .at(&Span::new(file, value.span()), "expected a table"),
                );
                None
            }
        }
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn get(&self, key: &str) -> Option<&'t Value<'i>> {
        self.table.get(key)
    }

    pub fn key_span(&self, key: &str) -> Option<Span> {
        self.table
            .get_key_value(key)
            .map(|(k, _)| Span::new(self.file, k.span()))
    }

    pub fn span_of(&self, v: &Value<'_>) -> Span {
        Span::new(self.file, v.span())
    }

    fn wrong(&self, key: &str, v: &Value<'_>, expected: &str, diags: &mut Diagnostics) {
        diags.push(
            Diagnostic::error(
                Kind::WrongType,
                format!(
                    "`{key}` in {} must be {expected}, found {}",
                    self.what,
                    type_name(v.get_ref())
                ),
            )
            .at(&self.span_of(v), format!("expected {expected}")),
        );
    }

    pub fn str(&self, key: &str, diags: &mut Diagnostics) -> Option<Str> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(Str {
                value: s.to_string(),
                span: self.span_of(v),
            }),
            _ => {
                self.wrong(key, v, "a string", diags);
                None
            }
        }
    }

    pub fn bool(&self, key: &str, diags: &mut Diagnostics) -> Option<bool> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong(key, v, "a boolean (true or false)", diags);
                None
            }
        }
    }

    pub fn int(&self, key: &str, diags: &mut Diagnostics) -> Option<(i64, Span)> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some((n, self.span_of(v))),
                Err(_) => {
                    diags.push(
                        Diagnostic::error(
                            Kind::InvalidValue,
                            format!("`{key}` in {} is out of range", self.what),
                        )
                        .at(&self.span_of(v), "too large"),
                    );
                    None
                }
            },
            _ => {
                self.wrong(key, v, "an integer", diags);
                None
            }
        }
    }

    pub fn table(
        &self,
        key: &str,
        diags: &mut Diagnostics,
    ) -> Option<(&'t Table<'i>, &'t Value<'i>)> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some((t, v)),
            _ => {
                self.wrong(key, v, "a table", diags);
                None
            }
        }
    }

    /// An array of strings; a wrong element is reported and skipped.
    pub fn str_array(&self, key: &str, diags: &mut Diagnostics) -> Option<Vec<Str>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item.get_ref() {
                        DeValue::String(s) => out.push(Str {
                            value: s.to_string(),
                            span: self.span_of(item),
                        }),
                        other => diags.push(
                            Diagnostic::error(
                                Kind::WrongType,
                                format!(
                                    "`{key}` in {} must hold strings, found {}",
                                    self.what,
                                    type_name(other)
                                ),
                            )
                            .at(&self.span_of(item), "expected a string"),
                        ),
                    }
                }
                Some(out)
            }
            _ => {
                self.wrong(key, v, "an array of strings", diags);
                None
            }
        }
    }

    /// A table whose values are all strings.
    pub fn str_map(&self, key: &str, diags: &mut Diagnostics) -> Option<Vec<(Str, Str)>> {
        let (t, _) = self.table(key, diags)?;
        let mut out = Vec::new();
        for (k, v) in t.iter() {
            match v.get_ref() {
                DeValue::String(s) => out.push((
                    Str {
                        value: k.get_ref().to_string(),
                        span: Span::new(self.file, k.span()),
                    },
                    Str {
                        value: s.to_string(),
                        span: self.span_of(v),
                    },
                )),
                other => diags.push(
                    Diagnostic::error(
                        Kind::WrongType,
                        format!(
                            "`{key}.{}` in {} must be a string, found {}",
                            k.get_ref(),
                            self.what,
                            type_name(other)
                        ),
                    )
                    .at(&self.span_of(v), "expected a string"),
                ),
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(src: &str) -> (Sources, FileId) {
        let mut s = Sources::default();
        let f = s.add("t.toml".into(), src.into());
        (s, f)
    }

    #[test]
    fn syntax_errors_are_located() {
        let (s, id) = sources("a = 1\nb = \n");
        let mut d = Diagnostics::default();
        assert!(parse(&s, id, &mut d).is_none());
        assert_eq!(d.items[0].kind, Kind::Syntax);
        let span = &d.items[0].primary.as_ref().unwrap().span;
        assert!(span.range.start >= 6, "{:?}", span);
    }

    #[test]
    fn reader_reports_unknown_field_and_type() {
        let (s, id) = sources("x = 1\nretries = \"two\"\n");
        let mut d = Diagnostics::default();
        let f = parse(&s, id, &mut d).unwrap();
        let r = Reader::new(f.file, &f.root, "asset `a`").known_fields(&["retries"], &mut d);
        assert_eq!(d.items[0].kind, Kind::UnknownField);
        assert_eq!(d.items[0].primary.as_ref().unwrap().span.range, 0..1);
        assert!(r.int("retries", &mut d).is_none());
        assert_eq!(d.items[1].kind, Kind::WrongType);
        assert_eq!(d.items[1].primary.as_ref().unwrap().span.range, 16..21);
    }

    #[test]
    fn integers_in_any_radix() {
        let (s, id) = sources("a = 0x1F\nb = -3\nc = 1_000\n");
        let mut d = Diagnostics::default();
        let f = parse(&s, id, &mut d).unwrap();
        let r = Reader::new(f.file, &f.root, "t").known_fields(&["a", "b", "c"], &mut d);
        assert_eq!(r.int("a", &mut d).unwrap().0, 31);
        assert_eq!(r.int("b", &mut d).unwrap().0, -3);
        assert_eq!(r.int("c", &mut d).unwrap().0, 1000);
    }
}
