//! Who may call what: every route x {no token, unknown, revoked, station, viewer, admin}.

use crate::common::*;
use crate::on_both_backends;
use factory_ca::services::tokens::Role;
use reqwest::{Method, StatusCode};

on_both_backends!(every_route_answers_each_caller_as_documented);

#[derive(Clone, Copy, Debug)]
enum Caller {
    NoToken,
    Unknown,
    Revoked,
    Station,
    Viewer,
    Admin,
}

const CALLERS: [Caller; 6] = [
    Caller::NoToken,
    Caller::Unknown,
    Caller::Revoked,
    Caller::Station,
    Caller::Viewer,
    Caller::Admin,
];

async fn every_route_answers_each_caller_as_documented(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let revoked = new_token(&app.store, "gone", Role::Station).await;
    factory_ca::services::tokens::revoke_token(&app.store, "gone", "test", None)
        .await
        .unwrap();
    let unknown = format!("fca_{}", "A".repeat(43));
    let serial = json(app.sign(&csr("Matrix-0", "JP").pem).await).await["serial"]
        .as_str()
        .unwrap()
        .to_owned();

    use StatusCode as S;
    const U: S = S::UNAUTHORIZED;
    const F: S = S::FORBIDDEN;
    // (method, path, [no token, unknown, revoked, station, viewer, admin])
    let cert_path = format!("/v1/certificates/{serial}");
    let routes: Vec<(Method, &str, [S; 6])> = vec![
        (
            Method::POST,
            "/v1/certificates",
            [U, U, U, S::CREATED, F, S::CREATED],
        ),
        (Method::GET, "/v1/certificates", [U, U, U, F, S::OK, S::OK]),
        (Method::GET, &cert_path, [U, U, U, F, S::OK, S::OK]),
        (Method::GET, "/v1/ca", [U, U, U, S::OK, S::OK, S::OK]),
        // Without AWS configured, a permitted caller gets 503 aws_not_configured.
        (
            Method::GET,
            "/v1/ca/aws",
            [U, U, U, F, S::SERVICE_UNAVAILABLE, S::SERVICE_UNAVAILABLE],
        ),
        (Method::GET, "/v1/ca.pem", [S::OK; 6]),
        (Method::GET, "/v1/stats", [U, U, U, F, S::OK, S::OK]),
        (
            Method::GET,
            "/v1/certificates/export.csv",
            [U, U, U, F, S::OK, S::OK],
        ),
        (Method::GET, "/metrics", [S::OK; 6]),
        (Method::GET, "/openapi.json", [S::OK; 6]),
        (Method::GET, "/", [S::OK; 6]),
        (
            Method::POST,
            "/v1/admin/tokens",
            [U, U, U, F, F, S::CREATED],
        ),
        (Method::GET, "/v1/admin/tokens", [U, U, U, F, F, S::OK]),
        (
            Method::DELETE,
            "/v1/admin/tokens/victim",
            [U, U, U, F, F, S::NO_CONTENT],
        ),
        (Method::GET, "/v1/admin/audit", [U, U, U, F, F, S::OK]),
        (Method::GET, "/v1/admin/cas", [U, U, U, F, F, S::OK]),
        (Method::GET, "/v1/admin/health", [U, U, U, F, F, S::OK]),
        (Method::GET, "/v1/ca/health", [U, U, U, F, S::OK, S::OK]),
        (
            Method::GET,
            "/v1/admin/aws/certificate-providers/factory-ca",
            [U, U, U, F, F, S::SERVICE_UNAVAILABLE],
        ),
        (
            Method::DELETE,
            "/v1/admin/aws/certificate-providers/factory-ca",
            [U, U, U, F, F, S::SERVICE_UNAVAILABLE],
        ),
        (
            Method::GET,
            "/v1/admin/cas/ca-0000000000000000/aws/preflight",
            [U, U, U, F, F, S::NOT_FOUND],
        ),
        (
            Method::GET,
            "/v1/admin/cas/ca-0000000000000000/aws",
            [U, U, U, F, F, S::SERVICE_UNAVAILABLE],
        ),
        (
            Method::POST,
            "/v1/admin/certificates/0000000000000000000000000000000000000000/revoke",
            [U, U, U, F, F, S::NOT_FOUND],
        ),
        (
            Method::GET,
            "/v1/cas/ca-0000000000000000/crl",
            [S::NOT_FOUND; 6],
        ),
        (Method::GET, "/healthz", [S::OK; 6]),
        (Method::GET, "/readyz", [S::OK; 6]),
    ];

    let mut n = 0;
    for (method, path, expected) in &routes {
        for (caller, want) in CALLERS.iter().zip(expected) {
            n += 1;
            if *path == "/v1/admin/tokens/victim" {
                // Something to revoke on every attempt.
                let _ =
                    factory_ca::services::tokens::revoke_token(&app.store, "victim", "test", None)
                        .await;
                new_token(&app.store, "victim", Role::Viewer).await;
            }
            let mut request = app.client.request(method.clone(), app.url(path));
            request = match caller {
                Caller::NoToken => request,
                Caller::Unknown => request.bearer_auth(&unknown),
                Caller::Revoked => request.bearer_auth(&revoked),
                Caller::Station => request.bearer_auth(&app.station),
                Caller::Viewer => request.bearer_auth(&app.viewer),
                Caller::Admin => request.bearer_auth(&app.admin),
            };
            if *method == Method::POST && *path == "/v1/certificates" {
                request = request
                    .json(&serde_json::json!({"csr": csr(&format!("Matrix-{n}"), "JP").pem}));
            }
            if *method == Method::POST && *path == "/v1/admin/tokens" {
                request = request
                    .json(&serde_json::json!({"name": format!("made-{n}"), "role": "viewer"}));
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            assert_eq!(status, *want, "{method} {path} as {caller:?}");
            if status == U {
                assert_eq!(response.headers()["www-authenticate"], "Bearer");
                assert_eq!(json(response).await["code"], "unauthorized");
            } else if status == F {
                assert_eq!(json(response).await["code"], "forbidden");
            }
        }
    }
    // A malformed Authorization header is a 401 too, not a 400 or a 500.
    for header in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer  ",
        "fca_x",
        "Bearer \u{7f}",
    ] {
        let response = app
            .client
            .get(app.url("/v1/ca"))
            .header("Authorization", header)
            .send()
            .await;
        if let Ok(response) = response {
            assert_eq!(response.status(), U, "{header:?}");
        }
    }
}
