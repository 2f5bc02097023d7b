//! Graceful shutdown of the real binary: SIGTERM in the middle of a signing load on
//! PostgreSQL, and SIGINT once on an idle service.
//!
//! What the SIGTERM test asserts, with every request carrying a distinct thing name so that
//! each ledger row belongs to exactly one request:
//! - the process exits with status 0, within `server.shutdown_grace_secs` plus a margin;
//! - after SIGTERM, while a request is still in flight, a new connection is refused;
//! - that in-flight request (its body was half sent before SIGTERM) is finished: 201;
//! - every request answered 201 has its serial, for its thing name, in the ledger;
//! - every ledger row belongs to a request that was answered 201 with that serial, or whose
//!   client saw its connection fail after it was made (the only requests whose outcome a
//!   client cannot know); no row belongs to a request answered with an error, a request whose
//!   connection was refused, or a request never sent.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::binary::{self, Service};
use crate::common::*;

/// Seconds in-flight requests get after the signal.
const GRACE_SECS: u64 = 10;
/// Concurrent signing clients, and the most requests each sends.
const WORKERS: usize = 8;
const PER_WORKER: usize = 150;
/// 201s to wait for before the signal, so that it lands under load.
const CREATED_BEFORE_SIGNAL: usize = 100;

/// `factory-ca` logging at `info`, where the shutdown messages are.
fn factory_ca(data_dir: &Path) -> Command {
    let mut cmd = binary::factory_ca(data_dir);
    cmd.env("FACTORY_CA_LOG__LEVEL", "info");
    cmd
}

/// `serve` with in-flight requests given `grace_secs` after the signal.
fn start_service(mut cmd: Command, grace_secs: u64) -> Service {
    cmd.env(
        "FACTORY_CA_SERVER__SHUTDOWN_GRACE_SECS",
        grace_secs.to_string(),
    )
    // Longer than the grace period: the request that is held open must not be cut off by the
    // request timeout first.
    .env("FACTORY_CA_SERVER__REQUEST_TIMEOUT_SECS", "60")
    .env("FACTORY_CA_SERVER__STATION_RATE_PER_SEC", "0");
    Service::start(cmd)
}

/// What the client of one request learned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Created {
        serial: String,
    },
    /// An HTTP answer other than 201.
    Refused {
        status: u16,
        code: String,
    },
    /// No connection could be made (refused): the service never saw the request.
    NotConnected,
    /// The connection failed after it was made (reset or closed): the client does not know
    /// whether the request was served.
    ConnectionFailed,
}

/// One signing client: sends its CSRs in order over one keep-alive client until they are
/// all sent, or its connection fails (the service is going away).
async fn signing_client(
    base: String,
    token: String,
    csrs: Vec<(String, String)>,
    created: Arc<AtomicUsize>,
) -> Vec<(String, Outcome)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut outcomes = Vec::new();
    for (thing, pem) in csrs {
        let sent = client
            .post(format!("{base}/v1/certificates"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "csr": pem }))
            .send()
            .await;
        let outcome = match sent {
            Err(e) if e.is_connect() => Outcome::NotConnected,
            Err(_) => Outcome::ConnectionFailed,
            Ok(response) => {
                let status = response.status();
                match response.json::<serde_json::Value>().await {
                    Err(_) => Outcome::ConnectionFailed,
                    Ok(body) if status == StatusCode::CREATED => {
                        created.fetch_add(1, Ordering::SeqCst);
                        Outcome::Created {
                            serial: body["serial"].as_str().unwrap().to_owned(),
                        }
                    }
                    Ok(body) => Outcome::Refused {
                        status: status.as_u16(),
                        code: body["code"].as_str().unwrap_or("").to_owned(),
                    },
                }
            }
        };
        let stop = matches!(outcome, Outcome::NotConnected | Outcome::ConnectionFailed);
        outcomes.push((thing, outcome));
        if stop {
            break;
        }
    }
    outcomes
}

/// A signing request whose body is sent in two halves over a raw connection, so that it is
/// in flight for as long as the test wants.
struct HeldRequest {
    stream: tokio::net::TcpStream,
    rest: Vec<u8>,
}

impl HeldRequest {
    async fn start(port: u16, token: &str, csr_pem: &str) -> HeldRequest {
        let body = serde_json::to_vec(&serde_json::json!({ "csr": csr_pem })).unwrap();
        let head = format!(
            "POST /v1/certificates HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer \
             {token}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let half = body.len() / 2;
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body[..half]).await.unwrap();
        stream.flush().await.unwrap();
        HeldRequest {
            stream,
            rest: body[half..].to_vec(),
        }
    }

    /// Sends the rest of the body and reads the answer: status code and JSON body.
    async fn finish(mut self) -> (u16, serde_json::Value) {
        self.stream.write_all(&self.rest).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            self.stream.read_to_end(&mut answer),
        )
        .await
        .expect("the held request is answered and its connection closed")
        .unwrap();
        let answer = String::from_utf8(answer).unwrap();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        // Chunked or not: the JSON object is the part between the first { and the last }.
        let json = &body[body.find('{').unwrap_or(0)..=body.rfind('}').unwrap_or(0)];
        (
            status,
            serde_json::from_str(json).unwrap_or_else(|_| panic!("{head}\n{body}")),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_in_flight_requests_and_loses_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = fresh_pg_database().await;
    run(factory_ca(&data)
        .env("FACTORY_CA_DATABASE__URL", &db)
        .args(["ca", "create"]));
    let token = String::from_utf8(
        run(factory_ca(&data)
            .env("FACTORY_CA_DATABASE__URL", &db)
            .args(["token", "create", "--role", "station", "--name", "line-1"]))
        .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    // Every CSR before the load, each with its own thing name.
    let batches: Vec<Vec<(String, String)>> = (0..WORKERS)
        .map(|w| {
            (0..PER_WORKER)
                .map(|i| {
                    let thing = format!("Thing-{w}-{i}");
                    let pem = csr(&thing, "JP").pem;
                    (thing, pem)
                })
                .collect()
        })
        .collect();
    let held_thing = "Thing-held";
    let held_csr = csr(held_thing, "JP").pem;

    let mut cmd = factory_ca(&data);
    cmd.env("FACTORY_CA_DATABASE__URL", &db);
    let mut service = start_service(cmd, GRACE_SECS);
    service.ready().await;
    let held = HeldRequest::start(service.port, &token, &held_csr).await;

    let created = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = batches
        .into_iter()
        .map(|csrs| {
            tokio::spawn(signing_client(
                service.base(),
                token.clone(),
                csrs,
                created.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while created.load(Ordering::SeqCst) < CREATED_BEFORE_SIGNAL {
        assert!(
            Instant::now() < deadline,
            "the load did not start: {}",
            service.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    service.signal("TERM");
    let signalled = Instant::now();
    let created_at_signal = created.load(Ordering::SeqCst);

    // The listener closes at once; the held request keeps the process in its grace period.
    let deadline = Instant::now() + Duration::from_secs(5);
    while service.accepts_connections() {
        assert!(
            Instant::now() < deadline,
            "new connections still accepted after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        service.exited().is_none(),
        "factory-ca exited with a request in flight: {}",
        service.stderr_text()
    );
    let (held_status, held_body) = held.finish().await;
    assert_eq!(
        held_status, 201,
        "the in-flight request is finished: {held_body}"
    );

    let status = service
        .exit_within(Duration::from_secs(GRACE_SECS + 20))
        .await;
    let stopped_after = signalled.elapsed();
    assert!(status.success(), "exit {status}: {}", service.stderr_text());
    assert!(!service.accepts_connections());
    let logs = service.stderr_text();
    assert!(logs.contains("shutting down"), "{logs}");

    let mut outcomes: HashMap<String, Outcome> = HashMap::new();
    for worker in workers {
        outcomes.extend(worker.await.unwrap());
    }
    outcomes.insert(
        held_thing.to_owned(),
        Outcome::Created {
            serial: held_body["serial"].as_str().unwrap().to_owned(),
        },
    );

    let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT encode(serial, 'hex'), thing_name FROM issued_certificates")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let ledger: HashMap<String, String> = rows
        .iter()
        .map(|(serial, thing)| (thing.clone(), serial.clone()))
        .collect();
    assert_eq!(ledger.len(), rows.len(), "one row per thing name");

    // Every 201 is in the ledger.
    let mut told = 0;
    for (thing, outcome) in &outcomes {
        if let Outcome::Created { serial } = outcome {
            told += 1;
            assert_eq!(
                ledger.get(thing),
                Some(serial),
                "{thing}: a 201 without its row"
            );
        }
    }
    // Every row was either told to its client, or its client's connection failed.
    let mut unconfirmed = 0;
    for (thing, serial) in &ledger {
        match outcomes.get(thing) {
            Some(Outcome::Created { serial: s }) => assert_eq!(s, serial),
            Some(Outcome::ConnectionFailed) => unconfirmed += 1,
            other => panic!("{thing}: a ledger row for a request that got {other:?}"),
        }
    }
    let refused: Vec<_> = outcomes
        .values()
        .filter(|o| matches!(o, Outcome::Refused { .. }))
        .collect();
    // Refusals under load and shutdown may only be the documented, retryable ones.
    for outcome in &refused {
        assert!(
            matches!(outcome, Outcome::Refused { status: 503, .. }),
            "{outcome:?}"
        );
    }
    let count = |wanted: Outcome| outcomes.values().filter(|o| **o == wanted).count();
    eprintln!(
        "SIGTERM after {created_at_signal} certificates; exit 0 after {stopped_after:?}; \
         {told} answered 201 (all in the ledger), {} refused, {} refused connections, {} \
         failed connections, {unconfirmed} ledger rows whose client saw its connection fail, \
         {} rows",
        refused.len(),
        count(Outcome::NotConnected),
        count(Outcome::ConnectionFailed),
        rows.len()
    );
}

/// SIGINT (SQLite this time), with a request whose client never sends the rest of its body:
/// the service waits out its grace period for it, then exits 0 without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_the_service_with_status_zero_after_the_grace_period() {
    const SHORT_GRACE_SECS: u64 = 2;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(factory_ca(&data).args(["ca", "create"]));
    let token = String::from_utf8(
        run(factory_ca(&data).args(["token", "create", "--role", "station", "--name", "line-1"]))
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let mut service = start_service(factory_ca(&data), SHORT_GRACE_SECS);
    service.ready().await;
    let held = HeldRequest::start(service.port, &token, &csr("Thing-never", "JP").pem).await;
    // A request on the same service completes, so the held one has been accepted.
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/certificates", service.base()))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "csr": csr("Thing-done", "JP").pem }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::CREATED);

    service.signal("INT");
    let status = service
        .exit_within(Duration::from_secs(SHORT_GRACE_SECS + 20))
        .await;
    assert!(status.success(), "exit {status}: {}", service.stderr_text());
    assert!(!service.accepts_connections());
    let logs = service.stderr_text();
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(logs.contains("shutdown grace period over"), "{logs}");
    drop(held);
}
