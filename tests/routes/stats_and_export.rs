//! All-time stats by day, and the CSV export's revocation-pending column and opt-in byte order
//! mark.

use crate::common::*;
use crate::on_both_backends;
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_backends!(all_time_stats_group_by_day);

async fn all_time_stats_group_by_day(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for thing in ["AllTime-1", "AllTime-2"] {
        assert_eq!(
            app.sign(&csr(thing, "JP").pem).await.status(),
            StatusCode::CREATED
        );
    }
    let response = app
        .get(
            &app.viewer,
            "/v1/stats?from=1970-01-01T00:00:00Z&group_by=day",
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    // Too many days to zero-fill: only the days with counts are listed.
    assert_eq!(body["zero_filled"], false);
    assert_eq!(body["totals"]["issued"], 2);
    // Today's day (two, if the test ran across midnight UTC).
    let groups = body["groups"].as_array().unwrap();
    assert!((1..=2).contains(&groups.len()), "{body}");
    let today = time::OffsetDateTime::now_utc().date().to_string();
    assert_eq!(groups.last().unwrap()["key"], today.as_str());
    let issued: u64 = groups.iter().map(|g| g["issued"].as_u64().unwrap()).sum();
    assert_eq!(issued, 2);

    // A short range is still zero-filled.
    let week = json(app.get(&app.viewer, "/v1/stats?group_by=day").await).await;
    assert_eq!(week["zero_filled"], true);
    assert!(week["groups"].as_array().unwrap().len() >= 7);

    // Hours cannot be listed over all time; the error says what works.
    let response = app
        .get(
            &app.viewer,
            "/v1/stats?from=1970-01-01T00:00:00Z&group_by=hour",
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let detail = json(response).await["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("use group_by=day, which takes any range"),
        "{detail}"
    );
}

on_both_backends!(the_export_has_aws_revocation_pending_and_an_opt_in_bom);

async fn the_export_has_aws_revocation_pending_and_an_opt_in_bom(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let issued = json(app.sign(&csr("Pending-1", "JP").pem).await).await;
    let serial = issued["serial"].as_str().unwrap();
    assert_eq!(
        app.sign(&csr("Pending-2", "JP").pem).await.status(),
        StatusCode::CREATED
    );
    let response = app
        .admin_json(
            Method::POST,
            &format!("/v1/admin/certificates/{serial}/revoke"),
            json!({"reason": "key_compromise"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let pending = json(response).await["aws_revocation_pending"].clone();

    let plain = app
        .get(&app.viewer, "/v1/certificates/export.csv?sort=asc")
        .await
        .bytes()
        .await
        .unwrap();
    assert!(plain.starts_with(b"serial,"), "no BOM unless asked");
    let text = String::from_utf8(plain.to_vec()).unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].ends_with(
        ",aws_first_seen_at,aws_revocation_pending,channel,superseded_at,superseded_by,\
         aws_status_by_target,aws_revocation_pending_targets"
    ));
    let column = |line: &str, back: usize| line.rsplit(',').nth(back).unwrap().to_owned();
    assert_eq!(column(lines[1], 5), pending.to_string(), "the revoked row");
    assert_eq!(column(lines[2], 5), "false", "the active row");
    assert_eq!(column(lines[1], 4), "api", "signed through the JSON API");
    assert_eq!(column(lines[1], 2), "", "never renewed");
    assert_eq!(column(lines[1], 1), "", "AWS is not configured: no targets");

    let with_bom = app
        .get(&app.viewer, "/v1/certificates/export.csv?bom=true")
        .await
        .bytes()
        .await
        .unwrap();
    assert!(with_bom.starts_with(b"\xEF\xBB\xBFserial,"));
    assert_eq!(with_bom.len(), plain.len() + 3);

    // The list takes no bom.
    let response = app.get(&app.viewer, "/v1/certificates?bom=true").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(response).await["code"], "invalid_query");
}
