//! `dg report` in a real browser: headless Chromium (`DG_TEST_CHROMIUM`,
//! installed and exported by `.ci/chromium.sh`) opens the report and the
//! tests assert on what a person sees: the rendered DOM (`--dump-dom`), the
//! hover text and pixel colour of a failed partition (a probe script added
//! to a copy of the page dispatches a real `mousemove` and reads the
//! canvas), and a screenshot.
//!
//! Without `DG_TEST_CHROMIUM` the tests are skipped (a printed line); under
//! CI (`CI=true`) a missing variable fails them instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::report::{DEFS, NOW};
use crate::support::{assert_ok, dg_now, one_file, read, service};

/// The Chromium binary, or `None` (the test is skipped) when
/// `DG_TEST_CHROMIUM` is not set. Under CI (`CI=true`) a missing variable
/// fails the test instead.
pub fn chromium() -> Option<PathBuf> {
    service("DG_TEST_CHROMIUM", "browser", "chromium.sh").map(PathBuf::from)
}

/// Runs headless Chromium on `page` with `args`; its stdout. Each call has
/// its own profile folder, so tests run in parallel.
fn headless(chrome: &Path, dir: &Path, page: &Path, args: &[&str]) -> Vec<u8> {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let out = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--virtual-time-budget=5000",
            "--timeout=60000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chrome.display()));
    assert!(
        out.status.success(),
        "chromium failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The inner HTML of the element whose opening tag contains `open`, up to
/// the next `until`.
fn section<'a>(dom: &'a str, open: &str, until: &str) -> &'a str {
    let start = dom
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in the rendered page"));
    let rest = &dom[start..];
    &rest[..rest.find(until).unwrap_or(rest.len())]
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Added to a copy of the report: hovers the failed partition's cell (the
/// 30th of `events`) with a real `mousemove`, and writes the hover text and
/// the pixel colours the canvas shows into `<pre id="probe">`.
const PROBE: &str = r##"<script>
(function () {
  const c = document.querySelector('canvas[data-key="events"]');
  const at = (i) => [(i % 100) * 11 + 5, Math.floor(i / 100) * 11 + 5];
  const [x, y] = at(29);
  const r = c.getBoundingClientRect();
  c.dispatchEvent(new MouseEvent("mousemove", { clientX: r.left + x, clientY: r.top + y, bubbles: true }));
  const tip = document.getElementById("tip");
  const hex = ([px, py]) => "#" + Array.from(c.getContext("2d").getImageData(px, py, 1, 1).data.slice(0, 3))
    .map((v) => v.toString(16).padStart(2, "0")).join("");
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({ tip: tip.textContent, shown: getComputedStyle(tip).display,
    failed: hex([x, y]), first: hex(at(0)) });
  document.body.append(out);
})();
</script>
</body>"##;

#[test]
fn chromium_renders_the_report_a_person_reads() {
    let Some(chrome) = chromium() else { return };
    let p = one_file(DEFS);
    let run = dg_now(
        p.path(),
        NOW,
        &["materialize", "--all-partitions", "--json"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_ok(&dg_now(p.path(), NOW, &["report", "--out", "report.html"]));
    let page = p.path().join("report.html");

    // The page as the browser built it, after its script ran.
    let dom = String::from_utf8(headless(&chrome, p.path(), &page, &["--dump-dom"])).unwrap();
    let graph = section(&dom, r#"<div id="graph">"#, "</section>");
    let names: Vec<&str> = graph
        .match_indices(r#"<g class="node" data-key=""#)
        .map(|(i, m)| {
            let rest = &graph[i + m.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    assert_eq!(names, ["events", "daily", "trend"], "{graph}");
    for name in ["events", "daily", "trend"] {
        assert!(
            graph.contains(&format!(r#"font-weight="600">{name}</text>"#)),
            "the graph shows no node labelled {name}: {graph}"
        );
    }
    assert!(graph.contains(">time_window -1</text>"), "{graph}");
    let run = section(&dom, r#"<div id="run">"#, "</section>");
    assert!(
        run.contains(r#"<p id="run-summary">failure · 52 steps (50 success, 1 failed, 1 skipped)"#),
        "{run}"
    );
    assert_eq!(run.matches(r#"<div class="row step""#).count(), 52);
    let failures = section(&dom, r#"<div id="failures">"#, "</section>");
    assert_eq!(failures.matches(r#"<details class="failure""#).count(), 1);
    assert!(
        failures.contains(
            "<summary>events[2022-01-02-05:00]: exited with code 3 (1 attempt)</summary>"
        ),
        "{failures}"
    );
    assert!(
        failures.contains("boom: bad input at 05:00"),
        "the log tail is shown: {failures}"
    );
    let checks = section(&dom, r#"<div id="checks">"#, "</section>");
    assert_eq!(
        checks
            .matches(r#"<tr class="check" data-passed="true">"#)
            .count(),
        1
    );
    assert!(checks.contains("<td>positive</td>"), "{checks}");

    // Hovering the failed partition: its colour on the canvas and its tooltip.
    let probed = p.path().join("probed.html");
    std::fs::write(&probed, read(&page).replacen("</body>", PROBE, 1)).unwrap();
    let dom = String::from_utf8(headless(&chrome, p.path(), &probed, &["--dump-dom"])).unwrap();
    let probe = section(&dom, r#"<pre id="probe">"#, "</pre>");
    let v: Value = serde_json::from_str(&unescape(&probe[r#"<pre id="probe">"#.len()..]))
        .unwrap_or_else(|e| panic!("{e}: {probe}"));
    assert_eq!(v["failed"], "#d23b3b", "a failed partition is red: {v}");
    assert_eq!(v["first"], "#2e9d4f", "a materialized one is green: {v}");
    assert_eq!(v["tip"], "events[2022-01-02-05:00]\nfailed: 1", "{v}");
    assert_eq!(v["shown"], "block", "the tooltip is visible: {v}");

    // A screenshot: a real PNG of the window's size, far from blank (an
    // empty page's screenshot is the yardstick).
    let shot = p.path().join("report.png");
    let size = "--window-size=1280,900";
    headless(
        &chrome,
        p.path(),
        &page,
        &[&format!("--screenshot={}", shot.display()), size],
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let dim = |o: usize| u32::from_be_bytes(png[o..o + 4].try_into().unwrap());
    assert_eq!((dim(16), dim(20)), (1280, 900));
    let empty = p.path().join("empty.html");
    std::fs::write(&empty, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank_shot = p.path().join("blank.png");
    headless(
        &chrome,
        p.path(),
        &empty,
        &[&format!("--screenshot={}", blank_shot.display()), size],
    );
    let blank = std::fs::metadata(&blank_shot).unwrap().len() as usize;
    assert!(
        png.len() > 5 * blank,
        "the screenshot looks blank: {} bytes, an empty page {blank}",
        png.len()
    );
    // `DG_REPORT_SCREENSHOT=docs/report.png` keeps it (the picture in docs/report.md).
    if let Ok(keep) = std::env::var("DG_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
