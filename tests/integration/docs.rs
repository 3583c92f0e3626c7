//! The TOML examples in the documentation stay valid.
//!
//! Every ```` ```toml ```` block in `docs/*.md` and `README.md` is checked. Its
//! first line says what it is (the convention is in CONTRIBUTING.md):
//!
//! - `# dg.toml`: a `dg.toml`. It goes into an empty project, with the
//!   definitions folder it names, and `dg check defs` must pass.
//! - `# dg.toml: ` followed by a note (say, "the project of this page"): the
//!   same, and it is also the `dg.toml` of the project that the page's
//!   `# defs/PATH.toml` blocks make (below).
//! - `# defs/PATH.toml`: one file of a project that spans several blocks. All
//!   such blocks of one Markdown file go into one project, at their paths,
//!   and `dg check defs` must pass on them together.
//! - `# fragment` (optionally followed by `:` and a note): a piece of a file,
//!   such as a single table. It must parse as TOML.
//! - `# invalid` (optionally followed by `:` and a note): an example of a
//!   mistake. It must parse as TOML, and `dg check defs` must reject it (exit 2)
//!   without panicking.
//! - anything else: a complete definitions file. It goes into `defs/` of an
//!   empty project, and `dg check defs` must pass.
//!
//! Every block must parse as TOML. Unset `${env:…}` variables are only
//! warnings, so the examples may use them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::{Run, assert_no_panic, dg, project, repo, write_files};

/// One fenced TOML block.
#[derive(Debug)]
struct Block {
    /// `docs/cli.md:120` (the line of the opening fence).
    place: String,
    /// The Markdown file it came from.
    doc: PathBuf,
    text: String,
}

/// What a block is, from its first line.
#[derive(Debug, PartialEq)]
pub(crate) enum Kind {
    Defs,
    /// `joins_page`: also the `dg.toml` of the page's multi-block project.
    DgToml {
        joins_page: bool,
    },
    ProjectFile(String),
    Fragment,
    Invalid,
}

pub(crate) fn kind(text: &str) -> Kind {
    // An editor's `#:schema` directive may come first; the kind is on the
    // first line after it.
    let first = text
        .lines()
        .find(|l| !l.trim_start().starts_with("#:schema"))
        .unwrap_or("")
        .trim();
    let Some(comment) = first.strip_prefix('#').map(str::trim) else {
        return Kind::Defs;
    };
    let marker = |word: &str| {
        comment == word
            || comment
                .strip_prefix(word)
                .is_some_and(|rest| rest.starts_with(':') || rest.starts_with(' '))
    };
    if comment == "dg.toml" {
        Kind::DgToml { joins_page: false }
    } else if marker("dg.toml") {
        Kind::DgToml { joins_page: true }
    } else if marker("fragment") {
        Kind::Fragment
    } else if marker("invalid") {
        Kind::Invalid
    } else if let Some(path) = comment.split_whitespace().next()
        && path.starts_with("defs/")
        && path.ends_with(".toml")
    {
        Kind::ProjectFile(path.to_string())
    } else {
        Kind::Defs
    }
}

/// The Markdown files whose examples are checked.
pub(crate) fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.push(repo().join("README.md"));
    docs
}

/// One fenced block of a Markdown file.
#[derive(Debug)]
pub(crate) struct Fence {
    /// `docs/cli.md:120` (the line of the opening fence).
    pub(crate) place: String,
    /// What follows the opening ticks (`toml`, `console`), trimmed.
    pub(crate) info: String,
    /// The lines between the fences, without the fence's indentation.
    pub(crate) text: String,
    /// The `<!-- console: … -->` comment on the line before the fence.
    pub(crate) directive: Option<String>,
}

/// The fenced blocks of a Markdown file. A fence may be indented (inside a
/// list); the block's lines lose that indentation.
pub(crate) fn fences(doc: &Path) -> Vec<Fence> {
    let text = std::fs::read_to_string(doc).expect("read doc");
    let rel = doc
        .strip_prefix(repo())
        .unwrap_or(doc)
        .display()
        .to_string();
    let mut out = Vec::new();
    let mut previous = "";
    // The fence being read, and the indentation and length of its ticks.
    let mut open: Option<(usize, usize, Fence)> = None;
    let mut lines: Vec<&str> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let ticks = trimmed.chars().take_while(|&c| c == '`').count();
        match &mut open {
            None if ticks >= 3 => {
                let directive = previous
                    .trim()
                    .strip_prefix("<!-- console:")
                    .and_then(|d| d.strip_suffix("-->"))
                    .map(|d| d.trim().to_string());
                let fence = Fence {
                    place: format!("{rel}:{}", n + 1),
                    info: trimmed[ticks..].trim().to_string(),
                    text: String::new(),
                    directive,
                };
                open = Some((indent, ticks, fence));
                lines.clear();
            }
            None => {}
            Some((_, len, _)) if ticks >= *len && trimmed[ticks..].trim().is_empty() => {
                let (_, _, mut fence) = open.take().expect("open");
                fence.text = lines.join("\n") + "\n";
                out.push(fence);
            }
            Some((fence_indent, _, _)) => {
                lines.push(&line[indent.min(*fence_indent)..]);
            }
        }
        previous = line;
    }
    assert!(open.is_none(), "{rel}: a code fence is never closed");
    out
}

/// The ```toml blocks of a Markdown file.
fn toml_blocks(doc: &Path) -> Vec<Block> {
    fences(doc)
        .into_iter()
        .filter(|f| f.info == "toml")
        .map(|f| Block {
            place: f.place,
            doc: doc.to_path_buf(),
            text: f.text,
        })
        .collect()
}

fn describe(run: &Run) -> String {
    format!(
        "exit {}\n{}{}",
        run.code,
        run.stdout.trim_end(),
        if run.stderr.is_empty() {
            String::new()
        } else {
            format!("\n{}", run.stderr.trim_end())
        }
    )
}

#[test]
fn every_toml_example_in_the_docs_is_valid() {
    let blocks: Vec<Block> = documents().iter().flat_map(|d| toml_blocks(d)).collect();
    // Guards against an extractor that silently finds nothing.
    assert!(
        blocks.len() >= 20,
        "only {} toml blocks found",
        blocks.len()
    );

    let mut failures: Vec<String> = Vec::new();
    // Multi-file projects, per Markdown file: path → (place, text).
    let mut projects: BTreeMap<PathBuf, Vec<(String, String, String)>> = BTreeMap::new();
    for b in &blocks {
        if let Err(e) = b.text.parse::<toml::Table>() {
            failures.push(format!("{}: not valid TOML: {e}", b.place));
            continue;
        }
        // A dg built without DuckDB rejects its examples: they only parse.
        if !cfg!(feature = "duckdb") && b.text.contains("duckdb") {
            continue;
        }
        match kind(&b.text) {
            Kind::Fragment => {}
            kind @ (Kind::Defs | Kind::Invalid) => {
                // A definitions file: `dg check defs` accepts it, or
                // rejects it when it is marked `# invalid`.
                let (code, wrong) = match kind {
                    Kind::Invalid => (
                        2,
                        "marked `# invalid`, but `dg check defs` did not reject it",
                    ),
                    _ => (0, "`dg check defs` fails on this definitions file"),
                };
                let dir = project(&[]);
                write_files(dir.path(), &[("defs/example.toml", &b.text)]);
                let run = dg(dir.path(), &["check", "defs"]);
                assert_no_panic(&run);
                if run.code != code {
                    failures.push(format!("{}: {wrong}:\n{}", b.place, describe(&run)));
                }
            }
            Kind::DgToml { joins_page } => {
                if joins_page {
                    projects.entry(b.doc.clone()).or_default().push((
                        b.place.clone(),
                        "dg.toml".to_string(),
                        b.text.clone(),
                    ));
                }
                let dir = project(&[]);
                write_files(dir.path(), &[("dg.toml", &b.text)]);
                let table: toml::Table = b.text.parse().expect("parsed above");
                let defs = table
                    .get("project")
                    .and_then(|p| p.get("defs"))
                    .and_then(|d| d.as_str())
                    .unwrap_or("defs");
                std::fs::create_dir_all(dir.path().join(defs)).expect("create defs dir");
                let run = dg(dir.path(), &["check", "defs"]);
                assert_no_panic(&run);
                if run.code != 0 {
                    failures.push(format!(
                        "{}: `dg check defs` fails with this dg.toml:\n{}",
                        b.place,
                        describe(&run)
                    ));
                }
            }
            Kind::ProjectFile(path) => {
                projects.entry(b.doc.clone()).or_default().push((
                    b.place.clone(),
                    path,
                    b.text.clone(),
                ));
            }
        }
    }
    for files in projects.values() {
        let dir = project(&[]);
        let mut paths: Vec<&str> = Vec::new();
        for (place, path, text) in files {
            if paths.contains(&path.as_str()) {
                failures.push(format!("{place}: a second block for `{path}` in this file"));
            }
            paths.push(path);
            write_files(dir.path(), &[(path, text)]);
        }
        let run = dg(dir.path(), &["check", "defs"]);
        assert_no_panic(&run);
        if run.code != 0 {
            let places: Vec<&str> = files.iter().map(|(p, _, _)| p.as_str()).collect();
            failures.push(format!(
                "{}: `dg check defs` fails on these blocks as one project:\n{}",
                places.join(", "),
                describe(&run)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} documentation example(s) are broken:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn block_kinds_follow_the_first_line() {
    assert_eq!(kind("[assets.a]\nshell = \"true\"\n"), Kind::Defs);
    assert_eq!(kind("# a comment\n[assets.a]\n"), Kind::Defs);
    assert_eq!(
        kind("# dg.toml\n[run]\njobs = 2\n"),
        Kind::DgToml { joins_page: false }
    );
    assert_eq!(
        kind("# dg.toml: the project of this page\n[pools]\napi = 2\n"),
        Kind::DgToml { joins_page: true }
    );
    assert_eq!(kind("# fragment\n[resources.x]\n"), Kind::Fragment);
    assert_eq!(
        kind("#:schema .dg/schema/config.json\n# dg.toml\n[run]\n"),
        Kind::DgToml { joins_page: false }
    );
    assert_eq!(kind("# fragment: one table\n"), Kind::Fragment);
    assert_eq!(kind("# fragments are\n"), Kind::Defs);
    assert_eq!(kind("# invalid: a typo\n"), Kind::Invalid);
    assert_eq!(
        kind("# defs/assets.toml\n[assets.a]\n"),
        Kind::ProjectFile("defs/assets.toml".into())
    );
}

#[test]
fn fences_are_found_with_their_lines() {
    let dir = project(&[]);
    let doc = dir.path().join("x.md");
    std::fs::write(
        &doc,
        "# Title\n\n```toml\na = 1\n```\n\n- item\n\n  ```toml\n  b = 2\n  ```\n\n```sh\nc = 3\n```\n\n````toml\nd = \"```\"\n````\n",
    )
    .unwrap();
    let blocks = toml_blocks(&doc);
    let texts: Vec<&str> = blocks.iter().map(|b| b.text.as_str()).collect();
    assert_eq!(texts, ["a = 1\n", "b = 2\n", "d = \"```\"\n"]);
    assert!(blocks[0].place.ends_with("x.md:3"), "{}", blocks[0].place);
}

/// Every test that docs/reliability.md cites as the proof of a promise
/// exists, so the page cannot point at a test that was renamed or removed.
#[test]
fn reliability_cites_tests_that_exist() {
    let doc = std::fs::read_to_string(repo().join("docs/reliability.md")).unwrap();
    let mut sources = String::new();
    for dir in ["src", "tests/integration"] {
        for e in walkdir::WalkDir::new(repo().join(dir))
            .into_iter()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "rs") {
                sources.push_str(&std::fs::read_to_string(e.path()).unwrap());
            }
        }
    }
    let mut cited = 0;
    for (i, part) in doc.split('`').enumerate() {
        let looks_like_a_test = i % 2 == 1
            && part.matches('_').count() >= 2
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if looks_like_a_test {
            cited += 1;
            assert!(
                sources.contains(&format!("fn {part}(")),
                "docs/reliability.md cites `{part}`, which is not a test"
            );
        }
    }
    assert!(cited >= 40, "only {cited} tests cited");
}
