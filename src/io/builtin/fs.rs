//! `type = "fs"`: one file per partition under `base_dir`.
//!
//! Layout: `<base_dir>/<asset key segments>.<ext>` for an unpartitioned
//! asset, `<base_dir>/<asset key segments>/<partition key>.<ext>` for a
//! partitioned one, and one folder level per dimension but the last for a
//! multi-partitioned one (`…/<first dim key>/<second dim key>.<ext>`).
//! Partition keys are percent-encoded ([`encode_key`]) so that no key can
//! name another folder; an encoded key never starts with `.`, so names
//! starting with `.` (the temporary files of writes in progress) are never
//! partitions.
//!
//! Writes are atomic: the new file is written (or moved) beside the final
//! path under a temporary name, flushed to disk, then renamed over it. A
//! step's output file already in the stored format is moved, never read.

use std::fs::File;
use std::io::{ErrorKind, Write as _};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use indexmap::IndexMap;

use crate::io::path_template::PathTemplate;
use crate::io::{
    Data, Format, FsConfig, InputContext, IoManager, Loaded, OutputContext, PartitionRef,
    ResourceCx, Stored, table,
};
pub use crate::names::encode_key;

pub struct FsManager {
    pub base_dir: PathBuf,
    pub format: crate::io::Format,
    /// `path`: where below `base_dir` an output goes; `None` is the default layout.
    pub path: Option<PathTemplate>,
}

impl FsManager {
    pub fn new(config: FsConfig, cx: &ResourceCx) -> anyhow::Result<Self> {
        let base_dir = match &config.base_dir {
            Some(d) => cx.project_root.join(d),
            None => cx.state_dir.join("storage"),
        };
        let path = match &config.path {
            Some(p) => Some(PathTemplate::parse(p).map_err(|e| anyhow!("{}", e.message))?),
            None => None,
        };
        Ok(FsManager {
            base_dir,
            format: config.format,
            path,
        })
    }

    /// Where an output (partition) is stored.
    pub fn path_for(&self, ctx: &OutputContext) -> anyhow::Result<PathBuf> {
        if let Some(t) = &self.path {
            let rel = t.render(&ctx.asset_key, ctx.partition.as_ref(), self.format)?;
            return Ok(self.base_dir.join(rel));
        }
        Ok(self.base_dir.join(relative_path(
            &ctx.asset_key,
            ctx.partition.as_ref(),
            self.format,
        )?))
    }

    /// Moves or converts `data` into place at `path`; the rows when known.
    fn store(
        &self,
        ctx: &OutputContext,
        data: &Data,
        path: &Path,
        tmp: &Path,
    ) -> anyhow::Result<Option<u64>> {
        let tabular = |f: Format| f != Format::File;
        match data {
            Data::File { path: src, format } if *format == self.format => {
                let meta = std::fs::metadata(src)
                    .with_context(|| format!("cannot read `{}`", src.display()))?;
                if meta.is_dir() {
                    bail!(
                        "`{}` is a folder: the `fs` manager stores one file",
                        src.display()
                    );
                }
                // The footer is cheap to read and says the file is whole.
                let rows = match self.format {
                    Format::Parquet => Some(table::parquet_rows(src)?),
                    _ => None,
                };
                sync_file(src)?;
                seal(src);
                match std::fs::rename(src, path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::CrossesDevices => {
                        std::fs::copy(src, tmp).with_context(|| {
                            format!("cannot copy `{}` to `{}`", src.display(), tmp.display())
                        })?;
                        commit(tmp, path)?;
                        let _ = std::fs::remove_file(src);
                        return Ok(rows);
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("cannot move `{}` to `{}`", src.display(), path.display())
                        });
                    }
                }
                sync_dir(path);
                Ok(rows)
            }
            Data::File { format, .. } if tabular(*format) != tabular(self.format) => {
                Err(self.mismatch(ctx, format.name()))
            }
            Data::Table(_) if !tabular(self.format) => Err(self.mismatch(ctx, "a table")),
            Data::Bytes(_) if tabular(self.format) => Err(self.mismatch(ctx, "opaque bytes")),
            Data::File { path: src, format } => {
                let t = table::read(src, *format)?;
                table::write(&t, tmp, self.format)?;
                commit(tmp, path)?;
                Ok(Some(t.num_rows() as u64))
            }
            Data::Table(t) => {
                table::write(t, tmp, self.format)?;
                commit(tmp, path)?;
                Ok(Some(t.num_rows() as u64))
            }
            Data::Bytes(b) => {
                let mut f = File::create(tmp)
                    .with_context(|| format!("cannot create `{}`", tmp.display()))?;
                f.write_all(b)
                    .with_context(|| format!("cannot write `{}`", tmp.display()))?;
                drop(f);
                commit(tmp, path)?;
                Ok(None)
            }
        }
    }

    /// Puts `data` at `tmp`, not flushed, for [`IoManager::handle_outputs`];
    /// the rows when known.
    fn stage(&self, ctx: &OutputContext, data: &Data, tmp: &Path) -> anyhow::Result<Option<u64>> {
        let tabular = |f: Format| f != Format::File;
        match data {
            Data::File { path: src, format } if *format == self.format && src.is_file() => {
                let rows = match self.format {
                    Format::Parquet => Some(table::parquet_rows(src)?),
                    _ => None,
                };
                if std::fs::rename(src, tmp).is_err() {
                    std::fs::copy(src, tmp).with_context(|| {
                        format!("cannot copy `{}` to `{}`", src.display(), tmp.display())
                    })?;
                }
                Ok(rows)
            }
            Data::File { path: src, format } if tabular(*format) && tabular(self.format) => {
                let t = table::read(src, *format)?;
                table::write(&t, tmp, self.format)?;
                Ok(Some(t.num_rows() as u64))
            }
            Data::Table(t) if tabular(self.format) => {
                table::write(t, tmp, self.format)?;
                Ok(Some(t.num_rows() as u64))
            }
            Data::File { format, .. } => Err(self.mismatch(ctx, format.name())),
            Data::Table(_) => Err(self.mismatch(ctx, "a table")),
            Data::Bytes(_) => Err(self.mismatch(ctx, "opaque bytes")),
        }
    }

    fn mismatch(&self, ctx: &OutputContext, what: &str) -> anyhow::Error {
        if self.format == Format::File {
            anyhow!(
                "resource `{}` stores opaque files (`format = \"file\"`) but `{}` produced {what}: \
                 give the asset `format = \"file\"`, or store it with a csv, jsonl or parquet manager",
                ctx.resource_key,
                ctx.asset_key
            )
        } else {
            anyhow!(
                "resource `{}` stores {} tables but `{}` produced {what} (`file` format): \
                 give the asset a tabular format, or store it with a manager whose format is `file`",
                ctx.resource_key,
                self.format.name(),
                ctx.asset_key
            )
        }
    }
}

impl IoManager for FsManager {
    fn handle_output(&self, ctx: &OutputContext, data: Data) -> anyhow::Result<Stored> {
        let path = self.path_for(ctx)?;
        let dir = path.parent().expect("a stored path has a parent");
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder `{}`", dir.display()))?;
        let tmp = temp_path(&path, &ctx.run_id);
        let rows = match self.store(ctx, &data, &path, &tmp) {
            Ok(rows) => rows,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let bytes = std::fs::metadata(&path)
            .with_context(|| format!("cannot read `{}`", path.display()))?
            .len();
        ctx.log.info(format_args!(
            "stored `{}`{} at {} ({bytes} bytes)",
            ctx.asset_key,
            ctx.partition
                .as_ref()
                .map(|p| format!(" partition `{}`", p.key))
                .unwrap_or_default(),
            path.display()
        ));
        Ok(Stored {
            path: Some(path.to_string_lossy().into_owned()),
            rows,
            bytes: Some(bytes),
        })
    }

    /// Every partition goes to a temporary file next to its place first;
    /// those are flushed in parallel, renamed into place in order, and each
    /// folder is flushed once: far fewer waits on the disk than one
    /// [`handle_output`](IoManager::handle_output) per partition, with the
    /// same atomicity per partition.
    fn handle_outputs(&self, items: Vec<(OutputContext, Data)>) -> anyhow::Result<Vec<Stored>> {
        let key = |ctx: &OutputContext| {
            ctx.partition
                .as_ref()
                .map(|p| p.key.clone())
                .unwrap_or_default()
        };
        let mut staged: Vec<(OutputContext, PathBuf, PathBuf, Option<u64>)> =
            Vec::with_capacity(items.len());
        let clean = |staged: &[(OutputContext, PathBuf, PathBuf, Option<u64>)]| {
            for (_, _, tmp, _) in staged {
                let _ = std::fs::remove_file(tmp);
            }
        };
        for (ctx, data) in items {
            let stage = || -> anyhow::Result<(PathBuf, PathBuf, Option<u64>)> {
                let path = self.path_for(&ctx)?;
                let dir = path.parent().expect("a stored path has a parent");
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create the folder `{}`", dir.display()))?;
                let tmp = temp_path(&path, &ctx.run_id);
                match self.stage(&ctx, &data, &tmp) {
                    Ok(rows) => Ok((path, tmp, rows)),
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        Err(e)
                    }
                }
            };
            match stage() {
                Ok((path, tmp, rows)) => staged.push((ctx, path, tmp, rows)),
                Err(e) => {
                    clean(&staged);
                    return Err(e.context(format!("partition `{}`", key(&ctx))));
                }
            }
        }
        // Flushed in parallel: the file system commits them together.
        let threads = staged.len().clamp(1, 16);
        let chunk = staged.len().div_ceil(threads).max(1);
        let flushed: anyhow::Result<()> = std::thread::scope(|s| {
            let handles: Vec<_> = staged
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || -> anyhow::Result<()> {
                        for (_, _, tmp, _) in part {
                            sync_file(tmp)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow!("flushing the partitions stopped unexpectedly"))??;
            }
            Ok(())
        });
        if let Err(e) = flushed {
            clean(&staged);
            return Err(e);
        }
        let mut out = Vec::with_capacity(staged.len());
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (n, (ctx, path, tmp, rows)) in staged.iter().enumerate() {
            seal(tmp);
            if let Err(e) = std::fs::rename(tmp, path) {
                clean(&staged[n..]);
                for d in &dirs {
                    let _ = File::open(d).and_then(|d| d.sync_all());
                }
                return Err(anyhow::Error::from(e).context(format!(
                    "partition `{}`: cannot rename `{}` to `{}`",
                    key(ctx),
                    tmp.display(),
                    path.display()
                )));
            }
            let dir = path.parent().expect("a stored path has a parent");
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
            let bytes = std::fs::metadata(path).map(|m| m.len()).ok();
            ctx.log.info(format_args!(
                "stored `{}` partition `{}` at {} ({} bytes)",
                ctx.asset_key,
                key(ctx),
                path.display(),
                bytes.unwrap_or(0)
            ));
            out.push(Stored {
                path: Some(path.to_string_lossy().into_owned()),
                rows: *rows,
                bytes,
            });
        }
        for d in &dirs {
            let _ = File::open(d).and_then(|d| d.sync_all());
        }
        Ok(out)
    }

    fn load_input(&self, ctx: &InputContext) -> anyhow::Result<Loaded> {
        let load = |p: Option<&PartitionRef>| -> anyhow::Result<Data> {
            let out = ctx.upstream_partition(p);
            let path = self.path_for(&out)?;
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => Ok(Data::File {
                    path,
                    format: self.format,
                }),
                Ok(_) => bail!("`{}` is not a file", path.display()),
                Err(e) if e.kind() == ErrorKind::NotFound => Err(not_materialized(&out, &path)),
                Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
            }
        };
        if !ctx.upstream_partitioned {
            return Ok(Loaded::Single(load(None)?));
        }
        let mut out = IndexMap::with_capacity(ctx.partitions.len());
        for p in &ctx.partitions {
            out.insert(p.key.clone(), load(Some(p))?);
        }
        Ok(Loaded::Partitions(out))
    }

    fn exists(&self, ctx: &OutputContext) -> anyhow::Result<bool> {
        let path = self.path_for(ctx)?;
        match std::fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
        }
    }
}

fn not_materialized(out: &OutputContext, path: &Path) -> anyhow::Error {
    let (what, flag) = match &out.partition {
        Some(p) => (
            format!(" partition `{}`", p.key),
            format!(" --partition {}", shell_word(&p.key)),
        ),
        None => (String::new(), String::new()),
    };
    anyhow!(
        "`{}`{what} has not been materialized: `{}` does not exist\n\
         hint: materialize it with `dg materialize --select {}{flag}`",
        out.asset_key,
        path.display(),
        shell_word(&out.asset_key)
    )
}

/// `s` as one shell word, quoted when it needs to be.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=+,@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The path of an output below `base_dir`: asset key segments, then the
/// partition's encoded key (one folder level per dimension but the last),
/// then the format's extension. An error if any part could name anything
/// but a plain file name (empty, `.`, `..`, a separator).
pub fn relative_path(
    asset_key: &str,
    partition: Option<&PartitionRef>,
    format: Format,
) -> anyhow::Result<PathBuf> {
    let mut names: Vec<String> = asset_key.split('/').map(str::to_string).collect();
    for n in &names {
        if n.is_empty() || n == "." || n == ".." {
            bail!(
                "asset key `{asset_key}` has an empty, `.` or `..` segment: it cannot be stored as a path"
            );
        }
    }
    match partition {
        Some(p) if !p.dims.is_empty() => names.extend(p.dims.iter().map(|(_, k)| encode_key(k))),
        Some(p) => names.push(encode_key(&p.key)),
        None => {}
    }
    if let Some(p) = partition
        && (p.key.is_empty() || p.dims.iter().any(|(_, k)| k.is_empty()))
    {
        bail!("`{asset_key}`: an empty partition key cannot be stored as a path");
    }
    names
        .last_mut()
        .expect("split yields one name")
        .push_str(format.extension());
    let mut path = PathBuf::new();
    for n in &names {
        let mut parts = Path::new(n).components();
        match (parts.next(), parts.next()) {
            (Some(Component::Normal(c)), None)
                if c == n.as_str() && !n.contains('\\') && !n.contains('\0') =>
            {
                path.push(c)
            }
            _ => bail!(
                "`{asset_key}`: `{n}` is not a plain file name: it cannot be stored as a path"
            ),
        }
    }
    Ok(path)
}

/// `.<final name>.tmp-<run id>-<random>` beside `path`.
fn temp_path(path: &Path, run_id: &str) -> PathBuf {
    use std::hash::{BuildHasher, Hasher};
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let mut end = name.len().min(100);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let run: String = run_id
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    path.with_file_name(format!(".{}.tmp-{run}-{:016x}", &name[..end], h.finish()))
}

/// Flushes `tmp` to disk and renames it over `path`.
fn commit(tmp: &Path, path: &Path) -> anyhow::Result<()> {
    sync_file(tmp)?;
    seal(tmp);
    std::fs::rename(tmp, path)
        .with_context(|| format!("cannot rename `{}` to `{}`", tmp.display(), path.display()))?;
    sync_dir(path);
    Ok(())
}

/// Stored partitions are read-only: steps get them as inputs, and a step
/// that writes to an input must not change what is stored. (Replacing a
/// partition renames a new file over it, which needs no write permission.)
fn seal(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444));
}

fn sync_file(path: &Path) -> anyhow::Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot flush `{}` to disk", path.display()))
}

/// Makes a rename in `path`'s folder durable (best effort: not every file
/// system can sync a folder).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Log;
    use crate::names::decode_key;
    use std::sync::Arc;

    fn manager(dir: &Path, format: Format) -> FsManager {
        FsManager {
            base_dir: dir.join("storage"),
            format,
            path: None,
        }
    }

    fn part(key: &str) -> PartitionRef {
        PartitionRef {
            key: key.to_string(),
            dims: Vec::new(),
            window: None,
        }
    }

    fn octx(asset: &str, partition: Option<PartitionRef>) -> OutputContext {
        OutputContext {
            asset_key: asset.to_string(),
            partition,
            format: Format::Csv,
            resource_key: "io_manager".to_string(),
            metadata: serde_json::Map::new(),
            run_id: "run-1".to_string(),
            step_id: "step".to_string(),
            log: Log::default(),
        }
    }

    fn ictx(asset: &str, partitioned: bool, partitions: Vec<PartitionRef>) -> InputContext {
        InputContext {
            input_name: "up".to_string(),
            asset_key: "down".to_string(),
            upstream_output: octx(asset, None),
            upstream_partitioned: partitioned,
            partitions,
            format: Format::Csv,
            resource_key: "io_manager".to_string(),
            run_id: "run-1".to_string(),
            step_id: "step".to_string(),
            log: Log::default(),
        }
    }

    fn file(dir: &Path, name: &str, text: &str, format: Format) -> Data {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        Data::File { path, format }
    }

    /// Names in a folder (to see that no temporary file is left behind).
    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn layout() {
        let rel = |asset: &str, p: Option<PartitionRef>, f: Format| {
            relative_path(asset, p.as_ref(), f)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        assert_eq!(rel("raw/events", None, Format::Csv), "raw/events.csv");
        assert_eq!(rel("a", None, Format::File), "a");
        assert_eq!(
            rel("a", Some(part("2024-01-01")), Format::Parquet),
            "a/2024-01-01.parquet"
        );
        assert_eq!(
            rel("a/b", Some(part("x:y|z")), Format::Jsonl),
            "a/b/x:y|z.jsonl"
        );
        assert_eq!(
            rel("a", Some(part("../../x")), Format::File),
            "a/%2E.%2F..%2Fx"
        );
        let multi = PartitionRef {
            key: "2024-01-01|us/east".to_string(),
            dims: vec![
                ("date".to_string(), "2024-01-01".to_string()),
                ("region".to_string(), "us/east".to_string()),
            ],
            window: None,
        };
        assert_eq!(
            rel("m", Some(multi.clone()), Format::Csv),
            "m/2024-01-01/us%2Feast.csv"
        );

        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path(), Format::Csv);
        assert_eq!(
            m.path_for(&octx("m", Some(multi))).unwrap(),
            dir.path().join("storage/m/2024-01-01/us%2Feast.csv")
        );
        for bad in ["", "a//b", "../x", "a/..", "/abs", "a/./b"] {
            assert!(relative_path(bad, None, Format::Csv).is_err(), "{bad}");
        }
        assert!(relative_path("a", Some(&part("")), Format::Csv).is_err());
    }

    #[test]
    fn key_encoding() {
        assert_eq!(encode_key("2024-01-01T00:00"), "2024-01-01T00:00");
        assert_eq!(encode_key("a|b:c"), "a|b:c");
        assert_eq!(encode_key("."), "%2E");
        assert_eq!(encode_key(".."), "%2E.");
        assert_eq!(encode_key(".hidden.x"), "%2Ehidden.x");
        assert_eq!(encode_key("50%/a\\b\0\n"), "50%25%2Fa%5Cb%00%0A");
        assert_eq!(encode_key("日本 ü"), "日本 ü");
        assert_eq!(decode_key("%2E.%2F..%2Fx").as_deref(), Some("../../x"));
        assert_eq!(decode_key("%FF"), None);
    }

    proptest::proptest! {
        #[test]
        fn keys_stay_under_base_dir(
            key in proptest::prop_oneof![
                proptest::arbitrary::any::<String>(),
                "[./\\\\%a\u{0}\n]{0,8}",
                proptest::strategy::Just("../../x".to_string()),
            ],
            second in "[./\\\\%ü]{0,4}",
            asset in "[a./]{0,6}",
        ) {
            proptest::prop_assert_eq!(decode_key(&encode_key(&key)), Some(key.clone()));
            let enc = encode_key(&key);
            proptest::prop_assert!(!enc.contains('/') && !enc.contains('\\') && !enc.starts_with('.'));
            let base = Path::new("/base");
            let multi = PartitionRef {
                key: format!("{key}|{second}"),
                dims: vec![("a".into(), key.clone()), ("b".into(), second.clone())],
                window: None,
            };
            for asset in ["x/y", asset.as_str()] {
                for p in [None, Some(part(&key)), Some(multi.clone())] {
                    for f in [Format::Csv, Format::File] {
                        if let Ok(rel) = relative_path(asset, p.as_ref(), f) {
                            let full = base.join(&rel);
                            proptest::prop_assert!(full.starts_with(base));
                            proptest::prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
                            let depth = asset.split('/').count()
                                + p.as_ref().map_or(0, |p| p.dims.len().max(1));
                            proptest::prop_assert_eq!(rel.components().count(), depth);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn store_moves_a_file_in_the_same_format() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path(), Format::Csv);
        let data = file(dir.path(), "out.csv", "a,b\n1,2\n", Format::Csv);
        let Data::File { path: src, .. } = &data else {
            unreachable!()
        };
        let src = src.clone();
        let ctx = octx("raw/events", Some(part("2024-01-01")));
        let stored = m.handle_output(&ctx, data).unwrap();
        let path = dir.path().join("storage/raw/events/2024-01-01.csv");
        assert_eq!(stored.path.as_deref(), Some(path.to_str().unwrap()));
        assert_eq!(stored.bytes, Some(8));
        assert_eq!(stored.rows, None);
        assert!(!src.exists());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a,b\n1,2\n");
        assert!(m.exists(&ctx).unwrap());
        assert!(
            !m.exists(&octx("raw/events", Some(part("2024-01-02"))))
                .unwrap()
        );
        assert_eq!(listing(path.parent().unwrap()), ["2024-01-01.csv"]);
    }

    #[test]
    fn store_converts_other_formats() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path(), Format::Parquet);
        let data = file(dir.path(), "out.csv", "a,b\n1,x\n2,y\n", Format::Csv);
        let Data::File { path: src, .. } = &data else {
            unreachable!()
        };
        let src = src.clone();
        let ctx = octx("t", None);
        let stored = m.handle_output(&ctx, data).unwrap();
        assert_eq!(stored.rows, Some(2));
        assert!(src.exists(), "a converted source is left alone");
        let path = dir.path().join("storage/t.parquet");
        assert_eq!(stored.bytes, Some(std::fs::metadata(&path).unwrap().len()));
        assert_eq!(table::read(&path, Format::Parquet).unwrap().num_rows(), 2);

        // A parquet output in the same format is moved, and its rows counted.
        let pq = dir.path().join("again.parquet");
        std::fs::copy(&path, &pq).unwrap();
        let stored = m
            .handle_output(
                &ctx,
                Data::File {
                    path: pq.clone(),
                    format: Format::Parquet,
                },
            )
            .unwrap();
        assert_eq!(stored.rows, Some(2));
        assert!(!pq.exists());

        // Tables and bytes.
        let t = table::read(&src, Format::Csv).unwrap();
        let stored = m
            .handle_output(&octx("u", None), Data::Table(Arc::new(t)))
            .unwrap();
        assert_eq!(stored.rows, Some(2));
        let raw = manager(dir.path(), Format::File);
        let stored = raw
            .handle_output(
                &octx("blob", None),
                Data::Bytes(Arc::new(b"\x00raw".to_vec())),
            )
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("storage/blob")).unwrap(),
            b"\x00raw"
        );
        assert_eq!((stored.rows, stored.bytes), (None, Some(4)));
    }

    #[test]
    fn format_mismatch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let raw = manager(dir.path(), Format::File);
        let data = file(dir.path(), "out.csv", "a\n1\n", Format::Csv);
        let e = raw
            .handle_output(&octx("t", None), data)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stores opaque files") && e.contains("`t` produced csv"),
            "{e}"
        );
        let m = manager(dir.path(), Format::Csv);
        let e = m
            .handle_output(&octx("t", None), Data::Bytes(Arc::new(vec![1])))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stores csv tables") && e.contains("opaque bytes"),
            "{e}"
        );
        assert!(!dir.path().join("storage/t").exists());
        assert!(!dir.path().join("storage/t.csv").exists());
    }

    #[test]
    fn failed_writes_leave_the_previous_partition_intact() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path(), Format::Parquet);
        let ctx = octx("t", Some(part("p")));
        let good = file(dir.path(), "good.csv", "a,b\n1,2\n", Format::Csv);
        m.handle_output(&ctx, good).unwrap();
        let path = dir.path().join("storage/t/p.parquet");
        let before = std::fs::read(&path).unwrap();

        // Fails while reading: a ragged row.
        let bad = file(dir.path(), "bad.csv", "a,b\n1,2\n3,4,5\n", Format::Csv);
        let e = m.handle_output(&ctx, bad).unwrap_err().to_string();
        assert!(e.contains("line 3: expected 2 fields, found 3"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(listing(path.parent().unwrap()), ["p.parquet"]);

        // Fails while writing, after the temporary file was created: CSV
        // cannot hold a nested column.
        let m = manager(dir.path(), Format::Csv);
        let good = file(dir.path(), "good.csv", "a\n1\n", Format::Csv);
        m.handle_output(&ctx, good).unwrap();
        let path = dir.path().join("storage/t/p.csv");
        let nested = file(
            dir.path(),
            "nested.jsonl",
            "{\"a\":{\"b\":1}}\n",
            Format::Jsonl,
        );
        let e = m.handle_output(&ctx, nested).unwrap_err();
        assert!(format!("{e:#}").contains(".tmp-run-1-"), "{e:#}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\n1\n");
        assert_eq!(listing(path.parent().unwrap()), ["p.csv", "p.parquet"]);
    }

    #[test]
    fn load_returns_stored_files_in_partition_order() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path(), Format::Csv);
        for k in ["c", "a", "b/x"] {
            let data = file(dir.path(), "o.csv", &format!("k\n{k}\n"), Format::Csv);
            m.handle_output(&octx("up", Some(part(k))), data).unwrap();
        }
        let ctx = ictx("up", true, vec![part("b/x"), part("a"), part("c")]);
        let Loaded::Partitions(map) = m.load_input(&ctx).unwrap() else {
            panic!("not partitions")
        };
        assert_eq!(map.keys().collect::<Vec<_>>(), ["b/x", "a", "c"]);
        for (k, d) in &map {
            let Data::File { path, format } = d else {
                panic!("not a file")
            };
            assert_eq!(*format, Format::Csv);
            assert_eq!(
                path,
                &dir.path()
                    .join("storage/up")
                    .join(format!("{}.csv", encode_key(k)))
            );
            assert_eq!(std::fs::read_to_string(path).unwrap(), format!("k\n{k}\n"));
        }
        let Loaded::Partitions(none) = m.load_input(&ictx("up", true, vec![])).unwrap() else {
            panic!("not partitions")
        };
        assert!(none.is_empty());

        let data = file(dir.path(), "o.csv", "k\n1\n", Format::Csv);
        m.handle_output(&octx("single", None), data).unwrap();
        let Loaded::Single(Data::File { path, .. }) =
            m.load_input(&ictx("single", false, vec![])).unwrap()
        else {
            panic!("not single")
        };
        assert_eq!(path, dir.path().join("storage/single.csv"));
    }

    #[test]
    fn missing_partitions_say_how_to_materialize_them() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path(), Format::Csv);
        let e = m
            .load_input(&ictx("raw/events", true, vec![part("2024-01-01|us")]))
            .unwrap_err()
            .to_string();
        let path = dir.path().join("storage/raw/events/2024-01-01|us.csv");
        assert_eq!(
            e,
            format!(
                "`raw/events` partition `2024-01-01|us` has not been materialized: `{}` does not exist\n\
                 hint: materialize it with `dg materialize --select raw/events --partition '2024-01-01|us'`",
                path.display()
            )
        );
        let e = m
            .load_input(&ictx("t", false, vec![]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("`t` has not been materialized: "), "{e}");
        assert!(e.ends_with("`dg materialize --select t`"), "{e}");
    }

    /// Not a timed test: run with
    /// `cargo test --release --lib -- --ignored fs_csv_throughput --nocapture`.
    #[test]
    #[ignore]
    fn fs_csv_throughput() {
        use std::io::BufWriter;
        use std::time::Instant;
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("gen.csv");
        let target = 200 * 1000 * 1000u64;
        {
            let mut w = BufWriter::new(File::create(&csv).unwrap());
            writeln!(w, "id,amount,name,day,flag").unwrap();
            let mut written = 0u64;
            let mut i = 0u64;
            while written < target {
                let line = format!(
                    "{i},{}.{:02},\"customer {}, \"\"vip\"\"\",2024-{:02}-{:02},{}\n",
                    i % 100_000,
                    i % 100,
                    i % 7919,
                    i % 12 + 1,
                    i % 28 + 1,
                    i.is_multiple_of(3)
                );
                w.write_all(line.as_bytes()).unwrap();
                written += line.len() as u64;
                i += 1;
            }
        }
        let size = std::fs::metadata(&csv).unwrap().len();
        let mb = |b: u64| b as f64 / 1e6;
        let rate = |b: u64, t: Instant| format!("{:.0} MB/s", mb(b) / t.elapsed().as_secs_f64());
        println!("input: {:.0} MB of CSV", mb(size));

        let t = Instant::now();
        let table = table::read(&csv, Format::Csv).unwrap();
        println!(
            "table::read csv: {:.2} s, {}",
            t.elapsed().as_secs_f64(),
            rate(size, t)
        );
        let rows = table.num_rows() as u64;
        let t = Instant::now();
        let out = dir.path().join("w.csv");
        let n = table::write(&table, &out, Format::Csv).unwrap();
        println!(
            "table::write csv: {:.2} s, {}",
            t.elapsed().as_secs_f64(),
            rate(n, t)
        );
        drop(table);
        std::fs::remove_file(&out).unwrap();

        let pq = manager(dir.path(), Format::Parquet);
        let t = Instant::now();
        let stored = pq
            .handle_output(
                &octx("bench", None),
                Data::File {
                    path: csv.clone(),
                    format: Format::Csv,
                },
            )
            .unwrap();
        assert_eq!(stored.rows, Some(rows));
        println!(
            "store csv -> parquet: {:.2} s, {} of CSV ({:.0} MB parquet)",
            t.elapsed().as_secs_f64(),
            rate(size, t),
            mb(stored.bytes.unwrap())
        );

        let cm = FsManager {
            base_dir: dir.path().join("csv-storage"),
            format: Format::Csv,
            path: None,
        };
        let Loaded::Single(loaded) = pq.load_input(&ictx("bench", false, vec![])).unwrap() else {
            panic!()
        };
        let t = Instant::now();
        let stored = cm.handle_output(&octx("bench", None), loaded).unwrap();
        println!(
            "store parquet -> csv: {:.2} s, {} of CSV",
            t.elapsed().as_secs_f64(),
            rate(stored.bytes.unwrap(), t)
        );

        let t = Instant::now();
        let stored = cm
            .handle_output(
                &octx("moved", None),
                Data::File {
                    path: csv.clone(),
                    format: Format::Csv,
                },
            )
            .unwrap();
        println!(
            "store csv -> csv (move): {:.3} s, {}",
            t.elapsed().as_secs_f64(),
            rate(stored.bytes.unwrap(), t)
        );
        let t = Instant::now();
        let Loaded::Single(_) = cm.load_input(&ictx("moved", false, vec![])).unwrap() else {
            panic!()
        };
        println!(
            "load csv (hand over the file): {:.6} s",
            t.elapsed().as_secs_f64()
        );
    }
}
