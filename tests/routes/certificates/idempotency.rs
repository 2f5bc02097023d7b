//! `Idempotency-Key` on `POST /v1/certificates`: a retry gets the same certificate (after a
//! restart too), a key reused with another CSR is refused, keys are per station, and racing
//! requests with one key yield one certificate.

use crate::common::*;
use crate::on_both_backends;
use reqwest::StatusCode;

on_both_backends!(
    idempotent_retry_returns_the_same_certificate_even_after_restart,
    reusing_an_idempotency_key_with_another_csr_is_refused,
    concurrent_requests_with_one_idempotency_key_yield_one_certificate,
);

async fn idempotent_retry_returns_the_same_certificate_even_after_restart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let device = csr("Retry-1", "JP");
    let first = app.sign_as(&app.station, &device.pem, Some("job-42")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = json(first).await;

    let again = app.sign_as(&app.station, &device.pem, Some("job-42")).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again = json(again).await;
    assert_eq!(again, first);

    let app = app.restart().await;
    let after_restart = json(app.sign_as(&app.station, &device.pem, Some("job-42")).await).await;
    assert_eq!(after_restart["serial"], first["serial"]);
    assert_eq!(after_restart["certificate_pem"], first["certificate_pem"]);
    assert_eq!(app.ledger_count().await, 1);
}

async fn reusing_an_idempotency_key_with_another_csr_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = app
        .sign_as(&app.station, &csr("Key-1", "JP").pem, Some("k1"))
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let other = app
        .sign_as(&app.station, &csr("Key-2", "JP").pem, Some("k1"))
        .await;
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(other).await["code"], "idempotency_key_reused");
    assert_eq!(app.ledger_count().await, 1);

    // Keys are per station: another station may use the same key.
    let other_station = new_token(
        &app.store,
        "station-2",
        factory_ca::services::tokens::Role::Station,
    )
    .await;
    let response = app
        .sign_as(&other_station, &csr("Key-2", "JP").pem, Some("k1"))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    let bad_key = app
        .sign_as(
            &app.station,
            &csr("Key-3", "JP").pem,
            Some(&"x".repeat(256)),
        )
        .await;
    assert_eq!(bad_key.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(bad_key).await["code"], "invalid_idempotency_key");
}

async fn concurrent_requests_with_one_idempotency_key_yield_one_certificate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let device = csr("Race-1", "JP");
    let requests = (0..8).map(|_| app.sign_as(&app.station, &device.pem, Some("race")));
    let responses = futures::future::join_all(requests).await;
    let mut serials = std::collections::BTreeSet::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::CREATED);
        serials.insert(json(response).await["serial"].as_str().unwrap().to_owned());
    }
    assert_eq!(serials.len(), 1);
    assert_eq!(app.ledger_count().await, 1);
}
