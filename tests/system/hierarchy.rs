//! A CA hierarchy as an operator builds it with the binary: an offline root made by openssl, an
//! issuing CA it signs imported with `ca import --chain`, and a per-line sub-CA with name
//! constraints made by `ca create --parent`. Devices get root -> issuing -> line chains that
//! `openssl verify -x509_strict -purpose sslclient` and a Mosquitto listener accept with only
//! the root trusted; a subject outside the line is refused by the service (422) and, forged
//! with the line CA's key, by openssl.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::binary::{Service, factory_ca, stderr, stdout};
use crate::common::process::{openssl_root, run, write};
use crate::verifiers::{broker_identity, mosquitto_pub, start_mosquitto};
use reqwest::StatusCode;

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// `openssl verify -x509_strict -purpose sslclient` of `leaf` with only `root.pem` trusted.
fn verify(dir: &Path, leaf: &str, untrusted: &str) -> (bool, String) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(["verify", "-x509_strict", "-purpose", "sslclient"])
        .args(["-CAfile", "root.pem", "-untrusted", untrusted, leaf])
        .output()
        .expect("openssl runs");
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// A device key and CSR made by openssl with the given subject; returns the CSR PEM.
fn device_csr(dir: &Path, name: &str, subject: &str) -> String {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-subj",
            subject,
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::read_to_string(dir.join(format!("{name}.csr"))).unwrap()
}

/// The offline root and an issuing CA it signs (pathlen:1: one CA may go below it), as an
/// operator's ceremony with openssl makes them.
pub(super) fn offline_root_and_issuing(dir: &Path) {
    write(
        dir,
        "ca.ext",
        "[issuing]\nbasicConstraints = critical, CA:TRUE, pathlen:1\n\
         keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid:always\n",
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-days",
            "3650",
            "-subj",
            "/C=JP/O=Acme/CN=Acme Offline Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "issuing.key",
            "-out",
            "issuing.csr",
            "-subj",
            "/C=JP/O=Acme/CN=Acme Issuing CA",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "issuing.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-set_serial",
            "0x1001",
            "-days",
            "1825",
            "-extfile",
            "ca.ext",
            "-extensions",
            "issuing",
            "-out",
            "issuing.pem",
        ],
    );
}

fn first_field(line: &str) -> String {
    line.split('\t').next().unwrap().trim().to_owned()
}

#[tokio::test]
async fn a_line_ca_below_an_offline_root_issues_chains_openssl_and_mosquitto_accept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    offline_root_and_issuing(dir);

    // A chain that does not lead to the issuing CA's root is refused, nothing stored.
    openssl_root(
        dir,
        "other.key",
        "other.pem",
        "/C=JP/O=Acme/CN=Acme Offline Root",
    );
    let refused = factory_ca(&data)
        .args([
            "ca",
            "import",
            "--cert",
            "issuing.pem",
            "--key",
            "issuing.key",
        ])
        .args(["--chain", "other.pem"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("the chain does not verify"),
        "{}",
        stderr(&refused)
    );

    let imported = factory_ca(&data)
        .args([
            "ca",
            "import",
            "--cert",
            "issuing.pem",
            "--key",
            "issuing.key",
        ])
        .args(["--chain", "root.pem"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", stderr(&imported));
    let issuing_id = first_field(&stdout(&imported));

    let created = factory_ca(&data)
        .args(["ca", "create", "--parent", &issuing_id])
        .args(["--common-name", "Acme Line 3 CA", "--country", "JP"])
        .args(["--organization", "Acme", "--validity-days", "365"])
        .args([
            "--name-constraints",
            "C=JP,O=Acme,OU=Line3",
            "--path-len",
            "0",
        ])
        .arg("--activate")
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    let line_id = first_field(&stdout(&created));
    let token = factory_ca(&data)
        .args(["token", "create", "--role", "station", "--name", "line-3"])
        .output()
        .unwrap();
    assert!(token.status.success(), "{}", stderr(&token));
    let token = stdout(&token).trim().to_owned();

    let mut service = Service::start(factory_ca(&data));
    service.ready().await;
    let client = reqwest::Client::new();
    let sign = |csr: String| {
        client
            .post(format!("{}/v1/certificates", service.base()))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "csr": csr }))
            .timeout(Duration::from_secs(30))
            .send()
    };

    let inside = sign(device_csr(
        dir,
        "dev1",
        "/C=JP/O=Acme/OU=Line3/CN=Line3-Dev-1",
    ))
    .await
    .unwrap();
    assert_eq!(inside.status(), StatusCode::CREATED);
    let body: serde_json::Value = inside.json().await.unwrap();
    assert_eq!(body["issuing_ca"], line_id.as_str());
    let chain = body["certificate_chain_pem"].as_str().unwrap();
    let blocks = pem::parse_many(chain).unwrap();
    assert_eq!(blocks.len(), 3, "device, line CA, issuing CA; not the root");
    write(dir, "dev1.pem", body["certificate_pem"].as_str().unwrap());
    write(dir, "dev1-chain.pem", chain);
    let above: String = blocks[1..].iter().map(pem::encode).collect();
    write(dir, "above.pem", &above);
    let (ok, text) = verify(dir, "dev1.pem", "above.pem");
    assert!(ok, "{text}");

    // Outside the line: refused before signing.
    let outside = sign(device_csr(
        dir,
        "dev2",
        "/C=JP/O=Acme/OU=Line4/CN=Line4-Dev-1",
    ))
    .await
    .unwrap();
    assert_eq!(outside.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = outside.json().await.unwrap();
    assert_eq!(body["code"], "name_constraints_violation");

    // The same subject signed directly with the line CA's key (its key file here) is what a
    // verifier refuses: the constraint is in the certificate, not only in this service.
    write(dir, "line.pem", &pem::encode(&blocks[1]));
    write(
        dir,
        "leaf.ext",
        "[leaf]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = clientAuth\nsubjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid:always\n",
    );
    let line_key = data.join("keys").join(format!("{line_id}.key.pem"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "dev2.csr",
            "-CA",
            "line.pem",
            "-CAkey",
            line_key.to_str().unwrap(),
            "-set_serial",
            "0x2002",
            "-days",
            "30",
            "-extfile",
            "leaf.ext",
            "-extensions",
            "leaf",
            "-out",
            "forged.pem",
        ],
    );
    let (ok, text) = verify(dir, "forged.pem", "above.pem");
    assert!(
        !ok,
        "openssl accepted a leaf outside the name constraints: {text}"
    );
    assert!(
        text.contains("name constraint") || text.contains("permitted subtree"),
        "{text}"
    );

    // A Mosquitto listener trusting only the root accepts the device with its chain.
    let (broker_ca, server_cert, server_key) = broker_identity(dir);
    let broker = start_mosquitto(dir, &dir.join("root.pem"), &server_cert, &server_key);
    assert!(
        mosquitto_pub(
            dir,
            &broker,
            &broker_ca,
            &dir.join("dev1-chain.pem"),
            &dir.join("dev1.key")
        ),
        "the broker accepts the device with the chain we returned"
    );
    // Without the intermediates it cannot reach the root.
    assert!(!mosquitto_pub(
        dir,
        &broker,
        &broker_ca,
        &dir.join("dev1.pem"),
        &dir.join("dev1.key")
    ));
    drop(broker);
    service.stop().await;
}

/// `openssl x509 -req` of `csr` by the offline root, with the issuing CA's extensions.
fn root_signs(dir: &Path, csr: &str, out: &str, serial: &str) {
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-set_serial",
            serial,
            "-days",
            "1825",
            "-extfile",
            "ca.ext",
            "-extensions",
            "issuing",
            "-out",
            out,
        ],
    );
}

#[tokio::test]
async fn the_offline_root_ceremony_makes_a_pending_ca_that_issues_once_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    // The root (and an issuing CA of its own, unused here) made by openssl.
    offline_root_and_issuing(dir);

    // 1. The key and a CSR; the CA is pending.
    let created = factory_ca(&data)
        .args(["ca", "create", "--csr-out"])
        .arg(dir.join("ceremony.csr"))
        .args(["--common-name", "Acme Online Issuing CA", "--country", "JP"])
        .args(["--organization", "Acme"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    let pending_id = first_field(&stdout(&created));
    assert!(
        stdout(&created).contains("\tpending\t"),
        "{}",
        stdout(&created)
    );
    let csr_text = std::fs::read_to_string(dir.join("ceremony.csr")).unwrap();
    assert!(csr_text.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    openssl(dir, &["req", "-verify", "-noout", "-in", "ceremony.csr"]);
    let listed = factory_ca(&data).args(["ca", "list"]).output().unwrap();
    assert!(
        stdout(&listed).contains(&format!("{pending_id}\tpending")),
        "{}{}",
        stdout(&listed),
        stderr(&listed)
    );

    // 2. A pending CA issues nothing: it cannot be made the issuing CA.
    let refused = factory_ca(&data)
        .args(["ca", "activate", &pending_id])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("is pending") && stderr(&refused).contains("ca install"),
        "{}",
        stderr(&refused)
    );

    // 3. The root signs the CSR offline.
    root_signs(dir, "ceremony.csr", "ceremony.pem", "0x3003");

    // 4. What install refuses: another key's certificate, and a chain not up to its root.
    let install = |cert: &str, chain: &str| {
        factory_ca(&data)
            .args([
                "ca",
                "install",
                &pending_id,
                "--cert",
                cert,
                "--chain",
                chain,
            ])
            .arg("--activate")
            .current_dir(dir)
            .output()
            .unwrap()
    };
    let wrong_key = install("issuing.pem", "root.pem");
    assert!(!wrong_key.status.success());
    assert!(
        stderr(&wrong_key).contains("does not match"),
        "{}",
        stderr(&wrong_key)
    );
    openssl_root(
        dir,
        "other.key",
        "other.pem",
        "/C=JP/O=Acme/CN=Acme Offline Root",
    );
    let wrong_chain = install("ceremony.pem", "other.pem");
    assert!(!wrong_chain.status.success());
    assert!(
        stderr(&wrong_chain).contains("the chain does not verify"),
        "{}",
        stderr(&wrong_chain)
    );

    // 5. Installed, it is an ordinary CA under its certificate's id.
    let installed = install("ceremony.pem", "root.pem");
    assert!(installed.status.success(), "{}", stderr(&installed));
    let ca_id = first_field(&stdout(&installed));
    assert!(stdout(&installed).contains("\tissuing\t"));
    let listed = stdout(&factory_ca(&data).args(["ca", "list"]).output().unwrap());
    assert!(!listed.contains("pending"), "{listed}");
    // The key stayed where the ceremony made it; nothing else holds it.
    assert!(
        data.join("keys")
            .join(format!("{pending_id}.key.pem"))
            .exists()
    );

    let token = factory_ca(&data)
        .args(["token", "create", "--role", "station", "--name", "line-1"])
        .output()
        .unwrap();
    assert!(token.status.success(), "{}", stderr(&token));
    let token = stdout(&token).trim().to_owned();
    let mut service = Service::start(factory_ca(&data));
    service.ready().await;
    let issued = reqwest::Client::new()
        .post(format!("{}/v1/certificates", service.base()))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "csr": device_csr(dir, "dev", "/C=JP/O=Acme/CN=Dev-1") }))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), StatusCode::CREATED);
    let body: serde_json::Value = issued.json().await.unwrap();
    assert_eq!(body["issuing_ca"], ca_id.as_str());
    let chain = body["certificate_chain_pem"].as_str().unwrap();
    let blocks = pem::parse_many(chain).unwrap();
    assert_eq!(
        blocks.len(),
        2,
        "device and issuing CA; the root is not sent"
    );
    write(dir, "dev.pem", &pem::encode(&blocks[0]));
    write(dir, "dev-above.pem", &pem::encode(&blocks[1]));
    let (ok, text) = verify(dir, "dev.pem", "dev-above.pem");
    assert!(ok, "{text}");
    service.stop().await;
}

#[tokio::test]
async fn the_ceremony_with_a_token_key_and_a_line_ca_below_it() {
    use crate::pkcs11::{Hsm, USER_PIN, uri};
    let hsm = Hsm::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    offline_root_and_issuing(dir);
    let cli = || hsm.factory_ca(&data, USER_PIN);

    // The key is generated in the token; the token signs the CSR.
    let created = cli()
        .args(["ca", "create", "--csr-out"])
        .arg(dir.join("token.csr"))
        .args(["--key-uri", &uri("ceremony"), "--algorithm", "ecdsa-p384"])
        .args(["--common-name", "Acme HSM Issuing CA", "--country", "JP"])
        .args(["--organization", "Acme"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    let pending_id = first_field(&stdout(&created));
    assert!(stdout(&created).contains("pkcs11:"), "{}", stdout(&created));
    openssl(dir, &["req", "-verify", "-noout", "-in", "token.csr"]);
    root_signs(dir, "token.csr", "token.pem", "0x4004");

    let installed = cli()
        .args([
            "ca",
            "install",
            &pending_id,
            "--cert",
            "token.pem",
            "--chain",
            "root.pem",
        ])
        .arg("--activate")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(installed.status.success(), "{}", stderr(&installed));
    let issuing_id = first_field(&stdout(&installed));
    // No key file: the key is in the token only.
    assert!(
        !data
            .join("keys")
            .join(format!("{pending_id}.key.pem"))
            .exists()
    );

    // A line CA below it, signed by the token.
    let line = cli()
        .args(["ca", "create", "--parent", &issuing_id])
        .args(["--common-name", "Acme Line 7 CA", "--country", "JP"])
        .args(["--organization", "Acme", "--validity-days", "365"])
        .args([
            "--name-constraints",
            "C=JP,O=Acme,OU=Line7",
            "--path-len",
            "0",
        ])
        .arg("--activate")
        .output()
        .unwrap();
    assert!(line.status.success(), "{}", stderr(&line));
    let line_id = first_field(&stdout(&line));

    let token = cli()
        .args(["token", "create", "--role", "station", "--name", "line-7"])
        .output()
        .unwrap();
    assert!(token.status.success(), "{}", stderr(&token));
    let token = stdout(&token).trim().to_owned();
    let mut service = Service::start(cli());
    service.ready().await;
    let client = reqwest::Client::new();
    let issued = client
        .post(format!("{}/v1/certificates", service.base()))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "csr": device_csr(dir, "dev7", "/C=JP/O=Acme/OU=Line7/CN=Line7-Dev-1")
        }))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), StatusCode::CREATED);
    let body: serde_json::Value = issued.json().await.unwrap();
    assert_eq!(body["issuing_ca"], line_id.as_str());
    let blocks = pem::parse_many(body["certificate_chain_pem"].as_str().unwrap()).unwrap();
    assert_eq!(blocks.len(), 3, "device, line CA, token-held issuing CA");
    write(dir, "dev7.pem", &pem::encode(&blocks[0]));
    let above: String = blocks[1..].iter().map(pem::encode).collect();
    write(dir, "dev7-above.pem", &above);
    let (ok, text) = verify(dir, "dev7.pem", "dev7-above.pem");
    assert!(ok, "{text}");

    // The token-held CA signs its CRL (on the blocking pool); openssl checks the signature.
    let crl = client
        .get(format!(
            "{}/v1/cas/{issuing_id}/crl?format=pem",
            service.base()
        ))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(crl.status(), StatusCode::OK);
    write(dir, "issuing.crl", &crl.text().await.unwrap());
    let out = Command::new("openssl")
        .current_dir(dir)
        .args([
            "crl",
            "-in",
            "issuing.crl",
            "-noout",
            "-CAfile",
            "token.pem",
        ])
        .output()
        .unwrap();
    assert!(
        format!("{}{}", stdout(&out), stderr(&out)).contains("verify OK"),
        "{}",
        stderr(&out)
    );
    service.stop().await;
}
