//! Diagnostics: located, collected, rendered once.
//!
//! Every stage reports problems as [`Diagnostic`]s that point into a file
//! held by [`Sources`]. A stage collects all of them before it gives up, so a
//! user sees every mistake in one go. Rendering is separate: the CLI renders
//! them for humans (source line, caret, hint) through `annotate-snippets`, or
//! as JSON for scripts.

use std::fmt;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

/// Index of a file in [`Sources`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A file that diagnostics may point into.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as shown to the user (relative to the working directory when possible).
    pub display: String,
    pub text: String,
    /// Byte offsets where lines start, for line/column lookup by binary search.
    line_starts: Vec<usize>,
    /// `text` with URL passwords starred out (same length, so spans still
    /// fit), when it has any: what source excerpts show. Made once per file.
    shown: Option<String>,
}

impl SourceFile {
    /// The text as excerpts show it: URL passwords starred out.
    pub fn shown_text(&self) -> &str {
        self.shown.as_deref().unwrap_or(&self.text)
    }
}

/// All files read by a load, so diagnostics can show source lines.
#[derive(Debug, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    pub fn add(&mut self, display: String, text: String) -> FileId {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let shown = match crate::secrets::mask_url_passwords_in_place(&text) {
            std::borrow::Cow::Owned(m) => Some(m),
            std::borrow::Cow::Borrowed(_) => None,
        };
        self.files.push(SourceFile {
            display,
            text,
            line_starts,
            shown,
        });
        FileId((self.files.len() - 1) as u32)
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, id: FileId, offset: usize) -> (usize, usize) {
        let file = self.get(id);
        let text = &file.text;
        let offset = floor_char_boundary(text, offset.min(text.len()));
        // The last line start at or before `offset` (O(log lines), not a
        // rescan from byte 0: 10,000 assets in one file stay fast).
        let line = file.line_starts.partition_point(|&s| s <= offset);
        let line_start = file.line_starts[line - 1];
        let col = text[line_start..offset].chars().count() + 1;
        (line, col)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A place in a source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub file: FileId,
    pub range: Range<usize>,
}

impl Span {
    pub fn new(file: FileId, range: Range<usize>) -> Self {
        Span { file, range }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// What went wrong, as a closed set, so tests and tools can match on it
/// without parsing messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Io,
    Encoding,
    Syntax,
    UnknownField,
    MissingField,
    WrongType,
    InvalidValue,
    InvalidKey,
    Duplicate,
    UnknownReference,
    Cycle,
    Compute,
    BadDate,
    BadTimezone,
    BadCron,
    BadFormat,
    EnvVar,
    Mapping,
}

#[derive(Clone, Debug)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

/// One located problem.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    pub kind: Kind,
    pub message: String,
    /// Where it is, with a short label under the caret.
    pub primary: Option<Label>,
    /// Other places that matter (the first definition of a duplicate, …).
    pub secondary: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(kind: Kind, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            kind,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            help: None,
        }
    }

    pub fn warning(kind: Kind, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(kind, message)
        }
    }

    pub fn at(mut self, span: &Span, label: impl Into<String>) -> Self {
        self.primary = Some(Label {
            span: span.clone(),
            text: label.into(),
        });
        self
    }

    pub fn also(mut self, span: &Span, label: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span: span.clone(),
            text: label.into(),
        });
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A list of diagnostics, collected over a whole stage.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }

    /// Sorts by file and position, so output is stable and reads top to bottom.
    pub fn sort(&mut self) {
        self.items.sort_by_key(|d| {
            d.primary
                .as_ref()
                .map(|l| (l.span.file, l.span.range.start))
                .unwrap_or((FileId(u32::MAX), 0))
        });
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.error_count();
        write!(f, "{n} error{}", if n == 1 { "" } else { "s" })
    }
}

/// Suggests the closest candidate, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(&str, usize)> = None;
    for c in candidates {
        let d = strsim::levenshtein(given, c);
        let limit = (given.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= limit && d < given.chars().count() && best.is_none_or(|(_, bd)| d < bd) {
            best = Some((c, d));
        }
    }
    best.map(|(c, _)| c)
}

/// "did you mean `x`?" or "valid values: a, b, c".
pub fn suggest(given: &str, candidates: &[&str], what: &str) -> String {
    match did_you_mean(given, candidates.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None if candidates.is_empty() => format!("{what}: none"),
        None => format!("{what}: {}", list_names(candidates)),
    }
}

/// `a`, `b`, `c` (at most 12, then "and N more").
pub fn list_names(names: &[&str]) -> String {
    let mut out: Vec<String> = names.iter().take(12).map(|n| format!("`{n}`")).collect();
    if names.len() > 12 {
        out.push(format!("and {} more", names.len() - 12));
    }
    out.join(", ")
}

/// Renders diagnostics for a terminal or a log.
pub struct Render<'a> {
    pub sources: &'a Sources,
    pub color: bool,
}

impl Render<'_> {
    pub fn diagnostic(&self, d: &Diagnostic) -> String {
        let level = match d.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        if d.primary.is_none() && d.secondary.is_empty() {
            return self.unlocated(d, level);
        }
        let mut group = Group::with_title(level.primary_title(d.message.as_str()));
        // Group the labels by file: one snippet per file, primary file first.
        let mut files: Vec<FileId> = Vec::new();
        for l in d.primary.iter().chain(d.secondary.iter()) {
            if !files.contains(&l.span.file) {
                files.push(l.span.file);
            }
        }
        for file in files {
            let src = self.sources.get(file);
            // A password written in a URL is not shown, whatever the error.
            let mut snippet = Snippet::source(src.shown_text())
                .path(src.display.as_str())
                .fold(true);
            if let Some(p) = d.primary.as_ref().filter(|p| p.span.file == file) {
                snippet = snippet.annotation(
                    AnnotationKind::Primary
                        .span(clamp(&src.text, &p.span.range))
                        .label(p.text.as_str()),
                );
            }
            for s in d.secondary.iter().filter(|s| s.span.file == file) {
                snippet = snippet.annotation(
                    AnnotationKind::Context
                        .span(clamp(&src.text, &s.span.range))
                        .label(s.text.as_str()),
                );
            }
            group = group.element(snippet);
        }
        let mut report: Vec<Group> = vec![group];
        if let Some(h) = &d.help {
            report.push(Group::with_title(Level::HELP.secondary_title(h.as_str())));
        }
        let renderer = if self.color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        renderer.render(&report)
    }

    /// A diagnostic that points at no file: its title and help, without
    /// the empty source gutter (` |`) a snippet renderer would draw.
    fn unlocated(&self, d: &Diagnostic, level: Level<'_>) -> String {
        let renderer = if self.color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let mut out =
            renderer.render(&[Group::with_title(level.primary_title(d.message.as_str()))]);
        if let Some(h) = &d.help {
            let mut lines = h.lines();
            let first = lines.next().unwrap_or("");
            if self.color {
                out.push_str(&format!("\n\x1b[1;96mhelp\x1b[0m: {first}"));
            } else {
                out.push_str(&format!("\nhelp: {first}"));
            }
            for l in lines {
                out.push_str(&format!("\n      {l}"));
            }
        }
        out
    }

    #[cfg(test)]
    pub fn all(&self, ds: &Diagnostics) -> String {
        let mut out = String::new();
        for d in &ds.items {
            out.push_str(&self.diagnostic(d));
            out.push_str("\n\n");
        }
        out
    }
}

/// `r` within `text`, its ends moved back to character boundaries.
pub fn clamp(text: &str, r: &Range<usize>) -> Range<usize> {
    let start = floor_char_boundary(text, r.start.min(text.len()));
    let end = floor_char_boundary(text, r.end.min(text.len())).max(start);
    start..end
}

/// A diagnostic as JSON for `--json` outputs.
#[derive(Serialize)]
pub struct JsonDiagnostic {
    pub severity: Severity,
    pub kind: Kind,
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub label: Option<String>,
    pub help: Option<String>,
}

impl JsonDiagnostic {
    pub fn new(d: &Diagnostic, sources: &Sources) -> Self {
        let (file, line, column, label) = match &d.primary {
            Some(p) => {
                let (l, c) = sources.line_col(p.span.file, p.span.range.start);
                (
                    Some(sources.get(p.span.file).display.clone()),
                    Some(l),
                    Some(c),
                    Some(p.text.clone()),
                )
            }
            None => (None, None, None, None),
        };
        JsonDiagnostic {
            severity: d.severity,
            kind: d.kind,
            message: d.message.clone(),
            file,
            line,
            column,
            label,
            help: d.help.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        let mut s = Sources::default();
        let f = s.add("a.toml".into(), "ab\nçd = 1\n".into());
        assert_eq!(s.line_col(f, 0), (1, 1));
        assert_eq!(s.line_col(f, 3), (2, 1));
        // 'ç' is two bytes: 'd' is at byte 5, column 2
        assert_eq!(s.line_col(f, 5), (2, 2));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("partitons", ["partitions", "deps"]),
            Some("partitions")
        );
        assert_eq!(did_you_mean("zzz", ["partitions", "deps"]), None);
    }
}
