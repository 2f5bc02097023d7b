//! The ledger's signed checkpoints and the audit key: `GET /v1/ledger/audit-key.pem` without a
//! token, checkpoints made by the running service every N records, and two writers
//! checkpointing one chain at once making one checkpoint.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::on_both_backends;
use factory_ca::keys::{AuditPublicKey, KeyStore};
use factory_ca::services::ledger::{self, CheckpointWhen};
use factory_ca::store::Timestamp;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

on_both_backends!(
    the_audit_key_is_published_without_a_token_and_is_the_stored_one,
    the_service_checkpoints_every_n_records_and_the_checkpoints_verify,
    two_writers_checkpointing_at_once_make_one_checkpoint,
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
