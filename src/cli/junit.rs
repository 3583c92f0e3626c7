//! `dg materialize --junit FILE`: the run as a JUnit XML report, the format
//! CI systems read test results in (GitHub test reporters, GitLab's
//! `artifacts:reports:junit`, Jenkins).
//!
//! One `testcase` per step (`classname` = asset key, `name` = partition key
//! or the asset key) and one per check. A failed step has a `failure` with
//! its error and the tail of its log; a skipped step has `skipped`; a check
//! of severity `error` that failed is a `failure`, one of severity `warn`
//! passes with the warning in `system-out`. Text from steps is made valid
//! XML: quick-xml escapes markup, and characters XML 1.0 cannot hold
//! (control characters, terminal escapes) are removed first.

use std::io::Write;
use std::path::Path;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

/// What happened to one test case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// A message (one line) and details (the log tail).
    Failed {
        message: String,
        details: String,
    },
    Skipped {
        message: String,
    },
}

/// One `testcase`.
#[derive(Clone, Debug)]
pub struct Case {
    pub classname: String,
    pub name: String,
    pub seconds: f64,
    pub outcome: Outcome,
    /// Shown as `system-out` (a warning of a check, …).
    pub output: Option<String>,
}

/// Writes the report to `path` (through a temporary file, so a reader never
/// sees half of it).
pub fn write(path: &Path, suite: &str, timestamp: &str, cases: &[Case]) -> anyhow::Result<()> {
    let xml = render(suite, timestamp, cases)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("xml.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&xml)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The report as bytes.
pub fn render(suite: &str, timestamp: &str, cases: &[Case]) -> anyhow::Result<Vec<u8>> {
    let count = |f: fn(&Outcome) -> bool| cases.iter().filter(|c| f(&c.outcome)).count();
    let tests = cases.len().to_string();
    let failures = count(|o| matches!(o, Outcome::Failed { .. })).to_string();
    let skipped = count(|o| matches!(o, Outcome::Skipped { .. })).to_string();
    let time = format!("{:.3}", cases.iter().map(|c| c.seconds).sum::<f64>());
    let suite = clean(suite);

    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let totals = [
        ("tests", tests.as_str()),
        ("failures", failures.as_str()),
        ("errors", "0"),
        ("skipped", skipped.as_str()),
        ("time", time.as_str()),
    ];
    let mut root = BytesStart::new("testsuites");
    root.push_attribute(("name", "dg"));
    root.extend_attributes(totals);
    w.write_event(Event::Start(root))?;
    let mut s = BytesStart::new("testsuite");
    s.push_attribute(("name", suite.as_str()));
    s.extend_attributes(totals);
    s.push_attribute(("timestamp", timestamp));
    w.write_event(Event::Start(s))?;
    for c in cases {
        let mut t = BytesStart::new("testcase");
        let (classname, name) = (clean(&c.classname), clean(&c.name));
        let seconds = format!("{:.3}", c.seconds);
        t.push_attribute(("classname", classname.as_str()));
        t.push_attribute(("name", name.as_str()));
        t.push_attribute(("time", seconds.as_str()));
        if c.outcome == Outcome::Passed && c.output.is_none() {
            w.write_event(Event::Empty(t))?;
            continue;
        }
        w.write_event(Event::Start(t))?;
        match &c.outcome {
            Outcome::Passed => {}
            Outcome::Failed { message, details } => {
                let message = clean(first_line(message));
                let mut f = BytesStart::new("failure");
                f.push_attribute(("message", message.as_str()));
                f.push_attribute(("type", "failure"));
                w.write_event(Event::Start(f))?;
                text(&mut w, details)?;
                w.write_event(Event::End(BytesEnd::new("failure")))?;
            }
            Outcome::Skipped { message } => {
                let message = clean(message);
                let mut k = BytesStart::new("skipped");
                k.push_attribute(("message", message.as_str()));
                w.write_event(Event::Empty(k))?;
            }
        }
        if let Some(out) = &c.output {
            w.write_event(Event::Start(BytesStart::new("system-out")))?;
            text(&mut w, out)?;
            w.write_event(Event::End(BytesEnd::new("system-out")))?;
        }
        w.write_event(Event::End(BytesEnd::new("testcase")))?;
    }
    w.write_event(Event::End(BytesEnd::new("testsuite")))?;
    w.write_event(Event::End(BytesEnd::new("testsuites")))?;
    let mut bytes = w.into_inner();
    bytes.push(b'\n');
    Ok(bytes)
}

/// Element text, escaped (so `]]>` or `<` in a log is plain text).
fn text(w: &mut Writer<Vec<u8>>, s: &str) -> anyhow::Result<()> {
    w.write_event(Event::Text(BytesText::new(&clean(s))))?;
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Removes terminal escape sequences and every character XML 1.0 cannot
/// hold (controls other than tab, newline and carriage return; U+FFFE and
/// U+FFFF).
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte (0x40..=0x7e).
            if chars.peek() == Some(&'[') {
                chars.next();
                for n in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&n) {
                        break;
                    }
                }
            }
            continue;
        }
        let ok = matches!(c, '\t' | '\n' | '\r')
            || (c >= '\x20' && c != '\u{FFFE}' && c != '\u{FFFF}' && c != '\x7f');
        if ok {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_removes_what_xml_cannot_hold() {
        assert_eq!(
            clean("a\x00b\x1b[31mred\x1b[0m\x07\u{FFFE}\tc\n"),
            "abred\tc\n"
        );
    }

    #[test]
    fn hostile_text_round_trips() {
        let cases = [Case {
            classname: "a\"<b>".into(),
            name: "k&]]>".into(),
            seconds: 1.5,
            outcome: Outcome::Failed {
                message: "boom <x>".into(),
                details: "x ]]> y <z> & \x01".into(),
            },
            output: None,
        }];
        let xml = String::from_utf8(render("s", "t", &cases).unwrap()).unwrap();
        let mut r = quick_xml::Reader::from_str(&xml);
        let mut texts = String::new();
        loop {
            match r.read_event().unwrap() {
                Event::Eof => break,
                Event::Text(t) => texts.push_str(&t.xml10_content().unwrap()),
                Event::GeneralRef(g) => texts.push_str(match &*g.decode().unwrap() {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    other => panic!("{other}"),
                }),
                _ => {}
            }
        }
        assert!(texts.contains("x ]]> y <z> & "), "{xml}");
        assert!(!xml.contains('\x01'));
    }
}
