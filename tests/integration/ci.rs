//! CI integration (CONTRACT §14): `--format github|gitlab|json|human` on
//! `dg check defs` and `dg materialize`, the GitHub Actions default, and
//! `dg materialize --junit FILE`.

use std::path::Path;

use quick_xml::events::Event;
use serde_json::Value;

use crate::support::{
    Run, assert_contains, assert_no_panic, dg, dg_with_env, one_file, project, read,
};

const NOW: &str = "2022-01-02T00:00:00Z";

/// A definitions file named with a comma, with an unknown field holding `%`
/// (the diagnostic's help adds a second line).
fn bad_project() -> tempfile::TempDir {
    project(&[(
        "defs/a,b.toml",
        "[assets.x]\nshell = \"true\"\n\"colour%\" = 1\n",
    )])
}

/// The workflow commands in `out`, one per line.
fn commands(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("::")).collect()
}

/// The workflow command in `out` that contains `text`; panics, showing
/// `out`, when there is none.
fn command_with<'a>(out: &'a str, text: &str) -> &'a str {
    commands(out)
        .into_iter()
        .find(|c| c.contains(text))
        .unwrap_or_else(|| panic!("no workflow command with {text:?} in:\n{out}"))
}

#[test]
fn github_format_prints_escaped_workflow_commands_then_the_human_output() {
    let dir = bad_project();
    let run = dg(dir.path(), &["check", "defs", "--format", "github"]);
    assert_no_panic(&run);
    assert_eq!(run.code, 2, "{run:?}");
    let cmds = commands(&run.stdout);
    assert_eq!(cmds.len(), 1, "{}", run.stdout);
    let c = cmds[0];
    // `,` in a property is `%2C`, `:` is `%3A`; `%` in the message is `%25`
    // and its line break `%0A`.
    assert!(
        c.starts_with(
            "::error file=defs/a%2Cb.toml,line=3,col=1,title=dg check defs%3A unknown_field::"
        ),
        "{c}"
    );
    assert!(c.contains("`colour%25`"), "{c}");
    assert!(c.contains("%0Ahelp: "), "{c}");
    assert!(!c.contains('\r') && !c[2..].contains("\n"));
    // The human rendering still follows, on stderr.
    assert_contains(&run.stderr, &["--> defs/a,b.toml:3:1"]);
}

#[test]
fn github_is_the_default_under_github_actions_only() {
    let dir = bad_project();
    let under = dg_with_env(
        dir.path(),
        &["check", "defs"],
        &[("GITHUB_ACTIONS", "true")],
    );
    assert_eq!(commands(&under.stdout).len(), 1, "{under:?}");
    assert_contains(&under.stderr, &["unknown field"]);
    let outside = dg(dir.path(), &["check", "defs"]);
    assert!(commands(&outside.stdout).is_empty(), "{outside:?}");
    // An explicit format wins over the environment.
    let human = dg_with_env(
        dir.path(),
        &["check", "defs", "--format", "human"],
        &[("GITHUB_ACTIONS", "true")],
    );
    assert!(commands(&human.stdout).is_empty(), "{human:?}");
    // Warnings are `::warning`, and a valid project passes.
    let ok = one_file(
        "[resources.store]\ntype = \"fs\"\nbase_dir = \"${env:DG_TEST_SURELY_UNSET_21}\"\n",
    );
    let run = dg_with_env(ok.path(), &["check", "defs"], &[("GITHUB_ACTIONS", "true")]);
    assert_eq!(run.code, 0, "{run:?}");
    let cmds = commands(&run.stdout);
    assert_eq!(cmds.len(), 1, "{}", run.stdout);
    assert!(
        cmds[0].starts_with("::warning file=defs/a.toml,line=3,"),
        "{}",
        cmds[0]
    );
}

#[test]
fn gitlab_format_is_a_code_quality_report_on_stdout() {
    let dir = bad_project();
    let run = dg(dir.path(), &["check", "defs", "--format", "gitlab"]);
    assert_eq!(run.code, 2, "{run:?}");
    let v: Value = serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    let issues = v.as_array().expect("an array");
    assert_eq!(issues.len(), 1);
    let i = &issues[0];
    assert_eq!(i["check_name"], "unknown_field");
    assert_eq!(i["severity"], "major");
    assert_eq!(i["location"]["path"], "defs/a,b.toml");
    assert_eq!(i["location"]["lines"]["begin"], 3);
    assert!(i["description"].as_str().unwrap().contains("colour%"));
    assert_eq!(i["fingerprint"].as_str().unwrap().len(), 32);
    // The same input gives the same fingerprint (GitLab compares them
    // between the branch and its target).
    let again = dg(dir.path(), &["check", "defs", "--format", "gitlab"]);
    let w: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(w[0]["fingerprint"], i["fingerprint"]);
    assert_contains(&run.stderr, &["unknown field"]);
    // A valid project: an empty report.
    let ok = project(&[("defs/a.toml", "[assets.x]\nshell = \"true\"\n")]);
    let run = dg(ok.path(), &["check", "defs", "--format", "gitlab"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&run.stdout).unwrap(),
        serde_json::json!([])
    );
}

/// `ok` succeeds; `bad` prints hostile text and fails; `after` reads `bad`
/// and is skipped; `ok` has a passing error-check and a failing warn-check.
const RUN: &str = r#"
[assets.ok]
shell = 'printf "a\n1\n" > "$DG_OUTPUT"'

[assets.ok.checks.has_rows]
shell = "true"

[assets.ok.checks.never]
shell = "echo 'too few <rows>' >&2; exit 1"
severity = "warn"

[assets.bad]
shell = '''
printf 'cdata end ]]> and <tag attr="x"> & \001 bell \007 \033[31mred\033[0m\n'
printf 'last words\n'
exit 3
'''

[assets.after]
deps = ["bad"]
shell = 'cat "$DG_INPUT_BAD" > "$DG_OUTPUT"'
"#;

fn materialize(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--now", NOW, "materialize"];
    all.extend(args);
    let run = dg(dir, &all);
    assert_no_panic(&run);
    run
}

#[test]
fn failed_steps_are_annotated_at_the_assets_definition() {
    let dir = one_file(RUN);
    let run = materialize(dir.path(), &["--format", "github"]);
    assert_eq!(run.code, 1, "{run:?}");
    let step = command_with(&run.stdout, "title=dg%3A step bad failed");
    // `shell` of `bad` is on line 13, column 1.
    assert!(
        step.starts_with("::error file=defs/a.toml,line=13,col=1,"),
        "{step}"
    );
    assert!(step.contains("%0Alast words"), "{step}");
    let check = command_with(&run.stdout, "check never on ok failed");
    assert!(
        check.starts_with("::warning file=defs/a.toml,line=3,"),
        "{check}"
    );
    // The summary still follows.
    assert_contains(&run.stderr, &["1 succeeded, 1 failed, 1 skipped"]);

    let gl = materialize(dir.path(), &["--format", "gitlab"]);
    let v: Value = serde_json::from_str(&gl.stdout).expect("stdout is the report alone");
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["check_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["check_failed", "step_failed"], "{v}");
}

/// A `testcase` as read back: classname, name, time, and the kind and
/// text of its child (`failure`, `skipped`, `system-out`).
#[derive(Debug, Default)]
struct Case {
    classname: String,
    name: String,
    time: f64,
    failure: Option<(String, String)>,
    skipped: Option<String>,
    out: String,
}

/// Parses a JUnit file with a real XML reader (which rejects malformed XML
/// and characters XML cannot hold), and checks the totals.
fn parse_junit(xml: &str) -> Vec<Case> {
    let mut r = quick_xml::Reader::from_str(xml);
    let mut cases: Vec<Case> = Vec::new();
    let mut totals: Option<(usize, usize, usize)> = None;
    let mut inside = String::new();
    let attr = |e: &quick_xml::events::BytesStart, k: &str| -> String {
        e.try_get_attribute(k)
            .expect("well-formed attribute")
            .map(|a| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .expect("valid attribute")
                    .into_owned()
            })
            .unwrap_or_default()
    };
    loop {
        let ev = r
            .read_event()
            .unwrap_or_else(|e| panic!("invalid XML: {e}\n{xml}"));
        match ev {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let tag = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                match tag.as_str() {
                    "testsuite" => {
                        totals = Some((
                            attr(&e, "tests").parse().unwrap(),
                            attr(&e, "failures").parse().unwrap(),
                            attr(&e, "skipped").parse().unwrap(),
                        ))
                    }
                    "testcase" => cases.push(Case {
                        classname: attr(&e, "classname"),
                        name: attr(&e, "name"),
                        time: attr(&e, "time").parse().expect("time in seconds"),
                        ..Case::default()
                    }),
                    "failure" => {
                        cases.last_mut().unwrap().failure =
                            Some((attr(&e, "message"), String::new()))
                    }
                    "skipped" => cases.last_mut().unwrap().skipped = Some(attr(&e, "message")),
                    _ => {}
                }
                inside = tag;
            }
            Event::Text(t) => {
                let s = t.xml10_content().unwrap().into_owned();
                push_text(&mut cases, &inside, &s);
            }
            Event::GeneralRef(g) => {
                let s = match &*g.decode().unwrap() {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    "apos" => "'",
                    other => panic!("unexpected entity {other}"),
                };
                push_text(&mut cases, &inside, s);
            }
            Event::End(_) => inside.clear(),
            _ => {}
        }
    }
    let (tests, failures, skipped) = totals.expect("a testsuite");
    assert_eq!(tests, cases.len());
    assert_eq!(
        failures,
        cases.iter().filter(|c| c.failure.is_some()).count()
    );
    assert_eq!(
        skipped,
        cases.iter().filter(|c| c.skipped.is_some()).count()
    );
    cases
}

fn push_text(cases: &mut [Case], inside: &str, s: &str) {
    let Some(c) = cases.last_mut() else { return };
    match inside {
        "failure" => c.failure.as_mut().unwrap().1.push_str(s),
        "system-out" => c.out.push_str(s),
        _ => {}
    }
}

#[test]
fn junit_report_has_a_case_per_step_and_check() {
    let dir = one_file(RUN);
    let run = materialize(dir.path(), &["--junit", "out/report.xml"]);
    assert_eq!(run.code, 1, "{run:?}");
    let xml = read(dir.path().join("out/report.xml"));
    for bad in ['\x01', '\x07', '\x1b'] {
        assert!(!xml.contains(bad), "{bad:?} in {xml}");
    }
    let cases = parse_junit(&xml);
    let find = |class: &str, name: &str| {
        cases
            .iter()
            .find(|c| c.classname == class && c.name == name)
            .unwrap_or_else(|| panic!("no case {class} {name} in {cases:?}"))
    };
    let ok = find("ok", "ok");
    assert!(ok.failure.is_none() && ok.skipped.is_none());
    assert!(ok.time >= 0.0);
    let bad = find("bad", "bad");
    let (message, text) = bad.failure.as_ref().expect("a failure");
    assert!(message.contains("exit"), "{message}");
    // The log tail, with the hostile text intact but for what XML cannot hold.
    assert!(
        text.contains("cdata end ]]> and <tag attr=\"x\"> &  bell  red"),
        "{text}"
    );
    assert!(text.contains("last words"), "{text}");
    assert!(text.contains("defined at defs/a.toml:13:1"), "{text}");
    assert!(find("after", "after").skipped.is_some());
    assert!(find("ok", "check has_rows").failure.is_none());
    let never = find("ok", "check never");
    assert!(
        never.failure.is_none(),
        "a warn-check does not fail the report"
    );
    assert!(never.out.starts_with("warning:"), "{never:?}");
    assert_eq!(cases.len(), 5);
    python_parses(&dir.path().join("out/report.xml"));
    junitparser_reads(&dir.path().join("out/report.xml"));
}

/// A real consumer of JUnit reports (`junitparser`, from PyPI; `.ci/run`
/// installs it) reads the totals as dg wrote them.
fn junitparser_reads(path: &Path) {
    let script = r#"
import sys
try:
    from junitparser import JUnitXml, Failure, Skipped
except ImportError:
    print("SKIP"); sys.exit(0)
xml = JUnitXml.fromfile(sys.argv[1])
cases = [c for suite in xml for c in suite]
failed = sum(1 for c in cases if any(isinstance(r, Failure) for r in c.result))
skipped = sum(1 for c in cases if any(isinstance(r, Skipped) for r in c.result))
print(len(cases), failed, skipped)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if stdout == "SKIP" {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but junitparser is missing (.ci/run installs it)"
        );
        eprintln!("skipped: junitparser is not installed");
        return;
    }
    // 5 cases: `bad` failed, `after` skipped.
    assert_eq!(stdout, "5 1 1");
}

#[test]
fn junit_report_of_a_run_with_nothing_to_do_is_empty() {
    let dir = one_file("[assets.x]\nshell = 'echo a > \"$DG_OUTPUT\"'\n");
    assert_eq!(materialize(dir.path(), &[]).code, 0);
    let run = materialize(dir.path(), &["--missing", "--junit", "r.xml"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(parse_junit(&read(dir.path().join("r.xml"))).is_empty());
    // Partitioned steps are named by their partition key.
    let dir = one_file(
        "[partitions.p]\ntype = \"static\"\nkeys = [\"k1\", \"k2\"]\n\n[assets.x]\npartitions = \"p\"\nshell = 'echo a > \"$DG_OUTPUT\"'\n",
    );
    let run = materialize(dir.path(), &["--all-partitions", "--junit", "r.xml"]);
    assert_eq!(run.code, 0, "{run:?}");
    let cases = parse_junit(&read(dir.path().join("r.xml")));
    let names: Vec<(&str, &str)> = cases
        .iter()
        .map(|c| (c.classname.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(names, [("x", "k1"), ("x", "k2")]);
}

/// A second, independent XML parser (Python's), when python3 is installed.
fn python_parses(path: &Path) {
    let Ok(out) = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); print(len(r.findall('.//testcase')))",
        ])
        .arg(path)
        .output()
    else {
        eprintln!("skipped: python3 is not installed");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5");
}

/// The workflow files of docs/ci.md: each YAML block parses (with Python's
/// PyYAML, when installed), and every `dg` command they run exists with
/// the flags they give it.
#[test]
fn ci_docs_workflows_parse_and_run_real_commands() {
    let text = read(crate::support::repo().join("docs/ci.md"));
    let blocks: Vec<&str> = text
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 2, "a GitHub workflow and a GitLab job");
    let empty = project(&[]);
    let mut seen = 0;
    for b in &blocks {
        yaml_parses(b);
        for line in b.lines() {
            let Some(at) = line
                .find("dg ")
                .filter(|&i| i == 0 || line[..i].ends_with(' ') || line[..i].ends_with("- "))
            else {
                continue;
            };
            let cmd = &line[at + 3..];
            let cmd = cmd.split(['>', '#']).next().unwrap();
            let words: Vec<&str> = cmd.split_whitespace().collect();
            let sub: Vec<&str> = words
                .iter()
                .take_while(|w| !w.starts_with('-'))
                .copied()
                .collect();
            if sub.is_empty() || sub[0] == "dg" {
                continue; // `cargo install … dg dg`
            }
            let mut args = sub.clone();
            args.push("--help");
            let help = dg(empty.path(), &args);
            assert_eq!(
                help.code,
                0,
                "`dg {}` is not a command: {help:?}",
                sub.join(" ")
            );
            for flag in words.iter().filter(|w| w.starts_with("--")) {
                assert!(
                    help.stdout.contains(flag),
                    "`dg {}` has no {flag}",
                    sub.join(" ")
                );
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 4,
        "the workflows run dg check defs, materialize and tick"
    );
}

fn yaml_parses(text: &str) {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys, yaml; yaml.safe_load(sys.stdin.read())"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        });
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true but PyYAML is missing (.ci/run installs it)"
            );
            eprintln!("skipped: PyYAML is not installed")
        }
        Ok(o) => panic!(
            "invalid YAML: {}\n{text}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => eprintln!("skipped: python3 is not installed"),
    }
}
