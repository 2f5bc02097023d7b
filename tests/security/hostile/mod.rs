//! Hostile input, generated here rather than checked in: every CSR and request in the corpus
//! gets its documented 4xx code, never a 5xx, never a certificate, and leaves the ledger as it
//! was; a CSR that asks for more than the profile gives (CA:TRUE, pathLen, SANs, serverAuth, ...)
//! gets a plain CA:FALSE clientAuth certificate; and a property test feeds arbitrary bytes and
//! mutated CSRs through parse -> policy -> sign.
//!
//! The corpus is a set of tables, one per kind of hostility: PEM framing, DER framing,
//! elements PKCS#10 has no room for, non-DER encodings, signatures, keys, the subject, and
//! the HTTP request around the CSR. Each table runs on SQLite and PostgreSQL.
//!
//! `tests/routes/certificates/bad_input.rs` holds the first, smaller table; this corpus goes
//! beyond it and repeats a few of its cases where a complete list reads better.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use factory_ca::store::Store;
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use x509_parser::prelude::*;

use crate::common::*;

mod asn1;
mod der_framing;
mod fuzz;
mod keys;
mod pem;
mod profile;
mod requests;
mod signatures;
mod subject;

use asn1::*;

#[derive(Clone)]
enum Body {
    Json(serde_json::Value),
    /// Raw bytes with a Content-Type ("" sends none).
    Raw(&'static str, Vec<u8>),
}

/// One row of a table: what is sent, and the problem it must get.
#[derive(Clone)]
struct Case {
    name: String,
    body: Body,
    status: StatusCode,
    code: &'static str,
}

fn case(name: impl Into<String>, body: Body, status: StatusCode, code: &'static str) -> Case {
    Case {
        name: name.into(),
        body,
        status,
        code,
    }
}

fn json_csr(pem_text: &str) -> Body {
    Body::Json(serde_json::json!({ "csr": pem_text }))
}

fn der_body(der: Vec<u8>) -> Body {
    Body::Raw(PKCS10, der)
}

const BAD: StatusCode = StatusCode::BAD_REQUEST;
const UNPROCESSABLE: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;

/// A valid request to take apart: its key, DER, PEM, and the three parts of the DER.
struct Good {
    key: rcgen::KeyPair,
    der: Vec<u8>,
    pem: String,
    info: Vec<u8>,
    algorithm: Vec<u8>,
    signature: Vec<u8>,
}

fn good() -> Good {
    let key = p256();
    let der = signed_csr(&key, &with_cn(utf8(OID_CN, "Good-1")), &[]);
    let (info, algorithm, signature) = split_csr(&der);
    Good {
        pem: pem(&der),
        key,
        der,
        info,
        algorithm,
        signature,
    }
}

/// A table of CSRs, built once per test process (both backends share it). Building runs
/// openssl and makes keys, so it runs off the async runtime.
struct Table {
    cell: OnceLock<Vec<Case>>,
    build: fn() -> Vec<Case>,
}

impl Table {
    const fn new(build: fn() -> Vec<Case>) -> Table {
        Table {
            cell: OnceLock::new(),
            build,
        }
    }

    fn cases(&'static self) -> &'static [Case] {
        self.cell.get_or_init(self.build)
    }

    async fn cases_async(&'static self) -> &'static [Case] {
        tokio::task::spawn_blocking(|| self.cases())
            .await
            .expect("the table builds")
    }
}

/// Every table of hostile CSRs.
const CSR_TABLES: [&Table; 12] = [
    &pem::NOT_ONE_REQUEST_BLOCK,
    &der_framing::NOT_ONE_DER_ELEMENT,
    &der_framing::ELEMENTS_PKCS10_HAS_NO_ROOM_FOR,
    &der_framing::NOT_DER_ENCODED,
    &signatures::NO_PROOF_OF_POSSESSION,
    &keys::NOT_ACCEPTED_BY_AWS_IOT,
    &subject::NO_THING_NAME,
    &subject::NOT_ONE_COMMON_NAME,
    &subject::NO_ASSIGNED_COUNTRY,
    &subject::NOT_ONE_COUNTRY,
    &subject::ATTRIBUTES_NOT_ALLOWED,
    &subject::BAD_ATTRIBUTE_VALUES,
];

/// The tables split what was one list of 122 CSRs: none was lost on the way, and no name is
/// used twice.
#[test]
fn the_hostile_csr_tables_hold_all_122_cases_under_distinct_names() {
    let names: Vec<&str> = CSR_TABLES
        .iter()
        .flat_map(|table| table.cases())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names.len(), 122);
    let distinct: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(distinct.len(), names.len(), "a name is used twice");
}

/// Sends every CSR of `table` as the station: each gets its problem, and nothing is recorded.
async fn refuses_each_csr(backend: Backend, table: &'static Table) {
    let cases = table.cases_async().await;
    let app = TestApp::spawn(backend).await;
    refuses_each(&app, &app.station, "/v1/certificates", cases).await;
    assert_eq!(count_rows(&app.store, "thing_claims").await, 0);
}

/// Sends every case to `path` with `token`: each gets its problem (all are tried, then every
/// wrong answer is reported), and the ledger, the idempotency keys and the tokens are as they
/// were.
async fn refuses_each(app: &TestApp, token: &str, path: &str, cases: &[Case]) {
    let rows = app.ledger_count().await;
    let keys = count_rows(&app.store, "idempotency_keys").await;
    let tokens = count_rows(&app.store, "api_tokens").await;
    let mut wrong = Vec::new();
    for c in cases {
        let answer = send(app, token, path, &c.body, None).await;
        if let Err(e) = check_problem(&c.name, &answer, c.status, c.code) {
            wrong.push(e);
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
    assert_eq!(
        app.ledger_count().await,
        rows,
        "a hostile request left a row"
    );
    assert_eq!(count_rows(&app.store, "idempotency_keys").await, keys);
    assert_eq!(
        count_rows(&app.store, "api_tokens").await,
        tokens,
        "a hostile request made a token"
    );
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

async fn send(
    app: &TestApp,
    token: &str,
    path: &str,
    body: &Body,
    idempotency_key: Option<HeaderValue>,
) -> Answer {
    // A client per request: the server closes a connection whose oversized body it did not
    // read, and a pooled connection would race with that close.
    let mut request = reqwest::Client::new()
        .post(app.url(path))
        .bearer_auth(token);
    request = match body {
        Body::Json(v) => request.json(v),
        Body::Raw("", bytes) => request.body(bytes.clone()),
        Body::Raw(content_type, bytes) => request
            .header("Content-Type", *content_type)
            .body(bytes.clone()),
    };
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let body = response.bytes().await.expect("body").to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

/// The answer is the documented problem, and carries no certificate.
fn assert_problem(name: &str, answer: &Answer, status: StatusCode, code: &str) {
    if let Err(e) = check_problem(name, answer, status, code) {
        panic!("{e}");
    }
}

fn check_problem(
    name: &str,
    answer: &Answer,
    status: StatusCode,
    code: &str,
) -> Result<(), String> {
    let text = String::from_utf8_lossy(&answer.body);
    let short: String = text.chars().take(300).collect();
    if answer.status.is_server_error() {
        return Err(format!("{name}: got a 5xx: {} {short}", answer.status));
    }
    if answer.status != status {
        return Err(format!(
            "{name}: expected {status} {code}, got {}: {short}",
            answer.status
        ));
    }
    if answer.content_type != "application/problem+json" {
        return Err(format!("{name}: content type {}", answer.content_type));
    }
    let problem: serde_json::Value =
        serde_json::from_slice(&answer.body).map_err(|e| format!("{name}: {e}: {short}"))?;
    if problem["code"] != code || problem["detail"].as_str().unwrap_or_default().is_empty() {
        return Err(format!("{name}: expected code {code}, got {problem}"));
    }
    if text.contains("BEGIN CERTIFICATE") {
        return Err(format!("{name}: a certificate in an error: {short}"));
    }
    Ok(())
}

async fn count_rows(store: &Store, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    let (n,): (i64,) = match store {
        Store::Postgres(pool) => sqlx::query_as(&sql).fetch_one(pool).await.unwrap(),
        Store::Sqlite(pool) => sqlx::query_as(&sql).fetch_one(pool).await.unwrap(),
    };
    n
}

/// (OID, tag, value bytes) of each attribute of a Name, in order.
fn attributes(name: &X509Name<'_>) -> Vec<(String, u8, Vec<u8>)> {
    name.iter_rdn()
        .flat_map(|rdn| rdn.iter())
        .map(|a| {
            (
                a.attr_type().to_id_string(),
                a.attr_value().tag().0 as u8,
                a.attr_value().data.to_vec(),
            )
        })
        .collect()
}

const PROFILE_EXTENSIONS: [&str; 5] = [
    "2.5.29.14", // subjectKeyIdentifier
    "2.5.29.15", // keyUsage
    "2.5.29.19", // basicConstraints
    "2.5.29.35", // authorityKeyIdentifier
    "2.5.29.37", // extendedKeyUsage
];
