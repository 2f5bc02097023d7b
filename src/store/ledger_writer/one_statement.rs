//! The batch in one statement: the writer's usual path.
//!
//! One `INSERT ... WITH` statement, sent outside any explicit transaction, does what the
//! transaction of [`super::write_in_transaction`] does in four to six round trips: it takes the
//! Idempotency-Keys, claims the thing names, inserts the certificates, locks the chain heads of
//! their CAs, appends the chain records (hashed by PostgreSQL, [`super::super::chain`]'s
//! encoding), moves the heads and adds the stats counters. PostgreSQL commits it as one
//! implicit transaction before it answers, so it is as durable as the transaction, in one round
//! trip instead of several, and its text is fixed, so each connection parses it once.
//!
//! The locks are taken in the order of the transaction: keys by (station, key), claims by thing
//! name, certificates, heads by CA id (the heads' `FOR UPDATE` reads the CA ids of `inserted`
//! through a sort, which runs the inserts to completion first), then the counters in key order,
//! hourly before daily (each waits for the step before it through a `count(*)`).
//!
//! What one statement cannot do, it refuses, and the transaction then records the batch:
//!
//! - a row whose Idempotency-Key landed but whose thing claim failed must give its key back,
//!   and a statement cannot delete a row it inserted itself. Its key row then names a
//!   certificate that was never inserted, the foreign key fails at the end of the statement,
//!   and nothing of the batch is kept;
//! - a CA's first record, when another writer creates the same CA's head at the same moment:
//!   both number their record 1 and the later one fails on the chain's primary key.
//!
//! The statement's answer is the same per-row outcome the transaction gives.

use std::collections::HashSet;

use super::super::{HexText, NewIssuance, RecordOutcome, Timestamp};

// PostgreSQL copies the rows of a CTE read more than once into a store of its own, so the
// CTEs after `input` carry only the columns their readers need: the certificate's DER and the
// chain payload (which holds the DER again) are not copied from CTE to CTE. That saves 3 % of
// the statement's instructions, at batches of 1 row and of 25 (docs/benchmarks.md,
// "PostgreSQL's instructions per certificate").
const SQL: &str = "WITH RECURSIVE input AS ( \
         SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::bytea[], $8::bytea[], $9::bytea[], $10::timestamptz[], \
             $11::timestamptz[], $12::timestamptz[], $13::text[], $14::text[], $15::text[], \
             $16::text[], $17::text[], $18::bytea[], $19::timestamptz[], $20::timestamptz[], \
             $21::timestamptz[], $22::timestamptz[]) WITH ORDINALITY \
         AS i (serial, ca_id, thing_name, country, subject, key_algorithm, spki_sha256, \
             aws_certificate_id, certificate_der, not_before, not_after, issued_at, station, \
             request_id, idempotency_key, channel, csr_sha256, payload, hour, expires_hour, \
             day, expires_day, ord) \
     ), keyed AS ( \
         INSERT INTO idempotency_keys (station, idempotency_key, csr_sha256, serial, created_at) \
         SELECT station, idempotency_key, csr_sha256, serial, issued_at FROM input \
         WHERE idempotency_key IS NOT NULL ORDER BY station, idempotency_key \
         ON CONFLICT (station, idempotency_key) DO NOTHING \
         RETURNING serial \
     ), candidates AS ( \
         SELECT thing_name, serial, not_after FROM input \
         WHERE idempotency_key IS NULL OR serial IN (SELECT serial FROM keyed) \
     ), claimed AS ( \
         INSERT INTO thing_claims (thing_name, serial, not_after) \
         SELECT thing_name, serial, not_after FROM candidates ORDER BY thing_name \
         ON CONFLICT (thing_name) DO UPDATE SET serial = excluded.serial, \
             not_after = excluded.not_after \
         WHERE NOT $23 OR thing_claims.not_after <= $24 \
         RETURNING serial \
     ), inserted AS ( \
         INSERT INTO issued_certificates (serial, ca_id, thing_name, country, subject, \
             key_algorithm, spki_sha256, aws_certificate_id, certificate_der, not_before, \
             not_after, issued_at, station, request_id, channel) \
         SELECT serial, ca_id, thing_name, country, subject, key_algorithm, spki_sha256, \
             aws_certificate_id, certificate_der, not_before, not_after, issued_at, station, \
             request_id, channel \
         FROM input WHERE serial IN (SELECT serial FROM claimed) \
         RETURNING serial, ca_id \
     ), recorded AS ( \
         SELECT ca_id, serial, payload, ord, hour, expires_hour, day, expires_day, station, \
             country FROM input WHERE serial IN (SELECT serial FROM inserted) \
     ), cas AS ( \
         SELECT DISTINCT ca_id FROM inserted ORDER BY ca_id \
     ), locked AS ( \
         SELECT ca_id, seq, hash FROM ledger_heads WHERE ca_id IN (SELECT ca_id FROM cas) \
         ORDER BY ca_id FOR UPDATE \
     ), numbered AS ( \
         SELECT ca_id, serial, payload, row_number() OVER (PARTITION BY ca_id ORDER BY ord) AS n \
         FROM recorded \
     ), linked (ca_id, n, seq, prev_hash, hash, serial) AS ( \
         SELECT c.ca_id, 0::bigint, COALESCE(l.seq, 0), NULL::bytea, COALESCE(l.hash, $25), \
             NULL::bytea \
         FROM cas c LEFT JOIN locked l ON l.ca_id = c.ca_id \
         UNION ALL \
         SELECT l.ca_id, l.n + 1, l.seq + 1, l.hash, \
             sha256(l.hash || int8send(l.seq + 1) || x.payload), x.serial \
         FROM linked l JOIN numbered x ON x.ca_id = l.ca_id AND x.n = l.n + 1 \
     ), records AS ( \
         INSERT INTO ledger_chain (ca_id, seq, kind, serial, prev_hash, hash) \
         SELECT ca_id, seq, 'issued', serial, prev_hash, hash FROM linked WHERE n > 0 \
     ), moved AS ( \
         INSERT INTO ledger_heads (ca_id, seq, hash) \
         SELECT DISTINCT ON (ca_id) ca_id, seq, hash FROM linked ORDER BY ca_id, n DESC \
         ON CONFLICT (ca_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash \
         RETURNING ca_id \
     ), hourly AS ( \
         INSERT INTO certificate_counts (bucket, ca_id, station, country, expires_bucket, \
             issued, superseded, revoked) \
         SELECT hour, ca_id, station, COALESCE(country, ''), expires_hour, count(*), 0, 0 \
         FROM recorded WHERE (SELECT count(*) FROM moved) > 0 \
         GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 \
         ON CONFLICT (bucket, ca_id, station, country, expires_bucket) \
         DO UPDATE SET issued = certificate_counts.issued + excluded.issued \
         RETURNING 1 \
     ), daily AS ( \
         INSERT INTO certificate_counts_daily (bucket, ca_id, station, country, expires_bucket, \
             issued, superseded, revoked) \
         SELECT day, ca_id, station, COALESCE(country, ''), expires_day, count(*), 0, 0 \
         FROM recorded WHERE (SELECT count(*) FROM hourly) > 0 \
         GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 \
         ON CONFLICT (bucket, ca_id, station, country, expires_bucket) \
         DO UPDATE SET issued = certificate_counts_daily.issued + excluded.issued \
     ) \
     SELECT serial, true FROM inserted \
     UNION ALL \
     SELECT serial, false FROM keyed";

/// Records `rows` (a batch from [`super::assemble`]) in one statement and returns the outcome of
/// each, in order. A database error means nothing was recorded: some are expected (see the
/// module), and the caller then records the batch in a transaction.
pub(super) async fn write(
    conn: &mut sqlx::PgConnection,
    rows: &[&NewIssuance],
) -> Result<Vec<RecordOutcome>, sqlx::Error> {
    let columns = super::Columns::of(rows.iter().copied());
    let n = rows.len();
    let mut csr_sha256 = Vec::with_capacity(n);
    let mut payload = Vec::with_capacity(n);
    let mut hour = Vec::with_capacity(n);
    let mut expires_hour = Vec::with_capacity(n);
    let mut day = Vec::with_capacity(n);
    let mut expires_day = Vec::with_capacity(n);
    for row in rows {
        let expires = Timestamp::new(row.certificate.not_after);
        csr_sha256.push(row.idempotency.as_ref().map(|(_, sha)| sha.as_str()));
        payload.push(row.chain_payload());
        hour.push(row.issued_at.hour_start().get());
        expires_hour.push(expires.hour_start().get());
        day.push(row.issued_at.day_start().get());
        expires_day.push(expires.day_start().get());
    }
    let Some(earliest) = columns.earliest else {
        return Ok(Vec::new());
    };
    // Every row of a batch has the same policy (see `assemble`). Under "reject" an existing
    // claim is replaced only when its certificate has expired, as of the batch's earliest
    // issuance time; under "allow" the newest certificate always takes it.
    let reject = rows[0].reject_duplicate_thing;
    // (serial, true) for each recorded row, (serial, false) for each Idempotency-Key that landed.
    let returned: Vec<(HexText, bool)> = columns
        .bind(sqlx::query_as(SQL))
        .bind(&csr_sha256)
        .bind(&payload)
        .bind(&hour)
        .bind(&expires_hour)
        .bind(&day)
        .bind(&expires_day)
        .bind(reject)
        .bind(earliest)
        .bind(&super::super::chain::GENESIS[..])
        .fetch_all(conn)
        .await?;
    let mut recorded = HashSet::new();
    let mut keys_landed = HashSet::new();
    for (serial, is_certificate) in &returned {
        if *is_certificate {
            recorded.insert(serial.0.as_str());
        } else {
            keys_landed.insert(serial.0.as_str());
        }
    }
    Ok(rows
        .iter()
        .map(|row| {
            let serial = row.certificate.serial.as_str();
            if recorded.contains(serial) {
                RecordOutcome::Recorded
            } else if row.idempotency.is_some() && !keys_landed.contains(serial) {
                RecordOutcome::IdempotencyKeyTaken
            } else {
                RecordOutcome::ThingAlreadyProvisioned
            }
        })
        .collect())
}
