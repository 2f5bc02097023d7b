//! The command line against the same store as the server: tokens, CA create/import/list.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::binary::{Service, factory_ca};
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
    assert_eq!(list.lines().count(), 2);
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
        .args(["ca", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
