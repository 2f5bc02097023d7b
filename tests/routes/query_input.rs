//! Hostile query input from the security probe: far-future and far-past times with offsets,
//! forged cursors, NUL and control characters in paths and filters. Each is refused with a 4xx
//! naming what to fix, never a 500 (a panic) or a 503 (the database refusing the byte).

use crate::common::*;
use crate::on_both_backends;
use base64::Engine;
use reqwest::StatusCode;

on_both_backends!(
    far_times_and_overflowing_buckets_are_invalid_queries,
    forged_cursors_are_invalid_queries,
    nul_and_control_characters_never_reach_the_store,
);

/// `value` percent-encoded for a query string.
fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn expect_invalid_query(app: &TestApp, token: &str, path: &str) {
    let response = app.get(token, path).await;
    let status = response.status();
    let body = json(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
    assert_eq!(body["code"], "invalid_query", "{path}: {body}");
}

async fn far_times_and_overflowing_buckets_are_invalid_queries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.sign(&csr("line-a-1", "JP").pem).await;
    assert_eq!(response.status(), StatusCode::CREATED);

    // The last hour and day of year 9999 are valid buckets: answered, not overflowed.
    for group_by in ["hour", "day"] {
        let path = format!(
            "/v1/stats?from=9999-12-31T00:00:00Z&to=9999-12-31T23:59:59Z&group_by={group_by}"
        );
        let response = app.get(&app.viewer, &path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body = json(response).await;
        let expected = if group_by == "hour" { 24 } else { 1 };
        assert_eq!(body["groups"].as_array().unwrap().len(), expected, "{body}");
    }
    // `to` alone at the start of year 1: the default range is cut at the earliest time.
    let response = app
        .get(&app.viewer, "/v1/stats?to=0001-01-02T00:00:00Z")
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    for time in [
        "9999-12-31T23:59:59-23:59",
        "0000-01-01T00:00:00+23:59",
        "0000-01-01T00:00:00Z",
    ] {
        let t = enc(time);
        for path in [
            format!("/v1/certificates?issued_after={t}"),
            format!("/v1/certificates?issued_before={t}"),
            format!("/v1/certificates/export.csv?issued_after={t}"),
            format!("/v1/certificates/export.csv?issued_before={t}"),
            format!("/v1/stats?from={t}"),
            format!("/v1/stats?to={t}&group_by=hour"),
        ] {
            expect_invalid_query(&app, &app.viewer, &path).await;
        }
        for path in [
            format!("/v1/admin/audit?since={t}"),
            format!("/v1/admin/audit?until={t}"),
        ] {
            expect_invalid_query(&app, &app.admin, &path).await;
        }
    }
    // The ledger still answers.
    let response = app.get(&app.viewer, "/v1/certificates").await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn forged_cursors_are_invalid_queries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let serial = "0123456789abcdef0123456789abcdef01234567";
    let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    for cursor in [
        b64(&format!("9999-12-31T23:59:59-23:59|{serial}")),
        b64(&format!("0000-01-01T00:00:00+23:59|{serial}")),
        b64("2026-11-28T10:00:00Z|x"),
        b64(&format!("2026-11-28T10:00:00Z|{serial}\u{0}")),
        "%00".to_owned(),
        "A".repeat(2000),
    ] {
        for route in ["/v1/certificates", "/v1/certificates/export.csv"] {
            expect_invalid_query(&app, &app.viewer, &format!("{route}?cursor={cursor}")).await;
        }
    }
    expect_invalid_query(
        &app,
        &app.admin,
        "/v1/admin/audit?cursor=99999999999999999999",
    )
    .await;
}

async fn nul_and_control_characters_never_reach_the_store(backend: Backend) {
    let fake = std::sync::Arc::new(factory_ca::aws::fake::FakeIotRegistry::new());
    let app = TestApp::spawn_with_iot(backend, fake, |_| {}).await;
    let response = app.sign(&csr("line-a-1", "JP").pem).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let ca_id = json(app.get(&app.admin, "/v1/admin/cas").await).await["items"][0]["id"]
        .as_str()
        .map(str::to_owned);

    // Path segments: 404 before any handler or the database, with and without a token.
    let paths = [
        "/v1/cas/%00/crl",
        "/v1/cas/%00/crl?format=pem",
        "/v1/certificates/%00",
        "/v1/admin/cas/%00",
        "/v1/admin/cas/a%0Ab",
        "/v1/admin/cas/%00/aws",
    ];
    for path in paths {
        for token in [None, Some(&app.admin)] {
            let mut request = app.client.get(app.url(path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let body = json(response).await;
            // Without a token an admin route answers 401 first; never a 5xx.
            assert!(
                status == StatusCode::NOT_FOUND || status == StatusCode::UNAUTHORIZED,
                "{path}: {status} {body}"
            );
            if token.is_some() || path.starts_with("/v1/cas/") {
                assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            }
        }
    }
    let response = app
        .client
        .delete(app.url("/v1/admin/tokens/viewer%00-1"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Text filters: 400 invalid_query naming the parameter.
    for bad in ["%00", "a%00b", "%0A", "%09x", "%7F", "%C2%85"] {
        for param in [
            "thing_name",
            "country",
            "station",
            "q",
            "status",
            "aws_status",
        ] {
            for route in ["/v1/certificates", "/v1/certificates/export.csv"] {
                let path = format!("{route}?{param}={bad}");
                let response = app.get(&app.viewer, &path).await;
                let status = response.status();
                let body = json(response).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
                assert_eq!(body["code"], "invalid_query", "{path}");
                assert!(body["detail"].as_str().unwrap().contains(param), "{body}");
            }
        }
        for param in ["actor", "action", "target", "outcome"] {
            expect_invalid_query(&app, &app.admin, &format!("/v1/admin/audit?{param}={bad}")).await;
        }
        expect_invalid_query(&app, &app.viewer, &format!("/v1/stats?group_by={bad}")).await;
        if let Some(id) = &ca_id {
            let path = format!("/v1/cas/{id}/crl?format={bad}");
            let response = app.client.get(app.url(&path)).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        }
    }

    // U+0000 in a JSON body's strings: refused by each field's rule, never a 5xx.
    let serial = json(app.get(&app.viewer, "/v1/certificates").await).await["items"][0]["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = ca_id.clone().unwrap_or_default();
    let nul = "a\u{0}b";
    let bodies = [
        (
            "/v1/admin/tokens".to_owned(),
            serde_json::json!({"name": nul, "role": "viewer"}),
        ),
        (
            "/v1/admin/cas".to_owned(),
            serde_json::json!({"subject": {"common_name": nul, "organization": nul}}),
        ),
        (
            "/v1/admin/cas/import".to_owned(),
            serde_json::json!({"certificate_pem": nul, "private_key_pem": nul}),
        ),
        (
            format!("/v1/admin/certificates/{serial}/revoke"),
            serde_json::json!({"reason": nul}),
        ),
        (
            format!("/v1/admin/cas/{id}/aws/register"),
            serde_json::json!({"mode": "sni_only", "role_arn": nul}),
        ),
        (
            format!("/v1/admin/cas/{id}/aws/template/preview"),
            serde_json::json!({"csr": nul}),
        ),
        ("/v1/session".to_owned(), serde_json::json!({"token": nul})),
    ];
    for (path, body) in bodies {
        let response = app.admin_json(reqwest::Method::POST, &path, body).await;
        let status = response.status();
        assert!(
            !status.is_server_error(),
            "{path}: {status} {}",
            response.text().await.unwrap()
        );
    }
    assert_eq!(
        app.get(&app.viewer, &format!("/v1/certificates/{serial}"))
            .await
            .status(),
        StatusCode::OK
    );

    // Nothing looked like a store outage, and the service is ready.
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let listed = app
        .get(&app.viewer, "/v1/certificates?station=station-1")
        .await;
    assert_eq!(json(listed).await["items"].as_array().unwrap().len(), 1);
}
