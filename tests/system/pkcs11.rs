//! CA keys in a PKCS#11 token: a SoftHSM2 token made for each test in its own directory
//! (`SOFTHSM2_CONF`), a CA created on it through the real binary, device certificates issued
//! over HTTP and checked by openssl, the key's attributes read back with OpenSC's pkcs11-tool,
//! and the faults an operator meets (wrong PIN, missing object, wrong module, a PIN in the URI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use reqwest::StatusCode;

use crate::common::binary::{Service, factory_ca, stderr, stdout};
use crate::common::*;

/// Debian's softhsm2 package puts the module here.
const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "factory test";
pub(crate) const USER_PIN: &str = "user-PIN-2468";
const SO_PIN: &str = "13579111";
/// The variable `pkcs11.pin_env` names in these tests.
const PIN_VAR: &str = "FACTORY_TEST_HSM_PIN";

/// A SoftHSM2 token in a temporary directory, initialized with [`USER_PIN`].
pub(crate) struct Hsm {
    dir: tempfile::TempDir,
}

impl Hsm {
    pub(crate) fn new() -> Hsm {
        assert!(
            Path::new(MODULE).exists(),
            "{MODULE} is missing: install softhsm2 and opensc (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let hsm = Hsm { dir };
        run(hsm.command("softhsm2-util").args([
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--so-pin",
            SO_PIN,
            "--pin",
            USER_PIN,
        ]));
        hsm
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SOFTHSM2_CONF", self.conf());
        cmd
    }

    /// `pkcs11-tool` logged in to the test token.
    fn pkcs11_tool(&self, args: &[&str]) -> Output {
        self.command("pkcs11-tool")
            .args([
                "--module",
                MODULE,
                "--token-label",
                TOKEN,
                "--login",
                "--pin",
                USER_PIN,
            ])
            .args(args)
            .output()
            .expect("pkcs11-tool runs")
    }

    /// `factory-ca` on `data`, with `[pkcs11]` set for this token and `pin` in the variable
    /// `pkcs11.pin_env` names.
    pub(crate) fn factory_ca(&self, data: &Path, pin: &str) -> Command {
        let mut cmd = factory_ca(data);
        cmd.env("SOFTHSM2_CONF", self.conf())
            .env("FACTORY_CA_PKCS11__MODULE", MODULE)
            .env("FACTORY_CA_PKCS11__PIN_ENV", PIN_VAR)
            .env(PIN_VAR, pin)
            .env("FACTORY_CA_CA__CREATE_ON_FIRST_START", "false");
        cmd
    }

    /// Writes a data object labelled `label` from another process. SoftHSM2 re-reads a
    /// token's directory only when the token changed through SoftHSM2, so this makes the
    /// server's SoftHSM2 see object files that were moved away or back.
    fn touch(&self, scratch: &Path, label: &str) {
        let note = write(scratch, &format!("{label}.txt"), label);
        let wrote = self.pkcs11_tool(&[
            "--write-object",
            note.to_str().unwrap(),
            "--type",
            "data",
            "--label",
            label,
        ]);
        assert!(wrote.status.success(), "{}", stderr(&wrote));
    }

    /// The files of the token's key objects: SoftHSM2 keeps each object in a file under the
    /// token's directory (and the token itself in `token.object`).
    fn object_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for token in std::fs::read_dir(self.dir.path().join("tokens")).unwrap() {
            for file in std::fs::read_dir(token.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.ends_with(".object") && name != "token.object" {
                    files.push(path);
                }
            }
        }
        files
    }
}

pub(crate) fn uri(object: &str) -> String {
    format!("pkcs11:token=factory%20test;object={object}")
}

/// `ca create --key-uri` through the binary; returns the output line of the new CA.
fn create_ca(hsm: &Hsm, data: &Path, object: &str, extra: &[&str]) -> String {
    let out = hsm
        .factory_ca(data, USER_PIN)
        .args(["ca", "create", "--key-uri", &uri(object)])
        .args(["--common-name", "Line 3 HSM Root", "--country", "JP"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

fn new_token(hsm: &Hsm, data: &Path, role: &str, name: &str) -> String {
    let out = hsm
        .factory_ca(data, USER_PIN)
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

#[tokio::test]
async fn a_ca_key_made_in_softhsm_signs_certificates_that_openssl_verifies_and_never_leaves_it() {
    let hsm = Hsm::new();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");

    // The key pair is generated in the token, and the CA certificate signed there.
    let line = create_ca(&hsm, &data, "issuing-root", &["--algorithm", "ecdsa-p384"]);
    assert!(
        line.contains("\tissuing\tecdsa-p384\tgenerated\t"),
        "{line}"
    );
    assert!(line.trim_end().ends_with(&uri("issuing-root")), "{line}");
    let ca_id = line.split('\t').next().unwrap().to_owned();

    // No key file for this CA anywhere under the data directory.
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    !name.ends_with(".key.pem"),
                    "a key file: {}",
                    path.display()
                );
            }
        }
    }

    // The token holds the private key as sensitive and never extractable (CKA_SENSITIVE,
    // CKA_ALWAYS_SENSITIVE, CKA_EXTRACTABLE false, CKA_NEVER_EXTRACTABLE).
    let objects = hsm.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
    let listed = stdout(&objects);
    assert!(listed.contains("label:      issuing-root"), "{listed}");
    assert!(
        listed.contains("Access:     sensitive, always sensitive, never extractable"),
        "{listed}"
    );

    // The same key is used, not a second one, when the URI names an existing key pair.
    let again = hsm
        .factory_ca(&data, USER_PIN)
        .args([
            "ca",
            "create",
            "--key-uri",
            &uri("issuing-root"),
            "--common-name",
            "Second",
        ])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("\t-\tecdsa-p384\t"),
        "{}",
        stdout(&again)
    );
    let mismatch = hsm
        .factory_ca(&data, USER_PIN)
        .args([
            "ca",
            "create",
            "--key-uri",
            &uri("issuing-root"),
            "--algorithm",
            "rsa-2048",
        ])
        .output()
        .unwrap();
    assert!(!mismatch.status.success());
    assert!(
        stderr(&mismatch).contains("of type ECDSA P-384"),
        "{}",
        stderr(&mismatch)
    );
    let privkeys = stdout(&hsm.pkcs11_tool(&["--list-objects", "--type", "privkey"]));
    assert_eq!(
        privkeys.matches("Private Key Object").count(),
        1,
        "{privkeys}"
    );

    let list = stdout(
        &hsm.factory_ca(&data, USER_PIN)
            .args(["ca", "list"])
            .output()
            .unwrap(),
    );
    assert!(
        list.lines().next().unwrap().ends_with("\tKEY_URI"),
        "{list}"
    );
    assert!(list.contains(&format!("{ca_id}\tissuing")), "{list}");

    // Issue over HTTP with the token key, and verify with openssl.
    let station = new_token(&hsm, &data, "station", "line-3");
    let admin = new_token(&hsm, &data, "admin", "ops");
    let mut service = Service::start(hsm.factory_ca(&data, USER_PIN));
    service.ready().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = service.base();
    let answer = issue(&client, &base, &station, "hsm-device-1").await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let body: serde_json::Value = answer.json().await.unwrap();
    let files = work.path();
    write(
        files,
        "device.pem",
        body["certificate_pem"].as_str().unwrap(),
    );
    write(
        files,
        "ca.pem",
        body["ca_certificate_pem"].as_str().unwrap(),
    );
    let verified = Command::new("openssl")
        .current_dir(files)
        .args([
            "verify",
            "-x509_strict",
            "-check_ss_sig",
            "-CAfile",
            "ca.pem",
            "device.pem",
        ])
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}{}",
        stdout(&verified),
        stderr(&verified)
    );
    let text = run(Command::new("openssl").current_dir(files).args([
        "x509",
        "-in",
        "device.pem",
        "-noout",
        "-text",
    ]));
    assert!(
        stdout(&text).contains("ecdsa-with-SHA384"),
        "{}",
        stdout(&text)
    );

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
    let shown = cas["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ca| ca["id"] == ca_id.as_str())
        .unwrap();
    assert_eq!(shown["key_uri"], uri("issuing-root").as_str());

    // The token fails at signing time (its key is gone): 503 signer_unavailable, nothing
    // recorded; once the key is back, the next request signs again.
    let parked = work.path().join("parked");
    std::fs::create_dir(&parked).unwrap();
    let moved: Vec<(PathBuf, PathBuf)> = hsm
        .object_files()
        .into_iter()
        .map(|from| {
            let to = parked.join(from.file_name().unwrap());
            std::fs::rename(&from, &to).unwrap();
            (from, to)
        })
        .collect();
    assert!(!moved.is_empty());
    hsm.touch(work.path(), "gone");
    // Every request fails alike, whether it starts on a kept session or a new one.
    for attempt in 0..6 {
        let answer = issue(&client, &base, &station, &format!("refused-{attempt}")).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["code"], "signer_unavailable", "{body}");
    }
    for (from, to) in &moved {
        std::fs::rename(to, from).unwrap();
    }
    hsm.touch(work.path(), "back");
    let answer = issue(&client, &base, &station, "hsm-device-2").await;
    assert_eq!(
        answer.status(),
        StatusCode::CREATED,
        "{}",
        answer.text().await.unwrap()
    );
    let rows: serde_json::Value = client
        .get(format!("{base}/v1/certificates"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let things: Vec<&str> = rows["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["thing_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        things.len(),
        2,
        "only the signed certificates are recorded: {things:?}"
    );
    assert!(
        things.iter().all(|t| t.starts_with("hsm-device-")),
        "{things:?}"
    );
    let (logs, _) = service.stop().await;

    // The PIN is in no log line and nowhere in the store (which holds the key URI).
    assert!(logs.contains("PKCS#11 signing failed"), "{logs}");
    assert!(!logs.contains(USER_PIN), "{logs}");
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let found = bytes
                .windows(USER_PIN.len())
                .any(|w| w == USER_PIN.as_bytes());
            assert!(!found, "the PIN is in {}", path.display());
        }
    }
}

#[tokio::test]
async fn a_wrong_pin_a_missing_object_or_module_is_refused_naming_the_ca_and_the_setting() {
    let hsm = Hsm::new();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let line = create_ca(&hsm, &data, "root-rsa", &["--algorithm", "rsa-2048"]);
    assert!(line.contains("\tissuing\trsa-2048\tgenerated\t"), "{line}");
    let ca_id = line.split('\t').next().unwrap().to_owned();

    // With the right PIN, the RSA key in the token signs (CKM_SHA256_RSA_PKCS) what openssl
    // verifies: its own CA certificate and a device certificate.
    let station = new_token(&hsm, &data, "station", "line-4");
    let mut service = Service::start(hsm.factory_ca(&data, USER_PIN));
    service.ready().await;
    let client = reqwest::Client::new();
    let answer = issue(&client, &service.base(), &station, "rsa-device-1").await;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let body: serde_json::Value = answer.json().await.unwrap();
    let files = work.path();
    write(
        files,
        "device.pem",
        body["certificate_pem"].as_str().unwrap(),
    );
    write(
        files,
        "ca.pem",
        body["ca_certificate_pem"].as_str().unwrap(),
    );
    for certificate in ["ca.pem", "device.pem"] {
        let verified = Command::new("openssl")
            .current_dir(files)
            // -check_ss_sig: the self-signature of the CA certificate is checked too.
            .args([
                "verify",
                "-x509_strict",
                "-check_ss_sig",
                "-CAfile",
                "ca.pem",
            ])
            .arg(certificate)
            .output()
            .unwrap();
        assert!(verified.status.success(), "{}", stderr(&verified));
    }
    service.stop().await;

    // A wrong PIN: the server does not start, and says which CA and which setting.
    let wrong_pin = "wrong-PIN-9753";
    let mut service = Service::start(hsm.factory_ca(&data, wrong_pin));
    let status = service.exit_within(Duration::from_secs(30)).await;
    assert!(!status.success());
    let said = service.stderr_text();
    assert!(said.contains(&ca_id), "{said}");
    assert!(said.contains("refused the user PIN"), "{said}");
    assert!(said.contains(&format!(
        "pkcs11.pin_env (the environment variable {PIN_VAR})"
    )));
    assert!(!said.contains(wrong_pin), "the PIN is echoed: {said}");
    // ...nor does the CLI use the CA.
    let activate = hsm
        .factory_ca(&data, wrong_pin)
        .args(["ca", "activate", &ca_id])
        .output()
        .unwrap();
    assert!(!activate.status.success());
    assert!(
        stderr(&activate).contains("refused the user PIN"),
        "{}",
        stderr(&activate)
    );
    assert!(!stderr(&activate).contains(wrong_pin));

    // A module that cannot be loaded names the setting.
    let out = hsm
        .factory_ca(&data, USER_PIN)
        .env("FACTORY_CA_PKCS11__MODULE", "/nonexistent/libpkcs11.so")
        .args(["ca", "activate", &ca_id])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains("/nonexistent/libpkcs11.so (pkcs11.module) cannot be loaded"),
        "{said}"
    );

    // A key of a type a CA may not have (P-521 here) is refused, naming what is supported.
    let made = hsm.pkcs11_tool(&[
        "--keypairgen",
        "--key-type",
        "EC:secp521r1",
        "--label",
        "p521",
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let out = hsm
        .factory_ca(&data, USER_PIN)
        .args(["ca", "create", "--key-uri", &uri("p521")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("an EC key on another curve"), "{said}");
    assert!(
        said.contains("ECDSA P-256, ECDSA P-384 or RSA 2048 to 4096 bits"),
        "{said}"
    );

    // An unknown token, and a PIN in the URI, are refused before anything is made.
    let out = hsm
        .factory_ca(&data, USER_PIN)
        .args(["ca", "create", "--key-uri", "pkcs11:token=nope;object=k"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no token labelled \"nope\""),
        "{}",
        stderr(&out)
    );
    let out = hsm
        .factory_ca(&data, USER_PIN)
        .args(["ca", "create", "--key-uri"])
        .arg(format!("{}?pin-value={USER_PIN}", uri("k")))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("a PIN is never stored"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(USER_PIN));

    // The object deleted from the token: the server does not start, naming the CA.
    let deleted = hsm.pkcs11_tool(&[
        "--delete-object",
        "--type",
        "privkey",
        "--label",
        "root-rsa",
    ]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let mut service = Service::start(hsm.factory_ca(&data, USER_PIN));
    let status = service.exit_within(Duration::from_secs(30)).await;
    assert!(!status.success());
    let said = service.stderr_text();
    assert!(said.contains(&ca_id), "{said}");
    assert!(
        said.contains("has no private key labelled \"root-rsa\""),
        "{said}"
    );
}
