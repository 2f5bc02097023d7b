//! All SQL. One [`Store`] over PostgreSQL (production) or SQLite (the embedded default).
//!
//! Both backends run the same statement text: `$N` placeholders and the SQL used here
//! (`ON CONFLICT`, row-value comparison, partial indexes) mean the same in both. The
//! [`on_pool!`] macro type-checks each body once per backend, so there is one copy of each
//! query. Schema differences live in `migrations/postgres` and `migrations/sqlite`.

mod timestamp;
pub mod values;

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, PgPool, SqlitePool};

pub use timestamp::Timestamp;
pub use values::{LedgerStatus, Role, TemplateKind, TextValue};

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

pub mod aws; // Declared after `on_pool!`, which it uses.
pub mod ledger_writer;
pub mod revocation;
pub mod stats;

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// A CA as the store knows it (the key lives in `key_file` under the data directory).
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct CaRecord {
    pub id: String,
    pub subject: String,
    pub key_algorithm: String,
    pub certificate_pem: String,
    pub aws_certificate_id: String,
    #[serde(skip)]
    pub key_file: String,
    pub source: String,
    pub is_issuing: bool,
    #[serde(with = "rfc3339")]
    pub not_before: Timestamp,
    #[serde(with = "rfc3339")]
    pub not_after: Timestamp,
    #[serde(with = "rfc3339")]
    pub created_at: Timestamp,
}

/// One row of the issuance ledger.
#[derive(Debug, Clone, FromRow)]
pub struct CertificateRecord {
    pub serial: String,
    pub ca_id: String,
    pub thing_name: String,
    pub country: Option<String>,
    pub subject: String,
    pub key_algorithm: String,
    pub spki_sha256: String,
    pub aws_certificate_id: String,
    pub certificate_der: Vec<u8>,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub issued_at: Timestamp,
    pub station: String,
    pub request_id: Option<String>,
    pub status: LedgerStatus,
    pub revoked_at: Option<Timestamp>,
    pub revocation_reason: Option<RevocationReason>,
    /// AWS IoT has not been told of the revocation yet (retried until it has).
    pub aws_revocation_pending: bool,
    /// The certificate's status in AWS IoT at the last sync; `None`: AWS has not seen it.
    pub aws_status: Option<AwsCertificateStatus>,
    pub aws_first_seen_at: Option<Timestamp>,
}

#[derive(Debug, Clone, FromRow)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// What the issuance pipeline asks the store to commit for one certificate. Owned, so that it
/// can wait in the group-commit queue ([`ledger_writer`]).
#[derive(Debug, Clone)]
pub struct NewIssuance {
    pub certificate: IssuedCertificate,
    pub ca_id: String,
    pub station: String,
    pub request_id: Option<String>,
    pub issued_at: Timestamp,
    /// `(Idempotency-Key, SHA-256 of the CSR)` when the station sent a key.
    pub idempotency: Option<(String, String)>,
    /// Refuse when the thing name holds an unexpired, unrevoked certificate.
    pub reject_duplicate_thing: bool,
}

/// How a recording attempt ended. Anything but `Recorded` rolled back completely (nothing of
/// that certificate is in the ledger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    Recorded,
    ThingAlreadyProvisioned,
    /// Another request with the same (station, Idempotency-Key) committed first.
    IdempotencyKeyTaken,
}

/// Filters of `GET /v1/certificates`.
#[derive(Debug, Default, Clone)]
pub struct CertificateFilter {
    pub thing_name: Option<String>,
    pub country: Option<String>,
    pub station: Option<String>,
    pub status: Option<LedgerStatus>,
    pub issued_after: Option<Timestamp>,
    pub issued_before: Option<Timestamp>,
    /// An AWS IoT status from the last sync, or certificates AWS has not seen.
    pub aws_status: Option<AwsStatusFilter>,
    /// Thing names starting with this (bytewise; case-sensitive, as AWS IoT thing names are).
    pub thing_name_prefix: Option<String>,
    /// Oldest first instead of newest first.
    pub ascending: bool,
    /// Keyset cursor: rows strictly after this `(issued_at, serial)` in the chosen order.
    pub before: Option<(Timestamp, String)>,
}

/// The `aws_status` filter: a status AWS IoT reported at the last sync, or `never_seen`
/// (AWS has not listed the certificate: the device never connected, or no sync ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsStatusFilter {
    Reported(AwsCertificateStatus),
    NeverSeen,
}

impl AwsStatusFilter {
    /// Every accepted spelling, for messages.
    pub fn names() -> Vec<&'static str> {
        AwsCertificateStatus::ALL
            .iter()
            .map(|s| s.as_aws())
            .chain(["never_seen"])
            .collect()
    }

    pub fn parse(value: &str) -> Option<AwsStatusFilter> {
        match value {
            "never_seen" => Some(AwsStatusFilter::NeverSeen),
            other => AwsCertificateStatus::from_aws(other).map(AwsStatusFilter::Reported),
        }
    }
}

/// Records the time of a store operation in `factory_ca_store_duration_seconds`.
pub(crate) fn observe_duration(operation: &'static str, started: std::time::Instant) {
    metrics::histogram!("factory_ca_store_duration_seconds", "operation" => operation)
        .record(started.elapsed().as_secs_f64());
}

/// A value bound to a dynamically built query.
pub(crate) enum Bind {
    Text(String),
    Time(Timestamp),
}

/// Binds each [`Bind`] of `$binds` to `$query`, in order (for either backend's query type).
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for bind in $binds {
            query = match bind {
                Bind::Text(v) => query.bind(v),
                Bind::Time(v) => query.bind(*v),
            };
        }
        query
    }};
}

/// The smallest string greater than every string starting with `prefix`, bytewise: the prefix
/// with its last character incremented (`None` when no such string exists).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            char::MAX => None,
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[derive(Debug)]
pub struct AuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub success: bool,
    pub detail: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub request_id: Option<String>,
}

const CERT_COLUMNS: &str = "serial, ca_id, thing_name, country, subject, key_algorithm, \
    spki_sha256, aws_certificate_id, certificate_der, not_before, not_after, issued_at, station, \
    request_id, status, revoked_at, revocation_reason, aws_revocation_pending, aws_status, \
    aws_first_seen_at";

const CA_COLUMNS: &str = "id, subject, key_algorithm, certificate_pem, aws_certificate_id, \
    key_file, source, is_issuing, not_before, not_after, created_at";

impl Store {
    /// Connects (creating the SQLite file and its directory when needed). Does not migrate.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Store> {
        let url = settings.database_url();
        let timeout = Duration::from_secs(settings.database.connect_timeout_secs);
        if url.starts_with("sqlite:") {
            std::fs::create_dir_all(&settings.data_dir)?;
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
                .connect_with(options)
                .await?;
            Ok(Store::Sqlite(pool))
        } else {
            let options = PgConnectOptions::from_str(&url)?.application_name("factory-ca");
            let pool = PgPoolOptions::new()
                .max_connections(settings.database.max_connections)
                .acquire_timeout(timeout)
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

    // ---- certificate authorities -------------------------------------------------------

    /// Inserts a CA; when `issuing`, it replaces the current issuing CA in the same
    /// transaction. Returns false when a CA with the same certificate already exists.
    pub async fn insert_ca(&self, ca: &CaRecord) -> StoreResult<bool> {
        let result: Result<(), sqlx::Error> = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                if ca.is_issuing {
                    sqlx::query(
                        "UPDATE certificate_authorities SET is_issuing = false WHERE is_issuing",
                    )
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO certificate_authorities (id, subject, key_algorithm, \
                     certificate_pem, aws_certificate_id, key_file, source, is_issuing, \
                     not_before, not_after, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&ca.id)
                .bind(&ca.subject)
                .bind(&ca.key_algorithm)
                .bind(&ca.certificate_pem)
                .bind(&ca.aws_certificate_id)
                .bind(&ca.key_file)
                .bind(&ca.source)
                .bind(ca.is_issuing)
                .bind(ca.not_before)
                .bind(ca.not_after)
                .bind(ca.created_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            }
            .await
        });
        match result {
            Ok(()) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_cas(&self) -> StoreResult<Vec<CaRecord>> {
        let sql =
            format!("SELECT {CA_COLUMNS} FROM certificate_authorities ORDER BY created_at, id");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await)?)
    }

    pub async fn get_ca(&self, id: &str) -> StoreResult<Option<CaRecord>> {
        let sql = format!("SELECT {CA_COLUMNS} FROM certificate_authorities WHERE id = $1");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await)?)
    }

    pub async fn issuing_ca(&self) -> StoreResult<Option<CaRecord>> {
        let sql = format!("SELECT {CA_COLUMNS} FROM certificate_authorities WHERE is_issuing");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .fetch_optional(pool)
            .await)?)
    }

    /// Makes `id` the issuing CA. Returns false when no such CA exists.
    pub async fn set_issuing_ca(&self, id: &str) -> StoreResult<bool> {
        Ok(on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query("UPDATE certificate_authorities SET is_issuing = false WHERE is_issuing AND id <> $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query("UPDATE certificate_authorities SET is_issuing = true WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if done == 1 {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok::<bool, sqlx::Error>(done == 1)
            }
            .await
        })?)
    }

    // ---- issuance ledger -----------------------------------------------------------------

    /// The group-commit writer for this store: PostgreSQL only. SQLite keeps the direct path
    /// ([`Store::record_issuance`]): its writes serialize on one database lock whatever we do,
    /// and it is the single-node default, not the high-throughput one.
    pub fn ledger_writer(
        &self,
        config: ledger_writer::GroupCommitConfig,
    ) -> Option<ledger_writer::LedgerWriter> {
        match self {
            Store::Postgres(pool) => Some(ledger_writer::LedgerWriter::spawn(pool.clone(), config)),
            Store::Sqlite(_) => None,
        }
    }

    /// Commits one issued certificate with its thing claim and idempotency key, atomically, in
    /// a transaction of its own (the direct path; see [`ledger_writer`] for the batched one).
    /// Returns only after the commit: the caller may then, and only then, release the
    /// certificate.
    pub async fn record_issuance(&self, new: &NewIssuance) -> StoreResult<RecordOutcome> {
        let cert = &new.certificate;
        let not_after = Timestamp::new(cert.not_after);
        let result: Result<RecordOutcome, sqlx::Error> = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO issued_certificates (serial, ca_id, thing_name, country, subject, \
                     key_algorithm, spki_sha256, aws_certificate_id, certificate_der, not_before, \
                     not_after, issued_at, station, request_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(&cert.serial)
                .bind(&new.ca_id)
                .bind(&cert.thing_name)
                .bind(&cert.country)
                .bind(&cert.subject)
                .bind(&cert.key_algorithm)
                .bind(&cert.spki_sha256)
                .bind(&cert.aws_certificate_id)
                .bind(&cert.certificate_der)
                .bind(Timestamp::new(cert.not_before))
                .bind(not_after)
                .bind(new.issued_at)
                .bind(&new.station)
                .bind(&new.request_id)
                .execute(&mut *tx)
                .await?;

                // The idempotency key goes before the thing claim: of concurrent requests with
                // one key, the losers must see the key taken (and replay the winner's
                // certificate), not the thing name taken.
                if let Some((key, csr_sha256)) = &new.idempotency {
                    let inserted = sqlx::query(
                        "INSERT INTO idempotency_keys (station, idempotency_key, csr_sha256, \
                         serial, created_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (station, idempotency_key) DO NOTHING",
                    )
                    .bind(&new.station)
                    .bind(key)
                    .bind(csr_sha256)
                    .bind(&cert.serial)
                    .bind(new.issued_at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if inserted == 0 {
                        tx.rollback().await?;
                        return Ok(RecordOutcome::IdempotencyKeyTaken);
                    }
                }
                // Take the thing name. Under "reject" an existing claim is only replaced when
                // its certificate has expired (revocation deletes claims); under "allow" the
                // newest certificate always takes it, so switching to "reject" later is sound.
                let claim_sql = if new.reject_duplicate_thing {
                    "INSERT INTO thing_claims (thing_name, serial, not_after) VALUES ($1, $2, $3) \
                     ON CONFLICT (thing_name) DO UPDATE SET serial = excluded.serial, \
                     not_after = excluded.not_after WHERE thing_claims.not_after <= $4"
                } else {
                    "INSERT INTO thing_claims (thing_name, serial, not_after) VALUES ($1, $2, $3) \
                     ON CONFLICT (thing_name) DO UPDATE SET serial = excluded.serial, \
                     not_after = excluded.not_after"
                };
                let mut claim = sqlx::query(claim_sql)
                    .bind(&cert.thing_name)
                    .bind(&cert.serial)
                    .bind(not_after);
                if new.reject_duplicate_thing {
                    claim = claim.bind(new.issued_at);
                }
                let claimed = claim.execute(&mut *tx).await?.rows_affected();
                if claimed == 0 {
                    tx.rollback().await?;
                    return Ok(RecordOutcome::ThingAlreadyProvisioned);
                }

                tx.commit().await?;
                Ok(RecordOutcome::Recorded)
            }
            .await
        });
        Ok(result?)
    }

    /// The `(csr_sha256, serial)` recorded for a station's Idempotency-Key.
    pub async fn find_idempotency_key(
        &self,
        station: &str,
        key: &str,
    ) -> StoreResult<Option<(String, String)>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT csr_sha256, serial FROM idempotency_keys \
             WHERE station = $1 AND idempotency_key = $2"
        )
        .bind(station)
        .bind(key)
        .fetch_optional(pool)
        .await)?)
    }

    pub async fn get_certificate(&self, serial: &str) -> StoreResult<Option<CertificateRecord>> {
        let sql = format!("SELECT {CERT_COLUMNS} FROM issued_certificates WHERE serial = $1");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(serial)
            .fetch_optional(pool)
            .await)?)
    }

    /// `limit` rows at most, narrowed by `filter`, newest first unless `filter.ascending`.
    /// Every shape of this query is served by one of the `issued_certificates_*` indexes
    /// (`docs/query-plans.md`).
    pub async fn list_certificates(
        &self,
        filter: &CertificateFilter,
        limit: u32,
    ) -> StoreResult<Vec<CertificateRecord>> {
        let started = std::time::Instant::now();
        let (sql, binds) = self.list_query(filter, limit);
        let rows = on_pool!(self, |pool| {
            let query = bind_all!(sqlx::query_as(&sql), &binds);
            query.fetch_all(pool).await
        })?;
        observe_duration("list_certificates", started);
        Ok(rows)
    }

    /// The plan the database chooses for [`Store::list_certificates`] (`EXPLAIN` in
    /// PostgreSQL, `EXPLAIN QUERY PLAN` in SQLite), one line per plan node.
    pub async fn explain_list(
        &self,
        filter: &CertificateFilter,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let (sql, binds) = self.list_query(filter, limit);
        self.explain(&sql, &binds).await
    }

    /// The plan of `sql` with `binds`, one line per plan node.
    pub(crate) async fn explain(&self, sql: &str, binds: &[Bind]) -> StoreResult<Vec<String>> {
        Ok(match self {
            Store::Postgres(pool) => {
                let explain = format!("EXPLAIN {sql}");
                let query = bind_all!(sqlx::query_as::<_, (String,)>(&explain), binds);
                query
                    .fetch_all(pool)
                    .await?
                    .into_iter()
                    .map(|(line,)| line)
                    .collect()
            }
            Store::Sqlite(pool) => {
                let explain = format!("EXPLAIN QUERY PLAN {sql}");
                let query = bind_all!(
                    sqlx::query_as::<_, (i64, i64, i64, String)>(&explain),
                    binds
                );
                query
                    .fetch_all(pool)
                    .await?
                    .into_iter()
                    .map(|(_, _, _, detail)| detail)
                    .collect()
            }
        })
    }

    fn list_query(&self, filter: &CertificateFilter, limit: u32) -> (String, Vec<Bind>) {
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        let mut push = |condition: &str, bind: Bind| {
            binds.push(bind);
            conditions.push(condition.replace('?', &format!("${}", binds.len())));
        };
        // PostgreSQL compares thing names in byte order so that one index serves the exact
        // match and the prefix range whatever the database's collation; SQLite's default
        // collation is bytewise already.
        let thing_name = match self {
            Store::Postgres(_) => "thing_name COLLATE \"C\"",
            Store::Sqlite(_) => "thing_name",
        };
        if let Some(v) = &filter.thing_name {
            push(&format!("{thing_name} = ?"), Bind::Text(v.clone()));
        }
        if let Some(prefix) = &filter.thing_name_prefix {
            push(&format!("{thing_name} >= ?"), Bind::Text(prefix.clone()));
            if let Some(end) = prefix_end(prefix) {
                push(&format!("{thing_name} < ?"), Bind::Text(end));
            }
        }
        if let Some(v) = &filter.country {
            push("country = ?", Bind::Text(v.clone()));
        }
        if let Some(v) = &filter.station {
            push("station = ?", Bind::Text(v.clone()));
        }
        if let Some(v) = filter.status {
            push("status = ?", Bind::Text(v.name().to_owned()));
        }
        if let Some(v) = filter.issued_after {
            push("issued_at >= ?", Bind::Time(v));
        }
        if let Some(v) = filter.issued_before {
            push("issued_at < ?", Bind::Time(v));
        }
        match filter.aws_status {
            Some(AwsStatusFilter::NeverSeen) => conditions.push("aws_status IS NULL".to_owned()),
            Some(AwsStatusFilter::Reported(v)) => {
                binds.push(Bind::Text(v.as_aws().to_owned()));
                conditions.push(format!("aws_status = ${}", binds.len()));
            }
            None => {}
        }
        let (order, after) = if filter.ascending {
            ("ASC", ">")
        } else {
            ("DESC", "<")
        };
        if let Some((at, serial)) = &filter.before {
            binds.push(Bind::Time(*at));
            binds.push(Bind::Text(serial.clone()));
            conditions.push(format!(
                "(issued_at, serial) {after} (${}, ${})",
                binds.len() - 1,
                binds.len()
            ));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {CERT_COLUMNS} FROM issued_certificates {where_clause} \
             ORDER BY issued_at {order}, serial {order} LIMIT {limit}"
        );
        (sql, binds)
    }

    // ---- tokens --------------------------------------------------------------------------

    /// Stores a token hash. Returns false when a live token already has this name.
    pub async fn insert_token(
        &self,
        name: &str,
        role: &str,
        token_sha256: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let result = on_pool!(self, |pool| {
            sqlx::query(
            "INSERT INTO api_tokens (name, role, token_sha256, created_at) VALUES ($1, $2, $3, $4)"
        )
        .bind(name)
        .bind(role)
        .bind(token_sha256)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        });
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The live token with this hash, if any.
    pub async fn find_live_token(&self, token_sha256: &str) -> StoreResult<Option<TokenRecord>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT name, role, created_at, revoked_at FROM api_tokens \
             WHERE token_sha256 = $1 AND revoked_at IS NULL"
        )
        .bind(token_sha256)
        .fetch_optional(pool)
        .await)?)
    }

    /// Live tokens first, then revoked ones; never the hashes.
    pub async fn list_tokens(&self) -> StoreResult<Vec<TokenRecord>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT name, role, created_at, revoked_at FROM api_tokens \
             ORDER BY (revoked_at IS NOT NULL), name, created_at"
        )
        .fetch_all(pool)
        .await)?)
    }

    /// Revokes the live token with this name. Returns false when there is none.
    pub async fn revoke_token(&self, name: &str, now: Timestamp) -> StoreResult<bool> {
        let done = on_pool!(self, |pool| sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL"
        )
        .bind(name)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// True before the first token of any kind was ever created.
    pub async fn has_no_tokens(&self) -> StoreResult<bool> {
        let found: Option<(i64,)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id FROM api_tokens LIMIT 1"
        )
        .fetch_optional(pool)
        .await)?;
        Ok(found.is_none())
    }

    // ---- audit ---------------------------------------------------------------------------

    pub async fn append_audit(&self, entry: &AuditEntry<'_>) -> StoreResult<()> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, outcome, detail, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(Timestamp::now())
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.target)
        .bind(if entry.success { "success" } else { "failure" })
        .bind(entry.detail)
        .bind(entry.request_id)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Newest first; `before_id` continues a previous page.
    /// Newest first, narrowed by `filter`; `filter.before_id` continues a previous page.
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let mut conditions = vec!["id < $1".to_owned()];
        let mut binds = Vec::new();
        let mut push = |column: &str, op: &str, bind: Bind| {
            binds.push(bind);
            conditions.push(format!("{column} {op} ${}", binds.len() + 1));
        };
        for (column, value) in [
            ("actor", &filter.actor),
            ("action", &filter.action),
            ("target", &filter.target),
            ("outcome", &filter.outcome),
        ] {
            if let Some(v) = value {
                push(column, "=", Bind::Text(v.clone()));
            }
        }
        if let Some(t) = filter.since {
            push("at", ">=", Bind::Time(t));
        }
        if let Some(t) = filter.until {
            push("at", "<", Bind::Time(t));
        }
        let sql = format!(
            "SELECT id, at, actor, action, target, outcome, detail, request_id FROM audit_log \
             WHERE {} ORDER BY id DESC LIMIT {limit}",
            conditions.join(" AND ")
        );
        Ok(on_pool!(self, |pool| {
            let query = bind_all!(
                sqlx::query_as(&sql).bind(filter.before_id.unwrap_or(i64::MAX)),
                &binds
            );
            query.fetch_all(pool).await
        })?)
    }
}

/// Filters of `GET /v1/admin/audit`.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// `success` or `failure`.
    pub outcome: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub before_id: Option<i64>,
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
