//! `ledger verify`: recomputes each CA's hash chain ([`crate::store::chain`]) from the ledger
//! rows and names the first record that does not match.

use std::time::Instant;

use crate::store::chain::{self, ChainRow, GENESIS};
use crate::store::{Store, StoreError};

/// Records read per query: the chain is streamed, never held whole.
pub const PAGE: u32 = 10_000;

/// The first thing wrong with one CA's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The chain record where verification stopped (0 when it is about a ledger row that no
    /// record covers).
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
    pub mismatch: Option<Mismatch>,
    pub seconds: f64,
}

/// Verifies the chain of `ca_id`, or of every CA.
pub async fn verify(store: &Store, ca_id: Option<&str>) -> Result<Vec<CaVerification>, StoreError> {
    let cas = match ca_id {
        Some(id) => vec![id.to_owned()],
        None => store.chained_cas().await?,
    };
    let mut out = Vec::with_capacity(cas.len());
    for ca in cas {
        out.push(verify_ca(store, &ca).await?);
    }
    Ok(out)
}

/// Checks one record against its predecessor's hash and the ledger row it covers; returns its
/// hash.
fn check(row: &ChainRow, expected_seq: i64, prev: &[u8; 32]) -> Result<[u8; 32], Mismatch> {
    let fail = |problem: String| Mismatch {
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

async fn verify_ca(store: &Store, ca_id: &str) -> Result<CaVerification, StoreError> {
    let started = Instant::now();
    let mut prev = GENESIS;
    let mut expected = 1i64;
    let mut mismatch = None;
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
                }
                Err(m) => {
                    mismatch = Some(m);
                    break 'pages;
                }
            }
        }
    }
    let last = expected - 1;
    if mismatch.is_none() {
        let head = store.chain_head(ca_id).await?;
        let (head_seq, head_hash) = head.unwrap_or((0, GENESIS.to_vec()));
        if head_seq != last || head_hash.as_slice() != prev.as_slice() {
            mismatch = Some(Mismatch {
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
        && let Some((serial, kind)) = store.unchained_row(ca_id).await?
    {
        mismatch = Some(Mismatch {
            seq: 0,
            serial: Some(serial.clone()),
            problem: format!(
                "certificate {serial} is {kind} in the ledger but has no {kind} record in the \
                 chain (the row was written outside factory-ca)"
            ),
        });
    }
    Ok(CaVerification {
        ca_id: ca_id.to_owned(),
        verified: u64::try_from(last).unwrap_or(0),
        mismatch,
        seconds: started.elapsed().as_secs_f64(),
    })
}
