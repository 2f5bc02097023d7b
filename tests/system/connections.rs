//! Slow and idle clients against the real binary over loopback: thousands of connections that
//! trickle a request head one line at a time, bodies that never finish, idle keep-alive
//! connections, and more connections than the cap. Legitimate requests must keep being served
//! in under a second, and every slow socket must be closed within its configured timeout.
//! Every loop is bounded in count and time.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::binary::{self, Service};

/// Slow connections held at once in the main test.
const SLOW_CONNECTIONS: usize = 3_000;
const HEADER_TIMEOUT_SECS: u64 = 3;
const BODY_TIMEOUT_SECS: u64 = 3;
const IDLE_TIMEOUT_SECS: u64 = 4;
/// What a socket may take beyond its timeout to be closed: the connection task's check runs
/// every quarter of the idle timeout, and the machine is shared.
const SLACK: Duration = Duration::from_secs(3);

fn service(data_dir: &Path, configure: impl FnOnce(&mut Command)) -> Service {
    let mut cmd = binary::factory_ca(data_dir);
    cmd.env("FACTORY_CA_LOG__LEVEL", "info")
        .env(
            "FACTORY_CA_SERVER__HEADER_READ_TIMEOUT_SECS",
            HEADER_TIMEOUT_SECS.to_string(),
        )
        .env(
            "FACTORY_CA_SERVER__BODY_READ_TIMEOUT_SECS",
            BODY_TIMEOUT_SECS.to_string(),
        )
        .env(
            "FACTORY_CA_SERVER__IDLE_TIMEOUT_SECS",
            IDLE_TIMEOUT_SECS.to_string(),
        );
    configure(&mut cmd);
    Service::start(cmd)
}

fn addr(service: &Service) -> SocketAddr {
    ([127, 0, 0, 1], service.port).into()
}

/// Opens a connection and sends a request head one header line per second, for at most
/// `limit`. Returns how long the server took to close it (`None`: still open at `limit`, or
/// the connection could not be made).
async fn slowloris(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let start = Instant::now();
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .is_err()
    {
        return Some(start.elapsed());
    }
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(start.elapsed()),
                // A 408 or 400 before the close is fine; keep reading until it closes.
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if stream.write_all(b"x-slow: 1\r\n").await.is_err() {
                    return Some(start.elapsed());
                }
            }
        }
    }
    None
}

/// Reads until the server closes the stream (or `limit` passes); returns what it sent and
/// when it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = limit.checked_sub(start.elapsed()) {
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&received).into_owned(),
                    Some(start.elapsed()),
                );
            }
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), None)
}

/// Sends `GET /healthz` every 100 ms for `duration` on fresh connections and returns every
/// latency; any failure or non-200 fails the test.
async fn legitimate_requests(base: String, duration: Duration) -> Vec<Duration> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut latencies = Vec::new();
    let start = Instant::now();
    while start.elapsed() < duration {
        let sent = Instant::now();
        let response = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("a legitimate request is answered while slow clients are connected");
        assert_eq!(response.status(), StatusCode::OK);
        latencies.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_slow_clients_neither_hold_sockets_nor_delay_other_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = service(dir.path(), |_| {});
    service.ready().await;
    let addr = addr(&service);

    // Open the slow connections in batches (the listen backlog is finite), all within a few
    // seconds, then serve legitimate requests while they are held.
    let limit = Duration::from_secs(HEADER_TIMEOUT_SECS) + SLACK + Duration::from_secs(10);
    let mut slow = Vec::with_capacity(SLOW_CONNECTIONS);
    for batch in 0..SLOW_CONNECTIONS / 250 {
        for _ in 0..250 {
            slow.push(tokio::spawn(slowloris(addr, limit)));
        }
        if batch % 4 == 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The legitimate client runs on a thread and runtime of its own, so that what it measures
    // is the service, not this process's 3,000 slow-client tasks.
    let base = service.base();
    let latencies = tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(legitimate_requests(
                base,
                Duration::from_secs(HEADER_TIMEOUT_SECS + 2),
            ))
    })
    .await
    .unwrap();

    let mut closed_after = Vec::with_capacity(SLOW_CONNECTIONS);
    let mut never_connected = 0;
    for task in slow {
        match task.await.unwrap() {
            Some(after) => closed_after.push(after),
            None => never_connected += 1,
        }
    }
    closed_after.sort();
    let slowest_close = *closed_after.last().expect("slow connections were made");
    let worst = *latencies.iter().max().unwrap();
    eprintln!(
        "{} slow connections held, {} not made or still open; closed after {:?} (median) to \
         {:?} (slowest); {} legitimate requests, slowest {:?}",
        closed_after.len(),
        never_connected,
        closed_after[closed_after.len() / 2],
        slowest_close,
        latencies.len(),
        worst
    );
    assert_eq!(
        never_connected, 0,
        "every slow connection is made and closed by the server within {limit:?}"
    );
    assert!(
        slowest_close <= Duration::from_secs(HEADER_TIMEOUT_SECS) + SLACK,
        "slow sockets are closed within server.header_read_timeout_secs: {slowest_close:?}"
    );
    // Under a second, every one when the machine is not shared (10 to 20 ms measured alone).
    // The system suite runs tests in parallel on shared cores (kill -9 rounds, loads), so one
    // request in twenty may be starved of CPU past a second; none may take three.
    let mut sorted = latencies.clone();
    sorted.sort();
    let p95 = sorted[sorted.len() * 95 / 100];
    assert!(
        p95 < Duration::from_secs(1) && worst < Duration::from_secs(3),
        "legitimate requests are served in under a second: p95 {p95:?}, slowest {worst:?}"
    );
    let (stderr, _) = service.stop().await;
    assert!(!stderr.contains("accept error"), "{stderr}");
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_408_and_an_idle_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = service(dir.path(), |_| {});
    service.ready().await;
    let addr = addr(&service);

    // The head arrives, the body never does.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /v1/certificates HTTP/1.1\r\nhost: 127.0.0.1\r\n\
              content-type: application/pkcs10\r\ncontent-length: 1000\r\n\r\n-----BEGIN",
        )
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(15)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_body_timeout"), "{answer}");
    let closed = closed.expect("the connection is closed after the 408");
    assert!(
        closed <= Duration::from_secs(BODY_TIMEOUT_SECS) + SLACK,
        "closed after {closed:?}"
    );

    // A keep-alive connection after one answered request, then silence.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(15)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let closed = closed.expect("an idle keep-alive connection is closed");
    let bound = Duration::from_secs(HEADER_TIMEOUT_SECS.min(IDLE_TIMEOUT_SECS)) + SLACK;
    assert!(closed <= bound, "closed after {closed:?}, bound {bound:?}");

    // A connection that never sends a byte.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(15)).await;
    let closed = closed.expect("a silent connection is closed");
    assert!(closed <= bound, "closed after {closed:?}, bound {bound:?}");
    service.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_service_resumes() {
    const CAP: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let mut service = service(dir.path(), |cmd| {
        cmd.env("FACTORY_CA_SERVER__MAX_CONNECTIONS", CAP.to_string());
    });
    service.ready().await;
    let addr = addr(&service);
    // Let the readiness probe's connection close (reqwest keeps it in its pool).
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Wait until the server has accepted them all (the accept loop is asynchronous).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut closed_at_once = 0;
    for _ in 0..20 {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let (_, closed) = read_until_closed(&mut extra, Duration::from_secs(2)).await;
        if closed.is_some_and(|after| after < Duration::from_secs(1)) {
            closed_at_once += 1;
        }
    }
    assert_eq!(
        closed_at_once, 20,
        "connections over the cap are closed at once"
    );

    // The held connections are silent: the header timeout frees their places.
    let mut reaped = 0;
    for stream in &mut held {
        let (_, closed) =
            read_until_closed(stream, Duration::from_secs(HEADER_TIMEOUT_SECS) + SLACK).await;
        if closed.is_some() {
            reaped += 1;
        }
    }
    assert_eq!(
        reaped, CAP,
        "every silent connection is closed by the header timeout"
    );
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/healthz", service.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (stderr, _) = service.stop().await;
    assert!(stderr.contains("connection cap reached"), "{stderr}");
    assert!(stderr.contains("open files: soft limit"), "{stderr}");
}
