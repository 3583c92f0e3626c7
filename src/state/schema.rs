//! The SQL both stores share: the migrations' table definitions (each
//! store's column types filled in) and the statements whose text is the same
//! in SQLite and Postgres. Statements are written with SQLite's numbered
//! placeholders (`?1`); the Postgres store runs them through [`pg`], which
//! turns them into `$1`. Statements that differ between the two (upserts,
//! collations, row locks) stay in their store.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The columns of `runs` a [`super::RunRecord`] is read from, in order (a
/// macro, so statements can be built from it at compile time).
macro_rules! run_columns {
    () => {
        "id, started_at, ended_at, status, selection, partitions, dg_version, pid, host, steps, profile, config"
    };
}
pub(crate) use run_columns;

/// The columns of `check_results` a [`super::CheckRecord`] is read from, in order.
macro_rules! check_columns {
    () => {
        "run_id, asset, partition, check_name, passed, severity, message, metadata, created_at, duration_ms"
    };
}
pub(crate) use check_columns;

/// `sql` with Postgres placeholders: every `?N` becomes `$N`. Converted once
/// per statement and kept for the life of the process (the statements are a
/// fixed set of constants).
pub(crate) fn pg(sql: &'static str) -> &'static str {
    static DONE: Mutex<BTreeMap<&'static str, &'static str>> = Mutex::new(BTreeMap::new());
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    done.entry(sql)
        .or_insert_with(|| Box::leak(dollars(sql).into_boxed_str()))
}

/// `sql` with every `?` that precedes a digit replaced by `$`.
fn dollars(sql: &str) -> String {
    let bytes = sql.as_bytes();
    sql.char_indices()
        .map(|(i, c)| match c {
            '?' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => '$',
            c => c,
        })
        .collect()
}

pub(crate) const INSERT_RUN: &str = concat!(
    "INSERT INTO runs (",
    run_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
);
pub(crate) const RUN: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = ?1");
pub(crate) const END_RUN: &str =
    "UPDATE runs SET status = ?2, ended_at = ?3, steps = ?4 WHERE id = ?1";
pub(crate) const INTERRUPT_RUN: &str =
    "UPDATE runs SET status = 'interrupted', ended_at = ?2 WHERE id = ?1";
pub(crate) const RELEASE_RUN_LEASES: &str = "DELETE FROM leases WHERE run_id = ?1";
pub(crate) const RELEASE_LEASE: &str =
    "DELETE FROM leases WHERE asset = ?1 AND partition = ?2 AND run_id = ?3";
pub(crate) const HEARTBEAT: &str =
    "UPDATE leases SET expires_at = ?4 WHERE run_id = ?1 AND pid = ?2 AND host = ?3";

pub(crate) const INSERT_MATERIALIZATION: &str = "INSERT INTO materializations
     (asset, partition, run_id, created_at, code_version, data_version, inputs, input_fp, metadata)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
pub(crate) const MATERIALIZATIONS: &str = "SELECT asset, partition, run_id, created_at, code_version, data_version, inputs, input_fp, metadata
     FROM materializations WHERE run_id = ?1 ORDER BY id";
pub(crate) const LAST_MATERIALIZED_AT: &str =
    "SELECT max(created_at) FROM materializations WHERE asset = ?1";

pub(crate) const PARTITION_FAILED: &str = "INSERT INTO partition_state (asset, partition, status, updated_at)
     VALUES (?1, ?2, 'failed', ?3)
     ON CONFLICT (asset, partition) DO UPDATE SET status = 'failed', updated_at = excluded.updated_at";
pub(crate) const PARTITION_STATES: &str =
    "SELECT partition, status, run_id, code_version, data_version, input_fp
     FROM partition_state WHERE asset = ?1";
pub(crate) const MATERIALIZED: &str =
    "SELECT partition FROM partition_state WHERE asset = ?1 AND run_id IS NOT NULL";
pub(crate) const LATEST_MATERIALIZATION: &str = "SELECT run_id, updated_at FROM partition_state
     WHERE asset = ?1 AND partition = ?2 AND run_id IS NOT NULL AND status = 'materialized'";

pub(crate) const INSERT_CHECK: &str = concat!(
    "INSERT INTO check_results (",
    check_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
);
pub(crate) const RUN_CHECKS: &str = concat!(
    "SELECT ",
    check_columns!(),
    " FROM check_results WHERE run_id = ?1 ORDER BY id"
);

pub(crate) const DYNAMIC_KEYS: &str =
    "SELECT key FROM dynamic_partitions WHERE name = ?1 ORDER BY position";
pub(crate) const NEXT_DYNAMIC_POSITION: &str =
    "SELECT COALESCE(MAX(position), -1) + 1 FROM dynamic_partitions WHERE name = ?1";
pub(crate) const REMOVE_DYNAMIC_KEY: &str =
    "DELETE FROM dynamic_partitions WHERE name = ?1 AND key = ?2";

pub(crate) const STEP_SPEC: &str = "SELECT spec FROM step_specs WHERE run_id = ?1 AND step_id = ?2";
pub(crate) const STEP_RESULTS: &str = "SELECT run_id, step_id, attempt, status, attempts, error, blocked_by, log_path, host, finished_at
     FROM step_results WHERE run_id = ?1";

pub(crate) const POOL_HOLDERS: &str = "SELECT slot, pid, host FROM pool_slots WHERE pool = ?1";
pub(crate) const TAKE_POOL_SLOT: &str =
    "INSERT INTO pool_slots (pool, slot, run_id, pid, host, step_id, acquired_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
pub(crate) const RECLAIM_POOL_SLOT: &str = "DELETE FROM pool_slots WHERE pool = ?1 AND slot = ?2";
pub(crate) const RELEASE_POOL_SLOT: &str =
    "DELETE FROM pool_slots WHERE pool = ?1 AND slot = ?2 AND run_id = ?3";
pub(crate) const RELEASE_RUN_POOL_SLOTS: &str = "DELETE FROM pool_slots WHERE run_id = ?1";

pub(crate) const LAST_TICKS: &str = "SELECT job, MAX(tick) FROM job_ticks GROUP BY job";
pub(crate) const FINISH_TICK: &str =
    "UPDATE job_ticks SET status = ?3, run_id = ?4, ended_at = ?5 WHERE job = ?1 AND tick = ?2";

/// The migrations of a store, each entry upgrading the schema by one
/// version: the same tables in both stores, in each one's types. `int`: the
/// 64-bit integer type; `flag`: the boolean one; `serial` and `check_serial`:
/// the generated primary keys of `materializations` and `check_results`;
/// `without_rowid`: SQLite's clustered-table clause; `runs_index`: the
/// statement after `runs` (Postgres indexes running runs by host).
macro_rules! migrations {
    (
        int = $int:literal,
        flag = $flag:literal,
        serial = $serial:literal,
        check_serial = $check_serial:literal,
        without_rowid = $norowid:literal,
        runs_index = $runs_index:literal $(,)?
    ) => {
        &[
            // 1: runs, attempts, materializations, partition state, dynamic keys, leases.
            concat!(
                "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        status TEXT NOT NULL,
        selection TEXT NOT NULL,
        partitions TEXT NOT NULL,
        dg_version TEXT NOT NULL,
        pid ",
                $int,
                " NOT NULL,
        host TEXT NOT NULL,
        steps ",
                $int,
                "
     );",
                $runs_index,
                "
     CREATE TABLE step_attempts (
        run_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        asset TEXT NOT NULL,
        partition TEXT,
        attempt ",
                $int,
                " NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        duration_ms ",
                $int,
                " NOT NULL,
        exit_code INTEGER,
        error TEXT,
        log_path TEXT,
        PRIMARY KEY (run_id, step_id, attempt)
     );
     CREATE TABLE materializations (
        id ",
                $serial,
                ",
        asset TEXT NOT NULL,
        partition TEXT NOT NULL,
        run_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        code_version TEXT,
        data_version TEXT NOT NULL,
        inputs TEXT NOT NULL,
        input_fp TEXT NOT NULL,
        metadata TEXT NOT NULL
     );
     CREATE INDEX materializations_by_run ON materializations (run_id);
     CREATE INDEX materializations_by_partition ON materializations (asset, partition, id);
     CREATE TABLE partition_state (
        asset TEXT NOT NULL,
        partition TEXT NOT NULL,
        status TEXT NOT NULL,
        run_id TEXT,
        code_version TEXT,
        data_version TEXT,
        input_fp TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (asset, partition)
     )",
                $norowid,
                ";
     CREATE TABLE dynamic_partitions (
        name TEXT NOT NULL,
        key TEXT NOT NULL,
        position ",
                $int,
                " NOT NULL,
        PRIMARY KEY (name, key)
     );
     CREATE TABLE leases (
        asset TEXT NOT NULL,
        partition TEXT NOT NULL,
        run_id TEXT NOT NULL,
        pid ",
                $int,
                " NOT NULL,
        host TEXT NOT NULL,
        acquired_at TEXT NOT NULL,
        PRIMARY KEY (asset, partition)
     );"
            ),
            // 2: ticks of scheduled jobs, claimed by `dg tick` before a job runs.
            concat!(
                "CREATE TABLE job_ticks (
        job TEXT NOT NULL,
        tick ",
                $int,
                " NOT NULL,
        tick_time TEXT NOT NULL,
        status TEXT NOT NULL,
        run_id TEXT,
        pid ",
                $int,
                " NOT NULL,
        host TEXT NOT NULL,
        claimed_at TEXT NOT NULL,
        ended_at TEXT,
        PRIMARY KEY (job, tick)
     );"
            ),
            // 3: pool slots, one row per step holding one (`[pools]`).
            concat!(
                "CREATE TABLE pool_slots (
        pool TEXT NOT NULL,
        slot ",
                $int,
                " NOT NULL,
        run_id TEXT NOT NULL,
        pid ",
                $int,
                " NOT NULL,
        host TEXT NOT NULL,
        step_id TEXT NOT NULL,
        acquired_at TEXT NOT NULL,
        PRIMARY KEY (pool, slot)
     );"
            ),
            // 4: the profile and run config a run was made with.
            "ALTER TABLE runs ADD COLUMN profile TEXT; ALTER TABLE runs ADD COLUMN config TEXT;",
            // 5: asset checks: one row per check, partition and run.
            concat!(
                "CREATE TABLE check_results (
        id ",
                $check_serial,
                ",
        run_id TEXT NOT NULL,
        asset TEXT NOT NULL,
        partition TEXT NOT NULL,
        check_name TEXT NOT NULL,
        passed ",
                $flag,
                " NOT NULL,
        severity TEXT NOT NULL,
        message TEXT,
        metadata TEXT NOT NULL,
        created_at TEXT NOT NULL,
        duration_ms ",
                $int,
                " NOT NULL
     );
     CREATE INDEX check_results_latest ON check_results (asset, partition, check_name, id);
     CREATE INDEX check_results_by_run ON check_results (run_id);"
            ),
            // 6: leases expire unless their holder's heartbeat extends them
            // (Unix milliseconds; NULL, from before, never expires); the step
            // specs of each run, so `dg step RUN_ID STEP_ID` can run one
            // anywhere.
            concat!(
                "ALTER TABLE leases ADD COLUMN expires_at ",
                $int,
                ";
     CREATE TABLE step_specs (
        run_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        spec TEXT NOT NULL,
        PRIMARY KEY (run_id, step_id)
     )",
                $norowid,
                ";
     CREATE TABLE step_results (
        run_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        attempt ",
                $int,
                " NOT NULL,
        status TEXT NOT NULL,
        attempts ",
                $int,
                " NOT NULL,
        error TEXT,
        blocked_by TEXT,
        log_path TEXT,
        host TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        PRIMARY KEY (run_id, step_id)
     );"
            ),
        ]
    };
}
pub(crate) use migrations;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered_like_sqlite_ones() {
        assert_eq!(
            pg("UPDATE t SET a = ?2, b = ?10 WHERE c = ?1 AND d = '?'"),
            "UPDATE t SET a = $2, b = $10 WHERE c = $1 AND d = '?'"
        );
        assert!(std::ptr::eq(pg(END_RUN), pg(END_RUN)));
    }
}
