//! The harness of validation's unit tests: write files into a temporary
//! `defs/`, run `load_defs`, and assert a diagnostic's kind together with
//! the exact bytes it points at.

pub(super) use std::ops::Range;

pub(super) use crate::diag::{Diagnostic, Diagnostics, Kind, Severity, Sources};
pub(super) use crate::io::Registry;
pub(super) use crate::model::Defs;
pub(super) use crate::project::Project;

pub(super) use super::load_defs;

pub(super) struct Checked {
    pub(super) sources: Sources,
    pub(super) diags: Diagnostics,
    pub(super) defs: Option<Defs>,
    pub(super) texts: Vec<(String, String)>,
}

pub(super) fn check(files: &[(&str, &str)]) -> Checked {
    check_env(files, &[])
}

pub(super) fn check_env(files: &[(&str, &str)], env: &[(&str, &str)]) -> Checked {
    let dir = tempfile::tempdir().unwrap();
    let defs_dir = dir.path().join("defs");
    for (name, text) in files {
        let path = defs_dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let project = Project::at(dir.path().to_path_buf());
    let lookup = |n: &str| {
        env.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.to_string())
    };
    let mut sources = Sources::default();
    let mut diags = Diagnostics::default();
    let defs = load_defs(
        &project,
        dir.path(),
        &Registry::builtin(),
        &lookup,
        &mut sources,
        &mut diags,
    );
    Checked {
        sources,
        diags,
        defs,
        texts: files
            .iter()
            .map(|(n, t)| (format!("defs/{n}"), t.to_string()))
            .collect(),
    }
}

impl Checked {
    /// The one diagnostic of `kind`; fails when there are none or several.
    pub(super) fn only(&self, kind: Kind) -> &Diagnostic {
        let found: Vec<&Diagnostic> = self.diags.items.iter().filter(|d| d.kind == kind).collect();
        assert_eq!(found.len(), 1, "one {kind:?} in {:#?}", self.diags.items);
        found[0]
    }

    /// The one diagnostic of `kind`, which must point at `at`: (file,
    /// needle, nth) as [`Checked::at`] takes them.
    pub(super) fn located(
        &self,
        kind: Kind,
        (file, needle, nth): (&str, &str, usize),
    ) -> &Diagnostic {
        let d = self.only(kind);
        assert_eq!(self.primary(d), self.at(file, needle, nth));
        d
    }

    /// The one diagnostic of `kind`, which must say `message` and point at
    /// `at`, as [`Checked::located`] takes it.
    pub(super) fn expect(&self, kind: Kind, message: &str, at: (&str, &str, usize)) -> &Diagnostic {
        let d = self.located(kind, at);
        assert_eq!(d.message, message);
        d
    }

    pub(super) fn kinds(&self) -> Vec<Kind> {
        self.diags.items.iter().map(|d| d.kind).collect()
    }

    /// (file as displayed, byte range) of the primary label.
    pub(super) fn primary(&self, d: &Diagnostic) -> (String, Range<usize>) {
        let p = d.primary.as_ref().expect("a located diagnostic");
        (
            self.sources.get(p.span.file).display.clone(),
            p.span.range.clone(),
        )
    }

    pub(super) fn secondary(&self, d: &Diagnostic, i: usize) -> (String, Range<usize>) {
        let s = &d.secondary[i];
        (
            self.sources.get(s.span.file).display.clone(),
            s.span.range.clone(),
        )
    }

    /// (file, range) of the `nth` occurrence (0-based) of `needle` in `file`.
    pub(super) fn at(&self, file: &str, needle: &str, nth: usize) -> (String, Range<usize>) {
        let path = format!("defs/{file}");
        let text = &self
            .texts
            .iter()
            .find(|(n, _)| *n == path)
            .expect("a written file")
            .1;
        let start = text
            .match_indices(needle)
            .nth(nth)
            .unwrap_or_else(|| panic!("{needle:?} #{nth} in {file}"))
            .0;
        (path, start..start + needle.len())
    }
}

pub(super) const DAILY: &str = "[partitions.daily]\ntype = \"daily\"\nstart = \"2024-01-01\"\n";
