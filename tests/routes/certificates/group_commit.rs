//! Group commit: the batching ledger writer behind `POST /v1/certificates`.
//!
//! The writer is driven two ways: directly, on a single-threaded runtime where every row is
//! queued before the writer first runs, so that one batch provably holds them all (conflicts
//! inside one batch included); and over HTTP with many concurrent requests, where the whole
//! pipeline (replays, 409 codes) must give the same answers as without batching.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use factory_ca::ca::IssuedCertificate;
use factory_ca::store::ledger_writer::{GroupCommitConfig, LedgerWriter};
use factory_ca::store::{NewIssuance, RecordOutcome, Store, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

use crate::common::*;

fn pool(app: &TestApp) -> sqlx::PgPool {
    match &app.store {
        Store::Postgres(pool) => pool.clone(),
        Store::Sqlite(_) => panic!("group commit is for PostgreSQL"),
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// A ledger row as the issuance pipeline would hand it over (the DER is a placeholder: the
/// ledger stores it, it does not parse it).
fn row(ca_id: &str, thing: &str, key: Option<(&str, &str)>) -> NewIssuance {
    let now = OffsetDateTime::now_utc();
    NewIssuance {
        certificate: IssuedCertificate {
            serial: random_hex(20),
            thing_name: thing.to_owned(),
            country: Some("JP".into()),
            subject: format!("C=JP, CN={thing}"),
            key_algorithm: factory_ca::ca::KeyAlgorithm::EcdsaP256,
            spki_sha256: random_hex(32),
            aws_certificate_id: random_hex(32),
            certificate_der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
            not_before: now,
            not_after: now + time::Duration::days(365),
        },
        ca_id: ca_id.to_owned(),
        station: "station-1".into(), // the TestApp station token's name
        request_id: None,
        channel: factory_ca::store::Channel::Api,
        issued_at: Timestamp::new(now),
        idempotency: key.map(|(key, csr_sha256)| (key.to_owned(), csr_sha256.to_owned())),
        reject_duplicate_thing: true,
    }
}

/// A writer of its own on the app's database: batches of up to 64 rows, `writers` tasks.
fn spawn_writer(app: &TestApp, writers: usize) -> LedgerWriter {
    writer_on(pool(app), writers)
}

/// A writer of its own on `pool`: batches of up to 64 rows, `writers` tasks.
fn writer_on(pool: sqlx::PgPool, writers: usize) -> LedgerWriter {
    LedgerWriter::spawn(
        pool,
        GroupCommitConfig {
            max_batch: 64,
            writers,
        },
    )
}

async fn issuing_ca_id(app: &TestApp) -> String {
    app.store
        .issuing_ca()
        .await
        .unwrap()
        .expect("an issuing CA")
        .id
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool(app)).await.unwrap();
    n
}

/// Records all `rows` at once and returns their outcomes in order.
/// The Idempotency-Keys the store holds.
async fn idempotency_keys(app: &TestApp) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>("SELECT idempotency_key FROM idempotency_keys")
        .fetch_all(&pool(app))
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn record_all(
    writer: &LedgerWriter,
    rows: Vec<NewIssuance>,
) -> Vec<Result<RecordOutcome, String>> {
    let records = rows.into_iter().map(|row| {
        let writer = writer.clone();
        async move { writer.record(row).await.map_err(|e| e.to_string()) }
    });
    tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(records))
        .await
        .expect("the writer answers within a minute")
}

/// A thing that already has an active certificate (`Held-0`), and a key already used
/// (`key-held`, for `Keyed-held`).
async fn hold_a_thing_and_a_key(app: &TestApp) {
    let held = app.sign(&csr("Held-0", "JP").pem).await;
    assert_eq!(held.status(), StatusCode::CREATED);
    let keyed = json(
        app.sign_as(&app.station, &csr("Keyed-held", "JP").pem, Some("key-held"))
            .await,
    )
    .await;
    assert!(keyed["serial"].is_string(), "{keyed}");
}

// On a current-thread runtime the writer task cannot run before `join_all` has queued every
// row, so the first batch takes all of them (up to max_batch): conflicts inside one batch are
// certain, not a matter of luck.
#[tokio::test(flavor = "current_thread")]
async fn one_batch_records_exactly_the_rows_that_win_their_thing_name_and_key() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let ca_id = issuing_ca_id(&app).await;
    hold_a_thing_and_a_key(&app).await;
    let rows_before = app.ledger_count().await;

    let writer = spawn_writer(&app, 2);
    let sha = random_hex(32);
    let mut rows = Vec::new();
    let mut expected = Vec::new();
    for i in 0..10 {
        rows.push(row(&ca_id, &format!("Fresh-{i}"), None));
        expected.push(RecordOutcome::Recorded);
    }
    // Three requests for one thing name in one batch: the first wins.
    for _ in 0..3 {
        rows.push(row(&ca_id, "Twin-0", None));
    }
    expected.extend([
        RecordOutcome::Recorded,
        RecordOutcome::ThingAlreadyProvisioned,
        RecordOutcome::ThingAlreadyProvisioned,
    ]);
    // Two requests with one Idempotency-Key: the first wins, the second finds it taken.
    rows.push(row(&ca_id, "Keyed-0", Some(("key-0", &sha))));
    rows.push(row(&ca_id, "Keyed-0", Some(("key-0", &sha))));
    expected.extend([RecordOutcome::Recorded, RecordOutcome::IdempotencyKeyTaken]);
    // A key whose row loses its thing claim: the key must not stay behind, so that a later
    // request with the same key can still be recorded.
    rows.push(row(&ca_id, "Held-0", Some(("key-1", &sha))));
    expected.push(RecordOutcome::ThingAlreadyProvisioned);
    // A key already committed before the batch.
    rows.push(row(&ca_id, "Keyed-other", Some(("key-held", &sha))));
    expected.push(RecordOutcome::IdempotencyKeyTaken);

    let serials: Vec<String> = rows.iter().map(|r| r.certificate.serial.clone()).collect();
    let outcomes = record_all(&writer, rows).await;
    let outcomes: Vec<RecordOutcome> = outcomes.into_iter().map(|o| o.unwrap()).collect();
    assert_eq!(outcomes, expected);

    let (batches, rows_written) = writer.stats();
    assert_eq!(rows_written, expected.len() as u64);
    assert!(
        batches < rows_written,
        "fewer commits than rows: {batches} batches for {rows_written} rows"
    );
    // Only the batch holding key-1 needed a transaction: one statement cannot give a key back.
    assert_eq!(writer.batches_in_transaction(), 1);

    // The ledger holds exactly the winners, each with its claim; the losers left nothing.
    let recorded: BTreeSet<String> = serials
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| **o == RecordOutcome::Recorded)
        .map(|(s, _)| s.clone())
        .collect();
    assert_eq!(recorded.len(), 12);
    assert_eq!(app.ledger_count().await, rows_before + 12);
    for serial in &serials {
        let in_ledger = app.store.get_certificate(serial).await.unwrap().is_some();
        assert_eq!(in_ledger, recorded.contains(serial), "{serial}");
    }
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM thing_claims c JOIN issued_certificates i USING (serial)"
        )
        .await,
        count(&app, "SELECT COUNT(*) FROM issued_certificates").await,
        "one claim per certificate (no duplicate thing names were allowed)"
    );
    let keys = idempotency_keys(&app).await;
    assert_eq!(
        keys,
        BTreeSet::from(["key-0".to_owned(), "key-held".to_owned()]),
        "key-1 was released with its row"
    );

    // The released key works for the next request.
    let again = record_all(&writer, vec![row(&ca_id, "Keyed-1", Some(("key-1", &sha)))]).await;
    assert_eq!(again, vec![Ok(RecordOutcome::Recorded)]);
    assert_eq!(writer.batches_in_transaction(), 1);

    let verified = app.verify_ledger().await;
    assert!(
        verified.iter().all(|v| v.mismatch.is_none()),
        "{verified:?}"
    );
}

/// `(ca_id, seq, serial)` of every chain record, in chain order.
async fn chain_records(app: &TestApp) -> Vec<(String, i64, String)> {
    sqlx::query_as("SELECT ca_id, seq, encode(serial, 'hex') FROM ledger_chain ORDER BY ca_id, seq")
        .fetch_all(&pool(app))
        .await
        .unwrap()
}

// The usual batch is one statement: PostgreSQL numbers and hashes each CA's records itself.
// Two CAs, one of them without a chain yet, with their rows interleaved, plus the outcomes
// that one statement decides by itself (a thing name held, a key taken).
#[tokio::test(flavor = "current_thread")]
async fn one_statement_chains_each_cas_rows_in_batch_order_and_the_chains_verify() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let first = issuing_ca_id(&app).await;
    hold_a_thing_and_a_key(&app).await;
    let created = app
        .admin_json(
            Method::POST,
            "/v1/admin/cas",
            json!({"algorithm": "ecdsa-p256", "subject": {"common_name": "Second Line", "country": "JP"}, "validity_days": 365}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let second = json(created).await["id"].as_str().unwrap().to_owned();
    let before = chain_records(&app).await;
    assert!(before.iter().all(|(ca, _, _)| *ca == first), "{before:?}");
    assert!(
        sqlx::query_scalar::<_, i64>("SELECT seq FROM ledger_heads WHERE ca_id = $1")
            .bind(&second)
            .fetch_optional(&pool(&app))
            .await
            .unwrap()
            .is_none(),
        "the second CA has no chain yet"
    );

    let writer = spawn_writer(&app, 1);
    let sha = random_hex(32);
    let mut rows = Vec::new();
    let mut expected = Vec::new();
    for i in 0..10 {
        let ca = if i % 3 == 0 { &second } else { &first };
        rows.push(row(ca, &format!("Mixed-{i}"), None));
        expected.push(RecordOutcome::Recorded);
    }
    rows.push(row(&second, "Held-0", None));
    expected.push(RecordOutcome::ThingAlreadyProvisioned);
    rows.push(row(&first, "Keyed-other", Some(("key-held", &sha))));
    expected.push(RecordOutcome::IdempotencyKeyTaken);
    rows.push(row(&second, "Keyed-new", Some(("key-new", &sha))));
    expected.push(RecordOutcome::Recorded);
    let ledger_before = app.ledger_count().await;

    let outcomes: Vec<RecordOutcome> = record_all(&writer, rows.clone())
        .await
        .into_iter()
        .map(|o| o.unwrap())
        .collect();
    assert_eq!(outcomes, expected);
    assert_eq!(writer.stats(), (1, rows.len() as u64), "one batch");
    assert_eq!(
        writer.batches_in_transaction(),
        0,
        "written by one statement"
    );

    // Each CA's new records follow its head, numbered in batch order, and nothing else.
    let recorded = |ca: &str| -> Vec<String> {
        rows.iter()
            .zip(&outcomes)
            .filter(|(r, o)| r.ca_id == ca && **o == RecordOutcome::Recorded)
            .map(|(r, _)| r.certificate.serial.clone())
            .collect()
    };
    let after = chain_records(&app).await;
    let of = |ca: &str| -> Vec<(i64, String)> {
        after
            .iter()
            .filter(|(c, _, _)| c == ca)
            .map(|(_, seq, serial)| (*seq, serial.clone()))
            .collect()
    };
    let first_before = before.len() as i64;
    let first_expected: Vec<(i64, String)> = before
        .iter()
        .map(|(_, seq, serial)| (*seq, serial.clone()))
        .chain(
            recorded(&first)
                .into_iter()
                .enumerate()
                .map(|(i, s)| (first_before + 1 + i as i64, s)),
        )
        .collect();
    assert_eq!(of(&first), first_expected);
    let second_expected: Vec<(i64, String)> = recorded(&second)
        .into_iter()
        .enumerate()
        .map(|(i, s)| (1 + i as i64, s))
        .collect();
    assert_eq!(second_expected.len(), 5);
    assert_eq!(of(&second), second_expected);

    // The hashes PostgreSQL computed are the ones the verifier computes.
    let verified = app.verify_ledger().await;
    assert!(
        verified.iter().all(|v| v.mismatch.is_none()),
        "{verified:?}"
    );
    let verified_records: u64 = verified.iter().map(|v| v.verified).sum();
    assert_eq!(verified_records, after.len() as u64);
    assert_eq!(app.ledger_count().await, ledger_before + 11);

    // The counters of both levels count every certificate, each under its own CA.
    for table in ["certificate_counts", "certificate_counts_daily"] {
        let counted: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT ca_id, SUM(issued)::bigint FROM {table} GROUP BY ca_id ORDER BY ca_id"
        ))
        .fetch_all(&pool(&app))
        .await
        .unwrap();
        let in_ledger: Vec<(String, i64)> = sqlx::query_as(
            "SELECT ca_id, COUNT(*) FROM issued_certificates GROUP BY ca_id ORDER BY ca_id",
        )
        .fetch_all(&pool(&app))
        .await
        .unwrap();
        assert_eq!(counted, in_ledger, "{table}");
    }
    let keys = idempotency_keys(&app).await;
    assert_eq!(
        keys,
        BTreeSet::from(["key-held".to_owned(), "key-new".to_owned()])
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_batch_answers_every_member_with_the_store_error_and_records_none() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let ca_id = issuing_ca_id(&app).await;
    let before = app.ledger_count().await;
    let writer = spawn_writer(&app, 1);
    // One row names a CA the store does not have: the foreign key of its chain head (migration
    // 0029) fails the whole batch, in one statement and in the transaction.
    let mut rows: Vec<NewIssuance> = (0..6)
        .map(|i| row(&ca_id, &format!("Doomed-{i}"), None))
        .collect();
    rows.push(row("ca-0000000000000000", "Doomed-bad", None));
    let outcomes = record_all(&writer, rows).await;
    assert_eq!(outcomes.len(), 7);
    for outcome in &outcomes {
        let error = outcome.as_ref().expect_err("the whole batch failed");
        assert!(error.contains("group commit"), "{error}");
    }
    assert_eq!(writer.stats().0, 1, "all seven were one batch");
    assert_eq!(app.ledger_count().await, before, "nothing half-recorded");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM thing_claims").await,
        before
    );

    // The writer keeps working after a failed batch.
    let next = record_all(&writer, vec![row(&ca_id, "Doomed-0", None)]).await;
    assert_eq!(next, vec![Ok(RecordOutcome::Recorded)]);

    // A CA with a chain cannot be deleted from under its ledger rows.
    let deleted = sqlx::query("DELETE FROM certificate_authorities WHERE id = $1")
        .bind(&ca_id)
        .execute(&pool(&app))
        .await
        .expect_err("the chain head holds the CA");
    assert!(
        deleted.to_string().contains("ledger_heads_ca_id_fkey"),
        "{deleted}"
    );
}

/// Many concurrent signing requests over HTTP, with duplicate thing names and racing
/// Idempotency-Keys: every answer is the one a request would get without batching.
async fn concurrent_issuance_answers_exactly(group_commit: bool) {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.database.group_commit = group_commit;
        s.database.group_commit_max_batch = 32;
        s.server.station_rate_per_sec = 0.0;
    })
    .await;
    let client = app.client.clone();
    let url = app.url("/v1/certificates");
    let mut requests: Vec<(String, String, Option<String>)> = Vec::new();
    for i in 0..24 {
        requests.push((
            format!("Solo-{i}"),
            csr(&format!("Solo-{i}"), "JP").pem,
            None,
        ));
    }
    for t in 0..8 {
        for _ in 0..4 {
            let thing = format!("Twin-{t}");
            requests.push((thing.clone(), csr(&thing, "JP").pem, None));
        }
    }
    for k in 0..8 {
        // The same CSR three times with one key: one certificate, replayed to the others.
        let thing = format!("Keyed-{k}");
        let pem = csr(&thing, "JP").pem;
        for _ in 0..3 {
            requests.push((thing.clone(), pem.clone(), Some(format!("same-{k}"))));
        }
        // One key with two different CSRs: one certificate, the other request is refused.
        for variant in 0..2 {
            let thing = format!("Reused-{k}-{variant}");
            requests.push((
                thing.clone(),
                csr(&thing, "JP").pem,
                Some(format!("reused-{k}")),
            ));
        }
    }
    let total = requests.len();
    let sends = requests.into_iter().map(|(thing, pem, key)| {
        let client = client.clone();
        let url = url.clone();
        let token = app.station.clone();
        async move {
            let mut request = client
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({ "csr": pem }));
            if let Some(key) = &key {
                request = request.header("Idempotency-Key", key);
            }
            let response = tokio::time::timeout(Duration::from_secs(60), request.send())
                .await
                .expect("bounded")
                .expect("sent");
            let status = response.status();
            let replayed = response.headers().contains_key("idempotent-replayed");
            let body: serde_json::Value = response.json().await.unwrap();
            (thing, key, status, replayed, body)
        }
    });
    let results = futures::future::join_all(sends).await;
    assert_eq!(results.len(), total);

    let mut created: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut serials_per_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut fresh_per_key: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused_codes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sent_serials = BTreeSet::new();
    for (thing, key, status, replayed, body) in &results {
        if *status == StatusCode::CREATED {
            let serial = body["serial"].as_str().unwrap().to_owned();
            sent_serials.insert(serial.clone());
            if let Some(key) = key {
                serials_per_key
                    .entry(key.clone())
                    .or_default()
                    .insert(serial.clone());
                if !replayed {
                    *fresh_per_key.entry(key.clone()).or_default() += 1;
                }
            }
            if !replayed {
                created.entry(thing.clone()).or_default().push(serial);
            }
        } else {
            let code = body["code"].as_str().unwrap_or("?").to_owned();
            refused_codes
                .entry(key.clone().unwrap_or_else(|| thing.clone()))
                .or_default()
                .push(format!("{status} {code}"));
        }
    }
    for i in 0..24 {
        assert_eq!(created[&format!("Solo-{i}")].len(), 1);
    }
    for t in 0..8 {
        let thing = format!("Twin-{t}");
        assert_eq!(created[&thing].len(), 1, "{thing}: one certificate");
        assert_eq!(
            refused_codes[&thing],
            vec!["409 Conflict thing_already_provisioned".to_owned(); 3],
        );
    }
    for k in 0..8 {
        let same = format!("same-{k}");
        assert_eq!(
            serials_per_key[&same].len(),
            1,
            "{same}: one serial for all three"
        );
        assert_eq!(
            fresh_per_key[&same], 1,
            "{same}: issued once, replayed twice"
        );
        assert!(
            !refused_codes.contains_key(&same),
            "{same}: {refused_codes:?}"
        );
        let reused = format!("reused-{k}");
        assert_eq!(serials_per_key[&reused].len(), 1, "{reused}");
        assert_eq!(
            refused_codes[&reused],
            vec!["422 Unprocessable Entity idempotency_key_reused".to_owned()],
        );
    }

    // Every serial that was sent is in the ledger, and the ledger holds nothing else.
    let in_ledger: BTreeSet<String> =
        sqlx::query_scalar::<_, String>("SELECT encode(serial, 'hex') FROM issued_certificates")
            .fetch_all(&pool(&app))
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(in_ledger, sent_serials);
    assert_eq!(in_ledger.len(), 24 + 8 + 8 + 8);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM thing_claims").await, 48);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM idempotency_keys").await,
        16
    );

    // Every recorded certificate is one record of the CA's hash chain, numbered without gaps,
    // and the chain verifies; no refused request left a record.
    let verified = app.verify_ledger().await;
    let records: u64 = verified.iter().map(|v| v.verified).sum();
    assert!(
        verified.iter().all(|v| v.mismatch.is_none()),
        "{verified:?}"
    );
    assert_eq!(records, 48);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM ledger_chain").await, 48);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_issuance_with_group_commit_answers_each_request_exactly() {
    concurrent_issuance_answers_exactly(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_issuance_without_group_commit_answers_each_request_exactly() {
    concurrent_issuance_answers_exactly(false).await;
}

/// A pool of at most `max` connections on the app's database, for one writer of its own; its
/// connections are named `name` in `pg_stat_activity`.
async fn named_pool(app: &TestApp, name: &str, max: u32) -> sqlx::PgPool {
    let options = app
        .settings
        .database_url()
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .application_name(name);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max)
        .connect_with(options)
        .await
        .unwrap()
}

/// The backends of the connections named `name`.
async fn backends(app: &TestApp, name: &str) -> Vec<i32> {
    sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid")
        .bind(name)
        .fetch_all(&pool(app))
        .await
        .unwrap()
}

/// Ends the backends of the connections named `name`, as an administrator or a failover would.
async fn terminate(app: &TestApp, name: &str) {
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(name)
    .fetch_all(&pool(app))
    .await
    .unwrap();
    assert_eq!(ended, vec![true], "one backend of {name} ended");
}

// Taking a pooled connection for each batch and giving it back cost three pings (sqlx's before
// it hands a connection out, the store's and sqlx's when it comes back): a writer keeps one.
#[tokio::test(flavor = "current_thread")]
async fn a_writer_keeps_its_connection_between_batches_and_gives_it_back_when_the_pool_closes() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let ca_id = issuing_ca_id(&app).await;
    let pool = named_pool(&app, "writer-keeps", 3).await;
    let writer = writer_on(pool.clone(), 1);
    let mut backend = None;
    for i in 0..3 {
        let outcome = record_all(&writer, vec![row(&ca_id, &format!("Kept-{i}"), None)]).await;
        assert_eq!(outcome, vec![Ok(RecordOutcome::Recorded)]);
        // A connection given back would be idle in the pool by now.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(pool.num_idle(), 0, "the writer still holds its connection");
        let now = backends(&app, "writer-keeps").await;
        assert_eq!(now.len(), 1, "one connection wrote every batch");
        assert_eq!(*backend.get_or_insert(now[0]), now[0]);
    }

    // Closing the pool (as the service does when it stops) does not wait for the writer.
    tokio::time::timeout(Duration::from_secs(10), pool.close())
        .await
        .expect("the writer gave its connection back when the pool closed");
    let after = record_all(&writer, vec![row(&ca_id, "Kept-late", None)]).await;
    assert!(after[0].is_err(), "{after:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_writer_gives_its_connection_back_when_the_pool_has_no_other() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let ca_id = issuing_ca_id(&app).await;
    let pool = named_pool(&app, "writer-shares", 1).await;
    let writer = writer_on(pool.clone(), 1);
    let outcome = record_all(&writer, vec![row(&ca_id, "Shared-0", None)]).await;
    assert_eq!(outcome, vec![Ok(RecordOutcome::Recorded)]);
    // Given back after each batch, the pool's one connection serves other queries too.
    let (one,): (i32,) = tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::query_as("SELECT 1").fetch_one(&pool),
    )
    .await
    .expect("the writer does not hold the only connection")
    .unwrap();
    assert_eq!(one, 1);
    let outcome = record_all(&writer, vec![row(&ca_id, "Shared-1", None)]).await;
    assert_eq!(outcome, vec![Ok(RecordOutcome::Recorded)]);
}

/// An app and a writer of its own on a pool named `name`, after one batch; with the backend
/// that wrote it.
async fn writer_after_one_batch(name: &str) -> (TestApp, String, LedgerWriter, Vec<i32>) {
    let app = TestApp::spawn(Backend::Postgres).await;
    let ca_id = issuing_ca_id(&app).await;
    let writer = writer_on(named_pool(&app, name, 3).await, 1);
    let first = record_all(&writer, vec![row(&ca_id, &format!("{name}-0"), None)]).await;
    assert_eq!(first, vec![Ok(RecordOutcome::Recorded)]);
    let backend = backends(&app, name).await;
    (app, ca_id, writer, backend)
}

// A kept connection idle for a while is checked before its next batch, as the pool checks an
// idle connection: a server restart or a failover while the factory is quiet costs no batch.
#[tokio::test(flavor = "current_thread")]
async fn a_kept_connection_that_died_while_idle_is_replaced_before_the_next_batch() {
    let (app, ca_id, writer, old) = writer_after_one_batch("writer-idle").await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    terminate(&app, "writer-idle").await;
    let next = record_all(&writer, vec![row(&ca_id, "Idle-1", None)]).await;
    assert_eq!(next, vec![Ok(RecordOutcome::Recorded)]);
    let new = backends(&app, "writer-idle").await;
    assert_eq!(new.len(), 1);
    assert_ne!(new, old, "a new connection wrote the batch");
}

// A connection that breaks under a batch fails that batch (its requests are answered 503, as
// they were when the connection came from the pool) and is closed: the next batch takes a new one.
#[tokio::test(flavor = "current_thread")]
async fn a_batch_on_a_broken_connection_fails_alone_and_the_next_takes_a_new_one() {
    let (app, ca_id, writer, old) = writer_after_one_batch("writer-broken").await;
    let before = app.ledger_count().await;

    terminate(&app, "writer-broken").await;
    // Within the idle check's 100 ms the kept connection is used unchecked and the batch fails;
    // on a slow machine the check may come first and the batch is recorded. Either way no row
    // is half-recorded and no answer lies.
    let rows = vec![row(&ca_id, "Broken-1", None), row(&ca_id, "Broken-2", None)];
    let outcomes = record_all(&writer, rows).await;
    let recorded = outcomes.iter().filter(|o| o.is_ok()).count();
    assert!(recorded == 0 || recorded == 2, "one batch: {outcomes:?}");
    for outcome in &outcomes {
        if let Err(e) = outcome {
            assert!(e.contains("group commit"), "{e}");
        }
    }
    assert_eq!(app.ledger_count().await, before + recorded as i64);

    let next = record_all(&writer, vec![row(&ca_id, "Broken-3", None)]).await;
    assert_eq!(next, vec![Ok(RecordOutcome::Recorded)]);
    let new = backends(&app, "writer-broken").await;
    assert_eq!(new.len(), 1, "the broken connection is gone");
    assert_ne!(new, old);
}
