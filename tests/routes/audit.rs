//! `GET /v1/admin/audit`: filters (action, outcome, target, actor, time) and keyset pages. What
//! each route writes to the log is checked beside the route (tokens, revocation, AWS, ...).

use crate::common::*;
use crate::on_both_backends;
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_backends!(the_audit_log_filters_by_action_outcome_target_actor_and_time_and_pages);

async fn the_audit_log_filters_by_action_outcome_target_actor_and_time_and_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Success and failure of both token actions on one target.
    let token = json!({"name": "line-9", "role": "station"});
    for expected in [StatusCode::CREATED, StatusCode::CONFLICT] {
        let response = app
            .admin_json(Method::POST, "/v1/admin/tokens", token.clone())
            .await;
        assert_eq!(response.status(), expected);
    }
    for expected in [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND] {
        let response = app
            .admin_json(Method::DELETE, "/v1/admin/tokens/line-9", json!({}))
            .await;
        assert_eq!(response.status(), expected);
    }

    // Filters: only the second revocation is a failed token.revoke of line-9.
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
