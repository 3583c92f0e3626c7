//! The asset graph: cycles (each reported once, with its path and where
//! every edge is written) and a topological order.

use crate::diag::{Diagnostic, Kind, Span};
use crate::model::{Asset, Defs};

use super::Validator;

impl Validator<'_> {
    /// Finds cycles (reporting each with its full path) and returns a
    /// topological order of all assets.
    pub(super) fn topo_order(&mut self, names: &[&str]) -> Vec<usize> {
        let n = names.len();
        let ups = |edges: &Vec<Vec<(usize, Span)>>, i: usize| -> Vec<usize> {
            edges[i]
                .iter()
                .map(|(u, _)| *u)
                .filter(|&u| u != i)
                .collect()
        };
        // 0 = new, 1 = on stack, 2 = done
        let mut state = vec![0u8; n];
        let mut order = Vec::with_capacity(n);
        let mut reported: Vec<Vec<usize>> = Vec::new();
        for root in 0..n {
            if state[root] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, Vec<usize>, usize)> =
                vec![(root, ups(&self.edges, root), 0)];
            state[root] = 1;
            while let Some((node, children, idx)) = stack.last_mut() {
                if *idx < children.len() {
                    let c = children[*idx];
                    *idx += 1;
                    match state[c] {
                        0 => {
                            state[c] = 1;
                            let cu = ups(&self.edges, c);
                            stack.push((c, cu, 0));
                        }
                        1 => {
                            // Cycle: from c up the stack to the current node.
                            let pos = stack.iter().position(|(x, _, _)| *x == c).unwrap_or(0);
                            let mut cycle: Vec<usize> =
                                stack[pos..].iter().map(|(x, _, _)| *x).collect();
                            let mut canon = cycle.clone();
                            canon.sort_unstable();
                            if !reported.contains(&canon) {
                                reported.push(canon);
                                self.report_cycle(names, &mut cycle);
                            }
                        }
                        _ => {}
                    }
                } else {
                    let done = *node;
                    state[done] = 2;
                    order.push(done);
                    stack.pop();
                }
            }
        }
        order
    }

    fn report_cycle(&mut self, names: &[&str], cycle: &mut [usize]) {
        // `cycle` lists nodes where each reads the next (downstream → upstream).
        // Show it in data-flow order: upstream → … → downstream → upstream.
        cycle.reverse();
        // Start at the asset defined first, so the message reads like the files.
        if let Some(first) = (0..cycle.len()).min_by_key(|&k| cycle[k]) {
            cycle.rotate_left(first);
        }
        let path: Vec<&str> = cycle.iter().map(|&i| names[i]).collect();
        let mut text = path.join(" → ");
        text.push_str(" → ");
        text.push_str(path[0]);
        let mut diag = Diagnostic::error(Kind::Cycle, format!("dependency cycle: {text}"));
        for (k, &i) in cycle.iter().enumerate() {
            let upstream = cycle[(k + cycle.len() - 1) % cycle.len()];
            if let Some((_, span)) = self.edges[i].iter().find(|(u, _)| *u == upstream) {
                let label = format!("`{}` reads `{}`", names[i], names[upstream]);
                diag = if diag.primary.is_none() {
                    diag.at(span, label)
                } else {
                    diag.also(span, label)
                };
            }
        }
        self.diags
            .push(diag.help("remove one of these dependencies to break the cycle"));
    }
}

/// Moves the built assets into `defs` in topological `order`, their
/// inputs renumbered to match.
pub(super) fn renumber(mut built: Vec<Option<Asset>>, order: &[usize], defs: &mut Defs) {
    let mut new_id = vec![0usize; built.len()];
    for (new, &old) in order.iter().enumerate() {
        new_id[old] = new;
    }
    for &old in order {
        let mut a = built[old]
            .take()
            .expect("no errors, so every asset was built");
        for inp in &mut a.inputs {
            inp.upstream = new_id[inp.upstream];
        }
        defs.by_key.insert(a.key.clone(), defs.assets.len());
        defs.assets.push(a);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn a_cycle_of_three_is_reported_once_with_its_path() {
        let src = "[assets.extract]\ndeps = [\"load\"]\nshell = \"true\"\n\n\
                   [assets.transform]\ndeps = [\"extract\"]\nshell = \"true\"\n\n\
                   [assets.load]\ndeps = [\"transform\"]\nshell = \"true\"\n";
        let c = check(&[("a.toml", src)]);
        let message = "dependency cycle: extract → transform → load → extract";
        let d = c.expect(Kind::Cycle, message, ("a.toml", "\"load\"", 0));
        assert_eq!(d.secondary.len(), 2);
        assert_eq!(c.secondary(d, 0), c.at("a.toml", "\"extract\"", 0));
        assert_eq!(c.secondary(d, 1), c.at("a.toml", "\"transform\"", 0));
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let src = "[assets.a]\ndeps = [\"a\"]\nshell = \"true\"\n";
        let c = check(&[("a.toml", src)]);
        let message = "asset `a` depends on itself";
        c.expect(Kind::Cycle, message, ("a.toml", "\"a\"", 0));
    }
}
