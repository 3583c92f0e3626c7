//! Writing to stdout and stderr: colour decisions, quiet mode, broken pipes.

use std::io::Write;

use crate::diag::{Diagnostic, Render, Sources};

/// Where output goes and how it looks.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    pub color_out: bool,
    pub color_err: bool,
    pub quiet: bool,
}

impl Out {
    /// A line on stdout. A closed pipe (`dg … | head`) is not an error.
    /// Every line goes through the secrets masker ([`crate::secrets::mask`]).
    pub fn line(&self, s: &str) {
        let s = crate::secrets::mask(s);
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{s}");
    }

    /// Text on stdout as it is (it holds its own newlines), masked.
    pub fn raw(&self, s: &str) {
        if s.is_empty() {
            return;
        }
        let s = crate::secrets::mask(s);
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(s.as_bytes());
        let _ = o.flush();
    }

    /// A line on stdout that `-q` silences.
    pub fn info(&self, s: &str) {
        if !self.quiet {
            self.line(s);
        }
    }

    /// A line on stderr.
    pub fn err(&self, s: &str) {
        let s = crate::secrets::mask(s);
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{s}");
    }

    /// `error: …` on stderr.
    pub fn error(&self, msg: &str) {
        if self.color_err {
            self.err(&format!("\x1b[1;91merror\x1b[0m\x1b[1m: {msg}\x1b[0m"));
        } else {
            self.err(&format!("error: {msg}"));
        }
    }

    /// `warning: …` on stderr.
    pub fn warn(&self, msg: &str) {
        if self.color_err {
            self.err(&format!("\x1b[1;93mwarning\x1b[0m\x1b[1m: {msg}\x1b[0m"));
        } else {
            self.err(&format!("warning: {msg}"));
        }
    }

    /// A diagnostic that points at no file.
    pub fn diagnostic_plain(&self, d: &Diagnostic) {
        let sources = Sources::default();
        let r = Render {
            sources: &sources,
            color: self.color_err,
        };
        self.err(&r.diagnostic(d));
    }

    /// `s` in bold green when colour is on (stdout).
    pub fn green(&self, s: &str) -> String {
        if self.color_out {
            format!("\x1b[1;32m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    /// `s` dimmed when colour is on (stdout).
    pub fn dim(&self, s: &str) -> String {
        if self.color_out {
            format!("\x1b[2m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    /// Pretty JSON on stdout.
    pub fn json(&self, v: &serde_json::Value) {
        self.line(&serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into()));
    }
}
