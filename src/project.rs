//! Finding a project and reading `dg.toml`.

use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Diagnostics, FileId, Kind, Sources, Span};
use crate::interp::Template;
use crate::load::{self, Reader};
use toml::de::DeValue;

/// The tables of `dg.toml` and their fields (also `dg schema config`).
pub(crate) const CONFIG_TOP: &[&str] = &[
    "project", "state", "run", "pools", "profiles", "hooks", "executor",
];

/// Fields of `[executor]` in dg.toml.
pub(crate) const EXECUTOR_FIELDS: &[&str] = &[
    "type",
    "partition",
    "account",
    "qos",
    "time",
    "mem",
    "cpus_per_task",
    "max_array",
    "extra_args",
];

/// Fields of `[assets.KEY.executor]`: the Slurm options, those of
/// `[executor]` after its first, `type`.
pub(crate) const ASSET_EXECUTOR_FIELDS: &[&str] = match EXECUTOR_FIELDS {
    [_type, slurm_options @ ..] => slurm_options,
    [] => &[],
};

/// The executor types `[executor] type` accepts.
pub(crate) const EXECUTOR_TYPES: &[&str] = &["local", "slurm"];
pub(crate) const PROFILE_FIELDS: &[&str] = &["resources", "env"];
pub(crate) const PROJECT_FIELDS: &[&str] = &["defs", "state"];
pub(crate) const STATE_FIELDS: &[&str] = &["url"];
pub(crate) const HOOKS_FIELDS: &[&str] = &["on_success", "on_failure"];
pub(crate) const RUN_FIELDS: &[&str] = &["jobs"];

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
    /// `[executor] type`.
    pub executor: crate::model::ExecutorKind,
    /// `[executor]`: the Slurm options of every step.
    pub slurm: crate::model::SlurmOptions,
    /// `[pools]`: at most N steps of a pool at once, across every run that
    /// shares the state store.
    pub pools: std::collections::BTreeMap<String, u32>,
    /// `dg.toml` as read into the sources (its `[profiles.*.resources]` are
    /// validated with the definitions).
    pub config_id: Option<FileId>,
    /// `[profiles.NAME]`, in definition order.
    pub profiles: Vec<Profile>,
    /// The profile in force (`--profile` / `DG_PROFILE`), once selected.
    pub selected_profile: Option<String>,
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

/// A `[profiles.NAME]` of `dg.toml`: resources that replace the
/// definitions' own (validated with them) and environment variables.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// `[profiles.NAME.env]`: values may use `${env:…}` of the process.
    pub env: Vec<(String, Template, Span)>,
}

impl Project {
    /// A project in folder `root` before its `dg.toml` is read: `defs/` and
    /// `.dg/` in it, every setting at its default.
    pub fn at(root: PathBuf) -> Project {
        Project {
            defs_dir: root.join("defs"),
            state_dir: root.join(".dg"),
            config_file: None,
            state_url: None,
            jobs: None,
            executor: Default::default(),
            slurm: Default::default(),
            pools: Default::default(),
            config_id: None,
            profiles: Vec::new(),
            selected_profile: None,
            hooks: Hooks::default(),
            root,
        }
    }

    /// The profile called `name`.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// Selects profile `name` (`--profile` / `DG_PROFILE`): its variables
    /// win over the process environment from now on. An unknown name is an
    /// error listing the known ones.
    pub fn select_profile(&mut self, name: &str, diags: &mut Diagnostics) -> bool {
        let Some(p) = self.profile(name) else {
            let names: Vec<&str> = self.profiles.iter().map(|p| p.name.as_str()).collect();
            let help = if names.is_empty() {
                "`dg.toml` defines no profile; add a `[profiles.NAME]` table (e.g. `[profiles.prod.env]`)".to_string()
            } else {
                let known = format!("known profiles: {}", crate::diag::list_names(&names));
                match crate::diag::did_you_mean(name, names.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`? {known}"),
                    None => known,
                }
            };
            diags.push(
                Diagnostic::error(Kind::UnknownReference, format!("unknown profile `{name}`"))
                    .help(help),
            );
            return false;
        };
        let mut vars = Vec::new();
        for (k, t, span) in &p.env {
            match t.resolve(|n| std::env::var(n).ok()) {
                Ok(v) => vars.push((k.clone(), v)),
                Err(e) => diags.push(
                    Diagnostic::warning(
                        Kind::EnvVar,
                        format!("`{k}` of profile `{name}` is left unset: {e}"),
                    )
                    .at(span, "needs an unset variable"),
                ),
            }
        }
        crate::interp::set_overlay(vars);
        self.selected_profile = Some(name.to_string());
        true
    }
}

/// The largest pool limit accepted.
pub const MAX_POOL_LIMIT: i64 = 10_000;

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
        let root =
            match explicit {
                Some(p) => {
                    let p = cwd.join(p);
                    if p.is_file() {
                        let parent = p.parent().unwrap_or(cwd);
                        diags.push(
                        Diagnostic::error(
                            Kind::Io,
                            format!("`--project` takes a folder, and `{}` is a file", p.display()),
                        )
                        .help(format!(
                            "pass the folder that holds `dg.toml` or `defs/`, e.g. `--project {}`",
                            parent.display()
                        )),
                    );
                        return None;
                    }
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
        let mut project = Project::at(root);
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
        self.config_id = Some(id);
        let Some(raw) = load::parse(sources, id, diags) else {
            return;
        };
        let top = Reader::new(id, &raw.root, "`dg.toml`").known_fields(CONFIG_TOP, diags);
        if let Some((profiles, _)) = top.table("profiles", diags) {
            for (k, v) in profiles.iter() {
                let name = k.get_ref().to_string();
                let what = format!("profile `{name}`");
                let Some(p) = Reader::of_value(id, v, &what, PROFILE_FIELDS, diags) else {
                    continue;
                };
                // Its resources are checked with the definitions.
                let _ = p.table("resources", diags);
                let mut env = Vec::new();
                for (var, val) in p.str_map("env", diags).unwrap_or_default() {
                    match Template::parse(&val.value) {
                        Ok(t) => env.push((var.value, t, val.span)),
                        Err(e) => diags.push(
                            Diagnostic::error(Kind::EnvVar, e.message)
                                .at(&val.span, "in this string"),
                        ),
                    }
                }
                self.profiles.push(Profile { name, env });
            }
        }
        if let Some(v) = top.get("project")
            && let Some(p) = Reader::of_value(id, v, "`[project]`", PROJECT_FIELDS, diags)
        {
            if let Some(d) = p.str("defs", diags) {
                self.defs_dir = self.root.join(d.value);
            }
            if let Some(s) = p.str("state", diags) {
                self.state_dir = self.root.join(s.value);
            }
        }
        if let Some(v) = top.get("state")
            && let Some(s) = Reader::of_value(id, v, "`[state]`", STATE_FIELDS, diags)
            && let Some(u) = s.str("url", diags)
        {
            match Template::parse(&u.value) {
                Ok(t) => {
                    // Without it every command that opens the history fails:
                    // say so where the definitions are checked.
                    for name in t.unset_vars(crate::interp::env_var) {
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
            && let Some(h) = Reader::of_value(id, v, "`[hooks]`", HOOKS_FIELDS, diags)
        {
            self.hooks.on_success = h.str("on_success", diags).map(|s| s.value);
            self.hooks.on_failure = h.str("on_failure", diags).map(|s| s.value);
        }
        if let Some(v) = top.get("run")
            && let Some(r) = Reader::of_value(id, v, "`[run]`", RUN_FIELDS, diags)
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
        if let Some(v) = top.get("executor")
            && let Some(r) = Reader::of_value(id, v, "`[executor]`", EXECUTOR_FIELDS, diags)
        {
            if let Some(t) = r.str("type", diags) {
                match t.value.as_str() {
                    "local" => self.executor = crate::model::ExecutorKind::Local,
                    "slurm" => self.executor = crate::model::ExecutorKind::Slurm,
                    other => diags.push(
                        Diagnostic::error(
                            Kind::InvalidValue,
                            format!("unknown executor type `{other}` in `[executor]`"),
                        )
                        .at(&t.span, "unknown executor type")
                        .help(crate::diag::suggest(
                            other,
                            EXECUTOR_TYPES,
                            "executor types",
                        )),
                    ),
                }
            }
            self.slurm = read_slurm_options(&r, diags);
        }
        if let Some((t, _)) = top.table("pools", diags) {
            for (k, v) in t.iter() {
                let name: &str = k.get_ref();
                let span = Span::new(id, v.span());
                match v.get_ref() {
                    DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                        Ok(n) if (1..=MAX_POOL_LIMIT).contains(&n) => {
                            self.pools.insert(name.to_string(), n as u32);
                        }
                        _ => diags.push(
                            Diagnostic::error(
                                Kind::InvalidValue,
                                format!(
                                    "pool `{name}` must allow between 1 and {MAX_POOL_LIMIT} steps at once"
                                ),
                            )
                            .at(&span, "out of range")
                            .help("a pool's value is how many of its steps may run at once, across every run"),
                        ),
                    },
                    _ => diags.push(
                        Diagnostic::error(
                            Kind::WrongType,
                            format!("pool `{name}` in `[pools]` must be an integer"),
                        )
                        .at(&span, "expected an integer")
                        .help(format!("for example `{name} = 2`: at most 2 of its steps at once")),
                    ),
                }
            }
        }
    }
}

/// The Slurm options of an `[executor]` table (dg.toml's, or an asset's),
/// each checked where it is written.
pub(crate) fn read_slurm_options(
    r: &Reader<'_, '_>,
    diags: &mut Diagnostics,
) -> crate::model::SlurmOptions {
    let mut o = crate::model::SlurmOptions::default();
    let text = |key: &str, diags: &mut Diagnostics| {
        let s = r.str(key, diags)?;
        if s.value.trim().is_empty() {
            diags.push(
                Diagnostic::error(
                    Kind::InvalidValue,
                    format!("`{key}` in {} is empty", r.what()),
                )
                .at(&s.span, "empty")
                .help(format!("leave `{key}` out to use the cluster's default")),
            );
            return None;
        }
        Some(s)
    };
    o.partition = text("partition", diags).map(|s| s.value);
    o.account = text("account", diags).map(|s| s.value);
    o.qos = text("qos", diags).map(|s| s.value);
    // A value that `read` accepts (as it is to be passed on), else an error at it.
    let checked = |key: &str, read: fn(&str) -> Result<String, NotA>, diags: &mut Diagnostics| {
        let s = text(key, diags)?;
        read(&s.value)
            .map_err(|(not_a, label, help)| {
                diags.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!("`{key} = \"{}\"` in {} is not {not_a}", s.value, r.what()),
                    )
                    .at(&s.span, label)
                    .help(help),
                )
            })
            .ok()
    };
    o.time = checked("time", slurm_time, diags);
    o.mem = checked("mem", slurm_mem, diags);
    for (key, slot, max) in [
        ("cpus_per_task", &mut o.cpus_per_task, 100_000),
        ("max_array", &mut o.max_array, 1_000_000),
    ] {
        if let Some((n, span)) = r.int(key, diags) {
            if (1..=max).contains(&n) {
                *slot = Some(n as u32);
            } else {
                diags.push(
                    Diagnostic::error(
                        Kind::InvalidValue,
                        format!("`{key}` in {} must be between 1 and {max}", r.what()),
                    )
                    .at(&span, "out of range"),
                );
            }
        }
    }
    if let Some(args) = r.str_array("extra_args", diags) {
        o.extra_args = Some(args.into_iter().map(|a| a.value).collect());
    }
    o
}

/// What a Slurm option's value is not: what it should be, the label under
/// the value, and the help.
type NotA = (&'static str, &'static str, &'static str);

/// `time`, as `sbatch --time` takes it.
fn slurm_time(t: &str) -> Result<String, NotA> {
    if slurm_time_ok(t) {
        Ok(t.to_string())
    } else {
        Err((
            "a Slurm time limit",
            "not a time limit",
            "write minutes (`90`), `HH:MM:SS` (`01:30:00`), `D-HH:MM` (`1-12:00`) or `UNLIMITED`, as `sbatch --time` takes them",
        ))
    }
}

/// Whether `t` is a time limit `sbatch --time` accepts: `M`, `M:S`,
/// `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`, `UNLIMITED` or `INFINITE`.
fn slurm_time_ok(t: &str) -> bool {
    let t = t.trim();
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite") {
        return true;
    }
    let num = |s: &str| !s.is_empty() && s.len() <= 6 && s.chars().all(|c| c.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    if days.is_some_and(|d| !num(d)) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    parts.iter().all(|p| num(p)) && (1..=3).contains(&parts.len())
}

/// `mem`, as `sbatch --mem` takes it (trimmed): digits and an optional unit.
fn slurm_mem(m: &str) -> Result<String, NotA> {
    let v = m.trim();
    let digits = v.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    if !digits.is_empty()
        && digits.len() + 1 >= v.len()
        && digits.chars().all(|c| c.is_ascii_digit())
    {
        Ok(v.to_string())
    } else {
        Err((
            "an amount of memory",
            "not an amount of memory",
            "write a number with an optional unit K, M, G or T, as `sbatch --mem` takes it: `500M`, `4G`",
        ))
    }
}

/// A path shown relative to `cwd` when it is below it.
pub fn display_path(path: &Path, cwd: &Path) -> String {
    path.strip_prefix(cwd)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}
