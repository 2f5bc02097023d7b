//! Signed checkpoints of each CA's hash chain ([`super::chain`]): the head `(seq, hash)` at a
//! moment, with the counts of issuances and revocations up to it, signed by the ledger audit
//! key. The store writes and reads them; what is signed, and when a checkpoint is due, is
//! [`crate::services::ledger`]'s business.
//!
//! A checkpoint is recorded in a transaction that first locks the CA's `ledger_heads` row, the
//! lock every append takes: the head it names is committed, nothing is appended between reading
//! it and recording it, and two writers (replicas, the CLI) checkpointing at once take turns,
//! the second seeing the first's checkpoint before it decides.

use sqlx::FromRow;

use super::{Store, StoreResult, Timestamp};

/// `UPDATE .. RETURNING` takes the head row's lock on PostgreSQL (until the transaction ends)
/// and the write lock on SQLite, without creating a head for a CA that has no chain.
const LOCK_HEAD_SQL: &str =
    "UPDATE ledger_heads SET seq = seq WHERE ca_id = $1 RETURNING seq, hash";

const LAST_SQL: &str = "SELECT seq, created_at, issued, revoked FROM ledger_checkpoints \
     WHERE ca_id = $1 ORDER BY seq DESC LIMIT 1";

/// Issuances and revocations among the records `(after, upto]` of a CA's chain.
const COUNT_SQL: &str = "SELECT \
     CAST(COALESCE(SUM(CASE WHEN kind = 'issued' THEN 1 ELSE 0 END), 0) AS BIGINT), \
     CAST(COALESCE(SUM(CASE WHEN kind = 'revoked' THEN 1 ELSE 0 END), 0) AS BIGINT) \
     FROM ledger_chain WHERE ca_id = $1 AND seq > $2 AND seq <= $3";

const INSERT_SQL: &str = "INSERT INTO ledger_checkpoints \
     (ca_id, seq, head_hash, issued, revoked, created_at, key_id, signature) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// One stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct CheckpointRecord {
    pub ca_id: String,
    /// The last chain record it covers (records count from 1, so also how many it covers).
    pub seq: i64,
    /// That record's hash: the chain head at the checkpoint.
    pub head_hash: Vec<u8>,
    /// Issuance records among records 1..=seq.
    pub issued: i64,
    /// Revocation records among records 1..=seq.
    pub revoked: i64,
    pub created_at: Timestamp,
    /// Lowercase hex SHA-256 of the signing audit public key (SubjectPublicKeyInfo DER).
    pub key_id: String,
    /// DER ECDSA P-256 / SHA-256 over the checkpoint's canonical text.
    pub signature: Vec<u8>,
}

/// A CA's chain head and its last checkpoint, as the checkpoint job polls them.
#[derive(Debug, Clone, FromRow)]
pub struct CheckpointState {
    pub ca_id: String,
    pub head_seq: i64,
    pub last_seq: Option<i64>,
    pub last_at: Option<Timestamp>,
}

/// The last checkpoint of a CA, as the decision to make another sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastCheckpoint {
    pub seq: i64,
    pub created_at: Timestamp,
}

impl Store {
    /// Every CA with a chain: its head and its last checkpoint (two index lookups per CA).
    pub async fn checkpoint_states(&self) -> StoreResult<Vec<CheckpointState>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT h.ca_id, h.seq AS head_seq, \
             (SELECT c.seq FROM ledger_checkpoints c WHERE c.ca_id = h.ca_id \
              ORDER BY c.seq DESC LIMIT 1) AS last_seq, \
             (SELECT c.created_at FROM ledger_checkpoints c WHERE c.ca_id = h.ca_id \
              ORDER BY c.seq DESC LIMIT 1) AS last_at \
             FROM ledger_heads h WHERE h.seq > 0 ORDER BY h.ca_id"
        )
        .fetch_all(pool)
        .await)?)
    }

    /// Records a checkpoint of `ca_id`'s chain head at `now` when `due(head_seq, last)` says
    /// so, decided under the head's lock; `sign` turns the unsigned checkpoint (its `key_id` and
    /// `signature` empty) into `(key_id, signature)`. Returns the checkpoint recorded, or `None`
    /// (no chain, no record since the last checkpoint, or not due).
    pub async fn record_checkpoint(
        &self,
        ca_id: &str,
        now: Timestamp,
        due: impl Fn(i64, Option<LastCheckpoint>) -> bool,
        sign: impl Fn(&CheckpointRecord) -> (String, Vec<u8>),
    ) -> StoreResult<Option<CheckpointRecord>> {
        let (due, sign) = (&due, &sign);
        Ok(on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                let head: Option<(i64, Vec<u8>)> = sqlx::query_as(LOCK_HEAD_SQL)
                    .bind(ca_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some((head_seq, head_hash)) = head else {
                    tx.rollback().await?;
                    return Ok::<_, sqlx::Error>(None);
                };
                let last: Option<(i64, Timestamp, i64, i64)> = sqlx::query_as(LAST_SQL)
                    .bind(ca_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let (last_seq, issued, revoked) =
                    last.map_or((0, 0, 0), |(seq, _, i, r)| (seq, i, r));
                let last_checkpoint =
                    last.map(|(seq, created_at, _, _)| LastCheckpoint { seq, created_at });
                if head_seq <= last_seq || !due(head_seq, last_checkpoint) {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let (new_issued, new_revoked): (i64, i64) = sqlx::query_as(COUNT_SQL)
                    .bind(ca_id)
                    .bind(last_seq)
                    .bind(head_seq)
                    .fetch_one(&mut *tx)
                    .await?;
                let mut checkpoint = CheckpointRecord {
                    ca_id: ca_id.to_owned(),
                    seq: head_seq,
                    head_hash,
                    issued: issued + new_issued,
                    revoked: revoked + new_revoked,
                    created_at: now,
                    key_id: String::new(),
                    signature: Vec::new(),
                };
                let (key_id, signature) = sign(&checkpoint);
                checkpoint.key_id = key_id;
                checkpoint.signature = signature;
                sqlx::query(INSERT_SQL)
                    .bind(&checkpoint.ca_id)
                    .bind(checkpoint.seq)
                    .bind(&checkpoint.head_hash)
                    .bind(checkpoint.issued)
                    .bind(checkpoint.revoked)
                    .bind(checkpoint.created_at)
                    .bind(&checkpoint.key_id)
                    .bind(&checkpoint.signature)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(checkpoint))
            }
            .await
        })?)
    }

    /// Up to `limit` checkpoints of `ca_id` after `after_seq`, in seq order.
    pub async fn checkpoints_page(
        &self,
        ca_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<CheckpointRecord>> {
        let sql = format!(
            "SELECT ca_id, seq, head_hash, issued, revoked, created_at, key_id, signature \
             FROM ledger_checkpoints WHERE ca_id = $1 AND seq > $2 ORDER BY seq LIMIT {limit}"
        );
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(ca_id)
            .bind(after_seq)
            .fetch_all(pool)
            .await)?)
    }

    /// The CAs that have checkpoints (a CA whose chain is gone but whose checkpoints remain is
    /// one `ledger verify` must look at).
    pub async fn checkpointed_cas(&self) -> StoreResult<Vec<String>> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT DISTINCT ca_id FROM ledger_checkpoints ORDER BY ca_id"
        )
        .fetch_all(pool)
        .await)?)
    }
}
