//! A background sync of a CA against the moto emulator, which pages ListCertificatesByCA as AWS
//! does (`scripts/moto_server.py`): `factory-ca serve` is killed with SIGKILL part way, started
//! again, and resumes the sync by itself at the page it had stored, finishing with every
//! certificate counted once and no page read twice.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::aws_moto::start_moto;
use crate::common::binary::{Service, factory_ca, run_ok};
use crate::common::csr;

/// Devices registered in moto: four pages of 250 (the page size the service asks for).
const DEVICES: usize = 1000;
const PAGES: i64 = 4;

fn start(data: &std::path::Path, moto_url: &str) -> Service {
    let mut cmd = factory_ca(data);
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("FACTORY_CA_AWS__ENABLED", "true")
        .env("FACTORY_CA_AWS__REGION", "us-east-1")
        .env("FACTORY_CA_AWS__ENDPOINT_URL", moto_url)
        // One call a second: a page a second, so that the kill lands part way.
        .env("FACTORY_CA_AWS__API_RATE_PER_SEC", "1")
        .env("FACTORY_CA_AWS__API_BURST", "1")
        .env("FACTORY_CA_SERVER__STATION_RATE_PER_SEC", "0");
    Service::start(cmd)
}

async fn get(client: &reqwest::Client, url: &str, token: &str) -> Value {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// ListCertificatesByCA calls this process made, from its /metrics.
async fn list_calls(client: &reqwest::Client, base: &str) -> u64 {
    text(client, &format!("{base}/metrics"))
        .await
        .lines()
        .filter(|l| {
            l.starts_with("factory_ca_aws_calls_total{")
                && l.contains("operation=\"ListCertificatesByCA\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_background_sync_killed_part_way_resumes_after_a_restart_and_counts_each_page_once() {
    let moto = start_moto();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run_ok(factory_ca(&data).args(["ca", "create"]));
    let token = |role: &str, name: &str| {
        run_ok(factory_ca(&data).args(["token", "create", "--role", role, "--name", name]))
            .trim()
            .to_owned()
    };
    let (admin, station) = (token("admin", "admin-1"), token("station", "line-1"));
    let mut service = start(&data, &moto.url);
    service.ready().await;
    // The service closes an HTTP/1.1 connection whose next request head has not come within
    // `server.header_read_timeout_secs` (10 s) of the previous answer; registering the devices
    // in moto below can take longer than that, and a POST sent on a connection the service is
    // closing at that moment fails. So reuse connections idle for less than that only.
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = service.base();
    let ca = get(&client, &format!("{base}/v1/ca"), &admin).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let registered = client
        .post(format!("{base}/v1/admin/cas/{ca}/aws/register"))
        .bearer_auth(&admin)
        .json(&json!({"mode": "sni_only"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);

    // Issue the devices, eight at a time, and register each in moto as its first connection
    // would (independently of factory-ca, with boto3).
    let mut ders = Vec::with_capacity(DEVICES);
    for chunk in (0..DEVICES).collect::<Vec<_>>().chunks(8) {
        let answers = chunk.iter().map(|i| {
            let (client, base, station) = (client.clone(), base.clone(), station.clone());
            async move {
                let pem = csr(&format!("sync-{i}"), "JP").pem;
                let response = client
                    .post(format!("{base}/v1/certificates"))
                    .bearer_auth(&station)
                    .json(&json!({"csr": pem}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
                response.json::<Value>().await.unwrap()
            }
        });
        for device in futures::future::join_all(answers).await {
            let pem = device["certificate_pem"].as_str().unwrap();
            ders.push(hex::encode(::pem::parse(pem).unwrap().into_contents()));
        }
    }
    let ca_pem = text(&client, &format!("{base}/v1/ca.pem")).await;
    std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.path().join("ders.txt"), ders.join("\n")).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let python =
        std::env::var("MOTO_PYTHON").unwrap_or_else(|_| format!("{root}/.venv/bin/python"));
    let connected = run_ok(
        std::process::Command::new(&python)
            .arg(format!("{root}/scripts/bench_revocations_moto.py"))
            .args(["connect", &moto.url, "us-east-1"])
            .arg(dir.path().join("ca.pem"))
            .arg(dir.path().join("ders.txt"))
            .arg("4"),
    );
    let connected: Value = serde_json::from_str(connected.trim()).unwrap();
    assert_eq!(connected["registered"], DEVICES, "{connected}");

    // Start the sync in the background and kill the service once it has stored a page.
    let path = format!("/v1/admin/cas/{ca}/aws/sync");
    let started = client
        .post(format!("{base}{path}?wait=false"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    assert_eq!(started.headers()["location"], path.as_str());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let progress = get(&client, &format!("{base}{path}"), &admin).await;
        let sync = &progress["targets"][0];
        assert_eq!(
            sync["state"], "running",
            "finished before the kill: {progress}"
        );
        if sync["pages"].as_i64() >= Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "no page in 30 s: {progress}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.signal("KILL");
    service.exit_within(Duration::from_secs(10)).await;

    // Started again: the sync is still running where it stopped, then taken up by itself (once
    // the killed process's lease has run out) and finished.
    let mut service = start(&data, &moto.url);
    service.ready().await;
    let base = service.base();
    let restarted = get(&client, &format!("{base}{path}"), &admin).await;
    let sync = &restarted["targets"][0];
    assert_eq!(sync["state"], "running", "{restarted}");
    let stored_pages = sync["pages"].as_i64().unwrap();
    assert!((1..PAGES).contains(&stored_pages), "{restarted}");
    let resumed_at = Instant::now();
    let deadline = resumed_at + Duration::from_secs(90);
    let finished = loop {
        let progress = get(&client, &format!("{base}{path}"), &admin).await;
        if progress["targets"][0]["state"] != "running" {
            break progress;
        }
        assert!(
            Instant::now() < deadline,
            "not finished 90 s after the restart: {progress}\n{}",
            service.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let sync = &finished["targets"][0];
    assert_eq!(sync["state"], "finished", "{finished}");
    let counts: Vec<i64> = [
        "pages",
        "listed",
        "matched",
        "not_in_ledger",
        "unknown_status",
    ]
    .iter()
    .map(|k| sync[k].as_i64().unwrap())
    .collect();
    assert_eq!(
        counts,
        [PAGES, DEVICES as i64, DEVICES as i64, 0, 0],
        "{finished}"
    );
    // The restarted process read only the pages not stored before the kill.
    assert_eq!(
        list_calls(&client, &base).await,
        (PAGES - stored_pages) as u64
    );
    eprintln!(
        "{DEVICES} certificates, {PAGES} pages: killed after {stored_pages} page(s), finished \
         {:?} after the restart",
        resumed_at.elapsed()
    );
    let never_seen = get(
        &client,
        &format!("{base}/v1/certificates?aws_status=never_seen&limit=1"),
        &admin,
    )
    .await;
    assert_eq!(never_seen["items"], json!([]), "{never_seen}");
    service.stop().await;
}
