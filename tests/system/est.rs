//! EST (RFC 7030) with the tools a technician has: the quick start of docs/est.md run as a
//! shell session (openssl makes the key and CSR, curl enrolls with HTTP Basic, openssl reads
//! the PKCS#7 answers and verifies the chain), and Python `cryptography`
//! (`pkcs7.load_der_pkcs7_certificates`) parsing the same answers independently.

use std::process::Command;

use factory_ca::config::ClientAuth;

use crate::common::{Backend, write};
use crate::tls::TlsApp;

/// The Python with `cryptography` (the moto venv of scripts/test.sh).
fn python() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    std::env::var("MOTO_PYTHON").unwrap_or_else(|_| format!("{root}/.venv/bin/python"))
}

const SESSION: &str = r#"
set -eu
cd "$WORK"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout dev.key \
  -subj "/C=JP/CN=$THING" -outform DER 2>/dev/null | base64 > dev.b64
curl --silent --show-error --fail-with-body --max-time 30 --cacert "$SERVER_CA" \
  -u "line-1:$STATION_TOKEN" -H 'Content-Type: application/pkcs10' \
  --data-binary @dev.b64 "$BASE/.well-known/est/simpleenroll" > dev.p7.b64
base64 -d dev.p7.b64 > dev.p7.der
openssl pkcs7 -inform DER -in dev.p7.der -print_certs > dev.pem
curl --silent --show-error --fail-with-body --max-time 30 --cacert "$SERVER_CA" \
  "$BASE/.well-known/est/cacerts" > ca.p7.b64
base64 -d ca.p7.b64 > ca.p7.der
openssl pkcs7 -inform DER -in ca.p7.der -print_certs > ca.pem
openssl verify -x509_strict -purpose sslclient -CAfile ca.pem dev.pem
curl --silent --show-error --fail-with-body --max-time 30 --cacert "$SERVER_CA" \
  "$BASE/.well-known/est/csrattrs" | base64 -d > csrattrs.der
openssl asn1parse -inform DER -in csrattrs.der
"#;

const PYTHON_CHECK: &str = r#"
import sys
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
work, thing = sys.argv[1], sys.argv[2]
device = pkcs7.load_der_pkcs7_certificates(open(f"{work}/dev.p7.der", "rb").read())
cas = pkcs7.load_der_pkcs7_certificates(open(f"{work}/ca.p7.der", "rb").read())
assert len(device) == 1 and len(cas) == 1, (device, cas)
cn = device[0].subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
assert cn == thing, cn
assert device[0].issuer == cas[0].subject
device[0].verify_directly_issued_by(cas[0])
print("python ok", cn)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_est_quick_start_enrolls_and_openssl_and_python_read_the_answers() {
    let app = TlsApp::spawn_with(Backend::Sqlite, Some(ClientAuth::Optional), |_, _| {}).await;
    let work = app.pki.dir.join("est");
    std::fs::create_dir_all(&work).unwrap();
    let script = write(&work, "session.sh", SESSION);
    let (base, server_ca, token) = (
        app.url(""),
        app.pki.server_ca_path.clone(),
        app.station.clone(),
    );
    let session_work = work.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .arg(&script)
            .env("WORK", &session_work)
            .env("THING", "Thing-0001")
            .env("BASE", base)
            .env("SERVER_CA", server_ca)
            .env("STATION_TOKEN", token)
            .output()
    })
    .await
    .unwrap()
    .expect("sh runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "the EST session failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("dev.pem: OK"), "{stdout}");
    // CsrAttrs: the OIDs of C and CN (the default policy requires a country).
    assert!(stdout.contains(":countryName"), "{stdout}");
    assert!(stdout.contains(":commonName"), "{stdout}");

    let python = python();
    let checked = Command::new(&python)
        .arg("-c")
        .arg(PYTHON_CHECK)
        .arg(&work)
        .arg("Thing-0001")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} (scripts/test.sh installs it): {e}"));
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(String::from_utf8_lossy(&checked.stdout).contains("python ok Thing-0001"));
}

/// EST issuance over TLS beside JSON issuance over TLS, on the same server and client: the
/// figures of docs/benchmarks.md ("EST beside the JSON API"). CSRs are made before the clock
/// starts; `CONCURRENCY` tasks share one keep-alive client. Bounded: `PER_CHANNEL` requests per
/// channel and a 120 s limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn est_and_json_issuance_over_tls_side_by_side() {
    use base64::Engine;
    use std::time::{Duration, Instant};

    const PER_CHANNEL: usize = 400;
    const CONCURRENCY: usize = 8;
    let app = TlsApp::spawn_with(Backend::Sqlite, None, |_, s| {
        s.server.station_rate_per_sec = 0.0;
    })
    .await;
    let config = app.pki.rustls_config_with(None, &[&rustls::version::TLS13]);
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut report = Vec::new();
    for channel in ["json", "est"] {
        let csrs: Vec<String> = (0..PER_CHANNEL)
            .map(|i| crate::common::csr(&format!("Bench-{channel}-{i}"), "JP").pem)
            .collect();
        let requests: Vec<reqwest::RequestBuilder> = csrs
            .iter()
            .map(|pem| match channel {
                "json" => client
                    .post(app.url("/v1/certificates"))
                    .bearer_auth(&app.station)
                    .json(&serde_json::json!({ "csr": pem })),
                _ => client
                    .post(app.url("/.well-known/est/simpleenroll"))
                    .basic_auth("bench", Some(&app.station))
                    .header("content-type", "application/pkcs10")
                    .body(
                        base64::engine::general_purpose::STANDARD
                            .encode(crate::common::der_of(pem)),
                    ),
            })
            .collect();
        let queue = std::sync::Arc::new(std::sync::Mutex::new(requests));
        let started = Instant::now();
        let deadline = started + Duration::from_secs(120);
        let mut tasks = Vec::new();
        for _ in 0..CONCURRENCY {
            let queue = queue.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let Some(request) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let sent = Instant::now();
                    let response = request.send().await.expect("request");
                    assert!(response.status().is_success(), "{}", response.status());
                    response.bytes().await.unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed();
        assert_eq!(
            latencies.len(),
            PER_CHANNEL,
            "{channel}: all within the limit"
        );
        latencies.sort();
        let p =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        report.push(format!(
            "{channel}: {PER_CHANNEL} certificates in {:.2} s = {:.0}/s; p50 {:.1} ms, p99 {:.1} ms",
            elapsed.as_secs_f64(),
            PER_CHANNEL as f64 / elapsed.as_secs_f64(),
            p(0.5).as_secs_f64() * 1e3,
            p(0.99).as_secs_f64() * 1e3,
        ));
    }
    report.push(renewals(&app, &client, PER_CHANNEL, CONCURRENCY).await);
    println!("{}", report.join("\n"));
}

/// The renewal phase of the benchmark: `count` devices, enrolled (EST) before the clock starts,
/// each renew once (`simplereenroll`, same key and subject) over a TLS connection of its own
/// with its certificate as the client certificate: a full handshake with client certificate
/// verification per renewal, as devices in the field do. `concurrency` tasks; 120 s limit.
async fn renewals(
    app: &TlsApp,
    client: &reqwest::Client,
    count: usize,
    concurrency: usize,
) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use der::{Decode, Encode};
    use std::time::{Duration, Instant};

    let mut devices = Vec::with_capacity(count);
    for i in 0..count {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "JP");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("Bench-renew-{i}"));
        let body = STANDARD.encode(params.serialize_request(&key).unwrap().der());
        let response = client
            .post(app.url("/.well-known/est/simpleenroll"))
            .basic_auth("bench", Some(&app.station))
            .header("content-type", "application/pkcs10")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let text: String = response.text().await.unwrap().split_whitespace().collect();
        let info =
            cms::content_info::ContentInfo::from_der(&STANDARD.decode(text).unwrap()).unwrap();
        let signed: cms::signed_data::SignedData = info.content.decode_as().unwrap();
        let certificates = signed.certificates.unwrap();
        let certificate = match certificates.0.iter().next().expect("one certificate") {
            cms::cert::CertificateChoices::Certificate(c) => c.to_der().unwrap(),
            other => panic!("not a certificate: {other:?}"),
        };
        let identity = format!(
            "{}{}",
            key.serialize_pem(),
            ::pem::encode(&::pem::Pem::new("CERTIFICATE", certificate))
        );
        let device_client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&app.pki.server_ca_path).unwrap())
                    .unwrap(),
            )
            .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        devices.push(
            device_client
                .post(app.url("/.well-known/est/simplereenroll"))
                .header("content-type", "application/pkcs10")
                .body(body),
        );
    }
    let queue = std::sync::Arc::new(std::sync::Mutex::new(devices));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let Some(request) = queue.lock().unwrap().pop() else {
                    break;
                };
                let sent = Instant::now();
                let response = request.send().await.expect("renewal");
                assert!(response.status().is_success(), "{}", response.status());
                response.bytes().await.unwrap();
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    assert_eq!(latencies.len(), count, "renewals: all within the limit");
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    format!(
        "est-reenroll (new TLS connection each): {count} certificates in {:.2} s = {:.0}/s; \
         p50 {:.1} ms, p99 {:.1} ms",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
    )
}
