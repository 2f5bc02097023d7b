//! Secrets stay out of the logs: the real binary serves a full session (tokens of every role,
//! signing with and without an Idempotency-Key, error paths, reads, a revocation) at debug
//! level, and its stderr is searched for every secret the session used. The bootstrap admin
//! token is printed once by design; that banner block, and only it, is excluded from the search.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::StatusCode;

use crate::common::binary::{Service, factory_ca};
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pretty_debug_logs_of_a_full_session_on_sqlite_hold_no_secret() {
    full_session_leaks_nothing(LogFormat::Pretty, Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_debug_logs_of_a_full_session_on_postgres_hold_no_secret() {
    full_session_leaks_nothing(LogFormat::Json, Backend::Postgres).await;
}

/// The search itself finds a fragment of a token, of its hash and of a key, wherever it sits
/// in a line: a test that could not fail would prove nothing.
#[test]
fn the_leak_search_finds_fragments() {
    let token = "fca_LdOt6He_64J9IGG42f75un5SNdUKrCB5F5QDqu_80GA";
    let secrets = token_secrets("station", token);
    let hash = factory_ca::services::tokens::token_hash(token);
    for leaked in [
        format!("INFO auth: token={token}"),
        "x=6He_64J9IGG42f75un5S y".to_owned(),
        format!("hash {}", &hash[10..42]),
    ] {
        let found = std::panic::catch_unwind(|| assert_no_secret("log", &leaked, &secrets));
        assert!(found.is_err(), "not found in {leaked:?}");
    }
    assert_no_secret("log", "fca_ and 6He_64J9 are too short to count", &secrets);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LogFormat {
    Pretty,
    Json,
}

const BANNER_FIRST_LINE: &str = "First start: an admin token was created";
const BANNER_LAST_LINE: &str = "or on this machine: factory-ca token create";

/// `factory-ca serve` at debug level, in the test's own directory (no config file there).
fn start_server(dir: &Path, format: LogFormat, database_url: Option<&str>) -> Service {
    let mut cmd = factory_ca(&dir.join("data"));
    cmd.current_dir(dir)
        .env("FACTORY_CA_SERVER__SHUTDOWN_GRACE_SECS", "5")
        .env("FACTORY_CA_LOG__LEVEL", "debug");
    if format == LogFormat::Json {
        cmd.env("FACTORY_CA_LOG__FORMAT", "json");
    }
    if let Some(url) = database_url {
        cmd.env("FACTORY_CA_DATABASE__URL", url);
    }
    Service::start(cmd)
}

/// Waits until `/healthz` answers and the banner with the admin token has been printed, and
/// returns that token.
async fn banner_admin_token(server: &mut Service) -> String {
    server.ready().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(token) = banner_token(&server.stderr_text()) {
            return token;
        }
        if let Some(status) = server.exited() {
            panic!(
                "factory-ca exited early ({status}): {}",
                server.stderr_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "factory-ca printed no banner: {}",
            server.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The token printed under "shown only this once", if the banner is complete.
fn banner_token(stderr: &str) -> Option<String> {
    let (_, after) = stderr.split_once("shown only this once:")?;
    after.contains(BANNER_LAST_LINE).then_some(())?;
    after
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .filter(|l| l.starts_with("fca_"))
        .map(str::to_owned)
}

/// Splits stderr into (everything but the banner, the banner), the banner being the lines from
/// the "First start" line through the "or on this machine" line.
fn without_banner(stderr: &str) -> (String, String) {
    let start = stderr
        .find(BANNER_FIRST_LINE)
        .expect("the banner is printed");
    let start = stderr[..start].rfind('\n').map_or(0, |i| i + 1);
    let last = start + stderr[start..].find(BANNER_LAST_LINE).unwrap();
    let end = last
        + stderr[last..]
            .find('\n')
            .map_or(stderr.len() - last, |i| i + 1);
    (
        format!("{}{}", &stderr[..start], &stderr[end..]),
        stderr[start..end].to_owned(),
    )
}

/// Every string whose appearance in a log would leak `secret`: the whole value and each
/// `window`-character slice of it.
fn leak_patterns(secret: &str, window: usize) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    let mut patterns = vec![secret.to_owned()];
    if chars.len() > window {
        patterns.extend(chars.windows(window).map(|w| w.iter().collect::<String>()));
    }
    patterns
}

struct Secret {
    what: String,
    patterns: Vec<String>,
}

fn token_secrets(what: &str, token: &str) -> Vec<Secret> {
    let hash = factory_ca::services::tokens::token_hash(token);
    vec![
        Secret {
            what: format!("{what} token"),
            // The token, and any 16 characters of its random part.
            patterns: [
                vec![token.to_owned()],
                leak_patterns(token.trim_start_matches("fca_"), 16),
            ]
            .concat(),
        },
        Secret {
            what: format!("{what} token hash"),
            patterns: leak_patterns(&hash, 32),
        },
    ]
}

/// A private key in PEM: the whole text, any 32 characters of its base64 body, and any 32
/// bytes of the key DER in hex.
/// `text` with every PEM certificate block cut out.
fn without_certificates(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        match rest[start..].find(END) {
            Some(end) => {
                out.push_str(&rest[..start]);
                rest = &rest[start + end + END.len()..];
            }
            None => break, // not a certificate block: keep it, and search it
        }
    }
    out.push_str(rest);
    out
}

fn pem_secret(what: &str, pem_text: &str) -> Secret {
    let body: String = pem_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .expect("a PEM key");
    Secret {
        what: what.to_owned(),
        patterns: [
            vec![pem_text.trim().to_owned()],
            leak_patterns(&body, 32),
            leak_patterns(&hex::encode(der), 64),
        ]
        .concat(),
    }
}

/// Every CA key file under `data_dir/keys` (there must be `expected` of them), and the ledger
/// audit key beside them.
fn ca_key_secrets(data_dir: &Path, expected: usize) -> Vec<Secret> {
    let audit = data_dir.join(factory_ca::keys::AUDIT_KEY_FILE);
    let keys: Vec<PathBuf> = std::fs::read_dir(data_dir.join("keys"))
        .expect("data_dir/keys exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".key.pem") && *p != audit)
        .collect();
    assert_eq!(keys.len(), expected, "CA key files: {keys:?}");
    let audit_text = std::fs::read_to_string(&audit).expect("the ledger audit key exists");
    keys.iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            pem_secret(&format!("CA key {}", path.display()), &text)
        })
        .chain([pem_secret("ledger audit key", &audit_text)])
        .collect()
}

/// A self-signed CA that the import checks accept, and its key, both PEM.
fn ca_for_import(common_name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Asserts that `text` holds none of `secrets`.
fn assert_no_secret(place: &str, text: &str, secrets: &[Secret]) {
    for secret in secrets {
        if let Some(p) = secret.patterns.iter().find(|p| text.contains(p.as_str())) {
            let at = text.find(p.as_str()).unwrap();
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!(
                "{place} contains the {} ({p:?}) in: {}",
                secret.what,
                &text[line_start..line_end]
            );
        }
    }
}

/// The database URL with a password that trust authentication never asks for, when the
/// configured server URL has none: the password then must not appear in the logs either.
fn with_unused_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    match rest.split_once('@') {
        Some((user, host)) if !user.contains(':') => {
            let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
            (
                format!("{scheme}://{user}:{password}@{host}"),
                Some(password),
            )
        }
        _ => (url.to_owned(), None),
    }
}

/// One response of the session: what was asked, its status and body.
struct Seen {
    what: String,
    status: StatusCode,
    body: String,
}

struct Session {
    client: reqwest::Client,
    base: String,
    seen: Vec<Seen>,
}

impl Session {
    async fn call(
        &mut self,
        what: &str,
        request: reqwest::RequestBuilder,
        expected: StatusCode,
    ) -> serde_json::Value {
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let body = response.text().await.expect("body");
        assert_eq!(status, expected, "{what}: {body}");
        let value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        self.seen.push(Seen {
            what: what.to_owned(),
            status,
            body,
        });
        value
    }

    fn post(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    async fn create_token(&mut self, admin: &str, name: &str, role: &str) -> String {
        let request = self
            .post("/v1/admin/tokens", admin)
            .json(&serde_json::json!({ "name": name, "role": role }));
        let body = self
            .call(
                &format!("create {role} token"),
                request,
                StatusCode::CREATED,
            )
            .await;
        body["token"].as_str().expect("a new token").to_owned()
    }
}

async fn full_session_leaks_nothing(format: LogFormat, backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, db_password) = match backend {
        Backend::Sqlite => (None, None),
        Backend::Postgres => {
            let (url, password) = with_unused_password(&fresh_pg_database().await);
            (Some(url), password)
        }
    };
    let mut server = start_server(dir.path(), format, database_url.as_deref());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let admin = banner_admin_token(&mut server).await;
    let mut s = Session {
        client: client.clone(),
        base: server.base(),
        seen: Vec::new(),
    };

    // Tokens of every role, over the API.
    let station = s.create_token(&admin, "line-1", "station").await;
    let doomed = s.create_token(&admin, "line-2", "station").await;
    let viewer = s.create_token(&admin, "dash-1", "viewer").await;
    // Well-formed (32 random bytes, like a real one), never issued.
    let random: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.as_bytes().to_vec())
        .collect();
    let unknown = format!(
        "fca_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    );
    assert_eq!(unknown.len(), 47);

    // Signing: JSON, raw DER with an Idempotency-Key (and its replay), another station.
    let first = s
        .call(
            "sign (JSON)",
            s.post("/v1/certificates", &station)
                .json(&serde_json::json!({ "csr": csr("Secret-1", "JP").pem })),
            StatusCode::CREATED,
        )
        .await;
    let serial = first["serial"].as_str().unwrap().to_owned();
    let der = ::pem::parse(csr("Secret-2", "JP").pem)
        .unwrap()
        .into_contents();
    let key = format!("idem-{}", uuid::Uuid::new_v4());
    for what in ["sign (DER, Idempotency-Key)", "sign (replay)"] {
        s.call(
            what,
            s.post("/v1/certificates", &station)
                .header("Content-Type", "application/pkcs10")
                .header("Idempotency-Key", &key)
                .body(der.clone()),
            StatusCode::CREATED,
        )
        .await;
    }
    s.call(
        "sign (second station)",
        s.post("/v1/certificates", &doomed)
            .json(&serde_json::json!({ "csr": csr("Secret-3", "JP").pem })),
        StatusCode::CREATED,
    )
    .await;

    // Error paths.
    s.call(
        "revoke a token",
        s.client
            .delete(format!("{}/v1/admin/tokens/line-2", s.base))
            .bearer_auth(&admin),
        StatusCode::NO_CONTENT,
    )
    .await;
    let csr_body = serde_json::json!({ "csr": csr("Secret-4", "JP").pem });
    s.call(
        "sign with the revoked token",
        s.post("/v1/certificates", &doomed).json(&csr_body),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    s.call(
        "sign with an unknown token",
        s.post("/v1/certificates", &unknown).json(&csr_body),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    s.call(
        "sign with a token one character too long",
        s.post("/v1/certificates", &format!("{station}x"))
            .json(&csr_body),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    s.call(
        "a token under the wrong scheme",
        s.client
            .post(format!("{}/v1/certificates", s.base))
            .header("Authorization", format!("Token {station}"))
            .json(&csr_body),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    s.call(
        "sign with the viewer token",
        s.post("/v1/certificates", &viewer).json(&csr_body),
        StatusCode::FORBIDDEN,
    )
    .await;
    s.call(
        "sign a bad CSR",
        s.post("/v1/certificates", &station)
            .json(&serde_json::json!({ "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n" })),
        StatusCode::BAD_REQUEST,
    )
    .await;
    s.call(
        "sign a thing name twice",
        s.post("/v1/certificates", &station)
            .json(&serde_json::json!({ "csr": csr("Secret-1", "JP").pem })),
        StatusCode::CONFLICT,
    )
    .await;
    s.call(
        "read the ledger with the station token",
        s.get("/v1/certificates", &station),
        StatusCode::FORBIDDEN,
    )
    .await;
    s.call(
        "a token in the query string",
        s.client
            .get(format!("{}/v1/certificates?token={viewer}", s.base))
            .bearer_auth(&viewer),
        StatusCode::BAD_REQUEST,
    )
    .await;
    s.call(
        "create a token with the station token",
        s.post("/v1/admin/tokens", &station)
            .json(&serde_json::json!({ "name": "x", "role": "admin" })),
        StatusCode::FORBIDDEN,
    )
    .await;

    // A CA imported over the API, key and all; and one refused because the key does not match.
    let (ca_pem, ca_key_pem) = ca_for_import("Imported CA");
    let (_, other_key_pem) = ca_for_import("Other CA");
    s.call(
        "import a CA",
        s.post("/v1/admin/cas/import", &admin)
            .json(&serde_json::json!({
                "certificate_pem": ca_pem, "private_key_pem": ca_key_pem, "activate": false
            })),
        StatusCode::CREATED,
    )
    .await;
    let (mismatched_pem, _) = ca_for_import("Mismatched CA");
    s.call(
        "import a CA with the wrong key",
        s.post("/v1/admin/cas/import", &admin)
            .json(&serde_json::json!({
                "certificate_pem": mismatched_pem, "private_key_pem": other_key_pem
            })),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    // Reads.
    let list = s
        .call(
            "list certificates",
            s.get("/v1/certificates", &viewer),
            StatusCode::OK,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    s.call(
        "get a certificate",
        s.get(&format!("/v1/certificates/{serial}"), &viewer),
        StatusCode::OK,
    )
    .await;
    s.call(
        "list tokens",
        s.get("/v1/admin/tokens", &admin),
        StatusCode::OK,
    )
    .await;
    s.call(
        "audit log",
        s.get("/v1/admin/audit", &admin),
        StatusCode::OK,
    )
    .await;
    s.call("issuing CA", s.get("/v1/ca", &station), StatusCode::OK)
        .await;

    // Revocation.
    let revoke = format!("/v1/admin/certificates/{serial}/revoke");
    s.call(
        "revoke a certificate",
        s.post(&revoke, &admin)
            .json(&serde_json::json!({ "reason": "key_compromise" })),
        StatusCode::OK,
    )
    .await;
    s.call(
        "revoke it again",
        s.post(&revoke, &admin)
            .json(&serde_json::json!({ "reason": "key_compromise" })),
        StatusCode::CONFLICT,
    )
    .await;
    s.call(
        "list revoked certificates",
        s.get("/v1/certificates?status=revoked", &viewer),
        StatusCode::OK,
    )
    .await;

    let data_dir = dir.path().join("data");
    let (stderr, stdout) = server.stop().await;

    // The banner: printed once, and the only place the admin token appears.
    assert_eq!(
        stderr.matches("shown only this once").count(),
        1,
        "one banner"
    );
    let (logs, banner) = without_banner(&stderr);
    assert!(banner.contains(&admin), "the banner holds the admin token");
    assert_eq!(stderr.matches(admin.as_str()).count(), 1);

    let mut secrets = Vec::new();
    for (what, token) in [
        ("admin", &admin),
        ("station", &station),
        ("revoked station", &doomed),
        ("viewer", &viewer),
        ("unknown", &unknown),
    ] {
        secrets.extend(token_secrets(what, token));
    }
    secrets.extend(ca_key_secrets(&data_dir, 2));
    for (what, key_pem) in [
        ("imported CA key", &ca_key_pem),
        ("refused CA key", &other_key_pem),
    ] {
        secrets.push(pem_secret(what, key_pem));
    }
    if let (Some(url), Some(password)) = (&database_url, &db_password) {
        secrets.push(Secret {
            what: "database password".into(),
            patterns: vec![password.clone(), url.clone()],
        });
    }
    assert_no_secret("stderr (without the banner)", &logs, &secrets);
    // No response returned a CA key either, the refused import's error included.
    let keys: Vec<&Secret> = secrets
        .iter()
        .filter(|s| s.what.contains("CA key"))
        .collect();
    assert_eq!(keys.len(), 4);
    for seen in &s.seen {
        // Certificates are public, and a CA certificate holds the same public key as the
        // PKCS#8 key file: a window of it may match by base64 alignment alone.
        let body = without_certificates(&seen.body);
        for key in &keys {
            assert!(
                !key.patterns.iter().any(|p| body.contains(p.as_str())),
                "{} returned the {}: {}",
                seen.what,
                key.what,
                seen.body
            );
        }
    }
    assert_no_secret("stdout", &stdout, &secrets);
    // The banner shows the admin token and nothing else secret.
    let others: Vec<Secret> = secrets
        .into_iter()
        .filter(|s| s.what != "admin token")
        .collect();
    assert_no_secret("the banner", &banner, &others);

    // The logs are real: debug level, the session is in them, and JSON when asked.
    for expected in ["certificate issued", "certificate revoked", "DEBUG"] {
        assert!(
            logs.contains(expected),
            "the logs mention {expected:?}:\n{logs}"
        );
    }
    if format == LogFormat::Json {
        for line in logs.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "not a JSON log line: {line}"
            );
        }
    }

    // No response carried a token, except the one that created it; errors carry none at all.
    let tokens = [&admin, &station, &doomed, &viewer, &unknown];
    for seen in &s.seen {
        let returned = serde_json::from_str::<serde_json::Value>(&seen.body)
            .ok()
            .filter(|_| seen.what.starts_with("create ") && seen.status == StatusCode::CREATED)
            .and_then(|v| v["token"].as_str().map(str::to_owned));
        for token in tokens {
            let hash = factory_ca::services::tokens::token_hash(token);
            let secret = token.trim_start_matches("fca_");
            let leaked = seen.body.contains(&hash)
                || (seen.body.contains(secret) && returned.as_deref() != Some(token.as_str()));
            assert!(
                !leaked,
                "{} ({}) returned a token or its hash: {}",
                seen.what, seen.status, seen.body
            );
        }
        if !seen.status.is_success() {
            assert!(
                !seen.body.contains("fca_"),
                "{}: an error body mentions a token: {}",
                seen.what,
                seen.body
            );
        }
    }
}
