//! Resolution: a syntax tree evaluated against the definitions into a set
//! of assets, with the hints for a selection that matches nothing.

use std::ops::Range;

use crate::diag;
use crate::model::{AssetId, Defs};

use super::Selection;
use super::error::{SelectError, SelectErrorKind};
use super::parse::Node;

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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

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
}
