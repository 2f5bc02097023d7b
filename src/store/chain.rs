//! The tamper-evident ledger: one hash chain per CA over every issuance and revocation.
//!
//! Record `seq` (counting from 1 per CA) stores `prev_hash`, the hash of record `seq - 1`
//! ([`GENESIS`] for the first), and `hash = SHA-256(prev_hash || seq as 8 bytes big-endian ||
//! payload)`, where the payload is the canonical encoding of the ledger row: a sequence of
//! fields, each a 4-byte big-endian length and that many bytes, or `FF FF FF FF` for an absent
//! value. Text is UTF-8; an instant is its Unix time in microseconds, in decimal ASCII.
//!
//! - issuance: `"issued"`, ca_id, serial, thing_name, country, subject, key_algorithm,
//!   spki_sha256, aws_certificate_id, certificate_der, not_before, not_after, issued_at,
//!   station, request_id;
//! - revocation: `"revoked"`, ca_id, serial, revoked_at, revocation_reason;
//! - renewal (EST simplereenroll): `"superseded"`, ca_id, serial, superseded_at, superseded_by
//!   (the serial of the renewal), recorded in the chain of the renewed certificate's CA.
//!
//! Records are appended by the transaction that writes the ledger row, after locking the CA's
//! row in `ledger_heads` ([`append_chain!`](super::append_chain)): one order per CA whatever the
//! number of writers, batches and replicas. `docs/certificates.md` describes the same encoding for
//! auditors.

use sha2::{Digest, Sha256};
use sqlx::FromRow;

use super::{
    Channel, HexArg, HexText, LedgerStatus, MaybeHexText, Store, StoreResult, TextValue, Timestamp,
};
use crate::ca::KeyAlgorithm;

/// The `prev_hash` of each CA's first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// Rows per statement when records are inserted in bulk (6 parameters each).
pub(crate) const INSERT_CHUNK: usize = 500;

/// Locks (creating when missing) a CA's head row and returns its `(seq, hash)`: on PostgreSQL
/// `ON CONFLICT DO UPDATE` takes the row lock until the transaction ends; SQLite has one writer.
pub(crate) const LOCK_HEAD_SQL: &str = "INSERT INTO ledger_heads (ca_id, seq, hash) \
     VALUES ($1, 0, $2) ON CONFLICT (ca_id) DO UPDATE SET seq = ledger_heads.seq \
     RETURNING seq, hash";

pub(crate) const UPDATE_HEAD_SQL: &str =
    "UPDATE ledger_heads SET seq = $2, hash = $3 WHERE ca_id = $1";

/// One record to append: its kind (`issued` or `revoked`), serial and canonical payload.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: &'static str,
    pub serial: String,
    pub payload: Vec<u8>,
}

/// A record with its place in the chain, ready to insert.
#[derive(Debug, Clone)]
pub(crate) struct Linked {
    pub seq: i64,
    pub kind: &'static str,
    pub serial: String,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// Builds a canonical payload field by field.
#[derive(Default)]
struct Encoder(Vec<u8>);

impl Encoder {
    fn bytes(&mut self, value: Option<&[u8]>) -> &mut Self {
        match value {
            Some(v) => {
                let len = u32::try_from(v.len()).expect("ledger fields are shorter than 4 GiB");
                self.0.extend_from_slice(&len.to_be_bytes());
                self.0.extend_from_slice(v);
            }
            None => self.0.extend_from_slice(&u32::MAX.to_be_bytes()),
        }
        self
    }

    fn text(&mut self, value: &str) -> &mut Self {
        self.bytes(Some(value.as_bytes()))
    }

    fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        self.bytes(value.map(str::as_bytes))
    }

    fn time(&mut self, value: Timestamp) -> &mut Self {
        let micros = value.get().unix_timestamp_nanos() / 1_000;
        self.text(&micros.to_string())
    }
}

/// The fields of an issuance, as the ledger row holds them.
pub struct IssuedFields<'a> {
    pub ca_id: &'a str,
    pub serial: &'a str,
    pub thing_name: &'a str,
    pub country: Option<&'a str>,
    pub subject: &'a str,
    pub key_algorithm: &'a str,
    pub spki_sha256: &'a str,
    pub aws_certificate_id: &'a str,
    pub certificate_der: &'a [u8],
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub issued_at: Timestamp,
    pub station: &'a str,
    pub request_id: Option<&'a str>,
    /// `api` or `est`.
    pub channel: &'a str,
}

impl IssuedFields<'_> {
    pub fn payload(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.text("issued")
            .text(self.ca_id)
            .text(self.serial)
            .text(self.thing_name)
            .opt_text(self.country)
            .text(self.subject)
            .text(self.key_algorithm)
            .text(self.spki_sha256)
            .text(self.aws_certificate_id)
            .bytes(Some(self.certificate_der))
            .time(self.not_before)
            .time(self.not_after)
            .time(self.issued_at)
            .text(self.station)
            .opt_text(self.request_id)
            .text(self.channel);
        e.0
    }

    pub fn event(&self) -> Event {
        Event {
            kind: "issued",
            serial: self.serial.to_owned(),
            payload: self.payload(),
        }
    }
}

/// The canonical payload of a revocation.
pub fn revoked_payload(
    ca_id: &str,
    serial: &str,
    revoked_at: Timestamp,
    reason: Option<&str>,
) -> Vec<u8> {
    let mut e = Encoder::default();
    e.text("revoked")
        .text(ca_id)
        .text(serial)
        .time(revoked_at)
        .opt_text(reason);
    e.0
}

pub fn revoked_event(ca_id: &str, serial: &str, revoked_at: Timestamp, reason: &str) -> Event {
    Event {
        kind: "revoked",
        serial: serial.to_owned(),
        payload: revoked_payload(ca_id, serial, revoked_at, Some(reason)),
    }
}

/// The canonical payload of a renewal: `serial` superseded by `superseded_by`.
pub fn superseded_payload(
    ca_id: &str,
    serial: &str,
    superseded_at: Timestamp,
    superseded_by: &str,
) -> Vec<u8> {
    let mut e = Encoder::default();
    e.text("superseded")
        .text(ca_id)
        .text(serial)
        .time(superseded_at)
        .text(superseded_by);
    e.0
}

pub fn superseded_event(
    ca_id: &str,
    serial: &str,
    superseded_at: Timestamp,
    superseded_by: &str,
) -> Event {
    Event {
        kind: "superseded",
        serial: serial.to_owned(),
        payload: superseded_payload(ca_id, serial, superseded_at, superseded_by),
    }
}

/// `SHA-256(prev_hash || seq || payload)`.
pub fn link(prev_hash: &[u8; 32], seq: i64, payload: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(seq.to_be_bytes());
    hasher.update(payload);
    hasher.finalize().into()
}

/// Links `events`, in order, after the head `(seq, hash)`; returns the records and the new head.
pub(crate) fn link_all(
    head_seq: i64,
    head_hash: Vec<u8>,
    events: &[Event],
) -> Result<(Vec<Linked>, i64, [u8; 32]), sqlx::Error> {
    let mut prev: [u8; 32] = head_hash
        .try_into()
        .map_err(|_| sqlx::Error::Protocol("a ledger head hash is not 32 bytes".into()))?;
    let mut seq = head_seq;
    let mut linked = Vec::with_capacity(events.len());
    for event in events {
        seq += 1;
        let hash = link(&prev, seq, &event.payload);
        linked.push(Linked {
            seq,
            kind: event.kind,
            serial: event.serial.clone(),
            prev_hash: prev,
            hash,
        });
        prev = hash;
    }
    Ok((linked, seq, prev))
}

/// `INSERT INTO ledger_chain` of `rows` rows (6 parameters each).
pub(crate) fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p = r * 6;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6
            )
        })
        .collect();
    format!(
        "INSERT INTO ledger_chain (ca_id, seq, kind, serial, prev_hash, hash) VALUES {}",
        values.join(", ")
    )
}

/// One chain record with the ledger row it covers (absent when that row is gone), as
/// `ledger verify` reads them.
#[derive(Debug, FromRow)]
pub struct ChainRow {
    pub seq: i64,
    pub kind: String,
    #[sqlx(try_from = "HexText")]
    pub serial: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    #[sqlx(try_from = "MaybeHexText")]
    pub found: Option<String>,
    pub ca_id: Option<String>,
    pub thing_name: Option<String>,
    pub country: Option<String>,
    pub subject: Option<String>,
    pub key_algorithm: Option<KeyAlgorithm>,
    #[sqlx(try_from = "MaybeHexText")]
    pub spki_sha256: Option<String>,
    #[sqlx(try_from = "MaybeHexText")]
    pub aws_certificate_id: Option<String>,
    pub certificate_der: Option<Vec<u8>>,
    pub not_before: Option<Timestamp>,
    pub not_after: Option<Timestamp>,
    pub issued_at: Option<Timestamp>,
    pub station: Option<String>,
    pub request_id: Option<String>,
    pub channel: Option<Channel>,
    pub status: Option<LedgerStatus>,
    pub revoked_at: Option<Timestamp>,
    pub revocation_reason: Option<String>,
    pub superseded_at: Option<Timestamp>,
    #[sqlx(try_from = "MaybeHexText")]
    pub superseded_by: Option<String>,
}

impl ChainRow {
    /// Whether the ledger row this record covers is one of `ca_id`'s rows that want a record of
    /// this kind (every row an `issued` one, a revoked row a `revoked` one, a renewed row a
    /// `superseded` one): what [`Store::chain_coverage`] counts on the rows' side.
    pub fn covers_a_row_of(&self, ca_id: &str) -> bool {
        if self.found.is_none() || self.ca_id.as_deref() != Some(ca_id) {
            return false;
        }
        match self.kind.as_str() {
            "issued" => true,
            "revoked" => self.status == Some(LedgerStatus::Revoked),
            "superseded" => self.superseded_at.is_some(),
            _ => false,
        }
    }

    /// The payload the ledger row it covers encodes to now, or `None` when that row is gone
    /// (or, for a revocation, is not revoked).
    pub fn payload(&self) -> Option<Vec<u8>> {
        self.found.as_ref()?;
        // A row moved to another CA encodes differently.
        let row_ca = self.ca_id.as_deref()?;
        match self.kind.as_str() {
            "issued" => Some(
                IssuedFields {
                    ca_id: row_ca,
                    serial: &self.serial,
                    thing_name: self.thing_name.as_deref()?,
                    country: self.country.as_deref(),
                    subject: self.subject.as_deref()?,
                    key_algorithm: &self.key_algorithm.as_ref()?.name(),
                    spki_sha256: self.spki_sha256.as_deref()?,
                    aws_certificate_id: self.aws_certificate_id.as_deref()?,
                    certificate_der: self.certificate_der.as_deref()?,
                    not_before: self.not_before?,
                    not_after: self.not_after?,
                    issued_at: self.issued_at?,
                    station: self.station.as_deref()?,
                    request_id: self.request_id.as_deref(),
                    channel: self.channel?.name(),
                }
                .payload(),
            ),
            "revoked" => Some(revoked_payload(
                row_ca,
                &self.serial,
                self.revoked_at?,
                self.revocation_reason.as_deref(),
            )),
            "superseded" => Some(superseded_payload(
                row_ca,
                &self.serial,
                self.superseded_at?,
                self.superseded_by.as_deref()?,
            )),
            _ => None,
        }
    }
}

/// The head of a CA's chain: `(seq, hash)`.
pub type Head = (i64, Vec<u8>);

/// A count per kind of chain record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts {
    pub issued: i64,
    pub revoked: i64,
    pub superseded: i64,
}

impl KindCounts {
    /// Counts one record of `kind` (other kinds are not counted).
    pub fn add(&mut self, kind: &str) {
        match kind {
            "issued" => self.issued += 1,
            "revoked" => self.revoked += 1,
            "superseded" => self.superseded += 1,
            _ => {}
        }
    }
}

impl std::ops::Add for KindCounts {
    type Output = KindCounts;

    fn add(self, other: KindCounts) -> KindCounts {
        KindCounts {
            issued: self.issued + other.issued,
            revoked: self.revoked + other.revoked,
            superseded: self.superseded + other.superseded,
        }
    }
}

/// [`Store::chain_coverage`]: the rows of a CA that want a record of each kind, and the
/// records of each kind after a position of its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    pub rows: KindCounts,
    pub records_after: KindCounts,
}

/// A `(serial, kind)` that a chain holds more than once: how many times, and its first and
/// last records.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RepeatedRecord {
    #[sqlx(try_from = "HexText")]
    pub serial: String,
    pub kind: String,
    pub records: i64,
    pub first_seq: i64,
    pub last_seq: i64,
}

impl Store {
    /// The CAs with a chain or a ledger row, in id order.
    pub async fn chained_cas(&self) -> StoreResult<Vec<String>> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT ca_id FROM ledger_heads UNION SELECT id FROM certificate_authorities \
             ORDER BY 1"
        )
        .fetch_all(pool)
        .await)?)
    }

    pub async fn chain_head(&self, ca_id: &str) -> StoreResult<Option<Head>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT seq, hash FROM ledger_heads WHERE ca_id = $1"
        )
        .bind(ca_id)
        .fetch_optional(pool)
        .await)?)
    }

    /// Up to `limit` records of `ca_id`'s chain after `after_seq`, in seq order, each with the
    /// ledger row it covers.
    pub async fn chain_page(
        &self,
        ca_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<ChainRow>> {
        let sql = format!(
            "SELECT e.seq, e.kind, e.serial, e.prev_hash, e.hash, c.serial AS found, c.ca_id, \
             c.thing_name, c.country, c.subject, c.key_algorithm, c.spki_sha256, \
             c.aws_certificate_id, c.certificate_der, c.not_before, c.not_after, c.issued_at, \
             c.station, c.request_id, c.channel, c.status, c.revoked_at, \
             c.revocation_reason, c.superseded_at, c.superseded_by \
             FROM ledger_chain e LEFT JOIN issued_certificates c ON c.serial = e.serial \
             WHERE e.ca_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT {limit}"
        );
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(ca_id)
            .bind(after_seq)
            .fetch_all(pool)
            .await)?)
    }

    /// How many of `ca_id`'s ledger rows want a record of each kind, and how many records of
    /// each kind its chain has after `after_seq`, read in one statement (one snapshot: a row
    /// and its record are committed together, so rows written while `ledger verify` walked the
    /// chain are counted on both sides). One pass over the CA's rows and a range of its chain's
    /// primary key; no lookup per row.
    pub async fn chain_coverage(&self, ca_id: &str, after_seq: i64) -> StoreResult<Coverage> {
        let (issued, revoked, superseded, after_issued, after_revoked, after_superseded) =
            on_pool!(self, |pool| sqlx::query_as::<
                _,
                (i64, i64, i64, i64, i64, i64),
            >(
                "SELECT r.issued, r.revoked, r.superseded, \
                 e.issued AS after_issued, e.revoked AS after_revoked, \
                 e.superseded AS after_superseded \
                 FROM (SELECT COUNT(*) AS issued, \
                   COALESCE(SUM(CASE WHEN status = 'revoked' THEN 1 ELSE 0 END), 0) AS revoked, \
                   COUNT(superseded_at) AS superseded \
                   FROM issued_certificates WHERE ca_id = $1) AS r, \
                 (SELECT COALESCE(SUM(CASE WHEN kind = 'issued' THEN 1 ELSE 0 END), 0) AS issued, \
                   COALESCE(SUM(CASE WHEN kind = 'revoked' THEN 1 ELSE 0 END), 0) AS revoked, \
                   COALESCE(SUM(CASE WHEN kind = 'superseded' THEN 1 ELSE 0 END), 0) \
                     AS superseded \
                   FROM ledger_chain WHERE ca_id = $1 AND seq > $2) AS e"
            )
            .bind(ca_id)
            .bind(after_seq)
            .fetch_one(pool)
            .await)?;
        Ok(Coverage {
            rows: KindCounts {
                issued,
                revoked,
                superseded,
            },
            records_after: KindCounts {
                issued: after_issued,
                revoked: after_revoked,
                superseded: after_superseded,
            },
        })
    }

    /// The first `(serial, kind)` that `ca_id`'s records 1 to `up_to_seq` hold more than once:
    /// one grouping of the CA's records (a sort or a hash on both backends).
    pub async fn repeated_record(
        &self,
        ca_id: &str,
        up_to_seq: i64,
    ) -> StoreResult<Option<RepeatedRecord>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT serial, kind, COUNT(*) AS records, MIN(seq) AS first_seq, \
             MAX(seq) AS last_seq FROM ledger_chain WHERE ca_id = $1 AND seq <= $2 \
             GROUP BY serial, kind HAVING COUNT(*) > 1 ORDER BY MIN(seq) LIMIT 1"
        )
        .bind(ca_id)
        .bind(up_to_seq)
        .fetch_optional(pool)
        .await)?)
    }

    /// A ledger row of `ca_id` that no chain record covers: an issued certificate without its
    /// `issued` record, a revoked one without its `revoked` record, or a renewed one without its
    /// `superseded` record, the first in the order the rows were written. `(serial, kind)`.
    ///
    /// `ledger verify` asks only when [`Store::chain_coverage`]'s counts disagree. Each kind is
    /// a set difference (`EXCEPT`) of the CA's rows and its records, which both backends answer
    /// by sorting or hashing the two sides once: the chain has no index by serial.
    pub async fn unchained_row(&self, ca_id: &str) -> StoreResult<Option<(String, String)>> {
        // Per kind of record: which rows must have one, and the order they were written in.
        const KINDS: [(&str, &str, &str); 3] = [
            ("issued", "", "issued_at"),
            ("revoked", "AND status = 'revoked'", "revoked_at"),
            (
                "superseded",
                "AND superseded_at IS NOT NULL",
                "superseded_at",
            ),
        ];
        for (kind, rows, order) in KINDS {
            let sql = format!(
                "SELECT c.serial FROM issued_certificates c WHERE c.ca_id = $1 AND c.serial IN \
                 (SELECT serial FROM issued_certificates WHERE ca_id = $1 {rows} \
                 EXCEPT SELECT serial FROM ledger_chain WHERE ca_id = $1 AND kind = '{kind}') \
                 ORDER BY c.{order}, c.serial LIMIT 1"
            );
            let serial: Option<HexText> = on_pool!(self, |pool| sqlx::query_scalar(&sql)
                .bind(ca_id)
                .fetch_optional(pool)
                .await)?;
            if let Some(serial) = serial {
                return Ok(Some((serial.0, kind.into())));
            }
        }
        Ok(None)
    }

    /// `ledger verify`'s check of the thing claims: how many there are, and the first (by thing
    /// name) that does not name a ledger row of its own thing, as `(thing name, serial)`. A
    /// claim is written with its certificate; on PostgreSQL no foreign key checks it (migration
    /// 0029), so this is where a claim changed or left behind in the database shows.
    pub async fn claims_check(&self) -> StoreResult<(i64, Option<(String, String)>)> {
        const COUNT: &str = "SELECT COUNT(*) FROM thing_claims";
        const STRAY: &str = "SELECT c.thing_name, c.serial FROM thing_claims c \
             WHERE NOT EXISTS (SELECT 1 FROM issued_certificates i \
                 WHERE i.serial = c.serial AND i.thing_name = c.thing_name) \
             ORDER BY c.thing_name LIMIT 1";
        let (count, stray): (i64, Option<(String, HexText)>) = on_pool!(self, |pool| async {
            let count: i64 = sqlx::query_scalar(COUNT).fetch_one(pool).await?;
            let stray = sqlx::query_as(STRAY).fetch_optional(pool).await?;
            Ok::<_, sqlx::Error>((count, stray))
        }
        .await)?;
        Ok((count, stray.map(|(thing, serial)| (thing, serial.0))))
    }

    /// Adopts the ledger rows written before the chain existed, once (migration 0016 marks it
    /// due): per CA, issuances in `issued_at` order, then revocations in `revoked_at` order, in
    /// transactions of a few thousand rows.
    pub(crate) async fn adopt_unchained(&self) -> StoreResult<()> {
        let due: Option<i64> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT CAST(id AS BIGINT) FROM ledger_adoption"
        )
        .fetch_optional(pool)
        .await)?;
        if due.is_none() {
            return Ok(());
        }
        // Each page looks its rows' records up by serial. The chain keeps no index by serial
        // (nothing else looks a record up that way; migration 0027), so adoption makes one for
        // its own run and drops it after. An interrupted run leaves it for the next one.
        on_pool!(self, |pool| sqlx::query(
            "CREATE INDEX IF NOT EXISTS ledger_chain_adoption ON ledger_chain (serial, kind)"
        )
        .execute(pool)
        .await
        .map(|_| ()))?;
        let mut analyzed = false;
        for ca_id in self.chained_cas().await? {
            for kind in ["issued", "revoked"] {
                // Keyset cursor `(time, serial)`: each page starts where the last one ended.
                let mut after: Option<(Timestamp, String)> = None;
                while let Some(last) = self.adopt_page(&ca_id, kind, after.take()).await? {
                    after = Some(last);
                    // CREATE INDEX on a chain of a few records left PostgreSQL's statistics
                    // saying one record per page, which it scales with the chain's size: far
                    // too few as the chain grows. Statistics taken after the first page give it
                    // the real density (see `adopt_page`).
                    if !analyzed && let Store::Postgres(pool) = self {
                        sqlx::query("ANALYZE ledger_chain").execute(pool).await?;
                        analyzed = true;
                    }
                }
            }
        }
        // The index first: a run stopped between the two finds adoption still due, makes the
        // index again and adopts nothing.
        on_pool!(self, |pool| sqlx::query(
            "DROP INDEX IF EXISTS ledger_chain_adoption"
        )
        .execute(pool)
        .await
        .map(|_| ()))?;
        on_pool!(self, |pool| sqlx::query("DELETE FROM ledger_adoption")
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Adopts up to a page of `kind` rows after `after`; returns the cursor of the last one, or
    /// `None` when there was none.
    async fn adopt_page(
        &self,
        ca_id: &str,
        kind: &'static str,
        after: Option<(Timestamp, String)>,
    ) -> StoreResult<Option<(Timestamp, String)>> {
        const PAGE: u32 = 5_000;
        let time = if kind == "issued" {
            "issued_at"
        } else {
            "revoked_at"
        };
        let revoked_only = if kind == "issued" {
            ""
        } else {
            "AND c.status = 'revoked'"
        };
        let cursor = if after.is_some() {
            format!("AND (c.{time}, c.serial) > ($2, $3)")
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT serial, ca_id, thing_name, country, subject, key_algorithm, spki_sha256, \
             aws_certificate_id, certificate_der, not_before, not_after, issued_at, station, \
             request_id, status, revoked_at, revocation_reason, aws_revocation_pending, \
             aws_status, aws_first_seen_at, channel, superseded_at, superseded_by \
             FROM issued_certificates c \
             WHERE c.ca_id = $1 \
             {revoked_only} {cursor} AND NOT EXISTS (SELECT 1 FROM ledger_chain e \
             WHERE e.serial = c.serial AND e.kind = '{kind}') \
             ORDER BY c.{time}, c.serial LIMIT {PAGE}"
        );
        let (at, serial) = after.unzip();
        // The NOT EXISTS must probe the adoption index once per row. Left to itself, PostgreSQL
        // may plan a scan of the whole chain per row or per page (a hash of it), quadratic in
        // the rows adopted. Only index probes are left open to it, for this transaction.
        let planner: &[&str] = match self {
            Store::Postgres(_) => &[
                "SET LOCAL enable_seqscan = off",
                "SET LOCAL enable_hashjoin = off",
                "SET LOCAL enable_mergejoin = off",
            ],
            Store::Sqlite(_) => &[],
        };
        let last = on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                for setting in planner {
                    sqlx::query(setting).execute(&mut *tx).await?;
                }
                let mut query = sqlx::query_as(&sql).bind(ca_id);
                if let (Some(at), Some(serial)) = (at, &serial) {
                    query = query.bind(at).bind(HexArg(serial));
                }
                let rows: Vec<super::CertificateRecord> = query.fetch_all(&mut *tx).await?;
                let Some(last) = rows.last() else {
                    tx.rollback().await?;
                    return Ok::<_, sqlx::Error>(None);
                };
                let last = if kind == "issued" {
                    (last.issued_at, last.serial.clone())
                } else {
                    (
                        last.revoked_at.unwrap_or(last.issued_at),
                        last.serial.clone(),
                    )
                };
                let events: Vec<Event> = rows
                    .iter()
                    .map(|r| match kind {
                        "issued" => IssuedFields {
                            ca_id: &r.ca_id,
                            serial: &r.serial,
                            thing_name: &r.thing_name,
                            country: r.country.as_deref(),
                            subject: &r.subject,
                            key_algorithm: &r.key_algorithm.name(),
                            spki_sha256: &r.spki_sha256,
                            aws_certificate_id: &r.aws_certificate_id,
                            certificate_der: &r.certificate_der,
                            not_before: r.not_before,
                            not_after: r.not_after,
                            issued_at: r.issued_at,
                            station: &r.station,
                            request_id: r.request_id.as_deref(),
                            channel: r.channel.name(),
                        }
                        .event(),
                        _ => Event {
                            kind: "revoked",
                            serial: r.serial.clone(),
                            payload: revoked_payload(
                                &r.ca_id,
                                &r.serial,
                                r.revoked_at.unwrap_or(r.issued_at),
                                r.revocation_reason.map(|reason| reason.name()),
                            ),
                        },
                    })
                    .collect();
                append_chain!(tx, ca_id, &events)?;
                tx.commit().await?;
                Ok(Some(last))
            }
            .await
        })?;
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_and_empty_fields_encode_differently() {
        let at = Timestamp::now();
        assert_ne!(
            revoked_payload("ca", "01", at, None),
            revoked_payload("ca", "01", at, Some(""))
        );
        // Length prefixes keep field boundaries: moving a character across them changes the
        // payload.
        assert_ne!(
            revoked_payload("ca", "01", at, Some("x")),
            revoked_payload("ca0", "1", at, Some("x"))
        );
    }

    #[test]
    fn each_link_covers_its_predecessor_and_its_place() {
        let events: Vec<Event> = (0..3)
            .map(|i| revoked_event("ca", &format!("{i:02}"), Timestamp::now(), "superseded"))
            .collect();
        let (linked, seq, head) = link_all(0, GENESIS.to_vec(), &events).unwrap();
        assert_eq!(seq, 3);
        assert_eq!(linked[0].prev_hash, GENESIS);
        assert_eq!(linked[1].prev_hash, linked[0].hash);
        assert_eq!(head, linked[2].hash);
        assert_eq!(linked[2].hash, link(&linked[1].hash, 3, &events[2].payload));
        assert_ne!(link(&GENESIS, 1, b"x"), link(&GENESIS, 2, b"x"));
    }
}
