//! `dg scaffold defs TYPE PATH`: writes one new definitions file from a
//! template.
//!
//! The file is checked before anything is written: its text is validated
//! together with the project's other definition files, in memory, by the
//! same loader as `dg check defs`. A reference to a partitions definition,
//! asset or resource that does not exist is refused with the usual located
//! diagnostic, and nothing is written. The file is then created atomically
//! (a hidden temporary file, linked into place without replacing anything),
//! and an error leaves nothing behind, not even a folder it created.

use std::path::{Component, Path, PathBuf};

use clap::{Args, Subcommand};

use super::Session;
use crate::diag::{Diagnostic, Diagnostics, FileId, Sources, did_you_mean, list_names};
use crate::error::{Error, Outcome};
use crate::load;
use crate::project::{Project, display_path};

#[derive(Subcommand, Debug)]
pub enum ScaffoldWhat {
    /// Write a new definitions file: an asset, a resource, a partitions definition, a job, or an
    /// asset with checks
    Defs(Box<DefsArgs>),
}

#[derive(Args, Debug)]
pub struct DefsArgs {
    /// What to define: `asset`, `resources`, `partitions`, `job` or `check` (an asset with
    /// checks; aliases: `dagster.asset`, `dagster.resources`, `resource`, `dagster.asset_check`)
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// The new file, relative to the definitions folder; `.toml` is added when missing
    /// (`raw/events` → `defs/raw/events.toml`)
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// The definition's name (default: the file name without `.toml`)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// The asset's partitions definition (a `[partitions.NAME]` name)
    #[arg(long, value_name = "NAME", help_heading = "Asset options")]
    pub partitions: Option<String>,
    /// Upstream asset keys, comma-separated
    #[arg(
        long,
        value_name = "A,B",
        value_delimiter = ',',
        help_heading = "Asset options"
    )]
    pub deps: Option<Vec<String>>,
    /// The resource that stores the asset's output (default: `io_manager`)
    #[arg(long, value_name = "KEY", help_heading = "Asset options")]
    pub io_manager: Option<String>,
    /// Compute: a program and its arguments, split like a shell would
    /// (`--command 'python3 jobs/events.py --full'`; no shell runs it)
    #[arg(long, value_name = "ARGV", conflicts_with_all = ["shell", "sql"], help_heading = "Asset options")]
    pub command: Option<String>,
    /// Compute: a script run with `sh -c` (default: one that writes a tiny CSV to
    /// $DG_OUTPUT)
    #[arg(
        long,
        value_name = "SCRIPT",
        conflicts_with = "sql",
        help_heading = "Asset options"
    )]
    pub shell: Option<String>,
    /// Compute: SQL
    #[arg(long, value_name = "QUERY", help_heading = "Asset options")]
    pub sql: Option<String>,
    /// The asset's group (default: `default`)
    #[arg(long, value_name = "GROUP", help_heading = "Asset options")]
    pub group: Option<String>,

    /// For resources: fs, object_store, memory, sqlite, postgres, duckdb, command or settings (default: fs). For
    /// partitions: hourly, daily, weekly, monthly, cron, static or dynamic (default: daily,
    /// or cron with `--cron`, static with `--keys`)
    #[arg(
        long = "type",
        value_name = "TYPE",
        help_heading = "Resources and partitions options"
    )]
    pub type_: Option<String>,
    /// The start of the first partition (default: January 1st of the current year)
    #[arg(long, value_name = "DATE", help_heading = "Partitions options")]
    pub start: Option<String>,
    /// The exclusive end (default: none, partitions keep coming)
    #[arg(long, value_name = "DATE", help_heading = "Partitions options")]
    pub end: Option<String>,
    /// The cron schedule of `--type cron` partitions or of a job, e.g. `0 */6 * * *`
    #[arg(long, value_name = "EXPR", help_heading = "Partitions options")]
    pub cron: Option<String>,
    /// The keys of `--type static`, comma-separated
    #[arg(
        long,
        value_name = "A,B",
        value_delimiter = ',',
        help_heading = "Partitions options"
    )]
    pub keys: Option<Vec<String>>,
    /// The IANA time zone of a time partitions definition or of a job's cron (default: UTC)
    #[arg(long, value_name = "TZ", help_heading = "Partitions options")]
    pub timezone: Option<String>,
}

/// What a file defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DefType {
    Asset,
    Resources,
    Partitions,
    Job,
    /// An asset with checks (`[assets.KEY.checks.NAME]`) and `freshness`.
    Check,
}

impl DefType {
    fn name(self) -> &'static str {
        match self {
            DefType::Asset => "asset",
            DefType::Resources => "resources",
            DefType::Partitions => "partitions",
            DefType::Job => "job",
            DefType::Check => "check",
        }
    }
}

const TYPES: &[(&str, DefType)] = &[
    ("asset", DefType::Asset),
    ("resources", DefType::Resources),
    ("partitions", DefType::Partitions),
    ("job", DefType::Job),
    ("check", DefType::Check),
    ("dagster.asset_check", DefType::Check),
    ("dagster.asset", DefType::Asset),
    ("dagster.resources", DefType::Resources),
    ("resource", DefType::Resources),
];

const RESOURCE_TYPES: &[&str] = &[
    "fs",
    "object_store",
    "memory",
    "sqlite",
    "postgres",
    "duckdb",
    "command",
    "settings",
];
const PARTITIONS_TYPES: &[&str] = &[
    "hourly", "daily", "weekly", "monthly", "cron", "static", "dynamic",
];
const TIME_TYPES: &[&str] = &["hourly", "daily", "weekly", "monthly", "cron"];

/// A usage error (exit 2): a message, then a hint with `.help(…)`.
fn usage(message: impl Into<String>) -> Error {
    Error::usage(message)
}

pub fn scaffold(s: &Session, what: &ScaffoldWhat) -> Result<Outcome, Error> {
    match what {
        ScaffoldWhat::Defs(args) => defs(s, args),
    }
}

fn defs(s: &Session, args: &DefsArgs) -> Result<Outcome, Error> {
    // 1. Everything that needs only the command line.
    let ty = parse_type(&args.kind)?;
    check_options(ty, args)?;
    let rel = relative_path(&args.path)?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => default_name(&rel),
    };
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(usage(format!("invalid name `{}`", name.escape_debug()))
            .help("a name is not empty and has no control characters; pass `--name NAME`"));
    }
    let text = render(ty, &name, args, s)?;

    // 2. The project, and where the file goes.
    let (project, sources, diags) = s.project()?;
    if diags.has_errors() {
        let then = "`dg.toml` is invalid: fix it first, so that dg knows where the definitions go";
        return Err(Error::invalid(sources, diags, Some(then.into())));
    }
    if project.config_file.is_none() && !project.defs_dir.is_dir() {
        return Err(usage(format!(
            "no dg project in `{}`: there is no `dg.toml` and no definitions folder",
            project.root.display()
        ))
        .help("run `dg init` to create a project, or pass `--project DIR`"));
    }
    let defs_dir = &project.defs_dir;
    let target = defs_dir.join(&rel);
    let shown = display_path(&target, &s.cwd);
    check_inside(defs_dir, &rel, &args.path)?;
    if target.symlink_metadata().is_ok() {
        return Err(Error::io(format!(
            "`{shown}` already exists: nothing was changed (dg scaffold never overwrites a file)"
        )));
    }

    // For editors: a `#:schema` line pointing at the schema in the state
    // folder, written (or refreshed) there.
    let schema = project.state_dir.join(super::schema::DEFS_SCHEMA);
    let text = super::schema::directive(&target, &schema) + &text;

    // 3. The whole project, with the new file, must pass `dg check defs`.
    validate_with(s, &project, &shown, text.clone())?;

    // 4. Write it.
    create_file(defs_dir, &target, &text)
        .map_err(|e| Error::io(format!("cannot create `{shown}`: {e}; nothing was written")))?;
    if let Err(e) = super::schema::write_schemas(&project.state_dir, &s.registry) {
        s.out.warn(&format!(
            "cannot write the JSON Schemas into {}: {e} (editors will not find the schema)",
            project.state_dir.join("schema").display()
        ));
    }
    s.out.info(&format!(
        "{} created {shown}: {} `{name}`",
        s.out.green("✓"),
        match ty {
            DefType::Asset => "asset",
            DefType::Resources => "resource",
            DefType::Partitions => "partitions",
            DefType::Job => "job",
            DefType::Check => "asset with checks",
        }
    ));
    s.out.info(&s.out.dim(&next_step(ty, &name, args)));
    Ok(Outcome::Ok)
}

fn parse_type(given: &str) -> Result<DefType, Error> {
    if let Some((_, t)) = TYPES.iter().find(|(n, _)| *n == given) {
        return Ok(*t);
    }
    let names: Vec<&str> = TYPES.iter().map(|(n, _)| *n).collect();
    let known = "known types: `asset`, `resources`, `partitions`, `job`, `check` (aliases: \
                 `dagster.asset`, `dagster.resources`, `resource`, `dagster.asset_check`)";
    let help = match did_you_mean(given, names.iter().copied()) {
        Some(c) => format!("did you mean `{c}`? {known}"),
        None => known.to_string(),
    };
    Err(usage(format!("unknown definition type `{given}`")).help(help))
}

/// Options that do not apply to the type are errors, not silently ignored.
fn check_options(ty: DefType, a: &DefsArgs) -> Result<(), Error> {
    let given: &[(&str, bool, &[DefType])] = &[
        (
            "--partitions",
            a.partitions.is_some(),
            &[DefType::Asset, DefType::Check],
        ),
        (
            "--deps",
            a.deps.is_some(),
            &[DefType::Asset, DefType::Check],
        ),
        (
            "--io-manager",
            a.io_manager.is_some(),
            &[DefType::Asset, DefType::Check],
        ),
        (
            "--command",
            a.command.is_some(),
            &[DefType::Asset, DefType::Check],
        ),
        (
            "--shell",
            a.shell.is_some(),
            &[DefType::Asset, DefType::Check],
        ),
        ("--sql", a.sql.is_some(), &[DefType::Asset, DefType::Check]),
        (
            "--group",
            a.group.is_some(),
            &[DefType::Asset, DefType::Check],
        ),
        (
            "--type",
            a.type_.is_some(),
            &[DefType::Resources, DefType::Partitions],
        ),
        ("--start", a.start.is_some(), &[DefType::Partitions]),
        ("--end", a.end.is_some(), &[DefType::Partitions]),
        (
            "--cron",
            a.cron.is_some(),
            &[DefType::Partitions, DefType::Job],
        ),
        ("--keys", a.keys.is_some(), &[DefType::Partitions]),
        (
            "--timezone",
            a.timezone.is_some(),
            &[DefType::Partitions, DefType::Job],
        ),
    ];
    for (flag, is_given, applies) in given {
        if *is_given && !applies.contains(&ty) {
            let to: Vec<&str> = applies.iter().map(|t| t.name()).collect();
            return Err(usage(format!(
                "`{flag}` does not apply to `dg scaffold defs {}`",
                ty.name()
            ))
            .help(format!("`{flag}` is an option of {}", {
                let v: Vec<String> = to.iter().map(|t| format!("`{t}`")).collect();
                v.join(" and ")
            })));
        }
    }
    Ok(())
}

/// PATH, checked and normalised: relative, inside the definitions folder,
/// with `.toml` at the end.
fn relative_path(p: &Path) -> Result<PathBuf, Error> {
    let raw = p.to_string_lossy();
    let help = "PATH is relative to the definitions folder, e.g. `events` or `raw/events` \
                (→ `defs/raw/events.toml`)";
    if raw.is_empty() {
        return Err(usage("PATH is empty").help(help));
    }
    if p.is_absolute() || p.has_root() {
        return Err(usage(format!("PATH `{raw}` is absolute")).help(help));
    }
    if raw.ends_with('/') || raw.ends_with(std::path::MAIN_SEPARATOR) {
        return Err(usage(format!("PATH `{raw}` names a folder, not a file")).help(help));
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(usage(format!(
                    "PATH `{raw}` leaves the definitions folder: `..` is not allowed"
                ))
                .help(help));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(usage(format!("PATH `{raw}` is absolute")).help(help));
            }
        }
    }
    let Some(file) = out.file_name().map(|f| f.to_string_lossy().into_owned()) else {
        return Err(usage(format!("PATH `{raw}` names no file")).help(help));
    };
    if file.starts_with('.') {
        return Err(usage(format!(
            "PATH `{raw}` names a hidden file, which dg does not read"
        ))
        .help("definition files whose name starts with `.` are skipped; pick another name"));
    }
    if !file.ends_with(".toml") {
        out.set_file_name(format!("{file}.toml"));
    }
    Ok(out)
}

/// The file name without `.toml`.
fn default_name(rel: &Path) -> String {
    let file = rel
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.strip_suffix(".toml").unwrap_or(&file).to_string()
}

/// The target must stay inside the definitions folder, symbolic links
/// included, and PATH should not repeat the folder's own name by mistake.
fn check_inside(defs_dir: &Path, rel: &Path, given: &Path) -> Result<(), Error> {
    if let (Some(Component::Normal(first)), Some(dir_name)) =
        (rel.components().next(), defs_dir.file_name())
        && first == dir_name
        && rel.components().count() > 1
        && !defs_dir.join(first).exists()
    {
        let rest: PathBuf = given
            .components()
            .filter(|c| *c != Component::CurDir)
            .skip(1)
            .collect();
        return Err(usage(format!(
            "PATH `{}` starts with the definitions folder `{}`: it is relative to that folder",
            given.display(),
            dir_name.to_string_lossy()
        ))
        .help(format!("did you mean `{}`?", rest.display())));
    }
    let Ok(root) = defs_dir.canonicalize() else {
        return Ok(()); // nothing exists below a folder that does not exist
    };
    // The deepest part of the target that exists already.
    let mut existing = defs_dir.join(rel);
    while existing.symlink_metadata().is_err() {
        if !existing.pop() {
            return Ok(());
        }
    }
    match existing.canonicalize() {
        Ok(real) if !real.starts_with(&root) => Err(usage(format!(
            "PATH `{}` leads out of the definitions folder through a symbolic link (`{}`)",
            rel.display(),
            real.display()
        ))
        .help("scaffold files only inside the definitions folder")),
        _ => Ok(()),
    }
}

/// Validates the project with `text` added at `target`. Refuses (and
/// reports) errors that the new file brings; errors the project already had
/// elsewhere are only mentioned.
fn validate_with(s: &Session, project: &Project, shown: &str, text: String) -> Result<(), Error> {
    let mut sources = Sources::default();
    let mut read_diags = Diagnostics::default();
    let paths = if project.defs_dir.is_dir() {
        match load::definition_files(&project.defs_dir) {
            Ok(p) => p,
            Err(e) => {
                return Err(Error::usage(format!(
                    "cannot list `{}`: {e}",
                    display_path(&project.defs_dir, &s.cwd)
                )));
            }
        }
    } else {
        Vec::new()
    };
    let ids: Vec<FileId> = paths
        .iter()
        .filter_map(|p| load::read_file(p, display_path(p, &s.cwd), &mut sources, &mut read_diags))
        .collect();
    let all_read = ids.len() == paths.len();
    let new_id = sources.add(shown.to_string(), text);
    let env = crate::interp::env_var;

    let mut before = Diagnostics::default();
    crate::validate::validate_files(&sources, &ids, all_read, &s.registry, &env, &mut before);
    let mut with_new: Vec<FileId> = ids.clone();
    with_new.push(new_id);
    let mut after = Diagnostics::default();
    crate::validate::validate_files(&sources, &with_new, all_read, &s.registry, &env, &mut after);

    let same = |a: &Diagnostic, b: &Diagnostic| {
        a.kind == b.kind
            && a.message == b.message
            && a.primary.as_ref().map(|l| &l.span) == b.primary.as_ref().map(|l| &l.span)
    };
    let in_new = |d: &Diagnostic| {
        d.primary.as_ref().is_some_and(|l| l.span.file == new_id)
            || d.secondary.iter().any(|l| l.span.file == new_id)
    };
    let (new_errors, old_errors): (Vec<Diagnostic>, Vec<Diagnostic>) = after
        .items
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .partition(|d| in_new(d) || !before.items.iter().any(|b| same(b, d)));
    if !new_errors.is_empty() {
        let n = new_errors.len();
        let then = format!(
            "nothing was written: with `{shown}`, the definitions would not pass `dg check defs` ({n} error{})",
            if n == 1 { "" } else { "s" }
        );
        let diags = Diagnostics { items: new_errors };
        return Err(Error::invalid(sources, diags, Some(then)));
    }
    // Warnings about the new file (an unset `${env:…}`) are worth showing.
    let warnings: Vec<Diagnostic> = after
        .items
        .iter()
        .filter(|d| !d.is_error() && in_new(d))
        .cloned()
        .collect();
    s.report(&sources, &Diagnostics { items: warnings });
    let old = old_errors.len() + read_diags.error_count();
    if old > 0 {
        s.out.err(&format!(
            "note: the other definition files already have {old} error{}, unrelated to `{shown}`: see `dg check defs`",
            if old == 1 { "" } else { "s" }
        ));
    }
    Ok(())
}

/// Creates `target` with `text`: missing folders first, then a hidden
/// temporary file beside it, hard-linked into place (which fails rather than
/// replace a file that appeared meanwhile). On error, everything created is
/// removed again.
fn create_file(defs_dir: &Path, target: &Path, text: &str) -> std::io::Result<()> {
    let parent = target.parent().unwrap_or(defs_dir);
    let mut created: Vec<PathBuf> = Vec::new();
    let result = (|| {
        create_dirs(parent, &mut created)?;
        write_new(target, text)
    })();
    if result.is_err() {
        for dir in created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

/// Creates `dir` and its missing parents, top-down, adding each folder it
/// creates to `created` as it goes (so that an error can remove them).
pub(super) fn create_dirs(dir: &Path, created: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut p = dir.to_path_buf();
    while p.symlink_metadata().is_err() {
        missing.push(p.clone());
        if !p.pop() {
            break;
        }
    }
    for d in missing.iter().rev() {
        std::fs::create_dir(d)?;
        created.push(d.clone());
    }
    Ok(())
}

/// Writes `text` to `target`, which must not exist, atomically: readers see
/// either no file or the whole of it.
pub(super) fn write_new(target: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let parent = target.parent().unwrap_or(Path::new("."));
    let file_name = target
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        match std::fs::hard_link(&tmp, target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
            // A file system without hard links: rename, after one more check.
            Err(_) if target.symlink_metadata().is_err() => std::fs::rename(&tmp, target),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// A TOML key: bare when it can be, else a quoted string.
pub(super) fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        toml_basic(k)
    }
}

/// A one-line TOML basic string.
fn toml_basic(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML string value, written the most readable way (literal or
/// multi-line when that avoids escapes).
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_array(items: &[String]) -> String {
    let v: Vec<String> = items.iter().map(|i| toml_basic(i)).collect();
    format!("[{}]", v.join(", "))
}

/// The file's text.
fn render(ty: DefType, name: &str, a: &DefsArgs, s: &Session) -> Result<String, Error> {
    match ty {
        DefType::Asset => render_asset(name, a),
        DefType::Resources => render_resource(name, a),
        DefType::Partitions => render_partitions(name, a, s),
        DefType::Job => Ok(render_job(name, a)),
        DefType::Check => render_checked_asset(name, a),
    }
}

/// An asset (as `dg scaffold defs asset` writes it) with `freshness` and
/// two example checks. Checks live in their asset's table, so they come
/// with it: an existing asset gets checks by adding these tables to its file.
fn render_checked_asset(name: &str, a: &DefsArgs) -> Result<String, Error> {
    let mut t = render_asset(name, a)?;
    let key = toml_key(name);
    let table = name.rsplit('/').next().unwrap_or(name);
    let var = crate::exec::step::env_name(table);
    let quoted = crate::io::db::quote_ident(table);
    t.push_str(
        "# `dg status --fail-on-stale` fails when the newest materialization is older than this.\n\
         freshness = \"26h\"\n\n",
    );
    t.push_str(
        "# Checks run after each partition is stored, against the stored data; see them with\n\
         # `dg checks`. A failed check with `blocking = true` and severity \"error\" skips the\n\
         # steps downstream and fails the run.\n",
    );
    t.push_str(&format!("[assets.{key}.checks.not_empty]\n"));
    t.push_str(&format!(
        "# Passes when the query returns no rows. The stored partition is the table `{table}`\n\
         # (inside the database when the asset is stored by a sqlite, postgres or duckdb resource).\n"
    ));
    t.push_str(&format!(
        "sql = {}\n",
        toml_basic(&format!(
            "SELECT 'no rows' AS problem WHERE NOT EXISTS (SELECT 1 FROM {quoted})"
        ))
    ));
    t.push_str("blocking = true\n\n");
    t.push_str(&format!("[assets.{key}.checks.has_data]\n"));
    t.push_str(&format!(
        "# Passes on exit 0. The stored partition is the file $DG_INPUT_{var}; lines such as\n\
         # {{\"metadata\": {{\"rows\": 3}}}} appended to $DG_MESSAGES are recorded with the result.\n"
    ));
    t.push_str(&format!(
        "shell = {}\n",
        toml_basic(&format!("test -s \"$DG_INPUT_{var}\""))
    ));
    t.push_str("# \"error\" (the default) or \"warn\" (reported, never blocks).\n");
    t.push_str("severity = \"warn\"\n");
    Ok(t)
}

fn render_job(name: &str, a: &DefsArgs) -> String {
    let key = toml_key(name);
    let mut t = String::new();
    t.push_str(&format!(
        "# Job `{name}`: a named selection and targeting. Run it with `dg materialize --job {w}`;\n\
         # with `cron`, `dg tick` (from one crontab line or CI schedule) runs it on its ticks.\n\n",
        w = shell_word(name)
    ));
    t.push_str(&format!("[jobs.{key}]\n"));
    t.push_str("# Which assets (selection syntax, as `--select`).\n");
    t.push_str("select = \"*\"\n");
    t.push_str(
        "# Which partitions: at most one of `partition = \"latest\"` (or a key, or \"DEF:KEY\"),\n\
         # `partition_range = \"A...B\"`, `last = N`, `all_partitions = true`.\n",
    );
    t.push_str("# last = 1\n");
    t.push_str("# Only partitions never materialized (`missing`), or also stale ones (`stale`).\n");
    t.push_str("missing = true\n");
    t.push_str(
        "# When `dg tick` runs it: a five-field cron schedule, in `timezone` (default UTC).\n",
    );
    match &a.cron {
        Some(c) => t.push_str(&format!("cron = {}\n", toml_basic(c))),
        None => t.push_str("# cron = \"0 * * * *\"\n"),
    }
    match &a.timezone {
        Some(z) => t.push_str(&format!("timezone = {}\n", toml_basic(z))),
        None => t.push_str("# timezone = \"UTC\"\n"),
    }
    t.push_str(
        "# After missed ticks: \"latest\" runs once, for the newest; \"all\" once per missed tick.\n",
    );
    if a.cron.is_some() {
        t.push_str("catchup = \"latest\"\n");
    } else {
        t.push_str("# catchup = \"latest\"\n");
    }
    t
}

fn render_asset(name: &str, a: &DefsArgs) -> Result<String, Error> {
    let mut t = String::new();
    let key = toml_key(name);
    t.push_str(&format!(
        "# Asset `{name}`. Check it with `dg check defs`; see it with `dg list defs`.\n\n"
    ));
    t.push_str(&format!("[assets.{key}]\n"));
    t.push_str("# What it holds, for people (shown by `dg list defs --json`).\n");
    t.push_str("# description = \"What this asset holds\"\n");
    t.push_str("# Its partitions: the name of a `[partitions.NAME]` definition (default: none).\n");
    match &a.partitions {
        Some(p) => t.push_str(&format!("partitions = {}\n", toml_basic(p))),
        None => t.push_str("# partitions = \"daily\"\n"),
    }
    t.push_str("# Upstream assets; the step reads each as the file $DG_INPUT_<NAME>.\n");
    match &a.deps {
        Some(d) => t.push_str(&format!("deps = {}\n", toml_array(d))),
        None => t.push_str("# deps = [\"other_asset\"]\n"),
    }
    t.push_str("# The resource that stores its output (default: \"io_manager\").\n");
    match &a.io_manager {
        Some(m) => t.push_str(&format!("io_manager = {}\n", toml_basic(m))),
        None => t.push_str("# io_manager = \"io_manager\"\n"),
    }
    t.push_str("# A group, for `--select group:NAME` (default: \"default\").\n");
    match &a.group {
        Some(g) => t.push_str(&format!("group = {}\n", toml_basic(g))),
        None => t.push_str("# group = \"default\"\n"),
    }
    if let Some(c) = &a.command {
        let argv = split_words(c)?;
        if argv.is_empty() {
            return Err(usage("`--command` is empty").help("give a program and its arguments"));
        }
        t.push_str(
            "# The compute: a program and its arguments, run from the project root.\n\
             # It writes the asset's output to the file $DG_OUTPUT (CSV by default).\n",
        );
        t.push_str(&format!("command = {}\n", toml_array(&argv)));
    } else if let Some(q) = &a.sql {
        t.push_str("# The compute: SQL.\n");
        t.push_str(&format!("sql = {}\n", toml_str(q)));
    } else {
        t.push_str(
            "# The compute: a script run with `sh -c` from the project root.\n\
             # It writes the asset's output to the file $DG_OUTPUT (CSV by default).\n",
        );
        match &a.shell {
            Some(sh) => t.push_str(&format!("shell = {}\n", toml_str(sh))),
            None if a.partitions.is_some() => t.push_str(
                "shell = \"printf 'partition,value\\\\n%s,1\\\\n' \\\"$DG_PARTITION_KEY\\\" > \\\"$DG_OUTPUT\\\"\"\n",
            ),
            None => t.push_str("shell = \"printf 'id,value\\\\n1,hello\\\\n' > \\\"$DG_OUTPUT\\\"\"\n"),
        }
    }
    t.push_str(
        "# Column types, applied when the output is stored: string, int64, float64,\n\
         # bool, date, timestamp. Undeclared columns are text unless every value\n\
         # prints back unchanged as a number or a boolean (`02134` stays text).\n\
         # columns = { zip = \"string\", amount = \"float64\", day = \"date\" }\n\
         # Set to false when the step may write nothing: that partition is recorded\n\
         # as \"no output\" and the steps that read it are skipped.\n\
         # output_required = false\n",
    );
    Ok(t)
}

/// The `path` template lines of `fs` and `object_store`.
const PATH_LINES: &str = "# Where below the base an output goes: {key}, {partition}, {dim.NAME},\n\
     # {start:%Y}, {end:%m} (strftime of the time window) and {ext}.\n\
     # path = \"{key}/{partition}.{ext}\"\n";

fn render_resource(name: &str, a: &DefsArgs) -> Result<String, Error> {
    let ty = a.type_.as_deref().unwrap_or("fs");
    if !RESOURCE_TYPES.contains(&ty) {
        return Err(unknown_subtype("resource", ty, RESOURCE_TYPES));
    }
    let key = toml_key(name);
    let file_stem: String = if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_string()
    } else {
        "data".into()
    };
    let mut t = String::new();
    if ty == "settings" {
        let var = format!("{}_TOKEN", crate::exec::step::env_name(name));
        let prefix = format!("DG_RESOURCE_{}", crate::exec::step::env_name(name));
        t.push_str(&format!(
            "# Resource `{name}`: settings for the steps that declare it, not an I/O manager.\n\
             # Assets use it with `resources = [{}]`; each field reaches the step as\n\
             # ${prefix}_<FIELD> (here ${prefix}_BASE_URL and ${prefix}_TOKEN), and the\n\
             # fields not listed in `secrets` are in $DG_CONTEXT under \"resources\".\n\
             # A `[profiles.NAME.resources.{key}]` table in dg.toml replaces it for that profile.\n\n",
            toml_basic(name)
        ));
        t.push_str(&format!("[resources.{key}]\n"));
        t.push_str("type = \"settings\"\n");
        t.push_str(
            "# Fields are strings, numbers or booleans; strings may read the environment.\n",
        );
        t.push_str("base_url = \"https://api.example.org\"\n");
        t.push_str(&format!(
            "# Read when a run starts: set {var} first (`dg check defs` warns while it is unset).\n"
        ));
        t.push_str(&format!("token = \"${{env:{var}}}\"\n"));
        t.push_str("timeout_seconds = 30\n");
        t.push_str(
            "# Fields whose values dg masks as *** wherever it prints or records them,\n\
             # step logs included.\n",
        );
        t.push_str("secrets = [\"token\"]\n");
        return Ok(t);
    }
    let what = match ty {
        "fs" => "an I/O manager that stores outputs as files",
        "object_store" => "an I/O manager that stores outputs as objects in S3, GCS or Azure",
        "memory" => "an I/O manager that keeps values in memory for one run",
        "sqlite" => "an I/O manager that stores outputs as tables of a SQLite database",
        "postgres" => "an I/O manager that stores outputs as tables of a Postgres schema",
        "duckdb" => "an I/O manager that stores outputs as tables of a DuckDB database",
        _ => "an I/O manager implemented by a plug-in program",
    };
    t.push_str(&format!(
        "# Resource `{name}`: {what}.\n# Assets use it with `io_manager = {}`.\n\n",
        toml_basic(name)
    ));
    t.push_str(&format!("[resources.{key}]\n"));
    t.push_str(
        "# The resource type: fs, object_store, memory, sqlite, postgres, duckdb or command.\n",
    );
    t.push_str(&format!("type = \"{ty}\"\n"));
    let format_line =
        "# How outputs are stored: \"csv\", \"jsonl\", \"parquet\" or \"file\" (raw bytes).\n";
    match ty {
        "fs" => {
            t.push_str(
                "# The root folder, relative to the project root (default: \"<state>/storage\").\n",
            );
            t.push_str(&format!("# base_dir = \"data/{file_stem}\"\n"));
            t.push_str(format_line);
            t.push_str("format = \"csv\"\n");
            t.push_str(PATH_LINES);
        }
        "object_store" => {
            t.push_str(
                "# The bucket and prefix: s3://, gs://, az:// or file:///absolute/folder.\n",
            );
            t.push_str(&format!("url = \"s3://my-bucket/{file_stem}\"\n"));
            t.push_str(format_line);
            t.push_str("format = \"parquet\"\n");
            t.push_str(PATH_LINES);
            t.push_str(
                "# The store's options, named as the object_store crate names them. Credentials\n\
                 # also come from the usual variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, …);\n\
                 # secret values are never shown.\n\
                 # region = \"eu-west-1\"\n\
                 # endpoint = \"http://localhost:9000\"\n\
                 # allow_http = true\n\
                 # secret_access_key = \"${env:S3_SECRET}\"\n",
            );
        }
        "memory" => t.push_str("# No other fields: values live in the dg process for one run.\n"),
        "sqlite" => {
            t.push_str("# The database file, relative to the project root.\n");
            t.push_str(&format!("path = \".dg/{file_stem}.db\"\n"));
            t.push_str("# Replace a table whose columns changed, instead of failing.\n");
            t.push_str("replace_on_schema_change = false\n");
        }
        "duckdb" => {
            t.push_str("# The database file, relative to the project root.\n");
            t.push_str(&format!("path = \"data/{file_stem}.duckdb\"\n"));
            t.push_str("# The schema that holds the tables (created when missing).\n");
            t.push_str("schema = \"main\"\n");
            t.push_str("# Replace a table whose columns changed, instead of failing.\n");
            t.push_str("replace_on_schema_change = false\n");
            t.push_str(
                "# `sql` assets stored here run in DuckDB's dialect, inside the database when\n\
                 # their inputs are stored here too.\n",
            );
        }
        "postgres" => {
            t.push_str(
                "# The connection URL, read from the environment when a run starts:\n\
                 # set DATABASE_URL first (or give a default: \"${env:DATABASE_URL:-postgres://localhost/db}\").\n",
            );
            t.push_str("url = \"${env:DATABASE_URL}\"\n");
            t.push_str("# The schema that holds the tables.\n");
            t.push_str("schema = \"public\"\n");
            t.push_str("# Replace a table whose columns changed, instead of failing.\n");
            t.push_str("replace_on_schema_change = false\n");
        }
        _ => {
            t.push_str("# The plug-in program and its arguments.\n");
            t.push_str(&format!("command = [\"dg-io-{file_stem}\"]\n"));
            t.push_str(format_line);
            t.push_str("format = \"csv\"\n");
            t.push_str("# How long one call may take (default: no limit).\n");
            t.push_str("# timeout = \"5m\"\n");
            t.push_str("# Settings passed to the program.\n");
            t.push_str("config = {}\n");
        }
    }
    Ok(t)
}

fn render_partitions(name: &str, a: &DefsArgs, s: &Session) -> Result<String, Error> {
    let ty: &str = match (&a.type_, &a.cron, &a.keys) {
        (Some(t), _, _) => t,
        (None, Some(_), _) => "cron",
        (None, None, Some(_)) => "static",
        (None, None, None) => "daily",
    };
    if !PARTITIONS_TYPES.contains(&ty) {
        let mut u = unknown_subtype("partitions", ty, PARTITIONS_TYPES);
        if ty == "multi" {
            u = usage("`--type multi` cannot be scaffolded")
                .help("scaffold its two dimensions, then write the `multi` definition by hand");
        }
        return Err(u);
    }
    let time = TIME_TYPES.contains(&ty);
    let only = |flag: &str, given: bool, ok: bool, which: &str| -> Result<(), Error> {
        if given && !ok {
            Err(usage(format!(
                "`{flag}` does not apply to `--type {ty}` partitions"
            ))
            .help(format!("`{flag}` is for {which}")))
        } else {
            Ok(())
        }
    };
    let time_list = "time partitions: hourly, daily, weekly, monthly, cron";
    only("--start", a.start.is_some(), time, time_list)?;
    only("--end", a.end.is_some(), time, time_list)?;
    only("--timezone", a.timezone.is_some(), time, time_list)?;
    only("--cron", a.cron.is_some(), ty == "cron", "`--type cron`")?;
    only(
        "--keys",
        a.keys.is_some(),
        ty == "static",
        "`--type static`",
    )?;
    if ty == "cron" && a.cron.is_none() {
        return Err(usage("`--type cron` needs `--cron EXPR`").help(
            "for example `--cron '0 */6 * * *'` (minute hour day-of-month month day-of-week)",
        ));
    }
    if ty == "static" && a.keys.is_none() {
        return Err(
            usage("`--type static` needs `--keys A,B`").help("for example `--keys us,eu,apac`")
        );
    }

    let key = toml_key(name);
    let mut t = String::new();
    let what = match ty {
        "hourly" => "one partition per hour",
        "daily" => "one partition per day",
        "weekly" => "one partition per week",
        "monthly" => "one partition per month",
        "cron" => "one partition per tick of a cron schedule",
        "static" => "a fixed list of keys",
        _ => "keys added at run time with `dg partitions add`",
    };
    t.push_str(&format!(
        "# Partitions `{name}`: {what}.\n# Assets use them with `partitions = {}`; list the keys with `dg list partitions {}`.\n\n",
        toml_basic(name),
        shell_word(name)
    ));
    t.push_str(&format!("[partitions.{key}]\n"));
    t.push_str(&format!("type = \"{ty}\"\n"));
    if time {
        // The default key format decides how `start` is written.
        let with_time = match ty {
            "hourly" => true,
            "cron" => {
                let expr = a.cron.as_deref().unwrap_or("");
                let f: Vec<&str> = expr.split_whitespace().collect();
                !(f.len() >= 2
                    && [f[0], f[1]]
                        .iter()
                        .all(|x| x.chars().all(|c| c.is_ascii_digit())))
            }
            _ => false,
        };
        let (fmt, example) = if with_time {
            ("%Y-%m-%d-%H:%M", "2024-01-01-00:00")
        } else {
            ("%Y-%m-%d", "2024-01-01")
        };
        if let Some(c) = &a.cron {
            t.push_str("# The schedule: minute hour day-of-month month day-of-week.\n");
            t.push_str(&format!("cron = {}\n", toml_basic(c)));
        }
        let year = s.now.format("%Y").to_string();
        let start = match &a.start {
            Some(v) => v.clone(),
            None if with_time => format!("{year}-01-01-00:00"),
            None => format!("{year}-01-01"),
        };
        t.push_str(&format!(
            "# The first partition starts at the first tick at or after `start` (written like {example}).\n"
        ));
        t.push_str(&format!("start = {}\n", toml_basic(&start)));
        t.push_str("# Exclusive end: no partition ends after it (default: none, partitions keep coming).\n");
        match &a.end {
            Some(e) => t.push_str(&format!("end = {}\n", toml_basic(e))),
            None => t.push_str(&format!("# end = \"{}\"\n", bump_year(&start, &year))),
        }
        t.push_str("# The IANA time zone of `start`, `end` and the keys (default: \"UTC\").\n");
        match &a.timezone {
            Some(z) => t.push_str(&format!("timezone = {}\n", toml_basic(z))),
            None => t.push_str("# timezone = \"Europe/Berlin\"\n"),
        }
        t.push_str(&format!(
            "# The strftime format of the keys (and of `start` and `end`).\n# fmt = \"{fmt}\"\n"
        ));
    } else if let Some(keys) = &a.keys {
        t.push_str("# The partition keys, in order.\n");
        t.push_str(&format!("keys = {}\n", toml_array(keys)));
    } else {
        t.push_str(&format!(
            "# No other fields: add keys with `dg partitions add {} KEY…`.\n",
            shell_word(name)
        ));
    }
    Ok(t)
}

/// `2026-01-01` → `2027-01-01`, for an example `end`.
fn bump_year(start: &str, year: &str) -> String {
    match (start.get(..4), year.parse::<i32>()) {
        (Some(y), Ok(n)) if y == year => format!("{}{}", n + 1, &start[4..]),
        _ => "2100-01-01".into(),
    }
}

fn unknown_subtype(what: &str, given: &str, known: &[&str]) -> Error {
    let list = list_names(known);
    let help = match did_you_mean(given, known.iter().copied()) {
        Some(c) => format!("did you mean `{c}`? {what} types: {list}"),
        None => format!("{what} types: {list}"),
    };
    usage(format!("unknown {what} type `{given}`")).help(help)
}

/// A word as it would be typed in a shell.
pub(super) fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// Splits a command line into words like `sh` would, without expanding
/// anything: whitespace separates, `'…'` and `"…"` quote, `\` escapes.
fn split_words(s: &str) -> Result<Vec<String>, Error> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(unterminated()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(unterminated()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(unterminated()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn unterminated() -> Error {
    usage("`--command` has an unterminated quote")
        .help("quote the whole value for your shell, and quote words inside it in pairs")
}

fn next_step(ty: DefType, name: &str, a: &DefsArgs) -> String {
    match ty {
        DefType::Asset => {
            let sel = shell_word(name);
            if a.partitions.is_some() {
                format!(
                    "  next: `dg materialize --select {sel} --all-partitions` (add `+` before the key to include its upstream)"
                )
            } else {
                format!("  next: `dg materialize --select {sel}`")
            }
        }
        DefType::Resources if a.type_.as_deref() == Some("settings") => format!(
            "  next: give an asset `resources = [{}]`; it reads the fields as $DG_RESOURCE_{}_<FIELD>",
            toml_basic(name),
            crate::exec::step::env_name(name)
        ),
        DefType::Resources => format!(
            "  next: give an asset `io_manager = {}`, or `dg scaffold defs asset NAME --io-manager {}`",
            toml_basic(name),
            shell_word(name)
        ),
        DefType::Job => format!(
            "  next: `dg list jobs`, then `dg materialize --job {w}`{tick}",
            w = shell_word(name),
            tick = if a.cron.is_some() {
                " or `dg tick`"
            } else {
                ""
            }
        ),
        DefType::Partitions => format!(
            "  next: `dg list partitions {w}`, then `dg scaffold defs asset NAME --partitions {w}`",
            w = shell_word(name)
        ),
        DefType::Check => format!(
            "  next: `dg materialize --select {w}{all}`, then `dg checks --select {w}`",
            w = shell_word(name),
            all = if a.partitions.is_some() {
                " --all-partitions"
            } else {
                ""
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        let w = split_words(r#"python3 'a b' "c \"d\"" e\ f  g"#)
            .ok()
            .unwrap();
        assert_eq!(w, ["python3", "a b", "c \"d\"", "e f", "g"]);
        assert!(split_words("a 'b").is_err());
        assert_eq!(split_words("  ").ok().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn paths_are_normalised_and_checked() {
        let ok = |p: &str| relative_path(Path::new(p)).ok().unwrap();
        assert_eq!(ok("raw/events"), PathBuf::from("raw/events.toml"));
        assert_eq!(ok("./a.toml"), PathBuf::from("a.toml"));
        assert_eq!(ok("a.txt"), PathBuf::from("a.txt.toml"));
        for bad in [
            "",
            "/abs",
            "../outside",
            "a/../../b",
            "raw/",
            ".hidden",
            "a/.toml",
        ] {
            assert!(relative_path(Path::new(bad)).is_err(), "{bad}");
        }
        assert_eq!(default_name(&ok("raw/events")), "events");
    }

    #[test]
    fn keys_are_quoted_when_needed() {
        assert_eq!(toml_key("daily_2"), "daily_2");
        assert_eq!(toml_key("raw/events"), "\"raw/events\"");
        assert_eq!(toml_key("a\"b"), "\"a\\\"b\"");
    }
}
