//! Group commit: the batching ledger writer for PostgreSQL.
//!
//! Each request hands its ledger row to a bounded queue and awaits its own outcome on a
//! oneshot channel. Writer tasks (`database.group_commit_writers`, one by default) take turns at
//! the queue: the one holding it waits for the first row, then takes whatever else is queued at
//! that instant, up to `database.group_commit_max_batch` rows, without waiting for more. At light
//! load a batch is therefore one row and nothing waits for company; under load rows pile up
//! while a batch commits, and the next batch takes them all. With several writers one collects
//! while another commits, but batches of one CA still wait for each other at its chain head
//! (the statement locks it), so a second writer mostly makes batches smaller.
//!
//! A batch is written by one statement ([`one_statement`]), which PostgreSQL commits on its own:
//! one round trip, on a connection the writer keeps from one batch to the next ([`connection`]:
//! taking a pooled connection and giving it back would add three pings). When that statement
//! refuses the batch (a keyed row lost its thing claim, or two writers created one CA's first
//! chain record at once; nothing of the batch is then kept), the batch is written by one
//! transaction of multi-row statements over `UNNEST`ed arrays and one COMMIT, which can also
//! give a key back ([`write_in_transaction`]):
//!
//! 1. `BEGIN; SET CONSTRAINTS ... DEFERRED` (one round trip; see migrations 0006 and 0029).
//! 2. Idempotency keys, when any row has one: `INSERT ... ON CONFLICT DO NOTHING RETURNING`
//!    names the rows whose key landed; the others get [`RecordOutcome::IdempotencyKeyTaken`].
//! 3. One statement: the thing claims of the remaining rows (`ON CONFLICT DO UPDATE ... WHERE`
//!    the old claim has expired, under `reject`), the release of the keys of rows whose claim
//!    failed, the certificates of the rows whose claim landed, and then the lock of the hash
//!    chain head of each CA that recorded a certificate, returning the head. Rows without a
//!    claim get [`RecordOutcome::ThingAlreadyProvisioned`]; no certificate row of theirs is
//!    ever written.
//! 4. One statement: the recorded rows' records in their CAs' hash chains ([`super::chain`]),
//!    linked in batch order from the heads step 3 locked, and the heads moved.
//! 5. The stats counters ([`super::certificate_counts`]).
//! 6. COMMIT, then every request is answered with its own outcome.
//!
//! Steps 3 and 4 have fixed texts, so each is parsed and planned once per connection (sqlx
//! keeps them prepared); they were four statements, one of them a multi-row `VALUES` whose text
//! changed with the batch size.
//!
//! Per-row outcomes are exactly those of recording the rows one after another, as
//! [`Store::record_issuance`](super::Store::record_issuance) does: two rows of one batch never
//! share a thing name or a (station, Idempotency-Key), because the later one is deferred to
//! the writer's next batch, which starts after this one committed. Rows of concurrent batches
//! (other writers, other replicas) are arbitrated by the unique indexes, as before. Every batch
//! takes its row locks in one global order (keys by (station, key), then claims by thing name),
//! so two writers cannot deadlock on each other; a deadlock with some other transaction is
//! retried. A batch that fails answers every member with the store error (503
//! `store_unavailable`) and, being one transaction, records none of them.
//!
//! A request that goes away (timeout, client gone) after queueing its row may still have it
//! committed: the certificate was signed and is recorded, it is only not delivered.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, PgConnection, PgPool};
use time::OffsetDateTime;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{HexArg, HexText, NewIssuance, RecordOutcome, StoreError, StoreResult};

mod connection;
mod one_statement;

use connection::WriterConnection;

/// How the writer batches (`database.group_commit_*`).
#[derive(Debug, Clone, Copy)]
pub struct GroupCommitConfig {
    /// Most rows per transaction.
    pub max_batch: usize,
    /// Writer tasks, each holding one pooled connection while batches follow each other
    /// (see [`connection`]).
    pub writers: usize,
}

/// A deadlock with a transaction outside the writer (PostgreSQL picks a victim) is retried this
/// many times in all.
const ATTEMPTS: usize = 3;

/// One queued row and where its outcome goes.
struct Job {
    row: NewIssuance,
    reply: oneshot::Sender<StoreResult<RecordOutcome>>,
}

/// The handle requests use. Cheap to clone; the writer tasks stop once every handle is gone.
#[derive(Clone)]
pub struct LedgerWriter {
    queue: mpsc::Sender<Job>,
    stats: Arc<Stats>,
}

/// Batches written and rows they carried, since the writer started.
#[derive(Default)]
struct Stats {
    batches: AtomicU64,
    rows: AtomicU64,
    /// Batches the one statement refused and a transaction wrote.
    in_transaction: AtomicU64,
}

impl LedgerWriter {
    /// Starts the writer tasks on the current tokio runtime.
    pub fn spawn(pool: PgPool, config: GroupCommitConfig) -> LedgerWriter {
        let max_batch = config.max_batch.max(1);
        let writers = config.writers.max(1);
        // Room for one full batch per writer: beyond that, senders wait (backpressure) rather
        // than growing memory; `server.max_concurrent_requests` bounds the waiters.
        let (queue, jobs) = mpsc::channel(max_batch * writers);
        let jobs = Arc::new(Mutex::new(jobs));
        let stats = Arc::new(Stats::default());
        // Writers hold their connections between batches only if that leaves one for the rest.
        let keep = writers < pool.options().get_max_connections() as usize;
        for _ in 0..writers {
            tokio::spawn(run_writer(
                WriterConnection::new(pool.clone(), keep),
                jobs.clone(),
                max_batch,
                stats.clone(),
            ));
        }
        LedgerWriter { queue, stats }
    }

    /// `(batches, rows)` written so far, failed ones included: rows / batches is the mean batch
    /// size, so `batches < rows` means fewer commits than certificates.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.stats.batches.load(Ordering::Relaxed),
            self.stats.rows.load(Ordering::Relaxed),
        )
    }

    /// Batches that one statement refused and a transaction then wrote (see the module): a
    /// keyed row lost its thing claim, or a CA's first record raced another writer.
    pub fn batches_in_transaction(&self) -> u64 {
        self.stats.in_transaction.load(Ordering::Relaxed)
    }

    /// Queues one row and returns its outcome once its batch has committed (or failed).
    pub async fn record(&self, row: NewIssuance) -> StoreResult<RecordOutcome> {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Job { row, reply })
            .await
            .map_err(|_| writer_gone())?;
        outcome.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> StoreError {
    StoreError(sqlx::Error::WorkerCrashed)
}

async fn run_writer(
    mut connection: WriterConnection,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
    stats: Arc<Stats>,
) {
    let mut carried: Vec<Job> = Vec::new();
    loop {
        let batch = if carried.is_empty() {
            let next = async {
                let mut queue = jobs.lock().await;
                next_batch(&mut queue, max_batch).await
            };
            match connection.wait_for(next).await {
                Some(batch) => batch,
                None => return, // every sender is gone: the service is shutting down
            }
        } else {
            // Rows deferred from our last batch go first. Top up from the queue only if no
            // other writer is waiting on it: never wait here, or an idle queue would hold
            // the deferred rows back until some new request arrived.
            let carried = std::mem::take(&mut carried);
            match jobs.try_lock() {
                Ok(mut queue) => assemble(carried, max_batch, || queue.try_recv().ok()),
                Err(_) => assemble(carried, max_batch, || None),
            }
        };
        carried = batch.deferred;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .rows
            .fetch_add(batch.rows.len() as u64, Ordering::Relaxed);
        write_and_answer(&mut connection, batch.rows, &stats).await;
    }
}

/// Waits for the first queued row, then takes what else is queued right now (no waiting).
/// `None` when the queue is closed and empty.
async fn next_batch(queue: &mut mpsc::Receiver<Job>, max_batch: usize) -> Option<Batch> {
    let first = queue.recv().await?;
    Some(assemble(vec![first], max_batch, || queue.try_recv().ok()))
}

/// Rows that may share one transaction, and rows that must wait for the next one.
struct Batch {
    rows: Vec<Job>,
    deferred: Vec<Job>,
}

/// Builds a batch from `first` (in order) and then from `more` until `max_batch` rows are
/// held or `more` has nothing. Synchronous: it never waits for rows that are not there yet.
///
/// A row that shares a thing name or a (station, Idempotency-Key) with an earlier row of the
/// batch, or asks for the other duplicate-thing policy, is deferred: recorded after this batch
/// commits, it sees the earlier row's outcome exactly as it would without batching.
fn assemble(first: Vec<Job>, max_batch: usize, mut more: impl FnMut() -> Option<Job>) -> Batch {
    let mut batch = Batch {
        rows: Vec::new(),
        deferred: Vec::new(),
    };
    let mut things: HashSet<String> = HashSet::new();
    let mut keys: HashSet<(String, String)> = HashSet::new();
    let mut reject: Option<bool> = None;
    let mut offer = |job: Job, batch: &mut Batch| {
        let row = &job.row;
        let key = row
            .idempotency
            .as_ref()
            .map(|(key, _)| (row.station.clone(), key.clone()));
        let conflicts = things.contains(&row.certificate.thing_name)
            || key.as_ref().is_some_and(|k| keys.contains(k))
            || reject.is_some_and(|r| r != row.reject_duplicate_thing);
        if conflicts {
            batch.deferred.push(job);
        } else {
            things.insert(row.certificate.thing_name.clone());
            keys.extend(key);
            reject = Some(row.reject_duplicate_thing);
            batch.rows.push(job);
        }
    };
    let mut first = first.into_iter();
    while batch.rows.len() + batch.deferred.len() < max_batch {
        match first.next().or_else(&mut more) {
            Some(job) => offer(job, &mut batch),
            None => break,
        }
    }
    // Carried rows beyond `max_batch` (only possible if max_batch shrank) stay deferred.
    batch.deferred.extend(first);
    batch
}

async fn write_and_answer(connection: &mut WriterConnection, jobs: Vec<Job>, stats: &Stats) {
    if jobs.is_empty() {
        return;
    }
    let rows: Vec<&NewIssuance> = jobs.iter().map(|job| &job.row).collect();
    let mut attempt = 1;
    let result = loop {
        let result = match connection.get().await {
            Ok(conn) => write_batch(conn, &rows, stats).await,
            Err(e) => Err(e),
        };
        connection.done(&result);
        match result {
            Err(e) if is_deadlock(&e) && attempt < ATTEMPTS => attempt += 1,
            result => break result,
        }
    };
    match result {
        Ok(outcomes) => {
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                // A requester that went away finds its row committed all the same.
                let _ = job.reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            // Logged once per request by the HTTP layer, which answers 503 store_unavailable.
            let message = format!("the group commit of {} ledger rows failed: {e}", jobs.len());
            for job in jobs {
                let error = sqlx::Error::Io(std::io::Error::other(message.clone()));
                let _ = job.reply.send(Err(StoreError(error)));
            }
        }
    }
}

fn is_deadlock(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"))
}

/// Records one batch of independent rows (see [`assemble`]) and returns the outcome of each, in
/// order: in one statement, or in a transaction when the statement refuses the batch.
async fn write_batch(
    conn: &mut PgConnection,
    rows: &[&NewIssuance],
    stats: &Stats,
) -> Result<Vec<RecordOutcome>, sqlx::Error> {
    match one_statement::write(conn, rows).await {
        // The database refused the statement as a whole (a constraint, a deadlock): nothing of
        // it was kept. Other errors (the connection, the server going away) are the store's and
        // are answered as such; the connection is not tried again.
        Err(e) if connection::refused_by_database(&e) => {
            tracing::debug!(
                code = e
                    .as_database_error()
                    .and_then(|db| db.code())
                    .as_deref()
                    .unwrap_or(""),
                rows = rows.len(),
                "the one-statement batch was refused; writing it in a transaction"
            );
            stats.in_transaction.fetch_add(1, Ordering::Relaxed);
            write_in_transaction(conn, rows).await
        }
        result => result,
    }
}

/// Records one batch of independent rows in one transaction and returns the outcome of each,
/// in order.
async fn write_in_transaction(
    conn: &mut PgConnection,
    rows: &[&NewIssuance],
) -> Result<Vec<RecordOutcome>, sqlx::Error> {
    let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; rows.len()];
    // The keys of a batch reference certificates inserted later in the same transaction; their
    // foreign key is checked at COMMIT (migration 0006; thing claims have none since 0029).
    let mut tx = conn
        .begin_with("BEGIN; SET CONSTRAINTS idempotency_keys_serial_fkey DEFERRED")
        .await?;

    // 2. Idempotency keys first: of concurrent requests with one key, the losers must see the
    // key taken (and replay the winner), not the thing name taken.
    let keyed: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].idempotency.is_some())
        .collect();
    if !keyed.is_empty() {
        let mut stations = Vec::with_capacity(keyed.len());
        let mut keys = Vec::with_capacity(keyed.len());
        let mut csr_hashes = Vec::with_capacity(keyed.len());
        let mut serials = Vec::with_capacity(keyed.len());
        let mut created = Vec::with_capacity(keyed.len());
        for &i in &keyed {
            let row = rows[i];
            let (key, csr_sha256) = row.idempotency.as_ref().expect("keyed rows have a key");
            stations.push(row.station.as_str());
            keys.push(key.as_str());
            csr_hashes.push(csr_sha256.as_str());
            serials.push(HexArg(&row.certificate.serial));
            created.push(row.issued_at.get());
        }
        let landed: Vec<HexText> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys (station, idempotency_key, csr_sha256, serial, \
             created_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[], \
             $5::timestamptz[]) AS k (station, idempotency_key, csr_sha256, serial, created_at) \
             ORDER BY station, idempotency_key \
             ON CONFLICT (station, idempotency_key) DO NOTHING \
             RETURNING serial",
        )
        .bind(&stations)
        .bind(&keys)
        .bind(&csr_hashes)
        .bind(&serials)
        .bind(&created)
        .fetch_all(&mut *tx)
        .await?;
        let landed: HashSet<&str> = landed.iter().map(|serial| serial.0.as_str()).collect();
        for &i in &keyed {
            if !landed.contains(rows[i].certificate.serial.as_str()) {
                outcomes[i] = Some(RecordOutcome::IdempotencyKeyTaken);
            }
        }
    }

    // 3. Claims, released keys and certificates of the rows still in the running, and the
    // heads of the chains the recorded ones join.
    let alive: Vec<usize> = (0..rows.len()).filter(|&i| outcomes[i].is_none()).collect();
    let mut heads = BTreeMap::new();
    if !alive.is_empty() {
        let recorded;
        (recorded, heads) = insert_claims_and_certificates(&mut tx, rows, &alive).await?;
        for &i in &alive {
            outcomes[i] = Some(if recorded.contains(rows[i].certificate.serial.as_str()) {
                RecordOutcome::Recorded
            } else {
                RecordOutcome::ThingAlreadyProvisioned
            });
        }
    }

    // 4. The recorded rows join their CAs' hash chains in batch order.
    let mut chains: BTreeMap<&str, Vec<super::chain::Event>> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        if outcomes[i] == Some(RecordOutcome::Recorded) {
            chains
                .entry(row.ca_id.as_str())
                .or_default()
                .push(row.chain_event());
        }
    }
    if !chains.is_empty() {
        append_to_chains(&mut tx, &chains, heads).await?;
    }

    // 5. The stats counters: one upsert for the batch (its rows share an hour and mostly their
    // CA, station and country).
    let mut counts = super::certificate_counts::CountChanges::default();
    for (i, row) in rows.iter().enumerate() {
        if outcomes[i] == Some(RecordOutcome::Recorded) {
            counts.issued(&row.counted());
        }
    }
    add_counts!(tx, &counts)?;

    // 6. Nothing is answered before this returns.
    tx.commit().await?;
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every row has an outcome"))
        .collect())
}

/// The ledger columns of a batch's rows, one array per column in row order: what both ways of
/// writing a batch unnest, bound as `$1` to `$16` in this order.
struct Columns<'a> {
    serial: Vec<HexArg<'a>>,
    ca_id: Vec<&'a str>,
    thing_name: Vec<&'a str>,
    country: Vec<Option<&'a str>>,
    subject: Vec<&'a str>,
    key_algorithm: Vec<String>,
    spki_sha256: Vec<HexArg<'a>>,
    aws_certificate_id: Vec<HexArg<'a>>,
    certificate_der: Vec<&'a [u8]>,
    not_before: Vec<OffsetDateTime>,
    not_after: Vec<OffsetDateTime>,
    issued_at: Vec<OffsetDateTime>,
    station: Vec<&'a str>,
    request_id: Vec<Option<&'a str>>,
    idempotency_key: Vec<Option<&'a str>>,
    channel: Vec<&'static str>,
    /// The earliest `issued_at` (`None` for no rows).
    earliest: Option<OffsetDateTime>,
}

type PgQueryAs<'q, O> = sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>;

impl<'a> Columns<'a> {
    fn of(rows: impl ExactSizeIterator<Item = &'a NewIssuance>) -> Columns<'a> {
        let n = rows.len();
        let mut c = Columns {
            serial: Vec::with_capacity(n),
            ca_id: Vec::with_capacity(n),
            thing_name: Vec::with_capacity(n),
            country: Vec::with_capacity(n),
            subject: Vec::with_capacity(n),
            key_algorithm: Vec::with_capacity(n),
            spki_sha256: Vec::with_capacity(n),
            aws_certificate_id: Vec::with_capacity(n),
            certificate_der: Vec::with_capacity(n),
            not_before: Vec::with_capacity(n),
            not_after: Vec::with_capacity(n),
            issued_at: Vec::with_capacity(n),
            station: Vec::with_capacity(n),
            request_id: Vec::with_capacity(n),
            idempotency_key: Vec::with_capacity(n),
            channel: Vec::with_capacity(n),
            earliest: None,
        };
        for row in rows {
            let cert = &row.certificate;
            c.serial.push(HexArg(&cert.serial));
            c.ca_id.push(row.ca_id.as_str());
            c.thing_name.push(cert.thing_name.as_str());
            c.country.push(cert.country.as_deref());
            c.subject.push(cert.subject.as_str());
            c.key_algorithm.push(cert.key_algorithm.name());
            c.spki_sha256.push(HexArg(&cert.spki_sha256));
            c.aws_certificate_id.push(HexArg(&cert.aws_certificate_id));
            c.certificate_der.push(cert.certificate_der.as_slice());
            c.not_before
                .push(super::Timestamp::new(cert.not_before).get());
            c.not_after
                .push(super::Timestamp::new(cert.not_after).get());
            c.issued_at.push(row.issued_at.get());
            c.station.push(row.station.as_str());
            c.request_id.push(row.request_id.as_deref());
            c.idempotency_key
                .push(row.idempotency.as_ref().map(|(key, _)| key.as_str()));
            c.channel.push(super::TextValue::name(row.channel));
            let at = row.issued_at.get();
            c.earliest = Some(c.earliest.map_or(at, |t| t.min(at)));
        }
        c
    }

    /// Binds the sixteen arrays as `$1` to `$16`.
    fn bind<'q, O>(&'q self, query: PgQueryAs<'q, O>) -> PgQueryAs<'q, O> {
        query
            .bind(&self.serial)
            .bind(&self.ca_id)
            .bind(&self.thing_name)
            .bind(&self.country)
            .bind(&self.subject)
            .bind(&self.key_algorithm)
            .bind(&self.spki_sha256)
            .bind(&self.aws_certificate_id)
            .bind(&self.certificate_der)
            .bind(&self.not_before)
            .bind(&self.not_after)
            .bind(&self.issued_at)
            .bind(&self.station)
            .bind(&self.request_id)
            .bind(&self.idempotency_key)
            .bind(&self.channel)
    }
}

/// The `(seq, hash)` of each CA's chain head, by CA id, as locked by this transaction.
type Heads = BTreeMap<String, (i64, Vec<u8>)>;

/// One statement for the rows `alive`: claim each thing name, release the Idempotency-Keys of
/// rows whose claim failed (inserted by the previous statement), insert the certificates of
/// the rows whose claim landed, and lock (creating when missing) the chain head of each CA
/// they belong to. Returns the serials of those certificates and the heads.
async fn insert_claims_and_certificates(
    tx: &mut sqlx::PgConnection,
    rows: &[&NewIssuance],
    alive: &[usize],
) -> Result<(HashSet<String>, Heads), sqlx::Error> {
    let columns = Columns::of(alive.iter().map(|&i| rows[i]));
    // Every row of a batch has the same policy (see `assemble`).
    let reject = rows[alive[0]].reject_duplicate_thing;
    // Under "reject" an existing claim is replaced only when its certificate has expired, as
    // of the batch's earliest issuance time (the rows' times differ by the queueing delay);
    // revocation deletes claims. Under "allow" the newest certificate always takes it.
    // The heads are locked after every claim and certificate row: `head` reads `inserted`
    // through a sort (DISTINCT .. ORDER BY), which runs `inserted`, and through it `claimed`,
    // to completion first. The head comes last, as in the single-row path
    // (`Store::record_issuance`) and as before; CAs in id order.
    // A recorded serial, or a head: (serial, ca_id, seq, hash).
    type Returned = (
        Option<HexText>,
        Option<String>,
        Option<i64>,
        Option<Vec<u8>>,
    );
    let returned: Vec<Returned> = columns
        .bind(sqlx::query_as(
            "WITH input AS ( \
                 SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[], \
                     $5::text[], $6::text[], $7::bytea[], $8::bytea[], $9::bytea[], \
                     $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::text[], \
                     $14::text[], $15::text[], $16::text[]) \
                 AS i (serial, ca_id, thing_name, country, subject, key_algorithm, spki_sha256, \
                     aws_certificate_id, certificate_der, not_before, not_after, issued_at, \
                     station, request_id, idempotency_key, channel) \
             ), claimed AS ( \
                 INSERT INTO thing_claims (thing_name, serial, not_after) \
                 SELECT thing_name, serial, not_after FROM input ORDER BY thing_name \
                 ON CONFLICT (thing_name) DO UPDATE SET serial = excluded.serial, \
                     not_after = excluded.not_after \
                 WHERE NOT $17 OR thing_claims.not_after <= $18 \
                 RETURNING serial \
             ), released AS ( \
                 DELETE FROM idempotency_keys k USING input i \
                 WHERE k.station = i.station AND k.idempotency_key = i.idempotency_key \
                     AND i.serial NOT IN (SELECT serial FROM claimed) \
             ), inserted AS ( \
                 INSERT INTO issued_certificates (serial, ca_id, thing_name, country, subject, \
                     key_algorithm, spki_sha256, aws_certificate_id, certificate_der, \
                     not_before, not_after, issued_at, station, request_id, channel) \
                 SELECT serial, ca_id, thing_name, country, subject, key_algorithm, \
                     spki_sha256, aws_certificate_id, certificate_der, not_before, not_after, \
                     issued_at, station, request_id, channel \
                 FROM input WHERE serial IN (SELECT serial FROM claimed) \
                 RETURNING serial, ca_id \
             ), head AS ( \
                 INSERT INTO ledger_heads (ca_id, seq, hash) \
                 SELECT DISTINCT ca_id, 0::bigint, $19::bytea FROM inserted ORDER BY ca_id \
                 ON CONFLICT (ca_id) DO UPDATE SET seq = ledger_heads.seq \
                 RETURNING ca_id, seq, hash \
             ) \
             SELECT serial, NULL::text, NULL::bigint, NULL::bytea FROM inserted \
             UNION ALL \
             SELECT NULL::bytea, ca_id, seq, hash FROM head",
        ))
        .bind(reject)
        .bind(columns.earliest.expect("alive is not empty"))
        .bind(&super::chain::GENESIS[..])
        .fetch_all(&mut *tx)
        .await?;
    let mut recorded = HashSet::with_capacity(returned.len());
    let mut heads = Heads::new();
    for (serial, ca_id, seq, hash) in returned {
        match (serial, ca_id, seq, hash) {
            (Some(serial), None, None, None) => {
                recorded.insert(serial.0);
            }
            (None, Some(ca_id), Some(seq), Some(hash)) => {
                heads.insert(ca_id, (seq, hash));
            }
            _ => {
                return Err(sqlx::Error::Protocol(
                    "the group commit statement returned a row of neither kind".into(),
                ));
            }
        }
    }
    Ok((recorded, heads))
}

/// One statement: appends `chains` (each CA's events, in batch order) to the hash chains whose
/// heads this transaction holds, and moves those heads.
async fn append_to_chains(
    tx: &mut sqlx::PgConnection,
    chains: &BTreeMap<&str, Vec<super::chain::Event>>,
    mut heads: Heads,
) -> Result<(), sqlx::Error> {
    let records: usize = chains.values().map(Vec::len).sum();
    let mut ca_id = Vec::with_capacity(records);
    let mut seq = Vec::with_capacity(records);
    let mut kind = Vec::with_capacity(records);
    let mut serial = Vec::with_capacity(records);
    let mut prev_hash = Vec::with_capacity(records);
    let mut hash = Vec::with_capacity(records);
    let mut head_ca_id = Vec::with_capacity(chains.len());
    let mut head_seq = Vec::with_capacity(chains.len());
    let mut head_hash = Vec::with_capacity(chains.len());
    for (&ca, events) in chains {
        let (seq0, hash0) = heads.remove(ca).ok_or_else(|| {
            sqlx::Error::Protocol(format!("no chain head was locked for CA {ca}"))
        })?;
        let (linked, last_seq, last_hash) = super::chain::link_all(seq0, hash0, events)?;
        for record in linked {
            ca_id.push(ca);
            seq.push(record.seq);
            kind.push(record.kind);
            serial.push(record.serial);
            prev_hash.push(record.prev_hash.to_vec());
            hash.push(record.hash.to_vec());
        }
        head_ca_id.push(ca);
        head_seq.push(last_seq);
        head_hash.push(last_hash.to_vec());
    }
    sqlx::query(
        "WITH records AS ( \
             INSERT INTO ledger_chain (ca_id, seq, kind, serial, prev_hash, hash) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bytea[], \
                 $5::bytea[], $6::bytea[]) \
         ) \
         UPDATE ledger_heads h SET seq = u.seq, hash = u.hash \
         FROM UNNEST($7::text[], $8::bigint[], $9::bytea[]) AS u (ca_id, seq, hash) \
         WHERE h.ca_id = u.ca_id",
    )
    .bind(&ca_id)
    .bind(&seq)
    .bind(&kind)
    .bind(serial.iter().map(|s| HexArg(s)).collect::<Vec<_>>())
    .bind(&prev_hash)
    .bind(&hash)
    .bind(&head_ca_id)
    .bind(&head_seq)
    .bind(&head_hash)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use time::OffsetDateTime;

    use super::*;
    use crate::ca::IssuedCertificate;
    use crate::store::Timestamp;

    fn job(thing: &str, key: Option<&str>) -> (Job, oneshot::Receiver<StoreResult<RecordOutcome>>) {
        let now = OffsetDateTime::now_utc();
        let (reply, outcome) = oneshot::channel();
        let row = NewIssuance {
            certificate: IssuedCertificate {
                serial: format!("{:040x}", rand::random::<u128>()),
                thing_name: thing.to_owned(),
                country: Some("JP".into()),
                subject: format!("CN={thing}"),
                key_algorithm: crate::ca::KeyAlgorithm::EcdsaP256,
                spki_sha256: "00".repeat(32),
                aws_certificate_id: "11".repeat(32),
                certificate_der: vec![0x30, 0x00],
                not_before: now,
                not_after: now + time::Duration::days(1),
            },
            ca_id: "ca-test".into(),
            station: "line-1".into(),
            request_id: None,
            channel: crate::store::Channel::Api,
            issued_at: Timestamp::new(now),
            idempotency: key.map(|k| (k.to_owned(), "22".repeat(32))),
            reject_duplicate_thing: true,
        };
        (Job { row, reply }, outcome)
    }

    fn things(jobs: &[Job]) -> Vec<&str> {
        jobs.iter()
            .map(|j| j.row.certificate.thing_name.as_str())
            .collect()
    }

    #[test]
    fn a_batch_takes_what_is_queued_and_no_more_than_the_maximum() {
        let mut queued: Vec<Job> = (0..5).map(|i| job(&format!("T-{i}"), None).0).collect();
        queued.reverse();
        let batch = assemble(Vec::new(), 3, || queued.pop());
        assert_eq!(things(&batch.rows), ["T-0", "T-1", "T-2"]);
        assert!(batch.deferred.is_empty());
        assert_eq!(queued.len(), 2, "the rest stays queued for the next batch");
    }

    #[test]
    fn rows_sharing_a_thing_name_or_a_key_wait_for_the_next_batch() {
        let mut queued = vec![
            job("T-1", Some("k1")).0,
            job("T-1", None).0,       // same thing name
            job("T-2", Some("k1")).0, // same station and key
            job("T-3", Some("k3")).0,
            job("T-1", Some("k9")).0, // same thing name again
        ];
        queued.reverse();
        let batch = assemble(Vec::new(), 16, || queued.pop());
        assert_eq!(things(&batch.rows), ["T-1", "T-3"]);
        assert_eq!(things(&batch.deferred), ["T-1", "T-2", "T-1"]);

        // The next batch starts with the deferred rows, in order, and defers again what still
        // conflicts among them.
        let next = assemble(batch.deferred, 16, || None);
        assert_eq!(things(&next.rows), ["T-1", "T-2"]);
        assert_eq!(things(&next.deferred), ["T-1"]);
        let last = assemble(next.deferred, 16, || None);
        assert_eq!(things(&last.rows), ["T-1"]);
        assert!(last.deferred.is_empty());
    }

    #[test]
    fn rows_of_the_other_duplicate_policy_wait_for_the_next_batch() {
        let (mut allow, _) = job("T-2", None);
        allow.row.reject_duplicate_thing = false;
        let mut queued = vec![job("T-1", None).0, allow];
        queued.reverse();
        let batch = assemble(Vec::new(), 16, || queued.pop());
        assert_eq!(things(&batch.rows), ["T-1"]);
        assert_eq!(things(&batch.deferred), ["T-2"]);
    }

    #[test]
    fn an_idle_writer_does_not_wait_for_company() {
        let (tx, mut rx) = mpsc::channel(8);
        // Nothing queued: the writer waits for the first row.
        assert!(next_batch(&mut rx, 8).now_or_never().is_none());
        // One row queued: the batch is ready at once, with that one row, although seven more
        // would fit.
        let (one, _outcome) = job("T-1", None);
        tx.try_send(one).ok().unwrap();
        let batch = next_batch(&mut rx, 8)
            .now_or_never()
            .expect("no waiting once a row is queued")
            .expect("the queue is open");
        assert_eq!(things(&batch.rows), ["T-1"]);
        // Three rows queued: all three go into one batch, again without waiting.
        for i in 2..5 {
            tx.try_send(job(&format!("T-{i}"), None).0).ok().unwrap();
        }
        let batch = next_batch(&mut rx, 8).now_or_never().unwrap().unwrap();
        assert_eq!(things(&batch.rows), ["T-2", "T-3", "T-4"]);
        // A closed, drained queue ends the writer.
        drop(tx);
        assert!(next_batch(&mut rx, 8).now_or_never().unwrap().is_none());
    }
}
