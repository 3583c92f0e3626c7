//! `dg init [DIR]`: a new project whose example materializes at once, and
//! `dg completions SHELL`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::Session;
use super::scaffold::{create_dirs, shell_word, write_new};
use crate::error::{Error, Outcome};
use crate::project::CONFIG_FILE;

/// `dg.toml` as `dg init` writes it.
pub const DG_TOML: &str = r#"#:schema .dg/schema/config.json
# dg.toml
# The project's settings. Every field is optional: these are the defaults.

[project]
defs = "defs"   # the definitions folder: every *.toml file under it is read
state = ".dg"   # the state folder: logs, stored outputs, run history (git-ignored)

# [run]
# jobs = 4      # how many steps `dg materialize` runs at once (default: the number of CPUs)
"#;

/// `defs/example.toml` as `dg init` writes it.
pub const EXAMPLE_TOML: &str = r#"#:schema ../.dg/schema/defs.json
# The example written by `dg init`: two assets, partitioned by day.
# Every *.toml file under defs/ is read, and names are shared across files.
# Add more with `dg scaffold defs asset|resources|partitions PATH`.

# One partition per day, for the first week of 2024. `end` is exclusive:
# without it, a new partition would appear every day.
[partitions.daily]
type = "daily"
start = "2024-01-01"
end = "2024-01-08"

# Three events per day. A step writes the asset's output, here a CSV file,
# to $DG_OUTPUT; dg stores it (by default under .dg/storage/).
[assets.events]
partitions = "daily"
description = "Three events per day"
shell = """
printf 'day,event\n' > "$DG_OUTPUT"
for i in 1 2 3; do printf '%s,event-%s\n' "$DG_PARTITION_KEY" "$i" >> "$DG_OUTPUT"; done
"""

# Reads the same day of `events` (the file $DG_INPUT_EVENTS) and counts it.
[assets.daily_counts]
partitions = "daily"
deps = ["events"]
description = "How many events each day had"
shell = """
n=$(($(wc -l < "$DG_INPUT_EVENTS") - 1))
printf 'day,events\n%s,%s\n' "$DG_PARTITION_KEY" "$n" > "$DG_OUTPUT"
"""
"#;

/// The file, under the definitions folder, that holds the example.
pub const EXAMPLE_FILE: &str = "example.toml";

/// What `.gitignore` gets.
const GITIGNORE_LINE: &str = ".dg/";

pub fn init(s: &Session, dir: Option<&Path>) -> Result<Outcome, Error> {
    let root = match (dir, &s.global.project) {
        (Some(d), _) => s.cwd.join(d),
        (None, Some(p)) => s.cwd.join(p),
        (None, None) => s.cwd.clone(),
    };
    let shown = shown_dir(&root, &s.cwd);
    // A folder that holds a project already is refused (exit 1, nothing changed).
    check_empty(&root, &shown).map_err(|e| {
        e.help(
            "run `dg check defs` there to use that project, or pick another folder: `dg init NEW_DIR`",
        )
    })?;
    let mut done = Undo::default();
    let files = create(&root, &mut done).map_err(|e| {
        done.rollback();
        Error::io(format!(
            "cannot create the project in `{shown}`: {e}; nothing was left behind"
        ))
    })?;
    // For editors: the `#:schema` lines above point here.
    if let Err(e) = super::schema::write_schemas(&root.join(".dg"), &s.registry) {
        s.out.warn(&format!(
            "cannot write the JSON Schemas into .dg/schema: {e} (run `dg schema --write` later)"
        ));
    }
    next_steps(s, &shown, &files);
    Ok(Outcome::Ok)
}

/// The folder as the user would type it.
fn shown_dir(root: &Path, cwd: &Path) -> String {
    match root.strip_prefix(cwd) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => root.display().to_string(),
    }
}

/// Refuses a folder that already holds a project: `dg.toml`, or a
/// definitions folder with anything in it (an [`Error::Io`]: exit 1).
fn check_empty(root: &Path, shown: &str) -> Result<(), Error> {
    if root.symlink_metadata().is_err() {
        return Ok(());
    }
    if !root.is_dir() {
        return Err(Error::io(format!("`{shown}` exists and is not a folder")));
    }
    let config = root.join(CONFIG_FILE);
    if config.symlink_metadata().is_ok() {
        return Err(Error::io(format!(
            "`{shown}` already holds a dg project (it has `{CONFIG_FILE}`): nothing was changed"
        )));
    }
    let defs = root.join("defs");
    if defs.symlink_metadata().is_ok() {
        let empty = std::fs::read_dir(&defs).is_ok_and(|mut d| d.next().is_none());
        if !empty {
            return Err(Error::io(format!(
                "`{shown}` already holds definitions (`defs/` is not empty): nothing was changed"
            )));
        }
    }
    Ok(())
}

/// What was created, so that an error can take it back.
#[derive(Default)]
struct Undo {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Undo {
    fn rollback(&self) {
        for f in self.files.iter().rev() {
            let _ = std::fs::remove_file(f);
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }

    /// Creates `dir` and its missing parents.
    fn mkdirs(&mut self, dir: &Path) -> std::io::Result<()> {
        create_dirs(dir, &mut self.dirs)
    }

    fn file(&mut self, path: &Path, text: &str) -> std::io::Result<()> {
        write_new(path, text)?;
        self.files.push(path.to_path_buf());
        Ok(())
    }
}

/// Creates the project. Returns the files written, relative to `root`.
fn create(root: &Path, undo: &mut Undo) -> std::io::Result<Vec<String>> {
    let defs = root.join("defs");
    undo.mkdirs(&defs)?;
    undo.file(&root.join(CONFIG_FILE), DG_TOML)?;
    undo.file(&defs.join(EXAMPLE_FILE), EXAMPLE_TOML)?;
    let mut files = vec![CONFIG_FILE.to_string(), format!("defs/{EXAMPLE_FILE}")];
    // Last, since it may change a file that was there before.
    let gitignore = root.join(".gitignore");
    match std::fs::read_to_string(&gitignore) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            undo.file(
                &gitignore,
                &format!(
                    "# dg's state folder: logs, stored outputs, run history\n{GITIGNORE_LINE}\n"
                ),
            )?;
            files.push(".gitignore".into());
        }
        Err(e) => return Err(e),
        Ok(text) => {
            let ignored = text
                .lines()
                .map(str::trim)
                .any(|l| matches!(l, ".dg" | ".dg/" | "/.dg" | "/.dg/"));
            if !ignored {
                let mut new = text.clone();
                if !new.is_empty() && !new.ends_with('\n') {
                    new.push('\n');
                }
                new.push_str(&format!("\n# dg's state folder\n{GITIGNORE_LINE}\n"));
                replace(&gitignore, &new)?;
                files.push(".gitignore (added `.dg/`)".into());
            }
        }
    }
    Ok(files)
}

/// Replaces a file's content atomically.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let r = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn next_steps(s: &Session, shown: &str, files: &[String]) {
    let out = &s.out;
    out.info(&format!(
        "{} created a dg project in `{shown}`:",
        out.green("✓")
    ));
    for f in files {
        out.info(&format!("    {f}"));
    }
    out.info("");
    out.info("Next steps:");
    if shown != "." {
        out.info(&format!("  cd {}", shell_word(shown)));
    }
    let steps = [
        ("dg check defs", "validate the definitions"),
        ("dg list defs", "what is defined"),
        (
            "dg materialize --all-partitions",
            "run both assets for each of the 7 days",
        ),
        ("dg status", "what is materialized, per asset"),
    ];
    let width = steps.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (cmd, what) in steps {
        out.info(&format!(
            "  {cmd:width$}  {}",
            out.dim(&format!("# {what}"))
        ));
    }
    out.info("Then add your own definitions, for example:");
    out.info("  dg scaffold defs asset my_asset --partitions daily --deps events");
}

/// `dg completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) {
    let mut cmd = super::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "dg", &mut buf);
    // A closed pipe is not an error.
    let _ = std::io::stdout().lock().write_all(&buf);
}
