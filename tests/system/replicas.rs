//! Three service processes on one PostgreSQL, hammered at once with overlapping
//! Idempotency-Keys and duplicate thing names: the database constraints, not in-process locks,
//! keep serials unique, one certificate per key and one active certificate per thing, and the
//! CA's hash chain is one gapless order that `ledger verify` accepts, with the checkpoints all
//! three sign (every 5 records here) never two for one due point.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::binary::{self, Service};
use crate::common::*;
use reqwest::StatusCode;
use sqlx::Connection;

fn factory_ca(data_dir: &Path, db: &str) -> Command {
    let mut cmd = binary::factory_ca(data_dir);
    cmd.env("FACTORY_CA_DATABASE__URL", db)
        .env("FACTORY_CA_CA__CREATE_ON_FIRST_START", "false")
        .env("FACTORY_CA_LEDGER__CHECKPOINT_EVERY_RECORDS", "5");
    cmd
}

async fn start_replica(data_dir: &Path, db: &str) -> Service {
    let mut replica = Service::start(factory_ca(data_dir, db));
    replica.ready().await;
    replica
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_never_duplicate_serials_keys_or_active_things() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_pg_database().await;
    let data = dir.path();
    run(factory_ca(data, &db).args(["ca", "create", "--common-name", "Replica Root"]));
    let tokens: Vec<String> = (0..3)
        .map(|i| {
            let out = run(factory_ca(data, &db).args([
                "token",
                "create",
                "--role",
                "station",
                "--name",
                &format!("line-{i}"),
            ]));
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        })
        .collect();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(start_replica(data, &db).await);
    }
    let client = reqwest::Client::new();

    // 20 idempotency keys, each sent by its station to all three replicas with the same CSR;
    // 10 thing names, each requested three times with different CSRs and no key.
    let mut requests = Vec::new();
    for k in 0..20 {
        let station = k % 3;
        let csr_pem = csr(&format!("Keyed-{k}"), "JP").pem;
        for replica in &replicas {
            requests.push((
                replica.base(),
                tokens[station].clone(),
                csr_pem.clone(),
                Some(format!("key-{k}")),
                station,
            ));
        }
    }
    for t in 0..10 {
        for (r, replica) in replicas.iter().enumerate() {
            requests.push((
                replica.base(),
                tokens[r].clone(),
                csr(&format!("Twin-{t}"), "JP").pem,
                None,
                r,
            ));
        }
    }
    let sends = requests
        .into_iter()
        .map(|(base, token, csr_pem, key, station)| {
            let client = client.clone();
            async move {
                let mut request = client
                    .post(format!("{base}/v1/certificates"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({ "csr": csr_pem }));
                if let Some(key) = &key {
                    request = request.header("Idempotency-Key", key);
                }
                let response = tokio::time::timeout(Duration::from_secs(30), request.send())
                    .await
                    .expect("bounded")
                    .expect("sent");
                let status = response.status();
                let body: serde_json::Value = response.json().await.unwrap();
                (key.map(|k| (station, k)), status, body)
            }
        });
    let results = futures::future::join_all(sends).await;

    let mut serial_per_key: BTreeMap<(usize, String), BTreeSet<String>> = BTreeMap::new();
    let mut created_per_thing: BTreeMap<String, usize> = BTreeMap::new();
    for (key, status, body) in &results {
        match key {
            Some(k) => {
                assert_eq!(*status, StatusCode::CREATED, "{body}");
                serial_per_key
                    .entry(k.clone())
                    .or_default()
                    .insert(body["serial"].as_str().unwrap().to_owned());
            }
            None if *status == StatusCode::CREATED => {
                *created_per_thing
                    .entry(body["thing_name"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
            None => {
                assert_eq!(*status, StatusCode::CONFLICT, "{body}");
                assert_eq!(body["code"], "thing_already_provisioned");
            }
        }
    }
    assert_eq!(serial_per_key.len(), 20);
    assert!(
        serial_per_key.values().all(|serials| serials.len() == 1),
        "{serial_per_key:?}"
    );
    assert_eq!(
        created_per_thing.len(),
        10,
        "every thing got exactly one certificate"
    );
    assert!(
        created_per_thing.values().all(|n| *n == 1),
        "{created_per_thing:?}"
    );

    // The database agrees: 30 rows, 30 distinct serials, one active certificate per thing.
    let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
    let (rows, serials, things): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT serial), COUNT(DISTINCT thing_name) FROM issued_certificates",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((rows, serials, things), (30, 30, 30));
    let (keys,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM idempotency_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, 20);

    // Every replica checkpoints the chain (each polls once a second): checkpoints come within
    // seconds, no two closer than the 5 records that make one due (the first may come sooner:
    // a chain's first records are signed at once), so the last is at most 4 records short of
    // the head. Where the due points fall depends on how the requests interleaved.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let due: Vec<i64> = loop {
        let seqs = checkpoint_seqs(&mut conn).await;
        if seqs.last().is_some_and(|last| 30 - last < 5) {
            break seqs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint within 5 records of the head (30): {seqs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        due.windows(2).all(|w| w[1] - w[0] >= 5),
        "two replicas checkpointed one due point: {due:?}"
    );
    // A graceful stop signs what is left: after the three stops, a checkpoint at the head, and
    // still one per position however the stops raced.
    for replica in replicas {
        replica.stop().await;
    }
    let checkpoints = checkpoint_seqs(&mut conn).await;
    assert_eq!(checkpoints.last(), Some(&30), "{checkpoints:?}");
    assert!(
        checkpoints.starts_with(&due),
        "{due:?} then {checkpoints:?}"
    );
    assert!(checkpoints.len() <= due.len() + 1, "{checkpoints:?}");

    // The three processes wrote one hash chain: 30 records numbered 1 to 30, verified by
    // `factory-ca ledger verify` with its checkpoints.
    let out = run(factory_ca(data, &db).args(["ledger", "verify"]));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("\tok\t30 records"), "{report}");
    assert!(
        report.contains(&format!("\t{} checkpoints\t", checkpoints.len())),
        "{report}"
    );
    let (records, first, last): (i64, i64, i64) =
        sqlx::query_as("SELECT COUNT(*), MIN(seq), MAX(seq) FROM ledger_chain")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((records, first, last), (30, 1, 30));
}

/// The positions of the chain's checkpoints, in order.
async fn checkpoint_seqs(conn: &mut sqlx::PgConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT seq FROM ledger_checkpoints ORDER BY seq")
        .fetch_all(conn)
        .await
        .unwrap()
}
