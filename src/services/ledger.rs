//! The ledger's proofs: signed checkpoints of each CA's hash chain ([`crate::store::chain`]),
//! and `ledger verify`, which recomputes each chain from the ledger rows, checks every
//! checkpoint against it and against the audit key, and names the first record or checkpoint
//! that does not match.
//!
//! A checkpoint signs this text (UTF-8, each line ending in one `\n`, no other whitespace):
//!
//! ```text
//! factory-ca ledger checkpoint v1
//! ca_id: <CA id>
//! seq: <the last record covered, decimal>
//! head_hash: <its hash, 64 lowercase hex digits>
//! issued: <issuance records among records 1..=seq, decimal>
//! revoked: <revocation records among records 1..=seq, decimal>
//! created_at: <Unix time in microseconds, decimal>
//! key_id: <SHA-256 of the audit public key's SubjectPublicKeyInfo DER, lowercase hex>
//! ```
//!
//! with the audit key (ECDSA P-256, SHA-256, DER signature), so that
//! `openssl dgst -sha256 -verify audit.pub -signature cp.sig cp.txt` checks one by hand.

use std::time::{Duration, Instant};

use crate::config::LedgerSettings;
use crate::keys::{AuditKey, AuditPublicKey};
use crate::store::chain::{self, ChainRow, GENESIS, KindCounts, RepeatedRecord};
use crate::store::checkpoints::{CheckpointRecord, LastCheckpoint};
use crate::store::{Store, StoreError, Timestamp};

/// The first line of a checkpoint's signed text.
pub const CHECKPOINT_V1: &str = "factory-ca ledger checkpoint v1";

/// The canonical text a checkpoint's signature covers (see the module documentation).
pub fn checkpoint_message(cp: &CheckpointRecord) -> Vec<u8> {
    let micros = cp.created_at.get().unix_timestamp_nanos() / 1_000;
    format!(
        "{CHECKPOINT_V1}\nca_id: {}\nseq: {}\nhead_hash: {}\nissued: {}\nrevoked: {}\n\
         created_at: {micros}\nkey_id: {}\n",
        cp.ca_id,
        cp.seq,
        hex::encode(&cp.head_hash),
        cp.issued,
        cp.revoked,
        cp.key_id
    )
    .into_bytes()
}

/// Whether a CA id can stand on one line of the signed text (ids are `ca-` and hex digits;
/// this refuses whatever else a store could hold).
fn one_line(ca_id: &str) -> bool {
    !ca_id.is_empty() && ca_id.chars().all(|c| !c.is_control())
}

/// When a checkpoint is due, from `[ledger]`: `records_since` records were appended since the
/// last one, made `since` ago (`None`: the chain has none yet).
pub fn checkpoint_due(
    settings: &LedgerSettings,
    records_since: i64,
    since: Option<Duration>,
) -> bool {
    if records_since <= 0 || !settings.checkpoints_enabled() {
        return false;
    }
    let by_count = settings.checkpoint_every_records > 0
        && records_since as u64 >= settings.checkpoint_every_records;
    let by_time = !settings.checkpoint_interval_secs.is_zero()
        && since.is_none_or(|s| s >= settings.checkpoint_interval_secs);
    by_count || by_time
}

/// Why checkpoints are made: on schedule (`[ledger]`), or now for every chain with records
/// after its last checkpoint (`ledger checkpoint`, shutdown).
#[derive(Debug, Clone, Copy)]
pub enum CheckpointWhen<'a> {
    Due(&'a LedgerSettings),
    Pending,
}

/// Checkpoints every CA chain for which one is due at `now`; returns the checkpoints made.
/// Safe to run in several processes at once: each decision is taken under the head's lock
/// ([`Store::record_checkpoint`]).
pub async fn checkpoint_chains(
    store: &Store,
    key: &AuditKey,
    when: CheckpointWhen<'_>,
    now: Timestamp,
) -> Result<Vec<CheckpointRecord>, StoreError> {
    let mut made = Vec::new();
    for state in store.checkpoint_states().await? {
        let records_since = state.head_seq - state.last_seq.unwrap_or(0);
        let looks_due = match when {
            CheckpointWhen::Due(settings) => {
                let since = state.last_at.map(|at| age(at, now));
                checkpoint_due(settings, records_since, since)
            }
            CheckpointWhen::Pending => records_since > 0,
        };
        if !looks_due {
            continue;
        }
        if !one_line(&state.ca_id) {
            tracing::warn!(ca_id = ?state.ca_id, "a CA id with control characters is not checkpointed");
            continue;
        }
        let due = |head_seq: i64, last: Option<LastCheckpoint>| match when {
            CheckpointWhen::Due(settings) => checkpoint_due(
                settings,
                head_seq - last.map_or(0, |l| l.seq),
                last.map(|l| age(l.created_at, now)),
            ),
            CheckpointWhen::Pending => true,
        };
        let sign = |unsigned: &CheckpointRecord| {
            let mut signed = unsigned.clone();
            signed.key_id = key.key_id().to_owned();
            let signature = key.sign(&checkpoint_message(&signed));
            (signed.key_id, signature)
        };
        if let Some(cp) = store
            .record_checkpoint(&state.ca_id, now, due, sign)
            .await?
        {
            metrics::counter!("factory_ca_ledger_checkpoints_total").increment(1);
            tracing::info!(
                ca_id = %cp.ca_id,
                seq = cp.seq,
                head_hash = %hex::encode(&cp.head_hash),
                key_id = %cp.key_id,
                "ledger checkpoint signed"
            );
            made.push(cp);
        }
    }
    Ok(made)
}

fn age(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.get() - at.get()).unwrap_or(Duration::ZERO)
}

/// Records read per query: the chain is streamed, never held whole.
pub const PAGE: u32 = 10_000;

/// What a mismatch is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchAt {
    /// A chain record, or a ledger row no record covers.
    Record,
    /// A signed checkpoint.
    Checkpoint,
}

/// The first thing wrong with one CA's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub at: MismatchAt,
    /// The chain record where verification stopped (0 when it is about a ledger row that no
    /// record covers), or the position of the checkpoint that fails.
    pub seq: i64,
    /// The certificate concerned, when known.
    pub serial: Option<String>,
    /// What does not match, in words.
    pub problem: String,
}

/// The outcome for one CA.
#[derive(Debug, Clone)]
pub struct CaVerification {
    pub ca_id: String,
    /// Records that verified before the first mismatch (all of them when there is none).
    pub verified: u64,
    /// Checkpoints that verified before the first mismatch.
    pub checkpoints: u64,
    /// The last checkpoint that verified: `(seq, head hash hex)`.
    pub last_checkpoint: Option<(i64, String)>,
    pub mismatch: Option<Mismatch>,
    pub seconds: f64,
}

/// Verifies the chain and the checkpoints of `ca_id`, or of every CA. A checkpoint verifies
/// when it is signed by one of `trusted` (the local audit key, or published keys an auditor
/// gives) and names the hash and counts the chain has at its position.
pub async fn verify(
    store: &Store,
    ca_id: Option<&str>,
    trusted: &[AuditPublicKey],
) -> Result<Vec<CaVerification>, StoreError> {
    let cas = match ca_id {
        Some(id) => vec![id.to_owned()],
        None => {
            let mut cas = store.chained_cas().await?;
            cas.extend(store.checkpointed_cas().await?);
            cas.sort();
            cas.dedup();
            cas
        }
    };
    let mut out = Vec::with_capacity(cas.len());
    for ca in cas {
        out.push(verify_ca(store, &ca, trusted).await?);
    }
    Ok(out)
}

/// The thing claims as `ledger verify` finds them: every claim must name a ledger row of its
/// own thing (the certificate that holds the thing name).
#[derive(Debug, Clone)]
pub struct ClaimsVerification {
    pub claims: i64,
    /// The first claim (by thing name) that does not: `(thing name, serial)`.
    pub stray: Option<(String, String)>,
    pub seconds: f64,
}

/// Checks every thing claim against the ledger rows ([`ClaimsVerification`]).
pub async fn verify_claims(store: &Store) -> Result<ClaimsVerification, StoreError> {
    let started = Instant::now();
    let (claims, stray) = store.claims_check().await?;
    Ok(ClaimsVerification {
        claims,
        stray,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Checkpoints read per query.
const CHECKPOINT_PAGE: u32 = 1_000;

/// A CA's checkpoints in seq order, read a page at a time.
struct Checkpoints<'a> {
    store: &'a Store,
    ca_id: &'a str,
    page: std::vec::IntoIter<CheckpointRecord>,
    after: i64,
    done: bool,
}

impl<'a> Checkpoints<'a> {
    fn new(store: &'a Store, ca_id: &'a str) -> Self {
        Checkpoints {
            store,
            ca_id,
            page: Vec::new().into_iter(),
            after: 0,
            done: false,
        }
    }

    async fn next(&mut self) -> Result<Option<CheckpointRecord>, StoreError> {
        if let Some(cp) = self.page.next() {
            self.after = cp.seq;
            return Ok(Some(cp));
        }
        if self.done {
            return Ok(None);
        }
        let page = self
            .store
            .checkpoints_page(self.ca_id, self.after, CHECKPOINT_PAGE)
            .await?;
        self.done = page.len() < CHECKPOINT_PAGE as usize;
        self.page = page.into_iter();
        let next = self.page.next();
        if let Some(cp) = &next {
            self.after = cp.seq;
        }
        Ok(next)
    }
}

/// The chain as recomputed up to a checkpoint's position.
struct Recomputed<'a> {
    hash: &'a [u8; 32],
    issued: i64,
    revoked: i64,
    /// The last checkpoint that verified before this one (0: none).
    previous: i64,
}

/// Checks one checkpoint: signed by a trusted audit key, over what it says, and saying what the
/// recomputed chain has at its position.
fn check_checkpoint(
    cp: &CheckpointRecord,
    chain: &Recomputed<'_>,
    trusted: &[AuditPublicKey],
) -> Result<(), Mismatch> {
    let fail = |problem: String| Mismatch {
        at: MismatchAt::Checkpoint,
        seq: cp.seq,
        serial: None,
        problem,
    };
    let Some(key) = trusted.iter().find(|k| k.key_id() == cp.key_id) else {
        return Err(fail(if trusted.is_empty() {
            format!(
                "checkpoint at record {} cannot be checked: there is no audit key (no {} in the data \
                 directory); give the published audit public key with --audit-key FILE",
                cp.seq,
                crate::keys::AUDIT_KEY_FILE
            )
        } else {
            format!(
                "checkpoint at record {} names audit key {}, which is not a trusted audit key ({}): \
                 it was made with another key",
                cp.seq,
                cp.key_id,
                trusted
                    .iter()
                    .map(AuditPublicKey::key_id)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }));
    };
    if !key.verifies(&checkpoint_message(cp), &cp.signature) {
        return Err(fail(format!(
            "checkpoint at record {}: its signature does not verify with audit key {} (the \
             checkpoint was altered or forged)",
            cp.seq, cp.key_id
        )));
    }
    if cp.head_hash.as_slice() != chain.hash.as_slice() {
        return Err(fail(format!(
            "checkpoint at record {}: it signed head hash {} but the chain recomputed from the \
             ledger has {} there: records {} to {} were rewritten after the checkpoint was made",
            cp.seq,
            hex::encode(&cp.head_hash),
            hex::encode(chain.hash),
            chain.previous + 1,
            cp.seq
        )));
    }
    if (cp.issued, cp.revoked) != (chain.issued, chain.revoked) {
        return Err(fail(format!(
            "checkpoint at record {}: it signed {} issuance and {} revocation records but the \
             chain has {} and {} (record kinds were changed)",
            cp.seq, cp.issued, cp.revoked, chain.issued, chain.revoked
        )));
    }
    Ok(())
}

/// Checks one record against its predecessor's hash and the ledger row it covers; returns its
/// hash.
fn check(row: &ChainRow, expected_seq: i64, prev: &[u8; 32]) -> Result<[u8; 32], Mismatch> {
    let fail = |problem: String| Mismatch {
        at: MismatchAt::Record,
        seq: row.seq.min(expected_seq),
        serial: Some(row.serial.clone()),
        problem,
    };
    if row.seq != expected_seq {
        return Err(fail(format!(
            "record {expected_seq} is missing: the next record is {} (records were deleted or \
             renumbered)",
            row.seq
        )));
    }
    if row.prev_hash.as_slice() != prev.as_slice() {
        return Err(fail(format!(
            "record {} ({} {}) does not follow record {}: its predecessor hash differs \
             (records were reordered, replaced or inserted)",
            row.seq,
            row.kind,
            row.serial,
            row.seq - 1
        )));
    }
    let Some(payload) = row.payload() else {
        let problem = match (row.found.is_some(), row.kind.as_str()) {
            (false, _) => format!(
                "record {} ({}): certificate {} is not in the ledger (its row was deleted)",
                row.seq, row.kind, row.serial
            ),
            (true, "revoked") => format!(
                "record {} (revoked): certificate {} is no longer revoked in the ledger",
                row.seq, row.serial
            ),
            (true, kind) => format!(
                "record {} has an unknown kind {kind:?} (certificate {})",
                row.seq, row.serial
            ),
        };
        return Err(fail(problem));
    };
    let hash = chain::link(prev, row.seq, &payload);
    if row.hash.as_slice() != hash.as_slice() {
        let thing = row
            .thing_name
            .as_deref()
            .map(|t| format!(", thing name {t:?}"))
            .unwrap_or_default();
        return Err(fail(format!(
            "record {} ({}): the ledger row of certificate {}{thing} does not match its hash (a \
             field of the row, or the record, was changed)",
            row.seq, row.kind, row.serial
        )));
    }
    Ok(hash)
}

/// The first of `ca_id`'s ledger rows that lacks a record, once its records 1 to `last` have
/// verified, `covered` of them covering a row that wants a record of their kind.
///
/// No record is looked up by serial. A verified record covers a row of this CA (its hash covers
/// the row's CA), so when no `(serial, kind)` repeats, the covered records name distinct rows,
/// and every row has its records exactly when the rows wanting a record of each kind are as many
/// as the covered records plus the records appended since the walk passed (counted with the rows
/// in one snapshot). Only when they are not is there a row to find, by a slower search.
async fn uncovered_row(
    store: &Store,
    ca_id: &str,
    last: i64,
    covered: KindCounts,
) -> Result<Option<Mismatch>, StoreError> {
    if let Some(repeated) = store.repeated_record(ca_id, last).await? {
        let RepeatedRecord {
            serial,
            kind,
            records,
            first_seq,
            last_seq,
        } = repeated;
        return Ok(Some(Mismatch {
            at: MismatchAt::Record,
            seq: last_seq,
            serial: Some(serial.clone()),
            problem: format!(
                "record {last_seq} ({kind}) repeats record {first_seq}: certificate {serial} has \
                 {records} {kind} records in the chain (a record was copied, and the records \
                 after it rewritten)"
            ),
        }));
    }
    let coverage = store.chain_coverage(ca_id, last).await?;
    if coverage.rows == covered + coverage.records_after {
        return Ok(None);
    }
    // A row without its records, or a row changed outside factory-ca after the walk passed its
    // record (the next verify names that record): the search decides which.
    Ok(store
        .unchained_row(ca_id)
        .await?
        .map(|(serial, kind)| Mismatch {
            at: MismatchAt::Record,
            seq: 0,
            serial: Some(serial.clone()),
            problem: format!(
                "certificate {serial} is {kind} in the ledger but has no {kind} record in the \
                 chain (the row was written outside factory-ca)"
            ),
        }))
}

async fn verify_ca(
    store: &Store,
    ca_id: &str,
    trusted: &[AuditPublicKey],
) -> Result<CaVerification, StoreError> {
    let started = Instant::now();
    let mut prev = GENESIS;
    let mut expected = 1i64;
    let mut mismatch = None;
    let mut checkpoints = Checkpoints::new(store, ca_id);
    let mut next_checkpoint = checkpoints.next().await?;
    let (mut issued, mut revoked) = (0i64, 0i64);
    // The walked records that cover a row wanting a record of their kind.
    let mut covered = KindCounts::default();
    let mut verified_checkpoints = 0u64;
    let mut last_checkpoint: Option<(i64, String)> = None;
    'pages: loop {
        let page = store.chain_page(ca_id, expected - 1, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for row in &page {
            match check(row, expected, &prev) {
                Ok(hash) => {
                    prev = hash;
                    expected += 1;
                    // A checkpoint counts issuance and revocation records; a `superseded`
                    // record is neither (it is the rest of `seq`).
                    match row.kind.as_str() {
                        "issued" => issued += 1,
                        "revoked" => revoked += 1,
                        _ => {}
                    }
                    if row.covers_a_row_of(ca_id) {
                        covered.add(&row.kind);
                    }
                }
                Err(m) => {
                    mismatch = Some(m);
                    break 'pages;
                }
            }
            while let Some(cp) = next_checkpoint.as_ref().filter(|cp| cp.seq <= row.seq) {
                let chain = Recomputed {
                    hash: &prev,
                    issued,
                    revoked,
                    previous: last_checkpoint.as_ref().map_or(0, |(seq, _)| *seq),
                };
                // A checkpoint at a position the walk has passed (a seq below 1) is checked
                // against the wrong head and fails, as it should.
                if let Err(m) = check_checkpoint(cp, &chain, trusted) {
                    mismatch = Some(m);
                    break 'pages;
                }
                verified_checkpoints += 1;
                last_checkpoint = Some((cp.seq, hex::encode(&cp.head_hash)));
                next_checkpoint = checkpoints.next().await?;
            }
        }
    }
    let last = expected - 1;
    if mismatch.is_none() {
        let head = store.chain_head(ca_id).await?;
        let (head_seq, head_hash) = head.unwrap_or((0, GENESIS.to_vec()));
        if head_seq != last || head_hash.as_slice() != prev.as_slice() {
            mismatch = Some(Mismatch {
                at: MismatchAt::Record,
                seq: last + 1,
                serial: None,
                problem: format!(
                    "the chain ends at record {last} but its head is record {head_seq} with \
                     another hash (records at the end were deleted, or the head was changed)"
                ),
            });
        }
    }
    if mismatch.is_none()
        && let Some(cp) = &next_checkpoint
    {
        mismatch = Some(Mismatch {
            at: MismatchAt::Checkpoint,
            seq: cp.seq,
            serial: None,
            problem: format!(
                "checkpoint at record {} but the chain ends at record {last}: records after \
                 {last} were deleted (and the head moved back)",
                cp.seq
            ),
        });
    }
    if mismatch.is_none() {
        mismatch = uncovered_row(store, ca_id, last, covered).await?;
    }
    Ok(CaVerification {
        ca_id: ca_id.to_owned(),
        verified: u64::try_from(last).unwrap_or(0),
        checkpoints: verified_checkpoints,
        last_checkpoint,
        mismatch,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_by_count_or_by_time_once_records_were_appended() {
        let s = LedgerSettings {
            checkpoint_every_records: 100,
            checkpoint_interval_secs: Duration::from_secs(60),
        };
        let min = |m: u64| Some(Duration::from_secs(m * 60));
        assert!(!checkpoint_due(&s, 0, None), "nothing to sign");
        assert!(!checkpoint_due(&s, 0, min(10)), "nothing new to sign");
        assert!(checkpoint_due(&s, 1, None), "a chain's first records");
        assert!(!checkpoint_due(&s, 99, Some(Duration::from_secs(59))));
        assert!(checkpoint_due(&s, 100, Some(Duration::from_secs(1))));
        assert!(checkpoint_due(&s, 1, min(1)));
        let by_count = LedgerSettings {
            checkpoint_interval_secs: Duration::ZERO,
            ..s.clone()
        };
        assert!(!checkpoint_due(&by_count, 99, min(600)));
        assert!(!checkpoint_due(&by_count, 1, None));
        assert!(checkpoint_due(&by_count, 100, None));
        let off = LedgerSettings {
            checkpoint_every_records: 0,
            ..by_count
        };
        assert!(!checkpoint_due(&off, 1_000_000, None));
    }

    #[test]
    fn the_signed_text_is_the_documented_one() {
        let cp = CheckpointRecord {
            ca_id: "ca-0123456789abcdef".into(),
            seq: 42,
            head_hash: vec![0xab; 32],
            issued: 40,
            revoked: 2,
            created_at: Timestamp::new(time::macros::datetime!(2026-11-29 10:00:00.5 UTC)),
            key_id: "00".repeat(32),
            signature: Vec::new(),
        };
        let text = String::from_utf8(checkpoint_message(&cp)).unwrap();
        assert_eq!(
            text,
            format!(
                "factory-ca ledger checkpoint v1\nca_id: ca-0123456789abcdef\nseq: 42\n\
                 head_hash: {}\nissued: 40\nrevoked: 2\ncreated_at: 1795946400500000\n\
                 key_id: {}\n",
                "ab".repeat(32),
                "00".repeat(32)
            )
        );
        assert!(!one_line("ca-1\nseq: 9"));
        assert!(one_line("ca-0123456789abcdef"));
    }

    #[test]
    fn a_checkpoint_verifies_only_as_signed_and_only_at_its_head() {
        let key = AuditKey::generate().unwrap();
        let other = AuditKey::generate().unwrap();
        let head = [7u8; 32];
        let mut cp = CheckpointRecord {
            ca_id: "ca-1".into(),
            seq: 3,
            head_hash: head.to_vec(),
            issued: 2,
            revoked: 1,
            created_at: Timestamp::now(),
            key_id: key.key_id().to_owned(),
            signature: Vec::new(),
        };
        cp.signature = key.sign(&checkpoint_message(&cp));
        let chain = Recomputed {
            hash: &head,
            issued: 2,
            revoked: 1,
            previous: 0,
        };
        let trusted = [key.public().clone()];
        check_checkpoint(&cp, &chain, &trusted).unwrap();

        let problem =
            |cp: &CheckpointRecord, chain: &Recomputed<'_>, trusted: &[AuditPublicKey]| {
                check_checkpoint(cp, chain, trusted).unwrap_err().problem
            };
        assert!(problem(&cp, &chain, &[]).contains("--audit-key"));
        assert!(problem(&cp, &chain, &[other.public().clone()]).contains("not a trusted"));
        let other_head = [8u8; 32];
        let rewritten = Recomputed {
            hash: &other_head,
            ..chain
        };
        assert!(problem(&cp, &rewritten, &trusted).contains("records 1 to 3 were rewritten"));
        let mut forged = cp.clone();
        forged.issued = 3;
        assert!(problem(&forged, &chain, &trusted).contains("signature does not verify"));
        let recounted = Recomputed {
            issued: 3,
            revoked: 0,
            ..chain
        };
        assert!(problem(&cp, &recounted, &trusted).contains("record kinds were changed"));
    }
}
