//! `/v1/admin/cas/import` with `chain_pem`: a CA below an offline root and an intermediate.
//! The chain is checked up to a self-signed root; issued chains then carry the device
//! certificate, the issuing CA and the intermediate (never the root), which openssl verifies
//! with only the root trusted; a restart keeps the chain.

use std::process::Command;

use crate::common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reqwest::{Method, StatusCode};
use serde_json::json;

struct Level {
    pem: String,
    der: Vec<u8>,
    key: KeyPair,
}

fn ca_params(name: &str) -> CertificateParams {
    let now = time::OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "JP");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Acme");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    params
}

fn root(name: &str) -> Level {
    let key = KeyPair::generate().unwrap();
    let cert = ca_params(name).self_signed(&key).unwrap();
    Level {
        pem: cert.pem(),
        der: cert.der().to_vec(),
        key,
    }
}

fn below(parent: &Level, name: &str) -> Level {
    below_with(parent, name, |_| {})
}

fn below_with(parent: &Level, name: &str, configure: impl FnOnce(&mut CertificateParams)) -> Level {
    let key = KeyPair::generate().unwrap();
    let issuer = Issuer::from_ca_cert_der(&parent.der.clone().into(), &parent.key).unwrap();
    let mut params = ca_params(name);
    configure(&mut params);
    // openssl -x509_strict wants it on every certificate below the root.
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).unwrap();
    Level {
        pem: cert.pem(),
        der: cert.der().to_vec(),
        key,
    }
}

fn count(pem_text: &str) -> usize {
    pem::parse_many(pem_text).unwrap().len()
}

/// `openssl verify -x509_strict -purpose sslclient` of the device certificate (the first of
/// `chain`) with only `root_pem` trusted and the rest of `chain` untrusted.
fn openssl_verifies(root_pem: &str, chain: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let blocks = pem::parse_many(chain).unwrap();
    let to_pem = |b: &pem::Pem| pem::encode(b);
    std::fs::write(dir.path().join("root.pem"), root_pem).unwrap();
    std::fs::write(dir.path().join("leaf.pem"), to_pem(&blocks[0])).unwrap();
    let untrusted: String = blocks[1..].iter().map(to_pem).collect();
    std::fs::write(dir.path().join("untrusted.pem"), untrusted).unwrap();
    let out = Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "untrusted.pem",
            "leaf.pem",
        ])
        .output()
        .expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn a_ca_imported_with_its_chain_issues_the_chain_up_to_the_root(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let root = root("Offline Root");
    // The intermediate limits what may be signed below it to C=JP.
    let mid = below_with(&root, "Plant Intermediate", |params| {
        let mut jp = DistinguishedName::new();
        jp.push(DnType::CountryName, "JP");
        params.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: vec![rcgen::GeneralSubtree::DirectoryName(jp)],
            excluded_subtrees: Vec::new(),
        });
    });
    let issuing = below(&mid, "Line Issuing");

    // A chain that does not reach the issuing CA's issuer is refused, naming what is missing.
    let other_root = self::root("Offline Root");
    let refused = app
        .admin_json(
            Method::POST,
            "/v1/admin/cas/import",
            json!({"certificate_pem": issuing.pem, "private_key_pem": issuing.key.serialize_pem(),
                   "chain_pem": format!("{}{}", mid.pem, other_root.pem)}),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = json(refused).await;
    assert_eq!(refused["code"], "ca_rejected");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("the chain does not verify"),
        "{refused}"
    );

    // The chain in any order, with the root.
    let imported = app
        .admin_json(
            Method::POST,
            "/v1/admin/cas/import",
            json!({"certificate_pem": issuing.pem, "private_key_pem": issuing.key.serialize_pem(),
                   "chain_pem": format!("{}{}", root.pem, mid.pem), "activate": true}),
        )
        .await;
    assert_eq!(imported.status(), StatusCode::CREATED);
    let imported = json(imported).await;
    let stored_chain = imported["chain_pem"].as_str().unwrap();
    assert_eq!(count(stored_chain), 2);
    assert_eq!(
        pem::parse_many(stored_chain).unwrap()[0].contents(),
        mid.der
    );

    let issued = app.sign(&csr("Chain-1", "JP").pem).await;
    assert_eq!(issued.status(), StatusCode::CREATED);
    let issued = json(issued).await;
    assert_eq!(issued["issuing_ca"], imported["id"]);
    let chain = issued["certificate_chain_pem"].as_str().unwrap();
    let blocks = pem::parse_many(chain).unwrap();
    assert_eq!(blocks.len(), 3, "device, issuing CA, intermediate");
    assert_eq!(blocks[1].contents(), issuing.der);
    assert_eq!(blocks[2].contents(), mid.der);
    assert_eq!(
        pem::parse(issued["ca_certificate_pem"].as_str().unwrap())
            .unwrap()
            .contents(),
        issuing.der
    );
    let (ok, text) = openssl_verifies(&root.pem, chain);
    assert!(ok, "{text}");
    // Without the intermediate openssl cannot reach the root: the chain is what makes it.
    let short: String = blocks[..2].iter().map(pem::encode).collect();
    assert!(!openssl_verifies(&root.pem, &short).0);

    // The intermediate's name constraints hold for the CA below it, before signing.
    let before = app.ledger_count().await;
    let outside = app.sign(&csr("Chain-US", "US").pem).await;
    assert_eq!(outside.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let outside = json(outside).await;
    assert_eq!(outside["code"], "name_constraints_violation");
    assert!(
        outside["detail"]
            .as_str()
            .unwrap()
            .contains("must begin with C=JP"),
        "{outside}"
    );
    assert_eq!(app.ledger_count().await, before);

    // After a restart the stored chain is loaded with the CA, and its constraints.
    let app = app.restart().await;
    let outside = json(app.sign(&csr("Chain-US-2", "US").pem).await).await;
    assert_eq!(outside["code"], "name_constraints_violation");
    let issued = json(app.sign(&csr("Chain-2", "JP").pem).await).await;
    let chain = issued["certificate_chain_pem"].as_str().unwrap();
    assert_eq!(count(chain), 3);
    let (ok, text) = openssl_verifies(&root.pem, chain);
    assert!(ok, "{text}");
    let listed = json(app.get(&app.admin, "/v1/admin/cas").await).await;
    let item = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == imported["id"])
        .unwrap()
        .clone();
    assert_eq!(count(item["chain_pem"].as_str().unwrap()), 2);
}

#[tokio::test]
async fn a_ca_imported_with_its_chain_issues_the_chain_up_to_the_root_sqlite() {
    a_ca_imported_with_its_chain_issues_the_chain_up_to_the_root(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_ca_imported_with_its_chain_issues_the_chain_up_to_the_root_postgres() {
    a_ca_imported_with_its_chain_issues_the_chain_up_to_the_root(Backend::Postgres).await;
}

async fn line_subject_csr(ou: &str, thing: &str) -> String {
    use rcgen::DnType;
    csr_with(
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &[
            (DnType::CountryName, "JP"),
            (DnType::OrganizationName, "Acme"),
            (DnType::OrganizationalUnitName, ou),
            (DnType::CommonName, thing),
        ],
    )
    .pem
}

async fn a_line_sub_ca_signs_only_inside_its_name_constraints(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let root_ca = json(app.get(&app.admin, "/v1/ca").await).await;
    let root_id = root_ca["id"].as_str().unwrap().to_owned();
    let root_pem = root_ca["certificate_pem"].as_str().unwrap().to_owned();

    // The fields belong to sub-CAs only, and the subtree must be well formed.
    for (body, code, expected) in [
        (
            json!({"subject": {"common_name": "Line 3"}, "name_constraints": "C=JP"}),
            "invalid_request",
            "give parent_id too",
        ),
        (
            json!({"subject": {"common_name": "Line 3"}, "parent_id": root_id,
                   "name_constraints": "C=JP,Org=Acme"}),
            "ca_rejected",
            "unknown attribute \"Org\"",
        ),
        (
            json!({"subject": {"common_name": "Line 3"}, "parent_id": "ca-0000000000000000"}),
            "ca_not_found",
            "ca-0000000000000000",
        ),
    ] {
        let refused = app.admin_json(Method::POST, "/v1/admin/cas", body).await;
        let status = refused.status();
        let refused = json(refused).await;
        assert_eq!(refused["code"], code, "{refused}");
        assert!(status.is_client_error(), "{status}");
        assert!(
            refused["detail"].as_str().unwrap().contains(expected),
            "{refused}"
        );
    }

    let created = app
        .admin_json(
            Method::POST,
            "/v1/admin/cas",
            json!({"subject": {"common_name": "Line 3 CA", "country": "JP", "organization": "Acme"},
                   "parent_id": root_id, "name_constraints": "C=JP,O=Acme,OU=Line3",
                   "path_len": 0, "activate": true, "validity_days": 365}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json(created).await;
    let line_pem = created["certificate_pem"].as_str().unwrap();
    assert_eq!(created["chain_pem"].as_str().unwrap(), root_pem);
    // Critical nameConstraints with the subtree, pathlen:0, as openssl reads them.
    let text = openssl_text(line_pem);
    assert!(text.contains("X509v3 Name Constraints: critical"), "{text}");
    assert!(
        text.contains("DirName:C = JP, O = Acme, OU = Line3"),
        "{text}"
    );
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");

    let inside = app
        .sign(&line_subject_csr("Line3", "Line3-Dev-1").await)
        .await;
    assert_eq!(inside.status(), StatusCode::CREATED);
    let inside = json(inside).await;
    assert_eq!(inside["issuing_ca"], created["id"]);
    let chain = inside["certificate_chain_pem"].as_str().unwrap();
    // Device, line CA; the root is the verifier's trust anchor, not sent.
    assert_eq!(count(chain), 2);
    let (ok, text) = openssl_verifies(&root_pem, chain);
    assert!(ok, "{text}");

    let before = app.ledger_count().await;
    for csr_pem in [
        line_subject_csr("Line4", "Line4-Dev-1").await,
        csr("No-Org-1", "JP").pem,
    ] {
        let refused = app.sign(&csr_pem).await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let refused = json(refused).await;
        assert_eq!(refused["code"], "name_constraints_violation");
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .contains("must begin with C=JP, O=Acme, OU=Line3"),
            "{refused}"
        );
    }
    assert_eq!(app.ledger_count().await, before, "nothing recorded");

    // pathlen:0: the line CA cannot have a CA below it.
    let refused = app
        .admin_json(
            Method::POST,
            "/v1/admin/cas",
            json!({"subject": {"common_name": "Below Line 3"}, "parent_id": created["id"]}),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let refused = json(refused).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("pathLenConstraint 0"),
        "{refused}"
    );

    // After a restart the line CA still refuses outside subjects and sends its chain.
    let app = app.restart().await;
    let refused = json(app.sign(&csr("No-Org-2", "JP").pem).await).await;
    assert_eq!(refused["code"], "name_constraints_violation");
    let again = json(
        app.sign(&line_subject_csr("Line3", "Line3-Dev-2").await)
            .await,
    )
    .await;
    assert!(openssl_verifies(&root_pem, again["certificate_chain_pem"].as_str().unwrap()).0);
}

fn openssl_text(certificate_pem: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, certificate_pem).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_line_sub_ca_signs_only_inside_its_name_constraints_sqlite() {
    a_line_sub_ca_signs_only_inside_its_name_constraints(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_line_sub_ca_signs_only_inside_its_name_constraints_postgres() {
    a_line_sub_ca_signs_only_inside_its_name_constraints(Backend::Postgres).await;
}
