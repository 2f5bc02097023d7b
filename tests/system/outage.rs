//! The database goes down and comes back under load: requests fail with 503
//! `store_unavailable` (never a 5xx of another kind, never a certificate without its record),
//! /readyz says 503, and the service recovers by itself. Uses a private PostgreSQL cluster
//! made with initdb on a temporary directory and port.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::process::free_port;
use crate::common::*;
use reqwest::StatusCode;

/// A throwaway PostgreSQL cluster owned by the `postgres` user (initdb refuses root).
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    fn pg(&self, tool: &str) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
        cmd
    }

    fn create(parent: &Path) -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries (scripts/test.sh needs the postgresql package)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = parent.join("pgdata");
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(parent));
        let port = free_port();
        let cluster = Cluster { bin, dir, port };
        run(cluster
            .pg("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&cluster.dir));
        cluster.start();
        cluster
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        run(self
            .pg("pg_ctl")
            .args(["-w", "-t", "30", "-D"])
            .arg(&self.dir)
            .args(["-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .arg("start"));
    }

    fn stop(&self) {
        run(self
            .pg("pg_ctl")
            .args(["-w", "-t", "30", "-m", "fast", "-D"])
            .arg(&self.dir)
            .arg("stop"));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .pg("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(&self.dir)
            .arg("stop")
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_loses_no_record_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::create(dir.path());
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.database.url = factory_ca::config::Secret::new(cluster.url());
        s.database.connect_timeout_secs = std::time::Duration::from_secs(1);
        s.server.request_timeout_secs = std::time::Duration::from_secs(10);
    })
    .await;

    let mut received = BTreeSet::new();
    let mut outcomes = Vec::new();
    let sign_batch = |tag: &'static str| {
        let app = &app;
        async move {
            let sends = (0..8).map(|i| {
                let pem = csr(
                    &format!("{tag}-{i}-{}", uuid::Uuid::new_v4().simple()),
                    "JP",
                )
                .pem;
                async move { app.sign(&pem).await }
            });
            let mut out = Vec::new();
            for response in futures::future::join_all(sends).await {
                let status = response.status();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                out.push((status, body));
            }
            out
        }
    };

    // Load before, during and after an outage.
    for (status, body) in sign_batch("before").await {
        assert_eq!(status, StatusCode::CREATED, "{body}");
        received.insert(body["serial"].as_str().unwrap().to_owned());
    }
    let in_flight = tokio::spawn({
        let base = app.base.clone();
        let token = app.station.clone();
        async move {
            let client = reqwest::Client::new();
            let mut results = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            for i in 0..40 {
                if Instant::now() > deadline {
                    break;
                }
                let pem = csr(
                    &format!("during-{i}-{}", uuid::Uuid::new_v4().simple()),
                    "JP",
                )
                .pem;
                let response = client
                    .post(format!("{base}/v1/certificates"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "csr": pem }))
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                results.push((
                    status,
                    response
                        .json::<serde_json::Value>()
                        .await
                        .unwrap_or_default(),
                ));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            results
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.stop();
    let down = app.sign(&csr("while-down", "JP").pem).await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(down).await["code"], "store_unavailable");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    cluster.start();
    outcomes.extend(in_flight.await.unwrap());

    // Recovery without a restart of the service.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        if ready.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    outcomes.extend(sign_batch("after").await);

    let mut unavailable = 0;
    for (status, body) in &outcomes {
        match *status {
            StatusCode::CREATED => {
                received.insert(body["serial"].as_str().unwrap().to_owned());
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    matches!(
                        body["code"].as_str(),
                        Some("store_unavailable" | "request_timeout")
                    ),
                    "{body}"
                );
                assert!(body.get("certificate_pem").is_none());
                unavailable += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        unavailable > 0 || outcomes.len() < 40,
        "the outage was observed"
    );

    // Every certificate any client received is in the ledger.
    let mut missing = Vec::new();
    for serial in &received {
        let response = app
            .get(&app.viewer, &format!("/v1/certificates/{serial}"))
            .await;
        if response.status() != StatusCode::OK {
            missing.push(serial.clone());
        }
    }
    assert!(missing.is_empty(), "issued but not recorded: {missing:?}");
    assert!(received.len() >= 16);
}

/// `GET /readyz`, timed; every answer must come within a second (Kubernetes' default probe
/// timeout).
async fn timed_readyz(app: &TestApp) -> (StatusCode, Duration) {
    let started = Instant::now();
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
    (ready.status(), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_readyz_answers_within_a_second_and_stations_fail_fast() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::create(dir.path());
    // The default pool connect timeout (5 s): what each request waited before the probe.
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.database.url = factory_ca::config::Secret::new(cluster.url());
    })
    .await;
    let before = app.sign(&csr("fail-fast-before", "JP").pem).await;
    assert_eq!(before.status(), StatusCode::CREATED);
    let before_serial = json(before).await["serial"].as_str().unwrap().to_owned();
    let (status, _) = timed_readyz(&app).await;
    assert_eq!(status, StatusCode::OK);

    cluster.stop();
    let stopped = Instant::now();
    let mut slowest_ready = Duration::ZERO;
    loop {
        let (status, took) = timed_readyz(&app).await;
        slowest_ready = slowest_ready.max(took);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "/readyz never said 503"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let readyz_noticed = stopped.elapsed();

    // Once the probe has marked the database unreachable, stations are refused at once. Until
    // then a request waits for the pool: the client gives up after 250 ms and tries again.
    let mut fast = 0;
    let mut slowest_refusal = Duration::ZERO;
    let mut attempts = 0;
    // Thing names of requests the client gave up on (the service may still record them once
    // the database is back: their outcome is unknown to the client) and of refused ones.
    let mut abandoned = BTreeSet::new();
    let mut refused = BTreeSet::new();
    while fast < 20 {
        attempts += 1;
        assert!(attempts < 200, "stations were not refused at once");
        let started = Instant::now();
        let thing = format!("fail-fast-down-{attempts}");
        let pem = csr(&thing, "JP").pem;
        let Ok(response) = tokio::time::timeout(Duration::from_millis(250), app.sign(&pem)).await
        else {
            assert_eq!(fast, 0, "a slow answer after fast refusals");
            abandoned.insert(thing);
            continue;
        };
        refused.insert(thing);
        let took = started.elapsed();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
        assert_eq!(json(response).await["code"], "store_unavailable");
        fast += 1;
        slowest_refusal = slowest_refusal.max(took);
    }
    let refusing_at_once = stopped.elapsed();
    for _ in 0..5 {
        let (status, took) = timed_readyz(&app).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        slowest_ready = slowest_ready.max(took);
    }

    cluster.start();
    let started = Instant::now();
    loop {
        let (status, took) = timed_readyz(&app).await;
        slowest_ready = slowest_ready.max(took);
        if status == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = started.elapsed();
    let after = app.sign(&csr("fail-fast-after", "JP").pem).await;
    assert_eq!(after.status(), StatusCode::CREATED);
    let after_serial = json(after).await["serial"].as_str().unwrap().to_owned();
    eprintln!(
        "/readyz slowest {slowest_ready:?}; 503 from /readyz {readyz_noticed:?} after the stop, \
         stations refused at once from {refusing_at_once:?} (slowest refusal \
         {slowest_refusal:?}); ready again {recovered:?} after the start"
    );
    // Both 201s are in the ledger; no refused request left a row.
    let listed = json(app.get(&app.viewer, "/v1/certificates?limit=100").await).await;
    let rows: BTreeSet<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["thing_name"].as_str().unwrap().to_owned())
        .collect();
    assert!(rows.contains("fail-fast-before") && rows.contains("fail-fast-after"));
    for thing in &rows {
        assert!(
            thing.starts_with("fail-fast-before")
                || thing.starts_with("fail-fast-after")
                || abandoned.contains(thing),
            "a row for a request answered 503: {thing}"
        );
        assert!(!refused.contains(thing));
    }
    for serial in [before_serial, after_serial] {
        let response = app
            .get(&app.viewer, &format!("/v1/certificates/{serial}"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}
