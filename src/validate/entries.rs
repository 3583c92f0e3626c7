//! Pass 1 of validation: the `[group.NAME]` entries of every file, with
//! each file's `[defaults]` and the resources of `dg.toml`'s profiles.
//!
//! An [`Entry`] is a name, where it is written and its raw value; the later
//! passes turn entries into model values.

use std::collections::HashMap;

use toml::de::DeValue;

use crate::diag::{Diagnostic, FileId, Kind, Span};
use crate::load::{RawFile, Reader, Str, Value};

use super::Validator;
use super::assets::check_asset_key;

pub(crate) const TOP: &[&str] = &["partitions", "resources", "assets", "jobs"];

/// `[defaults]` of one definitions file: applied to that file's assets; an
/// asset's own field wins (tags are merged, the asset's own winning).
pub(super) struct FileDefaults<'f, 'i> {
    pub(super) key_prefix: Option<String>,
    pub(super) group: Option<Str>,
    pub(super) io_manager: Option<Str>,
    pub(super) partitions: Option<&'f Value<'i>>,
    pub(super) tags: Vec<(Str, Str)>,
}

pub(crate) const DEFAULTS_FIELDS: &[&str] =
    &["key_prefix", "group", "io_manager", "partitions", "tags"];

impl Validator<'_> {
    pub(super) fn file_defaults<'f, 'i>(&mut self, f: &'f RawFile<'i>) -> FileDefaults<'f, 'i> {
        let mut fd = FileDefaults {
            key_prefix: None,
            group: None,
            io_manager: None,
            partitions: None,
            tags: Vec::new(),
        };
        let Some(v) = f.root.get("defaults") else {
            return fd;
        };
        let d = &mut *self.diags;
        let Some(r) = Reader::of_value(f.file, v, "`[defaults]`", DEFAULTS_FIELDS, d) else {
            return fd;
        };
        if let Some(p) = r.str("key_prefix", d) {
            let prefix = p.value.trim_matches('/').to_string();
            match check_asset_key(&prefix) {
                Some(problem) => d.push(
                    Diagnostic::error(
                        Kind::InvalidKey,
                        format!("invalid `key_prefix` `{}` in `[defaults]`", p.value),
                    )
                    .at(&p.span, problem)
                    .help("a key prefix is `/`-separated segments of letters, digits, `_`, `-` and `.`, e.g. `raw` or `warehouse/raw`"),
                ),
                None => fd.key_prefix = Some(prefix),
            }
        }
        fd.group = r.str("group", d);
        fd.io_manager = r.str("io_manager", d);
        fd.partitions = r.get("partitions");
        fd.tags = r.str_map("tags", d).unwrap_or_default();
        fd
    }
}

/// `[profiles.NAME.resources.KEY]` of `dg.toml`, per profile.
pub(super) fn profile_entries<'f, 'i>(
    config: Option<&'f RawFile<'i>>,
) -> Vec<(String, Vec<Entry<'f, 'i>>)> {
    let mut out = Vec::new();
    let Some(f) = config else { return out };
    let Some(DeValue::Table(profiles)) = f.root.get("profiles").map(|v| v.get_ref()) else {
        return out;
    };
    for (pk, pv) in profiles.iter() {
        let DeValue::Table(p) = pv.get_ref() else {
            continue;
        };
        let Some(DeValue::Table(rs)) = p.get("resources").map(|v| v.get_ref()) else {
            continue;
        };
        let entries = rs
            .iter()
            .map(|(k, v)| Entry {
                name: k.get_ref().to_string(),
                span: Span::new(f.file, k.span()),
                file: f.file,
                value: v,
            })
            .collect();
        out.push((pk.get_ref().to_string(), entries));
    }
    out
}

/// One `[group.name]` entry found in some file.
pub(super) struct Entry<'f, 'i> {
    pub(super) name: String,
    pub(super) span: Span,
    pub(super) file: FileId,
    pub(super) value: &'f Value<'i>,
}

impl Validator<'_> {
    /// Pass 1: the entries of each group of [`TOP`] in every file (asset
    /// names with their file's `key_prefix`), and each file's defaults. A
    /// name defined twice (in any files) is reported; the first one stays.
    pub(super) fn entries<'f, 'i>(
        &mut self,
        files: &'f [RawFile<'i>],
    ) -> (
        [Vec<Entry<'f, 'i>>; 4],
        HashMap<FileId, FileDefaults<'f, 'i>>,
    ) {
        let mut groups: [Vec<Entry<'_, '_>>; 4] = Default::default();
        let mut defaults: HashMap<FileId, FileDefaults<'_, '_>> = HashMap::new();
        for f in files {
            let fd = self.file_defaults(f);
            let prefix = fd.key_prefix.clone();
            defaults.insert(f.file, fd);
            for (k, _) in f.root.iter() {
                let key: &str = k.get_ref();
                if !TOP.contains(&key) && key != "defaults" {
                    self.diags.push(
                        Diagnostic::error(
                            Kind::UnknownField,
                            format!("unknown top-level table `{key}`"),
                        )
                        .at(&Span::new(f.file, k.span()), "unknown table")
                        .help(match crate::diag::did_you_mean(key, TOP.iter().copied()) {
                            Some(c) => format!("did you mean `{c}`?"),
                            None => "a definitions file holds only `[partitions.NAME]`, `[resources.NAME]`, `[assets.NAME]` and `[jobs.NAME]` tables".into(),
                        }),
                    );
                }
            }
            // Unknown tables were reported just above.
            let top = Reader::new(f.file, &f.root, "a definitions file");
            for (gi, group) in TOP.iter().enumerate() {
                let Some((table, _)) = top.table(group, self.diags) else {
                    continue;
                };
                for (k, v) in table.iter() {
                    let name: &str = k.get_ref();
                    groups[gi].push(Entry {
                        name: match &prefix {
                            Some(p) if *group == "assets" => format!("{p}/{name}"),
                            _ => name.to_string(),
                        },
                        span: Span::new(f.file, k.span()),
                        file: f.file,
                        value: v,
                    });
                }
            }
        }
        for (gi, group) in groups.iter_mut().enumerate() {
            let mut seen: HashMap<String, Span> = HashMap::new();
            let singular = ["partitions definition", "resource", "asset", "job"][gi];
            group.retain(|e| match seen.get(&e.name) {
                Some(first) => {
                    self.diags.push(
                        Diagnostic::error(
                            Kind::Duplicate,
                            format!("{singular} `{}` is defined twice", e.name),
                        )
                        .at(&e.span, "defined again here")
                        .also(first, "first defined here")
                        .help(format!("rename one of them; {singular} names are shared by every file in the definitions folder")),
                    );
                    false
                }
                None => {
                    seen.insert(e.name.clone(), e.span.clone());
                    true
                }
            });
        }
        (groups, defaults)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn duplicate_names_show_both_places() {
        let a = "[assets.orders]\nshell = \"true\"\n";
        let b = "[assets.other]\nshell = \"true\"\n\n[assets.orders]\nsql = \"SELECT 1\"\n";
        let c = check(&[("a.toml", a), ("b.toml", b)]);
        let message = "asset `orders` is defined twice";
        let d = c.expect(Kind::Duplicate, message, ("b.toml", "orders", 0));
        assert_eq!(c.secondary(d, 0), c.at("a.toml", "orders", 0));
    }

    #[test]
    fn unknown_top_level_table() {
        let src = "[asset.a]\nshell = \"true\"\n";
        let c = check(&[("a.toml", src)]);
        let d = c.expect(
            Kind::UnknownField,
            "unknown top-level table `asset`",
            ("a.toml", "asset", 0),
        );
        assert_eq!(d.help.as_deref(), Some("did you mean `assets`?"));
    }
}
