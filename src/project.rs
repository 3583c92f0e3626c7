//! Finding a project and reading `dg.toml`.

use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Diagnostics, Kind, Sources};
use crate::interp::Template;
use crate::load::{self, Reader};

/// A project: where its definitions and state live.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    /// `dg.toml`, when there is one.
    pub config_file: Option<PathBuf>,
    pub defs_dir: PathBuf,
    pub state_dir: PathBuf,
    /// `[state] url`, unresolved.
    pub state_url: Option<Template>,
    /// `[run] jobs`.
    pub jobs: Option<usize>,
    /// `[hooks]`: shell commands run after a run.
    pub hooks: Hooks,
}

/// `[hooks]` in `dg.toml`: `sh -c` scripts run from the project root after
/// a run, with `DG_RUN_SUMMARY` naming the run's JSON summary.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

pub const CONFIG_FILE: &str = "dg.toml";

impl Project {
    /// Finds the project: `explicit` if given, else the first folder holding
    /// `dg.toml` walking up from `cwd`, else `cwd`.
    pub fn discover(
        cwd: &Path,
        explicit: Option<&Path>,
        sources: &mut Sources,
        diags: &mut Diagnostics,
    ) -> Option<Project> {
        let root = match explicit {
            Some(p) => {
                let p = cwd.join(p);
                if !p.is_dir() {
                    diags.push(
                        Diagnostic::error(
                            Kind::Io,
                            format!("project folder `{}` does not exist", p.display()),
                        )
                        .help("`--project` takes the folder that holds `dg.toml` or `defs/`"),
                    );
                    return None;
                }
                p
            }
            None => cwd
                .ancestors()
                .find(|d| d.join(CONFIG_FILE).is_file())
                .unwrap_or(cwd)
                .to_path_buf(),
        };
        let mut project = Project {
            defs_dir: root.join("defs"),
            state_dir: root.join(".dg"),
            config_file: None,
            state_url: None,
            jobs: None,
            hooks: Hooks::default(),
            root,
        };
        let config = project.root.join(CONFIG_FILE);
        if config.is_file() {
            project.config_file = Some(config.clone());
            project.read_config(&config, cwd, sources, diags);
        }
        Some(project)
    }

    fn read_config(
        &mut self,
        path: &Path,
        cwd: &Path,
        sources: &mut Sources,
        diags: &mut Diagnostics,
    ) {
        let Some(id) = load::read_file(path, display_path(path, cwd), sources, diags) else {
            return;
        };
        let Some(raw) = load::parse(sources, id, diags) else {
            return;
        };
        let top = Reader::new(
            id,
            &raw.root,
            0..0,
            "`dg.toml`",
            &["project", "state", "run", "hooks"],
            diags,
        );
        if let Some(v) = top.get("project")
            && let Some(p) = Reader::of_value(id, v, "`[project]`", &["defs", "state"], diags)
        {
            if let Some(d) = p.str("defs", diags) {
                self.defs_dir = self.root.join(d.value);
            }
            if let Some(s) = p.str("state", diags) {
                self.state_dir = self.root.join(s.value);
            }
        }
        if let Some(v) = top.get("state")
            && let Some(s) = Reader::of_value(id, v, "`[state]`", &["url"], diags)
            && let Some(u) = s.str("url", diags)
        {
            match Template::parse(&u.value) {
                Ok(t) => {
                    // Without it every command that opens the history fails:
                    // say so where the definitions are checked.
                    for name in t.unset_vars(|n| std::env::var(n).ok()) {
                        diags.push(
                            Diagnostic::warning(
                                Kind::EnvVar,
                                format!(
                                    "environment variable `{name}` is not set (used by `[state] url`); every command that reads or writes the run history will fail"
                                ),
                            )
                            .at(&u.span, format!("needs `{name}`"))
                            .help(format!(
                                "set `{name}` before running, or give a default: `${{env:{name}:-value}}`"
                            )),
                        );
                    }
                    self.state_url = Some(t)
                }
                Err(e) => diags
                    .push(Diagnostic::error(Kind::EnvVar, e.message).at(&u.span, "in this string")),
            }
        }
        if let Some(v) = top.get("hooks")
            && let Some(h) =
                Reader::of_value(id, v, "`[hooks]`", &["on_success", "on_failure"], diags)
        {
            self.hooks.on_success = h.str("on_success", diags).map(|s| s.value);
            self.hooks.on_failure = h.str("on_failure", diags).map(|s| s.value);
        }
        if let Some(v) = top.get("run")
            && let Some(r) = Reader::of_value(id, v, "`[run]`", &["jobs"], diags)
            && let Some((n, span)) = r.int("jobs", diags)
        {
            if n < 1 {
                diags.push(
                    Diagnostic::error(Kind::InvalidValue, "`jobs` must be at least 1")
                        .at(&span, "must be 1 or more"),
                );
            } else {
                self.jobs = Some(n as usize);
            }
        }
    }
}

/// A path shown relative to `cwd` when it is below it.
pub fn display_path(path: &Path, cwd: &Path) -> String {
    path.strip_prefix(cwd)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}
