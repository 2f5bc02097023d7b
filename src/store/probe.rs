//! The reachability probe's own database connection, outside the pool: a pool busy with
//! requests is not an unreachable database, and a probe must not queue behind them.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor};

use super::StoreResult;
use crate::config::Settings;

enum Open {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// One connection for the probe, opened when needed and dropped after any failure (a round
/// trip cut short by the caller's timeout leaves it in an unknown state).
pub struct ProbeConnection {
    url: String,
    open: Option<Open>,
}

impl ProbeConnection {
    pub fn new(settings: &Settings) -> ProbeConnection {
        ProbeConnection {
            url: settings.database_url(),
            open: None,
        }
    }

    /// Opens the connection if needed and makes one round trip. The caller bounds the time.
    pub async fn check(&mut self) -> StoreResult<()> {
        let mut open = match self.open.take() {
            Some(open) => open,
            None => self.connect().await?,
        };
        match &mut open {
            Open::Postgres(conn) => conn.execute("SELECT 1").await.map(drop)?,
            Open::Sqlite(conn) => conn.execute("SELECT 1").await.map(drop)?,
        }
        self.open = Some(open);
        Ok(())
    }

    async fn connect(&self) -> StoreResult<Open> {
        if self.url.starts_with("sqlite:") {
            // The pool creates the file; the probe only looks at it.
            let options = SqliteConnectOptions::from_str(&self.url)?.create_if_missing(false);
            Ok(Open::Sqlite(
                SqliteConnection::connect_with(&options).await?,
            ))
        } else {
            let options =
                PgConnectOptions::from_str(&self.url)?.application_name("factory-ca probe");
            Ok(Open::Postgres(PgConnection::connect_with(&options).await?))
        }
    }
}
