//! The ledger's signed checkpoints and the audit key: `GET /v1/ledger/audit-key.pem` without a
//! token, checkpoints made by the running service every N records, and two writers
//! checkpointing one chain at once making one checkpoint. The chain's coverage of the rows,
//! with no index of the chain by serial: a row without its `issued`, `revoked` or `superseded`
//! record is named, so is a record held twice, and the one-time adoption of rows written
//! before the chain leaves no index behind. A thing claim that names no certificate of its
//! thing is named.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::on_both_backends;
use factory_ca::keys::{AuditPublicKey, KeyStore};
use factory_ca::services::ledger::{self, CheckpointWhen};
use factory_ca::store::{HexArg, Store, Timestamp};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

on_both_backends!(
    the_audit_key_is_published_without_a_token_and_is_the_stored_one,
    the_service_checkpoints_every_n_records_and_the_checkpoints_verify,
    two_writers_checkpointing_at_once_make_one_checkpoint,
    a_row_without_its_record_is_named_without_an_index_by_serial,
    a_record_held_twice_is_named,
    adoption_chains_the_rows_written_before_the_chain_and_drops_its_index,
    a_claim_that_names_no_certificate_of_its_thing_is_named,
);

async fn issue(app: &TestApp, thing: &str) {
    let response = app.sign(&csr(thing, "JP").pem).await;
    assert_eq!(response.status(), StatusCode::CREATED, "issue {thing}");
}

async fn the_audit_key_is_published_without_a_token_and_is_the_stored_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .get(app.url("/v1/ledger/audit-key.pem"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-pem-file");
    let key_id = response.headers()["x-key-id"].to_str().unwrap().to_owned();
    let pem = response.text().await.unwrap();
    let public = AuditPublicKey::from_pem(&pem).expect("a PUBLIC KEY block");
    assert_eq!(public.key_id(), key_id);
    assert_eq!(hex::encode(Sha256::digest(public.spki_der())), key_id);
    assert!(!pem.contains("PRIVATE"), "{pem}");

    let stored = KeyStore::from_settings(&app.settings)
        .existing_audit_key()
        .await
        .unwrap()
        .expect("the first start made the audit key");
    assert_eq!(stored.key_id(), key_id);
    // openssl reads it as an EC P-256 public key.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.pub");
    std::fs::write(&path, &pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
}

async fn the_service_checkpoints_every_n_records_and_the_checkpoints_verify(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.ledger.checkpoint_every_records = 5;
        s.ledger.checkpoint_interval_secs = Duration::ZERO;
    })
    .await;
    let wait_for = |seq: i64| {
        let store = app.store.clone();
        async move {
            let ca_id = store.chained_cas().await.unwrap()[0].clone();
            // The job polls every second.
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let checkpoints = store.checkpoints_page(&ca_id, 0, 100).await.unwrap();
                if checkpoints.last().is_some_and(|cp| cp.seq >= seq) {
                    return checkpoints;
                }
                assert!(
                    Instant::now() < deadline,
                    "no checkpoint at record {seq}: {checkpoints:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    for i in 0..7 {
        issue(&app, &format!("Checkpointed-{i}")).await;
    }
    // The job may have run while the seven were issued, but not before the fifth.
    let checkpoints = wait_for(5).await;
    assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
    let first = checkpoints[0].seq;
    assert!((5..=7).contains(&first), "{checkpoints:?}");
    // Four records after it are not five: no checkpoint, however long one waits.
    let mut head = 7;
    while head < first + 4 {
        head += 1;
        issue(&app, &format!("Checkpointed-{head}")).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let ca_id = app.store.chained_cas().await.unwrap()[0].clone();
    let unchanged = app.store.checkpoints_page(&ca_id, 0, 100).await.unwrap();
    assert_eq!(unchanged, checkpoints);
    // The fifth is.
    issue(&app, "Checkpointed-last").await;
    let checkpoints = wait_for(first + 5).await;
    assert_eq!(
        checkpoints.iter().map(|cp| cp.seq).collect::<Vec<_>>(),
        vec![first, first + 5]
    );
    let last = checkpoints.last().unwrap();
    assert_eq!(last.issued + last.revoked, last.seq);
    let verified = app.verify_ledger().await;
    assert!(
        verified.iter().all(|v| v.mismatch.is_none()),
        "{verified:?}"
    );
    assert_eq!(verified[0].checkpoints, checkpoints.len() as u64);
}

async fn two_writers_checkpointing_at_once_make_one_checkpoint(backend: Backend) {
    // Checkpoints by the service are off: the two writers here are the only ones.
    let app = TestApp::spawn_with(backend, |s| {
        s.ledger.checkpoint_every_records = 0;
        s.ledger.checkpoint_interval_secs = Duration::ZERO;
    })
    .await;
    for i in 0..3 {
        issue(&app, &format!("Raced-{i}")).await;
    }
    let keys = KeyStore::from_settings(&app.settings);
    let key = keys.existing_audit_key().await.unwrap().unwrap();
    // Rounds of two concurrent writers (as two replicas would be), with records appended
    // between the rounds: each round makes exactly one checkpoint, at the head.
    for round in 0..5 {
        let now = Timestamp::now();
        let (a, b) = tokio::join!(
            ledger::checkpoint_chains(&app.store, &key, CheckpointWhen::Pending, now),
            ledger::checkpoint_chains(&app.store, &key, CheckpointWhen::Pending, now),
        );
        let made = a.unwrap().len() + b.unwrap().len();
        assert_eq!(made, 1, "round {round}: one checkpoint between two writers");
        issue(&app, &format!("Raced-next-{round}")).await;
    }
    let ca_id = app.verify_ledger().await[0].ca_id.clone();
    let checkpoints = app.store.checkpoints_page(&ca_id, 0, 100).await.unwrap();
    let seqs: Vec<i64> = checkpoints.iter().map(|cp| cp.seq).collect();
    assert_eq!(seqs, vec![3, 4, 5, 6, 7]);
    let verified = app.verify_ledger().await;
    assert!(verified[0].mismatch.is_none(), "{verified:?}");
    assert_eq!(verified[0].checkpoints, 5);
    assert_eq!(verified[0].verified, 8);
}

async fn issue_serial(app: &TestApp, thing: &str) -> String {
    let response = app.sign(&csr(thing, "JP").pem).await;
    assert_eq!(response.status(), StatusCode::CREATED, "issue {thing}");
    json(response).await["serial"]
        .as_str()
        .expect("a serial")
        .to_owned()
}

/// The names of the indexes of `table`.
async fn indexes_of(app: &TestApp, table: &str) -> Vec<String> {
    match &app.store {
        Store::Postgres(pool) => {
            sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE tablename = $1")
                .bind(table)
                .fetch_all(pool)
                .await
        }
        Store::Sqlite(pool) => {
            sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1",
            )
            .bind(table)
            .fetch_all(pool)
            .await
        }
    }
    .expect("the catalog reads")
}

/// The one CA's verification: its mismatch, if any, after `verified` good records.
async fn verified_once(app: &TestApp) -> factory_ca::services::ledger::CaVerification {
    let mut verified = app.verify_ledger().await;
    assert_eq!(verified.len(), 1, "{verified:?}");
    verified.remove(0)
}

/// A ledger row copied from `serial`'s under a serial and AWS certificate id of its own, as
/// someone writing the database directly would add one (no chain record).
fn insert_copy_sql(app: &TestApp, from: &str, serial: &str, aws_certificate_id: &str) -> String {
    let columns = "ca_id, thing_name, country, subject, key_algorithm, spki_sha256, \
                   certificate_der, not_before, not_after, issued_at, station, channel";
    format!(
        "INSERT INTO issued_certificates (serial, aws_certificate_id, {columns}) \
         SELECT {}, {}, {columns} FROM issued_certificates WHERE serial = {}",
        app.hex_sql(serial),
        app.hex_sql(aws_certificate_id),
        app.hex_sql(from)
    )
}

async fn a_row_without_its_record_is_named_without_an_index_by_serial(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut serials = Vec::new();
    for i in 0..4 {
        serials.push(issue_serial(&app, &format!("Covered-{i}")).await);
    }
    app.revoke(&serials[3]).await;
    let indexes = indexes_of(&app, "ledger_chain").await;
    assert!(
        !indexes.iter().any(|i| i.contains("serial")),
        "the chain has no index by serial: {indexes:?}"
    );
    let ok = verified_once(&app).await;
    assert!(ok.mismatch.is_none(), "{ok:?}");
    assert_eq!(ok.verified, 5);

    // Each way a row can lack a record, then put back: the report names the row and the kind.
    let outside = "7e".repeat(20);
    let cases = [
        (
            "issued",
            outside.clone(),
            insert_copy_sql(&app, &serials[0], &outside, &"ab".repeat(32)),
            format!(
                "DELETE FROM issued_certificates WHERE serial = {}",
                app.hex_sql(&outside)
            ),
        ),
        (
            "revoked",
            serials[1].clone(),
            format!(
                "UPDATE issued_certificates SET status = 'revoked', revoked_at = issued_at, \
                 revocation_reason = 'key_compromise' WHERE serial = {}",
                app.hex_sql(&serials[1])
            ),
            format!(
                "UPDATE issued_certificates SET status = 'active', revoked_at = NULL, \
                 revocation_reason = NULL WHERE serial = {}",
                app.hex_sql(&serials[1])
            ),
        ),
        (
            "superseded",
            serials[2].clone(),
            format!(
                "UPDATE issued_certificates SET status = 'superseded', \
                 superseded_at = issued_at, superseded_by = {} WHERE serial = {}",
                app.hex_sql(&serials[0]),
                app.hex_sql(&serials[2])
            ),
            format!(
                "UPDATE issued_certificates SET status = 'active', superseded_at = NULL, \
                 superseded_by = NULL WHERE serial = {}",
                app.hex_sql(&serials[2])
            ),
        ),
    ];
    for (kind, serial, tamper, restore) in cases {
        app.execute_sql(&tamper).await;
        let found = verified_once(&app).await;
        let mismatch = found
            .mismatch
            .unwrap_or_else(|| panic!("a row without its {kind} record went unnoticed"));
        assert_eq!(found.verified, 5, "every record still verifies");
        assert_eq!(mismatch.seq, 0, "{mismatch:?}");
        assert_eq!(mismatch.serial.as_deref(), Some(serial.as_str()));
        assert_eq!(
            mismatch.problem,
            format!(
                "certificate {serial} is {kind} in the ledger but has no {kind} record in the \
                 chain (the row was written outside factory-ca)"
            )
        );
        app.execute_sql(&restore).await;
        let restored = verified_once(&app).await;
        assert!(restored.mismatch.is_none(), "{kind}: {restored:?}");
    }
}

async fn a_record_held_twice_is_named(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = issue_serial(&app, "Twice-0").await;
    let second = issue_serial(&app, "Twice-1").await;
    let ca_id = verified_once(&app).await.ca_id;
    // A row written outside factory-ca, and a copy of record 1 appended as record 3 with its
    // hashes recomputed (and the head moved): as many `issued` records as rows, every hash
    // matching, so only the repeated record gives it away.
    let outside = "7e".repeat(20);
    app.execute_sql(&insert_copy_sql(&app, &second, &outside, &"ab".repeat(32)))
        .await;
    let records = app.store.chain_page(&ca_id, 0, 10).await.unwrap();
    assert_eq!(records.len(), 2);
    let payload = records[0].payload().expect("record 1's row is there");
    let prev: [u8; 32] = records[1].hash.clone().try_into().unwrap();
    let hash = factory_ca::store::chain::link(&prev, 3, &payload);
    macro_rules! append {
        ($pool:expr) => {{
            sqlx::query(
                "INSERT INTO ledger_chain (ca_id, seq, kind, serial, prev_hash, hash) \
                 VALUES ($1, 3, 'issued', $2, $3, $4)",
            )
            .bind(&ca_id)
            .bind(HexArg(&first))
            .bind(prev.to_vec())
            .bind(hash.to_vec())
            .execute($pool)
            .await
            .unwrap();
            sqlx::query("UPDATE ledger_heads SET seq = 3, hash = $2 WHERE ca_id = $1")
                .bind(&ca_id)
                .bind(hash.to_vec())
                .execute($pool)
                .await
                .unwrap();
        }};
    }
    match &app.store {
        Store::Postgres(pool) => append!(pool),
        Store::Sqlite(pool) => append!(pool),
    }
    let found = verified_once(&app).await;
    assert_eq!(found.verified, 3, "every record verifies: {found:?}");
    let mismatch = found.mismatch.expect("a record held twice went unnoticed");
    assert_eq!(mismatch.seq, 3);
    assert_eq!(mismatch.serial.as_deref(), Some(first.as_str()));
    assert_eq!(
        mismatch.problem,
        format!(
            "record 3 (issued) repeats record 1: certificate {first} has 2 issued records in the \
             chain (a record was copied, and the records after it rewritten)"
        )
    );
}

async fn adoption_chains_the_rows_written_before_the_chain_and_drops_its_index(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let template = issue_serial(&app, "Adopted-0").await;
    issue_serial(&app, "Adopted-1").await;
    // Rows without records and the adoption marked due, as on a ledger older than the chain;
    // one of them revoked.
    let unchained: Vec<String> = (0..3).map(|i| format!("{i:02x}").repeat(20)).collect();
    for serial in &unchained {
        let aws_certificate_id = &format!("{serial}{serial}")[..64];
        app.execute_sql(&insert_copy_sql(
            &app,
            &template,
            serial,
            aws_certificate_id,
        ))
        .await;
    }
    app.execute_sql(&format!(
        "UPDATE issued_certificates SET status = 'revoked', revoked_at = issued_at, \
         revocation_reason = 'superseded' WHERE serial = {}; \
         INSERT INTO ledger_adoption (id) VALUES (1)",
        app.hex_sql(&unchained[1])
    ))
    .await;
    let missing = verified_once(&app).await;
    assert_eq!(
        missing.mismatch.map(|m| (m.serial, m.seq)),
        Some((Some(unchained[0].clone()), 0))
    );

    app.store.migrate().await.expect("the rows are adopted");
    let adopted = verified_once(&app).await;
    assert!(adopted.mismatch.is_none(), "{adopted:?}");
    // Two issuances, then three adopted issuances and one adopted revocation.
    assert_eq!(adopted.verified, 6);
    let indexes = indexes_of(&app, "ledger_chain").await;
    assert!(
        !indexes
            .iter()
            .any(|i| i.contains("adoption") || i.contains("serial")),
        "{indexes:?}"
    );
    // Adoption is done: another migrate adopts nothing.
    app.store.migrate().await.unwrap();
    assert_eq!(verified_once(&app).await.verified, 6);
}

async fn a_claim_that_names_no_certificate_of_its_thing_is_named(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let a = issue_serial(&app, "Claimed-A").await;
    let b = issue_serial(&app, "Claimed-B").await;
    let checked = ledger::verify_claims(&app.store).await.unwrap();
    assert_eq!((checked.claims, checked.stray), (2, None));

    // Someone writing the database points A's claim at B's certificate.
    app.execute_sql(&format!(
        "UPDATE thing_claims SET serial = {} WHERE thing_name = 'Claimed-A'",
        app.hex_sql(&b)
    ))
    .await;
    let checked = ledger::verify_claims(&app.store).await.unwrap();
    assert_eq!(checked.stray, Some(("Claimed-A".to_owned(), b.clone())));

    // On PostgreSQL no foreign key keeps a claim from naming a serial the ledger lacks.
    if matches!(app.store, Store::Postgres(_)) {
        let missing = "0".repeat(40);
        app.execute_sql(&format!(
            "UPDATE thing_claims SET serial = {} WHERE thing_name = 'Claimed-A'; \
             UPDATE thing_claims SET serial = {} WHERE thing_name = 'Claimed-B'",
            app.hex_sql(&a),
            app.hex_sql(&missing)
        ))
        .await;
        let checked = ledger::verify_claims(&app.store).await.unwrap();
        assert_eq!(checked.stray, Some(("Claimed-B".to_owned(), missing)));
    }
}
