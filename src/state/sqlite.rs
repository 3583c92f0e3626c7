//! The embedded SQLite store: WAL mode, a busy timeout so concurrent dg
//! processes wait for each other instead of failing, and versioned
//! migrations (`PRAGMA user_version`).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    ATTEMPT_COLUMNS, AttemptRecord, CHECK_COLUMNS, CheckRecord, Lease, Materialization,
    PartitionState, PartitionStates, RUN_COLUMNS, Record, RunRecord, RunStatus, StateStore,
    StoredRow, TickClaim, attempt_from_row, check_from_row, materialization_from_row, now,
    run_from_row, schema, step_result_from_row,
};

/// Each entry upgrades the schema by one version.
const MIGRATIONS: &[&str] = schema::migrations!(
    int = "INTEGER",
    flag = "INTEGER",
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT",
    check_serial = "INTEGER PRIMARY KEY AUTOINCREMENT",
    without_rowid = " WITHOUT ROWID",
    runs_index = "",
);

/// How long a dg process waits for another one holding the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// `PRAGMA journal_mode = WAL`. Switching a new database to WAL takes an
/// exclusive lock, and SQLite answers SQLITE_BUSY at once, without the busy
/// handler, while another connection holds it (two dg processes creating the
/// state database together): retry for as long as the busy timeout.
fn enable_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: std::path::PathBuf,
    /// Opened read-only (the file or its folder cannot be written): the
    /// history can be read; recording a run is refused with a clear error.
    read_only: bool,
}

/// What went wrong opening `path`, in words that say what to do.
fn explain(e: anyhow::Error, path: &Path) -> anyhow::Error {
    let code = e
        .chain()
        .find_map(|c| match c.downcast_ref::<rusqlite::Error>() {
            Some(rusqlite::Error::SqliteFailure(f, _)) => Some(f.code),
            _ => None,
        });
    let shown = path.display();
    let damaged = |why: &str| {
        anyhow::anyhow!(
            "the state database {shown} is damaged ({why}); dg will not start a new history over it. \
             Restore it from a backup, or move it away to start a new one: `mv {shown} {shown}.broken`"
        )
    };
    match code {
        Some(rusqlite::ErrorCode::NotADatabase) => damaged("it is not an SQLite database"),
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => damaged("its pages are malformed"),
        Some(rusqlite::ErrorCode::DiskFull) => anyhow::anyhow!(
            "the disk holding the state database {shown} is full: free some space and run again"
        ),
        Some(rusqlite::ErrorCode::SystemIoFailure) if disk_full(path) => anyhow::anyhow!(
            "the disk holding the state database {shown} is full (disk I/O error): free some space and run again"
        ),
        _ => e,
    }
}

/// Whether the file system holding `path` has no space left for dg.
fn disk_full(path: &Path) -> bool {
    let dir = path.parent().unwrap_or(path);
    nix::sys::statvfs::statvfs(dir).is_ok_and(|v| v.blocks_available() == 0)
}

/// Whether `e` says the database or its folder cannot be written.
fn is_read_only(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(f, _))
                if matches!(f.code, rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
        )
    })
}

impl SqliteStore {
    /// Opens (creating and migrating) the store at `path`. A file that
    /// exists but cannot be written is opened read-only; a damaged one is an
    /// error that says how to recover, and is never replaced.
    pub fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        let store = match Self::open_rw(path) {
            Ok(s) => s,
            Err(e) if path.is_file() && is_read_only(&e) => {
                Self::open_ro(path).map_err(|e2| explain(e2, path))?
            }
            Err(e) => return Err(explain(e, path)),
        };
        store.check_size().map_err(|e| explain(e, path))?;
        Ok(store)
    }

    fn open_ro(path: &Path) -> anyhow::Result<SqliteStore> {
        use rusqlite::OpenFlags;
        // `immutable`: nothing can write a file that no one may write, so
        // SQLite needs no lock and no `-shm` file (which a read-only folder
        // could not hold).
        const PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
            .add(b'%')
            .add(b'?')
            .add(b'#')
            .add(b' ');
        let uri = format!(
            "file:{}?immutable=1",
            percent_encoding::utf8_percent_encode(&path.to_string_lossy(), PATH)
        );
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .with_context(|| format!("cannot open the state database {}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version as usize != MIGRATIONS.len() {
            anyhow::bail!(
                "the state database {} is read-only and has schema version {version}, not {}: run dg once where it can be written",
                path.display(),
                MIGRATIONS.len()
            );
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            read_only: true,
        })
    }

    /// A file shorter than the pages its header counts was truncated (only
    /// checked when no write-ahead log holds pages beyond the file).
    fn check_size(&self) -> anyhow::Result<()> {
        let wal = self.path.with_extension("db-wal");
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Ok(());
        }
        let conn = self.conn();
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let (pages, size) = (pages.max(0) as u64, size.max(0) as u64);
        let len = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if len < pages * size {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(format!(
                    "{len} bytes, but its header counts {pages} pages of {size} bytes"
                )),
            )
            .into());
        }
        Ok(())
    }

    /// Fails when the store was opened read-only.
    fn writable(&self) -> anyhow::Result<()> {
        if self.read_only {
            anyhow::bail!(
                "the state database {} is read-only (the file or its folder cannot be written): dg can show the history but cannot record a run",
                self.path.display()
            );
        }
        Ok(())
    }

    fn open_rw(path: &Path) -> anyhow::Result<SqliteStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the state database {}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        enable_wal(&conn).with_context(|| {
            format!(
                "cannot switch the state database {} to WAL mode",
                path.display()
            )
        })?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            read_only: false,
        };
        store
            .migrate()
            .with_context(|| format!("cannot migrate the state database {}", path.display()))?;
        Ok(store)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rows of `sql` (a cached statement) with `params`, each decoded
    /// by `decode`.
    fn decoded<T, C: FromIterator<T>>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        decode: impl FnMut(&rusqlite::Row<'_>) -> anyhow::Result<T>,
    ) -> anyhow::Result<C> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(sql)?;
        st.query_and_then(params, decode)?.collect()
    }

    fn migrate(&self) -> anyhow::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == 0 {
            // A new database has no tables; one with tables but no dg
            // schema version belongs to another program.
            let tables: Vec<String> = {
                let mut st = tx.prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )?;
                let rows = st.query_map([], |r| r.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            if !tables.is_empty() {
                let shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
                anyhow::bail!(
                    "it is not a dg state database: it holds tables of another program ({}{}) and no dg schema version. \
                     Point `[state] url` at another file, or move this one away",
                    shown.join(", "),
                    if tables.len() > 5 { ", …" } else { "" }
                );
            }
        }
        if version as usize > MIGRATIONS.len() {
            anyhow::bail!(
                "the state database has schema version {version}, newer than this dg understands ({}); upgrade dg",
                MIGRATIONS.len()
            );
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            // The error, without the migration's SQL text.
            tx.execute_batch(m).map_err(|e| match e {
                rusqlite::Error::SqlInputError { error, msg, .. } => {
                    anyhow::anyhow!("schema version {}: {msg} ({error})", i + 1)
                }
                e => anyhow::Error::from(e),
            })?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        Ok(())
    }
}

super::stored_row!(rusqlite::Row<'_>, get);

impl StateStore for SqliteStore {
    fn begin_run(&self, run: &RunRecord) -> anyhow::Result<()> {
        self.writable()?;
        self.conn().execute(
            schema::INSERT_RUN,
            params![
                run.id,
                run.started_at,
                run.ended_at,
                run.status.as_str(),
                run.selection,
                run.partitions,
                run.dg_version,
                run.pid,
                run.host,
                run.steps,
                run.profile,
                run.config.as_ref().map(|c| c.to_string())
            ],
        )?;
        Ok(())
    }

    fn end_run(
        &self,
        id: &str,
        status: RunStatus,
        ended_at: &str,
        steps: i64,
    ) -> anyhow::Result<()> {
        let conn = self.conn();
        conn.execute(
            schema::END_RUN,
            params![id, status.as_str(), ended_at, steps],
        )?;
        conn.execute(schema::RELEASE_RUN_LEASES, params![id])?;
        Ok(())
    }

    fn record(&self, batch: &[Record]) -> anyhow::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut attempt = tx.prepare_cached(
                "INSERT OR REPLACE INTO step_attempts
                 (run_id, step_id, asset, partition, attempt, status, started_at, duration_ms, exit_code, error, log_path)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut mat = tx.prepare_cached(schema::INSERT_MATERIALIZATION)?;
            let mut state_ok = tx.prepare_cached(
                "INSERT OR REPLACE INTO partition_state
                 (asset, partition, status, run_id, code_version, data_version, input_fp, updated_at)
                 VALUES (?1, ?2, 'materialized', ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut state_failed = tx.prepare_cached(schema::PARTITION_FAILED)?;
            for r in batch {
                match r {
                    Record::Attempt(a) => {
                        attempt.execute(params![
                            a.run_id,
                            a.step_id,
                            a.asset,
                            a.partition,
                            a.attempt,
                            a.status,
                            a.started_at,
                            a.duration_ms,
                            a.exit_code,
                            a.error,
                            a.log_path
                        ])?;
                    }
                    Record::Materialization(m) => {
                        let p = m.partition.as_deref().unwrap_or("");
                        mat.execute(params![
                            m.asset,
                            p,
                            m.run_id,
                            m.created_at,
                            m.code_version,
                            m.data_version,
                            serde_json::to_string(&m.inputs)?,
                            m.input_fp,
                            serde_json::to_string(&m.metadata)?
                        ])?;
                        state_ok.execute(params![
                            m.asset,
                            p,
                            m.run_id,
                            m.code_version,
                            m.data_version,
                            m.input_fp,
                            m.created_at
                        ])?;
                    }
                    Record::Failed {
                        asset, partition, ..
                    } => {
                        state_failed.execute(params![
                            asset,
                            partition.as_deref().unwrap_or(""),
                            now()
                        ])?;
                    }
                    Record::Check(c) => {
                        tx.prepare_cached(schema::INSERT_CHECK)?.execute(params![
                            c.run_id,
                            c.asset,
                            c.partition.as_deref().unwrap_or(""),
                            c.check,
                            c.passed,
                            c.severity,
                            c.message,
                            serde_json::to_string(&c.metadata)?,
                            c.created_at,
                            c.duration_ms
                        ])?;
                    }
                    Record::StepResult(r) => {
                        tx.prepare_cached(
                            "INSERT OR REPLACE INTO step_results
                             (run_id, step_id, attempt, status, attempts, error, blocked_by, log_path, host, finished_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                        )?
                        .execute(params![
                            r.run_id,
                            r.step_id,
                            r.attempt,
                            r.status,
                            r.attempts,
                            r.error,
                            r.blocked_by,
                            r.log_path,
                            r.host,
                            r.finished_at
                        ])?;
                    }
                    Record::Release {
                        asset,
                        partition,
                        run_id,
                    } => {
                        tx.execute(schema::RELEASE_LEASE, params![asset, partition, run_id])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn partitions(&self, asset: &str, expected: usize) -> anyhow::Result<PartitionStates> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(schema::PARTITION_STATES)?;
        let mut out = PartitionStates::with_capacity_and_hasher(expected, Default::default());
        let mut interned: rustc_hash::FxHashMap<String, std::sync::Arc<str>> = Default::default();
        let mut intern = |v: rusqlite::types::ValueRef<'_>| -> Option<std::sync::Arc<str>> {
            let rusqlite::types::ValueRef::Text(b) = v else {
                return None;
            };
            let s = std::str::from_utf8(b).ok()?;
            if let Some(a) = interned.get(s) {
                return Some(a.clone());
            }
            let a: std::sync::Arc<str> = std::sync::Arc::from(s);
            interned.insert(s.to_string(), a.clone());
            Some(a)
        };
        let hash = |v: rusqlite::types::ValueRef<'_>| match v {
            rusqlite::types::ValueRef::Text(b) => {
                std::str::from_utf8(b).ok().and_then(super::parse_hash)
            }
            _ => None,
        };
        let mut rows = st.query(params![asset])?;
        while let Some(r) = rows.next()? {
            let failed = matches!(r.get_ref(1)?, rusqlite::types::ValueRef::Text(b"failed"));
            out.insert(
                match r.get_ref(0)? {
                    rusqlite::types::ValueRef::Text(b) => compact_str::CompactString::from_utf8(b)?,
                    _ => Default::default(),
                },
                PartitionState {
                    failed,
                    run_id: intern(r.get_ref(2)?),
                    code_version: intern(r.get_ref(3)?),
                    data_version: hash(r.get_ref(4)?),
                    input_fp: hash(r.get_ref(5)?),
                },
            );
        }
        Ok(out)
    }

    fn latest_of(
        &self,
        asset: &str,
        keys: &[String],
    ) -> anyhow::Result<Vec<Option<super::Stamped>>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT run_id, data_version, updated_at FROM partition_state
             WHERE asset = ?1 AND partition = ?2 AND run_id IS NOT NULL",
        )?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(
                st.query_row(params![asset, k], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?,
            );
        }
        Ok(out)
    }

    fn materialized(&self, asset: &str) -> anyhow::Result<HashSet<String>> {
        self.decoded(schema::MATERIALIZED, params![asset], |r| Ok(r.get(0)?))
    }

    fn runs(&self, limit: usize) -> anyhow::Result<Vec<RunRecord>> {
        self.decoded(
            &format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, id DESC LIMIT ?1"),
            params![limit as i64],
            |r| run_from_row(r),
        )
    }

    fn run(&self, id: &str) -> anyhow::Result<Option<RunRecord>> {
        let mut runs: Vec<_> = self.decoded(schema::RUN, params![id], |r| run_from_row(r))?;
        Ok(runs.pop())
    }

    fn attempts(&self, run_id: &str) -> anyhow::Result<Vec<AttemptRecord>> {
        self.decoded(
            &format!(
                "SELECT {ATTEMPT_COLUMNS} FROM step_attempts WHERE run_id = ?1
                 ORDER BY started_at, step_id, attempt"
            ),
            params![run_id],
            |r| attempt_from_row(r),
        )
    }

    fn materializations(&self, run_id: &str) -> anyhow::Result<Vec<Materialization>> {
        self.decoded(schema::MATERIALIZATIONS, params![run_id], |r| {
            materialization_from_row(r)
        })
    }

    fn dynamic_keys(&self, name: &str) -> anyhow::Result<Vec<String>> {
        self.decoded(schema::DYNAMIC_KEYS, params![name], |r| Ok(r.get(0)?))
    }

    fn add_dynamic_keys(&self, name: &str, keys: &[String]) -> anyhow::Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut next: i64 =
            tx.query_row(schema::NEXT_DYNAMIC_POSITION, params![name], |r| r.get(0))?;
        let mut added = 0;
        for k in keys {
            let n = tx.execute(
                "INSERT OR IGNORE INTO dynamic_partitions (name, key, position) VALUES (?1, ?2, ?3)",
                params![name, k, next],
            )?;
            if n > 0 {
                next += 1;
                added += 1;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    fn remove_dynamic_keys(&self, name: &str, keys: &[String]) -> anyhow::Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut removed = 0;
        for k in keys {
            removed += tx.execute(schema::REMOVE_DYNAMIC_KEY, params![name, k])?;
        }
        tx.commit()?;
        Ok(removed)
    }

    fn try_lease(&self, asset: &str, partition: &str, me: &Lease) -> anyhow::Result<Option<Lease>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let holder: Option<(Lease, Option<i64>)> = tx
            .prepare(
                "SELECT run_id, pid, host, expires_at FROM leases WHERE asset = ?1 AND partition = ?2",
            )?
            .query_and_then(params![asset, partition], |r| {
                anyhow::Ok((
                    Lease {
                        run_id: r.get(0)?,
                        pid: r.u32(1, "leases.pid")?,
                        host: r.get(2)?,
                    },
                    r.get(3)?,
                ))
            })?
            .next()
            .transpose()?;
        let now_ms = super::unix_ms();
        if let Some((h, expires)) = &holder
            && super::lease_holds(h, *expires, me, now_ms)
        {
            return Ok(Some(h.clone()));
        }
        tx.execute(
            "INSERT OR REPLACE INTO leases (asset, partition, run_id, pid, host, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                asset,
                partition,
                me.run_id,
                me.pid,
                me.host,
                now(),
                now_ms + super::lease_ttl_ms()
            ],
        )?;
        tx.commit()?;
        Ok(None)
    }

    fn heartbeat(&self, me: &Lease) -> anyhow::Result<usize> {
        if self.read_only {
            return Ok(0);
        }
        let n = self.conn().execute(
            schema::HEARTBEAT,
            params![
                me.run_id,
                me.pid,
                me.host,
                super::unix_ms() + super::lease_ttl_ms()
            ],
        )?;
        Ok(n)
    }

    fn save_step_specs(&self, run_id: &str, specs: &[(String, String)]) -> anyhow::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO step_specs (run_id, step_id, spec) VALUES (?1, ?2, ?3)",
            )?;
            for (step, spec) in specs {
                st.execute(params![run_id, step, spec])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn step_results(&self, run_id: &str) -> anyhow::Result<Vec<super::StepResult>> {
        self.decoded(schema::STEP_RESULTS, params![run_id], |r| {
            step_result_from_row(r)
        })
    }

    fn step_spec(&self, run_id: &str, step_id: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(schema::STEP_SPEC, params![run_id, step_id], |r| r.get(0))
            .optional()?)
    }

    fn try_pool_slot(
        &self,
        pool: &str,
        limit: u32,
        me: &Lease,
        step_id: &str,
    ) -> anyhow::Result<Option<u32>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let holders: Vec<(u32, u32, String)> = {
            let mut st = tx.prepare_cached(schema::POOL_HOLDERS)?;
            let rows = st.query_and_then(params![pool], |r| {
                anyhow::Ok((
                    r.u32(0, "pool_slots.slot")?,
                    r.u32(1, "pool_slots.pid")?,
                    r.get(2)?,
                ))
            })?;
            rows.collect::<anyhow::Result<_>>()?
        };
        let mut held = Vec::with_capacity(holders.len());
        for (slot, pid, host) in holders {
            if host == me.host && pid != me.pid && !super::pid_alive(pid) {
                tx.execute(schema::RECLAIM_POOL_SLOT, params![pool, slot])?;
            } else {
                held.push(slot);
            }
        }
        let Some(slot) = super::free_slot(&held, limit) else {
            tx.commit()?;
            return Ok(None);
        };
        tx.execute(
            schema::TAKE_POOL_SLOT,
            params![pool, slot, me.run_id, me.pid, me.host, step_id, now()],
        )?;
        tx.commit()?;
        Ok(Some(slot))
    }

    fn release_pool_slot(&self, pool: &str, slot: u32, run_id: &str) -> anyhow::Result<()> {
        self.conn()
            .execute(schema::RELEASE_POOL_SLOT, params![pool, slot, run_id])?;
        Ok(())
    }

    fn release_pool_slots(&self, run_id: &str) -> anyhow::Result<()> {
        self.conn()
            .execute(schema::RELEASE_RUN_POOL_SLOTS, params![run_id])?;
        Ok(())
    }

    fn latest_materialization(
        &self,
        asset: &str,
        partition: &str,
    ) -> anyhow::Result<Option<(String, String)>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                schema::LATEST_MATERIALIZATION,
                params![asset, partition],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn latest_checks(&self, asset: &str) -> anyhow::Result<Vec<CheckRecord>> {
        self.decoded(
            &format!(
                "SELECT {CHECK_COLUMNS} FROM check_results WHERE id IN
               (SELECT max(id) FROM check_results WHERE asset = ?1 GROUP BY partition, check_name)
             ORDER BY id"
            ),
            params![asset],
            |r| check_from_row(r),
        )
    }

    fn run_checks(&self, run_id: &str) -> anyhow::Result<Vec<CheckRecord>> {
        self.decoded(schema::RUN_CHECKS, params![run_id], |r| check_from_row(r))
    }

    fn last_materialized_at(&self, asset: &str) -> anyhow::Result<Option<String>> {
        let conn = self.conn();
        Ok(conn.query_row(schema::LAST_MATERIALIZED_AT, params![asset], |r| r.get(0))?)
    }

    fn release(&self, asset: &str, partition: &str, run_id: &str) -> anyhow::Result<()> {
        self.conn()
            .execute(schema::RELEASE_LEASE, params![asset, partition, run_id])?;
        Ok(())
    }

    fn last_ticks(&self) -> anyhow::Result<std::collections::HashMap<String, i64>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(schema::LAST_TICKS)?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn claim_tick(&self, c: &TickClaim) -> anyhow::Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO job_ticks (job, tick, tick_time, status, pid, host, claimed_at)
             VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6)",
            params![c.job, c.tick, c.tick_time, c.pid, c.host, now()],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn finish_tick(
        &self,
        job: &str,
        tick: i64,
        status: &str,
        run_id: Option<&str>,
    ) -> anyhow::Result<()> {
        self.conn().execute(
            schema::FINISH_TICK,
            params![job, tick, status, run_id, now()],
        )?;
        Ok(())
    }

    fn reap_dead_runs(&self) -> anyhow::Result<Vec<String>> {
        if self.read_only {
            // Dead runs stay `running` until a writable dg reaps them.
            return Ok(Vec::new());
        }
        let host = super::hostname();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let running: Vec<(String, u32)> = {
            let mut st =
                tx.prepare("SELECT id, pid FROM runs WHERE status = 'running' AND host = ?1")?;
            let rows = st.query_and_then(params![host], |r| {
                anyhow::Ok((r.get(0)?, r.u32(1, "runs.pid")?))
            })?;
            rows.collect::<anyhow::Result<_>>()?
        };
        let mut reaped = Vec::new();
        for (id, pid) in running {
            if pid != std::process::id() && !super::pid_alive(pid) {
                tx.execute(schema::INTERRUPT_RUN, params![id, now()])?;
                tx.execute(schema::RELEASE_RUN_LEASES, params![id])?;
                tx.execute(schema::RELEASE_RUN_POOL_SLOTS, params![id])?;
                reaped.push(id);
            }
        }
        tx.commit()?;
        Ok(reaped)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let d = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&d.path().join("state.db")).unwrap();
        (d, s)
    }

    fn mat(asset: &str, p: &str, run: &str) -> Record {
        Record::Materialization(Materialization {
            asset: asset.into(),
            partition: Some(p.into()),
            run_id: run.into(),
            created_at: now(),
            code_version: Some("1".into()),
            data_version: "abc".into(),
            inputs: vec![],
            input_fp: "0".into(),
            metadata: serde_json::json!({"rows": 3}),
        })
    }

    #[test]
    fn pool_slots_are_bounded_and_reclaimed_from_dead_holders() {
        let (_d, s) = store();
        let me = testing::lease("r1", &crate::state::hostname());
        let other = Lease {
            run_id: "r2".into(),
            ..me.clone()
        };
        assert_eq!(s.try_pool_slot("api", 2, &me, "a").unwrap(), Some(0));
        assert_eq!(s.try_pool_slot("api", 2, &other, "b").unwrap(), Some(1));
        assert_eq!(s.try_pool_slot("api", 2, &other, "c").unwrap(), None);
        // Another pool is counted on its own.
        assert_eq!(s.try_pool_slot("db", 1, &other, "c").unwrap(), Some(0));
        s.release_pool_slot("api", 0, "r1").unwrap();
        assert_eq!(s.try_pool_slot("api", 2, &other, "c").unwrap(), Some(0));
        // A lower limit counts the holders above it.
        assert_eq!(s.try_pool_slot("api", 1, &me, "d").unwrap(), None);
        s.release_pool_slots("r2").unwrap();
        assert_eq!(s.try_pool_slot("api", 1, &me, "d").unwrap(), Some(0));
        // A holder whose process is gone is reclaimed.
        s.conn()
            .execute("UPDATE pool_slots SET pid = 999999999, run_id = 'dead'", [])
            .unwrap();
        assert_eq!(s.try_pool_slot("api", 1, &other, "e").unwrap(), Some(0));
    }

    #[test]
    fn migrations_are_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        SqliteStore::open(&p).unwrap();
        let s = SqliteStore::open(&p).unwrap();
        let v: i64 = s
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
    }

    #[test]
    fn processes_creating_the_database_together_do_not_fail() {
        for round in 0..20 {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join(format!("s{round}.db"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let p = p.clone();
                    let b = barrier.clone();
                    std::thread::spawn(move || {
                        b.wait();
                        SqliteStore::open(&p)
                            .map(|_| ())
                            .map_err(|e| format!("{e:#}"))
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn partition_state_follows_latest_attempt() {
        let (_d, s) = store();
        s.record(&[mat("a", "1", "r1")]).unwrap();
        s.record(&[Record::Failed {
            asset: "a".into(),
            partition: Some("1".into()),
            run_id: "r2".into(),
        }])
        .unwrap();
        let p = s.partitions("a", 0).unwrap();
        assert!(p["1"].failed);
        assert!(
            p["1"].materialized(),
            "an earlier success still counts as materialized"
        );
        assert_eq!(s.materialized("a").unwrap().len(), 1);
        s.record(&[mat("a", "1", "r3")]).unwrap();
        assert_eq!(
            s.partitions("a", 0).unwrap()["1"].run_id.as_deref(),
            Some("r3")
        );
        assert_eq!(s.materializations("r3").unwrap()[0].metadata["rows"], 3);
    }

    #[test]
    fn dynamic_keys_keep_order() {
        let (_d, s) = store();
        assert_eq!(
            s.add_dynamic_keys("c", &["b".into(), "a".into(), "b".into()])
                .unwrap(),
            2
        );
        assert_eq!(s.add_dynamic_keys("c", &["c".into()]).unwrap(), 1);
        assert_eq!(s.dynamic_keys("c").unwrap(), vec!["b", "a", "c"]);
        assert_eq!(
            s.remove_dynamic_keys("c", &["a".into(), "zz".into()])
                .unwrap(),
            1
        );
        assert_eq!(s.dynamic_keys("c").unwrap(), vec!["b", "c"]);
    }

    #[test]
    fn leases_exclude_live_owners_and_reclaim_dead_ones() {
        let (_d, s) = store();
        let host = super::super::hostname();
        let me = testing::lease("r1", &host);
        assert_eq!(s.try_lease("a", "1", &me).unwrap(), None);
        let other = testing::lease("r2", &host);
        assert_eq!(s.try_lease("a", "1", &other).unwrap(), Some(me.clone()));
        s.release("a", "1", "r1").unwrap();
        assert_eq!(s.try_lease("a", "1", &other).unwrap(), None);
        // A lease held by a process that no longer exists is taken over.
        let dead = Lease {
            run_id: "r3".into(),
            pid: 0x3fff_fff0,
            host,
        };
        s.conn()
            .execute(
                "UPDATE leases SET run_id = ?1, pid = ?2",
                params![dead.run_id, dead.pid],
            )
            .unwrap();
        assert_eq!(s.try_lease("a", "1", &me).unwrap(), None);
    }

    #[test]
    fn a_lease_of_another_host_holds_until_it_expires_and_heartbeats_extend_it() {
        let (_d, s) = store();
        // A live-looking pid on a host this process cannot check.
        let far = testing::lease("far", "node-17.cluster");
        let me = testing::lease("near", &super::super::hostname());
        assert_eq!(s.try_lease("a", "1", &far).unwrap(), None);
        assert_eq!(s.try_lease("a", "1", &me).unwrap(), Some(far.clone()));
        let expires = |s: &SqliteStore| -> i64 {
            s.conn()
                .query_row("SELECT expires_at FROM leases", [], |r| r.get(0))
                .unwrap()
        };
        // The holder's heartbeat moves its expiry on; nobody else's does.
        s.conn()
            .execute("UPDATE leases SET expires_at = 5", [])
            .unwrap();
        assert_eq!(s.heartbeat(&me).unwrap(), 0);
        assert_eq!(expires(&s), 5);
        assert_eq!(s.heartbeat(&far).unwrap(), 1);
        assert!(expires(&s) > super::super::unix_ms());
        assert_eq!(s.try_lease("a", "1", &me).unwrap(), Some(far.clone()));
        // The node died: no heartbeat, the lease expires and is reclaimed.
        s.conn()
            .execute(
                "UPDATE leases SET expires_at = ?1",
                params![super::super::unix_ms() - 1],
            )
            .unwrap();
        assert_eq!(s.try_lease("a", "1", &me).unwrap(), None);
        assert_eq!(s.try_lease("a", "1", &far).unwrap(), Some(me.clone()));
    }

    #[test]
    fn step_specs_are_kept_per_run_and_step() {
        let (_d, s) = store();
        s.save_step_specs(
            "r1",
            &[("a[1]".into(), "{1}".into()), ("a[2]".into(), "{2}".into())],
        )
        .unwrap();
        assert_eq!(s.step_spec("r1", "a[2]").unwrap().as_deref(), Some("{2}"));
        assert_eq!(s.step_spec("r2", "a[2]").unwrap(), None);
    }

    /// A stored process id, attempt number or pool slot out of `u32`'s
    /// range (a corrupt row) is an error naming the column and the value,
    /// in every reader, never a number that wraps.
    #[test]
    fn integers_out_of_range_are_errors_not_wrapped() {
        let (_d, s) = store();
        s.conn().execute_batch(&testing::corrupt_rows()).unwrap();
        testing::assert_errors(testing::read_corrupt_rows(&s));
    }
}
