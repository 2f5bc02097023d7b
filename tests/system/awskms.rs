//! CA keys in AWS KMS, against the moto emulator: keys made with boto3, CAs created on them
//! through the real binary (`ca create --key-uri awskms:...`), device certificates and CRLs
//! issued over HTTP and checked by openssl, and the faults an operator meets (a disabled key
//! at signing time and at startup, a key of another spec, an endpoint that does not sign
//! digests as AWS KMS does).
//!
//! `scripts/moto_server.py` makes moto's KMS keep AWS's rules for `Sign` (a `DIGEST` is
//! signed as a digest; a disabled key refuses); `--kms-as-shipped` leaves moto as it is.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;

use crate::aws_moto::{Moto, start_moto, start_moto_with};
use crate::common::binary::{Service, factory_ca, stderr, stdout};
use crate::common::process::openssl_root;
use crate::common::*;

fn python() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    std::env::var("MOTO_PYTHON").unwrap_or_else(|_| format!("{root}/.venv/bin/python"))
}

/// Runs boto3's KMS client against `moto` with `script` (the client is `kms`); returns stdout.
fn boto3(moto: &Moto, script: &str) -> String {
    let program = format!(
        "import boto3\n\
         kms = boto3.client('kms', endpoint_url='{}', region_name='us-east-1', \
         aws_access_key_id='testing', aws_secret_access_key='testing')\n{script}",
        moto.url
    );
    let python = python();
    let out = Command::new(&python)
        .args(["-c", &program])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} (scripts/test.sh installs it): {e}"));
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

/// A new SIGN_VERIFY key of `spec` in moto; its key id.
fn create_key(moto: &Moto, spec: &str) -> String {
    boto3(
        moto,
        &format!(
            "print(kms.create_key(KeySpec='{spec}', KeyUsage='SIGN_VERIFY')\
             ['KeyMetadata']['KeyId'])"
        ),
    )
}

/// The key's public key as `GetPublicKey` gives it (SubjectPublicKeyInfo), in PEM.
fn public_key_pem(moto: &Moto, key_id: &str) -> String {
    boto3(
        moto,
        &format!(
            "import base64, textwrap\n\
             der = kms.get_public_key(KeyId='{key_id}')['PublicKey']\n\
             b64 = base64.b64encode(der).decode()\n\
             print('-----BEGIN PUBLIC KEY-----')\n\
             print('\\n'.join(textwrap.wrap(b64, 64)))\n\
             print('-----END PUBLIC KEY-----')"
        ),
    )
}

fn set_enabled(moto: &Moto, key_id: &str, enabled: bool) {
    let call = if enabled { "enable_key" } else { "disable_key" };
    boto3(moto, &format!("kms.{call}(KeyId='{key_id}')"));
}

/// `factory-ca` on `data` with KMS reached through `aws.endpoint_url` (AWS IoT calls stay
/// disabled) and the emulator's dummy credentials in the standard chain's variables.
fn with_kms(moto: &Moto, data: &Path) -> Command {
    let mut cmd = factory_ca(data);
    cmd.env("FACTORY_CA_AWS__ENDPOINT_URL", &moto.url)
        .env("FACTORY_CA_CA__CREATE_ON_FIRST_START", "false")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

fn uri(key_id: &str) -> String {
    format!("awskms:{key_id}")
}

fn create_ca(moto: &Moto, data: &Path, key_id: &str, name: &str, extra: &[&str]) -> String {
    let out = with_kms(moto, data)
        .args(["ca", "create", "--key-uri", &uri(key_id)])
        .args(["--common-name", name, "--country", "JP"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

fn new_token(moto: &Moto, data: &Path, role: &str, name: &str) -> String {
    let out = with_kms(moto, data)
        .args(["token", "create", "--role", role, "--name", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

async fn issue(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    thing: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/v1/certificates"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "csr": csr(thing, "JP").pem }))
        .send()
        .await
        .unwrap()
}

async fn recorded_things(client: &reqwest::Client, base: &str, admin: &str) -> Vec<String> {
    let rows: serde_json::Value = client
        .get(format!("{base}/v1/certificates"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    rows["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["thing_name"].as_str().unwrap().to_owned())
        .collect()
}

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// Issues a device certificate, checks it and the CA certificate with openssl (the CA
/// certificate's key must be the KMS key's), revokes it, and checks the CA's CRL with openssl.
async fn issue_verify_and_revoke(
    client: &reqwest::Client,
    base: &str,
    (station, admin): (&str, &str),
    (ca_id, kms_public_key): (&str, &str),
    dir: &Path,
    thing: &str,
) -> String {
    let answer = issue(client, base, station, thing).await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["issuing_ca"], ca_id);
    write(dir, "device.pem", body["certificate_pem"].as_str().unwrap());
    write(dir, "ca.pem", body["ca_certificate_pem"].as_str().unwrap());
    write(dir, "kms.pub.pem", kms_public_key);
    for certificate in ["ca.pem", "device.pem"] {
        let (ok, said) = openssl(
            dir,
            &[
                "verify",
                "-x509_strict",
                "-check_ss_sig",
                "-CAfile",
                "ca.pem",
                certificate,
            ],
        );
        assert!(ok, "{certificate}: {said}");
    }
    // The CA certificate carries the KMS key's public key, as GetPublicKey gives it.
    let (ok, ca_key) = openssl(dir, &["x509", "-in", "ca.pem", "-noout", "-pubkey"]);
    assert!(ok, "{ca_key}");
    let (ok, kms_key) = openssl(dir, &["pkey", "-pubin", "-in", "kms.pub.pem"]);
    assert!(ok, "{kms_key}");
    assert_eq!(ca_key.trim(), kms_key.trim());

    let serial = body["serial"].as_str().unwrap();
    let revoked = client
        .post(format!("{base}/v1/admin/certificates/{serial}/revoke"))
        .bearer_auth(admin)
        .json(&serde_json::json!({ "reason": "key_compromise" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        revoked.status(),
        StatusCode::OK,
        "{}",
        revoked.text().await.unwrap()
    );
    let crl = client
        .get(format!("{base}/v1/cas/{ca_id}/crl?format=pem"))
        .send()
        .await
        .unwrap();
    assert_eq!(crl.status(), StatusCode::OK);
    write(dir, "ca.crl", &crl.text().await.unwrap());
    let (ok, said) = openssl(
        dir,
        &[
            "crl", "-in", "ca.crl", "-noout", "-text", "-CAfile", "ca.pem",
        ],
    );
    assert!(ok && said.contains("verify OK"), "{said}");
    assert!(said.contains("Key Compromise"), "{said}");
    let (_, text) = openssl(dir, &["x509", "-in", "device.pem", "-noout", "-text"]);
    text
}

#[tokio::test]
async fn kms_keys_sign_certificates_and_crls_that_openssl_verifies_and_a_disabled_key_signs_nothing()
 {
    let moto = start_moto();
    let ec_key = create_key(&moto, "ECC_NIST_P256");
    let rsa_key = create_key(&moto, "RSA_2048");
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");

    // The KMS keys are used as they are: an algorithm that is not the key's is refused.
    let line = create_ca(&moto, &data, &ec_key, "KMS Root P-256", &[]);
    assert!(
        line.contains("\tissuing\tecdsa-p256\tgenerated\t"),
        "{line}"
    );
    assert!(line.trim_end().ends_with(&uri(&ec_key)), "{line}");
    let ec_ca = line.split('\t').next().unwrap().to_owned();
    let mismatch = with_kms(&moto, &data)
        .args(["ca", "create", "--key-uri", &uri(&rsa_key)])
        .args(["--algorithm", "ecdsa-p256"])
        .output()
        .unwrap();
    assert!(!mismatch.status.success());
    assert!(
        stderr(&mismatch).contains("is RSA_2048, not the ECC_NIST_P256 asked for"),
        "{}",
        stderr(&mismatch)
    );
    let line = create_ca(
        &moto,
        &data,
        &rsa_key,
        "KMS Root RSA",
        &["--algorithm", "rsa-2048"],
    );
    assert!(line.contains("\t-\trsa-2048\tgenerated\t"), "{line}");
    let rsa_ca = line.split('\t').next().unwrap().to_owned();

    // No key file for either CA.
    let keys = data.join("keys");
    if keys.exists() {
        assert_eq!(std::fs::read_dir(&keys).unwrap().count(), 0);
    }
    let list = stdout(
        &with_kms(&moto, &data)
            .args(["ca", "list"])
            .output()
            .unwrap(),
    );
    assert!(list.contains(&format!("\t{}\n", uri(&ec_key))), "{list}");
    assert!(list.contains(&format!("\t{}\n", uri(&rsa_key))), "{list}");

    let station = new_token(&moto, &data, "station", "line-kms");
    let admin = new_token(&moto, &data, "admin", "ops");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut service = Service::start(with_kms(&moto, &data));
    service.ready().await;
    let base = service.base();
    let text = issue_verify_and_revoke(
        &client,
        &base,
        (&station, &admin),
        (&ec_ca, &public_key_pem(&moto, &ec_key)),
        work.path(),
        "kms-device-1",
    )
    .await;
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");

    // The admin API shows where each key is.
    let cas: serde_json::Value = client
        .get(format!("{base}/v1/admin/cas"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key_uri_of = |id: &str| {
        cas["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|ca| ca["id"] == id)
            .map(|ca| ca["key_uri"].clone())
            .unwrap()
    };
    assert_eq!(key_uri_of(&ec_ca), uri(&ec_key).as_str());
    assert_eq!(key_uri_of(&rsa_ca), uri(&rsa_key).as_str());

    // The key is disabled while the service runs: 503 signer_unavailable, nothing recorded;
    // enabled again, the next request signs.
    set_enabled(&moto, &ec_key, false);
    for attempt in 0..3 {
        let answer = issue(&client, &base, &station, &format!("refused-{attempt}")).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["code"], "signer_unavailable", "{body}");
    }
    assert_eq!(
        recorded_things(&client, &base, &admin).await,
        ["kms-device-1"]
    );
    set_enabled(&moto, &ec_key, true);
    let answer = issue(&client, &base, &station, "kms-device-2").await;
    assert_eq!(
        answer.status(),
        StatusCode::CREATED,
        "{}",
        answer.text().await.unwrap()
    );
    let mut things = recorded_things(&client, &base, &admin).await;
    things.sort();
    assert_eq!(things, ["kms-device-1", "kms-device-2"]);
    let (logs, _) = service.stop().await;
    assert!(logs.contains("is disabled"), "{logs}");
    assert!(!logs.contains("testing"), "a credential in the log: {logs}");

    // The RSA key signs as the issuing CA (RSASSA_PKCS1_V1_5_SHA_256).
    let out = with_kms(&moto, &data)
        .args(["ca", "activate", &rsa_ca])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut service = Service::start(with_kms(&moto, &data));
    service.ready().await;
    let text = issue_verify_and_revoke(
        &client,
        &service.base(),
        (&station, &admin),
        (&rsa_ca, &public_key_pem(&moto, &rsa_key)),
        work.path(),
        "kms-device-3",
    )
    .await;
    assert!(text.contains("sha256WithRSAEncryption"), "{text}");
    service.stop().await;

    // A disabled key stops startup, naming the CA and what to do.
    set_enabled(&moto, &rsa_key, false);
    let mut service = Service::start(with_kms(&moto, &data));
    let status = service.exit_within(Duration::from_secs(60)).await;
    assert!(!status.success());
    let said = service.stderr_text();
    assert!(said.contains(&rsa_ca), "{said}");
    assert!(
        said.contains(&format!("the AWS KMS key {rsa_key} is disabled")),
        "{said}"
    );
    assert!(said.contains("kms:EnableKey"), "{said}");
    // ...and KMS out of reach does too, naming the setting that points at it.
    set_enabled(&moto, &rsa_key, true);
    drop(moto);
    let closed = format!("http://127.0.0.1:{}", crate::common::process::free_port());
    let mut cmd = factory_ca(&data);
    cmd.env("FACTORY_CA_AWS__KMS_ENDPOINT_URL", &closed)
        .env("FACTORY_CA_AWS__ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let mut service = Service::start(cmd);
    let status = service.exit_within(Duration::from_secs(90)).await;
    assert!(!status.success());
    let said = service.stderr_text();
    assert!(said.contains(&rsa_ca), "{said}");
    assert!(
        said.contains(&format!("AWS KMS at {closed} (aws.kms_endpoint_url)")),
        "{said}"
    );
    assert!(said.contains("was not reached"), "{said}");
}

#[tokio::test]
async fn an_endpoint_that_signs_a_digest_as_a_message_is_refused_when_the_key_is_opened() {
    // moto as shipped ignores MessageType: it hashes the SHA-256 digest again and signs that.
    // The probe signature does not verify with the key, so the CA is not created.
    let moto = start_moto_with(&["--kms-as-shipped"]);
    let key = create_key(&moto, "ECC_NIST_P256");
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let out = with_kms(&moto, &data)
        .args(["ca", "create", "--key-uri", &uri(&key)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains("does not verify with the key's public key"),
        "{said}"
    );
    assert!(said.contains("MessageType=DIGEST"), "{said}");
    // No CA was recorded.
    let list = with_kms(&moto, &data)
        .args(["ca", "list"])
        .output()
        .unwrap();
    assert!(stderr(&list).contains("holds no CA"), "{}", stderr(&list));

    // A key of a spec a CA may not have, and a symmetric key, are refused by name.
    let p384 = create_key(&moto, "ECC_NIST_P384");
    let out = with_kms(&moto, &data)
        .args(["ca", "create", "--key-uri", &uri(&p384)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is ECC_NIST_P384; a CA key in AWS KMS is ECC_NIST_P256 or RSA_2048"),
        "{}",
        stderr(&out)
    );
    let missing = with_kms(&moto, &data)
        .args(["ca", "create", "--key-uri", "awskms:alias/no-such-key"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("has no key alias/no-such-key"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn the_offline_root_ceremony_with_a_kms_key_issues_chains_to_the_root() {
    let moto = start_moto();
    let key = create_key(&moto, "ECC_NIST_P256");
    let work = tempfile::tempdir().unwrap();
    let (dir, data) = (work.path(), work.path().join("data"));

    // The pending CA's CSR is signed by KMS; no key file is made.
    let out = with_kms(&moto, &data)
        .args(["ca", "create", "--key-uri", &uri(&key), "--csr-out"])
        .arg(dir.join("issuing.csr"))
        .args(["--common-name", "KMS Issuing CA", "--country", "JP"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let pending = stdout(&out).split('\t').next().unwrap().to_owned();
    assert!(
        stdout(&out).trim_end().ends_with(&uri(&key)),
        "{}",
        stdout(&out)
    );
    let (ok, said) = openssl(dir, &["req", "-in", "issuing.csr", "-noout", "-verify"]);
    assert!(ok, "{said}");
    let (_, csr_key) = openssl(dir, &["req", "-in", "issuing.csr", "-noout", "-pubkey"]);
    write(dir, "kms.pub.pem", &public_key_pem(&moto, &key));
    let (_, kms_key) = openssl(dir, &["pkey", "-pubin", "-in", "kms.pub.pem"]);
    assert_eq!(csr_key.trim(), kms_key.trim());
    // encrypt-keys has no file to encrypt for it.
    let out = with_kms(&moto, &data)
        .env("FACTORY_CA_CA__KEY_PASSPHRASE_ENV", "KMS_TEST_PASSPHRASE")
        .env("KMS_TEST_PASSPHRASE", "a passphrase for key files")
        .args(["ca", "encrypt-keys"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{pending}\tin AWS KMS (no file)\n")),
        "{}",
        stdout(&out)
    );

    // An openssl root signs it; the CA installs on its KMS key and issues.
    openssl_root(dir, "root.key", "root.pem", "/CN=Offline Root");
    write(
        dir,
        "ca.ext",
        "[issuing]\nbasicConstraints=critical,CA:TRUE,pathlen:0\n\
         keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n\
         authorityKeyIdentifier=keyid\n",
    );
    let (ok, said) = openssl(
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
            "-CAcreateserial",
            "-days",
            "10",
            "-extfile",
            "ca.ext",
            "-extensions",
            "issuing",
            "-out",
            "issuing.pem",
        ],
    );
    assert!(ok, "{said}");
    let out = with_kms(&moto, &data)
        .args(["ca", "install", &pending, "--activate", "--cert"])
        .arg(dir.join("issuing.pem"))
        .arg("--chain")
        .arg(dir.join("root.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).trim_end().ends_with(&uri(&key)),
        "{}",
        stdout(&out)
    );

    let station = new_token(&moto, &data, "station", "line-kms");
    let mut service = Service::start(with_kms(&moto, &data));
    service.ready().await;
    let client = reqwest::Client::new();
    let answer = issue(&client, &service.base(), &station, "kms-chain-1").await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let body: serde_json::Value = answer.json().await.unwrap();
    write(dir, "device.pem", body["certificate_pem"].as_str().unwrap());
    write(
        dir,
        "chain.pem",
        body["certificate_chain_pem"].as_str().unwrap(),
    );
    let (ok, said) = openssl(
        dir,
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "chain.pem",
            "device.pem",
        ],
    );
    assert!(ok, "{said}");
    service.stop().await;
}
