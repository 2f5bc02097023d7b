//! The tamper-evident ledger checked by the real binary: `factory-ca ledger verify` passes on
//! an untouched ledger and names the record when one row's thing name is changed, two records
//! are reordered, or a row is deleted (its chain record kept, then deleted too), on both
//! backends.

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

/// `factory-ca ledger verify` on the app's store.
fn verify(app: &TestApp) -> Output {
    let mut cmd = factory_ca(&app.settings.data_dir);
    let url = app.settings.database_url();
    if url.starts_with("postgres") {
        cmd.env("FACTORY_CA_DATABASE__URL", url);
    }
    cmd.args(["ledger", "verify"])
        .output()
        .expect("factory-ca runs")
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
        "UPDATE issued_certificates SET thing_name = 'Forged' WHERE serial = '{}'",
        serials[1]
    ))
    .await;
    assert_detected(&app, "a changed thing name", 2, &serials[1]);
    app.execute_sql(&format!(
        "UPDATE issued_certificates SET thing_name = 'Ledger-1' WHERE serial = '{}'",
        serials[1]
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

    // Reordering the rows themselves (swapping their issue times) changes both.
    app.execute_sql(&format!(
        "UPDATE issued_certificates SET issued_at = (SELECT issued_at FROM issued_certificates \
         WHERE serial = '{b}') WHERE serial = '{a}'",
        a = serials[2],
        b = serials[3]
    ))
    .await;
    assert_detected(&app, "a row moved in time", 3, &serials[2]);
    // (Not restored: the row deletion below is found first, at record 2.)

    // A row deleted: its record remains and names it.
    app.execute_sql(&format!(
        "DELETE FROM thing_claims WHERE serial = '{s}'; \
         DELETE FROM idempotency_keys WHERE serial = '{s}'; \
         DELETE FROM issued_certificates WHERE serial = '{s}'",
        s = serials[1]
    ))
    .await;
    assert_detected(&app, "a deleted row", 2, &serials[1]);
    // ... and with its record deleted too, the gap names the record after it.
    app.execute_sql("DELETE FROM ledger_chain WHERE seq = 2")
        .await;
    assert_detected(&app, "a deleted row and record", 2, &serials[2]);
}

crate::on_both_backends!(tampering_is_detected_and_an_untouched_ledger_passes);

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
    let app = TestApp::spawn(Backend::Postgres).await;
    issue(&app, "Template-1").await;
    let columns = "ca_id, country, subject, key_algorithm, spki_sha256, certificate_der, \
                   not_before, not_after, station";
    app.execute_sql(&format!(
        "INSERT INTO issued_certificates (serial, aws_certificate_id, thing_name, issued_at, \
           {columns}) \
         SELECT lpad(to_hex(i), 40, '0'), lpad(to_hex(i), 64, '0'), 'chain-' || i, \
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

    let started = std::time::Instant::now();
    let out = verify(&app);
    let verified = started.elapsed();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let records = u64::from(n) + 1;
    assert!(
        stdout(&out).contains(&format!("\tok\t{records} records")),
        "{}",
        stdout(&out)
    );
    println!(
        "{records} records: adopted into the chain in {:.1} s, `ledger verify` (debug build) in \
         {:.1} s ({:.0} records/s)",
        adopted.as_secs_f64(),
        verified.as_secs_f64(),
        records as f64 / verified.as_secs_f64()
    );

    // One row changed deep in the chain is found.
    let serial = format!("{:040x}", n / 2);
    app.execute_sql(&format!(
        "UPDATE issued_certificates SET thing_name = 'Forged' WHERE serial = '{serial}'"
    ))
    .await;
    assert_detected(&app, "a changed thing name", i64::from(n / 2) + 1, &serial);
}
