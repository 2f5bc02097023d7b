//! Reading the ledger: `GET /v1/certificates/{serial}`, the list (filters, thing-name search,
//! sorting, keyset pagination) and the CSV export.

use std::collections::HashSet;

use crate::common::*;
use crate::on_both_backends;
use reqwest::StatusCode;
use serde_json::Value;

on_both_backends!(
    reads_back_every_issued_certificate_from_the_ledger,
    lists_newest_first_with_filters_and_keyset_pagination,
    the_list_searches_thing_name_prefixes_and_sorts_both_ways,
    the_csv_export_streams_every_matching_row_as_rfc_4180,
);

async fn issue(app: &TestApp, thing: &str, country: &str) -> String {
    let response = app.sign(&csr(thing, country).pem).await;
    assert_eq!(response.status(), StatusCode::CREATED, "issue {thing}");
    json(response).await["serial"].as_str().unwrap().to_owned()
}

async fn reads_back_every_issued_certificate_from_the_ledger(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let issued = json(app.sign(&csr("Reader-1", "DE").pem).await).await;
    let serial = issued["serial"].as_str().unwrap();

    let response = app
        .get(&app.viewer, &format!("/v1/certificates/{serial}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let record = json(response).await;
    assert_eq!(record["serial"], serial);
    assert_eq!(record["thing_name"], "Reader-1");
    assert_eq!(record["country"], "DE");
    assert_eq!(record["station"], "station-1");
    assert_eq!(record["status"], "active");
    assert_eq!(record["key_algorithm"], "ecdsa-p256");
    assert_eq!(record["issuing_ca"], issued["issuing_ca"]);
    assert_eq!(record["aws_certificate_id"], issued["aws_certificate_id"]);
    assert_eq!(record["certificate_pem"], issued["certificate_pem"]);
    assert_eq!(record["not_after"], issued["not_after"]);
    assert!(record["request_id"].as_str().is_some_and(|r| !r.is_empty()));

    let missing = app
        .get(&app.viewer, &format!("/v1/certificates/{}", "7".repeat(40)))
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(missing).await["code"], "certificate_not_found");
}

// PostgreSQL keeps serials and the SHA-256 values as bytes (migration 0031); SQL readers get the
// API's text from the view `issued_certificates_hex`, which must keep every column of the table.
#[tokio::test]
async fn the_hex_view_has_every_ledger_column_with_the_api_s_text() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let issued = json(app.sign(&csr("Viewed-1", "DE").pem).await).await;
    let serial = issued["serial"].as_str().unwrap();
    let factory_ca::store::Store::Postgres(pool) = &app.store else {
        unreachable!("spawned on PostgreSQL")
    };
    let columns = |table: &'static str| {
        sqlx::query_scalar::<_, String>(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(pool)
    };
    let table = columns("issued_certificates").await.unwrap();
    assert_eq!(columns("issued_certificates_hex").await.unwrap(), table);

    let record = app.store.get_certificate(serial).await.unwrap().unwrap();
    let row: (String, String, String, Option<String>, String) = sqlx::query_as(
        "SELECT serial, spki_sha256, aws_certificate_id, superseded_by, thing_name \
         FROM issued_certificates_hex WHERE serial = $1",
    )
    .bind(serial)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            serial.to_owned(),
            record.spki_sha256,
            issued["aws_certificate_id"].as_str().unwrap().to_owned(),
            None,
            "Viewed-1".to_owned(),
        )
    );
}

async fn lists_newest_first_with_filters_and_keyset_pagination(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut serials = Vec::new();
    for (i, country) in ["JP", "US", "JP", "DE", "JP"].iter().enumerate() {
        let body = json(app.sign(&csr(&format!("List-{i}"), country).pem).await).await;
        serials.push(body["serial"].as_str().unwrap().to_owned());
    }
    serials.reverse(); // newest first

    let mut seen = Vec::new();
    let mut path = "/v1/certificates?limit=2".to_owned();
    loop {
        let page = json(app.get(&app.viewer, &path).await).await;
        for item in page["items"].as_array().unwrap() {
            assert!(item.get("certificate_pem").is_none(), "lists omit the PEM");
            seen.push(item["serial"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/certificates?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, serials);

    let jp = json(app.get(&app.viewer, "/v1/certificates?country=JP").await).await;
    assert_eq!(jp["items"].as_array().unwrap().len(), 3);
    let one = json(
        app.get(&app.viewer, "/v1/certificates?thing_name=List-3")
            .await,
    )
    .await;
    assert_eq!(one["items"][0]["country"], "DE");
    let by_station = json(
        app.get(
            &app.viewer,
            "/v1/certificates?station=station-1&status=active",
        )
        .await,
    )
    .await;
    assert_eq!(by_station["items"].as_array().unwrap().len(), 5);
    let future = json(
        app.get(
            &app.viewer,
            "/v1/certificates?issued_after=2999-01-01T00:00:00Z",
        )
        .await,
    )
    .await;
    assert!(future["items"].as_array().unwrap().is_empty());
    let past = json(
        app.get(
            &app.viewer,
            "/v1/certificates?issued_before=2999-01-01T00:00:00Z",
        )
        .await,
    )
    .await;
    assert_eq!(past["items"].as_array().unwrap().len(), 5);

    for bad in [
        "limit=0",
        "limit=1001",
        "status=gone",
        "issued_after=yesterday",
        "cursor=%%%",
        "colour=red",
    ] {
        let response = app
            .get(&app.viewer, &format!("/v1/certificates?{bad}"))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(json(response).await["code"], "invalid_query", "{bad}");
    }
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
             SELECT decode(lpad(to_hex(i), 40, '0'), 'hex'), decode(lpad(to_hex(i), 64, '0'), 'hex'), \
                 'bulk-' || i, {columns} \
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
