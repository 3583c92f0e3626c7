//! Writing to stdout and stderr: colour decisions, quiet mode, broken pipes.

use std::io::Write;

use crate::diag::{Diagnostic, Render, Sources};

/// Whether `c` reorders or hides text on a terminal: bidirectional
/// controls (which can make `a[x]` read as something else) and zero-width
/// characters. The zero-width joiner of emoji sequences is kept.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}' | '\u{200C}' | '\u{200E}' | '\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}')
}

/// `s` with every [`invisible`] character written as `\uXXXX`: visible on a
/// terminal, and inside a JSON string the same escape means the same
/// character, so `--json` output decodes to the original text.
pub fn visible(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(invisible) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if invisible(c) {
            out.push_str(&format!("\\u{:04X}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// serde_json's compact format, writing [`invisible`] characters as
/// `\uXXXX` escapes (the same string, visible on a terminal).
struct VisibleJson;

impl serde_json::ser::Formatter for VisibleJson {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut rest = fragment;
        while let Some((i, c)) = rest.char_indices().find(|&(_, c)| invisible(c)) {
            w.write_all(&rest.as_bytes()[..i])?;
            write!(w, "\\u{:04X}", c as u32)?;
            rest = &rest[i + c.len_utf8()..];
        }
        w.write_all(rest.as_bytes())
    }
}

/// Writes `s` as a JSON string for a stream of JSON (`--json` outputs
/// written piece by piece), invisible characters escaped.
pub fn write_json_str(w: &mut dyn Write, s: &str) -> std::io::Result<()> {
    use serde::Serialize;
    let mut ser = serde_json::Serializer::with_formatter(w, VisibleJson);
    s.serialize(&mut ser).map_err(std::io::Error::other)
}

/// Writes `s` as one line, masked ([`crate::secrets::mask`]) and with
/// invisible characters shown. A closed pipe is not an error.
fn write_line(w: &mut impl Write, s: &str) {
    let s = crate::secrets::mask(s);
    let _ = writeln!(w, "{}", visible(&s));
}

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
        write_line(&mut std::io::stdout().lock(), s);
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
        write_line(&mut std::io::stderr().lock(), s);
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

#[cfg(test)]
mod tests {
    use super::visible;

    #[test]
    fn invisible_characters_are_shown_and_json_keeps_its_meaning() {
        assert_eq!(visible("a[x]"), "a[x]");
        assert_eq!(visible("a[\u{202E}x]"), "a[\\u202Ex]");
        assert_eq!(visible("\u{200B}k"), "\\u200Bk");
        // Emoji sequences keep their joiner.
        assert_eq!(visible("👨\u{200D}👩"), "👨\u{200D}👩");
        let json = serde_json::json!({"partition": "x\u{202E}y"}).to_string();
        let shown = visible(&json);
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back["partition"], "x\u{202E}y");
        let mut buf = Vec::new();
        super::write_json_str(&mut buf, "k\u{202E}\"q\u{FEFF}").unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text, "\"k\\u202E\\\"q\\uFEFF\"");
        assert_eq!(
            serde_json::from_str::<String>(&text).unwrap(),
            "k\u{202E}\"q\u{FEFF}"
        );
    }
}
