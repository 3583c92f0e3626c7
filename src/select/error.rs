//! Selection errors: what went wrong and where in the selection text.

use std::fmt;
use std::ops::Range;

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

    /// The error as a [`Diagnostic`] pointing into a pseudo-file
    /// `--select` (holding `text`) added to `sources`, so it renders like
    /// any located error: file, line and column, the text with a caret
    /// under the culprit, and the help.
    pub fn to_diagnostic(&self, sources: &mut Sources, text: &str) -> Diagnostic {
        let file = sources.add("--select".into(), text.to_string());
        let span = Span::new(file, diag::clamp(text, &self.span));
        self.diagnostic_at(&span, self.message.clone())
    }

    /// The error rendered for a terminal (in colour or not), `text` being
    /// the selection it is about: as [`diag::Render`] renders every located
    /// error, the selection standing as a file named `--select`.
    pub fn render(&self, text: &str, color: bool) -> String {
        let mut sources = Sources::default();
        let d = self.to_diagnostic(&mut sources, text);
        diag::Render {
            sources: &sources,
            color,
        }
        .diagnostic(&d)
    }

    /// The error as a [`Diagnostic`] at `span`, with `message`.
    pub(super) fn diagnostic_at(&self, span: &Span, message: String) -> Diagnostic {
        let kind = match self.kind {
            SelectErrorKind::Syntax => diag::Kind::Syntax,
            SelectErrorKind::UnknownAsset => diag::Kind::UnknownReference,
            SelectErrorKind::InvalidValue | SelectErrorKind::Empty => diag::Kind::InvalidValue,
        };
        Diagnostic::error(kind, message)
            .at(span, self.label.clone())
            .help_opt(self.help.clone())
    }
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SelectError {}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn renders_like_every_located_error() {
        let text = "downstream and (group:reports";
        assert_eq!(
            parse_err(text).render(text, false),
            "error: unclosed `(` in selection\n --> --select:1:16\n  |\n1 | downstream and (group:reports\n  |                ^ this `(` is never closed\n  |\nhelp: add a `)` to close it"
        );
    }

    #[test]
    fn render_places_carets_by_display_width() {
        // `é` is 2 bytes, 1 column; `漢` 3 bytes, 2 columns.
        let text = "é 漢 or zz)";
        let e = parse_err(text);
        assert_eq!(spanned(&e, text), "漢");
        let r = e.render(text, false);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines[1], " --> --select:1:3");
        assert_eq!(lines[3], "1 | é 漢 or zz)");
        assert_eq!(
            lines[4],
            "  |   ^^ expected `and`, `or`, `,` or the end of the selection"
        );
        // Control characters are shown as symbols, never sent to the terminal.
        let text = "a\u{7} )";
        let r = parse_err(text).render(text, false);
        assert!(!r.contains('\u{7}'), "{r:?}");
        assert!(r.contains("1 | a␇ )\n  |    ^ "), "{r}");
        // An error at the end gets one caret past the text.
        let text = "a and";
        let r = parse_err(text).render(text, false);
        assert!(r.contains("1 | a and\n  |      ^ "), "{r}");
        // Whole-text spans are underlined in full; help follows.
        let d = defs();
        let text = "group:nope";
        let r = resolve_err(&d, text).render(text, false);
        assert!(r.ends_with("  | ^^^^^^^^^^ matches no assets\n  |\nhelp: no asset is in group `nope`; groups: `default`, `marts`, `raw`, `staging`"), "{r}");
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
