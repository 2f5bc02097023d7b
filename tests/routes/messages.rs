//! Messages a newcomer reads: 401s that say what was wrong with the credentials, a 409 that
//! names who holds the thing name, a hint for JSON sent as PKCS#10, admin bodies refused in
//! plain words rather than serde's, and statuses read in any case.

use crate::common::*;
use crate::on_both_backends;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn detail_of(response: reqwest::Response, status: StatusCode, code: &str) -> String {
    assert_eq!(response.status(), status);
    let problem = json(response).await;
    assert_eq!(problem["code"], code, "{problem}");
    problem["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn unauthorized_says_whether_the_header_is_missing_not_bearer_or_the_token_unknown() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let url = app.url("/v1/certificates");
    let unknown = format!("fca_{}", "A".repeat(43));
    let cases: [(Option<String>, &str); 5] = [
        (None, "no Authorization header"),
        (
            Some(format!("Basic {}", "dXNlcjpwYXNz")),
            "the Authorization header is not a Bearer token (its scheme is \"Basic\")",
        ),
        (
            Some(app.viewer.clone()),
            "the Authorization header is not a Bearer token: it has the token but not the word \
             Bearer",
        ),
        (
            Some("Bearer hunter2".into()),
            "the bearer token is not a factory-ca token",
        ),
        (
            Some(format!("Bearer {unknown}")),
            "the bearer token is unknown or revoked",
        ),
    ];
    for (header, expected) in cases {
        let mut request = app.client.get(&url);
        if let Some(value) = &header {
            request = request.header("Authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer",
            "{header:?}"
        );
        let detail = detail_of(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert!(detail.starts_with(expected), "{header:?}: {detail}");
        assert!(
            detail
                .ends_with("send a valid, unrevoked API token as 'Authorization: Bearer <token>'"),
            "{detail}"
        );
    }
}

on_both_backends!(thing_already_provisioned_names_the_serial_and_station_that_hold_it);

async fn thing_already_provisioned_names_the_serial_and_station_that_hold_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = json(app.sign(&csr("Holder-1", "JP").pem).await).await;
    let serial = first["serial"].as_str().unwrap();
    let row = json(
        app.get(&app.viewer, &format!("/v1/certificates/{serial}"))
            .await,
    )
    .await;
    let station = row["station"].as_str().unwrap();
    let detail = detail_of(
        app.sign(&csr("Holder-1", "JP").pem).await,
        StatusCode::CONFLICT,
        "thing_already_provisioned",
    )
    .await;
    assert!(
        detail.contains(&format!("serial {serial}, issued to station \"{station}\"")),
        "{detail}"
    );
}

#[tokio::test]
async fn json_sent_as_pkcs10_gets_a_hint_and_json_mistakes_are_plain_words() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let body = json!({"csr": csr("Hint-1", "JP").pem}).to_string();
    let response = app
        .client
        .post(app.url("/v1/certificates"))
        .bearer_auth(&app.station)
        .header("Content-Type", "application/pkcs10")
        .body(body)
        .send()
        .await
        .unwrap();
    let detail = detail_of(response, StatusCode::BAD_REQUEST, "invalid_csr").await;
    assert!(
        detail.starts_with("the body is JSON but was sent as application/pkcs10")
            && detail.contains("Content-Type: application/json"),
        "{detail}"
    );

    // The station's JSON form, with the field misspelt.
    let response = app
        .client
        .post(app.url("/v1/certificates"))
        .bearer_auth(&app.station)
        .json(&json!({"cssr": "x"}))
        .send()
        .await
        .unwrap();
    let detail = detail_of(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(detail.contains("unknown field \"cssr\""), "{detail}");

    // Admin routes: no serde wording ("Failed to deserialize", backticks, "target type").
    for (method, path, body, expected) in [
        (
            Method::POST,
            "/v1/admin/tokens",
            json!({"name": "x", "role": "station", "colour": "red"}),
            "the JSON body has an unknown field \"colour\"; the accepted fields are name or role (line 1",
        ),
        (
            Method::POST,
            "/v1/admin/tokens",
            json!({"role": "station"}),
            "the JSON body lacks the required field \"name\"",
        ),
        (
            Method::POST,
            "/v1/admin/tokens",
            json!({"name": "x", "role": "root"}),
            "the JSON body has \"root\" where one of",
        ),
        (
            Method::POST,
            "/v1/admin/cas",
            json!({"subject": {"common_name": "X"}, "activate": "yes"}),
            "the JSON body has string \"yes\" where a boolean is expected at \"activate\"",
        ),
    ] {
        let response = app.admin_json(method, path, body).await;
        let detail = detail_of(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(detail.starts_with(expected), "{path}: {detail}");
        assert!(
            !detail.contains("deserialize") && !detail.contains('`'),
            "{detail}"
        );
    }
    let response = app
        .client
        .post(app.url("/v1/admin/tokens"))
        .bearer_auth(&app.admin)
        .header("Content-Type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let detail = detail_of(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(
        detail.starts_with("the JSON body is not valid JSON"),
        "{detail}"
    );
}

on_both_backends!(statuses_are_read_in_any_case);

async fn statuses_are_read_in_any_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(
        app.sign(&csr("Case-1", "JP").pem).await.status(),
        StatusCode::CREATED
    );
    for query in [
        "status=active",
        "status=ACTIVE",
        "status=Active",
        "aws_status=never_seen",
        "aws_status=NEVER_SEEN",
    ] {
        let page = json(
            app.get(&app.viewer, &format!("/v1/certificates?{query}"))
                .await,
        )
        .await;
        assert_eq!(
            page["items"].as_array().unwrap().len(),
            1,
            "{query}: {page}"
        );
    }
    let page = json(
        app.get(&app.viewer, "/v1/certificates?aws_status=active")
            .await,
    )
    .await;
    assert_eq!(page["items"], json!([]), "{page}");
    let page = json(
        app.get(&app.viewer, "/v1/certificates?status=REVOKED")
            .await,
    )
    .await;
    assert_eq!(page["items"], json!([]));
    let detail = detail_of(
        app.get(&app.viewer, "/v1/certificates?status=valid").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    assert!(detail.contains("active, revoked or superseded"), "{detail}");
    // The audit outcome filter too.
    app.admin_json(
        Method::POST,
        "/v1/admin/tokens",
        json!({"name": "case-viewer", "role": "viewer"}),
    )
    .await;
    let upper = json(app.get(&app.admin, "/v1/admin/audit?outcome=SUCCESS").await).await;
    let lower = json(app.get(&app.admin, "/v1/admin/audit?outcome=success").await).await;
    assert!(!upper["items"].as_array().unwrap().is_empty());
    assert_eq!(upper["items"], lower["items"]);
}

#[tokio::test]
async fn dashboard_sign_in_says_which_kind_of_token_was_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let unknown = format!("fca_{}", "A".repeat(43));
    for (token, status, code, start) in [
        (
            &app.admin,
            StatusCode::FORBIDDEN,
            "forbidden",
            "this is an admin token; sign in",
        ),
        (
            &app.station,
            StatusCode::FORBIDDEN,
            "forbidden",
            "this is a station token; sign in",
        ),
        (
            &unknown,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this token is unknown or has been revoked",
        ),
    ] {
        let response = app
            .client
            .post(app.url("/v1/session"))
            .json(&json!({ "token": token }))
            .send()
            .await
            .unwrap();
        let detail = detail_of(response, status, code).await;
        assert!(detail.starts_with(start), "{detail}");
    }
}
