//! Postgres connections, shared by the `postgres` I/O manager (and its
//! in-database SQL) and the Postgres state store: dg's defaults for a
//! connection and one line for a driver error. Passwords in URLs are masked
//! by [`crate::secrets`] ([`mask_url`], `Secrets`), which every place
//! that shows a URL uses.

use std::time::Duration;

pub use crate::secrets::mask_url;

/// dg's defaults on a connection `config` parsed from a URL, where the URL
/// does not set them: `connect_timeout` (so that an unreachable server is
/// an error, not a hang) and `application_name = dg` (as `pg_stat_activity`
/// shows it).
pub fn set_defaults(config: &mut postgres::Config, connect_timeout: Duration) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("dg");
    }
}

/// The driver's error with its cause (the server's message, the OS error).
pub fn error_text(e: &postgres::Error) -> String {
    let mut s = e.to_string();
    if let Some(db) = e.as_db_error() {
        let msg = db.message();
        if !s.contains(msg) {
            s = format!("{s}: {msg}");
        }
    } else if let Some(src) = std::error::Error::source(e) {
        let src = src.to_string();
        if !s.contains(&src) {
            s = format!("{s}: {src}");
        }
    }
    s
}
