//! Revocation in the ledger (`POST /v1/admin/certificates/{serial}/revoke`) and the CRLs
//! (`GET /v1/cas/{id}/crl`), whose signatures and entries openssl checks.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;
use crate::on_both_backends;
use factory_ca::ca::{CaAlgorithm, CaSubject};
use factory_ca::keys::KeyStore;
use factory_ca::services::ca_admin::{Actor, CaAdmin};
use factory_ca::store::{HexText, Store};
use reqwest::StatusCode;
use serde_json::Value;

on_both_backends!(
    revoking_marks_the_ledger_row_frees_its_claim_and_is_audited,
    an_empty_body_or_empty_object_revokes_as_unspecified,
    revoking_twice_is_409_and_the_first_revocation_stands,
    unknown_serials_are_404_and_unknown_reasons_422,
    only_admins_may_revoke,
    a_revoked_thing_name_can_be_provisioned_again_under_reject,
    the_crl_verifies_with_the_ca_and_lists_each_revoked_serial_with_its_reason,
    openssl_refuses_a_revoked_certificate_with_the_pem_crl_and_accepts_an_active_one,
    a_non_issuing_ca_signs_its_own_crl,
    crls_of_unknown_cas_are_404_and_bad_formats_400,
    the_crl_of_an_imported_ca_without_crl_sign_is_409_with_its_own_code,
);

struct Issued {
    serial: String,
    cert_pem: String,
    ca_pem: String,
    ca_id: String,
}

async fn issue(app: &TestApp, thing: &str) -> Issued {
    let response = app.sign(&csr(thing, "JP").pem).await;
    assert_eq!(response.status(), StatusCode::CREATED, "issue {thing}");
    let body = json(response).await;
    Issued {
        serial: body["serial"].as_str().unwrap().to_owned(),
        cert_pem: body["certificate_pem"].as_str().unwrap().to_owned(),
        ca_pem: body["ca_certificate_pem"].as_str().unwrap().to_owned(),
        ca_id: body["issuing_ca"].as_str().unwrap().to_owned(),
    }
}

/// POSTs to the revoke route with `token`; `body` is sent as JSON when given.
async fn revoke_as(
    app: &TestApp,
    token: &str,
    serial: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/v1/admin/certificates/{serial}/revoke")))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request sent")
}

async fn revoke(app: &TestApp, serial: &str, reason: &str) -> Value {
    let response = revoke_as(
        app,
        &app.admin,
        serial,
        Some(serde_json::json!({ "reason": reason })),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "revoke {serial}");
    json(response).await
}

async fn fetch_crl(app: &TestApp, ca_id: &str, query: &str) -> (String, Vec<u8>) {
    let response = app
        .client
        .get(app.url(&format!("/v1/cas/{ca_id}/crl{query}")))
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.bytes().await.unwrap().to_vec())
}

/// Serials on which the ledger still owes AWS IoT a revocation.
async fn aws_revocation_pending(store: &Store) -> Vec<String> {
    let sql = "SELECT serial FROM issued_certificates WHERE aws_revocation_pending ORDER BY serial";
    let rows: Vec<(HexText,)> = match store {
        Store::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
        Store::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
    };
    rows.into_iter().map(|(s,)| s.0).collect()
}

async fn claim_of(store: &Store, thing: &str) -> Option<String> {
    let sql = "SELECT serial FROM thing_claims WHERE thing_name = $1";
    let row: Option<(HexText,)> = match store {
        Store::Postgres(pool) => sqlx::query_as(sql).bind(thing).fetch_optional(pool).await,
        Store::Sqlite(pool) => sqlx::query_as(sql).bind(thing).fetch_optional(pool).await,
    }
    .unwrap();
    row.map(|(s,)| s.0)
}

/// The `certificate.revoke` audit records, oldest first, as (outcome, target, detail).
async fn revoke_audit(app: &TestApp) -> Vec<(String, String, String)> {
    let audit = json(app.get(&app.admin, "/v1/admin/audit").await).await;
    let mut records: Vec<_> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "certificate.revoke")
        .map(|r| {
            assert_eq!(r["actor"], "admin-1");
            (
                r["outcome"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
                r["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    records.reverse();
    records
}

async fn status_of(app: &TestApp, serial: &str) -> String {
    let row = json(
        app.get(&app.viewer, &format!("/v1/certificates/{serial}"))
            .await,
    )
    .await;
    row["status"].as_str().unwrap().to_owned()
}

/// Runs openssl; its verdict is on stdout or stderr depending on the subcommand.
fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs")
}

fn all_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `openssl crl -text` entries: (serial as openssl prints it, the text of that entry).
fn crl_entries(text: &str) -> Vec<(String, String)> {
    text.split("Serial Number: ")
        .skip(1)
        .map(|entry| {
            let (serial, rest) = entry.split_once('\n').unwrap();
            (serial.trim().to_ascii_lowercase(), rest.to_owned())
        })
        .collect()
}

async fn revoking_marks_the_ledger_row_frees_its_claim_and_is_audited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let target = issue(&app, "Revoke-1").await;
    let bystander = issue(&app, "Revoke-2").await;
    assert_eq!(
        claim_of(&app.store, "Revoke-1").await.as_deref(),
        Some(target.serial.as_str())
    );

    let response = app
        .client
        .post(app.url(&format!(
            "/v1/admin/certificates/{}/revoke",
            target.serial.to_ascii_uppercase()
        )))
        .bearer_auth(&app.admin)
        .header("x-request-id", "revoke-request-1")
        .json(&serde_json::json!({"reason": "key_compromise"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let revoked = json(response).await;
    assert_eq!(revoked["serial"], target.serial.as_str());
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revocation_reason"], "key_compromise");
    let revoked_at = revoked["revoked_at"].as_str().unwrap();
    time::OffsetDateTime::parse(revoked_at, &time::format_description::well_known::Rfc3339)
        .expect("revoked_at is RFC 3339");
    assert_eq!(revoked["certificate_pem"], target.cert_pem.as_str());

    // The answer is the ledger row exactly as GET shows it.
    let row = json(
        app.get(&app.viewer, &format!("/v1/certificates/{}", target.serial))
            .await,
    )
    .await;
    assert_eq!(row, revoked);

    let listed = json(
        app.get(&app.viewer, "/v1/certificates?status=revoked")
            .await,
    )
    .await;
    let serials: Vec<_> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["serial"].as_str().unwrap())
        .collect();
    assert_eq!(serials, [target.serial.as_str()]);
    let active = json(app.get(&app.viewer, "/v1/certificates?status=active").await).await;
    assert_eq!(active["items"][0]["serial"], bystander.serial.as_str());
    assert_eq!(active["items"].as_array().unwrap().len(), 1);

    // The claim is gone, AWS IoT is still to be told, and the bystander is untouched.
    assert_eq!(claim_of(&app.store, "Revoke-1").await, None);
    assert_eq!(
        claim_of(&app.store, "Revoke-2").await.as_deref(),
        Some(bystander.serial.as_str())
    );
    assert_eq!(
        aws_revocation_pending(&app.store).await,
        [target.serial.as_str()]
    );

    let audit = json(app.get(&app.admin, "/v1/admin/audit").await).await;
    let record = &audit["items"][0];
    assert_eq!(record["action"], "certificate.revoke");
    assert_eq!(record["actor"], "admin-1");
    assert_eq!(record["target"], target.serial.as_str());
    assert_eq!(record["outcome"], "success");
    assert_eq!(record["detail"], "reason=key_compromise");
    // The audit records the service's own request id, never the client's.
    let audited_id = record["request_id"].as_str().unwrap();
    assert_ne!(audited_id, "revoke-request-1");
    assert!(uuid::Uuid::parse_str(audited_id).is_ok(), "{audited_id}");
}

async fn an_empty_body_or_empty_object_revokes_as_unspecified(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let no_body = issue(&app, "Plain-1").await;
    let empty_object = issue(&app, "Plain-2").await;

    let response = revoke_as(&app, &app.admin, &no_body.serial, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["revocation_reason"], "unspecified");

    let response = revoke_as(
        &app,
        &app.admin,
        &empty_object.serial,
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["revocation_reason"], "unspecified");
}

async fn revoking_twice_is_409_and_the_first_revocation_stands(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cert = issue(&app, "Twice-1").await;
    let first = revoke(&app, &cert.serial, "superseded").await;

    let response = revoke_as(
        &app,
        &app.admin,
        &cert.serial,
        Some(serde_json::json!({"reason": "key_compromise"})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let problem = json(response).await;
    assert_eq!(problem["code"], "certificate_already_revoked");
    assert!(
        problem["detail"].as_str().unwrap().contains("superseded"),
        "{problem}"
    );
    let row = json(
        app.get(&app.viewer, &format!("/v1/certificates/{}", cert.serial))
            .await,
    )
    .await;
    assert_eq!(row["revocation_reason"], "superseded");
    assert_eq!(row["revoked_at"], first["revoked_at"]);

    // Concurrent revocations of one certificate: exactly one wins.
    let racer = issue(&app, "Twice-2").await;
    let attempts = (0..6).map(|_| revoke_as(&app, &app.admin, &racer.serial, None));
    let statuses: Vec<_> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );

    let audit = revoke_audit(&app).await;
    assert_eq!(
        audit[..2],
        [
            (
                "success".to_owned(),
                cert.serial.clone(),
                "reason=superseded".to_owned()
            ),
            (
                "failure".to_owned(),
                cert.serial.clone(),
                "reason=key_compromise; refused: certificate_already_revoked".to_owned()
            ),
        ]
    );
    let racer_outcomes: Vec<_> = audit[2..]
        .iter()
        .inspect(|(_, target, _)| assert_eq!(target, &racer.serial))
        .map(|(outcome, _, _)| outcome.as_str())
        .collect();
    assert_eq!(racer_outcomes.len(), 6);
    assert_eq!(
        racer_outcomes.iter().filter(|o| **o == "success").count(),
        1
    );
}

async fn unknown_serials_are_404_and_unknown_reasons_422(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cert = issue(&app, "Unknown-1").await;

    for serial in ["4".repeat(40), "not-a-serial".to_owned()] {
        let response = revoke_as(&app, &app.admin, &serial, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{serial}");
        assert_eq!(json(response).await["code"], "certificate_not_found");
    }

    for reason in [
        "certificate_hold",
        "remove_from_crl",
        "KeyCompromise",
        "bogus",
    ] {
        let response = revoke_as(
            &app,
            &app.admin,
            &cert.serial,
            Some(serde_json::json!({ "reason": reason })),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{reason}"
        );
        let problem = json(response).await;
        assert_eq!(problem["code"], "invalid_revocation_reason");
        let detail = problem["detail"].as_str().unwrap();
        for allowed in [
            "unspecified",
            "key_compromise",
            "ca_compromise",
            "affiliation_changed",
            "superseded",
            "cessation_of_operation",
            "privilege_withdrawn",
            "aa_compromise",
        ] {
            assert!(detail.contains(allowed), "{detail}");
        }
    }
    // A malformed body is the generic 400.
    let response = revoke_as(
        &app,
        &app.admin,
        &cert.serial,
        Some(serde_json::json!({"reason": "superseded", "extra": 1})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(response).await["code"], "invalid_request");

    assert_eq!(status_of(&app, &cert.serial).await, "active");
    assert!(aws_revocation_pending(&app.store).await.is_empty());
    let audit = revoke_audit(&app).await;
    assert_eq!(audit.len(), 7, "{audit:?}");
    assert!(audit.iter().all(|(outcome, _, _)| outcome == "failure"));
    assert_eq!(
        audit[0].2,
        "reason=unspecified; refused: certificate_not_found"
    );
    assert_eq!(audit[1].1, "not-a-serial");
    assert_eq!(audit[2].2, "refused: invalid_revocation_reason");
    assert_eq!(audit[6].2, "refused: invalid_request");
}

async fn only_admins_may_revoke(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cert = issue(&app, "Admins-1").await;
    for token in [&app.viewer, &app.station] {
        let response = revoke_as(&app, token, &cert.serial, None).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(json(response).await["code"], "forbidden");
    }
    let response = app
        .client
        .post(app.url(&format!("/v1/admin/certificates/{}/revoke", cert.serial)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&app, &cert.serial).await, "active");
    assert!(revoke_audit(&app).await.is_empty());
}

async fn a_revoked_thing_name_can_be_provisioned_again_under_reject(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = issue(&app, "Again-1").await;
    let response = app.sign(&csr("Again-1", "JP").pem).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(json(response).await["code"], "thing_already_provisioned");

    revoke(&app, &first.serial, "superseded").await;
    let second = issue(&app, "Again-1").await;
    assert_ne!(second.serial, first.serial);
    assert_eq!(
        claim_of(&app.store, "Again-1").await.as_deref(),
        Some(second.serial.as_str())
    );
    // The new certificate holds the name as the first one did.
    let response = app.sign(&csr("Again-1", "JP").pem).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
}

async fn the_crl_verifies_with_the_ca_and_lists_each_revoked_serial_with_its_reason(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let dir = app.dir.path();
    let compromised = issue(&app, "Crl-1").await;
    let retired = issue(&app, "Crl-2").await;
    let unreasoned = issue(&app, "Crl-3").await;
    let active = issue(&app, "Crl-4").await;
    revoke(&app, &compromised.serial, "key_compromise").await;
    revoke(&app, &retired.serial, "cessation_of_operation").await;
    revoke(&app, &unreasoned.serial, "unspecified").await;

    let (content_type, der) = fetch_crl(&app, &active.ca_id, "").await;
    assert_eq!(content_type, "application/pkix-crl");
    std::fs::write(dir.join("crl.der"), &der).unwrap();
    write(dir, "ca.pem", &active.ca_pem);

    let verified = openssl(
        dir,
        &[
            "crl", "-inform", "DER", "-in", "crl.der", "-CAfile", "ca.pem", "-noout",
        ],
    );
    assert!(verified.status.success(), "{}", all_output(&verified));
    assert!(
        all_output(&verified).contains("verify OK"),
        "{}",
        all_output(&verified)
    );

    let text = openssl(
        dir,
        &["crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text"],
    );
    assert!(text.status.success(), "{}", all_output(&text));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("Version 2"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    assert!(text.contains("X509v3 CRL Number"), "{text}");
    assert!(text.contains("Next Update"), "{text}");

    let entries = crl_entries(&text);
    let serials: Vec<_> = entries.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        serials,
        [
            compromised.serial.as_str(),
            retired.serial.as_str(),
            unreasoned.serial.as_str()
        ],
        "{text}"
    );
    assert!(entries[0].1.contains("Key Compromise"), "{text}");
    assert!(entries[1].1.contains("Cessation Of Operation"), "{text}");
    // RFC 5280 section 5.3.1: an unspecified reason is left out rather than written as 0.
    assert!(!entries[2].1.contains("CRL Reason Code"), "{text}");
}

async fn openssl_refuses_a_revoked_certificate_with_the_pem_crl_and_accepts_an_active_one(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let dir = app.dir.path();
    let revoked = issue(&app, "Verify-1").await;
    let active = issue(&app, "Verify-2").await;
    revoke(&app, &revoked.serial, "key_compromise").await;

    let (content_type, pem) = fetch_crl(&app, &active.ca_id, "?format=pem").await;
    assert_eq!(content_type, "application/x-pem-file");
    let pem = String::from_utf8(pem).unwrap();
    assert!(pem.starts_with("-----BEGIN X509 CRL-----\n"), "{pem}");
    assert!(pem.ends_with("-----END X509 CRL-----\n"), "{pem}");
    assert_eq!(pem::parse(&pem).unwrap().tag(), "X509 CRL");
    // DER is the default, and may be asked for by name.
    let (content_type, _) = fetch_crl(&app, &active.ca_id, "?format=der").await;
    assert_eq!(content_type, "application/pkix-crl");

    write(dir, "crl.pem", &pem);
    write(dir, "ca.pem", &active.ca_pem);
    write(dir, "revoked.pem", &revoked.cert_pem);
    write(dir, "active.pem", &active.cert_pem);
    let verify = |cert: &str| {
        openssl(
            dir,
            &[
                "verify",
                "-crl_check",
                "-CRLfile",
                "crl.pem",
                "-CAfile",
                "ca.pem",
                cert,
            ],
        )
    };
    let refused = verify("revoked.pem");
    assert!(!refused.status.success(), "{}", all_output(&refused));
    assert!(
        all_output(&refused).contains("certificate revoked"),
        "{}",
        all_output(&refused)
    );
    let accepted = verify("active.pem");
    assert!(accepted.status.success(), "{}", all_output(&accepted));
    assert!(all_output(&accepted).contains("active.pem: OK"));
}

async fn a_non_issuing_ca_signs_its_own_crl(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = app.dir.path();
    let revoked = issue(&app, "Other-1").await;
    revoke(&app, &revoked.serial, "key_compromise").await;

    let keys = KeyStore::from_settings(&app.settings);
    let ca_admin = CaAdmin::new(&app.store, &keys);
    let subject = CaSubject {
        common_name: "factory-ca second root".into(),
        country: None,
        state: None,
        locality: None,
        organization: Some("factory-ca".into()),
        organizational_unit: None,
    };
    let actor = Actor {
        name: "test",
        request_id: None,
    };
    let (record, _) = ca_admin
        .create(CaAlgorithm::Rsa2048, &subject, 30, false, actor)
        .await
        .unwrap();
    assert!(!record.is_issuing);
    assert_ne!(record.id, revoked.ca_id);

    let (_, der) = fetch_crl(&app, &record.id, "").await;
    std::fs::write(dir.join("other.der"), &der).unwrap();
    write(dir, "other-ca.pem", &record.certificate_pem);
    write(dir, "issuing-ca.pem", &revoked.ca_pem);
    let args = |ca: &'static str| {
        [
            "crl",
            "-inform",
            "DER",
            "-in",
            "other.der",
            "-CAfile",
            ca,
            "-noout",
            "-text",
        ]
    };
    let verified = openssl(dir, &args("other-ca.pem"));
    assert!(
        all_output(&verified).contains("verify OK"),
        "{}",
        all_output(&verified)
    );
    // Signed by the second CA, not by the issuing one, and without the issuing CA's revocation.
    let wrong_ca = openssl(dir, &args("issuing-ca.pem"));
    assert!(
        !all_output(&wrong_ca).contains("verify OK"),
        "{}",
        all_output(&wrong_ca)
    );
    assert!(
        all_output(&verified).contains("No Revoked Certificates"),
        "{}",
        all_output(&verified)
    );
    assert!(all_output(&verified).contains("sha256WithRSAEncryption"));
}

async fn crls_of_unknown_cas_are_404_and_bad_formats_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ca = json(app.get(&app.viewer, "/v1/ca").await).await;
    let ca_id = ca["id"].as_str().unwrap();

    let response = app
        .client
        .get(app.url("/v1/cas/ca-0000000000000000/crl"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(response).await["code"], "ca_not_found");

    for query in ["?format=xml", "?limit=1"] {
        let response = app
            .client
            .get(app.url(&format!("/v1/cas/{ca_id}/crl{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(json(response).await["code"], "invalid_query");
    }
    // With nothing revoked the CRL is still there, and lists nothing.
    let (_, der) = fetch_crl(&app, ca_id, "").await;
    std::fs::write(app.dir.path().join("empty.der"), &der).unwrap();
    let text = openssl(
        app.dir.path(),
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            "empty.der",
            "-noout",
            "-text",
        ],
    );
    assert!(
        all_output(&text).contains("No Revoked Certificates"),
        "{}",
        all_output(&text)
    );
}

/// An imported CA whose keyUsage allows keyCertSign but not cRLSign (RFC 5280 section 4.2.1.3)
/// signs device certificates but no CRL: a known condition, answered 409 with its own code.
async fn the_crl_of_an_imported_ca_without_crl_sign_is_409_with_its_own_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Imported Without cRLSign");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(30);
    let certificate = params.self_signed(&key).unwrap();
    let imported = app
        .admin_json(
            reqwest::Method::POST,
            "/v1/admin/cas/import",
            serde_json::json!({
                "certificate_pem": certificate.pem(),
                "private_key_pem": key.serialize_pem(),
            }),
        )
        .await;
    assert_eq!(imported.status(), StatusCode::CREATED);
    let ca_id = json(imported).await["id"].as_str().unwrap().to_owned();

    for path in ["crl", "crl?format=pem", "delta-crl"] {
        let response = app
            .client
            .get(app.url(&format!("/v1/cas/{ca_id}/{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let problem = json(response).await;
        assert_eq!(problem["code"], "ca_cannot_sign_crls");
        assert!(
            problem["detail"].as_str().unwrap().contains("cRLSign"),
            "{problem}"
        );
    }
    // The issuing CA's CRL is unaffected.
    let issuing = json(app.get(&app.viewer, "/v1/ca").await).await;
    let (_, der) = fetch_crl(&app, issuing["id"].as_str().unwrap(), "").await;
    assert!(!der.is_empty());
}
