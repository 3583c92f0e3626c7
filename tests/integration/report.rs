//! `dg report`: one self-contained HTML file. The tests read the JSON the
//! page embeds, and (when `node` is installed) run the page's own script
//! against a minimal DOM (`tests/fixtures/report/harness.js`) to check what
//! it draws: the graph's nodes and mapping labels, a failed partition's
//! colour and hover text, the run's steps, failures and checks. The same
//! page in headless Chromium: `report_browser.rs`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{
    Run, assert_contains, assert_fails_with, assert_ok, dg_now, find, hourly_daily, items,
    one_file, read, repo, text_rows,
};

pub(crate) const NOW: &str = "2022-01-03T00:00:00Z";

pub(crate) const DEFS: &str = concat!(
    hourly_daily!(),
    r#"
[assets.events]
partitions = "hourly"
shell = '''
if [ "$DG_PARTITION_KEY" = "2022-01-02-05:00" ]; then echo "boom: bad input at 05:00" >&2; exit 3; fi
printf 'n\n1\n' > "$DG_OUTPUT"
'''

[assets.daily]
partitions = "daily"
deps = ["events"]
sql = "SELECT count(*) AS n FROM events"

[assets.daily.checks.positive]
sql = "SELECT * FROM daily WHERE n <= 0"

[assets.trend]
partitions = "daily"
shell = 'cat "$DG_INPUT_YESTERDAY" > "$DG_OUTPUT"'

[assets.trend.ins.yesterday]
asset = "daily"
mapping = { type = "time_window", start_offset = -1, end_offset = -1, allow_nonexistent = true }
"#
);

/// The JSON a report embeds.
fn data(html: &str) -> Value {
    let start = html
        .find(r#"<script id="dg-data" type="application/json">"#)
        .expect("the data element");
    let body = &html[start..];
    let open = body.find('>').unwrap() + 1;
    let close = body.find("</script>").unwrap();
    serde_json::from_str(&body[open..close]).expect("the embedded data is JSON")
}

/// What the page's script draws, or `None` without `node`.
fn drawn(file: &Path) -> Option<Value> {
    let harness = repo().join("tests/fixtures/report/harness.js");
    let out = match Command::new("node").arg(harness).arg(file).output() {
        Ok(o) => o,
        Err(_) => {
            eprintln!("skipped the page's script: `node` is not installed");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "the page's script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("the harness prints JSON"))
}

/// The id of the run `run` (a `--json` summary).
fn run_id(run: &Run) -> String {
    crate::support::json(run)["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Materializes the hour `hour` of `events` in the project `dir`, checks
/// that it succeeded, and returns the run's id.
fn materialize_hour(dir: &Path, hour: &str) -> String {
    let run = dg_now(
        dir,
        NOW,
        &[
            "materialize",
            "--select",
            "events",
            "--partition",
            hour,
            "--json",
        ],
    );
    assert_ok(&run);
    run_id(&run)
}

fn asset<'a>(d: &'a Value, key: &str) -> &'a Value {
    find(&d["assets"], "key", key)
}

#[test]
fn the_report_shows_graph_partitions_run_failures_and_checks() {
    let p = one_file(DEFS);
    let first_id = materialize_hour(p.path(), "2022-01-01-00:00");
    let run = dg_now(
        p.path(),
        NOW,
        &["materialize", "--all-partitions", "--json"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let run_id = run_id(&run);

    let rep = dg_now(p.path(), NOW, &["report", "--out", "out/report.html"]);
    // A folder that does not exist is an error, not a panic.
    assert_fails_with(&rep, 2, &["cannot write"]);
    let rep = dg_now(p.path(), NOW, &["report"]);
    assert_ok(&rep);
    assert_contains(
        &rep.stdout,
        &[&format!("wrote report.html (3 assets, run {run_id}")],
    );
    let html = read(p.path().join("report.html"));

    // Self-contained: nothing is fetched.
    for needle in [
        "<link",
        "<script src",
        "@import",
        "<img",
        "<iframe",
        "fetch(",
        "XMLHttpRequest",
    ] {
        assert!(!html.contains(needle), "the report refers to {needle}");
    }
    // The only URL is the SVG namespace, an identifier that is never fetched.
    assert_eq!(
        html.matches("http").count(),
        html.matches("\"http://www.w3.org/2000/svg\"").count()
    );
    let d = data(&html);
    assert_eq!(d["run"]["id"], run_id.as_str());

    // The graph, layered, with mapping labels.
    let layers: Vec<(String, u64)> = items(&d["assets"])
        .iter()
        .map(|a| {
            (
                a["key"].as_str().unwrap().to_string(),
                a["layer"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        layers,
        vec![
            ("events".into(), 0),
            ("daily".into(), 1),
            ("trend".into(), 2)
        ]
    );
    assert_eq!(
        text_rows(&d["edges"], &["from", "to", "label"]),
        [
            ["events", "daily", "time_window"],
            ["daily", "trend", "time_window -1"]
        ]
    );

    // Partitions by status: 48 hours, one failed; the day that read it was skipped (missing).
    let events = asset(&d, "events");
    assert_eq!(events["counts"]["materialized"], 47, "{events}");
    assert_eq!(events["counts"]["failed"], 1);
    let cells = events["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 48);
    assert_eq!(
        cells[29],
        serde_json::json!(["2022-01-02-05:00", "2022-01-02-05:00", 0, 0, 0, 1, 0])
    );
    let daily = asset(&d, "daily");
    assert_eq!(daily["counts"]["materialized"], 1, "{daily}");
    assert_eq!(daily["counts"]["missing"], 1);

    // The run: every step, with its attempts; the failure with its log tail.
    let steps = d["run"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 48 + 2 + 2, "{:#}", d["run"]);
    let failed: Vec<&Value> = steps.iter().filter(|s| s["status"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["id"], "events[2022-01-02-05:00]");
    let f = &d["run"]["failures"][0];
    assert_eq!(f["step"], "events[2022-01-02-05:00]");
    assert_eq!(f["error"], "exited with code 3");
    assert!(
        items(&f["log_tail"])
            .iter()
            .any(|l| l == "boom: bad input at 05:00"),
        "{f:#}"
    );
    // Checks of the run.
    let checks = d["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0]["check"], "positive");
    assert_eq!(checks[0]["passed"], true);

    // What a person sees, drawn by the page's own script.
    if let Some(v) = drawn(&p.path().join("report.html")) {
        assert_eq!(v["nodes"], serde_json::json!(["events", "daily", "trend"]));
        assert_eq!(v["edges"][1]["label"], "time_window -1");
        let grid = &v["grids"][0];
        assert_eq!(grid["key"], "events");
        let cell = &grid["cells"][29];
        assert_eq!(
            cell["color"], "#d23b3b",
            "a failed partition is red: {cell}"
        );
        assert_eq!(cell["tip"], "events[2022-01-02-05:00]\nfailed: 1");
        assert_eq!(grid["cells"][0]["color"], "#2e9d4f");
        assert_eq!(v["steps"].as_array().unwrap().len(), 52);
        assert!(
            v["run_summary"]
                .as_str()
                .unwrap()
                .starts_with("failure · 52 steps ("),
            "{}",
            v["run_summary"]
        );
        assert!(
            v["failures"][0]
                .as_str()
                .unwrap()
                .contains("boom: bad input at 05:00")
        );
        assert_eq!(v["checks"][0][3], "positive");
    }

    // An older run, by id.
    let rep = dg_now(
        p.path(),
        NOW,
        &["report", "--run", &first_id, "--out", "first.html"],
    );
    assert_ok(&rep);
    let d = data(&read(p.path().join("first.html")));
    assert_eq!(d["run"]["steps"].as_array().unwrap().len(), 1);
    assert_eq!(d["run"]["status"], "success");
    let rep = dg_now(p.path(), NOW, &["report", "--run", "nope"]);
    assert_eq!(rep.code, 2);
    assert_contains(&rep.stderr, &["no run `nope` in the history"]);
}

#[test]
fn the_report_aggregates_100000_partitions_into_cells() {
    // Hourly from 2010 to 2022: about 105,000 partitions.
    let p = one_file(
        r#"
[partitions.hourly]
type = "hourly"
start = "2010-01-01-00:00"

[assets.big]
partitions = "hourly"
shell = "printf 'n\n1\n' > \"$DG_OUTPUT\""

[assets.big.checks.never_two]
sql = "SELECT * FROM big WHERE n = 1 AND :partition_key = '2021-12-31-23:00'"
"#,
    );
    let now = "2022-01-01T00:00:00Z";
    assert_ok(&dg_now(
        p.path(),
        now,
        &[
            "materialize",
            "--partition-range",
            "2021-12-31-20:00...2021-12-31-23:00",
        ],
    ));
    let rep = dg_now(p.path(), now, &["report", "--out", "big.html"]);
    assert_ok(&rep);
    let html = read(p.path().join("big.html"));
    assert!(html.len() < 200_000, "{} bytes", html.len());
    let d = data(&html);
    let big = asset(&d, "big");
    let total: u64 = big["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(total > 100_000, "{total}");
    assert_eq!(big["counts"]["materialized"], 3);
    assert_eq!(big["counts"]["check_failed"], 1);
    let cells = big["cells"].as_array().unwrap();
    assert!(cells.len() <= 1000 && cells.len() > 900, "{}", cells.len());
    let per = big["per_cell"].as_u64().unwrap();
    assert_eq!(per, total.div_ceil(1000));
    // The cell holding the last day has the check failure and the three others.
    let last = cells.last().unwrap();
    assert_eq!(last[2], 3);
    assert_eq!(last[4], 1);
    assert_eq!(big["check_failures"][0]["partition"], "2021-12-31-23:00");
    if let Some(v) = drawn(&p.path().join("big.html")) {
        let grid = &v["grids"][0];
        assert_eq!(grid["cells"].as_array().unwrap().len(), cells.len());
        let tip = grid["cells"].as_array().unwrap().last().unwrap()["tip"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(tip.starts_with("big["), "{tip}");
        assert!(
            tip.contains("check failed: 1") && tip.contains("materialized: 3"),
            "{tip}"
        );
        assert!(tip.contains("check never_two (error) failed"), "{tip}");
        assert_eq!(
            grid["cells"].as_array().unwrap().last().unwrap()["color"],
            "#e8772e"
        );
    }
}

/// One HTTP GET against `dg ui`: (status line, body).
fn get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("dg ui listens");
    write!(c, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[test]
fn dg_ui_serves_the_report_live_from_the_history() {
    use std::io::BufRead;
    let p = one_file(DEFS);
    let first_id = materialize_hour(p.path(), "2022-01-01-00:00");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("dg"))
        .args([
            "--project",
            p.path().to_str().unwrap(),
            "--now",
            NOW,
            "ui",
            "--port",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let result = std::panic::catch_unwind(|| {
        let port: u16 = line
            .trim()
            .strip_prefix("serving http://127.0.0.1:")
            .and_then(|r| r.strip_suffix("/ (Ctrl-C to stop)"))
            .unwrap_or_else(|| panic!("{line}"))
            .parse()
            .unwrap();
        let (status, body) = get(port, "/");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.contains(r#"<meta http-equiv="refresh""#));
        assert_eq!(data(&body)["run"]["id"], first_id.as_str());
        // A new run shows on the next request.
        let id = materialize_hour(p.path(), "2022-01-01-01:00");
        let (_, body) = get(port, "/data.json");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["run"]["id"], id.as_str());
        assert_eq!(v["assets"][0]["counts"]["materialized"], 2);
        assert_eq!(get(port, "/nope").0, "HTTP/1.1 404 Not Found");
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
