//! SQL text helpers shared by the engines: the statement without its
//! trailing `;` and comments, `:name` parameters made positional, the value
//! bound to a parameter, and cutting a value for a message.

use super::{PARAMS, Params};

/// Cuts `s` to at most `max` bytes, at a character boundary, with a mark.
pub fn cut_text(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Where the line of `b` at `i` ends (a `--` comment's end): its `\n`, or
/// the end of `b`.
fn line_end(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |n| i + n)
}

/// The query without what follows its last token: trailing `;`, comments
/// and whitespace, so that it can be wrapped in a subquery.
pub fn statement_text(query: &str) -> &str {
    let b = query.as_bytes();
    let mut end = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => i = line_end(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            q @ (b'\'' | b'"' | b'`' | b'[') => {
                let close = if q == b'[' { b']' } else { q };
                i += 1;
                while i < b.len() && b[i] != close {
                    i += 1;
                }
                i += 1;
                end = i.min(b.len());
            }
            b';' => i += 1,
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                i += 1;
                end = i;
            }
        }
    }
    &query[..end.min(query.len())]
}

/// `query` with dg's named parameters (`:partition_key`, …) replaced by
/// Postgres placeholders (`$1`, `$2`, … one per distinct name, in order of
/// first use), and the names in placeholder order. Only placeholders in
/// SQL text are replaced: string literals (`'…'`, `E'…'`, `$tag$…$tag$`),
/// quoted identifiers and comments are copied unchanged, as is a `::` cast.
/// A positional `$n` in the query is an error (dg binds names only).
pub fn to_positional(query: &str) -> Result<(String, Vec<&'static str>), ParamError> {
    let b = query.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut out = String::with_capacity(query.len() + 8);
    let mut names: Vec<&'static str> = Vec::new();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => i = line_end(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // Postgres block comments nest.
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            q @ (b'\'' | b'"') => {
                // `E'…'` allows backslash escapes.
                let escapes = q == b'\''
                    && i > 0
                    && matches!(b[i - 1], b'e' | b'E')
                    && (i < 2 || !ident(b[i - 2]));
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                    } else if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                        } else {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                i += 1;
            }
            b'$' if i == 0 || !ident(b[i - 1]) => {
                let mut j = i + 1;
                if b.get(j).is_some_and(|c| c.is_ascii_digit()) {
                    return Err(ParamError::Positional("$1"));
                }
                while j < b.len() && ident(b[j]) {
                    j += 1;
                }
                if b.get(j) == Some(&b'$') {
                    // A dollar-quoted string: up to the same tag.
                    let tag = &query[i..=j];
                    match query[j + 1..].find(tag) {
                        Some(end) => i = j + 1 + end + tag.len(),
                        None => i = b.len(),
                    }
                } else {
                    i = j;
                }
            }
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' if i == 0 || b[i - 1] != b':' => {
                let mut j = i + 1;
                while j < b.len() && ident(b[j]) {
                    j += 1;
                }
                if let Some(name) = PARAMS.iter().find(|p| **p == &query[i + 1..j]) {
                    let n = match names.iter().position(|x| x == name) {
                        Some(n) => n,
                        None => {
                            names.push(name);
                            names.len() - 1
                        }
                    };
                    out.push_str(&query[copied..i]);
                    out.push_str(&format!("${}", n + 1));
                    copied = j;
                }
                i = j.max(i + 1);
            }
            c if ident(c) => {
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&query[copied.min(query.len())..]);
    Ok((out, names))
}

/// A query that uses parameters dg does not bind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A positional parameter (`$1`, `?`): dg binds names only.
    #[error(
        "positional parameters (`{0}`) are not supported: use :partition_key, :partition_keys, :partition_start, :partition_end or :run_id"
    )]
    Positional(&'static str),
    /// A named parameter that is not one of dg's (`:other`).
    #[error(
        "unknown parameter `{0}`: dg binds :partition_key, :partition_keys, :partition_start, :partition_end and :run_id"
    )]
    Unknown(String),
}

/// The value dg binds for parameter `name`.
pub fn param_value<'p>(params: &'p Params, name: &str) -> Option<&'p str> {
    match name {
        "partition_key" => params.partition_key.as_deref(),
        "partition_keys" => params.partition_keys.as_deref(),
        "partition_start" => params.partition_start.as_deref(),
        "partition_end" => params.partition_end.as_deref(),
        _ => Some(params.run_id.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::statement_text;

    #[test]
    fn named_parameters_become_positional_outside_literals() {
        use super::to_positional;
        let (q, n) = to_positional(
            "SELECT :partition_key, ':run_id', \":run_id\", x::text, E'\\':run_id', $t$:run_id$t$ -- :run_id\n, :run_id, :partition_key /* :x /* :y */ */",
        )
        .unwrap();
        assert_eq!(
            q,
            "SELECT $1, ':run_id', \":run_id\", x::text, E'\\':run_id', $t$:run_id$t$ -- :run_id\n, $2, $1 /* :x /* :y */ */"
        );
        assert_eq!(n, vec!["partition_key", "run_id"]);
        assert_eq!(to_positional("SELECT a[1:2], :other").unwrap().1.len(), 0);
        assert!(to_positional("SELECT $1").is_err());
        assert_eq!(
            to_positional("SELECT :partition_keyx, :run_id").unwrap().0,
            "SELECT :partition_keyx, $1"
        );
    }

    #[test]
    fn trailing_semicolons_and_comments_are_cut() {
        assert_eq!(statement_text("SELECT 1"), "SELECT 1");
        assert_eq!(statement_text("SELECT 1 ;  -- done\n"), "SELECT 1");
        assert_eq!(statement_text("SELECT 1; /* a; b */ ;"), "SELECT 1");
        assert_eq!(statement_text("SELECT ';--' AS x;"), "SELECT ';--' AS x");
        assert_eq!(
            statement_text("SELECT \"a;\" FROM t -- c"),
            "SELECT \"a;\" FROM t"
        );
        assert_eq!(statement_text("SELECT 'é';"), "SELECT 'é'");
    }
}
