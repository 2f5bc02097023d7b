//! What operators read besides the API: `GET /metrics` (on the main listener or its own), and
//! request ids in error bodies.

use crate::common::*;
use crate::on_both_backends;
use reqwest::StatusCode;

on_both_backends!(metrics_count_issuance_rejections_and_http_requests);

async fn issue(app: &TestApp, thing: &str, country: &str) -> String {
    let response = app.sign(&csr(thing, country).pem).await;
    assert_eq!(response.status(), StatusCode::CREATED, "issue {thing}");
    json(response).await["serial"].as_str().unwrap().to_owned()
}

async fn garbage_csr(app: &TestApp, token: Option<&str>) -> StatusCode {
    let mut request = app
        .client
        .post(app.url("/v1/certificates"))
        .json(&serde_json::json!({"csr": "not a CSR"}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status()
}

/// The value of the first sample of `metric` whose labels include every one of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics_count_issuance_rejections_and_http_requests(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    issue(&app, "metered-1", "JP").await;
    issue(&app, "metered-2", "JP").await;
    assert_eq!(
        garbage_csr(&app, Some(&app.station)).await,
        StatusCode::BAD_REQUEST
    );
    let ca_id = json(app.get(&app.viewer, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // No token needed, Prometheus text format.
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let ca_label = format!("ca=\"{ca_id}\"");
    assert_eq!(
        sample(
            &text,
            "factory_ca_certificates_issued_total",
            &[&ca_label, "key_type=\"ecdsa-p256\""]
        ),
        Some(2.0),
        "{text}"
    );
    // The recorder is per process (other tests run beside this one): at least ours.
    assert!(
        sample(
            &text,
            "factory_ca_rejections_total",
            &["code=\"invalid_csr\""]
        ) >= Some(1.0)
    );
    assert!(
        sample(
            &text,
            "factory_ca_http_requests_total",
            &[
                "route=\"/v1/certificates\"",
                "status=\"201\"",
                "method=\"POST\""
            ]
        ) >= Some(2.0)
    );
    assert!(sample(&text, "factory_ca_issuance_duration_seconds_count", &[]) >= Some(2.0));
    assert!(
        sample(
            &text,
            "factory_ca_store_duration_seconds_count",
            &["operation=\"record_issuance\""]
        ) >= Some(2.0)
    );
    assert!(sample(&text, "factory_ca_db_pool_connections", &["state=\"idle\""]).is_some());
    assert!(
        sample(
            &text,
            "factory_ca_db_pool_connections",
            &["state=\"in_use\""]
        )
        .is_some()
    );
    assert_eq!(
        sample(
            &text,
            "factory_ca_build_info",
            &[&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(text.contains("# TYPE factory_ca_issuance_duration_seconds histogram"));
    assert!(!text.contains("metered-1"), "no thing names in labels");
    assert!(!text.contains(&app.station), "no tokens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_to_their_own_listener_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(Backend::Sqlite, dir.path()).await;
    settings.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let app = factory_ca::app::Application::build(settings).await.unwrap();
    let port = app.port();
    let metrics_port = app.metrics_port().expect("a metrics listener");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let main = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), StatusCode::NOT_FOUND);
    let own = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    assert!(own.text().await.unwrap().contains("factory_ca_build_info"));
    let other = client
        .get(format!("http://127.0.0.1:{metrics_port}/v1/ca.pem"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND, "only /metrics there");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_carry_the_request_id() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app
        .client
        .get(app.url("/v1/certificates"))
        .header("x-request-id", "line-7-req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["x-request-id"], "line-7-req-42");
    assert_eq!(json(response).await["request_id"], "line-7-req-42");

    let response = app.get(&app.viewer, "/v1/no-such-route").await;
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = json(response).await;
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["request_id"], generated.as_str());
}
