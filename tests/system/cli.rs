//! The command line against the same store as the server: tokens, CA create/import/list.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::binary::{Service, factory_ca, stderr, stdout};
use crate::common::*;

/// `factory-ca <args>` on the data directory `data_dir` (SQLite there).
fn cli(data_dir: &Path, args: &[&str]) -> Output {
    factory_ca(data_dir)
        .args(args)
        .output()
        .expect("factory-ca runs")
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// A CA certificate made by openssl with the given extensions and key file.
fn openssl_ca(dir: &Path, key: &str, cert: &str, extensions: &[&str]) {
    let mut args = vec![
        "req",
        "-x509",
        "-new",
        "-key",
        key,
        "-subj",
        "/C=JP/O=Org/CN=Imported Root",
        "-days",
        "30",
        "-out",
        cert,
    ];
    for ext in extensions {
        args.extend(["-addext", ext]);
    }
    openssl(dir, &args);
}

const CA_EXTS: [&str; 2] = [
    "basicConstraints=critical,CA:TRUE",
    "keyUsage=critical,keyCertSign,cRLSign",
];

#[test]
fn token_create_prints_only_the_token_and_list_never_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    assert!(cli(dir.path(), &["ca", "create"]).status.success());
    let out = cli(
        dir.path(),
        &["token", "create", "--role", "station", "--name", "line-1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.trim();
    assert_eq!(stdout, format!("{token}\n"));
    assert!(token.starts_with("fca_") && token.len() == 47);

    let list = cli(dir.path(), &["token", "list"]);
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(listed.contains("line-1\tstation\tactive"));
    assert!(!listed.contains(token));

    let dup = cli(
        dir.path(),
        &["token", "create", "--role", "viewer", "--name", "line-1"],
    );
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));

    assert!(
        cli(dir.path(), &["token", "revoke", "line-1"])
            .status
            .success()
    );
    let listed = String::from_utf8(cli(dir.path(), &["token", "list"]).stdout).unwrap();
    assert!(listed.contains("line-1\tstation\trevoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_create_writes_an_owner_only_key_and_an_aws_acceptable_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(
        dir.path(),
        &[
            "ca",
            "create",
            "--algorithm",
            "rsa-2048",
            "--common-name",
            "Line Root",
            "--country",
            "JP",
            "--organization",
            "Org",
            "--validity-days",
            "30",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.contains("issuing\trsa-2048\tgenerated"), "{line}");
    let id = line.split('\t').next().unwrap();

    let key = dir.path().join("keys").join(format!("{id}.key.pem"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(key.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }

    // A second CA does not replace the issuing one unless asked to.
    let second = cli(dir.path(), &["ca", "create"]);
    assert!(
        String::from_utf8(second.stdout)
            .unwrap()
            .contains("\t-\tecdsa-p256")
    );
    let list = String::from_utf8(cli(dir.path(), &["ca", "list"]).stdout).unwrap();
    assert_eq!(
        list.lines().next(),
        Some("ID\tISSUING\tKEY\tSOURCE\tNOT_AFTER\tSUBJECT\tKEY_URI")
    );
    assert_eq!(list.lines().count(), 3, "a header row and two CAs: {list}");
    assert_eq!(
        list.lines().filter(|l| l.contains("\tissuing\t")).count(),
        1
    );

    // Rotation: the second CA becomes the issuing one on request.
    let second_id = list
        .lines()
        .find(|l| l.contains("\t-\t"))
        .unwrap()
        .split('\t')
        .next()
        .unwrap();
    let activated = cli(dir.path(), &["ca", "activate", second_id]);
    assert!(
        String::from_utf8(activated.stdout)
            .unwrap()
            .starts_with(&format!("{second_id}\tissuing"))
    );
    let list = String::from_utf8(cli(dir.path(), &["ca", "list"]).stdout).unwrap();
    assert_eq!(
        list.lines().filter(|l| l.contains("\tissuing\t")).count(),
        1
    );
    assert!(
        !cli(dir.path(), &["ca", "activate", "ca-nope"])
            .status
            .success()
    );
    cli(dir.path(), &["ca", "activate", id]);

    // A key readable by others is refused when the server loads it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        // The wait is bounded should the server wrongly start.
        let mut serve = Service::start(factory_ca(dir.path()));
        let status = serve.exit_within(Duration::from_secs(20)).await;
        assert!(!status.success());
        assert!(serve.stderr_text().contains("chmod 600"));
        // ...unless explicitly allowed; the CLI then loads it (and warns).
        let allowed = factory_ca(dir.path())
            .env("FACTORY_CA_CA__ALLOW_INSECURE_KEY_PERMISSIONS", "true")
            .args(["ca", "activate", id])
            .output()
            .unwrap();
        assert!(
            allowed.status.success(),
            "{}",
            String::from_utf8_lossy(&allowed.stderr)
        );
    }
}

#[test]
fn ca_import_accepts_pkcs8_pkcs1_and_sec1_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
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
        d,
        &["rsa", "-in", "rsa8.pem", "-traditional", "-out", "rsa1.pem"],
    );
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            "ec.pem",
        ],
    );
    for (n, key) in ["rsa8.pem", "rsa1.pem", "ec.pem"].iter().enumerate() {
        let cert = format!("ca{n}.pem");
        openssl_ca(d, key, &cert, &CA_EXTS);
        let data = d.join(format!("data{n}"));
        let out = cli(
            &data,
            &[
                "ca",
                "import",
                "--cert",
                d.join(&cert).to_str().unwrap(),
                "--key",
                d.join(key).to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8(out.stdout)
                .unwrap()
                .contains("\timported\t")
        );
        // Importing the same CA twice is refused.
        let again = cli(
            &data,
            &[
                "ca",
                "import",
                "--cert",
                d.join(&cert).to_str().unwrap(),
                "--key",
                d.join(key).to_str().unwrap(),
            ],
        );
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("already known"));
    }
}

#[test]
fn ca_import_refuses_what_aws_iot_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "k1.pem",
        ],
    );
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "k2.pem",
        ],
    );
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
            "weak.pem",
        ],
    );
    openssl_ca(
        d,
        "k1.pem",
        "not-ca.pem",
        &[
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,keyCertSign",
        ],
    );
    openssl_ca(
        d,
        "k1.pem",
        "no-certsign.pem",
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,digitalSignature",
        ],
    );
    openssl_ca(d, "k1.pem", "good.pem", &CA_EXTS);
    openssl_ca(d, "weak.pem", "weak-ca.pem", &CA_EXTS);

    let cases = [
        ("not-ca.pem", "k1.pem", "CA:TRUE"),
        ("no-certsign.pem", "k1.pem", "keyCertSign"),
        ("good.pem", "k2.pem", "does not match"),
        ("weak-ca.pem", "weak.pem", "at least 2048"),
        ("k1.pem", "k1.pem", "no CERTIFICATE block"),
        ("good.pem", "good.pem", "expected one PRIVATE KEY"),
    ];
    for (cert, key, message) in cases {
        let data = d.join(format!("data-{cert}-{key}"));
        let out = cli(
            &data,
            &[
                "ca",
                "import",
                "--cert",
                d.join(cert).to_str().unwrap(),
                "--key",
                d.join(key).to_str().unwrap(),
            ],
        );
        assert!(!out.status.success(), "{cert} + {key} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{cert} + {key}: {stderr}");
        // Nothing was stored: no CA listed, no key file left behind.
        let list = cli(&data, &["ca", "list"]);
        assert!(list.stdout.is_empty(), "{cert}");
        assert!(
            !data.join("keys").exists()
                || std::fs::read_dir(data.join("keys"))
                    .unwrap()
                    .next()
                    .is_none()
        );
    }
}

#[test]
fn configuration_errors_say_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = factory_ca(dir.path())
        .env("FACTORY_CA_POLICY__VALIDITY_DAYS", "0")
        .args(["ca", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("policy.validity_days"));

    let out = factory_ca(dir.path())
        .env("FACTORY_CA_DATABASE__URL", "mysql://secret-password@db/x")
        .args(["ca", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database.url must start with"), "{stderr}");
    assert!(!stderr.contains("secret-password"));

    // The bench token variable is not a setting and does not break the other commands.
    let out = factory_ca(dir.path())
        .env("FACTORY_CA_BENCH_TOKEN", "fca_x")
        .args(["ca", "create"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// From another working directory, the commands that work on a deployment refuse a store that
/// does not exist (or holds no CA) instead of starting a new, empty ledger that the running
/// service never reads; they say which store they looked at and what to do. The refused
/// command leaves nothing behind, so the real first start still prints its bootstrap token.
#[test]
fn commands_run_from_the_wrong_directory_refuse_an_empty_store_and_say_which() {
    let service = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let stray = elsewhere.path().join("data");
    for args in [
        &["token", "create", "--role", "station", "--name", "line-9"][..],
        &["token", "list"][..],
        &["ca", "list"][..],
        &["ca", "activate", "ca-0000000000000000"][..],
    ] {
        let out = factory_ca(&stray)
            .current_dir(elsewhere.path())
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
        assert!(
            stderr.contains("there is no factory-ca store at SQLite"),
            "{stderr}"
        );
        assert!(stderr.contains(&stray.display().to_string()), "{stderr}");
        assert!(stderr.contains("factory-ca ca create"), "{stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
    }
    assert!(
        !stray.join("factory-ca.db").exists(),
        "a refused command created a ledger"
    );

    // A migrated store without a CA is refused too (no service issues from it).
    let migrated = factory_ca(&stray).args(["migrate"]).output().unwrap();
    assert!(migrated.status.success());
    let out = factory_ca(&stray)
        .args(["token", "create", "--role", "station", "--name", "line-9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no CA"));

    // The service's own store: `ca create` starts it and says so; then tokens work and every
    // command names the store it used.
    let data = service.path().join("data");
    let created = factory_ca(&data).args(["ca", "create"]).output().unwrap();
    assert!(created.status.success());
    assert!(String::from_utf8_lossy(&created.stderr).contains("creating a new store: SQLite"));
    let token = factory_ca(&data)
        .args(["token", "create", "--role", "station", "--name", "line-9"])
        .output()
        .unwrap();
    assert!(token.status.success());
    assert!(String::from_utf8_lossy(&token.stderr).contains("store: SQLite"));
    let listed = String::from_utf8(
        factory_ca(&data)
            .args(["token", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        listed.lines().next(),
        Some("NAME\tROLE\tSTATUS\tCREATED_AT")
    );
    assert!(listed.contains("line-9\tstation\tactive"));
}

/// The first start of a service on a fresh store prints the bootstrap admin token once, even
/// after commands were refused elsewhere; a restart does not print it again.
#[tokio::test]
async fn the_bootstrap_admin_token_is_printed_on_the_first_start_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let refused = factory_ca(&data)
        .args(["token", "create", "--role", "station", "--name", "x"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    for (start, expect_token) in [(1, true), (2, false)] {
        let mut service = Service::start(factory_ca(&data));
        service.ready().await;
        let (stderr, _) = service.stop().await;
        assert_eq!(
            stderr.contains("shown only this once"),
            expect_token,
            "start {start}: {stderr}"
        );
    }
}

/// `certificate revoke`, run from another working directory with the service's settings, revokes
/// through the same service function as the admin route: the running service answers the row as
/// revoked, the audit log names actor `cli`, and refusals say why and exit non-zero.
#[tokio::test]
async fn certificate_revoke_from_another_directory_revokes_in_the_services_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(cli(&data, &["ca", "create"]).status.success());
    let token = |role: &str, name: &str| {
        let out = cli(&data, &["token", "create", "--role", role, "--name", name]);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let (admin, station) = (token("admin", "ops"), token("station", "line-1"));
    let mut service = Service::start(factory_ca(&data));
    service.ready().await;
    let client = reqwest::Client::new();
    let issued: serde_json::Value = client
        .post(format!("{}/v1/certificates", service.base()))
        .bearer_auth(&station)
        .json(&serde_json::json!({"csr": csr("Revoke-Cli-1", "JP").pem}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let serial = issued["serial"].as_str().unwrap().to_owned();

    let revoke = |serial: &str, reason: &str| {
        factory_ca(&data)
            .current_dir(elsewhere.path())
            .args(["certificate", "revoke", serial, "--reason", reason])
            .output()
            .unwrap()
    };
    let out = revoke(&serial.to_ascii_uppercase(), "key_compromise");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{serial}\trevoked\tkey_compromise\n"));
    assert!(stderr(&out).contains("store: SQLite"), "{}", stderr(&out));

    let row: serde_json::Value = client
        .get(format!("{}/v1/certificates/{serial}", service.base()))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(row["status"], "revoked");
    assert_eq!(row["revocation_reason"], "key_compromise");
    let audit: serde_json::Value = client
        .get(format!(
            "{}/v1/admin/audit?action=certificate.revoke",
            service.base()
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let record = &audit["items"][0];
    assert_eq!(
        (&record["actor"], &record["target"], &record["detail"]),
        (
            &serde_json::json!("cli"),
            &serde_json::json!(serial),
            &serde_json::json!("reason=key_compromise")
        )
    );

    // Refusals: already revoked, unknown serial, unknown reason; each exits non-zero.
    let again = revoke(&serial, "superseded");
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("was already revoked at"),
        "{}",
        stderr(&again)
    );
    let unknown = revoke(&"ab".repeat(20), "superseded");
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("no certificate with serial"));
    let bad = revoke(&serial, "lost");
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    assert!(stderr(&bad).contains("use one of unspecified, key_compromise"));
    let audit: serde_json::Value = client
        .get(format!(
            "{}/v1/admin/audit?action=certificate.revoke&outcome=failure",
            service.base()
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");
    service.stop().await;
}

/// `factory-ca revocation create` as an operator runs it beside a running service: a dry run
/// changes nothing, the job revokes every match once, `revocation show` prints it, the service's
/// next CRL lists the revoked certificates, and the audit log has one `certificate.bulk_revoke`.
#[tokio::test]
async fn revocation_create_revokes_a_station_s_certificates_beside_a_running_service() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(cli(&data, &["ca", "create"]).status.success());
    let token = |role: &str, name: &str| {
        let out = cli(&data, &["token", "create", "--role", role, "--name", name]);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let (admin, leaked, other) = (
        token("admin", "ops"),
        token("station", "line-7"),
        token("station", "line-8"),
    );
    let mut service = Service::start(factory_ca(&data));
    service.ready().await;
    let client = reqwest::Client::new();
    let issue = async |station: &str, thing: &str| -> String {
        let issued: serde_json::Value = client
            .post(format!("{}/v1/certificates", service.base()))
            .bearer_auth(station)
            .json(&serde_json::json!({"csr": csr(thing, "JP").pem}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        issued["serial"].as_str().unwrap().to_owned()
    };
    let mut revoked = Vec::new();
    for n in 0..3 {
        revoked.push(issue(&leaked, &format!("Leaked-{n}")).await);
    }
    let kept = issue(&other, "Kept-1").await;

    let dry = cli(
        &data,
        &["revocation", "create", "--station", "line-7", "--dry-run"],
    );
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stdout(&dry).starts_with("matched\t3\n"), "{}", stdout(&dry));
    for serial in &revoked {
        assert!(stdout(&dry).contains(serial.as_str()));
    }

    let out = cli(
        &data,
        &[
            "revocation",
            "create",
            "--station",
            "line-7",
            "--reason",
            "key_compromise",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("status\tsucceeded\n"), "{printed}");
    assert!(printed.contains("matched\t3\nrevoked\t3\n"), "{printed}");
    assert!(printed.contains("actor\tcli\n"), "{printed}");
    let id = printed
        .lines()
        .find_map(|l| l.strip_prefix("id\t"))
        .unwrap()
        .to_owned();
    let show = cli(&data, &["revocation", "show", &id]);
    assert_eq!(stdout(&show), printed);

    // The service reads the same ledger: rows revoked, its CRL lists them, one audit record.
    let get = |path: String| {
        let (client, admin) = (&client, &admin);
        async move {
            client
                .get(path)
                .bearer_auth(admin)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    for serial in &revoked {
        let row = get(format!("{}/v1/certificates/{serial}", service.base())).await;
        assert_eq!(row["status"], "revoked");
        assert_eq!(row["revocation_reason"], "key_compromise");
    }
    let row = get(format!("{}/v1/certificates/{kept}", service.base())).await;
    assert_eq!(row["status"], "active");
    let ca_id = row["issuing_ca"].as_str().unwrap().to_owned();
    let crl = client
        .get(format!("{}/v1/cas/{ca_id}/crl?format=pem", service.base()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let text = run(Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(write(dir.path(), "crl.pem", &crl)));
    let text = String::from_utf8_lossy(&text.stdout).to_ascii_lowercase();
    for serial in &revoked {
        assert!(text.contains(serial.as_str()), "{serial} on the CRL");
    }
    let audit = get(format!(
        "{}/v1/admin/audit?action=certificate.bulk_revoke",
        service.base()
    ))
    .await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{audit}");
    assert_eq!(items[0]["actor"], "cli");
    assert_eq!(items[0]["target"], id.as_str());

    let refused = cli(&data, &["revocation", "create"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("the filter is empty"),
        "{}",
        stderr(&refused)
    );
    service.stop().await;
}
