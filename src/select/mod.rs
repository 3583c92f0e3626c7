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
//! text and renders like every located error, with a caret under it
//! ([`SelectError::render`], through `diag`). A
//! selection that resolves to no asset at all (`group:nope`, `a and not a`) is
//! an error; an empty selection text is too (it is more likely an unset
//! variable in a script than a wish to select nothing or everything).
//!
//! Resolution is linear in the size of the graph per operator: traversals are
//! breadth-first searches that visit each asset and edge at most once.
//!
//! Files: `lex` (tokens), `parse` (the syntax tree), `resolve` (against
//! the definitions), `error` (what went wrong, and where).

use crate::diag::{self, Diagnostic, Sources, Span};
#[cfg(test)]
use crate::model::AssetId;
use crate::model::Defs;

mod error;
mod lex;
mod parse;
mod resolve;
#[cfg(test)]
mod testing;

pub use error::SelectError;
use parse::Node;
pub use parse::parse;

/// A parsed selection, ready to resolve against definitions.
#[derive(Debug, Clone)]
pub struct Selection {
    text: String,
    root: Node,
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
            let r = diag::clamp(&job.select, &e.span);
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
        out.push(e.diagnostic_at(
            &span,
            format!("in `select` of job `{}`: {}", job.name, e.message),
        ));
    }
    out
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

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

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
                let _ = e.render(text, false);
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
