//! `POST /v1/certificates`, the station's one call: the answer and the certificate's profile,
//! duplicate thing names, a failing store, and the per-station rate limit.

use crate::common::*;
use crate::on_both_backends;
use factory_ca::services::tokens::Role;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

on_both_backends!(
    signs_a_csr_and_answers_with_certificate_chain_and_aws_id,
    refuses_a_second_active_certificate_for_a_thing,
    allows_a_second_certificate_when_policy_allows,
    a_failing_ledger_write_answers_503_and_issues_nothing,
);

async fn signs_a_csr_and_answers_with_certificate_chain_and_aws_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let device = csr("Thing-0001", "JP");
    let response = app.sign(&device.pem).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body = json(response).await;

    let serial = body["serial"].as_str().unwrap();
    assert_eq!(serial.len(), 40);
    assert_eq!(location, format!("/v1/certificates/{serial}"));
    assert_eq!(body["thing_name"], "Thing-0001");
    assert_eq!(body["country"], "JP");
    assert_eq!(body["subject"], "C=JP, CN=Thing-0001");

    let cert_pem = body["certificate_pem"].as_str().unwrap();
    let ca_pem = body["ca_certificate_pem"].as_str().unwrap();
    assert_eq!(
        body["certificate_chain_pem"].as_str().unwrap(),
        format!("{cert_pem}{ca_pem}")
    );
    let der = ::pem::parse(cert_pem).unwrap().into_contents();
    assert_eq!(
        body["aws_certificate_id"],
        hex::encode(Sha256::digest(&der))
    );

    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(hex::encode(cert.raw_serial()), serial);
    // Subject reads back exactly as sent: same order, CN and C unchanged.
    let subject: Vec<String> = cert
        .subject()
        .iter_attributes()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(subject, ["JP", "Thing-0001"]);
    assert!(!cert.is_ca());
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && !bc.value.ca);
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.digital_signature() && !ku.value.key_encipherment());
    assert!(
        cert.extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .client_auth
    );
    let validity = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(
        validity,
        365 * 86_400 + 60,
        "365 days plus the 60 s backdate"
    );

    let ca_response = app.client.get(app.url("/v1/ca.pem")).send().await.unwrap();
    assert_eq!(ca_response.text().await.unwrap(), ca_pem);
    let ca = json(app.get(&app.station, "/v1/ca").await).await;
    assert_eq!(ca["id"], body["issuing_ca"]);
}

async fn refuses_a_second_active_certificate_for_a_thing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(
        app.sign(&csr("Twin-1", "JP").pem).await.status(),
        StatusCode::CREATED
    );
    let second = app.sign(&csr("Twin-1", "US").pem).await;
    assert_eq!(second.status(), StatusCode::CONFLICT);
    assert_eq!(json(second).await["code"], "thing_already_provisioned");
    assert_eq!(app.ledger_count().await, 1);
}

async fn allows_a_second_certificate_when_policy_allows(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.policy.duplicate_thing_name = factory_ca::ca::policy::DuplicateThingName::Allow;
    })
    .await;
    assert_eq!(
        app.sign(&csr("Twin-2", "JP").pem).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.sign(&csr("Twin-2", "JP").pem).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.ledger_count().await, 2);
}

async fn a_failing_ledger_write_answers_503_and_issues_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (fail, heal) = match backend {
        Backend::Postgres => (
            "CREATE FUNCTION refuse_insert() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'simulated disk failure'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse BEFORE INSERT ON issued_certificates \
             FOR EACH ROW EXECUTE FUNCTION refuse_insert();",
            "DROP TRIGGER refuse ON issued_certificates;",
        ),
        Backend::Sqlite => (
            "CREATE TRIGGER refuse BEFORE INSERT ON issued_certificates \
             BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END;",
            "DROP TRIGGER refuse;",
        ),
    };
    app.execute_sql(fail).await;
    let response = app.sign(&csr("Lost-1", "JP").pem).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = response.text().await.unwrap();
    assert!(!text.contains("BEGIN CERTIFICATE"));
    assert!(
        !text.contains("simulated disk failure"),
        "5xx bodies reveal nothing internal"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["code"], "store_unavailable");
    assert_eq!(app.ledger_count().await, 0);

    // Nothing was half-written: once the store heals, the same thing can be provisioned.
    app.execute_sql(heal).await;
    assert_eq!(
        app.sign(&csr("Lost-1", "JP").pem).await.status(),
        StatusCode::CREATED
    );

    // A store that is gone altogether: 503 as well, and /readyz says so.
    app.store.close().await;
    let response = app.sign(&csr("Lost-2", "JP").pem).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(response).await["code"], "store_unavailable");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// Overload protection that a station can observe.
#[tokio::test]
async fn a_station_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.station_rate_per_sec = 0.2;
        s.server.station_burst = 2;
    })
    .await;
    for i in 0..2 {
        let response = app.sign(&csr(&format!("Rate-{i}"), "JP").pem).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let limited = app.sign(&csr("Rate-2", "JP").pem).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    assert_eq!(json(limited).await["code"], "rate_limited");
    assert_eq!(app.ledger_count().await, 2);

    let other = new_token(&app.store, "station-2", Role::Station).await;
    let response = app.sign_as(&other, &csr("Rate-3", "JP").pem, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}
