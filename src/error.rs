//! Errors: one type for every stage, and the exit code each one means.
//!
//! Library code returns [`Error`]; the command line prints it once, in
//! `cli/mod.rs`, and exits with [`Error::exit_code`]. An error keeps its
//! structure until it is printed: invalid definitions carry their located
//! diagnostics and the sources to show them in, a selection error its span in
//! the `--select` text, plan errors their help, other errors their `help:`
//! lines. Nothing is flattened to a string before the renderer sees it.
//!
//! What a command *found* is not an error: a run with failed steps, or
//! definitions that `dg check defs` reports as invalid, is an [`Outcome`].

use crate::diag::{Diagnostics, Sources};
use crate::plan::PlanError;
use crate::select::SelectError;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the run had failed or skipped steps (or a file the command
/// writes could not be written).
pub const EXIT_FAILED: i32 = 1;
/// Exit code: usage, definitions, plan or state store error; nothing ran.
pub const EXIT_USAGE: i32 = 2;
/// Exit code after a hangup (128 + SIGHUP): running steps were killed.
pub const EXIT_HANGUP: i32 = 129;
/// Exit code after a second interrupt (128 + SIGINT): running steps were killed.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Why a command could not do what it was asked. Each variant is a class
/// with its exit code ([`Error::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line asks for something that is not there or cannot be
    /// (an unknown job or run, a malformed flag value). Exit 2.
    #[error("{0}")]
    Usage(Message),
    /// The project or its definitions do not validate. Exit 2.
    #[error("{0}")]
    Definitions(Box<Invalid>),
    /// `--select` is not a selection, or selects nothing. Exit 2.
    #[error("{}", .error.message)]
    Select {
        /// The selection as given, which the error's span points into.
        text: String,
        error: SelectError,
    },
    /// The selection and targeting make no plan, or the plan cannot run
    /// (inputs missing, resources that cannot be opened). Exit 2.
    #[error("{0}")]
    Plan(Message),
    /// The state store cannot be opened, read or written before anything
    /// ran. Exit 2.
    #[error("{0}")]
    Store(Message),
    /// A run (or one step of it) ran but could not be completed as a run:
    /// its history could not be written. Exit 1.
    #[error("{0}")]
    Run(Message),
    /// A file the command writes or reads for the user could not be (or
    /// would be overwritten). Exit 1.
    #[error("{0}")]
    Io(Message),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_)
            | Error::Definitions(_)
            | Error::Select { .. }
            | Error::Plan(_)
            | Error::Store(_) => EXIT_USAGE,
            Error::Run(_) | Error::Io(_) => EXIT_FAILED,
        }
    }

    /// A usage error with message `msg`.
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(Message::new(msg))
    }

    /// A state store error with message `msg`.
    pub fn store(msg: impl Into<String>) -> Self {
        Error::Store(Message::new(msg))
    }

    /// A run error with message `msg`.
    pub fn run(msg: impl Into<String>) -> Self {
        Error::Run(Message::new(msg))
    }

    /// A file error with message `msg`.
    pub fn io(msg: impl Into<String>) -> Self {
        Error::Io(Message::new(msg))
    }

    /// One plan error.
    pub fn plan(e: PlanError) -> Self {
        Error::plan_errors(&[e])
    }

    /// Plan errors. Errors in a row that share their help (the same fix
    /// for several assets) show it once, after the last of them. A help of
    /// several lines is a `help:` line each, its indented lines a list under it.
    pub fn plan_errors(errors: &[PlanError]) -> Self {
        let mut lines = Vec::new();
        for (i, e) in errors.iter().enumerate() {
            lines.push(Line::Error(e.message.clone()));
            let Some(h) = &e.help else { continue };
            if errors
                .get(i + 1)
                .is_some_and(|next| next.help.as_ref() == Some(h))
            {
                continue;
            }
            for line in h.lines() {
                if line.starts_with(' ') {
                    lines.push(Line::Text(format!("    {line}")));
                } else {
                    lines.push(Line::Help(line.to_string()));
                }
            }
        }
        Error::Plan(Message { lines })
    }

    /// Invalid definitions, ending with `could not load definitions: N errors`.
    pub fn definitions(sources: Sources, diags: Diagnostics) -> Self {
        let then = format!("could not load definitions: {diags}");
        Error::invalid(sources, diags, Some(then))
    }

    /// An invalid project (`dg.toml`): its diagnostics and nothing after them.
    pub fn project(sources: Sources, diags: Diagnostics) -> Self {
        Error::invalid(sources, diags, None)
    }

    /// Diagnostics, then `error: {then}` when given.
    pub fn invalid(sources: Sources, diags: Diagnostics, then: Option<String>) -> Self {
        Error::Definitions(Box::new(Invalid {
            sources,
            diags,
            then,
        }))
    }

    /// Adds a `help:` line, for the errors made of a [`Message`].
    pub fn help(self, help: impl Into<String>) -> Self {
        self.map_message(|m| m.help(help))
    }

    fn map_message(self, f: impl FnOnce(Message) -> Message) -> Self {
        match self {
            Error::Usage(m) => Error::Usage(f(m)),
            Error::Plan(m) => Error::Plan(f(m)),
            Error::Store(m) => Error::Store(f(m)),
            Error::Run(m) => Error::Run(f(m)),
            Error::Io(m) => Error::Io(f(m)),
            other => other,
        }
    }
}

/// Definitions that do not validate: every diagnostic (warnings too), with
/// the sources they point into.
#[derive(Debug)]
pub struct Invalid {
    pub sources: Sources,
    pub diags: Diagnostics,
    /// The `error:` line after the diagnostics, such as `could not load
    /// definitions: 2 errors`.
    pub then: Option<String>,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.then {
            Some(t) => f.write_str(t),
            None => write!(f, "invalid definitions: {}", self.diags),
        }
    }
}

/// One or more `error:` lines with the `help:` and other lines that go
/// with them, in order. Shown as `error: …` / `help: …`; its `Display` is
/// the first error's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub lines: Vec<Line>,
}

/// A line of a [`Message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `error: …`
    Error(String),
    /// `help: …`
    Help(String),
    /// Printed as it is (an indented detail).
    Text(String),
}

impl Message {
    /// A message of one error.
    pub fn new(msg: impl Into<String>) -> Self {
        Message {
            lines: vec![Line::Error(msg.into())],
        }
    }

    /// A message of several errors, one per line.
    pub fn errors<S: Into<String>>(msgs: impl IntoIterator<Item = S>) -> Self {
        Message {
            lines: msgs.into_iter().map(|m| Line::Error(m.into())).collect(),
        }
    }

    /// Adds a `help:` line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.lines.push(Line::Help(help.into()));
        self
    }

    /// Adds a line printed as it is.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.lines.push(Line::Text(text.into()));
        self
    }
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first = self.lines.iter().find_map(|l| match l {
            Line::Error(s) => Some(s.as_str()),
            _ => None,
        });
        f.write_str(first.unwrap_or("error"))
    }
}

/// What a command found, when it could do its job: the exit code of a
/// command that did not fail with an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done, nothing wrong. Exit 0.
    Ok,
    /// A run had failed or skipped steps, or `--fail-on-stale` found assets
    /// that are not up to date; the output says which. Exit 1.
    Failed,
    /// `dg check defs` found invalid definitions; its output lists them. Exit 2.
    Invalid,
    /// A second interrupt (130) or a hangup (129) killed the running steps.
    Interrupted(i32),
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Ok => EXIT_OK,
            Outcome::Failed => EXIT_FAILED,
            Outcome::Invalid => EXIT_USAGE,
            Outcome::Interrupted(code) => code,
        }
    }

    /// [`Outcome::Ok`] when `ok`, else [`Outcome::Failed`].
    pub fn ok_if(ok: bool) -> Self {
        if ok { Outcome::Ok } else { Outcome::Failed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_its_exit_code() {
        assert_eq!(Error::usage("x").exit_code(), EXIT_USAGE);
        assert_eq!(
            Error::definitions(Sources::default(), Diagnostics::default()).exit_code(),
            EXIT_USAGE
        );
        assert_eq!(Error::plan(PlanError::new("p")).exit_code(), EXIT_USAGE);
        assert_eq!(Error::store("s").exit_code(), EXIT_USAGE);
        assert_eq!(Error::run("r").exit_code(), EXIT_FAILED);
        assert_eq!(Error::io("i").exit_code(), EXIT_FAILED);
        assert_eq!(Outcome::Ok.exit_code(), EXIT_OK);
        assert_eq!(Outcome::Failed.exit_code(), EXIT_FAILED);
        assert_eq!(Outcome::Invalid.exit_code(), EXIT_USAGE);
        assert_eq!(
            Outcome::Interrupted(EXIT_INTERRUPTED).exit_code(),
            EXIT_INTERRUPTED
        );
    }

    #[test]
    fn a_help_shared_by_plan_errors_in_a_row_is_shown_once() {
        let e = Error::plan_errors(&[
            PlanError::new("a").help("fix\n  - x"),
            PlanError::new("b").help("fix\n  - x"),
        ]);
        let Error::Plan(m) = e else { unreachable!() };
        assert_eq!(
            m.lines,
            [
                Line::Error("a".into()),
                Line::Error("b".into()),
                Line::Help("fix".into()),
                Line::Text("      - x".into()),
            ]
        );
    }

    #[test]
    fn the_first_error_is_the_display() {
        let e = Error::usage("unknown job `x`").help("did you mean `y`?");
        assert_eq!(e.to_string(), "unknown job `x`");
        let Error::Usage(m) = e else { unreachable!() };
        assert_eq!(m.lines[1], Line::Help("did you mean `y`?".into()));
    }
}
