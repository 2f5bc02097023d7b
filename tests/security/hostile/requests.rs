//! The HTTP request around the CSR: its media type, its JSON, its size and depth (streamed or
//! not), its Idempotency-Key, and the same body rules on the admin JSON routes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::*;
use crate::on_both_backends;

on_both_backends!(
    a_body_in_another_media_type_is_unsupported_media_type,
    json_that_is_not_one_object_with_a_csr_string_is_invalid_request,
    json_with_invalid_utf_8_or_unicode_is_refused,
    a_deep_or_oversized_body_is_refused_streamed_or_not,
    a_malformed_idempotency_key_is_refused_before_anything_is_signed,
    the_admin_token_route_reads_hostile_bodies_by_the_same_rules,
);

const MEDIA: StatusCode = StatusCode::UNSUPPORTED_MEDIA_TYPE;
const TOO_LARGE: StatusCode = StatusCode::PAYLOAD_TOO_LARGE;

fn json(bytes: &[u8]) -> Body {
    Body::Raw("application/json", bytes.to_vec())
}

/// A valid CSR (PEM) and the JSON body that carries it.
fn good_request() -> (String, Vec<u8>) {
    let good = csr("Request-1", "JP").pem;
    let good_json = serde_json::to_vec(&serde_json::json!({ "csr": good })).unwrap();
    (good, good_json)
}

/// A request body of `n` opening brackets: deep nesting, no content.
fn nested(n: usize) -> Vec<u8> {
    vec![b'['; n]
}

async fn refused_when_signing(backend: Backend, cases: Vec<Case>) {
    let app = TestApp::spawn(backend).await;
    refuses_each(&app, &app.station, "/v1/certificates", &cases).await;
}

/// Only application/json and application/pkcs10 are read.
async fn a_body_in_another_media_type_is_unsupported_media_type(backend: Backend) {
    let (good, good_json) = good_request();
    let unsupported = |name: &str, content_type: &'static str, body: Vec<u8>| {
        case(
            name,
            Body::Raw(content_type, body),
            MEDIA,
            "unsupported_media_type",
        )
    };
    let cases = vec![
        unsupported(
            "form-encoded",
            "application/x-www-form-urlencoded",
            good.clone().into(),
        ),
        unsupported(
            "multipart",
            "multipart/form-data; boundary=x",
            good.clone().into(),
        ),
        unsupported("XML", "application/xml", good.clone().into()),
        unsupported("octet-stream", "application/octet-stream", der_of(&good)),
        unsupported("x-pem-file", "application/x-pem-file", good.clone().into()),
        unsupported("application/jsonx", "application/jsonx", good_json.clone()),
        unsupported("a bare 'json'", "json", good_json.clone()),
        unsupported("wildcard", "*/*", good_json.clone()),
        unsupported("no content type", "", good_json),
    ];
    refused_when_signing(backend, cases).await;
}

async fn json_that_is_not_one_object_with_a_csr_string_is_invalid_request(backend: Backend) {
    let (good, _) = good_request();
    let invalid = |name: &str, body: &[u8]| case(name, json(body), BAD, "invalid_request");
    let cases = vec![
        invalid("empty JSON body", b""),
        invalid("JSON null", b"null"),
        invalid("JSON array", b"[]"),
        invalid("csr is a number", br#"{"csr": 1}"#),
        invalid("csr is null", br#"{"csr": null}"#),
        invalid("csr is an array", br#"{"csr": ["a"]}"#),
        invalid(
            "csr twice",
            format!(r#"{{"csr": {good:?}, "csr": {good:?}}}"#).as_bytes(),
        ),
        invalid(
            "an extra field",
            format!(r#"{{"csr": {good:?}, "ca": true}}"#).as_bytes(),
        ),
        invalid(
            "trailing JSON",
            format!(r#"{{"csr": {good:?}}} {{}}"#).as_bytes(),
        ),
    ];
    refused_when_signing(backend, cases).await;
}

async fn json_with_invalid_utf_8_or_unicode_is_refused(backend: Backend) {
    let (_, good_json) = good_request();
    let cases = vec![
        case(
            "invalid UTF-8 outside a string",
            json(b"{\xff\"csr\": \"x\"}"),
            BAD,
            "invalid_request",
        ),
        case(
            "overlong UTF-8 in a string",
            json(b"{\"csr\": \"\xc0\xaf\"}"),
            BAD,
            "invalid_request",
        ),
        case(
            "lone surrogate escape",
            json(br#"{"csr": "\ud800"}"#),
            BAD,
            "invalid_request",
        ),
        case(
            "UTF-8 byte order mark",
            json(&[b"\xef\xbb\xbf".as_slice(), &good_json].concat()),
            BAD,
            "invalid_request",
        ),
        case(
            "NUL in the CSR string",
            json(br#"{"csr": "\u0000"}"#),
            BAD,
            "invalid_csr",
        ),
    ];
    refused_when_signing(backend, cases).await;
}

async fn a_deep_or_oversized_body_is_refused_streamed_or_not(backend: Backend) {
    let cases = vec![
        // Depth: serde_json stops at 128 levels; 60 000 fit in the 64 KiB limit.
        case(
            "60000 nested arrays",
            json(&nested(60_000)),
            BAD,
            "invalid_request",
        ),
        case(
            "9000 nested objects",
            json(r#"{"csr":"#.repeat(9_000).as_bytes()),
            BAD,
            "invalid_request",
        ),
        case(
            "100000 nested arrays",
            json(&nested(100_000)),
            TOO_LARGE,
            "payload_too_large",
        ),
        // Size.
        case(
            "1 MiB of JSON",
            json(format!(r#"{{"csr": "{}"}}"#, "A".repeat(1 << 20)).as_bytes()),
            TOO_LARGE,
            "payload_too_large",
        ),
        case(
            "1 MiB PEM",
            Body::Raw(PKCS10, pem(&vec![0x30; 800_000]).into_bytes()),
            TOO_LARGE,
            "payload_too_large",
        ),
    ];
    let app = TestApp::spawn(backend).await;
    refuses_each(&app, &app.station, "/v1/certificates", &cases).await;

    // A streamed body without Content-Length meets the same limit.
    let base = app.base.clone();
    let station = app.station.clone();
    let status = tokio::task::spawn_blocking(move || chunked_post(&base, &station, 1 << 20))
        .await
        .unwrap();
    assert_eq!(status, 413, "chunked 1 MiB body");
    assert_eq!(app.ledger_count().await, 0);
}

/// Sends a chunked POST of `total` bytes over a plain TCP stream (no Content-Length, so the
/// limit must hold while streaming) and returns the status code.
fn chunked_post(base: &str, token: &str, total: usize) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /v1/certificates HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/pkcs10\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'A'; 16 * 1024];
    let mut sent = 0;
    while sent < total {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        // The server may answer and close before it all arrives.
        if stream.write_all(&frame).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !response.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

/// The same valid CSR each time, refused because of its Idempotency-Key.
async fn a_malformed_idempotency_key_is_refused_before_anything_is_signed(backend: Backend) {
    let (good, _) = good_request();
    let keys: Vec<(&str, HeaderValue)> = vec![
        ("empty Idempotency-Key", HeaderValue::from_static("")),
        (
            "Idempotency-Key of 256 characters",
            HeaderValue::from_str(&"k".repeat(256)).unwrap(),
        ),
        (
            "Idempotency-Key with a space",
            HeaderValue::from_static("key one"),
        ),
        (
            "Idempotency-Key with a tab",
            HeaderValue::from_static("key\tone"),
        ),
        (
            "non-ASCII Idempotency-Key",
            HeaderValue::from_bytes("clé".as_bytes()).unwrap(),
        ),
    ];
    let app = TestApp::spawn(backend).await;
    for (name, key) in keys {
        let answer = send(
            &app,
            &app.station,
            "/v1/certificates",
            &json_csr(&good),
            Some(key),
        )
        .await;
        assert_problem(name, &answer, BAD, "invalid_idempotency_key");
    }
    assert_eq!(app.ledger_count().await, 0);
    assert_eq!(count_rows(&app.store, "idempotency_keys").await, 0);
}

async fn the_admin_token_route_reads_hostile_bodies_by_the_same_rules(backend: Backend) {
    let cases = vec![
        case(
            "token: 60000 nested arrays",
            json(&nested(60_000)),
            BAD,
            "invalid_request",
        ),
        case(
            "token: invalid UTF-8",
            json(b"{\"name\": \"\xff\", \"role\": \"station\"}"),
            BAD,
            "invalid_request",
        ),
        case(
            "token: text/plain",
            Body::Raw(
                "text/plain",
                br#"{"name": "x", "role": "station"}"#.to_vec(),
            ),
            MEDIA,
            "unsupported_media_type",
        ),
        case(
            "token: unknown role",
            json(br#"{"name": "x", "role": "root"}"#),
            BAD,
            "invalid_request",
        ),
        case(
            "token: NUL in the name",
            json(br#"{"name": "a\u0000b", "role": "station"}"#),
            UNPROCESSABLE,
            "invalid_token_name",
        ),
        case(
            "token: 1 MiB name",
            json(
                format!(
                    r#"{{"name": "{}", "role": "station"}}"#,
                    "n".repeat(1 << 20)
                )
                .as_bytes(),
            ),
            TOO_LARGE,
            "payload_too_large",
        ),
    ];
    let app = TestApp::spawn(backend).await;
    refuses_each(&app, &app.admin, "/v1/admin/tokens", &cases).await;
}

/// With a body limit far above the default, the parsers themselves meet the huge and deep
/// inputs: they still answer 4xx, and quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_deep_bodies_under_a_raised_limit_are_refused_by_the_parsers() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.body_limit_bytes = 4 << 20;
    })
    .await;
    let json = |bytes: Vec<u8>| Body::Raw("application/json", bytes);
    let cases = vec![
        case(
            "100000 nested arrays",
            json(nested(100_000)),
            BAD,
            "invalid_request",
        ),
        case(
            "1000000 nested arrays",
            json(nested(1_000_000)),
            BAD,
            "invalid_request",
        ),
        case(
            "1 MiB CSR string of garbage",
            json(format!(r#"{{"csr": "{}"}}"#, "A".repeat(1 << 20)).into_bytes()),
            BAD,
            "invalid_csr",
        ),
        case(
            "1 MiB PEM of garbage DER",
            Body::Raw(PKCS10, pem(&filler(800_000, 5)).into_bytes()),
            BAD,
            "invalid_csr",
        ),
        case(
            "3 MiB DER claiming to be a sequence",
            Body::Raw(
                PKCS10,
                [vec![0x30, 0x83, 0x30, 0x00, 0x00], vec![0x30; 3 << 20]].concat(),
            ),
            BAD,
            "invalid_csr",
        ),
        case(
            "RSA with a 16-million-bit modulus",
            der_body(unsigned_csr(
                &rsa_spki(&fake_modulus(16_000_000), &[1, 0, 1]),
                OID_SHA256_RSA,
                16,
            )),
            UNPROCESSABLE,
            "unsupported_key",
        ),
        case(
            "50000 OU RDNs",
            der_body(subject_csr(&flat(
                [printable(OID_C, "JP"), utf8(OID_CN, "Many-Rdns")]
                    .into_iter()
                    .chain((0..50_000).map(|i| utf8(OID_OU, &format!("u{i}"))))
                    .collect(),
            ))),
            UNPROCESSABLE,
            "subject_attribute_not_allowed",
        ),
    ];
    for c in cases {
        let started = Instant::now();
        let answer = send(&app, &app.station, "/v1/certificates", &c.body, None).await;
        assert_problem(&c.name, &answer, c.status, c.code);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}: took {:?}",
            c.name,
            started.elapsed()
        );
    }
    assert_eq!(app.ledger_count().await, 0);
}
