//! Answers given before the request body is read (404, 405, 401, 413, 415) reach the client
//! whole over HTTPS with HTTP/2 (ALPN h2), from a Rust client (hyper's HTTP/2 client on
//! tokio-rustls) and from curl, hundreds of times each, and over HTTP/1.1 too. Without care,
//! the server resets the stream while the client is still uploading and the client reports a
//! framing error instead of the status.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use factory_ca::config::ClientAuth;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::tls::TlsApp;
use crate::common::{Backend, write};

/// Rust-client rounds per case, and curl runs per case.
const RUST_ROUNDS: usize = 300;
const CURL_ROUNDS: usize = 60;

/// One early answer: the request and what must come back.
struct Case {
    method: &'static str,
    path: &'static str,
    /// Send the station token.
    authorized: bool,
    content_type: &'static str,
    body_len: usize,
    status: u16,
    code: &'static str,
}

/// The service's body limit is the default, 64 KiB; the 413 body is the 133 KB of the report.
const CASES: &[Case] = &[
    Case {
        method: "POST",
        path: "/nope",
        authorized: false,
        content_type: "application/json",
        body_len: 48 * 1024,
        status: 404,
        code: "not_found",
    },
    Case {
        method: "PUT",
        path: "/v1/certificates",
        authorized: true,
        content_type: "application/json",
        body_len: 48 * 1024,
        status: 405,
        code: "method_not_allowed",
    },
    Case {
        method: "POST",
        path: "/v1/certificates",
        authorized: false,
        content_type: "application/json",
        body_len: 48 * 1024,
        status: 401,
        code: "unauthorized",
    },
    Case {
        method: "POST",
        path: "/v1/certificates",
        authorized: true,
        content_type: "application/json",
        body_len: 133 * 1024,
        status: 413,
        code: "payload_too_large",
    },
    Case {
        method: "POST",
        path: "/v1/certificates",
        authorized: true,
        content_type: "text/plain",
        body_len: 48 * 1024,
        status: 415,
        code: "unsupported_media_type",
    },
];

async fn spawn() -> TlsApp {
    TlsApp::spawn_with(
        Backend::Sqlite,
        Some(ClientAuth::Optional),
        |_, settings| {
            // Hundreds of refusals from one station must not be rate limited.
            settings.server.station_rate_per_sec = 0.0;
        },
    )
    .await
}

/// An HTTP/2 connection over TLS (ALPN h2 only) with hyper's client.
async fn h2_connection(app: &TlsApp) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let mut config = app.pki.rustls_config_with(None, &[&rustls::version::TLS13]);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(app.addr).await.expect("connect");
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    send
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_reach_a_rust_http2_client_every_time() {
    let app = spawn().await;
    for case in CASES {
        // One connection per case: an answer must not cost the connection either.
        let mut send = h2_connection(&app).await;
        let body = Bytes::from(vec![b'x'; case.body_len]);
        for round in 0..RUST_ROUNDS {
            let mut request = Request::builder()
                .method(case.method)
                .uri(app.url(case.path))
                .header("content-type", case.content_type);
            if case.authorized {
                request = request.header("authorization", format!("Bearer {}", app.station));
            }
            let request = request.body(Full::new(body.clone())).unwrap();
            send.ready().await.unwrap_or_else(|e| {
                panic!(
                    "{} {} round {round}: connection lost: {e}",
                    case.method, case.path
                )
            });
            let response =
                tokio::time::timeout(Duration::from_secs(10), send.send_request(request))
                    .await
                    .expect("answered within 10 s")
                    .unwrap_or_else(|e| {
                        panic!(
                            "{} {} round {round}: no answer: {e}",
                            case.method, case.path
                        )
                    });
            assert_eq!(response.status().as_u16(), case.status, "round {round}");
            let answer = response.into_body().collect().await.unwrap().to_bytes();
            let problem: serde_json::Value = serde_json::from_slice(&answer).unwrap();
            assert_eq!(problem["code"], case.code, "round {round}");
        }
    }
}

/// curl (OpenSSL, nghttp2) with `--http2`: every run gets the status and the problem body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_reach_curl_over_http2_and_http1_every_time() {
    let app = spawn().await;
    for (i, case) in CASES.iter().enumerate() {
        let body_path = write(
            &app.pki.dir,
            &format!("body-{i}"),
            &"x".repeat(case.body_len),
        );
        for (protocol, flag, version) in
            [("HTTP/2", "--http2", "2"), ("HTTP/1.1", "--http1.1", "1.1")]
        {
            let rounds = if version == "2" {
                CURL_ROUNDS
            } else {
                CURL_ROUNDS / 4
            };
            let mut failures = Vec::new();
            for round in 0..rounds {
                let out_path = app.pki.dir.join(format!("out-{i}-{round}"));
                let mut args: Vec<String> = vec![
                    flag.into(),
                    "--silent".into(),
                    "--show-error".into(),
                    "--max-time".into(),
                    "20".into(),
                    "--cacert".into(),
                    app.pki.server_ca_path.display().to_string(),
                    "-X".into(),
                    case.method.into(),
                    "-H".into(),
                    format!("Content-Type: {}", case.content_type),
                    "--data-binary".into(),
                    format!("@{}", body_path.display()),
                    "--output".into(),
                    out_path.display().to_string(),
                    "--write-out".into(),
                    "%{http_code} %{http_version}".into(),
                ];
                if case.authorized {
                    args.push("-H".into());
                    args.push(format!("Authorization: Bearer {}", app.station));
                }
                args.push(app.url(case.path));
                let output = tokio::task::spawn_blocking(move || {
                    std::process::Command::new("curl").args(&args).output()
                })
                .await
                .unwrap()
                .expect("curl runs");
                let written = String::from_utf8_lossy(&output.stdout).to_string();
                let answer = std::fs::read(&out_path).unwrap_or_default();
                let code = serde_json::from_slice::<serde_json::Value>(&answer)
                    .ok()
                    .and_then(|p| p["code"].as_str().map(str::to_owned));
                if !output.status.success()
                    || written != format!("{} {version}", case.status)
                    || code.as_deref() != Some(case.code)
                {
                    failures.push(format!(
                        "round {round}: {written:?} {code:?} {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    ));
                }
            }
            assert!(
                failures.is_empty(),
                "{protocol} {} {}: {} of {rounds} lost: {:?}",
                case.method,
                case.path,
                failures.len(),
                &failures[..failures.len().min(5)]
            );
        }
    }
}
