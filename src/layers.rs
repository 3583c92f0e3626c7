//! The layer order of `src/`, and the test that holds the code to it.
//!
//! Each top-level module may use (`crate::X`) only the modules listed
//! before it in [`LAYERS`], so the module graph has no cycle and a reader
//! can learn the crate from the bottom up. CONTRIBUTING.md shows the same
//! order with the reasons for the places that differ from the pipeline.
//!
//! The test reads the sources, not the compiler's view: it finds
//! `crate::X`, `crate::{X, …}` and `super::…::X` that reach the crate root,
//! outside comments. Test code may reach up (a partition test may build
//! its definitions with `validate`): files declared `#[cfg(test)] mod x;`
//! and a file's trailing `#[cfg(test)] mod tests { … }` are not read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The top-level modules, lowest first.
const LAYERS: &[&str] = &[
    // Foundation: no stage, used by every stage.
    "names",   // names derived from keys (file names, variable names)
    "formats", // storage formats, declared column types
    "interp",  // `${env:…}` templates
    "secrets", // masking passwords and declared secrets
    "pg",      // Postgres connections (I/O manager and state store)
    "diag",    // diagnostics
    // Definitions.
    "load",       // TOML into raw, spanned values
    "partitions", // partition definitions, keys, windows, mappings
    // The plug-in API: resource types are checked by their managers, and
    // the model holds a manager's path template, so `io` sits below them.
    "io",
    "model",    // the validated definitions
    "project",  // dg.toml and the definitions folder
    "validate", // raw values into the model
    // What a command targets, and how.
    "select", // selection syntax
    "plan",   // steps and their dependencies
    "error",  // every stage's errors and their exit codes
    // Running.
    "sql",   // the `sql` compute and checks, in-database SQL
    "state", // run history
    "exec",  // scheduler, executors, one step
    "run",   // a run as a library: target, plan, prepare, execute
    "cli",   // the command line
];

/// Every `.rs` file under `dir`, in path order.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The module names a file declares with `#[cfg(test)] mod NAME;`.
fn test_only_modules(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for w in lines.windows(2) {
        if w[0] == "#[cfg(test)]"
            && let Some(rest) = w[1]
                .strip_prefix("mod ")
                .or_else(|| w[1].strip_prefix("pub(crate) mod "))
            && let Some(name) = rest.strip_suffix(';')
        {
            out.push(name.to_string());
        }
    }
    out
}

/// `text` without comments and without its trailing test module.
fn library_code(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|n| n.starts_with("mod ") && n.trim_end().ends_with('{'))
        {
            break;
        }
        let code = match line.find("//") {
            Some(c) => &line[..c],
            None => line,
        };
        out.push((i + 1, code.to_string()));
    }
    out
}

/// The crate-root modules a line names: `crate::X`, `crate::{X, Y::…}`,
/// and `super::` repeated `depth` times (which is the crate root from a
/// file at that depth).
fn roots_named(line: &str, depth: usize) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    let mut prefixes = vec!["crate::".to_string()];
    prefixes.push("super::".repeat(depth));
    for prefix in &prefixes {
        let mut from = 0;
        while let Some(i) = line[from..].find(prefix.as_str()) {
            let at = from + i;
            from = at + prefix.len();
            // `super::super::x` also contains `super::x`: only whole runs.
            if prefix.starts_with("super")
                && (line[..at].ends_with("super::") || line[from..].starts_with("super::"))
            {
                continue;
            }
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let rest = &line[from..];
            if let Some(group) = rest.strip_prefix('{') {
                // The names at the group's first level.
                let mut level = 0;
                let mut start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => level += 1,
                        '}' if level == 0 => break,
                        '}' => level -= 1,
                        ',' if level == 0 => start = true,
                        c if c.is_whitespace() => {}
                        _ if start && level == 0 => {
                            out.push(ident(&group[j..]));
                            start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                out.push(ident(rest));
            }
        }
    }
    out.retain(|s| !s.is_empty() && s != "self");
    out
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);

    // Test-only files, from their parents' declarations.
    let mut skipped: BTreeSet<PathBuf> = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let dir = match f.file_name().unwrap().to_str().unwrap() {
            "lib.rs" | "mod.rs" => f.parent().unwrap().to_path_buf(),
            _ => f.with_extension(""),
        };
        for m in test_only_modules(&text) {
            skipped.insert(dir.join(format!("{m}.rs")));
            skipped.insert(dir.join(&m));
        }
    }

    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
        if parts.len() == 1 && matches!(parts[0], "lib.rs" | "main.rs") {
            continue;
        }
        if skipped.iter().any(|s| f.starts_with(s)) {
            continue;
        }
        let module = parts[0].trim_end_matches(".rs");
        seen.insert(module.to_string());
        let Some(level) = LAYERS.iter().position(|l| *l == module) else {
            problems.push(format!(
                "src/{}: module `{module}` is not in LAYERS (src/layers.rs): give it a place",
                rel.display()
            ));
            continue;
        };
        // `x.rs` and `x/mod.rs` are one level below the root; `x/y.rs` two.
        let depth = parts.len() - usize::from(parts.last() == Some(&"mod.rs"));
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in library_code(&text) {
            for used in roots_named(&line, depth) {
                let Some(l) = LAYERS.iter().position(|x| *x == used) else {
                    continue;
                };
                if l > level {
                    problems.push(format!(
                        "src/{}:{n}: `{module}` uses `{used}`, a layer above it",
                        rel.display()
                    ));
                }
            }
        }
    }
    for l in LAYERS {
        if !seen.contains(*l) {
            problems.push(format!("LAYERS names `{l}`, which is not a module of src/"));
        }
    }
    assert!(
        problems.is_empty(),
        "layer order (src/layers.rs, CONTRIBUTING.md) broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_scanner_finds_every_form() {
    assert_eq!(roots_named("use crate::io::Format;", 1), ["io"]);
    assert_eq!(
        roots_named("use crate::{diag::Span, model::{Asset, Defs}, names};", 1),
        ["diag", "model", "names"]
    );
    assert_eq!(roots_named("let x = super::exec::run();", 1), ["exec"]);
    assert_eq!(
        roots_named("use super::db::Column;", 2),
        Vec::<String>::new()
    );
    assert_eq!(roots_named("use super::super::plan::Step;", 2), ["plan"]);
    assert_eq!(roots_named("$crate::io::x", 1), Vec::<String>::new());
    assert_eq!(
        library_code("use a;\n// crate::cli\n#[cfg(test)]\nmod tests {\n  crate::cli\n}\n"),
        [(1, "use a;".to_string()), (2, String::new())]
    );
}
