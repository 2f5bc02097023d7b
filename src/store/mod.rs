//! All SQL. One [`Store`] over PostgreSQL (production) or SQLite (the embedded default).
//!
//! Both backends run the same statement text: `$N` placeholders and the SQL used here
//! (`ON CONFLICT`, row-value comparison, partial indexes) mean the same in both. The
//! [`on_pool!`] macro type-checks each body once per backend, so there is one copy of each
//! query. Schema differences live in `migrations/postgres` and `migrations/sqlite`.

mod hex_columns;
mod timestamp;
pub mod values;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use hex_columns::{HexArg, HexText, MaybeHexText};
pub use timestamp::Timestamp;
pub use values::{Channel, LedgerStatus, Role, TemplateKind, TextValue};

pub use audit::{AuditEntry, AuditFilter, AuditRecord};
pub use cas::{CaRecord, PendingCaRecord};
pub use certificates::{
    AwsStatusFilter, CertificateFilter, CertificateRecord, NewIssuance, RecordOutcome, Superseding,
};
pub use tokens::TokenRecord;

use crate::aws::AwsCertificateStatus;
use crate::ca::{IssuedCertificate, RevocationReason};
use crate::config::Settings;

/// A store failure the caller cannot fix: the database is down, full, or refused the write.
#[derive(Debug, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct StoreError(#[from] pub sqlx::Error);

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Clone, Debug)]
pub enum Store {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to the backend's pool; the body is compiled once per
/// backend, so the query text and binds are written once.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            Store::Postgres($pool) => $body,
            Store::Sqlite($pool) => $body,
        }
    };
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Records the time of a store operation in `factory_ca_store_duration_seconds`.
pub(crate) fn observe_duration(operation: &'static str, started: std::time::Instant) {
    metrics::histogram!("factory_ca_store_duration_seconds", "operation" => operation)
        .record(started.elapsed().as_secs_f64());
}

/// A value bound to a dynamically built query.
pub(crate) enum Bind {
    Text(String),
    /// Hex text kept as bytes on PostgreSQL (a serial), bound in its column's encoding.
    Hex(String),
    Time(Timestamp),
}

/// Binds each [`Bind`] of `$binds` to `$query`, in order (for either backend's query type).
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for bind in $binds {
            query = match bind {
                Bind::Text(v) => query.bind(v),
                Bind::Hex(v) => query.bind($crate::store::HexArg(v)),
                Bind::Time(v) => query.bind(*v),
            };
        }
        query
    }};
}

/// Appends `$events` (a `&[chain::Event]`) to `$ca_id`'s hash chain inside the open transaction
/// `$tx`: locks the CA's head row, inserts the linked records, moves the head. Evaluates to
/// `Result<(), sqlx::Error>`; type-checked per backend like [`on_pool!`].
macro_rules! append_chain {
    ($tx:expr, $ca_id:expr, $events:expr) => {{
        async {
            let events: &[$crate::store::chain::Event] = $events;
            if events.is_empty() {
                return Ok::<(), sqlx::Error>(());
            }
            let (seq, hash): (i64, Vec<u8>) = sqlx::query_as($crate::store::chain::LOCK_HEAD_SQL)
                .bind($ca_id)
                .bind(&$crate::store::chain::GENESIS[..])
                .fetch_one(&mut *$tx)
                .await?;
            let (linked, seq, hash) = $crate::store::chain::link_all(seq, hash, events)?;
            for chunk in linked.chunks($crate::store::chain::INSERT_CHUNK) {
                let sql = $crate::store::chain::insert_sql(chunk.len());
                let mut query = sqlx::query(&sql);
                for r in chunk {
                    query = query
                        .bind($ca_id)
                        .bind(r.seq)
                        .bind(r.kind)
                        .bind($crate::store::HexArg(&r.serial))
                        .bind(&r.prev_hash[..])
                        .bind(&r.hash[..]);
                }
                query.execute(&mut *$tx).await?;
            }
            sqlx::query($crate::store::chain::UPDATE_HEAD_SQL)
                .bind($ca_id)
                .bind(seq)
                .bind(&hash[..])
                .execute(&mut *$tx)
                .await?;
            Ok(())
        }
        .await
    }};
}

/// Inserts `$entry` (a `&AuditEntry`) into `audit_log` at `$at` through `$executor`: a pool, or
/// an open transaction when the entry belongs to its other writes. Evaluates to the query's
/// `execute` future; type-checked per backend like [`on_pool!`].
macro_rules! insert_audit {
    ($executor:expr, $at:expr, $entry:expr) => {{
        let entry: &$crate::store::AuditEntry<'_> = $entry;
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, outcome, detail, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind($at)
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.target)
        .bind(if entry.success { "success" } else { "failure" })
        .bind(entry.detail)
        .bind(entry.request_id)
        .execute($executor)
    }};
}

/// A row type the store reads on both backends.
pub(crate) trait Row:
    for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
    + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
    + Send
    + Unpin
{
}

impl<T> Row for T where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + Send
        + Unpin
{
}

impl Store {
    /// Every row that `sql` (without parameters) selects.
    async fn fetch_rows<T: Row>(&self, sql: &str) -> StoreResult<Vec<T>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await)?)
    }

    /// The row that `sql` selects by its one text parameter `$1`, if any.
    async fn fetch_by_key<T: Row>(&self, sql: &str, key: &str) -> StoreResult<Option<T>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(sql)
            .bind(key)
            .fetch_optional(pool)
            .await)?)
    }

    /// Runs `sql` (an UPDATE or a DELETE) with its one text parameter `$1`; true when it
    /// changed a row.
    async fn execute_by_key(&self, sql: &str, key: &str) -> StoreResult<bool> {
        let changed = on_pool!(self, |pool| sqlx::query(sql)
            .bind(key)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(changed > 0)
    }
}

// Declared after `on_pool!` and `bind_all!`, which they use; `certificate_counts` first, for
// its `add_counts!`.
#[macro_use]
pub(crate) mod certificate_counts;
mod audit;
pub mod aws;
mod aws_revocations;
pub mod backup;
pub mod bulk_revocation;
mod cas;
mod certificates;
pub mod chain;
pub mod checkpoints;
pub mod crls;
pub mod ledger_writer;
pub mod probe;
pub mod reads;
pub mod revocation;
mod sessions;
pub mod stats;
pub mod sync_jobs;
mod tokens;

/// Where a store lives, for messages: the SQLite file's absolute path, or the PostgreSQL host,
/// port and database (never the password).
pub fn describe_location(settings: &Settings) -> String {
    let url = settings.database_url();
    match sqlite_path(&url) {
        Some(path) => {
            let path = std::path::absolute(&path).unwrap_or(path);
            format!("SQLite {}", path.display())
        }
        None => describe_postgres(&url),
    }
}

/// `PostgreSQL host:port/database`, or `PostgreSQL socket /dir:port/database` for a URL with
/// `?host=/dir` (the Unix socket in that directory; the URL's host is then unused).
fn describe_postgres(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(options) => {
            let (kind, place) = match options.get_socket() {
                Some(dir) => ("socket ", dir.to_string_lossy()),
                None => ("", options.get_host().into()),
            };
            format!(
                "PostgreSQL {kind}{place}:{}/{}",
                options.get_port(),
                options.get_database().unwrap_or("(default database)")
            )
        }
        Err(_) => "PostgreSQL (database.url does not parse)".to_owned(),
    }
}

/// The file of a `sqlite:` URL; `None` for other URLs and in-memory databases.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Owner-only modes for the SQLite store: the data directory 0700, the database file 0600
/// (created that way when missing), and its `-wal` and `-shm` files 0600 when they exist.
/// SQLite creates the WAL and shared-memory files with the database file's mode, so they stay
/// owner-only. A mode that cannot be set (another owner) is logged, not fatal: the service
/// still runs, as it did before it set modes.
fn secure_sqlite_files(data_dir: &std::path::Path, database: Option<&std::path::Path>) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let set = |path: &std::path::Path, mode: u32| {
            if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
                tracing::warn!(path = %path.display(), error = %e, "cannot make owner-only");
            }
        };
        set(data_dir, 0o700);
        let Some(database) = database else { return };
        if !database.exists() {
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(database);
            if let Err(e) = created
                && e.kind() != std::io::ErrorKind::AlreadyExists
            {
                tracing::warn!(path = %database.display(), error = %e, "cannot create the database file");
                return;
            }
        }
        set(database, 0o600);
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut side = database.as_os_str().to_owned();
            side.push(suffix);
            let side = std::path::PathBuf::from(side);
            if side.exists() {
                set(&side, 0o600);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (data_dir, database);
}

/// Whether a connection going back to the pool may be handed out again: only when the rollback
/// of a dropped transaction went through. After `SQLITE_FULL`, SQLite may have rolled the
/// transaction back by itself, the ROLLBACK then fails, and sqlx still counts the connection as
/// in a transaction: its next BEGIN would be a savepoint whose "commit" commits nothing. Such a
/// connection is closed instead.
async fn released_outside_transaction<C: sqlx::Connection>(
    conn: &mut C,
) -> Result<bool, sqlx::Error> {
    // The ping runs what sqlx queued on the connection first (the rollback of a dropped
    // transaction).
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

/// Whether a store is there to work on, for commands that must not create one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existence {
    /// No SQLite file, or a PostgreSQL database without factory-ca's tables.
    Missing,
    /// The schema is there but no CA was ever created or imported.
    NoCa,
    /// A store with at least one CA.
    Ready,
}

impl Store {
    /// Looks at the configured store without creating anything: the SQLite file must exist,
    /// and a PostgreSQL database must hold factory-ca's tables.
    pub async fn probe_existing(settings: &Settings) -> anyhow::Result<(Option<Store>, Existence)> {
        let url = settings.database_url();
        if let Some(path) = sqlite_path(&url)
            && !path.exists()
        {
            return Ok((None, Existence::Missing));
        }
        let store = Store::connect(settings).await?;
        let has_schema: bool = on_pool!(&store, |pool| sqlx::query_scalar(
            "SELECT count(*) > 0 FROM _sqlx_migrations WHERE success"
        )
        .fetch_one(pool)
        .await)
        .unwrap_or(false);
        if !has_schema {
            return Ok((Some(store), Existence::Missing));
        }
        // Counted, not listed: this runs before the store is migrated, so the columns of a
        // newer schema may not be there yet (nor the pending table, counted as empty then).
        let cas: i64 = on_pool!(&store, |pool| sqlx::query_scalar(
            "SELECT count(*) FROM certificate_authorities"
        )
        .fetch_one(pool)
        .await)?;
        let pending: i64 = on_pool!(&store, |pool| sqlx::query_scalar(
            "SELECT count(*) FROM pending_certificate_authorities"
        )
        .fetch_one(pool)
        .await)
        .unwrap_or(0);
        let existence = if cas + pending == 0 {
            Existence::NoCa
        } else {
            Existence::Ready
        };
        Ok((Some(store), existence))
    }

    /// Connects (creating the SQLite file and its directory when needed). Does not migrate.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Store> {
        let url = settings.database_url();
        let timeout = settings.database.connect_timeout_secs;
        if url.starts_with("sqlite:") {
            std::fs::create_dir_all(&settings.data_dir)?;
            secure_sqlite_files(&settings.data_dir, sqlite_path(&url).as_deref());
            let options = SqliteConnectOptions::from_str(&url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // A certificate that left the service must survive a power cut: FULL syncs
                // the WAL on every commit.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(settings.database.max_connections.min(8))
                .acquire_timeout(timeout)
                .after_release(|conn, _| Box::pin(released_outside_transaction(conn)))
                .connect_with(options)
                .await?;
            Ok(Store::Sqlite(pool))
        } else {
            let options = PgConnectOptions::from_str(&url)?.application_name("factory-ca");
            let pool = PgPoolOptions::new()
                .max_connections(settings.database.max_connections)
                .acquire_timeout(timeout)
                .after_release(|conn, _| Box::pin(released_outside_transaction(conn)))
                .connect_with(options)
                .await?;
            Ok(Store::Postgres(pool))
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Applies the pending migrations of this backend.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Store::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
            Store::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
        }
        self.adopt_unchained().await?;
        Ok(())
    }

    /// One cheap round trip, for readiness checks.
    pub async fn ping(&self) -> StoreResult<()> {
        on_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Connections of the pool: `(open, idle)`.
    pub fn pool_usage(&self) -> (u32, usize) {
        on_pool!(self, |pool| (pool.size(), pool.num_idle()))
    }

    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

/// A migrated SQLite store in `dir`, for unit tests.
#[cfg(test)]
pub(crate) async fn sqlite_store_in(dir: &std::path::Path) -> Store {
    let settings = Settings {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    let store = Store::connect(&settings).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// Serde adapter writing a [`Timestamp`] as RFC 3339.
pub mod rfc3339 {
    use super::Timestamp;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        let text = t
            .get()
            .format(&Rfc3339)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub mod option {
        use super::*;
        pub fn serialize<S: serde::Serializer>(
            t: &Option<Timestamp>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod location_tests {
    use super::describe_postgres;

    #[test]
    fn a_postgres_location_names_the_socket_when_the_url_asks_for_one() {
        assert_eq!(
            describe_postgres("postgres://u:secret@db.example:6432/ledger"),
            "PostgreSQL db.example:6432/ledger"
        );
        assert_eq!(
            describe_postgres("postgres://u:secret@localhost/ledger?host=/var/run/postgresql"),
            "PostgreSQL socket /var/run/postgresql:5432/ledger"
        );
        assert_eq!(
            describe_postgres("postgres://u@[::1"),
            "PostgreSQL (database.url does not parse)"
        );
    }
}
