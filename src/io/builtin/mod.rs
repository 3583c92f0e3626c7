//! The I/O managers dg ships: each file is one `type` of `[resources]`
//! (`fs`, `sqlite`, `postgres`, `duckdb`, `s3`/`gcs`/`azure` in `objstore`,
//! `memory`, and `plugin`, a manager run as a separate program). `db` holds
//! what the three database managers share: table names, the `dg_partition`
//! column, the schema rule, and the core of storing, reading and checking
//! a table, written once over a small driver trait (`db::TableTx`). They
//! implement the same [`crate::io::IoManager`] trait an embedding program
//! implements.

pub mod db;
#[cfg(feature = "duckdb")]
pub mod duckdb;
pub mod fs;
pub mod memory;
pub mod objstore;
pub mod plugin;
pub mod postgres;
pub mod sqlite;
