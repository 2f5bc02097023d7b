//! The SQLite data directory fills up (a small tmpfs): signing fails with 503
//! `store_unavailable`, no certificate is returned without its row, and the service signs again
//! by itself once space returns. (Before a failed ledger transaction closed its connection,
//! this test found a 201 whose row was missing and a pool stuck on "database is locked" after
//! space returned.) Needs root for `mount` (as `scripts/test.sh` runs the system
//! tests).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::common::binary::{self, Service};
use crate::common::*;

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path));
        Tmpfs(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// Writes `path` until the file system is full (bounded by its size); returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    // 64 MiB at most: the tmpfs is far smaller.
    for _ in 0..1024 {
        match file.write(&block) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    // The last partial block.
    loop {
        match file.write(&block[..512]) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = file.sync_all();
    written
}

async fn sign(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    thing: &str,
) -> (StatusCode, serde_json::Value) {
    let response = client
        .post(format!("{base}/v1/certificates"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "csr": csr(thing, "JP").pem }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_directory_answers_503_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mount = Tmpfs::mount(&dir.path().join("data"), "16m");
    let data = mount.0.clone();
    run(binary::factory_ca(&data).args(["ca", "create"]));
    let token = String::from_utf8(
        run(binary::factory_ca(&data)
            .args(["token", "create", "--role", "station", "--name", "line-1"]))
        .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let viewer = String::from_utf8(
        run(binary::factory_ca(&data)
            .args(["token", "create", "--role", "viewer", "--name", "v-1"]))
        .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let mut service = Service::start(binary::factory_ca(&data));
    service.ready().await;
    let base = service.base();
    let client = reqwest::Client::new();
    let mut answered = Vec::new();
    for i in 0..5 {
        let (status, body) = sign(&client, &base, &token, &format!("before-full-{i}")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        answered.push(body["serial"].as_str().unwrap().to_owned());
    }

    let filler = data.join("filler");
    let filled = fill(&filler);
    let mut refused = 0;
    for i in 0..20 {
        let (status, body) = sign(&client, &base, &token, &format!("while-full-{i}")).await;
        match status {
            StatusCode::CREATED => answered.push(body["serial"].as_str().unwrap().to_owned()),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(body["code"], "store_unavailable", "{body}");
                assert!(body.get("certificate_pem").is_none());
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(
        refused > 0,
        "the full disk was noticed ({filled} bytes filled)"
    );

    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    let recovered = loop {
        let (status, body) = sign(&client, &base, &token, "after-full").await;
        if status == StatusCode::CREATED {
            answered.push(body["serial"].as_str().unwrap().to_owned());
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no recovery: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Every certificate answered 201 is in the ledger.
    for serial in &answered {
        let response = client
            .get(format!("{base}/v1/certificates/{serial}"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "{serial}: {text}\n{}",
            service.stderr_text()
        );
    }
    eprintln!(
        "disk full: {refused} of 20 refused with 503, {} certificates answered and all in the \
         ledger; signing again {recovered:?} after space returned",
        answered.len()
    );
    let _ = service.stop().await;
    drop(mount);
}
