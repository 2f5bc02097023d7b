//! `factory-ca backup` while the service signs, and `factory-ca restore` into an empty data
//! directory: the restored service lists the certificates of the snapshot and signs with the
//! same CA. A damaged backup and a non-empty target are refused; on PostgreSQL the backup says
//! the ledger is PostgreSQL's and holds the rest.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;

use crate::common::binary::{self, Service, stderr, stdout};
use crate::common::*;

fn token(data: &Path, db: Option<&str>, role: &str, name: &str) -> String {
    let mut cmd = binary::factory_ca(data);
    if let Some(db) = db {
        cmd.env("FACTORY_CA_DATABASE__URL", db);
    }
    String::from_utf8(run(cmd.args(["token", "create", "--role", role, "--name", name])).stdout)
        .unwrap()
        .trim()
        .to_owned()
}

async fn sign(client: &reqwest::Client, base: &str, token: &str, thing: &str) -> String {
    let response = client
        .post(format!("{base}/v1/certificates"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "csr": csr(thing, "JP").pem }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    json(response).await["serial"].as_str().unwrap().to_owned()
}

async fn serials(base: &str, viewer: &str) -> BTreeSet<String> {
    let listed = reqwest::Client::new()
        .get(format!("{base}/v1/certificates?limit=1000"))
        .bearer_auth(viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    json(listed).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["serial"].as_str().unwrap().to_owned())
        .collect()
}

fn output(cmd: &mut Command) -> std::process::Output {
    cmd.output().expect("factory-ca runs")
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_into_a_service_with_the_same_ledger_and_ca() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(binary::factory_ca(&data).args(["ca", "create"]));
    let station = token(&data, None, "station", "line-1");
    let viewer = token(&data, None, "viewer", "viewer-1");
    let mut service = Service::start(binary::factory_ca(&data));
    service.ready().await;
    let client = reqwest::Client::new();
    let base = service.base();
    let mut before = BTreeSet::new();
    for i in 0..10 {
        before.insert(sign(&client, &base, &station, &format!("before-{i}")).await);
    }
    let ca = json(
        client
            .get(format!("{base}/v1/ca"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap(),
    )
    .await;

    // Load while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (stop, base, station) = (stop.clone(), base.clone(), station.clone());
        async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 2_000 {
                sign(&client, &base, &station, &format!("during-{n}")).await;
                n += 1;
            }
            n
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = dir.path().join("backup");
    let backup = {
        let mut cmd = binary::factory_ca(&data);
        cmd.args(["backup", "--out"]).arg(&out);
        tokio::task::spawn_blocking(move || output(&mut cmd))
            .await
            .unwrap()
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let signed_during = load.await.unwrap();
    assert!(backup.status.success(), "{}", stderr(&backup));
    let listing = stdout(&backup);
    assert!(listing.contains("ledger/factory-ca.db"), "{listing}");
    assert!(listing.contains("settings.json"), "{listing}");
    assert!(listing.contains("data/keys/"), "{listing}");
    assert!(
        listing.contains("data/keys/ledger-audit.key.pem"),
        "the audit key that signs the checkpoints is kept: {listing}"
    );
    assert!(signed_during > 0, "the service signed while the backup ran");
    let original = serials(&base, &viewer).await;
    service.stop().await;

    // A damaged copy is refused before anything is written.
    let damaged = dir.path().join("damaged");
    std::fs::create_dir_all(damaged.join("ledger")).unwrap();
    for entry in walk(&out) {
        let target = damaged.join(entry.strip_prefix(&out).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    let settings_path = damaged.join("settings.json");
    let mut settings = std::fs::read(&settings_path).unwrap();
    settings.push(b' ');
    std::fs::write(&settings_path, settings).unwrap();
    let refused = output(
        binary::factory_ca(&dir.path().join("other"))
            .args(["restore", "--from"])
            .arg(&damaged),
    );
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("SHA-256"), "{}", stderr(&refused));
    assert!(!dir.path().join("other").exists());

    // The original data directory is not empty: refused.
    let refused = output(
        binary::factory_ca(&data)
            .args(["restore", "--from"])
            .arg(&out),
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not empty"),
        "{}",
        stderr(&refused)
    );

    let restored = dir.path().join("restored");
    let ok = output(
        binary::factory_ca(&restored)
            .args(["restore", "--from"])
            .arg(&out),
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    #[cfg(unix)]
    {
        assert_eq!(mode(&restored), 0o700);
        assert_eq!(mode(&restored.join("factory-ca.db")), 0o600);
    }

    let mut service = Service::start(binary::factory_ca(&restored));
    service.ready().await;
    let base = service.base();
    let snapshot = serials(&base, &viewer).await;
    assert!(
        before.is_subset(&snapshot),
        "every certificate before the backup is restored"
    );
    assert!(
        snapshot.is_subset(&original),
        "the snapshot holds only real certificates"
    );
    let same_ca = json(
        client
            .get(format!("{base}/v1/ca"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(same_ca["id"], ca["id"]);
    assert_eq!(same_ca["certificate_pem"], ca["certificate_pem"]);
    let response = client
        .post(format!("{base}/v1/certificates"))
        .bearer_auth(&station)
        .json(&serde_json::json!({ "csr": csr("after-restore", "JP").pem }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let issued = json(response).await;
    assert_eq!(issued["issuing_ca"], ca["id"]);
    eprintln!(
        "backup under load: {} certificates before, {signed_during} signed while it ran; the \
         snapshot holds {} of the {} in the ledger at the end",
        before.len(),
        snapshot.len(),
        original.len()
    );
    service.stop().await;
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_backup_leaves_the_ledger_to_pg_dump_and_holds_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = fresh_pg_database().await;
    run(binary::factory_ca(&data)
        .env("FACTORY_CA_DATABASE__URL", &db)
        .args(["ca", "create"]));
    let out = dir.path().join("backup");
    let written = output(
        binary::factory_ca(&data)
            .env("FACTORY_CA_DATABASE__URL", &db)
            .args(["backup", "--out"])
            .arg(&out),
    );
    assert!(written.status.success(), "{}", stderr(&written));
    let listing = stdout(&written);
    assert!(listing.contains("pg_dump"), "{listing}");
    assert!(listing.contains("data/keys/"), "{listing}");
    assert!(!out.join("ledger").exists());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["ledger"], "postgres");

    // Restoring it with SQLite settings would start an empty ledger beside the keys: refused.
    let refused = output(
        binary::factory_ca(&dir.path().join("restored"))
            .args(["restore", "--from"])
            .arg(&out),
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("pg_restore"),
        "{}",
        stderr(&refused)
    );

    // With PostgreSQL settings, the keys and settings are restored.
    let restored = dir.path().join("restored-pg");
    let ok = output(
        binary::factory_ca(&restored)
            .env("FACTORY_CA_DATABASE__URL", &db)
            .args(["restore", "--from"])
            .arg(&out),
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("pg_restore"));
    assert!(restored.join("keys").read_dir().unwrap().next().is_some());
}
