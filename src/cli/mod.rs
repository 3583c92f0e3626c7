//! Stage 8: the command line.
//!
//! Parsing (clap) is kept apart from the commands. Each command loads what it
//! needs through [`Session`], prints its output for humans or as JSON, and
//! returns `Result<Outcome, Error>` ([`crate::error`]). Errors are printed
//! here, in one place ([`Session::print_error`]), and both become the exit
//! code here: 0 success, 1 a run with failed or skipped steps, 2 a usage,
//! definitions or plan error.

mod checks;
pub mod ci;
mod defs;
mod history;
mod init;
mod junit;
mod output;
pub mod plan;
mod report;
mod run;
mod scaffold;
mod schema;
mod step;
mod tick;

use std::io::IsTerminal;
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::diag::{Diagnostic, Diagnostics, Kind, Render, Sources};
use crate::error::{Error, Line, Message, Outcome};
use crate::io::Registry;
use crate::model::Defs;
use crate::project::Project;

pub use output::Out;

pub use crate::error::{EXIT_OK, EXIT_USAGE};

#[derive(Parser, Debug)]
#[command(
    name = "dg",
    version,
    about = "A fast asset orchestrator: software-defined assets, partitions and I/O managers in one binary",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Project folder (default: the nearest folder above holding dg.toml, else the current one)
    #[arg(long, global = true, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// The time to plan for, RFC 3339 (default: the wall clock)
    #[arg(long, global = true, env = "DG_NOW", value_name = "RFC3339")]
    pub now: Option<String>,
    /// More output (-v: debug, -vv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output (only errors)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
    /// When to use colour
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// The `[profiles.NAME]` of dg.toml in force: its resources and environment
    #[arg(long, global = true, env = "DG_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate things
    Check {
        #[command(subcommand)]
        what: CheckWhat,
    },
    /// List things
    List {
        #[command(subcommand)]
        what: ListWhat,
    },
    /// Resolve the selection and partitions into steps; nothing runs
    Plan {
        #[command(flatten)]
        target: plan::TargetArgs,
        /// Print the plan as JSON
        #[arg(long, conflicts_with = "graph")]
        json: bool,
        /// Print the selected assets' graph instead, as DOT or Mermaid
        #[arg(long, value_enum, value_name = "FORMAT")]
        graph: Option<plan::GraphFormat>,
    },
    /// Run the plan: materialize the selected assets' partitions
    Materialize {
        /// Run a `[jobs.NAME]`: its selection, targeting and missing/stale;
        /// flags given here override the job's
        #[arg(long, value_name = "NAME")]
        job: Option<String>,
        #[command(flatten)]
        target: plan::TargetArgs,
        #[command(flatten)]
        run: run::RunArgs,
    },
    /// Run one planned step of a run here and record it in the run's state store
    ///
    /// What an executor's job runs: `dg step RUN_ID STEP_ID` reads the step's
    /// spec, which `dg materialize` recorded when the run started, from the
    /// state store; `dg step --spec FILE` (`-`: stdin) takes it as JSON.
    /// Exit 0 the step succeeded, 1 it failed or was skipped, 2 nothing ran.
    Step {
        /// The run id (see `dg runs`)
        #[arg(required_unless_present = "spec", conflicts_with = "spec")]
        run_id: Option<String>,
        /// The step id, such as `daily[2024-01-01]`
        #[arg(required_unless_present = "spec", conflicts_with = "spec")]
        step_id: Option<String>,
        /// Read the step spec (JSON) from FILE, or from stdin with `-`
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// The first attempt number (default: the spec's, 1)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        attempt: Option<u32>,
    },
    /// Run the jobs whose cron ticked since their last recorded tick
    Tick {
        /// Say what is due and why; run nothing and record nothing
        #[arg(long)]
        dry_run: bool,
        /// Print what was due and what ran as JSON (run progress goes to stderr)
        #[arg(long)]
        json: bool,
    },
    /// Per asset: materialized, failed, missing and stale partitions
    Status {
        /// Assets to include (selection syntax)
        #[arg(long, short = 's', default_value = "*", value_name = "SEL")]
        select: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
        /// Exit 1 when a selected asset has missing, failed or stale partitions,
        /// failed error-checks, or is older than its `freshness`
        #[arg(long)]
        fail_on_stale: bool,
    },
    /// The latest result of every asset check, per partition
    Checks {
        /// Assets to include (selection syntax)
        #[arg(long, short = 's', default_value = "*", value_name = "SEL")]
        select: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Write one self-contained HTML file: the asset graph, partitions by status, a run's
    /// timeline, failures and check results
    Report {
        /// Assets to include (selection syntax)
        #[arg(long, short = 's', default_value = "*", value_name = "SEL")]
        select: String,
        /// The run to show (default: the newest)
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
        /// Where to write it
        #[arg(long, short = 'o', default_value = "report.html", value_name = "FILE")]
        out: PathBuf,
    },
    /// Serve the report on 127.0.0.1, built again from the run history for every request
    Ui {
        /// Assets to include (selection syntax)
        #[arg(long, short = 's', default_value = "*", value_name = "SEL")]
        select: String,
        /// The port (0: any free one; the address is printed)
        #[arg(long, default_value_t = 8421, value_name = "N")]
        port: u16,
    },
    /// Recorded runs, newest first; `dg runs show RUN_ID` for one
    Runs {
        #[command(subcommand)]
        show: Option<RunsCmd>,
        /// Print as JSON
        #[arg(long)]
        json: bool,
        /// How many runs to list
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
    /// Print the logs of a run, or of one of its steps
    Logs {
        /// The run id (see `dg runs`)
        run_id: String,
        /// A step id such as `daily[2024-01-01]`
        step: Option<String>,
    },
    /// Manage the keys of dynamic partitions
    Partitions {
        #[command(subcommand)]
        cmd: PartitionsCmd,
    },
    /// Create a new project, with an example that runs at once
    Init {
        /// The project folder, created when missing (default: the current folder)
        dir: Option<PathBuf>,
    },
    /// Write a new definitions file from a template
    Scaffold {
        #[command(subcommand)]
        what: scaffold::ScaffoldWhat,
    },
    /// Print a JSON Schema (draft 2020-12) of a definitions file or of dg.toml, for editors
    Schema {
        /// Which file
        #[arg(value_enum, default_value_t = SchemaOf::Defs)]
        of: SchemaOf,
        /// Write both schemas into the state folder (`<state>/schema/`), where the
        /// `#:schema` lines of the files `dg init` and `dg scaffold defs` write point
        #[arg(long)]
        write: bool,
    },
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaOf {
    /// A definitions file (`defs/*.toml`)
    Defs,
    /// `dg.toml`
    Config,
}

#[derive(Subcommand, Debug)]
pub enum RunsCmd {
    /// One run: its steps, attempts and materializations
    Show {
        run_id: String,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PartitionsCmd {
    /// Add keys to a dynamic partitions definition (in order; existing keys are kept)
    Add {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Remove keys from a dynamic partitions definition
    Remove {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CheckWhat {
    /// Validate every definition and report every error at once
    Defs {
        /// Print the result as JSON (the same as `--format json`)
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Treat warnings (unset environment variables) as errors
        #[arg(long)]
        strict: bool,
        /// How to print: `github` (workflow commands) is the default under
        /// GitHub Actions when stderr is not a terminal, else `human`
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<ci::Format>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ListWhat {
    /// Assets, resources and partitions definitions
    Defs {
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Jobs: selection, targeting, cron, time zone and next tick at --now
    Jobs {
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// Keys of a partitions definition or of an asset's partitions, in order
    Partitions {
        /// A partitions definition name or an asset key
        name: String,
        /// Print as JSON: {"name": …, "keys": [..]}
        #[arg(long)]
        json: bool,
    },
}

/// What every command gets: where it runs, when "now" is, how to print.
pub struct Session {
    pub cwd: PathBuf,
    pub now: DateTime<FixedOffset>,
    pub registry: Registry,
    pub out: Out,
    pub global: GlobalArgs,
}

/// A loaded project: its sources, diagnostics, and definitions when valid.
pub struct Loaded {
    pub project: Option<Project>,
    pub sources: Sources,
    pub diags: Diagnostics,
    pub defs: Option<Defs>,
}

impl Session {
    /// Finds the project alone (its definitions are not read), with the
    /// sources and diagnostics gathered on the way; an error when there is
    /// no project.
    pub fn project(&self) -> Result<(Project, Sources, Diagnostics), Error> {
        let mut sources = Sources::default();
        let mut diags = Diagnostics::default();
        match Project::discover(
            &self.cwd,
            self.global.project.as_deref(),
            &mut sources,
            &mut diags,
        ) {
            Some(project) => Ok((project, sources, diags)),
            None => Err(Error::project(sources, diags)),
        }
    }

    /// Finds the project and validates its definitions.
    pub fn load(&self) -> Loaded {
        self.load_profile(self.global.profile.as_deref())
    }

    /// [`Session::load`] with profile `profile` in force.
    pub fn load_profile(&self, profile: Option<&str>) -> Loaded {
        let mut sources = Sources::default();
        let mut diags = Diagnostics::default();
        let mut project = Project::discover(
            &self.cwd,
            self.global.project.as_deref(),
            &mut sources,
            &mut diags,
        );
        if let (Some(p), Some(name)) = (&mut project, profile)
            && !name.is_empty()
        {
            p.select_profile(name, &mut diags);
        }
        let env = crate::interp::env_var;
        let defs = match &project {
            Some(p) if !diags.has_errors() => crate::validate::load_defs(
                p,
                &self.cwd,
                &self.registry,
                &env,
                &mut sources,
                &mut diags,
            ),
            _ => None,
        };
        // Job selections are checked against the assets once they are valid.
        let defs = defs.and_then(|d| {
            let errors = crate::select::check_jobs(&d, &sources);
            let ok = errors.is_empty();
            for e in errors {
                diags.push(e);
            }
            diags.sort();
            ok.then_some(d)
        });
        // Everything printed from now on hides the project's secrets.
        if let Some(d) = &defs {
            crate::secrets::register(&crate::model::masker_for(d, &crate::interp::env_var));
        }
        if let Some(u) = project
            .as_ref()
            .and_then(|p| p.state_url.as_ref())
            .and_then(|t| t.resolve_env().ok())
        {
            let mut m = crate::secrets::Masker::default();
            m.add_url(&u);
            crate::secrets::register(&m);
        }
        Loaded {
            project,
            sources,
            diags,
            defs,
        }
    }

    /// Prints diagnostics to stderr.
    pub fn report(&self, sources: &Sources, diags: &Diagnostics) {
        let r = Render {
            sources,
            color: self.out.color_err,
        };
        for d in &diags.items {
            if !d.is_error() && self.global.quiet > 0 {
                continue;
            }
            self.out.err(&r.diagnostic(d));
            self.out.err("");
        }
    }

    /// Loads the project and its definitions. Warnings are shown; errors
    /// (with the warnings among them) are the `Err`.
    pub fn load_defs(&self) -> Result<(crate::project::Project, Defs), Error> {
        self.load_defs_profile(self.global.profile.as_deref())
    }

    /// [`Session::load_defs`] with profile `profile` in force.
    pub fn load_defs_profile(
        &self,
        profile: Option<&str>,
    ) -> Result<(crate::project::Project, Defs), Error> {
        let loaded = self.load_profile(profile);
        match loaded {
            Loaded {
                project: Some(p),
                defs: Some(d),
                sources,
                diags,
            } => {
                self.report(&sources, &diags);
                Ok((p, d))
            }
            Loaded { sources, diags, .. } => Err(Error::definitions(sources, diags)),
        }
    }

    /// Prints an error on stderr: the one place errors are shown.
    pub fn print_error(&self, e: &Error) {
        match e {
            Error::Usage(m) | Error::Plan(m) | Error::Store(m) | Error::Run(m) | Error::Io(m) => {
                self.print_message(m)
            }
            Error::Definitions(inv) => {
                self.report(&inv.sources, &inv.diags);
                if let Some(then) = &inv.then {
                    self.out.error(then);
                }
            }
            Error::Select { text, error } => self.out.err(&error.render(text, self.out.color_err)),
        }
    }

    fn print_message(&self, m: &Message) {
        for line in &m.lines {
            match line {
                Line::Error(s) => self.out.error(s),
                Line::Help(s) => self.out.err(&format!("help: {s}")),
                Line::Text(s) => self.out.err(s),
            }
        }
    }

    /// The exit code of a command's result, its error printed.
    pub fn finish(&self, r: Result<Outcome, Error>) -> i32 {
        match r {
            Ok(o) => o.exit_code(),
            Err(e) => {
                self.print_error(&e);
                e.exit_code()
            }
        }
    }
}

/// Runs the CLI with the built-in resource types.
pub fn main() -> i32 {
    run_with(Registry::builtin())
}

/// Runs the CLI with a registry that may hold extra resource types, for
/// programs that embed dg.
pub fn run_with(registry: Registry) -> i32 {
    if std::env::args_os().nth(1).as_deref() == Some(crate::exec::process::REAPER_ARG.as_ref()) {
        return crate::exec::process::reaper_main();
    }
    crate::exec::process::enable_reaper();
    install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    run_cli(cli, registry)
}

/// Runs an already parsed command line.
pub fn run_cli(cli: Cli, registry: Registry) -> i32 {
    let color_choice = if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
        && cli.global.color == ColorChoice::Auto
    {
        ColorChoice::Never
    } else {
        cli.global.color
    };
    let color = |tty: bool| match color_choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => tty,
    };
    let out = Out {
        color_out: color(std::io::stdout().is_terminal()),
        color_err: color(std::io::stderr().is_terminal()),
        quiet: cli.global.quiet > 0,
    };
    init_tracing(cli.global.verbose);
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            out.error(&format!("cannot read the current directory: {e}"));
            return EXIT_USAGE;
        }
    };
    let now = match &cli.global.now {
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t,
            Err(e) => {
                let d = Diagnostic::error(
                    Kind::InvalidValue,
                    format!("invalid `--now` / DG_NOW value `{s}`: {e}"),
                )
                .help("use RFC 3339, e.g. `2024-01-02T00:00:00Z` or `2024-01-02T09:00:00+01:00`");
                out.diagnostic_plain(&d);
                return EXIT_USAGE;
            }
        },
        None => chrono::Utc::now().fixed_offset(),
    };
    let session = Session {
        cwd,
        now,
        registry,
        out,
        global: cli.global.clone(),
    };
    let result = dispatch(&session, cli.command);
    session.finish(result)
}

/// Runs one command.
fn dispatch(session: &Session, command: Command) -> Result<Outcome, Error> {
    match command {
        Command::Check {
            what:
                CheckWhat::Defs {
                    json,
                    strict,
                    format,
                },
        } => defs::check(session, ci::Format::resolve(format, json), strict),
        Command::List {
            what: ListWhat::Defs { json },
        } => defs::list(session, json),
        Command::List {
            what: ListWhat::Partitions { name, json },
        } => plan::list_partitions(session, &name, json),
        Command::Plan {
            target,
            json,
            graph,
        } => plan::plan(session, &target, json, graph),
        Command::Materialize { job, target, run } => {
            run::materialize(session, &target, &run, job.as_deref())
        }
        Command::Step {
            run_id,
            step_id,
            spec,
            attempt,
        } => step::step(
            session,
            run_id.as_deref().zip(step_id.as_deref()),
            spec.as_deref(),
            attempt,
        ),
        Command::Tick { dry_run, json } => tick::tick(session, dry_run, json),
        Command::List {
            what: ListWhat::Jobs { json },
        } => tick::list_jobs(session, json),
        Command::Status {
            select,
            json,
            fail_on_stale,
        } => history::status(session, &select, json, fail_on_stale),
        Command::Checks { select, json } => checks::checks(session, &select, json),
        Command::Report { select, run, out } => {
            report::report(session, &select, run.as_deref(), &out)
        }
        Command::Ui { select, port } => report::ui(session, &select, port),
        Command::Runs {
            show: Some(RunsCmd::Show { run_id, json }),
            ..
        } => history::run_show(session, &run_id, json),
        Command::Runs {
            show: None,
            json,
            limit,
        } => history::runs(session, json, limit as usize),
        Command::Logs { run_id, step } => history::logs(session, &run_id, step.as_deref()),
        Command::Partitions {
            cmd: PartitionsCmd::Add { name, keys },
        } => history::partitions_edit(session, &name, &keys, true),
        Command::Partitions {
            cmd: PartitionsCmd::Remove { name, keys },
        } => history::partitions_edit(session, &name, &keys, false),
        Command::Init { dir } => init::init(session, dir.as_deref()),
        Command::Scaffold { what } => scaffold::scaffold(session, &what),
        Command::Completions { shell } => {
            init::completions(shell);
            Ok(Outcome::Ok)
        }
        Command::Schema { of, write: false } => {
            session.out.json(&match of {
                SchemaOf::Defs => crate::validate::schema::defs(&session.registry),
                SchemaOf::Config => crate::validate::schema::config(&session.registry),
            });
            Ok(Outcome::Ok)
        }
        Command::Schema { write: true, .. } => schema_write(session),
    }
}

/// `dg schema --write`: both schemas into the project's state folder.
fn schema_write(s: &Session) -> Result<Outcome, Error> {
    let (project, _, _) = s.project()?;
    let (defs, config) = schema::write_schemas(&project.state_dir, &s.registry).map_err(|e| {
        Error::io(format!(
            "cannot write the schemas into {}: {e}",
            project.state_dir.join("schema").display()
        ))
    })?;
    for p in [defs, config] {
        s.out.line(&crate::project::display_path(&p, &s.cwd));
    }
    Ok(Outcome::Ok)
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => return,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// A panic is a bug in dg: say so plainly, without a Rust backtrace.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error in dg: {msg}{at}");
        eprintln!("help: this is a bug; please report it with the command you ran");
    }));
}
