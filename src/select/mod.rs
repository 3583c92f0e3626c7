//! Asset selection: the language of `--select`.
//!
//! `dg plan`, `dg materialize` and `dg status` take `--select SEL` (default
//! `*`). A selection is parsed once with [`parse`] and resolved against the
//! definitions with [`Selection::resolve`], which returns asset ids in
//! topological order.
//!
//! # Grammar
//!
//! ```text
//! selection := or
//! or        := and (("or" | ",") and)*
//! and       := unary ("and" unary)*
//! unary     := "not"* traversal
//! traversal := [DEPTH] "+" primary ["+" [DEPTH]]     (either "+" may be left out)
//! primary   := "(" or ")" | value | "key:" value | "group:" value
//!            | "tag:" value ["=" value] | "kind:" value
//! ```
//!
//! Precedence, tightest first: the traversal operators, `not`, `and`, then
//! `or` and `,` (the same operator).
//!
//! - **Keys.** A bare value is an asset key: `raw/events`, `my-asset`. It must
//!   name an asset; an unknown key is an error with a "did you mean".
//!   `key:raw/events` is the same. A key value holding a wildcard is a glob
//!   over the full key: `*` matches any run of characters *including `/`*
//!   (as Dagster's `key:` does: `key:raw/*` selects `raw/events` and
//!   `raw/a/b`), `?` one character, `[abc]` one of a set, `{a,b}` either
//!   alternative. A glob may match nothing (only the whole selection must
//!   match something). `*` alone selects every asset.
//! - **Attributes.** `group:g` (assets in group `g`), `tag:k=v` (tag `k` with
//!   value `v`), `tag:k` (tag `k` set, whatever its value), `kind:K` (compute
//!   kind: `command`, `shell`, `sql` or `source`; anything else is an error).
//!   Group and tag values are exact and case-sensitive.
//! - **Traversal.** `+X`: `X` and everything upstream of it; `X+`: `X` and
//!   everything downstream; `+X+`: both. A number limits the depth: `2+X` is `X`
//!   and up to two levels upstream, `X+1` is `X` and its direct downstream
//!   assets. The operators apply to any primary: `+group:raw`, `+(a or b)+2`.
//!   A number right before `+` at the start of a term is always a depth, so a
//!   numeric key takes quotes there: `"2"+`.
//! - **Boolean.** `and`, `or`, `not` (keywords in any case), parentheses, and
//!   `,` meaning `or`: `group:raw and not tag:pii`, `a, b`.
//! - **Quoting.** Whitespace, `(`, `)`, `+` and `,` end a value, and `and`,
//!   `or`, `not` are keywords; a value holding any of them takes double quotes:
//!   `"weird name"`, `tag:owner="data eng"`, `key:"and"`. Quotes may cover
//!   part of a value (`tag:"team"=data`); inside them `\"` is a quote and
//!   `\\` a backslash. Quoting does not turn wildcards off (as in Dagster:
//!   `key:"raw/*"` is a glob); asset keys cannot hold wildcard characters
//!   anyway. Inside `{…}` a comma belongs to the glob: `key:raw/{a,b}`.
//! - **Whitespace** separates tokens and is otherwise ignored.
//!
//! # Errors
//!
//! Every error carries the byte range of the offending part of the selection
//! text and renders with a caret under it ([`SelectError::render`]). A
//! selection that resolves to no asset at all (`group:nope`, `a and not a`) is
//! an error; an empty selection text is too (it is more likely an unset
//! variable in a script than a wish to select nothing or everything).
//!
//! Resolution is linear in the size of the graph per operator: traversals are
//! breadth-first searches that visit each asset and edge at most once.

use std::fmt;
use std::ops::Range;

use globset::{GlobBuilder, GlobMatcher};
use unicode_width::UnicodeWidthChar;

use crate::diag::{self, Diagnostic, Sources, Span};
use crate::model::{AssetId, Defs};

/// The compute kinds `kind:` accepts, as [`crate::model::Compute::kind`] names them.
pub const KINDS: [&str; 4] = ["command", "shell", "sql", "source"];

/// The attributes a selection may filter on.
const ATTRIBUTES: [&str; 4] = ["key", "group", "tag", "kind"];

/// Dagster attributes dg does not have, so they get a clear error.
const DAGSTER_ONLY: [&str; 8] = [
    "owner",
    "code_location",
    "status",
    "column",
    "table_name",
    "column_tag",
    "changed_in_branch",
    "storage_kind",
];

/// How deeply parentheses may nest (keeps every recursion shallow).
const MAX_NESTING: usize = 128;

const EXPECTED_PRIMARY: &str =
    "expected an asset key, `key:`, `group:`, `tag:`, `kind:`, `*` or `(`";

/// A parsed selection, ready to resolve against definitions.
#[derive(Debug, Clone)]
pub struct Selection {
    text: String,
    root: Node,
}

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
    fn new(
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

    fn syntax(message: impl Into<String>, span: Range<usize>, label: impl Into<String>) -> Self {
        SelectError::new(SelectErrorKind::Syntax, message, span, label)
    }

    fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    fn with_help_opt(mut self, help: Option<String>) -> Self {
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

/// Parses and resolves the selection of every job. Errors point into the
/// job's `select` string in its definitions file (at the offending part when
/// the string is written without escapes, else at the whole string).
pub fn check_jobs(defs: &Defs, sources: &Sources) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for job in defs.jobs.values() {
        let Err(e) = parse(&job.select).and_then(|sel| sel.resolve(defs)) else {
            continue;
        };
        let at = &job.select_span;
        let raw = sources
            .get(at.file)
            .text
            .get(at.range.clone())
            .unwrap_or("");
        let plain = raw.len() == job.select.len() + 2
            && (raw.starts_with('"') && !raw.contains('\\') || raw.starts_with('\''));
        let span = if plain {
            let r = clamp(&job.select, &e.span);
            let r = if r.start == r.end {
                r.start..r.start + 1
            } else {
                r
            };
            Span::new(
                at.file,
                at.range.start + 1 + r.start..at.range.start + 1 + r.end,
            )
        } else {
            at.clone()
        };
        let kind = match e.kind {
            SelectErrorKind::Syntax => diag::Kind::Syntax,
            SelectErrorKind::UnknownAsset => diag::Kind::UnknownReference,
            SelectErrorKind::InvalidValue | SelectErrorKind::Empty => diag::Kind::InvalidValue,
        };
        out.push(
            Diagnostic::error(
                kind,
                format!("in `select` of job `{}`: {}", job.name, e.message),
            )
            .at(&span, e.label.clone())
            .help_opt(e.help.clone()),
        );
    }
    out
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

fn clamp(text: &str, r: &Range<usize>) -> Range<usize> {
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

/// Every asset, in topological order.
#[cfg(test)]
pub fn all(defs: &Defs) -> Vec<AssetId> {
    (0..defs.assets.len()).collect()
}

/// Resolves an optional `--select`: `None` selects every asset.
#[cfg(test)]
pub fn select(defs: &Defs, text: Option<&str>) -> Result<Vec<AssetId>, SelectError> {
    match text {
        None => Ok(all(defs)),
        Some(t) => parse(t)?.resolve(defs),
    }
}

/// Parses a selection. Errors point at the offending part of `text`.
pub fn parse(text: &str) -> Result<Selection, SelectError> {
    let tokens = lex(text)?;
    if tokens.len() == 1 {
        return Err(
            SelectError::syntax("empty selection", 0..text.len(), "selects nothing")
                .with_help("write `*` to select every asset"),
        );
    }
    let mut p = Parser {
        tokens: &tokens,
        pos: 0,
        nesting: 0,
    };
    let root = p.parse_or()?;
    let t = p.peek();
    if t.tok != Tok::Eof {
        return Err(p.unexpected_after_term(t, false));
    }
    Ok(Selection {
        text: text.to_string(),
        root,
    })
}

impl Selection {
    /// Whether this selection is `*`, which selects every asset.
    #[cfg(test)]
    pub fn is_all(&self) -> bool {
        matches!(self.root, Node::All)
    }

    /// The selected assets, in topological (= index) order.
    ///
    /// Fails when a bare key (or an exact `key:`) names no asset, and when
    /// the selection as a whole matches no asset.
    pub fn resolve(&self, defs: &Defs) -> Result<Vec<AssetId>, SelectError> {
        let mut ev = Eval {
            defs,
            up: None,
            down: None,
            hint: None,
        };
        let set = ev.eval(&self.root)?;
        let ids: Vec<AssetId> = set
            .iter()
            .enumerate()
            .filter_map(|(i, &b)| b.then_some(i))
            .collect();
        if ids.is_empty() {
            let help = if defs.assets.is_empty() {
                Some("the project defines no assets".to_string())
            } else {
                ev.hint
            };
            return Err(SelectError::new(
                SelectErrorKind::Empty,
                "the selection matches no assets",
                0..self.text.len(),
                "matches no assets",
            )
            .with_help_opt(help));
        }
        Ok(ids)
    }
}

// ---------------------------------------------------------------------------
// Syntax tree

/// Unlimited depth.
const UNLIMITED: usize = usize::MAX;

#[derive(Debug, Clone)]
enum Node {
    All,
    Key {
        key: String,
        span: Range<usize>,
    },
    Glob {
        pattern: String,
        matcher: GlobMatcher,
    },
    Group(String),
    Tag {
        key: String,
        value: Option<String>,
    },
    Kind(&'static str),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Traverse {
        inner: Box<Node>,
        up: Option<usize>,
        down: Option<usize>,
    },
}

// ---------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    Plus,
    And,
    Or,
    Not,
    Word(Vec<Piece>),
    Eof,
}

/// Part of a word: a run of unquoted characters, or one quoted string.
#[derive(Debug, Clone, PartialEq)]
struct Piece {
    /// Unquoted: exactly the source text. Quoted: the unescaped contents.
    text: String,
    quoted: bool,
    span: Range<usize>,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    span: Range<usize>,
}

fn lex(text: &str) -> Result<Vec<Token>, SelectError> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            '+' => Some(Tok::Plus),
            _ => None,
        };
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if let Some(tok) = single {
            chars.next();
            out.push(Token {
                tok,
                span: i..i + 1,
            });
            continue;
        }
        // A word: adjacent unquoted runs and quoted strings.
        let start = i;
        let mut pieces: Vec<Piece> = Vec::new();
        let mut braces = 0usize;
        while let Some(&(j, c)) = chars.peek() {
            if c == '"' {
                chars.next();
                let mut s = String::new();
                let mut end = None;
                while let Some((k, c)) = chars.next() {
                    match c {
                        '"' => {
                            end = Some(k + 1);
                            break;
                        }
                        '\\' => match chars.peek() {
                            Some(&(_, n @ ('"' | '\\'))) => {
                                s.push(n);
                                chars.next();
                            }
                            _ => s.push('\\'),
                        },
                        c => s.push(c),
                    }
                }
                let Some(end) = end else {
                    return Err(SelectError::syntax(
                        "unterminated string in selection",
                        j..text.len(),
                        "this string is never closed",
                    )
                    .with_help("close it with `\"`; write `\\\"` for a quote inside it"));
                };
                pieces.push(Piece {
                    text: s,
                    quoted: true,
                    span: j..end,
                });
                continue;
            }
            let run_start = j;
            let mut run_end = j;
            while let Some(&(k, c)) = chars.peek() {
                let ends = c.is_whitespace()
                    || matches!(c, '(' | ')' | '+' | '"')
                    || (c == ',' && braces == 0);
                if ends {
                    break;
                }
                match c {
                    '{' => braces += 1,
                    '}' => braces = braces.saturating_sub(1),
                    _ => {}
                }
                chars.next();
                run_end = k + c.len_utf8();
            }
            if run_end == run_start {
                break;
            }
            pieces.push(Piece {
                text: text[run_start..run_end].to_string(),
                quoted: false,
                span: run_start..run_end,
            });
        }
        let end = pieces.last().map_or(start, |p| p.span.end);
        let tok = match pieces.as_slice() {
            [p] if !p.quoted && p.text.eq_ignore_ascii_case("and") => Tok::And,
            [p] if !p.quoted && p.text.eq_ignore_ascii_case("or") => Tok::Or,
            [p] if !p.quoted && p.text.eq_ignore_ascii_case("not") => Tok::Not,
            _ => Tok::Word(pieces),
        };
        out.push(Token {
            tok,
            span: start..end,
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        span: text.len()..text.len(),
    });
    Ok(out)
}

/// The number a word spells, when it is an unquoted run of ASCII digits
/// (saturating: a depth beyond `usize` is unlimited anyway).
fn depth_of(tok: &Tok) -> Option<usize> {
    match tok {
        Tok::Word(pieces) => match pieces.as_slice() {
            [p] if !p.quoted
                && !p.text.is_empty()
                && p.text.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(p.text.parse().unwrap_or(UNLIMITED))
            }
            _ => None,
        },
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Parser

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    nesting: usize,
}

impl<'t> Parser<'t> {
    fn peek(&self) -> &'t Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, n: usize) -> &'t Token {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> &'t Token {
        let t = self.peek();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn parse_or(&mut self) -> Result<Node, SelectError> {
        let mut items = vec![self.parse_and()?];
        while matches!(self.peek().tok, Tok::Or | Tok::Comma) {
            self.bump();
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Node::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Node, SelectError> {
        let mut items = vec![self.parse_unary()?];
        while self.peek().tok == Tok::And {
            self.bump();
            items.push(self.parse_unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Node::And(items)
        })
    }

    fn parse_unary(&mut self) -> Result<Node, SelectError> {
        // Iterative, so `not not … not a` cannot exhaust the stack.
        let mut nots = 0usize;
        while self.peek().tok == Tok::Not {
            self.bump();
            nots += 1;
        }
        let inner = self.parse_traversal()?;
        Ok(if nots % 2 == 1 {
            Node::Not(Box::new(inner))
        } else {
            inner
        })
    }

    fn parse_traversal(&mut self) -> Result<Node, SelectError> {
        let mut up = None;
        if let Some(n) = depth_of(&self.peek().tok)
            && self.peek_at(1).tok == Tok::Plus
            && starts_primary(&self.peek_at(2).tok)
        {
            self.bump();
            self.bump();
            up = Some(n);
        } else if self.peek().tok == Tok::Plus {
            self.bump();
            up = Some(UNLIMITED);
        }
        let primary = self.parse_primary()?;
        let mut down = None;
        if self.peek().tok == Tok::Plus {
            self.bump();
            down = Some(UNLIMITED);
            if let Some(n) = depth_of(&self.peek().tok) {
                self.bump();
                down = Some(n);
            }
        }
        Ok(if up.is_none() && down.is_none() {
            primary
        } else {
            Node::Traverse {
                inner: Box::new(primary),
                up,
                down,
            }
        })
    }

    fn parse_primary(&mut self) -> Result<Node, SelectError> {
        let t = self.peek();
        match &t.tok {
            Tok::Word(pieces) => {
                self.bump();
                word_node(pieces, t.span.clone())
            }
            Tok::LParen => {
                if self.nesting >= MAX_NESTING {
                    return Err(SelectError::syntax(
                        "selection nested too deeply",
                        t.span.clone(),
                        "too deep",
                    )
                    .with_help(format!(
                        "at most {MAX_NESTING} levels of parentheses are allowed"
                    )));
                }
                self.bump();
                self.nesting += 1;
                let inner = self.parse_or()?;
                self.nesting -= 1;
                let close = self.peek();
                match close.tok {
                    Tok::RParen => {
                        self.bump();
                        Ok(inner)
                    }
                    Tok::Eof => Err(SelectError::syntax(
                        "unclosed `(` in selection",
                        t.span.clone(),
                        "this `(` is never closed",
                    )
                    .with_help("add a `)` to close it")),
                    _ => Err(self.unexpected_after_term(close, true)),
                }
            }
            _ => {
                let what = describe(t);
                let message = if t.tok == Tok::Eof {
                    "unexpected end of selection".to_string()
                } else {
                    format!("unexpected {what} in selection")
                };
                let mut e = SelectError::syntax(message, t.span.clone(), EXPECTED_PRIMARY);
                if t.tok == Tok::Plus {
                    e = e.with_help(
                        "`+` goes right before or after an asset, once on each side: `+a`, `a+`, `2+a+1`",
                    );
                } else if matches!(t.tok, Tok::And | Tok::Or | Tok::Comma | Tok::Eof) {
                    e = e.with_help(
                        "`and`, `or` and `,` join two selections; a key named like a keyword takes quotes: `\"and\"`",
                    );
                }
                Err(e)
            }
        }
    }

    /// The error for a token that follows a complete term but cannot.
    fn unexpected_after_term(&self, t: &Token, in_parens: bool) -> SelectError {
        if t.tok == Tok::RParen && !in_parens {
            return SelectError::syntax(
                "unmatched `)` in selection",
                t.span.clone(),
                "no `(` opens this",
            );
        }
        let label = if in_parens {
            "expected `and`, `or`, `,` or `)`"
        } else {
            "expected `and`, `or`, `,` or the end of the selection"
        };
        let e = SelectError::syntax(
            format!("unexpected {} in selection", describe(t)),
            t.span.clone(),
            label,
        );
        let prev = self.tokens[..self.pos].last().map(|p| &p.tok);
        match (&t.tok, prev) {
            (Tok::Not, _) => e.with_help("to exclude assets write `and not`: `a and not b`"),
            (Tok::LParen, Some(Tok::Word(_))) => e.with_help(
                "dg has no selection functions; parentheses only group: `a and (b or c)`",
            ),
            (Tok::Plus, _) => e.with_help(
                "a term takes at most one `+` on each side; group to go further: `(a+)+`",
            ),
            _ => e.with_help(
                "join selections with `or` (or `,`) to take either, with `and` to take both",
            ),
        }
    }
}

fn starts_primary(tok: &Tok) -> bool {
    matches!(tok, Tok::Word(_) | Tok::LParen)
}

fn describe(t: &Token) -> String {
    match &t.tok {
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Plus => "`+`".into(),
        Tok::And => "`and`".into(),
        Tok::Or => "`or`".into(),
        Tok::Not => "`not`".into(),
        Tok::Word(pieces) => {
            let s: String = pieces
                .iter()
                .map(|p| {
                    if p.quoted {
                        format!("{:?}", p.text)
                    } else {
                        p.text.clone()
                    }
                })
                .collect();
            format!("`{s}`")
        }
        Tok::Eof => "end of selection".into(),
    }
}

/// A value: the pieces of a word after its `attr:` prefix.
struct Value {
    pieces: Vec<Piece>,
    /// Where the value is (or would be, when empty).
    span: Range<usize>,
}

impl Value {
    fn text(&self) -> String {
        self.pieces.iter().map(|p| p.text.as_str()).collect()
    }

    fn is_missing(&self) -> bool {
        self.pieces.iter().all(|p| !p.quoted && p.text.is_empty())
    }

    /// Splits at the first unquoted `=`: the parts before and after it, and
    /// the span of the `=`.
    fn split_eq(&self) -> Option<(Value, Value, Range<usize>)> {
        let (i, j) = self.pieces.iter().enumerate().find_map(|(i, p)| {
            (!p.quoted)
                .then(|| p.text.find('='))
                .flatten()
                .map(|j| (i, j))
        })?;
        let p = &self.pieces[i];
        let at = p.span.start + j;
        let mut left: Vec<Piece> = self.pieces[..i].to_vec();
        left.push(Piece {
            text: p.text[..j].to_string(),
            quoted: false,
            span: p.span.start..at,
        });
        let mut right = vec![Piece {
            text: p.text[j + 1..].to_string(),
            quoted: false,
            span: at + 1..p.span.end,
        }];
        right.extend(self.pieces[i + 1..].iter().cloned());
        Some((
            Value::new(left, self.span.start..at),
            Value::new(right, at + 1..self.span.end),
            at..at + 1,
        ))
    }

    fn new(pieces: Vec<Piece>, span: Range<usize>) -> Self {
        let pieces = pieces
            .into_iter()
            .filter(|p| p.quoted || !p.text.is_empty())
            .collect();
        Value { pieces, span }
    }
}

/// Turns a word into a leaf: an attribute filter or a key.
fn word_node(pieces: &[Piece], span: Range<usize>) -> Result<Node, SelectError> {
    let colon = pieces.iter().enumerate().find_map(|(i, p)| {
        (!p.quoted)
            .then(|| p.text.find(':'))
            .flatten()
            .map(|j| (i, j))
    });
    let Some((i, j)) = colon else {
        return key_node(Value::new(pieces.to_vec(), span.clone()), span);
    };
    let p = &pieces[i];
    let at = p.span.start + j;
    let attr: String = pieces[..i]
        .iter()
        .map(|q| q.text.as_str())
        .chain([&p.text[..j]])
        .collect();
    let attr_span = span.start..at + 1;
    let mut rest = vec![Piece {
        text: p.text[j + 1..].to_string(),
        quoted: false,
        span: at + 1..p.span.end,
    }];
    rest.extend(pieces[i + 1..].iter().cloned());
    let value = Value::new(rest, at + 1..span.end);
    let lower = attr.to_ascii_lowercase();
    let attr_name = match ATTRIBUTES.iter().find(|a| **a == lower) {
        Some(a) => *a,
        None => {
            let message = format!("unknown attribute `{attr}:` in selection");
            let e = SelectError::syntax(message, attr_span, "not an attribute");
            let valid = "dg selects by `key:`, `group:`, `tag:` and `kind:`";
            return Err(if DAGSTER_ONLY.contains(&lower.as_str()) {
                e.with_help(format!(
                    "`{lower}:` is a Dagster attribute dg does not have; {valid}"
                ))
            } else if let Some(s) = close_attribute(&lower) {
                e.with_help(format!("did you mean `{s}:`?"))
            } else {
                e.with_help(valid)
            });
        }
    };
    if value.is_missing() {
        let pos = value.span.start;
        return Err(SelectError::syntax(
            format!("missing value after `{attr}:`"),
            pos..pos,
            "expected a value here",
        )
        .with_help(format!(
            "write it without spaces, or quote it: `{attr_name}:\"some value\"`"
        )));
    }
    match attr_name {
        "key" => key_node(value, span),
        "group" => Ok(Node::Group(value.text())),
        "kind" => {
            let given = value.text();
            let lower = given.to_ascii_lowercase();
            match KINDS.iter().find(|k| **k == lower) {
                Some(k) => Ok(Node::Kind(k)),
                None => {
                    let valid = format!("valid kinds: {}", diag::list_names(&KINDS));
                    let help = match diag::did_you_mean(&lower, KINDS) {
                        Some(s) => format!("did you mean `{s}`? {valid}"),
                        None => valid,
                    };
                    Err(SelectError::new(
                        SelectErrorKind::InvalidValue,
                        format!("unknown kind `{given}` in selection"),
                        value.span.clone(),
                        "not a compute kind",
                    )
                    .with_help(help))
                }
            }
        }
        _ => {
            // tag
            match value.split_eq() {
                None => Ok(Node::Tag {
                    key: value.text(),
                    value: None,
                }),
                Some((k, v, eq)) => {
                    if k.is_missing() {
                        return Err(SelectError::syntax(
                            "missing tag name before `=`",
                            eq,
                            "expected a tag name before this",
                        )
                        .with_help("write `tag:NAME=VALUE`, or `tag:NAME` for any value"));
                    }
                    if v.is_missing() {
                        let pos = eq.end;
                        return Err(SelectError::syntax(
                            "missing tag value after `=`",
                            pos..pos,
                            "expected a value here",
                        )
                        .with_help(format!(
                            "write `tag:{}` for any value, or `tag:{}=\"\"` for an empty one",
                            k.text(),
                            k.text()
                        )));
                    }
                    Ok(Node::Tag {
                        key: k.text(),
                        value: Some(v.text()),
                    })
                }
            }
        }
    }
}

/// The attribute `given` is likely a typo of (transpositions count as one edit).
fn close_attribute(given: &str) -> Option<&'static str> {
    ATTRIBUTES
        .iter()
        .map(|a| (*a, strsim::osa_distance(given, a)))
        .filter(|&(_, d)| d <= 2 && d < given.chars().count())
        .min_by_key(|&(_, d)| d)
        .map(|(a, _)| a)
}

fn key_node(value: Value, span: Range<usize>) -> Result<Node, SelectError> {
    let text = value.text();
    if text == "*" {
        return Ok(Node::All);
    }
    if !text.contains(['*', '?', '[', '{']) {
        return Ok(Node::Key { key: text, span });
    }
    match GlobBuilder::new(&text).literal_separator(false).build() {
        Ok(g) => Ok(Node::Glob {
            matcher: g.compile_matcher(),
            pattern: text,
        }),
        Err(e) => Err(SelectError::new(
            SelectErrorKind::InvalidValue,
            format!("invalid wildcard pattern `{text}`: {}", e.kind()),
            value.span.clone(),
            "invalid pattern",
        )
        .with_help(
            "`*` matches any characters, `?` one, `[abc]` one of a set, `{a,b}` either one",
        )),
    }
}

// ---------------------------------------------------------------------------
// Resolution

struct Eval<'d> {
    defs: &'d Defs,
    up: Option<Vec<Vec<AssetId>>>,
    down: Option<Vec<Vec<AssetId>>>,
    /// Why the first leaf that matched nothing did, for the "matches no assets" error.
    hint: Option<String>,
}

impl Eval<'_> {
    fn n(&self) -> usize {
        self.defs.assets.len()
    }

    fn filter(&self, f: impl Fn(&crate::model::Asset) -> bool) -> Vec<bool> {
        self.defs.assets.iter().map(f).collect()
    }

    fn note_if_empty(&mut self, set: &[bool], hint: impl FnOnce(&Self) -> String) {
        if self.hint.is_none() && !set.iter().any(|&b| b) && !self.defs.assets.is_empty() {
            self.hint = Some(hint(self));
        }
    }

    fn eval(&mut self, node: &Node) -> Result<Vec<bool>, SelectError> {
        Ok(match node {
            Node::All => vec![true; self.n()],
            Node::Key { key, span } => {
                let Some(&id) = self.defs.by_key.get(key) else {
                    return Err(unknown_key(self.defs, key, span.clone()));
                };
                let mut set = vec![false; self.n()];
                if let Some(b) = set.get_mut(id) {
                    *b = true;
                }
                set
            }
            Node::Glob { pattern, matcher } => {
                let set = self.filter(|a| matcher.is_match(&a.key));
                self.note_if_empty(&set, |_| format!("no asset key matches `{pattern}`"));
                set
            }
            Node::Group(g) => {
                let set = self.filter(|a| &a.group == g);
                self.note_if_empty(&set, |ev| {
                    let mut groups: Vec<&str> =
                        ev.defs.assets.iter().map(|a| a.group.as_str()).collect();
                    groups.sort_unstable();
                    groups.dedup();
                    format!(
                        "no asset is in group `{g}`; {}",
                        diag::suggest(g, &groups, "groups")
                    )
                });
                set
            }
            Node::Tag { key, value } => {
                let set = self.filter(|a| match value {
                    None => a.tags.contains_key(key),
                    Some(v) => a.tags.get(key) == Some(v),
                });
                self.note_if_empty(&set, |ev| tag_hint(ev.defs, key, value.as_deref()));
                set
            }
            Node::Kind(k) => {
                let set = self.filter(|a| a.compute.kind() == *k);
                self.note_if_empty(&set, |_| format!("no asset has kind `{k}`"));
                set
            }
            Node::Not(inner) => {
                let mut set = self.eval(inner)?;
                set.iter_mut().for_each(|b| *b = !*b);
                set
            }
            Node::And(items) => {
                let mut set = vec![true; self.n()];
                for item in items {
                    let s = self.eval(item)?;
                    set.iter_mut().zip(s).for_each(|(a, b)| *a &= b);
                }
                set
            }
            Node::Or(items) => {
                let mut set = vec![false; self.n()];
                for item in items {
                    let s = self.eval(item)?;
                    set.iter_mut().zip(s).for_each(|(a, b)| *a |= b);
                }
                set
            }
            Node::Traverse { inner, up, down } => {
                let seeds = self.eval(inner)?;
                let mut set = seeds.clone();
                if let Some(depth) = *up {
                    let adj = self.up.get_or_insert_with(|| upstream_adjacency(self.defs));
                    bfs(adj, &seeds, depth, &mut set);
                }
                if let Some(depth) = *down {
                    let adj = self.down.get_or_insert_with(|| self.defs.downstream());
                    bfs(adj, &seeds, depth, &mut set);
                }
                set
            }
        })
    }
}

/// For each asset, the distinct assets it reads.
fn upstream_adjacency(defs: &Defs) -> Vec<Vec<AssetId>> {
    defs.assets
        .iter()
        .map(|a| {
            let mut v: Vec<AssetId> = a.inputs.iter().map(|i| i.upstream).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect()
}

/// Marks in `set` everything within `depth` steps of `seeds` along `adj`.
/// Multi-source breadth-first search: each asset and edge is visited once.
fn bfs(adj: &[Vec<AssetId>], seeds: &[bool], depth: usize, set: &mut [bool]) {
    let mut dist = vec![usize::MAX; adj.len()];
    let mut queue = std::collections::VecDeque::new();
    for (i, &s) in seeds.iter().enumerate() {
        if s {
            dist[i] = 0;
            queue.push_back(i);
        }
    }
    while let Some(i) = queue.pop_front() {
        if dist[i] >= depth {
            continue;
        }
        for &j in adj.get(i).map(Vec::as_slice).unwrap_or_default() {
            if j < dist.len() && dist[j] == usize::MAX {
                dist[j] = dist[i] + 1;
                set[j] = true;
                queue.push_back(j);
            }
        }
    }
}

fn unknown_key(defs: &Defs, key: &str, span: Range<usize>) -> SelectError {
    let keys = || defs.assets.iter().map(|a| a.key.as_str());
    let help = if defs.assets.is_empty() {
        Some("the project defines no assets".to_string())
    } else if let Some(s) = diag::did_you_mean(key, keys()) {
        Some(format!("did you mean `{s}`?"))
    } else {
        let suffix = format!("/{key}");
        let ending: Vec<&str> = keys().filter(|k| k.ends_with(&suffix)).collect();
        match ending.as_slice() {
            [] if key.contains('=') => {
                let (k, v) = key.split_once('=').unwrap_or((key, ""));
                Some(format!("to select by tag, write `tag:{k}={v}`"))
            }
            [] => Some("`dg list defs` lists the asset keys".to_string()),
            [one] => Some(format!("did you mean `{one}`?")),
            many => Some(format!(
                "keys ending in `{suffix}`: {}",
                diag::list_names(many)
            )),
        }
    };
    SelectError::new(
        SelectErrorKind::UnknownAsset,
        format!("unknown asset `{key}` in selection"),
        span,
        "no asset has this key",
    )
    .with_help_opt(help)
}

fn tag_hint(defs: &Defs, key: &str, value: Option<&str>) -> String {
    let with_key: Vec<&str> = {
        let mut v: Vec<&str> = defs
            .assets
            .iter()
            .filter_map(|a| a.tags.get(key).map(String::as_str))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    match value {
        Some(val) if !with_key.is_empty() => format!(
            "no asset has tag `{key}={val}`; {}",
            diag::suggest(val, &with_key, &format!("values of `{key}`"))
        ),
        _ => {
            let mut names: Vec<&str> = defs
                .assets
                .iter()
                .flat_map(|a| a.tags.keys().map(String::as_str))
                .collect();
            names.sort_unstable();
            names.dedup();
            format!(
                "no asset has tag `{key}`; {}",
                diag::suggest(key, &names, "tags in use")
            )
        }
    }
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// raw/events ─► staging/events ─┐
    ///                               ├─► report ─► my-asset
    /// raw/users  ─► staging/users  ─┘
    /// lonely
    const DEFS: &str = r#"
[assets."raw/events"]
source = true
group = "raw"
tags = { team = "data" }

[assets."raw/users"]
shell = "true"
group = "raw"
tags = { team = "data", pii = "" }

[assets."staging/events"]
sql = "SELECT * FROM events"
deps = ["raw/events"]
group = "staging"

[assets."staging/users"]
sql = "SELECT * FROM users"
deps = ["raw/users"]
group = "staging"
tags = { pii = "yes" }

[assets.report]
command = ["true"]
deps = ["staging/events", "staging/users"]
group = "marts"
tags = { team = "analytics" }

[assets.my-asset]
shell = "true"
deps = ["report"]
group = "marts"

[assets.lonely]
shell = "true"
"#;

    fn defs_from(text: &str) -> Defs {
        crate::validate::defs_for_test(text)
    }

    fn defs() -> Defs {
        defs_from(DEFS)
    }

    /// The keys a selection resolves to.
    fn sel(d: &Defs, text: &str) -> BTreeSet<String> {
        let ids = parse(text)
            .unwrap_or_else(|e| panic!("{}", e.render(text)))
            .resolve(d)
            .unwrap_or_else(|e| panic!("{}", e.render(text)));
        ids.iter().map(|&i| d.assets[i].key.clone()).collect()
    }

    fn set(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    fn parse_err(text: &str) -> SelectError {
        match parse(text) {
            Ok(s) => panic!("`{text}` parsed: {s:?}"),
            Err(e) => e,
        }
    }

    fn resolve_err(d: &Defs, text: &str) -> SelectError {
        match parse(text).map(|s| s.resolve(d)) {
            Ok(Ok(ids)) => panic!("`{text}` resolved to {ids:?}"),
            Ok(Err(e)) | Err(e) => e,
        }
    }

    /// The text an error's span covers.
    fn spanned<'t>(e: &SelectError, text: &'t str) -> &'t str {
        &text[e.span.clone()]
    }

    const ALL: [&str; 7] = [
        "raw/events",
        "raw/users",
        "staging/events",
        "staging/users",
        "report",
        "my-asset",
        "lonely",
    ];

    #[test]
    fn bare_keys() {
        let d = defs();
        assert_eq!(sel(&d, "raw/events"), set(&["raw/events"]));
        assert_eq!(sel(&d, "my-asset"), set(&["my-asset"]));
        assert_eq!(sel(&d, "  report  "), set(&["report"]));
        assert_eq!(sel(&d, "key:report"), set(&["report"]));
        assert_eq!(sel(&d, "KEY:report"), set(&["report"]));
    }

    #[test]
    fn star_selects_everything() {
        let d = defs();
        assert_eq!(sel(&d, "*"), set(&ALL));
        assert_eq!(sel(&d, "key:*"), set(&ALL));
        assert!(parse("*").unwrap().is_all());
        assert!(!parse("a").unwrap().is_all());
        assert_eq!(all(&d), (0..7).collect::<Vec<_>>());
        assert_eq!(select(&d, None).unwrap(), all(&d));
        assert_eq!(
            select(&d, Some("report")).unwrap(),
            vec![d.by_key["report"]]
        );
    }

    #[test]
    fn result_is_in_topological_order() {
        let d = defs();
        for text in [
            "*",
            "+my-asset",
            "raw/users+",
            "my-asset, raw/events, report",
        ] {
            let ids = parse(text).unwrap().resolve(&d).unwrap();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{text}: {ids:?}");
            for &i in &ids {
                for inp in &d.assets[i].inputs {
                    if let Some(p) = ids.iter().position(|&x| x == inp.upstream) {
                        assert!(ids[p] < i);
                    }
                }
            }
        }
    }

    #[test]
    fn key_globs_cross_slashes() {
        let d = defs();
        assert_eq!(sel(&d, "key:raw/*"), set(&["raw/events", "raw/users"]));
        assert_eq!(sel(&d, "raw/*"), set(&["raw/events", "raw/users"]));
        assert_eq!(
            sel(&d, "key:*/events"),
            set(&["raw/events", "staging/events"])
        );
        // `*` crosses `/`, like Dagster's `key:`.
        assert_eq!(
            sel(&d, "key:*s"),
            set(&["raw/events", "raw/users", "staging/events", "staging/users"])
        );
        assert_eq!(
            sel(&d, "key:r*"),
            set(&["raw/events", "raw/users", "report"])
        );
        assert_eq!(sel(&d, "key:\"raw/*\""), set(&["raw/events", "raw/users"]));
        assert_eq!(sel(&d, "key:?????t"), set(&["report"]));
        assert_eq!(sel(&d, "key:[lm]*"), set(&["lonely", "my-asset"]));
        // A comma inside braces belongs to the glob.
        assert_eq!(sel(&d, "key:{report,lonely}"), set(&["report", "lonely"]));
        assert_eq!(
            sel(&d, "key:raw/{users,nope}, lonely"),
            set(&["raw/users", "lonely"])
        );
    }

    #[test]
    fn glob_matching_nothing_is_fine_inside_a_larger_selection() {
        let d = defs();
        assert_eq!(sel(&d, "key:zzz* or report"), set(&["report"]));
    }

    #[test]
    fn groups_tags_kinds() {
        let d = defs();
        assert_eq!(sel(&d, "group:raw"), set(&["raw/events", "raw/users"]));
        assert_eq!(sel(&d, "group:default"), set(&["lonely"]));
        assert_eq!(sel(&d, "tag:team=data"), set(&["raw/events", "raw/users"]));
        assert_eq!(
            sel(&d, "tag:team"),
            set(&["raw/events", "raw/users", "report"])
        );
        assert_eq!(sel(&d, "tag:pii"), set(&["raw/users", "staging/users"]));
        assert_eq!(sel(&d, "tag:pii=\"\""), set(&["raw/users"]));
        assert_eq!(sel(&d, "tag:\"pii\"=\"yes\""), set(&["staging/users"]));
        assert_eq!(
            sel(&d, "kind:sql"),
            set(&["staging/events", "staging/users"])
        );
        assert_eq!(sel(&d, "kind:source"), set(&["raw/events"]));
        assert_eq!(sel(&d, "kind:command"), set(&["report"]));
        assert_eq!(
            sel(&d, "kind:shell"),
            set(&["raw/users", "my-asset", "lonely"])
        );
        assert_eq!(
            sel(&d, "kind:SQL"),
            set(&["staging/events", "staging/users"])
        );
    }

    #[test]
    fn quoted_values() {
        let text = r#"
[assets.a]
shell = "true"
group = "my group"
tags = { "owner name" = "data eng", "q" = "say \"hi\"" }

[assets.and]
shell = "true"
"#;
        let d = defs_from(text);
        assert_eq!(sel(&d, r#"group:"my group""#), set(&["a"]));
        assert_eq!(sel(&d, r#"tag:"owner name"="data eng""#), set(&["a"]));
        assert_eq!(sel(&d, r#"tag:"owner name""#), set(&["a"]));
        assert_eq!(sel(&d, r#"tag:q="say \"hi\"""#), set(&["a"]));
        assert_eq!(sel(&d, r#""and""#), set(&["and"]));
        assert_eq!(sel(&d, r#"key:"and" or a"#), set(&["and", "a"]));
        assert_eq!(sel(&d, r#""a" and "a""#), set(&["a"]));
        // A quoted key with spaces is looked up as written.
        let e = resolve_err(&d, r#""weird name""#);
        assert_eq!(e.kind, SelectErrorKind::UnknownAsset);
        assert_eq!(e.message, "unknown asset `weird name` in selection");
        assert_eq!(e.span, 0..12);
    }

    #[test]
    fn upstream_and_downstream() {
        let d = defs();
        assert_eq!(
            sel(&d, "+report"),
            set(&[
                "raw/events",
                "raw/users",
                "staging/events",
                "staging/users",
                "report"
            ])
        );
        assert_eq!(
            sel(&d, "raw/events+"),
            set(&["raw/events", "staging/events", "report", "my-asset"])
        );
        assert_eq!(
            sel(&d, "+staging/users+"),
            set(&["raw/users", "staging/users", "report", "my-asset"])
        );
        assert_eq!(sel(&d, "+lonely+"), set(&["lonely"]));
        assert_eq!(sel(&d, "+ report"), sel(&d, "+report"));
    }

    #[test]
    fn depths() {
        let d = defs();
        assert_eq!(
            sel(&d, "1+report"),
            set(&["staging/events", "staging/users", "report"])
        );
        assert_eq!(
            sel(&d, "2+my-asset"),
            set(&["staging/events", "staging/users", "report", "my-asset"])
        );
        assert_eq!(sel(&d, "0+report"), set(&["report"]));
        assert_eq!(
            sel(&d, "raw/events+1"),
            set(&["raw/events", "staging/events"])
        );
        assert_eq!(
            sel(&d, "raw/events+2"),
            set(&["raw/events", "staging/events", "report"])
        );
        assert_eq!(
            sel(&d, "1+report+1"),
            set(&["staging/events", "staging/users", "report", "my-asset"])
        );
        assert_eq!(
            sel(&d, "99999999999999999999999+report"),
            sel(&d, "+report")
        );
        assert_eq!(
            sel(&d, "raw/users+ 1"),
            set(&["raw/users", "staging/users"])
        );
        // Multi-source: within depth of any seed.
        assert_eq!(
            sel(&d, "(raw/events or report)+1"),
            set(&["raw/events", "staging/events", "report", "my-asset"])
        );
    }

    #[test]
    fn traversal_applies_to_any_primary() {
        let d = defs();
        assert_eq!(
            sel(&d, "group:raw+1"),
            set(&["raw/events", "raw/users", "staging/events", "staging/users"])
        );
        assert_eq!(
            sel(&d, "+group:staging"),
            set(&["raw/events", "raw/users", "staging/events", "staging/users"])
        );
        assert_eq!(
            sel(&d, "+(my-asset or lonely)"),
            sel(&d, "+my-asset, lonely")
        );
        assert_eq!(sel(&d, "(raw/users+)+1"), sel(&d, "raw/users+"));
        assert_eq!(
            sel(&d, "+tag:pii=yes"),
            set(&["raw/users", "staging/users"])
        );
        assert_eq!(
            sel(&d, "kind:source+1"),
            set(&["raw/events", "staging/events"])
        );
        assert_eq!(sel(&d, "2+(report)"), sel(&d, "2+report"));
    }

    #[test]
    fn numeric_keys_and_depths() {
        let d = defs_from(
            "[assets.2]\nshell = \"true\"\n\n[assets.x]\nshell = \"true\"\ndeps = [\"2\"]\n",
        );
        assert_eq!(sel(&d, "2"), set(&["2"]));
        // Not followed by a term: the key `2`, downstream.
        assert_eq!(sel(&d, "2+"), set(&["2", "x"]));
        assert_eq!(sel(&d, "2+ or x"), set(&["2", "x"]));
        // Followed by a term: a depth.
        assert_eq!(sel(&d, "2+x"), set(&["2", "x"]));
        assert_eq!(sel(&d, "0+x"), set(&["x"]));
        assert_eq!(sel(&d, "\"2\"+"), set(&["2", "x"]));
        assert_eq!(sel(&d, "+x"), set(&["2", "x"]));
        assert_eq!(sel(&d, "x+2"), set(&["x"]));
    }

    #[test]
    fn boolean_operators() {
        let d = defs();
        assert_eq!(sel(&d, "report or lonely"), set(&["report", "lonely"]));
        assert_eq!(sel(&d, "report, lonely"), set(&["report", "lonely"]));
        assert_eq!(
            sel(&d, "report,lonely,my-asset"),
            set(&["report", "lonely", "my-asset"])
        );
        assert_eq!(sel(&d, "group:raw and tag:pii"), set(&["raw/users"]));
        assert_eq!(
            sel(&d, "not group:raw and not group:staging"),
            set(&["report", "my-asset", "lonely"])
        );
        assert_eq!(
            sel(&d, "+report and not kind:source"),
            set(&["raw/users", "staging/events", "staging/users", "report"])
        );
        assert_eq!(sel(&d, "not not lonely"), set(&["lonely"]));
        assert_eq!(sel(&d, "NOT lonely AND Not report Or lonely").len(), 6);
    }

    #[test]
    fn precedence() {
        let d = defs();
        // and binds tighter than or
        assert_eq!(
            sel(&d, "lonely or group:raw and tag:pii"),
            set(&["lonely", "raw/users"])
        );
        assert_eq!(
            sel(&d, "(lonely or group:raw) and tag:pii"),
            set(&["raw/users"])
        );
        // comma is or
        assert_eq!(
            sel(&d, "lonely, group:raw and tag:pii"),
            set(&["lonely", "raw/users"])
        );
        // not binds tighter than and
        assert_eq!(
            sel(&d, "not lonely and not group:raw and not group:staging"),
            set(&["report", "my-asset"])
        );
        assert_eq!(sel(&d, "not (lonely or report)").len(), 5);
        // traversal binds tighter than not
        assert_eq!(sel(&d, "not +report"), set(&["my-asset", "lonely"]));
        assert_eq!(
            sel(&d, "not report+"),
            set(&[
                "raw/events",
                "raw/users",
                "staging/events",
                "staging/users",
                "lonely"
            ])
        );
        // path between two assets, Dagster style
        assert_eq!(
            sel(&d, "raw/users+ and +my-asset"),
            set(&["raw/users", "staging/users", "report", "my-asset"])
        );
    }

    #[test]
    fn deep_long_and_huge_inputs_do_not_overflow() {
        let d = defs();
        let many_nots = format!("{}lonely", "not ".repeat(100_001));
        assert_eq!(sel(&d, &many_nots).len(), 6);
        let long_or = vec!["lonely"; 20_000].join(" or ");
        assert_eq!(sel(&d, &long_or), set(&["lonely"]));
        let ok = format!(
            "{}lonely{}",
            "(".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        assert_eq!(sel(&d, &ok), set(&["lonely"]));
        let deep = format!("{}lonely{}", "(".repeat(100_000), ")".repeat(100_000));
        let e = parse_err(&deep);
        assert_eq!(e.message, "selection nested too deeply");
        assert_eq!(e.span, MAX_NESTING..MAX_NESTING + 1);
        let plus_deep = "+(".repeat(100_000);
        assert_eq!(parse_err(&plus_deep).message, "selection nested too deeply");
    }

    #[test]
    fn traversal_is_linear_on_large_graphs() {
        // A chain of 10 000 assets, plus one asset read by all of them.
        let mut text = String::from("[assets.hub]\nshell = \"true\"\n");
        for i in 0..10_000 {
            let prev = if i == 0 {
                "\"hub\"".to_string()
            } else {
                format!("\"hub\", \"a{}\"", i - 1)
            };
            text.push_str(&format!(
                "[assets.a{i}]\nshell = \"true\"\ndeps = [{prev}]\n"
            ));
        }
        let d = defs_from(&text);
        let started = std::time::Instant::now();
        assert_eq!(parse("+a9999").unwrap().resolve(&d).unwrap().len(), 10_001);
        assert_eq!(parse("hub+").unwrap().resolve(&d).unwrap().len(), 10_001);
        assert_eq!(parse("hub+1").unwrap().resolve(&d).unwrap().len(), 10_001);
        assert_eq!(parse("a0+2").unwrap().resolve(&d).unwrap().len(), 3);
        assert_eq!(parse("3+a9999").unwrap().resolve(&d).unwrap().len(), 5);
        assert_eq!(
            parse("+a9999+ and not hub")
                .unwrap()
                .resolve(&d)
                .unwrap()
                .len(),
            10_000
        );
        // Generous even for an unoptimized build on a busy machine.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn adjacency_has_no_duplicates() {
        let d = defs_from(
            "[assets.a]\nshell = \"true\"\n[assets.b]\nshell = \"true\"\n[assets.b.ins.x]\nasset = \"a\"\n[assets.b.ins.y]\nasset = \"a\"\n",
        );
        let down = d.downstream();
        let up = upstream_adjacency(&d);
        assert_eq!(down[d.by_key["a"]], vec![d.by_key["b"]]);
        assert_eq!(up[d.by_key["b"]], vec![d.by_key["a"]]);
        assert_eq!(sel(&d, "a+"), set(&["a", "b"]));
    }

    // ---- errors

    #[test]
    fn unexpected_token_points_at_it() {
        let text = "a and )";
        let e = parse_err(text);
        assert_eq!(e.kind, SelectErrorKind::Syntax);
        assert_eq!(e.message, "unexpected `)` in selection");
        assert_eq!(e.span, 6..7);
        assert_eq!(e.label, EXPECTED_PRIMARY);
        assert_eq!(
            e.render(text),
            "error: unexpected `)` in selection\n  --select 'a and )'\n                  ^ expected an asset key, `key:`, `group:`, `tag:`, `kind:`, `*` or `(`\n"
        );
    }

    #[test]
    fn syntax_errors_and_spans() {
        let cases: &[(&str, &str, &str)] = &[
            // text, message, spanned text
            ("a and", "unexpected end of selection", ""),
            ("and a", "unexpected `and` in selection", "and"),
            ("a or or b", "unexpected `or` in selection", "or"),
            ("a,", "unexpected end of selection", ""),
            (",a", "unexpected `,` in selection", ","),
            ("a b", "unexpected `b` in selection", "b"),
            ("a not b", "unexpected `not` in selection", "not"),
            ("(a or b", "unclosed `(` in selection", "("),
            ("(a b)", "unexpected `b` in selection", "b"),
            ("a)", "unmatched `)` in selection", ")"),
            ("()", "unexpected `)` in selection", ")"),
            ("++a", "unexpected `+` in selection", "+"),
            ("a++", "unexpected `+` in selection", "+"),
            ("a+b", "unexpected `b` in selection", "b"),
            ("a+1+", "unexpected `+` in selection", "+"),
            ("+", "unexpected end of selection", ""),
            ("not", "unexpected end of selection", ""),
            ("roots(a)", "unexpected `(` in selection", "("),
            ("a \"b", "unterminated string in selection", "\"b"),
            (
                "owner:me",
                "unknown attribute `owner:` in selection",
                "owner:",
            ),
            (
                "gruop:raw",
                "unknown attribute `gruop:` in selection",
                "gruop:",
            ),
            ("group:", "missing value after `group:`", ""),
            ("tag:=v", "missing tag name before `=`", "="),
            ("tag:k=", "missing tag value after `=`", ""),
            ("key:", "missing value after `key:`", ""),
            (
                "key:[a",
                "invalid wildcard pattern `[a`: unclosed character class; missing ']'",
                "[a",
            ),
            (
                "kind:python",
                "unknown kind `python` in selection",
                "python",
            ),
            ("", "empty selection", ""),
            ("   ", "empty selection", "   "),
        ];
        for (text, message, at) in cases {
            let e = parse_err(text);
            assert_eq!(&e.message, message, "{text}");
            assert_eq!(spanned(&e, text), *at, "{text}: {e:?}");
        }
        // End-of-text errors sit at the end.
        assert_eq!(parse_err("a and").span, 5..5);
        assert_eq!(parse_err("group:").span, 6..6);
        assert_eq!(parse_err("x or group: y").span, 11..11);
    }

    #[test]
    fn helps() {
        assert_eq!(
            parse_err("gruop:raw").help.unwrap(),
            "did you mean `group:`?"
        );
        assert!(
            parse_err("owner:me")
                .help
                .unwrap()
                .contains("Dagster attribute")
        );
        assert!(parse_err("a not b").help.unwrap().contains("and not"));
        assert!(parse_err("a b").help.unwrap().contains("`or`"));
        assert!(parse_err("").help.unwrap().contains("`*`"));
        let e = parse_err("kind:sq");
        assert_eq!(e.kind, SelectErrorKind::InvalidValue);
        assert_eq!(
            e.help.unwrap(),
            "did you mean `sql`? valid kinds: `command`, `shell`, `sql`, `source`"
        );
        assert_eq!(
            parse_err("kind:python").help.unwrap(),
            "valid kinds: `command`, `shell`, `sql`, `source`"
        );
    }

    #[test]
    fn unknown_keys_suggest() {
        let d = defs();
        let text = "report or raw/event";
        let e = resolve_err(&d, text);
        assert_eq!(e.kind, SelectErrorKind::UnknownAsset);
        assert_eq!(e.message, "unknown asset `raw/event` in selection");
        assert_eq!(spanned(&e, text), "raw/event");
        assert_eq!(e.help.as_deref(), Some("did you mean `raw/events`?"));
        // The last segment of a key.
        assert_eq!(
            resolve_err(&d, "users").help.as_deref(),
            Some("keys ending in `/users`: `raw/users`, `staging/users`")
        );
        // In traversal, in `key:`, behind `not`.
        let text = "+(lonely or key:repor)";
        let e = resolve_err(&d, text);
        assert_eq!(spanned(&e, text), "key:repor");
        assert_eq!(e.help.as_deref(), Some("did you mean `report`?"));
        assert_eq!(spanned(&resolve_err(&d, "not zzz"), "not zzz"), "zzz");
        assert_eq!(
            resolve_err(&d, "team=data").help.as_deref(),
            Some("to select by tag, write `tag:team=data`")
        );
        assert_eq!(
            resolve_err(&d, "zzzzzzzz").help.as_deref(),
            Some("`dg list defs` lists the asset keys")
        );
        let empty = Defs::default();
        assert_eq!(
            resolve_err(&empty, "a").help.as_deref(),
            Some("the project defines no assets")
        );
    }

    #[test]
    fn empty_results_are_errors() {
        let d = defs();
        for (text, help) in [
            (
                "group:nope",
                Some("no asset is in group `nope`; groups: `default`, `marts`, `raw`, `staging`"),
            ),
            (
                "group:rav",
                Some("no asset is in group `rav`; did you mean `raw`?"),
            ),
            ("lonely and not lonely", None),
            ("key:zzz*", Some("no asset key matches `zzz*`")),
            (
                "tag:team=dta",
                Some("no asset has tag `team=dta`; did you mean `data`?"),
            ),
            (
                "tag:teem",
                Some("no asset has tag `teem`; did you mean `team`?"),
            ),
            ("group:raw and kind:sql", None),
        ] {
            let e = resolve_err(&d, text);
            assert_eq!(e.kind, SelectErrorKind::Empty, "{text}");
            assert_eq!(e.message, "the selection matches no assets");
            assert_eq!(e.span, 0..text.len());
            assert_eq!(e.help.as_deref(), help, "{text}");
        }
        let e = resolve_err(&Defs::default(), "*");
        assert_eq!(e.help.as_deref(), Some("the project defines no assets"));
        let d = defs_from("[assets.a]\nshell = \"true\"\n");
        assert_eq!(
            resolve_err(&d, "kind:sql").help.as_deref(),
            Some("no asset has kind `sql`")
        );
    }

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

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn check(text: &str, d: &Defs) {
            let check_span = |e: &SelectError| {
                assert!(
                    e.span.start <= e.span.end && e.span.end <= text.len(),
                    "{text:?}: {e:?}"
                );
                assert!(text.is_char_boundary(e.span.start) && text.is_char_boundary(e.span.end));
                let _ = e.render(text);
            };
            match parse(text) {
                Err(e) => check_span(&e),
                Ok(s) => match s.resolve(d) {
                    Err(e) => check_span(&e),
                    Ok(ids) => {
                        assert!(!ids.is_empty());
                        assert!(ids.windows(2).all(|w| w[0] < w[1]));
                        assert!(ids.iter().all(|&i| i < d.assets.len()));
                    }
                },
            }
        }

        fn token() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("raw/events".to_string()),
                Just("report".to_string()),
                Just("my-asset".to_string()),
                Just("raw/*".to_string()),
                Just("*".to_string()),
                Just("group:raw".to_string()),
                Just("tag:team=data".to_string()),
                Just("tag:pii".to_string()),
                Just("kind:sql".to_string()),
                Just("key:{a,r*}".to_string()),
                Just("\"lonely\"".to_string()),
                Just(" and ".to_string()),
                Just(" or ".to_string()),
                Just(" not ".to_string()),
                Just(",".to_string()),
                Just("(".to_string()),
                Just(")".to_string()),
                Just("+".to_string()),
                Just("2".to_string()),
                Just(" ".to_string()),
                Just("\"".to_string()),
                Just(":".to_string()),
                Just("=".to_string()),
                "[a-z]{1,3}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn random_text_never_panics(text in any::<String>()) {
                check(&text, &defs());
            }

            #[test]
            fn random_operator_soup_never_panics(text in "[a-z0-9 +(),:=\"*?\\[\\]{}\\\\é漢\t'/-]{0,40}") {
                check(&text, &defs());
            }

            #[test]
            fn random_token_sequences_never_panic(tokens in proptest::collection::vec(token(), 0..16)) {
                check(&tokens.concat(), &defs());
            }
        }
    }
}
