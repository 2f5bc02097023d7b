//! EST (RFC 7030) over HTTPS in process: `cacerts`, `simpleenroll` (HTTP Basic with a station
//! token, and a station client certificate), `csrattrs`, and the refusals, each answered in
//! EST's terms (`text/plain` with the code in `X-Error-Code`) and recording nothing. Issued
//! certificates are checked with `openssl verify`; tests/system/est.rs drives curl, openssl and
//! Python `cryptography`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use der::{Decode, Encode};
use factory_ca::config::ClientAuth;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use reqwest::StatusCode;
use tempfile::TempDir;

use crate::common::{Backend, TestApp, csr, der_of, json, run, write};
use crate::on_both_backends;

on_both_backends!(
    simpleenroll_with_a_station_token_as_basic_password_issues_and_records_channel_est,
    est_refusals_are_text_plain_with_the_code_and_record_nothing,
    a_checkpoint_signed_after_a_renewal_verifies,
);

type Ca = CertifiedIssuer<'static, KeyPair>;

fn new_ca(common_name: &str) -> Ca {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    CertifiedIssuer::self_signed(params, key).expect("CA")
}

/// A server with `[server.tls]` (optional station mTLS), its PKI and an HTTPS client.
struct EstApp {
    app: TestApp,
    pki: PathBuf,
    server_ca: reqwest::Certificate,
    station_identity: reqwest::Identity,
    _pki_dir: TempDir,
}

impl EstApp {
    async fn spawn(backend: Backend) -> EstApp {
        let pki_dir = tempfile::tempdir().expect("temp dir");
        let pki = pki_dir.path().to_path_buf();
        let server_ca = new_ca("EST Test Server CA");
        let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(vec!["127.0.0.1".into()]).expect("SAN");
        params
            .distinguished_name
            .push(DnType::CommonName, "est.test");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params.signed_by(&server_key, &server_ca).expect("cert");
        let cert_file = write(&pki, "server.crt", &server_cert.pem());
        let key_file = write(&pki, "server.key", &server_key.serialize_pem());
        owner_only(&key_file);
        write(&pki, "server-ca.crt", &server_ca.pem());

        let station_ca = new_ca("EST Test Station CA");
        let station_ca_file = write(&pki, "station-ca.crt", &station_ca.pem());
        let station_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "line-7");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let station_cert = params
            .signed_by(&station_key, &station_ca)
            .expect("station cert");
        let identity = format!("{}{}", station_key.serialize_pem(), station_cert.pem());

        let app = TestApp::spawn_with(backend, |s| {
            s.server.tls.cert_file = Some(cert_file);
            s.server.tls.key_file = Some(key_file);
            s.server.tls.client_ca_file = Some(station_ca_file);
            s.server.tls.client_auth = ClientAuth::Optional;
        })
        .await;
        let mut est = EstApp {
            app,
            pki,
            server_ca: reqwest::Certificate::from_pem(server_ca.pem().as_bytes()).unwrap(),
            station_identity: reqwest::Identity::from_pem(identity.as_bytes()).unwrap(),
            _pki_dir: pki_dir,
        };
        est.app.base = est.app.base.replace("http://", "https://");
        est.app.client = est.client(false);
        est
    }

    /// An HTTPS client trusting the test server CA, with the station certificate when asked.
    fn client(&self, with_station_certificate: bool) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(self.server_ca.clone())
            .timeout(Duration::from_secs(30));
        if with_station_certificate {
            builder = builder.identity(self.station_identity.clone());
        }
        builder.build().expect("client")
    }

    fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// A device of `thing` (country JP) enrolled through `simpleenroll` by the station: its
    /// CSR, and an HTTPS client presenting its new certificate.
    async fn enrolled_device(&self, thing: &str) -> (String, reqwest::Client) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "JP");
        params.distinguished_name.push(DnType::CommonName, thing);
        let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();
        let enrolled = self
            .enroll(
                &self.app.client,
                Some(&self.app.station),
                "application/pkcs10",
                est_body(&csr_pem),
            )
            .await;
        let device = certs_of(enrolled).await.remove(0);
        let device_pem = ::pem::encode(&::pem::Pem::new("CERTIFICATE", device));
        let identity = format!("{}{device_pem}", key.serialize_pem());
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(self.server_ca.clone())
            .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        (csr_pem, client)
    }

    async fn enroll(
        &self,
        client: &reqwest::Client,
        password: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = client
            .post(self.url("/.well-known/est/simpleenroll"))
            .header("content-type", content_type)
            .body(body);
        if let Some(password) = password {
            request = request.basic_auth("line-1", Some(password));
        }
        request.send().await.expect("simpleenroll")
    }
}

#[cfg(unix)]
fn owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

#[cfg(not(unix))]
fn owner_only(_: &Path) {}

fn est_body(csr_pem: &str) -> String {
    STANDARD.encode(der_of(csr_pem))
}

/// The certificates of a base64 certs-only CMS SignedData answer, DER.
async fn certs_of(response: reqwest::Response) -> Vec<Vec<u8>> {
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/pkcs7-mime"),
        "{:?}",
        response.headers()
    );
    assert_eq!(response.headers()["content-transfer-encoding"], "base64");
    let text = response.text().await.unwrap();
    let compact: String = text.split_whitespace().collect();
    let der = STANDARD.decode(compact).expect("base64");
    let info = cms::content_info::ContentInfo::from_der(&der).expect("ContentInfo");
    let signed: cms::signed_data::SignedData = info.content.decode_as().expect("SignedData");
    assert!(signed.signer_infos.0.is_empty(), "certs-only has no signer");
    signed
        .certificates
        .expect("certificates")
        .0
        .iter()
        .map(|choice| match choice {
            cms::cert::CertificateChoices::Certificate(c) => c.to_der().unwrap(),
            other => panic!("not a certificate: {other:?}"),
        })
        .collect()
}

/// The EST error of a refused request: its status, and the code in the header and the text.
async fn est_error(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        response.headers()
    );
    let code = response.headers()["x-error-code"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    assert!(text.starts_with(&format!("{code}: ")), "{text}");
    (status, code)
}

async fn simpleenroll_with_a_station_token_as_basic_password_issues_and_records_channel_est(
    backend: Backend,
) {
    let est = EstApp::spawn(backend).await;
    let cacerts = est
        .app
        .client
        .get(est.url("/.well-known/est/cacerts"))
        .send()
        .await
        .unwrap();
    let cas = certs_of(cacerts).await;
    assert_eq!(cas.len(), 1);
    let ca_pem = ::pem::encode(&::pem::Pem::new("CERTIFICATE", cas[0].clone()));
    let issuing: serde_json::Value = json(est.app.get(&est.app.viewer, "/v1/ca").await).await;
    assert_eq!(der_of(issuing["certificate_pem"].as_str().unwrap()), cas[0]);

    let body = est_body(&csr("Thing-Est-1", "JP").pem);
    let response = est
        .enroll(
            &est.app.client,
            Some(&est.app.station),
            "application/pkcs10",
            body,
        )
        .await;
    let certs = certs_of(response).await;
    assert_eq!(certs.len(), 1);
    let device_pem = ::pem::encode(&::pem::Pem::new("CERTIFICATE", certs[0].clone()));
    let ca_path = write(&est.pki, "est-ca.pem", &ca_pem);
    let device_path = write(&est.pki, "est-device.pem", &device_pem);
    let verified = run(std::process::Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
        .arg(&ca_path)
        .arg(&device_path));
    let verified = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.contains(": OK"), "{verified}");

    let rows: serde_json::Value = json(
        est.app
            .get(&est.app.viewer, "/v1/certificates?thing_name=Thing-Est-1")
            .await,
    )
    .await;
    let row = &rows["items"][0];
    assert_eq!(row["channel"], "est");
    assert_eq!(row["station"], "station-1");

    // A station client certificate enrolls without a token, named by its CN.
    let body = est_body(&csr("Thing-Est-2", "JP").pem);
    let response = est
        .enroll(&est.client(true), None, "application/pkcs10", body)
        .await;
    assert_eq!(certs_of(response).await.len(), 1);
    let rows: serde_json::Value = json(
        est.app
            .get(&est.app.viewer, "/v1/certificates?thing_name=Thing-Est-2")
            .await,
    )
    .await;
    assert_eq!(rows["items"][0]["station"], "cert:line-7");
    assert_eq!(rows["items"][0]["channel"], "est");

    // A retry with the same Idempotency-Key and CSR answers the same certificate.
    let body = est_body(&csr("Thing-Est-3", "JP").pem);
    let mut answers = Vec::new();
    for _ in 0..2 {
        let response = est
            .app
            .client
            .post(est.url("/.well-known/est/simpleenroll"))
            .basic_auth("line-1", Some(&est.app.station))
            .header("content-type", "application/pkcs10")
            .header("idempotency-key", "est-retry-1")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let replayed = response.headers().get("idempotent-replayed").is_some();
        answers.push((certs_of(response).await, replayed));
    }
    assert_eq!(answers[0].0, answers[1].0);
    assert_eq!((answers[0].1, answers[1].1), (false, true));

    // The JSON API's rows say `api`.
    let signed = est.app.sign(&csr("Thing-Json-1", "JP").pem).await;
    assert_eq!(signed.status(), StatusCode::CREATED);
    let rows: serde_json::Value = json(
        est.app
            .get(&est.app.viewer, "/v1/certificates?thing_name=Thing-Json-1")
            .await,
    )
    .await;
    assert_eq!(rows["items"][0]["channel"], "api");

    // The thing claim holds across channels: the same thing name again is refused.
    let again = est
        .enroll(
            &est.app.client,
            Some(&est.app.station),
            "application/pkcs10",
            est_body(&csr("Thing-Json-1", "JP").pem),
        )
        .await;
    assert_eq!(
        est_error(again).await,
        (StatusCode::CONFLICT, "thing_already_provisioned".into())
    );
    assert_eq!(est.app.ledger_count().await, 4);
}

/// A refused enrollment: case, Basic password, content type, body, status, code.
type Refusal<'a> = (
    &'a str,
    Option<&'a str>,
    &'a str,
    String,
    StatusCode,
    &'a str,
);

async fn est_refusals_are_text_plain_with_the_code_and_record_nothing(backend: Backend) {
    let est = EstApp::spawn(backend).await;
    let client = &est.app.client;
    let station = Some(est.app.station.as_str());
    let good = est_body(&csr("Thing-Neg-1", "JP").pem);
    let pem = csr("Thing-Neg-1", "JP").pem;
    let cms_body = {
        let cacerts = client
            .get(est.url("/.well-known/est/cacerts"))
            .send()
            .await
            .unwrap();
        cacerts.text().await.unwrap()
    };
    let oversized = "A".repeat(est.app.settings.server.body_limit_bytes + 4);
    let cases: Vec<Refusal> = vec![
        (
            "no credentials",
            None,
            "application/pkcs10",
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "unknown token",
            Some("fca_nope"),
            "application/pkcs10",
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "viewer token",
            Some(est.app.viewer.as_str()),
            "application/pkcs10",
            good.clone(),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "admin token",
            Some(est.app.admin.as_str()),
            "application/pkcs10",
            good.clone(),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "wrong content type",
            station,
            "application/json",
            good.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "PEM body",
            station,
            "application/pkcs10",
            pem.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_csr",
        ),
        (
            "CMS body",
            station,
            "application/pkcs10",
            cms_body,
            StatusCode::BAD_REQUEST,
            "invalid_csr",
        ),
        (
            "not base64",
            station,
            "application/pkcs10",
            "%%% not base64 %%%".into(),
            StatusCode::BAD_REQUEST,
            "invalid_transfer_encoding",
        ),
        (
            "base64 of garbage",
            station,
            "application/pkcs10",
            STANDARD.encode(b"\x30\x03garbage"),
            StatusCode::BAD_REQUEST,
            "invalid_csr",
        ),
        (
            "oversized body",
            station,
            "application/pkcs10",
            oversized,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "country not ISO 3166",
            station,
            "application/pkcs10",
            est_body(&csr("Thing-Neg-2", "XX").pem),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_country",
        ),
        (
            "thing name AWS refuses",
            station,
            "application/pkcs10",
            est_body(&csr("bad thing/name", "JP").pem),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_thing_name",
        ),
    ];
    for (case, password, content_type, body, status, code) in cases {
        let response = est.enroll(client, password, content_type, body).await;
        if status == StatusCode::UNAUTHORIZED {
            let challenge = response.headers()["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Basic"), "{case}: {challenge}");
        }
        assert_eq!(
            est_error(response).await,
            (status, code.to_owned()),
            "{case}"
        );
    }
    assert_eq!(est.app.ledger_count().await, 0);
}

#[tokio::test]
async fn csrattrs_names_cn_and_country_when_the_policy_requires_it() {
    let est = EstApp::spawn(Backend::Sqlite).await;
    let response = est
        .app
        .client
        .get(est.url("/.well-known/est/csrattrs"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/csrattrs")
    );
    let text = response.text().await.unwrap();
    let compact: String = text.split_whitespace().collect();
    let der = STANDARD.decode(compact).unwrap();
    let oids = Vec::<der::asn1::ObjectIdentifier>::from_der(&der).expect("CsrAttrs of OIDs");
    let names: Vec<String> = oids.iter().map(ToString::to_string).collect();
    let mut expected = vec!["2.5.4.3"];
    if est.app.settings.policy.require_country {
        expected.insert(0, "2.5.4.6");
    }
    assert_eq!(names, expected);
}

/// A device certificate of ours never authenticates as a station: the TLS handshake accepts it
/// (a device renews with it, `simplereenroll`), and every other route refuses it with 403
/// `device_certificate_not_allowed`, EST in text/plain and the JSON API as problem+json, whatever
/// token comes along.
#[tokio::test]
async fn a_device_certificate_is_refused_for_simpleenroll_and_the_json_api() {
    let est = EstApp::spawn(Backend::Sqlite).await;
    let (_csr_pem, device_client) = est.enrolled_device("Thing-Dev-1").await;
    let enroll = device_client
        .post(est.url("/.well-known/est/simpleenroll"))
        .basic_auth("line-1", Some(&est.app.station))
        .header("content-type", "application/pkcs10")
        .body(est_body(&csr("Thing-Dev-2", "JP").pem))
        .send()
        .await
        .unwrap();
    assert_eq!(enroll.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        enroll.headers()["x-error-code"],
        "device_certificate_not_allowed"
    );
    assert!(
        enroll
            .text()
            .await
            .unwrap()
            .starts_with("device_certificate_not_allowed: ")
    );
    let json_api = device_client
        .post(est.url("/v1/certificates"))
        .bearer_auth(&est.app.station)
        .json(&serde_json::json!({ "csr": csr("Thing-Dev-3", "JP").pem }))
        .send()
        .await
        .unwrap();
    assert_eq!(json_api.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        json(json_api).await["code"],
        "device_certificate_not_allowed"
    );
    let listed = device_client
        .get(est.url("/v1/certificates"))
        .bearer_auth(&est.app.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::FORBIDDEN);
    assert_eq!(json(listed).await["code"], "device_certificate_not_allowed");
    assert_eq!(est.app.ledger_count().await, 1);
}

#[tokio::test]
async fn est_over_plain_http_answers_https_required() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (method, path) in [
        ("GET", "/.well-known/est/cacerts"),
        ("GET", "/.well-known/est/csrattrs"),
        ("POST", "/.well-known/est/simpleenroll"),
    ] {
        let mut request = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .header("content-type", "application/pkcs10")
            .body(est_body(&csr("Thing-Plain-1", "JP").pem));
        if method == "POST" {
            request = request.basic_auth("line-1", Some(&app.station));
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            est_error(response).await,
            (StatusCode::BAD_REQUEST, "https_required".into()),
            "{path}"
        );
    }
    assert_eq!(app.ledger_count().await, 0);
}

/// A renewal appends a `superseded` record to the chain, which a checkpoint counts as neither
/// an issuance nor a revocation: a checkpoint signed right after it (the service signs a
/// chain's first records within a second) verifies, before and after a revocation.
async fn a_checkpoint_signed_after_a_renewal_verifies(backend: Backend) {
    use factory_ca::keys::KeyStore;
    use factory_ca::services::ledger::{self, CheckpointWhen};
    use factory_ca::store::Timestamp;

    let est = EstApp::spawn(backend).await;
    let (csr_pem, device_client) = est.enrolled_device("Thing-Renewed-1").await;
    let renewed = device_client
        .post(est.url("/.well-known/est/simplereenroll"))
        .header("content-type", "application/pkcs10")
        .body(est_body(&csr_pem))
        .send()
        .await
        .unwrap();
    assert_eq!(certs_of(renewed).await.len(), 1);

    let keys = KeyStore::from_settings(&est.app.settings);
    let audit = keys.existing_audit_key().await.unwrap().unwrap();
    let signed = |when| ledger::checkpoint_chains(&est.app.store, &audit, when, Timestamp::now());
    signed(CheckpointWhen::Pending).await.unwrap();
    let verified = est.app.verify_ledger().await;
    assert!(
        verified.iter().all(|v| v.mismatch.is_none()),
        "{verified:?}"
    );
    let checkpoints: u64 = verified.iter().map(|v| v.checkpoints).sum();
    assert!(checkpoints >= 1, "{verified:?}");

    // The same after a revocation: issued 2, revoked 1, and the superseded record besides.
    let listed = est
        .app
        .client
        .get(est.url("/v1/certificates?status=active"))
        .bearer_auth(&est.app.viewer)
        .send()
        .await
        .unwrap();
    let listed = json(listed).await;
    let active = listed["items"][0]["serial"]
        .as_str()
        .expect("the renewal is active");
    let revoked = est
        .app
        .client
        .post(est.url(&format!("/v1/admin/certificates/{active}/revoke")))
        .bearer_auth(&est.app.admin)
        .json(&serde_json::json!({"reason": "key_compromise"}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    signed(CheckpointWhen::Pending).await.unwrap();
    let verified = est.app.verify_ledger().await;
    assert!(
        verified.iter().all(|v| v.mismatch.is_none()),
        "{verified:?}"
    );
    let cas: Vec<String> = verified.iter().map(|v| v.ca_id.clone()).collect();
    let last = est
        .app
        .store
        .checkpoints_page(&cas[0], 0, 100)
        .await
        .unwrap();
    let last = last.last().expect("a checkpoint");
    assert_eq!((last.seq, last.issued, last.revoked), (4, 2, 1), "{last:?}");
}
