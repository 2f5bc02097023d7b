//! The dashboard API: `GET /v1/stats`, thing-name search and sorting of the list, the CSV
//! export, `GET /metrics`, and request ids in error bodies.

use std::collections::HashSet;

use crate::helpers::*;
use crate::on_both_backends;
use reqwest::StatusCode;
use serde_json::Value;

on_both_backends!(
    stats_count_issued_rejected_and_revoked_in_every_grouping,
    rejection_counts_survive_a_restart,
    stats_refuse_bad_ranges_groupings_and_stations,
    the_list_searches_thing_name_prefixes_and_sorts_both_ways,
    the_csv_export_streams_every_matching_row_as_rfc_4180,
    metrics_count_issuance_rejections_and_http_requests,
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

async fn list(app: &TestApp, query: &str) -> Value {
    let response = app
        .get(&app.viewer, &format!("/v1/certificates{query}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    json(response).await
}

fn thing_names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["thing_name"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_list_searches_thing_name_prefixes_and_sorts_both_ways(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for thing in ["press-1", "press-2", "pressure", "Press-3", "lathe_1"] {
        issue(&app, thing, "JP").await;
    }
    assert_eq!(
        thing_names(&list(&app, "?q=press").await),
        ["pressure", "press-2", "press-1"]
    );
    assert_eq!(
        thing_names(&list(&app, "?q=press-&sort=asc").await),
        ["press-1", "press-2"]
    );
    assert_eq!(thing_names(&list(&app, "?q=Press").await), ["Press-3"]);
    assert_eq!(thing_names(&list(&app, "?q=lathe_").await), ["lathe_1"]);
    assert_eq!(thing_names(&list(&app, "?q=lathe%25").await), [""; 0]);
    assert_eq!(thing_names(&list(&app, "?q=z").await), [""; 0]);

    let newest_first = thing_names(&list(&app, "").await);
    let mut oldest_first = thing_names(&list(&app, "?sort=asc").await);
    oldest_first.reverse();
    assert_eq!(newest_first, oldest_first);
    assert_eq!(
        thing_names(&list(&app, "?sort=issued_at_desc").await),
        newest_first
    );

    // Keyset pages in ascending order visit every row once, oldest first.
    let mut seen = Vec::new();
    let mut query = "?sort=asc&limit=2".to_owned();
    for _ in 0..10 {
        let page = list(&app, &query).await;
        seen.extend(thing_names(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?sort=asc&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let mut expected = newest_first.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    for query in [
        "?sort=thing_name",
        "?q=",
        &format!("?q={}", "a".repeat(129)),
    ] {
        let response = app
            .get(&app.viewer, &format!("/v1/certificates{query}"))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(json(response).await["code"], "invalid_query");
    }
}

/// Parses RFC 4180 CSV (quoted fields may hold commas, quotes and line breaks).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "CRLF line ends");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "the last line ends with CRLF"
    );
    rows
}

/// Copies the ledger's first row `n` times with new serials and thing names `bulk-<i>`.
async fn bulk_rows(app: &TestApp, backend: Backend, n: u32) {
    let columns = "ca_id, country, subject, key_algorithm, spki_sha256, certificate_der, \
                   not_before, not_after, issued_at, station, status";
    let sql = match backend {
        Backend::Postgres => format!(
            "INSERT INTO issued_certificates (serial, aws_certificate_id, thing_name, {columns}) \
             SELECT lpad(to_hex(i), 40, '0'), lpad(to_hex(i), 64, '0'), 'bulk-' || i, {columns} \
             FROM (SELECT * FROM issued_certificates LIMIT 1) AS t, generate_series(1, {n}) AS i"
        ),
        Backend::Sqlite => format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) \
             INSERT INTO issued_certificates (serial, aws_certificate_id, thing_name, {columns}) \
             SELECT printf('%040x', i), printf('%064x', i), 'bulk-' || i, {columns} \
             FROM (SELECT * FROM issued_certificates LIMIT 1), s"
        ),
    };
    app.execute_sql(&sql).await;
}

async fn export(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.get(token, &format!("/v1/certificates/export.csv{query}"))
        .await
}

async fn the_csv_export_streams_every_matching_row_as_rfc_4180(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    issue(&app, "csv-1", "JP").await;
    bulk_rows(&app, backend, 2_345).await;

    let response = export(&app, &app.viewer, "").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8; header=present"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let rows = parse_csv(&response.text().await.unwrap());
    assert_eq!(rows[0], factory_ca::http::routes::certificates::CSV_COLUMNS);
    assert_eq!(
        rows.len(),
        1 + 2_346,
        "a header and every row, across chunks"
    );
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
    let serials: HashSet<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(serials.len(), 2_346, "no row twice");
    assert_eq!(app.ledger_count().await, 2_346);

    // The same filters as the list: one thing, a prefix, a limit, a sort.
    let one = parse_csv(
        &export(&app, &app.viewer, "?thing_name=csv-1")
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(one.len(), 2);
    let row = &one[1];
    let column = |name: &str| {
        let i = rows[0].iter().position(|c| c == name).unwrap();
        row[i].as_str()
    };
    assert_eq!(column("thing_name"), "csv-1");
    assert_eq!(column("country"), "JP");
    assert_eq!(column("station"), "station-1");
    assert_eq!(column("status"), "active");
    assert_eq!(column("revoked_at"), "");
    let page = list(&app, "?thing_name=csv-1").await;
    assert_eq!(column("serial"), page["items"][0]["serial"]);
    assert_eq!(column("subject"), page["items"][0]["subject"]);

    let prefix = parse_csv(
        &export(&app, &app.viewer, "?q=bulk-23")
            .await
            .text()
            .await
            .unwrap(),
    );
    // bulk-23, bulk-230..bulk-239, bulk-2300..bulk-2345
    assert_eq!(prefix.len(), 1 + 1 + 10 + 46);
    let limited = parse_csv(
        &export(&app, &app.viewer, "?limit=1500&sort=asc")
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(limited.len(), 1 + 1500);

    let response = export(&app, &app.station, "").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = export(&app, &app.viewer, "?sort=sideways").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = export(&app, &app.viewer, "?limit=0").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
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
    settings.metrics.listen = "127.0.0.1:0".into();
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
