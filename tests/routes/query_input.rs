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
