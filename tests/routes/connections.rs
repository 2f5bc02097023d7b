//! Connection limits over plain HTTP/1.1, in process and fast: a request head that never ends
//! and a body that never ends are cut off at their timeouts, an answer given before the body is
//! read arrives whole on a connection that stays usable, and the settings are validated. The
//! thousands-of-clients, HTTP/2 and curl cases are in `tests/system/connections.rs` and
//! `tests/system/early_answers.rs`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.base.trim_start_matches("http://").to_owned();
    TcpStream::connect(addr).await.unwrap()
}

/// Reads until the peer closes (at most `limit`): what it sent, and when it closed.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = limit.checked_sub(start.elapsed()) {
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&seen).into(), Some(start.elapsed()));
            }
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&seen).into(), None)
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.header_read_timeout_secs = Duration::from_secs(1);
    })
    .await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (_, closed) = until_closed(&mut stream, Duration::from_secs(10)).await;
    let closed = closed.expect("closed");
    assert!(closed < Duration::from_secs(4), "closed after {closed:?}");
}

#[tokio::test]
async fn a_body_that_never_ends_gets_408_request_body_timeout() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.body_read_timeout_secs = Duration::from_secs(1);
    })
    .await;
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /v1/certificates HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 500\r\n\r\n{{\"csr\": \"",
        app.station
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, closed) = until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("\"code\":\"request_body_timeout\""),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(closed.expect("closed") < Duration::from_secs(4));
    assert_eq!(app.ledger_count().await, 0);
}

#[tokio::test]
async fn an_early_answer_arrives_and_the_connection_serves_the_next_request() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut stream = connect(&app).await;
    // 404 for a wrong path with a 40 KB body, then a second request on the same connection.
    let body = "x".repeat(40 * 1024);
    let request = format!(
        "POST /nope HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}\
         GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (answers, closed) = until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "{answers}");
    assert!(answers.starts_with("HTTP/1.1 404"), "{answers}");
    assert!(answers.contains("\"code\":\"not_found\""), "{answers}");
    assert!(
        answers.contains("HTTP/1.1 200"),
        "the connection is reused: {answers}"
    );
}

/// A setting's name and a change that puts it out of range.
type Breaks = (&'static str, fn(&mut factory_ca::config::Settings));

#[test]
fn connection_settings_out_of_range_are_refused_with_their_names() {
    use factory_ca::config::Settings;
    let cases: &[Breaks] = &[
        ("server.header_read_timeout_secs", |s| {
            s.server.header_read_timeout_secs = Duration::ZERO
        }),
        ("server.body_read_timeout_secs", |s| {
            s.server.body_read_timeout_secs = Duration::from_secs(601)
        }),
        ("server.idle_timeout_secs", |s| {
            s.server.idle_timeout_secs = Duration::ZERO
        }),
        ("server.max_connections", |s| s.server.max_connections = 3),
        ("server.http2_max_concurrent_streams", |s| {
            s.server.http2_max_concurrent_streams = 0
        }),
        ("server.http2_max_header_list_bytes", |s| {
            s.server.http2_max_header_list_bytes = 100
        }),
    ];
    for (key, break_it) in cases {
        let mut settings = Settings::default();
        break_it(&mut settings);
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[tokio::test]
async fn a_streamed_export_is_not_cut_off_by_the_idle_timeout() {
    // The connection counts as idle only once the whole answer is sent: a CSV export that a
    // client reads for longer than `idle_timeout_secs` + `request_timeout_secs` (the grace
    // of an idle close) arrives whole.
    const ROWS: u32 = 40_000;
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.server.idle_timeout_secs = Duration::from_secs(1);
        s.server.request_timeout_secs = Duration::from_secs(1);
    })
    .await;
    let response = app.sign(&csr("template-1", "JP").pem).await;
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    // ~17 MB of CSV: more than the loopback socket buffers hold, so the service is still
    // sending while the client waits.
    let columns = "ca_id, subject, key_algorithm, spki_sha256, certificate_der, not_before, \
                   not_after, status, station, country";
    app.execute_sql(&format!(
        "INSERT INTO issued_certificates (serial, aws_certificate_id, thing_name, issued_at, \
           {columns}) \
         SELECT decode(lpad(to_hex(i), 40, '0'), 'hex'), decode(lpad(to_hex(i), 64, '0'), 'hex'), 'bulk-' || i, \
           now() - make_interval(secs => i), {columns} \
         FROM (SELECT * FROM issued_certificates LIMIT 1) AS t, generate_series(1, {ROWS}) AS i"
    ))
    .await;

    let mut export = app.get(&app.viewer, "/v1/certificates/export.csv").await;
    assert_eq!(export.status(), reqwest::StatusCode::OK);
    // Past the idle timeout and its grace before reading on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut lines = 0usize;
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = export.chunk().await? {
            lines += chunk.iter().filter(|&&b| b == b'\n').count();
        }
        Ok::<_, reqwest::Error>(())
    })
    .await
    .expect("the export ends within 60 s");
    read.expect("the export arrives whole, not cut off");
    assert_eq!(lines, ROWS as usize + 2, "header, template and filled rows");
}
