//! `issued_certificates` and its companions `thing_claims` and `idempotency_keys`: the
//! issuance ledger, written in one transaction per certificate (or per batch under group
//! commit, see [`super::ledger_writer`]), and its keyset-paginated reads.

use sqlx::FromRow;

use super::certificate_counts::{CountChanges, Counted};
use super::*;
use crate::ca::KeyAlgorithm;

/// One row of the issuance ledger.
#[derive(Debug, Clone, FromRow)]
pub struct CertificateRecord {
    #[sqlx(try_from = "HexText")]
    pub serial: String,
    pub ca_id: String,
    pub thing_name: String,
    pub country: Option<String>,
    pub subject: String,
    pub key_algorithm: KeyAlgorithm,
    #[sqlx(try_from = "HexText")]
    pub spki_sha256: String,
    #[sqlx(try_from = "HexText")]
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
    /// The interface it was requested through.
    pub channel: Channel,
    /// When its device renewed it (EST simplereenroll), and the serial of the renewal.
    pub superseded_at: Option<Timestamp>,
    #[sqlx(try_from = "MaybeHexText")]
    pub superseded_by: Option<String>,
}

/// A renewal: the certificate a new issuance supersedes (its status becomes `superseded`, its
/// thing claim passes to the new certificate), in the new certificate's transaction.
#[derive(Debug, Clone)]
pub struct Superseding {
    pub serial: String,
    pub ca_id: String,
}

/// What the issuance pipeline asks the store to commit for one certificate. Owned, so that it
/// can wait in the group-commit queue ([`ledger_writer`]).
#[derive(Debug, Clone)]
pub struct NewIssuance {
    pub certificate: IssuedCertificate,
    pub ca_id: String,
    pub station: String,
    pub request_id: Option<String>,
    /// The interface it was requested through.
    pub channel: Channel,
    pub issued_at: Timestamp,
    /// `(Idempotency-Key, SHA-256 of the CSR)` when the station sent a key.
    pub idempotency: Option<(String, String)>,
    /// Refuse when the thing name holds an unexpired, unrevoked certificate.
    pub reject_duplicate_thing: bool,
}

impl NewIssuance {
    /// The ledger row this issuance writes: active, not seen by AWS, superseded by nothing.
    pub fn record(&self) -> CertificateRecord {
        let cert = self.certificate.clone();
        CertificateRecord {
            serial: cert.serial,
            ca_id: self.ca_id.clone(),
            thing_name: cert.thing_name,
            country: cert.country,
            subject: cert.subject,
            key_algorithm: cert.key_algorithm,
            spki_sha256: cert.spki_sha256,
            aws_certificate_id: cert.aws_certificate_id,
            certificate_der: cert.certificate_der,
            not_before: Timestamp::new(cert.not_before),
            not_after: Timestamp::new(cert.not_after),
            issued_at: self.issued_at,
            station: self.station.clone(),
            request_id: self.request_id.clone(),
            status: LedgerStatus::Active,
            revoked_at: None,
            revocation_reason: None,
            aws_revocation_pending: false,
            aws_status: None,
            aws_first_seen_at: None,
            channel: self.channel,
            superseded_at: None,
            superseded_by: None,
        }
    }

    /// Where this certificate is counted in the stats counters.
    pub(crate) fn counted(&self) -> Counted {
        Counted {
            ca_id: self.ca_id.clone(),
            station: self.station.clone(),
            country: self.certificate.country.clone(),
            issued_at: self.issued_at,
            not_after: Timestamp::new(self.certificate.not_after),
        }
    }

    /// This issuance's record in its CA's hash chain ([`chain`]).
    pub(crate) fn chain_event(&self) -> chain::Event {
        self.with_chain_fields(|fields| fields.event())
    }

    /// The payload of [`Self::chain_event`] alone (the one-statement writer hashes it in SQL).
    pub(crate) fn chain_payload(&self) -> Vec<u8> {
        self.with_chain_fields(|fields| fields.payload())
    }

    /// Calls `fields` with the fields this issuance's chain record covers.
    fn with_chain_fields<T>(&self, fields: impl FnOnce(&chain::IssuedFields<'_>) -> T) -> T {
        let cert = &self.certificate;
        fields(&chain::IssuedFields {
            ca_id: &self.ca_id,
            serial: &cert.serial,
            thing_name: &cert.thing_name,
            country: cert.country.as_deref(),
            subject: &cert.subject,
            key_algorithm: &cert.key_algorithm.name(),
            spki_sha256: &cert.spki_sha256,
            aws_certificate_id: &cert.aws_certificate_id,
            certificate_der: &cert.certificate_der,
            not_before: Timestamp::new(cert.not_before),
            not_after: Timestamp::new(cert.not_after),
            issued_at: self.issued_at,
            station: &self.station,
            request_id: self.request_id.as_deref(),
            channel: self.channel.name(),
        })
    }
}

/// How a recording attempt ended. Anything but `Recorded` rolled back completely (nothing of
/// that certificate is in the ledger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    Recorded,
    ThingAlreadyProvisioned,
    /// Another request with the same (station, Idempotency-Key) committed first.
    IdempotencyKeyTaken,
    /// A renewal whose certificate is no longer active (revoked or renewed meanwhile).
    SupersededNotActive,
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
    /// An AWS IoT status from the last sync, or certificates AWS has not seen: in the target
    /// `aws_target` when given, else in any target (`never_seen`: in none).
    pub aws_status: Option<AwsStatusFilter>,
    /// The registration target `aws_status` asks about (only with `aws_status`).
    pub aws_target: Option<String>,
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

const CERT_COLUMNS: &str = "serial, ca_id, thing_name, country, subject, key_algorithm, \
    spki_sha256, aws_certificate_id, certificate_der, not_before, not_after, issued_at, station, \
    request_id, status, revoked_at, revocation_reason, aws_revocation_pending, aws_status, \
    aws_first_seen_at, channel, superseded_at, superseded_by";

/// The smallest string greater than every string starting with `prefix`, bytewise: the prefix
/// with its last character incremented (`None` when no such string exists).
pub(super) fn prefix_end(prefix: &str) -> Option<String> {
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

impl Store {
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
        self.record(new, None).await
    }

    /// [`Store::record_issuance`] of a renewal: in the same transaction, `old` becomes
    /// `superseded` (by this certificate, at its `issued_at`), its thing claim passes to the new
    /// certificate, and `old`'s CA chain records the change. `SupersededNotActive` (and nothing
    /// recorded) when `old` is no longer active.
    pub async fn record_renewal(
        &self,
        new: &NewIssuance,
        old: &Superseding,
    ) -> StoreResult<RecordOutcome> {
        self.record(new, Some(old)).await
    }

    async fn record(
        &self,
        new: &NewIssuance,
        supersedes: Option<&Superseding>,
    ) -> StoreResult<RecordOutcome> {
        let cert = &new.certificate;
        let not_after = Timestamp::new(cert.not_after);
        let result: Result<RecordOutcome, sqlx::Error> = on_pool!(self, |pool| {
            // A connection whose transaction failed is closed, not returned to the pool: after
            // SQLITE_FULL, SQLite may have rolled the transaction back by itself, the ROLLBACK
            // on drop then fails, and sqlx would hand out a connection that believes it is
            // still in a transaction (the next "BEGIN" becomes a savepoint and its "COMMIT"
            // commits nothing: a certificate answered without its row).
            let mut conn = pool.acquire().await?;
            let outcome = async {
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO issued_certificates (serial, ca_id, thing_name, country, subject, \
                     key_algorithm, spki_sha256, aws_certificate_id, certificate_der, not_before, \
                     not_after, issued_at, station, request_id, channel) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                )
                .bind(HexArg(&cert.serial))
                .bind(&new.ca_id)
                .bind(&cert.thing_name)
                .bind(&cert.country)
                .bind(&cert.subject)
                .bind(cert.key_algorithm)
                .bind(HexArg(&cert.spki_sha256))
                .bind(HexArg(&cert.aws_certificate_id))
                .bind(&cert.certificate_der)
                .bind(Timestamp::new(cert.not_before))
                .bind(not_after)
                .bind(new.issued_at)
                .bind(&new.station)
                .bind(&new.request_id)
                .bind(new.channel)
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
                    .bind(HexArg(&cert.serial))
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
                // A renewal first retires the certificate it renews; its claim then passes on.
                let mut counts = CountChanges::default();
                counts.issued(&new.counted());
                if let Some(old) = supersedes {
                    let superseded: Option<Counted> = sqlx::query_as(
                        "UPDATE issued_certificates SET status = 'superseded', \
                         superseded_at = $2, superseded_by = $3 \
                         WHERE serial = $1 AND status = 'active' \
                         RETURNING ca_id, station, country, issued_at, not_after",
                    )
                    .bind(HexArg(&old.serial))
                    .bind(new.issued_at)
                    .bind(HexArg(&cert.serial))
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(superseded) = superseded else {
                        tx.rollback().await?;
                        return Ok(RecordOutcome::SupersededNotActive);
                    };
                    counts.superseded(&superseded);
                }
                let claim_sql = if supersedes.is_some() && new.reject_duplicate_thing {
                    // The renewed certificate's claim, or an expired one, passes on; a claim
                    // another live certificate holds stays.
                    "INSERT INTO thing_claims (thing_name, serial, not_after) VALUES ($1, $2, $3) \
                     ON CONFLICT (thing_name) DO UPDATE SET serial = excluded.serial, \
                     not_after = excluded.not_after \
                     WHERE thing_claims.not_after <= $4 OR thing_claims.serial = $5"
                } else if new.reject_duplicate_thing {
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
                    .bind(HexArg(&cert.serial))
                    .bind(not_after);
                if new.reject_duplicate_thing {
                    claim = claim.bind(new.issued_at);
                    if let Some(old) = supersedes {
                        claim = claim.bind(HexArg(&old.serial));
                    }
                }
                let claimed = claim.execute(&mut *tx).await?.rows_affected();
                if claimed == 0 {
                    tx.rollback().await?;
                    return Ok(RecordOutcome::ThingAlreadyProvisioned);
                }
                match supersedes {
                    None => append_chain!(tx, new.ca_id.as_str(), &[new.chain_event()])?,
                    Some(old) => {
                        let retired = chain::superseded_event(
                            &old.ca_id,
                            &old.serial,
                            new.issued_at,
                            &cert.serial,
                        );
                        if old.ca_id == new.ca_id {
                            append_chain!(tx, new.ca_id.as_str(), &[new.chain_event(), retired])?;
                        } else if old.ca_id < new.ca_id {
                            // Two chains: their head rows are locked in id order, as every
                            // writer that takes both would (no lock-order deadlock).
                            append_chain!(tx, old.ca_id.as_str(), &[retired])?;
                            append_chain!(tx, new.ca_id.as_str(), &[new.chain_event()])?;
                        } else {
                            append_chain!(tx, new.ca_id.as_str(), &[new.chain_event()])?;
                            append_chain!(tx, old.ca_id.as_str(), &[retired])?;
                        }
                    }
                }
                add_counts!(tx, &counts)?;

                tx.commit().await?;
                Ok(RecordOutcome::Recorded)
            }
            .await;
            if outcome.is_err() {
                conn.close_on_drop();
            }
            outcome
        });
        Ok(result?)
    }

    /// The `(csr_sha256, serial)` recorded for a station's Idempotency-Key.
    pub async fn find_idempotency_key(
        &self,
        station: &str,
        key: &str,
    ) -> StoreResult<Option<(String, String)>> {
        let row: Option<(String, HexText)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT csr_sha256, serial FROM idempotency_keys \
             WHERE station = $1 AND idempotency_key = $2"
        )
        .bind(station)
        .bind(key)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(csr_sha256, serial)| (csr_sha256, serial.0)))
    }

    pub async fn get_certificate(&self, serial: &str) -> StoreResult<Option<CertificateRecord>> {
        let sql = format!("SELECT {CERT_COLUMNS} FROM issued_certificates WHERE serial = $1");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(HexArg(serial))
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
        // Which rows of `certificate_aws_status` the AWS filter reads, if any. The summary
        // `aws_status` of the ledger row answers "ACTIVE in any target" and "seen by no
        // target" itself (see store::aws::summary_sql); every other question reads the
        // per-target rows, from their index in (issued_at, serial) order: `s` joined to the
        // ledger row `c`.
        let joined = match (&filter.aws_status, &filter.aws_target) {
            (Some(AwsStatusFilter::Reported(status)), Some(target)) => {
                Some((*status, Some(target.as_str())))
            }
            (Some(AwsStatusFilter::Reported(status)), None)
                if *status != AwsCertificateStatus::Active =>
            {
                Some((*status, None))
            }
            _ => None,
        };
        let (c, ordered) = if joined.is_some() {
            ("c.", "s.")
        } else {
            ("", "")
        };
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        // Conditions without a parameter.
        let mut fixed = Vec::new();
        let mut push = |condition: &str, bind: Bind| {
            binds.push(bind);
            conditions.push(condition.replace('?', &format!("${}", binds.len())));
        };
        // PostgreSQL compares thing names in byte order so that one index serves the exact
        // match and the prefix range whatever the database's collation; SQLite's default
        // collation is bytewise already.
        let thing_name = match self {
            Store::Postgres(_) => format!("{c}thing_name COLLATE \"C\""),
            Store::Sqlite(_) => format!("{c}thing_name"),
        };
        if let Some((status, target)) = joined {
            push("s.aws_status = ?", Bind::Text(status.as_aws().to_owned()));
            match target {
                Some(target) => push("s.target = ?", Bind::Text(target.to_owned())),
                // Any target: each certificate once, by the first target (by name) that
                // reports the status.
                None => fixed.push(
                    "NOT EXISTS (SELECT 1 FROM certificate_aws_status f \
                     WHERE f.serial = s.serial AND f.aws_status = s.aws_status \
                     AND f.target < s.target)"
                        .to_owned(),
                ),
            }
        }
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
            push(&format!("{c}country = ?"), Bind::Text(v.clone()));
        }
        if let Some(v) = &filter.station {
            push(&format!("{c}station = ?"), Bind::Text(v.clone()));
        }
        if let Some(v) = filter.status {
            push(&format!("{c}status = ?"), Bind::Text(v.name().to_owned()));
        }
        if let Some(v) = filter.issued_after {
            push(&format!("{ordered}issued_at >= ?"), Bind::Time(v));
        }
        if let Some(v) = filter.issued_before {
            push(&format!("{ordered}issued_at < ?"), Bind::Time(v));
        }
        if joined.is_none() {
            match (&filter.aws_status, &filter.aws_target) {
                (Some(AwsStatusFilter::NeverSeen), None) => {
                    fixed.push("aws_status IS NULL".to_owned())
                }
                (Some(AwsStatusFilter::NeverSeen), Some(target)) => push(
                    "NOT EXISTS (SELECT 1 FROM certificate_aws_status s \
                     WHERE s.serial = issued_certificates.serial AND s.target = ?)",
                    Bind::Text(target.clone()),
                ),
                (Some(AwsStatusFilter::Reported(v)), _) => {
                    push("aws_status = ?", Bind::Text(v.as_aws().to_owned()))
                }
                (None, _) => {}
            }
        }
        conditions.extend(fixed);
        let (order, after) = if filter.ascending {
            ("ASC", ">")
        } else {
            ("DESC", "<")
        };
        if let Some((at, serial)) = &filter.before {
            binds.push(Bind::Time(*at));
            binds.push(Bind::Hex(serial.clone()));
            conditions.push(format!(
                "({ordered}issued_at, {ordered}serial) {after} (${}, ${})",
                binds.len() - 1,
                binds.len()
            ));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = if joined.is_some() {
            let columns: Vec<String> = CERT_COLUMNS
                .split(',')
                .map(|column| format!("c.{}", column.trim()))
                .collect();
            format!(
                "SELECT {} FROM certificate_aws_status s \
                 JOIN issued_certificates c ON c.serial = s.serial {where_clause} \
                 ORDER BY s.issued_at {order}, s.serial {order} LIMIT {limit}",
                columns.join(", ")
            )
        } else {
            format!(
                "SELECT {CERT_COLUMNS} FROM issued_certificates {where_clause} \
                 ORDER BY issued_at {order}, serial {order} LIMIT {limit}"
            )
        };
        (sql, binds)
    }
}
