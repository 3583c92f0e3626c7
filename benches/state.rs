//! Recording cost: how long the SQLite store takes to record one step
//! (its attempt, its materialization, its lease release), in batches as the
//! recorder thread writes them. Run with `cargo bench --bench state`.

use std::time::Instant;

use dg::__internal::{
    AttemptRecord, InputRead, Lease, Materialization, Record, SqliteStore, StateStore,
};

fn step_records(i: usize) -> Vec<Record> {
    let p = format!("2024-01-01-{:05}", i);
    vec![
        Record::Attempt(AttemptRecord {
            run_id: "r1".into(),
            step_id: format!("a[{p}]"),
            asset: "a".into(),
            partition: Some(p.clone()),
            attempt: 1,
            status: "success".into(),
            started_at: "2024-01-01T00:00:00.000Z".into(),
            duration_ms: 3,
            exit_code: Some(0),
            error: None,
            log_path: Some(format!(".dg/logs/r1/a[{p}].log")),
        }),
        Record::Materialization(Materialization {
            asset: "a".into(),
            partition: Some(p.clone()),
            run_id: "r1".into(),
            created_at: "2024-01-01T00:00:00.000Z".into(),
            code_version: Some("1".into()),
            data_version: "0123456789abcdef".into(),
            inputs: vec![InputRead {
                input: "up".into(),
                asset: "up".into(),
                partition: Some(p.clone()),
                run_id: Some("r0".into()),
                data_version: Some("fedcba9876543210".into()),
            }],
            input_fp: "0011223344556677".into(),
            metadata: serde_json::json!({"dg/path": "x", "dg/bytes": 10}),
        }),
        Record::Release {
            asset: "a".into(),
            partition: p,
            run_id: "r1".into(),
        },
    ]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let n = 20_000;
    for batch in [1usize, 16, 256] {
        let t = Instant::now();
        let mut buf = Vec::new();
        for i in 0..n {
            buf.extend(step_records(i + batch * 1_000_000));
            if (i + 1) % batch == 0 {
                store.record(&buf).unwrap();
                buf.clear();
            }
        }
        if !buf.is_empty() {
            store.record(&buf).unwrap();
        }
        let per = t.elapsed().as_secs_f64() * 1e3 / n as f64;
        println!(
            "record one step (attempt + materialization + release), batches of {batch:>3}: {per:.3} ms/step"
        );
    }
    // The lease a worker takes before a step runs (one transaction each).
    let me = Lease {
        run_id: "r2".into(),
        pid: std::process::id(),
        host: dg::__internal::hostname(),
    };
    let t = Instant::now();
    for i in 0..n {
        let p = format!("p{i}");
        store.try_lease("b", &p, &me).unwrap();
    }
    println!(
        "take a lease: {:.3} ms/step",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}
