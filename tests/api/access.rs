//! Who may call what: every route x {no token, unknown, revoked, station, viewer, admin}.

use crate::helpers::*;
use crate::on_both_backends;
use factory_ca::services::tokens::Role;
use reqwest::{Method, StatusCode};

on_both_backends!(
    every_route_answers_each_caller_as_documented,
    token_admin_api_shows_secret_once
);

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

async fn token_admin_api_shows_secret_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app
        .client
        .post(app.url("/v1/admin/tokens"))
        .bearer_auth(&app.admin)
        .json(&serde_json::json!({"name": "line-9", "role": "station"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json(created).await;
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("fca_"));

    // The new token signs.
    let signed = app.sign_as(&secret, &csr("Line9-1", "JP").pem, None).await;
    assert_eq!(signed.status(), StatusCode::CREATED);
    assert_eq!(
        json(
            app.get(&app.viewer, "/v1/certificates?station=line-9")
                .await
        )
        .await["items"][0]["thing_name"],
        "Line9-1"
    );

    // Listing never shows secrets or hashes.
    let list = app
        .get(&app.admin, "/v1/admin/tokens")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("line-9"));
    assert!(!list.contains(&secret));
    assert!(!list.contains(&factory_ca::services::tokens::token_hash(&secret)));

    // Names are unique among live tokens.
    let dup = app
        .client
        .post(app.url("/v1/admin/tokens"))
        .bearer_auth(&app.admin)
        .json(&serde_json::json!({"name": "line-9", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    assert_eq!(json(dup).await["code"], "token_name_taken");
    let bad = app
        .client
        .post(app.url("/v1/admin/tokens"))
        .bearer_auth(&app.admin)
        .json(&serde_json::json!({"name": "no spaces", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(bad).await["code"], "invalid_token_name");
    let bad_role = app
        .client
        .post(app.url("/v1/admin/tokens"))
        .bearer_auth(&app.admin)
        .json(&serde_json::json!({"name": "x", "role": "root"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_role.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(bad_role).await["code"], "invalid_request");

    // Revocation takes effect at once.
    let revoked = app
        .client
        .delete(app.url("/v1/admin/tokens/line-9"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let refused = app.sign_as(&secret, &csr("Line9-2", "JP").pem, None).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let again = app
        .client
        .delete(app.url("/v1/admin/tokens/line-9"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // Every admin action is in the audit log, with the admin's name.
    let audit = json(app.get(&app.admin, "/v1/admin/audit").await).await;
    let actions: Vec<(String, String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "admin-1")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap_or("").to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |a: &str, o: &str| (a.to_owned(), "line-9".to_owned(), o.to_owned());
    assert!(
        actions.contains(&expect("token.create", "success")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&expect("token.create", "failure")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&expect("token.revoke", "success")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&expect("token.revoke", "failure")),
        "{actions:?}"
    );
    assert!(audit["items"][0]["request_id"].as_str().is_some());

    // Filters and pagination.
    let failed = json(
        app.get(
            &app.admin,
            "/v1/admin/audit?action=token.revoke&outcome=failure&target=line-9",
        )
        .await,
    )
    .await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 1, "{failed}");
    let nobody = json(app.get(&app.admin, "/v1/admin/audit?actor=nobody").await).await;
    assert!(nobody["items"].as_array().unwrap().is_empty());
    let future = json(
        app.get(&app.admin, "/v1/admin/audit?since=2999-01-01T00:00:00Z")
            .await,
    )
    .await;
    assert!(future["items"].as_array().unwrap().is_empty());
    let first = json(app.get(&app.admin, "/v1/admin/audit?limit=1").await).await;
    let cursor = first["next_cursor"].as_i64().unwrap();
    let second = json(
        app.get(
            &app.admin,
            &format!("/v1/admin/audit?limit=1&cursor={cursor}"),
        )
        .await,
    )
    .await;
    assert!(second["items"][0]["id"].as_i64().unwrap() < first["items"][0]["id"].as_i64().unwrap());
    let bad = app.get(&app.admin, "/v1/admin/audit?outcome=maybe").await;
    assert_eq!(json(bad).await["code"], "invalid_query");
}
