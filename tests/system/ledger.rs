//! The tamper-evident ledger checked by the real binary: `factory-ca ledger verify` passes on
//! an untouched ledger and names the record when one row's thing name is changed, two records
//! are reordered, or a row is deleted (its chain record kept, then deleted too), on both
//! backends. Signed checkpoints: a forged one (signature changed, head hash changed, signed by
//! another key) is named, and so is a chain rewritten consistently after a checkpoint. Signed
//! exports: `openssl dgst -verify` checks `ledger export`'s file with the published key and
//! refuses it after a one-byte change.

use std::process::Output;

use crate::common::binary::{factory_ca, stderr, stdout};
use crate::common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn issue(app: &TestApp, thing: &str) -> String {
    let response = app.sign_as(&app.station, &csr(thing, "JP").pem, None).await;
    assert_eq!(response.status(), StatusCode::CREATED, "issue {thing}");
    let body: Value = json(response).await;
    body["serial"].as_str().expect("a serial").to_owned()
}

/// `factory-ca ledger <args>` on the app's store.
fn ledger(app: &TestApp, args: &[&str]) -> Output {
    let mut cmd = factory_ca(&app.settings.data_dir);
    let url = app.settings.database_url();
    if url.starts_with("postgres") {
        cmd.env("FACTORY_CA_DATABASE__URL", url);
    }
    cmd.arg("ledger")
        .args(args)
        .output()
        .expect("factory-ca runs")
}

/// `factory-ca ledger verify` on the app's store.
fn verify(app: &TestApp) -> Output {
    ledger(app, &["verify"])
}

fn assert_passes(app: &TestApp, records: usize) {
    let out = verify(app);
    assert!(
        out.status.success(),
        "an untouched ledger verifies: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains(&format!("\tok\t{records} records")),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("thing claims\tok\t"),
        "{}",
        stdout(&out)
    );
}

/// Verification fails, and its report names `record` and `serial`.
fn assert_detected(app: &TestApp, what: &str, record: i64, serial: &str) {
    let out = verify(app);
    let text = stdout(&out);
    assert!(!out.status.success(), "{what} went unnoticed: {text}");
    assert!(
        text.contains(&format!("mismatch\trecord {record}\t{serial}")),
        "{what}: the report names record {record} ({serial}): {text}"
    );
    assert!(
        stderr(&out).contains("does not match its hash chain"),
        "{what}: {}",
        stderr(&out)
    );
}

async fn tampering_is_detected_and_an_untouched_ledger_passes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut serials = Vec::new();
    for i in 0..6 {
        serials.push(issue(&app, &format!("Ledger-{i}")).await);
    }
    let response = app
        .admin_json(
            reqwest::Method::POST,
            &format!("/v1/admin/certificates/{}/revoke", serials[5]),
            json!({"reason": "key_compromise"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // Six issuances and one revocation.
    assert_passes(&app, 7);

    // One row's thing name changed: record 2 (the second issuance) no longer matches.
    app.execute_sql(&format!(
        "UPDATE issued_certificates SET thing_name = 'Forged' WHERE serial = {}",
        app.hex_sql(&serials[1])
    ))
    .await;
    assert_detected(&app, "a changed thing name", 2, &serials[1]);
    app.execute_sql(&format!(
        "UPDATE issued_certificates SET thing_name = 'Ledger-1' WHERE serial = {}",
        app.hex_sql(&serials[1])
    ))
    .await;
    assert_passes(&app, 7);

    // Two records reordered (records 3 and 4 swap places): record 3 no longer follows 2.
    let swap = "UPDATE ledger_chain SET seq = -1 WHERE seq = 3; \
                UPDATE ledger_chain SET seq = 3 WHERE seq = 4; \
                UPDATE ledger_chain SET seq = 4 WHERE seq = -1;";
    app.execute_sql(swap).await;
    assert_detected(&app, "two reordered records", 3, &serials[3]);
    app.execute_sql(swap).await;
    assert_passes(&app, 7);

    // A thing claim pointed at another thing's certificate (no chain record changes).
    let claim = |serial: &str| {
        format!(
            "UPDATE thing_claims SET serial = {} WHERE thing_name = 'Ledger-0'",
            app.hex_sql(serial)
        )
    };
    app.execute_sql(&claim(&serials[1])).await;
    let out = verify(&app);
    assert!(!out.status.success(), "a moved claim went unnoticed");
    assert!(
        stdout(&out).contains(&format!(
            "thing claims\tmismatch\t-\t{}\tthe claim of thing Ledger-0",
            serials[1]
        )),
        "{}",
        stdout(&out)
    );
    app.execute_sql(&claim(&serials[0])).await;
    assert_passes(&app, 7);

    // Reordering the rows themselves (swapping their issue times) changes both.
    app.execute_sql(&format!(
        "UPDATE issued_certificates SET issued_at = (SELECT issued_at FROM issued_certificates \
         WHERE serial = {b}) WHERE serial = {a}",
        a = app.hex_sql(&serials[2]),
        b = app.hex_sql(&serials[3])
    ))
    .await;
    assert_detected(&app, "a row moved in time", 3, &serials[2]);
    // (Not restored: the row deletion below is found first, at record 2.)

    // A row deleted: its record remains and names it.
    app.execute_sql(&format!(
        "DELETE FROM thing_claims WHERE serial = {s}; \
         DELETE FROM idempotency_keys WHERE serial = {s}; \
         DELETE FROM issued_certificates WHERE serial = {s}",
        s = app.hex_sql(&serials[1])
    ))
    .await;
    assert_detected(&app, "a deleted row", 2, &serials[1]);
    // ... and with its record deleted too, the gap names the record after it.
    app.execute_sql("DELETE FROM ledger_chain WHERE seq = 2")
        .await;
    assert_detected(&app, "a deleted row and record", 2, &serials[2]);
}

crate::on_both_backends!(tampering_is_detected_and_an_untouched_ledger_passes);

/// Signs checkpoints at records `every`, `2 * every`, ... and at the head `records` with the
/// app's audit key, as the service would have on a chain whose records are all issuances;
/// returns how many.
async fn checkpoint_every(app: &TestApp, every: i64, records: i64) -> u64 {
    use factory_ca::services::ledger::checkpoint_message;
    use factory_ca::store::checkpoints::CheckpointRecord;

    let key = factory_ca::keys::KeyStore::from_settings(&app.settings)
        .existing_audit_key()
        .await
        .unwrap()
        .unwrap();
    let ca_id = app.store.chained_cas().await.unwrap()[0].clone();
    let mut positions: Vec<i64> = (1..=records / every).map(|i| i * every).collect();
    if positions.last() != Some(&records) {
        positions.push(records);
    }
    for &seq in &positions {
        let record = app.store.chain_page(&ca_id, seq - 1, 1).await.unwrap();
        let mut cp = CheckpointRecord {
            ca_id: ca_id.clone(),
            seq,
            head_hash: record[0].hash.clone(),
            issued: seq,
            revoked: 0,
            created_at: factory_ca::store::Timestamp::now(),
            key_id: key.key_id().to_owned(),
            signature: Vec::new(),
        };
        cp.signature = key.sign(&checkpoint_message(&cp));
        execute_bound(
            app,
            "INSERT INTO ledger_checkpoints (ca_id, seq, head_hash, issued, revoked, \
             created_at, key_id, signature) VALUES ($1, $2, $3, $4, 0, $7, $5, $6)",
            &[
                Bound::Text(&cp.ca_id),
                Bound::Int(cp.seq),
                Bound::Bytes(&cp.head_hash),
                Bound::Int(cp.issued),
                Bound::Text(&cp.key_id),
                Bound::Bytes(&cp.signature),
                Bound::Time(cp.created_at),
            ],
        )
        .await;
    }
    positions.len() as u64
}

fn million() -> u32 {
    std::env::var("FACTORY_CA_LEDGER_ROWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000)
}

/// A ledger of a million rows (`FACTORY_CA_LEDGER_ROWS` for another count) on PostgreSQL:
/// copies of a real certificate with their own serials, adopted into the chain as an upgrade
/// adopts the rows written before it, then verified by the binary, which streams the chain in
/// pages. Both times are printed (run with `--nocapture`); docs/certificates.md quotes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_ledger_verifies_on_postgres() {
    let n = million();
    // Checkpoints are made below, every 10,000 records as `[ledger]`'s default does.
    let app = TestApp::spawn_with(Backend::Postgres, no_checkpoints_by_the_service).await;
    issue(&app, "Template-1").await;
    let columns = "ca_id, country, subject, key_algorithm, spki_sha256, certificate_der, \
                   not_before, not_after, station";
    app.execute_sql(&format!(
        "INSERT INTO issued_certificates (serial, aws_certificate_id, thing_name, issued_at, \
           {columns}) \
         SELECT decode(lpad(to_hex(i), 40, '0'), 'hex'), decode(lpad(to_hex(i), 64, '0'), 'hex'), 'chain-' || i, \
           now() + make_interval(secs => i), {columns} \
         FROM (SELECT * FROM issued_certificates LIMIT 1) AS t, generate_series(1, {n}) AS i; \
         INSERT INTO ledger_adoption (id) VALUES (1)"
    ))
    .await;
    app.execute_sql("VACUUM ANALYZE issued_certificates").await;
    let started = std::time::Instant::now();
    app.store.migrate().await.expect("the rows are adopted");
    let adopted = started.elapsed();
    app.execute_sql("VACUUM ANALYZE ledger_chain").await;
    let records = u64::from(n) + 1;
    let checkpoints = checkpoint_every(&app, 10_000, records as i64).await;

    let started = std::time::Instant::now();
    let out = verify(&app);
    let verified = started.elapsed();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("\tok\t{records} records"))
            && stdout(&out).contains(&format!("\t{checkpoints} checkpoints\t")),
        "{}",
        stdout(&out)
    );
    println!(
        "{records} records: adopted into the chain in {:.1} s, `ledger verify` (debug build) of \
         the chain and {checkpoints} signed checkpoints in {:.1} s ({:.0} records/s)",
        adopted.as_secs_f64(),
        verified.as_secs_f64(),
        records as f64 / verified.as_secs_f64()
    );

    // One row changed deep in the chain is found.
    let serial = format!("{:040x}", n / 2);
    app.execute_sql(&format!(
        "UPDATE issued_certificates SET thing_name = 'Forged' WHERE serial = {}",
        app.hex_sql(&serial)
    ))
    .await;
    assert_detected(&app, "a changed thing name", i64::from(n / 2) + 1, &serial);
}

/// Runs `sql` with `binds` (byte strings and texts) on the app's store.
async fn execute_bound(app: &TestApp, sql: &str, binds: &[Bound<'_>]) {
    use factory_ca::store::Store;
    macro_rules! run {
        ($pool:expr) => {{
            let mut query = sqlx::query(sql);
            for bind in binds {
                query = match bind {
                    Bound::Bytes(b) => query.bind(b.to_vec()),
                    Bound::Text(t) => query.bind(t.to_string()),
                    Bound::Int(i) => query.bind(*i),
                    Bound::Time(t) => query.bind(*t),
                };
            }
            query.execute($pool).await.expect("the statement runs");
        }};
    }
    match &app.store {
        Store::Postgres(pool) => run!(pool),
        Store::Sqlite(pool) => run!(pool),
    }
}

enum Bound<'a> {
    Bytes(&'a [u8]),
    Text(&'a str),
    Int(i64),
    Time(factory_ca::store::Timestamp),
}

fn no_checkpoints_by_the_service(s: &mut factory_ca::config::Settings) {
    s.ledger.checkpoint_every_records = 0;
    s.ledger.checkpoint_interval_secs = std::time::Duration::ZERO;
}

/// `ledger checkpoint`, which must make one checkpoint at `record`.
fn checkpoint(app: &TestApp, record: i64) {
    let out = ledger(app, &["checkpoint"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("\tcheckpoint\trecord {record}\t")),
        "{}",
        stdout(&out)
    );
}

/// Verification fails, and its report names the checkpoint at `record` and says `why`.
fn assert_checkpoint_refused(out: &Output, what: &str, record: i64, why: &str) {
    let text = stdout(out);
    assert!(!out.status.success(), "{what} went unnoticed: {text}");
    assert!(
        text.contains(&format!("mismatch\tcheckpoint {record}\t-\t")) && text.contains(why),
        "{what}: the report names checkpoint {record} and says {why:?}: {text}"
    );
}

/// Restores the stored checkpoint `cp` as it was.
async fn restore(app: &TestApp, cp: &factory_ca::store::checkpoints::CheckpointRecord) {
    execute_bound(
        app,
        "UPDATE ledger_checkpoints SET head_hash = $1, key_id = $2, signature = $3 \
         WHERE ca_id = $4 AND seq = $5",
        &[
            Bound::Bytes(&cp.head_hash),
            Bound::Text(&cp.key_id),
            Bound::Bytes(&cp.signature),
            Bound::Text(&cp.ca_id),
            Bound::Int(cp.seq),
        ],
    )
    .await;
}

async fn forged_checkpoints_and_a_rewritten_chain_are_detected(backend: Backend) {
    use factory_ca::keys::AuditKey;
    use factory_ca::services::ledger::checkpoint_message;
    use factory_ca::store::chain::{GENESIS, link};

    let app = TestApp::spawn_with(backend, no_checkpoints_by_the_service).await;
    let mut serials = Vec::new();
    for i in 0..4 {
        serials.push(issue(&app, &format!("Signed-{i}")).await);
    }
    checkpoint(&app, 4);
    for i in 4..6 {
        serials.push(issue(&app, &format!("Signed-{i}")).await);
    }
    let response = app
        .admin_json(
            reqwest::Method::POST,
            &format!("/v1/admin/certificates/{}/revoke", serials[0]),
            json!({"reason": "superseded"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    checkpoint(&app, 7);
    let out = verify(&app);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("\tok\t7 records\t") && stdout(&out).contains("\t2 checkpoints\t"),
        "{}",
        stdout(&out)
    );
    // An auditor checks with the published key instead of the data directory's.
    let dir = tempfile::tempdir().unwrap();
    let published = dir.path().join("audit.pub");
    let pem = app
        .client
        .get(app.url("/v1/ledger/audit-key.pem"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    std::fs::write(&published, &pem).unwrap();
    let out = ledger(
        &app,
        &["verify", "--audit-key", published.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let ca_id = app.verify_ledger().await[0].ca_id.clone();
    let stored = app.store.checkpoints_page(&ca_id, 0, 10).await.unwrap();
    let first = stored[0].clone();
    assert_eq!((first.seq, first.issued, first.revoked), (4, 4, 0));
    assert_eq!(
        (stored[1].seq, stored[1].issued, stored[1].revoked),
        (7, 6, 1)
    );

    // 1. The signature changed (its last byte).
    let mut signature = first.signature.clone();
    *signature.last_mut().unwrap() ^= 0x01;
    execute_bound(
        &app,
        "UPDATE ledger_checkpoints SET signature = $1 WHERE seq = 4",
        &[Bound::Bytes(&signature)],
    )
    .await;
    assert_checkpoint_refused(
        &verify(&app),
        "a changed signature",
        4,
        "signature does not verify",
    );
    restore(&app, &first).await;

    // 2. The head hash changed (to record 3's), signature kept.
    let chain = app.store.chain_page(&ca_id, 0, 10).await.unwrap();
    execute_bound(
        &app,
        "UPDATE ledger_checkpoints SET head_hash = $1 WHERE seq = 4",
        &[Bound::Bytes(&chain[2].hash)],
    )
    .await;
    assert_checkpoint_refused(
        &verify(&app),
        "a changed head hash",
        4,
        "signature does not verify",
    );
    restore(&app, &first).await;

    // 3. Signed by another key, under that key's id ...
    let other = AuditKey::generate().unwrap();
    let mut forged = first.clone();
    forged.key_id = other.key_id().to_owned();
    forged.signature = other.sign(&checkpoint_message(&forged));
    restore(&app, &forged).await;
    assert_checkpoint_refused(
        &verify(&app),
        "a checkpoint signed by another key",
        4,
        "which is not a trusted audit key",
    );
    // ... or under the audit key's id.
    let mut forged = first.clone();
    forged.signature = other.sign(&checkpoint_message(&forged));
    restore(&app, &forged).await;
    assert_checkpoint_refused(
        &verify(&app),
        "another key's signature under the audit key's id",
        4,
        "signature does not verify",
    );
    restore(&app, &first).await;
    assert_passes(&app, 7);

    // 4. The attack checkpoints exist for: one row changed (record 5, the fifth issuance), its
    // thing claim moved with it, and the whole chain recomputed consistently from there, head
    // included. Every link holds, so only the signed checkpoint at record 7 can tell.
    app.execute_sql(&format!(
        "UPDATE issued_certificates SET thing_name = 'Rewritten' WHERE serial = {s}; \
         UPDATE thing_claims SET thing_name = 'Rewritten' WHERE serial = {s}",
        s = app.hex_sql(&serials[4])
    ))
    .await;
    let rows = app.store.chain_page(&ca_id, 0, 10).await.unwrap();
    let mut prev = GENESIS;
    for row in &rows {
        let hash = link(&prev, row.seq, &row.payload().expect("every row is there"));
        execute_bound(
            &app,
            "UPDATE ledger_chain SET prev_hash = $1, hash = $2 WHERE ca_id = $3 AND seq = $4",
            &[
                Bound::Bytes(&prev),
                Bound::Bytes(&hash),
                Bound::Text(&ca_id),
                Bound::Int(row.seq),
            ],
        )
        .await;
        prev = hash;
    }
    execute_bound(
        &app,
        "UPDATE ledger_heads SET hash = $1 WHERE ca_id = $2",
        &[Bound::Bytes(&prev), Bound::Text(&ca_id)],
    )
    .await;
    assert_checkpoint_refused(
        &verify(&app),
        "a chain rewritten after its checkpoint",
        7,
        "records 5 to 7 were rewritten after the checkpoint was made",
    );
    // Without its checkpoints the rewritten chain would pass: the rewrite is consistent.
    app.execute_sql("DELETE FROM ledger_checkpoints").await;
    assert_passes(&app, 7);
}

crate::on_both_backends!(forged_checkpoints_and_a_rewritten_chain_are_detected);

/// `openssl dgst -sha256 -verify KEY -signature SIG FILE`.
fn openssl_verify(key: &std::path::Path, file: &std::path::Path) -> Output {
    let mut sig = file.as_os_str().to_owned();
    sig.push(".sig");
    std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(key)
        .arg("-signature")
        .arg(sig)
        .arg(file)
        .output()
        .expect("openssl runs")
}

async fn a_signed_export_verifies_with_openssl_and_a_changed_byte_does_not(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut serials = Vec::new();
    for i in 0..5 {
        serials.push(issue(&app, &format!("Exported-{i}")).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.pub");
    let out = ledger(&app, &["audit-key"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(&key, stdout(&out)).unwrap();
    let served = app
        .client
        .get(app.url("/v1/ledger/audit-key.pem"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(stdout(&out), served, "the CLI prints the published key");

    // CSV: the API export's columns, oldest first.
    let csv = dir.path().join("ledger.csv");
    let out = ledger(&app, &["export", "--out", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\t5 rows"), "{}", stdout(&out));
    let verified = openssl_verify(&key, &csv);
    assert!(
        verified.status.success() && stdout(&verified).contains("Verified OK"),
        "{verified:?}"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(lines[0].starts_with("serial,thing_name,"), "{text}");
    assert!(lines[1].starts_with(&format!("{},Exported-0,", serials[0])));

    // One byte changed: openssl refuses.
    let mut bytes = std::fs::read(&csv).unwrap();
    let at = text.find("Exported-3").unwrap() + "Exported-".len();
    bytes[at] = b'8';
    std::fs::write(&csv, &bytes).unwrap();
    let refused = openssl_verify(&key, &csv);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        stdout(&refused).contains("Verification failure"),
        "{refused:?}"
    );

    // An export never overwrites.
    let again = ledger(&app, &["export", "--out", csv.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("never overwrites"),
        "{}",
        stderr(&again)
    );

    // JSON: the rows and the newest checkpoint of each chain, signed the same way.
    // The newest checkpoint at the head, whatever the service's schedule made before.
    let out = ledger(&app, &["checkpoint"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ca_id = app.verify_ledger().await[0].ca_id.clone();
    let file = dir.path().join("ledger.json");
    let out = ledger(
        &app,
        &[
            "export",
            "--format",
            "json",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let verified = openssl_verify(&key, &file);
    assert!(verified.status.success(), "{verified:?}");
    let body: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(body["format"], "factory-ca ledger export v1");
    assert_eq!(body["certificates"].as_array().unwrap().len(), 5);
    assert_eq!(body["certificates"][0]["serial"], serials[0].as_str());
    let checkpoint = &body["checkpoints"][0];
    assert_eq!(checkpoint["ca_id"], ca_id.as_str());
    assert_eq!(checkpoint["seq"], 5);
    // Its signed text verifies with openssl too.
    let signed = dir.path().join("checkpoint.txt");
    std::fs::write(&signed, checkpoint["signed_text"].as_str().unwrap()).unwrap();
    std::fs::write(
        dir.path().join("checkpoint.txt.sig"),
        hex::decode(checkpoint["signature"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let verified = openssl_verify(&key, &signed);
    assert!(verified.status.success(), "{verified:?}");

    // Each export is audited.
    let audited = app
        .get(&app.admin, "/v1/admin/audit?action=ledger.export")
        .await;
    let audited: Value = json(audited).await;
    assert_eq!(
        audited["items"].as_array().map(Vec::len),
        Some(3),
        "{audited}"
    );
}

crate::on_both_backends!(a_signed_export_verifies_with_openssl_and_a_changed_byte_does_not);
