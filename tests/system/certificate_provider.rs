//! The fleet-provisioning certificate provider against a real factory-ca over HTTPS: the
//! handler of the Lambda function (`factory_ca::certificate_provider::handle`, what the
//! binary runs for each invocation) is fed AWS's documented event with an openssl-made CSR;
//! openssl checks the certificate it returns (chain, subject) and the ledger holds it. A CSR
//! the policy refuses, a wrong token and an untrusted server give errors with the code, and no
//! ledger row.

use std::process::Command;

use factory_ca::certificate_provider::{
    CertificateProviderEvent, FactoryCaClient, ProviderSettings, env, handle,
};
use factory_ca::config::ClientAuth;
use serde_json::json;

use crate::common::{Backend, write};
use crate::tls::TlsApp;

/// `openssl req` as a device (or its factory tool) makes a CSR: a fresh P-256 key, the
/// subject given as openssl's `-subj`.
fn openssl_csr(dir: &std::path::Path, name: &str, subject: &str) -> String {
    let key = dir.join(format!("{name}.key"));
    let output = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-subj", subject, "-keyout"])
        .arg(&key)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("PEM")
}

/// The event as AWS IoT sends it (the developer guide's field names), parsed as the Lambda
/// runtime parses it.
fn event(csr: &str) -> CertificateProviderEvent {
    serde_json::from_value(json!({
        "certificateSigningRequest": csr,
        "principal": "5f3c4e8ad0e1d7d2a5b1c0e0f6b2f1a9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3",
        "clientId": "fp-device-0001"
    }))
    .expect("the documented event parses")
}

fn client(app: &TlsApp, vars: &[(&str, String)]) -> FactoryCaClient {
    let mut all: Vec<(String, String)> = vec![
        (env::URL.into(), app.url("")),
        (
            env::CA_BUNDLE.into(),
            app.pki.server_ca_path.display().to_string(),
        ),
    ];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let settings = ProviderSettings::from_lookup(|name| {
        all.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .expect("settings");
    FactoryCaClient::new(&settings).expect("client")
}

fn openssl(args: &[&str]) -> String {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "openssl {args:?}: {text}");
    text
}

/// The answer's certificate: openssl verifies it against the issuing CA (GET /v1/ca.pem) for
/// client authentication, its subject is the CSR's, and the ledger has it under the station.
async fn check_issued(app: &TlsApp, certificate_pem: &str, thing: &str, station: &str) {
    let dir = app.pki.dir.join(format!("fp-{thing}"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_pem = reqwest::Client::builder()
        .use_preconfigured_tls(app.pki.rustls_config_with(None, &[&rustls::version::TLS13]))
        .build()
        .unwrap()
        .get(app.url("/v1/ca.pem"))
        .send()
        .await
        .expect("ca.pem")
        .text()
        .await
        .unwrap();
    let ca = write(&dir, "ca.pem", &ca_pem);
    let cert = write(&dir, "device.pem", certificate_pem);
    let (ca, cert) = (ca.to_str().unwrap(), cert.to_str().unwrap());
    let verified = openssl(&[
        "verify",
        "-x509_strict",
        "-purpose",
        "sslclient",
        "-CAfile",
        ca,
        cert,
    ]);
    assert!(verified.contains(": OK"), "{verified}");
    let subject = openssl(&[
        "x509", "-in", cert, "-noout", "-subject", "-nameopt", "RFC2253",
    ]);
    assert!(subject.contains(&format!("CN={thing}")), "{subject}");
    assert!(subject.contains("C=JP"), "{subject}");
    // One PEM certificate, no key, no chain: what AWS IoT registers.
    assert_eq!(certificate_pem.matches("BEGIN CERTIFICATE").count(), 1);

    let der = crate::common::der_of(certificate_pem);
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("DER");
    let serial = parsed.raw_serial_as_string().replace(':', "");
    let row = app.ledger_row(&serial).await;
    assert_eq!(row["thing_name"], thing, "{row}");
    assert_eq!(row["station"], station, "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_gets_a_certificate_for_the_documented_event_with_a_station_token() {
    let app = TlsApp::spawn_with(Backend::Sqlite, None, |_, _| {}).await;
    let provider = client(&app, &[(env::STATION_TOKEN, app.station.clone())]);
    let csr = openssl_csr(&app.pki.dir, "fp-1", "/C=JP/CN=FP-Thing-0001");

    let answer = handle(event(&csr), &provider).await.expect("a certificate");
    // The answer in AWS's shape.
    let wire = serde_json::to_value(&answer).unwrap();
    assert_eq!(wire.as_object().unwrap().len(), 1, "{wire}");
    let pem = wire["certificatePem"].as_str().expect("certificatePem");
    check_issued(&app, pem, "FP-Thing-0001", "station-1").await;

    // A retried invocation for the same CSR gets the same certificate, not a second row.
    let before = app.ledger_count().await;
    let again = handle(event(&csr), &provider).await.expect("a retry");
    assert_eq!(again.certificate_pem, answer.certificate_pem);
    assert_eq!(app.ledger_count().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_signs_in_as_a_station_with_its_client_certificate_alone() {
    let app = TlsApp::spawn_with(Backend::Sqlite, Some(ClientAuth::Optional), |_, _| {}).await;
    let station = app.pki.station("fleet-lambda", 21);
    let provider = client(
        &app,
        &[
            (env::CLIENT_CERT, station.cert_path.display().to_string()),
            (env::CLIENT_KEY, station.key_path.display().to_string()),
        ],
    );
    let csr = openssl_csr(&app.pki.dir, "fp-2", "/C=JP/CN=FP-Thing-0002");
    let answer = handle(event(&csr), &provider).await.expect("a certificate");
    check_issued(
        &app,
        &answer.certificate_pem,
        "FP-Thing-0002",
        "cert:fleet-lambda",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_errors_with_factory_cas_code_and_leave_no_row() {
    let app = TlsApp::spawn_with(Backend::Sqlite, None, |_, _| {}).await;
    let before = app.ledger_count().await;

    // The policy requires a country: a CSR without C is refused by factory-ca.
    let provider = client(&app, &[(env::STATION_TOKEN, app.station.clone())]);
    let no_country = openssl_csr(&app.pki.dir, "fp-3", "/CN=FP-Thing-0003");
    let err = handle(event(&no_country), &provider).await.unwrap_err();
    assert_eq!(err.code(), "missing_country", "{err}");
    assert!(err.to_string().starts_with("missing_country: "), "{err}");

    // A token factory-ca does not know.
    let wrong = client(
        &app,
        &[(
            env::STATION_TOKEN,
            "fca_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        )],
    );
    let csr = openssl_csr(&app.pki.dir, "fp-4", "/C=JP/CN=FP-Thing-0004");
    let err = handle(event(&csr), &wrong).await.unwrap_err();
    assert_eq!(err.code(), "unauthorized", "{err}");

    // A viewer token is not a station's.
    let viewer = client(&app, &[(env::STATION_TOKEN, app.viewer.clone())]);
    let err = handle(event(&csr), &viewer).await.unwrap_err();
    assert_eq!(err.code(), "forbidden", "{err}");

    // A server that does not chain to the configured bundle is not trusted: the bundle here
    // is the station CA, which did not issue the server's certificate.
    let settings = ProviderSettings::from_lookup(|name| match name {
        n if n == env::URL => Some(app.url("")),
        n if n == env::CA_BUNDLE => Some(app.pki.dir.join("station-ca.crt").display().to_string()),
        n if n == env::STATION_TOKEN => Some(app.station.clone()),
        _ => None,
    })
    .unwrap();
    let untrusted = FactoryCaClient::new(&settings).unwrap();
    let err = handle(event(&csr), &untrusted).await.unwrap_err();
    assert_eq!(err.code(), "factory_ca_unreachable", "{err}");
    assert!(err.to_string().contains("TLS handshake"), "{err}");

    assert_eq!(app.ledger_count().await, before, "no refusal left a row");
}

/// The station token from AWS Secrets Manager (moto's), as the function reads it at its cold
/// start: a plain secret and a JSON `{"token": ...}` secret both sign; a missing secret is an
/// error that names it.
#[cfg(feature = "certificate-provider")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_station_token_comes_from_a_secrets_manager_secret() {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    use factory_ca::certificate_provider::secrets;

    let moto = crate::aws_moto::start_moto();
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(&moto.url)
        .credentials_provider(Credentials::new(
            "testing", "testing", None, None, "emulator",
        ))
        .build();
    let sm = aws_sdk_secretsmanager::Client::from_conf(config);
    let app = TlsApp::spawn_with(Backend::Sqlite, None, |_, _| {}).await;
    sm.create_secret()
        .name("factory-ca/station-plain")
        .secret_string(format!("{}\n", app.station))
        .send()
        .await
        .expect("moto creates the secret");
    let arn = sm
        .create_secret()
        .name("factory-ca/station-json")
        .secret_string(json!({ "token": app.station }).to_string())
        .send()
        .await
        .expect("moto creates the secret")
        .arn()
        .unwrap()
        .to_owned();

    for (n, secret_id) in ["factory-ca/station-plain", arn.as_str()]
        .into_iter()
        .enumerate()
    {
        let mut settings = ProviderSettings::from_lookup(|name| match name {
            x if x == env::URL => Some(app.url("")),
            x if x == env::CA_BUNDLE => Some(app.pki.server_ca_path.display().to_string()),
            x if x == env::STATION_TOKEN_SECRET_ID => Some(secret_id.to_owned()),
            _ => None,
        })
        .unwrap();
        assert!(
            FactoryCaClient::new(&settings).is_err(),
            "no client before the secret is read"
        );
        settings.token = Some(secrets::station_token(&sm, secret_id).await.unwrap());
        let provider = FactoryCaClient::new(&settings).unwrap();
        let thing = format!("FP-Secret-000{n}");
        let csr = openssl_csr(&app.pki.dir, &thing, &format!("/C=JP/CN={thing}"));
        let answer = handle(event(&csr), &provider).await.expect("a certificate");
        check_issued(&app, &answer.certificate_pem, &thing, "station-1").await;
    }

    let missing = secrets::station_token(&sm, "factory-ca/nothing-here")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("factory-ca/nothing-here") && missing.contains("ResourceNotFound"),
        "{missing}"
    );
}

/// The `certificate-provider` binary as Lambda runs it: its runtime polls a Lambda Runtime API
/// (here a stand-in on loopback that serves AWS's events and records the answers, the
/// endpoints of Lambda's runtime interface), and answers `{"certificatePem"}` for a good CSR
/// and an error whose `errorType` is factory-ca's code for a refused one. A bad setting stops
/// it at its cold start, naming the variable.
#[cfg(feature = "certificate-provider")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_binary_answers_aws_events_through_the_runtime_api() {
    use axum::extract::{Path, State};
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    #[derive(Default)]
    struct RuntimeApi {
        events: Mutex<Vec<(String, serde_json::Value)>>,
        answers: Mutex<Vec<(String, String, serde_json::Value)>>,
    }
    async fn next(State(api): State<Arc<RuntimeApi>>) -> axum::response::Response {
        use axum::response::IntoResponse;
        loop {
            let event = api.events.lock().unwrap().pop();
            if let Some((id, body)) = event {
                let deadline = (std::time::SystemTime::now() + Duration::from_secs(60))
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis();
                let mut headers = HeaderMap::new();
                headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
                headers.insert(
                    "lambda-runtime-deadline-ms",
                    deadline.to_string().parse().unwrap(),
                );
                headers.insert(
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:eu-west-1:123456789012:function:factory-ca-certificate-provider"
                        .parse()
                        .unwrap(),
                );
                return (headers, axum::Json(body)).into_response();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    async fn answer(
        State(api): State<Arc<RuntimeApi>>,
        Path((id, kind)): Path<(String, String)>,
        body: axum::body::Bytes,
    ) -> axum::http::StatusCode {
        let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        api.answers.lock().unwrap().push((id, kind, value));
        axum::http::StatusCode::ACCEPTED
    }

    let app = TlsApp::spawn_with(Backend::Sqlite, None, |_, _| {}).await;
    let good = openssl_csr(&app.pki.dir, "bin-1", "/C=JP/CN=FP-Binary-0001");
    let refused = openssl_csr(&app.pki.dir, "bin-2", "/CN=FP-Binary-0002");
    let api = Arc::new(RuntimeApi::default());
    // Popped from the end: the good CSR first.
    *api.events.lock().unwrap() = vec![
        (
            "req-2".into(),
            json!({ "certificateSigningRequest": refused }),
        ),
        (
            "req-1".into(),
            json!({ "certificateSigningRequest": good, "clientId": "fp-device-0001" }),
        ),
    ];
    let router = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(answer))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runtime_api = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let function = |extra: &[(&str, String)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_certificate-provider"));
        cmd.env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string())
            .env(
                "AWS_LAMBDA_FUNCTION_NAME",
                "factory-ca-certificate-provider",
            )
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(env::URL, app.url(""))
            .env(env::STATION_TOKEN, &app.station)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    };
    let mut child = function(&[(env::CA_BUNDLE, app.pki.server_ca_path.display().to_string())])
        .spawn()
        .expect("the function starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.answers.lock().unwrap().len() < 2 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the function exited ({status})");
        }
        assert!(Instant::now() < deadline, "no answers within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!logs.contains(&app.station), "the token is never logged");
    server.abort();

    let answers = api.answers.lock().unwrap().clone();
    let (id, kind, body) = &answers[0];
    assert_eq!(
        (id.as_str(), kind.as_str()),
        ("req-1", "response"),
        "{body}"
    );
    let pem = body["certificatePem"].as_str().expect("certificatePem");
    check_issued(&app, pem, "FP-Binary-0001", "station-1").await;
    let (id, kind, body) = &answers[1];
    assert_eq!((id.as_str(), kind.as_str()), ("req-2", "error"), "{body}");
    assert_eq!(body["errorType"], "missing_country", "{body}");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("missing_country: "),
        "{body}"
    );

    // A setting missing: the function stops at its cold start and says which.
    let output = function(&[]).output().expect("the function runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(stderr.contains(env::CA_BUNDLE), "{stderr}");
}
