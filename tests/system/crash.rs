//! Crash consistency: `kill -9` of `factory-ca serve` at a random point of a signing load, on
//! SQLite and on PostgreSQL (group commit on), several rounds on one ledger. After each
//! restart:
//! - every certificate answered 201 is in the ledger, with the serial the client got;
//! - every ledger row was answered 201 with that serial, or its client's connection broke
//!   (the one case where a client cannot know the outcome);
//! - no thing claim and no idempotency key exists without its certificate;
//! - a request whose connection broke, retried with its `Idempotency-Key` and CSR, gets the
//!   certificate the ledger holds for it, or a new one when nothing was committed;
//! - a thing whose request died before its commit can be provisioned again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use sqlx::Connection;

use crate::common::binary::{self, Service};
use crate::common::*;
use factory_ca::store::HexText;

const ROUNDS: usize = 5;
const WORKERS: usize = 6;
const PER_WORKER: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Created { serial: String },
    Refused { status: u16, code: String },
    NotConnected,
    ConnectionFailed,
}

/// One request of the load: a thing, its CSR and, for every other one, an Idempotency-Key.
#[derive(Clone)]
struct Planned {
    thing: String,
    pem: String,
    key: Option<String>,
}

enum Ledger {
    Sqlite(String),
    Postgres(String),
}

impl Ledger {
    async fn query<T>(&self, sql: &str) -> Vec<T>
    where
        T: Send + Unpin,
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        match self {
            Ledger::Sqlite(url) => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                let rows = sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                rows
            }
            Ledger::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let rows = sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                rows
            }
        }
    }

    /// thing name -> serial of every row.
    async fn rows(&self) -> HashMap<String, String> {
        let rows: Vec<(String, HexText)> = self
            .query("SELECT thing_name, serial FROM issued_certificates")
            .await;
        let map: HashMap<String, String> = rows
            .iter()
            .map(|(thing, serial)| (thing.clone(), serial.0.clone()))
            .collect();
        assert_eq!(map.len(), rows.len(), "one row per thing name");
        map
    }

    /// Thing claims and idempotency keys whose certificate is not in the ledger.
    async fn orphans(&self) -> i64 {
        let (n,): (i64,) = self
            .query(
                "SELECT (SELECT COUNT(*) FROM thing_claims c WHERE NOT EXISTS \
                   (SELECT 1 FROM issued_certificates i WHERE i.serial = c.serial)) + \
                 (SELECT COUNT(*) FROM idempotency_keys k WHERE NOT EXISTS \
                   (SELECT 1 FROM issued_certificates i WHERE i.serial = k.serial))",
            )
            .await
            .pop()
            .unwrap();
        n
    }
}

async fn sign(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    planned: &Planned,
) -> (Outcome, bool) {
    let mut request = client
        .post(format!("{base}/v1/certificates"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "csr": planned.pem }));
    if let Some(key) = &planned.key {
        request = request.header("idempotency-key", key);
    }
    let response = match request.send().await {
        Err(e) if e.is_connect() => return (Outcome::NotConnected, false),
        Err(_) => return (Outcome::ConnectionFailed, false),
        Ok(response) => response,
    };
    let status = response.status();
    let replayed = response.headers().contains_key("idempotent-replayed");
    let outcome = match response.json::<serde_json::Value>().await {
        Err(_) => Outcome::ConnectionFailed,
        Ok(body) if status == StatusCode::CREATED || status == StatusCode::OK => Outcome::Created {
            serial: body["serial"].as_str().unwrap().to_owned(),
        },
        Ok(body) => Outcome::Refused {
            status: status.as_u16(),
            code: body["code"].as_str().unwrap_or("").to_owned(),
        },
    };
    (outcome, replayed)
}

/// Sends `plan` in order until done or the connection breaks.
async fn worker(
    base: String,
    token: String,
    plan: Vec<Planned>,
    created: Arc<AtomicUsize>,
) -> Vec<(Planned, Outcome)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut outcomes = Vec::new();
    for planned in plan {
        let (outcome, _) = sign(&client, &base, &token, &planned).await;
        if matches!(outcome, Outcome::Created { .. }) {
            created.fetch_add(1, Ordering::SeqCst);
        }
        let stop = matches!(outcome, Outcome::NotConnected | Outcome::ConnectionFailed);
        outcomes.push((planned, outcome));
        if stop {
            break;
        }
    }
    outcomes
}

fn start(data: &Path, db: Option<&str>) -> Service {
    let mut cmd = binary::factory_ca(data);
    cmd.env("FACTORY_CA_SERVER__STATION_RATE_PER_SEC", "0");
    if let Some(db) = db {
        cmd.env("FACTORY_CA_DATABASE__URL", db)
            .env("FACTORY_CA_DATABASE__GROUP_COMMIT", "true");
    }
    Service::start(cmd)
}

async fn kill_nine_rounds(db: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let with_db = |cmd: &mut std::process::Command| {
        if let Some(db) = &db {
            cmd.env("FACTORY_CA_DATABASE__URL", db);
        }
    };
    let mut cmd = binary::factory_ca(&data);
    with_db(&mut cmd);
    run(cmd.args(["ca", "create"]));
    let mut cmd = binary::factory_ca(&data);
    with_db(&mut cmd);
    let token = String::from_utf8(
        run(cmd.args(["token", "create", "--role", "station", "--name", "line-1"])).stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let ledger = match &db {
        Some(url) => Ledger::Postgres(url.clone()),
        None => Ledger::Sqlite(format!("sqlite://{}", data.join("factory-ca.db").display())),
    };

    // Every answer any client got, by thing name, over all rounds.
    let mut told: HashMap<String, Outcome> = HashMap::new();
    let mut unconfirmed_rows = 0;
    let mut retried = 0;
    let mut provisioned_again = 0;
    let mut service = start(&data, db.as_deref());
    service.ready().await;
    for round in 0..ROUNDS {
        let created = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let plan = (0..PER_WORKER)
                    .map(|i| {
                        let thing = format!("crash-{round}-{w}-{i}");
                        Planned {
                            pem: csr(&thing, "JP").pem,
                            key: (i % 2 == 0).then(|| format!("key-{thing}")),
                            thing,
                        }
                    })
                    .collect();
                tokio::spawn(worker(service.base(), token.clone(), plan, created.clone()))
            })
            .collect();
        // A random point of the load: after 20 to 80 certificates, plus up to 200 ms.
        let (wait_for, extra_ms) = {
            let mut rng = rand::rng();
            (rng.random_range(20..80), rng.random_range(0..200))
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while created.load(Ordering::SeqCst) < wait_for {
            assert!(Instant::now() < deadline, "{}", service.stderr_text());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(extra_ms)).await;
        service.signal("KILL");
        service.exit_within(Duration::from_secs(10)).await;
        let mut outcomes = Vec::new();
        for worker in workers {
            outcomes.extend(worker.await.unwrap());
        }

        // Restart on the same ledger; the checks run against the recovered store.
        service = start(&data, db.as_deref());
        service.ready().await;
        let rows = ledger.rows().await;
        assert_eq!(
            ledger.orphans().await,
            0,
            "a claim or key without its certificate"
        );
        for (planned, outcome) in &outcomes {
            match outcome {
                Outcome::Created { serial } => assert_eq!(
                    rows.get(&planned.thing),
                    Some(serial),
                    "round {round}: {} answered 201 without its row",
                    planned.thing
                ),
                Outcome::Refused { status, code } => {
                    panic!("round {round}: {} refused {status} {code}", planned.thing)
                }
                Outcome::NotConnected => {
                    assert!(
                        !rows.contains_key(&planned.thing),
                        "a row for a request never served"
                    )
                }
                Outcome::ConnectionFailed => {}
            }
        }
        let client = reqwest::Client::new();
        for (planned, outcome) in outcomes {
            if outcome != Outcome::ConnectionFailed {
                told.insert(planned.thing.clone(), outcome);
                continue;
            }
            let committed = rows.get(&planned.thing);
            if committed.is_some() {
                unconfirmed_rows += 1;
            }
            match (&planned.key, committed) {
                // The retry with the same key and CSR gets what the ledger holds, or a new
                // certificate when nothing was committed.
                (Some(_), _) => {
                    let (again, replayed) = sign(&client, &service.base(), &token, &planned).await;
                    let Outcome::Created { serial } = &again else {
                        panic!("retry of {}: {again:?}", planned.thing);
                    };
                    if let Some(committed) = committed {
                        assert_eq!(serial, committed, "the retry replays the committed one");
                        assert!(replayed);
                    }
                    retried += 1;
                    told.insert(planned.thing.clone(), again);
                }
                // Without a key: a thing whose request died before its commit is free.
                (None, None) => {
                    let (again, _) = sign(&client, &service.base(), &token, &planned).await;
                    assert!(
                        matches!(again, Outcome::Created { .. }),
                        "{} provisioned again: {again:?}",
                        planned.thing
                    );
                    provisioned_again += 1;
                    told.insert(planned.thing.clone(), again);
                }
                (None, Some(serial)) => {
                    told.insert(
                        planned.thing.clone(),
                        Outcome::Created {
                            serial: serial.clone(),
                        },
                    );
                }
            }
        }
        // Over all rounds so far: the ledger is exactly what the clients were told.
        let rows = ledger.rows().await;
        for (thing, serial) in &rows {
            match told.get(thing) {
                Some(Outcome::Created { serial: s }) => assert_eq!(s, serial, "{thing}"),
                other => panic!("{thing}: a row for a request that got {other:?}"),
            }
        }
        for (thing, outcome) in &told {
            if let Outcome::Created { serial } = outcome {
                assert_eq!(rows.get(thing), Some(serial), "{thing}");
            }
        }
        eprintln!(
            "{} round {round}: killed after {wait_for}+ certificates and {extra_ms} ms; ledger \
             {} rows, all accounted for",
            if db.is_some() { "PostgreSQL" } else { "SQLite" },
            rows.len()
        );
    }
    service.stop().await;
    eprintln!(
        "{}: {ROUNDS} rounds survived; {unconfirmed_rows} rows committed whose client saw the \
         connection break; {retried} retried with their Idempotency-Key; {provisioned_again} \
         things provisioned again",
        if db.is_some() { "PostgreSQL" } else { "SQLite" },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_under_load_on_sqlite_loses_no_answered_certificate() {
    kill_nine_rounds(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_under_load_on_postgres_with_group_commit_loses_no_answered_certificate() {
    kill_nine_rounds(Some(fresh_pg_database().await)).await;
}
