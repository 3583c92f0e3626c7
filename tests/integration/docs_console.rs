//! The ```` ```console ```` examples in the documentation are real runs.
//!
//! Every ```` ```console ```` block in `docs/*.md` and `README.md` is run
//! against the `dg` binary (the convention is in CONTRIBUTING.md):
//!
//! - A block is `$ COMMAND` lines, each followed by what it prints (stdout
//!   and stderr together). Each command runs with `sh -c` in the session's
//!   current folder, with this build's `dg` first on `PATH`; `cd DIR` moves
//!   the session. The commands are pinned to one CPU (`taskset`), so `dg
//!   materialize` runs one step at a time, in plan order, and prints its
//!   step lines in an order that does not change from run to run.
//! - A page's blocks run in order, as one session. The first one starts in
//!   an empty folder when its first command is `dg init`, else in the page's
//!   project: the files of its `# defs/PATH.toml` and `# dg.toml: NOTE`
//!   blocks (see `docs.rs`).
//! - An HTML comment on the line before the fence changes that:
//!   `<!-- console: not run: REASON -->` skips the block (the test lists
//!   them), and `<!-- console: session NAME: ITEM, ITEM… -->` starts a
//!   new session in a fresh folder made of the items: `page` (the page's
//!   project), `example` (the repository's `defs/`), `above as PATH` (the
//!   ```` ```toml ```` block above, written at PATH), `NAME=VALUE` (an
//!   environment variable of the session's commands); `empty` for none.
//!   `<!-- console: session NAME -->` goes back to a session of the page.
//!   NAME may be left out (`session: page`). `<!-- console: above into
//!   PATH -->` merges the ```` ```toml ```` block above (say, a changed
//!   asset) into the file PATH of the current session first.
//!
//! Before comparing, [`normalize`] rewrites what differs from run to run:
//! durations, run ids, wall-clock timestamps and temporary paths. A line
//! `…` in the doc stands for any number of lines. A run id that the doc
//! shows and a later command uses (`dg runs show ID`) is replaced by the
//! id of the real run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use crate::docs::{Fence, Kind, documents, fences, kind};
use crate::support::{copy_dir, replace_path, repo, write_files};

/// The files of a page's project: its `# defs/PATH.toml` and
/// `# dg.toml: NOTE` blocks.
fn page_project(fences: &[Fence]) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for f in fences.iter().filter(|f| f.info == "toml") {
        match kind(&f.text) {
            Kind::ProjectFile(path) => files.push((path, f.text.clone())),
            Kind::DgToml { joins_page: true } => files.push(("dg.toml".into(), f.text.clone())),
            _ => {}
        }
    }
    files
}

/// One `$ COMMAND` and the lines the doc says it prints.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

fn steps(text: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for line in text.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            out.push(Step {
                command: command.to_string(),
                expected: Vec::new(),
            });
        } else if let Some(step) = out.last_mut() {
            step.expected.push(line.to_string());
        }
    }
    out
}

/// A shell session: a temporary root, the current folder, its environment,
/// and the run ids of the doc mapped to those of the real runs.
struct Session {
    root: TempDir,
    cwd: PathBuf,
    env: Vec<(String, String)>,
    run_ids: BTreeMap<String, String>,
}

impl Session {
    fn new(items: &str, page: &[(String, String)], above: Option<&Fence>) -> Result<Self, String> {
        let root = TempDir::new().expect("temp dir");
        let mut env = Vec::new();
        for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "empty" {
            } else if item == "page" {
                for (path, text) in page {
                    write_files(root.path(), &[(path, text)]);
                }
            } else if item == "example" {
                copy_dir(&repo().join("defs"), &root.path().join("defs"));
            } else if let Some(path) = item.strip_prefix("above as ") {
                let block = above.ok_or("`above`: there is no ```toml block above")?;
                write_files(root.path(), &[(path.trim(), &block.text)]);
            } else if let Some((name, value)) = item.split_once('=') {
                env.push((name.to_string(), value.to_string()));
            } else {
                return Err(format!("unknown session item `{item}`"));
            }
        }
        let cwd = root.path().to_path_buf();
        Ok(Session {
            root,
            cwd,
            env,
            run_ids: BTreeMap::new(),
        })
    }

    /// Merges the tables of `toml` into the file `path` of the session (a
    /// table of `toml` replaces one of the same name).
    fn merge(&self, path: &str, toml: &str) -> Result<(), String> {
        fn merge(into: &mut toml::Table, from: toml::Table) {
            for (k, v) in from {
                match (into.get_mut(&k), v) {
                    (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
                    (_, v) => {
                        into.insert(k, v);
                    }
                }
            }
        }
        let file = self.root.path().join(path);
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{path}: {e}"))?;
        let mut table: toml::Table = text.parse().map_err(|e| format!("{path}: {e}"))?;
        merge(
            &mut table,
            toml.parse().map_err(|e| format!("the block: {e}"))?,
        );
        let text = toml::to_string(&table).map_err(|e| e.to_string())?;
        std::fs::write(&file, text).map_err(|e| format!("{path}: {e}"))
    }

    /// Runs one command line; returns what it printed, normalized.
    fn run(&mut self, command: &str) -> String {
        let mut command = command.to_string();
        for (doc, real) in &self.run_ids {
            command = command.replace(doc, real);
        }
        if let Some(dir) = command.trim().strip_prefix("cd ") {
            self.cwd = self.cwd.join(dir.trim());
            return String::new();
        }
        let bin = assert_cmd::cargo::cargo_bin("dg");
        let path = format!(
            "{}:{}",
            bin.parent().expect("bin folder").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("taskset")
            .args(["-c", &one_cpu(), "sh", "-c"])
            // One stream, so stdout and stderr interleave as on a terminal.
            .arg(format!("exec 2>&1\n{command}"))
            .current_dir(&self.cwd)
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .env_remove("DG_NOW")
            .env_remove("DG_PROFILE")
            .env_remove("RUST_BACKTRACE")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("GITHUB_ACTIONS")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("taskset (util-linux) and sh run");
        replace_path(
            &String::from_utf8_lossy(&out.stdout),
            self.root.path(),
            "/tmp/dg",
        )
    }
}

/// One CPU that this process may run on (the first of
/// `Cpus_allowed_list`), for `taskset`.
fn one_cpu() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|list| {
            let first = list.trim().split([',', '-']).next()?;
            Some(first.to_string())
        })
        .filter(|cpu| !cpu.is_empty())
        .unwrap_or_else(|| "0".to_string())
}

/// Rewrites what legitimately differs between two runs of one command:
///
/// - a duration: `(7 ms)`, `837 ms` → `N ms`; `in 0.03s` → `in N.NNs`;
/// - a run id `20261126T142358-c2ad7b` → `RUN-ID`;
/// - a wall-clock timestamp `2026-11-26T14:23:31.946Z` → `TIMESTAMP`;
/// - a temporary folder `/tmp/NAME` → `/tmp/dg`.
///
/// Nothing else: keys, counts, statuses and messages must match.
fn normalize(line: &str) -> String {
    let c: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let digits = |from: usize| {
        c[from.min(c.len())..]
            .iter()
            .take_while(|ch| ch.is_ascii_digit())
            .count()
    };
    let is_at = |from: usize, s: &str| {
        c[from.min(c.len())..]
            .iter()
            .copied()
            .take(s.chars().count())
            .eq(s.chars())
    };
    let hex = |from: usize| {
        c[from.min(c.len())..]
            .iter()
            .take_while(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase())
            .count()
    };
    let word_start = |i: usize| i == 0 || !c[i - 1].is_ascii_alphanumeric();
    while i < c.len() {
        let d = digits(i);
        // A run id: 8 digits, T, 6 digits, -, 6 hex digits.
        if word_start(i)
            && d == 8
            && c.get(i + 8) == Some(&'T')
            && digits(i + 9) == 6
            && c.get(i + 15) == Some(&'-')
            && hex(i + 16) >= 6
        {
            out.push_str("RUN-ID");
            i += 22;
            continue;
        }
        // A timestamp with milliseconds: 2026-11-26T14:23:31.946Z.
        if word_start(i)
            && d == 4
            && c.get(i + 4) == Some(&'-')
            && c.get(i + 10) == Some(&'T')
            && c.get(i + 19) == Some(&'.')
        {
            let frac = digits(i + 20);
            if frac > 0 && c.get(i + 20 + frac) == Some(&'Z') {
                out.push_str("TIMESTAMP");
                i += 21 + frac;
                continue;
            }
        }
        // A duration: `N ms`, or `in N.NNs`.
        if word_start(i)
            && d > 0
            && is_at(i + d, " ms")
            && !c.get(i + d + 3).is_some_and(|ch| ch.is_alphanumeric())
        {
            out.push_str("N ms");
            i += d + 3;
            continue;
        }
        if word_start(i) && is_at(i, "in ") && digits(i + 3) > 0 {
            let a = digits(i + 3);
            if c.get(i + 3 + a) == Some(&'.') {
                let b = digits(i + 4 + a);
                if b > 0 && c.get(i + 4 + a + b) == Some(&'s') {
                    out.push_str("in N.NNs");
                    i += 5 + a + b;
                    continue;
                }
            }
        }
        // A temporary folder.
        if is_at(i, "/tmp/") {
            let name = c[i + 5..]
                .iter()
                .take_while(|&&ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
                .count();
            out.push_str("/tmp/dg");
            i += 5 + name;
            continue;
        }
        out.push(c[i]);
        i += 1;
    }
    out.trim_end().to_string()
}

/// The run ids in a line, in order.
fn run_ids(line: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, _) in line.char_indices() {
        let rest = &line[i..];
        if (i == 0 || !line.as_bytes()[i - 1].is_ascii_alphanumeric())
            && let Some(id) = rest.get(..22)
            && normalize(id) == "RUN-ID"
        {
            ids.push(id.to_string());
        }
    }
    ids
}

/// Whether `actual` matches `expected`, where an `…` line in `expected`
/// stands for any number of lines. On a match, the pairs of lines matched
/// one to one (for the run ids).
fn lines_match<'a>(
    expected: &'a [String],
    actual: &'a [String],
) -> Option<Vec<(&'a str, &'a str)>> {
    match expected.split_first() {
        None => actual.is_empty().then(Vec::new),
        Some((e, rest)) if e.trim() == "…" => {
            (0..=actual.len()).find_map(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((e, rest)) => {
            let (a, actual_rest) = actual.split_first()?;
            if normalize(e) != normalize(a) {
                return None;
            }
            let mut pairs = lines_match(rest, actual_rest)?;
            pairs.insert(0, (e.as_str(), a.as_str()));
            Some(pairs)
        }
    }
}

#[test]
fn every_console_example_in_the_docs_runs() {
    let mut ran = 0;
    let mut not_run: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for doc in documents() {
        let all = fences(&doc);
        let page = page_project(&all);
        let mut sessions: BTreeMap<String, Session> = BTreeMap::new();
        let mut current: Option<String> = None;
        let mut above: Option<&Fence> = None;
        for f in &all {
            if f.info == "toml" {
                above = Some(f);
            }
            if f.info != "console" {
                continue;
            }
            let directive = f.directive.as_deref().unwrap_or("");
            if let Some(reason) = directive.strip_prefix("not run:") {
                not_run.push(format!("{}: {}", f.place, reason.trim()));
                continue;
            }
            let steps = steps(&f.text);
            if let Some(rest) = directive.strip_prefix("session") {
                let (name, items) = match rest.split_once(':') {
                    Some((name, items)) => (name.trim(), Some(items)),
                    None => (rest.trim(), None),
                };
                match items {
                    Some(items) => match Session::new(items, &page, above) {
                        Ok(s) => {
                            sessions.insert(name.to_string(), s);
                        }
                        Err(e) => {
                            failures.push(format!("{}: {e}", f.place));
                            continue;
                        }
                    },
                    None if !sessions.contains_key(name) => {
                        failures.push(format!("{}: no session `{name}` above", f.place));
                        continue;
                    }
                    None => {}
                }
                current = Some(name.to_string());
            } else if let Some(path) = directive.strip_prefix("above into ") {
                let (Some(name), Some(block)) = (&current, above) else {
                    failures.push(format!(
                        "{}: `above into`: no session or no block above",
                        f.place
                    ));
                    continue;
                };
                let session = sessions.get_mut(name).expect("the current session exists");
                if let Err(e) = session.merge(path.trim(), &block.text) {
                    failures.push(format!("{}: `above into`: {e}", f.place));
                    continue;
                }
            } else if !directive.is_empty() {
                failures.push(format!("{}: unknown directive `{directive}`", f.place));
                continue;
            } else if current.is_none() {
                let starts_with_init = steps
                    .first()
                    .is_some_and(|s| s.command.starts_with("dg init"));
                let items = if starts_with_init { "empty" } else { "page" };
                let s = Session::new(items, &page, None).expect("valid items");
                sessions.insert(String::new(), s);
                current = Some(String::new());
            }
            let session = sessions
                .get_mut(current.as_deref().expect("a session"))
                .expect("the current session exists");
            ran += 1;
            for step in &steps {
                let printed = session.run(&step.command);
                if printed.contains("panicked") || printed.contains("RUST_BACKTRACE") {
                    failures.push(format!(
                        "{}: `$ {}` panicked:\n{printed}",
                        f.place, step.command
                    ));
                    continue;
                }
                // Trailing blank lines do not show in a block.
                let actual: Vec<String> = printed.trim_end().lines().map(str::to_string).collect();
                let mut expected = step.expected.clone();
                while expected.last().is_some_and(|l| l.trim().is_empty()) {
                    expected.pop();
                }
                match lines_match(&expected, &actual) {
                    Some(pairs) => {
                        for (e, a) in pairs {
                            for (doc_id, real) in run_ids(e).into_iter().zip(run_ids(a)) {
                                session.run_ids.insert(doc_id, real);
                            }
                        }
                    }
                    None => failures.push(format!(
                        "{}: `$ {}` printed:\n{}\n--- the doc says:\n{}",
                        f.place,
                        step.command,
                        printed.trim_end(),
                        step.expected.join("\n")
                    )),
                }
            }
        }
    }
    eprintln!("{ran} console blocks ran; not run:\n{}", not_run.join("\n"));
    assert!(ran >= 40, "only {ran} console blocks ran");
    // The blocks that cannot run stay few; each says why in its comment.
    assert!(
        not_run.len() <= 11,
        "{} console blocks are marked `not run`",
        not_run.len()
    );
    assert!(
        failures.is_empty(),
        "{} console example(s) do not match dg:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn console_normalizing_keeps_content() {
    assert_eq!(
        normalize("✓ events[2024-01-02] (7 ms)"),
        "✓ events[2024-01-02] (N ms)"
    );
    assert_eq!(
        normalize("✓ 6 succeeded, 0 failed, 0 skipped in 0.03s (run 20261126T142358-c2ad7b)"),
        "✓ 6 succeeded, 0 failed, 0 skipped in N.NNs (run RUN-ID)"
    );
    assert_eq!(
        normalize("20261126T142331-292c82  success      2026-11-26T14:23:31.946Z  steps=52"),
        "RUN-ID  success      TIMESTAMP  steps=52"
    );
    assert_eq!(
        normalize("at /tmp/gs/.dg/storage/a.csv (413 bytes)"),
        "at /tmp/dg/.dg/storage/a.csv (413 bytes)"
    );
    // Dates of partitions and `--now` instants are content.
    assert_eq!(
        normalize("Plan at 2022-01-10T00:00:00+00:00: 26 steps"),
        "Plan at 2022-01-10T00:00:00+00:00: 26 steps"
    );
    assert_eq!(normalize("retrying in 200ms"), "retrying in 200ms");
    let lines = |s: &str| s.lines().map(str::to_string).collect::<Vec<_>>();
    assert!(lines_match(&lines("a\n…\nd"), &lines("a\nb\nc\nd")).is_some());
    assert!(lines_match(&lines("a\n…\nd"), &lines("a\nd")).is_some());
    assert!(lines_match(&lines("a\n…\nd"), &lines("a\nb")).is_none());
    assert_eq!(
        run_ids("x 20261126T142358-c2ad7b y 20261126T142358-6d302c"),
        ["20261126T142358-c2ad7b", "20261126T142358-6d302c"]
    );
}
