//! Issued chains checked by independent verifiers: the openssl command line, rustls-webpki as
//! a client-auth end entity, and a real TLS peer (Mosquitto) that a device connects to.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::process::free_port;
use crate::common::*;
use reqwest::StatusCode;
use rustls_pki_types::{CertificateDer, UnixTime};

struct Issued {
    cert_pem: String,
    chain_pem: String,
    ca_pem: String,
}

async fn issue(app: &TestApp, csr_pem: &str) -> Issued {
    let response = app.sign(csr_pem).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = json(response).await;
    Issued {
        cert_pem: body["certificate_pem"].as_str().unwrap().to_owned(),
        chain_pem: body["certificate_chain_pem"].as_str().unwrap().to_owned(),
        ca_pem: body["ca_certificate_pem"].as_str().unwrap().to_owned(),
    }
}

/// The exact openssl command of the manual workflow (docs/jitp.md, step 8) and of the README.
fn openssl_workflow_csr(dir: &Path, thing: &str) -> String {
    run(Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "device.key",
        ])
        .args([
            "-subj",
            &format!("/C=JP/ST=Tokyo/L=Tokyo/O=Org/OU=Line3/CN={thing}"),
        ])
        .args(["-out", "device.csr"]));
    std::fs::read_to_string(dir.join("device.csr")).unwrap()
}

#[tokio::test]
async fn openssl_req_csr_is_accepted_unchanged_and_openssl_verifies_the_chain() {
    for algorithm in [
        factory_ca::ca::CaAlgorithm::EcdsaP256,
        factory_ca::ca::CaAlgorithm::Rsa2048,
    ] {
        let app = TestApp::spawn_with(Backend::Sqlite, |s| s.ca.algorithm = algorithm).await;
        let dir = app.dir.path();
        let issued = issue(&app, &openssl_workflow_csr(dir, "Thing-0001")).await;
        let cert = write(dir, "device.pem", &issued.cert_pem);
        let ca = write(dir, "ca.pem", &issued.ca_pem);

        let out = run(Command::new("openssl")
            .args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
            .arg(&ca)
            .arg(&cert));
        assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));

        let out = run(Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-nameopt", "compat", "-in"])
            .arg(&cert));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "subject=/C=JP/ST=Tokyo/L=Tokyo/O=Org/OU=Line3/CN=Thing-0001"
        );
        // The key in the certificate is the device's own: openssl matches it to device.key.
        let from_cert = run(Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(&cert));
        let from_key = run(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(dir.join("device.key")));
        assert_eq!(from_cert.stdout, from_key.stdout);
        // An RSA device key gets keyEncipherment as well.
        let text = run(Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&cert));
        assert!(
            String::from_utf8_lossy(&text.stdout).contains("Digital Signature, Key Encipherment")
        );

        // The chain PEM parses as device certificate then CA.
        let chain = pem::parse_many(&issued.chain_pem).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(
            factory_ca::ca::to_pem("CERTIFICATE", chain[1].contents()),
            issued.ca_pem
        );
    }
}

#[tokio::test]
async fn webpki_accepts_issued_certificates_as_client_auth_end_entities() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let algorithms: [&'static rcgen::SignatureAlgorithm; 3] = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ECDSA_P521_SHA512,
    ];
    let mut pems: Vec<String> = algorithms
        .iter()
        .enumerate()
        .map(|(i, alg)| {
            csr_with(
                alg,
                &[
                    (rcgen::DnType::CountryName, "US"),
                    (rcgen::DnType::CommonName, &format!("Webpki-{i}")),
                ],
            )
            .pem
        })
        .collect();
    pems.push(openssl_workflow_csr(app.dir.path(), "Webpki-rsa"));

    for csr_pem in pems {
        let issued = issue(&app, &csr_pem).await;
        let ca_der = CertificateDer::from(pem::parse(&issued.ca_pem).unwrap().into_contents());
        let ee_der = CertificateDer::from(pem::parse(&issued.cert_pem).unwrap().into_contents());
        let anchor = webpki::anchor_from_trusted_cert(&ca_der).unwrap();
        let ee = webpki::EndEntityCert::try_from(&ee_der).unwrap();
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .expect("webpki accepts the device certificate for client auth");
        // ...and refuses it as a TLS server certificate: the profile grants clientAuth only.
        assert!(
            ee.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &[webpki::anchor_from_trusted_cert(&ca_der).unwrap()],
                &[],
                UnixTime::now(),
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .is_err()
        );
    }
}

/// A broker that trusts our CA for client certificates, on its own loopback port.
pub(crate) struct Broker {
    child: Child,
    port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_mosquitto(
    dir: &Path,
    client_ca: &Path,
    server_cert: &Path,
    server_key: &Path,
) -> Broker {
    start_mosquitto_with_crl(dir, client_ca, server_cert, server_key, None)
}

/// A broker as [`start_mosquitto`] starts it that also checks client certificates against the
/// PEM CRL `crl` when given (Mosquitto's `crlfile`).
fn start_mosquitto_with_crl(
    dir: &Path,
    client_ca: &Path,
    server_cert: &Path,
    server_key: &Path,
    crl: Option<&Path>,
) -> Broker {
    let port = free_port();
    let crl_line = crl
        .map(|path| format!("crlfile {}\n", path.display()))
        .unwrap_or_default();
    let conf = write(
        dir,
        "mosquitto.conf",
        &format!(
            "user root\npersistence false\nlog_dest stderr\nlistener {port} 127.0.0.1\n\
             cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n\
             use_identity_as_username true\ntls_version tlsv1.2\nallow_anonymous true\n\
             {crl_line}",
            client_ca.display(),
            server_cert.display(),
            server_key.display()
        ),
    );
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is installed (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Broker { child, port }
}

/// A server certificate for the broker, from a CA of its own (as AWS IoT's endpoint has).
pub(crate) fn broker_identity(
    dir: &Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "broker test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap();
    (
        write(dir, "broker-ca.pem", &ca_cert.pem()),
        write(dir, "broker.pem", &cert.pem()),
        write(dir, "broker.key", &key.serialize_pem()),
    )
}

pub(crate) fn mosquitto_pub(
    dir: &Path,
    broker: &Broker,
    broker_ca: &Path,
    cert: &Path,
    key: &Path,
) -> bool {
    Command::new("mosquitto_pub")
        .current_dir(dir)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "--tls-version",
            "tlsv1.2",
        ])
        .arg("--cafile")
        .arg(broker_ca)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["-t", "factory/test", "-m", "hello", "-q", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("mosquitto_pub is installed")
        .success()
}

#[tokio::test]
async fn a_device_connects_to_a_tls_broker_with_the_chain_we_return() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let dir = app.dir.path();
    let issued = issue(&app, &openssl_workflow_csr(dir, "Thing-Mqtt")).await;
    let chain = write(dir, "deviceCertAndCACert.crt", &issued.chain_pem);
    let client_ca = write(dir, "rootCA.pem", &issued.ca_pem);
    let (broker_ca, server_cert, server_key) = broker_identity(dir);
    let broker = start_mosquitto(dir, &client_ca, &server_cert, &server_key);

    assert!(
        mosquitto_pub(dir, &broker, &broker_ca, &chain, &dir.join("device.key")),
        "the broker accepts the device with the chain we returned"
    );

    // Control: a certificate from another CA is refused by the same broker.
    let other_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Thing-Mqtt");
    let stranger = params.self_signed(&other_key).unwrap();
    let stranger_cert = write(dir, "stranger.pem", &stranger.pem());
    let stranger_key = write(dir, "stranger.key", &other_key.serialize_pem());
    assert!(!mosquitto_pub(
        dir,
        &broker,
        &broker_ca,
        &stranger_cert,
        &stranger_key
    ));
}

/// A broker configured with the CRL that `GET /v1/cas/{id}/crl?format=pem` serves refuses a
/// revoked device and still accepts a good one.
#[tokio::test]
async fn a_broker_with_our_crl_refuses_a_revoked_device() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let dir = app.dir.path();
    let revoked = issue(&app, &openssl_workflow_csr(dir, "Thing-Revoked")).await;
    std::fs::rename(dir.join("device.key"), dir.join("revoked.key")).unwrap();
    let good = issue(&app, &openssl_workflow_csr(dir, "Thing-Good")).await;
    std::fs::rename(dir.join("device.key"), dir.join("good.key")).unwrap();
    let revoked_chain = write(dir, "revoked-chain.crt", &revoked.chain_pem);
    let good_chain = write(dir, "good-chain.crt", &good.chain_pem);

    let row = json(
        app.get(&app.viewer, "/v1/certificates?thing_name=Thing-Revoked")
            .await,
    )
    .await;
    let serial = row["items"][0]["serial"].as_str().unwrap().to_owned();
    let ca_id = row["items"][0]["issuing_ca"].as_str().unwrap().to_owned();
    let response = app
        .admin_json(
            reqwest::Method::POST,
            &format!("/v1/admin/certificates/{serial}/revoke"),
            serde_json::json!({"reason": "key_compromise"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let crl = app
        .client
        .get(app.url(&format!("/v1/cas/{ca_id}/crl?format=pem")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let crl = write(dir, "crl.pem", &crl);

    let client_ca = write(dir, "rootCA.pem", &good.ca_pem);
    let (broker_ca, server_cert, server_key) = broker_identity(dir);
    let broker = start_mosquitto_with_crl(dir, &client_ca, &server_cert, &server_key, Some(&crl));
    assert!(
        !mosquitto_pub(
            dir,
            &broker,
            &broker_ca,
            &revoked_chain,
            &dir.join("revoked.key")
        ),
        "the broker refuses the revoked device"
    );
    assert!(
        mosquitto_pub(dir, &broker, &broker_ca, &good_chain, &dir.join("good.key")),
        "the broker accepts a good device with the same CRL"
    );
}
