//! The selection parser: tokens into a syntax tree ([`Node`]), by
//! recursive descent over the grammar in the module comment, and words
//! into attribute filters, keys and globs.

use std::ops::Range;

use globset::{GlobBuilder, GlobMatcher};

use crate::diag;

use super::Selection;
use super::error::{SelectError, SelectErrorKind};
use super::lex::{Piece, Tok, Token, depth_of, lex};

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

pub(super) const EXPECTED_PRIMARY: &str =
    "expected an asset key, `key:`, `group:`, `tag:`, `kind:`, `*` or `(`";

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

// ---------------------------------------------------------------------------
// Syntax tree

/// Unlimited depth.
pub(super) const UNLIMITED: usize = usize::MAX;

#[derive(Debug, Clone)]
pub(super) enum Node {
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

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
            e.render(text, false),
            "error: unexpected `)` in selection\n --> --select:1:7\n  |\n1 | a and )\n  |       ^ expected an asset key, `key:`, `group:`, `tag:`, `kind:`, `*` or `(`"
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
}
