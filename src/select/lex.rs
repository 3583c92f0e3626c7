//! The selection lexer: operators, keywords and words (runs of unquoted
//! characters and quoted strings), each with its byte range.

use std::ops::Range;

use super::error::SelectError;
use super::parse::UNLIMITED;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
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
pub(super) struct Piece {
    /// Unquoted: exactly the source text. Quoted: the unescaped contents.
    pub(super) text: String,
    pub(super) quoted: bool,
    pub(super) span: Range<usize>,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) span: Range<usize>,
}

pub(super) fn lex(text: &str) -> Result<Vec<Token>, SelectError> {
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
pub(super) fn depth_of(tok: &Tok) -> Option<usize> {
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
