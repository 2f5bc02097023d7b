//! CA keys at rest with a passphrase: what we write is an encrypted PKCS#8 key that OpenSSL
//! decrypts to the CA's public key, OpenSSL's encrypted keys import and sign, a wrong or
//! missing passphrase stops the service with a message that says what to fix, the passphrase
//! appears in no log, answer or audit record, plain keys keep loading, and
//! `factory-ca ca encrypt-keys` encrypts them in place.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use factory_ca::app::Application;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::binary::{Service, factory_ca, stderr, stdout};
use crate::common::process::openssl_root;
use crate::common::*;

fn openssl(dir: &Path, args: &[&str]) -> Output {
    run(Command::new("openssl").current_dir(dir).args(args))
}

fn openssl_text(dir: &Path, args: &[&str]) -> String {
    String::from_utf8(openssl(dir, args).stdout).unwrap()
}

/// An owner-only file holding `content`.
fn secret_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = write(dir, name, content);
    chmod(&path, 0o600);
    path
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn key_file(data_dir: &Path, ca_id: &str) -> PathBuf {
    data_dir.join("keys").join(format!("{ca_id}.key.pem"))
}

fn is_encrypted_pkcs8(path: &Path) -> bool {
    let text = std::fs::read_to_string(path).unwrap();
    text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
        && text
            .trim_end()
            .ends_with("-----END ENCRYPTED PRIVATE KEY-----")
        && !text.contains("-----BEGIN PRIVATE KEY-----")
}

/// The public key (PEM) that OpenSSL finds in a certificate.
fn certificate_public_key(dir: &Path, certificate_pem: &str) -> String {
    let cert = write(dir, "cert-for-pubkey.pem", certificate_pem);
    openssl_text(
        dir,
        &["x509", "-in", cert.to_str().unwrap(), "-pubkey", "-noout"],
    )
}

/// The public key (PEM) of an encrypted key, decrypted by OpenSSL with `passin`
/// (`file:PATH` or `env:NAME`).
fn decrypted_public_key(dir: &Path, key: &Path, passin: &str) -> String {
    openssl_text(
        dir,
        &[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-passin",
            passin,
            "-pubout",
        ],
    )
}

async fn issuing_ca(app: &TestApp) -> (String, String) {
    let ca = json(app.get(&app.admin, "/v1/ca").await).await;
    (
        ca["id"].as_str().unwrap().to_owned(),
        ca["certificate_pem"].as_str().unwrap().to_owned(),
    )
}

async fn sign_ok(app: &TestApp, thing: &str) -> serde_json::Value {
    let response = app.sign(&csr(thing, "JP").pem).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    json(response).await
}

/// A self-signed CA certificate made by OpenSSL for `key` (decrypted with `passin` if given).
fn openssl_ca_certificate(dir: &Path, key: &str, passin: Option<&str>, out: &str) -> String {
    let mut args = vec![
        "req",
        "-x509",
        "-new",
        "-key",
        key,
        "-subj",
        "/C=JP/O=Org/CN=Encrypted Import",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        out,
    ];
    if let Some(passin) = passin {
        args.extend(["-passin", passin]);
    }
    openssl(dir, &args);
    std::fs::read_to_string(dir.join(out)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_written_with_a_passphrase_are_encrypted_pkcs8_that_openssl_reads() {
    let secrets = tempfile::tempdir().unwrap();
    let s = secrets.path();
    let passphrase_file = secret_file(s, "passphrase", "first passphrase, at rest\n");
    let passin = format!("file:{}", passphrase_file.display());
    let app = TestApp::spawn_with(Backend::Sqlite, |settings| {
        settings.ca.key_passphrase_file = Some(passphrase_file.clone());
    })
    .await;
    let data = app.settings.data_dir.clone();

    // The development CA created on first start.
    let (first_id, first_pem) = issuing_ca(&app).await;
    let first_key = key_file(&data, &first_id);
    assert!(is_encrypted_pkcs8(&first_key));
    assert_eq!(mode(&first_key), 0o600);
    let structure = openssl_text(s, &["asn1parse", "-in", first_key.to_str().unwrap()]);
    for algorithm in ["PBES2", "PBKDF2", "hmacWithSHA256", "aes-256-cbc"] {
        assert!(structure.contains(algorithm), "{algorithm}: {structure}");
    }
    assert_eq!(
        decrypted_public_key(s, &first_key, &passin),
        certificate_public_key(s, &first_pem)
    );
    let wrong = secret_file(s, "wrong", "not the passphrase\n");
    let refused = Command::new("openssl")
        .args(["pkey", "-in", first_key.to_str().unwrap(), "-passin"])
        .arg(format!("file:{}", wrong.display()))
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "openssl accepted a wrong passphrase"
    );

    // A CA created over the API (rotation: activated at once), RSA this time.
    let created = app
        .admin_json(
            Method::POST,
            "/v1/admin/cas",
            json!({"algorithm": "rsa-2048", "subject": {"common_name": "Rotated Root"}, "activate": true}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json(created).await;
    let rsa_id = created["id"].as_str().unwrap().to_owned();
    let rsa_key = key_file(&data, &rsa_id);
    assert!(is_encrypted_pkcs8(&rsa_key));
    assert_eq!(
        decrypted_public_key(s, &rsa_key, &passin),
        certificate_public_key(s, created["certificate_pem"].as_str().unwrap())
    );
    assert_eq!(
        sign_ok(&app, "Thing-rsa").await["issuing_ca"],
        rsa_id.as_str()
    );

    // Unencrypted keys imported over the API, in the forms OpenSSL's older commands write
    // (SEC1 after an EC PARAMETERS block, and PKCS#1), are stored as encrypted PKCS#8.
    openssl(
        s,
        &[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-out",
            "sec1.pem",
        ],
    );
    openssl(
        s,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa8.pem",
        ],
    );
    openssl(
        s,
        &[
            "rsa",
            "-in",
            "rsa8.pem",
            "-traditional",
            "-out",
            "pkcs1.pem",
        ],
    );
    let mut imported_ids = Vec::new();
    for (key, label) in [
        ("sec1.pem", "-----BEGIN EC PRIVATE KEY-----"),
        ("pkcs1.pem", "-----BEGIN RSA PRIVATE KEY-----"),
    ] {
        let key_pem = std::fs::read_to_string(s.join(key)).unwrap();
        assert!(key_pem.contains(label));
        let certificate = openssl_ca_certificate(s, key, None, &format!("{key}.ca.pem"));
        let imported = app
            .admin_json(
                Method::POST,
                "/v1/admin/cas/import",
                json!({"certificate_pem": certificate, "private_key_pem": key_pem}),
            )
            .await;
        assert_eq!(imported.status(), StatusCode::CREATED, "{key}");
        let imported_id = json(imported).await["id"].as_str().unwrap().to_owned();
        let imported_key = key_file(&data, &imported_id);
        assert!(is_encrypted_pkcs8(&imported_key), "{key}");
        assert_eq!(
            decrypted_public_key(s, &imported_key, &passin),
            certificate_public_key(s, &certificate),
            "{key}"
        );
        imported_ids.push(imported_id);
    }

    // Non-issuing CAs still sign their CRLs from their encrypted keys (twice: the second
    // time from the decrypted-key cache).
    for id in [&first_id, &imported_ids[0], &imported_ids[1], &first_id] {
        let crl = app.get(&app.viewer, &format!("/v1/cas/{id}/crl")).await;
        assert_eq!(crl.status(), StatusCode::OK, "{id}");
    }

    // A restart decrypts the issuing key, which signs.
    let app = app.restart().await;
    assert_eq!(
        sign_ok(&app, "Thing-after-restart").await["issuing_ca"],
        rsa_id.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_encrypted_pkcs8_keys_import_with_their_passphrase_and_sign() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let import_passphrase = "import passphrase 7f3c";
    let wrong_passphrase = "wrong passphrase 91ab";
    let passfile = secret_file(w, "import-pass", &format!("{import_passphrase}\n"));
    let passin = format!("file:{}", passfile.display());
    // `openssl genpkey -aes-256-cbc`: PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC.
    openssl(
        w,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-aes-256-cbc",
            "-pass",
            &passin,
            "-out",
            "ec.enc.pem",
        ],
    );
    let ec_ca = openssl_ca_certificate(w, "ec.enc.pem", Some(&passin), "ec-ca.pem");
    // `openssl pkcs8 -topk8 -v2`: here with AES-128 and the older HMAC-SHA1 PRF.
    openssl(
        w,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.pem",
        ],
    );
    openssl(
        w,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "rsa.pem",
            "-v2",
            "aes-128-cbc",
            "-v2prf",
            "hmacWithSHA1",
            "-passout",
            &passin,
            "-out",
            "rsa.enc.pem",
        ],
    );
    let rsa_ca = openssl_ca_certificate(w, "rsa.pem", None, "rsa-ca.pem");
    // scrypt, which we do not read.
    openssl(
        w,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "rsa.pem",
            "-scrypt",
            "-passout",
            &passin,
            "-out",
            "rsa.scrypt.pem",
        ],
    );
    let read = |name: &str| std::fs::read_to_string(w.join(name)).unwrap();

    let app = TestApp::spawn(Backend::Sqlite).await;
    let import = |key: String, passphrase: Option<&str>, certificate: &str| {
        let mut body =
            json!({"certificate_pem": certificate, "private_key_pem": key, "activate": true});
        if let Some(p) = passphrase {
            body["key_passphrase"] = json!(p);
        }
        app.admin_json(Method::POST, "/v1/admin/cas/import", body)
    };
    let refusals = [
        (None, "ec.enc.pem", 422, "ca_rejected", "key_passphrase"),
        (
            Some(wrong_passphrase),
            "ec.enc.pem",
            422,
            "ca_rejected",
            "does not decrypt",
        ),
        (Some(""), "ec.enc.pem", 422, "invalid_request", "empty"),
        (
            Some(import_passphrase),
            "rsa.scrypt.pem",
            422,
            "ca_rejected",
            "scrypt",
        ),
    ];
    for (passphrase, key, status, code, message) in refusals {
        let certificate = if key.starts_with("ec") {
            &ec_ca
        } else {
            &rsa_ca
        };
        let response = import(read(key), passphrase, certificate).await;
        assert_eq!(response.status().as_u16(), status, "{key} {passphrase:?}");
        let body = response.text().await.unwrap();
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["code"], code, "{body}");
        assert!(
            problem["detail"].as_str().unwrap().contains(message),
            "{body}"
        );
        assert!(!body.contains(import_passphrase) && !body.contains(wrong_passphrase));
    }

    for (key, certificate, thing) in [
        ("ec.enc.pem", &ec_ca, "Thing-ec"),
        ("rsa.enc.pem", &rsa_ca, "Thing-rsa"),
    ] {
        let response = import(read(key), Some(import_passphrase), certificate).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{key}");
        let id = json(response).await["id"].as_str().unwrap().to_owned();
        assert_eq!(sign_ok(&app, thing).await["issuing_ca"], id.as_str());
        // No passphrase is configured for keys at rest: stored decrypted, owner-only.
        let stored = key_file(&app.settings.data_dir, &id);
        assert!(
            std::fs::read_to_string(&stored)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert_eq!(mode(&stored), 0o600);
    }

    // Refused and accepted imports are audited, without the passphrases.
    let audit = app
        .get(&app.admin, "/v1/admin/audit?action=ca.import")
        .await
        .text()
        .await
        .unwrap();
    let items = serde_json::from_str::<serde_json::Value>(&audit).unwrap()["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(items, 5, "{audit}");
    assert!(audit.contains("does not decrypt") && audit.contains("scrypt"));
    assert!(!audit.contains(import_passphrase) && !audit.contains(wrong_passphrase));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_wrong_or_missing_passphrase_refuses_to_start_and_says_what_to_fix() {
    let secrets = tempfile::tempdir().unwrap();
    let s = secrets.path();
    let right = "the right passphrase 3b9e";
    let wrong = "a wrong passphrase c41d";
    let right_file = secret_file(s, "right", &format!("{right}\n"));
    let mut app = TestApp::spawn_with(Backend::Postgres, |settings| {
        settings.ca.key_passphrase_file = Some(right_file.clone());
    })
    .await;
    let (id, _) = issuing_ca(&app).await;
    let key = key_file(&app.settings.data_dir, &id);
    app.shutdown().await;

    let wrong_file = secret_file(s, "wrong", &format!("{wrong}\n"));
    let open_file = write(s, "open", &format!("{right}\n"));
    chmod(&open_file, 0o644);
    let empty_file = secret_file(s, "empty", "\n");
    let cases = [
        (
            Some(wrong_file.clone()),
            vec![
                "does not decrypt this key".to_owned(),
                format!("the file {}", wrong_file.display()),
                key.display().to_string(),
            ],
        ),
        (
            None,
            vec![
                "the key is encrypted".to_owned(),
                "no passphrase is configured; set ca.key_passphrase_env or \
                 ca.key_passphrase_file"
                    .to_owned(),
            ],
        ),
        (
            Some(open_file.clone()),
            vec!["CA key passphrase".to_owned(), "chmod 600".to_owned()],
        ),
        (Some(empty_file), vec!["is empty".to_owned()]),
    ];
    for (passphrase_file, messages) in cases {
        let mut settings = app.settings.clone();
        settings.ca.key_passphrase_file = passphrase_file.clone();
        let error = match Application::build_with_registry(settings, None).await {
            Ok(_) => panic!("started with {passphrase_file:?}"),
            Err(e) => format!("{e:#}"),
        };
        for message in messages {
            assert!(error.contains(&message), "{message:?} not in: {error}");
        }
        assert!(!error.contains(right) && !error.contains(wrong), "{error}");
    }

    // The key file is untouched, and the right passphrase still opens it.
    assert!(is_encrypted_pkcs8(&key));
    let app = app.restart().await;
    sign_ok(&app, "Thing-1").await;
}

/// `cmd` with the at-rest passphrase in FACTORY_CA_KEY_PASSPHRASE (the documented name).
fn with_passphrase<'a>(cmd: &'a mut Command, passphrase: &str) -> &'a mut Command {
    cmd.env(
        "FACTORY_CA_CA__KEY_PASSPHRASE_ENV",
        "FACTORY_CA_KEY_PASSPHRASE",
    )
    .env("FACTORY_CA_KEY_PASSPHRASE", passphrase)
}

/// `factory-ca serve` on a free port.
fn start_server(mut cmd: Command) -> Service {
    cmd.env("FACTORY_CA_SERVER__SHUTDOWN_GRACE_SECS", "5");
    Service::start(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrases_never_reach_logs_answers_or_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let at_rest = format!("at-rest-{}", uuid::Uuid::new_v4().simple());
    let import_passphrase = format!("import-{}", uuid::Uuid::new_v4().simple());
    let wrong_passphrase = format!("wrong-{}", uuid::Uuid::new_v4().simple());
    let passphrases = [&at_rest, &import_passphrase, &wrong_passphrase];
    let import_passfile = secret_file(d, "import-pass", &import_passphrase);
    let passin = format!("file:{}", import_passfile.display());
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-aes-256-cbc",
            "-pass",
            &passin,
            "-out",
            "enc.pem",
        ],
    );
    let certificate = openssl_ca_certificate(d, "enc.pem", Some(&passin), "ca.pem");
    // The CLI works on a store that holds a CA: create the issuing one first (encrypted at rest).
    let mut create = factory_ca(&data);
    with_passphrase(&mut create, &at_rest).args(["ca", "create", "--common-name", "Root"]);
    run(&mut create);
    let admin_token =
        stdout(&run(factory_ca(&data).args([
            "token", "create", "--role", "admin", "--name", "root",
        ])))
        .trim()
        .to_owned();

    let mut cmd = factory_ca(&data);
    with_passphrase(&mut cmd, &at_rest).env("FACTORY_CA_LOG__LEVEL", "debug");
    let mut server = start_server(cmd);
    let client = reqwest::Client::new();
    server.ready().await;
    let mut answers = String::new();
    let key_pem = std::fs::read_to_string(d.join("enc.pem")).unwrap();
    for passphrase in [&wrong_passphrase, &import_passphrase] {
        let response = client
            .post(format!("{}/v1/admin/cas/import", server.base()))
            .bearer_auth(&admin_token)
            .json(&json!({
                "certificate_pem": certificate,
                "private_key_pem": key_pem,
                "key_passphrase": passphrase,
            }))
            .send()
            .await
            .unwrap();
        let status = response.status();
        answers.push_str(&response.text().await.unwrap());
        let expected = if passphrase == &import_passphrase {
            StatusCode::CREATED
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        assert_eq!(status, expected, "{answers}");
    }
    let cas = client
        .get(format!("{}/v1/admin/cas", server.base()))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ids: Vec<String> = serde_json::from_str::<serde_json::Value>(&cas).unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ca| ca["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{cas}");
    for id in &ids {
        assert!(is_encrypted_pkcs8(&key_file(&data, id)), "{id}");
        let crl = client
            .get(format!("{}/v1/cas/{id}/crl", server.base()))
            .send()
            .await
            .unwrap();
        assert_eq!(crl.status(), StatusCode::OK);
    }
    let audit = client
        .get(format!("{}/v1/admin/audit", server.base()))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("does not decrypt"), "{audit}");
    answers.push_str(&cas);
    answers.push_str(&audit);
    let (logs, _) = server.stop().await;
    assert!(logs.contains("DEBUG"), "debug logging is on: {logs}");
    for passphrase in passphrases {
        assert!(
            !logs.contains(passphrase.as_str()),
            "a passphrase in the logs"
        );
        assert!(
            !answers.contains(passphrase.as_str()),
            "a passphrase in an answer"
        );
    }

    // A restart with a wrong passphrase, or with the variable unset, stops with what to fix.
    for (passphrase, message) in [
        (
            Some(wrong_passphrase.as_str()),
            "the passphrase from the environment variable FACTORY_CA_KEY_PASSPHRASE does not \
             decrypt this key",
        ),
        (
            None,
            "the environment variable FACTORY_CA_KEY_PASSPHRASE is not set",
        ),
    ] {
        let mut cmd = factory_ca(&data);
        match passphrase {
            Some(p) => with_passphrase(&mut cmd, p),
            None => cmd.env(
                "FACTORY_CA_CA__KEY_PASSPHRASE_ENV",
                "FACTORY_CA_KEY_PASSPHRASE",
            ),
        };
        let out = cmd
            .args(["ca", "activate", &ids[0]])
            .output()
            .expect("factory-ca runs");
        assert!(!out.status.success());
        let text = stderr(&out);
        assert!(text.contains(message), "{message:?} not in {text}");
        for passphrase in passphrases {
            assert!(!text.contains(passphrase.as_str()));
        }
        let mut cmd = factory_ca(&data);
        if let Some(p) = passphrase {
            with_passphrase(&mut cmd, p);
        } else {
            cmd.env(
                "FACTORY_CA_CA__KEY_PASSPHRASE_ENV",
                "FACTORY_CA_KEY_PASSPHRASE",
            );
        }
        let mut server = start_server(cmd);
        let status = server.exit_within(Duration::from_secs(60)).await;
        let text = server.stderr_text();
        assert!(!status.success(), "serve started: {text}");
        assert!(text.contains(message), "{message:?} not in {text}");
        assert!(!text.contains(&at_rest) && !text.contains(&wrong_passphrase));
    }
}

#[test]
fn a_plain_key_loads_with_a_warning_and_encrypt_keys_encrypts_it_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let passphrase = format!("rest-{}", uuid::Uuid::new_v4().simple());
    let mut ids = Vec::new();
    for name in ["Plain One", "Plain Two"] {
        let out = run(factory_ca(&data).args(["ca", "create", "--common-name", name]));
        ids.push(stdout(&out).split('\t').next().unwrap().to_owned());
    }
    let public_keys: Vec<String> = ids
        .iter()
        .map(|id| {
            openssl_text(
                d,
                &[
                    "pkey",
                    "-in",
                    key_file(&data, id).to_str().unwrap(),
                    "-pubout",
                ],
            )
        })
        .collect();

    // Configured passphrase, plain keys: they load, with a warning naming the command.
    let out =
        run(with_passphrase(&mut factory_ca(&data), &passphrase).args(["ca", "activate", &ids[1]]));
    let warning = stderr(&out);
    assert!(
        warning.contains("not encrypted") && warning.contains("factory-ca ca encrypt-keys"),
        "{warning}"
    );

    // Without a passphrase there is nothing to encrypt with.
    let out = factory_ca(&data)
        .args(["ca", "encrypt-keys"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no passphrase is configured"),
        "{}",
        stderr(&out)
    );

    let out =
        run(with_passphrase(&mut factory_ca(&data), &passphrase).args(["ca", "encrypt-keys"]));
    let report = stdout(&out);
    for id in &ids {
        assert!(report.contains(&format!("{id}\tencrypted\n")), "{report}");
    }
    let keys_dir = data.join("keys");
    assert_eq!(
        std::fs::read_dir(&keys_dir).unwrap().count(),
        2,
        "no temporary files left"
    );
    for (id, public_key) in ids.iter().zip(&public_keys) {
        let key = key_file(&data, id);
        assert!(is_encrypted_pkcs8(&key));
        assert_eq!(mode(&key), 0o600);
        let decrypted = Command::new("openssl")
            .args([
                "pkey",
                "-in",
                key.to_str().unwrap(),
                "-passin",
                "env:PASS",
                "-pubout",
            ])
            .env("PASS", &passphrase)
            .output()
            .unwrap();
        assert!(decrypted.status.success());
        assert_eq!(&stdout(&decrypted), public_key);
    }

    // Idempotent: a second run only checks that the passphrase opens them.
    let report = stdout(&run(
        with_passphrase(&mut factory_ca(&data), &passphrase).args(["ca", "encrypt-keys"])
    ));
    for id in &ids {
        assert!(
            report.contains(&format!("{id}\talready encrypted\n")),
            "{report}"
        );
    }
    // With another passphrase it reports each file and fails, leaving them as they were.
    let before: Vec<String> = ids
        .iter()
        .map(|id| std::fs::read_to_string(key_file(&data, id)).unwrap())
        .collect();
    let out = with_passphrase(&mut factory_ca(&data), "another passphrase")
        .args(["ca", "encrypt-keys"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stdout(&out).contains("\tfailed\t") && stdout(&out).contains("does not decrypt"));
    assert!(stderr(&out).contains("2 CA key file(s) could not be encrypted"));
    for (id, text) in ids.iter().zip(&before) {
        assert_eq!(&std::fs::read_to_string(key_file(&data, id)).unwrap(), text);
    }

    // The encrypted keys load with the passphrase, without the warning.
    let out =
        run(with_passphrase(&mut factory_ca(&data), &passphrase).args(["ca", "activate", &ids[0]]));
    assert!(!stderr(&out).contains("not encrypted"), "{}", stderr(&out));

    // An import on the command line reads an encrypted key's passphrase from a file or a
    // variable (never an argument), and stores the key under the at-rest passphrase.
    let import_passfile = secret_file(d, "import-pass", "import passphrase\n");
    let passin = format!("file:{}", import_passfile.display());
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-aes-256-cbc",
            "-pass",
            &passin,
            "-out",
            "import.enc.pem",
        ],
    );
    openssl_ca_certificate(d, "import.enc.pem", Some(&passin), "import-ca.pem");
    let import = |extra: &[&str]| {
        let mut cmd = factory_ca(&data);
        with_passphrase(&mut cmd, &passphrase).args([
            "ca",
            "import",
            "--cert",
            d.join("import-ca.pem").to_str().unwrap(),
            "--key",
            d.join("import.enc.pem").to_str().unwrap(),
        ]);
        cmd.args(extra).output().unwrap()
    };
    let out = import(&[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--key-passphrase-file"),
        "{}",
        stderr(&out)
    );
    let out = import(&["--key-passphrase-env", "IMPORT_PASS"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("IMPORT_PASS is not set"),
        "{}",
        stderr(&out)
    );
    let out = import(&["--key-passphrase-file", import_passfile.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).split('\t').next().unwrap().to_owned();
    let stored = key_file(&data, &id);
    assert!(is_encrypted_pkcs8(&stored));
    let decrypted = Command::new("openssl")
        .args([
            "pkey",
            "-in",
            stored.to_str().unwrap(),
            "-passin",
            "env:PASS",
            "-noout",
        ])
        .env("PASS", &passphrase)
        .output()
        .unwrap();
    assert!(
        decrypted.status.success(),
        "stored under the at-rest passphrase"
    );
}

#[test]
fn encrypt_keys_encrypts_the_key_files_of_pending_cas_which_still_install() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let passphrase = format!("rest-{}", uuid::Uuid::new_v4().simple());
    // Two pending CAs of the offline-root ceremony, their keys written before a passphrase was
    // configured; and one CA in service.
    let pending_id = |csr: &str, name: &str| {
        let out = run(factory_ca(&data).args([
            "ca",
            "create",
            "--common-name",
            name,
            "--csr-out",
            d.join(csr).to_str().unwrap(),
        ]));
        stdout(&out).split('\t').next().unwrap().to_owned()
    };
    let pending = pending_id("issuing.csr", "Pending Issuing");
    let swapped = pending_id("other.csr", "Pending Other");
    let out = run(factory_ca(&data).args(["ca", "create", "--common-name", "Online Root"]));
    let online = stdout(&out).split('\t').next().unwrap().to_owned();
    assert!(!is_encrypted_pkcs8(&key_file(&data, &pending)));

    // The second pending CA's key file holds a key that is not its CSR's: left as it is.
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            key_file(&data, &swapped).to_str().unwrap(),
        ],
    );
    chmod(&key_file(&data, &swapped), 0o600);
    let swapped_text = std::fs::read_to_string(key_file(&data, &swapped)).unwrap();

    let out = with_passphrase(&mut factory_ca(&data), &passphrase)
        .args(["ca", "encrypt-keys"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let report = stdout(&out);
    assert!(
        report.contains(&format!("{online}\tencrypted\n")),
        "{report}"
    );
    assert!(
        report.contains(&format!("{pending}\tencrypted\n")),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "{swapped}\tfailed\tthe private key does not match the pending CA's CSR\n"
        )),
        "{report}"
    );
    assert!(stderr(&out).contains("1 CA key file(s) could not be encrypted"));
    assert_eq!(
        std::fs::read_to_string(key_file(&data, &swapped)).unwrap(),
        swapped_text
    );

    // The pending key is encrypted, owner-only, and still the key of the CSR.
    let key = key_file(&data, &pending);
    assert!(is_encrypted_pkcs8(&key));
    assert_eq!(mode(&key), 0o600);
    let csr_public_key = openssl_text(d, &["req", "-in", "issuing.csr", "-pubkey", "-noout"]);
    let passfile = secret_file(d, "rest-pass", &passphrase);
    assert_eq!(
        decrypted_public_key(d, &key, &format!("file:{}", passfile.display())),
        csr_public_key
    );
    let report = stdout(
        &with_passphrase(&mut factory_ca(&data), &passphrase)
            .args(["ca", "encrypt-keys"])
            .output()
            .unwrap(),
    );
    assert!(
        report.contains(&format!("{pending}\talready encrypted\n")),
        "{report}"
    );

    // The ceremony completes with the encrypted key: an openssl root signs the CSR, and the
    // CA installs (its key is checked against the certificate by signing a probe).
    openssl_root(d, "root.key", "root.pem", "/CN=Offline Root");
    write(
        d,
        "ca.ext",
        "[issuing]\nbasicConstraints=critical,CA:TRUE,pathlen:0\n\
         keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n\
         authorityKeyIdentifier=keyid\n",
    );
    openssl(
        d,
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
    let out = run(with_passphrase(&mut factory_ca(&data), &passphrase).args([
        "ca",
        "install",
        &pending,
        "--cert",
        d.join("issuing.pem").to_str().unwrap(),
        "--chain",
        d.join("root.pem").to_str().unwrap(),
    ]));
    assert!(stderr(&out).contains(&format!("pending CA {pending} is installed")));
    assert!(!stderr(&out).contains("not encrypted"), "{}", stderr(&out));
}

#[test]
fn passphrase_settings_are_checked_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let out = factory_ca(dir.path())
        .env("FACTORY_CA_CA__KEY_PASSPHRASE_ENV", "CA_PASS")
        .env("FACTORY_CA_CA__KEY_PASSPHRASE_FILE", "/etc/pass")
        .args(["ca", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("at most one of ca.key_passphrase_env and ca.key_passphrase_file")
    );

    let out = factory_ca(dir.path())
        .env("FACTORY_CA_CA__KEY_PASSPHRASE_ENV", "FACTORY_CA_SECRET")
        .args(["ca", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("FACTORY_CA_KEY_PASSPHRASE"),
        "{}",
        stderr(&out)
    );
}
