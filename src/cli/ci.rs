//! CI integration: diagnostics and failed steps as GitHub workflow commands
//! or a GitLab Code Quality report, and the `--format` choice.
//!
//! Both renderings take [`Finding`]s: a located problem with a severity,
//! built from a diagnostic (`dg check defs`) or from a failed step or check
//! of a run (located at the asset's definition).

use std::io::IsTerminal;

use serde_json::json;

use crate::diag::{Diagnostics, Severity, Sources};

/// How `dg check defs` and the failure report of `dg materialize` print.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// For people: rendered diagnostics on stderr
    Human,
    /// One JSON document on stdout
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`) on stdout, then the human output
    Github,
    /// A GitLab Code Quality report (JSON) on stdout, then the human output on stderr
    Gitlab,
}

impl Format {
    /// The format in force: the one given, else `json` for `--json`, else
    /// `github` under GitHub Actions when stderr is not a terminal, else `human`.
    pub fn resolve(given: Option<Format>, json: bool) -> Format {
        if let Some(f) = given {
            return f;
        }
        if json {
            return Format::Json;
        }
        let gha = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
        if gha && !std::io::stderr().is_terminal() {
            Format::Github
        } else {
            Format::Human
        }
    }
}

/// A located problem, as CI systems show it.
#[derive(Clone, Debug)]
pub struct Finding {
    pub severity: Severity,
    /// A short name of what failed (`unknown_field`, `step_failed`, …).
    pub check: String,
    /// A one-line title (GitHub shows it above the message).
    pub title: String,
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub col: Option<usize>,
}

impl Finding {
    /// Every diagnostic of a load, with its help appended to the message.
    pub fn from_diagnostics(diags: &Diagnostics, sources: &Sources) -> Vec<Finding> {
        diags
            .items
            .iter()
            .map(|d| {
                let j = crate::diag::JsonDiagnostic::new(d, sources);
                let mut message = d.message.clone();
                if let Some(l) = j.label.as_deref().filter(|l| !l.is_empty()) {
                    message.push_str(&format!(" ({l})"));
                }
                if let Some(h) = &d.help {
                    message.push_str(&format!("\nhelp: {h}"));
                }
                let check = serde_json::to_value(d.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "definitions".into());
                Finding {
                    severity: d.severity,
                    title: format!("dg check defs: {check}"),
                    check,
                    message,
                    file: j.file,
                    line: j.line,
                    col: j.column,
                }
            })
            .collect()
    }

    /// Splits `file:line:column` (as in `Asset::defined_at`) into its
    /// parts; the file may itself hold `:`.
    pub fn locate(mut self, defined_at: &str) -> Finding {
        let mut parts = defined_at.rsplitn(3, ':');
        let (col, line, file) = (parts.next(), parts.next(), parts.next());
        match (
            file,
            line.and_then(|l| l.parse().ok()),
            col.and_then(|c| c.parse().ok()),
        ) {
            (Some(f), Some(l), Some(c)) => {
                self.file = Some(f.to_string());
                self.line = Some(l);
                self.col = Some(c);
            }
            _ if !defined_at.is_empty() => self.file = Some(defined_at.to_string()),
            _ => {}
        }
        self
    }
}

/// Escapes the message of a workflow command.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value of a workflow command.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// One workflow command per finding: `::error file=…,line=…,col=…,title=…::message`.
pub fn github(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let cmd = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut props = Vec::new();
        if let Some(file) = &f.file {
            props.push(format!("file={}", escape_property(file)));
            if let Some(l) = f.line {
                props.push(format!("line={l}"));
            }
            if let Some(c) = f.col {
                props.push(format!("col={c}"));
            }
        }
        props.push(format!("title={}", escape_property(&f.title)));
        out.push_str(&format!(
            "::{cmd} {}::{}\n",
            props.join(","),
            escape_data(&f.message)
        ));
    }
    out
}

/// A GitLab Code Quality report: a JSON array of issues. A finding with
/// no file points at `fallback` (the project's `dg.toml`), line 1.
pub fn gitlab(findings: &[Finding], fallback: &str) -> serde_json::Value {
    let issues: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            let path = f.file.as_deref().unwrap_or(fallback);
            let line = f.line.unwrap_or(1);
            let fingerprint = format!(
                "{:032x}",
                twox_hash::XxHash3_128::oneshot(
                    // Not the whole message: a step's holds its log's path,
                    // which changes with every run.
                    format!(
                        "{}\0{path}\0{line}\0{}\0{}",
                        f.check,
                        f.title,
                        f.message.lines().next().unwrap_or("")
                    )
                    .as_bytes()
                )
            );
            json!({
                "description": f.message,
                "check_name": f.check,
                "fingerprint": fingerprint,
                "severity": match f.severity {
                    Severity::Error => "major",
                    Severity::Warning => "minor",
                },
                "location": {"path": path, "lines": {"begin": line}},
            })
        })
        .collect();
    serde_json::Value::Array(issues)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(msg: &str, file: &str) -> Finding {
        Finding {
            severity: Severity::Error,
            check: "x".into(),
            title: "t: a,b".into(),
            message: msg.into(),
            file: Some(file.into()),
            line: Some(3),
            col: Some(9),
        }
    }

    #[test]
    fn workflow_commands_escape_payload_and_properties() {
        let s = github(&[finding("100% bad\r\nnext: a,b", "defs/a:b,c.toml")]);
        assert_eq!(
            s,
            "::error file=defs/a%3Ab%2Cc.toml,line=3,col=9,title=t%3A a%2Cb::100%25 bad%0D%0Anext: a,b\n"
        );
    }

    #[test]
    fn locate_splits_from_the_right() {
        let f = finding("m", "x").locate("defs/we:ird.toml:12:5");
        assert_eq!(f.file.as_deref(), Some("defs/we:ird.toml"));
        assert_eq!((f.line, f.col), (Some(12), Some(5)));
    }

    #[test]
    fn gitlab_fingerprints_are_stable_and_distinct() {
        let a = gitlab(&[finding("m", "a.toml"), finding("n", "a.toml")], "dg.toml");
        let b = gitlab(&[finding("m", "a.toml")], "dg.toml");
        assert_eq!(a[0]["fingerprint"], b[0]["fingerprint"]);
        assert_ne!(a[0]["fingerprint"], a[1]["fingerprint"]);
        assert_eq!(a[0]["location"]["lines"]["begin"], 3);
        assert_eq!(a[0]["severity"], "major");
    }
}
