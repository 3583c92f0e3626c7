//! Selection errors: what went wrong and where in the selection text.

use std::fmt;
use std::ops::Range;

use unicode_width::UnicodeWidthChar;

#[cfg(test)]
use crate::diag::{self, Diagnostic, Sources, Span};

/// What went wrong, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectErrorKind {
    /// The text is not a selection.
    Syntax,
    /// A bare key or `key:` value that names no asset.
    UnknownAsset,
    /// A value that cannot be right whatever the definitions (`kind:foo`, a bad glob).
    InvalidValue,
    /// The selection is valid but matches no asset.
    Empty,
}

/// A selection error, located in the selection text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectError {
    pub kind: SelectErrorKind,
    pub message: String,
    /// Byte range in the selection text (empty at the end for "unexpected end").
    pub span: Range<usize>,
    /// Short text printed after the caret.
    pub label: String,
    pub help: Option<String>,
}

impl SelectError {
    pub(super) fn new(
        kind: SelectErrorKind,
        message: impl Into<String>,
        span: Range<usize>,
        label: impl Into<String>,
    ) -> Self {
        SelectError {
            kind,
            message: message.into(),
            span,
            label: label.into(),
            help: None,
        }
    }

    pub(super) fn syntax(
        message: impl Into<String>,
        span: Range<usize>,
        label: impl Into<String>,
    ) -> Self {
        SelectError::new(SelectErrorKind::Syntax, message, span, label)
    }

    pub(super) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(super) fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// Renders the error for a terminal, `text` being the selection it is about:
    ///
    /// ```text
    /// error: unexpected `)` in selection
    ///   --select 'a and )'
    ///                   ^ expected an asset key, `key:`, `group:`, `tag:`, `kind:`, `*` or `(`
    /// ```
    ///
    /// The selection is shown shell-quoted, with control characters escaped;
    /// carets are placed by display width, so they line up under wide
    /// (e.g. CJK) and multi-byte characters.
    pub fn render(&self, text: &str) -> String {
        const PREFIX: &str = "  --select '";
        let span = clamp(text, &self.span);
        let mut line = String::from(PREFIX);
        let mut col = PREFIX.len();
        let (mut start_col, mut end_col) = (None, None);
        for (i, c) in text.char_indices() {
            if i == span.start {
                start_col = Some(col);
            }
            if i == span.end {
                end_col = Some(col);
            }
            let (shown, width) = display_char(c);
            line.push_str(&shown);
            col += width;
        }
        let start_col = start_col.unwrap_or(col);
        let end_col = end_col.unwrap_or(col);
        line.push('\'');
        let carets = end_col.saturating_sub(start_col).max(1);
        let mut out = format!("error: {}\n{line}\n", self.message);
        out.push_str(&" ".repeat(start_col));
        out.push_str(&"^".repeat(carets));
        if !self.label.is_empty() {
            out.push(' ');
            out.push_str(&self.label);
        }
        out.push('\n');
        if let Some(h) = &self.help {
            out.push_str("  help: ");
            out.push_str(h);
            out.push('\n');
        }
        out
    }

    /// The error as a [`Diagnostic`] pointing into a pseudo-file `--select`
    /// added to `sources`, for the shared renderer and `--json` output.
    #[cfg(test)]
    pub fn to_diagnostic(&self, sources: &mut Sources, text: &str) -> Diagnostic {
        let file = sources.add(
            std::path::Path::new("--select"),
            "--select".into(),
            text.to_string(),
        );
        let kind = match self.kind {
            SelectErrorKind::Syntax => diag::Kind::Syntax,
            SelectErrorKind::UnknownAsset => diag::Kind::UnknownReference,
            SelectErrorKind::InvalidValue | SelectErrorKind::Empty => diag::Kind::InvalidValue,
        };
        Diagnostic::error(kind, self.message.clone())
            .at(
                &Span::new(file, clamp(text, &self.span)),
                self.label.clone(),
            )
            .help_opt(self.help.clone())
    }
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SelectError {}

/// How a character is shown in [`SelectError::render`], and its width in columns.
fn display_char(c: char) -> (String, usize) {
    if c == '\'' {
        // Closes the shell quote, an escaped quote, reopens it.
        return ("'\\''".into(), 4);
    }
    if c.is_control() {
        let s: String = c.escape_default().collect();
        let w = s.len();
        return (s, w);
    }
    (c.to_string(), c.width().unwrap_or(0))
}

pub(super) fn clamp(text: &str, r: &Range<usize>) -> Range<usize> {
    let floor = |mut i: usize| {
        i = i.min(text.len());
        while i > 0 && !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = floor(r.start);
    start..floor(r.end).max(start)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn render_places_carets_by_display_width() {
        // `é` is 2 bytes, 1 column; `漢` 3 bytes, 2 columns.
        let text = "é 漢 or zz)";
        let e = parse_err(text);
        assert_eq!(spanned(&e, text), "漢");
        let r = e.render(text);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines[1], "  --select 'é 漢 or zz)'");
        assert_eq!(
            lines[2],
            "              ^^ expected `and`, `or`, `,` or the end of the selection"
        );
        // A single quote is shown shell-escaped, and the caret follows it.
        let text = "it's )";
        let r = parse_err(text).render(text);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines[1], r"  --select 'it'\''s )'");
        assert_eq!(lines[2].find('^'), Some(lines[1].find(')').unwrap()));
        // Control characters are escaped.
        let text = "a\tb";
        let r = parse_err(text).render(text);
        assert!(r.contains("  --select 'a\\tb'\n               ^ "), "{r}");
        // An error at the end gets one caret past the text.
        let text = "a and";
        let r = parse_err(text).render(text);
        assert!(r.contains("  --select 'a and'\n                 ^ "), "{r}");
        // Whole-text spans are underlined in full; help follows.
        let d = defs();
        let text = "group:nope";
        let r = resolve_err(&d, text).render(text);
        assert!(r.ends_with("^^^^^^^^^^ matches no assets\n  help: no asset is in group `nope`; groups: `default`, `marts`, `raw`, `staging`\n"), "{r}");
    }

    #[test]
    fn to_diagnostic_points_into_a_pseudo_file() {
        let text = "a and )";
        let e = parse_err(text);
        let mut sources = Sources::default();
        let dg = e.to_diagnostic(&mut sources, text);
        assert_eq!(dg.kind, diag::Kind::Syntax);
        let p = dg.primary.unwrap();
        assert_eq!(p.span.range, 6..7);
        assert_eq!(sources.get(p.span.file).display, "--select");
        assert_eq!(sources.line_col(p.span.file, 6), (1, 7));
    }
}
