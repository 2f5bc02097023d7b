//! Signing: the station's one call, read back from the ledger, idempotency, duplicates, and a
//! failing store.

use crate::helpers::*;
use crate::on_both_backends;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

on_both_backends!(
    signs_a_csr_and_answers_with_certificate_chain_and_aws_id,
    reads_back_every_issued_certificate_from_the_ledger,
    lists_newest_first_with_filters_and_keyset_pagination,
    idempotent_retry_returns_the_same_certificate_even_after_restart,
    reusing_an_idempotency_key_with_another_csr_is_refused,
    concurrent_requests_with_one_idempotency_key_yield_one_certificate,
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

async fn reads_back_every_issued_certificate_from_the_ledger(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let issued = json(app.sign(&csr("Reader-1", "DE").pem).await).await;
    let serial = issued["serial"].as_str().unwrap();

    let response = app
        .get(&app.viewer, &format!("/v1/certificates/{serial}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let record = json(response).await;
    assert_eq!(record["serial"], serial);
    assert_eq!(record["thing_name"], "Reader-1");
    assert_eq!(record["country"], "DE");
    assert_eq!(record["station"], "station-1");
    assert_eq!(record["status"], "active");
    assert_eq!(record["key_algorithm"], "ecdsa-p256");
    assert_eq!(record["issuing_ca"], issued["issuing_ca"]);
    assert_eq!(record["aws_certificate_id"], issued["aws_certificate_id"]);
    assert_eq!(record["certificate_pem"], issued["certificate_pem"]);
    assert_eq!(record["not_after"], issued["not_after"]);
    assert!(record["request_id"].as_str().is_some_and(|r| !r.is_empty()));

    let missing = app
        .get(&app.viewer, &format!("/v1/certificates/{}", "7".repeat(40)))
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(missing).await["code"], "certificate_not_found");
}

async fn lists_newest_first_with_filters_and_keyset_pagination(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut serials = Vec::new();
    for (i, country) in ["JP", "US", "JP", "DE", "JP"].iter().enumerate() {
        let body = json(app.sign(&csr(&format!("List-{i}"), country).pem).await).await;
        serials.push(body["serial"].as_str().unwrap().to_owned());
    }
    serials.reverse(); // newest first

    let mut seen = Vec::new();
    let mut path = "/v1/certificates?limit=2".to_owned();
    loop {
        let page = json(app.get(&app.viewer, &path).await).await;
        for item in page["items"].as_array().unwrap() {
            assert!(item.get("certificate_pem").is_none(), "lists omit the PEM");
            seen.push(item["serial"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/certificates?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, serials);

    let jp = json(app.get(&app.viewer, "/v1/certificates?country=JP").await).await;
    assert_eq!(jp["items"].as_array().unwrap().len(), 3);
    let one = json(
        app.get(&app.viewer, "/v1/certificates?thing_name=List-3")
            .await,
    )
    .await;
    assert_eq!(one["items"][0]["country"], "DE");
    let by_station = json(
        app.get(
            &app.viewer,
            "/v1/certificates?station=station-1&status=active",
        )
        .await,
    )
    .await;
    assert_eq!(by_station["items"].as_array().unwrap().len(), 5);
    let future = json(
        app.get(
            &app.viewer,
            "/v1/certificates?issued_after=2999-01-01T00:00:00Z",
        )
        .await,
    )
    .await;
    assert!(future["items"].as_array().unwrap().is_empty());
    let past = json(
        app.get(
            &app.viewer,
            "/v1/certificates?issued_before=2999-01-01T00:00:00Z",
        )
        .await,
    )
    .await;
    assert_eq!(past["items"].as_array().unwrap().len(), 5);

    for bad in [
        "limit=0",
        "limit=1001",
        "status=gone",
        "issued_after=yesterday",
        "cursor=%%%",
        "colour=red",
    ] {
        let response = app
            .get(&app.viewer, &format!("/v1/certificates?{bad}"))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(json(response).await["code"], "invalid_query", "{bad}");
    }
}

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
