//! The dashboard's own connections: a second, small pool for the viewer reads (listing,
//! export, stats, audit), with a statement timeout on PostgreSQL.
//!
//! On a large ledger a viewer query can take a second (an all-time count, a filter no index
//! serves well); many viewers at once held every connection of the one pool, and issuance
//! waited seconds for a connection. With the reads in a pool of their own, issuance keeps all
//! of `database.max_connections`, the reads get [`read_connections`] more, and a dashboard
//! query that runs past [`read_statement_timeout`] is cancelled by PostgreSQL itself (answered
//! 503 `store_unavailable`), so it cannot hold its connection either.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::Store;
use crate::config::Settings;

/// The longest a dashboard statement may run: 10 s, or the request deadline when shorter
/// (an answer after the deadline is never sent anyway).
pub fn read_statement_timeout(settings: &Settings) -> Duration {
    settings
        .server
        .request_timeout_secs
        .min(Duration::from_secs(10))
}

/// Connections of the read pool: a quarter of `database.max_connections`, at least 2 (SQLite:
/// at most 4).
pub fn read_connections(settings: &Settings) -> u32 {
    (settings.database.max_connections / 4).max(2)
}

impl Store {
    /// The read pool of the same database (connected lazily: its first query connects). The
    /// schema must exist: connect the main store and migrate first.
    pub async fn connect_reads(settings: &Settings) -> anyhow::Result<Store> {
        let url = settings.database_url();
        let acquire = settings.database.connect_timeout_secs;
        if url.starts_with("sqlite:") {
            // SQLite has no statement timeout; its reads are bounded by the request deadline.
            let options = SqliteConnectOptions::from_str(&url)?
                .create_if_missing(false)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(read_connections(settings).min(4))
                .acquire_timeout(acquire)
                .connect_lazy_with(options);
            Ok(Store::Sqlite(pool))
        } else {
            let timeout_ms = read_statement_timeout(settings)
                .as_millis()
                .max(1)
                .to_string();
            let options = PgConnectOptions::from_str(&url)?
                .application_name("factory-ca-reads")
                .options([("statement_timeout", timeout_ms.as_str())]);
            let pool = PgPoolOptions::new()
                .max_connections(read_connections(settings))
                .acquire_timeout(acquire)
                .connect_lazy_with(options);
            Ok(Store::Postgres(pool))
        }
    }
}
