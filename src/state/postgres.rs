//! The Postgres store (`[state] url = "postgres://…"`): the same tables and
//! the same behaviour as the SQLite store, so several machines can share one
//! history.
//!
//! - The tables live in one schema, `public` unless the URL says
//!   `?schema=NAME` (dg takes that parameter out before connecting). The
//!   schema is created when missing.
//! - The schema is versioned in `dg_schema_version`. Migrations run in one
//!   transaction holding a transaction-level advisory lock, so two dg
//!   processes starting together on an empty database do not race.
//! - One connection per store, behind a mutex (the store is shared between
//!   the run's threads). No TLS: use a local socket, a trusted network or a
//!   tunnel.
//! - Errors never show the password: URLs are printed as `user:***@host`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use postgres::{Client, NoTls, Row, Transaction};

use super::{
    ATTEMPT_COLUMNS, AttemptRecord, CHECK_COLUMNS, CheckRecord, Lease, Materialization,
    PartitionState, PartitionStates, RUN_COLUMNS, Record, RunRecord, RunStatus, StateStore,
    StoredRow, TickClaim, attempt_from_row, check_from_row, materialization_from_row, now,
    run_from_row, schema, step_result_from_row,
};
use crate::io::db::quote_ident;
use schema::pg;

/// Each entry upgrades the schema by one version (the SQLite store's tables,
/// in Postgres types).
pub const MIGRATIONS: &[&str] = schema::migrations!(
    int = "BIGINT",
    flag = "BOOLEAN",
    serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    check_serial = "BIGSERIAL PRIMARY KEY",
    without_rowid = "",
    runs_index = "\n     CREATE INDEX runs_running ON runs (status, host);",
);

/// First key of dg's advisory locks (`pg_advisory_xact_lock(int, int)`);
/// the second is a hash of the schema (migrations) or of the schema and a
/// dynamic partitions name.
const LOCK_CLASS: i32 = 0x6467_0001; // "dg" 1

pub use crate::pg::mask_url;

/// Splits `?schema=NAME` off a URL: (URL for the driver, schema).
pub fn split_schema(url: &str) -> anyhow::Result<(String, String)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), "public".to_string()));
    };
    let mut schema = None;
    let mut kept = Vec::new();
    for p in query.split('&').filter(|p| !p.is_empty()) {
        match p.split_once('=') {
            Some(("schema", v)) => {
                let v = percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .map_err(|_| anyhow::anyhow!("`schema` in the state URL is not UTF-8"))?;
                if v.is_empty() {
                    anyhow::bail!("`schema` in the state URL is empty");
                }
                schema = Some(v.into_owned());
            }
            _ => kept.push(p),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, schema.unwrap_or_else(|| "public".to_string())))
}

/// Connects and selects the schema.
fn connect(config: &postgres::Config, schema: &str, shown: &str) -> anyhow::Result<Client> {
    let mut client = config.connect(NoTls).map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to the state database {shown}: {}",
            crate::pg::error_text(&e)
        )
    })?;
    client
        .batch_execute(&format!(
            "SET search_path TO {}; SET client_min_messages TO warning",
            quote_ident(schema)
        ))
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot use schema `{schema}` in {shown}: {}",
                crate::pg::error_text(&e)
            )
        })?;
    Ok(client)
}

/// A stable 32-bit hash (FNV-1a) for advisory lock keys.
fn lock_key(parts: &[&str]) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x1f;
            h = h.wrapping_mul(0x0100_0193);
        }
        for b in p.bytes() {
            h ^= b as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h as i32
}

pub struct PostgresStore {
    client: Mutex<Client>,
    schema: String,
    /// The URL for messages (password masked).
    shown: String,
    /// How to connect again when the connection drops.
    config: postgres::Config,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://` or `postgresql://`, optionally with
    /// `?schema=NAME`) and brings the schema up to date.
    pub fn open(url: &str) -> anyhow::Result<PostgresStore> {
        let shown = mask_url(url);
        let (driver_url, schema) = split_schema(url)?;
        let mut config: postgres::Config = driver_url.parse().map_err(|e: postgres::Error| {
            anyhow::anyhow!("invalid Postgres state URL {shown}: {e}")
        })?;
        crate::pg::set_defaults(&mut config, Duration::from_secs(15));
        let client = connect(&config, &schema, &shown)?;
        let store = PostgresStore {
            client: Mutex::new(client),
            schema,
            shown,
            config,
        };
        store.migrate().with_context(|| {
            format!(
                "cannot migrate the state database {} (schema `{}`)",
                store.shown, store.schema
            )
        })?;
        Ok(store)
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection; a dropped one (a database restart, a network cut)
    /// is replaced first. What failed on the old one stays failed.
    fn client(&self) -> std::sync::MutexGuard<'_, Client> {
        let mut c = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if c.is_closed() {
            match connect(&self.config, &self.schema, &self.shown) {
                Ok(new) => *c = new,
                Err(e) => tracing::warn!("{e:#}"),
            }
        }
        c
    }

    /// The rows of `sql`, each decoded by `decode`.
    fn decoded<T>(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
        decode: impl Fn(&Row) -> anyhow::Result<T>,
    ) -> anyhow::Result<Vec<T>> {
        self.client()
            .query(sql, params)?
            .iter()
            .map(decode)
            .collect()
    }

    /// The schema version, after migrating.
    pub fn version(&self) -> anyhow::Result<i64> {
        let row = self
            .client()
            .query_one("SELECT version FROM dg_schema_version", &[])?;
        Ok(row.get::<_, i32>(0) as i64)
    }

    fn migrate(&self) -> anyhow::Result<()> {
        let mut client = self.client();
        let mut tx = client.transaction()?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&LOCK_CLASS, &lock_key(&["schema", &self.schema])],
        )?;
        // Only create a missing schema: `CREATE SCHEMA IF NOT EXISTS` needs
        // the CREATE privilege on the database even when the schema exists.
        let exists = tx
            .query_opt(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                &[&self.schema],
            )?
            .is_some();
        if !exists {
            tx.batch_execute(&format!("CREATE SCHEMA {}", quote_ident(&self.schema)))?;
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS dg_schema_version (version INTEGER NOT NULL)",
        )?;
        let version: i32 = match tx.query_opt("SELECT version FROM dg_schema_version", &[])? {
            Some(r) => r.get(0),
            None => {
                tx.execute("INSERT INTO dg_schema_version (version) VALUES (0)", &[])?;
                0
            }
        };
        if version as usize > MIGRATIONS.len() {
            anyhow::bail!(
                "the state database has schema version {version}, newer than this dg understands ({}); upgrade dg",
                MIGRATIONS.len()
            );
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(m)?;
            tx.execute(
                "UPDATE dg_schema_version SET version = $1",
                &[&((i + 1) as i32)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Runs `f` in a transaction, with the store's message on errors.
    /// Runs `f` in a transaction; once more on a new connection when the
    /// connection dropped (the failed transaction wrote nothing).
    fn in_tx<T>(
        &self,
        mut f: impl FnMut(&mut Transaction<'_>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut once = || -> anyhow::Result<T> {
            let mut client = self.client();
            let mut tx = client.transaction()?;
            let out = f(&mut tx)?;
            tx.commit()?;
            Ok(out)
        };
        match once() {
            Err(_)
                if self
                    .client
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_closed() =>
            {
                once()
            }
            r => r,
        }
    }
}

super::stored_row!(Row, try_get);

impl StateStore for PostgresStore {
    fn begin_run(&self, run: &RunRecord) -> anyhow::Result<()> {
        self.client().execute(
            pg(schema::INSERT_RUN),
            &[
                &run.id,
                &run.started_at,
                &run.ended_at,
                &run.status.as_str(),
                &run.selection,
                &run.partitions,
                &run.dg_version,
                &(run.pid as i64),
                &run.host,
                &run.steps,
                &run.profile,
                &run.config.as_ref().map(|c| c.to_string()),
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
        self.in_tx(|tx| {
            tx.execute(
                pg(schema::END_RUN),
                &[&id, &status.as_str(), &ended_at, &steps],
            )?;
            tx.execute(pg(schema::RELEASE_RUN_LEASES), &[&id])?;
            Ok(())
        })
    }

    fn record(&self, batch: &[Record]) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.in_tx(|tx| {
            let mut attempt = None;
            let mut mat = None;
            let mut state_ok = None;
            let mut state_failed = None;
            let mut release = None;
            for r in batch {
                match r {
                    Record::Attempt(a) => {
                        if attempt.is_none() {
                            attempt = Some(tx.prepare(
                                "INSERT INTO step_attempts
                                 (run_id, step_id, asset, partition, attempt, status, started_at, duration_ms, exit_code, error, log_path)
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                                 ON CONFLICT (run_id, step_id, attempt) DO UPDATE SET
                                   asset = excluded.asset, partition = excluded.partition,
                                   status = excluded.status, started_at = excluded.started_at,
                                   duration_ms = excluded.duration_ms, exit_code = excluded.exit_code,
                                   error = excluded.error, log_path = excluded.log_path",
                            )?);
                        }
                        tx.execute(
                            attempt.as_ref().unwrap(),
                            &[
                                &a.run_id,
                                &a.step_id,
                                &a.asset,
                                &a.partition,
                                &(a.attempt as i64),
                                &a.status,
                                &a.started_at,
                                &a.duration_ms,
                                &a.exit_code,
                                &a.error,
                                &a.log_path,
                            ],
                        )?;
                    }
                    Record::Materialization(m) => {
                        if mat.is_none() {
                            mat = Some(tx.prepare(
                                pg(schema::INSERT_MATERIALIZATION),
                            )?);
                            state_ok = Some(tx.prepare(
                                "INSERT INTO partition_state
                                 (asset, partition, status, run_id, code_version, data_version, input_fp, updated_at)
                                 VALUES ($1, $2, 'materialized', $3, $4, $5, $6, $7)
                                 ON CONFLICT (asset, partition) DO UPDATE SET
                                   status = 'materialized', run_id = excluded.run_id,
                                   code_version = excluded.code_version,
                                   data_version = excluded.data_version,
                                   input_fp = excluded.input_fp, updated_at = excluded.updated_at",
                            )?);
                        }
                        let p = m.partition.as_deref().unwrap_or("");
                        tx.execute(
                            mat.as_ref().unwrap(),
                            &[
                                &m.asset,
                                &p,
                                &m.run_id,
                                &m.created_at,
                                &m.code_version,
                                &m.data_version,
                                &serde_json::to_string(&m.inputs)?,
                                &m.input_fp,
                                &serde_json::to_string(&m.metadata)?,
                            ],
                        )?;
                        tx.execute(
                            state_ok.as_ref().unwrap(),
                            &[
                                &m.asset,
                                &p,
                                &m.run_id,
                                &m.code_version,
                                &m.data_version,
                                &m.input_fp,
                                &m.created_at,
                            ],
                        )?;
                    }
                    Record::Failed {
                        asset, partition, ..
                    } => {
                        if state_failed.is_none() {
                            state_failed = Some(tx.prepare(
                                pg(schema::PARTITION_FAILED),
                            )?);
                        }
                        tx.execute(
                            state_failed.as_ref().unwrap(),
                            &[asset, &partition.as_deref().unwrap_or(""), &now()],
                        )?;
                    }
                    Record::Check(c) => {
                        tx.execute(
                            pg(schema::INSERT_CHECK),
                            &[
                                &c.run_id,
                                &c.asset,
                                &c.partition.as_deref().unwrap_or(""),
                                &c.check,
                                &c.passed,
                                &c.severity,
                                &c.message,
                                &serde_json::to_string(&c.metadata)?,
                                &c.created_at,
                                &c.duration_ms,
                            ],
                        )?;
                    }
                    Record::StepResult(r) => {
                        tx.execute(
                            "INSERT INTO step_results
                             (run_id, step_id, attempt, status, attempts, error, blocked_by, log_path, host, finished_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                             ON CONFLICT (run_id, step_id) DO UPDATE SET attempt = EXCLUDED.attempt,
                               status = EXCLUDED.status, attempts = EXCLUDED.attempts, error = EXCLUDED.error,
                               blocked_by = EXCLUDED.blocked_by, log_path = EXCLUDED.log_path,
                               host = EXCLUDED.host, finished_at = EXCLUDED.finished_at",
                            &[
                                &r.run_id,
                                &r.step_id,
                                &(r.attempt as i64),
                                &r.status,
                                &(r.attempts as i64),
                                &r.error,
                                &r.blocked_by,
                                &r.log_path,
                                &r.host,
                                &r.finished_at,
                            ],
                        )?;
                    }
                    Record::Release {
                        asset,
                        partition,
                        run_id,
                    } => {
                        if release.is_none() {
                            release = Some(tx.prepare(
                                pg(schema::RELEASE_LEASE),
                            )?);
                        }
                        tx.execute(release.as_ref().unwrap(), &[asset, partition, run_id])?;
                    }
                }
            }
            Ok(())
        })
    }

    fn partitions(&self, asset: &str, _expected: usize) -> anyhow::Result<PartitionStates> {
        let mut client = self.client();
        let rows = client.query(pg(schema::PARTITION_STATES), &[&asset])?;
        drop(client);
        let mut out = PartitionStates::with_capacity_and_hasher(rows.len(), Default::default());
        let mut interned: rustc_hash::FxHashMap<String, std::sync::Arc<str>> = Default::default();
        let mut intern = |v: Option<&str>| -> Option<std::sync::Arc<str>> {
            let s = v?;
            if let Some(a) = interned.get(s) {
                return Some(a.clone());
            }
            let a: std::sync::Arc<str> = std::sync::Arc::from(s);
            interned.insert(s.to_string(), a.clone());
            Some(a)
        };
        for r in &rows {
            let failed = r.get::<_, &str>(1) == "failed";
            out.insert(
                compact_str::CompactString::from(r.get::<_, &str>(0)),
                PartitionState {
                    failed,
                    run_id: intern(r.get(2)),
                    code_version: intern(r.get(3)),
                    data_version: r.get::<_, Option<&str>>(4).and_then(super::parse_hash),
                    input_fp: r.get::<_, Option<&str>>(5).and_then(super::parse_hash),
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
        let rows = self.client().query(
            "SELECT partition, run_id, data_version, updated_at FROM partition_state
             WHERE asset = $1 AND partition = ANY($2) AND run_id IS NOT NULL",
            &[&asset, &keys],
        )?;
        let mut found: std::collections::HashMap<String, super::Stamped> = rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
            .collect();
        Ok(keys.iter().map(|k| found.remove(k)).collect())
    }

    fn materialized(&self, asset: &str) -> anyhow::Result<HashSet<String>> {
        let rows = self.client().query(pg(schema::MATERIALIZED), &[&asset])?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    fn runs(&self, limit: usize) -> anyhow::Result<Vec<RunRecord>> {
        self.decoded(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs
                 ORDER BY started_at COLLATE \"C\" DESC, id COLLATE \"C\" DESC LIMIT $1"
            ),
            &[&(limit.min(i64::MAX as usize) as i64)],
            run_from_row,
        )
    }

    fn run(&self, id: &str) -> anyhow::Result<Option<RunRecord>> {
        let row = self.client().query_opt(pg(schema::RUN), &[&id])?;
        row.as_ref().map(run_from_row).transpose()
    }

    fn attempts(&self, run_id: &str) -> anyhow::Result<Vec<AttemptRecord>> {
        self.decoded(
            &format!(
                "SELECT {ATTEMPT_COLUMNS} FROM step_attempts WHERE run_id = $1
                 ORDER BY started_at COLLATE \"C\", step_id COLLATE \"C\", attempt"
            ),
            &[&run_id],
            attempt_from_row,
        )
    }

    fn materializations(&self, run_id: &str) -> anyhow::Result<Vec<Materialization>> {
        self.decoded(
            pg(schema::MATERIALIZATIONS),
            &[&run_id],
            materialization_from_row,
        )
    }

    fn dynamic_keys(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let rows = self.client().query(pg(schema::DYNAMIC_KEYS), &[&name])?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    fn add_dynamic_keys(&self, name: &str, keys: &[String]) -> anyhow::Result<usize> {
        self.in_tx(|tx| {
            // Positions are handed out one after another: one writer per name.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                &[&LOCK_CLASS, &lock_key(&["dynamic", &self.schema, name])],
            )?;
            let mut next: i64 = tx
                .query_one(pg(schema::NEXT_DYNAMIC_POSITION), &[&name])?
                .get(0);
            let insert = tx.prepare(
                "INSERT INTO dynamic_partitions (name, key, position) VALUES ($1, $2, $3)
                 ON CONFLICT (name, key) DO NOTHING",
            )?;
            let mut added = 0;
            for k in keys {
                if tx.execute(&insert, &[&name, k, &next])? > 0 {
                    next += 1;
                    added += 1;
                }
            }
            Ok(added)
        })
    }

    fn remove_dynamic_keys(&self, name: &str, keys: &[String]) -> anyhow::Result<usize> {
        self.in_tx(|tx| {
            let mut removed = 0;
            for k in keys {
                removed += tx.execute(pg(schema::REMOVE_DYNAMIC_KEY), &[&name, k])? as usize;
            }
            Ok(removed)
        })
    }

    fn try_lease(&self, asset: &str, partition: &str, me: &Lease) -> anyhow::Result<Option<Lease>> {
        let pid = me.pid as i64;
        // Either the insert wins the row, or the row exists and is locked
        // here until commit; when it vanished in between, try again.
        loop {
            let outcome = self.in_tx(|tx| {
                let now_ms = super::unix_ms();
                let expires = now_ms + super::lease_ttl_ms();
                let inserted = tx.execute(
                    "INSERT INTO leases (asset, partition, run_id, pid, host, acquired_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (asset, partition) DO NOTHING",
                    &[&asset, &partition, &me.run_id, &pid, &me.host, &now(), &expires],
                )?;
                if inserted > 0 {
                    return Ok(Some(None));
                }
                let Some(row) = tx.query_opt(
                    "SELECT run_id, pid, host, expires_at FROM leases
                     WHERE asset = $1 AND partition = $2 FOR UPDATE",
                    &[&asset, &partition],
                )?
                else {
                    return Ok(None);
                };
                let holder = Lease {
                    run_id: row.get(0),
                    pid: row.u32(1, "leases.pid")?,
                    host: row.get(2),
                };
                if super::lease_holds(&holder, row.get(3), me, now_ms) {
                    return Ok(Some(Some(holder)));
                }
                tx.execute(
                    "UPDATE leases SET run_id = $3, pid = $4, host = $5, acquired_at = $6, expires_at = $7
                     WHERE asset = $1 AND partition = $2",
                    &[&asset, &partition, &me.run_id, &pid, &me.host, &now(), &expires],
                )?;
                Ok(Some(None))
            })?;
            if let Some(result) = outcome {
                return Ok(result);
            }
        }
    }

    fn heartbeat(&self, me: &Lease) -> anyhow::Result<usize> {
        let n = self.client().execute(
            pg(schema::HEARTBEAT),
            &[
                &me.run_id,
                &(me.pid as i64),
                &me.host,
                &(super::unix_ms() + super::lease_ttl_ms()),
            ],
        )?;
        Ok(n as usize)
    }

    fn save_step_specs(&self, run_id: &str, specs: &[(String, String)]) -> anyhow::Result<()> {
        self.in_tx(|tx| {
            // One statement per 500 specs, not one round trip each.
            for chunk in specs.chunks(500) {
                let steps: Vec<&str> = chunk.iter().map(|(s, _)| s.as_str()).collect();
                let texts: Vec<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
                tx.execute(
                    "INSERT INTO step_specs (run_id, step_id, spec)
                     SELECT $1, s, t FROM unnest($2::text[], $3::text[]) AS u(s, t)
                     ON CONFLICT (run_id, step_id) DO UPDATE SET spec = EXCLUDED.spec",
                    &[&run_id, &steps, &texts],
                )?;
            }
            Ok(())
        })
    }

    fn step_results(&self, run_id: &str) -> anyhow::Result<Vec<super::StepResult>> {
        self.decoded(pg(schema::STEP_RESULTS), &[&run_id], step_result_from_row)
    }

    fn step_spec(&self, run_id: &str, step_id: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .client()
            .query_opt(pg(schema::STEP_SPEC), &[&run_id, &step_id])?
            .map(|r| r.get(0)))
    }

    fn try_pool_slot(
        &self,
        pool: &str,
        limit: u32,
        me: &Lease,
        step_id: &str,
    ) -> anyhow::Result<Option<u32>> {
        self.in_tx(|tx| {
            // One taker per pool at a time, across every dg process.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                &[&LOCK_CLASS, &lock_key(&["pool", &self.schema, pool])],
            )?;
            let rows = tx.query(pg(schema::POOL_HOLDERS), &[&pool])?;
            let mut held = Vec::with_capacity(rows.len());
            for r in rows {
                let slot = r.u32(0, "pool_slots.slot")?;
                let pid = r.u32(1, "pool_slots.pid")?;
                let host: String = r.get(2);
                if host == me.host && pid != me.pid && !super::pid_alive(pid) {
                    tx.execute(pg(schema::RECLAIM_POOL_SLOT), &[&pool, &(slot as i64)])?;
                } else {
                    held.push(slot);
                }
            }
            let Some(slot) = super::free_slot(&held, limit) else {
                return Ok(None);
            };
            tx.execute(
                pg(schema::TAKE_POOL_SLOT),
                &[
                    &pool,
                    &(slot as i64),
                    &me.run_id,
                    &(me.pid as i64),
                    &me.host,
                    &step_id,
                    &now(),
                ],
            )?;
            Ok(Some(slot))
        })
    }

    fn release_pool_slot(&self, pool: &str, slot: u32, run_id: &str) -> anyhow::Result<()> {
        self.client().execute(
            pg(schema::RELEASE_POOL_SLOT),
            &[&pool, &(slot as i64), &run_id],
        )?;
        Ok(())
    }

    fn release_pool_slots(&self, run_id: &str) -> anyhow::Result<()> {
        self.client()
            .execute(pg(schema::RELEASE_RUN_POOL_SLOTS), &[&run_id])?;
        Ok(())
    }

    fn latest_checks(&self, asset: &str) -> anyhow::Result<Vec<CheckRecord>> {
        self.decoded(
            &format!(
                "SELECT DISTINCT ON (partition, check_name) {CHECK_COLUMNS} FROM check_results
                 WHERE asset = $1 ORDER BY partition, check_name, id DESC"
            ),
            &[&asset],
            check_from_row,
        )
    }

    fn run_checks(&self, run_id: &str) -> anyhow::Result<Vec<CheckRecord>> {
        self.decoded(pg(schema::RUN_CHECKS), &[&run_id], check_from_row)
    }

    fn last_materialized_at(&self, asset: &str) -> anyhow::Result<Option<String>> {
        let row = self
            .client()
            .query_one(pg(schema::LAST_MATERIALIZED_AT), &[&asset])?;
        Ok(row.get(0))
    }

    fn release(&self, asset: &str, partition: &str, run_id: &str) -> anyhow::Result<()> {
        self.client()
            .execute(pg(schema::RELEASE_LEASE), &[&asset, &partition, &run_id])?;
        Ok(())
    }

    fn latest_materialization(
        &self,
        asset: &str,
        partition: &str,
    ) -> anyhow::Result<Option<(String, String)>> {
        let row = self
            .client()
            .query_opt(pg(schema::LATEST_MATERIALIZATION), &[&asset, &partition])?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    fn last_ticks(&self) -> anyhow::Result<std::collections::HashMap<String, i64>> {
        let rows = self.client().query(pg(schema::LAST_TICKS), &[])?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect())
    }

    fn claim_tick(&self, c: &TickClaim) -> anyhow::Result<bool> {
        // The primary key decides: of two transactions inserting the same
        // tick, the second waits for the first and then inserts nothing.
        self.in_tx(|tx| {
            let n = tx.execute(
                "INSERT INTO job_ticks (job, tick, tick_time, status, pid, host, claimed_at)
                 VALUES ($1, $2, $3, 'running', $4, $5, $6)
                 ON CONFLICT (job, tick) DO NOTHING",
                &[
                    &c.job,
                    &c.tick,
                    &c.tick_time,
                    &i64::from(c.pid),
                    &c.host,
                    &now(),
                ],
            )?;
            Ok(n > 0)
        })
    }

    fn finish_tick(
        &self,
        job: &str,
        tick: i64,
        status: &str,
        run_id: Option<&str>,
    ) -> anyhow::Result<()> {
        self.client().execute(
            pg(schema::FINISH_TICK),
            &[&job, &tick, &status, &run_id, &now()],
        )?;
        Ok(())
    }

    fn reap_dead_runs(&self) -> anyhow::Result<Vec<String>> {
        let host = super::hostname();
        self.in_tx(|tx| {
            let running = tx.query(
                "SELECT id, pid FROM runs WHERE status = 'running' AND host = $1 FOR UPDATE",
                &[&host],
            )?;
            let mut reaped = Vec::new();
            for r in running {
                let id: String = r.get(0);
                let pid = r.u32(1, "runs.pid")?;
                if pid != std::process::id() && !super::pid_alive(pid) {
                    tx.execute(pg(schema::INTERRUPT_RUN), &[&id, &now()])?;
                    tx.execute(pg(schema::RELEASE_RUN_LEASES), &[&id])?;
                    tx.execute(pg(schema::RELEASE_RUN_POOL_SLOTS), &[&id])?;
                    reaped.push(id);
                }
            }
            Ok(reaped)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    #[test]
    fn the_schema_parameter_is_taken_out() {
        assert_eq!(
            split_schema("postgres://h/db?schema=my%20s&sslmode=disable").unwrap(),
            (
                "postgres://h/db?sslmode=disable".to_string(),
                "my s".to_string()
            )
        );
        assert_eq!(
            split_schema("postgres://h/db").unwrap(),
            ("postgres://h/db".to_string(), "public".to_string())
        );
        assert_eq!(
            split_schema("postgres://h/db?schema=a").unwrap().0,
            "postgres://h/db"
        );
        assert!(split_schema("postgres://h/db?schema=").is_err());
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    /// As the SQLite store's test of the same name: a stored process id,
    /// attempt number or pool slot out of `u32`'s range is an error naming
    /// the column and the value, in every reader. Needs a server
    /// (`DG_TEST_POSTGRES_URL`, `. .ci/postgres.sh`); skipped without one,
    /// except under CI (`CI=true`), where that fails.
    #[test]
    fn integers_out_of_range_are_errors_not_wrapped() {
        let Ok(url) = std::env::var("DG_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "DG_TEST_POSTGRES_URL is not set (source .ci/postgres.sh)"
            );
            return;
        };
        let schema = format!("dg_narrow_{}", std::process::id());
        let sep = if url.contains('?') { '&' } else { '?' };
        let s = PostgresStore::open(&format!("{url}{sep}schema={schema}")).unwrap();
        let inserted = s.client().batch_execute(&testing::corrupt_rows());
        let read = inserted.map(|_| testing::read_corrupt_rows(&s));
        s.client()
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", quote_ident(&schema)))
            .unwrap();
        testing::assert_errors(read.unwrap());
    }
}
