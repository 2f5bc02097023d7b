//! Bad input gets a clear 4xx with a stable code, and the ledger does not change.

use std::process::Command;

use der_writer::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use der_writer::{Encode, Tag};

use crate::common::*;
use crate::on_both_backends;
use reqwest::StatusCode;
use x509_parser::prelude::*;

on_both_backends!(each_bad_request_gets_its_code_and_changes_nothing);

/// A CSR made by the openssl command line: `newkey` is e.g. `rsa:2048`, `ec` with params.
fn openssl_csr(dir: &std::path::Path, key_args: &[&str], subject: &str) -> String {
    let out = dir.join(format!("{}.csr", uuid::Uuid::new_v4().simple()));
    let key = dir.join(format!("{}.key", uuid::Uuid::new_v4().simple()));
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-new", "-nodes", "-subj", subject, "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&out)
        .args(key_args);
    run(&mut cmd);
    std::fs::read_to_string(out).unwrap()
}

/// The CSR `a` with the signature of `b` (same key type): a signature by another key.
fn with_signature_of(a: &str, b: &str) -> String {
    let a_der = der_of(a);
    let b_der = der_of(b);
    let (_, a_csr) = X509CertificationRequest::from_der(&a_der).unwrap();
    let (_, b_csr) = X509CertificationRequest::from_der(&b_der).unwrap();
    let sig = b_csr.signature_value.data.to_vec();
    let ecdsa_with_sha256 = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
    let algorithm = [ecdsa_with_sha256.to_der().unwrap()].concat();
    let content = [
        a_csr.certification_request_info.raw.to_vec(),
        AnyRef::new(Tag::Sequence, &algorithm)
            .unwrap()
            .to_der()
            .unwrap(),
        BitStringRef::new(0, &sig).unwrap().to_der().unwrap(),
    ]
    .concat();
    let der = AnyRef::new(Tag::Sequence, &content)
        .unwrap()
        .to_der()
        .unwrap();
    factory_ca::ca::to_pem("CERTIFICATE REQUEST", &der)
}

enum Body {
    Json(serde_json::Value),
    Raw(&'static str, Vec<u8>),
}

async fn each_bad_request_gets_its_code_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = app.dir.path().to_path_buf();
    let good = csr("Good-1", "JP").pem;
    let csr_json = |pem: &str| Body::Json(serde_json::json!({ "csr": pem }));

    let mut tampered = der_of(&good);
    let at = tampered.windows(6).position(|w| w == b"Good-1").unwrap();
    tampered[at] = b'X';
    let truncated = good[..good.len() / 2].to_owned();
    let two_blocks = format!("{good}{good}");
    let wrong_label = good.replace("CERTIFICATE REQUEST", "CERTIFICATE");
    let trailing = format!("{good}trailing garbage\n");
    let mut der_trailing = der_of(&good);
    der_trailing.extend_from_slice(&[0, 0]);
    let other_key = with_signature_of(&good, &csr("Good-1", "JP").pem);
    let ed25519 = csr_with(
        &rcgen::PKCS_ED25519,
        &[
            (rcgen::DnType::CountryName, "JP"),
            (rcgen::DnType::CommonName, "Ed-1"),
        ],
    )
    .pem;

    let cases: Vec<(&str, Body, StatusCode, &str)> = vec![
        (
            "not a CSR",
            csr_json("hello"),
            StatusCode::BAD_REQUEST,
            "invalid_csr",
        ),
        (
            "empty",
            csr_json(""),
            StatusCode::BAD_REQUEST,
            "invalid_csr",
        ),
        (
            "truncated PEM",
            csr_json(&truncated),
            StatusCode::BAD_REQUEST,
            "invalid_csr",
        ),
        (
            "two PEM blocks",
            csr_json(&two_blocks),
            StatusCode::BAD_REQUEST,
            "invalid_csr",
        ),
        (
            "wrong PEM label",
            csr_json(&wrong_label),
            StatusCode::BAD_REQUEST,
            "invalid_csr",
        ),
        (
            "trailing text",
            csr_json(&trailing),
            StatusCode::BAD_REQUEST,
            "invalid_csr",
        ),
        (
            "garbage DER",
            Body::Raw("application/pkcs10", vec![0x30, 0x82, 0xff, 0xff, 1, 2, 3]),
            StatusCode::BAD_REQUEST,
            "invalid_csr",
        ),
        (
            "DER with trailing bytes",
            Body::Raw("application/pkcs10", der_trailing),
            StatusCode::BAD_REQUEST,
            "invalid_csr",
        ),
        (
            "tampered subject",
            Body::Raw("application/pkcs10", tampered),
            StatusCode::BAD_REQUEST,
            "csr_signature_invalid",
        ),
        (
            "signed by another key",
            csr_json(&other_key),
            StatusCode::BAD_REQUEST,
            "csr_signature_invalid",
        ),
        (
            "RSA 1024",
            csr_json(&openssl_csr(
                &dir,
                &["-newkey", "rsa:1024"],
                "/C=JP/CN=Rsa-1024",
            )),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_key",
        ),
        (
            "secp256k1",
            csr_json(&openssl_csr(
                &dir,
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
                "/C=JP/CN=K1",
            )),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_key",
        ),
        (
            "Ed25519",
            csr_json(&ed25519),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_key",
        ),
        (
            "no CN",
            csr_json(&openssl_csr(
                &dir,
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                "/C=JP/O=Org",
            )),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_common_name",
        ),
        (
            "CN twice",
            csr_json(&openssl_csr(
                &dir,
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                "/C=JP/CN=a/CN=b",
            )),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_common_name",
        ),
        (
            "CN with space",
            csr_json(&csr("Thing 1", "JP").pem),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_thing_name",
        ),
        (
            "CN of 129",
            csr_json(&csr(&"a".repeat(129), "JP").pem),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_thing_name",
        ),
        (
            "no country",
            csr_json(&openssl_csr(
                &dir,
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                "/O=Org/CN=NoC",
            )),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_country",
        ),
        (
            "country XX",
            csr_json(&csr("Cc-1", "XX").pem),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_country",
        ),
        (
            "country jp",
            csr_json(&csr("Cc-2", "jp").pem),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_country",
        ),
        (
            "emailAddress",
            csr_json(&openssl_csr(
                &dir,
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                "/C=JP/CN=Mail-1/emailAddress=a@example.com",
            )),
            StatusCode::UNPROCESSABLE_ENTITY,
            "subject_attribute_not_allowed",
        ),
        (
            "plain text",
            Body::Raw("text/plain", good.clone().into_bytes()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "no content type",
            Body::Raw("", good.clone().into_bytes()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "broken JSON",
            Body::Raw("application/json", b"{\"csr\": ".to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "JSON without csr",
            Body::Json(serde_json::json!({"pem": good})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "invalid UTF-8 JSON",
            Body::Raw("application/json", b"{\"csr\": \"\xff\xfe\"}".to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "1 MiB body",
            Body::Raw("application/pkcs10", vec![b'A'; 1 << 20]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];

    for (name, body, status, code) in cases {
        // A client per case: the server closes a connection whose oversized body it did not
        // read, and a pooled connection would race with that close.
        let request = reqwest::Client::new()
            .post(app.url("/v1/certificates"))
            .bearer_auth(&app.station);
        let request = match body {
            Body::Json(v) => request.json(&v),
            Body::Raw("", bytes) => request.body(bytes),
            Body::Raw(content_type, bytes) => {
                request.header("Content-Type", content_type).body(bytes)
            }
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{name}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
        let body = json(response).await;
        assert_eq!(body["code"], code, "{name}: {body}");
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{name}");
    }
    assert_eq!(app.ledger_count().await, 0, "no bad request left a record");

    // The same CSRs in their good form are accepted: raw PEM and raw DER as application/pkcs10.
    let pem_raw = app
        .client
        .post(app.url("/v1/certificates"))
        .bearer_auth(&app.station)
        .header("Content-Type", "application/pkcs10")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(pem_raw.status(), StatusCode::CREATED);
    let der_raw = app
        .client
        .post(app.url("/v1/certificates"))
        .bearer_auth(&app.station)
        .header("Content-Type", "application/pkcs10")
        .body(der_of(&csr("Good-2", "JP").pem))
        .send()
        .await
        .unwrap();
    assert_eq!(der_raw.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_csr_asking_to_be_a_ca_with_sans_gets_a_plain_device_certificate() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example.com".to_owned()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CountryName, "JP");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Sneaky-1");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(3));
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();

    let response = app.sign(&csr_pem).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = json(response).await;
    let der = der_of(body["certificate_pem"].as_str().unwrap());
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(!cert.is_ca());
    assert!(cert.subject_alternative_name().unwrap().is_none());
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(!ku.key_cert_sign() && ku.digital_signature());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
}
