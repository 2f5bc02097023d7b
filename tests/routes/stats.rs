//! `GET /v1/stats`: issued, rejected and revoked counts in every grouping, rejection counts
//! that survive a restart, and the queries it refuses.

use crate::common::*;
use crate::on_both_backends;
use reqwest::StatusCode;
use serde_json::Value;

on_both_backends!(
    stats_count_issued_rejected_and_revoked_in_every_grouping,
    rejection_counts_survive_a_restart,
    stats_refuse_bad_ranges_groupings_and_stations,
);

async fn issue(app: &TestApp, thing: &str, country: &str) -> String {
    let response = app.sign(&csr(thing, country).pem).await;
    assert_eq!(response.status(), StatusCode::CREATED, "issue {thing}");
    json(response).await["serial"].as_str().unwrap().to_owned()
}

async fn stats(app: &TestApp, query: &str) -> Value {
    let response = app.get(&app.viewer, &format!("/v1/stats{query}")).await;
    assert_eq!(response.status(), StatusCode::OK, "stats{query}");
    json(response).await
}

/// The group with `key` (JSON null for `None`).
fn group<'a>(stats: &'a Value, key: Option<&str>) -> &'a Value {
    stats["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"].as_str() == key)
        .unwrap_or_else(|| panic!("no group {key:?} in {stats}"))
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

async fn stats_count_issued_rejected_and_revoked_in_every_grouping(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    issue(&app, "line-a-1", "JP").await;
    let revoked = issue(&app, "line-a-2", "JP").await;
    issue(&app, "line-b-1", "US").await;
    assert_eq!(
        garbage_csr(&app, Some(&app.station)).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        garbage_csr(&app, Some(&app.station)).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(garbage_csr(&app, None).await, StatusCode::UNAUTHORIZED);
    let response = app
        .admin_json(
            reqwest::Method::POST,
            &format!("/v1/admin/certificates/{revoked}/revoke"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let ca_id = json(app.get(&app.viewer, "/v1/ca").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let all = stats(&app, "").await;
    assert_eq!(all["group_by"], Value::Null);
    assert_eq!(all["groups"], serde_json::json!([]));
    assert_eq!(
        all["totals"],
        serde_json::json!({
            "issued": 3, "rejected": 3, "revoked": 1,
            "rejected_by_code": {"invalid_csr": 2, "unauthorized": 1},
        })
    );

    // Days: every day of the default 7-day range, oldest first, zero-filled; today has it all.
    let days = stats(&app, "?group_by=day").await;
    let groups = days["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 8, "{days}");
    let keys: Vec<&str> = groups.iter().map(|g| g["key"].as_str().unwrap()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let today = groups.last().unwrap();
    assert_eq!(today["key"], days["to"].as_str().unwrap()[..10]);
    assert_eq!(
        (&today["issued"], &today["rejected"], &today["revoked"]),
        (&Value::from(3), &Value::from(3), &Value::from(1))
    );
    assert!(groups[..7].iter().all(|g| g["issued"] == 0));

    let hours = stats(&app, "?group_by=hour").await;
    let last_hour = hours["groups"].as_array().unwrap().last().unwrap();
    assert_eq!(last_hour["issued"], 3, "{hours}");
    assert_eq!(hours["groups"].as_array().unwrap().len(), 7 * 24 + 1);

    let stations = stats(&app, "?group_by=station").await;
    let station = group(&stations, Some("station-1"));
    assert_eq!(station["issued"], 3);
    assert_eq!(station["revoked"], 1);
    assert_eq!(
        station["rejected_by_code"],
        serde_json::json!({"invalid_csr": 2})
    );
    assert_eq!(
        group(&stations, None)["rejected_by_code"],
        serde_json::json!({"unauthorized": 1})
    );

    let countries = stats(&app, "?group_by=country").await;
    assert_eq!(countries["groups"][0]["key"], "JP", "most issued first");
    assert_eq!(
        (
            &group(&countries, Some("JP"))["issued"],
            &group(&countries, Some("JP"))["revoked"]
        ),
        (&Value::from(2), &Value::from(1))
    );
    assert_eq!(group(&countries, Some("US"))["issued"], 1);
    assert_eq!(countries["totals"]["rejected"], 3, "totals keep rejections");

    let statuses = stats(&app, "?group_by=status").await;
    assert_eq!(group(&statuses, Some("active"))["issued"], 2);
    assert_eq!(group(&statuses, Some("revoked"))["issued"], 1);

    let cas = stats(&app, "?group_by=ca").await;
    assert_eq!(group(&cas, Some(&ca_id))["issued"], 3);
    assert_eq!(group(&cas, Some(&ca_id))["rejected"], 3);

    // A range before any of it: zeros, and from/to echo the request.
    let past = stats(
        &app,
        "?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z&group_by=day",
    )
    .await;
    assert_eq!(past["from"], "2020-01-01T00:00:00Z");
    assert_eq!(past["totals"]["issued"], 0);
    assert_eq!(past["totals"]["rejected"], 0);
    assert_eq!(past["groups"].as_array().unwrap().len(), 1);

    // Admins may read too; "all time" is an explicit from.
    let response = app
        .get(&app.admin, "/v1/stats?from=1970-01-01T00:00:00Z")
        .await;
    assert_eq!(json(response).await["totals"]["issued"], 3);
}

async fn rejection_counts_survive_a_restart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(
        garbage_csr(&app, Some(&app.station)).await,
        StatusCode::BAD_REQUEST
    );
    // No stats query in between: the count reaches the store at shutdown.
    let app = app.restart().await;
    let after = stats(&app, "").await;
    assert_eq!(
        after["totals"]["rejected_by_code"],
        serde_json::json!({"invalid_csr": 1})
    );
}

async fn stats_refuse_bad_ranges_groupings_and_stations(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for query in [
        "?group_by=thing",
        "?from=2026-11-28T10:00:00Z&to=2026-11-28T10:00:00Z",
        "?from=yesterday",
        "?from=1970-01-01T00:00:00Z&group_by=hour",
        "?limit=5",
    ] {
        let response = app.get(&app.viewer, &format!("/v1/stats{query}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body = json(response).await;
        assert_eq!(body["code"], "invalid_query", "{query}: {body}");
    }
    let response = app.get(&app.station, "/v1/stats").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app.client.get(app.url("/v1/stats")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
