//! `dg checks`: the latest result of every asset check; and the check and
//! freshness figures `dg status` shows.

use chrono::{DateTime, FixedOffset};
use serde_json::json;

use super::Session;
use crate::error::{Error, Outcome};
use crate::model::Asset;
use crate::partitions::KeyCtx;
use crate::state::{CheckRecord, StateStore};

/// The latest results of the checks `asset` still defines, in partition
/// order, then definition order.
fn latest(store: &dyn StateStore, asset: &Asset, cx: &KeyCtx) -> anyhow::Result<Vec<CheckRecord>> {
    if asset.checks.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows: Vec<CheckRecord> = store
        .latest_checks(&asset.key)?
        .into_iter()
        .filter(|r| asset.checks.iter().any(|c| c.name == r.check))
        .collect();
    let order = |r: &CheckRecord| {
        let p = match (&asset.partitions, &r.partition) {
            (Some(d), Some(k)) => d.def.index_of(k, cx).unwrap_or(i64::MAX),
            _ => 0,
        };
        let c = asset.checks.iter().position(|c| c.name == r.check);
        (p, r.partition.clone(), c)
    };
    rows.sort_by_cached_key(order);
    Ok(rows)
}

/// Check results and freshness of one asset, for `dg status`.
pub struct Health {
    pub checks_passed: usize,
    /// Failed checks of severity `error`.
    pub checks_failed: usize,
    /// Failed checks of severity `warn`.
    pub checks_warned: usize,
    pub freshness: Option<std::time::Duration>,
    pub last_materialized_at: Option<String>,
    /// Seconds since the newest materialization, at *now*.
    pub age_s: Option<i64>,
    /// Older than its `freshness` (or never materialized).
    pub overdue: bool,
}

impl Health {
    pub fn freshness_json(&self) -> serde_json::Value {
        match self.freshness {
            None => serde_json::Value::Null,
            Some(f) => json!({
                "max_age_s": f.as_secs(),
                "last_materialized_at": self.last_materialized_at,
                "age_s": self.age_s,
                "overdue": self.overdue,
            }),
        }
    }

    /// What `dg status` adds to an asset's line.
    pub fn note(&self) -> String {
        let mut out = String::new();
        let s = |n: usize| if n == 1 { "" } else { "s" };
        if self.checks_failed > 0 {
            let n = self.checks_failed;
            out.push_str(&format!(", {n} failed check{}", s(n)));
        }
        if self.checks_warned > 0 {
            let n = self.checks_warned;
            out.push_str(&format!(", {n} check warning{}", s(n)));
        }
        if self.overdue
            && let Some(f) = self.freshness
        {
            let f = humantime::format_duration(f);
            match self.age_s {
                Some(a) => out.push_str(&format!(
                    ", overdue: last materialized {} ago (freshness {f})",
                    humantime::format_duration(std::time::Duration::from_secs(a.max(0) as u64))
                )),
                None => out.push_str(&format!(", overdue: never materialized (freshness {f})")),
            }
        }
        out
    }
}

/// Check results and freshness of `asset` at `now`.
pub fn health(
    store: &dyn StateStore,
    asset: &Asset,
    now: DateTime<FixedOffset>,
) -> anyhow::Result<Health> {
    let cx = KeyCtx::new(now.timestamp());
    let rows = latest(store, asset, &cx)?;
    let failed = |sev: &str| {
        rows.iter()
            .filter(|r| !r.passed && r.severity == sev)
            .count()
    };
    let mut h = Health {
        checks_passed: rows.iter().filter(|r| r.passed).count(),
        checks_failed: failed("error"),
        checks_warned: failed("warn"),
        freshness: asset.freshness,
        last_materialized_at: None,
        age_s: None,
        overdue: false,
    };
    if let Some(f) = asset.freshness {
        h.last_materialized_at = store.last_materialized_at(&asset.key)?;
        h.age_s = h
            .last_materialized_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| (now - t).num_seconds());
        h.overdue = match h.age_s {
            None => true,
            Some(a) => a > f.as_secs() as i64,
        };
    }
    Ok(h)
}

/// `dg checks [--select SEL] [--json]`.
pub fn checks(s: &Session, select: &str, json: bool) -> Result<Outcome, Error> {
    let (defs, _project, store) = super::history::store(s)?;
    let mut cx = KeyCtx::new(s.now.timestamp());
    crate::state::dynamic_keys(&defs, &*store, &mut cx)
        .map_err(|e| Error::store(format!("cannot read dynamic partitions: {e:#}")))?;
    let selected = crate::run::select(&defs, select)?;
    let mut all = Vec::new();
    let mut lines = Vec::new();
    let (mut passed, mut failed) = (0usize, 0usize);
    for &a in &selected {
        let asset = &defs.assets[a];
        let rows = latest(&*store, asset, &cx).map_err(|e| {
            Error::store(format!(
                "cannot read the check results of `{}`: {e:#}",
                asset.key
            ))
        })?;
        for c in &asset.checks {
            if !rows.iter().any(|r| r.check == c.name) {
                lines.push(format!(
                    "? {} `{}`: no result yet (it runs when a partition is materialized)",
                    asset.key, c.name
                ));
            }
        }
        for r in rows {
            if r.passed {
                passed += 1;
            } else {
                failed += 1;
            }
            let id = match &r.partition {
                Some(p) => format!("{}[{p}]", r.asset),
                None => r.asset.clone(),
            };
            let mark = match (r.passed, r.severity.as_str()) {
                (true, _) => "✓",
                (false, "warn") => "!",
                _ => "✗",
            };
            let msg = r
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            lines.push(format!(
                "{mark} {id} `{}` ({}){msg}  (run {})",
                r.check, r.severity, r.run_id
            ));
            all.push(r);
        }
    }
    if json {
        let items: Vec<serde_json::Value> = all
            .iter()
            .map(|r| {
                json!({
                    "asset": r.asset,
                    "partition": r.partition,
                    "check": r.check,
                    "passed": r.passed,
                    "severity": r.severity,
                    "message": r.message,
                    "metadata": r.metadata,
                    "run_id": r.run_id,
                    "created_at": r.created_at,
                    "duration_ms": r.duration_ms,
                })
            })
            .collect();
        s.out.json(&json!({"checks": items}));
    } else {
        for l in &lines {
            s.out.line(l);
        }
        s.out.info(&format!(
            "{passed} passed, {failed} failed (latest result of each check and partition)"
        ));
    }
    Ok(Outcome::Ok)
}
